//! What a migration job may do, for the HTTP routes, the executor and anything else that
//! asks: which configured database a name means, who may submit and control its jobs
//! (`migrate` on every service of the database, in its environment), what the contract gate
//! says for it, and the writes that submit, control and finish a job with its change.

use std::collections::VecDeque;
use std::time::Duration;

use chrono::{DateTime, Utc};
use gantry_core::migrate::{contract_gate, GateDecision, ServiceDeploys};
use gantry_core::migrate_job::{
    control_job, Job, JobAction, JobFile, JobKind, JobLogLine, JobState, NewJob,
};
use gantry_core::{Change, ChangeKind, ChangePatch, ChangeQuery, ChangeStatus, Grant, ScopeName};
use gantry_store::{Store, StoreError};
use ulid::Ulid;

use crate::auth::Caller;
use crate::config::{MigrateConfig, MigrateDatabase};
use crate::error::ApiError;
use crate::state::AppState;

/// The lease a database's jobs run under: one server at a time.
pub fn lease_name(database: &str) -> String {
    format!("migrate:{database}")
}

/// The configured database `name`, or an error naming the ones there are.
pub fn database<'a>(
    config: &'a MigrateConfig,
    name: &str,
) -> Result<&'a MigrateDatabase, ApiError> {
    config.databases.get(name).ok_or_else(|| {
        let known: Vec<&str> = config.databases.keys().map(String::as_str).collect();
        ApiError::not_found(format!(
            "no database '{name}' in the server's [migrate.databases] (configured: {})",
            if known.is_empty() {
                "none".to_string()
            } else {
                known.join(", ")
            }
        ))
    })
}

/// Submitting or controlling a job needs `migrate` on every service of the database in its
/// environment: the migration changes what each of them runs against.
pub fn require_migrate(
    caller: &Caller,
    services: &[String],
    environment: &str,
) -> Result<(), ApiError> {
    require_migrate_of(&caller.0, services, environment)
}

/// [`require_migrate`] for any transport's grant (the API's caller, the dashboard's viewer).
pub fn require_migrate_of(
    grant: &Grant,
    services: &[String],
    environment: &str,
) -> Result<(), ApiError> {
    for service in services {
        crate::auth::require(grant, ScopeName::Migrate, Some(service), Some(environment))?;
    }
    Ok(())
}

/// Reading a job needs `read` on one of its services in its environment.
pub fn may_read(caller: &Caller, job: &Job) -> bool {
    readable_by(&caller.0, job)
}

/// [`may_read`] for any transport's grant.
pub fn readable_by(grant: &Grant, job: &Job) -> bool {
    job.services
        .iter()
        .any(|s| grant.allows(ScopeName::Read, Some(s), Some(&job.environment)))
}

/// What the gate looks at for each service: the build running in the environment and
/// when it was first deployed there, and whether a rollout is active.
pub async fn service_deploys(
    store: &dyn Store,
    service: &str,
    environment: &str,
) -> Result<ServiceDeploys, StoreError> {
    let newest = store.deployments(service, environment, 1).await?;
    let current = match newest.first() {
        None => None,
        Some(d) => {
            let first = store
                .build_deployments(d.build_id)
                .await?
                .into_iter()
                .filter(|x| x.environment == environment)
                .map(|x| x.at)
                .min()
                .unwrap_or(d.at);
            Some((d.build_id.to_string(), first))
        }
    };
    Ok(ServiceDeploys {
        service: service.to_string(),
        current,
        rollout_active: store.active_rollout(service, environment).await?.is_some(),
    })
}

/// The contract gate for `services` in `environment`, given when the newest expand
/// migration was applied.
pub async fn gate(
    store: &dyn Store,
    services: &[String],
    environment: &str,
    expanded_at: Option<DateTime<Utc>>,
    bake: Duration,
) -> Result<GateDecision, StoreError> {
    let mut deploys = Vec::with_capacity(services.len());
    for service in services {
        deploys.push(service_deploys(store, service, environment).await?);
    }
    Ok(contract_gate(&deploys, expanded_at, bake, Utc::now()))
}

/// Files as the runner wants them: (path, text).
pub fn file_refs(files: &[JobFile]) -> Vec<(&str, &str)> {
    files
        .iter()
        .map(|f| (f.path.as_str(), f.text.as_str()))
        .collect()
}

