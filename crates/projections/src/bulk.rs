//! Rebuilds in memory: a new generation is folded from the log in memory and written once.
//!
//! Applied batch by batch, a rebuild reads back and rewrites every row its events touch, once
//! per batch, and PostgreSQL maintains every index row by row. A read model that implements
//! [`BulkFold`] is rebuilt instead in one transaction: the log is read from the broker without
//! a consumer group (from the first offset of every partition to where the relay had published
//! when the rebuild started), each event passes the same stream-version guard as a batch's and is
//! folded in memory. Rows that are final — as they are made (an audit entry), or once the fold
//! has reached the version their stream had in the event store when the load began (a
//! request) — are streamed out through a `COPY` kept open while the fold goes on (a task of its
//! own sends them, so PostgreSQL loads one run while the next is folded), everything else with
//! `COPY` at the end, into tables emptied in the load's transaction (so written `FREEZE`) whose
//! indexes and keys are dropped for the load and built after it; then the stream versions and the offsets
//! reached are stored, and the transaction commits. The batch-by-batch consumer continues from
//! those offsets (events written meanwhile, or the rest when the memory budget was reached).
//!
//! Nothing here decides what a row contains: the fold is the read model's own rule set, the
//! same one its batches use. Anything unusual (a record that does not decode, an event that
//! does not fold) declines the in-memory rebuild: the transaction rolls back and the rebuild
//! applies the log batch by batch, which parks the failing stream as it always does.

use std::{
    collections::HashMap,
    sync::Arc,
    time::{Duration, Instant},
};

use futures::future::BoxFuture;
use kefu_app::RecordedEvent;
use kefu_bus::BusConfig;
use kefu_contract::{Contract, Split};
use rdkafka::{
    Message, Offset, TopicPartitionList,
    consumer::{BaseConsumer, Consumer},
};
use sqlx::{AssertSqlSafe, PgConnection, PgPool, Postgres, Transaction};
use uuid::Uuid;

pub use crate::copy::Streamed;
use crate::{
    Projection, ProjectionError,
    apply::{self, APPLIED_CHANNEL, Marks, Record},
    copy::CopyRows,
    progress::GenerationProgress,
    registry::Generation,
};

/// A read model's fold of a whole log in memory, for rebuilds (see the module docs).
pub trait BulkFold: Send {
    /// Folds one event, in log order, past the version guard (each stream's events arrive once
    /// and in order). An error declines the in-memory rebuild.
    fn fold(&mut self, event: &RecordedEvent) -> Result<(), ProjectionError>;

    /// [`fold`](BulkFold::fold) given the event with its payload still encoded: a fold that
    /// reads payloads straight into its own types ([`Split::payload`]) skips their JSON. By
    /// default the payload is decoded as JSON and the event folded.
    fn fold_split(&mut self, event: Split<'_>) -> Result<(), ProjectionError> {
        let whole = event.into_whole().map_err(|e| ProjectionError::Poison(e.to_string()))?;
        self.fold(&whole)
    }

    /// No event of `stream` follows in this load: its last event (as the event store had it
    /// once the end of the log read was fixed) has been folded, so rows that depend on that
    /// stream alone are final and can be streamed out (and forgotten) now. Nothing by default.
    fn ended(&mut self, stream: Uuid) -> Result<(), ProjectionError> {
        let _ = stream;
        Ok(())
    }

    /// Rows that are final (an audit entry as it is made, a request whose stream has
    /// [`ended`](BulkFold::ended)), taken after every run of records and streamed into a `COPY`
    /// kept open while the fold goes on (one per table in turn), so that PostgreSQL loads them
    /// on the other core instead of the fold waiting for each run's load. None by default.
    fn streamed(&mut self) -> Vec<Streamed> {
        Vec::new()
    }

    /// Writes the rows that remain with `COPY`, once, at the end (the streamed `COPY` has been
    /// finished).
    fn write<'a>(&'a mut self, conn: &'a mut PgConnection) -> BoxFuture<'a, Result<(), ProjectionError>>;
}

/// What an in-memory rebuild did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BulkOutcome {
    /// Records consumed.
    pub records: i64,
    /// Events folded into the read model (the rest only moved their stream's version).
    pub folded: i64,
    /// Records whose stream version was already seen (redeliveries).
    pub duplicates: i64,
    /// Records ahead of their stream, skipped as a batch skips them.
    pub gaps: i64,
    /// Whether it stopped at the memory budget before the end of the log.
    pub budget_reached: bool,
    /// How long reading and folding the log took.
    pub folding: Duration,
    /// How long writing the rows, building the keys and indexes and committing took.
    pub writing: Duration,
}

