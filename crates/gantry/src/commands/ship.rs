//! Shipping on the command line: `gantry build …`, `gantry host …`, `gantry agent`,
//! `gantry deploy`, `gantry rollback`, `gantry promote` and `gantry rollout …`.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::{Args, Subcommand};
use gantry_client::{Client, PushBuild};
use gantry_core::ship::{
    Enrollment, NewRollout, Rollout, RolloutKind, RolloutState, RolloutView, TaskPurpose, TaskState,
};

use crate::credentials::client;
use crate::output::{opt_time, print_json, print_table, time, truncate};
use crate::GlobalArgs;

#[derive(Debug, Subcommand)]
pub enum BuildCommand {
    /// Upload an artifact (a .tar.gz) as a new build of a service; prints the build id.
    #[command(disable_version_flag = true)]
    Push(PushArgs),
    /// Register a build that agents fetch from a URL (checked against its sha-256) instead
    /// of uploading it; prints the build id.
    #[command(disable_version_flag = true)]
    Register(RegisterArgs),
    /// List builds, newest first.
    List {
        #[arg(long)]
        service: Option<String>,
        #[arg(long, default_value_t = 50)]
        limit: u32,
    },
    /// Show a build: by version (with --service), id, or unique id prefix; with the time
    /// each environment first ran it.
    Show {
        build: String,
        #[arg(long)]
        service: Option<String>,
    },
}

#[derive(Debug, Args)]
pub struct PushArgs {
    /// The artifact: a gzipped tar of the release directory.
    file: PathBuf,
    #[arg(long)]
    service: String,
    #[arg(long)]
    version: String,
    /// The commit it was built from (for commit ranges on deploys).
    #[arg(long)]
    commit: Option<String>,
    /// When that commit was made (RFC 3339 or epoch seconds), where lead time starts.
    #[arg(long)]
    commit_time: Option<String>,
}

#[derive(Debug, Args)]
pub struct RegisterArgs {
    /// Where agents fetch the artifact (http or https).
    #[arg(value_name = "URL")]
    artifact_url: String,
    #[arg(long)]
    sha256: String,
    #[arg(long)]
    size: Option<u64>,
    #[arg(long)]
    service: String,
    #[arg(long)]
    version: String,
    #[arg(long)]
    commit: Option<String>,
    #[arg(long)]
    commit_time: Option<String>,
}

pub async fn build(global: &GlobalArgs, command: BuildCommand) -> anyhow::Result<()> {
    let client = client(global)?;
    match command {
        BuildCommand::Push(a) => {
            let b = client
                .push_build(
                    &a.file,
                    &PushBuild {
                        service: a.service,
                        version: a.version,
                        commit: a.commit,
                        commit_time: a.commit_time,
                        ..Default::default()
                    },
                )
                .await?;
            if global.json {
                return print_json(&b);
            }
            println!("{}", b.id);
        }
        BuildCommand::Register(a) => {
            let b = client
                .register_build(&PushBuild {
                    service: a.service,
                    version: a.version,
                    commit: a.commit,
                    commit_time: a.commit_time,
                    url: Some(a.artifact_url),
                    sha256: Some(a.sha256),
                    size: a.size,
                })
                .await?;
            if global.json {
                return print_json(&b);
            }
            println!("{}", b.id);
        }
        BuildCommand::List { service, limit } => {
            let builds = client.list_builds(service.as_deref(), limit).await?;
            if global.json {
                return print_json(&builds);
            }
            let rows: Vec<Vec<String>> = builds
                .iter()
                .map(|b| {
                    vec![
                        b.id.to_string(),
                        b.service.clone(),
                        b.version.clone(),
                        b.size.to_string(),
                        b.commit.clone().unwrap_or_else(|| "-".into()),
                        time(b.created_at),
                    ]
                })
                .collect();
            print_table(
                &["ID", "SERVICE", "VERSION", "BYTES", "COMMIT", "CREATED"],
                &rows,
            );
        }
        BuildCommand::Show { build, service } => {
            let view = client.get_build(&build, service.as_deref()).await?;
            if global.json {
                return print_json(&view);
            }
            let b = &view.build;
            println!("id:          {}", b.id);
            println!("service:     {}", b.service);
            println!("version:     {}", b.version);
            println!("sha256:      {}", b.sha256);
            println!("size:        {} bytes", b.size);
            if let Some(url) = &b.url {
                println!("url:         {url}");
            }
            println!("commit:      {}", b.commit.as_deref().unwrap_or("-"));
            println!("commit time: {}", opt_time(b.commit_time));
            println!("pushed:      {} by {}", time(b.created_at), b.created_by);
            for e in &view.environments {
                println!("first in {}: {}", e.environment, time(e.first_at));
            }
        }
    }
    Ok(())
}

