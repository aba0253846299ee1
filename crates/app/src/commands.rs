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
    envelope::to_storage_precision,
    store::{AppendOutcome, AppendRequest, CommandRecord, EventStore, NewEvent, StoreError},
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

/// Runs commands against aggregates stored in an [`EventStore`].
#[derive(Clone)]
pub struct CommandService {
    store: Arc<dyn EventStore>,
    clock: Clock,
    max_attempts: u32,
    future_tolerance: Duration,
}

impl CommandService {
    /// A service over `store` with the system clock.
    pub fn new(store: Arc<dyn EventStore>) -> Self {
        CommandService { store, clock: Arc::new(Utc::now), max_attempts: 10, future_tolerance: Duration::minutes(5) }
    }

    /// Replaces the clock.
    pub fn with_clock(mut self, clock: Clock) -> Self {
        self.clock = clock;
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

    /// Applies a command to a customer file.
    pub async fn customer(&self, command: CustomerCommand, meta: CommandMeta) -> Result<AppendOutcome, AppError> {
        let id = command.customer_id();
        self.execute::<Customer>(id, Some(id), command, meta).await
    }

    /// Logs an interaction; the customer must exist.
    pub async fn interaction(&self, command: InteractionCommand, meta: CommandMeta) -> Result<AppendOutcome, AppError> {
        let InteractionCommand::Log(log) = &command;
        self.require_customer(log.customer_id).await?;
        let id = log.interaction_id;
        let customer = log.customer_id;
        self.execute::<Interaction>(id, Some(customer), command, meta).await
    }

    /// Checks on the write side that a customer file exists.
    pub async fn require_customer(&self, customer_id: Uuid) -> Result<Customer, AppError> {
        let (customer, _, _) = self.load::<Customer>(customer_id).await?;
        if !customer.is_registered() {
            return Err(DomainError::NotFound { entity: "customer", id: customer_id.to_string() }.into());
        }
        Ok(customer)
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
        let mut events = self.store.load(stream_id).await?;
        events.retain(|e| e.global_position <= position);
        let mut state = A::default();
        let mut version = 0;
        let mut position = None;
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
        }
        Ok((state, version, position))
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
        let now = (self.clock)();
        let occurred_at = to_storage_precision(meta.occurred_at.unwrap_or(now));
        if occurred_at > now + self.future_tolerance {
            return Err(
                DomainError::invalid("occurredAt", format!("{} is in the future", occurred_at.to_rfc3339())).into()
            );
        }
        let command_id = meta.command_id.unwrap_or_else(Uuid::now_v7);
        let tagged = serde_json::to_value(&command)
            .map_err(|e| AppError::Internal(format!("command does not serialise: {e}")))?;
        let command_type = match &tagged {
            serde_json::Value::Object(m) => m.keys().next().cloned().unwrap_or_default(),
            serde_json::Value::String(s) => s.clone(),
            _ => String::new(),
        };
        let record = CommandRecord {
            command_id,
            command_type: format!("{}.{}", A::STREAM_TYPE, command_type),
            payload: meta.fingerprint.clone().unwrap_or(tagged),
        };

        // A retry of a journalled command gets the first result, whatever happened since.
        if meta.command_id.is_some()
            && let Some(j) = self.store.find_command(command_id).await?
        {
            if j.command.payload == record.payload && j.stream_id == stream_id {
                return Ok(AppendOutcome { deduplicated: true, ..j.outcome });
            }
            return Err(AppError::CommandIdReused { command_id, original_type: j.command.command_type });
        }

        let mut attempt = 0;
        loop {
            attempt += 1;
            let (state, version, position) = self.load::<A>(stream_id).await?;
            if let Some(expected) = meta.expected_version
                && expected != version
            {
                return Err(AppError::Conflict {
                    stream_type: A::STREAM_TYPE.to_string(),
                    stream_id,
                    expected,
                    actual: version,
                });
            }
            let events = state.decide(&command).map_err(|e| match e {
                // The aggregate may not know its own id yet; the handler does.
                DomainError::NotFound { entity, id } if id.is_empty() => {
                    DomainError::NotFound { entity, id: stream_id.to_string() }
                }
                other => other,
            })?;
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
                    stream_version: version,
                    first_position: None,
                    last_position: position,
                    event_count: 0,
                    recorded_at: to_storage_precision(now),
                    deduplicated: false,
                });
            }
            let request = AppendRequest {
                stream_id,
                stream_type: A::STREAM_TYPE.to_string(),
                customer_id,
                expected_version: version,
                command: record.clone(),
                events: new_events,
                occurred_at,
                actor: meta.actor.clone(),
                correlation_id: meta.correlation_id,
                causation_id: meta.causation_id.unwrap_or(command_id),
                also: vec![],
            };
            match self.store.append(request).await {
                Ok(outcome) => return Ok(outcome),
                Err(StoreError::WrongExpectedVersion { actual, .. })
                    if meta.expected_version.is_none() && attempt < self.max_attempts =>
                {
                    tracing::debug!(%stream_id, actual, attempt, "concurrent append; deciding again on fresh state");
                    continue;
                }
                Err(StoreError::WrongExpectedVersion { expected, actual, .. }) => {
                    return Err(AppError::Conflict {
                        stream_type: A::STREAM_TYPE.to_string(),
                        stream_id,
                        expected: meta.expected_version.unwrap_or(expected),
                        actual,
                    });
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

    #[test]
    fn entity_ids_are_stable_across_retries() {
        let mut meta = CommandMeta::by(actor());
        meta.command_id = Some(Uuid::now_v7());
        assert_eq!(meta.new_entity_id("customer"), meta.new_entity_id("customer"));
        assert_ne!(meta.new_entity_id("customer"), meta.new_entity_id("interaction"));
    }
}
