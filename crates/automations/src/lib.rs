//! # kefu-automations
//!
//! Automations are consumers of the event log that *act* instead of building a read model:
//! they send commands. They run on the projection runtime (a consumer group per generation,
//! offsets stored in PostgreSQL with what they did, lag and dead letters visible like any
//! projection), and every command they send has an id derived from the triggering event, so
//! a redelivery, a rebalance or a rebuild records nothing twice.
//!
//! - [`SurveyAutomation`]: a survey after each completed service (per the satisfaction
//!   configuration's dispatch policies), a linked service request for each dissatisfied
//!   answer whose rule asks for one, and the survey's follow-up completed when that request is
//!   resolved (the closed loop; the decisions are in `kefu_app::surveys`).
//!
//! What each automation did or why it did nothing is kept in its `reactions` table.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use futures::future::BoxFuture;
use kefu_app::{
    AppError, CommandService, RecordedEvent,
    surveys::{Reaction, TakenSteps},
};
use kefu_projections::{Projection, ProjectionError};
use sqlx::PgConnection;
use uuid::Uuid;

/// The survey automation.
#[derive(Clone)]
pub struct SurveyAutomation {
    commands: CommandService,
}

/// Its name.
pub const SURVEY_AUTOMATION: &str = "survey_automation";

impl SurveyAutomation {
    /// An automation sending its commands through `commands`.
    pub fn new(commands: CommandService) -> Self {
        SurveyAutomation { commands }
    }
}

const SCHEMA: &str = r#"
CREATE TABLE reactions (
    event_id        uuid        PRIMARY KEY,
    global_position bigint      NOT NULL,
    stream_id       uuid        NOT NULL,
    event_type      text        NOT NULL,
    occurred_at     timestamptz NOT NULL,
    done            boolean     NOT NULL,
    what            text        NOT NULL,
    target_stream   uuid
);
CREATE INDEX reactions_by_stream ON reactions (stream_id, global_position);
"#;

/// Events the automation looks at; others are passed over without a record.
const WATCHED: &[&str] = &["RequestResolved", "RequestClosed", "SurveyFollowUpOpened"];

impl Projection for SurveyAutomation {
    fn name(&self) -> &'static str {
        SURVEY_AUTOMATION
    }

    fn schema(&self) -> &'static str {
        SCHEMA
    }

    fn tables(&self) -> &'static [&'static str] {
        &["reactions"]
    }

    fn reads(&self, _: &str, event_type: &str) -> bool {
        WATCHED.contains(&event_type)
    }

    fn apply<'a>(
        &'a self,
        conn: &'a mut PgConnection,
        event: &'a RecordedEvent,
    ) -> BoxFuture<'a, Result<(), ProjectionError>> {
        Box::pin(async move { self.react_all(conn, std::slice::from_ref(&event)).await })
    }

    fn apply_all<'a>(
        &'a self,
        conn: &'a mut PgConnection,
        events: &'a [&'a RecordedEvent],
    ) -> BoxFuture<'a, Result<(), ProjectionError>> {
        Box::pin(self.react_all(conn, events))
    }
}

impl SurveyAutomation {
    /// Reacts to the events one after the other, in log order (a reaction may depend on what
    /// an earlier one sent), and records what it did in one statement. Which steps were
    /// already taken (a redelivery, a rebuild) is read from the journal once for the batch.
    async fn react_all(&self, conn: &mut PgConnection, events: &[&RecordedEvent]) -> Result<(), ProjectionError> {
        let watched: Vec<&RecordedEvent> =
            events.iter().copied().filter(|e| WATCHED.contains(&e.event_type.as_str())).collect();
        let taken = self.commands.taken_steps(&watched).await.map_err(failed)?;
        let mut done = Reactions::default();
        for event in watched {
            if let Some(reaction) = self.react(event, &taken).await? {
                done.push(event, reaction);
            }
        }
        done.insert(conn).await
    }

    /// What the automation does about one event: `None` for an event it does not watch.
    async fn react(
        &self,
        event: &RecordedEvent,
        taken: &TakenSteps,
    ) -> Result<Option<(bool, String, Option<Uuid>)>, ProjectionError> {
        if !WATCHED.contains(&event.event_type.as_str()) {
            return Ok(None);
        }
        let (done, what, target) = match self.commands.react_knowing(event, taken).await {
            Ok(Reaction::Done { what, stream_id }) => (true, what, Some(stream_id)),
            Ok(Reaction::Skipped(why)) => (false, why, None),
            Err(e) => return Err(failed(e)),
        };
        if done {
            tracing::info!(event = %event.event_id, event_type = %event.event_type, %what, "automation acted");
        }
        Ok(Some((done, what, target)))
    }
}

/// A reaction that failed: unavailable (the batch is retried) or poison (its stream parked).
fn failed(e: AppError) -> ProjectionError {
    match e {
        AppError::Unavailable(m) => ProjectionError::Unavailable(m),
        e @ AppError::Conflict { .. } => ProjectionError::Unavailable(e.to_string()),
        e => ProjectionError::Poison(e.to_string()),
    }
}

/// Rows of `reactions`, written together.
#[derive(Default)]
struct Reactions {
    event_id: Vec<Uuid>,
    global_position: Vec<i64>,
    stream_id: Vec<Uuid>,
    event_type: Vec<String>,
    occurred_at: Vec<DateTime<Utc>>,
    done: Vec<bool>,
    what: Vec<String>,
    target_stream: Vec<Option<Uuid>>,
}

impl Reactions {
    fn push(&mut self, event: &RecordedEvent, (done, what, target): (bool, String, Option<Uuid>)) {
        self.event_id.push(event.event_id);
        self.global_position.push(event.global_position);
        self.stream_id.push(event.stream_id);
        self.event_type.push(event.event_type.clone());
        self.occurred_at.push(event.occurred_at);
        self.done.push(done);
        self.what.push(what);
        self.target_stream.push(target);
    }

    async fn insert(self, conn: &mut PgConnection) -> Result<(), ProjectionError> {
        if self.event_id.is_empty() {
            return Ok(());
        }
        sqlx::query(
            "INSERT INTO reactions (event_id, global_position, stream_id, event_type, occurred_at, done, what, \
               target_stream) \
             SELECT * FROM UNNEST($1::uuid[], $2::bigint[], $3::uuid[], $4::text[], $5::timestamptz[], \
               $6::boolean[], $7::text[], $8::uuid[]) \
             ON CONFLICT (event_id) DO NOTHING",
        )
        .bind(&self.event_id)
        .bind(&self.global_position)
        .bind(&self.stream_id)
        .bind(&self.event_type)
        .bind(&self.occurred_at)
        .bind(&self.done)
        .bind(&self.what)
        .bind(&self.target_stream)
        .execute(conn)
        .await?;
        Ok(())
    }
}

/// Every automation, sending commands through `commands`.
pub fn all(commands: &CommandService) -> Vec<Arc<dyn Projection>> {
    vec![Arc::new(SurveyAutomation::new(commands.clone()))]
}

/// What an automation did for the events of a stream, oldest first: (event type, acted,
/// what).
pub async fn reactions_of(
    conn: &mut PgConnection,
    stream_id: Uuid,
) -> Result<Vec<(String, bool, String)>, ProjectionError> {
    Ok(sqlx::query_as("SELECT event_type, done, what FROM reactions WHERE stream_id = $1 ORDER BY global_position")
        .bind(stream_id)
        .fetch_all(conn)
        .await?)
}
