//! Shipping end to end: a real server, real `gantry agent` processes on loopback (each with
//! its own root directory), and a small real HTTP app (a few lines of Python) whose health
//! endpoint reports its version. Deploys in waves, automatic rollback when wave 2 fails,
//! rollback, promote, and the faults the issue lists.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::harness::{token_file, wait_exit, Options, Server, Sse, BIN};

const APP: &str = r#"import http.server, os
here = os.path.dirname(os.path.abspath(__file__))
version = open(os.path.join(here, "VERSION")).read().strip()
port = int(open(os.path.join(here, "config", "port")).read().strip())
broken = os.path.exists(os.path.join(here, "config", "broken-" + version))
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = (("broken " if broken else "") + version).encode()
        self.send_response(500 if broken else 200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *args):
        pass
server = http.server.ThreadingHTTPServer(("127.0.0.1", port), H)
open(os.path.join(here, "..", "..", "shared", "app.pid"), "w").write(str(os.getpid()))
server.serve_forever()
"#;

const RESTART: &str = r#"#!/bin/sh
pidfile=../../shared/app.pid
if [ -f "$pidfile" ]; then
  pid=$(cat "$pidfile")
  kill "$pid" 2>/dev/null
  i=0
  while kill -0 "$pid" 2>/dev/null && [ $i -lt 100 ]; do sleep 0.05; i=$((i+1)); done
fi
[ -f config/slow ] && sleep 4
nohup python3 app.py >../../shared/app.log 2>&1 &
echo "started version $GANTRY_VERSION (was ${GANTRY_PREVIOUS_VERSION:-none})"
"#;

const HEALTH: &str = r#"#!/usr/bin/env python3
import os, sys, urllib.request
port = open("config/port").read().strip()
try:
    body = urllib.request.urlopen("http://127.0.0.1:" + port + "/", timeout=2).read().decode()
except Exception as e:
    print("health check failed:", e)
    sys.exit(1)
if body != os.environ.get("GANTRY_VERSION"):
    print("serving", body, "expected", os.environ.get("GANTRY_VERSION"))
    sys.exit(1)
print("healthy", body)
"#;

const CONFIG: &str = r#"
name = "shop"
roles = ["web"]
keep_releases = 3
shared = ["config/"]

[hooks]
restart = ["bin/restart"]

[health]
command = ["bin/health"]
timeout_secs = 5
retries = 15
interval_secs = 1
"#;

/// A gzipped tar of the app at `version`, plus extra entries (path, bytes).
pub(crate) fn artifact(dir: &Path, version: &str, extra: &[(&str, &[u8])]) -> PathBuf {
    let path = dir.join(format!("shop-{version}.tar.gz"));
    let file = std::fs::File::create(&path).unwrap();
    let gz = flate2::write::GzEncoder::new(file, flate2::Compression::fast());
    let mut tar = tar::Builder::new(gz);
    let mut add = |name: &str, data: &[u8], mode: u32| {
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(mode);
        h.set_entry_type(tar::EntryType::Regular);
        tar.append_data(&mut h, name, data).unwrap();
    };
    add("VERSION", version.as_bytes(), 0o644);
    add("app.py", APP.as_bytes(), 0o644);
    add("bin/restart", RESTART.as_bytes(), 0o755);
    add("bin/health", HEALTH.as_bytes(), 0o755);
    for (name, data) in extra {
        add(name, data, 0o644);
    }
    tar.into_inner().unwrap().finish().unwrap();
    path
}

/// A tar.gz with one raw entry whose name the tar crate's builder would refuse.
fn evil_artifact(dir: &Path, entry: &str) -> PathBuf {
    let path = dir.join("evil.tar.gz");
    let file = std::fs::File::create(&path).unwrap();
    let gz = flate2::write::GzEncoder::new(file, flate2::Compression::fast());
    let mut tar = tar::Builder::new(gz);
    let data = b"owned";
    let mut h = tar::Header::new_old();
    {
        let name = &mut h.as_old_mut().name;
        name[..entry.len()].copy_from_slice(entry.as_bytes());
    }
    h.set_size(data.len() as u64);
    h.set_mode(0o644);
    h.set_entry_type(tar::EntryType::Regular);
    h.set_cksum();
    tar.append(&h, &data[..]).unwrap();
    tar.into_inner().unwrap().finish().unwrap();
    path
}

