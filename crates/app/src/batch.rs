//! Group commit, the part without I/O: given many appends and what the store holds for the
//! streams and command ids they touch, decide each append's outcome on its own and lay out
//! the rows that one transaction writes for all of them.
//!
//! The rules are those of the [`EventStore`](crate::store::EventStore) contract, applied in
//! the order of the batch as if each append were its own transaction:
//! - a journalled command id (in the store, or earlier in the batch) returns the first
//!   outcome, or `CommandIdReused` when the command differs;
//! - every stream of an append must be at its expected version and of its type, else the
//!   append fails alone (`WrongExpectedVersion`, `StreamTypeMismatch`) and changes nothing;
//!   a later append in the batch sees the versions the earlier ones left;
//! - the events of the accepted appends take dense global positions after `head`, in batch
//!   order, and one recorded time; each event's hash chains to the one before it in its
//!   stream ([`crate::integrity`]);
//! - each accepted append is journalled once, with its outcome.
//!
//! The PostgreSQL store and the in-memory store both plan with [`plan`], so they cannot
//! disagree on these rules.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use uuid::Uuid;

use crate::{
    Actor,
    envelope::to_storage_precision,
    integrity::{EventFields, GENESIS, Hash, actor_json, fields_hash},
    store::{AppendOutcome, AppendRequest, CommandRecord, JournalledCommand, NewEvent, StoreError},
};

/// What the store holds for a stream when a batch is planned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamHead {
    /// The stream's type.
    pub stream_type: String,
    /// Its version (its number of events).
    pub version: i64,
    /// Global position of its last event.
    pub last_position: Option<i64>,
    /// Hash of its last event ([`GENESIS`] for an empty stream).
    pub last_hash: Hash,
}

/// What the store holds that a batch depends on.
pub trait BatchState {
    /// The stream, if it exists.
    fn stream(&self, stream_id: Uuid) -> Option<StreamHead>;
    /// The journal entry of a command id, if any.
    fn command(&self, command_id: Uuid) -> Option<&JournalledCommand>;
}

/// A stream touched by one append: the primary or one of `also`, borrowed.
#[derive(Debug, Clone, Copy)]
pub struct Part<'r> {
    /// Stream.
    pub stream_id: Uuid,
    /// Stream type.
    pub stream_type: &'r str,
    /// Customer.
    pub customer_id: Option<Uuid>,
    /// Version the decision was based on.
    pub expected_version: i64,
    /// Events (none: the stream is only a condition of the decision).
    pub events: &'r [NewEvent],
}

impl AppendRequest {
    /// Every stream of the request, borrowed, the primary first.
    pub fn part_refs(&self) -> impl Iterator<Item = Part<'_>> {
        std::iter::once(Part {
            stream_id: self.stream_id,
            stream_type: &self.stream_type,
            customer_id: self.customer_id,
            expected_version: self.expected_version,
            events: &self.events,
        })
        .chain(self.also.iter().map(|p| Part {
            stream_id: p.stream_id,
            stream_type: &p.stream_type,
            customer_id: p.customer_id,
            expected_version: p.expected_version,
            events: &p.events,
        }))
    }
}

/// One event to store, with everything the store assigns.
#[derive(Debug, Clone)]
pub struct PlannedEvent<'r> {
    /// The append it belongs to.
    pub request: &'r AppendRequest,
    /// Its stream.
    pub part: Part<'r>,
    /// The event.
    pub event: &'r NewEvent,
    /// Position in the global log.
    pub global_position: i64,
    /// Version in its stream.
    pub stream_version: i64,
    /// Business time at storage precision.
    pub occurred_at: DateTime<Utc>,
    /// Hash of the event before it in its stream.
    pub previous: Hash,
    /// Its hash.
    pub hash: Hash,
}

/// A stream's state after the batch (one per stream that received events).
#[derive(Debug, Clone)]
pub struct StreamWrite<'r> {
    /// Stream.
    pub stream_id: Uuid,
    /// Type.
    pub stream_type: &'r str,
    /// Customer.
    pub customer_id: Option<Uuid>,
    /// Version after the batch.
    pub version: i64,
    /// True when the stream did not exist before the batch.
    pub created: bool,
}

