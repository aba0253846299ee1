//! # kefu-contract
//!
//! The event contract as code. `proto/` (compiled at build time into a descriptor set)
//! defines the envelope and every payload; this crate turns a [`RecordedEvent`] into the
//! binary `kefu.v1.Envelope` that goes on Kafka and back, and renders the event catalogue.
//!
//! How the Rust types and `proto/` are kept in agreement: the domain's JSON form of every
//! event *is* the proto3 canonical JSON form of its message (camelCase field names, enum
//! value names, RFC 3339 timestamps). Encoding parses that JSON against the descriptor
//! (unknown fields are errors) and decoding prints it back, so a field present on one side
//! only fails loudly; `tests/agreement.rs` checks every event type field by field.

use std::{collections::HashMap, sync::OnceLock};

use kefu_app::RecordedEvent;
use prost::Message;
use prost_reflect::{
    DescriptorPool, DeserializeOptions, DynamicMessage, FieldDescriptor, MessageDescriptor, SerializeOptions,
};

pub mod catalogue;
mod read;
mod timestamp;
mod typed;
mod wire;

pub use timestamp::{RFC3339_MAX, rfc3339};

/// The compiled descriptor set of `proto/` (a `google.protobuf.FileDescriptorSet`).
pub static DESCRIPTOR_SET: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/kefu.fds"));

/// Full name of the envelope message.
pub const ENVELOPE: &str = "kefu.v1.Envelope";

/// The `content-type` header kefu puts on every Kafka record.
pub const CONTENT_TYPE: &str = "application/x-protobuf; messageType=kefu.v1.Envelope";

/// Why an event could not be encoded or decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ContractError {
    /// The event type has no member in the envelope's `payload` oneof.
    #[error("event type `{0}` is not in proto/ (no member of Envelope.payload has that message type)")]
    UnknownEventType(String),
    /// The payload does not fit its message definition.
    #[error("{event_type} does not match proto/: {reason}")]
    PayloadMismatch {
        /// Which event type.
        event_type: String,
        /// What did not fit.
        reason: String,
    },
    /// The bytes are not a valid envelope.
    #[error("not a kefu.v1.Envelope: {0}")]
    Malformed(String),
}

/// The loaded contract: descriptors and the payload member for each event type.
pub struct Contract {
    pool: DescriptorPool,
    envelope: MessageDescriptor,
    actor: MessageDescriptor,
    members: HashMap<String, FieldDescriptor>,
    /// How the direct reader reads each payload and the actor into their types.
    plans: typed::Plans,
    payload_plans: HashMap<String, typed::PlanId>,
    actor_plan: typed::PlanId,
}

/// Envelope field numbers (proto/kefu/v1/envelope.proto): the event type, the stream type, and
/// the first member of the `payload` oneof (every field from there on is a payload).
const ENVELOPE_EVENT_TYPE: u32 = 2;
const ENVELOPE_STREAM_TYPE: u32 = 5;
const FIRST_PAYLOAD_FIELD: u32 = 100;

