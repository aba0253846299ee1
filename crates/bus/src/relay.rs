//! The relay: PostgreSQL global log → Kafka topic.
//!
//! Guarantees (DESIGN.md "No lost events"):
//! - events are sent in global-position order; the key is the customer id, so each customer's
//!   events land on one partition in order;
//! - the cursor advances only over the longest prefix the broker acknowledged; anything after
//!   a failure is sent again (consumers drop duplicates by stream version);
//! - records are pipelined: the relay reads and hands on the next events while the broker
//!   acknowledges earlier ones (the idempotent producer keeps each partition in order with up
//!   to five requests in flight), and stores the cursor every few milliseconds;
//! - positions are dense and commit-ordered in the store, so reading "after the cursor" never
//!   skips a transaction still in flight;
//! - one relay per topic is active (a PostgreSQL advisory lock); others wait as standbys;
//! - when the broker has lost records the relay had published (a memory-only broker was
//!   restarted), it says so loudly and, if allowed, publishes the whole history again.

use std::{
    collections::{BTreeMap, VecDeque},
    future::Future,
    pin::pin,
    sync::Arc,
    time::{Duration, Instant},
};

use kefu_app::RecordedEvent;
use kefu_contract::{CONTENT_TYPE, Contract};
use kefu_store::{
    PgEventStore,
    relay_state::{self, PartitionMark},
};
use rdkafka::{
    error::{KafkaError, RDKafkaErrorCode},
    message::{Header, OwnedHeaders},
    producer::{FutureProducer, FutureRecord, Producer},
};
use sqlx::postgres::PgListener;
use tokio::sync::watch;

use crate::{BusConfig, BusError, admin, partitioner::partition_for};

/// What to do when the broker no longer has records the relay published.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LostLogPolicy {
    /// Publish the whole history again (local brokers with memory storage).
    Republish,
    /// Stop with an error (production: a lost log needs a person).
    Fail,
}

/// Relay tuning.
#[derive(Debug, Clone)]
pub struct RelayOptions {
    /// Events read and sent per round.
    pub batch_size: i64,
    /// Poll interval when no notification arrives.
    pub idle_poll: Duration,
    /// First delay after a failure (doubles up to `max_backoff`).
    pub backoff: Duration,
    /// Longest delay between retries.
    pub max_backoff: Duration,
    /// What to do when the broker lost the log.
    pub on_lost_log: LostLogPolicy,
}

impl Default for RelayOptions {
    fn default() -> Self {
        RelayOptions {
            batch_size: 2000,
            idle_poll: Duration::from_millis(500),
            backoff: Duration::from_millis(200),
            max_backoff: Duration::from_secs(10),
            on_lost_log: LostLogPolicy::Fail,
        }
    }
}

/// Progress the relay reports (also readable from PostgreSQL).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RelayProgress {
    /// Acknowledged through this position.
    pub position: i64,
    /// True while this instance holds the relay lock.
    pub active: bool,
}

/// Publishes the event store to the topic.
pub struct Relay {
    store: PgEventStore,
    bus: BusConfig,
    producer: std::sync::Mutex<FutureProducer>,
    options: RelayOptions,
    progress: watch::Sender<RelayProgress>,
}

/// What the relay knows about the topic during one session.
struct Topic {
    partitions: i32,
    /// Per partition, the last record already on the broker: `(offset, position)`. Events at
    /// or below that position in that partition are not sent again after a restart.
    tails: Vec<Option<(i64, i64)>>,
}

/// A record handed to the producer (or found already on the broker), in position order.
enum Pending {
    Sent(i64, rdkafka::producer::DeliveryFuture),
    AlreadyOnBroker(i64, PartitionMark),
}

/// What ends a stretch of publishing.
enum Next {
    /// Check the lock and the topic again, then go on.
    Reopen,
    /// Shut down.
    Shutdown,
    /// Another relay took over.
    LostLock,
}

/// Records in flight beyond which the relay waits for acknowledgements before reading more.
const MAX_IN_FLIGHT: usize = 50_000;
/// The cursor is written at least this often while records are acknowledged…
const PERSIST_EVERY: Duration = Duration::from_millis(20);
/// …or after this many.
const PERSIST_EVENTS: i64 = 10_000;

