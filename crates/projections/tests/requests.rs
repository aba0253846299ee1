//! The service-request read models on a real PostgreSQL and a real broker: the backlog's
//! filters, orders, pages and counts, SLA compliance figures, the audit trail, and rebuilds
//! that equal the live generations after a projector restart.
//!
//! The history is written with fixed business times so every figure below follows from the
//! story told in `history()`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::{sync::Arc, time::Duration};

use chrono::{DateTime, Utc};
use kefu_app::{Actor, ActorKind, CommandMeta, CommandService, service_requests::RequestDraft};
use kefu_bus::{
    BusConfig,
    relay::{Relay, RelayOptions},
};
use kefu_domain::{
    customer::{CustomerCommand, examples},
    service_request::ServiceRequestCommand as C,
    values::{Category, Label, Name, StaffId, StaffRef, Subject, Text},
    vocab::{Channel, Priority, RequestType},
};
use kefu_projections::{
    Projection, ProjectionError,
    bulk::BulkLoad,
    progress, registry, request_audit,
    runner::{ProjectionRunner, RunnerOptions, SwitchPolicy, rebuild},
    service_requests::{self as sr, BacklogFilter, BacklogOrder, ComplianceDimension},
    verify::{self, Comparison},
};
use kefu_store::{PgEventStore, migrate};
use sqlx::PgPool;
use tokio::sync::oneshot;
use uuid::Uuid;

struct Running(Option<oneshot::Sender<()>>, tokio::task::JoinHandle<()>);

impl Running {
    async fn stop(mut self) {
        if let Some(tx) = self.0.take() {
            let _ = tx.send(());
        }
        let _ = (&mut self.1).await;
    }
}

fn run_relay(store: &PgEventStore, bus: &BusConfig) -> Running {
    let relay = Relay::new(store.clone(), bus.clone(), RelayOptions::default()).unwrap();
    let (tx, rx) = oneshot::channel::<()>();
    Running(
        Some(tx),
        tokio::spawn(async move {
            relay
                .run(async {
                    let _ = rx.await;
                })
                .await
                .unwrap()
        }),
    )
}

fn projections() -> [Arc<dyn Projection>; 2] {
    [Arc::new(sr::ServiceRequests), Arc::new(request_audit::RequestAudit)]
}

fn small_batches() -> RunnerOptions {
    RunnerOptions { max_batch: 3, ..RunnerOptions::default() }
}

fn run_projectors(pool: &PgPool, bus: &BusConfig) -> Vec<Running> {
    projections()
        .into_iter()
        .map(|p| {
            let runner = ProjectionRunner::new(pool.clone(), bus.clone(), p, small_batches());
            let (tx, rx) = oneshot::channel::<()>();
            Running(
                Some(tx),
                tokio::spawn(async move {
                    runner
                        .run(async {
                            let _ = rx.await;
                        })
                        .await
                        .unwrap()
                }),
            )
        })
        .collect()
}

async fn caught_up(pool: &PgPool) -> anyhow::Result<()> {
    let head: i64 = sqlx::query_scalar("SELECT position FROM event_store.log_head").fetch_one(pool).await?;
    for p in projections() {
        let (ok, through) = progress::wait_for(pool, p.name(), head, Duration::from_secs(60)).await?;
        anyhow::ensure!(ok, "{} stuck at {through} of {head}", p.name());
    }
    Ok(())
}

fn t(s: &str) -> DateTime<Utc> {
    s.parse().unwrap()
}

fn at(s: &str) -> CommandMeta {
    let mut meta = CommandMeta::by(Actor {
        id: "agent.chen".into(),
        name: Some("陈静".into()),
        kind: ActorKind::User,
        roles: vec!["agent".into()],
    });
    meta.occurred_at = Some(t(s));
    meta
}

fn text(s: &str) -> Text {
    Text::parse("text", s).unwrap()
}

#[derive(Clone, Copy)]
struct Story {
    x: Uuid,
    y: Uuid,
    a: Uuid,
    b: Uuid,
    c: Uuid,
    d: Uuid,
    e: Uuid,
    f: Uuid,
}

struct Draft<'a> {
    customer: Uuid,
    kind: RequestType,
    priority: Priority,
    channel: Channel,
    category: &'a str,
    department: Option<&'a str>,
}

