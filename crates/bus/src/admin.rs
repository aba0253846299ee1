//! Topic administration and watermarks.

use std::time::Duration;

use rdkafka::{
    admin::{AdminClient, AdminOptions, NewTopic, TopicReplication},
    client::DefaultClientContext,
    consumer::{BaseConsumer, Consumer},
    types::RDKafkaErrorCode,
};

use crate::{BusConfig, BusError};

const TIMEOUT: Duration = Duration::from_secs(10);

/// What [`ensure_topic`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TopicInfo {
    /// The partition count.
    pub partitions: i32,
    /// True when this call created the topic.
    pub created: bool,
}

fn metadata_client(bus: &BusConfig) -> Result<BaseConsumer, BusError> {
    Ok(bus.admin("kefu-metadata").create()?)
}

/// The topic's partition count, or `None` when the topic does not exist.
pub async fn partition_count(bus: &BusConfig) -> Result<Option<i32>, BusError> {
    let bus = bus.clone();
    blocking(move || partition_count_blocking(&bus)).await
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> Result<T, BusError> + Send + 'static) -> Result<T, BusError> {
    tokio::task::spawn_blocking(f).await.map_err(|e| BusError::Topic(format!("metadata task failed: {e}")))?
}

fn partition_count_blocking(bus: &BusConfig) -> Result<Option<i32>, BusError> {
    let client = metadata_client(bus)?;
    let metadata = client.fetch_metadata(Some(&bus.topic), TIMEOUT)?;
    let Some(topic) = metadata.topics().iter().find(|t| t.name() == bus.topic) else {
        return Ok(None);
    };
    match topic.error() {
        None if !topic.partitions().is_empty() => Ok(Some(topic.partitions().len() as i32)),
        _ => Ok(None),
    }
}

