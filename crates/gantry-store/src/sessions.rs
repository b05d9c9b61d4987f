//! Dashboard sessions: the dashboard signs a person in with an API token and gives the
//! browser a cookie holding a random id. The store keeps only the id's digest, so a copy
//! of the database cannot be replayed as cookies, and does not judge expiry: the caller
//! reads a session and decides, and prunes what has expired.

use chrono::{DateTime, Utc};

/// A dashboard session as stored. Times are kept to the microsecond.
#[derive(Clone, PartialEq, Eq)]
pub struct SessionRecord {
    /// Hex SHA-256 of the cookie's id; the key.
    pub id_digest: String,
    /// The token the person signed in with.
    pub token_name: String,
    /// That token's digest: the session is only as good as the token, read again by it.
    pub token_digest: String,
    /// The secret the session's CSRF tokens are derived from.
    pub csrf_secret: String,
    pub created_at: DateTime<Utc>,
    pub last_seen_at: DateTime<Utc>,
    /// When the session ends unless it is used again (moved on by each touch).
    pub idle_expires_at: DateTime<Utc>,
    /// When the session ends however much it is used.
    pub expires_at: DateTime<Utc>,
    pub user_agent: Option<String>,
}

/// Everything but the CSRF secret, so a session can be logged without leaking it.
impl std::fmt::Debug for SessionRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionRecord")
            .field("id_digest", &self.id_digest)
            .field("token_name", &self.token_name)
            .field("token_digest", &self.token_digest)
            .field("csrf_secret", &"<redacted>")
            .field("created_at", &self.created_at)
            .field("last_seen_at", &self.last_seen_at)
            .field("idle_expires_at", &self.idle_expires_at)
            .field("expires_at", &self.expires_at)
            .field("user_agent", &self.user_agent)
            .finish()
    }
}
