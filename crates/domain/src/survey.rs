//! A survey sent to one respondent (客户满意度调查): who it asks, about which service, with
//! which template version, until when; the answers; reminders and expiry; and the closed loop
//! — a dissatisfied answer opens exactly one follow-up so no dissatisfied customer is left
//! without contact (DOMAIN.md "Satisfaction", 篇4).
//!
//! The survey records the context of the service at the time it was sent (request, agent,
//! department, channel, customer tier and segment), so indices attribute answers to what
//! was true then, not to what is true when someone reads them. A survey about a request has
//! an id derived from the request's id: there is never a second survey for the same request.

use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::{
    Aggregate, DomainError, event_family,
    survey_template::SurveyTemplateContent,
    values::{Category, Label, StaffRef, Text},
    vocab::{
        Channel, FollowUpKind, LifecycleSegment, Priority, QuestionKind, RequestType, ResubmissionRule, SurveyAudience,
        SurveyTrigger, ValueTier,
    },
};

/// The id of the survey about a request (one per request, whatever sends it).
pub fn survey_id_for_request(request_id: Uuid) -> Uuid {
    Uuid::new_v5(&request_id, b"kefu:survey")
}

/// The id of the service request a survey's follow-up opens, when it opens one.
pub fn follow_up_request_id(survey_id: Uuid) -> Uuid {
    Uuid::new_v5(&survey_id, b"kefu:follow-up")
}

/// What the survey is about, as it was when it was sent.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SurveyContext {
    /// The service request.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_id: Option<Uuid>,
    /// Its type.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_type: Option<RequestType>,
    /// Its category.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub category: Option<Category>,
    /// The channel the request came in through.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_channel: Option<Channel>,
    /// The agent who served (assignee, else owner).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent: Option<StaffRef>,
    /// The department evaluated (the request's department; for internal surveys, the
    /// department that served).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub department: Option<Label>,
    /// The customer's value tier then.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub customer_tier: Option<ValueTier>,
    /// The customer's lifecycle segment then.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub customer_segment: Option<LifecycleSegment>,
}

/// When an answer counts as dissatisfied and what is done about it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FollowUpRule {
    /// A 1–5 perception answer below this (2–5) is dissatisfied: 3 means 1 or 2.
    pub likert_below: u32,
    /// An NPS answer of 0–6 (a detractor) is dissatisfied.
    pub detractors: bool,
    /// What follows.
    pub action: FollowUpKind,
    /// Hours until the follow-up is due.
    pub due_hours: u32,
    /// Priority of the service request a `SERVICE_REQUEST` follow-up opens.
    pub priority: Priority,
}

impl FollowUpRule {
    /// Checks the rule.
    pub fn validate(&self, field: &str) -> Result<(), DomainError> {
        if !(2..=5).contains(&self.likert_below) {
            return Err(DomainError::invalid(format!("{field}.likertBelow"), "between 2 and 5"));
        }
        if !(1..=24 * 30).contains(&self.due_hours) {
            return Err(DomainError::invalid(format!("{field}.dueHours"), "between 1 hour and 30 days"));
        }
        Ok(())
    }
}

/// Send a survey.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SendSurvey {
    /// Id (for a request: [`survey_id_for_request`]).
    pub survey_id: Uuid,
    /// The template.
    pub template_id: Uuid,
    /// Its published version.
    pub template_version: u32,
    /// Customers or internal departments (from the template).
    pub audience: SurveyAudience,
    /// Who is asked.
    pub customer_id: Uuid,
    /// About what.
    pub context: SurveyContext,
    /// Why.
    pub trigger: SurveyTrigger,
    /// The campaign, for campaign surveys.
    pub campaign: Option<Label>,
    /// The dispatch policy that sent it.
    pub policy_id: Option<Uuid>,
    /// How it reaches the respondent.
    pub channel: Channel,
    /// When it was sent.
    pub at: DateTime<Utc>,
    /// After this it takes no answers.
    pub expires_at: DateTime<Utc>,
    /// When to remind a respondent who has not answered.
    pub reminders: Vec<DateTime<Utc>>,
    /// The closed-loop rule (none: no automatic follow-up).
    pub follow_up: Option<FollowUpRule>,
}

