//! The embedded backend: one SQLite file in WAL mode.
//!
//! One writer connection serialises every write (SQLite allows one writer at a time, and a
//! single connection never waits on `SQLITE_BUSY`); a few read-only connections serve reads
//! concurrently from WAL snapshots. `synchronous = NORMAL` means a committed transaction
//! survives the process being killed (it is in the WAL, written through to the OS); only a
//! power loss may take the last commits, which `synchronous_full` prevents at a cost.

use std::collections::BTreeMap;
use std::path::Path;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use gantry_core::incident::{Incident, TimelineEntry};
use gantry_core::migrate_job::{Job, JobLogLine, JobState};
use gantry_core::ship::{Build, Host, HostFacts, HostRelease, Rollout, Task};
use gantry_core::{Change, ChangeEvent, ChangePatch, ChangeQuery, NewService, Service, TokenInfo};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};
use sqlx::{ConnectOptions, Connection};
use tokio::sync::{broadcast, watch};
use ulid::Ulid;

use crate::flags::{
    FlagRecord, FlagSchedule, FlagSnapshot, FlagState, FlagUsage, FlagWrite, SdkClient,
    SegmentRecord,
};
use crate::group_commit::GroupCommit;
use crate::queries::Dialect;
use crate::schema::{self, SchemaStatus, SCHEMA_VERSION};
use crate::{
    Backend, BuildQuery, DeliveryOutcome, DeliveryRecord, DeployConfigRecord, Deployment,
    DetectConfigRecord, MonitorFileRecord, MonitorStateRecord, NewDelivery, NewPing,
    NewTimelineEntry, NewTransition, PingRecord, Result, SessionRecord, ShipSignal, SilenceRecord,
    Store, StoreError, StoreOptions, TagMatch, TokenRecord, TransitionRecord, VerdictRecord,
};

mod q {
    crate::queries::queries!(sqlx::Sqlite);
}

mod sq {
    crate::ship_queries::ship_queries!(sqlx::Sqlite);
}

mod fq {
    crate::flag_queries::flag_queries!(sqlx::Sqlite, super::q);
}

mod mq {
    crate::migrate_queries::migrate_queries!(sqlx::Sqlite);
}

mod iq {
    crate::incident_queries::incident_queries!(sqlx::Sqlite);
}

mod moq {
    crate::monitor_queries::monitor_queries!(sqlx::Sqlite);
}

mod nq {
    crate::notify_queries::notify_queries!(sqlx::Sqlite);
}

mod dq {
    crate::detect_queries::detect_queries!(sqlx::Sqlite);
}

mod sessq {
    crate::session_queries::session_queries!(sqlx::Sqlite);
}

const DIALECT: Dialect = Dialect {
    event_lock: None,
    notify: None,
    bootstrap_lock: None,
    for_update: "",
    snapshot_isolation: None,
};

pub struct SqliteStore {
    inserts: GroupCommit,
    writer: SqlitePool,
    reader: SqlitePool,
    schema: SchemaStatus,
    events: watch::Sender<i64>,
    ship: broadcast::Sender<ShipSignal>,
    flags: watch::Sender<i64>,
}

