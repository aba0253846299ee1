//! The envelope every event travels in (DESIGN.md): identity, stream, positions, both times,
//! who and why. Its JSON form (camelCase) is the proto3 JSON form of `kefu.v1.Envelope`
//! without the payload.

use chrono::{DateTime, SubsecRound, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

kefu_domain::wire_enum! {
    /// What kind of principal acted.
    pub enum ActorKind: "ACTOR_KIND" {
        /// A signed-in person (agent, supervisor, analyst…).
        User = "USER",
        /// kefu itself (schedulers, policies).
        System = "SYSTEM",
        /// A batch import on behalf of a person.
        Import = "IMPORT",
    }
}

/// Who did it: recorded on every event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Actor {
    /// Stable id (the token subject for users).
    pub id: String,
    /// Display name when it happened.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// User, system or import.
    pub kind: ActorKind,
    /// Roles held when it happened.
    #[serde(default)]
    pub roles: Vec<String>,
}

impl Actor {
    /// kefu itself, acting for the named component (e.g. `sla-scheduler`).
    pub fn system(component: &str) -> Self {
        Actor {
            id: format!("system:{component}"),
            name: Some(component.to_string()),
            kind: ActorKind::System,
            roles: vec![],
        }
    }
}

/// An event as stored and published: envelope plus payload.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RecordedEvent {
    /// Unique id of this event.
    pub event_id: Uuid,
    /// Event type = protobuf message name, e.g. `CustomerRegistered`.
    pub event_type: String,
    /// Payload schema version.
    pub schema_version: u32,
    /// The stream (aggregate instance).
    pub stream_id: Uuid,
    /// The stream's type, e.g. `customer`.
    pub stream_type: String,
    /// 1-based position of the event in its stream.
    pub stream_version: i64,
    /// The customer the event concerns (Kafka key; absent for configuration streams).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub customer_id: Option<Uuid>,
    /// 1-based position in the global log, dense and in commit order.
    pub global_position: i64,
    /// Business time: when it happened (may be historical on imports).
    pub occurred_at: DateTime<Utc>,
    /// System time: when kefu recorded it.
    pub recorded_at: DateTime<Utc>,
    /// Who.
    pub actor: Actor,
    /// The conversation this belongs to (one user action, one import run…).
    pub correlation_id: Uuid,
    /// The message that caused it: a command id or another event's id.
    pub causation_id: Uuid,
    /// The command that produced it.
    pub command_id: Uuid,
    /// The payload (proto3 JSON of the event message).
    pub payload: serde_json::Value,
}

impl RecordedEvent {
    /// The Kafka key: the customer, or the stream for streams without a customer.
    pub fn partition_key(&self) -> Uuid {
        self.customer_id.unwrap_or(self.stream_id)
    }

    /// Decodes the payload into an event family.
    pub fn decode<E: kefu_domain::DomainEvent>(&self) -> Result<E, serde_json::Error> {
        if self.schema_version == kefu_domain::upcast::current_version(&self.event_type) {
            return E::from_payload_ref(&self.event_type, &self.payload);
        }
        let (_, payload) = kefu_domain::upcast::upcast(&self.event_type, self.schema_version, self.payload.clone())
            .map_err(serde::de::Error::custom)?;
        E::from_payload(&self.event_type, payload)
    }

    /// The event with its payload at the current version of its type (what Kafka carries and
    /// exports contain).
    /// Borrows the event when it is already current (the usual case: no copy on the relay's
    /// path).
    pub fn upcast(&self) -> Result<std::borrow::Cow<'_, RecordedEvent>, kefu_domain::upcast::UpcastError> {
        if self.schema_version == kefu_domain::upcast::current_version(&self.event_type) {
            return Ok(std::borrow::Cow::Borrowed(self));
        }
        let (version, payload) =
            kefu_domain::upcast::upcast(&self.event_type, self.schema_version, self.payload.clone())?;
        Ok(std::borrow::Cow::Owned(RecordedEvent { schema_version: version, payload, ..self.clone() }))
    }
}

/// Times are kept at microsecond precision, the precision PostgreSQL stores, so an event
/// read back equals the event written.
pub fn to_storage_precision(t: DateTime<Utc>) -> DateTime<Utc> {
    t.trunc_subsecs(6)
}
