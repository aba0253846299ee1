//! `proto/` and the Rust event types must agree, field by field, in both directions.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, BTreeSet};

use kefu_contract::{Contract, catalogue};
use prost_reflect::{Cardinality, Kind, MessageDescriptor};

/// Every JSON path a message can have (`a.b`, `list[].c`), following nested kefu messages.
fn proto_paths(message: &MessageDescriptor, prefix: &str, out: &mut BTreeSet<String>) {
    for field in message.fields() {
        let mut path = format!("{prefix}{}", field.json_name());
        if field.cardinality() == Cardinality::Repeated {
            path.push_str("[]");
        }
        out.insert(path.clone());
        if let Kind::Message(m) = field.kind()
            && m.package_name() == "kefu.v1"
        {
            proto_paths(&m, &format!("{path}."), out);
        }
    }
}

/// Every JSON path present in a value.
fn json_paths(value: &serde_json::Value, prefix: &str, out: &mut BTreeSet<String>) {
    if let serde_json::Value::Object(map) = value {
        for (k, v) in map {
            match v {
                serde_json::Value::Array(items) => {
                    let path = format!("{prefix}{k}[]");
                    out.insert(path.clone());
                    for item in items {
                        json_paths(item, &format!("{path}."), out);
                    }
                }
                _ => {
                    let path = format!("{prefix}{k}");
                    out.insert(path.clone());
                    json_paths(v, &format!("{path}."), out);
                }
            }
        }
    }
}

#[test]
fn every_rust_event_type_is_in_proto_and_nothing_else_is() {
    let contract = Contract::get();
    let mut rust: Vec<&str> =
        kefu_domain::all_event_types().into_iter().flat_map(|(_, types)| types.iter().copied()).collect();
    rust.sort_unstable();
    assert_eq!(rust, contract.event_types(), "Envelope.payload members vs Rust event types");
}

#[test]
fn every_event_field_is_on_both_sides() {
    let contract = Contract::get();
    let mut seen: BTreeMap<&str, BTreeSet<String>> = BTreeMap::new();
    for example in kefu_domain::example_events() {
        json_paths(&example.payload, "", seen.entry(example.event_type).or_default());
    }
    for (_, types) in kefu_domain::all_event_types() {
        for event_type in types.iter() {
            let rust = seen.get(event_type).unwrap_or_else(|| panic!("{event_type} has no example in the domain"));
            let desc = contract.payload_descriptor(event_type).unwrap();
            let mut proto = BTreeSet::new();
            proto_paths(&desc, "", &mut proto);
            let only_rust: Vec<_> = rust.difference(&proto).collect();
            let only_proto: Vec<_> = proto.difference(rust).collect();
            assert!(
                only_rust.is_empty() && only_proto.is_empty(),
                "{event_type}: fields only in Rust: {only_rust:?}; only in proto/ (or never filled by \
                 the domain's examples): {only_proto:?}"
            );
        }
    }
}

#[test]
fn every_vocabulary_matches_its_proto_enum() {
    let contract = Contract::get();
    let mut rust = kefu_domain::vocab::all_vocabularies();
    rust.push((kefu_app::ActorKind::NAME, kefu_app::ActorKind::ALL.iter().map(|v| v.wire_name()).collect()));
    let mut checked = BTreeSet::new();
    for (name, values) in rust {
        let e = contract
            .pool()
            .get_enum_by_name(&format!("kefu.v1.{name}"))
            .unwrap_or_else(|| panic!("proto/ has no enum {name}"));
        let proto: Vec<String> =
            e.values().map(|v| v.name().to_string()).filter(|v| !v.ends_with("_UNSPECIFIED")).collect();
        assert_eq!(proto, values, "values of {name}");
        assert_eq!(e.values().next().map(|v| v.number()), Some(0));
        checked.insert(name.to_string());
    }
    for e in contract.pool().all_enums().filter(|e| e.package_name() == "kefu.v1") {
        assert!(checked.contains(e.name()), "proto enum {} has no Rust vocabulary", e.name());
    }
}

#[test]
fn the_envelope_fields_are_the_recorded_event_fields() {
    let contract = Contract::get();
    let event = kefu_app::RecordedEvent {
        event_id: uuid::Uuid::nil(),
        event_type: "ConsentGranted".into(),
        schema_version: 1,
        stream_id: uuid::Uuid::nil(),
        stream_type: "customer".into(),
        stream_version: 1,
        customer_id: Some(uuid::Uuid::nil()),
        global_position: 1,
        occurred_at: chrono::Utc::now(),
        recorded_at: chrono::Utc::now(),
        actor: kefu_app::Actor {
            id: "x".into(),
            name: Some("X".into()),
            kind: kefu_app::ActorKind::User,
            roles: vec!["agent".into()],
        },
        correlation_id: uuid::Uuid::nil(),
        causation_id: uuid::Uuid::nil(),
        command_id: uuid::Uuid::nil(),
        payload: serde_json::json!({}),
    };
    let mut rust = BTreeSet::new();
    json_paths(&serde_json::to_value(&event).unwrap(), "", &mut rust);
    rust.remove("payload");
    let mut proto = BTreeSet::new();
    proto_paths(contract.envelope(), "", &mut proto);
    let members: BTreeSet<String> = contract
        .envelope()
        .oneofs()
        .filter(|o| o.name() == "payload")
        .flat_map(|o| o.fields().collect::<Vec<_>>())
        .map(|f| f.json_name().to_string())
        .collect();
    proto.retain(|p| !members.iter().any(|m| p == m || p.starts_with(&format!("{m}."))));
    assert_eq!(rust, proto);
}

#[test]
fn the_event_catalogue_is_up_to_date() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/events.md");
    let rendered = catalogue::render() + "\n";
    if std::env::var_os("KEFU_BLESS").is_some() {
        std::fs::write(path, &rendered).unwrap();
    }
    let on_disk = std::fs::read_to_string(path).unwrap_or_default();
    assert!(
        on_disk == rendered,
        "docs/events.md is out of date; run `KEFU_BLESS=1 cargo test -p kefu-contract` and commit it"
    );
}