impl SqliteStore {
    /// Opens (creating if needed) the database file at `path` and brings its schema up to date.
    pub async fn open(path: &Path, options: StoreOptions) -> Result<SqliteStore> {
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent).map_err(|e| {
                StoreError::Config(format!("cannot create directory {}: {e}", parent.display()))
            })?;
        }
        let connect = SqliteConnectOptions::from_str("sqlite://")?
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .foreign_keys(true)
            .busy_timeout(Duration::from_secs(10))
            .pragma("cache_size", "-65536")
            .pragma("temp_store", "memory");
        let schema = migrate(&connect).await?;
        let writer = SqlitePoolOptions::new()
            .max_connections(1)
            .acquire_timeout(Duration::from_secs(30))
            .connect_with(connect.clone())
            .await?;
        let reader = SqlitePoolOptions::new()
            .max_connections(8)
            .acquire_timeout(Duration::from_secs(30))
            .connect_with(connect.read_only(true))
            .await?;
        let last = q::last_event_seq(&reader).await?;
        let (events, _) = watch::channel(last);
        let (ship, _) = broadcast::channel(4096);
        let inserts = {
            let writer = writer.clone();
            let events = events.clone();
            let auto_create = options.auto_create_services;
            GroupCommit::spawn(Arc::new(move |changes: Vec<Change>| {
                let writer = writer.clone();
                let events = events.clone();
                Box::pin(async move {
                    let seqs =
                        q::insert_changes(&writer, &DIALECT, "", &changes, auto_create).await?;
                    if let Some(&newest) = seqs.iter().max() {
                        announce(&events, newest);
                    }
                    Ok(seqs)
                })
            }))
        };
        Ok(SqliteStore {
            inserts,
            writer,
            reader,
            schema,
            events,
            ship,
            flags: watch::channel(0).0,
        })
    }

    fn announce(&self, seq: i64) {
        announce(&self.events, seq);
    }

    /// After a flag-set write: wakes change-stream readers (when it recorded a change) and
    /// flag-set followers. One process owns the file, so in-process is everywhere.
    fn written(&self, seq: Option<i64>) {
        if let Some(seq) = seq {
            self.announce(seq);
        }
        self.flags.send_modify(|wakes| *wakes += 1);
    }
}

/// Wakes stream readers if `seq` is newer than what they last heard of.
fn announce(events: &watch::Sender<i64>, seq: i64) {
    events.send_if_modified(|newest| {
        let newer = seq > *newest;
        if newer {
            *newest = seq;
        }
        newer
    });
}

/// Applies missing migrations inside one `BEGIN IMMEDIATE` transaction, which takes
/// SQLite's write lock, so two processes opening one file cannot both migrate.
async fn migrate(connect: &SqliteConnectOptions) -> Result<SchemaStatus> {
    let mut conn = connect.connect().await?;
    sqlx::raw_sql("BEGIN IMMEDIATE").execute(&mut conn).await?;
    let result = async {
        sqlx::raw_sql(
            "CREATE TABLE IF NOT EXISTS gantry_schema (id INTEGER PRIMARY KEY CHECK (id = 1), version INTEGER NOT NULL, min_binary_version INTEGER NOT NULL, updated_at INTEGER NOT NULL)",
        )
        .execute(&mut conn)
        .await?;
        let found: Option<(i64, i64)> =
            sqlx::query_as("SELECT version, min_binary_version FROM gantry_schema WHERE id = 1")
                .fetch_optional(&mut conn)
                .await?;
        let (found, found_min) = found.unwrap_or((0, 0));
        let plan = schema::plan(found, found_min, SCHEMA_VERSION)?;
        for &version in &plan {
            let migration = schema::migration(version);
            tracing::info!(version, description = migration.description, "applying schema migration");
            sqlx::raw_sql(migration.sqlite).execute(&mut conn).await?;
            sqlx::query(
                "INSERT INTO gantry_schema (id, version, min_binary_version, updated_at) VALUES (1, $1, $2, $3) \
                 ON CONFLICT (id) DO UPDATE SET version = excluded.version, min_binary_version = excluded.min_binary_version, updated_at = excluded.updated_at",
            )
            .bind(migration.version)
            .bind(migration.min_binary_version)
            .bind(Utc::now().timestamp_micros())
            .execute(&mut conn)
            .await?;
        }
        Ok::<_, StoreError>(SchemaStatus {
            found,
            current: plan.last().copied().unwrap_or(found),
            applied: plan,
        })
    }
    .await;
    match result {
        Ok(status) => {
            sqlx::raw_sql("COMMIT").execute(&mut conn).await?;
            conn.close().await?;
            Ok(status)
        }
        Err(e) => {
            let _ = sqlx::raw_sql("ROLLBACK").execute(&mut conn).await;
            Err(e)
        }
    }
}

#[async_trait]
impl Store for SqliteStore {
    fn backend(&self) -> Backend {
        Backend::Sqlite
    }

    async fn ping(&self) -> Result<()> {
        sqlx::query("SELECT 1").execute(&self.reader).await?;
        Ok(())
    }

