//! Liveness, readiness, status, the OpenAPI document and Gantry's own metrics.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::{ConnectInfo, FromRequestParts, Request, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Extension;
use chrono::{DateTime, Utc};
use gantry_core::ScopeName;
use serde::Serialize;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::auth::Caller;
use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::state::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(healthz))
        .routes(routes!(readyz))
        .routes(routes!(openapi_json))
        .routes(routes!(metrics))
        .routes(routes!(status))
}

/// The OpenAPI document, rendered once when the router is built.
#[derive(Clone)]
pub struct OpenApiJson(pub Arc<String>);

#[derive(Debug, Serialize, ToSchema)]
pub struct Health {
    pub status: &'static str,
}

/// The process is alive. Public.
#[utoipa::path(get, path = "/healthz", tag = "system", responses((status = 200, body = Health)))]
pub async fn healthz() -> axum::Json<Health> {
    axum::Json(Health { status: "ok" })
}

/// The store answers. Public; 503 when it does not.
#[utoipa::path(
    get,
    path = "/readyz",
    tag = "system",
    responses((status = 200, body = Health), (status = 503, body = ErrorBody))
)]
pub async fn readyz(State(state): State<AppState>) -> ApiResult<axum::Json<Health>> {
    if state.shutdown.is_cancelled() {
        return Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            "the server is shutting down",
        ));
    }
    match state.metrics.time_store("ping", state.store.ping()).await {
        Ok(()) => Ok(axum::Json(Health { status: "ready" })),
        Err(e) => {
            tracing::warn!(error = %e, "readiness check failed");
            Err(ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "unavailable",
                "the store is not reachable",
            ))
        }
    }
}

/// This API's OpenAPI 3 document. Public.
#[utoipa::path(
    get,
    path = "/api/v1/openapi.json",
    tag = "system",
    responses((status = 200, description = "OpenAPI 3.1 document", content_type = "application/json"))
)]
pub async fn openapi_json(Extension(doc): Extension<OpenApiJson>) -> Response {
    (
        [(header::CONTENT_TYPE, "application/json")],
        doc.0.as_str().to_owned(),
    )
        .into_response()
}

/// Gantry's own counters in Prometheus text format. Public to loopback clients; others
/// need a `read` token unless `metrics_public` is set.
#[utoipa::path(
    get,
    path = "/metrics",
    tag = "system",
    responses(
        (status = 200, description = "Prometheus text exposition", content_type = "text/plain"),
        (status = 401, body = ErrorBody),
    )
)]
pub async fn metrics(State(state): State<AppState>, request: Request) -> ApiResult<Response> {
    let loopback = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .is_some_and(|ConnectInfo(addr)| addr.ip().is_loopback());
    if !loopback && !state.config.metrics_public {
        let (mut parts, _) = request.into_parts();
        let caller = Caller::from_request_parts(&mut parts, &state).await?;
        caller.require_somewhere(ScopeName::Read)?;
    }
    Ok((
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        state.metrics.render(),
    )
        .into_response())
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Status {
    pub version: &'static str,
    /// `sqlite` or `postgres`.
    pub store: &'static str,
    pub schema_version: i64,
    pub started_at: DateTime<Utc>,
    /// Bound listener addresses by protocol (`http` or `https`, `statsd`, `graphite`, `pickle`).
    pub listeners: std::collections::BTreeMap<String, String>,
}

/// What this server is: version, store, schema, listeners.
#[utoipa::path(
    get,
    path = "/api/v1/status",
    tag = "system",
    responses((status = 200, body = Status), (status = 401, body = ErrorBody)),
    security(("bearer" = []))
)]
pub async fn status(
    State(state): State<AppState>,
    caller: Caller,
) -> ApiResult<axum::Json<Status>> {
    caller.require_somewhere(ScopeName::Read)?;
    let mut listeners = std::collections::BTreeMap::new();
    if let Some(addr) = state.http_addr.get() {
        let scheme = if state.config.tls.is_some() {
            "https"
        } else {
            "http"
        };
        listeners.insert(scheme.to_string(), addr.to_string());
    }
    Ok(axum::Json(Status {
        version: env!("CARGO_PKG_VERSION"),
        store: state.store.backend().as_str(),
        schema_version: state.store.schema_status().current,
        started_at: state.started_at,
        listeners,
    }))
}
