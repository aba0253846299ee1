//! Service requests and complaints: the lifecycle mutations, the request page, the complaint
//! backlog, the audit trail and SLA compliance.

use async_graphql::{
    ComplexObject, Context, Enum, ID, InputObject, Json, Object, Result, SimpleObject,
    connection::{Connection, ConnectionNameType, Edge, EmptyFields, OpaqueCursor},
};
use chrono::{DateTime, Utc};
use kefu_app::{AppendOutcome, CommandMeta, service_requests::RequestDraft};
use kefu_domain::{
    service_request::{Compensation as DomainCompensation, IncidentRef, ServiceRequestCommand as C},
    values::{Category, Label, Subject, Text},
    vocab,
};
use kefu_projections::{
    request_audit,
    service_requests::{
        self as read, BacklogCursor, BacklogFilter, BacklogOrder, ComplianceDimension, LazyAggregate, Listed,
        StoredRequest,
    },
};
use uuid::Uuid;

use super::{
    common::{self, CommandOptions, CommandOutcome, GlobalPosition, Staff, StaffInput},
    customers::{self, Customer, page_size},
    vocab::*,
};
use crate::errors::{self, Validator};

// ---------------------------------------------------------------------------------------------
// Output

/// A service request or complaint, with its SLA clocks.
///
/// Fields the read model keeps as columns are answered from them; the rest (the filing's
/// details, the clocks, reporters…) decode the request's aggregate, once, on first use.
pub struct ServiceRequest {
    r: StoredRequest,
    /// The point `serviceRequest(asOf:)` reads at, for the fields that read further.
    as_of: Option<kefu_store::history::Cutoff>,
    /// The aggregate, read by id when the list this request came from left it out.
    read_again: tokio::sync::OnceCell<LazyAggregate>,
}

impl ServiceRequest {
    /// A request of the read model.
    pub fn new(r: StoredRequest) -> Self {
        ServiceRequest { r, as_of: None, read_again: tokio::sync::OnceCell::new() }
    }

    /// A request folded as of a point.
    pub fn as_of(r: StoredRequest, cutoff: kefu_store::history::Cutoff) -> Self {
        ServiceRequest { r, as_of: Some(cutoff), read_again: tokio::sync::OnceCell::new() }
    }

    fn listed(&self) -> &Listed {
        &self.r.listed
    }

    async fn aggregate(&self, ctx: &Context<'_>) -> Result<&kefu_domain::service_request::ServiceRequest> {
        aggregate_of(ctx, &self.r.aggregate, &self.read_again, self.r.listed.request_id).await
    }

    async fn filed(&self, ctx: &Context<'_>) -> Result<&kefu_domain::service_request::RequestFiled> {
        self.aggregate(ctx).await?.filed.as_ref().ok_or_else(|| errors::internal("a stored request has no filing"))
    }
}

/// An SLA clock's state right now.
#[derive(Enum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum SlaState {
    /// Running, not yet near its deadline.
    Ok,
    /// Past its warning time.
    Warning,
    /// Past its deadline (or a breach was recorded).
    Breached,
    /// Paused while waiting for the customer.
    Paused,
    /// The target was met.
    Met,
    /// No longer applies (the request ended or the step became moot).
    Cancelled,
}

/// One SLA clock.
#[derive(SimpleObject, Clone)]
pub struct SlaClock {
    /// What it measures.
    pub metric: SlaMetric,
    /// 1 for the first clock of this metric, counting up.
    pub cycle: i32,
    /// When it started.
    pub started_at: DateTime<Utc>,
    /// Deadline (null while paused).
    pub due_at: Option<DateTime<Utc>>,
    /// Warning time.
    pub warn_at: Option<DateTime<Utc>>,
    /// When the target was met.
    pub met_at: Option<DateTime<Utc>>,
    /// State now.
    pub state: SlaState,
}

/// A request's next deadline: which clock and when from the read model's columns, its state
/// from the request's clocks (decoded only if asked for).
pub struct NextDeadline {
    metric: SlaMetric,
    due_at: DateTime<Utc>,
    request_id: Uuid,
    aggregate: LazyAggregate,
    read_again: tokio::sync::OnceCell<LazyAggregate>,
}

/// The next deadline of a request.
#[Object]
impl NextDeadline {
    /// Which clock.
    async fn metric(&self) -> SlaMetric {
        self.metric
    }

    /// When.
    async fn due_at(&self) -> DateTime<Utc> {
        self.due_at
    }

    /// State now.
    async fn state(&self, ctx: &Context<'_>) -> Result<SlaState> {
        let clock = next_clock(aggregate_of(ctx, &self.aggregate, &self.read_again, self.request_id).await?)
            .ok_or_else(|| errors::internal("a request's next deadline has no running clock"))?;
        Ok(clock_state(clock, Utc::now()))
    }
}

/// A request's aggregate: as its read brought it, or, when its list read only the columns
/// (the selection looked as if it needed none), read now by id.
async fn aggregate_of<'a>(
    ctx: &Context<'_>,
    read: &'a LazyAggregate,
    read_again: &'a tokio::sync::OnceCell<LazyAggregate>,
    request_id: Uuid,
) -> Result<&'a kefu_domain::service_request::ServiceRequest> {
    let aggregate = if read.is_read() {
        read
    } else {
        read_again
            .get_or_try_init(|| async {
                let again = super::loaders::request(ctx, request_id).await?;
                again.map(|r| r.aggregate).ok_or_else(|| errors::internal("a listed request is no longer stored"))
            })
            .await?
    };
    aggregate.get().map_err(errors::projection)
}

/// Whether the selection of a `ServiceRequest` (under a list's `edges { node }`) shows a field
/// only the request's aggregate holds.
pub(crate) fn aggregates_for(request: async_graphql::Lookahead<'_>) -> read::Aggregates {
    const FROM_THE_AGGREGATE: &[&str] = &[
        "description",
        "incident",
        "onSiteRequired",
        "originSurveyId",
        "originRequestId",
        "tags",
        "reporters",
        "duplicates",
        "sla",
        "slaClocks",
        "slaState",
    ];
    let needed = FROM_THE_AGGREGATE.iter().any(|f| request.field(f).exists())
        || request.field("nextDeadline").field("state").exists();
    if needed { read::Aggregates::Read } else { read::Aggregates::Skipped }
}

/// The running clock due first (the read model's `next_due`).
fn next_clock(s: &kefu_domain::service_request::ServiceRequest) -> Option<&kefu_domain::service_request::MetricClock> {
    s.clocks.iter().filter(|c| c.running() && c.due_at.is_some()).min_by_key(|c| c.due_at)
}

/// The SLA terms a request was filed under.
#[derive(SimpleObject, Clone)]
pub struct SlaTermsView {
    /// Policy id (the nil UUID for kefu's default).
    pub policy_id: Uuid,
    /// Policy name.
    pub policy_name: String,
    /// Policy version.
    pub policy_version: i64,
    /// Calendar or business time.
    pub clock: ClockKind,
    /// Business calendar.
    pub calendar_id: Option<Uuid>,
    /// Targets.
    pub targets: Vec<SlaTarget>,
    /// Escalates automatically on breach.
    pub escalate_on_breach: bool,
}

/// An SLA target.
#[derive(SimpleObject, Clone)]
pub struct SlaTarget {
    /// What is measured.
    pub metric: SlaMetric,
    /// Target in minutes of the policy's clock.
    pub minutes: i32,
    /// Warning at this percentage of the target.
    pub warn_percent: i32,
}

/// A make-good.
#[derive(SimpleObject, Clone)]
pub struct CompensationView {
    /// Money or service.
    pub kind: CompensationKind,
    /// Amount in minor units (fen, cents).
    pub amount_minor: Option<i64>,
    /// Currency.
    pub currency: Option<String>,
    /// What was given.
    pub description: Option<String>,
}

