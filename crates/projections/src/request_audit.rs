//! The complaint audit trail: every event of every request, in order, with who, when (business
//! and recorded time), why, a sentence for people and what changed (state, owner, assignee,
//! department, escalation level, reporters), computed by folding the request with the
//! domain's own rules.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use futures::future::BoxFuture;
use kefu_app::{Actor, RecordedEvent};
use kefu_domain::{
    Aggregate,
    service_request::{ServiceRequest, ServiceRequestEvent as E},
    values::{Label, StaffRef},
    vocab::RequestState,
};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use sqlx::{PgConnection, Row, types::Json};
use uuid::Uuid;

use crate::{
    Projection, ProjectionError,
    bulk::BulkFold,
    copy::{AsJson, CopyRows, Streamed},
};

/// The projection.
#[derive(Debug, Clone, Copy, Default)]
pub struct RequestAudit;

/// Its name.
pub const NAME: &str = "request_audit";

const SCHEMA: &str = r#"
-- The trail's JSON (who, what changed, the payload) is only ever read back whole: json keeps
-- the text as written instead of parsing it into jsonb on every insert and printing it again on
-- every read.
CREATE TABLE history (
    request_id         uuid        NOT NULL,
    stream_version     bigint      NOT NULL,
    global_position    bigint      NOT NULL,
    event_id           uuid        NOT NULL,
    event_type         text        NOT NULL,
    occurred_at        timestamptz NOT NULL,
    recorded_at        timestamptz NOT NULL,
    actor              json        NOT NULL,
    correlation_id     uuid        NOT NULL,
    causation_id       uuid        NOT NULL,
    command_id         uuid        NOT NULL,
    summary            text        NOT NULL,
    reason             text,
    changes            json        COMPRESSION lz4 NOT NULL,
    related_request_id uuid,
    payload            json        COMPRESSION lz4 NOT NULL,
    PRIMARY KEY (request_id, stream_version)
);
CREATE INDEX history_related ON history (related_request_id) WHERE related_request_id IS NOT NULL;

-- What the trail keeps of each request between batches: the fields whose changes it shows
-- (a few hundred bytes, not the aggregate's kilobytes), read back by the next batch only; json,
-- kept as text.
CREATE TABLE shown (
    request_id uuid PRIMARY KEY,
    shown      json NOT NULL
);
"#;

impl Projection for RequestAudit {
    fn name(&self) -> &'static str {
        NAME
    }

    fn schema(&self) -> &'static str {
        SCHEMA
    }

    fn tables(&self) -> &'static [&'static str] {
        &["history", "shown"]
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
        Some(Box::new(BulkAudit {
            shown: BTreeMap::new(),
            history: CopyRows::new("history"),
            ended: CopyRows::new("shown"),
        }))
    }
}

fn staff(s: &StaffRef) -> String {
    match &s.name {
        Some(n) => format!("{} ({})", n.as_str(), s.id.as_str()),
        None => s.id.as_str().to_string(),
    }
}

