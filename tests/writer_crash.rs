//! Killing kefu (`kill -9`) while many commands are in its write batches loses no answered
//! command and leaves no half-written one: every command that got an answer is in the store
//! exactly as answered, every other one is absent or complete, positions stay dense, the hash
//! chain verifies, and retrying the unanswered ones with their command ids applies each once.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::{
    collections::HashMap,
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicUsize, Ordering},
    },
    time::Duration,
};

use serde_json::{Value, json};
use support::*;
use tokio::sync::Mutex;
use uuid::Uuid;

/// What a client learnt about one command it sent.
#[derive(Debug, Clone)]
enum Answer {
    /// Answered with the command's effect.
    Done { customer_id: String, events: i64, position: i64 },
    /// No answer (the process died) or an error: the client cannot know what happened.
    Unknown,
}

fn register(command_id: Uuid, n: usize) -> Value {
    json!({"input": {
        "kind": "PERSON",
        "name": format!("客户 {n}"),
        "commandId": command_id,
        "contacts": {"phone": format!("+86 138 {:04} {:04}", n / 10_000, n % 10_000), "email": format!("c{n}@example.com")},
    }})
}

async fn send(client: &reqwest::Client, url: &str, command_id: Uuid, n: usize) -> Answer {
    let response =
        client.post(url).json(&json!({"query": REGISTER, "variables": register(command_id, n)})).send().await;
    let Ok(response) = response else { return Answer::Unknown };
    let Ok(body) = response.json::<Value>().await else { return Answer::Unknown };
    let r = &body["data"]["registerCustomer"];
    if body.get("errors").is_some() || r.is_null() {
        return Answer::Unknown;
    }
    Answer::Done {
        customer_id: r["customerId"].as_str().unwrap().to_string(),
        events: r["eventsRecorded"].as_i64().unwrap(),
        position: r["globalPosition"].as_str().and_then(|p| p.parse().ok()).or(r["globalPosition"].as_i64()).unwrap(),
    }
}

/// 32 clients send commands until `answered` reaches `kill_after`, then the process is killed;
/// returns every command sent and what its client learnt.
async fn load_and_kill(stack: &mut Stack, kill_after: usize, sent: &Arc<Mutex<HashMap<Uuid, (usize, Answer)>>>) {
    let url = stack.kefu.graphql_url().unwrap();
    let client = reqwest::Client::builder().timeout(Duration::from_secs(10)).build().unwrap();
    let answered = Arc::new(AtomicUsize::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let next = Arc::new(AtomicUsize::new(sent.lock().await.len()));
    let mut clients = Vec::new();
    for _ in 0..32 {
        let (client, url, answered, stop, next, sent) =
            (client.clone(), url.clone(), answered.clone(), stop.clone(), next.clone(), sent.clone());
        clients.push(tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                let n = next.fetch_add(1, Ordering::Relaxed);
                let id = Uuid::now_v7();
                sent.lock().await.insert(id, (n, Answer::Unknown));
                let answer = send(&client, &url, id, n).await;
                if matches!(answer, Answer::Done { .. }) {
                    answered.fetch_add(1, Ordering::Relaxed);
                } else {
                    // The process is gone (or going): stop sending.
                    stop.store(true, Ordering::Relaxed);
                }
                sent.lock().await.insert(id, (n, answer));
            }
        }));
    }
    while answered.load(Ordering::Relaxed) < kill_after {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    stack.kefu.kill(); // SIGKILL, while the clients keep sending
    stop.store(true, Ordering::Relaxed);
    for c in clients {
        c.await.unwrap();
    }
}