/// The latest resolution.
#[derive(SimpleObject, Clone)]
pub struct ResolutionView {
    /// When.
    pub resolved_at: Option<DateTime<Utc>>,
    /// What was done.
    pub resolution: String,
    /// Root cause code.
    pub root_cause: String,
    /// Make-good, if any.
    pub compensation: Option<CompensationView>,
}

/// A major/batch incident.
#[derive(SimpleObject, Clone)]
pub struct Incident {
    /// Id.
    pub incident_id: Uuid,
    /// Title.
    pub title: String,
}

fn clock_state(c: &kefu_domain::service_request::MetricClock, now: DateTime<Utc>) -> SlaState {
    if c.met_at.is_some() {
        return if read::outcome(c) == read::ClockOutcome::Hit { SlaState::Met } else { SlaState::Breached };
    }
    if c.cancelled {
        return SlaState::Cancelled;
    }
    match (c.due_at, c.warn_at) {
        (None, _) => SlaState::Paused,
        (Some(due), _) if c.breached || due <= now => SlaState::Breached,
        (_, Some(warn)) if c.warned || warn <= now => SlaState::Warning,
        _ => SlaState::Ok,
    }
}

fn staff(s: &Option<(String, Option<String>)>) -> Option<Staff> {
    s.as_ref().map(|(id, name)| Staff { id: id.clone(), name: name.clone() })
}

#[Object]
impl ServiceRequest {
    /// Global id (`ServiceRequest:<uuid>`).
    pub async fn id(&self) -> ID {
        common::global_id("ServiceRequest", self.listed().request_id)
    }

    /// The request's UUID.
    async fn request_id(&self) -> Uuid {
        self.listed().request_id
    }

    /// The customer who filed it.
    async fn customer(&self, ctx: &Context<'_>) -> Result<Option<Customer>> {
        match self.as_of {
            Some(cutoff) => customers::load_as_of(ctx, self.listed().customer_id, cutoff).await,
            None => customers::load(ctx, self.listed().customer_id).await,
        }
    }

    /// The customer's UUID.
    async fn customer_id(&self) -> Uuid {
        self.listed().customer_id
    }

    /// Inquiry, complaint, suggestion or demand.
    async fn request_type(&self) -> RequestType {
        self.listed().request_type.into()
    }

    /// Category.
    async fn category(&self) -> &str {
        &self.listed().category
    }

    /// Priority.
    async fn priority(&self) -> Priority {
        self.listed().priority.into()
    }

    /// Where it came in.
    async fn channel(&self) -> Channel {
        self.listed().channel.into()
    }

    /// Subject.
    async fn subject(&self) -> &str {
        &self.listed().subject
    }

    /// Details.
    async fn description(&self, ctx: &Context<'_>) -> Result<Option<&str>> {
        Ok(self.filed(ctx).await?.description.as_ref().map(|d| d.as_str()))
    }

    /// Where it is in its lifecycle.
    async fn state(&self) -> RequestState {
        self.r.facts.request_state.into()
    }

    /// The owner: the first person who took it (首问负责), until an explicit transfer.
    async fn owner(&self) -> Option<Staff> {
        staff(&self.listed().owner)
    }

    /// Who works on it now.
    async fn assignee(&self) -> Option<Staff> {
        staff(&self.listed().assignee)
    }

    /// Responsible department.
    async fn department(&self) -> Option<&str> {
        self.listed().department.as_deref()
    }

    /// Escalation level (0 = agent).
    async fn escalation_level(&self) -> i32 {
        self.listed().escalation_level
    }

    /// Name of the escalation level.
    async fn escalation_level_name(&self) -> Option<&str> {
        self.r.facts.escalation_name.as_deref()
    }

    /// The major/batch incident it belongs to.
    async fn incident(&self, ctx: &Context<'_>) -> Result<Option<Incident>> {
        Ok(self
            .aggregate(ctx)
            .await?
            .incident
            .as_ref()
            .map(|i| Incident { incident_id: i.incident_id, title: i.title.to_string() }))
    }

    /// The customer's value tier at filing.
    async fn customer_tier(&self) -> Option<ValueTier> {
        self.listed().customer_tier.map(Into::into)
    }

    /// Whether on-site support is required.
    async fn on_site_required(&self, ctx: &Context<'_>) -> Result<bool> {
        Ok(self.filed(ctx).await?.on_site_required)
    }

    /// Id in another system.
    async fn external_ref(&self) -> Option<&str> {
        self.listed().external_ref.as_deref()
    }

    /// When kefu opened it as the follow-up of a dissatisfied survey answer: that survey.
    async fn origin_survey_id(&self, ctx: &Context<'_>) -> Result<Option<Uuid>> {
        Ok(self.filed(ctx).await?.origin.map(|o| o.survey_id))
    }

    /// … and the request that survey was about.
    async fn origin_request_id(&self, ctx: &Context<'_>) -> Result<Option<Uuid>> {
        Ok(self.filed(ctx).await?.origin.and_then(|o| o.request_id))
    }

    /// The satisfaction survey about this request, if one was sent.
    async fn survey(&self, ctx: &Context<'_>) -> Result<Option<super::satisfaction::Survey>> {
        if self.as_of.is_some() {
            return Err(super::history::present_only("serviceRequest", "survey"));
        }
        super::satisfaction::of_request(ctx, self.listed().request_id).await
    }

    /// Tags.
    async fn tags(&self, ctx: &Context<'_>) -> Result<Vec<String>> {
        Ok(self.filed(ctx).await?.tags.iter().map(|t| t.to_string()).collect())
    }

    /// When it was filed (business time).
    async fn filed_at(&self) -> DateTime<Utc> {
        self.listed().filed_at
    }

    /// When the customer was first answered.
    async fn first_response_at(&self) -> Option<DateTime<Utc>> {
        self.r.facts.first_response_at
    }

    /// The first resolution (kept when reopened).
    async fn first_resolved_at(&self) -> Option<DateTime<Utc>> {
        self.listed().first_resolved_at
    }

    /// The latest resolution.
    async fn last_resolved_at(&self) -> Option<DateTime<Utc>> {
        self.listed().last_resolved_at
    }

    /// From filing to the latest resolution, in seconds (the full resolution time, counting
    /// reopened periods).
    async fn full_resolution_seconds(&self) -> Option<i64> {
        let l = self.listed();
        l.last_resolved_at.map(|r| (r - l.filed_at).num_seconds())
    }

    /// When it was closed, withdrawn or merged.
    async fn ended_at(&self) -> Option<DateTime<Utc>> {
        self.r.facts.ended_at
    }

    /// The latest resolution.
    async fn resolution(&self) -> Option<ResolutionView> {
        let r = self.r.facts.resolution.as_ref()?;
        let compensation = r.get("compensation").and_then(|c| {
            let c: DomainCompensation = serde_json::from_value(c.clone()).ok()?;
            Some(CompensationView {
                kind: c.kind.into(),
                amount_minor: c.amount_minor,
                currency: c.currency.map(|x| x.to_string()),
                description: c.description.map(|x| x.to_string()),
            })
        });
        Some(ResolutionView {
            resolved_at: self.listed().last_resolved_at,
            resolution: r.get("resolution").and_then(|x| x.as_str()).unwrap_or_default().to_string(),
            root_cause: r.get("rootCause").and_then(|x| x.as_str()).unwrap_or_default().to_string(),
            compensation,
        })
    }

    /// Times reopened.
    async fn reopen_count(&self) -> i32 {
        self.r.facts.reopen_count
    }

    /// Return visits made.
    async fn return_visits(&self) -> i32 {
        self.r.facts.return_visits
    }

    /// Whether the customer was satisfied at the latest return visit.
    async fn last_return_visit_satisfied(&self) -> Option<bool> {
        self.r.facts.last_return_visit_satisfied
    }

    /// Everyone who reported it (the customer and the reporters of merged duplicates).
    async fn reporters(&self, ctx: &Context<'_>) -> Result<Vec<Uuid>> {
        Ok(self.aggregate(ctx).await?.reporters.clone())
    }

