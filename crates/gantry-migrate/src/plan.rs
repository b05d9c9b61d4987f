//! The plan: the complete SQL script for one phase's pending migrations, for a DBA to run
//! as it is on the database server (psql, mysql or sqlite3), where a long migration does
//! not die with an SSH session. It holds, in order: a header saying it has no retries or
//! throttling (Gantry's runner has both; this script does not); the client's stop-on-error
//! setting (`\set ON_ERROR_STOP on`, `.bail on`; mysql stops by itself); session settings
//! (lock timeouts, no statement timeout; `.timeout` for sqlite3); `CREATE TABLE IF NOT
//! EXISTS` for the version table and its per-statement progress table; then each
//! migration with its bookkeeping:
//! - PostgreSQL and SQLite: one transaction per migration (`BEGIN`, the statements, the
//!   version row, `COMMIT`), unless a statement cannot run in one (`CONCURRENTLY`,
//!   `VACUUM`, …): those run alone outside, without a lock timeout for `CONCURRENTLY`, the
//!   rest in transactions around them, each statement recorded in the progress table;
//! - MySQL/MariaDB commit DDL implicitly: no transaction, each statement recorded as
//!   `started`, then `done`, and `DELIMITER` around a statement holding `;`;
//! - a backfill runs as its single UPDATE after the migration's statements (not in
//!   batches: the header says so), before the version row.
//!
//! Pure: the caller passes the pending migrations; nothing here reads the database.

use std::fmt::Write as _;

use crate::classify::needs_own_transaction;
use crate::layout::{Migration, Phase};
use crate::split::{self, Dialect, Statement};

/// PostgreSQL's lock timeout in the plan and the runner's default.
pub const LOCK_TIMEOUT_MS: u64 = 500;
/// MySQL/MariaDB lock wait timeouts in whole seconds (their smallest useful value).
pub const MYSQL_LOCK_WAIT_SECS: u64 = 1;

/// The name of the per-statement progress table kept beside `version_table`.
pub fn progress_table(version_table: &str) -> String {
    format!("{version_table}_statements")
}

/// `CREATE TABLE IF NOT EXISTS` statements for the version table and its progress table.
/// A version row means the migration is applied; progress rows (`started`, then `done`)
/// record statements where a migration does not run in one transaction.
pub fn version_table_ddl(dialect: Dialect, version_table: &str) -> Vec<String> {
    let table = quote_ident(dialect, version_table);
    let progress = quote_ident(dialect, &progress_table(version_table));
    match dialect {
        Dialect::Postgres => vec![
            format!(
                "CREATE TABLE IF NOT EXISTS {table} (\n    version bigint PRIMARY KEY,\n    \
                 description text NOT NULL,\n    checksum text NOT NULL,\n    \
                 applied_at timestamptz NOT NULL DEFAULT now(),\n    applied_by text NOT NULL,\n    \
                 duration_ms bigint NOT NULL,\n    statements integer NOT NULL\n)"
            ),
            format!(
                "CREATE TABLE IF NOT EXISTS {progress} (\n    version bigint NOT NULL,\n    \
                 statement_index integer NOT NULL,\n    checksum text NOT NULL,\n    \
                 state text NOT NULL CHECK (state IN ('started', 'done')),\n    \
                 started_at timestamptz NOT NULL DEFAULT clock_timestamp(),\n    \
                 finished_at timestamptz,\n    PRIMARY KEY (version, statement_index)\n)"
            ),
        ],
        Dialect::MySql => vec![
            format!(
                "CREATE TABLE IF NOT EXISTS {table} (\n    version BIGINT NOT NULL PRIMARY KEY,\n    \
                 description VARCHAR(255) NOT NULL,\n    checksum CHAR(64) NOT NULL,\n    \
                 applied_at TIMESTAMP(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6),\n    \
                 applied_by VARCHAR(255) NOT NULL,\n    duration_ms BIGINT NOT NULL,\n    \
                 statements INT NOT NULL\n)"
            ),
            format!(
                "CREATE TABLE IF NOT EXISTS {progress} (\n    version BIGINT NOT NULL,\n    \
                 statement_index INT NOT NULL,\n    checksum CHAR(64) NOT NULL,\n    \
                 state VARCHAR(16) NOT NULL,\n    \
                 started_at TIMESTAMP(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6),\n    \
                 finished_at TIMESTAMP(6) NULL,\n    PRIMARY KEY (version, statement_index)\n)"
            ),
        ],
        Dialect::Sqlite => vec![
            format!(
                "CREATE TABLE IF NOT EXISTS {table} (\n    version INTEGER PRIMARY KEY,\n    \
                 description TEXT NOT NULL,\n    checksum TEXT NOT NULL,\n    \
                 applied_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),\n    \
                 applied_by TEXT NOT NULL,\n    duration_ms INTEGER NOT NULL,\n    \
                 statements INTEGER NOT NULL\n)"
            ),
            format!(
                "CREATE TABLE IF NOT EXISTS {progress} (\n    version INTEGER NOT NULL,\n    \
                 statement_index INTEGER NOT NULL,\n    checksum TEXT NOT NULL,\n    \
                 state TEXT NOT NULL CHECK (state IN ('started', 'done')),\n    \
                 started_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),\n    \
                 finished_at TEXT,\n    PRIMARY KEY (version, statement_index)\n)"
            ),
        ],
    }
}

