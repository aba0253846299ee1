//! Operations: who am I, how far the projections are, the Node interface.

use async_graphql::{Context, ID, Interface, Object, Result, SimpleObject};
use chrono::{DateTime, Utc};
use kefu_projections::progress;
use uuid::Uuid;

use super::{
    common::{self, GlobalPosition},
    customers::{self, Customer},
    interactions::{self, Interaction},
    requests::{self, ServiceRequest},
};
use crate::errors;

/// Anything with a global id.
#[derive(Interface)]
#[allow(clippy::large_enum_variant)] // built once per `node` query; boxing buys nothing
#[graphql(field(name = "id", ty = "ID", desc = "Global id: `Kind:<uuid>`."))]
pub enum Node {
    /// A customer.
    Customer(Customer),
    /// An interaction.
    Interaction(Interaction),
    /// A service request or complaint.
    ServiceRequest(ServiceRequest),
}

/// The caller as kefu sees them.
#[derive(SimpleObject)]
pub struct Me {
    /// Id (token subject).
    pub id: String,
    /// Name.
    pub name: Option<String>,
    /// Roles.
    pub roles: Vec<String>,
}

/// A stream a projection stopped applying because one of its events failed.
#[derive(SimpleObject)]
pub struct DeadLetter {
    /// The stream.
    pub stream_id: Uuid,
    /// Its type.
    pub stream_type: String,
    /// The event that failed.
    pub event_type: String,
    /// Its global position.
    pub global_position: GlobalPosition,
    /// Why it failed.
    pub reason: String,
    /// Later events of the stream skipped since.
    pub skipped_events: i32,
    /// When it was parked.
    pub parked_at: DateTime<Utc>,
}

/// A read model's state.
#[derive(SimpleObject)]
pub struct ProjectionStatus {
    /// Name, e.g. `customer360`.
    pub name: String,
    /// Generation number (a rebuild makes a new one).
    pub generation: i32,
    /// `active` (serving queries) or `building` (a rebuild in progress).
    pub status: String,
    /// Every event up to this position is applied.
    pub applied_through: GlobalPosition,
    /// Events published to Kafka but not yet applied.
    pub lag_events: i64,
    /// Age in seconds of the oldest event not yet known to be applied (0 when caught up).
    pub lag_seconds: f64,
    /// Records consumed so far.
    pub records_consumed: i64,
    /// Streams parked after a failed event.
    pub dead_letters: Vec<DeadLetter>,
}

/// Operational queries.
#[derive(Default)]
pub struct OpsQuery;

#[Object]
impl OpsQuery {
    /// Anything by its global id.
    async fn node(&self, ctx: &Context<'_>, id: ID) -> Result<Option<Node>> {
        common::actor(ctx)?;
        let (kind, uuid) = common::parse_global_id(&id)?;
        match kind {
            "Customer" => Ok(customers::load(ctx, uuid).await?.map(Node::Customer)),
            "Interaction" => Ok(interactions::load(ctx, uuid).await?.map(Node::Interaction)),
            "ServiceRequest" => Ok(requests::load(ctx, uuid).await?.map(Node::ServiceRequest)),
            other => Err(errors::invalid("id", format!("kefu has no nodes of kind `{other}`"))),
        }
    }

    /// The caller.
    async fn me(&self, ctx: &Context<'_>) -> Result<Me> {
        let actor = common::actor(ctx)?;
        Ok(Me { id: actor.id.clone(), name: actor.name.clone(), roles: actor.roles.clone() })
    }

    /// Every read model being served or built: position, lag and parked streams.
    async fn projections(&self, ctx: &Context<'_>) -> Result<Vec<ProjectionStatus>> {
        common::actor(ctx)?;
        let list = progress::status(&common::state(ctx).pool).await.map_err(errors::projection)?;
        Ok(list
            .into_iter()
            .map(|s| ProjectionStatus {
                name: s.generation.name,
                generation: s.generation.generation,
                status: s.generation.status.to_string(),
                applied_through: GlobalPosition(s.progress.applied_through),
                lag_events: s.progress.lag_events,
                lag_seconds: s.progress.lag_seconds,
                records_consumed: s.progress.records_consumed,
                dead_letters: s
                    .dead_letters
                    .into_iter()
                    .map(|d| DeadLetter {
                        stream_id: d.stream_id,
                        stream_type: d.stream_type,
                        event_type: d.event_type,
                        global_position: GlobalPosition(d.global_position),
                        reason: d.reason,
                        skipped_events: d.skipped_events,
                        parked_at: d.parked_at,
                    })
                    .collect(),
            })
            .collect())
    }
}
