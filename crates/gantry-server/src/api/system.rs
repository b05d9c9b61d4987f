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
#[utoipa::path(get, path = "/healthz", tag = "system", responses((status = 200, body = Health)), extensions(("x-gantry-scope" = json!("public"))))]
pub async fn healthz() -> axum::Json<Health> {
    axum::Json(Health { status: "ok" })
}

/// The store answers. Public; 503 when it does not.
#[utoipa::path(
    get,
    path = "/readyz",
    tag = "system",
    responses((status = 200, body = Health), (status = 503, body = ErrorBody)),
    extensions(("x-gantry-scope" = json!("public"))),
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
    responses((status = 200, description = "OpenAPI 3.1 document", content_type = "application/json")),
    extensions(("x-gantry-scope" = json!("public"))),
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
    ),
    extensions(("x-gantry-scope" = json!("loopback|read"))),
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
    let mut text = state.metrics.render();
    text.truncate(text.trim_end_matches("# EOF\n").len());
    let ingest = &state.ingest;
    let tsdb = state.tsdb.stats();
    let load = |c: &std::sync::atomic::AtomicU64| c.load(std::sync::atomic::Ordering::Relaxed);
    for (name, help, value) in [
        (
            "gantry_statsd_datagrams",
            "StatsD datagrams (and TCP reads) received",
            load(&ingest.statsd_datagrams),
        ),
        (
            "gantry_statsd_bad_lines",
            "StatsD values refused",
            load(&ingest.statsd_bad_lines),
        ),
        (
            "gantry_graphite_points",
            "Graphite points received (plaintext and pickle)",
            load(&ingest.graphite_points),
        ),
        (
            "gantry_graphite_bad_lines",
            "Graphite lines or pickle entries refused",
            load(&ingest.graphite_bad_lines),
        ),
        (
            "gantry_pickle_connections_refused",
            "Pickle connections closed for a bad or forbidden pickle",
            load(&ingest.pickle_refused),
        ),
        (
            "gantry_tsdb_points_written",
            "Points written to the metrics store",
            load(&tsdb.points_written),
        ),
        (
            "gantry_tsdb_points_out_of_range",
            "Points older than every archive keeps, or in the future",
            load(&tsdb.points_out_of_range),
        ),
        (
            "gantry_tsdb_series_rejected",
            "Points refused by the series cardinality caps",
            load(&tsdb.series_rejected),
        ),
        (
            "gantry_tsdb_series_created",
            "Series created",
            load(&tsdb.series_created),
        ),
        (
            "gantry_tsdb_blocks_corrupt",
            "Metric blocks that could not be read and were skipped",
            load(&tsdb.blocks_corrupt),
        ),
    ] {
        text.push_str(&format!(
            "# HELP {name} {help}.\n# TYPE {name} counter\n{name}_total {value}\n"
        ));
    }
    let store = state.tsdb.memory();
    text.push_str(&format!(
        "# HELP gantry_tsdb_series Series in the metrics store.\n# TYPE gantry_tsdb_series gauge\n\
         gantry_tsdb_series {}\n\
         # HELP gantry_tsdb_memory_bytes Heap bytes of the metrics store's per-series state, by part.\n\
         # TYPE gantry_tsdb_memory_bytes gauge\n",
        store.series
    ));
    for (part, bytes) in [
        ("index", store.index),
        ("rollup", store.rollup),
        ("queue", store.queue),
    ] {
        text.push_str(&format!(
            "gantry_tsdb_memory_bytes{{part=\"{part}\"}} {bytes}\n"
        ));
    }
    if let Some(memory) = crate::metrics::allocator_stats() {
        for (name, help, value) in [
            (
                "gantry_memory_allocated_bytes",
                "Heap bytes in live allocations",
                memory.allocated,
            ),
            (
                "gantry_memory_active_bytes",
                "Heap bytes in pages in use, fragmentation included",
                memory.active,
            ),
            (
                "gantry_memory_resident_bytes",
                "Heap bytes resident, free pages not yet returned included",
                memory.resident,
            ),
            (
                "gantry_memory_metadata_bytes",
                "Heap bytes of the allocator's own metadata",
                memory.metadata,
            ),
        ] {
            text.push_str(&format!(
                "# HELP {name} {help}.\n# TYPE {name} gauge\n{name} {value}\n"
            ));
        }
    }
    text.push_str("# EOF\n");
    Ok((
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        text,
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
    security(("bearer" = [])),
    extensions(("x-gantry-scope" = json!("read"))),
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
    if let Some(bound) = state.listeners.get() {
        for (protocol, addr) in [
            ("statsd", bound.statsd),
            ("graphite", bound.graphite),
            ("pickle", bound.pickle),
        ] {
            if let Some(addr) = addr {
                listeners.insert(protocol.to_string(), addr.to_string());
            }
        }
    }
    Ok(axum::Json(Status {
        version: env!("CARGO_PKG_VERSION"),
        store: state.store.backend().as_str(),
        schema_version: state.store.schema_status().current,
        started_at: state.started_at,
        listeners,
    }))
}
