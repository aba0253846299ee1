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
    collections::VecDeque,
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
use sqlx::{Arguments, Connection, PgConnection, PgPool, Row, postgres::PgArguments, types::Json};
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
    /// Batches written at once. With 2, the next batch's statement is sent behind the one
    /// being committed, planned as if that one commits (its token check enforces it): one
    /// round trip less per batch, which pays when PostgreSQL is across a network. On one
    /// machine with PostgreSQL beside kefu it measured no faster (kefu-bench peers
    /// --writer-flights), so the default is 1.
    pub flights: usize,
}

impl Default for WriterOptions {
    fn default() -> Self {
        WriterOptions { max_appends: 1024, max_events: 8192, queue: 16384, flights: 1 }
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
        write_stage(pool, prepared_rx, options.flights, counters)
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
    /// The token of the batch that left the head there.
    token: Option<Uuid>,
    last_recorded_at: Option<DateTime<Utc>>,
    state: KnownState,
    /// A stream has history from before the hash chain: only the careful way chains it.
    unchained: bool,
}

/// What a batch changed (or, while it is in flight, will change), to bring later snapshots
/// forward.
struct Effects {
    start: i64,
    end: i64,
    /// The token the batch leaves on the head.
    token: Uuid,
    /// Still on its way (not known to have committed).
    in_flight: bool,
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
    // penalty on scans would make every statement look expensive enough to compile.) Values
    // PostgreSQL compresses (a filing's payload and its journalled command pass 2 kB) use lz4,
    // as the read models do: pglz showed in the profile of this connection's backend.
    sqlx::raw_sql(
        "SET plan_cache_mode = force_generic_plan; SET enable_seqscan = off; SET jit = off; \
         SET default_toast_compression = lz4",
    )
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

/// A batch whose write statement is on its way: its answers wait for the statement's result.
struct Flight {
    requests: Vec<AppendRequest>,
    replies: Vec<oneshot::Sender<Result<AppendOutcome, StoreError>>>,
    results: Vec<Result<AppendOutcome, StoreError>>,
    effects: Effects,
    events: u64,
    planned: Duration,
    sent: Instant,
    write: futures::future::BoxFuture<'static, (PgConnection, Result<bool, BatchError>)>,
}

async fn write_stage(pool: PgPool, mut rx: mpsc::Receiver<Prepared>, flights: usize, counters: Arc<Counters>) {
    let mut w = WriteStage { pool, idle: Vec::new(), recent: VecDeque::new(), flights: VecDeque::new(), counters };
    loop {
        let batch = if w.flights.len() >= flights.max(1) {
            w.land_oldest().await;
            continue;
        } else if w.flights.is_empty() {
            match rx.recv().await {
                Some(b) => b,
                None => return,
            }
        } else {
            let oldest = match w.flights.front_mut() {
                Some(f) => &mut f.write,
                None => continue,
            };
            tokio::select! {
                biased;
                landed = oldest => {
                    w.landed(landed).await;
                    continue;
                }
                next = rx.recv() => match next {
                    Some(b) => b,
                    None => {
                        while !w.flights.is_empty() {
                            w.land_oldest().await;
                        }
                        return;
                    }
                },
            }
        };
        w.take(batch).await;
    }
}

struct WriteStage {
    pool: PgPool,
    /// Connections not carrying a statement.
    idle: Vec<PgConnection>,
    /// Committed batches, newest last.
    recent: VecDeque<Effects>,
    flights: VecDeque<Flight>,
    counters: Arc<Counters>,
}

impl WriteStage {
    async fn connection(&mut self) -> Result<PgConnection, StoreError> {
        match self.idle.pop() {
            Some(c) => Ok(c),
            None => connect(&self.pool).await,
        }
    }

