//! # kefu-import
//!
//! Loads another system's complaint export through kefu's command path, so every imported
//! fact is an event like any other: a customer per source record, the request filed at the
//! source's date, handed to the responsible department, resolved (root cause, compensation)
//! and closed, or left open, as the source says.
//!
//! - **Mapping**: which columns mean what is a JSON document ([`Mapping`]); `cfpb` is built in.
//! - **Idempotent**: ids and command ids are derived from the source's record id, so a re-run
//!   (or a run after a crash) records nothing twice and completes half-imported rows. A row
//!   whose content changed since it was imported is rejected, not overwritten.
//! - **Bad rows** are rejected with their line number and the column at fault; the rest go on.
//!   If the database becomes unavailable the import stops (re-run it: done rows are skipped).

use std::{collections::BTreeMap, io::Read, time::Instant};

use chrono::{DateTime, Utc};
use futures::{StreamExt, stream};
use kefu_app::{Actor, AppError, CommandMeta, CommandService, service_requests::RequestDraft};
use kefu_domain::{
    customer::{Contacts, CustomerCommand, RegisterCustomer},
    service_request::{Compensation, ServiceRequest, ServiceRequestCommand as C},
    values::{Label, Name, Text},
    vocab::{CloseReason, CustomerKind, RequestState, SlaMetric},
};
use serde_json::json;
use uuid::Uuid;

pub mod mapping;
pub mod row;

pub use mapping::Mapping;
pub use row::{Outcome, RowError, SourceRecord};

/// The namespace of every id an import derives (UUID v5).
pub const NAMESPACE: Uuid = Uuid::from_u128(0x6b65_6675_2d69_6d70_6f72_7400_0000_0001);

/// Why an import stopped as a whole.
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    /// The file cannot be read as CSV, or its header lacks mapped columns.
    #[error("{0}")]
    File(String),
    /// The mapping names root causes the catalogue does not have.
    #[error("{0}")]
    Configuration(String),
    /// The database went away; rows before `line` are in, re-run to continue.
    #[error("stopped at line {line}: {message}; rows already imported are skipped when you run it again")]
    Unavailable {
        /// The row being imported.
        line: u64,
        /// The cause.
        message: String,
    },
}

/// Import settings.
#[derive(Debug, Clone)]
pub struct ImportOptions {
    /// Who is importing (recorded on every event, with kind IMPORT).
    pub actor: Actor,
    /// Rows in flight at once.
    pub concurrency: usize,
    /// Check every row, record nothing.
    pub dry_run: bool,
}

/// Progress, reported as rows finish.
#[derive(Debug, Clone, Copy, Default)]
pub struct Progress {
    /// Rows read.
    pub rows: u64,
    /// Rows rejected so far.
    pub rejected: u64,
    /// Bytes of the file read.
    pub bytes: u64,
}

/// The source's timeliness verdict next to kefu's resolution target for the same requests.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TimelyComparison {
    /// Source: timely; kefu: resolution target met.
    pub timely_met: u64,
    /// Source: timely; kefu: target missed.
    pub timely_missed: u64,
    /// Source: not timely; kefu: met.
    pub untimely_met: u64,
    /// Source: not timely; kefu: missed.
    pub untimely_missed: u64,
    /// Still open in kefu (no verdict yet), by source verdict: timely, not timely.
    pub open: (u64, u64),
}

/// What an import did.
#[derive(Debug, Clone, Default)]
pub struct Report {
    /// Data rows read.
    pub rows: u64,
    /// Rows that recorded something new.
    pub imported: u64,
    /// Rows imported before (nothing recorded).
    pub unchanged: u64,
    /// Rows checked in a dry run.
    pub checked: u64,
    /// Rejected rows, in file order.
    pub rejected: Vec<RowError>,
    /// Events recorded.
    pub events: i64,
    /// Requests per state after the import (rows not rejected).
    pub states: BTreeMap<String, u64>,
    /// The source's timeliness against kefu's resolution target.
    pub timely: TimelyComparison,
    /// Wall time in seconds.
    pub seconds: f64,
}

