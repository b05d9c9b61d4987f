//! `gantry-bench flag-eval` and `gantry-bench flag-propagation`, behind `scripts/bench/flags`.
//!
//! `flag-eval` times in-process evaluation through the Rust SDK (`gantry-flags-sdk`, built
//! offline from a bootstrap document): for each case, 21 batches of evaluations, the median
//! batch's time per evaluation. `flag-propagation` starts many SDK clients against a running
//! server, each following the flag stream on its own connection, then flips a flag through
//! the REST API again and again and measures, per flip, the time from sending the flip until
//! the last client sees it.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use gantry_flags_sdk::{Client, Config, Context};

#[derive(Debug, clap::Args)]
pub struct EvalArgs {
    /// A client document (what `/api/client/features` answers) holding the flags
    /// `bench-onoff`, `bench-rollout` and `bench-variants`.
    #[arg(long)]
    document: PathBuf,
    /// Evaluations per batch.
    #[arg(long, default_value_t = 200_000)]
    batch: u32,
}

/// The context every case is evaluated for (it turns `bench-rollout` on).
pub fn bench_context() -> Context {
    Context::default()
        .with_user_id("user-42")
        .with_session_id("session-7")
        .with_property("plan", "pro")
        .with_property("country", "no")
}

pub async fn eval(args: EvalArgs) -> anyhow::Result<()> {
    let text = std::fs::read_to_string(&args.document)
        .with_context(|| format!("cannot read {}", args.document.display()))?;
    let document = gantry_flags_sdk::load_document(&text)?;
    let client = Client::start(Config::offline("gantry-bench").with_bootstrap(document)).await;
    if !client.wait_until_ready(Duration::from_secs(5)).await {
        bail!("the SDK did not load the document");
    }
    let ctx = bench_context();
    let mut line = Vec::new();
    for (label, flag) in [
        ("a", "bench-onoff"),
        ("b", "bench-rollout"),
        ("c", "bench-variants"),
    ] {
        if client.evaluate(flag, &ctx).is_none() {
            bail!("the document has no flag {flag}");
        }
        let mut per_eval = Vec::with_capacity(21);
        for _ in 0..21 {
            let started = Instant::now();
            let mut on = 0u32;
            for _ in 0..args.batch {
                if label == "c" {
                    on += u32::from(client.variant(std::hint::black_box(flag), &ctx).enabled);
                } else {
                    on += u32::from(client.is_enabled(std::hint::black_box(flag), &ctx));
                }
            }
            std::hint::black_box(on);
            per_eval.push(started.elapsed().as_nanos() as f64 / f64::from(args.batch));
        }
        per_eval.sort_by(f64::total_cmp);
        let median = per_eval[per_eval.len() / 2];
        eprintln!(
            "flag-eval: case ({label}) {flag}: median {median:.1} ns per evaluation (min {:.1}, max {:.1})",
            per_eval[0],
            per_eval[per_eval.len() - 1]
        );
        line.push(format!("eval_{label}_ns={median:.1}"));
    }
    client.shutdown().await;
    println!("{}", line.join(" "));
    Ok(())
}

#[derive(Debug, clap::Args)]
pub struct PropagationArgs {
    /// The server's URL.
    #[arg(long)]
    url: String,
    /// File with a token that may flip the flag (`flags` covering it).
    #[arg(long)]
    admin_token_file: PathBuf,
    /// File with a `client:` token of the flag's service and environment.
    #[arg(long)]
    client_token_file: PathBuf,
    #[arg(long)]
    service: String,
    #[arg(long)]
    env: String,
    #[arg(long)]
    flag: String,
    /// SDK clients, each with its own stream connection.
    #[arg(long, default_value_t = 100)]
    clients: usize,
    #[arg(long, default_value_t = 20)]
    flips: usize,
}

pub async fn propagation(args: PropagationArgs) -> anyhow::Result<()> {
    let read = |path: &PathBuf| -> anyhow::Result<String> {
        Ok(std::fs::read_to_string(path)
            .with_context(|| format!("cannot read {}", path.display()))?
            .trim()
            .to_string())
    };
    let admin = read(&args.admin_token_file)?;
    let token = read(&args.client_token_file)?;
    let mut clients = Vec::with_capacity(args.clients);
    for i in 0..args.clients {
        let config = Config::new(&args.url, &token, "gantry-bench")
            .with_instance_id(format!("bench-{i}"))
            .with_metrics(false);
        clients.push(Client::start(config).await);
    }
    for client in &clients {
        if !client.wait_until_ready(Duration::from_secs(30)).await {
            bail!("an SDK client did not load the flags within 30 s");
        }
    }
    // Let every stream connect before the first flip.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let http = reqwest::Client::new();
    let ctx = Context::default();
    let mut state = clients[0].is_enabled(&args.flag, &ctx);
    let mut all_seen = Vec::with_capacity(args.flips);
    for flip in 0..args.flips {
        let action = if state { "disable" } else { "enable" };
        let url = format!(
            "{}/api/v1/flags/{}/{}/environments/{}/{action}",
            args.url, args.service, args.flag, args.env
        );
        let started = Instant::now();
        let response = http.post(&url).bearer_auth(&admin).send().await?;
        if !response.status().is_success() {
            bail!("flip {flip}: {url} answered {}", response.status());
        }
        state = !state;
        loop {
            if clients
                .iter()
                .all(|c| c.is_enabled(&args.flag, &ctx) == state)
            {
                break;
            }
            if started.elapsed() > Duration::from_secs(30) {
                bail!("flip {flip}: not every client saw it within 30 s");
            }
            tokio::time::sleep(Duration::from_micros(200)).await;
        }
        let elapsed = started.elapsed().as_secs_f64() * 1000.0;
        eprintln!(
            "flag-propagation: flip {flip} ({action}) reached all {} clients in {elapsed:.1} ms",
            clients.len()
        );
        all_seen.push(elapsed);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for client in &clients {
        client.shutdown().await;
    }
    all_seen.sort_by(f64::total_cmp);
    let p99 = all_seen[((all_seen.len() as f64 * 0.99).ceil() as usize).saturating_sub(1)];
    let p50 = all_seen[all_seen.len() / 2];
    println!("propagate_p50_ms={p50:.1} propagate_p99_ms={p99:.1}");
    Ok(())
}
