//! Writing and checking the tamper-evident chain ([`kefu_app::integrity`]): event hashes
//! written with each append, anchors over the log, and verification of everything stored.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use kefu_app::{
    RecordedEvent, StoreError,
    integrity::{AnchorBuilder, GENESIS, Hash, event_hash, from_bytes, to_hex},
};
use sqlx::{PgConnection, PgPool, Row};
use uuid::Uuid;

use crate::{
    db_error,
    pg::{EVENT_COLUMNS, event_from_row},
};

/// Chains a stream's events that have no hash yet (the ones just appended, or history from
/// before the chain existed). The caller holds the stream's row lock.
pub(crate) async fn chain_stream(conn: &mut PgConnection, stream_id: Uuid) -> Result<(), StoreError> {
    let last = sqlx::query(
        "SELECT stream_version, hash FROM event_store.event_hashes WHERE stream_id = $1 \
         ORDER BY stream_version DESC LIMIT 1",
    )
    .bind(stream_id)
    .fetch_optional(&mut *conn)
    .await
    .map_err(db_error)?;
    let (version, mut previous) = match last {
        Some(r) => {
            let bytes: Vec<u8> = r.try_get("hash").map_err(db_error)?;
            let hash = from_bytes(&bytes).ok_or_else(|| StoreError::Corrupt(format!("bad hash in {stream_id}")))?;
            (r.try_get::<i64, _>("stream_version").map_err(db_error)?, hash)
        }
        None => (0, GENESIS),
    };
    let sql = format!(
        "SELECT {EVENT_COLUMNS} FROM event_store.events WHERE stream_id = $1 AND stream_version > $2 \
         ORDER BY stream_version"
    );
    let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(stream_id)
        .bind(version)
        .fetch_all(&mut *conn)
        .await
        .map_err(db_error)?;
    if rows.is_empty() {
        return Ok(());
    }
    let (mut positions, mut versions, mut previouses, mut hashes) = (vec![], vec![], vec![], vec![]);
    for row in &rows {
        let e = event_from_row(row)?;
        let hash = event_hash(&previous, &e);
        positions.push(e.global_position);
        versions.push(e.stream_version);
        previouses.push(previous.to_vec());
        hashes.push(hash.to_vec());
        previous = hash;
    }
    sqlx::query(
        "INSERT INTO event_store.event_hashes (global_position, stream_id, stream_version, previous, hash) \
         SELECT p, $5, v, pr, h FROM UNNEST($1::bigint[], $2::bigint[], $3::bytea[], $4::bytea[]) AS x(p, v, pr, h)",
    )
    .bind(&positions)
    .bind(&versions)
    .bind(&previouses)
    .bind(&hashes)
    .bind(stream_id)
    .execute(&mut *conn)
    .await
    .map_err(db_error)?;
    Ok(())
}

/// Chains every stream with unchained events (history recorded before the chain existed).
/// Returns how many streams it chained.
pub async fn backfill(pool: &PgPool) -> Result<u64, StoreError> {
    let streams: Vec<Uuid> = sqlx::query_scalar(
        "SELECT DISTINCT e.stream_id FROM event_store.events e \
         LEFT JOIN event_store.event_hashes h USING (global_position) WHERE h.global_position IS NULL",
    )
    .fetch_all(pool)
    .await
    .map_err(db_error)?;
    for stream_id in &streams {
        let mut tx = pool.begin().await.map_err(db_error)?;
        sqlx::query("SELECT 1 FROM event_store.streams WHERE stream_id = $1 FOR UPDATE")
            .bind(stream_id)
            .execute(&mut *tx)
            .await
            .map_err(db_error)?;
        chain_stream(&mut tx, *stream_id).await?;
        tx.commit().await.map_err(db_error)?;
    }
    Ok(streams.len() as u64)
}

/// An anchor over the log up to `position`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Anchor {
    /// The last event covered.
    pub position: i64,
    /// The anchor before it (0: none).
    pub previous_position: i64,
    /// The digest, hex.
    pub hash: String,
    /// When it was taken.
    pub anchored_at: DateTime<Utc>,
}

fn anchor_from(r: &sqlx::postgres::PgRow) -> Result<Anchor, StoreError> {
    let bytes: Vec<u8> = r.try_get("hash").map_err(db_error)?;
    Ok(Anchor {
        position: r.try_get("position").map_err(db_error)?,
        previous_position: r.try_get("previous_position").map_err(db_error)?,
        hash: hex::encode(bytes),
        anchored_at: r.try_get("anchored_at").map_err(db_error)?,
    })
}

