//! Service requests as people look at them: the complaint backlog, one request's page, a
//! customer's requests, SLA clocks and compliance.
//!
//! The projection keeps each request's folded aggregate state (JSON) and applies every event
//! with the domain's own `apply`, so states, owners and SLA clocks here are exactly what the
//! write side decides with; the columns beside it are for filtering and sorting.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use chrono::{DateTime, Utc};
use futures::future::BoxFuture;
use kefu_app::RecordedEvent;
use kefu_domain::{
    Aggregate,
    service_request::{ServiceRequest, ServiceRequestEvent},
    vocab::{RequestState, SlaMetric},
};
use serde_json::json;
use sqlx::{PgConnection, Row};
use uuid::Uuid;

use crate::{
    Projection, ProjectionError,
    bulk::{BulkFold, Streamed},
    copy::{AsJson, CopyRows},
};

mod stored;
pub use stored::{LazyAggregate, Listed, StoredRequest};

/// The projection.
#[derive(Debug, Clone, Copy, Default)]
pub struct ServiceRequests;

/// Its name.
pub const NAME: &str = "service_requests";

const SCHEMA: &str = r#"
CREATE TABLE requests (
    request_id              uuid        PRIMARY KEY,
    customer_id             uuid        NOT NULL,
    request_type            text        NOT NULL,
    category                text        NOT NULL,
    priority                text        NOT NULL,
    priority_rank           integer     NOT NULL,
    channel                 text        NOT NULL,
    subject                 text        NOT NULL,
    state                   text        NOT NULL,
    live                    boolean     NOT NULL,
    owner_id                text,
    owner_name              text,
    assignee_id             text,
    assignee_name           text,
    department              text,
    escalation_level        integer     NOT NULL DEFAULT 0,
    escalation_name         text,
    incident_id             uuid,
    customer_tier           text,
    external_ref            text,
    filed_at                timestamptz NOT NULL,
    first_response_at       timestamptz,
    first_resolved_at       timestamptz,
    last_resolved_at        timestamptz,
    ended_at                timestamptz,
    root_cause              text,
    reopen_count            integer     NOT NULL DEFAULT 0,
    reporter_count          integer     NOT NULL DEFAULT 1,
    merged_into             uuid,
    return_visits           integer     NOT NULL DEFAULT 0,
    last_return_visit_satisfied boolean,
    paused                  boolean     NOT NULL DEFAULT false,
    callback_due_at         timestamptz,
    next_due_at             timestamptz,
    next_due_metric         text,
    next_warn_at            timestamptz,
    breached                boolean     NOT NULL DEFAULT false,
    policy_name             text        NOT NULL,
    -- The aggregate without its filing, rewritten with every change; the filing (most of its
    -- bytes, and fixed once filed) is written once, when the request first appears, and an
    -- update leaves it where it is. NULL only in a batch's staging rows for known requests.
    state_json              json        COMPRESSION lz4 NOT NULL,
    filing                  json        COMPRESSION lz4,
    resolution              jsonb,
    version                 bigint      NOT NULL,
    last_position           bigint      NOT NULL,
    updated_at              timestamptz NOT NULL
);
CREATE INDEX requests_backlog ON requests (live, filed_at, request_id);
CREATE INDEX requests_by_customer ON requests (customer_id, filed_at DESC, request_id DESC);
CREATE INDEX requests_due ON requests (next_due_at, request_id) WHERE live;
CREATE INDEX requests_by_deadline ON requests (COALESCE(next_due_at, '9999-12-31T00:00:00Z'::timestamptz), request_id)
    WHERE live;
CREATE INDEX requests_by_external_ref ON requests (external_ref);

CREATE TABLE request_clocks (
    request_id   uuid        NOT NULL,
    metric       text        NOT NULL,
    cycle        integer     NOT NULL,
    started_at   timestamptz NOT NULL,
    due_at       timestamptz,
    warn_at      timestamptz,
    met_at       timestamptz,
    warned       boolean     NOT NULL,
    breached     boolean     NOT NULL,
    cancelled    boolean     NOT NULL,
    outcome      text        NOT NULL,
    decided_at   timestamptz,
    agent_id     text,
    department   text,
    PRIMARY KEY (request_id, metric, cycle)
);
CREATE INDEX request_clocks_firing ON request_clocks (due_at) WHERE outcome = 'RUNNING';
CREATE INDEX request_clocks_decided ON request_clocks (metric, due_at);
"#;

const TABLES: &[&str] = &["requests", "request_clocks"];

impl Projection for ServiceRequests {
    fn name(&self) -> &'static str {
        NAME
    }

    fn schema(&self) -> &'static str {
        SCHEMA
    }

    fn tables(&self) -> &'static [&'static str] {
        TABLES
    }

    fn reads(&self, stream_type: &str, _: &str) -> bool {
        stream_type == ServiceRequest::STREAM_TYPE
    }

    fn apply<'a>(
        &'a self,
        conn: &'a mut PgConnection,
        event: &'a RecordedEvent,
    ) -> BoxFuture<'a, Result<(), ProjectionError>> {
        Box::pin(async move { apply_many(conn, &[event]).await })
    }

    fn apply_all<'a>(
        &'a self,
        conn: &'a mut PgConnection,
        events: &'a [&'a RecordedEvent],
    ) -> BoxFuture<'a, Result<(), ProjectionError>> {
        Box::pin(apply_many(conn, events))
    }

    fn bulk(&self) -> Option<Box<dyn BulkFold>> {
        Some(Box::<BulkRequests>::default())
    }
}

/// The `priority_rank` column: higher is more urgent (the backlog's priority order).
fn priority_rank(p: kefu_domain::vocab::Priority) -> i32 {
    use kefu_domain::vocab::Priority;
    match p {
        Priority::Urgent => 4,
        Priority::High => 3,
        Priority::Normal => 2,
        Priority::Low => 1,
    }
}

/// How a clock stands as reports count it: the `outcome` column of `request_clocks`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClockOutcome {
    /// Neither met, breached nor cancelled yet.
    Running,
    /// Met in time.
    Hit,
    /// Met late, or its deadline passed.
    Missed,
    /// Stopped without being decided (the request ended, the target no longer applies).
    Cancelled,
}

impl ClockOutcome {
    /// The column's value.
    pub fn as_str(self) -> &'static str {
        match self {
            ClockOutcome::Running => "RUNNING",
            ClockOutcome::Hit => "HIT",
            ClockOutcome::Missed => "MISSED",
            ClockOutcome::Cancelled => "CANCELLED",
        }
    }
}

impl std::str::FromStr for ClockOutcome {
    type Err = ();

    /// Reads the column's value.
    fn from_str(s: &str) -> Result<ClockOutcome, ()> {
        [ClockOutcome::Running, ClockOutcome::Hit, ClockOutcome::Missed, ClockOutcome::Cancelled]
            .into_iter()
            .find(|o| o.as_str() == s)
            .ok_or(())
    }
}

