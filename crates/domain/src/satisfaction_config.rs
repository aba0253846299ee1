//! Satisfaction configuration: which resolved or closed requests get which survey, through
//! which channel, with what sampling, expiry, reminders and closed-loop rule (dispatch
//! policies), and which index drops raise an alert (alert rules). One stream with a
//! well-known id, like the service configuration.
//!
//! A policy applies to services completed after it was (re)defined: replaying the log or
//! importing old history never surveys customers about the past.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::{
    Aggregate, DomainError, event_family,
    survey::FollowUpRule,
    values::{Category, Name, Text},
    vocab::{Channel, RequestType, ReviewPeriod, SatisfactionIndexKind, SurveyTrigger, ValueTier},
};

/// The id of the satisfaction configuration stream.
pub const SATISFACTION_CONFIGURATION_ID: Uuid = Uuid::from_u128(0x6b65_6675_0000_4000_8000_0000_7361_7466);

/// Which completed requests a policy surveys. An empty list matches anything.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DispatchSelector {
    /// Request types.
    #[serde(default)]
    pub request_types: Vec<RequestType>,
    /// Category prefixes, case-insensitive.
    #[serde(default)]
    pub category_prefixes: Vec<Category>,
    /// Customer value tiers.
    #[serde(default)]
    pub customer_tiers: Vec<ValueTier>,
    /// Channels the request came in through.
    #[serde(default)]
    pub channels: Vec<Channel>,
}

impl DispatchSelector {
    /// Whether a request with these attributes is covered.
    pub fn matches(
        &self,
        request_type: RequestType,
        category: &Category,
        tier: Option<ValueTier>,
        channel: Channel,
    ) -> bool {
        let category = category.as_str().to_lowercase();
        (self.request_types.is_empty() || self.request_types.contains(&request_type))
            && (self.category_prefixes.is_empty()
                || self.category_prefixes.iter().any(|p| category.starts_with(&p.as_str().to_lowercase())))
            && (self.customer_tiers.is_empty() || tier.is_some_and(|t| self.customer_tiers.contains(&t)))
            && (self.channels.is_empty() || self.channels.contains(&channel))
    }
}

/// When and how surveys go out after service.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DispatchPolicy {
    /// Id.
    pub policy_id: Uuid,
    /// Name.
    pub name: Name,
    /// The template sent (its newest published version at sending).
    pub template_id: Uuid,
    /// On resolution or on closing.
    pub trigger: SurveyTrigger,
    /// Which requests.
    #[serde(default)]
    pub selector: DispatchSelector,
    /// Share of matching requests surveyed, 1–100 (decided per request, the same way every
    /// time).
    pub sampling_percent: u32,
    /// The channel (none: the one the request came in through).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub channel: Option<Channel>,
    /// Hours until the survey expires.
    pub expires_after_hours: u32,
    /// Reminders, in hours after sending, ascending.
    #[serde(default)]
    pub remind_after_hours: Vec<u32>,
    /// Only customers who consented to surveys.
    #[serde(default)]
    pub require_consent: bool,
    /// The closed-loop rule.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub follow_up: Option<FollowUpRule>,
    /// Among matching policies the highest precedence wins.
    #[serde(default)]
    pub precedence: i32,
}

impl DispatchPolicy {
    /// Checks the policy's own rules.
    pub fn validate(&self) -> Result<(), DomainError> {
        if !matches!(self.trigger, SurveyTrigger::OnResolved | SurveyTrigger::OnClosed) {
            return Err(DomainError::invalid("trigger", "a dispatch policy sends ON_RESOLVED or ON_CLOSED"));
        }
        if !(1..=100).contains(&self.sampling_percent) {
            return Err(DomainError::invalid("samplingPercent", "between 1 and 100"));
        }
        if !(1..=24 * 90).contains(&self.expires_after_hours) {
            return Err(DomainError::invalid("expiresAfterHours", "between 1 hour and 90 days"));
        }
        for (i, h) in self.remind_after_hours.iter().enumerate() {
            if *h == 0 || *h >= self.expires_after_hours || (i > 0 && *h <= self.remind_after_hours[i - 1]) {
                return Err(DomainError::invalid(
                    format!("remindAfterHours[{i}]"),
                    "reminders are ascending and before expiry",
                ));
            }
        }
        if let Some(rule) = &self.follow_up {
            rule.validate("followUp")?;
        }
        Ok(())
    }

