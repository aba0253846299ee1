//! The survey automation and the satisfaction read model on a real PostgreSQL and a real
//! broker: resolved requests get surveys, answers become indices equal to hand-computed
//! figures, a dissatisfied answer opens exactly one follow-up request whose resolution closes
//! the loop, and a rebuild of the satisfaction read model from Kafka gives identical rows and
//! indices.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::{sync::Arc, time::Duration};

use kefu_app::{Actor, ActorKind, CommandMeta, CommandService, service_requests::RequestDraft, surveys::SurveyDraft};
use kefu_bus::{
    BusConfig,
    relay::{Relay, RelayOptions},
};
use kefu_domain::{
    customer::{CustomerCommand, examples as customers},
    satisfaction_config::{DispatchPolicy, DispatchSelector, SatisfactionConfigCommand},
    service_request::{ServiceRequest, ServiceRequestCommand as C},
    survey::{FollowUpRule, Survey, examples::answer, follow_up_request_id, survey_id_for_request},
    survey_template::{SurveyTemplateCommand, examples as templates},
    values::{Category, Label, Name, StaffId, StaffRef, Subject, Text},
    vocab::{Channel, FollowUpKind, Priority, RequestType, SurveyTrigger},
};
use kefu_projections::{
    Projection, progress, registry,
    runner::{ProjectionRunner, RunnerOptions, SwitchPolicy, rebuild},
    satisfaction::{self as sat, IndexDimension, IndexFilter},
    verify,
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

fn run(p: Arc<dyn Projection>, pool: &PgPool, bus: &BusConfig) -> Running {
    let runner =
        ProjectionRunner::new(pool.clone(), bus.clone(), p, RunnerOptions { max_batch: 5, ..Default::default() });
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
}

fn agent(id: &str) -> CommandMeta {
    CommandMeta::by(Actor { id: id.into(), name: None, kind: ActorKind::User, roles: vec!["agent".into()] })
}

fn staff(id: &str) -> StaffRef {
    StaffRef { id: StaffId::parse("s", id).unwrap(), name: None }
}

async fn caught_up(pool: &PgPool, name: &str) -> anyhow::Result<()> {
    let head: i64 = sqlx::query_scalar("SELECT position FROM event_store.log_head").fetch_one(pool).await?;
    let (ok, through) = progress::wait_for(pool, name, head, Duration::from_secs(60)).await?;
    anyhow::ensure!(ok, "{name} stuck at {through} of {head}");
    Ok(())
}

async fn resolve(service: &CommandService, id: Uuid) -> anyhow::Result<()> {
    let cmd = C::Resolve {
        at: chrono::Utc::now(),
        resolution: Text::parse("r", "已处理").unwrap(),
        root_cause: Label::parse("r", "service_attitude").unwrap(),
        compensation: None,
    };
    service.request(id, cmd, agent("agent.x")).await?;
    Ok(())
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() < 1e-6
}

#[tokio::test]
async fn surveys_flow_into_indices_close_the_loop_and_replay_identically() -> anyhow::Result<()> {
    kefu_testkit::init_tracing();
    let db = kefu_testkit::fresh_database().await?;
    migrate::run(&db.pool).await?;
    kefu_projections::migrate(&db.pool).await?;
    let store = PgEventStore::new(db.pool.clone());
    let service = CommandService::new(Arc::new(store.clone()));
    let mut bus = BusConfig::new(kefu_testkit::brokers()?).with_topic(kefu_testkit::unique_topic("sat"));
    bus.partitions = 3;

    let relay = Relay::new(store.clone(), bus.clone(), RelayOptions::default())?;
    let (relay_tx, relay_rx) = oneshot::channel::<()>();
    let relay = Running(
        Some(relay_tx),
        tokio::spawn(async move {
            relay
                .run(async {
                    let _ = relay_rx.await;
                })
                .await
                .unwrap()
        }),
    );
    let satisfaction: Arc<dyn Projection> = Arc::new(sat::Satisfaction);
    let projector = run(satisfaction.clone(), &db.pool, &bus);
    let automation = run(kefu_automations::all(&service).remove(0), &db.pool, &bus);

    // A published template and a policy: every resolved request, follow-ups as requests.
    let template = templates::TEMPLATE_ID;
    service
        .survey_template(
            template,
            SurveyTemplateCommand::Define { template_id: template, content: templates::after_service() },
            agent("sup.wang"),
        )
        .await?;
    service.survey_template(template, SurveyTemplateCommand::Publish { version: 1 }, agent("sup.wang")).await?;
    let policy = DispatchPolicy {
        policy_id: Uuid::now_v7(),
        name: Name::parse("n", "每单回访").unwrap(),
        template_id: template,
        trigger: SurveyTrigger::OnResolved,
        selector: DispatchSelector::default(),
        sampling_percent: 100,
        channel: Some(Channel::Sms),
        expires_after_hours: 72,
        remind_after_hours: vec![24],
        require_consent: false,
        follow_up: Some(FollowUpRule {
            likert_below: 3,
            detractors: true,
            action: FollowUpKind::ServiceRequest,
            due_hours: 24,
            priority: Priority::High,
        }),
        precedence: 0,
    };
    service
        .configure_satisfaction(
            SatisfactionConfigCommand::DefineDispatchPolicy { policy, at: chrono::Utc::now() },
            agent("sup.wang"),
        )
        .await?;

    // Four requests: departments A and B, agents x and y.
    let (customer, register) = customers::register_person();
    service.customer(CustomerCommand::Register(register), agent("agent.x")).await?;
    let mut requests = Vec::new();
    for (dept, who) in [("A", "agent.x"), ("A", "agent.y"), ("B", "agent.x"), ("B", "agent.y")] {
        let id = Uuid::now_v7();
        let draft = RequestDraft {
            request_id: id,
            customer_id: customer,
            request_type: RequestType::Complaint,
            category: Category::parse("c", "宽带/掉线").unwrap(),
            priority: Priority::Normal,
            channel: Channel::Phone,
            subject: Subject::parse("s", "掉线").unwrap(),
            description: None,
            taken_by: Some(staff(who)),
            department: Some(Label::parse("d", dept).unwrap()),
            on_site_required: false,
            external_ref: None,
            tags: vec![],
            origin: None,
        };
        service.open_request(draft, agent(who)).await?;
        resolve(&service, id).await?;
        requests.push(id);
    }
    caught_up(&db.pool, kefu_automations::SURVEY_AUTOMATION).await?;
    let surveys: Vec<Uuid> = requests.iter().map(|r| survey_id_for_request(*r)).collect();
    for s in &surveys {
        assert!(service.load::<Survey>(*s).await?.0.sent.is_some(), "the automation sent a survey about each request");
    }

    // Answers (attitude, its expectation, speed, solved, overall, NPS, effort).
    let answers = [[5, 4, 4, 1, 5, 10, 7], [4, 5, 3, 1, 4, 8, 5], [2, 5, 2, 0, 2, 3, 2]];
    let questions = ["q_attitude", "q_attitude_expected", "q_speed", "q_solved", "q_overall", "q_nps", "q_effort"];
    for (survey, values) in surveys.iter().zip(answers) {
        let a = questions.iter().zip(values).map(|(q, v)| answer(q, v)).collect();
        service.record_survey_response(*survey, a, true, None, agent("agent.x")).await?;
    }
    caught_up(&db.pool, kefu_automations::SURVEY_AUTOMATION).await?;

    // Exactly one follow-up: a linked request for the unhappy third survey.
    let follow_up = follow_up_request_id(surveys[2]);
    let (request, _, _) = service.load::<ServiceRequest>(follow_up).await?;
    let filed = request.filed.expect("the follow-up request was opened");
    assert_eq!(filed.origin.unwrap().survey_id, surveys[2]);
    assert_eq!(filed.owner.id.as_str(), "agent.x", "the agent who served follows up");
    for s in [surveys[0], surveys[1]] {
        assert!(service.load::<ServiceRequest>(follow_up_request_id(s)).await?.0.filed.is_none());
    }
    resolve(&service, follow_up).await?;
    caught_up(&db.pool, kefu_automations::SURVEY_AUTOMATION).await?;
    assert!(service.load::<Survey>(surveys[2]).await?.0.follow_up_done.is_some(), "the loop is closed");
    assert!(
        service.load::<Survey>(survey_id_for_request(follow_up)).await?.0.sent.is_none(),
        "the follow-up request is not surveyed"
    );

    caught_up(&db.pool, sat::NAME).await?;
    let mut tx = kefu_projections::read(&db.pool, sat::NAME).await?;
    let all = sat::satisfaction_index(&mut tx, &IndexFilter::default(), &[], "UTC").await?;
    assert_eq!(all.len(), 1);
    let g = &all[0];
    let ix = &g.indices;
    assert_eq!(ix.responses, 3);
    assert_eq!((ix.csat.hits, ix.csat.total), (2, 3));
    assert_eq!((ix.nps.promoters, ix.nps.passives, ix.nps.detractors), (1, 1, 1));
    assert_eq!(ix.nps.score(), Some(0.0));
    assert!(close(ix.ces.unwrap(), 14.0 / 3.0));
    let attitude = ix.dimensions.iter().find(|d| d.dimension == "attitude").unwrap();
    assert!(close(attitude.mean.unwrap(), 11.0 / 3.0));
    assert!(close(attitude.gap.unwrap(), -1.0));
    // Leaves: attitude (100, 75, 25 → 66.67) ·.375, speed (75, 50, 25 → 50) ·.375, solved (100, 100, 0 →
    // 66.67) ·.25 = 60.4167.
    assert!(
        close(ix.composite.unwrap(), 0.375 * 200.0 / 3.0 + 0.375 * 50.0 + 0.25 * 200.0 / 3.0),
        "{:?}",
        ix.composite
    );
    assert_eq!((g.surveys_sent, g.surveys_answered), (4, 3), "the follow-up request was not surveyed");
    assert_eq!(g.response_rate(), Some(75.0));

    let by_department =
        sat::satisfaction_index(&mut tx, &IndexFilter::default(), &[IndexDimension::Department], "UTC").await?;
    let dept = |name: &str| by_department.iter().find(|g| g.keys[0].1 == name).unwrap();
    assert_eq!(dept("A").indices.csat.percent(), Some(100.0));
    assert_eq!(dept("B").indices.csat.percent(), Some(0.0));
    assert_eq!(dept("B").response_rate(), Some(50.0));
    let by_agent = sat::satisfaction_index(&mut tx, &IndexFilter::default(), &[IndexDimension::Agent], "UTC").await?;
    assert_eq!(by_agent.iter().map(|g| g.keys[0].1.as_str()).collect::<Vec<_>>(), ["agent.x", "agent.y"]);
    let only_b = IndexFilter { departments: vec!["B".into()], ..Default::default() };
    assert_eq!(sat::satisfaction_index(&mut tx, &only_b, &[], "UTC").await?[0].indices.responses, 1);
    let reasons = sat::top_dissatisfaction(
        &mut tx,
        "EXTERNAL",
        chrono::Utc::now() - chrono::Duration::days(1),
        chrono::Utc::now() + chrono::Duration::days(1),
        10,
    )
    .await?;
    assert_eq!(reasons.len(), 3, "{reasons:?}");
    assert!(reasons.iter().all(|r| r.dissatisfied == 1 && r.answers == 3));
    let trajectory = sat::customer_trajectory(&mut tx, customer).await?;
    assert_eq!(trajectory.len(), 3);
    assert_eq!(trajectory[2].indices.csat.percent(), Some(0.0));
    drop(tx);

    // A rebuild of the satisfaction read model from Kafka equals it, row for row and index
    // for index.
    let live = registry::active(&db.pool, sat::NAME).await?.unwrap();
    let report =
        rebuild(&db.pool, &bus, satisfaction.clone(), &RunnerOptions::default(), SwitchPolicy::Always, |_| {}).await?;
    let old = registry::get(&db.pool, sat::NAME, live.generation).await?.unwrap();
    assert_eq!(
        verify::digests(&db.pool, &*satisfaction, &old).await?,
        verify::digests(&db.pool, &*satisfaction, &report.generation).await?
    );
    let mut tx = kefu_projections::read(&db.pool, sat::NAME).await?;
    let again = sat::satisfaction_index(&mut tx, &IndexFilter::default(), &[IndexDimension::Department], "UTC").await?;
    assert_eq!(again, by_department);
    drop(tx);

    // By hand: a campaign survey to the same customer (not about a request).
    let manual = SurveyDraft {
        survey_id: Some(Uuid::now_v7()),
        template_id: template,
        template_version: None,
        customer_id: customer,
        request_id: None,
        department: None,
        trigger: SurveyTrigger::Campaign,
        campaign: Some(Label::parse("c", "2026Q4").unwrap()),
        policy_id: None,
        channel: Some(Channel::Email),
        expires_after_hours: 24,
        remind_after_hours: vec![],
        follow_up: None,
        require_consent: false,
    };
    assert_eq!(service.send_survey(manual, agent("sup.wang")).await?.event_count, 1);

    // A rebuild of the automation from Kafka re-decides every reaction: it records nothing
    // twice, and its reactions table equals the live one row for row.
    caught_up(&db.pool, kefu_automations::SURVEY_AUTOMATION).await?;
    let head = || sqlx::query_scalar::<_, i64>("SELECT position FROM event_store.log_head").fetch_one(&db.pool);
    let before = head().await?;
    let live = registry::active(&db.pool, kefu_automations::SURVEY_AUTOMATION).await?.unwrap();
    let again = kefu_automations::all(&service).remove(0);
    let report =
        rebuild(&db.pool, &bus, again.clone(), &RunnerOptions::default(), SwitchPolicy::Always, |_| {}).await?;
    assert_eq!(head().await?, before, "a rebuild of the automation appended events");
    let old = registry::get(&db.pool, kefu_automations::SURVEY_AUTOMATION, live.generation).await?.unwrap();
    let (a, b) = (
        verify::digests(&db.pool, &*again, &old).await?,
        verify::digests(&db.pool, &*again, &report.generation).await?,
    );
    if a != b {
        let rows = |schema: String| {
            sqlx::query_as::<_, (String, bool, String)>(sqlx::AssertSqlSafe(format!(
                "SELECT event_type, done, what FROM {schema}.reactions ORDER BY global_position"
            )))
            .fetch_all(&db.pool)
        };
        panic!(
            "reactions differ:\nlive    {:?}\nrebuilt {:?}",
            rows(old.schema.clone()).await?,
            rows(report.generation.schema.clone()).await?
        );
    }
    assert!(
        matches!(report.comparison, Some(verify::Comparison::Identical { rows, .. }) if rows > 0),
        "{:?}",
        report.comparison
    );

    automation.stop().await;
    projector.stop().await;
    relay.stop().await;
    Ok(())
}
