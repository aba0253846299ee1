//! The direct encoder writes exactly the bytes `DynamicMessage` writes, for every example event
//! of the domain and for envelopes that exercise every envelope field; and it refuses what the
//! dynamic path refuses.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use chrono::{TimeZone, Utc};
use kefu_app::{Actor, ActorKind, RecordedEvent};
use kefu_contract::{Contract, ContractError};
use uuid::Uuid;

fn envelope(
    i: usize,
    event_type: &str,
    stream_type: &str,
    schema_version: u32,
    payload: serde_json::Value,
) -> RecordedEvent {
    RecordedEvent {
        event_id: Uuid::from_u128(i as u128 + 1),
        event_type: event_type.to_string(),
        schema_version,
        stream_id: Uuid::now_v7(),
        stream_type: stream_type.to_string(),
        stream_version: (i as i64) * 1000 + 1,
        customer_id: (!i.is_multiple_of(3)).then(Uuid::now_v7),
        global_position: (i as i64) * 7919 + 1,
        // before 1970, before 2000, with and without fractions
        occurred_at: Utc
            .timestamp_opt(-86_400 * 3 + i as i64 * 1_000_003, (i as u32 * 123_457) % 1_000_000_000)
            .unwrap(),
        recorded_at: Utc.with_ymd_and_hms(2026, 11, 1, 8, 0, 0).unwrap() + chrono::Duration::microseconds(i as i64),
        actor: Actor {
            id: format!("agent.{i}"),
            name: i.is_multiple_of(2).then(|| "陈静".to_string()),
            kind: [ActorKind::User, ActorKind::System, ActorKind::Import][i % 3],
            roles: (0..i % 3).map(|r| format!("role-{r}")).collect(),
        },
        correlation_id: Uuid::now_v7(),
        causation_id: Uuid::now_v7(),
        command_id: Uuid::now_v7(),
        payload,
    }
}

#[test]
fn every_example_event_encodes_to_the_same_bytes_both_ways() {
    let contract = Contract::get();
    let examples = kefu_domain::example_events();
    assert!(examples.len() > 40, "{} examples", examples.len());
    for (i, example) in examples.into_iter().enumerate() {
        let event = envelope(i, example.event_type, example.stream_type, example.schema_version, example.payload);
        let direct = contract.encode(&event).unwrap_or_else(|e| panic!("{}: {e}", event.event_type));
        let dynamic = contract.encode_dynamic(&event).unwrap();
        assert_eq!(direct, dynamic, "{} encodes differently", event.event_type);
        assert_eq!(contract.decode(&direct).unwrap(), event.upcast().unwrap().into_owned(), "{}", event.event_type);
    }
}

#[test]
fn what_the_contract_does_not_know_is_refused() {
    let contract = Contract::get();
    let example = kefu_domain::example_events().into_iter().find(|e| e.event_type == "ConsentGranted").unwrap();
    let mut payload = example.payload.clone();
    payload["notInProto"] = serde_json::json!(1);
    let event = envelope(1, example.event_type, example.stream_type, example.schema_version, payload);
    assert!(matches!(contract.encode(&event), Err(ContractError::PayloadMismatch { .. })));
    assert!(contract.encode_dynamic(&event).is_err());
    let mut wrong_type = example.payload;
    if let Some(first) = wrong_type.as_object_mut().and_then(|m| m.values_mut().next()) {
        *first = serde_json::json!({"nested": true});
    }
    let event = envelope(2, example.event_type, example.stream_type, example.schema_version, wrong_type);
    assert!(contract.encode(&event).is_err());
    let event = envelope(3, "NoSuchEvent", "customer", 1, serde_json::json!({}));
    assert!(matches!(contract.encode(&event), Err(ContractError::UnknownEventType(_))));
}

/// Every scalar of a payload at its default (false, 0, ""), recursively.
fn defaults(v: &serde_json::Value) -> serde_json::Value {
    use serde_json::Value;
    match v {
        Value::Bool(_) => Value::Bool(false),
        Value::Number(_) => serde_json::json!(0),
        // Enum names and times keep their value (their default is another name or time).
        Value::String(s)
            if chrono::DateTime::parse_from_rfc3339(s).is_ok()
                || (!s.is_empty() && s.chars().all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_')) =>
        {
            v.clone()
        }
        Value::String(_) => Value::String(String::new()),
        Value::Array(a) => Value::Array(a.iter().map(defaults).collect()),
        Value::Object(m) => Value::Object(m.iter().map(|(k, v)| (k.clone(), defaults(v))).collect()),
        Value::Null => Value::Null,
    }
}

#[test]
fn default_values_encode_the_same_both_ways() {
    let contract = Contract::get();
    let mut compared = 0;
    for (i, example) in kefu_domain::example_events().into_iter().enumerate() {
        let event =
            envelope(i, example.event_type, example.stream_type, example.schema_version, defaults(&example.payload));
        match (contract.encode(&event), contract.encode_dynamic(&event)) {
            (Ok(direct), Ok(dynamic)) => {
                assert_eq!(direct, dynamic, "{} with default values", event.event_type);
                compared += 1;
            }
            (Err(_), Err(_)) => {}
            (direct, dynamic) => panic!("{}: direct {direct:?}, dynamic {dynamic:?}", event.event_type),
        }
    }
    assert!(compared > 30, "only {compared} payloads were valid with defaults");
}

#[test]
fn the_types_peeked_and_the_envelope_without_payload_are_those_of_the_full_decode() {
    let contract = Contract::get();
    // The field numbers the reader relies on are the contract's.
    let descriptor = contract.envelope();
    assert_eq!(descriptor.get_field_by_name("event_type").unwrap().number(), 2);
    assert_eq!(descriptor.get_field_by_name("stream_type").unwrap().number(), 5);
    for field in descriptor.fields() {
        let in_payload = field.containing_oneof().is_some_and(|o| o.name() == "payload");
        assert_eq!(field.number() >= 100, in_payload, "field {} ({})", field.name(), field.number());
    }
    for (i, example) in kefu_domain::example_events().into_iter().enumerate() {
        let event = envelope(i, example.event_type, example.stream_type, example.schema_version, example.payload);
        let bytes = contract.encode(&event).unwrap();
        assert_eq!(contract.peek_types(&bytes).unwrap(), (example.event_type, example.stream_type));
        let full = contract.decode(&bytes).unwrap();
        let header = contract.decode_envelope_only(&bytes).unwrap();
        assert_eq!(header.payload, serde_json::Value::Null);
        assert_eq!(RecordedEvent { payload: full.payload.clone(), ..header }, full, "{}", example.event_type);
    }
    for broken in [&b"\x12\x05abc"[..], b"\xff", b"\x2a\x80"] {
        assert!(matches!(contract.peek_types(broken), Err(ContractError::Malformed(_))), "{broken:?}");
        assert!(contract.decode_envelope_only(broken).is_err(), "{broken:?}");
    }
}
