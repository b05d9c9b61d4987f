//! The host agent (`gantry agent`): makes only outbound requests to the server, so it works
//! behind NAT and firewalls. Its long poll is its heartbeat: each carries the host's facts,
//! the release every service's `current` link points at, and the tasks it is running, and
//! returns the tasks to run. Each task runs the deploy step list with `gantry-release` and
//! reports every step with the last lines of hook output.
//!
//! Invariant: the agent acts only on tasks the server sends for its own host (the server
//! binds the token to the host), runs the tasks of one service one at a time in the order
//! the server sent them, and sends the host's real state (the `current` links) in a
//! heartbeat before it reports a task finished, so the server never sees a task done while
//! it still records the release from before; an agent killed mid-step tells the truth when
//! it comes back and simply runs the task again (every step is idempotent: a release
//! already unpacked is reused, the switch is an atomic rename).

pub mod logs;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use gantry_client::{Client, ClientError};
use gantry_core::ship::{AgentHello, AgentTask, HostFacts, HostRelease, TaskReport, TaskState};
use gantry_release::{Release, ServiceLayout};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use ulid::Ulid;

/// How an agent runs.
#[derive(Debug, Clone)]
pub struct AgentConfig {
    pub url: String,
    pub token: String,
    /// The host name the operator expects; the server's answer wins (the token names it).
    pub name: Option<String>,
    pub roles: Vec<String>,
    /// Services live under `<root>/<service>/`.
    pub root: PathBuf,
    /// Drop-file metrics to collect every minute, if any.
    pub metrics: Option<MetricsConfig>,
    /// Largest artifact fetched, and largest unpacked size.
    pub max_artifact_bytes: u64,
    /// Default timeout of hooks that set none.
    pub hook_timeout: Duration,
    /// Lines of hook output kept for reports.
    pub tail_lines: usize,
}

#[derive(Debug, Clone)]
pub struct MetricsConfig {
    pub dir: PathBuf,
    pub prefix: String,
    pub destination: gantry_collect::Destination,
    pub interval: Duration,
}

