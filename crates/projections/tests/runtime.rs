//! Projections against a real PostgreSQL and a real broker: exactly-once application,
//! resumption, rebuilds, poison events, read-your-writes.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::{sync::Arc, time::Duration};

use chrono::{TimeZone, Utc};
use kefu_app::{
    Actor, ActorKind, CommandMeta, CommandService, EventStore,
    store::{AppendRequest, CommandRecord, NewEvent},
};
use kefu_bus::{
    BusConfig,
    relay::{Relay, RelayOptions},
};
use kefu_domain::{
    Patch,
    customer::{
        AssignAccountManager, ClassifyCustomer, CustomerCommand, RecordConsent, UpdateCustomerProfile, examples,
    },
    interaction::{InteractionCommand, examples as interactions},
    values::PhoneNumber,
    vocab::{Channel, ConsentPurpose, ValueTier},
};
use kefu_projections::{
    Projection, customer360, progress,
    registry::{self, Status},
    runner::{ProjectionRunner, RunnerOptions, SwitchPolicy, rebuild},
    verify,
};
use kefu_store::{PgEventStore, migrate};
use sqlx::PgPool;
use tokio::sync::oneshot;
use uuid::Uuid;

struct World {
    pool: PgPool,
    store: PgEventStore,
    service: CommandService,
    bus: BusConfig,
}

async fn world() -> anyhow::Result<World> {
    let db = kefu_testkit::fresh_database().await?;
    migrate::run(&db.pool).await?;
    kefu_projections::migrate(&db.pool).await?;
    let store = PgEventStore::new(db.pool.clone());
    let service = CommandService::new(Arc::new(store.clone()));
    let mut bus = BusConfig::new(kefu_testkit::brokers()?).with_topic(kefu_testkit::unique_topic("proj"));
    bus.partitions = 3;
    if let Ok(d) = std::env::var("KEFU_TEST_KAFKA_DEBUG") {
        bus.client_properties.push(("debug".into(), d));
    }
    Ok(World { pool: db.pool, store, service, bus })
}

fn actor() -> Actor {
    Actor { id: "agent.chen".into(), name: Some("陈静".into()), kind: ActorKind::User, roles: vec!["agent".into()] }
}

fn projection() -> Arc<dyn Projection> {
    Arc::new(customer360::Customer360)
}

fn options() -> RunnerOptions {
    RunnerOptions {
        max_batch: 7, // small batches: many transactions, many checkpoints
        rebuild_batch: 7,
        ..RunnerOptions::default()
    }
}

/// A running background task that stops when the guard is dropped.
struct Running(Option<oneshot::Sender<()>>, tokio::task::JoinHandle<()>);

impl Running {
    async fn stop(mut self) {
        if let Some(tx) = self.0.take() {
            let _ = tx.send(());
        }
        let _ = (&mut self.1).await;
    }
}

fn run_relay(w: &World) -> Running {
    let relay = Relay::new(w.store.clone(), w.bus.clone(), RelayOptions::default()).unwrap();
    let (tx, rx) = oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        relay
            .run(async {
                let _ = rx.await;
            })
            .await
            .unwrap();
    });
    Running(Some(tx), task)
}

fn run_projector(w: &World) -> Running {
    let runner = ProjectionRunner::new(w.pool.clone(), w.bus.clone(), projection(), options());
    let (tx, rx) = oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        runner
            .run(async {
                let _ = rx.await;
            })
            .await
            .unwrap();
    });
    Running(Some(tx), task)
}

async fn caught_up(w: &World) -> anyhow::Result<i64> {
    let head = w.store.head().await?;
    let (ok, through) = progress::wait_for(&w.pool, customer360::NAME, head, Duration::from_secs(60)).await?;
    anyhow::ensure!(ok, "projection stuck at {through} of {head}");
    Ok(head)
}

