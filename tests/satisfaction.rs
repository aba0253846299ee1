//! A quality manager's month through GraphQL: design a weighted survey mapped to departments,
//! have it sent after each resolved complaint, see answers flow into CSAT, NPS and the
//! composite index by department, see the dissatisfied customer followed up, and read the
//! monthly service-quality report.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::time::Duration;

use anyhow::Result;
use chrono::Utc;
use jsonwebtoken::{EncodingKey, Header, encode};
use serde_json::{Value, json};
use support::*;

const SECRET: &str = "satisfaction-test-secret-long-enough-for-hs256";

fn token(sub: &str, roles: &[&str]) -> String {
    let claims = json!({"sub": sub, "roles": roles, "exp": Utc::now().timestamp() + 3600});
    encode(&Header::default(), &claims, &EncodingKey::from_secret(SECRET.as_bytes())).unwrap()
}

const TEMPLATE: &str = r#"
mutation($input: DefineSurveyTemplateInput!) {
  defineSurveyTemplate(input: $input) { templateId version eventsRecorded }
}"#;

const OPEN: &str = r#"
mutation($input: OpenServiceRequestInput!) { openServiceRequest(input: $input) { requestId globalPosition } }"#;

const RESOLVE: &str = r#"
mutation($input: ResolveRequestInput!) { resolveRequest(input: $input) { globalPosition } }"#;

const RESPOND: &str = r#"
mutation($input: RecordSurveyResponseInput!) {
  recordSurveyResponse(input: $input) {
    globalPosition
    survey { state responseCount answers { question questionText value text }
             followUp { state kind reason requestId dueAt assignee { id } department } }
  }
}"#;

struct Desk {
    stack: Stack,
    agent: String,
    quality: String,
}

impl Desk {
    async fn as_(&mut self, who: &str) {
        self.stack.token = Some(if who == "agent" { self.agent.clone() } else { self.quality.clone() });
    }

    /// Files a complaint for `customer` in `department` and resolves it; returns its id.
    async fn resolved_complaint(&self, customer: &str, department: &str) -> Result<String> {
        let opened = self
            .stack
            .ok(
                OPEN,
                json!({"input": {"customerId": customer, "requestType": "COMPLAINT", "category": "宽带/掉线",
                                 "channel": "PHONE", "subject": "掉线", "department": department}}),
            )
            .await?;
        let id = opened["openServiceRequest"]["requestId"].as_str().unwrap().to_string();
        self.stack
            .ok(RESOLVE, json!({"input": {"requestId": id, "resolution": "重置端口", "rootCause": "product_defect"}}))
            .await?;
        Ok(id)
    }

