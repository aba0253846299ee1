//! A database or broker outage gives UNAVAILABLE (or a bounded wait), never a panic, and kefu
//! recovers when the component returns.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::time::Duration;

use kefu_testkit::{KefuProcess, PrivateBroker, PrivatePostgres};
use serde_json::json;
use support::*;

fn read_topic_at(brokers: &str, topic: &str, expected: usize) -> anyhow::Result<Vec<Record>> {
    read_topic_from(brokers, topic, expected)
}

fn env(database_url: String, brokers: String) -> Vec<(&'static str, String)> {
    vec![
        ("DATABASE_URL", database_url),
        ("KEFU_KAFKA_BROKERS", brokers),
        ("KEFU_KAFKA_TOPIC", kefu_testkit::unique_topic("outage")),
        ("KEFU_KAFKA_PARTITIONS", PARTITIONS.to_string()),
        ("KEFU_AUTH_MODE", "dev".into()),
        ("KEFU_HTTP_ADDR", "127.0.0.1:0".into()),
        ("KEFU_DB_ACQUIRE_TIMEOUT_MS", "1000".into()),
        ("KEFU_MAX_WAIT_MS", "2000".into()),
        ("KEFU_ON_LOST_LOG", "republish".into()),
        ("KEFU_KAFKA_PROPERTIES", std::env::var("KEFU_TEST_KAFKA_PROPS").unwrap_or_default()),
    ]
}

async fn post(
    client: &reqwest::Client,
    url: &str,
    query: &str,
    variables: serde_json::Value,
) -> anyhow::Result<serde_json::Value> {
    Ok(client.post(url).json(&json!({"query": query, "variables": variables})).send().await?.json().await?)
}

