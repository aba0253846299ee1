//! Satisfaction: survey templates, dispatch policies and alert rules (quality managers and
//! supervisors), sending surveys and recording answers, follow-ups, the indices, their trend
//! and the monthly service-quality report (服务质量月报).

use std::collections::BTreeMap;

use async_graphql::{Context, Enum, Error, ID, InputObject, Object, Result, SimpleObject};
use chrono::{DateTime, Datelike, NaiveDate, Utc};
use kefu_app::surveys::SurveyDraft;
use kefu_domain::{
    satisfaction::{DimensionFigures, Indices},
    satisfaction_config::{AlertRule, DispatchPolicy, DispatchSelector, SatisfactionConfigCommand},
    survey::{Answer, FollowUpRule, SurveyCommand},
    survey_template::{
        Dimension, Indicator, Question, SurveyTemplate, SurveyTemplateCommand, SurveyTemplateContent,
        default_dimensions,
    },
    values::{Category, Label, Name, Text},
    vocab,
};
use kefu_projections::{
    customer360,
    satisfaction::{self as read, IndexDimension, IndexFilter, IndexGroup},
    service_requests,
};
use uuid::Uuid;

use super::{
    common::{self, CommandOptions, CommandOutcome, GlobalPosition, Staff},
    requests::{GroupKey, TimeRange},
    vocab::*,
};
use crate::{
    auth::has_any_role,
    errors::{self, Validator},
};

const QUALITY_ROLES: &[&str] = &["quality_manager", "supervisor", "admin"];

fn require_quality_role(ctx: &Context<'_>) -> Result<()> {
    let actor = common::actor(ctx)?;
    if has_any_role(actor, QUALITY_ROLES) {
        return Ok(());
    }
    Err(errors::coded(
        "FORBIDDEN",
        format!("changing surveys and satisfaction policies needs one of the roles {}", QUALITY_ROLES.join(", ")),
    ))
}

fn lost() -> Error {
    errors::internal("validated input lost a value")
}

async fn read_conn<'a>(ctx: &'a Context<'_>) -> Result<common::ReadConnection<'a>> {
    common::read(ctx, read::NAME).await
}

fn survey_id(field: &str, raw: &ID) -> Result<Uuid> {
    common::parse_id("Survey", field, raw).map_err(|e| errors::domain(e, ""))
}

// ---------------------------------------------------------------------------------------------
// Templates

/// A dimension of a template.
#[derive(SimpleObject, InputObject, Clone)]
#[graphql(input_name = "DimensionInput")]
pub struct SurveyDimension {
    /// Stable code; `overall` is the overall satisfaction (CSAT).
    pub code: String,
    /// Name for people.
    pub name: String,
}

/// A question of a template.
#[derive(SimpleObject, Clone)]
pub struct SurveyQuestion {
    /// Stable code.
    pub code: String,
    /// The question as asked.
    pub text: String,
    /// How it is answered.
    pub kind: QuestionKind,
    /// Its dimension.
    pub dimension: Option<String>,
    /// Set on an expectation question: the perception question it pairs with.
    pub expectation_of: Option<String>,
    /// Must be answered for a response to be complete.
    pub required: bool,
}

/// A node of the indicator tree.
#[derive(SimpleObject, Clone)]
pub struct SurveyIndicator {
    /// Stable code.
    pub code: String,
    /// Name.
    pub name: String,
    /// Parent indicator.
    pub parent: Option<String>,
    /// Weight relative to its siblings.
    pub weight: i32,
    /// Leaves: the question scoring it.
    pub question: Option<String>,
    /// Leaves: the responsible department.
    pub department: Option<String>,
    /// Leaves: the effective weight in the composite index (all leaves sum to 1).
    pub effective_weight: Option<f64>,
}

/// A survey template version.
#[derive(SimpleObject, Clone)]
pub struct SurveyTemplateView {
    /// Id.
    pub template_id: Uuid,
    /// This version.
    pub version: i32,
    /// Whether this version is published (sent).
    pub published: bool,
    /// Name.
    pub name: String,
    /// Customers or internal departments.
    pub audience: SurveyAudience,
    /// Dimensions.
    pub dimensions: Vec<SurveyDimension>,
    /// Questions, in the order asked.
    pub questions: Vec<SurveyQuestion>,
    /// The indicator tree.
    pub indicators: Vec<SurveyIndicator>,
    /// What a second complete response does.
    pub resubmission: ResubmissionRule,
    /// Every version of the template.
    pub versions: Vec<i32>,
    /// The published ones.
    pub published_versions: Vec<i32>,
}

fn template_view(
    id: Uuid,
    version: u32,
    c: &SurveyTemplateContent,
    t: Option<&SurveyTemplate>,
    published: bool,
) -> SurveyTemplateView {
    let leaves = c.leaves().unwrap_or_default();
    SurveyTemplateView {
        template_id: id,
        version: version as i32,
        published,
        name: c.name.to_string(),
        audience: c.audience.into(),
        dimensions: c
            .dimensions
            .iter()
            .map(|d| SurveyDimension { code: d.code.to_string(), name: d.name.to_string() })
            .collect(),
        questions: c
            .questions
            .iter()
            .map(|q| SurveyQuestion {
                code: q.code.to_string(),
                text: q.text.to_string(),
                kind: q.kind.into(),
                dimension: q.dimension.as_ref().map(|d| d.to_string()),
                expectation_of: q.expectation_of.as_ref().map(|d| d.to_string()),
                required: q.required,
            })
            .collect(),
        indicators: c
            .indicators
            .iter()
            .map(|i| SurveyIndicator {
                code: i.code.to_string(),
                name: i.name.to_string(),
                parent: i.parent.as_ref().map(|x| x.to_string()),
                weight: i.weight as i32,
                question: i.question.as_ref().map(|x| x.to_string()),
                department: i.department.as_ref().map(|x| x.to_string()),
                effective_weight: leaves.iter().find(|l| l.indicator == i.code).map(|l| l.weight),
            })
            .collect(),
        resubmission: c.resubmission.into(),
        versions: t.map(|t| t.versions.keys().map(|v| *v as i32).collect()).unwrap_or_else(|| vec![version as i32]),
        published_versions: t
            .map(|t| t.published.iter().map(|v| *v as i32).collect())
            .unwrap_or_else(|| if published { vec![version as i32] } else { vec![] }),
    }
}

/// A question to ask.
#[derive(InputObject, Clone)]
pub struct QuestionInput {
    /// Stable code within the template (a-z, 0-9, `_ . -`).
    pub code: String,
    /// The question as asked.
    pub text: String,
    /// How it is answered.
    pub kind: QuestionKind,
    /// Its dimension (required for 1–5 questions).
    pub dimension: Option<String>,
    /// For an expectation question: the perception question it pairs with (same dimension).
    pub expectation_of: Option<String>,
    /// Must be answered for a response to be complete.
    #[graphql(default = true)]
    pub required: bool,
}

/// A node of the indicator tree.
#[derive(InputObject, Clone)]
pub struct IndicatorInput {
    /// Stable code.
    pub code: String,
    /// Name.
    pub name: String,
    /// Parent (none for a first-level indicator; at most three levels).
    pub parent: Option<String>,
    /// Weight relative to its siblings, 1–1000.
    #[graphql(default = 1)]
    pub weight: i32,
    /// Leaves: the question scoring it.
    pub question: Option<String>,
    /// Leaves: the responsible department.
    pub department: Option<String>,
}

/// Draft a template version.
#[derive(InputObject)]
pub struct DefineSurveyTemplateInput {
    /// The template (new when absent; an existing one drafts its next version).
    pub template_id: Option<Uuid>,
    /// Name.
    pub name: String,
    /// Customers or internal departments.
    #[graphql(default)]
    pub audience: SurveyAudience,
    /// Dimensions (default: attitude, efficiency, quality, problem_solving, competence,
    /// convenience, company, overall).
    pub dimensions: Option<Vec<SurveyDimension>>,
    /// Questions, in the order asked.
    pub questions: Vec<QuestionInput>,
    /// The weighted indicator tree (leaves map to responsible departments).
    #[graphql(default)]
    pub indicators: Vec<IndicatorInput>,
    /// What a second complete response does.
    #[graphql(default)]
    pub resubmission: ResubmissionRule,
    /// Retry controls.
    #[graphql(flatten)]
    pub options: CommandOptions,
}

/// Publish a drafted version.
#[derive(InputObject)]
pub struct PublishSurveyTemplateInput {
    /// The template.
    pub template_id: Uuid,
    /// The draft version.
    pub version: i32,
    /// Retry controls.
    #[graphql(flatten)]
    pub options: CommandOptions,
}

/// What a template mutation did.
#[derive(SimpleObject)]
pub struct SurveyTemplatePayload {
    /// The command's outcome.
    #[graphql(flatten)]
    pub outcome: CommandOutcome,
    /// The template.
    pub template_id: Uuid,
    /// The version drafted or published.
    pub version: i32,
}

fn parse_template(v: &mut Validator, input: &DefineSurveyTemplateInput) -> Option<SurveyTemplateContent> {
    let label = |v: &mut Validator, field: &str, raw: &str| v.check("input", Label::parse(field, raw));
    let name = v.check("input", Name::parse("name", &input.name));
    let dimensions = match &input.dimensions {
        None => default_dimensions(),
        Some(list) => list
            .iter()
            .enumerate()
            .filter_map(|(i, d)| {
                let code = label(v, &format!("dimensions[{i}].code"), &d.code);
                let name = v.check("input", Name::parse(&format!("dimensions[{i}].name"), &d.name));
                Some(Dimension { code: code?, name: name? })
            })
            .collect(),
    };
    let mut questions = Vec::new();
    for (i, q) in input.questions.iter().enumerate() {
        let f = format!("questions[{i}]");
        let code = label(v, &format!("{f}.code"), &q.code);
        let text = v.check("input", Text::parse(&format!("{f}.text"), &q.text));
        let dimension = q.dimension.as_deref().map(|d| label(v, &format!("{f}.dimension"), d));
        let expectation = q.expectation_of.as_deref().map(|d| label(v, &format!("{f}.expectationOf"), d));
        if let (Some(code), Some(text)) = (code, text) {
            questions.push(Question {
                code,
                text,
                kind: q.kind.into(),
                dimension: dimension.flatten(),
                expectation_of: expectation.flatten(),
                required: q.required,
            });
        }
    }
    let mut indicators = Vec::new();
    for (i, n) in input.indicators.iter().enumerate() {
        let f = format!("indicators[{i}]");
        let code = label(v, &format!("{f}.code"), &n.code);
        let name = v.check("input", Name::parse(&format!("{f}.name"), &n.name));
        let parent = n.parent.as_deref().and_then(|x| label(v, &format!("{f}.parent"), x));
        let question = n.question.as_deref().and_then(|x| label(v, &format!("{f}.question"), x));
        let department = n.department.as_deref().and_then(|x| label(v, &format!("{f}.department"), x));
        if n.weight < 1 {
            v.fail(format!("input.{f}.weight"), "weights are 1 to 1000");
        }
        if let (Some(code), Some(name)) = (code, name) {
            indicators.push(Indicator { code, name, parent, weight: n.weight.max(0) as u32, question, department });
        }
    }
    Some(SurveyTemplateContent {
        name: name?,
        audience: input.audience.into(),
        dimensions,
        questions,
        indicators,
        resubmission: input.resubmission.into(),
    })
}

