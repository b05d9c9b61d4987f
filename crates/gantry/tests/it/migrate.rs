//! `gantry migrate` through the real binary against the machine's real PostgreSQL and
//! MariaDB and an SQLite file, each test in a database of its own: apply, status, drift,
//! repair, the classifier's refusals, a failed statement resumed, one runner at a time, the
//! DBA's plan script giving the same end state as apply, and a password never shown.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use crate::harness::BIN;

fn block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(f)
}

/// A migrations folder with one database `db` and the files given (`expand/0001_x.sql`).
fn folder(db: &str, files: &[(&str, &str)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for (path, text) in files {
        let path = dir.path().join("migrations").join(db).join(path);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    }
    dir
}

/// Runs `gantry migrate ARGS` in `dir` with the target URL in a file.
fn migrate(dir: &Path, url: &str, args: &[&str]) -> Output {
    let url_file = dir.join("target.url");
    std::fs::write(&url_file, url).unwrap();
    Command::new(BIN)
        .current_dir(dir)
        .arg("migrate")
        .args(args)
        .arg("--target-url-file")
        .arg(&url_file)
        .env_remove("GANTRY_MIGRATE_URL")
        .env("GANTRY_DATABASE_URL", "postgres://wrong@127.0.0.1:1/never")
        .output()
        .unwrap()
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

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

struct Case {
    url: String,
    /// The CREATE INDEX an expand migration may use on this database.
    online_index: &'static str,
}

fn postgres(label: &str) -> Case {
    Case {
        url: block_on(gantry_store::testing::fresh_postgres_url(label)),
        online_index: "CREATE INDEX CONCURRENTLY users_email ON users (email);",
    }
}

fn mariadb(label: &str) -> Case {
    Case {
        url: block_on(gantry_store::testing::fresh_mysql_url(label)),
        online_index:
            "ALTER TABLE users ADD INDEX users_email (email), ALGORITHM=INPLACE, LOCK=NONE;",
    }
}

fn sqlite(dir: &Path) -> Case {
    Case {
        url: format!("sqlite://{}?mode=rwc", dir.join("app.db").display()),
        online_index: "CREATE INDEX users_email ON users (email);",
    }
}

fn expand_and_contract(db: &str, case: &Case) -> tempfile::TempDir {
    folder(
        db,
        &[
            (
                "expand/0001_create_users.sql",
                "CREATE TABLE users (id BIGINT PRIMARY KEY, name VARCHAR(100) NOT NULL, legacy_email VARCHAR(200));\n",
            ),
            ("expand/0002_add_email.sql", "ALTER TABLE users ADD COLUMN email VARCHAR(200);\n"),
            ("expand/0003_index_email.sql", case.online_index),
            ("contract/0001_drop_legacy_email.sql", "ALTER TABLE users DROP COLUMN legacy_email;\n"),
        ],
    )
}

fn lifecycle(db: &str, case: Case) {
    let dir = expand_and_contract(db, &case);
    let root = dir.path();
    let status = ok(&migrate(root, &case.url, &["status", "--db", db]));
    assert_eq!(status.matches("pending").count(), 4, "{status}");

    // The contract phase waits for the gate (or a deliberate --force --reason).
    let refused = migrate(
        root,
        &case.url,
        &["apply", "--phase", "contract", "--db", db],
    );
    assert!(!refused.status.success());
    assert!(
        stderr(&refused).contains("--force --reason"),
        "{}",
        stderr(&refused)
    );

    let out = migrate(root, &case.url, &["apply", "--phase", "expand", "--db", db]);
    ok(&out);
    assert!(stderr(&out).contains("0003"), "{}", stderr(&out));
    let status = ok(&migrate(root, &case.url, &["status", "--db", db]));
    assert_eq!(status.matches("applied").count(), 3, "{status}");
    // Again: nothing to do.
    let again = migrate(root, &case.url, &["apply", "--phase", "expand", "--db", db]);
    assert!(stderr(&ok_out(again)).contains("0 migrations"));

    // A file edited after it was applied is refused, naming it and both checksums.
    std::fs::write(
        root.join("migrations")
            .join(db)
            .join("expand/0002_add_email.sql"),
        "ALTER TABLE users ADD COLUMN email VARCHAR(250);\n",
    )
    .unwrap();
    std::fs::write(
        root.join("migrations")
            .join(db)
            .join("expand/0004_add_phone.sql"),
        "ALTER TABLE users ADD COLUMN phone VARCHAR(40);\n",
    )
    .unwrap();
    let drift = migrate(root, &case.url, &["apply", "--phase", "expand", "--db", db]);
    assert!(!drift.status.success());
    let message = stderr(&drift);
    assert!(
        message.contains("0002_add_email.sql") && message.contains("changed after it was applied"),
        "{message}"
    );
    assert!(message.contains("gantry migrate repair"), "{message}");
    ok(&migrate(
        root,
        &case.url,
        &["repair", "--phase", "expand", "--db", db],
    ));
    ok(&migrate(
        root,
        &case.url,
        &["apply", "--phase", "expand", "--db", db],
    ));

    let out = migrate(
        root,
        &case.url,
        &[
            "apply",
            "--phase",
            "contract",
            "--db",
            db,
            "--force",
            "--reason",
            "no server here",
        ],
    );
    ok(&out);
    let status = ok(&migrate(root, &case.url, &["status", "--db", db]));
    assert!(!status.contains("pending"), "{status}");
}

fn ok_out(out: Output) -> Output {
    ok(&out);
    out
}

#[test]
fn migrate_lifecycle_on_postgres() {
    lifecycle("pg_life", postgres("migrate_life"));
}

#[test]
fn migrate_lifecycle_on_mariadb() {
    lifecycle("my_life", mariadb("migrate_life"));
}

#[test]
fn migrate_lifecycle_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    lifecycle("lite_life", sqlite(dir.path()));
}

#[test]
fn a_contract_statement_in_expand_is_refused_with_file_and_line() {
    let case = postgres("migrate_refuse");
    let dir = folder(
        "pg_refuse",
        &[
            (
                "expand/0001_create.sql",
                "CREATE TABLE t (id BIGINT PRIMARY KEY, old TEXT);\n",
            ),
            (
                "expand/0002_oops.sql",
                "-- clean up\n\nALTER TABLE t DROP COLUMN old;\n",
            ),
        ],
    );
    let out = migrate(
        dir.path(),
        &case.url,
        &["apply", "--phase", "expand", "--db", "pg_refuse"],
    );
    assert!(!out.status.success());
    let message = stderr(&out);
    assert!(message.contains("0002_oops.sql:3:1"), "{message}");
    // The first migration ran; the refused one did not.
    let status = ok(&migrate(
        dir.path(),
        &case.url,
        &["status", "--db", "pg_refuse"],
    ));
    assert!(
        status.contains("applied") && status.contains("pending"),
        "{status}"
    );
    // lint says the same, for CI, and exits 1.
    let lint = Command::new(BIN)
        .current_dir(dir.path())
        .args([
            "migrate",
            "lint",
            "--db",
            "pg_refuse",
            "--dialect",
            "postgres",
        ])
        .output()
        .unwrap();
    assert_eq!(lint.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&lint.stdout).contains("ban-drop-column"));
}

