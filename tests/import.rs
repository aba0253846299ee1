//! `kefu import complaints` on the real CFPB sample (`../shared/data`): the figures users see
//! through GraphQL match counts taken straight from the CSV; a second run records nothing;
//! malformed rows are named by line and the rest still land.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::{collections::BTreeMap, path::PathBuf, process::Output};

use anyhow::{Result, ensure};
use serde_json::json;
use support::*;

fn sample() -> Result<PathBuf> {
    let path = std::env::var("KEFU_CFPB_SAMPLE").map(PathBuf::from).unwrap_or_else(|_| {
        kefu_testkit::repo_root().join("..").join("shared").join("data").join("cfpb-complaints-2023-sample.csv")
    });
    ensure!(path.exists(), "the CFPB sample is not at {} (set KEFU_CFPB_SAMPLE)", path.display());
    Ok(path)
}

fn kefu_import(db: &kefu_testkit::TestDatabase, file: &std::path::Path, extra: &[&str]) -> Result<Output> {
    let mut command = std::process::Command::new(kefu_testkit::kefu_binary()?);
    command
        .args(["import", "complaints", "--file"])
        .arg(file)
        .args(extra)
        .env("DATABASE_URL", &db.url)
        .env("RUST_LOG", "warn")
        .env("NO_COLOR", "1");
    Ok(command.output()?)
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// What the CSV says, counted with nothing but a CSV reader.
struct Expected {
    rows: usize,
    by_state: BTreeMap<String, i64>,
    by_channel: BTreeMap<String, i64>,
    by_product: BTreeMap<String, i64>,
}

fn expected(path: &std::path::Path) -> Result<Expected> {
    let mut reader = csv::Reader::from_path(path)?;
    let headers = reader.headers()?.clone();
    let col = |name: &str| headers.iter().position(|h| h == name).unwrap();
    let (product, via, response, disputed) =
        (col("Product"), col("Submitted via"), col("Company response to consumer"), col("Consumer disputed?"));
    let mut e =
        Expected { rows: 0, by_state: BTreeMap::new(), by_channel: BTreeMap::new(), by_product: BTreeMap::new() };
    for record in reader.records() {
        let r = record?;
        e.rows += 1;
        // Closed at the source unless still in progress; a disputed outcome reopens it.
        let state = if r[response].starts_with("Closed") && &r[disputed] != "Yes" { "CLOSED" } else { "IN_PROGRESS" };
        *e.by_state.entry(state.into()).or_default() += 1;
        let channel = r[via].to_uppercase().replace(' ', "_");
        *e.by_channel.entry(channel).or_default() += 1;
        *e.by_product.entry(r[product].to_string()).or_default() += 1;
    }
    Ok(e)
}

const COUNT: &str = r#"
query($filter: BacklogFilterInput, $pos: GlobalPosition) {
  complaintBacklog(filter: $filter, first: 1, minPosition: $pos) { totalCount countsByState { state count } }
}"#;

const ALL_STATES: [&str; 8] =
    ["FILED", "ACKNOWLEDGED", "IN_PROGRESS", "AWAITING_CUSTOMER", "RESOLVED", "CLOSED", "WITHDRAWN", "MERGED"];

#[tokio::test]
async fn the_cfpb_sample_imports_once_and_its_figures_match_the_csv() -> Result<()> {
    let path = sample()?;
    let expect = expected(&path)?;
    assert_eq!(expect.rows, 2067, "the sample as DOMAIN.md describes it");
    let db = kefu_testkit::fresh_database().await?;

    let first = kefu_import(&db, &path, &[])?;
    assert!(first.status.success(), "{}\n{}", stdout(&first), String::from_utf8_lossy(&first.stderr));
    let report = stdout(&first);
    assert!(report.contains("2067 rows, 2067 imported, 0 already imported, 0 rejected"), "{report}");
    let head: i64 = sqlx::query_scalar("SELECT position FROM event_store.log_head").fetch_one(&db.pool).await?;

    // A second run records nothing.
    let again = kefu_import(&db, &path, &[])?;
    assert!(again.status.success());
    assert!(stdout(&again).contains("0 imported, 2067 already imported, 0 rejected; 0 events"), "{}", stdout(&again));
    let head_again: i64 = sqlx::query_scalar("SELECT position FROM event_store.log_head").fetch_one(&db.pool).await?;
    assert_eq!(head_again, head);

    // Every imported fact is an event by the importer, at the source's dates.
    let (actors, earliest): (Vec<String>, chrono::DateTime<chrono::Utc>) = (
        sqlx::query_scalar("SELECT DISTINCT actor->>'kind' FROM event_store.events").fetch_all(&db.pool).await?,
        sqlx::query_scalar("SELECT min(occurred_at) FROM event_store.events").fetch_one(&db.pool).await?,
    );
    assert_eq!(actors, ["ACTOR_KIND_IMPORT"]);
    assert_eq!(earliest.date_naive().to_string(), "2012-01-13");

    // Bad rows are named; good ones in the same file land.
    let bad = std::env::temp_dir().join(format!("kefu-bad-{}.csv", uuid::Uuid::new_v4()));
    let header = std::fs::read_to_string(&path)?.lines().next().unwrap().to_string();
    std::fs::write(
        &bad,
        format!(
            "{header}\n\
             2023-01-05,Mortgage,,Trouble during payment process,,,,ACME BANK,TX,75001,,,Web,2023-01-06,In progress,Yes,N/A,990001\n\
             2023-02-30,Mortgage,,Trouble during payment process,,,,ACME BANK,TX,75001,,,Web,2023-03-01,In progress,Yes,N/A,990002\n\
             2023-01-05,Mortgage,,Trouble during payment process,,,,ACME BANK,TX,75001,,,Telegram,2023-01-06,In progress,Yes,N/A,990003\n\
             2023-01-05,Mortgage,,Trouble during payment process,,,,ACME BANK,TX,75001,,,Web,2023-01-06,Closed with explanation,Yes,N/A,990004\n"
        ),
    )?;
    let partial = kefu_import(&db, &bad, &[])?;
    std::fs::remove_file(&bad).ok();
    let out = stdout(&partial);
    assert_eq!(partial.status.code(), Some(2), "{out}");
    assert!(out.contains("rejected: line 3 (id 990002): column `Date received`: `2023-02-30` is not a date"), "{out}");
    assert!(out.contains("rejected: line 4 (id 990003): column `Submitted via`: `Telegram`"), "{out}");
    assert!(out.contains("4 rows, 2 imported, 0 already imported, 2 rejected"), "{out}");
    let head: i64 = sqlx::query_scalar("SELECT position FROM event_store.log_head").fetch_one(&db.pool).await?;

    // The read models, through GraphQL, against the CSV's own counts (plus the two good rows
    // of the second file: one in progress, one closed, both web, both mortgage).
    let stack = Stack::on(db, &[])?;
    // Projecting ~9,000 events takes a while on a busy machine: wait longer than one query may.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(300);
    loop {
        let (_, body) = stack.post(COUNT, json!({"pos": head})).await?;
        match body["errors"][0]["extensions"]["code"].as_str() {
            None => break,
            Some("NOT_CAUGHT_UP") if std::time::Instant::now() < deadline => continue,
            Some(_) => anyhow::bail!("{body:#}"),
        }
    }
    let count = |filter: serde_json::Value| {
        let stack = &stack;
        async move {
            let mut filter = filter;
            filter["states"] = json!(ALL_STATES);
            let data = stack.ok(COUNT, json!({"filter": filter, "pos": head})).await?;
            anyhow::Ok(data["complaintBacklog"].clone())
        }
    };
    let all = count(json!({})).await?;
    assert_eq!(all["totalCount"], 2067 + 2);
    let mut states: BTreeMap<String, i64> = all["countsByState"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| (c["state"].as_str().unwrap().to_string(), c["count"].as_i64().unwrap()))
        .collect();
    *states.get_mut("IN_PROGRESS").unwrap() -= 1;
    *states.get_mut("CLOSED").unwrap() -= 1;
    assert_eq!(states, expect.by_state);

    for (channel, n) in &expect.by_channel {
        let got = count(json!({"channels": [channel]})).await?;
        let extra = if channel == "WEB" { 2 } else { 0 };
        assert_eq!(got["totalCount"], n + extra, "channel {channel}");
    }
    assert_eq!(expect.by_product.len(), 13);
    for (product, n) in &expect.by_product {
        let got = count(json!({"category": format!("{product} / ")})).await?;
        let extra = if product == "Mortgage" { 2 } else { 0 };
        assert_eq!(got["totalCount"], n + extra, "product {product}");
    }

    // One request and its customer as an agent would see them.
    let customer = stack
        .ok(
            r#"query($pos: GlobalPosition) { customers(filter: {search: "CFPB consumer 990001"}, minPosition: $pos) {
                 nodes { name externalRef contacts { address { region postalCode country } } } } }"#,
            json!({"pos": head}),
        )
        .await?;
    assert_eq!(
        customer["customers"]["nodes"],
        json!([{"name": "CFPB consumer 990001", "externalRef": "CFPB-990001",
                "contacts": {"address": {"region": "TX", "postalCode": "75001", "country": "US"}}}])
    );
    let one = stack
        .ok(
            r#"{ complaintBacklog(filter: {states: [IN_PROGRESS], department: "ACME BANK"}, first: 5) {
                 nodes { externalRef state department channel category tags } } }"#,
            json!({}),
        )
        .await?;
    assert_eq!(
        one["complaintBacklog"]["nodes"][0],
        json!({"externalRef": "CFPB-990001", "state": "IN_PROGRESS", "department": "ACME BANK", "channel": "WEB",
               "category": "Mortgage / Trouble during payment process", "tags": ["timely-response"]})
    );
    Ok(())
}
