//! Service configuration: SLA policies, business calendars, the escalation ladder and the
//! root-cause catalogue. Read from the configuration streams themselves (small, consistent),
//! changed by supervisors and admins.

use async_graphql::{Context, Error, InputObject, Object, Result, SimpleObject};
use chrono::NaiveDate;
use kefu_domain::{
    business_calendar::DefineBusinessCalendar,
    service_config::{PolicySelector, RootCause as DomainRootCause, ServiceConfigCommand, SlaPolicy, SlaTargetSpec},
    sla::{CalendarDefinition, ExtraWorkingDay, Holiday as DomainHoliday, TimeOfDay, WorkingDay, WorkingPeriod},
    values::{Category, Label, Name, Text},
    vocab,
};
use uuid::Uuid;

use super::{
    common::{self, CommandOptions, CommandOutcome},
    vocab::*,
};
use crate::{
    auth::has_any_role,
    errors::{self, Validator},
};

const CONFIG_ROLES: &[&str] = &["supervisor", "admin"];

fn require_config_role(ctx: &Context<'_>) -> Result<()> {
    let actor = common::actor(ctx)?;
    if has_any_role(actor, CONFIG_ROLES) {
        return Ok(());
    }
    Err(errors::coded(
        "FORBIDDEN",
        format!("changing the configuration needs one of the roles {}", CONFIG_ROLES.join(", ")),
    ))
}

// ---------------------------------------------------------------------------------------------
// Output

/// Which requests a policy covers (empty lists match anything).
#[derive(SimpleObject, Clone)]
pub struct PolicySelectorView {
    /// Request types.
    pub request_types: Vec<RequestType>,
    /// Priorities.
    pub priorities: Vec<Priority>,
    /// Customer tiers.
    pub customer_tiers: Vec<ValueTier>,
    /// Category prefixes.
    pub category_prefixes: Vec<String>,
}

/// An SLA target of a policy.
#[derive(SimpleObject, Clone)]
pub struct PolicyTarget {
    /// Metric.
    pub metric: SlaMetric,
    /// Minutes of the policy's clock.
    pub minutes: i32,
    /// Warning at this percentage.
    pub warn_percent: i32,
}

/// An SLA policy.
#[derive(SimpleObject, Clone)]
pub struct SlaPolicyView {
    /// Id.
    pub policy_id: Uuid,
    /// Name.
    pub name: String,
    /// Version (1, then counting redefinitions).
    pub version: i64,
    /// Which requests it covers.
    pub selector: PolicySelectorView,
    /// Targets.
    pub targets: Vec<PolicyTarget>,
    /// Calendar or business time.
    pub clock: ClockKind,
    /// The business calendar.
    pub calendar_id: Option<Uuid>,
    /// Escalates automatically on breach.
    pub escalate_on_breach: bool,
    /// Precedence among matching policies.
    pub precedence: i32,
    /// Whether it applies to new requests.
    pub active: bool,
}

fn policy_view(p: &SlaPolicy, version: i64, active: bool) -> SlaPolicyView {
    SlaPolicyView {
        policy_id: p.policy_id,
        name: p.name.to_string(),
        version,
        selector: PolicySelectorView {
            request_types: p.selector.request_types.iter().map(|x| (*x).into()).collect(),
            priorities: p.selector.priorities.iter().map(|x| (*x).into()).collect(),
            customer_tiers: p.selector.customer_tiers.iter().map(|x| (*x).into()).collect(),
            category_prefixes: p.selector.category_prefixes.iter().map(|c| c.to_string()).collect(),
        },
        targets: p
            .targets
            .iter()
            .map(|t| PolicyTarget {
                metric: t.metric.into(),
                minutes: t.minutes as i32,
                warn_percent: t.warn_percent as i32,
            })
            .collect(),
        clock: p.clock.into(),
        calendar_id: p.calendar_id,
        escalate_on_breach: p.escalate_on_breach,
        precedence: p.precedence,
        active,
    }
}

/// A working period, "HH:MM" local time.
#[derive(SimpleObject, InputObject, Clone)]
#[graphql(input_name = "WorkingPeriodInput")]
pub struct Period {
    /// Start, "HH:MM".
    pub start: String,
    /// End, "HH:MM" ("00:00" = midnight at the end of the day).
    pub end: String,
}

