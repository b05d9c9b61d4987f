//! Gantry's storage: one [`Store`] interface, two backends (SQLite, PostgreSQL) that pass one
//! conformance suite (`tests/conformance.rs`).
//!
//! Invariant: this is the only crate that knows SQL, and it knows nothing of HTTP. Every
//! fact that several servers must agree on lives in the database: ids are ULIDs made by
//! whoever records, the change stream is a table ordered by commit (`change_events.seq`),
//! wake-ups cross servers through PostgreSQL `NOTIFY`, and work one server must drive alone
//! is held by a lease with an expiry (`leases`).

pub mod detect;
mod detect_queries;
mod error;
mod flag_queries;
pub mod flags;
mod group_commit;
mod incident_queries;
pub mod incidents;
mod migrate_queries;
mod monitor_queries;
pub mod monitors;
pub mod notify;
mod notify_queries;
mod postgres;
mod queries;
mod schema;
mod session_queries;
pub mod sessions;
mod ship_queries;
mod sqlite;
#[cfg(feature = "testing")]
pub mod testing;

use std::collections::BTreeMap;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use gantry_core::incident::{Incident, TimelineEntry};
use gantry_core::migrate_job::{Job, JobLogLine, JobState};
use gantry_core::ship::{Build, Host, HostFacts, HostRelease, Rollout, Task};
use gantry_core::{
    Change, ChangeEvent, ChangePatch, ChangeQuery, NewService, Scope, Service, TokenInfo,
};
use ulid::Ulid;

pub use detect::{DetectConfigRecord, VerdictRecord};
pub use error::StoreError;
pub use flags::{
    FlagEnvironmentRecord, FlagRecord, FlagSchedule, FlagSnapshot, FlagState, FlagUsage, FlagWrite,
    SdkClient, SegmentRecord, FLAGS_CHANNEL,
};
pub use incidents::NewTimelineEntry;
pub use monitors::{
    MonitorFileRecord, MonitorStateRecord, NewPing, NewTransition, PingRecord, TransitionRecord,
};
pub use notify::{DeliveryOutcome, DeliveryRecord, NewDelivery, SilenceRecord};
pub use postgres::PostgresStore;
pub use schema::{SchemaStatus, SCHEMA_VERSION};
pub use sessions::SessionRecord;
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

/// The channel shipping wake-ups travel on between servers.
pub const SHIP_CHANNEL: &str = "gantry_ship";

/// A wake-up about shipping work, sent by whichever server changed the tasks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ShipSignal {
    /// These hosts have new tasks to fetch.
    Dispatched(Vec<String>),
    /// An agent reported on a task of this rollout.
    Reported(Ulid),
}

impl ShipSignal {
    /// `NOTIFY` payloads (PostgreSQL caps one at 8000 bytes): `d:host,host…` or `r:<rollout>`.
    pub fn payloads(&self) -> Vec<String> {
        match self {
            ShipSignal::Reported(id) => vec![format!("r:{id}")],
            ShipSignal::Dispatched(hosts) => {
                let mut out = Vec::new();
                let mut cur = String::from("d:");
                for h in hosts {
                    if cur.len() + h.len() + 1 > 7000 {
                        out.push(std::mem::replace(&mut cur, String::from("d:")));
                    }
                    if cur.len() > 2 {
                        cur.push(',');
                    }
                    cur.push_str(h);
                }
                if cur.len() > 2 {
                    out.push(cur);
                }
                out
            }
        }
    }

    pub fn parse(payload: &str) -> Option<ShipSignal> {
        if let Some(hosts) = payload.strip_prefix("d:") {
            Some(ShipSignal::Dispatched(
                hosts
                    .split(',')
                    .filter(|h| !h.is_empty())
                    .map(str::to_string)
                    .collect(),
            ))
        } else {
            payload
                .strip_prefix("r:")?
                .parse()
                .ok()
                .map(ShipSignal::Reported)
        }
    }
}

/// A filter over builds; every field set must match. Newest first.
#[derive(Debug, Clone, Default)]
pub struct BuildQuery {
    pub service: Option<String>,
    pub version: Option<String>,
    /// Ids starting with this (case-insensitive).
    pub id_prefix: Option<String>,
    pub sha256: Option<String>,
    pub limit: u32,
}