/// A customer with a full story; returns their id.
async fn story(w: &World, interactions_count: usize) -> anyhow::Result<Uuid> {
    let (_, mut register) = examples::register_organization();
    register.customer_id = Uuid::now_v7();
    let id = register.customer_id;
    let by = || CommandMeta::by(actor());
    w.service.customer(CustomerCommand::Register(register), by()).await?;
    w.service
        .customer(
            CustomerCommand::UpdateProfile(UpdateCustomerProfile {
                customer_id: id,
                phone: Patch::Set(PhoneNumber::parse("phone", "021-5555 0101")?),
                ..Default::default()
            }),
            by(),
        )
        .await?;
    w.service
        .customer(
            CustomerCommand::Classify(ClassifyCustomer {
                customer_id: id,
                value_tier: Patch::Set(ValueTier::Potential),
                ..Default::default()
            }),
            by(),
        )
        .await?;
    w.service
        .customer(
            CustomerCommand::AssignAccountManager(AssignAccountManager {
                customer_id: id,
                manager: examples::staff("zhang.wei", "张伟"),
                reason: None,
            }),
            by(),
        )
        .await?;
    w.service
        .customer(
            CustomerCommand::RecordConsent(RecordConsent {
                customer_id: id,
                purpose: ConsentPurpose::Surveys,
                granted: true,
                channel: Some(Channel::Phone),
                note: None,
            }),
            by(),
        )
        .await?;
    for i in 0..interactions_count {
        let mut log = interactions::log_phone_call();
        log.interaction_id = Uuid::now_v7();
        log.customer_id = id;
        log.channel = if i % 3 == 0 { Channel::Email } else { Channel::Phone };
        log.resolved_at_first_contact = i % 2 == 0;
        if log.resolved_at_first_contact {
            log.tasks_handed_over.clear();
        }
        let mut meta = by();
        meta.occurred_at = Some(Utc.with_ymd_and_hms(2025, 1, 1, 9, 0, 0).unwrap() + chrono::Duration::hours(i as i64));
        w.service.interaction(InteractionCommand::Log(log), meta).await?;
    }
    Ok(id)
}

#[tokio::test]
async fn the_customer_360_shows_a_customers_whole_story() -> anyhow::Result<()> {
    let w = world().await?;
    let relay = run_relay(&w);
    let projector = run_projector(&w);
    let id = story(&w, 5).await?;
    let other = story(&w, 1).await?;
    caught_up(&w).await?;

    let mut tx = kefu_projections::read(&w.pool, customer360::NAME).await?;
    let c = customer360::customer(&mut tx, id).await?.expect("customer in the read model");
    assert_eq!(c.profile.name.as_str(), "华北制造有限公司");
    assert_eq!(c.profile.contacts.phone.as_ref().unwrap().as_str(), "02155550101");
    assert_eq!(c.profile.key_contacts.len(), 1);
    assert_eq!(c.value_tier.as_deref(), Some("POTENTIAL"));
    assert_eq!(c.industry.as_deref(), Some("MANUFACTURING"));
    assert!(c.key_account);
    assert_eq!(c.account_manager_id.as_deref(), Some("zhang.wei"));
    assert_eq!(c.consents["SURVEYS"]["granted"], serde_json::json!(true));
    assert_eq!(c.version, 7, "register(3 events) + update + classify + assign + consent");
    assert_eq!(c.interaction_count, 5);
    assert_eq!(c.first_contact_resolution(), Some(3.0 / 5.0));
    assert_eq!(c.last_contact_at, Some(Utc.with_ymd_and_hms(2025, 1, 1, 13, 0, 0).unwrap()));
    assert_eq!(c.last_contact_channel.as_deref(), Some("PHONE"));
    assert_eq!(
        customer360::channel_counts(&mut tx, id).await?,
        vec![("PHONE".to_string(), 3), ("EMAIL".to_string(), 2)]
    );

    // The timeline is newest first and pages without overlap.
    let (page1, more) = customer360::timeline(&mut tx, id, 2, None).await?;
    assert!(more);
    let last = page1.last().unwrap();
    let (page2, _) = customer360::timeline(&mut tx, id, 10, Some((last.occurred_at, last.interaction_id))).await?;
    let all: Vec<_> = page1.iter().chain(page2.iter()).map(|i| i.occurred_at).collect();
    assert_eq!(all.len(), 5);
    assert!(all.windows(2).all(|w| w[0] > w[1]), "newest first");

    let other_view = customer360::customer(&mut tx, other).await?.unwrap();
    assert_eq!(other_view.interaction_count, 1);
    drop(tx);
    projector.stop().await;
    relay.stop().await;
    Ok(())
}

#[tokio::test]
async fn redelivering_the_whole_log_changes_nothing() -> anyhow::Result<()> {
    let w = world().await?;
    let relay = run_relay(&w);
    let projector = run_projector(&w);
    for _ in 0..4 {
        story(&w, 3).await?;
    }
    caught_up(&w).await?;
    projector.stop().await;
    let active = registry::active(&w.pool, customer360::NAME).await?.unwrap();
    let before = verify::digests(&w.pool, &*projection(), &active).await?;

    // Forget the offsets: the next run sees every record again.
    sqlx::query("DELETE FROM projections.checkpoints").execute(&w.pool).await?;
    let projector = run_projector(&w);
    caught_up(&w).await?;
    projector.stop().await;
    let after = verify::digests(&w.pool, &*projection(), &active).await?;
    assert_eq!(before, after);
    relay.stop().await;
    Ok(())
}

