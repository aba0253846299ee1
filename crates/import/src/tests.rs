//! The importer on the in-memory store (the PostgreSQL run is in `tests/import.rs` at the
//! workspace root).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

use kefu_app::{ActorKind, InMemoryEventStore};
use kefu_domain::vocab::CompensationKind;

use super::*;

const HEADER: &str = "Date received,Product,Sub-product,Issue,Sub-issue,Consumer complaint narrative,\
    Company public response,Company,State,ZIP code,Tags,Consumer consent provided?,Submitted via,\
    Date sent to company,Company response to consumer,Timely response?,Consumer disputed?,Complaint ID";

fn file(rows: &[&str]) -> String {
    let mut s = String::from(HEADER);
    for r in rows {
        s.push('\n');
        s.push_str(r);
    }
    s.push('\n');
    s
}

const MONETARY: &str = "2023-08-25,Credit card,,Fees or interest,,\"Charged twice.\nPlease help.\",,BANK,FL,330XX,,,\
    Phone,2023-08-26,Closed with monetary relief,Yes,No,101";
const DISPUTED: &str = "2016-03-01,Mortgage,,Loan servicing,,,,LENDER,TX,75001,Servicemember,,Web,2016-03-09,Closed with explanation,No,Yes,102";
const OPEN: &str =
    "2023-09-01,Debt collection,,Attempts to collect debt,,,,AGENCY,,,,,Referral,2023-09-01,In progress,Yes,N/A,103";
const AT_SOURCE: &str = "2022-01-10,Checking account,,Managing an account,,,,BANK,CA,,,,Postal mail,2022-01-10,Closed without relief,Yes,N/A,104";
const BAD_DATE: &str =
    "2023-02-30,Checking account,,Managing an account,,,,BANK,CA,,,,Web,2023-03-01,In progress,Yes,N/A,105";

fn options() -> ImportOptions {
    ImportOptions {
        actor: Actor { id: "import:test".into(), name: Some("test".into()), kind: ActorKind::Import, roles: vec![] },
        concurrency: 3,
        dry_run: false,
    }
}

async fn run(service: &CommandService, text: &str, options: &ImportOptions) -> Result<Report, ImportError> {
    import(service, &Mapping::cfpb(), text.as_bytes(), options, |_| {}).await
}

fn service() -> (Arc<InMemoryEventStore>, CommandService) {
    let store = Arc::new(InMemoryEventStore::new());
    (store.clone(), CommandService::new(store))
}

#[tokio::test]
async fn each_source_outcome_becomes_its_lifecycle_and_bad_rows_are_named() {
    let (store, service) = service();
    let report = run(&service, &file(&[MONETARY, DISPUTED, BAD_DATE, OPEN, AT_SOURCE]), &options()).await.unwrap();
    assert_eq!(report.rows, 5);
    assert_eq!(report.imported, 4);
    assert_eq!(report.rejected.len(), 1);
    // The multi-line narrative makes the bad row start on line 5, not 4.
    assert_eq!(report.rejected[0].line, 5);
    assert_eq!(report.rejected[0].id.as_deref(), Some("105"));
    assert!(report.rejected[0].message.contains("`2023-02-30` is not a date"), "{}", report.rejected[0]);
    let states: Vec<(&str, u64)> = report.states.iter().map(|(k, v)| (k.as_str(), *v)).collect();
    assert_eq!(states, [("CLOSED", 2), ("IN_PROGRESS", 2)]);
    assert_eq!(report.events, store.all().len() as i64);

    let mapping = Mapping::cfpb();
    let (customer, request) = ids_of(&mapping, "101");
    let (state, _, _) = service.load::<ServiceRequest>(request).await.unwrap();
    assert_eq!(state.state(), RequestState::Closed);
    let filed = state.filed.as_ref().unwrap();
    assert_eq!(filed.customer_id, customer);
    assert_eq!(filed.external_ref.as_ref().unwrap().as_str(), "CFPB-101");
    assert_eq!(filed.category.as_str(), "Credit card / Fees or interest");
    assert_eq!(filed.department, None, "filed with the source, then sent to the company");
    assert_eq!(state.department.as_ref().unwrap().as_str(), "BANK");
    assert!(filed.tags.iter().any(|t| t.as_str() == "timely-response"));
    let events: Vec<_> = store.all().into_iter().filter(|e| e.stream_id == request).collect();
    let types: Vec<&str> = events.iter().map(|e| e.event_type.as_str()).collect();
    assert_eq!(types, ["RequestFiled", "RequestAssigned", "RequestResolved", "ReturnVisitRecorded", "RequestClosed"]);
    assert_eq!(events[0].occurred_at.to_rfc3339(), "2023-08-25T04:00:00+00:00", "the source's date, not today");
    assert_eq!(events[2].occurred_at.to_rfc3339(), "2023-08-26T04:00:00+00:00");
    assert_eq!(events[2].payload["compensation"]["kind"], CompensationKind::Monetary.wire_name());
    assert!(events.iter().all(|e| e.actor.kind == ActorKind::Import && e.correlation_id == events[0].correlation_id));

    // Disputed: the return visit reopens it.
    let (state, _, _) = service.load::<ServiceRequest>(ids_of(&mapping, "102").1).await.unwrap();
    assert_eq!(state.state(), RequestState::InProgress);
    assert_eq!(state.reopened, 1);
    // Not asked: closed at the source.
    let (state, _, _) = service.load::<ServiceRequest>(ids_of(&mapping, "104").1).await.unwrap();
    assert_eq!(state.state(), RequestState::Closed);

    // The source's verdicts against kefu's 48 h resolution target: 101 was answered the next
    // day (met), 104 the same day (met), 102 after eight days (missed, though "timely" is No
    // at the source); 103 is open.
    assert_eq!(
        report.timely,
        TimelyComparison { timely_met: 2, timely_missed: 0, untimely_met: 0, untimely_missed: 1, open: (1, 0) }
    );
}

