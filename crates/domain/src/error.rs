//! The one error type of the domain: what a command did wrong, never a technical failure.

/// Why the domain refused a command or a value.
///
/// Every variant names what was wrong precisely enough for a user to fix it: the field for
/// invalid values, the entity for missing or duplicate ones, and a stable rule name for
/// refused state transitions (frontends may switch on it).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DomainError {
    /// A value does not parse or is out of range.
    #[error("{field}: {message}")]
    Invalid {
        /// Path of the offending input field, e.g. `email` or `contacts.backupPhone`.
        field: String,
        /// What is wrong with it.
        message: String,
    },
    /// The command refers to something that does not exist.
    #[error("{entity} {id} does not exist")]
    NotFound {
        /// The kind of thing, e.g. `customer`.
        entity: &'static str,
        /// Its id as given.
        id: String,
    },
    /// The command would create something that already exists.
    #[error("{entity} {id} already exists")]
    AlreadyExists {
        /// The kind of thing.
        entity: &'static str,
        /// Its id.
        id: String,
    },
    /// The command is valid but not allowed in the current state.
    #[error("{message}")]
    Rejected {
        /// A stable machine-readable name of the rule, e.g. `request_closed`.
        rule: &'static str,
        /// A sentence for people.
        message: String,
    },
}

impl DomainError {
    /// Shorthand for [`DomainError::Invalid`].
    pub fn invalid(field: impl Into<String>, message: impl Into<String>) -> Self {
        DomainError::Invalid { field: field.into(), message: message.into() }
    }

    /// Shorthand for [`DomainError::Rejected`].
    pub fn rejected(rule: &'static str, message: impl Into<String>) -> Self {
        DomainError::Rejected { rule, message: message.into() }
    }

    /// Prefixes the field path of an [`DomainError::Invalid`] (e.g. `input.` + `email`).
    pub fn within(self, prefix: &str) -> Self {
        match self {
            DomainError::Invalid { field, message } => {
                DomainError::Invalid { field: format!("{prefix}.{field}"), message }
            }
            other => other,
        }
    }
}

impl From<crate::UnknownVariant> for DomainError {
    fn from(e: crate::UnknownVariant) -> Self {
        DomainError::invalid(e.vocabulary, e.to_string())
    }
}
