//! Reading the history for analysts and auditors: filtered pages of the global log (the
//! export streams them), and everything one event caused.

use chrono::{DateTime, Utc};
use kefu_app::{RecordedEvent, StoreError};
use sqlx::{PgPool, postgres::PgArguments, query::Query};
use uuid::Uuid;

use crate::{
    db_error,
    pg::{EVENT_COLUMNS, event_from_row},
};

/// Which time a range is on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TimeAxis {
    /// When it happened (may be historical, e.g. imports).
    Business,
    /// When kefu recorded it.
    #[default]
    Recorded,
}

/// Which events; every given field must match (lists: any of).
#[derive(Debug, Clone, Default)]
pub struct EventFilter {
    /// From this time, inclusive.
    pub from: Option<DateTime<Utc>>,
    /// Before this time.
    pub to: Option<DateTime<Utc>>,
    /// The time `from`/`to` are on.
    pub axis: TimeAxis,
    /// Event types.
    pub event_types: Vec<String>,
    /// The customer.
    pub customer_id: Option<Uuid>,
    /// The stream.
    pub stream_id: Option<Uuid>,
    /// The correlation id.
    pub correlation_id: Option<Uuid>,
    /// This event and everything it caused, directly or through reactions.
    pub caused_by: Option<Uuid>,
    /// Up to this global position (a consistent end while writes go on).
    pub through: Option<i64>,
}

/// The causal tree under an event: the events with it as causation, the other events of the
/// same commands, the whole life of any stream the tree created (a follow-up request opened
/// by a reaction, with its resolution), and so on down.
const TREE: &str = "WITH RECURSIVE tree AS ( \
       SELECT event_id, command_id, stream_id, stream_version FROM event_store.events WHERE event_id = $9 \
       UNION \
       SELECT e.event_id, e.command_id, e.stream_id, e.stream_version FROM event_store.events e JOIN tree t \
         ON e.causation_id = t.event_id OR e.command_id = t.command_id \
           OR (t.stream_version = 1 AND e.stream_id = t.stream_id)) ";

fn sql(filter: &EventFilter) -> String {
    let time = match filter.axis {
        TimeAxis::Business => "occurred_at",
        TimeAxis::Recorded => "recorded_at",
    };
    format!(
        "{}SELECT {EVENT_COLUMNS} FROM event_store.events WHERE global_position > $1 \
           AND ($2::timestamptz IS NULL OR {time} >= $2) AND ($3::timestamptz IS NULL OR {time} < $3) \
           AND (cardinality($4::text[]) = 0 OR event_type = ANY($4)) \
           AND ($5::uuid IS NULL OR customer_id = $5) AND ($6::uuid IS NULL OR stream_id = $6) \
           AND ($7::uuid IS NULL OR correlation_id = $7) AND ($8::bigint IS NULL OR global_position <= $8) \
           {} ORDER BY global_position LIMIT $10",
        if filter.caused_by.is_some() { TREE } else { "" },
        if filter.caused_by.is_some() { "AND event_id IN (SELECT event_id FROM tree)" } else { "AND $9::uuid IS NULL" },
    )
}

fn bind<'q>(
    q: Query<'q, sqlx::Postgres, PgArguments>,
    f: &EventFilter,
    after: i64,
    limit: i64,
) -> Query<'q, sqlx::Postgres, PgArguments> {
    q.bind(after)
        .bind(f.from)
        .bind(f.to)
        .bind(f.event_types.clone())
        .bind(f.customer_id)
        .bind(f.stream_id)
        .bind(f.correlation_id)
        .bind(f.through)
        .bind(f.caused_by)
        .bind(limit)
}

/// The next page of matching events after global position `after`, in log order.
pub async fn page(
    pool: &PgPool,
    filter: &EventFilter,
    after: i64,
    limit: i64,
) -> Result<Vec<RecordedEvent>, StoreError> {
    let text = sql(filter);
    let rows =
        bind(sqlx::query(sqlx::AssertSqlSafe(text)), filter, after, limit).fetch_all(pool).await.map_err(db_error)?;
    rows.iter().map(event_from_row).collect()
}

