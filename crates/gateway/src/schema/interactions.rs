//! Interactions (联系记录): logging contacts and reading them back.

use async_graphql::{ComplexObject, Context, ID, InputObject, Object, Result, SimpleObject};
use chrono::{DateTime, Utc};
use kefu_domain::{
    interaction::{FollowUpAction as DomainFollowUp, InteractionCommand, LogInteraction},
    values::{StaffId, StaffRef, Text},
    vocab,
};
use kefu_projections::customer360::{self, InteractionView};
use uuid::Uuid;

use super::{
    common::{self, CommandOptions, CommandOutcome, GlobalPosition, Staff, StaffInput},
    customers::{self, Customer},
    vocab::*,
};
use crate::errors::{self, Validator};

/// A contact with a customer.
pub struct Interaction(pub InteractionView);

/// A follow-up action agreed during a contact (后续作业).
#[derive(SimpleObject, Clone)]
pub struct FollowUpAction {
    /// What is to be done.
    pub description: String,
    /// By when.
    pub due_at: Option<DateTime<Utc>>,
    /// By whom.
    pub owner: Option<Staff>,
}

#[Object]
impl Interaction {
    /// Global id (`Interaction:<uuid>`).
    pub async fn id(&self) -> ID {
        common::global_id("Interaction", self.0.interaction_id)
    }

    /// The interaction's UUID.
    async fn interaction_id(&self) -> Uuid {
        self.0.interaction_id
    }

    /// The customer contacted.
    async fn customer(&self, ctx: &Context<'_>) -> Result<Option<Customer>> {
        customers::load(ctx, self.0.customer_id).await
    }

    /// The customer's UUID.
    async fn customer_id(&self) -> Uuid {
        self.0.customer_id
    }

    /// When it happened (business time).
    async fn occurred_at(&self) -> DateTime<Utc> {
        self.0.occurred_at
    }

    /// When kefu recorded it.
    async fn recorded_at(&self) -> DateTime<Utc> {
        self.0.recorded_at
    }

    /// Channel.
    async fn channel(&self) -> Option<Channel> {
        from_short::<vocab::Channel, _>(&self.0.channel)
    }

    /// Inbound or outbound.
    async fn direction(&self) -> Option<Direction> {
        from_short::<vocab::Direction, _>(&self.0.direction)
    }

    /// Who started it.
    async fn initiator(&self) -> Option<Initiator> {
        from_short::<vocab::Initiator, _>(&self.0.initiator)
    }

    /// Staff or self-service.
    async fn mode(&self) -> Option<ServiceMode> {
        from_short::<vocab::ServiceMode, _>(&self.0.mode)
    }

    /// Who handled it.
    async fn handled_by(&self) -> Option<Staff> {
        self.0.handled_by_id.as_ref().map(|id| Staff { id: id.clone(), name: self.0.handled_by_name.clone() })
    }

    /// What it was about.
    async fn summary(&self) -> &str {
        &self.0.summary
    }

    /// Tasks handed over to others (交办事项).
    async fn tasks_handed_over(&self) -> &[String] {
        &self.0.tasks_handed_over
    }

    /// Follow-up actions (后续作业).
    async fn follow_up_actions(&self) -> Vec<FollowUpAction> {
        self.0
            .follow_up_actions
            .iter()
            .map(|f| FollowUpAction {
                description: f.description.as_str().to_string(),
                due_at: f.due_at,
                owner: f.owner.as_ref().map(Staff::from),
            })
            .collect()
    }

    /// Settled in this contact, without a transfer.
    async fn resolved_at_first_contact(&self) -> bool {
        self.0.resolved_at_first_contact
    }

    /// Length in seconds.
    async fn duration_seconds(&self) -> Option<i32> {
        self.0.duration_seconds
    }

    /// The service request it belongs to.
    async fn service_request_id(&self) -> Option<Uuid> {
        self.0.service_request_id
    }

    /// Who recorded it (the acting user).
    async fn recorded_by(&self) -> &str {
        &self.0.recorded_by
    }
}

/// Loads an interaction from the read model.
pub async fn load(ctx: &Context<'_>, id: Uuid) -> Result<Option<Interaction>> {
    let mut tx = customers::read(ctx).await?;
    Ok(customer360::interaction(&mut tx, id).await.map_err(errors::projection)?.map(Interaction))
}

/// Interaction queries.
#[derive(Default)]
pub struct InteractionQuery;

#[Object]
impl InteractionQuery {
    /// One interaction; `null` when there is none with this id.
    async fn interaction(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "`Interaction:<uuid>` or the bare UUID.")] id: ID,
        #[graphql(desc = "Wait (bounded) until the view reflects this position.")] min_position: Option<GlobalPosition>,
    ) -> Result<Option<Interaction>> {
        common::actor(ctx)?;
        let id = common::parse_id("Interaction", "id", &id).map_err(|e| errors::domain(e, ""))?;
        common::wait_for(ctx, customer360::NAME, min_position).await?;
        load(ctx, id).await
    }
}

/// A follow-up action.
#[derive(InputObject, Clone)]
pub struct FollowUpActionInput {
    /// What is to be done.
    pub description: String,
    /// By when.
    pub due_at: Option<DateTime<Utc>>,
    /// By whom.
    pub owner: Option<StaffInput>,
}

