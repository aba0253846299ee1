//! Service requests and complaints (服务请求 / 投诉): one stream per request.
//!
//! The lifecycle: filed → acknowledged (first response) → assigned / transferred → plan
//! communicated → callback committed → awaiting customer (SLA paused) ↔ in progress →
//! resolved (resolution, root cause, compensation) → return visit (回访): satisfied → closed,
//! not satisfied → reopened. Closed requests can be reopened; withdrawn and merged are final.
//! Escalation goes up and down a configurable ladder; duplicates are merged into a survivor
//! that keeps every reporter (one complaint raised by many counts once).
//!
//! SLA clocks: the terms of the policy that applied at filing are copied into the request.
//! Deadlines are decided when a clock starts or resumes (with the business calendar, which the
//! command carries) and recorded in the events, so what was promised never moves when a
//! calendar or policy changes later. `CheckSla` compares the recorded deadlines with a given
//! instant and records warnings and breaches exactly once per clock.
//!
//! Events that move SLA clocks carry their instant (`at`, equal to the envelope's
//! `occurredAt`), because `apply` sees only the payload.

use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::{
    Aggregate, DomainError, event_family,
    service_config::SlaTerms,
    sla::{self, BusinessCalendar, CalendarDefinition, Clock, Pause},
    values::{Category, Label, StaffRef, Subject, Text},
    vocab::{
        Channel, ClockKind, CloseReason, CompensationKind, Priority, RequestState, RequestType, SlaMetric, ValueTier,
    },
};

// ---------------------------------------------------------------------------------------------
// Value types

/// A deadline of one SLA clock, decided when the clock started or resumed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SlaDeadline {
    /// What is measured.
    pub metric: SlaMetric,
    /// 1 for the first clock of this metric, counting up (next-response clocks restart).
    pub cycle: u32,
    /// When the clock started.
    pub started_at: DateTime<Utc>,
    /// When the target is missed.
    pub due_at: DateTime<Utc>,
    /// When to warn.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub warn_at: Option<DateTime<Utc>>,
}

/// A major or batch incident (重大和批量故障) grouping many requests under a special team.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct IncidentRef {
    /// Id shared by all requests of the incident.
    pub incident_id: Uuid,
    /// What happened.
    pub title: Subject,
}

/// A make-good (补偿性服务).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Compensation {
    /// Money or service.
    pub kind: CompensationKind,
    /// Amount in minor units (e.g. fen, cents), when monetary and known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub amount_minor: Option<i64>,
    /// ISO 4217 currency of the amount.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub currency: Option<Label>,
    /// What was given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<Text>,
}

// ---------------------------------------------------------------------------------------------
// Commands

/// Where a request came from when kefu opened it itself: the follow-up of a dissatisfied
/// survey answer (the closed loop).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RequestOrigin {
    /// The survey whose answer opened it.
    pub survey_id: Uuid,
    /// The request that survey was about.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_id: Option<Uuid>,
}

/// File a request. The handler chooses the SLA terms (from the service configuration) and
/// supplies the business calendar they name.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OpenServiceRequest {
    /// New request's id.
    pub request_id: Uuid,
    /// The customer.
    pub customer_id: Uuid,
    /// The customer's value tier at filing (for policies and reports).
    pub customer_tier: Option<ValueTier>,
    /// Inquiry, complaint, suggestion, demand.
    pub request_type: RequestType,
    /// Category.
    pub category: Category,
    /// Priority.
    pub priority: Priority,
    /// Where it came in.
    pub channel: Channel,
    /// Subject.
    pub subject: Subject,
    /// Details.
    pub description: Option<Text>,
    /// The first person who took it (首问负责): the owner until an explicit transfer.
    pub taken_by: StaffRef,
    /// Responsible department.
    pub department: Option<Label>,
    /// Whether staff must go on site (starts the on-site clock).
    pub on_site_required: bool,
    /// Id in another system (imports).
    pub external_ref: Option<Label>,
    /// Free tags.
    pub tags: Vec<Label>,
    /// Opened by kefu as the follow-up of a survey answer.
    pub origin: Option<RequestOrigin>,
    /// When it was filed (business time).
    pub at: DateTime<Utc>,
    /// The SLA terms that apply.
    pub terms: SlaTerms,
    /// The business calendar the terms name (required for business time).
    pub calendar: Option<CalendarDefinition>,
}

/// Everything that can be asked of a request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum ServiceRequestCommand {
    /// File it.
    Open(Box<OpenServiceRequest>),
    /// First response to the customer.
    Acknowledge {
        /// When.
        at: DateTime<Utc>,
        /// What was said.
        note: Option<Text>,
    },
    /// Give it to an agent and/or a department to work on (ownership stays).
    Assign {
        /// When.
        at: DateTime<Utc>,
        /// Agent.
        assignee: Option<StaffRef>,
        /// Department.
        department: Option<Label>,
        /// Why.
        reason: Option<Text>,
    },
    /// Hand ownership to someone else (recorded with the reason).
    Transfer {
        /// When.
        at: DateTime<Utc>,
        /// New owner.
        to: StaffRef,
        /// New department.
        department: Option<Label>,
        /// Why.
        reason: Text,
    },
    /// Tell the customer how it will be handled (告知处理方案).
    CommunicatePlan {
        /// When.
        at: DateTime<Utc>,
        /// The plan.
        plan: Text,
        /// How the customer was told.
        channel: Channel,
    },
    /// Promise the customer a reply by a time (承诺回复时间).
    CommitCallback {
        /// When the promise was made.
        at: DateTime<Utc>,
        /// The promised time.
        due_at: DateTime<Utc>,
        /// Note.
        note: Option<Text>,
    },
    /// Wait for the customer (SLA clocks pause).
    AwaitCustomer {
        /// When.
        at: DateTime<Utc>,
        /// For what.
        reason: Text,
    },
    /// The customer is back (SLA clocks resume).
    Resume {
        /// When.
        at: DateTime<Utc>,
        /// Note.
        note: Option<Text>,
        /// The business calendar of the terms.
        calendar: Option<CalendarDefinition>,
    },
    /// Staff arrived on site.
    RecordOnSiteArrival {
        /// When.
        at: DateTime<Utc>,
        /// Who.
        engineer: StaffRef,
        /// Note.
        note: Option<Text>,
    },
    /// Tell the customer about progress (跟踪处理进度).
    UpdateCustomer {
        /// When.
        at: DateTime<Utc>,
        /// How.
        channel: Channel,
        /// What was said.
        summary: Text,
    },
    /// Raise it up the ladder (升级).
    Escalate {
        /// When.
        at: DateTime<Utc>,
        /// Target level; one up when absent.
        to_level: Option<u32>,
        /// Why.
        reason: Text,
        /// Who takes it at that level.
        assignee: Option<StaffRef>,
        /// A major/batch incident it belongs to.
        incident: Option<IncidentRef>,
        /// The ladder in force.
        levels: Vec<Label>,
    },
    /// Bring it down the ladder.
    Deescalate {
        /// When.
        at: DateTime<Utc>,
        /// Target level; one down when absent.
        to_level: Option<u32>,
        /// Why.
        reason: Text,
        /// The ladder in force.
        levels: Vec<Label>,
    },
    /// Solve it (the handler checks the root cause against the catalogue).
    Resolve {
        /// When.
        at: DateTime<Utc>,
        /// What was done.
        resolution: Text,
        /// The final root cause (按其产生的最终原因).
        root_cause: Label,
        /// A make-good, if any.
        compensation: Option<Compensation>,
    },
    /// The return visit (回访).
    RecordReturnVisit {
        /// When.
        at: DateTime<Utc>,
        /// Whether the customer is satisfied.
        satisfied: bool,
        /// How they were reached.
        channel: Channel,
        /// Note.
        note: Option<Text>,
        /// Why not satisfied (required then).
        reason: Option<Text>,
        /// The business calendar (for the reopened request's clocks).
        calendar: Option<CalendarDefinition>,
    },
    /// Close a resolved request without (or after an unanswered) return visit.
    Close {
        /// When.
        at: DateTime<Utc>,
        /// Why.
        reason: CloseReason,
        /// Note.
        note: Option<Text>,
    },
    /// Open a resolved or closed request again.
    Reopen {
        /// When.
        at: DateTime<Utc>,
        /// Why.
        reason: Text,
        /// The business calendar.
        calendar: Option<CalendarDefinition>,
    },
    /// The customer withdrew it.
    Withdraw {
        /// When.
        at: DateTime<Utc>,
        /// Why.
        reason: Text,
    },
    /// Record SLA warnings and breaches due by `now` (the scheduler's command).
    CheckSla {
        /// The instant to check.
        now: DateTime<Utc>,
        /// The ladder in force (for automatic escalation).
        levels: Vec<Label>,
    },
    /// (On the survivor) take in a duplicate and its reporters.
    AbsorbDuplicate {
        /// When.
        at: DateTime<Utc>,
        /// The duplicate.
        duplicate_id: Uuid,
        /// Its reporters.
        reporters: Vec<Uuid>,
        /// Its state (it must be open).
        duplicate_state: RequestState,
        /// Why.
        reason: Text,
    },
    /// (On the duplicate) point to the survivor and end.
    MergeInto {
        /// When.
        at: DateTime<Utc>,
        /// The survivor.
        survivor_id: Uuid,
        /// Why.
        reason: Text,
    },
}

