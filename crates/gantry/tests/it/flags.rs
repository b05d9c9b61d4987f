//! Flags through the real binary: the CLI and REST API record every flip as a change,
//! SDK tokens reach the Unleash client and frontend APIs, OFREP and the stream (and
//! nothing else), bad input gets a 4xx naming the field, and the conformance command runs
//! Unleash's client specification.

use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::harness::{postgres_url, Http, Options, Server, Sse, BIN};

/// A server with service `shop` (stage → prod), flag `checkout-v2`, and SDK tokens.
struct Setup {
    server: Server,
    client_token: String,
    frontend_token: String,
}

fn sdk_token(server: &Server, name: &str, scope: &str) -> String {
    server
        .ok(&["token", "create", name, "--scopes", scope])
        .trim()
        .to_string()
}

fn setup_with(options: Options) -> Setup {
    let server = Server::start_with(options);
    server.ok(&["service", "create", "shop", "--envs", "stage,prod"]);
    let name = server.ok(&[
        "flag",
        "create",
        "checkout-v2",
        "--service",
        "shop",
        "--description",
        "new checkout",
    ]);
    assert_eq!(name.trim(), "checkout-v2");
    let client_token = sdk_token(&server, "shop-prod-server", "client:shop@prod");
    let frontend_token = sdk_token(&server, "shop-prod-web", "frontend:shop@prod");
    Setup {
        server,
        client_token,
        frontend_token,
    }
}

fn setup() -> Setup {
    setup_with(Options::default())
}

/// An HTTP client that sends the token bare, as Unleash SDKs do.
fn sdk(server: &Server, token: &str) -> reqwest::blocking::Client {
    let mut headers = reqwest::header::HeaderMap::new();
    headers.insert("authorization", token.parse().unwrap());
    let _ = server;
    reqwest::blocking::Client::builder()
        .default_headers(headers)
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap()
}

fn ofrep(setup: &Setup, key: &str, body: Value) -> (u16, Value) {
    let response = sdk(&setup.server, &setup.client_token)
        .post(format!(
            "{}/ofrep/v1/evaluate/flags/{key}",
            setup.server.url()
        ))
        .json(&body)
        .send()
        .unwrap();
    let status = response.status().as_u16();
    (status, response.json().unwrap_or(Value::Null))
}

