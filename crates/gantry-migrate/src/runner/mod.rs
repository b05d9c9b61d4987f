//! The runner: applies one phase's pending migrations to a real database, one statement at
//! a time, as one runner per database, recording each in the phase's version table.
//!
//! - One runner per database: a session-level advisory lock on a dedicated connection
//!   (PostgreSQL `pg_try_advisory_lock`; MariaDB/MySQL `GET_LOCK(name, 0)`; SQLite takes its
//!   write lock per migration with `BEGIN IMMEDIATE`), tried once, never waited on; who
//!   holds it and since when is read from a holder row the runner writes.
//! - A statement waits at most `lock_timeout` for its locks; when it times out, it (on
//!   PostgreSQL, its whole transaction) is retried with jittered backoff up to
//!   `lock_retries` times, so a migration never queues behind a long query while blocking
//!   everyone behind itself. `CONCURRENTLY` runs alone, without a lock timeout; a failed one
//!   drops the INVALID index it left.
//! - PostgreSQL and SQLite run a migration in one transaction (statements that cannot run
//!   in one run alone); MariaDB commits DDL implicitly, so each statement is marked started,
//!   then done, and a statement found started after a crash is neither skipped nor rerun
//!   without being told (`--assume-done`, `--rerun`).
//!
//! The database URL is never printed: errors carry [`redact`]ed text only.

mod rebuild;
mod sql;
mod state;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rand::Rng;

use crate::classify::{check_phase, classify, needs_own_transaction, Severity};
use crate::layout::{Database, Migration, Phase};
use crate::split::Dialect;

pub use rebuild::{RebuildOptions, RebuildReport};
pub use sql::Connection;
pub use state::{AppliedRow, MigrationState, PhaseStatus, Progress, Status};

/// How a runner behaves.
#[derive(Debug, Clone)]
pub struct Options {
    /// Longest wait for a lock by one statement before it is retried.
    pub lock_timeout: Duration,
    /// Retries of a statement (or PostgreSQL transaction) that timed out on a lock.
    pub lock_retries: u32,
    pub expand_table: String,
    pub contract_table: String,
    /// Who applies (a person or token name), stored with each version.
    pub applied_by: String,
    /// Apply versions below the highest applied one.
    pub out_of_order: bool,
    /// Apply contract-only statements in an expand migration (and what else the
    /// classifier refuses); the reason is the caller's to record.
    pub force: bool,
    /// A statement found started but not done after a crash: count it done.
    pub assume_done: bool,
    /// A statement found started but not done after a crash: run it again.
    pub rerun: bool,
    /// Rows per backfill batch (one commit each).
    pub backfill_batch: u32,
    /// Probes checked before each statement and batch: a value over its maximum, an
    /// error, or an answer slower than 2 s holds the runner until it passes.
    pub throttle: Vec<Probe>,
    /// Pauses or stops the runner from outside, between statements and batches.
    pub control: Control,
}

/// Pauses or stops a runner from another task: it looks before each statement and batch
/// (where it also checks the throttle probes), so a statement already sent finishes first.
#[derive(Debug, Clone, Default)]
pub struct Control(Arc<AtomicU8>);

const RUN: u8 = 0;
const PAUSE: u8 = 1;
const STOP: u8 = 2;

impl Control {
    pub fn run(&self) {
        self.0.store(RUN, Ordering::SeqCst);
    }
    pub fn pause(&self) {
        self.0.store(PAUSE, Ordering::SeqCst);
    }
    /// The runner stops at its next checkpoint with [`RunError::Stopped`].
    pub fn stop(&self) {
        self.0.store(STOP, Ordering::SeqCst);
    }
    pub fn is_paused(&self) -> bool {
        self.0.load(Ordering::SeqCst) == PAUSE
    }
    fn get(&self) -> u8 {
        self.0.load(Ordering::SeqCst)
    }
}

/// A throttle probe: a query answering one number, and the most it may answer.
#[derive(Debug, Clone, PartialEq)]
pub struct Probe {
    pub query: String,
    pub max: f64,
    /// Where to ask (a replica), when not the database being migrated; never shown.
    pub url: Option<String>,
}

impl std::str::FromStr for Probe {
    type Err = String;