// ---------------------------------------------------------------------------------------------
// Events

/// A request was recorded (立即记录).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RequestFiled {
    /// Id (also the stream id).
    pub request_id: Uuid,
    /// The customer.
    pub customer_id: Uuid,
    /// Customer's value tier at filing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub customer_tier: Option<ValueTier>,
    /// Type.
    pub request_type: RequestType,
    /// Category.
    pub category: Category,
    /// Priority.
    pub priority: Priority,
    /// Channel.
    pub channel: Channel,
    /// Subject.
    pub subject: Subject,
    /// Details.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<Text>,
    /// The owner: the first person who took it (首问负责).
    pub owner: StaffRef,
    /// Responsible department.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub department: Option<Label>,
    /// Whether on-site support is required.
    #[serde(default)]
    pub on_site_required: bool,
    /// Id in another system.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub external_ref: Option<Label>,
    /// Tags.
    #[serde(default)]
    pub tags: Vec<Label>,
    /// Opened by kefu as the follow-up of a survey answer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub origin: Option<RequestOrigin>,
    /// When it was filed.
    pub filed_at: DateTime<Utc>,
    /// The SLA terms that apply.
    pub sla: SlaTerms,
    /// The deadlines decided at filing.
    #[serde(default)]
    pub deadlines: Vec<SlaDeadline>,
}

/// The customer got a first response.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RequestAcknowledged {
    /// When.
    pub at: DateTime<Utc>,
    /// What was said.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<Text>,
}

/// Someone (an agent and/or a department) works on it now.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RequestAssigned {
    /// When.
    pub at: DateTime<Utc>,
    /// The agent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub assignee: Option<StaffRef>,
    /// The department.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub department: Option<Label>,
    /// Why.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<Text>,
}

/// Ownership moved, with the reason (customer-facing unity: transfers are recorded, not hidden).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RequestTransferred {
    /// When.
    pub at: DateTime<Utc>,
    /// Owner before.
    pub from_owner: StaffRef,
    /// Owner now.
    pub to_owner: StaffRef,
    /// Department now.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub department: Option<Label>,
    /// Why.
    pub reason: Text,
}

/// The customer was told the plan (告知处理方案).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PlanCommunicated {
    /// When.
    pub at: DateTime<Utc>,
    /// The plan.
    pub plan: Text,
    /// How.
    pub channel: Channel,
}

/// A reply by a given time was promised to the customer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CallbackCommitted {
    /// When the promise was made.
    pub at: DateTime<Utc>,
    /// The promised time.
    pub due_at: DateTime<Utc>,
    /// Note.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<Text>,
}

/// Waiting for the customer: SLA clocks paused.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CustomerAwaited {
    /// When.
    pub at: DateTime<Utc>,
    /// For what.
    pub reason: Text,
}

/// The customer is back: clocks resume with new deadlines (a next-response clock starts).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RequestResumed {
    /// When.
    pub at: DateTime<Utc>,
    /// Note.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<Text>,
    /// Deadlines of the clocks now running.
    #[serde(default)]
    pub deadlines: Vec<SlaDeadline>,
}

/// Staff arrived on site.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OnSiteArrivalRecorded {
    /// When.
    pub at: DateTime<Utc>,
    /// Who.
    pub engineer: StaffRef,
    /// Note.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<Text>,
}

/// The customer was told about progress.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CustomerUpdated {
    /// When.
    pub at: DateTime<Utc>,
    /// How.
    pub channel: Channel,
    /// What was said.
    pub summary: Text,
}

/// Raised up the ladder (升级).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RequestEscalated {
    /// When.
    pub at: DateTime<Utc>,
    /// Level before.
    pub from_level: u32,
    /// Level now.
    pub to_level: u32,
    /// Name of the level now.
    pub level_name: Label,
    /// Why.
    pub reason: Text,
    /// Raised by an SLA breach rather than a person.
    #[serde(default)]
    pub automatic: bool,
    /// Who takes it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub assignee: Option<StaffRef>,
    /// The incident it belongs to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub incident: Option<IncidentRef>,
}

/// Brought down the ladder.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RequestDeescalated {
    /// When.
    pub at: DateTime<Utc>,
    /// Level before.
    pub from_level: u32,
    /// Level now.
    pub to_level: u32,
    /// Name of the level now.
    pub level_name: Label,
    /// Why.
    pub reason: Text,
}

/// Solved.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RequestResolved {
    /// When.
    pub at: DateTime<Utc>,
    /// What was done.
    pub resolution: Text,
    /// Root cause code.
    pub root_cause: Label,
    /// Make-good.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub compensation: Option<Compensation>,
    /// True for the first resolution, false after a reopen.
    #[serde(default)]
    pub first_resolution: bool,
}

/// The return visit happened (回访).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ReturnVisitRecorded {
    /// When.
    pub at: DateTime<Utc>,
    /// Whether the customer is satisfied.
    pub satisfied: bool,
    /// How they were reached.
    pub channel: Channel,
    /// Note.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<Text>,
    /// Why not satisfied.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<Text>,
}

/// Closed (结案).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RequestClosed {
    /// When.
    pub at: DateTime<Utc>,
    /// Why.
    pub reason: CloseReason,
    /// Note.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<Text>,
}

/// Opened again.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RequestReopened {
    /// When.
    pub at: DateTime<Utc>,
    /// Why.
    pub reason: Text,
    /// Deadlines of the clocks now running.
    #[serde(default)]
    pub deadlines: Vec<SlaDeadline>,
}

/// Withdrawn by the customer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RequestWithdrawn {
    /// When.
    pub at: DateTime<Utc>,
    /// Why.
    pub reason: Text,
}

/// (Survivor) a duplicate was merged in; its reporters are kept.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DuplicateMerged {
    /// When.
    pub at: DateTime<Utc>,
    /// The duplicate.
    pub duplicate_id: Uuid,
    /// Its reporters, now reporters of this request too.
    #[serde(default)]
    pub reporters: Vec<Uuid>,
    /// Why.
    pub reason: Text,
}

/// (Duplicate) merged into the survivor; this request ends and counts no more.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RequestMergedInto {
    /// When.
    pub at: DateTime<Utc>,
    /// The survivor.
    pub survivor_id: Uuid,
    /// Why.
    pub reason: Text,
}

/// An SLA target is close to being missed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SlaWarningRaised {
    /// Which clock.
    pub metric: SlaMetric,
    /// Its cycle.
    pub cycle: u32,
    /// The deadline.
    pub due_at: DateTime<Utc>,
    /// The warning time that passed.
    pub warn_at: DateTime<Utc>,
}

/// An SLA target was missed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SlaBreached {
    /// Which clock.
    pub metric: SlaMetric,
    /// Its cycle.
    pub cycle: u32,
    /// The deadline that passed.
    pub due_at: DateTime<Utc>,
}

event_family! {
    /// Facts recorded on a service request stream.
    pub enum ServiceRequestEvent {
        RequestFiled,
        RequestAcknowledged,
        RequestAssigned,
        RequestTransferred,
        PlanCommunicated,
        CallbackCommitted,
        CustomerAwaited,
        RequestResumed,
        OnSiteArrivalRecorded,
        CustomerUpdated,
        RequestEscalated,
        RequestDeescalated,
        RequestResolved,
        ReturnVisitRecorded,
        RequestClosed,
        RequestReopened,
        RequestWithdrawn,
        DuplicateMerged,
        RequestMergedInto,
        SlaWarningRaised,
        SlaBreached,
    }
}

// ---------------------------------------------------------------------------------------------
// State

/// One SLA clock as the request knows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MetricClock {
    /// What it measures.
    pub metric: SlaMetric,
    /// Cycle.
    pub cycle: u32,
    /// When it started.
    pub started_at: DateTime<Utc>,
    /// Deadline (None while paused).
    pub due_at: Option<DateTime<Utc>>,
    /// Warning time (None while paused or without warning).
    pub warn_at: Option<DateTime<Utc>>,
    /// When the target was met.
    pub met_at: Option<DateTime<Utc>>,
    /// Warning recorded.
    pub warned: bool,
    /// Breach recorded.
    pub breached: bool,
    /// No longer applies (e.g. the request ended).
    pub cancelled: bool,
}

impl MetricClock {
    /// Whether the clock still runs (or is paused).
    pub fn running(&self) -> bool {
        self.met_at.is_none() && !self.cancelled
    }
}

/// A request as the aggregate needs it to decide. Serialisable so read models can keep the
/// folded state and apply the next event with the domain's own rules.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct ServiceRequest {
    /// The filing, once filed.
    pub filed: Option<RequestFiled>,
    /// State.
    pub state: Option<RequestState>,
    /// Owner (首问负责, until transferred).
    pub owner: Option<StaffRef>,
    /// Current agent.
    pub assignee: Option<StaffRef>,
    /// Current department.
    pub department: Option<Label>,
    /// Escalation level (0 = agent).
    pub escalation_level: u32,
    /// Incident, if grouped.
    pub incident: Option<IncidentRef>,
    /// SLA clocks.
    pub clocks: Vec<MetricClock>,
    /// Closed pauses.
    pub pauses: Vec<Pause>,
    /// Start of the open pause.
    pub paused_since: Option<DateTime<Utc>>,
    /// First resolution time (kept on reopen).
    pub first_resolved_at: Option<DateTime<Utc>>,
    /// Latest resolution time.
    pub last_resolved_at: Option<DateTime<Utc>>,
    /// Reopen count.
    pub reopened: u32,
    /// Everyone who reported it (the customer, plus those of merged duplicates).
    pub reporters: Vec<Uuid>,
    /// Merged duplicates.
    pub duplicates: Vec<Uuid>,
    /// The survivor, once merged.
    pub merged_into: Option<Uuid>,
}

