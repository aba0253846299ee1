//! Shared by the black-box tests: start kefu as a process, talk GraphQL, read Kafka.

#![allow(dead_code)]

use std::time::Duration;

use anyhow::{Context, Result, bail};
use kefu_app::RecordedEvent;
use kefu_testkit::{KefuProcess, TestDatabase};
use rdkafka::{
    ClientConfig, Message, Offset, TopicPartitionList,
    consumer::{BaseConsumer, Consumer},
};
use serde_json::{Value, json};

pub const PARTITIONS: i32 = 3;

/// A kefu started with `kefu run` on its own database and topic.
pub struct Stack {
    pub db: TestDatabase,
    pub topic: String,
    pub kefu: KefuProcess,
    pub client: reqwest::Client,
    pub token: Option<String>,
}

impl Stack {
    /// Starts kefu (dev authentication unless `env` says otherwise).
    pub async fn start(env: &[(&str, String)]) -> Result<Stack> {
        Stack::on(kefu_testkit::fresh_database().await?, env)
    }

    /// Starts kefu on an existing database (dev authentication unless `env` says otherwise).
    pub fn on(db: TestDatabase, env: &[(&str, String)]) -> Result<Stack> {
        let topic = kefu_testkit::unique_topic("e2e");
        let mut all = base_env(&db, &topic)?;
        for (k, v) in env {
            all.retain(|(key, _)| key != k);
            all.push((*k, v.clone()));
        }
        let kefu = KefuProcess::start(&["run"], &all, true)?;
        Ok(Stack {
            db,
            topic,
            kefu,
            client: reqwest::Client::builder().timeout(Duration::from_secs(30)).build()?,
            token: None,
        })
    }

    /// Posts a GraphQL request; returns the whole response body and the HTTP status.
    pub async fn post(&self, query: &str, variables: Value) -> Result<(u16, Value)> {
        let mut request =
            self.client.post(self.kefu.graphql_url()?).json(&json!({"query": query, "variables": variables}));
        if let Some(t) = &self.token {
            request = request.bearer_auth(t);
        }
        let response = request.send().await?;
        let status = response.status().as_u16();
        let body: Value = response.json().await.context("response is not JSON")?;
        Ok((status, body))
    }

    /// A request that must succeed without errors; returns `data`.
    pub async fn ok(&self, query: &str, variables: Value) -> Result<Value> {
        let (status, body) = self.post(query, variables).await?;
        if status != 200 || body.get("errors").is_some() {
            bail!("GraphQL request failed ({status}): {body:#}");
        }
        Ok(body["data"].clone())
    }

    /// A request that must fail; returns the first error.
    pub async fn error(&self, query: &str, variables: Value) -> Result<Value> {
        let (_, body) = self.post(query, variables).await?;
        body["errors"].get(0).cloned().ok_or_else(|| anyhow::anyhow!("expected an error, got {body:#}"))
    }

    /// The event store's head position.
    pub async fn head(&self) -> Result<i64> {
        Ok(sqlx::query_scalar("SELECT position FROM event_store.log_head").fetch_one(&self.db.pool).await?)
    }
}

/// Environment for a kefu process on `db` and `topic`.
pub fn base_env(db: &TestDatabase, topic: &str) -> Result<Vec<(&'static str, String)>> {
    Ok(vec![
        ("DATABASE_URL", db.url.clone()),
        ("KEFU_KAFKA_BROKERS", kefu_testkit::brokers()?),
        ("KEFU_KAFKA_TOPIC", topic.to_string()),
        ("KEFU_KAFKA_PARTITIONS", PARTITIONS.to_string()),
        ("KEFU_AUTH_MODE", "dev".into()),
        ("KEFU_HTTP_ADDR", "127.0.0.1:0".into()),
        ("KEFU_DB_MAX_CONNECTIONS", "10".into()),
        ("KEFU_MAX_WAIT_MS", "20000".into()),
    ])
}

/// A record read from the topic.
pub struct Record {
    pub key: String,
    pub partition: i32,
    pub offset: i64,
    pub event: RecordedEvent,
}

/// Reads `topic` from the beginning with an ordinary consumer until at least `expected`
/// records arrived and nothing more comes for a moment.
pub fn read_topic(topic: &str, expected: usize) -> Result<Vec<Record>> {
    read_topic_from(&kefu_testkit::brokers()?, topic, expected)
}

/// [`read_topic`] on another broker.
pub fn read_topic_from(brokers: &str, topic: &str, expected: usize) -> Result<Vec<Record>> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", format!("e2e-reader-{}", uuid::Uuid::new_v4()))
        .set("enable.auto.commit", "false")
        .create()?;
    let mut tpl = TopicPartitionList::new();
    for p in 0..PARTITIONS {
        tpl.add_partition_offset(topic, p, Offset::Beginning)?;
    }
    consumer.assign(&tpl)?;
    let mut out = Vec::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let mut quiet = None;
    while std::time::Instant::now() < deadline {
        match consumer.poll(Duration::from_millis(200)) {
            Some(m) => {
                let m = m?;
                quiet = None;
                out.push(Record {
                    key: String::from_utf8_lossy(m.key().unwrap_or_default()).into_owned(),
                    partition: m.partition(),
                    offset: m.offset(),
                    event: kefu_contract::Contract::get().decode(m.payload().unwrap_or_default())?,
                });
            }
            None if out.len() >= expected
                && quiet.get_or_insert_with(std::time::Instant::now).elapsed() > Duration::from_secs(1) =>
            {
                return Ok(out);
            }
            None => {}
        }
    }
    bail!("only {} of {expected} records arrived on {topic}", out.len())
}

pub const REGISTER: &str = r#"
mutation($input: RegisterCustomerInput!) {
  registerCustomer(input: $input) { commandId customerId streamVersion globalPosition deduplicated eventsRecorded }
}"#;

pub const LOG_INTERACTION: &str = r#"
mutation($input: LogInteractionInput!) {
  logInteraction(input: $input) { interactionId customerId streamVersion globalPosition }
}"#;