    /// `SQL<=N`, e.g. `SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'<=5`.
    fn from_str(text: &str) -> Result<Probe, String> {
        let (query, max) = text
            .rsplit_once("<=")
            .ok_or_else(|| format!("throttle '{text}' is not SQL<=N"))?;
        let max: f64 = max
            .trim()
            .parse()
            .map_err(|_| format!("throttle '{text}': '{}' is not a number", max.trim()))?;
        if query.trim().is_empty() {
            return Err(format!("throttle '{text}' has no query"));
        }
        Ok(Probe {
            query: query.trim().to_string(),
            max,
            url: None,
        })
    }
}

/// How long a probe may take before it counts as failing.
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

impl Default for Options {
    fn default() -> Options {
        Options {
            lock_timeout: Duration::from_millis(500),
            lock_retries: 20,
            expand_table: Phase::Expand.default_version_table().to_string(),
            contract_table: Phase::Contract.default_version_table().to_string(),
            applied_by: "gantry".to_string(),
            out_of_order: false,
            force: false,
            assume_done: false,
            rerun: false,
            backfill_batch: 1000,
            throttle: Vec::new(),
            control: Control::default(),
        }
    }
}

impl Options {
    pub fn table(&self, phase: Phase) -> &str {
        match phase {
            Phase::Expand => &self.expand_table,
            Phase::Contract => &self.contract_table,
        }
    }
}

/// What went wrong; every message is safe to show (no URL, no password).
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("{0}")]
    Connect(String),
    #[error("another runner holds database '{database}' ({holder}); try again when it is done")]
    Locked { database: String, holder: String },
    #[error("{0}")]
    Refused(String),
    #[error("{path}:{line}:{column}: {message}")]
    Statement {
        path: String,
        line: usize,
        column: usize,
        message: String,
    },
    #[error("database error: {0}")]
    Database(String),
    #[error("stopped on request before {0}; what had finished is recorded, nothing else")]
    Stopped(String),
}

/// Removes anything like a password from a database error or URL before it is shown.
pub fn redact(text: &str, url: &str) -> String {
    let mut out = text.to_string();
    if let Some(password) = password_of(url) {
        if !password.is_empty() {
            out = out.replace(&password, "***");
        }
    }
    out
}

/// The password a URL carries, in its user info or as `?password=`.
fn password_of(url: &str) -> Option<String> {
    let parsed = url::Url::parse(url).ok()?;
    if let Some(p) = parsed.password() {
        return Some(percent_decode(p));
    }
    parsed
        .query_pairs()
        .find(|(k, _)| k == "password")
        .map(|(_, v)| v.into_owned())
}

fn percent_decode(s: &str) -> String {
    url::form_urlencoded::parse(format!("x={s}").as_bytes())
        .next()
        .map(|(_, v)| v.into_owned())
        .unwrap_or_else(|| s.to_string())
}

/// One event of a run, for a progress log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    Started {
        version: u32,
        description: String,
    },
    Statement {
        version: u32,
        index: usize,
        line: usize,
    },
    Retrying {
        version: u32,
        attempt: u32,
        wait_ms: u64,
        reason: String,
    },
    Applied {
        version: u32,
        duration_ms: u64,
    },
    /// A throttle probe holds the runner (said once per hold).
    Throttled {
        reason: String,
    },
    /// Held by [`Control::pause`], and let go.
    Paused,
    Resumed,
    /// A backfill batch committed.
    Backfill {
        version: u32,
        last_key: i64,
        rows: i64,
    },
}

/// One line of the progress log, as the CLI prints it and a job's log keeps it.
impl std::fmt::Display for Event {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Event::Started { version, description } => write!(f, "{version:04} {description}"),
            Event::Statement { version, index, line } => {
                write!(f, "{version:04} statement {} (line {line})", index + 1)
            }
            Event::Retrying { version, attempt, wait_ms, reason } => write!(
                f,
                "{version:04} waited too long for a lock ({reason}); retry {attempt} in {wait_ms} ms"
            ),
            Event::Applied { version, duration_ms } => {
                write!(f, "{version:04} applied in {duration_ms} ms")
            }
            Event::Throttled { reason } => write!(f, "holding: {reason}"),
            Event::Paused => f.write_str("paused on request"),
            Event::Resumed => f.write_str("resumed"),
            Event::Backfill { version, last_key, rows } => {
                write!(f, "{version:04} backfill: {rows} rows, up to key {last_key}")
            }
        }
    }
}

/// What one `apply` did.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Report {
    pub applied: Vec<u32>,
    pub statements: usize,
    pub duration_ms: u64,
}

/// A connected runner for one database.
pub struct Runner {
    conn: Connection,
    database: String,
    url: String,
    options: Options,
    holder: String,
    /// Connections of probes that ask elsewhere (a replica), by probe index.
    probe_conns: HashMap<usize, Connection>,
}

