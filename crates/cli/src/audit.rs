//! `kefu audit verify` and `kefu audit anchor`: proving the history was not altered.

use clap::Subcommand;
use kefu_store::PgEventStore;

use crate::{
    ExitWith,
    progress::Progress,
    settings::{DatabaseArgs, KafkaArgs},
};

/// `kefu audit …`
#[derive(Subcommand, Debug)]
pub enum AuditCommand {
    /// Check every stored event against its hash chain and the anchors, then every record on
    /// the Kafka topic against the store; name the first event that does not match (exit 3).
    Verify {
        #[command(flatten)]
        db: DatabaseArgs,
        #[command(flatten)]
        kafka: KafkaArgs,
        /// Check the event store only.
        #[arg(long)]
        store_only: bool,
    },
    /// Anchor the log now (the scheduler does it every 1,000 events or 10 minutes) and print
    /// the anchor, to be kept outside kefu.
    Anchor {
        #[command(flatten)]
        db: DatabaseArgs,
    },
}

/// Runs an audit command.
#[allow(clippy::print_stdout)] // reports are the output
pub async fn run(command: AuditCommand) -> anyhow::Result<()> {
    match command {
        AuditCommand::Verify { db, kafka, store_only } => {
            let pool = crate::database(&db).await?;
            let mut progress = Progress::new("verify store", "events", None);
            let store = kefu_store::integrity::verify_store(&pool, |at, head| {
                progress.set_total(head as u64);
                progress.update(at as u64);
            })
            .await?;
            progress.finish(store.events as u64);
            if let Some(m) = &store.first_mismatch {
                println!("event store: NOT VERIFIED after {} good events", store.events);
                println!("first mismatch: {m}");
                return Err(ExitWith { code: 3, message: format!("the event store does not verify: {m}") }.into());
            }
            println!(
                "event store: verified {} events in {} streams; {} anchors checked, anchored through position {}; \
                 head hash {}",
                store.events,
                store.streams,
                store.anchors,
                store.anchored_through,
                store.head_hash.as_deref().unwrap_or("-")
            );
            if store_only {
                return Ok(());
            }
            let bus = kafka.bus()?;
            let mut progress = Progress::new("verify topic", "records", None);
            let topic = kefu_bus::audit::verify_topic(&PgEventStore::new(pool), &bus, |n| progress.update(n)).await?;
            progress.finish(topic.records);
            if let Some(m) = &topic.first_mismatch {
                println!("topic {}: NOT VERIFIED ({} records read)", bus.topic, topic.records);
                println!("first mismatch: {m}");
                return Err(ExitWith { code: 3, message: format!("the Kafka copy does not verify: {m}") }.into());
            }
            println!(
                "topic {}: verified {} records; every event through position {} is on the topic as stored",
                bus.topic, topic.records, topic.published_through
            );
            Ok(())
        }
        AuditCommand::Anchor { db } => {
            let pool = crate::database(&db).await?;
            match kefu_store::integrity::anchor(&pool, 1).await? {
                Some(a) => println!(
                    "anchored positions {}..={} at {}: {}",
                    a.previous_position + 1,
                    a.position,
                    a.anchored_at.to_rfc3339(),
                    a.hash
                ),
                None => {
                    let mut conn = pool.acquire().await?;
                    match kefu_store::integrity::latest_anchor(&mut conn).await? {
                        Some(a) => println!("nothing new since the anchor at position {}: {}", a.position, a.hash),
                        None => println!("the log is empty: nothing to anchor"),
                    }
                }
            }
            Ok(())
        }
    }
}
