//! Survey handlers: templates, the satisfaction configuration, sending (by hand, by campaign
//! and after service), responses, follow-ups and the monitor; and the reactions that close
//! the loop — a survey after a completed service, a service request for a dissatisfied
//! answer, the follow-up completed when that request is resolved.
//!
//! Reactions are decided from the triggering event alone (and the streams as they were at
//! its position), with command ids derived from the event id: running one twice — after a
//! crash, a rebalance or a replay — records nothing twice.

use std::{collections::HashMap, sync::Arc};

use chrono::Duration;
use kefu_domain::{
    DomainError,
    customer::Customer,
    satisfaction_config::{
        CompletedService, SATISFACTION_CONFIGURATION_ID, SatisfactionConfigCommand, SatisfactionConfiguration,
    },
    satisfaction_monitor::{SATISFACTION_MONITOR_ID, SatisfactionMonitor, SatisfactionMonitorCommand},
    service_request::{RequestOrigin, ServiceRequest, ServiceRequestEvent},
    survey::{
        Answer, FollowUpRule, SendSurvey, Survey, SurveyCommand, SurveyContext, SurveyEvent, follow_up_request_id,
        survey_id_for_request,
    },
    survey_template::{SurveyTemplate, SurveyTemplateCommand, SurveyTemplateContent},
    values::{Category, Label, Subject, Text},
    vocab::{Channel, ConsentPurpose, CustomerKind, FollowUpKind, RequestType, SurveyAudience, SurveyTrigger},
};
use uuid::Uuid;

use crate::{
    Actor, AppError, CommandMeta, CommandService, RecordedEvent, service_requests::RequestDraft, store::AppendOutcome,
};

/// A survey to send.
#[derive(Debug, Clone)]
pub struct SurveyDraft {
    /// Its id (derived from the request for request surveys; required otherwise).
    pub survey_id: Option<Uuid>,
    /// The template.
    pub template_id: Uuid,
    /// A published version (the newest when absent).
    pub template_version: Option<u32>,
    /// Who is asked.
    pub customer_id: Uuid,
    /// The request it is about.
    pub request_id: Option<Uuid>,
    /// The department evaluated (default: the request's).
    pub department: Option<Label>,
    /// Why.
    pub trigger: SurveyTrigger,
    /// Campaign name.
    pub campaign: Option<Label>,
    /// The dispatch policy.
    pub policy_id: Option<Uuid>,
    /// Delivery channel (default: the request's channel).
    pub channel: Option<Channel>,
    /// Hours until it expires.
    pub expires_after_hours: u32,
    /// Reminders, in hours after sending.
    pub remind_after_hours: Vec<u32>,
    /// The closed-loop rule.
    pub follow_up: Option<FollowUpRule>,
    /// Refuse unless the customer consented to surveys.
    pub require_consent: bool,
}

/// What a reaction did.
#[derive(Debug, Clone, PartialEq)]
pub enum Reaction {
    /// It recorded something (a survey sent, a request opened, a follow-up completed).
    Done {
        /// What, for people.
        what: String,
        /// The stream it changed.
        stream_id: Uuid,
    },
    /// Nothing to do, and why.
    Skipped(String),
}

impl Reaction {
    fn skipped(why: impl Into<String>) -> Result<Reaction, AppError> {
        Ok(Reaction::Skipped(why.into()))
    }
}

/// What each reaction step records when it acts (the same whether it acts now or acted in an
/// earlier run, so a rebuilt automation's record equals the live one).
const SURVEY_SENT: &str = "survey sent";
const FOLLOW_UP_OPENED: &str = "follow-up request opened";
const FOLLOW_UP_COMPLETED: &str = "survey follow-up completed";

/// Meta of a command caused by an event: derived command id, the event's business time,
/// correlation and the event as cause.
/// The steps a reaction may take, each with a command id derived from its event and the step.
const SURVEY_STEP: &str = "survey-after-service";
const FOLLOW_UP_REQUEST_STEP: &str = "follow-up-request";
const FOLLOW_UP_DONE_STEP: &str = "follow-up-done";

