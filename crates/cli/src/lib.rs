//! # kefu (the command line)
//!
//! One binary, one subcommand per process role, each able to run alone so roles scale
//! independently (gateways behind a load balancer, projectors as a consumer group, one
//! active relay with standbys):
//!
//! | command | does |
//! |---|---|
//! | `kefu run` | everything in one process: migrations, relay, projectors, gateway |
//! | `kefu serve` | the GraphQL gateway |
//! | `kefu relay` | the event store → Kafka relay |
//! | `kefu project` | the projectors |
//! | `kefu scheduler` | the SLA scheduler (records warnings and breaches; any number may run) |
//! | `kefu migrate` | apply database migrations and exit |
//! | `kefu import complaints` | load another system's complaint export (CSV) as events |
//! | `kefu projections status\|rebuild\|prune` | inspect and rebuild read models |
//! | `kefu events export\|tail` | the history as JSON Lines or CSV; follow the live topic |
//! | `kefu audit verify\|anchor` | check the hash chain, anchors and the Kafka copy |

use std::{future::Future, sync::Arc, time::Duration};

use anyhow::Context;
use clap::{Parser, Subcommand};
use kefu_bus::relay::{Relay, RelayOptions};
use kefu_gateway::{Gateway, GatewayConfig};
use kefu_projections::runner::ProjectionRunner;
use sqlx::PgPool;
use tokio::sync::watch;

pub mod audit;
pub mod events;
pub mod import;
mod progress;
pub mod settings;

use settings::{DatabaseArgs, HttpArgs, KafkaArgs, ProjectorArgs, RelayArgs};

/// kefu — an event-sourced customer-service backend.
#[derive(Parser, Debug)]
#[command(name = "kefu", version, about)]
pub struct Cli {
    /// Log format.
    #[arg(long, env = "KEFU_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text, global = true)]
    pub log_format: LogFormat,
    /// What to run.
    #[command(subcommand)]
    pub command: Command,
}

/// Log output.
#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// Subcommands.
#[derive(Subcommand, Debug)]
pub enum Command {
    /// Everything in one process: migrations, relay, projectors and the gateway.
    Run {
        #[command(flatten)]
        db: DatabaseArgs,
        #[command(flatten)]
        kafka: KafkaArgs,
        #[command(flatten)]
        relay: RelayArgs,
        #[command(flatten)]
        projector: ProjectorArgs,
        #[command(flatten)]
        http: HttpArgs,
    },
    /// The GraphQL gateway.
    Serve {
        #[command(flatten)]
        db: DatabaseArgs,
        #[command(flatten)]
        kafka: KafkaArgs,
        #[command(flatten)]
        http: HttpArgs,
    },
    /// The relay from the event store to Kafka (one active per topic; extra ones stand by).
    Relay {
        #[command(flatten)]
        db: DatabaseArgs,
        #[command(flatten)]
        kafka: KafkaArgs,
        #[command(flatten)]
        relay: RelayArgs,
        /// Publish what is pending and exit.
        #[arg(long)]
        once: bool,
        /// Forget what the broker was sent and publish the whole history again (after the
        /// broker lost its log).
        #[arg(long)]
        republish: bool,
    },
    /// The projectors (all read models, or the named ones).
    Project {
        #[command(flatten)]
        db: DatabaseArgs,
        #[command(flatten)]
        kafka: KafkaArgs,
        #[command(flatten)]
        projector: ProjectorArgs,
        /// Only these projections.
        #[arg(long = "projection")]
        only: Vec<String>,
    },
    /// The SLA scheduler: records SLA warnings and breaches when deadlines pass (exactly once,
    /// however many run).
    Scheduler {
        #[command(flatten)]
        db: DatabaseArgs,
    },
    /// Apply database migrations and exit.
    Migrate {
        #[command(flatten)]
        db: DatabaseArgs,
    },
    /// Inspect and rebuild read models.
    Projections {
        #[command(subcommand)]
        command: ProjectionsCommand,
    },
    /// Import history from another system.
    Import {
        #[command(subcommand)]
        command: import::ImportCommand,
    },
    /// Export or follow the event history.
    Events {
        #[command(subcommand)]
        command: events::EventsCommand,
    },
    /// Verify that the history was not altered; anchor the log.
    Audit {
        #[command(subcommand)]
        command: audit::AuditCommand,
    },
}