impl Runner {
    /// Connects to `url` for the migrations of `database` and takes the runner lock.
    pub async fn connect(url: &str, database: &str, options: Options) -> Result<Runner, RunError> {
        let mut conn = Connection::open(url).await?;
        let holder = format!(
            "{} on {} (pid {})",
            options.applied_by,
            hostname(),
            std::process::id()
        );
        conn.lock(database, &holder, url).await?;
        for phase in [Phase::Expand, Phase::Contract] {
            conn.ensure_version_table(options.table(phase))
                .await
                .map_err(|e| RunError::Database(redact(&e, url)))?;
        }
        Ok(Runner {
            conn,
            database: database.to_string(),
            url: url.to_string(),
            options,
            holder,
            probe_conns: HashMap::new(),
        })
    }

    pub fn dialect(&self) -> Dialect {
        self.conn.dialect()
    }

    fn db_err(&self, e: String) -> RunError {
        RunError::Database(redact(&e, &self.url))
    }

    /// Applied, pending and drifted migrations of both phases.
    pub async fn status(&mut self, db: &Database) -> Result<Status, RunError> {
        let mut phases = Vec::new();
        for phase in [Phase::Expand, Phase::Contract] {
            let table = self.options.table(phase).to_string();
            let rows = self
                .conn
                .applied(&table)
                .await
                .map_err(|e| self.db_err(e))?;
            let progress = self
                .conn
                .progress(&table)
                .await
                .map_err(|e| self.db_err(e))?;
            phases.push(state::phase_status(
                phase,
                db.phase(phase),
                &rows,
                &progress,
            ));
        }
        let invalid_indexes = self
            .conn
            .invalid_indexes()
            .await
            .map_err(|e| self.db_err(e))?;
        Ok(Status {
            database: db.name.clone(),
            expand: phases.remove(0),
            contract: phases.remove(0),
            invalid_indexes,
        })
    }

    /// When the newest expand migration was applied (`None`: none was): what the contract
    /// gate compares deployments with.
    pub async fn expanded_at(&mut self) -> Result<Option<chrono::DateTime<chrono::Utc>>, RunError> {
        let table = self.options.expand_table.clone();
        let text = self
            .conn
            .newest_applied_at(&table)
            .await
            .map_err(|e| self.db_err(e))?;
        text.map(|t| {
            chrono::DateTime::parse_from_rfc3339(&t)
                .map(|d| d.with_timezone(&chrono::Utc))
                .map_err(|e| RunError::Database(format!("applied_at '{t}' in {table}: {e}")))
        })
        .transpose()
    }

    /// Adopts an existing database: records versions up to `version` of `phase` as applied
    /// without running them.
    pub async fn baseline(
        &mut self,
        db: &Database,
        phase: Phase,
        version: u32,
    ) -> Result<Vec<u32>, RunError> {
        let table = self.options.table(phase).to_string();
        let rows = self
            .conn
            .applied(&table)
            .await
            .map_err(|e| self.db_err(e))?;
        if !rows.is_empty() {
            return Err(RunError::Refused(format!(
                "{} already has versions in {table}; baseline adopts a database with none",
                self.database
            )));
        }
        let mut recorded = Vec::new();
        for m in db.phase(phase).iter().filter(|m| m.version <= version) {
            let row = AppliedRow::done(m, &self.options.applied_by, 0, 0);
            self.conn
                .insert_row(&table, &row)
                .await
                .map_err(|e| self.db_err(e))?;
            recorded.push(m.version);
        }
        Ok(recorded)
    }

    /// Records the files' checksums over drifted versions, as a deliberate act; returns the
    /// versions repaired.
    pub async fn repair(&mut self, db: &Database, phase: Phase) -> Result<Vec<u32>, RunError> {
        let table = self.options.table(phase).to_string();
        let rows = self
            .conn
            .applied(&table)
            .await
            .map_err(|e| self.db_err(e))?;
        let mut repaired = Vec::new();
        for m in db.phase(phase) {
            if let Some(row) = rows.iter().find(|r| r.version == m.version) {
                if row.checksum != m.checksum {
                    self.conn
                        .set_checksum(&table, m.version, &m.checksum)
                        .await
                        .map_err(|e| self.db_err(e))?;
                    repaired.push(m.version);
                }
            }
        }
        Ok(repaired)
    }

