//! `sql-load`: fixed-rate SQL traffic against one table while a migration runs, for
//! `scripts/bench/migrate` (the proof of zero downtime). PostgreSQL (`postgres://`) or
//! MariaDB/MySQL (`mysql://`); the table has `id BIGINT PRIMARY KEY, name, email` with ids
//! `1..=--rows`, and may gain nullable columns during the run (no query reads `*`).
//!
//! Mix: 70 % reads by primary key, 20 % updates of `name` by primary key (ids uniform over
//! `1..=--rows`), 10 % inserts of new ids counting up from `rows + 1 + r × 10^6`, `r` random
//! per run (not from `--seed`), so two runs on one table never collide.
//!
//! Open loop: query k is due at `start + k / --rate`, queued by a dedicated thread at that
//! instant whether or not earlier queries came back, and taken by one of `--connections`
//! workers, each with its own connection and one query in flight. Latency is measured from
//! the due time, not the send time, so a stalled database shows as latency (no coordinated
//! omission). A query that errors, or is not answered within `--timeout-ms` of its due time,
//! is failed and counts as `--timeout-ms` in the percentiles; one whose deadline passed
//! while it waited for a free connection is failed without being sent; a timed-out
//! connection is dropped (its statement may still run on the server) and the worker
//! reconnects on its next query.
//!
//! Windows: with `--mark-file`, polled every 50 ms, each change of its content starts a
//! window named by the content (`baseline`, `migration`, `after`); a query belongs to the
//! window it was due in. Without it, there is one window, `all`.
//!
//! Output: every `--report-every-ms`, a progress line on stderr, and the first few distinct
//! errors as they happen. At the end (after `--seconds`, or SIGTERM/ctrl-c when it is 0; the
//! queries already due are finished first, which `--timeout-ms` bounds), stdout gets one
//! line per window, `window=NAME queries=N failed=N p50_ms=X p99_ms=X max_ms=X`, then
//! `total queries=N failed=N`.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use clap::Args;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use sqlx::{Connection, MySqlConnection, PgConnection};
use tokio::sync::mpsc::{UnboundedReceiver, UnboundedSender};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::stats::Latencies;

#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("database").required(true).args(["url", "url_file"])))]
pub struct SqlLoadArgs {
    /// The database, `postgres://…` or `mysql://…`. Prefer --url-file: this shows in `ps`.
    #[arg(long)]
    url: Option<String>,
    /// A file holding the database URL (surrounding whitespace ignored).
    #[arg(long)]
    url_file: Option<PathBuf>,
    /// The table: `id BIGINT PRIMARY KEY, name, email` (text columns).
    #[arg(long, default_value = "users")]
    table: String,
    /// Queries per second, over all connections.
    #[arg(long, default_value_t = 400)]
    rate: u64,
    /// Connections, each with one query in flight.
    #[arg(long, default_value_t = 16)]
    connections: usize,
    /// How long to send; 0 sends until SIGTERM or ctrl-c.
    #[arg(long)]
    seconds: f64,
    /// Ids `1..=N` exist; reads and updates pick among them uniformly.
    #[arg(long)]
    rows: u64,
    /// A query not answered this long after it was due fails (and counts as this long).
    #[arg(long, default_value_t = 1_000)]
    timeout_ms: u64,
    /// How often to print a progress line on stderr.
    #[arg(long, default_value_t = 1_000)]
    report_every_ms: u64,
    /// A file whose content names the current window; each change starts a new one.
    #[arg(long)]
    mark_file: Option<PathBuf>,
    #[arg(long, default_value_t = 42)]
    seed: u64,
}

/// Distinct error messages printed; later ones are only counted.
const MAX_ERRORS_SHOWN: usize = 10;
/// How often the mark file is read.
const MARK_POLL: Duration = Duration::from_millis(50);
/// The limit on opening the first connections.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Dialect {
    Postgres,
    MySql,
}

impl Dialect {
    fn of(url: &str) -> anyhow::Result<Dialect> {
        let scheme = url.split_once("://").map(|(s, _)| s.to_ascii_lowercase());
        match scheme.as_deref() {
            Some("postgres" | "postgresql") => Ok(Dialect::Postgres),
            Some("mysql" | "mariadb") => Ok(Dialect::MySql),
            _ => bail!("the database URL must start with postgres:// or mysql://"),
        }
    }
}

