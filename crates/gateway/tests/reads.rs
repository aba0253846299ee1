//! Reads for agent desktops: a page of requests with their customers costs a fixed number of
//! SQL statements whatever its size (no N+1, no lookups or `SET`s per read), and a switched
//! generation serves the next reads. The gateway runs in this process on a test database whose
//! read models are applied directly (no broker); every SQL statement sqlx runs on behalf of a
//! GraphQL request is counted by the request's correlation id.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::{
    collections::HashMap,
    net::SocketAddr,
    sync::{Arc, Mutex, OnceLock},
    time::Duration,
};

use kefu_app::{
    Actor, ActorKind, CommandMeta, CommandService, RecordedEvent, service_requests::RequestDraft, surveys::SurveyDraft,
};
use kefu_contract::Contract;
use kefu_domain::{
    customer::{CustomerCommand, examples},
    interaction::{InteractionCommand, examples as interactions},
    survey::examples as surveys,
    survey_template::{SurveyTemplateCommand, examples as templates},
    values::{Category, Label, Name, Subject},
    vocab::{Channel, Priority, RequestType, SurveyTrigger},
};
use kefu_gateway::{Gateway, GatewayConfig, auth::AuthConfig};
use kefu_projections::{
    Projection,
    apply::{Record, apply_batch},
    customer360::Customer360,
    registry::{self, Status},
    satisfaction::Satisfaction,
    service_requests::ServiceRequests,
};
use kefu_store::{PgEventStore, migrate};
use serde_json::{Value, json};
use tracing::{
    Event, Subscriber,
    field::{Field, Visit},
    span::{Attributes, Id},
};
use tracing_subscriber::{
    Layer,
    layer::{Context, SubscriberExt},
    registry::LookupSpan,
    util::SubscriberInitExt,
};
use uuid::Uuid;

// ---------------------------------------------------------------------------------------------
// Counting statements

/// Statements run inside each request span, by correlation id.
fn counts() -> &'static Mutex<HashMap<String, usize>> {
    static COUNTS: OnceLock<Mutex<HashMap<String, usize>>> = OnceLock::new();
    COUNTS.get_or_init(Default::default)
}

struct Correlation(String);

struct FindCorrelation(Option<String>);

impl Visit for FindCorrelation {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == "correlation_id" {
            self.0 = Some(format!("{value:?}"));
        }
    }
}

struct CountStatements;

impl<S: Subscriber + for<'a> LookupSpan<'a>> Layer<S> for CountStatements {
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        if attrs.metadata().name() != "graphql" {
            return;
        }
        let mut found = FindCorrelation(None);
        attrs.record(&mut found);
        if let (Some(c), Some(span)) = (found.0, ctx.span(id)) {
            span.extensions_mut().insert(Correlation(c));
        }
    }

    fn on_event(&self, event: &Event<'_>, ctx: Context<'_, S>) {
        if event.metadata().target() != "sqlx::query" {
            return;
        }
        let Some(scope) = ctx.event_scope(event) else { return };
        for span in scope {
            if let Some(Correlation(c)) = span.extensions().get::<Correlation>() {
                *counts().lock().unwrap().entry(c.clone()).or_default() += 1;
                return;
            }
        }
    }
}

fn count_statements() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let _ = tracing_subscriber::registry().with(CountStatements).try_init();
    });
}

// ---------------------------------------------------------------------------------------------
// A desk's data

fn agent() -> Actor {
    Actor { id: "agent.chen".into(), name: Some("陈静".into()), kind: ActorKind::User, roles: vec!["agent".into()] }
}

struct Desk {
    db: kefu_testkit::TestDatabase,
    events: Vec<RecordedEvent>,
    customers: Vec<(Uuid, String)>,
    url: String,
    client: reqwest::Client,
}

const CUSTOMERS: usize = 25;
const REQUESTS: usize = 120;