    /// Plans a batch on its snapshot brought forward over the committed batches and those in
    /// flight, and sends its statement; or, when that cannot be done, writes it the careful
    /// way once the batches in flight have landed.
    async fn take(&mut self, batch: Prepared) {
        let Prepared { requests, replies, snapshot, taken } = batch;
        let _ = taken.send(());
        let forward = snapshot.filter(|s| !s.unchained).and_then(|s| {
            let chain: Vec<&Effects> = self.recent.iter().chain(self.flights.iter().map(|f| &f.effects)).collect();
            bring_forward(s, &chain)
        });
        let Some(forward) = forward else {
            self.land_all().await;
            let results = self.write_careful_now(&requests).await;
            answer(replies, results);
            return;
        };
        let t = Instant::now();
        let plan = batch::plan(&requests, &forward.state, forward.head, recorded_time(forward.last_recorded_at));
        let planned = t.elapsed();
        if self.flights.is_empty() && plan.journal.is_empty() && plan.results.iter().all(|r| r.is_ok()) {
            // Every append is a retry answered from committed journal entries: nothing to check.
            self.counters.add(|s| {
                s.batches += 1;
                s.appends += requests.len() as u64;
                s.plan += planned;
            });
            let results = plan.results;
            answer(replies, results);
            return;
        }
        let token = Uuid::now_v7();
        let args = match arguments(&plan, forward.head, forward.token, token) {
            Ok(a) => a,
            Err(e) => {
                let results = vec![Err(e); requests.len()];
                answer(replies, results);
                return;
            }
        };
        let mut effects = effects_of(&plan, token);
        effects.in_flight = true;
        let events = plan.events.len() as u64;
        let results = plan.results;
        let mut conn = match self.connection().await {
            Ok(c) => c,
            Err(e) => {
                answer(replies, vec![Err(e); requests.len()]);
                return;
            }
        };
        let write = Box::pin(async move {
            let result = sqlx::query_with(WRITE_BATCH, args).fetch_one(&mut conn).await;
            let ok = match result {
                Ok(row) => row
                    .try_get::<bool, _>("ok")
                    .map_err(|e| BatchError::Unavailable(StoreError::Corrupt(e.to_string()))),
                Err(e) => Err(refused(e)),
            };
            (conn, ok)
        });
        self.flights.push_back(Flight {
            requests,
            replies,
            results,
            effects,
            events,
            planned,
            sent: Instant::now(),
            write,
        });
    }

    async fn land_all(&mut self) {
        while !self.flights.is_empty() {
            self.land_oldest().await;
        }
    }

    async fn land_oldest(&mut self) {
        let Some(oldest) = self.flights.front_mut() else { return };
        let landed = (&mut oldest.write).await;
        self.landed(landed).await;
    }

    /// The oldest flight's statement answered.
    async fn landed(&mut self, (conn, outcome): (PgConnection, Result<bool, BatchError>)) {
        let Some(flight) = self.flights.pop_front() else { return };
        let Flight { requests, replies, results, effects, events, planned, sent, .. } = flight;
        match outcome {
            Ok(true) => {
                self.idle.push(conn);
                let wrote = sent.elapsed();
                self.counters.add(|s| {
                    s.batches += 1;
                    s.appends += requests.len() as u64;
                    s.events += events;
                    s.plan += planned;
                    s.write += wrote;
                });
                remember(&mut self.recent, Effects { in_flight: false, ..effects });
                answer(replies, results);
            }
            Err(BatchError::Unavailable(e)) => {
                // Not known whether it committed: its appends are answered as unavailable (a
                // retry is safe). What was planned on top of it checks the token and is not
                // written unless it did.
                tracing::warn!(error = %e, appends = requests.len(), "event store batch failed");
                drop(conn);
                answer(replies, vec![Err(e); requests.len()]);
            }
            // The head moved (another process appended), or the database refused the rows:
            // nothing was written. Every flight behind this one was planned on it and will find
            // the token missing; this batch goes the careful way, first.
            Ok(false) | Err(BatchError::Refused(_)) => {
                self.idle.push(conn);
                let results = self.write_careful_now(&requests).await;
                answer(replies, results);
            }
        }
    }