/// How many events the filter matches (for progress).
pub async fn count(pool: &PgPool, filter: &EventFilter) -> Result<i64, StoreError> {
    let text = format!("SELECT count(*) FROM ({}) x", sql(filter));
    bind(sqlx::query(sqlx::AssertSqlSafe(text)), filter, 0, i64::MAX)
        .fetch_one(pool)
        .await
        .and_then(|r| sqlx::Row::try_get::<i64, _>(&r, 0))
        .map_err(db_error)
}

/// One event by id.
pub async fn event(pool: &PgPool, event_id: Uuid) -> Result<Option<RecordedEvent>, StoreError> {
    let text = format!("SELECT {EVENT_COLUMNS} FROM event_store.events WHERE event_id = $1");
    let row = sqlx::query(sqlx::AssertSqlSafe(text)).bind(event_id).fetch_optional(pool).await.map_err(db_error)?;
    row.as_ref().map(event_from_row).transpose()
}

/// A point in the history to read as of.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cutoff {
    /// Everything up to this global position.
    Position(i64),
    /// What kefu had recorded by then.
    Recorded(DateTime<Utc>),
    /// What had happened by then (business time), as far as it is recorded now.
    Business(DateTime<Utc>),
}

impl Cutoff {
    /// Whether an event at this position and these times is within the cutoff.
    pub fn includes(self, global_position: i64, recorded_at: DateTime<Utc>, occurred_at: DateTime<Utc>) -> bool {
        match self {
            Cutoff::Position(p) => global_position <= p,
            Cutoff::Recorded(t) => recorded_at <= t,
            Cutoff::Business(t) => occurred_at <= t,
        }
    }

    fn sql(self) -> &'static str {
        match self {
            Cutoff::Position(_) => "global_position <= $3",
            Cutoff::Recorded(_) => "recorded_at <= $4",
            Cutoff::Business(_) => "occurred_at <= $4",
        }
    }

    fn binds(self) -> (i64, Option<DateTime<Utc>>) {
        match self {
            Cutoff::Position(p) => (p, None),
            Cutoff::Recorded(t) | Cutoff::Business(t) => (i64::MAX, Some(t)),
        }
    }
}

/// Whose history a fold reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Subject {
    /// One stream.
    Stream(Uuid),
    /// A customer's own stream and their interactions.
    Customer(Uuid),
    /// A customer's interactions.
    CustomerInteractions(Uuid),
    /// Every service request filed for a customer (whole streams).
    CustomerRequests(Uuid),
}

/// A subject's events after global position `after`, within `cutoff` when given, in log
/// order (which is stream order within a stream), at most `limit`.
pub async fn subject_events(
    pool: &PgPool,
    subject: Subject,
    after: i64,
    cutoff: Option<Cutoff>,
    limit: i64,
) -> Result<Vec<RecordedEvent>, StoreError> {
    let (id, which) = match subject {
        Subject::Stream(id) => (id, "stream_id = $1"),
        Subject::Customer(id) => (id, "customer_id = $1 AND stream_type IN ('customer', 'interaction')"),
        Subject::CustomerInteractions(id) => (id, "customer_id = $1 AND stream_type = 'interaction'"),
        Subject::CustomerRequests(id) => (
            id,
            "stream_id IN (SELECT stream_id FROM event_store.events WHERE customer_id = $1 \
               AND stream_type = 'service_request' AND stream_version = 1)",
        ),
    };
    let cutoff = cutoff.unwrap_or(Cutoff::Position(i64::MAX));
    // Both cutoff parameters are typed in every variant, whichever one filters.
    let text = format!(
        "SELECT {EVENT_COLUMNS} FROM event_store.events WHERE {which} AND global_position > $2 \
           AND $3::bigint IS NOT NULL AND $4::timestamptz IS NOT DISTINCT FROM $4 AND {} \
         ORDER BY global_position LIMIT $5",
        cutoff.sql()
    );
    let (p, t) = cutoff.binds();
    let rows = sqlx::query(sqlx::AssertSqlSafe(text))
        .bind(id)
        .bind(after)
        .bind(p)
        .bind(t)
        .bind(limit)
        .fetch_all(pool)
        .await
        .map_err(db_error)?;
    rows.iter().map(event_from_row).collect()
}