    fn schema_status(&self) -> &SchemaStatus {
        &self.schema
    }

    async fn insert_change(&self, change: &Change) -> Result<i64> {
        self.inserts.insert(change.clone()).await
    }

    async fn import_changes(&self, changes: &[Change]) -> Result<u64> {
        q::import_changes(&self.writer, changes).await
    }

    async fn get_change(&self, id: Ulid) -> Result<Option<Change>> {
        q::get_change(&self.reader, id).await
    }

    async fn list_changes(&self, query: &ChangeQuery) -> Result<Vec<Change>> {
        q::list_changes(&self.reader, query).await
    }

    async fn changes_by_tags(
        &self,
        tags: &[String],
        matching: TagMatch,
        since: DateTime<Utc>,
        until: DateTime<Utc>,
        limit: u32,
    ) -> Result<Vec<Change>> {
        q::changes_by_tags(&self.reader, tags, matching, since, until, limit).await
    }

    async fn update_change(
        &self,
        id: Ulid,
        patch: &ChangePatch,
        actor: &str,
        now: DateTime<Utc>,
    ) -> Result<Change> {
        let (change, seq) =
            q::update_change(&self.writer, &DIALECT, "", id, patch, actor, now).await?;
        self.announce(seq);
        Ok(change)
    }

    async fn events_after(&self, after: i64, limit: u32) -> Result<Vec<ChangeEvent>> {
        q::events_after(&self.reader, after, limit).await
    }

    async fn last_event_seq(&self) -> Result<i64> {
        q::last_event_seq(&self.reader).await
    }

    fn subscribe(&self) -> watch::Receiver<i64> {
        self.events.subscribe()
    }

    async fn prune_events(&self, before: DateTime<Utc>) -> Result<u64> {
        q::prune_events(&self.writer, before).await
    }

    async fn create_service(&self, service: &NewService, now: DateTime<Utc>) -> Result<Service> {
        q::create_service(&self.writer, service, now).await
    }

    async fn get_service(&self, name: &str) -> Result<Option<Service>> {
        q::get_service(&self.reader, name).await
    }

    async fn list_services(&self) -> Result<Vec<Service>> {
        q::list_services(&self.reader).await
    }

    async fn delete_service(&self, name: &str, force: bool) -> Result<()> {
        q::delete_service(&self.writer, name, force).await
    }

    async fn list_environments(&self) -> Result<Vec<String>> {
        q::list_environments(&self.reader).await
    }

    async fn create_token(&self, info: &TokenInfo, digest: &str) -> Result<()> {
        q::create_token(&self.writer, info, digest).await
    }

    async fn token_by_digest(&self, digest: &str) -> Result<Option<TokenRecord>> {
        q::token_by_digest(&self.reader, digest).await
    }

    async fn list_tokens(&self) -> Result<Vec<TokenInfo>> {
        q::list_tokens(&self.reader).await
    }

    async fn revoke_token(&self, name: &str, now: DateTime<Utc>) -> Result<()> {
        if q::revoke_token(&self.writer, &DIALECT, name, now)
            .await?
            .is_some()
        {
            self.written(None);
        }
        Ok(())
    }

    async fn bootstrap_admin_token(&self, info: &TokenInfo, digest: &str) -> Result<bool> {
        q::bootstrap_admin_token(&self.writer, &DIALECT, info, digest).await
    }

    async fn try_acquire_lease(
        &self,
        name: &str,
        holder: &str,
        ttl: Duration,
        now: DateTime<Utc>,
    ) -> Result<bool> {
        q::try_acquire_lease(&self.writer, name, holder, ttl, now).await
    }

    async fn release_lease(&self, name: &str, holder: &str) -> Result<()> {
        q::release_lease(&self.writer, name, holder).await
    }

    async fn insert_build(&self, build: &Build) -> Result<()> {
        sq::insert_build(&self.writer, build).await
    }

    async fn get_build(&self, id: Ulid) -> Result<Option<Build>> {
        sq::get_build(&self.reader, id).await
    }