fn step_id(event: &RecordedEvent, step: &str) -> Uuid {
    Uuid::new_v5(&event.event_id, step.as_bytes())
}

/// The steps that may follow an event of this type.
fn steps_of(event_type: &str) -> &'static [&'static str] {
    match event_type {
        "RequestResolved" => &[FOLLOW_UP_DONE_STEP, SURVEY_STEP],
        "RequestClosed" => &[SURVEY_STEP],
        "SurveyFollowUpOpened" => &[FOLLOW_UP_REQUEST_STEP],
        _ => &[],
    }
}

/// Steps already taken for a batch of events: the journalled commands among their derived ids,
/// with the stream each went to (read in one query before the batch is reacted to).
#[derive(Debug, Default)]
pub struct TakenSteps(HashMap<Uuid, Uuid>);

fn caused_by(event: &RecordedEvent, step: &str, actor: &str) -> CommandMeta {
    let mut meta = CommandMeta::by(Actor::system(actor));
    meta.command_id = Some(step_id(event, step));
    meta.occurred_at = Some(event.occurred_at);
    meta.correlation_id = event.correlation_id;
    meta.causation_id = Some(event.event_id);
    meta
}

impl CommandService {
    /// Drafts or publishes a survey template.
    pub async fn survey_template(
        &self,
        template_id: Uuid,
        command: SurveyTemplateCommand,
        meta: CommandMeta,
    ) -> Result<AppendOutcome, AppError> {
        self.execute::<SurveyTemplate>(template_id, None, command, meta).await
    }

    /// A template with every version.
    pub async fn template(&self, template_id: Uuid) -> Result<SurveyTemplate, AppError> {
        let (t, _, _) = self.load::<SurveyTemplate>(template_id).await?;
        if t.template_id.is_none() {
            return Err(DomainError::NotFound { entity: "surveyTemplate", id: template_id.to_string() }.into());
        }
        Ok(t)
    }

    /// The satisfaction configuration.
    pub async fn satisfaction_configuration(&self) -> Result<SatisfactionConfiguration, AppError> {
        Ok(self.load::<SatisfactionConfiguration>(SATISFACTION_CONFIGURATION_ID).await?.0)
    }

    /// Changes the satisfaction configuration. A dispatch policy must name a template with a
    /// published version; it applies to services completed from the command's business time.
    pub async fn configure_satisfaction(
        &self,
        mut command: SatisfactionConfigCommand,
        mut meta: CommandMeta,
    ) -> Result<AppendOutcome, AppError> {
        let now = self.business_time(&mut meta);
        if let SatisfactionConfigCommand::DefineDispatchPolicy { policy, at } = &mut command {
            let template = self.template(policy.template_id).await?;
            if template.current().is_none() {
                return Err(DomainError::rejected(
                    "template_unpublished",
                    format!("template {} has no published version yet", policy.template_id),
                )
                .into());
            }
            *at = now;
        }
        self.execute::<SatisfactionConfiguration>(SATISFACTION_CONFIGURATION_ID, None, command, meta).await
    }

    /// Sends a survey, completing its context from the request and the customer as they are
    /// at the command's position in the log.
    pub async fn send_survey(&self, draft: SurveyDraft, meta: CommandMeta) -> Result<AppendOutcome, AppError> {
        self.send_survey_as_of(draft, meta, i64::MAX).await
    }

