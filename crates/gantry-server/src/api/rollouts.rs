//! `/api/v1/rollouts`: deploys, rollbacks and promotes as a resource, and
//! `/api/v1/services/{name}/deploy-config`: the service's deploy configuration.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use chrono::Utc;
use gantry_core::deploy::DeployConfig;
use gantry_core::ship::Rollout;
use gantry_core::{Change, ChangeKind, ChangeStatus, ScopeName};
use serde::Deserialize;
use ulid::Ulid;
use utoipa::IntoParams;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::auth::Caller;
use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::extract::{Json, Query};
use crate::ship::rollouts::{Actor, RolloutAction};
use crate::state::AppState;
use gantry_core::ship::{DeployConfigView, NewRollout, RolloutView};

/// The rollout stream: it lives as long as the client or the rollout.
pub fn stream_router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(stream_rollout))
}

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(create_rollout, list_rollouts))
        .routes(routes!(get_rollout))
        .routes(routes!(control_rollout))
        .routes(routes!(get_deploy_config, apply_deploy_config))
}

/// Start a deploy, rollback or promote. One per service and environment at a time.
#[utoipa::path(
    post,
    path = "/api/v1/rollouts",
    tag = "rollouts",
    request_body = NewRollout,
    responses(
        (status = 201, body = Rollout),
        (status = 400, body = ErrorBody),
        (status = 404, body = ErrorBody),
        (status = 409, description = "Another rollout holds the service and environment, or promote/rollback has nothing to use", body = ErrorBody),
    ),
    security(("bearer" = [])),
    extensions(("x-gantry-scope" = json!("deploy"))),
)]
pub async fn create_rollout(
    State(state): State<AppState>,
    caller: Caller,
    Json(new): Json<NewRollout>,
) -> ApiResult<(StatusCode, axum::Json<Rollout>)> {
    gantry_core::names::validate_name("service", &new.service)?;
    gantry_core::names::validate_name("environment", &new.environment)?;
    caller.require(
        ScopeName::Deploy,
        Some(&new.service),
        Some(&new.environment),
    )?;
    let rollout = crate::ship::rollouts::start(&state, &Actor::token(caller.name()), new).await?;
    Ok((StatusCode::CREATED, axum::Json(rollout)))
}

#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ListParams {
    pub service: Option<String>,
    pub environment: Option<String>,
    /// Only rollouts in progress.
    pub active: Option<bool>,
    /// (Any unsigned 32-bit number is taken; the server clamps it.)
    #[param(value_type = Option<u64>, maximum = 4294967295_u64)]
    pub limit: Option<u32>,
}

/// List rollouts, newest first.
#[utoipa::path(
    get,
    path = "/api/v1/rollouts",
    tag = "rollouts",
    params(ListParams),
    responses((status = 200, body = Vec<Rollout>)),
    security(("bearer" = [])),
    extensions(("x-gantry-scope" = json!("read"))),
)]
pub async fn list_rollouts(
    State(state): State<AppState>,
    caller: Caller,
    Query(p): Query<ListParams>,
) -> ApiResult<axum::Json<Vec<Rollout>>> {
    caller.require_somewhere(ScopeName::Read)?;
    let mut list = state
        .store
        .list_rollouts(
            p.service.as_deref(),
            p.environment.as_deref(),
            p.active.unwrap_or(false),
            p.limit.unwrap_or(50).min(1000),
        )
        .await?;
    list.retain(|r| {
        caller
            .0
            .allows(ScopeName::Read, Some(&r.service), Some(&r.environment))
    });
    Ok(axum::Json(list))
}

async fn load(state: &AppState, caller: &Caller, id: &str) -> ApiResult<Rollout> {
    let id: Ulid = id
        .parse()
        .map_err(|_| ApiError::invalid(format!("'{id}' is not a rollout id")))?;
    let r = state
        .store
        .get_rollout(id)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("no rollout {id}")))?;
    caller.require(ScopeName::Read, Some(&r.service), Some(&r.environment))?;
    Ok(r)
}

