//! The whole loop through the real binary: a service whose key metric follows the build each
//! host runs, real `gantry agent` processes, a good deploy, then a deploy that halves the
//! metric; the detector's verdict (after against before, seasonally expected from history a
//! day and a week back), the regression gate halting the rollout and rolling it back, an
//! incident naming that deploy, the metric recovering, the incident resolved, and the
//! report's time to detect and to resolve read from that incident's own clocks.
//!
//! The traffic: one thread per host sends the StatsD counter `shop.<host>.requests` at the
//! rate the file `RATE` holds in the release the host's `current` link points at (read
//! again every tick), so a switch and a rollback change it the moment the agent makes them.
//! The history: Graphite plaintext with timestamps, at the store's resolution for these
//! series (1 s), for the 30 minutes before the traffic starts and for the same windows a
//! day and a week earlier.

use std::io::Write;
use std::net::{TcpStream, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use serde_json::Value;

use crate::harness::{Options, Server, BIN};

const HOSTS: [&str; 3] = ["web-1", "web-2", "web-3"];
/// Requests per second per host on a good build, and on the broken one.
const GOOD_RATE: u32 = 200;
const BAD_RATE: u32 = 100;
/// The sender's tick.
const TICK: Duration = Duration::from_millis(50);

/// The deploy config and the key metric: the service's total, and each host's own series for
/// comparing hosts on the new build with the others during a rollout.
const SERVICE_FILE: &str = r#"name = "shop"
roles = ["web"]
keep_releases = 3

[detect]
watch = "60m"

[[detect.metric]]
name = "requests"
target = "sumSeries(stats.shop.*.requests)"
direction = "drop"
per_host = "stats.shop.$host.requests"
"#;

/// StatsD flushes every second; the shop's series are kept at 1 s for 8 days, so the
/// windows a week back are read at the same resolution as today's.
const SERVER_CONFIG: &str = r#"[statsd]
flush_interval_secs = 1

[storage]
fsync_interval_secs = 0.2

[[storage.retention]]
pattern = '^stats\.shop\.'
retentions = "1s:8d"

[ship]
heartbeat_secs = 1
host_lost_after_secs = 15
tick_ms = 100
"#;

/// A gzipped tar of a release: `VERSION` and `RATE`.
fn artifact(dir: &Path, version: &str, rate: u32) -> PathBuf {
    let path = dir.join(format!("shop-{version}.tar.gz"));
    let file = std::fs::File::create(&path).unwrap();
    let gz = flate2::write::GzEncoder::new(file, flate2::Compression::fast());
    let mut tar = tar::Builder::new(gz);
    for (name, data) in [("VERSION", version.to_string()), ("RATE", rate.to_string())] {
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_entry_type(tar::EntryType::Regular);
        tar.append_data(&mut h, name, data.as_bytes()).unwrap();
    }
    tar.into_inner().unwrap().finish().unwrap();
    path
}

/// One host: its root, its agent process, its traffic thread.
struct Host {
    name: String,
    root: PathBuf,
    agent: Child,
}

impl Host {
    fn start(server: &Server, dir: &Path, name: &str) -> Host {
        let token = server.ok(&["host", "enroll", name, "--env", "prod", "--roles", "web"]);
        let token_file = dir.join(format!("{name}.token"));
        std::fs::write(&token_file, token.trim()).unwrap();
        let root = dir.join(format!("root-{name}"));
        let agent = Command::new(BIN)
            .args(["agent", "--env", "prod", "--roles", "web", "--root"])
            .arg(&root)
            .args(["--url", &server.url(), "--token-file"])
            .arg(&token_file)
            .stdout(Stdio::null())
            .stderr(crate::logs_check::file("agent").0)
            .spawn()
            .unwrap();
        Host {
            name: name.to_string(),
            root,
            agent,
        }
    }

    /// The version the host's `current` link points at.
    fn running(&self) -> Option<String> {
        std::fs::read_to_string(self.root.join("shop/current/VERSION")).ok()
    }
}

impl Drop for Host {
    fn drop(&mut self) {
        let _ = self.agent.kill();
        let _ = self.agent.wait();
    }
}

/// Sends `shop.<host>.requests` at the rate in `<root>/shop/current/RATE`, on an absolute
/// schedule of ticks, until `stop`.
fn traffic(host: &Host, statsd: String, stop: Arc<AtomicBool>) -> std::thread::JoinHandle<()> {
    let rate_file = host.root.join("shop/current/RATE");
    let key = format!("shop.{}.requests", host.name);
    std::thread::spawn(move || {
        let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
        let per_second = 1.0 / TICK.as_secs_f64();
        let start = Instant::now();
        let mut tick = 0u32;
        let mut owed = 0.0;
        while !stop.load(Ordering::Relaxed) {
            let rate: f64 = std::fs::read_to_string(&rate_file)
                .ok()
                .and_then(|r| r.trim().parse().ok())
                .unwrap_or(0.0);
            owed += rate / per_second;
            let whole = owed.floor();
            if whole >= 1.0 {
                owed -= whole;
                let _ = socket.send_to(format!("{key}:{whole}|c").as_bytes(), &statsd);
            }
            tick += 1;
            let next = start + TICK * tick;
            if let Some(wait) = next.checked_duration_since(Instant::now()) {
                std::thread::sleep(wait);
            }
        }
    })
}

/// Stops the traffic threads when dropped (also when the test fails).
struct Stop(Arc<AtomicBool>);

impl Drop for Stop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

/// A small deterministic noise in [-5 %, +5 %].
struct Noise(u64);

impl Noise {
    fn around(&mut self, level: f64) -> f64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let unit = (self.0 >> 11) as f64 / (1u64 << 53) as f64;
        (level * (0.95 + 0.1 * unit)).round()
    }
}

