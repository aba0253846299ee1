//! Schema evolution: stored events are never rewritten; readers upcast older payload versions
//! to the current one before decoding. Every reader goes through [`upcast`]: the domain
//! (`RecordedEvent::decode`), projections, the relay and the export (so Kafka and exported
//! files always carry the current version), and the audit check (which re-encodes the same way).
//!
//! The example in the codebase: `InteractionLogged` version 1 (the walking skeleton's first
//! shape) named the handler by a bare `agentId` and the first-contact flag `resolved`;
//! version 2 has `handledBy {id}` (a staff reference with an optional name) and
//! `resolvedAtFirstContact`. docs/events.md lists each event's current version.

use serde_json::Value;

/// The current payload version of an event type.
pub fn current_version(event_type: &str) -> u32 {
    match event_type {
        "InteractionLogged" => 2,
        _ => 1,
    }
}

/// Why a payload cannot be upcast.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{event_type} v{version}: {reason}")]
pub struct UpcastError {
    /// The event type.
    pub event_type: String,
    /// The version found.
    pub version: u32,
    /// What is wrong.
    pub reason: String,
}

/// Brings a payload from `version` to the current version of its type, one step at a time.
/// A payload at the current version is returned unchanged; a version from the future is an
/// error (this reader is too old for it).
pub fn upcast(event_type: &str, version: u32, payload: Value) -> Result<(u32, Value), UpcastError> {
    let current = current_version(event_type);
    let err = |version: u32, reason: &str| UpcastError {
        event_type: event_type.to_string(),
        version,
        reason: reason.to_string(),
    };
    if version == 0 || version > current {
        return Err(err(version, &format!("unknown version (this build reads up to v{current})")));
    }
    let (mut version, mut payload) = (version, payload);
    while version < current {
        payload = match (event_type, version) {
            ("InteractionLogged", 1) => interaction_logged_v1_to_v2(payload).map_err(|r| err(1, r))?,
            _ => return Err(err(version, "no upcaster")),
        };
        version += 1;
    }
    Ok((version, payload))
}

/// `agentId: "a"` → `handledBy: {"id": "a"}`; `resolved` → `resolvedAtFirstContact`.
fn interaction_logged_v1_to_v2(payload: Value) -> Result<Value, &'static str> {
    let Value::Object(mut map) = payload else { return Err("the payload is not an object") };
    if let Some(agent) = map.remove("agentId") {
        match agent {
            Value::String(id) if !id.is_empty() => {
                map.insert("handledBy".into(), serde_json::json!({"id": id}));
            }
            Value::Null => {}
            _ => return Err("agentId is not a string"),
        }
    }
    if let Some(resolved) = map.remove("resolved") {
        map.insert("resolvedAtFirstContact".into(), resolved);
    }
    Ok(Value::Object(map))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{DomainEvent, interaction::InteractionEvent};
    use serde_json::json;

    fn v1() -> Value {
        json!({"interactionId": "0192e0c4-8f00-7000-8000-000000000001", "customerId": "0192e0c4-8f00-7000-8000-000000000002",
               "channel": "CHANNEL_PHONE", "direction": "DIRECTION_INBOUND", "initiator": "INITIATOR_CUSTOMER",
               "mode": "SERVICE_MODE_STAFF", "agentId": "agent.chen", "summary": "宽带掉线", "resolved": true})
    }

    #[test]
    fn a_v1_interaction_reads_as_v2() {
        let (version, payload) = upcast("InteractionLogged", 1, v1()).unwrap();
        assert_eq!(version, 2);
        assert_eq!(payload["handledBy"], json!({"id": "agent.chen"}));
        assert_eq!(payload["resolvedAtFirstContact"], true);
        assert!(payload.get("agentId").is_none() && payload.get("resolved").is_none());
        let InteractionEvent::InteractionLogged(e) =
            InteractionEvent::from_payload("InteractionLogged", payload).unwrap();
        assert_eq!(e.handled_by.unwrap().id.as_str(), "agent.chen");
        assert!(e.resolved_at_first_contact);
    }

    #[test]
    fn current_payloads_pass_unchanged_and_future_ones_are_refused() {
        let (version, payload) = upcast("InteractionLogged", 1, json!({"summary": "x"})).unwrap();
        assert_eq!((version, payload), (2, json!({"summary": "x"})), "a v1 payload without the old fields");
        let current = json!({"summary": "x", "handledBy": {"id": "a"}});
        assert_eq!(upcast("InteractionLogged", 2, current.clone()).unwrap(), (2, current.clone()));
        assert_eq!(upcast("CustomerRegistered", 1, current.clone()).unwrap(), (1, current.clone()));
        let e = upcast("InteractionLogged", 3, current).unwrap_err();
        assert_eq!(e.to_string(), "InteractionLogged v3: unknown version (this build reads up to v2)");
        assert!(upcast("InteractionLogged", 1, json!({"agentId": 7})).is_err());
    }

    #[test]
    fn new_events_are_written_at_the_current_version() {
        let InteractionEvent::InteractionLogged(e) =
            InteractionEvent::from_payload("InteractionLogged", upcast("InteractionLogged", 1, v1()).unwrap().1)
                .unwrap();
        assert_eq!(InteractionEvent::InteractionLogged(e).schema_version(), 2);
    }
}