async fn open(service: &CommandService, d: Draft<'_>, when: &str) -> anyhow::Result<Uuid> {
    let id = Uuid::now_v7();
    let draft = RequestDraft {
        request_id: id,
        customer_id: d.customer,
        request_type: d.kind,
        category: Category::parse("category", d.category)?,
        priority: d.priority,
        channel: d.channel,
        subject: Subject::parse("subject", &format!("{} {}", d.category, id))?,
        description: None,
        taken_by: None,
        department: d.department.map(|x| Label::parse("department", x)).transpose()?,
        on_site_required: false,
        external_ref: None,
        tags: vec![],
        origin: None,
    };
    service.open_request(draft, at(when)).await?;
    Ok(id)
}

/// The first half of the story (`part == 0`) or the second.
///
/// T0 = 2026-03-02 01:00 UTC (Monday 09:00 in Beijing). kefu's default policy (calendar
/// time): first response 2 h, resolution 48 h.
/// - A, inquiry, NORMAL, phone, 账务部, filed T0; answered T0+1h (hit), resolved T0+20h (hit),
///   the customer satisfied at T0+21h: closed.
/// - B, inquiry, HIGH, web, 网络维护部, filed T0+1h; the scheduler's check at T0+4h records
///   the first-response breach (due T0+3h); answered T0+5h, assigned to eng.li.
/// - C, inquiry, LOW, WeChat, customer Y, filed T0+2h; untouched.
/// - D, inquiry, URGENT, phone, customer Y, filed 15:30 UTC (23:30 in Beijing); answered
///   16:00 (hit; due 17:30 UTC, which is already 3 March in Beijing); waiting for the
///   customer from 16:30.
/// - E, duplicate of B, filed T0+3h, merged into B at T0+3h30m.
/// - F, demand, filed T0+3h, withdrawn at T0+3h10m.
async fn history(service: &CommandService, part: u8, story: &mut Story) -> anyhow::Result<()> {
    let x = story.x;
    if part == 0 {
        let d = |customer, kind, priority, channel, category, department| Draft {
            customer,
            kind,
            priority,
            channel,
            category,
            department,
        };
        let a = open(
            service,
            d(x, RequestType::Inquiry, Priority::Normal, Channel::Phone, "账单/查询", Some("账务部")),
            "2026-03-02T01:00:00Z",
        )
        .await?;
        service.request(a, C::Acknowledge { at: Utc::now(), note: None }, at("2026-03-02T02:00:00Z")).await?;
        let b = open(
            service,
            d(x, RequestType::Inquiry, Priority::High, Channel::Web, "宽带/网速", Some("网络维护部")),
            "2026-03-02T02:00:00Z",
        )
        .await?;
        let c = open(
            service,
            d(story.y, RequestType::Inquiry, Priority::Low, Channel::Wechat, "宽带/安装", None),
            "2026-03-02T03:00:00Z",
        )
        .await?;
        let e = open(
            service,
            d(story.y, RequestType::Inquiry, Priority::Normal, Channel::Phone, "宽带/网速", None),
            "2026-03-02T04:00:00Z",
        )
        .await?;
        let f = open(
            service,
            d(x, RequestType::Demand, Priority::Normal, Channel::Phone, "宽带/提速", None),
            "2026-03-02T04:00:00Z",
        )
        .await?;
        service
            .request(f, C::Withdraw { at: Utc::now(), reason: text("不需要了") }, at("2026-03-02T04:10:00Z"))
            .await?;
        service.merge_requests(b, e, text("同一个问题"), at("2026-03-02T04:30:00Z")).await?;
        *story = Story { a, b, c, e, f, ..*story };
    } else {
        let Story { a, b, .. } = *story;
        service.request(b, C::CheckSla { now: Utc::now(), levels: vec![] }, at("2026-03-02T05:00:00Z")).await?;
        service.request(b, C::Acknowledge { at: Utc::now(), note: None }, at("2026-03-02T06:00:00Z")).await?;
        service
            .request(
                b,
                C::Assign {
                    at: Utc::now(),
                    assignee: Some(StaffRef {
                        id: StaffId::parse("assignee", "eng.li")?,
                        name: Some(Name::parse("name", "李工")?),
                    }),
                    department: None,
                    reason: None,
                },
                at("2026-03-02T06:05:00Z"),
            )
            .await?;
        service
            .request(
                a,
                C::Resolve {
                    at: Utc::now(),
                    resolution: text("解释了账单"),
                    root_cause: Label::parse("rootCause", "customer_misunderstanding")?,
                    compensation: None,
                },
                at("2026-03-02T21:00:00Z"),
            )
            .await?;
        service
            .request(
                a,
                C::RecordReturnVisit {
                    at: Utc::now(),
                    satisfied: true,
                    channel: Channel::Phone,
                    note: None,
                    reason: None,
                    calendar: None,
                },
                at("2026-03-02T22:00:00Z"),
            )
            .await?;
        let d = open(
            service,
            Draft {
                customer: story.y,
                kind: RequestType::Inquiry,
                priority: Priority::Urgent,
                channel: Channel::Phone,
                category: "固话/故障",
                department: None,
            },
            "2026-03-02T15:30:00Z",
        )
        .await?;
        service.request(d, C::Acknowledge { at: Utc::now(), note: None }, at("2026-03-02T16:00:00Z")).await?;
        service
            .request(d, C::AwaitCustomer { at: Utc::now(), reason: text("等客户在家") }, at("2026-03-02T16:30:00Z"))
            .await?;
        story.d = d;
    }
    Ok(())
}

