//! `loop`: the whole detection loop against a running server, for `scripts/bench/loop`.
//!
//! Every host is the real agent code (`gantry_agent::run`) in this process, as in `agents`:
//! its own token, root directory and HTTP client. Each host also sends StatsD traffic: the
//! counter `<service>.<host>.requests` at the rate the file `RATE` holds in the release its
//! `current` link points at, read again every tick, so the metric follows every switch and
//! rollback the agent really makes. Before the traffic starts, 30 minutes of history at the
//! good rate (and the same windows a day and a week back) go in over Graphite plaintext.
//!
//! Then: `--initial` to every host at once (unmeasured: what the first rollback returns to),
//! each `--good` build in `--waves` with `--bake`, and the `--bad` build the same way.
//! Measured on the bad deploy:
//! - `detect_s`: the regression verdict's time minus the first bad host's `switched_at`;
//! - `rollback_s`: from the verdict until every host's `current` is the build it ran before;
//! - `hosts_hit`: hosts that ever ran the bad build (a task that switched, or traffic that
//!   read the bad build's rate);
//! - `incident_suspect_ok`: 1 when the verdict's incident names the bad deploy's change as its
//!   top suspect;
//! - and over the good deploys, `false_halts`: how many did not succeed.
//!
//! Output (stdout, one line): `detect_s=N rollback_s=N hosts_hit=N incident_suspect_ok=N
//! false_halts=N` (`detect_s` and `rollback_s` are `none` when there was no verdict, or the
//! hosts never all went back). Progress and details go to stderr.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context};
use chrono::{DateTime, Utc};
use clap::Args;
use serde_json::{json, Value};
use tokio::io::AsyncWriteExt;
use tokio_util::sync::CancellationToken;

#[derive(Debug, Args)]
pub struct LoopArgs {
    /// The server's base URL.
    #[arg(long)]
    url: String,
    /// A file holding an admin token.
    #[arg(long)]
    token_file: PathBuf,
    /// One file per host, `<host>.token`, holding the host's agent token.
    #[arg(long)]
    tokens_dir: PathBuf,
    /// Each host's root directory is `<roots-dir>/<host>`.
    #[arg(long)]
    roots_dir: PathBuf,
    /// The server's StatsD address (UDP).
    #[arg(long)]
    statsd: String,
    /// The server's Graphite plaintext address (TCP), for the history.
    #[arg(long)]
    graphite: String,
    #[arg(long, default_value = "shop")]
    service: String,
    #[arg(long, default_value = "prod")]
    env: String,
    #[arg(long, value_delimiter = ',', default_value = "web")]
    roles: Vec<String>,
    /// The version every host gets first, at once (not measured).
    #[arg(long)]
    initial: String,
    /// Versions of good builds (the same rate), deployed in turn.
    #[arg(long, value_delimiter = ',')]
    good: Vec<String>,
    /// The version of the build that halves the rate.
    #[arg(long)]
    bad: String,
    #[arg(long, default_value = "1,25%,100%")]
    waves: String,
    #[arg(long, default_value = "60s")]
    bake: String,
    /// Requests per second per host of a good build: the history's level.
    #[arg(long, default_value_t = 100.0)]
    rate: f64,
    /// The history's step, in seconds.
    #[arg(long, default_value_t = 10)]
    history_step: i64,
    /// Longest a rollout may take, in seconds.
    #[arg(long, default_value_t = 900)]
    timeout_secs: u64,
}

/// What each host's traffic saw: the versions it read, with when it first read each.
#[derive(Default)]
struct Seen {
    first: BTreeMap<String, DateTime<Utc>>,
}

struct Api {
    base: String,
    token: String,
    http: reqwest::Client,
}

impl Api {
    async fn get(&self, path: &str) -> anyhow::Result<Value> {
        let resp = self
            .http
            .get(format!("{}{path}", self.base))
            .bearer_auth(&self.token)
            .send()
            .await
            .with_context(|| format!("GET {path}"))?;
        let status = resp.status();
        let text = resp.text().await.unwrap_or_default();
        if !status.is_success() {
            bail!("GET {path}: {status}: {text}");
        }
        serde_json::from_str(&text).with_context(|| format!("GET {path}: not JSON: {text}"))
    }

    async fn post(&self, path: &str, body: &Value) -> anyhow::Result<Value> {
        let resp = self
            .http
            .post(format!("{}{path}", self.base))
            .bearer_auth(&self.token)
            .json(body)
            .send()
            .await
            .with_context(|| format!("POST {path}"))?;
        let status = resp.status();
        let text = resp.text().await.unwrap_or_default();
        if !status.is_success() {
            bail!("POST {path}: {status}: {text}");
        }
        serde_json::from_str(&text).with_context(|| format!("POST {path}: not JSON: {text}"))
    }
}

