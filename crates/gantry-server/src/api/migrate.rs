//! `/api/v1/migrate/…`: what a migration runner asks the server (whether the contract gate
//! is open for a database's services in an environment; to record a migration phase as a
//! change), and migration jobs the server runs itself (`--via-server`): submit, list,
//! show, pause/resume/abort/retry, and follow a job's log. The rules are in
//! `crate::migrate::jobs`.

use std::convert::Infallible;
use std::time::Duration;

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::sse::{Event, KeepAlive, Sse};
use chrono::{DateTime, Utc};
use futures::{Stream, StreamExt};
use gantry_core::migrate::GateDecision;
use gantry_core::migrate_job::{Job, JobAction, JobLogLine, JobState, NewJob};
use gantry_core::{Change, ChangeKind, ChangeStatus, ScopeName};
use serde::Deserialize;
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::parse_id;
use crate::auth::Caller;
use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::extract::{Json, Query};
use crate::migrate::jobs::{self, RetryOptions};
use crate::state::AppState;

/// Requests that carry migration files (a database's scripts may be larger than other
/// requests' bodies).
pub const MAX_JOB_BODY_BYTES: usize = 16 * 1024 * 1024;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(gate))
        .routes(routes!(record_migration))
        .routes(routes!(list_jobs))
        .routes(routes!(get_job))
}

/// Submitting and controlling jobs: bodies up to [`MAX_JOB_BODY_BYTES`].
pub fn jobs_router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(submit_job))
        .routes(routes!(control_job))
        .routes(routes!(retry_job))
}

/// A job's log as a stream: as long as the job runs.
pub fn stream_router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(job_log))
}

/// The services of a database in one environment, and when its newest expand migration
/// was applied.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct GateRequest {
    pub services: Vec<String>,
    pub environment: String,
    /// `null` when no expand migration was applied.
    pub expanded_at: Option<DateTime<Utc>>,
}

/// Whether the contract phase may run now, and why (or why not).
#[utoipa::path(
    post,
    path = "/api/v1/migrate/gate",
    tag = "migrate",
    request_body = GateRequest,
    responses((status = 200, body = GateDecision), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody)),
    security(("bearer" = [])),
    extensions(("x-gantry-scope" = json!("migrate"))),
)]
pub async fn gate(
    State(state): State<AppState>,
    caller: Caller,
    Json(request): Json<GateRequest>,
) -> ApiResult<axum::Json<GateDecision>> {
    gantry_core::names::validate_name("environment", &request.environment)?;
    if request.services.len() > 100 {
        return Err(ApiError::invalid("services: at most 100"));
    }
    for service in &request.services {
        gantry_core::names::validate_name("services", service)?;
    }
    jobs::require_migrate(&caller, &request.services, &request.environment)?;
    // Without a service, `migrate` for some service in the environment still has to be held.
    let in_environment = caller.0.scopes.iter().any(|s| {
        s.allows(
            ScopeName::Migrate,
            s.service.as_deref(),
            Some(&request.environment),
        )
    });
    if request.services.is_empty() && !in_environment {
        return Err(ApiError::forbidden(format!(
            "token '{}' lacks the scope migrate@{} needed here (it has {})",
            caller.name(),
            request.environment,
            gantry_core::Scope::format_list(&caller.0.scopes)
        )));
    }
    Ok(axum::Json(
        jobs::gate(
            state.store.as_ref(),
            &request.services,
            &request.environment,
            request.expanded_at,
            Duration::from_secs(state.config.migrate.contract_bake_secs),
        )
        .await?,
    ))
}

/// A migration phase (or rebuild, or repair) that ran.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MigrationRecord {
    pub service: String,
    pub environment: String,
    pub summary: String,
    pub description: Option<String>,
    /// `succeeded` (default), `failed` or `in_progress`.
    pub status: Option<ChangeStatus>,
    pub started_at: DateTime<Utc>,
    pub finished_at: Option<DateTime<Utc>>,
    /// Database, phase, versions, statement count, duration, outcome, a forced reason.
    #[schema(value_type = Object)]
    pub metadata: serde_json::Map<String, serde_json::Value>,
}

