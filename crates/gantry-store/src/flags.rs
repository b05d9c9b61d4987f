//! What the store keeps about feature flags, in storage terms: definitions are JSON text
//! here, parsed and validated by the server with the flag engine before they are written.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use ulid::Ulid;

/// The channel flag-set wake-ups travel on between servers (`f:<revision>` after a flag or
/// segment write, `t:<revision>` after an SDK token was revoked).
pub const FLAGS_CHANNEL: &str = "gantry_flags";

/// A flag of one service with its definition in each environment that has one.
#[derive(Debug, Clone, PartialEq)]
pub struct FlagRecord {
    pub service: String,
    pub name: String,
    /// `release`, `experiment`, `operational`, `kill-switch` or `permission`.
    pub flag_type: String,
    pub description: Option<String>,
    pub owner: Option<String>,
    pub created_at: DateTime<Utc>,
    pub created_by: String,
    pub archived_at: Option<DateTime<Utc>>,
    /// Bumped by every write to the flag or one of its environments: what its ETag names.
    pub version: i64,
    pub environments: BTreeMap<String, FlagEnvironmentRecord>,
}

/// One environment's definition of a flag.
#[derive(Debug, Clone, PartialEq)]
pub struct FlagEnvironmentRecord {
    /// JSON: enabled, strategies, variants, dependencies.
    pub definition: String,
    pub updated_at: DateTime<Utc>,
    pub updated_by: String,
}

/// One write to an existing flag.
#[derive(Debug, Clone, PartialEq)]
pub enum FlagWrite {
    /// Replaces the description, owner and type.
    Meta {
        flag_type: String,
        description: Option<String>,
        owner: Option<String>,
    },
    /// Replaces one environment's definition (JSON).
    Environment {
        environment: String,
        definition: String,
    },
    Archive,
    Restore,
}

/// A named list of constraints flags of one service share (JSON constraints).
#[derive(Debug, Clone, PartialEq)]
pub struct SegmentRecord {
    /// Assigned by the store; integers because Unleash SDKs expect them.
    pub id: i64,
    pub service: String,
    pub name: String,
    pub description: Option<String>,
    /// JSON array of constraints.
    pub constraints: String,
    pub version: i64,
    pub updated_at: DateTime<Utc>,
    pub updated_by: String,
}

/// The store-wide flag counters and the database's identity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FlagState {
    /// Random, made with the schema: part of every ETag, so another database's revision
    /// never matches.
    pub database_id: String,
    /// Bumped by every flag or segment write of any service.
    pub revision: i64,
    /// Bumped by every revocation of an SDK token.
    pub token_revision: i64,
}

/// Everything a service's flag set is built from, read in one consistent snapshot.
#[derive(Debug, Clone, PartialEq)]
pub struct FlagSnapshot {
    /// The service's revision: the global counter at its last flag or segment write
    /// (0 when it never had one).
    pub revision: i64,
    pub flags: Vec<FlagRecord>,
    pub segments: Vec<SegmentRecord>,
}

/// A change to a flag planned for later.
#[derive(Debug, Clone, PartialEq)]
pub struct FlagSchedule {
    pub id: Ulid,
    pub service: String,
    pub name: String,
    pub environment: String,
    /// JSON of the action (enable, disable, rollout).
    pub action: String,
    pub run_at: DateTime<Utc>,
    pub created_by: String,
    pub created_at: DateTime<Utc>,
    /// `pending`, `done`, `failed` or `cancelled`.
    pub state: String,
    pub ran_at: Option<DateTime<Utc>>,
    pub change_id: Option<Ulid>,
    pub error: Option<String>,
}

/// An SDK instance that registered with the server.
#[derive(Debug, Clone, PartialEq)]
pub struct SdkClient {
    pub service: String,
    pub environment: String,
    pub app_name: String,
    pub instance_id: String,
    pub sdk_version: Option<String>,
    pub strategies: Vec<String>,
    pub started_at: Option<DateTime<Utc>>,
    pub interval_ms: Option<i64>,
    pub first_seen_at: DateTime<Utc>,
    pub last_seen_at: DateTime<Utc>,
}

/// Evaluations of one flag in one environment within one hour, as SDKs reported them or a
/// server counted them.
#[derive(Debug, Clone, PartialEq)]
pub struct FlagUsage {
    pub service: String,
    pub environment: String,
    pub name: String,
    /// The hour's start.
    pub hour: DateTime<Utc>,
    pub yes: i64,
    pub no: i64,
    pub variants: BTreeMap<String, i64>,
}