/// A sentence for people and the reason, if the event has one.
fn describe(event: &E) -> (String, Option<String>) {
    match event {
        E::RequestFiled(e) => (
            format!(
                "Filed {} ({} priority) via {}: {}; owner {}",
                e.request_type.as_str().to_lowercase(),
                e.priority.as_str().to_lowercase(),
                e.channel.as_str().to_lowercase(),
                e.subject.as_str(),
                staff(&e.owner)
            ),
            None,
        ),
        E::RequestAcknowledged(e) => ("First response to the customer".into(), e.note.as_ref().map(|n| n.to_string())),
        E::RequestAssigned(e) => (
            format!(
                "Assigned to {}",
                [e.assignee.as_ref().map(staff), e.department.as_ref().map(|d| format!("department {d}"))]
                    .into_iter()
                    .flatten()
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            e.reason.as_ref().map(|r| r.to_string()),
        ),
        E::RequestTransferred(e) => (
            format!("Ownership transferred from {} to {}", staff(&e.from_owner), staff(&e.to_owner)),
            Some(e.reason.to_string()),
        ),
        E::PlanCommunicated(e) => {
            (format!("Plan told to the customer via {}", e.channel.as_str().to_lowercase()), Some(e.plan.to_string()))
        }
        E::CallbackCommitted(e) => {
            (format!("Callback promised by {}", e.due_at.to_rfc3339()), e.note.as_ref().map(|n| n.to_string()))
        }
        E::CustomerAwaited(e) => ("Waiting for the customer (SLA clocks paused)".into(), Some(e.reason.to_string())),
        E::RequestResumed(e) => {
            ("The customer is back (SLA clocks resumed)".into(), e.note.as_ref().map(|n| n.to_string()))
        }
        E::OnSiteArrivalRecorded(e) => {
            (format!("{} arrived on site", staff(&e.engineer)), e.note.as_ref().map(|n| n.to_string()))
        }
        E::CustomerUpdated(e) => {
            (format!("Customer updated via {}", e.channel.as_str().to_lowercase()), Some(e.summary.to_string()))
        }
        E::RequestEscalated(e) => (
            format!(
                "Escalated from level {} to level {} ({}){}{}",
                e.from_level,
                e.to_level,
                e.level_name,
                if e.automatic { ", automatically" } else { "" },
                e.incident.as_ref().map(|i| format!(", incident: {}", i.title)).unwrap_or_default()
            ),
            Some(e.reason.to_string()),
        ),
        E::RequestDeescalated(e) => (
            format!("De-escalated from level {} to level {} ({})", e.from_level, e.to_level, e.level_name),
            Some(e.reason.to_string()),
        ),
        E::RequestResolved(e) => (
            format!(
                "Resolved{}; root cause {}{}",
                if e.first_resolution { "" } else { " again" },
                e.root_cause,
                e.compensation
                    .as_ref()
                    .map(|c| format!(
                        "; compensation {}{}",
                        c.kind.as_str().to_lowercase(),
                        c.amount_minor
                            .map(|a| format!(
                                " {}.{:02} {}",
                                a / 100,
                                a % 100,
                                c.currency.as_ref().map(|c| c.as_str()).unwrap_or("")
                            ))
                            .unwrap_or_default()
                    ))
                    .unwrap_or_default()
            ),
            Some(e.resolution.to_string()),
        ),
        E::ReturnVisitRecorded(e) => (
            format!("Return visit: customer {}", if e.satisfied { "satisfied" } else { "not satisfied" }),
            e.reason.as_ref().or(e.note.as_ref()).map(|r| r.to_string()),
        ),
        E::RequestClosed(e) => {
            (format!("Closed ({})", e.reason.as_str().to_lowercase()), e.note.as_ref().map(|n| n.to_string()))
        }
        E::RequestReopened(e) => ("Reopened".into(), Some(e.reason.to_string())),
        E::RequestWithdrawn(e) => ("Withdrawn by the customer".into(), Some(e.reason.to_string())),
        E::DuplicateMerged(e) => (
            format!("Duplicate request {} merged in ({} reporter(s) added)", e.duplicate_id, e.reporters.len()),
            Some(e.reason.to_string()),
        ),
        E::RequestMergedInto(e) => (format!("Merged into request {}", e.survivor_id), Some(e.reason.to_string())),
        E::SlaWarningRaised(e) => (format!("SLA warning: {} due {}", e.metric.as_str(), e.due_at.to_rfc3339()), None),
        E::SlaBreached(e) => (format!("SLA breached: {} was due {}", e.metric.as_str(), e.due_at.to_rfc3339()), None),
    }
}

fn related(event: &E) -> Option<Uuid> {
    match event {
        E::DuplicateMerged(e) => Some(e.duplicate_id),
        E::RequestMergedInto(e) => Some(e.survivor_id),
        _ => None,
    }
}

/// What the trail keeps of a request between events: the fields whose changes it shows, and
/// none of the rest of the aggregate (its filing, clocks and pauses, kilobytes the trail never
/// shows). An event is applied with the domain's own rules onto a request made of these
/// fields; the rules that set them read no other field (a property test folds every kind of
/// event both ways and compares what the trail shows).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
struct Shown {
    /// Whether the filing has been seen (the aggregate keeps the whole filing).
    filed: bool,
    state: Option<RequestState>,
    owner: Option<StaffRef>,
    assignee: Option<StaffRef>,
    department: Option<Label>,
    escalation_level: u32,
    reporters: Vec<Uuid>,
    paused_since: Option<DateTime<Utc>>,
}

impl Shown {
    /// The request these fields make, the rest of the aggregate empty.
    fn request(&self) -> ServiceRequest {
        ServiceRequest {
            state: self.state,
            owner: self.owner.clone(),
            assignee: self.assignee.clone(),
            department: self.department.clone(),
            escalation_level: self.escalation_level,
            reporters: self.reporters.clone(),
            paused_since: self.paused_since,
            ..ServiceRequest::default()
        }
    }

    /// `event` applied with the domain's rules; what the trail shows before and after.
    fn apply(&mut self, event: &E) -> (Watched, Watched) {
        let mut request = self.request();
        let before = watched(self.filed, &request);
        request.apply(event);
        let filed = self.filed || request.filed.is_some();
        let after = watched(filed, &request);
        *self = Shown {
            filed,
            state: request.state,
            owner: request.owner,
            assignee: request.assignee,
            department: request.department,
            escalation_level: request.escalation_level,
            reporters: request.reporters,
            paused_since: request.paused_since,
        };
        (before, after)
    }
}

/// What the trail shows of a request: each watched field's name and value.
type Watched = Vec<(&'static str, Value)>;

/// The fields of a request whose changes the trail shows (`filed`: whether it has been filed).
fn watched(filed: bool, s: &ServiceRequest) -> Watched {
    let staff_json = |s: &Option<StaffRef>| s.as_ref().map(|s| json!(s)).unwrap_or(Value::Null);
    vec![
        ("state", if filed { json!(s.state().as_str()) } else { Value::Null }),
        ("owner", staff_json(&s.owner)),
        ("assignee", staff_json(&s.assignee)),
        ("department", s.department.as_ref().map(|d| json!(d)).unwrap_or(Value::Null)),
        ("escalationLevel", json!(s.escalation_level)),
        ("reporters", json!(s.reporters.len())),
        ("slaPaused", json!(s.paused_since.is_some())),
    ]
}

/// A `history` row, named as its columns (for `COPY`).
#[derive(serde::Serialize)]
struct HistoryRow<'a> {
    request_id: Uuid,
    stream_version: i64,
    global_position: i64,
    event_id: Uuid,
    event_type: &'a str,
    occurred_at: DateTime<Utc>,
    recorded_at: DateTime<Utc>,
    actor: AsJson<&'a Actor>,
    correlation_id: Uuid,
    causation_id: Uuid,
    command_id: Uuid,
    summary: String,
    reason: Option<String>,
    changes: AsJson<Value>,
    related_request_id: Option<Uuid>,
    payload: AsJson<&'a Value>,
}

/// Applies a run of events: what the trail keeps of the requests it touches is read in one
/// query, each event is applied onto its request in memory (the trail row records what
/// changed), and the trail rows and the changed requests are written with one statement each.
async fn apply_many(conn: &mut PgConnection, events: &[&RecordedEvent]) -> Result<(), ProjectionError> {
    let (decoded, ids) = crate::service_requests::request_events(events)?;
    if decoded.is_empty() {
        return Ok(());
    }
    let mut shown: BTreeMap<Uuid, Shown> = BTreeMap::new();
    for row in
        sqlx::query("SELECT request_id, shown FROM shown WHERE request_id = ANY($1) ORDER BY request_id FOR UPDATE")
            .bind(&ids)
            .fetch_all(&mut *conn)
            .await?
    {
        shown.insert(row.try_get(0)?, row.try_get::<Json<Shown>, _>(1)?.0);
    }
    let rows: Vec<HistoryRow<'_>> = decoded.iter().map(|(e, event)| entry(&mut shown, e, event)).collect();
    CopyRows::new("history").upsert(conn, rows.iter(), "").await?;
    let changed = ids.iter().map(|id| ShownRow { request_id: *id, shown: AsJson(&shown[id]) });
    CopyRows::new("shown").upsert(conn, changed, "ON CONFLICT (request_id) DO UPDATE SET shown = EXCLUDED.shown").await
}

/// One event onto what the trail keeps of its request: its trail entry, with what it changed.
fn entry<'e>(shown: &mut BTreeMap<Uuid, Shown>, e: &'e RecordedEvent, event: &E) -> HistoryRow<'e> {
    let (before, after) = shown.entry(e.stream_id).or_default().apply(event);
    let mut changes = Map::new();
    for ((field, old), (_, new)) in before.into_iter().zip(after) {
        if old != new {
            changes.insert(field.to_string(), json!({"from": old, "to": new}));
        }
    }
    let (summary, reason) = describe(event);
    HistoryRow {
        request_id: e.stream_id,
        stream_version: e.stream_version,
        global_position: e.global_position,
        event_id: e.event_id,
        event_type: &e.event_type,
        occurred_at: e.occurred_at,
        recorded_at: e.recorded_at,
        actor: AsJson(&e.actor),
        correlation_id: e.correlation_id,
        causation_id: e.causation_id,
        command_id: e.command_id,
        summary,
        reason,
        changes: AsJson(Value::Object(changes)),
        related_request_id: related(event),
        payload: AsJson(&e.payload),
    }
}

