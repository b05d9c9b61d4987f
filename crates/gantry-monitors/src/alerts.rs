//! Alerts, their grouping into notifications, and the retry schedule of deliveries.
//!
//! An **alert** is one monitor × series from the moment its hard state leaves OK to the
//! moment it returns to OK. Alerts are grouped by service and environment, with
//! Alertmanager's timing: a new group waits `group_wait` (30 s) so alerts that fire
//! together go out together; after that the group is looked at every `group_interval`
//! (5 min) and notified when something changed (an alert fired, changed severity, or
//! resolved); a group still firing with no change is notified again after
//! `repeat_interval` (4 h). [`Grouper`] is that scheduler, without a clock: it is told
//! what happened and asked, with `now`, what is due.
//!
//! **Held alerts** (silenced, in a maintenance window, or flapping) are left out of
//! notifications and do not count as a change; when they stop being held, their state is
//! notified if it differs from what was last said. A resolution is never held: whoever
//! was told an alert fired is told it resolved, even under a silence, because "resolved"
//! closes a page rather than opening one. An alert that fired and resolved without ever
//! being notified (within the group wait, or while held) is dropped quietly.

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::file::Monitor;
use crate::state::{State, Transition};

/// One monitor × series, from leaving OK to returning to OK.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Alert {
    pub monitor: String,
    pub series: String,
    pub service: String,
    pub environment: String,
    pub labels: BTreeMap<String, String>,
    /// The hard state; OK once resolved.
    pub state: State,
    /// The value of the latest hard transition.
    pub value: Option<f64>,
    pub started_at: DateTime<Utc>,
    pub resolved_at: Option<DateTime<Utc>>,
    /// Flapping alerts are held.
    pub flapping: bool,
}

impl Alert {
    /// A stable id: `monitor/series@start`, the start in RFC 3339 with milliseconds.
    pub fn id(&self) -> String {
        format!(
            "{}/{}@{}",
            self.monitor,
            self.series,
            self.started_at
                .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
        )
    }

    fn key(&self) -> AlertKey {
        (self.monitor.clone(), self.series.clone())
    }
}

/// What an alert is about: the monitor's identity and the series.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AlertSubject {
    pub monitor: String,
    pub series: String,
    pub service: String,
    pub environment: String,
    pub labels: BTreeMap<String, String>,
}

impl AlertSubject {
    pub fn new(monitor: &Monitor, series: &str) -> Self {
        AlertSubject {
            monitor: monitor.name.clone(),
            series: series.to_string(),
            service: monitor.service.clone(),
            environment: monitor.environment.clone(),
            labels: monitor.labels.clone(),
        }
    }
}

/// Alertmanager's grouping timings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupTimings {
    /// How long a new group waits before its first notification.
    pub group_wait: Duration,
    /// How often a group is looked at after its first notification.
    pub group_interval: Duration,
    /// How long before a group still firing, unchanged, is notified again.
    pub repeat_interval: Duration,
}

impl Default for GroupTimings {
    /// Alertmanager's defaults: 30 s, 5 min, 4 h.
    fn default() -> Self {
        GroupTimings {
            group_wait: Duration::from_secs(30),
            group_interval: Duration::from_secs(5 * 60),
            repeat_interval: Duration::from_secs(4 * 3600),
        }
    }
}

/// What alerts are grouped by.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct GroupKey {
    pub service: String,
    pub environment: String,
}

/// One notification to send: a group's visible firing alerts and the alerts resolved
/// since the last one.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Notification {
    /// Idempotency id for receivers: `service/environment/<group start, epoch ms>/<sequence>`,
    /// the same for a retry of the same notification and different for every other.
    /// The group's start is part of it because a group ends when its last alert resolves
    /// and a later one starts its sequence again at 1.
    pub id: String,
    pub group: GroupKey,
    /// 1 for the group's first notification, then 2, 3…
    pub sequence: u64,
    pub at: DateTime<Utc>,
    pub firing: Vec<Alert>,
    pub resolved: Vec<Alert>,
    /// Nothing changed; the repeat interval passed.
    pub repeat: bool,
}

type AlertKey = (String, String);

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Group {
    started_at: DateTime<Utc>,
    #[serde(with = "pairs")]
    alerts: BTreeMap<AlertKey, Alert>,
    /// What the last notifications said each alert's state was.
    #[serde(with = "pairs")]
    notified: BTreeMap<AlertKey, State>,
    next_flush: DateTime<Utc>,
    last_notified_at: Option<DateTime<Utc>>,
    sequence: u64,
}

