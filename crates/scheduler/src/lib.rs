//! # kefu-scheduler
//!
//! The durable SLA scheduler. Every request's SLA deadlines are recorded in its events and
//! kept by the `service_requests` read model; the scheduler looks there for clocks whose
//! warning or deadline has passed and sends the request a `CheckSla` command.
//!
//! Exactly once, across restarts and any number of instances: the decision is the request
//! aggregate's. It records each warning and breach once per clock and refuses nothing else;
//! two schedulers firing at the same moment race on the stream's version, the loser decides
//! again on fresh state and finds nothing left to record. The read model only says *when* to
//! look, never *what* to record (it may lag; a late check still records the breach, with
//! its deadline in the payload). Nothing is kept in memory between rounds, so a restart
//! resumes where the events are.

use std::{future::Future, pin::pin, time::Duration};

use kefu_app::{Actor, AppError, CommandMeta, CommandService};
use kefu_domain::service_request::ServiceRequestCommand;
use kefu_projections::service_requests;
use sqlx::PgPool;

/// Scheduler tuning.
#[derive(Debug, Clone)]
pub struct SchedulerOptions {
    /// How often to look for due clocks.
    pub interval: Duration,
    /// Most requests checked per round.
    pub batch: i64,
}

impl Default for SchedulerOptions {
    fn default() -> Self {
        SchedulerOptions { interval: Duration::from_secs(1), batch: 200 }
    }
}

/// What one round did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Round {
    /// Requests checked.
    pub checked: usize,
    /// Of which something was recorded.
    pub recorded: usize,
    /// Checks that failed (retried next round).
    pub failed: usize,
}

/// The scheduler.
pub struct SlaScheduler {
    pool: PgPool,
    commands: CommandService,
    options: SchedulerOptions,
}

impl SlaScheduler {
    /// A scheduler reading the read models in `pool` and writing through `commands`.
    pub fn new(pool: PgPool, commands: CommandService, options: SchedulerOptions) -> Self {
        SlaScheduler { pool, commands, options }
    }

    /// Checks every request with a due clock once.
    pub async fn round(&self) -> Result<Round, AppError> {
        let now = self.commands.now();
        let ids = {
            let mut tx = match kefu_projections::read(&self.pool, service_requests::NAME).await {
                Ok(tx) => tx,
                // Nothing built yet: nothing is due.
                Err(kefu_projections::ProjectionError::Unavailable(m)) if m.contains("not been built") => {
                    return Ok(Round::default());
                }
                Err(e) => return Err(AppError::Unavailable(e.to_string())),
            };
            service_requests::due_for_check(&mut tx, now, self.options.batch)
                .await
                .map_err(|e| AppError::Unavailable(e.to_string()))?
        };
        let mut round = Round::default();
        for id in ids {
            round.checked += 1;
            let meta = CommandMeta::by(Actor::system("sla-scheduler"));
            let command = ServiceRequestCommand::CheckSla { now, levels: vec![] };
            match self.commands.request(id, command, meta).await {
                Ok(outcome) if outcome.event_count > 0 => {
                    round.recorded += 1;
                    tracing::info!(request = %id, events = outcome.event_count, "SLA check recorded warnings or breaches");
                }
                Ok(_) => {}
                Err(e) => {
                    round.failed += 1;
                    tracing::warn!(request = %id, error = %e, "SLA check failed; retrying next round");
                }
            }
        }
        Ok(round)
    }

    /// Runs rounds until `shutdown` completes.
    pub async fn run(self, shutdown: impl Future<Output = ()>) -> Result<(), AppError> {
        let mut shutdown = pin!(shutdown);
        loop {
            if let Err(e) = self.round().await {
                tracing::warn!(error = %e, "SLA scheduler round failed");
            }
            tokio::select! {
                _ = &mut shutdown => return Ok(()),
                _ = tokio::time::sleep(self.options.interval) => {}
            }
        }
    }
}