#[tokio::test]
async fn a_second_run_records_nothing_and_a_changed_row_is_refused() {
    let (store, service) = service();
    let text = file(&[MONETARY, DISPUTED, OPEN, AT_SOURCE]);
    let first = run(&service, &text, &options()).await.unwrap();
    let events = store.all().len();
    assert_eq!(first.events as usize, events);

    let again = run(&service, &text, &options()).await.unwrap();
    assert_eq!((again.imported, again.unchanged, again.events), (0, 4, 0));
    assert!(again.rejected.is_empty());
    assert_eq!(store.all().len(), events, "nothing recorded twice");
    assert_eq!(again.states, first.states);

    let changed = text.replace("Attempts to collect debt", "Attempts to collect a debt");
    let third = run(&service, &changed, &options()).await.unwrap();
    assert_eq!(third.unchanged, 3);
    assert_eq!(third.rejected.len(), 1);
    assert_eq!(third.rejected[0].id.as_deref(), Some("103"));
    assert!(third.rejected[0].message.contains("imported before with different content"), "{}", third.rejected[0]);
    assert_eq!(store.all().len(), events);
}

/// A store that goes down after `appends` successful appends.
struct Flaky {
    inner: Arc<InMemoryEventStore>,
    appends: std::sync::atomic::AtomicUsize,
}

impl kefu_app::EventStore for Flaky {
    fn append(
        &self,
        request: kefu_app::AppendRequest,
    ) -> futures::future::BoxFuture<'_, Result<kefu_app::AppendOutcome, kefu_app::StoreError>> {
        use std::sync::atomic::Ordering;
        if self.appends.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1)).is_err() {
            return Box::pin(async { Err(kefu_app::StoreError::Unavailable("connection refused".into())) });
        }
        self.inner.append(request)
    }

    fn load(
        &self,
        stream_id: Uuid,
    ) -> futures::future::BoxFuture<'_, Result<Vec<kefu_app::RecordedEvent>, kefu_app::StoreError>> {
        self.inner.load(stream_id)
    }

    fn find_command(
        &self,
        command_id: Uuid,
    ) -> futures::future::BoxFuture<'_, Result<Option<kefu_app::store::JournalledCommand>, kefu_app::StoreError>> {
        self.inner.find_command(command_id)
    }
}

#[tokio::test]
async fn an_outage_stops_the_import_and_the_next_run_completes_it() {
    let text = file(&[MONETARY, DISPUTED, OPEN, AT_SOURCE]);
    let (clean_store, clean) = service();
    run(&clean, &text, &options()).await.unwrap();

    let inner = Arc::new(InMemoryEventStore::new());
    // Seven appends succeed: some rows are whole, one is half done, the rest not started.
    let flaky = CommandService::new(Arc::new(Flaky { inner: inner.clone(), appends: 7.into() }));
    let err = run(&flaky, &text, &ImportOptions { concurrency: 1, ..options() }).await.unwrap_err();
    // The first row spans lines 2-3 (a multi-line narrative): the second starts on line 4.
    assert!(matches!(err, ImportError::Unavailable { line: 4, .. }), "{err}");
    assert!(err.to_string().contains("run it again"), "{err}");
    let partial = inner.all().len();
    assert!(partial > 0 && partial < clean_store.all().len());

    let resumed = run(&CommandService::new(inner.clone()), &text, &options()).await.unwrap();
    assert!(resumed.rejected.is_empty(), "{:?}", resumed.rejected);
    assert_eq!(resumed.events as usize + partial, clean_store.all().len());
    let shape = |events: Vec<kefu_app::RecordedEvent>| {
        let mut v: Vec<(Uuid, i64, String, Uuid)> =
            events.into_iter().map(|e| (e.stream_id, e.stream_version, e.event_type, e.event_id)).collect();
        v.sort();
        v
    };
    assert_eq!(shape(inner.all()), shape(clean_store.all()), "the same facts, the same ids, as an uninterrupted run");
}

#[tokio::test]
async fn duplicate_ids_dry_runs_and_unknown_root_causes() {
    let (_, svc) = service();
    let report = run(&svc, &file(&[OPEN, OPEN]), &options()).await.unwrap();
    assert_eq!(report.imported, 1);
    assert_eq!(report.rejected.len(), 1);
    assert!(report.rejected[0].message.contains("also on line 2"), "{}", report.rejected[0]);

    let (store2, service2) = service();
    let dry =
        run(&service2, &file(&[MONETARY, BAD_DATE]), &ImportOptions { dry_run: true, ..options() }).await.unwrap();
    assert_eq!((dry.checked, dry.rejected.len(), dry.events), (1, 1, 0));
    assert!(store2.all().is_empty(), "a dry run records nothing");

    let custom = include_str!("../mappings/cfpb.json")
        .replace("\"defaultRootCause\": \"other\"", "\"defaultRootCause\": \"gremlins\"");
    let mapping = Mapping::from_json("custom", &custom).unwrap();
    let err = import(&svc, &mapping, file(&[MONETARY]).as_bytes(), &options(), |_| {}).await.unwrap_err();
    assert!(err.to_string().contains("`gremlins`"), "{err}");

    let err = run(&svc, "Date received,Product\n2023-01-01,X\n", &options()).await.unwrap_err();
    assert!(err.to_string().contains("`Complaint ID`"), "{err}");
}
