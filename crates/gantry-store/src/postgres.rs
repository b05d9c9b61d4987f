//! The shared backend: PostgreSQL, for several `gantry server` processes on one database.
//!
//! - The change stream is the `change_events` table. Appending takes a transaction-scoped
//!   advisory lock held until commit, so events become visible in `seq` order and a reader
//!   that resumes after `seq` N can never miss an N-1 committed later.
//! - Each append sends `NOTIFY gantry_changes, '<seq>'` in its transaction; every server
//!   LISTENs and wakes its stream readers, who then read the table. A lost notification
//!   (a dropped listener connection) only delays readers until their next poll.
//! - Schema migration runs under a session advisory lock, so servers starting together
//!   migrate once.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use gantry_core::incident::{Incident, TimelineEntry};
use gantry_core::migrate_job::{Job, JobLogLine, JobState};
use gantry_core::ship::{Build, Host, HostFacts, HostRelease, Rollout, Task};
use gantry_core::{Change, ChangeEvent, ChangePatch, ChangeQuery, NewService, Service, TokenInfo};
use sqlx::postgres::{PgListener, PgPool, PgPoolOptions};
use sqlx::Acquire;
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
    crate::queries::queries!(sqlx::Postgres);
}

mod sq {
    crate::ship_queries::ship_queries!(sqlx::Postgres);
}

mod fq {
    crate::flag_queries::flag_queries!(sqlx::Postgres, super::q);
}

mod mq {
    crate::migrate_queries::migrate_queries!(sqlx::Postgres);
}

mod iq {
    crate::incident_queries::incident_queries!(sqlx::Postgres);
}

mod moq {
    crate::monitor_queries::monitor_queries!(sqlx::Postgres);
}

mod nq {
    crate::notify_queries::notify_queries!(sqlx::Postgres);
}

mod dq {
    crate::detect_queries::detect_queries!(sqlx::Postgres);
}

mod sessq {
    crate::session_queries::session_queries!(sqlx::Postgres);
}

/// Advisory lock keys are arbitrary constants: "GANTRY" in ASCII and a purpose byte
/// (01 migration, 02 stream append, 03 first-token bootstrap).
const MIGRATION_LOCK: i64 = 0x0047_414e_5452_5901;

/// The channel stream wake-ups travel on.
pub const CHANNEL: &str = "gantry_changes";

/// Sends a shipping wake-up: channel `$1`, payload `$2`.
const NOTIFY_SQL: &str = "SELECT pg_notify($1, $2)";

const DIALECT: Dialect = Dialect {
    event_lock: Some("SELECT pg_advisory_xact_lock(20056528024393986)"),
    notify: Some("SELECT pg_notify($1, $2)"),
    bootstrap_lock: Some("SELECT pg_advisory_xact_lock(20056528024393987)"),
    for_update: " FOR UPDATE",
    snapshot_isolation: Some("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY"),
};

pub struct PostgresStore {
    inserts: GroupCommit,
    pool: PgPool,
    schema: SchemaStatus,
    events: watch::Sender<i64>,
    ship: broadcast::Sender<ShipSignal>,
    flags: watch::Sender<i64>,
    listener: tokio::task::JoinHandle<()>,
}

impl PostgresStore {
    pub async fn open(url: &str, options: StoreOptions) -> Result<PostgresStore> {
        let pool = PgPoolOptions::new()
            .max_connections(options.max_connections.max(2))
            .acquire_timeout(Duration::from_secs(10))
            .connect(url)
            .await
            .map_err(|e| {
                StoreError::Config(format!(
                    "cannot connect to PostgreSQL at {}: {e}",
                    crate::redact_url(url)
                ))
            })?;
        let schema = migrate(&pool).await?;
        let last = q::last_event_seq(&pool).await?;
        let (events, _) = watch::channel(last);
        let (ship, _) = broadcast::channel(4096);
        let flags = watch::channel(0).0;
        let (ready_tx, ready) = tokio::sync::oneshot::channel();
        let listener = tokio::spawn(listen(
            pool.clone(),
            events.clone(),
            ship.clone(),
            flags.clone(),
            ready_tx,
        ));
        // Wake-ups sent before the listener runs would be lost to this server: wait for it.
        let _ = tokio::time::timeout(Duration::from_secs(10), ready).await;
        let inserts = {
            let pool = pool.clone();
            let auto_create = options.auto_create_services;
            GroupCommit::spawn(Arc::new(move |changes: Vec<Change>| {
                let pool = pool.clone();
                Box::pin(async move {
                    q::insert_changes(&pool, &DIALECT, CHANNEL, &changes, auto_create).await
                })
            }))
        };
        Ok(PostgresStore {
            inserts,
            pool,
            schema,
            events,
            ship,
            flags,
            listener,
        })
    }

