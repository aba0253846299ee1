//! Business calendars as aggregates: named, versioned definitions of working time that SLA
//! policies refer to. The arithmetic lives in [`crate::sla`].

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::{Aggregate, DomainError, event_family, sla::CalendarDefinition, values::Name};

/// Define or redefine a calendar.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DefineBusinessCalendar {
    /// Id.
    pub calendar_id: Uuid,
    /// Name, e.g. `Beijing office`.
    pub name: Name,
    /// Working hours, holidays, extra working days, time zone.
    pub definition: CalendarDefinition,
}

/// The command family of a calendar stream.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum BusinessCalendarCommand {
    /// See [`DefineBusinessCalendar`].
    Define(DefineBusinessCalendar),
}

/// A calendar's definition is now this. Deadlines already promised are not moved; new ones
/// (filing, resuming, reopening) use it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BusinessCalendarDefined {
    /// Id.
    pub calendar_id: Uuid,
    /// Name.
    pub name: Name,
    /// The definition.
    pub definition: CalendarDefinition,
}

event_family! {
    /// Facts recorded on a calendar stream.
    pub enum BusinessCalendarEvent {
        BusinessCalendarDefined,
    }
}

/// A calendar as defined.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct BusinessCalendarState {
    /// The current definition, once defined.
    pub defined: Option<BusinessCalendarDefined>,
}

impl Aggregate for BusinessCalendarState {
    const STREAM_TYPE: &'static str = "business_calendar";
    type Command = BusinessCalendarCommand;
    type Event = BusinessCalendarEvent;

    fn decide(&self, command: &BusinessCalendarCommand) -> Result<Vec<BusinessCalendarEvent>, DomainError> {
        let BusinessCalendarCommand::Define(c) = command;
        c.definition.validate().map_err(|e| e.within("definition"))?;
        let event = BusinessCalendarDefined {
            calendar_id: c.calendar_id,
            name: c.name.clone(),
            definition: c.definition.clone(),
        };
        if self.defined.as_ref() == Some(&event) {
            return Ok(vec![]);
        }
        Ok(vec![event.into()])
    }

    fn apply(&mut self, event: &BusinessCalendarEvent) {
        let BusinessCalendarEvent::BusinessCalendarDefined(e) = event;
        self.defined = Some(e.clone());
    }
}

/// Example values.
pub mod examples {
    use super::*;
    use crate::sla::{ExtraWorkingDay, Holiday};

    /// The Beijing office: the standard week, National Day 2024 off, with its make-up days.
    pub fn beijing() -> DefineBusinessCalendar {
        let mut definition = CalendarDefinition::standard();
        let date = |d: &str| d.parse().unwrap_or_else(|e| panic!("example date {d}: {e}"));
        definition.holidays =
            (1..=7).map(|d| Holiday { date: date(&format!("2024-10-0{d}")), name: Some("国庆节".into()) }).collect();
        let monday = definition.weekly[0].periods.clone();
        definition.extra_working_days = vec![
            ExtraWorkingDay { date: date("2024-09-29"), name: Some("国庆调休".into()), periods: monday.clone() },
            ExtraWorkingDay { date: date("2024-10-12"), name: Some("国庆调休".into()), periods: monday },
        ];
        DefineBusinessCalendar {
            calendar_id: Uuid::from_u128(0x0190_0000_0000_7000_8000_0000_0004_0001),
            name: Name::parse("name", "北京办公室 Beijing office").unwrap_or_else(|e| panic!("{e}")),
            definition,
        }
    }

    /// One example of every calendar event.
    pub fn all_events() -> Vec<BusinessCalendarEvent> {
        BusinessCalendarState::default()
            .decide(&BusinessCalendarCommand::Define(beijing()))
            .unwrap_or_else(|e| panic!("example calendar must be valid: {e}"))
    }
}
