//! Running projections: a Kafka consumer per generation on a thread of its own, seeking every
//! assigned partition to the offset stored with the read model; and rebuilds.
//!
//! The consumer thread polls librdkafka and applies each batch with `Handle::block_on`, so a
//! rebalance (which librdkafka runs inside `poll`) always happens between batches, and the
//! offsets it seeks to are the ones the last committed batch stored.

use std::{
    collections::HashSet,
    future::Future,
    pin::pin,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    thread::JoinHandle,
    time::{Duration, Instant},
};

use kefu_bus::BusConfig;
use rdkafka::{
    ClientContext, Message, Offset, TopicPartitionList,
    bindings::rd_kafka_resp_err_t as RDKafkaRespErr,
    consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext},
};
use sqlx::PgPool;
use tokio::runtime::Handle;

use crate::{
    Projection, ProjectionError,
    apply::{self, Record},
    bulk, progress,
    registry::{self, Generation, Status},
    verify,
};

/// Runner tuning.
#[derive(Debug, Clone)]
pub struct RunnerOptions {
    /// Most records per transaction. Live, a batch holds what has arrived; 2,000 instead of
    /// 500 measured no faster and `kefu run` peaked 50–80 MB higher under load.
    pub max_batch: usize,
    /// Most records per transaction while a rebuild catches up (20,000 measured slower than
    /// 5,000 and took twice the memory).
    pub rebuild_batch: usize,
    /// How much a rebuild that folds the log in memory ([`crate::bulk`]) may grow the
    /// process's resident memory before it writes what it has and applies the rest batch by
    /// batch; 0 rebuilds batch by batch from the start.
    pub rebuild_memory: usize,
    /// How long one poll waits for a first record.
    pub poll_timeout: Duration,
    /// How often the runner checks which generation is active.
    pub registry_check: Duration,
    /// Delay before retrying after the database was unavailable.
    pub backoff: Duration,
}

/// The default of [`RunnerOptions::rebuild_memory`], in MiB: the request read models of a log
/// of a million events grew the process by ~1.4 GB.
pub const DEFAULT_REBUILD_MEMORY_MB: usize = 2048;

impl Default for RunnerOptions {
    fn default() -> Self {
        RunnerOptions {
            max_batch: 500,
            rebuild_batch: 5_000,
            rebuild_memory: DEFAULT_REBUILD_MEMORY_MB << 20,
            poll_timeout: Duration::from_millis(100),
            registry_check: Duration::from_millis(500),
            backoff: Duration::from_millis(500),
        }
    }
}

/// Counters of a running consumer.
#[derive(Debug, Default)]
pub struct ConsumerStats {
    /// Records applied (including duplicates skipped).
    pub records: AtomicU64,
    /// Batches committed.
    pub batches: AtomicU64,
}

struct SeekingContext {
    pool: PgPool,
    handle: Handle,
    generation: Generation,
    assigned: Arc<Mutex<HashSet<i32>>>,
}

impl ClientContext for SeekingContext {}

impl ConsumerContext for SeekingContext {
    fn rebalance(&self, consumer: &BaseConsumer<Self>, err: RDKafkaRespErr, tpl: &mut TopicPartitionList) {
        let mut assigned = self.assigned.lock().unwrap_or_else(|p| p.into_inner());
        match err {
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS => {
                let stored = self.handle.block_on(apply::stored_offsets(&self.pool, &self.generation));
                let stored = match stored {
                    Ok(s) => s,
                    Err(e) => {
                        // Starting from the beginning is slow but safe: the version guard
                        // skips everything already applied.
                        tracing::warn!(error = %e, "cannot read stored offsets; starting these partitions from the beginning");
                        Default::default()
                    }
                };
                assigned.clear();
                for elem in tpl.elements() {
                    assigned.insert(elem.partition());
                }
                for p in assigned.iter() {
                    let offset = stored.get(p).map(|o| Offset::Offset(*o)).unwrap_or(Offset::Beginning);
                    if let Err(e) = tpl.set_partition_offset(&self.generation.topic, *p, offset) {
                        tracing::error!(partition = p, error = %e, "cannot set the start offset");
                    }
                }
                tracing::info!(
                    projection = %self.generation.name,
                    generation = self.generation.generation,
                    partitions = ?assigned,
                    "partitions assigned; resuming from stored offsets"
                );
                if let Err(e) = consumer.assign(tpl) {
                    tracing::error!(error = %e, "assign failed");
                }
            }
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS => {
                assigned.clear();
                if let Err(e) = consumer.unassign() {
                    tracing::error!(error = %e, "unassign failed");
                }
            }
            other => {
                tracing::error!(code = ?other, "rebalance error");
                assigned.clear();
                let _ = consumer.unassign();
            }
        }
    }
}