#[test]
fn every_flip_is_a_change_and_a_graph_event() {
    let s = setup();
    let server = &s.server;
    let enable = server.ok(&[
        "flag",
        "enable",
        "checkout-v2",
        "--service",
        "shop",
        "--env",
        "prod",
    ]);
    let change: Value =
        serde_json::from_str(&server.ok(&["--json", "change", "show", enable.trim()])).unwrap();
    assert_eq!(change["kind"], "flag");
    assert_eq!(change["environment"], "prod");
    assert_eq!(change["actor"], "admin");
    assert_eq!(change["summary"], "checkout-v2: enabled in prod");
    assert_eq!(change["metadata"]["after"]["enabled"], true);
    assert!(change["metadata"]["before"].is_null());

    server.ok(&[
        "flag",
        "rollout",
        "checkout-v2",
        "10",
        "--service",
        "shop",
        "--env",
        "prod",
    ]);
    let id = server.ok(&[
        "flag",
        "rollout",
        "checkout-v2",
        "50",
        "--service",
        "shop",
        "--env",
        "prod",
    ]);
    let change: Value =
        serde_json::from_str(&server.ok(&["--json", "change", "show", id.trim()])).unwrap();
    assert_eq!(change["summary"], "checkout-v2: rollout 10% → 50% in prod");

    // Targeting, variants, the whole definition: each one change.
    server.ok(&[
        "flag",
        "target",
        "checkout-v2",
        "--service",
        "shop",
        "--env",
        "prod",
        "--users",
        "alice,bob",
    ]);
    server.ok(&[
        "flag",
        "target",
        "checkout-v2",
        "--service",
        "shop",
        "--env",
        "prod",
        "--constraint",
        "appVersion SEMVER_GT 2.0.0",
    ]);
    server.ok(&[
        "flag",
        "variant",
        "checkout-v2",
        "blue",
        "--service",
        "shop",
        "--env",
        "prod",
        "--payload-type",
        "json",
        "--payload",
        "{\"color\":\"blue\"}",
    ]);
    let shown: Value = serde_json::from_str(&server.ok(&[
        "--json",
        "flag",
        "show",
        "checkout-v2",
        "--service",
        "shop",
    ]))
    .unwrap();
    let strategies = shown["environments"]["prod"]["definition"]["strategies"]
        .as_array()
        .unwrap()
        .clone();
    assert_eq!(strategies.len(), 3, "{shown}");
    assert_eq!(
        shown["environments"]["prod"]["definition"]["variants"][0]["weight"],
        1000
    );
    let listed: Value =
        serde_json::from_str(&server.ok(&["--json", "change", "list", "--kind", "flag"])).unwrap();
    assert_eq!(listed.as_array().map_or(0, Vec::len), 7, "{listed}");

    // Grafana's annotation query by tag draws the flips.
    let events = server
        .http()
        .get("/events/get_data?from=-1h&until=now&tags=flag");
    assert_eq!(events.status, 200);
    assert_eq!(
        events.body.as_array().map_or(0, Vec::len),
        7,
        "{}",
        events.text
    );

    // An If-Match from an older read is refused and changes nothing.
    let stale = server.http().send(
        reqwest::Method::POST,
        "/api/v1/flags/shop/checkout-v2/environments/prod/disable",
        None,
    );
    assert_eq!(stale.status, 200);
    let http = server.http();
    let response = http
        .client
        .post(format!(
            "{}/api/v1/flags/shop/checkout-v2/environments/prod/enable",
            server.url()
        ))
        .bearer_auth(server.admin_token())
        .header("if-match", "\"1\"")
        .send()
        .unwrap();
    assert_eq!(response.status().as_u16(), 412);
    let body: Value = response.json().unwrap();
    assert_eq!(body["code"], "precondition_failed");
    let flag = server.http().get("/api/v1/flags/shop/checkout-v2");
    assert_eq!(
        flag.body["environments"]["prod"]["definition"]["enabled"],
        false
    );
    let etag = flag.headers["etag"].to_str().unwrap().to_string();
    let response = http
        .client
        .post(format!(
            "{}/api/v1/flags/shop/checkout-v2/environments/prod/enable",
            server.url()
        ))
        .bearer_auth(server.admin_token())
        .header("if-match", etag)
        .send()
        .unwrap();
    assert_eq!(response.status().as_u16(), 200);

    // Archive: SDKs stop seeing it; restore brings it back.
    server.ok(&["flag", "archive", "checkout-v2", "--service", "shop"]);
    let features: Value = sdk(server, &s.client_token)
        .get(format!("{}/api/client/features", server.url()))
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(features["features"], json!([]));
    let (status, body) = ofrep(&s, "checkout-v2", json!({}));
    assert_eq!(
        (status, body["errorCode"].clone()),
        (404, json!("FLAG_NOT_FOUND"))
    );
    server.ok(&["flag", "restore", "checkout-v2", "--service", "shop"]);
    let (status, body) = ofrep(
        &s,
        "checkout-v2",
        json!({"context": {"targetingKey": "alice"}}),
    );
    assert_eq!(status, 200, "{body}");

    // A service with flags cannot be deleted.
    let refused = server.cli(&["service", "delete", "shop", "--force"]);
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("feature flags"));
}