    /// Whether a request falls in the sample: a hash of the policy and the request, so the
    /// decision is the same on every replay.
    pub fn samples(&self, request_id: Uuid) -> bool {
        if self.sampling_percent >= 100 {
            return true;
        }
        let h = Uuid::new_v5(&self.policy_id, request_id.as_bytes());
        let bucket = u32::from_be_bytes([h.as_bytes()[0], h.as_bytes()[1], h.as_bytes()[2], h.as_bytes()[3]]) % 100;
        bucket < self.sampling_percent
    }
}

/// An alert on a drop of an index against the previous period.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AlertRule {
    /// Id.
    pub rule_id: Uuid,
    /// Name.
    pub name: Name,
    /// The index watched.
    pub index: SatisfactionIndexKind,
    /// The period compared with the one before.
    pub period: ReviewPeriod,
    /// Per department (else the whole company).
    #[serde(default)]
    pub per_department: bool,
    /// A drop of at least this much raises the alert, in hundredths of the index's unit
    /// (500 = 5 percentage points of CSAT, 5 NPS points; 50 = 0.5 on the CES scale).
    pub drop_hundredths: u32,
    /// Groups with fewer responses in either period are not judged.
    pub min_responses: u32,
    /// IANA time zone of the periods.
    pub time_zone: String,
}

impl AlertRule {
    /// Checks the rule.
    pub fn validate(&self) -> Result<(), DomainError> {
        if self.drop_hundredths == 0 {
            return Err(DomainError::invalid("drop", "must be more than 0"));
        }
        if self.min_responses == 0 {
            return Err(DomainError::invalid("minResponses", "at least 1"));
        }
        if self.time_zone.parse::<chrono_tz::Tz>().is_err() {
            return Err(DomainError::invalid("timeZone", format!("`{}` is not an IANA time zone", self.time_zone)));
        }
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------------

/// Commands on the satisfaction configuration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum SatisfactionConfigCommand {
    /// Create or replace a dispatch policy, effective from `at`.
    DefineDispatchPolicy {
        /// The policy.
        policy: DispatchPolicy,
        /// From when it applies.
        at: DateTime<Utc>,
    },
    /// Stop a dispatch policy.
    RetireDispatchPolicy {
        /// Which.
        policy_id: Uuid,
        /// Why.
        reason: Option<Text>,
    },
    /// Create or replace an alert rule.
    DefineAlertRule(AlertRule),
    /// Stop an alert rule.
    RetireAlertRule {
        /// Which.
        rule_id: Uuid,
    },
}

/// A dispatch policy was created or replaced.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DispatchPolicyDefined {
    /// The policy.
    pub policy: DispatchPolicy,
    /// 1, then counting replacements.
    pub policy_version: i64,
    /// Services completed from this time on are surveyed under it.
    pub effective_from: DateTime<Utc>,
}

/// A dispatch policy stopped.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DispatchPolicyRetired {
    /// Which.
    pub policy_id: Uuid,
    /// Why.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<Text>,
}

/// An alert rule was created or replaced.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AlertRuleDefined {
    /// The rule.
    pub rule: AlertRule,
}

/// An alert rule stopped.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AlertRuleRetired {
    /// Which.
    pub rule_id: Uuid,
}

event_family! {
    /// Facts recorded on the satisfaction configuration stream.
    pub enum SatisfactionConfigEvent {
        DispatchPolicyDefined,
        DispatchPolicyRetired,
        AlertRuleDefined,
        AlertRuleRetired,
    }
}

/// A dispatch policy in force.
#[derive(Debug, Clone, PartialEq)]
pub struct ActivePolicy {
    /// The policy.
    pub policy: DispatchPolicy,
    /// Its version.
    pub version: i64,
    /// From when it applies.
    pub effective_from: DateTime<Utc>,
}

