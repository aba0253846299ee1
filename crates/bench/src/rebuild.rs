//! Rebuilds of every read model from a long log (issue: read models in bulk).
//!
//! The log is the peers' workload (`peers`: complaints filed, acknowledged and resolved over
//! 5,000 customers) written through the command service, relayed once to a fresh topic, then
//! each read model is rebuilt from that topic as `kefu projections rebuild` does it: a new
//! generation from offset 0 until it has caught up. One JSON line per read model: events/s,
//! CPU of this process and of PostgreSQL, and this process's peak memory during the rebuild.
//!
//! `--database NAME` keeps the log: the database is created and filled on the first run and
//! reused by later ones (only the relay to a fresh topic is repeated).

use std::{sync::Arc, time::Instant};

use anyhow::{Context, Result};
use kefu_app::CommandService;
use kefu_bus::{
    BusConfig,
    relay::{Relay, RelayOptions},
};
use kefu_projections::runner::{self, RunnerOptions, SwitchPolicy};
use kefu_store::PgEventStore;
use serde_json::json;
use sqlx::Connection;
use uuid::Uuid;

use crate::{peers, report, usage};

#[derive(clap::Args, Debug)]
pub struct RebuildArgs {
    /// Complaints written when the log is created (each: file, acknowledge, resolve).
    #[arg(long, default_value_t = 50_000)]
    complaints: usize,
    /// A database to keep the log in (created and filled when absent, reused when present).
    #[arg(long)]
    database: Option<String>,
    /// Kafka partitions of the topic the log is relayed to.
    #[arg(long, default_value_t = 6)]
    partitions: i32,
    /// Read models to rebuild (default: all).
    #[arg(long, value_delimiter = ',')]
    only: Vec<String>,
    /// Most records per transaction while rebuilding.
    #[arg(long, default_value_t = RunnerOptions::default().rebuild_batch)]
    batch: usize,
    /// How far a rebuild folding the log in memory may grow the process (MiB); 0 rebuilds
    /// batch by batch, as read models without an in-memory fold do.
    #[arg(long, default_value_t = runner::DEFAULT_REBUILD_MEMORY_MB)]
    memory_mb: usize,
    /// PostgreSQL's postmaster, to report its CPU time.
    #[arg(long)]
    postgres_pid: Option<u32>,
}

/// Resets this process's peak-memory mark (VmHWM), so the next reading covers what follows.
fn reset_peak_memory() {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

async fn log_database(args: &RebuildArgs) -> Result<(String, sqlx::PgPool)> {
    let admin = kefu_testkit::admin_database_url()?;
    let name = args.database.clone().unwrap_or_else(|| format!("bench_log_{}", Uuid::new_v4().simple()));
    anyhow::ensure!(
        name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_'),
        "--database takes lower-case letters, digits and underscores, not {name:?}"
    );
    let mut conn = sqlx::PgConnection::connect(&admin).await.with_context(|| format!("cannot reach {admin}"))?;
    let exists: bool = sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)")
        .bind(&name)
        .fetch_one(&mut conn)
        .await?;
    if !exists {
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}"))).execute(&mut conn).await?;
    }
    conn.close().await.ok();
    let url = kefu_testkit::replace_database(&admin, &name);
    let pool = sqlx::postgres::PgPoolOptions::new().max_connections(40).connect(&url).await?;
    kefu_store::migrate::run(&pool).await?;
    kefu_projections::migrate(&pool).await?;
    Ok((name, pool))
}

pub async fn rebuild(args: &RebuildArgs) -> Result<()> {
    kefu_testkit::init_tracing();
    let (name, pool) = log_database(args).await?;
    let store = PgEventStore::new(pool.clone());
    let mut head = store.head().await?;
    if head == 0 {
        let service = CommandService::new(Arc::new(store.clone()));
        let run = Uuid::now_v7();
        let started = Instant::now();
        peers::register_customers(&service, run, args.complaints).await?;
        let figures = peers::command_service(&service, run, args.complaints, 32).await?;
        head = store.head().await?;
        report(
            "log",
            head as u64,
            "events",
            started.elapsed(),
            json!({"database": name, "commands": figures.commands, "complaints": args.complaints}),
        );
    } else {
        println!("log      {head} events kept in database {name}");
    }

    let mut bus = BusConfig::new(kefu_testkit::brokers()?).with_topic(kefu_testkit::unique_topic("rebuild"));
    bus.partitions = args.partitions;
    kefu_bus::admin::ensure_topic(&bus).await?;
    let relay = Relay::new(store.clone(), bus.clone(), RelayOptions::default())?;
    let started = Instant::now();
    let published = relay.publish_pending().await?;
    report("relay", published as u64, "events", started.elapsed(), json!({}));

    let options =
        RunnerOptions { rebuild_batch: args.batch, rebuild_memory: args.memory_mb << 20, ..RunnerOptions::default() };
    let watch = usage::Watch { postgres: args.postgres_pid, gateway: None };
    for projection in kefu_projections::all() {
        if !args.only.is_empty() && !args.only.iter().any(|o| o == projection.name()) {
            continue;
        }
        reset_peak_memory();
        let mark = watch.mark();
        let r = runner::rebuild(&pool, &bus, projection.clone(), &options, SwitchPolicy::Always, |_| {}).await?;
        let used = watch.since(mark);
        // The figure is the time to catch up (a consumer group's join included where the log
        // is applied batch by batch); comparing with the generation it replaces and switching
        // come after and are reported beside it.
        report(
            &format!("rebuild-{}", projection.name()),
            r.records as u64,
            "events",
            r.caught_up_after,
            json!({"generation": r.generation.generation, "batch": args.batch, "cpu_s": used.cpu_s,
                "postgres_cpu_s": used.postgres_cpu_s, "peak_rss_mb": used.peak_rss_mb,
                "with_compare_and_switch_s": r.elapsed.as_secs_f64(), "memory_mb": args.memory_mb,
                "in_memory_records": r.in_memory.map(|o| o.records),
                "budget_reached": r.in_memory.map(|o| o.budget_reached),
                "in_memory_fold_s": r.in_memory.map(|o| o.folding.as_secs_f64()),
                "in_memory_write_s": r.in_memory.map(|o| o.writing.as_secs_f64())}),
        );
        kefu_projections::registry::drop_retired(&pool, projection.name(), 0).await?;
    }
    pool.close().await;
    Ok(())
}
