//! `gantry-bench http`: measures a running server as its clients see it, over real
//! connections on the loaded data.
//!
//! Reads come first, so they see exactly the loaded data: sequential
//! `GET /api/v1/changes?service=…&since=7d` requests, then sequential
//! `GET /events/get_data?from=-7d&until=now&tags=…` requests, each after a warm-up and each
//! for a random service. Then `--concurrency` clients, each with its own connection, record
//! changes with `POST /api/v1/changes` for `--post-seconds`. A latency is the time from
//! sending a request to having read the whole answer.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use rand::rngs::StdRng;
use rand::SeedableRng;
use reqwest::StatusCode;

use crate::stats::Latencies;
use crate::workload::{self, Subject};

/// How many failed requests are described; the rest are only counted.
const ERRORS_SHOWN: usize = 5;
/// Longest wait for one answer. Generous: a slow answer is a figure, not an error.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);

#[derive(Debug, clap::Args)]
pub struct HttpArgs {
    /// The server's URL.
    #[arg(long, env = "GANTRY_URL", default_value = "http://127.0.0.1:7070")]
    url: String,
    /// File holding a token with read and write scopes (e.g. the data directory's admin.token).
    #[arg(long, env = "GANTRY_TOKEN_FILE")]
    token_file: PathBuf,
    /// Clients recording changes at once, each with its own connection.
    #[arg(long, env = "GANTRY_BENCH_CONCURRENCY", default_value_t = 16)]
    concurrency: usize,
    /// How long the clients record changes, in seconds (0 skips recording).
    #[arg(long, env = "GANTRY_BENCH_POST_SECONDS", default_value_t = 10)]
    post_seconds: u64,
    /// Measured requests per read endpoint, sent one after another (0 skips reads).
    #[arg(long, env = "GANTRY_BENCH_GET_REQUESTS", default_value_t = 2_000)]
    get_requests: usize,
    /// Unmeasured requests per read endpoint before measuring.
    #[arg(long, env = "GANTRY_BENCH_WARMUP_REQUESTS", default_value_t = 200)]
    warmup_requests: usize,
    /// How many services the loaded data has (reads and records pick among them).
    #[arg(long, env = "GANTRY_BENCH_SERVICES", default_value_t = 200)]
    services: u32,
    /// Seed of the random choices; the same seed sends the same requests.
    #[arg(long, env = "GANTRY_BENCH_SEED", default_value_t = 1)]
    seed: u64,
}

/// Failed requests: how many, and what the first few were.
#[derive(Debug, Default)]
struct Failures {
    count: u64,
    examples: Vec<String>,
}

impl Failures {
    fn add(&mut self, what: impl FnOnce() -> String) {
        self.count += 1;
        if self.examples.len() < ERRORS_SHOWN {
            self.examples.push(what());
        }
    }

    fn merge(&mut self, other: Failures) {
        self.count += other.count;
        let room = ERRORS_SHOWN.saturating_sub(self.examples.len());
        self.examples.extend(other.examples.into_iter().take(room));
    }
}

/// What one read endpoint measured.
struct ReadResult {
    latencies: Latencies,
    /// Items in all measured answers, to show the answers were not empty.
    items: u64,
    failures: Failures,
}

/// What the recording clients measured.
struct WriteResult {
    recorded: u64,
    elapsed: Duration,
    latencies: Latencies,
    failures: Failures,
}

impl WriteResult {
    fn per_second(&self) -> f64 {
        self.recorded as f64 / self.elapsed.as_secs_f64().max(f64::EPSILON)
    }
}

pub async fn run(args: HttpArgs) -> anyhow::Result<()> {
    if args.services == 0 || args.concurrency == 0 {
        bail!("--services and --concurrency must be at least 1");
    }
    let token = std::fs::read_to_string(&args.token_file)
        .with_context(|| format!("cannot read the token file {}", args.token_file.display()))?
        .trim()
        .to_string();
    if token.is_empty() {
        bail!("the token file {} is empty", args.token_file.display());
    }
    let base = args.url.trim_end_matches('/').to_string();
    let mut rng = StdRng::seed_from_u64(args.seed);

    let list = measure_reads(
        "GET /api/v1/changes?service=…&since=7d",
        &args,
        &token,
        &mut rng,
        |service| format!("{base}/api/v1/changes?service={service}&since=7d"),
        |body| body.get("items").and_then(|i| i.as_array()).map(Vec::len),
    )
    .await?;
    let events = measure_reads(
        "GET /events/get_data?from=-7d&until=now&tags=…",
        &args,
        &token,
        &mut rng,
        |service| format!("{base}/events/get_data?from=-7d&until=now&tags={service}"),
        |body| body.as_array().map(Vec::len),
    )
    .await?;
    let writes = measure_writes(&args, &base, &token).await?;

    println!(
        "post_rps={:.0} post_p50_ms={:.2} post_p99_ms={:.2} post_errors={} \
         list_p50_ms={:.2} list_p99_ms={:.2} list_errors={} \
         events_p50_ms={:.2} events_p99_ms={:.2} events_errors={}",
        writes.per_second(),
        writes.latencies.percentile_ms(50.0),
        writes.latencies.percentile_ms(99.0),
        writes.failures.count,
        list.latencies.percentile_ms(50.0),
        list.latencies.percentile_ms(99.0),
        list.failures.count,
        events.latencies.percentile_ms(50.0),
        events.latencies.percentile_ms(99.0),
        events.failures.count,
    );

    let mut failures = Failures::default();
    for (what, f) in [
        ("list", list.failures),
        ("events", events.failures),
        ("record", writes.failures),
    ] {
        if f.count > 0 {
            eprintln!("{what}: {} failed requests, e.g.:", f.count);
            for example in &f.examples {
                eprintln!("  {example}");
            }
        }
        failures.merge(f);
    }
    if failures.count > 0 {
        bail!(
            "{} requests failed; the figures above are not trustworthy",
            failures.count
        );
    }
    if args.get_requests > 0 && (list.items == 0 || events.items == 0) {
        bail!("the read requests found no changes: was the data loaded into the database this server uses?");
    }
    Ok(())
}

