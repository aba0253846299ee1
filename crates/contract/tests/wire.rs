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

#[test]
fn every_example_event_decodes_directly_to_what_the_dynamic_path_decodes() {
    let contract = Contract::get();
    let mut read_directly = 0;
    for (i, example) in kefu_domain::example_events().into_iter().enumerate() {
        for payload in [example.payload.clone(), defaults(&example.payload)] {
            let event = envelope(i, example.event_type, example.stream_type, example.schema_version, payload);
            let Ok(bytes) = contract.encode(&event) else { continue };
            let dynamic = contract.decode_dynamic(&bytes).unwrap();
            let direct = contract.decode_direct(&bytes);
            assert_eq!(direct.as_ref(), Some(&dynamic), "{} decodes differently", event.event_type);
            assert_eq!(contract.decode(&bytes).unwrap(), dynamic);
            assert_eq!(
                contract.decode_envelope_only(&bytes).unwrap(),
                contract.decode_envelope_only_dynamic(&bytes).unwrap(),
                "{} without payload",
                event.event_type
            );
            read_directly += 1;
        }
    }
    assert!(read_directly > 70, "only {read_directly} events were compared");
}

/// What a sender other than kefu's encoder may put on the wire: fields the contract does not
/// know, repeated fields unpacked, a payload member given twice or after another member.
#[test]
fn unusual_but_valid_encodings_decode_as_the_dynamic_path_decodes_them() {
    use prost::encoding::{WireType, encode_key, encode_varint};
    let contract = Contract::get();
    let examples = kefu_domain::example_events();
    let event_of = |name: &str| {
        let e = examples.iter().find(|e| e.event_type == name).unwrap();
        envelope(5, e.event_type, e.stream_type, e.schema_version, e.payload.clone())
    };
    let registered = contract.encode(&event_of("CustomerRegistered")).unwrap();
    let mut unknown = registered.clone();
    for number in [15u32, 60, 2000] {
        encode_key(number, WireType::Varint, &mut unknown);
        encode_varint(7, &mut unknown);
        encode_key(number + 1, WireType::LengthDelimited, &mut unknown);
        encode_varint(2, &mut unknown);
        unknown.extend_from_slice(b"hi");
    }
    // The payload member again: proto merges the two messages (here: another name).
    let member = contract.envelope().get_field_by_name("customer_registered").unwrap();
    let name = member.kind().as_message().unwrap().get_field_by_name("name").unwrap();
    let mut payload = Vec::new();
    encode_key(name.number(), WireType::LengthDelimited, &mut payload);
    encode_varint("韩梅梅".len() as u64, &mut payload);
    payload.extend_from_slice("韩梅梅".as_bytes());
    let mut twice = registered.clone();
    encode_key(member.number(), WireType::LengthDelimited, &mut twice);
    encode_varint(payload.len() as u64, &mut twice);
    twice.extend_from_slice(&payload);
    // Another member after the right one: the last member is the payload.
    let mut other = registered.clone();
    let acknowledged = contract.envelope().get_field_by_name("request_acknowledged").unwrap();
    encode_key(acknowledged.number(), WireType::LengthDelimited, &mut other);
    encode_varint(0, &mut other);
    for (what, bytes) in [("unknown fields", &unknown), ("member twice", &twice), ("another member", &other)] {
        assert_eq!(contract.decode(bytes), contract.decode_dynamic(bytes), "{what}");
        assert_eq!(contract.decode_envelope_only(bytes), contract.decode_envelope_only_dynamic(bytes), "{what}");
    }
    assert!(contract.decode_direct(&unknown).is_some(), "unknown fields are skipped, not declined");
    assert!(contract.decode(&other).is_err(), "the payload is not the event type's");
    assert_eq!(contract.decode(&twice).unwrap().payload["name"], "韩梅梅", "the second message merged");
}

/// Every truncation and many byte flips of encoded envelopes decode the same both ways: the
/// same event, or the same error.
#[test]
fn damaged_envelopes_decode_as_the_dynamic_path_decodes_them() {
    let contract = Contract::get();
    let (mut compared, mut both_ok) = (0, 0);
    for (i, example) in kefu_domain::example_events().into_iter().enumerate().step_by(6) {
        let event = envelope(i, example.event_type, example.stream_type, example.schema_version, example.payload);
        let bytes = contract.encode(&event).unwrap();
        let mut damaged: Vec<Vec<u8>> = (0..bytes.len()).map(|n| bytes[..n].to_vec()).collect();
        for at in 0..bytes.len() {
            for mask in [0x01u8, 0x40, 0x80, 0xff] {
                let mut b = bytes.clone();
                b[at] ^= mask;
                damaged.push(b);
            }
        }
        for b in &damaged {
            let dynamic = contract.decode_dynamic(b);
            assert_eq!(contract.decode(b), dynamic, "{} damaged: {b:?}", example.event_type);
            if let Some(direct) = contract.decode_direct(b) {
                assert_eq!(Ok(direct), dynamic, "{} damaged: {b:?}", example.event_type);
                both_ok += 1;
            }
            assert_eq!(contract.decode_envelope_only(b), contract.decode_envelope_only_dynamic(b));
            compared += 1;
        }
    }
    assert!(compared > 10_000 && both_ok > 1_000, "{compared} compared, {both_ok} read directly");
}

