//! `gantry-bench load`: fills an empty store with synthetic history through
//! `Store::import_changes`, in batches, reporting progress on stderr and the elapsed time
//! on stdout.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use chrono::Utc;
use futures::{StreamExt, TryStreamExt};
use gantry_core::ChangeQuery;
use gantry_store::{Store, StoreOptions};
use rand::rngs::StdRng;
use rand::SeedableRng;

use crate::workload;

/// How often progress is reported.
const PROGRESS_EVERY: Duration = Duration::from_secs(5);

#[derive(Debug, clap::Args)]
pub struct LoadArgs {
    /// The store to load: sqlite://PATH or postgres://USER@HOST/DB. It must hold no changes.
    #[arg(long, env = "GANTRY_BENCH_DATABASE_URL", hide_env_values = true)]
    database_url: String,
    /// How many changes to load.
    #[arg(long, env = "GANTRY_BENCH_CHANGES", default_value_t = 1_000_000)]
    changes: u64,
    /// How many services the changes are spread over (svc000, svc001, …).
    #[arg(long, env = "GANTRY_BENCH_SERVICES", default_value_t = 200)]
    services: u32,
    /// How many days back from now `started_at` is spread over, uniformly.
    #[arg(long, env = "GANTRY_BENCH_DAYS", default_value_t = 90)]
    days: u32,
    /// Changes per `import_changes` call (one transaction each).
    #[arg(long, env = "GANTRY_BENCH_BATCH_SIZE", default_value_t = 5_000)]
    batch_size: usize,
    /// Batches imported at once. SQLite has one writer, so more than 1 only helps PostgreSQL.
    #[arg(long, env = "GANTRY_BENCH_LOAD_PARALLEL", default_value_t = 1)]
    parallel: usize,
    /// Seed of the random data; the same seed loads the same changes (relative to now).
    #[arg(long, env = "GANTRY_BENCH_SEED", default_value_t = 1)]
    seed: u64,
}

pub async fn run(args: LoadArgs) -> anyhow::Result<()> {
    if args.services == 0 || args.days == 0 || args.batch_size == 0 || args.parallel == 0 {
        bail!("--services, --days, --batch-size and --parallel must be at least 1");
    }
    if let Some(path) = args.database_url.strip_prefix("sqlite://") {
        // The store creates the file; make sure a typo'd directory is not created silently.
        let parent = PathBuf::from(path);
        if let Some(dir) = parent.parent().filter(|d| !d.as_os_str().is_empty()) {
            if !dir.is_dir() {
                bail!("the directory {} does not exist", dir.display());
            }
        }
    }
    let redacted = gantry_store::redact_url(&args.database_url);
    let store = gantry_store::open(&args.database_url, StoreOptions::default())
        .await
        .with_context(|| format!("cannot open the store {redacted}"))?;
    let result = load(store.as_ref(), &args, &redacted).await;
    store.close().await;
    result
}

async fn load(store: &dyn Store, args: &LoadArgs, redacted: &str) -> anyhow::Result<()> {
    let existing = store
        .list_changes(&ChangeQuery {
            limit: 1,
            ..ChangeQuery::default()
        })
        .await
        .context("cannot read the store")?;
    if !existing.is_empty() {
        bail!("{redacted} already holds changes; load benchmark data into an empty database");
    }

    let now = Utc::now();
    let window = chrono::Duration::days(i64::from(args.days));
    let batch_size = args.batch_size as u64;
    let batches = args.changes.div_ceil(batch_size);
    eprintln!(
        "loading {} changes over {} services and the last {} days into {} ({} per batch, {} at once)",
        args.changes, args.services, args.days, redacted, args.batch_size, args.parallel
    );

    let started = Instant::now();
    let mut loaded: u64 = 0;
    let mut last_report = started;
    // Each batch has its own generator, seeded from the run's seed and the batch's number,
    // so the data does not depend on the order in which parallel batches finish.
    let mut imports = futures::stream::iter(0..batches)
        .map(|batch| async move {
            let mut rng = StdRng::seed_from_u64(args.seed.wrapping_mul(1_000_003) ^ batch);
            let size = batch_size.min(args.changes - batch * batch_size);
            let changes: Vec<_> = (0..size)
                .map(|_| workload::historical_change(&mut rng, args.services, now, window))
                .collect();
            store
                .import_changes(&changes)
                .await
                .with_context(|| format!("cannot import batch {batch} into {redacted}"))
        })
        .buffer_unordered(args.parallel);
    while let Some(stored) = imports.try_next().await? {
        loaded += stored;
        if last_report.elapsed() >= PROGRESS_EVERY {
            last_report = Instant::now();
            let seconds = started.elapsed().as_secs_f64();
            eprintln!(
                "  {loaded}/{} changes after {seconds:.0} s ({:.0} changes/s)",
                args.changes,
                loaded as f64 / seconds
            );
        }
    }
    let seconds = started.elapsed().as_secs_f64();
    if loaded != args.changes {
        bail!(
            "the store reports {loaded} changes stored of {} imported",
            args.changes
        );
    }
    let rate = loaded as f64 / seconds.max(f64::EPSILON);
    eprintln!("loaded {loaded} changes in {seconds:.1} s ({rate:.0} changes/s)");
    println!("load_changes={loaded} load_seconds={seconds:.1} load_rate={rate:.0}");
    Ok(())
}
