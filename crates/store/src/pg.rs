//! The PostgreSQL event store.

use std::{
    collections::HashMap,
    sync::{Arc, OnceLock},
};

use futures::future::BoxFuture;
use kefu_app::{
    Actor, RecordedEvent, StoreError,
    store::{AppendOutcome, AppendRequest, CommandRecord, EventStore, JournalledCommand},
};
use sqlx::{PgPool, Postgres, Row, Transaction, postgres::PgRow, types::Json};
use uuid::Uuid;

use crate::{
    db_error,
    writer::{self, Writer, WriterOptions, WriterStats},
};

/// Channel notified (with the last position) after each append commits; the relay listens.
pub const APPEND_CHANNEL: &str = "kefu_events";

/// The columns of a [`RecordedEvent`], in [`event_from_row`] order.
pub(crate) const EVENT_COLUMNS: &str = "global_position, event_id, stream_id, stream_type, \
    stream_version, event_type, schema_version, customer_id, occurred_at, recorded_at, actor, \
    correlation_id, causation_id, command_id, payload";

/// Reads one event row selected with [`EVENT_COLUMNS`].
pub(crate) fn event_from_row(row: &PgRow) -> Result<RecordedEvent, StoreError> {
    let get = |e: sqlx::Error| StoreError::Corrupt(e.to_string());
    let actor: Json<Actor> = row.try_get("actor").map_err(get)?;
    let schema_version: i32 = row.try_get("schema_version").map_err(get)?;
    Ok(RecordedEvent {
        global_position: row.try_get("global_position").map_err(get)?,
        event_id: row.try_get("event_id").map_err(get)?,
        stream_id: row.try_get("stream_id").map_err(get)?,
        stream_type: row.try_get("stream_type").map_err(get)?,
        stream_version: row.try_get("stream_version").map_err(get)?,
        event_type: row.try_get("event_type").map_err(get)?,
        schema_version: u32::try_from(schema_version).map_err(|e| StoreError::Corrupt(e.to_string()))?,
        customer_id: row.try_get("customer_id").map_err(get)?,
        occurred_at: row.try_get("occurred_at").map_err(get)?,
        recorded_at: row.try_get("recorded_at").map_err(get)?,
        actor: actor.0,
        correlation_id: row.try_get("correlation_id").map_err(get)?,
        causation_id: row.try_get("causation_id").map_err(get)?,
        command_id: row.try_get("command_id").map_err(get)?,
        payload: row.try_get("payload").map_err(get)?,
    })
}

/// [`EventStore`] on PostgreSQL. Cheap to clone; clones share one group-committing writer
/// ([`crate::writer`]), started on the first append.
#[derive(Clone)]
pub struct PgEventStore {
    pool: PgPool,
    options: WriterOptions,
    writer: Arc<OnceLock<Writer>>,
}

impl PgEventStore {
    /// A store on this pool (migrations must have run).
    pub fn new(pool: PgPool) -> Self {
        Self::with_options(pool, WriterOptions::default())
    }

    /// A store whose writer batches within these bounds.
    pub fn with_options(pool: PgPool, options: WriterOptions) -> Self {
        PgEventStore { pool, options, writer: Arc::new(OnceLock::new()) }
    }

    /// The pool.
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// Events after `position` in the global log, in order, at most `limit`.
    pub async fn read_after(&self, position: i64, limit: i64) -> Result<Vec<RecordedEvent>, StoreError> {
        let sql = format!(
            "SELECT {EVENT_COLUMNS} FROM event_store.events WHERE global_position > $1 \
             ORDER BY global_position LIMIT $2"
        );
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(position)
            .bind(limit)
            .fetch_all(&self.pool)
            .await
            .map_err(db_error)?;
        rows.iter().map(event_from_row).collect()
    }

    /// The last assigned global position (0 when the log is empty).
    pub async fn head(&self) -> Result<i64, StoreError> {
        sqlx::query_scalar("SELECT position FROM event_store.log_head").fetch_one(&self.pool).await.map_err(db_error)
    }

    /// One event by global position.
    pub async fn event_at(&self, position: i64) -> Result<Option<RecordedEvent>, StoreError> {
        let sql = format!("SELECT {EVENT_COLUMNS} FROM event_store.events WHERE global_position = $1");
        let row =
            sqlx::query(sqlx::AssertSqlSafe(sql)).bind(position).fetch_optional(&self.pool).await.map_err(db_error)?;
        row.as_ref().map(event_from_row).transpose()
    }

