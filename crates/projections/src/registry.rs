//! Projection generations: which schema holds which build of a read model, and which one
//! serves queries.

use chrono::{DateTime, Utc};
use sqlx::{AssertSqlSafe, PgPool, Row, postgres::PgRow};

use crate::{Projection, ProjectionError};

/// Lifecycle of a generation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// Being built from the log; not serving.
    Building,
    /// Serving queries.
    Active,
    /// Replaced by a newer generation; kept for comparison until dropped.
    Retired,
}

impl Status {
    fn as_str(self) -> &'static str {
        match self {
            Status::Building => "building",
            Status::Active => "active",
            Status::Retired => "retired",
        }
    }

    fn parse(s: &str) -> Status {
        match s {
            "active" => Status::Active,
            "retired" => Status::Retired,
            _ => Status::Building,
        }
    }
}

impl std::fmt::Display for Status {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One build of a projection.
#[derive(Debug, Clone, PartialEq)]
pub struct Generation {
    /// Projection name.
    pub name: String,
    /// 1, 2, 3…
    pub generation: i32,
    /// The schema holding its tables.
    pub schema: String,
    /// Building, active or retired.
    pub status: Status,
    /// Fingerprint of the table layout it was built with.
    pub fingerprint: String,
    /// The topic it consumes.
    pub topic: String,
    /// When it was created.
    pub created_at: DateTime<Utc>,
    /// When it started serving.
    pub activated_at: Option<DateTime<Utc>>,
}

impl Generation {
    /// The consumer group that builds this generation. It names the topic too, so two
    /// installations sharing a broker (each with its own topic) never share a group.
    pub fn consumer_group(&self) -> String {
        format!("{}.projection.{}.g{}", self.topic, self.name, self.generation)
    }
}

/// A stable fingerprint of a table layout (FNV-1a over the DDL with whitespace collapsed).
pub fn fingerprint(ddl: &str) -> String {
    let normalised: Vec<&str> = ddl.split_whitespace().collect();
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in normalised.join(" ").bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    format!("{h:016x}")
}

fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 40
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
}

/// Whether `schema` is a generation's schema name as [`schema_name`] makes them.
pub(crate) fn valid_schema(schema: &str) -> bool {
    schema.len() <= 63
        && schema.strip_prefix("p_").and_then(|rest| rest.rsplit_once("_g")).is_some_and(|(name, generation)| {
            valid_name(name) && !generation.is_empty() && generation.chars().all(|c| c.is_ascii_digit())
        })
}

/// The schema name of a generation. Only names of our own making reach SQL.
pub fn schema_name(name: &str, generation: i32) -> Result<String, ProjectionError> {
    if !valid_name(name) {
        return Err(ProjectionError::Other(format!("invalid projection name `{name}`")));
    }
    Ok(format!("p_{name}_g{generation}"))
}

fn from_row(row: &PgRow) -> Result<Generation, sqlx::Error> {
    let status: String = row.try_get("status")?;
    Ok(Generation {
        name: row.try_get("name")?,
        generation: row.try_get("generation")?,
        schema: row.try_get("schema_name")?,
        status: Status::parse(&status),
        fingerprint: row.try_get("layout_fingerprint")?,
        topic: row.try_get("topic")?,
        created_at: row.try_get("created_at")?,
        activated_at: row.try_get("activated_at")?,
    })
}

const COLUMNS: &str = "name, generation, schema_name, status, layout_fingerprint, topic, created_at, activated_at";

/// The channel on which a change of the generation serving a read model is announced (payload:
/// the projection's name), on commit of the transaction that made it.
pub const SWITCH_CHANNEL: &str = "kefu_projection_switched";

async fn notify_switch(conn: &mut sqlx::PgConnection, name: &str) -> Result<(), ProjectionError> {
    sqlx::query("SELECT pg_notify($1, $2)").bind(SWITCH_CHANNEL).bind(name).execute(conn).await?;
    Ok(())
}

/// Every active generation, by projection name.
pub async fn all_active(pool: &PgPool) -> Result<Vec<Generation>, ProjectionError> {
    let rows = sqlx::query(AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM projections.generations WHERE status = 'active' ORDER BY name"
    )))
    .fetch_all(pool)
    .await?;
    Ok(rows.iter().map(from_row).collect::<Result<_, _>>()?)
}