/// A `shown` row.
#[derive(serde::Serialize)]
struct ShownRow<'a> {
    request_id: Uuid,
    shown: AsJson<&'a Shown>,
}

/// A rebuild's fold: what the trail keeps of every request in memory; the trail entries are
/// streamed out as they are made (they never change), the kept fields once the request's stream
/// has ended, the rest at the end.
struct BulkAudit {
    shown: BTreeMap<Uuid, Shown>,
    history: CopyRows,
    ended: CopyRows,
}

impl BulkFold for BulkAudit {
    fn fold(&mut self, event: &RecordedEvent) -> Result<(), ProjectionError> {
        if event.stream_type != ServiceRequest::STREAM_TYPE {
            return Ok(());
        }
        let decoded: E = event.decode()?;
        self.history.push(&entry(&mut self.shown, event, &decoded))
    }

    fn ended(&mut self, stream: Uuid) -> Result<(), ProjectionError> {
        match self.shown.remove(&stream) {
            Some(shown) => self.ended.push(&ShownRow { request_id: stream, shown: AsJson(&shown) }),
            None => Ok(()),
        }
    }

    fn streamed(&mut self) -> Vec<Streamed> {
        [self.history.take(), self.ended.take()].into_iter().flatten().collect()
    }

    fn write<'a>(&'a mut self, conn: &'a mut PgConnection) -> BoxFuture<'a, Result<(), ProjectionError>> {
        Box::pin(async move {
            self.history.send(conn).await?;
            let rows = self.shown.iter().map(|(id, shown)| ShownRow { request_id: *id, shown: AsJson(shown) });
            self.ended.write_all(conn, rows).await
        })
    }
}