/// The checks a job's request must pass before it is queued. The files are split here
/// only when this server knows the database's dialect (it has the URL); the server that
/// runs the job checks them again either way.
fn check_new(
    new: &NewJob,
    db: &MigrateDatabase,
) -> Result<gantry_migrate::layout::Phase, ApiError> {
    let spec = &new.spec;
    let phase = gantry_migrate::layout::Phase::from_name(&spec.phase).ok_or_else(|| {
        ApiError::invalid(format!(
            "spec.phase '{}': expected expand or contract",
            spec.phase
        ))
    })?;
    if spec.files.len() > gantry_core::migrate_job::MAX_JOB_FILES {
        return Err(ApiError::invalid(format!(
            "spec.files: {} files, at most {}",
            spec.files.len(),
            gantry_core::migrate_job::MAX_JOB_FILES
        )));
    }
    if spec.force && spec.reason.as_deref().is_none_or(|r| r.trim().is_empty()) {
        return Err(ApiError::invalid(
            "spec.force needs spec.reason: why the checks are overridden",
        ));
    }
    if spec.assume_done && spec.rerun {
        return Err(ApiError::invalid(
            "spec.assume_done and spec.rerun exclude each other",
        ));
    }
    match new.kind {
        JobKind::Apply => {
            if spec.files.is_empty() {
                return Err(ApiError::invalid(
                    "spec.files: an apply job carries the database's migration files",
                ));
            }
        }
        JobKind::Rebuild => {
            let table = spec.table.as_deref().unwrap_or("");
            if table.is_empty() || spec.alter.as_deref().is_none_or(|a| a.trim().is_empty()) {
                return Err(ApiError::invalid(
                    "a rebuild job needs spec.table and spec.alter",
                ));
            }
        }
    }
    if let Ok(url) = std::env::var(&db.url_env) {
        if let Some(dialect) = dialect_of(&url) {
            gantry_migrate::layout::database_from_files(
                &new.database,
                dialect,
                &file_refs(&spec.files),
            )
            .map_err(|e| ApiError::invalid(e.to_string()))?;
        }
    }
    Ok(phase)
}

/// The SQL dialect of a database URL.
pub fn dialect_of(url: &str) -> Option<gantry_migrate::split::Dialect> {
    gantry_migrate::split::Dialect::from_name(url.split(':').next().unwrap_or(""))
}

/// Queues a job for a configured database and records its change (`in_progress`, for the
/// database's first service, naming every service in its metadata).
pub async fn submit(state: &AppState, caller: &Caller, new: NewJob) -> Result<Job, ApiError> {
    gantry_core::names::validate_name("database", &new.database)?;
    let db = database(&state.config.migrate, &new.database)?;
    require_migrate(caller, &db.services, &db.environment)?;
    let phase = check_new(&new, db)?;
    let now = Utc::now();
    let id = Ulid::new();
    let what = match new.kind {
        JobKind::Apply => format!("{} {}", new.database, phase.name()),
        JobKind::Rebuild => format!(
            "{}: rebuild {} ({})",
            new.database,
            new.spec.table.as_deref().unwrap_or(""),
            new.spec.alter.as_deref().unwrap_or("")
        ),
    };
    let mut metadata = serde_json::Map::new();
    metadata.insert("database".into(), new.database.clone().into());
    metadata.insert("phase".into(), phase.name().into());
    metadata.insert("job".into(), id.to_string().into());
    metadata.insert("services".into(), serde_json::json!(db.services));
    if new.kind == JobKind::Rebuild {
        metadata.insert("rebuild".into(), new.spec.table.clone().into());
    }
    if let Some(reason) = new.spec.reason.as_deref().filter(|_| new.spec.force) {
        metadata.insert("forced".into(), reason.into());
    }
    let change = gantry_core::NewChange {
        kind: Some(ChangeKind::Migration.as_str().to_string()),
        service: db.services.first().cloned(),
        environment: Some(db.environment.clone()),
        summary: Some(what.chars().take(400).collect()),
        status: Some(ChangeStatus::InProgress),
        started_at: Some(now),
        metadata: Some(serde_json::Value::Object(metadata)),
        ..gantry_core::NewChange::default()
    };
    let valid = change.validate(now)?;
    let change: Change = crate::api::changes::from_valid(valid, caller.name());
    state.store.insert_change(&change).await?;
    let job = Job {
        id,
        database: new.database.clone(),
        kind: new.kind,
        environment: db.environment.clone(),
        services: db.services.clone(),
        change_id: change.id,
        state: JobState::Queued,
        control: None,
        requested_by: caller.name().to_string(),
        created_at: now,
        started_at: None,
        finished_at: None,
        updated_at: now,
        holder: None,
        error: None,
        report: None,
        version: 1,
        spec: new.spec,
    };
    state.store.insert_migrate_job(&job).await?;
    let mut lines = vec![(
        now,
        format!(
            "queued by {} ({} files)",
            caller.name(),
            job.spec.files.len()
        ),
    )];
    if std::env::var(&db.url_env).is_err() {
        lines.push((
            now,
            format!(
                "this server does not have {} set, so a server that has it will run the job",
                db.url_env
            ),
        ));
    }
    state.store.append_migrate_log(id, &lines).await?;
    Ok(job)
}

/// What `retry` may carry: the files again (a failed statement fixed), and how to treat a
/// MariaDB statement found started.
#[derive(Debug, Default, Clone, serde::Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields, default)]
pub struct RetryOptions {
    pub files: Option<Vec<JobFile>>,
    pub assume_done: bool,
    pub rerun: bool,
}

/// Pauses, resumes, aborts or retries a job for a person, by the rule in
/// [`gantry_core::migrate_job::control_job`]; a job no server runs changes at once, a
/// running one is asked through `control`.
pub async fn control(
    state: &AppState,
    caller: &Caller,
    id: Ulid,
    action: JobAction,
    retry: RetryOptions,
) -> Result<Job, ApiError> {
    control_by(state, &caller.0, None, id, action, retry).await
}