    /// Duplicates merged into it.
    async fn duplicates(&self, ctx: &Context<'_>) -> Result<Vec<Uuid>> {
        Ok(self.aggregate(ctx).await?.duplicates.clone())
    }

    /// The request it was merged into.
    async fn merged_into(&self) -> Option<Uuid> {
        self.listed().merged_into
    }

    /// The SLA terms it was filed under.
    async fn sla(&self, ctx: &Context<'_>) -> Result<SlaTermsView> {
        let t = &self.filed(ctx).await?.sla;
        Ok(SlaTermsView {
            policy_id: t.policy_id,
            policy_name: t.policy_name.to_string(),
            policy_version: t.policy_version,
            clock: t.clock.into(),
            calendar_id: t.calendar_id,
            targets: t
                .targets
                .iter()
                .map(|x| SlaTarget {
                    metric: x.metric.into(),
                    minutes: x.minutes as i32,
                    warn_percent: x.warn_percent as i32,
                })
                .collect(),
            escalate_on_breach: t.escalate_on_breach,
        })
    }

    /// Every SLA clock, with its state now.
    async fn sla_clocks(&self, ctx: &Context<'_>) -> Result<Vec<SlaClock>> {
        let now = Utc::now();
        Ok(self
            .aggregate(ctx)
            .await?
            .clocks
            .iter()
            .map(|c| SlaClock {
                metric: c.metric.into(),
                cycle: c.cycle as i32,
                started_at: c.started_at,
                due_at: c.due_at,
                warn_at: c.warn_at,
                met_at: c.met_at,
                state: clock_state(c, now),
            })
            .collect())
    }

    /// The running clock due first.
    async fn next_deadline(&self) -> Result<Option<NextDeadline>> {
        let Some((metric, due_at)) = &self.r.facts.next_due else { return Ok(None) };
        let metric: vocab::SlaMetric =
            metric.parse().map_err(|_| errors::internal("an unknown SLA metric is stored"))?;
        Ok(Some(NextDeadline {
            metric: metric.into(),
            due_at: *due_at,
            request_id: self.r.listed.request_id,
            aggregate: self.r.aggregate.clone(),
            read_again: tokio::sync::OnceCell::new(),
        }))
    }

    /// The request's SLA state now: the worst of its running clocks (PAUSED while waiting for
    /// the customer; null when no clock runs).
    async fn sla_state(&self, ctx: &Context<'_>) -> Result<Option<SlaState>> {
        if self.listed().paused {
            return Ok(Some(SlaState::Paused));
        }
        let now = Utc::now();
        let states: Vec<SlaState> =
            self.aggregate(ctx).await?.clocks.iter().filter(|c| c.running()).map(|c| clock_state(c, now)).collect();
        Ok([SlaState::Breached, SlaState::Warning, SlaState::Ok].into_iter().find(|s| states.contains(s)))
    }

    /// Whether any target was missed.
    async fn breached(&self) -> bool {
        self.r.facts.breached
    }

    /// The promised callback time, while pending.
    async fn callback_due_at(&self) -> Option<DateTime<Utc>> {
        self.listed().callback_due_at
    }

    /// Seconds since filing (until it ended, for ended requests).
    async fn age_seconds(&self) -> i64 {
        (self.r.facts.ended_at.unwrap_or_else(Utc::now) - self.listed().filed_at).num_seconds()
    }

    /// Age bucket (calendar time since filing).
    async fn age_bucket(&self) -> AgeBucket {
        age_bucket(read::age_bucket(self.listed().filed_at, Utc::now()))
    }

    /// Stream version; pass it as `expectedVersion`.
    async fn version(&self) -> i64 {
        self.r.facts.version
    }

    /// Latest global position reflected.
    async fn last_position(&self) -> GlobalPosition {
        GlobalPosition(self.r.facts.last_position)
    }

    /// Every step of this request, in order (the audit trail).
    async fn history(&self, ctx: &Context<'_>) -> Result<Vec<HistoryEntry>> {
        let mut entries = load_history(ctx, self.listed().request_id).await?;
        if let Some(cutoff) = self.as_of {
            entries.retain(|h| cutoff.includes(h.global_position.0, h.recorded_at, h.occurred_at));
        }
        Ok(entries)
    }
}

/// Age of a request since filing.
#[derive(Enum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum AgeBucket {
    /// Less than 4 hours.
    Under4Hours,
    /// 4 to 24 hours.
    From4To24Hours,
    /// 1 to 3 days.
    From1To3Days,
    /// 3 to 7 days.
    From3To7Days,
    /// More than 7 days.
    Over7Days,
}

fn age_bucket(name: &str) -> AgeBucket {
    match name {
        "UNDER_4_HOURS" => AgeBucket::Under4Hours,
        "4_TO_24_HOURS" => AgeBucket::From4To24Hours,
        "1_TO_3_DAYS" => AgeBucket::From1To3Days,
        "3_TO_7_DAYS" => AgeBucket::From3To7Days,
        _ => AgeBucket::Over7Days,
    }
}

/// One step of a request's audit trail.
#[derive(SimpleObject)]
pub struct HistoryEntry {
    /// Position in the request's stream (1, 2, …).
    pub version: i64,
    /// Position in the global log.
    pub global_position: GlobalPosition,
    /// Event id.
    pub event_id: Uuid,
    /// Event type (see docs/events.md).
    pub event_type: String,
    /// When it happened (business time).
    pub occurred_at: DateTime<Utc>,
    /// When kefu recorded it.
    pub recorded_at: DateTime<Utc>,
    /// Who did it.
    pub actor: ActorView,
    /// The conversation it belongs to.
    pub correlation_id: Uuid,
    /// What caused it.
    pub causation_id: Uuid,
    /// The command.
    pub command_id: Uuid,
    /// What happened, in a sentence.
    pub summary: String,
    /// Why (when the step has a reason).
    pub reason: Option<String>,
    /// What changed: `{"state": {"from": "FILED", "to": "ACKNOWLEDGED"}, …}`.
    pub changes: Json<serde_json::Value>,
    /// The other request of a merge.
    pub related_request_id: Option<Uuid>,
    /// The event itself (proto3 JSON of its message).
    pub payload: Json<serde_json::Value>,
    /// SHA-256 of the event chained to the previous one of the request (hex), recomputed
    /// from the event store now.
    pub hash: Option<String>,
    /// True when this step and every earlier one still match their recorded hashes: it was
    /// not altered after the fact.
    pub verified: bool,
}

/// Who acted.
#[derive(SimpleObject)]
pub struct ActorView {
    /// Id.
    pub id: String,
    /// Name.
    pub name: Option<String>,
    /// USER, SYSTEM or IMPORT.
    pub kind: String,
    /// Roles at the time.
    pub roles: Vec<String>,
}

async fn load_history(ctx: &Context<'_>, id: Uuid) -> Result<Vec<HistoryEntry>> {
    let mut tx = common::read(ctx, request_audit::NAME).await?;
    let entries = request_audit::history(&mut tx, id).await.map_err(errors::projection)?;
    drop(tx);
    let (_, chain) = super::history::verify_stream(ctx, id).await?;
    let chain: std::collections::HashMap<i64, (String, bool)> =
        chain.into_iter().map(|(p, h, ok)| (p, (h, ok))).collect();
    Ok(entries
        .into_iter()
        .map(|h| HistoryEntry {
            hash: chain.get(&h.global_position).map(|c| c.0.clone()),
            verified: chain.get(&h.global_position).is_some_and(|c| c.1),
            version: h.stream_version,
            global_position: GlobalPosition(h.global_position),
            event_id: h.event_id,
            event_type: h.event_type,
            occurred_at: h.occurred_at,
            recorded_at: h.recorded_at,
            actor: ActorView {
                id: h.actor.id,
                name: h.actor.name,
                kind: h.actor.kind.as_str().to_string(),
                roles: h.actor.roles,
            },
            correlation_id: h.correlation_id,
            causation_id: h.causation_id,
            command_id: h.command_id,
            summary: h.summary,
            reason: h.reason,
            changes: Json(h.changes),
            related_request_id: h.related_request_id,
            payload: Json(h.payload),
        })
        .collect())
}