#[test]
fn sdk_apis_serve_only_sdk_tokens() {
    let s = setup();
    let server = &s.server;
    server.ok(&[
        "flag",
        "enable",
        "checkout-v2",
        "--service",
        "shop",
        "--env",
        "prod",
    ]);
    let url = server.url();
    let client = sdk(server, &s.client_token);

    // The Unleash client document: Unleash's types, an ETag, 304 when unchanged.
    let response = client
        .get(format!("{url}/api/client/features"))
        .send()
        .unwrap();
    assert_eq!(response.status().as_u16(), 200);
    let etag = response.headers()["etag"].to_str().unwrap().to_string();
    let document: Value = response.json().unwrap();
    assert_eq!(document["version"], 2);
    assert_eq!(document["features"][0]["name"], "checkout-v2");
    assert_eq!(document["features"][0]["enabled"], true);
    assert_eq!(document["features"][0]["project"], "shop");
    let again = client
        .get(format!("{url}/api/client/features"))
        .header("if-none-match", &etag)
        .send()
        .unwrap();
    assert_eq!(again.status().as_u16(), 304);
    let prefixed: Value = client
        .get(format!("{url}/api/client/features?namePrefix=nope"))
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(prefixed["features"], json!([]));

    // Other tokens, admin included, get 403 naming the scope.
    for token in [server.admin_token(), s.frontend_token.clone()] {
        let response = sdk(server, &token)
            .get(format!("{url}/api/client/features"))
            .send()
            .unwrap();
        assert_eq!(response.status().as_u16(), 403);
        let body: Value = response.json().unwrap();
        assert!(
            body["message"].as_str().unwrap().contains("client:"),
            "{body}"
        );
    }
    // An SDK token reaches nothing else.
    let changes = Http::new(&url, Some(s.client_token.clone())).get("/api/v1/changes");
    assert_eq!(changes.status, 403);
    let flags = Http::new(&url, Some(s.client_token.clone())).get("/api/v1/flags");
    assert_eq!(flags.status, 403);

    // Register and metrics: 202, unknown fields ignored, bad counts named.
    let register = client
        .post(format!("{url}/api/client/register"))
        .json(&json!({"appName": "web", "instanceId": "web-1", "sdkVersion": "unleash-client-python:6.9.1",
                      "strategies": ["default"], "started": "2026-12-07T00:00:00Z", "interval": 15000, "extra": 1}))
        .send()
        .unwrap();
    assert_eq!(register.status().as_u16(), 202);
    let metrics = client
        .post(format!("{url}/api/client/metrics"))
        .json(&json!({"appName": "web", "instanceId": "web-1", "bucket": {"start": "2026-12-07T00:00:00Z",
            "stop": "2026-12-07T00:01:00Z", "toggles": {"checkout-v2": {"yes": 3, "no": 1}, "ghost": {"yes": 1, "no": 0}}}}))
        .send()
        .unwrap();
    assert_eq!(metrics.status().as_u16(), 202);
    let negative = client
        .post(format!("{url}/api/client/metrics"))
        .json(&json!({"appName": "web", "bucket": {"toggles": {"checkout-v2": {"yes": -1, "no": 0}}}}))
        .send()
        .unwrap();
    assert_eq!(negative.status().as_u16(), 400);
    assert!(negative
        .text()
        .unwrap()
        .contains("bucket.toggles.checkout-v2"));
    let huge = client
        .post(format!("{url}/api/client/metrics"))
        .header("content-type", "application/json")
        .body(vec![b' '; 2 * 1024 * 1024])
        .send()
        .unwrap();
    assert_eq!(huge.status().as_u16(), 413);
    let shown = server.http().get("/api/v1/flags/shop/checkout-v2");
    assert_eq!(shown.body["sdks"][0]["app_name"], "web", "{}", shown.text);

    // OFREP: one flag, the bulk form with its ETag, the error shapes.
    let (status, body) = ofrep(
        &s,
        "checkout-v2",
        json!({"context": {"targetingKey": "u1", "plan": 3}}),
    );
    assert_eq!(status, 200);
    assert_eq!(
        body,
        json!({"key": "checkout-v2", "reason": "STATIC", "variant": "on", "value": true, "metadata": {}})
    );
    let (status, body) = ofrep(&s, "checkout-v2", json!({}));
    assert_eq!(
        status, 200,
        "a body without context is an empty context: {body}"
    );
    let empty = client
        .post(format!("{url}/ofrep/v1/evaluate/flags/checkout-v2"))
        .send()
        .unwrap();
    assert_eq!(empty.status().as_u16(), 200, "so is no body at all");
    let (status, body) = ofrep(&s, "nope", json!({}));
    assert_eq!(
        (status, body["errorCode"].clone()),
        (404, json!("FLAG_NOT_FOUND"))
    );
    let (status, body) = ofrep(&s, "checkout-v2", json!({"context": {"plan": {"tier": 1}}}));
    assert_eq!(
        (status, body["errorCode"].clone()),
        (400, json!("INVALID_CONTEXT"))
    );
    assert!(body["errorDetails"]
        .as_str()
        .unwrap()
        .contains("context.plan"));
    let (status, body) = ofrep(&s, "checkout-v2", json!({"context": "alice"}));
    assert_eq!(
        (status, body["errorCode"].clone()),
        (400, json!("INVALID_CONTEXT"))
    );
    let (status, body) = ofrep(&s, &"k".repeat(65), json!({}));
    assert_eq!(
        (status, body["errorCode"].clone()),
        (400, json!("PARSE_ERROR"))
    );
    let raw = client
        .post(format!("{url}/ofrep/v1/evaluate/flags/checkout-v2"))
        .header("content-type", "application/json")
        .body("[1, 2")
        .send()
        .unwrap();
    assert_eq!(raw.status().as_u16(), 400);
    assert_eq!(raw.json::<Value>().unwrap()["errorCode"], "PARSE_ERROR");
    let bulk = client
        .post(format!("{url}/ofrep/v1/evaluate/flags"))
        .json(&json!({"context": {"targetingKey": "u1"}}))
        .send()
        .unwrap();
    assert_eq!(bulk.status().as_u16(), 200);
    let bulk_etag = bulk.headers()["etag"].to_str().unwrap().to_string();
    let flags: Value = bulk.json().unwrap();
    assert_eq!(flags["flags"][0]["key"], "checkout-v2");
    let again = client
        .post(format!("{url}/ofrep/v1/evaluate/flags"))
        .header("if-none-match", &bulk_etag)
        .json(&json!({"context": {"targetingKey": "u1"}}))
        .send()
        .unwrap();
    assert_eq!(again.status().as_u16(), 304);
    let other_context = client
        .post(format!("{url}/ofrep/v1/evaluate/flags"))
        .header("if-none-match", &bulk_etag)
        .json(&json!({"context": {"targetingKey": "u2"}}))
        .send()
        .unwrap();
    assert_eq!(
        other_context.status().as_u16(),
        200,
        "the ETag names the context too"
    );

    // The frontend API evaluates; a frontend token may use OFREP too.
    let web = sdk(server, &s.frontend_token);
    let toggles: Value = web
        .get(format!("{url}/api/frontend?userId=u1&plan=pro"))
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(toggles["toggles"][0]["name"], "checkout-v2");
    assert_eq!(toggles["toggles"][0]["enabled"], true);
    let posted: Value = web
        .post(format!("{url}/api/frontend"))
        .json(&json!({"context": {"userId": "u1"}}))
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(posted["toggles"][0]["variant"]["name"], "disabled");
    let ofrep_web = web
        .post(format!("{url}/ofrep/v1/evaluate/flags/checkout-v2"))
        .json(&json!({}))
        .send()
        .unwrap();
    assert_eq!(ofrep_web.status().as_u16(), 200);
    let features = web
        .get(format!("{url}/api/client/features"))
        .send()
        .unwrap();
    assert_eq!(
        features.status().as_u16(),
        403,
        "a browser token never gets definitions"
    );
}