// ---------------------------------------------------------------------------------------------
// Surveys

/// Where a survey stands.
#[derive(Enum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum SurveyState {
    /// Sent, not answered.
    Sent,
    /// Partly answered (the answers count).
    Partial,
    /// Answered.
    Completed,
    /// Expired unanswered.
    Expired,
}

/// Where a follow-up stands.
#[derive(Enum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum FollowUpState {
    /// To be done.
    Open,
    /// Done.
    Done,
}

/// One answer, with the question it answers.
#[derive(SimpleObject, Clone)]
pub struct SurveyAnswer {
    /// The question's code.
    pub question: String,
    /// The question as asked.
    pub question_text: Option<String>,
    /// How it is answered.
    pub kind: Option<QuestionKind>,
    /// Its dimension.
    pub dimension: Option<String>,
    /// The value (scored questions; yes = 1, no = 0).
    pub value: Option<i32>,
    /// The text (free-text questions).
    pub text: Option<String>,
}

/// The follow-up of a dissatisfied answer.
#[derive(SimpleObject, Clone)]
pub struct SurveyFollowUp {
    /// Open or done.
    pub state: FollowUpState,
    /// A return-visit task or a linked service request.
    pub kind: FollowUpKind,
    /// Which answers were dissatisfied.
    pub reason: String,
    /// When it was opened.
    pub opened_at: DateTime<Utc>,
    /// By when.
    pub due_at: DateTime<Utc>,
    /// Open past its due time.
    pub overdue: bool,
    /// Who is to contact the respondent.
    pub assignee: Option<Staff>,
    /// The department responsible.
    pub department: Option<String>,
    /// The linked service request.
    pub request_id: Option<Uuid>,
    /// When it was done.
    pub completed_at: Option<DateTime<Utc>>,
    /// What came of it.
    pub outcome: Option<String>,
    /// Whether the respondent was reached.
    pub contacted: Option<bool>,
    /// Who did it.
    pub completed_by: Option<Staff>,
}

/// A survey sent to one respondent.
pub struct Survey {
    view: read::SurveyView,
    template: Option<SurveyTemplateContent>,
}

fn str_col(v: &read::SurveyView, c: &str) -> Option<String> {
    v.row.get(c).and_then(|x| x.as_str()).map(str::to_string)
}

fn parse_col<T: std::str::FromStr>(v: &read::SurveyView, c: &str) -> Option<T> {
    str_col(v, c).and_then(|s| s.parse().ok())
}

#[Object]
impl Survey {
    /// Global id (`Survey:<uuid>`).
    async fn id(&self) -> ID {
        common::global_id("Survey", self.view.survey_id)
    }

    /// The survey's UUID.
    async fn survey_id(&self) -> Uuid {
        self.view.survey_id
    }

    /// Who was asked.
    async fn customer(&self, ctx: &Context<'_>) -> Result<Option<super::customers::Customer>> {
        super::customers::load(ctx, self.view.customer_id).await
    }

    /// Who was asked (UUID).
    async fn customer_id(&self) -> Uuid {
        self.view.customer_id
    }

    /// The request it is about.
    async fn request(&self, ctx: &Context<'_>) -> Result<Option<super::requests::ServiceRequest>> {
        match self.view.request_id {
            Some(id) => super::requests::load(ctx, id).await,
            None => Ok(None),
        }
    }

    /// The request it is about (UUID).
    async fn request_id(&self) -> Option<Uuid> {
        self.view.request_id
    }

    /// The template.
    async fn template_id(&self) -> Uuid {
        self.view.template.0
    }

    /// The template version it was sent with.
    async fn template_version(&self) -> i32 {
        self.view.template.1
    }

    /// Customers or internal departments.
    async fn audience(&self) -> Option<SurveyAudience> {
        parse_col::<vocab::SurveyAudience>(&self.view, "audience").map(Into::into)
    }

    /// Why it was sent.
    async fn trigger(&self) -> Option<SurveyTrigger> {
        parse_col::<vocab::SurveyTrigger>(&self.view, "trigger").map(Into::into)
    }

    /// The campaign.
    async fn campaign(&self) -> Option<String> {
        str_col(&self.view, "campaign")
    }

    /// How it reached the respondent.
    async fn channel(&self) -> Option<Channel> {
        parse_col::<vocab::Channel>(&self.view, "channel").map(Into::into)
    }

    /// The agent who served (when it was sent).
    async fn agent(&self) -> Option<Staff> {
        str_col(&self.view, "agent_id").map(|id| Staff { id, name: str_col(&self.view, "agent_name") })
    }

    /// The department evaluated.
    async fn department(&self) -> Option<String> {
        str_col(&self.view, "department")
    }

    /// The request's type.
    async fn request_type(&self) -> Option<RequestType> {
        parse_col::<vocab::RequestType>(&self.view, "request_type").map(Into::into)
    }

    /// The request's category.
    async fn category(&self) -> Option<String> {
        str_col(&self.view, "category")
    }

    /// The channel the request came in through.
    async fn request_channel(&self) -> Option<Channel> {
        parse_col::<vocab::Channel>(&self.view, "request_channel").map(Into::into)
    }

    /// The customer's tier then.
    async fn customer_tier(&self) -> Option<ValueTier> {
        parse_col::<vocab::ValueTier>(&self.view, "customer_tier").map(Into::into)
    }

    /// The customer's segment then.
    async fn customer_segment(&self) -> Option<LifecycleSegment> {
        parse_col::<vocab::LifecycleSegment>(&self.view, "customer_segment").map(Into::into)
    }

    /// When sent.
    async fn sent_at(&self) -> DateTime<Utc> {
        self.view.sent_at
    }

    /// Until when it takes answers.
    async fn expires_at(&self) -> DateTime<Utc> {
        self.view.expires_at
    }

    /// Where it stands.
    async fn state(&self) -> SurveyState {
        match self.view.state.as_str() {
            "PARTIAL" => SurveyState::Partial,
            "COMPLETED" => SurveyState::Completed,
            "EXPIRED" => SurveyState::Expired,
            _ => SurveyState::Sent,
        }
    }

    /// When the response that counts was given.
    async fn responded_at(&self) -> Option<DateTime<Utc>> {
        self.view.responded_at
    }

    /// Responses recorded (a superseded one included).
    async fn response_count(&self) -> i32 {
        self.view.response_count
    }

    /// Reminders sent.
    async fn reminders_sent(&self) -> i32 {
        self.view.reminders_sent
    }

    /// The answers that count, in question order.
    async fn answers(&self) -> Vec<SurveyAnswer> {
        self.view
            .answers
            .iter()
            .map(|(q, value, text)| {
                let question = self.template.as_ref().and_then(|t| t.question(q));
                SurveyAnswer {
                    question: q.clone(),
                    question_text: question.map(|x| x.text.to_string()),
                    kind: question.map(|x| x.kind.into()),
                    dimension: question.and_then(|x| x.dimension.as_ref().map(|d| d.to_string())),
                    value: *value,
                    text: text.clone(),
                }
            })
            .collect()
    }

    /// The follow-up of a dissatisfied answer.
    async fn follow_up(&self) -> Option<SurveyFollowUp> {
        let f = self.view.follow_up.as_ref()?;
        let opened: kefu_domain::survey::SurveyFollowUpOpened = serde_json::from_value(f.clone()).ok()?;
        let done: Option<kefu_domain::survey::SurveyFollowUpCompleted> =
            self.view.follow_up_done.as_ref().and_then(|d| serde_json::from_value(d.clone()).ok());
        Some(SurveyFollowUp {
            state: if done.is_some() { FollowUpState::Done } else { FollowUpState::Open },
            kind: opened.action.into(),
            reason: opened.reason.to_string(),
            opened_at: opened.at,
            due_at: opened.due_at,
            overdue: done.is_none() && opened.due_at < Utc::now(),
            assignee: opened.assignee.as_ref().map(Staff::from),
            department: opened.department.as_ref().map(|d| d.to_string()),
            request_id: opened.request_id,
            completed_at: done.as_ref().map(|d| d.at),
            outcome: done.as_ref().map(|d| d.outcome.to_string()),
            contacted: done.as_ref().map(|d| d.contacted),
            completed_by: done.as_ref().and_then(|d| d.by.as_ref().map(Staff::from)),
        })
    }

    /// Version of the survey's stream (for `expectedVersion`).
    async fn version(&self) -> i64 {
        self.view.version
    }
}

/// Loads a survey from the read model.
pub async fn load(ctx: &Context<'_>, id: Uuid) -> Result<Option<Survey>> {
    let mut tx = read_conn(ctx).await?;
    let Some(view) = read::survey(&mut tx, id).await.map_err(errors::projection)? else { return Ok(None) };
    drop(tx);
    with_template(ctx, view).await.map(Some)
}

/// Surveys with their templates (every template of the list read in one batch).
/// Surveys with their templates (one read for all the templates).
async fn with_templates(ctx: &Context<'_>, views: Vec<read::SurveyView>) -> Result<Vec<Survey>> {
    let templates = super::loaders::templates(ctx, views.iter().map(|v| v.template).collect()).await?;
    Ok(views
        .into_iter()
        .map(|view| {
            let template = templates.get(&view.template).map(|t| t.content.clone());
            Survey { view, template }
        })
        .collect())
}

async fn with_template(ctx: &Context<'_>, view: read::SurveyView) -> Result<Survey> {
    let template = super::loaders::template(ctx, view.template.0, view.template.1).await?.map(|t| t.content);
    Ok(Survey { view, template })
}

/// The survey about a request (for `ServiceRequest.survey`).
pub async fn of_request(ctx: &Context<'_>, request_id: Uuid) -> Result<Option<Survey>> {
    let Some(view) = super::loaders::survey_of_request(ctx, request_id).await? else {
        return Ok(None);
    };
    with_template(ctx, view).await.map(Some)
}

/// A customer's surveys (for the customer 360).
pub async fn of_customer(ctx: &Context<'_>, customer_id: Uuid, first: i64) -> Result<Vec<Survey>> {
    let views = super::loaders::surveys_of_customer(ctx, customer_id, first).await?;
    with_templates(ctx, views).await
}

/// One answered survey on a customer's satisfaction trajectory.
#[derive(SimpleObject, Clone)]
pub struct SatisfactionPoint {
    /// The survey.
    pub survey_id: Uuid,
    /// The request it was about.
    pub request_id: Option<Uuid>,
    /// When answered.
    pub responded_at: DateTime<Utc>,
    /// Mean of the overall-satisfaction answers (1–5).
    pub overall: Option<f64>,
    /// Mean of every 1–5 perception answer.
    pub mean_score: Option<f64>,
    /// The NPS answer's class as a score: 100 promoter, 0 passive, −100 detractor.
    pub nps: Option<f64>,
    /// Effort (1–7).
    pub ces: Option<f64>,
    /// The composite index of this response (0–100).
    pub composite: Option<f64>,
}