impl serde::Serialize for ClockOutcome {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

/// The outcome of a clock as reports count it.
pub fn outcome(c: &kefu_domain::service_request::MetricClock) -> ClockOutcome {
    match c.met_at {
        // Met: in time unless a breach was recorded or the deadline had passed.
        Some(met) if !c.breached && c.due_at.is_none_or(|due| met <= due) => ClockOutcome::Hit,
        Some(_) => ClockOutcome::Missed,
        None if c.breached => ClockOutcome::Missed,
        None if c.cancelled => ClockOutcome::Cancelled,
        None => ClockOutcome::Running,
    }
}

/// What one event changes beside the folded state (shared by the projection and [`fold_view`]).
struct Delta {
    first_response: Option<DateTime<Utc>>,
    ended_at: Option<DateTime<Utc>>,
    reopened: bool,
    visit: Option<bool>,
    root_cause: Option<String>,
    resolution: Option<serde_json::Value>,
    level_name: Option<String>,
}

impl Delta {
    fn of(event: &ServiceRequestEvent) -> Delta {
        let (resolution, root_cause) = match event {
            ServiceRequestEvent::RequestResolved(r) => (Some(json!(r)), Some(r.root_cause.as_str().to_string())),
            _ => (None, None),
        };
        Delta {
            first_response: match event {
                ServiceRequestEvent::RequestAcknowledged(x) => Some(x.at),
                ServiceRequestEvent::PlanCommunicated(x) => Some(x.at),
                ServiceRequestEvent::CustomerUpdated(x) => Some(x.at),
                ServiceRequestEvent::RequestResolved(x) => Some(x.at),
                _ => None,
            },
            ended_at: match event {
                ServiceRequestEvent::RequestClosed(x) => Some(x.at),
                ServiceRequestEvent::RequestWithdrawn(x) => Some(x.at),
                ServiceRequestEvent::RequestMergedInto(x) => Some(x.at),
                _ => None,
            },
            reopened: matches!(event, ServiceRequestEvent::RequestReopened(_)),
            visit: match event {
                ServiceRequestEvent::ReturnVisitRecorded(v) => Some(v.satisfied),
                _ => None,
            },
            root_cause,
            resolution,
            level_name: match event {
                ServiceRequestEvent::RequestEscalated(x) => Some(x.level_name.as_str().to_string()),
                ServiceRequestEvent::RequestDeescalated(x) => Some(x.level_name.as_str().to_string()),
                _ => None,
            },
        }
    }
}

/// What the folded state says about deadlines.
struct Derived {
    next: Option<kefu_domain::service_request::MetricClock>,
    callback_due: Option<DateTime<Utc>>,
    breached: bool,
}

impl Derived {
    fn of(state: &ServiceRequest) -> Derived {
        // The running clock due first is the request's next deadline.
        let next = state.clocks.iter().filter(|c| c.running() && c.due_at.is_some()).min_by_key(|c| c.due_at).cloned();
        let callback_due = state
            .clocks
            .iter()
            .filter(|c| c.running() && c.metric == kefu_domain::vocab::SlaMetric::Callback)
            .filter_map(|c| c.due_at)
            .min();
        let breached = state.clocks.iter().any(|c| c.breached && !c.cancelled && c.met_at.is_none())
            || state.clocks.iter().any(|c| outcome(c) == ClockOutcome::Missed);
        Derived { next, callback_due, breached }
    }
}

/// A request's view from its events (those of other streams are ignored), as the projection
/// would show it after the last one: what `serviceRequest(asOf:)` returns. `None` before it
/// was filed.
pub fn fold_view(events: &[RecordedEvent]) -> Result<Option<RequestView>, ProjectionError> {
    fold_onto(None, events)
}

/// [`fold_view`] continued from the view after earlier events (a snapshot):
/// `fold_onto(fold_view(a), b) == fold_view(a ++ b)`.
pub fn fold_onto(start: Option<RequestView>, events: &[RecordedEvent]) -> Result<Option<RequestView>, ProjectionError> {
    let mut view = start;
    for e in events.iter().filter(|e| e.stream_type == ServiceRequest::STREAM_TYPE) {
        let event: ServiceRequestEvent = e.decode()?;
        step(&mut view, e, &event);
    }
    Ok(view)
}

/// One event onto a request's view: the one rule set of this read model, used by the live
/// projection and by [`fold_view`].
fn step(view: &mut Option<RequestView>, e: &RecordedEvent, event: &ServiceRequestEvent) {
    let v =
        view.get_or_insert_with(|| RequestView { state: ServiceRequest::default(), facts: RequestFacts::default() });
    v.state.apply(event);
    let d = Delta::of(event);
    let derived = Derived::of(&v.state);
    let live = v.state.is_live();
    let f = &mut v.facts;
    f.request_state = v.state.state();
    f.first_response_at = f.first_response_at.or(d.first_response);
    f.ended_at = match d.ended_at {
        Some(t) => Some(t),
        None if live => None,
        None => f.ended_at,
    };
    f.reopen_count += i32::from(d.reopened);
    f.return_visits += i32::from(d.visit.is_some());
    f.last_return_visit_satisfied = d.visit.or(f.last_return_visit_satisfied);
    f.root_cause = d.root_cause.or(f.root_cause.take());
    f.resolution = d.resolution.or(f.resolution.take());
    f.escalation_name = d.level_name.or(f.escalation_name.take());
    f.next_due = derived.next.as_ref().and_then(|c| c.due_at.map(|t| (c.metric.as_str().to_string(), t)));
    f.next_warn_at = derived.next.as_ref().and_then(|c| if c.warned { None } else { c.warn_at });
    f.breached = derived.breached;
    f.last_position = e.global_position;
    f.version = e.stream_version;
}

/// A `request_clocks` row, named as its columns.
#[derive(Debug, Clone, serde::Serialize)]
struct ClockRow {
    request_id: Uuid,
    #[serde(serialize_with = "short_name")]
    metric: SlaMetric,
    cycle: i32,
    #[serde(serialize_with = "crate::copy::time")]
    started_at: DateTime<Utc>,
    #[serde(serialize_with = "crate::copy::opt_time")]
    due_at: Option<DateTime<Utc>>,
    #[serde(serialize_with = "crate::copy::opt_time")]
    warn_at: Option<DateTime<Utc>>,
    #[serde(serialize_with = "crate::copy::opt_time")]
    met_at: Option<DateTime<Utc>>,
    warned: bool,
    breached: bool,
    cancelled: bool,
    outcome: ClockOutcome,
    #[serde(serialize_with = "crate::copy::opt_time")]
    decided_at: Option<DateTime<Utc>>,
    agent_id: Option<String>,
    department: Option<String>,
    /// Changed by the batch being applied (not a column: only these are written back).
    #[serde(skip)]
    changed: bool,
}

/// A vocabulary value as its column stores it (`FIRST_RESPONSE`, not the protobuf name).
fn short_name<S: serde::Serializer>(metric: &SlaMetric, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(metric.as_str())
}

/// The columns of [`ClockRow`], in the order its `FromRow` reads them.
const CLOCK_COLUMNS: &str = "request_id, metric, cycle, started_at, due_at, warn_at, met_at, warned, breached, \
                             cancelled, outcome, decided_at, agent_id, department";

impl<'r> sqlx::FromRow<'r, sqlx::postgres::PgRow> for ClockRow {
    /// A row selected with [`CLOCK_COLUMNS`], decoded by position (no JSON on either side, no
    /// lookup of columns by name).
    fn from_row(r: &'r sqlx::postgres::PgRow) -> Result<Self, sqlx::Error> {
        Ok(ClockRow {
            request_id: r.try_get(0)?,
            metric: vocab_column(r, 1)?,
            cycle: r.try_get(2)?,
            started_at: r.try_get(3)?,
            due_at: r.try_get(4)?,
            warn_at: r.try_get(5)?,
            met_at: r.try_get(6)?,
            warned: r.try_get(7)?,
            breached: r.try_get(8)?,
            cancelled: r.try_get(9)?,
            outcome: vocab_column(r, 10)?,
            decided_at: r.try_get(11)?,
            agent_id: r.try_get(12)?,
            department: r.try_get(13)?,
            changed: false,
        })
    }
}

/// After an event, its request's clocks onto their rows. A decided clock keeps the agent and
/// department it was decided with, and its first decision time.
fn step_clocks(rows: &mut Vec<ClockRow>, id: Uuid, state: &ServiceRequest, at: DateTime<Utc>) {
    let agent = state.assignee.as_ref().or(state.owner.as_ref()).map(|s| s.id.as_str().to_string());
    let department = state.department.as_ref().map(|d| d.as_str().to_string());
    for c in &state.clocks {
        let o = outcome(c);
        let decided_at = match o {
            ClockOutcome::Hit | ClockOutcome::Missed => c.met_at.or(c.due_at),
            ClockOutcome::Cancelled => Some(at),
            ClockOutcome::Running => None,
        };
        let cycle = c.cycle as i32;
        match rows.iter_mut().find(|r| r.metric == c.metric && r.cycle == cycle) {
            Some(r) => {
                r.due_at = c.due_at;
                r.warn_at = c.warn_at;
                r.met_at = c.met_at;
                r.warned = c.warned;
                r.breached = c.breached;
                r.cancelled = c.cancelled;
                if r.outcome == ClockOutcome::Running {
                    r.agent_id = agent.clone();
                    r.department = department.clone();
                }
                r.decided_at = r.decided_at.or(decided_at);
                r.outcome = o;
                r.changed = true;
            }
            None => rows.push(ClockRow {
                request_id: id,
                metric: c.metric,
                cycle,
                started_at: c.started_at,
                due_at: c.due_at,
                warn_at: c.warn_at,
                met_at: c.met_at,
                warned: c.warned,
                breached: c.breached,
                cancelled: c.cancelled,
                outcome: o,
                decided_at,
                agent_id: agent.clone(),
                department: department.clone(),
                changed: true,
            }),
        }
    }
}

/// A `requests` row, named as its columns (for `COPY`).
#[derive(serde::Serialize)]
struct RequestRow<'a> {
    request_id: Uuid,
    customer_id: Uuid,
    request_type: &'static str,
    category: &'a str,
    priority: &'static str,
    priority_rank: i32,
    channel: &'static str,
    subject: &'a str,
    state: &'static str,
    live: bool,
    owner_id: Option<&'a str>,
    owner_name: Option<&'a str>,
    assignee_id: Option<&'a str>,
    assignee_name: Option<&'a str>,
    department: Option<&'a str>,
    escalation_level: i32,
    escalation_name: &'a Option<String>,
    incident_id: Option<Uuid>,
    customer_tier: Option<&'static str>,
    external_ref: Option<&'a str>,
    #[serde(serialize_with = "crate::copy::time")]
    filed_at: DateTime<Utc>,
    #[serde(serialize_with = "crate::copy::opt_time")]
    first_response_at: Option<DateTime<Utc>>,
    #[serde(serialize_with = "crate::copy::opt_time")]
    first_resolved_at: Option<DateTime<Utc>>,
    #[serde(serialize_with = "crate::copy::opt_time")]
    last_resolved_at: Option<DateTime<Utc>>,
    #[serde(serialize_with = "crate::copy::opt_time")]
    ended_at: Option<DateTime<Utc>>,
    root_cause: &'a Option<String>,
    reopen_count: i32,
    reporter_count: i32,
    merged_into: Option<Uuid>,
    return_visits: i32,
    last_return_visit_satisfied: Option<bool>,
    paused: bool,
    #[serde(serialize_with = "crate::copy::opt_time")]
    callback_due_at: Option<DateTime<Utc>>,
    #[serde(serialize_with = "crate::copy::opt_time")]
    next_due_at: Option<DateTime<Utc>>,
    next_due_metric: Option<&'a str>,
    #[serde(serialize_with = "crate::copy::opt_time")]
    next_warn_at: Option<DateTime<Utc>>,
    breached: bool,
    policy_name: &'a str,
    state_json: AsJson<&'a ServiceRequest>,
    filing: Option<AsJson<&'a kefu_domain::service_request::RequestFiled>>,
    resolution: AsJson<&'a Option<serde_json::Value>>,
    version: i64,
    last_position: i64,
    #[serde(serialize_with = "crate::copy::time")]
    updated_at: DateTime<Utc>,
}

