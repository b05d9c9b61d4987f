//! `gantry incident` and `gantry report` through the real binary: an incident opened by hand
//! ranks the change log's suspects, a flag kill switch from the incident is a change linked
//! to it and mitigates it, scopes are enforced, bad input is named, and the report reads
//! the incident's time to detect and resolve and its cause from the records.

use std::process::Output;

use crate::harness::{record, token_file, Server};

fn ok(out: &Output) -> String {
    assert!(
        out.status.success(),
        "stdout: {}\nstderr: {}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn err(out: &Output) -> String {
    assert!(
        !out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn an_incident_ranks_suspects_kills_a_flag_and_shows_in_the_report() {
    let server = Server::start();
    server.ok(&["service", "create", "shop", "--envs", "stage,prod"]);
    let deploy = record(&server, "shop", "prod", "deploy shop 2.0");
    record(&server, "shop", "stage", "deploy shop 2.1 to stage");
    server.ok(&[
        "change",
        "record",
        "--kind",
        "note",
        "--service",
        "shop",
        "--env",
        "prod",
        "--summary",
        "lunch",
    ]);
    server.ok(&["flag", "create", "new-checkout", "--service", "shop"]);
    let flip = server
        .ok(&[
            "flag",
            "enable",
            "new-checkout",
            "--service",
            "shop",
            "--env",
            "prod",
        ])
        .trim()
        .to_string();

    let id = server
        .ok(&[
            "incident",
            "open",
            "--service",
            "shop",
            "--env",
            "prod",
            "--title",
            "checkout errors",
            "--severity",
            "SEV2",
            "--impact-started",
            "2m",
        ])
        .trim()
        .to_string();
    assert_eq!(id.len(), 26, "only the id on stdout: {id}");
    let view = server.http().get(&format!("/api/v1/incidents/{id}"));
    assert_eq!(view.status, 200, "{}", view.text);
    let suspects = view.body["suspects"].as_array().unwrap();
    let ids: Vec<&str> = suspects
        .iter()
        .map(|s| s["change"].as_str().unwrap())
        .collect();
    // The prod deploy, the flag's creation (no environment: every one) and its flip in prod;
    // not the stage deploy, never the note.
    assert_eq!(ids.len(), 3, "{suspects:?}");
    assert!(ids.contains(&deploy.as_str()) && ids.contains(&flip.as_str()));
    assert!(suspects[0]["score"].as_f64().unwrap() >= suspects[1]["score"].as_f64().unwrap());
    assert_eq!(view.body["severity"], "SEV2");
    let shown = server.ok(&["incident", "show", &id]);
    assert!(
        shown.contains("SCORE") && shown.contains("checkout errors") && shown.contains("opened"),
        "{shown}"
    );

    // Scopes: reading is not acting; a flags token cannot roll back.
    let reader = token_file(&server, "reader", "read");
    let out = server.cli_with_token_file(&reader, &["incident", "ack", &id]);
    assert!(err(&out).contains("deploy or flags"), "{}", err(&out));
    let flipper = token_file(&server, "flipper", "flags:shop@prod,read");
    let out = server.cli_with_token_file(&flipper, &["incident", "rollback", &id]);
    assert!(err(&out).contains("deploy"), "{}", err(&out));
    // The deploy suspect was recorded by hand, not made by a rollout: nothing to roll back.
    let out = server.cli(&["incident", "rollback", &id]);
    assert!(err(&out).contains("not made by a rollout"), "{}", err(&out));

    // The kill switch, as the flags token: a change, linked, and the incident mitigated.
    let change = ok(&server.cli_with_token_file(&flipper, &["incident", "flag-off", &id]));
    let change = change.trim();
    let flag = server.http().get("/api/v1/flags/shop/new-checkout");
    assert_eq!(
        flag.body["environments"]["prod"]["definition"]["enabled"],
        false
    );
    let c = server.http().get(&format!("/api/v1/changes/{change}"));
    assert_eq!(c.body["kind"], "flag", "{}", c.text);
    assert!(
        c.body["actor"]
            .as_str()
            .unwrap()
            .contains(&format!("incident {id}")),
        "{}",
        c.text
    );
    let view = server.http().get(&format!("/api/v1/incidents/{id}"));
    assert_eq!(view.body["state"], "mitigated");
    let timeline = view.body["timeline"].to_string();
    assert!(
        timeline.contains("turned flag shop/new-checkout off in prod"),
        "{timeline}"
    );

    server.ok(&["incident", "note", &id, "error rate back to normal"]);
    server.ok(&["incident", "cause", &id, &flip]);
    server.ok(&["incident", "resolve", &id]);
    let out = server.cli(&["incident", "resolve", &id]);
    assert!(err(&out).contains("is resolved"), "{}", err(&out));
    let listed = server.ok(&["incident", "list", "--service", "shop"]);
    assert!(
        listed.contains(&id) && listed.contains("resolved"),
        "{listed}"
    );

    // Bad input.
    let out = server.cli(&[
        "incident",
        "open",
        "--service",
        "shop",
        "--env",
        "prod",
        "--title",
        "x",
        "--severity",
        "SEV5",
    ]);
    assert!(err(&out).contains("SEV5"), "{}", err(&out));
    let out = server.cli(&["incident", "show", "01JF0000000000000000000000"]);
    assert!(err(&out).contains("no incident"), "{}", err(&out));
    let reply = server.http().post(
        "/api/v1/incidents",
        serde_json::json!({"title": "", "service": "shop", "environment": "prod"}),
    );
    assert_eq!(reply.status, 400, "{}", reply.text);

    // The report reads it back: one incident, detected 2 min after the impact, caused by a
    // flag change.
    let report: serde_json::Value = serde_json::from_str(&server.ok(&[
        "--json",
        "report",
        "--service",
        "shop",
        "--since",
        "1d",
        "--by",
        "day",
    ]))
    .unwrap();
    assert_eq!(report["incidents"], 1, "{report:#}");
    assert_eq!(report["mttd"]["n"], 1);
    let mttd = report["mttd"]["mean_s"].as_f64().unwrap();
    assert!((110.0..=190.0).contains(&mttd), "{mttd}");
    assert_eq!(report["mttr"]["n"], 1);
    assert_eq!(report["incidents_by_cause"]["flag"], 1, "{report:#}");
    assert_eq!(report["change_failure_by_kind"]["flag"]["count"], 1);
    let text = server.ok(&["report", "--service", "shop", "--since", "1d"]);
    assert!(
        text.contains("time to detect (MTTD)")
            && text.contains("n=1")
            && text.contains("Cause rule"),
        "{text}"
    );
    let csv = server.ok(&["report", "--since", "2d", "--by", "day", "--csv"]);
    assert!(csv.starts_with("bucket_start,deployments"), "{csv}");
    assert!(csv.lines().count() >= 3, "{csv}");
    // An empty range: n=0, exit 0.
    let empty = server.ok(&["report", "--env", "stage", "--since", "1h"]);
    assert!(empty.contains("n=0"), "{empty}");
}
