//! Shipping: builds, hosts, rollouts and the tasks agents run, plus the rollout state
//! machine as a pure function ([`advance`]).
//!
//! The orchestrator is deliberately stateless between ticks: every tick reads the rollout and
//! its tasks from the store, calls [`advance`], and writes back what changed. A server that
//! restarts, or another server that takes the rollout's lease over, continues from exactly
//! what the database says, because there is nothing else.

use std::collections::{BTreeMap, HashSet};
use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};
use ulid::Ulid;
use utoipa::ToSchema;

use crate::deploy::DeployConfig;
use crate::names::validate_name;
use crate::Invalid;

macro_rules! str_enum {
    ($(#[$meta:meta])* $name:ident { $($(#[$vmeta:meta])* $variant:ident = $text:literal),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
        #[serde(rename_all = "snake_case")]
        pub enum $name { $($(#[$vmeta])* $variant),+ }

        impl $name {
            pub const ALL: &'static [$name] = &[$($name::$variant),+];
            pub fn as_str(self) -> &'static str {
                match self { $($name::$variant => $text),+ }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl FromStr for $name {
            type Err = Invalid;
            fn from_str(s: &str) -> Result<Self, Invalid> {
                $name::ALL.iter().copied().find(|v| v.as_str() == s).ok_or_else(|| {
                    let all: Vec<&str> = $name::ALL.iter().map(|v| v.as_str()).collect();
                    Invalid::new(format!(
                        "unknown {} '{s}'; expected one of {}",
                        stringify!($name).to_lowercase(),
                        all.join(", ")
                    ))
                })
            }
        }
    };
}

/// A build: one artifact of one version of a service, made once and promoted unchanged.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Build {
    #[schema(value_type = String)]
    pub id: Ulid,
    pub service: String,
    pub version: String,
    /// Lowercase hex SHA-256 of the artifact.
    pub sha256: String,
    /// Artifact size in bytes.
    pub size: u64,
    /// Where agents fetch the artifact when it was registered by URL instead of uploaded.
    pub url: Option<String>,
    pub commit: Option<String>,
    pub commit_time: Option<DateTime<Utc>>,
    pub created_by: String,
    pub created_at: DateTime<Utc>,
}

/// Checks a build version: 1 to 128 printable characters without spaces or `/`.
pub fn validate_version(version: &str) -> Result<(), Invalid> {
    if version.is_empty() || version.len() > 128 {
        return Err(Invalid::new(format!(
            "version must be 1 to 128 characters, got {}",
            version.len()
        )));
    }
    if !version
        .chars()
        .all(|c| c.is_ascii_graphic() && c != '/' && c != '\\')
    {
        return Err(Invalid::new(format!(
            "version '{version}' may hold only printable ASCII without spaces, '/' or '\\'"
        )));
    }
    Ok(())
}

/// Checks a lowercase hex SHA-256 digest.
pub fn validate_sha256(sha: &str) -> Result<(), Invalid> {
    if sha.len() == 64
        && sha
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    {
        Ok(())
    } else {
        Err(Invalid::new(format!(
            "sha256 '{sha}' is not 64 lowercase hex digits"
        )))
    }
}

str_enum!(
    /// Whether a host is answering.
    HostStatus {
        /// Heartbeats arrive.
        Online = "online",
        /// Missed its heartbeats: shown, skipped by new deploys, fails open tasks.
        Lost = "lost",
        /// Enrolled, never connected.
        New = "new",
    }
);

/// What an agent says about its host.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(default)]
pub struct HostFacts {
    pub os: String,
    pub arch: String,
    pub agent_version: String,
    /// The roles the agent runs with (`--roles`).
    #[serde(default)]
    pub roles: Vec<String>,
}

/// The release of one service an agent found on its host (it reads the `current` link).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct HostRelease {
    #[schema(value_type = Option<String>)]
    pub build_id: Option<Ulid>,
    /// The release directory's name under `releases/`.
    pub release: String,
}

/// A machine running `gantry agent`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Host {
    pub name: String,
    pub environment: String,
    pub roles: Vec<String>,
    pub enrolled_at: DateTime<Utc>,
    pub last_seen_at: Option<DateTime<Utc>>,
    pub facts: HostFacts,
    /// Service name → its current release on the host.
    pub releases: BTreeMap<String, HostRelease>,
    /// Out of deploys and drained (`gantry host maintenance NAME on`).
    pub maintenance: bool,
    pub status: HostStatus,
}

impl Host {
    /// The status at `now` for a host last seen at `last_seen`.
    pub fn status_at(
        last_seen: Option<DateTime<Utc>>,
        now: DateTime<Utc>,
        lost_after: Duration,
    ) -> HostStatus {
        match last_seen {
            None => HostStatus::New,
            Some(t) if now - t > lost_after => HostStatus::Lost,
            Some(_) => HostStatus::Online,
        }
    }

    /// Whether the host runs a service with these roles (`None`: every host).
    pub fn has_role(&self, roles: Option<&[String]>) -> bool {
        match roles {
            None | Some([]) => true,
            Some(wanted) => self.roles.iter().any(|r| wanted.contains(r)),
        }
    }
}

/// The name of the token a host's agent uses: it binds the agent to that host.
pub fn host_token_name(host: &str) -> String {
    format!("host.{host}")
}

/// The host a token name is bound to, if it is a host token.
pub fn host_of_token(token_name: &str) -> Option<&str> {
    token_name.strip_prefix("host.")
}

/// One wave's size: a number of hosts or a share of the target hosts, cumulative.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(untagged)]
pub enum WaveSize {
    Hosts(u32),
    Percent(f64),
}

impl WaveSize {
    /// Parses `1,10%,50%,100%`.
    pub fn parse_list(s: &str) -> Result<Vec<WaveSize>, Invalid> {
        let mut out = Vec::new();
        for part in s.split(',').map(str::trim) {
            let wave = if let Some(p) = part.strip_suffix('%') {
                match p.trim().parse::<f64>() {
                    Ok(v) if v > 0.0 && v <= 100.0 => WaveSize::Percent(v),
                    _ => {
                        return Err(Invalid::new(format!(
                            "wave '{part}' is not a share between 0% and 100%"
                        )))
                    }
                }
            } else {
                match part.parse::<u32>() {
                    Ok(n) if n > 0 => WaveSize::Hosts(n),
                    _ => {
                        return Err(Invalid::new(format!(
                            "wave '{part}' is neither a number of hosts (≥ 1) nor a share like 10%"
                        )))
                    }
                }
            };
            out.push(wave);
        }
        Ok(out)
    }

    /// Cumulative host counts for `hosts` targets: each wave at least one host more than the
    /// one before, the last always every host. Empty waves are dropped.
    pub fn plan(waves: &[WaveSize], hosts: usize) -> Vec<usize> {
        let mut out: Vec<usize> = Vec::new();
        for wave in waves {
            let n = match *wave {
                WaveSize::Hosts(n) => n as usize,
                WaveSize::Percent(p) => ((p / 100.0) * hosts as f64).ceil() as usize,
            }
            .min(hosts);
            if n > out.last().copied().unwrap_or(0) {
                out.push(n);
            }
        }
        if hosts > 0 && out.last().copied().unwrap_or(0) < hosts {
            out.push(hosts);
        }
        out
    }
}

impl fmt::Display for WaveSize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WaveSize::Hosts(n) => write!(f, "{n}"),
            WaveSize::Percent(p) => write!(f, "{p}%"),
        }
    }
}

