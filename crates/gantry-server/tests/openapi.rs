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
    for path in ["/api", "/api/v1", "/api/v1/change", "/events", "/admin"] {
        let request = Request::builder().uri(path).body(Body::empty()).unwrap();
        let response = router.clone().oneshot(request).await.unwrap();
        assert_eq!(response.status(), StatusCode::NOT_FOUND, "{path}");
        let kind = response.headers()["content-type"]
            .to_str()
            .unwrap()
            .to_string();
        assert!(kind.starts_with("application/json"), "{path}: {kind}");
    }
    // Unknown dashboard paths get an HTML page, API paths keep the JSON 404.
    for path in ["/ui/nope", "/ui/services/x/nope/deeper", "/assets/nope.js"] {
        let request = Request::builder().uri(path).body(Body::empty()).unwrap();
        let response = router.clone().oneshot(request).await.unwrap();
        assert_eq!(response.status(), StatusCode::NOT_FOUND, "{path}");
        let kind = response.headers()["content-type"]
            .to_str()
            .unwrap()
            .to_string();
        assert!(kind.starts_with("text/html"), "{path}: {kind}");
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

/// The dashboard's source: the one place plain axum routes may be added (HTML pages, not
/// the API), and only under `/`, `/ui/` and `/assets/`.
fn dashboard_dir() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src/dashboard")
}

/// Routes are added only through `utoipa_axum`'s `routes!`, which documents them; a plain
/// axum `.route(...)` would serve an undocumented path. The dashboard's HTML routes are the
/// one exception, under `/`, `/ui/` and `/assets/` only.
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
        let in_dashboard = path.starts_with(dashboard_dir());
        for (n, line) in text.lines().enumerate() {
            let code = line.trim_start();
            if code.starts_with("//") {
                continue;
            }
            if in_dashboard {
                if let Some(rest) = code.split(".route(\"").nth(1) {
                    let route = rest.split('"').next().unwrap_or_default();
                    if !(route == "/" || route.starts_with("/ui/") || route.starts_with("/assets/"))
                    {
                        offenders.push(format!("{}:{}: {}", path.display(), n + 1, code));
                    }
                }
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

/// The dashboard never writes to the store itself: it calls the functions the API calls
/// (`ship::rollouts`, `ship::hosts`, `api::tokens`). Its only writes are its own sessions.
#[test]
fn the_dashboard_only_reads_the_store() {
    let reads = [
        "get_",
        "list_",
        "find_",
        "deployments(",
        "build_deployments(",
        "regressions_of(",
        "rollout_tasks(",
        "last_event_seq(",
        "events_after(",
        "host_tasks(",
    ];
    let sessions = [
        "create_session(",
        "touch_session(",
        "delete_session(",
        "delete_token_sessions(",
    ];
    let mut offenders = Vec::new();
    for entry in std::fs::read_dir(dashboard_dir()).unwrap() {
        let path = entry.unwrap().path();
        let text = std::fs::read_to_string(&path).unwrap();
        // Calls may wrap: join the file and look at what follows each `.store`.
        let flat: String = text.split_whitespace().collect::<Vec<_>>().join("");
        for (i, _) in flat.match_indices(".store.") {
            let call = &flat[i + ".store.".len()..];
            let call: String = call.chars().take_while(|c| *c != ')').collect();
            let allowed = reads
                .iter()
                .chain(sessions.iter())
                .any(|r| call.starts_with(r));
            if !allowed {
                offenders.push(format!("{}: store.{call})", path.display()));
            }
        }
    }
    assert!(
        offenders.is_empty(),
        "the dashboard writes to the store:\n{}",
        offenders.join("\n")
    );
}

/// What an `x-gantry-scope` value may say: a scope name, several joined by `|` (any one of
/// them will do), or one of the credentials that are not scopes.
const SCOPE_WORDS: &[&str] = &[
    "public", "token", "ping-key", "loopback", "read", "write", "deploy", "flags", "migrate",
    "admin", "agent", "client", "frontend",
];

/// Every operation of the OpenAPI document, as `(METHOD, path, x-gantry-scope)`.
async fn operation_scopes() -> Vec<(String, String, Option<String>)> {
    let (state, _dir) = state().await;
    let (_, doc) = gantry_server::app::routes(&state);
    let doc = serde_json::to_value(&doc).unwrap();
    let mut operations = Vec::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, operation) in item.as_object().unwrap() {
            if !["get", "post", "put", "patch", "delete", "options", "head"]
                .contains(&method.as_str())
            {
                continue;
            }
            let scope = operation["x-gantry-scope"].as_str().map(str::to_string);
            operations.push((method.to_uppercase(), path.clone(), scope));
        }
    }
    operations.sort();
    operations
}

/// Every operation says which scope it needs (`x-gantry-scope`), in words the table of
/// docs/api.md uses, and that table lists exactly the document's operations with exactly
/// those scopes. The rules themselves are held by `tests/scopes.rs`, which calls every
/// operation with tokens that lack them.
#[tokio::test]
async fn every_operation_names_its_scope_as_docs_api_md_does() {
    let operations = operation_scopes().await;
    let mut problems = Vec::new();
    for (method, path, scope) in &operations {
        match scope {
            None => problems.push(format!("{method} {path} has no x-gantry-scope")),
            Some(scope) => {
                for word in scope.split('|') {
                    if !SCOPE_WORDS.contains(&word) {
                        problems.push(format!(
                            "{method} {path}: unknown scope word '{word}' in '{scope}'"
                        ));
                    }
                }
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));

    let doc = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/api.md"),
    )
    .unwrap();
    let section = doc
        .split("### Scope of each operation")
        .nth(1)
        .expect("docs/api.md has a section '### Scope of each operation'");
    let mut documented: Vec<(String, String, Option<String>)> = section
        .lines()
        .skip_while(|line| !line.starts_with("| `"))
        .take_while(|line| line.starts_with("| `"))
        .filter_map(|line| {
            // | `METHOD /path` | `scope` |  (a scope may itself hold `|`)
            let (operation, scope) = line.strip_prefix("| `")?.split_once("` | `")?;
            let scope = scope.strip_suffix("` |")?;
            let (method, path) = operation.split_once(' ')?;
            Some((
                method.to_string(),
                path.to_string(),
                Some(scope.to_string()),
            ))
        })
        .collect();
    documented.sort();
    if documented != operations {
        let table: Vec<String> = operations
            .iter()
            .map(|(method, path, scope)| {
                format!(
                    "| `{method} {path}` | `{}` |",
                    scope.as_deref().unwrap_or("?")
                )
            })
            .collect();
        panic!(
            "the table under '### Scope of each operation' in docs/api.md differs from the OpenAPI document; it should read:\n\n| operation | x-gantry-scope |\n|---|---|\n{}\n",
            table.join("\n")
        );
    }
}