impl<'a> RequestRow<'a> {
    fn of(
        id: Uuid,
        v: &'a RequestView,
        filed: &'a kefu_domain::service_request::RequestFiled,
        updated_at: DateTime<Utc>,
    ) -> Self {
        let (s, f) = (&v.state, &v.facts);
        RequestRow {
            request_id: id,
            customer_id: filed.customer_id,
            request_type: filed.request_type.as_str(),
            category: filed.category.as_str(),
            priority: filed.priority.as_str(),
            priority_rank: priority_rank(filed.priority),
            channel: filed.channel.as_str(),
            subject: filed.subject.as_str(),
            state: f.request_state.as_str(),
            live: s.is_live(),
            owner_id: s.owner.as_ref().map(|o| o.id.as_str()),
            owner_name: s.owner.as_ref().and_then(|o| o.name.as_ref()).map(|n| n.as_str()),
            assignee_id: s.assignee.as_ref().map(|o| o.id.as_str()),
            assignee_name: s.assignee.as_ref().and_then(|o| o.name.as_ref()).map(|n| n.as_str()),
            department: s.department.as_ref().map(|d| d.as_str()),
            escalation_level: s.escalation_level as i32,
            escalation_name: &f.escalation_name,
            incident_id: s.incident.as_ref().map(|i| i.incident_id),
            customer_tier: filed.customer_tier.map(|t| t.as_str()),
            external_ref: filed.external_ref.as_ref().map(|r| r.as_str()),
            filed_at: filed.filed_at,
            first_response_at: f.first_response_at,
            first_resolved_at: s.first_resolved_at,
            last_resolved_at: s.last_resolved_at,
            ended_at: f.ended_at,
            root_cause: &f.root_cause,
            reopen_count: f.reopen_count,
            reporter_count: s.reporters.len() as i32,
            merged_into: s.merged_into,
            return_visits: f.return_visits,
            last_return_visit_satisfied: f.last_return_visit_satisfied,
            paused: s.paused_since.is_some(),
            callback_due_at: Derived::of(s).callback_due,
            next_due_at: f.next_due.as_ref().map(|(_, t)| *t),
            next_due_metric: f.next_due.as_ref().map(|(m, _)| m.as_str()),
            next_warn_at: f.next_warn_at,
            breached: f.breached,
            policy_name: filed.sla.policy_name.as_str(),
            state_json: AsJson(s),
            filing: Some(AsJson(filed)),
            resolution: AsJson(&f.resolution),
            version: f.version,
            last_position: f.last_position,
            updated_at,
        }
    }
}

/// A service-request event with its decoded payload.
pub(crate) type Decoded<'e> = (&'e RecordedEvent, ServiceRequestEvent);

/// The service-request events of a run, decoded, and the requests they belong to (sorted, each
/// once): what the request read models of a batch start from.
pub(crate) fn request_events<'e>(
    events: &[&'e RecordedEvent],
) -> Result<(Vec<Decoded<'e>>, Vec<Uuid>), ProjectionError> {
    let mut decoded = Vec::new();
    for e in events {
        if e.stream_type == ServiceRequest::STREAM_TYPE {
            decoded.push((*e, e.decode()?));
        }
    }
    let mut ids: Vec<Uuid> = decoded.iter().map(|(e, _)| e.stream_id).collect();
    ids.sort_unstable();
    ids.dedup();
    Ok((decoded, ids))
}