#[derive(Debug, Subcommand)]
pub enum HostCommand {
    /// Enroll a host; prints the token its agent uses (shown once; bound to this host).
    Enroll {
        name: String,
        #[arg(long)]
        env: String,
        /// Roles, e.g. web,worker (a service's deploy config picks hosts by role).
        #[arg(long, value_delimiter = ',')]
        roles: Vec<String>,
    },
    /// List hosts with status (online, lost, new), roles and maintenance.
    List {
        #[arg(long)]
        env: Option<String>,
    },
    /// Show a host: facts, current releases, recent tasks.
    Show { name: String },
    /// Put a host in maintenance (drained, kept out of deploys) or take it out.
    Maintenance {
        name: String,
        #[arg(value_parser = ["on", "off"])]
        state: String,
    },
}

pub async fn host(global: &GlobalArgs, command: HostCommand) -> anyhow::Result<()> {
    let client = client(global)?;
    match command {
        HostCommand::Enroll { name, env, roles } => {
            let e = client
                .enroll_host(&Enrollment {
                    name,
                    environment: env,
                    roles,
                })
                .await?;
            if global.json {
                return print_json(&e);
            }
            println!("{}", e.token);
        }
        HostCommand::List { env } => {
            let hosts = client.list_hosts(env.as_deref()).await?;
            if global.json {
                return print_json(&hosts);
            }
            let rows: Vec<Vec<String>> = hosts
                .iter()
                .map(|h| {
                    let releases: Vec<String> = h
                        .releases
                        .iter()
                        .map(|(s, r)| format!("{s}={}", r.release))
                        .collect();
                    vec![
                        h.name.clone(),
                        h.environment.clone(),
                        h.status.to_string(),
                        if h.maintenance {
                            "on".into()
                        } else {
                            "-".into()
                        },
                        h.roles.join(","),
                        opt_time(h.last_seen_at),
                        releases.join(" "),
                    ]
                })
                .collect();
            print_table(
                &[
                    "NAME",
                    "ENV",
                    "STATUS",
                    "MAINT",
                    "ROLES",
                    "LAST SEEN",
                    "RELEASES",
                ],
                &rows,
            );
        }
        HostCommand::Show { name } => {
            let v = client.get_host(&name).await?;
            if global.json {
                return print_json(&v);
            }
            let h = &v.host;
            println!("name:        {}", h.name);
            println!("environment: {}", h.environment);
            println!("status:      {}", h.status);
            println!("maintenance: {}", if h.maintenance { "on" } else { "off" });
            println!("roles:       {}", h.roles.join(","));
            println!("last seen:   {}", opt_time(h.last_seen_at));
            println!(
                "agent:       {} on {}/{}",
                h.facts.agent_version, h.facts.os, h.facts.arch
            );
            for (s, r) in &h.releases {
                println!("release:     {s} → {}", r.release);
            }
            for t in &v.tasks {
                println!(
                    "task:        {} {} {} {} {} {}",
                    time(t.updated_at),
                    t.service,
                    t.version,
                    t.purpose,
                    t.state,
                    t.error.as_deref().unwrap_or("")
                );
            }
        }
        HostCommand::Maintenance { name, state } => {
            let h = client.set_maintenance(&name, state == "on").await?;
            if global.json {
                return print_json(&h);
            }
            println!(
                "{} maintenance {}",
                h.name,
                if h.maintenance { "on" } else { "off" }
            );
        }
    }
    Ok(())
}

#[derive(Debug, Args)]
pub struct AgentArgs {
    /// This host's environment (checked against the host's enrollment).
    #[arg(long)]
    env: String,
    /// This host's name (the token decides; a mismatch is an error).
    #[arg(long)]
    name: Option<String>,
    /// Roles, e.g. web,worker (reported; enrollment decides deploys).
    #[arg(long, value_delimiter = ',')]
    roles: Vec<String>,
    /// Where services live: <root>/<service>/{releases,current,shared}.
    #[arg(long, default_value = "/srv/gantry")]
    root: PathBuf,
    /// Also send the drop files in this directory as metrics every minute (`gantry collect`).
    #[arg(long)]
    metrics_dir: Option<PathBuf>,
    /// Prefix of drop-file metrics [default: the host name].
    #[arg(long)]
    metrics_prefix: Option<String>,
    /// StatsD address for drop-file metrics.
    #[arg(long, default_value = "127.0.0.1:8125")]
    metrics_statsd: String,
}

