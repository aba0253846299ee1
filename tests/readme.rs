//! The README's GraphQL examples run, in order, against a real kefu: the quick start a new
//! user copies must work.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use serde_json::{Value, json};
use support::*;

/// The ```graphql blocks of the README, in order.
fn examples() -> Vec<String> {
    let readme = std::fs::read_to_string(kefu_testkit::repo_root().join("README.md")).unwrap();
    let mut out = Vec::new();
    let mut current: Option<String> = None;
    for line in readme.lines() {
        match (&mut current, line.trim()) {
            (None, "```graphql") => current = Some(String::new()),
            (Some(block), "```") => {
                out.push(std::mem::take(block));
                current = None;
            }
            (Some(block), _) => {
                block.push_str(line);
                block.push('\n');
            }
            (None, _) => {}
        }
    }
    out
}

fn find(v: &Value, key: &str) -> Option<String> {
    match v {
        Value::Object(m) => {
            m.get(key).and_then(|x| x.as_str().map(str::to_string)).or_else(|| m.values().find_map(|x| find(x, key)))
        }
        Value::Array(a) => a.iter().find_map(|x| find(x, key)),
        _ => None,
    }
}

#[tokio::test]
async fn every_readme_example_runs() -> anyhow::Result<()> {
    let blocks = examples();
    assert!(blocks.len() >= 5, "README examples not found: {blocks:?}");
    let stack = Stack::start(&[]).await?;
    let mut customer: Option<String> = None;
    let mut request: Option<String> = None;
    let mut template: Option<String> = None;
    let mut survey: Option<String> = None;
    for block in blocks {
        let mut query = block.clone();
        if let Some(c) = &customer {
            query = query.replace("<customerId>", c);
        }
        if let Some(r) = &request {
            query = query.replace("<requestId>", r);
        }
        if let Some(t) = &template {
            query = query.replace("<templateId>", t);
        }
        if let Some(s) = &survey {
            query = query.replace("<surveyId>", s);
        }
        assert!(!query.contains('<'), "an example needs an id no earlier example produced:\n{block}");
        let data = stack.ok(&query, json!({})).await.map_err(|e| anyhow::anyhow!("{e}\nin:\n{block}"))?;
        if customer.is_none() {
            customer = find(&data, "customerId");
        }
        if request.is_none() {
            request = find(&data, "requestId");
        }
        if template.is_none() {
            template = find(&data, "templateId");
        }
        if survey.is_none() {
            survey = find(&data, "surveyId");
        }
        if let Some(state) = data.get("recordSurveyResponse").and_then(|r| r["survey"]["state"].as_str()) {
            assert_eq!(state, "COMPLETED");
        }
        if let Some(state) = data.get("recordReturnVisit").and_then(|r| r["serviceRequest"]["state"].as_str()) {
            assert_eq!(state, "CLOSED");
        }
    }
    assert!(customer.is_some() && request.is_some() && template.is_some() && survey.is_some());
    Ok(())
}
