//! Every operation of the OpenAPI document, called with tokens that should not get through:
//! one that lacks the scope its `x-gantry-scope` names, and ones that hold it only for
//! another service or another environment. Each is refused (403, or the 404 the API gives for
//! what a token may not see), and nothing changes: the admin's reads before and after
//! compare equal. Lists and streams answered to a token of another service hold nothing of
//! this one.

mod common;

use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use serde_json::{json, Value};

/// The scope names a user token may hold, besides `admin`.
const USER_SCOPES: &[&str] = &["read", "write", "deploy", "flags", "migrate"];

/// Operations this test cannot call with a real target, and why. Each must exist.
const NOT_CALLED: &[(&str, &str)] = &[
    (
        "POST /api/v1/migrate/jobs",
        "needs a database in [migrate.databases]; tests/it/migrate_jobs.rs covers its scopes",
    ),
    (
        "GET /api/v1/migrate/jobs/{id}",
        "no job exists without a configured database",
    ),
    (
        "GET /api/v1/migrate/jobs/{id}/log",
        "no job exists without a configured database",
    ),
    (
        "POST /api/v1/migrate/jobs/{id}/{action}",
        "no job exists without a configured database",
    ),
    (
        "POST /api/v1/migrate/jobs/{id}/retry",
        "no job exists without a configured database",
    ),
];

struct Fixture {
    env: common::Env,
    admin: String,
    ids: std::collections::HashMap<&'static str, String>,
}

impl Fixture {
    async fn call(
        &self,
        method: &str,
        path: &str,
        token: &str,
        body: Option<(&str, String)>,
    ) -> (StatusCode, String) {
        let mut request = Request::builder()
            .method(method)
            .uri(path)
            .header(header::AUTHORIZATION, format!("Bearer {token}"));
        let body = match body {
            Some((kind, text)) => {
                request = request.header(header::CONTENT_TYPE, kind);
                Body::from(text)
            }
            None => Body::empty(),
        };
        let response = self
            .env
            .router
            .clone()
            .oneshot(request.body(body).unwrap())
            .await
            .unwrap();
        let status = response.status();
        let streaming = response
            .headers()
            .get(header::CONTENT_TYPE)
            .is_some_and(|v| v.as_bytes().starts_with(b"text/event-stream"));
        if streaming {
            // A stream never ends by itself: its first event (if one comes at once) is enough.
            let mut body = response.into_body().into_data_stream();
            let first = tokio::time::timeout(
                std::time::Duration::from_millis(300),
                futures::StreamExt::next(&mut body),
            )
            .await;
            let text = match first {
                Ok(Some(Ok(bytes))) => String::from_utf8_lossy(&bytes).into_owned(),
                _ => String::new(),
            };
            return (status, text);
        }
        let bytes = axum::body::to_bytes(response.into_body(), 16 << 20)
            .await
            .unwrap();
        (status, String::from_utf8_lossy(&bytes).into_owned())
    }

    async fn admin(&self, method: &str, path: &str, body: Option<(&str, String)>) -> Value {
        let (status, text) = self.call(method, path, &self.admin, body).await;
        assert!(
            status.is_success(),
            "{method} {path} as admin: {status} {text}"
        );
        serde_json::from_str(&text).unwrap_or(Value::Null)
    }

    /// What the admin reads of everything the operations could change.
    async fn snapshot(&self) -> Vec<(String, Value)> {
        let mut reads = Vec::new();
        for path in [
            "/api/v1/changes?limit=1000",
            "/api/v1/services",
            "/api/v1/environments",
            "/api/v1/flags",
            "/api/v1/flags/shop/checkout",
            "/api/v1/flags/shop/checkout/schedules",
            "/api/v1/services/shop/segments",
            "/api/v1/services/shop/deploy-config",
            "/api/v1/hosts",
            "/api/v1/tokens",
            "/api/v1/builds",
            "/api/v1/rollouts",
            "/api/v1/incidents",
            "/api/v1/silences?all=true",
            "/api/v1/monitors",
            "/api/v1/metrics",
        ] {
            let (status, text) = self.call("GET", path, &self.admin, None).await;
            assert!(status.is_success(), "GET {path} as admin: {status} {text}");
            let mut value: Value = serde_json::from_str(&text).unwrap_or(Value::String(text));
            forget_reads(&mut value);
            reads.push((path.to_string(), value));
        }
        reads
    }
}

