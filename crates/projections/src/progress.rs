//! How far projections have got: in global positions (for read-your-writes), in events and
//! seconds (lag), and what they parked.
//!
//! The relay records, per partition, the offset after its last record and the cursor through
//! which everything is on the broker (one transaction). A generation's checkpoints say how far
//! it has consumed each partition. A partition the generation has drained contributes the
//! relay's cursor; any other contributes the last position applied there (partitions are in
//! position order). The minimum over partitions is a position through which every event is
//! applied.

use std::time::Duration;

use chrono::{DateTime, Utc};
use sqlx::{PgPool, Row};

use crate::{
    ProjectionError,
    apply::APPLIED_CHANNEL,
    registry::{self, Generation, Status},
};

/// Progress of one generation.
#[derive(Debug, Clone, PartialEq)]
pub struct GenerationProgress {
    /// Every event at or below this global position is applied.
    pub applied_through: i64,
    /// Records published but not yet consumed.
    pub lag_events: i64,
    /// Age of the oldest event not known to be applied (0 when caught up).
    pub lag_seconds: f64,
    /// Records consumed so far.
    pub records_consumed: i64,
    /// Records the relay has published.
    pub records_published: i64,
    /// Whether every published record has been consumed.
    pub caught_up: bool,
    /// The last event applied was recorded at this time.
    pub last_recorded_at: Option<DateTime<Utc>>,
}

/// The position through which a generation has applied every event (see the module docs).
pub async fn applied_through(pool: &PgPool, g: &Generation) -> Result<i64, ProjectionError> {
    let through: i64 = sqlx::query_scalar(
        "WITH r AS (SELECT partition, next_offset FROM event_store.relay_partitions WHERE topic = $3), \
              c AS (SELECT partition, next_offset, last_position FROM projections.checkpoints \
                    WHERE name = $1 AND generation = $2 AND topic = $3), \
              cur AS (SELECT coalesce((SELECT position FROM event_store.relay_cursor WHERE topic = $3), 0) AS position) \
         SELECT coalesce((SELECT min(CASE WHEN coalesce(c.next_offset, 0) >= r.next_offset THEN cur.position \
                                         ELSE coalesce(c.last_position, 0) END) \
                          FROM r LEFT JOIN c USING (partition), cur), (SELECT position FROM cur))",
    )
    .bind(&g.name)
    .bind(g.generation)
    .bind(&g.topic)
    .fetch_one(pool)
    .await?;
    Ok(through)
}

/// Measures a generation.
pub async fn of(pool: &PgPool, g: &Generation) -> Result<GenerationProgress, ProjectionError> {
    let row = sqlx::query(
        "WITH r AS (SELECT partition, next_offset FROM event_store.relay_partitions WHERE topic = $3), \
              c AS (SELECT partition, next_offset, last_position, last_recorded_at, records_consumed \
                    FROM projections.checkpoints WHERE name = $1 AND generation = $2 AND topic = $3), \
              cur AS (SELECT coalesce((SELECT position FROM event_store.relay_cursor WHERE topic = $3), 0) AS position), \
              j AS (SELECT r.partition, r.next_offset AS published, coalesce(c.next_offset, 0) AS consumed, \
                           coalesce(c.last_position, 0) AS last_position FROM r LEFT JOIN c USING (partition)) \
         SELECT \
           coalesce((SELECT min(CASE WHEN j.consumed >= j.published THEN cur.position ELSE j.last_position END) \
                     FROM j, cur), (SELECT position FROM cur)) AS applied_through, \
           coalesce((SELECT sum(GREATEST(j.published - j.consumed, 0)) FROM j), 0)::bigint AS lag_events, \
           coalesce((SELECT sum(j.published) FROM j), 0)::bigint AS published, \
           coalesce((SELECT sum(records_consumed) FROM c), 0)::bigint AS consumed, \
           (SELECT max(last_recorded_at) FROM c) AS last_recorded_at",
    )
    .bind(&g.name)
    .bind(g.generation)
    .bind(&g.topic)
    .fetch_one(pool)
    .await?;
    let applied_through: i64 = row.try_get("applied_through")?;
    let lag_events: i64 = row.try_get("lag_events")?;
    let lag_seconds = if lag_events > 0 {
        let oldest: Option<DateTime<Utc>> =
            sqlx::query_scalar("SELECT recorded_at FROM event_store.events WHERE global_position = $1")
                .bind(applied_through + 1)
                .fetch_optional(pool)
                .await?;
        oldest.map(|t| (Utc::now() - t).num_milliseconds().max(0) as f64 / 1000.0).unwrap_or(0.0)
    } else {
        0.0
    };
    Ok(GenerationProgress {
        applied_through,
        lag_events,
        lag_seconds,
        records_consumed: row.try_get("consumed")?,
        records_published: row.try_get("published")?,
        caught_up: lag_events == 0,
        last_recorded_at: row.try_get("last_recorded_at")?,
    })
}