    /// Applies the pending migrations of `phase` (up to `to`), in order.
    pub async fn apply(
        &mut self,
        db: &Database,
        phase: Phase,
        to: Option<u32>,
        progress: &mut (dyn FnMut(Event) + Send),
    ) -> Result<Report, RunError> {
        let status = self.status(db).await?;
        let this = status.phase(phase);
        state::check_can_apply(phase, &status, self.options.out_of_order)
            .map_err(RunError::Refused)?;
        let started = Instant::now();
        let mut report = Report::default();
        for m in db.phase(phase) {
            if to.is_some_and(|to| m.version > to) {
                break;
            }
            let state = this.state_of(m.version);
            let done = match state {
                Some(MigrationState::Applied) | Some(MigrationState::Baseline) => continue,
                Some(MigrationState::Partial { done, started }) => match started {
                    Some(started) if self.options.assume_done => {
                        self.conn
                            .mark_done(self.options.table(phase), m.version, started)
                            .await
                            .map_err(|e| self.db_err(e))?;
                        started + 1
                    }
                    Some(started) if self.options.rerun => started,
                    Some(started) => {
                        // DDL may have committed after its runner died: the catalog says
                        // whether it did, for the statements whose effect it shows.
                        let statement = m.statements.get(started);
                        let seen = match statement {
                            Some(s) => self
                                .conn
                                .effect_visible(&s.text)
                                .await
                                .map_err(|e| self.db_err(e))?,
                            None => None,
                        };
                        match seen {
                            Some(true) => {
                                self.conn
                                    .mark_done(self.options.table(phase), m.version, started)
                                    .await
                                    .map_err(|e| self.db_err(e))?;
                                started + 1
                            }
                            Some(false) => started,
                            None => {
                                return Err(RunError::Refused(format!(
                                    "{}: statement {} (line {}) was started and may or may not have committed before its runner died, and the catalog cannot tell; look at the database, then run again with --assume-done or --rerun",
                                    m.path,
                                    started + 1,
                                    statement.map_or(0, |s| s.line)
                                )))
                            }
                        }
                    }
                    None => done,
                },
                Some(MigrationState::Drifted { .. }) | Some(MigrationState::Pending) | None => 0,
            };
            if matches!(state, Some(MigrationState::Drifted { .. })) {
                continue;
            }
            self.check_statements(phase, m)?;
            progress(Event::Started {
                version: m.version,
                description: m.description.clone(),
            });
            let t = Instant::now();
            let count = self.apply_one(phase, m, done, progress).await?;
            let duration_ms = t.elapsed().as_millis() as u64;
            progress(Event::Applied {
                version: m.version,
                duration_ms,
            });
            report.applied.push(m.version);
            report.statements += count;
        }
        report.duration_ms = started.elapsed().as_millis() as u64;
        Ok(report)
    }

    /// Refuses what the classifier calls an error for this phase, unless forced.
    fn check_statements(&self, phase: Phase, m: &Migration) -> Result<(), RunError> {
        if self.options.force {
            return Ok(());
        }
        let findings = check_phase(phase, classify(self.dialect(), &m.statements));
        if let Some(f) = findings.iter().find(|f| f.severity == Severity::Error) {
            return Err(RunError::Statement {
                path: m.path.clone(),
                line: f.line,
                column: f.column,
                message: format!(
                    "{} ({}); nothing was run. Move it to the right phase, or apply with --force --reason \"…\"",
                    f.message, f.rule
                ),
            });
        }
        Ok(())
    }