fn headers(event: &RecordedEvent) -> OwnedHeaders {
    // The version the value carries (older payloads are upcast on the way out).
    let version = kefu_domain::upcast::current_version(&event.event_type).max(event.schema_version).to_string();
    let position = event.global_position.to_string();
    OwnedHeaders::new_with_capacity(4)
        .insert(Header { key: "kefu-event-type", value: Some(event.event_type.as_str()) })
        .insert(Header { key: "kefu-schema-version", value: Some(version.as_str()) })
        .insert(Header { key: "kefu-global-position", value: Some(position.as_str()) })
        .insert(Header { key: "content-type", value: Some(CONTENT_TYPE) })
}

impl Relay {
    /// A relay over `store` publishing to `bus.topic`.
    pub fn new(store: PgEventStore, bus: BusConfig, options: RelayOptions) -> Result<Self, BusError> {
        let producer: FutureProducer = bus.producer("kefu-relay").create()?;
        let (progress, _) = watch::channel(RelayProgress::default());
        Ok(Relay { store, bus, producer: std::sync::Mutex::new(producer), options, progress })
    }

    /// Follows the relay's progress.
    pub fn progress(&self) -> watch::Receiver<RelayProgress> {
        self.progress.subscribe()
    }

    fn producer(&self) -> FutureProducer {
        self.producer.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).clone()
    }

    /// After a fatal producer error (e.g. a gap the idempotent producer cannot close), the
    /// producer is unusable: make a new one.
    /// Replaces the producer. Used after any failed delivery and after a lost log: an
    /// idempotent producer's id and sequence numbers mean nothing to a broker that lost its
    /// state, and a producer that hit a fatal error (e.g. a gap it cannot close) is unusable.
    /// A new producer starts a clean session; the relay's own tail check prevents duplicates.
    fn renew_producer(&self, why: &str) -> Result<(), BusError> {
        let old = self.producer();
        if let Some((code, reason)) = old.client().fatal_error() {
            tracing::warn!(?code, %reason, "producer hit a fatal error");
        }
        tracing::info!(reason = why, "starting a new producer session");
        let fresh: FutureProducer = self.bus.producer("kefu-relay").create()?;
        *self.producer.lock().unwrap_or_else(|p| p.into_inner()) = fresh;
        // Drop the old one off the async threads: dropping purges and may wait on its queue.
        tokio::task::spawn_blocking(move || {
            let _ = old.flush(std::time::Duration::ZERO);
            drop(old);
        });
        Ok(())
    }

    /// Checks the topic and that the broker still has what the relay published (applying the
    /// lost-log policy) and reads each partition's tail. Returns the cursor to continue from
    /// and the topic state.
    async fn open(&self) -> Result<(i64, Topic), BusError> {
        let pool = self.store.pool();
        let info = admin::ensure_topic(&self.bus).await?;
        let cursor = relay_state::cursor(pool, &self.bus.topic).await?;
        let marks = relay_state::partitions(pool, &self.bus.topic).await?;
        let mut lost = Vec::new();
        if info.created && cursor > 0 {
            lost.push(format!("topic {} did not exist and was created empty", self.bus.topic));
        }
        let states = admin::inspect(&self.bus, info.partitions, marks).await?;
        let mut tails = Vec::with_capacity(states.len());
        for state in states {
            match state {
                admin::PartitionState::Intact { tail } => tails.push(tail),
                admin::PartitionState::Lost(why) => {
                    lost.push(why);
                    tails.push(None);
                }
            }
        }
        let topic = Topic { partitions: info.partitions, tails };
        if lost.is_empty() {
            return Ok((cursor, topic));
        }
        let why = lost.join("; ");
        match self.options.on_lost_log {
            LostLogPolicy::Fail => Err(BusError::LogLost(format!(
                "{why}. The event store still has every event: run `kefu relay --republish` to publish \
                 them again, then rebuild the projections"
            ))),
            LostLogPolicy::Republish => {
                tracing::warn!(
                    topic = %self.bus.topic,
                    reason = %why,
                    published_through = cursor,
                    "the broker lost published events; publishing the whole history again from the event store"
                );
                relay_state::reset(pool, &self.bus.topic).await?;
                self.renew_producer("the broker lost the log")?;
                // What is still there must not be skipped: re-read without marks.
                let states = admin::inspect(&self.bus, info.partitions, Vec::new()).await?;
                let tails = states
                    .into_iter()
                    .map(|s| match s {
                        admin::PartitionState::Intact { tail } => tail,
                        admin::PartitionState::Lost(_) => None,
                    })
                    .collect();
                Ok((0, Topic { partitions: info.partitions, tails }))
            }
        }
    }

    /// Publishes everything after the cursor once; returns how many events were acknowledged.
    pub async fn publish_pending(&self) -> Result<usize, BusError> {
        let (cursor, topic) = self.open().await?;
        let mut pump = Pump::new(self, &topic, cursor);
        let result = async {
            loop {
                let read = if pump.full() { 0 } else { pump.fill().await? };
                pump.settle(pump.full() || (read == 0 && !pump.in_flight.is_empty())).await?;
                if read == 0 && pump.in_flight.is_empty() {
                    return Ok(());
                }
            }
        }
        .await;
        pump.finish(result).await?;
        Ok((pump.acked - cursor) as usize)
    }

    /// Runs until `shutdown` completes: waits for the relay lock, then publishes as events
    /// arrive. Failures are logged and retried with backoff; only a lost log under the `Fail`
    /// policy ends the relay with an error.
    pub async fn run(self, shutdown: impl Future<Output = ()>) -> Result<(), BusError> {
        let relay = Arc::new(self);
        let mut shutdown = pin!(shutdown);
        let mut backoff = relay.options.backoff;
        loop {
            let lock = tokio::select! {
                _ = &mut shutdown => return Ok(()),
                lock = relay_state::try_lock(relay.store.pool(), &relay.bus.topic) => lock,
            };
            let mut lock = match lock {
                Ok(Some(lock)) => lock,
                Ok(None) => {
                    tracing::debug!(topic = %relay.bus.topic, "another relay is active; standing by");
                    tokio::select! {
                        _ = &mut shutdown => return Ok(()),
                        _ = tokio::time::sleep(Duration::from_secs(2)) => continue,
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, "relay cannot reach the event store; retrying");
                    tokio::select! {
                        _ = &mut shutdown => return Ok(()),
                        _ = tokio::time::sleep(backoff) => {}
                    }
                    backoff = (backoff * 2).min(relay.options.max_backoff);
                    continue;
                }
            };
            relay.progress.send_modify(|p| p.active = true);
            tracing::info!(topic = %relay.bus.topic, "relay active");
            let result = {
                let session = relay.clone().session(&mut lock, &mut shutdown);
                session.await
            };
            relay.progress.send_modify(|p| p.active = false);
            lock.release().await;
            match result {
                Ok(true) => return Ok(()),
                Ok(false) => {
                    backoff = relay.options.backoff;
                }
                Err(e @ BusError::LogLost(_)) => return Err(e),
                Err(e) => {
                    tracing::warn!(error = %e, retry_in = ?backoff, "relay interrupted; retrying");
                    tokio::select! {
                        _ = &mut shutdown => return Ok(()),
                        _ = tokio::time::sleep(backoff) => {}
                    }
                    backoff = (backoff * 2).min(relay.options.max_backoff);
                }
            }
        }
    }

    /// Publishes while holding the lock. `Ok(true)`: shut down; `Ok(false)`: lock lost;
    /// `Err`: a failure to back off from.
    async fn session(
        self: Arc<Self>,
        lock: &mut relay_state::RelayLock,
        shutdown: &mut (impl Future<Output = ()> + Unpin),
    ) -> Result<bool, BusError> {
        let mut listener = match PgListener::connect_with(self.store.pool()).await {
            Ok(mut l) => match l.listen(kefu_store::APPEND_CHANNEL).await {
                Ok(()) => Some(l),
                Err(_) => None,
            },
            Err(_) => None,
        };
        loop {
            let (cursor, topic) = self.open().await?;
            self.progress.send_modify(|p| p.position = cursor);
            let mut pump = Pump::new(&self, &topic, cursor);
            let result = self.publish_until(&mut pump, lock, shutdown, &mut listener).await;
            match pump.finish(result).await? {
                Next::Reopen => continue,
                Next::Shutdown => return Ok(true),
                Next::LostLock => return Ok(false),
            }
        }
    }

    /// Reads and sends while the broker acknowledges earlier records (the producer pipelines;
    /// the cursor follows the acknowledged prefix); when caught up, waits for new appends.
    async fn publish_until(
        &self,
        pump: &mut Pump<'_>,
        lock: &mut relay_state::RelayLock,
        shutdown: &mut (impl Future<Output = ()> + Unpin),
        listener: &mut Option<PgListener>,
    ) -> Result<Next, BusError> {
        let mut idle_rounds = 0u32;
        loop {
            let read = if pump.full() { 0 } else { pump.fill().await? };
            pump.settle(pump.full() || (read == 0 && !pump.in_flight.is_empty())).await?;
            if read > 0 || !pump.in_flight.is_empty() {
                idle_rounds = 0;
                continue;
            }
            pump.persist(true).await?;
            idle_rounds += 1;
            // Every few idle rounds, make sure we still hold the lock and the broker still has
            // the log.
            if idle_rounds.is_multiple_of(20) {
                if !lock.still_held().await {
                    tracing::warn!("relay lost its lock session; stepping down");
                    return Ok(Next::LostLock);
                }
                return Ok(Next::Reopen);
            }
            let wait = async {
                match listener.as_mut() {
                    Some(l) => {
                        let _ = tokio::time::timeout(self.options.idle_poll, l.recv()).await;
                    }
                    None => tokio::time::sleep(self.options.idle_poll).await,
                }
            };
            tokio::select! {
                _ = &mut *shutdown => {
                    let producer = self.producer();
                    let _ = tokio::task::spawn_blocking(move || producer.flush(Duration::from_secs(5))).await;
                    return Ok(Next::Shutdown);
                }
                _ = wait => {}
            }
        }
    }
}

