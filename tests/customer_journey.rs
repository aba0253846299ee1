//! A customer's story through GraphQL, seen again on Kafka and in the customer 360.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::collections::HashMap;

use serde_json::json;
use support::*;

const CUSTOMER_360: &str = r#"
query($id: ID!, $pos: GlobalPosition) {
  customer(id: $id, minPosition: $pos) {
    id customerId kind name version
    contacts { phone backupPhone email address { city country } }
    classification { valueTier keyAccount industry }
    accountManager { id name }
    consents { purpose granted channel recordedBy }
    interactionCount resolvedAtFirstContact firstContactResolutionRate lastContactChannel lastContactAt
    contactsByChannel { channel count }
    interactions(first: 2) {
      edges { cursor node { summary channel occurredAt recordedBy handledBy { id } resolvedAtFirstContact } }
      pageInfo { hasNextPage endCursor }
    }
  }
}"#;

#[tokio::test]
async fn a_customer_registered_and_contacted_through_graphql_is_on_kafka_and_in_the_360_view() -> anyhow::Result<()> {
    let stack = Stack::start(&[]).await?;
    let command_id = uuid::Uuid::now_v7();
    let register = json!({"input": {
        "commandId": command_id,
        "kind": "PERSON",
        "name": "李雷",
        "gender": "MALE",
        "contacts": {"phone": "138 0013 8000", "backupPhone": "+86 10 6552 9988", "email": "li.lei@example.com",
                     "address": {"street": "建国路 88 号", "city": "北京", "country": "cn"}}
    }});
    let first = stack.ok(REGISTER, register.clone()).await?;
    let first = &first["registerCustomer"];
    assert_eq!(first["streamVersion"], 1);
    assert_eq!(first["deduplicated"], false);
    assert_eq!(first["commandId"], command_id.to_string());
    let id = first["customerId"].as_str().unwrap().to_string();

    // A retry after a timeout: same result, nothing recorded twice.
    let again = stack.ok(REGISTER, register).await?;
    assert_eq!(again["registerCustomer"]["deduplicated"], true);
    assert_eq!(again["registerCustomer"]["customerId"], id.as_str());
    assert_eq!(again["registerCustomer"]["globalPosition"], first["globalPosition"]);
    assert_eq!(again["registerCustomer"]["eventsRecorded"], 0);

    let update = stack
        .ok(
            r#"mutation($input: UpdateCustomerProfileInput!) {
                 updateCustomerProfile(input: $input) { streamVersion eventsRecorded }
               }"#,
            json!({"input": {"customerId": id, "expectedVersion": 1, "phone": "139-1234-5678", "address": null}}),
        )
        .await?;
    assert_eq!(update["updateCustomerProfile"]["streamVersion"], 2);

    // A stale expected version is a conflict that says where the record is now.
    let conflict = stack
        .error(
            r#"mutation($input: UpdateCustomerProfileInput!) { updateCustomerProfile(input: $input) { streamVersion } }"#,
            json!({"input": {"customerId": id, "expectedVersion": 1, "needs": "宽带"}}),
        )
        .await?;
    assert_eq!(conflict["extensions"]["code"], "CONFLICT");
    assert_eq!(conflict["extensions"]["currentVersion"], 2);

    stack
        .ok(
            r#"mutation($input: ClassifyCustomerInput!) { classifyCustomer(input: $input) { streamVersion } }"#,
            json!({"input": {"customerId": format!("Customer:{id}"), "valueTier": "IMPORTANT", "keyAccount": true}}),
        )
        .await?;
    stack
        .ok(
            r#"mutation($input: AssignAccountManagerInput!) { assignAccountManager(input: $input) { streamVersion } }"#,
            json!({"input": {"customerId": id, "manager": {"id": "zhang.wei", "name": "张伟"}, "reason": "重要客户"}}),
        )
        .await?;
    stack
        .ok(
            r#"mutation($input: RecordConsentInput!) { recordConsent(input: $input) { streamVersion } }"#,
            json!({"input": {"customerId": id, "purpose": "SURVEYS", "granted": true, "channel": "PHONE"}}),
        )
        .await?;

    let contacts = [
        json!({"customerId": id, "channel": "PHONE", "direction": "INBOUND", "summary": "宽带掉线",
               "tasksHandedOver": ["网络部检查光猫"], "occurredAt": "2024-03-01T09:30:00Z"}),
        json!({"customerId": id, "channel": "WECHAT", "direction": "INBOUND", "summary": "询问账单",
               "resolvedAtFirstContact": true}),
        json!({"customerId": id, "channel": "PHONE", "direction": "OUTBOUND", "summary": "回访",
               "resolvedAtFirstContact": true, "durationSeconds": 180}),
    ];
    let mut last_position = 0;
    for c in contacts {
        let logged = stack.ok(LOG_INTERACTION, json!({"input": c})).await?;
        last_position = logged["logInteraction"]["globalPosition"].as_i64().unwrap();
    }

    // A second customer interleaves in the log.
    stack.ok(REGISTER, json!({"input": {"kind": "ORGANIZATION", "name": "华北制造有限公司"}})).await?;

    let view = stack.ok(CUSTOMER_360, json!({"id": id, "pos": last_position})).await?;
    let c = &view["customer"];
    assert_eq!(c["name"], "李雷");
    assert_eq!(c["kind"], "PERSON");
    assert_eq!(c["version"], 5);
    assert_eq!(c["contacts"]["phone"], "13912345678");
    assert_eq!(c["contacts"]["backupPhone"], "+861065529988");
    assert_eq!(c["contacts"]["address"], serde_json::Value::Null);
    assert_eq!(c["classification"]["valueTier"], "IMPORTANT");
    assert_eq!(c["classification"]["keyAccount"], true);
    assert_eq!(c["accountManager"]["id"], "zhang.wei");
    assert_eq!(c["consents"][0]["purpose"], "SURVEYS");
    assert_eq!(c["consents"][0]["recordedBy"], "dev");
    assert_eq!(c["interactionCount"], 3);
    assert_eq!(c["resolvedAtFirstContact"], 2);
    let rate = c["firstContactResolutionRate"].as_f64().unwrap();
    assert!((rate - 2.0 / 3.0).abs() < 1e-9);
    assert_eq!(c["contactsByChannel"][0], json!({"channel": "PHONE", "count": 2}));
    // Newest first; the historical contact (2024) comes last.
    let edges = c["interactions"]["edges"].as_array().unwrap();
    assert_eq!(edges.len(), 2);
    assert_eq!(edges[0]["node"]["summary"], "回访");
    assert_eq!(edges[0]["node"]["recordedBy"], "dev");
    assert_eq!(edges[0]["node"]["handledBy"]["id"], "dev", "the agent who logged it handled it");
    assert_eq!(c["interactions"]["pageInfo"]["hasNextPage"], true);
    let next = stack
        .ok(
            r#"query($id: ID!, $after: String) { customer(id: $id) { interactions(first: 5, after: $after) {
                 edges { node { summary occurredAt } } pageInfo { hasNextPage } } } }"#,
            json!({"id": id, "after": c["interactions"]["pageInfo"]["endCursor"]}),
        )
        .await?;
    let rest = next["customer"]["interactions"]["edges"].as_array().unwrap();
    assert_eq!(rest.len(), 1);
    assert_eq!(rest[0]["node"]["summary"], "宽带掉线");
    assert_eq!(rest[0]["node"]["occurredAt"], "2024-03-01T09:30:00+00:00");

    // The same customer through node() and through the list.
    let node = stack
        .ok(r#"query($id: ID!) { node(id: $id) { id ... on Customer { name } } }"#, json!({"id": c["id"]}))
        .await?;
    assert_eq!(node["node"]["name"], "李雷");
    let list = stack
        .ok(r#"query { customers(filter: {search: "李"}, first: 10) { edges { node { customerId } } } }"#, json!({}))
        .await?;
    let ids: Vec<_> = list["customers"]["edges"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["node"]["customerId"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(ids, vec![id.clone()]);

    // Every event is on Kafka, once, in order per customer, with the envelope intact.
    let head = stack.head().await?;
    let topic = stack.topic.clone();
    let records = tokio::task::spawn_blocking(move || read_topic(&topic, head as usize)).await??;
    assert_eq!(records.len() as i64, head);
    let mut by_customer: HashMap<String, Vec<&Record>> = HashMap::new();
    for r in &records {
        assert_eq!(r.key, r.event.customer_id.unwrap().to_string(), "keyed by customer");
        assert_eq!(r.event.actor.id, "dev", "the acting user is on every event");
        by_customer.entry(r.key.clone()).or_default().push(r);
    }
    let mine = &by_customer[&id];
    let positions: Vec<i64> = mine.iter().map(|r| r.event.global_position).collect();
    assert!(positions.windows(2).all(|w| w[0] < w[1]), "per-customer order: {positions:?}");
    assert!(mine.iter().all(|r| r.partition == mine[0].partition), "one partition per customer");
    let types: Vec<&str> = mine.iter().map(|r| r.event.event_type.as_str()).collect();
    assert_eq!(
        types,
        [
            "CustomerRegistered",
            "CustomerProfileUpdated",
            "CustomerClassified",
            "AccountManagerAssigned",
            "ConsentGranted",
            "InteractionLogged",
            "InteractionLogged",
            "InteractionLogged"
        ]
    );
    let historical = mine[5];
    assert_eq!(historical.event.occurred_at.to_rfc3339(), "2024-03-01T09:30:00+00:00");
    assert!(historical.event.recorded_at > historical.event.occurred_at);
    assert_eq!(mine[0].event.command_id, command_id);
    assert_eq!(mine[0].event.payload["contacts"]["phone"], "13800138000");
    Ok(())
}

#[tokio::test]
async fn health_readiness_and_metrics_answer() -> anyhow::Result<()> {
    let stack = Stack::start(&[]).await?;
    let base = stack.kefu.base_url.clone().unwrap();
    let health = stack.client.get(format!("{base}/healthz")).send().await?;
    assert_eq!(health.status().as_u16(), 200);
    let ready: serde_json::Value = stack.client.get(format!("{base}/readyz")).send().await?.json().await?;
    assert_eq!(ready["status"], "ready");
    stack.ok(REGISTER, json!({"input": {"kind": "PERSON", "name": "韩梅梅"}})).await?;
    let metrics = stack.client.get(format!("{base}/metrics")).send().await?.text().await?;
    assert!(metrics.contains("kefu_event_store_head_position 1"), "{metrics}");
    assert!(metrics.contains("kefu_projection_lag_events{projection=\"customer360\""), "{metrics}");
    let graphiql = stack.client.get(format!("{base}/graphql")).send().await?.text().await?;
    assert!(graphiql.to_lowercase().contains("graphiql"));
    let status = stack
        .ok("{ projections { name generation status appliedThrough lagEvents deadLetters { streamId } } }", json!({}))
        .await?;
    assert_eq!(status["projections"][0]["name"], "customer360");
    assert_eq!(status["projections"][0]["status"], "active");
    Ok(())
}
