//! Command handling: load the stream, decide, append with the expected version, once per
//! command id.

use std::sync::Arc;

use chrono::{DateTime, Duration, Utc};
use kefu_domain::{
    Aggregate, DomainError, DomainEvent,
    customer::{Customer, CustomerCommand},
    interaction::{Interaction, InteractionCommand},
};
use uuid::Uuid;

use crate::{
    Actor,
    cache::{Loaded, StreamCache, json_weight},
    envelope::to_storage_precision,
    store::{AppendOutcome, AppendRequest, CommandRecord, EventStore, NewEvent, StoreError, StreamAppend},
};

/// Why a command did not go through.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AppError {
    /// The domain refused it (bad value, unknown entity, not allowed now).
    #[error(transparent)]
    Domain(#[from] DomainError),
    /// The stream moved on since the caller's expected version.
    #[error("{stream_type} {stream_id} is at version {actual}, not the expected {expected}")]
    Conflict {
        /// Stream type.
        stream_type: String,
        /// Stream.
        stream_id: Uuid,
        /// What the caller expected.
        expected: i64,
        /// The current version.
        actual: i64,
    },
    /// The command id was already used for another command.
    #[error("command id {command_id} was already used for a different command ({original_type})")]
    CommandIdReused {
        /// The id.
        command_id: Uuid,
        /// The first command's type.
        original_type: String,
    },
    /// A component is down; the command was not applied. Safe to retry with the same id.
    #[error("{0}")]
    Unavailable(String),
    /// Something that should not happen (a bug or corrupt data); nothing was applied.
    #[error("internal error: {0}")]
    Internal(String),
}

impl From<StoreError> for AppError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Unavailable(m) => AppError::Unavailable(m),
            StoreError::CommandIdReused { command_id, original_type, .. } => {
                AppError::CommandIdReused { command_id, original_type }
            }
            other => AppError::Internal(other.to_string()),
        }
    }
}

/// Who sent a command, when it happened, and the client's concurrency and retry controls.
#[derive(Debug, Clone)]
pub struct CommandMeta {
    /// Client-supplied id for safe retries; generated when absent.
    pub command_id: Option<Uuid>,
    /// The stream version the client based its decision on.
    pub expected_version: Option<i64>,
    /// Who.
    pub actor: Actor,
    /// Conversation id.
    pub correlation_id: Uuid,
    /// What caused it (another event); the command itself when absent.
    pub causation_id: Option<Uuid>,
    /// Business time (historical on imports); now when absent.
    pub occurred_at: Option<DateTime<Utc>>,
    /// What a retry with the same command id must repeat: the client's own input. When
    /// absent, the command itself is compared; commands that carry values the server chose
    /// (times, policies) need the client's input here, or a retry would look different.
    pub fingerprint: Option<serde_json::Value>,
}

impl CommandMeta {
    /// A command by `actor` with no client controls.
    pub fn by(actor: Actor) -> Self {
        CommandMeta {
            command_id: None,
            expected_version: None,
            actor,
            correlation_id: Uuid::now_v7(),
            causation_id: None,
            occurred_at: None,
            fingerprint: None,
        }
    }

    /// An id for a new entity created by this command: derived from the command id when the
    /// client sent one (so a retry creates the same entity), random otherwise.
    pub fn new_entity_id(&self, kind: &str) -> Uuid {
        match self.command_id {
            Some(id) => Uuid::new_v5(&id, kind.as_bytes()),
            None => Uuid::now_v7(),
        }
    }
}

/// Source of "now", replaceable in tests.
pub type Clock = Arc<dyn Fn() -> DateTime<Utc> + Send + Sync>;

/// A stream a decision read besides the one it changes: the append succeeds only while the
/// stream is still at this version, so no command is decided on state that changed under it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Read {
    /// The stream.
    pub stream_id: Uuid,
    /// Its type.
    pub stream_type: &'static str,
    /// The version the decision saw (0: the stream did not exist).
    pub version: i64,
}

