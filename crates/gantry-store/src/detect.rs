//! What the store keeps for regression detection: each service's `[detect]` table as
//! written, and verdicts. The store knows nothing of how a verdict is reached: it is JSON
//! text the caller writes and reads back as it was (`doc`), beside the columns lists filter
//! on, which the caller fills. The one rule the store keeps is that a change, and a rollout,
//! has at most one regression verdict per metric.

use chrono::{DateTime, Utc};
use ulid::Ulid;

/// A service's `[detect]` table as last stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DetectConfigRecord {
    pub service: String,
    /// The `[detect]` table, as TOML.
    pub text: String,
    pub updated_by: String,
    pub updated_at: DateTime<Utc>,
}

/// A verdict as stored: the columns lists filter on, and the whole verdict as JSON.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerdictRecord {
    pub id: Ulid,
    pub service: String,
    pub environment: String,
    pub metric: String,
    /// The change judged, if any.
    pub change_id: Option<Ulid>,
    /// The rollout judged, if any.
    pub rollout_id: Option<Ulid>,
    pub at: DateTime<Utc>,
    /// Whether the verdict found a regression. A change, and a rollout, has at most one
    /// regression verdict per metric.
    pub regression: bool,
    /// The whole verdict as JSON, written and read by the caller.
    pub doc: String,
}
