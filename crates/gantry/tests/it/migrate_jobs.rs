//! `gantry migrate … --via-server`: jobs the real server runs against the machine's real
//! PostgreSQL, surviving their client (killed mid-job, then `watch` reattaches), paused and
//! resumed between migrations, aborted, refused without the scope or for an unknown
//! database, and a server killed mid-job: the job is `interrupted`, nothing half-applied,
//! its change `in_progress`, and `retry` finishes it on the restarted server.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use crate::harness::{Options, Server, BIN};

const URL_ENV: &str = "SHOP_DB_URL";

fn config(dir: &Path) -> PathBuf {
    let path = dir.join("gantry.toml");
    std::fs::write(
        &path,
        format!(
            "[migrate.databases.shop]\nurl_env = \"{URL_ENV}\"\nservices = [\"shop\"]\nenvironment = \"prod\"\n"
        ),
    )
    .unwrap();
    path
}

fn start(data_dir: &Path, config: &Path, url: &str) -> Server {
    Server::start_with(Options {
        data_dir: Some(data_dir.to_path_buf()),
        extra_args: vec!["--config".into(), config.display().to_string()],
        env: vec![(URL_ENV.into(), url.into())],
        ..Options::default()
    })
}

fn write(root: &Path, rel: &str, text: &str) {
    let path = root.join("migrations/shop").join(rel);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, text).unwrap();
}

/// `gantry migrate ARGS` against the server, in `root`, with no target URL anywhere.
fn command(server: &Server, root: &Path, args: &[&str]) -> Command {
    let mut c = Command::new(BIN);
    c.current_dir(root)
        .args(["--url", &server.url(), "--token-file"])
        .arg(server.data_dir.join("admin.token"))
        .arg("migrate")
        .args(args)
        .env_remove("GANTRY_MIGRATE_URL")
        .env_remove(URL_ENV);
    c
}

fn run(server: &Server, root: &Path, args: &[&str]) -> Output {
    command(server, root, args).output().unwrap()
}