    /// Runs one migration from statement `from`; returns how many statements it ran.
    async fn apply_one(
        &mut self,
        phase: Phase,
        m: &Migration,
        from: usize,
        progress: &mut (dyn FnMut(Event) + Send),
    ) -> Result<usize, RunError> {
        let table = self.options.table(phase).to_string();
        let t = Instant::now();
        let dialect = self.dialect();
        // A backfill commits batch by batch, so its migration is not one transaction.
        let in_transaction = dialect != Dialect::MySql
            && from == 0
            && m.backfill.is_none()
            && !m
                .statements
                .iter()
                .any(|s| needs_own_transaction(dialect, s));
        if in_transaction {
            self.checkpoint(progress).await?;
            let mut attempt = 0;
            loop {
                attempt += 1;
                match self
                    .conn
                    .run_transaction(m, &table, &self.options, t, progress)
                    .await
                {
                    Ok(()) => break,
                    Err(sql::Failure::LockTimeout(reason))
                        if attempt <= self.options.lock_retries =>
                    {
                        self.wait_retry(m.version, attempt, reason, progress).await;
                    }
                    Err(e) => return Err(self.statement_error(m, e)),
                }
            }
            return Ok(m.statements.len());
        }
        // One statement at a time, progress recorded around each.
        for (i, statement) in m.statements.iter().enumerate().skip(from) {
            progress(Event::Statement {
                version: m.version,
                index: i,
                line: statement.line,
            });
            self.checkpoint(progress).await?;
            self.conn
                .mark_started(&table, m.version, i, &statement.checksum)
                .await
                .map_err(|e| self.db_err(e))?;
            let own = needs_own_transaction(dialect, statement);
            let mut attempt = 0;
            loop {
                attempt += 1;
                match self.conn.run_alone(statement, own, &self.options).await {
                    Ok(()) => break,
                    Err(sql::Failure::LockTimeout(reason))
                        if attempt <= self.options.lock_retries =>
                    {
                        self.wait_retry(m.version, attempt, reason, progress).await;
                    }
                    Err(e) => {
                        // The database answered with an error: the statement did not
                        // commit, so it is not "started" any more; a retry runs it again.
                        let _ = self.conn.clear_started(&table, m.version, i).await;
                        let e = match e {
                            sql::Failure::Statement { message, .. } => {
                                sql::Failure::Statement { index: i, message }
                            }
                            other => other,
                        };
                        return Err(self.statement_error(m, e));
                    }
                }
            }
            self.conn
                .mark_done(&table, m.version, i)
                .await
                .map_err(|e| self.db_err(e))?;
        }
        if m.backfill.is_some() {
            self.backfill(&table, m, progress).await?;
        }
        let row = AppliedRow::done(
            m,
            &self.options.applied_by,
            t.elapsed().as_millis() as i64,
            m.statements.len(),
        );
        self.conn
            .insert_row(&table, &row)
            .await
            .map_err(|e| self.db_err(e))?;
        Ok(m.statements.len() - from)
    }

    /// Walks the backfill's table by primary key in batches, one commit each, storing the
    /// last key after each, then once more over the rows that still match (rows the running
    /// release wrote behind the walk).
    async fn backfill(
        &mut self,
        table: &str,
        m: &Migration,
        progress: &mut (dyn FnMut(Event) + Send),
    ) -> Result<(), RunError> {
        let Some(b) = &m.backfill else {
            return Ok(());
        };
        let pk = self
            .conn
            .integer_primary_key(&b.table)
            .await
            .map_err(|e| RunError::Refused(format!("{}: {e}", b.path)))?;
        let (mut last, mut rows) = self
            .conn
            .backfill_state(table, m.version)
            .await
            .map_err(|e| self.db_err(e))?
            .unwrap_or((i64::MIN, 0));
        let update = format!(
            "UPDATE {} SET {} WHERE ({})",
            b.table, b.set_clause_text, b.predicate_text
        );
        for pass in 0..2 {
            if pass == 1 {
                last = i64::MIN;
            }
            loop {
                self.checkpoint(progress).await?;
                let upper = self
                    .conn
                    .next_upper(&b.table, &pk, last, self.options.backfill_batch)
                    .await
                    .map_err(|e| self.db_err(e))?;
                let Some(upper) = upper else {
                    break;
                };
                let mut attempt = 0;
                let changed = loop {
                    attempt += 1;
                    match self.conn.update_range(&update, &pk, last, upper).await {
                        Ok(n) => break n,
                        Err(sql::Failure::LockTimeout(reason))
                            if attempt <= self.options.lock_retries =>
                        {
                            self.wait_retry(m.version, attempt, reason, progress).await;
                        }
                        Err(sql::Failure::Statement { message, .. }) => {
                            return Err(RunError::Statement {
                                path: b.path.clone(),
                                line: b.line,
                                column: b.column,
                                message: redact(&message, &self.url),
                            })
                        }
                        Err(e) => return Err(self.statement_error(m, e)),
                    }
                };
                rows += changed as i64;
                last = upper;
                if pass == 0 {
                    self.conn
                        .save_backfill(table, m.version, last, rows)
                        .await
                        .map_err(|e| self.db_err(e))?;
                }
                progress(Event::Backfill {
                    version: m.version,
                    last_key: last,
                    rows,
                });
            }
        }
        Ok(())
    }