/// Record a migration as a change (kind `migration`).
#[utoipa::path(
    post,
    path = "/api/v1/migrate/changes",
    tag = "migrate",
    request_body = MigrationRecord,
    responses((status = 201, body = Change), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody)),
    security(("bearer" = [])),
    extensions(("x-gantry-scope" = json!("migrate"))),
)]
pub async fn record_migration(
    State(state): State<AppState>,
    caller: Caller,
    Json(record): Json<MigrationRecord>,
) -> ApiResult<(StatusCode, axum::Json<Change>)> {
    gantry_core::names::validate_name("service", &record.service)?;
    gantry_core::names::validate_name("environment", &record.environment)?;
    caller.require(
        ScopeName::Migrate,
        Some(&record.service),
        Some(&record.environment),
    )?;
    let new = gantry_core::NewChange {
        kind: Some(ChangeKind::Migration.as_str().to_string()),
        service: Some(record.service),
        environment: Some(record.environment),
        summary: Some(record.summary),
        description: record.description,
        status: record.status.or(Some(ChangeStatus::Succeeded)),
        started_at: Some(record.started_at),
        finished_at: record.finished_at,
        metadata: Some(serde_json::Value::Object(record.metadata)),
        ..gantry_core::NewChange::default()
    };
    let valid = new.validate(Utc::now())?;
    let change = crate::api::changes::from_valid(valid, caller.name());
    state.store.insert_change(&change).await?;
    Ok((StatusCode::CREATED, axum::Json(change)))
}

/// A job as a response: the files stay on the server (`GET …/jobs/{id}?files=true` shows them).
fn without_files(mut job: Job) -> Job {
    job.spec.files.clear();
    job
}

/// Queue a migration job for a database of the server's `[migrate.databases]`: the server
/// that holds the database's lease runs it detached; follow it with `…/log`. Needs
/// `migrate` on every service of the database, in its environment.
#[utoipa::path(
    post,
    path = "/api/v1/migrate/jobs",
    tag = "migrate",
    request_body = NewJob,
    responses(
        (status = 201, description = "Queued; `change_id` is its change, `in_progress` until it ends", body = Job),
        (status = 400, body = ErrorBody),
        (status = 403, body = ErrorBody),
        (status = 404, description = "No such database in `[migrate.databases]`", body = ErrorBody),
    ),
    security(("bearer" = [])),
    extensions(("x-gantry-scope" = json!("migrate"))),
)]
pub async fn submit_job(
    State(state): State<AppState>,
    caller: Caller,
    Json(new): Json<NewJob>,
) -> ApiResult<(StatusCode, axum::Json<Job>)> {
    let job = jobs::submit(&state, &caller, new).await?;
    Ok((StatusCode::CREATED, axum::Json(without_files(job))))
}

/// Filters of `GET /api/v1/migrate/jobs`.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct JobListParams {
    database: Option<String>,
    /// Comma-separated states, e.g. `queued,running,paused`.
    state: Option<String>,
    /// At most this many, newest first (default 50, at most 1000).
    /// (Any unsigned 32-bit number is taken; the server clamps it.)
    #[param(value_type = Option<u64>, maximum = 4294967295_u64)]
    limit: Option<u32>,
}

/// Migration jobs, newest first (their files left out). Shows the jobs whose services the
/// token may read.
#[utoipa::path(
    get,
    path = "/api/v1/migrate/jobs",
    tag = "migrate",
    params(JobListParams),
    responses((status = 200, body = Vec<Job>), (status = 400, body = ErrorBody)),
    security(("bearer" = [])),
    extensions(("x-gantry-scope" = json!("read"))),
)]
pub async fn list_jobs(
    State(state): State<AppState>,
    caller: Caller,
    Query(params): Query<JobListParams>,
) -> ApiResult<axum::Json<Vec<Job>>> {
    caller.require_somewhere(ScopeName::Read)?;
    let states = match params.state.as_deref() {
        None | Some("") => Vec::new(),
        Some(list) => list
            .split(',')
            .map(|s| s.trim().parse::<JobState>())
            .collect::<Result<Vec<_>, _>>()?,
    };
    let limit = params.limit.unwrap_or(50).clamp(1, 1000);
    let found = state
        .store
        .list_migrate_jobs(params.database.as_deref(), &states, limit)
        .await?;
    Ok(axum::Json(
        found
            .into_iter()
            .filter(|j| jobs::may_read(&caller, j))
            .map(without_files)
            .collect(),
    ))
}

