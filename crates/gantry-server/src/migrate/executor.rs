//! Runs migration jobs. For each configured database whose `url_env` this server has, a
//! loop waits for queued jobs; when there is one it takes the lease `migrate:<NAME>` (so
//! one server runs a database's jobs), marks jobs another server left running as
//! `interrupted`, and runs the oldest queued job with `gantry_migrate`'s runner.
//!
//! While a job runs, a separate task renews the lease every 2 s and carries out what people
//! asked (`control`: pause, resume, abort) through the runner's [`Control`], which acts
//! between statements and batches. A server that loses the lease stops the job at once (the
//! statement's connection is closed) and leaves it `interrupted`; so does one that shuts
//! down. The log is written in batches by a third task, in order.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use gantry_core::migrate_job::{Job, JobKind, JobState};
use gantry_core::ChangeStatus;
use gantry_migrate::layout::Phase;
use gantry_migrate::runner::{Control, Event, Options, Probe, RunError, Runner};
use gantry_store::{Store, StoreError};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::jobs::{self, finish_change, lease_name};
use crate::config::MigrateDatabase;
use crate::state::AppState;

/// How long a lease lasts without renewal: a killed server's jobs are taken over after it.
pub const LEASE_TTL: Duration = Duration::from_secs(10);
const RENEW_EVERY: Duration = Duration::from_secs(2);
const IDLE_POLL: Duration = Duration::from_secs(1);
const CONTROL_POLL: Duration = Duration::from_millis(300);
/// Longest wait for one store call of the watcher.
const STORE_CALL: Duration = Duration::from_secs(2);

/// Starts a loop for every database this server can reach.
pub fn start(state: &AppState) {
    for (name, db) in &state.config.migrate.databases {
        match std::env::var(&db.url_env) {
            Ok(url) if !url.trim().is_empty() => {
                tracing::info!(database = %name, "migrate: running this database's jobs when they come");
                tokio::spawn(database_loop(state.clone(), name.clone(), db.clone(), url));
            }
            _ => tracing::info!(
                database = %name,
                variable = %db.url_env,
                "migrate: this server does not run the database's jobs: the variable is not set"
            ),
        }
    }
}

async fn database_loop(state: AppState, name: String, db: MigrateDatabase, url: String) {
    loop {
        if let Err(e) = tick(&state, &name, &db, &url).await {
            tracing::warn!(database = %name, error = %e, "migrate: job loop");
        }
        tokio::select! {
            _ = state.shutdown.cancelled() => return,
            _ = tokio::time::sleep(IDLE_POLL) => {}
        }
    }
}

/// One look at the database's jobs: takes the lease only when there is work.
async fn tick(
    state: &AppState,
    name: &str,
    db: &MigrateDatabase,
    url: &str,
) -> Result<(), StoreError> {
    let open = state
        .store
        .list_migrate_jobs(
            Some(name),
            &[JobState::Queued, JobState::Running, JobState::Paused],
            1000,
        )
        .await?;
    if open.is_empty() {
        return Ok(());
    }
    let lease = lease_name(name);
    if !state
        .store
        .try_acquire_lease(&lease, &state.holder, LEASE_TTL, Utc::now())
        .await?
    {
        return Ok(());
    }
    // Whatever happens while the lease is held, it is handed back (other servers need not
    // wait out its TTL).
    let worked = with_lease(state, &open, db, url).await;
    let released = state.store.release_lease(&lease, &state.holder).await;
    worked.and(released)
}

/// With the lease held: marks what another server left running as interrupted, then runs
/// the oldest queued job.
async fn with_lease(
    state: &AppState,
    open: &[Job],
    db: &MigrateDatabase,
    url: &str,
) -> Result<(), StoreError> {
    // We hold the lease and run nothing: a job still running or paused was left by a
    // server that stopped or lost the lease.
    let left = open
        .iter()
        .filter(|j| matches!(j.state, JobState::Running | JobState::Paused) && j.holder.is_some());
    for listed in left {
        // Lists carry no files: write back the whole job as stored.
        let Some(mut job) = state.store.get_migrate_job(listed.id).await? else {
            continue;
        };
        if !matches!(job.state, JobState::Running | JobState::Paused) {
            continue;
        }
        let who = job.holder.clone().unwrap_or_else(|| "its server".into());
        job.state = JobState::Interrupted;
        job.control = None;
        job.holder = None;
        job.error = Some(format!(
            "{who} stopped while running it (killed, or it lost the lease); what had finished is recorded, nothing else. `gantry migrate retry {}` continues where it stopped",
            job.id
        ));
        job.updated_at = Utc::now();
        if let Ok(job) = state.store.update_migrate_job(&job).await {
            let line = job.error.clone().unwrap_or_default();
            state
                .store
                .append_migrate_log(job.id, &[(Utc::now(), format!("interrupted: {line}"))])
                .await?;
        }
    }
    let next = open
        .iter()
        .filter(|j| j.state == JobState::Queued)
        .min_by_key(|j| (j.created_at, j.id));
    if let Some(job) = next {
        if let Some(job) = state.store.get_migrate_job(job.id).await? {
            if job.state == JobState::Queued {
                run_job(state, db, url, job).await;
            }
        }
    }
    Ok(())
}