/// Leaves out what a read itself moves (a token's last use).
fn forget_reads(value: &mut Value) {
    match value {
        Value::Object(map) => {
            map.remove("last_used_at");
            map.values_mut().for_each(forget_reads);
        }
        Value::Array(items) => items.iter_mut().for_each(forget_reads),
        _ => {}
    }
}

fn json_body(value: Value) -> Option<(&'static str, String)> {
    Some(("application/json", value.to_string()))
}

async fn fixture() -> Fixture {
    let env = common::env().await;
    let admin = env.token("root", "admin").await;
    let mut f = Fixture {
        env,
        admin,
        ids: Default::default(),
    };
    f.admin(
        "POST",
        "/api/v1/services",
        json_body(json!({"name": "shop", "environments": ["dev", "prod"]})),
    )
    .await;
    f.admin(
        "POST",
        "/api/v1/services",
        json_body(json!({"name": "other", "environments": ["dev", "prod"]})),
    )
    .await;
    let change = f.admin("POST", "/api/v1/changes", json_body(json!({"kind": "note", "summary": "shop note", "service": "shop", "environment": "prod"}))).await;
    f.ids
        .insert("change", change["id"].as_str().unwrap().to_string());
    f.admin(
        "POST",
        "/api/v1/flags",
        json_body(json!({"name": "checkout", "service": "shop"})),
    )
    .await;
    f.admin(
        "POST",
        "/api/v1/services/shop/segments",
        json_body(json!({"name": "beta", "constraints": []})),
    )
    .await;
    let schedule = f
        .admin(
            "POST",
            "/api/v1/flags/shop/checkout/schedules",
            json_body(
                json!({"action": "enable", "at": "2030-01-01T00:00:00Z", "environment": "prod"}),
            ),
        )
        .await;
    f.ids.insert(
        "schedule",
        schedule["id"]
            .as_str()
            .map_or_else(|| schedule["id"].to_string(), str::to_string),
    );
    f.admin(
        "POST",
        "/api/v1/hosts",
        json_body(json!({"name": "web1", "environment": "prod"})),
    )
    .await;
    f.admin(
        "PUT",
        "/api/v1/services/shop/deploy-config",
        Some(("application/toml", "name = \"shop\"\n".to_string())),
    )
    .await;
    f.env
        .state
        .store
        .host_seen(
            "web1",
            &gantry_core::ship::HostFacts {
                os: "linux".into(),
                arch: "x86_64".into(),
                agent_version: "0.1.0".into(),
                roles: Vec::new(),
            },
            &std::collections::BTreeMap::<String, gantry_core::ship::HostRelease>::new(),
            chrono::Utc::now(),
        )
        .await
        .unwrap();
    let build = f
        .admin(
            "POST",
            "/api/v1/builds?service=shop&version=1.0.0",
            Some(("application/octet-stream", "an artifact".to_string())),
        )
        .await;
    f.ids
        .insert("build", build["id"].as_str().unwrap().to_string());
    let rollout = f
        .admin(
            "POST",
            "/api/v1/rollouts",
            json_body(json!({"service": "shop", "environment": "prod", "build": "1.0.0"})),
        )
        .await;
    f.ids
        .insert("rollout", rollout["id"].as_str().unwrap().to_string());
    let incident = f
        .admin(
            "POST",
            "/api/v1/incidents",
            json_body(json!({"title": "checkout down", "service": "shop", "environment": "prod"})),
        )
        .await;
    f.ids.insert(
        "incident",
        incident["id"].to_string().trim_matches('"').to_string(),
    );
    let silence = f.admin("POST", "/api/v1/silences", json_body(json!({"matcher": {"service": {"service": "shop", "environment": "prod"}}, "ends_at": "2030-01-01T00:00:00Z", "reason": "fixture"}))).await;
    f.ids.insert(
        "silence",
        silence["id"].to_string().trim_matches('"').to_string(),
    );
    let monitors = "[[heartbeat]]\nname = \"nightly\"\nservice = \"shop\"\nenvironment = \"prod\"\nperiod = \"1d\"\ngrace = \"30m\"\n";
    f.admin(
        "PUT",
        "/api/v1/monitors/files/repo",
        Some(("application/toml", monitors.to_string())),
    )
    .await;
    f.admin(
        "POST",
        "/api/v1/tokens",
        json_body(json!({"name": "victim", "scopes": ["read"]})),
    )
    .await;
    f
}

