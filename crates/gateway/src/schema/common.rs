//! Pieces every part of the schema uses: ids, the command options and outcome, staff
//! references, waiting for a position.

use async_graphql::{Context, Error, InputObject, Scalar, ScalarType, SimpleObject, Value};
use chrono::{DateTime, Utc};
use kefu_app::{Actor, AppendOutcome, CommandMeta};
use kefu_domain::{
    DomainError,
    values::{Name, StaffId, StaffRef},
};
use uuid::Uuid;

use crate::{
    State,
    auth::{WRITER_ROLES, has_any_role},
    errors::{self, Validator},
};

/// A position in kefu's global event log: every event has one, dense and in commit order.
/// Mutations return the position of their effect; pass it as `minPosition` to a query to
/// read your own writes. A JSON number (below 2^53).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct GlobalPosition(pub i64);

#[Scalar(name = "GlobalPosition")]
impl ScalarType for GlobalPosition {
    fn parse(value: Value) -> async_graphql::InputValueResult<Self> {
        match &value {
            Value::Number(n) => {
                n.as_i64().filter(|v| *v >= 0).map(GlobalPosition).ok_or_else(|| {
                    async_graphql::InputValueError::custom("a global position is a non-negative integer")
                })
            }
            Value::String(s) => {
                s.parse::<i64>().ok().filter(|v| *v >= 0).map(GlobalPosition).ok_or_else(|| {
                    async_graphql::InputValueError::custom("a global position is a non-negative integer")
                })
            }
            _ => Err(async_graphql::InputValueError::expected_type(value)),
        }
    }

    fn to_value(&self) -> Value {
        Value::Number(self.0.into())
    }
}

/// Options every mutation accepts.
#[derive(Debug, Clone, Default, InputObject)]
pub struct CommandOptions {
    /// Your id for this command. Sending the same command again with the same id (a retry
    /// after a timeout) applies it once and returns the first result. Reusing it for a
    /// different command is a `CONFLICT`.
    pub command_id: Option<Uuid>,
    /// The version of the record you based the change on (from `version` on the record). If
    /// the record has changed since, the command fails with `CONFLICT` instead of overwriting.
    pub expected_version: Option<i64>,
    /// When this happened, if not now (RFC 3339; for recording past events, e.g. imports).
    pub occurred_at: Option<DateTime<Utc>>,
}

/// What a mutation did.
#[derive(Debug, Clone, SimpleObject)]
pub struct CommandOutcome {
    /// The command's id (yours, or one kefu generated).
    pub command_id: Uuid,
    /// The record's version after the command; use it as `expectedVersion` next time.
    pub stream_version: i64,
    /// Position of the record's latest event; pass it as `minPosition` to read your write.
    pub global_position: Option<GlobalPosition>,
    /// How many events the command recorded (0 when it changed nothing).
    pub events_recorded: i64,
    /// True when this is the stored result of an earlier identical command.
    pub deduplicated: bool,
    /// When kefu recorded it.
    pub recorded_at: DateTime<Utc>,
}

impl CommandOutcome {
    /// From the store's outcome.
    pub fn new(command_id: Uuid, o: &AppendOutcome) -> Self {
        CommandOutcome {
            command_id,
            stream_version: o.stream_version,
            global_position: o.last_position.map(GlobalPosition),
            events_recorded: if o.deduplicated { 0 } else { o.event_count },
            deduplicated: o.deduplicated,
            recorded_at: o.recorded_at,
        }
    }
}

/// A member of staff, as input.
#[derive(Debug, Clone, InputObject)]
pub struct StaffInput {
    /// Their id (as the identity provider knows them).
    pub id: String,
    /// Their display name.
    pub name: Option<String>,
}

impl StaffInput {
    /// Parses into a staff reference.
    pub fn parse(&self, field: &str, v: &mut Validator) -> Option<StaffRef> {
        let id = v.check(field, StaffId::parse("id", &self.id));
        let name = match &self.name {
            Some(n) => v.check(field, Name::parse("name", n)).map(Some),
            None => Some(None),
        };
        Some(StaffRef { id: id?, name: name? })
    }
}

/// A member of staff.
#[derive(Debug, Clone, SimpleObject)]
pub struct Staff {
    /// Id.
    pub id: String,
    /// Name when it was recorded.
    pub name: Option<String>,
}

impl From<&StaffRef> for Staff {
    fn from(s: &StaffRef) -> Self {
        Staff { id: s.id.as_str().to_string(), name: s.name.as_ref().map(|n| n.as_str().to_string()) }
    }
}

/// The kind prefix of global ids (`Customer:…`).
pub fn global_id(kind: &str, id: Uuid) -> async_graphql::ID {
    async_graphql::ID(format!("{kind}:{id}"))
}

