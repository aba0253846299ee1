//! An agent's day through GraphQL: file, acknowledge, assign, transfer, plan, callback, wait
//! for the customer, escalate, resolve with root cause and compensation, return visits, reopen,
//! close, merge duplicates, withdraw; supervisors configure SLA policies and calendars and read
//! the backlog and compliance; an auditor reads the trail. The SLA scheduler inside `kefu run`
//! records breaches and escalates automatically.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::time::Duration;

use anyhow::Result;
use chrono::{DateTime, Utc};
use jsonwebtoken::{EncodingKey, Header, encode};
use serde_json::{Value, json};
use support::*;

const SECRET: &str = "another-test-secret-long-enough-for-hs256";

fn token(sub: &str, name: &str, roles: &[&str]) -> String {
    let claims = json!({"sub": sub, "name": name, "roles": roles, "exp": Utc::now().timestamp() + 3600});
    encode(&Header::default(), &claims, &EncodingKey::from_secret(SECRET.as_bytes())).unwrap()
}

const VIEW: &str = r#"
query($id: ID!, $pos: GlobalPosition) {
  serviceRequest(id: $id, minPosition: $pos) {
    id requestId customerId requestType category priority channel subject state
    owner { id name } assignee { id name } department escalationLevel escalationLevelName
    incident { incidentId title }
    filedAt firstResponseAt firstResolvedAt lastResolvedAt fullResolutionSeconds endedAt
    resolution { resolution rootCause compensation { kind amountMinor currency } }
    reopenCount returnVisits lastReturnVisitSatisfied reporters duplicates mergedInto
    sla { policyName clock }
    slaClocks { metric cycle startedAt dueAt metAt state }
    nextDeadline { metric dueAt state }
    slaState breached callbackDueAt version
  }
}"#;

const HISTORY: &str = r#"
query($id: ID!, $pos: GlobalPosition) {
  complaintHistory(id: $id, minPosition: $pos) {
    version eventType summary reason changes relatedRequestId occurredAt recordedAt
    actor { id name kind }
  }
}"#;

struct Desk {
    stack: Stack,
    agent: String,
    supervisor: String,
}

impl Desk {
    fn as_agent(&mut self) {
        self.stack.token = Some(self.agent.clone());
    }
    fn as_supervisor(&mut self) {
        self.stack.token = Some(self.supervisor.clone());
    }

    /// Runs mutation `name` taking an input of type `input_type`; returns its payload.
    async fn mutate(&self, name: &str, input_type: &str, input: Value) -> Result<Value> {
        let selection = if name == "mergeRequests" {
            "{ requestId streamVersion globalPosition eventsRecorded }"
        } else if input_type.starts_with("Define") || input_type.starts_with("Retire") {
            "{ id streamVersion globalPosition eventsRecorded }"
        } else {
            "{ requestId streamVersion globalPosition eventsRecorded deduplicated }"
        };
        let query = format!("mutation($input: {input_type}!) {{ {name}(input: $input) {selection} }}");
        let data = self.stack.ok(&query, json!({"input": input})).await?;
        Ok(data[name].clone())
    }

    /// The same mutation expected to fail; returns the error.
    async fn refused(&self, name: &str, input_type: &str, input: Value) -> Result<Value> {
        let query = format!("mutation($input: {input_type}!) {{ {name}(input: $input) {{ streamVersion }} }}");
        self.stack.error(&query, json!({"input": input})).await
    }

    async fn customer(&self, name: &str) -> Result<String> {
        let r = self.stack.ok(REGISTER, json!({"input": {"kind": "PERSON", "name": name}})).await?;
        Ok(r["registerCustomer"]["customerId"].as_str().unwrap().to_string())
    }

    async fn open(&self, input: Value) -> Result<(String, i64)> {
        let p = self.mutate("openServiceRequest", "OpenServiceRequestInput", input).await?;
        Ok((p["requestId"].as_str().unwrap().to_string(), p["globalPosition"].as_i64().unwrap()))
    }

    async fn view(&self, id: &str, pos: i64) -> Result<Value> {
        Ok(self.stack.ok(VIEW, json!({"id": id, "pos": pos})).await?["serviceRequest"].clone())
    }

    async fn history(&self, id: &str, pos: i64) -> Result<Vec<Value>> {
        let h = self.stack.ok(HISTORY, json!({"id": id, "pos": pos})).await?;
        Ok(h["complaintHistory"].as_array().unwrap().clone())
    }
}