/// The configuration as it stands.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SatisfactionConfiguration {
    /// Active dispatch policies.
    pub policies: BTreeMap<Uuid, ActivePolicy>,
    /// Retired dispatch policies.
    pub retired: BTreeMap<Uuid, ActivePolicy>,
    /// Active alert rules.
    pub alert_rules: BTreeMap<Uuid, AlertRule>,
}

/// A completed service, as dispatch sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct CompletedService<'a> {
    /// The request.
    pub request_id: Uuid,
    /// Resolved or closed.
    pub trigger: SurveyTrigger,
    /// When (business time).
    pub at: DateTime<Utc>,
    /// Type.
    pub request_type: RequestType,
    /// Category.
    pub category: &'a Category,
    /// Customer tier.
    pub tier: Option<ValueTier>,
    /// Channel.
    pub channel: Channel,
}

impl SatisfactionConfiguration {
    /// The policy that surveys a completed service, if any: among the active policies for its
    /// trigger that match it and were in force when it was completed, the highest precedence
    /// (then the most recently defined); `None` also when the request falls outside the
    /// chosen policy's sample.
    pub fn dispatch_for(&self, s: &CompletedService<'_>) -> Option<&ActivePolicy> {
        let chosen = self
            .policies
            .values()
            .filter(|p| {
                p.policy.trigger == s.trigger
                    && p.effective_from <= s.at
                    && p.policy.selector.matches(s.request_type, s.category, s.tier, s.channel)
            })
            .max_by(|a, b| (a.policy.precedence, a.effective_from).cmp(&(b.policy.precedence, b.effective_from)))?;
        chosen.policy.samples(s.request_id).then_some(chosen)
    }
}

impl Aggregate for SatisfactionConfiguration {
    const STREAM_TYPE: &'static str = "satisfaction_configuration";
    type Command = SatisfactionConfigCommand;
    type Event = SatisfactionConfigEvent;

    fn decide(&self, command: &SatisfactionConfigCommand) -> Result<Vec<SatisfactionConfigEvent>, DomainError> {
        match command {
            SatisfactionConfigCommand::DefineDispatchPolicy { policy, at } => {
                policy.validate()?;
                let current = self.policies.get(&policy.policy_id).or_else(|| self.retired.get(&policy.policy_id));
                if self.policies.get(&policy.policy_id).is_some_and(|p| p.policy == *policy) {
                    return Ok(vec![]);
                }
                let version = current.map(|p| p.version + 1).unwrap_or(1);
                Ok(vec![
                    DispatchPolicyDefined { policy: policy.clone(), policy_version: version, effective_from: *at }
                        .into(),
                ])
            }
            SatisfactionConfigCommand::RetireDispatchPolicy { policy_id, reason } => {
                if !self.policies.contains_key(policy_id) {
                    return Err(DomainError::NotFound { entity: "dispatchPolicy", id: policy_id.to_string() });
                }
                Ok(vec![DispatchPolicyRetired { policy_id: *policy_id, reason: reason.clone() }.into()])
            }
            SatisfactionConfigCommand::DefineAlertRule(rule) => {
                rule.validate()?;
                if self.alert_rules.get(&rule.rule_id) == Some(rule) {
                    return Ok(vec![]);
                }
                Ok(vec![AlertRuleDefined { rule: rule.clone() }.into()])
            }
            SatisfactionConfigCommand::RetireAlertRule { rule_id } => {
                if !self.alert_rules.contains_key(rule_id) {
                    return Err(DomainError::NotFound { entity: "alertRule", id: rule_id.to_string() });
                }
                Ok(vec![AlertRuleRetired { rule_id: *rule_id }.into()])
            }
        }
    }

    fn apply(&mut self, event: &SatisfactionConfigEvent) {
        match event {
            SatisfactionConfigEvent::DispatchPolicyDefined(e) => {
                self.retired.remove(&e.policy.policy_id);
                self.policies.insert(
                    e.policy.policy_id,
                    ActivePolicy {
                        policy: e.policy.clone(),
                        version: e.policy_version,
                        effective_from: e.effective_from,
                    },
                );
            }
            SatisfactionConfigEvent::DispatchPolicyRetired(e) => {
                if let Some(p) = self.policies.remove(&e.policy_id) {
                    self.retired.insert(e.policy_id, p);
                }
            }
            SatisfactionConfigEvent::AlertRuleDefined(e) => {
                self.alert_rules.insert(e.rule.rule_id, e.rule.clone());
            }
            SatisfactionConfigEvent::AlertRuleRetired(e) => {
                self.alert_rules.remove(&e.rule_id);
            }
        }
    }
}

