//! Given/when/then for aggregates: `given(history).when(command).then(events)`.
//!
//! ```
//! # use kefu_domain::{testing::given, customer::*};
//! # let (id, register) = kefu_domain::customer::examples::register_person();
//! given::<Customer>([])
//!     .when(CustomerCommand::Register(register.clone()))
//!     .then_count(1);
//! ```

use crate::{Aggregate, DomainError};

/// A history of events to start from.
pub fn given<A: Aggregate>(history: impl IntoIterator<Item = A::Event>) -> Given<A> {
    let history: Vec<A::Event> = history.into_iter().collect();
    Given { state: A::fold(history.iter()) }
}

/// The state after the history.
pub struct Given<A: Aggregate> {
    state: A,
}

impl<A: Aggregate> Given<A> {
    /// Decides on a command.
    pub fn when(self, command: A::Command) -> Then<A> {
        let result = self.state.decide(&command);
        Then { state: self.state, result }
    }
}

/// The outcome of a command.
pub struct Then<A: Aggregate> {
    state: A,
    result: Result<Vec<A::Event>, DomainError>,
}

impl<A: Aggregate> Then<A>
where
    A::Event: PartialEq,
{
    /// Asserts exactly these events; returns the state after applying them.
    #[track_caller]
    pub fn then(self, expected: impl IntoIterator<Item = A::Event>) -> A {
        let expected: Vec<A::Event> = expected.into_iter().collect();
        match self.result {
            Ok(events) => {
                assert_eq!(events, expected, "unexpected events");
                let mut state = self.state;
                for e in &events {
                    state.apply(e);
                }
                state
            }
            Err(e) => panic!("expected events {expected:?}, got error {e:?}"),
        }
    }

    /// Asserts that nothing changed (no events, no error).
    #[track_caller]
    pub fn then_nothing(self) {
        self.then([]);
    }

    /// Asserts the number of events and returns them.
    #[track_caller]
    pub fn then_count(self, n: usize) -> Vec<A::Event> {
        match self.result {
            Ok(events) => {
                assert_eq!(events.len(), n, "unexpected events: {events:?}");
                events
            }
            Err(e) => panic!("expected {n} events, got error {e:?}"),
        }
    }

    /// Asserts an error and returns it for closer inspection.
    #[track_caller]
    pub fn then_err(self) -> DomainError {
        match self.result {
            Ok(events) => panic!("expected an error, got events {events:?}"),
            Err(e) => e,
        }
    }

    /// Asserts a refusal by the named rule.
    #[track_caller]
    pub fn then_rejected(self, rule: &str) {
        match self.then_err() {
            DomainError::Rejected { rule: r, .. } if r == rule => {}
            other => panic!("expected rejection `{rule}`, got {other:?}"),
        }
    }

    /// Asserts an invalid-field error on this field.
    #[track_caller]
    pub fn then_invalid(self, field: &str) {
        match self.then_err() {
            DomainError::Invalid { field: f, .. } if f == field => {}
            other => panic!("expected invalid `{field}`, got {other:?}"),
        }
    }
}
