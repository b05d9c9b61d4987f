//! What the store keeps for notifications: the alert grouper's state, deliveries (one row
//! per notification and receiver, claimed by one server at a time) and silences. The store
//! does not read the JSON it keeps: the grouper's state, a notification and a silence are
//! the monitors crate's types, written and read back by the server.

use chrono::{DateTime, Utc};
use ulid::Ulid;

/// A delivery to queue: due at once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewDelivery {
    pub id: Ulid,
    /// The notification's idempotency id.
    pub notification_id: String,
    pub receiver: String,
    pub service: String,
    pub environment: String,
    pub summary: String,
    pub doc: String,
    pub created_at: DateTime<Utc>,
}

/// A delivery as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeliveryRecord {
    pub id: Ulid,
    pub notification_id: String,
    pub receiver: String,
    pub service: String,
    pub environment: String,
    pub summary: String,
    pub doc: String,
    /// `pending`, `delivered` or `failed`.
    pub state: String,
    pub attempts: u32,
    pub created_at: DateTime<Utc>,
    pub first_attempt_at: Option<DateTime<Utc>>,
    pub last_attempt_at: Option<DateTime<Utc>>,
    pub next_attempt_at: Option<DateTime<Utc>>,
    pub delivered_at: Option<DateTime<Utc>>,
    pub last_error: Option<String>,
}

/// How an attempt ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeliveryOutcome {
    Delivered,
    /// Failed; try again at this time.
    Retry {
        at: DateTime<Utc>,
        error: String,
    },
    /// Failed for good.
    Failed {
        error: String,
    },
}

/// A silence or maintenance window as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SilenceRecord {
    pub id: Ulid,
    /// `silence` or `maintenance`.
    pub kind: String,
    pub doc: String,
    pub created_by: String,
    pub created_at: DateTime<Utc>,
    /// A silence's end; `None` for a maintenance window.
    pub ends_at: Option<DateTime<Utc>>,
    pub expired_at: Option<DateTime<Utc>>,
    pub expired_by: Option<String>,
}