/// A holiday.
#[derive(SimpleObject, InputObject, Clone)]
#[graphql(input_name = "HolidayInput")]
pub struct Holiday {
    /// Date.
    pub date: NaiveDate,
    /// Name, e.g. 国庆节.
    pub name: Option<String>,
}

/// A date worked although its weekday normally is not (调休).
#[derive(SimpleObject, InputObject, Clone)]
#[graphql(input_name = "ExtraWorkingDayInput")]
pub struct ExtraDay {
    /// Date.
    pub date: NaiveDate,
    /// Name.
    pub name: Option<String>,
    /// Working periods that day.
    pub periods: Vec<Period>,
}

/// A business calendar.
#[derive(SimpleObject, Clone)]
pub struct BusinessCalendarView {
    /// Id.
    pub calendar_id: Uuid,
    /// Name.
    pub name: String,
    /// IANA time zone.
    pub time_zone: String,
    /// Working periods, Monday first (seven entries).
    pub weekly: Vec<Vec<Period>>,
    /// Holidays.
    pub holidays: Vec<Holiday>,
    /// Extra working days.
    pub extra_working_days: Vec<ExtraDay>,
}

fn periods_view(p: &[WorkingPeriod]) -> Vec<Period> {
    p.iter().map(|p| Period { start: p.start.to_string(), end: p.end.to_string() }).collect()
}

/// A root cause of the catalogue.
#[derive(SimpleObject, Clone)]
pub struct RootCauseView {
    /// Code.
    pub code: String,
    /// Name.
    pub name: String,
    /// What it covers.
    pub description: Option<String>,
}

/// A level of the escalation ladder.
#[derive(SimpleObject, Clone)]
pub struct EscalationLevel {
    /// 0 = agent, counting up.
    pub level: i32,
    /// Name.
    pub name: String,
}

/// Configuration queries.
#[derive(Default)]
pub struct ConfigQuery;

#[Object]
impl ConfigQuery {
    /// Every SLA policy (active and retired). Requests no policy covers get kefu's default:
    /// 2 h first response, 24 h on site, 48 h resolution, complaints reported upward in 3 days.
    async fn sla_policies(&self, ctx: &Context<'_>) -> Result<Vec<SlaPolicyView>> {
        common::actor(ctx)?;
        let config = common::state(ctx).commands.configuration().await.map_err(|e| errors::app(e, ""))?;
        let mut out: Vec<SlaPolicyView> = config.policies.values().map(|(p, v)| policy_view(p, *v, true)).collect();
        out.extend(config.retired.values().map(|(p, v)| policy_view(p, *v, false)));
        out.push(policy_view(&kefu_domain::service_config::default_policy(), 0, true));
        Ok(out)
    }

    /// A business calendar.
    async fn business_calendar(&self, ctx: &Context<'_>, id: Uuid) -> Result<Option<BusinessCalendarView>> {
        common::actor(ctx)?;
        let (state, _, _) = common::state(ctx)
            .commands
            .load::<kefu_domain::business_calendar::BusinessCalendarState>(id)
            .await
            .map_err(|e| errors::app(e, ""))?;
        Ok(state.defined.map(|d| BusinessCalendarView {
            calendar_id: d.calendar_id,
            name: d.name.to_string(),
            time_zone: d.definition.time_zone.clone(),
            weekly: d.definition.weekly.iter().map(|w| periods_view(&w.periods)).collect(),
            holidays: d.definition.holidays.iter().map(|h| Holiday { date: h.date, name: h.name.clone() }).collect(),
            extra_working_days: d
                .definition
                .extra_working_days
                .iter()
                .map(|x| ExtraDay { date: x.date, name: x.name.clone(), periods: periods_view(&x.periods) })
                .collect(),
        }))
    }

    /// The root-cause catalogue resolutions choose from.
    async fn root_causes(&self, ctx: &Context<'_>) -> Result<Vec<RootCauseView>> {
        common::actor(ctx)?;
        let config = common::state(ctx).commands.configuration().await.map_err(|e| errors::app(e, ""))?;
        Ok(config
            .root_causes()
            .into_iter()
            .map(|c| RootCauseView {
                code: c.code.to_string(),
                name: c.name.to_string(),
                description: c.description.map(|d| d.to_string()),
            })
            .collect())
    }