/// A consumer building one generation, on its own thread.
pub struct GenerationConsumer {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<Result<(), ProjectionError>>>,
    /// Its counters.
    pub stats: Arc<ConsumerStats>,
}

impl GenerationConsumer {
    /// Starts consuming for `generation`. Must be called from within a Tokio runtime (the
    /// thread applies batches on it).
    pub fn start(
        pool: PgPool,
        bus: BusConfig,
        projection: Arc<dyn Projection>,
        generation: Generation,
        options: RunnerOptions,
    ) -> Result<Self, ProjectionError> {
        let handle = Handle::try_current()
            .map_err(|_| ProjectionError::Other("projection consumers need a Tokio runtime".into()))?;
        let stop = Arc::new(AtomicBool::new(false));
        let stats = Arc::new(ConsumerStats::default());
        let thread = std::thread::Builder::new()
            .name(format!("proj-{}-g{}", generation.name, generation.generation))
            .spawn({
                let stop = stop.clone();
                let stats = stats.clone();
                move || consume(pool, bus, projection, generation, options, handle, stop, stats)
            })
            .map_err(|e| ProjectionError::Other(format!("cannot start consumer thread: {e}")))?;
        Ok(GenerationConsumer { stop, thread: Some(thread), stats })
    }

    /// True when the thread has ended (stopped or failed).
    pub fn is_finished(&self) -> bool {
        self.thread.as_ref().is_none_or(|t| t.is_finished())
    }

    /// Stops after the current batch and waits (at most 20 s) for the thread. A thread that
    /// does not stop in time (e.g. librdkafka waiting on an unreachable broker to leave the
    /// group) is left to finish on its own; its work is committed or rolled back already.
    pub async fn stop(mut self) -> Result<(), ProjectionError> {
        self.stop.store(true, Ordering::SeqCst);
        let Some(thread) = self.thread.take() else { return Ok(()) };
        let join = tokio::task::spawn_blocking(move || thread.join());
        match tokio::time::timeout(Duration::from_secs(20), join).await {
            Ok(Ok(Ok(result))) => result,
            Ok(Ok(Err(_))) => Err(ProjectionError::Other("consumer thread panicked".into())),
            Ok(Err(e)) => Err(ProjectionError::Other(e.to_string())),
            Err(_) => {
                tracing::warn!("projection consumer did not stop within 20 s; leaving it behind");
                Ok(())
            }
        }
    }
}

impl Drop for GenerationConsumer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

