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

use futures::future::BoxFuture;
use kefu_app::{AppError, CommandService, RecordedEvent, surveys::Reaction};
use kefu_projections::{Projection, ProjectionError};
use sqlx::PgConnection;

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
        Box::pin(async move {
            if !WATCHED.contains(&event.event_type.as_str()) {
                return Ok(());
            }
            let (done, what, target) = match self.commands.react(event).await {
                Ok(Reaction::Done { what, stream_id }) => (true, what, Some(stream_id)),
                Ok(Reaction::Skipped(why)) => (false, why, None),
                Err(AppError::Unavailable(m)) => return Err(ProjectionError::Unavailable(m)),
                Err(e @ AppError::Conflict { .. }) => return Err(ProjectionError::Unavailable(e.to_string())),
                Err(e) => return Err(ProjectionError::Poison(e.to_string())),
            };
            if done {
                tracing::info!(event = %event.event_id, event_type = %event.event_type, %what, "automation acted");
            }
            sqlx::query(
                "INSERT INTO reactions (event_id, global_position, stream_id, event_type, occurred_at, done, what, \
                   target_stream) VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT (event_id) DO NOTHING",
            )
            .bind(event.event_id)
            .bind(event.global_position)
            .bind(event.stream_id)
            .bind(&event.event_type)
            .bind(event.occurred_at)
            .bind(done)
            .bind(what)
            .bind(target)
            .execute(&mut *conn)
            .await?;
            Ok(())
        })
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
    stream_id: uuid::Uuid,
) -> Result<Vec<(String, bool, String)>, ProjectionError> {
    Ok(sqlx::query_as("SELECT event_type, done, what FROM reactions WHERE stream_id = $1 ORDER BY global_position")
        .bind(stream_id)
        .fetch_all(conn)
        .await?)
}