/// [`control`] for any transport's grant; `via` says how the person came (`dashboard`;
/// `None`: the API), in the job's log.
pub async fn control_by(
    state: &AppState,
    grant: &Grant,
    via: Option<&str>,
    id: Ulid,
    action: JobAction,
    retry: RetryOptions,
) -> Result<Job, ApiError> {
    for _ in 0..10 {
        let mut job = state
            .store
            .get_migrate_job(id)
            .await?
            .ok_or_else(|| ApiError::not_found(format!("no migration job {id}")))?;
        require_migrate_of(grant, &job.services, &job.environment)?;
        let (next, control) = control_job(&job, action)?;
        let now = Utc::now();
        job.state = next;
        job.control = control;
        job.updated_at = now;
        if next == JobState::Aborted {
            job.finished_at = Some(now);
            job.holder = None;
        }
        if action == JobAction::Retry {
            job.error = None;
            job.finished_at = None;
            job.spec.assume_done = retry.assume_done;
            job.spec.rerun = retry.rerun;
            if let Some(files) = &retry.files {
                job.spec.files = files.clone();
            }
        }
        match state.store.update_migrate_job(&job).await {
            Ok(job) => {
                let mut said = format!("{} requested by {}", action.as_str(), grant.token_name);
                if let Some(via) = via {
                    said.push_str(&format!(" (via {via})"));
                }
                state.store.append_migrate_log(id, &[(now, said)]).await?;
                if job.state == JobState::Aborted {
                    finish_change(
                        state.store.as_ref(),
                        &job,
                        ChangeStatus::Cancelled,
                        "aborted before it ran to the end".into(),
                    )
                    .await;
                }
                return Ok(job);
            }
            Err(StoreError::Stale(_)) => continue,
            Err(e) => return Err(e.into()),
        }
    }
    Err(ApiError::new(
        axum::http::StatusCode::CONFLICT,
        "conflict",
        format!(
            "job {id} kept changing while {} was tried; try again",
            action.as_str()
        ),
    ))
}

/// The last `n` lines of a job's log, oldest first, and whether earlier lines were left
/// out.
pub async fn log_tail(
    state: &AppState,
    id: Ulid,
    n: usize,
) -> Result<(Vec<JobLogLine>, bool), StoreError> {
    const PAGE: u32 = 1000;
    let mut tail: VecDeque<JobLogLine> = VecDeque::with_capacity(n + 1);
    let mut cut = false;
    let mut after = 0;
    loop {
        let lines = state.store.migrate_log_after(id, after, PAGE).await?;
        let Some(last) = lines.last() else { break };
        after = last.seq;
        let full = lines.len() == PAGE as usize;
        for line in lines {
            tail.push_back(line);
            if tail.len() > n {
                tail.pop_front();
                cut = true;
            }
        }
        if !full {
            break;
        }
    }
    Ok((tail.into(), cut))
}

/// The contract gate of the configured database `name` as it stands now, for a page to
/// show: the newest expand migration of the database recorded in the change log as
/// succeeded in its environment (a job's or a runner's) stands for the newest applied. A
/// contract job still reads the database's own version table when it runs. Returns the
/// decision and that expand's time.
pub async fn gate_now(
    state: &AppState,
    name: &str,
    db: &MigrateDatabase,
) -> Result<(GateDecision, Option<DateTime<Utc>>), StoreError> {
    let query = ChangeQuery {
        environment: Some(db.environment.clone()),
        kind: Some(ChangeKind::Migration),
        status: Some(ChangeStatus::Succeeded),
        limit: 500,
        ..ChangeQuery::default()
    };
    let said = |c: &Change, key: &str| {
        c.metadata
            .get(key)
            .and_then(|v| v.as_str())
            .map(str::to_string)
    };
    let expanded_at = state
        .store
        .list_changes(&query)
        .await?
        .iter()
        .filter(|c| {
            said(c, "database").as_deref() == Some(name)
                && said(c, "phase").as_deref() == Some("expand")
        })
        .map(|c| c.finished_at.unwrap_or(c.started_at))
        .max();
    let decision = gate(
        state.store.as_ref(),
        &db.services,
        &db.environment,
        expanded_at,
        Duration::from_secs(state.config.migrate.contract_bake_secs),
    )
    .await?;
    Ok((decision, expanded_at))
}

/// Ends a job's change with `status`, its outcome in the description.
pub async fn finish_change(store: &dyn Store, job: &Job, status: ChangeStatus, outcome: String) {
    let patch = ChangePatch {
        status: Some(status),
        finished_at: Some(Utc::now()),
        description: Some(
            format!("migration job {}: {outcome}", job.id)
                .chars()
                .take(4000)
                .collect(),
        ),
    };
    if let Err(e) = store
        .update_change(job.change_id, &patch, "gantry", Utc::now())
        .await
    {
        tracing::warn!(job = %job.id, error = %e, "migrate: cannot finish the job's change");
    }
}
