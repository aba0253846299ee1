//! Errors as clients see them: a message for people and stable `extensions.code` for code.
//!
//! | code | when |
//! |---|---|
//! | `VALIDATION` | a value is malformed or out of range (`extensions.field` names it) |
//! | `NOT_FOUND` | the command or query names something that does not exist |
//! | `ALREADY_EXISTS` | the command would create something that exists |
//! | `CONFLICT` | `expectedVersion` is stale (`extensions.currentVersion`), or a command id was reused |
//! | `FAILED_PRECONDITION` | valid, but not allowed in the current state (`extensions.rule`) |
//! | `UNAUTHENTICATED` / `FORBIDDEN` | no valid token / the token's roles do not allow it |
//! | `NOT_CAUGHT_UP` | `minPosition` was not reached within the wait limit |
//! | `UNAVAILABLE` | the database is down; nothing was changed, retry with the same `commandId` |
//! | `INTERNAL` | a bug; nothing was changed; details are in the server log, not in the response |

use async_graphql::{Error, ErrorExtensions};
use kefu_app::AppError;
use kefu_domain::DomainError;
use kefu_projections::ProjectionError;

/// Builds an error with a code.
pub fn coded(code: &'static str, message: impl Into<String>) -> Error {
    Error::new(message).extend_with(|_, e| e.set("code", code))
}

/// A validation error on a field.
pub fn invalid(field: impl Into<String>, message: impl Into<String>) -> Error {
    let field = field.into();
    let message = message.into();
    Error::new(format!("{field}: {message}")).extend_with(|_, e| {
        e.set("code", "VALIDATION");
        e.set("field", field.clone());
    })
}

/// Maps a domain refusal.
pub fn domain(e: DomainError, prefix: &str) -> Error {
    match e {
        DomainError::Invalid { field, message } => {
            let field = if prefix.is_empty() { field } else { format!("{prefix}.{field}") };
            invalid(field, message)
        }
        DomainError::NotFound { entity, id } => {
            // The input field that named it: `customer` → `input.customerId`.
            let field = if prefix.is_empty() { format!("{entity}Id") } else { format!("{prefix}.{entity}Id") };
            Error::new(format!("{entity} {id} does not exist")).extend_with(|_, e| {
                e.set("code", "NOT_FOUND");
                e.set("entity", entity);
                e.set("id", id.clone());
                e.set("field", field.clone());
            })
        }
        DomainError::AlreadyExists { entity, id } => {
            Error::new(format!("{entity} {id} already exists")).extend_with(|_, e| {
                e.set("code", "ALREADY_EXISTS");
                e.set("entity", entity);
                e.set("id", id.clone());
            })
        }
        DomainError::Rejected { rule, message } => Error::new(message).extend_with(|_, e| {
            e.set("code", "FAILED_PRECONDITION");
            e.set("rule", rule);
        }),
    }
}

/// Maps a command failure.
pub fn app(e: AppError, prefix: &str) -> Error {
    match e {
        AppError::Domain(d) => domain(d, prefix),
        AppError::Conflict { stream_type, stream_id, expected, actual } => Error::new(format!(
            "{stream_type} {stream_id} has changed: it is at version {actual}, not the expected {expected}"
        ))
        .extend_with(|_, e| {
            e.set("code", "CONFLICT");
            e.set("field", format!("{prefix}.expectedVersion"));
            e.set("expectedVersion", expected);
            e.set("currentVersion", actual);
        }),
        AppError::CommandIdReused { command_id, original_type } => {
            Error::new(format!("commandId {command_id} was already used for a different command ({original_type})"))
                .extend_with(|_, e| {
                    e.set("code", "CONFLICT");
                    e.set("field", format!("{prefix}.commandId"));
                })
        }
        AppError::Unavailable(m) => {
            tracing::warn!(error = %m, "command failed: store unavailable");
            coded("UNAVAILABLE", "the event store is unavailable; nothing was changed, retry with the same commandId")
        }
        AppError::Internal(m) => internal(&m),
    }
}

/// Maps a read-model failure.
pub fn projection(e: ProjectionError) -> Error {
    match e {
        ProjectionError::Unavailable(m) => {
            tracing::warn!(error = %m, "query failed: read model unavailable");
            coded("UNAVAILABLE", "the read models are unavailable right now; retry shortly")
        }
        other => internal(&other.to_string()),
    }
}

/// An internal error: logged with an id, which is all the client sees.
pub fn internal(detail: &str) -> Error {
    let id = uuid::Uuid::now_v7();
    tracing::error!(error_id = %id, detail, "internal error");
    Error::new(format!("internal error {id}; nothing was changed")).extend_with(|_, e| {
        e.set("code", "INTERNAL");
        e.set("errorId", id.to_string());
    })
}

/// Collects field errors so a client learns of every bad field at once.
#[derive(Default)]
pub struct Validator {
    errors: Vec<(String, String)>,
}

impl Validator {
    /// Runs a parse; records its error (with `prefix.` before the field) and returns `None`.
    pub fn check<T>(&mut self, prefix: &str, result: Result<T, DomainError>) -> Option<T> {
        match result {
            Ok(v) => Some(v),
            Err(DomainError::Invalid { field, message }) => {
                self.errors.push((format!("{prefix}.{field}"), message));
                None
            }
            Err(other) => {
                self.errors.push((prefix.to_string(), other.to_string()));
                None
            }
        }
    }

    /// Records an error directly.
    pub fn fail(&mut self, field: impl Into<String>, message: impl Into<String>) {
        self.errors.push((field.into(), message.into()));
    }

    /// `Ok` when nothing failed; otherwise one VALIDATION error naming the first field and
    /// listing all of them in `extensions.fields`.
    pub fn finish(self) -> Result<(), Error> {
        let Some((field, message)) = self.errors.first().cloned() else {
            return Ok(());
        };
        let all = self.errors;
        let text = all.iter().map(|(f, m)| format!("{f}: {m}")).collect::<Vec<_>>().join("; ");
        Err(Error::new(text).extend_with(|_, e| {
            e.set("code", "VALIDATION");
            e.set("field", field.clone());
            e.set("message", message.clone());
            let list: Vec<async_graphql::Value> = all
                .iter()
                .map(|(f, m)| {
                    let mut obj = async_graphql::indexmap::IndexMap::new();
                    obj.insert(async_graphql::Name::new("field"), async_graphql::Value::String(f.clone()));
                    obj.insert(async_graphql::Name::new("message"), async_graphql::Value::String(m.clone()));
                    async_graphql::Value::Object(obj)
                })
                .collect();
            e.set("fields", async_graphql::Value::List(list));
        }))
    }
}

/// Gives errors that async-graphql raised itself while checking the request (unknown enum
/// values, wrong types, missing required arguments) a `VALIDATION` code and the argument path.
pub fn classify_request_errors(response: &mut async_graphql::Response) {
    for error in &mut response.errors {
        let has_code = error.extensions.as_ref().is_some_and(|e| e.get("code").is_some());
        if has_code {
            continue;
        }
        let field = error
            .message
            .split_once("argument \"")
            .and_then(|(_, rest)| rest.split_once('"'))
            .map(|(f, _)| f.to_string());
        let ext = error.extensions.get_or_insert_with(Default::default);
        ext.set("code", "VALIDATION");
        if let Some(f) = field {
            ext.set("field", f);
        }
    }
}
