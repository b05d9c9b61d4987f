//! The Graphite side of the metrics benchmarks (`scripts/bench/graphite`, and the graphite
//! sink `scripts/bench/statsd` points Etsy's statsd at):
//!
//! - `graphite-load` sends a fixed synthetic dataset over plaintext TCP as fast as the
//!   server takes it, then waits until every point is queryable, and reports the ingest
//!   rate from the first byte sent to that moment;
//! - `graphite-render` times `/render` requests one at a time;
//! - `graphite-sink` accepts Graphite plaintext connections and appends what they send to a
//!   file.
//!
//! The dataset is a pure function of (`--series`, `--days`, `--seed`, the end time): half
//! the series are host gauges (`servers.webNNN.cpu.user`, random walks), a quarter StatsD
//! counters (`stats_counts.svcNN.epNNN.requests`, a daily cycle with Poisson noise), the
//! rest StatsD timer figures (`stats.timers.svcNN.renderN.upper_90`, log-normal), one point
//! every `--step` seconds ending at the end time. Each connection owns every
//! `--connections`-th series and sends them in time order, all of its series at each step,
//! as live traffic arrives.

use std::f64::consts::TAU;
use std::io::Write as _;
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context};
use clap::Args;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tokio::io::AsyncReadExt;

use crate::stats::Latencies;

const HOST_METRICS: [&str; 20] = [
    "cpu.user",
    "cpu.system",
    "cpu.iowait",
    "cpu.idle",
    "memory.used",
    "memory.free",
    "memory.cached",
    "load.1m",
    "load.5m",
    "load.15m",
    "disk.sda.read_bytes",
    "disk.sda.write_bytes",
    "disk.sda.util",
    "net.eth0.rx_bytes",
    "net.eth0.tx_bytes",
    "net.eth0.rx_errors",
    "tcp.established",
    "tcp.time_wait",
    "processes.running",
    "processes.blocked",
];
const TIMER_FIGURES: [&str; 5] = ["mean", "median", "upper_90", "upper_99", "lower"];

#[derive(Debug, Clone, Copy)]
enum Kind {
    /// A random walk between 0 and `max`, moving by about `step` a point.
    Gauge { max: f64, step: f64 },
    /// Events per interval: `mean` at the daily peak's midpoint, ± half of it over a day.
    Counter { mean: f64, phase: f64 },
    /// Log-normal milliseconds.
    Timer { mu: f64, sigma: f64 },
}

struct Series {
    name: String,
    kind: Kind,
}

/// The dataset's series, in a fixed order.
fn dataset(series: usize, seed: u64) -> (Vec<Series>, String, usize) {
    let mut rng = StdRng::seed_from_u64(seed);
    let hosts = (series / 2 / HOST_METRICS.len()).max(1);
    let mut out = Vec::with_capacity(series);
    'hosts: for h in 0..hosts {
        for metric in HOST_METRICS {
            if out.len() == series {
                break 'hosts;
            }
            let max = if metric.starts_with("cpu.") || metric.ends_with("util") {
                100.0
            } else {
                rng.gen_range(100.0..100_000.0)
            };
            out.push(Series {
                name: format!("servers.web{h:03}.{metric}"),
                kind: Kind::Gauge {
                    max,
                    step: max / 200.0,
                },
            });
        }
    }
    let counters = series / 4;
    for i in 0..counters {
        if out.len() == series {
            break;
        }
        out.push(Series {
            name: format!("stats_counts.svc{:02}.ep{:03}.requests", i % 25, i / 25),
            kind: Kind::Counter {
                mean: rng.gen_range(2.0..5_000.0),
                phase: rng.gen_range(0.0..TAU),
            },
        });
    }
    let mut group = 0;
    while out.len() < series {
        let mu = rng.gen_range(1.0..5.0);
        for (f, figure) in TIMER_FIGURES.iter().enumerate() {
            if out.len() == series {
                break;
            }
            out.push(Series {
                name: format!(
                    "stats.timers.svc{:02}.render{}.{figure}",
                    group % 25,
                    group / 25
                ),
                kind: Kind::Timer {
                    mu: mu + f as f64 * 0.3,
                    sigma: 0.4,
                },
            });
        }
        group += 1;
    }
    let matched = hosts.min(100);
    (
        out,
        "sumSeries(servers.web0*.cpu.user)".to_string(),
        matched,
    )
}

fn gaussian(rng: &mut StdRng) -> f64 {
    let u1: f64 = rng.gen_range(f64::EPSILON..1.0);
    let u2: f64 = rng.gen::<f64>();
    (-2.0 * u1.ln()).sqrt() * (TAU * u2).cos()
}

