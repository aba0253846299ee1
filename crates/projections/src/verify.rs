//! Comparing generations: a digest of every table, so a rebuild can be checked row for row
//! against the generation it replaces.

use sqlx::{AssertSqlSafe, PgPool, Row};

use crate::{Projection, ProjectionError, registry::Generation};

/// Row count and content digest of one table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableDigest {
    /// Table name.
    pub table: String,
    /// Rows.
    pub rows: i64,
    /// md5 over the rows' JSON text in sorted order.
    pub digest: String,
}

/// Digests of a generation's tables (the projection's tables and the stream-version guard).
pub async fn digests(
    pool: &PgPool,
    projection: &dyn Projection,
    generation: &Generation,
) -> Result<Vec<TableDigest>, ProjectionError> {
    let mut out = Vec::new();
    for table in projection.tables().iter().copied().chain(["_stream_versions"]) {
        let row = sqlx::query(AssertSqlSafe(format!(
            "SELECT count(*) AS n, coalesce(md5(string_agg(x, '|' ORDER BY x)), '') AS digest \
             FROM (SELECT to_jsonb(t)::text AS x FROM {}.{table} t) rows",
            generation.schema
        )))
        .fetch_one(pool)
        .await?;
        out.push(TableDigest { table: table.to_string(), rows: row.try_get("n")?, digest: row.try_get("digest")? });
    }
    Ok(out)
}