fn listener(server: &Server, protocol: &str) -> String {
    let status = server.http().get("/api/v1/status").body;
    status["listeners"][protocol]
        .as_str()
        .unwrap_or_else(|| panic!("no {protocol} listener in {status}"))
        .to_string()
}

/// Each host at the good rate, every second of `[from, until)`, over Graphite plaintext.
fn backfill(graphite: &str, from: i64, until: i64, noise: &mut Noise) {
    let mut text = String::new();
    for t in from..until {
        for host in HOSTS {
            let v = noise.around(f64::from(GOOD_RATE));
            text.push_str(&format!("stats.shop.{host}.requests {v} {t}\n"));
        }
    }
    let mut tcp = TcpStream::connect(graphite).unwrap();
    tcp.write_all(text.as_bytes()).unwrap();
}

/// Polls `what` until it answers `Some`, failing with `context()` after `secs`.
fn wait_for<T>(secs: u64, what: impl Fn() -> Option<T>, context: impl Fn() -> String) -> T {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(v) = what() {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "not there after {secs} s: {}",
            context()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn time(v: &Value) -> DateTime<Utc> {
    v.as_str()
        .unwrap_or_else(|| panic!("not a time: {v}"))
        .parse()
        .unwrap_or_else(|e| panic!("not a time: {v}: {e}"))
}

fn seconds(from: DateTime<Utc>, to: DateTime<Utc>) -> f64 {
    (to - from).num_milliseconds() as f64 / 1000.0
}

/// The last `n` complete values of a host's series since `from` (epoch seconds; the slot
/// still filling left out).
fn last_values(server: &Server, host: &str, from: i64, n: usize) -> Vec<f64> {
    let body = server
        .http()
        .get(&format!(
            "/render?target=stats.shop.{host}.requests&from={from}&format=json"
        ))
        .body;
    let mut values: Vec<f64> = body[0]["datapoints"]
        .as_array()
        .map(|points| points.iter().filter_map(|p| p[0].as_f64()).collect())
        .unwrap_or_default();
    values.pop();
    values.split_off(values.len().saturating_sub(n))
}

#[test]
fn a_bad_deploy_is_detected_halted_rolled_back_and_reported() {
    let started = Instant::now();
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("gantry.toml");
    std::fs::write(&config, SERVER_CONFIG).unwrap();
    let server = Server::start_with(Options {
        extra_args: vec!["--config".into(), config.display().to_string()],
        ..Default::default()
    });
    server.ok(&["service", "create", "shop", "--envs", "prod"]);
    let service_file = dir.path().join("shop.toml");
    std::fs::write(&service_file, SERVICE_FILE).unwrap();
    server.ok(&["service", "apply", service_file.to_str().unwrap()]);
    let hosts: Vec<Host> = HOSTS
        .iter()
        .map(|n| Host::start(&server, dir.path(), n))
        .collect();
    wait_for(
        30,
        || {
            let list = server.http().get("/api/v1/hosts").body;
            HOSTS
                .iter()
                .all(|n| {
                    list.as_array().is_some_and(|a| {
                        a.iter().any(|h| h["name"] == *n && h["status"] == "online")
                    })
                })
                .then_some(())
        },
        || format!("hosts online: {}", server.http().get("/api/v1/hosts").text),
    );
    for (version, rate) in [("1.0", GOOD_RATE), ("2.0", BAD_RATE)] {
        let file = artifact(dir.path(), version, rate);
        server.ok(&[
            "build",
            "push",
            file.to_str().unwrap(),
            "--service",
            "shop",
            "--version",
            version,
        ]);
    }

    // The good build everywhere: what a rollback returns to.
    let out = server.cli(&[
        "deploy", "shop", "1.0", "--env", "prod", "--bake", "0s", "--wait",
    ]);
    assert!(
        out.status.success(),
        "deploy 1.0: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    for h in &hosts {
        assert_eq!(h.running().as_deref(), Some("1.0"), "{}", h.name);
    }

    // History, then live traffic that follows each host's build.
    let graphite = listener(&server, "graphite");
    let statsd = listener(&server, "statsd");
    let now = Utc::now().timestamp();
    let mut noise = Noise(11);
    backfill(&graphite, now - 1800, now, &mut noise);
    for back in [86_400, 7 * 86_400] {
        // The before window (30 min) and the after window of any change in the next 10 min.
        backfill(
            &graphite,
            now - back - 1800 - 120,
            now - back + 600,
            &mut noise,
        );
    }
    let stop = Stop(Arc::new(AtomicBool::new(false)));
    let senders: Vec<_> = hosts
        .iter()
        .map(|h| traffic(h, statsd.clone(), stop.0.clone()))
        .collect();
    // Live values reach the store at the good rate (and the history is there).
    for host in HOSTS {
        wait_for(
            30,
            || {
                let v = last_values(&server, host, now + 1, 3);
                (v.len() == 3 && v.iter().all(|x| (150.0..=250.0).contains(x))).then_some(())
            },
            || {
                format!(
                    "{host}'s live traffic: {:?}",
                    last_values(&server, host, now + 1, 10)
                )
            },
        );
    }
    let week_ago = server
        .http()
        .get(&format!(
            "/render?target=sumSeries(stats.shop.*.requests)&from={}&until={}&format=json",
            now - 7 * 86_400 - 60,
            now - 7 * 86_400
        ))
        .body;
    let stored = week_ago[0]["datapoints"]
        .as_array()
        .map_or(0, |p| p.iter().filter(|p| p[0].as_f64().is_some()).count());
    assert!(stored >= 59, "a week back is stored at 1 s: {week_ago}");

    // The bad build, one host at a time.
    let rollout_id = server
        .ok(&[
            "deploy", "shop", "2.0", "--env", "prod", "--waves", "1,2,3", "--bake", "5s",
        ])
        .lines()
        .next()
        .unwrap()
        .to_string();
    let rollout = wait_for(
        90,
        || {
            let r = server
                .http()
                .get(&format!("/api/v1/rollouts/{rollout_id}"))
                .body;
            matches!(
                r["state"].as_str(),
                Some("succeeded" | "failed" | "rolled_back" | "aborted")
            )
            .then_some(r)
        },
        || {
            format!(
                "rollout: {}\nverdicts: {}",
                server
                    .http()
                    .get(&format!("/api/v1/rollouts/{rollout_id}"))
                    .text,
                server.http().get("/api/v1/verdicts?service=shop").text
            )
        },
    );
    let change_id = rollout["change_id"].as_str().unwrap().to_string();

    // One verdict (none for the good deploy): the bad deploy's change and rollout.
    let verdicts = server.http().get("/api/v1/verdicts?service=shop").body;
    let verdicts = verdicts.as_array().unwrap();
    assert_eq!(verdicts.len(), 1, "{verdicts:#?}");
    let verdict = &verdicts[0];
    assert_eq!(verdict["regression"], true);
    assert_eq!(verdict["metric"], "requests");
    assert_eq!(verdict["change_id"], change_id.as_str());
    assert_eq!(verdict["rollout_id"], rollout_id.as_str());
    assert_eq!(verdict["movement"], "drop");
    let effect = verdict["effect"].as_f64().unwrap();
    let expected = verdict["expected_ratio"].as_f64().unwrap();
    match verdict["comparison"].as_str() {
        // Usually: the host(s) on the new build at half the rate of the others.
        Some("hosts") => {
            assert!((-0.6..=-0.4).contains(&effect), "{verdict:#}");
            assert_eq!(expected, 1.0, "{verdict:#}");
        }
        // When the total fell first: against what the day and the week before expected
        // (flat: their history is level).
        Some("change") => {
            assert!((-0.6..=-0.15).contains(&effect), "{verdict:#}");
            assert_eq!(
                verdict["baselines"],
                serde_json::json!(["1d", "7d"]),
                "{verdict:#}"
            );
            assert!((0.95..=1.05).contains(&expected), "{verdict:#}");
        }
        other => panic!("comparison {other:?}: {verdict:#}"),
    }
    let verdict_id = verdict["id"].as_str().unwrap();

    // The gate failed the rollout: halted and rolled back, as its change records.
    assert_eq!(rollout["state"], "rolled_back", "{rollout:#}");
    let reason = rollout["reason"].as_str().unwrap_or_default();
    assert!(
        reason.starts_with(&format!("gate regression: {verdict_id}")),
        "{reason}"
    );
    let tasks = rollout["tasks"].as_array().unwrap();
    let hit: Vec<&str> = tasks
        .iter()
        .filter(|t| t["purpose"] == "deploy" && !t["switched_at"].is_null())
        .map(|t| t["host"].as_str().unwrap())
        .collect();
    let back: Vec<&str> = tasks
        .iter()
        .filter(|t| t["purpose"] == "rollback" && t["state"] == "succeeded")
        .map(|t| t["host"].as_str().unwrap())
        .collect();
    // Halted before it reached every host: the canary's wave is held until the detector
    // can have judged it.
    assert!(
        !hit.is_empty() && hit.len() < HOSTS.len(),
        "{hit:?}: {rollout:#}"
    );
    for host in &hit {
        assert!(back.contains(host), "{host} went back: {rollout:#}");
    }
    let change = server
        .http()
        .get(&format!("/api/v1/changes/{change_id}"))
        .body;
    assert_eq!(change["status"], "rolled_back", "{change:#}");
    // The verdict names the change once, as the change log does.
    let summary = verdict["summary"].as_str().unwrap_or_default();
    assert!(
        summary.contains(&format!("after {}", change["summary"].as_str().unwrap()))
            && !summary.contains("deploy deploy"),
        "{summary}"
    );
    assert!(
        change["description"]
            .as_str()
            .unwrap_or_default()
            .contains(&format!("gate regression: {verdict_id}")),
        "{change:#}"
    );
    for h in &hosts {
        assert_eq!(
            h.running().as_deref(),
            Some("1.0"),
            "{} after the rollback",
            h.name
        );
    }

    // The incident: opened by the verdict, the deploy its top suspect, impact from the
    // rollout's first switch.
    let incidents = server.http().get("/api/v1/incidents?service=shop").body;
    let incidents = incidents.as_array().unwrap();
    assert_eq!(incidents.len(), 1, "{incidents:#?}");
    let incident_id = incidents[0]["id"].as_str().unwrap().to_string();
    let incident = server
        .http()
        .get(&format!("/api/v1/incidents/{incident_id}"))
        .body;
    assert_eq!(incident["source"]["kind"], "verdict", "{incident:#}");
    assert_eq!(incident["source"]["verdict"], verdict_id);
    assert_eq!(incident["severity"], "SEV2");
    assert_eq!(
        incident["suspects"][0]["change"],
        change_id.as_str(),
        "{incident:#}"
    );
    let first_switch = tasks
        .iter()
        .filter(|t| t["purpose"] == "deploy")
        .filter_map(|t| t["switched_at"].as_str())
        .map(|t| t.parse::<DateTime<Utc>>().unwrap())
        .min()
        .unwrap();
    let impact = time(&incident["impact_started_at"]);
    let detected = time(&incident["detected_at"]);
    assert!(seconds(first_switch, impact).abs() < 0.01, "{incident:#}");
    assert!(
        detected >= impact && detected <= time(&rollout["finished_at"]),
        "{incident:#}"
    );

    // The metric recovers: every host back at the good rate.
    let back_at = time(&rollout["finished_at"]).timestamp() + 1;
    for host in HOSTS {
        wait_for(
            30,
            || {
                let v = last_values(&server, host, back_at, 3);
                (v.len() == 3 && v.iter().all(|x| (150.0..=250.0).contains(x))).then_some(())
            },
            || {
                format!(
                    "{host} after the rollback: {:?}",
                    last_values(&server, host, back_at, 10)
                )
            },
        );
    }

    server.ok(&["incident", "resolve", &incident_id]);
    let incident = server
        .http()
        .get(&format!("/api/v1/incidents/{incident_id}"))
        .body;
    assert_eq!(incident["state"], "resolved", "{incident:#}");
    let resolved = time(&incident["resolved_at"]);

    // The report: one incident, its time to detect and to resolve from its own clocks.
    let report: Value = serde_json::from_str(&server.ok(&[
        "--json",
        "report",
        "--service",
        "shop",
        "--env",
        "prod",
        "--since",
        "1h",
    ]))
    .unwrap();
    assert_eq!(report["incidents"], 1, "{report:#}");
    let round = |s: f64| (s * 10.0).round() / 10.0;
    for (figure, want) in [
        ("mttd", seconds(impact, detected)),
        ("mttr", seconds(detected, resolved)),
    ] {
        assert_eq!(report[figure]["n"], 1, "{figure}: {report:#}");
        let got = report[figure]["mean_s"].as_f64().unwrap();
        assert!(
            (got - round(want)).abs() <= 0.11,
            "{figure}: the report says {got} s, the incident's clocks {want} s"
        );
        assert_eq!(report[figure]["median_s"], report[figure]["mean_s"]);
    }

    drop(stop);
    for s in senders {
        s.join().unwrap();
    }
    let first_served = tasks
        .iter()
        .filter(|t| t["purpose"] == "deploy")
        .filter_map(|t| t["undrained_at"].as_str())
        .map(|t| t.parse::<DateTime<Utc>>().unwrap())
        .min()
        .unwrap();
    eprintln!(
        "scenario: verdict {:.1} s after the first host served; rollout finished {:.1} s after",
        seconds(first_served, time(&verdict["at"])),
        seconds(first_served, time(&rollout["finished_at"]))
    );
    eprintln!(
        "scenario: {} of {} hosts ran the bad build; verdict by {}, {:.1} s after the first switch; took {:.0} s",
        hit.len(),
        HOSTS.len(),
        verdict["comparison"],
        seconds(impact, detected),
        started.elapsed().as_secs_f64()
    );
}