/// A customer's satisfaction over time, oldest first (for the customer 360).
pub async fn trajectory(ctx: &Context<'_>, customer_id: Uuid) -> Result<Vec<SatisfactionPoint>> {
    let points = super::loaders::trajectory(ctx, customer_id).await?;
    Ok(points
        .into_iter()
        .map(|p| {
            let overall = p.indices.dimensions.iter().find(|d| d.dimension == "overall").and_then(|d| d.mean);
            let (n, sum) = p
                .indices
                .dimensions
                .iter()
                .filter_map(|d| d.mean.map(|m| (d.answers, m * d.answers as f64)))
                .fold((0u64, 0.0), |(n, s), (a, x)| (n + a, s + x));
            SatisfactionPoint {
                survey_id: p.survey_id,
                request_id: p.request_id,
                responded_at: p.responded_at,
                overall,
                mean_score: (n > 0).then(|| sum / n as f64),
                nps: p.indices.nps.score(),
                ces: p.indices.ces,
                composite: p.indices.composite,
            }
        })
        .collect())
}

/// A follow-up rule.
#[derive(InputObject, SimpleObject, Clone, Copy)]
#[graphql(input_name = "FollowUpRuleInput")]
pub struct FollowUpRuleView {
    /// A 1–5 perception answer below this (2–5) is dissatisfied: 3 means 1 or 2.
    #[graphql(default = 3)]
    pub likert_below: i32,
    /// An NPS answer of 0–6 (a detractor) is dissatisfied.
    #[graphql(default = true)]
    pub detractors: bool,
    /// A return-visit task or a linked service request.
    #[graphql(default)]
    pub kind: FollowUpKind,
    /// Hours until it is due.
    #[graphql(default = 24)]
    pub due_hours: i32,
    /// Priority of a linked service request.
    #[graphql(default_with = "Priority::High")]
    pub priority: Priority,
}

impl FollowUpRuleView {
    fn parse(&self, v: &mut Validator, field: &str) -> Option<FollowUpRule> {
        if self.likert_below < 0 || self.due_hours < 0 {
            v.fail(field, "likertBelow and dueHours are positive");
            return None;
        }
        let rule = FollowUpRule {
            likert_below: self.likert_below as u32,
            detractors: self.detractors,
            action: self.kind.into(),
            due_hours: self.due_hours as u32,
            priority: self.priority.into(),
        };
        v.check(field, rule.validate("followUp").map(|_| rule))
    }

    fn from(r: &FollowUpRule) -> Self {
        FollowUpRuleView {
            likert_below: r.likert_below as i32,
            detractors: r.detractors,
            kind: r.action.into(),
            due_hours: r.due_hours as i32,
            priority: r.priority.into(),
        }
    }
}

/// Send a survey by hand.
#[derive(InputObject)]
pub struct SendSurveyInput {
    /// Id for a survey not about a request (a survey about a request has one derived from it).
    pub survey_id: Option<Uuid>,
    /// The template.
    pub template_id: Uuid,
    /// A published version (the newest when absent).
    pub template_version: Option<i32>,
    /// Who is asked (`Customer:<uuid>` or the UUID).
    pub customer_id: ID,
    /// The request it is about (one survey per request).
    pub request_id: Option<ID>,
    /// The department evaluated (default: the request's; required for internal surveys).
    pub department: Option<String>,
    /// How it reaches the respondent (default: the request's channel).
    pub channel: Option<Channel>,
    /// Hours until it expires.
    #[graphql(default = 168)]
    pub expires_after_hours: i32,
    /// Reminders, in hours after sending.
    #[graphql(default)]
    pub remind_after_hours: Vec<i32>,
    /// The closed-loop rule (none: no automatic follow-up).
    pub follow_up: Option<FollowUpRuleView>,
    /// Campaign name.
    pub campaign: Option<String>,
    /// Refuse unless the customer consented to surveys.
    #[graphql(default)]
    pub require_consent: bool,
    /// Retry controls.
    #[graphql(flatten)]
    pub options: CommandOptions,
}

/// Which customers a campaign asks.
#[derive(InputObject, Default)]
pub struct CustomerSegmentInput {
    /// Value tier.
    pub value_tier: Option<ValueTier>,
    /// Lifecycle segment.
    pub lifecycle_segment: Option<LifecycleSegment>,
    /// Industry.
    pub industry: Option<Industry>,
    /// Key accounts only (or none).
    pub key_account: Option<bool>,
    /// Customer kind (INTERNAL_DEPARTMENT for internal surveys).
    pub kind: Option<CustomerKind>,
}

/// Send a survey to every customer of a segment (a periodic survey).
#[derive(InputObject)]
pub struct SendSurveyCampaignInput {
    /// The campaign's name, e.g. `2026Q4 大客户回访`.
    pub campaign: String,
    /// The template.
    pub template_id: Uuid,
    /// Who is asked.
    #[graphql(default)]
    pub segment: CustomerSegmentInput,
    /// How it reaches them.
    pub channel: Channel,
    /// Hours until it expires.
    #[graphql(default = 168)]
    pub expires_after_hours: i32,
    /// Reminders, in hours after sending.
    #[graphql(default)]
    pub remind_after_hours: Vec<i32>,
    /// The closed-loop rule.
    pub follow_up: Option<FollowUpRuleView>,
    /// Skip customers who have not consented to surveys.
    #[graphql(default = true)]
    pub require_consent: bool,
    /// For internal surveys: the department evaluated.
    pub department: Option<String>,
    /// The most customers asked (the campaign is refused when more match).
    #[graphql(default = 1000)]
    pub max_recipients: i32,
    /// Retry controls (a retry with the same `commandId` sends nothing twice).
    #[graphql(flatten)]
    pub options: CommandOptions,
}

/// What a campaign did.
#[derive(SimpleObject)]
pub struct SurveyCampaignPayload {
    /// The campaign's id (each survey's id derives from it and the customer).
    pub campaign_id: Uuid,
    /// Surveys sent (or already sent by an earlier attempt).
    pub sent: i32,
    /// Customers skipped.
    pub skipped: i32,
    /// Why, for the first skipped customers.
    pub skipped_reasons: Vec<String>,
    /// The last position recorded.
    pub global_position: Option<GlobalPosition>,
}

/// One answer to record.
#[derive(InputObject, Clone)]
pub struct AnswerInput {
    /// The question's code.
    pub question: String,
    /// The value of a scored question (yes = 1, no = 0).
    pub value: Option<i32>,
    /// The text of a free-text question.
    pub text: Option<String>,
}

/// Record a response (every answer given so far).
#[derive(InputObject)]
pub struct RecordSurveyResponseInput {
    /// The survey.
    pub survey_id: ID,
    /// The answers.
    pub answers: Vec<AnswerInput>,
    /// Whether the respondent finished (every required question answered).
    #[graphql(default = true)]
    pub complete: bool,
    /// How it was given, when not the channel it was sent through.
    pub channel: Option<Channel>,
    /// Retry controls.
    #[graphql(flatten)]
    pub options: CommandOptions,
}

/// Stop a survey taking answers.
#[derive(InputObject)]
pub struct ExpireSurveyInput {
    /// The survey.
    pub survey_id: ID,
    /// Why.
    pub reason: String,
    /// Retry controls.
    #[graphql(flatten)]
    pub options: CommandOptions,
}

/// Record that a dissatisfied respondent was followed up.
#[derive(InputObject)]
pub struct CompleteSurveyFollowUpInput {
    /// The survey.
    pub survey_id: ID,
    /// What came of it.
    pub outcome: String,
    /// Whether the respondent was reached.
    #[graphql(default = true)]
    pub contacted: bool,
    /// Retry controls.
    #[graphql(flatten)]
    pub options: CommandOptions,
}

/// What a survey mutation did.
pub struct SurveyPayload {
    outcome: CommandOutcome,
    survey_id: Uuid,
}

#[Object]
impl SurveyPayload {
    /// The command's id.
    async fn command_id(&self) -> Uuid {
        self.outcome.command_id
    }

    /// The survey's version after the command.
    async fn stream_version(&self) -> i64 {
        self.outcome.stream_version
    }

    /// Position of its latest event.
    async fn global_position(&self) -> Option<GlobalPosition> {
        self.outcome.global_position
    }

    /// Events recorded.
    async fn events_recorded(&self) -> i64 {
        self.outcome.events_recorded
    }

    /// True for the stored result of an earlier identical command.
    async fn deduplicated(&self) -> bool {
        self.outcome.deduplicated
    }

    /// The survey.
    async fn survey_id(&self) -> Uuid {
        self.survey_id
    }

    /// The survey as it is now (waits for the read model).
    async fn survey(&self, ctx: &Context<'_>) -> Result<Option<Survey>> {
        common::wait_for(ctx, read::NAME, self.outcome.global_position).await?;
        load(ctx, self.survey_id).await
    }
}

// ---------------------------------------------------------------------------------------------
// Policies and alerts

/// A dispatch policy.
#[derive(SimpleObject, Clone)]
pub struct SatisfactionPolicyView {
    /// Id.
    pub policy_id: Uuid,
    /// Name.
    pub name: String,
    /// Version.
    pub version: i64,
    /// From when it applies.
    pub effective_from: DateTime<Utc>,
    /// The template sent.
    pub template_id: Uuid,
    /// On resolution or closing.
    pub trigger: SurveyTrigger,
    /// Request types (empty: all).
    pub request_types: Vec<RequestType>,
    /// Category prefixes.
    pub category_prefixes: Vec<String>,
    /// Customer tiers.
    pub customer_tiers: Vec<ValueTier>,
    /// Channels the requests came in through.
    pub channels: Vec<Channel>,
    /// Share surveyed.
    pub sampling_percent: i32,
    /// The survey's channel (none: the request's).
    pub channel: Option<Channel>,
    /// Hours until expiry.
    pub expires_after_hours: i32,
    /// Reminders, hours after sending.
    pub remind_after_hours: Vec<i32>,
    /// Only customers who consented.
    pub require_consent: bool,
    /// The closed-loop rule.
    pub follow_up: Option<FollowUpRuleView>,
    /// Precedence.
    pub precedence: i32,
    /// Whether it is in force.
    pub active: bool,
}

fn policy_view(p: &kefu_domain::satisfaction_config::ActivePolicy, active: bool) -> SatisfactionPolicyView {
    let d = &p.policy;
    SatisfactionPolicyView {
        policy_id: d.policy_id,
        name: d.name.to_string(),
        version: p.version,
        effective_from: p.effective_from,
        template_id: d.template_id,
        trigger: d.trigger.into(),
        request_types: d.selector.request_types.iter().map(|x| (*x).into()).collect(),
        category_prefixes: d.selector.category_prefixes.iter().map(|x| x.to_string()).collect(),
        customer_tiers: d.selector.customer_tiers.iter().map(|x| (*x).into()).collect(),
        channels: d.selector.channels.iter().map(|x| (*x).into()).collect(),
        sampling_percent: d.sampling_percent as i32,
        channel: d.channel.map(Into::into),
        expires_after_hours: d.expires_after_hours as i32,
        remind_after_hours: d.remind_after_hours.iter().map(|h| *h as i32).collect(),
        require_consent: d.require_consent,
        follow_up: d.follow_up.as_ref().map(FollowUpRuleView::from),
        precedence: d.precedence,
        active,
    }
}

