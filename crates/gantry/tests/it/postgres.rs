//! Several servers on one PostgreSQL database behave as one.

use std::time::Duration;

use serde_json::json;

use crate::harness::{postgres_url, Options, Server, Sse};

#[test]
fn two_servers_share_one_database() {
    let url = postgres_url("two_servers");
    let a = Server::start_with(Options {
        database_url: Some(url.clone()),
        ..Default::default()
    });
    let b = Server::start_with(Options {
        database_url: Some(url),
        ..Default::default()
    });
    // The first server created the admin token; the second found one and made none.
    let token = a.admin_token();
    assert!(!b.data_dir.join("admin.token").exists());
    let a_http = crate::harness::Http::new(&a.url(), Some(token.clone()));
    let b_http = crate::harness::Http::new(&b.url(), Some(token.clone()));

    let mut stream_b = Sse::open(&b.url(), &token, None);
    assert_eq!(stream_b.next_event().unwrap().0, "ready");

    let created = a_http.post(
        "/api/v1/changes",
        json!({"kind": "deploy", "service": "shop", "environment": "prod", "summary": "via A"}),
    );
    assert_eq!(created.status, 201);
    let id = created.body["id"].as_str().unwrap();

    let listed = b_http.get("/api/v1/changes?service=shop");
    assert_eq!(listed.body["items"][0]["id"], id);

    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        if let Some(event) = stream_b.next_event() {
            let _ = tx.send(event);
        }
    });
    let (event, _, data) = rx
        .recv_timeout(Duration::from_secs(15))
        .expect("B streams A's change");
    assert_eq!(event, "created");
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&data).unwrap()["id"],
        id
    );

    // A token revoked through B is refused by A at once.
    let secret = b_http
        .post("/api/v1/tokens", json!({"name": "ci", "scopes": ["read"]}))
        .body["token"]
        .as_str()
        .unwrap()
        .to_string();
    let ci_on_a = a_http.with_token(Some(&secret));
    assert_eq!(ci_on_a.get("/api/v1/changes").status, 200);
    assert_eq!(b_http.delete("/api/v1/tokens/ci").status, 204);
    assert_eq!(ci_on_a.get("/api/v1/changes").status, 401);

    let status = a_http.get("/api/v1/status").body;
    assert_eq!(status["store"], "postgres");
}