pub(crate) async fn read_conn<'a>(ctx: &'a Context<'_>) -> Result<common::ReadConnection<'a>> {
    common::read(ctx, read::NAME).await
}

/// Loads a request from the read model.
pub async fn load(ctx: &Context<'_>, id: Uuid) -> Result<Option<ServiceRequest>> {
    Ok(super::loaders::request(ctx, id).await?.map(ServiceRequest::new))
}

// ---------------------------------------------------------------------------------------------
// Queries

/// Which requests a backlog shows; every given field must match, lists match any of their
/// values.
#[derive(InputObject, Default)]
pub struct BacklogFilterInput {
    /// States; default: every open state (not closed, withdrawn or merged).
    pub states: Option<Vec<RequestState>>,
    /// Request types.
    pub request_types: Option<Vec<RequestType>>,
    /// Priorities.
    pub priorities: Option<Vec<Priority>>,
    /// Channels.
    pub channels: Option<Vec<Channel>>,
    /// Customer tiers.
    pub customer_tiers: Option<Vec<ValueTier>>,
    /// Category prefix, case-insensitive.
    pub category: Option<String>,
    /// Owner id.
    pub owner_id: Option<String>,
    /// Current agent id.
    pub assignee_id: Option<String>,
    /// Department.
    pub department: Option<String>,
    /// Only requests with (true) or without (false) a missed target.
    pub breached: Option<bool>,
    /// Only this customer's requests.
    pub customer_id: Option<ID>,
    /// Only this incident's requests.
    pub incident_id: Option<Uuid>,
    /// Only requests at or above this escalation level.
    pub min_escalation_level: Option<i32>,
}

impl BacklogFilterInput {
    fn to_filter(&self) -> Result<BacklogFilter> {
        fn names<G: Copy, D: From<G>>(v: &Option<Vec<G>>, short: impl Fn(D) -> &'static str) -> Vec<String> {
            v.as_ref().map(|v| v.iter().map(|g| short(D::from(*g)).to_string()).collect()).unwrap_or_default()
        }
        Ok(BacklogFilter {
            states: names::<_, vocab::RequestState>(&self.states, |d| d.as_str()),
            request_types: names::<_, vocab::RequestType>(&self.request_types, |d| d.as_str()),
            priorities: names::<_, vocab::Priority>(&self.priorities, |d| d.as_str()),
            channels: names::<_, vocab::Channel>(&self.channels, |d| d.as_str()),
            customer_tiers: names::<_, vocab::ValueTier>(&self.customer_tiers, |d| d.as_str()),
            category_prefix: self.category.clone().filter(|c| !c.trim().is_empty()),
            owner_id: self.owner_id.clone(),
            assignee_id: self.assignee_id.clone(),
            department: self.department.clone(),
            breached: self.breached,
            customer_id: match &self.customer_id {
                Some(id) => {
                    Some(common::parse_id("Customer", "filter.customerId", id).map_err(|e| errors::domain(e, ""))?)
                }
                None => None,
            },
            incident_id: self.incident_id,
            min_escalation_level: self.min_escalation_level,
        })
    }
}

/// Backlog order.
#[derive(Enum, Clone, Copy, PartialEq, Eq, Default)]
pub enum BacklogOrderBy {
    /// Longest waiting first.
    #[default]
    OldestFirst,
    /// Most recent first.
    NewestFirst,
    /// Nearest SLA deadline first.
    NextDeadline,
    /// Highest priority first, then oldest.
    Priority,
    /// Highest escalation level first, then oldest.
    Escalation,
}

/// Requests in one state.
#[derive(SimpleObject)]
pub struct StateCount {
    /// State.
    pub state: RequestState,
    /// How many.
    pub count: i64,
}

/// Requests in one age bucket.
#[derive(SimpleObject)]
pub struct AgeBucketCount {
    /// Bucket.
    pub bucket: AgeBucket,
    /// How many.
    pub count: i64,
}

/// Names the backlog's connection type (a customer's requests use the plain one).
pub struct BacklogConnectionName;

impl ConnectionNameType for BacklogConnectionName {
    fn type_name<T: async_graphql::OutputType>() -> String {
        "ComplaintBacklogConnection".into()
    }
}

/// Totals of a backlog (all pages).
#[derive(SimpleObject)]
pub struct BacklogTotals {
    /// Matching requests.
    pub total_count: i64,
    /// Matching requests with a missed target.
    pub breached_count: i64,
    /// Per state.
    pub counts_by_state: Vec<StateCount>,
    /// Per age bucket.
    pub aging_buckets: Vec<AgeBucketCount>,
}

/// A time range [from, to).
#[derive(InputObject)]
pub struct TimeRange {
    /// Start (inclusive).
    pub from: DateTime<Utc>,
    /// End (exclusive).
    pub to: DateTime<Utc>,
}

/// A dimension of SLA compliance.
#[derive(Enum, Clone, Copy, PartialEq, Eq)]
pub enum SlaGroupBy {
    /// Day of the deadline.
    Day,
    /// ISO week of the deadline.
    Week,
    /// Month of the deadline.
    Month,
    /// Department.
    Department,
    /// Agent (assignee, else owner, when the clock was decided).
    Agent,
    /// Priority.
    Priority,
    /// Channel.
    Channel,
    /// Request type.
    RequestType,
    /// Category.
    Category,
    /// Customer value tier.
    CustomerTier,
}

impl From<SlaGroupBy> for ComplianceDimension {
    fn from(g: SlaGroupBy) -> Self {
        match g {
            SlaGroupBy::Day => ComplianceDimension::Day,
            SlaGroupBy::Week => ComplianceDimension::Week,
            SlaGroupBy::Month => ComplianceDimension::Month,
            SlaGroupBy::Department => ComplianceDimension::Department,
            SlaGroupBy::Agent => ComplianceDimension::Agent,
            SlaGroupBy::Priority => ComplianceDimension::Priority,
            SlaGroupBy::Channel => ComplianceDimension::Channel,
            SlaGroupBy::RequestType => ComplianceDimension::RequestType,
            SlaGroupBy::Category => ComplianceDimension::Category,
            SlaGroupBy::CustomerTier => ComplianceDimension::CustomerTier,
        }
    }
}

/// One value of a grouping dimension.
#[derive(SimpleObject, Clone)]
pub struct GroupKey {
    /// The dimension, e.g. `day`, `department`.
    pub dimension: String,
    /// Its value, e.g. `2024-09-02`, `billing`.
    pub value: String,
}

/// SLA compliance of one metric in one group.
#[derive(SimpleObject)]
pub struct SlaComplianceRow {
    /// The metric.
    pub metric: SlaMetric,
    /// The group.
    pub group: Vec<GroupKey>,
    /// Clocks met in time.
    pub hit: i64,
    /// Clocks missed.
    pub missed: i64,
    /// hit + missed.
    pub total: i64,
    /// hit / total in percent (null when total is 0).
    pub compliance_percent: Option<f64>,
}

/// Service-request queries.
#[derive(Default)]
pub struct RequestQuery;