#[test]
fn a_statement_that_fails_halfway_on_mariadb_resumes_where_it_stopped() {
    let case = mariadb("migrate_resume");
    let dir = folder(
        "my_resume",
        &[(
            "expand/0001_tables.sql",
            "CREATE TABLE a (id BIGINT PRIMARY KEY);\nCREATE TABLE b (id BIGINT PRIMARY KEY, a_id BIGINT REFERENCES nowhere (id));\nCREATE TABLE c (id BIGINT PRIMARY KEY);\n",
        )],
    );
    let root = dir.path();
    let out = migrate(
        root,
        &case.url,
        &["apply", "--phase", "expand", "--db", "my_resume"],
    );
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("0001_tables.sql:2:1"),
        "{}",
        stderr(&out)
    );
    let status = ok(&migrate(root, &case.url, &["status", "--db", "my_resume"]));
    assert!(status.contains("partial: 1 done"), "{status}");
    // Fix the failed statement (only statements after the last done may change), retry.
    std::fs::write(
        root.join("migrations/my_resume/expand/0001_tables.sql"),
        "CREATE TABLE a (id BIGINT PRIMARY KEY);\nCREATE TABLE b (id BIGINT PRIMARY KEY, a_id BIGINT);\nCREATE TABLE c (id BIGINT PRIMARY KEY);\n",
    )
    .unwrap();
    let out = migrate(
        root,
        &case.url,
        &["apply", "--phase", "expand", "--db", "my_resume"],
    );
    ok(&out);
    assert!(
        !stderr(&out).contains("statement 1 "),
        "statement 1 is not run again: {}",
        stderr(&out)
    );
    let status = ok(&migrate(root, &case.url, &["status", "--db", "my_resume"]));
    assert!(status.contains("applied"), "{status}");
}

