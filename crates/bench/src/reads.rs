//! Reads for agent desktops (`kefu-bench reads`): the customer 360 and the complaint backlog
//! through GraphQL against a running gateway, and the same data read with plain SQL from this
//! process on the same database, interleaved, at several client counts.
//!
//! The data is filed through the gateway first (customers, each with a few complaints), and
//! the run waits until both read models show it. Then, for each client count, four runs of
//! `--seconds` each: the 360 through GraphQL, the 360 in SQL, the backlog through GraphQL, the
//! backlog in SQL. One JSON line per run.

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use anyhow::{Context, Result, ensure};
use serde_json::{Value, json};
use sqlx::{PgPool, Row};
use uuid::Uuid;

use crate::{peers::Gateway, usage};

/// Settings of the reads scenario.
#[derive(clap::Args, Debug)]
pub struct ReadsArgs {
    /// The gateway's GraphQL endpoint.
    #[arg(long)]
    url: String,
    /// The gateway's database (for the plain-SQL baseline).
    #[arg(long, env = "DATABASE_URL")]
    database_url: String,
    /// Customers filed before the runs.
    #[arg(long, default_value_t = 300)]
    customers: usize,
    /// Complaints per customer.
    #[arg(long, default_value_t = 4)]
    requests_per_customer: usize,
    /// Client counts, comma-separated.
    #[arg(long, default_value = "1,50,200", value_delimiter = ',')]
    clients: Vec<usize>,
    /// Length of each run.
    #[arg(long, default_value_t = 5)]
    seconds: u64,
    /// Connections of the plain-SQL baseline's pool.
    #[arg(long, default_value_t = 20)]
    sql_connections: u32,
    /// PostgreSQL's postmaster, to report its CPU time.
    #[arg(long)]
    postgres_pid: Option<u32>,
    /// The gateway's process, to report its CPU time.
    #[arg(long)]
    gateway_pid: Option<u32>,
}

const REGISTER: &str = "mutation($id: ID!, $name: String!) { registerCustomer(input: { commandId: $id, kind: PERSON, \
     name: $name, contacts: { phone: \"138 0013 8000\" } }) { customerId globalPosition } }";
const FILE: &str = "mutation($cmd: ID!, $customer: ID!, $priority: Priority!) { openServiceRequest(input: { \
     commandId: $cmd, customerId: $customer, requestType: COMPLAINT, category: \"物流/破损\", priority: $priority, \
     channel: PHONE, subject: \"Parcel arrived damaged\" }) { requestId globalPosition } }";

/// The customer 360 read.
const CUSTOMER_360: &str = "query($id: ID!) { customer(id: $id) { name interactionCount \
     serviceRequests(first: 10) { edges { node { state subject } } } } }";
/// The complaint backlog's first page: complaints, nearest deadline first, with their customers.
const BACKLOG: &str = "{ complaintBacklog(first: 20, orderBy: NEXT_DEADLINE, filter: { requestTypes: [COMPLAINT] }) \
     { edges { node { requestId subject state priority nextDeadline { dueAt } customer { name } } } } }";
const WAIT: &str = "query($id: ID!, $at: GlobalPosition!) { customer(id: $id, minPosition: $at) { name } \
     complaintBacklog(first: 1, minPosition: $at) { edges { node { requestId } } } }";

#[derive(Clone, Copy, Debug)]
enum Read {
    Customer360,
    Backlog,
}

impl Read {
    fn name(self) -> &'static str {
        match self {
            Read::Customer360 => "customer 360",
            Read::Backlog => "complaint backlog (20 with customers)",
        }
    }
}

