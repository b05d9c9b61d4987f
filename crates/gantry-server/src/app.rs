//! The whole HTTP application: every route, its limits, and the layers around them. Tests
//! drive what [`app`] returns; `serve` only binds it to sockets.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::{DefaultBodyLimit, MatchedPath, Request, State};
use axum::http::StatusCode;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Router};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::OpenApi as OpenApiDoc;
use utoipa::{Modify, OpenApi};
use utoipa_axum::router::OpenApiRouter;

use crate::api;
use crate::api::system::OpenApiJson;
use crate::error::ApiError;
use crate::metrics::{ErrorLabels, RequestLabels};
use crate::state::AppState;

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Gantry",
        description = "Continuous-deployment machinery: the change log, services, tokens and Graphite-compatible events."
    ),
    modifiers(&SecuritySchemes),
    tags(
        (name = "agent", description = "What host agents call: the heartbeat long poll and task reports"),
        (name = "builds", description = "Builds and their artifacts, made once and promoted unchanged"),
        (name = "changes", description = "The change log: every event that changed production"),
        (name = "flags", description = "Feature flags, kill switches, segments and scheduled flips"),
        (name = "flag-sdks", description = "What flag SDKs call: Unleash's client and frontend APIs, OFREP, the flag stream"),
        (name = "hosts", description = "Hosts running gantry agent: enrollment, health, maintenance"),
        (name = "rollouts", description = "Deploys, rollbacks and promotes in waves with health gates"),
        (name = "graphite", description = "Graphite-compatible reads (render, find, tags) and events, for Grafana"),
        (name = "metrics", description = "Stored metric series"),
        (name = "monitors", description = "Monitors as files, their states, heartbeat pings"),
        (name = "incidents", description = "Incidents: suspects, clocks, timeline, remedies"),
        (name = "migrate", description = "What migration runners ask: the contract gate, and recording a phase as a change"),
        (name = "services", description = "Services and their environment pipelines"),
        (name = "tokens", description = "API tokens and their scopes"),
        (name = "system", description = "Health, status, metrics and this document"),
    )
)]
struct ApiDoc;

struct SecuritySchemes;

impl Modify for SecuritySchemes {
    fn modify(&self, openapi: &mut OpenApiDoc) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
        components.add_security_scheme(
            "sdk",
            SecurityScheme::ApiKey(utoipa::openapi::security::ApiKey::Header(
                utoipa::openapi::security::ApiKeyValue::new("Authorization"),
            )),
        );
        components.add_security_scheme(
            "basic",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Basic).build()),
        );
    }
}

/// Every route with its OpenAPI description. Routes are only ever added here, through
/// `utoipa_axum`, so the document cannot miss one (a test checks the other direction).
pub fn routes(state: &AppState) -> (Router<AppState>, OpenApiDoc) {
    let timeout = Duration::from_secs(state.config.request_timeout_secs);
    let max_body = state.config.max_body_bytes;
    let short = OpenApiRouter::with_openapi(ApiDoc::openapi())
        .merge(api::changes::router())
        .merge(api::events::router())
        .merge(api::graphite::router())
        .merge(api::metrics_admin::router())
        .merge(api::services::router())
        .merge(api::tokens::router())
        .merge(api::system::router())
        .merge(api::builds::router())
        .merge(api::hosts::router())
        .merge(api::agent::router())
        .merge(api::rollouts::router())
        .merge(api::flags::router())
        .merge(api::unleash::router())
        .merge(api::migrate::router())
        .merge(api::incidents::router())
        .merge(api::report::router())
        .merge(api::monitors::router())
        .merge(api::verdicts::router())
        .merge(api::alerts::router())
        .layer(middleware::from_fn(move |req, next| {
            with_timeout(timeout, req, next)
        }))
        .layer(DefaultBodyLimit::max(state.config.max_body_bytes))
        .layer(middleware::from_fn(move |req, next| {
            refuse_oversized(max_body, req, next)
        }));
    // Streams live as long as the client wants; only shutdown ends them.
    let long = api::changes::stream_router()
        .merge(api::rollouts::stream_router())
        .merge(api::unleash::stream_router())
        .merge(api::migrate::stream_router())
        .layer(DefaultBodyLimit::max(1024));
    // Agents' long polls end themselves within a heartbeat interval.
    let poll = api::agent::poll_router().layer(DefaultBodyLimit::max(max_body));
    // Artifacts: as large as [ship] max_artifact_bytes (checked while streaming), as long
    // as the transfer takes.
    let transfer = api::builds::transfer_router().layer(DefaultBodyLimit::disable());
    // Pings carry a run's log, up to 10 KiB (larger ones are refused with a clear 413).
    let pings = api::monitors::ping_router()
        .layer(middleware::from_fn(move |req, next| {
            with_timeout(timeout, req, next)
        }))
        .layer(DefaultBodyLimit::max(64 * 1024));
    // Migration jobs carry a database's scripts.
    let jobs = api::migrate::jobs_router()
        .layer(middleware::from_fn(move |req, next| {
            with_timeout(timeout, req, next)
        }))
        .layer(DefaultBodyLimit::max(
            api::migrate::MAX_JOB_BODY_BYTES.max(max_body),
        ))
        .layer(middleware::from_fn(move |req, next| {
            refuse_oversized(api::migrate::MAX_JOB_BODY_BYTES.max(max_body), req, next)
        }));
    // Metrics compaction: as long as the store's size makes it.
    let maintenance = api::metrics_admin::maintenance_router().layer(DefaultBodyLimit::max(1024));
    let (router, mut doc) = short
        .merge(long)
        .merge(poll)
        .merge(transfer)
        .merge(jobs)
        .merge(pings)
        .merge(maintenance)
        .split_for_parts();
    CommonResponses.modify(&mut doc);
    (router, doc)
}