fn client() -> anyhow::Result<reqwest::Client> {
    reqwest::Client::builder()
        .timeout(REQUEST_TIMEOUT)
        .tcp_nodelay(true)
        .pool_max_idle_per_host(1)
        .build()
        .context("cannot build an HTTP client")
}

/// One request, timed until its whole answer is read.
async fn timed(
    request: reqwest::RequestBuilder,
) -> Result<(Duration, StatusCode, Vec<u8>), String> {
    let start = Instant::now();
    let response = request.send().await.map_err(|e| format!("{e:#}"))?;
    let status = response.status();
    let body = response.bytes().await.map_err(|e| format!("{e:#}"))?;
    Ok((start.elapsed(), status, body.to_vec()))
}

fn describe(status: StatusCode, body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let text: String = text.chars().take(200).collect();
    format!("{status}: {text}")
}

/// Warms up, then measures `--get-requests` sequential reads of one endpoint, each for a
/// random service. `count_items` tells how many items an answer holds.
async fn measure_reads(
    name: &str,
    args: &HttpArgs,
    token: &str,
    rng: &mut StdRng,
    url_for: impl Fn(&str) -> String,
    count_items: impl Fn(&serde_json::Value) -> Option<usize>,
) -> anyhow::Result<ReadResult> {
    let client = client()?;
    let mut failures = Failures::default();
    let mut samples = Vec::with_capacity(args.get_requests);
    let mut items: u64 = 0;
    if args.get_requests == 0 {
        return Ok(ReadResult {
            latencies: Latencies::new(samples),
            items,
            failures,
        });
    }
    let total = args.warmup_requests + args.get_requests;
    for i in 0..total {
        let url = url_for(&workload::random_service(rng, args.services));
        match timed(client.get(&url).bearer_auth(token)).await {
            Ok((elapsed, StatusCode::OK, body)) => {
                if i < args.warmup_requests {
                    continue;
                }
                samples.push(elapsed);
                match serde_json::from_slice(&body)
                    .ok()
                    .as_ref()
                    .and_then(&count_items)
                {
                    Some(n) => items += n as u64,
                    None => failures.add(|| format!("GET {url}: not the expected JSON")),
                }
            }
            Ok((_, status, body)) => {
                failures.add(|| format!("GET {url}: {}", describe(status, &body)))
            }
            Err(e) => failures.add(|| format!("GET {url}: {e}")),
        }
    }
    let latencies = Latencies::new(samples);
    eprintln!(
        "{name}: {} requests (after {} warm-up), p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms, {:.1} items per answer, {} errors",
        latencies.len(),
        args.warmup_requests,
        latencies.percentile_ms(50.0),
        latencies.percentile_ms(99.0),
        latencies.max().as_secs_f64() * 1000.0,
        items as f64 / latencies.len().max(1) as f64,
        failures.count
    );
    Ok(ReadResult {
        latencies,
        items,
        failures,
    })
}

/// `--concurrency` clients record changes until `--post-seconds` have passed; only `201
/// Created` answers count.
async fn measure_writes(args: &HttpArgs, base: &str, token: &str) -> anyhow::Result<WriteResult> {
    let url = format!("{base}/api/v1/changes");
    let started = Instant::now();
    let deadline = started + Duration::from_secs(args.post_seconds);
    let mut clients = Vec::with_capacity(args.concurrency);
    for index in 0..args.concurrency {
        let client = client()?;
        let url = url.clone();
        let token = token.to_string();
        let services = args.services;
        let mut rng = StdRng::seed_from_u64(args.seed.wrapping_add(1 + index as u64));
        clients.push(tokio::spawn(async move {
            let mut samples = Vec::new();
            let mut failures = Failures::default();
            while Instant::now() < deadline {
                let body = Subject::random(&mut rng, services).to_request_body();
                match timed(client.post(&url).bearer_auth(&token).json(&body)).await {
                    Ok((elapsed, StatusCode::CREATED, _)) => samples.push(elapsed),
                    Ok((_, status, body)) => {
                        failures.add(|| format!("POST {url}: {}", describe(status, &body)))
                    }
                    Err(e) => failures.add(|| format!("POST {url}: {e}")),
                }
            }
            (samples, failures)
        }));
    }
    let mut samples = Vec::new();
    let mut failures = Failures::default();
    for client in clients {
        let (mine, theirs) = client.await.context("a recording client panicked")?;
        samples.extend(mine);
        failures.merge(theirs);
    }
    let elapsed = started.elapsed();
    let result = WriteResult {
        recorded: samples.len() as u64,
        elapsed,
        latencies: Latencies::new(samples),
        failures,
    };
    if args.post_seconds > 0 {
        eprintln!(
            "POST /api/v1/changes: {} clients for {:.1} s, {} recorded, {:.0} records/s, p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms, {} errors",
            args.concurrency,
            elapsed.as_secs_f64(),
            result.recorded,
            result.per_second(),
            result.latencies.percentile_ms(50.0),
            result.latencies.percentile_ms(99.0),
            result.latencies.max().as_secs_f64() * 1000.0,
            result.failures.count
        );
    }
    Ok(result)
}