str_enum!(
    /// Why a rollout exists.
    RolloutKind {
        Deploy = "deploy",
        Rollback = "rollback",
        Promote = "promote",
    }
);

str_enum!(
    /// Where a rollout is. `succeeded`, `failed`, `rolled_back` and `aborted` are final.
    RolloutState {
        Running = "running",
        Paused = "paused",
        /// A gate failed; hosts already on the new build go back to what they had.
        RollingBack = "rolling_back",
        Succeeded = "succeeded",
        /// A gate failed and there was no automatic rollback, or it failed too.
        Failed = "failed",
        /// A gate failed and the automatic rollback completed.
        RolledBack = "rolled_back",
        /// Stopped by a person (`gantry rollout abort`).
        Aborted = "aborted",
    }
);

impl RolloutState {
    pub fn is_final(self) -> bool {
        matches!(
            self,
            RolloutState::Succeeded
                | RolloutState::Failed
                | RolloutState::RolledBack
                | RolloutState::Aborted
        )
    }
}

/// How a rollout proceeds; fixed when it is created.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct RolloutSpec {
    /// Cumulative host counts per wave, computed from the wave sizes at creation.
    pub waves: Vec<usize>,
    /// The sizes as given (`1,10%,50%,100%`), for display.
    pub wave_sizes: String,
    pub bake_secs: u64,
    /// At most this many hosts at once within a wave (0: no limit).
    pub parallel: usize,
    /// Failed hosts tolerated over the whole rollout.
    pub max_failed: usize,
    /// Restricts targets to hosts with one of these roles (`None`: the service's config).
    pub roles: Option<Vec<String>>,
    pub auto_rollback: bool,
    /// How long past a wave's bake the rollout waits for gates that answer "wait" before it
    /// pauses with their reason.
    #[serde(default = "default_max_analysis_secs")]
    pub max_analysis_secs: u64,
}

/// Ten minutes: how long gates may keep a baked wave waiting by default.
pub const DEFAULT_MAX_ANALYSIS_SECS: u64 = 600;

fn default_max_analysis_secs() -> u64 {
    DEFAULT_MAX_ANALYSIS_SECS
}

/// A rollout: one build going to the hosts of one service in one environment.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Rollout {
    #[schema(value_type = String)]
    pub id: Ulid,
    pub kind: RolloutKind,
    pub service: String,
    pub environment: String,
    #[schema(value_type = String)]
    pub build_id: Ulid,
    pub version: String,
    /// The change that records this rollout in the log.
    #[schema(value_type = String)]
    pub change_id: Ulid,
    pub state: RolloutState,
    /// The wave being deployed or baked (0-based).
    pub wave: usize,
    /// Set while a finished wave bakes; gates run when it passes.
    pub bake_until: Option<DateTime<Utc>>,
    /// Why it stopped: which host, which step, which gate, the hook's last output.
    pub reason: Option<String>,
    pub spec: RolloutSpec,
    /// Hosts left out because they were offline or in maintenance when it started.
    pub skipped: Vec<String>,
    /// Who aborted it, if someone did.
    pub aborted_by: Option<String>,
    /// A person's pending request (`pause`, `resume`, `abort:<actor>`), applied by the
    /// server driving the rollout on its next tick.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub control: Option<String>,
    /// For a rollback: the rollout it reverts.
    #[schema(value_type = Option<String>)]
    pub reverts: Option<Ulid>,
    pub created_by: String,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub finished_at: Option<DateTime<Utc>>,
}

str_enum!(
    /// Why a task exists.
    TaskPurpose {
        Deploy = "deploy",
        /// Part of a rollout's automatic rollback.
        Rollback = "rollback",
        /// A host that was away brought to the environment's current build.
        Converge = "converge",
    }
);

str_enum!(
    /// A task's life: `planned` (waits for its wave), `pending` (sent to the agent),
    /// `running`, then one of the final states.
    TaskState {
        Planned = "planned",
        Pending = "pending",
        Running = "running",
        Succeeded = "succeeded",
        Failed = "failed",
        /// Never sent (its rollout stopped first).
        Cancelled = "cancelled",
    }
);

impl TaskState {
    pub fn is_final(self) -> bool {
        matches!(
            self,
            TaskState::Succeeded | TaskState::Failed | TaskState::Cancelled
        )
    }

    pub fn is_open(self) -> bool {
        matches!(self, TaskState::Pending | TaskState::Running)
    }
}

/// One host installing one build of one service: the unit an agent executes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Task {
    #[schema(value_type = String)]
    pub id: Ulid,
    #[schema(value_type = Option<String>)]
    pub rollout_id: Option<Ulid>,
    pub host: String,
    pub service: String,
    pub environment: String,
    pub purpose: TaskPurpose,
    pub wave: usize,
    #[schema(value_type = String)]
    pub build_id: Ulid,
    pub version: String,
    /// What the host ran before (the build a rollback returns it to).
    #[schema(value_type = Option<String>)]
    pub from_build: Option<Ulid>,
    pub from_version: Option<String>,
    pub state: TaskState,
    /// The step running or last run (`fetch`, `unpack`, `before_switch`, …).
    pub step: Option<String>,
    /// The last lines of the step's output.
    pub output: String,
    pub error: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    /// When the host switched to the build (the first report past `switch`): where
    /// before/after comparisons of the host split. Kept in the task's document, so older
    /// binaries read past it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub switched_at: Option<DateTime<Utc>>,
    /// When the host took traffic again (the first report past `undrain`, or success).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub undrained_at: Option<DateTime<Utc>>,
}

impl Task {
    /// Takes in an agent's report (checked with [`TaskReport::validate`]) at `now`: its
    /// state, its step when it names one, the tail of its output when it sent any and of
    /// its error when it has one, and the times [`Task::note_progress`] notes.
    pub fn apply_report(&mut self, report: TaskReport, now: DateTime<Utc>) {
        self.state = report.state;
        self.step = report.step.or(self.step.take());
        if !report.output.is_empty() {
            self.output = output_tail(&report.output);
        }
        self.error = report.error.map(|e| output_tail(&e)).or(self.error.take());
        self.updated_at = now;
        self.note_progress(now);
    }