impl<A: Aggregate> Loaded<A> {
    /// What a decision that used this state read.
    pub fn read(&self, stream_id: Uuid) -> Read {
        Read { stream_id, stream_type: A::STREAM_TYPE, version: self.version }
    }
}

/// Why one attempt of a command did not go through.
#[derive(Debug)]
pub(crate) enum Failure {
    /// For the caller.
    App(AppError),
    /// A stream the decision only read moved on: decide again on fresh reads.
    StaleRead,
}

impl<E: Into<AppError>> From<E> for Failure {
    fn from(e: E) -> Self {
        Failure::App(e.into())
    }
}

impl Failure {
    /// The error for the caller after the last attempt.
    pub(crate) fn into_app(self) -> AppError {
        match self {
            Failure::App(e) => e,
            Failure::StaleRead => AppError::Unavailable("the state a command depends on kept changing; retry".into()),
        }
    }
}

/// Runs commands against aggregates stored in an [`EventStore`].
#[derive(Clone)]
pub struct CommandService {
    store: Arc<dyn EventStore>,
    clock: Clock,
    max_attempts: u32,
    future_tolerance: Duration,
    cache: Arc<StreamCache>,
}

/// Streams kept decided-on by default: about this many…
pub const DEFAULT_CACHE_STREAMS: usize = 100_000;
/// …and about this much state (estimated).
pub const DEFAULT_CACHE_BYTES: usize = 64 << 20;

impl CommandService {
    /// A service over `store` with the system clock and a stream cache of the default size.
    pub fn new(store: Arc<dyn EventStore>) -> Self {
        CommandService {
            store,
            clock: Arc::new(Utc::now),
            max_attempts: 10,
            future_tolerance: Duration::minutes(5),
            cache: Arc::new(StreamCache::new(DEFAULT_CACHE_STREAMS, DEFAULT_CACHE_BYTES)),
        }
    }

    /// Replaces the clock.
    pub fn with_clock(mut self, clock: Clock) -> Self {
        self.clock = clock;
        self
    }

    /// Replaces the stream cache (`StreamCache::new(0, 0)` turns it off).
    pub fn with_cache(mut self, cache: StreamCache) -> Self {
        self.cache = Arc::new(cache);
        self
    }

    /// Fixes the business time of a command (the given `occurredAt`, or now) at storage
    /// precision, so a command that carries it and the envelope agree to the microsecond.
    pub fn business_time(&self, meta: &mut CommandMeta) -> DateTime<Utc> {
        let at = to_storage_precision(meta.occurred_at.unwrap_or_else(|| (self.clock)()));
        meta.occurred_at = Some(at);
        at
    }

    /// The current time by this service's clock.
    pub fn now(&self) -> DateTime<Utc> {
        (self.clock)()
    }

    /// The store.
    pub fn store(&self) -> &Arc<dyn EventStore> {
        &self.store
    }

    /// Forgets the cached state of a stream changed outside [`Self::execute`].
    pub fn forget(&self, stream_id: Uuid) {
        self.cache.remove(stream_id);
    }

    /// Applies a command to a customer file.
    pub async fn customer(&self, command: CustomerCommand, meta: CommandMeta) -> Result<AppendOutcome, AppError> {
        let id = command.customer_id();
        let creates = matches!(command, CustomerCommand::Register(_));
        self.decide_and_append::<Customer>(id, Some(id), &command, &meta, &[], creates).await.map_err(Failure::into_app)
    }

    /// Logs an interaction; the customer must exist (and still exist when it is recorded).
    pub async fn interaction(&self, command: InteractionCommand, meta: CommandMeta) -> Result<AppendOutcome, AppError> {
        let InteractionCommand::Log(log) = &command;
        let (id, customer_id) = (log.interaction_id, log.customer_id);
        let mut attempt = 0;
        loop {
            attempt += 1;
            let fresh = attempt > 1;
            let customer = self.registered(customer_id, fresh).await?;
            let reads = [customer.read(customer_id)];
            match self.decide_and_append::<Interaction>(id, Some(customer_id), &command, &meta, &reads, true).await {
                Err(Failure::StaleRead) if attempt < self.max_attempts => continue,
                other => return other.map_err(Failure::into_app),
            }
        }
    }

