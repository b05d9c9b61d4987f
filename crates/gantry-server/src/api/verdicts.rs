//! `GET /api/v1/verdicts`: what regression detection concluded, newest first.

use axum::extract::State;
use chrono::{DateTime, Utc};
use gantry_core::detect::Verdict;
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
    OpenApiRouter::new().routes(routes!(list_verdicts))
}

/// Filters of `GET /api/v1/verdicts`.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct VerdictParams {
    service: Option<String>,
    #[serde(alias = "env")]
    environment: Option<String>,
    /// Since (RFC 3339, epoch seconds, or a duration ago such as `7d`).
    #[serde(default, deserialize_with = "gantry_core::time::deserialize_api_time")]
    #[param(value_type = Option<String>)]
    since: Option<DateTime<Utc>>,
    /// At most this many (default 50, at most 1000).
    /// (Any unsigned 32-bit number is taken; the server clamps it.)
    #[param(value_type = Option<u64>, maximum = 4294967295_u64)]
    limit: Option<u32>,
}

/// Regression verdicts, newest first: metric, direction, effect and its interval, p-value,
/// the looks and sizes, the seasonal baselines used, and the change (or rollout) suspected.
/// Shows those the token may read.
#[utoipa::path(
    get,
    path = "/api/v1/verdicts",
    tag = "incidents",
    params(VerdictParams),
    responses((status = 200, body = Vec<Verdict>), (status = 400, body = ErrorBody)),
    security(("bearer" = [])),
    extensions(("x-gantry-scope" = json!("read"))),
)]
pub async fn list_verdicts(
    State(state): State<AppState>,
    caller: Caller,
    Query(p): Query<VerdictParams>,
) -> ApiResult<axum::Json<Vec<Verdict>>> {
    caller.require_somewhere(ScopeName::Read)?;
    let records = state
        .store
        .list_verdicts(
            p.service.as_deref(),
            p.environment.as_deref(),
            true,
            p.since,
            // Filtered by scope before it is cut to the limit.
            5000,
        )
        .await?;
    let limit = p.limit.unwrap_or(50).clamp(1, 1000) as usize;
    Ok(axum::Json(
        records
            .into_iter()
            .filter(|r| {
                caller
                    .0
                    .allows(ScopeName::Read, Some(&r.service), Some(&r.environment))
            })
            .filter_map(|r| serde_json::from_str::<Verdict>(&r.doc).ok())
            .take(limit)
            .collect(),
    ))
}