pub async fn agent(global: &GlobalArgs, args: AgentArgs) -> anyhow::Result<()> {
    let (token, _) = crate::credentials::resolve(global)?
        .context("the agent needs its host token: --token-file FILE (from `gantry host enroll`)")?;
    let client = Client::new(&global.url, Some(token.clone()))?;
    let me = client.whoami().await?;
    let host = gantry_core::ship::host_of_token(&me.name)
        .with_context(|| {
            format!(
                "token '{}' is not a host token; enroll the host with `gantry host enroll NAME --env {}` and use the token it prints",
                me.name, args.env
            )
        })?
        .to_string();
    if let Some(name) = &args.name {
        if *name != host {
            anyhow::bail!("--name {name} does not match the token, which belongs to host {host}");
        }
    }
    let view = client.get_host(&host).await.ok();
    if let Some(v) = &view {
        if v.host.environment != args.env {
            anyhow::bail!(
                "--env {} does not match host {host}'s enrollment in {}",
                args.env,
                v.host.environment
            );
        }
    }
    let mut config = gantry_agent::AgentConfig::new(&global.url, &token, &args.root);
    config.name = Some(host.clone());
    config.roles = args.roles;
    if let Some(dir) = args.metrics_dir {
        let addr = tokio::net::lookup_host(&args.metrics_statsd)
            .await
            .ok()
            .and_then(|mut a| a.next())
            .with_context(|| {
                format!(
                    "--metrics-statsd '{}' is not a host:port",
                    args.metrics_statsd
                )
            })?;
        config.metrics = Some(gantry_agent::MetricsConfig {
            dir,
            prefix: args.metrics_prefix.unwrap_or_else(|| host.clone()),
            destination: gantry_collect::Destination::Statsd(addr),
            interval: Duration::from_secs(60),
        });
    }
    let shutdown = tokio_util::sync::CancellationToken::new();
    {
        let on_ctrl_c = shutdown.clone();
        tokio::spawn(async move {
            let _ = tokio::signal::ctrl_c().await;
            on_ctrl_c.cancel();
        });
        #[cfg(unix)]
        {
            let shutdown = shutdown.clone();
            if let Ok(mut term) =
                tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            {
                tokio::spawn(async move {
                    term.recv().await;
                    shutdown.cancel();
                });
            }
        }
    }
    tracing::info!(host = %host, root = %args.root.display(), "agent started");
    gantry_agent::run(config, shutdown).await?;
    Ok(())
}

/// Options every rollout takes.
#[derive(Debug, Args, Clone, Default)]
pub struct WaveArgs {
    /// Cumulative wave sizes: host counts or shares [default: 1,10%,50%,100%; rollback: 100%].
    #[arg(long)]
    waves: Option<String>,
    /// Bake time after each wave before its gates run [default: 60s; rollback: 0s].
    #[arg(long)]
    bake: Option<String>,
    /// How long past a wave's bake gates may answer "wait" before the rollout pauses
    /// [default: 10m].
    #[arg(long)]
    max_analysis: Option<String>,
    /// At most N hosts at once within a wave [default: no limit].
    #[arg(long)]
    parallel: Option<usize>,
    /// Failed hosts tolerated before the rollout stops.
    #[arg(long)]
    max_failed: Option<usize>,
    /// Only hosts with one of these roles [default: the service's deploy config].
    #[arg(long, value_delimiter = ',')]
    roles: Option<Vec<String>>,
    /// On a failed gate, stop without rolling hosts back.
    #[arg(long)]
    no_auto_rollback: bool,
    /// Refuse to start when a target host is offline, instead of skipping it.
    #[arg(long)]
    require_all: bool,
    /// Return only when the rollout has finished (rollback included); exit 0 only if it
    /// succeeded.
    #[arg(long)]
    wait: bool,
}

#[derive(Debug, Args)]
pub struct DeployArgs {
    service: String,
    /// A build id, a unique id prefix, or a version of the service.
    build: String,
    #[arg(long)]
    env: String,
    #[command(flatten)]
    waves: WaveArgs,
}

#[derive(Debug, Args)]
pub struct RollbackArgs {
    service: String,
    #[arg(long)]
    env: String,
    #[command(flatten)]
    waves: WaveArgs,
}

#[derive(Debug, Args)]
pub struct PromoteArgs {
    service: String,
    #[arg(long)]
    from: String,
    #[arg(long)]
    to: String,
    #[command(flatten)]
    waves: WaveArgs,
}