#[allow(clippy::too_many_arguments)]
fn consume(
    pool: PgPool,
    bus: BusConfig,
    projection: Arc<dyn Projection>,
    generation: Generation,
    options: RunnerOptions,
    handle: Handle,
    stop: Arc<AtomicBool>,
    stats: Arc<ConsumerStats>,
) -> Result<(), ProjectionError> {
    let assigned = Arc::new(Mutex::new(HashSet::new()));
    let context = SeekingContext {
        pool: pool.clone(),
        handle: handle.clone(),
        generation: generation.clone(),
        assigned: assigned.clone(),
    };
    let client_id = format!("kefu-projector-{}", generation.name);
    let mut config = bus.consumer(&client_id, &generation.consumer_group());
    // Room for two full batches of ~1 kB records in librdkafka's queue (at least its 4 MB), so
    // a consumer that is behind finds a whole batch waiting.
    let prefetch_kbytes = (options.max_batch * 2).max(4096);
    config
        .set("queued.max.messages.kbytes", prefetch_kbytes.to_string())
        .set("queued.min.messages", (options.max_batch * 2).max(10_000).to_string());
    let consumer: BaseConsumer<SeekingContext> = config
        .create_with_context(context)
        .map_err(|e| ProjectionError::Other(format!("cannot create consumer: {e}")))?;
    consumer.subscribe(&[&generation.topic]).map_err(|e| ProjectionError::Other(format!("cannot subscribe: {e}")))?;

    let mut batch: Vec<Record> = Vec::with_capacity(options.max_batch);
    while !stop.load(Ordering::SeqCst) {
        batch.clear();
        match consumer.poll(options.poll_timeout) {
            None => continue,
            Some(Err(e)) => {
                tracing::warn!(error = %e, "consumer error");
                continue;
            }
            Some(Ok(m)) => batch.push(Record {
                partition: m.partition(),
                offset: m.offset(),
                payload: m.payload().unwrap_or_default().to_vec(),
            }),
        }
        while batch.len() < options.max_batch {
            match consumer.poll(Duration::ZERO) {
                Some(Ok(m)) => batch.push(Record {
                    partition: m.partition(),
                    offset: m.offset(),
                    payload: m.payload().unwrap_or_default().to_vec(),
                }),
                Some(Err(e)) => tracing::warn!(error = %e, "consumer error"),
                None => break,
            }
        }
        // A rebalance during collection may have taken partitions away; their records are
        // the new owner's business.
        {
            let owned = assigned.lock().unwrap_or_else(|p| p.into_inner());
            batch.retain(|r| owned.contains(&r.partition));
        }
        if batch.is_empty() {
            continue;
        }
        loop {
            match handle.block_on(apply::apply_batch(&pool, &*projection, &generation, &batch)) {
                Ok(outcome) => {
                    stats.records.fetch_add(batch.len() as u64, Ordering::Relaxed);
                    stats.batches.fetch_add(1, Ordering::Relaxed);
                    tracing::debug!(projection = %generation.name, ?outcome, "batch applied");
                    // Courtesy only (tools show group lag); the read model's offsets rule.
                    let mut tpl = TopicPartitionList::new();
                    for r in &batch {
                        let _ = tpl.add_partition_offset(&generation.topic, r.partition, Offset::Offset(r.offset + 1));
                    }
                    let _ = consumer.commit(&tpl, CommitMode::Async);
                    break;
                }
                Err(e) => {
                    tracing::warn!(projection = %generation.name, error = %e, "batch not applied; retrying");
                    let until = Instant::now() + options.backoff;
                    while Instant::now() < until {
                        if stop.load(Ordering::SeqCst) {
                            return Ok(());
                        }
                        // Keep serving the consumer (heartbeats, rebalances) while we wait.
                        std::thread::sleep(Duration::from_millis(50));
                    }
                }
            }
        }
    }
    consumer.unsubscribe();
    Ok(())
}

/// Keeps a projection's active generation up to date until `shutdown`; follows switches to a
/// newer generation (after a rebuild) and rebuilds by itself when the code's table layout
/// differs from the active generation's.
pub struct ProjectionRunner {
    pool: PgPool,
    bus: BusConfig,
    projection: Arc<dyn Projection>,
    options: RunnerOptions,
}

impl ProjectionRunner {
    /// A runner.
    pub fn new(pool: PgPool, bus: BusConfig, projection: Arc<dyn Projection>, options: RunnerOptions) -> Self {
        ProjectionRunner { pool, bus, projection, options }
    }