    /// Checks on the write side that a customer file exists.
    pub async fn require_customer(&self, customer_id: Uuid) -> Result<Customer, AppError> {
        Ok((*self.registered(customer_id, true).await?.state).clone())
    }

    /// The customer, which must be registered (from the cache unless `fresh`).
    pub(crate) async fn registered(&self, customer_id: Uuid, fresh: bool) -> Result<Loaded<Customer>, AppError> {
        let customer = self.current::<Customer>(customer_id, fresh).await?;
        if customer.state.is_registered() {
            return Ok(customer);
        }
        if !fresh {
            // A cached "not registered" is not an answer: look again.
            return Box::pin(self.registered(customer_id, true)).await;
        }
        Err(DomainError::NotFound { entity: "customer", id: customer_id.to_string() }.into())
    }

    /// Loads and folds a stream: the state, its version and the position of its last event.
    pub async fn load<A: Aggregate>(&self, stream_id: Uuid) -> Result<(A, i64, Option<i64>), AppError> {
        self.load_as_of::<A>(stream_id, i64::MAX).await
    }

    /// Loads and folds a stream as it was once the global log reached `position`: only its
    /// events at or before that position count.
    pub async fn load_as_of<A: Aggregate>(
        &self,
        stream_id: Uuid,
        position: i64,
    ) -> Result<(A, i64, Option<i64>), AppError> {
        let loaded = self.fold::<A>(stream_id, position).await?;
        let version = loaded.version;
        let position = loaded.position;
        Ok((Arc::try_unwrap(loaded.state).unwrap_or_else(|shared| (*shared).clone()), version, position))
    }

    /// A stream's state just after one of its own events, the one at global `position`: the
    /// cached state when it ends exactly at that event (what a reaction to an event appended
    /// by this process usually finds), else the stream loaded and folded up to it. Never a
    /// state with a later event of the stream, nor one without that event.
    pub(crate) async fn state_at_event<A: Aggregate>(
        &self,
        stream_id: Uuid,
        position: i64,
    ) -> Result<Arc<A>, AppError> {
        if let Some(hit) = self.cache.get::<A>(stream_id)
            && hit.position == Some(position)
        {
            return Ok(hit.state);
        }
        Ok(self.fold::<A>(stream_id, position).await?.state)
    }

    async fn fold<A: Aggregate>(&self, stream_id: Uuid, position: i64) -> Result<Loaded<A>, AppError> {
        let mut events = self.store.load(stream_id).await?;
        events.retain(|e| e.global_position <= position);
        let mut state = A::default();
        let mut version = 0;
        let mut position = None;
        let mut bytes = 256;
        for recorded in &events {
            if recorded.stream_type != A::STREAM_TYPE {
                return Err(AppError::Domain(DomainError::NotFound {
                    entity: A::STREAM_TYPE,
                    id: stream_id.to_string(),
                }));
            }
            let event: A::Event = recorded.decode().map_err(|e| {
                AppError::Internal(format!(
                    "event {} ({}) of stream {stream_id} does not decode: {e}",
                    recorded.global_position, recorded.event_type
                ))
            })?;
            state.apply(&event);
            version = recorded.stream_version;
            position = Some(recorded.global_position);
            bytes += json_weight(&recorded.payload);
        }
        Ok(Loaded { state: Arc::new(state), version, position, bytes })
    }

    /// The state of the stream a decision changes: taken out of the cache (so it is changed
    /// in place, not copied) unless `fresh`; a stream the command creates is assumed empty
    /// until the append says otherwise.
    async fn for_decision<A: Aggregate>(
        &self,
        stream_id: Uuid,
        fresh: bool,
        creates: bool,
    ) -> Result<(Loaded<A>, bool), AppError> {
        if !fresh {
            if let Some(hit) = self.cache.take::<A>(stream_id) {
                return Ok((hit, false));
            }
            if creates {
                return Ok((Loaded { state: Arc::new(A::default()), version: 0, position: None, bytes: 256 }, false));
            }
        }
        // Not cached here: the decision puts back what it ends with.
        Ok((self.fold::<A>(stream_id, i64::MAX).await?, true))
    }