/// An error that ends the process with a particular exit status.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct ExitWith {
    /// The exit status.
    pub code: u8,
    /// What to say.
    pub message: String,
}

/// `kefu projections …`
#[derive(Subcommand, Debug)]
pub enum ProjectionsCommand {
    /// Every read model: generation, position, lag, dead-lettered streams.
    Status {
        #[command(flatten)]
        db: DatabaseArgs,
    },
    /// Build a new generation from the start of the Kafka log while the current one keeps
    /// serving, then switch queries to it.
    Rebuild {
        #[command(flatten)]
        db: DatabaseArgs,
        #[command(flatten)]
        kafka: KafkaArgs,
        #[command(flatten)]
        projector: ProjectorArgs,
        /// The projection, e.g. customer360.
        name: String,
        /// Keep the current generation serving unless the new one is identical to it.
        #[arg(long)]
        require_identical: bool,
    },
    /// Drop the tables of retired generations.
    Prune {
        #[command(flatten)]
        db: DatabaseArgs,
        /// The projection.
        name: String,
        /// Retired generations to keep.
        #[arg(long, default_value_t = 1)]
        keep: usize,
    },
}

/// Sets up logging.
pub fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,sqlx=warn,librdkafka=warn"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().flatten_event(true).init(),
    }
}

/// Completes on Ctrl-C or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
    tracing::info!("shutting down");
}

/// Connects and migrates, waiting for the database if it is not up yet.
pub(crate) async fn database(db: &DatabaseArgs) -> anyhow::Result<PgPool> {
    let pool = kefu_store::connect(
        &db.database_url.0,
        db.db_max_connections,
        Duration::from_millis(db.db_acquire_timeout_ms),
    )?;
    let mut delay = Duration::from_millis(250);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        match migrate(&pool).await {
            Ok(()) => return Ok(pool),
            Err(e) if tokio::time::Instant::now() < deadline => {
                tracing::warn!(database = %db.redacted_url(), error = %e, "database not ready; retrying");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(5));
            }
            Err(e) => {
                return Err(e).with_context(|| format!("cannot migrate {}", db.redacted_url()));
            }
        }
    }
}

async fn migrate(pool: &PgPool) -> anyhow::Result<()> {
    kefu_store::migrate::run(pool).await?;
    kefu_projections::migrate(pool).await?;
    Ok(())
}

/// A shutdown signal many tasks can wait on.
#[derive(Clone)]
struct Stop(watch::Receiver<bool>);

impl Stop {
    fn wait(&self) -> impl Future<Output = ()> + Send + 'static {
        let mut rx = self.0.clone();
        async move {
            let _ = rx.wait_for(|stop| *stop).await;
        }
    }
}

fn relay_options(relay: &RelayArgs) -> RelayOptions {
    RelayOptions {
        batch_size: relay.relay_batch.max(1),
        on_lost_log: relay.on_lost_log.into(),
        ..RelayOptions::default()
    }
}

/// The write path of one process: one group-committing writer and one stream cache, shared
/// by everything in the process that sends commands.
pub(crate) fn command_service(pool: &PgPool, db: &DatabaseArgs) -> kefu_app::CommandService {
    // A budget of 0 bytes keeps nothing: the cache's own way of being off.
    let cache = kefu_app::cache::StreamCache::new(kefu_app::commands::DEFAULT_CACHE_STREAMS, db.stream_cache_mb << 20);
    kefu_app::CommandService::new(Arc::new(kefu_store::PgEventStore::new(pool.clone()))).with_cache(cache)
}