/// The grouping scheduler. Feed it hard transitions ([`Grouper::record`]) and flapping
/// changes; call [`Grouper::due`] at [`Grouper::next_due`] (or on a tick) to get the
/// notifications to send.
///
/// It serializes (as JSON, say) so a server can store it after each round and another
/// continue its groups, waits and repeats where the first stopped.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Grouper {
    timings: GroupTimings,
    #[serde(with = "pairs")]
    groups: BTreeMap<GroupKey, Group>,
}

impl Grouper {
    pub fn new(timings: GroupTimings) -> Self {
        Grouper {
            timings,
            groups: BTreeMap::new(),
        }
    }

    /// Records a transition of `subject`. Only hard transitions matter (a soft one is
    /// ignored): leaving OK opens an alert (or updates the open one), returning to OK
    /// resolves it. An alert that fires again before its resolution was notified is the
    /// same alert, open again.
    pub fn record(&mut self, subject: &AlertSubject, transition: &Transition) {
        if !transition.hard {
            return;
        }
        let group_key = GroupKey {
            service: subject.service.clone(),
            environment: subject.environment.clone(),
        };
        let key = (subject.monitor.clone(), subject.series.clone());
        let at = transition.at;
        if transition.to == State::Ok {
            let open = self
                .groups
                .get_mut(&group_key)
                .and_then(|g| g.alerts.get_mut(&key))
                .filter(|a| a.resolved_at.is_none());
            if let Some(alert) = open {
                alert.state = State::Ok;
                alert.value = transition.value;
                alert.resolved_at = Some(at);
            }
            return;
        }
        let first_flush = later(at, self.timings.group_wait);
        let group = self.groups.entry(group_key).or_insert_with(|| Group {
            started_at: at,
            alerts: BTreeMap::new(),
            notified: BTreeMap::new(),
            next_flush: first_flush,
            last_notified_at: None,
            sequence: 0,
        });
        let alert = group.alerts.entry(key).or_insert_with(|| Alert {
            monitor: subject.monitor.clone(),
            series: subject.series.clone(),
            service: subject.service.clone(),
            environment: subject.environment.clone(),
            labels: subject.labels.clone(),
            state: transition.to,
            value: transition.value,
            started_at: at,
            resolved_at: None,
            flapping: false,
        });
        alert.state = transition.to;
        alert.value = transition.value;
        alert.resolved_at = None;
        alert.labels.clone_from(&subject.labels);
    }

    /// Marks an open alert as flapping or not (from [`crate::FlapChange`]). No open alert,
    /// nothing to mark: flapping only holds notifications.
    pub fn set_flapping(&mut self, subject: &AlertSubject, flapping: bool) {
        let group_key = GroupKey {
            service: subject.service.clone(),
            environment: subject.environment.clone(),
        };
        let key = (subject.monitor.clone(), subject.series.clone());
        if let Some(alert) = self
            .groups
            .get_mut(&group_key)
            .and_then(|g| g.alerts.get_mut(&key))
        {
            alert.flapping = flapping;
        }
    }

    /// Uses other timings from now on (a server's configuration may change between the
    /// rounds that stored this grouper and the next); groups keep their next due time.
    pub fn set_timings(&mut self, timings: GroupTimings) {
        self.timings = timings;
    }

    /// When the next group is due to be looked at; `None` when there are no groups.
    pub fn next_due(&self) -> Option<DateTime<Utc>> {
        self.groups.values().map(|g| g.next_flush).min()
    }

    /// Every alert the grouper holds (open, or resolved and not yet flushed).
    pub fn alerts(&self) -> impl Iterator<Item = &Alert> {
        self.groups.values().flat_map(|g| g.alerts.values())
    }

