//! Gantry's server: configuration, the HTTP API (axum), authentication by scoped tokens,
//! the OpenAPI document, self-metrics, and the process lifecycle (listen, TLS, shutdown).
//!
//! Invariant: this is the only crate that serves HTTP, and it holds no state two servers on
//! one database could disagree on: everything durable or shared goes through
//! `gantry_store::Store`. The exceptions are caches of the database that lag it by at most
//! a few seconds and are never written back: per-revision flag sets, the SDK token cache
//! and per-server usage batches (`flags`). Handlers are thin; rules live in `gantry_core`
//! and `gantry_flags`.

pub mod api;
pub mod app;
pub mod auth;
pub mod auth_failures;
pub mod config;
#[cfg(feature = "dashboard")]
pub mod dashboard;
pub mod detect;
pub mod error;
pub mod extract;
pub mod flags;
pub mod forward;
pub mod incidents;
pub mod ingest;
pub mod limits;
pub mod metrics;
pub mod migrate;
pub mod monitors;
pub mod notify;
pub mod openapi_rules;
mod openapi_toml;
pub mod remote_read;
pub mod report;
pub mod serve;
pub mod ship;
pub mod state;

pub use app::app;
pub use config::{Overrides, ServerConfig};
pub use serve::{run, ADMIN_TOKEN_FILE};
pub use state::AppState;