#[test]
fn one_runner_per_database() {
    let case = postgres("migrate_lock");
    let dir = folder(
        "pg_lock",
        &[(
            "expand/0001_t.sql",
            "CREATE TABLE t (id BIGINT PRIMARY KEY);\n",
        )],
    );
    // Another runner holds the lock (taken here as the runner takes it).
    block_on(async {
        use sqlx::Connection;
        let mut holder = sqlx::PgConnection::connect(&case.url).await.unwrap();
        // The key names the schema too: each schema has its own version tables.
        let got: bool = sqlx::query_scalar(
            "SELECT pg_try_advisory_lock(hashtextextended($1 || ':' || current_schema(), 0))",
        )
        .bind("gantry-migrate:pg_lock")
        .fetch_one(&mut holder)
        .await
        .unwrap();
        assert!(got);
        let out = migrate(
            dir.path(),
            &case.url,
            &["apply", "--phase", "expand", "--db", "pg_lock"],
        );
        assert!(!out.status.success());
        assert!(
            stderr(&out).contains("another runner holds database 'pg_lock'"),
            "{}",
            stderr(&out)
        );
        drop(holder);
    });
    ok(&migrate(
        dir.path(),
        &case.url,
        &["apply", "--phase", "expand", "--db", "pg_lock"],
    ));
}

#[test]
fn a_password_is_never_shown() {
    let dir = folder(
        "pg_secret",
        &[(
            "expand/0001_t.sql",
            "CREATE TABLE t (id BIGINT PRIMARY KEY);\n",
        )],
    );
    for url in [
        "postgres://postgres:Sw0rdfish-Zebra-42@127.0.0.1:1/test",
        "postgres://postgres@127.0.0.1:1/test?password=Sw0rdfish-Zebra-42",
        "mysql://root:Sw0rdfish-Zebra-42@127.0.0.1:1/test",
    ] {
        for args in [
            &["status", "--db", "pg_secret"][..],
            &["apply", "--phase", "expand", "--db", "pg_secret"][..],
        ] {
            let url_file = dir.path().join("target.url");
            std::fs::write(&url_file, url).unwrap();
            let out = Command::new(BIN)
                .current_dir(dir.path())
                .env("GANTRY_LOG", "debug")
                .arg("migrate")
                .args(args)
                .arg("--target-url-file")
                .arg(&url_file)
                .output()
                .unwrap();
            assert!(!out.status.success());
            let all = format!("{}{}", String::from_utf8_lossy(&out.stdout), stderr(&out));
            assert!(!all.contains("Sw0rdfish"), "{url}: {all}");
        }
    }
    // The server's database URL is never read: without a target, it says what to set.
    let out = Command::new(BIN)
        .current_dir(dir.path())
        .env_remove("GANTRY_MIGRATE_URL")
        .env("GANTRY_DATABASE_URL", "sqlite:///tmp/never.db")
        .args(["migrate", "status", "--db", "pg_secret"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("GANTRY_MIGRATE_URL"),
        "{}",
        stderr(&out)
    );
}

/// The DBA's script, run with psql, leaves the same schema and version rows as apply.
#[test]
fn the_plan_run_with_psql_equals_apply() {
    if Command::new("psql").arg("--version").output().is_err() {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "psql is missing"
        );
        return;
    }
    let applied = postgres("migrate_plan_a");
    let planned = postgres("migrate_plan_b");
    let dir = expand_and_contract("pg_plan", &applied);
    ok(&migrate(
        dir.path(),
        &applied.url,
        &["apply", "--phase", "expand", "--db", "pg_plan"],
    ));
    let script = ok(&migrate(
        dir.path(),
        &planned.url,
        &["plan", "--phase", "expand", "--db", "pg_plan"],
    ));
    assert!(script.contains("ON_ERROR_STOP"), "{script}");
    let script_file: PathBuf = dir.path().join("plan.sql");
    std::fs::write(&script_file, &script).unwrap();
    // psql takes the search_path through PGOPTIONS (the test schema).
    let (base, schema) = split_schema(&planned.url);
    let run = Command::new("psql")
        .arg(&base)
        .arg("-q")
        .arg("-f")
        .arg(&script_file)
        .env("PGOPTIONS", format!("-c search_path={schema}"))
        .output()
        .unwrap();
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    let a = block_on(end_state(&applied.url));
    let b = block_on(end_state(&planned.url));
    assert_eq!(a, b);
    let status = ok(&migrate(
        dir.path(),
        &planned.url,
        &["status", "--db", "pg_plan"],
    ));
    assert_eq!(status.matches("applied").count(), 3, "{status}");
}