impl Contract {
    /// The contract compiled into this binary.
    pub fn get() -> &'static Contract {
        static CONTRACT: OnceLock<Contract> = OnceLock::new();
        CONTRACT.get_or_init(|| {
            // The descriptor set is produced by our own build script from proto/; if it does
            // not load, the binary is broken and nothing can be published.
            #[allow(clippy::expect_used)]
            let pool = DescriptorPool::decode(DESCRIPTOR_SET).expect("embedded descriptor set is valid");
            Contract::from_pool(pool)
        })
    }

    fn from_pool(pool: DescriptorPool) -> Contract {
        #[allow(clippy::expect_used)]
        let envelope = pool.get_message_by_name(ENVELOPE).expect("proto/ defines kefu.v1.Envelope");
        let mut members = HashMap::new();
        if let Some(oneof) = envelope.oneofs().find(|o| o.name() == "payload") {
            for field in oneof.fields() {
                if let prost_reflect::Kind::Message(m) = field.kind() {
                    members.insert(m.name().to_string(), field);
                }
            }
        }
        #[allow(clippy::expect_used)]
        let actor = pool.get_message_by_name("kefu.v1.Actor").expect("proto/ defines kefu.v1.Actor");
        let mut plans = typed::Plans::default();
        let mut payload_plans = HashMap::new();
        for (event_type, field) in &members {
            if let prost_reflect::Kind::Message(m) = field.kind() {
                payload_plans.insert(event_type.clone(), plans.add(&m));
            }
        }
        let actor_plan = plans.add(&actor);
        Contract { pool, envelope, actor, members, plans, payload_plans, actor_plan }
    }

    /// The descriptor pool (every message and enum of `proto/`).
    pub fn pool(&self) -> &DescriptorPool {
        &self.pool
    }

    /// The envelope's descriptor.
    pub fn envelope(&self) -> &MessageDescriptor {
        &self.envelope
    }

    /// Event types the contract defines, sorted.
    pub fn event_types(&self) -> Vec<&str> {
        let mut v: Vec<&str> = self.members.keys().map(String::as_str).collect();
        v.sort_unstable();
        v
    }

    /// The first name in `types` that is not an event type, with its index (for filters).
    pub fn unknown_event_type<'a>(&self, types: &'a [String]) -> Option<(usize, &'a str)> {
        types.iter().enumerate().find(|(_, t)| !self.members.contains_key(t.as_str())).map(|(i, t)| (i, t.as_str()))
    }

    /// The message descriptor of an event type's payload.
    pub fn payload_descriptor(&self, event_type: &str) -> Result<MessageDescriptor, ContractError> {
        match self.members.get(event_type).map(FieldDescriptor::kind) {
            Some(prost_reflect::Kind::Message(m)) => Ok(m),
            _ => Err(ContractError::UnknownEventType(event_type.to_string())),
        }
    }

    /// Parses a payload's JSON against its message (unknown fields are errors).
    pub fn payload_message(
        &self,
        event_type: &str,
        payload: &serde_json::Value,
    ) -> Result<DynamicMessage, ContractError> {
        let desc = self.payload_descriptor(event_type)?;
        DynamicMessage::deserialize_with_options(desc, payload, &DeserializeOptions::new().deny_unknown_fields(true))
            .map_err(|e| ContractError::PayloadMismatch { event_type: event_type.to_string(), reason: e.to_string() })
    }

    /// Builds the envelope message for an event.
    pub fn envelope_message(&self, event: &RecordedEvent) -> Result<DynamicMessage, ContractError> {
        // Older payload versions travel as the current one (the envelope says which).
        let upcast = event.upcast().map_err(|e| ContractError::PayloadMismatch {
            event_type: event.event_type.clone(),
            reason: e.to_string(),
        })?;
        let event = upcast.as_ref();
        let member = self
            .members
            .get(&event.event_type)
            .ok_or_else(|| ContractError::UnknownEventType(event.event_type.clone()))?;
        let mut json = serde_json::to_value(event).map_err(|e| ContractError::Malformed(e.to_string()))?;
        if let serde_json::Value::Object(map) = &mut json {
            let payload = map.remove("payload").unwrap_or_default();
            map.insert(member.json_name().to_string(), payload);
        }
        DynamicMessage::deserialize_with_options(
            self.envelope.clone(),
            &json,
            &DeserializeOptions::new().deny_unknown_fields(true),
        )
        .map_err(|e| ContractError::PayloadMismatch { event_type: event.event_type.clone(), reason: e.to_string() })
    }

    /// Encodes an event as a binary `kefu.v1.Envelope`, writing the wire format directly
    /// ([`wire`]; the same bytes as [`Self::encode_dynamic`], several times faster).
    pub fn encode(&self, event: &RecordedEvent) -> Result<Vec<u8>, ContractError> {
        use wire::{write_nested, write_string, write_time, write_varint};
        let upcast = event.upcast().map_err(|e| ContractError::PayloadMismatch {
            event_type: event.event_type.clone(),
            reason: e.to_string(),
        })?;
        let e = upcast.as_ref();
        let member =
            self.members.get(&e.event_type).ok_or_else(|| ContractError::UnknownEventType(e.event_type.clone()))?;
        let prost_reflect::Kind::Message(payload_desc) = member.kind() else {
            return Err(ContractError::UnknownEventType(e.event_type.clone()));
        };
        let mut out = Vec::with_capacity(512);
        let mut uuid = uuid::Uuid::encode_buffer();
        let mut id = |u: &uuid::Uuid| u.hyphenated().encode_lower(&mut uuid).to_string();
        write_string(1, &id(&e.event_id), false, &mut out);
        write_string(2, &e.event_type, false, &mut out);
        write_varint(3, u64::from(e.schema_version), &mut out);
        write_string(4, &id(&e.stream_id), false, &mut out);
        write_string(5, &e.stream_type, false, &mut out);
        write_varint(6, e.stream_version as u64, &mut out);
        if let Some(c) = &e.customer_id {
            write_string(7, &id(c), true, &mut out);
        }
        write_varint(8, e.global_position as u64, &mut out);
        let mut inner = Vec::with_capacity(64);
        for (number, t) in [(9, &e.occurred_at), (10, &e.recorded_at)] {
            inner.clear();
            write_time(t.timestamp(), t.timestamp_subsec_nanos(), &mut inner);
            write_nested(number, &inner, &mut out);
        }
        inner.clear();
        let actor = serde_json::to_value(&e.actor).map_err(|err| ContractError::Malformed(err.to_string()))?;
        wire::write_message(&self.actor, &actor, &mut inner).map_err(|r| wire::mismatch(&e.event_type, r))?;
        write_nested(11, &inner, &mut out);
        write_string(12, &id(&e.correlation_id), false, &mut out);
        write_string(13, &id(&e.causation_id), false, &mut out);
        write_string(14, &id(&e.command_id), false, &mut out);
        inner.clear();
        wire::write_message(&payload_desc, &e.payload, &mut inner).map_err(|r| wire::mismatch(&e.event_type, r))?;
        write_nested(member.number(), &inner, &mut out);
        Ok(out)
    }

    /// Encodes an event through a `DynamicMessage` (the reference for [`Self::encode`]).
    pub fn encode_dynamic(&self, event: &RecordedEvent) -> Result<Vec<u8>, ContractError> {
        Ok(self.envelope_message(event)?.encode_to_vec())
    }

    /// Decodes a binary `kefu.v1.Envelope`, reading the wire format directly ([`read`]; the
    /// same event as [`Self::decode_dynamic`], which it falls back to whenever it is not sure).
    pub fn decode(&self, bytes: &[u8]) -> Result<RecordedEvent, ContractError> {
        match read::envelope(self, bytes, true) {
            Ok(event) => Ok(event),
            Err(read::Declined) => self.decode_dynamic(bytes),
        }
    }

    /// The direct reader alone: `None` where it declines (and [`Self::decode`] falls back).
    pub fn decode_direct(&self, bytes: &[u8]) -> Option<RecordedEvent> {
        read::envelope(self, bytes, true).ok()
    }

    /// Decodes through a `DynamicMessage` (the reference for [`Self::decode`]).
    pub fn decode_dynamic(&self, bytes: &[u8]) -> Result<RecordedEvent, ContractError> {
        let message = DynamicMessage::decode(self.envelope.clone(), bytes)
            .map_err(|e| ContractError::Malformed(e.to_string()))?;
        self.from_envelope_message(&message)
    }

    /// The event type and stream type of an encoded envelope, read from its top-level fields
    /// without decoding anything else: how a reader that ignores most events skips them cheaply.
    pub fn peek_types<'a>(&self, bytes: &'a [u8]) -> Result<(&'a str, &'a str), ContractError> {
        let malformed = || ContractError::Malformed("the envelope's fields cannot be read".into());
        let (mut event_type, mut stream_type) = (None, None);
        for field in read::fields(bytes) {
            let (number, wire, _) = field.map_err(|_| malformed())?;
            let text = || match wire {
                read::Wire::Bytes(c) => std::str::from_utf8(c).map_err(|_| malformed()),
                _ => Err(malformed()),
            };
            match number {
                ENVELOPE_EVENT_TYPE => event_type = Some(text()?),
                ENVELOPE_STREAM_TYPE => stream_type = Some(text()?),
                _ => {}
            }
            if let (Some(e), Some(s)) = (event_type, stream_type) {
                return Ok((e, s));
            }
        }
        Err(ContractError::Malformed("the envelope has no event type or stream type".into()))
    }

    /// Decodes an envelope without its payload, which comes back as `null`: everything a reader
    /// needs to account for an event it does not read (stream, versions, positions, times),
    /// without the cost of the payload.
    pub fn decode_envelope_only(&self, bytes: &[u8]) -> Result<RecordedEvent, ContractError> {
        match read::envelope(self, bytes, false) {
            Ok(event) => Ok(event),
            Err(read::Declined) => self.decode_envelope_only_dynamic(bytes),
        }
    }

    /// [`Self::decode_envelope_only`] through a `DynamicMessage` (its reference).
    pub fn decode_envelope_only_dynamic(&self, bytes: &[u8]) -> Result<RecordedEvent, ContractError> {
        let mut header = Vec::with_capacity(256);
        for field in read::fields(bytes) {
            let (number, _, whole) =
                field.map_err(|_| ContractError::Malformed("the envelope's fields cannot be read".into()))?;
            if number < FIRST_PAYLOAD_FIELD {
                header.extend_from_slice(whole);
            }
        }
        let message = DynamicMessage::decode(self.envelope.clone(), &header[..])
            .map_err(|e| ContractError::Malformed(e.to_string()))?;
        self.event_of(&message, false)
    }

    /// Decodes an envelope without its payload (as [`Self::decode_envelope_only`]) and keeps
    /// the payload encoded, for a reader that decodes it straight into its own types
    /// ([`Split::payload`]) instead of into JSON first.
    pub fn decode_split<'a>(&'a self, bytes: &'a [u8]) -> Result<Split<'a>, ContractError> {
        match read::envelope_parts(self, bytes) {
            Ok((event, payload)) => {
                let number = self.members.get(&event.event_type).map(FieldDescriptor::number);
                let payload = payload.filter(|(n, _)| Some(*n) == number).map(|(_, contents)| contents);
                Ok(Split { contract: self, event, bytes, payload })
            }
            Err(read::Declined) => {
                Ok(Split { contract: self, event: self.decode_envelope_only_dynamic(bytes)?, bytes, payload: None })
            }
        }
    }

    /// Converts an envelope message into a [`RecordedEvent`].
    pub fn from_envelope_message(&self, message: &DynamicMessage) -> Result<RecordedEvent, ContractError> {
        self.event_of(message, true)
    }

    fn event_of(&self, message: &DynamicMessage, with_payload: bool) -> Result<RecordedEvent, ContractError> {
        let mut json = to_json(message)?;
        let map = json.as_object_mut().ok_or_else(|| ContractError::Malformed("envelope is not an object".into()))?;
        let event_type = map.get("eventType").and_then(|v| v.as_str()).unwrap_or_default().to_string();
        let member =
            self.members.get(&event_type).ok_or_else(|| ContractError::UnknownEventType(event_type.clone()))?;
        if with_payload && !message.has_field(member) {
            return Err(ContractError::Malformed(format!(
                "eventType is {event_type} but the payload is not a {event_type}"
            )));
        }
        let payload =
            if with_payload { map.remove(member.json_name()).unwrap_or_default() } else { serde_json::Value::Null };
        // Drop every other (unset) oneof member the default-emitting printer may add.
        for other in self.members.values() {
            map.remove(other.json_name());
        }
        map.insert("payload".into(), payload);
        serde_json::from_value(json).map_err(|e| ContractError::Malformed(e.to_string()))
    }
}