/// A Poisson draw: Knuth's method for small means, the normal approximation above.
fn poisson(lambda: f64, rng: &mut StdRng) -> f64 {
    if lambda < 30.0 {
        let limit = (-lambda).exp();
        let mut k = 0.0;
        let mut p: f64 = rng.gen();
        while p > limit {
            k += 1.0;
            p *= rng.gen::<f64>();
        }
        k
    } else {
        (lambda + lambda.sqrt() * gaussian(rng)).round().max(0.0)
    }
}

#[derive(Debug, Args)]
pub struct LoadArgs {
    /// Gantry's Graphite plaintext address (loopback only).
    #[arg(long)]
    addr: SocketAddr,
    /// Gantry's HTTP base URL, to see when the points are queryable.
    #[arg(long)]
    url: String,
    /// File holding a token that may read /render and /metrics.
    #[arg(long)]
    token_file: PathBuf,
    #[arg(long, default_value_t = 10_000)]
    series: usize,
    #[arg(long, default_value_t = 7.0)]
    days: f64,
    /// Seconds between points.
    #[arg(long, default_value_t = 10)]
    step: i64,
    /// TCP connections sending at once.
    #[arg(long, default_value_t = 4)]
    connections: usize,
    /// Series whose point counts are checked through /render.
    #[arg(long, default_value_t = 20)]
    sample: usize,
    /// Give up when the points written stop growing for this long after sending.
    #[arg(long, default_value_t = 120.0)]
    stall_secs: f64,
    #[arg(long, default_value_t = 42)]
    seed: u64,
}

fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// Sends the series `conn`, `conn + connections`, … for every step; returns bytes sent.
struct Plan {
    addr: SocketAddr,
    series: Arc<Vec<Series>>,
    connections: usize,
    first: i64,
    steps: i64,
    step: i64,
    seed: u64,
}

fn send_connection(plan: &Plan, conn: usize) -> anyhow::Result<u64> {
    let Plan {
        addr,
        ref series,
        connections,
        first,
        steps,
        step,
        seed,
    } = *plan;
    let stream = TcpStream::connect(addr).with_context(|| format!("cannot connect to {addr}"))?;
    stream.set_nodelay(true)?;
    let mut out = std::io::BufWriter::with_capacity(256 * 1024, stream);
    let mut rng = StdRng::seed_from_u64(seed.wrapping_mul(31).wrapping_add(conn as u64));
    let mine: Vec<&Series> = series.iter().skip(conn).step_by(connections).collect();
    let mut state: Vec<f64> = mine
        .iter()
        .map(|s| match s.kind {
            Kind::Gauge { max, .. } => max / 2.0,
            _ => 0.0,
        })
        .collect();
    let mut bytes = 0u64;
    let mut line = Vec::with_capacity(128);
    for i in 0..steps {
        let t = first + i * step;
        let day = (t % 86_400) as f64 / 86_400.0;
        for (s, value) in mine.iter().zip(state.iter_mut()) {
            line.clear();
            line.extend_from_slice(s.name.as_bytes());
            match s.kind {
                Kind::Gauge { max, step } => {
                    *value = (*value + step * gaussian(&mut rng)).clamp(0.0, max);
                    writeln!(line, " {:.2} {t}", *value)?;
                }
                Kind::Counter { mean, phase } => {
                    let lambda = mean * (1.0 + 0.5 * (TAU * day + phase).sin());
                    writeln!(line, " {} {t}", poisson(lambda, &mut rng) as u64)?;
                }
                Kind::Timer { mu, sigma } => {
                    let v = (mu + sigma * gaussian(&mut rng)).exp();
                    writeln!(line, " {v:.3} {t}")?;
                }
            }
            out.write_all(&line)?;
            bytes += line.len() as u64;
        }
    }
    out.flush()?;
    let stream = out.into_inner().map_err(|e| e.into_error())?;
    stream.shutdown(std::net::Shutdown::Write)?;
    Ok(bytes)
}

async fn read_token(path: &PathBuf) -> anyhow::Result<String> {
    let token = tokio::fs::read_to_string(path)
        .await
        .with_context(|| format!("cannot read the token file {}", path.display()))?
        .trim()
        .to_string();
    if token.is_empty() {
        bail!("the token file {} is empty", path.display());
    }
    Ok(token)
}

/// `gantry_tsdb_points_written_total` from the server's `/metrics`.
async fn points_written(client: &reqwest::Client, url: &str, token: &str) -> anyhow::Result<u64> {
    let text = client
        .get(format!("{url}/metrics"))
        .bearer_auth(token)
        .send()
        .await?
        .error_for_status()?
        .text()
        .await?;
    text.lines()
        .find_map(|l| l.strip_prefix("gantry_tsdb_points_written_total "))
        .and_then(|v| v.trim().parse::<f64>().ok())
        .map(|v| v as u64)
        .context("/metrics has no gantry_tsdb_points_written_total")
}