/// The base URL and the schema of a test URL (`…?options=-c%20search_path%3DNAME`).
fn split_schema(url: &str) -> (String, String) {
    let (base, options) = url.split_once("?options=").unwrap();
    let schema = options.rsplit("%3D").next().unwrap().to_string();
    (base.to_string(), schema)
}

/// Columns of `users` and the expand version rows (without times).
async fn end_state(url: &str) -> (Vec<(String, String)>, Vec<(i64, String, String, i32)>) {
    use sqlx::Connection;
    let mut conn = sqlx::PgConnection::connect(url).await.unwrap();
    let columns = sqlx::query_as(
        "SELECT column_name::text, data_type::text FROM information_schema.columns WHERE table_schema = current_schema() AND table_name = 'users' ORDER BY column_name",
    )
    .fetch_all(&mut conn)
    .await
    .unwrap();
    let rows = sqlx::query_as(
        "SELECT version, description, checksum, statements FROM gantry_schema_expand ORDER BY version",
    )
    .fetch_all(&mut conn)
    .await
    .unwrap();
    (columns, rows)
}

/// A runner that died between a statement's `started` and `done` leaves the question "did
/// it commit?": the catalog answers it for plain DDL (the statement is run again, or
/// counted done); for anything else apply refuses until told.
#[test]
fn a_statement_started_but_not_done_is_looked_up_or_asked_about() {
    let case = mariadb("migrate_crash");
    let exec = |sql: &str| {
        block_on(async {
            use sqlx::Connection;
            let mut conn = sqlx::MySqlConnection::connect(&case.url).await.unwrap();
            sqlx::raw_sql(sql).execute(&mut conn).await.unwrap();
        })
    };
    let crashed = |db: &str, file: &str| {
        let dir = folder(db, &[("expand/0001_x.sql", file)]);
        // The version tables exist after any command; then the crash is simulated.
        ok(&migrate(dir.path(), &case.url, &["status", "--db", db]));
        exec("DELETE FROM gantry_schema_expand_statements");
        exec("INSERT INTO gantry_schema_expand_statements (version, statement_index, checksum, state) VALUES (1, 0, 'x', 'started')");
        dir
    };
    // Started, never committed (table a absent): run again.
    let dir = crashed("my_crash_a", "CREATE TABLE a (id BIGINT PRIMARY KEY);\n");
    ok(&migrate(
        dir.path(),
        &case.url,
        &["apply", "--phase", "expand", "--db", "my_crash_a"],
    ));
    // Committed before the crash (table b present): counted done, not run again (it would
    // fail: the table exists).
    exec("DELETE FROM gantry_schema_expand");
    exec("CREATE TABLE b (id BIGINT PRIMARY KEY)");
    let dir = crashed(
        "my_crash_b",
        "CREATE TABLE b (id BIGINT PRIMARY KEY);\nCREATE TABLE b2 (id BIGINT PRIMARY KEY);\n",
    );
    let out = migrate(
        dir.path(),
        &case.url,
        &["apply", "--phase", "expand", "--db", "my_crash_b"],
    );
    ok(&out);
    assert!(
        !stderr(&out).contains("statement 1 "),
        "statement 1 is not run again: {}",
        stderr(&out)
    );
    // An INSERT's effect is not in the catalog: apply asks.
    exec("DELETE FROM gantry_schema_expand");
    exec("CREATE TABLE c (id BIGINT PRIMARY KEY)");
    let dir = crashed("my_crash_c", "INSERT INTO c VALUES (1);\n");
    let out = migrate(
        dir.path(),
        &case.url,
        &["apply", "--phase", "expand", "--db", "my_crash_c"],
    );
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("--assume-done or --rerun"),
        "{}",
        stderr(&out)
    );
    ok(&migrate(
        dir.path(),
        &case.url,
        &[
            "apply",
            "--phase",
            "expand",
            "--db",
            "my_crash_c",
            "--rerun",
        ],
    ));
}