/// One answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Answer {
    /// The question's code.
    pub question: Label,
    /// The value for scored questions (yes = 1, no = 0).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<i32>,
    /// The text for free-text questions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<Text>,
}

/// Commands on a survey.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum SurveyCommand {
    /// See [`SendSurvey`].
    Send(Box<SendSurvey>),
    /// Remind the respondent if a reminder is due.
    Remind {
        /// Now.
        at: DateTime<Utc>,
    },
    /// Record a response: every answer given so far (a later response replaces an earlier
    /// partial one; a second complete one follows the template's resubmission rule).
    RecordResponse {
        /// When it was given.
        at: DateTime<Utc>,
        /// The answers.
        answers: Vec<Answer>,
        /// Whether the respondent finished.
        complete: bool,
        /// How it was given, when not the channel it was sent through.
        channel: Option<Channel>,
        /// The template version the survey was sent with (the handler supplies it).
        template: Box<SurveyTemplateContent>,
    },
    /// Stop taking answers.
    Expire {
        /// When.
        at: DateTime<Utc>,
        /// Why (by hand).
        reason: Option<Text>,
        /// By hand (any time before a complete response) or by the scheduler (only once the
        /// expiry time has passed).
        manual: bool,
    },
    /// Record that the dissatisfied respondent was followed up.
    CompleteFollowUp {
        /// When.
        at: DateTime<Utc>,
        /// What came of it.
        outcome: Text,
        /// Whether the respondent was reached.
        contacted: bool,
        /// Who did it.
        by: Option<StaffRef>,
    },
}

/// A survey went out.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SurveySent {
    /// Id.
    pub survey_id: Uuid,
    /// The template.
    pub template_id: Uuid,
    /// Its version.
    pub template_version: u32,
    /// Customers or internal departments.
    pub audience: SurveyAudience,
    /// Who is asked.
    pub customer_id: Uuid,
    /// About what, as it was then.
    pub context: SurveyContext,
    /// Why.
    pub trigger: SurveyTrigger,
    /// Campaign.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub campaign: Option<Label>,
    /// The dispatch policy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy_id: Option<Uuid>,
    /// How it reaches the respondent.
    pub channel: Channel,
    /// When.
    pub sent_at: DateTime<Utc>,
    /// Until when it takes answers.
    pub expires_at: DateTime<Utc>,
    /// Reminder times.
    #[serde(default)]
    pub reminders: Vec<DateTime<Utc>>,
    /// The closed-loop rule.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub follow_up: Option<FollowUpRule>,
}

/// The respondent was reminded.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SurveyReminderSent {
    /// When.
    pub at: DateTime<Utc>,
    /// Which reminder (1, 2, …).
    pub number: u32,
}

/// A response was recorded.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SurveyResponseRecorded {
    /// When it was given.
    pub at: DateTime<Utc>,
    /// Every answer of the response.
    pub answers: Vec<Answer>,
    /// Finished.
    pub complete: bool,
    /// It replaces an earlier complete response (which no longer counts).
    #[serde(default)]
    pub supersedes: bool,
    /// How it was given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub channel: Option<Channel>,
}

/// The survey no longer takes answers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SurveyExpired {
    /// When.
    pub at: DateTime<Utc>,
    /// Why, when ended by hand.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<Text>,
}

/// A dissatisfied answer opened a follow-up.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SurveyFollowUpOpened {
    /// When.
    pub at: DateTime<Utc>,
    /// Which answers were dissatisfied.
    pub reason: Text,
    /// What follows.
    pub action: FollowUpKind,
    /// Who is to contact the respondent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub assignee: Option<StaffRef>,
    /// The department responsible.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub department: Option<Label>,
    /// By when.
    pub due_at: DateTime<Utc>,
    /// The service request that carries it (`SERVICE_REQUEST` follow-ups).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_id: Option<Uuid>,
    /// Its priority.
    pub priority: Priority,
}