/// An identifier quoted for `dialect`; dots separate schema and table
/// (`app.gantry_schema_expand` → `"app"."gantry_schema_expand"`).
pub fn quote_ident(dialect: Dialect, name: &str) -> String {
    name.split('.')
        .map(|part| match dialect {
            Dialect::MySql => format!("`{}`", part.replace('`', "``")),
            Dialect::Postgres | Dialect::Sqlite => format!("\"{}\"", part.replace('"', "\"\"")),
        })
        .collect::<Vec<_>>()
        .join(".")
}

/// A string literal for `dialect`. MySQL reads backslashes as escapes unless
/// `NO_BACKSLASH_ESCAPES` is set, so a value holding one is written in hex, which reads the
/// same in either mode.
pub fn quote_literal(dialect: Dialect, value: &str) -> String {
    if dialect == Dialect::MySql && value.contains('\\') {
        let hex: String = value.bytes().map(|b| format!("{b:02x}")).collect();
        return format!("CONVERT(X'{hex}' USING utf8mb4)");
    }
    format!("'{}'", value.replace('\'', "''"))
}

/// Text safe inside a `--` comment: one line, no control characters.
fn comment_text(text: &str) -> String {
    text.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

/// The script that applies `migrations` (the pending ones of `phase`, in order) with
/// `dialect`'s own client, recording each in `version_table` as applied by `applied_by`.
pub fn plan_script(
    dialect: Dialect,
    phase: Phase,
    migrations: &[&Migration],
    version_table: &str,
    applied_by: &str,
) -> String {
    let plan = Plan {
        dialect,
        table: quote_ident(dialect, version_table),
        progress: quote_ident(dialect, &progress_table(version_table)),
        // MySQL's column is VARCHAR(255): a longer name would fail the version row.
        applied_by: quote_literal(dialect, &applied_by.chars().take(255).collect::<String>()),
    };
    let mut out = String::new();
    plan.header(&mut out, phase, migrations, version_table);
    for ddl in version_table_ddl(dialect, version_table) {
        let _ = writeln!(out, "{ddl};");
    }
    if dialect == Dialect::Sqlite {
        out.push_str("CREATE TEMP TABLE IF NOT EXISTS gantry_plan_clock (started REAL);\n");
    }
    if migrations.is_empty() {
        out.push_str("\n-- Nothing to apply: no pending migration.\n");
    }
    for migration in migrations {
        out.push('\n');
        match dialect {
            Dialect::MySql => plan.mysql_migration(&mut out, migration),
            Dialect::Postgres | Dialect::Sqlite => {
                plan.transactional_migration(&mut out, migration)
            }
        }
    }
    out
}

struct Plan {
    dialect: Dialect,
    table: String,
    progress: String,
    applied_by: String,
}

impl Plan {
    fn header(
        &self,
        out: &mut String,
        phase: Phase,
        migrations: &[&Migration],
        version_table: &str,
    ) {
        let (client, run) = match self.dialect {
            Dialect::Postgres => ("psql", "psql -X -f plan.sql \"$DATABASE\""),
            Dialect::MySql => ("mysql", "mysql --database=\"$DATABASE\" < plan.sql"),
            Dialect::Sqlite => ("sqlite3", "sqlite3 \"$DATABASE_FILE\" < plan.sql"),
        };
        let _ = writeln!(
            out,
            "-- Gantry migration plan: {phase} phase, {} pending migration{}, for {client}.",
            migrations.len(),
            if migrations.len() == 1 { "" } else { "s" }
        );
        let _ = writeln!(out, "-- Run it as it is on the database server: {run}");
        out.push_str(
            "--\n\
             -- This script has NO RETRIES and NO THROTTLING. Gantry's runner (gantry migrate apply)\n\
             -- retries a statement that hits the lock timeout with jittered backoff, holds for the\n\
             -- throttle probes, walks backfills in primary-key batches and resumes where it stopped;\n\
             -- this script does none of that. A statement that waits longer than the lock timeout\n\
             -- fails and stops the script: the version and progress tables say what ran.\n",
        );
        let _ = writeln!(
            out,
            "-- Version table: {} (progress: {}).",
            comment_text(version_table),
            comment_text(&progress_table(version_table))
        );
        if !migrations.is_empty() {
            out.push_str("-- Migrations:\n");
            for m in migrations {
                let _ = writeln!(
                    out,
                    "--   {:04} {} ({}), sha256 {}",
                    m.version,
                    comment_text(&m.description),
                    comment_text(&m.path),
                    m.checksum
                );
            }
        }
        out.push('\n');
        match self.dialect {
            Dialect::Postgres => {
                out.push_str("\\set ON_ERROR_STOP on\n");
                let _ = writeln!(out, "SET lock_timeout = '{LOCK_TIMEOUT_MS}ms';");
                out.push_str("SET statement_timeout = 0;\n");
            }
            Dialect::MySql => {
                out.push_str("-- mysql stops at the first error (unless run with --force).\n");
                let _ = writeln!(
                    out,
                    "SET SESSION lock_wait_timeout = {MYSQL_LOCK_WAIT_SECS};"
                );
                let _ = writeln!(
                    out,
                    "SET SESSION innodb_lock_wait_timeout = {MYSQL_LOCK_WAIT_SECS};"
                );
            }
            Dialect::Sqlite => {
                out.push_str(".bail on\n");
                let _ = writeln!(out, ".timeout {LOCK_TIMEOUT_MS}");
            }
        }
        out.push('\n');
    }

    fn lit(&self, value: &str) -> String {
        quote_literal(self.dialect, value)
    }

    /// Starts the migration's clock.
    fn start_clock(&self, out: &mut String) {
        match self.dialect {
            Dialect::Postgres => {
                out.push_str("SELECT clock_timestamp() AS gantry_started \\gset\n")
            }
            Dialect::MySql => out.push_str("SET @gantry_started = NOW(6);\n"),
            Dialect::Sqlite => out.push_str(
                "DELETE FROM gantry_plan_clock;\n\
                 INSERT INTO gantry_plan_clock (started) VALUES (julianday('now'));\n",
            ),
        }
    }

    fn duration_ms(&self) -> &'static str {
        match self.dialect {
            Dialect::Postgres => {
                "(extract(epoch FROM clock_timestamp() - :'gantry_started'::timestamptz) * 1000)::bigint"
            }
            Dialect::MySql => "TIMESTAMPDIFF(MICROSECOND, @gantry_started, NOW(6)) DIV 1000",
            Dialect::Sqlite => {
                "CAST(round((julianday('now') - (SELECT started FROM gantry_plan_clock)) * 86400000) AS INTEGER)"
            }
        }
    }

    fn now(&self) -> &'static str {
        match self.dialect {
            Dialect::Postgres => "clock_timestamp()",
            Dialect::MySql => "NOW(6)",
            Dialect::Sqlite => "strftime('%Y-%m-%dT%H:%M:%fZ', 'now')",
        }
    }

    fn version_row(&self, out: &mut String, m: &Migration) {
        let _ = writeln!(
            out,
            "INSERT INTO {} (version, description, checksum, applied_by, duration_ms, statements)\n    \
             VALUES ({}, {}, {}, {}, {}, {});",
            self.table,
            m.version,
            self.lit(&m.description),
            self.lit(&m.checksum),
            self.applied_by,
            self.duration_ms(),
            m.statements.len()
        );
    }

    fn progress_started(&self, out: &mut String, m: &Migration, index: usize, stmt: &Statement) {
        let upsert = match self.dialect {
            Dialect::MySql => format!(
                " ON DUPLICATE KEY UPDATE state = 'started', checksum = {}, started_at = NOW(6), finished_at = NULL",
                self.lit(&stmt.checksum)
            ),
            Dialect::Postgres | Dialect::Sqlite => format!(
                " ON CONFLICT (version, statement_index) DO UPDATE SET state = 'started', checksum = {}, started_at = {}, finished_at = NULL",
                self.lit(&stmt.checksum),
                self.now()
            ),
        };
        let _ = writeln!(
            out,
            "INSERT INTO {} (version, statement_index, checksum, state) VALUES ({}, {index}, {}, 'started'){upsert};",
            self.progress,
            m.version,
            self.lit(&stmt.checksum),
        );
    }

    /// A statement done inside a transaction: its row commits (or not) with it.
    fn progress_in_transaction(
        &self,
        out: &mut String,
        m: &Migration,
        index: usize,
        stmt: &Statement,
    ) {
        let now = self.now();
        let checksum = self.lit(&stmt.checksum);
        let _ = writeln!(
            out,
            "INSERT INTO {} (version, statement_index, checksum, state, finished_at) VALUES ({}, {index}, {checksum}, 'done', {now}) \
             ON CONFLICT (version, statement_index) DO UPDATE SET state = 'done', checksum = {checksum}, started_at = {now}, finished_at = {now};",
            self.progress,
            m.version,
        );
    }

    fn progress_done(&self, out: &mut String, m: &Migration, index: usize) {
        let _ = writeln!(
            out,
            "UPDATE {} SET state = 'done', finished_at = {} WHERE version = {} AND statement_index = {index};",
            self.progress,
            self.now(),
            m.version
        );
    }

    fn statement(&self, out: &mut String, stmt: &Statement) {
        out.push_str(&stmt.text);
        out.push_str(";\n");
    }

    fn backfill(&self, out: &mut String, m: &Migration) {
        if let Some(backfill) = &m.backfill {
            let _ = writeln!(
                out,
                "-- Backfill ({}): one UPDATE in one transaction, NOT in batches.\n\
                 -- Gantry's runner walks the primary key in batches with a commit each; on a\n\
                 -- large table, prefer it (or run this in a quiet window).",
                comment_text(&backfill.path)
            );
            let _ = writeln!(out, "{};", backfill.text);
        }
    }

    /// PostgreSQL and SQLite: one transaction when every statement allows it; otherwise
    /// the statements that cannot run in one run alone, and the rest in transactions
    /// around them, each recorded in the progress table.
    fn transactional_migration(&self, out: &mut String, m: &Migration) {
        let alone: Vec<bool> = m
            .statements
            .iter()
            .map(|s| needs_own_transaction(self.dialect, s))
            .collect();
        let single = !alone.contains(&true) && m.backfill.is_none();
        let count = m.statements.len();
        if single {
            let _ = writeln!(
                out,
                "-- {:04} {}: {count} statement{} in one transaction.",
                m.version,
                comment_text(&m.description),
                if count == 1 { "" } else { "s" }
            );
            self.start_clock(out);
            out.push_str("BEGIN;\n");
            for stmt in &m.statements {
                self.statement(out, stmt);
            }
            self.version_row(out, m);
            out.push_str("COMMIT;\n");
            return;
        }
        let _ = writeln!(
            out,
            "-- {:04} {}: {count} statement{}, not in one transaction ({}); each statement is\n\
             -- recorded in the progress table.",
            m.version,
            comment_text(&m.description),
            if count == 1 { "" } else { "s" },
            if alone.contains(&true) {
                "some cannot run inside a transaction block"
            } else {
                "the backfill runs in its own transaction"
            }
        );
        self.start_clock(out);
        let mut open = false;
        for (index, stmt) in m.statements.iter().enumerate() {
            if alone[index] {
                if open {
                    out.push_str("COMMIT;\n");
                    open = false;
                }
                let concurrently = split::words(self.dialect, &stmt.text)
                    .iter()
                    .any(|w| w == "CONCURRENTLY");
                let _ = writeln!(
                    out,
                    "-- Statement {} of {count} runs alone, outside a transaction{}.",
                    index + 1,
                    if concurrently && self.dialect == Dialect::Postgres {
                        ", without a lock timeout (CONCURRENTLY waits for running transactions)"
                    } else {
                        ""
                    }
                );
                self.progress_started(out, m, index, stmt);
                if concurrently && self.dialect == Dialect::Postgres {
                    out.push_str("SET lock_timeout = 0;\n");
                    self.statement(out, stmt);
                    let _ = writeln!(out, "SET lock_timeout = '{LOCK_TIMEOUT_MS}ms';");
                } else {
                    self.statement(out, stmt);
                }
                self.progress_done(out, m, index);
            } else {
                if !open {
                    out.push_str("BEGIN;\n");
                    open = true;
                }
                self.statement(out, stmt);
                self.progress_in_transaction(out, m, index, stmt);
            }
        }
        if m.backfill.is_some() {
            if open {
                out.push_str("COMMIT;\n");
                open = false;
            }
            self.backfill(out, m);
        }
        if !open {
            out.push_str("BEGIN;\n");
        }
        self.version_row(out, m);
        out.push_str("COMMIT;\n");
    }

    /// MySQL/MariaDB: DDL commits implicitly, so each statement is recorded as started,
    /// then done; no transaction wrapper.
    fn mysql_migration(&self, out: &mut String, m: &Migration) {
        let count = m.statements.len();
        let _ = writeln!(
            out,
            "-- {:04} {}: {count} statement{}. MySQL commits each DDL statement on its own, so\n\
             -- each is recorded as started, then done.",
            m.version,
            comment_text(&m.description),
            if count == 1 { "" } else { "s" }
        );
        self.start_clock(out);
        for (index, stmt) in m.statements.iter().enumerate() {
            self.progress_started(out, m, index, stmt);
            if stmt.text.contains(';') {
                let delimiter = mysql_delimiter(&stmt.text);
                let _ = writeln!(out, "DELIMITER {delimiter}");
                let _ = writeln!(out, "{}{delimiter}", stmt.text);
                out.push_str("DELIMITER ;\n");
            } else {
                self.statement(out, stmt);
            }
            self.progress_done(out, m, index);
        }
        self.backfill(out, m);
        self.version_row(out, m);
    }
}

