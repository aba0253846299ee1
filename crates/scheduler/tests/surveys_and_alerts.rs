//! Survey reminders, expiry and satisfaction alerts from the scheduler, on a real PostgreSQL
//! and broker with the satisfaction read model running: each reminder once, expiry once the
//! time has passed, one review and one alert per period however many schedulers run.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::{sync::Arc, time::Duration};

use chrono::{DateTime, Utc};
use kefu_app::{Actor, ActorKind, CommandMeta, CommandService, surveys::SurveyDraft};
use kefu_bus::{
    BusConfig,
    relay::{Relay, RelayOptions},
};
use kefu_domain::{
    customer::{CustomerCommand, examples as customers},
    satisfaction_config::{SatisfactionConfigCommand, examples::csat_drop},
    survey::{Survey, examples::answer},
    survey_template::{SurveyTemplateCommand, examples as templates},
    values::Label,
    vocab::{Channel, SurveyTrigger},
};
use kefu_projections::{
    progress,
    runner::{ProjectionRunner, RunnerOptions},
    satisfaction,
};
use kefu_scheduler::{Scheduler, SchedulerOptions};
use kefu_store::{PgEventStore, migrate};
use sqlx::PgPool;
use tokio::sync::oneshot;
use uuid::Uuid;

fn t(s: &str) -> DateTime<Utc> {
    s.parse().unwrap()
}

fn by(at: Option<&str>) -> CommandMeta {
    let mut m = CommandMeta::by(Actor {
        id: "sup.wang".into(),
        name: None,
        kind: ActorKind::User,
        roles: vec!["supervisor".into()],
    });
    m.occurred_at = at.map(t);
    m
}

/// A scheduler whose clock reads `now`.
fn scheduler(pool: &PgPool, now: DateTime<Utc>) -> Scheduler {
    let commands = CommandService::new(Arc::new(PgEventStore::new(pool.clone()))).with_clock(Arc::new(move || now));
    Scheduler::new(pool.clone(), commands, SchedulerOptions::default())
}

async fn caught_up(pool: &PgPool) -> anyhow::Result<()> {
    let head: i64 = sqlx::query_scalar("SELECT position FROM event_store.log_head").fetch_one(pool).await?;
    let (ok, through) = progress::wait_for(pool, satisfaction::NAME, head, Duration::from_secs(60)).await?;
    anyhow::ensure!(ok, "stuck at {through} of {head}");
    Ok(())
}

async fn count(pool: &PgPool, event_type: &str) -> anyhow::Result<i64> {
    Ok(sqlx::query_scalar("SELECT count(*) FROM event_store.events WHERE event_type = $1")
        .bind(event_type)
        .fetch_one(pool)
        .await?)
}

fn draft(customer: Uuid, department: &str, hours: u32, reminders: Vec<u32>) -> SurveyDraft {
    SurveyDraft {
        survey_id: Some(Uuid::now_v7()),
        template_id: templates::TEMPLATE_ID,
        template_version: None,
        customer_id: customer,
        request_id: None,
        department: Some(Label::parse("d", department).unwrap()),
        trigger: SurveyTrigger::Campaign,
        campaign: None,
        policy_id: None,
        channel: Some(Channel::Sms),
        expires_after_hours: hours,
        remind_after_hours: reminders,
        follow_up: None,
        require_consent: false,
    }
}

