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

/// Past 20 refused credentials a minute, an address's requests without a valid token get
/// 429 with `Retry-After` (never a held connection), while a valid token is still served.
/// Missing credentials and unknown ping keys are not counted; refusals are.
#[test]
fn repeated_bad_tokens_from_one_address_get_429_while_valid_ones_are_served() {
    let server = Server::start();
    let anonymous = Http::new(&server.url(), None);
    // Neither a missing credential nor an unknown ping key counts.
    for _ in 0..30 {
        assert_eq!(anonymous.get("/api/v1/changes").status, 401);
        assert_eq!(anonymous.get("/ping/not-a-key").status, 404);
    }
    let guesser = anonymous.with_token(Some("gantry_guess"));
    for n in 0..20 {
        let reply = guesser.get("/api/v1/changes");
        assert_eq!(reply.status, 401, "guess {n}: {}", reply.text);
    }
    let started = std::time::Instant::now();
    let reply = guesser.get("/api/v1/services");
    assert_eq!(reply.status, 429, "{}", reply.text);
    assert!(
        started.elapsed() < std::time::Duration::from_secs(2),
        "answered at once"
    );
    assert_eq!(reply.body["code"], "too_many_requests");
    let wait: u64 = reply.headers["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=60).contains(&wait), "{wait}");
    // Basic auth (Grafana's way) and the SDKs' bare header are refused the same way, and so
    // is a request without any credential now.
    assert_eq!(anonymous.get("/api/v1/changes").status, 429);
    let basic = reqwest::blocking::Client::new()
        .get(format!("{}/render?target=x", server.url()))
        .basic_auth("grafana", Some("gantry_guess"))
        .send()
        .unwrap();
    assert_eq!(basic.status().as_u16(), 429);
    // A valid token is served as ever, through the API and the CLI.
    assert_eq!(server.http().get("/api/v1/changes").status, 200);
    server.ok(&["whoami"]);
    // Counted in the server's own metrics (public to loopback).
    let metrics = anonymous.get("/metrics").text;
    let counted: f64 = metrics
        .lines()
        .find_map(|line| line.strip_prefix("gantry_auth_failures_total "))
        .expect("gantry_auth_failures_total")
        .trim()
        .parse()
        .unwrap();
    assert!(counted >= 22.0, "{counted}");
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

#[test]
fn a_token_on_the_command_line_wins_over_one_inherited() {
    let server = Server::start();
    let narrow = token_file(&server, "ro", "read");
    let narrow_secret = std::fs::read_to_string(&narrow).unwrap().trim().to_string();
    let admin_file = server.data_dir.join("admin.token");
    let admin_secret = server.admin_token();
    let whoami = |env: &[(&str, &str)], args: &[&str]| {
        let home = tempfile::tempdir().unwrap();
        let mut c = std::process::Command::new(crate::harness::BIN);
        c.args(args)
            .arg("whoami")
            .env("GANTRY_URL", server.url())
            .env("HOME", home.path())
            .env_remove("GANTRY_TOKEN")
            .env_remove("GANTRY_TOKEN_FILE")
            .env_remove("XDG_CONFIG_HOME")
            .env_remove("GANTRY_DATA_DIR")
            .current_dir(home.path());
        for (k, v) in env {
            c.env(k, v);
        }
        let out = c.output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        (
            String::from_utf8_lossy(&out.stdout)
                .split_whitespace()
                .next()
                .unwrap_or("")
                .to_string(),
            String::from_utf8_lossy(&out.stderr).trim().to_string(),
        )
    };
    let narrow_path = narrow.to_str().unwrap();
    let admin_path = admin_file.to_str().unwrap();
    // (environment, arguments, who answers, which source whoami names)
    type Case<'a> = (Vec<(&'a str, &'a str)>, Vec<&'a str>, &'a str, &'a str);
    let cases: Vec<Case> = vec![
        // The case users hit: an admin token inherited, a narrow one named.
        (
            vec![("GANTRY_TOKEN", &admin_secret)],
            vec!["--token-file", narrow_path],
            "ro",
            "--token-file",
        ),
        (
            vec![("GANTRY_TOKEN_FILE", admin_path)],
            vec!["--token", &narrow_secret],
            "ro",
            "--token",
        ),
        (
            vec![("GANTRY_TOKEN_FILE", admin_path)],
            vec!["--token-file", narrow_path],
            "ro",
            "--token-file",
        ),
        // Both on the command line: --token first; both inherited: GANTRY_TOKEN first.
        (
            vec![],
            vec!["--token", &narrow_secret, "--token-file", admin_path],
            "ro",
            "--token",
        ),
        (
            vec![
                ("GANTRY_TOKEN", &narrow_secret),
                ("GANTRY_TOKEN_FILE", admin_path),
            ],
            vec![],
            "ro",
            "GANTRY_TOKEN",
        ),
        (
            vec![("GANTRY_TOKEN_FILE", narrow_path)],
            vec![],
            "ro",
            "GANTRY_TOKEN_FILE",
        ),
        (
            vec![],
            vec!["--token-file", admin_path],
            "admin",
            "--token-file",
        ),
    ];
    for (env, args, name, source) in cases {
        let (who, said) = whoami(&env, &args);
        assert_eq!(who, name, "env {env:?} args {args:?}: {said}");
        assert!(
            said.contains(&format!("token from {source}")),
            "env {env:?} args {args:?}: {said}"
        );
        assert!(
            !said.contains(&admin_secret) && !said.contains(&narrow_secret),
            "{said}"
        );
    }
}

#[test]
fn answers_carry_security_headers() {
    let server = Server::start();
    let api = server.http().get("/api/v1/changes");
    assert_eq!(api.headers["cache-control"], "no-store");
    assert_eq!(api.headers["x-content-type-options"], "nosniff");
    let health = server.http().get("/healthz");
    assert_eq!(health.headers["x-content-type-options"], "nosniff");
    assert!(
        health.headers.get("strict-transport-security").is_none(),
        "no HSTS without TLS"
    );
}
