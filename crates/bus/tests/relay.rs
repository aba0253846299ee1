//! The relay against a real PostgreSQL and a real broker process.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::{
    collections::{HashMap, HashSet},
    sync::Arc,
    time::Duration,
};

use kefu_app::{Actor, ActorKind, CommandMeta, CommandService, RecordedEvent};
use kefu_bus::{
    BusConfig, BusError,
    partitioner::partition_for,
    relay::{LostLogPolicy, Relay, RelayOptions},
};
use kefu_contract::Contract;
use kefu_domain::{
    customer::{CustomerCommand, examples},
    interaction::{InteractionCommand, examples as interactions},
};
use kefu_store::{PgEventStore, migrate, relay_state};
use rdkafka::{
    Message, Offset, TopicPartitionList,
    consumer::{BaseConsumer, Consumer},
    message::Headers,
    producer::{FutureProducer, FutureRecord},
};
use uuid::Uuid;

struct Setup {
    store: PgEventStore,
    service: CommandService,
    bus: BusConfig,
}

async fn setup(partitions: i32) -> anyhow::Result<Setup> {
    let db = kefu_testkit::fresh_database().await?;
    migrate::run(&db.pool).await?;
    let store = PgEventStore::new(db.pool);
    let service = CommandService::new(Arc::new(store.clone()));
    let mut bus = BusConfig::new(kefu_testkit::brokers()?).with_topic(kefu_testkit::unique_topic("relay"));
    bus.partitions = partitions;
    bus.delivery_timeout = Duration::from_secs(10);
    Ok(Setup { store, service, bus })
}

fn actor() -> Actor {
    Actor { id: "agent.chen".into(), name: None, kind: ActorKind::User, roles: vec![] }
}

/// Registers a customer and logs `interactions` contacts; returns the customer id.
async fn customer_story(service: &CommandService, interactions_per_customer: usize) -> anyhow::Result<Uuid> {
    let (_, mut register) = examples::register_person();
    register.customer_id = Uuid::now_v7();
    let id = register.customer_id;
    service.customer(CustomerCommand::Register(register), CommandMeta::by(actor())).await?;
    for _ in 0..interactions_per_customer {
        let mut log = interactions::log_phone_call();
        log.interaction_id = Uuid::now_v7();
        log.customer_id = id;
        service.interaction(InteractionCommand::Log(log), CommandMeta::by(actor())).await?;
    }
    Ok(id)
}

struct Received {
    key: String,
    partition: i32,
    event: RecordedEvent,
    event_type_header: Option<String>,
}

/// Reads the whole topic from the beginning with an ordinary consumer until `expected`
/// records arrived and nothing more comes for a moment.
fn read_topic(bus: &BusConfig, expected: usize) -> anyhow::Result<Vec<Received>> {
    let consumer: BaseConsumer = bus.consumer("test-reader", &format!("reader-{}", Uuid::new_v4())).create()?;
    let mut tpl = TopicPartitionList::new();
    for p in 0..bus.partitions {
        tpl.add_partition_offset(&bus.topic, p, Offset::Beginning)?;
    }
    consumer.assign(&tpl)?;
    let mut out = Vec::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let mut quiet_since = None;
    loop {
        match consumer.poll(Duration::from_millis(200)) {
            Some(m) => {
                let m = m?;
                quiet_since = None;
                let event = Contract::get().decode(m.payload().unwrap_or_default())?;
                let event_type_header = m.headers().and_then(|h| {
                    h.iter()
                        .find(|h| h.key == "kefu-event-type")
                        .and_then(|h| h.value)
                        .map(|v| String::from_utf8_lossy(v).to_string())
                });
                out.push(Received {
                    key: String::from_utf8_lossy(m.key().unwrap_or_default()).to_string(),
                    partition: m.partition(),
                    event,
                    event_type_header,
                });
            }
            None => {
                if out.len() >= expected {
                    let since = quiet_since.get_or_insert_with(std::time::Instant::now);
                    if since.elapsed() > Duration::from_millis(1500) {
                        return Ok(out);
                    }
                }
            }
        }
        anyhow::ensure!(std::time::Instant::now() < deadline, "only {} of {expected} records arrived", out.len());
    }
}

