//! State as of a point in the history (`customer(asOf:)`, `serviceRequest(asOf:)`): folded
//! from the event store by the projections' own fold code, starting from a snapshot when the
//! history is long.
//!
//! A snapshot is the folded view after *every* event of its subject up to a global position
//! (positions commit in order, so no earlier event can appear later). It serves a cutoff only
//! when every event in it is within the cutoff: its last position for `position`, the latest
//! recorded time among its events for `recordedAt`, the latest business time for
//! `occurredAt`. The events after it are then read within the cutoff and folded on, which
//! gives exactly the fold of all events within the cutoff. Snapshots are a cache: rows of
//! another [`Fold::VERSION`] are ignored, and any row may be deleted.
//!
//! They are taken on read: when a fold had to go through [`SNAPSHOT_EVERY`] events or more
//! past the nearest usable snapshot, the subject's missing snapshots (one every
//! [`SNAPSHOT_EVERY`] events) are written before the answer is returned.

use chrono::{DateTime, Utc};
use kefu_app::RecordedEvent;
use kefu_store::history::{self, Cutoff, Subject};
use serde::{Serialize, de::DeserializeOwned};
use sqlx::{PgPool, Row, types::Json};
use uuid::Uuid;

use crate::{
    ProjectionError,
    customer360::{self, CustomerView, InteractionView},
    service_requests::{self, RequestView},
};

/// Events between two snapshots of a subject.
pub const SNAPSHOT_EVERY: usize = 100;

/// Events read per query while taking snapshots.
const PAGE: i64 = 1000;

/// A view that can be folded from a subject's events and snapshotted.
pub trait Fold: Serialize + DeserializeOwned + Sized {
    /// Snapshot kind.
    const KIND: &'static str;
    /// Version of the fold and of the view's serialised form. Bump it whenever either
    /// changes: snapshots of other versions are then ignored.
    const VERSION: i32;
    /// Whose events are folded.
    fn subject(id: Uuid) -> Subject;
    /// Folds `events` onto the view after the earlier ones.
    fn fold(start: Option<Self>, events: &[RecordedEvent]) -> Result<Option<Self>, ProjectionError>;
}

impl Fold for RequestView {
    const KIND: &'static str = "service_request";
    const VERSION: i32 = 1;
    fn subject(id: Uuid) -> Subject {
        Subject::Stream(id)
    }
    fn fold(start: Option<Self>, events: &[RecordedEvent]) -> Result<Option<Self>, ProjectionError> {
        crate::service_requests::fold_onto(start, events)
    }
}

impl Fold for CustomerView {
    const KIND: &'static str = "customer";
    const VERSION: i32 = 1;
    fn subject(id: Uuid) -> Subject {
        Subject::Customer(id)
    }
    fn fold(start: Option<Self>, events: &[RecordedEvent]) -> Result<Option<Self>, ProjectionError> {
        crate::customer360::fold_onto(start, events)
    }
}

/// How a view as of a point was read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Folded<F> {
    /// The view (`None`: the subject did not exist yet).
    pub view: Option<F>,
    /// The snapshot it started from (its last position), if any.
    pub from_snapshot: Option<i64>,
    /// Events folded after it.
    pub events_folded: usize,
    /// Snapshots taken on the way.
    pub snapshots_taken: usize,
}

/// A subject's view as of `cutoff`.
pub async fn as_of<F: Fold>(pool: &PgPool, id: Uuid, cutoff: Cutoff) -> Result<Folded<F>, ProjectionError> {
    let snapshot = usable_snapshot::<F>(pool, id, cutoff).await?;
    let from_snapshot = snapshot.as_ref().map(|s| s.through_position);
    let (start, after) = match snapshot {
        Some(s) => (s.view, s.through_position),
        None => (None, 0),
    };
    let tail = history::subject_events(pool, F::subject(id), after, Some(cutoff), i64::MAX).await?;
    let view = F::fold(start, &tail)?;
    let snapshots_taken = if tail.len() >= SNAPSHOT_EVERY { take_snapshots::<F>(pool, id).await? } else { 0 };
    Ok(Folded { view, from_snapshot, events_folded: tail.len(), snapshots_taken })
}

struct Snapshot<F> {
    through_position: i64,
    events: i64,
    max_recorded_at: DateTime<Utc>,
    max_occurred_at: DateTime<Utc>,
    view: Option<F>,
}

fn snapshot_from_row<F: Fold>(row: &sqlx::postgres::PgRow) -> Result<Snapshot<F>, ProjectionError> {
    let Json(view): Json<Option<F>> = row.try_get("view")?;
    Ok(Snapshot {
        through_position: row.try_get("through_position")?,
        events: row.try_get("events")?,
        max_recorded_at: row.try_get("max_recorded_at")?,
        max_occurred_at: row.try_get("max_occurred_at")?,
        view,
    })
}

const SNAPSHOT_COLUMNS: &str = "through_position, events, max_recorded_at, max_occurred_at, view";