impl AgentConfig {
    pub fn new(url: &str, token: &str, root: &Path) -> AgentConfig {
        AgentConfig {
            url: url.to_string(),
            token: token.to_string(),
            name: None,
            roles: Vec::new(),
            root: root.to_path_buf(),
            metrics: None,
            max_artifact_bytes: 4 * 1024 * 1024 * 1024,
            hook_timeout: Duration::from_secs(300),
            tail_lines: 40,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    #[error("the server refused this agent's token: {0} (was the host's token revoked or re-enrolled? `gantry host enroll` prints a new one)")]
    Refused(String),
    #[error("{0}")]
    Config(String),
}

/// Runs the agent until `shutdown` is cancelled or the server refuses its token.
pub async fn run(config: AgentConfig, shutdown: CancellationToken) -> Result<(), AgentError> {
    let client = Client::new(&config.url, Some(config.token.clone()))
        .map_err(|e| AgentError::Config(e.to_string()))?;
    tokio::fs::create_dir_all(&config.root).await.map_err(|e| {
        AgentError::Config(format!(
            "cannot create the root {}: {e}",
            config.root.display()
        ))
    })?;
    let agent = Arc::new(Agent {
        client,
        config,
        running: Mutex::default(),
        services: Mutex::default(),
        drained: tokio::sync::Mutex::new(false),
        logs: Arc::default(),
    });
    if let Some(m) = agent.config.metrics.clone() {
        tokio::spawn(collect_metrics(m, shutdown.clone()));
    }
    let mut starting = true;
    let mut backoff = Duration::from_millis(500);
    let mut heartbeat = Duration::from_secs(10);
    loop {
        if shutdown.is_cancelled() {
            return Ok(());
        }
        agent.scan_logs().await;
        let hello = agent.hello().await;
        let poll = tokio::select! {
            _ = shutdown.cancelled() => return Ok(()),
            r = agent.client.agent_poll(&hello, heartbeat, starting) => r,
        };
        match poll {
            Ok(work) => {
                starting = false;
                agent.logs_sent(work.logs);
                backoff = Duration::from_millis(500);
                heartbeat = Duration::from_secs(work.heartbeat_secs.max(1));
                agent.clone().maintenance(work.maintenance).await;
                // Oldest first, as the server sends them: each service's queue keeps that
                // order (a rollback sent with, or after, the deploy it undoes runs after it).
                for task in work.tasks {
                    let fresh = agent
                        .running
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .insert(task.task.id);
                    if fresh {
                        agent.enqueue(task);
                    }
                }
            }
            Err(ClientError::Api {
                status, message, ..
            }) if status.as_u16() == 401 || status.as_u16() == 403 => {
                return Err(AgentError::Refused(message));
            }
            Err(e) => {
                tracing::warn!(error = %e, retry_in_ms = backoff.as_millis() as u64, "poll failed; retrying");
                let jitter = Duration::from_millis(rand::random::<u64>() % 250);
                tokio::select! {
                    _ = shutdown.cancelled() => return Ok(()),
                    _ = tokio::time::sleep(backoff + jitter) => {}
                }
                backoff = (backoff * 2).min(Duration::from_secs(30));
            }
        }
    }
}

struct Agent {
    client: Client,
    config: AgentConfig,
    /// Tasks received and not yet finished (queued or running).
    running: Mutex<HashSet<Ulid>>,
    /// One queue per service, worked by one task: never two tasks of one service at once,
    /// and they run in the order they arrived.
    services: Mutex<HashMap<String, mpsc::UnboundedSender<AgentTask>>>,
    drained: tokio::sync::Mutex<bool>,
    /// Log watches, their followers and the counts not yet delivered.
    logs: Arc<Mutex<LogState>>,
}

/// What the agent keeps for log watches between polls.
#[derive(Default)]
struct LogState {
    /// Service → its watches, as the server last sent them (checked again here).
    watches: BTreeMap<String, Vec<gantry_monitors::LogWatch>>,
    followers: HashMap<String, logs::LogFollower>,
    /// Counts scanned and not yet in a poll the server answered.
    pending: BTreeMap<(String, String), u64>,
    problems: Vec<String>,
    /// Watches this agent refused, said once each.
    refused: HashSet<(String, String)>,
}

/// Reports ignore a failure to deliver (the next step or the poll tells the truth again).
struct Step<'a> {
    agent: &'a Agent,
    task: &'a AgentTask,
    output: String,
}

impl Step<'_> {
    async fn report(&self, state: TaskState, step: &str, error: Option<String>) {
        let report = TaskReport {
            state,
            step: Some(step.to_string()),
            output: self.output.clone(),
            error,
        };
        if state.is_final() {
            // What the host runs now reaches the server before the task's end does: a
            // rollout started once this one is done reads each host's release to know its
            // way back (and the long poll in flight carries the links from before).
            self.agent.heartbeat().await;
        }
        let id = self.task.task.id.to_string();
        for attempt in 0..5u32 {
            match self.agent.client.agent_report(&id, &report).await {
                Ok(_) => return,
                Err(ClientError::Api {
                    status, message, ..
                }) => {
                    if status.as_u16() != 409 {
                        tracing::warn!(task = %id, error = %message, "report refused");
                    }
                    return;
                }
                Err(e) => {
                    tracing::warn!(task = %id, error = %e, attempt, "report failed; retrying");
                    tokio::time::sleep(Duration::from_millis(200 << attempt)).await;
                }
            }
        }
    }

    fn add_output(&mut self, hook: &str, tail: &str) {
        if tail.is_empty() {
            return;
        }
        self.output.push_str(&format!("[{hook}]\n{tail}"));
        if !self.output.ends_with('\n') {
            self.output.push('\n');
        }
        self.output = gantry_core::ship::output_tail(&self.output);
    }
}

impl Agent {
    /// Follows every watched log once (blocking file reads, off the async threads) and
    /// adds what matched to the counts the next poll carries.
    async fn scan_logs(&self) {
        let state = self.logs.clone();
        let root = self.config.root.clone();
        let scanned = tokio::task::spawn_blocking(move || {
            let mut guard = state.lock().unwrap_or_else(|p| p.into_inner());
            let LogState {
                watches,
                followers,
                pending,
                problems,
                ..
            } = &mut *guard;
            for (service, list) in watches.iter() {
                let follower = followers.entry(service.clone()).or_insert_with(|| {
                    let file = root
                        .join(".gantry")
                        .join("logs")
                        .join(format!("{service}.json"));
                    logs::LogFollower::open(file)
                });
                let scan = follower.scan(&root.join(service), list);
                for (name, count) in scan.counts {
                    *pending.entry((service.clone(), name)).or_default() += count;
                }
                problems.extend(scan.problems.into_iter().map(|p| format!("{service}: {p}")));
            }
            // Services no longer watched stop being followed.
            followers.retain(|service, _| watches.contains_key(service));
        })
        .await;
        if let Err(e) = scanned {
            tracing::warn!(error = %e, "log scan failed");
        }
    }