/// The newest anchor.
pub async fn latest_anchor(conn: &mut PgConnection) -> Result<Option<Anchor>, StoreError> {
    let row = sqlx::query(
        "SELECT position, previous_position, hash, anchored_at FROM event_store.anchors ORDER BY position DESC LIMIT 1",
    )
    .fetch_optional(&mut *conn)
    .await
    .map_err(db_error)?;
    row.as_ref().map(anchor_from).transpose()
}

/// Anchors the log if at least `min_events` events were recorded since the last anchor (1:
/// anything new). Several processes may call this at once: one anchor is taken per range.
pub async fn anchor(pool: &PgPool, min_events: i64) -> Result<Option<Anchor>, StoreError> {
    let mut tx = pool.begin().await.map_err(db_error)?;
    sqlx::query("LOCK TABLE event_store.anchors IN EXCLUSIVE MODE").execute(&mut *tx).await.map_err(db_error)?;
    let last = latest_anchor(&mut tx).await?;
    let (from, previous) = match &last {
        Some(a) => (
            a.position,
            hex::decode(&a.hash)
                .ok()
                .and_then(|b| from_bytes(&b))
                .ok_or_else(|| StoreError::Corrupt("bad anchor".into()))?,
        ),
        None => (0, GENESIS),
    };
    // Only chained, committed events (positions commit in order, so this range is dense).
    let head: Option<i64> = sqlx::query_scalar("SELECT max(global_position) FROM event_store.event_hashes")
        .fetch_one(&mut *tx)
        .await
        .map_err(db_error)?;
    let Some(head) = head.filter(|h| *h - from >= min_events.max(1)) else {
        return Ok(None);
    };
    let mut builder = AnchorBuilder::after(&previous);
    let mut at = from;
    while at < head {
        let rows = sqlx::query(
            "SELECT global_position, hash FROM event_store.event_hashes WHERE global_position > $1 \
               AND global_position <= $2 ORDER BY global_position LIMIT 10000",
        )
        .bind(at)
        .bind(head)
        .fetch_all(&mut *tx)
        .await
        .map_err(db_error)?;
        if rows.is_empty() {
            break;
        }
        for r in &rows {
            let p: i64 = r.try_get("global_position").map_err(db_error)?;
            if p != at + 1 {
                return Err(StoreError::Corrupt(format!("event {} has no hash; run `kefu audit verify`", at + 1)));
            }
            let bytes: Vec<u8> = r.try_get("hash").map_err(db_error)?;
            builder.add(&from_bytes(&bytes).ok_or_else(|| StoreError::Corrupt(format!("bad hash at {p}")))?);
            at = p;
        }
    }
    let hash = builder.finish();
    let row = sqlx::query(
        "INSERT INTO event_store.anchors (position, previous_position, hash) VALUES ($1, $2, $3) \
         RETURNING position, previous_position, hash, anchored_at",
    )
    .bind(at)
    .bind(from)
    .bind(hash.to_vec())
    .fetch_one(&mut *tx)
    .await
    .map_err(db_error)?;
    let anchor = anchor_from(&row)?;
    tx.commit().await.map_err(db_error)?;
    Ok(Some(anchor))
}

/// Anchors when `every` events were recorded since the last anchor, or when it is older than
/// `max_age` and anything was recorded since (cheap to call often).
pub async fn anchor_if_due(pool: &PgPool, every: i64, max_age: chrono::Duration) -> Result<Option<Anchor>, StoreError> {
    let row = sqlx::query(
        "SELECT (SELECT coalesce(max(global_position), 0) FROM event_store.event_hashes) AS head, \
           (SELECT position FROM event_store.anchors ORDER BY position DESC LIMIT 1) AS anchored, \
           (SELECT anchored_at FROM event_store.anchors ORDER BY position DESC LIMIT 1) AS anchored_at, \
           clock_timestamp() AS now",
    )
    .fetch_one(pool)
    .await
    .map_err(db_error)?;
    let head: i64 = row.try_get("head").map_err(db_error)?;
    let anchored: Option<i64> = row.try_get("anchored").map_err(db_error)?;
    let anchored_at: Option<DateTime<Utc>> = row.try_get("anchored_at").map_err(db_error)?;
    let now: DateTime<Utc> = row.try_get("now").map_err(db_error)?;
    let since = head - anchored.unwrap_or(0);
    let old = anchored_at.is_none_or(|t| now - t >= max_age);
    if since >= every.max(1) || (since > 0 && old) { anchor(pool, 1).await } else { Ok(None) }
}

