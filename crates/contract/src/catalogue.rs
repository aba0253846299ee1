//! The event catalogue (`docs/events.md`), generated from `proto/` and the domain's examples.
//! A test fails when the checked-in file differs; `KEFU_BLESS=1 cargo test -p kefu-contract`
//! rewrites it.

use std::fmt::Write;

use prost_reflect::{Cardinality, EnumDescriptor, FieldDescriptor, FileDescriptor, Kind, MessageDescriptor};

use crate::Contract;

/// Leading comment of the element at `path` in `file`, joined into one paragraph per block.
fn comment(file: &FileDescriptor, path: &[i32]) -> String {
    let proto = file.file_descriptor_proto();
    let Some(info) = &proto.source_code_info else {
        return String::new();
    };
    info.location
        .iter()
        .find(|l| l.path == path)
        .and_then(|l| l.leading_comments.clone())
        .map(|c| c.lines().map(str::trim).collect::<Vec<_>>().join(" ").trim().to_string())
        .unwrap_or_default()
}

fn type_name(field: &FieldDescriptor) -> String {
    let base = match field.kind() {
        Kind::Message(m) => format!("`{}`", m.full_name().trim_start_matches("kefu.v1.")),
        Kind::Enum(e) => format!("`{}`", e.full_name().trim_start_matches("kefu.v1.")),
        other => format!("{other:?}").to_lowercase(),
    };
    match field.cardinality() {
        Cardinality::Repeated => format!("repeated {base}"),
        _ if field.field_descriptor_proto().proto3_optional.unwrap_or(false) => {
            format!("optional {base}")
        }
        _ => base,
    }
}

fn field_table(out: &mut String, message: &MessageDescriptor, skip_oneof: bool) {
    out.push_str("| # | Field (JSON name) | Type | Meaning |\n|---|---|---|---|\n");
    for field in message.fields() {
        if skip_oneof && field.containing_oneof().is_some_and(|o| o.name() == "payload") {
            continue;
        }
        let _ = writeln!(
            out,
            "| {} | `{}` | {} | {} |",
            field.number(),
            field.json_name(),
            type_name(&field),
            comment(&message.parent_file(), field.path()).replace('|', "\\|")
        );
    }
    out.push('\n');
}

fn enum_table(out: &mut String, e: &EnumDescriptor) {
    out.push_str("| Value | Number | Meaning |\n|---|---|---|\n");
    for v in e.values() {
        let _ = writeln!(out, "| `{}` | {} | {} |", v.name(), v.number(), comment(&e.parent_file(), v.path()));
    }
    out.push('\n');
}

/// Renders the catalogue as Markdown.
pub fn render() -> String {
    let contract = Contract::get();
    let mut out = String::new();
    out.push_str(
        "# Event catalogue\n\n\
         Generated from `proto/` and the domain's example events by `kefu-contract` — do not edit by\n\
         hand; `KEFU_BLESS=1 cargo test -p kefu-contract catalogue` regenerates it, and the test suite\n\
         fails while it is out of date.\n\n\
         Every event is published to Kafka as a binary `kefu.v1.Envelope` (see `proto/kefu/v1/envelope.proto`)\n\
         whose `payload` oneof holds exactly one of the messages below. The JSON shown is the proto3\n\
         canonical JSON mapping, which is also how the event store keeps payloads.\n\n",
    );

    let envelope = contract.envelope();
    out.push_str("## Envelope (`kefu.v1.Envelope`)\n\n");
    out.push_str(&comment(&envelope.parent_file(), envelope.path()));
    out.push_str("\n\n");
    field_table(&mut out, envelope, true);

    let examples = kefu_domain::example_events();
    out.push_str("## Events\n\n");
    out.push_str(
        "The schema version is the payload's current version. Stored events are never rewritten: \
         readers upcast older versions step by step (`kefu_domain::upcast`), and Kafka and exports \
         always carry the current version. Upcasters: `InteractionLogged` v1 → v2 (`agentId` \
         becomes `handledBy.id`, `resolved` becomes `resolvedAtFirstContact`).\n\n",
    );
    out.push_str("| Stream type | Event type | Schema version | Envelope field |\n|---|---|---|---|\n");
    for (stream, types) in kefu_domain::all_event_types() {
        for event_type in types {
            let number = contract.members.get(*event_type).map(|f| f.number()).unwrap_or_default();
            let version = examples.iter().find(|e| e.event_type == *event_type).map(|e| e.schema_version).unwrap_or(1);
            let _ = writeln!(
                out,
                "| `{stream}` | [`{event_type}`](#{}) | {version} | {number} |",
                event_type.to_lowercase()
            );
        }
    }
    out.push('\n');
    for (stream, types) in kefu_domain::all_event_types() {
        let _ = writeln!(out, "### Stream `{stream}`\n");
        for event_type in types {
            let _ = writeln!(out, "#### {event_type}\n");
            let Ok(message) = contract.payload_descriptor(event_type) else {
                out.push_str("**Missing from proto/.**\n\n");
                continue;
            };
            let _ = writeln!(out, "{}\n", comment(&message.parent_file(), message.path()));
            field_table(&mut out, &message, false);
            for e in examples.iter().filter(|e| e.event_type == *event_type) {
                let pretty = serde_json::to_string_pretty(&e.payload).unwrap_or_default();
                let _ = writeln!(
                    out,
                    "<details><summary>Example payload (schema version {})</summary>\n\n```json\n{pretty}\n```\n\n</details>\n",
                    e.schema_version
                );
            }
        }
    }

    out.push_str("## Value messages\n\n");
    let mut messages: Vec<MessageDescriptor> = contract
        .pool()
        .all_messages()
        .filter(|m| m.package_name() == "kefu.v1")
        .filter(|m| m.full_name() != crate::ENVELOPE && !contract.members.contains_key(m.name()))
        .collect();
    messages.sort_by(|a, b| a.name().cmp(b.name()));
    for m in messages {
        let _ = writeln!(out, "### {}\n\n{}\n", m.name(), comment(&m.parent_file(), m.path()));
        field_table(&mut out, &m, false);
    }

    out.push_str("## Vocabularies\n\n");
    let mut enums: Vec<EnumDescriptor> =
        contract.pool().all_enums().filter(|e| e.package_name() == "kefu.v1").collect();
    enums.sort_by(|a, b| a.name().cmp(b.name()));
    for e in enums {
        let _ = writeln!(out, "### {}\n\n{}\n", e.name(), comment(&e.parent_file(), e.path()));
        enum_table(&mut out, &e);
    }
    while out.ends_with("\n\n") {
        out.pop();
    }
    out
}
