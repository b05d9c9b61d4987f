//! `/api/v1/monitors…`: apply a monitor file, list monitors with their states, show one
//! with its transitions, rotate a heartbeat's key; and `/ping/{key}…`, where cron jobs and
//! workers report (the key is the only credential; an unknown key and a malformed path get
//! the same 404). The rules are in `crate::monitors` and `gantry-monitors`.

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use chrono::{DateTime, Utc};
use gantry_core::ScopeName;
use gantry_monitors::{MonitorState, PingKind};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::auth::Caller;
use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::extract::Query;
use crate::monitors::{self, evaluate::HOST_PREFIX, Applied};
use crate::state::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(apply_file))
        .routes(routes!(list_monitors))
        .routes(routes!(get_monitor))
        .routes(routes!(rotate_key))
}

/// Pings carry a run's log: their own body limit.
pub fn ping_router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(ping))
        .routes(routes!(ping_with))
        .routes(routes!(ping_other))
}

/// `PUT /api/v1/monitors/files/{source}`.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ApplyParams {
    /// Only check and show the diff.
    dry_run: Option<bool>,
    /// The file's name, for error messages.
    file: Option<String>,
}

/// Apply a monitor file (TOML, as the body) as `source`, replacing what that source held. A
/// `config` change records the diff; new heartbeats' ping keys are in the answer, this once.
/// Needs `admin`.
#[utoipa::path(
    put,
    path = "/api/v1/monitors/files/{source}",
    tag = "monitors",
    params(("source" = String, Path), ApplyParams),
    request_body(
        content = Option<String>,
        content_type = "application/toml",
        description = "The monitor file (TOML; its schema, MonitorFile, states its tables and keys); an empty or absent body is an empty file, which removes every monitor of the source"
    ),
    responses(
        (status = 200, body = Applied),
        (status = 400, description = "The file is wrong (file, line, monitor, key)", body = ErrorBody),
        (status = 409, description = "A monitor's name is already used by another source's file", body = ErrorBody),
    ),
    security(("bearer" = [])),
    extensions(("x-gantry-scope" = json!("admin"))),
)]
pub async fn apply_file(
    State(state): State<AppState>,
    caller: Caller,
    Path(source): Path<String>,
    Query(p): Query<ApplyParams>,
    body: String,
) -> ApiResult<axum::Json<Applied>> {
    caller.require(ScopeName::Admin, None, None)?;
    let file = p.file.unwrap_or_else(|| format!("{source}.toml"));
    let applied = monitors::apply(
        &state,
        caller.name(),
        &source,
        &file,
        &body,
        p.dry_run.unwrap_or(false),
    )
    .await?;
    Ok(axum::Json(applied))
}

/// One series of a monitor.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct SeriesView {
    pub series: String,
    /// The hard state (what alerts follow).
    pub state: String,
    /// The latest evaluation, maybe soft.
    pub latest: String,
    pub value: Option<f64>,
    pub since: Option<DateTime<Utc>>,
    pub soft: bool,
    pub flapping: bool,
}

/// A monitor and its states.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct MonitorView {
    pub name: String,
    /// `threshold`, `heartbeat`, `http` or `host`.
    pub kind: String,
    pub service: Option<String>,
    pub environment: Option<String>,
    /// The worst hard state of its series (`OK` before its first evaluation).
    pub state: String,
    pub series: Vec<SeriesView>,
    /// Newest first (only on `GET /api/v1/monitors/{name}`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub transitions: Vec<TransitionView>,
}

/// A state change of one series.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct TransitionView {
    pub series: String,
    pub from: String,
    pub to: String,
    pub hard: bool,
    pub value: Option<f64>,
    pub at: DateTime<Utc>,
}

fn view(
    name: &str,
    kind: &str,
    service: Option<&str>,
    env: Option<&str>,
    ms: Option<&MonitorState>,
) -> MonitorView {
    let series = ms
        .map(|ms| {
            ms.series()
                .map(|(series, s)| SeriesView {
                    series: series.to_string(),
                    state: s.hard().as_str().to_string(),
                    latest: s.latest().as_str().to_string(),
                    value: s.latest_value(),
                    since: s.hard_since(),
                    soft: s.is_soft(),
                    flapping: s.is_flapping(),
                })
                .collect()
        })
        .unwrap_or_default();
    MonitorView {
        name: name.to_string(),
        kind: kind.to_string(),
        service: service.map(str::to_string),
        environment: env.map(str::to_string),
        state: ms
            .map_or(gantry_monitors::State::Ok, MonitorState::worst)
            .as_str()
            .to_string(),
        series,
        transitions: Vec::new(),
    }
}

/// Every monitor `grant` may read with its states (host liveness too, for a grant that
/// reads everything). The API and the dashboard list monitors through here.
pub async fn views(state: &AppState, grant: &gantry_core::Grant) -> ApiResult<Vec<MonitorView>> {
    let states = monitors::stored_states(state.store.as_ref()).await?;
    let mut out = Vec::new();
    for m in monitors::all(state.store.as_ref()).await? {
        if !grant.allows(ScopeName::Read, Some(&m.service), Some(&m.environment)) {
            continue;
        }
        let kind = m.check.kind().as_str();
        out.push(view(
            &m.name,
            kind,
            Some(&m.service),
            Some(&m.environment),
            states.get(&m.name),
        ));
    }
    if grant.allows(ScopeName::Read, None, None) {
        let mut hosts: Vec<_> = states
            .iter()
            .filter(|(n, _)| n.starts_with(HOST_PREFIX))
            .collect();
        hosts.sort_by(|a, b| a.0.cmp(b.0));
        for (name, ms) in hosts {
            out.push(view(name, "host", None, None, Some(ms)));
        }
    }
    Ok(out)
}

