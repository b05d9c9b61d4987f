//! `gantry`: one binary for the server, the host agent and the command line. This file only
//! parses arguments and dispatches; the work is in the library crates.

mod commands;
mod credentials;
mod output;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, CommandFactory, FromArgMatches, Parser, Subcommand, ValueEnum};

/// jemalloc, with its background thread returning freed pages to the system over time:
/// the metrics path makes many small allocations in bursts, and both glibc's allocator
/// and mimalloc kept most of what an ingest burst freed, so the server stayed near its
/// peak (docs/decisions/0003-allocator.md has the measurements).
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// jemalloc's options, read once when it starts (`_RJEM_MALLOC_CONF` in the environment
/// still overrides them). `retain:false` hands virtual memory that ingest bursts freed
/// back to the system instead of keeping it mapped for reuse: jemalloc's own bookkeeping
/// grows with what it retains and never shrinks, and retained memory only grew with a
/// server's uptime (decision 0003, "Update").
#[export_name = "_rjem_malloc_conf"]
static MALLOC_CONF: MallocConf = MallocConf(c"retain:false".as_ptr());

/// A C string pointer that jemalloc reads as its `malloc_conf` symbol.
#[repr(transparent)]
struct MallocConf(*const std::ffi::c_char);

// SAFETY: the pointer is to a string literal, immutable for the life of the program.
unsafe impl Sync for MallocConf {}

/// What the metrics store runs after freeing a lot (a checkpoint, maintenance): purge
/// every arena's unused pages now rather than over jemalloc's decay time.
fn release_free_memory() {
    // SAFETY: the name is a NUL-terminated mallctl name; `arena.<i>.purge` takes no old or
    // new value, so every pointer is null and the length 0, as jemalloc requires; arena
    // 4096 is MALLCTL_ARENAS_ALL.
    unsafe {
        tikv_jemalloc_sys::mallctl(
            c"arena.4096.purge".as_ptr(),
            std::ptr::null_mut(),
            std::ptr::null_mut(),
            std::ptr::null_mut(),
            0,
        );
    }
}

/// jemalloc's own figures for `GET /metrics`: `epoch` refreshes its statistics, then each
/// `stats.*` value is read as a `size_t`.
fn allocator_stats() -> Option<gantry_server::metrics::AllocatorStats> {
    fn read(name: &std::ffi::CStr) -> Option<u64> {
        let mut value: usize = 0;
        let mut len = std::mem::size_of::<usize>();
        // SAFETY: the name is NUL-terminated; `value` and `len` describe a `size_t` that
        // jemalloc writes, which is the type every `stats.*` value read here has.
        let status = unsafe {
            tikv_jemalloc_sys::mallctl(
                name.as_ptr(),
                (&raw mut value).cast(),
                &mut len,
                std::ptr::null_mut(),
                0,
            )
        };
        (status == 0).then_some(value as u64)
    }
    let mut epoch: u64 = 1;
    let mut len = std::mem::size_of::<u64>();
    // SAFETY: `epoch` takes and returns a uint64_t; both pointers describe one.
    let status = unsafe {
        tikv_jemalloc_sys::mallctl(
            c"epoch".as_ptr(),
            (&raw mut epoch).cast(),
            &mut len,
            (&raw mut epoch).cast(),
            len,
        )
    };
    if status != 0 {
        return None;
    }
    Some(gantry_server::metrics::AllocatorStats {
        allocated: read(c"stats.allocated")?,
        active: read(c"stats.active")?,
        resident: read(c"stats.resident")?,
        metadata: read(c"stats.metadata")?,
    })
}

/// Continuous-deployment machinery in one binary: a change log, and everything that hangs
/// off it.
#[derive(Debug, Parser)]
#[command(
    name = "gantry",
    version,
    propagate_version = true,
    max_term_width = 100
)]
struct Cli {
    #[command(flatten)]
    global: GlobalArgs,
    #[command(subcommand)]
    command: Command,
}