/// Every projection and automation (automations send their commands through `commands`).
fn everything(commands: &kefu_app::CommandService) -> Vec<Arc<dyn kefu_projections::Projection>> {
    let mut all = kefu_projections::all();
    all.extend(kefu_automations::all(commands));
    all
}

/// The named projections and automations (all when none are named).
fn projections(
    pool: &PgPool,
    db: &DatabaseArgs,
    only: &[String],
) -> anyhow::Result<Vec<Arc<dyn kefu_projections::Projection>>> {
    let all = everything(&command_service(pool, db));
    if only.is_empty() {
        return Ok(all);
    }
    only.iter()
        .map(|name| {
            all.iter().find(|p| p.name() == name).cloned().ok_or_else(|| {
                let known: Vec<_> = all.iter().map(|p| p.name()).collect();
                anyhow::anyhow!("no projection or automation `{name}`; known: {}", known.join(", "))
            })
        })
        .collect()
}

/// Runs a command.
pub async fn execute(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Migrate { db } => {
            database(&db).await?;
            tracing::info!(database = %db.redacted_url(), "migrations applied");
            Ok(())
        }
        Command::Serve { db, kafka, http } => {
            let pool = database(&db).await?;
            let commands = command_service(&pool, &db);
            let gateway = Gateway::bind_with(gateway_config(&http, &kafka)?, pool, commands).await?;
            announce(&gateway)?;
            gateway.serve(shutdown_signal()).await?;
            Ok(())
        }
        Command::Relay { db, kafka, relay, once, republish } => {
            let pool = database(&db).await?;
            let bus = kafka.bus()?;
            if republish {
                kefu_store::relay_state::reset(&pool, &bus.topic).await?;
                tracing::warn!(topic = %bus.topic, "relay state reset: the whole history will be published again");
            }
            let relay = Relay::new(kefu_store::PgEventStore::new(pool), bus, relay_options(&relay))?;
            if once {
                let n = relay.publish_pending().await?;
                tracing::info!(published = n, "relay: pending events published");
                return Ok(());
            }
            relay.run(shutdown_signal()).await?;
            Ok(())
        }
        Command::Project { db, kafka, projector, only } => {
            let pool = database(&db).await?;
            let bus = kafka.bus()?;
            let (tx, rx) = watch::channel(false);
            let stop = Stop(rx);
            let mut tasks = Vec::new();
            for p in projections(&pool, &db, &only)? {
                let runner = ProjectionRunner::new(pool.clone(), bus.clone(), p, projector.options());
                tasks.push(tokio::spawn(runner.run(stop.wait())));
            }
            shutdown_signal().await;
            let _ = tx.send(true);
            for t in tasks {
                t.await??;
            }
            Ok(())
        }
        Command::Scheduler { db } => {
            let pool = database(&db).await?;
            scheduler(pool.clone(), command_service(&pool, &db)).run(shutdown_signal()).await?;
            Ok(())
        }
        Command::Run { db, kafka, relay, projector, http } => run_all(db, kafka, relay, projector, http).await,
        Command::Projections { command } => projections_command(command).await,
        Command::Import { command } => import::run(command).await,
        Command::Events { command } => events::run(command).await,
        Command::Audit { command } => audit::run(command).await,
    }
}

fn scheduler(pool: PgPool, commands: kefu_app::CommandService) -> kefu_scheduler::Scheduler {
    kefu_scheduler::Scheduler::new(pool, commands, kefu_scheduler::SchedulerOptions::default())
}

fn gateway_config(http: &HttpArgs, kafka: &KafkaArgs) -> anyhow::Result<GatewayConfig> {
    Ok(GatewayConfig { listen: http.listen, auth: http.auth()?, max_wait: http.max_wait(), topic: kafka.topic.clone() })
}