/// Why a running job stopped early.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stop {
    Abort,
    LostLease,
    Shutdown,
}

/// Runs one job to its end, with its lease renewed and its controls followed.
async fn run_job(state: &AppState, db: &MigrateDatabase, url: &str, mut job: Job) {
    let store = state.store.clone();
    let aborting = job.control.as_deref() == Some("abort");
    job.state = JobState::Running;
    job.holder = Some(state.holder.clone());
    job.started_at = job.started_at.or(Some(Utc::now()));
    job.control = None;
    job.error = None;
    job.updated_at = Utc::now();
    let job = match store.update_migrate_job(&job).await {
        Ok(job) => job,
        // Someone paused or aborted it since we looked: the next tick sees that.
        Err(_) => return,
    };
    let (log_tx, log_rx) = mpsc::unbounded_channel::<(DateTime<Utc>, String)>();
    let writer = tokio::spawn(write_log(store.clone(), job.id, log_rx));
    let log = |text: String| {
        let _ = log_tx.send((Utc::now(), text));
    };
    log(format!("running on {}", state.holder));
    let control = Control::default();
    let stop = Arc::new(std::sync::Mutex::new(None::<Stop>));
    let lost = CancellationToken::new();
    let done = CancellationToken::new();
    let held = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let watcher = tokio::spawn(watch(
        state.clone(),
        job.id,
        lease_name(&job.database),
        Handles {
            control: control.clone(),
            stop: stop.clone(),
            lost: lost.clone(),
            done: done.clone(),
            held: held.clone(),
        },
    ));
    // The runner's futures are not `Send` (sqlx's executors over a borrowed connection),
    // so the job runs on a blocking thread that drives it; a lost lease drops it there,
    // which closes its connections and so ends its statement.
    let outcome = {
        let (state, db, url, job, control, log_tx, lost, held) = (
            state.clone(),
            db.clone(),
            url.to_string(),
            job.clone(),
            control.clone(),
            log_tx.clone(),
            lost.clone(),
            held.clone(),
        );
        let handle = tokio::runtime::Handle::current();
        tokio::task::spawn_blocking(move || {
            handle.block_on(async {
                let log = Log {
                    tx: &log_tx,
                    held: &held,
                };
                tokio::select! {
                    outcome = execute(&state, &db, &url, &job, control, aborting, &log) => Some(outcome),
                    _ = lost.cancelled() => None,
                }
            })
        })
        .await
        .unwrap_or_else(|e| Some(Err(RunError::Database(format!("the job's task failed: {e}")))))
    };
    done.cancel();
    let _ = watcher.await;
    let stopped = *stop.lock().unwrap_or_else(|p| p.into_inner());
    let (state_now, error, report, change) = match (outcome, stopped) {
        (None, _) | (Some(Err(RunError::Stopped(_))), Some(Stop::LostLease | Stop::Shutdown)) => {
            let why = if stopped == Some(Stop::Shutdown) {
                "the server shut down"
            } else {
                "the server lost the lease"
            };
            (
                JobState::Interrupted,
                Some(format!(
                    "{why} mid-job; what had finished is recorded, nothing else. `gantry migrate retry {}` continues where it stopped",
                    job.id
                )),
                None,
                None,
            )
        }
        (Some(Err(RunError::Stopped(_))), _) | (Some(Ok(Outcome::Aborted)), _) => (
            JobState::Aborted,
            None,
            None,
            Some((ChangeStatus::Cancelled, "aborted on request".to_string())),
        ),
        (Some(Ok(Outcome::Done { report, summary })), _) => (
            JobState::Succeeded,
            None,
            Some(report),
            Some((ChangeStatus::Succeeded, summary)),
        ),
        (Some(Err(e)), _) => {
            let text = e.to_string();
            (
                JobState::Failed,
                Some(text.clone()),
                None,
                Some((ChangeStatus::Failed, format!("failed: {text}"))),
            )
        }
    };
    match state_now {
        JobState::Succeeded => log("succeeded".into()),
        JobState::Aborted => log("aborted".into()),
        other => log(format!("{other}: {}", error.clone().unwrap_or_default())),
    }
    drop(log_tx);
    let _ = writer.await;
    // The final write: merged with whatever control people wrote meanwhile, and only while
    // the job is still this server's (after a lost lease another may have taken it over).
    let mut written = false;
    for _ in 0..10 {
        let Ok(Some(mut current)) = store.get_migrate_job(job.id).await else {
            break;
        };
        if current.holder.as_deref() != Some(state.holder.as_str())
            || !matches!(current.state, JobState::Running | JobState::Paused)
        {
            tracing::warn!(job = %job.id, state = %current.state, "migrate: the job is no longer this server's; its end is not written");
            written = true;
            break;
        }
        current.state = state_now;
        current.control = None;
        current.holder = None;
        current.error = error.clone();
        current.report = report.clone().or(current.report);
        current.updated_at = Utc::now();
        if state_now != JobState::Interrupted {
            current.finished_at = Some(Utc::now());
        }
        match store.update_migrate_job(&current).await {
            Ok(_) => {
                written = true;
                break;
            }
            Err(StoreError::Stale(_)) => continue,
            Err(e) => {
                tracing::warn!(job = %job.id, error = %e, "migrate: cannot store the job's end");
                break;
            }
        }
    }
    if !written {
        tracing::error!(job = %job.id, state = %state_now, "migrate: gave up writing the job's end; another server will find it interrupted");
    }
    if let Some((status, outcome)) = change {
        finish_change(store.as_ref(), &job, status, outcome).await;
    }
}