/// One stretch of publishing: what was read and sent, what the broker acknowledged, and what
/// of that the cursor in PostgreSQL already says.
struct Pump<'a> {
    relay: &'a Relay,
    topic: &'a Topic,
    producer: FutureProducer,
    /// The last position handed to the producer.
    read: i64,
    /// The end of the acknowledged prefix.
    acked: i64,
    /// What the stored cursor says.
    persisted: i64,
    in_flight: VecDeque<Pending>,
    /// Partition ends acknowledged since the cursor was last stored.
    marks: BTreeMap<i32, PartitionMark>,
    last_persist: Instant,
    /// The read of the events after `read`, started while the previous ones are encoded.
    prefetch: Option<tokio::task::JoinHandle<Result<Vec<RecordedEvent>, kefu_app::StoreError>>>,
}

impl<'a> Pump<'a> {
    fn new(relay: &'a Relay, topic: &'a Topic, cursor: i64) -> Self {
        Pump {
            relay,
            topic,
            producer: relay.producer(),
            read: cursor,
            acked: cursor,
            persisted: cursor,
            in_flight: VecDeque::new(),
            marks: BTreeMap::new(),
            last_persist: Instant::now(),
            prefetch: None,
        }
    }

    fn full(&self) -> bool {
        self.in_flight.len() >= MAX_IN_FLIGHT
    }

