//! The event-store port: what the command side needs from storage.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use futures::future::BoxFuture;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::{Actor, RecordedEvent};

/// One event to append (the store assigns versions, positions and `recordedAt`).
#[derive(Debug, Clone, PartialEq)]
pub struct NewEvent {
    /// Unique id.
    pub event_id: Uuid,
    /// Event type.
    pub event_type: String,
    /// Payload schema version.
    pub schema_version: u32,
    /// Payload JSON.
    pub payload: serde_json::Value,
}

/// The command being applied, kept in the command journal so a retry is recognised.
#[derive(Debug, Clone, PartialEq)]
pub struct CommandRecord {
    /// Client-supplied or generated id.
    pub command_id: Uuid,
    /// e.g. `customer.Register`.
    pub command_type: String,
    /// The command as JSON; a retry must carry the same command. Shared: batches and the
    /// writer's memory of recent batches hold it without copying.
    pub payload: std::sync::Arc<serde_json::Value>,
}

/// An atomic append of a command's events to one stream.
#[derive(Debug, Clone)]
pub struct AppendRequest {
    /// Stream id.
    pub stream_id: Uuid,
    /// Stream type; a stream never changes type.
    pub stream_type: String,
    /// Customer the stream belongs to.
    pub customer_id: Option<Uuid>,
    /// The version the decision was based on (0 = the stream must not exist yet).
    pub expected_version: i64,
    /// The command, journalled with its result.
    pub command: CommandRecord,
    /// Events to append; may be empty (the command is journalled, nothing appended).
    pub events: Vec<NewEvent>,
    /// Business time for all events.
    pub occurred_at: DateTime<Utc>,
    /// Who.
    pub actor: Actor,
    /// Conversation id.
    pub correlation_id: Uuid,
    /// Cause (defaults to the command id at the caller).
    pub causation_id: Uuid,
    /// Further streams changed by the same command, appended in the same transaction (all or
    /// nothing), e.g. the survivor and the duplicate of a merge.
    pub also: Vec<StreamAppend>,
}

/// Events for one more stream of a multi-stream append.
#[derive(Debug, Clone, PartialEq)]
pub struct StreamAppend {
    /// Stream id.
    pub stream_id: Uuid,
    /// Stream type.
    pub stream_type: String,
    /// Customer the stream belongs to.
    pub customer_id: Option<Uuid>,
    /// The version the decision was based on.
    pub expected_version: i64,
    /// Events to append.
    pub events: Vec<NewEvent>,
}

impl AppendRequest {
    /// Every stream of the request, the primary first.
    pub fn parts(&self) -> Vec<StreamAppend> {
        let mut parts = vec![StreamAppend {
            stream_id: self.stream_id,
            stream_type: self.stream_type.clone(),
            customer_id: self.customer_id,
            expected_version: self.expected_version,
            events: self.events.clone(),
        }];
        parts.extend(self.also.iter().cloned());
        parts
    }
}

/// The result of an append, also what a retried command gets back.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AppendOutcome {
    /// The stream.
    pub stream_id: Uuid,
    /// The stream's version after the command.
    pub stream_version: i64,
    /// Global position of the first appended event (None when nothing was appended).
    pub first_position: Option<i64>,
    /// Global position of the last event the command appended (or, when it appended nothing,
    /// of the stream's last event): what a query can wait for to see the command's effect.
    pub last_position: Option<i64>,
    /// Number of events appended.
    pub event_count: i64,
    /// When the command was recorded.
    pub recorded_at: DateTime<Utc>,
    /// True when this is the stored result of an earlier identical command.
    #[serde(default)]
    pub deduplicated: bool,
}

/// Why the store refused or failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    /// Another writer appended first.
    #[error("stream {stream_id} is at version {actual}, not the expected {expected}")]
    WrongExpectedVersion {
        /// Stream.
        stream_id: Uuid,
        /// What the caller assumed.
        expected: i64,
        /// What it is.
        actual: i64,
    },
    /// A stream id was reused for another stream type.
    #[error("stream {stream_id} is a {actual} stream, not a {expected} stream")]
    StreamTypeMismatch {
        /// Stream.
        stream_id: Uuid,
        /// Requested type.
        expected: String,
        /// Stored type.
        actual: String,
    },
    /// The command id was already used for a different command.
    #[error(
        "command id {command_id} was already used for a different command ({original_type} on stream {original_stream})"
    )]
    CommandIdReused {
        /// The id.
        command_id: Uuid,
        /// What it was used for.
        original_type: String,
        /// On which stream.
        original_stream: Uuid,
    },
    /// The database is unreachable or overloaded; retry later.
    #[error("event store unavailable: {0}")]
    Unavailable(String),
    /// Stored data does not decode (a bug or tampering).
    #[error("event store data is corrupt: {0}")]
    Corrupt(String),
    /// The database refused a statement for a reason that retrying will not fix.
    #[error("event store database error: {0}")]
    Database(String),
}

/// A journalled command and its result.
#[derive(Debug, Clone, PartialEq)]
pub struct JournalledCommand {
    /// The command.
    pub command: CommandRecord,
    /// Its stream.
    pub stream_id: Uuid,
    /// Its result.
    pub outcome: AppendOutcome,
}

/// Durable, ordered storage of event streams.
///
/// Contract:
/// - `append` is atomic: all events or none. It fails with `WrongExpectedVersion` unless the
///   stream is at `expected_version`, so of many concurrent appends at one version exactly one
///   wins.
/// - A command id is applied once: appending with a journalled id appends nothing and returns
///   the stored outcome with `deduplicated = true`, or `CommandIdReused` if the journalled
///   command differs. This holds for concurrent retries too.
/// - Global positions are dense and committed in order: a reader that has seen position `p`
///   will never later see a new event below `p`.
pub trait EventStore: Send + Sync {
    /// Appends a command's events to one stream.
    fn append(&self, request: AppendRequest) -> BoxFuture<'_, Result<AppendOutcome, StoreError>>;

    /// All events of a stream, in version order (empty if the stream does not exist).
    fn load(&self, stream_id: Uuid) -> BoxFuture<'_, Result<Vec<RecordedEvent>, StoreError>>;

    /// The journal entry of a command id, if any.
    fn find_command(&self, command_id: Uuid) -> BoxFuture<'_, Result<Option<JournalledCommand>, StoreError>>;

    /// Which of these command ids are journalled, each with its stream (for callers that only
    /// ask whether a step was taken; a store answers in one read).
    fn journalled_streams<'a>(
        &'a self,
        command_ids: &'a [Uuid],
    ) -> BoxFuture<'a, Result<HashMap<Uuid, Uuid>, StoreError>> {
        Box::pin(async move {
            let mut found = HashMap::new();
            for id in command_ids {
                if let Some(j) = self.find_command(*id).await? {
                    found.insert(*id, j.stream_id);
                }
            }
            Ok(found)
        })
    }
}
