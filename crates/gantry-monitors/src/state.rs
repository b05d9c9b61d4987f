//! Monitor states and how evaluations move them: one evaluation per kind of check
//! (threshold, heartbeat, HTTP), then Nagios' soft/hard machine per series.
//!
//! **Soft and hard.** An evaluation that differs from the hard state is *soft*; it
//! becomes *hard* (and is notified) once the series has been in it for `for` consecutive
//! evaluations. Two refinements, both from Nagios: while the hard state is OK, problem
//! evaluations count together whatever their mix (WARNING, CRITICAL, WARNING is three
//! attempts, and the last one is the state that becomes hard); and every change needs
//! `for` evaluations, recoveries included, so a single good sample in a bad spell does not
//! resolve an alert only to reopen it (Nagios makes recoveries hard at once; we do not).
//!
//! **Worst of several series.** A target can return several series; each keeps its own
//! state, and the monitor shows the worst, ranked CRITICAL > WARNING > UNKNOWN > OK, as
//! Nagios ranks them. A measured problem outranks a missing measurement: WARNING on one
//! host says more than UNKNOWN on another. UNKNOWN still outranks OK, so missing data is
//! never hidden.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::file::format_duration;
use crate::file::{Direction, HeartbeatCheck, HttpCheck, MissingData, Reduce, ThresholdCheck};
use crate::flapping::{FlapChange, FlapDetector, FlapThresholds};

/// What a monitor says.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum State {
    Ok,
    Warning,
    Critical,
    Unknown,
}

impl State {
    pub fn as_str(self) -> &'static str {
        match self {
            State::Ok => "OK",
            State::Warning => "WARNING",
            State::Critical => "CRITICAL",
            State::Unknown => "UNKNOWN",
        }
    }

    /// Anything but OK.
    pub fn is_problem(self) -> bool {
        self != State::Ok
    }

    /// Rank for worst-of: OK 0 < UNKNOWN 1 < WARNING 2 < CRITICAL 3.
    pub fn severity(self) -> u8 {
        match self {
            State::Ok => 0,
            State::Unknown => 1,
            State::Warning => 2,
            State::Critical => 3,
        }
    }

    /// The worst of some states (by [`State::severity`]); OK for none.
    pub fn worst(states: impl IntoIterator<Item = State>) -> State {
        states
            .into_iter()
            .max_by_key(|s| s.severity())
            .unwrap_or(State::Ok)
    }
}

impl fmt::Display for State {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The outcome of one evaluation: a state, the number it was judged on (if any) and a
/// sentence for people ("avg 12.5 over 5m is above critical 10").
#[derive(Debug, Clone, PartialEq)]
pub struct Evaluation {
    pub state: State,
    pub value: Option<f64>,
    pub summary: String,
}

impl Evaluation {
    pub fn new(state: State, value: Option<f64>, summary: impl Into<String>) -> Self {
        Evaluation {
            state,
            value,
            summary: summary.into(),
        }
    }
}

// ---------------------------------------------------------------------------------------
// Thresholds.

/// The values of one series over a monitor's window, oldest first, one per slot; `None`
/// for a slot with no value.
///
/// The newest slot is often still filling: StatsD flushes a slot at its end, and a render
/// request made mid-slot returns it empty or partial. Set `last_is_partial` when the
/// window ends in such a slot, and it is ignored; otherwise every slot counts.
#[derive(Debug, Clone, Copy)]
pub struct Window<'a> {
    pub values: &'a [Option<f64>],
    pub last_is_partial: bool,
}

/// Reduces the known values of a window (NaN counts as unknown). `None` when no value is
/// known.
pub fn reduce(reduce: Reduce, window: Window<'_>) -> Option<f64> {
    let values = match (window.last_is_partial, window.values.split_last()) {
        (true, Some((_, complete))) => complete,
        _ => window.values,
    };
    let mut known = values.iter().flatten().copied().filter(|v| !v.is_nan());
    let first = known.next()?;
    let mut count = 1u32;
    let mut acc = first;
    for value in known {
        count += 1;
        acc = match reduce {
            Reduce::Avg | Reduce::Sum => acc + value,
            Reduce::Min => acc.min(value),
            Reduce::Max => acc.max(value),
            Reduce::Last => value,
        };
    }
    Some(match reduce {
        Reduce::Avg => acc / f64::from(count),
        _ => acc,
    })
}