#[tokio::test]
async fn a_rebuild_equals_the_live_projection_and_takes_over() -> anyhow::Result<()> {
    let w = world().await?;
    let relay = run_relay(&w);
    let projector = run_projector(&w);
    for _ in 0..3 {
        story(&w, 4).await?;
    }
    caught_up(&w).await?;
    let live = registry::active(&w.pool, customer360::NAME).await?.unwrap();

    let report = rebuild(&w.pool, &w.bus, projection(), &options(), SwitchPolicy::Always, |_| {}).await?;
    assert_eq!(report.replaced, Some(live.generation));
    assert_eq!(report.in_memory.map(|o| o.records), Some(report.records), "the whole log folded in memory");
    assert_eq!(report.generation.status, Status::Active);
    let live_after = registry::get(&w.pool, customer360::NAME, live.generation).await?.unwrap();
    assert_eq!(live_after.status, Status::Retired);
    assert_eq!(
        verify::digests(&w.pool, &*projection(), &live_after).await?,
        verify::digests(&w.pool, &*projection(), &report.generation).await?,
        "rebuild differs from the live generation"
    );

    // The running projector follows the switch: new events land in the new generation.
    let id = story(&w, 1).await?;
    caught_up(&w).await?;
    let mut tx = kefu_projections::read(&w.pool, customer360::NAME).await?;
    assert!(customer360::customer(&mut tx, id).await?.is_some());
    drop(tx);
    projector.stop().await;
    relay.stop().await;
    Ok(())
}

#[tokio::test]
async fn a_rebuild_while_writes_continue_loses_nothing() -> anyhow::Result<()> {
    let w = world().await?;
    let relay = run_relay(&w);
    let projector = run_projector(&w);
    for _ in 0..3 {
        story(&w, 3).await?;
    }
    caught_up(&w).await?;
    let w = std::sync::Arc::new(w);
    // Customers keep arriving during the whole rebuild.
    let (stop_tx, mut stop_rx) = oneshot::channel::<()>();
    let writer = {
        let w = w.clone();
        tokio::spawn(async move {
            let mut written = 0usize;
            loop {
                story(&w, 2).await?;
                written += 1;
                // At a pace a rebuild can overtake: the point is writes during the rebuild,
                // not a race between the write path and the rebuild.
                tokio::time::sleep(Duration::from_millis(100)).await;
                if stop_rx.try_recv().is_ok() {
                    return anyhow::Ok(written);
                }
            }
        })
    };
    let report = rebuild(&w.pool, &w.bus, projection(), &options(), SwitchPolicy::Always, |_| {}).await?;
    assert!(report.switched);
    assert!(
        matches!(
            report.comparison,
            Some(verify::Comparison::Identical { .. }) | Some(verify::Comparison::NotComparable(_))
        ),
        "{:?}",
        report.comparison
    );
    let _ = stop_tx.send(());
    let written = writer.await??;
    assert!(written >= 1);
    caught_up(&w).await?;

    // Every customer and contact in the log is in the new generation, counted once.
    let (customers, contacts): (i64, i64) = sqlx::query_as(
        "SELECT count(*) FILTER (WHERE event_type = 'CustomerRegistered'), \
                count(*) FILTER (WHERE event_type = 'InteractionLogged') FROM event_store.events",
    )
    .fetch_one(&w.pool)
    .await?;
    let active = registry::active(&w.pool, customer360::NAME).await?.unwrap();
    assert_eq!(active.generation, report.generation.generation);
    let (rows, counted): (i64, i64) = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT count(*), coalesce(sum(interaction_count), 0)::bigint FROM {}.customers",
        active.schema
    )))
    .fetch_one(&w.pool)
    .await?;
    assert_eq!((rows, counted), (customers, contacts));
    let w = std::sync::Arc::try_unwrap(w).map_err(|_| anyhow::anyhow!("world still shared"))?;
    projector.stop().await;
    relay.stop().await;
    drop(w);
    Ok(())
}

