//! The acting user comes from the bearer token and is recorded on every event.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use jsonwebtoken::{EncodingKey, Header, encode};
use serde_json::json;
use support::*;

const SECRET: &str = "a-test-secret-that-is-long-enough-for-hs256";

fn token(sub: &str, name: &str, roles: &[&str]) -> String {
    let claims = json!({
        "sub": sub, "name": name, "roles": roles,
        "exp": chrono::Utc::now().timestamp() + 600, "iss": "https://idp.example.test"
    });
    encode(&Header::default(), &claims, &EncodingKey::from_secret(SECRET.as_bytes())).unwrap()
}

#[tokio::test]
async fn the_token_decides_who_acts_and_what_they_may_do() -> anyhow::Result<()> {
    let mut stack = Stack::start(&[
        ("KEFU_AUTH_MODE", "jwt".into()),
        ("KEFU_JWT_SECRET", SECRET.into()),
        ("KEFU_JWT_ISSUER", "https://idp.example.test".into()),
    ])
    .await?;

    let (status, body) = stack.post("{ me { id } }", json!({})).await?;
    assert_eq!(status, 401);
    assert_eq!(body["errors"][0]["extensions"]["code"], "UNAUTHENTICATED");

    stack.token = Some("not.a.token".into());
    let (status, body) = stack.post("{ me { id } }", json!({})).await?;
    assert_eq!(status, 401);
    assert_eq!(body["errors"][0]["extensions"]["code"], "UNAUTHENTICATED");

    stack.token = Some(token("agent.chen", "陈静", &["agent"]));
    let me = stack.ok("{ me { id name roles } }", json!({})).await?;
    assert_eq!(me["me"], json!({"id": "agent.chen", "name": "陈静", "roles": ["agent"]}));
    let registered = stack.ok(REGISTER, json!({"input": {"kind": "PERSON", "name": "李雷"}})).await?;
    let id: uuid::Uuid = registered["registerCustomer"]["customerId"].as_str().unwrap().parse()?;
    let actor: serde_json::Value = sqlx::query_scalar("SELECT actor FROM event_store.events WHERE stream_id = $1")
        .bind(id)
        .fetch_one(&stack.db.pool)
        .await?;
    assert_eq!(actor, json!({"id": "agent.chen", "name": "陈静", "kind": "ACTOR_KIND_USER", "roles": ["agent"]}));

    // An analyst reads but does not change data.
    stack.token = Some(token("ana.lyst", "分析员", &["analyst"]));
    let refused = stack.error(REGISTER, json!({"input": {"kind": "PERSON", "name": "X"}})).await?;
    assert_eq!(refused["extensions"]["code"], "FORBIDDEN");
    let read = stack
        .ok(
            r#"query($id: ID!, $pos: GlobalPosition) { customer(id: $id, minPosition: $pos) { name } }"#,
            json!({"id": id, "pos": registered["registerCustomer"]["globalPosition"]}),
        )
        .await?;
    assert_eq!(read["customer"]["name"], "李雷");
    Ok(())
}