/// Appends log lines as they come, a batch at a time.
async fn write_log(
    store: Arc<dyn Store>,
    job: ulid::Ulid,
    mut rx: mpsc::UnboundedReceiver<(DateTime<Utc>, String)>,
) {
    let mut batch = Vec::new();
    while let Some(line) = rx.recv().await {
        batch.push(line);
        while let Ok(line) = rx.try_recv() {
            batch.push(line);
            if batch.len() >= 500 {
                break;
            }
        }
        for attempt in 0..5 {
            match store.append_migrate_log(job, &batch).await {
                Ok(_) => break,
                Err(e) => {
                    tracing::warn!(job = %job, error = %e, attempt, "migrate: cannot write the job's log");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            }
        }
        batch.clear();
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// What the watcher of a running job shares with it.
struct Handles {
    /// The runner's pause/stop switch.
    control: Control,
    /// Why it was stopped, first reason wins.
    stop: Arc<std::sync::Mutex<Option<Stop>>>,
    /// Cancelled when the runner must be dropped at once (lease lost, shutdown).
    lost: CancellationToken,
    /// Cancelled when the job has ended: the watcher stops.
    done: CancellationToken,
    /// The runner holds on a pause.
    held: Arc<std::sync::atomic::AtomicBool>,
}

/// Renews the lease and follows people's controls until `done`; cancels `lost` when the
/// lease is gone (or the server shuts down).
async fn watch(state: AppState, id: ulid::Ulid, lease: String, handles: Handles) {
    let Handles {
        control,
        stop,
        lost,
        done,
        held,
    } = handles;
    let set_stop = |why: Stop| {
        let mut s = stop.lock().unwrap_or_else(|p| p.into_inner());
        if s.is_none() {
            *s = Some(why);
        }
    };
    let mut last_renewed = tokio::time::Instant::now();
    loop {
        tokio::select! {
            _ = done.cancelled() => return,
            _ = state.shutdown.cancelled() => {
                set_stop(Stop::Shutdown);
                control.stop();
                // Give the runner its checkpoint, then let go of the statement.
                tokio::select! {
                    _ = done.cancelled() => {}
                    _ = tokio::time::sleep(Duration::from_secs(2)) => lost.cancel(),
                }
                return;
            }
            _ = tokio::time::sleep(CONTROL_POLL) => {}
        }
        if last_renewed.elapsed() >= RENEW_EVERY {
            // Every store call here is bounded: a hung one must not outlive the lease.
            let sent = tokio::time::Instant::now();
            let renewed = tokio::time::timeout(
                STORE_CALL,
                state
                    .store
                    .try_acquire_lease(&lease, &state.holder, LEASE_TTL, Utc::now()),
            )
            .await
            .map_err(|_| "the lease renewal timed out".to_string())
            .and_then(|r| r.map_err(|e| e.to_string()));
            match renewed {
                Ok(true) => last_renewed = sent,
                Ok(false) => {
                    tracing::warn!(job = %id, "migrate: lost the lease; stopping the job");
                    set_stop(Stop::LostLease);
                    control.stop();
                    lost.cancel();
                    return;
                }
                Err(e) if last_renewed.elapsed() + RENEW_EVERY >= LEASE_TTL => {
                    tracing::warn!(job = %id, error = %e, "migrate: cannot renew the lease; stopping the job");
                    set_stop(Stop::LostLease);
                    control.stop();
                    lost.cancel();
                    return;
                }
                Err(_) => {}
            }
        }
        let Ok(Ok(Some(mut job))) =
            tokio::time::timeout(STORE_CALL, state.store.get_migrate_job(id)).await
        else {
            continue;
        };
        // Level-triggered: the runner follows what the job's row says now; once stopped, it
        // stays stopped.
        let stopped = stop.lock().map(|s| s.is_some()).unwrap_or(true);
        let wants_pause = matches!(
            (job.control.as_deref(), job.state),
            (Some("pause"), _) | (None, JobState::Paused)
        );
        if job.control.as_deref() == Some("abort") {
            set_stop(Stop::Abort);
            control.stop();
        } else if !stopped {
            if wants_pause {
                control.pause();
            } else {
                control.run();
            }
        }
        let held = held.load(std::sync::atomic::Ordering::SeqCst);
        // Paused once the runner really holds; back to running as soon as it is let go
        // (it notices within 200 ms).
        let next_state = if wants_pause && (held || job.state == JobState::Paused) {
            JobState::Paused
        } else {
            JobState::Running
        };
        let next_control = match job.control.as_deref() {
            Some("pause") if held => None,
            Some("resume") => None,
            _ => job.control.clone(),
        };
        if next_state != job.state || next_control != job.control {
            job.state = next_state;
            job.control = next_control;
            job.updated_at = Utc::now();
            // A write that lost a race is retried at the next look.
            let _ = tokio::time::timeout(STORE_CALL, state.store.update_migrate_job(&job)).await;
        }
    }
}

/// Where the runner's events go: the log, and whether the runner is holding on a pause.
struct Log<'a> {
    tx: &'a mpsc::UnboundedSender<(DateTime<Utc>, String)>,
    held: &'a std::sync::atomic::AtomicBool,
}

impl Log<'_> {
    fn say(&self, text: String) {
        let _ = self.tx.send((Utc::now(), text));
    }

    fn event(&self, e: Event) {
        match e {
            Event::Paused => self.held.store(true, std::sync::atomic::Ordering::SeqCst),
            Event::Resumed => self.held.store(false, std::sync::atomic::Ordering::SeqCst),
            _ => {}
        }
        self.say(e.to_string());
    }
}

/// What a job did when it ran to its end.
enum Outcome {
    Done {
        report: serde_json::Value,
        summary: String,
    },
    Aborted,
}

/// Connects, checks and runs the job; the runner's events go to the log.
async fn execute(
    state: &AppState,
    db: &MigrateDatabase,
    url: &str,
    job: &Job,
    control: Control,
    aborting: bool,
    log: &Log<'_>,
) -> Result<Outcome, RunError> {
    let spec = &job.spec;
    let phase = Phase::from_name(&spec.phase).ok_or_else(|| {
        RunError::Refused(format!(
            "phase '{}' is neither expand nor contract",
            spec.phase
        ))
    })?;
    let mut throttle = Vec::new();
    for p in &db.throttle {
        let url = match &p.url_env {
            None => None,
            Some(var) => Some(std::env::var(var).map_err(|_| {
                RunError::Refused(format!(
                    "a throttle probe of database '{}' reads {var}, which this server does not have",
                    job.database
                ))
            })?),
        };
        throttle.push(Probe {
            query: p.query.clone(),
            max: p.max,
            url,
        });
    }
    let defaults = Options::default();
    let options = Options {
        lock_timeout: spec
            .lock_timeout_ms
            .map(Duration::from_millis)
            .unwrap_or(defaults.lock_timeout),
        lock_retries: spec.lock_retries.unwrap_or(defaults.lock_retries),
        expand_table: db.expand_table.clone(),
        contract_table: db.contract_table.clone(),
        applied_by: format!("{} (job {})", job.requested_by, job.id),
        out_of_order: spec.out_of_order,
        force: spec.force,
        assume_done: spec.assume_done,
        rerun: spec.rerun,
        backfill_batch: spec.batch.unwrap_or(defaults.backfill_batch).max(1),
        throttle,
        control,
    };
    let mut runner = Runner::connect(url, &job.database, options).await?;
    let result = run_with(state, db, job, phase, aborting, &mut runner, log).await;
    runner.close().await;
    result
}

async fn run_with(
    state: &AppState,
    db: &MigrateDatabase,
    job: &Job,
    phase: Phase,
    aborting: bool,
    runner: &mut Runner,
    log: &Log<'_>,
) -> Result<Outcome, RunError> {
    let spec = &job.spec;
    let say = |text: String| log.say(text);
    match job.kind {
        JobKind::Rebuild => {
            let table = spec.table.clone().unwrap_or_default();
            if aborting {
                runner.abort_rebuild(&table).await?;
                say(format!("removed the shadow table and triggers of {table}"));
                return Ok(Outcome::Aborted);
            }
            let alter = spec.alter.clone().unwrap_or_default();
            runner.check_rebuild(phase, &table, &alter, spec.force)?;
            say(format!("ALTER TABLE {table} {alter}"));
            let mut progress = |e: Event| log.event(e);
            let result = runner
                .rebuild(
                    &table,
                    &alter,
                    gantry_migrate::runner::RebuildOptions {
                        drop_old: spec.drop_old,
                        repoint_foreign_keys: spec.repoint_foreign_keys,
                    },
                    &mut progress,
                )
                .await;
            match result {
                Ok(report) => Ok(Outcome::Done {
                    summary: format!(
                        "rebuilt {table} ({} rows in {} batches, {} ms); the old table is {}",
                        report.rows_copied,
                        report.batches,
                        report.duration_ms,
                        if spec.drop_old {
                            "dropped".to_string()
                        } else {
                            report.old_table.clone()
                        }
                    ),
                    report: serde_json::json!({
                        "table": table,
                        "alter": alter,
                        "rows": report.rows_copied,
                        "batches": report.batches,
                        "duration_ms": report.duration_ms,
                    }),
                }),
                Err(RunError::Stopped(why)) => {
                    // Abort removes what the rebuild made; a lost lease keeps it for a retry.
                    if job_abort_requested(state, job).await {
                        runner.abort_rebuild(&table).await?;
                        say(format!("removed the shadow table and triggers of {table}"));
                    }
                    Err(RunError::Stopped(why))
                }
                Err(e) => Err(e),
            }
        }
        JobKind::Apply => {
            if spec.files.is_empty() {
                return Err(RunError::Refused(
                    "the job carries no migration files; retry it with the files (gantry migrate retry JOB --dir DIR)".into(),
                ));
            }
            let dialect = runner.dialect();
            let database = gantry_migrate::layout::database_from_files(
                &job.database,
                dialect,
                &jobs::file_refs(&spec.files),
            )
            .map_err(|e| RunError::Refused(e.to_string()))?;
            if phase == Phase::Contract {
                let expanded_at = runner.expanded_at().await?;
                let gate = jobs::gate(
                    state.store.as_ref(),
                    &db.services,
                    &db.environment,
                    expanded_at,
                    Duration::from_secs(state.config.migrate.contract_bake_secs),
                )
                .await
                .map_err(|e| {
                    RunError::Refused(format!(
                        "cannot read the deployments for the contract gate: {e}"
                    ))
                })?;
                if gate.open {
                    say(format!("contract gate open: {}", gate.reason));
                } else if spec.force {
                    say(format!(
                        "contract gate closed ({}); going on: forced",
                        gate.reason
                    ));
                } else {
                    return Err(RunError::Refused(format!(
                        "the contract gate is closed: {}",
                        gate.reason
                    )));
                }
            }
            let mut progress = |e: Event| {
                let started = match &e {
                    Event::Started { version, .. } => Some(*version),
                    _ => None,
                };
                log.event(e);
                if let Some(m) =
                    started.and_then(|v| database.phase(phase).iter().find(|m| m.version == v))
                {
                    say(format!("{}:\n{}", m.path, m.text.trim_end()));
                }
            };
            let report = runner
                .apply(&database, phase, spec.to, &mut progress)
                .await?;
            Ok(Outcome::Done {
                summary: format!(
                    "{} {} {:?} applied: {} statements in {} ms",
                    job.database,
                    phase.name(),
                    report.applied,
                    report.statements,
                    report.duration_ms
                ),
                report: serde_json::json!({
                    "versions": report.applied,
                    "statements": report.statements,
                    "duration_ms": report.duration_ms,
                }),
            })
        }
    }
}

async fn job_abort_requested(state: &AppState, job: &Job) -> bool {
    matches!(
        state.store.get_migrate_job(job.id).await,
        Ok(Some(j)) if j.control.as_deref() == Some("abort")
    )
}