fn time(v: &Value) -> Option<DateTime<Utc>> {
    v.as_str()?.parse().ok()
}

fn secs(from: DateTime<Utc>, to: DateTime<Utc>) -> f64 {
    (to - from).num_milliseconds() as f64 / 1000.0
}

fn version_of(root: &Path, service: &str) -> Option<String> {
    std::fs::read_to_string(root.join(service).join("current/VERSION"))
        .ok()
        .map(|v| v.trim().to_string())
}

/// Sends the host's counter at the rate of its current release, every 100 ms on an absolute
/// schedule, noting each version it reads.
async fn traffic(
    socket: Arc<tokio::net::UdpSocket>,
    statsd: String,
    key: String,
    root: PathBuf,
    service: String,
    seen: Arc<Mutex<Seen>>,
    stop: CancellationToken,
) {
    let tick = Duration::from_millis(100);
    let mut ticker = tokio::time::interval(tick);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let rate_file = root.join(&service).join("current/RATE");
    let mut owed = 0.0;
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = ticker.tick() => {}
        }
        let rate: f64 = tokio::fs::read_to_string(&rate_file)
            .await
            .ok()
            .and_then(|r| r.trim().parse().ok())
            .unwrap_or(0.0);
        if let Some(v) = version_of(&root, &service) {
            if let Ok(mut s) = seen.lock() {
                s.first.entry(v).or_insert_with(Utc::now);
            }
        }
        owed += rate * tick.as_secs_f64();
        let whole = owed.floor();
        if whole >= 1.0 {
            owed -= whole;
            let _ = socket
                .send_to(format!("{key}:{whole}|c").as_bytes(), &statsd)
                .await;
        }
    }
}

/// History at the good rate over Graphite plaintext: `[from, until)` every `step` seconds.
async fn backfill(
    graphite: &str,
    series: &[String],
    from: i64,
    until: i64,
    step: i64,
    rate: f64,
) -> anyhow::Result<()> {
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15 ^ from as u64;
    let mut text = String::new();
    let mut t = from - from.rem_euclid(step);
    while t < until {
        for name in series {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let unit = (x >> 11) as f64 / (1u64 << 53) as f64;
            let v = rate * (0.97 + 0.06 * unit);
            text.push_str(&format!("{name} {v:.2} {t}\n"));
        }
        t += step;
    }
    let mut tcp = tokio::net::TcpStream::connect(graphite)
        .await
        .with_context(|| format!("cannot connect to Graphite at {graphite}"))?;
    tcp.write_all(text.as_bytes()).await?;
    tcp.shutdown().await?;
    Ok(())
}

/// Starts a rollout and waits until it is final; returns it with its tasks.
async fn rollout(
    api: &Api,
    args: &LoopArgs,
    version: &str,
    waves: &str,
    bake: &str,
) -> anyhow::Result<Value> {
    let started = api
        .post(
            "/api/v1/rollouts",
            &json!({
                "service": args.service,
                "environment": args.env,
                "build": version,
                "waves": waves,
                "bake": bake,
            }),
        )
        .await?;
    let id = started["id"]
        .as_str()
        .ok_or_else(|| anyhow!("no rollout id in {started}"))?
        .to_string();
    wait_final(api, &id, args.timeout_secs).await
}