/// Example values for tests, documentation and the event catalogue.
pub mod examples {
    use super::*;
    use crate::{survey::examples::rule, survey_template::examples::TEMPLATE_ID};

    /// Survey every resolved complaint by SMS, half of the inquiries.
    pub fn complaints() -> DispatchPolicy {
        DispatchPolicy {
            policy_id: Uuid::from_u128(0x0190_0000_0000_7000_8000_0000_0006_0001),
            name: Name::trusted("投诉处理后回访 After every complaint"),
            template_id: TEMPLATE_ID,
            trigger: SurveyTrigger::OnResolved,
            selector: DispatchSelector {
                request_types: vec![RequestType::Complaint],
                category_prefixes: vec![Category::parse("c", "宽带").unwrap_or_else(|e| panic!("{e}"))],
                customer_tiers: vec![ValueTier::Important, ValueTier::Ordinary],
                channels: vec![Channel::Phone],
            },
            sampling_percent: 100,
            channel: Some(Channel::Sms),
            expires_after_hours: 7 * 24,
            remind_after_hours: vec![24, 72],
            require_consent: true,
            follow_up: Some(rule()),
            precedence: 10,
        }
    }

    /// Alert when a department's monthly CSAT drops by 5 points.
    pub fn csat_drop() -> AlertRule {
        AlertRule {
            rule_id: Uuid::from_u128(0x0190_0000_0000_7000_8000_0000_0007_0001),
            name: Name::trusted("部门满意度下降 Department CSAT drop"),
            index: SatisfactionIndexKind::Csat,
            period: ReviewPeriod::Month,
            per_department: true,
            drop_hundredths: 500,
            min_responses: 30,
            time_zone: "Asia/Shanghai".into(),
        }
    }

    /// One example of every configuration event.
    pub fn all_events() -> Vec<SatisfactionConfigEvent> {
        vec![
            DispatchPolicyDefined {
                policy: complaints(),
                policy_version: 1,
                effective_from: crate::survey::examples::t("2026-11-01T00:00:00Z"),
            }
            .into(),
            DispatchPolicyRetired { policy_id: complaints().policy_id, reason: Text::parse("r", "换新问卷").ok() }
                .into(),
            AlertRuleDefined { rule: csat_drop() }.into(),
            AlertRuleRetired { rule_id: csat_drop().rule_id }.into(),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::{examples::*, *};
    use crate::{survey::examples::t, testing::given};

    fn service<'a>(category: &'a Category, at: &str, request_id: Uuid) -> CompletedService<'a> {
        CompletedService {
            request_id,
            trigger: SurveyTrigger::OnResolved,
            at: t(at),
            request_type: RequestType::Complaint,
            category,
            tier: Some(ValueTier::Important),
            channel: Channel::Phone,
        }
    }

    fn config(policies: Vec<(DispatchPolicy, &str)>) -> SatisfactionConfiguration {
        let events: Vec<SatisfactionConfigEvent> = policies
            .into_iter()
            .map(|(p, at)| DispatchPolicyDefined { policy: p, policy_version: 1, effective_from: t(at) }.into())
            .collect();
        SatisfactionConfiguration::fold(events.iter())
    }

    #[test]
    fn policies_apply_to_matching_services_completed_after_they_were_defined() {
        let c = config(vec![(complaints(), "2026-11-01T00:00:00Z")]);
        let broadband = Category::parse("c", "宽带 / 掉线").unwrap();
        let id = Uuid::from_u128(1);
        assert!(c.dispatch_for(&service(&broadband, "2026-11-02T00:00:00Z", id)).is_some());
        assert!(c.dispatch_for(&service(&broadband, "2026-10-31T23:59:59Z", id)).is_none(), "before the policy");
        let tv = Category::parse("c", "电视").unwrap();
        assert!(c.dispatch_for(&service(&tv, "2026-11-02T00:00:00Z", id)).is_none(), "another category");
        let mut closed = service(&broadband, "2026-11-02T00:00:00Z", id);
        closed.trigger = SurveyTrigger::OnClosed;
        assert!(c.dispatch_for(&closed).is_none(), "the policy sends on resolution");
        let mut potential = service(&broadband, "2026-11-02T00:00:00Z", id);
        potential.tier = None;
        assert!(c.dispatch_for(&potential).is_none(), "tiers named, tier unknown");
    }

