//! `/api/v1/metrics`: list and delete stored series by Graphite glob.

use axum::extract::State;
use gantry_core::ScopeName;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::auth::Caller;
use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::extract::Query;
use crate::state::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(list_series, delete_series))
}

/// Compaction takes as long as the store is large (minutes for a week of 10,000 series),
/// so it is served outside `request_timeout_secs`.
pub fn maintenance_router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(compact))
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct PatternParams {
    /// A Graphite glob over whole names (`*` stays within one path element); all series
    /// when absent (listing only).
    pattern: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct SeriesList {
    pub series: Vec<String>,
}

fn matching(state: &AppState, pattern: Option<&str>) -> Vec<String> {
    let names = state.tsdb.names();
    match pattern {
        None => names,
        Some(p) => {
            let glob = gantry_render::Glob::new(p);
            names.into_iter().filter(|n| glob.matches(n)).collect()
        }
    }
}

/// List stored series, optionally matching a glob.
#[utoipa::path(
    get,
    path = "/api/v1/metrics",
    tag = "metrics",
    params(PatternParams),
    responses((status = 200, body = SeriesList)),
    security(("bearer" = [])),
    extensions(("x-gantry-scope" = json!("read"))),
)]
pub async fn list_series(
    State(state): State<AppState>,
    caller: Caller,
    Query(params): Query<PatternParams>,
) -> ApiResult<axum::Json<SeriesList>> {
    caller.require_somewhere(ScopeName::Read)?;
    Ok(axum::Json(SeriesList {
        series: matching(&state, params.pattern.as_deref()),
    }))
}

/// Delete every series matching a glob, with all its data. Admin only.
#[utoipa::path(
    delete,
    path = "/api/v1/metrics",
    tag = "metrics",
    params(PatternParams),
    responses((status = 200, description = "The series deleted", body = SeriesList), (status = 400, body = ErrorBody)),
    security(("bearer" = [])),
    extensions(("x-gantry-scope" = json!("admin"))),
)]
pub async fn delete_series(
    State(state): State<AppState>,
    caller: Caller,
    Query(params): Query<PatternParams>,
) -> ApiResult<axum::Json<SeriesList>> {
    caller.require(ScopeName::Admin, None, None)?;
    let pattern = params
        .pattern
        .filter(|p| !p.trim().is_empty())
        .ok_or_else(|| {
            ApiError::invalid("pattern is required to delete, e.g. pattern=stats.old.*")
        })?;
    let glob =
        gantry_render::Glob::try_new(&pattern).map_err(|e| ApiError::invalid(e.to_string()))?;
    let tsdb = state.tsdb.clone();
    let deleted = tokio::task::spawn_blocking(move || tsdb.delete_where(|name| glob.matches(name)))
        .await
        .map_err(|_| ApiError::internal())?
        .map_err(|e| {
            tracing::error!(error = %e, "cannot delete series");
            ApiError::internal()
        })?;
    tracing::info!(series = deleted.len(), by = %caller.name(), "deleted metric series");
    Ok(axum::Json(SeriesList { series: deleted }))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Compacted {
    /// Blocks past their retention that were deleted.
    pub blocks_deleted: u64,
    /// The store's size on disk afterwards, in bytes.
    pub disk_bytes: u64,
}

/// Expire, fold and compact the metrics store now (normally hourly and in the background):
/// the smallest it can be on disk. Admin only. Answers when done, however long that takes
/// (not bound by `request_timeout_secs`).
#[utoipa::path(
    post,
    path = "/api/v1/metrics/compact",
    tag = "metrics",
    responses((status = 200, body = Compacted)),
    security(("bearer" = [])),
    extensions(("x-gantry-scope" = json!("admin"))),
)]
pub async fn compact(
    State(state): State<AppState>,
    caller: Caller,
) -> ApiResult<axum::Json<Compacted>> {
    caller.require(ScopeName::Admin, None, None)?;
    let tsdb = state.tsdb.clone();
    let blocks_deleted =
        tokio::task::spawn_blocking(move || tsdb.compact_all(chrono::Utc::now().timestamp()))
            .await
            .map_err(|_| ApiError::internal())?
            .map_err(|e| {
                tracing::error!(error = %e, "cannot compact the metrics store");
                ApiError::internal()
            })?;
    Ok(axum::Json(Compacted {
        blocks_deleted,
        disk_bytes: state.tsdb.disk_space(),
    }))
}