/// Through `/render?format=json`, the non-null values of `target` in the slots wholly inside
/// the points sent (`[first, last + step)`), and how many such slots the answer has. With
/// rollup archives the window is read from a coarser archive (whisper reads the finest one
/// covering `from`), whose slots at the edges hold only some of the points sent and may stay
/// empty under `xFilesFactor`; the slots wholly inside always get a value.
async fn render_count(
    client: &reqwest::Client,
    url: &str,
    token: &str,
    target: &str,
    first: i64,
    end: i64,
) -> anyhow::Result<(u64, u64)> {
    let body: serde_json::Value = client
        .get(format!("{url}/render"))
        .query(&[
            ("target", target),
            ("from", &(first - 1).to_string()),
            ("until", &end.to_string()),
            ("format", "json"),
        ])
        .bearer_auth(token)
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    let (mut count, mut slots) = (0, 0);
    for series in body.as_array().into_iter().flatten() {
        let points: Vec<&serde_json::Value> = series["datapoints"]
            .as_array()
            .into_iter()
            .flatten()
            .collect();
        let times: Vec<i64> = points.iter().filter_map(|p| p[1].as_i64()).collect();
        let step = match times.as_slice() {
            [a, b, ..] => b - a,
            _ => 1,
        };
        for (point, &t) in points.iter().zip(&times) {
            if t >= first && t + step <= end {
                slots += 1;
                if !point[0].is_null() {
                    count += 1;
                }
            }
        }
    }
    Ok((count, slots))
}