    #[test]
    fn the_highest_precedence_wins() {
        let mut broad = complaints();
        broad.policy_id = Uuid::from_u128(2);
        broad.selector = DispatchSelector::default();
        broad.precedence = 99;
        let c = config(vec![(complaints(), "2026-11-01T00:00:00Z"), (broad.clone(), "2026-11-01T00:00:00Z")]);
        let cat = Category::parse("c", "宽带").unwrap();
        assert_eq!(
            c.dispatch_for(&service(&cat, "2026-11-02T00:00:00Z", Uuid::from_u128(1))).unwrap().policy.policy_id,
            broad.policy_id
        );
    }

    #[test]
    fn sampling_is_deterministic_and_close_to_its_rate() {
        let mut p = complaints();
        for rate in [1u32, 10, 50, 90] {
            p.sampling_percent = rate;
            let sampled = (0..10_000u128).filter(|i| p.samples(Uuid::from_u128(i * 7919 + 1))).count();
            let expected = rate as usize * 100;
            assert!(sampled.abs_diff(expected) < 250, "{rate}%: {sampled} of 10000");
            assert_eq!(p.samples(Uuid::from_u128(42)), p.samples(Uuid::from_u128(42)));
        }
        p.sampling_percent = 100;
        assert!((0..1000u128).all(|i| p.samples(Uuid::from_u128(i))));
    }

    #[test]
    fn policies_and_rules_are_checked() {
        let at = t("2026-11-01T00:00:00Z");
        let bad = |f: fn(&mut DispatchPolicy), field: &str| {
            let mut p = complaints();
            f(&mut p);
            given::<SatisfactionConfiguration>([])
                .when(SatisfactionConfigCommand::DefineDispatchPolicy { policy: p, at })
                .then_invalid(field);
        };
        bad(|p| p.sampling_percent = 0, "samplingPercent");
        bad(|p| p.sampling_percent = 101, "samplingPercent");
        bad(|p| p.trigger = SurveyTrigger::Campaign, "trigger");
        bad(|p| p.remind_after_hours = vec![72, 24], "remindAfterHours[1]");
        bad(|p| p.remind_after_hours = vec![24 * 7], "remindAfterHours[0]");
        bad(|p| p.follow_up.as_mut().unwrap().likert_below = 1, "followUp.likertBelow");
        let mut r = csat_drop();
        r.time_zone = "Mars/Base".into();
        given::<SatisfactionConfiguration>([])
            .when(SatisfactionConfigCommand::DefineAlertRule(r))
            .then_invalid("timeZone");
    }

    #[test]
    fn redefining_counts_versions_and_moves_the_effective_time() {
        let first = given::<SatisfactionConfiguration>([])
            .when(SatisfactionConfigCommand::DefineDispatchPolicy {
                policy: complaints(),
                at: t("2026-11-01T00:00:00Z"),
            })
            .then_count(1);
        given::<SatisfactionConfiguration>(first.clone())
            .when(SatisfactionConfigCommand::DefineDispatchPolicy {
                policy: complaints(),
                at: t("2026-11-05T00:00:00Z"),
            })
            .then_nothing();
        let mut changed = complaints();
        changed.sampling_percent = 50;
        let second = given::<SatisfactionConfiguration>(first)
            .when(SatisfactionConfigCommand::DefineDispatchPolicy { policy: changed, at: t("2026-11-05T00:00:00Z") })
            .then_count(1);
        let SatisfactionConfigEvent::DispatchPolicyDefined(e) = &second[0] else { panic!() };
        assert_eq!((e.policy_version, e.effective_from), (2, t("2026-11-05T00:00:00Z")));
    }
}