/// A mysql client delimiter that does not occur in `text`.
fn mysql_delimiter(text: &str) -> String {
    for candidate in ["//", "$$", ";;", "@@", "%%"] {
        if !text.contains(candidate) {
            return candidate.to_string();
        }
    }
    let mut candidate = String::from("//gantry");
    while text.contains(&candidate) {
        candidate.push('/');
    }
    candidate
}

#[cfg(test)]
mod tests {
    use super::*;
    use Dialect::{MySql, Postgres, Sqlite};

    fn migration(dialect: Dialect, path: &str, sql: &str, backfill: Option<&str>) -> Migration {
        let backfill = backfill.map(|b| ("x/0001_fill.backfill.sql", b));
        match Migration::from_source(dialect, Phase::Expand, path, sql, backfill) {
            Ok(m) => m,
            Err(e) => panic!("{e}"),
        }
    }

    /// Checks that `needles` appear in `script` in this order.
    fn check_in_order(script: &str, needles: &[&str]) {
        let mut from = 0;
        for needle in needles {
            match script[from..].find(needle) {
                Some(i) => from += i + needle.len(),
                None => panic!("{needle:?} not found (in order) in:\n{script}"),
            }
        }
    }

    #[test]
    fn postgres_single_transaction() {
        let m = migration(
            Postgres,
            "migrations/app/expand/0001_add_email.sql",
            "ALTER TABLE users ADD COLUMN email text;\nALTER TABLE users ALTER COLUMN email SET DEFAULT '';\n",
            None,
        );
        let script = plan_script(
            Postgres,
            Phase::Expand,
            &[&m],
            "gantry_schema_expand",
            "o'neil",
        );
        check_in_order(
            &script,
            &[
                "-- Gantry migration plan: expand phase, 1 pending migration, for psql.",
                "NO RETRIES and NO THROTTLING",
                "0001 add email (migrations/app/expand/0001_add_email.sql), sha256 ",
                "\\set ON_ERROR_STOP on\n",
                "SET lock_timeout = '500ms';\n",
                "SET statement_timeout = 0;\n",
                "CREATE TABLE IF NOT EXISTS \"gantry_schema_expand\" (",
                "version bigint PRIMARY KEY",
                "description text NOT NULL",
                "checksum text NOT NULL",
                "applied_at timestamptz",
                "applied_by text NOT NULL",
                "duration_ms bigint NOT NULL",
                "CREATE TABLE IF NOT EXISTS \"gantry_schema_expand_statements\" (",
                "SELECT clock_timestamp() AS gantry_started \\gset\n",
                "BEGIN;\n",
                "ALTER TABLE users ADD COLUMN email text;\n",
                "ALTER TABLE users ALTER COLUMN email SET DEFAULT '';\n",
                "INSERT INTO \"gantry_schema_expand\" (version, description, checksum, applied_by, duration_ms, statements)",
                "VALUES (1, 'add email', '",
                "'o''neil'",
                ", 2);\n",
                "COMMIT;\n",
            ],
        );
        assert!(
            !script.contains("statement_index, checksum, state) VALUES"),
            "{script}"
        );
    }

