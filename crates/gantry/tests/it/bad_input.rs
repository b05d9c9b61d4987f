//! Bad input gets a 4xx whose message names the problem; nothing is stored; the server
//! keeps serving.

use serde_json::json;

use crate::harness::{Http, Server};

/// One bad request and a fragment its error message must contain.
struct Case {
    method: &'static str,
    path: String,
    body: Option<String>,
    status: u16,
    message: &'static str,
}

fn case(
    method: &'static str,
    path: &str,
    body: Option<String>,
    status: u16,
    message: &'static str,
) -> Case {
    Case {
        method,
        path: path.to_string(),
        body,
        status,
        message,
    }
}

fn check(http: &Http, c: &Case) {
    let method: reqwest::Method = c.method.parse().unwrap();
    let reply = http.send(
        method,
        &c.path,
        c.body.clone().map(crate::harness::RawBody::Text),
    );
    assert_eq!(
        reply.status, c.status,
        "{} {}: {}",
        c.method, c.path, reply.text
    );
    assert!(
        reply.body["code"].is_string(),
        "JSON error body: {}",
        reply.text
    );
    let message = reply.body["message"].as_str().unwrap_or_default();
    assert!(
        message.contains(c.message),
        "{} {}: expected '{}' in '{}'",
        c.method,
        c.path,
        c.message,
        message
    );
    assert!(
        !message.to_lowercase().contains("sql"),
        "no internals leak: {message}"
    );
}