fn announce(gateway: &Gateway) -> anyhow::Result<()> {
    let addr = gateway.local_addr()?;
    tracing::info!(%addr, "gateway listening");
    // The one line a person starting kefu looks for.
    eprintln!("kefu is ready: GraphQL at http://{addr}/graphql");
    Ok(())
}

async fn run_all(
    db: DatabaseArgs,
    kafka: KafkaArgs,
    relay: RelayArgs,
    projector: ProjectorArgs,
    http: HttpArgs,
) -> anyhow::Result<()> {
    type Task = tokio::task::JoinHandle<anyhow::Result<()>>;
    let pool = database(&db).await?;
    let bus = kafka.bus()?;
    let (tx, rx) = watch::channel(false);
    let stop = Stop(rx);
    let mut tasks: Vec<(String, Task)> = Vec::new();

    // Every read model exists (empty at first) before the gateway says it is ready, so the
    // first queries find them rather than UNAVAILABLE.
    let commands = command_service(&pool, &db);
    for p in everything(&commands) {
        kefu_projections::registry::ensure_active(&pool, &*p, &bus.topic)
            .await
            .with_context(|| format!("cannot prepare the {} read model", p.name()))?;
    }
    let relay = Relay::new(kefu_store::PgEventStore::new(pool.clone()), bus.clone(), relay_options(&relay))?;
    let until = stop.wait();
    tasks.push(("relay".into(), tokio::spawn(async move { relay.run(until).await.map_err(Into::into) })));
    for p in everything(&commands) {
        let name = format!("projector {}", p.name());
        let runner = ProjectionRunner::new(pool.clone(), bus.clone(), p, projector.options());
        let until = stop.wait();
        tasks.push((name, tokio::spawn(async move { runner.run(until).await.map_err(Into::into) })));
    }
    let sla = scheduler(pool.clone(), commands.clone());
    let until = stop.wait();
    tasks.push(("SLA scheduler".into(), tokio::spawn(async move { sla.run(until).await.map_err(Into::into) })));
    let gateway = Gateway::bind_with(gateway_config(&http, &kafka)?, pool, commands).await?;
    announce(&gateway)?;
    let until = stop.wait();
    tasks.push(("gateway".into(), tokio::spawn(async move { gateway.serve(until).await.map_err(Into::into) })));

    // Stop everything on a signal, or when any part ends by itself (an error).
    let (names, handles): (Vec<String>, Vec<Task>) = tasks.into_iter().unzip();
    let mut all = futures::future::select_all(handles);
    let early = tokio::select! {
        _ = shutdown_signal() => None,
        (result, index, rest) = &mut all => Some((result, index, rest)),
    };
    let _ = tx.send(true);
    let mut outcome = Ok(());
    let rest: Vec<(String, Task)> = match early {
        Some((result, index, rest)) => {
            let name = &names[index];
            outcome = match result {
                Ok(Ok(())) => Err(anyhow::anyhow!("{name} stopped unexpectedly")),
                Ok(Err(e)) => Err(e.context(format!("{name} failed"))),
                Err(e) => Err(anyhow::anyhow!("{name} panicked: {e}")),
            };
            let remaining: Vec<String> =
                names.iter().enumerate().filter(|(i, _)| *i != index).map(|(_, n)| n.clone()).collect();
            remaining.into_iter().zip(rest).collect()
        }
        None => names.into_iter().zip(all.into_inner()).collect(),
    };
    for (name, task) in rest {
        match tokio::time::timeout(Duration::from_secs(25), task).await {
            Ok(Ok(Ok(()))) => tracing::debug!(component = %name, "stopped"),
            Ok(Ok(Err(e))) => tracing::error!(component = %name, error = format!("{e:#}"), "failed while stopping"),
            Ok(Err(e)) => tracing::error!(component = %name, error = %e, "panicked"),
            Err(_) => tracing::warn!(component = %name, "did not stop within 25 s"),
        }
    }
    outcome
}