/// An envelope decoded without its payload, the payload still encoded ([`Contract::decode_split`]).
pub struct Split<'a> {
    contract: &'a Contract,
    /// The event, its payload `null`.
    pub event: RecordedEvent,
    /// The whole envelope.
    bytes: &'a [u8],
    /// The payload message, when the direct reader can read it.
    payload: Option<&'a [u8]>,
}

impl Split<'_> {
    /// The payload in an event family's types: the same event and the same errors as
    /// [`Contract::decode`] then [`RecordedEvent::decode`], read straight from the encoded
    /// message when the payload is at its type's current version (see `typed`), through its
    /// JSON otherwise or whenever the direct reader declines.
    pub fn payload<E: kefu_domain::DomainEvent>(&self) -> Result<E, ContractError> {
        if let Some(event) = self.payload_direct() {
            return Ok(event);
        }
        let event_type = self.event.event_type.as_str();
        self.contract
            .decode(self.bytes)?
            .decode::<E>()
            .map_err(|e| ContractError::PayloadMismatch { event_type: event_type.to_string(), reason: e.to_string() })
    }

    /// The direct reader alone: `None` where it declines (and [`Self::payload`] reads the JSON).
    pub fn payload_direct<E: kefu_domain::DomainEvent>(&self) -> Option<E> {
        let event_type = self.event.event_type.as_str();
        if self.event.schema_version != kefu_domain::upcast::current_version(event_type) {
            return None;
        }
        let plan = self.contract.payload_plans.get(event_type)?;
        E::deserialize(self.contract.plans.event(event_type, *plan, self.payload?)).ok()
    }

    /// The whole event, its payload as JSON: what [`Contract::decode`] gives, without reading
    /// the envelope again where the direct reader read it.
    pub fn into_whole(self) -> Result<RecordedEvent, ContractError> {
        if let Some(bytes) = self.payload
            && let Ok(payload) = read::payload_json(self.contract, &self.event.event_type, bytes)
        {
            return Ok(RecordedEvent { payload, ..self.event });
        }
        self.contract.decode(self.bytes)
    }
}