/// Create or replace a dispatch policy: which completed requests get which survey.
#[derive(InputObject)]
pub struct DefineSatisfactionPolicyInput {
    /// The policy (new when absent).
    pub policy_id: Option<Uuid>,
    /// Name.
    pub name: String,
    /// The template (must have a published version).
    pub template_id: Uuid,
    /// Send on resolution (default) or on closing.
    #[graphql(default_with = "SurveyTrigger::OnResolved")]
    pub trigger: SurveyTrigger,
    /// Request types (empty: all).
    #[graphql(default)]
    pub request_types: Vec<RequestType>,
    /// Category prefixes (empty: all).
    #[graphql(default)]
    pub category_prefixes: Vec<String>,
    /// Customer tiers (empty: all).
    #[graphql(default)]
    pub customer_tiers: Vec<ValueTier>,
    /// Channels the requests came in through (empty: all).
    #[graphql(default)]
    pub channels: Vec<Channel>,
    /// Share of matching requests surveyed, 1–100.
    #[graphql(default = 100)]
    pub sampling_percent: i32,
    /// The survey's channel (default: the request's).
    pub channel: Option<Channel>,
    /// Hours until a survey expires.
    #[graphql(default = 168)]
    pub expires_after_hours: i32,
    /// Reminders, in hours after sending.
    #[graphql(default)]
    pub remind_after_hours: Vec<i32>,
    /// Only customers who consented to surveys.
    #[graphql(default)]
    pub require_consent: bool,
    /// The closed-loop rule (none: no automatic follow-up).
    pub follow_up: Option<FollowUpRuleView>,
    /// Among matching policies the highest precedence wins.
    #[graphql(default)]
    pub precedence: i32,
    /// Retry controls.
    #[graphql(flatten)]
    pub options: CommandOptions,
}

/// Stop a dispatch policy.
#[derive(InputObject)]
pub struct RetireSatisfactionPolicyInput {
    /// Which.
    pub policy_id: Uuid,
    /// Why.
    pub reason: Option<String>,
    /// Retry controls.
    #[graphql(flatten)]
    pub options: CommandOptions,
}

/// An alert rule.
#[derive(SimpleObject, Clone)]
pub struct SatisfactionAlertRuleView {
    /// Id.
    pub rule_id: Uuid,
    /// Name.
    pub name: String,
    /// The index watched.
    pub index: SatisfactionIndexKind,
    /// Week or month.
    pub period: ReviewPeriod,
    /// Per department.
    pub per_department: bool,
    /// The drop that raises an alert, in the index's unit.
    pub drop: f64,
    /// Groups with fewer responses are not judged.
    pub min_responses: i32,
    /// Time zone of the periods.
    pub time_zone: String,
}

/// Create or replace an alert on an index drop against the previous period.
#[derive(InputObject)]
pub struct DefineSatisfactionAlertInput {
    /// The rule (new when absent).
    pub rule_id: Option<Uuid>,
    /// Name.
    pub name: String,
    /// The index watched.
    pub index: SatisfactionIndexKind,
    /// Week or month.
    pub period: ReviewPeriod,
    /// Per department (else the whole company).
    #[graphql(default = true)]
    pub per_department: bool,
    /// A drop of at least this much raises it (percentage points for CSAT, top-two-box and
    /// the composite, NPS points, CES points).
    pub drop: f64,
    /// Groups with fewer responses in either period are not judged.
    #[graphql(default = 30)]
    pub min_responses: i32,
    /// IANA time zone of the periods.
    #[graphql(default_with = "\"UTC\".to_string()")]
    pub time_zone: String,
    /// Retry controls.
    #[graphql(flatten)]
    pub options: CommandOptions,
}

/// Stop an alert rule.
#[derive(InputObject)]
pub struct RetireSatisfactionAlertInput {
    /// Which.
    pub rule_id: Uuid,
    /// Retry controls.
    #[graphql(flatten)]
    pub options: CommandOptions,
}

/// What a configuration mutation did.
#[derive(SimpleObject)]
pub struct SatisfactionConfigPayload {
    /// The command's outcome.
    #[graphql(flatten)]
    pub outcome: CommandOutcome,
    /// The policy or rule.
    pub id: Uuid,
}

/// An alert raised.
#[derive(SimpleObject, Clone)]
pub struct SatisfactionAlert {
    /// The rule.
    pub rule_id: Uuid,
    /// The period (`2026-11`, `2026-W47`).
    pub period: String,
    /// The department (none: the whole company).
    pub department: Option<String>,
    /// The index.
    pub index: String,
    /// Its value in the period before.
    pub previous: f64,
    /// Its value in the period.
    pub current: f64,
    /// Responses before and in the period.
    pub previous_responses: i32,
    /// …
    pub current_responses: i32,
    /// When raised.
    pub raised_at: DateTime<Utc>,
}