/// An in-memory rebuild in progress: one open transaction on the new generation.
pub struct BulkLoad {
    projection: Arc<dyn Projection>,
    generation: Generation,
    fold: Box<dyn BulkFold>,
    /// The load's transaction, or the task streaming rows into it.
    tx: Writer,
    versions: HashMap<Uuid, i64>,
    /// Each stream's version in the event store when the load began: a stream whose version
    /// the fold reaches has [`ended`](BulkFold::ended).
    heads: HashMap<Uuid, i64>,
    marks: Marks,
    rebuild_keys: Vec<String>,
    outcome: BulkOutcome,
    started: Instant,
}

impl BulkLoad {
    /// Starts loading `generation` (new and empty); `None` when the read model has no
    /// in-memory fold. Begun once the end of the log to read is fixed (the relay's offsets):
    /// the streams' versions read here are then at or past every event the load will see.
    pub async fn begin(
        pool: &PgPool,
        projection: Arc<dyn Projection>,
        generation: &Generation,
    ) -> Result<Option<BulkLoad>, ProjectionError> {
        let Some(fold) = projection.bulk() else { return Ok(None) };
        let mut tx = apply::begin_writing(pool, generation).await?;
        let applied: bool = sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM _stream_versions) OR EXISTS (SELECT 1 FROM projections.checkpoints \
             WHERE name = $1 AND generation = $2)",
        )
        .bind(&generation.name)
        .bind(generation.generation)
        .fetch_one(&mut *tx)
        .await?;
        if applied {
            return Err(ProjectionError::Other(format!(
                "generation {} of {} is not empty; an in-memory rebuild starts from nothing",
                generation.generation, generation.name
            )));
        }
        // Emptied in this transaction, the tables take `COPY … FREEZE` (every straight `COPY` of
        // a load): rows are written frozen, so the comparison, `ANALYZE` and the first readers
        // do not set hint bits on every page again, and PostgreSQL skips per-row visibility work.
        let tables: Vec<&str> = projection.tables().iter().copied().chain(["_stream_versions"]).collect();
        sqlx::raw_sql(AssertSqlSafe(format!("TRUNCATE {}", tables.join(", ")))).execute(&mut *tx).await?;
        // Keys and indexes are built after the load by sorting every row: in memory rather than
        // on tape where the server's default (64 MB) is smaller (a million clocks need ~100 MB).
        sqlx::query(
            "SELECT set_config('maintenance_work_mem', greatest(setting::bigint, $1)::text || 'kB', true) \
             FROM pg_settings WHERE name = 'maintenance_work_mem'",
        )
        .bind(LOAD_SORT_MEMORY_KB)
        .execute(&mut *tx)
        .await?;
        let rebuild_keys = drop_keys_and_indexes(&mut tx, &generation.schema).await?;
        let heads: HashMap<Uuid, i64> =
            sqlx::query_as::<_, (Uuid, i64)>("SELECT stream_id, version FROM event_store.streams")
                .fetch_all(&mut *tx)
                .await?
                .into_iter()
                .collect();
        Ok(Some(BulkLoad {
            projection,
            generation: generation.clone(),
            fold,
            tx: Writer::Here(tx),
            versions: HashMap::new(),
            heads,
            marks: Marks::default(),
            rebuild_keys,
            outcome: BulkOutcome::default(),
            started: Instant::now(),
        }))
    }

    /// Folds a run of records (in log order per partition).
    pub async fn push(&mut self, records: &[Record]) -> Result<(), ProjectionError> {
        let contract = Contract::get();
        for record in records {
            // The envelope only: a payload is decoded by the fold, and only where it reads it.
            let split = contract.decode_split(&record.payload).map_err(|reason| {
                ProjectionError::Poison(format!(
                    "the record at partition {} offset {} does not decode: {reason}",
                    record.partition, record.offset
                ))
            })?;
            let event = &split.event;
            self.marks.note(record, Some(event));
            self.outcome.records += 1;
            let current = self.versions.get(&event.stream_id).copied().unwrap_or(0);
            if event.stream_version <= current {
                self.outcome.duplicates += 1;
                continue;
            }
            if event.stream_version > current + 1 {
                self.outcome.gaps += 1;
                tracing::warn!(
                    projection = self.projection.name(),
                    stream = %event.stream_id,
                    expected = current + 1,
                    got = event.stream_version,
                    "event ahead of its stream; waiting for the missing one"
                );
                continue;
            }
            let head = self.heads.get(&event.stream_id).copied();
            if let Some(head) = head
                && event.stream_version > head
            {
                // Past where the event store stood when the load began, inside the log read: the
                // store and the topic disagree (a database restored behind its topic?). A fold
                // that streamed the stream's rows out at its end cannot take more of it.
                return Err(ProjectionError::Other(format!(
                    "stream {} has version {} on the broker but {head} in the event store",
                    event.stream_id, event.stream_version
                )));
            }
            let (stream, version) = (event.stream_id, event.stream_version);
            self.versions.insert(stream, version);
            if self.projection.reads(&event.stream_type, &event.event_type) {
                self.fold.fold_split(split)?;
                self.outcome.folded += 1;
            }
            if head == Some(version) {
                self.fold.ended(stream)?;
            }
        }
        for rows in self.fold.streamed() {
            self.tx.stream(rows).await?;
        }
        Ok(())
    }

    /// Records consumed so far.
    pub fn records(&self) -> i64 {
        self.outcome.records
    }

    /// Gives up: nothing of the load is kept (its transaction rolls back once a streamed
    /// `COPY` has ended, before this returns, so that what follows finds the tables unlocked).
    pub async fn abandon(mut self) {
        if let Ok(tx) = self.tx.here().await {
            let _ = tx.rollback().await;
        }
    }

    /// Writes everything, builds the keys and indexes, stores the stream versions and the
    /// offsets reached, and commits.
    pub async fn finish(mut self, budget_reached: bool) -> Result<BulkOutcome, ProjectionError> {
        let folding = self.started.elapsed();
        let mut owned = self.tx.here().await?;
        let tx = &mut owned;
        self.fold.write(tx).await?;
        #[derive(serde::Serialize)]
        struct VersionRow {
            stream_id: Uuid,
            version: i64,
        }
        let mut versions = CopyRows::new("_stream_versions");
        let rows: Vec<VersionRow> =
            self.versions.iter().map(|(id, v)| VersionRow { stream_id: *id, version: *v }).collect();
        versions.write_all(tx, rows.iter()).await?;
        for ddl in &self.rebuild_keys {
            sqlx::raw_sql(AssertSqlSafe(ddl.as_str())).execute(&mut **tx).await?;
        }
        let tables = self.projection.tables().join(", ");
        sqlx::raw_sql(AssertSqlSafe(format!("ANALYZE {tables}, _stream_versions"))).execute(&mut **tx).await?;
        self.marks.store(tx, &self.generation).await?;
        sqlx::query("SELECT pg_notify($1, $2)")
            .bind(APPLIED_CHANNEL)
            .bind(&self.generation.name)
            .execute(&mut **tx)
            .await?;
        owned.commit().await?;
        Ok(BulkOutcome { budget_reached, folding, writing: self.started.elapsed() - folding, ..self.outcome })
    }
}

