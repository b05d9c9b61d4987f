//! The OpenAPI document and the router agree: every documented operation is served, and
//! routes can only be added in a way that documents them (checked by source, below).

use std::sync::Arc;

use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use gantry_server::{app, AppState, ServerConfig};
use tower::ServiceExt;

async fn state() -> (AppState, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let store = gantry_store::SqliteStore::open(&dir.path().join("gantry.db"), Default::default())
        .await
        .unwrap();
    let tsdb = gantry_tsdb::Tsdb::open(&dir.path().join("metrics"), Default::default()).unwrap();
    (
        AppState::new(Arc::new(store), tsdb, ServerConfig::default()),
        dir,
    )
}

#[tokio::test]
async fn every_documented_operation_is_served() {
    let (state, _dir) = state().await;
    let (_, doc) = gantry_server::app::routes(&state);
    let doc = serde_json::to_value(&doc).unwrap();
    let router = app(state);
    let paths = doc["paths"].as_object().unwrap();
    assert!(paths.len() >= 15, "{paths:?}");
    let mut operations = 0;
    for (path, item) in paths {
        assert!(path.starts_with('/'), "full paths as keys: {path}");
        for method in ["get", "post", "patch", "put", "delete"] {
            if item.get(method).is_none() {
                continue;
            }
            operations += 1;
            let concrete = path
                .replace("{id}", "01JDQ4Y3V7W2J8X1B2C3D4E5F6")
                .replace("{name}", "x");
            let request = Request::builder()
                .method(Method::from_bytes(method.to_uppercase().as_bytes()).unwrap())
                .uri(&concrete)
                .body(Body::empty())
                .unwrap();
            let response = router.clone().oneshot(request).await.unwrap();
            let status = response.status();
            let body = axum::body::to_bytes(response.into_body(), 1 << 20)
                .await
                .unwrap();
            let text = String::from_utf8_lossy(&body);
            assert_ne!(
                status,
                StatusCode::METHOD_NOT_ALLOWED,
                "{method} {path} is documented but not served"
            );
            assert!(
                !text.contains("no route for"),
                "{method} {path} is documented but not served: {text}"
            );
        }
    }
    assert!(operations >= 20, "{operations}");
    // The change log's paths are documented under their full names.
    for path in [
        "/api/v1/changes",
        "/api/v1/changes/{id}",
        "/api/v1/changes/stream",
        "/events/get_data",
        "/events/",
    ] {
        assert!(paths.contains_key(path), "{path}");
    }
}

#[tokio::test]
async fn undocumented_paths_are_not_served() {
    let (state, _dir) = state().await;
    let router = app(state);
    for path in [
        "/",
        "/api",
        "/api/v1",
        "/api/v1/change",
        "/events",
        "/admin",
    ] {
        let request = Request::builder().uri(path).body(Body::empty()).unwrap();
        let response = router.clone().oneshot(request).await.unwrap();
        assert_eq!(response.status(), StatusCode::NOT_FOUND, "{path}");
    }
}

/// Gantry's own metrics are public to loopback clients only; a request that does not come
/// from loopback (here: no peer address at all) needs a token.
#[tokio::test]
async fn metrics_need_a_token_off_loopback() {
    let (state, _dir) = state().await;
    let router = app(state);
    let request = Request::builder()
        .uri("/metrics")
        .body(Body::empty())
        .unwrap();
    let response = router.clone().oneshot(request).await.unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    let remote: std::net::SocketAddr = "192.0.2.7:40000".parse().unwrap();
    let mut request = Request::builder()
        .uri("/metrics")
        .body(Body::empty())
        .unwrap();
    request
        .extensions_mut()
        .insert(axum::extract::ConnectInfo(remote));
    assert_eq!(
        router.clone().oneshot(request).await.unwrap().status(),
        StatusCode::UNAUTHORIZED
    );
    let local: std::net::SocketAddr = "127.0.0.1:40000".parse().unwrap();
    let mut request = Request::builder()
        .uri("/metrics")
        .body(Body::empty())
        .unwrap();
    request
        .extensions_mut()
        .insert(axum::extract::ConnectInfo(local));
    assert_eq!(
        router.oneshot(request).await.unwrap().status(),
        StatusCode::OK
    );
}

/// Routes are added only through `utoipa_axum`'s `routes!`, which documents them; a plain
/// axum `.route(...)` would serve an undocumented path.
#[test]
fn routes_are_only_added_documented() {
    let src = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = vec![src];
    let mut offenders = Vec::new();
    while let Some(path) = files.pop() {
        if path.is_dir() {
            files.extend(std::fs::read_dir(&path).unwrap().map(|e| e.unwrap().path()));
            continue;
        }
        let text = std::fs::read_to_string(&path).unwrap();
        for (n, line) in text.lines().enumerate() {
            let code = line.trim_start();
            if code.starts_with("//") {
                continue;
            }
            for banned in [".route(", ".route_service(", ".nest(", ".nest_service("] {
                if code.contains(banned) {
                    offenders.push(format!("{}:{}: {}", path.display(), n + 1, code));
                }
            }
        }
    }
    assert!(
        offenders.is_empty(),
        "undocumented routes:\n{}",
        offenders.join("\n")
    );
}