/// The generation serving queries, if any.
pub async fn active(pool: &PgPool, name: &str) -> Result<Option<Generation>, ProjectionError> {
    let row = sqlx::query(AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM projections.generations WHERE name = $1 AND status = 'active'"
    )))
    .bind(name)
    .fetch_optional(pool)
    .await?;
    Ok(row.as_ref().map(from_row).transpose()?)
}

/// One generation.
pub async fn get(pool: &PgPool, name: &str, generation: i32) -> Result<Option<Generation>, ProjectionError> {
    let row = sqlx::query(AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM projections.generations WHERE name = $1 AND generation = $2"
    )))
    .bind(name)
    .bind(generation)
    .fetch_optional(pool)
    .await?;
    Ok(row.as_ref().map(from_row).transpose()?)
}

/// Every generation of every projection, newest first per projection.
pub async fn list(pool: &PgPool) -> Result<Vec<Generation>, ProjectionError> {
    let rows = sqlx::query(AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM projections.generations ORDER BY name, generation DESC"
    )))
    .fetch_all(pool)
    .await?;
    Ok(rows.iter().map(from_row).collect::<Result<_, _>>()?)
}

/// Creates the next generation of a projection: a fresh schema with the projection's tables
/// and its stream-version guard, registered with `status`.
pub async fn create(
    pool: &PgPool,
    projection: &dyn Projection,
    topic: &str,
    status: Status,
) -> Result<Generation, ProjectionError> {
    let name = projection.name();
    let mut tx = pool.begin().await?;
    // Serialise generation numbering per projection.
    sqlx::query("SELECT pg_advisory_xact_lock(hashtext('kefu-projection:' || $1))")
        .bind(name)
        .execute(&mut *tx)
        .await?;
    if status == Status::Active {
        let existing: Option<i32> =
            sqlx::query_scalar("SELECT generation FROM projections.generations WHERE name = $1 AND status = 'active'")
                .bind(name)
                .fetch_optional(&mut *tx)
                .await?;
        if existing.is_some() {
            return Err(ProjectionError::Other(format!("{name} already has an active generation")));
        }
    }
    let generation: i32 =
        sqlx::query_scalar("SELECT coalesce(max(generation), 0) + 1 FROM projections.generations WHERE name = $1")
            .bind(name)
            .fetch_one(&mut *tx)
            .await?;
    let schema = schema_name(name, generation)?;
    sqlx::raw_sql(AssertSqlSafe(format!(
        "DROP SCHEMA IF EXISTS {schema} CASCADE; CREATE SCHEMA {schema}; SET LOCAL search_path TO {schema};"
    )))
    .execute(&mut *tx)
    .await?;
    sqlx::raw_sql(AssertSqlSafe(projection.schema()))
        .execute(&mut *tx)
        .await
        .map_err(|e| ProjectionError::Other(format!("the {name} table layout does not apply: {e}")))?;
    sqlx::raw_sql("CREATE TABLE _stream_versions (stream_id uuid PRIMARY KEY, version bigint NOT NULL);")
        .execute(&mut *tx)
        .await?;
    let row = sqlx::query(AssertSqlSafe(format!(
        "INSERT INTO projections.generations (name, generation, schema_name, status, layout_fingerprint, topic, activated_at) \
         VALUES ($1, $2, $3, $4, $5, $6, CASE WHEN $4 = 'active' THEN clock_timestamp() END) RETURNING {COLUMNS}"
    )))
    .bind(name)
    .bind(generation)
    .bind(&schema)
    .bind(status.as_str())
    .bind(fingerprint(projection.schema()))
    .bind(topic)
    .fetch_one(&mut *tx)
    .await?;
    let created = from_row(&row)?;
    if status == Status::Active {
        notify_switch(&mut tx, name).await?;
    }
    tx.commit().await?;
    tracing::info!(projection = name, generation, schema = %created.schema, status = %status, "created projection generation");
    Ok(created)
}