/// The error answers many operations share, added to each operation's `responses` where its
/// own attribute does not list them (docs/api.md's error table):
/// - an operation with a security requirement: `401` (no or no valid token), `403` (the token
///   lacks the scope), `429` (too many refused credentials from the address) and `503` (the
///   database is unavailable, or the request timed out);
/// - an operation with parameters or a body: `400` (a malformed or unknown parameter, a rule
///   broken);
/// - an operation with a path parameter: `404` (nothing by that name or id);
/// - an operation with a JSON body: `413` (over `max_body_bytes`) and `415` (not sent as
///   `application/json`).
///
/// Each added answer has the operation's own error body (its `400`'s, so OFREP keeps its
/// shape), or [`crate::error::ErrorBody`].
struct CommonResponses;

impl Modify for CommonResponses {
    fn modify(&self, openapi: &mut OpenApiDoc) {
        for item in openapi.paths.paths.values_mut() {
            let operations = [
                &mut item.get,
                &mut item.put,
                &mut item.post,
                &mut item.delete,
                &mut item.options,
                &mut item.head,
                &mut item.patch,
                &mut item.trace,
            ];
            for operation in operations.into_iter().flatten() {
                add_common_responses(operation);
            }
        }
    }
}

fn add_common_responses(operation: &mut utoipa::openapi::path::Operation) {
    use utoipa::openapi::path::ParameterIn;
    use utoipa::openapi::{ContentBuilder, Ref, RefOr, ResponseBuilder};

    let secured = operation
        .security
        .as_ref()
        .is_some_and(|requirements| !requirements.is_empty());
    let parameters = operation.parameters.as_deref().unwrap_or_default();
    let has_path_parameter = parameters
        .iter()
        .any(|p| p.parameter_in == ParameterIn::Path);
    let json_body = operation
        .request_body
        .as_ref()
        .is_some_and(|body| body.content.keys().any(|media| media.contains("json")));
    let takes_input = !parameters.is_empty() || operation.request_body.is_some();

    let mut wanted: Vec<(&str, &str)> = Vec::new();
    if takes_input {
        wanted.push((
            "400",
            "The request is malformed or breaks a rule; the message names what",
        ));
    }
    if secured {
        wanted.push(("401", "No token, or not a valid one"));
        wanted.push((
            "403",
            "The token lacks the scope; the message names the scope needed",
        ));
    }
    if has_path_parameter {
        wanted.push(("404", "Nothing by that name or id"));
    }
    if json_body {
        wanted.push(("413", "The body is larger than this endpoint accepts"));
        wanted.push((
            "415",
            "The body was not sent as Content-Type: application/json",
        ));
    }
    if secured {
        wanted.push((
            "429",
            "Too many refused credentials from this address; Retry-After says when to try again",
        ));
        wanted.push((
            "503",
            "The database is unavailable, or the request took too long",
        ));
    }

    let responses = &mut operation.responses.responses;
    // The operation's own error shape: the content of its 400, else of any 4xx it lists.
    let own_error = ["400", "401", "403", "404", "409"]
        .iter()
        .find_map(|status| match responses.get(*status) {
            Some(RefOr::T(response)) if !response.content.is_empty() => {
                Some(response.content.clone())
            }
            _ => None,
        });
    for (status, description) in wanted {
        if responses.contains_key(status) {
            continue;
        }
        let mut response = ResponseBuilder::new().description(description);
        match &own_error {
            Some(content) => {
                for (media, body) in content {
                    response = response.content(media.clone(), body.clone());
                }
            }
            None => {
                response = response.content(
                    "application/json",
                    ContentBuilder::new()
                        .schema(Some(Ref::from_schema_name("ErrorBody")))
                        .build(),
                );
            }
        }
        responses.insert(status.to_string(), RefOr::T(response.build()));
    }
}