#[test]
fn bad_changes_are_refused_and_nothing_is_stored() {
    let server = Server::start();
    let http = server.http();
    let good = json!({"kind": "deploy", "service": "shop", "environment": "prod", "summary": "ok", "status": "in_progress"});
    let created = http.post("/api/v1/changes", good.clone());
    assert_eq!(created.status, 201);
    let id = created.body["id"].as_str().unwrap().to_string();
    let finished = http.patch(
        &format!("/api/v1/changes/{id}"),
        json!({"status": "succeeded"}),
    );
    assert_eq!(finished.status, 200);

    let with = |patch: serde_json::Value| {
        let mut body = good.clone();
        for (k, v) in patch.as_object().unwrap() {
            if v.is_null() {
                body.as_object_mut().unwrap().remove(k);
            } else {
                body[k] = v.clone();
            }
        }
        Some(body.to_string())
    };
    let cases = vec![
        case(
            "POST",
            "/api/v1/changes",
            Some("{\"kind\": \"deploy\",".into()),
            400,
            "not valid JSON",
        ),
        case(
            "POST",
            "/api/v1/changes",
            Some("[1, 2]".into()),
            400,
            "the body must be a JSON object",
        ),
        case(
            "POST",
            "/api/v1/changes",
            Some("".into()),
            400,
            "the body is empty",
        ),
        case(
            "POST",
            "/api/v1/changes",
            with(json!({"servce": "shop"})),
            400,
            "unknown field `servce`",
        ),
        case(
            "POST",
            "/api/v1/changes",
            with(json!({"summary": 42})),
            400,
            "summary: invalid type: integer `42`",
        ),
        case(
            "POST",
            "/api/v1/changes",
            with(json!({"kind": null})),
            400,
            "kind is required",
        ),
        case(
            "POST",
            "/api/v1/changes",
            with(json!({"summary": null})),
            400,
            "summary is required",
        ),
        case(
            "POST",
            "/api/v1/changes",
            with(json!({"kind": "deploi"})),
            400,
            "unknown kind 'deploi'",
        ),
        case(
            "POST",
            "/api/v1/changes",
            with(json!({"status": "done"})),
            400,
            "unknown variant `done`",
        ),
        case(
            "POST",
            "/api/v1/changes",
            with(json!({"summary": "x".repeat(501)})),
            400,
            "summary is 501 characters; the limit is 500",
        ),
        case(
            "POST",
            "/api/v1/changes",
            with(json!({"summary": "x".repeat(1_000_000)})),
            413,
            "larger than this endpoint accepts",
        ),
        case(
            "POST",
            "/api/v1/changes",
            with(json!({"metadata": [1, 2]})),
            400,
            "metadata must be a JSON object, not an array",
        ),
        case(
            "POST",
            "/api/v1/changes",
            with(json!({"metadata": {"k": "v".repeat(70_000)}})),
            400,
            "the limit is 65536",
        ),
        case(
            "POST",
            "/api/v1/changes",
            with(json!({"started_at": "yesterday"})),
            400,
            "started_at: 'yesterday' is not a time",
        ),
        case(
            "POST",
            "/api/v1/changes",
            with(
                json!({"started_at": "2026-11-02T00:00:00Z", "finished_at": "2026-11-01T00:00:00Z", "status": "succeeded"}),
            ),
            400,
            "is before started_at",
        ),
        case(
            "POST",
            "/api/v1/changes",
            with(json!({"service": "shop/../x"})),
            400,
            "is not a valid name",
        ),
        case(
            "POST",
            "/api/v1/changes",
            with(json!({"links": [{"url": "ftp://x"}]})),
            400,
            "links[0].url",
        ),
        case(
            "GET",
            "/api/v1/changes?since=last%20tuesday",
            None,
            400,
            "since 'last tuesday' is not a time",
        ),
        case(
            "GET",
            "/api/v1/changes?since=2026-11-02T00:00:00Z&until=2026-11-01T00:00:00Z",
            None,
            400,
            "is after until",
        ),
        case(
            "GET",
            "/api/v1/changes?limit=0",
            None,
            400,
            "limit '0' must be a whole number from 1 to 1000",
        ),
        case(
            "GET",
            "/api/v1/changes?limit=5000",
            None,
            400,
            "from 1 to 1000",
        ),
        case(
            "GET",
            "/api/v1/changes?cursor=garbage",
            None,
            400,
            "cursor 'garbage'",
        ),
        case(
            "GET",
            "/api/v1/changes?kind=deploi",
            None,
            400,
            "unknown kind 'deploi'",
        ),
        case(
            "GET",
            "/api/v1/changes?colour=blue",
            None,
            400,
            "unknown field `colour`",
        ),
        case(
            "GET",
            "/api/v1/changes/01JDQ4Y3V7W2J8X1B2C3D4E5F6",
            None,
            404,
            "no change with id 01JDQ4Y3V7W2J8X1B2C3D4E5F6",
        ),
        case(
            "GET",
            "/api/v1/changes/not-an-id",
            None,
            400,
            "'not-an-id' is not a change id",
        ),
        case(
            "PATCH",
            &format!("/api/v1/changes/{id}"),
            Some(json!({"status": "in_progress"}).to_string()),
            409,
            "cannot go from succeeded back to in_progress",
        ),
        case(
            "PATCH",
            &format!("/api/v1/changes/{id}"),
            Some(json!({"finished_at": "2000-01-01T00:00:00Z"}).to_string()),
            409,
            "is before started_at",
        ),
        case(
            "GET",
            "/api/v1/changes?service=bad%20name",
            None,
            400,
            "service 'bad name' is not a valid name",
        ),
        case(
            "POST",
            "/events/",
            Some(json!({"what": "far away", "when": 253_402_300_800u64}).to_string()),
            400,
            "is not a time in epoch seconds",
        ),
        case(
            "GET",
            "/tags/autoComplete/tags?limit=-1",
            None,
            400,
            "limit '-1' is not a count",
        ),
        case(
            "POST",
            "/api/v1/silences",
            Some(
                json!({"matcher": {"monitor": {"name": "nope"}}, "ends_at": "2099-01-01T00:00:00Z", "reason": "x"})
                    .to_string(),
            ),
            404,
            "no monitor named 'nope'",
        ),
        case(
            "GET",
            "/api/v1/flags/shop/nope/schedules",
            None,
            404,
            "has no flag named 'nope'",
        ),
        case(
            "PATCH",
            &format!("/api/v1/changes/{id}"),
            Some(json!({"summary": "rewrite history"}).to_string()),
            400,
            "unknown field `summary`",
        ),
        case(
            "PATCH",
            &format!("/api/v1/changes/{id}"),
            Some("{}".into()),
            400,
            "nothing to update",
        ),
        case(
            "PATCH",
            "/api/v1/changes/01JDQ4Y3V7W2J8X1B2C3D4E5F6",
            Some(json!({"status": "failed"}).to_string()),
            404,
            "no change with id",
        ),
        case(
            "GET",
            "/events/get_data?from=-1h&until=-2h",
            None,
            400,
            "is after until",
        ),
        case(
            "GET",
            "/events/get_data?from=whenever",
            None,
            400,
            "from 'whenever' is not a Graphite time",
        ),
        case(
            "POST",
            "/api/v1/services",
            Some(json!({"name": "bad name"}).to_string()),
            400,
            "service 'bad name' is not a valid name",
        ),
        case(
            "POST",
            "/api/v1/tokens",
            Some(json!({"name": "x", "scopes": ["sudo"]}).to_string()),
            400,
            "unknown scope 'sudo'",
        ),
        case(
            "POST",
            "/api/v1/tokens",
            Some(json!({"name": "x", "scopes": ["read"], "expires_in": "soon"}).to_string()),
            400,
            "expires_in 'soon' is not a duration",
        ),
        case(
            "DELETE",
            "/api/v1/changes",
            None,
            405,
            "DELETE is not allowed on /api/v1/changes",
        ),
        case(
            "GET",
            "/api/v2/changes",
            None,
            404,
            "no route for GET /api/v2/changes",
        ),
    ];
    for c in &cases {
        check(&http, c);
    }
    // A body without the JSON content type.
    let reply = http
        .client
        .post(format!("{}/api/v1/changes", server.url()))
        .bearer_auth(server.admin_token())
        .body(good.to_string())
        .send()
        .unwrap();
    assert_eq!(reply.status().as_u16(), 415);

    // Nothing but the one good change was stored, and it is unchanged.
    // An action the incident's state forbids is a conflict, not a malformed request.
    let opened = http.post(
        "/api/v1/incidents",
        json!({"service": "shop", "environment": "prod", "title": "checkout errors"}),
    );
    assert_eq!(opened.status, 201, "{}", opened.text);
    let incident = opened.body["id"].as_str().unwrap().to_string();
    let resolved = http.post(&format!("/api/v1/incidents/{incident}/resolve"), json!({}));
    assert_eq!(resolved.status, 200, "{}", resolved.text);
    let again = http.post(&format!("/api/v1/incidents/{incident}/ack"), json!({}));
    assert_eq!(again.status, 409, "{}", again.text);
    assert!(again.text.contains("is resolved"), "{}", again.text);

    let listed = http.get("/api/v1/changes?kind=deploy");
    assert_eq!(listed.body["items"].as_array().unwrap().len(), 1);
    let change = http.get(&format!("/api/v1/changes/{id}")).body;
    assert_eq!(change["status"], "succeeded");
    assert_eq!(change["history"].as_array().unwrap().len(), 1);
    assert_eq!(http.get("/readyz").status, 200, "still serving");
}

#[test]
fn bad_config_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("gantry.toml");
    std::fs::write(&config, "listen = \"127.0.0.1:0\"\nlisten_adress = \"x\"\n").unwrap();
    let out = crate::harness::bare_server()
        .args(["--data-dir"])
        .arg(dir.path())
        .arg("--config")
        .arg(&config)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("gantry.toml") && err.contains("listen_adress") && err.contains("line 2"),
        "{err}"
    );

    let out = crate::harness::bare_server()
        .args(["--data-dir"])
        .arg(dir.path())
        .args(["--database-url", "mysql://x"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("use sqlite://PATH or postgres://"));
}

#[test]
fn a_taken_port_or_data_dir_is_named() {
    let server = Server::start();
    let out = crate::harness::bare_server()
        .args(["--data-dir"])
        .arg(tempfile::tempdir().unwrap().path())
        .args(["--listen", &server.addr])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!("cannot listen on {}", server.addr)) && err.contains("--listen"),
        "{err}"
    );

    let out = crate::harness::bare_server()
        .args(["--listen", "127.0.0.1:0", "--data-dir"])
        .arg(&server.data_dir)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr)
        .contains("another gantry server is using the data directory"));
}