/// 25 customers with 120 requests between them, contacts on two channels and surveys (every
/// other customer; some answered), three read models built, a gateway serving.
async fn desk() -> anyhow::Result<Desk> {
    count_statements();
    let db = kefu_testkit::fresh_database().await?;
    migrate::run(&db.pool).await?;
    kefu_projections::migrate(&db.pool).await?;
    let store = PgEventStore::new(db.pool.clone());
    let service = CommandService::new(Arc::new(store.clone()));
    let mut customers = Vec::new();
    for i in 0..CUSTOMERS {
        let (_, mut register) = examples::register_person();
        register.customer_id = Uuid::now_v7();
        let name = format!("客户{i:02}");
        register.name = Name::parse("name", &name)?;
        customers.push((register.customer_id, name));
        service.customer(CustomerCommand::Register(register), CommandMeta::by(agent())).await?;
    }
    for i in 0..REQUESTS {
        let draft = RequestDraft {
            request_id: Uuid::now_v7(),
            customer_id: customers[i % CUSTOMERS].0,
            request_type: RequestType::Complaint,
            category: Category::parse("category", "物流/破损")?,
            priority: Priority::Normal,
            channel: Channel::Phone,
            subject: Subject::parse("subject", &format!("Parcel {i} arrived damaged"))?,
            description: None,
            taken_by: None,
            department: None,
            on_site_required: false,
            external_ref: None,
            tags: vec![],
            origin: None,
        };
        service.open_request(draft, CommandMeta::by(agent())).await?;
    }
    for (i, (customer, _)) in customers.iter().enumerate() {
        for n in 0..(i % 4) {
            let mut log = interactions::log_phone_call();
            log.interaction_id = Uuid::now_v7();
            log.customer_id = *customer;
            log.channel = if n % 2 == 0 { Channel::Phone } else { Channel::Email };
            service.interaction(InteractionCommand::Log(log), CommandMeta::by(agent())).await?;
        }
    }
    let template = templates::TEMPLATE_ID;
    let define = SurveyTemplateCommand::Define { template_id: template, content: templates::after_service() };
    service.survey_template(template, define, CommandMeta::by(agent())).await?;
    service.survey_template(template, SurveyTemplateCommand::Publish { version: 1 }, CommandMeta::by(agent())).await?;
    for (i, (customer, _)) in customers.iter().enumerate().filter(|(i, _)| i % 2 == 0) {
        let survey_id = Uuid::now_v7();
        let draft = SurveyDraft {
            survey_id: Some(survey_id),
            template_id: template,
            template_version: None,
            customer_id: *customer,
            request_id: None,
            department: None,
            trigger: SurveyTrigger::Campaign,
            campaign: Some(Label::parse("campaign", "2026Q4")?),
            policy_id: None,
            channel: Some(Channel::Email),
            expires_after_hours: 72,
            remind_after_hours: vec![],
            follow_up: None,
            require_consent: false,
        };
        service.send_survey(draft, CommandMeta::by(agent())).await?;
        if i % 4 == 0 {
            service.record_survey_response(survey_id, surveys::happy(), true, None, CommandMeta::by(agent())).await?;
        }
    }
    let events = store.read_after(0, 100_000).await?;
    let projections: [&dyn Projection; 3] = [&Customer360, &ServiceRequests, &Satisfaction];
    for p in projections {
        let generation = registry::create(&db.pool, p, "reads-test", Status::Active).await?;
        apply_batch(&db.pool, p, &generation, &records(&events)).await?;
    }
    let config = GatewayConfig {
        listen: SocketAddr::from(([127, 0, 0, 1], 0)),
        auth: AuthConfig::Development(agent()),
        max_wait: Duration::from_secs(5),
        topic: "reads-test".into(),
    };
    let gateway = Gateway::bind(config, db.pool.clone()).await?;
    let url = format!("http://{}/graphql", gateway.local_addr()?);
    tokio::spawn(gateway.serve(std::future::pending()));
    Ok(Desk { db, events, customers, url, client: reqwest::Client::new() })
}

fn records(events: &[RecordedEvent]) -> Vec<Record> {
    let contract = Contract::get();
    events
        .iter()
        .enumerate()
        .map(|(i, e)| Record { partition: 0, offset: i as i64, payload: contract.encode(e).unwrap() })
        .collect()
}

impl Desk {
    /// Runs a query; returns its data and the SQL statements it cost.
    async fn query(&self, query: &str, variables: Value) -> anyhow::Result<(Value, usize)> {
        let correlation = Uuid::now_v7().to_string();
        let body: Value = self
            .client
            .post(&self.url)
            .header("x-correlation-id", &correlation)
            .json(&json!({"query": query, "variables": variables}))
            .send()
            .await?
            .json()
            .await?;
        anyhow::ensure!(body.get("errors").is_none(), "query failed: {body:#}");
        let statements = counts().lock().unwrap().get(&correlation).copied().unwrap_or(0);
        Ok((body["data"].clone(), statements))
    }
}

const BACKLOG: &str = "query($first: Int!) { complaintBacklog(first: $first) { \
    edges { node { subject customer { customerId name interactionCount } } } } }";

/// A page that shows fields only the requests' aggregates hold (one through a fragment).
const BACKLOG_WITH_CLOCKS: &str = "query($first: Int!) { complaintBacklog(first: $first) { \
    edges { node { subject slaState nextDeadline { dueAt state } ...Terms customer { name } } } } }
    fragment Terms on ServiceRequest { sla { policyName } tags }";