    #[test]
    fn postgres_concurrently_outside_transactions() {
        let m = migration(
            Postgres,
            "x/0002_index_email.sql",
            "ALTER TABLE users ADD COLUMN email text;\nCREATE INDEX CONCURRENTLY users_email ON users (email);\nCOMMENT ON COLUMN users.email IS 'x';\n",
            None,
        );
        let script = plan_script(Postgres, Phase::Expand, &[&m], "app.versions", "ci");
        check_in_order(
            &script,
            &[
                "CREATE TABLE IF NOT EXISTS \"app\".\"versions\" (",
                "CREATE TABLE IF NOT EXISTS \"app\".\"versions_statements\" (",
                "not in one transaction (some cannot run inside a transaction block)",
                "BEGIN;\n",
                "ALTER TABLE users ADD COLUMN email text;\n",
                "VALUES (2, 0, '",
                "'done', clock_timestamp()) ON CONFLICT (version, statement_index) DO UPDATE SET state = 'done'",
                "COMMIT;\n",
                "-- Statement 2 of 3 runs alone, outside a transaction, without a lock timeout",
                "VALUES (2, 1, '",
                "SET lock_timeout = 0;\nCREATE INDEX CONCURRENTLY users_email ON users (email);\nSET lock_timeout = '500ms';\n",
                "WHERE version = 2 AND statement_index = 1;\n",
                "BEGIN;\n",
                "COMMENT ON COLUMN users.email IS 'x';\n",
                "VALUES (2, 2, '",
                "INSERT INTO \"app\".\"versions\" (",
                "COMMIT;\n",
            ],
        );
        // The CONCURRENTLY statement is never between a BEGIN and its COMMIT.
        let at = script.find("CREATE INDEX CONCURRENTLY").unwrap_or(0);
        let before = &script[..at];
        assert!(before.rfind("COMMIT;") > before.rfind("BEGIN;"), "{script}");
    }