/// The follow-up was done.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SurveyFollowUpCompleted {
    /// When.
    pub at: DateTime<Utc>,
    /// What came of it.
    pub outcome: Text,
    /// Whether the respondent was reached.
    pub contacted: bool,
    /// Who did it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub by: Option<StaffRef>,
}

event_family! {
    /// Facts recorded on a survey stream.
    pub enum SurveyEvent {
        SurveySent,
        SurveyReminderSent,
        SurveyResponseRecorded,
        SurveyExpired,
        SurveyFollowUpOpened,
        SurveyFollowUpCompleted,
    }
}

/// A survey as it stands.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Survey {
    /// What was sent.
    pub sent: Option<SurveySent>,
    /// Reminders sent.
    pub reminders_sent: u32,
    /// The response that counts.
    pub response: Option<SurveyResponseRecorded>,
    /// Responses recorded (including replaced ones).
    pub responses: u32,
    /// When it stopped taking answers.
    pub expired_at: Option<DateTime<Utc>>,
    /// The follow-up, once opened.
    pub follow_up: Option<SurveyFollowUpOpened>,
    /// Its completion.
    pub follow_up_done: Option<SurveyFollowUpCompleted>,
}

impl Survey {
    /// Whether a complete response is in.
    pub fn answered(&self) -> bool {
        self.response.as_ref().is_some_and(|r| r.complete)
    }

    fn sent(&self) -> Result<&SurveySent, DomainError> {
        self.sent.as_ref().ok_or_else(|| DomainError::NotFound { entity: "survey", id: String::new() })
    }
}

/// Checks answers against the template; returns them in question order.
pub fn check_answers(
    template: &SurveyTemplateContent,
    answers: &[Answer],
    complete: bool,
) -> Result<Vec<Answer>, DomainError> {
    if answers.is_empty() {
        return Err(DomainError::invalid("answers", "a response has at least one answer"));
    }
    for (i, a) in answers.iter().enumerate() {
        let field = format!("answers[{i}]");
        let Some(q) = template.question(a.question.as_str()) else {
            return Err(DomainError::invalid(
                format!("{field}.question"),
                format!("`{}` is not a question of this survey", a.question),
            ));
        };
        if answers[..i].iter().any(|o| o.question == a.question) {
            return Err(DomainError::invalid(
                format!("{field}.question"),
                format!("`{}` is answered twice", a.question),
            ));
        }
        match q.kind.range() {
            Some((lo, hi)) => {
                let Some(v) = a.value else {
                    return Err(DomainError::invalid(format!("{field}.value"), format!("`{}` needs a value", q.code)));
                };
                if !(lo..=hi).contains(&v) {
                    return Err(DomainError::invalid(
                        format!("{field}.value"),
                        format!("`{}` is answered {lo} to {hi}, not {v}", q.code),
                    ));
                }
                if a.text.is_some() {
                    return Err(DomainError::invalid(format!("{field}.text"), format!("`{}` takes no text", q.code)));
                }
            }
            None => {
                if a.text.is_none() || a.value.is_some() {
                    return Err(DomainError::invalid(
                        format!("{field}.text"),
                        format!("`{}` is answered with text only", q.code),
                    ));
                }
            }
        }
    }
    if complete {
        let missing: Vec<&str> = template
            .questions
            .iter()
            .filter(|q| q.required && !answers.iter().any(|a| a.question == q.code))
            .map(|q| q.code.as_str())
            .collect();
        if !missing.is_empty() {
            return Err(DomainError::invalid(
                "answers",
                format!("a complete response answers every required question; missing: {}", missing.join(", ")),
            ));
        }
    }
    let mut ordered = answers.to_vec();
    ordered.sort_by_key(|a| template.questions.iter().position(|q| q.code == a.question));
    Ok(ordered)
}

