//! # kefu-projections
//!
//! Read models built from the Kafka log into PostgreSQL.
//!
//! - [`Projection`]: what a read model provides — its table layout and how it applies one
//!   event inside a transaction;
//! - [`registry`]: generations. Every projection lives in a schema per generation
//!   (`p_<name>_g<N>`); one generation is *active* (serves queries), a new one can be
//!   *building* from the start of the log while the active one keeps serving, then switched;
//! - [`apply`]: applies a batch of records and stores the consumed offsets in the same
//!   transaction, with a per-stream version guard so replays and rebalances apply nothing
//!   twice, and poison events parking only their own stream;
//! - [`runner`]: the Kafka consumer (a consumer group per generation; partitions are the unit
//!   of parallelism) that seeks to the stored offsets on assignment, and `rebuild`;
//! - [`progress`]: how far a projection has got in terms of global positions (read your
//!   writes), its lag, and its dead letters;
//! - read models: [`customer360`] (the customer 360 view), [`service_requests`] (the
//!   complaint backlog, request pages, SLA clocks and compliance), [`request_audit`] (every
//!   request's audit trail), [`satisfaction`] (surveys, answers, follow-ups, alerts and the
//!   satisfaction indices).

use futures::future::BoxFuture;
use kefu_app::{RecordedEvent, StoreError};
use sqlx::PgConnection;

pub mod apply;
pub mod as_of;
pub mod bulk;
mod copy;
pub mod customer360;
pub mod progress;
pub mod reads;
pub mod registry;
pub mod request_audit;
pub mod runner;
pub mod satisfaction;
pub mod service_requests;
pub mod verify;

pub use reads::ReadModels;

/// Why applying or reading a projection failed.
#[derive(Debug, thiserror::Error)]
pub enum ProjectionError {
    /// The database or the broker is unreachable; the batch will be retried.
    #[error("unavailable: {0}")]
    Unavailable(String),
    /// This event cannot be applied (bad payload, violated constraint, bug): its stream is
    /// parked, others continue.
    #[error("cannot apply event: {0}")]
    Poison(String),
    /// Anything else (misconfiguration, unknown projection…).
    #[error("{0}")]
    Other(String),
}

impl From<sqlx::Error> for ProjectionError {
    fn from(e: sqlx::Error) -> Self {
        match kefu_store::db_error(e) {
            StoreError::Unavailable(m) => ProjectionError::Unavailable(m),
            other => ProjectionError::Poison(other.to_string()),
        }
    }
}

impl From<StoreError> for ProjectionError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Unavailable(m) => ProjectionError::Unavailable(m),
            other => ProjectionError::Other(other.to_string()),
        }
    }
}

impl From<serde_json::Error> for ProjectionError {
    fn from(e: serde_json::Error) -> Self {
        ProjectionError::Poison(format!("payload does not decode: {e}"))
    }
}

/// A read model.
///
/// `apply` runs inside the batch transaction with `search_path` set to the generation's
/// schema, so its SQL names tables without a schema. It must be deterministic: a rebuild from
/// the start of the log must produce the same rows. It is called once per event in log order
/// (per partition), never twice for the same stream version.
pub trait Projection: Send + Sync + 'static {
    /// Stable name, e.g. `customer360` (lower case, digits, underscores).
    fn name(&self) -> &'static str;

    /// DDL creating the read model's tables in the current schema. Changing it changes the
    /// layout fingerprint, and a new generation is built from the log.
    fn schema(&self) -> &'static str;

    /// The tables, in a stable order (used to compare generations).
    fn tables(&self) -> &'static [&'static str];

    /// Whether the read model reads events of this stream and event type. Events it does not
    /// read still pass the version guard and count as applied, but their payload is never
    /// decoded and `apply` never sees them, so `apply` must do nothing for them. Default: all.
    fn reads(&self, stream_type: &str, event_type: &str) -> bool {
        let _ = (stream_type, event_type);
        true
    }

    /// Applies one event.
    fn apply<'a>(
        &'a self,
        conn: &'a mut PgConnection,
        event: &'a RecordedEvent,
    ) -> BoxFuture<'a, Result<(), ProjectionError>>;

    /// Applies a run of events at once, in log order, each already past the version guard. A
    /// read model that folds in memory reads the rows the run touches, folds every event onto
    /// them and writes each changed row back once; the default applies the events one by one.
    /// The result must equal applying them one by one: when the run fails, the batch is
    /// applied again event by event (to park only the failing stream).
    fn apply_all<'a>(
        &'a self,
        conn: &'a mut PgConnection,
        events: &'a [&'a RecordedEvent],
    ) -> BoxFuture<'a, Result<(), ProjectionError>> {
        Box::pin(async move {
            for e in events {
                self.apply(conn, e).await?;
            }
            Ok(())
        })
    }

    /// The read model's fold of a whole log in memory, which rebuilds use to write a new
    /// generation once ([`bulk`]); `None` (the default) rebuilds batch by batch.
    fn bulk(&self) -> Option<Box<dyn bulk::BulkFold>> {
        None
    }
}

/// Every read model kefu has.
pub fn all() -> Vec<std::sync::Arc<dyn Projection>> {
    vec![
        std::sync::Arc::new(customer360::Customer360),
        std::sync::Arc::new(service_requests::ServiceRequests),
        std::sync::Arc::new(request_audit::RequestAudit),
        std::sync::Arc::new(satisfaction::Satisfaction),
    ]
}

/// Finds a projection by name.
pub fn by_name(name: &str) -> Option<std::sync::Arc<dyn Projection>> {
    all().into_iter().find(|p| p.name() == name)
}

/// A read-only transaction on the active generation of projection `name`, with its schema on
/// the search path. Fails as unavailable while no generation has been built.
pub async fn read(
    pool: &sqlx::PgPool,
    name: &str,
) -> Result<sqlx::Transaction<'static, sqlx::Postgres>, ProjectionError> {
    let generation = registry::active(pool, name)
        .await?
        .ok_or_else(|| ProjectionError::Unavailable(format!("the {name} read model has not been built yet")))?;
    let mut tx = pool.begin().await?;
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
        "SET TRANSACTION READ ONLY; SET LOCAL search_path TO {}",
        generation.schema
    )))
    .execute(&mut *tx)
    .await?;
    Ok(tx)
}

/// Applies the projection bookkeeping migrations (`projections` schema).
pub async fn migrate(pool: &sqlx::PgPool) -> Result<(), StoreError> {
    kefu_store::migrate::embedded(
        "projections",
        &[
            (1, "projection bookkeeping", include_str!("../migrations/0001_projections.sql")),
            (2, "fold snapshots", include_str!("../migrations/0002_snapshots.sql")),
        ],
    )
    .run(pool)
    .await
    .map_err(|e| match e {
        sqlx::migrate::MigrateError::Execute(e) => kefu_store::db_error(e),
        other => StoreError::Database(format!("projection migration failed: {other}")),
    })
}
