//! Log watches on the server: the `[[logs]]` entries each agent gets for the services its
//! host runs, and the counts agents report in their polls, summed per flush interval and
//! stored as `gantry.logs.<service>.<host>.<name>`, so a threshold monitor alerts on them.
//! The following of files is the agent's (`gantry_agent::logs`).

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use std::time::Duration;

use gantry_core::ship::{log_metric_name, AgentHello, LogWatchWire};
use tokio_util::sync::CancellationToken;

use crate::error::ApiError;
use crate::state::AppState;

/// The `[[logs]]` entries of each of `services` that has any, as agents receive them.
pub async fn watches_for<'a>(
    state: &AppState,
    services: impl Iterator<Item = &'a String>,
) -> Result<BTreeMap<String, Vec<LogWatchWire>>, ApiError> {
    let wanted: Vec<&String> = services.collect();
    if wanted.is_empty() {
        return Ok(BTreeMap::new());
    }
    let limits = super::limits(state);
    let mut out = BTreeMap::new();
    for record in state.store.list_log_watches().await? {
        if !wanted.contains(&&record.service) {
            continue;
        }
        // Checked when applied; a record that no longer parses is left out and logged.
        match gantry_monitors::parse_logs(
            &record.text,
            &format!("{}.toml", record.service),
            &limits,
        ) {
            Ok(watches) => {
                out.insert(
                    record.service,
                    watches
                        .into_iter()
                        .map(|w| LogWatchWire {
                            name: w.name,
                            glob: w.glob,
                            regex: w.regex.as_str().to_string(),
                        })
                        .collect(),
                );
            }
            Err(e) => {
                tracing::error!(service = %record.service, error = %e, "stored [[logs]] entries do not parse; not sent to agents")
            }
        }
    }
    Ok(out)
}

/// Counts agents reported, summed per storage slot of each metric. A slot written twice
/// keeps only the second value, so each flush writes the slot's running sum, not what
/// arrived since the last flush.
#[derive(Debug, Default)]
pub struct LogCounts {
    slots: Mutex<HashMap<String, Slot>>,
}

#[derive(Debug, Clone, Copy)]
struct Slot {
    start: i64,
    sum: u64,
    /// Changed since it was last written.
    dirty: bool,
}

impl LogCounts {
    /// Adds what an agent's poll reports at `now` (Unix seconds); `step_of` gives a
    /// metric's finest storage step. Its problems go to the server's log.
    pub fn record(&self, host: &str, hello: &AgentHello, now: i64, step_of: impl Fn(&str) -> u32) {
        for problem in &hello.log_problems {
            tracing::warn!(host, problem = %problem, "agent: log watch problem");
        }
        if hello.log_counts.is_empty() {
            return;
        }
        let mut slots = self.slots.lock().unwrap_or_else(|p| p.into_inner());
        for c in &hello.log_counts {
            let name = log_metric_name(&c.service, host, &c.name);
            let step = i64::from(step_of(&name).max(1));
            let start = now - now.rem_euclid(step);
            let slot = slots.entry(name).or_insert(Slot {
                start,
                sum: 0,
                dirty: true,
            });
            if slot.start != start {
                *slot = Slot {
                    start,
                    sum: 0,
                    dirty: true,
                };
            }
            slot.sum = slot.sum.saturating_add(c.count);
            slot.dirty = true;
        }
    }

    /// The slots changed since last taken, as points at each slot's start; slots that have
    /// ended (older than `step` ago) are forgotten once written.
    fn take(&self, now: i64, step_of: impl Fn(&str) -> u32) -> Vec<(String, i64, f64)> {
        let mut slots = self.slots.lock().unwrap_or_else(|p| p.into_inner());
        let mut out = Vec::new();
        for (name, slot) in slots.iter_mut() {
            if slot.dirty {
                out.push((name.clone(), slot.start, slot.sum as f64));
                slot.dirty = false;
            }
        }
        slots.retain(|name, slot| slot.start + i64::from(step_of(name).max(1)) > now);
        out
    }
}

/// Writes the changed slots once per flush interval, until shutdown. A watch an agent
/// reported zero for is written as 0; one no agent reported is not written (its data is
/// missing, as for a host that went away).
pub async fn run(state: AppState, shutdown: CancellationToken) {
    let every = Duration::from_secs_f64(state.config.statsd.flush_interval_secs.max(0.1));
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = tokio::time::sleep(every) => {}
        }
        flush(&state);
    }
    flush(&state);
}

/// A metric's finest storage step, as the store would keep it.
pub fn step_of(state: &AppState, name: &str) -> u32 {
    state.tsdb.finest_step(name).unwrap_or(10)
}

fn flush(state: &AppState) {
    let now = chrono::Utc::now().timestamp();
    let points = state.log_counts.take(now, |n| step_of(state, n));
    if points.is_empty() {
        return;
    }
    let Some(sink) = state.sink.get() else {
        return;
    };
    let points: Vec<(&str, i64, f64)> = points
        .iter()
        .map(|(name, at, value)| (name.as_str(), *at, *value))
        .collect();
    sink.write(&points);
}

#[cfg(test)]
mod tests {
    use super::*;
    use gantry_core::ship::{HostFacts, LogCount};

    fn hello(count: u64) -> AgentHello {
        AgentHello {
            facts: HostFacts {
                os: "linux".into(),
                arch: "x86_64".into(),
                agent_version: "0".into(),
                roles: Vec::new(),
            },
            releases: Default::default(),
            running: Vec::new(),
            log_counts: vec![LogCount {
                service: "shop".into(),
                name: "payment.errors".into(),
                count,
            }],
            log_problems: Vec::new(),
        }
    }

    #[test]
    fn counts_sum_per_slot_and_each_flush_writes_the_running_sum() {
        let counts = LogCounts::default();
        let step = |_: &str| 10;
        counts.record("web.1", &hello(2), 1001, step);
        counts.record("web.1", &hello(0), 1003, step);
        assert_eq!(
            counts.take(1004, step),
            [(
                "gantry.logs.shop.web_1.payment_errors".to_string(),
                1000,
                2.0
            )]
        );
        assert!(
            counts.take(1005, step).is_empty(),
            "unchanged slots are not rewritten"
        );
        counts.record("web.1", &hello(3), 1006, step);
        assert_eq!(
            counts.take(1007, step)[0].2,
            5.0,
            "the slot's sum, not the last report"
        );
        counts.record("web.1", &hello(1), 1012, step);
        assert_eq!(
            counts.take(1013, step),
            [(
                "gantry.logs.shop.web_1.payment_errors".to_string(),
                1010,
                1.0
            )],
            "a new slot starts from zero"
        );
        assert!(counts.take(1030, step).is_empty());
        assert!(
            counts.slots.lock().unwrap().is_empty(),
            "ended slots are forgotten"
        );
    }
}
