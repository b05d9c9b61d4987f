//! `gantry-bench dashboard-load`: fills an empty store with what the dashboard benchmark
//! renders: a service with a pipeline, two builds, HOSTS hosts in prod running the first,
//! and a rollout of the second to every host half-way through (the first wave and part of
//! the second done, hosts running with hook output, the rest planned), plus a few hundred
//! changes. Written straight into the store, as `load` does, so setting up a 1,000-host
//! rollout takes seconds.

use std::collections::BTreeMap;

use anyhow::{bail, Context};
use chrono::{Duration, Utc};
use gantry_core::ship::{
    Build, HostFacts, HostRelease, Rollout, RolloutKind, RolloutSpec, RolloutState, Task,
    TaskPurpose, TaskState, WaveSize,
};
use gantry_core::{Change, ChangeKind, ChangeStatus, NewService};
use gantry_store::StoreOptions;
use ulid::Ulid;

#[derive(Debug, clap::Args)]
pub struct DashboardLoadArgs {
    /// The store to fill: sqlite://PATH or postgres://USER@HOST/DB. It must hold no service
    /// named shop.
    #[arg(long, env = "GANTRY_BENCH_DATABASE_URL", hide_env_values = true)]
    database_url: String,
    /// Hosts in prod, all in the rollout.
    #[arg(long, default_value_t = 1000)]
    hosts: usize,
    /// Changes recorded besides the rollout's.
    #[arg(long, default_value_t = 300)]
    changes: usize,
}

/// Lines of hook output a running host shows.
const OUTPUT: &str = "fetching artifact\nverifying sha256\nunpacking 335 files\nlinking shared/config\nswitching current\nrunning bin/restart\nwaiting for health\n";

