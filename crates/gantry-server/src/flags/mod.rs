//! The server's side of flags that is not HTTP: per service and environment an in-memory
//! flag set (the compiled engine and the client document), rebuilt when the service's
//! revision changes; the follower that learns of changes from the outbox's `NOTIFY` (and a
//! poll when one is lost); the SDK token cache; usage batches; scheduled changes.
//!
//! These are the exceptions to the server's "no state two servers could disagree on": each
//! is a cache of the database that lags it by at most [`POLL_INTERVAL`] when a wake-up is
//! lost, and none is ever written back.

pub mod ops;
pub mod schedule;
pub mod sets;
pub mod tokens;
pub mod usage;

use std::time::Duration;

pub use sets::{FlagSet, FlagSets};

/// How often a server re-reads the flag counters even when no wake-up came.
pub const POLL_INTERVAL: Duration = Duration::from_secs(2);