/// "No such request". The id is filled in by the command handler, which knows the stream.
fn not_found() -> DomainError {
    DomainError::NotFound { entity: "serviceRequest", id: String::new() }
}

fn missing_reason(field: &str) -> DomainError {
    DomainError::invalid(field, "a reason is required")
}

/// The clock a request's terms run on.
pub fn clock_for(terms: &SlaTerms, calendar: Option<&CalendarDefinition>) -> Result<Clock, DomainError> {
    match terms.clock {
        ClockKind::Calendar => Ok(Clock::Calendar),
        ClockKind::Business => {
            let definition = calendar.ok_or_else(|| {
                DomainError::rejected(
                    "calendar_missing",
                    format!(
                        "the SLA policy `{}` runs on business calendar {} which is not defined",
                        terms.policy_name,
                        terms.calendar_id.map(|c| c.to_string()).unwrap_or_default()
                    ),
                )
            })?;
            Ok(Clock::Business(BusinessCalendar::new(definition)?))
        }
    }
}

/// Decides a clock's deadline and warning time.
pub fn plan(
    terms: &SlaTerms,
    clock: &Clock,
    metric: SlaMetric,
    cycle: u32,
    started_at: DateTime<Utc>,
    pauses: &[Pause],
) -> Option<SlaDeadline> {
    let target = terms.target(metric)?;
    let work = Duration::minutes(i64::from(target.minutes));
    let due_at = sla::deadline(clock, started_at, work, pauses)?;
    let warn_work = Duration::seconds(work.num_seconds() * i64::from(target.warn_percent) / 100);
    let warn_at = sla::deadline(clock, started_at, warn_work, pauses);
    Some(SlaDeadline { metric, cycle, started_at, due_at, warn_at })
}

impl ServiceRequest {
    fn id(&self) -> Uuid {
        self.filed.as_ref().map(|f| f.request_id).unwrap_or_default()
    }

    /// The state (FILED before anything else happened).
    pub fn state(&self) -> RequestState {
        self.current()
    }

    fn filed(&self) -> Result<&RequestFiled, DomainError> {
        self.filed.as_ref().ok_or_else(not_found)
    }

    fn current(&self) -> RequestState {
        self.state.unwrap_or(RequestState::Filed)
    }

    /// Not closed, withdrawn or merged.
    pub fn is_live(&self) -> bool {
        !matches!(self.current(), RequestState::Closed | RequestState::Withdrawn | RequestState::Merged)
    }

    /// Live and not resolved: still being worked on.
    pub fn is_open(&self) -> bool {
        self.is_live() && self.current() != RequestState::Resolved
    }

    fn require(&self, allowed: &[RequestState], rule: &'static str, doing: &str) -> Result<(), DomainError> {
        let state = self.current();
        if allowed.contains(&state) {
            return Ok(());
        }
        Err(DomainError::rejected(rule, format!("cannot {doing}: the request is {state}")))
    }

    fn require_open(&self, doing: &str) -> Result<(), DomainError> {
        if self.is_open() {
            return Ok(());
        }
        Err(DomainError::rejected("request_not_open", format!("cannot {doing}: the request is {}", self.current())))
    }

    fn require_live(&self, doing: &str) -> Result<(), DomainError> {
        if self.is_live() {
            return Ok(());
        }
        Err(DomainError::rejected("request_ended", format!("cannot {doing}: the request is {}", self.current())))
    }

    /// All pauses including the open one up to `until`.
    fn pauses_until(&self, until: DateTime<Utc>) -> Vec<Pause> {
        let mut pauses = self.pauses.clone();
        if let Some(from) = self.paused_since {
            pauses.push(Pause { from, until: Some(until.max(from)) });
        }
        pauses
    }

    /// The next cycle number of a metric.
    fn next_cycle(&self, metric: SlaMetric) -> u32 {
        self.clocks.iter().filter(|c| c.metric == metric).map(|c| c.cycle).max().unwrap_or(0) + 1
    }

    /// Deadlines after a resume or reopen at `at`: running clocks re-planned with the pauses so
    /// far, and a new next-response clock.
    fn replan(
        &self,
        at: DateTime<Utc>,
        calendar: Option<&CalendarDefinition>,
    ) -> Result<Vec<SlaDeadline>, DomainError> {
        let filed = self.filed()?;
        let terms = &filed.sla;
        if terms.targets.is_empty() {
            return Ok(vec![]);
        }
        let clock = clock_for(terms, calendar)?;
        let pauses = self.pauses_until(at);
        let mut deadlines = Vec::new();
        for c in self.clocks.iter().filter(|c| c.running() && c.metric != SlaMetric::Callback) {
            if let Some(d) = plan(terms, &clock, c.metric, c.cycle, c.started_at, &pauses) {
                deadlines.push(d);
            }
        }
        let metric = SlaMetric::NextResponse;
        if !self.clocks.iter().any(|c| c.metric == metric && c.running())
            && let Some(d) = plan(terms, &clock, metric, self.next_cycle(metric), at, &[])
        {
            deadlines.push(d);
        }
        Ok(deadlines)
    }

    fn levels_check(levels: &[Label], level: u32, field: &str) -> Result<Label, DomainError> {
        levels.get(level as usize).cloned().ok_or_else(|| {
            DomainError::invalid(
                field,
                format!("level {level} does not exist; the ladder has levels 0 to {}", levels.len().saturating_sub(1)),
            )
        })
    }
}

impl Aggregate for ServiceRequest {
    const STREAM_TYPE: &'static str = "service_request";
    type Command = ServiceRequestCommand;
    type Event = ServiceRequestEvent;

