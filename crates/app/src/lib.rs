//! # kefu-app
//!
//! The application layer between the pure domain and the adapters:
//! - [`envelope`]: the event envelope (who, when, why) and the actor;
//! - [`store`]: the `EventStore` port and its contract; [`memory`]: an in-memory store for
//!   tests; the PostgreSQL adapter lives in `kefu-store`;
//! - [`commands`]: the write path — load, decide, append with expected version, once per
//!   command id.

pub mod batch;
pub mod cache;
pub mod commands;
pub mod envelope;
pub mod integrity;
pub mod memory;
pub mod service_requests;
pub mod store;
pub mod surveys;

pub use commands::{AppError, CommandMeta, CommandService, Read};
pub use envelope::{Actor, ActorKind, RecordedEvent};
pub use memory::InMemoryEventStore;
pub use store::{AppendOutcome, AppendRequest, EventStore, StoreError};