    async fn find_builds(&self, query: &BuildQuery) -> Result<Vec<Build>> {
        sq::find_builds(&self.reader, query).await
    }

    async fn delete_build(&self, id: Ulid) -> Result<()> {
        sq::delete_build(&self.writer, id).await
    }

    async fn builds_in_use(&self, service: &str) -> Result<Vec<Ulid>> {
        sq::builds_in_use(&self.reader, service).await
    }

    async fn blob_size(&self, sha256: &str) -> Result<Option<(u64, u32)>> {
        sq::blob_size(&self.reader, sha256).await
    }

    async fn put_blob_chunk(&self, upload_key: &str, n: u32, data: &[u8]) -> Result<()> {
        sq::put_blob_chunk(&self.writer, upload_key, n, data).await
    }

    async fn commit_blob(
        &self,
        upload_key: &str,
        sha256: &str,
        size: u64,
        chunks: u32,
        now: DateTime<Utc>,
    ) -> Result<()> {
        sq::commit_blob(&self.writer, upload_key, sha256, size, chunks, now).await
    }

    async fn drop_blob_chunks(&self, upload_key: &str) -> Result<()> {
        sq::drop_blob_chunks(&self.writer, upload_key).await
    }

    async fn blob_chunk(&self, sha256: &str, n: u32) -> Result<Option<Vec<u8>>> {
        sq::blob_chunk(&self.reader, sha256, n).await
    }

    async fn delete_blob(&self, sha256: &str) -> Result<()> {
        sq::delete_blob(&self.writer, sha256).await
    }

    async fn put_deploy_config(
        &self,
        service: &str,
        config: &str,
        actor: &str,
        now: DateTime<Utc>,
    ) -> Result<Option<String>> {
        sq::put_deploy_config(&self.writer, service, config, actor, now).await
    }

    async fn get_deploy_config(&self, service: &str) -> Result<Option<DeployConfigRecord>> {
        sq::get_deploy_config(&self.reader, service).await
    }

    async fn enroll_host(
        &self,
        name: &str,
        environment: &str,
        roles: &[String],
        now: DateTime<Utc>,
    ) -> Result<()> {
        sq::enroll_host(&self.writer, name, environment, roles, now).await
    }

    async fn get_host(&self, name: &str) -> Result<Option<Host>> {
        sq::get_host(&self.reader, name).await
    }

    async fn list_hosts(&self, environment: Option<&str>) -> Result<Vec<Host>> {
        sq::list_hosts(&self.reader, environment).await
    }

    async fn host_seen(
        &self,
        name: &str,
        facts: &HostFacts,
        releases: &BTreeMap<String, HostRelease>,
        now: DateTime<Utc>,
    ) -> Result<()> {
        sq::host_seen(&self.writer, name, facts, releases, now).await
    }

    async fn set_host_maintenance(&self, name: &str, on: bool) -> Result<()> {
        sq::set_host_maintenance(&self.writer, name, on).await
    }

    async fn delete_host(&self, name: &str) -> Result<()> {
        sq::delete_host(&self.writer, name).await
    }

    async fn insert_rollout(&self, rollout: &Rollout, tasks: &[Task]) -> Result<Vec<String>> {
        let hosts = sq::insert_rollout(&self.writer, None, rollout, tasks).await?;
        if !hosts.is_empty() {
            let _ = self.ship.send(ShipSignal::Dispatched(hosts.clone()));
        }
        Ok(hosts)
    }

    async fn control_rollout(&self, id: Ulid, control: &str) -> Result<()> {
        sq::control_rollout(&self.writer, id, control).await
    }

    async fn get_rollout(&self, id: Ulid) -> Result<Option<Rollout>> {
        sq::get_rollout(&self.reader, id).await
    }

    async fn active_rollout(&self, service: &str, environment: &str) -> Result<Option<Rollout>> {
        sq::active_rollout(&self.reader, service, environment).await
    }

    async fn list_rollouts(
        &self,
        service: Option<&str>,
        environment: Option<&str>,
        active_only: bool,
        limit: u32,
    ) -> Result<Vec<Rollout>> {
        sq::list_rollouts(&self.reader, service, environment, active_only, limit).await
    }

