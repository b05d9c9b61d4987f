//! Log watches end to end: a service file's `[[logs]]` entries are stored apart from the
//! deploy config (agents get them beside it, never inside), a real agent follows the
//! service's log files from their end, counts matching lines in its polls, and the server
//! stores them as `gantry.logs.<service>.<host>.<name>`; an agent restart neither counts a
//! line twice nor skips one; a symlink out of the service's directory is refused and said;
//! a glob that leaves the directory is refused when the file is applied.

use std::io::Write;
use std::time::{Duration, Instant};

use crate::harness::{Options, Server};
use crate::ship::{artifact, push, wait_online, wait_rollout, Host};

const SERVICE: &str = r#"name = "shop"
roles = ["web"]

[[logs]]
name = "payment.errors"
glob = "shared/log/*.log"
regex = "ERROR .*payment"
"#;

fn matched(server: &Server) -> f64 {
    let r = server
        .http()
        .get("/render?target=gantry.logs.shop.web-1.payment_errors&from=-10min&format=json");
    r.body
        .as_array()
        .and_then(|a| a.first())
        .and_then(|s| s["datapoints"].as_array())
        .map(|points| points.iter().filter_map(|p| p[0].as_f64()).sum())
        .unwrap_or(0.0)
}

fn wait_matched(server: &Server, want: f64) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let got = matched(server);
        if got == want {
            return;
        }
        assert!(
            got < want,
            "counted {got}, more than the {want} lines written"
        );
        assert!(Instant::now() < deadline, "counted {got}, wanted {want}");
        std::thread::sleep(Duration::from_millis(300));
    }
}

fn append(path: &std::path::Path, lines: &str) {
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .unwrap();
    f.write_all(lines.as_bytes()).unwrap();
}

#[test]
fn agents_count_matching_log_lines_into_metrics() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("gantry.toml");
    std::fs::write(
        &config,
        "[ship]\nheartbeat_secs = 1\ntick_ms = 100\n\n[statsd]\nflush_interval_secs = 1\n",
    )
    .unwrap();
    let server = Server::start_with(Options {
        extra_args: vec!["--config".into(), config.display().to_string()],
        ..Default::default()
    });
    server.ok(&["service", "create", "shop", "--envs", "prod"]);

    // A glob out of the service's directory is refused, named by file and line.
    let bad = dir.path().join("shop.toml");
    std::fs::write(&bad, SERVICE.replace("shared/log/*.log", "../../etc/*")).unwrap();
    let out = server.cli(&["service", "apply", bad.to_str().unwrap()]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("shop.toml:6") && err.contains(".."), "{err}");

    std::fs::write(&bad, SERVICE).unwrap();
    let applied = server.ok(&["service", "apply", bad.to_str().unwrap()]);
    assert!(applied.contains("shop applied"), "{applied}");
    let stored = server
        .http()
        .get("/api/v1/services/shop/deploy-config")
        .body;
    assert!(
        !stored["source"].as_str().unwrap().contains("logs"),
        "the deploy config agents parse never holds [[logs]]: {stored}"
    );
    let change = server.ok(&["change", "list", "--service", "shop", "--kind", "config"]);
    assert!(change.contains("deploy config of shop applied"), "{change}");

    let mut host = Host::enroll(&server, dir.path(), "web-1", "prod");
    let log_dir = host.root.join("shop/shared/log");
    std::fs::create_dir_all(&log_dir).unwrap();
    let log = log_dir.join("app.log");
    append(&log, "ERROR old payment failure, before the agent\n");
    // A link out of the service's directory: refused, never read.
    let outside = dir.path().join("outside.log");
    std::fs::write(&outside, "ERROR payment secret\n").unwrap();
    std::os::unix::fs::symlink(&outside, log_dir.join("evil.log")).unwrap();
    host.start_agent(&server, "prod");
    wait_online(&server, &["web-1"]);
    let file = artifact(dir.path(), "1.0", &[]);
    push(&server, &file, "shop", "1.0");
    let id = server.ok(&[
        "deploy", "shop", "1.0", "--env", "prod", "--waves", "1", "--bake", "0s",
    ]);
    wait_rollout(&server, id.trim(), 60, |r| r["state"] == "succeeded");

    // The agent starts at the files' end once it knows the watch: wait for a zero count.
    let deadline = Instant::now() + Duration::from_secs(30);
    while server
        .http()
        .get("/render?target=gantry.logs.shop.web-1.payment_errors&from=-10min&format=json")
        .body
        .as_array()
        .is_none_or(|a| a.is_empty())
    {
        assert!(Instant::now() < deadline, "no log metric from the agent");
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(
        matched(&server),
        0.0,
        "old lines and the link out are not counted"
    );
    append(
        &log,
        "INFO payment ok\nERROR card payment declined\nERROR payment gateway timeout\nERROR disk\n",
    );
    wait_matched(&server, 2.0);

    // A restart: lines written while the agent is down are counted once, when it is back.
    if let Some(mut agent) = host.agent.take() {
        agent.kill().unwrap();
        agent.wait().unwrap();
    }
    append(&log, "ERROR payment refund failed\n");
    host.start_agent(&server, "prod");
    wait_matched(&server, 3.0);
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(matched(&server), 3.0, "nothing counted twice");
    let said = server.log_text();
    assert!(
        said.contains("links out refused") && said.contains("evil.log"),
        "the refused link is said in the server's log"
    );
    assert_eq!(
        said.matches("links out refused").count(),
        1,
        "once, not every poll"
    );
    assert!(
        !said.contains("payment secret"),
        "nothing read from outside"
    );
}