/// Files the data; returns the customers' ids.
async fn seed(gateway: &Gateway, args: &ReadsArgs) -> Result<Arc<Vec<String>>> {
    let run = Uuid::now_v7();
    let tasks: Vec<_> = (0..32)
        .map(|t| {
            let gateway = gateway.clone();
            let (n, per) = (args.customers, args.requests_per_customer);
            tokio::spawn(async move {
                let mut ids = Vec::new();
                let mut last = Value::Null;
                for i in (t..n).step_by(32) {
                    let cmd = Uuid::new_v5(&run, format!("register-{i}").as_bytes());
                    let data = gateway.send(REGISTER, json!({"id": cmd, "name": format!("客户{i:04}")})).await?;
                    let id = data["registerCustomer"]["customerId"].as_str().context("no customerId")?.to_string();
                    for r in 0..per {
                        let cmd = Uuid::new_v5(&run, format!("file-{i}-{r}").as_bytes());
                        let priority = ["LOW", "NORMAL", "HIGH", "URGENT"][(i + r) % 4];
                        let data =
                            gateway.send(FILE, json!({"cmd": cmd, "customer": id, "priority": priority})).await?;
                        last = data["openServiceRequest"]["globalPosition"].clone();
                    }
                    ids.push(id);
                }
                anyhow::Ok((ids, last))
            })
        })
        .collect();
    let mut ids = Vec::new();
    let mut positions = Vec::new();
    for t in tasks {
        let (mine, last) = t.await??;
        ids.extend(mine);
        positions.push(last);
    }
    ensure!(!ids.is_empty(), "no customers filed");
    // Wait until both read models show everything filed.
    let max = positions.iter().filter_map(|p| p.as_str().and_then(|s| s.parse::<i64>().ok()).or(p.as_i64())).max();
    if let Some(at) = max {
        gateway
            .send_until(WAIT, json!({"id": ids[0], "at": at.to_string()}), Instant::now() + Duration::from_secs(120))
            .await
            .context("the read models did not catch up within 120 s")?;
    }
    Ok(Arc::new(ids))
}