/// A changed request replaces every column but its identity and filing.
const REQUESTS_CONFLICT: &str = "ON CONFLICT (request_id) DO UPDATE SET state = EXCLUDED.state, live = EXCLUDED.live, \
    owner_id = EXCLUDED.owner_id, owner_name = EXCLUDED.owner_name, assignee_id = EXCLUDED.assignee_id, \
    assignee_name = EXCLUDED.assignee_name, department = EXCLUDED.department, \
    escalation_level = EXCLUDED.escalation_level, escalation_name = EXCLUDED.escalation_name, \
    incident_id = EXCLUDED.incident_id, first_response_at = EXCLUDED.first_response_at, \
    first_resolved_at = EXCLUDED.first_resolved_at, last_resolved_at = EXCLUDED.last_resolved_at, \
    ended_at = EXCLUDED.ended_at, root_cause = EXCLUDED.root_cause, reopen_count = EXCLUDED.reopen_count, \
    reporter_count = EXCLUDED.reporter_count, merged_into = EXCLUDED.merged_into, \
    return_visits = EXCLUDED.return_visits, last_return_visit_satisfied = EXCLUDED.last_return_visit_satisfied, \
    paused = EXCLUDED.paused, callback_due_at = EXCLUDED.callback_due_at, next_due_at = EXCLUDED.next_due_at, \
    next_due_metric = EXCLUDED.next_due_metric, next_warn_at = EXCLUDED.next_warn_at, \
    breached = EXCLUDED.breached, state_json = EXCLUDED.state_json, resolution = EXCLUDED.resolution, \
    version = EXCLUDED.version, last_position = EXCLUDED.last_position, updated_at = EXCLUDED.updated_at";

/// Requests and their clocks folded in memory: a batch's (the rows it touches, read first) or a
/// whole rebuild's (from nothing).
#[derive(Default)]
struct Folded {
    views: BTreeMap<Uuid, Option<RequestView>>,
    /// Each request's clocks (a handful: one per metric and cycle).
    clocks: HashMap<Uuid, Vec<ClockRow>>,
    /// When each changed request last changed (its `updated_at`).
    updated: BTreeMap<Uuid, DateTime<Utc>>,
    /// Whether only the clocks a batch changed are written (a rebuild writes them all).
    changes_only: bool,
    /// The requests whose filing is stored already (a batch's known ones).
    stored: BTreeSet<Uuid>,
}

impl Folded {
    /// One event onto its request and the request's clocks, with [`step`].
    fn fold(&mut self, e: &RecordedEvent, event: &ServiceRequestEvent) -> Result<(), ProjectionError> {
        let id = e.stream_id;
        let view = self.views.entry(id).or_default();
        if view.is_none() && !matches!(event, ServiceRequestEvent::RequestFiled(_)) {
            return Err(ProjectionError::Poison(format!("{} for unknown request {id}", e.event_type)));
        }
        step(view, e, event);
        let Some(v) = view.as_ref() else { return Ok(()) };
        if v.state.filed.is_none() {
            return Err(ProjectionError::Poison(format!("request {id} has no filing")));
        }
        step_clocks(self.clocks.entry(id).or_default(), id, &v.state, e.occurred_at);
        self.updated.insert(id, e.occurred_at);
        Ok(())
    }

    /// Moves every folded request's filing out of its aggregate, for writing: `state_json`
    /// keeps the rest, the filing has a column of its own.
    fn take_filings(&mut self) -> BTreeMap<Uuid, kefu_domain::service_request::RequestFiled> {
        self.views.iter_mut().filter_map(|(id, v)| Some((*id, v.as_mut()?.state.filed.take()?))).collect()
    }

    /// The rows of the changed requests; the filing only of those not stored yet.
    fn request_rows<'a>(
        &'a self,
        filings: &'a BTreeMap<Uuid, kefu_domain::service_request::RequestFiled>,
    ) -> RequestRows<'a> {
        RequestRows { folded: self, filings, ids: self.updated.iter() }
    }

    /// The changed clocks, in key order.
    fn clock_rows(&self) -> Vec<&ClockRow> {
        let mut rows: Vec<&ClockRow> =
            self.clocks.values().flatten().filter(|c| c.changed || !self.changes_only).collect();
        rows.sort_unstable_by_key(|c| (c.request_id, c.metric.as_str(), c.cycle));
        rows
    }
}

/// Applies a run of events: the requests it touches and their clocks are read in one query
/// each, every event is folded onto them in memory with [`step`], and the changed rows are
/// written back with one statement per table.
async fn apply_many(conn: &mut PgConnection, events: &[&RecordedEvent]) -> Result<(), ProjectionError> {
    let (decoded, ids) = request_events(events)?;
    if decoded.is_empty() {
        return Ok(());
    }
    let mut folded =
        Folded { views: ids.iter().map(|id| (*id, None)).collect(), changes_only: true, ..Folded::default() };
    let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT {VIEW_COLUMNS} FROM requests WHERE request_id = ANY($1) ORDER BY request_id FOR UPDATE"
    )))
    .bind(&ids)
    .fetch_all(&mut *conn)
    .await?;
    for row in &rows {
        let id = row.try_get("request_id")?;
        folded.views.insert(id, Some(view_from(row)?));
        folded.stored.insert(id);
    }
    if !rows.is_empty() {
        let stored: Vec<ClockRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT {CLOCK_COLUMNS} FROM request_clocks WHERE request_id = ANY($1)"
        )))
        .bind(&ids)
        .fetch_all(&mut *conn)
        .await?;
        for c in stored {
            folded.clocks.entry(c.request_id).or_default().push(c);
        }
    }
    for (e, event) in &decoded {
        folded.fold(e, event)?;
    }
    let filings = folded.take_filings();
    let requests: Vec<RequestRow<'_>> = folded.request_rows(&filings).collect();
    CopyRows::new("requests").upsert(conn, requests.into_iter(), REQUESTS_CONFLICT).await?;
    CopyRows::new("request_clocks")
        .upsert(
            conn,
            folded.clock_rows().into_iter(),
            "ON CONFLICT (request_id, metric, cycle) DO UPDATE SET due_at = EXCLUDED.due_at, \
               warn_at = EXCLUDED.warn_at, met_at = EXCLUDED.met_at, warned = EXCLUDED.warned, \
               breached = EXCLUDED.breached, cancelled = EXCLUDED.cancelled, outcome = EXCLUDED.outcome, \
               decided_at = EXCLUDED.decided_at, agent_id = EXCLUDED.agent_id, department = EXCLUDED.department",
        )
        .await
}

/// The rows of every changed request, made one at a time (a named iterator: a closure's would
/// not be `Send` across the `COPY`'s awaits).
struct RequestRows<'a> {
    folded: &'a Folded,
    filings: &'a BTreeMap<Uuid, kefu_domain::service_request::RequestFiled>,
    ids: std::collections::btree_map::Iter<'a, Uuid, DateTime<Utc>>,
}

impl<'a> Iterator for RequestRows<'a> {
    type Item = RequestRow<'a>;

    fn next(&mut self) -> Option<RequestRow<'a>> {
        for (id, at) in self.ids.by_ref() {
            if let Some(Some(v)) = self.folded.views.get(id)
                && let Some(filed) = self.filings.get(id)
            {
                let mut row = RequestRow::of(*id, v, filed, *at);
                if self.folded.stored.contains(id) {
                    row.filing = None;
                }
                return Some(row);
            }
        }
        None
    }
}

/// A rebuild's fold: every request and its clocks in memory until the request's stream has
/// ended (then its rows are final: streamed out and forgotten), the rest written at the end.
struct BulkRequests {
    folded: Folded,
    requests: CopyRows,
    clocks: CopyRows,
}

impl Default for BulkRequests {
    fn default() -> Self {
        BulkRequests {
            folded: Folded::default(),
            requests: CopyRows::new("requests"),
            clocks: CopyRows::new("request_clocks"),
        }
    }
}