fn ok(out: &Output) -> String {
    assert!(
        out.status.success(),
        "stdout: {}\nstderr: {}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn job(server: &Server, id: &str) -> serde_json::Value {
    let reply = server.http().get(&format!("/api/v1/migrate/jobs/{id}"));
    assert_eq!(reply.status, 200, "{}", reply.text);
    reply.body
}

/// Waits until `check` holds for the job (polling), or fails with the job as it is.
fn wait_job(
    server: &Server,
    id: &str,
    what: &str,
    check: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    let deadline = Instant::now() + Duration::from_secs(40);
    loop {
        let j = job(server, id);
        if check(&j) {
            return j;
        }
        assert!(Instant::now() < deadline, "waited for {what}: {j:#}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The job's log so far, as one text.
fn log_of(server: &Server, id: &str) -> String {
    let reply = server.http().get(&format!("/api/v1/migrate/jobs/{id}/log"));
    // The stream of a running job does not end; read what a finished one wrote instead.
    reply.text
}

fn newest_job(server: &Server) -> String {
    let reply = server
        .http()
        .get("/api/v1/migrate/jobs?database=shop&limit=1");
    reply.body[0]["id"].as_str().expect("a job").to_string()
}

fn applied(url: &str) -> Vec<i64> {
    let url = url.to_string();
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(async move {
            use sqlx::Connection;
            let mut c = sqlx::PgConnection::connect(&url).await.unwrap();
            sqlx::query_scalar::<_, i64>(
                "SELECT version::bigint FROM gantry_schema_expand ORDER BY version",
            )
            .fetch_all(&mut c)
            .await
            .unwrap_or_default()
        })
}

fn change_status(server: &Server, job: &serde_json::Value) -> String {
    let change = server.http().get(&format!(
        "/api/v1/changes/{}",
        job["change_id"].as_str().unwrap()
    ));
    change.body["status"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

#[test]
fn a_job_outlives_its_client_pauses_between_migrations_and_aborts() {
    let url = crate::harness::postgres_url("migrate_jobs_client");
    let data = tempfile::tempdir().unwrap();
    let conf = config(data.path());
    let server = start(&data.path().join("data"), &conf, &url);
    server.ok(&["service", "create", "shop", "--envs", "prod"]);
    let work = tempfile::tempdir().unwrap();
    let root = work.path();
    write(
        root,
        "expand/0001_create_items.sql",
        "CREATE TABLE items (id BIGINT PRIMARY KEY, name TEXT);\n",
    );
    write(root, "expand/0002_wait.sql", "SELECT pg_sleep(3);\n");
    write(
        root,
        "expand/0003_add_note.sql",
        "ALTER TABLE items ADD COLUMN note TEXT;\n",
    );

    // The client starts the job and is killed while 0002 runs; the job goes on.
    let mut client = command(
        &server,
        root,
        &["apply", "--phase", "expand", "--via-server"],
    )
    .stdout(Stdio::piped())
    .stderr(Stdio::null())
    .spawn()
    .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    let id = loop {
        let jobs = server.http().get("/api/v1/migrate/jobs?database=shop");
        if let Some(j) = jobs.body.as_array().and_then(|a| a.first()) {
            if j["state"] == "running" {
                break j["id"].as_str().unwrap().to_string();
            }
        }
        assert!(Instant::now() < deadline, "no running job: {}", jobs.text);
        std::thread::sleep(Duration::from_millis(50));
    };
    wait_job(&server, &id, "0002 to start", |_| {
        log_of_contains(&server, &id, "0002 wait")
    });
    client.kill().unwrap();
    let _ = client.wait();

    // Paused while 0002 runs: it finishes 0002 and holds before 0003.
    let paused = ok(&run(&server, root, &["pause", &id]));
    assert!(paused.contains("asked to pause"), "{paused}");
    let j = wait_job(&server, &id, "paused", |j| j["state"] == "paused");
    assert_eq!(j["control"], serde_json::Value::Null);
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(applied(&url), [1, 2], "0003 waits while the job is paused");
    ok(&run(&server, root, &["resume", &id]));

    // `watch` reattaches: the whole log, then the end.
    let watched = ok(&run(&server, root, &["watch", &id]));
    for needle in [
        "queued by",
        "0001 create items",
        "SELECT pg_sleep(3)",
        "paused on request",
        "resumed",
        "0003 applied",
        "succeeded",
    ] {
        assert!(
            watched.contains(needle),
            "{needle} missing from:\n{watched}"
        );
    }
    assert_eq!(applied(&url), [1, 2, 3]);
    let j = job(&server, &id);
    assert_eq!(j["state"], "succeeded");
    assert_eq!(j["report"]["versions"], serde_json::json!([1, 2, 3]));
    assert_eq!(change_status(&server, &j), "succeeded");
    let listed = ok(&run(&server, root, &["jobs"]));
    assert!(
        listed.contains(&id) && listed.contains("succeeded"),
        "{listed}"
    );

    // Aborted while 0004 runs: 0004 finishes, 0005 never starts, the change is cancelled.
    write(root, "expand/0004_wait_again.sql", "SELECT pg_sleep(2);\n");
    write(
        root,
        "expand/0005_add_tag.sql",
        "ALTER TABLE items ADD COLUMN tag TEXT;\n",
    );
    let change = ok(&run(
        &server,
        root,
        &["apply", "--phase", "expand", "--via-server", "--detach"],
    ));
    assert_eq!(
        change.trim().len(),
        26,
        "only the change id on stdout: {change}"
    );
    let id = newest_job(&server);
    wait_job(&server, &id, "0004 to start", |_| {
        log_of_contains(&server, &id, "0004 wait again")
    });
    ok(&run(&server, root, &["abort", &id]));
    let j = wait_job(&server, &id, "aborted", |j| j["state"] == "aborted");
    assert_eq!(applied(&url), [1, 2, 3, 4]);
    assert_eq!(change_status(&server, &j), "cancelled");
    let watched = run(&server, root, &["watch", &id]);
    assert!(!watched.status.success());
    assert!(String::from_utf8_lossy(&watched.stderr).contains("aborted"));

    // A rebuild runs as a job too.
    let change = ok(&run(
        &server,
        root,
        &[
            "rebuild",
            "items",
            "--alter",
            "ADD COLUMN extra TEXT",
            "--via-server",
        ],
    ));
    assert_eq!(change.trim().len(), 26, "{change}");
    let j = job(&server, &newest_job(&server));
    assert_eq!(j["state"], "succeeded", "{j:#}");
    assert_eq!(j["report"]["table"], "items");
    assert_eq!(change_status(&server, &j), "succeeded");

    // Refusals: an unknown database, a token without migrate on the database's services.
    let unknown = run(
        &server,
        root,
        &["apply", "--phase", "expand", "--via-server", "--db", "nope"],
    );
    assert!(!unknown.status.success());
    let reply = server.http().post(
        "/api/v1/migrate/jobs",
        serde_json::json!({"database": "billing", "kind": "apply", "spec": {"phase": "expand", "files": [{"path": "expand/0001_a.sql", "text": "SELECT 1;"}]}}),
    );
    assert_eq!(reply.status, 404, "{}", reply.text);
    assert!(reply.text.contains("configured: shop"), "{}", reply.text);
    server.ok(&["service", "create", "other", "--envs", "prod"]);
    let narrow = crate::harness::token_file(&server, "narrow", "migrate:other@prod,read");
    let refused = Command::new(BIN)
        .current_dir(root)
        .args(["--url", &server.url(), "--token-file"])
        .arg(&narrow)
        .args(["migrate", "apply", "--phase", "expand", "--via-server"])
        .output()
        .unwrap();
    assert!(!refused.status.success());
    let text = String::from_utf8_lossy(&refused.stderr);
    assert!(text.contains("migrate:shop@prod"), "{text}");
    let broken = server.http().post(
        "/api/v1/migrate/jobs",
        serde_json::json!({"database": "shop", "kind": "apply", "spec": {"phase": "expand", "files": [{"path": "expand/0001_a.sql", "text": "SELECT 1;"}, {"path": "expand/1_b.sql", "text": "SELECT 2;"}]}}),
    );
    assert_eq!(broken.status, 400, "{}", broken.text);
    assert!(
        broken.text.contains("both have number 1"),
        "{}",
        broken.text
    );
    let bad = server.http().post(
        &format!("/api/v1/migrate/jobs/{id}/retry"),
        serde_json::json!({}),
    );
    assert_eq!(bad.status, 400, "{}", bad.text);
    assert!(
        bad.text.contains("only a failed or interrupted job"),
        "{}",
        bad.text
    );
}

fn log_of_contains(server: &Server, id: &str, needle: &str) -> bool {
    // The log stream of a running job stays open: read it with a short timeout.
    let client = reqwest::blocking::Client::builder()
        .timeout(Duration::from_millis(700))
        .build()
        .unwrap();
    let mut text = String::new();
    if let Ok(mut response) = client
        .get(format!("{}/api/v1/migrate/jobs/{id}/log", server.url()))
        .bearer_auth(server.admin_token())
        .send()
    {
        use std::io::Read;
        let mut buf = [0u8; 4096];
        while let Ok(n) = response.read(&mut buf) {
            if n == 0 {
                break;
            }
            text.push_str(&String::from_utf8_lossy(&buf[..n]));
            if text.contains(needle) {
                return true;
            }
        }
    }
    text.contains(needle)
}

#[test]
fn a_server_killed_mid_job_leaves_it_interrupted_and_retry_finishes_it() {
    let url = crate::harness::postgres_url("migrate_jobs_server");
    let data = tempfile::tempdir().unwrap();
    let conf = config(data.path());
    let data_dir = data.path().join("data");
    let mut server = start(&data_dir, &conf, &url);
    server.ok(&["service", "create", "shop", "--envs", "prod"]);
    let work = tempfile::tempdir().unwrap();
    let root = work.path();
    write(
        root,
        "expand/0001_create_items.sql",
        "CREATE TABLE items (id BIGINT PRIMARY KEY);\n",
    );
    write(
        root,
        "expand/0002_slow.sql",
        "ALTER TABLE items ADD COLUMN note TEXT;\nSELECT pg_sleep(4);\n",
    );
    ok(&run(
        &server,
        root,
        &["apply", "--phase", "expand", "--via-server", "--detach"],
    ));
    let id = newest_job(&server);
    wait_job(&server, &id, "0002 to start", |_| {
        log_of_contains(&server, &id, "0002 slow")
    });
    server.kill();

    let server = start(&data_dir, &conf, &url);
    // The killed server's lease runs out, then the job is found left running.
    let j = wait_job(&server, &id, "interrupted", |j| j["state"] == "interrupted");
    assert!(j["error"].as_str().unwrap().contains("retry"), "{j:#}");
    assert_eq!(change_status(&server, &j), "in_progress");
    assert_eq!(
        applied(&url),
        [1],
        "0002 ran in one transaction: nothing of it was kept"
    );
    let text = log_of(&server, &id);
    assert!(text.contains("interrupted"), "{text}");
    // Marking it interrupted kept its files: a retry without them has what it needs.
    let kept = server
        .http()
        .get(&format!("/api/v1/migrate/jobs/{id}?files=true"));
    assert_eq!(
        kept.body["spec"]["files"].as_array().map(Vec::len),
        Some(2),
        "{}",
        kept.text
    );

    let out = ok(&run(&server, root, &["retry", &id]));
    assert!(out.is_empty(), "{out}");
    let j = job(&server, &id);
    assert_eq!(j["state"], "succeeded", "{j:#}");
    assert_eq!(applied(&url), [1, 2]);
    assert_eq!(change_status(&server, &j), "succeeded");
}
