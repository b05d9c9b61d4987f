//! `gantry migrate …`: expand/contract migrations from the command line, run locally
//! against the target database, or handed to the server as a job (`--via-server`, then
//! `jobs`, `watch`, `pause`, `resume`, `abort`, `retry`). Locally the database URL comes
//! from `--target-url-file`, else `GANTRY_MIGRATE_URL`; no option takes a URL (it would show
//! in `ps`), and the server's `GANTRY_DATABASE_URL` is never read. Results go to stdout (`apply` prints only the id of
//! the change it recorded); progress and the log go to stderr.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context as _};
use clap::{Args, Subcommand, ValueEnum};
use gantry_client::JobLogItem;
use gantry_core::migrate_job::{Job, JobFile, JobKind, JobSpec, JobState, NewJob};
use gantry_core::ChangeStatus;
use gantry_migrate::layout::{self, Database, Phase};
use gantry_migrate::runner::{Event, MigrationState, Options, Runner};
use gantry_migrate::split::Dialect;

use crate::output::{print_json, print_table};
use crate::GlobalArgs;

/// The variable a local run reads the target database's URL from.
pub const URL_VARIABLE: &str = "GANTRY_MIGRATE_URL";

#[derive(Debug, Subcommand)]
pub enum MigrateCommand {
    /// Per phase: applied, pending and drifted migrations, and invalid indexes left behind.
    Status(Target),
    /// The complete SQL script of a phase's pending migrations, for a DBA to run with psql
    /// or mysql on the database server.
    Plan(PlanArgs),
    /// Apply a phase's pending migrations; prints the id of the change it recorded.
    Apply(ApplyArgs),
    /// Classify statements: expand-safe, contract-only, lock risks (exit 1 on an error).
    Lint(LintArgs),
    /// Create the next numbered file of a phase; prints its path.
    New(NewArgs),
    /// Adopt an existing database: record versions up to N as applied without running them.
    Baseline(BaselineArgs),
    /// Record the files' checksums over drifted versions, as a deliberate act.
    Repair(RepairArgs),
    /// Rebuild a big table online with a shadow table swapped in at the end (PostgreSQL,
    /// MariaDB/MySQL); prints the change id.
    Rebuild(RebuildArgs),
    /// Migration jobs the server runs (`--via-server`), newest first.
    Jobs(JobsArgs),
    /// Follow a job's log until it ends (reattach after a disconnect); exit 1 unless it
    /// succeeded.
    Watch(JobArg),
    /// Hold a job between statements (or batches).
    Pause(JobArg),
    /// Let a paused job go on.
    Resume(JobArg),
    /// Stop a job between statements; an aborted rebuild removes its shadow table and
    /// triggers.
    Abort(JobArg),
    /// Continue a failed or interrupted job at the statement or batch that did not finish,
    /// with the files read again from --dir (a failed statement fixed).
    Retry(RetryArgs),
}

#[derive(Debug, Args)]
pub struct JobsArgs {
    /// Only this database's jobs.
    #[arg(long)]
    db: Option<String>,
    /// Only jobs in these states, comma-separated (queued,running,paused,succeeded,failed,
    /// interrupted,aborted).
    #[arg(long)]
    state: Option<String>,
    #[arg(long, default_value_t = 20)]
    limit: u32,
}

#[derive(Debug, Args)]
pub struct JobArg {
    /// The job id (from `apply --via-server` or `gantry migrate jobs`).
    job: String,
}

#[derive(Debug, Args)]
pub struct RetryArgs {
    job: String,
    /// Where the job's database folder is; its files are sent again when it exists.
    #[arg(long, default_value = "migrations")]
    dir: PathBuf,
    /// A MariaDB statement found started but not done committed: skip it.
    #[arg(long, conflicts_with = "rerun")]
    assume_done: bool,
    /// A MariaDB statement found started but not done did not commit: run it.
    #[arg(long)]
    rerun: bool,
    /// Return once the job is queued again instead of following its log.
    #[arg(long)]
    detach: bool,
}

