//! The corpus of one seed: 240 key metrics at a 10 s step over 21 days, with the changes
//! and shifts the detector should (and should not) find.
//!
//! **Series.** Three kinds, by index (`i mod 10`): 0–2 request latency, a StatsD timer's
//! mean (`stats.timers.bench.sNNN.mean`, bad when it rises); 3–6 requests served, a
//! StatsD count per flush (`stats_counts.bench.sNNN.requests`, bad when it drops); 7–9
//! errors, a count per flush (`stats_counts.bench.sNNN.errors`, bad when it rises). So 96
//! "drop" series and 144 "rise" series. Each has an event rate log-uniform in 0.5–500/s;
//! a count is Poisson with the rate × 10 s as its mean; a timer's flush is the mean of
//! `N ~ Poisson(rate × 10 s)` requests' latencies, log-normal with the level as its mean
//! and a coefficient of variation `√((e − 1) / N)` (the mean of `N` log-normal latencies
//! with σ = 1), and no value at all when `N = 0`. The level is
//! `base × daily × weekly × trend × event`:
//! daily `1 + a·((1 − h)·sin(θ + φ) + h·sin(2θ + φ₂))` with `a` uniform in 20–80 % and a
//! second harmonic `h` up to 30 %; weekly `1 − w·bump`, a smooth dip peaking on Sunday
//! with `w` up to 30 %; trend `(1 + g)^(weeks)` with `g` uniform in ±20 %. 1–5 % of the
//! slots are missing at random, and up to two gaps of 10–60 minutes each.
//!
//! **Events**, all on slot boundaries, in days 8–21 (so a week of history lies behind
//! each), at least three hours apart on one series: 400 changes — 160 with no effect, 80
//! drops and 20 drops to zero (on drop series), 60 rises (on rise series), 80 shifts under
//! 20 % either way (5–19 %, any series: they count neither way) — and 60 shifts without a
//! change (any series, in its bad direction). A shift's size is uniform in 20–70 %
//! (`× (1 − s)` for a drop, `× (1 + s)` for a rise), and it lasts 30 minutes to 6 hours
//! (log-uniform), then the level comes back.

use gantry_detect::Direction;

use super::draw::Draw;

/// The step of the raw series (StatsD's flush).
pub const STEP: i64 = 10;
pub const DAY: i64 = 86_400;
pub const WEEK: i64 = 7 * DAY;
/// Days of data per series.
pub const DAYS: i64 = 21;
/// Raw slots per series.
pub const SLOTS: usize = (DAYS * DAY / STEP) as usize;
/// The first slot: 2023-11-14 00:00 UTC, aligned to days (and so to every archive step).
pub const START: i64 = 1_699_920_000;
/// Series per seed.
pub const SERIES: usize = 240;
/// The detector and the baselines watch from here (a week and an hour of history).
pub const WATCH_FROM: i64 = START + WEEK + 3600;
/// Events start in `[EVENTS_FROM, EVENTS_UNTIL)`.
pub const EVENTS_FROM: i64 = START + 8 * DAY;
pub const EVENTS_UNTIL: i64 = START + DAYS * DAY - 2 * 3600;
/// The smallest gap between two events' busy spans on one series.
const SPACING: i64 = 3 * 3600;

/// What a series measures, which sets its bad direction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Requests served per flush: a drop is bad.
    Requests,
    /// Errors per flush: a rise is bad.
    Errors,
    /// Mean request latency per flush: a rise is bad.
    Latency,
}

impl Kind {
    pub fn direction(self) -> Direction {
        match self {
            Kind::Requests => Direction::Drop,
            Kind::Errors | Kind::Latency => Direction::Rise,
        }
    }