/// The dissatisfied answers of a response under a rule, described for people.
pub fn dissatisfaction(template: &SurveyTemplateContent, answers: &[Answer], rule: &FollowUpRule) -> Vec<String> {
    let mut found = Vec::new();
    for a in answers {
        let (Some(q), Some(v)) = (template.question(a.question.as_str()), a.value) else { continue };
        let bad = match q.kind {
            QuestionKind::Likert5 => q.expectation_of.is_none() && v < rule.likert_below as i32,
            QuestionKind::Nps0To10 => rule.detractors && v <= 6,
            _ => false,
        };
        if bad {
            found.push(format!("{} = {v}", q.code));
        }
    }
    found
}

impl Aggregate for Survey {
    const STREAM_TYPE: &'static str = "survey";
    type Command = SurveyCommand;
    type Event = SurveyEvent;

    fn decide(&self, command: &SurveyCommand) -> Result<Vec<SurveyEvent>, DomainError> {
        match command {
            SurveyCommand::Send(c) => {
                if self.sent.is_some() {
                    return Err(DomainError::AlreadyExists { entity: "survey", id: c.survey_id.to_string() });
                }
                if c.expires_at <= c.at {
                    return Err(DomainError::invalid("expiresAt", "a survey expires after it is sent"));
                }
                for (i, r) in c.reminders.iter().enumerate() {
                    if *r <= c.at || *r >= c.expires_at || (i > 0 && *r <= c.reminders[i - 1]) {
                        return Err(DomainError::invalid(
                            format!("reminders[{i}]"),
                            "reminders fall between sending and expiry, in order",
                        ));
                    }
                }
                if let Some(rule) = &c.follow_up {
                    rule.validate("followUp")?;
                }
                Ok(vec![
                    SurveySent {
                        survey_id: c.survey_id,
                        template_id: c.template_id,
                        template_version: c.template_version,
                        audience: c.audience,
                        customer_id: c.customer_id,
                        context: c.context.clone(),
                        trigger: c.trigger,
                        campaign: c.campaign.clone(),
                        policy_id: c.policy_id,
                        channel: c.channel,
                        sent_at: c.at,
                        expires_at: c.expires_at,
                        reminders: c.reminders.clone(),
                        follow_up: c.follow_up,
                    }
                    .into(),
                ])
            }
            SurveyCommand::Remind { at } => {
                let sent = self.sent()?;
                if self.expired_at.is_some() || self.answered() || *at >= sent.expires_at {
                    return Ok(vec![]);
                }
                match sent.reminders.get(self.reminders_sent as usize) {
                    Some(due) if due <= at => {
                        Ok(vec![SurveyReminderSent { at: *at, number: self.reminders_sent + 1 }.into()])
                    }
                    _ => Ok(vec![]),
                }
            }
            SurveyCommand::RecordResponse { at, answers, complete, channel, template } => {
                let sent = self.sent()?;
                if self.expired_at.is_some() || *at > sent.expires_at {
                    return Err(DomainError::rejected(
                        "survey_expired",
                        format!("the survey expired at {}; it takes no more answers", sent.expires_at.to_rfc3339()),
                    ));
                }
                if *at < sent.sent_at {
                    return Err(DomainError::invalid(
                        "occurredAt",
                        "a response cannot come before the survey was sent",
                    ));
                }
                let supersedes = self.answered();
                if supersedes && template.resubmission == ResubmissionRule::Reject {
                    return Err(DomainError::rejected(
                        "already_answered",
                        "this survey was answered; its template does not accept a second response",
                    ));
                }
                let answers = check_answers(template, answers, *complete)?;
                let mut events: Vec<SurveyEvent> = vec![
                    SurveyResponseRecorded {
                        at: *at,
                        answers: answers.clone(),
                        complete: *complete,
                        supersedes,
                        channel: *channel,
                    }
                    .into(),
                ];
                if let (None, Some(rule)) = (&self.follow_up, &sent.follow_up) {
                    let found = dissatisfaction(template, &answers, rule);
                    if !found.is_empty() {
                        let reason = Text::parse("reason", &format!("dissatisfied: {}", found.join(", ")))?;
                        events.push(
                            SurveyFollowUpOpened {
                                at: *at,
                                reason,
                                action: rule.action,
                                assignee: sent.context.agent.clone(),
                                department: sent.context.department.clone(),
                                due_at: *at + Duration::hours(i64::from(rule.due_hours)),
                                request_id: (rule.action == FollowUpKind::ServiceRequest)
                                    .then(|| follow_up_request_id(sent.survey_id)),
                                priority: rule.priority,
                            }
                            .into(),
                        );
                    }
                }
                Ok(events)
            }
            SurveyCommand::Expire { at, reason, manual } => {
                let sent = self.sent()?;
                if self.expired_at.is_some() {
                    return Ok(vec![]);
                }
                if self.answered() {
                    if *manual {
                        return Err(DomainError::rejected("already_answered", "an answered survey does not expire"));
                    }
                    return Ok(vec![]);
                }
                if !manual && *at < sent.expires_at {
                    return Ok(vec![]);
                }
                Ok(vec![SurveyExpired { at: *at, reason: reason.clone() }.into()])
            }
            SurveyCommand::CompleteFollowUp { at, outcome, contacted, by } => {
                self.sent()?;
                match (&self.follow_up, &self.follow_up_done) {
                    (Some(_), None) => Ok(vec![
                        SurveyFollowUpCompleted {
                            at: *at,
                            outcome: outcome.clone(),
                            contacted: *contacted,
                            by: by.clone(),
                        }
                        .into(),
                    ]),
                    (Some(_), Some(_)) => {
                        Err(DomainError::rejected("follow_up_done", "the follow-up was already completed"))
                    }
                    (None, _) => Err(DomainError::rejected("no_follow_up", "this survey has no follow-up")),
                }
            }
        }
    }