#[derive(Debug, Args)]
pub struct RebuildArgs {
    #[command(flatten)]
    target: Target,
    /// The table to rebuild.
    table: String,
    /// What follows `ALTER TABLE <table>`, e.g. "MODIFY id BIGINT NOT NULL".
    #[arg(long, required_unless_present = "abort")]
    alter: Option<String>,
    /// The phase the change belongs to (the classifier gates it like a statement).
    #[arg(long, value_enum, default_value = "expand")]
    phase: PhaseArg,
    /// Drop the old table once the swap is done (kept by default).
    #[arg(long)]
    drop_old: bool,
    /// Move foreign keys of other tables that point at this one to the new table:
    /// re-created NOT VALID in the swap, validated after it (PostgreSQL).
    #[arg(long)]
    repoint_foreign_keys: bool,
    /// Remove the shadow table and triggers an unfinished rebuild left.
    #[arg(long, conflicts_with = "alter")]
    abort: bool,
    /// Rows per copy batch.
    #[arg(long, default_value_t = 1000)]
    batch: u32,
    /// As for apply: 'SQL<=N', repeatable.
    #[arg(long)]
    throttle: Vec<gantry_migrate::runner::Probe>,
    #[arg(long)]
    service: Option<String>,
    #[arg(long)]
    env: Option<String>,
    /// Rebuild what the classifier refuses for the phase; needs --reason.
    #[arg(long, requires = "reason")]
    force: bool,
    #[arg(long)]
    reason: Option<String>,
    /// Have the server run it as a job, for the database --db names in its
    /// [migrate.databases]; the change is the database's. Prints the change id, follows
    /// the log on stderr; interrupting the client leaves the job running.
    #[arg(long, conflicts_with_all = ["abort", "service", "env", "throttle"])]
    via_server: bool,
    /// With --via-server: return once the job is queued.
    #[arg(long, requires = "via_server")]
    detach: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum PhaseArg {
    Expand,
    Contract,
}

impl From<PhaseArg> for Phase {
    fn from(p: PhaseArg) -> Phase {
        match p {
            PhaseArg::Expand => Phase::Expand,
            PhaseArg::Contract => Phase::Contract,
        }
    }
}

#[derive(Debug, Args)]
pub struct Target {
    /// The migrations folder: one folder per database, each with expand/ and contract/.
    #[arg(long, default_value = "migrations")]
    dir: PathBuf,
    /// Which database's folder (optional when there is only one).
    #[arg(long)]
    db: Option<String>,
    /// A file holding the target database's URL (else GANTRY_MIGRATE_URL).
    #[arg(long)]
    target_url_file: Option<PathBuf>,
    /// Version table of the expand phase.
    #[arg(long, default_value = "gantry_schema_expand")]
    expand_table: String,
    /// Version table of the contract phase.
    #[arg(long, default_value = "gantry_schema_contract")]
    contract_table: String,
}

#[derive(Debug, Args)]
pub struct PlanArgs {
    #[command(flatten)]
    target: Target,
    #[arg(long, value_enum)]
    phase: PhaseArg,
}

#[derive(Debug, Args)]
pub struct ApplyArgs {
    #[command(flatten)]
    target: Target,
    #[arg(long, value_enum)]
    phase: PhaseArg,
    /// Stop after this version.
    #[arg(long)]
    to: Option<u32>,
    /// The service the database belongs to: the change is recorded for it.
    #[arg(long)]
    service: Option<String>,
    /// The environment (required with --phase contract).
    #[arg(long)]
    env: Option<String>,
    /// Apply what the classifier or the contract gate refuses; needs --reason.
    #[arg(long, requires = "reason")]
    force: bool,
    /// Why --force was needed; recorded in the change.
    #[arg(long)]
    reason: Option<String>,
    /// Apply versions below the highest applied one.
    #[arg(long)]
    out_of_order: bool,
    /// A statement found started but not done after a crash committed: skip it.
    #[arg(long, conflicts_with = "rerun")]
    assume_done: bool,
    /// A statement found started but not done after a crash did not commit: run it.
    #[arg(long)]
    rerun: bool,
    /// Longest wait of one statement for its locks before it is retried.
    #[arg(long, default_value = "500ms", value_parser = parse_duration)]
    lock_timeout: std::time::Duration,
    /// Retries of a statement that timed out on a lock.
    #[arg(long, default_value_t = 20)]
    lock_retries: u32,
    /// Rows per backfill batch (one commit each).
    #[arg(long, default_value_t = 1000)]
    backfill_batch: u32,
    /// A probe checked before each statement and backfill batch, as 'SQL<=N': while its
    /// answer is over N, it fails, or it takes over 2 s, the runner waits. Repeatable.
    #[arg(long)]
    throttle: Vec<gantry_migrate::runner::Probe>,
    /// Send the files to the server, which runs them as a job for the database --db names
    /// in its [migrate.databases] (its services, environment, URL and throttle probes;
    /// the server checks the contract gate). Prints the change id, follows the log on
    /// stderr; interrupting the client leaves the job running (`gantry migrate watch`).
    #[arg(long, conflicts_with_all = ["service", "env", "throttle"])]
    via_server: bool,
    /// With --via-server: return once the job is queued.
    #[arg(long, requires = "via_server")]
    detach: bool,
}

#[derive(Debug, Args)]
pub struct LintArgs {
    /// Files to lint; default every migration of the database.
    files: Vec<PathBuf>,
    #[arg(long, default_value = "migrations")]
    dir: PathBuf,
    #[arg(long)]
    db: Option<String>,
    /// The SQL dialect (default: from the target URL when one is set, else postgres).
    #[arg(long)]
    dialect: Option<String>,
    #[arg(long)]
    target_url_file: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct NewArgs {
    /// What the migration does, e.g. add_email.
    name: String,
    #[arg(long, value_enum)]
    phase: PhaseArg,
    #[arg(long, default_value = "migrations")]
    dir: PathBuf,
    #[arg(long)]
    db: Option<String>,
}

#[derive(Debug, Args)]
pub struct BaselineArgs {
    #[command(flatten)]
    target: Target,
    #[arg(long, value_enum)]
    phase: PhaseArg,
    /// The newest version the database already has.
    #[arg(long)]
    version: u32,
}

#[derive(Debug, Args)]
pub struct RepairArgs {
    #[command(flatten)]
    target: Target,
    #[arg(long, value_enum)]
    phase: PhaseArg,
    /// The service the database belongs to: the repair is recorded as its change.
    #[arg(long, requires = "env")]
    service: Option<String>,
    #[arg(long, requires = "service")]
    env: Option<String>,
    /// Why the files changed after they were applied; recorded in the change.
    #[arg(long)]
    reason: Option<String>,
}

fn parse_duration(text: &str) -> Result<std::time::Duration, String> {
    gantry_core::time::parse_duration("duration", text).map_err(|e| e.0)
}

/// The target database's URL: the file wins, else the variable.
fn target_url(file: Option<&Path>) -> anyhow::Result<String> {
    if let Some(file) = file {
        let text = std::fs::read_to_string(file)
            .with_context(|| format!("cannot read the target URL file {}", file.display()))?;
        let url = text.trim().to_string();
        if url.is_empty() {
            bail!(
                "{} is empty; it should hold the target database's URL",
                file.display()
            );
        }
        return Ok(url);
    }
    std::env::var(URL_VARIABLE).map_err(|_| {
        anyhow::anyhow!(
            "no target database: pass --target-url-file FILE or set {URL_VARIABLE} (no option takes the URL itself, so it never shows in ps)"
        )
    })
}

fn dialect_of(url: &str) -> anyhow::Result<Dialect> {
    let scheme = url.split(':').next().unwrap_or("");
    Dialect::from_name(scheme).ok_or_else(|| {
        anyhow::anyhow!(
            "the target URL must start with postgres://, mysql://, mariadb:// or sqlite:"
        )
    })
}

/// Which database folder: `--db`, or the only one there is.
fn database_name(dir: &Path, db: Option<&str>) -> anyhow::Result<String> {
    if let Some(db) = db {
        return Ok(db.to_string());
    }
    let all = layout::list_databases(dir);
    match all.as_slice() {
        [one] => Ok(one.clone()),
        [] => bail!(
            "{} holds no database folder (migrations/<database>/expand/…)",
            dir.display()
        ),
        many => bail!(
            "{} holds several databases ({}); name one with --db",
            dir.display(),
            many.join(", ")
        ),
    }
}

fn load(dir: &Path, db: &str, dialect: Dialect) -> anyhow::Result<Database> {
    Ok(layout::load_database(dir, db, dialect)?)
}

fn options(target: &Target) -> Options {
    Options {
        expand_table: target.expand_table.clone(),
        contract_table: target.contract_table.clone(),
        applied_by: whoami(),
        ..Options::default()
    }
}

fn whoami() -> String {
    std::env::var("USER")
        .or_else(|_| std::env::var("LOGNAME"))
        .unwrap_or_else(|_| "gantry".into())
}

async fn connect(
    target: &Target,
    tune: impl FnOnce(&mut Options),
) -> anyhow::Result<(Runner, Database)> {
    let url = target_url(target.target_url_file.as_deref())?;
    let dialect = dialect_of(&url)?;
    let name = database_name(&target.dir, target.db.as_deref())?;
    let db = load(&target.dir, &name, dialect)?;
    let mut opts = options(target);
    tune(&mut opts);
    let runner = Runner::connect(&url, &name, opts).await?;
    Ok((runner, db))
}

fn progress(event: Event) {
    eprintln!("migrate: {event}");
}

pub async fn run(global: &GlobalArgs, command: MigrateCommand) -> anyhow::Result<()> {
    match command {
        MigrateCommand::Status(target) => {
            let (mut runner, db) = connect(&target, |_| {}).await?;
            let status = runner.status(&db).await;
            runner.close().await;
            let status = status?;
            if global.json {
                return print_json(&status);
            }
            let mut rows = Vec::new();
            for phase in [&status.expand, &status.contract] {
                for (version, path, state) in &phase.migrations {
                    let state = match state {
                        MigrationState::Pending => "pending".to_string(),
                        MigrationState::Applied => "applied".to_string(),
                        MigrationState::Baseline => "baseline".to_string(),
                        MigrationState::Partial { done, started } => match started {
                            Some(s) => format!("partial: {done} done, statement {} started", s + 1),
                            None => format!("partial: {done} done"),
                        },
                        MigrationState::Drifted { applied, file } => {
                            format!("DRIFTED: applied {applied:.12}…, file {file:.12}…")
                        }
                    };
                    rows.push(vec![
                        phase.phase.name().to_string(),
                        format!("{version:04}"),
                        state,
                        path.clone(),
                    ]);
                }
                for version in &phase.missing_files {
                    rows.push(vec![
                        phase.phase.name().to_string(),
                        format!("{version:04}"),
                        "applied, file missing".into(),
                        "-".into(),
                    ]);
                }
            }
            print_table(&["PHASE", "VERSION", "STATE", "FILE"], &rows);
            for index in &status.invalid_indexes {
                println!("invalid index left behind: {index} (drop it and build it again)");
            }
            println!(
                "contract gate: not checked locally; `gantry migrate apply --phase contract` needs --force --reason until the server's gate is reachable"
            );
        }
        MigrateCommand::Plan(args) => {
            let (mut runner, db) = connect(&args.target, |_| {}).await?;
            let phase: Phase = args.phase.into();
            let status = runner.status(&db).await;
            let dialect = runner.dialect();
            runner.close().await;
            let status = status?;
            let pending: Vec<&gantry_migrate::layout::Migration> = db
                .phase(phase)
                .iter()
                .filter(|m| {
                    matches!(
                        status.phase(phase).state_of(m.version),
                        Some(MigrationState::Pending)
                    )
                })
                .collect();
            let table = match phase {
                Phase::Expand => &args.target.expand_table,
                Phase::Contract => &args.target.contract_table,
            };
            print!(
                "{}",
                gantry_migrate::plan::plan_script(dialect, phase, &pending, table, &whoami())
            );
        }
        MigrateCommand::Apply(args) if args.via_server => apply_via_server(global, args).await?,
        MigrateCommand::Apply(args) => apply(global, args).await?,
        MigrateCommand::Lint(args) => lint(global, args)?,
        MigrateCommand::New(args) => {
            let db = database_name(&args.dir, args.db.as_deref()).or_else(|e| match &args.db {
                Some(db) => Ok(db.clone()),
                None => Err(e),
            })?;
            let phase: Phase = args.phase.into();
            let folder = args.dir.join(&db).join(phase.name());
            std::fs::create_dir_all(&folder)
                .with_context(|| format!("cannot create {}", folder.display()))?;
            let next = std::fs::read_dir(&folder)?
                .filter_map(|e| e.ok())
                .filter_map(|e| layout::parse_file_name(&e.file_name().to_string_lossy()).ok())
                .map(|n| n.version)
                .max()
                .unwrap_or(0)
                + 1;
            let slug: String = args
                .name
                .chars()
                .map(|c| {
                    if c.is_ascii_alphanumeric() {
                        c.to_ascii_lowercase()
                    } else {
                        '_'
                    }
                })
                .collect();
            let path = folder.join(format!("{next:04}_{slug}.sql"));
            std::fs::write(&path, format!("-- {}\n", args.name))
                .with_context(|| format!("cannot write {}", path.display()))?;
            println!("{}", path.display());
        }
        MigrateCommand::Baseline(args) => {
            let (mut runner, db) = connect(&args.target, |_| {}).await?;
            let done = runner.baseline(&db, args.phase.into(), args.version).await;
            runner.close().await;
            let done = done?;
            eprintln!(
                "migrate: recorded {} versions as applied: {done:?}",
                done.len()
            );
        }
        MigrateCommand::Rebuild(args) if args.via_server => {
            rebuild_via_server(global, args).await?
        }
        MigrateCommand::Rebuild(args) => rebuild(global, args).await?,
        MigrateCommand::Jobs(args) => {
            let client = crate::credentials::client(global)?;
            let jobs = client
                .list_migrate_jobs(args.db.as_deref(), args.state.as_deref(), args.limit)
                .await?;
            if global.json {
                return print_json(&jobs);
            }
            let rows: Vec<Vec<String>> = jobs
                .iter()
                .map(|j| {
                    vec![
                        j.id.to_string(),
                        j.database.clone(),
                        match j.kind {
                            JobKind::Apply => format!("apply {}", j.spec.phase),
                            JobKind::Rebuild => {
                                format!("rebuild {}", j.spec.table.as_deref().unwrap_or(""))
                            }
                        },
                        j.state.to_string(),
                        j.created_at.format("%Y-%m-%d %H:%M:%S").to_string(),
                        j.requested_by.clone(),
                        j.error
                            .clone()
                            .unwrap_or_default()
                            .chars()
                            .take(80)
                            .collect(),
                    ]
                })
                .collect();
            print_table(
                &["JOB", "DATABASE", "WHAT", "STATE", "CREATED", "BY", "ERROR"],
                &rows,
            );
        }
        MigrateCommand::Watch(arg) => {
            let client = crate::credentials::client(global)?;
            let job = follow(&client, &arg.job, Out::Stdout).await?;
            finished(&job)?;
        }
        MigrateCommand::Pause(arg) => control(global, &arg.job, "pause", None).await?,
        MigrateCommand::Resume(arg) => control(global, &arg.job, "resume", None).await?,
        MigrateCommand::Abort(arg) => control(global, &arg.job, "abort", None).await?,
        MigrateCommand::Retry(args) => {
            let client = crate::credentials::client(global)?;
            let job = client.get_migrate_job(&args.job).await?;
            let mut body = serde_json::json!({
                "assume_done": args.assume_done,
                "rerun": args.rerun,
            });
            if job.kind == JobKind::Apply && args.dir.join(&job.database).is_dir() {
                let files = read_files(&args.dir, &job.database)?;
                eprintln!(
                    "migrate: sending {} files of {} again",
                    files.len(),
                    args.dir.join(&job.database).display()
                );
                body["files"] = serde_json::to_value(files)?;
            }
            let job = client
                .control_migrate_job(&args.job, "retry", Some(&body))
                .await?;
            eprintln!("migrate: job {} is {}", job.id, job.state);
            if !args.detach {
                let job = follow(&client, &args.job, Out::Stderr).await?;
                finished(&job)?;
            }
        }
        MigrateCommand::Repair(args) => {
            let started = chrono::Utc::now();
            let (mut runner, db) = connect(&args.target, |_| {}).await?;
            let phase: Phase = args.phase.into();
            let done = runner.repair(&db, phase).await;
            runner.close().await;
            let done = done?;
            eprintln!("migrate: recorded the files' checksums over versions {done:?}");
            match (&args.service, &args.env) {
                _ if done.is_empty() => {
                    eprintln!("migrate: nothing had drifted; no change recorded")
                }
                (Some(service), Some(env)) => {
                    let client = crate::credentials::client(global)?;
                    let mut extra = serde_json::Map::new();
                    extra.insert("repaired".into(), serde_json::json!(done));
                    let checksums: serde_json::Map<String, serde_json::Value> = db
                        .phase(phase)
                        .iter()
                        .filter(|m| done.contains(&m.version))
                        .map(|m| (m.version.to_string(), m.checksum.clone().into()))
                        .collect();
                    extra.insert("checksums".into(), checksums.into());
                    if let Some(reason) = &args.reason {
                        extra.insert("reason".into(), reason.clone().into());
                    }
                    let record = migration_record(
                        (service, env),
                        format!(
                            "{}: {} checksums repaired for {done:?}",
                            db.name,
                            phase.name()
                        ),
                        ChangeStatus::Succeeded,
                        started,
                        (&db.name, phase),
                        None,
                        extra,
                    );
                    let change = client.record_migration(&record).await?;
                    println!("{}", change.id);
                }
                _ => eprintln!("migrate: no --service: no change recorded"),
            }
        }
    }
    Ok(())
}

async fn apply(global: &GlobalArgs, args: ApplyArgs) -> anyhow::Result<()> {
    let phase: Phase = args.phase.into();
    if args.service.is_some() != args.env.is_some() {
        bail!("--service and --env go together: the change is recorded for that service in that environment");
    }
    if phase == Phase::Contract && args.service.is_none() && !args.force {
        bail!(
            "--phase contract needs --service and --env, so the server can say whether the contract gate is open (or --force --reason \"…\" to go without it)"
        );
    }
    let (mut runner, db) = connect(&args.target, |o| {
        o.force = args.force;
        o.out_of_order = args.out_of_order;
        o.assume_done = args.assume_done;
        o.rerun = args.rerun;
        o.lock_timeout = args.lock_timeout;
        o.lock_retries = args.lock_retries;
        o.backfill_batch = args.backfill_batch.max(1);
        o.throttle = args.throttle.clone();
    })
    .await?;
    let result = apply_with(global, &args, phase, &mut runner, &db).await;
    runner.close().await;
    result
}

async fn apply_with(
    global: &GlobalArgs,
    args: &ApplyArgs,
    phase: Phase,
    runner: &mut Runner,
    db: &Database,
) -> anyhow::Result<()> {
    let server = match (&args.service, &args.env) {
        (Some(service), Some(env)) => Some((
            crate::credentials::client(global)?,
            service.clone(),
            env.clone(),
        )),
        _ => None,
    };
    if let (Phase::Contract, Some((client, service, env))) = (phase, &server) {
        let expanded_at = runner.expanded_at().await?;
        match client.migrate_gate(std::slice::from_ref(service), env, expanded_at).await {
            Ok(gate) if gate.open => eprintln!("migrate: contract gate open: {}", gate.reason),
            Ok(gate) if args.force => eprintln!("migrate: contract gate closed ({}); going on: --force --reason", gate.reason),
            Ok(gate) => bail!("the contract gate is closed: {}", gate.reason),
            Err(e) if args.force => eprintln!("migrate: cannot ask the server about the contract gate ({e}); going on: --force --reason"),
            Err(e) => bail!("cannot ask the server whether the contract gate is open ({e}); nothing was run. Retry when it answers, or use --force --reason \"…\""),
        }
    }
    let started = chrono::Utc::now();
    let mut log = progress;
    let outcome = runner.apply(db, phase, args.to, &mut log).await;
    let (status, summary, report) = match &outcome {
        Ok(report) => (
            ChangeStatus::Succeeded,
            format!("{}: {} {:?} applied", db.name, phase.name(), report.applied),
            Some(report.clone()),
        ),
        Err(e) => (
            ChangeStatus::Failed,
            format!("{}: {} failed: {e}", db.name, phase.name())
                .chars()
                .take(500)
                .collect(),
            None,
        ),
    };
    if let Some(report) = &report {
        eprintln!(
            "migrate: {} migrations, {} statements, {} ms",
            report.applied.len(),
            report.statements,
            report.duration_ms
        );
    }
    let nothing_ran = report.as_ref().is_some_and(|r| r.applied.is_empty());
    match &server {
        Some(_) if nothing_ran => eprintln!("migrate: nothing was pending; no change recorded"),
        Some((client, service, env)) => {
            let mut extra = serde_json::Map::new();
            if let Some(report) = &report {
                extra.insert("versions".into(), serde_json::json!(report.applied));
                extra.insert("statements".into(), report.statements.into());
                extra.insert("duration_ms".into(), report.duration_ms.into());
            }
            let record = migration_record(
                (service, env),
                summary,
                status,
                started,
                (&db.name, phase),
                args.reason.as_deref(),
                extra,
            );
            match client.record_migration(&record).await {
                Ok(change) => println!("{}", change.id),
                Err(e) => eprintln!(
                    "migrate: the migration ran but its change could not be recorded: {e}"
                ),
            }
        }
        None => eprintln!("migrate: no --service: no change recorded"),
    }
    outcome.map(drop).map_err(Into::into)
}

async fn rebuild(global: &GlobalArgs, args: RebuildArgs) -> anyhow::Result<()> {
    let phase: Phase = args.phase.into();
    if args.service.is_some() != args.env.is_some() {
        bail!("--service and --env go together: the change is recorded for that service in that environment");
    }
    let (mut runner, db) = connect(&args.target, |o| {
        o.backfill_batch = args.batch.max(1);
        o.throttle = args.throttle.clone();
    })
    .await?;
    if args.abort {
        let result = runner.abort_rebuild(&args.table).await;
        runner.close().await;
        result?;
        eprintln!(
            "migrate: removed the shadow table and triggers of {}",
            args.table
        );
        return Ok(());
    }
    let alter = args.alter.clone().unwrap_or_default();
    if let Err(e) = runner.check_rebuild(phase, &args.table, &alter, args.force) {
        runner.close().await;
        return Err(e.into());
    }
    let started = chrono::Utc::now();
    let mut log = progress;
    let outcome = runner
        .rebuild(
            &args.table,
            &alter,
            gantry_migrate::runner::RebuildOptions {
                drop_old: args.drop_old,
                repoint_foreign_keys: args.repoint_foreign_keys,
            },
            &mut log,
        )
        .await;
    runner.close().await;
    let report = outcome?;
    eprintln!(
        "migrate: rebuilt {} ({} rows in {} batches, {} ms); the old table is {}",
        args.table,
        report.rows_copied,
        report.batches,
        report.duration_ms,
        if args.drop_old {
            "dropped".to_string()
        } else {
            report.old_table.clone()
        }
    );
    if let (Some(service), Some(env)) = (args.service, args.env) {
        let client = crate::credentials::client(global)?;
        let mut extra = serde_json::Map::new();
        extra.insert("rebuild".into(), args.table.clone().into());
        extra.insert("alter".into(), alter.clone().into());
        extra.insert("rows".into(), report.rows_copied.into());
        extra.insert("duration_ms".into(), report.duration_ms.into());
        let record = migration_record(
            (&service, &env),
            format!("{}: rebuilt {} ({alter})", db.name, args.table)
                .chars()
                .take(500)
                .collect(),
            ChangeStatus::Succeeded,
            started,
            (&db.name, phase),
            args.reason.as_deref(),
            extra,
        );
        let change = client.record_migration(&record).await?;
        println!("{}", change.id);
    }
    Ok(())
}

/// Every file of a database's folder, as paths relative to it (`expand/0001_a.sql`).
fn read_files(dir: &Path, database: &str) -> anyhow::Result<Vec<JobFile>> {
    let root = dir.join(database);
    if !root.is_dir() {
        bail!(
            "{} is not a folder; --dir and --db name the database's migrations",
            root.display()
        );
    }
    let mut files = Vec::new();
    for phase in [Phase::Expand, Phase::Contract] {
        let folder = root.join(phase.name());
        if !folder.is_dir() {
            continue;
        }
        let mut entries: Vec<_> = std::fs::read_dir(&folder)
            .with_context(|| format!("cannot read {}", folder.display()))?
            .filter_map(Result::ok)
            .filter(|e| !e.file_name().to_string_lossy().starts_with('.'))
            .collect();
        entries.sort_by_key(|e| e.file_name());
        for entry in entries {
            let name = entry.file_name().to_string_lossy().into_owned();
            let path = entry.path();
            let text = if path.is_dir() {
                // The server names it: a phase folder holds files only.
                String::new()
            } else {
                std::fs::read_to_string(&path)
                    .with_context(|| format!("cannot read {} as UTF-8 text", path.display()))?
            };
            files.push(JobFile {
                path: format!(
                    "{}/{name}{}",
                    phase.name(),
                    if path.is_dir() { "/" } else { "" }
                ),
                text,
            });
        }
    }
    Ok(files)
}

/// Where a followed log goes: stderr when the command's stdout is the change id.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Out {
    Stdout,
    Stderr,
}

/// Follows a job's log until the job ends, reconnecting (from the last line seen) when the
/// connection drops; returns the job as it ended.
async fn follow(client: &gantry_client::Client, id: &str, out: Out) -> anyhow::Result<Job> {
    use futures::StreamExt;
    let mut after = 0;
    let mut failures = 0u32;
    loop {
        match client.stream_migrate_log(id, after).await {
            Ok(mut stream) => {
                failures = 0;
                while let Some(item) = stream.next().await {
                    match item {
                        Ok(JobLogItem::Line(line)) => {
                            after = line.seq;
                            let text = format!("{} {}", line.at.format("%H:%M:%S"), line.text);
                            match out {
                                Out::Stdout => println!("{text}"),
                                Out::Stderr => eprintln!("migrate: {text}"),
                            }
                        }
                        Ok(JobLogItem::End(job)) => return Ok(*job),
                        Err(_) => break,
                    }
                }
            }
            Err(e @ gantry_client::ClientError::Api { .. }) => return Err(e.into()),
            Err(e) => {
                failures += 1;
                if failures > 120 {
                    bail!("lost the server for two minutes ({e}); the job goes on: `gantry migrate watch {id}`");
                }
            }
        }
        tokio::time::sleep(std::time::Duration::from_secs(1)).await;
    }
}

/// Ok when the job succeeded; otherwise an error saying how it ended.
fn finished(job: &Job) -> anyhow::Result<()> {
    match job.state {
        JobState::Succeeded => Ok(()),
        JobState::Aborted => bail!("job {} was aborted", job.id),
        state => bail!(
            "job {} is {state}: {}",
            job.id,
            job.error.as_deref().unwrap_or("no reason given")
        ),
    }
}

async fn control(
    global: &GlobalArgs,
    id: &str,
    action: &str,
    body: Option<&serde_json::Value>,
) -> anyhow::Result<()> {
    let client = crate::credentials::client(global)?;
    let job = client.control_migrate_job(id, action, body).await?;
    if global.json {
        return print_json(&job);
    }
    match &job.control {
        Some(asked) => println!(
            "job {} is {}; asked to {asked}: it acts between statements",
            job.id, job.state
        ),
        None => println!("job {} is {}", job.id, job.state),
    }
    Ok(())
}

/// Queues a job, prints its change id, and follows it unless told not to.
async fn submit(global: &GlobalArgs, new: NewJob, detach: bool) -> anyhow::Result<()> {
    let client = crate::credentials::client(global)?;
    let job = client.submit_migrate_job(&new).await?;
    println!("{}", job.change_id);
    eprintln!(
        "migrate: job {} queued on the server for {} ({} in {}); `gantry migrate watch {}` follows it",
        job.id,
        job.database,
        job.services.join(", "),
        job.environment,
        job.id
    );
    if detach {
        return Ok(());
    }
    let job = follow(&client, &job.id.to_string(), Out::Stderr).await?;
    finished(&job)
}

async fn apply_via_server(global: &GlobalArgs, args: ApplyArgs) -> anyhow::Result<()> {
    let database = database_name(&args.target.dir, args.target.db.as_deref())?;
    let files = read_files(&args.target.dir, &database)?;
    let spec = JobSpec {
        phase: Phase::from(args.phase).name().to_string(),
        files,
        to: args.to,
        force: args.force,
        reason: args.reason.clone(),
        out_of_order: args.out_of_order,
        assume_done: args.assume_done,
        rerun: args.rerun,
        lock_timeout_ms: Some(args.lock_timeout.as_millis() as u64),
        lock_retries: Some(args.lock_retries),
        batch: Some(args.backfill_batch.max(1)),
        ..JobSpec::default()
    };
    submit(
        global,
        NewJob {
            database,
            kind: JobKind::Apply,
            spec,
        },
        args.detach,
    )
    .await
}

async fn rebuild_via_server(global: &GlobalArgs, args: RebuildArgs) -> anyhow::Result<()> {
    let database = match &args.target.db {
        Some(db) => db.clone(),
        None => database_name(&args.target.dir, None)?,
    };
    let spec = JobSpec {
        phase: Phase::from(args.phase).name().to_string(),
        table: Some(args.table.clone()),
        alter: args.alter.clone(),
        drop_old: args.drop_old,
        repoint_foreign_keys: args.repoint_foreign_keys,
        force: args.force,
        reason: args.reason.clone(),
        batch: Some(args.batch.max(1)),
        ..JobSpec::default()
    };
    submit(
        global,
        NewJob {
            database,
            kind: JobKind::Rebuild,
            spec,
        },
        args.detach,
    )
    .await
}

/// The body of `POST /api/v1/migrate/changes` for what a run did: the database, the phase,
/// a forced reason when there was one, and `extra` (versions, rows, duration…).
fn migration_record(
    (service, env): (&str, &str),
    summary: String,
    status: ChangeStatus,
    started: chrono::DateTime<chrono::Utc>,
    (database, phase): (&str, Phase),
    forced: Option<&str>,
    mut metadata: serde_json::Map<String, serde_json::Value>,
) -> serde_json::Value {
    metadata.insert("database".into(), database.into());
    metadata.insert("phase".into(), phase.name().into());
    if let Some(reason) = forced {
        metadata.insert("forced".into(), reason.into());
    }
    serde_json::json!({
        "service": service,
        "environment": env,
        "summary": summary,
        "status": status,
        "started_at": started,
        "finished_at": chrono::Utc::now(),
        "metadata": metadata,
    })
}

fn lint(global: &GlobalArgs, args: LintArgs) -> anyhow::Result<()> {
    let dialect = match &args.dialect {
        Some(name) => Dialect::from_name(name).ok_or_else(|| {
            anyhow::anyhow!("--dialect '{name}': expected postgres, mysql or sqlite")
        })?,
        None => match target_url(args.target_url_file.as_deref()) {
            Ok(url) => dialect_of(&url)?,
            Err(_) => Dialect::Postgres,
        },
    };
    let migrations: Vec<gantry_migrate::layout::Migration> = if args.files.is_empty() {
        let name = database_name(&args.dir, args.db.as_deref())?;
        let db = load(&args.dir, &name, dialect)?;
        db.expand.into_iter().chain(db.contract).collect()
    } else {
        let mut out = Vec::new();
        for file in &args.files {
            let text = std::fs::read_to_string(file)
                .with_context(|| format!("cannot read {}", file.display()))?;
            let phase = file
                .parent()
                .and_then(|p| p.file_name())
                .and_then(|n| Phase::from_name(&n.to_string_lossy()))
                .unwrap_or(Phase::Expand);
            out.push(gantry_migrate::layout::Migration::from_source(
                dialect,
                phase,
                &file.display().to_string(),
                &text,
                None,
            )?);
        }
        out
    };
    let findings: Vec<_> = migrations
        .iter()
        .flat_map(|m| gantry_migrate::lint::lint(dialect, m.phase, m))
        .collect();
    let errors = findings
        .iter()
        .filter(|f| f.severity == gantry_migrate::classify::Severity::Error)
        .count();
    if global.json {
        print_json(&findings)?;
    } else {
        print!("{}", gantry_migrate::lint::format_table(&findings));
    }
    if errors > 0 {
        eprintln!("migrate lint: {errors} error(s)");
        std::process::exit(1);
    }
    Ok(())
}