/// The open backlog in `order`, ids only.
async fn listed(tx: &mut sqlx::PgConnection, filter: &BacklogFilter, order: BacklogOrder) -> anyhow::Result<Vec<Uuid>> {
    Ok(ids(&sr::backlog(tx, filter, order, 50, None, sr::Aggregates::Read).await?.0))
}

/// First-response compliance per group: (first key, hit, missed).
async fn first_response(
    tx: &mut sqlx::PgConnection,
    range: (DateTime<Utc>, DateTime<Utc>),
    group_by: &[ComplianceDimension],
    time_zone: &str,
) -> anyhow::Result<Vec<(String, i64, i64)>> {
    let rows = sr::compliance(tx, range.0, range.1, group_by, time_zone).await?;
    Ok(rows
        .into_iter()
        .filter(|r| r.metric == "FIRST_RESPONSE")
        .map(|r| (r.keys[0].1.clone(), r.hit, r.missed))
        .collect())
}

fn ids(page: &[(sr::StoredRequest, sr::BacklogCursor)]) -> Vec<Uuid> {
    page.iter().map(|(_, cursor)| cursor.id).collect()
}

#[tokio::test]
async fn backlog_compliance_and_trail_follow_the_story_and_rebuilds_equal_them() -> anyhow::Result<()> {
    let db = kefu_testkit::fresh_database().await?;
    migrate::run(&db.pool).await?;
    kefu_projections::migrate(&db.pool).await?;
    let store = PgEventStore::new(db.pool.clone());
    let service = CommandService::new(Arc::new(store.clone()));
    let mut bus = BusConfig::new(kefu_testkit::brokers()?).with_topic(kefu_testkit::unique_topic("requests"));
    bus.partitions = 3;

    let (x, register) = examples::register_person();
    service.customer(CustomerCommand::Register(register), at("2026-01-01T00:00:00Z")).await?;
    let (y, register) = examples::register_organization();
    service.customer(CustomerCommand::Register(register), at("2026-01-01T00:00:00Z")).await?;

    let relay = run_relay(&store, &bus);
    let projectors = run_projectors(&db.pool, &bus);
    let nil = Uuid::nil();
    let mut story = Story { x, y, a: nil, b: nil, c: nil, d: nil, e: nil, f: nil };
    history(&service, 0, &mut story).await?;
    caught_up(&db.pool).await?;
    // The projectors stop half way and resume from their stored offsets.
    for p in projectors {
        p.stop().await;
    }
    history(&service, 1, &mut story).await?;
    let projectors = run_projectors(&db.pool, &bus);
    caught_up(&db.pool).await?;
    let Story { a, b, c, d, e, f, .. } = story;

    let mut tx = kefu_projections::read(&db.pool, sr::NAME).await?;
    let open = BacklogFilter::default();

    // Each filing is written once, when its request first appears, and kept by the batches
    // that change the request later; the stored aggregate holds the rest and reads whole.
    let (without_filing, filing_in_state): (i64, i64) = sqlx::query_as(
        "SELECT count(*) FILTER (WHERE filing IS NULL), \
                count(*) FILTER (WHERE jsonb_typeof(state_json::jsonb -> 'filed') = 'object') FROM requests",
    )
    .fetch_one(&mut *tx)
    .await?;
    assert_eq!((without_filing, filing_in_state), (0, 0));
    for id in [a, b, c, d, e, f] {
        let stored = sr::request(&mut tx, id).await?.expect("every request is stored");
        let filed = stored.aggregate.get()?.filed.as_ref().expect("the aggregate reads with its filing");
        assert_eq!((filed.request_id, filed.subject.as_str()), (id, stored.listed.subject.as_str()));
    }

    // Orders.
    assert_eq!(listed(&mut tx, &open, BacklogOrder::OldestFirst).await?, [b, c, d]);
    assert_eq!(listed(&mut tx, &open, BacklogOrder::NewestFirst).await?, [d, c, b]);
    assert_eq!(listed(&mut tx, &open, BacklogOrder::Priority).await?, [d, b, c]);
    // C's first response is due first; B's next is its resolution; D is paused: no deadline.
    assert_eq!(listed(&mut tx, &open, BacklogOrder::NextDeadline).await?, [c, b, d]);

    // Pages: keyset cursors, with and without a rank.
    for (order, expected) in [(BacklogOrder::OldestFirst, [b, c, d]), (BacklogOrder::Priority, [d, b, c])] {
        let mut seen = Vec::new();
        let mut after = None;
        loop {
            let (rows, more) = sr::backlog(&mut tx, &open, order, 1, after.as_ref(), sr::Aggregates::Skipped).await?;
            assert!(rows.iter().all(|(r, _)| !r.aggregate.is_read()), "a page of columns only");
            assert!(rows.iter().all(|(r, _)| r.aggregate.get().is_err_and(|e| e.to_string().contains("not read"))));
            seen.extend(ids(&rows));
            after = rows.last().map(|(_, cursor)| cursor.clone());
            if !more {
                break;
            }
        }
        assert_eq!(seen, expected, "{order:?}");
    }

    // Filters.
    macro_rules! only {
        ($filter:expr) => {{
            let mut got = listed(&mut tx, &$filter, BacklogOrder::OldestFirst).await?;
            got.sort();
            got
        }};
    }
    let sorted = |mut v: Vec<Uuid>| {
        v.sort();
        v
    };
    let s = |v: &str| vec![v.to_string()];
    assert_eq!(only!(BacklogFilter { priorities: s("HIGH"), ..Default::default() }), [b]);
    assert_eq!(only!(BacklogFilter { channels: s("WECHAT"), ..Default::default() }), [c]);
    assert_eq!(only!(BacklogFilter { department: Some("网络维护部".into()), ..Default::default() }), [b]);
    assert_eq!(only!(BacklogFilter { assignee_id: Some("eng.li".into()), ..Default::default() }), [b]);
    assert_eq!(
        only!(BacklogFilter { owner_id: Some("agent.chen".into()), ..Default::default() }),
        sorted(vec![b, c, d])
    );
    assert_eq!(only!(BacklogFilter { customer_id: Some(y), ..Default::default() }), sorted(vec![c, d]));
    assert_eq!(only!(BacklogFilter { breached: Some(true), ..Default::default() }), [b]);
    assert_eq!(only!(BacklogFilter { breached: Some(false), ..Default::default() }), sorted(vec![c, d]));
    assert_eq!(only!(BacklogFilter { category_prefix: Some("宽带".into()), ..Default::default() }), sorted(vec![b, c]));
    assert_eq!(
        only!(BacklogFilter { category_prefix: Some("宽%".into()), ..Default::default() }),
        Vec::<Uuid>::new(),
        "LIKE wildcards in the prefix are literal"
    );
    assert_eq!(only!(BacklogFilter { states: s("MERGED"), ..Default::default() }), [e]);
    assert_eq!(
        only!(BacklogFilter { states: vec!["CLOSED".into(), "WITHDRAWN".into()], ..Default::default() }),
        sorted(vec![a, f])
    );
    assert_eq!(only!(BacklogFilter { request_types: s("DEMAND"), ..Default::default() }), Vec::<Uuid>::new());

    // Counts at 18:00 UTC: D is 2.5 h old, B and C 15-16 h.
    let counts = sr::backlog_counts(&mut tx, &open, t("2026-03-02T18:00:00Z")).await?;
    assert_eq!(counts.total, 3);
    assert_eq!(counts.breached, 1);
    let state = |name: &str| counts.by_state.iter().find(|(s, _)| s == name).map(|(_, n)| *n);
    assert_eq!((state("FILED"), state("IN_PROGRESS"), state("AWAITING_CUSTOMER")), (Some(1), Some(1), Some(1)));
    let ages: Vec<i64> = counts.by_age.iter().map(|(_, n)| *n).collect();
    assert_eq!(ages, [1, 2, 0, 0, 0]);

    // The survivor carries both reporters; the merged request points to it.
    let bv = sr::request(&mut tx, b).await?.unwrap();
    assert!(!bv.aggregate.is_decoded(), "a read decodes the aggregate only when asked");
    assert_eq!(bv.aggregate.get()?.reporters.len(), 2);
    assert!(bv.aggregate.is_decoded());
    let ev = sr::request(&mut tx, e).await?.unwrap();
    assert_eq!((ev.listed.merged_into, ev.listed.live), (Some(b), false));

    // Every stored request shows what folding its events gives: the listed columns, the
    // derived facts and the aggregate (the gateway answers from the columns where it can).
    for id in [a, b, c, d, e, f] {
        let stored = sr::request(&mut tx, id).await?.expect("stored");
        let folded = kefu_projections::as_of::request(&db.pool, id, kefu_store::history::Cutoff::Position(i64::MAX))
            .await?
            .view
            .and_then(sr::StoredRequest::folded)
            .expect("folded");
        assert_eq!(stored, folded, "request {id}");
    }

    // Compliance: decided clocks only (C's and the open resolutions are still running, E was
    // merged, F withdrawn).
    let march = (t("2026-03-01T00:00:00Z"), t("2026-03-10T00:00:00Z"));
    let rows = sr::compliance(&mut tx, march.0, march.1, &[], "UTC").await?;
    let figures: Vec<(String, i64, i64)> = rows.iter().map(|r| (r.metric.clone(), r.hit, r.missed)).collect();
    assert_eq!(figures, [("FIRST_RESPONSE".to_string(), 2, 1), ("RESOLUTION".to_string(), 1, 0)]);

    let day = [ComplianceDimension::Day];
    assert_eq!(first_response(&mut tx, march, &day, "UTC").await?, [("2026-03-02".to_string(), 2, 1)]);
    assert_eq!(
        first_response(&mut tx, march, &day, "Asia/Shanghai").await?,
        [("2026-03-02".to_string(), 1, 1), ("2026-03-03".to_string(), 1, 0)],
        "D's deadline, 17:30 UTC, is the next day in Beijing"
    );
    let mut fr = first_response(&mut tx, march, &[ComplianceDimension::Department], "UTC").await?;
    fr.sort();
    assert_eq!(fr, [(String::new(), 1, 0), ("网络维护部".into(), 0, 1), ("账务部".into(), 1, 0)]);
    // Nothing falls due in February.
    assert!(sr::compliance(&mut tx, t("2026-02-01T00:00:00Z"), march.0, &[], "UTC").await?.is_empty());
    drop(tx);

    // The audit trail of the survivor: its steps in order, the merge naming the duplicate.
    let mut tx = kefu_projections::read(&db.pool, request_audit::NAME).await?;
    let trail = request_audit::history(&mut tx, b).await?;
    let types: Vec<&str> = trail.iter().map(|h| h.event_type.as_str()).collect();
    assert_eq!(types, ["RequestFiled", "DuplicateMerged", "SlaBreached", "RequestAcknowledged", "RequestAssigned"]);
    assert_eq!(trail[1].related_request_id, Some(e));
    assert_eq!(trail[2].actor.id, "agent.chen", "a check sent by an agent is recorded as theirs");
    assert_eq!(trail[4].changes["assignee"]["to"]["id"], "eng.li");
    drop(tx);

    // Rebuilt from the log, both read models equal the live ones, row for row.
    for p in projections() {
        let live = registry::active(&db.pool, p.name()).await?.unwrap();
        let report =
            rebuild(&db.pool, &bus, p.clone(), &RunnerOptions::default(), SwitchPolicy::Always, |_| {}).await?;
        let old = registry::get(&db.pool, p.name(), live.generation).await?.unwrap();
        // Both fold the log in memory and write it once (what a rebuild of them does).
        let in_memory = report.in_memory.expect("rebuilt in memory");
        assert_eq!(in_memory.records, report.records, "{}: the whole log folded in memory", p.name());
        assert!(!in_memory.budget_reached);
        assert_eq!(
            verify::digests(&db.pool, &*p, &old).await?,
            verify::digests(&db.pool, &*p, &report.generation).await?,
            "{} rebuild differs",
            p.name()
        );
    }
    for p in projectors {
        p.stop().await;
    }
    relay.stop().await;
    Ok(())
}