/// The latest snapshot whose events are all within the cutoff.
async fn usable_snapshot<F: Fold>(
    pool: &PgPool,
    id: Uuid,
    cutoff: Cutoff,
) -> Result<Option<Snapshot<F>>, ProjectionError> {
    let (condition, position, time) = match cutoff {
        Cutoff::Position(p) => ("through_position <= $4", p, None),
        Cutoff::Recorded(t) => ("max_recorded_at <= $5", i64::MAX, Some(t)),
        Cutoff::Business(t) => ("max_occurred_at <= $5", i64::MAX, Some(t)),
    };
    let row = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT {SNAPSHOT_COLUMNS} FROM projections.snapshots \
         WHERE kind = $1 AND subject_id = $2 AND fold_version = $3 \
           AND $4::bigint IS NOT NULL AND $5::timestamptz IS NOT DISTINCT FROM $5 AND {condition} \
         ORDER BY through_position DESC LIMIT 1"
    )))
    .bind(F::KIND)
    .bind(id)
    .bind(F::VERSION)
    .bind(position)
    .bind(time)
    .fetch_optional(pool)
    .await?;
    row.as_ref().map(snapshot_from_row).transpose()
}

/// Writes the snapshots a subject lacks: folds on from its latest snapshot through its
/// current history, keeping the view after every [`SNAPSHOT_EVERY`] events. Returns how many
/// it wrote.
pub async fn take_snapshots<F: Fold>(pool: &PgPool, id: Uuid) -> Result<usize, ProjectionError> {
    let mut at = match usable_snapshot::<F>(pool, id, Cutoff::Position(i64::MAX)).await? {
        Some(s) => s,
        None => Snapshot {
            through_position: 0,
            events: 0,
            max_recorded_at: DateTime::<Utc>::MIN_UTC,
            max_occurred_at: DateTime::<Utc>::MIN_UTC,
            view: None,
        },
    };
    let mut pending: Vec<RecordedEvent> = Vec::new();
    let mut taken = 0;
    loop {
        let after = pending.last().map(|e| e.global_position).unwrap_or(at.through_position);
        let page = history::subject_events(pool, F::subject(id), after, None, PAGE).await?;
        let last_page = (page.len() as i64) < PAGE;
        pending.extend(page);
        while pending.len() >= SNAPSHOT_EVERY {
            let chunk: Vec<RecordedEvent> = pending.drain(..SNAPSHOT_EVERY).collect();
            at = Snapshot {
                through_position: chunk.last().map(|e| e.global_position).unwrap_or(at.through_position),
                events: at.events + chunk.len() as i64,
                max_recorded_at: chunk.iter().map(|e| e.recorded_at).fold(at.max_recorded_at, DateTime::max),
                max_occurred_at: chunk.iter().map(|e| e.occurred_at).fold(at.max_occurred_at, DateTime::max),
                view: F::fold(at.view, &chunk)?,
            };
            let written = sqlx::query(
                "INSERT INTO projections.snapshots (kind, subject_id, fold_version, through_position, events, \
                   max_recorded_at, max_occurred_at, view) VALUES ($1, $2, $3, $4, $5, $6, $7, $8) \
                 ON CONFLICT DO NOTHING",
            )
            .bind(F::KIND)
            .bind(id)
            .bind(F::VERSION)
            .bind(at.through_position)
            .bind(at.events)
            .bind(at.max_recorded_at)
            .bind(at.max_occurred_at)
            .bind(Json(&at.view))
            .execute(pool)
            .await?
            .rows_affected();
            taken += written as usize;
        }
        if last_page {
            break;
        }
    }
    if taken > 0 {
        tracing::debug!(kind = F::KIND, subject = %id, taken, through = at.through_position, "snapshots taken");
    }
    Ok(taken)
}

/// A request as of a point (`serviceRequest(asOf:)`).
pub async fn request(pool: &PgPool, id: Uuid, cutoff: Cutoff) -> Result<Folded<RequestView>, ProjectionError> {
    as_of(pool, id, cutoff).await
}

/// A customer as of a point (`customer(asOf:)`).
pub async fn customer(pool: &PgPool, id: Uuid, cutoff: Cutoff) -> Result<Folded<CustomerView>, ProjectionError> {
    as_of(pool, id, cutoff).await
}

/// A customer's interactions as of a point, newest first (the timeline's order).
pub async fn interactions_of_customer(
    pool: &PgPool,
    customer_id: Uuid,
    cutoff: Cutoff,
) -> Result<Vec<InteractionView>, ProjectionError> {
    let events =
        history::subject_events(pool, Subject::CustomerInteractions(customer_id), 0, Some(cutoff), i64::MAX).await?;
    let mut out = Vec::with_capacity(events.len());
    for e in &events {
        let kefu_domain::interaction::InteractionEvent::InteractionLogged(i) = e.decode()?;
        out.push(customer360::interaction_view(e, &i));
    }
    out.sort_by_key(|i| std::cmp::Reverse((i.occurred_at, i.interaction_id)));
    Ok(out)
}

/// A customer's service requests as of a point (those filed by then), newest filed first
/// (the order of `Customer.serviceRequests`).
pub async fn requests_of_customer(
    pool: &PgPool,
    customer_id: Uuid,
    cutoff: Cutoff,
) -> Result<Vec<RequestView>, ProjectionError> {
    let events =
        history::subject_events(pool, Subject::CustomerRequests(customer_id), 0, Some(cutoff), i64::MAX).await?;
    let mut streams: std::collections::HashMap<Uuid, Vec<RecordedEvent>> = std::collections::HashMap::new();
    for e in events {
        streams.entry(e.stream_id).or_default().push(e);
    }
    let mut out = Vec::with_capacity(streams.len());
    for events in streams.values() {
        if let Some(view) = service_requests::fold_view(events)? {
            out.push(view);
        }
    }
    let key =
        |v: &RequestView| (v.state.filed.as_ref().map(|f| f.filed_at), v.state.filed.as_ref().map(|f| f.request_id));
    out.sort_by_key(|v| std::cmp::Reverse(key(v)));
    Ok(out)
}
