//! # kefu-gateway
//!
//! The GraphQL gateway (async-graphql on axum):
//! - `POST /graphql` executes queries and mutations; `GET /graphql` serves GraphiQL;
//! - `GET /healthz` (the process is up), `GET /readyz` (PostgreSQL reachable and migrated),
//!   `GET /metrics` (Prometheus text: log head, relay and projection lag, dead letters).
//!
//! Layout: [`schema`] (one module per area: customers, interactions, ops), [`auth`] (bearer
//! tokens), [`errors`] (stable error codes); reads and read-your-writes go through
//! [`kefu_projections::ReadModels`]. [`Gateway::bind`]
//! binds its own listener (port 0 in tests) and [`Gateway::serve`] runs until a shutdown
//! future completes, finishing in-flight requests.

use std::{future::Future, net::SocketAddr, sync::Arc, time::Duration};

use async_graphql::http::GraphiQLSource;
use async_graphql_axum::{GraphQLRequest, GraphQLResponse};
use axum::{
    Router,
    extract::State as AxumState,
    http::{HeaderMap, HeaderValue, StatusCode, header},
    response::{Html, IntoResponse, Response},
    routing::get,
};
use kefu_app::CommandService;
use sqlx::PgPool;
use tokio::net::TcpListener;

pub mod auth;
mod documents;
pub mod errors;
mod metrics;
pub mod schema;

use auth::AuthConfig;
use schema::{KefuSchema, common::CorrelationId};

/// Services shared by all resolvers.
#[derive(Clone)]
pub struct State {
    /// Read models and the event store.
    pub pool: PgPool,
    /// The write path.
    pub commands: CommandService,
    /// Reads of the read models, and read-your-writes.
    pub reads: kefu_projections::ReadModels,
    /// Longest wait for `minPosition`.
    pub max_wait: Duration,
}

/// Gateway settings.
#[derive(Debug, Clone)]
pub struct GatewayConfig {
    /// Where to listen.
    pub listen: SocketAddr,
    /// How callers authenticate.
    pub auth: AuthConfig,
    /// Longest a query waits for `minPosition`.
    pub max_wait: Duration,
    /// The event topic (for metrics).
    pub topic: String,
}

#[derive(Clone)]
struct Shared {
    schema: KefuSchema,
    auth: AuthConfig,
    pool: PgPool,
    reads: kefu_projections::ReadModels,
    topic: String,
    documents: Arc<documents::Documents>,
}

/// A bound, not yet serving, gateway.
pub struct Gateway {
    listener: TcpListener,
    router: Router,
}

impl Gateway {
    /// Binds the listener and builds the routes. Migrations must have run.
    pub async fn bind(config: GatewayConfig, pool: PgPool) -> std::io::Result<Self> {
        let commands = CommandService::new(Arc::new(kefu_store::PgEventStore::new(pool.clone())));
        Self::bind_with(config, pool, commands).await
    }

    /// Binds with the process's own command service (its writer and stream cache shared with
    /// whatever else the process runs).
    pub async fn bind_with(config: GatewayConfig, pool: PgPool, commands: CommandService) -> std::io::Result<Self> {
        let reads = kefu_projections::ReadModels::start(pool.clone());
        let state = State { pool: pool.clone(), commands, reads: reads.clone(), max_wait: config.max_wait };
        let shared = Shared {
            reads,
            schema: schema::build(Some(state)),
            auth: config.auth,
            pool,
            topic: config.topic,
            documents: Arc::new(documents::Documents::new(1000, 64 * 1024)),
        };
        let router = Router::new()
            .route("/graphql", get(graphiql).post(graphql))
            .route("/", get(|| async { axum::response::Redirect::temporary("/graphql") }))
            .route("/healthz", get(|| async { "ok" }))
            .route("/readyz", get(readyz))
            .route("/metrics", get(metrics_text))
            .with_state(shared);
        let listener = TcpListener::bind(config.listen).await?;
        Ok(Gateway { listener, router })
    }

    /// The bound address.
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Serves until `shutdown` completes, then lets in-flight requests finish.
    pub async fn serve(self, shutdown: impl Future<Output = ()> + Send + 'static) -> std::io::Result<()> {
        axum::serve(self.listener, self.router).with_graceful_shutdown(shutdown).await
    }
}

async fn graphiql() -> impl IntoResponse {
    Html(GraphiQLSource::build().endpoint("/graphql").title("kefu GraphQL").finish())
}

async fn graphql(AxumState(shared): AxumState<Shared>, headers: HeaderMap, request: GraphQLRequest) -> Response {
    let correlation = headers
        .get("x-correlation-id")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| uuid::Uuid::parse_str(v).ok())
        .unwrap_or_else(uuid::Uuid::now_v7);
    let actor = match auth::authenticate(&shared.auth, &headers) {
        Ok(actor) => actor,
        Err(e) => {
            let body = serde_json::json!({
                "errors": [{"message": e.to_string(), "extensions": {"code": "UNAUTHENTICATED"}}]
            });
            let mut response = (StatusCode::UNAUTHORIZED, axum::Json(body)).into_response();
            response.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer realm=\"kefu\""));
            return response;
        }
    };
    let request = shared.documents.prepare(request.into_inner());
    let operation = request.operation_name.clone().unwrap_or_default();
    let started = std::time::Instant::now();
    let (reads, loaders) = schema::loaders::for_request(&shared.reads);
    let request = request.data(actor.clone()).data(CorrelationId(correlation)).data(reads).data(loaders);
    let span = tracing::info_span!("graphql", operation = %operation, correlation_id = %correlation);
    let mut response = tracing::Instrument::instrument(shared.schema.execute(request), span).await;
    errors::classify_request_errors(&mut response);
    tracing::info!(
        operation = %operation,
        actor = %actor.id,
        correlation_id = %correlation,
        errors = response.errors.len(),
        elapsed_ms = started.elapsed().as_millis() as u64,
        "graphql request"
    );
    let mut http = GraphQLResponse::from(response).into_response();
    if let Ok(v) = HeaderValue::from_str(&correlation.to_string()) {
        http.headers_mut().insert("x-correlation-id", v);
    }
    http
}

async fn readyz(AxumState(shared): AxumState<Shared>) -> Response {
    let check = tokio::time::timeout(
        Duration::from_secs(2),
        sqlx::query_scalar::<_, i64>("SELECT position FROM event_store.log_head").fetch_one(&shared.pool),
    )
    .await;
    match check {
        Ok(Ok(head)) => {
            (StatusCode::OK, axum::Json(serde_json::json!({"status": "ready", "postgres": "ok", "logHead": head})))
                .into_response()
        }
        Ok(Err(e)) => (
            StatusCode::SERVICE_UNAVAILABLE,
            axum::Json(serde_json::json!({"status": "unavailable", "postgres": e.to_string()})),
        )
            .into_response(),
        Err(_) => (
            StatusCode::SERVICE_UNAVAILABLE,
            axum::Json(serde_json::json!({"status": "unavailable", "postgres": "timed out"})),
        )
            .into_response(),
    }
}

async fn metrics_text(AxumState(shared): AxumState<Shared>) -> Response {
    match metrics::render(&shared.pool, &shared.topic).await {
        Ok(text) => ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text).into_response(),
        Err(e) => (StatusCode::SERVICE_UNAVAILABLE, format!("# metrics unavailable: {e}\n")).into_response(),
    }
}
