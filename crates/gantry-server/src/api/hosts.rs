//! `/api/v1/hosts`: enrolling hosts (each gets a token bound to its name), listing them with
//! their health and releases, and maintenance mode.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use chrono::Utc;
use gantry_core::names::validate_name;
use gantry_core::ship::{host_token_name, Host};
use gantry_core::token::{digest, generate_secret};
use gantry_core::{Scope, ScopeName, TokenInfo};
use serde::Deserialize;
use utoipa::IntoParams;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::auth::Caller;
use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::extract::{Json, Query};
use crate::state::AppState;
use gantry_core::ship::{Enrolled, Enrollment, HostView, Maintenance};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(enroll_host, list_hosts))
        .routes(routes!(get_host, delete_host))
        .routes(routes!(set_maintenance))
}

/// Enroll a host (or re-enroll it: its previous token is revoked).
#[utoipa::path(
    post,
    path = "/api/v1/hosts",
    tag = "hosts",
    request_body = Enrollment,
    responses((status = 201, body = Enrolled), (status = 400, body = ErrorBody)),
    security(("bearer" = [])),
    extensions(("x-gantry-scope" = json!("admin"))),
)]
pub async fn enroll_host(
    State(state): State<AppState>,
    caller: Caller,
    Json(e): Json<Enrollment>,
) -> ApiResult<(StatusCode, axum::Json<Enrolled>)> {
    caller.require(ScopeName::Admin, None, None)?;
    validate_name("host", &e.name)?;
    validate_name("environment", &e.environment)?;
    let token_name = host_token_name(&e.name);
    validate_name("host", &token_name)
        .map_err(|_| ApiError::invalid(format!("host name '{}' is too long", e.name)))?;
    for r in &e.roles {
        validate_name("role", r)?;
    }
    let now = Utc::now();
    state
        .store
        .enroll_host(&e.name, &e.environment, &e.roles, now)
        .await?;
    // One token per host: a new enrollment replaces the old one.
    match state.store.revoke_token(&token_name, now).await {
        Ok(()) | Err(gantry_store::StoreError::NotFound(_)) => {}
        Err(err) => return Err(err.into()),
    }
    let scope = Scope {
        name: ScopeName::Agent,
        service: None,
        environment: Some(e.environment.clone()),
    };
    let info = TokenInfo {
        name: token_name,
        scopes: vec![scope],
        created_at: now,
        expires_at: None,
        created_by: caller.name().to_string(),
    };
    let secret = generate_secret();
    state.store.create_token(&info, &digest(&secret)).await?;
    let host = load(&state, &e.name).await?;
    tracing::info!(host = %e.name, environment = %e.environment, "host enrolled");
    Ok((
        StatusCode::CREATED,
        axum::Json(Enrolled {
            host,
            token: secret,
        }),
    ))
}

/// A host with its status computed now.
pub async fn load(state: &AppState, name: &str) -> ApiResult<Host> {
    let mut host = state
        .store
        .get_host(name)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("no host named '{name}' is enrolled")))?;
    with_status(state, &mut host);
    Ok(host)
}

pub fn with_status(state: &AppState, host: &mut Host) {
    let after = chrono::Duration::seconds(state.config.ship.host_lost_after_secs as i64);
    host.status = Host::status_at(host.last_seen_at, Utc::now(), after);
}

#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ListParams {
    pub environment: Option<String>,
}

/// List hosts with their status (online, lost, new) and current releases.
#[utoipa::path(
    get,
    path = "/api/v1/hosts",
    tag = "hosts",
    params(ListParams),
    responses((status = 200, body = Vec<Host>)),
    security(("bearer" = [])),
    extensions(("x-gantry-scope" = json!("read"))),
)]
pub async fn list_hosts(
    State(state): State<AppState>,
    caller: Caller,
    Query(p): Query<ListParams>,
) -> ApiResult<axum::Json<Vec<Host>>> {
    caller.require(ScopeName::Read, None, p.environment.as_deref())?;
    let mut hosts = state.store.list_hosts(p.environment.as_deref()).await?;
    for h in &mut hosts {
        with_status(&state, h);
    }
    Ok(axum::Json(hosts))
}

/// Show a host and its recent tasks.
#[utoipa::path(
    get,
    path = "/api/v1/hosts/{name}",
    tag = "hosts",
    params(("name" = String, Path)),
    responses((status = 200, body = HostView), (status = 404, body = ErrorBody)),
    security(("bearer" = [])),
    extensions(("x-gantry-scope" = json!("read"))),
)]
pub async fn get_host(
    State(state): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
) -> ApiResult<axum::Json<HostView>> {
    let host = load(&state, &name).await?;
    caller.require(ScopeName::Read, None, Some(&host.environment))?;
    let tasks = state.store.host_tasks(&name, false, 20).await?;
    Ok(axum::Json(HostView { host, tasks }))
}

/// Remove a host and revoke its token.
#[utoipa::path(
    delete,
    path = "/api/v1/hosts/{name}",
    tag = "hosts",
    params(("name" = String, Path)),
    responses((status = 204), (status = 404, body = ErrorBody)),
    security(("bearer" = [])),
    extensions(("x-gantry-scope" = json!("admin"))),
)]
pub async fn delete_host(
    State(state): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
) -> ApiResult<StatusCode> {
    caller.require(ScopeName::Admin, None, None)?;
    state.store.delete_host(&name).await?;
    match state
        .store
        .revoke_token(&host_token_name(&name), Utc::now())
        .await
    {
        Ok(()) | Err(gantry_store::StoreError::NotFound(_)) => {}
        Err(e) => return Err(e.into()),
    }
    Ok(StatusCode::NO_CONTENT)
}

/// Put a host in maintenance (its agent drains every service and it is kept out of
/// deploys) or take it out.
#[utoipa::path(
    put,
    path = "/api/v1/hosts/{name}/maintenance",
    tag = "hosts",
    params(("name" = String, Path)),
    request_body = Maintenance,
    responses((status = 200, body = Host), (status = 404, body = ErrorBody)),
    security(("bearer" = [])),
    extensions(("x-gantry-scope" = json!("deploy"))),
)]
pub async fn set_maintenance(
    State(state): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
    Json(m): Json<Maintenance>,
) -> ApiResult<axum::Json<Host>> {
    let host = load(&state, &name).await?;
    caller.require(ScopeName::Deploy, None, Some(&host.environment))?;
    Ok(axum::Json(
        crate::ship::hosts::set_maintenance(&state, &name, m.on).await?,
    ))
}