trait Recorded {
    /// Events this call recorded (none when it was a retry of a journalled command).
    fn recorded(&self) -> i64;
}

impl Recorded for kefu_app::AppendOutcome {
    fn recorded(&self) -> i64 {
        if self.deduplicated { 0 } else { self.event_count }
    }
}

/// The result of one row.
struct RowResult {
    events: i64,
    state: RequestState,
    /// Resolution target met (Some(true)), missed (Some(false)) or not decided (None).
    resolution_met: Option<bool>,
    timely: Option<bool>,
}

/// Imports `reader` (CSV with a header row) with `mapping` through `service`.
pub async fn import(
    service: &CommandService,
    mapping: &Mapping,
    reader: impl Read,
    options: &ImportOptions,
    mut on_progress: impl FnMut(&Progress),
) -> Result<Report, ImportError> {
    let started = Instant::now();
    check_root_causes(service, mapping).await?;
    let mut csv = csv::ReaderBuilder::new().flexible(true).from_reader(reader);
    let header = csv.headers().map_err(|e| ImportError::File(format!("cannot read the header row: {e}")))?.clone();
    let headers = row::Headers::new(mapping, &header).map_err(ImportError::File)?;
    let mut report = Report::default();
    let mut progress = Progress::default();
    let chunk = options.concurrency.max(1) * 8;
    let mut seen_ids: std::collections::HashMap<String, u64> = std::collections::HashMap::new();
    loop {
        // Read a chunk (the file is streamed; memory stays flat however large it is).
        let mut batch = Vec::with_capacity(chunk);
        let mut record = csv::StringRecord::new();
        while batch.len() < chunk {
            let line = csv.position().line();
            match csv.read_record(&mut record) {
                Ok(false) => break,
                Ok(true) => {
                    report.rows += 1;
                    match row::map_row(mapping, &headers, line, &record, service.now()) {
                        Ok(r) => match seen_ids.insert(r.id.clone(), line) {
                            Some(first) => report.rejected.push(RowError {
                                line,
                                id: Some(r.id.clone()),
                                message: format!("the id is also on line {first}; ids must be unique"),
                            }),
                            None => batch.push(r),
                        },
                        Err(e) => report.rejected.push(e),
                    }
                }
                Err(e) => {
                    // Broken quoting or encoding: the reader cannot tell where the row ends.
                    let at = e.position().map(|p| p.line()).unwrap_or(line);
                    return Err(ImportError::File(format!("line {at}: {e}; nothing after it was read")));
                }
            }
        }
        if batch.is_empty() {
            break;
        }
        if options.dry_run {
            report.checked += batch.len() as u64;
        } else {
            let results: Vec<(u64, Result<RowResult, AppError>, Option<String>)> = stream::iter(batch)
                .map(|r| async move {
                    let result = import_row(service, mapping, &r, &options.actor).await;
                    (r.line, result, Some(r.id))
                })
                .buffer_unordered(options.concurrency.max(1))
                .collect()
                .await;
            let mut results = results;
            results.sort_by_key(|(line, _, _)| *line);
            for (line, result, id) in results {
                match result {
                    Ok(r) => {
                        if r.events > 0 {
                            report.imported += 1;
                        } else {
                            report.unchanged += 1;
                        }
                        report.events += r.events;
                        *report.states.entry(r.state.as_str().to_string()).or_default() += 1;
                        tally(&mut report.timely, r.timely, r.resolution_met);
                    }
                    Err(AppError::Unavailable(message)) => return Err(ImportError::Unavailable { line, message }),
                    Err(AppError::CommandIdReused { .. }) => report.rejected.push(RowError {
                        line,
                        id,
                        message: "imported before with different content; kefu keeps what was imported (events are \
                                  never overwritten); record changes as new steps instead"
                            .into(),
                    }),
                    Err(e) => report.rejected.push(RowError { line, id, message: e.to_string() }),
                }
            }
        }
        progress.rows = report.rows;
        progress.rejected = report.rejected.len() as u64;
        progress.bytes = csv.position().byte();
        on_progress(&progress);
    }
    report.rejected.sort_by_key(|e| e.line);
    report.seconds = started.elapsed().as_secs_f64();
    Ok(report)
}