    /// Whether the stored values are counts of events per slot.
    pub fn counts(self) -> bool {
        !matches!(self, Kind::Latency)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventKind {
    /// A change that did nothing.
    NoEffect,
    /// A change after which the level dropped by 20–70 %.
    Drop,
    /// A change after which the level rose by 20–70 %.
    Rise,
    /// A change after which a count fell to zero.
    Zero,
    /// A change with a shift under 20 %: neither found nor missed.
    Small,
    /// A shift of 20–70 % in the bad direction without a change.
    Unannounced,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Event {
    pub kind: EventKind,
    /// The first shifted slot (the change's time for a change).
    pub t0: i64,
    /// The first slot back at the old level (`t0` for no effect).
    pub end: i64,
    /// The level's factor from `t0` until `end`.
    pub factor: f64,
}

impl Event {
    pub fn is_change(&self) -> bool {
        self.kind != EventKind::Unannounced
    }

    /// Whether the event is one the detector must find (a shift of at least 20 % in the
    /// bad direction).
    pub fn must_find(&self) -> bool {
        matches!(
            self.kind,
            EventKind::Drop | EventKind::Rise | EventKind::Zero | EventKind::Unannounced
        )
    }
}

/// One series: its shape, its noise and its events.
#[derive(Debug, Clone)]
pub struct SeriesSpec {
    pub index: usize,
    pub kind: Kind,
    /// Mean events per second (requests timed, for latency).
    pub rate: f64,
    /// Mean latency, milliseconds (latency series).
    pub latency_ms: f64,
    daily_amplitude: f64,
    daily_phase: f64,
    harmonic: f64,
    harmonic_phase: f64,
    weekly_amplitude: f64,
    trend: f64,
    missing: f64,
    /// `[from, until)` spans with no data.
    pub gaps: Vec<(i64, i64)>,
    /// In time order.
    pub events: Vec<Event>,
    noise_seed: u64,
}

impl SeriesSpec {
    /// The metric name, which picks the store's aggregation rule.
    pub fn name(&self) -> String {
        match self.kind {
            Kind::Requests => format!("stats_counts.bench.s{:03}.requests", self.index),
            Kind::Errors => format!("stats_counts.bench.s{:03}.errors", self.index),
            Kind::Latency => format!("stats.timers.bench.s{:03}.mean", self.index),
        }
    }

    pub fn direction(&self) -> Direction {
        self.kind.direction()
    }

    /// The seasonal and trend multiplier at `t`.
    fn pattern(&self, t: i64) -> f64 {
        let since = (t - START) as f64;
        let theta = 2.0 * std::f64::consts::PI * since / DAY as f64;
        let daily = 1.0
            + self.daily_amplitude
                * ((1.0 - self.harmonic) * (theta + self.daily_phase).sin()
                    + self.harmonic * (2.0 * theta + self.harmonic_phase).sin());
        // A dip centred on Sunday 00:00 (day 5 from a Tuesday).
        let week_angle = 2.0 * std::f64::consts::PI * (t - (START + 5 * DAY)) as f64 / WEEK as f64;
        let bump = ((1.0 + week_angle.cos()) / 2.0).powi(3);
        let weekly = 1.0 - self.weekly_amplitude * bump;
        let trend = (1.0 + self.trend).powf(since / WEEK as f64);
        daily * weekly * trend
    }

    /// The event factor at `t`.
    fn factor(&self, t: i64) -> f64 {
        self.events
            .iter()
            .find(|e| e.t0 <= t && t < e.end)
            .map_or(1.0, |e| e.factor)
    }

    fn in_gap(&self, t: i64) -> bool {
        self.gaps
            .iter()
            .any(|&(from, until)| from <= t && t < until)
    }

    /// The raw values as StatsD would flush them (counts, or mean latency in ms), one per
    /// 10 s slot from [`START`]; NaN where nothing was written.
    pub fn generate(&self) -> Vec<f64> {
        let mut draw = Draw::new(self.noise_seed);
        let mut values = Vec::with_capacity(SLOTS);
        let mut event = 0;
        for i in 0..SLOTS {
            let t = START + i as i64 * STEP;
            while event < self.events.len() && self.events[event].end <= t {
                event += 1;
            }
            let factor = match self.events.get(event) {
                Some(e) if e.t0 <= t => e.factor,
                _ => 1.0,
            };
            let pattern = self.pattern(t);
            let lost = draw.chance(self.missing);
            let value = match self.kind {
                Kind::Requests | Kind::Errors => {
                    draw.poisson(self.rate * pattern * factor * STEP as f64) as f64
                }
                Kind::Latency => {
                    let n = draw.poisson(self.rate * pattern * STEP as f64);
                    let cv = ((std::f64::consts::E - 1.0) / n.max(1) as f64).sqrt();
                    let latency = draw.log_normal(self.latency_ms * pattern * factor, cv);
                    if n == 0 {
                        f64::NAN
                    } else {
                        latency
                    }
                }
            };
            values.push(if lost || self.in_gap(t) {
                f64::NAN
            } else {
                value
            });
        }
        debug_assert_eq!(self.factor(START), 1.0);
        values
    }
}

/// How many events of each kind a seed has.
pub const EVENT_COUNTS: [(EventKind, usize); 6] = [
    (EventKind::NoEffect, 160),
    (EventKind::Drop, 80),
    (EventKind::Rise, 60),
    (EventKind::Zero, 20),
    (EventKind::Small, 80),
    (EventKind::Unannounced, 60),
];

/// The series of one seed, with their events placed.
pub fn plan(seed: u64) -> Vec<SeriesSpec> {
    let mut draw = Draw::new(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ 0x6465_7465_6374);
    let mut series: Vec<SeriesSpec> = (0..SERIES)
        .map(|index| {
            let kind = match index % 10 {
                0..=2 => Kind::Latency,
                3..=6 => Kind::Requests,
                _ => Kind::Errors,
            };
            let gap_count = draw.below(3);
            let gaps = (0..gap_count)
                .map(|_| {
                    let from =
                        START + (draw.between(0.0, (DAYS * DAY) as f64) as i64) / STEP * STEP;
                    let length = (draw.between(600.0, 3600.0) as i64) / STEP * STEP;
                    (from, from + length)
                })
                .collect();
            SeriesSpec {
                index,
                kind,
                rate: draw.log_between(0.5, 500.0),
                latency_ms: draw.log_between(5.0, 500.0),
                daily_amplitude: draw.between(0.2, 0.8),
                daily_phase: draw.between(0.0, 2.0 * std::f64::consts::PI),
                harmonic: draw.between(0.0, 0.3),
                harmonic_phase: draw.between(0.0, 2.0 * std::f64::consts::PI),
                weekly_amplitude: draw.between(0.0, 0.3),
                trend: draw.between(-0.2, 0.2),
                missing: draw.between(0.01, 0.05),
                gaps,
                events: Vec::new(),
                noise_seed: draw.uniform().to_bits() ^ (seed << 20) ^ index as u64,
            }
        })
        .collect();
    for (kind, count) in EVENT_COUNTS {
        for _ in 0..count {
            place(&mut draw, &mut series, kind);
        }
    }
    for s in &mut series {
        s.events.sort_by_key(|e| e.t0);
    }
    series
}

/// Places one event on an eligible series, at a time clear of that series' other events.
fn place(draw: &mut Draw, series: &mut [SeriesSpec], kind: EventKind) {
    let eligible: Vec<usize> = series
        .iter()
        .filter(|s| match kind {
            EventKind::Drop | EventKind::Zero => s.kind == Kind::Requests,
            EventKind::Rise => s.kind != Kind::Requests,
            _ => true,
        })
        .map(|s| s.index)
        .collect();
    loop {
        let index = eligible[draw.below(eligible.len())];
        let t0 = EVENTS_FROM
            + (draw.between(0.0, (EVENTS_UNTIL - EVENTS_FROM) as f64) as i64) / STEP * STEP;
        let duration = (draw.log_between(1800.0, 6.0 * 3600.0) as i64) / STEP * STEP;
        let size = draw.between(0.2, 0.7);
        let small = draw.between(0.05, 0.19);
        let small_drop = draw.chance(0.5);
        let spec = &mut series[index];
        let bad_drop = spec.kind == Kind::Requests;
        let (end, factor) = match kind {
            EventKind::NoEffect => (t0, 1.0),
            EventKind::Drop => (t0 + duration, 1.0 - size),
            EventKind::Rise => (t0 + duration, 1.0 + size),
            EventKind::Zero => (t0 + duration, 0.0),
            EventKind::Small if small_drop => (t0 + duration, 1.0 - small),
            EventKind::Small => (t0 + duration, 1.0 + small),
            EventKind::Unannounced if bad_drop => (t0 + duration, 1.0 - size),
            EventKind::Unannounced => (t0 + duration, 1.0 + size),
        };
        let busy = (t0 - SPACING, end.max(t0 + 3600) + SPACING);
        let clear = spec.events.iter().all(|e| {
            let other = (e.t0 - SPACING, e.end.max(e.t0 + 3600) + SPACING);
            busy.1 <= other.0 || other.1 <= busy.0
        });
        if clear {
            spec.events.push(Event {
                kind,
                t0,
                end,
                factor,
            });
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plan_is_as_specified() {
        let series = plan(3);
        assert_eq!(series.len(), SERIES);
        assert_eq!(plan(3)[17].events, series[17].events, "seeded");
        let kinds = |k: Kind| series.iter().filter(|s| s.kind == k).count();
        assert_eq!(
            (
                kinds(Kind::Latency),
                kinds(Kind::Requests),
                kinds(Kind::Errors)
            ),
            (72, 96, 72)
        );
        for (kind, count) in EVENT_COUNTS {
            let placed: Vec<(&SeriesSpec, &Event)> = series
                .iter()
                .flat_map(|s| {
                    s.events
                        .iter()
                        .filter(move |e| e.kind == kind)
                        .map(move |e| (s, e))
                })
                .collect();
            assert_eq!(placed.len(), count, "{kind:?}");
            for (s, e) in placed {
                assert!(e.t0 >= EVENTS_FROM && e.t0 < EVENTS_UNTIL && e.t0 % STEP == 0);
                let size = (e.factor - 1.0).abs();
                match kind {
                    EventKind::NoEffect => assert_eq!(e.factor, 1.0),
                    EventKind::Zero => assert_eq!((s.kind, e.factor), (Kind::Requests, 0.0)),
                    EventKind::Small => assert!((0.05..0.19).contains(&size)),
                    _ => {
                        assert!((0.2..0.7).contains(&size), "{e:?}");
                        let drop = e.factor < 1.0;
                        assert_eq!(
                            drop,
                            s.direction() == Direction::Drop,
                            "{kind:?} on {:?}",
                            s.kind
                        );
                    }
                }
                if kind != EventKind::NoEffect {
                    assert!((1800..=6 * 3600).contains(&(e.end - e.t0)));
                }
            }
        }
        for s in &series {
            for pair in s.events.windows(2) {
                assert!(pair[0].end.max(pair[0].t0 + 3600) + SPACING <= pair[1].t0 - SPACING);
            }
        }
    }

    #[test]
    fn generated_values() {
        let series = plan(1);
        for spec in [&series[0], &series[3], &series[7]] {
            let values = spec.generate();
            assert_eq!(values.len(), SLOTS);
            let missing = values.iter().filter(|v| v.is_nan()).count() as f64 / SLOTS as f64;
            assert!(
                (0.005..0.1).contains(&missing),
                "{}: {missing}",
                spec.name()
            );
            assert!(values.iter().filter(|v| v.is_finite()).all(|&v| v >= 0.0));
            // The mean over the first week is near the base level (the season averages out).
            let week: Vec<f64> = values[..(WEEK / STEP) as usize]
                .iter()
                .copied()
                .filter(|v| v.is_finite())
                .collect();
            let mean = week.iter().sum::<f64>() / week.len() as f64;
            let level = if spec.kind.counts() {
                spec.rate * STEP as f64
            } else {
                spec.latency_ms
            };
            assert!(
                (mean / level - 1.0).abs() < 0.35,
                "{}: {mean} vs {level}",
                spec.name()
            );
        }
    }
}