    /// After a flag-set write: other servers hear of it through `NOTIFY`; this one's
    /// followers are woken at once (the change stream's wake-up comes back by `NOTIFY`).
    fn written(&self, _seq: Option<i64>) {
        self.flags.send_modify(|wakes| *wakes += 1);
    }
}

/// Follows `NOTIFY` on [`CHANNEL`] for as long as the store lives, reconnecting on failure
/// and re-reading the newest `seq` after each reconnect (notifications sent while it was
/// away are lost; the table is not).
async fn listen(
    pool: PgPool,
    events: watch::Sender<i64>,
    ship: broadcast::Sender<ShipSignal>,
    flags: watch::Sender<i64>,
    ready: tokio::sync::oneshot::Sender<()>,
) {
    let mut ready = Some(ready);
    let bump = |seq: i64| {
        events.send_if_modified(|newest| {
            let newer = seq > *newest;
            if newer {
                *newest = seq;
            }
            newer
        });
    };
    loop {
        let mut listener = match PgListener::connect_with(&pool).await {
            Ok(l) => l,
            Err(e) => {
                if pool.is_closed() {
                    return;
                }
                tracing::warn!(error = %e, "change stream listener cannot connect; retrying");
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        if let Err(e) = listener
            .listen_all([CHANNEL, crate::SHIP_CHANNEL, crate::FLAGS_CHANNEL])
            .await
        {
            tracing::warn!(error = %e, "change stream listener cannot LISTEN; retrying");
            tokio::time::sleep(Duration::from_secs(1)).await;
            continue;
        }
        if let Ok(seq) = q::last_event_seq(&pool).await {
            bump(seq);
        }
        // Flag writes made while this listener was away were not heard: followers re-read.
        flags.send_modify(|wakes| *wakes += 1);
        if let Some(ready) = ready.take() {
            let _ = ready.send(());
        }
        loop {
            match listener.try_recv().await {
                Ok(Some(notification)) => {
                    if notification.channel() == crate::FLAGS_CHANNEL {
                        flags.send_modify(|wakes| *wakes += 1);
                    } else if notification.channel() == crate::SHIP_CHANNEL {
                        if let Some(signal) = ShipSignal::parse(notification.payload()) {
                            let _ = ship.send(signal);
                        }
                    } else if let Ok(seq) = notification.payload().parse::<i64>() {
                        bump(seq);
                    }
                }
                Ok(None) => {
                    // The connection dropped; sqlx reconnects on the next call. Catch up.
                    if let Ok(seq) = q::last_event_seq(&pool).await {
                        bump(seq);
                    }
                    flags.send_modify(|wakes| *wakes += 1);
                }
                Err(e) => {
                    if pool.is_closed() {
                        return;
                    }
                    tracing::warn!(error = %e, "change stream listener failed; reconnecting");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    break;
                }
            }
        }
    }
}

async fn migrate(pool: &PgPool) -> Result<SchemaStatus> {
    let mut conn = pool.acquire().await?;
    sqlx::query("SELECT pg_advisory_lock($1)")
        .bind(MIGRATION_LOCK)
        .execute(&mut *conn)
        .await?;
    let result = async {
        sqlx::raw_sql(
            "CREATE TABLE IF NOT EXISTS gantry_schema (id INTEGER PRIMARY KEY CHECK (id = 1), version BIGINT NOT NULL, min_binary_version BIGINT NOT NULL, updated_at BIGINT NOT NULL)",
        )
        .execute(&mut *conn)
        .await?;
        let found: Option<(i64, i64)> =
            sqlx::query_as("SELECT version, min_binary_version FROM gantry_schema WHERE id = 1")
                .fetch_optional(&mut *conn)
                .await?;
        let (found, found_min) = found.unwrap_or((0, 0));
        let plan = schema::plan(found, found_min, SCHEMA_VERSION)?;
        for &version in &plan {
            let migration = schema::migration(version);
            tracing::info!(version, description = migration.description, "applying schema migration");
            let mut tx = conn.begin().await?;
            sqlx::raw_sql(migration.postgres).execute(&mut *tx).await?;
            sqlx::query(
                "INSERT INTO gantry_schema (id, version, min_binary_version, updated_at) VALUES (1, $1, $2, $3) \
                 ON CONFLICT (id) DO UPDATE SET version = excluded.version, min_binary_version = excluded.min_binary_version, updated_at = excluded.updated_at",
            )
            .bind(migration.version)
            .bind(migration.min_binary_version)
            .bind(Utc::now().timestamp_micros())
            .execute(&mut *tx)
            .await?;
            tx.commit().await?;
        }
        Ok::<_, StoreError>(SchemaStatus {
            found,
            current: plan.last().copied().unwrap_or(found),
            applied: plan,
        })
    }
    .await;
    sqlx::query("SELECT pg_advisory_unlock($1)")
        .bind(MIGRATION_LOCK)
        .execute(&mut *conn)
        .await?;
    result
}

#[async_trait]
impl Store for PostgresStore {
    fn backend(&self) -> Backend {
        Backend::Postgres
    }

    async fn ping(&self) -> Result<()> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    fn schema_status(&self) -> &SchemaStatus {
        &self.schema
    }

    async fn insert_change(&self, change: &Change) -> Result<i64> {
        self.inserts.insert(change.clone()).await
    }

    async fn import_changes(&self, changes: &[Change]) -> Result<u64> {
        q::import_changes(&self.pool, changes).await
    }

    async fn get_change(&self, id: Ulid) -> Result<Option<Change>> {
        q::get_change(&self.pool, id).await
    }

    async fn list_changes(&self, query: &ChangeQuery) -> Result<Vec<Change>> {
        q::list_changes(&self.pool, query).await
    }

    async fn changes_by_tags(
        &self,
        tags: &[String],
        matching: TagMatch,
        since: DateTime<Utc>,
        until: DateTime<Utc>,
        limit: u32,
    ) -> Result<Vec<Change>> {
        q::changes_by_tags(&self.pool, tags, matching, since, until, limit).await
    }

    async fn update_change(
        &self,
        id: Ulid,
        patch: &ChangePatch,
        actor: &str,
        now: DateTime<Utc>,
    ) -> Result<Change> {
        let (change, _) =
            q::update_change(&self.pool, &DIALECT, CHANNEL, id, patch, actor, now).await?;
        Ok(change)
    }

    async fn events_after(&self, after: i64, limit: u32) -> Result<Vec<ChangeEvent>> {
        q::events_after(&self.pool, after, limit).await
    }

    async fn last_event_seq(&self) -> Result<i64> {
        q::last_event_seq(&self.pool).await
    }

    fn subscribe(&self) -> watch::Receiver<i64> {
        self.events.subscribe()
    }

    async fn prune_events(&self, before: DateTime<Utc>) -> Result<u64> {
        q::prune_events(&self.pool, before).await
    }

    async fn create_service(&self, service: &NewService, now: DateTime<Utc>) -> Result<Service> {
        q::create_service(&self.pool, service, now).await
    }

    async fn get_service(&self, name: &str) -> Result<Option<Service>> {
        q::get_service(&self.pool, name).await
    }

    async fn list_services(&self) -> Result<Vec<Service>> {
        q::list_services(&self.pool).await
    }

    async fn delete_service(&self, name: &str, force: bool) -> Result<()> {
        q::delete_service(&self.pool, name, force).await
    }

    async fn list_environments(&self) -> Result<Vec<String>> {
        q::list_environments(&self.pool).await
    }

    async fn create_token(&self, info: &TokenInfo, digest: &str) -> Result<()> {
        q::create_token(&self.pool, info, digest).await
    }

    async fn token_by_digest(&self, digest: &str) -> Result<Option<TokenRecord>> {
        q::token_by_digest(&self.pool, digest).await
    }

    async fn list_tokens(&self) -> Result<Vec<TokenInfo>> {
        q::list_tokens(&self.pool).await
    }

    async fn revoke_token(&self, name: &str, now: DateTime<Utc>) -> Result<()> {
        if q::revoke_token(&self.pool, &DIALECT, name, now)
            .await?
            .is_some()
        {
            self.written(None);
        }
        Ok(())
    }

    async fn bootstrap_admin_token(&self, info: &TokenInfo, digest: &str) -> Result<bool> {
        q::bootstrap_admin_token(&self.pool, &DIALECT, info, digest).await
    }

    async fn try_acquire_lease(
        &self,
        name: &str,
        holder: &str,
        ttl: Duration,
        now: DateTime<Utc>,
    ) -> Result<bool> {
        q::try_acquire_lease(&self.pool, name, holder, ttl, now).await
    }

    async fn release_lease(&self, name: &str, holder: &str) -> Result<()> {
        q::release_lease(&self.pool, name, holder).await
    }

    async fn insert_build(&self, build: &Build) -> Result<()> {
        sq::insert_build(&self.pool, build).await
    }

    async fn get_build(&self, id: Ulid) -> Result<Option<Build>> {
        sq::get_build(&self.pool, id).await
    }

    async fn find_builds(&self, query: &BuildQuery) -> Result<Vec<Build>> {
        sq::find_builds(&self.pool, query).await
    }

    async fn delete_build(&self, id: Ulid) -> Result<()> {
        sq::delete_build(&self.pool, id).await
    }

    async fn builds_in_use(&self, service: &str) -> Result<Vec<Ulid>> {
        sq::builds_in_use(&self.pool, service).await
    }

    async fn blob_size(&self, sha256: &str) -> Result<Option<(u64, u32)>> {
        sq::blob_size(&self.pool, sha256).await
    }

    async fn put_blob_chunk(&self, upload_key: &str, n: u32, data: &[u8]) -> Result<()> {
        sq::put_blob_chunk(&self.pool, upload_key, n, data).await
    }

    async fn commit_blob(
        &self,
        upload_key: &str,
        sha256: &str,
        size: u64,
        chunks: u32,
        now: DateTime<Utc>,
    ) -> Result<()> {
        sq::commit_blob(&self.pool, upload_key, sha256, size, chunks, now).await
    }

    async fn drop_blob_chunks(&self, upload_key: &str) -> Result<()> {
        sq::drop_blob_chunks(&self.pool, upload_key).await
    }

    async fn blob_chunk(&self, sha256: &str, n: u32) -> Result<Option<Vec<u8>>> {
        sq::blob_chunk(&self.pool, sha256, n).await
    }

    async fn delete_blob(&self, sha256: &str) -> Result<()> {
        sq::delete_blob(&self.pool, sha256).await
    }

    async fn put_deploy_config(
        &self,
        service: &str,
        config: &str,
        actor: &str,
        now: DateTime<Utc>,
    ) -> Result<Option<String>> {
        sq::put_deploy_config(&self.pool, service, config, actor, now).await
    }

    async fn get_deploy_config(&self, service: &str) -> Result<Option<DeployConfigRecord>> {
        sq::get_deploy_config(&self.pool, service).await
    }

    async fn enroll_host(
        &self,
        name: &str,
        environment: &str,
        roles: &[String],
        now: DateTime<Utc>,
    ) -> Result<()> {
        sq::enroll_host(&self.pool, name, environment, roles, now).await
    }

    async fn get_host(&self, name: &str) -> Result<Option<Host>> {
        sq::get_host(&self.pool, name).await
    }

    async fn list_hosts(&self, environment: Option<&str>) -> Result<Vec<Host>> {
        sq::list_hosts(&self.pool, environment).await
    }

    async fn host_seen(
        &self,
        name: &str,
        facts: &HostFacts,
        releases: &BTreeMap<String, HostRelease>,
        now: DateTime<Utc>,
    ) -> Result<()> {
        sq::host_seen(&self.pool, name, facts, releases, now).await
    }

    async fn set_host_maintenance(&self, name: &str, on: bool) -> Result<()> {
        sq::set_host_maintenance(&self.pool, name, on).await
    }

    async fn delete_host(&self, name: &str) -> Result<()> {
        sq::delete_host(&self.pool, name).await
    }

    async fn insert_rollout(&self, rollout: &Rollout, tasks: &[Task]) -> Result<Vec<String>> {
        sq::insert_rollout(&self.pool, Some(NOTIFY_SQL), rollout, tasks).await
    }

    async fn control_rollout(&self, id: Ulid, control: &str) -> Result<()> {
        sq::control_rollout(&self.pool, id, control).await
    }

    async fn get_rollout(&self, id: Ulid) -> Result<Option<Rollout>> {
        sq::get_rollout(&self.pool, id).await
    }

    async fn active_rollout(&self, service: &str, environment: &str) -> Result<Option<Rollout>> {
        sq::active_rollout(&self.pool, service, environment).await
    }

    async fn list_rollouts(
        &self,
        service: Option<&str>,
        environment: Option<&str>,
        active_only: bool,
        limit: u32,
    ) -> Result<Vec<Rollout>> {
        sq::list_rollouts(&self.pool, service, environment, active_only, limit).await
    }

    async fn save_rollout(
        &self,
        rollout: &Rollout,
        changed: &[&Task],
        new: &[Task],
        deployment: Option<&Deployment>,
    ) -> Result<Vec<String>> {
        sq::save_rollout(
            &self.pool,
            Some(NOTIFY_SQL),
            rollout,
            changed,
            new,
            deployment,
        )
        .await
    }

    async fn rollout_tasks(&self, rollout: Ulid) -> Result<Vec<Task>> {
        sq::rollout_tasks(&self.pool, rollout).await
    }

    async fn host_tasks(&self, host: &str, open_only: bool, limit: u32) -> Result<Vec<Task>> {
        sq::host_tasks(&self.pool, host, open_only, limit).await
    }

    async fn get_task(&self, id: Ulid) -> Result<Option<Task>> {
        sq::get_task(&self.pool, id).await
    }

    async fn report_task(&self, task: &Task) -> Result<bool> {
        sq::report_task(&self.pool, Some(NOTIFY_SQL), task).await
    }

    async fn insert_loose_tasks(&self, tasks: &[Task]) -> Result<()> {
        sq::insert_loose_tasks(&self.pool, tasks).await?;
        let mut hosts: Vec<String> = tasks.iter().map(|t| t.host.clone()).collect();
        hosts.sort();
        hosts.dedup();
        for payload in ShipSignal::Dispatched(hosts).payloads() {
            sqlx::query(NOTIFY_SQL)
                .bind(crate::SHIP_CHANNEL)
                .bind(payload)
                .execute(&self.pool)
                .await?;
        }
        Ok(())
    }

    async fn deployments(
        &self,
        service: &str,
        environment: &str,
        limit: u32,
    ) -> Result<Vec<Deployment>> {
        sq::deployments(&self.pool, service, environment, limit).await
    }

    async fn build_deployments(&self, build: Ulid) -> Result<Vec<Deployment>> {
        sq::build_deployments(&self.pool, build).await
    }

    fn subscribe_ship(&self) -> tokio::sync::broadcast::Receiver<ShipSignal> {
        self.ship.subscribe()
    }

    async fn flag_state(&self) -> Result<FlagState> {
        fq::flag_state(&self.pool).await
    }

    async fn flag_revisions(&self) -> Result<Vec<(String, i64)>> {
        fq::flag_revisions(&self.pool).await
    }

    fn subscribe_flags(&self) -> watch::Receiver<i64> {
        self.flags.subscribe()
    }

    async fn create_flag(&self, flag: &FlagRecord, change: &Change) -> Result<FlagRecord> {
        let written = fq::create_flag(&self.pool, &DIALECT, CHANNEL, flag, change).await?;
        self.written(written.seq);
        Ok(written.flag)
    }

    async fn get_flag(&self, service: &str, name: &str) -> Result<Option<FlagRecord>> {
        fq::get_flag(&self.pool, service, name).await
    }

    async fn list_flags(
        &self,
        service: Option<&str>,
        archived: Option<bool>,
    ) -> Result<Vec<FlagRecord>> {
        fq::list_flags(&self.pool, service, archived).await
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
            &self.pool,
            &DIALECT,
            CHANNEL,
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
        let stored = fq::put_segment(&self.pool, &DIALECT, segment, expected_version).await?;
        self.written(None);
        Ok(stored)
    }

    async fn list_segments(&self, service: &str) -> Result<Vec<SegmentRecord>> {
        fq::list_segments(&self.pool, service).await
    }

    async fn delete_segment(&self, service: &str, name: &str) -> Result<()> {
        fq::delete_segment(&self.pool, &DIALECT, service, name).await?;
        self.written(None);
        Ok(())
    }

    async fn flag_snapshot(&self, service: &str) -> Result<FlagSnapshot> {
        fq::flag_snapshot(&self.pool, &DIALECT, service).await
    }

    async fn insert_flag_schedule(&self, schedule: &FlagSchedule) -> Result<()> {
        fq::insert_flag_schedule(&self.pool, schedule).await
    }

    async fn list_flag_schedules(
        &self,
        service: &str,
        name: Option<&str>,
    ) -> Result<Vec<FlagSchedule>> {
        fq::list_flag_schedules(&self.pool, service, name).await
    }

    async fn get_flag_schedule(&self, id: Ulid) -> Result<Option<FlagSchedule>> {
        fq::get_flag_schedule(&self.pool, id).await
    }

    async fn due_flag_schedules(
        &self,
        now: DateTime<Utc>,
        limit: u32,
    ) -> Result<Vec<FlagSchedule>> {
        fq::due_flag_schedules(&self.pool, now, limit).await
    }

    async fn finish_flag_schedule(
        &self,
        id: Ulid,
        state: &str,
        ran_at: DateTime<Utc>,
        change_id: Option<Ulid>,
        error: Option<&str>,
    ) -> Result<bool> {
        fq::finish_flag_schedule(&self.pool, id, state, ran_at, change_id, error).await
    }

    async fn register_sdk_client(&self, client: &SdkClient) -> Result<()> {
        fq::register_sdk_client(&self.pool, client).await
    }

    async fn sdk_clients(&self, service: &str) -> Result<Vec<SdkClient>> {
        fq::sdk_clients(&self.pool, service).await
    }

    async fn add_flag_usage(&self, usage: &[FlagUsage]) -> Result<u64> {
        fq::add_flag_usage(&self.pool, &DIALECT, usage).await
    }

    async fn flag_usage_since(
        &self,
        service: &str,
        since: DateTime<Utc>,
    ) -> Result<Vec<FlagUsage>> {
        fq::flag_usage_since(&self.pool, service, since).await
    }

    async fn prune_flag_usage(&self, before: DateTime<Utc>) -> Result<u64> {
        fq::prune_flag_usage(&self.pool, before).await
    }

    async fn insert_migrate_job(&self, job: &Job) -> Result<()> {
        mq::insert_migrate_job(&self.pool, job).await
    }

    async fn get_migrate_job(&self, id: Ulid) -> Result<Option<Job>> {
        mq::get_migrate_job(&self.pool, id).await
    }

    async fn list_migrate_jobs(
        &self,
        database: Option<&str>,
        states: &[JobState],
        limit: u32,
    ) -> Result<Vec<Job>> {
        mq::list_migrate_jobs(&self.pool, database, states, limit).await
    }

    async fn update_migrate_job(&self, job: &Job) -> Result<Job> {
        mq::update_migrate_job(&self.pool, job).await
    }

    async fn append_migrate_log(
        &self,
        job: Ulid,
        lines: &[(DateTime<Utc>, String)],
    ) -> Result<i64> {
        mq::append_migrate_log(&self.pool, &DIALECT, job, lines).await
    }

    async fn migrate_log_after(
        &self,
        job: Ulid,
        after: i64,
        limit: u32,
    ) -> Result<Vec<JobLogLine>> {
        mq::migrate_log_after(&self.pool, job, after, limit).await
    }

    async fn insert_incident(
        &self,
        incident: &Incident,
        timeline: &[NewTimelineEntry],
    ) -> Result<()> {
        iq::insert_incident(&self.pool, incident, timeline).await
    }

    async fn get_incident(&self, id: Ulid) -> Result<Option<Incident>> {
        iq::get_incident(&self.pool, id).await
    }

    async fn list_incidents(
        &self,
        since: Option<DateTime<Utc>>,
        open_only: bool,
        limit: u32,
    ) -> Result<Vec<Incident>> {
        iq::list_incidents(&self.pool, since, open_only, limit).await
    }

    async fn update_incident(
        &self,
        incident: &Incident,
        timeline: &[NewTimelineEntry],
    ) -> Result<Incident> {
        iq::update_incident(&self.pool, incident, timeline).await
    }

    async fn incident_timeline(&self, id: Ulid) -> Result<Vec<TimelineEntry>> {
        iq::incident_timeline(&self.pool, id).await
    }

    async fn put_monitor_file(
        &self,
        source: &str,
        text: &str,
        actor: &str,
        now: DateTime<Utc>,
    ) -> Result<Option<String>> {
        moq::put_monitor_file(&self.pool, &DIALECT, source, text, actor, now).await
    }

    async fn list_monitor_files(&self) -> Result<Vec<MonitorFileRecord>> {
        moq::list_monitor_files(&self.pool).await
    }

    async fn put_heartbeat_key(
        &self,
        monitor: &str,
        digest: &str,
        now: DateTime<Utc>,
    ) -> Result<()> {
        moq::put_heartbeat_key(&self.pool, monitor, digest, now).await
    }

    async fn heartbeat_by_digest(&self, digest: &str) -> Result<Option<String>> {
        moq::heartbeat_by_digest(&self.pool, digest).await
    }

    async fn heartbeat_monitors(&self) -> Result<Vec<String>> {
        moq::heartbeat_monitors(&self.pool).await
    }

    async fn forget_monitors(&self, monitors: &[String]) -> Result<()> {
        moq::forget_monitors(&self.pool, monitors).await
    }

    async fn insert_ping(&self, ping: &NewPing) -> Result<i64> {
        moq::insert_ping(&self.pool, ping).await
    }

    async fn recent_pings(&self, monitor: &str, limit: u32) -> Result<Vec<PingRecord>> {
        moq::recent_pings(&self.pool, monitor, limit).await
    }

    async fn save_monitor_round(
        &self,
        states: &[MonitorStateRecord],
        transitions: &[NewTransition],
    ) -> Result<()> {
        moq::save_monitor_round(&self.pool, states, transitions).await
    }

    async fn monitor_states(&self, monitor: Option<&str>) -> Result<Vec<MonitorStateRecord>> {
        moq::monitor_states(&self.pool, monitor).await
    }

    async fn delete_monitor_states(&self, monitor: &str, series: &[String]) -> Result<()> {
        moq::delete_monitor_states(&self.pool, monitor, series).await
    }

    async fn monitor_transitions(
        &self,
        monitor: Option<&str>,
        limit: u32,
    ) -> Result<Vec<TransitionRecord>> {
        moq::monitor_transitions(&self.pool, monitor, limit).await
    }

    async fn prune_monitor_history(
        &self,
        pings_before: DateTime<Utc>,
        keep_pings: u32,
        transitions_before: DateTime<Utc>,
    ) -> Result<u64> {
        moq::prune_monitor_history(&self.pool, pings_before, keep_pings, transitions_before).await
    }

    async fn prune_deliveries(&self, before: DateTime<Utc>) -> Result<u64> {
        nq::prune_deliveries(&self.pool, before).await
    }

    async fn notify_state(&self, name: &str) -> Result<Option<String>> {
        nq::notify_state(&self.pool, name).await
    }

    async fn save_notify_round(
        &self,
        name: &str,
        state: &str,
        deliveries: &[NewDelivery],
        now: DateTime<Utc>,
    ) -> Result<()> {
        nq::save_notify_round(&self.pool, name, state, deliveries, now).await
    }

    async fn claim_deliveries(
        &self,
        holder: &str,
        now: DateTime<Utc>,
        until: DateTime<Utc>,
        limit: u32,
    ) -> Result<Vec<DeliveryRecord>> {
        nq::claim_deliveries(&self.pool, holder, now, until, limit).await
    }

    async fn finish_delivery(
        &self,
        id: Ulid,
        holder: &str,
        attempt_at: DateTime<Utc>,
        outcome: &DeliveryOutcome,
    ) -> Result<bool> {
        nq::finish_delivery(&self.pool, id, holder, attempt_at, outcome).await
    }

    async fn list_deliveries(
        &self,
        service: Option<&str>,
        environment: Option<&str>,
        state: Option<&str>,
        limit: u32,
    ) -> Result<Vec<DeliveryRecord>> {
        nq::list_deliveries(&self.pool, service, environment, state, limit).await
    }

    async fn insert_silence(&self, silence: &SilenceRecord) -> Result<()> {
        nq::insert_silence(&self.pool, silence).await
    }

    async fn list_silences(&self, now: Option<DateTime<Utc>>) -> Result<Vec<SilenceRecord>> {
        nq::list_silences(&self.pool, now).await
    }

    async fn expire_silence(
        &self,
        id: Ulid,
        by: &str,
        now: DateTime<Utc>,
    ) -> Result<Option<SilenceRecord>> {
        nq::expire_silence(&self.pool, id, by, now).await
    }

    async fn put_detect_config(
        &self,
        service: &str,
        text: Option<&str>,
        actor: &str,
        now: DateTime<Utc>,
    ) -> Result<Option<String>> {
        dq::put_detect_config(&self.pool, &DIALECT, service, text, actor, now).await
    }

    async fn list_detect_configs(&self) -> Result<Vec<DetectConfigRecord>> {
        dq::list_detect_configs(&self.pool).await
    }

    async fn put_log_watches(
        &self,
        service: &str,
        text: Option<&str>,
        actor: &str,
        now: DateTime<Utc>,
    ) -> Result<Option<String>> {
        dq::put_log_watches(&self.pool, &DIALECT, service, text, actor, now).await
    }

    async fn list_log_watches(&self) -> Result<Vec<DetectConfigRecord>> {
        dq::list_log_watches(&self.pool).await
    }

    async fn insert_verdict(&self, verdict: &VerdictRecord) -> Result<()> {
        dq::insert_verdict(&self.pool, verdict).await
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
            &self.pool,
            service,
            environment,
            regression_only,
            since,
            limit,
        )
        .await
    }

    async fn get_verdict(&self, id: Ulid) -> Result<Option<VerdictRecord>> {
        dq::get_verdict(&self.pool, id).await
    }

    async fn regressions_of(
        &self,
        rollout: Option<Ulid>,
        change: Option<Ulid>,
    ) -> Result<Vec<VerdictRecord>> {
        dq::regressions_of(&self.pool, rollout, change).await
    }

    async fn create_session(&self, session: &SessionRecord) -> Result<()> {
        sessq::create_session(&self.pool, session).await
    }

    async fn get_session(&self, id_digest: &str) -> Result<Option<SessionRecord>> {
        sessq::get_session(&self.pool, id_digest).await
    }

    async fn touch_session(
        &self,
        id_digest: &str,
        last_seen_at: DateTime<Utc>,
        idle_expires_at: DateTime<Utc>,
    ) -> Result<bool> {
        sessq::touch_session(&self.pool, id_digest, last_seen_at, idle_expires_at).await
    }

    async fn delete_session(&self, id_digest: &str) -> Result<bool> {
        sessq::delete_session(&self.pool, id_digest).await
    }

    async fn delete_token_sessions(&self, token_name: &str) -> Result<u64> {
        sessq::delete_token_sessions(&self.pool, token_name).await
    }

    async fn list_sessions(&self) -> Result<Vec<SessionRecord>> {
        sessq::list_sessions(&self.pool).await
    }

    async fn prune_sessions(&self, now: DateTime<Utc>) -> Result<u64> {
        sessq::prune_sessions(&self.pool, now).await
    }

    async fn close(&self) {
        self.listener.abort();
        self.pool.close().await;
    }
}