    /// The server answered a poll that carried the pending counts: they are delivered.
    /// Takes the watches it sent, checked again (a wrong one is skipped and said once).
    fn logs_sent(&self, sent: BTreeMap<String, Vec<gantry_core::ship::LogWatchWire>>) {
        let limits = gantry_monitors::Limits::default();
        let mut state = self.logs.lock().unwrap_or_else(|p| p.into_inner());
        state.pending.clear();
        state.problems.clear();
        let mut watches = BTreeMap::new();
        for (service, list) in sent {
            let mut checked = Vec::with_capacity(list.len());
            for w in list {
                let pattern = gantry_monitors::Pattern::new(
                    &w.regex,
                    limits.max_regex_chars,
                    limits.regex_size_limit_bytes,
                );
                match (gantry_monitors::logs::check_glob(&w.glob), pattern) {
                    (Ok(()), Ok(regex)) => checked.push(gantry_monitors::LogWatch {
                        name: w.name,
                        glob: w.glob,
                        regex,
                    }),
                    (glob, regex) => {
                        if state.refused.insert((service.clone(), w.name.clone())) {
                            tracing::warn!(service = %service, watch = %w.name, glob = ?glob.err(), regex = ?regex.err().map(|e| e.to_string()), "log watch refused");
                        }
                    }
                }
            }
            watches.insert(service, checked);
        }
        state.watches = watches;
    }

    async fn hello(&self) -> AgentHello {
        let mut hello = AgentHello {
            facts: HostFacts {
                os: std::env::consts::OS.to_string(),
                arch: std::env::consts::ARCH.to_string(),
                agent_version: env!("CARGO_PKG_VERSION").to_string(),
                roles: self.config.roles.clone(),
            },
            releases: BTreeMap::new(),
            running: self
                .running
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .iter()
                .copied()
                .collect(),
            log_counts: Vec::new(),
            log_problems: Vec::new(),
        };
        {
            let logs = self.logs.lock().unwrap_or_else(|p| p.into_inner());
            hello.log_counts = logs
                .pending
                .iter()
                .map(|((service, name), count)| gantry_core::ship::LogCount {
                    service: service.clone(),
                    name: name.clone(),
                    count: *count,
                })
                .collect();
            hello.log_problems = logs.problems.clone();
        }
        if let Ok(mut dir) = tokio::fs::read_dir(&self.config.root).await {
            while let Ok(Some(entry)) = dir.next_entry().await {
                let Some(name) = entry.file_name().to_str().map(str::to_string) else {
                    continue;
                };
                let Ok(layout) = ServiceLayout::new(&self.config.root, &name) else {
                    continue;
                };
                if let Ok(Some(current)) = layout.current().await {
                    hello.releases.insert(name, host_release(&current));
                }
            }
        }
        hello
    }

    /// A heartbeat that waits for nothing: the server records the host's releases now.
    /// A failure is only logged (the next poll carries them again).
    async fn heartbeat(&self) {
        let hello = self.hello().await;
        if let Err(e) = self.client.agent_poll(&hello, Duration::ZERO, false).await {
            tracing::warn!(error = %e, "heartbeat before a report failed");
        }
    }

    /// Queues a task behind the other tasks of its service (starting the service's worker
    /// when it has none).
    fn enqueue(self: &Arc<Self>, task: AgentTask) {
        let mut services = self.services.lock().unwrap_or_else(|p| p.into_inner());
        let task = match services.get(&task.task.service) {
            Some(queue) => match queue.send(task) {
                Ok(()) => return,
                // The worker is gone (it panicked): start another.
                Err(mpsc::error::SendError(task)) => task,
            },
            None => task,
        };
        let (queue, mut tasks) = mpsc::unbounded_channel::<AgentTask>();
        let service = task.task.service.clone();
        let _ = queue.send(task);
        services.insert(service, queue);
        let agent = self.clone();
        tokio::spawn(async move {
            while let Some(task) = tasks.recv().await {
                let id = task.task.id;
                agent.run_task(task).await;
                agent
                    .running
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .remove(&id);
            }
        });
    }

