//! What can go wrong in a store, in terms the API can turn into answers.

use gantry_core::Invalid;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The thing asked for does not exist; the message names it.
    #[error("{0}")]
    NotFound(String),
    /// The request collides with what is stored (a name taken, a service in use).
    #[error("{0}")]
    Conflict(String),
    /// The record changed since the caller read it (optimistic concurrency); nothing was
    /// written.
    #[error("{0}")]
    Stale(String),
    /// The request breaks a domain rule checked against stored state.
    #[error(transparent)]
    Invalid(#[from] Invalid),
    /// The database schema is newer than this binary can run against.
    #[error("{0}")]
    SchemaTooNew(String),
    /// The store was configured wrongly (bad URL, unwritable path).
    #[error("{0}")]
    Config(String),
    /// Stored data could not be read back; a bug or a hand edit.
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
    /// The database failed or could not be reached.
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
}

impl StoreError {
    /// Whether the database itself is unavailable (as opposed to a bad request).
    pub fn is_unavailable(&self) -> bool {
        matches!(
            self,
            StoreError::Database(
                sqlx::Error::PoolTimedOut
                    | sqlx::Error::PoolClosed
                    | sqlx::Error::Io(_)
                    | sqlx::Error::Tls(_)
                    | sqlx::Error::WorkerCrashed
            )
        )
    }
}