impl BulkFold for BulkRequests {
    fn fold(&mut self, event: &RecordedEvent) -> Result<(), ProjectionError> {
        if event.stream_type != ServiceRequest::STREAM_TYPE {
            return Ok(());
        }
        self.folded.fold(event, &event.decode()?)
    }

    fn fold_split(&mut self, split: kefu_contract::Split<'_>) -> Result<(), ProjectionError> {
        if split.event.stream_type != ServiceRequest::STREAM_TYPE {
            return Ok(());
        }
        let event = split.payload().map_err(|e| ProjectionError::Poison(e.to_string()))?;
        self.folded.fold(&split.event, &event)
    }

    fn ended(&mut self, stream: Uuid) -> Result<(), ProjectionError> {
        let folded = &mut self.folded;
        // Not a request's stream, or none of its events folded.
        let Some(at) = folded.updated.remove(&stream) else { return Ok(()) };
        let Some(Some(mut view)) = folded.views.remove(&stream) else {
            return Err(ProjectionError::Other(format!("request {stream} changed but has no view")));
        };
        let clocks = folded.clocks.remove(&stream).unwrap_or_default();
        let filed = view
            .state
            .filed
            .take()
            .ok_or_else(|| ProjectionError::Poison(format!("request {stream} has no filing")))?;
        self.requests.push(&RequestRow::of(stream, &view, &filed, at))?;
        for clock in &clocks {
            self.clocks.push(clock)?;
        }
        Ok(())
    }

    fn streamed(&mut self) -> Vec<Streamed> {
        [self.requests.take(), self.clocks.take()].into_iter().flatten().collect()
    }

    fn write<'a>(&'a mut self, conn: &'a mut PgConnection) -> BoxFuture<'a, Result<(), ProjectionError>> {
        Box::pin(async move {
            let filings = self.folded.take_filings();
            self.requests.write_all(conn, self.folded.request_rows(&filings)).await?;
            self.clocks.write_all(conn, self.folded.clock_rows().into_iter()).await
        })
    }
}

/// Requests whose SLA clocks have a warning or deadline due by `now` and not yet recorded.
pub async fn due_for_check(
    conn: &mut PgConnection,
    now: DateTime<Utc>,
    limit: i64,
) -> Result<Vec<Uuid>, ProjectionError> {
    let ids: Vec<Uuid> = sqlx::query_scalar(
        "SELECT DISTINCT c.request_id FROM request_clocks c JOIN requests r USING (request_id) \
         WHERE r.live AND c.outcome = 'RUNNING' AND NOT c.cancelled AND c.met_at IS NULL AND \
           ((NOT c.breached AND c.due_at <= $1) OR (NOT c.warned AND NOT c.breached AND c.warn_at <= $1)) \
         LIMIT $2",
    )
    .bind(now)
    .bind(limit)
    .fetch_all(conn)
    .await?;
    Ok(ids)
}

// ---------------------------------------------------------------------------------------------
// Reading

/// A request as people look at it, folded: the aggregate and what the read model derives from
/// its events. What `serviceRequest(asOf:)` folds and a batch folds onto; reads of the stored
/// rows get a [`StoredRequest`] instead, which decodes the aggregate only when asked.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct RequestView {
    /// The folded aggregate state (owner, clocks, reporters…).
    pub state: ServiceRequest,
    /// What the read model derives beside it (flattened: snapshots keep their form).
    #[serde(flatten)]
    pub facts: RequestFacts,
}

/// What the read model derives from a request's events beside its aggregate (its own
/// columns, kept by [`step`]).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct RequestFacts {
    /// Current state.
    pub request_state: RequestState,
    /// Name of the current escalation level.
    pub escalation_name: Option<String>,
    /// When the customer was first answered.
    pub first_response_at: Option<DateTime<Utc>>,
    /// When it ended (closed, withdrawn, merged).
    pub ended_at: Option<DateTime<Utc>>,
    /// Root cause of the latest resolution.
    pub root_cause: Option<String>,
    /// The latest resolution event (JSON payload).
    pub resolution: Option<serde_json::Value>,
    /// Times reopened.
    pub reopen_count: i32,
    /// Return visits so far.
    pub return_visits: i32,
    /// Outcome of the latest return visit.
    pub last_return_visit_satisfied: Option<bool>,
    /// The running clock due first: metric and deadline.
    pub next_due: Option<(String, DateTime<Utc>)>,
    /// Its warning time.
    pub next_warn_at: Option<DateTime<Utc>>,
    /// Whether any target was missed.
    pub breached: bool,
    /// Latest global position reflected.
    pub last_position: i64,
    /// Stream version.
    pub version: i64,
}

impl Default for RequestFacts {
    fn default() -> Self {
        RequestFacts {
            request_state: RequestState::Filed,
            escalation_name: None,
            first_response_at: None,
            ended_at: None,
            root_cause: None,
            resolution: None,
            reopen_count: 0,
            return_visits: 0,
            last_return_visit_satisfied: None,
            next_due: None,
            next_warn_at: None,
            breached: false,
            last_position: 0,
            version: 0,
        }
    }
}

/// The columns every read of `requests` selects beside the aggregate.
macro_rules! listed_columns {
    () => {
        "request_id, customer_id, request_type, category, priority, priority_rank, channel, subject, state, live, \
         owner_id, owner_name, assignee_id, assignee_name, department, escalation_level, escalation_name, \
         incident_id, customer_tier, external_ref, filed_at, first_response_at, first_resolved_at, \
         last_resolved_at, ended_at, root_cause, resolution, reopen_count, merged_into, return_visits, \
         last_return_visit_satisfied, paused, callback_due_at, next_due_metric, next_due_at, next_warn_at, breached, \
         version, last_position"
    };
}

/// The columns and the aggregate as text (decoded by the caller, or only when needed).
const VIEW_COLUMNS: &str = concat!("state_json::text AS state_json, filing::text AS filing, ", listed_columns!());
/// The columns only (the aggregate's few kB stay in the database).
const LISTED_COLUMNS: &str = concat!("NULL::text AS state_json, NULL::text AS filing, ", listed_columns!());

/// Whether a read of requests brings their aggregates along: a list whose selection shows only
/// columns leaves them in the database (a reader that needs one after all reads it by id).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub enum Aggregates {
    /// Read each request's aggregate.
    #[default]
    Read,
    /// Only the columns.
    Skipped,
}

impl Aggregates {
    fn columns(self) -> &'static str {
        match self {
            Aggregates::Read => VIEW_COLUMNS,
            Aggregates::Skipped => LISTED_COLUMNS,
        }
    }
}

/// A name of a closed vocabulary as stored in a column (by name or position), or a decoding
/// error naming it.
fn vocab_column<T, I>(row: &sqlx::postgres::PgRow, column: I) -> Result<T, sqlx::Error>
where
    T: std::str::FromStr,
    I: sqlx::ColumnIndex<sqlx::postgres::PgRow> + std::fmt::Display,
{
    let name: &str = row.try_get(&column)?;
    name.parse().map_err(|_| sqlx::Error::ColumnDecode {
        index: column.to_string(),
        source: format!(
            "`{name}` is not a known {}",
            std::any::type_name::<T>().rsplit("::").next().unwrap_or("value")
        )
        .into(),
    })
}

fn facts_from(row: &sqlx::postgres::PgRow) -> Result<RequestFacts, sqlx::Error> {
    let metric: Option<String> = row.try_get("next_due_metric")?;
    let due: Option<DateTime<Utc>> = row.try_get("next_due_at")?;
    Ok(RequestFacts {
        request_state: vocab_column(row, "state")?,
        escalation_name: row.try_get("escalation_name")?,
        first_response_at: row.try_get("first_response_at")?,
        ended_at: row.try_get("ended_at")?,
        root_cause: row.try_get("root_cause")?,
        resolution: row.try_get("resolution")?,
        reopen_count: row.try_get("reopen_count")?,
        return_visits: row.try_get("return_visits")?,
        last_return_visit_satisfied: row.try_get("last_return_visit_satisfied")?,
        next_due: metric.zip(due),
        next_warn_at: row.try_get("next_warn_at")?,
        breached: row.try_get("breached")?,
        last_position: row.try_get("last_position")?,
        version: row.try_get("version")?,
    })
}