    fn decide(&self, command: &ServiceRequestCommand) -> Result<Vec<ServiceRequestEvent>, DomainError> {
        use ServiceRequestCommand as C;
        if let C::Open(c) = command {
            return self.open(c);
        }
        if self.filed.is_none() {
            return Err(not_found());
        }
        match command {
            C::Open(_) => Ok(vec![]),
            C::Acknowledge { at, note } => {
                self.require(&[RequestState::Filed], "already_acknowledged", "acknowledge")?;
                Ok(vec![RequestAcknowledged { at: *at, note: note.clone() }.into()])
            }
            C::Assign { at, assignee, department, reason } => {
                self.require_open("assign")?;
                if assignee.is_none() && department.is_none() {
                    return Err(DomainError::invalid("assignee", "name an agent, a department or both"));
                }
                if assignee == &self.assignee && (department.is_none() || department == &self.department) {
                    return Ok(vec![]);
                }
                Ok(vec![
                    RequestAssigned {
                        at: *at,
                        assignee: assignee.clone(),
                        department: department.clone(),
                        reason: reason.clone(),
                    }
                    .into(),
                ])
            }
            C::Transfer { at, to, department, reason } => {
                self.require_open("transfer")?;
                let from = self.owner.clone().ok_or_else(not_found)?;
                if from.id == to.id && (department.is_none() || department == &self.department) {
                    return Err(DomainError::invalid("to", format!("{} already owns the request", to.id.as_str())));
                }
                Ok(vec![
                    RequestTransferred {
                        at: *at,
                        from_owner: from,
                        to_owner: to.clone(),
                        department: department.clone(),
                        reason: reason.clone(),
                    }
                    .into(),
                ])
            }
            C::CommunicatePlan { at, plan, channel } => {
                self.require_open("communicate a plan")?;
                Ok(vec![PlanCommunicated { at: *at, plan: plan.clone(), channel: *channel }.into()])
            }
            C::CommitCallback { at, due_at, note } => {
                self.require_live("commit a callback")?;
                if due_at <= at {
                    return Err(DomainError::invalid("dueAt", "the promised time must be after the promise"));
                }
                Ok(vec![CallbackCommitted { at: *at, due_at: *due_at, note: note.clone() }.into()])
            }
            C::AwaitCustomer { at, reason } => {
                self.require(
                    &[RequestState::Filed, RequestState::Acknowledged, RequestState::InProgress],
                    "cannot_pause",
                    "wait for the customer",
                )?;
                Ok(vec![CustomerAwaited { at: *at, reason: reason.clone() }.into()])
            }
            C::Resume { at, note, calendar } => {
                self.require(&[RequestState::AwaitingCustomer], "not_awaiting_customer", "resume")?;
                let deadlines = self.replan(*at, calendar.as_ref())?;
                Ok(vec![RequestResumed { at: *at, note: note.clone(), deadlines }.into()])
            }
            C::RecordOnSiteArrival { at, engineer, note } => {
                self.require_open("record an on-site arrival")?;
                Ok(vec![OnSiteArrivalRecorded { at: *at, engineer: engineer.clone(), note: note.clone() }.into()])
            }
            C::UpdateCustomer { at, channel, summary } => {
                self.require_live("update the customer")?;
                Ok(vec![CustomerUpdated { at: *at, channel: *channel, summary: summary.clone() }.into()])
            }
            C::Escalate { at, to_level, reason, assignee, incident, levels } => {
                self.require_live("escalate")?;
                let top = levels.len().saturating_sub(1) as u32;
                let to = to_level.unwrap_or(self.escalation_level + 1);
                // Joining an incident may keep the level; any other escalation goes higher.
                let joins_incident = incident.is_some() && self.incident.as_ref() != incident.as_ref();
                if to < self.escalation_level || (to == self.escalation_level && !joins_incident) {
                    return Err(DomainError::rejected(
                        "not_higher",
                        format!("the request is at level {}; escalation must go higher", self.escalation_level),
                    ));
                }
                if to > top {
                    return Err(DomainError::rejected(
                        "top_of_ladder",
                        format!(
                            "the request cannot go above level {top} ({})",
                            levels.last().map(Label::as_str).unwrap_or("")
                        ),
                    ));
                }
                let level_name = Self::levels_check(levels, to, "toLevel")?;
                Ok(vec![
                    RequestEscalated {
                        at: *at,
                        from_level: self.escalation_level,
                        to_level: to,
                        level_name,
                        reason: reason.clone(),
                        automatic: false,
                        assignee: assignee.clone(),
                        incident: incident.clone(),
                    }
                    .into(),
                ])
            }
            C::Deescalate { at, to_level, reason, levels } => {
                self.require_live("de-escalate")?;
                if self.escalation_level == 0 {
                    return Err(DomainError::rejected("not_escalated", "the request is not escalated"));
                }
                let to = to_level.unwrap_or(self.escalation_level - 1);
                if to >= self.escalation_level {
                    return Err(DomainError::invalid(
                        "toLevel",
                        format!("must be below the current level {}", self.escalation_level),
                    ));
                }
                let level_name = Self::levels_check(levels, to, "toLevel")?;
                Ok(vec![
                    RequestDeescalated {
                        at: *at,
                        from_level: self.escalation_level,
                        to_level: to,
                        level_name,
                        reason: reason.clone(),
                    }
                    .into(),
                ])
            }
            C::Resolve { at, resolution, root_cause, compensation } => {
                self.require_open("resolve")?;
                if let Some(c) = compensation {
                    if c.amount_minor.is_some_and(|a| a < 0) {
                        return Err(DomainError::invalid("compensation.amountMinor", "must not be negative"));
                    }
                    if c.amount_minor.is_some() && c.currency.is_none() {
                        return Err(DomainError::invalid("compensation.currency", "an amount needs its currency"));
                    }
                }
                Ok(vec![
                    RequestResolved {
                        at: *at,
                        resolution: resolution.clone(),
                        root_cause: root_cause.clone(),
                        compensation: compensation.clone(),
                        first_resolution: self.first_resolved_at.is_none(),
                    }
                    .into(),
                ])
            }
            C::RecordReturnVisit { at, satisfied, channel, note, reason, calendar } => {
                self.require(&[RequestState::Resolved], "not_resolved", "record a return visit")?;
                let visit = ReturnVisitRecorded {
                    at: *at,
                    satisfied: *satisfied,
                    channel: *channel,
                    note: note.clone(),
                    reason: reason.clone(),
                };
                if *satisfied {
                    return Ok(vec![
                        visit.into(),
                        RequestClosed { at: *at, reason: CloseReason::ConfirmedByCustomer, note: None }.into(),
                    ]);
                }
                let why = reason.clone().ok_or_else(|| missing_reason("reason"))?;
                let mut after = self.clone();
                after.apply(&visit.clone().into());
                let deadlines = after.replan(*at, calendar.as_ref())?;
                Ok(vec![visit.into(), RequestReopened { at: *at, reason: why, deadlines }.into()])
            }
            C::Close { at, reason, note } => {
                self.require(&[RequestState::Resolved], "not_resolved", "close")?;
                if *reason == CloseReason::ConfirmedByCustomer {
                    return Err(DomainError::invalid(
                        "reason",
                        "a customer's confirmation is recorded by the return visit",
                    ));
                }
                Ok(vec![RequestClosed { at: *at, reason: *reason, note: note.clone() }.into()])
            }
            C::Reopen { at, reason, calendar } => {
                self.require(&[RequestState::Resolved, RequestState::Closed], "not_resolved_or_closed", "reopen")?;
                let deadlines = self.replan(*at, calendar.as_ref())?;
                Ok(vec![RequestReopened { at: *at, reason: reason.clone(), deadlines }.into()])
            }
            C::Withdraw { at, reason } => {
                self.require_live("withdraw")?;
                Ok(vec![RequestWithdrawn { at: *at, reason: reason.clone() }.into()])
            }
            C::CheckSla { now, levels } => Ok(self.check_sla(*now, levels)),
            C::AbsorbDuplicate { at, duplicate_id, reporters, duplicate_state, reason } => {
                if *duplicate_id == self.id() {
                    return Err(DomainError::rejected("merge_into_itself", "a request cannot be merged into itself"));
                }
                if !self.is_live() {
                    return Err(DomainError::rejected(
                        "survivor_ended",
                        format!("cannot merge into a request that is {}", self.current()),
                    ));
                }
                if matches!(duplicate_state, RequestState::Closed | RequestState::Withdrawn | RequestState::Merged) {
                    return Err(DomainError::rejected(
                        "duplicate_ended",
                        format!("request {duplicate_id} is {duplicate_state} and cannot be merged"),
                    ));
                }
                if self.duplicates.contains(duplicate_id) {
                    return Ok(vec![]);
                }
                Ok(vec![
                    DuplicateMerged {
                        at: *at,
                        duplicate_id: *duplicate_id,
                        reporters: reporters.clone(),
                        reason: reason.clone(),
                    }
                    .into(),
                ])
            }
            C::MergeInto { at, survivor_id, reason } => {
                if *survivor_id == self.id() {
                    return Err(DomainError::rejected("merge_into_itself", "a request cannot be merged into itself"));
                }
                self.require_live("merge")?;
                Ok(vec![RequestMergedInto { at: *at, survivor_id: *survivor_id, reason: reason.clone() }.into()])
            }
        }
    }

    fn apply(&mut self, event: &ServiceRequestEvent) {
        use ServiceRequestEvent as E;
        match event {
            E::RequestFiled(e) => {
                self.state = Some(RequestState::Filed);
                self.owner = Some(e.owner.clone());
                self.department = e.department.clone();
                self.reporters = vec![e.customer_id];
                self.clocks = e.deadlines.iter().map(clock_from).collect();
                self.filed = Some(e.clone());
            }
            E::RequestAcknowledged(e) => {
                self.responded(e.at);
                if self.state == Some(RequestState::Filed) {
                    self.state = Some(RequestState::Acknowledged);
                }
            }
            E::RequestAssigned(e) => {
                if e.assignee.is_some() {
                    self.assignee = e.assignee.clone();
                }
                if e.department.is_some() {
                    self.department = e.department.clone();
                }
                if matches!(self.state, Some(RequestState::Filed | RequestState::Acknowledged)) {
                    self.state = Some(RequestState::InProgress);
                }
            }
            E::RequestTransferred(e) => {
                self.owner = Some(e.to_owner.clone());
                if e.department.is_some() {
                    self.department = e.department.clone();
                }
                if matches!(self.state, Some(RequestState::Filed | RequestState::Acknowledged)) {
                    self.state = Some(RequestState::InProgress);
                }
            }
            E::PlanCommunicated(e) => self.responded(e.at),
            E::CustomerUpdated(e) => self.responded(e.at),
            E::CallbackCommitted(e) => {
                // A new promise replaces an unkept one.
                for c in self.clocks.iter_mut().filter(|c| c.metric == SlaMetric::Callback && c.running()) {
                    c.cancelled = true;
                }
                let cycle = self.next_cycle(SlaMetric::Callback);
                let warn = e.at + (e.due_at - e.at) * 4 / 5;
                self.clocks.push(MetricClock {
                    metric: SlaMetric::Callback,
                    cycle,
                    started_at: e.at,
                    due_at: Some(e.due_at),
                    warn_at: Some(warn),
                    met_at: None,
                    warned: false,
                    breached: false,
                    cancelled: false,
                });
            }
            E::CustomerAwaited(e) => {
                self.paused_since = Some(e.at);
                self.state = Some(RequestState::AwaitingCustomer);
                for c in self.clocks.iter_mut().filter(|c| c.running() && c.metric != SlaMetric::Callback) {
                    c.due_at = None;
                    c.warn_at = None;
                }
            }
            E::RequestResumed(e) => {
                self.close_pause(e.at);
                self.state = Some(RequestState::InProgress);
                self.take_deadlines(&e.deadlines);
            }
            E::OnSiteArrivalRecorded(e) => self.meet(SlaMetric::OnSite, e.at),
            E::RequestEscalated(e) => {
                self.escalation_level = e.to_level;
                if e.incident.is_some() {
                    self.incident = e.incident.clone();
                }
                if e.assignee.is_some() {
                    self.assignee = e.assignee.clone();
                }
                if e.to_level >= 1 {
                    self.meet(SlaMetric::ReportUpward, e.at);
                }
            }
            E::RequestDeescalated(e) => self.escalation_level = e.to_level,
            E::RequestResolved(e) => {
                self.close_pause(e.at);
                self.responded(e.at);
                self.meet(SlaMetric::Resolution, e.at);
                for c in self.clocks.iter_mut().filter(|c| c.running()) {
                    // On-site and reporting-upward clocks no longer apply once solved.
                    if matches!(c.metric, SlaMetric::OnSite | SlaMetric::ReportUpward) {
                        c.cancelled = true;
                    }
                }
                self.first_resolved_at.get_or_insert(e.at);
                self.last_resolved_at = Some(e.at);
                self.state = Some(RequestState::Resolved);
            }
            E::ReturnVisitRecorded(e) => self.meet(SlaMetric::Callback, e.at),
            E::RequestClosed(e) => self.end(RequestState::Closed, e.at),
            E::RequestReopened(e) => {
                self.reopened += 1;
                self.state = Some(RequestState::InProgress);
                self.take_deadlines(&e.deadlines);
            }
            E::RequestWithdrawn(e) => self.end(RequestState::Withdrawn, e.at),
            E::DuplicateMerged(e) => {
                self.duplicates.push(e.duplicate_id);
                for r in &e.reporters {
                    if !self.reporters.contains(r) {
                        self.reporters.push(*r);
                    }
                }
            }
            E::RequestMergedInto(e) => {
                self.merged_into = Some(e.survivor_id);
                self.end(RequestState::Merged, e.at);
            }
            E::SlaWarningRaised(e) => {
                if let Some(c) = self.clock_mut(e.metric, e.cycle) {
                    c.warned = true;
                }
            }
            E::SlaBreached(e) => {
                if let Some(c) = self.clock_mut(e.metric, e.cycle) {
                    c.breached = true;
                    c.warned = true;
                }
            }
        }
    }
}