    fn apply(&mut self, event: &SurveyEvent) {
        match event {
            SurveyEvent::SurveySent(e) => self.sent = Some(e.clone()),
            SurveyEvent::SurveyReminderSent(e) => self.reminders_sent = e.number,
            SurveyEvent::SurveyResponseRecorded(e) => {
                self.responses += 1;
                self.response = Some(e.clone());
            }
            SurveyEvent::SurveyExpired(e) => self.expired_at = Some(e.at),
            SurveyEvent::SurveyFollowUpOpened(e) => self.follow_up = Some(e.clone()),
            SurveyEvent::SurveyFollowUpCompleted(e) => self.follow_up_done = Some(e.clone()),
        }
    }
}

/// Example values for tests, documentation and the event catalogue.
pub mod examples {
    use super::*;
    use crate::{survey_template::examples as templates, values::Name};

    /// A time.
    pub fn t(s: &str) -> DateTime<Utc> {
        s.parse().unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    /// The request surveyed in the examples.
    pub const REQUEST_ID: Uuid = Uuid::from_u128(0x0190_0000_0000_7000_8000_0000_0002_0001);
    /// The customer asked.
    pub const CUSTOMER_ID: Uuid = Uuid::from_u128(0x0190_0000_0000_7000_8000_0000_0000_0001);

    fn staff(id: &str, name: &'static str) -> StaffRef {
        StaffRef {
            id: crate::values::StaffId::parse("id", id).unwrap_or_else(|e| panic!("{e}")),
            name: Some(Name::trusted(name)),
        }
    }

    /// The closed-loop rule of the examples: 1–2 or a detractor, a return-visit task in 24 h.
    pub fn rule() -> FollowUpRule {
        FollowUpRule {
            likert_below: 3,
            detractors: true,
            action: FollowUpKind::ReturnVisitTask,
            due_hours: 24,
            priority: Priority::High,
        }
    }

    /// A survey sent after a resolved complaint.
    pub fn send() -> SendSurvey {
        SendSurvey {
            survey_id: survey_id_for_request(REQUEST_ID),
            template_id: templates::TEMPLATE_ID,
            template_version: 1,
            audience: SurveyAudience::External,
            customer_id: CUSTOMER_ID,
            context: SurveyContext {
                request_id: Some(REQUEST_ID),
                request_type: Some(RequestType::Complaint),
                category: Category::parse("c", "宽带/掉线").ok(),
                request_channel: Some(Channel::Phone),
                agent: Some(staff("agent.chen", "陈静")),
                department: Some(Label::trusted("网络维护部")),
                customer_tier: Some(ValueTier::Important),
                customer_segment: Some(LifecycleSegment::Advantaged),
            },
            trigger: SurveyTrigger::OnResolved,
            campaign: None,
            policy_id: Some(Uuid::from_u128(0x0190_0000_0000_7000_8000_0000_0006_0001)),
            channel: Channel::Sms,
            at: t("2026-11-02T10:00:00Z"),
            expires_at: t("2026-11-09T10:00:00Z"),
            reminders: vec![t("2026-11-03T10:00:00Z"), t("2026-11-05T10:00:00Z")],
            follow_up: Some(rule()),
        }
    }

    /// A scored answer.
    pub fn answer(q: &'static str, v: i32) -> Answer {
        Answer { question: Label::trusted(q), value: Some(v), text: None }
    }

    /// A complete, satisfied response to the example template.
    pub fn happy() -> Vec<Answer> {
        vec![
            answer("q_attitude", 5),
            answer("q_attitude_expected", 4),
            answer("q_speed", 4),
            answer("q_solved", 1),
            answer("q_overall", 5),
            answer("q_nps", 9),
            answer("q_effort", 6),
            Answer {
                question: Label::trusted("q_comment"), value: None, text: Text::parse("t", "师傅很专业").ok()
            },
        ]
    }

    /// One example of every survey event.
    pub fn all_events() -> Vec<SurveyEvent> {
        let s = send();
        vec![
            SurveySent {
                survey_id: s.survey_id,
                template_id: s.template_id,
                template_version: s.template_version,
                audience: s.audience,
                customer_id: s.customer_id,
                context: s.context.clone(),
                trigger: s.trigger,
                campaign: Some(Label::trusted("2026Q4 大客户回访")),
                policy_id: s.policy_id,
                channel: s.channel,
                sent_at: s.at,
                expires_at: s.expires_at,
                reminders: s.reminders.clone(),
                follow_up: s.follow_up,
            }
            .into(),
            SurveyReminderSent { at: t("2026-11-03T10:00:05Z"), number: 1 }.into(),
            SurveyResponseRecorded {
                at: t("2026-11-03T12:00:00Z"),
                answers: happy(),
                complete: true,
                supersedes: true,
                channel: Some(Channel::Web),
            }
            .into(),
            SurveyExpired { at: t("2026-11-09T10:00:00Z"), reason: Text::parse("r", "客户拒绝").ok() }.into(),
            SurveyFollowUpOpened {
                at: t("2026-11-03T12:00:00Z"),
                reason: Text::parse("r", "dissatisfied: q_overall = 1").unwrap_or_else(|e| panic!("{e}")),
                action: FollowUpKind::ServiceRequest,
                assignee: s.context.agent.clone(),
                department: s.context.department.clone(),
                due_at: t("2026-11-04T12:00:00Z"),
                request_id: Some(follow_up_request_id(s.survey_id)),
                priority: Priority::High,
            }
            .into(),
            SurveyFollowUpCompleted {
                at: t("2026-11-04T09:00:00Z"),
                outcome: Text::parse("o", "已致电道歉并补偿").unwrap_or_else(|e| panic!("{e}")),
                contacted: true,
                by: Some(staff("sup.wang", "王主管")),
            }
            .into(),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::{examples::*, *};
    use crate::{survey_template::examples::after_service, testing::given};

    fn sent() -> SurveyEvent {
        let s = send();
        given::<Survey>([]).when(SurveyCommand::Send(Box::new(s))).then_count(1).remove(0)
    }

    fn respond(at: &str, answers: Vec<Answer>, complete: bool) -> SurveyCommand {
        SurveyCommand::RecordResponse {
            at: t(at),
            answers,
            complete,
            channel: None,
            template: Box::new(after_service()),
        }
    }

    #[test]
    fn a_survey_about_a_request_is_sent_once() {
        given::<Survey>([sent()]).when(SurveyCommand::Send(Box::new(send()))).then_err();
        assert_eq!(survey_id_for_request(REQUEST_ID), survey_id_for_request(REQUEST_ID));
        assert_ne!(survey_id_for_request(REQUEST_ID), survey_id_for_request(CUSTOMER_ID));
        let mut s = send();
        s.expires_at = s.at;
        given::<Survey>([]).when(SurveyCommand::Send(Box::new(s))).then_invalid("expiresAt");
        let mut s = send();
        s.reminders.reverse();
        given::<Survey>([]).when(SurveyCommand::Send(Box::new(s))).then_invalid("reminders[1]");
    }

    #[test]
    fn a_satisfied_response_opens_nothing() {
        let events = given::<Survey>([sent()]).when(respond("2026-11-03T12:00:00Z", happy(), true)).then_count(1);
        let SurveyEvent::SurveyResponseRecorded(r) = &events[0] else { panic!() };
        assert!(r.complete && !r.supersedes);
    }

    #[test]
    fn a_dissatisfied_response_opens_exactly_one_follow_up() {
        let mut answers = happy();
        answers[4] = answer("q_overall", 2);
        answers[5] = answer("q_nps", 3);
        let events =
            given::<Survey>([sent()]).when(respond("2026-11-03T12:00:00Z", answers.clone(), true)).then_count(2);
        let SurveyEvent::SurveyFollowUpOpened(f) = &events[1] else { panic!("{events:?}") };
        assert_eq!(f.reason.as_str(), "dissatisfied: q_overall = 2, q_nps = 3");
        assert_eq!(f.due_at, t("2026-11-04T12:00:00Z"));
        assert_eq!(f.assignee.as_ref().unwrap().id.as_str(), "agent.chen");
        assert_eq!(f.department.as_ref().unwrap().as_str(), "网络维护部");
        assert_eq!(f.request_id, None, "a return-visit task, not a request");
        // A superseding response, still unhappy: no second follow-up.
        let mut history = vec![sent()];
        history.extend(events);
        let again = given::<Survey>(history).when(respond("2026-11-03T13:00:00Z", answers, true)).then_count(1);
        let SurveyEvent::SurveyResponseRecorded(r) = &again[0] else { panic!() };
        assert!(r.supersedes);
    }

    #[test]
    fn expectation_answers_and_passives_are_not_dissatisfaction() {
        let mut answers = happy();
        answers[1] = answer("q_attitude_expected", 1);
        answers[5] = answer("q_nps", 7);
        given::<Survey>([sent()]).when(respond("2026-11-03T12:00:00Z", answers, true)).then_count(1);
    }

    #[test]
    fn a_service_request_follow_up_names_its_request() {
        let mut s = send();
        s.follow_up = Some(FollowUpRule { action: FollowUpKind::ServiceRequest, ..rule() });
        let sent = given::<Survey>([]).when(SurveyCommand::Send(Box::new(s.clone()))).then_count(1);
        let events =
            given::<Survey>(sent).when(respond("2026-11-03T12:00:00Z", vec![answer("q_nps", 0)], false)).then_count(2);
        let SurveyEvent::SurveyFollowUpOpened(f) = &events[1] else { panic!() };
        assert_eq!(f.request_id, Some(follow_up_request_id(s.survey_id)), "a partial answer is enough to act on");
    }

    #[test]
    fn answers_are_checked_against_the_template() {
        let cases: Vec<(Vec<Answer>, bool, &str)> = vec![
            (vec![answer("q_overall", 6)], false, "answers[0].value"),
            (vec![answer("q_nps", -1)], false, "answers[0].value"),
            (vec![answer("q_missing", 3)], false, "answers[0].question"),
            (vec![answer("q_overall", 3), answer("q_overall", 4)], false, "answers[1].question"),
            (vec![answer("q_comment", 3)], false, "answers[0].text"),
            (
                vec![Answer { question: Label::trusted("q_overall"), value: None, text: None }],
                false,
                "answers[0].value",
            ),
            (vec![answer("q_overall", 3)], true, "answers"),
            (vec![], false, "answers"),
        ];
        for (answers, complete, field) in cases {
            given::<Survey>([sent()]).when(respond("2026-11-03T12:00:00Z", answers, complete)).then_invalid(field);
        }
    }

    #[test]
    fn a_second_answer_follows_the_templates_rule() {
        let first = given::<Survey>([sent()]).when(respond("2026-11-03T12:00:00Z", happy(), true)).then_count(1);
        let mut history = vec![sent()];
        history.extend(first);
        let mut strict = after_service();
        strict.resubmission = ResubmissionRule::Reject;
        given::<Survey>(history)
            .when(SurveyCommand::RecordResponse {
                at: t("2026-11-04T12:00:00Z"),
                answers: happy(),
                complete: true,
                channel: None,
                template: Box::new(strict),
            })
            .then_rejected("already_answered");
    }

    #[test]
    fn expiry_reminders_and_late_answers() {
        // Reminders fire in order, once each, only when due.
        given::<Survey>([sent()]).when(SurveyCommand::Remind { at: t("2026-11-03T09:00:00Z") }).then_nothing();
        let r1 = given::<Survey>([sent()]).when(SurveyCommand::Remind { at: t("2026-11-03T10:00:01Z") }).then_count(1);
        let mut history = vec![sent()];
        history.extend(r1);
        given::<Survey>(history.clone()).when(SurveyCommand::Remind { at: t("2026-11-04T10:00:00Z") }).then_nothing();
        // The scheduler's expiry waits for the time; a manual one does not.
        let auto = |at: &str| SurveyCommand::Expire { at: t(at), reason: None, manual: false };
        given::<Survey>(history.clone()).when(auto("2026-11-09T09:59:59Z")).then_nothing();
        let expired = given::<Survey>(history.clone()).when(auto("2026-11-09T10:00:00Z")).then_count(1);
        history.extend(expired);
        given::<Survey>(history.clone()).when(auto("2026-11-10T00:00:00Z")).then_nothing();
        given::<Survey>(history.clone())
            .when(respond("2026-11-09T11:00:00Z", happy(), true))
            .then_rejected("survey_expired");
        given::<Survey>(history).when(SurveyCommand::Remind { at: t("2026-11-09T11:00:00Z") }).then_nothing();
        // Past its expiry time an answer is refused even before the scheduler ran.
        given::<Survey>([sent()]).when(respond("2026-11-09T10:00:01Z", happy(), true)).then_rejected("survey_expired");
        // An answered survey does not expire by hand.
        let answered = given::<Survey>([sent()]).when(respond("2026-11-03T12:00:00Z", happy(), true)).then_count(1);
        let mut history = vec![sent()];
        history.extend(answered);
        given::<Survey>(history)
            .when(SurveyCommand::Expire { at: t("2026-11-04T00:00:00Z"), reason: None, manual: true })
            .then_rejected("already_answered");
    }

    #[test]
    fn a_follow_up_is_completed_once() {
        let mut answers = happy();
        answers[4] = answer("q_overall", 1);
        let opened = given::<Survey>([sent()]).when(respond("2026-11-03T12:00:00Z", answers, true)).then_count(2);
        let mut history = vec![sent()];
        history.extend(opened);
        let done = SurveyCommand::CompleteFollowUp {
            at: t("2026-11-04T09:00:00Z"),
            outcome: Text::parse("o", "已回访").unwrap(),
            contacted: true,
            by: None,
        };
        let completed = given::<Survey>(history.clone()).when(done.clone()).then_count(1);
        history.extend(completed);
        given::<Survey>(history).when(done.clone()).then_rejected("follow_up_done");
        given::<Survey>([sent()]).when(done).then_rejected("no_follow_up");
    }
}
