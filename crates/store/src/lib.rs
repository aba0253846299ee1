//! # kefu-store
//!
//! The PostgreSQL write side:
//! - [`PgEventStore`]: the `EventStore` port — atomic appends at an expected version, the
//!   command journal, dense commit-ordered global positions (see `migrations/0001`);
//! - [`relay_state`]: what the relay reads (the log after a position) and writes (its cursor
//!   and per-partition offsets), and its leadership lock;
//! - [`history`]: filtered pages of the log and causal trees, for export and tracing;
//! - [`writer`]: group commit — many appends in one transaction, each with its own outcome;
//! - [`integrity`]: the hash chain written with every append, anchors, verification;
//! - [`migrate`]: embedded migrations, each crate with its own history table;
//! - [`connect`]: a lazily connecting pool, so processes start while the database is down
//!   and recover when it returns.

use std::time::Duration;

use kefu_app::StoreError;
use sqlx::{PgPool, postgres::PgPoolOptions};

pub mod history;
pub mod integrity;
pub mod migrate;
mod pg;
pub mod relay_state;
pub mod writer;

pub use pg::{APPEND_CHANNEL, PgEventStore};
pub use writer::{WriterOptions, WriterStats};

/// Opens a pool that connects on first use; `acquire_timeout` bounds how long a request waits
/// for the database before failing as unavailable.
pub fn connect(url: &str, max_connections: u32, acquire_timeout: Duration) -> Result<PgPool, StoreError> {
    PgPoolOptions::new()
        .max_connections(max_connections)
        .min_connections(0)
        .acquire_timeout(acquire_timeout)
        .connect_lazy(url)
        .map_err(|e| StoreError::Unavailable(format!("bad database URL: {e}")))
}

/// Translates a database error into the port's terms: connection trouble is `Unavailable`
/// (retry later), anything else is a `Database` error (retrying will not help).
pub fn db_error(e: sqlx::Error) -> StoreError {
    match &e {
        sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::Protocol(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed => StoreError::Unavailable(e.to_string()),
        sqlx::Error::Database(db) => {
            let code = db.code().map(|c| c.to_string()).unwrap_or_default();
            // 08: connection exception, 53: insufficient resources, 57P: operator intervention
            // (shutdown), 40001/40P01: serialization failure / deadlock (safe to retry).
            if code.starts_with("08")
                || code.starts_with("53")
                || code.starts_with("57P")
                || code == "40001"
                || code == "40P01"
            {
                StoreError::Unavailable(e.to_string())
            } else {
                StoreError::Database(e.to_string())
            }
        }
        _ => StoreError::Database(e.to_string()),
    }
}
