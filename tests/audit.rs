//! For analysts and auditors: `asOf` reproduces what was seen at each step; `kefu events
//! export` writes every event, round-tripping through `proto/`; `kefu audit verify` passes on
//! an honest history and names the altered event when one stored event is changed (in this
//! test database, with the append-only trigger switched off as only a superuser can), and a
//! forged record on the topic is named too.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::process::Output;

use anyhow::Result;
use kefu_app::RecordedEvent;
use serde_json::{Value, json};
use support::*;

const REQUEST: &str = r#"
query($id: ID!, $pos: GlobalPosition, $asOf: AsOf) {
  serviceRequest(id: $id, minPosition: $pos, asOf: $asOf) {
    requestId state priority owner { id } department escalationLevel escalationLevelName
    filedAt firstResponseAt endedAt resolution { resolution rootCause } reopenCount returnVisits
    lastReturnVisitSatisfied slaClocks { metric cycle dueAt metAt } nextDeadline { metric dueAt } breached version
  }
}"#;

const CUSTOMER: &str = r#"
query($id: ID!, $pos: GlobalPosition, $asOf: AsOf) {
  customer(id: $id, minPosition: $pos, asOf: $asOf) {
    name contacts { phone email } classification { valueTier lifecycleSegment } version
    interactionCount resolvedAtFirstContact lastContactChannel lastContactAt registeredAt updatedAt
    contactsByChannel { channel count }
    interactions(first: 10) { edges { node { summary channel occurredAt } } }
    serviceRequests(first: 10) { edges { node { requestId state escalationLevel returnVisits } } }
  }
}"#;

/// Waits until the request read model (behind `Customer.serviceRequests`) reached a position.
const BACKLOG_AT: &str =
    r#"query($pos: GlobalPosition) { complaintBacklog(first: 1, minPosition: $pos) { totalCount } }"#;

fn kefu(stack: &Stack, args: &[&str]) -> Result<Output> {
    Ok(std::process::Command::new(kefu_testkit::kefu_binary()?)
        .args(args)
        .env("DATABASE_URL", &stack.db.url)
        .env("KEFU_KAFKA_BROKERS", kefu_testkit::brokers()?)
        .env("KEFU_KAFKA_TOPIC", &stack.topic)
        .env("KEFU_KAFKA_PARTITIONS", PARTITIONS.to_string())
        .env("RUST_LOG", "warn")
        .output()?)
}

