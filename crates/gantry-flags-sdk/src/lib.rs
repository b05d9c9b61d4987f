//! Gantry's Rust SDK for feature flags.
//!
//! A [`Client`] keeps an in-memory copy of one service's flags in one environment (the
//! scope of its `client:SERVICE@ENV` token) and evaluates them in process with
//! [`gantry_flags::Engine`]: an evaluation never waits for the network, never fails and
//! never panics. A background task keeps the copy current:
//!
//! 1. an optional bootstrap document (a file, or one given in memory) is loaded first,
//!    so a service can start while the server is unreachable;
//! 2. the instance registers (`POST /api/client/register`);
//! 3. it fetches `GET /api/client/features` (with `If-None-Match`), then follows
//!    `GET /api/client/stream` and fetches again on each `ready`/`updated` event; while the
//!    stream is down it polls every refresh interval and reconnects with capped,
//!    jittered exponential backoff;
//! 4. it reports how often each flag was asked for (`POST /api/client/metrics`) every
//!    metrics interval and when shut down.
//!
//! When the server answers garbage, an error or nothing, the last good flags stay in
//! use; the outage is logged once (a `tracing` warning) and so is the recovery.
//!
//! ```no_run
//! # async fn demo() {
//! use gantry_flags_sdk::{Client, Config, Context};
//! use std::time::Duration;
//!
//! let client = Client::start(
//!     Config::new("https://gantry.example", "client-token", "checkout")
//!         .with_bootstrap_file("/etc/checkout/flags.json"),
//! )
//! .await;
//! client.wait_until_ready(Duration::from_secs(2)).await;
//! let ctx = Context::default().with_user_id("user-42");
//! if client.is_enabled("checkout.new", &ctx) {
//!     // …
//! }
//! client.shutdown().await;
//! # }
//! ```
//!
//! [`GantryProvider`] offers the same client to OpenFeature's Rust SDK.

mod client;
mod config;
mod document;
mod error;
mod health;
mod metrics;
mod openfeature;
mod sync;

pub use client::{Client, Evaluation, Source, Status, Variant};
pub use config::Config;
pub use document::load_document;
pub use error::Error;
pub use openfeature::{context_from_openfeature, GantryProvider};

pub use gantry_flags::{ClientFeatures, Context, Engine, Payload, Reason};

/// The flag Gantry's convention reads as the service's read-only kill switch.
pub const READ_ONLY_FLAG: &str = "read-only";

/// This SDK's name and version, as sent to the server.
pub const SDK_VERSION: &str = concat!("gantry-flags-sdk:", env!("CARGO_PKG_VERSION"));
