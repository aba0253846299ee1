//! The peers' workload (`../shared/anchors/README.md`): M complaints, each filed,
//! acknowledged and resolved — 3M commands — by C concurrent clients over disjoint
//! complaints (client t takes complaints t, t+C, t+2C, …). Two levels:
//!
//! - [`command_service`]: `CommandService` in this process, what the peers' library calls
//!   correspond to;
//! - [`graphql`]: mutations over HTTP against a running gateway (`kefu run` or `kefu serve`),
//!   one mutation per request, as a frontend sends them.
//!
//! Customers (`i % 5000` of them, as the peers name theirs) are registered before the clock
//! starts. Each command is timed from the call until its answer; p50/p99 are nearest-rank
//! over every latency, as the peers compute them. After the run the event store must hold
//! the events of every command, else the run fails.
//!
//! Through GraphQL, every n-th resolution is also followed until the read model shows it:
//! from the mutation's answer until `serviceRequest(minPosition: <its globalPosition>)`
//! answers (the gateway waits, bounded, for the read model to reach the position) with the
//! request resolved — a mutation's time to visible, one read's round trip included. The
//! probe runs beside the client, which goes on with its next command.

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail, ensure};
use kefu_app::{CommandMeta, CommandService, service_requests::RequestDraft};
use kefu_domain::{
    customer::{CustomerCommand, examples},
    service_request::ServiceRequestCommand,
    values::{Category, Label, Subject, Text},
    vocab::{Channel, Priority, RequestType},
};
use serde_json::{Value, json};
use uuid::Uuid;

use crate::{Usage, actor};

/// Customers the complaints are spread over (the peers use `cust-{i % 5000}`).
const CUSTOMERS: usize = 5000;
const CHANNELS: [Channel; 4] = [Channel::Phone, Channel::Email, Channel::WebChat, Channel::Wechat];

/// One run's figures.
#[derive(Debug, Clone)]
pub struct Figures {
    /// Commands sent.
    pub commands: usize,
    /// Wall time.
    pub elapsed: Duration,
    /// Every command's latency, sorted.
    pub latencies: Vec<Duration>,
    /// Events appended by the timed commands.
    pub events: i64,
    /// From a mutation's answer until the read model showed it, sorted (GraphQL only).
    pub visible: Vec<Duration>,
    /// The slowest of those: when the mutation was answered (since the start) and how long.
    pub slowest_visible: Vec<(Duration, Duration)>,
}

