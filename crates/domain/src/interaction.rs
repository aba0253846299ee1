//! Interactions (客户互动 / 联系记录): every contact with a customer, one stream each.
//!
//! An interaction is its own stream rather than an event on the customer's stream, so that a
//! busy customer's contacts never conflict with edits to their file; the customer id travels
//! in the envelope and keeps all of a customer's events on one Kafka partition, in order.
//! The command handler checks that the customer exists (on the write side) before deciding.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use chrono::{DateTime, Utc};

use crate::{
    Aggregate, DomainError, event_family,
    values::{StaffRef, Text},
    vocab::{Channel, Direction, Initiator, ServiceMode},
};

/// A follow-up action agreed during the contact (后续作业).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FollowUpAction {
    /// What is to be done.
    pub description: Text,
    /// By when.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub due_at: Option<DateTime<Utc>>,
    /// By whom.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<StaffRef>,
}

/// Record a contact with a customer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LogInteraction {
    /// The new interaction's id (chosen by the caller).
    pub interaction_id: Uuid,
    /// Who was contacted or made contact.
    pub customer_id: Uuid,
    /// Through which channel.
    pub channel: Channel,
    /// Inbound or outbound.
    pub direction: Direction,
    /// Who started it.
    pub initiator: Initiator,
    /// Staff or self-service.
    pub mode: ServiceMode,
    /// The member of staff who handled it (required when `mode` is staff).
    pub handled_by: Option<StaffRef>,
    /// What it was about.
    pub summary: Text,
    /// Tasks handed over to others (交办事项).
    pub tasks_handed_over: Vec<Text>,
    /// Follow-up actions (后续作业).
    pub follow_up_actions: Vec<FollowUpAction>,
    /// Whether the customer's matter was settled in this contact without a transfer.
    pub resolved_at_first_contact: bool,
    /// Length of the contact.
    pub duration_seconds: Option<u32>,
    /// A service request this contact belongs to.
    pub service_request_id: Option<Uuid>,
}

/// The command family of an interaction stream.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum InteractionCommand {
    /// See [`LogInteraction`].
    Log(LogInteraction),
}

/// A contact with a customer took place.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct InteractionLogged {
    /// The interaction's id (also the stream id).
    pub interaction_id: Uuid,
    /// The customer.
    pub customer_id: Uuid,
    /// Channel.
    pub channel: Channel,
    /// Direction.
    pub direction: Direction,
    /// Initiator.
    pub initiator: Initiator,
    /// Staff or self-service.
    pub mode: ServiceMode,
    /// Who handled it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub handled_by: Option<StaffRef>,
    /// Summary.
    pub summary: Text,
    /// Tasks handed over.
    #[serde(default)]
    pub tasks_handed_over: Vec<Text>,
    /// Follow-up actions.
    #[serde(default)]
    pub follow_up_actions: Vec<FollowUpAction>,
    /// Settled without transfer.
    #[serde(default)]
    pub resolved_at_first_contact: bool,
    /// Length in seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration_seconds: Option<u32>,
    /// The service request it belongs to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_request_id: Option<Uuid>,
}

event_family! {
    /// Facts recorded on an interaction stream.
    pub enum InteractionEvent {
        InteractionLogged,
    }
}

/// An interaction as recorded.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Interaction {
    /// The logged contact, once logged.
    pub logged: Option<InteractionLogged>,
}

impl Aggregate for Interaction {
    const STREAM_TYPE: &'static str = "interaction";
    type Command = InteractionCommand;
    type Event = InteractionEvent;

    fn decide(&self, command: &InteractionCommand) -> Result<Vec<InteractionEvent>, DomainError> {
        let InteractionCommand::Log(c) = command;
        if self.logged.is_some() {
            return Err(DomainError::AlreadyExists { entity: "interaction", id: c.interaction_id.to_string() });
        }
        if c.mode == ServiceMode::Staff && c.handled_by.is_none() {
            return Err(DomainError::invalid("handledBy", "a contact handled by staff must name who handled it"));
        }
        if c.resolved_at_first_contact && !c.tasks_handed_over.is_empty() {
            return Err(DomainError::invalid(
                "resolvedAtFirstContact",
                "a contact that handed tasks over to others was not resolved at first contact",
            ));
        }
        if c.duration_seconds == Some(0) {
            return Err(DomainError::invalid("durationSeconds", "must be positive when given"));
        }
        Ok(vec![
            InteractionLogged {
                interaction_id: c.interaction_id,
                customer_id: c.customer_id,
                channel: c.channel,
                direction: c.direction,
                initiator: c.initiator,
                mode: c.mode,
                handled_by: c.handled_by.clone(),
                summary: c.summary.clone(),
                tasks_handed_over: c.tasks_handed_over.clone(),
                follow_up_actions: c.follow_up_actions.clone(),
                resolved_at_first_contact: c.resolved_at_first_contact,
                duration_seconds: c.duration_seconds,
                service_request_id: c.service_request_id,
            }
            .into(),
        ])
    }