    async fn save_rollout(
        &self,
        rollout: &Rollout,
        changed: &[&Task],
        new: &[Task],
        deployment: Option<&Deployment>,
    ) -> Result<Vec<String>> {
        let hosts = sq::save_rollout(&self.writer, None, rollout, changed, new, deployment).await?;
        if !hosts.is_empty() {
            let _ = self.ship.send(ShipSignal::Dispatched(hosts.clone()));
        }
        Ok(hosts)
    }

    async fn rollout_tasks(&self, rollout: Ulid) -> Result<Vec<Task>> {
        sq::rollout_tasks(&self.reader, rollout).await
    }

    async fn host_tasks(&self, host: &str, open_only: bool, limit: u32) -> Result<Vec<Task>> {
        sq::host_tasks(&self.reader, host, open_only, limit).await
    }

    async fn get_task(&self, id: Ulid) -> Result<Option<Task>> {
        sq::get_task(&self.reader, id).await
    }

    async fn report_task(&self, task: &Task) -> Result<bool> {
        let stored = sq::report_task(&self.writer, None, task).await?;
        if let (true, Some(r)) = (stored, task.rollout_id) {
            let _ = self.ship.send(ShipSignal::Reported(r));
        }
        Ok(stored)
    }

    async fn insert_loose_tasks(&self, tasks: &[Task]) -> Result<()> {
        sq::insert_loose_tasks(&self.writer, tasks).await?;
        let mut hosts: Vec<String> = tasks.iter().map(|t| t.host.clone()).collect();
        hosts.sort();
        hosts.dedup();
        let _ = self.ship.send(ShipSignal::Dispatched(hosts));
        Ok(())
    }

    async fn deployments(
        &self,
        service: &str,
        environment: &str,
        limit: u32,
    ) -> Result<Vec<Deployment>> {
        sq::deployments(&self.reader, service, environment, limit).await
    }

    async fn build_deployments(&self, build: Ulid) -> Result<Vec<Deployment>> {
        sq::build_deployments(&self.reader, build).await
    }

    fn subscribe_ship(&self) -> tokio::sync::broadcast::Receiver<ShipSignal> {
        self.ship.subscribe()
    }

    async fn flag_state(&self) -> Result<FlagState> {
        fq::flag_state(&self.reader).await
    }

    async fn flag_revisions(&self) -> Result<Vec<(String, i64)>> {
        fq::flag_revisions(&self.reader).await
    }

    fn subscribe_flags(&self) -> watch::Receiver<i64> {
        self.flags.subscribe()
    }

    async fn create_flag(&self, flag: &FlagRecord, change: &Change) -> Result<FlagRecord> {
        let written = fq::create_flag(&self.writer, &DIALECT, "", flag, change).await?;
        self.written(written.seq);
        Ok(written.flag)
    }

    async fn get_flag(&self, service: &str, name: &str) -> Result<Option<FlagRecord>> {
        fq::get_flag(&self.reader, service, name).await
    }

    async fn list_flags(
        &self,
        service: Option<&str>,
        archived: Option<bool>,
    ) -> Result<Vec<FlagRecord>> {
        fq::list_flags(&self.reader, service, archived).await
    }

    async fn write_flag(
        &self,
        service: &str,
        name: &str,
        expected_version: i64,
        write: &FlagWrite,
        actor: &str,
        now: DateTime<Utc>,
        change: Option<&Change>,
    ) -> Result<FlagRecord> {
        let written = fq::write_flag(
            &self.writer,
            &DIALECT,
            "",
            service,
            name,
            expected_version,
            write,
            actor,
            now,
            change,
        )
        .await?;
        self.written(written.seq);
        Ok(written.flag)
    }

    async fn put_segment(
        &self,
        segment: &SegmentRecord,
        expected_version: Option<i64>,
    ) -> Result<SegmentRecord> {
        let stored = fq::put_segment(&self.writer, &DIALECT, segment, expected_version).await?;
        self.written(None);
        Ok(stored)
    }

