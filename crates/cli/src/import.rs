//! `kefu import complaints`: another system's export, through the command path.

use std::{io::Write, path::PathBuf, time::Instant};

use anyhow::Context;
use clap::Subcommand;
use kefu_app::{Actor, ActorKind};
use kefu_import::{ImportOptions, Mapping, Report};

use crate::{ExitWith, settings::DatabaseArgs};

/// `kefu import …`
#[derive(Subcommand, Debug)]
pub enum ImportCommand {
    /// Complaints from a CSV export (one row per complaint, a header row first). Every row
    /// becomes a customer and a request with its history, recorded as events with the source's
    /// dates. Re-running imports nothing twice; rows that cannot be read are listed with their
    /// line numbers and the rest are imported. Exit status 2 when some rows were rejected.
    Complaints {
        #[command(flatten)]
        db: DatabaseArgs,
        /// The CSV file.
        #[arg(long)]
        file: PathBuf,
        /// A built-in mapping (`cfpb`) or the path of a JSON mapping file.
        #[arg(long, default_value = "cfpb")]
        mapping: String,
        /// Check every row and report; record nothing.
        #[arg(long)]
        dry_run: bool,
        /// Rows imported at once.
        #[arg(long, default_value_t = 8)]
        concurrency: usize,
        /// Who is importing (recorded on every event, as an import).
        #[arg(long, env = "KEFU_IMPORT_ACTOR", default_value = "kefu-import")]
        actor: String,
    },
}

/// Runs an import command.
pub async fn run(command: ImportCommand) -> anyhow::Result<()> {
    let ImportCommand::Complaints { db, file, mapping, dry_run, concurrency, actor } = command;
    let mapping = Mapping::load(&mapping)?;
    let reader = std::fs::File::open(&file).with_context(|| format!("cannot open {}", file.display()))?;
    let size = reader.metadata().map(|m| m.len()).unwrap_or(0);
    let pool = crate::database(&db).await?;
    let service = crate::command_service(&pool, &db);
    let options = ImportOptions {
        actor: Actor {
            id: actor,
            name: Some(format!("{} import", mapping.source)),
            kind: ActorKind::Import,
            roles: vec![],
        },
        concurrency: concurrency.max(1),
        dry_run,
    };
    let started = Instant::now();
    let mut last = Instant::now();
    let report = kefu_import::import(&service, &mapping, std::io::BufReader::new(reader), &options, |p| {
        if last.elapsed().as_secs_f64() >= 1.0 {
            last = Instant::now();
            let percent = if size > 0 { p.bytes as f64 * 100.0 / size as f64 } else { 0.0 };
            eprintln!(
                "import: {} rows read ({percent:.0}% of the file), {} rejected, {:.0} rows/s",
                p.rows,
                p.rejected,
                p.rows as f64 / started.elapsed().as_secs_f64().max(0.001)
            );
        }
    })
    .await?;
    print_report(&file, &mapping, &report, dry_run)?;
    if !report.rejected.is_empty() {
        return Err(ExitWith {
            code: 2,
            message: format!("{} of {} rows rejected (listed above)", report.rejected.len(), report.rows),
        }
        .into());
    }
    Ok(())
}

fn print_report(file: &std::path::Path, mapping: &Mapping, r: &Report, dry_run: bool) -> std::io::Result<()> {
    let mut out = std::io::stdout().lock();
    for e in &r.rejected {
        writeln!(out, "rejected: {e}")?;
    }
    if dry_run {
        writeln!(
            out,
            "dry run of {} with the `{}` mapping: {} rows, {} would be imported, {} rejected; nothing recorded",
            file.display(),
            mapping.name,
            r.rows,
            r.checked,
            r.rejected.len()
        )?;
        return Ok(());
    }
    writeln!(
        out,
        "imported {} with the `{}` mapping: {} rows, {} imported, {} already imported, {} rejected; \
         {} events recorded in {:.1} s",
        file.display(),
        mapping.name,
        r.rows,
        r.imported,
        r.unchanged,
        r.rejected.len(),
        r.events,
        r.seconds
    )?;
    let states: Vec<String> = r.states.iter().map(|(s, n)| format!("{s} {n}")).collect();
    writeln!(out, "requests by state: {}", states.join(", "))?;
    let t = r.timely;
    writeln!(
        out,
        "source's timely verdict vs kefu's resolution target: timely & met {}, timely & missed {}, \
         untimely & met {}, untimely & missed {}; still open: {} timely, {} untimely",
        t.timely_met, t.timely_missed, t.untimely_met, t.untimely_missed, t.open.0, t.open.1
    )?;
    Ok(())
}
