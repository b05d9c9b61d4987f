//! Gantry's storage: one [`Store`] interface, two backends (SQLite, PostgreSQL) that pass one
//! conformance suite (`tests/conformance.rs`).
//!
//! Invariant: this is the only crate that knows SQL, and it knows nothing of HTTP. Every
//! fact that several servers must agree on lives in the database: ids are ULIDs made by
//! whoever records, the change stream is a table ordered by commit (`change_events.seq`),
//! wake-ups cross servers through PostgreSQL `NOTIFY`, and work one server must drive alone
//! is held by a lease with an expiry (`leases`).

mod error;
mod group_commit;
mod postgres;
mod queries;
mod schema;
mod sqlite;
#[cfg(feature = "testing")]
pub mod testing;

use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use gantry_core::{
    Change, ChangeEvent, ChangePatch, ChangeQuery, NewService, Scope, Service, TokenInfo,
};
use ulid::Ulid;

pub use error::StoreError;
pub use postgres::PostgresStore;
pub use schema::{SchemaStatus, SCHEMA_VERSION};
pub use sqlite::SqliteStore;

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// Which database a store runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

impl Backend {
    pub fn as_str(self) -> &'static str {
        match self {
            Backend::Sqlite => "sqlite",
            Backend::Postgres => "postgres",
        }
    }
}

/// How `changes_by_tags` combines several tags.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TagMatch {
    /// A change must carry every tag (Graphite's default).
    All,
    /// A change must carry at least one tag.
    Any,
}

/// Options a store is opened with.
#[derive(Debug, Clone)]
pub struct StoreOptions {
    /// Record changes for services that are not registered, registering them on first use.
    pub auto_create_services: bool,
    /// Connections to PostgreSQL (SQLite uses one writer and a few readers).
    pub max_connections: u32,
}

impl Default for StoreOptions {
    fn default() -> Self {
        StoreOptions {
            auto_create_services: true,
            max_connections: 16,
        }
    }
}

/// A token as the auth layer sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct TokenRecord {
    pub info: TokenInfo,
    pub revoked: bool,
}