/// Evaluates one series of a threshold monitor: the window reduced, then compared with
/// critical first and warning second on the bad side (`above`: a value strictly above the
/// threshold is bad; `below`: strictly below). A window with no known value takes the
/// monitor's missing-data state.
pub fn evaluate_threshold(check: &ThresholdCheck, window: Window<'_>) -> Evaluation {
    let Some(value) = reduce(check.reduce, window) else {
        return missing_data(check);
    };
    let bad = |threshold: f64| match check.direction {
        Direction::Above => value > threshold,
        Direction::Below => value < threshold,
    };
    let over = format!(
        "{} {} over {}",
        check.reduce.as_str(),
        value,
        format_duration(check.window)
    );
    let side = check.direction.as_str();
    if let Some(critical) = check.critical.filter(|&c| bad(c)) {
        return Evaluation::new(
            State::Critical,
            Some(value),
            format!("{over} is {side} critical {critical}"),
        );
    }
    if let Some(warning) = check.warning.filter(|&w| bad(w)) {
        return Evaluation::new(
            State::Warning,
            Some(value),
            format!("{over} is {side} warning {warning}"),
        );
    }
    Evaluation::new(
        State::Ok,
        Some(value),
        format!("{over} is within thresholds"),
    )
}

/// The evaluation of a window with no data, by the monitor's `missing` setting.
pub fn missing_data(check: &ThresholdCheck) -> Evaluation {
    let state = match check.missing {
        MissingData::Unknown => State::Unknown,
        MissingData::Ok => State::Ok,
        MissingData::Critical => State::Critical,
    };
    Evaluation::new(
        state,
        None,
        format!(
            "no data over {} (missing = \"{}\")",
            format_duration(check.window),
            check.missing.as_str()
        ),
    )
}

// ---------------------------------------------------------------------------------------
// Heartbeats.

/// What a job said when it pinged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PingKind {
    /// The job finished well (a plain ping).
    Success,
    /// The job started; the run is timed against `max_runtime`.
    Start,
    /// The job failed.
    Fail,
    /// The job finished with an exit code: 0 is success, anything else failure.
    Exit(i32),
}

/// One ping.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ping {
    pub kind: PingKind,
    pub at: DateTime<Utc>,
}

/// The facts about a heartbeat's pings that its evaluation needs, folded from pings in
/// any order (a late ping older than what is known changes nothing it should not).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HeartbeatLog {
    /// When the first ping of any kind came: the heartbeat is silent until then.
    pub first_ping_at: Option<DateTime<Utc>>,
    /// The newest finishing ping (success, fail, exit).
    pub last_finish: Option<Finish>,
    /// The newest start ping that no finishing ping followed.
    pub running_since: Option<DateTime<Utc>>,
}

/// A finishing ping: when, and how it went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Finish {
    pub at: DateTime<Utc>,
    pub ok: bool,
    pub exit_code: Option<i32>,
}

impl HeartbeatLog {
    /// Folds one ping in.
    pub fn record(&mut self, ping: &Ping) {
        if self.first_ping_at.is_none_or(|first| ping.at < first) {
            self.first_ping_at = Some(ping.at);
        }
        let finished_at = self.last_finish.map(|f| f.at);
        let finish = |ok, exit_code| Finish {
            at: ping.at,
            ok,
            exit_code,
        };
        let new_finish = match ping.kind {
            PingKind::Start => {
                if finished_at.is_none_or(|f| ping.at > f)
                    && self.running_since.is_none_or(|s| ping.at > s)
                {
                    self.running_since = Some(ping.at);
                }
                None
            }
            PingKind::Success => Some(finish(true, None)),
            PingKind::Fail => Some(finish(false, None)),
            PingKind::Exit(code) => Some(finish(code == 0, Some(code))),
        };
        if let Some(new_finish) = new_finish {
            if finished_at.is_none_or(|f| new_finish.at >= f) {
                self.last_finish = Some(new_finish);
                if self.running_since.is_some_and(|s| s <= new_finish.at) {
                    self.running_since = None;
                }
            }
        }
    }
}

