//! `/api/v1/incidents`: open an incident by hand, list and show them (with suspects and the
//! timeline), move their clocks, add notes, name the cause, correct them, and the remedies
//! (`rollback`, `flag-off`). The rules are in `crate::incidents`.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use chrono::{DateTime, Utc};
use gantry_core::incident::{ActionResult, Cause, Incident, IncidentView, NewIncident, Source};
use gantry_core::ScopeName;
use serde::Deserialize;
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::parse_id;
use crate::auth::Caller;
use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::extract::{Json, Query};
use crate::incidents::{self, IncidentEdit};
use crate::state::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(open_incident, list_incidents))
        .routes(routes!(get_incident, edit_incident))
        .routes(routes!(act))
        .routes(routes!(add_note))
        .routes(routes!(set_cause))
}

fn may_read(caller: &Caller, incident: &Incident) -> bool {
    incidents::may_read(&caller.0, incident)
}

fn require_either(
    caller: &Caller,
    services: &[String],
    environments: &[String],
) -> Result<(), ApiError> {
    incidents::require_either(&caller.0, services, environments)
}

async fn readable(state: &AppState, caller: &Caller, id: &str) -> ApiResult<Incident> {
    let id = parse_id("incident", id)?;
    let incident = incidents::load(state.store.as_ref(), id).await?;
    if !may_read(caller, &incident) {
        let (s, e) = (incident.services.first(), incident.environments.first());
        caller.require(
            ScopeName::Read,
            s.map(String::as_str),
            e.map(String::as_str),
        )?;
    }
    Ok(incident)
}

/// Open an incident by hand (severity SEV3 unless given); its suspects are ranked from the
/// change log. Needs `deploy` or `flags` covering the service in the environment.
#[utoipa::path(
    post,
    path = "/api/v1/incidents",
    tag = "incidents",
    request_body = NewIncident,
    responses((status = 201, body = Incident), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody)),
    security(("bearer" = [])),
    extensions(("x-gantry-scope" = json!("deploy|flags"))),
)]
pub async fn open_incident(
    State(state): State<AppState>,
    caller: Caller,
    Json(new): Json<NewIncident>,
) -> ApiResult<(StatusCode, axum::Json<Incident>)> {
    gantry_core::names::validate_name("service", &new.service)?;
    gantry_core::names::validate_name("environment", &new.environment)?;
    require_either(
        &caller,
        std::slice::from_ref(&new.service),
        std::slice::from_ref(&new.environment),
    )?;
    let incident = incidents::open(&state, caller.name(), new, Source::Manual).await?;
    Ok((StatusCode::CREATED, axum::Json(incident)))
}

/// Filters of `GET /api/v1/incidents`.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ListParams {
    service: Option<String>,
    #[serde(alias = "env")]
    environment: Option<String>,
    /// Only incidents not resolved.
    open: Option<bool>,
    /// Detected at or after (RFC 3339, epoch seconds, or a duration ago such as `30d`).
    #[serde(default, deserialize_with = "gantry_core::time::deserialize_api_time")]
    #[param(value_type = Option<String>)]
    since: Option<DateTime<Utc>>,
    /// At most this many, newest first (default 50, at most 1000).
    /// (Any unsigned 32-bit number is taken; the server clamps it.)
    #[param(value_type = Option<u64>, maximum = 4294967295_u64)]
    limit: Option<u32>,
}

/// Incidents, newest first: those whose services the token may read.
#[utoipa::path(
    get,
    path = "/api/v1/incidents",
    tag = "incidents",
    params(ListParams),
    responses((status = 200, body = Vec<Incident>), (status = 400, body = ErrorBody)),
    security(("bearer" = [])),
    extensions(("x-gantry-scope" = json!("read"))),
)]
pub async fn list_incidents(
    State(state): State<AppState>,
    caller: Caller,
    Query(p): Query<ListParams>,
) -> ApiResult<axum::Json<Vec<Incident>>> {
    caller.require_somewhere(ScopeName::Read)?;
    let limit = p.limit.unwrap_or(50).clamp(1, 1000);
    let mut found = state
        .store
        .list_incidents(p.since, p.open.unwrap_or(false), 5000)
        .await?;
    found.retain(|i| {
        may_read(&caller, i)
            && p.service.as_ref().is_none_or(|s| i.services.contains(s))
            && p.environment
                .as_ref()
                .is_none_or(|e| i.environments.contains(e))
    });
    found.truncate(limit as usize);
    Ok(axum::Json(found))
}