/// The path with every parameter filled with something of `shop` in `prod` that exists.
fn concrete(f: &Fixture, method: &str, path: &str) -> String {
    let id = |key: &str| f.ids[key].clone();
    let mut out = path
        .replace("{service}", "shop")
        .replace("{env}", "prod")
        .replace("{key}", "not-a-key")
        .replace("{source}", "repo")
        .replace("{build}", &id("build"));
    let id_of = if path.starts_with("/api/v1/changes/") {
        Some(id("change"))
    } else if path.contains("/schedules/") {
        Some(id("schedule"))
    } else if path.starts_with("/api/v1/builds/") {
        Some(id("build"))
    } else if path.starts_with("/api/v1/rollouts/") {
        Some(id("rollout"))
    } else if path.starts_with("/api/v1/incidents/") {
        Some(id("incident"))
    } else if path.starts_with("/api/v1/silences/") {
        Some(id("silence"))
    } else if path.starts_with("/api/v1/agent/tasks/") {
        Some("01JDQ4Y3V7W2J8X1B2C3D4E5F6".to_string())
    } else {
        None
    };
    if let Some(value) = id_of {
        out = out.replace("{id}", &value);
    }
    let name = if path.starts_with("/api/v1/flags/") {
        "checkout"
    } else if path.contains("/segments/") {
        "beta"
    } else if path.starts_with("/api/v1/hosts/") {
        "web1"
    } else if path.starts_with("/api/v1/tokens/") {
        "victim"
    } else if path.starts_with("/api/v1/monitors/") {
        "nightly"
    } else {
        "shop"
    };
    out = out.replace("{name}", name);
    let action = if path.starts_with("/api/v1/incidents/") {
        "ack"
    } else {
        "pause"
    };
    out = out.replace("{action}", action);
    let query = match path {
        "/render" => "?target=shop.*",
        "/metrics/find" | "/metrics/expand" => "?query=shop.*",
        "/tags/autoComplete/values" => "?tag=name",
        "/tags/findSeries" => "?expr=name=shop",
        "/api/v1/metrics" => "?pattern=shop.*",
        "/api/v1/builds" if method == "POST" => "?service=shop&version=2.0.0",
        _ => "",
    };
    out + query
}