fn tally(t: &mut TimelyComparison, timely: Option<bool>, met: Option<bool>) {
    match (timely, met) {
        (Some(true), Some(true)) => t.timely_met += 1,
        (Some(true), Some(false)) => t.timely_missed += 1,
        (Some(false), Some(true)) => t.untimely_met += 1,
        (Some(false), Some(false)) => t.untimely_missed += 1,
        (Some(true), None) => t.open.0 += 1,
        (Some(false), None) => t.open.1 += 1,
        (None, _) => {}
    }
}

/// Refuses the import up front when the mapping's root causes are not in the catalogue.
async fn check_root_causes(service: &CommandService, mapping: &Mapping) -> Result<(), ImportError> {
    let config =
        service.configuration().await.map_err(|e| ImportError::Unavailable { line: 1, message: e.to_string() })?;
    let catalogue = config.root_causes();
    let mut missing: Vec<&str> = mapping
        .root_causes
        .values()
        .chain(std::iter::once(&mapping.default_root_cause))
        .map(String::as_str)
        .filter(|code| !catalogue.iter().any(|r| r.code.as_str() == *code))
        .collect();
    missing.sort_unstable();
    missing.dedup();
    if missing.is_empty() {
        return Ok(());
    }
    Err(ImportError::Configuration(format!(
        "the `{}` mapping uses root cause(s) {} that the root-cause catalogue lacks; add them (defineRootCauses) \
         or change the mapping",
        mapping.name,
        missing.iter().map(|c| format!("`{c}`")).collect::<Vec<_>>().join(", ")
    )))
}

/// Ids of a record: stable across runs.
struct Ids {
    base: Uuid,
}

impl Ids {
    fn new(mapping: &Mapping, record: &SourceRecord) -> Ids {
        Ids { base: Uuid::new_v5(&NAMESPACE, format!("{}:{}", mapping.source, record.id).as_bytes()) }
    }

    fn of(&self, what: &str) -> Uuid {
        Uuid::new_v5(&self.base, what.as_bytes())
    }
}

/// The customer and request a source record becomes.
pub fn ids_of(mapping: &Mapping, source_id: &str) -> (Uuid, Uuid) {
    let base = Uuid::new_v5(&NAMESPACE, format!("{}:{source_id}", mapping.source).as_bytes());
    (Uuid::new_v5(&base, b"customer"), Uuid::new_v5(&base, b"request"))
}