/// Options every client command takes.
#[derive(Debug, Args, Clone)]
pub struct GlobalArgs {
    /// Server URL.
    #[arg(
        long,
        env = "GANTRY_URL",
        default_value = "http://127.0.0.1:7070",
        global = true,
        visible_alias = "server"
    )]
    pub url: String,
    /// API token. Prefer --token-file: a token on the command line shows up in `ps`.
    #[arg(long, env = "GANTRY_TOKEN", global = true, hide_env_values = true)]
    pub token: Option<String>,
    /// File holding the API token. A token named on the command line wins over one inherited
    /// from GANTRY_TOKEN or GANTRY_TOKEN_FILE; without any, gantry reads
    /// ~/.config/gantry/token, then (for a server on this machine) <data-dir>/admin.token.
    /// `gantry whoami` says which it used.
    #[arg(long, env = "GANTRY_TOKEN_FILE", global = true)]
    pub token_file: Option<PathBuf>,
    /// Where --token and --token-file came from (filled in after parsing).
    #[arg(skip)]
    pub token_source: credentials::Sources,
    /// Machine-readable output: JSON (arrays for listings, one object per line for streams).
    #[arg(long, global = true)]
    pub json: bool,
    /// Log format on stderr.
    #[arg(
        long,
        env = "GANTRY_LOG_FORMAT",
        value_enum,
        default_value = "text",
        global = true
    )]
    pub log_format: LogFormat,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the Gantry server (HTTP API on 127.0.0.1:7070, SQLite in ./gantry-data).
    Server(commands::server::ServerArgs),
    /// Record, list, show, update and follow changes.
    #[command(subcommand)]
    Change(commands::change::ChangeCommand),
    /// Feature flags, kill switches and rollouts: create, flip, target, schedule, import.
    #[command(subcommand)]
    Flag(commands::flag::FlagCommand),
    /// Expand/contract database migrations: status, plan, apply, lint, new, baseline, repair,
    /// rebuild, and jobs on the server.
    #[command(subcommand)]
    Migrate(commands::migrate::MigrateCommand),
    /// Incidents: open, list, show (suspects, timeline), ack, mitigate, resolve, note, cause,
    /// and the remedies rollback and flag-off.
    #[command(subcommand)]
    Incident(commands::incident::IncidentCommand),
    /// Monitors kept as files: apply (prints ping keys of new heartbeats), list, show,
    /// rotate-key.
    #[command(subcommand)]
    Monitor(commands::monitor::MonitorCommand),
    /// Open alerts and the delivery state of their notifications.
    #[command(subcommand)]
    Alert(commands::alert::AlertCommand),
    /// Silences and weekly maintenance windows: hold the notifications of matching alerts.
    #[command(subcommand)]
    Silence(commands::alert::SilenceCommand),
    /// Regression detection: replay the detector over a CSV of your own history.
    #[command(subcommand)]
    Detect(commands::detect::DetectCommand),
    /// What change costs: MTTD, MTTR, lead time, deployment frequency, change fail rate,
    /// recovery time, rework rate, for a period and per day, week or month.
    Report(commands::report::ReportArgs),
    /// Manage services and their environment pipelines.
    #[command(subcommand)]
    Service(commands::service::ServiceCommand),
    /// Push, register, list and show builds.
    #[command(subcommand)]
    Build(commands::ship::BuildCommand),
    /// Deploy a build of a service to an environment in waves; prints the rollout id.
    Deploy(commands::ship::DeployArgs),
    /// Return an environment to the build that ran successfully before the current one.
    Rollback(commands::ship::RollbackArgs),
    /// Deploy exactly the build one environment runs to the next (refused unless its last
    /// deploy there succeeded).
    Promote(commands::ship::PromoteArgs),
    /// List, follow, pause, resume and abort rollouts.
    #[command(subcommand)]
    Rollout(commands::ship::RolloutCommand),
    /// Enroll, list and show hosts; maintenance mode.
    #[command(subcommand)]
    Host(commands::ship::HostCommand),
    /// Run the host agent: install what the server sends, report every step.
    Agent(commands::ship::AgentArgs),
    /// Send a directory of key=value drop files as metrics, every interval.
    Collect(commands::collect::CollectArgs),
    /// List and delete stored metric series.
    #[command(subcommand)]
    Metrics(commands::metrics::MetricsCommand),
    /// Manage API tokens (needs an admin token).
    #[command(subcommand)]
    Token(commands::token::TokenCommand),
    /// Show which token this command line uses and its scopes.
    Whoami,
    /// Print the version.
    Version,
}

