//! Survey handlers and reactions on the in-memory store.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

use kefu_domain::{
    customer::{ClassifyCustomer, CustomerCommand, RecordConsent, examples as customers},
    satisfaction_config::{SatisfactionConfigCommand, examples::complaints},
    service_request::{ServiceRequestCommand as C, examples::t},
    survey::{Survey, examples::answer},
    survey_template::{SurveyTemplateCommand, examples as templates},
    values::{Category, Label, Subject, Text},
    vocab::{Channel, ConsentPurpose, FollowUpKind, Priority, RequestState, RequestType, ValueTier},
};

use super::*;
use crate::{ActorKind, InMemoryEventStore};

fn meta_at(at: &str) -> CommandMeta {
    let mut m = CommandMeta::by(Actor {
        id: "agent.chen".into(),
        name: Some("陈静".into()),
        kind: ActorKind::User,
        roles: vec!["agent".into()],
    });
    m.occurred_at = Some(t(at));
    m
}

struct World {
    store: Arc<InMemoryEventStore>,
    service: CommandService,
    customer: Uuid,
}

impl World {
    /// Reacts to every event after `from` (as the automation would), returning the reactions.
    async fn react_from(&self, from: usize) -> Vec<Reaction> {
        let events = self.store.all();
        let mut out = Vec::new();
        for e in &events[from..] {
            out.push(self.service.react(e).await.unwrap());
        }
        out
    }

    fn count(&self) -> usize {
        self.store.all().len()
    }

    async fn request(&self, category: &str, at: &str) -> Uuid {
        let id = Uuid::now_v7();
        let draft = RequestDraft {
            request_id: id,
            customer_id: self.customer,
            request_type: RequestType::Complaint,
            category: Category::parse("c", category).unwrap(),
            priority: Priority::Normal,
            channel: Channel::Phone,
            subject: Subject::parse("s", "宽带掉线").unwrap(),
            description: None,
            taken_by: None,
            department: Some(Label::parse("d", "网络维护部").unwrap()),
            on_site_required: false,
            external_ref: None,
            tags: vec![],
            origin: None,
        };
        self.service.open_request(draft, meta_at(at)).await.unwrap();
        id
    }

    async fn resolve(&self, id: Uuid, at: &str) {
        let cmd = C::Resolve {
            at: t(at),
            resolution: Text::parse("r", "换了光猫").unwrap(),
            root_cause: Label::parse("r", "product_defect").unwrap(),
            compensation: None,
        };
        self.service.request(id, cmd, meta_at(at)).await.unwrap();
    }
}

async fn world(consent: bool) -> World {
    let store = Arc::new(InMemoryEventStore::new());
    let service = CommandService::new(store.clone()).with_clock(Arc::new(|| t("2030-01-01T00:00:00Z")));
    let (customer, register) = customers::register_person();
    service.customer(CustomerCommand::Register(register), meta_at("2026-01-01T00:00:00Z")).await.unwrap();
    let classify = ClassifyCustomer {
        customer_id: customer,
        value_tier: kefu_domain::Patch::Set(ValueTier::Important),
        ..Default::default()
    };
    service.customer(CustomerCommand::Classify(classify), meta_at("2026-01-01T00:00:00Z")).await.unwrap();
    if consent {
        let c = RecordConsent {
            customer_id: customer,
            purpose: ConsentPurpose::Surveys,
            granted: true,
            channel: Some(Channel::Phone),
            note: None,
        };
        service.customer(CustomerCommand::RecordConsent(c), meta_at("2026-01-01T00:00:00Z")).await.unwrap();
    }
    let template = templates::TEMPLATE_ID;
    service
        .survey_template(
            template,
            SurveyTemplateCommand::Define { template_id: template, content: templates::after_service() },
            meta_at("2026-10-01T00:00:00Z"),
        )
        .await
        .unwrap();
    service
        .survey_template(template, SurveyTemplateCommand::Publish { version: 1 }, meta_at("2026-10-01T00:00:00Z"))
        .await
        .unwrap();
    World { store, service, customer }
}

async fn define(w: &World, policy: kefu_domain::satisfaction_config::DispatchPolicy, at: &str) {
    w.service
        .configure_satisfaction(
            SatisfactionConfigCommand::DefineDispatchPolicy { policy, at: t("2000-01-01T00:00:00Z") },
            meta_at(at),
        )
        .await
        .unwrap();
}