    #[test]
    fn postgres_backfill_after_statements() {
        let m = migration(
            Postgres,
            "x/0001_add.sql",
            "ALTER TABLE users ADD COLUMN email text DEFAULT '';",
            Some("UPDATE users SET email = lower(name) WHERE email = ''"),
        );
        let script = plan_script(Postgres, Phase::Expand, &[&m], "v", "ci");
        check_in_order(
            &script,
            &[
                "the backfill runs in its own transaction",
                "BEGIN;\n",
                "ALTER TABLE users ADD COLUMN email text DEFAULT '';\n",
                "COMMIT;\n",
                "NOT in batches",
                "UPDATE users SET email = lower(name) WHERE email = '';\n",
                "BEGIN;\nINSERT INTO \"v\"",
                "COMMIT;\n",
            ],
        );
    }

    #[test]
    fn mysql_per_statement_progress() {
        let m = migration(
            MySql,
            "x/0003_add.sql",
            "ALTER TABLE users ADD COLUMN email varchar(255), ALGORITHM=INSTANT;\nDELIMITER //\nCREATE TRIGGER t BEFORE INSERT ON users FOR EACH ROW BEGIN SET NEW.email = ''; END//\nDELIMITER ;\n",
            None,
        );
        let script = plan_script(
            MySql,
            Phase::Expand,
            &[&m],
            "gantry_schema_expand",
            "dba\\x",
        );
        check_in_order(
            &script,
            &[
                "for mysql.",
                "NO RETRIES and NO THROTTLING",
                "SET SESSION lock_wait_timeout = 1;\n",
                "SET SESSION innodb_lock_wait_timeout = 1;\n",
                "CREATE TABLE IF NOT EXISTS `gantry_schema_expand` (",
                "CREATE TABLE IF NOT EXISTS `gantry_schema_expand_statements` (",
                "SET @gantry_started = NOW(6);\n",
                "VALUES (3, 0, '",
                "'started') ON DUPLICATE KEY UPDATE",
                "ALTER TABLE users ADD COLUMN email varchar(255), ALGORITHM=INSTANT;\n",
                "SET state = 'done', finished_at = NOW(6) WHERE version = 3 AND statement_index = 0;\n",
                "VALUES (3, 1, '",
                "DELIMITER //\nCREATE TRIGGER t BEFORE INSERT ON users FOR EACH ROW BEGIN SET NEW.email = ''; END//\nDELIMITER ;\n",
                "WHERE version = 3 AND statement_index = 1;\n",
                "INSERT INTO `gantry_schema_expand` (version, description, checksum, applied_by, duration_ms, statements)",
                "CONVERT(X'6462615c78' USING utf8mb4)",
                "TIMESTAMPDIFF(MICROSECOND, @gantry_started, NOW(6)) DIV 1000, 2);\n",
            ],
        );
        assert!(!script.contains("BEGIN;"), "{script}");
        assert!(!script.contains("\\set"), "{script}");
    }