/// A body the operation accepts, aimed at `shop` in `prod`, so the refusal is about the
/// token and not about the body.
fn body_for(method: &str, path: &str) -> Option<(&'static str, String)> {
    let value = match (method, path) {
        ("POST", "/api/v1/agent/poll") => json!({"facts": {}}),
        ("POST", "/api/v1/agent/tasks/{id}") => json!({"state": "succeeded"}),
        ("POST", "/api/v1/builds") => return Some(("application/octet-stream", "another artifact".to_string())),
        ("POST", "/api/v1/changes") => json!({"kind": "note", "summary": "x", "service": "shop", "environment": "prod"}),
        ("PATCH", "/api/v1/changes/{id}") => json!({"description": "edited"}),
        ("POST", "/api/v1/flags") => json!({"name": "newflag", "service": "shop"}),
        ("PATCH", "/api/v1/flags/{service}/{name}") => json!({"description": "edited"}),
        ("PUT", "/api/v1/flags/{service}/{name}/environments/{env}") => json!({"enabled": true}),
        ("PUT", "/api/v1/flags/{service}/{name}/environments/{env}/rollout") => json!({"percent": 50}),
        ("POST", "/api/v1/flags/{service}/{name}/environments/{env}/targets") => json!({"users": ["u1"]}),
        ("POST", "/api/v1/flags/{service}/{name}/environments/{env}/variants") => json!({"name": "blue", "weight": 1000}),
        ("POST", "/api/v1/flags/{service}/{name}/schedules") => json!({"action": "disable", "at": "2031-01-01T00:00:00Z", "environment": "prod"}),
        ("POST", "/api/v1/hosts") => json!({"name": "web9", "environment": "prod"}),
        ("PUT", "/api/v1/hosts/{name}/maintenance") => json!({"on": true}),
        ("POST", "/api/v1/incidents") => json!({"title": "t", "service": "shop", "environment": "prod"}),
        ("PATCH", "/api/v1/incidents/{id}") => json!({"title": "retitled"}),
        ("PUT", "/api/v1/incidents/{id}/cause") => json!({"kind": "not_a_change", "what": "traffic"}),
        ("POST", "/api/v1/incidents/{id}/notes") => json!({"text": "a note"}),
        ("POST", "/api/v1/maintenance-windows") => json!({"matcher": {"service": {"service": "shop", "environment": "prod"}}, "weekdays": ["Mon"], "start": "02:00", "duration_secs": 3600, "reason": "r"}),
        ("POST", "/api/v1/migrate/changes") => json!({"service": "shop", "environment": "prod", "summary": "s", "started_at": "2026-01-01T00:00:00Z", "metadata": {}}),
        ("POST", "/api/v1/migrate/gate") => json!({"services": ["shop"], "environment": "prod"}),
        ("PUT", "/api/v1/monitors/files/{source}") => return Some(("application/toml", "[[heartbeat]]\nname = \"other\"\nservice = \"shop\"\nenvironment = \"prod\"\nperiod = \"1h\"\ngrace = \"5m\"\n".to_string())),
        ("POST", "/api/v1/rollouts") => json!({"service": "shop", "environment": "prod", "build": "1.0.0"}),
        ("POST", "/api/v1/services") => json!({"name": "newsvc"}),
        ("PUT", "/api/v1/services/{name}/deploy-config") => return Some(("application/toml", "name = \"shop\"\nkeep_releases = 3\n".to_string())),
        ("POST", "/api/v1/services/{service}/segments") => json!({"name": "gamma", "constraints": []}),
        ("PUT", "/api/v1/services/{service}/segments/{name}") => json!({"constraints": []}),
        ("POST", "/api/v1/silences") => json!({"matcher": {"service": {"service": "shop", "environment": "prod"}}, "ends_at": "2031-01-01T00:00:00Z", "reason": "r"}),
        ("POST", "/api/v1/tokens") => json!({"name": "t9", "scopes": ["read"]}),
        ("POST", "/events/") => json!({"what": "x", "tags": "service=shop env=prod"}),
        _ => return None,
    };
    json_body(value)
}

/// The tokens that must not get through `scope`: (label, scopes).
fn refused_tokens(scope: &str) -> Vec<(String, String)> {
    let words: Vec<&str> = scope.split('|').collect();
    let mut tokens = Vec::new();
    let lacking: Vec<&str> = if words.iter().any(|w| ["client", "frontend"].contains(w)) {
        // The SDK routes take only SDK tokens; admin does not imply them.
        vec!["admin"]
    } else {
        USER_SCOPES
            .iter()
            .copied()
            .filter(|s| !words.contains(s))
            .collect()
    };
    tokens.push(("lacking".to_string(), lacking.join(",")));
    let narrowable: Vec<&str> = words
        .iter()
        .copied()
        .filter(|w| USER_SCOPES.contains(w))
        .collect();
    if !narrowable.is_empty() && !words.contains(&"admin") && !words.contains(&"agent") {
        let other_service: Vec<String> = narrowable.iter().map(|s| format!("{s}:other")).collect();
        tokens.push(("another service".to_string(), other_service.join(",")));
        let other_env: Vec<String> = narrowable.iter().map(|s| format!("{s}:shop@dev")).collect();
        tokens.push(("another environment".to_string(), other_env.join(",")));
    }
    tokens
}

/// Whether the operation writes (the Graphite searches take POST too, and only read).
fn mutates(method: &str, scope: &str) -> bool {
    method != "GET" && scope != "read"
}

/// Whether the path names one resource of `shop` (not a list, not a search).
fn names_a_resource(path: &str) -> bool {
    path.contains('{') && !path.starts_with("/ping/")
}