/// A service's deploy configuration as stored (the TOML text as applied).
#[derive(Debug, Clone, PartialEq)]
pub struct DeployConfigRecord {
    pub service: String,
    pub config: String,
    pub updated_by: String,
    pub updated_at: DateTime<Utc>,
}

/// A rollout that left an environment running a build.
#[derive(Debug, Clone, PartialEq)]
pub struct Deployment {
    pub service: String,
    pub environment: String,
    pub at: DateTime<Utc>,
    pub rollout_id: Ulid,
    pub build_id: Ulid,
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
    /// Revokes the active token with this name; `NotFound` when there is none. Its
    /// dashboard sessions are deleted in the same transaction. Revoking an SDK token bumps
    /// [`FlagState::token_revision`] and wakes [`Store::subscribe_flags`] on every server,
    /// so their token caches drop it.
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

    // ---- shipping ----

    /// Stores a build; `Conflict` when the service has that version already.
    async fn insert_build(&self, build: &Build) -> Result<()>;
    async fn get_build(&self, id: Ulid) -> Result<Option<Build>>;
    async fn find_builds(&self, query: &BuildQuery) -> Result<Vec<Build>>;
    async fn delete_build(&self, id: Ulid) -> Result<()>;
    /// Builds that retention must keep: what environments run and what open tasks install.
    async fn builds_in_use(&self, service: &str) -> Result<Vec<Ulid>>;

    /// Size and chunk count of an artifact kept in the database.
    async fn blob_size(&self, sha256: &str) -> Result<Option<(u64, u32)>>;
    /// Writes chunk `n` of an upload in progress (invisible until [`Store::commit_blob`]).
    async fn put_blob_chunk(&self, upload_key: &str, n: u32, data: &[u8]) -> Result<()>;
    /// Makes an upload's chunks the blob `sha256`, atomically.
    async fn commit_blob(
        &self,
        upload_key: &str,
        sha256: &str,
        size: u64,
        chunks: u32,
        now: DateTime<Utc>,
    ) -> Result<()>;
    /// Drops an upload that failed.
    async fn drop_blob_chunks(&self, upload_key: &str) -> Result<()>;
    async fn blob_chunk(&self, sha256: &str, n: u32) -> Result<Option<Vec<u8>>>;
    async fn delete_blob(&self, sha256: &str) -> Result<()>;

    /// Stores a service's deploy config; returns the previous text.
    async fn put_deploy_config(
        &self,
        service: &str,
        config: &str,
        actor: &str,
        now: DateTime<Utc>,
    ) -> Result<Option<String>>;
    async fn get_deploy_config(&self, service: &str) -> Result<Option<DeployConfigRecord>>;

    /// Enrolls a host (or changes its environment and roles).
    async fn enroll_host(
        &self,
        name: &str,
        environment: &str,
        roles: &[String],
        now: DateTime<Utc>,
    ) -> Result<()>;
    /// A host, with `status` left as `new` for the caller to compute.
    async fn get_host(&self, name: &str) -> Result<Option<Host>>;
    async fn list_hosts(&self, environment: Option<&str>) -> Result<Vec<Host>>;
    /// Records a heartbeat with what the agent reported.
    async fn host_seen(
        &self,
        name: &str,
        facts: &HostFacts,
        releases: &BTreeMap<String, HostRelease>,
        now: DateTime<Utc>,
    ) -> Result<()>;
    async fn set_host_maintenance(&self, name: &str, on: bool) -> Result<()>;
    async fn delete_host(&self, name: &str) -> Result<()>;

