//! The scheduler against a real PostgreSQL and a real broker, with the relay and the
//! `service_requests` projection running: warnings and breaches are recorded once per clock
//! while two schedulers run side by side and one of them restarts.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::{collections::HashMap, sync::Arc, time::Duration};

use chrono::{DateTime, Utc};
use kefu_app::{Actor, ActorKind, CommandMeta, CommandService, service_requests::RequestDraft};
use kefu_bus::{
    BusConfig,
    relay::{Relay, RelayOptions},
};
use kefu_domain::{
    customer::{CustomerCommand, examples},
    values::{Category, Subject},
    vocab::{Channel, Priority, RequestType},
};
use kefu_projections::{
    runner::{ProjectionRunner, RunnerOptions},
    service_requests,
};
use kefu_scheduler::{Scheduler, SchedulerOptions};
use kefu_store::{PgEventStore, migrate};
use sqlx::{PgPool, Row};
use tokio::sync::oneshot;
use uuid::Uuid;

/// The metric as the event payload names it (the proto enum value).
const FIRST_RESPONSE: &str = "SLA_METRIC_FIRST_RESPONSE";

/// A background task stopped on demand.
struct Running(Option<oneshot::Sender<()>>, tokio::task::JoinHandle<()>);

impl Running {
    fn spawn<F, Fut>(f: F) -> Running
    where
        F: FnOnce(oneshot::Receiver<()>) -> Fut,
        Fut: std::future::Future<Output = ()> + Send + 'static,
    {
        let (tx, rx) = oneshot::channel();
        Running(Some(tx), tokio::spawn(f(rx)))
    }

    async fn stop(mut self) {
        if let Some(tx) = self.0.take() {
            let _ = tx.send(());
        }
        let _ = (&mut self.1).await;
    }
}

fn agent() -> CommandMeta {
    CommandMeta::by(Actor { id: "agent.chen".into(), name: None, kind: ActorKind::User, roles: vec!["agent".into()] })
}

/// A scheduler instance with its own connection pool, as a separate process would have.
async fn scheduler(url: &str) -> anyhow::Result<Running> {
    let pool = PgPool::connect(url).await?;
    let commands = CommandService::new(Arc::new(PgEventStore::new(pool.clone())));
    let s = Scheduler::new(
        pool,
        commands,
        SchedulerOptions { interval: Duration::from_millis(150), batch: 7, ..SchedulerOptions::default() },
    );
    Ok(Running::spawn(move |rx| async move {
        s.run(async {
            let _ = rx.await;
        })
        .await
        .unwrap();
    }))
}

/// Every warning and breach recorded, per (request, metric, cycle).
async fn recorded(pool: &PgPool) -> anyhow::Result<HashMap<(Uuid, String, i64), (usize, usize)>> {
    let rows = sqlx::query(
        "SELECT stream_id, event_type, payload FROM event_store.events \
         WHERE event_type IN ('SlaWarningRaised', 'SlaBreached') ORDER BY global_position",
    )
    .fetch_all(pool)
    .await?;
    let mut out: HashMap<(Uuid, String, i64), (usize, usize)> = HashMap::new();
    for r in rows {
        let payload: serde_json::Value = r.try_get("payload")?;
        let key = (
            r.try_get("stream_id")?,
            payload["metric"].as_str().unwrap_or_default().to_string(),
            payload["cycle"].as_i64().unwrap_or(0),
        );
        let entry = out.entry(key).or_default();
        if r.try_get::<String, _>("event_type")? == "SlaBreached" {
            entry.1 += 1;
        } else {
            entry.0 += 1;
        }
    }
    Ok(out)
}