/// `GET /api/v1/migrate/jobs/{id}`.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct JobParams {
    /// Include the migration files the job carries.
    files: Option<bool>,
}

/// One migration job.
#[utoipa::path(
    get,
    path = "/api/v1/migrate/jobs/{id}",
    tag = "migrate",
    params(("id" = String, Path), JobParams),
    responses((status = 200, body = Job), (status = 404, body = ErrorBody)),
    security(("bearer" = [])),
    extensions(("x-gantry-scope" = json!("read"))),
)]
pub async fn get_job(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    Query(params): Query<JobParams>,
) -> ApiResult<axum::Json<Job>> {
    let job = readable_job(&state, &caller, &id).await?;
    Ok(axum::Json(if params.files == Some(true) {
        job
    } else {
        without_files(job)
    }))
}

async fn readable_job(state: &AppState, caller: &Caller, id: &str) -> ApiResult<Job> {
    let id = parse_id("job", id)?;
    let not_found = || ApiError::not_found(format!("no migration job {id}"));
    let job = state
        .store
        .get_migrate_job(id)
        .await?
        .ok_or_else(not_found)?;
    if !jobs::may_read(caller, &job) {
        caller.require(
            ScopeName::Read,
            job.services.first().map(String::as_str),
            Some(&job.environment),
        )?;
    }
    Ok(job)
}

/// Pause, resume, abort or retry a job. A running job is asked and acts between
/// statements and batches; a job no server runs changes at once. `retry` continues a
/// failed or interrupted job where it stopped, with the files sent again if the body has
/// them (a failed statement fixed). Needs `migrate` on every service of the database.
#[utoipa::path(
    post,
    path = "/api/v1/migrate/jobs/{id}/{action}",
    tag = "migrate",
    params(("id" = String, Path), ("action" = String, Path, description = "pause, resume or abort (retry has its own operation)")),
    responses(
        (status = 200, body = Job),
        (status = 400, description = "Not possible in the job's state (the message says why)", body = ErrorBody),
        (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody),
    ),
    security(("bearer" = [])),
    extensions(("x-gantry-scope" = json!("migrate"))),
)]
pub async fn control_job(
    State(state): State<AppState>,
    caller: Caller,
    Path((id, action)): Path<(String, String)>,
    body: axum::body::Bytes,
) -> ApiResult<axum::Json<Job>> {
    control(&state, &caller, &id, &action, &body).await
}

/// Retry a failed or interrupted job, optionally with the files again (a failed statement
/// fixed) and how to treat a MariaDB statement found started. The same rules as the other
/// actions; its own operation because only it takes a body.
#[utoipa::path(
    post,
    path = "/api/v1/migrate/jobs/{id}/retry",
    tag = "migrate",
    params(("id" = String, Path)),
    request_body(content = Option<RetryOptions>, description = "May be empty"),
    responses(
        (status = 200, body = Job),
        (status = 400, description = "Not possible in the job's state (the message says why)", body = ErrorBody),
        (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody),
    ),
    security(("bearer" = [])),
    extensions(("x-gantry-scope" = json!("migrate"))),
)]
pub async fn retry_job(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    body: axum::body::Bytes,
) -> ApiResult<axum::Json<Job>> {
    control(&state, &caller, &id, "retry", &body).await
}

async fn control(
    state: &AppState,
    caller: &Caller,
    id: &str,
    action: &str,
    body: &[u8],
) -> ApiResult<axum::Json<Job>> {
    let id = parse_id("job", id)?;
    let action: JobAction = action.parse()?;
    let retry: RetryOptions = if body.iter().all(u8::is_ascii_whitespace) {
        RetryOptions::default()
    } else {
        serde_json::from_slice(body).map_err(|e| {
            ApiError::invalid(format!("the request body is not valid retry options: {e}"))
        })?
    };
    if action != JobAction::Retry && (retry.files.is_some() || retry.assume_done || retry.rerun) {
        return Err(ApiError::invalid(format!(
            "{}: files, assume_done and rerun go with retry only",
            action.as_str()
        )));
    }
    if retry.assume_done && retry.rerun {
        return Err(ApiError::invalid(
            "assume_done and rerun exclude each other",
        ));
    }
    let job = jobs::control(state, caller, id, action, retry).await?;
    Ok(axum::Json(without_files(job)))
}