fn new_rollout(kind: RolloutKind, service: String, env: String, w: &WaveArgs) -> NewRollout {
    NewRollout {
        kind: Some(kind),
        service,
        environment: env,
        waves: w.waves.clone(),
        bake: w.bake.clone(),
        max_analysis: w.max_analysis.clone(),
        parallel: w.parallel,
        max_failed: w.max_failed,
        roles: w.roles.clone(),
        auto_rollback: Some(!w.no_auto_rollback),
        require_all: Some(w.require_all),
        ..Default::default()
    }
}

pub async fn deploy(global: &GlobalArgs, a: DeployArgs) -> anyhow::Result<()> {
    let mut new = new_rollout(RolloutKind::Deploy, a.service, a.env, &a.waves);
    new.build = Some(a.build);
    start(global, new, a.waves.wait).await
}

pub async fn rollback(global: &GlobalArgs, a: RollbackArgs) -> anyhow::Result<()> {
    let new = new_rollout(RolloutKind::Rollback, a.service, a.env, &a.waves);
    start(global, new, a.waves.wait).await
}

pub async fn promote(global: &GlobalArgs, a: PromoteArgs) -> anyhow::Result<()> {
    let mut new = new_rollout(RolloutKind::Promote, a.service, a.to, &a.waves);
    new.from = Some(a.from);
    start(global, new, a.waves.wait).await
}

async fn start(global: &GlobalArgs, new: NewRollout, wait: bool) -> anyhow::Result<()> {
    let client = client(global)?;
    let rollout = client.create_rollout(&new).await?;
    if !wait {
        if global.json {
            return print_json(&rollout);
        }
        println!("{}", rollout.id);
        return Ok(());
    }
    if !global.json {
        println!("{}", rollout.id);
    }
    let end = follow(&client, &rollout.id.to_string(), !global.json).await?;
    if global.json {
        print_json(&end)?;
    }
    finish(&end.rollout)
}

/// Exit status of a finished rollout: success only when it succeeded.
fn finish(r: &Rollout) -> anyhow::Result<()> {
    match r.state {
        RolloutState::Succeeded => Ok(()),
        state => anyhow::bail!(
            "rollout {} {}: {}",
            r.id,
            state.as_str().replace('_', " "),
            r.reason.as_deref().unwrap_or("no reason recorded")
        ),
    }
}