/// Where a load's rows go: its transaction, or a task that owns the transaction while a
/// `COPY` stays open across runs of records (the fold goes on while PostgreSQL loads), one
/// table's after another's as the rows come.
enum Writer {
    Here(Transaction<'static, Postgres>),
    Streaming {
        runs: tokio::sync::mpsc::Sender<Streamed>,
        task: tokio::task::JoinHandle<Result<Transaction<'static, Postgres>, ProjectionError>>,
    },
    /// Only while changing from one to the other, or after the streaming task failed.
    Gone,
}

impl Writer {
    /// Sends rows into the streamed `COPY` of their table, starting the task with the first
    /// rows; the task keeps one `COPY` open while the rows are for the same table, and ends it
    /// to start the next table's.
    async fn stream(&mut self, rows: Streamed) -> Result<(), ProjectionError> {
        if let Writer::Streaming { runs, .. } = self {
            if runs.send(rows).await.is_ok() {
                return Ok(());
            }
            // The task stopped: its error says why (it cannot end well while rows still come).
            return Err(match self.here().await {
                Err(e) => e,
                Ok(_) => ProjectionError::Other("the streamed COPY ended before its last rows".into()),
            });
        }
        let Writer::Here(mut tx) = std::mem::replace(self, Writer::Gone) else {
            return Err(ProjectionError::Other("the load's transaction was lost to an earlier error".into()));
        };
        let (runs, mut received) = tokio::sync::mpsc::channel::<Streamed>(2);
        let task = tokio::spawn(async move {
            let mut next = received.recv().await;
            while let Some(first) = next.take() {
                let mut copy = tx.copy_in_raw(&first.statement).await?;
                let mut rows = Some(first.text);
                while let Some(text) = rows.take() {
                    if let Err(e) = copy.send(text).await {
                        let _ = copy.abort("kefu could not send the rows").await;
                        return Err(e.into());
                    }
                    match received.recv().await {
                        Some(more) if more.statement == first.statement => rows = Some(more.text),
                        other => next = other,
                    }
                }
                copy.finish().await?;
            }
            Ok(tx)
        });
        runs.send(rows).await.map_err(|_| ProjectionError::Other("the streamed COPY ended at once".into()))?;
        *self = Writer::Streaming { runs, task };
        Ok(())
    }

