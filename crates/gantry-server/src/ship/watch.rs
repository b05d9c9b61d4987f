//! A rollout as it moves, for whoever watches it: the API's
//! `GET /api/v1/rollouts/{id}/stream` and the dashboard's rollout page share this.
//! Each update carries the rollout and only the host tasks that changed since the last one,
//! at most one update a second. Woken by the same signal that wakes the orchestrator (it
//! crosses servers through the store), with a poll as the fallback.

use std::collections::HashMap;
use std::time::Duration;

use futures::Stream;
use gantry_core::ship::{Rollout, Task, TaskState};
use ulid::Ulid;

use crate::state::AppState;

/// The most often an update is sent.
pub const MIN_INTERVAL: Duration = Duration::from_secs(1);
/// How far before `after` a resumed stream looks again: a task's `updated_at` is stamped
/// before its write commits (and by whichever server took the report), so a write can
/// become visible after one stamped later. Rows sent twice are harmless.
const RESUME_SLACK_MS: i64 = 5_000;
/// How long a watcher waits for a wake-up before it reads anyway.
const POLL: Duration = Duration::from_secs(5);

/// One step of a rollout.
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct RolloutUpdate {
    /// Resume after this with `Last-Event-ID` (or `?after=`): the newest `updated_at` of the
    /// rollout and its tasks, in milliseconds since the epoch.
    pub seq: i64,
    pub rollout: Rollout,
    /// The tasks that changed since the previous update (every task in the first one, or
    /// every task changed after `after` when resuming).
    pub tasks: Vec<Task>,
}

/// What a task looked like when it was last sent.
#[derive(PartialEq, Eq)]
struct Seen {
    state: TaskState,
    step: Option<String>,
    updated_at: i64,
}

fn seen(t: &Task) -> Seen {
    Seen {
        state: t.state,
        step: t.step.clone(),
        updated_at: t.updated_at.timestamp_millis(),
    }
}

/// Updates of rollout `id` from now on (or, with `after`, every task changed since that
/// point first, and those changed in the few seconds before it again). Ends after the update that shows the rollout finished, when the rollout
/// is deleted, or when the server shuts down.
pub fn follow(state: AppState, id: Ulid, after: Option<i64>) -> impl Stream<Item = RolloutUpdate> {
    struct Follow {
        state: AppState,
        id: Ulid,
        after: Option<i64>,
        sent: HashMap<Ulid, Seen>,
        rollout_seen: Option<(i64, String)>,
        first: bool,
        done: bool,
        wake: Option<tokio::sync::watch::Receiver<u64>>,
    }
    let shutdown = state.shutdown.clone();
    let wake = state.bell.subscribe_reports();
    let updates = futures::stream::unfold(
        Follow {
            state,
            id,
            after,
            sent: HashMap::new(),
            rollout_seen: None,
            first: true,
            done: false,
            wake,
        },
        |mut f| async move {
            if f.done {
                return None;
            }
            loop {
                if !f.first {
                    tokio::time::sleep(MIN_INTERVAL).await;
                }
                let read = async {
                    let rollout = f.state.store.get_rollout(f.id).await?;
                    let tasks = match &rollout {
                        Some(r) => f.state.store.rollout_tasks(r.id).await?,
                        None => Vec::new(),
                    };
                    Ok::<_, gantry_store::StoreError>((rollout, tasks))
                };
                match read.await {
                    Ok((None, _)) => return None,
                    Ok((Some(rollout), tasks)) => {
                        let mut changed = Vec::new();
                        for t in tasks {
                            let now = seen(&t);
                            let fresh = match (f.first, f.after) {
                                (true, Some(after)) => {
                                    now.updated_at >= after.saturating_sub(RESUME_SLACK_MS)
                                }
                                (true, None) => true,
                                (false, _) => f.sent.get(&t.id) != Some(&now),
                            };
                            f.sent.insert(t.id, now);
                            if fresh {
                                changed.push(t);
                            }
                        }
                        let marker = (
                            rollout.updated_at.timestamp_millis(),
                            format!("{}/{}/{:?}", rollout.state, rollout.wave, rollout.reason),
                        );
                        let rollout_changed = f.rollout_seen.as_ref() != Some(&marker);
                        f.rollout_seen = Some(marker);
                        let first = std::mem::replace(&mut f.first, false);
                        if first || rollout_changed || !changed.is_empty() {
                            // `sent` holds every task as just read, the changed ones too.
                            let seq = f
                                .sent
                                .values()
                                .map(|s| s.updated_at)
                                .chain(std::iter::once(rollout.updated_at.timestamp_millis()))
                                .max()
                                .unwrap_or_default();
                            f.done = rollout.state.is_final();
                            return Some((
                                RolloutUpdate {
                                    seq,
                                    rollout,
                                    tasks: changed,
                                },
                                f,
                            ));
                        }
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, rollout = %f.id, "rollout stream cannot read the rollout; retrying")
                    }
                }
                match f.wake.as_mut() {
                    Some(wake) => {
                        tokio::select! {
                            _ = wake.changed() => {}
                            _ = tokio::time::sleep(POLL) => {}
                        }
                    }
                    None => tokio::time::sleep(POLL).await,
                }
            }
        },
    );
    futures::StreamExt::take_until(updates, shutdown.cancelled_owned())
}