impl From<read::AlertView> for SatisfactionAlert {
    fn from(a: read::AlertView) -> Self {
        SatisfactionAlert {
            rule_id: a.rule_id,
            period: a.label,
            department: Some(a.department).filter(|d| !d.is_empty()),
            index: a.index,
            previous: a.previous_hundredths as f64 / 100.0,
            current: a.current_hundredths as f64 / 100.0,
            previous_responses: a.previous_responses,
            current_responses: a.current_responses,
            raised_at: a.raised_at,
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Indices

/// A share with its counts.
#[derive(SimpleObject, Clone, Copy, PartialEq)]
pub struct RatioFigures {
    /// In percent (none without answers).
    pub percent: Option<f64>,
    /// Answers that count.
    pub hits: i64,
    /// All answers.
    pub total: i64,
}

impl From<kefu_domain::satisfaction::Ratio> for RatioFigures {
    fn from(r: kefu_domain::satisfaction::Ratio) -> Self {
        RatioFigures { percent: r.percent(), hits: r.hits as i64, total: r.total as i64 }
    }
}

/// NPS with its counts.
#[derive(SimpleObject, Clone, Copy, PartialEq)]
pub struct NpsFigures {
    /// % promoters − % detractors (−100 to 100).
    pub score: Option<f64>,
    /// 9–10.
    pub promoters: i64,
    /// 7–8.
    pub passives: i64,
    /// 0–6.
    pub detractors: i64,
    /// All answers.
    pub total: i64,
}

/// Effort with its count.
#[derive(SimpleObject, Clone, Copy, PartialEq)]
pub struct CesFigures {
    /// Mean, 1–7 (7 = very easy).
    pub mean: Option<f64>,
    /// Answers.
    pub answers: i64,
}

/// One dimension's figures.
#[derive(SimpleObject, Clone, PartialEq)]
pub struct DimensionScore {
    /// The dimension's code.
    pub dimension: String,
    /// 1–5 perception answers.
    pub answers: i64,
    /// Their mean.
    pub mean: Option<f64>,
    /// Their top-two-box share.
    pub top_two_box: RatioFigures,
    /// Expectation answers.
    pub expectation_answers: i64,
    /// Their mean.
    pub expectation_mean: Option<f64>,
    /// Perception − expectation (gap model).
    pub gap: Option<f64>,
}

impl From<&DimensionFigures> for DimensionScore {
    fn from(d: &DimensionFigures) -> Self {
        DimensionScore {
            dimension: d.dimension.clone(),
            answers: d.answers as i64,
            mean: d.mean,
            top_two_box: d.top_two_box.into(),
            expectation_answers: d.expectation_answers as i64,
            expectation_mean: d.expectation_mean,
            gap: d.gap,
        }
    }
}

/// The indices of a group of responses.
#[derive(SimpleObject, Clone, PartialEq)]
pub struct SatisfactionFigures {
    /// Responses.
    pub responses: i64,
    /// Fewer responses than `minSample`: read the ratios with care.
    pub small_sample: bool,
    /// CSAT: 4–5 answers to the overall-satisfaction questions.
    pub csat: RatioFigures,
    /// Top-two-box (非常满意 + 比较满意) over every 1–5 perception answer.
    pub top_two_box: RatioFigures,
    /// Net promoter score.
    pub nps: NpsFigures,
    /// Customer effort score.
    pub ces: CesFigures,
    /// The indicator tree's weighted index (0–100).
    pub composite: Option<f64>,
    /// Per dimension.
    pub dimensions: Vec<DimensionScore>,
}

fn figures(ix: &Indices, min_sample: i64) -> SatisfactionFigures {
    SatisfactionFigures {
        responses: ix.responses as i64,
        small_sample: (ix.responses as i64) < min_sample,
        csat: ix.csat.into(),
        top_two_box: ix.top_two_box.into(),
        nps: NpsFigures {
            score: ix.nps.score(),
            promoters: ix.nps.promoters as i64,
            passives: ix.nps.passives as i64,
            detractors: ix.nps.detractors as i64,
            total: ix.nps.total() as i64,
        },
        ces: CesFigures { mean: ix.ces, answers: ix.ces_answers as i64 },
        composite: ix.composite,
        dimensions: ix.dimensions.iter().map(DimensionScore::from).collect(),
    }
}

/// One group of the index.
#[derive(SimpleObject, Clone)]
pub struct SatisfactionIndexRow {
    /// The group's values, one per dimension asked for.
    pub group: Vec<GroupKey>,
    /// Its indices.
    #[graphql(flatten)]
    pub figures: SatisfactionFigures,
    /// Surveys sent in the range (by sending time).
    pub surveys_sent: i64,
    /// Of which answered.
    pub surveys_answered: i64,
    /// Answered / sent, percent.
    pub response_rate: Option<f64>,
}

fn row(g: &IndexGroup, min_sample: i64) -> SatisfactionIndexRow {
    SatisfactionIndexRow {
        group: g
            .keys
            .iter()
            .map(|(dimension, value)| GroupKey { dimension: dimension.clone(), value: value.clone() })
            .collect(),
        figures: figures(&g.indices, min_sample),
        surveys_sent: g.surveys_sent,
        surveys_answered: g.surveys_answered,
        response_rate: g.response_rate(),
    }
}

/// Changes against the previous period, in the indices' units.
#[derive(SimpleObject, Clone, Default, PartialEq)]
pub struct IndexChange {
    /// CSAT, percentage points.
    pub csat: Option<f64>,
    /// Top-two-box, percentage points.
    pub top_two_box: Option<f64>,
    /// NPS points.
    pub nps: Option<f64>,
    /// CES points.
    pub ces: Option<f64>,
    /// Composite, points.
    pub composite: Option<f64>,
    /// Responses.
    pub responses: i64,
}

fn change(now: &Indices, before: &Indices) -> IndexChange {
    let d = |a: Option<f64>, b: Option<f64>| a.zip(b).map(|(a, b)| a - b);
    IndexChange {
        csat: d(now.csat.percent(), before.csat.percent()),
        top_two_box: d(now.top_two_box.percent(), before.top_two_box.percent()),
        nps: d(now.nps.score(), before.nps.score()),
        ces: d(now.ces, before.ces),
        composite: d(now.composite, before.composite),
        responses: now.responses as i64 - before.responses as i64,
    }
}

/// A period of a trend.
#[derive(SimpleObject, Clone)]
pub struct SatisfactionTrendPoint {
    /// The period (`2026-11-22`, `2026-W47`, `2026-11`).
    pub period: String,
    /// The group (other dimensions asked for).
    pub group: Vec<GroupKey>,
    /// Its indices.
    #[graphql(flatten)]
    pub figures: SatisfactionFigures,
    /// Surveys sent in the period.
    pub surveys_sent: i64,
    /// Of which answered.
    pub surveys_answered: i64,
    /// Against the previous period of the same group (none when it had no responses).
    pub change: Option<IndexChange>,
}

/// What indices can be grouped by.
#[derive(Enum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum SatisfactionGroupBy {
    /// The department evaluated.
    Department,
    /// The agent who served.
    Agent,
    /// The channel the request came in through.
    Channel,
    /// The channel the survey was answered (else sent) through.
    SurveyChannel,
    /// Request type.
    RequestType,
    /// Category.
    Category,
    /// Customer value tier.
    CustomerTier,
    /// Customer lifecycle segment.
    CustomerSegment,
    /// Template.
    Template,
    /// Day of the response.
    Day,
    /// ISO week of the response.
    Week,
    /// Month of the response.
    Month,
}

impl From<SatisfactionGroupBy> for IndexDimension {
    fn from(g: SatisfactionGroupBy) -> Self {
        match g {
            SatisfactionGroupBy::Department => IndexDimension::Department,
            SatisfactionGroupBy::Agent => IndexDimension::Agent,
            SatisfactionGroupBy::Channel => IndexDimension::Channel,
            SatisfactionGroupBy::SurveyChannel => IndexDimension::SurveyChannel,
            SatisfactionGroupBy::RequestType => IndexDimension::RequestType,
            SatisfactionGroupBy::Category => IndexDimension::Category,
            SatisfactionGroupBy::CustomerTier => IndexDimension::CustomerTier,
            SatisfactionGroupBy::CustomerSegment => IndexDimension::CustomerSegment,
            SatisfactionGroupBy::Template => IndexDimension::Template,
            SatisfactionGroupBy::Day => IndexDimension::Day,
            SatisfactionGroupBy::Week => IndexDimension::Week,
            SatisfactionGroupBy::Month => IndexDimension::Month,
        }
    }
}

/// A reporting period for trends.
#[derive(Enum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum TrendPeriod {
    /// Days.
    Day,
    /// ISO weeks.
    Week,
    /// Months.
    Month,
}

/// Which responses the indices cover.
#[derive(InputObject, Default)]
pub struct SatisfactionFilterInput {
    /// Customers (default) or internal departments; never mixed.
    #[graphql(default)]
    pub audience: SurveyAudience,
    /// Departments evaluated.
    #[graphql(default)]
    pub departments: Vec<String>,
    /// Agents.
    #[graphql(default)]
    pub agents: Vec<String>,
    /// Channels the requests came in through.
    #[graphql(default)]
    pub channels: Vec<Channel>,
    /// Request types.
    #[graphql(default)]
    pub request_types: Vec<RequestType>,
    /// Category prefix.
    pub category: Option<String>,
    /// Customer tiers.
    #[graphql(default)]
    pub customer_tiers: Vec<ValueTier>,
    /// Customer segments.
    #[graphql(default)]
    pub customer_segments: Vec<LifecycleSegment>,
    /// One template.
    pub template_id: Option<Uuid>,
    /// One customer.
    pub customer_id: Option<ID>,
}

fn index_filter(f: Option<SatisfactionFilterInput>, range: &TimeRange) -> Result<IndexFilter> {
    let f = f.unwrap_or_default();
    let customer_id = match &f.customer_id {
        Some(id) => Some(common::parse_id("Customer", "filter.customerId", id).map_err(|e| errors::domain(e, ""))?),
        None => None,
    };
    Ok(IndexFilter {
        audience: vocab::SurveyAudience::from(f.audience).as_str().to_string(),
        from: Some(range.from),
        to: Some(range.to),
        departments: f.departments,
        agents: f.agents,
        channels: f.channels.iter().map(|c| vocab::Channel::from(*c).as_str().to_string()).collect(),
        request_types: f.request_types.iter().map(|c| vocab::RequestType::from(*c).as_str().to_string()).collect(),
        category_prefix: f.category,
        customer_tiers: f.customer_tiers.iter().map(|c| vocab::ValueTier::from(*c).as_str().to_string()).collect(),
        customer_segments: f
            .customer_segments
            .iter()
            .map(|c| vocab::LifecycleSegment::from(*c).as_str().to_string())
            .collect(),
        template_id: f.template_id,
        customer_id,
    })
}

fn check_range(range: &TimeRange, time_zone: &str) -> Result<chrono_tz::Tz> {
    if range.to <= range.from {
        return Err(errors::invalid("range.to", "must be after range.from"));
    }
    time_zone
        .parse::<chrono_tz::Tz>()
        .map_err(|_| errors::invalid("timeZone", format!("`{time_zone}` is not an IANA time zone")))
}

// ---------------------------------------------------------------------------------------------
// The monthly service-quality report

/// A department's satisfaction in the report.
#[derive(SimpleObject, Clone)]
pub struct DepartmentQuality {
    /// The department.
    pub department: String,
    /// Its indices this month.
    #[graphql(flatten)]
    pub figures: SatisfactionFigures,
    /// Against last month (none when it had no responses then).
    pub change: Option<IndexChange>,
}

/// Complaints resolved with one root cause.
#[derive(SimpleObject, Clone)]
pub struct RootCauseCount {
    /// The root-cause code.
    pub root_cause: String,
    /// Complaints first resolved this month with it.
    pub count: i64,
    /// The same last month.
    pub last_month: i64,
}

/// The month's complaints.
#[derive(SimpleObject, Clone)]
pub struct ComplaintFigures {
    /// Filed (duplicates merged into another count once).
    pub filed: i64,
    /// Filed last month.
    pub filed_last_month: i64,
    /// First resolved.
    pub resolved: i64,
    /// By root cause.
    pub by_root_cause: Vec<RootCauseCount>,
}

/// SLA compliance of one metric in the report.
#[derive(SimpleObject, Clone)]
pub struct SlaMonthFigures {
    /// The metric.
    pub metric: SlaMetric,
    /// Deadlines met.
    pub hit: i64,
    /// Deadlines missed.
    pub missed: i64,
    /// Hit / (hit + missed), percent.
    pub compliance_percent: Option<f64>,
    /// The same last month.
    pub last_month_percent: Option<f64>,
}

/// An indicator often answered with dissatisfaction.
#[derive(SimpleObject, Clone)]
pub struct DissatisfactionReason {
    /// The indicator (process / step / touchpoint).
    pub indicator: String,
    /// The department responsible.
    pub department: String,
    /// Dissatisfied answers.
    pub dissatisfied: i64,
    /// All its answers.
    pub answers: i64,
}

/// Follow-ups of the month.
#[derive(SimpleObject, Clone)]
pub struct FollowUpFigures {
    /// Opened this month.
    pub opened: i64,
    /// Of which done.
    pub completed: i64,
    /// Of which open and overdue now.
    pub overdue: i64,
}

/// The monthly service-quality report (服务质量月报).
#[derive(SimpleObject, Clone)]
pub struct ServiceQualityReport {
    /// The month, `YYYY-MM`.
    pub month: String,
    /// Its start in the report's time zone.
    pub from: DateTime<Utc>,
    /// Its end.
    pub to: DateTime<Utc>,
    /// Satisfaction this month.
    pub satisfaction: SatisfactionIndexRow,
    /// And last month.
    pub last_month: SatisfactionIndexRow,
    /// The change.
    pub change: IndexChange,
    /// Per department, with their change.
    pub departments: Vec<DepartmentQuality>,
    /// Complaints.
    pub complaints: ComplaintFigures,
    /// SLA compliance per metric.
    pub sla: Vec<SlaMonthFigures>,
    /// The indicators most often answered with dissatisfaction, and who is responsible.
    pub top_dissatisfaction: Vec<DissatisfactionReason>,
    /// Follow-ups.
    pub follow_ups: FollowUpFigures,
    /// Alerts raised during the month.
    pub alerts: Vec<SatisfactionAlert>,
}

fn month_bounds(month: &str, tz: chrono_tz::Tz) -> Result<(DateTime<Utc>, DateTime<Utc>, DateTime<Utc>)> {
    let date = NaiveDate::parse_from_str(&format!("{month}-01"), "%Y-%m-%d")
        .map_err(|_| errors::invalid("month", format!("`{month}` is not a month (YYYY-MM)")))?;
    let at = |d: NaiveDate| {
        kefu_domain::satisfaction::Period::containing(
            vocab::ReviewPeriod::Month,
            tz,
            d.and_hms_opt(12, 0, 0).map(|t| t.and_utc()).unwrap_or_default(),
        )
    };
    let this = at(date);
    let previous = this.previous(vocab::ReviewPeriod::Month, tz);
    Ok((previous.start, this.start, this.end))
}

// ---------------------------------------------------------------------------------------------
// Queries

/// Satisfaction queries.
#[derive(Default)]
pub struct SatisfactionQuery;

#[Object]
impl SatisfactionQuery {
    /// A survey template (the newest version, or the one asked for).
    async fn survey_template(
        &self,
        ctx: &Context<'_>,
        id: Uuid,
        version: Option<i32>,
    ) -> Result<Option<SurveyTemplateView>> {
        common::actor(ctx)?;
        let t = match common::state(ctx).commands.template(id).await {
            Ok(t) => t,
            Err(kefu_app::AppError::Domain(kefu_domain::DomainError::NotFound { .. })) => return Ok(None),
            Err(e) => return Err(errors::app(e, "")),
        };
        let version = match version {
            Some(v) if v > 0 => v as u32,
            Some(_) => return Err(errors::invalid("version", "versions start at 1")),
            None => t.versions.keys().next_back().copied().unwrap_or(1),
        };
        Ok(t.versions.get(&version).map(|c| template_view(id, version, c, Some(&t), t.published.contains(&version))))
    }

    /// Every survey template, newest version each, by name.
    async fn survey_templates(&self, ctx: &Context<'_>) -> Result<Vec<SurveyTemplateView>> {
        common::actor(ctx)?;
        let mut tx = read_conn(ctx).await?;
        let rows = read::templates(&mut tx).await.map_err(errors::projection)?;
        Ok(rows.iter().map(|r| template_view(r.template_id, r.version as u32, &r.content, None, r.published)).collect())
    }

