//! `kefu events export` and `kefu events tail`: the history for analysts, decoded from
//! `proto/`.

use std::{
    io::{BufWriter, Write},
    path::PathBuf,
    time::Duration,
};

use anyhow::Context;
use chrono::{DateTime, Utc};
use clap::{Args, Subcommand, ValueEnum};
use kefu_app::RecordedEvent;
use kefu_store::history::{EventFilter, TimeAxis};
use rdkafka::{
    Message, Offset, TopicPartitionList,
    consumer::{BaseConsumer, Consumer},
};
use uuid::Uuid;

use crate::{
    progress::Progress,
    settings::{DatabaseArgs, KafkaArgs},
};

/// `kefu events …`
#[derive(Subcommand, Debug)]
pub enum EventsCommand {
    /// Write the history (or the part the filters select) as JSON Lines or CSV, in log order,
    /// each event decoded from its `proto/` encoding. Streams: memory stays flat at any size.
    Export {
        #[command(flatten)]
        db: DatabaseArgs,
        #[command(flatten)]
        filter: FilterArgs,
        /// Output format.
        #[arg(long, value_enum, default_value_t = Format::Jsonl)]
        format: Format,
        /// Where to write (default: standard output).
        #[arg(long, short)]
        output: Option<PathBuf>,
    },
    /// Follow the live topic and print each event as a JSON line as it arrives.
    Tail {
        #[command(flatten)]
        kafka: KafkaArgs,
        /// Start from the beginning of the topic instead of its end.
        #[arg(long)]
        from_beginning: bool,
        /// Only these event types.
        #[arg(long = "type")]
        event_types: Vec<String>,
        /// Only this customer's events.
        #[arg(long)]
        customer: Option<Uuid>,
        /// Stop after this many events.
        #[arg(long)]
        limit: Option<u64>,
    },
}

/// Output formats.
#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// One JSON object per line: the envelope with the payload under `payload`.
    Jsonl,
    /// One row per event; the payload as a JSON column.
    Csv,
}

/// Which events.
#[derive(Args, Debug, Clone, Default)]
pub struct FilterArgs {
    /// From this time (RFC 3339), inclusive.
    #[arg(long)]
    pub from: Option<DateTime<Utc>>,
    /// Before this time (RFC 3339).
    #[arg(long)]
    pub to: Option<DateTime<Utc>>,
    /// Which time `--from`/`--to` are on: `recorded` (when kefu recorded it) or `business`
    /// (when it happened).
    #[arg(long, value_enum, default_value_t = Axis::Recorded)]
    pub time: Axis,
    /// Only these event types (repeat the flag), e.g. `RequestFiled`.
    #[arg(long = "type")]
    pub event_types: Vec<String>,
    /// Only this customer's events.
    #[arg(long)]
    pub customer: Option<Uuid>,
    /// Only this stream's events.
    #[arg(long)]
    pub stream: Option<Uuid>,
    /// Only events with this correlation id.
    #[arg(long)]
    pub correlation: Option<Uuid>,
    /// This event and everything it caused, directly or through reactions.
    #[arg(long)]
    pub caused_by: Option<Uuid>,
}

/// Time axes.
#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Axis {
    /// When it happened.
    Business,
    /// When kefu recorded it.
    #[default]
    Recorded,
}

fn check_types(types: &[String]) -> anyhow::Result<()> {
    let contract = kefu_contract::Contract::get();
    if let Some((_, bad)) = contract.unknown_event_type(types) {
        anyhow::bail!("--type {bad}: no such event type; known: {}", contract.event_types().join(", "));
    }
    Ok(())
}

impl FilterArgs {
    fn filter(&self) -> anyhow::Result<EventFilter> {
        check_types(&self.event_types)?;
        if let (Some(from), Some(to)) = (self.from, self.to)
            && from >= to
        {
            anyhow::bail!("--from {from} is not before --to {to}");
        }
        Ok(EventFilter {
            from: self.from,
            to: self.to,
            axis: match self.time {
                Axis::Business => TimeAxis::Business,
                Axis::Recorded => TimeAxis::Recorded,
            },
            event_types: self.event_types.clone(),
            customer_id: self.customer,
            stream_id: self.stream,
            correlation_id: self.correlation,
            caused_by: self.caused_by,
            through: None,
        })
    }
}