/// The first thing that does not check out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mismatch {
    /// Global position of the event (or of the anchor).
    pub global_position: i64,
    /// The event, when there is one.
    pub event_id: Option<Uuid>,
    /// Its stream.
    pub stream_id: Option<Uuid>,
    /// Its version in the stream.
    pub stream_version: Option<i64>,
    /// Its type.
    pub event_type: Option<String>,
    /// What is wrong.
    pub problem: String,
}

impl std::fmt::Display for Mismatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "global position {}", self.global_position)?;
        if let (Some(id), Some(stream), Some(v)) = (self.event_id, self.stream_id, self.stream_version) {
            write!(f, " (event {id}, {} #{v} of stream {stream})", self.event_type.as_deref().unwrap_or("?"))?;
        }
        write!(f, ": {}", self.problem)
    }
}

/// What a check of the event store found.
#[derive(Debug, Clone, Default)]
pub struct StoreVerification {
    /// Events checked.
    pub events: i64,
    /// Streams seen.
    pub streams: usize,
    /// Anchors checked.
    pub anchors: usize,
    /// The newest anchor that checked out.
    pub anchored_through: i64,
    /// Hash of the last event checked, hex.
    pub head_hash: Option<String>,
    /// The first problem (checking stops there).
    pub first_mismatch: Option<Mismatch>,
}

impl Mismatch {
    /// A problem at `position`, naming the stored event there when there is one.
    pub fn at(position: i64, event: Option<&RecordedEvent>, problem: impl Into<String>) -> Mismatch {
        Mismatch {
            global_position: position,
            event_id: event.map(|e| e.event_id),
            stream_id: event.map(|e| e.stream_id),
            stream_version: event.map(|e| e.stream_version),
            event_type: event.map(|e| e.event_type.clone()),
            problem: problem.into(),
        }
    }
}

fn mismatch(e: &RecordedEvent, problem: impl Into<String>) -> Mismatch {
    Mismatch::at(e.global_position, Some(e), problem)
}

/// Checks every stored event against its chain and every anchor, in global order, reading in
/// batches (memory grows with the number of streams, not events). `on_progress` gets the
/// position checked so far and the head.
pub async fn verify_store(
    pool: &PgPool,
    mut on_progress: impl FnMut(i64, i64),
) -> Result<StoreVerification, StoreError> {
    let head: i64 = sqlx::query_scalar("SELECT coalesce(max(global_position), 0) FROM event_store.events")
        .fetch_one(pool)
        .await
        .map_err(db_error)?;
    let anchors: Vec<Anchor> = sqlx::query(
        "SELECT position, previous_position, hash, anchored_at FROM event_store.anchors WHERE position <= $1 \
         ORDER BY position",
    )
    .bind(head)
    .fetch_all(pool)
    .await
    .map_err(db_error)?
    .iter()
    .map(anchor_from)
    .collect::<Result<_, _>>()?;
    let mut out = StoreVerification::default();
    let mut streams: HashMap<Uuid, (i64, Hash)> = HashMap::new();
    let mut next_anchor = anchors.iter().peekable();
    let mut builder = AnchorBuilder::after(&GENESIS);
    let mut anchor_from_position = 0i64;
    let mut at = 0i64;
    let sql = format!(
        "SELECT {EVENT_COLUMNS}, h.previous AS h_previous, h.hash AS h_hash FROM event_store.events \
         LEFT JOIN event_store.event_hashes h USING (global_position, stream_id, stream_version) \
         WHERE global_position > $1 AND global_position <= $2 ORDER BY global_position LIMIT 2000"
    );
    'scan: while at < head {
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql.as_str()))
            .bind(at)
            .bind(head)
            .fetch_all(pool)
            .await
            .map_err(db_error)?;
        if rows.is_empty() {
            break;
        }
        for row in &rows {
            let e = event_from_row(row)?;
            if e.global_position != at + 1 {
                out.first_mismatch =
                    Some(Mismatch::at(at + 1, None, "the event at this position is missing from the log"));
                break 'scan;
            }
            at = e.global_position;
            let (last_version, previous) = streams.get(&e.stream_id).copied().unwrap_or((0, GENESIS));
            if e.stream_version != last_version + 1 {
                out.first_mismatch =
                    Some(mismatch(&e, format!("stream version {} follows version {last_version}", e.stream_version)));
                break 'scan;
            }
            let stored_previous: Option<Vec<u8>> = row.try_get("h_previous").map_err(db_error)?;
            let stored_hash: Option<Vec<u8>> = row.try_get("h_hash").map_err(db_error)?;
            let (Some(stored_previous), Some(stored_hash)) = (stored_previous, stored_hash) else {
                out.first_mismatch = Some(mismatch(&e, "the event has no recorded hash"));
                break 'scan;
            };
            if stored_previous != previous {
                out.first_mismatch = Some(mismatch(&e, "the recorded chain does not link to the previous event"));
                break 'scan;
            }
            let hash = event_hash(&previous, &e);
            if stored_hash != hash {
                out.first_mismatch = Some(mismatch(
                    &e,
                    format!(
                        "its content does not match its recorded hash {} (recomputed {}): it was altered after it \
                         was recorded",
                        hex::encode(&stored_hash),
                        to_hex(&hash)
                    ),
                ));
                break 'scan;
            }
            streams.insert(e.stream_id, (e.stream_version, hash));
            out.events += 1;
            out.head_hash = Some(to_hex(&hash));
            builder.add(&hash);
            if let Some(a) = next_anchor.next_if(|a| a.position == at) {
                let recomputed = std::mem::replace(&mut builder, AnchorBuilder::after(&GENESIS)).finish();
                if a.previous_position != anchor_from_position || a.hash != to_hex(&recomputed) {
                    out.first_mismatch = Some(Mismatch {
                        global_position: a.position,
                        event_id: None,
                        stream_id: None,
                        stream_version: None,
                        event_type: None,
                        problem: format!(
                            "the anchor taken at {} over positions {}..={} does not match the log",
                            a.anchored_at,
                            anchor_from_position + 1,
                            a.position
                        ),
                    });
                    break 'scan;
                }
                builder = AnchorBuilder::after(&recomputed);
                anchor_from_position = a.position;
                out.anchors += 1;
                out.anchored_through = a.position;
            }
        }
        on_progress(at, head);
    }
    out.streams = streams.len();
    Ok(out)
}