    /// The state of a stream to decide on: from the cache, unless `fresh` or not cached.
    pub(crate) async fn current<A: Aggregate>(&self, stream_id: Uuid, fresh: bool) -> Result<Loaded<A>, AppError> {
        if !fresh && let Some(hit) = self.cache.get::<A>(stream_id) {
            return Ok(hit);
        }
        let loaded = self.fold::<A>(stream_id, i64::MAX).await?;
        self.cache.put(stream_id, &loaded);
        Ok(loaded)
    }

    /// Decides on a command and appends its events: the whole write path.
    ///
    /// Without an expected version from the client, a concurrent append is retried on fresh
    /// state (the command is re-decided, so invariants hold); with one, it is a `Conflict`.
    pub async fn execute<A: Aggregate>(
        &self,
        stream_id: Uuid,
        customer_id: Option<Uuid>,
        command: A::Command,
        meta: CommandMeta,
    ) -> Result<AppendOutcome, AppError> {
        self.decide_and_append::<A>(stream_id, customer_id, &command, &meta, &[], false)
            .await
            .map_err(Failure::into_app)
    }

    /// One decision on `stream_id` that also depends on `reads`: decided on the cached state
    /// when there is one, appended with the version it saw, decided again on fresh state when
    /// the append finds the stream moved on. A refusal or "nothing changed" is only reported
    /// when decided on fresh state. `StaleRead` when a read stream moved on (the caller reads
    /// again and calls again). `creates`: the command starts a new stream, so there is nothing
    /// to load unless the append finds the stream exists.
    pub(crate) async fn decide_and_append<A: Aggregate>(
        &self,
        stream_id: Uuid,
        customer_id: Option<Uuid>,
        command: &A::Command,
        meta: &CommandMeta,
        reads: &[Read],
        creates: bool,
    ) -> Result<AppendOutcome, Failure> {
        let now = (self.clock)();
        let occurred_at = to_storage_precision(meta.occurred_at.unwrap_or(now));
        if occurred_at > now + self.future_tolerance {
            return Err(
                DomainError::invalid("occurredAt", format!("{} is in the future", occurred_at.to_rfc3339())).into()
            );
        }
        let command_id = meta.command_id.unwrap_or_else(Uuid::now_v7);
        let tagged = serde_json::to_value(command)
            .map_err(|e| AppError::Internal(format!("command does not serialise: {e}")))?;
        let command_type = match &tagged {
            serde_json::Value::Object(m) => m.keys().next().cloned().unwrap_or_default(),
            serde_json::Value::String(s) => s.clone(),
            _ => String::new(),
        };
        let record = CommandRecord {
            command_id,
            command_type: format!("{}.{}", A::STREAM_TYPE, command_type),
            payload: Arc::new(meta.fingerprint.clone().unwrap_or(tagged)),
        };

        let mut attempt = 0;
        let mut fresh = false;
        loop {
            attempt += 1;
            let (current, loaded) = self.for_decision::<A>(stream_id, fresh, creates).await?;
            fresh |= loaded;
            if let Some(expected) = meta.expected_version
                && expected != current.version
            {
                if !fresh {
                    fresh = true;
                    continue;
                }
                let conflict = AppError::Conflict {
                    stream_type: A::STREAM_TYPE.to_string(),
                    stream_id,
                    expected,
                    actual: current.version,
                };
                return self.journalled_or(meta, &record, stream_id, conflict).await;
            }
            let events = match current.state.decide(command) {
                Ok(events) if events.is_empty() && !fresh => {
                    fresh = true;
                    continue;
                }
                Ok(events) => events,
                Err(_) if !fresh => {
                    fresh = true;
                    continue;
                }
                Err(e) => {
                    let e = match e {
                        // The aggregate may not know its own id yet; the handler does.
                        DomainError::NotFound { entity, id } if id.is_empty() => {
                            DomainError::NotFound { entity, id: stream_id.to_string() }
                        }
                        other => other,
                    };
                    return self.journalled_or(meta, &record, stream_id, e.into()).await;
                }
            };
            let mut new_events = Vec::with_capacity(events.len());
            for (i, e) in events.iter().enumerate() {
                let (event_type, payload) =
                    e.to_payload().map_err(|err| AppError::Internal(format!("event does not serialise: {err}")))?;
                new_events.push(NewEvent {
                    event_id: match meta.command_id {
                        Some(c) => Uuid::new_v5(&c, format!("event-{i}").as_bytes()),
                        None => Uuid::now_v7(),
                    },
                    event_type: event_type.to_string(),
                    schema_version: e.schema_version(),
                    payload,
                });
            }
            if new_events.is_empty() && meta.command_id.is_none() {
                // Nothing changed and nobody will retry this command by id: nothing to record.
                return Ok(AppendOutcome {
                    stream_id,
                    stream_version: current.version,
                    first_position: None,
                    last_position: current.position,
                    event_count: 0,
                    recorded_at: to_storage_precision(now),
                    deduplicated: false,
                });
            }
            let added: usize = new_events.iter().map(|e| json_weight(&e.payload)).sum();
            let request = AppendRequest {
                stream_id,
                stream_type: A::STREAM_TYPE.to_string(),
                customer_id,
                expected_version: current.version,
                command: record.clone(),
                events: new_events,
                occurred_at,
                actor: meta.actor.clone(),
                correlation_id: meta.correlation_id,
                causation_id: meta.causation_id.unwrap_or(command_id),
                also: reads
                    .iter()
                    .map(|r| StreamAppend {
                        stream_id: r.stream_id,
                        stream_type: r.stream_type.to_string(),
                        customer_id: None,
                        expected_version: r.version,
                        events: vec![],
                    })
                    .collect(),
            };
            match self.store.append(request).await {
                Ok(outcome) if outcome.deduplicated => {
                    if current.version > 0 {
                        self.cache.put(stream_id, &current);
                    }
                    return Ok(outcome);
                }
                Ok(outcome) => {
                    let mut state = current.state;
                    let state_mut = Arc::make_mut(&mut state);
                    for e in &events {
                        state_mut.apply(e);
                    }
                    let next = Loaded {
                        state,
                        version: outcome.stream_version,
                        position: outcome.last_position.or(current.position),
                        bytes: current.bytes + added,
                    };
                    self.cache.put(stream_id, &next);
                    return Ok(outcome);
                }
                Err(StoreError::WrongExpectedVersion { stream_id: moved, .. }) if moved != stream_id => {
                    self.cache.remove(moved);
                    return Err(Failure::StaleRead);
                }
                Err(StoreError::WrongExpectedVersion { actual, .. }) => {
                    self.cache.remove(stream_id);
                    if meta.expected_version.is_none() && attempt < self.max_attempts {
                        tracing::debug!(%stream_id, actual, attempt, "concurrent append; deciding again on fresh state");
                        fresh = true;
                        continue;
                    }
                    let conflict = AppError::Conflict {
                        stream_type: A::STREAM_TYPE.to_string(),
                        stream_id,
                        expected: meta.expected_version.unwrap_or(current.version),
                        actual,
                    };
                    return self.journalled_or(meta, &record, stream_id, conflict).await;
                }
                Err(StoreError::StreamTypeMismatch { actual, .. }) => {
                    return Err(DomainError::invalid(
                        "id",
                        format!("{stream_id} is the id of a {actual}, not of a {}", A::STREAM_TYPE),
                    )
                    .into());
                }
                Err(other) => return Err(other.into()),
            }
        }
    }