/// Show a rollout with every host's task.
#[utoipa::path(
    get,
    path = "/api/v1/rollouts/{id}",
    tag = "rollouts",
    params(("id" = String, Path)),
    responses((status = 200, body = RolloutView), (status = 404, body = ErrorBody)),
    security(("bearer" = [])),
    extensions(("x-gantry-scope" = json!("read"))),
)]
pub async fn get_rollout(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<axum::Json<RolloutView>> {
    let rollout = load(&state, &caller, &id).await?;
    let tasks = state.store.rollout_tasks(rollout.id).await?;
    Ok(axum::Json(RolloutView { rollout, tasks }))
}

/// Pause, resume or abort a rollout. The server driving it applies the request on its
/// next tick; abort rolls back what the rollout reached unless it was started without
/// automatic rollback.
#[utoipa::path(
    post,
    path = "/api/v1/rollouts/{id}/{action}",
    tag = "rollouts",
    params(("id" = String, Path), ("action" = String, Path, description = "pause, resume or abort")),
    responses((status = 202, body = Rollout), (status = 404, body = ErrorBody), (status = 409, description = "Finished", body = ErrorBody)),
    security(("bearer" = [])),
    extensions(("x-gantry-scope" = json!("deploy"))),
)]
pub async fn control_rollout(
    State(state): State<AppState>,
    caller: Caller,
    Path((id, action)): Path<(String, String)>,
) -> ApiResult<(StatusCode, axum::Json<Rollout>)> {
    let rollout = load(&state, &caller, &id).await?;
    caller.require(
        ScopeName::Deploy,
        Some(&rollout.service),
        Some(&rollout.environment),
    )?;
    let action: RolloutAction = action.parse()?;
    crate::ship::rollouts::control(&state, &Actor::token(caller.name()), &rollout, action).await?;
    let rollout = load(&state, &caller, &id).await?;
    Ok((StatusCode::ACCEPTED, axum::Json(rollout)))
}

/// Show a service's deploy configuration.
#[utoipa::path(
    get,
    path = "/api/v1/services/{name}/deploy-config",
    tag = "services",
    params(("name" = String, Path)),
    responses((status = 200, body = DeployConfigView), (status = 404, body = ErrorBody)),
    security(("bearer" = [])),
    extensions(("x-gantry-scope" = json!("read"))),
)]
pub async fn get_deploy_config(
    State(state): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
) -> ApiResult<axum::Json<DeployConfigView>> {
    caller.require(ScopeName::Read, Some(&name), None)?;
    let record = state.store.get_deploy_config(&name).await?.ok_or_else(|| {
        ApiError::not_found(format!(
            "service '{name}' has no deploy config; `gantry service apply FILE`"
        ))
    })?;
    let config = DeployConfig::parse_toml(&record.config)?;
    Ok(axum::Json(DeployConfigView {
        service: record.service,
        source: record.config,
        config,
        updated_by: record.updated_by,
        updated_at: record.updated_at,
        change_id: None,
    }))
}

/// Apply a service's deploy configuration (the TOML file from the app's repository, as the
/// body). Needs `admin`: its hooks run on every host. A change of kind `config` records the diff.
#[utoipa::path(
    put,
    path = "/api/v1/services/{name}/deploy-config",
    tag = "services",
    params(("name" = String, Path)),
    request_body(
        content = String,
        content_type = "application/toml",
        description = "The service file (TOML; its schema, ServiceFile, states its tables and keys): the deploy configuration, and optionally a [detect] table and [[logs]] tables, which the server keeps apart"
    ),
    responses((status = 200, body = DeployConfigView), (status = 400, body = ErrorBody)),
    security(("bearer" = [])),
    extensions(("x-gantry-scope" = json!("admin"))),
)]
pub async fn apply_deploy_config(
    State(state): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
    body: String,
) -> ApiResult<axum::Json<DeployConfigView>> {
    caller.require(ScopeName::Admin, None, None)?;
    // The [detect] table and the [[logs]] entries are stored apart: agents never see the
    // first, and get the second beside (never inside) the deploy config.
    let parts = gantry_core::detect::split_service_file(&body)?;
    let (detect_text, logs_text) = (parts.detect, parts.logs);
    let file = format!("{name}.toml");
    if let Some(text) = &detect_text {
        gantry_core::detect::DetectConfig::parse(text, &file)?;
    }
    if let Some(text) = &logs_text {
        gantry_monitors::parse_logs(text, &file, &crate::monitors::limits(&state))
            .map_err(|e| ApiError::invalid(e.to_string()))?;
    }
    let body = parts.deploy;
    let config = DeployConfig::parse_toml(&body)?;
    if config.name != name {
        return Err(ApiError::invalid(format!(
            "the file configures service '{}', not '{name}'",
            config.name
        )));
    }
    let now = Utc::now();
    if state.store.get_service(&name).await?.is_none() {
        state
            .store
            .create_service(
                &gantry_core::NewService {
                    name: name.clone(),
                    environments: Vec::new(),
                },
                now,
            )
            .await?;
    }
    let old = state
        .store
        .put_deploy_config(&name, &body, caller.name(), now)
        .await?;
    let old_detect = state
        .store
        .put_detect_config(&name, detect_text.as_deref(), caller.name(), now)
        .await?;
    let detect_changed =
        old_detect.as_deref().map(str::trim) != detect_text.as_deref().map(str::trim);
    let old_logs = state
        .store
        .put_log_watches(&name, logs_text.as_deref(), caller.name(), now)
        .await?;
    let logs_changed = old_logs.as_deref().map(str::trim) != logs_text.as_deref().map(str::trim);
    let old_config = old
        .as_deref()
        .and_then(|t| DeployConfig::parse_toml(t).ok());
    let diff = match &old_config {
        Some(o) => DeployConfig::diff(o, &config),
        None => gantry_core::deploy::diff_lines("", &config.to_canonical_toml()),
    };
    let mut diff = diff;
    if detect_changed {
        diff.push_str(&section_diff(
            "[detect]",
            old_detect.as_deref(),
            detect_text.as_deref(),
        ));
    }
    if logs_changed {
        diff.push_str(&section_diff(
            "[[logs]]",
            old_logs.as_deref(),
            logs_text.as_deref(),
        ));
    }
    let mut change_id = None;
    if old_config.as_ref() != Some(&config) || detect_changed || logs_changed {
        let change = Change {
            id: Ulid::new(),
            kind: ChangeKind::Config,
            service: Some(name.clone()),
            environment: None,
            actor: caller.name().to_string(),
            summary: if old.is_some() {
                format!("deploy config of {name} changed")
            } else {
                format!("deploy config of {name} applied")
            },
            description: Some(diff),
            status: ChangeStatus::Succeeded,
            started_at: now,
            finished_at: Some(now),
            size: None,
            commit_range: None,
            links: Vec::new(),
            metadata: serde_json::Map::new(),
            history: None,
        };
        state.store.insert_change(&change).await?;
        change_id = Some(change.id);
    }
    Ok(axum::Json(DeployConfigView {
        service: name,
        source: body,
        config,
        updated_by: caller.name().to_string(),
        updated_at: now,
        change_id,
    }))
}