pub(crate) fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// One host: its root directory, its app's port, its agent process.
pub(crate) struct Host {
    pub(crate) name: String,
    pub(crate) root: PathBuf,
    port: u16,
    token_file: PathBuf,
    pub(crate) agent: Option<Child>,
}

impl Host {
    pub(crate) fn enroll(server: &Server, dir: &Path, name: &str, env: &str) -> Host {
        let token = server.ok(&["host", "enroll", name, "--env", env, "--roles", "web"]);
        let token_file = dir.join(format!("{name}.token"));
        std::fs::write(&token_file, token.trim()).unwrap();
        let root = dir.join(format!("root-{name}"));
        let port = free_port();
        let config = root.join("shop/shared/config");
        std::fs::create_dir_all(&config).unwrap();
        std::fs::write(config.join("port"), port.to_string()).unwrap();
        Host {
            name: name.to_string(),
            root,
            port,
            token_file,
            agent: None,
        }
    }

    pub(crate) fn start_agent(&mut self, server: &Server, env: &str) {
        let child = Command::new(BIN)
            .args(["agent", "--env", env, "--roles", "web", "--root"])
            .arg(&self.root)
            .args(["--url", &server.url(), "--token-file"])
            .arg(&self.token_file)
            .env("GANTRY_LOG", "info")
            .stdout(Stdio::null())
            .stderr(crate::logs_check::file("agent").0)
            .spawn()
            .unwrap();
        self.agent = Some(child);
    }

    /// What the host's app answers now.
    fn serving(&self) -> Option<String> {
        let url = format!("http://127.0.0.1:{}/", self.port);
        let resp = reqwest::blocking::Client::new()
            .get(url)
            .timeout(Duration::from_secs(2))
            .send()
            .ok()?;
        resp.text().ok()
    }

    fn current_release(&self) -> Option<String> {
        std::fs::read_link(self.root.join("shop/current"))
            .ok()
            .map(|p| p.display().to_string())
    }
}

impl Drop for Host {
    fn drop(&mut self) {
        if let Some(mut agent) = self.agent.take() {
            let _ = agent.kill();
            let _ = agent.wait();
        }
        if let Ok(pid) = std::fs::read_to_string(self.root.join("shop/shared/app.pid")) {
            let _ = Command::new("kill").arg(pid.trim()).status();
        }
    }
}

fn ship_server(data_dir: Option<PathBuf>, config_dir: &Path) -> Server {
    let config = config_dir.join("gantry.toml");
    std::fs::write(
        &config,
        "[ship]\nheartbeat_secs = 1\nhost_lost_after_secs = 6\ntick_ms = 100\nmax_artifact_bytes = 4000000\n",
    )
    .unwrap();
    Server::start_with(Options {
        data_dir,
        extra_args: vec!["--config".into(), config.display().to_string()],
        ..Default::default()
    })
}