fn out(o: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

fn pos_of(payload: &Value) -> i64 {
    payload["globalPosition"].as_i64().unwrap()
}

async fn mutate(stack: &Stack, name: &str, input_type: &str, input: Value) -> Result<i64> {
    let q = format!("mutation($input: {input_type}!) {{ {name}(input: $input) {{ globalPosition }} }}");
    Ok(stack.ok(&q, json!({"input": input})).await?[name]["globalPosition"].as_i64().unwrap())
}

#[tokio::test]
async fn time_travel_export_and_a_tamper_evident_history() -> Result<()> {
    let stack = Stack::start(&[]).await?;

    // A mixed workload, remembering what each step showed right after it (nothing else is
    // written in between, so the view waited to the step's position is the view at it).
    let seen_customer = |p: i64, id: String| {
        let stack = &stack;
        async move {
            stack.ok(BACKLOG_AT, json!({"pos": p})).await?;
            anyhow::Ok((p, stack.ok(CUSTOMER, json!({"id": id, "pos": p})).await?["customer"].clone()))
        }
    };
    let r = stack
        .ok(REGISTER, json!({"input": {"kind": "PERSON", "name": "韩梅梅", "contacts": {"phone": "139 0000 0001"}}}))
        .await?;
    let customer = r["registerCustomer"]["customerId"].as_str().unwrap().to_string();
    let mut seen_customers = vec![seen_customer(pos_of(&r["registerCustomer"]), customer.clone()).await?];
    let interaction =
        json!({"customerId": customer, "channel": "PHONE", "direction": "INBOUND", "summary": "咨询宽带"});
    let p = mutate(&stack, "logInteraction", "LogInteractionInput", interaction.clone()).await?;
    seen_customers.push(seen_customer(p, customer.clone()).await?);
    let classify = json!({"customerId": customer, "valueTier": "IMPORTANT", "lifecycleSegment": "ADVANTAGED"});
    let p = mutate(&stack, "classifyCustomer", "ClassifyCustomerInput", classify).await?;
    seen_customers.push(seen_customer(p, customer.clone()).await?);

    let seen_request = |p: i64, id: String| {
        let stack = &stack;
        async move { anyhow::Ok((p, stack.ok(REQUEST, json!({"id": id, "pos": p})).await?["serviceRequest"].clone())) }
    };
    let r = stack
        .ok(
            r#"mutation($input: OpenServiceRequestInput!) { openServiceRequest(input: $input) { requestId globalPosition } }"#,
            json!({"input": {"customerId": customer, "requestType": "COMPLAINT", "category": "宽带/掉线",
                "priority": "HIGH", "channel": "PHONE", "subject": "每晚断网", "department": "网络维护部"}}),
        )
        .await?;
    let request = r["openServiceRequest"]["requestId"].as_str().unwrap().to_string();
    let mut seen_requests = vec![seen_request(pos_of(&r["openServiceRequest"]), request.clone()).await?];
    let rid = json!(request);
    for (name, ty, input) in [
        ("acknowledgeRequest", "RequestStepInput", json!({"requestId": rid, "note": "已致电"})),
        ("escalateRequest", "EscalateRequestInput", json!({"requestId": rid, "reason": "客户要求主管处理"})),
        (
            "resolveRequest",
            "ResolveRequestInput",
            json!({"requestId": rid, "resolution": "更换光猫", "rootCause": "product_defect"}),
        ),
        (
            "recordReturnVisit",
            "ReturnVisitInput",
            json!({"requestId": rid, "satisfied": false, "channel": "PHONE", "reason": "仍然掉线"}),
        ),
    ] {
        let p = mutate(&stack, name, ty, input).await?;
        seen_requests.push(seen_request(p, request.clone()).await?);
        seen_customers.push(seen_customer(p, customer.clone()).await?);
    }
    let p = mutate(&stack, "logInteraction", "LogInteractionInput", interaction).await?;
    seen_customers.push(seen_customer(p, customer.clone()).await?);

    // Reading after the fact the read model has moved on; asOf gives back each step.
    let history = stack
        .ok(
            r#"query($id: ID!) { complaintHistory(id: $id) { globalPosition occurredAt recordedAt hash verified } }"#,
            json!({"id": request}),
        )
        .await?["complaintHistory"]
        .as_array()
        .unwrap()
        .clone();
    assert!(history.len() >= seen_requests.len(), "{history:?}");
    assert!(history.iter().all(|h| h["verified"] == true && h["hash"].as_str().is_some_and(|s| s.len() == 64)));
    for (p, seen) in &seen_requests {
        // A command's events share both times; its payload's position is its last event's.
        let h = history.iter().find(|h| h["globalPosition"] == *p).unwrap();
        for as_of in
            [json!({"position": p}), json!({"recordedAt": h["recordedAt"]}), json!({"occurredAt": h["occurredAt"]})]
        {
            let then = stack.ok(REQUEST, json!({"id": request, "asOf": as_of})).await?["serviceRequest"].clone();
            assert_eq!(&then, seen, "serviceRequest as of {as_of} is not what was seen at position {p}");
        }
        let trail = stack
            .ok(
                r#"query($id: ID!, $asOf: AsOf) { complaintHistory(id: $id, asOf: $asOf) { globalPosition } }"#,
                json!({"id": request, "asOf": {"position": p}}),
            )
            .await?;
        assert_eq!(trail["complaintHistory"].as_array().unwrap().last().unwrap()["globalPosition"], *p);
    }
    let before = stack.ok(REQUEST, json!({"id": request, "asOf": {"recordedAt": "2000-01-01T00:00:00Z"}})).await?;
    assert_eq!(before["serviceRequest"], Value::Null, "nothing existed before it was filed");
    let bad = stack
        .error(REQUEST, json!({"id": request, "asOf": {"position": 1, "recordedAt": "2026-01-01T00:00:00Z"}}))
        .await?;
    assert_eq!(bad["extensions"]["field"], "asOf");

    for (p, seen) in &seen_customers {
        let then = stack.ok(CUSTOMER, json!({"id": customer, "asOf": {"position": p}})).await?["customer"].clone();
        assert_eq!(&then, seen, "customer as of position {p}");
    }
    // What the present read models cannot fold back is refused under asOf, not shown as now.
    let refused = stack
        .error(
            r#"query($id: ID!) { customer(id: $id, asOf: {position: 1}) { surveys { surveyId } } }"#,
            json!({"id": customer}),
        )
        .await?;
    assert_eq!(refused["extensions"]["field"], "surveys", "{refused}");
    // A request as of a point: its history and its customer stop there too.
    let (p, _) = &seen_requests[1];
    let then = stack
        .ok(
            r#"query($id: ID!, $asOf: AsOf) { serviceRequest(id: $id, asOf: $asOf) {
                 history { globalPosition } customer { lastPosition serviceRequests { edges { node { state } } } } } }"#,
            json!({"id": request, "asOf": {"position": p}}),
        )
        .await?["serviceRequest"]
        .clone();
    assert_eq!(then["history"].as_array().unwrap().last().unwrap()["globalPosition"], *p, "{then}");
    assert!(then["customer"]["lastPosition"].as_i64().unwrap() < *p, "{then}");
    assert_eq!(then["customer"]["serviceRequests"]["edges"][0]["node"]["state"], seen_requests[1].1["state"]);
    let first = &seen_customers[0].1;
    let at_registration =
        stack.ok(CUSTOMER, json!({"id": customer, "asOf": {"occurredAt": first["registeredAt"]}})).await?;
    assert_eq!(at_registration["customer"]["interactionCount"], 0);

    // Export: every event once, decoded from proto/, equal to the store and to Kafka.
    let head = stack.head().await?;
    let store: Vec<RecordedEvent> = kefu_store::PgEventStore::new(stack.db.pool.clone()).read_after(0, 10_000).await?;
    assert_eq!(store.len() as i64, head);
    let dir = std::env::temp_dir().join(format!("kefu-export-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir)?;
    let jsonl = dir.join("events.jsonl");
    let o = kefu(&stack, &["events", "export", "--output", jsonl.to_str().unwrap()])?;
    assert!(o.status.success(), "{}", out(&o));
    let lines: Vec<RecordedEvent> = std::fs::read_to_string(&jsonl)?
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    assert_eq!(lines, store, "the export is the stored history, in order");
    let topic = read_topic(&stack.topic, store.len())?;
    for r in &topic {
        assert_eq!(&lines[(r.event.global_position - 1) as usize], &r.event, "export and Kafka agree");
    }
    let csv_path = dir.join("events.csv");
    let o = kefu(&stack, &["events", "export", "--format", "csv", "-o", csv_path.to_str().unwrap()])?;
    assert!(o.status.success(), "{}", out(&o));
    let mut reader = csv::Reader::from_path(&csv_path)?;
    assert_eq!(reader.headers()?.len(), 17);
    let rows: Vec<csv::StringRecord> = reader.records().collect::<Result<_, _>>()?;
    assert_eq!(rows.len(), store.len());
    for (row, e) in rows.iter().zip(&store) {
        assert_eq!(row[1], e.event_id.to_string());
        assert_eq!(serde_json::from_str::<Value>(&row[16])?, e.payload);
    }
    let o = kefu(&stack, &["events", "export", "--type", "RequestFiled", "--customer", &customer])?;
    let filed: Vec<&str> = std::str::from_utf8(&o.stdout)?.lines().collect();
    assert_eq!(filed.len(), 1, "{}", out(&o));
    let o = kefu(&stack, &["events", "export", "--type", "RequestFiledd"])?;
    assert!(!o.status.success() && out(&o).contains("--type RequestFiledd: no such event type"), "{}", out(&o));

    // Audit: an honest history verifies, in the store and on Kafka.
    let o = kefu(&stack, &["audit", "anchor"])?;
    assert!(o.status.success() && out(&o).contains(&format!("..={head} at ")), "{}", out(&o));
    let o = kefu(&stack, &["audit", "verify"])?;
    assert!(o.status.success(), "{}", out(&o));
    assert!(
        out(&o).contains(&format!("verified {head} events"))
            && out(&o).contains(&format!("anchors checked, anchored through position {head}")),
        "{}",
        out(&o)
    );
    assert!(out(&o).contains(&format!("verified {head} records")), "{}", out(&o));

    // Someone who can produce to the topic slips in a forged copy of the registration.
    let original = store.iter().find(|e| e.event_type == "CustomerRegistered").unwrap();
    let mut forged = original.clone();
    forged.payload["name"] = json!("韩梅梅（伪）");
    let bytes = kefu_contract::Contract::get().encode(&forged)?;
    let producer: rdkafka::producer::BaseProducer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", kefu_testkit::brokers()?)
        .set("partitioner", "murmur2_random")
        .create()?;
    let key = original.partition_key().to_string();
    producer.send(rdkafka::producer::BaseRecord::to(&stack.topic).key(&key).payload(&bytes)).map_err(|(e, _)| e)?;
    rdkafka::producer::Producer::flush(&producer, std::time::Duration::from_secs(10))?;
    // A real event of the same customer lands after it, so the relay's record of what it
    // wrote covers the forged record.
    let p = mutate(
        &stack,
        "logInteraction",
        "LogInteractionInput",
        json!({"customerId": customer, "channel": "EMAIL", "direction": "INBOUND", "summary": "再次咨询"}),
    )
    .await?;
    kefu_testkit::eventually(std::time::Duration::from_secs(30), "the relay publishes", || async {
        let cursor: Option<i64> = sqlx::query_scalar("SELECT position FROM event_store.relay_cursor WHERE topic = $1")
            .bind(&stack.topic)
            .fetch_optional(&stack.db.pool)
            .await?;
        anyhow::Ok(cursor.filter(|c| *c >= p))
    })
    .await?;
    let o = kefu(&stack, &["audit", "verify"])?;
    assert_eq!(o.status.code(), Some(3), "{}", out(&o));
    assert!(out(&o).contains("event store: verified"), "{}", out(&o));
    assert!(
        out(&o).contains(&format!("global position {} (event {}", original.global_position, original.event_id))
            && out(&o).contains("differs from the stored event"),
        "{}",
        out(&o)
    );

    // Someone with database superpowers rewrites the root cause of the resolution.
    let resolved = store.iter().find(|e| e.event_type == "RequestResolved").unwrap();
    sqlx::query("ALTER TABLE event_store.events DISABLE TRIGGER events_append_only").execute(&stack.db.pool).await?;
    sqlx::query("UPDATE event_store.events SET payload = jsonb_set(payload, '{rootCause}', '\"customer_misuse\"') WHERE event_id = $1")
        .bind(resolved.event_id)
        .execute(&stack.db.pool)
        .await?;
    sqlx::query("ALTER TABLE event_store.events ENABLE TRIGGER events_append_only").execute(&stack.db.pool).await?;
    let o = kefu(&stack, &["audit", "verify", "--store-only"])?;
    assert_eq!(o.status.code(), Some(3), "{}", out(&o));
    let report = out(&o);
    assert!(
        report.contains(&format!("global position {} (event {}", resolved.global_position, resolved.event_id))
            && report.contains("altered after it was recorded"),
        "{report}"
    );
    let v = stack
        .ok(
            r#"query($id: ID!) { complaintVerification(id: $id) { verified firstMismatch { globalPosition eventType } }
                 complaintHistory(id: $id) { eventType verified } }"#,
            json!({"id": request}),
        )
        .await?;
    assert_eq!(v["complaintVerification"]["verified"], false);
    assert_eq!(v["complaintVerification"]["firstMismatch"]["globalPosition"], resolved.global_position);
    let flags: Vec<(String, bool)> = v["complaintHistory"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| (h["eventType"].as_str().unwrap().to_string(), h["verified"].as_bool().unwrap()))
        .collect();
    let cut = flags.iter().position(|(t, _)| t == "RequestResolved").unwrap();
    assert!(flags[..cut].iter().all(|f| f.1) && flags[cut..].iter().all(|f| !f.1), "{flags:?}");
    std::fs::remove_dir_all(&dir).ok();
    Ok(())
}
