//! Reading long histories as of a point (`asOf`) on a real PostgreSQL: with snapshots taken
//! on the way, every answer at every point on every time axis equals the fold of all events
//! within that point from the first one; later reads start from a snapshot; snapshots of
//! another fold version are ignored, and deleting them changes no answer.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

use chrono::{DateTime, Duration, Utc};
use kefu_app::{Actor, ActorKind, CommandMeta, CommandService, RecordedEvent, service_requests::RequestDraft};
use kefu_domain::{
    customer::{CustomerCommand, examples},
    interaction::{InteractionCommand, examples::log_phone_call},
    service_request::ServiceRequestCommand as C,
    values::{Category, StaffId, StaffRef, Subject as Title, Text},
    vocab::{Channel, Priority, RequestType},
};
use kefu_projections::{
    as_of::{self, Fold, SNAPSHOT_EVERY},
    customer360::{self, CustomerView},
    service_requests::{self, RequestView},
};
use kefu_store::{
    PgEventStore,
    history::{self, Cutoff, Subject},
    migrate,
};
use sqlx::PgPool;
use uuid::Uuid;

fn meta(at: DateTime<Utc>) -> CommandMeta {
    let mut m = CommandMeta::by(Actor { id: "agent.chen".into(), name: None, kind: ActorKind::User, roles: vec![] });
    m.occurred_at = Some(at);
    m
}

fn text(s: &str) -> Text {
    Text::parse("t", s).unwrap()
}

/// The fold of every event within the cutoff, from the first one, without snapshots.
async fn from_scratch<F: Fold>(pool: &PgPool, id: Uuid, cutoff: Cutoff) -> Option<F> {
    let events: Vec<RecordedEvent> =
        history::subject_events(pool, F::subject(id), 0, Some(cutoff), i64::MAX).await.unwrap();
    F::fold(None, &events).unwrap()
}

async fn snapshots(pool: &PgPool, kind: &str, id: Uuid) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM projections.snapshots WHERE kind = $1 AND subject_id = $2")
        .bind(kind)
        .bind(id)
        .fetch_one(pool)
        .await
        .unwrap()
}

/// Every point of the subject's history on every axis: each event's position, recorded time
/// and business time, and one before the first.
async fn points(pool: &PgPool, subject: Subject) -> Vec<Cutoff> {
    let events = history::subject_events(pool, subject, 0, None, i64::MAX).await.unwrap();
    let mut out = vec![Cutoff::Position(0), Cutoff::Business(events[0].occurred_at - Duration::days(1))];
    for e in &events {
        out.extend([
            Cutoff::Position(e.global_position),
            Cutoff::Recorded(e.recorded_at),
            Cutoff::Business(e.occurred_at),
        ]);
    }
    out
}