/// A new journal entry.
#[derive(Debug, Clone)]
pub struct JournalWrite<'r> {
    /// The command.
    pub command: &'r CommandRecord,
    /// Its primary stream.
    pub stream_id: Uuid,
    /// Who sent it.
    pub actor: &'r Actor,
    /// Its outcome.
    pub outcome: AppendOutcome,
}

/// The outcome of every append of a batch and the rows to write for the accepted ones.
#[derive(Debug, Clone)]
pub struct Plan<'r> {
    /// Per append, in batch order.
    pub results: Vec<Result<AppendOutcome, StoreError>>,
    /// Events to insert, in global order.
    pub events: Vec<PlannedEvent<'r>>,
    /// Streams to create or move forward.
    pub streams: Vec<StreamWrite<'r>>,
    /// Commands to journal.
    pub journal: Vec<JournalWrite<'r>>,
    /// The log head after the batch.
    pub head: i64,
    /// The recorded time of every event of the batch.
    pub recorded_at: DateTime<Utc>,
}

impl Plan<'_> {
    /// Whether the batch appends any event.
    pub fn appends(&self) -> bool {
        !self.events.is_empty()
    }
}

/// Plans a batch on top of `state`, with the log at `head` and the batch recorded at
/// `recorded_at` (taken under the store's head lock, so it grows with position).
pub fn plan<'r>(
    requests: &'r [AppendRequest],
    state: &impl BatchState,
    head: i64,
    recorded_at: DateTime<Utc>,
) -> Plan<'r> {
    let recorded_at = to_storage_precision(recorded_at);
    let mut streams: HashMap<Uuid, StreamHead> = HashMap::new();
    let mut created: HashMap<Uuid, bool> = HashMap::new();
    let mut stream_writes: Vec<StreamWrite<'r>> = Vec::new();
    let mut stream_write_at: HashMap<Uuid, usize> = HashMap::new();
    // Command ids accepted earlier in this batch → index into `requests`.
    let mut accepted: HashMap<Uuid, usize> = HashMap::new();
    let mut results: Vec<Result<AppendOutcome, StoreError>> = Vec::with_capacity(requests.len());
    let mut events: Vec<PlannedEvent<'r>> = Vec::new();
    let mut journal: Vec<JournalWrite<'r>> = Vec::new();
    let mut next_position = head + 1;
    let mut scratch = Vec::with_capacity(1024);

    for (i, req) in requests.iter().enumerate() {
        let command_id = req.command.command_id;
        // 1. A journalled command id returns its first outcome.
        let earlier = state
            .command(command_id)
            .map(|j| {
                (
                    j.command.command_type.clone(),
                    j.command.payload == req.command.payload,
                    j.stream_id,
                    j.outcome.clone(),
                )
            })
            .or_else(|| {
                accepted.get(&command_id).and_then(|&k| {
                    let first = &requests[k];
                    let outcome = results[k].as_ref().ok()?.clone();
                    Some((
                        first.command.command_type.clone(),
                        first.command.payload == req.command.payload,
                        first.stream_id,
                        outcome,
                    ))
                })
            });
        if let Some((original_type, same_payload, original_stream, outcome)) = earlier {
            results.push(if same_payload && original_stream == req.stream_id {
                Ok(AppendOutcome { deduplicated: true, ..outcome })
            } else {
                Err(StoreError::CommandIdReused { command_id, original_type, original_stream })
            });
            continue;
        }

        // 2. Every stream at its expected version and of its type.
        let mut refusal = None;
        for part in req.part_refs() {
            let current = streams.get(&part.stream_id).cloned().or_else(|| state.stream(part.stream_id));
            let (stream_type, version) = match &current {
                Some(h) => (h.stream_type.as_str(), h.version),
                None => (part.stream_type, 0),
            };
            if stream_type != part.stream_type {
                refusal = Some(StoreError::StreamTypeMismatch {
                    stream_id: part.stream_id,
                    expected: part.stream_type.to_string(),
                    actual: stream_type.to_string(),
                });
                break;
            }
            if version != part.expected_version {
                refusal = Some(StoreError::WrongExpectedVersion {
                    stream_id: part.stream_id,
                    expected: part.expected_version,
                    actual: version,
                });
                break;
            }
        }
        if let Some(e) = refusal {
            results.push(Err(e));
            continue;
        }

        // 3. Positions, versions and hashes.
        let actor = actor_json(&req.actor);
        let occurred_at = to_storage_precision(req.occurred_at);
        let first_position = next_position;
        let mut primary_version = 0;
        let mut primary_last = None;
        for (n, part) in req.part_refs().enumerate() {
            let seen = streams.contains_key(&part.stream_id);
            let mut head = match streams.remove(&part.stream_id) {
                Some(h) => h,
                None => state.stream(part.stream_id).unwrap_or_else(|| StreamHead {
                    stream_type: part.stream_type.to_string(),
                    version: 0,
                    last_position: None,
                    last_hash: GENESIS,
                }),
            };
            if !seen {
                created.entry(part.stream_id).or_insert(head.version == 0);
            }
            for event in part.events {
                let stream_version = head.version + 1;
                let global_position = next_position;
                next_position += 1;
                let hash = fields_hash(
                    &head.last_hash,
                    &EventFields {
                        global_position,
                        event_id: event.event_id,
                        stream_id: part.stream_id,
                        stream_type: part.stream_type,
                        stream_version,
                        event_type: &event.event_type,
                        schema_version: event.schema_version,
                        customer_id: part.customer_id,
                        occurred_at,
                        recorded_at,
                        actor_json: &actor,
                        correlation_id: req.correlation_id,
                        causation_id: req.causation_id,
                        command_id,
                        payload: &event.payload,
                    },
                    &mut scratch,
                );
                events.push(PlannedEvent {
                    request: req,
                    part,
                    event,
                    global_position,
                    stream_version,
                    occurred_at,
                    previous: head.last_hash,
                    hash,
                });
                head.version = stream_version;
                head.last_position = Some(global_position);
                head.last_hash = hash;
            }
            if !part.events.is_empty() {
                let write = StreamWrite {
                    stream_id: part.stream_id,
                    stream_type: part.stream_type,
                    customer_id: part.customer_id,
                    version: head.version,
                    created: created.get(&part.stream_id).copied().unwrap_or(false),
                };
                match stream_write_at.get(&part.stream_id) {
                    Some(&at) => stream_writes[at].version = head.version,
                    None => {
                        stream_write_at.insert(part.stream_id, stream_writes.len());
                        stream_writes.push(write);
                    }
                }
            }
            if n == 0 {
                primary_version = head.version;
                primary_last = head.last_position;
            }
            // Conditions (no events) on streams that do not exist leave no trace.
            if head.version > 0 || !part.events.is_empty() {
                streams.insert(part.stream_id, head);
            }
        }
        let total = next_position - first_position;
        let outcome = AppendOutcome {
            stream_id: req.stream_id,
            stream_version: primary_version,
            first_position: (!req.events.is_empty()).then_some(first_position),
            last_position: if total > 0 { Some(next_position - 1) } else { primary_last },
            event_count: total,
            recorded_at,
            deduplicated: false,
        };
        journal.push(JournalWrite {
            command: &req.command,
            stream_id: req.stream_id,
            actor: &req.actor,
            outcome: outcome.clone(),
        });
        accepted.insert(command_id, i);
        results.push(Ok(outcome));
    }
    Plan { results, events, streams: stream_writes, journal, head: next_position - 1, recorded_at }
}