/// Makes sure the event topic exists, creating it with the configured partition count when
/// allowed.
pub async fn ensure_topic(bus: &BusConfig) -> Result<TopicInfo, BusError> {
    if let Some(partitions) = partition_count(bus).await? {
        return Ok(TopicInfo { partitions, created: false });
    }
    if !bus.create_topic {
        return Err(BusError::Topic(format!("topic {} does not exist and KEFU_KAFKA_CREATE_TOPIC is off", bus.topic)));
    }
    let admin: AdminClient<DefaultClientContext> = bus.admin("kefu-admin").create()?;
    let topic = NewTopic::new(&bus.topic, bus.partitions, TopicReplication::Fixed(bus.replication_factor));
    let results = admin.create_topics(&[topic], &AdminOptions::new().operation_timeout(Some(TIMEOUT))).await?;
    let mut created = true;
    for r in results {
        match r {
            Ok(_) => {}
            Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => created = false,
            Err((name, code)) => {
                return Err(BusError::Topic(format!("cannot create topic {name}: {code}")));
            }
        }
    }
    // Metadata takes a moment to show a new topic.
    for _ in 0..50 {
        if let Some(partitions) = partition_count(bus).await? {
            return Ok(TopicInfo { partitions, created });
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Err(BusError::Topic(format!("topic {} was created but does not show up", bus.topic)))
}

/// `(low, high)` watermarks of every partition, in partition order.
pub async fn watermarks(bus: &BusConfig, partitions: i32) -> Result<Vec<(i64, i64)>, BusError> {
    let bus = bus.clone();
    blocking(move || watermarks_blocking(&bus, partitions)).await
}

/// [`watermarks`] for code that is not async (consumer threads).
pub fn watermarks_blocking(bus: &BusConfig, partitions: i32) -> Result<Vec<(i64, i64)>, BusError> {
    let client = metadata_client(bus)?;
    (0..partitions).map(|p| client.fetch_watermarks(&bus.topic, p, TIMEOUT).map_err(BusError::from)).collect()
}

/// A client context that does not report reaching the end of a partition as an error: the
/// inspection asks for exactly that.
struct QuietEof;

impl rdkafka::ClientContext for QuietEof {
    fn error(&self, error: rdkafka::error::KafkaError, reason: &str) {
        use rdkafka::{error::KafkaError, types::RDKafkaErrorCode};
        let end_of_partition =
            matches!(error, KafkaError::PartitionEOF(_) | KafkaError::Global(RDKafkaErrorCode::PartitionEOF));
        if !end_of_partition {
            tracing::error!(%error, reason, "librdkafka error");
        }
    }
}

impl rdkafka::consumer::ConsumerContext for QuietEof {}

/// What [`inspect`] found in one partition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PartitionState {
    /// The partition holds what the relay recorded; `tail` is its last record
    /// `(offset, global position)`, if any.
    Intact {
        /// The last record.
        tail: Option<(i64, i64)>,
    },
    /// The record the relay wrote last is not there (or is another record).
    Lost(String),
}

/// Reads each partition from the relay's last recorded record (or from the beginning when
/// there is none) to its end, to learn its last record and whether the recorded one is still
/// there.
///
/// This reads records rather than asking for watermarks: some Kafka-protocol brokers report a
/// wrong high watermark for multi-record batches (tansu answers ListOffsets with the last
/// batch's base offset + 1), while fetching is reliable everywhere.
pub async fn inspect(
    bus: &BusConfig,
    partitions: i32,
    marks: Vec<kefu_store::relay_state::PartitionMark>,
) -> Result<Vec<PartitionState>, BusError> {
    let bus = bus.clone();
    blocking(move || inspect_blocking(&bus, partitions, &marks)).await
}

fn position_of(message: &rdkafka::message::BorrowedMessage<'_>) -> Result<i64, BusError> {
    use rdkafka::{Message, message::Headers};
    let from_header = message.headers().and_then(|h| {
        h.iter()
            .find(|h| h.key == "kefu-global-position")
            .and_then(|h| h.value)
            .and_then(|v| std::str::from_utf8(v).ok())
            .and_then(|v| v.parse::<i64>().ok())
    });
    match from_header {
        Some(p) => Ok(p),
        None => Ok(kefu_contract::Contract::get().decode(message.payload().unwrap_or_default())?.global_position),
    }
}

fn inspect_blocking(
    bus: &BusConfig,
    partitions: i32,
    marks: &[kefu_store::relay_state::PartitionMark],
) -> Result<Vec<PartitionState>, BusError> {
    use rdkafka::{Message, Offset, TopicPartitionList, error::KafkaError};

    let mark_of = |p: i32| marks.iter().find(|m| m.partition == p);
    let mut tpl = TopicPartitionList::new();
    for p in 0..partitions {
        let start = match mark_of(p) {
            Some(m) if m.next_offset > 0 => Offset::Offset(m.next_offset - 1),
            _ => Offset::Beginning,
        };
        tpl.add_partition_offset(&bus.topic, p, start)?;
    }
    // A group id is required by the client, but it is never joined (partitions are assigned).
    let mut config = bus.consumer("kefu-relay-inspect", &format!("{}.relay-inspect", bus.topic));
    config.set("enable.partition.eof", "true").set("auto.offset.reset", "error");
    let consumer: BaseConsumer<QuietEof> = config.create_with_context(QuietEof)?;
    consumer.assign(&tpl)?;

    // Per partition: first record seen, last record seen, whether the end was reached.
    let mut first: Vec<Option<(i64, i64)>> = vec![None; partitions as usize];
    let mut last: Vec<Option<(i64, i64)>> = vec![None; partitions as usize];
    let mut done: Vec<Option<Result<(), String>>> = vec![None; partitions as usize];
    let deadline = std::time::Instant::now() + TIMEOUT;
    while done.iter().any(Option::is_none) && std::time::Instant::now() < deadline {
        match consumer.poll(Duration::from_millis(200)) {
            None => {}
            Some(Ok(message)) => {
                let p = message.partition() as usize;
                let record = (message.offset(), position_of(&message)?);
                first[p].get_or_insert(record);
                last[p] = Some(record);
            }
            Some(Err(KafkaError::PartitionEOF(p))) => {
                if let Some(slot) = done.get_mut(p as usize) {
                    *slot = Some(Ok(()));
                }
            }
            Some(Err(KafkaError::MessageConsumption(code))) => {
                // Offset out of range and friends: the recorded offset is not in the log.
                // librdkafka does not say which partition; mark every unfinished one that
                // has a mark.
                for p in 0..partitions as usize {
                    if done[p].is_none() && mark_of(p as i32).is_some() && first[p].is_none() {
                        done[p] = Some(Err(format!("reading partition {p} failed: {code}")));
                    }
                }
            }
            Some(Err(e)) => return Err(e.into()),
        }
    }
    let mut hint = None;
    let mut result = Vec::with_capacity(partitions as usize);
    for p in 0..partitions {
        let i = p as usize;
        let state = match (mark_of(p), &done[i]) {
            (_, Some(Err(why))) => PartitionState::Lost(why.clone()),
            (None, Some(Ok(()))) => PartitionState::Intact { tail: last[i] },
            (Some(m), Some(Ok(()))) => match first[i] {
                Some((offset, position)) if offset == m.next_offset - 1 && position == m.last_position => {
                    PartitionState::Intact { tail: last[i] }
                }
                Some((offset, position)) => PartitionState::Lost(format!(
                    "partition {p}: expected position {} at offset {}, found position {position} at offset {offset}",
                    m.last_position,
                    m.next_offset - 1
                )),
                None => PartitionState::Lost(format!(
                    "partition {p} ends before offset {}, which the relay wrote",
                    m.next_offset - 1
                )),
            },
            (mark, None) => {
                // No end in sight. If the broker's own watermark is below what we wrote, the
                // records are gone; otherwise we cannot tell yet.
                if hint.is_none() {
                    hint = Some(watermarks_blocking(bus, partitions)?);
                }
                let high = hint.as_ref().and_then(|w| w.get(i)).map(|w| w.1).unwrap_or(0);
                match mark {
                    Some(m) if first[i].is_none() && high < m.next_offset => PartitionState::Lost(format!(
                        "partition {p} ends at offset {high} but the relay wrote up to {}",
                        m.next_offset
                    )),
                    _ => {
                        return Err(BusError::Topic(format!(
                            "partition {p} of {} could not be read to its end within {TIMEOUT:?}",
                            bus.topic
                        )));
                    }
                }
            }
        };
        result.push(state);
    }
    Ok(result)
}