    /// The transaction, after the streamed `COPY` (if any) has been finished.
    async fn here(&mut self) -> Result<Transaction<'static, Postgres>, ProjectionError> {
        match std::mem::replace(self, Writer::Gone) {
            Writer::Here(tx) => Ok(tx),
            Writer::Streaming { runs, task, .. } => {
                drop(runs);
                task.await.map_err(|e| ProjectionError::Other(format!("the streamed COPY failed: {e}")))?
            }
            Writer::Gone => Err(ProjectionError::Other("the load's transaction was lost to an earlier error".into())),
        }
    }
}

/// Drops the primary keys, unique constraints and indexes of the schema's tables, returning
/// the statements that build them again (keys first).
async fn drop_keys_and_indexes(
    tx: &mut Transaction<'static, Postgres>,
    schema: &str,
) -> Result<Vec<String>, ProjectionError> {
    let keys: Vec<(String, String)> = sqlx::query_as(
        "SELECT format('ALTER TABLE %I.%I DROP CONSTRAINT %I', n.nspname, t.relname, c.conname), \
                format('ALTER TABLE %I.%I ADD CONSTRAINT %I %s', n.nspname, t.relname, c.conname, \
                       pg_get_constraintdef(c.oid)) \
         FROM pg_constraint c JOIN pg_class t ON t.oid = c.conrelid JOIN pg_namespace n ON n.oid = t.relnamespace \
         WHERE n.nspname = $1 AND c.contype IN ('p', 'u') ORDER BY t.relname, c.conname",
    )
    .bind(schema)
    .fetch_all(&mut **tx)
    .await?;
    let indexes: Vec<(String, String)> = sqlx::query_as(
        "SELECT format('DROP INDEX %I.%I', n.nspname, i.relname), pg_get_indexdef(i.oid) \
         FROM pg_index x JOIN pg_class i ON i.oid = x.indexrelid JOIN pg_namespace n ON n.oid = i.relnamespace \
         WHERE n.nspname = $1 AND NOT EXISTS (SELECT 1 FROM pg_constraint c WHERE c.conindid = i.oid) \
         ORDER BY i.relname",
    )
    .bind(schema)
    .fetch_all(&mut **tx)
    .await?;
    let mut rebuild = Vec::new();
    for (drop, create) in keys.into_iter().chain(indexes) {
        sqlx::raw_sql(AssertSqlSafe(drop)).execute(&mut **tx).await?;
        rebuild.push(create);
    }
    Ok(rebuild)
}

/// The least `maintenance_work_mem` a load builds its keys and indexes with (kB).
const LOAD_SORT_MEMORY_KB: i64 = 256 * 1024;

/// Records per run handed from the broker to the fold.
const RUN: usize = 10_000;

/// The process's resident memory in bytes (Linux), to hold an in-memory rebuild to its budget.
fn resident_bytes() -> Option<usize> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: usize = statm.split_whitespace().nth(1)?.parse().ok()?;
    Some(pages * 4096)
}

enum FromBroker {
    Run(Vec<Record>),
    Failed(String),
}

