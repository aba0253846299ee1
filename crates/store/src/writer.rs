//! The group-committing writer: many appends, one statement, one COMMIT.
//!
//! Commands are decided concurrently by their callers; their appends queue here. A thread of
//! its own (with its own connections, so it never waits for a turn behind the callers) takes
//! everything queued, up to a bound, as one batch, in two stages that overlap:
//!
//! 1. **read**: one statement reads every stream and command id the batch touches (versions,
//!    last hashes, journal entries) and the log head, as one snapshot — while the previous
//!    batch is still being written;
//! 2. **write**: the snapshot, brought forward by what the writer's own batches committed since
//!    it was taken, is planned ([`kefu_app::batch`]: each append's outcome on its own,
//!    positions, hashes) and written by one statement in its own transaction: it takes the
//!    `log_head` row lock (the lock every appender of every process takes, ADR 0002), checks
//!    that the head is still where the plan assumed, and only then writes the events, their
//!    hashes, the streams, the journal with each outcome, the new head and the notification.
//!    One round trip and one COMMIT for the whole batch; only then is any caller answered.
//!
//! When the head has moved (another process appended since the snapshot), the statement
//! writes nothing and the batch goes the careful way: `BEGIN`, the head lock, the read under
//! the lock, the same write, `COMMIT`. Both ways plan with the same rules, so they differ only
//! in speed.
//!
//! An append that fails a check fails alone. A statement that the database refuses for its
//! data (a value it cannot store) is retried append by append, so only the culprit fails. A
//! failed COMMIT, or a lost connection, fails every append of the batch as `Unavailable`: a
//! retry with the same command id is safe (if the COMMIT did land after all, the retry gets
//! the journalled outcome).
//!
//! This follows EventStoreDB's single writer (checks in memory, flush when the queue empties)
//! and Marten's QuickAppend (the append in one server-side statement); see ADR 0014.

use std::{
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use chrono::{DateTime, Utc};
use kefu_app::{
    Actor,
    batch::{self, KnownState, Plan, StreamHead},
    integrity::{GENESIS, from_bytes},
    store::{AppendOutcome, AppendRequest, CommandRecord, JournalledCommand, StoreError},
};
use sqlx::{Connection, PgConnection, PgPool, Row, types::Json};
use tokio::sync::{mpsc, oneshot};
use uuid::Uuid;

use crate::db_error;

/// Bounds on one batch.
#[derive(Debug, Clone, Copy)]
pub struct WriterOptions {
    /// Appends per transaction.
    pub max_appends: usize,
    /// Events per transaction (an append larger than this still goes alone).
    pub max_events: usize,
    /// Appends waiting for the writer before callers wait to queue.
    pub queue: usize,
}

impl Default for WriterOptions {
    fn default() -> Self {
        WriterOptions { max_appends: 1024, max_events: 8192, queue: 16384 }
    }
}

struct Job {
    request: AppendRequest,
    reply: oneshot::Sender<Result<AppendOutcome, StoreError>>,
}

/// What the writer did so far: how well batches filled and where their time went.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WriterStats {
    /// Transactions.
    pub batches: u64,
    /// Appends in them.
    pub appends: u64,
    /// Events written.
    pub events: u64,
    /// Batches that found the head moved and went the careful way.
    pub careful: u64,
    /// Time reading snapshots (overlaps the previous batch's write).
    pub read: Duration,
    /// Time planning (checks and hashes).
    pub plan: Duration,
    /// Time writing and committing.
    pub write: Duration,
}

#[derive(Default)]
struct Counters(Mutex<WriterStats>);

impl Counters {
    fn add(&self, f: impl FnOnce(&mut WriterStats)) {
        f(&mut self.0.lock().unwrap_or_else(|p| p.into_inner()));
    }
}

/// Handle to the writer task; the task ends when every handle is dropped.
pub(crate) struct Writer {
    jobs: mpsc::Sender<Job>,
    counters: Arc<Counters>,
}

