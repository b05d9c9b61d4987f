//! The change log through the CLI: the README's quickstart, and the output conventions.

use serde_json::json;

use crate::harness::{record, Server};

#[test]
fn quickstart_record_list_show_update() {
    let server = Server::start();
    // `record` prints only the id, so `id=$(gantry change record …)` works.
    let id = server
        .ok(&[
            "change",
            "record",
            "--kind",
            "deploy",
            "--service",
            "shop",
            "--env",
            "prod",
            "--summary",
            "Deploy shop 1.4.0",
            "--status",
            "in_progress",
            "--commit-range",
            "a1b2c3..d4e5f6",
            "--link",
            "PR=https://example.com/pr/7",
            "--meta",
            "build=118",
            "--size",
            "12",
        ])
        .trim()
        .to_string();
    assert_eq!(id.len(), 26, "a ULID: {id}");

    let table = server.ok(&["change", "list"]);
    let mut lines = table.lines();
    assert!(lines.next().unwrap().starts_with("ID "), "{table}");
    let row = lines.next().unwrap();
    assert!(
        row.contains(&id) && row.contains("in_progress") && row.contains("Deploy shop 1.4.0"),
        "{row}"
    );

    let listed: serde_json::Value =
        serde_json::from_str(&server.ok(&["--json", "change", "list", "--service", "shop"]))
            .unwrap();
    assert_eq!(listed.as_array().unwrap().len(), 1);
    assert_eq!(listed[0]["id"], id.as_str());
    assert_eq!(listed[0]["actor"], "admin");
    assert_eq!(
        listed[0]["commit_range"],
        json!({"from": "a1b2c3", "to": "d4e5f6"})
    );
    assert_eq!(
        listed[0]["links"],
        json!([{"title": "PR", "url": "https://example.com/pr/7"}])
    );
    assert_eq!(listed[0]["metadata"], json!({"build": "118"}));
    assert_eq!(listed[0]["size"], json!({"value": 12.0, "unit": "commits"}));

    let update = server.cli(&[
        "change",
        "update",
        &id,
        "--status",
        "succeeded",
        "--description",
        "all green",
    ]);
    assert!(
        update.status.success(),
        "{}",
        String::from_utf8_lossy(&update.stderr)
    );
    assert!(update.stdout.is_empty(), "updates print to stderr only");

    let shown: serde_json::Value =
        serde_json::from_str(&server.ok(&["change", "show", &id, "--json"])).unwrap();
    assert_eq!(shown["status"], "succeeded");
    assert!(shown["finished_at"].is_string());
    let history = shown["history"].as_array().unwrap();
    assert_eq!(history.len(), 1);
    assert_eq!(history[0]["actor"], "admin");
    assert_eq!(history[0]["fields"]["status"], "succeeded");
    assert_eq!(history[0]["fields"]["description"], "all green");

    let human = server.ok(&["change", "show", &id]);
    assert!(
        human.contains("history:") && human.contains("status=succeeded"),
        "{human}"
    );

    // Filters that match nothing print only the header, and say so on stderr.
    let out = server.cli(&["change", "list", "--env", "stage"]);
    assert!(out.status.success());
    assert_eq!(String::from_utf8_lossy(&out.stdout).lines().count(), 1);
}

