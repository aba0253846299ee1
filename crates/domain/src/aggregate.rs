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
        Self::from_payload_ref(event_type, &payload)
    }

    /// [`DomainEvent::from_payload`] reading the payload where it is: the same answer and the
    /// same errors as deserializing `{"EventType": payload}`, without copying the payload into
    /// a tagged object first (projectors decode every event they read).
    fn from_payload_ref(event_type: &str, payload: &serde_json::Value) -> Result<Self, serde_json::Error> {
        Self::deserialize(Tagged { event_type, payload })
    }
}

/// An externally tagged enum's value as two parts, the tag and the content: what serde_json's
/// deserializer of `{"tag": content}` presents, borrowed.
struct Tagged<'a> {
    event_type: &'a str,
    payload: &'a serde_json::Value,
}

impl<'de> serde::Deserializer<'de> for Tagged<'de> {
    type Error = serde_json::Error;

    fn deserialize_any<V: serde::de::Visitor<'de>>(self, visitor: V) -> Result<V::Value, Self::Error> {
        visitor.visit_enum(self)
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf option unit
        unit_struct newtype_struct seq tuple tuple_struct map struct enum identifier ignored_any
    }
}

impl<'de> serde::de::EnumAccess<'de> for Tagged<'de> {
    type Error = serde_json::Error;
    type Variant = Content<'de>;

    fn variant_seed<V: serde::de::DeserializeSeed<'de>>(
        self,
        seed: V,
    ) -> Result<(V::Value, Self::Variant), Self::Error> {
        let tag = serde::de::value::BorrowedStrDeserializer::<serde_json::Error>::new(self.event_type);
        Ok((seed.deserialize(tag)?, Content(self.payload)))
    }
}

/// The content of a tagged value. Event families have newtype variants only; the other kinds
/// answer as serde_json's do.
struct Content<'a>(&'a serde_json::Value);

impl<'de> serde::de::VariantAccess<'de> for Content<'de> {
    type Error = serde_json::Error;

    fn unit_variant(self) -> Result<(), Self::Error> {
        <() as serde::Deserialize>::deserialize(self.0)
    }

    fn newtype_variant_seed<T: serde::de::DeserializeSeed<'de>>(self, seed: T) -> Result<T::Value, Self::Error> {
        seed.deserialize(self.0)
    }

    fn tuple_variant<V: serde::de::Visitor<'de>>(self, _len: usize, visitor: V) -> Result<V::Value, Self::Error> {
        serde::Deserializer::deserialize_seq(self.0, visitor)
    }

    fn struct_variant<V: serde::de::Visitor<'de>>(
        self,
        _fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Self::Error> {
        serde::Deserializer::deserialize_map(self.0, visitor)
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