/// Evaluates a heartbeat at `now`. In order:
/// - no ping yet: OK (silent until the first ping, so a new monitor does not alert before
///   its job has ever run);
/// - the newest finish failed (`fail`, or a nonzero exit code): CRITICAL until a success;
/// - nothing finished for `period + grace` (counted from the newest finish, or from the
///   first ping when nothing has finished yet): CRITICAL;
/// - a run started more than `max_runtime` ago and not finished: WARNING;
/// - otherwise OK.
pub fn evaluate_heartbeat(
    check: &HeartbeatCheck,
    log: &HeartbeatLog,
    now: DateTime<Utc>,
) -> Evaluation {
    let Some(first_ping_at) = log.first_ping_at else {
        return Evaluation::new(State::Ok, None, "waiting for the first ping");
    };
    if let Some(finish) = log.last_finish.filter(|f| !f.ok) {
        let how = match finish.exit_code {
            Some(code) => format!("exited with code {code}"),
            None => "reported a failure".to_string(),
        };
        return Evaluation::new(
            State::Critical,
            finish.exit_code.map(f64::from),
            format!("the last run {how} at {}", finish.at.to_rfc3339()),
        );
    }
    let since = log.last_finish.map_or(first_ping_at, |f| f.at);
    let silent_for = elapsed(since, now);
    if silent_for > check.period.saturating_add(check.grace) {
        return Evaluation::new(
            State::Critical,
            Some(silent_for.as_secs_f64()),
            format!(
                "no finished run for {} (period {}, grace {})",
                format_duration(round_to_seconds(silent_for)),
                format_duration(check.period),
                format_duration(check.grace)
            ),
        );
    }
    if let (Some(started), Some(max_runtime)) = (log.running_since, check.max_runtime) {
        let running_for = elapsed(started, now);
        if running_for > max_runtime {
            return Evaluation::new(
                State::Warning,
                Some(running_for.as_secs_f64()),
                format!(
                    "running for {}, longer than max_runtime {}",
                    format_duration(round_to_seconds(running_for)),
                    format_duration(max_runtime)
                ),
            );
        }
    }
    Evaluation::new(State::Ok, None, "on schedule")
}

/// `now - since`, zero when `since` is in the future (clocks differ between hosts).
fn elapsed(since: DateTime<Utc>, now: DateTime<Utc>) -> Duration {
    (now - since).to_std().unwrap_or(Duration::ZERO)
}

fn round_to_seconds(d: Duration) -> Duration {
    Duration::from_secs(d.as_secs())
}

// ---------------------------------------------------------------------------------------
// HTTP.

/// What one HTTP check saw. The caller fetches; [`HttpCheck::body_ok`] judges the body.
#[derive(Debug, Clone, PartialEq)]
pub struct HttpResult {
    /// The response status; `None` when there was no response.
    pub status: Option<u16>,
    /// Whether the body satisfied the check (`HttpCheck::body_ok`).
    pub body_matched: bool,
    pub elapsed: Duration,
    /// Why there was no response (refused, DNS, TLS, timed out).
    pub error: Option<String>,
}

