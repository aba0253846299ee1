//! Service configuration: SLA policies, the escalation ladder and the root-cause catalogue.
//!
//! One stream with a well-known id holds all of it, so a command handler reads the whole
//! configuration in one load and a request is always decided against one consistent version.
//! Requests copy what applied to them (the SLA terms, the level names) into their own events:
//! changing the configuration never rewrites the promises already made.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::{
    Aggregate, DomainError, event_family,
    values::{Category, Label, Name, Text},
    vocab::{ClockKind, Priority, RequestType, SlaMetric, ValueTier},
};

/// The id of the configuration stream.
pub const SERVICE_CONFIGURATION_ID: Uuid = Uuid::from_u128(0x6b65_6675_0000_4000_8000_0000_636f_6e66);

/// Which requests a policy covers. An empty list matches anything.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PolicySelector {
    /// Request types covered.
    #[serde(default)]
    pub request_types: Vec<RequestType>,
    /// Priorities covered.
    #[serde(default)]
    pub priorities: Vec<Priority>,
    /// Customer value tiers covered.
    #[serde(default)]
    pub customer_tiers: Vec<ValueTier>,
    /// Category prefixes covered (`Billing` covers `Billing / Overcharge`), case-insensitive.
    #[serde(default)]
    pub category_prefixes: Vec<Category>,
}

impl PolicySelector {
    /// Whether a request with these attributes is covered.
    pub fn matches(
        &self,
        request_type: RequestType,
        priority: Priority,
        tier: Option<ValueTier>,
        category: &Category,
    ) -> bool {
        let tier_ok = self.customer_tiers.is_empty() || tier.is_some_and(|t| self.customer_tiers.contains(&t));
        let category = category.as_str().to_lowercase();
        let category_ok = self.category_prefixes.is_empty()
            || self.category_prefixes.iter().any(|p| category.starts_with(&p.as_str().to_lowercase()));
        (self.request_types.is_empty() || self.request_types.contains(&request_type))
            && (self.priorities.is_empty() || self.priorities.contains(&priority))
            && tier_ok
            && category_ok
    }

    /// How many dimensions the selector restricts (more is more specific).
    pub fn specificity(&self) -> usize {
        [
            !self.request_types.is_empty(),
            !self.priorities.is_empty(),
            !self.customer_tiers.is_empty(),
            !self.category_prefixes.is_empty(),
        ]
        .iter()
        .filter(|b| **b)
        .count()
    }
}

/// One SLA target.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SlaTargetSpec {
    /// What is measured.
    pub metric: SlaMetric,
    /// The target, in minutes of the policy's clock.
    pub minutes: u32,
    /// When to warn, as a share of the target in percent (e.g. 80).
    pub warn_percent: u32,
}

/// An SLA policy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SlaPolicy {
    /// Id.
    pub policy_id: Uuid,
    /// Name, e.g. `Important customers — complaints`.
    pub name: Name,
    /// Which requests it covers.
    #[serde(default)]
    pub selector: PolicySelector,
    /// Targets (at most one per metric; never `CALLBACK`, whose deadline is the promised time).
    pub targets: Vec<SlaTargetSpec>,
    /// Calendar time or business time.
    pub clock: ClockKind,
    /// The business calendar (required for business time).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub calendar_id: Option<Uuid>,
    /// Escalate one level automatically when a target is breached.
    #[serde(default)]
    pub escalate_on_breach: bool,
    /// Among matching policies the highest precedence wins, then the most specific.
    #[serde(default)]
    pub precedence: i32,
}