#[Object]
impl RequestQuery {
    /// One request; null when there is none with this id.
    async fn service_request(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "`ServiceRequest:<uuid>` or the bare UUID.")] id: ID,
        #[graphql(desc = "Wait (bounded) until the view reflects this position.")] min_position: Option<GlobalPosition>,
        #[graphql(desc = "The request as it was at this point, folded from its events in the event store.")]
        as_of: Option<super::history::AsOf>,
    ) -> Result<Option<ServiceRequest>> {
        common::actor(ctx)?;
        let id = common::parse_id("ServiceRequest", "id", &id).map_err(|e| errors::domain(e, ""))?;
        if let Some(as_of) = as_of {
            let cutoff = as_of.cutoff("asOf")?;
            let folded = kefu_projections::as_of::request(&common::state(ctx).pool, id, cutoff)
                .await
                .map_err(errors::projection)?;
            return Ok(folded.view.and_then(StoredRequest::folded).map(|r| ServiceRequest::as_of(r, cutoff)));
        }
        common::wait_for(ctx, read::NAME, min_position).await?;
        load(ctx, id).await
    }

    /// The complaint backlog: open requests (or the states asked for), filtered and sorted,
    /// with totals per state and age bucket.
    #[allow(clippy::too_many_arguments)]
    async fn complaint_backlog(
        &self,
        ctx: &Context<'_>,
        filter: Option<BacklogFilterInput>,
        #[graphql(default)] order_by: BacklogOrderBy,
        #[graphql(default = 20, desc = "Page size, 1 to 100.")] first: i32,
        #[graphql(desc = "Cursor of the last edge of the previous page.")] after: Option<String>,
        #[graphql(desc = "Wait (bounded) until the backlog reflects this position.")] min_position: Option<
            GlobalPosition,
        >,
    ) -> Result<
        Connection<OpaqueCursor<BacklogCursor>, ServiceRequest, BacklogTotals, EmptyFields, BacklogConnectionName>,
    > {
        common::actor(ctx)?;
        let first = page_size(first)?;
        let after = customers::decode_cursor::<BacklogCursor>(after.as_deref())?;
        let filter = filter.unwrap_or_default().to_filter()?;
        let order = match order_by {
            BacklogOrderBy::OldestFirst => BacklogOrder::OldestFirst,
            BacklogOrderBy::NewestFirst => BacklogOrder::NewestFirst,
            BacklogOrderBy::NextDeadline => BacklogOrder::NextDeadline,
            BacklogOrderBy::Priority => BacklogOrder::Priority,
            BacklogOrderBy::Escalation => BacklogOrder::Escalation,
        };
        common::wait_for(ctx, read::NAME, min_position).await?;
        let aggregates = aggregates_for(ctx.look_ahead().field("edges").field("node"));
        let mut tx = read_conn(ctx).await?;
        let (items, more) = read::backlog(&mut tx, &filter, order, first, after.as_ref(), aggregates)
            .await
            .map_err(errors::projection)?;
        // The totals cost a scan of every matching request: only when asked for.
        let selection = ctx.look_ahead();
        let totals_asked = ["totalCount", "breachedCount", "countsByState", "agingBuckets"]
            .iter()
            .any(|f| selection.field(f).exists());
        let counts = if totals_asked {
            read::backlog_counts(&mut tx, &filter, Utc::now()).await.map_err(errors::projection)?
        } else {
            Default::default()
        };
        drop(tx);
        let totals = BacklogTotals {
            total_count: counts.total,
            breached_count: counts.breached,
            counts_by_state: counts
                .by_state
                .into_iter()
                .filter_map(|(s, count)| {
                    Some(StateCount { state: s.parse::<vocab::RequestState>().ok()?.into(), count })
                })
                .collect(),
            aging_buckets: counts
                .by_age
                .into_iter()
                .map(|(b, count)| AgeBucketCount { bucket: age_bucket(&b), count })
                .collect(),
        };
        let mut connection = Connection::with_additional_fields(false, more, totals);
        for (view, cursor) in items {
            connection.edges.push(Edge::new(OpaqueCursor(cursor), ServiceRequest::new(view)));
        }
        Ok(connection)
    }

    /// Every step of a request, in order, with who, when, why and what changed.
    async fn complaint_history(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "`ServiceRequest:<uuid>` or the bare UUID.")] id: ID,
        #[graphql(desc = "Wait (bounded) until the trail reflects this position.")] min_position: Option<
            GlobalPosition,
        >,
        #[graphql(desc = "Only the steps known at this point (a business time, a recorded time or a position).")]
        as_of: Option<super::history::AsOf>,
    ) -> Result<Vec<HistoryEntry>> {
        common::actor(ctx)?;
        let id = common::parse_id("ServiceRequest", "id", &id).map_err(|e| errors::domain(e, ""))?;
        let cutoff = as_of.map(|a| a.cutoff("asOf")).transpose()?;
        common::wait_for(ctx, request_audit::NAME, min_position).await?;
        let mut entries = load_history(ctx, id).await?;
        if let Some(c) = cutoff {
            entries.retain(|e| c.includes(e.global_position.0, e.recorded_at, e.occurred_at));
        }
        Ok(entries)
    }

    /// SLA compliance of clocks due in the range: hit, missed and percent per metric and group.
    async fn sla_compliance(
        &self,
        ctx: &Context<'_>,
        range: TimeRange,
        #[graphql(default)] group_by: Vec<SlaGroupBy>,
        #[graphql(default_with = "\"UTC\".to_string()", desc = "IANA time zone for day/week/month boundaries.")]
        time_zone: String,
        min_position: Option<GlobalPosition>,
    ) -> Result<Vec<SlaComplianceRow>> {
        common::actor(ctx)?;
        if range.to <= range.from {
            return Err(errors::invalid("range.to", "must be after range.from"));
        }
        if time_zone.parse::<chrono_tz::Tz>().is_err() {
            return Err(errors::invalid("timeZone", format!("`{time_zone}` is not an IANA time zone")));
        }
        common::wait_for(ctx, read::NAME, min_position).await?;
        let dims: Vec<ComplianceDimension> = group_by.iter().map(|g| (*g).into()).collect();
        let mut tx = read_conn(ctx).await?;
        let rows =
            read::compliance(&mut tx, range.from, range.to, &dims, &time_zone).await.map_err(errors::projection)?;
        Ok(rows
            .into_iter()
            .filter_map(|r| {
                let total = r.hit + r.missed;
                Some(SlaComplianceRow {
                    metric: r.metric.parse::<vocab::SlaMetric>().ok()?.into(),
                    group: r.keys.into_iter().map(|(dimension, value)| GroupKey { dimension, value }).collect(),
                    hit: r.hit,
                    missed: r.missed,
                    total,
                    compliance_percent: (total > 0).then(|| r.hit as f64 * 100.0 / total as f64),
                })
            })
            .collect())
    }
}

/// Requests of a customer (for the customer 360 view).
pub async fn of_customer(
    ctx: &Context<'_>,
    customer_id: Uuid,
    include_closed: bool,
    first: i64,
    after: Option<BacklogCursor>,
    aggregates: read::Aggregates,
) -> Result<read::RequestPage> {
    let filter = BacklogFilter::of_customer(customer_id, include_closed);
    let mut tx = read_conn(ctx).await?;
    read::backlog(&mut tx, &filter, BacklogOrder::NewestFirst, first, after.as_ref(), aggregates)
        .await
        .map_err(errors::projection)
}

// ---------------------------------------------------------------------------------------------
// Mutations

/// File a service request or complaint.
#[derive(InputObject)]
pub struct OpenServiceRequestInput {
    /// The new request's id; derived from `commandId` or new when absent.
    pub request_id: Option<Uuid>,
    /// The customer.
    pub customer_id: ID,
    /// Inquiry, complaint, suggestion or demand.
    pub request_type: RequestType,
    /// Category, e.g. `Billing / Overcharge`.
    pub category: String,
    /// Priority.
    #[graphql(default_with = "Priority::Normal")]
    pub priority: Priority,
    /// Where it came in.
    pub channel: Channel,
    /// Subject.
    pub subject: String,
    /// Details.
    pub description: Option<String>,
    /// The first person who took it (首问负责); you when absent.
    pub taken_by: Option<StaffInput>,
    /// Responsible department.
    pub department: Option<String>,
    /// Whether staff must go on site (starts the on-site clock).
    #[graphql(default)]
    pub on_site_required: bool,
    /// Id in another system.
    pub external_ref: Option<String>,
    /// Tags.
    #[graphql(default)]
    pub tags: Vec<String>,
    /// Retry and concurrency controls, and `occurredAt` for requests filed in the past.
    #[graphql(flatten)]
    pub options: CommandOptions,
}