    async fn list_segments(&self, service: &str) -> Result<Vec<SegmentRecord>> {
        fq::list_segments(&self.reader, service).await
    }

    async fn delete_segment(&self, service: &str, name: &str) -> Result<()> {
        fq::delete_segment(&self.writer, &DIALECT, service, name).await?;
        self.written(None);
        Ok(())
    }

    async fn flag_snapshot(&self, service: &str) -> Result<FlagSnapshot> {
        fq::flag_snapshot(&self.reader, &DIALECT, service).await
    }

    async fn insert_flag_schedule(&self, schedule: &FlagSchedule) -> Result<()> {
        fq::insert_flag_schedule(&self.writer, schedule).await
    }

    async fn list_flag_schedules(
        &self,
        service: &str,
        name: Option<&str>,
    ) -> Result<Vec<FlagSchedule>> {
        fq::list_flag_schedules(&self.reader, service, name).await
    }

    async fn get_flag_schedule(&self, id: Ulid) -> Result<Option<FlagSchedule>> {
        fq::get_flag_schedule(&self.reader, id).await
    }

    async fn due_flag_schedules(
        &self,
        now: DateTime<Utc>,
        limit: u32,
    ) -> Result<Vec<FlagSchedule>> {
        fq::due_flag_schedules(&self.reader, now, limit).await
    }

    async fn finish_flag_schedule(
        &self,
        id: Ulid,
        state: &str,
        ran_at: DateTime<Utc>,
        change_id: Option<Ulid>,
        error: Option<&str>,
    ) -> Result<bool> {
        fq::finish_flag_schedule(&self.writer, id, state, ran_at, change_id, error).await
    }

    async fn register_sdk_client(&self, client: &SdkClient) -> Result<()> {
        fq::register_sdk_client(&self.writer, client).await
    }

    async fn sdk_clients(&self, service: &str) -> Result<Vec<SdkClient>> {
        fq::sdk_clients(&self.reader, service).await
    }

    async fn add_flag_usage(&self, usage: &[FlagUsage]) -> Result<u64> {
        fq::add_flag_usage(&self.writer, &DIALECT, usage).await
    }

    async fn flag_usage_since(
        &self,
        service: &str,
        since: DateTime<Utc>,
    ) -> Result<Vec<FlagUsage>> {
        fq::flag_usage_since(&self.reader, service, since).await
    }

    async fn prune_flag_usage(&self, before: DateTime<Utc>) -> Result<u64> {
        fq::prune_flag_usage(&self.writer, before).await
    }

    async fn insert_migrate_job(&self, job: &Job) -> Result<()> {
        mq::insert_migrate_job(&self.writer, job).await
    }

    async fn get_migrate_job(&self, id: Ulid) -> Result<Option<Job>> {
        mq::get_migrate_job(&self.reader, id).await
    }

    async fn list_migrate_jobs(
        &self,
        database: Option<&str>,
        states: &[JobState],
        limit: u32,
    ) -> Result<Vec<Job>> {
        mq::list_migrate_jobs(&self.reader, database, states, limit).await
    }

    async fn update_migrate_job(&self, job: &Job) -> Result<Job> {
        mq::update_migrate_job(&self.writer, job).await
    }

    async fn append_migrate_log(
        &self,
        job: Ulid,
        lines: &[(DateTime<Utc>, String)],
    ) -> Result<i64> {
        mq::append_migrate_log(&self.writer, &DIALECT, job, lines).await
    }

    async fn migrate_log_after(
        &self,
        job: Ulid,
        after: i64,
        limit: u32,
    ) -> Result<Vec<JobLogLine>> {
        mq::migrate_log_after(&self.reader, job, after, limit).await
    }

    async fn insert_incident(
        &self,
        incident: &Incident,
        timeline: &[NewTimelineEntry],
    ) -> Result<()> {
        iq::insert_incident(&self.writer, incident, timeline).await
    }

    async fn get_incident(&self, id: Ulid) -> Result<Option<Incident>> {
        iq::get_incident(&self.reader, id).await
    }