    /// A command that cannot be applied now may have been applied before: a retry with the
    /// client's command id gets the first result (or `CommandIdReused`), anything else `error`.
    async fn journalled_or(
        &self,
        meta: &CommandMeta,
        record: &CommandRecord,
        stream_id: Uuid,
        error: AppError,
    ) -> Result<AppendOutcome, Failure> {
        if meta.command_id.is_some()
            && let Some(j) = self.store.find_command(record.command_id).await?
        {
            if j.command.payload == record.payload && j.stream_id == stream_id {
                return Ok(AppendOutcome { deduplicated: true, ..j.outcome });
            }
            return Err(AppError::CommandIdReused {
                command_id: record.command_id,
                original_type: j.command.command_type,
            }
            .into());
        }
        Err(error.into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{ActorKind, InMemoryEventStore};
    use kefu_domain::{
        customer::{AssignAccountManager, examples},
        interaction::examples as interactions,
    };

    fn actor() -> Actor {
        Actor {
            id: "agent.chen".into(), name: Some("陈静".into()), kind: ActorKind::User, roles: vec!["agent".into()]
        }
    }

    fn service() -> (Arc<InMemoryEventStore>, CommandService) {
        let store = Arc::new(InMemoryEventStore::new());
        (store.clone(), CommandService::new(store))
    }

    fn register() -> CustomerCommand {
        CustomerCommand::Register(examples::register_person().1)
    }

    #[tokio::test]
    async fn a_command_appends_its_events_with_the_envelope() {
        let (store, service) = service();
        let mut meta = CommandMeta::by(actor());
        meta.occurred_at = Some("2020-01-02T03:04:05.123456789Z".parse().unwrap());
        let outcome = service.customer(register(), meta.clone()).await.unwrap();
        assert_eq!(outcome.stream_version, 1);
        assert_eq!(outcome.last_position, Some(1));
        let log = store.all();
        assert_eq!(log.len(), 1);
        let e = &log[0];
        assert_eq!(e.event_type, "CustomerRegistered");
        assert_eq!(e.actor, actor());
        assert_eq!(e.customer_id, Some(e.stream_id));
        assert_eq!(e.correlation_id, meta.correlation_id);
        assert_eq!(e.causation_id, e.command_id);
        // business time kept (at storage precision), distinct from recorded time
        assert_eq!(e.occurred_at.to_rfc3339(), "2020-01-02T03:04:05.123456+00:00");
        assert!(e.recorded_at > e.occurred_at);
    }

    #[tokio::test]
    async fn a_retried_command_returns_the_first_result_and_appends_nothing() {
        let (store, service) = service();
        let mut meta = CommandMeta::by(actor());
        meta.command_id = Some(Uuid::now_v7());
        let first = service.customer(register(), meta.clone()).await.unwrap();
        let again = service.customer(register(), meta.clone()).await.unwrap();
        assert!(!first.deduplicated);
        assert!(again.deduplicated);
        assert_eq!(AppendOutcome { deduplicated: false, ..again }, first);
        assert_eq!(store.all().len(), 1);
    }

    #[tokio::test]
    async fn a_reused_command_id_for_another_command_is_refused() {
        let (_, service) = service();
        let mut meta = CommandMeta::by(actor());
        meta.command_id = Some(Uuid::now_v7());
        service.customer(register(), meta.clone()).await.unwrap();
        let other = CustomerCommand::AssignAccountManager(AssignAccountManager {
            customer_id: examples::register_person().0,
            manager: examples::staff("x", "X"),
            reason: None,
        });
        let err = service.customer(other, meta).await.unwrap_err();
        assert!(matches!(err, AppError::CommandIdReused { .. }), "{err:?}");
    }

    #[tokio::test]
    async fn a_stale_expected_version_is_a_conflict_carrying_the_current_version() {
        let (_, service) = service();
        service.customer(register(), CommandMeta::by(actor())).await.unwrap();
        let mut meta = CommandMeta::by(actor());
        meta.expected_version = Some(0);
        let cmd = CustomerCommand::AssignAccountManager(AssignAccountManager {
            customer_id: examples::register_person().0,
            manager: examples::staff("x", "X"),
            reason: None,
        });
        let err = service.customer(cmd.clone(), meta.clone()).await.unwrap_err();
        assert_eq!(
            err,
            AppError::Conflict {
                stream_type: "customer".into(),
                stream_id: examples::register_person().0,
                expected: 0,
                actual: 1
            }
        );
        meta.expected_version = Some(1);
        assert_eq!(service.customer(cmd, meta).await.unwrap().stream_version, 2);
    }

    #[tokio::test]
    async fn an_interaction_needs_a_registered_customer() {
        let (store, service) = service();
        let cmd = InteractionCommand::Log(interactions::log_phone_call());
        let err = service.interaction(cmd.clone(), CommandMeta::by(actor())).await.unwrap_err();
        assert!(matches!(err, AppError::Domain(DomainError::NotFound { entity: "customer", .. })));
        assert!(store.all().is_empty());
        service.customer(register(), CommandMeta::by(actor())).await.unwrap();
        let outcome = service.interaction(cmd, CommandMeta::by(actor())).await.unwrap();
        assert_eq!(outcome.last_position, Some(2));
    }

    #[tokio::test]
    async fn business_time_in_the_future_is_refused() {
        let (_, service) = service();
        let mut meta = CommandMeta::by(actor());
        meta.occurred_at = Some(Utc::now() + Duration::hours(1));
        let err = service.customer(register(), meta).await.unwrap_err();
        assert!(matches!(err, AppError::Domain(DomainError::Invalid { ref field, .. }) if field == "occurredAt"));
    }

    #[tokio::test]
    async fn a_no_op_command_appends_nothing_and_reports_the_current_position() {
        let (store, service) = service();
        service.customer(register(), CommandMeta::by(actor())).await.unwrap();
        let cmd = CustomerCommand::Classify(Default::default());
        let cmd = match cmd {
            CustomerCommand::Classify(mut c) => {
                c.customer_id = examples::register_person().0;
                CustomerCommand::Classify(c)
            }
            other => other,
        };
        let outcome = service.customer(cmd, CommandMeta::by(actor())).await.unwrap();
        assert_eq!(outcome.event_count, 0);
        assert_eq!(outcome.stream_version, 1);
        assert_eq!(outcome.last_position, Some(1));
        assert_eq!(store.all().len(), 1);
    }

    #[tokio::test]
    async fn the_state_at_an_event_comes_from_the_cache_only_when_it_ends_at_that_event() {
        let (_, service) = service();
        let id = examples::register_person().0;
        service.customer(register(), CommandMeta::by(actor())).await.unwrap();
        let assign = CustomerCommand::AssignAccountManager(AssignAccountManager {
            customer_id: id,
            manager: examples::staff("x", "X"),
            reason: None,
        });
        let assigned = service.customer(assign, CommandMeta::by(actor())).await.unwrap();
        assert_eq!(assigned.last_position, Some(2));

        // The cached state ends at position 2: served as it is, the same shared state twice.
        let at_2 = service.state_at_event::<Customer>(id, 2).await.unwrap();
        assert_eq!(at_2.account_manager.as_ref().map(|m| m.id.as_str()), Some("x"));
        assert!(Arc::ptr_eq(&at_2, &service.state_at_event::<Customer>(id, 2).await.unwrap()));

        // At the first event the cache holds a later state: folded from the log instead.
        let at_1 = service.state_at_event::<Customer>(id, 1).await.unwrap();
        assert!(at_1.is_registered());
        assert_eq!(at_1.account_manager, None);

        // Without the cache, the same states from the log.
        service.forget(id);
        let loaded = service.state_at_event::<Customer>(id, 2).await.unwrap();
        assert!(!Arc::ptr_eq(&at_2, &loaded));
        assert_eq!(*loaded, *at_2);
    }

    #[test]
    fn entity_ids_are_stable_across_retries() {
        let mut meta = CommandMeta::by(actor());
        meta.command_id = Some(Uuid::now_v7());
        assert_eq!(meta.new_entity_id("customer"), meta.new_entity_id("customer"));
        assert_ne!(meta.new_entity_id("customer"), meta.new_entity_id("interaction"));
    }
}