/// Every event of the store arrived exactly once, keyed by customer, in order per customer.
async fn assert_exactly_once_in_order(s: &Setup, received: &[Received]) -> anyhow::Result<()> {
    let all = s.store.read_after(0, 1_000_000).await?;
    let ids: Vec<Uuid> = received.iter().map(|r| r.event.event_id).collect();
    let unique: HashSet<Uuid> = ids.iter().copied().collect();
    assert_eq!(unique.len(), ids.len(), "duplicates on the topic");
    assert_eq!(ids.len(), all.len(), "missing events on the topic");
    let by_id: HashMap<Uuid, &RecordedEvent> = all.iter().map(|e| (e.event_id, e)).collect();
    let mut last_per_customer: HashMap<String, i64> = HashMap::new();
    for r in received {
        let stored = by_id[&r.event.event_id];
        assert_eq!(&r.event, stored, "the decoded envelope differs from the stored event");
        assert_eq!(r.key, stored.partition_key().to_string());
        assert_eq!(r.partition, partition_for(r.key.as_bytes(), s.bus.partitions));
        assert_eq!(r.event_type_header.as_deref(), Some(stored.event_type.as_str()));
        let last = last_per_customer.entry(r.key.clone()).or_insert(0);
        assert!(r.event.global_position > *last, "customer {} out of order", r.key);
        *last = r.event.global_position;
    }
    Ok(())
}

#[tokio::test]
async fn publishes_every_event_in_order_keyed_by_customer() -> anyhow::Result<()> {
    let s = setup(3).await?;
    for _ in 0..6 {
        customer_story(&s.service, 3).await?;
    }
    let relay = Relay::new(s.store.clone(), s.bus.clone(), RelayOptions::default())?;
    let published = relay.publish_pending().await?;
    assert_eq!(published, 24);
    assert_eq!(relay.publish_pending().await?, 0, "nothing is published twice");
    let received = tokio::task::spawn_blocking({
        let bus = s.bus.clone();
        move || read_topic(&bus, 24)
    })
    .await??;
    assert_exactly_once_in_order(&s, &received).await?;

    // The cursor and partition marks say exactly what is on the broker.
    let pool = s.store.pool();
    assert_eq!(relay_state::cursor(pool, &s.bus.topic).await?, 24);
    let marks = relay_state::partitions(pool, &s.bus.topic).await?;
    assert!(!marks.is_empty());
    for m in marks {
        let in_partition: Vec<&Received> = received.iter().filter(|r| r.partition == m.partition).collect();
        assert_eq!(m.next_offset, in_partition.len() as i64);
        assert_eq!(Some(m.last_position), in_partition.iter().map(|r| r.event.global_position).max());
    }
    Ok(())
}

#[tokio::test]
async fn our_partitioner_agrees_with_librdkafka_murmur2_random() -> anyhow::Result<()> {
    let s = setup(5).await?;
    kefu_bus::admin::ensure_topic(&s.bus).await?;
    let producer: FutureProducer = s.bus.producer("partitioner-check").create()?;
    for i in 0..40 {
        let key = Uuid::now_v7().to_string();
        let payload = format!("{i}");
        let delivery = producer
            .send(FutureRecord::to(&s.bus.topic).key(&key).payload(&payload), Duration::from_secs(10))
            .await
            .map_err(|(e, _)| e)?;
        assert_eq!(delivery.partition, partition_for(key.as_bytes(), 5), "key {key}");
    }
    Ok(())
}

