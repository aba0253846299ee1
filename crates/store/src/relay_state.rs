//! The relay's state in PostgreSQL: its cursor, the partition offsets it has written, and the
//! lock that makes one relay per topic active at a time.

use kefu_app::StoreError;
use sqlx::{PgPool, Postgres, Row, pool::PoolConnection};

use crate::db_error;

/// Where a partition stands after the relay's last acknowledged write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PartitionMark {
    /// Partition.
    pub partition: i32,
    /// Offset after the last record written.
    pub next_offset: i64,
    /// Global position carried by that record.
    pub last_position: i64,
}

/// Everything up to this position has been acknowledged by the broker.
pub async fn cursor(pool: &PgPool, topic: &str) -> Result<i64, StoreError> {
    let position: Option<i64> = sqlx::query_scalar("SELECT position FROM event_store.relay_cursor WHERE topic = $1")
        .bind(topic)
        .fetch_optional(pool)
        .await
        .map_err(db_error)?;
    Ok(position.unwrap_or(0))
}

/// The partition marks of a topic.
pub async fn partitions(pool: &PgPool, topic: &str) -> Result<Vec<PartitionMark>, StoreError> {
    let rows = sqlx::query(
        "SELECT partition, next_offset, last_position FROM event_store.relay_partitions \
         WHERE topic = $1 ORDER BY partition",
    )
    .bind(topic)
    .fetch_all(pool)
    .await
    .map_err(db_error)?;
    rows.iter()
        .map(|r| {
            Ok(PartitionMark {
                partition: r.try_get("partition").map_err(db_error)?,
                next_offset: r.try_get("next_offset").map_err(db_error)?,
                last_position: r.try_get("last_position").map_err(db_error)?,
            })
        })
        .collect()
}

/// Records, atomically, that everything up to `position` is on the broker and where the
/// written partitions now end. The cursor never moves backwards here.
pub async fn advance(pool: &PgPool, topic: &str, position: i64, marks: &[PartitionMark]) -> Result<(), StoreError> {
    let mut tx = pool.begin().await.map_err(db_error)?;
    sqlx::query(
        "INSERT INTO event_store.relay_cursor (topic, position) VALUES ($1, $2) \
         ON CONFLICT (topic) DO UPDATE SET position = GREATEST(event_store.relay_cursor.position, EXCLUDED.position), \
           updated_at = clock_timestamp()",
    )
    .bind(topic)
    .bind(position)
    .execute(&mut *tx)
    .await
    .map_err(db_error)?;
    for m in marks {
        sqlx::query(
            "INSERT INTO event_store.relay_partitions (topic, partition, next_offset, last_position) \
             VALUES ($1, $2, $3, $4) ON CONFLICT (topic, partition) DO UPDATE \
             SET next_offset = GREATEST(event_store.relay_partitions.next_offset, EXCLUDED.next_offset), \
                 last_position = GREATEST(event_store.relay_partitions.last_position, EXCLUDED.last_position)",
        )
        .bind(topic)
        .bind(m.partition)
        .bind(m.next_offset)
        .bind(m.last_position)
        .execute(&mut *tx)
        .await
        .map_err(db_error)?;
    }
    tx.commit().await.map_err(db_error)
}

/// Forgets what was published to `topic` (its log was lost): the next relay run publishes the
/// whole history again.
pub async fn reset(pool: &PgPool, topic: &str) -> Result<(), StoreError> {
    let mut tx = pool.begin().await.map_err(db_error)?;
    sqlx::query("DELETE FROM event_store.relay_partitions WHERE topic = $1")
        .bind(topic)
        .execute(&mut *tx)
        .await
        .map_err(db_error)?;
    sqlx::query("UPDATE event_store.relay_cursor SET position = 0, updated_at = clock_timestamp() WHERE topic = $1")
        .bind(topic)
        .execute(&mut *tx)
        .await
        .map_err(db_error)?;
    tx.commit().await.map_err(db_error)
}

/// A held relay lock: while this connection lives, no other relay publishes to the topic.
pub struct RelayLock {
    conn: PoolConnection<Postgres>,
    key: i64,
}

impl RelayLock {
    /// Checks that the lock's session is still alive (a session-level advisory lock lives
    /// exactly as long as its session).
    pub async fn still_held(&mut self) -> bool {
        sqlx::query("SELECT 1").execute(&mut *self.conn).await.is_ok()
    }

    /// Releases the lock.
    pub async fn release(mut self) {
        let _ = sqlx::query("SELECT pg_advisory_unlock($1)").bind(self.key).execute(&mut *self.conn).await;
    }
}

fn lock_key(topic: &str) -> i64 {
    // FNV-1a: stable across builds and platforms (std's hasher is not).
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in "kefu-relay:".bytes().chain(topic.bytes()) {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h as i64
}

/// Tries to become the topic's active relay.
pub async fn try_lock(pool: &PgPool, topic: &str) -> Result<Option<RelayLock>, StoreError> {
    let mut conn = pool.acquire().await.map_err(db_error)?;
    let key = lock_key(topic);
    let got: bool = sqlx::query_scalar("SELECT pg_try_advisory_lock($1)")
        .bind(key)
        .fetch_one(&mut *conn)
        .await
        .map_err(db_error)?;
    Ok(got.then_some(RelayLock { conn, key }))
}