    /// Waits for the automation to send the survey about a request; returns its id.
    async fn survey_of(&self, request: &str) -> Result<String> {
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        loop {
            let r = self
                .stack
                .ok(
                    r#"query($id: ID!) { serviceRequest(id: $id) { survey { surveyId state channel trigger agent { id } department } } }"#,
                    json!({"id": request}),
                )
                .await?;
            if let Some(id) = r["serviceRequest"]["survey"]["surveyId"].as_str() {
                assert_eq!(r["serviceRequest"]["survey"]["channel"], "SMS");
                assert_eq!(r["serviceRequest"]["survey"]["trigger"], "ON_RESOLVED");
                return Ok(id.to_string());
            }
            anyhow::ensure!(std::time::Instant::now() < deadline, "no survey about {request}");
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }
}

fn answers(values: [i64; 6]) -> Value {
    let q = ["q_attitude", "q_speed", "q_solved", "q_overall", "q_nps", "q_effort"];
    Value::Array(q.iter().zip(values).map(|(q, v)| json!({"question": q, "value": v})).collect())
}

#[tokio::test]
async fn from_template_to_indices_follow_ups_and_the_monthly_report() -> Result<()> {
    let stack = Stack::start(&[("KEFU_AUTH_MODE", "jwt".into()), ("KEFU_JWT_SECRET", SECRET.into())]).await?;
    let mut desk =
        Desk { stack, agent: token("agent.chen", &["agent"]), quality: token("qm.liu", &["quality_manager"]) };

    // An agent may not design surveys.
    desk.as_("agent").await;
    let template_input = json!({"input": {
        "name": "投诉回访问卷",
        "questions": [
            {"code": "q_attitude", "text": "服务态度满意吗？", "kind": "LIKERT_5", "dimension": "attitude"},
            {"code": "q_speed", "text": "处理速度满意吗？", "kind": "LIKERT_5", "dimension": "efficiency"},
            {"code": "q_solved", "text": "问题解决了吗？", "kind": "YES_NO", "dimension": "problem_solving"},
            {"code": "q_overall", "text": "总体满意吗？", "kind": "LIKERT_5", "dimension": "overall"},
            {"code": "q_nps", "text": "推荐给朋友的可能性？", "kind": "NPS_0_10"},
            {"code": "q_effort", "text": "办理容易吗？", "kind": "CES_1_7", "dimension": "convenience"},
            {"code": "q_comment", "text": "其他意见", "kind": "FREE_TEXT", "required": false}
        ],
        "indicators": [
            {"code": "service", "name": "客服", "weight": 1},
            {"code": "service.attitude", "name": "态度", "parent": "service", "question": "q_attitude", "department": "客服中心"},
            {"code": "repair", "name": "维修", "weight": 1},
            {"code": "repair.speed", "name": "速度", "parent": "repair", "question": "q_speed", "department": "网络维护部"},
            {"code": "repair.solved", "name": "解决", "parent": "repair", "question": "q_solved", "department": "网络维护部"}
        ]
    }});
    let refused = desk.stack.error(TEMPLATE, template_input.clone()).await?;
    assert_eq!(refused["extensions"]["code"], "FORBIDDEN");

    desk.as_("quality").await;
    let mut broken = template_input.clone();
    broken["input"]["indicators"][1]["department"] = Value::Null;
    let bad = desk.stack.error(TEMPLATE, broken).await?;
    assert_eq!(bad["extensions"]["code"], "VALIDATION");
    assert_eq!(bad["extensions"]["field"], "input.indicators[1].department");

    let t = desk.stack.ok(TEMPLATE, template_input).await?;
    let template_id = t["defineSurveyTemplate"]["templateId"].as_str().unwrap().to_string();
    assert_eq!(t["defineSurveyTemplate"]["version"], 1);
    // A policy cannot name a template before it is published.
    let policy = json!({"input": {"name": "投诉后回访", "templateId": template_id, "requestTypes": ["COMPLAINT"],
        "channel": "SMS", "expiresAfterHours": 72, "remindAfterHours": [24],
        "followUp": {"likertBelow": 3, "detractors": true, "kind": "SERVICE_REQUEST", "dueHours": 24}}});
    let define_policy =
        r#"mutation($input: DefineSatisfactionPolicyInput!) { defineSatisfactionPolicy(input: $input) { id } }"#;
    let early = desk.stack.error(define_policy, policy.clone()).await?;
    assert_eq!(early["extensions"]["code"], "FAILED_PRECONDITION");
    desk.stack
        .ok(
            r#"mutation($input: PublishSurveyTemplateInput!) { publishSurveyTemplate(input: $input) { version } }"#,
            json!({"input": {"templateId": template_id, "version": 1}}),
        )
        .await?;
    desk.stack.ok(define_policy, policy).await?;
    let view = desk
        .stack
        .ok(
            r#"query($id: UUID!) { surveyTemplate(id: $id) { published publishedVersions indicators { code effectiveWeight department } } }"#,
            json!({"id": template_id}),
        )
        .await?;
    let weights: Vec<(String, Option<f64>)> = view["surveyTemplate"]["indicators"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| (i["code"].as_str().unwrap().to_string(), i["effectiveWeight"].as_f64()))
        .collect();
    assert_eq!(
        weights,
        [
            ("service".to_string(), None),
            ("service.attitude".to_string(), Some(0.5)),
            ("repair".to_string(), None),
            ("repair.speed".to_string(), Some(0.25)),
            ("repair.solved".to_string(), Some(0.25)),
        ]
    );

    // Two resolved complaints get surveys by themselves.
    desk.as_("agent").await;
    let customer = desk.stack.ok(REGISTER, json!({"input": {"kind": "PERSON", "name": "张三"}})).await?;
    let customer = customer["registerCustomer"]["customerId"].as_str().unwrap().to_string();
    let unhappy_request = desk.resolved_complaint(&customer, "网络维护部").await?;
    let happy_request = desk.resolved_complaint(&customer, "客服中心").await?;
    let unhappy = desk.survey_of(&unhappy_request).await?;
    let happy = desk.survey_of(&happy_request).await?;

    // A bad answer is named.
    let bad = desk
        .stack
        .error(RESPOND, json!({"input": {"surveyId": unhappy, "answers": answers([6, 3, 1, 3, 5, 5])}}))
        .await?;
    assert_eq!(bad["extensions"]["code"], "VALIDATION");
    assert_eq!(bad["extensions"]["field"], "input.answers[0].value");
    let incomplete = desk
        .stack
        .error(RESPOND, json!({"input": {"surveyId": unhappy, "answers": [{"question": "q_overall", "value": 3}]}}))
        .await?;
    assert!(incomplete["message"].as_str().unwrap().contains("missing"), "{incomplete}");

    // The unhappy customer: a follow-up request is opened automatically.
    let r =
        desk.stack.ok(RESPOND, json!({"input": {"surveyId": unhappy, "answers": answers([2, 1, 0, 1, 2, 2])}})).await?;
    let s = &r["recordSurveyResponse"]["survey"];
    assert_eq!(s["state"], "COMPLETED");
    assert_eq!(
        s["answers"][0],
        json!({"question": "q_attitude", "questionText": "服务态度满意吗？", "value": 2, "text": null})
    );
    let f = &s["followUp"];
    assert_eq!(f["state"], "OPEN");
    assert_eq!(f["kind"], "SERVICE_REQUEST");
    assert_eq!(f["assignee"]["id"], "agent.chen");
    assert_eq!(f["department"], "网络维护部");
    assert!(f["reason"].as_str().unwrap().contains("q_overall = 1"), "{f}");
    let follow_up_request = f["requestId"].as_str().unwrap().to_string();
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let follow_up = loop {
        let r = desk
            .stack
            .ok(
                r#"query($id: ID!) { serviceRequest(id: $id) { state priority originSurveyId originRequestId owner { id } } }"#,
                json!({"id": follow_up_request}),
            )
            .await?;
        if !r["serviceRequest"].is_null() {
            break r["serviceRequest"].clone();
        }
        anyhow::ensure!(std::time::Instant::now() < deadline, "the follow-up request was not opened");
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    assert_eq!(follow_up["originSurveyId"], unhappy.as_str());
    assert_eq!(follow_up["originRequestId"], unhappy_request.as_str());
    assert_eq!(follow_up["priority"], "HIGH");
    let open_list = desk.stack.ok(r#"{ surveyFollowUps { surveyId followUp { state } } }"#, json!({})).await?;
    assert_eq!(open_list["surveyFollowUps"].as_array().unwrap().len(), 1);

    // Resolving it closes the loop.
    desk.stack
        .ok(
            RESOLVE,
            json!({"input": {"requestId": follow_up_request, "resolution": "上门道歉并更换设备", "rootCause": "service_attitude"}}),
        )
        .await?;
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let r = desk
            .stack
            .ok(
                r#"query($id: ID!) { survey(id: $id) { followUp { state outcome contacted } } }"#,
                json!({"id": unhappy}),
            )
            .await?;
        if r["survey"]["followUp"]["state"] == "DONE" {
            assert!(r["survey"]["followUp"]["outcome"].as_str().unwrap().contains("更换设备"));
            break;
        }
        anyhow::ensure!(std::time::Instant::now() < deadline, "the follow-up was not completed: {r}");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }

    // An auditor follows the unhappy answer to everything it caused.
    let response = desk
        .stack
        .ok(
            r#"query($s: UUID!) { events(filter: {streamId: $s, eventTypes: ["SurveyResponseRecorded"]}) { eventId } }"#,
            json!({"s": unhappy}),
        )
        .await?;
    let response_id = response["events"][0]["eventId"].clone();
    let trace = desk
        .stack
        .ok(
            r#"query($e: UUID!) { eventTrace(eventId: $e) { eventId eventType streamId causedByEventId } }"#,
            json!({"e": response_id}),
        )
        .await?;
    let trace = trace["eventTrace"].as_array().unwrap().clone();
    let kinds: Vec<(&str, &str)> =
        trace.iter().map(|e| (e["eventType"].as_str().unwrap(), e["streamId"].as_str().unwrap())).collect();
    assert_eq!(trace[0]["eventId"], response_id, "{kinds:?}");
    for expected in [
        ("SurveyFollowUpOpened", unhappy.as_str()),
        ("RequestFiled", follow_up_request.as_str()),
        ("RequestResolved", follow_up_request.as_str()),
        ("SurveyFollowUpCompleted", unhappy.as_str()),
    ] {
        assert!(kinds.contains(&expected), "{expected:?} not traced from the response: {kinds:?}");
    }
    let filed = trace.iter().find(|e| e["eventType"] == "RequestFiled").unwrap();
    assert!(!filed["causedByEventId"].is_null(), "the follow-up request names the event that opened it");
    assert!(
        !kinds.iter().any(|(_, stream)| *stream == unhappy_request.as_str()),
        "the original request's own history is not something the answer caused"
    );

    let r = desk
        .stack
        .ok(RESPOND, json!({"input": {"surveyId": happy, "answers": answers([5, 4, 1, 5, 10, 7]), "channel": "WEB"}}))
        .await?;
    assert!(r["recordSurveyResponse"]["survey"]["followUp"].is_null());
    let position = r["recordSurveyResponse"]["globalPosition"].clone();

    // The indices, by department: hand-computed.
    let today = Utc::now();
    let range = json!({"from": (today - chrono::Duration::days(1)).to_rfc3339(), "to": (today + chrono::Duration::days(1)).to_rfc3339()});
    let index = desk
        .stack
        .ok(
            r#"query($range: TimeRange!, $pos: GlobalPosition) {
                 satisfactionIndex(range: $range, groupBy: [DEPARTMENT], minSample: 2, minPosition: $pos) {
                   group { dimension value } responses smallSample surveysSent surveysAnswered responseRate
                   csat { percent hits total } nps { score promoters detractors } ces { mean } composite
                   dimensions { dimension mean } } }"#,
            json!({"range": range, "pos": position}),
        )
        .await?;
    let rows = index["satisfactionIndex"].as_array().unwrap();
    let dept = |name: &str| rows.iter().find(|r| r["group"][0]["value"] == name).unwrap().clone();
    let network = dept("网络维护部");
    assert_eq!(network["csat"], json!({"percent": 0.0, "hits": 0, "total": 1}));
    assert_eq!(network["nps"], json!({"score": -100.0, "promoters": 0, "detractors": 1}));
    assert_eq!(network["smallSample"], true);
    // attitude 2 → 25, speed 1 → 0, solved no → 0: .5·25 + .25·0 + .25·0 = 12.5
    assert_eq!(network["composite"], 12.5);
    let service = dept("客服中心");
    assert_eq!(service["csat"]["percent"], 100.0);
    // attitude 5 → 100, speed 4 → 75, solved → 100: 50 + 18.75 + 25 = 93.75
    assert_eq!(service["composite"], 93.75);
    assert_eq!(service["ces"]["mean"], 7.0);
    assert_eq!((service["surveysSent"].as_i64(), service["responseRate"].as_f64()), (Some(1), Some(100.0)));

    let trend = desk
        .stack
        .ok(
            r#"query($range: TimeRange!) { satisfactionTrend(range: $range, period: DAY) { period responses csat { percent } change { csat } } }"#,
            json!({"range": range}),
        )
        .await?;
    let points = trend["satisfactionTrend"].as_array().unwrap();
    let today_label = today.format("%Y-%m-%d").to_string();
    let point = points.iter().find(|p| p["period"] == today_label.as_str()).expect("today's point");
    assert_eq!(point["responses"], 2);
    assert_eq!(point["csat"]["percent"], 50.0);

    // The customer 360 shows the trajectory and the surveys.
    let c = desk
        .stack
        .ok(
            r#"query($id: ID!) { customer(id: $id) { satisfaction { overall nps composite } surveys { surveyId state } } }"#,
            json!({"id": customer}),
        )
        .await?;
    let trajectory = c["customer"]["satisfaction"].as_array().unwrap();
    assert_eq!(trajectory.len(), 2);
    assert_eq!(trajectory[0]["overall"], 1.0);
    assert_eq!(trajectory[1]["nps"], 100.0);
    assert_eq!(c["customer"]["surveys"].as_array().unwrap().len(), 2, "the follow-up request was not surveyed");

    // The monthly service-quality report.
    let month = today.format("%Y-%m").to_string();
    let report = desk
        .stack
        .ok(
            r#"query($month: String!) { serviceQualityReport(month: $month, minSample: 1) {
                 month satisfaction { responses csat { percent } composite }
                 departments { department responses }
                 complaints { filed resolved byRootCause { rootCause count } }
                 sla { metric hit missed }
                 topDissatisfaction { indicator department dissatisfied answers }
                 followUps { opened completed overdue } } }"#,
            json!({"month": month}),
        )
        .await?;
    let r = &report["serviceQualityReport"];
    assert_eq!(r["satisfaction"]["responses"], 2);
    assert_eq!(r["satisfaction"]["csat"]["percent"], 50.0);
    assert_eq!(r["complaints"]["filed"], 3, "two complaints and the follow-up request");
    assert_eq!(r["complaints"]["resolved"], 3);
    let causes: Vec<(String, i64)> = r["complaints"]["byRootCause"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| (c["rootCause"].as_str().unwrap().to_string(), c["count"].as_i64().unwrap()))
        .collect();
    assert_eq!(causes, [("product_defect".to_string(), 2), ("service_attitude".to_string(), 1)]);
    assert_eq!(r["followUps"], json!({"opened": 1, "completed": 1, "overdue": 0}));
    let top = r["topDissatisfaction"].as_array().unwrap();
    assert_eq!(top.len(), 3, "{top:?}");
    assert!(top.iter().any(|t| t["indicator"] == "维修 / 速度" && t["department"] == "网络维护部"));
    let bad_month = desk.stack.error(r#"{ serviceQualityReport(month: "2026-13") { month } }"#, json!({})).await?;
    assert_eq!(bad_month["extensions"]["code"], "VALIDATION");

    // By hand: a survey expired by hand takes no answers.
    let sent = desk
        .stack
        .ok(
            r#"mutation($input: SendSurveyInput!) { sendSurvey(input: $input) { surveyId } }"#,
            json!({"input": {"templateId": template_id, "customerId": customer, "channel": "EMAIL"}}),
        )
        .await?;
    let manual = sent["sendSurvey"]["surveyId"].as_str().unwrap().to_string();
    desk.stack
        .ok(
            r#"mutation($input: ExpireSurveyInput!) { expireSurvey(input: $input) { eventsRecorded } }"#,
            json!({"input": {"surveyId": manual, "reason": "客户要求不再联系"}}),
        )
        .await?;
    let late = desk
        .stack
        .error(RESPOND, json!({"input": {"surveyId": manual, "answers": answers([5, 5, 1, 5, 9, 7])}}))
        .await?;
    assert_eq!(late["extensions"]["code"], "FAILED_PRECONDITION");
    assert_eq!(late["extensions"]["rule"], "survey_expired");
    // A request gets one survey, whoever sends it.
    let twice = desk
        .stack
        .error(
            r#"mutation($input: SendSurveyInput!) { sendSurvey(input: $input) { surveyId } }"#,
            json!({"input": {"templateId": template_id, "customerId": customer, "requestId": happy_request}}),
        )
        .await?;
    assert_eq!(twice["extensions"]["code"], "ALREADY_EXISTS");

    // Internal customers: the network department rates the service centre; kept apart.
    desk.as_("quality").await;
    let internal = desk
        .stack
        .ok(
            TEMPLATE,
            json!({"input": {"name": "内部服务评价", "audience": "INTERNAL",
                "questions": [{"code": "q_overall", "text": "对客服中心的支持满意吗？", "kind": "LIKERT_5", "dimension": "overall"}]}}),
        )
        .await?;
    let internal_id = internal["defineSurveyTemplate"]["templateId"].as_str().unwrap().to_string();
    desk.stack
        .ok(
            r#"mutation($input: PublishSurveyTemplateInput!) { publishSurveyTemplate(input: $input) { version } }"#,
            json!({"input": {"templateId": internal_id, "version": 1}}),
        )
        .await?;
    let dept = desk
        .stack
        .ok(
            REGISTER,
            json!({"input": {"kind": "INTERNAL_DEPARTMENT", "name": "网络维护部", "departmentCode": "network"}}),
        )
        .await?;
    let dept = dept["registerCustomer"]["customerId"].as_str().unwrap().to_string();
    let wrong = desk
        .stack
        .error(
            r#"mutation($input: SendSurveyInput!) { sendSurvey(input: $input) { surveyId } }"#,
            json!({"input": {"templateId": template_id, "customerId": dept, "channel": "EMAIL"}}),
        )
        .await?;
    assert_eq!(
        wrong["extensions"]["field"], "input.customerId",
        "an outside-customer template does not ask a department"
    );
    let sent = desk
        .stack
        .ok(
            r#"mutation($input: SendSurveyInput!) { sendSurvey(input: $input) { surveyId } }"#,
            json!({"input": {"templateId": internal_id, "customerId": dept, "channel": "EMAIL", "department": "客服中心"}}),
        )
        .await?;
    let r = desk
        .stack
        .ok(
            RESPOND,
            json!({"input": {"surveyId": sent["sendSurvey"]["surveyId"], "answers": [{"question": "q_overall", "value": 4}]}}),
        )
        .await?;
    let by_audience = |audience: &'static str| {
        let stack = &desk.stack;
        let range = range.clone();
        let pos = r["recordSurveyResponse"]["globalPosition"].clone();
        async move {
            let q = stack
                .ok(
                    r#"query($range: TimeRange!, $a: SurveyAudience!, $pos: GlobalPosition) {
                         satisfactionIndex(range: $range, filter: {audience: $a}, minPosition: $pos) { responses csat { percent } } }"#,
                    json!({"range": range, "a": audience, "pos": pos}),
                )
                .await?;
            anyhow::Ok(q["satisfactionIndex"][0].clone())
        }
    };
    assert_eq!(by_audience("EXTERNAL").await?["responses"], 2, "internal answers are not customers' answers");
    assert_eq!(by_audience("INTERNAL").await?, json!({"responses": 1, "csat": {"percent": 100.0}}));

    // Alerts are configured by quality managers, with checked thresholds.
    let alert = r#"mutation($input: DefineSatisfactionAlertInput!) { defineSatisfactionAlert(input: $input) { id } }"#;
    let bad =
        desk.stack.error(alert, json!({"input": {"name": "x", "index": "CSAT", "period": "MONTH", "drop": 0}})).await?;
    assert_eq!(bad["extensions"]["field"], "input.drop");
    desk.stack
        .ok(alert, json!({"input": {"name": "CSAT 月降 5 点", "index": "CSAT", "period": "MONTH", "drop": 5, "timeZone": "Asia/Shanghai"}}))
        .await?;
    let rules = desk.stack.ok("{ satisfactionAlertRules { name drop period } }", json!({})).await?;
    assert_eq!(rules["satisfactionAlertRules"][0]["drop"], 5.0);
    Ok(())
}