    fn apply(&mut self, event: &InteractionEvent) {
        match event {
            InteractionEvent::InteractionLogged(e) => self.logged = Some(e.clone()),
        }
    }
}

/// Example values, used by tests, documentation and the event catalogue.
pub mod examples {
    use super::*;
    use crate::customer::examples::{register_person, staff};

    fn text(s: &str) -> Text {
        Text::parse("text", s).unwrap_or_else(|e| panic!("example text {s}: {e}"))
    }

    /// A phone call handled by an agent, every field filled.
    pub fn log_phone_call() -> LogInteraction {
        LogInteraction {
            interaction_id: Uuid::from_u128(0x0190_0000_0000_7000_8000_0000_0001_0001),
            customer_id: register_person().0,
            channel: Channel::Phone,
            direction: Direction::Inbound,
            initiator: Initiator::Customer,
            mode: ServiceMode::Staff,
            handled_by: Some(staff("agent.chen", "陈静")),
            summary: text("客户来电反映宽带频繁掉线"),
            tasks_handed_over: vec![text("网络部检查光猫")],
            follow_up_actions: vec![FollowUpAction {
                description: text("48 小时内回访"),
                due_at: DateTime::parse_from_rfc3339("2026-03-03T10:00:00Z").ok().map(|d| d.with_timezone(&Utc)),
                owner: Some(staff("agent.chen", "陈静")),
            }],
            resolved_at_first_contact: false,
            duration_seconds: Some(420),
            service_request_id: Some(Uuid::from_u128(0x0190_0000_0000_7000_8000_0000_0002_0001)),
        }
    }

    /// One example of every interaction event.
    pub fn all_events() -> Vec<InteractionEvent> {
        Interaction::default()
            .decide(&InteractionCommand::Log(log_phone_call()))
            .unwrap_or_else(|e| panic!("example interaction must be accepted: {e}"))
    }
}

#[cfg(test)]
mod tests {
    use super::examples::*;
    use super::*;
    use crate::{DomainEvent, testing::given};

    #[test]
    fn logging_records_the_contact() {
        let cmd = log_phone_call();
        let events = given::<Interaction>([]).when(InteractionCommand::Log(cmd.clone())).then_count(1);
        let InteractionEvent::InteractionLogged(e) = &events[0];
        assert_eq!(e.customer_id, cmd.customer_id);
        assert_eq!(e.channel, Channel::Phone);
        assert_eq!(e.tasks_handed_over, cmd.tasks_handed_over);
    }

    #[test]
    fn an_interaction_is_logged_once() {
        let cmd = log_phone_call();
        let history = all_events();
        let err = given::<Interaction>(history).when(InteractionCommand::Log(cmd)).then_err();
        assert!(matches!(err, DomainError::AlreadyExists { entity: "interaction", .. }));
    }

    #[test]
    fn staffed_contacts_name_who_handled_them() {
        let mut cmd = log_phone_call();
        cmd.handled_by = None;
        given::<Interaction>([]).when(InteractionCommand::Log(cmd.clone())).then_invalid("handledBy");
        cmd.mode = ServiceMode::SelfService;
        given::<Interaction>([]).when(InteractionCommand::Log(cmd)).then_count(1);
    }

    #[test]
    fn a_handover_is_not_a_first_contact_resolution() {
        let mut cmd = log_phone_call();
        cmd.resolved_at_first_contact = true;
        given::<Interaction>([]).when(InteractionCommand::Log(cmd)).then_invalid("resolvedAtFirstContact");
    }

    #[test]
    fn events_survive_json() {
        for e in all_events() {
            let (t, payload) = e.to_payload().unwrap();
            assert_eq!(InteractionEvent::from_payload(t, payload).unwrap(), e);
        }
    }
}
