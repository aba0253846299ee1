//! # kefu-testkit (dev-only)
//!
//! Connects tests to the private PostgreSQL and broker that `deploy/test.sh` starts, and gives
//! each test its own database and its own topic so tests run in parallel without seeing each
//! other. The locations come from `KEFU_TEST_DATABASE_URL` and `KEFU_TEST_BROKERS`, or from
//! `.kefu/test/env`, which `deploy/test.sh services` writes for running `cargo test` by hand.

use std::{path::PathBuf, sync::Once, time::Duration};

use anyhow::{Context, Result, bail};
use rdkafka::{
    ClientConfig,
    admin::{AdminClient, AdminOptions, NewTopic, TopicReplication},
    client::DefaultClientContext,
};
use sqlx::{Connection, PgConnection, PgPool, postgres::PgPoolOptions};
use uuid::Uuid;

/// The repository root.
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn setting(name: &str) -> Result<String> {
    if let Ok(v) = std::env::var(name) {
        return Ok(v);
    }
    let file = repo_root().join(".kefu/test/env");
    if let Ok(text) = std::fs::read_to_string(&file) {
        for line in text.lines() {
            if let Some(v) = line.strip_prefix(&format!("{name}=")) {
                return Ok(v.trim().to_string());
            }
        }
    }
    bail!(
        "{name} is not set. Run the suite with `deploy/test.sh`, or start the test services with \
         `deploy/test.sh services` and run cargo test again"
    )
}

/// Logs to the test output (captured unless the test fails). `RUST_LOG` filters.
pub fn init_tracing() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| {
            tracing_subscriber::EnvFilter::new("info,sqlx=warn,librdkafka=warn")
        });
        let _ = tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_test_writer()
            .try_init();
    });
}

/// URL of the test cluster's maintenance database.
pub fn admin_database_url() -> Result<String> {
    setting("KEFU_TEST_DATABASE_URL")
}

/// Bootstrap servers of the test broker.
pub fn brokers() -> Result<String> {
    setting("KEFU_TEST_BROKERS")
}

/// A database of its own for one test.
pub struct TestDatabase {
    /// Its URL.
    pub url: String,
    /// Its name.
    pub name: String,
    /// A small pool on it.
    pub pool: PgPool,
}

/// Creates an empty database with a unique name.
pub async fn fresh_database() -> Result<TestDatabase> {
    init_tracing();
    let admin = admin_database_url()?;
    let name = format!("t_{}", Uuid::new_v4().simple());
    let mut conn = PgConnection::connect(&admin)
        .await
        .with_context(|| format!("cannot reach the test PostgreSQL at {admin}"))?;
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .execute(&mut conn)
        .await
        .context("CREATE DATABASE")?;
    conn.close().await.ok();
    let url = replace_database(&admin, &name);
    let pool = PgPoolOptions::new()
        .max_connections(8)
        .acquire_timeout(Duration::from_secs(30))
        .connect(&url)
        .await?;
    Ok(TestDatabase { url, name, pool })
}

/// The same server URL with another database name.
pub fn replace_database(url: &str, database: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (url, None),
    };
    let base = match base.rfind('/') {
        Some(i) if i > "postgres://".len() => &base[..i],
        _ => base,
    };
    match query {
        Some(q) => format!("{base}/{database}?{q}"),
        None => format!("{base}/{database}"),
    }
}

/// A topic name no other test uses.
pub fn unique_topic(prefix: &str) -> String {
    format!("{prefix}-{}", Uuid::new_v4().simple())
}

/// Creates a topic with `partitions` partitions on the test broker.
pub async fn create_topic(name: &str, partitions: i32) -> Result<()> {
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", brokers()?)
        .create()?;
    let results = admin
        .create_topics(
            &[NewTopic::new(name, partitions, TopicReplication::Fixed(1))],
            &AdminOptions::new().operation_timeout(Some(Duration::from_secs(10))),
        )
        .await?;
    for r in results {
        if let Err((topic, code)) = r {
            bail!("cannot create topic {topic}: {code}");
        }
    }
    Ok(())
}

/// Polls `check` until it returns `Some` or `timeout` passes.
pub async fn eventually<T, F, Fut>(timeout: Duration, what: &str, mut check: F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<Option<T>>>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        match check().await {
            Ok(Some(v)) => return Ok(v),
            Ok(None) => {}
            Err(e) if tokio::time::Instant::now() >= deadline => return Err(e),
            Err(_) => {}
        }
        if tokio::time::Instant::now() >= deadline {
            bail!("timed out after {timeout:?} waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::replace_database;

    #[test]
    fn database_names_are_replaced() {
        assert_eq!(
            replace_database("postgres://kefu@127.0.0.1:5432/postgres", "t_1"),
            "postgres://kefu@127.0.0.1:5432/t_1"
        );
        assert_eq!(
            replace_database(
                "postgres://kefu@127.0.0.1:5432/postgres?sslmode=disable",
                "t_1"
            ),
            "postgres://kefu@127.0.0.1:5432/t_1?sslmode=disable"
        );
        assert_eq!(
            replace_database("postgres://kefu@h:1", "t"),
            "postgres://kefu@h:1/t"
        );
    }
}