/// The three statements, with the dialect's placeholders.
#[derive(Debug)]
struct Statements {
    read: String,
    update: String,
    insert: String,
}

impl Statements {
    fn new(dialect: Dialect, table: &str) -> Statements {
        let p = |n: usize| match dialect {
            Dialect::Postgres => format!("${n}"),
            Dialect::MySql => "?".to_string(),
        };
        Statements {
            read: format!("SELECT id, name, email FROM {table} WHERE id = {}", p(1)),
            update: format!("UPDATE {table} SET name = {} WHERE id = {}", p(1), p(2)),
            insert: format!(
                "INSERT INTO {table} (id, name, email) VALUES ({}, {}, {})",
                p(1),
                p(2),
                p(3)
            ),
        }
    }
}

/// `name` or `schema.name`, plain identifiers only: the name goes into the SQL as it is.
fn valid_table(table: &str) -> bool {
    let ident = |s: &str| {
        s.chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
            && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
    };
    match table.split_once('.') {
        Some((schema, name)) => ident(schema) && ident(name),
        None => ident(table),
    }
}

/// The URL without its password or query string, for messages.
fn shown_url(url: &str) -> String {
    gantry_store::redact_url(url.split('?').next().unwrap_or(url))
}

#[derive(Debug, Clone, Copy)]
enum Op {
    Read(i64),
    Update(i64),
    Insert(i64),
}

impl Op {
    fn kind(self) -> &'static str {
        match self {
            Op::Read(_) => "read",
            Op::Update(_) => "update",
            Op::Insert(_) => "insert",
        }
    }
}

#[derive(Debug)]
struct Job {
    seq: u64,
    due: Instant,
    op: Op,
}

enum Conn {
    Postgres(PgConnection),
    MySql(MySqlConnection),
}

/// Runs `$job` on `$conn` (a `&mut PgConnection` or `&mut MySqlConnection`).
macro_rules! execute {
    ($conn:expr, $sql:expr, $job:expr) => {
        match $job.op {
            Op::Read(id) => sqlx::query(&$sql.read)
                .bind(id)
                .fetch_optional($conn)
                .await
                .map(|_| ()),
            Op::Update(id) => sqlx::query(&$sql.update)
                .bind(format!("updated-{}", $job.seq))
                .bind(id)
                .execute($conn)
                .await
                .map(|_| ()),
            Op::Insert(id) => sqlx::query(&$sql.insert)
                .bind(id)
                .bind(format!("load-{id}"))
                .bind(format!("load-{id}@example.com"))
                .execute($conn)
                .await
                .map(|_| ()),
        }
    };
}

impl Conn {
    async fn open(dialect: Dialect, url: &str) -> Result<Conn, sqlx::Error> {
        Ok(match dialect {
            Dialect::Postgres => Conn::Postgres(PgConnection::connect(url).await?),
            Dialect::MySql => Conn::MySql(MySqlConnection::connect(url).await?),
        })
    }

    async fn execute(&mut self, sql: &Statements, job: &Job) -> Result<(), sqlx::Error> {
        match self {
            Conn::Postgres(c) => execute!(c, sql, job),
            Conn::MySql(c) => execute!(c, sql, job),
        }
    }
}

/// One query's result, by the window it was due in.
#[derive(Debug, Clone, Copy)]
struct Sample {
    /// Due time, since the start.
    due: Duration,
    latency: Duration,
    failed: bool,
}

/// What happened since the last progress line.
#[derive(Debug, Default)]
struct Interval {
    sent: u64,
    done: u64,
    failed: u64,
    latencies: Vec<Duration>,
}

#[derive(Debug, Default)]
struct Tally {
    samples: Vec<Sample>,
    interval: Interval,
    errors: HashSet<String>,
    /// Failures whose message was not among the first distinct ones.
    unshown_errors: u64,
}

/// A window: from when the mark file said `name` (since the start).
#[derive(Debug, Clone)]
struct Window {
    from: Duration,
    name: String,
}

struct Shared {
    dialect: Dialect,
    url: String,
    sql: Statements,
    timeout: Duration,
    start: Instant,
    /// Queries queued by the scheduler so far.
    queued: AtomicU64,
    tally: Mutex<Tally>,
    windows: Mutex<Vec<Window>>,
}

