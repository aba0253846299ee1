//! # kefu-bench
//!
//! Measures kefu's write and delivery paths against a real PostgreSQL and broker and prints
//! the numbers (a table, and one JSON line per scenario for tooling). It never asserts a
//! number: targets are judged by people reading the report (see docs/benchmarks.md).
//!
//! ```sh
//! deploy/test.sh services                       # private PostgreSQL + broker
//! cargo run --release -p kefu-bench -- --customers 200 --contacts 20 --writers 8
//! ```
//!
//! Scenarios, each on a fresh database and topic:
//! - `append`: concurrent writers register customers and log contacts through the command
//!   service (load, decide, append with expected version, journal) — commands/s and latency;
//! - `relay`: the relay publishes the whole log to Kafka — events/s;
//! - `project`: the customer 360 projector consumes the whole log — events/s;
//! - `import`: `kefu import complaints` logic on the CFPB sample (on its own fresh database),
//!   then again (the idempotent re-run) — rows/s and events/s;
//! - `as-of`: one customer with a long history (`--history` contacts); reads of
//!   `customer(asOf: {position})` at random points, from snapshots (`as-of`) and folded from
//!   the first event (`as-of-full`, what a read without snapshots costs) — reads/s, p50, p99.
//!
//! And the peers' workload ([`peers`]; `deploy/bench.sh` runs it beside cqrs-es and esrs on a
//! PostgreSQL with fsync on), one JSON line each:
//! - `kefu-bench peers`: the command service in this process;
//! - `kefu-bench peers-graphql --url …`: one mutation per HTTP request against a gateway.
//!
//! And the reads of agent desktops ([`reads`]): `kefu-bench reads --url … --database-url …`,
//! the customer 360 and the complaint backlog through GraphQL and in plain SQL, at 1, 50 and
//! 200 clients.
//!
//! And rebuilds ([`rebuild`]): `kefu-bench rebuild --complaints N [--database NAME]`, every
//! read model rebuilt from a log of the peers' workload — events/s, CPU, peak memory.

#![allow(clippy::print_stdout)]

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use anyhow::Result;
use clap::{Parser, Subcommand};
use kefu_app::{Actor, ActorKind, CommandMeta, CommandService};
use kefu_bus::{
    BusConfig,
    relay::{Relay, RelayOptions},
};
use kefu_domain::{
    customer::{CustomerCommand, examples},
    interaction::{InteractionCommand, examples as interactions},
};
use kefu_projections::{
    progress,
    runner::{ProjectionRunner, RunnerOptions},
};
use kefu_store::PgEventStore;
use uuid::Uuid;

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

mod peers;
mod reads;
mod rebuild;
mod usage;

pub(crate) use usage::Usage;

/// Benchmark settings.
#[derive(Parser, Debug)]
#[command(name = "kefu-bench", about = "Measures kefu's append, relay and projection throughput.")]
struct Args {
    /// A single scenario instead of the standard set.
    #[command(subcommand)]
    scenario: Option<Scenario>,
    /// Customers registered (each is one command of three events).
    #[arg(long, default_value_t = 200)]
    customers: usize,
    /// Contacts logged per customer (one command, one event each).
    #[arg(long, default_value_t = 20)]
    contacts: usize,
    /// Concurrent writers.
    #[arg(long, default_value_t = 8)]
    writers: usize,
    /// Kafka partitions.
    #[arg(long, default_value_t = 6)]
    partitions: i32,
    /// The CSV for the import scenario (skipped when the file is absent).
    #[arg(long, default_value = "../shared/data/cfpb-complaints-2023-sample.csv")]
    import_file: std::path::PathBuf,
    /// Rows in flight during the import.
    #[arg(long, default_value_t = 8)]
    import_concurrency: usize,
    /// Contacts of the one customer read as of random points (0 skips the scenario).
    #[arg(long, default_value_t = 2000)]
    history: usize,
    /// Reads as of random points, each way.
    #[arg(long, default_value_t = 200)]
    as_of_reads: usize,
}

#[derive(Subcommand, Debug)]
enum Scenario {
    /// The peers' workload through the command service in this process.
    Peers(PeersArgs),
    /// The peers' workload through GraphQL against a running gateway.
    PeersGraphql(GraphqlArgs),
    /// Only the CFPB import and re-import (`--import-file`, `--import-concurrency`).
    Import,
    /// The customer 360 and the complaint backlog through GraphQL and in plain SQL.
    Reads(reads::ReadsArgs),
    /// Every read model rebuilt from a long log (the peers' workload, kept with `--database`).
    Rebuild(rebuild::RebuildArgs),
}