    /// One survey.
    async fn survey(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "`Survey:<uuid>` or the bare UUID.")] id: ID,
        #[graphql(desc = "Wait (bounded) until the view reflects this position.")] min_position: Option<GlobalPosition>,
    ) -> Result<Option<Survey>> {
        common::actor(ctx)?;
        let id = survey_id("id", &id)?;
        common::wait_for(ctx, read::NAME, min_position).await?;
        load(ctx, id).await
    }

    /// Surveys with a follow-up (the closed loop's work list), open and most urgent first.
    #[allow(clippy::too_many_arguments)]
    async fn survey_follow_ups(
        &self,
        ctx: &Context<'_>,
        #[graphql(default = true, desc = "Only open ones.")] open_only: bool,
        #[graphql(default, desc = "Only open ones past their due time.")] overdue_only: bool,
        department: Option<String>,
        assignee: Option<String>,
        #[graphql(default = 50, desc = "At most this many, 1 to 200.")] first: i32,
        min_position: Option<GlobalPosition>,
    ) -> Result<Vec<Survey>> {
        common::actor(ctx)?;
        if !(1..=200).contains(&first) {
            return Err(errors::invalid("first", "between 1 and 200"));
        }
        common::wait_for(ctx, read::NAME, min_position).await?;
        let mut tx = read_conn(ctx).await?;
        let filter = read::FollowUpFilter { open_only, overdue_at: overdue_only.then(Utc::now), department, assignee };
        let views = read::follow_ups(&mut tx, &filter, i64::from(first)).await.map_err(errors::projection)?;
        drop(tx);
        with_templates(ctx, views).await
    }

    /// Satisfaction indices per group: CSAT, top-two-box, NPS, CES, the weighted composite,
    /// means and gaps per dimension, response rate; every ratio with its counts.
    #[allow(clippy::too_many_arguments)]
    async fn satisfaction_index(
        &self,
        ctx: &Context<'_>,
        filter: Option<SatisfactionFilterInput>,
        #[graphql(default)] group_by: Vec<SatisfactionGroupBy>,
        #[graphql(desc = "Also group by day, week or month (of the response).")] period: Option<TrendPeriod>,
        range: TimeRange,
        #[graphql(default_with = "\"UTC\".to_string()", desc = "IANA time zone for periods.")] time_zone: String,
        #[graphql(default = 30, desc = "Groups with fewer responses are flagged `smallSample`.")] min_sample: i32,
        min_position: Option<GlobalPosition>,
    ) -> Result<Vec<SatisfactionIndexRow>> {
        common::actor(ctx)?;
        check_range(&range, &time_zone)?;
        common::wait_for(ctx, read::NAME, min_position).await?;
        let mut dims: Vec<IndexDimension> = Vec::new();
        if let Some(p) = period {
            dims.push(trend_dimension(p));
        }
        dims.extend(group_by.iter().map(|g| IndexDimension::from(*g)));
        let filter = index_filter(filter, &range)?;
        let mut tx = read_conn(ctx).await?;
        let groups = read::satisfaction_index(&mut tx, &filter, &dims, &time_zone).await.map_err(errors::projection)?;
        Ok(groups.iter().map(|g| row(g, i64::from(min_sample))).collect())
    }

    /// The indices per period with the change against the period before (per group).
    #[allow(clippy::too_many_arguments)]
    async fn satisfaction_trend(
        &self,
        ctx: &Context<'_>,
        filter: Option<SatisfactionFilterInput>,
        period: TrendPeriod,
        range: TimeRange,
        #[graphql(default)] group_by: Vec<SatisfactionGroupBy>,
        #[graphql(default_with = "\"UTC\".to_string()")] time_zone: String,
        #[graphql(default = 30)] min_sample: i32,
        min_position: Option<GlobalPosition>,
    ) -> Result<Vec<SatisfactionTrendPoint>> {
        common::actor(ctx)?;
        let tz = check_range(&range, &time_zone)?;
        if group_by
            .iter()
            .any(|g| matches!(g, SatisfactionGroupBy::Day | SatisfactionGroupBy::Week | SatisfactionGroupBy::Month))
        {
            return Err(errors::invalid("groupBy", "the period is given by `period`"));
        }
        common::wait_for(ctx, read::NAME, min_position).await?;
        // One period more before the range, for the first period's change.
        let before = match period {
            TrendPeriod::Day => range.from - chrono::Duration::days(1),
            TrendPeriod::Week => range.from - chrono::Duration::days(7),
            TrendPeriod::Month => {
                kefu_domain::satisfaction::Period::containing(vocab::ReviewPeriod::Month, tz, range.from)
                    .previous(vocab::ReviewPeriod::Month, tz)
                    .start
            }
        };
        let mut dims = vec![trend_dimension(period)];
        dims.extend(group_by.iter().map(|g| IndexDimension::from(*g)));
        let extended = TimeRange { from: before, to: range.to };
        let filter = index_filter(filter, &extended)?;
        let mut tx = read_conn(ctx).await?;
        let groups = read::satisfaction_index(&mut tx, &filter, &dims, &time_zone).await.map_err(errors::projection)?;
        let first_label = label_of(period, tz, range.from);
        let mut last: BTreeMap<Vec<(String, String)>, (String, Indices)> = BTreeMap::new();
        let mut out = Vec::new();
        for g in &groups {
            let label = g.keys[0].1.clone();
            let rest: Vec<(String, String)> = g.keys[1..].to_vec();
            // The change is against the period just before, when it had responses.
            let before = previous_label(period, &label);
            let prev = last
                .insert(rest.clone(), (label.clone(), g.indices.clone()))
                .filter(|(l, _)| Some(l) == before.as_ref())
                .map(|(_, ix)| ix);
            if label < first_label {
                continue;
            }
            out.push(SatisfactionTrendPoint {
                period: label,
                group: rest.into_iter().map(|(dimension, value)| GroupKey { dimension, value }).collect(),
                figures: figures(&g.indices, i64::from(min_sample)),
                surveys_sent: g.surveys_sent,
                surveys_answered: g.surveys_answered,
                change: prev.filter(|p| p.responses > 0).map(|p| change(&g.indices, &p)),
            });
        }
        Ok(out)
    }

    /// The monthly service-quality report (服务质量月报): satisfaction and its change,
    /// per department; complaints by root cause; SLA compliance; the indicators most often
    /// answered with dissatisfaction and the departments responsible; follow-ups; alerts.
    async fn service_quality_report(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "`YYYY-MM`.")] month: String,
        #[graphql(default_with = "\"UTC\".to_string()")] time_zone: String,
        #[graphql(default)] audience: SurveyAudience,
        #[graphql(default = 30)] min_sample: i32,
    ) -> Result<ServiceQualityReport> {
        common::actor(ctx)?;
        let tz: chrono_tz::Tz = time_zone
            .parse()
            .map_err(|_| errors::invalid("timeZone", format!("`{time_zone}` is not an IANA time zone")))?;
        let (last_start, from, to) = month_bounds(&month, tz)?;
        let audience_str = vocab::SurveyAudience::from(audience).as_str().to_string();
        let min = i64::from(min_sample);
        let mut tx = read_conn(ctx).await?;
        let filter = |a: DateTime<Utc>, b: DateTime<Utc>| IndexFilter {
            audience: audience_str.clone(),
            from: Some(a),
            to: Some(b),
            ..IndexFilter::default()
        };
        let overall = |g: Vec<IndexGroup>| {
            g.into_iter().next().unwrap_or(IndexGroup {
                keys: vec![],
                indices: Indices::default(),
                surveys_sent: 0,
                surveys_answered: 0,
            })
        };
        let this = overall(
            read::satisfaction_index(&mut tx, &filter(from, to), &[], &time_zone).await.map_err(errors::projection)?,
        );
        let last = overall(
            read::satisfaction_index(&mut tx, &filter(last_start, from), &[], &time_zone)
                .await
                .map_err(errors::projection)?,
        );
        let by_dept_now =
            read::satisfaction_index(&mut tx, &filter(from, to), &[IndexDimension::Department], &time_zone)
                .await
                .map_err(errors::projection)?;
        let by_dept_before =
            read::satisfaction_index(&mut tx, &filter(last_start, from), &[IndexDimension::Department], &time_zone)
                .await
                .map_err(errors::projection)?;
        let departments = by_dept_now
            .iter()
            .filter(|g| g.indices.responses > 0)
            .map(|g| DepartmentQuality {
                department: g.keys[0].1.clone(),
                figures: figures(&g.indices, min),
                change: by_dept_before
                    .iter()
                    .find(|b| b.keys == g.keys && b.indices.responses > 0)
                    .map(|b| change(&g.indices, &b.indices)),
            })
            .collect();
        let top = read::top_dissatisfaction(&mut tx, &audience_str, from, to, 10).await.map_err(errors::projection)?;
        let (opened, completed, overdue) =
            read::follow_up_counts(&mut tx, from, to, Utc::now()).await.map_err(errors::projection)?;
        let alerts = read::alerts(&mut tx, from, to).await.map_err(errors::projection)?;
        drop(tx);

        let mut rtx = common::read(ctx, service_requests::NAME).await?;
        let now_c = service_requests::complaint_summary(&mut rtx, from, to).await.map_err(errors::projection)?;
        let last_c =
            service_requests::complaint_summary(&mut rtx, last_start, from).await.map_err(errors::projection)?;
        let sla_now =
            service_requests::compliance(&mut rtx, from, to, &[], &time_zone).await.map_err(errors::projection)?;
        let sla_last = service_requests::compliance(&mut rtx, last_start, from, &[], &time_zone)
            .await
            .map_err(errors::projection)?;
        let pct = |hit: i64, missed: i64| (hit + missed > 0).then(|| hit as f64 * 100.0 / (hit + missed) as f64);
        let mut causes: Vec<RootCauseCount> = now_c
            .by_root_cause
            .iter()
            .map(|(c, n)| RootCauseCount {
                root_cause: c.clone(),
                count: *n,
                last_month: last_c.by_root_cause.iter().find(|(x, _)| x == c).map(|(_, n)| *n).unwrap_or(0),
            })
            .collect();
        for (c, n) in &last_c.by_root_cause {
            if !causes.iter().any(|x| &x.root_cause == c) {
                causes.push(RootCauseCount { root_cause: c.clone(), count: 0, last_month: *n });
            }
        }
        Ok(ServiceQualityReport {
            month,
            from,
            to,
            change: change(&this.indices, &last.indices),
            satisfaction: row(&this, min),
            last_month: row(&last, min),
            departments,
            complaints: ComplaintFigures {
                filed: now_c.filed,
                filed_last_month: last_c.filed,
                resolved: now_c.resolved,
                by_root_cause: causes,
            },
            sla: sla_now
                .iter()
                .filter_map(|r| {
                    Some(SlaMonthFigures {
                        metric: r.metric.parse::<vocab::SlaMetric>().ok()?.into(),
                        hit: r.hit,
                        missed: r.missed,
                        compliance_percent: pct(r.hit, r.missed),
                        last_month_percent: sla_last
                            .iter()
                            .find(|l| l.metric == r.metric)
                            .and_then(|l| pct(l.hit, l.missed)),
                    })
                })
                .collect(),
            top_dissatisfaction: top
                .into_iter()
                .map(|t| DissatisfactionReason {
                    indicator: t.indicator,
                    department: t.department,
                    dissatisfied: t.dissatisfied,
                    answers: t.answers,
                })
                .collect(),
            follow_ups: FollowUpFigures { opened, completed, overdue },
            alerts: alerts.into_iter().map(Into::into).collect(),
        })
    }

    /// Dispatch policies (active and retired).
    async fn satisfaction_policies(&self, ctx: &Context<'_>) -> Result<Vec<SatisfactionPolicyView>> {
        common::actor(ctx)?;
        let config = common::state(ctx).commands.satisfaction_configuration().await.map_err(|e| errors::app(e, ""))?;
        let mut out: Vec<SatisfactionPolicyView> = config.policies.values().map(|p| policy_view(p, true)).collect();
        out.extend(config.retired.values().map(|p| policy_view(p, false)));
        Ok(out)
    }

    /// Alert rules in force.
    async fn satisfaction_alert_rules(&self, ctx: &Context<'_>) -> Result<Vec<SatisfactionAlertRuleView>> {
        common::actor(ctx)?;
        let config = common::state(ctx).commands.satisfaction_configuration().await.map_err(|e| errors::app(e, ""))?;
        Ok(config
            .alert_rules
            .values()
            .map(|r| SatisfactionAlertRuleView {
                rule_id: r.rule_id,
                name: r.name.to_string(),
                index: r.index.into(),
                period: r.period.into(),
                per_department: r.per_department,
                drop: f64::from(r.drop_hundredths) / 100.0,
                min_responses: r.min_responses as i32,
                time_zone: r.time_zone.clone(),
            })
            .collect())
    }

    /// Alerts raised in a range, newest first.
    async fn satisfaction_alerts(
        &self,
        ctx: &Context<'_>,
        range: TimeRange,
        min_position: Option<GlobalPosition>,
    ) -> Result<Vec<SatisfactionAlert>> {
        common::actor(ctx)?;
        check_range(&range, "UTC")?;
        common::wait_for(ctx, read::NAME, min_position).await?;
        let mut tx = read_conn(ctx).await?;
        Ok(read::alerts(&mut tx, range.from, range.to)
            .await
            .map_err(errors::projection)?
            .into_iter()
            .map(Into::into)
            .collect())
    }
}

