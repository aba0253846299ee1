//! A request as a read finds it: the listed columns typed, the folded aggregate decoded only
//! when a reader asks for something only it holds.
//!
//! A request's aggregate is a few kilobytes of JSON (stored as `state_json`, with its filing,
//! most of it, in `filing`); lists and the customer 360 show columns the projection already keeps beside it
//! (subject, state, priority, owner, deadlines…). Decoding every row's aggregate was most of
//! the gateway's time for a backlog page (`docs/benchmarks.md`), so reads keep its text and
//! decode it at most once, on first use.

use std::sync::{Arc, OnceLock};

use chrono::{DateTime, Utc};
use kefu_domain::{
    service_request::ServiceRequest,
    vocab::{Channel, Priority, RequestType, ValueTier},
};
use sqlx::{Row, postgres::PgRow};
use uuid::Uuid;

use super::{RequestFacts, RequestRow, RequestView, facts_from, vocab_column};
use crate::ProjectionError;

/// The columns of a request that lists show, as the projection derives them from the aggregate.
#[derive(Debug, Clone, PartialEq)]
pub struct Listed {
    /// The request's id.
    pub request_id: Uuid,
    /// Who filed it.
    pub customer_id: Uuid,
    /// Inquiry, complaint…
    pub request_type: RequestType,
    /// Category.
    pub category: String,
    /// Priority.
    pub priority: Priority,
    /// Where it came in.
    pub channel: Channel,
    /// Subject.
    pub subject: String,
    /// Not closed, withdrawn or merged.
    pub live: bool,
    /// The owner (id, name when recorded).
    pub owner: Option<(String, Option<String>)>,
    /// Who works on it now.
    pub assignee: Option<(String, Option<String>)>,
    /// Responsible department.
    pub department: Option<String>,
    /// Escalation level (0 = agent).
    pub escalation_level: i32,
    /// The customer's tier at filing.
    pub customer_tier: Option<ValueTier>,
    /// Id in another system.
    pub external_ref: Option<String>,
    /// When it was filed.
    pub filed_at: DateTime<Utc>,
    /// The first resolution.
    pub first_resolved_at: Option<DateTime<Utc>>,
    /// The latest resolution.
    pub last_resolved_at: Option<DateTime<Utc>>,
    /// The request it was merged into.
    pub merged_into: Option<Uuid>,
    /// Waiting for the customer.
    pub paused: bool,
    /// The promised callback time, while pending.
    pub callback_due_at: Option<DateTime<Utc>>,
}

impl Listed {
    /// The columns of a folded request (`None` before its filing): those of the row the
    /// projection writes ([`RequestRow::of`]), the vocabularies typed.
    pub fn of(view: &RequestView) -> Option<Listed> {
        let filed = view.state.filed.as_ref()?;
        let row = RequestRow::of(filed.request_id, view, filed, filed.filed_at);
        let owned = |s: Option<&str>| s.map(str::to_string);
        let staff = |id: Option<&str>, name: Option<&str>| id.map(|id| (id.to_string(), owned(name)));
        Some(Listed {
            request_id: row.request_id,
            customer_id: row.customer_id,
            request_type: filed.request_type,
            category: row.category.to_string(),
            priority: filed.priority,
            channel: filed.channel,
            subject: row.subject.to_string(),
            live: row.live,
            owner: staff(row.owner_id, row.owner_name),
            assignee: staff(row.assignee_id, row.assignee_name),
            department: owned(row.department),
            escalation_level: row.escalation_level,
            customer_tier: filed.customer_tier,
            external_ref: owned(row.external_ref),
            filed_at: row.filed_at,
            first_resolved_at: row.first_resolved_at,
            last_resolved_at: row.last_resolved_at,
            merged_into: row.merged_into,
            paused: row.paused,
            callback_due_at: row.callback_due_at,
        })
    }

    fn from_row(row: &PgRow) -> Result<Listed, sqlx::Error> {
        let staff = |id: &str, name: &str| -> Result<Option<(String, Option<String>)>, sqlx::Error> {
            let id: Option<String> = row.try_get(id)?;
            Ok(match id {
                Some(id) => Some((id, row.try_get(name)?)),
                None => None,
            })
        };
        let tier: Option<String> = row.try_get("customer_tier")?;
        Ok(Listed {
            request_id: row.try_get("request_id")?,
            customer_id: row.try_get("customer_id")?,
            request_type: vocab_column(row, "request_type")?,
            category: row.try_get("category")?,
            priority: vocab_column(row, "priority")?,
            channel: vocab_column(row, "channel")?,
            subject: row.try_get("subject")?,
            live: row.try_get("live")?,
            owner: staff("owner_id", "owner_name")?,
            assignee: staff("assignee_id", "assignee_name")?,
            department: row.try_get("department")?,
            escalation_level: row.try_get("escalation_level")?,
            customer_tier: match tier {
                Some(_) => Some(vocab_column(row, "customer_tier")?),
                None => None,
            },
            external_ref: row.try_get("external_ref")?,
            filed_at: row.try_get("filed_at")?,
            first_resolved_at: row.try_get("first_resolved_at")?,
            last_resolved_at: row.try_get("last_resolved_at")?,
            merged_into: row.try_get("merged_into")?,
            paused: row.try_get("paused")?,
            callback_due_at: row.try_get("callback_due_at")?,
        })
    }
}