#[derive(clap::Args, Debug)]
struct PeersArgs {
    /// Complaints (each filed, acknowledged and resolved: three commands).
    #[arg(long, default_value_t = 20000)]
    complaints: usize,
    /// Concurrent clients.
    #[arg(long, default_value_t = 32)]
    concurrency: usize,
    /// PostgreSQL's postmaster, to report its CPU time.
    #[arg(long)]
    postgres_pid: Option<u32>,
    /// Write statements the writer keeps on their way at once (in process only).
    #[arg(long, default_value_t = kefu_store::WriterOptions::default().flights)]
    writer_flights: usize,
}

#[derive(clap::Args, Debug)]
struct GraphqlArgs {
    #[command(flatten)]
    peers: PeersArgs,
    /// The gateway's GraphQL endpoint.
    #[arg(long)]
    url: String,
    /// The gateway's process, to report its CPU time and peak memory.
    #[arg(long)]
    gateway_pid: Option<u32>,
    /// What the gateway runs beside it, for the report (e.g. `kefu run`).
    #[arg(long, default_value = "kefu serve")]
    gateway: String,
    /// Every n-th resolution is followed until the read model shows it (its time to visible,
    /// reported as `visible`, with the slowest five and when they were answered); 0 follows
    /// none. Needs the projectors running (`kefu run`): the clock starts once the request read
    /// model has consumed the customers' registrations.
    #[arg(long, default_value_t = 0)]
    visible_every: usize,
}

pub(crate) fn actor() -> Actor {
    Actor { id: "bench".into(), name: None, kind: ActorKind::Import, roles: vec![] }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

pub(crate) fn report(scenario: &str, items: u64, unit: &str, elapsed: Duration, extra: serde_json::Value) {
    let rate = items as f64 / elapsed.as_secs_f64();
    println!("{scenario:<8} {items:>8} {unit:<8} in {:>7.2} s  = {rate:>9.0} {unit}/s  {extra}", elapsed.as_secs_f64());
    let mut line = serde_json::json!({"scenario": scenario, "items": items, "unit": unit,
        "seconds": elapsed.as_secs_f64(), "per_second": rate});
    if let (Some(obj), serde_json::Value::Object(more)) = (line.as_object_mut(), extra) {
        obj.extend(more);
    }
    println!("JSON {line}");
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = Args::parse();
    match &args.scenario {
        Some(Scenario::Peers(p)) => return peers_in_process(p).await,
        Some(Scenario::PeersGraphql(g)) => return peers_graphql(g).await,
        Some(Scenario::Import) => return import(&args).await,
        Some(Scenario::Reads(r)) => return reads::reads(r).await,
        Some(Scenario::Rebuild(r)) => return rebuild::rebuild(r).await,
        None => {}
    }
    let db = kefu_testkit::fresh_database().await?;
    kefu_store::migrate::run(&db.pool).await?;
    kefu_projections::migrate(&db.pool).await?;
    let store = PgEventStore::new(db.pool.clone());
    let service = CommandService::new(Arc::new(store.clone()));
    println!(
        "kefu-bench: {} customers × {} contacts, {} writers, {} partitions",
        args.customers, args.contacts, args.writers, args.partitions
    );

    // append
    let started = Instant::now();
    let mut tasks = Vec::new();
    for w in 0..args.writers {
        let service = service.clone();
        let share = (w..args.customers).step_by(args.writers).count();
        let contacts = args.contacts;
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::with_capacity(share * (contacts + 1));
            for _ in 0..share {
                let (_, mut register) = examples::register_organization();
                register.customer_id = Uuid::now_v7();
                let id = register.customer_id;
                let t = Instant::now();
                service.customer(CustomerCommand::Register(register), CommandMeta::by(actor())).await?;
                latencies.push(t.elapsed());
                for _ in 0..contacts {
                    let mut log = interactions::log_phone_call();
                    log.interaction_id = Uuid::now_v7();
                    log.customer_id = id;
                    let t = Instant::now();
                    service.interaction(InteractionCommand::Log(log), CommandMeta::by(actor())).await?;
                    latencies.push(t.elapsed());
                }
            }
            anyhow::Ok(latencies)
        }));
    }
    let mut latencies = Vec::new();
    for t in tasks {
        latencies.extend(t.await??);
    }
    let append_elapsed = started.elapsed();
    latencies.sort();
    let head = store.head().await?;
    report(
        "append",
        latencies.len() as u64,
        "commands",
        append_elapsed,
        serde_json::json!({"events": head, "events_per_second": head as f64 / append_elapsed.as_secs_f64(),
            "p50_ms": percentile(&latencies, 0.5).as_secs_f64() * 1e3,
            "p99_ms": percentile(&latencies, 0.99).as_secs_f64() * 1e3}),
    );

    // relay
    let mut bus = BusConfig::new(kefu_testkit::brokers()?).with_topic(kefu_testkit::unique_topic("bench"));
    bus.partitions = args.partitions;
    let relay = Relay::new(store.clone(), bus.clone(), RelayOptions::default())?;
    kefu_bus::admin::ensure_topic(&bus).await?;
    let started = Instant::now();
    let published = relay.publish_pending().await?;
    report("relay", published as u64, "events", started.elapsed(), serde_json::json!({}));

    // project
    let runner = ProjectionRunner::new(
        db.pool.clone(),
        bus.clone(),
        Arc::new(kefu_projections::customer360::Customer360),
        RunnerOptions::default(),
    );
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let started = Instant::now();
    let task = tokio::spawn(runner.run(async {
        let _ = rx.await;
    }));
    let (ok, through) = progress::wait_for(&db.pool, "customer360", head, Duration::from_secs(600)).await?;
    let project_elapsed = started.elapsed();
    let _ = tx.send(());
    task.await??;
    anyhow::ensure!(ok, "the projector stopped at {through} of {head}");
    report("project", head as u64, "events", project_elapsed, serde_json::json!({"includes": "consumer group join"}));

    as_of(&args).await?;
    import(&args).await
}