/// Through the server: each applied phase is a change of kind `migration`, and the
/// contract gate stays shut while no build runs that was deployed after the expand.
#[test]
fn phases_are_changes_and_the_contract_gate_asks_the_server() {
    let server = crate::harness::Server::start();
    server.ok(&["service", "create", "shop", "--envs", "stage,prod"]);
    let case = postgres("migrate_gate");
    let dir = expand_and_contract("pg_gate", &case);
    let token = server.data_dir.join("admin.token");
    let url = server.url();
    let with_server = |args: &[&str]| {
        let mut all = vec![
            "--url",
            &url,
            "--token-file",
            token.to_str().unwrap(),
            "migrate",
        ];
        all.extend_from_slice(args);
        let url_file = dir.path().join("target.url");
        std::fs::write(&url_file, &case.url).unwrap();
        Command::new(BIN)
            .current_dir(dir.path())
            .args(&all)
            .arg("--target-url-file")
            .arg(&url_file)
            .output()
            .unwrap()
    };
    let id = ok(&with_server(&[
        "apply",
        "--phase",
        "expand",
        "--db",
        "pg_gate",
        "--service",
        "shop",
        "--env",
        "prod",
    ]));
    let change = server.http().get(&format!("/api/v1/changes/{}", id.trim()));
    assert_eq!(change.body["kind"], "migration", "{}", change.text);
    assert_eq!(change.body["metadata"]["phase"], "expand");
    assert_eq!(
        change.body["metadata"]["versions"],
        serde_json::json!([1, 2, 3])
    );

    let shut = with_server(&[
        "apply",
        "--phase",
        "contract",
        "--db",
        "pg_gate",
        "--service",
        "shop",
        "--env",
        "prod",
    ]);
    assert!(!shut.status.success());
    assert!(
        stderr(&shut).contains("never deployed in this environment"),
        "{}",
        stderr(&shut)
    );
    let forced = with_server(&[
        "apply",
        "--phase",
        "contract",
        "--db",
        "pg_gate",
        "--service",
        "shop",
        "--env",
        "prod",
        "--force",
        "--reason",
        "legacy column unused since 2025",
    ]);
    let id = ok(&forced);
    let change = server.http().get(&format!("/api/v1/changes/{}", id.trim()));
    assert_eq!(
        change.body["metadata"]["forced"],
        "legacy column unused since 2025"
    );

    // A repair is a deliberate act, and a change.
    std::fs::write(
        dir.path()
            .join("migrations/pg_gate/expand/0002_add_email.sql"),
        "-- reviewed\nALTER TABLE users ADD COLUMN email VARCHAR(200);\n",
    )
    .unwrap();
    let id = ok(&with_server(&[
        "repair",
        "--phase",
        "expand",
        "--db",
        "pg_gate",
        "--service",
        "shop",
        "--env",
        "prod",
        "--reason",
        "comment added",
    ]));
    let change = server.http().get(&format!("/api/v1/changes/{}", id.trim()));
    assert_eq!(change.body["kind"], "migration", "{}", change.text);
    assert_eq!(change.body["metadata"]["repaired"], serde_json::json!([2]));
    assert_eq!(change.body["metadata"]["reason"], "comment added");
}

fn backfill_case(db: &str, case: &Case, seed: &str) {
    let dir = folder(
        db,
        &[
            ("expand/0001_users.sql", seed),
            (
                "expand/0002_add_email_lower.sql",
                "ALTER TABLE users ADD COLUMN email_lower VARCHAR(200);\n",
            ),
            (
                "expand/0002_add_email_lower.backfill.sql",
                "UPDATE users SET email_lower = LOWER(email) WHERE email_lower IS NULL;\n",
            ),
        ],
    );
    let out = migrate(
        dir.path(),
        &case.url,
        &[
            "apply",
            "--phase",
            "expand",
            "--db",
            db,
            "--backfill-batch",
            "1000",
            "--force",
            "--reason",
            "test",
        ],
    );
    ok(&out);
    let log = stderr(&out);
    assert!(
        log.contains("backfill: 1000 rows") && log.contains("backfill: 2500 rows"),
        "{log}"
    );
    let status = ok(&migrate(dir.path(), &case.url, &["status", "--db", db]));
    assert_eq!(status.matches("applied").count(), 2, "{status}");
}

