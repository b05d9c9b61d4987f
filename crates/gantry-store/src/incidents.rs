//! What the store takes to record incidents beyond the wire types in
//! `gantry_core::incident`: a timeline entry to append, which the store numbers.

use chrono::{DateTime, Utc};
use ulid::Ulid;

/// An entry to append to an incident's timeline; the store assigns its `seq`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewTimelineEntry {
    pub at: DateTime<Utc>,
    /// `opened`, `alert`, `change`, `note`, `action`.
    pub kind: String,
    pub actor: String,
    pub text: String,
    /// The change the entry is about.
    pub change: Option<Ulid>,
}