#[tokio::test]
async fn a_resolved_complaint_is_surveyed_once_with_its_context() {
    let w = world(true).await;
    define(&w, complaints(), "2026-11-01T00:00:00Z").await;
    let before_policy = w.request("宽带/掉线", "2026-10-20T00:00:00Z").await;
    w.resolve(before_policy, "2026-10-25T00:00:00Z").await;
    let id = w.request("宽带/掉线", "2026-11-02T00:00:00Z").await;
    w.service
        .request(
            id,
            C::Assign {
                at: t("2026-11-02T01:00:00Z"),
                assignee: Some(kefu_domain::values::StaffRef {
                    id: kefu_domain::values::StaffId::parse("a", "eng.li").unwrap(),
                    name: None,
                }),
                department: None,
                reason: None,
            },
            meta_at("2026-11-02T01:00:00Z"),
        )
        .await
        .unwrap();
    let from = w.count();
    w.resolve(id, "2026-11-02T05:00:00Z").await;
    let reactions = w.react_from(0).await;
    let done: Vec<_> = reactions.iter().filter(|r| matches!(r, Reaction::Done { .. })).collect();
    assert_eq!(done.len(), 1, "{reactions:?}");

    let survey_id = survey_id_for_request(id);
    let (survey, _, _) = w.service.load::<Survey>(survey_id).await.unwrap();
    let sent = survey.sent.unwrap();
    assert_eq!(sent.sent_at, t("2026-11-02T05:00:00Z"), "sent at the resolution's business time");
    assert_eq!(sent.expires_at, t("2026-11-09T05:00:00Z"));
    assert_eq!(sent.reminders, [t("2026-11-03T05:00:00Z"), t("2026-11-05T05:00:00Z")]);
    assert_eq!(sent.channel, Channel::Sms);
    assert_eq!(sent.context.agent.unwrap().id.as_str(), "eng.li", "the assignee served");
    assert_eq!(sent.context.department.unwrap().as_str(), "网络维护部");
    assert_eq!(sent.context.customer_tier, Some(ValueTier::Important));
    assert_eq!(sent.template_version, 1);
    // Caused by the resolution, in its conversation.
    let recorded = w.store.all().into_iter().find(|e| e.stream_id == survey_id).unwrap();
    let resolved = &w.store.all()[from];
    assert_eq!(recorded.causation_id, resolved.event_id);
    assert_eq!(recorded.correlation_id, resolved.correlation_id);
    assert_eq!(recorded.actor.id, "system:survey-dispatch");

    // Replaying the whole log again records nothing.
    let n = w.count();
    w.react_from(0).await;
    assert_eq!(w.count(), n);
    // Nor after the policy changed (a rebuild of the automation months later): the resolution
    // still reports the survey that was sent, rather than a new decision under the same id.
    let mut changed = complaints();
    changed.channel = Some(Channel::Email);
    define(&w, changed, "2026-11-10T00:00:00Z").await;
    let n = w.count();
    let replayed = w.react_from(0).await;
    assert_eq!(w.count(), n);
    assert_eq!(replayed[from], Reaction::Done { what: "survey sent".into(), stream_id: survey_id }, "{replayed:?}");
    // The same as one batch, the journal read once for all of it (as the automation does).
    let events = w.store.all();
    let batch: Vec<&RecordedEvent> = events.iter().collect();
    let taken = w.service.taken_steps(&batch).await.unwrap();
    let mut in_batch = Vec::new();
    for e in &batch {
        in_batch.push(w.service.react_knowing(e, &taken).await.unwrap());
    }
    assert_eq!(w.count(), n, "a batch replay recorded something");
    assert_eq!(in_batch[..replayed.len()], replayed[..], "a batch replay reports what one-by-one replays do");
    // The request before the policy was never surveyed.
    assert!(w.service.load::<Survey>(survey_id_for_request(before_policy)).await.unwrap().0.sent.is_none());
}

#[tokio::test]
async fn no_consent_no_survey_when_the_policy_requires_it() {
    let w = world(false).await;
    define(&w, complaints(), "2026-11-01T00:00:00Z").await;
    let id = w.request("宽带/掉线", "2026-11-02T00:00:00Z").await;
    let from = w.count();
    w.resolve(id, "2026-11-02T05:00:00Z").await;
    let reactions = w.react_from(from).await;
    assert!(matches!(&reactions[0], Reaction::Skipped(why) if why.contains("not consented")), "{reactions:?}");
}