#[tokio::test]
async fn two_schedulers_and_a_restart_record_each_warning_and_breach_once() -> anyhow::Result<()> {
    kefu_testkit::init_tracing();
    let db = kefu_testkit::fresh_database().await?;
    migrate::run(&db.pool).await?;
    kefu_projections::migrate(&db.pool).await?;
    let store = PgEventStore::new(db.pool.clone());
    let service = CommandService::new(Arc::new(store.clone()));
    let bus = BusConfig::new(kefu_testkit::brokers()?).with_topic(kefu_testkit::unique_topic("sla"));

    let relay = Relay::new(store.clone(), bus.clone(), RelayOptions::default())?;
    let relay = Running::spawn(move |rx| async move {
        relay
            .run(async {
                let _ = rx.await;
            })
            .await
            .unwrap();
    });
    let runner = ProjectionRunner::new(
        db.pool.clone(),
        bus.clone(),
        Arc::new(service_requests::ServiceRequests),
        RunnerOptions::default(),
    );
    let projector = Running::spawn(move |rx| async move {
        runner
            .run(async {
                let _ = rx.await;
            })
            .await
            .unwrap();
    });

    let (customer, register) = examples::register_person();
    service.customer(CustomerCommand::Register(register), agent()).await?;

    // Kefu's default policy: first response within 2 h, warning at 80 %. `late` requests were
    // filed 3 h ago (breached before the schedulers start); `soon` ones cross the deadline a
    // few seconds into the test, while both schedulers run (warned at once, breached later).
    let now = Utc::now();
    let mut late = Vec::new();
    let mut soon = Vec::new();
    for i in 0..24 {
        let request_id = Uuid::now_v7();
        let filed: DateTime<Utc> = if i % 2 == 0 {
            now - chrono::Duration::hours(3)
        } else {
            now - chrono::Duration::hours(2) + chrono::Duration::seconds(6)
        };
        let mut meta = agent();
        meta.occurred_at = Some(filed);
        let draft = RequestDraft {
            request_id,
            customer_id: customer,
            request_type: RequestType::Inquiry,
            category: Category::parse("category", "Billing / Overcharge")?,
            priority: Priority::Normal,
            channel: Channel::Phone,
            subject: Subject::parse("subject", &format!("request {i}"))?,
            description: None,
            taken_by: None,
            department: None,
            on_site_required: false,
            external_ref: None,
            tags: vec![],
            origin: None,
        };
        service.open_request(draft, meta).await?;
        if i % 2 == 0 { late.push(request_id) } else { soon.push(request_id) }
    }

    let first = scheduler(&db.url).await?;
    let second = scheduler(&db.url).await?;
    tokio::time::sleep(Duration::from_secs(3)).await;
    // One instance dies and comes back while the `soon` deadlines pass.
    first.stop().await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let restarted = scheduler(&db.url).await?;

    let deadline = std::time::Instant::now() + Duration::from_secs(90);
    loop {
        let seen = recorded(&db.pool).await?;
        let breached = seen.iter().filter(|((_, m, _), (_, b))| m == FIRST_RESPONSE && *b > 0).count();
        if breached == late.len() + soon.len() {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "only {breached} breaches recorded: {seen:?}");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    // Let both run on a while: nothing more may be recorded.
    tokio::time::sleep(Duration::from_secs(3)).await;
    second.stop().await;
    restarted.stop().await;

    let seen = recorded(&db.pool).await?;
    for id in &late {
        let (warnings, breaches) = seen[&(*id, FIRST_RESPONSE.to_string(), 1)];
        assert_eq!(breaches, 1, "request {id}");
        assert_eq!(warnings, 0, "already past its deadline at the first check: breach only, no warning");
    }
    for id in &soon {
        assert_eq!(seen[&(*id, FIRST_RESPONSE.to_string(), 1)], (1, 1), "request {id}: one warning, one breach");
    }
    assert!(
        seen.keys().all(|(_, metric, _)| metric == FIRST_RESPONSE),
        "no other clock is due yet: {:?}",
        seen.keys().collect::<Vec<_>>()
    );

    // The breach carries its deadline and the scheduler as actor.
    let row = sqlx::query(
        "SELECT e.payload, e.actor, f.occurred_at AS filed FROM event_store.events e \
         JOIN event_store.events f ON f.stream_id = e.stream_id AND f.stream_version = 1 \
         WHERE e.event_type = 'SlaBreached' AND e.stream_id = $1",
    )
    .bind(soon[0])
    .fetch_one(&db.pool)
    .await?;
    let payload: serde_json::Value = row.try_get("payload")?;
    let actor: serde_json::Value = row.try_get("actor")?;
    let filed: DateTime<Utc> = row.try_get("filed")?;
    let due: DateTime<Utc> = payload["dueAt"].as_str().unwrap().parse()?;
    assert_eq!(due, filed + chrono::Duration::hours(2));
    assert_eq!(actor["id"], "system:sla-scheduler");

    // A fresh instance finds nothing left to record.
    let pool = PgPool::connect(&db.url).await?;
    let commands = CommandService::new(Arc::new(PgEventStore::new(pool.clone())));
    let fresh = Scheduler::new(pool, commands, SchedulerOptions::default());
    let head = store_head(&db.pool).await?;
    kefu_projections::progress::wait_for(&db.pool, service_requests::NAME, head, Duration::from_secs(30)).await?;
    let round = fresh.round().await?;
    assert_eq!(round.recorded, 0, "{round:?}");

    projector.stop().await;
    relay.stop().await;
    Ok(())
}

async fn store_head(pool: &PgPool) -> anyhow::Result<i64> {
    Ok(sqlx::query_scalar("SELECT position FROM event_store.log_head").fetch_one(pool).await?)
}
