//! The tamper-evident history: every event's hash chains to the previous event of its stream,
//! and anchors chain digests of the whole log.
//!
//! `hash(e) = SHA-256(previous || canonical(e))`, where `previous` is the hash of the event
//! before `e` in its stream (32 zero bytes for the first) and `canonical(e)` is every envelope
//! field and the payload in a fixed text form: one field per line, times as RFC 3339 UTC with
//! microseconds, JSON with object keys sorted and no insignificant whitespace. Changing any
//! stored byte of an event, removing one or reordering them changes every later hash of its
//! stream. An anchor covers the log up to a position:
//! `anchor = SHA-256(previous anchor || hash(e₁) || … || hash(eₙ))` over the events after the
//! previous anchor, in global order — so rewriting a whole stream consistently still breaks the
//! anchors, which auditors can copy elsewhere.

use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::RecordedEvent;

/// A SHA-256 digest.
pub type Hash = [u8; 32];

/// The `previous` of a stream's first event and of the first anchor.
pub const GENESIS: Hash = [0u8; 32];

/// The canonical text of an event that its hash covers.
pub fn canonical(e: &RecordedEvent) -> String {
    let mut out = String::with_capacity(512);
    let time = |t: &chrono::DateTime<chrono::Utc>| t.format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string();
    let actor = serde_json::to_value(&e.actor).unwrap_or(Value::Null);
    for field in [
        "kefu-event-1".to_string(),
        e.global_position.to_string(),
        e.event_id.to_string(),
        e.stream_id.to_string(),
        e.stream_type.clone(),
        e.stream_version.to_string(),
        e.event_type.clone(),
        e.schema_version.to_string(),
        e.customer_id.map(|c| c.to_string()).unwrap_or_default(),
        time(&e.occurred_at),
        time(&e.recorded_at),
        canonical_json(&actor),
        e.correlation_id.to_string(),
        e.causation_id.to_string(),
        e.command_id.to_string(),
        canonical_json(&e.payload),
    ] {
        out.push_str(&field);
        out.push('\n');
    }
    out
}

/// JSON with object keys sorted (by their UTF-8 bytes) and no whitespace.
pub fn canonical_json(v: &Value) -> String {
    let mut out = String::new();
    write_json(v, &mut out);
    out
}

fn write_json(v: &Value, out: &mut String) {
    match v {
        Value::Object(m) => {
            let mut keys: Vec<&String> = m.keys().collect();
            keys.sort();
            out.push('{');
            for (i, k) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&Value::String(k.clone()).to_string());
                out.push(':');
                write_json(&m[k], out);
            }
            out.push('}');
        }
        Value::Array(a) => {
            out.push('[');
            for (i, x) in a.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_json(x, out);
            }
            out.push(']');
        }
        other => out.push_str(&other.to_string()),
    }
}

/// The hash of an event given the hash of the one before it in its stream.
pub fn event_hash(previous: &Hash, e: &RecordedEvent) -> Hash {
    let mut h = Sha256::new();
    h.update(previous);
    h.update(canonical(e).as_bytes());
    h.finalize().into()
}

/// Folds event hashes, in global order, into an anchor.
#[derive(Debug, Clone)]
pub struct AnchorBuilder(Sha256);

impl AnchorBuilder {
    /// Starts after the previous anchor.
    pub fn after(previous: &Hash) -> Self {
        let mut h = Sha256::new();
        h.update(previous);
        AnchorBuilder(h)
    }

    /// Adds the next event's hash.
    pub fn add(&mut self, event_hash: &Hash) {
        self.0.update(event_hash);
    }

    /// The anchor.
    pub fn finish(self) -> Hash {
        self.0.finalize().into()
    }
}

/// Lower-case hex.
pub fn to_hex(h: &Hash) -> String {
    hex::encode(h)
}

