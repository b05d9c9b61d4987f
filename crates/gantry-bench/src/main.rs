//! `gantry-bench`: the helper behind `scripts/bench/changes`, the change log's end-to-end
//! benchmark. `load` fills a store with synthetic history directly (no HTTP, so loading a
//! million changes takes a minute, not an hour); `http` drives a running server the way
//! clients would and prints what it measured. The metrics benchmarks (`scripts/bench/statsd`,
//! `scripts/bench/graphite`) use `statsd-load`, `graphite-load`, `graphite-render` and
//! `graphite-sink`; the deploy benchmark (`scripts/bench/deploy`) runs many host agents in
//! one process with `agents`; the flags benchmark (`scripts/bench/flags`) uses `flag-eval`
//! and `flag-propagation`; the migrations benchmark (`scripts/bench/migrate`) sends its
//! fixed-rate SQL traffic with `sql-load`; the detection benchmark (`scripts/bench/detect`)
//! runs entirely in `detect`, offline; the dashboard benchmark (`scripts/bench/dashboard`)
//! fills a store with a 1,000-host rollout with `dashboard-load`.
//!
//! Invariant: results go to stdout as one line of `key=value` pairs, for the script to
//! read; everything meant for people (progress, summaries, errors) goes to stderr.

mod agents;
mod dashboard;
mod detect;
mod flags;
mod graphite;
mod http;
mod load;
mod loop_bench;
mod sql_load;
mod stats;
mod statsd_load;
mod workload;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Loads benchmark data into a Gantry store and measures a running Gantry server.
#[derive(Debug, Parser)]
#[command(name = "gantry-bench", version, max_term_width = 100)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Load synthetic changes straight into a store (SQLite or PostgreSQL), as history.
    Load(load::LoadArgs),
    /// Measure a running server: list and Graphite-events latency, then record throughput.
    Http(http::HttpArgs),
    /// Send paced StatsD traffic over loopback UDP (scripts/bench/statsd).
    StatsdLoad(statsd_load::StatsdLoadArgs),
    /// Send a synthetic Graphite dataset over plaintext TCP and wait until it is queryable.
    GraphiteLoad(graphite::LoadArgs),
    /// Time one /render target, one request at a time.
    GraphiteRender(graphite::RenderArgs),
    /// Collect Graphite plaintext on 127.0.0.1 into a file, until killed.
    GraphiteSink(graphite::SinkArgs),
    /// Time in-process flag evaluation through the Rust SDK (scripts/bench/flags).
    FlagEval(flags::EvalArgs),
    /// Measure how fast a flip reaches many SDK clients following the stream.
    FlagPropagation(flags::PropagationArgs),
    /// Run many host agents in this one process, each with its own token, root directory
    /// and HTTP connections, until SIGTERM (scripts/bench/deploy).
    Agents(agents::AgentsArgs),
    /// Run real agents with StatsD traffic that follows each host's build through good and
    /// bad deploys against a running server, and measure detection and rollback
    /// (scripts/bench/loop).
    Loop(loop_bench::LoopArgs),
    /// Send fixed-rate SQL reads, updates and inserts to one table while a migration runs,
    /// timing each query from its scheduled send (scripts/bench/migrate).
    SqlLoad(sql_load::SqlLoadArgs),
    /// Fill an empty store with a 1,000-host rollout half-way through, for the dashboard
    /// benchmark (scripts/bench/dashboard).
    DashboardLoad(dashboard::DashboardLoadArgs),
    /// Run the seeded detection corpus through the detector and two baselines, offline
    /// (scripts/bench/detect): `--train` tunes the baselines, `--report` measures.
    Detect(detect::DetectArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // The detection benchmark is CPU work on its own threads: no runtime.
    let cli = match cli.command {
        Command::Detect(args) => {
            return match detect::run(args) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("gantry-bench: {e:#}");
                    ExitCode::FAILURE
                }
            }
        }
        command => Cli { command },
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("gantry-bench: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        match cli.command {
            Command::Load(args) => load::run(args).await,
            Command::Http(args) => http::run(args).await,
            Command::StatsdLoad(args) => statsd_load::run(args).await,
            Command::GraphiteLoad(args) => graphite::load(args).await,
            Command::GraphiteRender(args) => graphite::render(args).await,
            Command::GraphiteSink(args) => graphite::sink(args).await,
            Command::Agents(args) => agents::run(args).await,
            Command::Loop(args) => loop_bench::run(args).await,
            Command::FlagEval(args) => flags::eval(args).await,
            Command::FlagPropagation(args) => flags::propagation(args).await,
            Command::SqlLoad(args) => sql_load::run(args).await,
            Command::DashboardLoad(args) => dashboard::run(args).await,
            Command::Detect(_) => unreachable!("run before the runtime starts"),
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("gantry-bench: {e:#}");
            ExitCode::FAILURE
        }
    }
}