/// Everything Gantry keeps about its state. Implemented by [`SqliteStore`] and
/// [`PostgresStore`]; both must behave the same (the conformance suite says how).
#[async_trait]
pub trait Store: Send + Sync + 'static {
    fn backend(&self) -> Backend;

    /// Succeeds when the database answers a query.
    async fn ping(&self) -> Result<()>;

    /// The schema as this binary found and left it at start-up.
    fn schema_status(&self) -> &SchemaStatus;

    /// Records a new change and its `created` stream event in one transaction. Registers its
    /// service (if allowed) and environment on first use. Returns the event's sequence number.
    async fn insert_change(&self, change: &Change) -> Result<i64>;

    /// Records many changes at once, as history: in batches of one transaction each, with
    /// no stream events (an import is not news). For importing a log from another tool and
    /// for loading benchmark data. Returns how many were stored.
    async fn import_changes(&self, changes: &[Change]) -> Result<u64>;

    /// A change with its history, or `None`.
    async fn get_change(&self, id: Ulid) -> Result<Option<Change>>;

    /// Changes matching `query`, newest first by `(started_at, id)`, at most `query.limit`.
    async fn list_changes(&self, query: &ChangeQuery) -> Result<Vec<Change>>;

    /// Changes started in `[since, until)` carrying the given tags (kind, service,
    /// environment or a label), newest first, at most `limit`.
    async fn changes_by_tags(
        &self,
        tags: &[String],
        matching: TagMatch,
        since: DateTime<Utc>,
        until: DateTime<Utc>,
        limit: u32,
    ) -> Result<Vec<Change>>;

    /// Applies `patch` atomically: the change, a history entry and an `updated` stream event.
    async fn update_change(
        &self,
        id: Ulid,
        patch: &ChangePatch,
        actor: &str,
        now: DateTime<Utc>,
    ) -> Result<Change>;

    /// Stream events with `seq > after`, in order, at most `limit`.
    async fn events_after(&self, after: i64, limit: u32) -> Result<Vec<ChangeEvent>>;

    /// The newest event's sequence number (0 when there is none).
    async fn last_event_seq(&self) -> Result<i64>;

    /// A receiver that is woken with the newest known `seq` whenever an event is committed,
    /// by this server or (on PostgreSQL) any other. A wake-up, not the data: readers then
    /// call [`Store::events_after`].
    fn subscribe(&self) -> tokio::sync::watch::Receiver<i64>;

    /// Deletes stream events older than `before`; returns how many.
    async fn prune_events(&self, before: DateTime<Utc>) -> Result<u64>;

    async fn create_service(&self, service: &NewService, now: DateTime<Utc>) -> Result<Service>;
    async fn get_service(&self, name: &str) -> Result<Option<Service>>;
    async fn list_services(&self) -> Result<Vec<Service>>;
    /// Deletes a service's registration. Refused with `Conflict` while changes name it,
    /// unless `force`; its changes stay in the log either way.
    async fn delete_service(&self, name: &str, force: bool) -> Result<()>;
    async fn list_environments(&self) -> Result<Vec<String>>;

    /// Stores a token's digest and description. `Conflict` when an active token has the name.
    async fn create_token(&self, info: &TokenInfo, digest: &str) -> Result<()>;
    /// The token with this digest, revoked or not, or `None`.
    async fn token_by_digest(&self, digest: &str) -> Result<Option<TokenRecord>>;
    /// Active (not revoked) tokens by name.
    async fn list_tokens(&self) -> Result<Vec<TokenInfo>>;
    /// Revokes the active token with this name; `NotFound` when there is none.
    async fn revoke_token(&self, name: &str, now: DateTime<Utc>) -> Result<()>;
    /// Creates the first admin token if, and only if, the store has no token at all. Safe
    /// when several servers start together. Returns whether it created one.
    async fn bootstrap_admin_token(&self, info: &TokenInfo, digest: &str) -> Result<bool>;

    /// Takes or renews the lease `name` for `holder` until `now + ttl`. Succeeds when the
    /// lease was free, expired, or already held by `holder`.
    async fn try_acquire_lease(
        &self,
        name: &str,
        holder: &str,
        ttl: Duration,
        now: DateTime<Utc>,
    ) -> Result<bool>;
    /// Gives the lease up if `holder` holds it.
    async fn release_lease(&self, name: &str, holder: &str) -> Result<()>;

    /// Closes connections, waiting for work in flight.
    async fn close(&self);
}

/// Opens the store a URL names: `sqlite://PATH` or `postgres://…`.
pub async fn open(url: &str, options: StoreOptions) -> Result<Box<dyn Store>> {
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        Ok(Box::new(PostgresStore::open(url, options).await?))
    } else if let Some(path) = url.strip_prefix("sqlite://") {
        Ok(Box::new(
            SqliteStore::open(std::path::Path::new(path), options).await?,
        ))
    } else {
        Err(StoreError::Config(format!(
            "database URL '{}' is not supported: use sqlite://PATH or postgres://USER@HOST/DB",
            redact_url(url)
        )))
    }
}

/// A URL with any password replaced, for messages and logs.
pub fn redact_url(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme_end), Some(at)) if at > scheme_end => {
            let credentials = &url[scheme_end + 3..at];
            match credentials.split_once(':') {
                Some((user, _)) => format!("{}{user}:***{}", &url[..scheme_end + 3], &url[at..]),
                None => url.to_string(),
            }
        }
        _ => url.to_string(),
    }
}

/// Parses the comma-separated scopes column.
fn parse_scopes(s: &str) -> Result<Vec<Scope>> {
    Scope::parse_list(s).map_err(|e| StoreError::Corrupt(format!("token scopes '{s}': {e}")))
}

fn micros(t: DateTime<Utc>) -> i64 {
    t.timestamp_micros()
}

fn from_micros(m: i64) -> Result<DateTime<Utc>> {
    DateTime::from_timestamp_micros(m)
        .ok_or_else(|| StoreError::Corrupt(format!("timestamp {m} is out of range")))
}

#[cfg(test)]
mod tests {
    #[test]
    fn redacts_passwords() {
        assert_eq!(
            super::redact_url("postgres://u:secret@h/db"),
            "postgres://u:***@h/db"
        );
        assert_eq!(super::redact_url("postgres://u@h/db"), "postgres://u@h/db");
        assert_eq!(super::redact_url("sqlite://x.db"), "sqlite://x.db");
    }
}