#[tokio::test]
async fn a_detractor_gets_one_follow_up_request_which_closes_the_loop_when_resolved() {
    let w = world(true).await;
    let mut policy = complaints();
    policy.follow_up.as_mut().unwrap().action = FollowUpKind::ServiceRequest;
    define(&w, policy, "2026-11-01T00:00:00Z").await;
    let id = w.request("宽带/掉线", "2026-11-02T00:00:00Z").await;
    w.resolve(id, "2026-11-02T05:00:00Z").await;
    w.react_from(0).await;
    let survey_id = survey_id_for_request(id);

    let from = w.count();
    w.service
        .record_survey_response(
            survey_id,
            vec![answer("q_overall", 1), answer("q_nps", 2)],
            false,
            None,
            meta_at("2026-11-03T08:00:00Z"),
        )
        .await
        .unwrap();
    let reactions = w.react_from(from).await;
    assert_eq!(reactions.iter().filter(|r| matches!(r, Reaction::Done { .. })).count(), 1, "{reactions:?}");
    let follow_up = follow_up_request_id(survey_id);
    let (request, _, _) = w.service.load::<ServiceRequest>(follow_up).await.unwrap();
    let filed = request.filed.clone().unwrap();
    assert_eq!(filed.origin, Some(RequestOrigin { survey_id, request_id: Some(id) }));
    assert_eq!(filed.priority, Priority::High);
    assert_eq!(filed.owner.id.as_str(), "agent.chen", "the agent who served follows up");
    assert!(filed.subject.as_str().contains("q_overall = 1"), "{}", filed.subject);
    // Reacting again (a replay) opens nothing more; a second unhappy answer neither.
    let n = w.count();
    w.react_from(from).await;
    assert_eq!(w.count(), n);
    let from = w.count();
    w.service
        .record_survey_response(survey_id, vec![answer("q_overall", 1)], false, None, meta_at("2026-11-03T09:00:00Z"))
        .await
        .unwrap();
    w.react_from(from).await;
    assert_eq!(w.count(), from + 1, "only the response itself");

    // The follow-up request is resolved: the survey's follow-up is completed, and the
    // follow-up request itself is not surveyed.
    let from = w.count();
    w.resolve(follow_up, "2026-11-04T08:00:00Z").await;
    let reactions = w.react_from(from).await;
    assert!(
        matches!(&reactions[0], Reaction::Done { what, .. } if what.contains("follow-up completed")),
        "{reactions:?}"
    );
    let (survey, _, _) = w.service.load::<Survey>(survey_id).await.unwrap();
    let done = survey.follow_up_done.unwrap();
    assert!(done.contacted);
    assert!(done.outcome.as_str().contains("换了光猫"));
    assert!(w.service.load::<Survey>(survey_id_for_request(follow_up)).await.unwrap().0.sent.is_none());
    let (follow_up_state, _, _) = w.service.load::<ServiceRequest>(follow_up).await.unwrap();
    assert_eq!(follow_up_state.state(), RequestState::Resolved);
}

#[tokio::test]
async fn sending_by_hand_checks_template_audience_and_request() {
    let w = world(true).await;
    let draft = SurveyDraft {
        survey_id: None,
        template_id: templates::TEMPLATE_ID,
        template_version: None,
        customer_id: w.customer,
        request_id: None,
        department: None,
        trigger: SurveyTrigger::Manual,
        campaign: None,
        policy_id: None,
        channel: Some(Channel::Email),
        expires_after_hours: 72,
        remind_after_hours: vec![24],
        follow_up: None,
        require_consent: false,
    };
    let sent = w.service.send_survey(draft.clone(), meta_at("2026-11-05T00:00:00Z")).await.unwrap();
    assert_eq!(sent.event_count, 1);
    // An unpublished version, a missing template, a department as an outside customer.
    let err = w
        .service
        .send_survey(SurveyDraft { template_version: Some(2), ..draft.clone() }, meta_at("2026-11-05T00:00:00Z"))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("not published"), "{err}");
    let err = w
        .service
        .send_survey(SurveyDraft { template_id: Uuid::now_v7(), ..draft.clone() }, meta_at("2026-11-05T00:00:00Z"))
        .await
        .unwrap_err();
    assert!(matches!(err, AppError::Domain(DomainError::NotFound { .. })), "{err}");
    let (dept, register) = customers::register_department();
    w.service.customer(CustomerCommand::Register(register), meta_at("2026-01-01T00:00:00Z")).await.unwrap();
    let err = w
        .service
        .send_survey(SurveyDraft { customer_id: dept, ..draft.clone() }, meta_at("2026-11-05T00:00:00Z"))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("internal template"), "{err}");
    // A policy cannot name an unpublished template.
    let mut policy = complaints();
    policy.template_id = Uuid::now_v7();
    let err = w
        .service
        .configure_satisfaction(
            SatisfactionConfigCommand::DefineDispatchPolicy { policy, at: t("2026-01-01T00:00:00Z") },
            meta_at("2026-11-01T00:00:00Z"),
        )
        .await
        .unwrap_err();
    assert!(matches!(err, AppError::Domain(DomainError::NotFound { .. })), "{err}");
}