fn clock_from(d: &SlaDeadline) -> MetricClock {
    MetricClock {
        metric: d.metric,
        cycle: d.cycle,
        started_at: d.started_at,
        due_at: Some(d.due_at),
        warn_at: d.warn_at,
        met_at: None,
        warned: false,
        breached: false,
        cancelled: false,
    }
}

impl ServiceRequest {
    fn open(&self, c: &OpenServiceRequest) -> Result<Vec<ServiceRequestEvent>, DomainError> {
        if self.filed.is_some() {
            return Err(DomainError::AlreadyExists { entity: "serviceRequest", id: c.request_id.to_string() });
        }
        let clock = clock_for(&c.terms, c.calendar.as_ref())?;
        let mut deadlines = Vec::new();
        for metric in [SlaMetric::FirstResponse, SlaMetric::OnSite, SlaMetric::Resolution, SlaMetric::ReportUpward] {
            let applies = match metric {
                SlaMetric::OnSite => c.on_site_required,
                SlaMetric::ReportUpward => c.request_type == RequestType::Complaint,
                _ => true,
            };
            if applies && let Some(d) = plan(&c.terms, &clock, metric, 1, c.at, &[]) {
                deadlines.push(d);
            }
        }
        Ok(vec![
            RequestFiled {
                request_id: c.request_id,
                customer_id: c.customer_id,
                customer_tier: c.customer_tier,
                request_type: c.request_type,
                category: c.category.clone(),
                priority: c.priority,
                channel: c.channel,
                subject: c.subject.clone(),
                description: c.description.clone(),
                owner: c.taken_by.clone(),
                department: c.department.clone(),
                on_site_required: c.on_site_required,
                external_ref: c.external_ref.clone(),
                tags: c.tags.clone(),
                origin: c.origin,
                filed_at: c.at,
                sla: c.terms.clone(),
                deadlines,
            }
            .into(),
        ])
    }

    fn check_sla(&self, now: DateTime<Utc>, levels: &[Label]) -> Vec<ServiceRequestEvent> {
        if !self.is_live() {
            return vec![];
        }
        let mut events: Vec<ServiceRequestEvent> = Vec::new();
        let mut breached_now = Vec::new();
        for c in self.clocks.iter().filter(|c| c.running()) {
            let Some(due) = c.due_at else { continue };
            if !c.breached && due <= now {
                events.push(SlaBreached { metric: c.metric, cycle: c.cycle, due_at: due }.into());
                breached_now.push(c.metric);
            } else if !c.warned
                && !c.breached
                && let Some(warn_at) = c.warn_at
                && warn_at <= now
            {
                events.push(SlaWarningRaised { metric: c.metric, cycle: c.cycle, due_at: due, warn_at }.into());
            }
        }
        let escalate = self.filed.as_ref().is_some_and(|f| f.sla.escalate_on_breach);
        let top = levels.len().saturating_sub(1) as u32;
        if escalate && !breached_now.is_empty() && self.escalation_level < top {
            let to = self.escalation_level + 1;
            let names: Vec<&str> = breached_now.iter().map(|m| m.as_str()).collect();
            if let (Some(level_name), Ok(reason)) =
                (levels.get(to as usize), Text::parse("reason", &format!("SLA breached: {}", names.join(", "))))
            {
                events.push(
                    RequestEscalated {
                        at: now,
                        from_level: self.escalation_level,
                        to_level: to,
                        level_name: level_name.clone(),
                        reason,
                        automatic: true,
                        assignee: None,
                        incident: None,
                    }
                    .into(),
                );
            }
        }
        events
    }

    fn clock_mut(&mut self, metric: SlaMetric, cycle: u32) -> Option<&mut MetricClock> {
        self.clocks.iter_mut().find(|c| c.metric == metric && c.cycle == cycle)
    }

    fn meet(&mut self, metric: SlaMetric, at: DateTime<Utc>) {
        for c in self.clocks.iter_mut().filter(|c| c.metric == metric && c.running()) {
            c.met_at = Some(at);
        }
    }

    /// A customer-facing answer: meets first response, next response and a pending callback.
    fn responded(&mut self, at: DateTime<Utc>) {
        for metric in [SlaMetric::FirstResponse, SlaMetric::NextResponse, SlaMetric::Callback] {
            self.meet(metric, at);
        }
    }

    fn close_pause(&mut self, at: DateTime<Utc>) {
        if let Some(from) = self.paused_since.take() {
            self.pauses.push(Pause { from, until: Some(at.max(from)) });
        }
    }

    fn take_deadlines(&mut self, deadlines: &[SlaDeadline]) {
        for d in deadlines {
            match self.clocks.iter_mut().find(|c| c.metric == d.metric && c.cycle == d.cycle) {
                Some(c) => {
                    c.due_at = Some(d.due_at);
                    c.warn_at = d.warn_at;
                }
                None => self.clocks.push(clock_from(d)),
            }
        }
    }

    fn end(&mut self, state: RequestState, at: DateTime<Utc>) {
        self.close_pause(at);
        for c in self.clocks.iter_mut().filter(|c| c.running()) {
            c.cancelled = true;
        }
        self.state = Some(state);
    }
}

/// Example values for tests, documentation and the event catalogue.
pub mod examples {
    use super::*;
    use crate::{
        customer::examples::{register_person, staff},
        service_config::{ServiceConfiguration, default_levels},
    };

    /// Parses an RFC 3339 literal.
    pub fn t(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap_or_else(|e| panic!("example time {s}: {e}")).with_timezone(&Utc)
    }

    fn text(s: &str) -> Text {
        Text::parse("text", s).unwrap_or_else(|e| panic!("example text {s}: {e}"))
    }

    fn label(s: &str) -> Label {
        Label::parse("label", s).unwrap_or_else(|e| panic!("example label {s}: {e}"))
    }

    /// The request id used by the examples.
    pub const REQUEST: Uuid = Uuid::from_u128(0x0190_0000_0000_7000_8000_0000_0002_0001);

    /// A complaint under the default (calendar-time) terms, filed 2024-09-02 09:00 UTC.
    pub fn open_complaint() -> OpenServiceRequest {
        let category = Category::parse("category", "Billing / Overcharge").unwrap_or_else(|e| panic!("{e}"));
        let terms = ServiceConfiguration::default().terms_for(RequestType::Complaint, Priority::High, None, &category);
        OpenServiceRequest {
            request_id: REQUEST,
            customer_id: register_person().0,
            customer_tier: Some(ValueTier::Important),
            request_type: RequestType::Complaint,
            category,
            priority: Priority::High,
            channel: Channel::Phone,
            subject: Subject::parse("subject", "宽带费用多收").unwrap_or_else(|e| panic!("{e}")),
            description: Some(text("九月账单多收了 200 元宽带费")),
            taken_by: staff("agent.chen", "陈静"),
            department: Some(label("billing")),
            on_site_required: true,
            external_ref: Some(label("CFPB-7523056")),
            tags: vec![label("older_american")],
            origin: Some(RequestOrigin {
                survey_id: Uuid::from_u128(0x0190_0000_0000_7000_8000_0000_0008_0001),
                request_id: Some(Uuid::from_u128(0x0190_0000_0000_7000_8000_0000_0008_0002)),
            }),
            at: t("2024-09-02T09:00:00Z"),
            terms,
            calendar: None,
        }
    }