fn trend_dimension(p: TrendPeriod) -> IndexDimension {
    match p {
        TrendPeriod::Day => IndexDimension::Day,
        TrendPeriod::Week => IndexDimension::Week,
        TrendPeriod::Month => IndexDimension::Month,
    }
}

/// The label of the period before a period's label (labels are local calendar periods).
fn previous_label(p: TrendPeriod, label: &str) -> Option<String> {
    match p {
        TrendPeriod::Day => {
            let d = NaiveDate::parse_from_str(label, "%Y-%m-%d").ok()?;
            Some((d - chrono::Duration::days(1)).format("%Y-%m-%d").to_string())
        }
        TrendPeriod::Week => {
            let (y, w) = label.split_once("-W")?;
            let monday = NaiveDate::from_isoywd_opt(y.parse().ok()?, w.parse().ok()?, chrono::Weekday::Mon)?;
            let prev = (monday - chrono::Duration::days(7)).iso_week();
            Some(format!("{}-W{:02}", prev.year(), prev.week()))
        }
        TrendPeriod::Month => {
            let d = NaiveDate::parse_from_str(&format!("{label}-01"), "%Y-%m-%d").ok()?;
            let prev = (d - chrono::Duration::days(1)).with_day(1)?;
            Some(prev.format("%Y-%m").to_string())
        }
    }
}

fn label_of(p: TrendPeriod, tz: chrono_tz::Tz, at: DateTime<Utc>) -> String {
    match p {
        TrendPeriod::Day => at.with_timezone(&tz).format("%Y-%m-%d").to_string(),
        TrendPeriod::Week => kefu_domain::satisfaction::Period::containing(vocab::ReviewPeriod::Week, tz, at).label,
        TrendPeriod::Month => kefu_domain::satisfaction::Period::containing(vocab::ReviewPeriod::Month, tz, at).label,
    }
}

// ---------------------------------------------------------------------------------------------
// Mutations

/// Satisfaction commands.
#[derive(Default)]
pub struct SatisfactionMutation;

fn hours(v: &mut Validator, field: &str, list: &[i32]) -> Vec<u32> {
    list.iter()
        .enumerate()
        .filter_map(|(i, h)| {
            if *h <= 0 {
                v.fail(format!("input.{field}[{i}]"), "hours are positive");
                None
            } else {
                Some(*h as u32)
            }
        })
        .collect()
}

#[Object]
impl SatisfactionMutation {
    /// Draft a survey template version (the first; a replacement of the current draft; or the
    /// next version after a published one). Quality managers, supervisors and admins.
    async fn define_survey_template(
        &self,
        ctx: &Context<'_>,
        input: DefineSurveyTemplateInput,
    ) -> Result<SurveyTemplatePayload> {
        require_quality_role(ctx)?;
        let meta = common::meta(ctx, &input.options)?;
        let mut v = Validator::default();
        let content = parse_template(&mut v, &input);
        v.finish()?;
        let content = content.ok_or_else(lost)?;
        let template_id = input.template_id.unwrap_or_else(|| meta.new_entity_id("survey_template"));
        let command_id = meta.command_id.unwrap_or_default();
        let commands = &common::state(ctx).commands;
        let outcome = commands
            .survey_template(template_id, SurveyTemplateCommand::Define { template_id, content: content.clone() }, meta)
            .await
            .map_err(|e| errors::app(e, "input"))?;
        let t = commands.template(template_id).await.map_err(|e| errors::app(e, ""))?;
        let version = t.versions.iter().rev().find(|(_, c)| **c == content).map(|(v, _)| *v).unwrap_or(1);
        Ok(SurveyTemplatePayload {
            outcome: CommandOutcome::new(command_id, &outcome),
            template_id,
            version: version as i32,
        })
    }

    /// Publish a drafted version: surveys sent from now on use it; it never changes again.
    async fn publish_survey_template(
        &self,
        ctx: &Context<'_>,
        input: PublishSurveyTemplateInput,
    ) -> Result<SurveyTemplatePayload> {
        require_quality_role(ctx)?;
        let meta = common::meta(ctx, &input.options)?;
        if input.version < 1 {
            return Err(errors::invalid("input.version", "versions start at 1"));
        }
        let command_id = meta.command_id.unwrap_or_default();
        let outcome = common::state(ctx)
            .commands
            .survey_template(input.template_id, SurveyTemplateCommand::Publish { version: input.version as u32 }, meta)
            .await
            .map_err(|e| errors::app(e, "input"))?;
        Ok(SurveyTemplatePayload {
            outcome: CommandOutcome::new(command_id, &outcome),
            template_id: input.template_id,
            version: input.version,
        })
    }

    /// Send a survey by hand (after a service, or not about a request).
    async fn send_survey(&self, ctx: &Context<'_>, input: SendSurveyInput) -> Result<SurveyPayload> {
        let meta = common::meta(ctx, &input.options)?;
        let mut v = Validator::default();
        let customer =
            common::parse_id("Customer", "customerId", &input.customer_id).map_err(|e| errors::domain(e, "input"))?;
        let request = match &input.request_id {
            Some(r) => {
                Some(common::parse_id("ServiceRequest", "requestId", r).map_err(|e| errors::domain(e, "input"))?)
            }
            None => None,
        };
        let department = input.department.as_deref().and_then(|d| v.check("input", Label::parse("department", d)));
        let campaign = input.campaign.as_deref().and_then(|d| v.check("input", Label::parse("campaign", d)));
        let reminders = hours(&mut v, "remindAfterHours", &input.remind_after_hours);
        let follow_up = input.follow_up.as_ref().and_then(|f| f.parse(&mut v, "input"));
        if input.expires_after_hours <= 0 {
            v.fail("input.expiresAfterHours", "hours are positive");
        }
        if input.template_version.is_some_and(|x| x < 1) {
            v.fail("input.templateVersion", "versions start at 1");
        }
        v.finish()?;
        let draft = SurveyDraft {
            survey_id: input.survey_id,
            template_id: input.template_id,
            template_version: input.template_version.map(|x| x as u32),
            customer_id: customer,
            request_id: request,
            department,
            trigger: if input.campaign.is_some() {
                vocab::SurveyTrigger::Campaign
            } else {
                vocab::SurveyTrigger::Manual
            },
            campaign,
            policy_id: None,
            channel: input.channel.map(Into::into),
            expires_after_hours: input.expires_after_hours as u32,
            remind_after_hours: reminders,
            follow_up,
            require_consent: input.require_consent,
        };
        let command_id = meta.command_id.unwrap_or_default();
        let outcome =
            common::state(ctx).commands.send_survey(draft, meta).await.map_err(|e| errors::app(e, "input"))?;
        Ok(SurveyPayload { outcome: CommandOutcome::new(command_id, &outcome), survey_id: outcome.stream_id })
    }