/// A stored request with its aggregate decoded (the batch path folds onto it).
fn view_from(row: &sqlx::postgres::PgRow) -> Result<RequestView, sqlx::Error> {
    let (state, filing): (String, String) = (row.try_get("state_json")?, row.try_get("filing")?);
    let state = stored::aggregate(&state, &filing)
        .map_err(|e| sqlx::Error::ColumnDecode { index: "state_json".into(), source: e.into() })?;
    Ok(RequestView { state, facts: facts_from(row)? })
}

/// One request.
pub async fn request(conn: &mut PgConnection, id: Uuid) -> Result<Option<StoredRequest>, ProjectionError> {
    let row = sqlx::query(sqlx::AssertSqlSafe(format!("SELECT {VIEW_COLUMNS} FROM requests WHERE request_id = $1")))
        .bind(id)
        .fetch_optional(conn)
        .await?;
    Ok(row.as_ref().map(StoredRequest::from_row).transpose()?)
}

impl BacklogFilter {
    /// A customer's requests: the live ones, or all of them.
    pub fn of_customer(customer_id: Uuid, include_closed: bool) -> Self {
        BacklogFilter {
            customer_id: Some(customer_id),
            states: if include_closed {
                RequestState::ALL.iter().map(|s| s.as_str().to_string()).collect()
            } else {
                vec![]
            },
            ..Default::default()
        }
    }
}

/// Many requests by id (for batching).
pub async fn requests_by_id(conn: &mut PgConnection, ids: &[Uuid]) -> Result<Vec<StoredRequest>, ProjectionError> {
    let rows =
        sqlx::query(sqlx::AssertSqlSafe(format!("SELECT {VIEW_COLUMNS} FROM requests WHERE request_id = ANY($1)")))
            .bind(ids)
            .fetch_all(conn)
            .await?;
    Ok(rows.iter().map(StoredRequest::from_row).collect::<Result<_, _>>()?)
}

/// Which requests a backlog shows; every given field must match (lists: any of).
#[derive(Debug, Clone, Default)]
pub struct BacklogFilter {
    /// States (short names). Empty: every live state (not closed, withdrawn or merged).
    pub states: Vec<String>,
    /// Request types.
    pub request_types: Vec<String>,
    /// Priorities.
    pub priorities: Vec<String>,
    /// Channels.
    pub channels: Vec<String>,
    /// Customer tiers.
    pub customer_tiers: Vec<String>,
    /// Category prefix (case-insensitive).
    pub category_prefix: Option<String>,
    /// Owner.
    pub owner_id: Option<String>,
    /// Current agent.
    pub assignee_id: Option<String>,
    /// Department.
    pub department: Option<String>,
    /// Only requests with (true) or without (false) a missed target.
    pub breached: Option<bool>,
    /// Only this customer's.
    pub customer_id: Option<Uuid>,
    /// Only this incident's.
    pub incident_id: Option<Uuid>,
    /// Minimum escalation level.
    pub min_escalation_level: Option<i32>,
}

/// Backlog order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum BacklogOrder {
    /// Oldest first (longest waiting).
    #[default]
    OldestFirst,
    /// Newest first.
    NewestFirst,
    /// Nearest SLA deadline first (requests without one last).
    NextDeadline,
    /// Highest priority first, then oldest.
    Priority,
    /// Highest escalation level first, then oldest.
    Escalation,
}

/// A position in a backlog listing.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct BacklogCursor {
    /// Rank key (priority or escalation), when the order has one.
    pub rank: Option<i32>,
    /// Time key.
    pub at: DateTime<Utc>,
    /// Tie-breaker.
    pub id: Uuid,
}

/// Where requests without a running deadline sort (last), as a real instant so keyset
/// pagination stays exact.
fn no_deadline() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("9999-12-31T00:00:00Z")
        .map(|d| d.with_timezone(&Utc))
        .unwrap_or(DateTime::<Utc>::MAX_UTC)
}

struct Sql {
    text: String,
    n: usize,
}

impl Sql {
    fn param(&mut self) -> String {
        self.n += 1;
        format!("${}", self.n)
    }
}

fn where_clause(filter: &BacklogFilter, sql: &mut Sql) -> Vec<Bind> {
    let mut binds = Vec::new();
    if filter.states.is_empty() {
        sql.text += " AND live";
    } else {
        let p = sql.param();
        sql.text += &format!(" AND state = ANY({p})");
        binds.push(Bind::Strings(filter.states.clone()));
    }
    for (column, values) in [
        ("request_type", &filter.request_types),
        ("priority", &filter.priorities),
        ("channel", &filter.channels),
        ("customer_tier", &filter.customer_tiers),
    ] {
        if !values.is_empty() {
            let p = sql.param();
            sql.text += &format!(" AND {column} = ANY({p})");
            binds.push(Bind::Strings(values.clone()));
        }
    }
    for (column, value) in
        [("owner_id", &filter.owner_id), ("assignee_id", &filter.assignee_id), ("department", &filter.department)]
    {
        if let Some(v) = value {
            let p = sql.param();
            sql.text += &format!(" AND {column} = {p}");
            binds.push(Bind::String(v.clone()));
        }
    }
    if let Some(prefix) = &filter.category_prefix {
        let p = sql.param();
        sql.text += &format!(" AND lower(category) LIKE {p}");
        binds.push(Bind::String(format!("{}%", prefix.to_lowercase().replace('%', "\\%").replace('_', "\\_"))));
    }
    if let Some(b) = filter.breached {
        let p = sql.param();
        sql.text += &format!(" AND breached = {p}");
        binds.push(Bind::Bool(b));
    }
    for (column, value) in [("customer_id", filter.customer_id), ("incident_id", filter.incident_id)] {
        if let Some(v) = value {
            let p = sql.param();
            sql.text += &format!(" AND {column} = {p}");
            binds.push(Bind::Uuid(v));
        }
    }
    if let Some(level) = filter.min_escalation_level {
        let p = sql.param();
        sql.text += &format!(" AND escalation_level >= {p}");
        binds.push(Bind::Int(level));
    }
    binds
}

enum Bind {
    Strings(Vec<String>),
    String(String),
    Bool(bool),
    Uuid(Uuid),
    Int(i32),
    Time(DateTime<Utc>),
    BigInt(i64),
}

fn bind_all<'q>(
    mut q: sqlx::query::Query<'q, sqlx::Postgres, sqlx::postgres::PgArguments>,
    binds: Vec<Bind>,
) -> sqlx::query::Query<'q, sqlx::Postgres, sqlx::postgres::PgArguments> {
    for b in binds {
        q = match b {
            Bind::Strings(v) => q.bind(v),
            Bind::String(v) => q.bind(v),
            Bind::Bool(v) => q.bind(v),
            Bind::Uuid(v) => q.bind(v),
            Bind::Int(v) => q.bind(v),
            Bind::Time(v) => q.bind(v),
            Bind::BigInt(v) => q.bind(v),
        };
    }
    q
}