    /// The ladder used by the examples.
    pub fn levels() -> Vec<Label> {
        default_levels()
    }

    /// Examples of every request event; together they fill every optional field.
    pub fn all_events() -> Vec<ServiceRequestEvent> {
        let filed = ServiceRequest::default()
            .decide(&ServiceRequestCommand::Open(Box::new(open_complaint())))
            .unwrap_or_else(|e| panic!("example filing must be accepted: {e}"));
        let deadline = |metric, cycle, start: &str, due: &str| SlaDeadline {
            metric,
            cycle,
            started_at: t(start),
            due_at: t(due),
            warn_at: Some(t(due) - Duration::minutes(24)),
        };
        // The same request under business-time terms, to show a calendar in the terms.
        let calendar = crate::business_calendar::examples::beijing();
        let mut config = ServiceConfiguration::default();
        let policy = crate::service_config::examples::important_complaints(calendar.calendar_id);
        config.policies.insert(policy.policy_id, (policy, 2));
        let mut business = open_complaint();
        business.terms =
            config.terms_for(business.request_type, business.priority, business.customer_tier, &business.category);
        business.calendar = Some(calendar.definition);
        let business_filed = ServiceRequest::default()
            .decide(&ServiceRequestCommand::Open(Box::new(business)))
            .unwrap_or_else(|e| panic!("example business filing must be accepted: {e}"));
        let mut events = filed;
        events.extend(business_filed);
        events.extend([
            RequestAcknowledged { at: t("2024-09-02T09:20:00Z"), note: Some(text("已记录，今天内回复")) }.into(),
            RequestAssigned {
                at: t("2024-09-02T09:30:00Z"),
                assignee: Some(staff("agent.li", "李娜")),
                department: Some(label("billing")),
                reason: Some(text("计费专员")),
            }
            .into(),
            RequestTransferred {
                at: t("2024-09-02T10:00:00Z"),
                from_owner: staff("agent.chen", "陈静"),
                to_owner: staff("agent.li", "李娜"),
                department: Some(label("billing")),
                reason: text("交给计费组负责"),
            }
            .into(),
            PlanCommunicated {
                at: t("2024-09-02T10:30:00Z"), plan: text("核对账单后退款"), channel: Channel::Phone
            }
            .into(),
            CallbackCommitted {
                at: t("2024-09-02T10:30:00Z"),
                due_at: t("2024-09-02T16:00:00Z"),
                note: Some(text("下午回电")),
            }
            .into(),
            CustomerAwaited { at: t("2024-09-02T11:00:00Z"), reason: text("等待客户提供账单截图") }.into(),
            RequestResumed {
                at: t("2024-09-02T13:00:00Z"),
                note: Some(text("客户已发送截图")),
                deadlines: vec![deadline(SlaMetric::NextResponse, 1, "2024-09-02T13:00:00Z", "2024-09-02T15:00:00Z")],
            }
            .into(),
            OnSiteArrivalRecorded {
                at: t("2024-09-02T14:00:00Z"),
                engineer: staff("eng.wang", "王工"),
                note: Some(text("检查电表")),
            }
            .into(),
            CustomerUpdated { at: t("2024-09-02T14:30:00Z"), channel: Channel::Sms, summary: text("退款处理中") }
                .into(),
            RequestEscalated {
                at: t("2024-09-02T15:00:00Z"),
                from_level: 0,
                to_level: 1,
                level_name: label("supervisor"),
                reason: text("金额较大"),
                automatic: false,
                assignee: Some(staff("sup.zhao", "赵主管")),
                incident: Some(IncidentRef {
                    incident_id: Uuid::from_u128(0x0190_0000_0000_7000_8000_0000_0005_0001),
                    title: Subject::parse("t", "九月批量计费错误").unwrap_or_else(|e| panic!("{e}")),
                }),
            }
            .into(),
            RequestDeescalated {
                at: t("2024-09-02T15:30:00Z"),
                from_level: 1,
                to_level: 0,
                level_name: label("agent"),
                reason: text("主管已批准退款"),
            }
            .into(),
            RequestResolved {
                at: t("2024-09-02T16:00:00Z"),
                resolution: text("已退款 200 元"),
                root_cause: label("billing_error"),
                compensation: Some(Compensation {
                    kind: CompensationKind::Monetary,
                    amount_minor: Some(20_000),
                    currency: Some(label("CNY")),
                    description: Some(text("退还多收费用")),
                }),
                first_resolution: true,
            }
            .into(),
            ReturnVisitRecorded {
                at: t("2024-09-03T10:00:00Z"),
                satisfied: false,
                channel: Channel::Phone,
                note: Some(text("回访")),
                reason: Some(text("退款未到账")),
            }
            .into(),
            RequestReopened {
                at: t("2024-09-03T10:00:00Z"),
                reason: text("退款未到账"),
                deadlines: vec![deadline(SlaMetric::NextResponse, 2, "2024-09-03T10:00:00Z", "2024-09-03T12:00:00Z")],
            }
            .into(),
            RequestClosed {
                at: t("2024-09-04T10:00:00Z"),
                reason: CloseReason::Administrative,
                note: Some(text("主管结案")),
            }
            .into(),
            RequestWithdrawn { at: t("2024-09-02T12:00:00Z"), reason: text("客户撤回") }.into(),
            DuplicateMerged {
                at: t("2024-09-02T12:00:00Z"),
                duplicate_id: Uuid::from_u128(0x0190_0000_0000_7000_8000_0000_0002_0002),
                reporters: vec![Uuid::from_u128(0x0190_0000_0000_7000_8000_0000_0000_0009)],
                reason: text("同一问题"),
            }
            .into(),
            RequestMergedInto { at: t("2024-09-02T12:00:00Z"), survivor_id: REQUEST, reason: text("同一问题") }.into(),
            SlaWarningRaised {
                metric: SlaMetric::FirstResponse,
                cycle: 1,
                due_at: t("2024-09-02T11:00:00Z"),
                warn_at: t("2024-09-02T10:36:00Z"),
            }
            .into(),
            SlaBreached { metric: SlaMetric::FirstResponse, cycle: 1, due_at: t("2024-09-02T11:00:00Z") }.into(),
        ]);
        events
    }
}

#[cfg(test)]
mod tests {
    use super::examples::*;
    use super::*;
    use crate::{
        DomainEvent,
        customer::examples::staff,
        service_config::{PolicySelector, ServiceConfiguration, SlaPolicy, SlaTargetSpec},
        testing::given,
        values::Name,
    };

    fn text(s: &str) -> Text {
        Text::parse("t", s).unwrap()
    }

    fn filed() -> Vec<ServiceRequestEvent> {
        ServiceRequest::default().decide(&ServiceRequestCommand::Open(Box::new(open_complaint()))).unwrap()
    }

    fn state_after(history: &[ServiceRequestEvent]) -> ServiceRequest {
        ServiceRequest::fold(history.iter())
    }

    fn run(history: &mut Vec<ServiceRequestEvent>, command: ServiceRequestCommand) -> Vec<ServiceRequestEvent> {
        let events = state_after(history).decide(&command).unwrap_or_else(|e| panic!("{command:?}: {e}"));
        history.extend(events.clone());
        events
    }

    fn deadline_of(events: &[ServiceRequestEvent], metric: SlaMetric) -> Option<DateTime<Utc>> {
        events.iter().find_map(|e| match e {
            ServiceRequestEvent::RequestFiled(f) => f.deadlines.iter().find(|d| d.metric == metric).map(|d| d.due_at),
            _ => None,
        })
    }

    #[test]
    fn filing_records_the_documented_deadlines() {
        let events = filed();
        assert_eq!(deadline_of(&events, SlaMetric::FirstResponse), Some(t("2024-09-02T11:00:00Z")), "2 h response");
        assert_eq!(deadline_of(&events, SlaMetric::OnSite), Some(t("2024-09-03T09:00:00Z")), "24 h on site");
        assert_eq!(deadline_of(&events, SlaMetric::Resolution), Some(t("2024-09-04T09:00:00Z")), "48 h resolution");
        assert_eq!(deadline_of(&events, SlaMetric::ReportUpward), Some(t("2024-09-05T09:00:00Z")), "3 calendar days");
        let mut inquiry = open_complaint();
        inquiry.request_type = RequestType::Inquiry;
        inquiry.on_site_required = false;
        let events = given::<ServiceRequest>([]).when(ServiceRequestCommand::Open(Box::new(inquiry))).then_count(1);
        assert_eq!(deadline_of(&events, SlaMetric::ReportUpward), None, "only complaints are reported upward");
        assert_eq!(deadline_of(&events, SlaMetric::OnSite), None, "no on-site clock unless required");
    }

