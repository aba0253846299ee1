//! An in-memory [`EventStore`] with the same contract as the PostgreSQL one, for unit tests.

use std::{collections::HashMap, sync::Mutex};

use chrono::Utc;
use futures::future::BoxFuture;
use uuid::Uuid;

use crate::{
    RecordedEvent,
    envelope::to_storage_precision,
    store::{AppendOutcome, AppendRequest, EventStore, JournalledCommand, StoreError},
};

#[derive(Default)]
struct Inner {
    log: Vec<RecordedEvent>,
    streams: HashMap<Uuid, (String, i64)>,
    journal: HashMap<Uuid, JournalledCommand>,
}

/// Keeps everything in a `Vec` behind a mutex.
#[derive(Default)]
pub struct InMemoryEventStore {
    inner: Mutex<Inner>,
}

impl InMemoryEventStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// The whole global log, in position order.
    pub fn all(&self) -> Vec<RecordedEvent> {
        self.lock().log.clone()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // A panic while holding the lock leaves plain data behind; keep using it.
        self.inner.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl EventStore for InMemoryEventStore {
    fn append(&self, req: AppendRequest) -> BoxFuture<'_, Result<AppendOutcome, StoreError>> {
        let result = (|| {
            let mut inner = self.lock();
            if let Some(j) = inner.journal.get(&req.command.command_id) {
                if j.command.payload == req.command.payload && j.stream_id == req.stream_id {
                    return Ok(AppendOutcome { deduplicated: true, ..j.outcome.clone() });
                }
                return Err(StoreError::CommandIdReused {
                    command_id: req.command.command_id,
                    original_type: j.command.command_type.clone(),
                    original_stream: j.stream_id,
                });
            }
            let parts = req.parts();
            let mut versions = Vec::with_capacity(parts.len());
            for part in &parts {
                let (stream_type, version) =
                    inner.streams.get(&part.stream_id).cloned().unwrap_or((part.stream_type.clone(), 0));
                if stream_type != part.stream_type {
                    return Err(StoreError::StreamTypeMismatch {
                        stream_id: part.stream_id,
                        expected: part.stream_type.clone(),
                        actual: stream_type,
                    });
                }
                if version != part.expected_version {
                    return Err(StoreError::WrongExpectedVersion {
                        stream_id: part.stream_id,
                        expected: part.expected_version,
                        actual: version,
                    });
                }
                versions.push(version);
            }
            let recorded_at = to_storage_precision(Utc::now());
            let first_position = inner.log.len() as i64 + 1;
            let mut total = 0i64;
            for (part, version) in parts.iter().zip(&versions) {
                for (i, e) in part.events.iter().enumerate() {
                    let global_position = inner.log.len() as i64 + 1;
                    inner.log.push(RecordedEvent {
                        event_id: e.event_id,
                        event_type: e.event_type.clone(),
                        schema_version: e.schema_version,
                        stream_id: part.stream_id,
                        stream_type: part.stream_type.clone(),
                        stream_version: version + 1 + i as i64,
                        customer_id: part.customer_id,
                        global_position,
                        occurred_at: to_storage_precision(req.occurred_at),
                        recorded_at,
                        actor: req.actor.clone(),
                        correlation_id: req.correlation_id,
                        causation_id: req.causation_id,
                        command_id: req.command.command_id,
                        payload: e.payload.clone(),
                    });
                }
                let n = part.events.len() as i64;
                total += n;
                if n > 0 || *version > 0 {
                    inner.streams.insert(part.stream_id, (part.stream_type.clone(), version + n));
                }
            }
            let n = req.events.len() as i64;
            let new_version = versions[0] + n;
            let last_position = if total > 0 {
                Some(inner.log.len() as i64)
            } else {
                inner.log.iter().rev().find(|e| e.stream_id == req.stream_id).map(|e| e.global_position)
            };
            let outcome = AppendOutcome {
                stream_id: req.stream_id,
                stream_version: new_version,
                first_position: (n > 0).then_some(first_position),
                last_position,
                event_count: total,
                recorded_at,
                deduplicated: false,
            };
            inner.journal.insert(
                req.command.command_id,
                JournalledCommand { command: req.command.clone(), stream_id: req.stream_id, outcome: outcome.clone() },
            );
            Ok(outcome)
        })();
        Box::pin(async move { result })
    }

    fn load(&self, stream_id: Uuid) -> BoxFuture<'_, Result<Vec<RecordedEvent>, StoreError>> {
        let events = self.lock().log.iter().filter(|e| e.stream_id == stream_id).cloned().collect();
        Box::pin(async move { Ok(events) })
    }

    fn find_command(&self, command_id: Uuid) -> BoxFuture<'_, Result<Option<JournalledCommand>, StoreError>> {
        let found = self.lock().journal.get(&command_id).cloned();
        Box::pin(async move { Ok(found) })
    }
}