#[test]
fn cors_for_configured_origins() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("gantry.toml");
    std::fs::write(
        &config,
        "[flags]\nfrontend_cors_origins = [\"https://shop.example\"]\n",
    )
    .unwrap();
    let s = setup_with(Options {
        extra_args: vec!["--config".into(), config.display().to_string()],
        ..Default::default()
    });
    let client = reqwest::blocking::Client::new();
    let preflight = client
        .request(
            reqwest::Method::OPTIONS,
            format!("{}/api/frontend", s.server.url()),
        )
        .header("origin", "https://shop.example")
        .header("access-control-request-method", "POST")
        .header(
            "access-control-request-headers",
            "authorization, unleash-appname, content-type",
        )
        .send()
        .unwrap();
    assert_eq!(preflight.status().as_u16(), 204);
    let h = preflight.headers();
    assert_eq!(h["access-control-allow-origin"], "https://shop.example");
    let allowed = h["access-control-allow-headers"].to_str().unwrap();
    for header in [
        "authorization",
        "if-none-match",
        "content-type",
        "unleash-appname",
    ] {
        assert!(allowed.contains(header), "{allowed}");
    }
    assert_eq!(h["access-control-expose-headers"], "ETag");
    let other = client
        .request(
            reqwest::Method::OPTIONS,
            format!("{}/api/frontend", s.server.url()),
        )
        .header("origin", "https://evil.example")
        .send()
        .unwrap();
    assert!(other.headers().get("access-control-allow-origin").is_none());
    let answer = sdk(&s.server, &s.frontend_token)
        .get(format!("{}/api/frontend", s.server.url()))
        .header("origin", "https://shop.example")
        .send()
        .unwrap();
    assert_eq!(
        answer.headers()["access-control-allow-origin"],
        "https://shop.example"
    );
}