    async fn send_survey_as_of(
        &self,
        draft: SurveyDraft,
        mut meta: CommandMeta,
        position: i64,
    ) -> Result<AppendOutcome, AppError> {
        let at = self.business_time(&mut meta);
        let template = self.template(draft.template_id).await?;
        let (version, content) = match draft.template_version {
            Some(v) => (
                v,
                template.published_version(v).ok_or_else(|| {
                    DomainError::invalid("templateVersion", format!("version {v} of the template is not published"))
                })?,
            ),
            None => template.current().ok_or_else(|| {
                DomainError::rejected("template_unpublished", "the template has no published version yet")
            })?,
        };
        let (customer, _, _) = self.load_as_of::<Customer>(draft.customer_id, position).await?;
        if !customer.is_registered() {
            return Err(DomainError::NotFound { entity: "customer", id: draft.customer_id.to_string() }.into());
        }
        let internal = customer.kind() == Some(CustomerKind::InternalDepartment);
        match content.audience {
            SurveyAudience::Internal if !internal => {
                return Err(DomainError::invalid(
                    "customerId",
                    "an internal survey asks an internal department (a customer of kind INTERNAL_DEPARTMENT)",
                )
                .into());
            }
            SurveyAudience::External if internal => {
                return Err(DomainError::invalid(
                    "customerId",
                    "this template asks outside customers; use an internal template for departments",
                )
                .into());
            }
            _ => {}
        }
        if draft.require_consent && customer.consents.get(&ConsentPurpose::Surveys) != Some(&true) {
            return Err(DomainError::rejected("no_consent", "the customer has not consented to surveys").into());
        }
        let mut context = SurveyContext {
            customer_tier: customer.classification.value_tier,
            customer_segment: customer.classification.lifecycle_segment,
            department: draft.department.clone(),
            ..SurveyContext::default()
        };
        let mut channel = draft.channel;
        if let Some(request_id) = draft.request_id {
            let (request, _, _) = self.load_as_of::<ServiceRequest>(request_id, position).await?;
            let Some(filed) = request.filed.as_ref() else {
                return Err(DomainError::NotFound { entity: "serviceRequest", id: request_id.to_string() }.into());
            };
            if filed.customer_id != draft.customer_id && !request.reporters.contains(&draft.customer_id) {
                return Err(DomainError::invalid("customerId", "the customer did not raise this request").into());
            }
            context.request_id = Some(request_id);
            context.request_type = Some(filed.request_type);
            context.category = Some(filed.category.clone());
            context.request_channel = Some(filed.channel);
            context.agent = request.assignee.clone().or(request.owner.clone());
            if context.department.is_none() {
                context.department = request.department.clone();
            }
            channel = channel.or(Some(filed.channel));
        }
        if content.audience == SurveyAudience::Internal && context.department.is_none() {
            return Err(DomainError::invalid("department", "an internal survey names the department evaluated").into());
        }
        let channel =
            channel.ok_or_else(|| DomainError::invalid("channel", "say how the survey reaches the customer"))?;
        let survey_id = match (draft.survey_id, draft.request_id) {
            (_, Some(request)) => survey_id_for_request(request),
            (Some(id), None) => id,
            (None, None) => meta.new_entity_id("survey"),
        };
        if !(1..=24 * 90).contains(&draft.expires_after_hours) {
            return Err(DomainError::invalid("expiresAfterHours", "between 1 hour and 90 days").into());
        }
        let hours = |h: u32| at + Duration::hours(i64::from(h));
        let command = SendSurvey {
            survey_id,
            template_id: draft.template_id,
            template_version: version,
            audience: content.audience,
            customer_id: draft.customer_id,
            context,
            trigger: draft.trigger,
            campaign: draft.campaign,
            policy_id: draft.policy_id,
            channel,
            at,
            expires_at: hours(draft.expires_after_hours),
            reminders: draft.remind_after_hours.iter().map(|h| hours(*h)).collect(),
            follow_up: draft.follow_up,
        };
        self.execute::<Survey>(survey_id, Some(draft.customer_id), SurveyCommand::Send(Box::new(command)), meta).await
    }

    /// Records a response, checked against the template version the survey was sent with.
    pub async fn record_survey_response(
        &self,
        survey_id: Uuid,
        answers: Vec<Answer>,
        complete: bool,
        channel: Option<Channel>,
        mut meta: CommandMeta,
    ) -> Result<AppendOutcome, AppError> {
        let at = self.business_time(&mut meta);
        let (survey, _, _) = self.load::<Survey>(survey_id).await?;
        let Some(sent) = survey.sent.as_ref() else {
            return Err(DomainError::NotFound { entity: "survey", id: survey_id.to_string() }.into());
        };
        let template = self.template(sent.template_id).await?;
        let content: SurveyTemplateContent =
            template.versions.get(&sent.template_version).cloned().ok_or_else(|| {
                AppError::Internal(format!("survey {survey_id} names a template version that does not exist"))
            })?;
        let customer = sent.customer_id;
        let command = SurveyCommand::RecordResponse { at, answers, complete, channel, template: Box::new(content) };
        self.execute::<Survey>(survey_id, Some(customer), command, meta).await
    }