impl Shared {
    fn tally(&self) -> std::sync::MutexGuard<'_, Tally> {
        self.tally.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn record(&self, job: &Job, outcome: Result<(), String>) {
        let latency = match outcome {
            Ok(()) => job.due.elapsed().min(self.timeout),
            Err(_) => self.timeout,
        };
        let mut tally = self.tally();
        tally.samples.push(Sample {
            due: job.due.saturating_duration_since(self.start),
            latency,
            failed: outcome.is_err(),
        });
        tally.interval.done += 1;
        tally.interval.latencies.push(latency);
        if let Err(message) = outcome {
            tally.interval.failed += 1;
            if tally.errors.contains(&message) {
                return;
            }
            if tally.errors.len() < MAX_ERRORS_SHOWN {
                eprintln!("sql-load: error: {message}");
                tally.errors.insert(message);
            } else {
                tally.unshown_errors += 1;
            }
        }
    }
}

/// Opens a connection for a worker that lost its own, within `--timeout-ms`; the error is
/// the message the queries it cannot send fail with.
async fn reconnect(shared: &Shared) -> Result<Conn, String> {
    match tokio::time::timeout(shared.timeout, Conn::open(shared.dialect, &shared.url)).await {
        Ok(Ok(conn)) => Ok(conn),
        Ok(Err(e)) => Err(format!("cannot reconnect: {e}")),
        Err(_) => Err(format!(
            "cannot reconnect within --timeout-ms ({} ms)",
            shared.timeout.as_millis()
        )),
    }
}

/// Why a job failed, and whether its connection must be dropped.
struct Failed {
    message: String,
    drop_connection: bool,
}

/// Runs one job on `conn` by the job's deadline (due time plus `--timeout-ms`).
async fn run_job(shared: &Shared, conn: &mut Conn, job: &Job) -> Result<(), Failed> {
    let kind = job.op.kind();
    let timeout_ms = shared.timeout.as_millis();
    let deadline = job.due + shared.timeout;
    if Instant::now() >= deadline {
        return Err(Failed {
            message: format!(
                "{kind}: not sent, no free connection within --timeout-ms ({timeout_ms} ms) of \
                 its due time"
            ),
            drop_connection: false,
        });
    }
    shared.tally().interval.sent += 1;
    let deadline = tokio::time::Instant::from_std(deadline);
    match tokio::time::timeout_at(deadline, conn.execute(&shared.sql, job)).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(Failed {
            message: format!("{kind}: {e}"),
            // A statement the database refused leaves the connection usable; anything
            // else (I/O, protocol) may not.
            drop_connection: !matches!(e, sqlx::Error::Database(_)),
        }),
        // The statement may still run on the server; the connection is in an unknown state.
        Err(_) => Err(Failed {
            message: format!(
                "{kind}: no answer within --timeout-ms ({timeout_ms} ms) of its due time; \
                 connection dropped"
            ),
            drop_connection: true,
        }),
    }
}

/// Takes jobs off the queue one at a time until it is closed and empty. A worker whose
/// connection was dropped reconnects before taking the next job, so the reconnection is
/// not charged to one job's deadline (it shows as queueing, like a pool refilling); while
/// it cannot reconnect, the jobs it takes fail with the reason.
async fn worker(
    shared: Arc<Shared>,
    queue: Arc<tokio::sync::Mutex<UnboundedReceiver<Job>>>,
    conn: Conn,
) {
    let mut conn = Some(conn);
    let mut connect_error = String::new();
    loop {
        if conn.is_none() {
            match reconnect(&shared).await {
                Ok(c) => conn = Some(c),
                Err(e) => connect_error = e,
            }
        }
        let job = queue.lock().await.recv().await;
        let Some(job) = job else { break };
        let outcome = match conn.as_mut() {
            Some(c) => run_job(&shared, c, &job).await.map_err(|failed| {
                if failed.drop_connection {
                    conn = None;
                }
                failed.message
            }),
            None => Err(format!("{}: {connect_error}", job.op.kind())),
        };
        shared.record(&job, outcome);
    }
}