#[test]
fn list_filters_and_pages_through_the_cli() {
    let server = Server::start();
    let http = server.http();
    for i in 0..25 {
        let service = if i % 2 == 0 { "shop" } else { "cart" };
        let reply = http.post(
            "/api/v1/changes",
            json!({"kind": "deploy", "service": service, "environment": "prod", "summary": format!("deploy {i}"),
                   "started_at": format!("2026-11-01T00:{i:02}:00Z")}),
        );
        assert_eq!(reply.status, 201, "{}", reply.text);
    }
    let all: serde_json::Value =
        serde_json::from_str(&server.ok(&["--json", "change", "list", "--limit", "30"])).unwrap();
    let all = all.as_array().unwrap();
    assert_eq!(all.len(), 25);
    assert_eq!(all[0]["summary"], "deploy 24", "newest first");

    // The API pages with a cursor.
    let first = http.get("/api/v1/changes?limit=10&service=shop");
    assert_eq!(first.body["items"].as_array().unwrap().len(), 10);
    let cursor = first.body["next_cursor"].as_str().unwrap().to_string();
    let second = http.get(&format!(
        "/api/v1/changes?limit=10&service=shop&cursor={cursor}"
    ));
    let items = second.body["items"].as_array().unwrap();
    assert_eq!(items.len(), 3);
    assert!(second.body["next_cursor"].is_null());

    let window: serde_json::Value = serde_json::from_str(&server.ok(&[
        "--json",
        "change",
        "list",
        "--since",
        "2026-11-01T00:10:00Z",
        "--until",
        "1793492100",
    ]))
    .unwrap();
    // 00:10 inclusive to 00:15 (epoch 1793492100) exclusive.
    assert_eq!(window.as_array().unwrap().len(), 5);

    let kinds: serde_json::Value =
        serde_json::from_str(&server.ok(&["--json", "change", "list", "--kind", "rollback"]))
            .unwrap();
    assert_eq!(kinds.as_array().unwrap().len(), 0);
    let recent: serde_json::Value =
        serde_json::from_str(&server.ok(&["--json", "change", "list", "--since", "7d"])).unwrap();
    assert_eq!(
        recent.as_array().unwrap().len(),
        0,
        "all started three weeks ago"
    );
}

#[test]
fn services_lifecycle_through_the_cli() {
    let server = Server::start();
    assert_eq!(
        server
            .ok(&["service", "create", "shop", "--envs", "dev,stage,prod"])
            .trim(),
        "shop"
    );
    let table = server.ok(&["service", "list"]);
    assert!(table.contains("dev → stage → prod"), "{table}");
    let shown: serde_json::Value =
        serde_json::from_str(&server.ok(&["--json", "service", "show", "shop"])).unwrap();
    assert_eq!(shown["environments"], json!(["dev", "stage", "prod"]));

    let again = server.cli(&["service", "create", "shop", "--envs", "prod"]);
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("already exists"));

    record(&server, "shop", "prod", "Deploy shop");
    let refused = server.cli(&["service", "delete", "shop"]);
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("--force"));
    server.ok(&["service", "delete", "shop", "--force"]);
    let missing = server.cli(&["service", "show", "shop"]);
    assert!(String::from_utf8_lossy(&missing.stderr).contains("no service named 'shop'"));
    // The change log keeps the changes.
    let listed: serde_json::Value =
        serde_json::from_str(&server.ok(&["--json", "change", "list"])).unwrap();
    assert_eq!(listed.as_array().unwrap().len(), 1);
}

#[test]
fn unregistered_services_refused_when_configured() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("gantry.toml");
    std::fs::write(&config, "auto_create_services = false\n").unwrap();
    let server = Server::start_with(crate::harness::Options {
        extra_args: vec!["--config".into(), config.display().to_string()],
        ..Default::default()
    });
    let out = server.cli(&[
        "change",
        "record",
        "--kind",
        "deploy",
        "--service",
        "shop",
        "--env",
        "prod",
        "--summary",
        "x",
    ]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("gantry service create shop"));
    server.ok(&["service", "create", "shop"]);
    record(&server, "shop", "prod", "now it works");
}

#[test]
fn version_and_help() {
    let out = crate::harness::cli("http://127.0.0.1:9", None, &["version"]);
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        format!("gantry {}", env!("CARGO_PKG_VERSION"))
    );
    for args in [
        vec!["--help"],
        vec!["server", "--help"],
        vec!["change", "record", "--help"],
        vec!["change", "list", "--help"],
        vec!["change", "watch", "--help"],
        vec!["token", "create", "--help"],
        vec!["service", "create", "--help"],
    ] {
        let out = crate::harness::cli("http://127.0.0.1:9", None, &args);
        assert!(out.status.success(), "{args:?}");
        let help = String::from_utf8_lossy(&out.stdout);
        assert!(help.contains("Usage:"), "{args:?}: {help}");
        assert!(
            help.contains("--url") || args[0] == "--help",
            "global options on every command: {args:?}"
        );
    }
}

#[test]
fn unreachable_server_is_a_clear_error() {
    let out = crate::harness::cli("http://127.0.0.1:9", None, &["change", "list"]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("cannot reach the Gantry server at http://127.0.0.1:9"),
        "{err}"
    );
}