    /// The notifications due at `now`, by group. `held` says whether an alert is silenced
    /// or in maintenance right now (typically `silence::is_held || silence::in_maintenance`);
    /// flapping alerts are held as well. Groups looked at are next due one group interval
    /// later; a group whose alerts have all resolved is dropped.
    pub fn due(&mut self, now: DateTime<Utc>, held: impl Fn(&Alert) -> bool) -> Vec<Notification> {
        let timings = self.timings;
        let mut out = Vec::new();
        for (group_key, group) in &mut self.groups {
            if group.next_flush > now {
                continue;
            }
            let firing: Vec<&Alert> = group
                .alerts
                .values()
                .filter(|a| a.state.is_problem() && !a.flapping && !held(a))
                .collect();
            let resolved: Vec<&Alert> = group
                .alerts
                .values()
                .filter(|a| a.state == State::Ok && group.notified.contains_key(&a.key()))
                .collect();
            let changed = !resolved.is_empty()
                || firing
                    .iter()
                    .any(|a| group.notified.get(&a.key()) != Some(&a.state));
            let repeat = !changed
                && !firing.is_empty()
                && group
                    .last_notified_at
                    .is_some_and(|last| now >= later(last, timings.repeat_interval));
            if changed || repeat {
                group.sequence += 1;
                out.push(Notification {
                    id: format!(
                        "{}/{}/{}/{}",
                        group_key.service,
                        group_key.environment,
                        group.started_at.timestamp_millis(),
                        group.sequence
                    ),
                    group: group_key.clone(),
                    sequence: group.sequence,
                    at: now,
                    firing: firing.iter().map(|&a| a.clone()).collect(),
                    resolved: resolved.iter().map(|&a| a.clone()).collect(),
                    repeat,
                });
                for alert in &firing {
                    group.notified.insert(alert.key(), alert.state);
                }
                group.last_notified_at = Some(now);
            }
            // Resolved alerts have been said (or had nothing to say): they end here.
            group.alerts.retain(|_, a| a.state.is_problem());
            let alerts = &group.alerts;
            group.notified.retain(|key, _| alerts.contains_key(key));
            group.next_flush = later(now, timings.group_interval);
        }
        self.groups.retain(|_, g| !g.alerts.is_empty());
        out
    }
}

/// Serializes a map with structured keys as a list of `[key, value]` pairs (JSON object
/// keys must be strings).
mod pairs {
    use std::collections::BTreeMap;

    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    pub fn serialize<K, V, S>(map: &BTreeMap<K, V>, s: S) -> Result<S::Ok, S::Error>
    where
        K: Serialize,
        V: Serialize,
        S: Serializer,
    {
        s.collect_seq(map.iter())
    }

    pub fn deserialize<'de, K, V, D>(d: D) -> Result<BTreeMap<K, V>, D::Error>
    where
        K: Deserialize<'de> + Ord,
        V: Deserialize<'de>,
        D: Deserializer<'de>,
    {
        Ok(Vec::<(K, V)>::deserialize(d)?.into_iter().collect())
    }
}

/// `t + d`, saturating at the end of time rather than panicking on absurd durations.
fn later(t: DateTime<Utc>, d: Duration) -> DateTime<Utc> {
    chrono::Duration::from_std(d)
        .ok()
        .and_then(|d| t.checked_add_signed(d))
        .unwrap_or(DateTime::<Utc>::MAX_UTC)
}

// ---------------------------------------------------------------------------------------
// Deliveries.

/// Delays after the first four failed attempts; then hourly.
pub const RETRY_DELAYS: [Duration; 4] = [
    Duration::from_secs(10),
    Duration::from_secs(30),
    Duration::from_secs(2 * 60),
    Duration::from_secs(10 * 60),
];
/// Delay between attempts after the first four retries.
pub const RETRY_HOURLY: Duration = Duration::from_secs(3600);
/// No attempt is scheduled later than this after the first.
pub const GIVE_UP_AFTER: Duration = Duration::from_secs(24 * 3600);

/// What to do after a failed delivery.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Retry {
    /// Try again at this time.
    At(DateTime<Utc>),
    /// Stop: the delivery has failed.
    Failed,
}

/// The wait after `failed_attempts` failures (1 for the first): 10 s, 30 s, 2 min,
/// 10 min, then an hour each time.
pub fn retry_delay(failed_attempts: u32) -> Duration {
    match failed_attempts {
        0 => Duration::ZERO,
        n => RETRY_DELAYS
            .get(n as usize - 1)
            .copied()
            .unwrap_or(RETRY_HOURLY),
    }
}

/// When to try a delivery again, after its `failed_attempts`-th failure at
/// `last_attempt_at`; [`Retry::Failed`] once the next attempt would fall more than 24 h
/// after the first. On schedule that is 28 attempts: the first, four quick retries, and 23
/// hourly ones, the last 23 h 12 min 40 s after the first.
pub fn next_attempt(
    first_attempt_at: DateTime<Utc>,
    last_attempt_at: DateTime<Utc>,
    failed_attempts: u32,
) -> Retry {
    let next = later(last_attempt_at, retry_delay(failed_attempts));
    if next > later(first_attempt_at, GIVE_UP_AFTER) {
        Retry::Failed
    } else {
        Retry::At(next)
    }
}

#[cfg(test)]
mod tests;