    /// Runs until `shutdown` completes.
    pub async fn run(self, shutdown: impl Future<Output = ()>) -> Result<(), ProjectionError> {
        let mut shutdown = pin!(shutdown);
        let name = self.projection.name();
        loop {
            let generation = tokio::select! {
                _ = &mut shutdown => return Ok(()),
                g = registry::ensure_active(&self.pool, &*self.projection, &self.bus.topic) => g,
            };
            let generation = match generation {
                Ok(g) => g,
                Err(e) => {
                    tracing::warn!(projection = name, error = %e, "cannot prepare the projection; retrying");
                    tokio::select! {
                        _ = &mut shutdown => return Ok(()),
                        _ = tokio::time::sleep(self.options.backoff * 4) => continue,
                    }
                }
            };
            // Subscribing to a topic that does not exist yet would leave the consumer without
            // partitions until its next metadata refresh.
            if let Err(e) = kefu_bus::admin::ensure_topic(&self.bus).await {
                tracing::warn!(projection = name, error = %e, "cannot reach the event topic; retrying");
                tokio::select! {
                    _ = &mut shutdown => return Ok(()),
                    _ = tokio::time::sleep(self.options.backoff * 4) => continue,
                }
            }
            let layout_changed = generation.fingerprint != registry::fingerprint(self.projection.schema());
            let topic_changed = generation.topic != self.bus.topic;
            if layout_changed || topic_changed {
                tracing::warn!(
                    projection = name,
                    generation = generation.generation,
                    layout_changed,
                    topic_changed,
                    "the active generation was built with another table layout or from another topic; \
                     building a new generation from the log"
                );
                let rebuild = rebuild(
                    &self.pool,
                    &self.bus,
                    self.projection.clone(),
                    &self.options,
                    SwitchPolicy::Always,
                    |_| {},
                );
                tokio::select! {
                    _ = &mut shutdown => return Ok(()),
                    r = rebuild => if let Err(e) = r {
                        tracing::error!(projection = name, error = %e, "rebuild failed; retrying");
                        tokio::time::sleep(self.options.backoff * 4).await;
                    },
                }
                continue;
            }
            let consumer = GenerationConsumer::start(
                self.pool.clone(),
                self.bus.clone(),
                self.projection.clone(),
                generation.clone(),
                self.options.clone(),
            )?;
            tracing::info!(projection = name, generation = generation.generation, "projection running");
            loop {
                tokio::select! {
                    _ = &mut shutdown => {
                        consumer.stop().await?;
                        return Ok(());
                    }
                    _ = tokio::time::sleep(self.options.registry_check) => {}
                }
                if consumer.is_finished() {
                    if let Err(e) = consumer.stop().await {
                        tracing::error!(projection = name, error = %e, "projection consumer ended");
                    }
                    tokio::time::sleep(self.options.backoff).await;
                    break;
                }
                match registry::active(&self.pool, name).await {
                    Ok(Some(active)) if active.generation != generation.generation => {
                        tracing::info!(
                            projection = name,
                            from = generation.generation,
                            to = active.generation,
                            "a newer generation serves queries now; following it"
                        );
                        consumer.stop().await?;
                        break;
                    }
                    _ => {}
                }
            }
        }
    }
}

/// How a rebuild went.
#[derive(Debug, Clone, PartialEq)]
pub struct RebuildReport {
    /// The new generation (now active).
    pub generation: Generation,
    /// The generation it replaced, if any.
    pub replaced: Option<i32>,
    /// Records consumed to catch up.
    pub records: i64,
    /// How long it took.
    pub elapsed: Duration,
    /// How long until it had caught up with the log (the rest: comparing and switching).
    pub caught_up_after: Duration,
    /// What folding the log in memory did, when the read model does ([`crate::bulk`]).
    pub in_memory: Option<bulk::BulkOutcome>,
    /// How it compared with the generation it replaced (none without one).
    pub comparison: Option<verify::Comparison>,
    /// Whether it now serves queries.
    pub switched: bool,
}