    /// Reminds, expires or completes a follow-up (`at` is replaced by business time).
    pub async fn survey(
        &self,
        survey_id: Uuid,
        mut command: SurveyCommand,
        mut meta: CommandMeta,
    ) -> Result<AppendOutcome, AppError> {
        let now = self.business_time(&mut meta);
        match &mut command {
            SurveyCommand::Remind { at }
            | SurveyCommand::Expire { at, .. }
            | SurveyCommand::CompleteFollowUp { at, .. } => *at = now,
            SurveyCommand::Send(_) | SurveyCommand::RecordResponse { .. } => {
                return Err(AppError::Internal("use send_survey / record_survey_response".into()));
            }
        }
        let (survey, _, _) = self.load::<Survey>(survey_id).await?;
        let Some(sent) = survey.sent.as_ref() else {
            return Err(DomainError::NotFound { entity: "survey", id: survey_id.to_string() }.into());
        };
        let customer = sent.customer_id;
        self.execute::<Survey>(survey_id, Some(customer), command, meta).await
    }

    /// Records a reviewed period of an alert rule (once per rule and period).
    pub async fn review_satisfaction(
        &self,
        command: SatisfactionMonitorCommand,
        meta: CommandMeta,
    ) -> Result<AppendOutcome, AppError> {
        self.execute::<SatisfactionMonitor>(SATISFACTION_MONITOR_ID, None, command, meta).await
    }

    /// The monitor's state.
    pub async fn satisfaction_monitor(&self) -> Result<SatisfactionMonitor, AppError> {
        Ok(self.load::<SatisfactionMonitor>(SATISFACTION_MONITOR_ID).await?.0)
    }

    // -----------------------------------------------------------------------------------------
    // Reactions

    /// Reacts to one event of the log: a survey after a completed service, the follow-up
    /// request of a dissatisfied answer, the follow-up completed when its request is resolved.
    pub async fn react(&self, event: &RecordedEvent) -> Result<Reaction, AppError> {
        let taken = self.taken_steps(std::slice::from_ref(&event)).await?;
        self.react_knowing(event, &taken).await
    }

    /// The steps already taken for `events` ([`CommandService::react_knowing`]), in one read of
    /// the journal.
    pub async fn taken_steps(&self, events: &[&RecordedEvent]) -> Result<TakenSteps, AppError> {
        let ids: Vec<Uuid> =
            events.iter().flat_map(|e| steps_of(&e.event_type).iter().map(|step| step_id(e, step))).collect();
        if ids.is_empty() {
            return Ok(TakenSteps::default());
        }
        Ok(TakenSteps(self.store().journalled_streams(&ids).await?))
    }