#[test]
fn a_backfill_walks_the_key_in_batches_on_postgres_and_mariadb() {
    backfill_case(
        "pg_backfill",
        &postgres("migrate_backfill"),
        "CREATE TABLE users (id BIGINT PRIMARY KEY, email VARCHAR(200));\n\
         INSERT INTO users SELECT g, 'User' || g || '@Example.com' FROM generate_series(1, 2500) g;\n",
    );
    backfill_case(
        "my_backfill",
        &mariadb("migrate_backfill"),
        "CREATE TABLE users (id BIGINT PRIMARY KEY, email VARCHAR(200));\n\
         INSERT INTO users SELECT seq, CONCAT('User', seq, '@Example.com') FROM seq_1_to_2500;\n",
    );
}

#[test]
fn a_backfill_needs_a_primary_key() {
    let case = postgres("migrate_nopk");
    let dir = folder(
        "pg_nopk",
        &[
            (
                "expand/0001_logs.sql",
                "CREATE TABLE logs (line TEXT, seen BOOLEAN);\n",
            ),
            (
                "expand/0001_logs.backfill.sql",
                "UPDATE logs SET seen = false WHERE seen IS NULL;\n",
            ),
        ],
    );
    let out = migrate(
        dir.path(),
        &case.url,
        &[
            "apply", "--phase", "expand", "--db", "pg_nopk", "--force", "--reason", "test",
        ],
    );
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("has no primary key"),
        "{}",
        stderr(&out)
    );
    // A probe that cannot pass is named before anything waits on it: a bad probe is refused.
    let out = migrate(
        dir.path(),
        &case.url,
        &[
            "apply",
            "--phase",
            "expand",
            "--db",
            "pg_nopk",
            "--throttle",
            "SELECT 1",
        ],
    );
    assert!(!out.status.success());
    assert!(stderr(&out).contains("is not SQL<=N"), "{}", stderr(&out));
}

/// Writes to `items` (inserts, updates, deletes) until told to stop, keeping a model of
/// what the table must hold; returns the model.
fn writer(
    url: String,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
) -> std::thread::JoinHandle<std::collections::BTreeMap<i64, String>> {
    std::thread::spawn(move || {
        block_on(async move {
            use rand::{Rng, SeedableRng};
            use sqlx::Connection;
            let mut model: std::collections::BTreeMap<i64, String> =
                (1..=5000).map(|i| (i, format!("n{i}"))).collect();
            let mut rng = rand::rngs::StdRng::seed_from_u64(7);
            macro_rules! run {
                ($conn:expr) => {{
                    let mut k = 0i64;
                    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                        k += 1;
                        let id = rng.gen_range(1..=5000i64);
                        let sql = match k % 3 {
                            0 => {
                                model.insert(100_000 + k, format!("i{k}"));
                                format!(
                                    "INSERT INTO items (id, name) VALUES ({}, 'i{k}')",
                                    100_000 + k
                                )
                            }
                            1 => {
                                if let Some(v) = model.get_mut(&id) {
                                    *v = format!("u{k}");
                                }
                                format!("UPDATE items SET name = 'u{k}' WHERE id = {id}")
                            }
                            _ => {
                                model.remove(&id);
                                format!("DELETE FROM items WHERE id = {id}")
                            }
                        };
                        // A deadlock with the copy is the database's to break; the
                        // writer retries as an application would.
                        let mut tries = 0;
                        while let Err(e) = sqlx::raw_sql(&sql).execute(&mut $conn).await {
                            tries += 1;
                            assert!(tries < 20, "{sql}: {e}");
                            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
                        }
                        tokio::time::sleep(std::time::Duration::from_millis(1)).await;
                    }
                }};
            }
            if url.starts_with("postgres") {
                let mut conn = sqlx::PgConnection::connect(&url).await.unwrap();
                run!(conn);
            } else {
                let mut conn = sqlx::MySqlConnection::connect(&url).await.unwrap();
                run!(conn);
            }
            model
        })
    })
}

