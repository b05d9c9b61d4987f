//! `gantry collect`: send a directory of `key=value` drop files as metrics, every interval.

use std::net::{SocketAddr, ToSocketAddrs};
use std::path::PathBuf;

use anyhow::Context;
use clap::Args;
use gantry_collect::{Collector, Destination};

#[derive(Debug, Args)]
pub struct CollectArgs {
    /// Directory of drop files: each holds `key=value` lines (`#` comments allowed).
    #[arg(long)]
    dir: PathBuf,
    /// Names are PREFIX.key (e.g. the host name: web042).
    #[arg(long)]
    prefix: String,
    /// How often to read and send, e.g. 60s or 5m.
    #[arg(long, default_value = "60s")]
    interval: String,
    /// Send StatsD gauges to this address [default: 127.0.0.1:8125]
    #[arg(long, conflicts_with = "graphite")]
    statsd: Option<String>,
    /// Send Graphite plaintext points to this address instead.
    #[arg(long)]
    graphite: Option<String>,
    /// Collect once and exit (for cron, or to try a drop file).
    #[arg(long)]
    once: bool,
}

fn resolve(addr: &str, flag: &str) -> anyhow::Result<SocketAddr> {
    addr.to_socket_addrs()
        .with_context(|| format!("{flag} '{addr}' is not a host:port"))?
        .next()
        .with_context(|| format!("{flag} '{addr}' resolves to no address"))
}

pub async fn run(args: CollectArgs) -> anyhow::Result<()> {
    let interval = gantry_core::time::parse_duration("--interval", &args.interval)?;
    let destination = match (&args.statsd, &args.graphite) {
        (_, Some(graphite)) => Destination::Graphite(resolve(graphite, "--graphite")?),
        (Some(statsd), None) => Destination::Statsd(resolve(statsd, "--statsd")?),
        (None, None) => Destination::Statsd(resolve("127.0.0.1:8125", "--statsd")?),
    };
    let mut collector = Collector::new(&args.dir, &args.prefix, destination);
    tokio::task::spawn_blocking(move || -> anyhow::Result<()> {
        loop {
            match collector.collect_once() {
                Ok(round) => {
                    for bad in &round.newly_bad {
                        eprintln!(
                            "{}:{}: skipped '{}': {}",
                            bad.file.display(),
                            bad.line_number,
                            bad.line,
                            bad.reason
                        );
                    }
                    tracing::debug!(files = round.files, sent = round.sent, "collected");
                }
                // One failed round (a destination restarting) is not the end: say so, go on.
                Err(e) if !args.once => eprintln!("collect: {e}"),
                Err(e) => return Err(e.into()),
            }
            if args.once {
                return Ok(());
            }
            std::thread::sleep(interval);
        }
    })
    .await?
}