pub async fn load(args: LoadArgs) -> anyhow::Result<()> {
    if !args.addr.ip().is_loopback() {
        bail!("--addr must be a loopback address; the benchmark only sends to this machine");
    }
    if args.series == 0 || args.connections == 0 || args.step <= 0 || args.days <= 0.0 {
        bail!("--series, --connections, --step and --days must be positive");
    }
    let token = read_token(&args.token_file).await?;
    let client = reqwest::Client::new();
    let url = args.url.trim_end_matches('/').to_string();
    let (series, target, matched) = dataset(args.series, args.seed);
    let series = Arc::new(series);
    let steps = ((args.days * 86_400.0) as i64 / args.step).max(1);
    let last = unix_now() / args.step * args.step;
    let first = last - (steps - 1) * args.step;
    let total = steps as u64 * series.len() as u64;
    let before = points_written(&client, &url, &token).await?;
    eprintln!(
        "graphite-load: {} series × {steps} points ({total} points) over {} connections",
        series.len(),
        args.connections
    );

    let started = Instant::now();
    let plan = Arc::new(Plan {
        addr: args.addr,
        series: series.clone(),
        connections: args.connections,
        first,
        steps,
        step: args.step,
        seed: args.seed,
    });
    let senders: Vec<_> = (0..args.connections)
        .map(|conn| {
            let plan = plan.clone();
            std::thread::spawn(move || send_connection(&plan, conn))
        })
        .collect();
    let mut bytes = 0;
    for sender in senders {
        bytes += tokio::task::spawn_blocking(move || sender.join())
            .await?
            .map_err(|_| anyhow::anyhow!("a sender thread panicked"))??;
    }
    let sent_secs = started.elapsed().as_secs_f64();
    eprintln!(
        "graphite-load: sent {bytes} bytes in {sent_secs:.1} s; waiting until every point is written"
    );

    // Written: the store's counter reaches every point sent; then queryable: the sample's
    // /render counts are complete.
    let mut last_written = 0;
    let mut last_growth = Instant::now();
    let written = loop {
        let written = points_written(&client, &url, &token)
            .await?
            .saturating_sub(before);
        if written >= total {
            break written;
        }
        if written != last_written {
            last_written = written;
            last_growth = Instant::now();
        } else if last_growth.elapsed().as_secs_f64() > args.stall_secs {
            eprintln!(
                "graphite-load: the store stopped at {written} of {total} points written for {} s",
                args.stall_secs
            );
            break written;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let sample: Vec<&Series> = series
        .iter()
        .step_by((series.len() / args.sample.max(1)).max(1))
        .take(args.sample.max(1))
        .collect();
    let until = last + args.step;
    let (sampled, expected) = loop {
        let (mut sampled, mut expected) = (0, 0);
        for s in &sample {
            let (count, slots) = render_count(&client, &url, &token, &s.name, first, until).await?;
            sampled += count;
            // A series the answer does not have yet is not queryable yet.
            expected += slots.max(1);
        }
        if sampled >= expected || last_growth.elapsed().as_secs_f64() > args.stall_secs {
            break (sampled, expected);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let ingest_secs = started.elapsed().as_secs_f64();
    let queryable = written.min(total);
    if sampled < expected {
        eprintln!("graphite-load: the sample holds {sampled} of {expected} points");
    }
    let pps = queryable as f64 / ingest_secs;
    eprintln!(
        "graphite-load: {queryable} points written and queryable {ingest_secs:.1} s after the first send: {pps:.0} points/s"
    );
    println!(
        "points={total} series={} steps={steps} bytes_sent={bytes} send_seconds={sent_secs:.3} \
         ingest_seconds={ingest_secs:.3} points_written={written} sample_points={sampled} \
         sample_expected={expected} ingest_pps={pps:.0} render_target={target} render_series={matched}",
        series.len()
    );
    Ok(())
}

#[derive(Debug, Args)]
pub struct RenderArgs {
    /// Gantry's HTTP base URL.
    #[arg(long)]
    url: String,
    #[arg(long)]
    token_file: PathBuf,
    /// The render target, e.g. `sumSeries(servers.web0*.cpu.user)`.
    #[arg(long)]
    target: String,
    /// Graphite `from`, e.g. `-6h`.
    #[arg(long)]
    from: String,
    #[arg(long, default_value_t = 200)]
    requests: usize,
    #[arg(long, default_value_t = 20)]
    warmup: usize,
    /// Prefix of the result keys.
    #[arg(long, default_value = "render")]
    label: String,
}

pub async fn render(args: RenderArgs) -> anyhow::Result<()> {
    let token = read_token(&args.token_file).await?;
    let client = reqwest::Client::new();
    let url = format!("{}/render", args.url.trim_end_matches('/'));
    let mut samples = Vec::with_capacity(args.requests);
    let mut points = 0;
    for i in 0..args.warmup + args.requests {
        let started = Instant::now();
        let response = client
            .get(&url)
            .query(&[
                ("target", args.target.as_str()),
                ("from", args.from.as_str()),
                ("until", "now"),
                ("format", "json"),
            ])
            .bearer_auth(&token)
            .send()
            .await?;
        let status = response.status();
        let body = response.bytes().await?;
        let took = started.elapsed();
        if !status.is_success() {
            bail!(
                "/render answered {status}: {}",
                String::from_utf8_lossy(&body[..body.len().min(300)])
            );
        }
        if i == 0 {
            let json: serde_json::Value = serde_json::from_slice(&body)?;
            points = json
                .as_array()
                .and_then(|a| a.first())
                .and_then(|s| s["datapoints"].as_array())
                .map_or(0, |d| d.iter().filter(|p| !p[0].is_null()).count());
        }
        if i >= args.warmup {
            samples.push(took);
        }
    }
    let latencies = Latencies::new(samples);
    let label = &args.label;
    eprintln!(
        "graphite-render: {} from {}: {} requests, p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms ({points} points in the answer)",
        args.target,
        args.from,
        latencies.len(),
        latencies.percentile_ms(50.0),
        latencies.percentile_ms(99.0),
        latencies.max().as_secs_f64() * 1000.0
    );
    println!(
        "{label}_p50_ms={:.2} {label}_p99_ms={:.2} {label}_points={points}",
        latencies.percentile_ms(50.0),
        latencies.percentile_ms(99.0)
    );
    Ok(())
}

#[derive(Debug, Args)]
pub struct SinkArgs {
    /// Where to write the port it listens on (127.0.0.1).
    #[arg(long)]
    port_file: PathBuf,
    /// Where to append everything received.
    #[arg(long)]
    out: PathBuf,
}

/// Accepts Graphite plaintext connections on 127.0.0.1 until killed, appending each
/// connection's bytes (whole, once it closes) to `--out`.
pub async fn sink(args: SinkArgs) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let port = listener.local_addr()?.port();
    let file = Arc::new(std::sync::Mutex::new(
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&args.out)
            .with_context(|| format!("cannot open {}", args.out.display()))?,
    ));
    let partial = args.port_file.with_extension("tmp");
    std::fs::write(&partial, format!("{port}\n"))?;
    std::fs::rename(&partial, &args.port_file)?;
    loop {
        let (mut stream, _) = listener.accept().await?;
        let file = file.clone();
        tokio::spawn(async move {
            let mut data = Vec::new();
            if stream.read_to_end(&mut data).await.is_ok() {
                if let Ok(mut f) = file.lock() {
                    let _ = f.write_all(&data);
                    let _ = f.flush();
                }
            }
        });
    }
}