    /// Notes when the host really changed, from a report of `step` in `state` at `now`:
    /// past `switch` it runs the new build; past `undrain` (or done) it serves again.
    pub fn note_progress(&mut self, now: DateTime<Utc>) {
        let index = |name: &str| STEPS.iter().position(|s| *s == name);
        let at = self.step.as_deref().and_then(index);
        let succeeded = self.state == TaskState::Succeeded;
        if succeeded || at.is_some_and(|i| Some(i) > index("switch")) {
            self.switched_at.get_or_insert(now);
        }
        if succeeded || at.is_some_and(|i| Some(i) > index("undrain")) {
            self.undrained_at.get_or_insert(now);
        }
    }
}

/// The steps of a task, in order, as agents report them.
pub const STEPS: &[&str] = &[
    "fetch",
    "unpack",
    "link_shared",
    "before_switch",
    "drain",
    "switch",
    "restart",
    "health",
    "undrain",
    "after_switch",
    "prune",
];

/// What an agent sends on every poll: who it is, what it runs.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct AgentHello {
    pub facts: HostFacts,
    /// Service → what its `current` link points at.
    #[serde(default)]
    pub releases: BTreeMap<String, HostRelease>,
    /// Tasks the agent is running now (not sent again).
    #[serde(default)]
    #[schema(value_type = Vec<String>)]
    pub running: Vec<Ulid>,
    /// Lines matching each log watch since the last poll the server answered.
    #[serde(default)]
    pub log_counts: Vec<LogCount>,
    /// Problems following log files (each said once), for the server's log.
    #[serde(default)]
    pub log_problems: Vec<String>,
}

impl AgentHello {
    /// The rules of a poll body beyond its shape. Each log count names its service and its
    /// log watch by valid names, as the watches the server sends are named: the two become
    /// parts of a metric path ([`log_metric_name`]), where a space or a line break would
    /// make a point for another metric in the store or a forward destination.
    pub fn validate(&self) -> Result<(), Invalid> {
        for (i, count) in self.log_counts.iter().enumerate() {
            validate_name(&format!("log_counts[{i}].service"), &count.service)?;
            validate_name(&format!("log_counts[{i}].name"), &count.name)?;
        }
        Ok(())
    }
}

/// A service's `[[logs]]` entry as agents receive it (checked by the server; the agent
/// checks the glob and pattern again before it reads anything).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct LogWatchWire {
    pub name: String,
    /// Relative to `<root>/<service>/`.
    pub glob: String,
    /// A regular expression.
    pub regex: String,
}

/// How many lines matched a log watch.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct LogCount {
    pub service: String,
    pub name: String,
    pub count: u64,
}

/// The metric a log watch's counts are stored as: `gantry.logs.<service>.<host>.<name>`,
/// each part with `.` turned into `_` (so it stays one path component).
pub fn log_metric_name(service: &str, host: &str, name: &str) -> String {
    let part = |s: &str| s.replace('.', "_");
    format!(
        "gantry.logs.{}.{}.{}",
        part(service),
        part(host),
        part(name)
    )
}

/// A task as the agent receives it: everything it needs to act alone.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct AgentTask {
    pub task: Task,
    pub sha256: String,
    pub size: u64,
    /// Where to fetch the artifact (a path on the server, or the build's own URL).
    pub artifact_url: String,
    /// Whether `artifact_url` is on this server (send the agent token) or elsewhere.
    pub artifact_on_server: bool,
    #[schema(value_type = Object)]
    pub config: DeployConfig,
}

/// What `POST /api/v1/agent/poll` answers: the tasks to run now, in order.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct AgentWork {
    pub tasks: Vec<AgentTask>,
    /// Poll again within this many seconds (it is the heartbeat).
    pub heartbeat_secs: u64,
    /// The host is in maintenance: drain every service and keep it drained.
    #[serde(default)]
    pub maintenance: bool,
    /// Service → its `[[logs]]` entries, for the services this host runs.
    #[serde(default)]
    pub logs: BTreeMap<String, Vec<LogWatchWire>>,
}

/// An agent's report on a task's progress.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TaskReport {
    pub state: TaskState,
    pub step: Option<String>,
    #[serde(default)]
    pub output: String,
    pub error: Option<String>,
}

impl TaskReport {
    /// The rules of a report, whatever the task: an agent reports `running`, `succeeded`
    /// or `failed` (the other states are the server's), and a step, when it names one, is
    /// one of [`STEPS`].
    pub fn validate(&self) -> Result<(), Invalid> {
        if matches!(
            self.state,
            TaskState::Planned | TaskState::Pending | TaskState::Cancelled
        ) {
            return Err(Invalid::new(format!(
                "an agent reports running, succeeded or failed, not {}",
                self.state
            )));
        }
        if let Some(step) = &self.step {
            if !STEPS.contains(&step.as_str()) {
                return Err(Invalid::new(format!(
                    "step '{step}' is not one of {}",
                    STEPS.join(", ")
                )));
            }
        }
        Ok(())
    }
}

/// The longest task output kept, in bytes (the tail).
pub const MAX_TASK_OUTPUT: usize = 8 * 1024;

/// Keeps the last [`MAX_TASK_OUTPUT`] bytes of `s`, cut at a character boundary.
pub fn output_tail(s: &str) -> String {
    if s.len() <= MAX_TASK_OUTPUT {
        return s.to_string();
    }
    let mut start = s.len() - MAX_TASK_OUTPUT;
    while !s.is_char_boundary(start) {
        start += 1;
    }
    s[start..].to_string()
}

/// What a pluggable gate (monitors, regression detection) says about a running rollout. It is
/// asked on every tick, not only when a wave has baked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GateOutcome {
    Pass,
    /// Not yet decided (too little data after the switch, or no answer in time): a baked
    /// wave waits up to `max_analysis_secs`, then the rollout pauses with this reason.
    Wait {
        reason: String,
    },
    /// Stop now: halts the rollout wherever it is and rolls back what it reached.
    Fail {
        reason: String,
    },
}

/// One gate's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GateVerdict {
    pub gate: String,
    pub outcome: GateOutcome,
}

/// What a tick saw besides the rollout and its tasks.
pub struct Observed<'a> {
    pub now: DateTime<Utc>,
    /// Hosts whose heartbeats stopped.
    pub lost: &'a HashSet<String>,
    /// What the pluggable gates answered on this tick.
    pub gates: Vec<GateVerdict>,
}

/// What [`advance`] decided: the rollout and tasks it changed, tasks to create.
#[derive(Debug, Default)]
pub struct Advance {
    pub rollout_changed: bool,
    /// Indexes into the task slice whose state changed.
    pub changed_tasks: Vec<usize>,
    pub new_tasks: Vec<Task>,
    /// The rollout reached a final state in this tick.
    pub finished: bool,
    /// A wave finished its gates (for the change log).
    pub wave_passed: Option<usize>,
}