    /// Before a statement or batch: stops when told to, waits while paused, and waits
    /// while a throttle probe is over its maximum, failing or slow; says why once per hold.
    async fn checkpoint(
        &mut self,
        progress: &mut (dyn FnMut(Event) + Send),
    ) -> Result<(), RunError> {
        let mut said = false;
        let mut paused = false;
        loop {
            match self.options.control.get() {
                STOP => return Err(RunError::Stopped("the next statement or batch".to_string())),
                PAUSE => {
                    if !paused {
                        progress(Event::Paused);
                        paused = true;
                    }
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    continue;
                }
                _ => {}
            }
            if paused {
                progress(Event::Resumed);
                paused = false;
            }
            let Some(reason) = self.probe_holds().await else {
                return Ok(());
            };
            if !said {
                progress(Event::Throttled { reason });
                said = true;
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }

    /// Why the first probe that holds the runner does, if one does.
    async fn probe_holds(&mut self) -> Option<String> {
        for i in 0..self.options.throttle.len() {
            let probe = self.options.throttle[i].clone();
            let redact_with = probe.url.clone().unwrap_or_else(|| self.url.clone());
            let answer = match &probe.url {
                None => tokio::time::timeout(PROBE_TIMEOUT, self.conn.probe(&probe.query)).await,
                Some(url) => {
                    if let std::collections::hash_map::Entry::Vacant(slot) =
                        self.probe_conns.entry(i)
                    {
                        match tokio::time::timeout(PROBE_TIMEOUT, Connection::open(url)).await {
                            Ok(Ok(conn)) => {
                                slot.insert(conn);
                            }
                            Ok(Err(e)) => {
                                return Some(format!(
                                    "probe '{}' cannot connect: {}",
                                    probe.query,
                                    redact(&e.to_string(), url)
                                ))
                            }
                            Err(_) => {
                                return Some(format!(
                                    "probe '{}' took longer than 2 s to connect",
                                    probe.query
                                ))
                            }
                        }
                    }
                    let conn = self.probe_conns.get_mut(&i)?;
                    let answer =
                        tokio::time::timeout(PROBE_TIMEOUT, conn.probe(&probe.query)).await;
                    if !matches!(answer, Ok(Ok(_))) {
                        // Connect again next time: the connection may be what failed.
                        self.probe_conns.remove(&i);
                    }
                    answer
                }
            };
            let holding = match answer {
                Err(_) => Some(format!("probe '{}' took longer than 2 s", probe.query)),
                Ok(Err(e)) => Some(format!(
                    "probe '{}' failed: {}",
                    probe.query,
                    redact(&e, &redact_with)
                )),
                Ok(Ok(v)) if v > probe.max => Some(format!(
                    "probe '{}' answered {v}, over {}",
                    probe.query, probe.max
                )),
                Ok(Ok(_)) => None,
            };
            if holding.is_some() {
                return holding;
            }
        }
        None
    }

    async fn wait_retry(
        &self,
        version: u32,
        attempt: u32,
        reason: String,
        progress: &mut (dyn FnMut(Event) + Send),
    ) {
        // Jittered exponential backoff from 100 ms, capped at 10 s.
        let base = 100u64.saturating_mul(1 << attempt.min(7)).min(10_000);
        let wait_ms = rand::thread_rng().gen_range(base / 2..=base);
        progress(Event::Retrying {
            version,
            attempt,
            wait_ms,
            reason: redact(&reason, &self.url),
        });
        tokio::time::sleep(Duration::from_millis(wait_ms)).await;
    }

    fn statement_error(&self, m: &Migration, failure: sql::Failure) -> RunError {
        match failure {
            sql::Failure::Statement { index, message } => {
                let s = &m.statements[index.min(m.statements.len().saturating_sub(1))];
                RunError::Statement {
                    path: m.path.clone(),
                    line: s.line,
                    column: s.column,
                    message: format!(
                        "{}; the migration was not recorded as applied",
                        redact(&message, &self.url)
                    ),
                }
            }
            sql::Failure::LockTimeout(reason) => RunError::Refused(format!(
                "{}: gave up after {} retries waiting for locks ({}); run it when the table is quieter, or raise --lock-retries",
                m.path,
                self.options.lock_retries,
                redact(&reason, &self.url)
            )),
            sql::Failure::Database(e) => self.db_err(e),
        }
    }

    /// Releases the runner lock and closes the connection.
    pub async fn close(mut self) {
        self.conn.unlock(&self.database, &self.holder).await;
        self.conn.close().await;
        for (_, conn) in self.probe_conns.drain() {
            conn.close().await;
        }
    }
}

fn hostname() -> String {
    std::env::var("HOSTNAME")
        .ok()
        .or_else(|| std::fs::read_to_string("/etc/hostname").ok())
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".to_string())
}