#[tokio::test]
async fn a_poison_event_parks_only_its_own_stream() -> anyhow::Result<()> {
    let w = world().await?;
    let relay = run_relay(&w);
    let projector = run_projector(&w);
    let healthy = story(&w, 1).await?;

    // A stream whose first event cannot be applied (a profile update for a file never opened).
    let broken = Uuid::now_v7();
    for version in 0..2 {
        let command_id = Uuid::now_v7();
        w.store
            .append(AppendRequest {
                stream_id: broken,
                stream_type: "customer".into(),
                customer_id: Some(broken),
                expected_version: version,
                command: CommandRecord {
                    command_id,
                    command_type: "customer.Test".into(),
                    payload: serde_json::json!({"v": version}).into(),
                },
                events: vec![NewEvent {
                    event_id: Uuid::now_v7(),
                    event_type: "CustomerProfileUpdated".into(),
                    schema_version: 1,
                    payload: serde_json::json!({"needs": "x"}),
                }],
                occurred_at: Utc::now(),
                actor: actor(),
                correlation_id: Uuid::now_v7(),
                causation_id: command_id,
                also: vec![],
            })
            .await?;
    }
    let later = story(&w, 2).await?;
    caught_up(&w).await?;

    let active = registry::active(&w.pool, customer360::NAME).await?.unwrap();
    let dead = progress::dead_letters(&w.pool, &active).await?;
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].stream_id, broken);
    assert!(dead[0].reason.contains("unknown customer"), "{}", dead[0].reason);
    assert_eq!(dead[0].skipped_events, 1, "the stream's later event is skipped, not applied out of order");
    let mut tx = kefu_projections::read(&w.pool, customer360::NAME).await?;
    assert!(customer360::customer(&mut tx, healthy).await?.is_some());
    assert_eq!(customer360::customer(&mut tx, later).await?.unwrap().interaction_count, 2);
    drop(tx);

    // A rebuild cannot fold such a log in memory: it declines, applies the log batch by batch
    // instead and parks the same stream, and equals the live generation.
    let report = rebuild(&w.pool, &w.bus, projection(), &options(), SwitchPolicy::IfIdentical, |_| {}).await?;
    assert_eq!(report.in_memory, None, "the in-memory fold declines a log it cannot fold");
    assert!(matches!(report.comparison, Some(verify::Comparison::Identical { .. })), "{:?}", report.comparison);
    let dead = progress::dead_letters(&w.pool, &report.generation).await?;
    assert_eq!(dead.iter().map(|d| (d.stream_id, d.skipped_events)).collect::<Vec<_>>(), [(broken, 1)]);
    projector.stop().await;
    relay.stop().await;
    Ok(())
}

#[tokio::test]
async fn waiting_for_a_position_is_bounded_and_reports_progress() -> anyhow::Result<()> {
    let w = world().await?;
    let projector = run_projector(&w);
    let id = story(&w, 1).await?;
    let head = w.store.head().await?;
    // No relay yet: nothing can arrive.
    let started = std::time::Instant::now();
    let (ok, through) = progress::wait_for(&w.pool, customer360::NAME, head, Duration::from_millis(600)).await?;
    assert!(!ok);
    assert_eq!(through, 0);
    assert!(started.elapsed() >= Duration::from_millis(600));
    let relay = run_relay(&w);
    let (ok, through) = progress::wait_for(&w.pool, customer360::NAME, head, Duration::from_secs(60)).await?;
    assert!(ok && through >= head);
    let mut tx = kefu_projections::read(&w.pool, customer360::NAME).await?;
    assert!(customer360::customer(&mut tx, id).await?.is_some());
    drop(tx);

    let status = progress::status(&w.pool).await?;
    assert_eq!(status.len(), 1);
    assert_eq!(status[0].progress.lag_events, 0);
    assert_eq!(status[0].progress.records_published, head);
    projector.stop().await;
    relay.stop().await;
    Ok(())
}

#[tokio::test]
async fn a_changed_table_layout_is_rebuilt_from_the_log_by_the_projector() -> anyhow::Result<()> {
    let w = world().await?;
    let relay = run_relay(&w);
    let projector = run_projector(&w);
    story(&w, 2).await?;
    caught_up(&w).await?;
    projector.stop().await;
    let old = registry::active(&w.pool, customer360::NAME).await?.unwrap();
    // As if the generation had been built by an older release with another layout.
    sqlx::query("UPDATE projections.generations SET layout_fingerprint = 'older-layout' WHERE generation = $1")
        .bind(old.generation)
        .execute(&w.pool)
        .await?;

    let projector = run_projector(&w);
    let new = kefu_testkit::eventually(Duration::from_secs(60), "a new generation", || {
        let pool = w.pool.clone();
        async move { Ok(registry::active(&pool, customer360::NAME).await?.filter(|g| g.generation != old.generation)) }
    })
    .await?;
    assert_eq!(new.fingerprint, registry::fingerprint(customer360::Customer360.schema()));
    let retired = registry::get(&w.pool, customer360::NAME, old.generation).await?.unwrap();
    assert_eq!(retired.status, Status::Retired);
    assert_eq!(
        verify::digests(&w.pool, &*projection(), &retired).await?,
        verify::digests(&w.pool, &*projection(), &new).await?
    );
    let id = story(&w, 1).await?;
    caught_up(&w).await?;
    let mut tx = kefu_projections::read(&w.pool, customer360::NAME).await?;
    assert!(customer360::customer(&mut tx, id).await?.is_some(), "the projector serves the new generation");
    drop(tx);
    projector.stop().await;
    relay.stop().await;
    Ok(())
}