/// One tick of the rollout state machine. Pure: reads `rollout`, `tasks` and what was
/// observed; changes them in place and says what changed.
pub fn advance(rollout: &mut Rollout, tasks: &mut [Task], seen: &Observed<'_>) -> Advance {
    let mut out = Advance::default();
    let now = seen.now;
    if rollout.state.is_final() || rollout.state == RolloutState::Paused {
        return out;
    }

    // A task on a lost host will not finish: fail it so the gates see it.
    for (i, task) in tasks.iter_mut().enumerate() {
        if task.state.is_open() && seen.lost.contains(&task.host) {
            task.state = TaskState::Failed;
            task.error = Some(format!(
                "host {} stopped sending heartbeats during step {}",
                task.host,
                task.step.as_deref().unwrap_or("(not started)")
            ));
            task.updated_at = now;
            out.changed_tasks.push(i);
        }
    }

    if rollout.state == RolloutState::RollingBack {
        dispatch(rollout, tasks, TaskPurpose::Rollback, None, now, &mut out);
        let open = tasks
            .iter()
            .any(|t| t.purpose == TaskPurpose::Rollback && !t.state.is_final());
        if !open {
            let failed: Vec<&Task> = tasks
                .iter()
                .filter(|t| t.purpose == TaskPurpose::Rollback && t.state == TaskState::Failed)
                .collect();
            if failed.is_empty() {
                let state = if rollout.aborted_by.is_some() {
                    RolloutState::Aborted
                } else {
                    RolloutState::RolledBack
                };
                finish(rollout, state, None, now, &mut out);
            } else {
                let why = format!("; the rollback failed too: {}", describe(failed[0]));
                finish(rollout, RolloutState::Failed, Some(why), now, &mut out);
            }
        }
        return out;
    }

    // Running.
    loop {
        let failed: Vec<usize> = (0..tasks.len())
            .filter(|&i| {
                tasks[i].purpose == TaskPurpose::Deploy && tasks[i].state == TaskState::Failed
            })
            .collect();
        // A gate that fails halts at once, wherever the wave is.
        let fail = seen.gates.iter().find_map(|g| match &g.outcome {
            GateOutcome::Fail { reason } => Some((g.gate.as_str(), reason.as_str())),
            _ => None,
        });
        if let Some((gate, reason)) = fail {
            let reason = format!(
                "gate {gate}: {reason} (wave {} of {})",
                rollout.wave + 1,
                rollout.spec.waves.len()
            );
            halt(rollout, tasks, reason, now, &mut out);
            return out;
        }
        if failed.len() > rollout.spec.max_failed {
            let reason = format!(
                "wave {} of {}: {} host(s) failed (at most {} allowed); first: {}",
                rollout.wave + 1,
                rollout.spec.waves.len(),
                failed.len(),
                rollout.spec.max_failed,
                describe(&tasks[failed[0]])
            );
            halt(rollout, tasks, reason, now, &mut out);
            return out;
        }
        if let Some(until) = rollout.bake_until {
            if now < until {
                return out;
            }
            // Baked: the gates.
            let deployed_lost: Vec<&Task> = tasks
                .iter()
                .filter(|t| {
                    t.purpose == TaskPurpose::Deploy
                        && t.state == TaskState::Succeeded
                        && seen.lost.contains(&t.host)
                })
                .collect();
            if let Some(t) = deployed_lost.first() {
                let reason = format!(
                    "gate hosts_alive failed after wave {}: host {} stopped sending heartbeats after installing {}",
                    rollout.wave + 1,
                    t.host,
                    t.version
                );
                halt(rollout, tasks, reason, now, &mut out);
                return out;
            }
            // A gate still deciding holds the wave, up to max_analysis past the bake.
            let wait = seen.gates.iter().find_map(|g| match &g.outcome {
                GateOutcome::Wait { reason } => Some((g.gate.as_str(), reason.as_str())),
                _ => None,
            });
            if let Some((gate, reason)) = wait {
                let limit = until + Duration::seconds(rollout.spec.max_analysis_secs as i64);
                if now < limit {
                    return out;
                }
                rollout.state = RolloutState::Paused;
                rollout.reason = Some(format!(
                    "gate {gate} had not decided {} s after wave {}'s bake: {reason}; resume to give it as long again, or abort",
                    rollout.spec.max_analysis_secs,
                    rollout.wave + 1
                ));
                // A resume waits max_analysis again from here.
                rollout.bake_until = Some(now);
                rollout.updated_at = now;
                out.rollout_changed = true;
                return out;
            }
            rollout.bake_until = None;
            rollout.updated_at = now;
            out.rollout_changed = true;
            out.wave_passed = Some(rollout.wave);
            if rollout.wave + 1 >= rollout.spec.waves.len() {
                finish(rollout, RolloutState::Succeeded, None, now, &mut out);
                return out;
            }
            rollout.wave += 1;
            continue;
        }
        let wave = rollout.wave;
        dispatch(
            rollout,
            tasks,
            TaskPurpose::Deploy,
            Some(wave),
            now,
            &mut out,
        );
        let wave_open = tasks
            .iter()
            .any(|t| t.purpose == TaskPurpose::Deploy && t.wave == wave && !t.state.is_final());
        if wave_open {
            return out;
        }
        rollout.bake_until = Some(now + Duration::seconds(rollout.spec.bake_secs as i64));
        rollout.updated_at = now;
        out.rollout_changed = true;
        // Gates answered for the wave before it baked: the next tick asks them again.
        if rollout.spec.bake_secs > 0 || !seen.gates.is_empty() {
            return out;
        }
    }
}

/// Sends planned tasks of `purpose` (and `wave`, when given) to their agents, keeping at
/// most `parallel` open at once.
fn dispatch(
    rollout: &Rollout,
    tasks: &mut [Task],
    purpose: TaskPurpose,
    wave: Option<usize>,
    now: DateTime<Utc>,
    out: &mut Advance,
) {
    let ours = |t: &Task| t.purpose == purpose && wave.is_none_or(|w| t.wave == w);
    let open = tasks
        .iter()
        .filter(|t| ours(t) && t.state.is_open())
        .count();
    let limit = if rollout.spec.parallel == 0 {
        usize::MAX
    } else {
        rollout.spec.parallel
    };
    let mut room = limit.saturating_sub(open);
    for (i, task) in tasks.iter_mut().enumerate() {
        if room == 0 {
            break;
        }
        if ours(task) && task.state == TaskState::Planned {
            task.state = TaskState::Pending;
            task.updated_at = now;
            out.changed_tasks.push(i);
            room -= 1;
        }
    }
}