/// Prints a message as proto3 JSON with every non-optional field present and 64-bit integers
/// as numbers (how kefu stores payloads).
pub fn to_json(message: &DynamicMessage) -> Result<serde_json::Value, ContractError> {
    let options = SerializeOptions::new().stringify_64_bit_integers(false).skip_default_fields(false);
    message
        .serialize_with_options(serde_json::value::Serializer, &options)
        .map_err(|e| ContractError::Malformed(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Utc;
    use kefu_app::{Actor, ActorKind};
    use uuid::Uuid;

    pub(crate) fn recorded(event_type: &str, payload: serde_json::Value) -> RecordedEvent {
        RecordedEvent {
            event_id: Uuid::now_v7(),
            event_type: event_type.into(),
            schema_version: kefu_domain::upcast::current_version(event_type),
            stream_id: Uuid::now_v7(),
            stream_type: "customer".into(),
            stream_version: 3,
            customer_id: Some(Uuid::now_v7()),
            global_position: 5_000_000_000,
            occurred_at: kefu_app::envelope::to_storage_precision(Utc::now()),
            recorded_at: kefu_app::envelope::to_storage_precision(Utc::now()),
            actor: Actor {
                id: "agent.chen".into(),
                name: Some("陈静".into()),
                kind: ActorKind::User,
                roles: vec!["agent".into()],
            },
            correlation_id: Uuid::now_v7(),
            causation_id: Uuid::now_v7(),
            command_id: Uuid::now_v7(),
            payload,
        }
    }

    #[test]
    fn every_example_event_round_trips_through_binary_protobuf() {
        let contract = Contract::get();
        for example in kefu_domain::example_events() {
            let event_type = example.event_type;
            let event = recorded(event_type, example.payload);
            let bytes = contract.encode(&event).unwrap();
            let back = contract.decode(&bytes).unwrap();
            assert_eq!(back, event, "{event_type}");
        }
    }

    #[test]
    fn unknown_payload_fields_are_refused() {
        let contract = Contract::get();
        let mut event = recorded("ConsentGranted", serde_json::json!({"purpose": "CONSENT_PURPOSE_SURVEYS"}));
        assert!(contract.encode(&event).is_ok());
        event.payload = serde_json::json!({"purpose": "CONSENT_PURPOSE_SURVEYS", "mood": "happy"});
        let err = contract.encode(&event).unwrap_err();
        assert!(matches!(err, ContractError::PayloadMismatch { .. }), "{err}");
        event.event_type = "SomethingElse".into();
        assert_eq!(contract.encode(&event).unwrap_err(), ContractError::UnknownEventType("SomethingElse".into()));
    }

    #[test]
    fn garbage_is_malformed_not_a_panic() {
        let contract = Contract::get();
        assert!(matches!(contract.decode(b"\xff\xff\xff"), Err(ContractError::Malformed(_))));
        assert!(matches!(contract.decode(b""), Err(ContractError::UnknownEventType(_))));
    }
}
