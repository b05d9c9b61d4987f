//! `/api/v1/alerts` (the alerts open now and each notification's deliveries),
//! `/api/v1/silences` and `/api/v1/maintenance-windows` (what holds notifications). The
//! rules are in `crate::notify`.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use chrono::{DateTime, Utc};
use gantry_core::ScopeName;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::parse_id;
use crate::auth::Caller;
use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::extract::{Json, Query};
use crate::notify::silences::{self, NewSilence, NewWindow, Reach, SilenceView};
use crate::state::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_alerts))
        .routes(routes!(create_silence, list_silences))
        .routes(routes!(create_window))
        .routes(routes!(expire_silence))
}

/// An alert open now: one monitor × series since it left OK.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct AlertView {
    pub id: String,
    pub monitor: String,
    pub series: String,
    pub service: String,
    pub environment: String,
    /// The hard state: `WARNING`, `CRITICAL`, `UNKNOWN` (or `OK` once resolved, until the
    /// resolution is notified).
    pub state: String,
    pub value: Option<f64>,
    pub started_at: DateTime<Utc>,
    pub resolved_at: Option<DateTime<Utc>>,
    pub flapping: bool,
}

/// One notification's delivery to one receiver.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct DeliveryView {
    pub id: String,
    /// The notification's idempotency id, sent with every attempt.
    pub notification: String,
    pub receiver: String,
    pub service: String,
    pub environment: String,
    pub summary: String,
    /// `pending`, `delivered` or `failed`.
    pub state: String,
    pub attempts: u32,
    pub created_at: DateTime<Utc>,
    pub last_attempt_at: Option<DateTime<Utc>>,
    /// When a pending delivery is tried next.
    pub next_attempt_at: Option<DateTime<Utc>>,
    pub delivered_at: Option<DateTime<Utc>>,
    pub last_error: Option<String>,
}

/// `GET /api/v1/alerts`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct AlertsAnswer {
    pub alerts: Vec<AlertView>,
    /// Newest first.
    pub deliveries: Vec<DeliveryView>,
}

/// Filters of `GET /api/v1/alerts`.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct AlertParams {
    service: Option<String>,
    #[serde(alias = "env")]
    environment: Option<String>,
    /// Deliveries in this state only: `pending`, `delivered` or `failed`.
    state: Option<String>,
    /// At most this many deliveries (default 50, at most 1000).
    /// (Any unsigned 32-bit number is taken; the server clamps it.)
    #[param(value_type = Option<u64>, maximum = 4294967295_u64)]
    limit: Option<u32>,
}

/// The alerts open now and the newest deliveries of their notifications, with each
/// delivery's state, attempts and last error. Shows what the token may read.
#[utoipa::path(
    get,
    path = "/api/v1/alerts",
    tag = "monitors",
    params(AlertParams),
    responses((status = 200, body = AlertsAnswer), (status = 400, body = ErrorBody)),
    security(("bearer" = [])),
    extensions(("x-gantry-scope" = json!("read"))),
)]
pub async fn list_alerts(
    State(state): State<AppState>,
    caller: Caller,
    Query(p): Query<AlertParams>,
) -> ApiResult<axum::Json<AlertsAnswer>> {
    caller.require_somewhere(ScopeName::Read)?;
    if let Some(s) = p.state.as_deref() {
        if !matches!(s, "pending" | "delivered" | "failed") {
            return Err(ApiError::invalid(format!(
                "state '{s}' is not one of pending, delivered, failed"
            )));
        }
    }
    let readable = |service: &str, environment: &str| {
        let service = (!service.is_empty()).then_some(service);
        caller.0.allows(ScopeName::Read, service, Some(environment))
    };
    let wanted = |service: &str, environment: &str| {
        p.service.as_deref().is_none_or(|s| s == service)
            && p.environment.as_deref().is_none_or(|e| e == environment)
    };
    let alerts = crate::notify::open_alerts(&state)
        .await?
        .into_iter()
        .filter(|a| wanted(&a.service, &a.environment) && readable(&a.service, &a.environment))
        .map(|a| AlertView {
            id: a.id(),
            monitor: a.monitor,
            series: a.series,
            service: a.service,
            environment: a.environment,
            state: a.state.as_str().to_string(),
            value: a.value.filter(|v| v.is_finite()),
            started_at: a.started_at,
            resolved_at: a.resolved_at,
            flapping: a.flapping,
        })
        .collect();
    let limit = p.limit.unwrap_or(50).clamp(1, 1000) as usize;
    let deliveries = state
        .store
        .list_deliveries(
            p.service.as_deref(),
            p.environment.as_deref(),
            p.state.as_deref(),
            // Filtered by scope before it is cut to the limit.
            5000,
        )
        .await?
        .into_iter()
        .filter(|d| readable(&d.service, &d.environment))
        .take(limit)
        .map(|d| DeliveryView {
            id: d.id.to_string(),
            notification: d.notification_id,
            receiver: d.receiver,
            service: d.service,
            environment: d.environment,
            summary: d.summary,
            next_attempt_at: (d.state == "pending")
                .then_some(d.next_attempt_at)
                .flatten(),
            state: d.state,
            attempts: d.attempts,
            created_at: d.created_at,
            last_attempt_at: d.last_attempt_at,
            delivered_at: d.delivered_at,
            last_error: d.last_error,
        })
        .collect();
    Ok(axum::Json(AlertsAnswer { alerts, deliveries }))
}