/// Every row of `items` after the swap.
fn rows(url: &str) -> std::collections::BTreeMap<i64, String> {
    block_on(async {
        use sqlx::Connection;
        if url.starts_with("postgres") {
            let mut conn = sqlx::PgConnection::connect(url).await.unwrap();
            sqlx::query_as::<_, (i64, String)>("SELECT id, name FROM items")
                .fetch_all(&mut conn)
                .await
                .unwrap()
                .into_iter()
                .collect()
        } else {
            let mut conn = sqlx::MySqlConnection::connect(url).await.unwrap();
            sqlx::query_as::<_, (i64, String)>("SELECT id, name FROM items")
                .fetch_all(&mut conn)
                .await
                .unwrap()
                .into_iter()
                .collect()
        }
    })
}

fn rebuild_while_writing(db: &str, case: Case, seed: &str, alter: &str) {
    let dir = folder(db, &[("expand/0001_items.sql", seed)]);
    ok(&migrate(
        dir.path(),
        &case.url,
        &["apply", "--phase", "expand", "--db", db],
    ));
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let handle = writer(case.url.clone(), stop.clone());
    std::thread::sleep(std::time::Duration::from_millis(200));
    let out = migrate(
        dir.path(),
        &case.url,
        &[
            "rebuild", "items", "--alter", alter, "--phase", "contract", "--db", db, "--batch",
            "200",
        ],
    );
    std::thread::sleep(std::time::Duration::from_millis(200));
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let model = handle.join().unwrap();
    ok(&out);
    assert!(stderr(&out).contains("rebuilt items"), "{}", stderr(&out));
    let table = rows(&case.url);
    assert_eq!(table.len(), model.len(), "row counts");
    assert!(
        table == model,
        "the rebuilt table differs from what was written"
    );
}

#[test]
fn an_online_rebuild_on_mariadb_keeps_every_write() {
    rebuild_while_writing(
        "my_rebuild",
        mariadb("migrate_rebuild"),
        "CREATE TABLE items (id INT NOT NULL PRIMARY KEY, name VARCHAR(50) NOT NULL);\n\
         INSERT INTO items SELECT seq, CONCAT('n', seq) FROM seq_1_to_5000;\n",
        "MODIFY id BIGINT NOT NULL",
    );
}

#[test]
fn an_online_rebuild_on_postgres_keeps_every_write() {
    rebuild_while_writing(
        "pg_rebuild",
        postgres("migrate_rebuild"),
        "CREATE TABLE items (id INT PRIMARY KEY, name VARCHAR(50) NOT NULL);\n\
         INSERT INTO items SELECT g, 'n' || g FROM generate_series(1, 5000) g;\n",
        "ALTER COLUMN id TYPE BIGINT",
    );
}

#[test]
fn a_rebuild_is_refused_without_a_primary_key_or_with_foreign_keys_pointing_at_it() {
    let case = postgres("migrate_rebuild_refuse");
    let dir = folder(
        "pg_rebuild_refuse",
        &[(
            "expand/0001_t.sql",
            "CREATE TABLE loose (a INT);\nCREATE TABLE parent (id BIGINT PRIMARY KEY);\nCREATE TABLE child (id BIGINT PRIMARY KEY, parent_id BIGINT REFERENCES parent (id));\n",
        )],
    );
    ok(&migrate(
        dir.path(),
        &case.url,
        &[
            "apply",
            "--phase",
            "expand",
            "--db",
            "pg_rebuild_refuse",
            "--force",
            "--reason",
            "test",
        ],
    ));
    for (table, says) in [
        ("loose", "has no primary key"),
        ("parent", "foreign keys reference it"),
    ] {
        let out = migrate(
            dir.path(),
            &case.url,
            &[
                "rebuild",
                table,
                "--alter",
                "ADD COLUMN note TEXT",
                "--db",
                "pg_rebuild_refuse",
            ],
        );
        assert!(!out.status.success());
        assert!(stderr(&out).contains(says), "{table}: {}", stderr(&out));
    }
}