    /// [`CommandService::react`], with the steps taken for the event already read
    /// ([`CommandService::taken_steps`] of a batch holding it, read before any of the batch's
    /// reactions: each step's id is its event's own, so no reaction takes another's step).
    pub async fn react_knowing(&self, event: &RecordedEvent, taken: &TakenSteps) -> Result<Reaction, AppError> {
        match event.stream_type.as_str() {
            "service_request" => {
                let decoded: ServiceRequestEvent = event.decode().map_err(|e| AppError::Internal(e.to_string()))?;
                match decoded {
                    ServiceRequestEvent::RequestResolved(_) => {
                        let request = self.request_at(event).await?;
                        let done = self.complete_follow_up_of(event, &request, taken).await?;
                        let survey =
                            self.survey_after_service(event, &request, SurveyTrigger::OnResolved, taken).await?;
                        Ok(match (done, survey) {
                            (Reaction::Done { what: a, stream_id }, Reaction::Done { what: b, .. }) => {
                                Reaction::Done { what: format!("{a}; {b}"), stream_id }
                            }
                            (d @ Reaction::Done { .. }, _) | (_, d @ Reaction::Done { .. }) => d,
                            (_, skipped) => skipped,
                        })
                    }
                    ServiceRequestEvent::RequestClosed(_) => {
                        let request = self.request_at(event).await?;
                        self.survey_after_service(event, &request, SurveyTrigger::OnClosed, taken).await
                    }
                    _ => Reaction::skipped("not a completion"),
                }
            }
            "survey" => {
                let decoded: SurveyEvent = event.decode().map_err(|e| AppError::Internal(e.to_string()))?;
                match decoded {
                    SurveyEvent::SurveyFollowUpOpened(f) if f.action == FollowUpKind::ServiceRequest => {
                        self.open_follow_up_request(event, &f, taken).await
                    }
                    _ => Reaction::skipped("nothing follows"),
                }
            }
            _ => Reaction::skipped("not watched"),
        }
    }

    /// A step already taken for this event (its derived command is journalled): what it did
    /// then. A replay reports that instead of deciding again, since the configuration or the
    /// data it decided on may have changed since and a different decision under the same
    /// command id would be refused.
    fn taken(meta: &CommandMeta, what: &str, taken: &TakenSteps) -> Option<Reaction> {
        let id = meta.command_id?;
        taken.0.get(&id).map(|stream_id| Reaction::Done { what: what.into(), stream_id: *stream_id })
    }

    /// The request an event of it reacts to, as it was just after that event (loaded once per
    /// event, for every step that reacts to it).
    async fn request_at(&self, event: &RecordedEvent) -> Result<Arc<ServiceRequest>, AppError> {
        self.state_at_event::<ServiceRequest>(event.stream_id, event.global_position).await
    }

    async fn survey_after_service(
        &self,
        event: &RecordedEvent,
        request: &ServiceRequest,
        trigger: SurveyTrigger,
        taken: &TakenSteps,
    ) -> Result<Reaction, AppError> {
        let meta = caused_by(event, SURVEY_STEP, "survey-dispatch");
        if let Some(done) = Self::taken(&meta, SURVEY_SENT, taken) {
            return Ok(done);
        }
        let Some(filed) = request.filed.as_ref() else { return Reaction::skipped("unknown request") };
        if filed.origin.is_some() {
            return Reaction::skipped("a survey follow-up is not surveyed again");
        }
        let config = self.satisfaction_configuration().await?;
        let service = CompletedService {
            request_id: event.stream_id,
            trigger,
            at: event.occurred_at,
            request_type: filed.request_type,
            category: &filed.category,
            tier: filed.customer_tier,
            channel: filed.channel,
        };
        let Some(active) = config.dispatch_for(&service) else {
            return Reaction::skipped("no dispatch policy applies (or not in its sample)");
        };
        let policy = &active.policy;
        let draft = SurveyDraft {
            survey_id: None,
            template_id: policy.template_id,
            template_version: None,
            customer_id: filed.customer_id,
            request_id: Some(event.stream_id),
            department: None,
            trigger,
            campaign: None,
            policy_id: Some(policy.policy_id),
            channel: policy.channel,
            expires_after_hours: policy.expires_after_hours,
            remind_after_hours: policy.remind_after_hours.clone(),
            follow_up: policy.follow_up,
            require_consent: policy.require_consent,
        };
        match self.send_survey_as_of(draft, meta, event.global_position).await {
            Ok(o) => {
                tracing::debug!(survey = %o.stream_id, policy = %policy.name, "survey sent under a dispatch policy");
                Ok(Reaction::Done { what: SURVEY_SENT.into(), stream_id: o.stream_id })
            }
            Err(AppError::Domain(DomainError::AlreadyExists { .. })) => Reaction::skipped("already surveyed"),
            Err(AppError::Domain(e)) => Reaction::skipped(format!("not sent: {e}")),
            Err(e) => Err(e),
        }
    }

