//! The server process: crash safety, graceful shutdown, TLS.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::json;

use crate::harness::{Http, Options, Server, Sse};

/// A server killed with SIGKILL while changes are being recorded loses none whose POST had
/// returned 201.
#[test]
fn sigkill_loses_no_acknowledged_change() {
    let mut server = Server::start();
    let acknowledged = Arc::new(Mutex::new(Vec::<String>::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let mut writers = Vec::new();
    for w in 0..8 {
        let http = Http::new(&server.url(), Some(server.admin_token()));
        let acknowledged = acknowledged.clone();
        let stop = stop.clone();
        writers.push(std::thread::spawn(move || {
            let mut i = 0;
            while !stop.load(Ordering::Relaxed) {
                let sent = http
                    .client
                    .post(format!("{}/api/v1/changes", http.base))
                    .bearer_auth(http.token.as_deref().unwrap())
                    .json(&json!({"kind": "deploy", "service": format!("svc{w}"), "environment": "prod", "summary": format!("w{w} #{i}")}))
                    .send();
                match sent {
                    Ok(r) if r.status().as_u16() == 201 => {
                        let body: serde_json::Value = r.json().unwrap();
                        acknowledged.lock().unwrap().push(body["id"].as_str().unwrap().to_string());
                    }
                    _ => break,
                }
                i += 1;
            }
        }));
    }
    std::thread::sleep(Duration::from_millis(1500));
    server.kill();
    stop.store(true, Ordering::Relaxed);
    for w in writers {
        w.join().unwrap();
    }
    let acknowledged = acknowledged.lock().unwrap().clone();
    assert!(
        acknowledged.len() > 50,
        "writers were writing: {}",
        acknowledged.len()
    );

    let restarted = Server::start_with(Options {
        data_dir: Some(server.data_dir.clone()),
        ..Default::default()
    });
    let http = restarted.http();
    let mut stored = std::collections::HashSet::new();
    let mut cursor: Option<String> = None;
    loop {
        let path = match &cursor {
            Some(c) => format!("/api/v1/changes?limit=1000&cursor={c}"),
            None => "/api/v1/changes?limit=1000".to_string(),
        };
        let page = http.get(&path).body;
        for item in page["items"].as_array().unwrap() {
            stored.insert(item["id"].as_str().unwrap().to_string());
        }
        match page["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_string()),
            None => break,
        }
    }
    let lost: Vec<&String> = acknowledged
        .iter()
        .filter(|id| !stored.contains(*id))
        .collect();
    assert!(
        lost.is_empty(),
        "{} acknowledged changes lost: {lost:?}",
        lost.len()
    );
}

/// SIGTERM: open streams end, the process exits 0 within the grace period, and the data
/// directory is reusable at once.
#[test]
fn sigterm_shuts_down_gracefully() {
    let mut server = Server::start();
    let mut sse = Sse::open(&server.url(), &server.admin_token(), None);
    assert_eq!(sse.next_event().unwrap().0, "ready");
    let reader = std::thread::spawn(move || while sse.next_event().is_some() {});
    let started = std::time::Instant::now();
    let status = server.terminate();
    assert!(
        status.success(),
        "exit status {status:?}; log:\n{}",
        server.log_text()
    );
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "took {:?}",
        started.elapsed()
    );
    reader.join().unwrap();
    let log = server.log_text();
    assert!(
        log.contains("shutting down") && log.contains("stopped"),
        "{log}"
    );
    let again = Server::start_with(Options {
        data_dir: Some(server.data_dir.clone()),
        ..Default::default()
    });
    assert_eq!(again.http().get("/readyz").status, 200);
}

#[test]
fn serves_https_with_tls_flags() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let dir = tempfile::tempdir().unwrap();
    let cert =
        rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_string(), "localhost".to_string()])
            .unwrap();
    let cert_path = dir.path().join("cert.pem");
    let key_path = dir.path().join("key.pem");
    std::fs::write(&cert_path, cert.cert.pem()).unwrap();
    std::fs::write(&key_path, cert.key_pair.serialize_pem()).unwrap();
    let server = Server::start_with(Options {
        extra_args: vec![
            "--tls-cert".into(),
            cert_path.display().to_string(),
            "--tls-key".into(),
            key_path.display().to_string(),
        ],
        scheme: Some("https"),
        ..Default::default()
    });
    let client = reqwest::blocking::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(cert.cert.pem().as_bytes()).unwrap())
        .build()
        .unwrap();
    let reply = client
        .post(format!("{}/api/v1/changes", server.url()))
        .bearer_auth(server.admin_token())
        .json(&json!({"kind": "note", "summary": "over TLS"}))
        .send()
        .unwrap();
    assert_eq!(reply.status().as_u16(), 201);
    // Plain HTTP to a TLS port does not get an answer.
    assert!(
        reqwest::blocking::get(format!("http://{}/healthz", server.addr))
            .map_or(true, |r| !r.status().is_success())
    );

    let missing = crate::harness::bare_server()
        .args(["--listen", "127.0.0.1:0", "--tls-cert"])
        .arg(&cert_path)
        .arg("--data-dir")
        .arg(dir.path().join("other"))
        .output()
        .unwrap();
    assert_eq!(missing.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&missing.stderr).contains("--tls-cert and --tls-key go together")
    );
}