/// Nearest-rank percentile (the peers' definition).
pub fn nearest_rank(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((p * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

impl Figures {
    /// The JSON line, in the peers' field names plus usage.
    pub fn json(&self, system: &str, complaints: usize, concurrency: usize, usage: &Usage) -> Value {
        let mut line = json!({
            "system": system,
            "complaints": complaints,
            "concurrency": concurrency,
            "commands": self.commands,
            "events": self.events,
            "seconds": self.elapsed.as_secs_f64(),
            "commands_per_s": self.commands as f64 / self.elapsed.as_secs_f64(),
            "p50_ms": nearest_rank(&self.latencies, 0.50).as_secs_f64() * 1e3,
            "p99_ms": nearest_rank(&self.latencies, 0.99).as_secs_f64() * 1e3,
            "cpu_s": usage.cpu_s,
            "postgres_cpu_s": usage.postgres_cpu_s,
            "gateway_cpu_s": usage.gateway_cpu_s,
            "peak_rss_mb": usage.peak_rss_mb,
        });
        if !self.visible.is_empty() {
            let ms = |p: f64| nearest_rank(&self.visible, p).as_secs_f64() * 1e3;
            let slowest: Vec<Value> = self
                .slowest_visible
                .iter()
                .map(|(at, took)| json!({"at_s": at.as_secs_f64(), "ms": took.as_secs_f64() * 1e3}))
                .collect();
            line["visible"] = json!({"samples": self.visible.len(), "p50_ms": ms(0.50), "p99_ms": ms(0.99),
                "max_ms": ms(1.0), "slowest": slowest});
        }
        line
    }
}

fn request_id(run: Uuid, i: usize) -> Uuid {
    Uuid::new_v5(&run, format!("complaint-{i}").as_bytes())
}

fn customer_id(run: Uuid, i: usize) -> Uuid {
    Uuid::new_v5(&run, format!("customer-{}", i % CUSTOMERS).as_bytes())
}

fn draft(run: Uuid, i: usize) -> Result<RequestDraft> {
    Ok(RequestDraft {
        request_id: request_id(run, i),
        customer_id: customer_id(run, i),
        request_type: RequestType::Complaint,
        category: Category::parse("category", "物流/破损")?,
        priority: Priority::Normal,
        channel: CHANNELS[i % 4],
        subject: Subject::parse("subject", "Parcel arrived damaged")?,
        description: None,
        taken_by: None,
        department: None,
        on_site_required: false,
        external_ref: None,
        tags: vec![],
        origin: None,
    })
}

/// Registers the customers of a run through the command service (not timed).
pub async fn register_customers(service: &CommandService, run: Uuid, complaints: usize) -> Result<()> {
    let n = complaints.min(CUSTOMERS);
    let service = Arc::new(service.clone());
    let tasks: Vec<_> = (0..32)
        .map(|t| {
            let service = service.clone();
            tokio::spawn(async move {
                for i in (t..n).step_by(32) {
                    let (_, mut register) = examples::register_person();
                    register.customer_id = customer_id(run, i);
                    service.customer(CustomerCommand::Register(register), CommandMeta::by(actor())).await?;
                }
                anyhow::Ok(())
            })
        })
        .collect();
    for t in tasks {
        t.await??;
    }
    Ok(())
}

/// The workload through `CommandService`.
pub async fn command_service(
    service: &CommandService,
    run: Uuid,
    complaints: usize,
    concurrency: usize,
) -> Result<Figures> {
    let started = Instant::now();
    let tasks: Vec<_> = (0..concurrency)
        .map(|t| {
            let service = service.clone();
            tokio::spawn(async move {
                let mut latencies = Vec::with_capacity(3 * complaints / concurrency + 3);
                let mut events = 0i64;
                for i in (t..complaints).step_by(concurrency) {
                    let id = request_id(run, i);
                    let t0 = Instant::now();
                    events += service.open_request(draft(run, i)?, CommandMeta::by(actor())).await?.event_count;
                    latencies.push(t0.elapsed());
                    let t0 = Instant::now();
                    let ack = ServiceRequestCommand::Acknowledge { at: chrono::Utc::now(), note: None };
                    events += service.request(id, ack, CommandMeta::by(actor())).await?.event_count;
                    latencies.push(t0.elapsed());
                    let t0 = Instant::now();
                    let resolve = ServiceRequestCommand::Resolve {
                        at: chrono::Utc::now(),
                        resolution: Text::parse("resolution", "replacement shipped")?,
                        root_cause: Label::parse("rootCause", "delivery_delay")?,
                        compensation: None,
                    };
                    events += service.request(id, resolve, CommandMeta::by(actor())).await?.event_count;
                    latencies.push(t0.elapsed());
                }
                anyhow::Ok((latencies, events, Vec::new()))
            })
        })
        .collect();
    collect(tasks, started).await
}

/// One client's task: its latencies, the events its commands recorded, and its probes' times
/// to visible (when answered, since the start, and how long until visible).
type Client = tokio::task::JoinHandle<Result<(Vec<Duration>, i64, Vec<(Duration, Duration)>)>>;

async fn collect(tasks: Vec<Client>, started: Instant) -> Result<Figures> {
    let mut latencies = Vec::new();
    let mut events = 0;
    let mut visible = Vec::new();
    for t in tasks {
        let (l, e, v) = t.await??;
        latencies.extend(l);
        events += e;
        visible.extend(v);
    }
    let elapsed = started.elapsed();
    latencies.sort_unstable();
    visible.sort_unstable_by_key(|(_, took)| std::cmp::Reverse(*took));
    let slowest_visible = visible.iter().take(5).copied().collect();
    let mut visible: Vec<Duration> = visible.into_iter().map(|(_, took)| took).collect();
    visible.sort_unstable();
    Ok(Figures { commands: latencies.len(), elapsed, latencies, events, visible, slowest_visible })
}

/// A GraphQL client of one gateway.
#[derive(Clone)]
pub struct Gateway {
    client: reqwest::Client,
    url: String,
}

impl Gateway {
    /// A client for `url` (…/graphql), keeping connections alive.
    pub fn new(url: &str, concurrency: usize) -> Result<Self> {
        let client = reqwest::Client::builder()
            .pool_max_idle_per_host(concurrency)
            .tcp_nodelay(true)
            .timeout(Duration::from_secs(60))
            .build()?;
        Ok(Gateway { client, url: url.to_string() })
    }

    /// Sends one operation; fails on any GraphQL error.
    pub async fn send(&self, query: &str, variables: Value) -> Result<Value> {
        let response = self
            .client
            .post(&self.url)
            .json(&json!({"query": query, "variables": variables}))
            .send()
            .await
            .with_context(|| format!("POST {}", self.url))?;
        let status = response.status();
        let body: Value = response.json().await.with_context(|| format!("the answer to a {status} is not JSON"))?;
        if let Some(errors) = body.get("errors") {
            bail!("GraphQL errors: {errors}");
        }
        Ok(body["data"].clone())
    }

    /// Sends a read with `minPosition` until it answers or `deadline` passes: the gateway's
    /// wait for a position is bounded (it answers `NOT_CAUGHT_UP` when the wait runs out), so
    /// it is asked again.
    pub async fn send_until(&self, query: &str, variables: Value, deadline: Instant) -> Result<Value> {
        loop {
            match self.send(query, variables.clone()).await {
                Ok(data) => return Ok(data),
                Err(_) if Instant::now() < deadline => {}
                Err(e) => return Err(e),
            }
        }
    }
}

const REGISTER: &str = "mutation($id: ID!) { registerCustomer(input: { commandId: $id, kind: PERSON, name: \"王芳\", \
     contacts: { phone: \"138 0013 8000\" } }) { customerId globalPosition } }";
const FILE: &str = "mutation($cmd: ID!, $customer: ID!, $channel: Channel!) { openServiceRequest(input: { \
     commandId: $cmd, customerId: $customer, requestType: COMPLAINT, category: \"物流/破损\", priority: NORMAL, \
     channel: $channel, subject: \"Parcel arrived damaged\" }) { requestId eventsRecorded } }";
const ACKNOWLEDGE: &str = "mutation($id: ID!) { acknowledgeRequest(input: { requestId: $id }) { eventsRecorded } }";
const RESOLVE: &str = "mutation($id: ID!) { resolveRequest(input: { requestId: $id, \
     resolution: \"replacement shipped\", rootCause: \"delivery_delay\" }) { eventsRecorded globalPosition } }";
const VISIBLE: &str = "query($id: ID!, $at: GlobalPosition!) { serviceRequest(id: $id, minPosition: $at) { state } }";

/// From `answered` (a resolution's answer at position `at`) until the request's read model
/// shows it resolved; the gateway's wait for a position is bounded, so it is asked again
/// until a minute has passed.
async fn until_visible(gateway: Gateway, id: String, at: Value, answered: Instant) -> Result<(Instant, Duration)> {
    ensure!(at.is_number(), "the resolution of {id} returned no globalPosition: {at}");
    let data = gateway
        .send_until(VISIBLE, json!({"id": id, "at": at}), answered + Duration::from_secs(60))
        .await
        .with_context(|| format!("request {id} was not visible at {at} within 60 s"))?;
    let state = &data["serviceRequest"]["state"];
    ensure!(state == "RESOLVED", "request {id} read at position {at} is {state}, not RESOLVED");
    Ok((answered, answered.elapsed()))
}

fn channel_name(i: usize) -> &'static str {
    ["PHONE", "EMAIL", "WEB_CHAT", "WECHAT"][i % 4]
}

/// Registers the customers of a run through GraphQL (not timed); returns their ids, with
/// `settle` once the request read model has consumed the registrations (else the first
/// commands' time to visible would include the read models' start: a consumer-group join, the
/// registrations' backlog).
pub async fn register_customers_graphql(
    gateway: &Gateway,
    run: Uuid,
    complaints: usize,
    settle: bool,
) -> Result<Arc<Vec<String>>> {
    let n = complaints.min(CUSTOMERS);
    let tasks: Vec<_> = (0..32)
        .map(|t| {
            let gateway = gateway.clone();
            tokio::spawn(async move {
                let mut ids = Vec::new();
                let mut last = 0;
                for i in (t..n).step_by(32) {
                    let command = Uuid::new_v5(&run, format!("register-{i}").as_bytes());
                    let data = gateway.send(REGISTER, json!({"id": command})).await?;
                    let id = data["registerCustomer"]["customerId"].as_str().context("no customerId")?.to_string();
                    last = last.max(data["registerCustomer"]["globalPosition"].as_i64().unwrap_or(0));
                    ids.push((i, id));
                }
                anyhow::Ok((ids, last))
            })
        })
        .collect();
    let mut ids = vec![String::new(); n];
    let mut last = 0;
    for t in tasks {
        let (mine, at) = t.await??;
        last = last.max(at);
        for (i, id) in mine {
            ids[i] = id;
        }
    }
    if settle {
        // A request that does not exist, read once the read model has reached `last`.
        gateway
            .send_until(VISIBLE, json!({"id": Uuid::nil(), "at": last}), Instant::now() + Duration::from_secs(120))
            .await
            .with_context(|| format!("the request read model did not reach position {last} within 120 s"))?;
    }
    Ok(Arc::new(ids))
}

/// The workload through GraphQL, one mutation per HTTP request; every `visible_every`-th
/// resolution followed until it is visible (0: none).
pub async fn graphql(
    gateway: &Gateway,
    customers: Arc<Vec<String>>,
    run: Uuid,
    complaints: usize,
    concurrency: usize,
    visible_every: usize,
) -> Result<Figures> {
    ensure!(!customers.is_empty(), "no customers");
    let started = Instant::now();
    let tasks: Vec<_> = (0..concurrency)
        .map(|t| {
            let gateway = gateway.clone();
            let customers = customers.clone();
            tokio::spawn(async move {
                let mut latencies = Vec::with_capacity(3 * complaints / concurrency + 3);
                let mut events = 0i64;
                let mut probes = Vec::new();
                let count = |v: &Value, field: &str| v[field]["eventsRecorded"].as_i64().unwrap_or(0);
                for i in (t..complaints).step_by(concurrency) {
                    let command = Uuid::new_v5(&run, format!("file-{i}").as_bytes());
                    let customer = &customers[i % customers.len()];
                    let t0 = Instant::now();
                    let filed = gateway
                        .send(FILE, json!({"cmd": command, "customer": customer, "channel": channel_name(i)}))
                        .await?;
                    latencies.push(t0.elapsed());
                    events += count(&filed, "openServiceRequest");
                    let id = filed["openServiceRequest"]["requestId"].as_str().context("no requestId")?.to_string();
                    let t0 = Instant::now();
                    events += count(&gateway.send(ACKNOWLEDGE, json!({"id": id})).await?, "acknowledgeRequest");
                    latencies.push(t0.elapsed());
                    let t0 = Instant::now();
                    let resolved = gateway.send(RESOLVE, json!({"id": id})).await?;
                    let answered = Instant::now();
                    latencies.push(answered - t0);
                    events += count(&resolved, "resolveRequest");
                    if visible_every > 0 && i % visible_every == 0 {
                        let at = resolved["resolveRequest"]["globalPosition"].clone();
                        probes.push(tokio::spawn(until_visible(gateway.clone(), id, at, answered)));
                    }
                }
                let mut visible = Vec::with_capacity(probes.len());
                for probe in probes {
                    let (answered, took) = probe.await??;
                    visible.push((answered - started, took));
                }
                anyhow::Ok((latencies, events, visible))
            })
        })
        .collect();
    collect(tasks, started).await
}