/// Queues query k at `start + k / rate` until `end` or `stop`, on its own thread so the
/// due times are kept to the OS timer's precision rather than the runtime's millisecond.
#[allow(clippy::too_many_arguments)]
fn schedule(
    queue: UnboundedSender<Job>,
    queued: &AtomicU64,
    start: Instant,
    end: Option<Instant>,
    rate: u64,
    rows: i64,
    first_insert: i64,
    seed: u64,
    stop: &CancellationToken,
) {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut next_insert = first_insert;
    for seq in 0u64.. {
        let offset =
            u64::try_from(u128::from(seq) * 1_000_000_000 / u128::from(rate)).unwrap_or(u64::MAX);
        let due = start + Duration::from_nanos(offset);
        if end.is_some_and(|end| due >= end) {
            return;
        }
        loop {
            if stop.is_cancelled() {
                return;
            }
            let now = Instant::now();
            if now >= due {
                break;
            }
            std::thread::sleep((due - now).min(Duration::from_millis(50)));
        }
        let op = match rng.gen_range(0..10) {
            0..=6 => Op::Read(rng.gen_range(1..=rows)),
            7 | 8 => Op::Update(rng.gen_range(1..=rows)),
            _ => {
                next_insert += 1;
                Op::Insert(next_insert - 1)
            }
        };
        if queue.send(Job { seq, due, op }).is_err() {
            return;
        }
        queued.fetch_add(1, Ordering::Relaxed);
    }
}

/// The window name a mark file's content gives: trimmed, whitespace as `_`.
fn window_name(content: &str) -> String {
    let name: Vec<&str> = content.split_whitespace().collect();
    if name.is_empty() {
        "unmarked".to_string()
    } else {
        name.join("_")
    }
}

async fn read_mark(path: &Path) -> String {
    window_name(&tokio::fs::read_to_string(path).await.unwrap_or_default())
}

async fn watch_marks(
    shared: Arc<Shared>,
    path: PathBuf,
    mut current: String,
    done: CancellationToken,
) {
    let mut tick = tokio::time::interval(MARK_POLL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = done.cancelled() => return,
            _ = tick.tick() => {}
        }
        let name = read_mark(&path).await;
        if name != current {
            let from = shared.start.elapsed();
            eprintln!("sql-load: window {name} from t={:.2}s", from.as_secs_f64());
            shared
                .windows
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .push(Window {
                    from,
                    name: name.clone(),
                });
            current = name;
        }
    }
}