    /// Creates a rollout with its tasks. `Conflict` naming who holds the service and
    /// environment when another rollout is active there. Returns the hosts it dispatched to.
    async fn insert_rollout(&self, rollout: &Rollout, tasks: &[Task]) -> Result<Vec<String>>;
    async fn get_rollout(&self, id: Ulid) -> Result<Option<Rollout>>;
    /// Asks the server driving a rollout to `pause`, `resume` or `abort:<actor>` it.
    async fn control_rollout(&self, id: Ulid, control: &str) -> Result<()>;
    async fn active_rollout(&self, service: &str, environment: &str) -> Result<Option<Rollout>>;
    async fn list_rollouts(
        &self,
        service: Option<&str>,
        environment: Option<&str>,
        active_only: bool,
        limit: u32,
    ) -> Result<Vec<Rollout>>;
    /// Writes one orchestrator tick atomically. Returns the hosts it dispatched to.
    async fn save_rollout(
        &self,
        rollout: &Rollout,
        changed: &[&Task],
        new: &[Task],
        deployment: Option<&Deployment>,
    ) -> Result<Vec<String>>;
    async fn rollout_tasks(&self, rollout: Ulid) -> Result<Vec<Task>>;
    async fn host_tasks(&self, host: &str, open_only: bool, limit: u32) -> Result<Vec<Task>>;
    async fn get_task(&self, id: Ulid) -> Result<Option<Task>>;
    /// Stores an agent's update of its open task; `false` when the task was no longer open.
    async fn report_task(&self, task: &Task) -> Result<bool>;
    /// Tasks outside any rollout (a host converging to its environment's build).
    async fn insert_loose_tasks(&self, tasks: &[Task]) -> Result<()>;
    /// Builds an environment was left on, newest first.
    async fn deployments(
        &self,
        service: &str,
        environment: &str,
        limit: u32,
    ) -> Result<Vec<Deployment>>;
    /// Every environment's deployments of a build, oldest first.
    async fn build_deployments(&self, build: Ulid) -> Result<Vec<Deployment>>;
    /// Shipping wake-ups from every server (tasks dispatched, tasks reported).
    fn subscribe_ship(&self) -> tokio::sync::broadcast::Receiver<ShipSignal>;

    // ---- flags ----

    /// The database's identity and the flag counters.
    async fn flag_state(&self) -> Result<FlagState>;
    /// Each service's flag-set revision.
    async fn flag_revisions(&self) -> Result<Vec<(String, i64)>>;
    /// A receiver woken with the newest known flag revision (or token revision change)
    /// whenever a flag, segment or SDK token changes, on this server or (PostgreSQL) any
    /// other. A wake-up, not the data: readers then call [`Store::flag_state`].
    fn subscribe_flags(&self) -> tokio::sync::watch::Receiver<i64>;
    /// Creates a flag (version 1) with any environment definitions it carries, and records
    /// `change` in the same transaction. `NotFound` for an unknown service, `Conflict` when
    /// the service has a flag of that name.
    async fn create_flag(&self, flag: &FlagRecord, change: &Change) -> Result<FlagRecord>;
    async fn get_flag(&self, service: &str, name: &str) -> Result<Option<FlagRecord>>;
    /// Flags by service and name; `archived` filters when given.
    async fn list_flags(
        &self,
        service: Option<&str>,
        archived: Option<bool>,
    ) -> Result<Vec<FlagRecord>>;
    /// Applies `write` if the flag is still at `expected_version`, with `change` in the
    /// same transaction. `Stale` (nothing written) when another write came first.
    #[allow(clippy::too_many_arguments)]
    async fn write_flag(
        &self,
        service: &str,
        name: &str,
        expected_version: i64,
        write: &FlagWrite,
        actor: &str,
        now: DateTime<Utc>,
        change: Option<&Change>,
    ) -> Result<FlagRecord>;
    /// Creates a segment (`expected_version` `None`; the store assigns its id) or replaces
    /// the one of that name if still at `expected_version`.
    async fn put_segment(
        &self,
        segment: &SegmentRecord,
        expected_version: Option<i64>,
    ) -> Result<SegmentRecord>;
    async fn list_segments(&self, service: &str) -> Result<Vec<SegmentRecord>>;
    /// `Conflict` while a flag definition uses it.
    async fn delete_segment(&self, service: &str, name: &str) -> Result<()>;
    /// Everything one service's flag set is built from, in one consistent read.
    async fn flag_snapshot(&self, service: &str) -> Result<FlagSnapshot>;
    async fn insert_flag_schedule(&self, schedule: &FlagSchedule) -> Result<()>;
    async fn list_flag_schedules(
        &self,
        service: &str,
        name: Option<&str>,
    ) -> Result<Vec<FlagSchedule>>;
    async fn get_flag_schedule(&self, id: Ulid) -> Result<Option<FlagSchedule>>;
    /// Pending schedules due at `now`, oldest first.
    async fn due_flag_schedules(&self, now: DateTime<Utc>, limit: u32)
        -> Result<Vec<FlagSchedule>>;
    /// Ends a pending schedule; `false` when it was no longer pending.
    async fn finish_flag_schedule(
        &self,
        id: Ulid,
        state: &str,
        ran_at: DateTime<Utc>,
        change_id: Option<Ulid>,
        error: Option<&str>,
    ) -> Result<bool>;
    /// Records (or refreshes) an SDK instance's registration.
    async fn register_sdk_client(&self, client: &SdkClient) -> Result<()>;
    async fn sdk_clients(&self, service: &str) -> Result<Vec<SdkClient>>;
    /// Adds evaluation counts; rows for flags that do not exist are skipped. Returns how
    /// many rows were stored.
    async fn add_flag_usage(&self, usage: &[FlagUsage]) -> Result<u64>;
    /// Per flag and environment: the newest hour evaluated and the counts since `since`.
    async fn flag_usage_since(&self, service: &str, since: DateTime<Utc>)
        -> Result<Vec<FlagUsage>>;
    /// Deletes usage older than `before`; returns how many rows.
    async fn prune_flag_usage(&self, before: DateTime<Utc>) -> Result<u64>;

