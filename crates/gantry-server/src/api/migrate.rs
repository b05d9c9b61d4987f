//! `/api/v1/migrate/…`: what a migration runner asks the server: whether the contract gate
//! is open for a database's services in an environment, and to record a migration phase as
//! a change. The runner connects to the target database itself; the server decides from
//! the deployments it knows.

use axum::extract::State;
use axum::http::StatusCode;
use chrono::{DateTime, Utc};
use gantry_core::migrate::{contract_gate, GateDecision, ServiceDeploys};
use gantry_core::{Change, ChangeKind, ChangeStatus, ScopeName};
use serde::Deserialize;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::auth::Caller;
use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::extract::Json;
use crate::state::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(gate))
        .routes(routes!(record_migration))
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

/// What the gate looks at for each service: the build running in the environment and
/// when it was first deployed there, and whether a rollout is active.
pub async fn service_deploys(
    store: &dyn gantry_store::Store,
    service: &str,
    environment: &str,
) -> Result<ServiceDeploys, gantry_store::StoreError> {
    let newest = store.deployments(service, environment, 1).await?;
    let current = match newest.first() {
        None => None,
        Some(d) => {
            let first = store
                .build_deployments(d.build_id)
                .await?
                .into_iter()
                .filter(|x| x.environment == environment)
                .map(|x| x.at)
                .min()
                .unwrap_or(d.at);
            Some((d.build_id.to_string(), first))
        }
    };
    Ok(ServiceDeploys {
        service: service.to_string(),
        current,
        rollout_active: store.active_rollout(service, environment).await?.is_some(),
    })
}

/// Whether the contract phase may run now, and why (or why not).
#[utoipa::path(
    post,
    path = "/api/v1/migrate/gate",
    tag = "migrate",
    request_body = GateRequest,
    responses((status = 200, body = GateDecision), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody)),
    security(("bearer" = []))
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
    let mut deploys = Vec::with_capacity(request.services.len());
    for service in &request.services {
        gantry_core::names::validate_name("services", service)?;
        caller.require(
            ScopeName::Migrate,
            Some(service),
            Some(&request.environment),
        )?;
        deploys.push(service_deploys(state.store.as_ref(), service, &request.environment).await?);
    }
    Ok(axum::Json(contract_gate(
        &deploys,
        request.expanded_at,
        std::time::Duration::from_secs(state.config.migrate.contract_bake_secs),
        Utc::now(),
    )))
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
    security(("bearer" = []))
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