    /// The careful way, with isolation of a refused append: no flight may be ahead of it.
    async fn write_careful_now(&mut self, requests: &[AppendRequest]) -> Vec<Result<AppendOutcome, StoreError>> {
        self.counters.add(|s| s.careful += 1);
        let mut conn = match self.connection().await {
            Ok(c) => c,
            Err(e) => return vec![Err(e); requests.len()],
        };
        match write_careful(&mut conn, requests, &self.counters).await {
            Ok((results, effects)) => {
                self.idle.push(conn);
                remember(&mut self.recent, effects);
                results
            }
            Err(BatchError::Unavailable(e)) => {
                tracing::warn!(error = %e, appends = requests.len(), "event store batch failed");
                vec![Err(e); requests.len()]
            }
            Err(BatchError::Refused(e)) if requests.len() == 1 => {
                self.idle.push(conn);
                vec![Err(e)]
            }
            Err(BatchError::Refused(e)) => {
                tracing::warn!(error = %e, appends = requests.len(), "the database refused a batch; appending one by one");
                let mut results = Vec::with_capacity(requests.len());
                let mut conn = Some(conn);
                for request in requests {
                    let c = match conn.take() {
                        Some(c) => c,
                        None => match connect(&self.pool).await {
                            Ok(c) => c,
                            Err(e) => {
                                results.push(Err(e));
                                continue;
                            }
                        },
                    };
                    let mut c = c;
                    results.push(match write_careful(&mut c, std::slice::from_ref(request), &self.counters).await {
                        Ok((mut r, effects)) => {
                            conn = Some(c);
                            remember(&mut self.recent, effects);
                            r.pop().unwrap_or_else(|| Err(StoreError::Database("empty batch".into())))
                        }
                        Err(e @ BatchError::Unavailable(_)) => Err(e.into_store()),
                        Err(e) => {
                            conn = Some(c);
                            Err(e.into_store())
                        }
                    });
                }
                if let Some(c) = conn {
                    self.idle.push(c);
                }
                results
            }
        }
    }
}

fn answer(
    replies: Vec<oneshot::Sender<Result<AppendOutcome, StoreError>>>,
    results: Vec<Result<AppendOutcome, StoreError>>,
) {
    for (reply, result) in replies.into_iter().zip(results) {
        // A caller that went away (timeout, disconnect) still had its append committed.
        let _ = reply.send(result);
    }
}

/// Why a batch did not commit.
enum BatchError {
    /// The connection or the server failed, or COMMIT failed: nothing of the batch is written
    /// (or, for a lost COMMIT, it is not known).
    Unavailable(StoreError),
    /// The database refused the batch's rows (a value it cannot store, or a command id another
    /// process journalled meanwhile): retry the careful way, append by append if need be.
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

fn remember(recent: &mut VecDeque<Effects>, effects: Effects) {
    recent.push_back(effects);
    while recent.len() > 4 {
        recent.pop_front();
    }
}

/// A snapshot brought forward.
struct Forward {
    state: KnownState,
    head: i64,
    token: Option<Uuid>,
    last_recorded_at: Option<DateTime<Utc>>,
}

/// The snapshot with the effects of the writer's batches that committed (or are in flight)
/// after it was taken; `None` when they do not line up with it (someone else appended in
/// between, or the snapshot is older than what the writer remembers).
///
/// A snapshot carries the token of the batch that last moved the head. When that batch is
/// one of the chain, the batches after it are laid over the snapshot in order; when it is
/// not, the snapshot must either precede the whole chain (its head is where the first batch
/// started) or follow all of it (no batch in flight, every committed one ended before it).
fn bring_forward(snapshot: Snapshot, chain: &[&Effects]) -> Option<Forward> {
    let Snapshot { head, token, last_recorded_at, mut state, .. } = snapshot;
    // Journal entries never change: keep them whatever the snapshot saw.
    for e in chain {
        for j in &e.journal {
            state.commands.entry(j.command.command_id).or_insert_with(|| j.clone());
        }
    }
    let mut f = Forward { state, head, token, last_recorded_at };
    let after = match chain.iter().position(|e| token == Some(e.token)) {
        Some(k) => &chain[k + 1..],
        None if chain.first().is_some_and(|e| e.start == head) => chain,
        None if chain.iter().all(|e| e.end <= head && !e.in_flight) => &[],
        None => return None,
    };
    for e in after {
        if e.start != f.head {
            return None;
        }
        for (id, h) in &e.streams {
            f.state.streams.insert(*id, h.clone());
        }
        f.head = e.end;
        f.token = Some(e.token);
        f.last_recorded_at = Some(e.recorded_at);
    }
    Some(f)
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
        let (results, effects, events) = append_locked(conn, requests).await?;
        Ok::<_, BatchError>((results, effects, events))
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

/// With the head lock held: reads, plans and writes a batch.
async fn append_locked(
    conn: &mut PgConnection,
    requests: &[AppendRequest],
) -> Result<(Vec<Result<AppendOutcome, StoreError>>, Effects, usize), BatchError> {
    let mut snapshot = read_snapshot(conn, requests).await.map_err(BatchError::Unavailable)?;
    if snapshot.unchained {
        chain_unchained(conn, &mut snapshot).await?;
    }
    let plan = batch::plan(requests, &snapshot.state, snapshot.head, recorded_time(snapshot.last_recorded_at));
    let token = Uuid::now_v7();
    if !plan.journal.is_empty() {
        let args = arguments(&plan, snapshot.head, snapshot.token, token).map_err(BatchError::Refused)?;
        let row = sqlx::query_with(WRITE_BATCH, args).fetch_one(&mut *conn).await.map_err(refused)?;
        let ok: bool = row.try_get("ok").map_err(|e| BatchError::Unavailable(StoreError::Corrupt(e.to_string())))?;
        if !ok {
            return Err(BatchError::Unavailable(StoreError::Corrupt(
                "the log head moved while its lock was held".into(),
            )));
        }
    }
    // A batch that wrote nothing left the head (and its token) as it was.
    let mut effects = effects_of(&plan, token);
    if plan.journal.is_empty() {
        effects.token = snapshot.token.unwrap_or(token);
    }
    let events = plan.events.len();
    Ok((plan.results, effects, events))
}

fn effects_of(plan: &Plan<'_>, token: Uuid) -> Effects {
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
        token,
        in_flight: false,
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
    let (results, _, _) = append_locked(conn, std::slice::from_ref(request)).await.map_err(BatchError::into_store)?;
    results.into_iter().next().unwrap_or_else(|| Err(StoreError::Database("empty batch".into())))
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
                NULL::json AS payload, NULL::json AS outcome, NULL::uuid AS stream, NULL::timestamptz AS at \
         FROM event_store.streams s \
         LEFT JOIN event_store.event_hashes h ON h.stream_id = s.stream_id AND h.stream_version = s.version \
         WHERE s.stream_id = ANY($1) \
         UNION ALL \
         SELECT 1, c.command_id, c.command_type, NULL, NULL, NULL, c.payload, c.outcome, c.stream_id, NULL \
         FROM event_store.commands c WHERE c.command_id = ANY($2) \
         UNION ALL \
         SELECT 2, NULL, NULL, l.position, NULL, NULL, NULL, NULL, l.batch, \
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
    let mut token = None;
    let mut last_recorded_at = None;
    for row in &rows {
        let kind: i32 = row.try_get("kind").map_err(corrupt)?;
        if kind == 2 {
            head = Some(row.try_get::<i64, _>("version").map_err(corrupt)?);
            token = row.try_get("stream").map_err(corrupt)?;
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
    Ok(Snapshot { head, token, last_recorded_at, state, unchained })
}

/// The arguments of [`WRITE_BATCH`] for a planned batch: written only if the log head is at
/// `expected_head` with `expected_token`; the batch leaves `token` there. Encoded here (owned),
/// so the statement can be on its way while the next batch is planned.
fn arguments(
    plan: &Plan<'_>,
    expected_head: i64,
    expected_token: Option<Uuid>,
    token: Uuid,
) -> Result<PgArguments, StoreError> {
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
    // The journal is `json`: sent as text, validated by PostgreSQL, stored as sent.
    let text = |v: serde_json::Result<String>| {
        v.map_err(|e| StoreError::Database(format!("cannot encode the journal of the batch: {e}")))
    };
    for w in &plan.journal {
        c_ids.push(w.command.command_id);
        c_types.push(w.command.command_type.as_str());
        c_streams.push(w.stream_id);
        c_payloads.push(text(serde_json::to_string(&*w.command.payload))?);
        c_actors.push(text(serde_json::to_string(w.actor))?);
        c_outcomes.push(text(serde_json::to_string(&w.outcome))?);
    }
    let mut args = PgArguments::default();
    let bad = |e: sqlx::error::BoxDynError| StoreError::Database(format!("cannot encode the batch: {e}"));
    args.add(&positions).map_err(bad)?;
    args.add(&event_ids).map_err(bad)?;
    args.add(&stream_ids).map_err(bad)?;
    args.add(&stream_types).map_err(bad)?;
    args.add(&versions).map_err(bad)?;
    args.add(&event_types).map_err(bad)?;
    args.add(&schema_versions).map_err(bad)?;
    args.add(&customers).map_err(bad)?;
    args.add(&occurred).map_err(bad)?;
    args.add(&actors).map_err(bad)?;
    args.add(&correlations).map_err(bad)?;
    args.add(&causations).map_err(bad)?;
    args.add(&commands).map_err(bad)?;
    args.add(&payloads).map_err(bad)?;
    args.add(plan.recorded_at).map_err(bad)?;
    args.add(&previous).map_err(bad)?;
    args.add(&hashes).map_err(bad)?;
    args.add(&s_ids).map_err(bad)?;
    args.add(&s_types).map_err(bad)?;
    args.add(&s_customers).map_err(bad)?;
    args.add(&s_versions).map_err(bad)?;
    args.add(&c_ids).map_err(bad)?;
    args.add(&c_types).map_err(bad)?;
    args.add(&c_streams).map_err(bad)?;
    args.add(&c_payloads).map_err(bad)?;
    args.add(&c_actors).map_err(bad)?;
    args.add(&c_outcomes).map_err(bad)?;
    args.add(plan.head).map_err(bad)?;
    args.add(plan.appends()).map_err(bad)?;
    args.add(expected_head).map_err(bad)?;
    args.add(&s_created).map_err(bad)?;
    args.add(expected_token).map_err(bad)?;
    args.add(token).map_err(bad)?;
    Ok(args)
}

/// Head lock and check, events, hashes, streams, journal, head and notification: one
/// statement, one round trip. Every insert is conditioned on the head check, which needs the
/// lock first, so nothing is written unless the head is where the plan assumed. The plan
/// guarantees what foreign keys would check again row by row (ADR 0018): every event's stream
/// is created or moved by the same statement, every hash belongs to one of its events.
const WRITE_BATCH: &str = "\
WITH lock AS (
  SELECT position = $30 AND batch IS NOT DISTINCT FROM $32 AS ok FROM event_store.log_head FOR UPDATE
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
  SELECT i, t, s, p::json, a::json, o::json, $15
  FROM UNNEST($22::uuid[], $23::text[], $24::uuid[], $25::text[], $26::text[], $27::text[]) AS x(i, t, s, p, a, o)
  WHERE (SELECT ok FROM lock)
), head AS (
  UPDATE event_store.log_head SET position = $28, batch = $33 WHERE (SELECT ok FROM lock)
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
