//! Gantry's domain: the types every other crate speaks (changes, services, tokens and their
//! scopes) and the pure rules over them (validation, status transitions, time formats).
//!
//! Invariant: this crate does no I/O. It knows nothing of HTTP, SQL, files or tokio, so the
//! rules here are unit-tested exhaustively and reused unchanged by the server, the CLI, the
//! agent and SDKs.

pub mod change;
pub mod deploy;
pub mod detect;
pub mod http;
pub mod incident;
pub mod migrate;
pub mod migrate_job;
pub mod names;
pub mod report;
pub mod scope;
pub mod service;
pub mod ship;
pub mod time;
pub mod token;

pub use change::{
    Change, ChangeEvent, ChangeEventKind, ChangeHistoryEntry, ChangeKind, ChangePage, ChangePatch,
    ChangeQuery, ChangeStatus, CommitRange, Cursor, Link, NewChange, Size, ValidNewChange,
};
pub use deploy::{DeployConfig, HealthCheck, Hook, Hooks};
pub use scope::{Grant, Scope, ScopeName};
pub use service::{NewService, Service};
pub use token::{NewToken, TokenInfo};

/// A rule that a request broke. The message names the field and says what was expected,
/// because it is shown to the user as it is.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Invalid(pub String);

impl Invalid {
    pub fn new(message: impl Into<String>) -> Self {
        Invalid(message.into())
    }
}
