//! # kefu-scheduler
//!
//! The durable scheduler: what happens because time passes.
//!
//! - **SLA**: every request's deadlines are recorded in its events and kept by the
//!   `service_requests` read model; the scheduler looks there for clocks whose warning or
//!   deadline has passed and sends the request a `CheckSla` command.
//! - **Surveys**: reminders and expiry, from the `satisfaction` read model, as `Remind` and
//!   `Expire` commands.
//! - **Satisfaction alerts**: once a week or month is over (in the rule's time zone) and the
//!   satisfaction read model has caught up, each alert rule compares the period with the one
//!   before and records the review and its drops on the monitor stream.
//!
//! Exactly once, across restarts and any number of instances: the decision is always the
//! aggregate's. A request records each warning and breach once per clock, a survey each
//! reminder once, the monitor each period once; two schedulers firing at the same moment race
//! on the stream's version, and the loser decides again on fresh state and finds nothing left
//! to record. The read models only say *when* to look, never *what* to record (they may lag:
//! a late check still records the breach, with its deadline in the payload). Nothing is kept
//! in memory between rounds, so a restart resumes where the events are.

use std::{future::Future, pin::pin, time::Duration};

use chrono::{DateTime, Utc};
use kefu_app::{Actor, AppError, CommandMeta, CommandService};
use kefu_domain::{
    satisfaction::Period,
    satisfaction_config::AlertRule,
    satisfaction_monitor::{IndexDrop, SatisfactionMonitorCommand},
    service_request::ServiceRequestCommand,
    survey::SurveyCommand,
    values::Label,
};
use kefu_projections::{
    ProjectionError, progress, registry,
    satisfaction::{self, IndexDimension, IndexFilter},
    service_requests,
};
use sqlx::PgPool;

/// Scheduler tuning.
#[derive(Debug, Clone)]
pub struct SchedulerOptions {
    /// How often to look for due work.
    pub interval: Duration,
    /// Most requests (and surveys) checked per round.
    pub batch: i64,
    /// Anchor the log when this many events were recorded since the last anchor…
    pub anchor_every: i64,
    /// …or when the last anchor is this old and anything was recorded since.
    pub anchor_age: Duration,
}

impl Default for SchedulerOptions {
    fn default() -> Self {
        SchedulerOptions {
            interval: Duration::from_secs(1),
            batch: 200,
            anchor_every: 1000,
            anchor_age: Duration::from_secs(600),
        }
    }
}

/// What one round did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Round {
    /// Requests checked.
    pub checked: usize,
    /// Of which something was recorded.
    pub recorded: usize,
    /// Surveys reminded or expired.
    pub surveys: usize,
    /// Satisfaction periods reviewed.
    pub reviews: usize,
    /// Anchors taken over the log.
    pub anchors: usize,
    /// Checks that failed (retried next round).
    pub failed: usize,
}

/// The scheduler.
pub struct Scheduler {
    pool: PgPool,
    commands: CommandService,
    options: SchedulerOptions,
}

fn unavailable(e: ProjectionError) -> AppError {
    AppError::Unavailable(e.to_string())
}

/// A read transaction on a read model, or `None` while it has not been built.
async fn read(pool: &PgPool, name: &str) -> Result<Option<sqlx::Transaction<'static, sqlx::Postgres>>, AppError> {
    match kefu_projections::read(pool, name).await {
        Ok(tx) => Ok(Some(tx)),
        Err(ProjectionError::Unavailable(m)) if m.contains("not been built") => Ok(None),
        Err(e) => Err(unavailable(e)),
    }
}

impl Scheduler {
    /// A scheduler reading the read models in `pool` and writing through `commands`.
    pub fn new(pool: PgPool, commands: CommandService, options: SchedulerOptions) -> Self {
        Scheduler { pool, commands, options }
    }

    /// Does everything due now once.
    pub async fn round(&self) -> Result<Round, AppError> {
        let now = self.commands.now();
        let mut round = Round::default();
        self.sla(now, &mut round).await?;
        self.surveys(now, &mut round).await?;
        self.reviews(now, &mut round).await?;
        let age = chrono::Duration::from_std(self.options.anchor_age).unwrap_or(chrono::Duration::MAX);
        match kefu_store::integrity::anchor_if_due(&self.pool, self.options.anchor_every, age).await {
            Ok(Some(a)) => {
                round.anchors += 1;
                tracing::info!(position = a.position, hash = %a.hash, "log anchored");
            }
            Ok(None) => {}
            Err(e) => {
                round.failed += 1;
                tracing::warn!(error = %e, "anchoring failed; retrying next round");
            }
        }
        Ok(round)
    }

    async fn sla(&self, now: DateTime<Utc>, round: &mut Round) -> Result<(), AppError> {
        let ids = match read(&self.pool, service_requests::NAME).await? {
            Some(mut tx) => {
                service_requests::due_for_check(&mut tx, now, self.options.batch).await.map_err(unavailable)?
            }
            None => return Ok(()),
        };
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
        Ok(())
    }