impl SlaPolicy {
    /// Checks the policy's own rules.
    pub fn validate(&self) -> Result<(), DomainError> {
        if self.targets.is_empty() {
            return Err(DomainError::invalid("targets", "a policy needs at least one target"));
        }
        let mut seen = Vec::new();
        for (i, t) in self.targets.iter().enumerate() {
            let field = format!("targets[{i}]");
            if t.metric == SlaMetric::Callback {
                return Err(DomainError::invalid(
                    format!("{field}.metric"),
                    "CALLBACK has no target: its deadline is the time promised to the customer",
                ));
            }
            if seen.contains(&t.metric) {
                return Err(DomainError::invalid(format!("{field}.metric"), format!("{} is targeted twice", t.metric)));
            }
            seen.push(t.metric);
            if t.minutes == 0 || t.minutes > 60 * 24 * 366 {
                return Err(DomainError::invalid(format!("{field}.minutes"), "must be between 1 minute and a year"));
            }
            if !(1..=99).contains(&t.warn_percent) {
                return Err(DomainError::invalid(format!("{field}.warnPercent"), "must be between 1 and 99"));
            }
        }
        match (self.clock, self.calendar_id) {
            (ClockKind::Business, None) => {
                Err(DomainError::invalid("calendarId", "business time needs a business calendar"))
            }
            (ClockKind::Calendar, Some(_)) => {
                Err(DomainError::invalid("calendarId", "calendar time does not use a business calendar"))
            }
            _ => Ok(()),
        }
    }
}

/// The policy that applies when no configured policy matches: the service levels the source
/// documents give (DOMAIN.md): respond within 2 h, on site within 24 h, solved within 48 h;
/// complaints reported upward within 3 calendar days.
pub fn default_policy() -> SlaPolicy {
    let target = |metric, minutes| SlaTargetSpec { metric, minutes, warn_percent: 80 };
    SlaPolicy {
        policy_id: Uuid::nil(),
        name: Name::trusted("kefu default (2 h response, 24 h on site, 48 h resolution)"),
        selector: PolicySelector::default(),
        targets: vec![
            target(SlaMetric::FirstResponse, 120),
            target(SlaMetric::NextResponse, 120),
            target(SlaMetric::OnSite, 24 * 60),
            target(SlaMetric::Resolution, 48 * 60),
            target(SlaMetric::ReportUpward, 3 * 24 * 60),
        ],
        clock: ClockKind::Calendar,
        calendar_id: None,
        escalate_on_breach: false,
        precedence: i32::MIN,
    }
}

/// A root cause (按其产生的最终原因).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RootCause {
    /// Stable code, e.g. `billing_error`.
    pub code: Label,
    /// Name for people.
    pub name: Name,
    /// What it covers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<Text>,
}

fn label(s: &'static str) -> Label {
    Label::trusted(s)
}

fn name(s: &'static str) -> Name {
    Name::trusted(s)
}

/// The root-cause catalogue used until one is defined.
pub fn default_root_causes() -> Vec<RootCause> {
    [
        ("product_defect", "产品缺陷 Product defect"),
        ("service_attitude", "服务态度 Service attitude"),
        ("process_issue", "流程问题 Process issue"),
        ("billing_error", "计费错误 Billing error"),
        ("delivery_delay", "交付延误 Delivery delay"),
        ("third_party", "第三方原因 Third party"),
        ("customer_misunderstanding", "客户误解 Customer misunderstanding"),
        ("policy", "政策规定 Policy"),
        ("other", "其他 Other"),
    ]
    .into_iter()
    .map(|(code, n)| RootCause { code: label(code), name: name(n), description: None })
    .collect()
}

/// The default escalation ladder: agent → supervisor → department head → general manager /
/// special team (专门小组).
pub fn default_levels() -> Vec<Label> {
    ["agent", "supervisor", "department_head", "general_manager"].into_iter().map(label).collect()
}

// ---------------------------------------------------------------------------------------------

/// Commands on the configuration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum ServiceConfigCommand {
    /// Create or replace a policy.
    DefineSlaPolicy(SlaPolicy),
    /// Stop using a policy for new requests.
    RetireSlaPolicy {
        /// Which.
        policy_id: Uuid,
        /// Why.
        reason: Option<Text>,
    },
    /// Replace the escalation ladder (level 0 first).
    DefineEscalationLevels {
        /// Names of the levels, at least 2.
        levels: Vec<Label>,
    },
    /// Replace the root-cause catalogue.
    DefineRootCauses {
        /// The causes.
        root_causes: Vec<RootCause>,
    },
}