fn pos(payload: &Value) -> i64 {
    payload["globalPosition"].as_i64().unwrap()
}

fn time(v: &Value) -> DateTime<Utc> {
    v.as_str().unwrap_or_else(|| panic!("not a time: {v}")).parse().unwrap()
}

fn clock<'a>(view: &'a Value, metric: &str) -> &'a Value {
    view["slaClocks"]
        .as_array()
        .unwrap()
        .iter()
        .rev()
        .find(|c| c["metric"] == metric)
        .unwrap_or_else(|| panic!("no {metric} clock in {view:#}"))
}

async fn start() -> Result<Desk> {
    let mut stack = Stack::start(&[("KEFU_AUTH_MODE", "jwt".into()), ("KEFU_JWT_SECRET", SECRET.into())]).await?;
    let agent = token("agent.chen", "陈静", &["agent"]);
    stack.token = Some(agent.clone());
    Ok(Desk { stack, agent, supervisor: token("sup.wang", "王主管", &["supervisor"]) })
}

#[tokio::test]
async fn a_complaint_runs_its_whole_lifecycle_and_the_trail_shows_every_step() -> Result<()> {
    let mut desk = start().await?;
    let customer = desk.customer("李雷").await?;

    let (id, p) = desk
        .open(json!({
            "customerId": customer, "requestType": "COMPLAINT", "category": "宽带/掉线", "channel": "PHONE",
            "subject": "宽带每天晚上掉线", "description": "连续一周，每晚八点左右断网", "department": "客服中心"
        }))
        .await?;
    let v = desk.view(&id, p).await?;
    assert_eq!(v["state"], "FILED");
    assert_eq!(v["owner"]["id"], "agent.chen", "首问负责: the first taker owns it");
    assert!(v["sla"]["policyName"].as_str().unwrap().starts_with("kefu default"), "{}", v["sla"]);
    let filed = time(&v["filedAt"]);
    assert_eq!(time(&clock(&v, "FIRST_RESPONSE")["dueAt"]), filed + chrono::Duration::hours(2));
    assert_eq!(time(&clock(&v, "RESOLUTION")["dueAt"]), filed + chrono::Duration::hours(48));
    assert_eq!(time(&clock(&v, "REPORT_UPWARD")["dueAt"]), filed + chrono::Duration::days(3));
    assert_eq!(v["nextDeadline"]["metric"], "FIRST_RESPONSE");
    assert_eq!(v["slaState"], "OK");

    // A return visit before any resolution is refused, and says why.
    let early = desk
        .refused(
            "recordReturnVisit",
            "ReturnVisitInput",
            json!({"requestId": id, "satisfied": true, "channel": "PHONE"}),
        )
        .await?;
    assert_eq!(early["extensions"]["code"], "FAILED_PRECONDITION");
    assert_eq!(early["extensions"]["rule"], "not_resolved");

    let p = desk.mutate("acknowledgeRequest", "RequestStepInput", json!({"requestId": id, "note": "已致电"})).await?;
    let v = desk.view(&id, pos(&p)).await?;
    assert_eq!(v["state"], "ACKNOWLEDGED");
    assert_eq!(clock(&v, "FIRST_RESPONSE")["state"], "MET");
    assert!(v["firstResponseAt"].is_string());

    desk.mutate(
        "assignRequest",
        "AssignRequestInput",
        json!({"requestId": id, "assignee": {"id": "eng.li", "name": "李工"}, "department": "网络维护部"}),
    )
    .await?;
    let p = desk
        .mutate(
            "transferRequest",
            "TransferRequestInput",
            json!({"requestId": id, "to": {"id": "agent.zhao", "name": "赵敏"}, "reason": "转交宽带专席"}),
        )
        .await?;
    let v = desk.view(&id, pos(&p)).await?;
    assert_eq!(v["state"], "IN_PROGRESS");
    assert_eq!(v["owner"]["id"], "agent.zhao");
    assert_eq!(v["department"], "网络维护部");

    desk.mutate(
        "communicatePlan",
        "CustomerMessageInput",
        json!({"requestId": id, "message": "明天上门检修线路", "channel": "PHONE"}),
    )
    .await?;
    let callback_due = Utc::now() + chrono::Duration::hours(4);
    desk.mutate("commitCallback", "CommitCallbackInput", json!({"requestId": id, "dueAt": callback_due.to_rfc3339()}))
        .await?;
    let p = desk.mutate("awaitCustomer", "RequestReasonInput", json!({"requestId": id, "reason": "客户出差"})).await?;
    let v = desk.view(&id, pos(&p)).await?;
    assert_eq!(v["state"], "AWAITING_CUSTOMER");
    assert_eq!(v["slaState"], "PAUSED");
    assert_eq!(clock(&v, "RESOLUTION")["state"], "PAUSED");
    assert!(clock(&v, "RESOLUTION")["dueAt"].is_null(), "a paused clock has no deadline");
    assert_eq!(time(&v["callbackDueAt"]).timestamp(), callback_due.timestamp());
    let p = desk.mutate("resumeRequest", "RequestStepInput", json!({"requestId": id})).await?;
    let v = desk.view(&id, pos(&p)).await?;
    assert_eq!(v["state"], "IN_PROGRESS");
    let resolution_due = time(&clock(&v, "RESOLUTION")["dueAt"]);
    assert!(resolution_due >= filed + chrono::Duration::hours(48), "the pause moved the deadline out");

    // Escalated by hand, then back down.
    let p = desk
        .mutate("escalateRequest", "EscalateRequestInput", json!({"requestId": id, "reason": "客户情绪激动"}))
        .await?;
    let v = desk.view(&id, pos(&p)).await?;
    assert_eq!(v["escalationLevel"], 1);
    assert_eq!(v["escalationLevelName"], "supervisor");
    let p = desk
        .mutate("deescalateRequest", "DeescalateRequestInput", json!({"requestId": id, "reason": "客户已安抚"}))
        .await?;
    assert_eq!(desk.view(&id, pos(&p)).await?["escalationLevel"], 0);

    // Resolution needs a root cause from the catalogue.
    let bad = desk
        .refused(
            "resolveRequest",
            "ResolveRequestInput",
            json!({"requestId": id, "resolution": "更换光猫", "rootCause": "gremlins"}),
        )
        .await?;
    assert_eq!(bad["extensions"]["code"], "VALIDATION");
    assert!(bad["message"].as_str().unwrap().contains("gremlins"), "{bad}");
    let p = desk
        .mutate(
            "resolveRequest",
            "ResolveRequestInput",
            json!({"requestId": id, "resolution": "更换光猫并重新布线", "rootCause": "product_defect",
                   "compensation": {"kind": "MONETARY", "amountMinor": 5000, "currency": "CNY", "description": "减免一个月月租"}}),
        )
        .await?;
    let v = desk.view(&id, pos(&p)).await?;
    assert_eq!(v["state"], "RESOLVED");
    assert_eq!(v["resolution"]["rootCause"], "product_defect");
    assert_eq!(v["resolution"]["compensation"], json!({"kind": "MONETARY", "amountMinor": 5000, "currency": "CNY"}));
    let first_resolved = v["firstResolvedAt"].clone();

    // The customer is not satisfied: reopened with the reason; then resolved again.
    let no_reason = desk
        .refused(
            "recordReturnVisit",
            "ReturnVisitInput",
            json!({"requestId": id, "satisfied": false, "channel": "PHONE"}),
        )
        .await?;
    assert_eq!(no_reason["extensions"]["code"], "VALIDATION");
    let p = desk
        .mutate(
            "recordReturnVisit",
            "ReturnVisitInput",
            json!({"requestId": id, "satisfied": false, "channel": "PHONE", "reason": "晚上仍然掉线"}),
        )
        .await?;
    let v = desk.view(&id, pos(&p)).await?;
    assert_eq!(v["state"], "IN_PROGRESS");
    assert_eq!(v["reopenCount"], 1);
    assert_eq!(v["lastReturnVisitSatisfied"], false);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    desk.mutate(
        "resolveRequest",
        "ResolveRequestInput",
        json!({"requestId": id, "resolution": "更换入户光缆", "rootCause": "product_defect"}),
    )
    .await?;
    let p = desk
        .mutate(
            "recordReturnVisit",
            "ReturnVisitInput",
            json!({"requestId": id, "satisfied": true, "channel": "WECHAT"}),
        )
        .await?;
    let v = desk.view(&id, pos(&p)).await?;
    assert_eq!(v["state"], "CLOSED");
    assert_eq!(v["returnVisits"], 2);
    assert_eq!(v["lastReturnVisitSatisfied"], true);
    assert_eq!(v["firstResolvedAt"], first_resolved, "reopening keeps the first-resolution time");
    assert!(time(&v["lastResolvedAt"]) > time(&first_resolved));
    let full = v["fullResolutionSeconds"].as_i64().unwrap();
    assert_eq!(full, (time(&v["lastResolvedAt"]) - filed).num_seconds());

    // Closed is not the end: a closed request can be reopened, then closed by a supervisor.
    let resolved_again = desk.refused(
        "resolveRequest",
        "ResolveRequestInput",
        json!({"requestId": id, "resolution": "x", "rootCause": "other"}),
    );
    assert_eq!(resolved_again.await?["extensions"]["code"], "FAILED_PRECONDITION");
    desk.mutate("reopenRequest", "RequestReasonInput", json!({"requestId": id, "reason": "问题复发"})).await?;
    desk.mutate(
        "resolveRequest",
        "ResolveRequestInput",
        json!({"requestId": id, "resolution": "运营商侧故障已修复", "rootCause": "third_party"}),
    )
    .await?;
    let p = desk
        .mutate(
            "closeRequest",
            "CloseRequestInput",
            json!({"requestId": id, "reason": "CUSTOMER_UNREACHABLE", "note": "三次回访未接通"}),
        )
        .await?;
    let v = desk.view(&id, pos(&p)).await?;
    assert_eq!(v["state"], "CLOSED");
    assert_eq!(v["reopenCount"], 2);
    assert_eq!(v["resolution"]["rootCause"], "third_party");

    // The auditor's trail: every step, in order, with actor, reason and what changed.
    desk.stack.token = Some(token("audit.xu", "许审计", &["auditor"]));
    let trail = desk.history(&id, pos(&p)).await?;
    let types: Vec<&str> = trail.iter().map(|e| e["eventType"].as_str().unwrap()).collect();
    assert_eq!(
        types,
        [
            "RequestFiled",
            "RequestAcknowledged",
            "RequestAssigned",
            "RequestTransferred",
            "PlanCommunicated",
            "CallbackCommitted",
            "CustomerAwaited",
            "RequestResumed",
            "RequestEscalated",
            "RequestDeescalated",
            "RequestResolved",
            "ReturnVisitRecorded",
            "RequestReopened",
            "RequestResolved",
            "ReturnVisitRecorded",
            "RequestClosed",
            "RequestReopened",
            "RequestResolved",
            "RequestClosed",
        ]
    );
    let versions: Vec<i64> = trail.iter().map(|e| e["version"].as_i64().unwrap()).collect();
    assert_eq!(versions, (1..=trail.len() as i64).collect::<Vec<_>>());
    assert!(trail.iter().all(|e| e["actor"]["id"] == "agent.chen"));
    let transfer = &trail[3];
    assert_eq!(transfer["reason"], "转交宽带专席");
    assert_eq!(transfer["changes"]["owner"]["from"]["id"], "agent.chen");
    assert_eq!(transfer["changes"]["owner"]["to"]["id"], "agent.zhao");
    assert_eq!(trail[6]["changes"]["slaPaused"], json!({"from": false, "to": true}));
    assert_eq!(trail[8]["changes"]["escalationLevel"], json!({"from": 0, "to": 1}));
    assert_eq!(trail[8]["reason"], "客户情绪激动");
    assert_eq!(trail[12]["reason"], "晚上仍然掉线");
    assert!(trail[10]["summary"].as_str().unwrap().contains("compensation monetary 50.00 CNY"), "{}", trail[10]);
    assert!(trail.iter().all(|e| time(&e["recordedAt"]) >= time(&e["occurredAt"])));

    // The customer 360 lists the request with its return-visit outcome.
    let c = desk
        .stack
        .ok(
            r#"query($id: ID!) { customer(id: $id) { serviceRequests(first: 5) {
                 nodes { requestId state returnVisits lastReturnVisitSatisfied slaState } } } }"#,
            json!({"id": customer}),
        )
        .await?;
    let nodes = &c["customer"]["serviceRequests"]["nodes"];
    assert_eq!(nodes[0]["requestId"], id.as_str());
    assert_eq!(nodes[0]["state"], "CLOSED");
    assert_eq!(nodes[0]["returnVisits"], 2);
    Ok(())
}