    async fn surveys(&self, now: DateTime<Utc>, round: &mut Round) -> Result<(), AppError> {
        let ids = match read(&self.pool, satisfaction::NAME).await? {
            Some(mut tx) => satisfaction::surveys_due(&mut tx, now, self.options.batch).await.map_err(unavailable)?,
            None => return Ok(()),
        };
        for id in ids {
            for command in
                [SurveyCommand::Remind { at: now }, SurveyCommand::Expire { at: now, reason: None, manual: false }]
            {
                let meta = CommandMeta::by(Actor::system("survey-scheduler"));
                match self.commands.survey(id, command, meta).await {
                    Ok(o) if o.event_count > 0 => round.surveys += 1,
                    Ok(_) => {}
                    Err(e) => {
                        round.failed += 1;
                        tracing::warn!(survey = %id, error = %e, "survey reminder/expiry failed; retrying next round");
                    }
                }
            }
        }
        Ok(())
    }

    async fn reviews(&self, now: DateTime<Utc>, round: &mut Round) -> Result<(), AppError> {
        let config = self.commands.satisfaction_configuration().await?;
        if config.alert_rules.is_empty() {
            return Ok(());
        }
        let monitor = self.commands.satisfaction_monitor().await?;
        for rule in config.alert_rules.values() {
            let Ok(tz) = rule.time_zone.parse::<chrono_tz::Tz>() else { continue };
            let period = Period::last_complete(rule.period, tz, now);
            if monitor.was_reviewed(rule.rule_id, &period.label) {
                continue;
            }
            // Judge the period only on a read model that has every event recorded so far.
            let Some(generation) = registry::active(&self.pool, satisfaction::NAME).await.map_err(unavailable)? else {
                return Ok(());
            };
            let head: i64 = sqlx::query_scalar("SELECT position FROM event_store.log_head")
                .fetch_one(&self.pool)
                .await
                .map_err(|e| AppError::Unavailable(e.to_string()))?;
            if progress::applied_through(&self.pool, &generation).await.map_err(unavailable)? < head {
                return Ok(());
            }
            let previous = period.previous(rule.period, tz);
            let (groups, drops) = self.compare(rule, &previous, &period).await?;
            let command = SatisfactionMonitorCommand::Review {
                rule_id: rule.rule_id,
                index: rule.index,
                period: rule.period,
                label: Label::parse("label", &period.label)?,
                starts_at: period.start,
                ends_at: period.end,
                groups,
                drops,
                at: now,
            };
            // No command id: a second scheduler reviewing the same period at the same moment
            // finds it reviewed (the monitor's decision) rather than a reused id.
            let meta = CommandMeta::by(Actor::system("satisfaction-monitor"));
            match self.commands.review_satisfaction(command, meta).await {
                Ok(o) if o.event_count > 0 => {
                    round.reviews += 1;
                    tracing::info!(rule = %rule.name, period = %period.label, "satisfaction period reviewed");
                }
                Ok(_) => {}
                Err(e) => {
                    round.failed += 1;
                    tracing::warn!(rule = %rule.name, error = %e, "satisfaction review failed; retrying next round");
                }
            }
        }
        Ok(())
    }

    /// Groups compared and those that dropped beyond the rule's threshold.
    async fn compare(
        &self,
        rule: &AlertRule,
        before: &Period,
        now: &Period,
    ) -> Result<(u32, Vec<IndexDrop>), AppError> {
        let Some(mut tx) = read(&self.pool, satisfaction::NAME).await? else { return Ok((0, vec![])) };
        let group_by: &[IndexDimension] = if rule.per_department { &[IndexDimension::Department] } else { &[] };
        let mut figures = Vec::new();
        for p in [before, now] {
            let filter = IndexFilter { from: Some(p.start), to: Some(p.end), ..IndexFilter::default() };
            figures.push(
                satisfaction::satisfaction_index(&mut tx, &filter, group_by, &rule.time_zone)
                    .await
                    .map_err(unavailable)?,
            );
        }
        let (before, current) = (&figures[0], &figures[1]);
        let mut groups = 0;
        let mut drops = Vec::new();
        for cur in current {
            let Some(prev) = before.iter().find(|b| b.keys == cur.keys) else { continue };
            let (pn, cn) = (prev.indices.responses, cur.indices.responses);
            if pn < u64::from(rule.min_responses) || cn < u64::from(rule.min_responses) {
                continue;
            }
            let (Some(p), Some(c)) = (prev.indices.value(rule.index), cur.indices.value(rule.index)) else { continue };
            groups += 1;
            let (p, c) = ((p * 100.0).round() as i64, (c * 100.0).round() as i64);
            if p - c >= i64::from(rule.drop_hundredths) {
                let department = cur.keys.first().map(|(_, v)| v.clone()).filter(|v| !v.is_empty());
                drops.push(IndexDrop {
                    department: department.map(|d| Label::parse("department", &d)).transpose()?,
                    previous_hundredths: p,
                    current_hundredths: c,
                    previous_responses: pn as u32,
                    current_responses: cn as u32,
                });
            }
        }
        Ok((groups, drops))
    }

    /// Runs rounds until `shutdown` completes.
    pub async fn run(self, shutdown: impl Future<Output = ()>) -> Result<(), AppError> {
        let mut shutdown = pin!(shutdown);
        loop {
            if let Err(e) = self.round().await {
                tracing::warn!(error = %e, "scheduler round failed");
            }
            tokio::select! {
                _ = &mut shutdown => return Ok(()),
                _ = tokio::time::sleep(self.options.interval) => {}
            }
        }
    }
}