    async fn list_incidents(
        &self,
        since: Option<DateTime<Utc>>,
        open_only: bool,
        limit: u32,
    ) -> Result<Vec<Incident>> {
        iq::list_incidents(&self.reader, since, open_only, limit).await
    }

    async fn update_incident(
        &self,
        incident: &Incident,
        timeline: &[NewTimelineEntry],
    ) -> Result<Incident> {
        iq::update_incident(&self.writer, incident, timeline).await
    }

    async fn incident_timeline(&self, id: Ulid) -> Result<Vec<TimelineEntry>> {
        iq::incident_timeline(&self.reader, id).await
    }

    async fn put_monitor_file(
        &self,
        source: &str,
        text: &str,
        actor: &str,
        now: DateTime<Utc>,
    ) -> Result<Option<String>> {
        moq::put_monitor_file(&self.writer, &DIALECT, source, text, actor, now).await
    }

    async fn list_monitor_files(&self) -> Result<Vec<MonitorFileRecord>> {
        moq::list_monitor_files(&self.reader).await
    }

    async fn put_heartbeat_key(
        &self,
        monitor: &str,
        digest: &str,
        now: DateTime<Utc>,
    ) -> Result<()> {
        moq::put_heartbeat_key(&self.writer, monitor, digest, now).await
    }

    async fn heartbeat_by_digest(&self, digest: &str) -> Result<Option<String>> {
        moq::heartbeat_by_digest(&self.reader, digest).await
    }

    async fn heartbeat_monitors(&self) -> Result<Vec<String>> {
        moq::heartbeat_monitors(&self.reader).await
    }

    async fn forget_monitors(&self, monitors: &[String]) -> Result<()> {
        moq::forget_monitors(&self.writer, monitors).await
    }

    async fn insert_ping(&self, ping: &NewPing) -> Result<i64> {
        moq::insert_ping(&self.writer, ping).await
    }

    async fn recent_pings(&self, monitor: &str, limit: u32) -> Result<Vec<PingRecord>> {
        moq::recent_pings(&self.reader, monitor, limit).await
    }

    async fn save_monitor_round(
        &self,
        states: &[MonitorStateRecord],
        transitions: &[NewTransition],
    ) -> Result<()> {
        moq::save_monitor_round(&self.writer, states, transitions).await
    }

    async fn monitor_states(&self, monitor: Option<&str>) -> Result<Vec<MonitorStateRecord>> {
        moq::monitor_states(&self.reader, monitor).await
    }

    async fn delete_monitor_states(&self, monitor: &str, series: &[String]) -> Result<()> {
        moq::delete_monitor_states(&self.writer, monitor, series).await
    }

    async fn monitor_transitions(
        &self,
        monitor: Option<&str>,
        limit: u32,
    ) -> Result<Vec<TransitionRecord>> {
        moq::monitor_transitions(&self.reader, monitor, limit).await
    }

    async fn prune_monitor_history(
        &self,
        pings_before: DateTime<Utc>,
        keep_pings: u32,
        transitions_before: DateTime<Utc>,
    ) -> Result<u64> {
        moq::prune_monitor_history(&self.writer, pings_before, keep_pings, transitions_before).await
    }

    async fn prune_deliveries(&self, before: DateTime<Utc>) -> Result<u64> {
        nq::prune_deliveries(&self.writer, before).await
    }

    async fn notify_state(&self, name: &str) -> Result<Option<String>> {
        nq::notify_state(&self.reader, name).await
    }

    async fn save_notify_round(
        &self,
        name: &str,
        state: &str,
        deliveries: &[NewDelivery],
        now: DateTime<Utc>,
    ) -> Result<()> {
        nq::save_notify_round(&self.writer, name, state, deliveries, now).await
    }

    async fn claim_deliveries(
        &self,
        holder: &str,
        now: DateTime<Utc>,
        until: DateTime<Utc>,
        limit: u32,
    ) -> Result<Vec<DeliveryRecord>> {
        nq::claim_deliveries(&self.writer, holder, now, until, limit).await
    }