    /// Drains every service when the host goes into maintenance; undrains when it leaves.
    async fn maintenance(self: Arc<Self>, on: bool) {
        let mut drained = self.drained.lock().await;
        if *drained == on {
            return;
        }
        let hello = self.hello().await;
        for service in hello.releases.keys() {
            let Ok(layout) = ServiceLayout::new(&self.config.root, service) else {
                continue;
            };
            let Ok(Some(current)) = layout.current().await else {
                continue;
            };
            let Ok(config) = read_release_config(&current.path) else {
                continue;
            };
            let hook = if on {
                config.and_then(|c| c.hooks.drain)
            } else {
                config.and_then(|c| c.hooks.undrain)
            };
            if let Some(hook) = hook {
                let out = gantry_release::run_hook(
                    &hook,
                    &current.path,
                    &[],
                    self.config.hook_timeout,
                    self.config.tail_lines,
                )
                .await;
                tracing::info!(service, on, success = out.success, "maintenance hook ran");
            }
        }
        *drained = on;
    }

    async fn run_task(&self, task: AgentTask) {
        let mut step = Step {
            agent: self,
            task: &task,
            output: String::new(),
        };
        if let Err((name, error)) = self.execute(&mut step).await {
            tracing::warn!(task = %task.task.id, service = %task.task.service, step = name, error = %error, "task failed");
            step.report(TaskState::Failed, name, Some(error)).await;
        }
    }

    /// The deploy step list. Returns the failed step and why.
    async fn execute(&self, step: &mut Step<'_>) -> Result<(), (&'static str, String)> {
        let task = step.task;
        let t = &task.task;
        let config = &task.config;
        let layout = ServiceLayout::new(&self.config.root, &t.service)
            .map_err(|e| ("fetch", e.to_string()))?;
        layout
            .ensure_dirs()
            .await
            .map_err(|e| ("fetch", e.to_string()))?;
        let previous = layout
            .current()
            .await
            .map_err(|e| ("fetch", e.to_string()))?;
        let build_id = t.build_id.to_string();

        // fetch + unpack, unless this build's release is still here (a rollback, a retry).
        step.report(TaskState::Running, "fetch", None).await;
        let release = match layout
            .find_release(&build_id)
            .await
            .map_err(|e| ("fetch", e.to_string()))?
        {
            Some(r) => r.path,
            None => {
                let cache = layout.service_dir().join(".artifacts");
                tokio::fs::create_dir_all(&cache)
                    .await
                    .map_err(|e| ("fetch", format!("cannot create {}: {e}", cache.display())))?;
                let dest = cache.join(format!("{}.tar.gz", task.sha256));
                let (url, bearer) = if task.artifact_on_server {
                    (
                        format!("{}{}", self.client.base_url(), task.artifact_url),
                        self.client.token(),
                    )
                } else {
                    (task.artifact_url.clone(), None)
                };
                gantry_release::fetch(
                    self.client.http(),
                    &url,
                    bearer,
                    &dest,
                    &task.sha256,
                    self.config.max_artifact_bytes,
                )
                .await
                .map_err(|e| ("fetch", e.to_string()))?;
                step.report(TaskState::Running, "unpack", None).await;
                let name = gantry_release::release_name(&build_id, chrono::Utc::now())
                    .map_err(|e| ("unpack", e.to_string()))?;
                let unpacked = gantry_release::unpack(
                    &dest,
                    &layout,
                    &name,
                    self.config.max_artifact_bytes.saturating_mul(8),
                )
                .await;
                let _ = tokio::fs::remove_file(&dest).await;
                unpacked.map_err(|e| ("unpack", e.to_string()))?
            }
        };

        // Quick local steps are not reported on their own (the next report names where it is).
        gantry_release::link_shared(&layout, &release, &config.shared)
            .await
            .map_err(|e| ("link_shared", e.to_string()))?;

        let env: Vec<(String, String)> = vec![
            ("GANTRY_SERVICE".into(), t.service.clone()),
            ("GANTRY_ENV".into(), t.environment.clone()),
            ("GANTRY_RELEASE_DIR".into(), release.display().to_string()),
            ("GANTRY_BUILD_ID".into(), build_id.clone()),
            ("GANTRY_VERSION".into(), t.version.clone()),
            (
                "GANTRY_PREVIOUS_VERSION".into(),
                t.from_version.clone().unwrap_or_default(),
            ),
        ];
        let already_current = previous.as_ref().is_some_and(|p| p.path == release);

        self.hook(
            step,
            "before_switch",
            config.hooks.before_switch.as_ref(),
            &release,
            &env,
        )
        .await?;
        if let Some(prev) = previous.as_ref().filter(|_| !already_current) {
            self.hook(step, "drain", config.hooks.drain.as_ref(), &prev.path, &env)
                .await?;
        }
        step.report(TaskState::Running, "switch", None).await;
        gantry_release::switch_current(&layout, &release)
            .await
            .map_err(|e| ("switch", e.to_string()))?;
        self.hook(
            step,
            "restart",
            config.hooks.restart.as_ref(),
            &release,
            &env,
        )
        .await?;
        if let Some(health) = &config.health {
            step.report(TaskState::Running, "health", None).await;
            gantry_release::health_check(health, &release, &env)
                .await
                .map_err(|e| ("health", e))?;
        }
        if !*self.drained.lock().await {
            self.hook(
                step,
                "undrain",
                config.hooks.undrain.as_ref(),
                &release,
                &env,
            )
            .await?;
        }
        self.hook(
            step,
            "after_switch",
            config.hooks.after_switch.as_ref(),
            &release,
            &env,
        )
        .await?;
        let mut protect: Vec<&Path> = vec![release.as_path()];
        if let Some(p) = &previous {
            protect.push(p.path.as_path());
        }
        if let Err(e) =
            gantry_release::prune(&layout, config.keep_releases.max(1) as usize, &protect).await
        {
            // Disk housekeeping does not fail a deploy that is serving.
            step.add_output("prune", &format!("could not prune old releases: {e}"));
        }
        // Kept for maintenance drains between deploys.
        let _ = tokio::fs::write(
            layout.service_dir().join(".deploy-config.toml"),
            config.to_canonical_toml(),
        )
        .await;
        step.report(TaskState::Succeeded, "prune", None).await;
        Ok(())
    }