/// A policy was created or replaced.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SlaPolicyDefined {
    /// The policy as it is now.
    pub policy: SlaPolicy,
    /// 1 for a new policy, then counting replacements.
    pub policy_version: i64,
}

/// A policy no longer applies to new requests.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SlaPolicyRetired {
    /// Which.
    pub policy_id: Uuid,
    /// Why.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<Text>,
}

/// The escalation ladder is now this.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EscalationLevelsDefined {
    /// Level names, level 0 first.
    pub levels: Vec<Label>,
}

/// The root-cause catalogue is now this.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RootCausesDefined {
    /// The causes.
    pub root_causes: Vec<RootCause>,
}

event_family! {
    /// Facts recorded on the configuration stream.
    pub enum ServiceConfigEvent {
        SlaPolicyDefined,
        SlaPolicyRetired,
        EscalationLevelsDefined,
        RootCausesDefined,
    }
}

/// The configuration as it stands.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ServiceConfiguration {
    /// Active policies with their versions.
    pub policies: BTreeMap<Uuid, (SlaPolicy, i64)>,
    /// Retired policies with their last versions.
    pub retired: BTreeMap<Uuid, (SlaPolicy, i64)>,
    /// Defined ladder, if any.
    pub levels: Option<Vec<Label>>,
    /// Defined catalogue, if any.
    pub root_causes: Option<Vec<RootCause>>,
}

/// The SLA terms a request was filed under: a copy of the policy that applied.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SlaTerms {
    /// The policy (nil for the built-in default).
    pub policy_id: Uuid,
    /// Its name.
    pub policy_name: Name,
    /// Its version.
    pub policy_version: i64,
    /// Calendar or business time.
    pub clock: ClockKind,
    /// The calendar for business time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub calendar_id: Option<Uuid>,
    /// The targets.
    pub targets: Vec<SlaTargetSpec>,
    /// Escalate automatically on breach.
    #[serde(default)]
    pub escalate_on_breach: bool,
}

impl SlaTerms {
    /// The target of a metric, if the terms have one.
    pub fn target(&self, metric: SlaMetric) -> Option<SlaTargetSpec> {
        self.targets.iter().copied().find(|t| t.metric == metric)
    }
}

impl ServiceConfiguration {
    /// The escalation ladder in force.
    pub fn levels(&self) -> Vec<Label> {
        self.levels.clone().unwrap_or_else(default_levels)
    }

    /// The root-cause catalogue in force.
    pub fn root_causes(&self) -> Vec<RootCause> {
        self.root_causes.clone().unwrap_or_else(default_root_causes)
    }

    /// The terms for a new request: the best matching active policy, or the default.
    pub fn terms_for(
        &self,
        request_type: RequestType,
        priority: Priority,
        tier: Option<ValueTier>,
        category: &Category,
    ) -> SlaTerms {
        let best =
            self.policies.values().filter(|(p, _)| p.selector.matches(request_type, priority, tier, category)).max_by(
                |(a, _), (b, _)| {
                    (a.precedence, a.selector.specificity(), std::cmp::Reverse(a.name.as_str())).cmp(&(
                        b.precedence,
                        b.selector.specificity(),
                        std::cmp::Reverse(b.name.as_str()),
                    ))
                },
            );
        let (policy, version) = match best {
            Some((p, v)) => (p.clone(), *v),
            None => (default_policy(), 0),
        };
        SlaTerms {
            policy_id: policy.policy_id,
            policy_name: policy.name,
            policy_version: version,
            clock: policy.clock,
            calendar_id: policy.calendar_id,
            targets: policy.targets,
            escalate_on_breach: policy.escalate_on_breach,
        }
    }