const BACKLOG_WITH_TOTALS: &str = "query($first: Int!) { complaintBacklog(first: $first) { totalCount \
    countsByState { state count } edges { node { subject customer { name } } } } }";

const CUSTOMER_360: &str = "query($id: ID!) { customer(id: $id) { name interactionCount \
    serviceRequests(first: 10) { edges { node { state subject customer { name } } } } } }";

const CUSTOMERS_WITH_THEIR_LISTS: &str = "query($first: Int!) { customers(first: $first) { edges { node { \
    customerId ...Lists } } } }
    fragment Lists on Customer { contactsByChannel { channel count } interactions(first: 2) { edges { node { \
    interactionId customerId } } } surveys(first: 3) { surveyId state } satisfaction { surveyId overall } }";

const ONE_CUSTOMER_WITH_THEIR_LISTS: &str = "query($id: ID!) { customer(id: $id) { customerId ...Lists } }
    fragment Lists on Customer { contactsByChannel { channel count } interactions(first: 2) { edges { node { \
    interactionId customerId } } } surveys(first: 3) { surveyId state } satisfaction { surveyId overall } }";

const CUSTOMERS_WITH_REQUESTS: &str = "query($first: Int!) { customers(first: $first) { edges { node { \
    customerId name serviceRequests(first: 3) { edges { node { subject customer { customerId } } } } } } } }";

// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn a_page_of_requests_with_their_customers_costs_the_same_few_statements_at_any_size() -> anyhow::Result<()> {
    let desk = desk().await?;
    let names: HashMap<String, &str> = desk.customers.iter().map(|(id, n)| (id.to_string(), n.as_str())).collect();
    // The first requests of a fresh gateway open its read connections; not what is measured.
    futures::future::try_join_all((0..4).map(|_| desk.query(BACKLOG_WITH_TOTALS, json!({"first": 1})))).await?;

    let mut costs = Vec::new();
    for first in [5, 20, 100] {
        let (data, statements) = desk.query(BACKLOG, json!({"first": first})).await?;
        let edges = data["complaintBacklog"]["edges"].as_array().unwrap();
        assert_eq!(edges.len(), first);
        for e in edges {
            let customer = &e["node"]["customer"];
            let id = customer["customerId"].as_str().unwrap();
            assert_eq!(customer["name"], names[id], "each request shows its own customer");
        }
        costs.push((first, statements));
    }
    // One statement for the page, one for all its customers.
    for (first, statements) in &costs {
        assert_eq!(*statements, 2, "a page of {first} requests with their customers: {costs:?}");
    }

    // Fields of the aggregates come with the page (none read again per request).
    let (plain, _) = desk.query(BACKLOG, json!({"first": 20})).await?;
    let (data, statements) = desk.query(BACKLOG_WITH_CLOCKS, json!({"first": 20})).await?;
    let edges = data["complaintBacklog"]["edges"].as_array().unwrap();
    let subjects = |d: &Value| -> Vec<Value> {
        d["complaintBacklog"]["edges"].as_array().unwrap().iter().map(|e| e["node"]["subject"].clone()).collect()
    };
    assert_eq!(subjects(&data), subjects(&plain), "the same page whichever fields it shows");
    assert!(edges.iter().all(|e| e["node"]["sla"]["policyName"].is_string() && e["node"]["slaState"] == "OK"));
    assert!(edges.iter().all(|e| e["node"]["nextDeadline"]["state"] == "OK"), "{edges:?}");
    assert_eq!(statements, 2, "a page showing its requests' clocks and terms");

    // Totals cost one statement more, only when asked for.
    let (data, statements) = desk.query(BACKLOG_WITH_TOTALS, json!({"first": 100})).await?;
    assert_eq!(data["complaintBacklog"]["totalCount"], REQUESTS);
    assert_eq!(statements, 3, "the page, its customers and the totals");
    let by_state = data["complaintBacklog"]["countsByState"].as_array().unwrap();
    assert_eq!(by_state.len(), 1, "{by_state:?}");
    assert_eq!(by_state[0]["count"], REQUESTS);

    // The customer 360 with the customer's requests.
    let (id, name) = &desk.customers[3];
    let (data, statements) = desk.query(CUSTOMER_360, json!({"id": id})).await?;
    let c = &data["customer"];
    assert_eq!(c["name"], name.as_str());
    let edges = c["serviceRequests"]["edges"].as_array().unwrap();
    let theirs = (0..REQUESTS).filter(|i| i % CUSTOMERS == 3).count();
    assert_eq!(edges.len(), theirs.min(10));
    assert!(edges.iter().all(|e| e["node"]["customer"]["name"] == name.as_str()));
    assert_eq!(statements, 3, "the customer, their requests, the requests' customer");

    // A page of customers, each with their newest requests and those requests' customer.
    for first in [5, CUSTOMERS] {
        let (data, statements) = desk.query(CUSTOMERS_WITH_REQUESTS, json!({"first": first})).await?;
        let edges = data["customers"]["edges"].as_array().unwrap();
        assert_eq!(edges.len(), first);
        for e in edges {
            let id = e["node"]["customerId"].as_str().unwrap();
            let theirs = e["node"]["serviceRequests"]["edges"].as_array().unwrap();
            assert_eq!(theirs.len(), 3, "every customer has at least 3 requests");
            assert!(theirs.iter().all(|r| r["node"]["customer"]["customerId"] == id), "their own requests");
        }
        assert_eq!(statements, 3, "{first} customers, their requests, the requests' customers");
    }
    Ok(())
}

