//! Graphite's events API over the change log, as Grafana calls it.

use base64::Engine as _;
use serde_json::json;

use crate::harness::Server;

#[test]
fn changes_are_graphite_events() {
    let server = Server::start();
    let http = server.http();
    let deploy = http.post(
        "/api/v1/changes",
        json!({"kind": "deploy", "service": "shop", "environment": "prod", "summary": "Deploy shop 2.0",
               "description": "fixes checkout", "started_at": "2026-11-20T10:00:00Z"}),
    );
    assert_eq!(deploy.status, 201);
    let flag = http.post(
        "/api/v1/changes",
        json!({"kind": "flag", "service": "cart", "environment": "prod", "summary": "Flip new-cart", "started_at": "2026-11-20T11:00:00Z"}),
    );
    assert_eq!(flag.status, 201);

    let events = http.get("/events/get_data?from=20261120&until=23:59_20261120&tags=shop");
    assert_eq!(events.status, 200, "{}", events.text);
    assert_eq!(
        events.body,
        json!([{"id": deploy.body["id"], "when": 1795168800.0, "what": "Deploy shop 2.0",
                "tags": ["deploy", "shop", "prod"], "data": "fixes checkout"}])
    );
    // Every tag must match (intersection), unless set=union.
    assert_eq!(
        http.get("/events/get_data?from=20261120&tags=prod%20flag")
            .body
            .as_array()
            .unwrap()
            .len(),
        1
    );
    assert_eq!(
        http.get("/events/get_data?from=20261120&tags=shop&tags=flag&set=union")
            .body
            .as_array()
            .unwrap()
            .len(),
        2
    );
    assert_eq!(
        http.get("/events/get_data?from=20261120&tags=service%3Dcart")
            .body
            .as_array()
            .unwrap()
            .len(),
        1
    );
    // Oldest first, as Graphite answers.
    let both = http.get("/events/get_data?from=20261120&tags=prod");
    assert_eq!(both.body[0]["what"], "Deploy shop 2.0");
    assert_eq!(both.body[1]["what"], "Flip new-cart");
    assert!(both.headers.get("x-gantry-events-truncated").is_none());
    // Relative Graphite times.
    assert_eq!(
        http.get("/events/get_data?from=-1h&until=now").body,
        json!([])
    );

    // Grafana's data source sends basic auth with the token as password.
    let basic = base64::engine::general_purpose::STANDARD
        .encode(format!("grafana:{}", server.admin_token()));
    let reply = reqwest::blocking::Client::new()
        .get(format!(
            "{}/events/get_data?from=20261120&tags=shop",
            server.url()
        ))
        .header("authorization", format!("Basic {basic}"))
        .send()
        .unwrap();
    assert_eq!(reply.status().as_u16(), 200);
}

#[test]
fn posting_a_graphite_event_records_a_change() {
    let server = Server::start();
    let http = server.http();
    let reply = http.post(
        "/events/",
        json!({"what": "Config push", "tags": "kind=config service=shop env=prod hotfix", "when": 1795168800, "data": "raised pool size"}),
    );
    assert_eq!(reply.status, 200, "{}", reply.text);
    let id = reply.body["id"].as_str().unwrap().to_string();
    let change = http.get(&format!("/api/v1/changes/{id}")).body;
    assert_eq!(change["kind"], "config");
    assert_eq!(change["service"], "shop");
    assert_eq!(change["environment"], "prod");
    assert_eq!(change["summary"], "Config push");
    assert_eq!(change["description"], "raised pool size");
    assert_eq!(change["started_at"], "2026-11-20T10:00:00Z");
    assert_eq!(change["metadata"], json!({"labels": ["hotfix"]}));
    // Kind defaults to note; a list of tags works too; the label is a tag on read.
    let note = http.post(
        "/events/",
        json!({"what": "Game day starts", "tags": ["gameday"]}),
    );
    assert_eq!(note.status, 200);
    let read = http.get("/events/get_data?from=-1h&tags=gameday");
    assert_eq!(read.body[0]["tags"], json!(["note", "gameday"]));

    let bad = http.post("/events/", json!({"what": "x", "when": "yesterday"}));
    assert_eq!(bad.status, 400, "{}", bad.text);
    let bad = http.post("/events/", json!({"what": "x", "tags": "kind=nope"}));
    assert_eq!(bad.status, 400);
    assert!(bad.body["message"]
        .as_str()
        .unwrap()
        .contains("unknown kind 'nope'"));
}

#[test]
fn get_data_is_cut_at_ten_thousand_newest() {
    let server = Server::start();
    let http = server.http();
    // Through the real API: 10,001 instants, oldest first.
    let mut handles = Vec::new();
    for worker in 0..4 {
        let http = crate::harness::Http::new(&server.url(), Some(server.admin_token()));
        handles.push(std::thread::spawn(move || {
            for i in (worker..10_001).step_by(4) {
                let started = 1_700_000_000 + i as i64;
                let reply = http.post(
                    "/api/v1/changes",
                    json!({"kind": "note", "summary": format!("n{i}"), "started_at": chrono_rfc3339(started)}),
                );
                assert_eq!(reply.status, 201);
            }
        }));
    }
    for h in handles {
        h.join().unwrap();
    }
    let reply = http.get("/events/get_data?from=1600000000&until=now");
    assert_eq!(reply.status, 200);
    let events = reply.body.as_array().unwrap();
    assert_eq!(events.len(), 10_000);
    assert_eq!(
        reply.headers.get("x-gantry-events-truncated").unwrap(),
        "true"
    );
    assert_eq!(events[0]["what"], "n1", "the oldest one was dropped");
    assert_eq!(events[9_999]["what"], "n10000");
}

fn chrono_rfc3339(epoch: i64) -> String {
    chrono::DateTime::from_timestamp(epoch, 0)
        .unwrap()
        .to_rfc3339()
}
