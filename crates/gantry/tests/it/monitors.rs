//! `gantry monitor` and `/ping` through the real binary: a monitor file applied as a config
//! change with its diff, a new heartbeat's key shown once, pings turning it CRITICAL and OK,
//! a threshold monitor with no data going CRITICAL by its missing-data policy, a rotated key,
//! and the bad inputs: a wrong file named by line, an unknown key and a malformed path
//! answered alike, an exit code out of range, a body over the limit.

use std::time::{Duration, Instant};

use crate::harness::{token_file, Server};

const FILE: &str = r#"
[[threshold]]
name = "checkout-errors"
service = "shop"
environment = "prod"
target = "stats.shop.checkout.errors"
window = "1m"
interval = "10s"
critical = 5.0
missing = "critical"

[[heartbeat]]
name = "nightly-export"
service = "shop"
environment = "prod"
period = "1d"
grace = "30m"
"#;

fn state_of(server: &Server, name: &str) -> String {
    let m = server.http().get(&format!("/api/v1/monitors/{name}"));
    m.body["state"].as_str().unwrap_or_default().to_string()
}

fn wait_state(server: &Server, name: &str, want: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let got = state_of(server, name);
        if got == want {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{name} stayed {got}, wanted {want}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn ping(server: &Server, path: &str, body: Option<Vec<u8>>) -> (u16, String) {
    // The key in the path is a credential: the logs must not hold it.
    if let Some(key) = path.trim_start_matches("/ping/").split('/').next() {
        crate::logs_check::secret(key);
    }
    let client = reqwest::blocking::Client::new();
    let url = format!("{}{path}", server.url());
    let response = match body {
        Some(b) => client.post(url).body(b).send(),
        None => client.get(url).send(),
    }
    .unwrap();
    (
        response.status().as_u16(),
        response.text().unwrap_or_default(),
    )
}

#[test]
fn monitors_are_applied_evaluated_and_pinged() {
    let server = Server::start();
    server.ok(&["service", "create", "shop", "--envs", "prod"]);
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("shop.toml");
    std::fs::write(&file, FILE).unwrap();
    let file_arg = file.to_str().unwrap();

    let dry = server.ok(&["monitor", "apply", file_arg, "--dry-run"]);
    assert!(
        dry.contains("checkout-errors") && !dry.contains("ping-key"),
        "{dry}"
    );
    let out = server.ok(&["monitor", "apply", file_arg]);
    let key_line = out
        .lines()
        .find(|l| l.starts_with("ping-key nightly-export "))
        .unwrap_or_else(|| panic!("{out}"));
    let key = key_line.split_whitespace().nth(2).unwrap().to_string();
    assert_eq!(key.len(), 64);
    let again = server.ok(&["monitor", "apply", file_arg]);
    assert!(
        again.contains("no change") && !again.contains("ping-key"),
        "{again}"
    );
    // The apply is a config change with the diff.
    let changes = server.http().get("/api/v1/changes?kind=config");
    let text = changes.text;
    assert!(
        text.contains("monitors of shop applied") && text.contains("checkout-errors"),
        "{text}"
    );
    assert!(
        !text.contains(&key) && !server.log_text().contains(&key),
        "a key is never stored or logged"
    );

    // No data: CRITICAL by the missing-data policy.
    wait_state(&server, "checkout-errors", "CRITICAL");

    // The heartbeat: silent until its first ping; a failure is CRITICAL, a success OK.
    assert_eq!(state_of(&server, "nightly-export"), "OK");
    let (status, _) = ping(
        &server,
        &format!("/ping/{key}/fail"),
        Some(b"disk full".to_vec()),
    );
    assert_eq!(status, 200);
    wait_state(&server, "nightly-export", "CRITICAL");
    // The first hard CRITICAL opened an incident; the second alert of the service joined it.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let incidents = server.http().get("/api/v1/incidents?service=shop");
        let list = incidents.body.as_array().cloned().unwrap_or_default();
        if let Some(first) = list.first() {
            assert_eq!(list.len(), 1, "{}", incidents.text);
            assert_eq!(first["source"]["kind"], "alert");
            assert_eq!(first["source"]["monitor"], "checkout-errors");
            assert_eq!(first["severity"], "SEV3");
            let id = first["id"].as_str().unwrap();
            let view = server.http().get(&format!("/api/v1/incidents/{id}"));
            if view.body["timeline"]
                .to_string()
                .contains("nightly-export is CRITICAL")
            {
                break;
            }
        }
        assert!(
            Instant::now() < deadline,
            "no incident joined by the heartbeat's alert"
        );
        std::thread::sleep(Duration::from_millis(300));
    }
    assert_eq!(ping(&server, &format!("/ping/{key}/start"), None).0, 200);
    assert_eq!(ping(&server, &format!("/ping/{key}/0"), None).0, 200);
    wait_state(&server, "nightly-export", "OK");
    let shown = server.ok(&["monitor", "show", "nightly-export"]);
    assert!(
        shown.contains("OK -> CRITICAL") && shown.contains("CRITICAL -> OK"),
        "{shown}"
    );
    let listed = server.ok(&["monitor", "list"]);
    assert!(
        listed.contains("checkout-errors") && listed.contains("CRITICAL"),
        "{listed}"
    );

    // Bad pings: an unknown key and a malformed path get the same 404.
    let unknown = ping(&server, &format!("/ping/{}", "0".repeat(64)), None);
    let malformed = ping(&server, "/ping/not-a-key", None);
    assert_eq!((unknown.0, malformed.0), (404, 404));
    assert_eq!(unknown.1, malformed.1);
    let deeper = ping(&server, &format!("/ping/{key}/a/b"), None);
    assert_eq!(
        deeper, unknown,
        "a deeper path answers as an unknown key does"
    );
    assert_eq!(ping(&server, &format!("/ping/{key}/256"), None).0, 404);
    let (status, text) = ping(
        &server,
        &format!("/ping/{key}"),
        Some(vec![b'x'; 10 * 1024 + 1]),
    );
    assert_eq!(status, 413, "{text}");
    assert!(text.contains("at most"), "{text}");

    // Rotation: the old key stops working, the new one works.
    let rotated = server.ok(&["monitor", "rotate-key", "nightly-export"]);
    let new_key = rotated.split_whitespace().nth(2).unwrap().to_string();
    assert_eq!(ping(&server, &format!("/ping/{key}"), None).0, 404);
    assert_eq!(ping(&server, &format!("/ping/{new_key}"), None).0, 200);

    // A wrong file is refused, naming file, line and key; nothing is applied.
    let bad = dir.path().join("bad.toml");
    std::fs::write(&bad, "[[threshold]]\nname = \"x\"\nservice = \"shop\"\nenvironment = \"prod\"\ntarget = \"a.b\"\ncritical = 5\nfor = 0\n").unwrap();
    let out = server.cli(&["monitor", "apply", bad.to_str().unwrap()]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("bad.toml") && err.contains("for"), "{err}");
    let dup = dir.path().join("other.toml");
    std::fs::write(&dup, FILE).unwrap();
    let out = server.cli(&["monitor", "apply", dup.to_str().unwrap()]);
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("already defined"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // Applying needs admin.
    let reader = token_file(&server, "reader", "read");
    let out = server.cli_with_token_file(&reader, &["monitor", "apply", file_arg]);
    assert!(!out.status.success());
}