/// One entry of a request's history.
#[derive(Debug, Clone, PartialEq)]
pub struct HistoryEntry {
    /// Position in the request's stream (1, 2, …).
    pub stream_version: i64,
    /// Position in the global log.
    pub global_position: i64,
    /// Event id.
    pub event_id: Uuid,
    /// Event type.
    pub event_type: String,
    /// Business time.
    pub occurred_at: DateTime<Utc>,
    /// System time.
    pub recorded_at: DateTime<Utc>,
    /// Who.
    pub actor: Actor,
    /// Conversation.
    pub correlation_id: Uuid,
    /// Cause.
    pub causation_id: Uuid,
    /// Command.
    pub command_id: Uuid,
    /// A sentence for people.
    pub summary: String,
    /// Why, when the step has a reason.
    pub reason: Option<String>,
    /// What changed: `{field: {from, to}}`.
    pub changes: Value,
    /// The other request of a merge.
    pub related_request_id: Option<Uuid>,
    /// The event payload.
    pub payload: Value,
}

/// A request's whole history, in order.
pub async fn history(conn: &mut PgConnection, id: Uuid) -> Result<Vec<HistoryEntry>, ProjectionError> {
    let rows = sqlx::query(
        "SELECT stream_version, global_position, event_id, event_type, occurred_at, recorded_at, actor, correlation_id, \
           causation_id, command_id, summary, reason, changes, related_request_id, payload \
         FROM history WHERE request_id = $1 ORDER BY stream_version",
    )
    .bind(id)
    .fetch_all(conn)
    .await?;
    rows.iter()
        .map(|r| {
            let Json(actor): Json<Actor> = r.try_get("actor")?;
            Ok(HistoryEntry {
                stream_version: r.try_get("stream_version")?,
                global_position: r.try_get("global_position")?,
                event_id: r.try_get("event_id")?,
                event_type: r.try_get("event_type")?,
                occurred_at: r.try_get("occurred_at")?,
                recorded_at: r.try_get("recorded_at")?,
                actor,
                correlation_id: r.try_get("correlation_id")?,
                causation_id: r.try_get("causation_id")?,
                command_id: r.try_get("command_id")?,
                summary: r.try_get("summary")?,
                reason: r.try_get("reason")?,
                changes: r.try_get("changes")?,
                related_request_id: r.try_get("related_request_id")?,
                payload: r.try_get("payload")?,
            })
        })
        .collect::<Result<_, sqlx::Error>>()
        .map_err(Into::into)
}