/// Accepts `Kind:<uuid>` or a bare UUID for an id argument.
pub fn parse_id(kind: &str, field: &str, raw: &str) -> Result<Uuid, DomainError> {
    let raw = raw.trim();
    let bare = match raw.split_once(':') {
        Some((k, rest)) if k == kind => rest,
        Some((k, _)) => {
            return Err(DomainError::invalid(field, format!("`{raw}` is the id of a {k}, not of a {kind}")));
        }
        None => raw,
    };
    Uuid::parse_str(bare).map_err(|_| DomainError::invalid(field, format!("`{raw}` is not a {kind} id")))
}

/// Splits a global id into kind and UUID.
pub fn parse_global_id(raw: &str) -> Result<(&str, Uuid), Error> {
    let (kind, id) = raw
        .split_once(':')
        .ok_or_else(|| errors::invalid("id", format!("`{raw}` is not a kefu id (expected Kind:uuid)")))?;
    let uuid = Uuid::parse_str(id).map_err(|_| errors::invalid("id", format!("`{raw}` is not a kefu id")))?;
    Ok((kind, uuid))
}

/// The caller.
pub fn actor<'a>(ctx: &'a Context<'_>) -> Result<&'a Actor, Error> {
    ctx.data::<Actor>().map_err(|_| errors::coded("UNAUTHENTICATED", "no authenticated caller"))
}

/// The caller, who must be allowed to change data.
pub fn writer<'a>(ctx: &'a Context<'_>) -> Result<&'a Actor, Error> {
    let actor = actor(ctx)?;
    if !has_any_role(actor, WRITER_ROLES) {
        return Err(errors::coded(
            "FORBIDDEN",
            format!("changing data needs one of the roles {}", WRITER_ROLES.join(", ")),
        ));
    }
    Ok(actor)
}

/// The correlation id of the request.
#[derive(Debug, Clone, Copy)]
pub struct CorrelationId(pub Uuid);

/// Builds command metadata from the request and the options.
pub fn meta(ctx: &Context<'_>, options: &CommandOptions) -> Result<CommandMeta, Error> {
    let actor = writer(ctx)?.clone();
    let correlation = ctx.data_opt::<CorrelationId>().map(|c| c.0).unwrap_or_else(Uuid::now_v7);
    if let Some(v) = options.expected_version
        && v < 0
    {
        return Err(errors::invalid("input.expectedVersion", "must not be negative"));
    }
    // A retry is recognised by the client's own input (the arguments as sent), not by values
    // the server fills in such as the current time.
    let fingerprint = ctx.field().arguments().ok().map(|args| {
        serde_json::Value::Object(
            args.into_iter().map(|(name, value)| (name.to_string(), value.into_json().unwrap_or_default())).collect(),
        )
    });
    Ok(CommandMeta {
        // Every command gets an id, so every result can name the command that produced it.
        command_id: Some(options.command_id.unwrap_or_else(Uuid::now_v7)),
        expected_version: options.expected_version,
        actor,
        correlation_id: correlation,
        causation_id: None,
        occurred_at: options.occurred_at,
        fingerprint,
    })
}

/// The shared services.
pub fn state<'a>(ctx: &'a Context<'_>) -> &'a State {
    // Registered by `build_schema`; a schema without it cannot be constructed.
    ctx.data_unchecked::<State>()
}

pub use super::loaders::ReadConnection;

/// A connection for reading read model `name` (the request's, see [`super::loaders`]);
/// unavailable while it has not been built.
pub async fn read<'a>(ctx: &'a Context<'_>, name: &str) -> Result<ReadConnection<'a>, Error> {
    match ctx.data_opt::<std::sync::Arc<super::loaders::RequestReads>>() {
        Some(request) => request.read(name).await.map_err(errors::projection),
        None => Ok(ReadConnection::Own(state(ctx).reads.read(name).await.map_err(errors::projection)?)),
    }
}

/// Waits until `projection` reflects `position` (when given), within the configured limit.
pub async fn wait_for(ctx: &Context<'_>, projection: &str, position: Option<GlobalPosition>) -> Result<(), Error> {
    let Some(GlobalPosition(position)) = position else {
        return Ok(());
    };
    let state = state(ctx);
    let (reached, through) =
        state.reads.wait(projection, position, state.max_wait).await.map_err(errors::projection)?;
    if reached {
        return Ok(());
    }
    Err(async_graphql::ErrorExtensions::extend_with(
        Error::new(format!(
            "the {projection} read model has reached position {through}, not {position}, within {:?}; retry",
            state.max_wait
        )),
        |_, e| {
            e.set("code", "NOT_CAUGHT_UP");
            e.set("requestedPosition", position);
            e.set("appliedThrough", through);
        },
    ))
}
