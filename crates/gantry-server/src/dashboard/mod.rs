//! The web dashboard, served by `gantry server` itself at `/` and under `/ui/…`, with its
//! browser files under `/assets/…`.
//!
//! Pages are HTML rendered here (maud), made live by htmx and Server-Sent Events, graphs
//! drawn by uPlot from `/ui/metrics/data`. Every action is a real form POST first, so
//! reading and acting work with JavaScript off and curl can test them.
//!
//! Invariant: the dashboard calls the same functions as the API (`ship::rollouts`,
//! `ship::hosts`, `api::graphite::evaluate_targets`, the store's reads) and never writes to
//! the store itself; its only writes are its own sessions (a source check in
//! `tests/openapi.rs` holds this). Its routes stay out of the OpenAPI document.

mod assets;
mod changes;
mod flags;
mod hosts;
mod incidents;
mod metrics;
mod migrations;
mod overview;
mod report;
mod rollout;
mod service;
pub mod session;
mod sparkline;
mod streams;
mod tokens;
pub mod view;

use std::time::Duration;

use axum::extract::{DefaultBodyLimit, Request};
use axum::middleware;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;

use crate::state::AppState;

/// Every dashboard route. Not in OpenAPI: these answer HTML to a browser.
pub fn router(state: &AppState) -> Router<AppState> {
    let timeout = Duration::from_secs(state.config.request_timeout_secs);
    let pages = Router::new()
        .route("/", get(overview::page))
        .route("/ui/overview/table", get(overview::table))
        .route(
            "/ui/sign-in",
            get(session::sign_in_page).post(session::sign_in),
        )
        .route("/ui/sign-out", post(session::sign_out))
        .route("/ui/services/{name}", get(service::page))
        .route("/ui/services/{name}/confirm", get(service::confirm))
        .route("/ui/services/{name}/rollouts", post(service::start))
        .route("/ui/rollouts/{id}", get(rollout::page))
        .route("/ui/rollouts/{id}/{action}", post(rollout::control))
        .route("/ui/changes", get(changes::page))
        .route("/ui/changes/{id}", get(changes::show))
        .route("/ui/hosts", get(hosts::page))
        .route("/ui/hosts/{name}/maintenance", post(hosts::maintenance))
        .route("/ui/metrics", get(metrics::page))
        .route("/ui/metrics/data", get(metrics::data))
        .route("/ui/flags", get(flags::page))
        .route("/ui/flags/table", get(flags::table_fragment))
        .route("/ui/flags/{service}/{name}", get(flags::show))
        .route(
            "/ui/flags/{service}/{name}/environments/{env}/{action}",
            post(flags::switch),
        )
        .route("/ui/migrations", get(migrations::page))
        .route("/ui/migrations/table", get(migrations::table_fragment))
        .route("/ui/migrations/{id}", get(migrations::show))
        .route("/ui/migrations/{id}/live", get(migrations::live_fragment))
        .route("/ui/migrations/{id}/{action}", post(migrations::control))
        .route("/ui/tokens", get(tokens::page).post(tokens::create))
        .route("/ui/tokens/{name}/revoke", post(tokens::revoke))
        .route("/ui/sessions/end", post(tokens::end_sessions))
        .route("/ui/incidents", get(incidents::page))
        .route("/ui/incidents/{id}", get(incidents::show))
        .route("/ui/incidents/{id}/notes", post(incidents::note))
        .route("/ui/incidents/{id}/{action}", post(incidents::act))
        .route("/ui/monitors", get(incidents::monitors))
        .route("/ui/report", get(report::page))
        .layer(middleware::from_fn(move |req, next| {
            crate::app::with_timeout(timeout, req, next)
        }))
        .layer(DefaultBodyLimit::max(64 * 1024));
    // Streams live as long as the tab; only shutdown, sign-out or revocation ends them.
    let streams = Router::new()
        .route("/ui/stream/changes", get(streams::changes))
        .route("/ui/stream/rollouts/{id}", get(streams::rollout))
        .layer(DefaultBodyLimit::max(1024));
    let files = Router::new().route("/assets/{file}", get(assets::serve));
    pages
        .merge(streams)
        .merge(files)
        .layer(middleware::map_request(host_from_authority))
}

/// HTTP/2 carries the host as the URI's authority, not a `Host` header: copy it there, so
/// the same-origin check of every POST sees it either way.
async fn host_from_authority(mut request: Request) -> Request {
    use axum::http::{header, HeaderValue};
    if !request.headers().contains_key(header::HOST) {
        let authority = request.uri().authority().map(|a| a.as_str().to_string());
        if let Some(value) = authority.and_then(|a| HeaderValue::from_str(&a).ok()) {
            request.headers_mut().insert(header::HOST, value);
        }
    }
    request
}

/// The HTML 404 for unknown dashboard paths (`/ui/…`, `/assets/…`); API paths keep JSON.
pub fn wants_html(path: &str) -> bool {
    path.starts_with("/ui/") || path == "/ui" || path.starts_with("/assets/")
}

pub async fn not_found(request: Request) -> Response {
    view::UiError::not_found(format!(
        "there is no page at {}; the overview lists every service",
        request.uri().path()
    ))
    .into_response()
}
