//! Applying a batch of Kafka records to a projection generation, exactly once.
//!
//! One PostgreSQL transaction per batch holds the read-model writes, the per-stream version
//! guard and the consumed offsets; either all of it commits or none. The guard applies an
//! event only when its stream version is exactly one more than the last applied, so a
//! redelivered record (replay, rebalance, restart between commit and offset commit) changes
//! nothing. If an event fails, the batch is replayed with a savepoint per event: the failing
//! event's stream is parked in `projections.dead_letters` and every other stream flows on.

use std::collections::{BTreeMap, HashMap, HashSet};

use chrono::{DateTime, Utc};
use kefu_app::RecordedEvent;
use kefu_contract::Contract;
use sqlx::{AssertSqlSafe, PgConnection, PgPool, Row};
use uuid::Uuid;

use crate::{Projection, ProjectionError, registry::Generation};

/// Channel notified after every committed batch (payload: projection name).
pub const APPLIED_CHANNEL: &str = "kefu_projection_applied";

/// A consumed Kafka record.
#[derive(Debug, Clone)]
pub struct Record {
    /// Partition.
    pub partition: i32,
    /// Offset.
    pub offset: i64,
    /// The binary envelope.
    pub payload: Vec<u8>,
}

/// What a batch did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BatchOutcome {
    /// Events applied to the read model.
    pub applied: usize,
    /// Records whose stream version was already applied (redeliveries).
    pub duplicates: usize,
    /// Records ahead of their stream (a missing predecessor); not applied.
    pub gaps: usize,
    /// Events of parked streams, skipped.
    pub parked: usize,
    /// Streams newly parked by this batch.
    pub newly_parked: usize,
    /// Records that did not decode.
    pub undecodable: usize,
}

struct Decoded<'r> {
    record: &'r Record,
    event: Result<RecordedEvent, String>,
    /// Whether the projection reads this event; when not, its payload was not decoded and
    /// the event only moves its stream's version.
    read: bool,
}

/// Decodes a record for a projection: the whole event when the projection reads its type
/// (true), else only its envelope (false: the event only moves its stream's version).
pub(crate) fn decode(projection: &dyn Projection, record: &Record) -> (Result<RecordedEvent, String>, bool) {
    let contract = Contract::get();
    let read = match contract.peek_types(&record.payload) {
        Ok((event_type, stream_type)) => projection.reads(stream_type, event_type),
        Err(_) => true, // the full decode says what is wrong
    };
    let event = if read { contract.decode(&record.payload) } else { contract.decode_envelope_only(&record.payload) };
    (event.map_err(|e| e.to_string()), read)
}

/// Applies a batch. Retries with per-event isolation when an event fails; returns
/// `Unavailable` (nothing committed) when the database is unreachable.
pub async fn apply_batch(
    pool: &PgPool,
    projection: &dyn Projection,
    generation: &Generation,
    records: &[Record],
) -> Result<BatchOutcome, ProjectionError> {
    if records.is_empty() {
        return Ok(BatchOutcome::default());
    }
    let decoded: Vec<Decoded<'_>> = records
        .iter()
        .map(|record| {
            let (event, read) = decode(projection, record);
            Decoded { record, event, read }
        })
        .collect();
    match apply_in_transaction(pool, projection, generation, &decoded, false).await {
        Err(ProjectionError::Poison(reason)) => {
            tracing::warn!(
                projection = projection.name(),
                generation = generation.generation,
                %reason,
                "an event failed; re-applying the batch one event at a time to park only its stream"
            );
            apply_in_transaction(pool, projection, generation, &decoded, true).await
        }
        other => other,
    }
}