/// The CSV columns.
pub const CSV_COLUMNS: [&str; 17] = [
    "global_position",
    "event_id",
    "event_type",
    "schema_version",
    "stream_type",
    "stream_id",
    "stream_version",
    "customer_id",
    "occurred_at",
    "recorded_at",
    "actor_id",
    "actor_kind",
    "actor_roles",
    "correlation_id",
    "causation_id",
    "command_id",
    "payload",
];

fn csv_fields(e: &RecordedEvent) -> [String; 17] {
    let time = |t: &DateTime<Utc>| t.to_rfc3339_opts(chrono::SecondsFormat::Micros, true);
    [
        e.global_position.to_string(),
        e.event_id.to_string(),
        e.event_type.clone(),
        e.schema_version.to_string(),
        e.stream_type.clone(),
        e.stream_id.to_string(),
        e.stream_version.to_string(),
        e.customer_id.map(|c| c.to_string()).unwrap_or_default(),
        time(&e.occurred_at),
        time(&e.recorded_at),
        e.actor.id.clone(),
        e.actor.kind.as_str().to_string(),
        e.actor.roles.join(" "),
        e.correlation_id.to_string(),
        e.causation_id.to_string(),
        e.command_id.to_string(),
        e.payload.to_string(),
    ]
}

/// The event as a consumer of the topic sees it: encoded with `proto/` and decoded back.
fn through_proto(e: &RecordedEvent) -> anyhow::Result<RecordedEvent> {
    let contract = kefu_contract::Contract::get();
    let bytes = contract.encode(e).with_context(|| format!("event at {} does not encode", e.global_position))?;
    Ok(contract.decode(&bytes)?)
}

/// Where exported events go, in their format.
enum Sink {
    Jsonl(BufWriter<Box<dyn Write>>),
    Csv(Box<csv::Writer<Box<dyn Write>>>),
}

impl Sink {
    fn new(format: Format, out: Box<dyn Write>) -> anyhow::Result<Sink> {
        Ok(match format {
            Format::Jsonl => Sink::Jsonl(BufWriter::with_capacity(1 << 16, out)),
            Format::Csv => {
                let mut w = csv::Writer::from_writer(out);
                w.write_record(CSV_COLUMNS)?;
                Sink::Csv(Box::new(w))
            }
        })
    }

    fn write(&mut self, e: &RecordedEvent) -> anyhow::Result<()> {
        let decoded = through_proto(e)?;
        match self {
            Sink::Jsonl(w) => {
                serde_json::to_writer(&mut *w, &decoded)?;
                w.write_all(b"\n")?;
            }
            Sink::Csv(w) => w.write_record(csv_fields(&decoded))?,
        }
        Ok(())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        match self {
            Sink::Jsonl(w) => w.flush(),
            Sink::Csv(w) => w.flush(),
        }
    }
}