pub async fn run(args: DashboardLoadArgs) -> anyhow::Result<()> {
    if args.hosts == 0 {
        bail!("--hosts must be at least 1");
    }
    let redacted = gantry_store::redact_url(&args.database_url);
    let store = gantry_store::open(&args.database_url, StoreOptions::default())
        .await
        .with_context(|| format!("cannot open the store {redacted}"))?;
    let now = Utc::now();
    let service = "shop";
    store
        .create_service(
            &NewService {
                name: service.into(),
                environments: vec!["dev".into(), "stage".into(), "prod".into()],
            },
            now - Duration::days(30),
        )
        .await
        .context("cannot create the service (does the store already hold one named shop?)")?;
    let build = |version: &str, age: Duration| Build {
        id: Ulid::new(),
        service: service.into(),
        version: version.into(),
        sha256: "0".repeat(64),
        size: 1_048_576,
        url: None,
        commit: Some(format!("c{}", version.replace('.', ""))),
        commit_time: Some(now - age - Duration::minutes(20)),
        created_by: "ci".into(),
        created_at: now - age,
    };
    let (old, new) = (
        build("1.0.0", Duration::days(2)),
        build("2.0.0", Duration::hours(1)),
    );
    store.insert_build(&old).await?;
    store.insert_build(&new).await?;

    let facts = HostFacts {
        os: "linux".into(),
        arch: "x86_64".into(),
        agent_version: env!("CARGO_PKG_VERSION").into(),
        roles: vec!["web".into()],
    };
    let releases = BTreeMap::from([(
        service.to_string(),
        HostRelease {
            build_id: Some(old.id),
            release: "1.0.0".into(),
        },
    )]);
    let names: Vec<String> = (0..args.hosts).map(|i| format!("web-{i:04}")).collect();
    for name in &names {
        store
            .enroll_host(name, "prod", &["web".to_string()], now - Duration::days(10))
            .await?;
        store.host_seen(name, &facts, &releases, now).await?;
    }

    let sizes = WaveSize::parse_list("1,10%,50%,100%")?;
    let waves = WaveSize::plan(&sizes, names.len());
    let rollout_id = Ulid::new();
    let started = now - Duration::minutes(10);
    let change = Change {
        id: Ulid::new(),
        kind: ChangeKind::Deploy,
        service: Some(service.into()),
        environment: Some("prod".into()),
        actor: "ci".into(),
        summary: format!("deploy {service} 1.0.0 → 2.0.0 to prod"),
        description: None,
        status: ChangeStatus::InProgress,
        started_at: started,
        finished_at: None,
        size: None,
        commit_range: None,
        links: Vec::new(),
        metadata: serde_json::Map::new(),
        history: None,
    };
    // Half-way: wave 1 and half of wave 2 done, a tenth of wave 2 running, the rest planned.
    let wave2_end = waves.get(1).copied().unwrap_or(names.len());
    let tasks: Vec<Task> = names
        .iter()
        .enumerate()
        .map(|(i, host)| {
            let wave = waves.iter().position(|&n| i < n).unwrap_or(waves.len() - 1);
            let (state, step, output) =
                if wave == 0 || (wave == 1 && i < (waves[0] + wave2_end) / 2) {
                    (TaskState::Succeeded, Some("prune"), OUTPUT)
                } else if wave == 1 {
                    (TaskState::Running, Some("health"), OUTPUT)
                } else {
                    (TaskState::Planned, None, "")
                };
            Task {
                id: Ulid::new(),
                rollout_id: Some(rollout_id),
                host: host.clone(),
                service: service.into(),
                environment: "prod".into(),
                purpose: TaskPurpose::Deploy,
                wave,
                build_id: new.id,
                version: new.version.clone(),
                from_build: Some(old.id),
                from_version: Some(old.version.clone()),
                state,
                step: step.map(str::to_string),
                output: output.into(),
                error: None,
                created_at: started,
                updated_at: now,
                switched_at: None,
                undrained_at: None,
            }
        })
        .collect();
    let rollout = Rollout {
        id: rollout_id,
        kind: RolloutKind::Deploy,
        service: service.into(),
        environment: "prod".into(),
        build_id: new.id,
        version: new.version.clone(),
        change_id: change.id,
        state: RolloutState::Running,
        wave: 1,
        bake_until: None,
        reason: None,
        spec: RolloutSpec {
            waves,
            wave_sizes: "1,10%,50%,100%".into(),
            bake_secs: 60,
            parallel: 0,
            max_failed: 0,
            roles: None,
            auto_rollback: true,
            max_analysis_secs: gantry_core::ship::DEFAULT_MAX_ANALYSIS_SECS,
        },
        skipped: Vec::new(),
        aborted_by: None,
        control: None,
        reverts: None,
        created_by: "ci".into(),
        created_at: started,
        updated_at: now,
        finished_at: None,
    };
    store.insert_change(&change).await?;
    store.insert_rollout(&rollout, &tasks).await?;
    for i in 0..args.changes {
        let at = now - Duration::minutes(i as i64 * 7 + 15);
        let kind = [
            ChangeKind::Deploy,
            ChangeKind::Flag,
            ChangeKind::Config,
            ChangeKind::Note,
        ][i % 4];
        store
            .insert_change(&Change {
                id: Ulid::new(),
                kind,
                service: Some(service.into()),
                environment: Some(["dev", "stage", "prod"][i % 3].into()),
                actor: "ci".into(),
                summary: format!("{} of shop, number {i}", kind.as_str()),
                description: None,
                status: ChangeStatus::Succeeded,
                started_at: at,
                finished_at: Some(at),
                size: None,
                commit_range: None,
                links: Vec::new(),
                metadata: serde_json::Map::new(),
                history: None,
            })
            .await?;
    }
    store.close().await;
    eprintln!(
        "loaded {} hosts and rollout {rollout_id} ({} waves) into {redacted}",
        names.len(),
        rollout.spec.waves.len()
    );
    println!("rollout={rollout_id} hosts={}", names.len());
    Ok(())
}