/// Follows a rollout until it is final, drawing progress on stderr when it is a terminal.
async fn follow(client: &Client, id: &str, progress: bool) -> anyhow::Result<RolloutView> {
    let tty = progress && std::io::stderr().is_terminal();
    let mut last_line = String::new();
    let mut failures = 0;
    loop {
        let view = match client.get_rollout(id).await {
            Ok(v) => {
                failures = 0;
                v
            }
            // A server restart mid-rollout: keep following.
            Err(e) if failures < 60 => {
                failures += 1;
                tracing::warn!(error = %e, "cannot read the rollout; retrying");
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
            Err(e) => return Err(e.into()),
        };
        if progress {
            let lines = render(&view, tty);
            if tty {
                eprint!("\x1b[2K\r{}", lines.join(" | "));
            } else if lines.join(" | ") != last_line {
                eprintln!("{}", lines.join(" | "));
            }
            last_line = lines.join(" | ");
        }
        if view.rollout.state.is_final() {
            if tty {
                eprintln!();
            }
            return Ok(view);
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// One line per wave: a bar when drawing on a terminal, counts otherwise.
fn render(v: &RolloutView, bars: bool) -> Vec<String> {
    let r = &v.rollout;
    let mut out = vec![format!("{} {} {}", r.state, r.service, r.version)];
    let mut start = 0;
    for (i, &end) in r.spec.waves.iter().enumerate() {
        let tasks: Vec<_> = v
            .tasks
            .iter()
            .filter(|t| t.purpose == TaskPurpose::Deploy && t.wave == i)
            .collect();
        let done = tasks
            .iter()
            .filter(|t| t.state == TaskState::Succeeded)
            .count();
        let failed = tasks
            .iter()
            .filter(|t| t.state == TaskState::Failed)
            .count();
        let n = end - start;
        start = end;
        if bars {
            let width = 10;
            let filled = (done * width).checked_div(n).unwrap_or(width);
            out.push(format!(
                "wave {} [{}{}] {done}/{n}{}",
                i + 1,
                "#".repeat(filled),
                ".".repeat(width - filled),
                if failed > 0 {
                    format!(" {failed} failed")
                } else {
                    String::new()
                }
            ));
        } else {
            out.push(format!(
                "wave {}: {done}/{n}{}",
                i + 1,
                if failed > 0 {
                    format!(" ({failed} failed)")
                } else {
                    String::new()
                }
            ));
        }
    }
    let rb: Vec<_> = v
        .tasks
        .iter()
        .filter(|t| t.purpose == TaskPurpose::Rollback)
        .collect();
    if !rb.is_empty() {
        let back = rb
            .iter()
            .filter(|t| t.state == TaskState::Succeeded)
            .count();
        out.push(format!("rollback {back}/{}", rb.len()));
    }
    out
}

#[derive(Debug, Subcommand)]
pub enum RolloutCommand {
    /// List rollouts, newest first.
    List {
        #[arg(long)]
        service: Option<String>,
        #[arg(long)]
        env: Option<String>,
        /// Only rollouts in progress.
        #[arg(long)]
        active: bool,
        #[arg(long, default_value_t = 20)]
        limit: u32,
    },
    /// Show a rollout and its hosts; on a terminal (or with --follow) live, with a progress
    /// bar per wave, until it finishes.
    Status {
        id: String,
        #[arg(long)]
        follow: bool,
    },
    /// Stop sending the rollout to more hosts until resumed.
    Pause {
        id: String,
    },
    Resume {
        id: String,
    },
    /// Stop the rollout, and roll back the hosts it reached (unless it was started with
    /// --no-auto-rollback).
    Abort {
        id: String,
    },
}

pub async fn rollout(global: &GlobalArgs, command: RolloutCommand) -> anyhow::Result<()> {
    let client = client(global)?;
    match command {
        RolloutCommand::List {
            service,
            env,
            active,
            limit,
        } => {
            let list = client
                .list_rollouts(service.as_deref(), env.as_deref(), active, limit)
                .await?;
            if global.json {
                return print_json(&list);
            }
            let rows: Vec<Vec<String>> = list
                .iter()
                .map(|r| {
                    vec![
                        r.id.to_string(),
                        r.kind.to_string(),
                        r.service.clone(),
                        r.environment.clone(),
                        r.version.clone(),
                        r.state.to_string(),
                        time(r.created_at),
                        truncate(r.reason.as_deref().unwrap_or(""), 60),
                    ]
                })
                .collect();
            print_table(
                &[
                    "ID", "KIND", "SERVICE", "ENV", "VERSION", "STATE", "STARTED", "REASON",
                ],
                &rows,
            );
        }
        RolloutCommand::Status { id, follow: live } => {
            // On a terminal, a rollout in progress is shown live.
            let live = live || (!global.json && std::io::stdout().is_terminal());
            let view = if live {
                follow(&client, &id, !global.json).await?
            } else {
                client.get_rollout(&id).await?
            };
            if global.json {
                return print_json(&view);
            }
            let r = &view.rollout;
            println!("rollout:  {} ({})", r.id, r.kind);
            println!("service:  {} to {}", r.service, r.environment);
            println!("build:    {} ({})", r.version, r.build_id);
            println!("state:    {}", r.state);
            println!("waves:    {} = {:?} hosts", r.spec.wave_sizes, r.spec.waves);
            println!("started:  {} by {}", time(r.created_at), r.created_by);
            if let Some(f) = r.finished_at {
                println!("finished: {}", time(f));
            }
            if let Some(reason) = &r.reason {
                println!("reason:   {reason}");
            }
            if !r.skipped.is_empty() {
                println!("skipped:  {}", r.skipped.join(", "));
            }
            for line in render(&view, false).iter().skip(1) {
                println!("{line}");
            }
            let rows: Vec<Vec<String>> = view
                .tasks
                .iter()
                .map(|t| {
                    vec![
                        t.host.clone(),
                        t.purpose.to_string(),
                        (t.wave + 1).to_string(),
                        t.version.clone(),
                        t.state.to_string(),
                        t.step.clone().unwrap_or_else(|| "-".into()),
                        truncate(t.error.as_deref().unwrap_or(""), 60),
                    ]
                })
                .collect();
            print_table(
                &["HOST", "TASK", "WAVE", "VERSION", "STATE", "STEP", "ERROR"],
                &rows,
            );
        }
        RolloutCommand::Pause { id } => control(global, &client, &id, "pause").await?,
        RolloutCommand::Resume { id } => control(global, &client, &id, "resume").await?,
        RolloutCommand::Abort { id } => control(global, &client, &id, "abort").await?,
    }
    Ok(())
}

async fn control(
    global: &GlobalArgs,
    client: &Client,
    id: &str,
    action: &str,
) -> anyhow::Result<()> {
    let r = client.control_rollout(id, action).await?;
    if global.json {
        return print_json(&r);
    }
    println!("{} {action} requested", r.id);
    Ok(())
}