/// Evaluates an HTTP check: CRITICAL for no response, a response slower than the timeout,
/// an unexpected status or a body that does not match; OK otherwise. The elapsed time is
/// the value, in seconds.
pub fn evaluate_http(check: &HttpCheck, result: &HttpResult) -> Evaluation {
    let seconds = Some(result.elapsed.as_secs_f64());
    let critical = |why: String| Evaluation::new(State::Critical, seconds, why);
    if let Some(error) = &result.error {
        return critical(format!("{} {}: {error}", check.method.as_str(), check.url));
    }
    if result.elapsed > check.timeout {
        return critical(format!(
            "no answer within the timeout of {}",
            format_duration(check.timeout)
        ));
    }
    match result.status {
        None => critical("no response".to_string()),
        Some(status) if status != check.expect_status => {
            critical(format!("status {status}, expected {}", check.expect_status))
        }
        Some(_) if !result.body_matched => {
            critical("the body does not contain what the check expects".to_string())
        }
        Some(status) => Evaluation::new(
            State::Ok,
            seconds,
            format!("status {status} in {}ms", result.elapsed.as_millis()),
        ),
    }
}

// ---------------------------------------------------------------------------------------
// Soft and hard, per series.

/// A change reported by [`SeriesState::observe`].
///
/// `hard` says whether the hard state changed: then `from` is the previous hard state and
/// this is what gets notified. A soft transition (`hard` false) is a change of the latest
/// evaluation while the hard state stays; `from` is the previous evaluation.
#[derive(Debug, Clone, PartialEq)]
pub struct Transition {
    pub from: State,
    pub to: State,
    pub hard: bool,
    pub value: Option<f64>,
    pub at: DateTime<Utc>,
}

/// What one observation changed.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Observation {
    pub transition: Option<Transition>,
    pub flap: Option<FlapChange>,
}

/// The state of one series: its hard state, its latest (possibly soft) evaluation, the
/// count towards the next hard state, and its recent history (for flapping). Serializable,
/// so a server can store it and another continue from it.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct SeriesState {
    hard: State,
    hard_since: Option<DateTime<Utc>>,
    latest: State,
    latest_value: Option<f64>,
    latest_at: Option<DateTime<Utc>>,
    /// Consecutive evaluations counted towards leaving the hard state.
    attempts: u32,
    flap: FlapDetector,
}

impl Default for SeriesState {
    fn default() -> Self {
        SeriesState::new()
    }
}

impl SeriesState {
    /// A series never evaluated: hard OK.
    pub fn new() -> Self {
        SeriesState {
            hard: State::Ok,
            hard_since: None,
            latest: State::Ok,
            latest_value: None,
            latest_at: None,
            attempts: 0,
            flap: FlapDetector::new(),
        }
    }

    /// The state notifications are about.
    pub fn hard(&self) -> State {
        self.hard
    }

    /// When the hard state began (`None` for the initial OK).
    pub fn hard_since(&self) -> Option<DateTime<Utc>> {
        self.hard_since
    }

    /// The latest evaluation's state, soft or hard.
    pub fn latest(&self) -> State {
        self.latest
    }

    pub fn latest_value(&self) -> Option<f64> {
        self.latest_value
    }

    pub fn latest_at(&self) -> Option<DateTime<Utc>> {
        self.latest_at
    }

    /// Whether the latest evaluation differs from the hard state.
    pub fn is_soft(&self) -> bool {
        self.latest != self.hard
    }

    /// Consecutive evaluations so far towards a new hard state (Nagios' "attempt 2/3").
    pub fn attempts(&self) -> u32 {
        self.attempts
    }