#[tokio::test]
async fn duplicates_merge_escalations_group_under_an_incident_and_the_backlog_counts_once() -> Result<()> {
    let mut desk = start().await?;
    let a = desk.customer("张三").await?;
    let b = desk.customer("李四").await?;
    let c = desk.customer("王五").await?;
    let outage = |customer: &str| {
        json!({"customerId": customer, "requestType": "COMPLAINT", "category": "宽带/断网", "channel": "PHONE",
               "priority": "HIGH", "subject": "小区整片断网", "department": "网络维护部"})
    };
    let (survivor, _) = desk.open(outage(&a)).await?;
    let (dup1, _) = desk.open(outage(&b)).await?;
    let (dup2, _) = desk.open(outage(&c)).await?;
    let (inquiry, _) = desk
        .open(json!({"customerId": a, "requestType": "INQUIRY", "category": "账单", "channel": "WECHAT",
                     "subject": "本月账单明细", "priority": "LOW"}))
        .await?;
    let (withdrawn, _) = desk
        .open(json!({"customerId": b, "requestType": "DEMAND", "category": "宽带/提速", "channel": "WEB",
                     "subject": "申请提速到千兆"}))
        .await?;

    // Not into itself.
    let itself = desk
        .refused(
            "mergeRequests",
            "MergeRequestsInput",
            json!({"survivorId": survivor, "duplicateIds": [survivor], "reason": "重复"}),
        )
        .await?;
    assert!(matches!(itself["extensions"]["code"].as_str(), Some("VALIDATION" | "FAILED_PRECONDITION")), "{itself}");

    let merged = desk
        .mutate(
            "mergeRequests",
            "MergeRequestsInput",
            json!({"survivorId": survivor, "duplicateIds": [dup1, dup2], "reason": "同一故障: 小区光缆被挖断"}),
        )
        .await?;
    let merged = merged.as_array().unwrap();
    assert_eq!(merged.len(), 2, "one step per duplicate: {merged:?}");
    assert!(merged.iter().all(|m| m["requestId"] == survivor.as_str() && m["eventsRecorded"] == 2), "{merged:?}");
    let p = merged.iter().map(pos).max().unwrap();
    let s = desk.view(&survivor, p).await?;
    let mut reporters: Vec<&str> = s["reporters"].as_array().unwrap().iter().map(|r| r.as_str().unwrap()).collect();
    reporters.sort_unstable();
    let mut expected = vec![a.as_str(), b.as_str(), c.as_str()];
    expected.sort_unstable();
    assert_eq!(reporters, expected, "merging keeps every reporter");
    assert_eq!(s["duplicates"].as_array().unwrap().len(), 2);
    let d = desk.view(&dup1, p).await?;
    assert_eq!(d["state"], "MERGED");
    assert_eq!(d["mergedInto"], survivor.as_str());
    let trail = desk.history(&dup1, p).await?;
    assert_eq!(trail.last().unwrap()["eventType"], "RequestMergedInto");
    assert_eq!(trail.last().unwrap()["relatedRequestId"], survivor.as_str());

    // A merged request takes no more steps; nothing merges into a closed request.
    let late = desk.refused("acknowledgeRequest", "RequestStepInput", json!({"requestId": dup1})).await?;
    assert_eq!(late["extensions"]["code"], "FAILED_PRECONDITION");

    let p = desk
        .mutate("withdrawRequest", "RequestReasonInput", json!({"requestId": withdrawn, "reason": "客户不需要了"}))
        .await?;
    assert_eq!(desk.view(&withdrawn, pos(&p)).await?["state"], "WITHDRAWN");
    let into_withdrawn = desk
        .refused(
            "mergeRequests",
            "MergeRequestsInput",
            json!({"survivorId": withdrawn, "duplicateIds": [inquiry], "reason": "x"}),
        )
        .await?;
    assert_eq!(into_withdrawn["extensions"]["code"], "FAILED_PRECONDITION");

    // A major incident: the survivor goes to the special team at the top level.
    let incident = uuid::Uuid::now_v7();
    let p = desk
        .mutate(
            "escalateRequest",
            "EscalateRequestInput",
            json!({"requestId": survivor, "toLevel": 3, "reason": "批量投诉", "assignee": {"id": "team.fiber"},
                   "incident": {"incidentId": incident, "title": "朝阳区光缆中断"}}),
        )
        .await?;
    let s = desk.view(&survivor, pos(&p)).await?;
    assert_eq!(s["escalationLevel"], 3);
    assert_eq!(s["escalationLevelName"], "general_manager");
    assert_eq!(s["incident"]["incidentId"], incident.to_string());
    let beyond = desk
        .refused("escalateRequest", "EscalateRequestInput", json!({"requestId": survivor, "reason": "再升级"}))
        .await?;
    assert_eq!(beyond["extensions"]["code"], "FAILED_PRECONDITION");

    // The backlog: one outage counted once, the withdrawn and merged ones gone.
    let backlog = desk
        .stack
        .ok(
            r#"query($pos: GlobalPosition, $filter: BacklogFilterInput, $order: BacklogOrderBy!) {
                 complaintBacklog(filter: $filter, orderBy: $order, first: 10, minPosition: $pos) {
                   totalCount breachedCount countsByState { state count } agingBuckets { bucket count }
                   nodes { requestId priority escalationLevel ageBucket reporters }
                   pageInfo { hasNextPage } } }"#,
            json!({"pos": pos(&p), "order": "PRIORITY"}),
        )
        .await?;
    let bl = &backlog["complaintBacklog"];
    assert_eq!(bl["totalCount"], 2);
    let ids: Vec<&str> = bl["nodes"].as_array().unwrap().iter().map(|n| n["requestId"].as_str().unwrap()).collect();
    assert_eq!(ids, [survivor.as_str(), inquiry.as_str()], "HIGH before LOW");
    assert_eq!(bl["countsByState"], json!([{"state": "FILED", "count": 2}]));
    assert_eq!(bl["agingBuckets"][0], json!({"bucket": "UNDER_4_HOURS", "count": 2}));
    assert_eq!(bl["agingBuckets"].as_array().unwrap().len(), 5, "every bucket, empty ones too");
    assert!(bl["agingBuckets"].as_array().unwrap()[1..].iter().all(|b| b["count"] == 0));

    let only = |filter: Value| {
        let stack = &desk.stack;
        async move {
            let r = stack
                .ok(
                    r#"query($filter: BacklogFilterInput) { complaintBacklog(filter: $filter, first: 10) {
                         totalCount nodes { requestId } } }"#,
                    json!({"filter": filter}),
                )
                .await?;
            let ids: Vec<String> = r["complaintBacklog"]["nodes"]
                .as_array()
                .unwrap()
                .iter()
                .map(|n| n["requestId"].as_str().unwrap().to_string())
                .collect();
            anyhow::Ok(ids)
        }
    };
    assert_eq!(only(json!({"incidentId": incident})).await?, [survivor.as_str()]);
    assert_eq!(only(json!({"requestTypes": ["INQUIRY"]})).await?, [inquiry.as_str()]);
    assert_eq!(only(json!({"channels": ["WECHAT"]})).await?, [inquiry.as_str()]);
    assert_eq!(only(json!({"department": "网络维护部"})).await?, [survivor.as_str()]);
    assert_eq!(only(json!({"minEscalationLevel": 1})).await?, [survivor.as_str()]);
    assert_eq!(only(json!({"customerId": b})).await?, Vec::<String>::new(), "b's requests were merged or withdrawn");
    assert_eq!(only(json!({"states": ["MERGED"]})).await?.len(), 2);
    assert_eq!(only(json!({"category": "宽带"})).await?, [survivor.as_str()], "a category prefix");

    // Bad filter values are named.
    let bad =
        desk.stack.error(r#"{ complaintBacklog(filter: {states: [SLEEPING]}) { totalCount } }"#, json!({})).await?;
    assert_eq!(bad["extensions"]["code"], "VALIDATION");
    let bad = desk.stack.error(r#"{ complaintBacklog(first: 0) { totalCount } }"#, json!({})).await?;
    assert_eq!(bad["extensions"]["code"], "VALIDATION");
    desk.as_agent();
    Ok(())
}

#[tokio::test]
async fn policies_and_calendars_set_the_deadlines_and_the_scheduler_breaches_and_escalates() -> Result<()> {
    let mut desk = start().await?;

    // Configuration is for supervisors.
    let calendar = json!({
        "name": "北京客服中心", "timeZone": "Asia/Shanghai",
        "weekly": [[{"start": "09:00", "end": "18:00"}], [{"start": "09:00", "end": "18:00"}],
                   [{"start": "09:00", "end": "18:00"}], [{"start": "09:00", "end": "18:00"}],
                   [{"start": "09:00", "end": "18:00"}], [], []],
        "holidays": [{"date": "2026-11-16", "name": "测试假日"}]
    });
    let forbidden = desk.refused("defineBusinessCalendar", "DefineBusinessCalendarInput", calendar.clone()).await?;
    assert_eq!(forbidden["extensions"]["code"], "FORBIDDEN");
    desk.as_supervisor();
    let bad_zone = desk
        .refused(
            "defineBusinessCalendar",
            "DefineBusinessCalendarInput",
            json!({"name": "x", "timeZone": "Mars/Olympus", "weekly": [[], [], [], [], [], [], []]}),
        )
        .await?;
    assert_eq!(bad_zone["extensions"]["code"], "VALIDATION");
    let cal = desk.mutate("defineBusinessCalendar", "DefineBusinessCalendarInput", calendar).await?;
    let calendar_id = cal["id"].as_str().unwrap().to_string();
    desk.mutate(
        "defineSlaPolicy",
        "DefineSlaPolicyInput",
        json!({"name": "宽带投诉 (工作时间)", "requestTypes": ["COMPLAINT"], "categoryPrefixes": ["宽带"],
               "targets": [{"metric": "FIRST_RESPONSE", "minutes": 60}, {"metric": "RESOLUTION", "minutes": 960}],
               "clock": "BUSINESS", "calendarId": calendar_id, "precedence": 10}),
    )
    .await?;
    let policy = desk
        .mutate(
            "defineSlaPolicy",
            "DefineSlaPolicyInput",
            json!({"name": "紧急投诉", "requestTypes": ["COMPLAINT"], "priorities": ["URGENT"],
                   "targets": [{"metric": "FIRST_RESPONSE", "minutes": 1}, {"metric": "RESOLUTION", "minutes": 240}],
                   "clock": "CALENDAR", "escalateOnBreach": true, "precedence": 20}),
        )
        .await?;
    let no_targets = desk
        .refused("defineSlaPolicy", "DefineSlaPolicyInput", json!({"name": "空", "targets": [], "clock": "CALENDAR"}))
        .await?;
    assert_eq!(no_targets["extensions"]["code"], "VALIDATION");
    let policies = desk.stack.ok("{ slaPolicies { name active clock } }", json!({})).await?;
    let names: Vec<&str> =
        policies["slaPolicies"].as_array().unwrap().iter().map(|p| p["name"].as_str().unwrap()).collect();
    assert_eq!(names.len(), 3, "two defined and kefu's default: {names:?}");
    assert!(names.contains(&"紧急投诉") && names.contains(&"宽带投诉 (工作时间)"), "{names:?}");

    desk.as_agent();
    let customer = desk.customer("韩梅梅").await?;

    // Filed on a Saturday evening in Beijing; Monday is a holiday: the first response is due
    // Tuesday 10:00 Beijing time, the resolution 16 working hours later, Wednesday 16:00.
    let (historic, p) = desk
        .open(json!({"customerId": customer, "requestType": "COMPLAINT", "category": "宽带/网速", "channel": "WEB",
                     "subject": "网速只有签约的一半", "occurredAt": "2026-11-14T12:30:00Z"}))
        .await?;
    let v = desk.view(&historic, p).await?;
    assert_eq!(v["sla"]["policyName"], "宽带投诉 (工作时间)");
    assert_eq!(v["sla"]["clock"], "BUSINESS");
    assert_eq!(v["filedAt"], "2026-11-14T12:30:00+00:00");
    assert_eq!(time(&clock(&v, "FIRST_RESPONSE")["dueAt"]).to_rfc3339(), "2026-11-17T02:00:00+00:00");
    assert_eq!(time(&clock(&v, "RESOLUTION")["dueAt"]).to_rfc3339(), "2026-11-18T08:00:00+00:00");

    // Urgent, filed five minutes ago: the one-minute first response is already late. The
    // scheduler records the breach and escalates one level, as the policy says.
    let (urgent, _) = desk
        .open(json!({"customerId": customer, "requestType": "COMPLAINT", "category": "固话", "channel": "PHONE",
                     "priority": "URGENT", "subject": "固话无法拨打120",
                     "occurredAt": (Utc::now() - chrono::Duration::minutes(5)).to_rfc3339()}))
        .await?;
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let trail = loop {
        let trail = desk.history(&urgent, 0).await?;
        if trail.iter().any(|e| e["eventType"] == "RequestEscalated") {
            break trail;
        }
        assert!(std::time::Instant::now() < deadline, "no automatic escalation: {trail:#?}");
        tokio::time::sleep(Duration::from_millis(300)).await;
    };
    let breach = trail.iter().find(|e| e["eventType"] == "SlaBreached").expect("breach recorded");
    assert_eq!(breach["actor"]["id"], "system:sla-scheduler");
    assert_eq!(breach["actor"]["kind"], "SYSTEM");
    let escalation = trail.iter().find(|e| e["eventType"] == "RequestEscalated").unwrap();
    assert!(escalation["summary"].as_str().unwrap().contains("automatically"), "{escalation}");
    assert_eq!(escalation["reason"], "SLA breached: FIRST_RESPONSE");

    // Once: later rounds record nothing more for the same clock.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let again = desk.history(&urgent, 0).await?;
    let breaches: Vec<_> = again
        .iter()
        .filter(|e| e["eventType"] == "SlaBreached")
        .map(|e| e["summary"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(breaches.iter().filter(|s| s.contains("FIRST_RESPONSE")).count(), 1, "{breaches:?}");
    let v = desk.view(&urgent, 0).await?;
    assert_eq!(v["sla"]["policyName"], "紧急投诉");
    assert_eq!(v["breached"], true);
    assert_eq!(v["escalationLevel"], 1);

    // The historic one was breached too (its deadlines are long past).
    let v = desk.view(&historic, 0).await?;
    assert_eq!(clock(&v, "FIRST_RESPONSE")["state"], "BREACHED");

    // Backlog and compliance see the breaches.
    let p = desk.mutate("acknowledgeRequest", "RequestStepInput", json!({"requestId": urgent})).await?;
    let r = desk
        .stack
        .ok(
            r#"query($pos: GlobalPosition, $range: TimeRange!) {
                 complaintBacklog(filter: {breached: true}, orderBy: ESCALATION, minPosition: $pos) { nodes { requestId } }
                 slaCompliance(range: $range, groupBy: [PRIORITY], minPosition: $pos) {
                   metric group { dimension value } hit missed total compliancePercent } }"#,
            json!({"pos": pos(&p), "range": {"from": "2026-01-01T00:00:00Z", "to": "2027-01-01T00:00:00Z"}}),
        )
        .await?;
    let breached: Vec<&str> =
        r["complaintBacklog"]["nodes"].as_array().unwrap().iter().map(|n| n["requestId"].as_str().unwrap()).collect();
    assert_eq!(breached, [urgent.as_str(), historic.as_str()], "escalated first");
    let rows = r["slaCompliance"].as_array().unwrap();
    let row = |metric: &str, priority: &str| {
        rows.iter()
            .find(|r| r["metric"] == metric && r["group"][0]["value"] == priority)
            .unwrap_or_else(|| panic!("no {metric}/{priority} row in {rows:#?}"))
    };
    let urgent_fr = row("FIRST_RESPONSE", "URGENT");
    assert_eq!((urgent_fr["hit"].as_i64(), urgent_fr["missed"].as_i64()), (Some(0), Some(1)));
    assert_eq!(urgent_fr["group"][0]["dimension"], "priority");
    assert_eq!(urgent_fr["compliancePercent"], 0.0);
    let normal_fr = row("FIRST_RESPONSE", "NORMAL");
    assert_eq!(normal_fr["missed"], 1);

    // Retiring a policy: new requests fall back to the default.
    desk.as_supervisor();
    desk.mutate(
        "retireSlaPolicy",
        "RetireSlaPolicyInput",
        json!({"policyId": policy["id"], "reason": "合并到通用政策"}),
    )
    .await?;
    desk.as_agent();
    let (later, p) = desk
        .open(json!({"customerId": customer, "requestType": "COMPLAINT", "category": "固话", "channel": "PHONE",
                     "priority": "URGENT", "subject": "再次无法拨打"}))
        .await?;
    let fallback = desk.view(&later, p).await?;
    assert!(fallback["sla"]["policyName"].as_str().unwrap().starts_with("kefu default"), "{}", fallback["sla"]);
    Ok(())
}