/// What reading `bytes` straight into the family of its event type gives, checked against the
/// JSON path: the same event or an error on both. Answers whether the direct reader read it and
/// whether there was an event to read (`None`: no family has that event type).
fn typed_as_through_json(contract: &Contract, event_type: &str, bytes: &[u8]) -> Option<(bool, bool)> {
    use kefu_domain::{
        DomainEvent, business_calendar::BusinessCalendarEvent, customer::CustomerEvent, interaction::InteractionEvent,
        satisfaction_config::SatisfactionConfigEvent, satisfaction_monitor::SatisfactionMonitorEvent,
        service_config::ServiceConfigEvent, service_request::ServiceRequestEvent, survey::SurveyEvent,
        survey_template::SurveyTemplateEvent,
    };
    fn check<E: DomainEvent + PartialEq>(contract: &Contract, bytes: &[u8]) -> (bool, bool) {
        let json = contract.decode(bytes).ok().and_then(|e| e.decode::<E>().ok());
        let Ok(split) = contract.decode_split(bytes) else {
            assert!(contract.decode_envelope_only(bytes).is_err());
            assert_eq!(json, None);
            return (false, false);
        };
        assert_eq!(Ok(&split.event), contract.decode_envelope_only(bytes).as_ref(), "the envelope");
        let direct = split.payload_direct::<E>();
        if direct.is_some() {
            assert_eq!(direct, json, "read directly: {bytes:?}");
        }
        assert_eq!(split.payload::<E>().ok(), json, "read: {bytes:?}");
        assert_eq!(split.into_whole(), contract.decode(bytes), "the whole event: {bytes:?}");
        (direct.is_some(), json.is_some())
    }
    macro_rules! families {
        ($($family:ty),+) => {
            $(if <$family>::EVENT_TYPES.contains(&event_type) {
                return Some(check::<$family>(contract, bytes));
            })+
        };
    }
    families!(
        CustomerEvent,
        ServiceRequestEvent,
        InteractionEvent,
        SurveyEvent,
        SurveyTemplateEvent,
        ServiceConfigEvent,
        SatisfactionConfigEvent,
        SatisfactionMonitorEvent,
        BusinessCalendarEvent
    );
    None
}

#[test]
fn payloads_read_straight_into_their_types_equal_those_read_through_json() {
    let contract = Contract::get();
    let examples = kefu_domain::example_events();
    let (mut families, mut read_directly) = (std::collections::BTreeSet::new(), 0);
    for (i, example) in examples.iter().enumerate() {
        for payload in [example.payload.clone(), defaults(&example.payload)] {
            let event = envelope(i, example.event_type, example.stream_type, example.schema_version, payload);
            let Ok(bytes) = contract.encode(&event) else { continue };
            let (direct, valid) = typed_as_through_json(contract, example.event_type, &bytes).unwrap();
            assert_eq!(direct, valid, "{} is not read directly", example.event_type);
            read_directly += usize::from(direct);
        }
        families.insert(example.stream_type);
    }
    assert_eq!(families.len(), 9, "every family has examples: {families:?}");
    assert!(read_directly > 70, "only {read_directly} events were read directly");
    // Older payload versions are upcast through their JSON.
    let older: Vec<_> = examples.iter().filter(|e| e.schema_version > 1).collect();
    assert!(!older.is_empty(), "an event type has an upcaster");
    for example in older {
        let event =
            envelope(1, example.event_type, example.stream_type, example.schema_version, example.payload.clone());
        let mut bytes = contract.encode(&event).unwrap();
        // The envelope says version 1 (field 3), as an event stored before the type changed.
        let at = bytes.iter().position(|b| *b == 3 << 3).unwrap();
        bytes[at + 1] = 1;
        assert_eq!(typed_as_through_json(contract, example.event_type, &bytes), Some((false, true)));
    }
}

/// Every truncation and many byte flips of encoded envelopes read into their types as through
/// JSON: the same event, or an error both ways.
#[test]
fn damaged_payloads_read_into_their_types_as_through_json() {
    let contract = Contract::get();
    let (mut compared, mut direct) = (0, 0);
    for (i, example) in kefu_domain::example_events().into_iter().enumerate().step_by(3) {
        let event = envelope(i, example.event_type, example.stream_type, example.schema_version, example.payload);
        let bytes = contract.encode(&event).unwrap();
        let mut damaged: Vec<Vec<u8>> = (0..bytes.len()).map(|n| bytes[..n].to_vec()).collect();
        for at in 0..bytes.len() {
            for mask in [0x01u8, 0x02, 0x40, 0x80, 0xff] {
                let mut b = bytes.clone();
                b[at] ^= mask;
                damaged.push(b);
            }
        }
        for b in &damaged {
            if typed_as_through_json(contract, example.event_type, b).unwrap().0 {
                direct += 1;
            }
            compared += 1;
        }
    }
    assert!(compared > 20_000 && direct > 2_000, "{compared} compared, {direct} read directly");
}
