//! The PostgreSQL event store.

use chrono::{DateTime, Utc};
use futures::future::BoxFuture;
use kefu_app::{
    Actor, RecordedEvent, StoreError,
    store::{AppendOutcome, AppendRequest, CommandRecord, EventStore, JournalledCommand, StreamAppend},
};
use sqlx::{PgPool, Postgres, Row, Transaction, postgres::PgRow, types::Json};
use uuid::Uuid;

use crate::db_error;

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

/// [`EventStore`] on PostgreSQL. Cheap to clone.
#[derive(Clone)]
pub struct PgEventStore {
    pool: PgPool,
}

impl PgEventStore {
    /// A store on this pool (migrations must have run).
    pub fn new(pool: PgPool) -> Self {
        PgEventStore { pool }
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
                payload: row.try_get("payload").map_err(get)?,
            },
            stream_id: row.try_get("stream_id").map_err(get)?,
            outcome,
        }))
    }

    async fn replay_of(&self, req: &AppendRequest) -> Result<AppendOutcome, StoreError> {
        match self.journalled(req.command.command_id).await? {
            Some(j) if j.command.payload == req.command.payload && j.stream_id == req.stream_id => {
                Ok(AppendOutcome { deduplicated: true, ..j.outcome })
            }
            Some(j) => Err(StoreError::CommandIdReused {
                command_id: req.command.command_id,
                original_type: j.command.command_type,
                original_stream: j.stream_id,
            }),
            None => Err(StoreError::Database(format!(
                "command {} conflicted in the journal but is not there",
                req.command.command_id
            ))),
        }
    }

    async fn append_in(
        &self,
        tx: &mut Transaction<'_, Postgres>,
        req: &AppendRequest,
    ) -> Result<Option<AppendOutcome>, StoreError> {
        // 1. Journal the command first. A concurrent retry with the same id blocks here until
        //    the first attempt commits or rolls back.
        let journalled = sqlx::query(
            "INSERT INTO event_store.commands (command_id, command_type, stream_id, payload, actor) \
             VALUES ($1, $2, $3, $4, $5) ON CONFLICT (command_id) DO NOTHING",
        )
        .bind(req.command.command_id)
        .bind(&req.command.command_type)
        .bind(req.stream_id)
        .bind(&req.command.payload)
        .bind(Json(&req.actor))
        .execute(&mut **tx)
        .await
        .map_err(db_error)?
        .rows_affected();
        if journalled == 0 {
            return Ok(None);
        }

        // 2. Lock every stream (in id order, so concurrent multi-stream appends cannot
        //    deadlock) and check its type and version.
        let parts = req.parts();
        let mut order: Vec<usize> = (0..parts.len()).collect();
        order.sort_by_key(|i| parts[*i].stream_id);
        let mut versions = vec![0i64; parts.len()];
        for i in order {
            versions[i] = self.lock_stream(tx, &parts[i]).await?;
        }

        // 3. Take positions for all events at once (the head row lock is held until commit:
        //    positions commit in order).
        let total: i64 = parts.iter().map(|p| p.events.len() as i64).sum();
        let (last, recorded_at) = if total > 0 {
            let row = sqlx::query(
                "UPDATE event_store.log_head SET position = position + $1 \
                 RETURNING position, date_trunc('microseconds', clock_timestamp()) AS now",
            )
            .bind(total)
            .fetch_one(&mut **tx)
            .await
            .map_err(db_error)?;
            let last: i64 = row.try_get("position").map_err(db_error)?;
            let now: DateTime<Utc> = row.try_get("now").map_err(db_error)?;
            (Some(last), now)
        } else {
            let now: DateTime<Utc> = sqlx::query_scalar("SELECT date_trunc('microseconds', clock_timestamp())")
                .fetch_one(&mut **tx)
                .await
                .map_err(db_error)?;
            (None, now)
        };

        // 4. Insert the events, stream by stream in request order.
        let mut next_position = last.map(|l| l - total + 1).unwrap_or(0);
        for (part, version) in parts.iter().zip(&versions) {
            let n = part.events.len() as i64;
            if n == 0 {
                continue;
            }
            self.insert_events(tx, req, part, *version, next_position, recorded_at).await?;
            next_position += n;
        }
        if let Some(last) = last {
            sqlx::query("SELECT pg_notify($1, $2)")
                .bind(APPEND_CHANNEL)
                .bind(last.to_string())
                .execute(&mut **tx)
                .await
                .map_err(db_error)?;
        }

        let n = req.events.len() as i64;
        let version = versions[0];
        let first_position = (n > 0).then(|| last.unwrap_or(0) - total + 1);
        let last_position = match last {
            Some(l) => Some(l),
            None => sqlx::query_scalar("SELECT max(global_position) FROM event_store.events WHERE stream_id = $1")
                .bind(req.stream_id)
                .fetch_one(&mut **tx)
                .await
                .map_err(db_error)?,
        };
        let outcome = AppendOutcome {
            stream_id: req.stream_id,
            stream_version: version + n,
            first_position,
            last_position,
            event_count: total,
            recorded_at,
            deduplicated: false,
        };
        sqlx::query("UPDATE event_store.commands SET outcome = $2, recorded_at = $3 WHERE command_id = $1")
            .bind(req.command.command_id)
            .bind(Json(&outcome))
            .bind(recorded_at)
            .execute(&mut **tx)
            .await
            .map_err(db_error)?;
        Ok(Some(outcome))
    }

    /// Locks a stream's row (creating it for a first append) and checks type and version;
    /// returns the version before the append.
    async fn lock_stream(&self, tx: &mut Transaction<'_, Postgres>, part: &StreamAppend) -> Result<i64, StoreError> {
        if !part.events.is_empty() {
            sqlx::query(
                "INSERT INTO event_store.streams (stream_id, stream_type, customer_id, version) \
                 VALUES ($1, $2, $3, 0) ON CONFLICT (stream_id) DO NOTHING",
            )
            .bind(part.stream_id)
            .bind(&part.stream_type)
            .bind(part.customer_id)
            .execute(&mut **tx)
            .await
            .map_err(db_error)?;
        }
        let current =
            sqlx::query("SELECT stream_type, version FROM event_store.streams WHERE stream_id = $1 FOR UPDATE")
                .bind(part.stream_id)
                .fetch_optional(&mut **tx)
                .await
                .map_err(db_error)?;
        let (stream_type, version): (String, i64) = match current {
            Some(row) => (row.try_get("stream_type").map_err(db_error)?, row.try_get("version").map_err(db_error)?),
            None => (part.stream_type.clone(), 0),
        };
        if stream_type != part.stream_type {
            return Err(StoreError::StreamTypeMismatch {
                stream_id: part.stream_id,
                expected: part.stream_type.clone(),
                actual: stream_type,
            });
        }
        if version != part.expected_version {
            return Err(StoreError::WrongExpectedVersion {
                stream_id: part.stream_id,
                expected: part.expected_version,
                actual: version,
            });
        }
        Ok(version)
    }

    async fn insert_events(
        &self,
        tx: &mut Transaction<'_, Postgres>,
        req: &AppendRequest,
        part: &StreamAppend,
        version: i64,
        first_position: i64,
        recorded_at: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let n = part.events.len() as i64;
        let positions: Vec<i64> = (first_position..first_position + n).collect();
        let versions: Vec<i64> = (version + 1..=version + n).collect();
        let ids: Vec<Uuid> = part.events.iter().map(|e| e.event_id).collect();
        let types: Vec<String> = part.events.iter().map(|e| e.event_type.clone()).collect();
        let schema_versions: Vec<i32> = part.events.iter().map(|e| e.schema_version as i32).collect();
        let payloads: Vec<serde_json::Value> = part.events.iter().map(|e| e.payload.clone()).collect();
        sqlx::query(
            "INSERT INTO event_store.events (global_position, event_id, stream_id, stream_type, \
               stream_version, event_type, schema_version, customer_id, occurred_at, recorded_at, \
               actor, correlation_id, causation_id, command_id, payload) \
             SELECT p, e, $7, $8, v, t, s, $9, $10, $11, $12, $13, $14, $15, pl \
             FROM UNNEST($1::bigint[], $2::uuid[], $3::bigint[], $4::text[], $5::int[], $6::jsonb[]) \
               AS x(p, e, v, t, s, pl)",
        )
        .bind(&positions)
        .bind(&ids)
        .bind(&versions)
        .bind(&types)
        .bind(&schema_versions)
        .bind(&payloads)
        .bind(part.stream_id)
        .bind(&part.stream_type)
        .bind(part.customer_id)
        .bind(req.occurred_at)
        .bind(recorded_at)
        .bind(Json(&req.actor))
        .bind(req.correlation_id)
        .bind(req.causation_id)
        .bind(req.command.command_id)
        .execute(&mut **tx)
        .await
        .map_err(db_error)?;
        crate::integrity::chain_stream(tx, part.stream_id).await?;
        sqlx::query("UPDATE event_store.streams SET version = $2, updated_at = $3 WHERE stream_id = $1")
            .bind(part.stream_id)
            .bind(version + n)
            .bind(recorded_at)
            .execute(&mut **tx)
            .await
            .map_err(db_error)?;
        Ok(())
    }

    /// Appends, leaving the transaction open for the caller to commit (tests use this to hold
    /// a transaction in flight).
    pub async fn append_uncommitted<'c>(
        &self,
        tx: &mut Transaction<'c, Postgres>,
        req: &AppendRequest,
    ) -> Result<Option<AppendOutcome>, StoreError> {
        self.append_in(tx, req).await
    }

    async fn append_request(&self, req: AppendRequest) -> Result<AppendOutcome, StoreError> {
        let mut tx = self.pool.begin().await.map_err(db_error)?;
        match self.append_in(&mut tx, &req).await {
            Ok(Some(outcome)) => {
                tx.commit().await.map_err(db_error)?;
                Ok(outcome)
            }
            Ok(None) => {
                tx.rollback().await.map_err(db_error)?;
                self.replay_of(&req).await
            }
            Err(e) => {
                // Dropping the transaction rolls it back; say so explicitly to free the
                // connection at once.
                let _ = tx.rollback().await;
                Err(e)
            }
        }
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
        Box::pin(self.append_request(request))
    }

    fn load(&self, stream_id: Uuid) -> BoxFuture<'_, Result<Vec<RecordedEvent>, StoreError>> {
        Box::pin(self.load_stream(stream_id))
    }

    fn find_command(&self, command_id: Uuid) -> BoxFuture<'_, Result<Option<JournalledCommand>, StoreError>> {
        Box::pin(self.journalled(command_id))
    }
}