/// Who may create or expire a hold of this reach: `deploy` on its service (and
/// environment); `admin` for label matchers, which may reach any monitor.
fn require_hold(caller: &Caller, reach: &Reach) -> Result<(), ApiError> {
    match reach {
        Reach::Service(s, e) => caller.require(ScopeName::Deploy, Some(s), e.as_deref()),
        Reach::Environment(e) => caller.require(ScopeName::Deploy, None, Some(e)),
        Reach::Everything => caller.require(ScopeName::Admin, None, None),
    }
}

fn may_read(caller: &Caller, reach: &Reach) -> bool {
    match reach {
        Reach::Service(s, e) => caller.0.allows(ScopeName::Read, Some(s), e.as_deref()),
        Reach::Environment(e) => caller.0.allows(ScopeName::Read, None, Some(e)),
        Reach::Everything => caller.0.holds_somewhere(ScopeName::Read),
    }
}

/// Silence alerts until a time: their notifications wait (resolutions still go out);
/// states, gates and incidents are not affected. Needs `deploy` on the service the matcher
/// reaches (`admin` for a label matcher).
#[utoipa::path(
    post,
    path = "/api/v1/silences",
    tag = "monitors",
    request_body = NewSilence,
    responses((status = 201, body = SilenceView), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, description = "The matcher names a monitor or host that does not exist", body = ErrorBody)),
    security(("bearer" = [])),
    extensions(("x-gantry-scope" = json!("deploy"))),
)]
pub async fn create_silence(
    State(state): State<AppState>,
    caller: Caller,
    Json(new): Json<NewSilence>,
) -> ApiResult<(StatusCode, axum::Json<SilenceView>)> {
    let reach = silences::reach(&state, &new.matcher).await?;
    require_hold(&caller, &reach)?;
    let v = silences::create_silence(&state, caller.name(), new, Utc::now()).await?;
    Ok((StatusCode::CREATED, axum::Json(v)))
}

/// Filters of `GET /api/v1/silences`.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct SilenceParams {
    /// Include silences that ended or were expired.
    all: Option<bool>,
}

/// Silences and maintenance windows in force or to come (every one with `all=true`),
/// newest first; those the token may read.
#[utoipa::path(
    get,
    path = "/api/v1/silences",
    tag = "monitors",
    params(SilenceParams),
    responses((status = 200, body = Vec<SilenceView>), (status = 400, body = ErrorBody)),
    security(("bearer" = [])),
    extensions(("x-gantry-scope" = json!("read"))),
)]
pub async fn list_silences(
    State(state): State<AppState>,
    caller: Caller,
    Query(p): Query<SilenceParams>,
) -> ApiResult<axum::Json<Vec<SilenceView>>> {
    caller.require_somewhere(ScopeName::Read)?;
    let all = silences::list(&state, p.all.unwrap_or(false), Utc::now()).await?;
    Ok(axum::Json(
        all.into_iter()
            .filter(|(_, reach)| may_read(&caller, reach))
            .map(|(v, _)| v)
            .collect(),
    ))
}

/// A weekly maintenance window: on the given days, from `start` (UTC) for `duration_secs`,
/// notifications of the alerts it matches wait. Scope as for silences.
#[utoipa::path(
    post,
    path = "/api/v1/maintenance-windows",
    tag = "monitors",
    request_body = NewWindow,
    responses((status = 201, body = SilenceView), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, description = "The matcher names a monitor or host that does not exist", body = ErrorBody)),
    security(("bearer" = [])),
    extensions(("x-gantry-scope" = json!("deploy"))),
)]
pub async fn create_window(
    State(state): State<AppState>,
    caller: Caller,
    Json(new): Json<NewWindow>,
) -> ApiResult<(StatusCode, axum::Json<SilenceView>)> {
    let reach = silences::reach(&state, &new.matcher).await?;
    require_hold(&caller, &reach)?;
    let v = silences::create_window(&state, caller.name(), new, Utc::now()).await?;
    Ok((StatusCode::CREATED, axum::Json(v)))
}

/// End a silence or maintenance window now. Scope as for creating it.
#[utoipa::path(
    delete,
    path = "/api/v1/silences/{id}",
    tag = "monitors",
    params(("id" = String, Path)),
    responses((status = 200, body = SilenceView), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("bearer" = [])),
    extensions(("x-gantry-scope" = json!("deploy"))),
)]
pub async fn expire_silence(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<axum::Json<SilenceView>> {
    caller.require_somewhere(ScopeName::Read)?;
    let id = parse_id("silence", &id)?;
    let now = Utc::now();
    let (_, reach) = silences::get(&state, id, now).await?;
    require_hold(&caller, &reach)?;
    Ok(axum::Json(
        silences::expire(&state, caller.name(), id, now).await?,
    ))
}