/// The active schema of a read model.
async fn schema_of(pool: &PgPool, name: &str) -> Result<String> {
    let schema: String =
        sqlx::query_scalar("SELECT schema_name FROM projections.generations WHERE name = $1 AND status = 'active'")
            .bind(name)
            .fetch_one(pool)
            .await
            .with_context(|| format!("no active generation of {name}"))?;
    ensure!(schema.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'), "odd schema name {schema}");
    Ok(schema)
}

/// The same data as the GraphQL reads, in plain SQL (only the columns asked for).
struct Baseline {
    pool: PgPool,
    customer: String,
    requests_of_customer: String,
    backlog: String,
    customers_by_id: String,
}

impl Baseline {
    async fn new(args: &ReadsArgs) -> Result<Self> {
        let pool = sqlx::postgres::PgPoolOptions::new()
            .max_connections(args.sql_connections)
            .connect(&args.database_url)
            .await
            .context("the plain-SQL baseline cannot reach the database")?;
        let c = schema_of(&pool, "customer360").await?;
        let r = schema_of(&pool, "service_requests").await?;
        // Statistics for the rows just filed, so both systems are planned on them: autovacuum
        // may not have analysed the tables yet (the likely cause of one run measuring the
        // baseline's backlog at a third of the next run's rate).
        sqlx::raw_sql(sqlx::AssertSqlSafe(format!("ANALYZE {c}.customers, {r}.requests")))
            .execute(&pool)
            .await
            .context("ANALYZE of the read models")?;
        Ok(Baseline {
            customer: format!("SELECT name, interaction_count FROM {c}.customers WHERE customer_id = $1"),
            requests_of_customer: format!(
                "SELECT state, subject FROM {r}.requests WHERE customer_id = $1 ORDER BY filed_at DESC, request_id DESC LIMIT 11"
            ),
            backlog: format!(
                "SELECT request_id, subject, state, priority, next_due_at, customer_id FROM {r}.requests \
                 WHERE live AND request_type = ANY($1) \
                 ORDER BY COALESCE(next_due_at, '9999-12-31T00:00:00Z'::timestamptz), request_id LIMIT 21"
            ),
            customers_by_id: format!("SELECT customer_id, name FROM {c}.customers WHERE customer_id = ANY($1)"),
            pool,
        })
    }

    async fn read(&self, read: Read, customer: &str) -> Result<usize> {
        match read {
            Read::Customer360 => {
                let id: Uuid = customer.parse()?;
                let row =
                    sqlx::query(sqlx::AssertSqlSafe(self.customer.as_str())).bind(id).fetch_one(&self.pool).await?;
                let _: String = row.try_get("name")?;
                let requests = sqlx::query(sqlx::AssertSqlSafe(self.requests_of_customer.as_str()))
                    .bind(id)
                    .fetch_all(&self.pool)
                    .await?;
                Ok(requests.len())
            }
            Read::Backlog => {
                let rows = sqlx::query(sqlx::AssertSqlSafe(self.backlog.as_str()))
                    .bind(vec!["COMPLAINT".to_string()])
                    .fetch_all(&self.pool)
                    .await?;
                let ids: Vec<Uuid> = rows.iter().map(|r| r.try_get("customer_id")).collect::<Result<_, _>>()?;
                let customers = sqlx::query(sqlx::AssertSqlSafe(self.customers_by_id.as_str()))
                    .bind(&ids)
                    .fetch_all(&self.pool)
                    .await?;
                ensure!(!customers.is_empty(), "no customers");
                Ok(rows.len())
            }
        }
    }
}

async fn graphql_read(gateway: &Gateway, read: Read, customer: &str) -> Result<usize> {
    match read {
        Read::Customer360 => {
            let data = gateway.send(CUSTOMER_360, json!({"id": customer})).await?;
            data["customer"]["serviceRequests"]["edges"].as_array().map(Vec::len).context("no customer")
        }
        Read::Backlog => {
            let data = gateway.send(BACKLOG, json!({})).await?;
            data["complaintBacklog"]["edges"].as_array().map(Vec::len).context("no backlog")
        }
    }
}

/// How: through the gateway or in SQL.
#[derive(Clone)]
enum Via {
    Graphql(Gateway),
    Sql(Arc<Baseline>),
}

/// `clients` clients read for `seconds`; latencies of every read.
async fn run(via: &Via, read: Read, clients: usize, customers: &Arc<Vec<String>>, seconds: u64) -> Result<Value> {
    let started = Instant::now();
    let until = started + Duration::from_secs(seconds);
    let tasks: Vec<_> = (0..clients)
        .map(|c| {
            let via = via.clone();
            let customers = customers.clone();
            tokio::spawn(async move {
                let mut latencies = Vec::new();
                let mut i = c * 7919;
                while Instant::now() < until {
                    let customer = &customers[i % customers.len()];
                    i += 1;
                    let t0 = Instant::now();
                    let n = match &via {
                        Via::Graphql(g) => graphql_read(g, read, customer).await?,
                        Via::Sql(b) => b.read(read, customer).await?,
                    };
                    latencies.push(t0.elapsed());
                    ensure!(n > 0, "an empty answer");
                }
                anyhow::Ok(latencies)
            })
        })
        .collect();
    let mut latencies = Vec::new();
    for t in tasks {
        latencies.extend(t.await??);
    }
    let elapsed = started.elapsed();
    latencies.sort();
    let ms = |p: f64| crate::peers::nearest_rank(&latencies, p).as_secs_f64() * 1e3;
    Ok(json!({
        "queries": latencies.len(),
        "queries_per_s": latencies.len() as f64 / elapsed.as_secs_f64(),
        "p50_ms": ms(0.50),
        "p99_ms": ms(0.99),
    }))
}

/// The scenario.
pub async fn reads(args: &ReadsArgs) -> Result<()> {
    let max_clients = args.clients.iter().copied().max().unwrap_or(1);
    let gateway = Gateway::new(&args.url, max_clients)?;
    let customers = seed(&gateway, args).await?;
    let baseline = Arc::new(Baseline::new(args).await?);
    let watch = usage::Watch { postgres: args.postgres_pid, gateway: args.gateway_pid };
    for &clients in &args.clients {
        for read in [Read::Customer360, Read::Backlog] {
            for (system, via) in
                [("kefu (GraphQL)", Via::Graphql(gateway.clone())), ("plain SQL", Via::Sql(baseline.clone()))]
            {
                let mark = watch.mark();
                let mut figures = run(&via, read, clients, &customers, args.seconds).await?;
                let used = watch.since(mark);
                figures["scenario"] = json!("reads");
                figures["system"] = json!(system);
                figures["read"] = json!(read.name());
                figures["clients"] = json!(clients);
                figures["cpu_s"] = json!(used.cpu_s);
                figures["postgres_cpu_s"] = json!(used.postgres_cpu_s);
                figures["gateway_cpu_s"] = json!(used.gateway_cpu_s);
                println!("{figures}");
            }
        }
    }
    Ok(())
}