    #[test]
    fn business_time_terms_follow_the_calendar() {
        let calendar = crate::business_calendar::examples::beijing();
        let policy = SlaPolicy {
            policy_id: Uuid::now_v7(),
            name: Name::parse("n", "business hours").unwrap(),
            selector: PolicySelector::default(),
            targets: vec![SlaTargetSpec { metric: SlaMetric::FirstResponse, minutes: 120, warn_percent: 50 }],
            clock: ClockKind::Business,
            calendar_id: Some(calendar.calendar_id),
            escalate_on_breach: false,
            precedence: 0,
        };
        let mut config = ServiceConfiguration::default();
        config.policies.insert(policy.policy_id, (policy, 1));
        let mut open = open_complaint();
        open.terms = config.terms_for(open.request_type, open.priority, open.customer_tier, &open.category);
        // Friday 2024-09-06 17:00 in Beijing.
        open.at = t("2024-09-06T09:00:00Z");
        open.calendar = Some(calendar.definition.clone());
        let events =
            given::<ServiceRequest>([]).when(ServiceRequestCommand::Open(Box::new(open.clone()))).then_count(1);
        assert_eq!(
            deadline_of(&events, SlaMetric::FirstResponse),
            Some(t("2024-09-09T02:00:00Z")),
            "Monday 10:00 Beijing"
        );
        open.calendar = None;
        given::<ServiceRequest>([]).when(ServiceRequestCommand::Open(Box::new(open))).then_rejected("calendar_missing");
    }

    #[test]
    fn the_whole_lifecycle_to_a_satisfied_return_visit() {
        let mut h = filed();
        run(&mut h, ServiceRequestCommand::Acknowledge { at: t("2024-09-02T09:10:00Z"), note: None });
        assert_eq!(state_after(&h).state(), RequestState::Acknowledged);
        run(
            &mut h,
            ServiceRequestCommand::Assign {
                at: t("2024-09-02T09:15:00Z"),
                assignee: Some(staff("agent.li", "李娜")),
                department: None,
                reason: None,
            },
        );
        run(
            &mut h,
            ServiceRequestCommand::CommunicatePlan {
                at: t("2024-09-02T09:30:00Z"),
                plan: text("退款"),
                channel: Channel::Phone,
            },
        );
        run(
            &mut h,
            ServiceRequestCommand::CommitCallback {
                at: t("2024-09-02T09:30:00Z"),
                due_at: t("2024-09-02T15:00:00Z"),
                note: None,
            },
        );
        run(&mut h, ServiceRequestCommand::AwaitCustomer { at: t("2024-09-02T10:00:00Z"), reason: text("等截图") });
        assert_eq!(state_after(&h).state(), RequestState::AwaitingCustomer);
        let resumed =
            run(&mut h, ServiceRequestCommand::Resume { at: t("2024-09-02T14:00:00Z"), note: None, calendar: None });
        let ServiceRequestEvent::RequestResumed(r) = &resumed[0] else { panic!() };
        let resolution = r.deadlines.iter().find(|d| d.metric == SlaMetric::Resolution).unwrap();
        assert_eq!(resolution.due_at, t("2024-09-04T13:00:00Z"), "48 h + the 4 h pause");
        assert!(
            r.deadlines.iter().any(|d| d.metric == SlaMetric::NextResponse && d.due_at == t("2024-09-02T16:00:00Z"))
        );
        run(
            &mut h,
            ServiceRequestCommand::Resolve {
                at: t("2024-09-02T15:00:00Z"),
                resolution: text("已退款"),
                root_cause: Label::parse("c", "billing_error").unwrap(),
                compensation: None,
            },
        );
        let s = state_after(&h);
        assert_eq!(s.state(), RequestState::Resolved);
        assert!(s.clocks.iter().all(|c| !c.running()), "every clock met or cancelled: {:?}", s.clocks);
        let closing = run(
            &mut h,
            ServiceRequestCommand::RecordReturnVisit {
                at: t("2024-09-03T10:00:00Z"),
                satisfied: true,
                channel: Channel::Phone,
                note: None,
                reason: None,
                calendar: None,
            },
        );
        assert_eq!(closing.len(), 2);
        assert_eq!(state_after(&h).state(), RequestState::Closed);
        // Nothing more can be resolved.
        given::<ServiceRequest>(h.clone())
            .when(ServiceRequestCommand::Resolve {
                at: t("2024-09-03T11:00:00Z"),
                resolution: text("x"),
                root_cause: Label::parse("c", "other").unwrap(),
                compensation: None,
            })
            .then_rejected("request_not_open");
        // But a closed request can be reopened.
        let reopened = given::<ServiceRequest>(h).when(ServiceRequestCommand::Reopen {
            at: t("2024-09-05T10:00:00Z"),
            reason: text("问题复发"),
            calendar: None,
        });
        reopened.then_count(1);
    }

    #[test]
    fn an_unsatisfied_return_visit_reopens_and_keeps_the_first_resolution() {
        let mut h = filed();
        run(
            &mut h,
            ServiceRequestCommand::Resolve {
                at: t("2024-09-02T12:00:00Z"),
                resolution: text("已退款"),
                root_cause: Label::parse("c", "billing_error").unwrap(),
                compensation: None,
            },
        );
        given::<ServiceRequest>(h.clone())
            .when(ServiceRequestCommand::RecordReturnVisit {
                at: t("2024-09-03T10:00:00Z"),
                satisfied: false,
                channel: Channel::Phone,
                note: None,
                reason: None,
                calendar: None,
            })
            .then_invalid("reason");
        let visit = run(
            &mut h,
            ServiceRequestCommand::RecordReturnVisit {
                at: t("2024-09-03T10:00:00Z"),
                satisfied: false,
                channel: Channel::Phone,
                note: None,
                reason: Some(text("没收到退款")),
                calendar: None,
            },
        );
        assert_eq!(visit[1].event_type(), "RequestReopened");
        let s = state_after(&h);
        assert_eq!(s.state(), RequestState::InProgress);
        assert_eq!(s.first_resolved_at, Some(t("2024-09-02T12:00:00Z")));
        let again = run(
            &mut h,
            ServiceRequestCommand::Resolve {
                at: t("2024-09-04T12:00:00Z"),
                resolution: text("补发退款"),
                root_cause: Label::parse("c", "billing_error").unwrap(),
                compensation: None,
            },
        );
        let ServiceRequestEvent::RequestResolved(r) = &again[0] else { panic!() };
        assert!(!r.first_resolution);
        let s = state_after(&h);
        assert_eq!(
            (s.first_resolved_at, s.last_resolved_at),
            (Some(t("2024-09-02T12:00:00Z")), Some(t("2024-09-04T12:00:00Z")))
        );
        assert_eq!(s.reopened, 1);
    }

    #[test]
    fn the_lifecycle_refuses_steps_out_of_order() {
        let h = filed();
        given::<ServiceRequest>(h.clone())
            .when(ServiceRequestCommand::RecordReturnVisit {
                at: t("2024-09-02T10:00:00Z"),
                satisfied: true,
                channel: Channel::Phone,
                note: None,
                reason: None,
                calendar: None,
            })
            .then_rejected("not_resolved");
        given::<ServiceRequest>(h.clone())
            .when(ServiceRequestCommand::Resume { at: t("2024-09-02T10:00:00Z"), note: None, calendar: None })
            .then_rejected("not_awaiting_customer");
        given::<ServiceRequest>(h.clone())
            .when(ServiceRequestCommand::Reopen { at: t("2024-09-02T10:00:00Z"), reason: text("x"), calendar: None })
            .then_rejected("not_resolved_or_closed");
        given::<ServiceRequest>(h.clone())
            .when(ServiceRequestCommand::Close {
                at: t("2024-09-02T10:00:00Z"),
                reason: CloseReason::Administrative,
                note: None,
            })
            .then_rejected("not_resolved");
        let mut withdrawn = h.clone();
        run(
            &mut withdrawn,
            ServiceRequestCommand::Withdraw { at: t("2024-09-02T10:00:00Z"), reason: text("不需要了") },
        );
        given::<ServiceRequest>(withdrawn.clone())
            .when(ServiceRequestCommand::Reopen { at: t("2024-09-02T11:00:00Z"), reason: text("x"), calendar: None })
            .then_rejected("not_resolved_or_closed");
        given::<ServiceRequest>(withdrawn)
            .when(ServiceRequestCommand::Withdraw { at: t("2024-09-02T11:00:00Z"), reason: text("x") })
            .then_rejected("request_ended");
        given::<ServiceRequest>([])
            .when(ServiceRequestCommand::Acknowledge { at: t("2024-09-02T10:00:00Z"), note: None })
            .then_err();
        let mut acked = h;
        run(&mut acked, ServiceRequestCommand::Acknowledge { at: t("2024-09-02T10:00:00Z"), note: None });
        given::<ServiceRequest>(acked)
            .when(ServiceRequestCommand::Acknowledge { at: t("2024-09-02T10:05:00Z"), note: None })
            .then_rejected("already_acknowledged");
    }

    #[test]
    fn transfers_record_from_whom_to_whom_and_why() {
        let mut h = filed();
        let events = run(
            &mut h,
            ServiceRequestCommand::Transfer {
                at: t("2024-09-02T10:00:00Z"),
                to: staff("agent.li", "李娜"),
                department: None,
                reason: text("休假"),
            },
        );
        let ServiceRequestEvent::RequestTransferred(tr) = &events[0] else { panic!() };
        assert_eq!(tr.from_owner.id.as_str(), "agent.chen");
        assert_eq!(state_after(&h).owner.unwrap().id.as_str(), "agent.li");
        given::<ServiceRequest>(h)
            .when(ServiceRequestCommand::Transfer {
                at: t("2024-09-02T11:00:00Z"),
                to: staff("agent.li", "李娜"),
                department: None,
                reason: text("x"),
            })
            .then_invalid("to");
    }