#[cfg(test)]
mod tests {
    use kefu_domain::service_request::examples::all_events;
    use proptest::prelude::*;

    use super::*;

    /// The trail shows the same changes whether each event is applied onto the whole aggregate
    /// or onto the few fields the trail keeps.
    fn same_as_the_whole_aggregate(events: &[E]) {
        let mut whole = ServiceRequest::default();
        let mut shown = Shown::default();
        for (i, event) in events.iter().enumerate() {
            let before = watched(whole.filed.is_some(), &whole);
            whole.apply(event);
            let after = watched(whole.filed.is_some(), &whole);
            assert_eq!(shown.apply(event), (before, after), "after event {i} ({event:?})");
        }
    }

    #[test]
    fn every_kind_of_event_in_the_examples_order_shows_what_the_whole_aggregate_shows() {
        let events = all_events();
        assert!(events.len() >= 20, "the examples cover every request event");
        same_as_the_whole_aggregate(&events);
    }

    #[test]
    fn what_the_trail_keeps_survives_its_json() {
        let mut shown = Shown::default();
        for event in all_events() {
            shown.apply(&event);
        }
        assert!(shown.filed && !shown.reporters.is_empty());
        let text = serde_json::to_string(&shown).unwrap();
        assert!(text.len() < 1_000, "a request's kept fields are small: {text}");
        assert_eq!(serde_json::from_str::<Shown>(&text).unwrap(), shown);
    }

    proptest! {
        #[test]
        fn any_sequence_of_events_shows_what_the_whole_aggregate_shows(
            picks in prop::collection::vec(0usize..1_000, 0..60)
        ) {
            let examples = all_events();
            let events: Vec<E> = picks.iter().map(|i| examples[i % examples.len()].clone()).collect();
            same_as_the_whole_aggregate(&events);
        }
    }
}