    /// The escalation ladder.
    async fn escalation_levels(&self, ctx: &Context<'_>) -> Result<Vec<EscalationLevel>> {
        common::actor(ctx)?;
        let config = common::state(ctx).commands.configuration().await.map_err(|e| errors::app(e, ""))?;
        Ok(config
            .levels()
            .into_iter()
            .enumerate()
            .map(|(i, l)| EscalationLevel { level: i as i32, name: l.to_string() })
            .collect())
    }
}

// ---------------------------------------------------------------------------------------------
// Mutations

/// One SLA target.
#[derive(InputObject)]
pub struct PolicyTargetInput {
    /// Metric (not CALLBACK: its deadline is the promised time).
    pub metric: SlaMetric,
    /// Target in minutes of the policy's clock.
    pub minutes: i32,
    /// Warn at this percentage of the target.
    #[graphql(default = 80)]
    pub warn_percent: i32,
}

/// Create or replace an SLA policy.
#[derive(InputObject)]
pub struct DefineSlaPolicyInput {
    /// Id; new when absent.
    pub policy_id: Option<Uuid>,
    /// Name.
    pub name: String,
    /// Request types covered (empty: all).
    #[graphql(default)]
    pub request_types: Vec<RequestType>,
    /// Priorities covered (empty: all).
    #[graphql(default)]
    pub priorities: Vec<Priority>,
    /// Customer tiers covered (empty: all).
    #[graphql(default)]
    pub customer_tiers: Vec<ValueTier>,
    /// Category prefixes covered (empty: all).
    #[graphql(default)]
    pub category_prefixes: Vec<String>,
    /// Targets.
    pub targets: Vec<PolicyTargetInput>,
    /// Calendar or business time.
    pub clock: ClockKind,
    /// The business calendar (for business time).
    pub calendar_id: Option<Uuid>,
    /// Escalate one level automatically on breach.
    #[graphql(default)]
    pub escalate_on_breach: bool,
    /// Precedence among matching policies.
    #[graphql(default)]
    pub precedence: i32,
    /// Retry controls.
    #[graphql(flatten)]
    pub options: CommandOptions,
}

/// Retire a policy.
#[derive(InputObject)]
pub struct RetireSlaPolicyInput {
    /// Which.
    pub policy_id: Uuid,
    /// Why.
    pub reason: Option<String>,
    /// Retry controls.
    #[graphql(flatten)]
    pub options: CommandOptions,
}

/// Define or redefine a business calendar.
#[derive(InputObject)]
pub struct DefineBusinessCalendarInput {
    /// Id; new when absent.
    pub calendar_id: Option<Uuid>,
    /// Name.
    pub name: String,
    /// IANA time zone, e.g. `Asia/Shanghai`.
    pub time_zone: String,
    /// Working periods, Monday first (seven entries; an empty list is a day off).
    pub weekly: Vec<Vec<Period>>,
    /// Holidays.
    #[graphql(default)]
    pub holidays: Vec<Holiday>,
    /// Extra working days (调休).
    #[graphql(default)]
    pub extra_working_days: Vec<ExtraDay>,
    /// Retry controls.
    #[graphql(flatten)]
    pub options: CommandOptions,
}

/// Replace the escalation ladder.
#[derive(InputObject)]
pub struct DefineEscalationLevelsInput {
    /// Level names, level 0 first (2 to 8).
    pub levels: Vec<String>,
    /// Retry controls.
    #[graphql(flatten)]
    pub options: CommandOptions,
}

/// A root cause.
#[derive(InputObject)]
pub struct RootCauseInput {
    /// Code (a-z, 0-9, `_`, `.`, `-`).
    pub code: String,
    /// Name.
    pub name: String,
    /// What it covers.
    pub description: Option<String>,
}

/// Replace the root-cause catalogue.
#[derive(InputObject)]
pub struct DefineRootCausesInput {
    /// The causes.
    pub root_causes: Vec<RootCauseInput>,
    /// Retry controls.
    #[graphql(flatten)]
    pub options: CommandOptions,
}

