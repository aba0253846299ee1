//! The history for auditors and analysts: reading state as of a time, tracing what an event
//! caused, and the tamper-evident chain of a complaint.

use async_graphql::{Context, Error, InputObject, Object, Result, SimpleObject, types::Json};
use chrono::{DateTime, Utc};
use kefu_app::StoreError;
use kefu_store::{
    history::{self, Cutoff, EventFilter},
    integrity,
};
use uuid::Uuid;

use super::common::{self, GlobalPosition};
use crate::errors;

/// A point in the history: give exactly one.
#[derive(InputObject, Debug, Clone, Copy, Default)]
pub struct AsOf {
    /// What kefu had recorded by this time (system time): what anyone could have seen then.
    pub recorded_at: Option<DateTime<Utc>>,
    /// What had happened by this time (business time), including facts recorded later with
    /// an earlier business time (e.g. imports).
    pub occurred_at: Option<DateTime<Utc>>,
    /// Everything up to this global position.
    pub position: Option<GlobalPosition>,
}

impl AsOf {
    /// The cutoff, or a `VALIDATION` error naming `field`.
    pub fn cutoff(&self, field: &str) -> Result<Cutoff> {
        match (self.recorded_at, self.occurred_at, self.position) {
            (Some(t), None, None) => Ok(Cutoff::Recorded(t)),
            (None, Some(t), None) => Ok(Cutoff::Business(t)),
            (None, None, Some(p)) => Ok(Cutoff::Position(p.0)),
            _ => Err(errors::invalid(field, "give exactly one of recordedAt, occurredAt and position")),
        }
    }
}

/// The error for a field under `query(asOf:)` that is read from a present read model, which
/// cannot be folded back: refused rather than showing the present as the past.
pub(crate) fn present_only(query: &str, field: &str) -> Error {
    errors::invalid(
        field,
        format!(
            "not available under {query}(asOf:): it is read from the present read model; query it without asOf, \
             or read the history with events(filter:)"
        ),
    )
}

pub(crate) fn store_error(e: StoreError) -> Error {
    match e {
        StoreError::Unavailable(m) => {
            tracing::warn!(error = %m, "query failed: event store unavailable");
            errors::coded("UNAVAILABLE", "the event store is unavailable right now; retry shortly")
        }
        other => errors::internal(&other.to_string()),
    }
}

/// One event of the log, as analysts and auditors read it.
#[derive(SimpleObject)]
pub struct LogEvent {
    /// Position in the global log.
    pub global_position: GlobalPosition,
    /// Event id.
    pub event_id: Uuid,
    /// Event type (see docs/events.md).
    pub event_type: String,
    /// Payload schema version.
    pub schema_version: i32,
    /// The stream's type.
    pub stream_type: String,
    /// The stream.
    pub stream_id: Uuid,
    /// Position in the stream.
    pub stream_version: i64,
    /// The customer it concerns.
    pub customer_id: Option<Uuid>,
    /// Business time.
    pub occurred_at: DateTime<Utc>,
    /// System time.
    pub recorded_at: DateTime<Utc>,
    /// Who acted (id).
    pub actor_id: String,
    /// USER, SYSTEM or IMPORT.
    pub actor_kind: String,
    /// The conversation it belongs to.
    pub correlation_id: Uuid,
    /// What caused it: a command id or another event's id.
    pub causation_id: Uuid,
    /// The command that produced it.
    pub command_id: Uuid,
    /// The event caused by this one's causation, when that is an event of the log (else the
    /// cause was a command from outside).
    pub caused_by_event_id: Option<Uuid>,
    /// The payload (proto3 JSON of its message).
    pub payload: Json<serde_json::Value>,
}

fn log_event(e: kefu_app::RecordedEvent, events_in_tree: &[Uuid]) -> LogEvent {
    LogEvent {
        global_position: GlobalPosition(e.global_position),
        event_id: e.event_id,
        event_type: e.event_type,
        schema_version: e.schema_version as i32,
        stream_type: e.stream_type,
        stream_id: e.stream_id,
        stream_version: e.stream_version,
        customer_id: e.customer_id,
        occurred_at: e.occurred_at,
        recorded_at: e.recorded_at,
        actor_id: e.actor.id,
        actor_kind: e.actor.kind.as_str().to_string(),
        correlation_id: e.correlation_id,
        causation_id: e.causation_id,
        command_id: e.command_id,
        caused_by_event_id: events_in_tree.contains(&e.causation_id).then_some(e.causation_id),
        payload: Json(e.payload),
    }
}

/// Which events (every given field must match).
#[derive(InputObject, Default)]
pub struct LogFilter {
    /// From this time, inclusive.
    pub from: Option<DateTime<Utc>>,
    /// Before this time.
    pub to: Option<DateTime<Utc>>,
    /// `from`/`to` are business time (default: recorded time).
    #[graphql(default)]
    pub business_time: bool,
    /// Event types.
    #[graphql(default)]
    pub event_types: Vec<String>,
    /// The customer.
    pub customer_id: Option<Uuid>,
    /// The stream.
    pub stream_id: Option<Uuid>,
    /// The correlation id.
    pub correlation_id: Option<Uuid>,
    /// This event and everything it caused.
    pub caused_by: Option<Uuid>,
}