/// Monitors with their states (host liveness too, for tokens that read everything).
#[utoipa::path(
    get,
    path = "/api/v1/monitors",
    tag = "monitors",
    responses((status = 200, body = Vec<MonitorView>)),
    security(("bearer" = [])),
    extensions(("x-gantry-scope" = json!("read"))),
)]
pub async fn list_monitors(
    State(state): State<AppState>,
    caller: Caller,
) -> ApiResult<axum::Json<Vec<MonitorView>>> {
    caller.require_somewhere(ScopeName::Read)?;
    Ok(axum::Json(views(&state, &caller.0).await?))
}

/// One monitor with its series and recent transitions.
#[utoipa::path(
    get,
    path = "/api/v1/monitors/{name}",
    tag = "monitors",
    params(("name" = String, Path)),
    responses((status = 200, body = MonitorView), (status = 404, body = ErrorBody)),
    security(("bearer" = [])),
    extensions(("x-gantry-scope" = json!("read"))),
)]
pub async fn get_monitor(
    State(state): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
) -> ApiResult<axum::Json<MonitorView>> {
    caller.require_somewhere(ScopeName::Read)?;
    let mut found = views(&state, &caller.0)
        .await?
        .into_iter()
        .find(|v| v.name == name)
        .ok_or_else(|| {
            ApiError::not_found(format!(
                "no monitor named '{name}' that this token may read"
            ))
        })?;
    found.transitions = state
        .store
        .monitor_transitions(Some(&name), 100)
        .await?
        .into_iter()
        .map(|t| TransitionView {
            series: t.series,
            from: t.from,
            to: t.to,
            hard: t.hard,
            value: t.value,
            at: t.at,
        })
        .collect();
    Ok(axum::Json(found))
}

/// A new key.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct NewKey {
    pub monitor: String,
    /// Shown this once; only its digest is stored.
    pub key: String,
}

/// Give a heartbeat a new ping key (the old one stops working at once). Needs `admin`.
#[utoipa::path(
    post,
    path = "/api/v1/monitors/{name}/rotate-key",
    tag = "monitors",
    params(("name" = String, Path)),
    responses((status = 200, body = NewKey), (status = 404, body = ErrorBody)),
    security(("bearer" = [])),
    extensions(("x-gantry-scope" = json!("admin"))),
)]
pub async fn rotate_key(
    State(state): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
) -> ApiResult<axum::Json<NewKey>> {
    caller.require(ScopeName::Admin, None, None)?;
    let key = monitors::rotate_key(&state, &name).await?;
    Ok(axum::Json(NewKey { monitor: name, key }))
}

/// The same answer for an unknown key and a malformed path.
fn unknown() -> ApiError {
    ApiError::not_found("no such ping URL")
}

async fn record(
    state: &AppState,
    key: &str,
    kind: PingKind,
    body: &Bytes,
) -> ApiResult<&'static str> {
    if !gantry_monitors::is_ping_key(key) {
        return Err(unknown());
    }
    let text = gantry_monitors::ping_log(body).map_err(|len| {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            format!(
                "a ping's body is at most {} bytes (this one: {len}); send the end of the log",
                gantry_monitors::MAX_PING_BODY,
            ),
        )
    })?;
    let (kind, code) = kind.to_stored();
    match monitors::ping(state.store.as_ref(), key, kind, code, &text).await? {
        Some(_) => Ok("OK\n"),
        None => Err(unknown()),
    }
}

/// A heartbeat: the job finished well. The body (up to 10 KiB) is kept as the run's log.
/// Needs only the key.
#[utoipa::path(
    method(get, post),
    path = "/ping/{key}",
    tag = "monitors",
    params(("key" = String, Path)),
    responses((status = 200, description = "Recorded"), (status = 404, body = ErrorBody), (status = 413, body = ErrorBody)),
    extensions(("x-gantry-scope" = json!("ping-key"))),
)]
pub async fn ping(
    State(state): State<AppState>,
    Path(key): Path<String>,
    body: Bytes,
) -> ApiResult<&'static str> {
    record(&state, &key, PingKind::Success, &body).await
}

/// `start` (a run began: timed against `max_runtime`), `fail`, or an exit code 0–255 (0 is
/// success). Needs only the key.
#[utoipa::path(
    method(get, post),
    path = "/ping/{key}/{what}",
    tag = "monitors",
    params(("key" = String, Path), ("what" = String, Path, description = "start, fail, or an exit code 0-255")),
    responses((status = 200, description = "Recorded"), (status = 404, body = ErrorBody), (status = 413, body = ErrorBody)),
    extensions(("x-gantry-scope" = json!("ping-key"))),
)]
pub async fn ping_with(
    State(state): State<AppState>,
    Path((key, what)): Path<(String, String)>,
    body: Bytes,
) -> ApiResult<&'static str> {
    let kind = PingKind::from_path_segment(&what).ok_or_else(unknown)?;
    record(&state, &key, kind, &body).await
}

/// Any deeper path under `/ping/`: the same 404 as an unknown key, whatever the method.
#[utoipa::path(
    method(get, post, put, delete, patch),
    path = "/ping/{key}/{what}/{rest}",
    tag = "monitors",
    params(("key" = String, Path), ("what" = String, Path), ("rest" = String, Path)),
    responses((status = 404, body = ErrorBody)),
    extensions(("x-gantry-scope" = json!("ping-key"))),
)]
pub async fn ping_other() -> ApiError {
    unknown()
}