/// One stream's chain, for showing beside its history.
#[derive(Debug, Clone)]
pub struct StreamVerification {
    /// Events in the stream.
    pub events: i64,
    /// Per event (by version): its hash (hex) and whether the chain holds up to it.
    pub hashes: Vec<(i64, i64, String, bool)>,
    /// The first problem.
    pub first_mismatch: Option<Mismatch>,
    /// The newest anchor, if it covers the stream's last event.
    pub anchor: Option<Anchor>,
}

/// Checks one stream's chain (its anchors are checked by [`verify_store`]).
pub async fn verify_stream(conn: &mut PgConnection, stream_id: Uuid) -> Result<StreamVerification, StoreError> {
    let sql = format!(
        "SELECT {EVENT_COLUMNS}, h.previous AS h_previous, h.hash AS h_hash FROM event_store.events \
         LEFT JOIN event_store.event_hashes h USING (global_position, stream_id, stream_version) \
         WHERE stream_id = $1 ORDER BY stream_version"
    );
    let rows = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(stream_id).fetch_all(&mut *conn).await.map_err(db_error)?;
    let mut out = StreamVerification { events: rows.len() as i64, hashes: vec![], first_mismatch: None, anchor: None };
    let mut previous = GENESIS;
    let mut last_position = 0;
    for (i, row) in rows.iter().enumerate() {
        let e = event_from_row(row)?;
        last_position = e.global_position;
        let stored_previous: Option<Vec<u8>> = row.try_get("h_previous").map_err(db_error)?;
        let stored_hash: Option<Vec<u8>> = row.try_get("h_hash").map_err(db_error)?;
        let hash = event_hash(&previous, &e);
        let problem = if e.stream_version != i as i64 + 1 {
            Some(format!("stream version {} where {} was expected", e.stream_version, i + 1))
        } else {
            match (stored_previous, stored_hash) {
                (Some(p), Some(h)) if p == previous && h == hash => None,
                (Some(_), Some(_)) => Some("its content does not match its recorded hash".to_string()),
                _ => Some("the event has no recorded hash".to_string()),
            }
        };
        let ok = problem.is_none() && out.first_mismatch.is_none();
        if let Some(p) = problem
            && out.first_mismatch.is_none()
        {
            out.first_mismatch = Some(mismatch(&e, p));
        }
        out.hashes.push((e.global_position, e.stream_version, to_hex(&hash), ok));
        previous = hash;
    }
    out.anchor = latest_anchor(conn).await?.filter(|a| a.position >= last_position && last_position > 0);
    Ok(out)
}