    /// The events at these global positions (missing ones are left out), in position order.
    pub async fn events_at(&self, positions: &[i64]) -> Result<Vec<RecordedEvent>, StoreError> {
        let sql = format!(
            "SELECT {EVENT_COLUMNS} FROM event_store.events WHERE global_position = ANY($1) ORDER BY global_position"
        );
        let rows =
            sqlx::query(sqlx::AssertSqlSafe(sql)).bind(positions).fetch_all(&self.pool).await.map_err(db_error)?;
        rows.iter().map(event_from_row).collect()
    }

    async fn journalled(&self, command_id: Uuid) -> Result<Option<JournalledCommand>, StoreError> {
        let row = sqlx::query(
            "SELECT command_type, stream_id, payload, outcome FROM event_store.commands \
             WHERE command_id = $1",
        )
        .bind(command_id)
        .fetch_optional(&self.pool)
        .await
        .map_err(db_error)?;
        let Some(row) = row else { return Ok(None) };
        let get = |e: sqlx::Error| StoreError::Corrupt(e.to_string());
        let outcome: Option<Json<AppendOutcome>> = row.try_get("outcome").map_err(get)?;
        let Some(Json(outcome)) = outcome else {
            return Err(StoreError::Corrupt(format!("command {command_id} has no recorded outcome")));
        };
        Ok(Some(JournalledCommand {
            command: CommandRecord {
                command_id,
                command_type: row.try_get("command_type").map_err(get)?,
                payload: std::sync::Arc::new(row.try_get("payload").map_err(get)?),
            },
            stream_id: row.try_get("stream_id").map_err(get)?,
            outcome,
        }))
    }

    /// Appends inside a transaction the caller began, taking the head lock in it, and leaves
    /// it open for the caller to commit (tests use this to hold an append in flight).
    pub async fn append_uncommitted<'c>(
        &self,
        tx: &mut Transaction<'c, Postgres>,
        req: &AppendRequest,
    ) -> Result<AppendOutcome, StoreError> {
        writer::append_in_transaction(tx, req).await
    }

    /// What the group-committing writer did so far (zeros before the first append).
    pub fn writer_stats(&self) -> WriterStats {
        self.writer.get().map(Writer::stats).unwrap_or_default()
    }

    fn writer(&self) -> &Writer {
        self.writer.get_or_init(|| Writer::start(self.pool.clone(), self.options))
    }

    async fn load_stream(&self, stream_id: Uuid) -> Result<Vec<RecordedEvent>, StoreError> {
        let sql =
            format!("SELECT {EVENT_COLUMNS} FROM event_store.events WHERE stream_id = $1 ORDER BY stream_version");
        let rows =
            sqlx::query(sqlx::AssertSqlSafe(sql)).bind(stream_id).fetch_all(&self.pool).await.map_err(db_error)?;
        rows.iter().map(event_from_row).collect()
    }
}

impl EventStore for PgEventStore {
    fn append(&self, request: AppendRequest) -> BoxFuture<'_, Result<AppendOutcome, StoreError>> {
        Box::pin(self.writer().append(request))
    }

    fn load(&self, stream_id: Uuid) -> BoxFuture<'_, Result<Vec<RecordedEvent>, StoreError>> {
        Box::pin(self.load_stream(stream_id))
    }

    fn find_command(&self, command_id: Uuid) -> BoxFuture<'_, Result<Option<JournalledCommand>, StoreError>> {
        Box::pin(self.journalled(command_id))
    }

    fn journalled_streams<'a>(
        &'a self,
        command_ids: &'a [Uuid],
    ) -> BoxFuture<'a, Result<HashMap<Uuid, Uuid>, StoreError>> {
        Box::pin(async move {
            let rows: Vec<(Uuid, Uuid)> =
                sqlx::query_as("SELECT command_id, stream_id FROM event_store.commands WHERE command_id = ANY($1)")
                    .bind(command_ids)
                    .fetch_all(&self.pool)
                    .await
                    .map_err(db_error)?;
            Ok(rows.into_iter().collect())
        })
    }
}