/// A step on a request that needs nothing but the request (and a note).
#[derive(InputObject)]
pub struct RequestStepInput {
    /// Which request.
    pub request_id: ID,
    /// A note.
    pub note: Option<String>,
    /// Retry and concurrency controls.
    #[graphql(flatten)]
    pub options: CommandOptions,
}

/// A step that needs a reason.
#[derive(InputObject)]
pub struct RequestReasonInput {
    /// Which request.
    pub request_id: ID,
    /// Why.
    pub reason: String,
    /// Retry and concurrency controls.
    #[graphql(flatten)]
    pub options: CommandOptions,
}

/// Give a request to an agent and/or a department.
#[derive(InputObject)]
pub struct AssignRequestInput {
    /// Which request.
    pub request_id: ID,
    /// The agent.
    pub assignee: Option<StaffInput>,
    /// The department.
    pub department: Option<String>,
    /// Why.
    pub reason: Option<String>,
    /// Retry and concurrency controls.
    #[graphql(flatten)]
    pub options: CommandOptions,
}

/// Hand ownership to someone else.
#[derive(InputObject)]
pub struct TransferRequestInput {
    /// Which request.
    pub request_id: ID,
    /// The new owner.
    pub to: StaffInput,
    /// The new department.
    pub department: Option<String>,
    /// Why (recorded; the customer sees one contact).
    pub reason: String,
    /// Retry and concurrency controls.
    #[graphql(flatten)]
    pub options: CommandOptions,
}

/// Tell the customer something: the plan, or progress.
#[derive(InputObject)]
pub struct CustomerMessageInput {
    /// Which request.
    pub request_id: ID,
    /// What was said.
    pub message: String,
    /// How.
    pub channel: Channel,
    /// Retry and concurrency controls.
    #[graphql(flatten)]
    pub options: CommandOptions,
}

/// Promise the customer a reply by a time.
#[derive(InputObject)]
pub struct CommitCallbackInput {
    /// Which request.
    pub request_id: ID,
    /// The promised time.
    pub due_at: DateTime<Utc>,
    /// Note.
    pub note: Option<String>,
    /// Retry and concurrency controls.
    #[graphql(flatten)]
    pub options: CommandOptions,
}

/// Staff arrived on site.
#[derive(InputObject)]
pub struct OnSiteArrivalInput {
    /// Which request.
    pub request_id: ID,
    /// Who arrived; you when absent.
    pub engineer: Option<StaffInput>,
    /// Note.
    pub note: Option<String>,
    /// Retry and concurrency controls.
    #[graphql(flatten)]
    pub options: CommandOptions,
}

/// A major or batch incident to group requests under.
#[derive(InputObject)]
pub struct IncidentInput {
    /// Its id; new when absent (then returned in the request's `incident`).
    pub incident_id: Option<Uuid>,
    /// What happened.
    pub title: String,
}

/// Raise a request up the escalation ladder.
#[derive(InputObject)]
pub struct EscalateRequestInput {
    /// Which request.
    pub request_id: ID,
    /// Target level; one up when absent.
    pub to_level: Option<i32>,
    /// Why.
    pub reason: String,
    /// Who takes it at that level.
    pub assignee: Option<StaffInput>,
    /// A major/batch incident it belongs to (special team, 专门小组).
    pub incident: Option<IncidentInput>,
    /// Retry and concurrency controls.
    #[graphql(flatten)]
    pub options: CommandOptions,
}

/// Bring a request down the ladder.
#[derive(InputObject)]
pub struct DeescalateRequestInput {
    /// Which request.
    pub request_id: ID,
    /// Target level; one down when absent.
    pub to_level: Option<i32>,
    /// Why.
    pub reason: String,
    /// Retry and concurrency controls.
    #[graphql(flatten)]
    pub options: CommandOptions,
}

/// A make-good.
#[derive(InputObject)]
pub struct CompensationInput {
    /// Money or service.
    pub kind: CompensationKind,
    /// Amount in minor units (fen, cents).
    pub amount_minor: Option<i64>,
    /// ISO 4217 currency, e.g. `CNY`.
    pub currency: Option<String>,
    /// What was given.
    pub description: Option<String>,
}

/// Solve a request.
#[derive(InputObject)]
pub struct ResolveRequestInput {
    /// Which request.
    pub request_id: ID,
    /// What was done.
    pub resolution: String,
    /// The final root cause: a code of the root-cause catalogue (`rootCauses`).
    pub root_cause: String,
    /// A make-good, if any.
    pub compensation: Option<CompensationInput>,
    /// Retry and concurrency controls.
    #[graphql(flatten)]
    pub options: CommandOptions,
}

/// The return visit (回访).
#[derive(InputObject)]
pub struct ReturnVisitInput {
    /// Which request.
    pub request_id: ID,
    /// Whether the customer is satisfied (satisfied closes; not satisfied reopens).
    pub satisfied: bool,
    /// How the customer was reached.
    pub channel: Channel,
    /// Why not satisfied (required then).
    pub reason: Option<String>,
    /// Note.
    pub note: Option<String>,
    /// Retry and concurrency controls.
    #[graphql(flatten)]
    pub options: CommandOptions,
}

/// Close a resolved request without (or after an unanswered) return visit.
#[derive(InputObject)]
pub struct CloseRequestInput {
    /// Which request.
    pub request_id: ID,
    /// Why.
    pub reason: CloseReason,
    /// Note.
    pub note: Option<String>,
    /// Retry and concurrency controls.
    #[graphql(flatten)]
    pub options: CommandOptions,
}

/// Merge duplicates into a survivor (one complaint raised by many counts once).
#[derive(InputObject)]
pub struct MergeRequestsInput {
    /// The request that stays.
    pub survivor_id: ID,
    /// The duplicates (each is merged in its own transaction, with the survivor).
    pub duplicate_ids: Vec<ID>,
    /// Why.
    pub reason: String,
    /// Retry controls; `commandId` applies to the first duplicate, later ones derive theirs.
    #[graphql(flatten)]
    pub options: CommandOptions,
}

/// What a request command did.
#[derive(SimpleObject)]
#[graphql(complex)]
pub struct ServiceRequestPayload {
    /// The command's outcome.
    #[graphql(flatten)]
    pub outcome: CommandOutcome,
    /// The request.
    pub request_id: Uuid,
}

#[ComplexObject]
impl ServiceRequestPayload {
    /// The request once the read model reflects this command (waits, bounded).
    async fn service_request(&self, ctx: &Context<'_>) -> Result<Option<ServiceRequest>> {
        common::wait_for(ctx, read::NAME, self.outcome.global_position).await?;
        load(ctx, self.request_id).await
    }
}

fn request_id(raw: &ID) -> Result<Uuid> {
    common::parse_id("ServiceRequest", "input.requestId", raw).map_err(|e| errors::domain(e, ""))
}

fn text(v: &mut Validator, field: &str, raw: &str) -> Option<Text> {
    v.check("input", Text::parse(field, raw))
}

fn opt_text(v: &mut Validator, field: &str, raw: &Option<String>) -> Option<Option<Text>> {
    match raw {
        None => Some(None),
        Some(s) => v.check("input", Text::parse(field, s)).map(Some),
    }
}

fn opt_label(v: &mut Validator, field: &str, raw: &Option<String>) -> Option<Option<Label>> {
    match raw {
        None => Some(None),
        Some(s) => v.check("input", Label::parse(field, s)).map(Some),
    }
}

fn lost() -> async_graphql::Error {
    errors::internal("validated input lost a value")
}

async fn run(ctx: &Context<'_>, id: Uuid, command: C, meta: CommandMeta) -> Result<ServiceRequestPayload> {
    let command_id = meta.command_id.unwrap_or_default();
    let outcome = common::state(ctx).commands.request(id, command, meta).await.map_err(|e| errors::app(e, "input"))?;
    Ok(payload(command_id, id, &outcome))
}

fn payload(command_id: Uuid, id: Uuid, outcome: &AppendOutcome) -> ServiceRequestPayload {
    ServiceRequestPayload { outcome: CommandOutcome::new(command_id, outcome), request_id: id }
}