/// One stream's chain as checked now.
#[derive(SimpleObject)]
pub struct ChainVerification {
    /// True when every event's content matches its hash and the chain is unbroken.
    pub verified: bool,
    /// Events checked.
    pub events: i64,
    /// Hash of the last event (hex): quote it to prove later that nothing changed up to here.
    pub head_hash: Option<String>,
    /// The first event that does not match, with what is wrong.
    pub first_mismatch: Option<ChainMismatch>,
    /// The newest anchor over the whole log, when it covers this stream's last event
    /// (`kefu audit verify` checks anchors).
    pub anchor: Option<AnchorView>,
}

/// What does not match.
#[derive(SimpleObject)]
pub struct ChainMismatch {
    /// Global position.
    pub global_position: GlobalPosition,
    /// Event id.
    pub event_id: Option<Uuid>,
    /// Version in its stream.
    pub stream_version: Option<i64>,
    /// Event type.
    pub event_type: Option<String>,
    /// What is wrong.
    pub problem: String,
}

/// An anchor over the log.
#[derive(SimpleObject)]
pub struct AnchorView {
    /// Last position covered.
    pub position: GlobalPosition,
    /// SHA-256, hex.
    pub hash: String,
    /// When it was taken.
    pub anchored_at: DateTime<Utc>,
}

/// Checks one stream's chain; also the per-event status for histories.
pub(crate) async fn verify_stream(
    ctx: &Context<'_>,
    stream_id: Uuid,
) -> Result<(ChainVerification, Vec<(i64, String, bool)>)> {
    let mut conn = common::state(ctx).pool.acquire().await.map_err(|e| store_error(kefu_store::db_error(e)))?;
    let v = integrity::verify_stream(&mut conn, stream_id).await.map_err(store_error)?;
    let per_event = v.hashes.iter().map(|(p, _, h, ok)| (*p, h.clone(), *ok)).collect();
    Ok((
        ChainVerification {
            verified: v.first_mismatch.is_none() && v.events > 0,
            events: v.events,
            head_hash: v.hashes.last().map(|h| h.2.clone()),
            first_mismatch: v.first_mismatch.map(|m| ChainMismatch {
                global_position: GlobalPosition(m.global_position),
                event_id: m.event_id,
                stream_version: m.stream_version,
                event_type: m.event_type,
                problem: m.problem,
            }),
            anchor: v.anchor.map(|a| AnchorView {
                position: GlobalPosition(a.position),
                hash: a.hash,
                anchored_at: a.anchored_at,
            }),
        },
        per_event,
    ))
}

/// History queries.
#[derive(Default)]
pub struct HistoryQuery;

#[Object]
impl HistoryQuery {
    /// An event and everything it caused, directly or through kefu's reactions (e.g. a survey
    /// response → the follow-up request it opened → that request's resolution), in log
    /// order. Each event names the event that caused it when that is in the tree.
    async fn event_trace(&self, ctx: &Context<'_>, event_id: Uuid) -> Result<Vec<LogEvent>> {
        common::actor(ctx)?;
        let pool = &common::state(ctx).pool;
        if history::event(pool, event_id).await.map_err(store_error)?.is_none() {
            return Err(errors::coded("NOT_FOUND", format!("no event {event_id}")));
        }
        let filter = EventFilter { caused_by: Some(event_id), ..EventFilter::default() };
        let events = history::page(pool, &filter, 0, 10_000).await.map_err(store_error)?;
        let ids: Vec<Uuid> = events.iter().map(|e| e.event_id).collect();
        Ok(events.into_iter().map(|e| log_event(e, &ids)).collect())
    }

    /// Events of the log in order, filtered, a page at a time (`after`: the last position of
    /// the previous page). For bulk reading use `kefu events export` or the Kafka topic.
    async fn events(
        &self,
        ctx: &Context<'_>,
        #[graphql(default)] filter: LogFilter,
        #[graphql(default = 100, desc = "Page size, 1 to 1000.")] first: i32,
        after: Option<GlobalPosition>,
    ) -> Result<Vec<LogEvent>> {
        common::actor(ctx)?;
        if !(1..=1000).contains(&first) {
            return Err(errors::invalid("first", "between 1 and 1000"));
        }
        if let Some((i, bad)) = kefu_contract::Contract::get().unknown_event_type(&filter.event_types) {
            return Err(errors::invalid(format!("filter.eventTypes[{i}]"), format!("no event type `{bad}`")));
        }
        if let (Some(from), Some(to)) = (filter.from, filter.to)
            && to <= from
        {
            return Err(errors::invalid("filter.to", "must be after filter.from"));
        }
        let f = EventFilter {
            from: filter.from,
            to: filter.to,
            axis: if filter.business_time { history::TimeAxis::Business } else { history::TimeAxis::Recorded },
            event_types: filter.event_types,
            customer_id: filter.customer_id,
            stream_id: filter.stream_id,
            correlation_id: filter.correlation_id,
            caused_by: filter.caused_by,
            through: None,
        };
        let events = history::page(&common::state(ctx).pool, &f, after.map(|a| a.0).unwrap_or(0), i64::from(first))
            .await
            .map_err(store_error)?;
        let ids: Vec<Uuid> = events.iter().map(|e| e.event_id).collect();
        Ok(events.into_iter().map(|e| log_event(e, &ids)).collect())
    }

    /// Checks a complaint's (any stream's) recorded lifecycle against its hash chain now: an
    /// auditor's proof that it was not altered after the fact.
    async fn complaint_verification(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "`ServiceRequest:<uuid>` or the bare UUID.")] id: async_graphql::ID,
    ) -> Result<ChainVerification> {
        common::actor(ctx)?;
        let id = common::parse_id("ServiceRequest", "id", &id).map_err(|e| errors::domain(e, ""))?;
        Ok(verify_stream(ctx, id).await?.0)
    }
}
