//! # kefu-bus
//!
//! Kafka, through librdkafka (`rdkafka`):
//! - [`BusConfig`]: where the brokers are, which topic, and the client settings kefu insists
//!   on (idempotent producer with `acks=all`; consumers that never auto-commit);
//! - [`admin`]: create the event topic with a fixed partition count, read watermarks;
//! - [`relay`]: publishes the event store's global log to the topic, in order, and advances
//!   its cursor only after the broker acknowledged.
//!
//! The consumer side (projections, offsets stored with read models) is in `kefu-projections`,
//! which uses [`BusConfig::consumer`] for its clients.

use std::time::Duration;

use kefu_app::StoreError;
use rdkafka::{ClientConfig, error::KafkaError};

pub mod admin;
pub mod audit;
pub mod partitioner;
pub mod relay;

/// The default event topic: every event of every stream, keyed by customer.
pub const DEFAULT_TOPIC: &str = "kefu.events.v1";

/// How to reach Kafka and which topic carries the events.
#[derive(Debug, Clone)]
pub struct BusConfig {
    /// `bootstrap.servers`, e.g. `127.0.0.1:9092`.
    pub brokers: String,
    /// The event topic.
    pub topic: String,
    /// Partition count used when kefu creates the topic (the unit of projector parallelism;
    /// never change it on a live topic: keys would move and per-customer order would break).
    pub partitions: i32,
    /// Replication factor used when kefu creates the topic.
    pub replication_factor: i32,
    /// Whether kefu may create the topic when it is missing.
    pub create_topic: bool,
    /// Extra librdkafka properties for every client (e.g. `security.protocol`,
    /// `sasl.mechanisms`), from `KEFU_KAFKA_<PROPERTY>` variables.
    pub client_properties: Vec<(String, String)>,
    /// Consumer group session timeout.
    pub session_timeout: Duration,
    /// How long a produced record may wait for acknowledgement before the relay retries.
    pub delivery_timeout: Duration,
}

impl BusConfig {
    /// Settings for `brokers` and the default topic.
    pub fn new(brokers: impl Into<String>) -> Self {
        BusConfig {
            brokers: brokers.into(),
            topic: DEFAULT_TOPIC.to_string(),
            partitions: 6,
            replication_factor: 1,
            create_topic: true,
            client_properties: Vec::new(),
            session_timeout: Duration::from_secs(6),
            delivery_timeout: Duration::from_secs(30),
        }
    }

    /// The same settings for another topic.
    pub fn with_topic(mut self, topic: impl Into<String>) -> Self {
        self.topic = topic.into();
        self
    }

    fn base(&self, client_id: &str) -> ClientConfig {
        let mut c = ClientConfig::new();
        c.set("bootstrap.servers", &self.brokers)
            .set("client.id", client_id)
            // Prefer IPv4 for names like `localhost`: some brokers only listen on 127.0.0.1.
            .set("broker.address.family", "v4")
            .set("socket.keepalive.enable", "true")
            .set("topic.metadata.refresh.interval.ms", "10000");
        for (k, v) in &self.client_properties {
            c.set(k, v);
        }
        c
    }

    /// Producer settings: idempotent, `acks=all`, Java-compatible key partitioning.
    pub fn producer(&self, client_id: &str) -> ClientConfig {
        let mut c = self.base(client_id);
        c.set("enable.idempotence", "true")
            .set("acks", "all")
            .set("max.in.flight.requests.per.connection", "5")
            .set("linger.ms", "5")
            // A permanently failed record must not leave a hole with later records after it:
            // the relay's crash recovery reads each partition's tail and relies on that.
            .set("enable.gapless.guarantee", "true")
            .set("partitioner", "murmur2_random")
            .set("message.timeout.ms", self.delivery_timeout.as_millis().to_string());
        c
    }

    /// Consumer settings for `group`: nothing is committed automatically, new groups start at
    /// the beginning of the log.
    pub fn consumer(&self, client_id: &str, group: &str) -> ClientConfig {
        let mut c = self.base(client_id);
        let session = self.session_timeout.as_millis().max(1000);
        c.set("group.id", group)
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("auto.offset.reset", "earliest")
            .set("enable.partition.eof", "false")
            // Eager rebalancing: kefu's projector seeks every newly assigned partition to the
            // offset stored with its read model, which the eager protocol makes simple.
            .set("partition.assignment.strategy", "range,roundrobin")
            .set("session.timeout.ms", session.to_string())
            .set("heartbeat.interval.ms", (session / 10).max(100).to_string())
            // librdkafka prefetches up to 64 MB per consumer by default, and `kefu run` has one
            // consumer per read model and automation: 4 MB (thousands of events) keeps a
            // projector busy and the process small.
            .set("queued.max.messages.kbytes", "4096")
            .set("queued.min.messages", "10000")
            // With the queue that small it is full whenever a projector is behind, and
            // librdkafka then waits `fetch.queue.backoff.ms` (default 1 s) before fetching
            // again: a rebuild stood still for 0.6 s after every ~19,000 events.
            .set("fetch.queue.backoff.ms", "20");
        c
    }

    /// Admin/metadata client settings.
    pub fn admin(&self, client_id: &str) -> ClientConfig {
        self.base(client_id)
    }
}

/// Why talking to Kafka failed.
#[derive(Debug, thiserror::Error)]
pub enum BusError {
    /// The broker is unreachable or refused; retry later.
    #[error("Kafka unavailable: {0}")]
    Kafka(#[from] KafkaError),
    /// The event store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// An event does not fit `proto/`.
    #[error(transparent)]
    Contract(#[from] kefu_contract::ContractError),
    /// The broker lost records kefu had published (e.g. a memory-only broker restarted).
    #[error("the broker lost published events: {0}")]
    LogLost(String),
    /// The topic is missing and kefu may not create it, or it is misconfigured.
    #[error("topic problem: {0}")]
    Topic(String),
}