#[test]
fn a_rebuild_keeps_its_own_foreign_keys_and_repoints_those_at_it() {
    let case = postgres("migrate_rebuild_fks");
    let dir = folder(
        "pg_rebuild_fks",
        &[(
            "expand/0001_t.sql",
            "CREATE TABLE customers (id BIGINT PRIMARY KEY);\n\
             CREATE TABLE orders (id BIGINT PRIMARY KEY, customer_id BIGINT NOT NULL REFERENCES customers (id));\n\
             CREATE TABLE lines (id BIGINT PRIMARY KEY, order_id BIGINT NOT NULL REFERENCES orders (id) ON DELETE CASCADE);\n\
             CREATE TABLE nodes (id BIGINT PRIMARY KEY, parent_id BIGINT REFERENCES nodes (id));\n\
             INSERT INTO customers SELECT g FROM generate_series(1, 10) g;\n\
             INSERT INTO orders SELECT g, 1 + g % 10 FROM generate_series(1, 500) g;\n\
             INSERT INTO lines SELECT g, 1 + g % 500 FROM generate_series(1, 1000) g;\n",
        )],
    );
    let db = ["--db", "pg_rebuild_fks"];
    ok(&migrate(
        dir.path(),
        &case.url,
        &[
            &["apply", "--phase", "expand", "--force", "--reason", "test"][..],
            &db,
        ]
        .concat(),
    ));
    let rebuild = |table: &str, extra: &[&str]| {
        let args = [
            &[
                "rebuild",
                table,
                "--alter",
                "ADD COLUMN note TEXT",
                "--batch",
                "100",
            ][..],
            extra,
            &db,
        ]
        .concat();
        migrate(dir.path(), &case.url, &args)
    };
    let refused = rebuild("orders", &[]);
    assert!(!refused.status.success());
    assert!(
        stderr(&refused).contains("--repoint-foreign-keys"),
        "{}",
        stderr(&refused)
    );
    let refused = rebuild("nodes", &["--repoint-foreign-keys"]);
    assert!(!refused.status.success());
    assert!(
        stderr(&refused).contains("references the table itself"),
        "{}",
        stderr(&refused)
    );

    ok(&rebuild("orders", &["--repoint-foreign-keys"]));
    block_on(async {
        use sqlx::Connection;
        let mut c = sqlx::PgConnection::connect(&case.url).await.unwrap();
        let count = |sql: &'static str| sqlx::query_scalar::<_, i64>(sql);
        // The table's own key came along, validated; the key pointing at it moved to it.
        let own = count("SELECT count(*) FROM pg_constraint WHERE contype = 'f' AND convalidated AND conrelid = 'orders'::regclass AND confrelid = 'customers'::regclass")
            .fetch_one(&mut c).await.unwrap();
        assert_eq!(own, 1);
        let pointing = count("SELECT count(*) FROM pg_constraint WHERE contype = 'f' AND convalidated AND conrelid = 'lines'::regclass AND confrelid = 'orders'::regclass")
            .fetch_one(&mut c).await.unwrap();
        assert_eq!(pointing, 1);
        let left = count("SELECT count(*) FROM pg_constraint WHERE contype = 'f' AND confrelid = to_regclass('_gantry_old_orders')")
            .fetch_one(&mut c).await.unwrap();
        assert_eq!(left, 0, "nothing points at the old table");
        let old_keys = count("SELECT count(*) FROM pg_constraint WHERE contype = 'f' AND conrelid = to_regclass('_gantry_old_orders')")
            .fetch_one(&mut c).await.unwrap();
        assert_eq!(
            old_keys, 0,
            "the frozen old table holds no keys that would block deletes"
        );
        assert_eq!(
            count("SELECT count(*) FROM orders")
                .fetch_one(&mut c)
                .await
                .unwrap(),
            500
        );
        // Both keys are enforced on the new table, the cascade too.
        let orphan = sqlx::raw_sql("INSERT INTO lines VALUES (5000, 99999)")
            .execute(&mut c)
            .await;
        assert!(orphan.is_err(), "a line for a missing order is refused");
        let orphan = sqlx::raw_sql("INSERT INTO orders (id, customer_id) VALUES (5000, 99)")
            .execute(&mut c)
            .await;
        assert!(
            orphan.is_err(),
            "an order for a missing customer is refused"
        );
        sqlx::raw_sql("DELETE FROM orders WHERE id = 7")
            .execute(&mut c)
            .await
            .unwrap();
        let lines = count("SELECT count(*) FROM lines WHERE order_id = 7")
            .fetch_one(&mut c)
            .await
            .unwrap();
        assert_eq!(lines, 0);
    });
}