    /// Reads the next events after what was read and hands them to the producer; returns how
    /// many were read (0: caught up with the store).
    async fn fill(&mut self) -> Result<usize, BusError> {
        let events = match self.prefetch.take() {
            Some(read) => read.await.map_err(|e| BusError::Topic(format!("the relay's read stopped: {e}")))??,
            None => self.relay.store.read_after(self.read, self.relay.options.batch_size).await?,
        };
        let (Some(first), Some(last)) = (events.first(), events.last()) else { return Ok(0) };
        if events.len() as i64 == self.relay.options.batch_size {
            // There is probably more: read it while these are encoded and sent.
            let store = self.relay.store.clone();
            let (after, limit) = (last.global_position, self.relay.options.batch_size);
            self.prefetch = Some(tokio::spawn(async move { store.read_after(after, limit).await }));
        }
        // Defence in depth: the store promises dense positions; never publish across a gap.
        if first.global_position != self.read + 1 {
            return Err(BusError::Topic(format!(
                "the event store skipped from {} to {}",
                self.read, first.global_position
            )));
        }
        let contract = Contract::get();
        for event in &events {
            let key = event.partition_key().to_string();
            let partition = partition_for(key.as_bytes(), self.topic.partitions);
            if let Some(Some((offset, position))) = self.topic.tails.get(partition as usize)
                && event.global_position <= *position
            {
                self.in_flight.push_back(Pending::AlreadyOnBroker(
                    event.global_position,
                    PartitionMark { partition, next_offset: offset + 1, last_position: *position },
                ));
                self.read = event.global_position;
                continue;
            }
            let payload = contract.encode(event)?;
            let mut record = FutureRecord::to(&self.relay.bus.topic)
                .key(&key)
                .partition(partition)
                .payload(&payload)
                .headers(headers(event));
            let delivery = loop {
                match self.producer.send_result(record) {
                    Ok(delivery) => break delivery,
                    Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                        record = back;
                        // The producer's queue is full: take acknowledgements first.
                        if self.in_flight.is_empty() {
                            tokio::time::sleep(Duration::from_millis(5)).await;
                        } else {
                            self.settle(true).await?;
                        }
                    }
                    Err((e, _)) => return Err(BusError::Kafka(e)),
                }
            };
            self.in_flight.push_back(Pending::Sent(event.global_position, delivery));
            self.read = event.global_position;
        }
        Ok(events.len())
    }

    /// Takes the acknowledgements that arrived, in position order (waiting for the next one
    /// when `wait`), and stores the cursor now and then.
    async fn settle(&mut self, wait: bool) -> Result<(), BusError> {
        let mut wait = wait;
        while let Some(front) = self.in_flight.front_mut() {
            let mark = match front {
                Pending::AlreadyOnBroker(_, mark) => *mark,
                Pending::Sent(position, delivery) => {
                    let position = *position;
                    let answer = if wait {
                        wait = false;
                        Some(delivery.await)
                    } else {
                        futures::FutureExt::now_or_never(delivery)
                    };
                    match answer {
                        None => break,
                        Some(Ok(Ok(d))) => {
                            PartitionMark { partition: d.partition, next_offset: d.offset + 1, last_position: position }
                        }
                        Some(Ok(Err((e, _)))) => return Err(BusError::Kafka(e)),
                        Some(Err(_)) => return Err(BusError::Topic("the producer dropped a delivery report".into())),
                    }
                }
            };
            let position = match self.in_flight.pop_front() {
                Some(Pending::AlreadyOnBroker(p, _) | Pending::Sent(p, _)) => p,
                None => break,
            };
            self.acked = position;
            let entry = self.marks.entry(mark.partition).or_insert(mark);
            entry.next_offset = entry.next_offset.max(mark.next_offset);
            entry.last_position = entry.last_position.max(mark.last_position);
        }
        self.persist(false).await
    }

    /// Stores the cursor over the acknowledged prefix (when `force`, or when enough time or
    /// records passed since the last time).
    async fn persist(&mut self, force: bool) -> Result<(), BusError> {
        if self.acked == self.persisted {
            return Ok(());
        }
        if !force && self.acked - self.persisted < PERSIST_EVENTS && self.last_persist.elapsed() < PERSIST_EVERY {
            return Ok(());
        }
        let marks: Vec<PartitionMark> = self.marks.values().copied().collect();
        relay_state::advance(self.relay.store.pool(), &self.relay.bus.topic, self.acked, &marks).await?;
        tracing::debug!(topic = %self.relay.bus.topic, through = self.acked, sent = self.acked - self.persisted, "relay advanced");
        self.persisted = self.acked;
        self.marks.clear();
        self.last_persist = Instant::now();
        let through = self.acked;
        self.relay.progress.send_modify(|p| p.position = through);
        Ok(())
    }

    /// Ends a stretch: the acknowledged prefix is stored whatever happened; after a failure
    /// the producer is replaced (what it still holds is re-sent from the cursor, and the
    /// partition tails keep anything already on the broker from being sent twice).
    async fn finish<T>(&mut self, result: Result<T, BusError>) -> Result<T, BusError> {
        // Acknowledgements that already arrived count.
        let settled = match &result {
            Ok(_) => self.settle(false).await,
            Err(_) => Ok(()),
        };
        let stored = self.persist(true).await;
        match (result, settled, stored) {
            (Ok(v), Ok(()), Ok(())) => Ok(v),
            (Err(e), _, _) | (_, Err(e), _) | (_, _, Err(e)) => {
                self.in_flight.clear();
                self.relay.renew_producer("a delivery failed")?;
                Err(e)
            }
        }
    }
}