/// What a configuration command did.
#[derive(SimpleObject)]
pub struct ConfigPayload {
    /// The command's outcome.
    #[graphql(flatten)]
    pub outcome: CommandOutcome,
    /// The policy or calendar it concerns, when it concerns one.
    pub id: Option<Uuid>,
}

fn periods(v: &mut Validator, field: &str, list: &[Period]) -> Vec<WorkingPeriod> {
    let mut out = Vec::new();
    for (i, p) in list.iter().enumerate() {
        let f = format!("{field}[{i}]");
        let start = v.check(&f, TimeOfDay::parse("start", &p.start));
        let end = v.check(&f, TimeOfDay::parse("end", &p.end));
        if let (Some(start), Some(end)) = (start, end) {
            out.push(WorkingPeriod { start, end });
        }
    }
    out
}

fn lost() -> Error {
    errors::internal("validated input lost a value")
}

/// Configuration commands.
#[derive(Default)]
pub struct ConfigMutation;

#[Object]
impl ConfigMutation {
    /// Create or replace an SLA policy. New requests it covers take its targets; requests
    /// already filed keep the deadlines they were given.
    async fn define_sla_policy(&self, ctx: &Context<'_>, input: DefineSlaPolicyInput) -> Result<ConfigPayload> {
        require_config_role(ctx)?;
        let meta = common::meta(ctx, &input.options)?;
        let mut v = Validator::default();
        let name = v.check("input", Name::parse("name", &input.name));
        let mut prefixes = Vec::new();
        for (i, p) in input.category_prefixes.iter().enumerate() {
            if let Some(c) = v.check("input", Category::parse(&format!("categoryPrefixes[{i}]"), p)) {
                prefixes.push(c);
            }
        }
        let mut targets = Vec::new();
        for (i, t) in input.targets.iter().enumerate() {
            if t.minutes <= 0 || t.warn_percent <= 0 {
                v.fail(format!("input.targets[{i}]"), "minutes and warnPercent must be positive");
                continue;
            }
            targets.push(SlaTargetSpec {
                metric: t.metric.into(),
                minutes: t.minutes as u32,
                warn_percent: t.warn_percent as u32,
            });
        }
        v.finish()?;
        let policy_id = input.policy_id.unwrap_or_else(|| meta.new_entity_id("sla_policy"));
        let policy = SlaPolicy {
            policy_id,
            name: name.ok_or_else(lost)?,
            selector: PolicySelector {
                request_types: input.request_types.iter().map(|x| vocab::RequestType::from(*x)).collect(),
                priorities: input.priorities.iter().map(|x| vocab::Priority::from(*x)).collect(),
                customer_tiers: input.customer_tiers.iter().map(|x| vocab::ValueTier::from(*x)).collect(),
                category_prefixes: prefixes,
            },
            targets,
            clock: input.clock.into(),
            calendar_id: input.calendar_id,
            escalate_on_breach: input.escalate_on_breach,
            precedence: input.precedence,
        };
        let command_id = meta.command_id.unwrap_or_default();
        let outcome = common::state(ctx)
            .commands
            .configure(ServiceConfigCommand::DefineSlaPolicy(policy), meta)
            .await
            .map_err(|e| errors::app(e, "input"))?;
        Ok(ConfigPayload { outcome: CommandOutcome::new(command_id, &outcome), id: Some(policy_id) })
    }

    /// Stop using a policy for new requests.
    async fn retire_sla_policy(&self, ctx: &Context<'_>, input: RetireSlaPolicyInput) -> Result<ConfigPayload> {
        require_config_role(ctx)?;
        let meta = common::meta(ctx, &input.options)?;
        let mut v = Validator::default();
        let reason = match &input.reason {
            None => Some(None),
            Some(r) => v.check("input", Text::parse("reason", r)).map(Some),
        };
        v.finish()?;
        let command_id = meta.command_id.unwrap_or_default();
        let command =
            ServiceConfigCommand::RetireSlaPolicy { policy_id: input.policy_id, reason: reason.ok_or_else(lost)? };
        let outcome =
            common::state(ctx).commands.configure(command, meta).await.map_err(|e| errors::app(e, "input"))?;
        Ok(ConfigPayload { outcome: CommandOutcome::new(command_id, &outcome), id: Some(input.policy_id) })
    }

