//! Checking the Kafka copy of the history against the event store: every record the relay
//! wrote must be, byte for byte, the encoding of the stored event at its global position, on
//! the partition of its key, and every published position must be on the topic.

use std::{collections::HashMap, time::Duration};

use kefu_app::RecordedEvent;
use kefu_store::{PgEventStore, integrity::Mismatch, relay_state};
use rdkafka::{
    Message, Offset, TopicPartitionList,
    consumer::{BaseConsumer, Consumer},
    error::KafkaError,
};
use tokio::sync::mpsc;

use crate::{BusConfig, BusError, partitioner::partition_for};

/// One record as read.
#[derive(Debug)]
struct Raw {
    partition: i32,
    offset: i64,
    key: Vec<u8>,
    value: Vec<u8>,
}

/// What a check of the topic found.
#[derive(Debug, Clone, Default)]
pub struct TopicVerification {
    /// Records read.
    pub records: u64,
    /// Everything up to this position was published (the relay's cursor) and checked.
    pub published_through: i64,
    /// The first problem, by global position.
    pub first_mismatch: Option<Mismatch>,
}

fn keep_first(slot: &mut Option<Mismatch>, m: Mismatch) {
    if slot.as_ref().is_none_or(|s| m.global_position < s.global_position) {
        *slot = Some(m);
    }
}

/// Reads every partition up to where the relay says it wrote and checks each record against
/// the store. `on_progress` gets records read so far.
pub async fn verify_topic(
    store: &PgEventStore,
    bus: &BusConfig,
    mut on_progress: impl FnMut(u64),
) -> Result<TopicVerification, BusError> {
    let published = relay_state::cursor(store.pool(), &bus.topic).await?;
    let marks = relay_state::partitions(store.pool(), &bus.topic).await?;
    let partitions = crate::admin::partition_count(bus)
        .await?
        .ok_or_else(|| BusError::Topic(format!("topic {} does not exist", bus.topic)))?;
    let ends: HashMap<i32, i64> = marks.iter().map(|m| (m.partition, m.next_offset)).collect();
    let (tx, mut rx) = mpsc::channel::<Result<Raw, BusError>>(1024);
    let reader = {
        let bus = bus.clone();
        let ends = ends.clone();
        tokio::task::spawn_blocking(move || read_partitions(&bus, partitions, &ends, &tx))
    };

    let mut out = TopicVerification { published_through: published, ..TopicVerification::default() };
    let mut seen = vec![false; published.max(0) as usize + 1];
    let mut last_position: HashMap<i32, i64> = HashMap::new();
    let mut batch: Vec<(Raw, RecordedEvent)> = Vec::new();
    let contract = kefu_contract::Contract::get();
    loop {
        let next = rx.recv().await;
        let done = next.is_none();
        if let Some(raw) = next {
            let raw = raw?;
            out.records += 1;
            match contract.decode(&raw.value) {
                Ok(event) => batch.push((raw, event)),
                Err(e) => keep_first(
                    &mut out.first_mismatch,
                    Mismatch::at(
                        0,
                        None,
                        format!("partition {} offset {}: not a kefu envelope: {e}", raw.partition, raw.offset),
                    ),
                ),
            }
        }
        if batch.len() >= 500 || (done && !batch.is_empty()) {
            let positions: Vec<i64> = batch.iter().map(|(_, e)| e.global_position).collect();
            let stored: HashMap<i64, RecordedEvent> =
                store.events_at(&positions).await?.into_iter().map(|e| (e.global_position, e)).collect();
            for (raw, event) in batch.drain(..) {
                let p = event.global_position;
                let here = format!("partition {} offset {}", raw.partition, raw.offset);
                let Some(original) = stored.get(&p) else {
                    keep_first(
                        &mut out.first_mismatch,
                        Mismatch::at(p, Some(&event), format!("{here} carries a position the store does not have")),
                    );
                    continue;
                };
                let expected = contract.encode(original)?;
                if expected != raw.value {
                    keep_first(
                        &mut out.first_mismatch,
                        Mismatch::at(
                            p,
                            Some(original),
                            format!("{here} differs from the stored event (the Kafka copy was altered)"),
                        ),
                    );
                    continue;
                }
                if let Some(prev) = last_position.insert(raw.partition, p)
                    && prev >= p
                {
                    keep_first(
                        &mut out.first_mismatch,
                        Mismatch::at(p, Some(original), format!("{here} comes after position {prev} in its partition")),
                    );
                }
                if raw.key != original.partition_key().to_string().as_bytes()
                    || partition_for(&raw.key, partitions) != raw.partition
                {
                    keep_first(
                        &mut out.first_mismatch,
                        Mismatch::at(p, Some(original), format!("{here} has the wrong key or partition")),
                    );
                }
                if let Some(s) = seen.get_mut(p as usize) {
                    *s = true;
                }
            }
            on_progress(out.records);
        }
        if done {
            break;
        }
    }
    reader.await.map_err(|e| BusError::Topic(format!("the topic reader failed: {e}")))??;
    if let Some(p) = (1..=published).find(|p| !seen[*p as usize]) {
        let original = store.event_at(p).await?;
        keep_first(
            &mut out.first_mismatch,
            Mismatch::at(p, original.as_ref(), "published, but not on the topic (the Kafka copy lost it)"),
        );
    }
    Ok(out)
}

fn read_partitions(
    bus: &BusConfig,
    partitions: i32,
    ends: &HashMap<i32, i64>,
    tx: &mpsc::Sender<Result<Raw, BusError>>,
) -> Result<(), BusError> {
    let mut tpl = TopicPartitionList::new();
    let mut open = 0;
    for p in 0..partitions {
        if ends.get(&p).copied().unwrap_or(0) > 0 {
            tpl.add_partition_offset(&bus.topic, p, Offset::Beginning)?;
            open += 1;
        }
    }
    if open == 0 {
        return Ok(());
    }
    let mut config = bus.consumer("kefu-audit", &format!("{}.audit", bus.topic));
    config.set("enable.partition.eof", "true");
    let consumer: BaseConsumer = config.create()?;
    consumer.assign(&tpl)?;
    let mut finished: HashMap<i32, bool> = HashMap::new();
    let mut idle_since = std::time::Instant::now();
    while finished.len() < open {
        match consumer.poll(Duration::from_millis(200)) {
            None => {
                if idle_since.elapsed() > Duration::from_secs(30) {
                    return Err(BusError::Topic("the topic stopped answering before its end".into()));
                }
            }
            Some(Ok(m)) => {
                idle_since = std::time::Instant::now();
                let (p, offset) = (m.partition(), m.offset());
                let end = ends.get(&p).copied().unwrap_or(0);
                if offset >= end {
                    finished.insert(p, true);
                    continue;
                }
                let raw = Raw {
                    partition: p,
                    offset,
                    key: m.key().unwrap_or_default().to_vec(),
                    value: m.payload().unwrap_or_default().to_vec(),
                };
                if tx.blocking_send(Ok(raw)).is_err() {
                    return Ok(());
                }
                if offset + 1 >= end {
                    finished.insert(p, true);
                }
            }
            Some(Err(KafkaError::PartitionEOF(p))) => {
                finished.insert(p, true);
            }
            Some(Err(e)) => {
                let _ = tx.blocking_send(Err(e.into()));
                return Ok(());
            }
        }
    }
    Ok(())
}
