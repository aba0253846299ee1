//! The satisfaction monitor: a record, per alert rule and period, that the period was reviewed
//! against the one before and which groups dropped beyond the rule's threshold (敏感因素预警).
//! The figures come from the read models (the scheduler computes them once the period is
//! over); this aggregate makes sure each period is judged once, however many schedulers run.

use std::collections::BTreeSet;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::{
    Aggregate, DomainError, event_family,
    values::Label,
    vocab::{ReviewPeriod, SatisfactionIndexKind},
};

/// The id of the monitor stream.
pub const SATISFACTION_MONITOR_ID: Uuid = Uuid::from_u128(0x6b65_6675_0000_4000_8000_0000_6d6f_6e69);

/// A group whose index dropped.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct IndexDrop {
    /// The department (none: the whole company).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub department: Option<Label>,
    /// The index in the previous period, in hundredths.
    pub previous_hundredths: i64,
    /// The index in the reviewed period, in hundredths.
    pub current_hundredths: i64,
    /// Responses in the previous period.
    pub previous_responses: u32,
    /// Responses in the reviewed period.
    pub current_responses: u32,
}

/// Commands on the monitor.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum SatisfactionMonitorCommand {
    /// Record the review of a period and the drops found.
    Review {
        /// The rule.
        rule_id: Uuid,
        /// The index.
        index: SatisfactionIndexKind,
        /// Week or month.
        period: ReviewPeriod,
        /// The period's label, e.g. `2026-11` or `2026-W47`.
        label: Label,
        /// Its start.
        starts_at: DateTime<Utc>,
        /// Its end (exclusive).
        ends_at: DateTime<Utc>,
        /// Groups compared.
        groups: u32,
        /// Groups that dropped beyond the threshold.
        drops: Vec<IndexDrop>,
        /// When reviewed.
        at: DateTime<Utc>,
    },
}

/// A period was reviewed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SatisfactionPeriodReviewed {
    /// The rule.
    pub rule_id: Uuid,
    /// The period's label.
    pub label: Label,
    /// Its start.
    pub starts_at: DateTime<Utc>,
    /// Its end (exclusive).
    pub ends_at: DateTime<Utc>,
    /// Groups compared.
    pub groups: u32,
    /// Alerts raised.
    pub alerts: u32,
    /// When.
    pub at: DateTime<Utc>,
}

/// An index dropped beyond a rule's threshold.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SatisfactionAlertRaised {
    /// The rule.
    pub rule_id: Uuid,
    /// The index.
    pub index: SatisfactionIndexKind,
    /// Week or month.
    pub period: ReviewPeriod,
    /// The period's label.
    pub label: Label,
    /// The drop.
    pub drop: IndexDrop,
    /// When.
    pub at: DateTime<Utc>,
}

event_family! {
    /// Facts recorded on the monitor stream.
    pub enum SatisfactionMonitorEvent {
        SatisfactionPeriodReviewed,
        SatisfactionAlertRaised,
    }
}

/// Which periods were reviewed.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SatisfactionMonitor {
    /// (rule, period label) reviewed.
    pub reviewed: BTreeSet<(Uuid, String)>,
}

impl SatisfactionMonitor {
    /// Whether a rule's period was reviewed.
    pub fn was_reviewed(&self, rule_id: Uuid, label: &str) -> bool {
        self.reviewed.contains(&(rule_id, label.to_string()))
    }
}

impl Aggregate for SatisfactionMonitor {
    const STREAM_TYPE: &'static str = "satisfaction_monitor";
    type Command = SatisfactionMonitorCommand;
    type Event = SatisfactionMonitorEvent;