#[tokio::test]
async fn long_histories_read_as_of_any_point_equal_the_fold_from_the_first_event() -> anyhow::Result<()> {
    let db = kefu_testkit::fresh_database().await?;
    migrate::run(&db.pool).await?;
    kefu_projections::migrate(&db.pool).await?;
    let service = CommandService::new(Arc::new(PgEventStore::new(db.pool.clone())));
    let t0: DateTime<Utc> = "2026-03-02T01:00:00Z".parse()?;

    let (customer, register) = examples::register_person();
    service.customer(CustomerCommand::Register(register), meta(t0)).await?;
    let request = Uuid::now_v7();
    let draft = RequestDraft {
        request_id: request,
        customer_id: customer,
        request_type: RequestType::Complaint,
        category: Category::parse("c", "宽带/掉线")?,
        priority: Priority::High,
        channel: Channel::Phone,
        subject: Title::parse("s", "每晚断网")?,
        description: None,
        taken_by: None,
        department: None,
        on_site_required: false,
        external_ref: None,
        tags: vec![],
        origin: None,
    };
    service.open_request(draft, meta(t0)).await?;

    // 250 steps on the request (waiting and resuming moves its SLA clocks), each with a
    // contact; every tenth contact is recorded late with an earlier business time, so the
    // customer's business times are not in log order.
    let agents = ["agent.a", "agent.b", "agent.c"];
    for k in 1..=250i64 {
        let at = t0 + Duration::minutes(10 * k);
        let command = match k % 5 {
            0 => C::AwaitCustomer { at, reason: text("等客户提供账单") },
            1 if k > 1 => C::Resume { at, note: None, calendar: None },
            2 => C::UpdateCustomer { at, channel: Channel::Sms, summary: text(&format!("进度 {k}")) },
            _ => C::Assign {
                at,
                assignee: Some(StaffRef { id: StaffId::parse("a", agents[k as usize % 3])?, name: None }),
                department: None,
                reason: None,
            },
        };
        service.request(request, command, meta(at)).await?;
        {
            let late = k % 10 == 0;
            let when = if late { t0 + Duration::minutes(10 * k - 600) } else { at };
            let mut log = log_phone_call();
            log.interaction_id = Uuid::now_v7();
            log.customer_id = customer;
            log.service_request_id = Some(request);
            log.channel = if k % 3 == 0 { Channel::Wechat } else { Channel::Phone };
            log.resolved_at_first_contact = k % 4 == 0;
            if log.resolved_at_first_contact {
                log.tasks_handed_over.clear();
            }
            service.interaction(InteractionCommand::Log(log), meta(when)).await?;
        }
    }
    let request_events = history::subject_events(&db.pool, Subject::Stream(request), 0, None, i64::MAX).await?;
    let customer_events = history::subject_events(&db.pool, Subject::Customer(customer), 0, None, i64::MAX).await?;
    assert_eq!(request_events.len(), 251);
    assert!(customer_events.len() > 2 * SNAPSHOT_EVERY, "{}", customer_events.len());

    // The first read through the whole history takes the snapshots.
    let head = Cutoff::Position(i64::MAX);
    let first = as_of::request(&db.pool, request, head).await?;
    assert_eq!(first.from_snapshot, None);
    assert_eq!(first.events_folded, 251);
    assert_eq!(first.snapshots_taken, 251 / SNAPSHOT_EVERY);
    assert_eq!(snapshots(&db.pool, RequestView::KIND, request).await, 2);
    let c = as_of::customer(&db.pool, customer, head).await?;
    assert_eq!(c.snapshots_taken, customer_events.len() / SNAPSHOT_EVERY);
    assert_eq!(c.view.as_ref().unwrap().interaction_count, 250);

    // Now reads start from the nearest usable snapshot and fold fewer events…
    let late = as_of::request(&db.pool, request, head).await?;
    assert_eq!(late.from_snapshot, Some(request_events[199].global_position));
    assert_eq!(late.events_folded, 51);
    assert_eq!(late.snapshots_taken, 0);
    // …and every answer, at every point on every axis, is the fold from the first event.
    for cutoff in points(&db.pool, Subject::Stream(request)).await {
        let read = as_of::request(&db.pool, request, cutoff).await?;
        // (The request's times are in log order on every axis.)
        assert!(read.events_folded <= SNAPSHOT_EVERY, "{cutoff:?} folded {}", read.events_folded);
        assert_eq!(read.view, from_scratch::<RequestView>(&db.pool, request, cutoff).await, "request as of {cutoff:?}");
    }
    let mut used_snapshot = 0;
    for cutoff in points(&db.pool, Subject::Customer(customer)).await {
        let read = as_of::customer(&db.pool, customer, cutoff).await?;
        used_snapshot += usize::from(read.from_snapshot.is_some());
        assert_eq!(
            read.view,
            from_scratch::<CustomerView>(&db.pool, customer, cutoff).await,
            "customer as of {cutoff:?}"
        );
    }
    assert!(used_snapshot > customer_events.len(), "snapshots served most reads: {used_snapshot}");
    // The live answer is the projection's own fold of everything.
    assert_eq!(late.view, service_requests::fold_view(&request_events)?);
    assert_eq!(c.view, customer360::fold_view(&customer_events)?);

    // A snapshot of another fold version is never used, whatever it holds.
    sqlx::query(
        "INSERT INTO projections.snapshots (kind, subject_id, fold_version, through_position, events, \
           max_recorded_at, max_occurred_at, view) \
         VALUES ($1, $2, $3, $4, 1, '1970-01-01Z', '1970-01-01Z', '{\"garbage\": true}')",
    )
    .bind(RequestView::KIND)
    .bind(request)
    .bind(RequestView::VERSION + 1)
    .bind(request_events[250].global_position)
    .execute(&db.pool)
    .await?;
    assert_eq!(as_of::request(&db.pool, request, head).await?.view, late.view);

    // Snapshots are a cache: without them the answers are the same.
    sqlx::query("DELETE FROM projections.snapshots").execute(&db.pool).await?;
    let cold = as_of::request(&db.pool, request, Cutoff::Position(request_events[120].global_position)).await?;
    assert_eq!((cold.from_snapshot, cold.events_folded), (None, 121));
    assert_eq!(
        cold.view,
        from_scratch::<RequestView>(&db.pool, request, Cutoff::Position(request_events[120].global_position)).await
    );
    Ok(())
}