#[tokio::test]
async fn a_page_of_customers_with_their_contacts_and_surveys_costs_the_same_few_statements_at_any_size()
-> anyhow::Result<()> {
    let desk = desk().await?;
    futures::future::try_join_all((0..4).map(|_| desk.query(CUSTOMERS_WITH_THEIR_LISTS, json!({"first": 1})))).await?;
    // Each customer alone: what the page must show for them.
    let mut alone = HashMap::new();
    for (id, _) in &desk.customers {
        let (data, _) = desk.query(ONE_CUSTOMER_WITH_THEIR_LISTS, json!({"id": id})).await?;
        alone.insert(id.to_string(), data["customer"].clone());
    }
    let answered = alone.values().filter(|c| !c["satisfaction"].as_array().unwrap().is_empty()).count();
    let surveyed = alone.values().filter(|c| !c["surveys"].as_array().unwrap().is_empty()).count();
    let contacted = alone.values().filter(|c| !c["interactions"]["edges"].as_array().unwrap().is_empty()).count();
    assert_eq!((answered, surveyed, contacted), (7, 13, 18), "the desk's data");

    for first in [5, CUSTOMERS] {
        let (data, statements) = desk.query(CUSTOMERS_WITH_THEIR_LISTS, json!({"first": first})).await?;
        let edges = data["customers"]["edges"].as_array().unwrap();
        assert_eq!(edges.len(), first);
        for e in edges {
            let id = e["node"]["customerId"].as_str().unwrap();
            assert_eq!(e["node"], alone[id], "customer {id} in a page shows what they show alone");
        }
        // The page; then for all its customers at once: contacts per channel, timelines,
        // surveys, those surveys' answers and templates, trajectories.
        assert_eq!(statements, 7, "{first} customers with their lists");
    }
    Ok(())
}

#[tokio::test]
async fn reads_follow_a_switched_generation_at_once() -> anyhow::Result<()> {
    let desk = desk().await?;
    let (late, _) = desk.customers[CUSTOMERS - 1];
    // Several read connections open, all on the active generation.
    let now = futures::future::try_join_all((0..12).map(|_| desk.query(CUSTOMER_360, json!({"id": late})))).await?;
    assert!(now.iter().all(|(d, _)| d["customer"].is_object()), "the last customer is in the active generation");

    // A new generation built from the log without the last customer's registration (as if the
    // rules had changed), switched in while the gateway holds open read connections.
    let without: Vec<RecordedEvent> = desk.events.iter().filter(|e| e.stream_id != late).cloned().collect();
    let next = registry::create(&desk.db.pool, &Customer360, "reads-test", Status::Building).await?;
    apply_batch(&desk.db.pool, &Customer360, &next, &records(&without)).await?;
    registry::activate(&desk.db.pool, "customer360", next.generation).await?;

    kefu_testkit::eventually(Duration::from_secs(10), "reads see the new generation", || async {
        let (data, _) = desk.query(CUSTOMER_360, json!({"id": late})).await?;
        Ok(data["customer"].is_null().then_some(()))
    })
    .await?;
    // And they stay on it: every pooled connection reads the new generation.
    for _ in 0..3 {
        let late_now = futures::future::try_join_all((0..12).map(|_| desk.query(CUSTOMER_360, json!({"id": late}))));
        let first_now = futures::future::try_join_all(
            (0..12).map(|_| desk.query(CUSTOMER_360, json!({"id": desk.customers[0].0}))),
        );
        let (late_now, first_now) = futures::future::try_join(late_now, first_now).await?;
        assert!(late_now.iter().all(|(d, _)| d["customer"].is_null()));
        assert!(first_now.iter().all(|(d, _)| d["customer"]["name"] == desk.customers[0].1.as_str()));
    }
    Ok(())
}