    /// Send a survey to every customer of a segment (periodic survey). Customers without
    /// consent are skipped when asked; a retry with the same `commandId` sends nothing twice.
    async fn send_survey_campaign(
        &self,
        ctx: &Context<'_>,
        input: SendSurveyCampaignInput,
    ) -> Result<SurveyCampaignPayload> {
        require_quality_role(ctx)?;
        let meta = common::meta(ctx, &input.options)?;
        let mut v = Validator::default();
        let campaign = v.check("input", Label::parse("campaign", &input.campaign));
        let department = input.department.as_deref().and_then(|d| v.check("input", Label::parse("department", d)));
        let reminders = hours(&mut v, "remindAfterHours", &input.remind_after_hours);
        let follow_up = input.follow_up.as_ref().and_then(|f| f.parse(&mut v, "input"));
        if !(1..=10_000).contains(&input.max_recipients) {
            v.fail("input.maxRecipients", "between 1 and 10000");
        }
        if input.expires_after_hours <= 0 {
            v.fail("input.expiresAfterHours", "hours are positive");
        }
        v.finish()?;
        let campaign = campaign.ok_or_else(lost)?;
        let campaign_id = Uuid::new_v5(&meta.command_id.unwrap_or_else(Uuid::now_v7), b"campaign");
        let s = &input.segment;
        let filter = customer360::CustomerFilter {
            kind: s.kind.map(|k| vocab::CustomerKind::from(k).as_str().to_string()),
            value_tier: s.value_tier.map(|k| vocab::ValueTier::from(k).as_str().to_string()),
            lifecycle_segment: s.lifecycle_segment.map(|k| vocab::LifecycleSegment::from(k).as_str().to_string()),
            industry: s.industry.map(|k| vocab::Industry::from(k).as_str().to_string()),
            key_account: s.key_account,
            ..Default::default()
        };
        // The recipients, from the customer 360 (at most maxRecipients).
        let mut recipients = Vec::new();
        {
            let mut tx = common::read(ctx, customer360::NAME).await?;
            let mut after = None;
            loop {
                let (page, more) = customer360::list_customers(
                    &mut tx,
                    &filter,
                    customer360::CustomerOrder::Name,
                    100,
                    after.as_ref(),
                )
                .await
                .map_err(errors::projection)?;
                for c in &page {
                    recipients.push(c.customer_id);
                }
                if recipients.len() > input.max_recipients as usize {
                    return Err(errors::invalid(
                        "input.maxRecipients",
                        format!(
                            "more than {} customers match; narrow the segment or raise maxRecipients",
                            input.max_recipients
                        ),
                    ));
                }
                match (more, page.last()) {
                    (true, Some(last)) => {
                        after = Some(customer360::CustomerCursor::Name(
                            last.profile.name.as_str().to_lowercase(),
                            last.customer_id,
                        ))
                    }
                    _ => break,
                }
            }
        }
        let commands = &common::state(ctx).commands;
        let (mut sent, mut skipped, mut reasons, mut last) = (0, 0, Vec::new(), None);
        for customer in recipients {
            let mut m = meta.clone();
            m.command_id = Some(Uuid::new_v5(&campaign_id, customer.as_bytes()));
            m.fingerprint = None;
            let draft = SurveyDraft {
                survey_id: Some(Uuid::new_v5(&campaign_id, customer.as_bytes())),
                template_id: input.template_id,
                template_version: None,
                customer_id: customer,
                request_id: None,
                department: department.clone(),
                trigger: vocab::SurveyTrigger::Campaign,
                campaign: Some(campaign.clone()),
                policy_id: None,
                channel: Some(input.channel.into()),
                expires_after_hours: input.expires_after_hours as u32,
                remind_after_hours: reminders.clone(),
                follow_up,
                require_consent: input.require_consent,
            };
            match commands.send_survey(draft, m).await {
                Ok(o) => {
                    sent += 1;
                    last = o.last_position.or(last);
                }
                Err(kefu_app::AppError::Domain(e)) => {
                    skipped += 1;
                    if reasons.len() < 20 {
                        reasons.push(format!("{customer}: {e}"));
                    }
                }
                Err(e) => return Err(errors::app(e, "input")),
            }
        }
        Ok(SurveyCampaignPayload {
            campaign_id,
            sent,
            skipped,
            skipped_reasons: reasons,
            global_position: last.map(GlobalPosition),
        })
    }

    /// Record a response: every answer given so far (a later response replaces a partial
    /// one; a second complete one follows the template's rule). A dissatisfied answer opens the
    /// survey's follow-up.
    async fn record_survey_response(
        &self,
        ctx: &Context<'_>,
        input: RecordSurveyResponseInput,
    ) -> Result<SurveyPayload> {
        let meta = common::meta(ctx, &input.options)?;
        let id = survey_id("input.surveyId", &input.survey_id)?;
        let mut v = Validator::default();
        let mut answers = Vec::new();
        for (i, a) in input.answers.iter().enumerate() {
            let question = v.check("input", Label::parse(&format!("answers[{i}].question"), &a.question));
            let text = a.text.as_deref().and_then(|t| v.check("input", Text::parse(&format!("answers[{i}].text"), t)));
            if let Some(question) = question {
                answers.push(Answer { question, value: a.value, text });
            }
        }
        v.finish()?;
        let command_id = meta.command_id.unwrap_or_default();
        let outcome = common::state(ctx)
            .commands
            .record_survey_response(id, answers, input.complete, input.channel.map(Into::into), meta)
            .await
            .map_err(|e| errors::app(e, "input"))?;
        Ok(SurveyPayload { outcome: CommandOutcome::new(command_id, &outcome), survey_id: id })
    }

    /// Stop a survey taking answers (before it is answered).
    async fn expire_survey(&self, ctx: &Context<'_>, input: ExpireSurveyInput) -> Result<SurveyPayload> {
        let meta = common::meta(ctx, &input.options)?;
        let id = survey_id("input.surveyId", &input.survey_id)?;
        let mut v = Validator::default();
        let reason = v.check("input", Text::parse("reason", &input.reason));
        v.finish()?;
        let command_id = meta.command_id.unwrap_or_default();
        let command = SurveyCommand::Expire { at: Utc::now(), reason, manual: true };
        let outcome =
            common::state(ctx).commands.survey(id, command, meta).await.map_err(|e| errors::app(e, "input"))?;
        Ok(SurveyPayload { outcome: CommandOutcome::new(command_id, &outcome), survey_id: id })
    }

    /// Record that a dissatisfied respondent was followed up.
    async fn complete_survey_follow_up(
        &self,
        ctx: &Context<'_>,
        input: CompleteSurveyFollowUpInput,
    ) -> Result<SurveyPayload> {
        let meta = common::meta(ctx, &input.options)?;
        let id = survey_id("input.surveyId", &input.survey_id)?;
        let mut v = Validator::default();
        let outcome_text = v.check("input", Text::parse("outcome", &input.outcome));
        v.finish()?;
        let by = kefu_app::service_requests::staff_of(&meta).ok();
        let command_id = meta.command_id.unwrap_or_default();
        let command = SurveyCommand::CompleteFollowUp {
            at: Utc::now(),
            outcome: outcome_text.ok_or_else(lost)?,
            contacted: input.contacted,
            by,
        };
        let outcome =
            common::state(ctx).commands.survey(id, command, meta).await.map_err(|e| errors::app(e, "input"))?;
        Ok(SurveyPayload { outcome: CommandOutcome::new(command_id, &outcome), survey_id: id })
    }

    /// Create or replace a dispatch policy: which resolved or closed requests get which
    /// survey, sampled how, through which channel, with which follow-up rule. Applies to
    /// services completed from now on.
    async fn define_satisfaction_policy(
        &self,
        ctx: &Context<'_>,
        input: DefineSatisfactionPolicyInput,
    ) -> Result<SatisfactionConfigPayload> {
        require_quality_role(ctx)?;
        let meta = common::meta(ctx, &input.options)?;
        let mut v = Validator::default();
        let name = v.check("input", Name::parse("name", &input.name));
        let prefixes: Vec<Category> = input
            .category_prefixes
            .iter()
            .enumerate()
            .filter_map(|(i, p)| v.check("input", Category::parse(&format!("categoryPrefixes[{i}]"), p)))
            .collect();
        let reminders = hours(&mut v, "remindAfterHours", &input.remind_after_hours);
        let follow_up = input.follow_up.as_ref().and_then(|f| f.parse(&mut v, "input"));
        if input.sampling_percent < 0 || input.expires_after_hours < 0 {
            v.fail("input", "samplingPercent and expiresAfterHours are positive");
        }
        v.finish()?;
        let policy_id = input.policy_id.unwrap_or_else(|| meta.new_entity_id("satisfaction_policy"));
        let policy = DispatchPolicy {
            policy_id,
            name: name.ok_or_else(lost)?,
            template_id: input.template_id,
            trigger: input.trigger.into(),
            selector: DispatchSelector {
                request_types: input.request_types.iter().map(|x| (*x).into()).collect(),
                category_prefixes: prefixes,
                customer_tiers: input.customer_tiers.iter().map(|x| (*x).into()).collect(),
                channels: input.channels.iter().map(|x| (*x).into()).collect(),
            },
            sampling_percent: input.sampling_percent as u32,
            channel: input.channel.map(Into::into),
            expires_after_hours: input.expires_after_hours as u32,
            remind_after_hours: reminders,
            require_consent: input.require_consent,
            follow_up,
            precedence: input.precedence,
        };
        let command_id = meta.command_id.unwrap_or_default();
        let outcome = common::state(ctx)
            .commands
            .configure_satisfaction(SatisfactionConfigCommand::DefineDispatchPolicy { policy, at: Utc::now() }, meta)
            .await
            .map_err(|e| errors::app(e, "input"))?;
        Ok(SatisfactionConfigPayload { outcome: CommandOutcome::new(command_id, &outcome), id: policy_id })
    }

    /// Stop a dispatch policy.
    async fn retire_satisfaction_policy(
        &self,
        ctx: &Context<'_>,
        input: RetireSatisfactionPolicyInput,
    ) -> Result<SatisfactionConfigPayload> {
        require_quality_role(ctx)?;
        let meta = common::meta(ctx, &input.options)?;
        let mut v = Validator::default();
        let reason = input.reason.as_deref().and_then(|r| v.check("input", Text::parse("reason", r)));
        v.finish()?;
        let command_id = meta.command_id.unwrap_or_default();
        let outcome = common::state(ctx)
            .commands
            .configure_satisfaction(
                SatisfactionConfigCommand::RetireDispatchPolicy { policy_id: input.policy_id, reason },
                meta,
            )
            .await
            .map_err(|e| errors::app(e, "input"))?;
        Ok(SatisfactionConfigPayload { outcome: CommandOutcome::new(command_id, &outcome), id: input.policy_id })
    }

    /// Create or replace an alert on an index drop against the previous week or month.
    async fn define_satisfaction_alert(
        &self,
        ctx: &Context<'_>,
        input: DefineSatisfactionAlertInput,
    ) -> Result<SatisfactionConfigPayload> {
        require_quality_role(ctx)?;
        let meta = common::meta(ctx, &input.options)?;
        let mut v = Validator::default();
        let name = v.check("input", Name::parse("name", &input.name));
        if !(input.drop.is_finite() && input.drop > 0.0 && input.drop <= 200.0) {
            v.fail("input.drop", "a positive number of points, at most 200");
        }
        if input.min_responses < 1 {
            v.fail("input.minResponses", "at least 1");
        }
        v.finish()?;
        let rule_id = input.rule_id.unwrap_or_else(|| meta.new_entity_id("satisfaction_alert"));
        let rule = AlertRule {
            rule_id,
            name: name.ok_or_else(lost)?,
            index: input.index.into(),
            period: input.period.into(),
            per_department: input.per_department,
            drop_hundredths: (input.drop * 100.0).round() as u32,
            min_responses: input.min_responses as u32,
            time_zone: input.time_zone.clone(),
        };
        let command_id = meta.command_id.unwrap_or_default();
        let outcome = common::state(ctx)
            .commands
            .configure_satisfaction(SatisfactionConfigCommand::DefineAlertRule(rule), meta)
            .await
            .map_err(|e| errors::app(e, "input"))?;
        Ok(SatisfactionConfigPayload { outcome: CommandOutcome::new(command_id, &outcome), id: rule_id })
    }

    /// Stop an alert rule.
    async fn retire_satisfaction_alert(
        &self,
        ctx: &Context<'_>,
        input: RetireSatisfactionAlertInput,
    ) -> Result<SatisfactionConfigPayload> {
        require_quality_role(ctx)?;
        let meta = common::meta(ctx, &input.options)?;
        let command_id = meta.command_id.unwrap_or_default();
        let outcome = common::state(ctx)
            .commands
            .configure_satisfaction(SatisfactionConfigCommand::RetireAlertRule { rule_id: input.rule_id }, meta)
            .await
            .map_err(|e| errors::app(e, "input"))?;
        Ok(SatisfactionConfigPayload { outcome: CommandOutcome::new(command_id, &outcome), id: input.rule_id })
    }
}