/// Show an incident: its clocks, ranked suspects with their scores, cause and timeline.
#[utoipa::path(
    get,
    path = "/api/v1/incidents/{id}",
    tag = "incidents",
    params(("id" = String, Path)),
    responses((status = 200, body = IncidentView), (status = 404, body = ErrorBody)),
    security(("bearer" = [])),
    extensions(("x-gantry-scope" = json!("read"))),
)]
pub async fn get_incident(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<axum::Json<IncidentView>> {
    let incident = readable(&state, &caller, &id).await?;
    let timeline = incidents::timeline(&state, &incident).await?;
    Ok(axum::Json(IncidentView { incident, timeline }))
}

/// Correct an incident: title, severity, when the impact started, the postmortem link.
#[utoipa::path(
    patch,
    path = "/api/v1/incidents/{id}",
    tag = "incidents",
    params(("id" = String, Path)),
    request_body = IncidentEdit,
    responses((status = 200, body = Incident), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("bearer" = [])),
    extensions(("x-gantry-scope" = json!("deploy|flags"))),
)]
pub async fn edit_incident(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    Json(edit): Json<IncidentEdit>,
) -> ApiResult<axum::Json<Incident>> {
    let incident = readable(&state, &caller, &id).await?;
    require_either(&caller, &incident.services, &incident.environments)?;
    Ok(axum::Json(
        incidents::edit(&state, caller.name(), incident.id, edit).await?,
    ))
}

/// `ack`, `mitigate` or `resolve` (need `deploy` or `flags`); `rollback` (needs `deploy`:
/// rolls back the top deploy suspect when it is what runs now, or halts it while it rolls
/// out; 409 otherwise); `flag-off` (needs `flags`: turns off the top flag suspect's flag).
#[utoipa::path(
    post,
    path = "/api/v1/incidents/{id}/{action}",
    tag = "incidents",
    params(("id" = String, Path), ("action" = String, Path, description = "ack, mitigate, resolve, rollback or flag-off")),
    responses(
        (status = 200, body = ActionResult),
        (status = 400, body = ErrorBody),
        (status = 404, body = ErrorBody),
        (status = 409, description = "Resolved, or the remedy has nothing to act on", body = ErrorBody),
    ),
    security(("bearer" = [])),
    extensions(("x-gantry-scope" = json!("deploy|flags"))),
)]
pub async fn act(
    State(state): State<AppState>,
    caller: Caller,
    Path((id, action)): Path<(String, String)>,
) -> ApiResult<axum::Json<ActionResult>> {
    let incident = readable(&state, &caller, &id).await?;
    let (incident, change_id) = incidents::act(&state, &caller.0, incident.id, &action).await?;
    Ok(axum::Json(ActionResult {
        incident,
        change_id,
    }))
}

/// A note for the timeline.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewNote {
    pub text: String,
}

/// Add a note to an incident's timeline. Needs `deploy` or `flags`.
#[utoipa::path(
    post,
    path = "/api/v1/incidents/{id}/notes",
    tag = "incidents",
    params(("id" = String, Path)),
    request_body = NewNote,
    responses((status = 200, body = Incident), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("bearer" = [])),
    extensions(("x-gantry-scope" = json!("deploy|flags"))),
)]
pub async fn add_note(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    Json(note): Json<NewNote>,
) -> ApiResult<axum::Json<Incident>> {
    let incident = readable(&state, &caller, &id).await?;
    require_either(&caller, &incident.services, &incident.environments)?;
    Ok(axum::Json(
        incidents::note(&state, caller.name(), incident.id, &note.text).await?,
    ))
}

/// Name the confirmed cause: `{"kind": "change", "change": ID}` or `{"kind":
/// "not_a_change", "what": "…"}`. Needs `deploy` or `flags`.
#[utoipa::path(
    put,
    path = "/api/v1/incidents/{id}/cause",
    tag = "incidents",
    params(("id" = String, Path)),
    request_body = Cause,
    responses((status = 200, body = Incident), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("bearer" = [])),
    extensions(("x-gantry-scope" = json!("deploy|flags"))),
)]
pub async fn set_cause(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    Json(cause): Json<Cause>,
) -> ApiResult<axum::Json<Incident>> {
    let incident = readable(&state, &caller, &id).await?;
    require_either(&caller, &incident.services, &incident.environments)?;
    // The cause's summary goes on the timeline: the caller must be able to read it.
    if let Cause::Change { change } = &cause {
        if let Some(c) = state.store.get_change(*change).await? {
            caller.require(
                ScopeName::Read,
                c.service.as_deref(),
                c.environment.as_deref(),
            )?;
        }
    }
    Ok(axum::Json(
        incidents::set_cause(&state, caller.name(), incident.id, cause).await?,
    ))
}