#[test]
fn bad_flag_input_is_named_and_nothing_is_stored() {
    let s = setup();
    let server = &s.server;
    let http = server.http();
    let put = |definition: Value| {
        http.send(
            reqwest::Method::PUT,
            "/api/v1/flags/shop/checkout-v2/environments/prod",
            Some(crate::harness::RawBody::Json(definition)),
        )
    };
    let cases = [
        (
            json!({"enabled": true, "strategies": [{"name": "default", "constraints": [
            {"contextName": "x", "operator": "LIKE", "values": ["a"]}]}]}),
            "operator",
        ),
        (
            json!({"enabled": true, "strategies": [{"name": "default", "constraints": [
            {"contextName": "x", "operator": "REGEX", "value": "(unclosed"}]}]}),
            "value",
        ),
        (
            json!({"enabled": true, "strategies": [{"name": "default", "constraints": [
            {"contextName": "v", "operator": "SEMVER_GT", "value": "one"}]}]}),
            "value",
        ),
        (
            json!({"enabled": true, "strategies": [{"name": "default", "constraints": [
            {"contextName": "d", "operator": "DATE_AFTER", "value": "yesterday"}]}]}),
            "value",
        ),
        (
            json!({"enabled": true, "strategies": [{"name": "default", "constraints": [
            {"contextName": "x", "operator": "IN", "values": (0..10_000).map(|i| i.to_string()).collect::<Vec<_>>()}]}]}),
            "values",
        ),
        (
            json!({"enabled": true, "strategies": [{"name": "flexibleRollout", "parameters": {"rollout": "101"}}]}),
            "rollout",
        ),
        (
            json!({"enabled": true, "variants": [{"name": "a", "weight": 700, "weightType": "fix"},
            {"name": "b", "weight": 700, "weightType": "fix"}]}),
            "weight",
        ),
        (
            json!({"enabled": true, "strategies": [{"name": "noSuchStrategy"}]}),
            "name",
        ),
        (
            json!({"enabled": true, "dependencies": [{"feature": "elsewhere"}]}),
            "dependencies[0]",
        ),
        (json!({"enabled": "yes"}), "enabled"),
    ];
    for (definition, field) in cases {
        let reply = put(definition.clone());
        assert!(
            (400..500).contains(&reply.status) && reply.text.contains(field),
            "{definition}: {} {}",
            reply.status,
            reply.text
        );
    }
    // A dependency on a flag that itself has a parent.
    server.ok(&["flag", "create", "parent", "--service", "shop"]);
    server.ok(&["flag", "create", "child", "--service", "shop"]);
    let reply = http.send(
        reqwest::Method::PUT,
        "/api/v1/flags/shop/child/environments/prod",
        Some(crate::harness::RawBody::Json(
            json!({"enabled": true, "dependencies": [{"feature": "parent"}]}),
        )),
    );
    assert_eq!(reply.status, 200, "{}", reply.text);
    let reply = put(json!({"enabled": true, "dependencies": [{"feature": "child"}]}));
    assert_eq!(reply.status, 400);
    assert!(
        reply.text.contains("cannot have a parent"),
        "{}",
        reply.text
    );
    // Nothing of the above was stored.
    let flag = http.get("/api/v1/flags/shop/checkout-v2");
    assert_eq!(flag.body["environments"], json!({}), "{}", flag.text);

    // Rollout of 101 through its own route; names with spaces or 10 KB long.
    let reply = http.send(
        reqwest::Method::PUT,
        "/api/v1/flags/shop/checkout-v2/environments/prod/rollout",
        Some(crate::harness::RawBody::Json(json!({"percent": 101}))),
    );
    assert_eq!(reply.status, 400);
    assert!(reply.text.contains("percent"));
    for name in ["has space".to_string(), "x".repeat(10_000)] {
        let reply = http.post("/api/v1/flags", json!({"service": "shop", "name": name}));
        assert_eq!(reply.status, 400, "{}", reply.text);
        assert!(reply.text.contains("name"));
    }
    let reply = http.post("/api/v1/flags", json!({"service": "nowhere", "name": "a"}));
    assert_eq!(reply.status, 404);
    let reply = http.post(
        "/api/v1/flags",
        json!({"service": "shop", "name": "checkout-v2"}),
    );
    assert_eq!(reply.status, 409);

    // Tokens: two client scopes, a client scope beside another, one without a target.
    for scopes in [
        "client:shop@prod,client:shop@stage",
        "client:shop@prod,read",
        "client:shop",
    ] {
        let out = server.cli(&["token", "create", "bad", "--scopes", scopes]);
        assert!(!out.status.success(), "{scopes}");
    }
    // flags:shop@prod may flip prod, not create flags.
    let narrow = server.ok(&["token", "create", "flipper", "--scopes", "flags:shop@prod"]);
    let narrow = Http::new(&server.url(), Some(narrow.trim().to_string()));
    let reply = narrow.post("/api/v1/flags", json!({"service": "shop", "name": "new"}));
    assert_eq!(reply.status, 403);
    let reply = narrow.send(
        reqwest::Method::POST,
        "/api/v1/flags/shop/checkout-v2/environments/prod/enable",
        None,
    );
    assert_eq!(reply.status, 200, "{}", reply.text);
    let reply = narrow.send(
        reqwest::Method::POST,
        "/api/v1/flags/shop/checkout-v2/environments/stage/enable",
        None,
    );
    assert_eq!(reply.status, 403);
    // The server still serves.
    assert_eq!(http.get("/api/v1/flags").status, 200);
}