    fn decide(&self, command: &SatisfactionMonitorCommand) -> Result<Vec<SatisfactionMonitorEvent>, DomainError> {
        let SatisfactionMonitorCommand::Review { rule_id, index, period, label, starts_at, ends_at, groups, drops, at } =
            command;
        if ends_at <= starts_at {
            return Err(DomainError::invalid("endsAt", "a period ends after it starts"));
        }
        if at < ends_at {
            return Err(DomainError::rejected("period_not_over", "a period is reviewed once it is over"));
        }
        if self.was_reviewed(*rule_id, label.as_str()) {
            return Ok(vec![]);
        }
        let mut events: Vec<SatisfactionMonitorEvent> = drops
            .iter()
            .map(|d| {
                SatisfactionAlertRaised {
                    rule_id: *rule_id,
                    index: *index,
                    period: *period,
                    label: label.clone(),
                    drop: d.clone(),
                    at: *at,
                }
                .into()
            })
            .collect();
        events.push(
            SatisfactionPeriodReviewed {
                rule_id: *rule_id,
                label: label.clone(),
                starts_at: *starts_at,
                ends_at: *ends_at,
                groups: *groups,
                alerts: drops.len() as u32,
                at: *at,
            }
            .into(),
        );
        Ok(events)
    }

    fn apply(&mut self, event: &SatisfactionMonitorEvent) {
        if let SatisfactionMonitorEvent::SatisfactionPeriodReviewed(e) = event {
            self.reviewed.insert((e.rule_id, e.label.as_str().to_string()));
        }
    }
}

/// Example values for tests, documentation and the event catalogue.
pub mod examples {
    use super::*;
    use crate::{satisfaction_config::examples::csat_drop, survey::examples::t};

    /// A drop of the network department's CSAT from 86.5 % to 78 %.
    pub fn network_drop() -> IndexDrop {
        IndexDrop {
            department: Some(Label::trusted("网络维护部")),
            previous_hundredths: 8650,
            current_hundredths: 7800,
            previous_responses: 120,
            current_responses: 96,
        }
    }

    /// One example of every monitor event.
    pub fn all_events() -> Vec<SatisfactionMonitorEvent> {
        let rule = csat_drop();
        vec![
            SatisfactionAlertRaised {
                rule_id: rule.rule_id,
                index: rule.index,
                period: rule.period,
                label: Label::trusted("2026-10"),
                drop: network_drop(),
                at: t("2026-11-01T00:05:00Z"),
            }
            .into(),
            SatisfactionPeriodReviewed {
                rule_id: rule.rule_id,
                label: Label::trusted("2026-10"),
                starts_at: t("2026-09-30T16:00:00Z"),
                ends_at: t("2026-10-31T16:00:00Z"),
                groups: 6,
                alerts: 1,
                at: t("2026-11-01T00:05:00Z"),
            }
            .into(),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::{examples::*, *};
    use crate::{satisfaction_config::examples::csat_drop, survey::examples::t, testing::given};

    fn review(at: &str, drops: Vec<IndexDrop>) -> SatisfactionMonitorCommand {
        let rule = csat_drop();
        SatisfactionMonitorCommand::Review {
            rule_id: rule.rule_id,
            index: rule.index,
            period: rule.period,
            label: Label::trusted("2026-10"),
            starts_at: t("2026-09-30T16:00:00Z"),
            ends_at: t("2026-10-31T16:00:00Z"),
            groups: 6,
            drops,
            at: t(at),
        }
    }

    #[test]
    fn a_period_is_reviewed_once_and_raises_one_alert_per_drop() {
        let events =
            given::<SatisfactionMonitor>([]).when(review("2026-11-01T00:05:00Z", vec![network_drop()])).then_count(2);
        assert!(matches!(events[0], SatisfactionMonitorEvent::SatisfactionAlertRaised(_)));
        given::<SatisfactionMonitor>(events).when(review("2026-11-01T00:06:00Z", vec![network_drop()])).then_nothing();
        given::<SatisfactionMonitor>([]).when(review("2026-10-31T15:00:00Z", vec![])).then_rejected("period_not_over");
        let quiet = given::<SatisfactionMonitor>([]).when(review("2026-11-01T00:05:00Z", vec![])).then_count(1);
        let SatisfactionMonitorEvent::SatisfactionPeriodReviewed(r) = &quiet[0] else { panic!() };
        assert_eq!((r.groups, r.alerts), (6, 0));
    }
}