impl Writer {
    /// Starts the writer on a thread of its own with its own connection: the writer is the
    /// one serial step every append waits for, so it must not queue behind the tasks that
    /// decide commands for a turn on the runtime's threads.
    pub(crate) fn start(pool: PgPool, options: WriterOptions) -> Writer {
        let (jobs, rx) = mpsc::channel(options.queue.max(1));
        let counters = Arc::new(Counters::default());
        let task_counters = counters.clone();
        let spawned = std::thread::Builder::new().name("kefu-writer".into()).spawn(move || {
            match tokio::runtime::Builder::new_current_thread().enable_all().build() {
                Ok(runtime) => runtime.block_on(run(pool, rx, options, task_counters)),
                Err(e) => tracing::error!(error = %e, "cannot start the event store writer"),
            }
        });
        if let Err(e) = spawned {
            // The handle's sends fail, and every append reports the writer unavailable.
            tracing::error!(error = %e, "cannot start the event store writer thread");
        }
        Writer { jobs, counters }
    }

    /// Counters since start.
    pub(crate) fn stats(&self) -> WriterStats {
        *self.counters.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Queues an append and waits for its COMMIT.
    pub(crate) async fn append(&self, request: AppendRequest) -> Result<AppendOutcome, StoreError> {
        let (reply, answer) = oneshot::channel();
        self.jobs
            .send(Job { request, reply })
            .await
            .map_err(|_| StoreError::Unavailable("the event store writer has stopped".into()))?;
        answer.await.map_err(|_| StoreError::Unavailable("the event store writer stopped mid-batch".into()))?
    }
}

async fn run(pool: PgPool, rx: mpsc::Receiver<Job>, options: WriterOptions, counters: Arc<Counters>) {
    let (prepared_tx, prepared_rx) = mpsc::channel::<Prepared>(1);
    tokio::join!(
        read_stage(pool.clone(), rx, prepared_tx, options, counters.clone()),
        write_stage(pool, prepared_rx, counters)
    );
}

/// A batch with the snapshot it was read on.
struct Prepared {
    requests: Vec<AppendRequest>,
    replies: Vec<oneshot::Sender<Result<AppendOutcome, StoreError>>>,
    snapshot: Option<Snapshot>,
    /// Tells the read stage that the write stage took this batch.
    taken: oneshot::Sender<()>,
}

/// What the store held for a batch, as of one log head.
struct Snapshot {
    head: i64,
    last_recorded_at: Option<DateTime<Utc>>,
    state: KnownState,
    /// A stream has history from before the hash chain: only the careful way chains it.
    unchained: bool,
}

/// What a committed batch changed, to bring later snapshots forward.
struct Effects {
    start: i64,
    end: i64,
    recorded_at: DateTime<Utc>,
    streams: Vec<(Uuid, StreamHead)>,
    journal: Vec<JournalledCommand>,
}

async fn connect(pool: &PgPool) -> Result<PgConnection, StoreError> {
    // Connections of the writer's own (on its own runtime), opened like the pool's.
    let options = pool.connect_options();
    let timeout = pool.options().get_acquire_timeout();
    let mut conn = tokio::time::timeout(timeout, PgConnection::connect_with(&options))
        .await
        .map_err(|_| StoreError::Unavailable("timed out connecting to PostgreSQL".into()))?
        .map_err(db_error)?;
    // The writer's statements are planned once. Every row they read is found by a key, so an
    // index is always the right way; without this, a plan made while the tables were small
    // would scan them whole long after they have grown (PostgreSQL keeps a generic plan until
    // the next ANALYZE), and re-planning each batch costs more than the batch. (No JIT: the
    // penalty on scans would make every statement look expensive enough to compile.)
    sqlx::raw_sql("SET plan_cache_mode = force_generic_plan; SET enable_seqscan = off; SET jit = off")
        .execute(&mut conn)
        .await
        .map_err(db_error)?;
    Ok(conn)
}

async fn read_stage(
    pool: PgPool,
    mut rx: mpsc::Receiver<Job>,
    prepared: mpsc::Sender<Prepared>,
    options: WriterOptions,
    counters: Arc<Counters>,
) {
    let mut conn: Option<PgConnection> = None;
    let mut carried: Option<Job> = None;
    loop {
        let first = match carried.take() {
            Some(job) => job,
            None => match rx.recv().await {
                Some(job) => job,
                None => return,
            },
        };
        let mut events = first.request.part_refs().map(|p| p.events.len()).sum::<usize>();
        let mut jobs = vec![first];
        // Everything that queued meanwhile goes into this batch.
        while jobs.len() < options.max_appends {
            let Ok(job) = rx.try_recv() else { break };
            let n: usize = job.request.part_refs().map(|p| p.events.len()).sum();
            if events + n > options.max_events {
                carried = Some(job);
                break;
            }
            events += n;
            jobs.push(job);
        }
        let (requests, replies): (Vec<AppendRequest>, Vec<_>) = jobs.into_iter().map(|j| (j.request, j.reply)).unzip();
        let t = Instant::now();
        if conn.is_none() {
            conn = connect(&pool).await.ok();
        }
        let snapshot = match conn.as_mut() {
            Some(c) => match read_snapshot(c, &requests).await {
                Ok(s) => Some(s),
                Err(e) => {
                    tracing::debug!(error = %e, "snapshot read failed; the batch goes the careful way");
                    conn = None;
                    None
                }
            },
            None => None,
        };
        counters.add(|s| s.read += t.elapsed());
        let (taken, was_taken) = oneshot::channel();
        if prepared.send(Prepared { requests, replies, snapshot, taken }).await.is_err() {
            return;
        }
        // At most one batch waits while another is written: the next snapshot is then read
        // after the batch before it committed or failed, which keeps bringing it forward simple.
        let _ = was_taken.await;
    }
}

async fn write_stage(pool: PgPool, mut rx: mpsc::Receiver<Prepared>, counters: Arc<Counters>) {
    let mut conn: Option<PgConnection> = None;
    let mut recent: std::collections::VecDeque<Effects> = std::collections::VecDeque::new();
    while let Some(batch) = rx.recv().await {
        let _ = batch.taken.send(());
        let results = write_batch(&pool, &mut conn, &batch.requests, batch.snapshot, &mut recent, &counters).await;
        for (reply, result) in batch.replies.into_iter().zip(results) {
            // A caller that went away (timeout, disconnect) still had its append committed.
            let _ = reply.send(result);
        }
    }
}

/// Why a batch did not commit.
enum BatchError {
    /// The connection or the server failed, or COMMIT failed: nothing of the batch is written
    /// (or, for a lost COMMIT, it is not known).
    Unavailable(StoreError),
    /// The database refused the batch's rows (a value it cannot store): retry append by append.
    Refused(StoreError),
}

impl BatchError {
    fn into_store(self) -> StoreError {
        match self {
            BatchError::Unavailable(e) | BatchError::Refused(e) => e,
        }
    }
}

fn unavailable(e: sqlx::Error) -> BatchError {
    BatchError::Unavailable(db_error(e))
}

fn refused(e: sqlx::Error) -> BatchError {
    match db_error(e) {
        e @ StoreError::Unavailable(_) => BatchError::Unavailable(e),
        e => BatchError::Refused(e),
    }
}

async fn write_batch(
    pool: &PgPool,
    slot: &mut Option<PgConnection>,
    requests: &[AppendRequest],
    snapshot: Option<Snapshot>,
    recent: &mut std::collections::VecDeque<Effects>,
    counters: &Counters,
) -> Vec<Result<AppendOutcome, StoreError>> {
    if slot.is_none() {
        match connect(pool).await {
            Ok(c) => *slot = Some(c),
            Err(e) => return vec![Err(e); requests.len()],
        }
    }
    let Some(conn) = slot.as_mut() else {
        return vec![Err(StoreError::Unavailable("no connection".into())); requests.len()];
    };
    // The quick way: the snapshot brought forward, one statement.
    if let Some(snapshot) = snapshot.filter(|s| !s.unchained)
        && let Some((state, head, last_at)) = bring_forward(snapshot, recent)
    {
        match write_quick(conn, requests, state, head, last_at, counters).await {
            Ok(Some((results, effects))) => {
                remember(recent, effects);
                return results;
            }
            // The head moved: the careful way below.
            Ok(None) => {}
            Err(BatchError::Unavailable(e)) => {
                *slot = None;
                tracing::warn!(error = %e, appends = requests.len(), "event store batch failed");
                return vec![Err(e); requests.len()];
            }
            // E.g. a command id journalled meanwhile by another process: the careful way
            // sees it; a value the database refuses is isolated there.
            Err(BatchError::Refused(e)) => tracing::debug!(error = %e, "quick write refused; writing carefully"),
        }
    }
    counters.add(|s| s.careful += 1);
    match write_careful(conn, requests, counters).await {
        Ok((results, effects)) => {
            remember(recent, effects);
            results
        }
        Err(BatchError::Unavailable(e)) => {
            *slot = None;
            tracing::warn!(error = %e, appends = requests.len(), "event store batch failed");
            vec![Err(e); requests.len()]
        }
        Err(BatchError::Refused(e)) if requests.len() == 1 => vec![Err(e)],
        Err(BatchError::Refused(e)) => {
            tracing::warn!(error = %e, appends = requests.len(), "the database refused a batch; appending one by one");
            let mut results = Vec::with_capacity(requests.len());
            for request in requests {
                let Some(conn) = slot.as_mut() else {
                    results.push(Err(StoreError::Unavailable("the connection was lost".into())));
                    continue;
                };
                results.push(match write_careful(conn, std::slice::from_ref(request), counters).await {
                    Ok((mut r, effects)) => {
                        remember(recent, effects);
                        r.pop().unwrap_or_else(|| Err(StoreError::Database("empty batch".into())))
                    }
                    Err(e @ BatchError::Unavailable(_)) => {
                        *slot = None;
                        Err(e.into_store())
                    }
                    Err(e) => Err(e.into_store()),
                });
            }
            results
        }
    }
}

fn remember(recent: &mut std::collections::VecDeque<Effects>, effects: Effects) {
    recent.push_back(effects);
    while recent.len() > 4 {
        recent.pop_front();
    }
}

/// The snapshot with the effects of the writer's batches committed after it was taken; `None`
/// when they do not line up with it (someone else appended in between).
fn bring_forward(
    snapshot: Snapshot,
    recent: &std::collections::VecDeque<Effects>,
) -> Option<(KnownState, i64, Option<DateTime<Utc>>)> {
    let Snapshot { mut head, mut last_recorded_at, mut state, .. } = snapshot;
    for e in recent {
        // Journal entries never change: keep them whatever the snapshot saw.
        for j in &e.journal {
            state.commands.entry(j.command.command_id).or_insert_with(|| j.clone());
        }
        if e.end <= head {
            continue;
        }
        if e.start != head {
            return None;
        }
        for (id, h) in &e.streams {
            state.streams.insert(*id, h.clone());
        }
        head = e.end;
        last_recorded_at = Some(e.recorded_at);
    }
    Some((state, head, last_recorded_at))
}

/// The recorded time of a batch: now, but never before the last recorded event, so recorded
/// times grow with position whatever the clocks of several writers say.
fn recorded_time(last: Option<DateTime<Utc>>) -> DateTime<Utc> {
    let now = kefu_app::envelope::to_storage_precision(Utc::now());
    match last {
        Some(last) if last > now => last,
        _ => now,
    }
}

async fn write_quick(
    conn: &mut PgConnection,
    requests: &[AppendRequest],
    state: KnownState,
    head: i64,
    last_at: Option<DateTime<Utc>>,
    counters: &Counters,
) -> Result<Option<(Vec<Result<AppendOutcome, StoreError>>, Effects)>, BatchError> {
    let t = Instant::now();
    let plan = batch::plan(requests, &state, head, recorded_time(last_at));
    let planned = t.elapsed();
    let nothing_to_check = plan.journal.is_empty() && plan.results.iter().all(|r| r.is_ok());
    if nothing_to_check {
        // Every append is a retry answered from the journal, which never changes.
        counters.add(|s| {
            s.batches += 1;
            s.appends += requests.len() as u64;
            s.plan += planned;
        });
        let effects = effects_of(&plan);
        return Ok(Some((plan.results, effects)));
    }
    let t = Instant::now();
    // In a transaction of its own: the head check, and the refusals with it, hold as of the
    // moment the head lock is taken.
    let ok = write(conn, &plan, head).await?;
    let wrote = t.elapsed();
    if !ok {
        return Ok(None);
    }
    counters.add(|s| {
        s.batches += 1;
        s.appends += requests.len() as u64;
        s.events += plan.events.len() as u64;
        s.plan += planned;
        s.write += wrote;
    });
    let effects = effects_of(&plan);
    Ok(Some((plan.results, effects)))
}

async fn write_careful(
    conn: &mut PgConnection,
    requests: &[AppendRequest],
    counters: &Counters,
) -> Result<(Vec<Result<AppendOutcome, StoreError>>, Effects), BatchError> {
    let t = Instant::now();
    sqlx::raw_sql("BEGIN; SELECT position FROM event_store.log_head FOR UPDATE")
        .execute(&mut *conn)
        .await
        .map_err(unavailable)?;
    let result = async {
        let mut snapshot = read_snapshot(conn, requests).await.map_err(BatchError::Unavailable)?;
        if snapshot.unchained {
            chain_unchained(conn, &mut snapshot).await?;
        }
        let plan = batch::plan(requests, &snapshot.state, snapshot.head, recorded_time(snapshot.last_recorded_at));
        if !plan.journal.is_empty() && !write(conn, &plan, snapshot.head).await? {
            return Err(BatchError::Unavailable(StoreError::Corrupt(
                "the log head moved while its lock was held".into(),
            )));
        }
        let effects = effects_of(&plan);
        Ok::<_, BatchError>((plan.results, effects, plan.events.len()))
    }
    .await;
    match result {
        Ok((results, effects, events)) => {
            sqlx::raw_sql("COMMIT")
                .execute(&mut *conn)
                .await
                .map_err(|e| BatchError::Unavailable(StoreError::Unavailable(format!("COMMIT failed: {e}"))))?;
            counters.add(|s| {
                s.batches += 1;
                s.appends += requests.len() as u64;
                s.events += events as u64;
                s.write += t.elapsed();
            });
            Ok((results, effects))
        }
        Err(e) => {
            if sqlx::raw_sql("ROLLBACK").execute(&mut *conn).await.is_err() {
                return Err(BatchError::Unavailable(e.into_store()));
            }
            Err(e)
        }
    }
}

fn effects_of(plan: &Plan<'_>) -> Effects {
    let mut streams: std::collections::HashMap<Uuid, StreamHead> = std::collections::HashMap::new();
    for e in &plan.events {
        streams.insert(
            e.part.stream_id,
            StreamHead {
                stream_type: e.part.stream_type.to_string(),
                version: e.stream_version,
                last_position: Some(e.global_position),
                last_hash: e.hash,
            },
        );
    }
    Effects {
        start: plan.head - plan.events.len() as i64,
        end: plan.head,
        recorded_at: plan.recorded_at,
        streams: streams.into_iter().collect(),
        journal: plan
            .journal
            .iter()
            .map(|j| JournalledCommand {
                command: j.command.clone(),
                stream_id: j.stream_id,
                outcome: j.outcome.clone(),
            })
            .collect(),
    }
}

/// Appends inside a transaction the caller began, taking the head lock in it; the caller
/// commits. For tests that hold an append in flight.
pub(crate) async fn append_in_transaction(
    conn: &mut PgConnection,
    request: &AppendRequest,
) -> Result<AppendOutcome, StoreError> {
    sqlx::query("SELECT position FROM event_store.log_head FOR UPDATE").execute(&mut *conn).await.map_err(db_error)?;
    let requests = std::slice::from_ref(request);
    let mut snapshot = read_snapshot(conn, requests).await?;
    if snapshot.unchained {
        chain_unchained(conn, &mut snapshot).await.map_err(BatchError::into_store)?;
    }
    let plan = batch::plan(requests, &snapshot.state, snapshot.head, recorded_time(snapshot.last_recorded_at));
    if !plan.journal.is_empty() && !write(conn, &plan, snapshot.head).await.map_err(BatchError::into_store)? {
        return Err(StoreError::Corrupt("the log head moved while its lock was held".into()));
    }
    plan.results.into_iter().next().unwrap_or_else(|| Err(StoreError::Database("empty batch".into())))
}

async fn read_snapshot(conn: &mut PgConnection, requests: &[AppendRequest]) -> Result<Snapshot, StoreError> {
    let mut stream_ids: Vec<Uuid> = requests.iter().flat_map(|r| r.part_refs().map(|p| p.stream_id)).collect();
    stream_ids.sort_unstable();
    stream_ids.dedup();
    let command_ids: Vec<Uuid> = requests.iter().map(|r| r.command.command_id).collect();
    read_rows(conn, &stream_ids, &command_ids).await
}

/// History recorded before the chain existed has no hashes: chain it (the caller holds the
/// head lock, so nothing appends meanwhile) and read those streams again.
async fn chain_unchained(conn: &mut PgConnection, snapshot: &mut Snapshot) -> Result<(), BatchError> {
    let unchained: Vec<Uuid> = snapshot
        .state
        .streams
        .iter()
        .filter(|(_, h)| h.version > 0 && h.last_position.is_none())
        .map(|(id, _)| *id)
        .collect();
    for id in &unchained {
        crate::integrity::chain_stream(conn, *id).await.map_err(BatchError::Unavailable)?;
    }
    let again = read_rows(conn, &unchained, &[]).await.map_err(BatchError::Unavailable)?;
    snapshot.state.streams.extend(again.state.streams);
    snapshot.unchained = false;
    Ok(())
}

/// Streams, journal entries and the log head (with the recorded time of its event), in one
/// statement and so one snapshot.
async fn read_rows(conn: &mut PgConnection, stream_ids: &[Uuid], command_ids: &[Uuid]) -> Result<Snapshot, StoreError> {
    let rows = sqlx::query(
        "SELECT 0 AS kind, s.stream_id AS id, s.stream_type AS name, s.version, h.global_position, h.hash, \
                NULL::jsonb AS payload, NULL::jsonb AS outcome, NULL::uuid AS stream, NULL::timestamptz AS at \
         FROM event_store.streams s \
         LEFT JOIN event_store.event_hashes h ON h.stream_id = s.stream_id AND h.stream_version = s.version \
         WHERE s.stream_id = ANY($1) \
         UNION ALL \
         SELECT 1, c.command_id, c.command_type, NULL, NULL, NULL, c.payload, c.outcome, c.stream_id, NULL \
         FROM event_store.commands c WHERE c.command_id = ANY($2) \
         UNION ALL \
         SELECT 2, NULL, NULL, l.position, NULL, NULL, NULL, NULL, NULL, \
                (SELECT e.recorded_at FROM event_store.events e WHERE e.global_position = l.position) \
         FROM event_store.log_head l",
    )
    .bind(stream_ids)
    .bind(command_ids)
    .fetch_all(&mut *conn)
    .await
    .map_err(db_error)?;
    let corrupt = |e: sqlx::Error| StoreError::Corrupt(e.to_string());
    let mut state = KnownState::default();
    let mut head = None;
    let mut last_recorded_at = None;
    for row in &rows {
        let kind: i32 = row.try_get("kind").map_err(corrupt)?;
        if kind == 2 {
            head = Some(row.try_get::<i64, _>("version").map_err(corrupt)?);
            last_recorded_at = row.try_get("at").map_err(corrupt)?;
            continue;
        }
        let id: Uuid = row.try_get("id").map_err(corrupt)?;
        let name: String = row.try_get("name").map_err(corrupt)?;
        if kind == 0 {
            let version: i64 = row.try_get("version").map_err(corrupt)?;
            let last_position: Option<i64> = row.try_get("global_position").map_err(corrupt)?;
            let hash: Option<Vec<u8>> = row.try_get("hash").map_err(corrupt)?;
            let last_hash = match &hash {
                Some(bytes) => {
                    from_bytes(bytes).ok_or_else(|| StoreError::Corrupt(format!("bad hash of stream {id}")))?
                }
                None => GENESIS,
            };
            state.streams.insert(id, StreamHead { stream_type: name, version, last_position, last_hash });
        } else {
            let outcome: Option<Json<AppendOutcome>> = row.try_get("outcome").map_err(corrupt)?;
            let Some(Json(outcome)) = outcome else {
                return Err(StoreError::Corrupt(format!("command {id} has no recorded outcome")));
            };
            state.commands.insert(
                id,
                JournalledCommand {
                    command: CommandRecord {
                        command_id: id,
                        command_type: name,
                        payload: Arc::new(row.try_get("payload").map_err(corrupt)?),
                    },
                    stream_id: row.try_get("stream").map_err(corrupt)?,
                    outcome,
                },
            );
        }
    }
    let head = head.ok_or_else(|| StoreError::Corrupt("event_store.log_head is empty".into()))?;
    let unchained = state.streams.values().any(|h| h.version > 0 && h.last_position.is_none());
    Ok(Snapshot { head, last_recorded_at, state, unchained })
}

/// Writes a planned batch in one statement, if the log head is still at `expected_head`;
/// returns whether it was.
async fn write(conn: &mut PgConnection, plan: &Plan<'_>, expected_head: i64) -> Result<bool, BatchError> {
    let n = plan.events.len();
    let mut positions = Vec::with_capacity(n);
    let mut event_ids = Vec::with_capacity(n);
    let mut stream_ids = Vec::with_capacity(n);
    let mut stream_types = Vec::with_capacity(n);
    let mut versions = Vec::with_capacity(n);
    let mut event_types = Vec::with_capacity(n);
    let mut schema_versions = Vec::with_capacity(n);
    let mut customers = Vec::with_capacity(n);
    let mut occurred = Vec::with_capacity(n);
    let mut actors: Vec<Json<&Actor>> = Vec::with_capacity(n);
    let mut correlations = Vec::with_capacity(n);
    let mut causations = Vec::with_capacity(n);
    let mut commands = Vec::with_capacity(n);
    let mut payloads: Vec<Json<&serde_json::Value>> = Vec::with_capacity(n);
    let mut previous: Vec<&[u8]> = Vec::with_capacity(n);
    let mut hashes: Vec<&[u8]> = Vec::with_capacity(n);
    for e in &plan.events {
        positions.push(e.global_position);
        event_ids.push(e.event.event_id);
        stream_ids.push(e.part.stream_id);
        stream_types.push(e.part.stream_type);
        versions.push(e.stream_version);
        event_types.push(e.event.event_type.as_str());
        schema_versions.push(e.event.schema_version as i32);
        customers.push(e.part.customer_id);
        occurred.push(e.occurred_at);
        actors.push(Json(&e.request.actor));
        correlations.push(e.request.correlation_id);
        causations.push(e.request.causation_id);
        commands.push(e.request.command.command_id);
        payloads.push(Json(&e.event.payload));
        previous.push(&e.previous[..]);
        hashes.push(&e.hash[..]);
    }
    let s = plan.streams.len();
    let (mut s_ids, mut s_types, mut s_customers, mut s_versions, mut s_created) = (
        Vec::with_capacity(s),
        Vec::with_capacity(s),
        Vec::with_capacity(s),
        Vec::with_capacity(s),
        Vec::with_capacity(s),
    );
    for w in &plan.streams {
        s_ids.push(w.stream_id);
        s_types.push(w.stream_type);
        s_customers.push(w.customer_id);
        s_versions.push(w.version);
        s_created.push(w.created);
    }
    let j = plan.journal.len();
    let (mut c_ids, mut c_types, mut c_streams, mut c_payloads, mut c_actors, mut c_outcomes) = (
        Vec::with_capacity(j),
        Vec::with_capacity(j),
        Vec::with_capacity(j),
        Vec::with_capacity(j),
        Vec::with_capacity(j),
        Vec::with_capacity(j),
    );
    for w in &plan.journal {
        c_ids.push(w.command.command_id);
        c_types.push(w.command.command_type.as_str());
        c_streams.push(w.stream_id);
        c_payloads.push(Json(&*w.command.payload));
        c_actors.push(Json(w.actor));
        c_outcomes.push(Json(&w.outcome));
    }
    let row = sqlx::query(WRITE_BATCH)
        .bind(&positions)
        .bind(&event_ids)
        .bind(&stream_ids)
        .bind(&stream_types)
        .bind(&versions)
        .bind(&event_types)
        .bind(&schema_versions)
        .bind(&customers)
        .bind(&occurred)
        .bind(&actors)
        .bind(&correlations)
        .bind(&causations)
        .bind(&commands)
        .bind(&payloads)
        .bind(plan.recorded_at)
        .bind(&previous)
        .bind(&hashes)
        .bind(&s_ids)
        .bind(&s_types)
        .bind(&s_customers)
        .bind(&s_versions)
        .bind(&c_ids)
        .bind(&c_types)
        .bind(&c_streams)
        .bind(&c_payloads)
        .bind(&c_actors)
        .bind(&c_outcomes)
        .bind(plan.head)
        .bind(plan.appends())
        .bind(expected_head)
        .bind(&s_created)
        .fetch_one(&mut *conn)
        .await
        .map_err(refused)?;
    row.try_get::<bool, _>("ok").map_err(|e| BatchError::Unavailable(StoreError::Corrupt(e.to_string())))
}

/// Head lock and check, events, hashes, streams, journal, head and notification: one
/// statement, one round trip. Every insert is conditioned on the head check, which needs the
/// lock first, so nothing is written unless the head is where the plan assumed. (Foreign keys
/// are checked at the end of the statement, so events may name streams that the same
/// statement creates.)
const WRITE_BATCH: &str = "\
WITH lock AS (
  SELECT position = $30 AS ok FROM event_store.log_head FOR UPDATE
), ev AS (
  INSERT INTO event_store.events (global_position, event_id, stream_id, stream_type, stream_version, event_type,
      schema_version, customer_id, occurred_at, recorded_at, actor, correlation_id, causation_id, command_id, payload)
  SELECT p, e, s, st, v, t, sv, c, o, $15, a, co, ca, cm, pl
  FROM UNNEST($1::bigint[], $2::uuid[], $3::uuid[], $4::text[], $5::bigint[], $6::text[], $7::int[], $8::uuid[],
              $9::timestamptz[], $10::jsonb[], $11::uuid[], $12::uuid[], $13::uuid[], $14::jsonb[])
       AS x(p, e, s, st, v, t, sv, c, o, a, co, ca, cm, pl)
  WHERE (SELECT ok FROM lock)
), eh AS (
  INSERT INTO event_store.event_hashes (global_position, stream_id, stream_version, previous, hash)
  SELECT * FROM UNNEST($1::bigint[], $3::uuid[], $5::bigint[], $16::bytea[], $17::bytea[])
  WHERE (SELECT ok FROM lock)
), moved AS (
  UPDATE event_store.streams s SET version = x.v, updated_at = $15
  FROM UNNEST($18::uuid[], $21::bigint[], $31::bool[]) AS x(i, v, created)
  WHERE s.stream_id = x.i AND NOT x.created AND (SELECT ok FROM lock)
), created AS (
  INSERT INTO event_store.streams (stream_id, stream_type, customer_id, version, updated_at)
  SELECT i, t, c, v, $15 FROM UNNEST($18::uuid[], $19::text[], $20::uuid[], $21::bigint[], $31::bool[])
    AS x(i, t, c, v, created)
  WHERE x.created AND (SELECT ok FROM lock)
), cmd AS (
  INSERT INTO event_store.commands (command_id, command_type, stream_id, payload, actor, outcome, recorded_at)
  SELECT i, t, s, p, a, o, $15
  FROM UNNEST($22::uuid[], $23::text[], $24::uuid[], $25::jsonb[], $26::jsonb[], $27::jsonb[]) AS x(i, t, s, p, a, o)
  WHERE (SELECT ok FROM lock)
), head AS (
  UPDATE event_store.log_head SET position = $28 WHERE $29 AND (SELECT ok FROM lock)
)
SELECT ok, CASE WHEN ok AND $29 THEN pg_notify('kefu_events', $28::text) END AS notified FROM lock";

#[cfg(test)]
mod tests {
    use super::WRITE_BATCH;

    #[test]
    fn the_statement_notifies_the_append_channel() {
        assert!(WRITE_BATCH.contains(&format!("pg_notify('{}'", crate::APPEND_CHANNEL)));
    }
}