/// The application, ready to serve.
pub fn app(state: AppState) -> Router {
    let (router, doc) = routes(&state);
    // With the input rules the types alone do not state (crate::openapi_rules).
    let doc_json = crate::openapi_rules::document_json(&doc, state.config.ship.max_artifact_bytes);
    // The dashboard's HTML routes: outside the OpenAPI document, which describes the API.
    #[cfg(feature = "dashboard")]
    let router = router.merge(crate::dashboard::router(&state));
    router
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(Extension(OpenApiJson(Arc::new(doc_json))))
        .layer(tower::util::MapRequestLayer::new(
            crate::limits::stall_body(std::time::Duration::from_secs(
                state.config.limits.body_read_timeout_secs,
            )),
        ))
        .layer(middleware::from_fn_with_state(
            state.clone(),
            crate::auth_failures::limit,
        ))
        .layer(middleware::from_fn_with_state(state.clone(), track))
        .layer(tower_http::catch_panic::CatchPanicLayer::custom(|_| {
            tracing::error!("a request handler panicked");
            ApiError::internal().into_response()
        }))
        // Outside the panic catcher, so even a 500 from a panic carries them.
        .layer(middleware::from_fn_with_state(
            state.clone(),
            security_headers,
        ))
        // Spans name the route pattern, never the path: a ping key or token must not reach
        // a log.
        .layer(
            tower_http::trace::TraceLayer::new_for_http().make_span_with(|request: &Request| {
                let route = request
                    .extensions()
                    .get::<MatchedPath>()
                    .map_or("unmatched", |p| p.as_str());
                tracing::debug_span!("request", method = %request.method(), route = %route)
            }),
        )
        .with_state(state)
}

async fn not_found(request: Request) -> Response {
    #[cfg(feature = "dashboard")]
    if crate::dashboard::wants_html(request.uri().path()) {
        return crate::dashboard::not_found(request).await;
    }
    ApiError::not_found(format!(
        "no route for {} {}",
        request.method(),
        request.uri().path()
    ))
    .into_response()
}

async fn method_not_allowed(request: Request) -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        format!(
            "{} is not allowed on {}",
            request.method(),
            request.uri().path()
        ),
    )
}

/// Bodies up to this size are read to the end before a 413, so the client finishes
/// sending and reads the answer instead of seeing its connection reset mid-upload.
const DRAIN_LIMIT: u64 = 16 * 1024 * 1024;

/// Refuses a body whose declared length is over the limit, with a 413 that says so.
async fn refuse_oversized(limit: usize, request: Request, next: Next) -> Response {
    let declared = request
        .headers()
        .get(axum::http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    match declared {
        Some(length) if length > limit as u64 => {
            if length <= DRAIN_LIMIT {
                let _ = axum::body::to_bytes(request.into_body(), DRAIN_LIMIT as usize).await;
            }
            ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "payload_too_large",
                format!("the request body is {length} bytes, larger than this endpoint accepts ({limit} bytes)"),
            )
            .into_response()
        }
        _ => next.run(request).await,
    }
}

pub(crate) async fn with_timeout(limit: Duration, request: Request, next: Next) -> Response {
    match tokio::time::timeout(limit, next.run(request)).await {
        Ok(response) => response,
        Err(_) => ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "timeout",
            format!(
                "the request took longer than {} s and was abandoned",
                limit.as_secs()
            ),
        )
        .into_response(),
    }
}

/// The Content-Security-Policy of every answer: scripts, styles and connections only from
/// this server, no inline script or style, no framing. The dashboard's pages are built to
/// it (no inline script, no `style` attribute).
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'";

/// Headers every answer carries: `X-Content-Type-Options: nosniff` and the
/// [`CONTENT_SECURITY_POLICY`]; on `/api/…` and the dashboard's pages, `Cache-Control:
/// no-store` (tokens, flags and incidents must not sit in shared caches); under TLS,
/// `Strict-Transport-Security`.
async fn security_headers(State(state): State<AppState>, request: Request, next: Next) -> Response {
    use axum::http::{header, HeaderValue};
    let path = request.uri().path();
    let api = path.starts_with("/api/") || path == "/" || path.starts_with("/ui/");
    let mut response = next.run(request).await;
    let headers = response.headers_mut();
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CONTENT_SECURITY_POLICY),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    if api {
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    if state.config.tls.is_some() {
        headers.insert(
            header::STRICT_TRANSPORT_SECURITY,
            HeaderValue::from_static("max-age=31536000"),
        );
    }
    response
}

/// Counts every request by route pattern and status, and every error by status.
async fn track(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = request.method().to_string();
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_string(), |p| p.as_str().to_string());
    let response = next.run(request).await;
    let labels = RequestLabels {
        method,
        route,
        status: response.status().as_u16(),
    };
    state.metrics.requests.get_or_create(&labels).inc();
    state
        .metrics
        .request_seconds
        .get_or_create(&labels)
        .observe(started.elapsed().as_secs_f64());
    if response.status().is_client_error() || response.status().is_server_error() {
        state
            .metrics
            .errors
            .get_or_create(&ErrorLabels {
                code: response.status().as_u16().to_string(),
            })
            .inc();
    }
    response
}