    /// Define or redefine a business calendar (working hours, holidays, extra working days).
    async fn define_business_calendar(
        &self,
        ctx: &Context<'_>,
        input: DefineBusinessCalendarInput,
    ) -> Result<ConfigPayload> {
        require_config_role(ctx)?;
        let meta = common::meta(ctx, &input.options)?;
        let mut v = Validator::default();
        let name = v.check("input", Name::parse("name", &input.name));
        let weekly: Vec<WorkingDay> = input
            .weekly
            .iter()
            .enumerate()
            .map(|(i, day)| WorkingDay { periods: periods(&mut v, &format!("input.weekly[{i}]"), day) })
            .collect();
        let extra: Vec<ExtraWorkingDay> = input
            .extra_working_days
            .iter()
            .enumerate()
            .map(|(i, d)| ExtraWorkingDay {
                date: d.date,
                name: d.name.clone(),
                periods: periods(&mut v, &format!("input.extraWorkingDays[{i}].periods"), &d.periods),
            })
            .collect();
        v.finish()?;
        let definition = CalendarDefinition {
            time_zone: input.time_zone.clone(),
            weekly,
            holidays: input.holidays.iter().map(|h| DomainHoliday { date: h.date, name: h.name.clone() }).collect(),
            extra_working_days: extra,
        };
        let calendar_id = input.calendar_id.unwrap_or_else(|| meta.new_entity_id("business_calendar"));
        let command_id = meta.command_id.unwrap_or_default();
        let outcome = common::state(ctx)
            .commands
            .define_calendar(DefineBusinessCalendar { calendar_id, name: name.ok_or_else(lost)?, definition }, meta)
            .await
            .map_err(|e| errors::app(e, "input"))?;
        Ok(ConfigPayload { outcome: CommandOutcome::new(command_id, &outcome), id: Some(calendar_id) })
    }

    /// Replace the escalation ladder (default: agent → supervisor → department head → general
    /// manager / special team).
    async fn define_escalation_levels(
        &self,
        ctx: &Context<'_>,
        input: DefineEscalationLevelsInput,
    ) -> Result<ConfigPayload> {
        require_config_role(ctx)?;
        let meta = common::meta(ctx, &input.options)?;
        let mut v = Validator::default();
        let mut levels = Vec::new();
        for (i, l) in input.levels.iter().enumerate() {
            if let Some(l) = v.check("input", Label::parse(&format!("levels[{i}]"), l)) {
                levels.push(l);
            }
        }
        v.finish()?;
        let command_id = meta.command_id.unwrap_or_default();
        let outcome = common::state(ctx)
            .commands
            .configure(ServiceConfigCommand::DefineEscalationLevels { levels }, meta)
            .await
            .map_err(|e| errors::app(e, "input"))?;
        Ok(ConfigPayload { outcome: CommandOutcome::new(command_id, &outcome), id: None })
    }

    /// Replace the root-cause catalogue.
    async fn define_root_causes(&self, ctx: &Context<'_>, input: DefineRootCausesInput) -> Result<ConfigPayload> {
        require_config_role(ctx)?;
        let meta = common::meta(ctx, &input.options)?;
        let mut v = Validator::default();
        let mut causes = Vec::new();
        for (i, c) in input.root_causes.iter().enumerate() {
            let f = format!("input.rootCauses[{i}]");
            let code = v.check(&f, Label::parse("code", &c.code));
            let name = v.check(&f, Name::parse("name", &c.name));
            let description = match &c.description {
                None => Some(None),
                Some(d) => v.check(&f, Text::parse("description", d)).map(Some),
            };
            if let (Some(code), Some(name), Some(description)) = (code, name, description) {
                causes.push(DomainRootCause { code, name, description });
            }
        }
        v.finish()?;
        let command_id = meta.command_id.unwrap_or_default();
        let outcome = common::state(ctx)
            .commands
            .configure(ServiceConfigCommand::DefineRootCauses { root_causes: causes }, meta)
            .await
            .map_err(|e| errors::app(e, "input"))?;
        Ok(ConfigPayload { outcome: CommandOutcome::new(command_id, &outcome), id: None })
    }
}
