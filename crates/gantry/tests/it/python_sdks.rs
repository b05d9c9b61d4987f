//! Real SDKs from PyPI against the real server: Unleash's Python SDK evaluates locally from
//! `/api/client/features` and must agree with Gantry's engine on every case; the
//! OpenFeature OFREP provider evaluates remotely; the Unleash SDK's metrics report shows up
//! as the flag's usage.
//!
//! The SDKs live in a virtual environment `scripts/test` makes (`target/python-sdks`, or
//! `GANTRY_TEST_PYTHON`); with `CI=true` a missing one is a failure.

use std::path::PathBuf;
use std::process::Command;

use serde_json::{json, Value};

use crate::harness::Server;

fn python() -> Option<PathBuf> {
    if let Ok(path) = std::env::var("GANTRY_TEST_PYTHON") {
        return Some(PathBuf::from(path));
    }
    let venv =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target/python-sdks/bin/python");
    if venv.is_file() {
        return Some(venv);
    }
    assert!(
        std::env::var("CI").as_deref() != Ok("true"),
        "the Python SDK environment is missing ({}); scripts/test makes it",
        venv.display()
    );
    eprintln!(
        "skipping: no Python SDK environment at {} (scripts/test makes it)",
        venv.display()
    );
    None
}

fn put(server: &Server, flag: &str, definition: Value) {
    server.ok(&["flag", "create", flag, "--service", "shop"]);
    let reply = server.http().send(
        reqwest::Method::PUT,
        &format!("/api/v1/flags/shop/{flag}/environments/prod"),
        Some(crate::harness::RawBody::Json(definition)),
    );
    assert_eq!(reply.status, 200, "{}", reply.text);
}

#[test]
fn unleash_and_ofrep_sdks_agree_with_the_engine() {
    let Some(python) = python() else {
        return;
    };
    let server = Server::start();
    server.ok(&["service", "create", "shop", "--envs", "stage,prod"]);
    put(
        &server,
        "on-off",
        json!({"enabled": true, "strategies": [{"name": "default"}]}),
    );
    put(
        &server,
        "off",
        json!({"enabled": false, "strategies": [{"name": "default"}]}),
    );
    put(
        &server,
        "users",
        json!({"enabled": true, "strategies": [{"name": "userWithId", "parameters": {"userIds": "u1, u7"}}]}),
    );
    put(
        &server,
        "rollout",
        json!({"enabled": true, "strategies": [{"name": "flexibleRollout",
        "parameters": {"rollout": "50", "stickiness": "userId", "groupId": "rollout"},
        "constraints": [{"contextName": "plan", "operator": "IN", "values": ["pro", "team"]},
                        {"contextName": "userId", "operator": "STR_STARTS_WITH", "values": ["u"]}]}]}),
    );
    put(
        &server,
        "semver",
        json!({"enabled": true, "strategies": [{"name": "default", "constraints": [
        {"contextName": "appVersion", "operator": "SEMVER_GT", "value": "2.0.0"}]}]}),
    );
    put(
        &server,
        "variants",
        json!({"enabled": true, "strategies": [{"name": "default"}], "variants": [
        {"name": "a", "weight": 250, "weightType": "variable", "stickiness": "userId", "payload": {"type": "string", "value": "A"}},
        {"name": "b", "weight": 250, "weightType": "variable", "stickiness": "userId", "payload": {"type": "string", "value": "B"}},
        {"name": "c", "weight": 250, "weightType": "variable", "stickiness": "userId", "payload": {"type": "string", "value": "C"}},
        {"name": "d", "weight": 250, "weightType": "variable", "stickiness": "userId", "payload": {"type": "string", "value": "D"}}]}),
    );
    let token = server
        .ok(&["token", "create", "py", "--scopes", "client:shop@prod"])
        .trim()
        .to_string();

    let mut cases = Vec::new();
    for i in 0..40 {
        let plan = ["free", "pro", "team"][i % 3];
        let version = ["1.9.0", "2.0.0", "2.1.0", "10.0.0-rc.1"][i % 4];
        let context = json!({"userId": format!("u{i}"), "sessionId": format!("s{i}"),
                             "properties": {"plan": plan, "appVersion": version}});
        for (flag, kind) in [
            ("on-off", "boolean"),
            ("off", "boolean"),
            ("users", "boolean"),
            ("rollout", "boolean"),
            ("semver", "boolean"),
            ("variants", "string"),
        ] {
            cases.push(json!({"flag": flag, "type": kind, "context": context}));
        }
    }
    let dir = tempfile::tempdir().unwrap();
    let cases_path = dir.path().join("cases.json");
    std::fs::write(&cases_path, serde_json::to_string(&cases).unwrap()).unwrap();
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/python/sdk_check.py");
    let out = Command::new(&python)
        .arg(&script)
        .arg(server.url())
        .arg(&token)
        .arg(&cases_path)
        .arg(dir.path().join("cache"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let answers: Value = serde_json::from_slice(&out.stdout).unwrap();

    // What Gantry's own engine says on the same document.
    let document: gantry_flags::ClientFeatures = reqwest::blocking::Client::new()
        .get(format!("{}/api/client/features", server.url()))
        .header("authorization", &token)
        .send()
        .unwrap()
        .json()
        .unwrap();
    let engine = gantry_flags::Engine::new(document);
    let mut rng = rand::thread_rng();
    let mut enabled_somewhere = std::collections::HashSet::new();
    for (i, case) in cases.iter().enumerate() {
        let flag = case["flag"].as_str().unwrap();
        let context: gantry_flags::Context =
            serde_json::from_value(case["context"].clone()).unwrap();
        let e = engine
            .evaluate(flag, &context, chrono::Utc::now(), &mut rng)
            .unwrap();
        let unleash = &answers["unleash"][i];
        assert_eq!(
            unleash["enabled"], e.enabled,
            "Unleash SDK, case {i}: {case}"
        );
        assert_eq!(
            unleash["variant"]["name"], e.variant.name,
            "Unleash SDK variant, case {i}: {case}"
        );
        let ofrep = &answers["ofrep"][i];
        if case["type"] == "string" {
            let expected = e.variant.payload.map_or("fallback", |p| p.value.as_str());
            assert_eq!(
                ofrep["value"], expected,
                "OFREP, case {i}: {case} -> {ofrep}"
            );
        } else {
            assert_eq!(
                ofrep["value"], e.enabled,
                "OFREP, case {i}: {case} -> {ofrep}"
            );
            assert!(ofrep["error"].is_null(), "OFREP, case {i}: {ofrep}");
        }
        if e.enabled {
            enabled_somewhere.insert(flag);
        }
    }
    // The cases cover both answers for the targeted flags.
    for flag in ["users", "rollout", "semver"] {
        assert!(enabled_somewhere.contains(flag), "{flag} was never on");
    }

    // The SDK registered and reported: the flag shows its SDK and usage.
    let shown = server.http().get("/api/v1/flags/shop/rollout");
    assert_eq!(
        shown.body["sdks"][0]["app_name"], "gantry-suite",
        "{}",
        shown.text
    );
    let usage = &shown.body["usage"]["prod"];
    assert!(
        usage["yes"].as_i64().unwrap_or(0) + usage["no"].as_i64().unwrap_or(0) >= 40,
        "{}",
        shown.text
    );
}