/// A hash from bytes, if they are 32 long.
pub fn from_bytes(b: &[u8]) -> Option<Hash> {
    b.try_into().ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Actor, ActorKind};
    use chrono::TimeZone;
    use serde_json::json;
    use uuid::Uuid;

    fn event(payload: Value) -> RecordedEvent {
        RecordedEvent {
            event_id: Uuid::from_u128(1),
            event_type: "CustomerRegistered".into(),
            schema_version: 1,
            stream_id: Uuid::from_u128(2),
            stream_type: "customer".into(),
            stream_version: 1,
            customer_id: Some(Uuid::from_u128(2)),
            global_position: 7,
            occurred_at: chrono::Utc.with_ymd_and_hms(2026, 11, 1, 8, 0, 0).unwrap(),
            recorded_at: chrono::Utc.with_ymd_and_hms(2026, 11, 1, 8, 0, 1).unwrap(),
            actor: Actor { id: "agent.chen".into(), name: None, kind: ActorKind::User, roles: vec!["agent".into()] },
            correlation_id: Uuid::from_u128(3),
            causation_id: Uuid::from_u128(4),
            command_id: Uuid::from_u128(4),
            payload,
        }
    }

    #[test]
    fn key_order_does_not_matter_but_every_byte_of_content_does() {
        let a: Value =
            serde_json::from_str(r#"{"name":"李雷","kind":"PERSON","contacts":{"phone":"1","email":"x"}}"#).unwrap();
        let b: Value =
            serde_json::from_str(r#"{"kind":"PERSON","contacts":{"email":"x","phone":"1"},"name":"李雷"}"#).unwrap();
        assert_eq!(canonical_json(&a), r#"{"contacts":{"email":"x","phone":"1"},"kind":"PERSON","name":"李雷"}"#);
        assert_eq!(event_hash(&GENESIS, &event(a.clone())), event_hash(&GENESIS, &event(b)));
        let changed = json!({"name": "李雷 ", "kind": "PERSON", "contacts": {"phone": "1", "email": "x"}});
        assert_ne!(event_hash(&GENESIS, &event(a.clone())), event_hash(&GENESIS, &event(changed)));
        let mut later = event(a.clone());
        later.recorded_at += chrono::Duration::microseconds(1);
        assert_ne!(event_hash(&GENESIS, &event(a.clone())), event_hash(&GENESIS, &later));
        assert_ne!(event_hash(&GENESIS, &event(a.clone())), event_hash(&[1; 32], &event(a)));
    }

    #[test]
    fn the_canonical_form_is_fixed() {
        // A change here breaks every stored chain: it needs a new `kefu-event-N` version.
        let e = event(json!({"b": [1, 2.5, null, true], "a": "x\n\"y\""}));
        assert_eq!(
            canonical(&e),
            "kefu-event-1\n7\n00000000-0000-0000-0000-000000000001\n00000000-0000-0000-0000-000000000002\n\
             customer\n1\nCustomerRegistered\n1\n00000000-0000-0000-0000-000000000002\n\
             2026-11-01T08:00:00.000000Z\n2026-11-01T08:00:01.000000Z\n\
             {\"id\":\"agent.chen\",\"kind\":\"ACTOR_KIND_USER\",\"roles\":[\"agent\"]}\n\
             00000000-0000-0000-0000-000000000003\n00000000-0000-0000-0000-000000000004\n\
             00000000-0000-0000-0000-000000000004\n{\"a\":\"x\\n\\\"y\\\"\",\"b\":[1,2.5,null,true]}\n"
        );
        assert_eq!(to_hex(&event_hash(&GENESIS, &e)).len(), 64,);
    }

    #[test]
    fn anchors_depend_on_order() {
        let (x, y) = ([1u8; 32], [2u8; 32]);
        let mut a = AnchorBuilder::after(&GENESIS);
        a.add(&x);
        a.add(&y);
        let mut b = AnchorBuilder::after(&GENESIS);
        b.add(&y);
        b.add(&x);
        assert_ne!(a.finish(), b.finish());
    }
}
