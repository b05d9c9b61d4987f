//! Monitors kept in version control, and the rules that turn their evaluations into
//! alerts and notifications:
//! - [`file`](mod@file): the monitor file (`[[threshold]]`, `[[heartbeat]]`, `[[http]]`), its
//!   checks, its canonical form and diffs between versions;
//! - [`ping`]: what a heartbeat ping's URL and body say;
//! - [`logs`]: a service file's `[[logs]]` entries (globs that must stay in the service's
//!   directory, regular expressions under a size limit);
//! - [`state`]: OK / WARNING / CRITICAL / UNKNOWN, the evaluation of each kind of check,
//!   and Nagios' soft/hard machine per series;
//! - [`flapping`]: Nagios' weighted percent state change, with hysteresis;
//! - [`silence`]: silences and weekly maintenance windows;
//! - [`alerts`]: alerts grouped by service and environment on Alertmanager's timings, and
//!   the retry schedule of deliveries.
//!
//! Invariant: no I/O, no clock, no randomness. Callers read files, fetch series, send
//! notifications and pass `now`; the same inputs always give the same answers, so the
//! server, the CLI (`gantry monitor apply --dry-run`) and tests agree.

pub mod alerts;
pub mod error;
pub mod file;
pub mod flapping;
pub mod logs;
pub mod pattern;
pub mod ping;
pub mod silence;
pub mod state;

pub use alerts::{
    next_attempt, retry_delay, Alert, AlertSubject, GroupKey, GroupTimings, Grouper, Notification,
    Retry,
};
pub use error::{ErrorKind, FileError, FileErrorDetails, Source};
pub use file::{
    diff, Check, DiffLine, Direction, HeartbeatCheck, HttpCheck, HttpMethod, KeyChange, Limits,
    MissingData, Monitor, MonitorFile, MonitorKind, Reduce, ThresholdCheck,
};
pub use flapping::{FlapChange, FlapDetector, FlapThresholds};
pub use logs::{parse_logs, validate_logs, LogWatch, LogWatchSpec};
pub use pattern::Pattern;
pub use ping::{is_ping_key, ping_log, MAX_PING_BODY};
pub use silence::{in_maintenance, is_held, MaintenanceWindow, Matcher, Silence};
pub use state::{
    evaluate_heartbeat, evaluate_http, evaluate_threshold, Evaluation, HeartbeatLog, HttpResult,
    MonitorState, Observation, Ping, PingKind, SeriesState, State, Transition, Window,
};