/// Every read model, given the whole story as one batch, one event per batch or batches of 5,
/// ends with the same rows (no broker: the records are encoded as the relay encodes them).
#[tokio::test]
async fn every_read_model_gives_the_same_rows_whatever_the_batches() -> anyhow::Result<()> {
    let db = kefu_testkit::fresh_database().await?;
    migrate::run(&db.pool).await?;
    kefu_projections::migrate(&db.pool).await?;
    let store = PgEventStore::new(db.pool.clone());
    let service = CommandService::new(Arc::new(store.clone()));
    let (x, register) = examples::register_person();
    service.customer(CustomerCommand::Register(register), at("2026-01-01T00:00:00Z")).await?;
    let (y, register) = examples::register_organization();
    service.customer(CustomerCommand::Register(register), at("2026-01-01T00:00:00Z")).await?;
    let nil = Uuid::nil();
    let mut story = Story { x, y, a: nil, b: nil, c: nil, d: nil, e: nil, f: nil };
    history(&service, 0, &mut story).await?;
    history(&service, 1, &mut story).await?;
    let events = store.read_after(0, 100_000).await?;
    let contract = kefu_contract::Contract::get();
    let records: Vec<kefu_projections::apply::Record> = events
        .iter()
        .enumerate()
        .map(|(i, e)| kefu_projections::apply::Record {
            partition: (i % 3) as i32,
            offset: i as i64,
            payload: contract.encode(e).unwrap(),
        })
        .collect();
    for projection in kefu_projections::all() {
        let mut digests = Vec::new();
        let mut generations = Vec::new();
        for chunk in [records.len(), 1, 5] {
            let generation = registry::create(&db.pool, &*projection, "batches", registry::Status::Building).await?;
            for batch in records.chunks(chunk) {
                let outcome = kefu_projections::apply::apply_batch(&db.pool, &*projection, &generation, batch).await?;
                assert_eq!(outcome.applied, batch.len(), "{} in batches of {chunk}", projection.name());
            }
            digests.push(verify::digests(&db.pool, &*projection, &generation).await?);
            generations.push(generation);
        }
        assert!(digests[0].iter().any(|d| d.rows > 0), "{} has rows", projection.name());
        assert_eq!(digests[1], digests[0], "{}: event by event equals one batch", projection.name());
        assert_eq!(digests[2], digests[0], "{}: batches of 5 equal one batch", projection.name());
        // The comparison a rebuild makes before it switches sees equal generations as equal,
        // and one changed value in one row of one table as a difference in that table.
        let compared = verify::compare(&db.pool, &*projection, &generations[0], &generations[1]).await?;
        let rows: i64 = digests[0].iter().map(|d| d.rows).sum();
        assert!(matches!(compared, Some(Comparison::Identical { rows: r, .. }) if r == rows), "{compared:?}");
        sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
            "UPDATE {}._stream_versions SET version = version + 1 \
             WHERE stream_id = (SELECT stream_id FROM {0}._stream_versions ORDER BY stream_id LIMIT 1)",
            generations[1].schema
        )))
        .execute(&db.pool)
        .await?;
        let compared = verify::compare(&db.pool, &*projection, &generations[0], &generations[1]).await?;
        let Some(Comparison::Differs(tables)) = compared else { panic!("{compared:?}") };
        assert_eq!(
            tables.iter().map(|t| t.table.as_str()).collect::<Vec<_>>(),
            ["_stream_versions"],
            "{}: only the changed table differs",
            projection.name()
        );
        if projection.bulk().is_none() {
            continue;
        }
        let batched = registry::create(&db.pool, &*projection, "batches", registry::Status::Building).await?;
        // Folded in memory (as a rebuild does) in one run, in runs of 7, and the first half in
        // memory with the rest applied batch by batch (a rebuild that reached its memory budget).
        for (runs, in_memory) in [(records.len(), records.len()), (7, records.len()), (7, records.len() / 2)] {
            let generation = registry::create(&db.pool, &*projection, "batches", registry::Status::Building).await?;
            let mut load = BulkLoad::begin(&db.pool, projection.clone(), &generation).await?.expect("a bulk fold");
            for run in records[..in_memory].chunks(runs) {
                load.push(run).await?;
            }
            let outcome = load.finish(in_memory < records.len()).await?;
            assert_eq!(outcome.records, in_memory as i64);
            assert_eq!(outcome.duplicates + outcome.gaps, 0);
            for batch in records[in_memory..].chunks(5) {
                let outcome = kefu_projections::apply::apply_batch(&db.pool, &*projection, &generation, batch).await?;
                assert_eq!(outcome.applied, batch.len());
            }
            assert_eq!(
                verify::digests(&db.pool, &*projection, &generation).await?,
                digests[0],
                "{}: folded in memory ({in_memory} records in runs of {runs}) equals one batch",
                projection.name()
            );
            assert_eq!(
                indexes(&db.pool, &generation.schema).await?,
                indexes(&db.pool, &batched.schema).await?,
                "{}: the keys and indexes are built again after the load",
                projection.name()
            );
            // Records already applied change nothing (a consumer resuming at stored offsets).
            let outcome = kefu_projections::apply::apply_batch(&db.pool, &*projection, &generation, &records).await?;
            assert_eq!(outcome.duplicates, records.len());
        }
        // A record that does not decode declines the in-memory fold; nothing of it stays, and
        // the batch path (which parks what fails) applies the log to the same generation.
        let generation = registry::create(&db.pool, &*projection, "batches", registry::Status::Building).await?;
        let mut load = BulkLoad::begin(&db.pool, projection.clone(), &generation).await?.unwrap();
        load.push(&records[..10]).await?;
        let garbage =
            kefu_projections::apply::Record { partition: 0, offset: 10_000, payload: b"not an event".to_vec() };
        let declined = load.push(std::slice::from_ref(&garbage)).await;
        assert!(matches!(&declined, Err(ProjectionError::Poison(m)) if m.contains("does not decode")), "{declined:?}");
        load.abandon().await;
        assert!(verify::digests(&db.pool, &*projection, &generation).await?.iter().all(|d| d.rows == 0));
        // An event past its stream's version in the event store (a database restored behind
        // its topic) declines too: the fold may have written that stream out as ended.
        let mut ahead = events.last().expect("events").clone();
        ahead.stream_version += 1;
        ahead.global_position += 1;
        ahead.event_id = Uuid::new_v4();
        let ahead = kefu_projections::apply::Record {
            partition: 0,
            offset: records.len() as i64,
            payload: contract.encode(&ahead).unwrap(),
        };
        let mut load = BulkLoad::begin(&db.pool, projection.clone(), &generation).await?.unwrap();
        load.push(&records).await?;
        let declined = load.push(std::slice::from_ref(&ahead)).await;
        assert!(
            matches!(&declined, Err(ProjectionError::Other(m)) if m.contains("in the event store")),
            "{}: {declined:?}",
            projection.name()
        );
        load.abandon().await;
        assert_eq!(indexes(&db.pool, &generation.schema).await?, indexes(&db.pool, &batched.schema).await?);
        kefu_projections::apply::apply_batch(&db.pool, &*projection, &generation, &records).await?;
        assert_eq!(verify::digests(&db.pool, &*projection, &generation).await?, digests[0]);
    }
    Ok(())
}

/// The keys and indexes of a generation's tables, named without the schema.
async fn indexes(pool: &PgPool, schema: &str) -> anyhow::Result<Vec<String>> {
    let defs: Vec<String> =
        sqlx::query_scalar("SELECT replace(indexdef, $1 || '.', '') FROM pg_indexes WHERE schemaname = $1 ORDER BY 1")
            .bind(schema)
            .fetch_all(pool)
            .await?;
    assert!(!defs.is_empty());
    Ok(defs)
}