/// A [`BatchState`] held in maps (the in-memory store, and the PostgreSQL store after it read
/// the batch's streams and command ids).
#[derive(Debug, Default, Clone)]
pub struct KnownState {
    /// Streams by id.
    pub streams: HashMap<Uuid, StreamHead>,
    /// Journal entries by command id.
    pub commands: HashMap<Uuid, JournalledCommand>,
}

impl BatchState for KnownState {
    fn stream(&self, stream_id: Uuid) -> Option<StreamHead> {
        self.streams.get(&stream_id).cloned()
    }

    fn command(&self, command_id: Uuid) -> Option<&JournalledCommand> {
        self.commands.get(&command_id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        ActorKind, RecordedEvent,
        integrity::event_hash,
        store::{NewEvent, StreamAppend},
    };
    use serde_json::json;

    fn t(s: &str) -> DateTime<Utc> {
        s.parse().unwrap()
    }

    fn request(stream: u128, expected: i64, command: u128, events: usize) -> AppendRequest {
        AppendRequest {
            stream_id: Uuid::from_u128(stream),
            stream_type: "customer".into(),
            customer_id: Some(Uuid::from_u128(stream)),
            expected_version: expected,
            command: CommandRecord {
                command_id: Uuid::from_u128(command),
                command_type: "customer.Touch".into(),
                payload: json!({"Touch": {"n": command as u64}}).into(),
            },
            events: (0..events)
                .map(|i| NewEvent {
                    event_id: Uuid::new_v5(&Uuid::from_u128(command), format!("event-{i}").as_bytes()),
                    event_type: "CustomerTouched".into(),
                    schema_version: 1,
                    payload: json!({"i": i, "name": "李雷", "weight": 1e16, "zero": -0.0}),
                })
                .collect(),
            occurred_at: t("2026-11-01T08:00:00.123456789Z"),
            actor: Actor { id: "agent.chen".into(), name: Some("陈静".into()), kind: ActorKind::User, roles: vec![] },
            correlation_id: Uuid::from_u128(900),
            causation_id: Uuid::from_u128(command),
            also: vec![],
        }
    }

    fn existing(version: i64, hash: Hash) -> KnownState {
        let mut s = KnownState::default();
        s.streams.insert(
            Uuid::from_u128(1),
            StreamHead { stream_type: "customer".into(), version, last_position: Some(10), last_hash: hash },
        );
        s
    }

    #[test]
    fn each_append_keeps_its_own_outcome() {
        let state = existing(2, [7; 32]);
        let requests = vec![
            request(1, 2, 101, 2), // ok: 2 → 4
            request(1, 2, 102, 1), // stale: the first moved the stream to 4
            request(1, 4, 103, 1), // ok: 4 → 5
            request(2, 0, 104, 1), // ok: new stream
            request(2, 0, 101, 1), // the id of the first, another command: reused
            request(1, 2, 101, 2), // the first again: its outcome
        ];
        let plan = plan(&requests, &state, 10, t("2026-11-01T08:00:01Z"));
        let ok = |i: usize| plan.results[i].clone().unwrap();
        assert_eq!((ok(0).stream_version, ok(0).first_position, ok(0).last_position), (4, Some(11), Some(12)));
        assert_eq!(
            plan.results[1],
            Err(StoreError::WrongExpectedVersion { stream_id: Uuid::from_u128(1), expected: 2, actual: 4 })
        );
        assert_eq!((ok(2).stream_version, ok(2).last_position), (5, Some(13)));
        assert_eq!((ok(3).stream_version, ok(3).last_position), (1, Some(14)));
        assert!(matches!(plan.results[4], Err(StoreError::CommandIdReused { .. })));
        assert_eq!(ok(5), AppendOutcome { deduplicated: true, ..ok(0) });
        // dense positions, one row per stream with its final version, one journal row per accepted append
        assert_eq!(plan.events.iter().map(|e| e.global_position).collect::<Vec<_>>(), vec![11, 12, 13, 14]);
        assert_eq!(plan.head, 14);
        let streams: Vec<_> = plan.streams.iter().map(|s| (s.stream_id.as_u128(), s.version, s.created)).collect();
        assert_eq!(streams, vec![(1, 5, false), (2, 1, true)]);
        assert_eq!(plan.journal.len(), 3);
    }

    #[test]
    fn hashes_chain_within_the_batch_as_verification_recomputes_them() {
        let state = existing(2, [7; 32]);
        let requests = vec![request(1, 2, 101, 2), request(1, 4, 102, 1)];
        let plan = plan(&requests, &state, 10, t("2026-11-01T08:00:01.5Z"));
        let mut previous = [7; 32];
        for p in &plan.events {
            let stored = RecordedEvent {
                event_id: p.event.event_id,
                event_type: p.event.event_type.clone(),
                schema_version: p.event.schema_version,
                stream_id: p.part.stream_id,
                stream_type: p.part.stream_type.to_string(),
                stream_version: p.stream_version,
                customer_id: p.part.customer_id,
                global_position: p.global_position,
                occurred_at: t("2026-11-01T08:00:00.123456Z"),
                recorded_at: t("2026-11-01T08:00:01.5Z"),
                actor: p.request.actor.clone(),
                correlation_id: p.request.correlation_id,
                causation_id: p.request.causation_id,
                command_id: p.request.command.command_id,
                // as PostgreSQL's jsonb gives it back
                payload: serde_json::from_str(&format!(
                    r#"{{"zero": 0.0, "weight": 10000000000000000, "name": "李雷", "i": {}}}"#,
                    p.event.payload["i"]
                ))
                .unwrap(),
            };
            assert_eq!(p.previous, previous);
            assert_eq!(p.hash, event_hash(&previous, &stored), "event {}", p.global_position);
            previous = p.hash;
        }
    }

    #[test]
    fn a_multi_stream_append_is_all_or_nothing_and_conditions_append_nothing() {
        let state = existing(2, [7; 32]);
        let mut merge = request(2, 0, 101, 1);
        merge.also.push(StreamAppend {
            stream_id: Uuid::from_u128(1),
            stream_type: "customer".into(),
            customer_id: None,
            expected_version: 1, // stale
            events: request(1, 1, 102, 1).events,
        });
        let mut conditioned = request(3, 0, 103, 1);
        conditioned.also.push(StreamAppend {
            stream_id: Uuid::from_u128(1),
            stream_type: "customer".into(),
            customer_id: None,
            expected_version: 2,
            events: vec![],
        });
        let mut condition_on_nothing = request(4, 0, 104, 0);
        condition_on_nothing.also.push(StreamAppend {
            stream_id: Uuid::from_u128(9),
            stream_type: "service_configuration".into(),
            customer_id: None,
            expected_version: 0,
            events: vec![],
        });
        let requests = vec![merge, conditioned, condition_on_nothing];
        let plan = plan(&requests, &state, 10, t("2026-11-01T08:00:01Z"));
        assert!(matches!(plan.results[0], Err(StoreError::WrongExpectedVersion { expected: 1, actual: 2, .. })));
        assert_eq!(plan.results[1].as_ref().unwrap().last_position, Some(11));
        let nothing = plan.results[2].as_ref().unwrap();
        assert_eq!((nothing.event_count, nothing.last_position, nothing.first_position), (0, None, None));
        assert_eq!(plan.events.len(), 1);
        assert_eq!(plan.streams.iter().map(|s| s.stream_id.as_u128()).collect::<Vec<_>>(), vec![3]);
        assert_eq!(plan.journal.len(), 2, "a command that appends nothing is journalled too");
    }

    #[test]
    fn a_stream_of_another_type_refuses() {
        let state = existing(2, [7; 32]);
        let mut r = request(1, 2, 101, 1);
        r.stream_type = "interaction".into();
        let requests = vec![r];
        let plan = plan(&requests, &state, 10, t("2026-11-01T08:00:01Z"));
        assert!(matches!(plan.results[0], Err(StoreError::StreamTypeMismatch { .. })));
        assert!(plan.events.is_empty() && plan.journal.is_empty());
    }
}