/// A gate failed: stop sending, and roll back the hosts the new build reached.
fn halt(
    rollout: &mut Rollout,
    tasks: &mut [Task],
    reason: String,
    now: DateTime<Utc>,
    out: &mut Advance,
) {
    for (i, task) in tasks.iter_mut().enumerate() {
        if task.purpose == TaskPurpose::Deploy && task.state == TaskState::Planned {
            task.state = TaskState::Cancelled;
            task.updated_at = now;
            out.changed_tasks.push(i);
        }
    }
    rollout.reason = Some(reason);
    let stopped = if rollout.aborted_by.is_some() {
        RolloutState::Aborted
    } else {
        RolloutState::Failed
    };
    if !rollout.spec.auto_rollback {
        finish(rollout, stopped, None, now, out);
        return;
    }
    let mut without_previous = Vec::new();
    for task in tasks.iter() {
        if task.purpose != TaskPurpose::Deploy || task.state == TaskState::Cancelled {
            continue;
        }
        let (Some(from_build), Some(from_version)) = (task.from_build, task.from_version.clone())
        else {
            without_previous.push(task.host.clone());
            continue;
        };
        if from_build == task.build_id {
            continue;
        }
        out.new_tasks.push(Task {
            id: Ulid::new(),
            rollout_id: Some(rollout.id),
            host: task.host.clone(),
            service: task.service.clone(),
            environment: task.environment.clone(),
            purpose: TaskPurpose::Rollback,
            wave: task.wave,
            build_id: from_build,
            version: from_version,
            from_build: Some(task.build_id),
            from_version: Some(task.version.clone()),
            state: TaskState::Planned,
            step: None,
            output: String::new(),
            error: None,
            created_at: now,
            updated_at: now,
            switched_at: None,
            undrained_at: None,
        });
    }
    if !without_previous.is_empty() {
        if let Some(r) = rollout.reason.as_mut() {
            r.push_str(&format!(
                "; no earlier build to return to on {}",
                without_previous.join(", ")
            ));
        }
    }
    rollout.state = RolloutState::RollingBack;
    rollout.bake_until = None;
    rollout.updated_at = now;
    out.rollout_changed = true;
    // Send the rollback tasks in this same tick.
    let limit = if rollout.spec.parallel == 0 {
        usize::MAX
    } else {
        rollout.spec.parallel
    };
    for task in out.new_tasks.iter_mut().take(limit) {
        task.state = TaskState::Pending;
    }
    if out.new_tasks.is_empty() {
        finish(rollout, stopped, None, now, out);
    }
}

fn finish(
    rollout: &mut Rollout,
    state: RolloutState,
    more_reason: Option<String>,
    now: DateTime<Utc>,
    out: &mut Advance,
) {
    if let Some(more) = more_reason {
        rollout.reason = Some(format!(
            "{}{more}",
            rollout.reason.clone().unwrap_or_default()
        ));
    }
    rollout.state = state;
    rollout.bake_until = None;
    rollout.finished_at = Some(now);
    rollout.updated_at = now;
    out.rollout_changed = true;
    out.finished = true;
}

/// "host web-3, step health: expected 200, got 500; last output: …"
pub fn describe(task: &Task) -> String {
    let mut s = format!(
        "host {}, step {}",
        task.host,
        task.step.as_deref().unwrap_or("(none)")
    );
    if let Some(e) = &task.error {
        s.push_str(": ");
        s.push_str(e);
    }
    let tail: Vec<&str> = task.output.lines().rev().take(3).collect();
    if !tail.is_empty() {
        s.push_str("; last output: ");
        s.push_str(&tail.into_iter().rev().collect::<Vec<_>>().join(" | "));
    }
    s
}

/// Aborting a rollout: stop sending, roll back what it reached if it rolls back on failure.
pub fn abort(
    rollout: &mut Rollout,
    tasks: &mut [Task],
    actor: &str,
    now: DateTime<Utc>,
) -> Advance {
    let mut out = Advance::default();
    if rollout.state.is_final() {
        return out;
    }
    let reason = format!("aborted by {actor}");
    if rollout.state == RolloutState::RollingBack {
        // Already returning; cancel what is not sent and let it finish.
        for (i, t) in tasks.iter_mut().enumerate() {
            if t.state == TaskState::Planned {
                t.state = TaskState::Cancelled;
                t.updated_at = now;
                out.changed_tasks.push(i);
            }
        }
        return out;
    }
    rollout.aborted_by = Some(actor.to_string());
    halt(rollout, tasks, reason, now, &mut out);
    out
}

// ---- API bodies and views shared by the server and its clients ----

/// A build and when each environment first ran it (lead time).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct BuildView {
    #[serde(flatten)]
    pub build: Build,
    pub environments: Vec<FirstDeployed>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct FirstDeployed {
    pub environment: String,
    pub first_at: DateTime<Utc>,
}

/// The body of `POST /api/v1/hosts`.
#[derive(Debug, Clone, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Enrollment {
    pub name: String,
    pub environment: String,
    #[serde(default)]
    pub roles: Vec<String>,
}

/// The answer to an enrollment: the host's token, shown once.
#[derive(Debug, Clone, Deserialize, Serialize, ToSchema)]
pub struct Enrolled {
    pub host: Host,
    /// The agent's token, bound to this host: `gantry agent --token-file`.
    pub token: String,
}

/// A host with its recent tasks.
#[derive(Debug, Clone, Deserialize, Serialize, ToSchema)]
pub struct HostView {
    #[serde(flatten)]
    pub host: Host,
    pub tasks: Vec<Task>,
}

#[derive(Debug, Clone, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Maintenance {
    pub on: bool,
}

/// The body of `POST /api/v1/rollouts`.
#[derive(Debug, Clone, Default, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewRollout {
    /// `deploy` (the default), `rollback` or `promote`.
    pub kind: Option<RolloutKind>,
    pub service: String,
    /// The environment to deploy to.
    pub environment: String,
    /// For `deploy`: a build id, a unique id prefix, or a version of the service.
    pub build: Option<String>,
    /// For `promote`: the environment whose build goes to `environment`.
    pub from: Option<String>,
    /// Cumulative wave sizes, e.g. `1,10%,50%,100%` (rollback: `100%`).
    pub waves: Option<String>,
    /// Bake time after each wave (`60s`, `5m`); rollback: none.
    pub bake: Option<String>,
    /// At most this many hosts at once within a wave (0: no limit).
    pub parallel: Option<usize>,
    /// Failed hosts tolerated before the rollout stops (default 0).
    pub max_failed: Option<usize>,
    /// Only hosts with one of these roles (default: the service's deploy config).
    pub roles: Option<Vec<String>>,
    /// Roll hosts back automatically when a gate fails (default true).
    pub auto_rollback: Option<bool>,
    /// Refuse to start when a target host is offline, instead of skipping it.
    pub require_all: Option<bool>,
    /// How long past a wave's bake gates may answer "wait" before the rollout pauses
    /// (default `10m`).
    pub max_analysis: Option<String>,
}