#[tokio::test]
async fn reminders_expiry_and_alerts_are_recorded_once() -> anyhow::Result<()> {
    let db = kefu_testkit::fresh_database().await?;
    migrate::run(&db.pool).await?;
    kefu_projections::migrate(&db.pool).await?;
    let store = PgEventStore::new(db.pool.clone());
    let service = CommandService::new(Arc::new(store.clone()));
    let bus = BusConfig::new(kefu_testkit::brokers()?).with_topic(kefu_testkit::unique_topic("timers"));
    let relay = Relay::new(store.clone(), bus.clone(), RelayOptions::default())?;
    let (stop_relay, relay_rx) = oneshot::channel::<()>();
    let relay = tokio::spawn(async move {
        relay
            .run(async {
                let _ = relay_rx.await;
            })
            .await
            .unwrap()
    });
    let runner = ProjectionRunner::new(
        db.pool.clone(),
        bus.clone(),
        Arc::new(satisfaction::Satisfaction),
        RunnerOptions::default(),
    );
    let (stop_projector, projector_rx) = oneshot::channel::<()>();
    let projector = tokio::spawn(async move {
        runner
            .run(async {
                let _ = projector_rx.await;
            })
            .await
            .unwrap()
    });

    let template = templates::TEMPLATE_ID;
    let define = SurveyTemplateCommand::Define { template_id: template, content: templates::after_service() };
    service.survey_template(template, define, by(Some("2026-08-01T00:00:00Z"))).await?;
    service
        .survey_template(template, SurveyTemplateCommand::Publish { version: 1 }, by(Some("2026-08-01T00:00:00Z")))
        .await?;
    let (customer, register) = customers::register_person();
    service.customer(CustomerCommand::Register(register), by(Some("2026-08-01T00:00:00Z"))).await?;

    // Reminders and expiry: a survey sent now, reminded after 1 h and 2 h, expiring after 3 h.
    let now = Utc::now();
    let pending = service.send_survey(draft(customer, "A", 3, vec![1, 2]), by(None)).await?.stream_id;
    caught_up(&db.pool).await?;
    let later = now + chrono::Duration::minutes(90);
    let (a, b) = (scheduler(&db.pool, later), scheduler(&db.pool, later));
    let (ra, rb) = tokio::join!(a.round(), b.round());
    assert_eq!(ra?.surveys + rb?.surveys, 1, "one reminder between two schedulers");
    caught_up(&db.pool).await?;
    assert_eq!(scheduler(&db.pool, later).round().await?.surveys, 0, "the first reminder is not sent twice");
    let (survey, _, _) = service.load::<Survey>(pending).await?;
    assert_eq!((survey.reminders_sent, survey.expired_at), (1, None));
    let after_expiry = now + chrono::Duration::hours(4);
    // Past expiry: the second reminder is no longer sent; the survey expires.
    scheduler(&db.pool, after_expiry).round().await?;
    caught_up(&db.pool).await?;
    scheduler(&db.pool, after_expiry).round().await?;
    let (survey, _, _) = service.load::<Survey>(pending).await?;
    assert_eq!(survey.reminders_sent, 1);
    assert!(survey.expired_at.is_some());
    assert_eq!(count(&db.pool, "SurveyExpired").await?, 1);

    // Alerts: department A's CSAT falls from 100 % in September to 50 % in October; B stays.
    service
        .configure_satisfaction(
            SatisfactionConfigCommand::DefineAlertRule(kefu_domain::satisfaction_config::AlertRule {
                min_responses: 2,
                drop_hundredths: 1000,
                time_zone: "UTC".into(),
                ..csat_drop()
            }),
            by(Some("2026-08-01T00:00:00Z")),
        )
        .await?;
    for (dept, when, overall) in [
        ("A", "2026-09-10T10:00:00Z", 5),
        ("A", "2026-09-11T10:00:00Z", 4),
        ("A", "2026-10-10T10:00:00Z", 5),
        ("A", "2026-10-11T10:00:00Z", 1),
        ("B", "2026-09-10T10:00:00Z", 5),
        ("B", "2026-09-11T10:00:00Z", 5),
        ("B", "2026-10-10T10:00:00Z", 4),
        ("B", "2026-10-11T10:00:00Z", 5),
    ] {
        let survey =
            service.send_survey(draft(customer, dept, 24 * 80, vec![]), by(Some("2026-09-01T00:00:00Z"))).await?;
        service
            .record_survey_response(survey.stream_id, vec![answer("q_overall", overall)], false, None, by(Some(when)))
            .await?;
    }
    caught_up(&db.pool).await?;
    let november = t("2026-11-05T00:00:00Z");
    let (a, b) = (scheduler(&db.pool, november), scheduler(&db.pool, november));
    let (ra, rb) = tokio::join!(a.round(), b.round());
    assert_eq!(ra?.reviews + rb?.reviews, 1);
    assert_eq!(scheduler(&db.pool, november).round().await?.reviews, 0);
    assert_eq!(count(&db.pool, "SatisfactionPeriodReviewed").await?, 1);
    assert_eq!(count(&db.pool, "SatisfactionAlertRaised").await?, 1);
    let alert: serde_json::Value =
        sqlx::query_scalar("SELECT payload FROM event_store.events WHERE event_type = 'SatisfactionAlertRaised'")
            .fetch_one(&db.pool)
            .await?;
    assert_eq!(alert["label"], "2026-10");
    assert_eq!(alert["drop"]["department"], "A");
    assert_eq!(alert["drop"]["previousHundredths"], 10000);
    assert_eq!(alert["drop"]["currentHundredths"], 5000);
    caught_up(&db.pool).await?;
    let mut tx = kefu_projections::read(&db.pool, satisfaction::NAME).await?;
    let alerts = satisfaction::alerts(&mut tx, t("2026-11-01T00:00:00Z"), t("2026-12-01T00:00:00Z")).await?;
    assert_eq!(alerts.len(), 1);
    assert_eq!(alerts[0].department, "A");
    drop(tx);

    let _ = stop_projector.send(());
    let _ = stop_relay.send(());
    projector.await?;
    relay.await?;
    Ok(())
}
