//! Read-your-writes: waiting until a projection has applied a position, woken by the
//! projectors' notifications instead of polling hard.

use std::{sync::Arc, time::Duration};

use kefu_projections::{ProjectionError, apply::APPLIED_CHANNEL, progress, registry};
use sqlx::{PgPool, postgres::PgListener};
use tokio::sync::Notify;

/// Shared by all requests; one database listener per gateway.
#[derive(Clone)]
pub struct Waiter {
    pool: PgPool,
    notify: Arc<Notify>,
}

impl Waiter {
    /// Starts listening for projector notifications (reconnecting as needed).
    pub fn start(pool: PgPool) -> Self {
        let notify = Arc::new(Notify::new());
        let waiter = Waiter { pool: pool.clone(), notify: notify.clone() };
        tokio::spawn(async move {
            loop {
                match PgListener::connect_with(&pool).await {
                    Ok(mut listener) => {
                        if listener.listen(APPLIED_CHANNEL).await.is_ok() {
                            while listener.recv().await.is_ok() {
                                notify.notify_waiters();
                            }
                        }
                    }
                    Err(e) => {
                        tracing::debug!(error = %e, "projection listener cannot connect; retrying")
                    }
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        });
        waiter
    }

    /// The position through which `projection` has applied every event.
    pub async fn applied_through(&self, projection: &str) -> Result<i64, ProjectionError> {
        match registry::active(&self.pool, projection).await? {
            Some(g) => Ok(progress::applied_through(&self.pool, &g).await?),
            None => Ok(0),
        }
    }

    /// Waits up to `timeout` for `projection` to apply `position`; returns whether it did and
    /// how far it got.
    pub async fn wait(
        &self,
        projection: &str,
        position: i64,
        timeout: Duration,
    ) -> Result<(bool, i64), ProjectionError> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let notified = self.notify.notified();
            let through = self.applied_through(projection).await?;
            if through >= position {
                return Ok((true, through));
            }
            let now = tokio::time::Instant::now();
            if now >= deadline {
                return Ok((false, through));
            }
            // Notifications wake us at once; the timer covers a lost listener.
            let _ = tokio::time::timeout((deadline - now).min(Duration::from_millis(250)), notified).await;
        }
    }
}
