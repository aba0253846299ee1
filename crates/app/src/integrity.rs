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

use chrono::{DateTime, Utc};
use serde_json::Value;
use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::RecordedEvent;

/// A SHA-256 digest.
pub type Hash = [u8; 32];

/// The `previous` of a stream's first event and of the first anchor.
pub const GENESIS: Hash = [0u8; 32];

/// The fields of an event that its hash covers, borrowed: what the writer hashes before the
/// event is stored, and what verification builds from the stored row.
#[derive(Debug, Clone, Copy)]
pub struct EventFields<'a> {
    /// Global position.
    pub global_position: i64,
    /// Event id.
    pub event_id: Uuid,
    /// Stream.
    pub stream_id: Uuid,
    /// Stream type.
    pub stream_type: &'a str,
    /// Version in the stream.
    pub stream_version: i64,
    /// Event type.
    pub event_type: &'a str,
    /// Payload schema version.
    pub schema_version: u32,
    /// Customer.
    pub customer_id: Option<Uuid>,
    /// Business time (at storage precision).
    pub occurred_at: DateTime<Utc>,
    /// Recorded time (at storage precision).
    pub recorded_at: DateTime<Utc>,
    /// The actor in canonical JSON ([`actor_json`]).
    pub actor_json: &'a str,
    /// Correlation.
    pub correlation_id: Uuid,
    /// Causation.
    pub causation_id: Uuid,
    /// Command.
    pub command_id: Uuid,
    /// Payload.
    pub payload: &'a Value,
}

/// The canonical JSON of an actor, as [`canonical`] writes it.
pub fn actor_json(actor: &crate::Actor) -> String {
    canonical_json(&serde_json::to_value(actor).unwrap_or(Value::Null))
}

/// The canonical text of an event that its hash covers.
pub fn canonical(e: &RecordedEvent) -> String {
    let actor = actor_json(&e.actor);
    let mut out = Vec::with_capacity(512);
    canonical_into(&fields_of(e, &actor), &mut out);
    String::from_utf8(out).unwrap_or_default()
}

fn fields_of<'a>(e: &'a RecordedEvent, actor_json: &'a str) -> EventFields<'a> {
    EventFields {
        global_position: e.global_position,
        event_id: e.event_id,
        stream_id: e.stream_id,
        stream_type: &e.stream_type,
        stream_version: e.stream_version,
        event_type: &e.event_type,
        schema_version: e.schema_version,
        customer_id: e.customer_id,
        occurred_at: e.occurred_at,
        recorded_at: e.recorded_at,
        actor_json,
        correlation_id: e.correlation_id,
        causation_id: e.causation_id,
        command_id: e.command_id,
        payload: &e.payload,
    }
}

/// Appends the canonical text of `e` to `out`: one field per line.
pub fn canonical_into(e: &EventFields<'_>, out: &mut Vec<u8>) {
    use std::io::Write;
    let mut uuid = Uuid::encode_buffer();
    let line = |out: &mut Vec<u8>, text: &str| {
        out.extend_from_slice(text.as_bytes());
        out.push(b'\n');
    };
    line(out, "kefu-event-1");
    let _ = writeln!(out, "{}", e.global_position);
    line(out, e.event_id.hyphenated().encode_lower(&mut uuid));
    line(out, e.stream_id.hyphenated().encode_lower(&mut uuid));
    line(out, e.stream_type);
    let _ = writeln!(out, "{}", e.stream_version);
    line(out, e.event_type);
    let _ = writeln!(out, "{}", e.schema_version);
    match e.customer_id {
        Some(c) => line(out, c.hyphenated().encode_lower(&mut uuid)),
        None => out.push(b'\n'),
    }
    let _ = writeln!(out, "{}", e.occurred_at.format("%Y-%m-%dT%H:%M:%S%.6fZ"));
    let _ = writeln!(out, "{}", e.recorded_at.format("%Y-%m-%dT%H:%M:%S%.6fZ"));
    line(out, e.actor_json);
    for id in [e.correlation_id, e.causation_id, e.command_id] {
        line(out, id.hyphenated().encode_lower(&mut uuid));
    }
    write_json(e.payload, out);
    out.push(b'\n');
}

/// JSON with object keys sorted (by their UTF-8 bytes) and no whitespace.
///
/// Numbers are written as they read back from PostgreSQL's `jsonb`, so that the hash of an
/// event computed before it is stored equals the one computed from the stored row: `jsonb`
/// keeps decimal digits but prints no exponent and no negative zero, so a float that is a
/// whole number within 64 bits is written as an integer (`1e16` → `10000000000000000`, which
/// reads back as an integer) and `-0.0` as `0.0`. Every other number is written as serde_json
/// writes it.
pub fn canonical_json(v: &Value) -> String {
    let mut out = Vec::new();
    write_json(v, &mut out);
    String::from_utf8(out).unwrap_or_default()
}

fn write_json(v: &Value, out: &mut Vec<u8>) {
    match v {
        Value::Object(m) => {
            let mut keys: Vec<&String> = m.keys().collect();
            keys.sort();
            out.push(b'{');
            for (i, k) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                let _ = serde_json::to_writer(&mut *out, k);
                out.push(b':');
                write_json(&m[k], out);
            }
            out.push(b'}');
        }
        Value::Array(a) => {
            out.push(b'[');
            for (i, x) in a.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_json(x, out);
            }
            out.push(b']');
        }
        Value::Number(n) if n.is_f64() => write_float(n, out),
        other => {
            let _ = serde_json::to_writer(&mut *out, other);
        }
    }
}

fn write_float(n: &serde_json::Number, out: &mut Vec<u8>) {
    use std::io::Write;
    let Some(f) = n.as_f64() else {
        let _ = serde_json::to_writer(&mut *out, n);
        return;
    };
    if f == 0.0 {
        out.extend_from_slice(b"0.0");
        return;
    }
    let text = n.to_string();
    let whole = f.fract() == 0.0;
    if whole && text.contains('e') {
        // Whole floats of 2^64 and beyond read back as floats (they fit no integer type).
        if (0.0..18_446_744_073_709_551_616.0).contains(&f) {
            let _ = write!(out, "{}", f as u64);
            return;
        }
        if (-9_223_372_036_854_775_808.0..0.0).contains(&f) {
            let _ = write!(out, "{}", f as i64);
            return;
        }
    }
    out.extend_from_slice(text.as_bytes());
}

/// The hash of an event given the hash of the one before it in its stream.
pub fn event_hash(previous: &Hash, e: &RecordedEvent) -> Hash {
    let actor = actor_json(&e.actor);
    fields_hash(previous, &fields_of(e, &actor), &mut Vec::new())
}

/// The hash of an event's fields given the hash of the one before it; `scratch` is reused
/// for the canonical text.
pub fn fields_hash(previous: &Hash, e: &EventFields<'_>, scratch: &mut Vec<u8>) -> Hash {
    scratch.clear();
    canonical_into(e, scratch);
    let mut h = Sha256::new();
    h.update(previous);
    h.update(&scratch[..]);
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
