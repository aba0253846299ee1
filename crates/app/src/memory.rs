//! An in-memory [`EventStore`] with the same contract as the PostgreSQL one, for unit tests.

use std::sync::Mutex;

use chrono::Utc;
use futures::future::BoxFuture;
use uuid::Uuid;

use crate::{
    RecordedEvent,
    batch::{self, KnownState, StreamHead},
    store::{AppendOutcome, AppendRequest, EventStore, JournalledCommand, StoreError},
};

#[derive(Default)]
struct Inner {
    log: Vec<RecordedEvent>,
    state: KnownState,
}

/// Keeps everything in a `Vec` behind a mutex. Appends follow the same rules as the
/// PostgreSQL store's batches ([`crate::batch`]), one append per batch.
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
        let mut inner = self.lock();
        let requests = [req];
        let head = inner.log.len() as i64;
        let plan = batch::plan(&requests, &inner.state, head, Utc::now());
        let mut events = Vec::with_capacity(plan.events.len());
        let mut heads: Vec<(Uuid, StreamHead)> = Vec::new();
        for p in &plan.events {
            events.push(RecordedEvent {
                event_id: p.event.event_id,
                event_type: p.event.event_type.clone(),
                schema_version: p.event.schema_version,
                stream_id: p.part.stream_id,
                stream_type: p.part.stream_type.to_string(),
                stream_version: p.stream_version,
                customer_id: p.part.customer_id,
                global_position: p.global_position,
                occurred_at: p.occurred_at,
                recorded_at: plan.recorded_at,
                actor: p.request.actor.clone(),
                correlation_id: p.request.correlation_id,
                causation_id: p.request.causation_id,
                command_id: p.request.command.command_id,
                payload: p.event.payload.clone(),
            });
            heads.push((
                p.part.stream_id,
                StreamHead {
                    stream_type: p.part.stream_type.to_string(),
                    version: p.stream_version,
                    last_position: Some(p.global_position),
                    last_hash: p.hash,
                },
            ));
        }
        let journal: Vec<JournalledCommand> = plan
            .journal
            .iter()
            .map(|j| JournalledCommand {
                command: j.command.clone(),
                stream_id: j.stream_id,
                outcome: j.outcome.clone(),
            })
            .collect();
        let result = plan.results.into_iter().next().unwrap_or_else(|| Err(StoreError::Database("empty batch".into())));
        inner.log.extend(events);
        for (id, head) in heads {
            inner.state.streams.insert(id, head);
        }
        for j in journal {
            inner.state.commands.insert(j.command.command_id, j);
        }
        Box::pin(async move { result })
    }

    fn load(&self, stream_id: Uuid) -> BoxFuture<'_, Result<Vec<RecordedEvent>, StoreError>> {
        let events = self.lock().log.iter().filter(|e| e.stream_id == stream_id).cloned().collect();
        Box::pin(async move { Ok(events) })
    }

    fn find_command(&self, command_id: Uuid) -> BoxFuture<'_, Result<Option<JournalledCommand>, StoreError>> {
        let found = self.lock().state.commands.get(&command_id).cloned();
        Box::pin(async move { Ok(found) })
    }
}