/// Runs an events command.
#[allow(clippy::print_stdout)] // tail prints events on stdout
pub async fn run(command: EventsCommand) -> anyhow::Result<()> {
    match command {
        EventsCommand::Export { db, filter, format, output } => {
            let filter = filter.filter()?;
            let pool = crate::database(&db).await?;
            export(&pool, filter, format, output).await
        }
        EventsCommand::Tail { kafka, from_beginning, event_types, customer, limit } => {
            check_types(&event_types)?;
            let bus = kafka.bus()?;
            let partitions = kefu_bus::admin::partition_count(&bus)
                .await?
                .ok_or_else(|| anyhow::anyhow!("topic {} does not exist", bus.topic))?;
            let (tx, mut rx) = tokio::sync::mpsc::channel::<anyhow::Result<RecordedEvent>>(1024);
            let reader = std::thread::spawn(move || follow(&bus, partitions, from_beginning, &tx));
            let mut printed = 0u64;
            let stop = crate::shutdown_signal();
            tokio::pin!(stop);
            loop {
                tokio::select! {
                    _ = &mut stop => break,
                    next = rx.recv() => {
                        let Some(event) = next else { break };
                        let event = event?;
                        if (!event_types.is_empty() && !event_types.contains(&event.event_type))
                            || customer.is_some_and(|c| event.customer_id != Some(c))
                        {
                            continue;
                        }
                        println!("{}", serde_json::to_string(&event)?);
                        printed += 1;
                        if limit.is_some_and(|l| printed >= l) {
                            break;
                        }
                    }
                }
            }
            drop(rx);
            let _ = reader.join();
            Ok(())
        }
    }
}

async fn export(
    pool: &sqlx::PgPool,
    mut filter: EventFilter,
    format: Format,
    output: Option<PathBuf>,
) -> anyhow::Result<()> {
    // A fixed end: what was committed when the export started.
    let head: i64 =
        sqlx::query_scalar("SELECT coalesce(max(global_position), 0) FROM event_store.events").fetch_one(pool).await?;
    filter.through = Some(head);
    let total = kefu_store::history::count(pool, &filter).await?;
    let mut progress = Progress::new("export", "events", Some(total as u64));
    let sink: Box<dyn Write> = match &output {
        Some(path) => {
            Box::new(std::fs::File::create(path).with_context(|| format!("cannot create {}", path.display()))?)
        }
        None => Box::new(std::io::stdout().lock()),
    };
    let mut out = Sink::new(format, sink)?;
    let (mut after, mut written) = (0i64, 0u64);
    loop {
        let page = kefu_store::history::page(pool, &filter, after, 1000).await?;
        let Some(last) = page.last() else { break };
        after = last.global_position;
        for e in &page {
            out.write(e)?;
        }
        written += page.len() as u64;
        progress.update(written);
    }
    out.flush()?;
    progress.finish(written);
    tracing::info!(events = written, through = head, "export done");
    Ok(())
}

fn follow(
    bus: &kefu_bus::BusConfig,
    partitions: i32,
    from_beginning: bool,
    tx: &tokio::sync::mpsc::Sender<anyhow::Result<RecordedEvent>>,
) -> anyhow::Result<()> {
    let mut tpl = TopicPartitionList::new();
    let start = if from_beginning { Offset::Beginning } else { Offset::End };
    for p in 0..partitions {
        tpl.add_partition_offset(&bus.topic, p, start)?;
    }
    let consumer: BaseConsumer = bus.consumer("kefu-tail", &format!("{}.tail", bus.topic)).create()?;
    consumer.assign(&tpl)?;
    let contract = kefu_contract::Contract::get();
    while !tx.is_closed() {
        match consumer.poll(Duration::from_millis(200)) {
            None => {}
            Some(Ok(m)) => {
                let event = contract.decode(m.payload().unwrap_or_default()).map_err(anyhow::Error::from);
                if tx.blocking_send(event).is_err() {
                    break;
                }
            }
            Some(Err(e)) => {
                let _ = tx.blocking_send(Err(e.into()));
                break;
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_fields_are_quoted_only_when_needed() {
        let mut w = csv::Writer::from_writer(Vec::new());
        w.write_record(["plain", r#"{"a":"x,y"}"#, "two\nlines"]).unwrap();
        let s = String::from_utf8(w.into_inner().unwrap()).unwrap();
        assert_eq!(s, "plain,\"{\"\"a\"\":\"\"x,y\"\"}\",\"two\nlines\"\n");
    }

    #[test]
    fn unknown_event_types_are_named() {
        let err = check_types(&["RequestFiled".into(), "RequestFiledd".into()]).unwrap_err().to_string();
        assert!(err.starts_with("--type RequestFiledd: no such event type"), "{err}");
    }
}