#[allow(clippy::print_stdout)] // these commands report on stdout
async fn projections_command(command: ProjectionsCommand) -> anyhow::Result<()> {
    match command {
        ProjectionsCommand::Status { db } => {
            let pool = database(&db).await?;
            let status = kefu_projections::progress::status(&pool).await?;
            let head: i64 = sqlx::query_scalar("SELECT position FROM event_store.log_head").fetch_one(&pool).await?;
            println!("event store head: {head}");
            println!(
                "{:<16} {:>4} {:<9} {:>14} {:>10} {:>10} {:>6}",
                "PROJECTION", "GEN", "STATUS", "APPLIED", "LAG", "LAG(s)", "DEAD"
            );
            for s in &status {
                println!(
                    "{:<16} {:>4} {:<9} {:>14} {:>10} {:>10.1} {:>6}",
                    s.generation.name,
                    s.generation.generation,
                    s.generation.status.to_string(),
                    s.progress.applied_through,
                    s.progress.lag_events,
                    s.progress.lag_seconds,
                    s.dead_letters.len()
                );
                for d in &s.dead_letters {
                    println!(
                        "    parked {} stream {} at position {} ({}): {} [{} later events skipped]",
                        d.stream_type, d.stream_id, d.global_position, d.event_type, d.reason, d.skipped_events
                    );
                }
            }
            if status.is_empty() {
                println!("(no projections built yet: start `kefu project` or `kefu run`)");
            }
            Ok(())
        }
        ProjectionsCommand::Rebuild { db, kafka, projector, name, require_identical } => {
            use kefu_projections::{runner::SwitchPolicy, verify::Comparison};
            let pool = database(&db).await?;
            let bus = kafka.bus()?;
            let projection = projections(&pool, &db, std::slice::from_ref(&name))?.remove(0);
            let policy = if require_identical { SwitchPolicy::IfIdentical } else { SwitchPolicy::Always };
            let mut progress = progress::Progress::new("rebuild", "records", None);
            let report =
                kefu_projections::runner::rebuild(&pool, &bus, projection, &projector.options(), policy, |p| {
                    progress.set_total(p.records_published.max(0) as u64);
                    progress.update(p.records_consumed.max(0) as u64);
                })
                .await?;
            progress.finish(report.records.max(0) as u64);
            match &report.comparison {
                None => println!("{name}: no earlier generation to compare with"),
                Some(Comparison::Identical { rows, through }) => println!(
                    "{name}: verified: identical to the serving generation at position {through} ({rows} rows)"
                ),
                Some(Comparison::Differs(tables)) => {
                    println!("{name}: DIFFERS from the serving generation at the same position:");
                    for t in tables {
                        println!(
                            "    {}: {} rows before, {} rows now (or same count, other content)",
                            t.table, t.old_rows, t.new_rows
                        );
                    }
                }
                Some(Comparison::NotComparable(why)) => println!("{name}: not compared: {why}"),
            }
            if !report.switched {
                return Err(ExitWith {
                    code: 3,
                    message: format!(
                        "{name}: generation {} was built but does not serve queries (it differs); the current one \
                         keeps serving",
                        report.generation.generation
                    ),
                }
                .into());
            }
            println!(
                "{name}: generation {} built from {} records in {:.1}s and now serves queries{}",
                report.generation.generation,
                report.records,
                report.elapsed.as_secs_f64(),
                report
                    .replaced
                    .map(|g| format!(" (generation {g} retired; drop it with `kefu projections prune {name}`)"))
                    .unwrap_or_default()
            );
            Ok(())
        }
        ProjectionsCommand::Prune { db, name, keep } => {
            let pool = database(&db).await?;
            let dropped = kefu_projections::registry::drop_retired(&pool, &name, keep).await?;
            if dropped.is_empty() {
                println!("nothing to drop");
            }
            for schema in dropped {
                println!("dropped {schema}");
            }
            Ok(())
        }
    }
}