/// What a rebuild does once the new generation caught up.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SwitchPolicy {
    /// Switch, reporting any difference from the old generation.
    #[default]
    Always,
    /// Switch only when the new generation is identical to the old one.
    IfIdentical,
}

/// Builds a new generation of `projection` from the start of the log while the active one
/// keeps serving, then makes it the active one. `on_progress` is called about five times a
/// second while building.
pub async fn rebuild(
    pool: &PgPool,
    bus: &BusConfig,
    projection: Arc<dyn Projection>,
    options: &RunnerOptions,
    switch_policy: SwitchPolicy,
    mut on_progress: impl FnMut(&progress::GenerationProgress),
) -> Result<RebuildReport, ProjectionError> {
    let started = Instant::now();
    kefu_bus::admin::ensure_topic(bus).await.map_err(|e| ProjectionError::Unavailable(e.to_string()))?;
    let replaced = registry::active(pool, projection.name()).await?.map(|g| g.generation);
    let target = registry::create(pool, &*projection, &bus.topic, Status::Building).await?;
    let in_memory = if options.rebuild_memory > 0 {
        bulk::rebuild_in_memory(pool, bus, projection.clone(), &target, options.rebuild_memory, &mut on_progress)
            .await?
    } else {
        None
    };
    // A consumer for what the in-memory fold did not reach (all of it without one), started
    // only when needed: joining its consumer group takes seconds.
    let catch_up = RunnerOptions { max_batch: options.rebuild_batch, ..options.clone() };
    let mut consumer: Option<GenerationConsumer> = None;
    let start_consumer =
        || GenerationConsumer::start(pool.clone(), bus.clone(), projection.clone(), target.clone(), catch_up.clone());
    let result = async {
        loop {
            let p = progress::of(pool, &target).await?;
            on_progress(&p);
            if p.caught_up {
                return Ok::<_, ProjectionError>(p);
            }
            match &consumer {
                None => consumer = Some(start_consumer()?),
                Some(c) if c.is_finished() => {
                    return Err(ProjectionError::Other("the rebuild consumer stopped".into()));
                }
                Some(_) => {}
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    .await;
    let caught_up_after = started.elapsed();
    let final_progress = match result {
        Ok(p) => p,
        Err(e) => {
            if let Some(c) = consumer {
                c.stop().await.ok();
            }
            return Err(e);
        }
    };
    // Compare with the serving generation where both consumed the same records; while writes
    // go on that takes a few tries (and the new generation must keep consuming).
    let mut comparison = None;
    if let Some(old) = match replaced {
        Some(g) => registry::get(pool, projection.name(), g).await?,
        None => None,
    } {
        for _ in 0..40 {
            if let Some(c) = verify::compare(pool, &*projection, &old, &target).await? {
                comparison = Some(c);
                break;
            }
            if consumer.is_none() {
                consumer = Some(start_consumer()?);
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        if comparison.is_none() {
            comparison = Some(verify::Comparison::NotComparable(
                "the two generations never stood at the same position for 10 s (writes kept coming)".into(),
            ));
        }
    }
    let switch = match switch_policy {
        SwitchPolicy::Always => true,
        SwitchPolicy::IfIdentical => {
            comparison.is_none() || matches!(comparison, Some(verify::Comparison::Identical { .. }))
        }
    };
    if switch {
        registry::activate(pool, projection.name(), target.generation).await?;
    }
    if let Some(c) = consumer {
        c.stop().await?;
    }
    let generation = registry::get(pool, projection.name(), target.generation).await?.unwrap_or(target);
    Ok(RebuildReport {
        generation,
        replaced,
        records: final_progress.records_consumed,
        elapsed: started.elapsed(),
        caught_up_after,
        in_memory,
        comparison,
        switched: switch,
    })
}