/// A request's folded aggregate: the stored JSON, decoded on first use (at most once, shared by
/// every clone).
#[derive(Clone)]
pub struct LazyAggregate(Arc<Lazy>);

struct Lazy {
    request_id: Uuid,
    /// The stored JSON: the aggregate without its filing, and the filing (`None`: the read left
    /// them in the database).
    text: Option<(String, String)>,
    decoded: OnceLock<Result<ServiceRequest, String>>,
}

impl LazyAggregate {
    fn stored(request_id: Uuid, text: Option<(String, String)>) -> Self {
        LazyAggregate(Arc::new(Lazy { request_id, text, decoded: OnceLock::new() }))
    }

    fn folded(request_id: Uuid, state: ServiceRequest) -> Self {
        LazyAggregate(Arc::new(Lazy { request_id, text: None, decoded: OnceLock::from(Ok(state)) }))
    }

    /// Whether the read brought the aggregate along ([`super::Aggregates::Read`]).
    pub fn is_read(&self) -> bool {
        self.0.text.is_some() || matches!(self.0.decoded.get(), Some(Ok(_)))
    }

    /// The aggregate; an error names the request whose stored aggregate does not decode, or
    /// says it was not read.
    pub fn get(&self) -> Result<&ServiceRequest, ProjectionError> {
        let lazy = &*self.0;
        let decoded = lazy.decoded.get_or_init(|| match &lazy.text {
            Some((state, filing)) => aggregate(state, filing),
            None => Err("was not read (the list read only the columns)".to_string()),
        });
        decoded
            .as_ref()
            .map_err(|e| ProjectionError::Other(format!("the stored aggregate of request {} {e}", lazy.request_id)))
    }

    /// Whether it has been decoded (or was folded in memory).
    pub fn is_decoded(&self) -> bool {
        matches!(self.0.decoded.get(), Some(Ok(_)))
    }
}

impl std::fmt::Debug for LazyAggregate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0.decoded.get() {
            Some(Ok(state)) => state.fmt(f),
            _ => match &self.0.text {
                Some((state, filing)) => {
                    write!(f, "Aggregate({} bytes of JSON, not decoded)", state.len() + filing.len())
                }
                None => f.write_str("Aggregate(not read)"),
            },
        }
    }
}

/// A stored aggregate from its two columns: the aggregate without its filing, and the filing.
pub(super) fn aggregate(state: &str, filing: &str) -> Result<ServiceRequest, String> {
    let mut aggregate: ServiceRequest = serde_json::from_str(state).map_err(|e| format!("does not decode: {e}"))?;
    aggregate.filed =
        Some(serde_json::from_str(filing).map_err(|e| format!("has a filing that does not decode: {e}"))?);
    Ok(aggregate)
}

/// A request as reads find it: its listed columns and derived facts, and its aggregate.
#[derive(Debug, Clone)]
pub struct StoredRequest {
    /// The listed columns.
    pub listed: Listed,
    /// What the read model derives beside the aggregate.
    pub facts: RequestFacts,
    /// The folded aggregate, for what only it holds (clocks, filing details, reporters…).
    pub aggregate: LazyAggregate,
}

impl StoredRequest {
    /// A row of `requests` (selected with the read model's column list).
    pub(super) fn from_row(row: &PgRow) -> Result<StoredRequest, sqlx::Error> {
        let listed = Listed::from_row(row)?;
        let state: Option<String> = row.try_get("state_json")?;
        let filing: Option<String> = row.try_get("filing")?;
        let aggregate = LazyAggregate::stored(listed.request_id, state.zip(filing));
        Ok(StoredRequest { facts: facts_from(row)?, aggregate, listed })
    }

    /// A request folded in memory (`serviceRequest(asOf:)`); `None` before its filing.
    pub fn folded(view: RequestView) -> Option<StoredRequest> {
        let listed = Listed::of(&view)?;
        Some(StoredRequest {
            aggregate: LazyAggregate::folded(listed.request_id, view.state),
            facts: view.facts,
            listed,
        })
    }
}

/// Equal when they show the same request: the same columns, facts and aggregate.
impl PartialEq for StoredRequest {
    fn eq(&self, other: &Self) -> bool {
        self.listed == other.listed
            && self.facts == other.facts
            && match (self.aggregate.get(), other.aggregate.get()) {
                (Ok(a), Ok(b)) => a == b,
                _ => false,
            }
    }
}
