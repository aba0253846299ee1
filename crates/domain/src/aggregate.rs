//! The shape every aggregate has: `decide(&state, command) -> events`, `apply(state, event)`.

use serde::{Serialize, de::DeserializeOwned};

use crate::DomainError;

/// A consistency boundary: one event stream, decided on synchronously and without I/O.
///
/// `decide` must not have side effects and must not look at the clock: everything it needs
/// (ids, business time) comes in the command. `apply` must accept every event `decide` ever
/// produced, including old schema versions after upcasting, and must never fail.
pub trait Aggregate: Default + Clone + Send + Sync + 'static {
    /// Stable stream type, stored with every event. Never rename it.
    const STREAM_TYPE: &'static str;
    /// What may be asked of the aggregate.
    type Command: Serialize + Send + Sync;
    /// What the aggregate records.
    type Event: DomainEvent;

    /// Turns a command into events, or refuses it. An empty result means "nothing changed".
    fn decide(&self, command: &Self::Command) -> Result<Vec<Self::Event>, DomainError>;

    /// Folds one event into the state.
    fn apply(&mut self, event: &Self::Event);

    /// Folds a history into a state.
    fn fold<'a>(events: impl IntoIterator<Item = &'a Self::Event>) -> Self {
        let mut state = Self::default();
        for e in events {
            state.apply(e);
        }
        state
    }
}

/// An event type family. Serialised with serde's external tagging, so the JSON of an event is
/// `{"EventType": {payload}}`; the tag is the event type stored in the envelope and the name
/// of the protobuf message in `proto/`.
pub trait DomainEvent: Serialize + DeserializeOwned + Clone + std::fmt::Debug + Send + Sync + 'static {
    /// Every event type of the family (protobuf message names).
    const EVENT_TYPES: &'static [&'static str];

    /// The event's type name.
    fn event_type(&self) -> &'static str;

    /// The payload schema version ([`crate::upcast::current_version`]). Bumped only with an
    /// upcaster for older versions.
    fn schema_version(&self) -> u32 {
        crate::upcast::current_version(self.event_type())
    }

    /// Splits the event into its type and payload JSON.
    fn to_payload(&self) -> Result<(&'static str, serde_json::Value), serde_json::Error> {
        let tagged = serde_json::to_value(self)?;
        let payload = match tagged {
            serde_json::Value::Object(mut map) => {
                map.remove(self.event_type()).unwrap_or(serde_json::Value::Object(Default::default()))
            }
            // unit variants serialise as a bare string
            _ => serde_json::Value::Object(Default::default()),
        };
        Ok((self.event_type(), payload))
    }

    /// Rebuilds an event from its type and payload JSON.
    fn from_payload(event_type: &str, payload: serde_json::Value) -> Result<Self, serde_json::Error> {
        let mut map = serde_json::Map::new();
        map.insert(event_type.to_string(), payload);
        serde_json::from_value(serde_json::Value::Object(map))
    }
}

/// Declares an event family: an enum whose variants wrap payload structs of the same name.
/// The variant name is the event type, the serde tag and the protobuf message name.
#[macro_export]
macro_rules! event_family {
    (
        $(#[$meta:meta])*
        pub enum $name:ident {
            $( $(#[$vmeta:meta])* $variant:ident ),+ $(,)?
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, PartialEq, ::serde::Serialize, ::serde::Deserialize)]
        // Events are plain data decoded one at a time; boxing the large ones would only make
        // every match and constructor noisier.
        #[allow(clippy::large_enum_variant)]
        pub enum $name {
            $( $(#[$vmeta])* $variant($variant) ),+
        }

        impl $crate::DomainEvent for $name {
            const EVENT_TYPES: &'static [&'static str] = &[$(stringify!($variant)),+];

            fn event_type(&self) -> &'static str {
                match self {
                    $( $name::$variant(_) => stringify!($variant) ),+
                }
            }
        }

        $(
            impl From<$variant> for $name {
                fn from(e: $variant) -> Self {
                    $name::$variant(e)
                }
            }
        )+
    };
}