#[tokio::test]
async fn a_database_outage_is_unavailable_and_kefu_recovers() -> anyhow::Result<()> {
    let pg = PrivatePostgres::start()?;
    let mut kefu = KefuProcess::start(&["run"], &env(pg.url(), kefu_testkit::brokers()?), true)?;
    let url = kefu.graphql_url()?;
    let client = reqwest::Client::new();
    let ok = post(&client, &url, REGISTER, json!({"input": {"kind": "PERSON", "name": "李雷"}})).await?;
    assert!(ok.get("errors").is_none(), "{ok}");

    pg.stop()?;
    let command_id = uuid::Uuid::now_v7();
    let register = json!({"input": {"kind": "PERSON", "name": "韩梅梅", "commandId": command_id}});
    let refused = post(&client, &url, REGISTER, register.clone()).await?;
    assert_eq!(refused["errors"][0]["extensions"]["code"], "UNAVAILABLE", "{refused}");
    let id = ok["data"]["registerCustomer"]["customerId"].as_str().unwrap();
    let query = post(&client, &url, r#"query($id: ID!) { customer(id: $id) { name } }"#, json!({"id": id})).await?;
    assert_eq!(query["errors"][0]["extensions"]["code"], "UNAVAILABLE", "{query}");
    let ready = client.get(url.replace("/graphql", "/readyz")).send().await?;
    assert_eq!(ready.status().as_u16(), 503);

    pg.restart()?;
    // The same command, retried, goes through once.
    let mut recovered = serde_json::Value::Null;
    for _ in 0..50 {
        recovered = post(&client, &url, REGISTER, register.clone()).await?;
        if recovered.get("errors").is_none() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(recovered["data"]["registerCustomer"]["deduplicated"], false, "{recovered}");
    let again = post(&client, &url, REGISTER, register).await?;
    assert_eq!(again["data"]["registerCustomer"]["deduplicated"], true);
    let position = recovered["data"]["registerCustomer"]["globalPosition"].clone();
    let new_id = recovered["data"]["registerCustomer"]["customerId"].clone();
    let view = post(
        &client,
        &url,
        r#"query($id: ID!, $pos: GlobalPosition) { customer(id: $id, minPosition: $pos) { name } }"#,
        json!({"id": new_id, "pos": position}),
    )
    .await?;
    // The projector backs off while the database is down; give it a few waits to resume.
    let mut view = view;
    for _ in 0..10 {
        if view.get("errors").is_none() {
            break;
        }
        view = post(
            &client,
            &url,
            r#"query($id: ID!, $pos: GlobalPosition) { customer(id: $id, minPosition: $pos) { name } }"#,
            json!({"id": new_id, "pos": position}),
        )
        .await?;
    }
    assert_eq!(view["data"]["customer"]["name"], "韩梅梅", "{view}");
    assert!(kefu.terminate()?.success(), "kefu exits cleanly after the outage");
    Ok(())
}

#[tokio::test]
async fn a_broker_outage_delays_read_models_but_loses_nothing() -> anyhow::Result<()> {
    let broker = PrivateBroker::start()?;
    let db = kefu_testkit::fresh_database().await?;
    let kefu = KefuProcess::start(&["run"], &env(db.url.clone(), broker.brokers()), true)?;
    let url = kefu.graphql_url()?;
    let client = reqwest::Client::new();
    let view_query = r#"query($id: ID!, $pos: GlobalPosition) { customer(id: $id, minPosition: $pos) { name } }"#;

    let first = post(&client, &url, REGISTER, json!({"input": {"kind": "PERSON", "name": "李雷"}})).await?;
    let r = &first["data"]["registerCustomer"];
    // The first group join on a fresh broker takes a few seconds.
    let mut seen = serde_json::Value::Null;
    for _ in 0..15 {
        seen = post(&client, &url, view_query, json!({"id": r["customerId"], "pos": r["globalPosition"]})).await?;
        if seen.get("errors").is_none() {
            break;
        }
    }
    assert_eq!(seen["data"]["customer"]["name"], "李雷", "{seen}");

    // The broker stops answering (its state is kept, as with a network partition).
    broker.pause()?;
    let second = post(&client, &url, REGISTER, json!({"input": {"kind": "PERSON", "name": "韩梅梅"}})).await?;
    assert!(second.get("errors").is_none(), "commands only need PostgreSQL: {second}");
    let r2 = &second["data"]["registerCustomer"];
    let waiting = post(&client, &url, view_query, json!({"id": r2["customerId"], "pos": r2["globalPosition"]})).await?;
    assert_eq!(waiting["errors"][0]["extensions"]["code"], "NOT_CAUGHT_UP", "{waiting}");
    assert_eq!(waiting["errors"][0]["extensions"]["requestedPosition"], r2["globalPosition"]);

    broker.resume()?;
    let mut caught_up = serde_json::Value::Null;
    for _ in 0..30 {
        caught_up =
            post(&client, &url, view_query, json!({"id": r2["customerId"], "pos": r2["globalPosition"]})).await?;
        if caught_up.get("errors").is_none() {
            break;
        }
    }
    assert_eq!(caught_up["data"]["customer"]["name"], "韩梅梅", "{caught_up}\n{}", kefu.log_tail(40));
    Ok(())
}

#[tokio::test]
async fn a_local_broker_that_forgot_everything_is_refilled_when_kefu_restarts() -> anyhow::Result<()> {
    // deploy/run.sh runs the broker with memory storage: after a restart it is empty, while
    // PostgreSQL still has everything.
    let broker = PrivateBroker::start()?;
    let db = kefu_testkit::fresh_database().await?;
    let settings = env(db.url.clone(), broker.brokers());
    let topic = settings.iter().find(|(k, _)| *k == "KEFU_KAFKA_TOPIC").map(|(_, v)| v.clone()).unwrap();
    let view_query =
        r#"query($id: ID!, $pos: GlobalPosition) { customer(id: $id, minPosition: $pos) { name interactionCount } }"#;
    let client = reqwest::Client::new();

    let mut kefu = KefuProcess::start(&["run"], &settings, true)?;
    let url = kefu.graphql_url()?;
    let first = post(&client, &url, REGISTER, json!({"input": {"kind": "PERSON", "name": "李雷"}})).await?;
    let id = first["data"]["registerCustomer"]["customerId"].clone();
    for summary in ["一", "二", "三"] {
        let logged = post(
            &client,
            &url,
            LOG_INTERACTION,
            json!({"input": {"customerId": id, "channel": "PHONE", "direction": "INBOUND", "summary": summary}}),
        )
        .await?;
        assert!(logged.get("errors").is_none(), "{logged}");
    }
    let head: i64 = sqlx::query_scalar("SELECT position FROM event_store.log_head").fetch_one(&db.pool).await?;
    let mut seen = serde_json::Value::Null;
    for _ in 0..15 {
        seen = post(&client, &url, view_query, json!({"id": id, "pos": head})).await?;
        if seen.get("errors").is_none() {
            break;
        }
    }
    assert_eq!(seen["data"]["customer"]["interactionCount"], 3, "{seen}");
    assert!(kefu.terminate()?.success());

    broker.stop()?;
    broker.restart()?;
    let kefu = KefuProcess::start(&["run"], &settings, true)?;
    let url = kefu.graphql_url()?;
    let more = post(
        &client,
        &url,
        LOG_INTERACTION,
        json!({"input": {"customerId": id, "channel": "EMAIL", "direction": "OUTBOUND", "summary": "四"}}),
    )
    .await?;
    assert!(more.get("errors").is_none(), "{more}");
    let position = more["data"]["logInteraction"]["globalPosition"].clone();
    let mut after = serde_json::Value::Null;
    for _ in 0..15 {
        after = post(&client, &url, view_query, json!({"id": id, "pos": position})).await?;
        if after.get("errors").is_none() {
            break;
        }
    }
    // Nothing counted twice, nothing lost: the projection continued from its offsets over a
    // log that was published again with the same partitions and order.
    assert_eq!(after["data"]["customer"]["interactionCount"], 4, "{after}\n{}", kefu.log_tail(40));
    assert!(kefu.logged("publishing the whole history again"));
    let brokers = broker.brokers();
    let records = tokio::task::spawn_blocking(move || read_topic_at(&brokers, &topic, (head + 1) as usize)).await??;
    assert_eq!(records.len() as i64, head + 1, "the topic holds the whole history again, once");
    Ok(())
}