    async fn hook(
        &self,
        step: &mut Step<'_>,
        name: &'static str,
        hook: Option<&gantry_core::deploy::Hook>,
        cwd: &Path,
        env: &[(String, String)],
    ) -> Result<(), (&'static str, String)> {
        let Some(hook) = hook else {
            return Ok(());
        };
        step.report(TaskState::Running, name, None).await;
        let out = gantry_release::run_hook(
            hook,
            cwd,
            env,
            self.config.hook_timeout,
            self.config.tail_lines,
        )
        .await;
        step.add_output(name, &out.tail);
        if out.success {
            return Ok(());
        }
        let why = if out.timed_out {
            format!(
                "timed out after {} s and was killed",
                gantry_release::hook_timeout(hook, self.config.hook_timeout).as_secs()
            )
        } else if let Some(code) = out.exit_code {
            format!("exited with status {code}")
        } else if let Some(signal) = out.signal {
            format!("was killed by signal {signal}")
        } else {
            format!("could not run: {}", out.tail.trim())
        };
        Err((name, format!("hook {name} {why}")))
    }
}

fn host_release(r: &Release) -> HostRelease {
    HostRelease {
        build_id: r.build_id.parse().ok(),
        release: r.name.clone(),
    }
}

/// The deploy config a release was installed with is the server's; for maintenance hooks
/// between deploys the agent keeps the last one it ran next to the release.
fn read_release_config(
    release: &Path,
) -> Result<Option<gantry_core::deploy::DeployConfig>, String> {
    let path = release
        .parent()
        .and_then(Path::parent)
        .map(|service| service.join(".deploy-config.toml"));
    let Some(path) = path else {
        return Ok(None);
    };
    match std::fs::read_to_string(&path) {
        Ok(text) => gantry_core::deploy::DeployConfig::parse_toml(&text)
            .map(Some)
            .map_err(|e| e.to_string()),
        Err(_) => Ok(None),
    }
}

async fn collect_metrics(m: MetricsConfig, shutdown: CancellationToken) {
    let mut collector = gantry_collect::Collector::new(&m.dir, &m.prefix, m.destination);
    loop {
        let (back, result) = match tokio::task::spawn_blocking(move || {
            let r = collector.collect_once();
            (collector, r)
        })
        .await
        {
            Ok(x) => x,
            Err(_) => return,
        };
        collector = back;
        match result {
            Ok(round) => {
                for bad in round.newly_bad {
                    tracing::warn!(file = %bad.file.display(), line = bad.line_number, reason = %bad.reason, "drop file line skipped");
                }
            }
            Err(e) => tracing::warn!(error = %e, "drop-file collection failed"),
        }
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(m.interval) => {}
        }
    }
}
