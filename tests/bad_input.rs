//! Bad input gets a clear error with a stable code and the offending field, and nothing is
//! recorded.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use serde_json::json;
use support::*;

async fn expect(
    stack: &Stack,
    query: &str,
    input: serde_json::Value,
    code: &str,
    field: &str,
) -> anyhow::Result<serde_json::Value> {
    let error = stack.error(query, json!({"input": input})).await?;
    assert_eq!(error["extensions"]["code"], code, "{error:#}");
    assert_eq!(error["extensions"]["field"], field, "{error:#}");
    assert!(!error["message"].as_str().unwrap_or_default().is_empty());
    Ok(error)
}

#[tokio::test]
async fn bad_input_is_refused_with_code_and_field_and_records_nothing() -> anyhow::Result<()> {
    let stack = Stack::start(&[]).await?;

    let e = expect(
        &stack,
        REGISTER,
        json!({"kind": "PERSON", "name": "李雷", "contacts": {"email": "li.lei@"}}),
        "VALIDATION",
        "input.contacts.email",
    )
    .await?;
    assert!(e["message"].as_str().unwrap().contains("e-mail"), "{e}");
    expect(
        &stack,
        REGISTER,
        json!({"kind": "PERSON", "name": "李雷", "contacts": {"phone": "call me"}}),
        "VALIDATION",
        "input.contacts.phone",
    )
    .await?;
    expect(&stack, REGISTER, json!({"kind": "PERSON", "name": "   "}), "VALIDATION", "input.name").await?;
    expect(
        &stack,
        REGISTER,
        json!({"kind": "ORGANIZATION", "name": "X", "gender": "MALE"}),
        "VALIDATION",
        "input.gender",
    )
    .await?;
    expect(
        &stack,
        REGISTER,
        json!({"kind": "PERSON", "name": "X", "birthDate": "2999-01-01"}),
        "VALIDATION",
        "input.birthDate",
    )
    .await?;
    expect(
        &stack,
        REGISTER,
        json!({"kind": "PERSON", "name": "X", "contacts": {"address": {"city": "Paris", "country": "France"}}}),
        "VALIDATION",
        "input.contacts.address.country",
    )
    .await?;

    // Every bad field is reported at once.
    let e = expect(
        &stack,
        REGISTER,
        json!({"kind": "PERSON", "name": "", "contacts": {"email": "nope", "phone": "12"}}),
        "VALIDATION",
        "input.name",
    )
    .await?;
    let fields: Vec<&str> =
        e["extensions"]["fields"].as_array().unwrap().iter().map(|f| f["field"].as_str().unwrap()).collect();
    assert_eq!(fields, ["input.name", "input.contacts.phone", "input.contacts.email"]);

    // An unknown enum value is caught by the schema and still gets a code and the field.
    let error = stack.error(REGISTER, json!({"input": {"kind": "ALIEN", "name": "X"}})).await?;
    assert_eq!(error["extensions"]["code"], "VALIDATION", "{error:#}");
    assert!(error["message"].as_str().unwrap().contains("ALIEN"), "{error:#}");
    assert!(error["extensions"]["field"].as_str().unwrap().starts_with("input"), "{error:#}");

    // Unknown and malformed ids.
    let unknown = uuid::Uuid::now_v7();
    let e = expect(
        &stack,
        LOG_INTERACTION,
        json!({"customerId": unknown, "channel": "PHONE", "direction": "INBOUND", "summary": "x"}),
        "NOT_FOUND",
        "input.customerId",
    )
    .await?;
    assert!(e["message"].as_str().unwrap().contains(&unknown.to_string()));
    expect(
        &stack,
        LOG_INTERACTION,
        json!({"customerId": "not-an-id", "channel": "PHONE", "direction": "INBOUND", "summary": "x"}),
        "VALIDATION",
        "input.customerId",
    )
    .await?;
    expect(&stack, LOG_INTERACTION, json!({"customerId": format!("Interaction:{unknown}"), "channel": "PHONE", "direction": "INBOUND", "summary": "x"}), "VALIDATION", "input.customerId").await?;
    let missing = stack.ok(r#"query($id: ID!) { customer(id: $id) { name } }"#, json!({"id": unknown})).await?;
    assert_eq!(missing["customer"], serde_json::Value::Null, "an unknown customer is null, not an error");
    let bad_query = stack.error(r#"query { customer(id: "Customer:xyz") { name } }"#, json!({})).await?;
    assert_eq!(bad_query["extensions"]["code"], "VALIDATION");
    assert_eq!(bad_query["extensions"]["field"], "id");

    // Domain rules.
    let registered = stack.ok(REGISTER, json!({"input": {"kind": "PERSON", "name": "韩梅梅"}})).await?;
    let id = registered["registerCustomer"]["customerId"].as_str().unwrap().to_string();
    let head = stack.head().await?;
    expect(
        &stack,
        LOG_INTERACTION,
        json!({"customerId": id, "channel": "PHONE", "direction": "INBOUND", "summary": "x",
        "resolvedAtFirstContact": true, "tasksHandedOver": ["转技术部"]}),
        "VALIDATION",
        "input.resolvedAtFirstContact",
    )
    .await?;
    expect(
        &stack,
        LOG_INTERACTION,
        json!({"customerId": id, "channel": "PHONE", "direction": "INBOUND", "summary": "x",
        "occurredAt": "2999-01-01T00:00:00Z"}),
        "VALIDATION",
        "input.occurredAt",
    )
    .await?;
    let exists = stack.error(REGISTER, json!({"input": {"kind": "PERSON", "name": "Z", "customerId": id}})).await?;
    assert_eq!(exists["extensions"]["code"], "ALREADY_EXISTS", "{exists:#}");
    assert_eq!(exists["extensions"]["id"], id.as_str());

    assert_eq!(stack.head().await?, head, "refused commands recorded nothing");
    Ok(())
}