    // ---- migration jobs ----

    /// Stores a new job as it is (its `version` as given, normally 1).
    async fn insert_migrate_job(&self, job: &Job) -> Result<()>;
    async fn get_migrate_job(&self, id: Ulid) -> Result<Option<Job>>;
    /// Jobs newest first (by created_at, then id); `database` filters when given, `states`
    /// when not empty; `spec.files` is left empty (lists never carry the scripts).
    async fn list_migrate_jobs(
        &self,
        database: Option<&str>,
        states: &[JobState],
        limit: u32,
    ) -> Result<Vec<Job>>;
    /// Writes every mutable field of `job` (state, control, started_at, finished_at,
    /// updated_at, holder, error, report, spec) if the stored version is still
    /// `job.version`; stores and returns the job with `version + 1`. `StoreError::Stale`
    /// (nothing written) when another write came first; `NotFound` when there is no such
    /// job.
    async fn update_migrate_job(&self, job: &Job) -> Result<Job>;
    /// Appends lines to a job's log in the order given, in one transaction; returns the seq
    /// of the last (0 when `lines` is empty).
    async fn append_migrate_log(&self, job: Ulid, lines: &[(DateTime<Utc>, String)])
        -> Result<i64>;
    /// A job's log lines with `seq > after`, in seq order, at most `limit`.
    async fn migrate_log_after(&self, job: Ulid, after: i64, limit: u32)
        -> Result<Vec<JobLogLine>>;

    // ---- incidents ----

    /// Stores a new incident (its `version` as given, normally 1) and its first timeline
    /// entries, in one transaction.
    async fn insert_incident(
        &self,
        incident: &Incident,
        timeline: &[NewTimelineEntry],
    ) -> Result<()>;
    async fn get_incident(&self, id: Ulid) -> Result<Option<Incident>>;
    /// Incidents newest first by detected_at (then id): detected at or after `since` when
    /// given, not resolved when `open_only`, at most `limit`.
    async fn list_incidents(
        &self,
        since: Option<DateTime<Utc>>,
        open_only: bool,
        limit: u32,
    ) -> Result<Vec<Incident>>;
    /// Writes `incident` if the stored version is still `incident.version`, with
    /// `timeline` appended in the same transaction; returns it with `version + 1`. `Stale`
    /// (nothing written, timeline included) when another write came first; `NotFound` when
    /// there is none.
    async fn update_incident(
        &self,
        incident: &Incident,
        timeline: &[NewTimelineEntry],
    ) -> Result<Incident>;
    /// An incident's timeline in seq order.
    async fn incident_timeline(&self, id: Ulid) -> Result<Vec<TimelineEntry>>;

    // ---- monitors ----