async fn wait_final(api: &Api, id: &str, timeout_secs: u64) -> anyhow::Result<Value> {
    let deadline = Instant::now() + Duration::from_secs(timeout_secs);
    let mut last_state = String::new();
    loop {
        let r = api.get(&format!("/api/v1/rollouts/{id}")).await?;
        let state = r["state"].as_str().unwrap_or("?").to_string();
        if state != last_state {
            eprintln!(
                "gantry-bench loop: rollout {id} {state} (wave {})",
                r["wave"].as_u64().map_or(0, |w| w + 1)
            );
            last_state = state.clone();
        }
        if matches!(
            state.as_str(),
            "succeeded" | "failed" | "rolled_back" | "aborted"
        ) {
            return Ok(r);
        }
        if state == "paused" {
            bail!(
                "rollout {id} paused: {}",
                r["reason"].as_str().unwrap_or("?")
            );
        }
        if Instant::now() > deadline {
            bail!("rollout {id} not final after {timeout_secs} s: {r}");
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

pub async fn run(args: LoopArgs) -> anyhow::Result<()> {
    let filter = tracing_subscriber::EnvFilter::try_from_env("GANTRY_BENCH_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
    let token = std::fs::read_to_string(&args.token_file)
        .with_context(|| format!("cannot read {}", args.token_file.display()))?
        .trim()
        .to_string();
    let api = Api {
        base: args.url.trim_end_matches('/').to_string(),
        token,
        http: reqwest::Client::builder()
            .timeout(Duration::from_secs(60))
            .build()?,
    };
    let hosts = crate::agents::read_tokens(&args.tokens_dir)?;
    let stop = CancellationToken::new();
    let mut agents = tokio::task::JoinSet::new();
    for (name, token) in &hosts {
        let root = args.roots_dir.join(name);
        let mut config = gantry_agent::AgentConfig::new(&args.url, token, &root);
        config.name = Some(name.clone());
        config.roles = args.roles.clone();
        let stop = stop.clone();
        let name = name.clone();
        agents.spawn(async move { (name, gantry_agent::run(config, stop).await) });
    }
    let result = measure(&api, &args, &hosts, &stop).await;
    stop.cancel();
    while let Some(joined) = agents.join_next().await {
        if let Ok((name, Err(e))) = joined {
            eprintln!("gantry-bench loop: agent {name} had stopped: {e}");
        }
    }
    let line = result?;
    println!("{line}");
    Ok(())
}

async fn measure(
    api: &Api,
    args: &LoopArgs,
    hosts: &[(String, String)],
    stop: &CancellationToken,
) -> anyhow::Result<String> {
    let names: Vec<&str> = hosts.iter().map(|(n, _)| n.as_str()).collect();
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let list = api
            .get(&format!("/api/v1/hosts?environment={}", args.env))
            .await?;
        let online = list.as_array().map_or(0, |a| {
            a.iter()
                .filter(|h| {
                    h["status"] == "online" && names.iter().any(|n| h["name"].as_str() == Some(*n))
                })
                .count()
        });
        if online == names.len() {
            break;
        }
        if Instant::now() > deadline {
            bail!("{online} of {} hosts online after 120 s", names.len());
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    eprintln!("gantry-bench loop: {} agents online", names.len());

    let initial = rollout(api, args, &args.initial, "100%", "0s").await?;
    if initial["state"] != "succeeded" {
        bail!(
            "the initial deploy of {} ended {}",
            args.initial,
            initial["state"]
        );
    }

    // History, then live traffic following each host's build.
    let series: Vec<String> = names
        .iter()
        .map(|h| format!("stats.{}.{h}.requests", args.service))
        .collect();
    let now = Utc::now().timestamp();
    let step = args.history_step.max(1);
    backfill(&args.graphite, &series, now - 1800, now, step, args.rate).await?;
    for back in [86_400, 7 * 86_400] {
        backfill(
            &args.graphite,
            &series,
            now - back - 2400,
            now - back + 3600,
            step,
            args.rate,
        )
        .await?;
    }
    let socket = Arc::new(tokio::net::UdpSocket::bind("127.0.0.1:0").await?);
    let seen: BTreeMap<String, Arc<Mutex<Seen>>> = names
        .iter()
        .map(|h| (h.to_string(), Arc::default()))
        .collect();
    let traffic_stop = stop.child_token();
    let mut senders = tokio::task::JoinSet::new();
    for h in &names {
        senders.spawn(traffic(
            socket.clone(),
            args.statsd.clone(),
            format!("{}.{h}.requests", args.service),
            args.roots_dir.join(h),
            args.service.clone(),
            seen[*h].clone(),
            traffic_stop.clone(),
        ));
    }
    // Let the live traffic reach the store past the history.
    tokio::time::sleep(Duration::from_secs(30)).await;

    let mut false_halts = 0;
    for version in &args.good {
        let t0 = Instant::now();
        eprintln!(
            "gantry-bench loop: deploying good build {version} ({}, bake {})",
            args.waves, args.bake
        );
        let r = rollout(api, args, version, &args.waves, &args.bake).await?;
        if r["state"] != "succeeded" {
            false_halts += 1;
            eprintln!(
                "gantry-bench loop: FALSE HALT of {version}: {} ({})",
                r["state"],
                r["reason"].as_str().unwrap_or("")
            );
        }
        eprintln!(
            "gantry-bench loop: {version} {} in {:.0} s",
            r["state"].as_str().unwrap_or("?"),
            t0.elapsed().as_secs_f64()
        );
    }

    // What every host runs before the bad build.
    let before: BTreeMap<String, Option<String>> = names
        .iter()
        .map(|h| {
            (
                h.to_string(),
                version_of(&args.roots_dir.join(h), &args.service),
            )
        })
        .collect();
    eprintln!(
        "gantry-bench loop: deploying bad build {} ({}, bake {})",
        args.bad, args.waves, args.bake
    );
    let t0 = Instant::now();
    let started = api
        .post(
            "/api/v1/rollouts",
            &json!({
                "service": args.service,
                "environment": args.env,
                "build": args.bad,
                "waves": args.waves,
                "bake": args.bake,
            }),
        )
        .await?;
    let id = started["id"]
        .as_str()
        .ok_or_else(|| anyhow!("no rollout id in {started}"))?
        .to_string();
    let change = started["change_id"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    // Watch for the verdict and for the hosts going back, while the rollout runs.
    let mut verdict: Option<Value> = None;
    let mut all_back: Option<DateTime<Utc>> = None;
    let deadline = Instant::now() + Duration::from_secs(args.timeout_secs);
    let mut final_rollout: Option<Value> = None;
    loop {
        if verdict.is_none() {
            let list = api
                .get(&format!(
                    "/api/v1/verdicts?service={}&environment={}",
                    args.service, args.env
                ))
                .await?;
            verdict = list
                .as_array()
                .and_then(|a| a.iter().find(|v| v["rollout_id"] == id.as_str()).cloned());
        }
        if verdict.is_some() && all_back.is_none() {
            let back = before
                .iter()
                .all(|(h, v)| version_of(&args.roots_dir.join(h), &args.service) == *v);
            if back {
                all_back = Some(Utc::now());
            }
        }
        if final_rollout.is_none() {
            let r = api.get(&format!("/api/v1/rollouts/{id}")).await?;
            if matches!(
                r["state"].as_str(),
                Some("succeeded" | "failed" | "rolled_back" | "aborted")
            ) {
                eprintln!(
                    "gantry-bench loop: bad rollout {id} {} after {:.0} s: {}",
                    r["state"].as_str().unwrap_or("?"),
                    t0.elapsed().as_secs_f64(),
                    r["reason"].as_str().unwrap_or("")
                );
                final_rollout = Some(r);
            }
        }
        let done = final_rollout.is_some() && (verdict.is_none() || all_back.is_some());
        if done {
            break;
        }
        if Instant::now() > deadline {
            eprintln!(
                "gantry-bench loop: gave up waiting after {} s",
                args.timeout_secs
            );
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    traffic_stop.cancel();
    while senders.join_next().await.is_some() {}
    let rollout = match final_rollout {
        Some(r) => r,
        None => api.get(&format!("/api/v1/rollouts/{id}")).await?,
    };
    let tasks = rollout["tasks"].as_array().cloned().unwrap_or_default();
    let first_switch = tasks
        .iter()
        .filter(|t| t["purpose"] == "deploy")
        .filter_map(|t| time(&t["switched_at"]))
        .min();
    let mut hit: BTreeSet<String> = tasks
        .iter()
        .filter(|t| t["purpose"] == "deploy" && !t["switched_at"].is_null())
        .filter_map(|t| t["host"].as_str().map(str::to_string))
        .collect();
    for (h, s) in &seen {
        if s.lock().is_ok_and(|s| s.first.contains_key(&args.bad)) {
            hit.insert(h.clone());
        }
    }
    let verdict_at = verdict.as_ref().and_then(|v| time(&v["at"]));
    let detect_s = match (verdict_at, first_switch) {
        (Some(v), Some(f)) => format!("{:.1}", secs(f, v)),
        _ => "none".to_string(),
    };
    let rollback_s = match (verdict_at, all_back) {
        (Some(v), Some(b)) => format!("{:.1}", secs(v, b)),
        _ => "none".to_string(),
    };
    let mut suspect_ok = 0;
    if let Some(v) = &verdict {
        let incidents = api
            .get(&format!("/api/v1/incidents?service={}", args.service))
            .await?;
        let incident = incidents.as_array().and_then(|a| {
            a.iter()
                .find(|i| i["source"]["verdict"] == v["id"])
                .cloned()
        });
        match incident {
            Some(i) => {
                if i["suspects"][0]["change"].as_str() == Some(change.as_str()) {
                    suspect_ok = 1;
                }
                eprintln!(
                    "gantry-bench loop: incident {} top suspect {} ({})",
                    i["id"].as_str().unwrap_or("?"),
                    i["suspects"][0]["change"].as_str().unwrap_or("none"),
                    i["suspects"][0]["summary"].as_str().unwrap_or("")
                );
            }
            None => eprintln!("gantry-bench loop: no incident for verdict {}", v["id"]),
        }
        eprintln!(
            "gantry-bench loop: verdict {} ({}): {}",
            v["id"].as_str().unwrap_or("?"),
            v["comparison"].as_str().unwrap_or("?"),
            v["summary"].as_str().unwrap_or("")
        );
    } else {
        eprintln!("gantry-bench loop: no verdict for the bad rollout {id}");
    }
    eprintln!(
        "gantry-bench loop: bad rollout {} ({}); hosts that ran {}: {}",
        rollout["state"].as_str().unwrap_or("?"),
        rollout["reason"].as_str().unwrap_or(""),
        args.bad,
        hit.iter().cloned().collect::<Vec<_>>().join(", ")
    );
    Ok(format!(
        "detect_s={detect_s} rollback_s={rollback_s} hosts_hit={} incident_suspect_ok={suspect_ok} false_halts={false_halts}",
        hit.len()
    ))
}