fn order_parts(order: BacklogOrder) -> (&'static str, &'static str, Option<&'static str>, &'static str) {
    // (time expression, time direction, rank expression, rank direction)
    match order {
        BacklogOrder::OldestFirst => ("filed_at", "ASC", None, ""),
        BacklogOrder::NewestFirst => ("filed_at", "DESC", None, ""),
        BacklogOrder::NextDeadline => ("COALESCE(next_due_at, '9999-12-31T00:00:00Z'::timestamptz)", "ASC", None, ""),
        BacklogOrder::Priority => ("filed_at", "ASC", Some("priority_rank"), "DESC"),
        BacklogOrder::Escalation => ("filed_at", "ASC", Some("escalation_level"), "DESC"),
    }
}

/// A page of the backlog and whether more follow.
pub async fn backlog(
    conn: &mut PgConnection,
    filter: &BacklogFilter,
    order: BacklogOrder,
    first: i64,
    after: Option<&BacklogCursor>,
    aggregates: Aggregates,
) -> Result<RequestPage, ProjectionError> {
    let mut sql = Sql { text: format!("SELECT {} FROM requests WHERE true", aggregates.columns()), n: 0 };
    let mut binds = where_clause(filter, &mut sql);
    let (time, time_dir, rank, rank_dir) = order_parts(order);
    let time_cmp = if time_dir == "ASC" { ">" } else { "<" };
    if let Some(c) = after {
        let (pt, pid) = (sql.param(), sql.param());
        let after_time = format!("({time}, request_id) {time_cmp} ({pt}, {pid})");
        match (rank, c.rank) {
            (Some(rank), Some(r)) => {
                let pr = sql.param();
                let rank_cmp = if rank_dir == "DESC" { "<" } else { ">" };
                sql.text += &format!(" AND ({rank} {rank_cmp} {pr} OR ({rank} = {pr} AND {after_time}))");
                binds.push(Bind::Time(c.at));
                binds.push(Bind::Uuid(c.id));
                binds.push(Bind::Int(r));
            }
            _ => {
                sql.text += &format!(" AND {after_time}");
                binds.push(Bind::Time(c.at));
                binds.push(Bind::Uuid(c.id));
            }
        }
    }
    sql.text += &match rank {
        Some(rank) => format!(" ORDER BY {rank} {rank_dir}, {time} {time_dir}, request_id {time_dir}"),
        None => format!(" ORDER BY {time} {time_dir}, request_id {time_dir}"),
    };
    let p = sql.param();
    sql.text += &format!(" LIMIT {p}");
    binds.push(Bind::BigInt(first + 1));
    let rows = bind_all(sqlx::query(sqlx::AssertSqlSafe(sql.text)), binds).fetch_all(conn).await?;
    let mut out = Vec::with_capacity(rows.len());
    for row in &rows {
        let view = StoredRequest::from_row(row)?;
        let (id, filed_at) = (view.listed.request_id, view.listed.filed_at);
        let next_due = view.facts.next_due.as_ref().map(|(_, at)| *at);
        let cursor = BacklogCursor {
            rank: match order {
                BacklogOrder::Priority => Some(row.try_get("priority_rank")?),
                BacklogOrder::Escalation => Some(row.try_get("escalation_level")?),
                _ => None,
            },
            at: match order {
                BacklogOrder::NextDeadline => next_due.unwrap_or_else(no_deadline),
                _ => filed_at,
            },
            id,
        };
        out.push((view, cursor));
    }
    let more = out.len() as i64 > first;
    out.truncate(first as usize);
    Ok((out, more))
}

/// Requests with their cursors, and whether more follow.
pub type RequestPage = (Vec<(StoredRequest, BacklogCursor)>, bool);

/// A page of requests per customer, newest first (for batching `Customer.serviceRequests`
/// over a list of customers): each customer's first `first` requests and whether more follow.
pub async fn requests_of_customers(
    conn: &mut PgConnection,
    customer_ids: &[Uuid],
    include_closed: bool,
    first: i64,
    aggregates: Aggregates,
) -> Result<HashMap<Uuid, RequestPage>, ProjectionError> {
    let live = if include_closed { "" } else { " AND live" };
    let columns = aggregates.columns();
    let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT c.customer_id AS of_customer, r.* FROM unnest($1::uuid[]) AS c(customer_id) \
         CROSS JOIN LATERAL (SELECT {columns} FROM requests q WHERE q.customer_id = c.customer_id{live} \
                             ORDER BY filed_at DESC, request_id DESC LIMIT $2) r"
    )))
    .bind(customer_ids)
    .bind(first + 1)
    .fetch_all(conn)
    .await?;
    let mut out: HashMap<Uuid, RequestPage> = customer_ids.iter().map(|id| (*id, (Vec::new(), false))).collect();
    for row in &rows {
        let customer: Uuid = row.try_get("of_customer")?;
        let cursor = BacklogCursor { rank: None, at: row.try_get("filed_at")?, id: row.try_get("request_id")? };
        out.entry(customer).or_default().0.push((StoredRequest::from_row(row)?, cursor));
    }
    for (page, more) in out.values_mut() {
        *more = page.len() as i64 > first;
        page.truncate(first as usize);
    }
    Ok(out)
}

/// Totals of a backlog: how many, per state, per age bucket.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct BacklogCounts {
    /// All matching requests.
    pub total: i64,
    /// Per state (short name).
    pub by_state: Vec<(String, i64)>,
    /// Per age bucket, in bucket order.
    pub by_age: Vec<(String, i64)>,
    /// Matching requests with a missed target.
    pub breached: i64,
}

/// Age buckets of the backlog, by time since filing.
pub const AGE_BUCKETS: &[&str] = &["UNDER_4_HOURS", "4_TO_24_HOURS", "1_TO_3_DAYS", "3_TO_7_DAYS", "OVER_7_DAYS"];

/// The SQL expression of a request's age bucket at `$1`.
const AGE_BUCKET_SQL: &str = "CASE WHEN $1 - filed_at < interval '4 hours' THEN 'UNDER_4_HOURS' \
    WHEN $1 - filed_at < interval '24 hours' THEN '4_TO_24_HOURS' \
    WHEN $1 - filed_at < interval '3 days' THEN '1_TO_3_DAYS' \
    WHEN $1 - filed_at < interval '7 days' THEN '3_TO_7_DAYS' ELSE 'OVER_7_DAYS' END";

/// The bucket of an age.
pub fn age_bucket(filed_at: DateTime<Utc>, now: DateTime<Utc>) -> &'static str {
    let age = now - filed_at;
    if age < chrono::Duration::hours(4) {
        AGE_BUCKETS[0]
    } else if age < chrono::Duration::hours(24) {
        AGE_BUCKETS[1]
    } else if age < chrono::Duration::days(3) {
        AGE_BUCKETS[2]
    } else if age < chrono::Duration::days(7) {
        AGE_BUCKETS[3]
    } else {
        AGE_BUCKETS[4]
    }
}

/// Counts of a backlog at `now`.
pub async fn backlog_counts(
    conn: &mut PgConnection,
    filter: &BacklogFilter,
    now: DateTime<Utc>,
) -> Result<BacklogCounts, ProjectionError> {
    let mut sql = Sql { text: String::new(), n: 1 };
    let binds = where_clause(filter, &mut sql);
    let condition = sql.text.clone();
    let mut counts = BacklogCounts::default();
    // Per state and per age bucket in one statement (one scan).
    let rows = bind_all(
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT GROUPING(bucket) = 1 AS per_state, state, bucket, count(*) AS n, \
                    sum(CASE WHEN breached THEN 1 ELSE 0 END) AS b \
             FROM (SELECT state, breached, {AGE_BUCKET_SQL} AS bucket FROM requests \
                   WHERE $1::timestamptz IS NOT NULL {condition}) r \
             GROUP BY GROUPING SETS ((state), (bucket)) ORDER BY state, bucket"
        )))
        .bind(now),
        binds,
    )
    .fetch_all(&mut *conn)
    .await?;
    let mut by_age = BTreeMap::new();
    for r in &rows {
        let n: i64 = r.try_get("n")?;
        if r.try_get("per_state")? {
            counts.total += n;
            counts.breached += r.try_get::<i64, _>("b")?;
            counts.by_state.push((r.try_get("state")?, n));
        } else {
            by_age.insert(r.try_get::<String, _>("bucket")?, n);
        }
    }
    for bucket in AGE_BUCKETS {
        counts.by_age.push((bucket.to_string(), by_age.get(*bucket).copied().unwrap_or(0)));
    }
    Ok(counts)
}