    /// Checks a root-cause code against the catalogue.
    pub fn check_root_cause(&self, code: &Label) -> Result<(), DomainError> {
        let catalogue = self.root_causes();
        if catalogue.iter().any(|c| c.code == *code) {
            return Ok(());
        }
        let known: Vec<&str> = catalogue.iter().map(|c| c.code.as_str()).collect();
        Err(DomainError::invalid(
            "rootCause",
            format!("`{code}` is not in the root-cause catalogue: {}", known.join(", ")),
        ))
    }
}

fn check_code(field: &str, code: &Label) -> Result<(), DomainError> {
    let ok = code.as_str().chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "_.-".contains(c));
    if !ok {
        return Err(DomainError::invalid(field, format!("`{code}`: codes use a-z, 0-9, `_`, `.` and `-`")));
    }
    Ok(())
}

impl Aggregate for ServiceConfiguration {
    const STREAM_TYPE: &'static str = "service_configuration";
    type Command = ServiceConfigCommand;
    type Event = ServiceConfigEvent;

    fn decide(&self, command: &ServiceConfigCommand) -> Result<Vec<ServiceConfigEvent>, DomainError> {
        match command {
            ServiceConfigCommand::DefineSlaPolicy(policy) => {
                policy.validate()?;
                let current = self.policies.get(&policy.policy_id).or_else(|| self.retired.get(&policy.policy_id));
                if current.is_some_and(|(p, _)| p == policy) && self.policies.contains_key(&policy.policy_id) {
                    return Ok(vec![]);
                }
                let version = current.map(|(_, v)| v + 1).unwrap_or(1);
                Ok(vec![SlaPolicyDefined { policy: policy.clone(), policy_version: version }.into()])
            }
            ServiceConfigCommand::RetireSlaPolicy { policy_id, reason } => {
                if !self.policies.contains_key(policy_id) {
                    return Err(DomainError::NotFound { entity: "slaPolicy", id: policy_id.to_string() });
                }
                Ok(vec![SlaPolicyRetired { policy_id: *policy_id, reason: reason.clone() }.into()])
            }
            ServiceConfigCommand::DefineEscalationLevels { levels } => {
                if !(2..=8).contains(&levels.len()) {
                    return Err(DomainError::invalid("levels", "the ladder has 2 to 8 levels"));
                }
                for (i, l) in levels.iter().enumerate() {
                    check_code(&format!("levels[{i}]"), l)?;
                    if levels[..i].contains(l) {
                        return Err(DomainError::invalid(format!("levels[{i}]"), format!("`{l}` appears twice")));
                    }
                }
                if self.levels.as_ref() == Some(levels) {
                    return Ok(vec![]);
                }
                Ok(vec![EscalationLevelsDefined { levels: levels.clone() }.into()])
            }
            ServiceConfigCommand::DefineRootCauses { root_causes } => {
                if root_causes.is_empty() {
                    return Err(DomainError::invalid("rootCauses", "the catalogue needs at least one cause"));
                }
                for (i, c) in root_causes.iter().enumerate() {
                    check_code(&format!("rootCauses[{i}].code"), &c.code)?;
                    if root_causes[..i].iter().any(|o| o.code == c.code) {
                        return Err(DomainError::invalid(
                            format!("rootCauses[{i}].code"),
                            format!("`{}` appears twice", c.code),
                        ));
                    }
                }
                if self.root_causes.as_ref() == Some(root_causes) {
                    return Ok(vec![]);
                }
                Ok(vec![RootCausesDefined { root_causes: root_causes.clone() }.into()])
            }
        }
    }

    fn apply(&mut self, event: &ServiceConfigEvent) {
        match event {
            ServiceConfigEvent::SlaPolicyDefined(e) => {
                self.retired.remove(&e.policy.policy_id);
                self.policies.insert(e.policy.policy_id, (e.policy.clone(), e.policy_version));
            }
            ServiceConfigEvent::SlaPolicyRetired(e) => {
                if let Some(p) = self.policies.remove(&e.policy_id) {
                    self.retired.insert(e.policy_id, p);
                }
            }
            ServiceConfigEvent::EscalationLevelsDefined(e) => self.levels = Some(e.levels.clone()),
            ServiceConfigEvent::RootCausesDefined(e) => self.root_causes = Some(e.root_causes.clone()),
        }
    }
}

