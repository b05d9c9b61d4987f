//! What the store keeps for monitors: their files as written, heartbeat pings, each
//! series' state and the transitions between states. The store knows nothing of what a
//! monitor checks: a state is JSON text the caller writes and reads back as it was, and
//! state names and ping kinds are the caller's words.

use chrono::{DateTime, Utc};

/// A monitor file as last stored under its source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MonitorFileRecord {
    /// The file's name, as the monitors it defines are applied under.
    pub source: String,
    pub text: String,
    pub updated_by: String,
    pub updated_at: DateTime<Utc>,
}

/// A heartbeat ping as stored; `seq` orders a monitor's pings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PingRecord {
    pub seq: i64,
    pub monitor: String,
    pub at: DateTime<Utc>,
    pub kind: String,
    pub exit_code: Option<i32>,
    pub body: String,
}

/// A ping to store; the store assigns its `seq`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewPing {
    pub monitor: String,
    pub at: DateTime<Utc>,
    pub kind: String,
    pub exit_code: Option<i32>,
    pub body: String,
}

/// One series' state: the store keeps one per monitor and series.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MonitorStateRecord {
    pub monitor: String,
    pub series: String,
    /// The state as JSON, written and read by the monitors crate.
    pub doc: String,
    pub updated_at: DateTime<Utc>,
}

/// A state transition as stored; `seq` orders transitions across monitors.
#[derive(Debug, Clone, PartialEq)]
pub struct TransitionRecord {
    pub seq: i64,
    pub monitor: String,
    pub series: String,
    pub from: String,
    pub to: String,
    /// Whether the new state is hard (held for the monitor's `for` evaluations).
    pub hard: bool,
    /// The value that caused it, if any.
    pub value: Option<f64>,
    pub at: DateTime<Utc>,
}

/// A transition to append; the store assigns its `seq`.
#[derive(Debug, Clone, PartialEq)]
pub struct NewTransition {
    pub monitor: String,
    pub series: String,
    pub from: String,
    pub to: String,
    pub hard: bool,
    /// The value that caused it, if any. A NaN is stored as no value (SQLite cannot keep
    /// one), on both backends.
    pub value: Option<f64>,
    pub at: DateTime<Utc>,
}