    /// Stores a monitor file under `source`; returns the text it replaced, if any.
    async fn put_monitor_file(
        &self,
        source: &str,
        text: &str,
        actor: &str,
        now: DateTime<Utc>,
    ) -> Result<Option<String>>;
    /// Every stored monitor file, by source.
    async fn list_monitor_files(&self) -> Result<Vec<MonitorFileRecord>>;
    /// Sets (or replaces, when rotating) a heartbeat's key digest. `Conflict` (nothing
    /// written) when another monitor's key has that digest.
    async fn put_heartbeat_key(
        &self,
        monitor: &str,
        digest: &str,
        now: DateTime<Utc>,
    ) -> Result<()>;
    /// The monitor whose heartbeat key has this digest.
    async fn heartbeat_by_digest(&self, digest: &str) -> Result<Option<String>>;
    /// Monitors that have a key (so `apply` knows which heartbeats are new), by name.
    async fn heartbeat_monitors(&self) -> Result<Vec<String>>;
    /// Deletes the keys, pings, states and transitions of monitors no longer in any file,
    /// in one transaction.
    async fn forget_monitors(&self, monitors: &[String]) -> Result<()>;
    /// Stores a heartbeat ping; returns its seq.
    async fn insert_ping(&self, ping: &NewPing) -> Result<i64>;
    /// A monitor's newest pings first, at most `limit`.
    async fn recent_pings(&self, monitor: &str, limit: u32) -> Result<Vec<PingRecord>>;
    /// Writes states (upsert by monitor and series) and appends transitions (in the order
    /// given), in one transaction.
    async fn save_monitor_round(
        &self,
        states: &[MonitorStateRecord],
        transitions: &[NewTransition],
    ) -> Result<()>;
    /// Stored states, of one monitor or all, by monitor then series.
    async fn monitor_states(&self, monitor: Option<&str>) -> Result<Vec<MonitorStateRecord>>;
    /// Drops a monitor's state for series that disappeared.
    async fn delete_monitor_states(&self, monitor: &str, series: &[String]) -> Result<()>;
    /// Transitions newest first (of one monitor or all), at most `limit`.
    async fn monitor_transitions(
        &self,
        monitor: Option<&str>,
        limit: u32,
    ) -> Result<Vec<TransitionRecord>>;

    /// Deletes pings older than `pings_before` beyond each monitor's newest `keep_pings`,
    /// and transitions older than `transitions_before`; returns how many rows went.
    async fn prune_monitor_history(
        &self,
        pings_before: DateTime<Utc>,
        keep_pings: u32,
        transitions_before: DateTime<Utc>,
    ) -> Result<u64>;
    /// Deletes deliveries that ended (delivered or failed) before `before`.
    async fn prune_deliveries(&self, before: DateTime<Utc>) -> Result<u64>;

    // ---- notifications ----

    /// The alert grouper's stored state (JSON), by name.
    async fn notify_state(&self, name: &str) -> Result<Option<String>>;
    /// Writes the grouper's state and queues deliveries (due at once), in one transaction.
    /// A delivery whose (notification, receiver) is already queued is left as it is.
    async fn save_notify_round(
        &self,
        name: &str,
        state: &str,
        deliveries: &[NewDelivery],
        now: DateTime<Utc>,
    ) -> Result<()>;
    /// Claims up to `limit` pending deliveries due at `now` for `holder` until `until`,
    /// oldest due first. A delivery is claimed by one holder at a time; a claim lapses at
    /// its `until`.
    async fn claim_deliveries(
        &self,
        holder: &str,
        now: DateTime<Utc>,
        until: DateTime<Utc>,
        limit: u32,
    ) -> Result<Vec<DeliveryRecord>>;
    /// Records an attempt of a claimed delivery and releases the claim; false (nothing
    /// written) when `holder` no longer holds it.
    async fn finish_delivery(
        &self,
        id: Ulid,
        holder: &str,
        attempt_at: DateTime<Utc>,
        outcome: &DeliveryOutcome,
    ) -> Result<bool>;
    /// Deliveries newest first, filtered when given, at most `limit`.
    async fn list_deliveries(
        &self,
        service: Option<&str>,
        environment: Option<&str>,
        state: Option<&str>,
        limit: u32,
    ) -> Result<Vec<DeliveryRecord>>;
    /// Stores a new silence or maintenance window (not expired).
    async fn insert_silence(&self, silence: &SilenceRecord) -> Result<()>;
    /// Silences and windows in force or to come at `now`; every one when `now` is `None`.
    /// Newest first.
    async fn list_silences(&self, now: Option<DateTime<Utc>>) -> Result<Vec<SilenceRecord>>;
    /// Ends a silence or window at `now`; `None` when no such id. One already expired is
    /// returned unchanged.
    async fn expire_silence(
        &self,
        id: Ulid,
        by: &str,
        now: DateTime<Utc>,
    ) -> Result<Option<SilenceRecord>>;

