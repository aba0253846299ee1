//! Embedded migrations. Each crate that owns tables owns a schema, its migration files and its
//! own history table in that schema, so crates migrate independently. Migrations are never
//! edited once released; fixes are new migrations.

use std::borrow::Cow;

use kefu_app::StoreError;
use sqlx::{
    AssertSqlSafe, PgPool, SqlSafeStr,
    migrate::{Migration, MigrationType, Migrator},
};

use crate::db_error;

/// A migrator over SQL embedded in the binary.
///
/// `migrations` are `(version, description, sql)`; the history goes to
/// `<schema>._migrations`.
pub fn embedded(schema: &'static str, migrations: &[(i64, &'static str, &'static str)]) -> Migrator {
    let list = migrations
        .iter()
        .map(|(version, description, sql)| {
            Migration::new(
                *version,
                Cow::Borrowed(*description),
                MigrationType::Simple,
                AssertSqlSafe(*sql).into_sql_str(),
                false,
            )
        })
        .collect();
    let mut migrator = Migrator::with_migrations(list);
    migrator.create_schema(schema);
    migrator.dangerous_set_table_name(format!("{schema}._migrations"));
    migrator
}

/// The event store's migrations.
pub fn event_store() -> Migrator {
    embedded(
        "event_store",
        &[
            (1, "event store", include_str!("../migrations/0001_event_store.sql")),
            (2, "integrity", include_str!("../migrations/0002_integrity.sql")),
            (3, "batch token", include_str!("../migrations/0003_batch_token.sql")),
            (4, "lean append", include_str!("../migrations/0004_lean_append.sql")),
        ],
    )
}

/// Applies the event store's migrations.
pub async fn run(pool: &PgPool) -> Result<(), StoreError> {
    // Every append since the chain exists is chained; only history from before it needs a
    // backfill, once, right after the migration that creates it (not on every start).
    let chain_existed: bool = sqlx::query_scalar("SELECT to_regclass('event_store.event_hashes') IS NOT NULL")
        .fetch_one(pool)
        .await
        .map_err(db_error)?;
    event_store().run(pool).await.map_err(|e| match e {
        sqlx::migrate::MigrateError::Execute(e) => db_error(e),
        other => StoreError::Database(format!("event store migration failed: {other}")),
    })?;
    if !chain_existed {
        let chained = crate::integrity::backfill(pool).await?;
        if chained > 0 {
            tracing::info!(streams = chained, "chained the hashes of earlier history");
        }
    }
    Ok(())
}