/// A placeholder the command service replaces with the command's business time.
fn at() -> DateTime<Utc> {
    DateTime::<Utc>::UNIX_EPOCH
}

fn level(v: &mut Validator, raw: Option<i32>) -> Option<Option<u32>> {
    match raw {
        None => Some(None),
        Some(l) if l >= 0 => Some(Some(l as u32)),
        Some(_) => {
            v.fail("input.toLevel", "must not be negative");
            None
        }
    }
}

/// Service-request commands.
#[derive(Default)]
pub struct RequestMutation;

#[Object]
impl RequestMutation {
    /// File a service request or complaint (立即记录). The SLA policy that matches its type,
    /// priority, category and the customer's tier sets its deadlines.
    async fn open_service_request(
        &self,
        ctx: &Context<'_>,
        input: OpenServiceRequestInput,
    ) -> Result<ServiceRequestPayload> {
        let meta = common::meta(ctx, &input.options)?;
        let customer_id =
            common::parse_id("Customer", "input.customerId", &input.customer_id).map_err(|e| errors::domain(e, ""))?;
        let id = input.request_id.unwrap_or_else(|| meta.new_entity_id("service_request"));
        let mut v = Validator::default();
        let category = v.check("input", Category::parse("category", &input.category));
        let subject = v.check("input", Subject::parse("subject", &input.subject));
        let description = opt_text(&mut v, "description", &input.description);
        let taken_by = match &input.taken_by {
            Some(s) => s.parse("input.takenBy", &mut v).map(Some),
            None => Some(None),
        };
        let department = opt_label(&mut v, "department", &input.department);
        let external_ref = opt_label(&mut v, "externalRef", &input.external_ref);
        let mut tags = Vec::new();
        for (i, t) in input.tags.iter().enumerate() {
            if let Some(t) = v.check("input", Label::parse(&format!("tags[{i}]"), t)) {
                tags.push(t);
            }
        }
        v.finish()?;
        let draft = RequestDraft {
            request_id: id,
            customer_id,
            request_type: input.request_type.into(),
            category: category.ok_or_else(lost)?,
            priority: input.priority.into(),
            channel: input.channel.into(),
            subject: subject.ok_or_else(lost)?,
            description: description.ok_or_else(lost)?,
            taken_by: taken_by.ok_or_else(lost)?,
            department: department.ok_or_else(lost)?,
            on_site_required: input.on_site_required,
            external_ref: external_ref.ok_or_else(lost)?,
            tags,
            origin: None,
        };
        let command_id = meta.command_id.unwrap_or_default();
        let outcome =
            common::state(ctx).commands.open_request(draft, meta).await.map_err(|e| errors::app(e, "input"))?;
        Ok(payload(command_id, id, &outcome))
    }

    /// First response to the customer.
    async fn acknowledge_request(&self, ctx: &Context<'_>, input: RequestStepInput) -> Result<ServiceRequestPayload> {
        let id = request_id(&input.request_id)?;
        let mut v = Validator::default();
        let note = opt_text(&mut v, "note", &input.note);
        v.finish()?;
        let meta = common::meta(ctx, &input.options)?;
        run(ctx, id, C::Acknowledge { at: at(), note: note.ok_or_else(lost)? }, meta).await
    }

    /// Give the request to an agent and/or a department to work on (ownership stays).
    async fn assign_request(&self, ctx: &Context<'_>, input: AssignRequestInput) -> Result<ServiceRequestPayload> {
        let id = request_id(&input.request_id)?;
        let mut v = Validator::default();
        let assignee = match &input.assignee {
            Some(s) => s.parse("input.assignee", &mut v).map(Some),
            None => Some(None),
        };
        let department = opt_label(&mut v, "department", &input.department);
        let reason = opt_text(&mut v, "reason", &input.reason);
        v.finish()?;
        let meta = common::meta(ctx, &input.options)?;
        let command = C::Assign {
            at: at(),
            assignee: assignee.ok_or_else(lost)?,
            department: department.ok_or_else(lost)?,
            reason: reason.ok_or_else(lost)?,
        };
        run(ctx, id, command, meta).await
    }

    /// Hand ownership to someone else, with the reason.
    async fn transfer_request(&self, ctx: &Context<'_>, input: TransferRequestInput) -> Result<ServiceRequestPayload> {
        let id = request_id(&input.request_id)?;
        let mut v = Validator::default();
        let to = input.to.parse("input.to", &mut v);
        let department = opt_label(&mut v, "department", &input.department);
        let reason = text(&mut v, "reason", &input.reason);
        v.finish()?;
        let meta = common::meta(ctx, &input.options)?;
        let command = C::Transfer {
            at: at(),
            to: to.ok_or_else(lost)?,
            department: department.ok_or_else(lost)?,
            reason: reason.ok_or_else(lost)?,
        };
        run(ctx, id, command, meta).await
    }

    /// Tell the customer how the request will be handled (告知处理方案).
    async fn communicate_plan(&self, ctx: &Context<'_>, input: CustomerMessageInput) -> Result<ServiceRequestPayload> {
        let id = request_id(&input.request_id)?;
        let mut v = Validator::default();
        let plan = text(&mut v, "message", &input.message);
        v.finish()?;
        let meta = common::meta(ctx, &input.options)?;
        run(ctx, id, C::CommunicatePlan { at: at(), plan: plan.ok_or_else(lost)?, channel: input.channel.into() }, meta)
            .await
    }

    /// Tell the customer about progress (跟踪处理进度); meets a pending callback.
    async fn record_customer_update(
        &self,
        ctx: &Context<'_>,
        input: CustomerMessageInput,
    ) -> Result<ServiceRequestPayload> {
        let id = request_id(&input.request_id)?;
        let mut v = Validator::default();
        let summary = text(&mut v, "message", &input.message);
        v.finish()?;
        let meta = common::meta(ctx, &input.options)?;
        run(
            ctx,
            id,
            C::UpdateCustomer { at: at(), channel: input.channel.into(), summary: summary.ok_or_else(lost)? },
            meta,
        )
        .await
    }

    /// Promise the customer a reply by a time; it becomes a tracked deadline.
    async fn commit_callback(&self, ctx: &Context<'_>, input: CommitCallbackInput) -> Result<ServiceRequestPayload> {
        let id = request_id(&input.request_id)?;
        let mut v = Validator::default();
        let note = opt_text(&mut v, "note", &input.note);
        v.finish()?;
        let meta = common::meta(ctx, &input.options)?;
        run(ctx, id, C::CommitCallback { at: at(), due_at: input.due_at, note: note.ok_or_else(lost)? }, meta).await
    }

    /// Wait for the customer: SLA clocks pause.
    async fn await_customer(&self, ctx: &Context<'_>, input: RequestReasonInput) -> Result<ServiceRequestPayload> {
        let id = request_id(&input.request_id)?;
        let mut v = Validator::default();
        let reason = text(&mut v, "reason", &input.reason);
        v.finish()?;
        let meta = common::meta(ctx, &input.options)?;
        run(ctx, id, C::AwaitCustomer { at: at(), reason: reason.ok_or_else(lost)? }, meta).await
    }

    /// The customer is back: SLA clocks resume (their deadlines move by the pause).
    async fn resume_request(&self, ctx: &Context<'_>, input: RequestStepInput) -> Result<ServiceRequestPayload> {
        let id = request_id(&input.request_id)?;
        let mut v = Validator::default();
        let note = opt_text(&mut v, "note", &input.note);
        v.finish()?;
        let meta = common::meta(ctx, &input.options)?;
        run(ctx, id, C::Resume { at: at(), note: note.ok_or_else(lost)?, calendar: None }, meta).await
    }