#[tokio::test]
async fn a_relay_restarted_mid_stream_delivers_every_event_once_in_order() -> anyhow::Result<()> {
    let s = setup(3).await?;
    // Writers keep appending while the relay is killed and restarted several times.
    let writer = {
        let service = s.service.clone();
        tokio::spawn(async move {
            for _ in 0..30 {
                customer_story(&service, 4).await.unwrap();
            }
        })
    };
    for round in 0..4 {
        let relay = Relay::new(s.store.clone(), s.bus.clone(), RelayOptions::default())?;
        let task = tokio::spawn(relay.run(std::future::pending()));
        tokio::time::sleep(Duration::from_millis(150 + 170 * round)).await;
        // A crash: the task is dropped wherever it is, possibly between the broker's
        // acknowledgement and the cursor update.
        task.abort();
        let _ = task.await;
    }
    writer.await?;
    // Simulate the worst crash window explicitly too: the broker has records the cursor does
    // not know about.
    let head = s.store.head().await?;
    let relay = Relay::new(s.store.clone(), s.bus.clone(), RelayOptions::default())?;
    relay.publish_pending().await?;
    sqlx::query("UPDATE event_store.relay_cursor SET position = position - 37 WHERE topic = $1")
        .bind(&s.bus.topic)
        .execute(s.store.pool())
        .await?;
    let relay = Relay::new(s.store.clone(), s.bus.clone(), RelayOptions::default())?;
    relay.publish_pending().await?;
    assert_eq!(relay_state::cursor(s.store.pool(), &s.bus.topic).await?, head);

    let received = tokio::task::spawn_blocking({
        let bus = s.bus.clone();
        move || read_topic(&bus, head as usize)
    })
    .await??;
    assert_exactly_once_in_order(&s, &received).await?;
    Ok(())
}

#[tokio::test]
async fn only_one_relay_publishes_and_a_standby_takes_over() -> anyhow::Result<()> {
    let s = setup(2).await?;
    customer_story(&s.service, 2).await?;
    let first = Relay::new(s.store.clone(), s.bus.clone(), RelayOptions::default())?;
    let second = Relay::new(s.store.clone(), s.bus.clone(), RelayOptions::default())?;
    let first_progress = first.progress();
    let second_progress = second.progress();
    let a = tokio::spawn(first.run(std::future::pending()));
    kefu_testkit::eventually(Duration::from_secs(20), "first relay active", || {
        let p = *first_progress.borrow();
        async move { Ok(p.active.then_some(())) }
    })
    .await?;
    let b = tokio::spawn(second.run(std::future::pending()));
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(!second_progress.borrow().active, "two relays active at once");
    a.abort();
    let _ = a.await;
    customer_story(&s.service, 1).await?;
    let head = s.store.head().await?;
    kefu_testkit::eventually(Duration::from_secs(30), "standby caught up", || {
        let p = *second_progress.borrow();
        async move { Ok((p.active && p.position == head).then_some(())) }
    })
    .await?;
    b.abort();
    let received = tokio::task::spawn_blocking({
        let bus = s.bus.clone();
        move || read_topic(&bus, head as usize)
    })
    .await??;
    assert_exactly_once_in_order(&s, &received).await?;
    Ok(())
}

#[tokio::test]
async fn a_broker_that_lost_the_log_is_detected() -> anyhow::Result<()> {
    let s = setup(2).await?;
    customer_story(&s.service, 2).await?;
    let relay = Relay::new(s.store.clone(), s.bus.clone(), RelayOptions::default())?;
    relay.publish_pending().await?;
    // Pretend the relay had written further than the broker now holds.
    sqlx::query("UPDATE event_store.relay_partitions SET next_offset = next_offset + 100 WHERE topic = $1")
        .bind(&s.bus.topic)
        .execute(s.store.pool())
        .await?;
    let err = relay.publish_pending().await.unwrap_err();
    assert!(matches!(err, BusError::LogLost(_)), "{err}");
    assert!(err.to_string().contains("republish"), "the error says what to do: {err}");

    let options = RelayOptions { on_lost_log: LostLogPolicy::Republish, ..RelayOptions::default() };
    let relay = Relay::new(s.store.clone(), s.bus.clone(), options)?;
    relay.publish_pending().await?;
    assert_eq!(relay_state::cursor(s.store.pool(), &s.bus.topic).await?, s.store.head().await?);
    Ok(())
}