/// A projection generation with its progress and dead letters, for status displays.
#[derive(Debug, Clone, PartialEq)]
pub struct ProjectionStatus {
    /// The generation.
    pub generation: Generation,
    /// Its progress.
    pub progress: GenerationProgress,
    /// Streams it parked.
    pub dead_letters: Vec<DeadLetter>,
}

/// A parked stream.
#[derive(Debug, Clone, PartialEq)]
pub struct DeadLetter {
    /// The stream.
    pub stream_id: uuid::Uuid,
    /// Its type.
    pub stream_type: String,
    /// The event that failed.
    pub event_type: String,
    /// Its position.
    pub global_position: i64,
    /// Why.
    pub reason: String,
    /// Later events of the stream skipped since.
    pub skipped_events: i32,
    /// When.
    pub parked_at: DateTime<Utc>,
}

/// Dead letters of a generation.
pub async fn dead_letters(pool: &PgPool, g: &Generation) -> Result<Vec<DeadLetter>, ProjectionError> {
    let rows = sqlx::query(
        "SELECT stream_id, stream_type, event_type, global_position, reason, skipped_events, parked_at \
         FROM projections.dead_letters WHERE name = $1 AND generation = $2 ORDER BY parked_at",
    )
    .bind(&g.name)
    .bind(g.generation)
    .fetch_all(pool)
    .await?;
    rows.iter()
        .map(|r| {
            Ok(DeadLetter {
                stream_id: r.try_get("stream_id")?,
                stream_type: r.try_get("stream_type")?,
                event_type: r.try_get("event_type")?,
                global_position: r.try_get("global_position")?,
                reason: r.try_get("reason")?,
                skipped_events: r.try_get("skipped_events")?,
                parked_at: r.try_get("parked_at")?,
            })
        })
        .collect()
}

/// Status of every generation that is active or building.
pub async fn status(pool: &PgPool) -> Result<Vec<ProjectionStatus>, ProjectionError> {
    let mut out = Vec::new();
    for g in registry::list(pool).await? {
        if g.status == Status::Retired {
            continue;
        }
        let progress = of(pool, &g).await?;
        let dead_letters = dead_letters(pool, &g).await?;
        out.push(ProjectionStatus { generation: g, progress, dead_letters });
    }
    Ok(out)
}

/// Waits until the active generation of `name` has applied everything through `position`,
/// for at most `timeout`. Returns the position it has applied through when it stopped waiting.
pub async fn wait_for(
    pool: &PgPool,
    name: &str,
    position: i64,
    timeout: Duration,
) -> Result<(bool, i64), ProjectionError> {
    let deadline = tokio::time::Instant::now() + timeout;
    let mut listener = sqlx::postgres::PgListener::connect_with(pool).await.ok();
    if let Some(l) = listener.as_mut()
        && l.listen(APPLIED_CHANNEL).await.is_err()
    {
        listener = None;
    }
    loop {
        let through = match registry::active(pool, name).await? {
            Some(g) => of(pool, &g).await?.applied_through,
            None => 0,
        };
        if through >= position {
            return Ok((true, through));
        }
        let now = tokio::time::Instant::now();
        if now >= deadline {
            return Ok((false, through));
        }
        let step = (deadline - now).min(Duration::from_millis(250));
        match listener.as_mut() {
            Some(l) => {
                let _ = tokio::time::timeout(step, l.recv()).await;
            }
            None => tokio::time::sleep(step.min(Duration::from_millis(50))).await,
        }
    }
}