/// A clock as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct ClockView {
    /// Metric.
    pub metric: String,
    /// Cycle.
    pub cycle: i32,
    /// Start.
    pub started_at: DateTime<Utc>,
    /// Deadline (None while paused).
    pub due_at: Option<DateTime<Utc>>,
    /// Warning time.
    pub warn_at: Option<DateTime<Utc>>,
    /// When met.
    pub met_at: Option<DateTime<Utc>>,
    /// HIT, MISSED, CANCELLED or RUNNING.
    pub outcome: String,
    /// Breach recorded.
    pub breached: bool,
    /// Warning recorded.
    pub warned: bool,
}

/// A request's clocks.
pub async fn clocks(conn: &mut PgConnection, id: Uuid) -> Result<Vec<ClockView>, ProjectionError> {
    let rows = sqlx::query(
        "SELECT metric, cycle, started_at, due_at, warn_at, met_at, outcome, breached, warned FROM request_clocks \
         WHERE request_id = $1 ORDER BY started_at, metric, cycle",
    )
    .bind(id)
    .fetch_all(conn)
    .await?;
    rows.iter()
        .map(|r| {
            Ok(ClockView {
                metric: r.try_get("metric")?,
                cycle: r.try_get("cycle")?,
                started_at: r.try_get("started_at")?,
                due_at: r.try_get("due_at")?,
                warn_at: r.try_get("warn_at")?,
                met_at: r.try_get("met_at")?,
                outcome: r.try_get("outcome")?,
                breached: r.try_get("breached")?,
                warned: r.try_get("warned")?,
            })
        })
        .collect::<Result<_, sqlx::Error>>()
        .map_err(Into::into)
}

/// A dimension SLA compliance can be grouped by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ComplianceDimension {
    /// Calendar day of the deadline.
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
    /// Customer tier.
    CustomerTier,
}

impl ComplianceDimension {
    /// Its name in results.
    pub fn key(self) -> &'static str {
        match self {
            ComplianceDimension::Day => "day",
            ComplianceDimension::Week => "week",
            ComplianceDimension::Month => "month",
            ComplianceDimension::Department => "department",
            ComplianceDimension::Agent => "agent",
            ComplianceDimension::Priority => "priority",
            ComplianceDimension::Channel => "channel",
            ComplianceDimension::RequestType => "requestType",
            ComplianceDimension::Category => "category",
            ComplianceDimension::CustomerTier => "customerTier",
        }
    }

    fn sql(self) -> &'static str {
        match self {
            ComplianceDimension::Day => "to_char(date_trunc('day', c.due_at AT TIME ZONE $3), 'YYYY-MM-DD')",
            ComplianceDimension::Week => "to_char(date_trunc('week', c.due_at AT TIME ZONE $3), 'IYYY-\"W\"IW')",
            ComplianceDimension::Month => "to_char(date_trunc('month', c.due_at AT TIME ZONE $3), 'YYYY-MM')",
            ComplianceDimension::Department => "coalesce(c.department, r.department, '')",
            ComplianceDimension::Agent => "coalesce(c.agent_id, r.owner_id, '')",
            ComplianceDimension::Priority => "r.priority",
            ComplianceDimension::Channel => "r.channel",
            ComplianceDimension::RequestType => "r.request_type",
            ComplianceDimension::Category => "r.category",
            ComplianceDimension::CustomerTier => "coalesce(r.customer_tier, '')",
        }
    }
}

/// One group of SLA compliance.
#[derive(Debug, Clone, PartialEq)]
pub struct ComplianceRow {
    /// The metric.
    pub metric: String,
    /// The group's values, one per requested dimension, in order.
    pub keys: Vec<(String, String)>,
    /// Clocks met in time.
    pub hit: i64,
    /// Clocks missed.
    pub missed: i64,
}

/// SLA compliance of clocks due in [from, to), grouped by metric and `group_by`; periods are
/// calendar periods in `time_zone`. Cancelled and still-running clocks do not count.
pub async fn compliance(
    conn: &mut PgConnection,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    group_by: &[ComplianceDimension],
    time_zone: &str,
) -> Result<Vec<ComplianceRow>, ProjectionError> {
    let keys: Vec<String> = group_by.iter().enumerate().map(|(i, d)| format!("{} AS k{i}", d.sql())).collect();
    let select_keys = if keys.is_empty() { String::new() } else { format!(", {}", keys.join(", ")) };
    let group = (0..group_by.len()).map(|i| format!(", k{i}")).collect::<String>();
    let sql = format!(
        "SELECT c.metric{select_keys}, \
           sum(CASE WHEN c.outcome = 'HIT' THEN 1 ELSE 0 END) AS hit, \
           sum(CASE WHEN c.outcome = 'MISSED' THEN 1 ELSE 0 END) AS missed \
         FROM request_clocks c JOIN requests r USING (request_id) \
         WHERE c.outcome IN ('HIT', 'MISSED') AND c.due_at >= $1 AND c.due_at < $2 AND r.state <> 'MERGED' \
           AND $3::text IS NOT NULL \
         GROUP BY c.metric{group} ORDER BY c.metric{group}"
    );
    let rows = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(from).bind(to).bind(time_zone).fetch_all(conn).await?;
    rows.iter()
        .map(|r| {
            let mut keys = Vec::with_capacity(group_by.len());
            for (i, d) in group_by.iter().enumerate() {
                keys.push((d.key().to_string(), r.try_get::<String, _>(format!("k{i}").as_str())?));
            }
            Ok(ComplianceRow {
                metric: r.try_get("metric")?,
                keys,
                hit: r.try_get("hit")?,
                missed: r.try_get("missed")?,
            })
        })
        .collect::<Result<_, sqlx::Error>>()
        .map_err(Into::into)
}

/// Complaints of a period: filed (merged duplicates not counted), resolved for the first time,
/// and those resolutions by root cause.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ComplaintSummary {
    /// Filed in the period.
    pub filed: i64,
    /// First resolved in the period.
    pub resolved: i64,
    /// Of those, per root cause (most frequent first).
    pub by_root_cause: Vec<(String, i64)>,
}

/// Complaint counts in [from, to).
pub async fn complaint_summary(
    conn: &mut PgConnection,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> Result<ComplaintSummary, ProjectionError> {
    let filed: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM requests WHERE request_type = 'COMPLAINT' AND state <> 'MERGED' \
           AND filed_at >= $1 AND filed_at < $2",
    )
    .bind(from)
    .bind(to)
    .fetch_one(&mut *conn)
    .await?;
    let rows: Vec<(String, i64)> = sqlx::query_as(
        "SELECT coalesce(root_cause, 'unknown'), count(*) FROM requests WHERE request_type = 'COMPLAINT' \
           AND state <> 'MERGED' AND first_resolved_at >= $1 AND first_resolved_at < $2 \
         GROUP BY 1 ORDER BY 2 DESC, 1",
    )
    .bind(from)
    .bind(to)
    .fetch_all(&mut *conn)
    .await?;
    Ok(ComplaintSummary { filed, resolved: rows.iter().map(|(_, n)| n).sum(), by_root_cause: rows })
}