    async fn finish_delivery(
        &self,
        id: Ulid,
        holder: &str,
        attempt_at: DateTime<Utc>,
        outcome: &DeliveryOutcome,
    ) -> Result<bool> {
        nq::finish_delivery(&self.writer, id, holder, attempt_at, outcome).await
    }

    async fn list_deliveries(
        &self,
        service: Option<&str>,
        environment: Option<&str>,
        state: Option<&str>,
        limit: u32,
    ) -> Result<Vec<DeliveryRecord>> {
        nq::list_deliveries(&self.reader, service, environment, state, limit).await
    }

    async fn insert_silence(&self, silence: &SilenceRecord) -> Result<()> {
        nq::insert_silence(&self.writer, silence).await
    }

    async fn list_silences(&self, now: Option<DateTime<Utc>>) -> Result<Vec<SilenceRecord>> {
        nq::list_silences(&self.reader, now).await
    }

    async fn expire_silence(
        &self,
        id: Ulid,
        by: &str,
        now: DateTime<Utc>,
    ) -> Result<Option<SilenceRecord>> {
        nq::expire_silence(&self.writer, id, by, now).await
    }

    async fn put_detect_config(
        &self,
        service: &str,
        text: Option<&str>,
        actor: &str,
        now: DateTime<Utc>,
    ) -> Result<Option<String>> {
        dq::put_detect_config(&self.writer, &DIALECT, service, text, actor, now).await
    }

    async fn list_detect_configs(&self) -> Result<Vec<DetectConfigRecord>> {
        dq::list_detect_configs(&self.reader).await
    }

    async fn put_log_watches(
        &self,
        service: &str,
        text: Option<&str>,
        actor: &str,
        now: DateTime<Utc>,
    ) -> Result<Option<String>> {
        dq::put_log_watches(&self.writer, &DIALECT, service, text, actor, now).await
    }

    async fn list_log_watches(&self) -> Result<Vec<DetectConfigRecord>> {
        dq::list_log_watches(&self.reader).await
    }

    async fn insert_verdict(&self, verdict: &VerdictRecord) -> Result<()> {
        dq::insert_verdict(&self.writer, verdict).await
    }

    async fn list_verdicts(
        &self,
        service: Option<&str>,
        environment: Option<&str>,
        regression_only: bool,
        since: Option<DateTime<Utc>>,
        limit: u32,
    ) -> Result<Vec<VerdictRecord>> {
        dq::list_verdicts(
            &self.reader,
            service,
            environment,
            regression_only,
            since,
            limit,
        )
        .await
    }

    async fn get_verdict(&self, id: Ulid) -> Result<Option<VerdictRecord>> {
        dq::get_verdict(&self.reader, id).await
    }

    async fn regressions_of(
        &self,
        rollout: Option<Ulid>,
        change: Option<Ulid>,
    ) -> Result<Vec<VerdictRecord>> {
        dq::regressions_of(&self.reader, rollout, change).await
    }

    async fn create_session(&self, session: &SessionRecord) -> Result<()> {
        sessq::create_session(&self.writer, session).await
    }

    async fn get_session(&self, id_digest: &str) -> Result<Option<SessionRecord>> {
        sessq::get_session(&self.reader, id_digest).await
    }

    async fn touch_session(
        &self,
        id_digest: &str,
        last_seen_at: DateTime<Utc>,
        idle_expires_at: DateTime<Utc>,
    ) -> Result<bool> {
        sessq::touch_session(&self.writer, id_digest, last_seen_at, idle_expires_at).await
    }

    async fn delete_session(&self, id_digest: &str) -> Result<bool> {
        sessq::delete_session(&self.writer, id_digest).await
    }

    async fn delete_token_sessions(&self, token_name: &str) -> Result<u64> {
        sessq::delete_token_sessions(&self.writer, token_name).await
    }

    async fn list_sessions(&self) -> Result<Vec<SessionRecord>> {
        sessq::list_sessions(&self.reader).await
    }

    async fn prune_sessions(&self, now: DateTime<Utc>) -> Result<u64> {
        sessq::prune_sessions(&self.writer, now).await
    }

    async fn close(&self) {
        self.writer.close().await;
        self.reader.close().await;
    }
}