/// Record a contact with a customer.
#[derive(InputObject)]
pub struct LogInteractionInput {
    /// The interaction's id; derived from `commandId` or new when absent.
    pub interaction_id: Option<Uuid>,
    /// Who was contacted or made contact.
    pub customer_id: ID,
    /// Through which channel.
    pub channel: Channel,
    /// Inbound (the customer reached us) or outbound.
    pub direction: Direction,
    /// Who started it; defaults to the customer for inbound and the company for outbound.
    pub initiator: Option<Initiator>,
    /// Staff or self-service.
    #[graphql(default_with = "ServiceMode::Staff")]
    pub mode: ServiceMode,
    /// Who handled it; defaults to you for staff contacts.
    pub handled_by: Option<StaffInput>,
    /// What it was about.
    pub summary: String,
    /// Tasks handed over to others (交办事项).
    #[graphql(default)]
    pub tasks_handed_over: Vec<String>,
    /// Follow-up actions (后续作业).
    #[graphql(default)]
    pub follow_up_actions: Vec<FollowUpActionInput>,
    /// Settled in this contact, without a transfer.
    #[graphql(default)]
    pub resolved_at_first_contact: bool,
    /// Length in seconds.
    pub duration_seconds: Option<i32>,
    /// The service request this contact belongs to.
    pub service_request_id: Option<Uuid>,
    /// Retry and concurrency controls, and `occurredAt` for contacts in the past.
    #[graphql(flatten)]
    pub options: CommandOptions,
}

/// What `logInteraction` did.
#[derive(SimpleObject)]
#[graphql(complex)]
pub struct InteractionPayload {
    /// The command's outcome.
    #[graphql(flatten)]
    pub outcome: CommandOutcome,
    /// The interaction.
    pub interaction_id: Uuid,
    /// The customer.
    pub customer_id: Uuid,
}

#[ComplexObject]
impl InteractionPayload {
    /// The interaction as the timeline shows it once recorded there (waits, bounded).
    async fn interaction(&self, ctx: &Context<'_>) -> Result<Option<Interaction>> {
        common::wait_for(ctx, customer360::NAME, self.outcome.global_position).await?;
        load(ctx, self.interaction_id).await
    }

    /// The customer's 360 view including this contact (waits, bounded).
    async fn customer(&self, ctx: &Context<'_>) -> Result<Option<Customer>> {
        common::wait_for(ctx, customer360::NAME, self.outcome.global_position).await?;
        customers::load(ctx, self.customer_id).await
    }
}

/// Interaction commands.
#[derive(Default)]
pub struct InteractionMutation;

#[Object]
impl InteractionMutation {
    /// Record a contact with a customer (联系记录). `occurredAt` may be in the past (imports).
    async fn log_interaction(&self, ctx: &Context<'_>, input: LogInteractionInput) -> Result<InteractionPayload> {
        let meta = common::meta(ctx, &input.options)?;
        let customer_id =
            common::parse_id("Customer", "input.customerId", &input.customer_id).map_err(|e| errors::domain(e, ""))?;
        let interaction_id = input.interaction_id.unwrap_or_else(|| meta.new_entity_id("interaction"));
        let mut v = Validator::default();
        let summary = v.check("input", Text::parse("summary", &input.summary));
        let mut tasks = Vec::new();
        for (i, t) in input.tasks_handed_over.iter().enumerate() {
            if let Some(t) = v.check("input", Text::parse(&format!("tasksHandedOver[{i}]"), t)) {
                tasks.push(t);
            }
        }
        let mut follow_ups = Vec::new();
        for (i, f) in input.follow_up_actions.iter().enumerate() {
            let p = format!("input.followUpActions[{i}]");
            let description = v.check(&p, Text::parse("description", &f.description));
            let owner = match &f.owner {
                None => Some(None),
                Some(o) => o.parse(&format!("{p}.owner"), &mut v).map(Some),
            };
            if let (Some(description), Some(owner)) = (description, owner) {
                follow_ups.push(DomainFollowUp { description, due_at: f.due_at, owner });
            }
        }
        let mode: vocab::ServiceMode = input.mode.into();
        let handled_by = match (&input.handled_by, mode) {
            (Some(h), _) => h.parse("input.handledBy", &mut v),
            (None, vocab::ServiceMode::Staff) => {
                // The agent logging the call handled it, unless they say otherwise.
                let actor = common::writer(ctx)?;
                v.check("input", StaffId::parse("handledBy", &actor.id)).map(|id| StaffRef {
                    id,
                    name: actor.name.as_deref().and_then(|n| kefu_domain::values::Name::parse("name", n).ok()),
                })
            }
            (None, vocab::ServiceMode::SelfService) => None,
        };
        let duration = match input.duration_seconds {
            None => None,
            Some(d) if d > 0 => Some(d as u32),
            Some(_) => {
                v.fail("input.durationSeconds", "must be positive");
                None
            }
        };
        v.finish()?;
        let Some(summary) = summary else {
            return Err(errors::internal("validated input lost a value"));
        };
        let direction: vocab::Direction = input.direction.into();
        let initiator = input.initiator.map(Into::into).unwrap_or(match direction {
            vocab::Direction::Inbound => vocab::Initiator::Customer,
            vocab::Direction::Outbound => vocab::Initiator::Company,
        });
        let command = LogInteraction {
            interaction_id,
            customer_id,
            channel: input.channel.into(),
            direction,
            initiator,
            mode,
            handled_by,
            summary,
            tasks_handed_over: tasks,
            follow_up_actions: follow_ups,
            resolved_at_first_contact: input.resolved_at_first_contact,
            duration_seconds: duration,
            service_request_id: input.service_request_id,
        };
        let outcome = common::state(ctx)
            .commands
            .interaction(InteractionCommand::Log(command), meta.clone())
            .await
            .map_err(|e| errors::app(e, "input"))?;
        Ok(InteractionPayload {
            outcome: CommandOutcome::new(meta.command_id.unwrap_or_default(), &outcome),
            interaction_id,
            customer_id,
        })
    }
}
