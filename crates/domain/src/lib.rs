//! # kefu-domain
//!
//! The customer-service domain, pure: aggregates decide on commands and fold events; value
//! objects parse input once; closed vocabularies mirror `proto/`. Nothing here does I/O,
//! reads the clock or knows about PostgreSQL, Kafka or GraphQL (CI checks that `sqlx`,
//! `rdkafka` and `tokio` are not in this crate's dependency tree).
//!
//! Layout:
//! - [`aggregate`]: the `Aggregate` / `DomainEvent` traits and the `event_family!` macro;
//! - [`values`], [`vocab`], [`patch`]: value objects, vocabularies, three-way updates;
//! - one module per aggregate: [`customer`], [`interaction`], [`service_request`] with
//!   [`service_config`] and [`business_calendar`] (SLA arithmetic in [`sla`]),
//!   [`survey_template`], [`survey`], [`satisfaction_config`], [`satisfaction_monitor`];
//! - [`satisfaction`]: the satisfaction index arithmetic;
//! - [`testing`]: given/when/then for aggregate tests.

pub mod aggregate;
pub mod business_calendar;
pub mod customer;
mod error;
pub mod interaction;
pub mod patch;
pub mod satisfaction;
pub mod satisfaction_config;
pub mod satisfaction_monitor;
pub mod service_config;
pub mod service_request;
pub mod sla;
pub mod survey;
pub mod survey_template;
pub mod testing;
pub mod upcast;
pub mod values;
pub mod vocab;
mod wire_enum;

pub use aggregate::{Aggregate, DomainEvent};
pub use error::DomainError;
pub use patch::Patch;
pub use wire_enum::UnknownVariant;

/// Every event type of every aggregate, by stream type: the set `proto/` must define.
pub fn all_event_types() -> Vec<(&'static str, &'static [&'static str])> {
    vec![
        (<customer::Customer as Aggregate>::STREAM_TYPE, <customer::CustomerEvent as DomainEvent>::EVENT_TYPES),
        (
            <interaction::Interaction as Aggregate>::STREAM_TYPE,
            <interaction::InteractionEvent as DomainEvent>::EVENT_TYPES,
        ),
        (
            <service_request::ServiceRequest as Aggregate>::STREAM_TYPE,
            <service_request::ServiceRequestEvent as DomainEvent>::EVENT_TYPES,
        ),
        (
            <service_config::ServiceConfiguration as Aggregate>::STREAM_TYPE,
            <service_config::ServiceConfigEvent as DomainEvent>::EVENT_TYPES,
        ),
        (
            <business_calendar::BusinessCalendarState as Aggregate>::STREAM_TYPE,
            <business_calendar::BusinessCalendarEvent as DomainEvent>::EVENT_TYPES,
        ),
        (
            <survey_template::SurveyTemplate as Aggregate>::STREAM_TYPE,
            <survey_template::SurveyTemplateEvent as DomainEvent>::EVENT_TYPES,
        ),
        (<survey::Survey as Aggregate>::STREAM_TYPE, <survey::SurveyEvent as DomainEvent>::EVENT_TYPES),
        (
            <satisfaction_config::SatisfactionConfiguration as Aggregate>::STREAM_TYPE,
            <satisfaction_config::SatisfactionConfigEvent as DomainEvent>::EVENT_TYPES,
        ),
        (
            <satisfaction_monitor::SatisfactionMonitor as Aggregate>::STREAM_TYPE,
            <satisfaction_monitor::SatisfactionMonitorEvent as DomainEvent>::EVENT_TYPES,
        ),
    ]
}

/// An example event for the contract test and the catalogue.
#[derive(Debug, Clone)]
pub struct ExampleEvent {
    /// Stream type.
    pub stream_type: &'static str,
    /// Event type.
    pub event_type: &'static str,
    /// Payload schema version.
    pub schema_version: u32,
    /// Payload JSON.
    pub payload: serde_json::Value,
}

/// Examples of every event; together they fill every optional field. The contract test
/// pushes each through `proto/` and back, and the event catalogue shows them.
pub fn example_events() -> Vec<ExampleEvent> {
    fn collect<A: Aggregate>(events: Vec<A::Event>) -> Vec<ExampleEvent> {
        events
            .into_iter()
            .map(|e| {
                let (t, payload) =
                    e.to_payload().unwrap_or_else(|err| panic!("example {} must serialise: {err}", e.event_type()));
                ExampleEvent { stream_type: A::STREAM_TYPE, event_type: t, schema_version: e.schema_version(), payload }
            })
            .collect()
    }
    let mut all = collect::<customer::Customer>(customer::examples::all_events());
    all.extend(collect::<interaction::Interaction>(interaction::examples::all_events()));
    all.extend(collect::<service_request::ServiceRequest>(service_request::examples::all_events()));
    all.extend(collect::<service_config::ServiceConfiguration>(service_config::examples::all_events()));
    all.extend(collect::<business_calendar::BusinessCalendarState>(business_calendar::examples::all_events()));
    all.extend(collect::<survey_template::SurveyTemplate>(survey_template::examples::all_events()));
    all.extend(collect::<survey::Survey>(survey::examples::all_events()));
    all.extend(collect::<satisfaction_config::SatisfactionConfiguration>(satisfaction_config::examples::all_events()));
    all.extend(collect::<satisfaction_monitor::SatisfactionMonitor>(satisfaction_monitor::examples::all_events()));
    all
}
