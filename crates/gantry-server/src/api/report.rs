//! `GET /api/v1/report`: the ops meta-metrics (time to detect and resolve, DORA's five,
//! change failure by kind, incidents by severity and cause) for a period and per bucket.

use axum::extract::State;
use chrono::{DateTime, Utc};
use gantry_core::report::Report;
use gantry_core::ScopeName;
use serde::Deserialize;
use utoipa::IntoParams;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::auth::Caller;
use crate::error::{ApiResult, ErrorBody};
use crate::extract::Query;
use crate::state::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(get_report))
}

/// Filters of `GET /api/v1/report`.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ReportParams {
    /// One service (default: every service).
    service: Option<String>,
    /// The environment (default `prod`).
    #[serde(alias = "env")]
    environment: Option<String>,
    /// Start of the period (RFC 3339, epoch seconds, or a duration ago; default `90d`).
    #[serde(default, deserialize_with = "gantry_core::time::deserialize_api_time")]
    #[param(value_type = Option<String>)]
    since: Option<DateTime<Utc>>,
    /// End of the period (default now).
    #[serde(default, deserialize_with = "gantry_core::time::deserialize_api_time")]
    #[param(value_type = Option<String>)]
    until: Option<DateTime<Utc>>,
    /// `day`, `week` (default) or `month`.
    by: Option<String>,
}

/// The report for a period: every figure with its count, per bucket too, and the
/// definitions it follows. An empty period answers `n = 0` figures. Needs `read` covering
/// the service (or every service) in the environment.
#[utoipa::path(
    get,
    path = "/api/v1/report",
    tag = "incidents",
    params(ReportParams),
    responses((status = 200, body = Report), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody)),
    security(("bearer" = [])),
    extensions(("x-gantry-scope" = json!("read"))),
)]
pub async fn get_report(
    State(state): State<AppState>,
    caller: Caller,
    Query(p): Query<ReportParams>,
) -> ApiResult<axum::Json<Report>> {
    // As before the rule moved: names checked, then who may read it, then the period.
    let environment = p.environment.unwrap_or_else(|| "prod".to_string());
    gantry_core::names::validate_name("environment", &environment)?;
    if let Some(s) = &p.service {
        gantry_core::names::validate_name("service", s)?;
    }
    caller.require(ScopeName::Read, p.service.as_deref(), Some(&environment))?;
    let scope = crate::report::Scope::new(
        p.service,
        Some(environment),
        p.since,
        p.until,
        p.by.as_deref(),
    )?;
    Ok(axum::Json(crate::report::report(&state, &scope).await?))
}