async fn import_row(
    service: &CommandService,
    mapping: &Mapping,
    r: &SourceRecord,
    actor: &Actor,
) -> Result<RowResult, AppError> {
    let ids = Ids::new(mapping, r);
    let (customer_id, request_id) = (ids.of("customer"), ids.of("request"));
    // What each step's command is journalled with: a re-run with the same row is the same
    // command, a changed row a reused command id.
    let fingerprint = |step: &str| json!({"import": mapping.source, "step": step, "row": r.content});
    let meta = |step: &str, at: DateTime<Utc>| CommandMeta {
        command_id: Some(ids.of(step)),
        expected_version: None,
        actor: actor.clone(),
        correlation_id: ids.of("import"),
        causation_id: None,
        occurred_at: Some(at),
        fingerprint: Some(fingerprint(step)),
    };
    let mut events = 0;

    // A row imported before with this content: its last step is journalled with it, so every
    // earlier step is too (each step waits for the one before). One lookup instead of
    // deciding every step again; a changed row or an unfinished one takes the full path, which
    // reports a changed row as such.
    let last = match (&r.outcome, r.forwarded_at, &r.department) {
        (Outcome::Resolved { .. }, _, _) => "end",
        (_, Some(_), Some(_)) => "forward",
        _ => "open",
    };
    let done = match service.store().find_command(ids.of(last)).await? {
        Some(j) => *j.command.payload == fingerprint(last) && j.stream_id == request_id,
        None => false,
    };
    if done {
        return row_result(service, request_id, 0, r).await;
    }

    let name = Name::parse("customerName", &mapping.customer_name.replace("{id}", &r.id))?;
    let register = RegisterCustomer {
        customer_id,
        kind: CustomerKind::Person,
        name,
        gender: None,
        birth_date: None,
        contacts: Contacts { address: r.address.clone(), ..Contacts::default() },
        key_contacts: vec![],
        department_code: None,
        needs: None,
        preferences: None,
        external_ref: Some(r.external_ref.clone()),
        classification: None,
        account_manager: None,
    };
    events += service.customer(CustomerCommand::Register(register), meta("customer", r.received_at)).await?.recorded();

    let mut tags = r.tags.clone();
    if let Some(timely) = r.timely {
        tags.push(Label::parse("tags", if timely { "timely-response" } else { "untimely-response" })?);
    }
    let draft = RequestDraft {
        request_id,
        customer_id,
        request_type: mapping.request_type,
        category: r.category.clone(),
        priority: mapping.priority,
        channel: r.channel,
        subject: r.subject.clone(),
        description: r.description.clone(),
        taken_by: None,
        // With a hand-over date the department is assigned then (filed → sent to them).
        department: if r.forwarded_at.is_some() { None } else { r.department.clone() },
        on_site_required: false,
        external_ref: Some(r.external_ref.clone()),
        tags,
        origin: None,
    };
    events += service.open_request(draft, meta("open", r.received_at)).await?.recorded();

    let handed_over = r.forwarded_at.unwrap_or(r.received_at);
    if let (Some(at), Some(department)) = (r.forwarded_at, &r.department) {
        let assign = C::Assign {
            at,
            assignee: None,
            department: Some(department.clone()),
            reason: Some(Text::parse("reason", &format!("sent to {department} by {}", mapping.source))?),
        };
        events += service.request(request_id, assign, meta("forward", at)).await?.recorded();
    }
    if let Outcome::Resolved { resolution, root_cause, compensation, satisfied, source_outcome } = &r.outcome {
        // The source does not say when the department answered; its answer is recorded at the
        // hand-over, the earliest it can have been.
        let at = handed_over;
        let resolve = C::Resolve {
            at,
            resolution: resolution.clone(),
            root_cause: root_cause.clone(),
            compensation: compensation.map(|kind| Compensation {
                kind,
                amount_minor: None,
                currency: None,
                description: None,
            }),
        };
        events += service.request(request_id, resolve, meta("resolve", at)).await?.recorded();
        let end = match satisfied {
            Some(satisfied) => C::RecordReturnVisit {
                at,
                satisfied: *satisfied,
                channel: r.channel,
                note: Some(Text::parse(
                    "note",
                    &format!(
                        "from {}: the customer {} the outcome",
                        mapping.source,
                        if *satisfied { "did not dispute" } else { "disputed" }
                    ),
                )?),
                reason: (!satisfied).then(|| Text::parse("reason", "the customer disputed the outcome")).transpose()?,
                calendar: None,
            },
            None => C::Close {
                at,
                reason: CloseReason::ClosedAtSource,
                note: Some(Text::parse("note", &format!("{}: {source_outcome}", mapping.source))?),
            },
        };
        events += service.request(request_id, end, meta("end", at)).await?.recorded();
    }

    row_result(service, request_id, events, r).await
}

/// What a row left: the request's state and whether its resolution was in time.
async fn row_result(
    service: &CommandService,
    request_id: Uuid,
    events: i64,
    r: &SourceRecord,
) -> Result<RowResult, AppError> {
    let (state, _, _) = service.load::<ServiceRequest>(request_id).await?;
    let resolution_met = state
        .clocks
        .iter()
        .find(|c| c.metric == SlaMetric::Resolution && c.cycle == 1)
        .and_then(|c| c.met_at.map(|met| !c.breached && c.due_at.is_none_or(|due| met <= due)));
    Ok(RowResult { events, state: state.state(), resolution_met, timely: r.timely })
}

#[cfg(test)]
mod tests;
