//! A consumer outside Rust decodes every event on the topic from proto/ alone: the Python
//! example in docs/ runs against a live kefu.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use serde_json::json;
use support::*;

#[tokio::test]
async fn python_decodes_every_event_from_proto_alone() -> anyhow::Result<()> {
    let stack = Stack::start(&[]).await?;
    let registered = stack
        .ok(
            REGISTER,
            json!({"input": {"kind": "ORGANIZATION", "name": "华北制造有限公司",
                "keyContacts": [{"name": "韩梅梅", "role": "采购经理", "phone": "139 1111 2222"}],
                "classification": {"industry": "MANUFACTURING", "valueTier": "IMPORTANT", "keyAccount": true},
                "accountManager": {"id": "wang.fang", "name": "王芳"}}}),
        )
        .await?;
    let id = registered["registerCustomer"]["customerId"].as_str().unwrap().to_string();
    stack
        .ok(
            LOG_INTERACTION,
            json!({"input": {"customerId": id, "channel": "WECHAT", "direction": "INBOUND", "summary": "催单",
                   "durationSeconds": 95, "followUpActions": [{"description": "明天回电", "dueAt": "2030-01-01T09:00:00Z"}]}}),
        )
        .await?;
    let head = stack.head().await?;

    let root = kefu_testkit::repo_root();
    let output = tokio::process::Command::new(kefu_testkit::python()?)
        .arg(root.join("docs/examples/consume.py"))
        .args(["--brokers", &kefu_testkit::brokers()?, "--topic", &stack.topic])
        .arg("--proto")
        .arg(root.join("proto"))
        .args(["--count", &head.to_string(), "--timeout", "60"])
        .output()
        .await?;
    assert!(output.status.success(), "consume.py failed: {}", String::from_utf8_lossy(&output.stderr));
    let lines: Vec<serde_json::Value> =
        String::from_utf8(output.stdout)?.lines().map(serde_json::from_str).collect::<Result<_, _>>()?;
    assert_eq!(lines.len() as i64, head);

    // Compare with what the event store holds, event by event.
    let stored: Vec<(i64, String, serde_json::Value)> =
        sqlx::query_as("SELECT global_position, event_type, payload FROM event_store.events ORDER BY global_position")
            .fetch_all(&stack.db.pool)
            .await?;
    let mut by_position: Vec<&serde_json::Value> = lines.iter().collect();
    by_position.sort_by_key(|l| l["globalPosition"].as_i64().unwrap_or_default());
    for (line, (position, event_type, payload)) in by_position.iter().zip(&stored) {
        assert_eq!(line["globalPosition"], *position);
        assert_eq!(line["eventType"], event_type.as_str());
        assert_eq!(line["key"], id.as_str());
        assert_eq!(line["customerId"], id.as_str());
        assert_eq!(line["actor"]["id"], "dev");
        match event_type.as_str() {
            "CustomerRegistered" => {
                assert_eq!(line["payload"]["name"], payload["name"]);
                assert_eq!(line["payload"]["kind"], "CUSTOMER_KIND_ORGANIZATION");
                assert_eq!(line["payload"]["keyContacts"][0]["phone"], "13911112222");
            }
            "CustomerClassified" => {
                assert_eq!(line["payload"]["classification"]["industry"], "INDUSTRY_MANUFACTURING");
                assert_eq!(line["payload"]["classification"]["keyAccount"], true);
            }
            "AccountManagerAssigned" => assert_eq!(line["payload"]["manager"]["name"], "王芳"),
            "InteractionLogged" => {
                assert_eq!(line["payload"]["channel"], "CHANNEL_WECHAT");
                assert_eq!(line["payload"]["durationSeconds"], 95);
                assert_eq!(line["payload"]["followUpActions"][0]["dueAt"], "2030-01-01T09:00:00Z");
            }
            other => panic!("unexpected event {other}"),
        }
    }
    Ok(())
}