    /// The recent evaluated states, oldest first (at most [`crate::flapping::HISTORY`]).
    pub fn history(&self) -> impl Iterator<Item = State> + '_ {
        self.flap.history()
    }

    pub fn is_flapping(&self) -> bool {
        self.flap.is_flapping()
    }

    pub fn flap_percent(&self) -> f64 {
        self.flap.percent_state_change()
    }

    /// Takes one evaluation. `hard_after` is the monitor's `for` (0 counts as 1).
    pub fn observe(
        &mut self,
        evaluation: &Evaluation,
        hard_after: u32,
        flap: &FlapThresholds,
        at: DateTime<Utc>,
    ) -> Observation {
        let new = evaluation.state;
        let previous = self.latest;
        self.attempts = if new == self.hard {
            0
        } else if new == previous
            || (self.hard == State::Ok && new.is_problem() && previous.is_problem())
        {
            self.attempts.saturating_add(1)
        } else {
            1
        };
        self.latest = new;
        self.latest_value = evaluation.value;
        self.latest_at = Some(at);

        let transition = if new != self.hard && self.attempts >= hard_after.max(1) {
            let from = self.hard;
            self.hard = new;
            self.hard_since = Some(at);
            self.attempts = 0;
            Some(Transition {
                from,
                to: new,
                hard: true,
                value: evaluation.value,
                at,
            })
        } else {
            (new != previous).then_some(Transition {
                from: previous,
                to: new,
                hard: false,
                value: evaluation.value,
                at,
            })
        };
        Observation {
            transition,
            flap: self.flap.record(new, flap),
        }
    }
}

/// Name given to the one series of a target that returned no series at all, so that
/// "nothing matches" has a state (by the missing-data rule) like any series.
pub const NO_SERIES: &str = "(no series)";

/// The states of every series a monitor's target returned.
#[derive(Debug, Clone, PartialEq, Default, serde::Serialize, serde::Deserialize)]
pub struct MonitorState {
    series: BTreeMap<String, SeriesState>,
}

impl MonitorState {
    pub fn new() -> Self {
        MonitorState::default()
    }

    /// Takes one round of evaluations, one per series the target returned. A known series
    /// missing from the round gets `missing` (the monitor's missing-data evaluation), so a
    /// host that stops sending is UNKNOWN under `missing = "unknown"` until it is
    /// [forgotten](MonitorState::forget). A round with no series at all is recorded as
    /// [`NO_SERIES`] when no series is known; that pseudo-series is OK again once real
    /// series return. Returns what changed, by series name.
    pub fn observe(
        &mut self,
        round: &[(String, Evaluation)],
        missing: &Evaluation,
        hard_after: u32,
        flap: &FlapThresholds,
        at: DateTime<Utc>,
    ) -> Vec<(String, Observation)> {
        let mut evaluations: BTreeMap<String, &Evaluation> =
            round.iter().map(|(name, e)| (name.clone(), e)).collect();
        let recovered = Evaluation::new(State::Ok, None, "the target returns series again");
        for name in self.series.keys() {
            if !evaluations.contains_key(name) {
                let stand_in = if name == NO_SERIES && !round.is_empty() {
                    &recovered
                } else {
                    missing
                };
                evaluations.insert(name.clone(), stand_in);
            }
        }
        if evaluations.is_empty() {
            evaluations.insert(NO_SERIES.to_string(), missing);
        }
        let mut out = Vec::new();
        for (name, evaluation) in evaluations {
            let state = self.series.entry(name.clone()).or_default();
            let observation = state.observe(evaluation, hard_after, flap, at);
            if observation != Observation::default() {
                out.push((name, observation));
            }
        }
        // Once "nothing matches" has resolved, it has nothing left to say.
        if !round.is_empty()
            && self
                .series
                .get(NO_SERIES)
                .is_some_and(|s| s.hard() == State::Ok && !s.is_soft())
        {
            self.series.remove(NO_SERIES);
        }
        out
    }

    /// Drops a series (a host taken out of service). Returns whether it was known.
    pub fn forget(&mut self, series: &str) -> bool {
        self.series.remove(series).is_some()
    }

    pub fn series(&self) -> impl Iterator<Item = (&str, &SeriesState)> {
        self.series
            .iter()
            .map(|(name, state)| (name.as_str(), state))
    }

    pub fn get(&self, series: &str) -> Option<&SeriesState> {
        self.series.get(series)
    }

    /// The monitor's state: the worst hard state of its series.
    pub fn worst(&self) -> State {
        State::worst(self.series.values().map(SeriesState::hard))
    }
}

#[cfg(test)]
mod tests;