/// Rebuilds `generation` in memory from the log on the broker (see the module docs). Returns
/// `None` when the read model has no in-memory fold or declined (the caller then applies the
/// log batch by batch, from the offsets stored: nothing, after a decline).
pub async fn rebuild_in_memory(
    pool: &PgPool,
    bus: &BusConfig,
    projection: Arc<dyn Projection>,
    generation: &Generation,
    memory_budget: usize,
    on_progress: &mut impl FnMut(&GenerationProgress),
) -> Result<Option<BulkOutcome>, ProjectionError> {
    let name = projection.name();
    // Where the relay had got in each partition: the broker's own high watermarks are not
    // reliable on every Kafka-protocol broker (one here reported partitions short).
    let ends: HashMap<i32, i64> = sqlx::query_as::<_, (i32, i64)>(
        "SELECT partition, next_offset FROM event_store.relay_partitions WHERE topic = $1 AND next_offset > 0",
    )
    .bind(&generation.topic)
    .fetch_all(pool)
    .await?
    .into_iter()
    .collect();
    let total: i64 = ends.values().sum();
    let Some(mut load) = BulkLoad::begin(pool, projection.clone(), generation).await? else { return Ok(None) };
    let (tx, mut rx) = tokio::sync::mpsc::channel::<FromBroker>(2);
    let reader = std::thread::Builder::new()
        .name(format!("bulk-{name}"))
        .spawn({
            let bus = bus.clone();
            let topic = generation.topic.clone();
            move || read_log(&bus, &topic, ends, &tx)
        })
        .map_err(|e| ProjectionError::Other(format!("cannot start the log reader: {e}")))?;
    let started_rss = resident_bytes();
    let mut last_progress = Instant::now();
    let mut budget_reached = false;
    let declined = loop {
        let Some(message) = rx.recv().await else { break None };
        match message {
            FromBroker::Failed(why) => break Some(why),
            FromBroker::Run(records) => {
                if let Err(e) = load.push(&records).await {
                    break Some(e.to_string());
                }
                if last_progress.elapsed() >= Duration::from_millis(200) {
                    last_progress = Instant::now();
                    let consumed = load.records();
                    on_progress(&GenerationProgress {
                        applied_through: 0,
                        lag_events: (total - consumed).max(0),
                        lag_seconds: 0.0,
                        records_consumed: consumed,
                        records_published: total,
                        caught_up: false,
                        last_recorded_at: load.marks.last_recorded_at(),
                    });
                }
                if let (Some(start), Some(now)) = (started_rss, resident_bytes())
                    && now.saturating_sub(start) > memory_budget
                {
                    tracing::warn!(
                        projection = name,
                        records = load.records(),
                        budget_mb = memory_budget >> 20,
                        "the in-memory rebuild reached its memory budget; writing what it folded and applying \
                         the rest of the log batch by batch"
                    );
                    budget_reached = true;
                    break None;
                }
            }
        }
    };
    drop(rx); // the reader stops at its next run
    let _ = tokio::task::spawn_blocking(move || reader.join()).await;
    if let Some(why) = declined {
        load.abandon().await;
        tracing::warn!(
            projection = name,
            generation = generation.generation,
            reason = %why,
            "the in-memory rebuild declined; applying the log batch by batch instead"
        );
        return Ok(None);
    }
    let outcome = load.finish(budget_reached).await?;
    tracing::info!(projection = name, generation = generation.generation, ?outcome, "rebuilt in memory");
    Ok(Some(outcome))
}

/// Reads every partition of `topic` from its first offset to `ends` (the offset after the
/// last record the relay had published there), in runs, without a consumer group.
fn read_log(bus: &BusConfig, topic: &str, mut ends: HashMap<i32, i64>, out: &tokio::sync::mpsc::Sender<FromBroker>) {
    let fail = |why: String| {
        let _ = out.blocking_send(FromBroker::Failed(why));
    };
    let mut config = bus.consumer("kefu-rebuild", "kefu-rebuild-no-group");
    // A reader that only ever reads ahead: a large prefetch keeps it busy.
    config.set("queued.max.messages.kbytes", "65536").set("queued.min.messages", "100000");
    let consumer: BaseConsumer = match config.create() {
        Ok(c) => c,
        Err(e) => return fail(format!("cannot create the log reader: {e}")),
    };
    let mut tpl = TopicPartitionList::new();
    for p in ends.keys() {
        if let Err(e) = tpl.add_partition_offset(topic, *p, Offset::Beginning) {
            return fail(format!("cannot read partition {p}: {e}"));
        }
    }
    if ends.is_empty() {
        return;
    }
    if let Err(e) = consumer.assign(&tpl) {
        return fail(format!("cannot read the topic: {e}"));
    }
    let mut run = Vec::with_capacity(RUN);
    let mut idle_since = Instant::now();
    while !ends.is_empty() {
        match consumer.poll(Duration::from_millis(100)) {
            None => {
                if idle_since.elapsed() > Duration::from_secs(30) {
                    return fail("the broker sent nothing for 30 s".into());
                }
            }
            Some(Err(e)) => tracing::warn!(error = %e, "log reader error"),
            Some(Ok(m)) => {
                idle_since = Instant::now();
                let (partition, offset) = (m.partition(), m.offset());
                let Some(&end) = ends.get(&partition) else { continue };
                if offset >= end {
                    ends.remove(&partition);
                    continue;
                }
                run.push(Record { partition, offset, payload: m.payload().unwrap_or_default().to_vec() });
                if offset + 1 >= end {
                    ends.remove(&partition);
                }
                if run.len() >= RUN && out.blocking_send(FromBroker::Run(std::mem::take(&mut run))).is_err() {
                    return;
                }
            }
        }
    }
    if !run.is_empty() {
        let _ = out.blocking_send(FromBroker::Run(run));
    }
}