/// Example values for tests, documentation and the event catalogue.
pub mod examples {
    use super::*;

    /// A business-time policy for important customers' complaints.
    pub fn important_complaints(calendar_id: Uuid) -> SlaPolicy {
        SlaPolicy {
            policy_id: Uuid::from_u128(0x0190_0000_0000_7000_8000_0000_0003_0001),
            name: name("重要客户投诉 Important customers' complaints"),
            selector: PolicySelector {
                request_types: vec![RequestType::Complaint],
                priorities: vec![Priority::High, Priority::Urgent],
                customer_tiers: vec![ValueTier::Important],
                category_prefixes: vec![Category::parse("c", "Billing").unwrap_or_else(|_| panic!("category"))],
            },
            targets: vec![
                SlaTargetSpec { metric: SlaMetric::FirstResponse, minutes: 60, warn_percent: 75 },
                SlaTargetSpec { metric: SlaMetric::Resolution, minutes: 16 * 60, warn_percent: 80 },
            ],
            clock: ClockKind::Business,
            calendar_id: Some(calendar_id),
            escalate_on_breach: true,
            precedence: 10,
        }
    }

    /// One example of every configuration event.
    pub fn all_events() -> Vec<ServiceConfigEvent> {
        let calendar = Uuid::from_u128(0x0190_0000_0000_7000_8000_0000_0004_0001);
        vec![
            SlaPolicyDefined { policy: important_complaints(calendar), policy_version: 2 }.into(),
            SlaPolicyRetired {
                policy_id: important_complaints(calendar).policy_id,
                reason: Text::parse("reason", "合并到新政策").ok(),
            }
            .into(),
            EscalationLevelsDefined { levels: default_levels() }.into(),
            RootCausesDefined {
                root_causes: vec![RootCause {
                    code: label("billing_error"),
                    name: name("计费错误"),
                    description: Text::parse("d", "多收、错收费用").ok(),
                }],
            }
            .into(),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::given;

    fn category(s: &str) -> Category {
        Category::parse("category", s).unwrap()
    }

    #[test]
    fn built_in_literals_are_valid_values() {
        for c in default_root_causes() {
            assert_eq!(Label::parse("c", c.code.as_str()).unwrap(), c.code);
            assert_eq!(Name::parse("n", c.name.as_str()).unwrap(), c.name);
            check_code("c", &c.code).unwrap();
        }
        for l in default_levels() {
            assert_eq!(Label::parse("l", l.as_str()).unwrap(), l);
        }
        let p = default_policy();
        assert_eq!(Name::parse("n", p.name.as_str()).unwrap(), p.name);
        p.validate().unwrap();
    }

    #[test]
    fn the_default_policy_carries_the_documented_service_levels() {
        let terms = ServiceConfiguration::default().terms_for(
            RequestType::Complaint,
            Priority::Normal,
            None,
            &category("Anything"),
        );
        assert_eq!(terms.policy_id, Uuid::nil());
        assert_eq!(terms.target(SlaMetric::FirstResponse).unwrap().minutes, 120);
        assert_eq!(terms.target(SlaMetric::OnSite).unwrap().minutes, 24 * 60);
        assert_eq!(terms.target(SlaMetric::Resolution).unwrap().minutes, 48 * 60);
        assert_eq!(terms.target(SlaMetric::ReportUpward).unwrap().minutes, 3 * 24 * 60);
        assert_eq!(terms.clock, ClockKind::Calendar);
    }

    #[test]
    fn the_most_precedent_then_most_specific_matching_policy_applies() {
        let calendar = Uuid::now_v7();
        let specific = examples::important_complaints(calendar);
        let mut broad = specific.clone();
        broad.policy_id = Uuid::now_v7();
        broad.name = name("All complaints");
        broad.selector = PolicySelector { request_types: vec![RequestType::Complaint], ..Default::default() };
        let history: Vec<ServiceConfigEvent> = vec![
            SlaPolicyDefined { policy: specific.clone(), policy_version: 1 }.into(),
            SlaPolicyDefined { policy: broad.clone(), policy_version: 1 }.into(),
        ];
        let config = ServiceConfiguration::fold(history.iter());
        let t = config.terms_for(
            RequestType::Complaint,
            Priority::High,
            Some(ValueTier::Important),
            &category("billing / overcharge"),
        );
        assert_eq!(t.policy_id, specific.policy_id, "more specific wins at equal precedence");
        let t =
            config.terms_for(RequestType::Complaint, Priority::Low, Some(ValueTier::Important), &category("Billing"));
        assert_eq!(t.policy_id, broad.policy_id, "the specific one does not cover LOW priority");
        let t = config.terms_for(RequestType::Inquiry, Priority::High, None, &category("Billing"));
        assert_eq!(t.policy_id, Uuid::nil(), "nothing matches: default");
        let mut preferred = broad.clone();
        preferred.precedence = 99;
        let mut config = config;
        config.apply(&SlaPolicyDefined { policy: preferred, policy_version: 2 }.into());
        let t =
            config.terms_for(RequestType::Complaint, Priority::High, Some(ValueTier::Important), &category("Billing"));
        assert_eq!((t.policy_id, t.policy_version), (broad.policy_id, 2), "precedence beats specificity");
    }

    #[test]
    fn policies_are_validated() {
        let mut p = examples::important_complaints(Uuid::now_v7());
        p.calendar_id = None;
        given::<ServiceConfiguration>([])
            .when(ServiceConfigCommand::DefineSlaPolicy(p.clone()))
            .then_invalid("calendarId");
        let mut q = examples::important_complaints(Uuid::now_v7());
        q.targets.push(q.targets[0]);
        given::<ServiceConfiguration>([])
            .when(ServiceConfigCommand::DefineSlaPolicy(q))
            .then_invalid("targets[2].metric");
        let mut r = examples::important_complaints(Uuid::now_v7());
        r.targets[0].metric = SlaMetric::Callback;
        given::<ServiceConfiguration>([])
            .when(ServiceConfigCommand::DefineSlaPolicy(r))
            .then_invalid("targets[0].metric");
        let mut w = examples::important_complaints(Uuid::now_v7());
        w.targets[1].warn_percent = 100;
        given::<ServiceConfiguration>([])
            .when(ServiceConfigCommand::DefineSlaPolicy(w))
            .then_invalid("targets[1].warnPercent");
    }

    #[test]
    fn redefining_counts_versions_and_identical_redefinitions_change_nothing() {
        let p = examples::important_complaints(Uuid::now_v7());
        let first =
            given::<ServiceConfiguration>([]).when(ServiceConfigCommand::DefineSlaPolicy(p.clone())).then_count(1);
        given::<ServiceConfiguration>(first.clone())
            .when(ServiceConfigCommand::DefineSlaPolicy(p.clone()))
            .then_nothing();
        let mut changed = p.clone();
        changed.targets[0].minutes = 30;
        let second =
            given::<ServiceConfiguration>(first).when(ServiceConfigCommand::DefineSlaPolicy(changed)).then_count(1);
        let ServiceConfigEvent::SlaPolicyDefined(e) = &second[0] else { panic!() };
        assert_eq!(e.policy_version, 2);
    }

    #[test]
    fn ladders_and_catalogues_are_checked() {
        given::<ServiceConfiguration>([])
            .when(ServiceConfigCommand::DefineEscalationLevels { levels: vec![label("agent")] })
            .then_invalid("levels");
        given::<ServiceConfiguration>([])
            .when(ServiceConfigCommand::DefineEscalationLevels { levels: vec![label("agent"), label("agent")] })
            .then_invalid("levels[1]");
        let config = ServiceConfiguration::default();
        assert!(config.check_root_cause(&label("billing_error")).is_ok());
        assert!(config.check_root_cause(&label("bad_luck")).is_err());
    }
}