    #[test]
    fn sqlite_transaction_and_vacuum() {
        let a = migration(
            Sqlite,
            "x/0001_a.sql",
            "CREATE TABLE t (id INTEGER PRIMARY KEY);",
            None,
        );
        let b = migration(Sqlite, "x/0002_b.sql", "VACUUM;", None);
        let script = plan_script(
            Sqlite,
            Phase::Contract,
            &[&a, &b],
            "gantry_schema_contract",
            "ci",
        );
        check_in_order(
            &script,
            &[
                "contract phase, 2 pending migrations, for sqlite3",
                ".bail on\n",
                ".timeout 500\n",
                "CREATE TABLE IF NOT EXISTS \"gantry_schema_contract\" (",
                "BEGIN;\nCREATE TABLE t (id INTEGER PRIMARY KEY);\nINSERT INTO \"gantry_schema_contract\"",
                "COMMIT;\n",
                "-- Statement 1 of 1 runs alone, outside a transaction.\n",
                "VACUUM;\n",
                "BEGIN;\nINSERT INTO \"gantry_schema_contract\"",
                "COMMIT;\n",
            ],
        );
    }

    #[test]
    fn nothing_pending() {
        let script = plan_script(Postgres, Phase::Expand, &[], "gantry_schema_expand", "ci");
        check_in_order(
            &script,
            &[
                "0 pending migrations",
                "\\set ON_ERROR_STOP on",
                "CREATE TABLE IF NOT EXISTS",
                "Nothing to apply",
            ],
        );
    }

    #[test]
    fn quoting() {
        assert_eq!(quote_ident(Postgres, "a\"b"), "\"a\"\"b\"");
        assert_eq!(quote_ident(MySql, "s.t`x"), "`s`.`t``x`");
        assert_eq!(quote_literal(Postgres, "it's \\"), "'it''s \\'");
        assert_eq!(quote_literal(MySql, "it's"), "'it''s'");
        assert_eq!(mysql_delimiter("a // b $$"), ";;");
        assert_eq!(comment_text("a\nb"), "a b");
    }
}