/// The lines a section of the service file lost (`- `) and gained (`+ `), under a heading.
fn section_diff(heading: &str, old: Option<&str>, new: Option<&str>) -> String {
    let lines = |t: Option<&str>| -> Vec<String> {
        t.unwrap_or("")
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(str::to_string)
            .collect()
    };
    let (old, new) = (lines(old), lines(new));
    let mut out = format!("\n{heading}:\n");
    for l in old.iter().filter(|l| !new.contains(l)) {
        out.push_str(&format!("- {l}\n"));
    }
    for l in new.iter().filter(|l| !old.contains(l)) {
        out.push_str(&format!("+ {l}\n"));
    }
    out
}

#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct StreamParams {
    /// Resume after this `seq` (as `Last-Event-ID`): every task changed since comes first.
    pub after: Option<i64>,
}

/// Follow a rollout as Server-Sent Events: `event: update`, `id: <seq>`, `data:` the
/// rollout and only the host tasks that changed since the previous update, at most one a
/// second. The first update carries every task (or, when resuming, every task changed
/// since `Last-Event-ID`); the stream ends after the update showing the rollout finished.
#[utoipa::path(
    get,
    path = "/api/v1/rollouts/{id}/stream",
    tag = "rollouts",
    params(("id" = String, Path), StreamParams),
    responses(
        (status = 200, description = "`event: update`, `id: <seq>`, `data: <RolloutUpdate JSON>`", content_type = "text/event-stream", body = crate::ship::watch::RolloutUpdate),
        (status = 400, body = ErrorBody),
        (status = 404, body = ErrorBody),
    ),
    security(("bearer" = [])),
    extensions(("x-gantry-scope" = json!("read"))),
)]
pub async fn stream_rollout(
    State(state): State<AppState>,
    caller: Caller,
    headers: axum::http::HeaderMap,
    Path(id): Path<String>,
    Query(params): Query<StreamParams>,
) -> ApiResult<
    axum::response::sse::Sse<
        impl futures::Stream<Item = Result<axum::response::sse::Event, std::convert::Infallible>>,
    >,
> {
    use axum::response::sse::{Event, KeepAlive, Sse};
    use futures::StreamExt as _;
    let rollout = load(&state, &caller, &id).await?;
    let after = super::last_event_id(&headers, "an update seq")?.or(params.after);
    let updates = crate::ship::watch::follow(state.clone(), rollout.id, after).map(|u| {
        Ok(Event::default()
            .event("update")
            .id(u.seq.to_string())
            .data(serde_json::to_string(&u).unwrap_or_default()))
    });
    let digest = caller.1.clone();
    let updates = crate::auth::until_revoked(updates, move || {
        let (state, digest) = (state.clone(), digest.clone());
        async move { crate::auth::token_still_valid(&state, &digest).await }
    });
    Ok(Sse::new(updates).keep_alive(KeepAlive::new().interval(std::time::Duration::from_secs(15))))
}
