//! Drives rollouts. Every server runs one; each active rollout is driven by exactly one
//! server at a time, the holder of the lease `rollout:<id>`, which another server takes over
//! when it expires (a server that died mid-rollout). A tick reads the rollout and its tasks
//! from the store, runs the pure state machine (`gantry_core::ship::advance`) and writes
//! back what changed in one transaction, so a restart resumes exactly where the database says.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use gantry_core::ship::{
    advance, GateOutcome, GateVerdict, HostStatus, Observed, Rollout, RolloutKind, RolloutState,
    Task, TaskPurpose, TaskState,
};
use gantry_core::{ChangePatch, ChangeStatus};
use gantry_store::{Deployment, Store};
use tokio_util::sync::CancellationToken;

use super::bell::Bell;
use super::ShipConfig;

/// How long a server holds a rollout without renewing it.
const LEASE_TTL: Duration = Duration::from_secs(15);

/// What a gate is shown on each tick of a running rollout.
pub struct GateContext<'a> {
    pub rollout: &'a Rollout,
    pub tasks: &'a [Task],
    pub now: DateTime<Utc>,
}

/// A check asked on every tick while a rollout runs (monitors, regression detection): pass,
/// wait (a baked wave waits up to `--max-analysis`, then the rollout pauses) or fail (the
/// rollout halts at once and rolls back). The built-in gates (hosts healthy, failures
/// within `--max-failed`, no host lost) are part of the state machine; other pillars add
/// theirs here. A gate reads what is stored (verdicts a detector computed); it must answer
/// within [`GATE_TIMEOUT`], or it counts as waiting.
#[async_trait::async_trait]
pub trait Gate: Send + Sync {
    fn name(&self) -> &str;
    async fn check(&self, cx: &GateContext<'_>) -> GateOutcome;
}

/// How long a gate may take to answer.
pub const GATE_TIMEOUT: Duration = Duration::from_secs(2);

pub struct Orchestrator {
    pub store: Arc<dyn Store>,
    pub bell: Arc<Bell>,
    pub config: ShipConfig,
    pub gates: Vec<Arc<dyn Gate>>,
    /// This server's lease holder name.
    pub holder: String,
}

impl Orchestrator {
    pub async fn run(self: Arc<Self>, shutdown: CancellationToken) {
        let mut reports = self.bell.subscribe_reports();
        let period = Duration::from_millis(self.config.tick_ms.max(10));
        loop {
            if let Err(e) = self.tick_all(Utc::now()).await {
                tracing::warn!(error = %e, "rollout tick failed; retrying");
            }
            let wake = async {
                match reports.as_mut() {
                    Some(r) => {
                        let _ = r.changed().await;
                        // Let a burst of reports land before looking again: one tick
                        // reads every task of a rollout.
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = tokio::time::sleep(period) => {}
                _ = wake => {}
            }
        }
        // Hand the rollouts over at once rather than after the lease expires.
        if let Ok(active) = self.store.list_rollouts(None, None, true, 1000).await {
            for r in active {
                let _ = self
                    .store
                    .release_lease(&lease_name(&r), &self.holder)
                    .await;
            }
        }
    }

    /// One pass over every active rollout this server holds or can take.
    pub async fn tick_all(&self, now: DateTime<Utc>) -> Result<(), gantry_store::StoreError> {
        let active = self.store.list_rollouts(None, None, true, 1000).await?;
        for rollout in active {
            if !self
                .store
                .try_acquire_lease(&lease_name(&rollout), &self.holder, LEASE_TTL, now)
                .await?
            {
                continue;
            }
            if let Err(e) = self.tick(rollout, now).await {
                tracing::warn!(error = %e, "rollout tick failed");
            }
        }
        Ok(())
    }

    async fn tick(
        &self,
        mut rollout: Rollout,
        now: DateTime<Utc>,
    ) -> Result<(), gantry_store::StoreError> {
        let before = rollout.clone();
        let mut tasks = self.store.rollout_tasks(rollout.id).await?;
        let snapshot: Vec<Task> = tasks.clone();
        // A person's request first.
        let mut changed_idx: Vec<usize> = Vec::new();
        if let Some(control) = rollout.control.clone() {
            if control == "pause" && rollout.state == RolloutState::Running {
                rollout.state = RolloutState::Paused;
                rollout.updated_at = now;
            } else if control == "resume" && rollout.state == RolloutState::Paused {
                rollout.state = RolloutState::Running;
                rollout.updated_at = now;
                // Gates that kept a baked wave waiting get --max-analysis again from now,
                // and the pause's reason no longer holds.
                if rollout.bake_until.is_some_and(|t| t <= now) {
                    rollout.bake_until = Some(now);
                }
                rollout.reason = None;
            } else if let Some(actor) = control.strip_prefix("abort:") {
                if rollout.state == RolloutState::Paused {
                    rollout.state = RolloutState::Running;
                }
                let out = gantry_core::ship::abort(&mut rollout, &mut tasks, actor, now);
                changed_idx.extend(out.changed_tasks);
                tasks.extend(out.new_tasks);
            }
        }
        let lost = self.lost_hosts(&rollout.environment, now).await?;
        let mut gates = Vec::new();
        if rollout.state == RolloutState::Running {
            let cx = GateContext {
                rollout: &rollout,
                tasks: &tasks,
                now,
            };
            for gate in &self.gates {
                let outcome = tokio::time::timeout(GATE_TIMEOUT, gate.check(&cx))
                    .await
                    .unwrap_or_else(|_| GateOutcome::Wait {
                        reason: format!("gate {} did not answer within 2 s", gate.name()),
                    });
                gates.push(GateVerdict {
                    gate: gate.name().to_string(),
                    outcome,
                });
            }
        }
        let out = advance(
            &mut rollout,
            &mut tasks,
            &Observed {
                now,
                lost: &lost,
                gates,
            },
        );
        changed_idx.extend(out.changed_tasks.iter().copied());
        changed_idx.sort_unstable();
        changed_idx.dedup();
        let changed: Vec<&Task> = changed_idx
            .iter()
            .filter(|&&i| i < snapshot.len() && tasks[i] != snapshot[i])
            .map(|&i| &tasks[i])
            .collect();
        let mut new_tasks: Vec<Task> = tasks[snapshot.len()..].to_vec();
        new_tasks.extend(out.new_tasks.iter().cloned());
        if rollout == before && changed.is_empty() && new_tasks.is_empty() {
            return Ok(());
        }
        let deployment =
            (out.finished && rollout.state == RolloutState::Succeeded).then(|| Deployment {
                service: rollout.service.clone(),
                environment: rollout.environment.clone(),
                at: now,
                rollout_id: rollout.id,
                build_id: rollout.build_id,
            });
        let hosts = self
            .store
            .save_rollout(&rollout, &changed, &new_tasks, deployment.as_ref())
            .await?;
        // On SQLite the signal is in-process; ringing here too only helps.
        self.bell.ring(&hosts);
        if out.wave_passed.is_some() || out.finished || rollout.state != before.state {
            let mut all = tasks[..snapshot.len()].to_vec();
            all.extend(new_tasks.iter().cloned());
            self.record_progress(&rollout, &all, out.finished, now)
                .await;
        }
        if out.finished {
            tracing::info!(
                rollout = %rollout.id,
                service = %rollout.service,
                environment = %rollout.environment,
                state = %rollout.state,
                reason = rollout.reason.as_deref().unwrap_or(""),
                "rollout finished"
            );
            let _ = self
                .store
                .release_lease(&lease_name(&rollout), &self.holder)
                .await;
            // A remedy of an incident: the incident learns how it ended.
            // (started by it, so its change says `via`; or halted by it, so `aborted_by` does).
            let halted_for = rollout
                .aborted_by
                .as_deref()
                .and_then(|a| a.split("(incident ").nth(1))
                .and_then(|rest| rest.trim_end_matches(')').parse::<ulid::Ulid>().ok());
            if let Ok(Some(change)) = self.store.get_change(rollout.change_id).await {
                let incident = change
                    .metadata
                    .get("via")
                    .and_then(|v| v.as_str())
                    .and_then(|v| v.strip_prefix("incident "))
                    .and_then(|id| id.parse::<ulid::Ulid>().ok())
                    .or(halted_for);
                if let Some(incident) = incident {
                    crate::incidents::remedy_finished(self.store.as_ref(), incident, &rollout)
                        .await;
                }
            }
        }
        Ok(())
    }

    async fn lost_hosts(
        &self,
        env: &str,
        now: DateTime<Utc>,
    ) -> Result<HashSet<String>, gantry_store::StoreError> {
        let after = chrono::Duration::seconds(self.config.host_lost_after_secs as i64);
        Ok(self
            .store
            .list_hosts(Some(env))
            .await?
            .into_iter()
            .filter(|h| {
                gantry_core::ship::Host::status_at(h.last_seen_at, now, after) != HostStatus::Online
            })
            .map(|h| h.name)
            .collect())
    }

    /// Updates the rollout's change at wave boundaries and at the end.
    async fn record_progress(
        &self,
        r: &Rollout,
        tasks: &[Task],
        finished: bool,
        now: DateTime<Utc>,
    ) {
        let description = progress_text(r, tasks, now);
        let status = finished.then(|| change_status(r.state));
        let patch = ChangePatch {
            status,
            finished_at: finished.then_some(now),
            description: Some(description),
        };
        if let Err(e) = self
            .store
            .update_change(r.change_id, &patch, "gantry", now)
            .await
        {
            tracing::warn!(error = %e, change = %r.change_id, "cannot update the rollout's change");
        }
    }
}

pub fn lease_name(r: &Rollout) -> String {
    format!("rollout:{}", r.id)
}

/// The change status a rollout's outcome records.
pub fn change_status(state: RolloutState) -> ChangeStatus {
    match state {
        RolloutState::Succeeded => ChangeStatus::Succeeded,
        RolloutState::RolledBack => ChangeStatus::RolledBack,
        RolloutState::Aborted => ChangeStatus::Cancelled,
        RolloutState::Failed => ChangeStatus::Failed,
        RolloutState::Running | RolloutState::Paused | RolloutState::RollingBack => {
            ChangeStatus::InProgress
        }
    }
}

/// The change's description: where the rollout is, per wave, and why it stopped.
pub fn progress_text(r: &Rollout, tasks: &[Task], now: DateTime<Utc>) -> String {
    let deploy: Vec<&Task> = tasks
        .iter()
        .filter(|t| t.purpose == TaskPurpose::Deploy)
        .collect();
    let done = deploy
        .iter()
        .filter(|t| t.state == TaskState::Succeeded)
        .count();
    let failed = deploy
        .iter()
        .filter(|t| t.state == TaskState::Failed)
        .count();
    let what = match r.kind {
        RolloutKind::Rollback => format!(
            "rollback of {} to {} in {}",
            r.service, r.version, r.environment
        ),
        RolloutKind::Promote => format!(
            "promote of {} {} to {}",
            r.service, r.version, r.environment
        ),
        RolloutKind::Deploy => {
            format!("deploy of {} {} to {}", r.service, r.version, r.environment)
        }
    };
    let mut s = format!(
        "{}: {}; {} of {} hosts succeeded, {} failed; wave {} of {} ({})",
        what,
        r.state,
        done,
        deploy.len(),
        failed,
        (r.wave + 1).min(r.spec.waves.len().max(1)),
        r.spec.waves.len(),
        r.spec.wave_sizes
    );
    let rollback: Vec<&Task> = tasks
        .iter()
        .filter(|t| t.purpose == TaskPurpose::Rollback)
        .collect();
    if !rollback.is_empty() {
        let back = rollback
            .iter()
            .filter(|t| t.state == TaskState::Succeeded)
            .count();
        s.push_str(&format!(
            "; automatic rollback: {back} of {} hosts back",
            rollback.len()
        ));
    }
    if !r.skipped.is_empty() {
        s.push_str(&format!(
            "; skipped (offline or in maintenance): {}",
            r.skipped.join(", ")
        ));
    }
    if let Some(reason) = &r.reason {
        s.push_str(&format!("; reason: {reason}"));
    }
    if let Some(end) = r.finished_at {
        s.push_str(&format!(
            "; took {} s",
            (end - r.created_at).num_seconds().max(0)
        ));
    } else {
        s.push_str(&format!(
            "; running for {} s",
            (now - r.created_at).num_seconds().max(0)
        ));
    }
    if s.len() > 60_000 {
        let mut cut = 60_000;
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        s.truncate(cut);
        s.push('…');
    }
    s
}