/// Waits for the next `updated` event with a revision above `after`.
fn next_update(stream: &mut Sse, after: i64) -> i64 {
    loop {
        let (event, id, _) = stream.next_event().expect("the stream stays open");
        if event == "updated" && id > after {
            return id;
        }
    }
}

#[test]
fn the_stream_tells_sdks_of_a_flip() {
    let s = setup();
    let mut stream = Sse::open_at(&s.server.url(), "/api/client/stream", &s.client_token, None);
    let (event, ready, data) = stream.next_event().unwrap();
    assert_eq!(event, "ready");
    assert!(data.contains("\"revision\""), "{data}");
    s.server.ok(&[
        "flag",
        "enable",
        "checkout-v2",
        "--service",
        "shop",
        "--env",
        "prod",
    ]);
    let updated = next_update(&mut stream, ready);
    assert!(updated > ready);
}

#[test]
fn a_flip_on_one_server_reaches_sdks_on_another() {
    let url = postgres_url("flags_two_servers");
    let a = setup_with(Options {
        database_url: Some(url.clone()),
        ..Default::default()
    });
    let b = Server::start_with(Options {
        database_url: Some(url),
        ..Default::default()
    });
    let mut stream = Sse::open_at(&b.url(), "/api/client/stream", &a.client_token, None);
    let (_, ready, _) = stream.next_event().unwrap();
    let started = Instant::now();
    a.server.ok(&[
        "flag",
        "enable",
        "checkout-v2",
        "--service",
        "shop",
        "--env",
        "prod",
    ]);
    next_update(&mut stream, ready);
    assert!(started.elapsed() < Duration::from_secs(5));
    // Server B evaluates the new state.
    let response = sdk(&b, &a.client_token)
        .post(format!("{}/ofrep/v1/evaluate/flags/checkout-v2", b.url()))
        .json(&json!({}))
        .send()
        .unwrap();
    let body: Value = response.json().unwrap();
    assert_eq!(body["value"], true, "{body}");
    // A revoked SDK token is refused by the other server within a few seconds.
    a.server.ok(&["token", "revoke", "shop-prod-server"]);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let status = sdk(&b, &a.client_token)
            .get(format!("{}/api/client/features", b.url()))
            .send()
            .unwrap()
            .status()
            .as_u16();
        if status == 401 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "server B still serves a revoked token"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn stale_flags_and_schedules() {
    let s = setup();
    let server = &s.server;
    // A fresh flag is never stale.
    let stale: Value =
        serde_json::from_str(&server.ok(&["--json", "flag", "stale", "--service", "shop"]))
            .unwrap();
    assert_eq!(stale, json!([]));
    // A schedule in the past is refused; one in a second runs once, as a change.
    let out = server.cli(&[
        "flag",
        "schedule",
        "checkout-v2",
        "--service",
        "shop",
        "--env",
        "prod",
        "--enable",
        "--at",
        "2020-01-01T00:00:00Z",
    ]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("in the past"));
    let id = server.ok(&[
        "flag",
        "schedule",
        "checkout-v2",
        "--service",
        "shop",
        "--env",
        "prod",
        "--enable",
        "--at",
        "+1s",
    ]);
    assert_eq!(id.trim().len(), 26);
    let deadline = Instant::now() + Duration::from_secs(15);
    let schedule = loop {
        let list = server
            .http()
            .get("/api/v1/flags/shop/checkout-v2/schedules");
        let schedule = list.body[0].clone();
        if schedule["state"] != "pending" {
            break schedule;
        }
        assert!(
            Instant::now() < deadline,
            "the schedule did not run: {}",
            list.text
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    assert_eq!(schedule["state"], "done", "{schedule}");
    let change = server.http().get(&format!(
        "/api/v1/changes/{}",
        schedule["change"].as_str().unwrap()
    ));
    assert_eq!(change.body["actor"], "admin (scheduled)");
    assert_eq!(change.body["summary"], "checkout-v2: enabled in prod");
}

#[test]
fn conformance_command_runs_the_unleash_client_specification() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../../shared/conformance/unleash-client-spec");
    if !dir.is_dir() {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "{} is missing; CI needs the shared conformance data",
            dir.display()
        );
        eprintln!("skipping: {} is missing", dir.display());
        return;
    }
    let out = Command::new(BIN)
        .args(["flag", "conformance"])
        .arg(&dir)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let last = stdout.lines().last().unwrap_or("");
    assert!(
        last.starts_with("RESULT unleash_conformance passed="),
        "{stdout}"
    );
    assert!(last.ends_with(" failed=0"), "{stdout}");
    assert!(out.status.success());
    // A broken file counts as one failure and the exit code says so.
    let broken = tempfile::tempdir().unwrap();
    std::fs::write(broken.path().join("01-broken.json"), "{\"state\": ").unwrap();
    std::fs::write(broken.path().join("index.json"), "[\"01-broken.json\"]").unwrap();
    let out = Command::new(BIN)
        .args(["flag", "conformance"])
        .arg(broken.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stdout)
        .ends_with("RESULT unleash_conformance passed=0 failed=1\n"));
}