/// A rollout and its per-host tasks.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct RolloutView {
    #[serde(flatten)]
    pub rollout: Rollout,
    pub tasks: Vec<Task>,
}

/// A service's deploy configuration as applied, and as Gantry reads it.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct DeployConfigView {
    pub service: String,
    /// The TOML text as applied.
    pub source: String,
    pub config: DeployConfig,
    pub updated_by: String,
    pub updated_at: chrono::DateTime<Utc>,
    /// On apply: the change that recorded it (absent when nothing changed).
    #[schema(value_type = Option<String>)]
    pub change_id: Option<Ulid>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t0() -> DateTime<Utc> {
        DateTime::from_timestamp(1_700_000_000, 0).unwrap()
    }

    fn rollout(waves: &[usize], bake: u64, parallel: usize, max_failed: usize) -> Rollout {
        Rollout {
            id: Ulid::new(),
            kind: RolloutKind::Deploy,
            service: "shop".into(),
            environment: "prod".into(),
            build_id: Ulid::new(),
            version: "2".into(),
            change_id: Ulid::new(),
            state: RolloutState::Running,
            wave: 0,
            bake_until: None,
            reason: None,
            spec: RolloutSpec {
                waves: waves.to_vec(),
                wave_sizes: String::new(),
                bake_secs: bake,
                parallel,
                max_failed,
                roles: None,
                auto_rollback: true,
                max_analysis_secs: 60,
            },
            skipped: vec![],
            aborted_by: None,
            control: None,
            reverts: None,
            created_by: "t".into(),
            created_at: t0(),
            updated_at: t0(),
            finished_at: None,
        }
    }

    fn tasks(r: &Rollout, hosts: usize) -> Vec<Task> {
        let old = Ulid::new();
        (0..hosts)
            .map(|i| Task {
                id: Ulid::new(),
                rollout_id: Some(r.id),
                host: format!("h{i}"),
                service: "shop".into(),
                environment: "prod".into(),
                purpose: TaskPurpose::Deploy,
                wave: r.spec.waves.iter().position(|&n| i < n).unwrap(),
                build_id: r.build_id,
                version: "2".into(),
                from_build: Some(old),
                from_version: Some("1".into()),
                state: TaskState::Planned,
                step: None,
                output: String::new(),
                error: None,
                created_at: t0(),
                updated_at: t0(),
                switched_at: None,
                undrained_at: None,
            })
            .collect()
    }

    fn tick(
        r: &mut Rollout,
        ts: &mut Vec<Task>,
        now: DateTime<Utc>,
        lost: &HashSet<String>,
    ) -> Advance {
        let out = advance(
            r,
            ts,
            &Observed {
                now,
                lost,
                gates: vec![],
            },
        );
        ts.extend(out.new_tasks.iter().cloned());
        out
    }

    fn complete(ts: &mut [Task], state: TaskState) {
        for t in ts.iter_mut().filter(|t| t.state.is_open()) {
            t.state = state;
            t.step = Some("health".into());
        }
    }

    #[test]
    fn parses_and_plans_waves() {
        let w = WaveSize::parse_list("1,10%,50%,100%").unwrap();
        assert_eq!(WaveSize::plan(&w, 1000), vec![1, 100, 500, 1000]);
        assert_eq!(WaveSize::plan(&w, 3), vec![1, 2, 3]);
        assert_eq!(WaveSize::plan(&w, 1), vec![1]);
        assert_eq!(WaveSize::plan(&w, 0), Vec::<usize>::new());
        // The last wave always takes every host.
        let w = WaveSize::parse_list("1,10%").unwrap();
        assert_eq!(WaveSize::plan(&w, 50), vec![1, 5, 50]);
        for bad in ["0", "x", "150%", "-1", "", "10%%"] {
            assert!(WaveSize::parse_list(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn clean_rollout_goes_wave_by_wave_with_bake_and_parallel_limit() {
        let mut r = rollout(&[1, 3, 6], 60, 2, 0);
        let mut ts = tasks(&r, 6);
        let none = HashSet::new();
        tick(&mut r, &mut ts, t0(), &none);
        assert_eq!(
            ts.iter().filter(|t| t.state == TaskState::Pending).count(),
            1
        );
        complete(&mut ts, TaskState::Succeeded);
        tick(&mut r, &mut ts, t0(), &none);
        assert!(r.bake_until.is_some(), "wave 1 bakes");
        assert_eq!(
            ts.iter().filter(|t| t.state == TaskState::Pending).count(),
            0
        );
        tick(&mut r, &mut ts, t0() + Duration::seconds(30), &none);
        assert_eq!(r.wave, 0, "still baking");
        tick(&mut r, &mut ts, t0() + Duration::seconds(61), &none);
        assert_eq!(r.wave, 1);
        // Wave 2 has two hosts, parallel 2.
        assert_eq!(
            ts.iter().filter(|t| t.state == TaskState::Pending).count(),
            2
        );
        complete(&mut ts, TaskState::Succeeded);
        tick(&mut r, &mut ts, t0() + Duration::seconds(62), &none);
        tick(&mut r, &mut ts, t0() + Duration::seconds(130), &none);
        assert_eq!(r.wave, 2);
        // Wave 3: three hosts, two at once.
        assert_eq!(
            ts.iter().filter(|t| t.state == TaskState::Pending).count(),
            2
        );
        complete(&mut ts, TaskState::Succeeded);
        tick(&mut r, &mut ts, t0() + Duration::seconds(131), &none);
        assert_eq!(
            ts.iter().filter(|t| t.state == TaskState::Pending).count(),
            1
        );
        complete(&mut ts, TaskState::Succeeded);
        tick(&mut r, &mut ts, t0() + Duration::seconds(132), &none);
        let out = tick(&mut r, &mut ts, t0() + Duration::seconds(200), &none);
        assert!(out.finished);
        assert_eq!(r.state, RolloutState::Succeeded);
    }

    #[test]
    fn zero_bake_runs_every_wave_without_waiting() {
        let mut r = rollout(&[1, 2], 0, 0, 0);
        let mut ts = tasks(&r, 2);
        let none = HashSet::new();
        tick(&mut r, &mut ts, t0(), &none);
        complete(&mut ts, TaskState::Succeeded);
        tick(&mut r, &mut ts, t0(), &none);
        assert_eq!(r.wave, 1);
        complete(&mut ts, TaskState::Succeeded);
        tick(&mut r, &mut ts, t0(), &none);
        assert_eq!(r.state, RolloutState::Succeeded);
    }

    #[test]
    fn a_failure_in_wave_two_rolls_back_every_host_the_build_reached() {
        let mut r = rollout(&[1, 3, 5], 0, 0, 0);
        let mut ts = tasks(&r, 5);
        let none = HashSet::new();
        tick(&mut r, &mut ts, t0(), &none);
        complete(&mut ts, TaskState::Succeeded);
        tick(&mut r, &mut ts, t0(), &none);
        assert_eq!(r.wave, 1);
        // Wave 2: one host fails its health check, one succeeds.
        ts[1].state = TaskState::Failed;
        ts[1].step = Some("health".into());
        ts[1].error = Some("expected status 200, got 500".into());
        ts[1].output = "booting\nversion 2 broken".into();
        ts[2].state = TaskState::Succeeded;
        tick(&mut r, &mut ts, t0(), &none);
        assert_eq!(r.state, RolloutState::RollingBack);
        let reason = r.reason.clone().unwrap();
        assert!(reason.contains("wave 2 of 3"), "{reason}");
        assert!(
            reason.contains("host h1, step health: expected status 200, got 500"),
            "{reason}"
        );
        assert!(reason.contains("version 2 broken"), "{reason}");
        // Wave 3 never starts; hosts 0..3 go back to version 1.
        assert!(ts[3..5].iter().all(|t| t.state == TaskState::Cancelled));
        let rb: Vec<&Task> = ts
            .iter()
            .filter(|t| t.purpose == TaskPurpose::Rollback)
            .collect();
        assert_eq!(rb.len(), 3);
        assert!(rb
            .iter()
            .all(|t| t.version == "1" && t.state == TaskState::Pending));
        complete(&mut ts, TaskState::Succeeded);
        let out = tick(&mut r, &mut ts, t0(), &none);
        assert!(out.finished);
        assert_eq!(r.state, RolloutState::RolledBack);
    }

    #[test]
    fn without_auto_rollback_a_failure_ends_failed() {
        let mut r = rollout(&[1, 2], 0, 0, 0);
        r.spec.auto_rollback = false;
        let mut ts = tasks(&r, 2);
        let none = HashSet::new();
        tick(&mut r, &mut ts, t0(), &none);
        complete(&mut ts, TaskState::Failed);
        tick(&mut r, &mut ts, t0(), &none);
        assert_eq!(r.state, RolloutState::Failed);
        assert_eq!(ts[1].state, TaskState::Cancelled);
    }

    #[test]
    fn max_failed_tolerates_that_many() {
        let mut r = rollout(&[2], 0, 0, 1);
        let mut ts = tasks(&r, 2);
        let none = HashSet::new();
        tick(&mut r, &mut ts, t0(), &none);
        ts[0].state = TaskState::Failed;
        ts[1].state = TaskState::Succeeded;
        tick(&mut r, &mut ts, t0(), &none);
        assert_eq!(r.state, RolloutState::Succeeded);
    }

    #[test]
    fn a_lost_host_fails_its_task_and_the_rollback_fails_when_it_cannot_finish() {
        let mut r = rollout(&[2], 0, 0, 0);
        let mut ts = tasks(&r, 2);
        let none = HashSet::new();
        tick(&mut r, &mut ts, t0(), &none);
        ts[0].state = TaskState::Running;
        ts[0].step = Some("switch".into());
        let lost: HashSet<String> = ["h0".to_string()].into();
        tick(&mut r, &mut ts, t0(), &lost);
        assert_eq!(ts[0].state, TaskState::Failed);
        assert!(ts[0]
            .error
            .as_deref()
            .unwrap()
            .contains("during step switch"));
        assert_eq!(r.state, RolloutState::RollingBack);
        // h1 was pending; both get rollback tasks; h0 is lost, so its rollback fails too.
        tick(&mut r, &mut ts, t0(), &lost);
        complete(&mut ts, TaskState::Succeeded);
        tick(&mut r, &mut ts, t0(), &none);
        assert_eq!(r.state, RolloutState::Failed, "{:?}", r.reason);
        assert!(r
            .reason
            .as_deref()
            .unwrap()
            .contains("the rollback failed too"));
    }

    #[test]
    fn a_pluggable_gate_failure_halts() {
        let mut r = rollout(&[1, 2], 0, 0, 0);
        let mut ts = tasks(&r, 2);
        let none = HashSet::new();
        tick(&mut r, &mut ts, t0(), &none);
        complete(&mut ts, TaskState::Succeeded);
        let out = advance(
            &mut r,
            &mut ts,
            &Observed {
                now: t0(),
                lost: &none,
                gates: vec![GateVerdict {
                    gate: "monitor".into(),
                    outcome: GateOutcome::Fail {
                        reason: "error rate 12%".into(),
                    },
                }],
            },
        );
        assert_eq!(r.state, RolloutState::RollingBack);
        assert_eq!(out.new_tasks.len(), 1);
        assert!(r
            .reason
            .as_deref()
            .unwrap()
            .contains("gate monitor: error rate 12% (wave 1 of 2)"));
    }

    /// One tick with these gate answers.
    fn with_gates(
        r: &mut Rollout,
        ts: &mut Vec<Task>,
        now: DateTime<Utc>,
        gates: &[(&str, GateOutcome)],
    ) -> Advance {
        let none = HashSet::new();
        let out = advance(
            r,
            ts,
            &Observed {
                now,
                lost: &none,
                gates: gates
                    .iter()
                    .map(|(g, o)| GateVerdict {
                        gate: g.to_string(),
                        outcome: o.clone(),
                    })
                    .collect(),
            },
        );
        ts.extend(out.new_tasks.iter().cloned());
        out
    }

    #[test]
    fn gates_are_data_driven_pass_wait_and_fail() {
        use GateOutcome::*;
        let wait = || Wait {
            reason: "3 points after the switch".into(),
        };
        let fail = || Fail {
            reason: "verdict 01ABC".into(),
        };
        let s = Duration::seconds;
        // (gate answers on the ticks at t0 + offset; what the rollout is after the last)
        struct Case {
            name: &'static str,
            ticks: Vec<(i64, Vec<GateOutcome>)>,
            state: RolloutState,
            wave: usize,
            reason: Option<&'static str>,
        }
        let cases = vec![
            Case {
                name: "pass all the way",
                ticks: vec![
                    (0, vec![Pass]),
                    (10, vec![Pass]),
                    (20, vec![Pass]),
                    (30, vec![Pass]),
                    (40, vec![Pass]),
                ],
                state: RolloutState::Succeeded,
                wave: 1,
                reason: None,
            },
            Case {
                name: "a fail before the bake ends halts at once",
                ticks: vec![(0, vec![Pass]), (10, vec![Pass]), (15, vec![Pass, fail()])],
                state: RolloutState::RollingBack,
                wave: 0,
                reason: Some("gate g: verdict 01ABC (wave 1 of 2)"),
            },
            Case {
                name: "a wait before the bake ends changes nothing",
                ticks: vec![
                    (0, vec![wait()]),
                    (10, vec![wait()]),
                    (15, vec![wait()]),
                    (20, vec![Pass]),
                ],
                state: RolloutState::Running,
                wave: 1,
                reason: None,
            },
            Case {
                name: "a wait at bake end holds the wave within max_analysis",
                ticks: vec![
                    (0, vec![Pass]),
                    (10, vec![Pass]),
                    (20, vec![wait()]),
                    (79, vec![wait()]),
                ],
                state: RolloutState::Running,
                wave: 0,
                reason: None,
            },
            Case {
                name: "a wait that outlasts max_analysis pauses with the reason",
                ticks: vec![
                    (0, vec![Pass]),
                    (10, vec![Pass]),
                    (20, vec![wait()]),
                    (80, vec![wait()]),
                ],
                state: RolloutState::Paused,
                wave: 0,
                reason: Some(
                    "gate g had not decided 60 s after wave 1's bake: 3 points after the switch",
                ),
            },
            Case {
                name: "a wait that turns into a pass goes on",
                ticks: vec![
                    (0, vec![Pass]),
                    (10, vec![Pass]),
                    (20, vec![wait()]),
                    (50, vec![Pass]),
                ],
                state: RolloutState::Running,
                wave: 1,
                reason: None,
            },
        ];
        for case in cases {
            let mut r = rollout(&[1, 2], 10, 0, 0);
            let mut ts = tasks(&r, 2);
            for (at, answers) in &case.ticks {
                let named: Vec<(&str, GateOutcome)> =
                    answers.iter().map(|o| ("g", o.clone())).collect();
                with_gates(&mut r, &mut ts, t0() + s(*at), &named);
                if r.state == RolloutState::Running {
                    complete(&mut ts, TaskState::Succeeded);
                }
            }
            assert_eq!(r.state, case.state, "{}: {:?}", case.name, r.reason);
            if r.state == RolloutState::Running {
                assert_eq!(r.wave, case.wave, "{}", case.name);
            }
            match case.reason {
                Some(needle) => assert!(
                    r.reason.as_deref().unwrap_or("").contains(needle),
                    "{}: {:?}",
                    case.name,
                    r.reason
                ),
                None => assert_eq!(r.reason, None, "{}", case.name),
            }
        }
    }

    #[test]
    fn a_task_notes_when_its_host_switched_and_served_again() {
        let r = rollout(&[1], 0, 0, 0);
        let mut t = tasks(&r, 1).remove(0);
        let at = |s: i64| t0() + Duration::seconds(s);
        for (step, state, now) in [
            ("fetch", TaskState::Running, 1),
            ("switch", TaskState::Running, 2),
            ("restart", TaskState::Running, 3),
            ("undrain", TaskState::Running, 4),
            ("after_switch", TaskState::Running, 5),
            ("prune", TaskState::Succeeded, 6),
        ] {
            t.step = Some(step.into());
            t.state = state;
            t.note_progress(at(now));
        }
        assert_eq!((t.switched_at, t.undrained_at), (Some(at(3)), Some(at(5))));
        // A host that never got past the switch did not change; one that fails its health
        // check after switching did.
        let mut t = tasks(&r, 1).remove(0);
        t.step = Some("switch".into());
        t.note_progress(at(1));
        assert_eq!(t.switched_at, None);
        t.step = Some("health".into());
        t.state = TaskState::Failed;
        t.note_progress(at(2));
        assert_eq!((t.switched_at, t.undrained_at), (Some(at(2)), None));
    }

    #[test]
    fn log_counts_name_one_metric_each() {
        let hello = |service: &str, name: &str| AgentHello {
            log_counts: vec![LogCount {
                service: service.into(),
                name: name.into(),
                count: 1,
            }],
            ..AgentHello::default()
        };
        assert!(hello("shop", "payment.errors").validate().is_ok());
        assert!(AgentHello::default().validate().is_ok());
        for (service, name, field) in [
            ("x 1 1\nevil", "errors", "log_counts[0].service"),
            ("shop", "a b", "log_counts[0].name"),
            ("", "errors", "log_counts[0].service"),
            ("shop", "../x", "log_counts[0].name"),
        ] {
            let e = hello(service, name).validate().unwrap_err();
            assert!(e.0.starts_with(field), "{service:?} {name:?}: {e}");
        }
    }

    #[test]
    fn reports_are_checked_and_applied() {
        let report = |state, step: Option<&str>| TaskReport {
            state,
            step: step.map(str::to_string),
            output: String::new(),
            error: None,
        };
        for state in [TaskState::Planned, TaskState::Pending, TaskState::Cancelled] {
            let e = report(state, None).validate().unwrap_err();
            assert!(e.0.contains("running, succeeded or failed"), "{e}");
        }
        let e = report(TaskState::Running, Some("dance"))
            .validate()
            .unwrap_err();
        assert!(e.0.starts_with("step 'dance' is not one of fetch, "), "{e}");
        assert!(report(TaskState::Failed, Some("health")).validate().is_ok());

        let r = rollout(&[1], 0, 0, 0);
        let mut t = tasks(&r, 1).remove(0);
        t.step = Some("fetch".into());
        t.output = "kept".into();
        t.apply_report(report(TaskState::Running, None), t0());
        assert_eq!(
            (t.state, t.step.as_deref(), t.output.as_str(), t.updated_at),
            (TaskState::Running, Some("fetch"), "kept", t0())
        );
        t.apply_report(
            TaskReport {
                state: TaskState::Failed,
                step: Some("health".into()),
                output: "x".repeat(MAX_TASK_OUTPUT + 10),
                error: Some("503".into()),
            },
            t0() + Duration::seconds(1),
        );
        assert_eq!(t.output.len(), MAX_TASK_OUTPUT);
        assert_eq!(t.error.as_deref(), Some("503"));
        assert_eq!(t.switched_at, Some(t0() + Duration::seconds(1)));
        t.apply_report(report(TaskState::Failed, None), t0());
        assert_eq!(
            t.error.as_deref(),
            Some("503"),
            "an error stays until replaced"
        );
    }

    #[test]
    fn abort_stops_and_rolls_back() {
        let mut r = rollout(&[1, 2], 0, 0, 0);
        let mut ts = tasks(&r, 2);
        let none = HashSet::new();
        tick(&mut r, &mut ts, t0(), &none);
        complete(&mut ts, TaskState::Succeeded);
        let out = abort(&mut r, &mut ts, "alice", t0());
        assert_eq!(r.state, RolloutState::RollingBack);
        assert_eq!(out.new_tasks.len(), 1);
        assert_eq!(r.reason.as_deref(), Some("aborted by alice"));
    }

    #[test]
    fn versions_and_digests() {
        assert!(validate_version("1.2.3+build.7").is_ok());
        assert!(validate_version("a b").is_err());
        assert!(validate_version("../x").is_err());
        assert!(validate_sha256(&"a".repeat(64)).is_ok());
        assert!(validate_sha256(&"A".repeat(64)).is_err());
        assert!(output_tail(&"é".repeat(10_000)).len() <= MAX_TASK_OUTPUT);
    }
}