async fn report(shared: Arc<Shared>, every: Duration, done: CancellationToken) {
    let mut tick =
        tokio::time::interval_at(tokio::time::Instant::from_std(shared.start) + every, every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut finished = 0u64;
    loop {
        tokio::select! {
            _ = done.cancelled() => return,
            _ = tick.tick() => {}
        }
        let interval = std::mem::take(&mut shared.tally().interval);
        finished += interval.done;
        let pending = shared
            .queued
            .load(Ordering::Relaxed)
            .saturating_sub(finished);
        let p99 = Latencies::new(interval.latencies).percentile_ms(99.0);
        eprintln!(
            "sql-load: t={:.1}s sent={} done={} failed={} p99_ms={p99:.2} pending={pending}",
            shared.start.elapsed().as_secs_f64(),
            interval.sent,
            interval.done,
            interval.failed,
        );
    }
}

/// Cancels `stop` on SIGTERM or ctrl-c.
fn cancel_on_signals(stop: &CancellationToken) -> anyhow::Result<()> {
    let on_ctrl_c = stop.clone();
    tokio::spawn(async move {
        let _ = tokio::signal::ctrl_c().await;
        on_ctrl_c.cancel();
    });
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .context("cannot listen for SIGTERM")?;
    let on_term = stop.clone();
    tokio::spawn(async move {
        term.recv().await;
        on_term.cancel();
    });
    Ok(())
}

/// The stdout line of one window.
fn window_line(name: &str, samples: &[Sample]) -> String {
    let failed = samples.iter().filter(|s| s.failed).count();
    let latencies = Latencies::new(samples.iter().map(|s| s.latency).collect());
    format!(
        "window={name} queries={} failed={failed} p50_ms={:.2} p99_ms={:.2} max_ms={:.2}",
        samples.len(),
        latencies.percentile_ms(50.0),
        latencies.percentile_ms(99.0),
        latencies.max().as_secs_f64() * 1000.0
    )
}

pub async fn run(args: SqlLoadArgs) -> anyhow::Result<()> {
    if args.rate == 0 || args.connections == 0 || args.rows == 0 {
        bail!("--rate, --connections and --rows must be positive");
    }
    if args.timeout_ms == 0 || args.report_every_ms == 0 {
        bail!("--timeout-ms and --report-every-ms must be positive");
    }
    if !args.seconds.is_finite() || args.seconds < 0.0 {
        bail!("--seconds must be 0 (until SIGTERM) or positive");
    }
    if !valid_table(&args.table) {
        bail!("--table must be a plain name or schema.name (letters, digits, _)");
    }
    let url = match (&args.url, &args.url_file) {
        (Some(url), _) => url.trim().to_string(),
        (None, Some(path)) => std::fs::read_to_string(path)
            .with_context(|| format!("cannot read --url-file {}", path.display()))?
            .trim()
            .to_string(),
        (None, None) => bail!("give --url or --url-file"),
    };
    let dialect = Dialect::of(&url)?;
    let rows = i64::try_from(args.rows).context("--rows is too large")?;
    // Not from --seed: two runs with the same seed must not insert the same ids.
    // Below 2^31 with room to spare, so a 32-bit `id` (the INT of an INT→BIGINT rebuild)
    // takes them too; a thousand offsets a million apart keep two runs' inserts apart.
    let first_insert = rand::thread_rng()
        .gen_range(0..1_000i64)
        .checked_mul(1_000_000)
        .and_then(|offset| offset.checked_add(rows + 1))
        .context("--rows is too large")?;
    let sql = Statements::new(dialect, &args.table);

    let shown = shown_url(&url);
    let opened = futures::future::join_all((0..args.connections).map(|_| async {
        match tokio::time::timeout(CONNECT_TIMEOUT, Conn::open(dialect, &url)).await {
            Ok(result) => result.map_err(|e| anyhow::anyhow!("{e}")),
            Err(_) => Err(anyhow::anyhow!("no answer in {CONNECT_TIMEOUT:?}")),
        }
    }))
    .await;
    let mut conns = Vec::with_capacity(opened.len());
    for conn in opened {
        conns.push(conn.with_context(|| format!("cannot connect to {shown}"))?);
    }
    // One read first, so a missing table or column is one clear error, not thousands.
    let probe = Job {
        seq: 0,
        due: Instant::now(),
        op: Op::Read(1),
    };
    conns[0]
        .execute(&sql, &probe)
        .await
        .map_err(|e| anyhow::anyhow!("cannot read {} in {shown}: {e}", args.table))?;

    let stop = CancellationToken::new();
    cancel_on_signals(&stop)?;
    let first_window = match &args.mark_file {
        Some(path) => read_mark(path).await,
        None => "all".to_string(),
    };
    let start = Instant::now() + Duration::from_millis(20);
    let end = (args.seconds > 0.0).then(|| start + Duration::from_secs_f64(args.seconds));
    let timeout = Duration::from_millis(args.timeout_ms);
    let shared = Arc::new(Shared {
        dialect,
        url,
        sql,
        timeout,
        start,
        queued: AtomicU64::new(0),
        tally: Mutex::new(Tally::default()),
        windows: Mutex::new(vec![Window {
            from: Duration::ZERO,
            name: first_window.clone(),
        }]),
    });
    eprintln!(
        "sql-load: {} queries/s over {} connections to {} in {shown} {}; ids 1..={} \
         exist, inserts from {first_insert}",
        args.rate,
        args.connections,
        args.table,
        if args.seconds > 0.0 {
            format!("for {} s", args.seconds)
        } else {
            "until SIGTERM".to_string()
        },
        args.rows,
    );

    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    let queue = Arc::new(tokio::sync::Mutex::new(rx));
    let mut workers = JoinSet::new();
    for conn in conns {
        workers.spawn(worker(shared.clone(), queue.clone(), conn));
    }
    let aux_done = CancellationToken::new();
    let mut aux = JoinSet::new();
    aux.spawn(report(
        shared.clone(),
        Duration::from_millis(args.report_every_ms),
        aux_done.clone(),
    ));
    if let Some(path) = args.mark_file.clone() {
        aux.spawn(watch_marks(
            shared.clone(),
            path,
            first_window,
            aux_done.clone(),
        ));
    }
    let scheduler = {
        let shared = shared.clone();
        let stop = stop.clone();
        let (rate, seed) = (args.rate, args.seed);
        std::thread::spawn(move || {
            schedule(
                tx,
                &shared.queued,
                start,
                end,
                rate,
                rows,
                first_insert,
                seed,
                &stop,
            )
        })
    };
    tokio::task::spawn_blocking(move || scheduler.join())
        .await?
        .map_err(|_| anyhow::anyhow!("the scheduler thread panicked"))?;
    // The queue is closed: the workers finish what is due (each by its deadline) and stop.
    while let Some(joined) = workers.join_next().await {
        joined.context("a worker panicked")?;
    }
    aux_done.cancel();
    while aux.join_next().await.is_some() {}

    let elapsed = start.elapsed().as_secs_f64();
    let tally = std::mem::take(&mut *shared.tally());
    let windows = shared
        .windows
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .clone();
    let mut by_window: Vec<Vec<Sample>> = vec![Vec::new(); windows.len()];
    for sample in &tally.samples {
        let i = windows.partition_point(|w| w.from <= sample.due);
        by_window[i.saturating_sub(1)].push(*sample);
    }
    let failed = tally.samples.iter().filter(|s| s.failed).count();
    eprintln!(
        "sql-load: {} queries in {elapsed:.1} s ({:.0}/s), {failed} failed{}",
        tally.samples.len(),
        tally.samples.len() as f64 / elapsed.max(1e-9),
        if tally.unshown_errors > 0 {
            format!(
                "; {} failures had errors not shown (only the first {MAX_ERRORS_SHOWN} kinds are)",
                tally.unshown_errors
            )
        } else {
            String::new()
        }
    );
    for (i, (window, samples)) in windows.iter().zip(&by_window).enumerate() {
        // A run started before the first mark was written has an empty leading window.
        if i == 0 && samples.is_empty() && window.name == "unmarked" {
            continue;
        }
        println!("{}", window_line(&window.name, samples));
    }
    println!("total queries={} failed={failed}", tally.samples.len());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_per_database() {
        let pg = Statements::new(Dialect::Postgres, "users");
        assert_eq!(pg.read, "SELECT id, name, email FROM users WHERE id = $1");
        assert_eq!(pg.update, "UPDATE users SET name = $1 WHERE id = $2");
        assert_eq!(
            pg.insert,
            "INSERT INTO users (id, name, email) VALUES ($1, $2, $3)"
        );
        let my = Statements::new(Dialect::MySql, "app.users");
        assert_eq!(my.update, "UPDATE app.users SET name = ? WHERE id = ?");
    }

    #[test]
    fn dialects_tables_and_names() {
        assert_eq!(
            Dialect::of("postgres://u@h/d").ok(),
            Some(Dialect::Postgres)
        );
        assert_eq!(Dialect::of("MySQL://u@h/d").ok(), Some(Dialect::MySql));
        assert!(Dialect::of("sqlite://x.db").is_err());
        assert!(valid_table("users_loadtest_1"));
        assert!(valid_table("public.users"));
        assert!(!valid_table("users; DROP TABLE x"));
        assert!(!valid_table("1users"));
        assert!(!valid_table("a.b.c"));
        assert_eq!(window_name(" migration\n"), "migration");
        assert_eq!(window_name("after deploy"), "after_deploy");
        assert_eq!(window_name(""), "unmarked");
        assert_eq!(
            shown_url("mysql://root:pw@h/test?password=x"),
            "mysql://root:***@h/test"
        );
    }

    #[test]
    fn schedule_is_paced_and_mixed() {
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let queued = AtomicU64::new(0);
        let start = Instant::now();
        let end = start + Duration::from_millis(200);
        schedule(
            tx,
            &queued,
            start,
            Some(end),
            10_000,
            100,
            1_000,
            7,
            &CancellationToken::new(),
        );
        let mut jobs = Vec::new();
        while let Ok(job) = rx.try_recv() {
            jobs.push(job);
        }
        assert_eq!(jobs.len(), 2_000);
        assert_eq!(queued.load(Ordering::Relaxed), 2_000);
        assert_eq!(jobs[1].due - jobs[0].due, Duration::from_micros(100));
        let reads = jobs.iter().filter(|j| matches!(j.op, Op::Read(_))).count();
        let inserts: Vec<i64> = jobs
            .iter()
            .filter_map(|j| match j.op {
                Op::Insert(id) => Some(id),
                _ => None,
            })
            .collect();
        assert!((1_300..1_500).contains(&reads), "{reads} reads");
        assert!(
            (150..250).contains(&inserts.len()),
            "{} inserts",
            inserts.len()
        );
        assert!(inserts
            .iter()
            .copied()
            .eq(1_000..1_000 + inserts.len() as i64));
        assert!(jobs.iter().all(|j| match j.op {
            Op::Read(id) | Op::Update(id) => (1..=100).contains(&id),
            Op::Insert(_) => true,
        }));
    }
}
