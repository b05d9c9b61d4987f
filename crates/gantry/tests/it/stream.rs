//! The change stream: Server-Sent Events that resume without gaps.

use std::time::Duration;

use serde_json::json;

use crate::harness::{Server, Sse};

#[test]
fn stream_delivers_and_resumes_with_last_event_id() {
    let server = Server::start();
    let http = server.http();
    let token = server.admin_token();
    let mut sse = Sse::open(&server.url(), &token, None);
    let (event, start, _) = sse.next_event().unwrap();
    assert_eq!(event, "ready");

    let a = http.post("/api/v1/changes", json!({"kind": "deploy", "service": "shop", "environment": "prod", "summary": "a", "status": "in_progress"}));
    let id = a.body["id"].as_str().unwrap().to_string();
    let (event, seq_a, data) = sse.next_event().unwrap();
    assert_eq!(event, "created");
    assert!(seq_a > start);
    let change: serde_json::Value = serde_json::from_str(&data).unwrap();
    assert_eq!(change["id"], id.as_str());
    assert_eq!(change["status"], "in_progress");

    http.patch(
        &format!("/api/v1/changes/{id}"),
        json!({"status": "failed"}),
    );
    let (event, seq_b, data) = sse.next_event().unwrap();
    assert_eq!(event, "updated");
    assert!(seq_b > seq_a);
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&data).unwrap()["status"],
        "failed"
    );
    drop(sse);

    // Changes recorded while nobody listens are delivered on reconnect, in order.
    for i in 0..5 {
        http.post(
            "/api/v1/changes",
            json!({"kind": "note", "summary": format!("gap {i}")}),
        );
    }
    let mut resumed = Sse::open(&server.url(), &token, Some(seq_b));
    assert_eq!(resumed.next_event().unwrap().0, "ready");
    let mut last = seq_b;
    for i in 0..5 {
        let (event, seq, data) = resumed.next_event().unwrap();
        assert_eq!(event, "created");
        assert!(seq > last);
        last = seq;
        assert_eq!(
            serde_json::from_str::<serde_json::Value>(&data).unwrap()["summary"],
            format!("gap {i}")
        );
    }
}

#[test]
fn watch_follows_changes() {
    let server = Server::start();
    // From the start of the log, so the test does not depend on when `watch` connects.
    let mut watch = std::process::Command::new(crate::harness::BIN)
        .args([
            "--json",
            "change",
            "watch",
            "--service",
            "shop",
            "--after",
            "0",
        ])
        .env("GANTRY_URL", server.url())
        .env("GANTRY_TOKEN_FILE", server.data_dir.join("admin.token"))
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(500));
    crate::harness::record(&server, "cart", "prod", "not shown");
    let id = crate::harness::record(&server, "shop", "prod", "shown");
    let stdout = watch.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
        {
            let _ = tx.send(line);
        }
    });
    let line = rx
        .recv_timeout(Duration::from_secs(15))
        .expect("watch prints the change");
    let event: serde_json::Value = serde_json::from_str(&line).unwrap();
    assert_eq!(event["kind"], "created");
    assert_eq!(event["change"]["id"], id.as_str());
    let _ = watch.kill();
    let _ = watch.wait();
}