/// Checks the store against what the clients learnt.
async fn check_store(pool: &sqlx::PgPool, sent: &HashMap<Uuid, (usize, Answer)>) -> anyhow::Result<usize> {
    // Every command in the journal with the number of events it appended and its last position.
    let rows: Vec<(Uuid, Value)> =
        sqlx::query_as("SELECT command_id, outcome FROM event_store.commands").fetch_all(pool).await?;
    let journal: HashMap<Uuid, Value> = rows.into_iter().collect();
    let events: Vec<(Uuid, i64, i64)> =
        sqlx::query_as("SELECT command_id, count(*), max(global_position) FROM event_store.events GROUP BY command_id")
            .fetch_all(pool)
            .await?;
    let events: HashMap<Uuid, (i64, i64)> = events.into_iter().map(|(c, n, p)| (c, (n, p))).collect();
    for (command, (n, p)) in &events {
        let outcome =
            journal.get(command).unwrap_or_else(|| panic!("events of command {command} without its journal entry"));
        assert_eq!(outcome["eventCount"].as_i64(), Some(*n), "command {command}: journal and events disagree");
        assert_eq!(outcome["lastPosition"].as_i64(), Some(*p), "command {command}: journal and events disagree");
    }
    let mut unknown_but_complete = 0;
    for (command, (n, answer)) in sent {
        match answer {
            Answer::Done { events: count, position, .. } => {
                let (stored, last) = events
                    .get(command)
                    .copied()
                    .unwrap_or_else(|| panic!("command {command} (#{n}) was answered but is not in the store"));
                assert_eq!((stored, last), (*count, *position), "command {command} is stored as answered");
            }
            Answer::Unknown => {
                // Absent, or complete (checked above against its journal entry).
                if journal.contains_key(command) {
                    assert!(events.contains_key(command), "journalled command {command} has no events");
                    unknown_but_complete += 1;
                }
            }
        }
    }
    let (count, max, head): (i64, Option<i64>, i64) = sqlx::query_as(
        "SELECT count(*), max(global_position), (SELECT position FROM event_store.log_head) FROM event_store.events",
    )
    .fetch_one(pool)
    .await?;
    assert_eq!(Some(count), max, "positions are dense");
    assert_eq!(max, Some(head), "the head is the last position");
    let verification = kefu_store::integrity::verify_store(pool, |_, _| {}).await?;
    assert!(verification.first_mismatch.is_none(), "the hash chain verifies: {:?}", verification.first_mismatch);
    assert_eq!(verification.events, count);
    Ok(unknown_but_complete)
}

#[tokio::test]
async fn kill_9_mid_batch_loses_no_answered_command_and_half_writes_none() -> anyhow::Result<()> {
    let mut stack = Stack::start(&[]).await?;
    let sent = Arc::new(Mutex::new(HashMap::new()));
    load_and_kill(&mut stack, 300, &sent).await;
    let Stack { db, .. } = stack;
    let after_first = sent.lock().await.clone();
    let complete = check_store(&db.pool, &after_first).await?;
    eprintln!(
        "first life: {} commands sent, {} answered, {complete} unanswered but complete",
        after_first.len(),
        after_first.values().filter(|(_, a)| matches!(a, Answer::Done { .. })).count()
    );

    // A second life on the same database, killed the same way.
    let mut stack = Stack::on(db, &[])?;
    load_and_kill(&mut stack, 300, &sent).await;
    let Stack { db, .. } = stack;
    let all = sent.lock().await.clone();
    check_store(&db.pool, &all).await?;
    let answered = all.values().filter(|(_, a)| matches!(a, Answer::Done { .. })).count();
    assert!(answered >= 600, "both lives answered commands before they died");
    assert!(all.len() > answered, "some commands were in flight when the process died");

    // Retried with their command ids, the unanswered commands go through once, and the
    // answered ones return their first result.
    let stack = Stack::on(db, &[])?;
    let mut created = HashMap::new();
    for (command, (n, answer)) in &all {
        let data = stack.ok(REGISTER, register(*command, *n)).await?;
        let r = &data["registerCustomer"];
        if let Answer::Done { customer_id, .. } = answer {
            assert_eq!(r["deduplicated"], true, "{r}");
            assert_eq!(r["customerId"].as_str(), Some(customer_id.as_str()));
        }
        created.insert(r["customerId"].as_str().unwrap().to_string(), *command);
    }
    assert_eq!(created.len(), all.len(), "one customer per command");
    let customers: i64 = sqlx::query_scalar("SELECT count(*) FROM event_store.streams WHERE stream_type = 'customer'")
        .fetch_one(&stack.db.pool)
        .await?;
    assert_eq!(customers as usize, all.len(), "each command applied once");
    let unknown: HashMap<Uuid, (usize, Answer)> = HashMap::new();
    check_store(&stack.db.pool, &unknown).await?;
    Ok(())
}
