//! `/api/v1/services` and `/api/v1/environments`: what is deployed, and the ordered
//! environments each service is promoted through.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use chrono::Utc;
use gantry_core::{NewService, ScopeName, Service};
use serde::Deserialize;
use utoipa::IntoParams;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::auth::Caller;
use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::extract::{Json, Query};
use crate::state::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(create_service, list_services))
        .routes(routes!(get_service, delete_service))
        .routes(routes!(list_environments))
}

/// Register a service with its pipeline, or set the pipeline of one registered on first use.
#[utoipa::path(
    post,
    path = "/api/v1/services",
    tag = "services",
    request_body = NewService,
    responses(
        (status = 201, body = Service),
        (status = 400, body = ErrorBody),
        (status = 409, description = "Service exists", body = ErrorBody),
    ),
    security(("bearer" = [])),
    extensions(("x-gantry-scope" = json!("admin"))),
)]
pub async fn create_service(
    State(state): State<AppState>,
    caller: Caller,
    Json(new): Json<NewService>,
) -> ApiResult<(StatusCode, axum::Json<Service>)> {
    caller.require(ScopeName::Admin, None, None)?;
    new.validate()?;
    let service = state
        .metrics
        .time_store(
            "create_service",
            state.store.create_service(&new, Utc::now()),
        )
        .await?;
    Ok((StatusCode::CREATED, axum::Json(service)))
}

/// List services.
#[utoipa::path(
    get,
    path = "/api/v1/services",
    tag = "services",
    responses((status = 200, body = Vec<Service>)),
    security(("bearer" = [])),
    extensions(("x-gantry-scope" = json!("read"))),
)]
pub async fn list_services(
    State(state): State<AppState>,
    caller: Caller,
) -> ApiResult<axum::Json<Vec<Service>>> {
    caller.require_somewhere(ScopeName::Read)?;
    let mut services = state
        .metrics
        .time_store("list_services", state.store.list_services())
        .await?;
    services.retain(|s| may_read_service(&caller, &s.name));
    Ok(axum::Json(services))
}

/// Whether some read scope of the caller covers the service `name` (in any environment).
fn may_read_service(caller: &Caller, name: &str) -> bool {
    caller.0.scopes.iter().any(|s| {
        matches!(s.name, ScopeName::Read | ScopeName::Admin)
            && s.service.as_deref().is_none_or(|n| n == name)
    })
}

/// Show a service.
#[utoipa::path(
    get,
    path = "/api/v1/services/{name}",
    tag = "services",
    params(("name" = String, Path)),
    responses((status = 200, body = Service), (status = 404, body = ErrorBody)),
    security(("bearer" = [])),
    extensions(("x-gantry-scope" = json!("read"))),
)]
pub async fn get_service(
    State(state): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
) -> ApiResult<axum::Json<Service>> {
    caller.require_somewhere(ScopeName::Read)?;
    if !may_read_service(&caller, &name) {
        return Err(ApiError::forbidden(format!(
            "token '{}' may not read service '{name}'",
            caller.name()
        )));
    }
    let service = state
        .metrics
        .time_store("get_service", state.store.get_service(&name))
        .await?
        .ok_or_else(|| ApiError::not_found(format!("no service named '{name}'")))?;
    Ok(axum::Json(service))
}

#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct DeleteParams {
    /// Delete even while changes name the service (the changes stay in the log).
    force: Option<bool>,
}

/// Delete a service's registration; refused while it has changes unless `force=true`.
#[utoipa::path(
    delete,
    path = "/api/v1/services/{name}",
    tag = "services",
    params(("name" = String, Path), DeleteParams),
    responses(
        (status = 204, description = "Deleted"),
        (status = 404, body = ErrorBody),
        (status = 409, description = "The service has changes", body = ErrorBody),
    ),
    security(("bearer" = [])),
    extensions(("x-gantry-scope" = json!("admin"))),
)]
pub async fn delete_service(
    State(state): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
    Query(params): Query<DeleteParams>,
) -> ApiResult<StatusCode> {
    caller.require(ScopeName::Admin, None, None)?;
    state
        .metrics
        .time_store(
            "delete_service",
            state
                .store
                .delete_service(&name, params.force.unwrap_or(false)),
        )
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// List environment names (global; each service orders its own pipeline of them).
#[utoipa::path(
    get,
    path = "/api/v1/environments",
    tag = "services",
    responses((status = 200, body = Vec<String>)),
    security(("bearer" = [])),
    extensions(("x-gantry-scope" = json!("read"))),
)]
pub async fn list_environments(
    State(state): State<AppState>,
    caller: Caller,
) -> ApiResult<axum::Json<Vec<String>>> {
    caller.require_somewhere(ScopeName::Read)?;
    let environments = state
        .metrics
        .time_store("list_environments", state.store.list_environments())
        .await?;
    Ok(axum::Json(environments))
}