    // ---- detection ----

    /// Stores a service's `[detect]` table (TOML); `None` removes it. Returns the text it
    /// replaced, if any.
    async fn put_detect_config(
        &self,
        service: &str,
        text: Option<&str>,
        actor: &str,
        now: DateTime<Utc>,
    ) -> Result<Option<String>>;
    /// Every stored `[detect]` table, by service.
    async fn list_detect_configs(&self) -> Result<Vec<DetectConfigRecord>>;
    /// Stores a service's `[[logs]]` entries (TOML); `None` removes them. Returns the text
    /// they replaced, if any.
    async fn put_log_watches(
        &self,
        service: &str,
        text: Option<&str>,
        actor: &str,
        now: DateTime<Utc>,
    ) -> Result<Option<String>>;
    /// Every service's stored `[[logs]]` entries, by service.
    async fn list_log_watches(&self) -> Result<Vec<DetectConfigRecord>>;
    /// Stores a verdict. At most one regression verdict per (change, metric) and per
    /// (rollout, metric): a second is `Conflict` (nothing written), as is an id already
    /// stored. Verdicts that are not regressions are not limited.
    async fn insert_verdict(&self, verdict: &VerdictRecord) -> Result<()>;
    /// Verdicts newest first by `at` (then id): of the service and of the environment when
    /// given, regressions only when `regression_only`, at or after `since` when given, at
    /// most `limit`.
    async fn list_verdicts(
        &self,
        service: Option<&str>,
        environment: Option<&str>,
        regression_only: bool,
        since: Option<DateTime<Utc>>,
        limit: u32,
    ) -> Result<Vec<VerdictRecord>>;
    async fn get_verdict(&self, id: Ulid) -> Result<Option<VerdictRecord>>;
    /// Regression verdicts of a rollout or of a change (of either when both are given,
    /// none when neither is), newest first by `at` (then id).
    async fn regressions_of(
        &self,
        rollout: Option<Ulid>,
        change: Option<Ulid>,
    ) -> Result<Vec<VerdictRecord>>;

    // ---- dashboard sessions ----

    /// Stores a new dashboard session; `Conflict` (nothing written) when a session has
    /// its id digest already.
    async fn create_session(&self, session: &SessionRecord) -> Result<()>;
    /// The session with this id digest, expired or not (the caller decides), or `None`.
    async fn get_session(&self, id_digest: &str) -> Result<Option<SessionRecord>>;
    /// Records a use of a session: sets its `last_seen_at` and `idle_expires_at` (never its
    /// absolute `expires_at`). False when there is no such session.
    async fn touch_session(
        &self,
        id_digest: &str,
        last_seen_at: DateTime<Utc>,
        idle_expires_at: DateTime<Utc>,
    ) -> Result<bool>;
    /// Ends a session; false when there was no such session.
    async fn delete_session(&self, id_digest: &str) -> Result<bool>;
    /// Ends every session signed in with the token `token_name`; returns how many.
    async fn delete_token_sessions(&self, token_name: &str) -> Result<u64>;
    /// Every session, expired or not, newest first by `created_at` (then id digest).
    async fn list_sessions(&self) -> Result<Vec<SessionRecord>>;
    /// Deletes the sessions whose idle or absolute expiry is at or before `now`; returns
    /// how many.
    async fn prune_sessions(&self, now: DateTime<Utc>) -> Result<u64>;

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
