//! Tokens and scopes: who may do what, and the errors that say why not.

use serde_json::json;

use crate::harness::{cli, token_file, Http, Server};

#[test]
fn admin_token_is_created_once_and_private() {
    let server = Server::start();
    let path = server.data_dir.join("admin.token");
    let first = server.admin_token();
    assert!(first.starts_with("gantry_"));
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
    }
    assert!(
        !server.log_text().contains(&first),
        "the token itself is never logged"
    );
    let data_dir = server.data_dir.clone();
    let mut server = server;
    server.terminate();
    let restarted = Server::start_with(crate::harness::Options {
        data_dir: Some(data_dir),
        ..Default::default()
    });
    assert_eq!(
        restarted.admin_token(),
        first,
        "a non-empty store gets no new admin token"
    );
    assert!(restarted.ok(&["whoami"]).starts_with("admin  admin"));
}

#[test]
fn scopes_narrow_what_a_token_may_do() {
    let server = Server::start();
    let ci = token_file(&server, "ci", "read,write:shop@prod");
    let ok = server.cli_with_token_file(
        &ci,
        &[
            "change",
            "record",
            "--kind",
            "deploy",
            "--service",
            "shop",
            "--env",
            "prod",
            "--summary",
            "ok",
        ],
    );
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );

    let denied = server.cli_with_token_file(
        &ci,
        &[
            "change",
            "record",
            "--kind",
            "deploy",
            "--service",
            "shop",
            "--env",
            "stage",
            "--summary",
            "no",
        ],
    );
    assert_eq!(denied.status.code(), Some(1));
    let err = String::from_utf8_lossy(&denied.stderr);
    assert!(err.contains("lacks the scope write:shop@stage"), "{err}");

    // The actor of a change is the token's name.
    let listed: serde_json::Value = serde_json::from_str(&String::from_utf8_lossy(
        &server
            .cli_with_token_file(&ci, &["--json", "change", "list"])
            .stdout,
    ))
    .unwrap();
    assert_eq!(listed[0]["actor"], "ci");

    // Token management needs admin.
    let http = Http::new(&server.url(), Some(std::fs::read_to_string(&ci).unwrap()));
    let reply = http.get("/api/v1/tokens");
    assert_eq!(reply.status, 403);
    assert!(reply.body["message"]
        .as_str()
        .unwrap()
        .contains("lacks the scope admin"));

    // A read token narrowed to a service lists only with that filter.
    let reader = token_file(&server, "reader", "read:cart");
    let reader_http = Http::new(
        &server.url(),
        Some(std::fs::read_to_string(&reader).unwrap()),
    );
    assert_eq!(reader_http.get("/api/v1/changes").status, 403);
    assert_eq!(reader_http.get("/api/v1/changes?service=cart").status, 200);
    let shop_change = listed[0]["id"].as_str().unwrap();
    assert_eq!(
        reader_http
            .get(&format!("/api/v1/changes/{shop_change}"))
            .status,
        403
    );
}

#[test]
fn missing_bad_expired_and_revoked_tokens_are_refused() {
    let server = Server::start();
    let anonymous = Http::new(&server.url(), None);
    let reply = anonymous.get("/api/v1/changes");
    assert_eq!(reply.status, 401);
    assert_eq!(reply.body["code"], "unauthorized");
    assert!(reply.body["message"]
        .as_str()
        .unwrap()
        .contains("Authorization: Bearer"));
    assert_eq!(
        reply.headers.get("www-authenticate").unwrap(),
        "Bearer realm=\"gantry\""
    );

    assert_eq!(
        anonymous
            .with_token(Some("gantry_nope"))
            .get("/api/v1/changes")
            .status,
        401
    );

    let secret = server.ok(&[
        "token",
        "create",
        "short",
        "--scopes",
        "read",
        "--expires",
        "1s",
    ]);
    std::thread::sleep(std::time::Duration::from_millis(1500));
    let reply = anonymous
        .with_token(Some(secret.trim()))
        .get("/api/v1/changes");
    assert_eq!(reply.status, 401);
    assert!(
        reply.body["message"].as_str().unwrap().contains("expired"),
        "{}",
        reply.text
    );

    let ci = token_file(&server, "ci", "read,write");
    server.ok(&["token", "revoke", "ci"]);
    let out = server.cli_with_token_file(
        &ci,
        &[
            "change",
            "record",
            "--kind",
            "note",
            "--summary",
            "after revoke",
        ],
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("token 'ci' has been revoked"));
    let listed = server.http().get("/api/v1/changes");
    assert_eq!(listed.body["items"], json!([]), "nothing was stored");
    let tokens = server.ok(&["token", "list"]);
    assert!(!tokens.contains("ci "), "{tokens}");
    let again = server.cli(&["token", "revoke", "ci"]);
    assert!(String::from_utf8_lossy(&again.stderr).contains("no active token named 'ci'"));

    // Bad scope names are refused by the CLI before anything is sent.
    let out = server.cli(&["token", "create", "x", "--scopes", "raed"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown scope 'raed'"));
}

#[test]
fn public_endpoints_need_no_token() {
    let server = Server::start();
    let anonymous = Http::new(&server.url(), None);
    assert_eq!(anonymous.get("/healthz").body, json!({"status": "ok"}));
    assert_eq!(anonymous.get("/readyz").body, json!({"status": "ready"}));
    let doc = anonymous.get("/api/v1/openapi.json");
    assert_eq!(doc.status, 200);
    assert!(doc.body["openapi"].as_str().unwrap().starts_with("3."));
    // Loopback clients read Gantry's own metrics without a token.
    let metrics = anonymous.get("/metrics");
    assert_eq!(metrics.status, 200);
    assert!(
        metrics.text.contains(
            "gantry_http_requests_total{method=\"GET\",route=\"/healthz\",status=\"200\"} 1"
        ),
        "{}",
        metrics.text
    );
    assert!(
        metrics
            .text
            .contains("gantry_store_operation_duration_seconds_bucket{le="),
        "{}",
        metrics.text
    );
    // The token file of a local server is found without flags.
    let out = cli(&server.url(), None, &["whoami"]);
    assert_eq!(
        out.status.code(),
        Some(1),
        "no token: the CLI is run outside the data dir"
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("needs a token"));
}