/// A transaction writing to `generation`: its schema on the search path, lz4 for every value
/// PostgreSQL compresses (pglz was a fifth of its time in a rebuild), and an asynchronous
/// commit (ADR 0019).
///
/// A read model is derived from the log, and its consumer's offsets are stored in the same
/// transaction as the rows they produced; PostgreSQL may lose the last asynchronously
/// committed transactions in a crash, but only whole, in commit order, and never corrupts:
/// the rows and the offsets go back together, and the consumer re-applies those events from
/// the broker. Nothing outside reads a projection's commit as a promise (automations send
/// commands whose ids derive from the event; the scheduler only learns from read models when
/// to ask an aggregate). The event store's own commits stay synchronous.
pub(crate) async fn begin_writing(
    pool: &PgPool,
    generation: &Generation,
) -> Result<sqlx::Transaction<'static, sqlx::Postgres>, ProjectionError> {
    let mut tx = pool.begin().await?;
    sqlx::raw_sql(AssertSqlSafe(format!(
        "SET LOCAL search_path TO {}; SET LOCAL default_toast_compression = lz4; \
         SET LOCAL synchronous_commit = off",
        generation.schema
    )))
    .execute(&mut *tx)
    .await?;
    Ok(tx)
}

async fn apply_in_transaction(
    pool: &PgPool,
    projection: &dyn Projection,
    generation: &Generation,
    decoded: &[Decoded<'_>],
    isolate: bool,
) -> Result<BatchOutcome, ProjectionError> {
    let mut tx = begin_writing(pool, generation).await?;
    let streams: Vec<Uuid> = decoded
        .iter()
        .filter_map(|d| d.event.as_ref().ok().map(|e| e.stream_id))
        .collect::<HashSet<_>>()
        .into_iter()
        .collect();
    let mut parked: HashSet<Uuid> = sqlx::query_scalar(
        "SELECT stream_id FROM projections.dead_letters WHERE name = $1 AND generation = $2 AND stream_id = ANY($3)",
    )
    .bind(&generation.name)
    .bind(generation.generation)
    .bind(&streams)
    .fetch_all(&mut *tx)
    .await?
    .into_iter()
    .collect();
    let mut versions: HashMap<Uuid, i64> = HashMap::new();
    for row in sqlx::query("SELECT stream_id, version FROM _stream_versions WHERE stream_id = ANY($1) FOR UPDATE")
        .bind(&streams)
        .fetch_all(&mut *tx)
        .await?
    {
        versions.insert(row.try_get("stream_id")?, row.try_get("version")?);
    }
    let mut changed: HashSet<Uuid> = HashSet::new();
    let mut outcome = BatchOutcome::default();
    // Outside isolation, the events past the guard are applied together after the loop.
    let mut pending: Vec<&RecordedEvent> = Vec::new();

    for d in decoded {
        let event = match &d.event {
            Ok(e) => e,
            Err(reason) if isolate => {
                outcome.undecodable += 1;
                sqlx::query(
                    "INSERT INTO projections.undecodable (name, generation, partition, \"offset\", reason) \
                     VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING",
                )
                .bind(&generation.name)
                .bind(generation.generation)
                .bind(d.record.partition)
                .bind(d.record.offset)
                .bind(reason)
                .execute(&mut *tx)
                .await?;
                tracing::error!(partition = d.record.partition, offset = d.record.offset, %reason, "record does not decode; skipped");
                continue;
            }
            Err(reason) => return Err(ProjectionError::Poison(reason.clone())),
        };
        if parked.contains(&event.stream_id) {
            outcome.parked += 1;
            sqlx::query(
                "UPDATE projections.dead_letters SET skipped_events = skipped_events + 1 \
                 WHERE name = $1 AND generation = $2 AND stream_id = $3",
            )
            .bind(&generation.name)
            .bind(generation.generation)
            .bind(event.stream_id)
            .execute(&mut *tx)
            .await?;
            continue;
        }
        let current = versions.get(&event.stream_id).copied().unwrap_or(0);
        if event.stream_version <= current {
            outcome.duplicates += 1;
            continue;
        }
        if event.stream_version > current + 1 {
            outcome.gaps += 1;
            tracing::warn!(
                projection = projection.name(),
                stream = %event.stream_id,
                expected = current + 1,
                got = event.stream_version,
                "event ahead of its stream; waiting for the missing one"
            );
            continue;
        }
        if !d.read || !isolate {
            versions.insert(event.stream_id, event.stream_version);
            changed.insert(event.stream_id);
            outcome.applied += 1;
            if d.read {
                pending.push(event);
            }
            continue;
        }
        sqlx::query("SAVEPOINT event").execute(&mut *tx).await?;
        match projection.apply(&mut tx, event).await {
            Ok(()) => {
                sqlx::query("RELEASE SAVEPOINT event").execute(&mut *tx).await?;
                versions.insert(event.stream_id, event.stream_version);
                changed.insert(event.stream_id);
                outcome.applied += 1;
            }
            Err(ProjectionError::Unavailable(m)) => return Err(ProjectionError::Unavailable(m)),
            Err(e) => {
                sqlx::query("ROLLBACK TO SAVEPOINT event").execute(&mut *tx).await?;
                park(&mut tx, generation, d.record, event, &e.to_string()).await?;
                parked.insert(event.stream_id);
                outcome.newly_parked += 1;
            }
        }
    }
    if !pending.is_empty() {
        match projection.apply_all(&mut tx, &pending).await {
            Ok(()) => {}
            Err(ProjectionError::Unavailable(m)) => return Err(ProjectionError::Unavailable(m)),
            Err(e) => return Err(ProjectionError::Poison(e.to_string())),
        }
    }

    if !changed.is_empty() {
        let ids: Vec<Uuid> = changed.iter().copied().collect();
        let vs: Vec<i64> = ids.iter().map(|id| versions[id]).collect();
        sqlx::query(
            "INSERT INTO _stream_versions (stream_id, version) SELECT * FROM UNNEST($1::uuid[], $2::bigint[]) \
             ON CONFLICT (stream_id) DO UPDATE SET version = EXCLUDED.version",
        )
        .bind(&ids)
        .bind(&vs)
        .execute(&mut *tx)
        .await?;
    }
    store_checkpoints(&mut tx, generation, decoded).await?;
    sqlx::query("SELECT pg_notify($1, $2)").bind(APPLIED_CHANNEL).bind(&generation.name).execute(&mut *tx).await?;
    tx.commit().await?;
    Ok(outcome)
}

async fn park(
    conn: &mut PgConnection,
    generation: &Generation,
    record: &Record,
    event: &RecordedEvent,
    reason: &str,
) -> Result<(), ProjectionError> {
    tracing::error!(
        projection = %generation.name,
        generation = generation.generation,
        stream = %event.stream_id,
        event_type = %event.event_type,
        position = event.global_position,
        %reason,
        "event cannot be applied; its stream is parked (other streams continue)"
    );
    sqlx::query(
        "INSERT INTO projections.dead_letters (name, generation, stream_id, stream_type, event_id, event_type, \
           global_position, partition, \"offset\", reason) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) \
         ON CONFLICT DO NOTHING",
    )
    .bind(&generation.name)
    .bind(generation.generation)
    .bind(event.stream_id)
    .bind(&event.stream_type)
    .bind(event.event_id)
    .bind(&event.event_type)
    .bind(event.global_position)
    .bind(record.partition)
    .bind(record.offset)
    .bind(reason)
    .execute(conn)
    .await?;
    Ok(())
}

async fn store_checkpoints(
    conn: &mut PgConnection,
    generation: &Generation,
    decoded: &[Decoded<'_>],
) -> Result<(), ProjectionError> {
    let mut marks = Marks::default();
    for d in decoded {
        marks.note(d.record, d.event.as_ref().ok());
    }
    marks.store(conn, generation).await
}

/// How far a run of records reaches in each partition: what the checkpoints store.
#[derive(Debug, Default)]
pub(crate) struct Marks(BTreeMap<i32, Mark>);

#[derive(Debug)]
struct Mark {
    next_offset: i64,
    last_position: i64,
    last_recorded_at: Option<DateTime<Utc>>,
    count: i64,
}

impl Marks {
    /// Counts a consumed record (and its event, when it decoded).
    pub(crate) fn note(&mut self, record: &Record, event: Option<&RecordedEvent>) {
        let m = self.0.entry(record.partition).or_insert(Mark {
            next_offset: 0,
            last_position: 0,
            last_recorded_at: None,
            count: 0,
        });
        m.next_offset = m.next_offset.max(record.offset + 1);
        m.count += 1;
        if let Some(e) = event {
            m.last_position = m.last_position.max(e.global_position);
            m.last_recorded_at = m.last_recorded_at.max(Some(e.recorded_at));
        }
    }

    /// The last event's recording time.
    pub(crate) fn last_recorded_at(&self) -> Option<DateTime<Utc>> {
        self.0.values().filter_map(|m| m.last_recorded_at).max()
    }

    /// Adds the run to the generation's checkpoints.
    pub(crate) async fn store(&self, conn: &mut PgConnection, generation: &Generation) -> Result<(), ProjectionError> {
        for (partition, m) in &self.0 {
            sqlx::query(
                "INSERT INTO projections.checkpoints (name, generation, topic, partition, next_offset, last_position, \
                   last_recorded_at, records_consumed) VALUES ($1, $2, $3, $4, $5, $6, $7, $8) \
                 ON CONFLICT (name, generation, topic, partition) DO UPDATE SET \
                   next_offset = GREATEST(projections.checkpoints.next_offset, EXCLUDED.next_offset), \
                   last_position = GREATEST(projections.checkpoints.last_position, EXCLUDED.last_position), \
                   last_recorded_at = GREATEST(projections.checkpoints.last_recorded_at, EXCLUDED.last_recorded_at), \
                   records_consumed = projections.checkpoints.records_consumed + EXCLUDED.records_consumed, \
                   updated_at = clock_timestamp()",
            )
            .bind(&generation.name)
            .bind(generation.generation)
            .bind(&generation.topic)
            .bind(partition)
            .bind(m.next_offset)
            .bind(m.last_position)
            .bind(m.last_recorded_at)
            .bind(m.count)
            .execute(&mut *conn)
            .await?;
        }
        Ok(())
    }
}

/// The stored next offset of each partition of a generation.
pub async fn stored_offsets(pool: &PgPool, generation: &Generation) -> Result<HashMap<i32, i64>, ProjectionError> {
    let rows = sqlx::query(
        "SELECT partition, next_offset FROM projections.checkpoints WHERE name = $1 AND generation = $2 AND topic = $3",
    )
    .bind(&generation.name)
    .bind(generation.generation)
    .bind(&generation.topic)
    .fetch_all(pool)
    .await?;
    let mut out = HashMap::new();
    for r in rows {
        out.insert(r.try_get("partition")?, r.try_get("next_offset")?);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use sqlx::{ConnectOptions, postgres::PgPoolOptions};

    use super::*;
    use crate::registry::Status;

    /// A read model's transaction commits without waiting for the disk (ADR 0019) even on a
    /// server whose default is to wait, and only that transaction: the same connection waits
    /// again afterwards (the event store's commits share these servers and must stay durable).
    #[tokio::test]
    async fn read_model_transactions_alone_commit_asynchronously() {
        let db = kefu_testkit::fresh_database().await.unwrap();
        let options = db.url.parse::<sqlx::postgres::PgConnectOptions>().unwrap();
        // The test cluster runs with synchronous_commit off for everything; a production
        // server waits.
        let options = options.options([("synchronous_commit", "on")]).disable_statement_logging();
        let pool = PgPoolOptions::new().max_connections(1).connect_with(options).await.unwrap();
        let generation = Generation {
            name: "probe".into(),
            generation: 1,
            schema: "public".into(),
            status: Status::Building,
            fingerprint: String::new(),
            topic: "t".into(),
            created_at: Utc::now(),
            activated_at: None,
        };
        let setting =
            "SELECT current_setting('synchronous_commit') || ' ' || current_setting('default_toast_compression')";
        let mut tx = begin_writing(&pool, &generation).await.unwrap();
        let inside: String = sqlx::query_scalar(setting).fetch_one(&mut *tx).await.unwrap();
        tx.commit().await.unwrap();
        let after: String = sqlx::query_scalar(setting).fetch_one(&pool).await.unwrap();
        assert_eq!(inside, "off lz4");
        assert!(after.starts_with("on "), "the setting leaked out of the transaction: {after}");
    }
}