    #[test]
    fn escalation_climbs_and_descends_the_ladder() {
        let mut h = filed();
        let up = |to: Option<u32>| ServiceRequestCommand::Escalate {
            at: t("2024-09-02T10:00:00Z"),
            to_level: to,
            reason: text("客户要求"),
            assignee: None,
            incident: None,
            levels: levels(),
        };
        run(&mut h, up(None));
        run(&mut h, up(Some(3)));
        assert_eq!(state_after(&h).escalation_level, 3);
        given::<ServiceRequest>(h.clone()).when(up(None)).then_rejected("top_of_ladder");
        given::<ServiceRequest>(h.clone()).when(up(Some(2))).then_rejected("not_higher");
        let down = run(
            &mut h,
            ServiceRequestCommand::Deescalate {
                at: t("2024-09-02T11:00:00Z"),
                to_level: None,
                reason: text("已控制"),
                levels: levels(),
            },
        );
        let ServiceRequestEvent::RequestDeescalated(d) = &down[0] else { panic!() };
        assert_eq!((d.from_level, d.to_level, d.level_name.as_str()), (3, 2, "department_head"));
        // The first escalation meets the complaint's report-upward clock.
        let s = state_after(&h);
        let report = s.clocks.iter().find(|c| c.metric == SlaMetric::ReportUpward).unwrap();
        assert_eq!(report.met_at, Some(t("2024-09-02T10:00:00Z")));
    }

    #[test]
    fn sla_warnings_and_breaches_are_recorded_exactly_once() {
        let mut h = filed();
        let check = |now: &str| ServiceRequestCommand::CheckSla { now: t(now), levels: levels() };
        given::<ServiceRequest>(h.clone()).when(check("2024-09-02T10:00:00Z")).then_nothing();
        // First response is due at 11:00 and warns at 80 % (10:36).
        let warned = run(&mut h, check("2024-09-02T10:40:00Z"));
        assert_eq!(warned.len(), 1);
        assert_eq!(warned[0].event_type(), "SlaWarningRaised");
        given::<ServiceRequest>(h.clone()).when(check("2024-09-02T10:50:00Z")).then_nothing();
        let breached = run(&mut h, check("2024-09-02T11:00:00Z"));
        assert_eq!(breached.len(), 1);
        let ServiceRequestEvent::SlaBreached(b) = &breached[0] else { panic!() };
        assert_eq!((b.metric, b.due_at), (SlaMetric::FirstResponse, t("2024-09-02T11:00:00Z")));
        given::<ServiceRequest>(h.clone()).when(check("2024-09-02T11:30:00Z")).then_nothing();
        // A met clock never breaches; a paused one neither.
        let mut met = filed();
        run(&mut met, ServiceRequestCommand::Acknowledge { at: t("2024-09-02T09:05:00Z"), note: None });
        run(&mut met, ServiceRequestCommand::AwaitCustomer { at: t("2024-09-02T09:10:00Z"), reason: text("等待") });
        given::<ServiceRequest>(met).when(check("2024-09-10T00:00:00Z")).then_nothing();
    }

    #[test]
    fn a_breach_escalates_automatically_when_the_policy_says_so() {
        let mut open = open_complaint();
        open.terms.escalate_on_breach = true;
        let h = ServiceRequest::default().decide(&ServiceRequestCommand::Open(Box::new(open))).unwrap();
        let events = given::<ServiceRequest>(h)
            .when(ServiceRequestCommand::CheckSla { now: t("2024-09-02T11:00:00Z"), levels: levels() })
            .then_count(2);
        let ServiceRequestEvent::RequestEscalated(e) = &events[1] else { panic!("{events:?}") };
        assert!(e.automatic);
        assert_eq!((e.to_level, e.level_name.as_str()), (1, "supervisor"));
    }

    #[test]
    fn a_kept_promise_meets_the_callback_and_a_broken_one_breaches() {
        let mut h = filed();
        run(&mut h, ServiceRequestCommand::Acknowledge { at: t("2024-09-02T09:05:00Z"), note: None });
        run(
            &mut h,
            ServiceRequestCommand::CommitCallback {
                at: t("2024-09-02T09:30:00Z"),
                due_at: t("2024-09-02T12:00:00Z"),
                note: None,
            },
        );
        let mut kept = h.clone();
        run(
            &mut kept,
            ServiceRequestCommand::UpdateCustomer {
                at: t("2024-09-02T11:00:00Z"),
                channel: Channel::Phone,
                summary: text("进展"),
            },
        );
        given::<ServiceRequest>(kept)
            .when(ServiceRequestCommand::CheckSla { now: t("2024-09-02T12:30:00Z"), levels: levels() })
            .then_nothing();
        let broken = given::<ServiceRequest>(h)
            .when(ServiceRequestCommand::CheckSla { now: t("2024-09-02T12:30:00Z"), levels: levels() })
            .then_count(1);
        let ServiceRequestEvent::SlaBreached(b) = &broken[0] else { panic!() };
        assert_eq!(b.metric, SlaMetric::Callback);
        given::<ServiceRequest>(filed())
            .when(ServiceRequestCommand::CommitCallback {
                at: t("2024-09-02T12:00:00Z"),
                due_at: t("2024-09-02T11:00:00Z"),
                note: None,
            })
            .then_invalid("dueAt");
    }

    #[test]
    fn merges_keep_every_reporter_and_refuse_impossible_merges() {
        let survivor = filed();
        let dup_reporter = Uuid::now_v7();
        let absorb = |state| ServiceRequestCommand::AbsorbDuplicate {
            at: t("2024-09-02T12:00:00Z"),
            duplicate_id: Uuid::from_u128(7),
            reporters: vec![dup_reporter],
            duplicate_state: state,
            reason: text("同一问题"),
        };
        let s = given::<ServiceRequest>(survivor.clone()).when(absorb(RequestState::Filed)).then(vec![
            DuplicateMerged {
                at: t("2024-09-02T12:00:00Z"),
                duplicate_id: Uuid::from_u128(7),
                reporters: vec![dup_reporter],
                reason: text("同一问题"),
            }
            .into(),
        ]);
        assert_eq!(s.reporters.len(), 2);
        given::<ServiceRequest>(survivor.clone()).when(absorb(RequestState::Closed)).then_rejected("duplicate_ended");
        given::<ServiceRequest>(survivor.clone())
            .when(ServiceRequestCommand::AbsorbDuplicate {
                at: t("2024-09-02T12:00:00Z"),
                duplicate_id: REQUEST,
                reporters: vec![],
                duplicate_state: RequestState::Filed,
                reason: text("x"),
            })
            .then_rejected("merge_into_itself");
        let mut closed = survivor.clone();
        run(
            &mut closed,
            ServiceRequestCommand::Resolve {
                at: t("2024-09-02T10:00:00Z"),
                resolution: text("x"),
                root_cause: Label::parse("c", "other").unwrap(),
                compensation: None,
            },
        );
        run(
            &mut closed,
            ServiceRequestCommand::Close {
                at: t("2024-09-02T11:00:00Z"),
                reason: CloseReason::Administrative,
                note: None,
            },
        );
        given::<ServiceRequest>(closed).when(absorb(RequestState::Filed)).then_rejected("survivor_ended");
        let mut dup = survivor;
        run(
            &mut dup,
            ServiceRequestCommand::MergeInto {
                at: t("2024-09-02T12:00:00Z"),
                survivor_id: Uuid::from_u128(8),
                reason: text("x"),
            },
        );
        let s = state_after(&dup);
        assert_eq!(s.state(), RequestState::Merged);
        assert!(s.clocks.iter().all(|c| !c.running()));
    }

    #[test]
    fn events_survive_json_and_every_type_has_an_example() {
        let mut types: Vec<&str> = all_events().iter().map(|e| e.event_type()).collect();
        for e in all_events() {
            let (ty, payload) = e.to_payload().unwrap();
            assert_eq!(ServiceRequestEvent::from_payload(ty, payload).unwrap(), e);
        }
        types.sort_unstable();
        types.dedup();
        let mut expected = ServiceRequestEvent::EVENT_TYPES.to_vec();
        expected.sort_unstable();
        assert_eq!(types, expected);
    }

    proptest::proptest! {
        #[test]
        fn pausing_never_brings_a_deadline_forward(pauses in proptest::collection::vec((1i64..600, 1i64..600), 0..5)) {
            let mut h = filed();
            let mut at = t("2024-09-02T09:00:00Z");
            let original = deadline_of(&h, SlaMetric::Resolution).unwrap();
            for (gap, length) in pauses {
                at += Duration::minutes(gap);
                run(&mut h, ServiceRequestCommand::AwaitCustomer { at, reason: text("等待") });
                at += Duration::minutes(length);
                run(&mut h, ServiceRequestCommand::Resume { at, note: None, calendar: None });
                let s = state_after(&h);
                let due = s.clocks.iter().find(|c| c.metric == SlaMetric::Resolution).unwrap().due_at.unwrap();
                proptest::prop_assert!(due >= original);
                let paused: Duration = s.pauses.iter().map(|p| p.until.unwrap() - p.from).sum();
                proptest::prop_assert_eq!(due, original + paused);
            }
        }
    }
}