/// Whether that resource belongs to one environment. Flags, schedules, segments, builds and
/// the service itself belong to the service: a token covering the service in any
/// environment reads them (docs/api.md).
fn bound_to_an_environment(path: &str) -> bool {
    names_a_resource(path)
        && ![
            "/api/v1/flags/{service}/{name}",
            "/api/v1/flags/{service}/{name}/schedules",
            "/api/v1/services/{name}",
            "/api/v1/services/{service}/segments",
            "/api/v1/services/{name}/deploy-config",
            "/api/v1/builds/{build}",
            "/api/v1/builds/{id}/artifact",
        ]
        .contains(&path)
}

#[tokio::test]
async fn every_operation_refuses_tokens_without_its_scope_and_changes_nothing() {
    let f = fixture().await;
    let (_, doc) = gantry_server::app::routes(&f.env.state);
    let doc = serde_json::to_value(&doc).unwrap();
    let mut operations = Vec::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, operation) in item.as_object().unwrap() {
            if ["get", "post", "put", "patch", "delete"].contains(&method.as_str()) {
                let scope = operation["x-gantry-scope"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string();
                operations.push((method.to_uppercase(), path.clone(), scope));
            }
        }
    }
    operations.sort();
    for (skipped, _) in NOT_CALLED {
        assert!(
            operations
                .iter()
                .any(|(m, p, _)| format!("{m} {p}") == *skipped),
            "NOT_CALLED names {skipped}, which is not an operation"
        );
    }

    // Every probe token first, so making them is not a change the reads see.
    let mut token_of = std::collections::HashMap::new();
    let mut calls = Vec::new();
    for (method, path, scope) in &operations {
        if ["public", "token", "ping-key", "loopback|read"].contains(&scope.as_str()) {
            continue;
        }
        if NOT_CALLED
            .iter()
            .any(|(op, _)| *op == format!("{method} {path}"))
        {
            continue;
        }
        for (label, scopes) in refused_tokens(scope) {
            if !token_of.contains_key(&scopes) {
                let secret = f
                    .env
                    .token(&format!("probe{}", token_of.len()), &scopes)
                    .await;
                token_of.insert(scopes.clone(), secret);
            }
            calls.push((method.clone(), path.clone(), scope.clone(), label, scopes));
        }
    }
    let mut violations = Vec::new();
    let mut checked = 0;
    let mut before = f.snapshot().await;
    for (method, path, scope, label, scopes) in &calls {
        let (method, path, scope, label) = (
            method.as_str(),
            path.as_str(),
            scope.as_str(),
            label.as_str(),
        );
        let secret = token_of[scopes].clone();
        {
            let uri = concrete(&f, method, path);
            let (status, text) = f.call(method, &uri, &secret, body_for(method, path)).await;
            checked += 1;
            let refused = status == StatusCode::FORBIDDEN
                || (status == StatusCode::NOT_FOUND && names_a_resource(path));
            let what = format!(
                "{method} {uri} with {label} ({scopes}): {status} {}",
                text.chars().take(300).collect::<String>()
            );
            let list = !mutates(method, scope) && !names_a_resource(path);
            let service_wide =
                !mutates(method, scope) && names_a_resource(path) && !bound_to_an_environment(path);
            if list && label == "another service" && status.is_success() {
                // A list or a search answered to another service's token: nothing of shop.
                if text.contains("shop") {
                    violations.push(format!("{what}: shows shop's data"));
                }
            } else if (list || service_wide) && label == "another environment" {
                // Service-wide lists may show shop to a token of shop in another environment;
                // what is bound to prod is checked through the named resources.
            } else if !refused {
                violations.push(what);
            }
            if mutates(method, scope) {
                let after = f.snapshot().await;
                for ((read, was), (_, now)) in before.iter().zip(after.iter()) {
                    if was != now {
                        violations.push(format!("{method} {path} with {label} ({scopes}) changed what GET {read} answers"));
                    }
                }
                before = after;
            }
        }
    }
    assert!(checked > 150, "only {checked} calls were checked");
    assert!(
        violations.is_empty(),
        "{} of {checked} calls got through:\n{}",
        violations.len(),
        violations.join("\n")
    );
}

use tower::ServiceExt as _;
