//! `agents`: many host agents in one process, for `scripts/bench/deploy`. A thousand agent
//! processes do not fit one benchmark machine, so each host here is a task running the real
//! agent (`gantry_agent::run`) with its own `AgentConfig`: its own token (bound to its host
//! by the server), its own root directory, and its own HTTP client, hence its own
//! connections to the server, as separate machines would have.
//!
//! Hosts come from `--tokens-dir`: one file per host named `<host>.token`, holding the token
//! `gantry host enroll` (or `POST /api/v1/hosts`) printed. Host `H` keeps its services under
//! `<roots-dir>/H`. Starts are spread over `--stagger-ms`, so the first long polls do not all
//! arrive in the same millisecond; after that each agent keeps its own rhythm.
//!
//! Output (stdout, one line, once every agent has been started): `agents ready N`. The
//! agents run until SIGTERM or ctrl-c; an agent that stops by itself (its token refused) is
//! reported on stderr, and the process fails if every agent stopped that way. The agents'
//! warnings go to stderr too (`GANTRY_BENCH_LOG` filters them; default `warn`).

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context};
use clap::Args;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

#[derive(Debug, Args)]
pub struct AgentsArgs {
    /// The server's base URL.
    #[arg(long)]
    url: String,
    /// One file per host, `<host>.token`, holding the host's agent token.
    #[arg(long)]
    tokens_dir: PathBuf,
    /// Each host's root directory is `<roots-dir>/<host>` (created if missing).
    #[arg(long)]
    roots_dir: PathBuf,
    /// The hosts' environment (their enrollment decides; shown in messages).
    #[arg(long)]
    env: String,
    /// Roles every agent reports, e.g. web,worker.
    #[arg(long, value_delimiter = ',')]
    roles: Vec<String>,
    /// Spread the agents' first polls over this many milliseconds.
    #[arg(long, default_value_t = 2_000)]
    stagger_ms: u64,
    /// Default timeout of hooks that set none, in seconds.
    #[arg(long, default_value_t = 300)]
    hook_timeout_secs: u64,
}

/// One host to run: its name, token and root.
struct HostAgent {
    name: String,
    token: String,
    root: PathBuf,
}

fn read_hosts(tokens_dir: &Path, roots_dir: &Path) -> anyhow::Result<Vec<HostAgent>> {
    Ok(read_tokens(tokens_dir)?
        .into_iter()
        .map(|(name, token)| HostAgent {
            root: roots_dir.join(&name),
            name,
            token,
        })
        .collect())
}

/// Every `<host>.token` file of a directory as (host, token), by host name.
pub fn read_tokens(tokens_dir: &Path) -> anyhow::Result<Vec<(String, String)>> {
    let entries = std::fs::read_dir(tokens_dir)
        .with_context(|| format!("cannot read --tokens-dir {}", tokens_dir.display()))?;
    let mut hosts = Vec::new();
    for entry in entries {
        let path = entry
            .with_context(|| format!("cannot read --tokens-dir {}", tokens_dir.display()))?
            .path();
        let Some(name) = path
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(|n| n.strip_suffix(".token"))
            .filter(|n| !n.is_empty())
        else {
            continue;
        };
        let token = std::fs::read_to_string(&path)
            .with_context(|| format!("cannot read the token file {}", path.display()))?
            .trim()
            .to_string();
        if token.is_empty() {
            bail!("the token file {} is empty", path.display());
        }
        hosts.push((name.to_string(), token));
    }
    hosts.sort();
    if hosts.is_empty() {
        bail!("no <host>.token files in {}", tokens_dir.display());
    }
    Ok(hosts)
}

/// Cancels `shutdown` on SIGTERM or ctrl-c.
fn cancel_on_signals(shutdown: &CancellationToken) -> anyhow::Result<()> {
    let on_ctrl_c = shutdown.clone();
    tokio::spawn(async move {
        let _ = tokio::signal::ctrl_c().await;
        on_ctrl_c.cancel();
    });
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .context("cannot listen for SIGTERM")?;
    let on_term = shutdown.clone();
    tokio::spawn(async move {
        term.recv().await;
        on_term.cancel();
    });
    Ok(())
}

pub async fn run(args: AgentsArgs) -> anyhow::Result<()> {
    // The agents' own warnings (failed polls, reports, downloads) go to stderr.
    let filter = tracing_subscriber::EnvFilter::try_from_env("GANTRY_BENCH_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
    let hosts = read_hosts(&args.tokens_dir, &args.roots_dir)?;
    if hosts.is_empty() {
        bail!(
            "no <host>.token files in --tokens-dir {}",
            args.tokens_dir.display()
        );
    }
    std::fs::create_dir_all(&args.roots_dir)
        .with_context(|| format!("cannot create --roots-dir {}", args.roots_dir.display()))?;
    let shutdown = CancellationToken::new();
    cancel_on_signals(&shutdown)?;

    let total = hosts.len();
    let gap = Duration::from_millis(args.stagger_ms) / total as u32;
    let mut agents = JoinSet::new();
    for (i, host) in hosts.into_iter().enumerate() {
        if shutdown.is_cancelled() {
            break;
        }
        if i > 0 && !gap.is_zero() {
            tokio::time::sleep(gap).await;
        }
        let mut config = gantry_agent::AgentConfig::new(&args.url, &host.token, &host.root);
        config.name = Some(host.name.clone());
        config.roles = args.roles.clone();
        config.hook_timeout = Duration::from_secs(args.hook_timeout_secs);
        let shutdown = shutdown.clone();
        agents.spawn(async move { (host.name, gantry_agent::run(config, shutdown).await) });
    }
    if shutdown.is_cancelled() {
        bail!("stopped while starting the agents");
    }
    eprintln!(
        "gantry-bench agents: {total} agents of environment {} polling {}",
        args.env, args.url
    );
    println!("agents ready {total}");

    let mut failed = 0;
    while let Some(joined) = agents.join_next().await {
        match joined {
            Ok((_, Ok(()))) => {}
            Ok((name, Err(e))) => {
                failed += 1;
                eprintln!("gantry-bench agents: agent {name} stopped: {e}");
            }
            Err(e) => {
                failed += 1;
                eprintln!("gantry-bench agents: an agent task ended abnormally: {e}");
            }
        }
    }
    if failed == total {
        bail!("every agent stopped ({failed} of {total})");
    }
    if failed > 0 {
        eprintln!("gantry-bench agents: {failed} of {total} agents had stopped before shutdown");
    }
    Ok(())
}