    async fn open_follow_up_request(
        &self,
        event: &RecordedEvent,
        f: &kefu_domain::survey::SurveyFollowUpOpened,
        taken: &TakenSteps,
    ) -> Result<Reaction, AppError> {
        let meta = caused_by(event, FOLLOW_UP_REQUEST_STEP, "survey-follow-up");
        if let Some(done) = Self::taken(&meta, FOLLOW_UP_OPENED, taken) {
            return Ok(done);
        }
        let (survey, _, _) = self.load_as_of::<Survey>(event.stream_id, event.global_position).await?;
        let Some(sent) = survey.sent.as_ref() else { return Reaction::skipped("unknown survey") };
        let request_id = f.request_id.unwrap_or_else(|| follow_up_request_id(sent.survey_id));
        let category = match &sent.context.category {
            Some(c) => c.clone(),
            None => Category::parse("category", "满意度回访 Satisfaction follow-up")?,
        };
        let subject: String =
            format!("满意度回访 Survey follow-up: {}", f.reason).chars().take(Subject::MAX_CHARS).collect();
        let draft = RequestDraft {
            request_id,
            customer_id: sent.customer_id,
            request_type: RequestType::Complaint,
            category,
            priority: f.priority,
            channel: sent.channel,
            subject: Subject::parse("subject", &subject)?,
            description: Some(Text::parse(
                "description",
                &format!(
                    "Opened by kefu for a dissatisfied survey answer ({}). Survey {}{}.",
                    f.reason,
                    sent.survey_id,
                    sent.context.request_id.map(|r| format!(" about request {r}")).unwrap_or_default()
                ),
            )?),
            taken_by: f.assignee.clone(),
            department: f.department.clone(),
            on_site_required: false,
            external_ref: None,
            tags: vec![Label::parse("tags", "survey-follow-up")?],
            origin: Some(RequestOrigin { survey_id: sent.survey_id, request_id: sent.context.request_id }),
        };
        match self.open_request(draft, meta).await {
            Ok(o) => Ok(Reaction::Done { what: FOLLOW_UP_OPENED.into(), stream_id: o.stream_id }),
            Err(AppError::Domain(DomainError::AlreadyExists { .. })) => Reaction::skipped("already opened"),
            Err(AppError::Domain(e)) => Reaction::skipped(format!("not opened: {e}")),
            Err(e) => Err(e),
        }
    }

    async fn complete_follow_up_of(
        &self,
        event: &RecordedEvent,
        request: &ServiceRequest,
        taken: &TakenSteps,
    ) -> Result<Reaction, AppError> {
        // A request's origin is fixed when it is filed: one without an origin never had this
        // step taken, so there is no journal to look in.
        let Some(origin) = request.filed.as_ref().and_then(|f| f.origin) else {
            return Reaction::skipped("not a follow-up request");
        };
        let meta = caused_by(event, FOLLOW_UP_DONE_STEP, "survey-follow-up");
        if let Some(done) = Self::taken(&meta, FOLLOW_UP_COMPLETED, taken) {
            return Ok(done);
        }
        let resolution = event.payload.get("resolution").and_then(|r| r.as_str()).unwrap_or_default();
        let outcome: String = format!("resolved in follow-up request {}: {resolution}", event.stream_id)
            .chars()
            .take(Text::MAX_CHARS)
            .collect();
        let command = SurveyCommand::CompleteFollowUp {
            at: event.occurred_at,
            outcome: Text::parse("outcome", &outcome)?,
            contacted: true,
            by: request.owner.clone(),
        };
        match self.survey(origin.survey_id, command, meta).await {
            Ok(o) => Ok(Reaction::Done { what: FOLLOW_UP_COMPLETED.into(), stream_id: o.stream_id }),
            Err(AppError::Domain(e @ (DomainError::Rejected { .. } | DomainError::NotFound { .. }))) => {
                Reaction::skipped(format!("follow-up not completed: {e}"))
            }
            Err(e) => Err(e),
        }
    }
}

#[cfg(test)]
#[path = "surveys_tests.rs"]
mod tests;