async fn as_of(args: &Args) -> Result<()> {
    use kefu_store::history::{self, Cutoff, Subject};
    if args.history == 0 {
        return Ok(());
    }
    let db = kefu_testkit::fresh_database().await?;
    kefu_store::migrate::run(&db.pool).await?;
    kefu_projections::migrate(&db.pool).await?;
    let service = CommandService::new(Arc::new(PgEventStore::new(db.pool.clone())));
    let (_, mut register) = examples::register_organization();
    register.customer_id = Uuid::now_v7();
    let id = register.customer_id;
    service.customer(CustomerCommand::Register(register), CommandMeta::by(actor())).await?;
    let mut positions: Vec<i64> = Vec::with_capacity(args.history);
    for _ in 0..args.history {
        let mut log = interactions::log_phone_call();
        log.interaction_id = Uuid::now_v7();
        log.customer_id = id;
        let outcome = service.interaction(InteractionCommand::Log(log), CommandMeta::by(actor())).await?;
        positions.extend(outcome.last_position);
    }
    // The same random points both ways (a fixed xorshift, so runs compare).
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let points: Vec<i64> = (0..args.as_of_reads)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            positions[(x % positions.len() as u64) as usize]
        })
        .collect();
    let started = Instant::now();
    let first = kefu_projections::as_of::customer(&db.pool, id, Cutoff::Position(i64::MAX)).await?;
    report(
        "as-of-first",
        1,
        "reads",
        started.elapsed(),
        serde_json::json!({"events": first.events_folded, "snapshots_taken": first.snapshots_taken}),
    );
    let pool = &db.pool;
    timed_reads("as-of", &points, args.history, async |p| {
        kefu_projections::as_of::customer(pool, id, Cutoff::Position(p)).await?;
        Ok(())
    })
    .await?;
    timed_reads("as-of-full", &points, args.history, async |p| {
        let events =
            history::subject_events(pool, Subject::Customer(id), 0, Some(Cutoff::Position(p)), i64::MAX).await?;
        kefu_projections::customer360::fold_view(&events)?;
        Ok(())
    })
    .await
}

/// Times one read per point and reports reads/s, p50 and p99.
async fn timed_reads(name: &str, points: &[i64], history: usize, read: impl AsyncFn(i64) -> Result<()>) -> Result<()> {
    let started = Instant::now();
    let mut latencies = Vec::with_capacity(points.len());
    for p in points {
        let t = Instant::now();
        read(*p).await?;
        latencies.push(t.elapsed());
    }
    let elapsed = started.elapsed();
    latencies.sort();
    report(
        name,
        latencies.len() as u64,
        "reads",
        elapsed,
        serde_json::json!({"history": history, "p50_ms": percentile(&latencies, 0.5).as_secs_f64() * 1e3,
            "p99_ms": percentile(&latencies, 0.99).as_secs_f64() * 1e3}),
    );
    Ok(())
}