/// The active generation, creating the first one (active at once) when there is none.
pub async fn ensure_active(
    pool: &PgPool,
    projection: &dyn Projection,
    topic: &str,
) -> Result<Generation, ProjectionError> {
    if let Some(g) = active(pool, projection.name()).await? {
        return Ok(g);
    }
    match create(pool, projection, topic, Status::Active).await {
        Ok(g) => Ok(g),
        // Another process created it first.
        Err(_) => active(pool, projection.name())
            .await?
            .ok_or_else(|| ProjectionError::Other(format!("no active generation of {}", projection.name()))),
    }
}

/// Makes `generation` the one serving queries; the previous active one is retired.
pub async fn activate(pool: &PgPool, name: &str, generation: i32) -> Result<(), ProjectionError> {
    let mut tx = pool.begin().await?;
    sqlx::query(
        "UPDATE projections.generations SET status = 'retired', retired_at = clock_timestamp() \
         WHERE name = $1 AND status = 'active' AND generation <> $2",
    )
    .bind(name)
    .bind(generation)
    .execute(&mut *tx)
    .await?;
    let updated = sqlx::query(
        "UPDATE projections.generations SET status = 'active', activated_at = clock_timestamp() \
         WHERE name = $1 AND generation = $2",
    )
    .bind(name)
    .bind(generation)
    .execute(&mut *tx)
    .await?
    .rows_affected();
    if updated != 1 {
        return Err(ProjectionError::Other(format!("{name} has no generation {generation}")));
    }
    notify_switch(&mut tx, name).await?;
    tx.commit().await?;
    tracing::info!(projection = name, generation, "projection generation now serves queries");
    Ok(())
}

/// Drops the tables of retired generations older than the newest `keep` retired ones.
pub async fn drop_retired(pool: &PgPool, name: &str, keep: usize) -> Result<Vec<String>, ProjectionError> {
    let retired: Vec<Generation> =
        list(pool).await?.into_iter().filter(|g| g.name == name && g.status == Status::Retired).collect();
    let mut dropped = Vec::new();
    for g in retired.into_iter().skip(keep) {
        let mut tx = pool.begin().await?;
        sqlx::raw_sql(AssertSqlSafe(format!("DROP SCHEMA IF EXISTS {} CASCADE", g.schema))).execute(&mut *tx).await?;
        sqlx::query("DELETE FROM projections.generations WHERE name = $1 AND generation = $2")
            .bind(name)
            .bind(g.generation)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        dropped.push(g.schema);
    }
    Ok(dropped)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_schema_names_of_our_making_are_valid() {
        assert!(valid_schema(&schema_name("customer360", 12).unwrap()));
        assert!(valid_schema("p_service_requests_g1"));
        for bad in ["public", "p_x_g", "p_x_gA", "p_X_g1", "p_x; DROP TABLE y_g1", "p__g1", "q_x_g1"] {
            assert!(!valid_schema(bad), "{bad}");
        }
    }

    #[test]
    fn read_models_name_their_tables_apart() {
        // The read connections see every active generation on one search path.
        let mut seen = std::collections::HashMap::new();
        for p in crate::all() {
            let ddl = p.schema().split_whitespace().collect::<Vec<_>>();
            let created: Vec<&str> = ddl
                .windows(3)
                .filter(|w| w[0].eq_ignore_ascii_case("CREATE") && w[1].eq_ignore_ascii_case("TABLE"))
                .map(|w| w[2].trim_end_matches('('))
                .collect();
            for table in p.tables() {
                assert!(created.contains(table), "{} lists {table} but does not create it", p.name());
            }
            for table in created {
                assert!(p.tables().contains(&table), "{} creates {table} but does not list it", p.name());
                if let Some(other) = seen.insert(table, p.name()) {
                    panic!("table {table} is in both {other} and {}", p.name());
                }
            }
        }
    }

    #[test]
    fn fingerprints_ignore_whitespace_only() {
        assert_eq!(fingerprint("CREATE TABLE a (x int);"), fingerprint("CREATE  TABLE a\n  (x int);"));
        assert_ne!(fingerprint("CREATE TABLE a (x int);"), fingerprint("CREATE TABLE a (x bigint);"));
    }

    #[test]
    fn only_plain_names_become_schemas() {
        assert_eq!(schema_name("customer360", 2).unwrap(), "p_customer360_g2");
        assert!(schema_name("x; DROP TABLE y", 1).is_err());
        assert!(schema_name("Upper", 1).is_err());
    }
}