fn main() -> ExitCode {
    gantry_tsdb::set_memory_release(release_free_memory);
    gantry_server::metrics::set_allocator_stats(allocator_stats);
    let matches = Cli::command().get_matches();
    let mut cli = match Cli::from_arg_matches(&matches) {
        Ok(cli) => cli,
        Err(e) => e.exit(),
    };
    // A token given on the command line wins over one inherited from the environment.
    cli.global.token_source = credentials::Sources::of(&matches);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let is_server = matches!(cli.command, Command::Server(_) | Command::Agent(_));
    output::init_logging(cli.global.log_format, is_server);
    let result = runtime.block_on(async move {
        match cli.command {
            Command::Server(args) => commands::server::run(args).await,
            Command::Change(cmd) => commands::change::run(&cli.global, cmd).await,
            Command::Service(cmd) => commands::service::run(&cli.global, cmd).await,
            Command::Flag(cmd) => commands::flag::run(&cli.global, cmd).await,
            Command::Migrate(cmd) => commands::migrate::run(&cli.global, cmd).await,
            Command::Incident(cmd) => commands::incident::run(&cli.global, cmd).await,
            Command::Report(args) => commands::report::run(&cli.global, args).await,
            Command::Detect(cmd) => commands::detect::run(&cli.global, cmd).await,
            Command::Monitor(cmd) => commands::monitor::run(&cli.global, cmd).await,
            Command::Alert(cmd) => commands::alert::alert(&cli.global, cmd).await,
            Command::Silence(cmd) => commands::alert::silence(&cli.global, cmd).await,
            Command::Token(cmd) => commands::token::run(&cli.global, cmd).await,
            Command::Metrics(cmd) => commands::metrics::run(&cli.global, cmd).await,
            Command::Collect(args) => commands::collect::run(args).await,
            Command::Build(cmd) => commands::ship::build(&cli.global, cmd).await,
            Command::Deploy(args) => commands::ship::deploy(&cli.global, args).await,
            Command::Rollback(args) => commands::ship::rollback(&cli.global, args).await,
            Command::Promote(args) => commands::ship::promote(&cli.global, args).await,
            Command::Rollout(cmd) => commands::ship::rollout(&cli.global, cmd).await,
            Command::Host(cmd) => commands::ship::host(&cli.global, cmd).await,
            Command::Agent(args) => commands::ship::agent(&cli.global, args).await,
            Command::Whoami => commands::token::whoami(&cli.global).await,
            Command::Version => {
                println!("gantry {}", env!("CARGO_PKG_VERSION"));
                Ok(())
            }
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {}", output::error_chain(&e));
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser as _;

    /// The words of a command as a shell would split it (double quotes group, `\"` is a
    /// quote).
    fn words(command: &str) -> Vec<String> {
        let (mut out, mut word, mut quoted, mut chars) =
            (Vec::new(), String::new(), false, command.chars().peekable());
        while let Some(c) = chars.next() {
            match c {
                '\\' if chars.peek() == Some(&'"') => {
                    quoted = !quoted;
                    chars.next();
                }
                ' ' if !quoted => {
                    if !word.is_empty() {
                        out.push(std::mem::take(&mut word));
                    }
                }
                c => word.push(c),
            }
        }
        if !word.is_empty() {
            out.push(word);
        }
        out
    }

    /// Every whole `gantry …` command the dashboard's empty states and hints tell people to
    /// run parses as this CLI's command line, so the pages cannot fall behind the CLI.
    #[test]
    fn the_dashboards_suggested_commands_parse() {
        let dir =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../gantry-server/src/dashboard");
        let mut checked = 0;
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            let text = std::fs::read_to_string(&path).unwrap();
            for (at, _) in text.match_indices("code { \"gantry ") {
                let rest = &text[at + "code { \"".len()..];
                // The literal, up to its closing quote (`\"` inside it is a quote).
                let mut literal = String::new();
                let mut chars = rest.chars();
                while let Some(c) = chars.next() {
                    match c {
                        '\\' => {
                            literal.push('\\');
                            literal.extend(chars.next());
                        }
                        '"' => break,
                        c => literal.push(c),
                    }
                }
                // Only a whole command: a literal followed by `(` is completed at run time.
                let after = chars.as_str().trim_start();
                if !after.starts_with('}') {
                    continue;
                }
                let command = literal.split(" > ").next().unwrap_or_default();
                let argv = words(command);
                if let Err(e) = super::Cli::try_parse_from(&argv) {
                    panic!("{}: `{literal}` does not parse: {e}", path.display());
                }
                checked += 1;
            }
        }
        assert!(checked >= 8, "only {checked} commands found");
    }
}