/// Waits until every host has reported in (its agent polled).
pub(crate) fn wait_online(server: &Server, names: &[&str]) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let hosts = server.http().get("/api/v1/hosts").body;
        let online = names.iter().all(|n| {
            hosts
                .as_array()
                .unwrap()
                .iter()
                .any(|h| h["name"] == *n && h["status"] == "online")
        });
        if online {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "hosts never came online: {hosts}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Every host's app answers `version`.
fn assert_fleet(hosts: &[Host], version: &str, when: &str) {
    for h in hosts {
        assert_eq!(h.serving().as_deref(), Some(version), "{} {when}", h.name);
    }
}

/// Asserts a CLI call exited 0, showing its stderr otherwise.
fn succeeded(out: &std::process::Output, what: &str) {
    assert!(
        out.status.success(),
        "{what}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Pushes an artifact as a build; returns its id.
pub(crate) fn push(server: &Server, file: &Path, service: &str, version: &str) -> String {
    let file = file.to_str().unwrap();
    let out = server.ok(&[
        "build",
        "push",
        file,
        "--service",
        service,
        "--version",
        version,
    ]);
    out.trim().to_string()
}

/// Polls a rollout until `done` holds (or fails after `secs`), returning it.
pub(crate) fn wait_rollout(
    server: &Server,
    id: &str,
    secs: u64,
    done: impl Fn(&Value) -> bool,
) -> Value {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        let r = rollout(server, id);
        if done(&r) {
            return r;
        }
        assert!(
            Instant::now() < deadline,
            "rollout {id} not there after {secs} s: {r}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn rollout(server: &Server, id: &str) -> Value {
    server.http().get(&format!("/api/v1/rollouts/{id}")).body
}

#[test]
fn deploys_in_waves_rolls_back_by_itself_and_promotes() {
    if !python_available() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let server = ship_server(None, dir.path());
    let config = dir.path().join("shop.toml");
    std::fs::write(&config, CONFIG).unwrap();
    let applied = server.ok(&["service", "apply", config.to_str().unwrap()]);
    assert!(applied.contains("shop applied"), "{applied}");

    let mut hosts: Vec<Host> = ["web-1", "web-2", "web-3"]
        .iter()
        .map(|n| Host::enroll(&server, dir.path(), n, "prod"))
        .collect();
    let mut stage = Host::enroll(&server, dir.path(), "stage-1", "stage");
    for h in &mut hosts {
        h.start_agent(&server, "prod");
    }
    stage.start_agent(&server, "stage");
    wait_online(&server, &["web-1", "web-2", "web-3", "stage-1"]);

    let mut builds = Vec::new();
    for v in ["1.0", "2.0", "3.0"] {
        let file = artifact(dir.path(), v, &[]);
        let id = server.ok(&[
            "build",
            "push",
            file.to_str().unwrap(),
            "--service",
            "shop",
            "--version",
            v,
            "--commit",
            &format!("c{}", v.replace('.', "")),
        ]);
        builds.push(id.trim().to_string());
    }
    // Version 3.0 fails its health check on web-2 only: wave 2.
    std::fs::write(hosts[1].root.join("shop/shared/config/broken-3.0"), "").unwrap();

    // A clean three-wave deploy.
    let out = server.cli(&[
        "deploy", "shop", "1.0", "--env", "prod", "--waves", "1,2,3", "--bake", "0s", "--wait",
    ]);
    succeeded(&out, "deploy 1.0");
    assert_fleet(&hosts, "1.0", "");
    // By id prefix, with a bake.
    let out = server.cli(&[
        "deploy",
        "shop",
        &builds[1][..20],
        "--env",
        "prod",
        "--waves",
        "1,50%,100%",
        "--bake",
        "1s",
        "--parallel",
        "1",
        "--wait",
    ]);
    succeeded(&out, "deploy 2.0");
    let first_rollout = String::from_utf8_lossy(&out.stdout)
        .lines()
        .next()
        .unwrap()
        .to_string();
    assert_fleet(&hosts, "2.0", "");
    let r = rollout(&server, &first_rollout);
    assert_eq!(r["state"], "succeeded");
    assert_eq!(r["tasks"].as_array().unwrap().len(), 3);
    // Each task says when its host switched and took traffic again (what detection splits on).
    for t in r["tasks"].as_array().unwrap() {
        let (switched, undrained) = (t["switched_at"].as_str(), t["undrained_at"].as_str());
        assert!(switched.is_some() && undrained.is_some(), "{t}");
        assert!(switched <= undrained, "{t}");
    }

    // The broken build: wave 1 passes, wave 2 fails, the fleet goes back to 2.0 by itself.
    let out = server.cli(&[
        "deploy", "shop", "3.0", "--env", "prod", "--waves", "1,2,3", "--bake", "0s", "--wait",
    ]);
    assert!(!out.status.success(), "a failed deploy must not exit 0");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("rolled back"), "{err}");
    assert!(err.contains("web-2") && err.contains("health"), "{err}");
    assert_fleet(&hosts, "2.0", "after rollback");
    let rollout_id = String::from_utf8_lossy(&out.stdout)
        .lines()
        .next()
        .unwrap()
        .to_string();
    let r = rollout(&server, &rollout_id);
    assert_eq!(r["state"], "rolled_back", "{r}");
    let tasks = r["tasks"].as_array().unwrap();
    assert!(tasks
        .iter()
        .any(|t| t["host"] == "web-3" && t["state"] == "cancelled"));
    assert_eq!(
        tasks.iter().filter(|t| t["purpose"] == "rollback").count(),
        2,
        "web-1 and web-2 went back"
    );
    let change = server
        .http()
        .get(&format!(
            "/api/v1/changes/{}",
            r["change_id"].as_str().unwrap()
        ))
        .body;
    assert_eq!(change["status"], "rolled_back", "{change}");
    assert_eq!(change["kind"], "deploy");
    assert_eq!(change["commit_range"]["from"], "c20");
    assert_eq!(change["commit_range"]["to"], "c30");
    assert!(
        change["description"].as_str().unwrap().contains("reason"),
        "{change}"
    );

    // One-command rollback: to the build before the current one (2.0 → 1.0), all at once.
    let out = server.cli(&["rollback", "shop", "--env", "prod", "--wait"]);
    succeeded(&out, "rollback");
    assert_fleet(&hosts, "1.0", "after rollback");
    let changes = server.http().get("/api/v1/changes?kind=rollback").body;
    assert_eq!(changes["items"][0]["status"], "succeeded", "{changes}");

    // Promote: refused while stage never ran it; then stage → prod takes exactly stage's build.
    let out = server.cli(&["promote", "shop", "--from", "stage", "--to", "prod"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("never been deployed to stage"));
    let out = server.cli(&[
        "deploy", "shop", "2.0", "--env", "stage", "--bake", "0s", "--wait",
    ]);
    succeeded(&out, "");
    assert_eq!(stage.serving().as_deref(), Some("2.0"));
    let out = server.cli(&[
        "promote", "shop", "--from", "stage", "--to", "prod", "--bake", "0s", "--wait",
    ]);
    succeeded(&out, "promote");
    assert_fleet(&hosts, "2.0", "after promote");
    // Lead time: the build knows when each environment first ran it.
    let b = server
        .http()
        .get(&format!("/api/v1/builds/{}", builds[1]))
        .body;
    let envs: Vec<&str> = b["environments"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["environment"].as_str().unwrap())
        .collect();
    assert!(envs.contains(&"prod") && envs.contains(&"stage"), "{b}");

    // Hosts report their releases; the list shows them online.
    let list = server.ok(&["host", "list"]);
    assert!(list.contains("web-2") && list.contains("online"), "{list}");
    let web1 = server.http().get("/api/v1/hosts/web-1").body;
    assert_eq!(
        web1["releases"]["shop"]["build_id"],
        builds[1].as_str(),
        "{web1}"
    );
    assert!(hosts[0].current_release().unwrap().contains(&builds[1]));
}

#[test]
fn faults_are_refused_or_handled() {
    if !python_available() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let server = ship_server(None, dir.path());
    let config = dir.path().join("shop.toml");
    std::fs::write(&config, CONFIG).unwrap();
    server.ok(&["service", "apply", config.to_str().unwrap()]);
    // Applying the same file again changes nothing; a changed one records a config change.
    assert!(server
        .ok(&["service", "apply", config.to_str().unwrap()])
        .contains("unchanged"));
    std::fs::write(
        &config,
        CONFIG.replace("keep_releases = 3", "keep_releases = 4"),
    )
    .unwrap();
    assert!(server
        .ok(&["service", "apply", config.to_str().unwrap()])
        .contains("applied"));
    let changes = server.http().get("/api/v1/changes?kind=config").body;
    let diff = changes["items"][0]["description"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        diff.contains("- keep_releases = 3") && diff.contains("+ keep_releases = 4"),
        "{diff}"
    );

    let mut h = Host::enroll(&server, dir.path(), "web-1", "prod");
    h.start_agent(&server, "prod");
    wait_online(&server, &["web-1"]);
    let v1 = artifact(dir.path(), "1.0", &[]);
    push(&server, &v1, "shop", "1.0");

    // A version is immutable.
    let out = server.cli(&[
        "build",
        "push",
        v1.to_str().unwrap(),
        "--service",
        "shop",
        "--version",
        "1.0",
    ]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("already has a build of version '1.0'"));

    // A build of another service.
    let cart = push(&server, &v1, "cart", "9");
    let out = server.cli(&["deploy", "shop", cart.trim(), "--env", "prod"]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("is a build of cart, not of shop"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // An archive that tries to write outside its release directory fails at unpack.
    let evil = evil_artifact(dir.path(), "../../../escaped");
    push(&server, &evil, "shop", "evil");
    let out = server.cli(&[
        "deploy", "shop", "evil", "--env", "prod", "--bake", "0s", "--wait",
    ]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(err.contains("unpack") && err.contains(".."), "{err}");
    assert!(!dir.path().join("escaped").exists());

    // A registered build whose bytes do not match its digest is refused by the agent.
    let wrong = "0".repeat(64);
    let served = serve_file(&v1);
    server.ok(&[
        "build",
        "register",
        &served.url,
        "--sha256",
        &wrong,
        "--service",
        "shop",
        "--version",
        "bad-sha",
    ]);
    let out = server.cli(&[
        "deploy", "shop", "bad-sha", "--env", "prod", "--bake", "0s", "--wait",
    ]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(err.contains("fetch") && err.contains(&wrong), "{err}");

    // A good deploy, then a second concurrent one is refused naming the holder.
    let out = server.cli(&[
        "deploy", "shop", "1.0", "--env", "prod", "--bake", "0s", "--wait",
    ]);
    succeeded(&out, "");
    let v2 = artifact(dir.path(), "2.0", &[]);
    push(&server, &v2, "shop", "2.0");
    let first = server.ok(&[
        "deploy", "shop", "2.0", "--env", "prod", "--waves", "1", "--bake", "1h",
    ]);
    let out = server.cli(&["deploy", "shop", "2.0", "--env", "prod"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(
        err.contains(first.trim()) && err.contains("is being deployed"),
        "{err}"
    );
    // Abort returns the host to 1.0 and frees the lock.
    server.ok(&["rollout", "abort", first.trim()]);
    wait_rollout(&server, first.trim(), 30, |r| r["state"] == "aborted");
    assert_eq!(h.serving().as_deref(), Some("1.0"));

    // A revoked host token disconnects its agent.
    server.ok(&["token", "revoke", "host.web-1"]);
    let status = wait_exit(h.agent.as_mut().unwrap(), Duration::from_secs(30));
    assert!(!status.success());
}

#[test]
fn a_rollout_survives_a_server_restart() {
    if !python_available() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let mut server = ship_server(Some(data.clone()), dir.path());
    let config = dir.path().join("shop.toml");
    std::fs::write(&config, CONFIG).unwrap();
    server.ok(&["service", "apply", config.to_str().unwrap()]);
    let mut hosts: Vec<Host> = ["web-1", "web-2"]
        .iter()
        .map(|n| Host::enroll(&server, dir.path(), n, "prod"))
        .collect();
    for h in &mut hosts {
        h.start_agent(&server, "prod");
    }
    wait_online(&server, &["web-1", "web-2"]);
    let v1 = artifact(dir.path(), "1.0", &[]);
    push(&server, &v1, "shop", "1.0");
    let id = server.ok(&[
        "deploy", "shop", "1.0", "--env", "prod", "--waves", "1,2", "--bake", "3s",
    ]);
    let id = id.trim().to_string();
    // Wait until wave 1 is baking, then kill the server.
    wait_rollout(&server, &id, 30, |r| !r["bake_until"].is_null());
    let addr = server.addr.clone();
    server.kill();
    // Same data, same port: the agents reconnect on their own.
    let restarted = Server::start_with(Options {
        data_dir: Some(data),
        extra_args: vec![
            "--config".into(),
            dir.path().join("gantry.toml").display().to_string(),
            "--listen".into(),
            addr.clone(),
        ],
        ..Default::default()
    });
    let r = wait_rollout(&restarted, &id, 60, |r| r["state"] != "running");
    assert_eq!(
        r["state"], "succeeded",
        "the rollout must resume, not fail: {r}"
    );
    assert_fleet(&hosts, "1.0", "");
}

#[test]
fn an_agent_killed_mid_step_finishes_the_task_when_it_returns() {
    if !python_available() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let server = ship_server(None, dir.path());
    let config = dir.path().join("shop.toml");
    std::fs::write(&config, CONFIG).unwrap();
    server.ok(&["service", "apply", config.to_str().unwrap()]);
    let mut h = Host::enroll(&server, dir.path(), "web-1", "prod");
    h.start_agent(&server, "prod");
    wait_online(&server, &["web-1"]);

    // Over [ship] max_artifact_bytes: refused, nothing stored.
    let big = dir.path().join("big.tar.gz");
    std::fs::write(&big, vec![7u8; 4_100_000]).unwrap();
    let out = server.cli(&[
        "build",
        "push",
        big.to_str().unwrap(),
        "--service",
        "shop",
        "--version",
        "big",
    ]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("max_artifact_bytes"));
    assert!(server.ok(&["build", "list"]).lines().count() <= 1);

    let v1 = artifact(dir.path(), "1.0", &[]);
    push(&server, &v1, "shop", "1.0");
    // The restart hook takes 4 s; the agent is killed while it runs, after the switch.
    std::fs::write(h.root.join("shop/shared/config/slow"), "").unwrap();
    let id = server.ok(&["deploy", "shop", "1.0", "--env", "prod", "--bake", "0s"]);
    let id = id.trim().to_string();
    wait_rollout(&server, &id, 30, |r| r["tasks"][0]["step"] == "restart");
    let mut agent = h.agent.take().unwrap();
    agent.kill().unwrap();
    agent.wait().unwrap();
    // The host really is on the new release: the agent reports it when it comes back and
    // runs the task again (the release is on disk: no fetch, a switch and a restart).
    assert!(h.current_release().unwrap().contains("releases/"));
    std::fs::remove_file(h.root.join("shop/shared/config/slow")).unwrap();
    h.start_agent(&server, "prod");
    wait_rollout(&server, &id, 60, |r| r["state"] == "succeeded");
    // The slow first restart may still be sleeping; the app comes up either way.
    let deadline = Instant::now() + Duration::from_secs(15);
    while h.serving().as_deref() != Some("1.0") {
        assert!(Instant::now() < deadline, "app not serving 1.0");
        std::thread::sleep(Duration::from_millis(100));
    }
    let releases = std::fs::read_dir(h.root.join("shop/releases"))
        .unwrap()
        .count();
    assert_eq!(
        releases, 1,
        "the rerun reused the release instead of unpacking again"
    );
}

/// A one-file HTTP server (Python's), for builds registered by URL.
struct Served {
    url: String,
    child: Child,
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn serve_file(file: &Path) -> Served {
    let port = free_port();
    let child = Command::new("python3")
        .args([
            "-m",
            "http.server",
            &port.to_string(),
            "--bind",
            "127.0.0.1",
        ])
        .current_dir(file.parent().unwrap())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let url = format!(
        "http://127.0.0.1:{port}/{}",
        file.file_name().unwrap().to_str().unwrap()
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    while reqwest::blocking::get(&url).is_err() {
        assert!(Instant::now() < deadline, "file server did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
    Served { url, child }
}

/// The test app is Python; CI machines have it. Under CI its absence is a failure.
fn python_available() -> bool {
    let ok = Command::new("python3")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !ok && std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!("python3 is needed by the shipping tests (the test app)");
    }
    ok
}

/// Two servers on one PostgreSQL: the artifact lives in the database, agents poll different
/// servers, and a deploy started on one reaches the agents of both.
#[test]
fn two_servers_on_postgres_ship_together() {
    if !python_available() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let url = crate::harness::postgres_url("ship_two_servers");
    let config = dir.path().join("gantry.toml");
    std::fs::write(
        &config,
        "[ship]\nheartbeat_secs = 1\nhost_lost_after_secs = 6\ntick_ms = 100\n",
    )
    .unwrap();
    let start = || {
        Server::start_with(Options {
            database_url: Some(url.clone()),
            extra_args: vec!["--config".into(), config.display().to_string()],
            ..Default::default()
        })
    };
    let a = start();
    let b = start();
    let admin = a.data_dir.join("admin.token");
    let cfg = dir.path().join("shop.toml");
    std::fs::write(&cfg, CONFIG).unwrap();
    a.ok(&["service", "apply", cfg.to_str().unwrap()]);
    let mut h1 = Host::enroll(&a, dir.path(), "web-1", "prod");
    let mut h2 = Host::enroll(&a, dir.path(), "web-2", "prod");
    h1.start_agent(&a, "prod");
    h2.start_agent(&b, "prod");
    wait_online(&a, &["web-1", "web-2"]);
    let v1 = artifact(dir.path(), "1.0", &[]);
    push(&a, &v1, "shop", "1.0");
    let out = b.cli_with_token_file(
        &admin,
        &[
            "deploy", "shop", "1.0", "--env", "prod", "--waves", "1,2", "--bake", "0s", "--wait",
        ],
    );
    succeeded(&out, "");
    assert_eq!(h1.serving().as_deref(), Some("1.0"));
    assert_eq!(h2.serving().as_deref(), Some("1.0"));
    // The artifact is in the database, not in either server's directory.
    assert!(!a.data_dir.join("artifacts").exists());
    assert!(!b.data_dir.join("artifacts").exists());
}

/// `GET /api/v1/rollouts/{id}/stream` during a real deploy: the first update carries every
/// task, later ones only the tasks that changed, at most one a second; the stream ends with
/// the update showing the rollout finished, and resuming after an id sends what changed
/// since.
#[test]
fn a_rollout_is_followed_as_it_moves() {
    if !python_available() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let server = ship_server(None, dir.path());
    let config = dir.path().join("shop.toml");
    std::fs::write(&config, CONFIG).unwrap();
    server.ok(&["service", "apply", config.to_str().unwrap()]);
    let mut hosts: Vec<Host> = ["web-1", "web-2", "web-3"]
        .iter()
        .map(|n| Host::enroll(&server, dir.path(), n, "prod"))
        .collect();
    for h in &mut hosts {
        h.start_agent(&server, "prod");
    }
    wait_online(&server, &["web-1", "web-2", "web-3"]);
    push(&server, &artifact(dir.path(), "1.0", &[]), "shop", "1.0");
    let id = server.ok(&[
        "deploy", "shop", "1.0", "--env", "prod", "--waves", "1,100%", "--bake", "2s",
    ]);
    let id = id.trim().to_string();
    let path = format!("/api/v1/rollouts/{id}/stream");
    let (url, token) = (server.url(), server.admin_token());
    let (send, events) = std::sync::mpsc::channel();
    let reader_path = path.clone();
    std::thread::spawn(move || {
        let mut sse = Sse::open_at(&url, &reader_path, &format!("Bearer {token}"), None);
        while let Some(event) = sse.next_event() {
            let _ = send.send(Some((Instant::now(), event)));
        }
        let _ = send.send(None);
    });
    let mut seen: Vec<(Instant, i64, Value)> = Vec::new();
    loop {
        match events.recv_timeout(Duration::from_secs(90)) {
            Ok(Some((at, (event, seq, data)))) => {
                assert_eq!(event, "update");
                seen.push((at, seq, serde_json::from_str(&data).unwrap()));
            }
            Ok(None) => break,
            Err(e) => panic!("the stream neither ended nor spoke for 90 s ({e}); saw {seen:?}"),
        }
    }
    assert!(seen.len() >= 3, "{seen:?}");
    assert_eq!(
        seen[0].2["tasks"].as_array().unwrap().len(),
        3,
        "every task first"
    );
    let mut last: std::collections::HashMap<String, (String, String)> = Default::default();
    for (i, (at, seq, u)) in seen.iter().enumerate() {
        assert_eq!(
            u["seq"].as_i64(),
            Some(*seq),
            "the event id is the update's seq"
        );
        if i > 0 {
            assert!(*seq >= seen[i - 1].1, "seq never goes back");
            let gap = at.duration_since(seen[i - 1].0);
            assert!(
                gap >= Duration::from_millis(900),
                "two updates {gap:?} apart"
            );
        }
        for t in u["tasks"].as_array().unwrap() {
            let now = (t["state"].to_string(), t["step"].to_string());
            let key = t["id"].as_str().unwrap().to_string();
            if i > 0 {
                assert_ne!(
                    last.get(&key),
                    Some(&now),
                    "task {key} sent unchanged in update {i}"
                );
            }
            last.insert(key, now);
        }
    }
    let final_update = &seen.last().unwrap().2;
    assert_eq!(
        final_update["rollout"]["state"], "succeeded",
        "{final_update}"
    );
    assert!(
        last.values().all(|(state, _)| state == "\"succeeded\""),
        "{last:?}"
    );
    // Resuming after the second update: every task that changed since comes first, and the
    // finished rollout's stream ends after it.
    let mut sse = Sse::open_at(
        &server.url(),
        &path,
        &format!("Bearer {}", server.admin_token()),
        Some(seen[1].1),
    );
    let (_, _, data) = sse.next_event().expect("an update after resuming");
    let resumed: Value = serde_json::from_str(&data).unwrap();
    assert!(
        !resumed["tasks"].as_array().unwrap().is_empty(),
        "{resumed}"
    );
    assert!(
        sse.next_event().is_none(),
        "the stream of a finished rollout ends"
    );
    // A narrowed token cannot follow another environment's rollout.
    let stage = token_file(&server, "stage-reader", "read:shop@stage");
    let narrow = std::fs::read_to_string(stage).unwrap();
    let denied = reqwest::blocking::Client::new()
        .get(format!("{}{path}", server.url()))
        .bearer_auth(narrow.trim())
        .send()
        .unwrap();
    assert_eq!(denied.status().as_u16(), 403);
}
