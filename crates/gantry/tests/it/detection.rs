//! Regression detection through the real binary: a service file's `[detect]` table is stored
//! apart from the deploy config (agents never see it; a wrong one is named by file and line),
//! and a change after which the key metric halves gets a regression verdict and an incident
//! naming that change as its top suspect.

use std::io::Write;
use std::net::TcpStream;
use std::time::{Duration, Instant};

use crate::harness::Server;

const SERVICE_FILE: &str = r#"name = "shop"

[detect]
watch = "60m"

[[detect.metric]]
name = "requests"
target = "stats.shop.requests"
direction = "drop"
"#;

fn listener(server: &Server, protocol: &str) -> String {
    let status = server.http().get("/api/v1/status").body;
    status["listeners"][protocol].as_str().unwrap().to_string()
}

#[test]
fn a_halved_metric_after_a_change_is_a_verdict_and_an_incident() {
    let server = Server::start();
    server.ok(&["service", "create", "shop", "--envs", "prod"]);
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("shop.toml");
    std::fs::write(&file, SERVICE_FILE).unwrap();
    server.ok(&["service", "apply", file.to_str().unwrap()]);
    let stored = server.http().get("/api/v1/services/shop/deploy-config");
    assert_eq!(stored.status, 200, "{}", stored.text);
    let source = stored.body["source"].as_str().unwrap();
    assert!(
        !source.contains("detect"),
        "agents never see [detect]: {source}"
    );

    // A wrong [detect] table is named by file and line, and nothing changes.
    let bad = dir.path().join("bad.toml");
    std::fs::write(&bad, SERVICE_FILE.replace("\"drop\"", "\"down\"")).unwrap();
    let out = server.cli(&["service", "apply", bad.to_str().unwrap()]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("bad.toml:9") && err.contains("[detect]"),
        "{err}"
    );

    // 40 minutes of history at 100/s, halved since a deploy 10 minutes ago.
    let now = chrono::Utc::now().timestamp();
    let change_at = now - 600;
    // The change first: with no change in its window, the always-on watch would judge the
    // shift alone.
    let change = server
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
            "deploy shop 3.0",
            "--started-at",
            &change_at.to_string(),
        ])
        .trim()
        .to_string();
    let mut tcp = TcpStream::connect(listener(&server, "graphite")).unwrap();
    let mut text = String::new();
    let mut x: u64 = 7;
    let mut t = now - 2400;
    while t < now {
        x = x
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let noise = ((x >> 33) % 11) as f64 - 5.0;
        let level = if t >= change_at { 50.0 } else { 100.0 };
        text.push_str(&format!("stats.shop.requests {} {t}\n", level + noise));
        t += 10;
    }
    tcp.write_all(text.as_bytes()).unwrap();
    drop(tcp);

    let deadline = Instant::now() + Duration::from_secs(60);
    let verdict = loop {
        let v = server.http().get("/api/v1/verdicts?service=shop");
        if let Some(first) = v.body.as_array().and_then(|a| a.first()).cloned() {
            break first;
        }
        assert!(
            Instant::now() < deadline,
            "no verdict: {}\n{}",
            v.text,
            server.log_text()
        );
        std::thread::sleep(Duration::from_millis(500));
    };
    assert_eq!(verdict["regression"], true);
    assert_eq!(verdict["metric"], "requests");
    assert_eq!(verdict["change_id"], change.as_str());
    let effect = verdict["effect"].as_f64().unwrap();
    assert!((-0.6..=-0.4).contains(&effect), "{verdict:#}");
    let listed = server.ok(&["detect", "list", "--service", "shop"]);
    assert!(
        listed.contains("requests") && listed.contains(&change),
        "{listed}"
    );

    // The incident names the change as its top suspect.
    let incidents = server.http().get("/api/v1/incidents?service=shop");
    let incident = &incidents.body[0];
    assert_eq!(incident["source"]["kind"], "verdict", "{}", incidents.text);
    assert_eq!(incident["source"]["verdict"], verdict["id"]);
    assert_eq!(incident["severity"], "SEV2");
    assert_eq!(incident["suspects"][0]["change"], change.as_str());
    // One verdict per change and metric, however many looks follow.
    std::thread::sleep(Duration::from_secs(12));
    let all = server.http().get("/api/v1/verdicts?service=shop");
    assert_eq!(all.body.as_array().unwrap().len(), 1, "{}", all.text);
}

/// The always-on watch: a key metric that drops with no change recorded gets a verdict
/// naming no change, and an incident.
#[test]
fn a_shift_with_no_change_is_found_by_the_watch() {
    let server = Server::start();
    server.ok(&["service", "create", "shop", "--envs", "stage,prod"]);
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("shop.toml");
    std::fs::write(&file, SERVICE_FILE).unwrap();
    server.ok(&["service", "apply", file.to_str().unwrap()]);
    // 40 minutes at 100/s, and 30/s for the last three.
    let now = chrono::Utc::now().timestamp();
    let now = now - now % 10;
    let mut tcp = TcpStream::connect(listener(&server, "graphite")).unwrap();
    let mut text = String::new();
    let mut x: u64 = 11;
    for t in (now - 2400..now).step_by(10) {
        x = x
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let noise = ((x >> 33) % 11) as f64 - 5.0;
        let level = if t >= now - 180 { 30.0 } else { 100.0 };
        text.push_str(&format!("stats.shop.requests {} {t}\n", level + noise));
    }
    tcp.write_all(text.as_bytes()).unwrap();
    drop(tcp);
    let deadline = Instant::now() + Duration::from_secs(60);
    let verdict = loop {
        let v = server.http().get("/api/v1/verdicts?service=shop");
        if let Some(first) = v.body.as_array().and_then(|a| a.first()).cloned() {
            break first;
        }
        assert!(Instant::now() < deadline, "no verdict: {}", v.text);
        std::thread::sleep(Duration::from_millis(500));
    };
    assert_eq!(verdict["comparison"], "watch", "{verdict:#}");
    assert_eq!(verdict["change_id"], serde_json::Value::Null);
    assert_eq!(verdict["environment"], "prod", "the service's production");
    assert_eq!(verdict["movement"], "drop");
    let effect = verdict["effect"].as_f64().unwrap();
    assert!((-0.8..=-0.55).contains(&effect), "{verdict:#}");
    assert!(
        verdict["summary"]
            .as_str()
            .unwrap()
            .contains("with no change in its window"),
        "{verdict:#}"
    );
    let incidents = server.http().get("/api/v1/incidents?service=shop");
    assert_eq!(
        incidents.body[0]["source"]["verdict"], verdict["id"],
        "{}",
        incidents.text
    );
    // One episode, one verdict.
    std::thread::sleep(Duration::from_secs(12));
    let all = server.http().get("/api/v1/verdicts?service=shop");
    assert_eq!(all.body.as_array().unwrap().len(), 1, "{}", all.text);
}