#[test]
fn waffle_dump_imports_as_flags_with_changes() {
    let s = setup();
    let server = &s.server;
    let dump = json!([
        {"model": "waffle.flag", "pk": 1, "fields": {"name": "new_search", "everyone": null, "percent": "25.0",
            "testing": false, "superusers": true, "staff": false, "authenticated": false, "languages": "",
            "rollout": false, "note": "search v2", "users": [3, 7], "groups": [2]}},
        {"model": "waffle.switch", "pk": 1, "fields": {"name": "read-only", "active": false, "note": "maintenance"}},
        {"model": "waffle.sample", "pk": 1, "fields": {"name": "log_sampling", "percent": "10.0", "note": ""}},
        {"model": "auth.user", "pk": 3, "fields": {"username": "alice"}}
    ]);
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("waffle.json");
    std::fs::write(&file, dump.to_string()).unwrap();
    let file = file.display().to_string();

    // A dry run says what it would do and changes nothing.
    let out = server.cli(&["flag", "import-waffle", &file, "--dry-run"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("read 3 flags"), "{stderr}");
    assert!(stderr.contains("primary key"), "{stderr}");
    assert!(stderr.contains("re-bucketed"), "{stderr}");
    assert!(
        stderr.contains("not imported: new_search superusers"),
        "{stderr}"
    );
    assert_eq!(
        server
            .http()
            .get("/api/v1/flags?service=shop")
            .body
            .as_array()
            .map_or(0, Vec::len),
        1
    );

    let out = server.cli(&[
        "flag",
        "import-waffle",
        &file,
        "--service",
        "shop",
        "--env",
        "prod",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let changes = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        changes.lines().count(),
        3,
        "one change per imported flag: {changes}"
    );
    let switch = server.http().get("/api/v1/flags/shop/read-only");
    assert_eq!(switch.body["type"], "kill-switch");
    assert_eq!(
        switch.body["environments"]["prod"]["definition"]["enabled"],
        false
    );
    let sample = server.http().get("/api/v1/flags/shop/log_sampling");
    assert_eq!(
        sample.body["environments"]["prod"]["definition"]["strategies"][0]["name"],
        "gradualRolloutRandom"
    );
    // The imported targeting evaluates: user 3 is in.
    let (status, body) = ofrep(&s, "new_search", json!({"context": {"targetingKey": "3"}}));
    assert_eq!(
        (status, body["value"].clone()),
        (200, json!(true)),
        "{body}"
    );
}

/// Polls a flag's schedules until the first one is no longer pending.
fn finished_schedule(server: &Server, flag: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let list = server
            .http()
            .get(&format!("/api/v1/flags/shop/{flag}/schedules"));
        if list.body[0]["state"] != "pending" {
            return list.body[0].clone();
        }
        assert!(
            Instant::now() < deadline,
            "the schedule did not run: {}",
            list.text
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn a_schedule_missed_while_down_runs_late_and_one_on_an_archived_flag_fails() {
    let mut s = setup();
    s.server
        .ok(&["flag", "create", "doomed", "--service", "shop"]);
    s.server.ok(&[
        "flag",
        "schedule",
        "doomed",
        "--service",
        "shop",
        "--env",
        "prod",
        "--enable",
        "--at",
        "+3s",
    ]);
    s.server
        .ok(&["flag", "archive", "doomed", "--service", "shop"]);
    s.server.ok(&[
        "flag",
        "schedule",
        "checkout-v2",
        "--service",
        "shop",
        "--env",
        "prod",
        "--rollout",
        "30",
        "--at",
        "+3s",
    ]);
    let data_dir = s.server.data_dir.clone();
    s.server.terminate();
    std::thread::sleep(Duration::from_secs(8));
    let server = Server::start_with(Options {
        data_dir: Some(data_dir),
        ..Default::default()
    });
    let late = finished_schedule(&server, "checkout-v2");
    assert_eq!(late["state"], "done", "{late}");
    let change = server.http().get(&format!(
        "/api/v1/changes/{}",
        late["change"].as_str().unwrap()
    ));
    assert_eq!(change.body["summary"], "checkout-v2: rollout 30% in prod");
    assert!(
        change.body["description"]
            .as_str()
            .unwrap_or("")
            .contains("late"),
        "{}",
        change.text
    );
    let failed = finished_schedule(&server, "doomed");
    assert_eq!(failed["state"], "failed", "{failed}");
    assert!(
        failed["error"].as_str().unwrap().contains("archived"),
        "{failed}"
    );
    let change = server.http().get(&format!(
        "/api/v1/changes/{}",
        failed["change"].as_str().unwrap()
    ));
    assert_eq!(change.body["status"], "failed", "{}", change.text);
}

#[test]
fn the_rust_sdk_sees_a_toggle_through_the_stream() {
    let s = setup();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        // Polling slower than the test: only the stream can bring the flip in time.
        let config = gantry_flags_sdk::Config::new(s.server.url(), &s.client_token, "it")
            .with_refresh_interval(Duration::from_secs(600));
        let client = gantry_flags_sdk::Client::start(config).await;
        assert!(client.wait_until_ready(Duration::from_secs(10)).await);
        let ctx = gantry_flags_sdk::Context::default().with_user_id("alice");
        assert!(!client.is_enabled("checkout-v2", &ctx));
        assert!(
            client.status().streaming || {
                tokio::time::sleep(Duration::from_millis(500)).await;
                client.status().streaming
            }
        );
        let url = s.server.url();
        let admin = s.server.admin_token();
        tokio::task::spawn_blocking(move || {
            let out = Command::new(BIN)
                .args([
                    "--url",
                    &url,
                    "--token",
                    &admin,
                    "flag",
                    "enable",
                    "checkout-v2",
                    "--service",
                    "shop",
                    "--env",
                    "prod",
                ])
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
        })
        .await
        .unwrap();
        let deadline = Instant::now() + Duration::from_secs(5);
        while !client.is_enabled("checkout-v2", &ctx) {
            assert!(
                Instant::now() < deadline,
                "the SDK did not see the flip through the stream"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        // The server going away leaves the last good set in place.
        client.shutdown().await;
        assert!(client.is_enabled("checkout-v2", &ctx));
    });
}

/// OFREP and frontend evaluations are counted in memory and written at the latest when the
/// server stops, so a restart loses none.
#[test]
fn evaluations_counted_by_the_server_survive_a_restart() {
    let mut s = setup();
    s.server.ok(&[
        "flag",
        "enable",
        "checkout-v2",
        "--service",
        "shop",
        "--env",
        "prod",
    ]);
    for _ in 0..5 {
        let (status, _) = ofrep(
            &s,
            "checkout-v2",
            json!({"context": {"targetingKey": "u1"}}),
        );
        assert_eq!(status, 200);
    }
    let data_dir = s.server.data_dir.clone();
    s.server.terminate();
    let server = Server::start_with(Options {
        data_dir: Some(data_dir),
        ..Default::default()
    });
    let shown = server.http().get("/api/v1/flags/shop/checkout-v2");
    assert_eq!(shown.body["usage"]["prod"]["yes"], 5, "{}", shown.text);
}

/// Revoking an SDK token ends the streams it holds open within the 15 s re-check, as it
/// ends every other stream.
#[test]
fn revoking_an_sdk_token_ends_its_flag_stream() {
    let s = setup();
    let url = s.server.url();
    let token = s.client_token.clone();
    let (send, ended) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut sse = crate::harness::Sse::open_at(&url, "/api/client/stream", &token, None);
        let first = sse.next_event().map(|(event, _, _)| event);
        while sse.next_event().is_some() {}
        let _ = send.send(first);
    });
    std::thread::sleep(Duration::from_millis(500));
    s.server.ok(&["token", "revoke", "shop-prod-server"]);
    let first = ended
        .recv_timeout(Duration::from_secs(25))
        .expect("the stream outlived its token by more than the re-check interval");
    assert_eq!(first.as_deref(), Some("ready"));
}