/// `GET /api/v1/migrate/jobs/{id}/log`.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct LogParams {
    /// Start after this line's `seq` (as `Last-Event-ID`); default from the first line.
    after: Option<i64>,
}

const LOG_POLL: Duration = Duration::from_millis(250);

/// Follow a job's log as Server-Sent Events: `event: line`, `id: <seq>`, `data: {seq, at,
/// text}` for every line, then, once the job has ended (or is interrupted) and every line
/// was sent, `event: end` with the job as data. Any server answers, whichever runs the
/// job; reconnect with `Last-Event-ID` to resume.
#[utoipa::path(
    get,
    path = "/api/v1/migrate/jobs/{id}/log",
    tag = "migrate",
    params(("id" = String, Path), LogParams),
    responses(
        (status = 200, description = "`event: line` per log line, then `event: end` with the job", content_type = "text/event-stream", body = JobLogLine),
        (status = 404, body = ErrorBody),
    ),
    security(("bearer" = [])),
    extensions(("x-gantry-scope" = json!("read"))),
)]
pub async fn job_log(
    State(state): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    Path(id): Path<String>,
    Query(params): Query<LogParams>,
) -> ApiResult<Sse<impl Stream<Item = Result<Event, Infallible>>>> {
    let job = readable_job(&state, &caller, &id).await?;
    let last_event_id = super::last_event_id(&headers, "a log line's seq")?;
    struct Follow {
        state: AppState,
        id: ulid::Ulid,
        cursor: i64,
        ended: bool,
        /// The job was seen ended once with nothing left to send: one more look for a
        /// line written just after the state, then the end.
        final_seen: bool,
    }
    let start = Follow {
        state: state.clone(),
        id: job.id,
        cursor: last_event_id.or(params.after).unwrap_or(0),
        ended: false,
        final_seen: false,
    };
    let events = futures::stream::unfold(start, |mut f| async move {
        if f.ended {
            return None;
        }
        loop {
            // Read the job before its lines: a job seen ended has written its last line.
            let job = f.state.store.get_migrate_job(f.id).await;
            match f.state.store.migrate_log_after(f.id, f.cursor, 500).await {
                Ok(lines) if !lines.is_empty() => {
                    f.cursor = lines.last().map_or(f.cursor, |l| l.seq);
                    let events: Vec<Event> = lines
                        .iter()
                        .map(|l| {
                            Event::default()
                                .event("line")
                                .id(l.seq.to_string())
                                .data(serde_json::to_string(l).unwrap_or_default())
                        })
                        .collect();
                    return Some((events, f));
                }
                Ok(_) => {
                    if let Ok(Some(job)) = job {
                        if job.state.is_final() && !f.final_seen {
                            f.final_seen = true;
                        } else if job.state.is_final() {
                            f.ended = true;
                            let end = Event::default().event("end").data(
                                serde_json::to_string(&without_files(job)).unwrap_or_default(),
                            );
                            return Some((vec![end], f));
                        }
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, "job log stream cannot read the log; retrying")
                }
            }
            tokio::time::sleep(LOG_POLL).await;
        }
    })
    .flat_map(|events| futures::stream::iter(events.into_iter().map(Ok)))
    .take_until(state.shutdown.clone().cancelled_owned());
    // A revoked token's stream ends within the re-check interval, as every stream's does.
    let digest = caller.1.clone();
    let events = crate::auth::until_revoked(events, move || {
        let (state, digest) = (state.clone(), digest.clone());
        async move { crate::auth::token_still_valid(&state, &digest).await }
    });
    Ok(Sse::new(events).keep_alive(KeepAlive::new().interval(Duration::from_secs(15))))
}