    /// Staff arrived on site (meets the on-site clock).
    async fn record_on_site_arrival(
        &self,
        ctx: &Context<'_>,
        input: OnSiteArrivalInput,
    ) -> Result<ServiceRequestPayload> {
        let id = request_id(&input.request_id)?;
        let meta = common::meta(ctx, &input.options)?;
        let mut v = Validator::default();
        let engineer = match &input.engineer {
            Some(s) => s.parse("input.engineer", &mut v),
            None => kefu_app::service_requests::staff_of(&meta).ok(),
        };
        let note = opt_text(&mut v, "note", &input.note);
        v.finish()?;
        run(
            ctx,
            id,
            C::RecordOnSiteArrival { at: at(), engineer: engineer.ok_or_else(lost)?, note: note.ok_or_else(lost)? },
            meta,
        )
        .await
    }

    /// Raise the request up the escalation ladder (升级); with an incident, group it under a
    /// special team.
    async fn escalate_request(&self, ctx: &Context<'_>, input: EscalateRequestInput) -> Result<ServiceRequestPayload> {
        let id = request_id(&input.request_id)?;
        let meta = common::meta(ctx, &input.options)?;
        let mut v = Validator::default();
        let to_level = level(&mut v, input.to_level);
        let reason = text(&mut v, "reason", &input.reason);
        let assignee = match &input.assignee {
            Some(s) => s.parse("input.assignee", &mut v).map(Some),
            None => Some(None),
        };
        let incident = match &input.incident {
            None => Some(None),
            Some(i) => v.check("input.incident", Subject::parse("title", &i.title)).map(|title| {
                Some(IncidentRef {
                    incident_id: i.incident_id.unwrap_or_else(|| meta.new_entity_id("incident")),
                    title,
                })
            }),
        };
        v.finish()?;
        let command = C::Escalate {
            at: at(),
            to_level: to_level.ok_or_else(lost)?,
            reason: reason.ok_or_else(lost)?,
            assignee: assignee.ok_or_else(lost)?,
            incident: incident.ok_or_else(lost)?,
            levels: vec![],
        };
        run(ctx, id, command, meta).await
    }

    /// Bring the request down the ladder.
    async fn deescalate_request(
        &self,
        ctx: &Context<'_>,
        input: DeescalateRequestInput,
    ) -> Result<ServiceRequestPayload> {
        let id = request_id(&input.request_id)?;
        let mut v = Validator::default();
        let to_level = level(&mut v, input.to_level);
        let reason = text(&mut v, "reason", &input.reason);
        v.finish()?;
        let meta = common::meta(ctx, &input.options)?;
        let command = C::Deescalate {
            at: at(),
            to_level: to_level.ok_or_else(lost)?,
            reason: reason.ok_or_else(lost)?,
            levels: vec![],
        };
        run(ctx, id, command, meta).await
    }

    /// Solve the request: what was done, the final root cause, any make-good.
    async fn resolve_request(&self, ctx: &Context<'_>, input: ResolveRequestInput) -> Result<ServiceRequestPayload> {
        let id = request_id(&input.request_id)?;
        let mut v = Validator::default();
        let resolution = text(&mut v, "resolution", &input.resolution);
        let root_cause = v.check("input", Label::parse("rootCause", &input.root_cause));
        let compensation = match &input.compensation {
            None => Some(None),
            Some(c) => {
                let currency = match &c.currency {
                    None => Some(None),
                    Some(x) => v.check("input.compensation", Label::parse("currency", &x.to_uppercase())).map(Some),
                };
                let description = match &c.description {
                    None => Some(None),
                    Some(x) => v.check("input.compensation", Text::parse("description", x)).map(Some),
                };
                currency.zip(description).map(|(currency, description)| {
                    Some(DomainCompensation {
                        kind: c.kind.into(),
                        amount_minor: c.amount_minor,
                        currency,
                        description,
                    })
                })
            }
        };
        v.finish()?;
        let meta = common::meta(ctx, &input.options)?;
        let command = C::Resolve {
            at: at(),
            resolution: resolution.ok_or_else(lost)?,
            root_cause: root_cause.ok_or_else(lost)?,
            compensation: compensation.ok_or_else(lost)?,
        };
        run(ctx, id, command, meta).await
    }

    /// Record the return visit (回访): satisfied closes the request, not satisfied reopens it.
    async fn record_return_visit(&self, ctx: &Context<'_>, input: ReturnVisitInput) -> Result<ServiceRequestPayload> {
        let id = request_id(&input.request_id)?;
        let mut v = Validator::default();
        let reason = opt_text(&mut v, "reason", &input.reason);
        let note = opt_text(&mut v, "note", &input.note);
        v.finish()?;
        let meta = common::meta(ctx, &input.options)?;
        let command = C::RecordReturnVisit {
            at: at(),
            satisfied: input.satisfied,
            channel: input.channel.into(),
            note: note.ok_or_else(lost)?,
            reason: reason.ok_or_else(lost)?,
            calendar: None,
        };
        run(ctx, id, command, meta).await
    }

    /// Close a resolved request without (or after an unanswered) return visit.
    async fn close_request(&self, ctx: &Context<'_>, input: CloseRequestInput) -> Result<ServiceRequestPayload> {
        let id = request_id(&input.request_id)?;
        let mut v = Validator::default();
        let note = opt_text(&mut v, "note", &input.note);
        v.finish()?;
        let meta = common::meta(ctx, &input.options)?;
        run(ctx, id, C::Close { at: at(), reason: input.reason.into(), note: note.ok_or_else(lost)? }, meta).await
    }

    /// Open a resolved or closed request again.
    async fn reopen_request(&self, ctx: &Context<'_>, input: RequestReasonInput) -> Result<ServiceRequestPayload> {
        let id = request_id(&input.request_id)?;
        let mut v = Validator::default();
        let reason = text(&mut v, "reason", &input.reason);
        v.finish()?;
        let meta = common::meta(ctx, &input.options)?;
        run(ctx, id, C::Reopen { at: at(), reason: reason.ok_or_else(lost)?, calendar: None }, meta).await
    }

    /// The customer withdrew the request. Final.
    async fn withdraw_request(&self, ctx: &Context<'_>, input: RequestReasonInput) -> Result<ServiceRequestPayload> {
        let id = request_id(&input.request_id)?;
        let mut v = Validator::default();
        let reason = text(&mut v, "reason", &input.reason);
        v.finish()?;
        let meta = common::meta(ctx, &input.options)?;
        run(ctx, id, C::Withdraw { at: at(), reason: reason.ok_or_else(lost)? }, meta).await
    }

    /// Merge duplicates into a survivor: the survivor keeps every reporter, each duplicate
    /// points to it and ends. Each duplicate is merged atomically with the survivor.
    async fn merge_requests(&self, ctx: &Context<'_>, input: MergeRequestsInput) -> Result<Vec<ServiceRequestPayload>> {
        let survivor = common::parse_id("ServiceRequest", "input.survivorId", &input.survivor_id)
            .map_err(|e| errors::domain(e, ""))?;
        if input.duplicate_ids.is_empty() {
            return Err(errors::invalid("input.duplicateIds", "name at least one duplicate"));
        }
        let mut duplicates = Vec::with_capacity(input.duplicate_ids.len());
        for (i, raw) in input.duplicate_ids.iter().enumerate() {
            duplicates.push(
                common::parse_id("ServiceRequest", &format!("input.duplicateIds[{i}]"), raw)
                    .map_err(|e| errors::domain(e, ""))?,
            );
        }
        let mut v = Validator::default();
        let reason = text(&mut v, "reason", &input.reason);
        v.finish()?;
        let reason = reason.ok_or_else(lost)?;
        let base = common::meta(ctx, &input.options)?;
        let mut results = Vec::new();
        for (i, duplicate) in duplicates.into_iter().enumerate() {
            let mut meta = base.clone();
            if i > 0 {
                meta.command_id = base.command_id.map(|c| Uuid::new_v5(&c, duplicate.as_bytes()));
                meta.expected_version = None;
            }
            let command_id = meta.command_id.unwrap_or_default();
            let outcome = common::state(ctx)
                .commands
                .merge_requests(survivor, duplicate, reason.clone(), meta)
                .await
                .map_err(|e| errors::app(e, "input"))?;
            results.push(payload(command_id, survivor, &outcome));
        }
        Ok(results)
    }
}