async fn import(args: &Args) -> Result<()> {
    if !args.import_file.exists() {
        println!("import   skipped: {} not found", args.import_file.display());
        return Ok(());
    }
    let db = kefu_testkit::fresh_database().await?;
    kefu_store::migrate::run(&db.pool).await?;
    let pool = sqlx::postgres::PgPoolOptions::new()
        .max_connections(args.import_concurrency as u32 + 4)
        .connect(&db.url)
        .await?;
    let mapping = kefu_import::Mapping::cfpb();
    let options = kefu_import::ImportOptions { actor: actor(), concurrency: args.import_concurrency, dry_run: false };
    for scenario in ["import", "reimport"] {
        // Each run as a new `kefu import` process would do it: nothing cached.
        let service = CommandService::new(Arc::new(PgEventStore::new(pool.clone())));
        let file = std::io::BufReader::new(std::fs::File::open(&args.import_file)?);
        let started = Instant::now();
        let r = kefu_import::import(&service, &mapping, file, &options, |_| {}).await?;
        let elapsed = started.elapsed();
        report(
            scenario,
            r.rows,
            "rows",
            elapsed,
            serde_json::json!({"events": r.events, "events_per_second": r.events as f64 / elapsed.as_secs_f64(),
                "imported": r.imported, "unchanged": r.unchanged, "rejected": r.rejected.len(),
                "concurrency": args.import_concurrency}),
        );
    }
    Ok(())
}

async fn peers_in_process(args: &PeersArgs) -> Result<()> {
    let db = kefu_testkit::fresh_database().await?;
    kefu_store::migrate::run(&db.pool).await?;
    let pool =
        sqlx::postgres::PgPoolOptions::new().max_connections(args.concurrency as u32 + 2).connect(&db.url).await?;
    let options = kefu_store::WriterOptions { flights: args.writer_flights, ..Default::default() };
    let store = PgEventStore::with_options(pool.clone(), options);
    let service = CommandService::new(Arc::new(store.clone()));
    let run = Uuid::now_v7();
    peers::register_customers(&service, run, args.complaints).await?;
    let before = store.head().await?;
    let watch = usage::Watch { postgres: args.postgres_pid, gateway: None };
    let mark = watch.mark();
    let figures = peers::command_service(&service, run, args.complaints, args.concurrency).await?;
    let used = watch.since(mark);
    let appended = store.head().await? - before;
    anyhow::ensure!(
        appended == figures.events,
        "the commands reported {} events but the store holds {appended} more",
        figures.events
    );
    let mut line = figures.json("kefu (command service)", args.complaints, args.concurrency, &used);
    line["writer_flights"] = serde_json::json!(args.writer_flights);
    let w = store.writer_stats();
    let per_batch = |d: Duration| d.as_secs_f64() * 1e3 / w.batches.max(1) as f64;
    line["writer"] = serde_json::json!({"batches": w.batches, "careful": w.careful,
        "appends_per_batch": w.appends as f64 / w.batches.max(1) as f64,
        "ms_per_batch": {"read": per_batch(w.read), "plan": per_batch(w.plan), "write": per_batch(w.write)}});
    println!("{line}");
    drop(service);
    drop(store);
    pool.close().await;
    drop_database(db).await
}

/// Drops a benchmark's database (the next run starts from nothing, and the cluster does not
/// fill up with old runs).
async fn drop_database(db: kefu_testkit::TestDatabase) -> Result<()> {
    use sqlx::Connection;
    db.pool.close().await;
    let mut admin = sqlx::PgConnection::connect(&kefu_testkit::admin_database_url()?).await?;
    sqlx::query(sqlx::AssertSqlSafe(format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", db.name)))
        .execute(&mut admin)
        .await?;
    Ok(())
}

async fn peers_graphql(args: &GraphqlArgs) -> Result<()> {
    let p = &args.peers;
    let gateway = peers::Gateway::new(&args.url, p.concurrency)?;
    let run = Uuid::now_v7();
    let customers = peers::register_customers_graphql(&gateway, run, p.complaints, args.visible_every > 0).await?;
    let watch = usage::Watch { postgres: p.postgres_pid, gateway: args.gateway_pid };
    let mark = watch.mark();
    let figures = peers::graphql(&gateway, customers, run, p.complaints, p.concurrency, args.visible_every).await?;
    let used = watch.since(mark);
    let system = format!("kefu (GraphQL, {})", args.gateway);
    println!("{}", figures.json(&system, p.complaints, p.concurrency, &used));
    Ok(())
}
