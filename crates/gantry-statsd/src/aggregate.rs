//! Per-key state between flushes, and the flush itself: Etsy's `process_metrics` math and
//! its graphite backend's names.
//!
//! Receive loops each fill their own [`Shard`] (nothing shared on the per-packet path);
//! at a flush the [`Aggregator`] merges the shards and computes the points. Gauges are the
//! one kind whose result depends on order: a shard keeps its gauge updates as a function of
//! the value before them (see `GaugeOps`), so merging applies each shard's updates, in the
//! order of their last arrival, to the gauge's value exactly as Etsy would have applied them
//! one by one. One sender's datagrams reach one receive loop, so its updates stay in order.

use std::collections::HashSet;

use crate::config::{Bin, StatsdConfig};
use crate::parse::{is_clean_key_byte, sanitize_key, Kind, ParseCounts, Sample};
use crate::table::{Id, IdMap, Key};

/// Set members, with a fast hash seeded per process (members cannot be chosen to collide).
type Members = HashSet<Box<str>, foldhash::fast::RandomState>;

/// One flushed value, named as Etsy's graphite backend names it.
#[derive(Debug, Clone, PartialEq)]
pub struct Point {
    pub name: String,
    pub value: f64,
}

/// An interval's flushed values, their names back to back in one string: no allocation per
/// point, and the memory kept from one flush to the next ([`Aggregator::flush_into`]).
#[derive(Debug, Default)]
pub struct Flushed {
    text: String,
    /// Start and end of each name in `text`, and the value.
    points: Vec<(usize, usize, f64)>,
}

impl Flushed {
    /// `(name, value)` in the order flushed.
    pub fn iter(&self) -> impl ExactSizeIterator<Item = (&str, f64)> {
        self.points
            .iter()
            .map(|&(start, end, value)| (&self.text[start..end], value))
    }

    pub fn len(&self) -> usize {
        self.points.len()
    }

    pub fn is_empty(&self) -> bool {
        self.points.is_empty()
    }

    fn clear(&mut self) {
        self.text.clear();
        self.points.clear();
    }

    /// Adds a value named by what `name` writes.
    fn push(&mut self, name: impl FnOnce(&mut String), value: f64) {
        let start = self.text.len();
        name(&mut self.text);
        self.points.push((start, self.text.len(), value));
    }
}

#[derive(Debug, Default)]
struct Timer {
    values: Vec<f64>,
    /// Events the values stand for, corrected by sample rates.
    count: f64,
}

#[derive(Debug, Default)]
struct Gauge {
    value: f64,
    /// Flushes left before an idle gauge is forgotten (with `delete_gauges`).
    ttl: u32,
}

/// A shard's updates of one gauge since the last flush, as a function of the value the
/// gauge had before them: Etsy's rule (a signed value moves a gauge that exists with a
/// non-zero value, and sets it otherwise) depends on that value, which only the merge knows.
#[derive(Debug, Default)]
struct GaugeOps {
    /// Signed values received before any unsigned one, in arrival order.
    signed: Vec<f64>,
    /// The value after the last unsigned one and the signed ones that followed it.
    value: Option<f64>,
    /// The caller's arrival stamp of the last update, which orders shards at a merge.
    at: u64,
}

impl GaugeOps {
    fn push(&mut self, value: f64, signed: bool, at: u64) {
        self.at = at;
        match (&mut self.value, signed) {
            (Some(current), true) => *current = moved(Some(*current), value),
            (slot, false) => {
                *slot = Some(value);
                self.signed.clear();
            }
            (None, true) => self.signed.push(value),
        }
    }

    /// The gauge's value after these updates, from `before` (`None`: no such gauge yet).
    fn apply(&self, before: Option<f64>) -> f64 {
        if let Some(value) = self.value {
            return value;
        }
        self.signed
            .iter()
            .fold(before, |current, &delta| Some(moved(current, delta)))
            .unwrap_or(0.0)
    }
}

/// A signed gauge value applied as Etsy applies it.
fn moved(current: Option<f64>, delta: f64) -> f64 {
    match current {
        Some(value) if value != 0.0 => value + delta,
        _ => delta,
    }
}

const PACKETS_RECEIVED: &str = "statsd.packets_received";
const METRICS_RECEIVED: &str = "statsd.metrics_received";
const BAD_LINES_SEEN: &str = "statsd.bad_lines_seen";
const TIMESTAMP_LAG: &str = "statsd.timestamp_lag";

/// What one receive loop gathered since the last flush, by key.
#[derive(Debug, Default)]
pub struct Shard {
    counters: IdMap<f64>,
    timers: IdMap<Timer>,
    gauges: IdMap<GaugeOps>,
    sets: IdMap<Members>,
    /// The identities of the batch being folded in (kept for its allocation).
    ids: Vec<Id>,
}

impl Shard {
    pub fn new() -> Shard {
        Shard::default()
    }

    /// An empty shard with room for as many keys of each kind as this one holds: the next
    /// interval of a receive loop mostly sees the same keys, and a map grown from empty
    /// rehashes every key at each doubling.
    pub fn sized_like(&self) -> Shard {
        fn like<V: Default>(map: &IdMap<V>) -> IdMap<V> {
            IdMap::with_capacity(map.len())
        }
        Shard {
            counters: like(&self.counters),
            timers: like(&self.timers),
            gauges: like(&self.gauges),
            sets: like(&self.sets),
            ids: Vec::new(),
        }
    }

    /// Counts one received datagram and what parsing found in it.
    pub fn record_packet(&mut self, counts: &ParseCounts) {
        self.record_packets(1, counts);
    }

    /// Counts `packets` received datagrams and what parsing found in all of them.
    pub fn record_packets(&mut self, packets: u64, counts: &ParseCounts) {
        self.add_to_counter(PACKETS_RECEIVED, packets as f64);
        self.add_to_counter(METRICS_RECEIVED, counts.lines as f64);
        self.add_to_counter(BAD_LINES_SEEN, counts.bad as f64);
    }

    /// Adds to a counter (e.g. one of Gantry's own, such as datagrams the kernel dropped).
    pub fn add_to_counter(&mut self, key: &str, value: f64) {
        *self.counters.get_or_insert_with(Id::of(key), key, || 0.0) += value;
    }

    /// Folds samples in, in order; `at` stamps their arrival (any clock that increases),
    /// which orders gauge updates of different shards at the merge.
    ///
    /// Each sample's map entry is asked for [`AHEAD`] samples before it is needed, so the
    /// cache misses of a batch overlap (the entries are rarely in cache: see [`IdMap`]).
    pub fn add_all(&mut self, samples: &[Sample<'_>], at: u64) {
        /// How many samples ahead to prefetch: enough to cover a miss with the work of
        /// that many samples, few enough that the lines are still in L1 when used.
        const AHEAD: usize = 8;
        let mut ids = std::mem::take(&mut self.ids);
        ids.clear();
        ids.extend(samples.iter().map(|sample| Id::of(&sample.key)));
        for (i, (sample, &id)) in samples.iter().zip(&ids).enumerate() {
            if let (Some(next), Some(&next_id)) = (samples.get(i + AHEAD), ids.get(i + AHEAD)) {
                self.prefetch(&next.kind, next_id);
            }
            self.add_with_id(sample, id, at);
        }
        self.ids = ids;
    }

    pub fn add(&mut self, sample: &Sample<'_>, at: u64) {
        self.add_with_id(sample, Id::of(&sample.key), at);
    }

    fn prefetch(&self, kind: &Kind<'_>, id: Id) {
        match kind {
            Kind::Counter { .. } => self.counters.prefetch(id),
            Kind::Timer { .. } => self.timers.prefetch(id),
            Kind::Gauge { .. } => self.gauges.prefetch(id),
            Kind::Set { .. } => self.sets.prefetch(id),
        }
    }

    fn add_with_id(&mut self, sample: &Sample<'_>, id: Id, at: u64) {
        let key: &str = &sample.key;
        match &sample.kind {
            Kind::Counter { value } => {
                *self.counters.get_or_insert_with(id, key, || 0.0) += value;
            }
            Kind::Timer { value, count } => {
                let timer = self.timers.get_or_insert_with(id, key, Timer::default);
                timer.values.push(*value);
                timer.count += count;
            }
            Kind::Gauge { value, signed } => self
                .gauges
                .get_or_insert_with(id, key, GaugeOps::default)
                .push(*value, *signed, at),
            Kind::Set { member } => {
                let set = self.sets.get_or_insert_with(id, key, Members::default);
                if !set.contains(member.as_ref()) {
                    set.insert(Box::from(member.as_ref()));
                }
            }
        }
    }

    /// Whether nothing was folded in since the shard was made or last absorbed.
    pub fn is_empty(&self) -> bool {
        self.counters.is_empty()
            && self.timers.iter().all(|(_, t)| t.values.is_empty())
            && self
                .gauges
                .iter()
                .all(|(_, g)| g.value.is_none() && g.signed.is_empty())
            && self.sets.iter().all(|(_, m)| m.is_empty())
    }
}

/// Everything received since the last flush (gauges: ever), by key.
#[derive(Debug)]
pub struct Aggregator {
    config: StatsdConfig,
    /// Counters, timers and sets of this interval; its gauge updates are applied at once.
    interval: Shard,
    gauges: IdMap<Gauge>,
    last_flush: Option<i64>,
}

impl Aggregator {
    pub fn new(config: StatsdConfig) -> Aggregator {
        let mut interval = Shard::new();
        for key in [BAD_LINES_SEEN, PACKETS_RECEIVED, METRICS_RECEIVED] {
            interval.counters.entry(Key::new(key), || 0.0);
        }
        Aggregator {
            config,
            interval,
            gauges: IdMap::default(),
            last_flush: None,
        }
    }

    pub fn config(&self) -> &StatsdConfig {
        &self.config
    }

    /// Counts one received datagram and what parsing found in it.
    pub fn record_packet(&mut self, counts: &ParseCounts) {
        self.interval.record_packet(counts);
    }

    /// Adds to one of Gantry's own counters (e.g. datagrams the kernel dropped).
    pub fn add_to_counter(&mut self, key: &str, value: f64) {
        self.interval.add_to_counter(key, value);
    }

    /// Folds samples in, in order (the order matters for gauges).
    pub fn add_all(&mut self, samples: &[Sample<'_>]) {
        for sample in samples {
            self.add(sample);
        }
    }

    pub fn add(&mut self, sample: &Sample<'_>) {
        if let Kind::Gauge { value, signed } = sample.kind {
            // Applied at once: a direct sample comes after everything merged before it.
            let mut ops = GaugeOps::default();
            ops.push(value, signed, 0);
            self.apply_gauge(&Key::new(&sample.key), &ops);
        } else {
            self.interval.add(sample, 0);
        }
    }

    /// Folds receive loops' shards in. Counters add up, timer values and set members join;
    /// each gauge gets every shard's updates, in the order of their last arrival.
    pub fn merge(&mut self, shards: impl IntoIterator<Item = Shard>) {
        let mut gauge_updates = Vec::new();
        for mut shard in shards {
            self.take_from(&mut shard, &mut gauge_updates);
        }
        self.apply_gauges(gauge_updates);
    }

    /// Folds one shard in, as [`merge`](Self::merge) does, and leaves it empty for the next
    /// interval with its memory kept: the tables keep their size, and the keys of timers,
    /// gauges and sets seen in this interval stay with their value buffers (a key not seen
    /// in an interval is dropped at the next absorb). A receive loop that gets its shard
    /// back this way starts the next interval without growing a vector or faulting in a
    /// fresh page for every active timer.
    pub fn absorb(&mut self, shard: &mut Shard) {
        let mut gauge_updates = Vec::new();
        self.take_from(shard, &mut gauge_updates);
        self.apply_gauges(gauge_updates);
    }

    /// Moves what `shard` saw into this interval; gauge updates go to `gauge_updates`.
    fn take_from(&mut self, shard: &mut Shard, gauge_updates: &mut Vec<(Key, GaugeOps)>) {
        let interval = &mut self.interval;
        for (key, &value) in shard.counters.iter() {
            *interval.counters.get_or_insert_with(key.id, key, || 0.0) += value;
        }
        shard.counters.clear();
        // Every update leaves a mark (a timer value, a set member, a gauge value or delta),
        // so an entry without one was not seen since the last absorb.
        shard.timers.retain(|key, timer| {
            if timer.values.is_empty() {
                return false;
            }
            let into = interval
                .timers
                .get_or_insert_with(key.id, key, Timer::default);
            into.values.extend_from_slice(&timer.values);
            into.count += timer.count;
            timer.values.clear();
            timer.count = 0.0;
            true
        });
        shard.sets.retain(|key, members| {
            if members.is_empty() {
                return false;
            }
            let into = interval
                .sets
                .get_or_insert_with(key.id, key, Members::default);
            if into.is_empty() {
                // The members move; the shard keeps the empty set it gets back.
                std::mem::swap(into, members);
            } else {
                into.extend(members.drain());
            }
            true
        });
        shard.gauges.retain(|key, ops| {
            if ops.value.is_none() && ops.signed.is_empty() {
                return false;
            }
            gauge_updates.push((key.clone(), std::mem::take(ops)));
            true
        });
    }

    fn apply_gauges(&mut self, mut updates: Vec<(Key, GaugeOps)>) {
        updates.sort_by(|a, b| a.0.id.cmp(&b.0.id).then(a.1.at.cmp(&b.1.at)));
        for (key, ops) in &updates {
            self.apply_gauge(key, ops);
        }
    }

    fn apply_gauge(&mut self, key: &Key, ops: &GaugeOps) {
        let ttl = self.config.gauges_max_ttl;
        match self.gauges.get_mut(key.id) {
            Some(gauge) => {
                gauge.value = ops.apply(Some(gauge.value));
                gauge.ttl = ttl;
            }
            None => {
                let value = ops.apply(None);
                self.gauges.entry(key.clone(), || Gauge { value, ttl });
            }
        }
    }

    /// Computes every point for a flush at `timestamp` (epoch seconds), then resets or
    /// forgets per-key state as configured.
    pub fn flush(&mut self, timestamp: i64) -> Vec<Point> {
        let mut out = Flushed::default();
        self.flush_into(timestamp, &mut out);
        out.iter()
            .map(|(name, value)| Point {
                name: name.to_string(),
                value,
            })
            .collect()
    }

    /// [`flush`](Self::flush) into `out` (emptied first), which keeps its memory for the
    /// next flush.
    pub fn flush_into(&mut self, timestamp: i64, out: &mut Flushed) {
        out.clear();
        let interval = self.config.flush_interval_secs;
        if let Some(last) = self.last_flush {
            let lag = (timestamp - last) as f64 - interval;
            self.add(&Sample {
                key: TIMESTAMP_LAG.into(),
                kind: Kind::Gauge {
                    value: lag,
                    signed: false,
                },
            });
        }
        self.last_flush = Some(timestamp);

        let names = Names::new(&self.config);
        out.points.reserve(
            2 * self.interval.counters.len()
                + 12 * self.interval.timers.len()
                + self.gauges.len()
                + self.interval.sets.len()
                + 1,
        );
        for (key, &value) in self.interval.counters.iter() {
            let rate = value / interval;
            if self.config.legacy_namespace {
                out.push(|o| names.format(o, &names.counter, key, &[]), rate);
                if self.config.flush_counts {
                    out.push(|o| names.format(o, &["stats_counts"], key, &[]), value);
                }
            } else {
                out.push(|o| names.format(o, &names.counter, key, &["rate"]), rate);
                if self.config.flush_counts {
                    out.push(|o| names.format(o, &names.counter, key, &["count"]), value);
                }
            }
        }
        let field_names = TimerFieldNames::new(&self.config);
        let mut fields = Vec::new();
        for (key, timer) in self.interval.timers.iter_mut() {
            fields.clear();
            timer_fields(
                &self.config,
                &field_names,
                key,
                timer,
                interval,
                &mut fields,
            );
            for &(field, value) in &fields {
                out.push(|o| names.format(o, &names.timer, key, &[field]), value);
            }
        }
        for (key, gauge) in self.gauges.iter() {
            out.push(|o| names.format(o, &names.gauge, key, &[]), gauge.value);
        }
        for (key, set) in self.interval.sets.iter() {
            out.push(
                |o| names.format(o, &names.set, key, &["count"]),
                set.len() as f64,
            );
        }
        let stats = self.interval.counters.len()
            + self.interval.timers.len()
            + self.gauges.len()
            + self.interval.sets.len();
        out.push(
            |o| {
                if self.config.legacy_namespace {
                    o.push_str("statsd.numStats");
                    o.push_str(&names.suffix);
                } else {
                    names.format(o, &names.global, "statsd", &["numStats"]);
                }
            },
            stats as f64,
        );
        self.reset();
    }

    fn reset(&mut self) {
        let (counters, timers, sets, gauges) = self.config.deletes();
        if counters {
            self.interval.counters.retain(|k, _| {
                k.contains("packets_received")
                    || k.contains("metrics_received")
                    || k.contains("bad_lines_seen")
            });
        }
        self.interval.counters.values_mut().for_each(|v| *v = 0.0);
        if timers {
            self.interval.timers.clear();
        } else {
            for t in self.interval.timers.values_mut() {
                t.values.clear();
                t.count = 0.0;
            }
        }
        if sets {
            self.interval.sets.clear();
        } else {
            self.interval.sets.values_mut().for_each(HashSet::clear);
        }
        if gauges {
            self.gauges.retain(|_, g| {
                g.ttl = g.ttl.saturating_sub(1);
                g.ttl >= 1
            });
        }
    }
}

/// The names of the timer fields that depend on the configuration, made once a flush.
struct TimerFieldNames {
    /// Per percent threshold: `count_P`, `mean_P`, `upper_P` (`lower_topP`), `sum_P`,
    /// `sum_squares_P`.
    thresholds: Vec<[String; 5]>,
    /// Per configured histogram: `histogram.bin_<label>` for each of its bins.
    bins: Vec<Vec<String>>,
}

impl TimerFieldNames {
    fn new(config: &StatsdConfig) -> TimerFieldNames {
        let thresholds = config
            .percent_thresholds
            .iter()
            .map(|&pct| {
                let clean = js_number_text(pct)
                    .replacen('.', "_", 1)
                    .replacen('-', "top", 1);
                let bound = if pct > 0.0 { "upper" } else { "lower" };
                [
                    format!("count_{clean}"),
                    format!("mean_{clean}"),
                    format!("{bound}_{clean}"),
                    format!("sum_{clean}"),
                    format!("sum_squares_{clean}"),
                ]
            })
            .collect();
        let bins = config
            .histogram
            .iter()
            .map(|histogram| {
                histogram
                    .bins
                    .iter()
                    .map(|bin| {
                        let label = match bin {
                            Bin::Below(b) => js_number_text(*b).replacen('.', "_", 1),
                            Bin::Infinite(_) => "inf".to_string(),
                        };
                        format!("histogram.bin_{label}")
                    })
                    .collect()
            })
            .collect();
        TimerFieldNames { thresholds, bins }
    }
}

/// Etsy's timer statistics for one key, into `fields` as `(path after the key, value)`.
fn timer_fields<'n>(
    config: &StatsdConfig,
    names: &'n TimerFieldNames,
    key: &str,
    timer: &mut Timer,
    interval: f64,
    fields: &mut Vec<(&'n str, f64)>,
) {
    if timer.values.is_empty() {
        fields.extend([("count", 0.0), ("count_ps", 0.0)]);
        return;
    }
    let values = &mut timer.values;
    values.sort_by(f64::total_cmp);
    let count = values.len();
    let min = values[0];
    let max = values[count - 1];
    let mut cumulative = Vec::with_capacity(count);
    let mut cumulative_squares = Vec::with_capacity(count);
    cumulative.push(min);
    cumulative_squares.push(min * min);
    for i in 1..count {
        cumulative.push(values[i] + cumulative[i - 1]);
        cumulative_squares.push(values[i] * values[i] + cumulative_squares[i - 1]);
    }
    // With one value, every percentile is that value (Etsy carries these over).
    let (mut sum, mut sum_squares, mut mean, mut boundary) = (min, min * min, min, max);
    for (&pct, threshold) in config.percent_thresholds.iter().zip(&names.thresholds) {
        let mut in_threshold = count;
        if count > 1 {
            in_threshold = (pct.abs() / 100.0 * count as f64).round() as usize;
            if in_threshold == 0 {
                continue;
            }
            if pct > 0.0 {
                boundary = values[in_threshold - 1];
                sum = cumulative[in_threshold - 1];
                sum_squares = cumulative_squares[in_threshold - 1];
            } else {
                boundary = values[count - in_threshold];
                let before = count
                    .checked_sub(in_threshold + 1)
                    .map_or(0.0, |i| cumulative[i]);
                let before_squares = count
                    .checked_sub(in_threshold + 1)
                    .map_or(0.0, |i| cumulative_squares[i]);
                sum = cumulative[count - 1] - before;
                sum_squares = cumulative_squares[count - 1] - before_squares;
            }
            mean = sum / in_threshold as f64;
        }
        let [count_p, mean_p, bound_p, sum_p, sum_squares_p] = threshold;
        fields.extend([
            (count_p.as_str(), in_threshold as f64),
            (mean_p.as_str(), mean),
            (bound_p.as_str(), boundary),
            (sum_p.as_str(), sum),
            (sum_squares_p.as_str(), sum_squares),
        ]);
    }
    let sum = cumulative[count - 1];
    let sum_squares = cumulative_squares[count - 1];
    let mean = sum / count as f64;
    let mut sum_of_diffs = 0.0;
    for v in values.iter() {
        sum_of_diffs += (v - mean) * (v - mean);
    }
    let mid = count / 2;
    let median = if count % 2 == 1 {
        values[mid]
    } else {
        (values[mid - 1] + values[mid]) / 2.0
    };
    fields.extend([
        ("std", (sum_of_diffs / count as f64).sqrt()),
        ("upper", max),
        ("lower", min),
        ("count", timer.count),
        ("count_ps", timer.count / interval),
        ("sum", sum),
        ("sum_squares", sum_squares),
        ("mean", mean),
        ("median", median),
    ]);
    if let Some((histogram, labels)) = config
        .histogram
        .iter()
        .zip(&names.bins)
        .find(|(h, _)| key.contains(h.metric.as_str()))
    {
        let mut i = 0;
        for (bin, label) in histogram.bins.iter().zip(labels) {
            let mut frequency = 0;
            while i < count
                && match bin {
                    Bin::Infinite(_) => true,
                    Bin::Below(upper) => values[i] < *upper,
                }
            {
                frequency += 1;
                i += 1;
            }
            fields.push((label.as_str(), frequency as f64));
        }
    }
}

/// A number as JavaScript's `String(n)` writes it, for the values configs hold (`90`,
/// `99.9`, `-10`).
fn js_number_text(n: f64) -> String {
    if n.fract() == 0.0 && n.abs() < 1e21 {
        format!("{}", n as i64)
    } else {
        format!("{n}")
    }
}

/// The namespaces names are built from, per Etsy's graphite backend.
struct Names {
    global: Vec<String>,
    counter: Vec<String>,
    timer: Vec<String>,
    gauge: Vec<String>,
    set: Vec<String>,
    suffix: String,
    sanitize: bool,
}

impl Names {
    fn new(c: &StatsdConfig) -> Names {
        let suffix = if c.global_suffix.is_empty() {
            String::new()
        } else {
            format!(".{}", c.global_suffix)
        };
        if c.legacy_namespace {
            let v = |parts: &[&str]| parts.iter().map(|p| p.to_string()).collect::<Vec<_>>();
            return Names {
                global: v(&["stats"]),
                counter: v(&["stats"]),
                timer: v(&["stats", "timers"]),
                gauge: v(&["stats", "gauges"]),
                set: v(&["stats", "sets"]),
                suffix,
                sanitize: c.key_name_sanitize,
            };
        }
        let global: Vec<String> = [c.global_prefix.as_str()]
            .iter()
            .filter(|p| !p.is_empty())
            .map(|p| p.to_string())
            .collect();
        let with = |prefix: &str| {
            let mut ns = global.clone();
            if !prefix.is_empty() {
                ns.push(prefix.to_string());
            }
            ns
        };
        Names {
            counter: with(&c.prefix_counter),
            timer: with(&c.prefix_timer),
            gauge: with(&c.prefix_gauge),
            set: with(&c.prefix_set),
            global,
            suffix,
            sanitize: c.key_name_sanitize,
        }
    }

    /// `namespace.key.extra…` + suffix + the key's tags (tags stay last, after the suffix),
    /// appended to `out`.
    fn format<S: AsRef<str>>(&self, out: &mut String, namespace: &[S], key: &str, extra: &[&str]) {
        let (name, tags) = match key.split_once(';') {
            Some((name, tags)) => (name, Some(tags)),
            None => (key, None),
        };
        for part in namespace {
            out.push_str(part.as_ref());
            out.push('.');
        }
        // Parsed keys are sanitised already (and sanitising twice changes nothing): only
        // a key from elsewhere pays for it here.
        if self.sanitize && !name.bytes().all(is_clean_key_byte) {
            out.push_str(&sanitize_key(name));
        } else {
            out.push_str(name);
        }
        for part in extra {
            out.push('.');
            out.push_str(part);
        }
        out.push_str(&self.suffix);
        if let Some(tags) = tags {
            out.push(';');
            out.push_str(tags);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parse::parse;
    use std::collections::HashMap;

    fn flush_of(packets: &[&str], config: StatsdConfig) -> HashMap<String, f64> {
        let mut agg = Aggregator::new(config);
        for packet in packets {
            let mut samples = Vec::new();
            let counts = parse(
                packet.as_bytes(),
                agg.config(),
                &mut samples,
                &mut Vec::new(),
            );
            agg.record_packet(&counts);
            agg.add_all(&samples);
        }
        agg.flush(1_700_000_000)
            .into_iter()
            .map(|p| (p.name, p.value))
            .collect()
    }

    fn check(packets: &[&str], expected: &[(&str, f64)]) {
        let got = flush_of(packets, StatsdConfig::default());
        for (name, value) in expected {
            let actual = got
                .get(*name)
                .unwrap_or_else(|| panic!("{name} missing from {got:?}"));
            assert!(
                (actual - value).abs() <= 1e-9 * value.abs().max(1.0),
                "{name}: {actual} != {value}"
            );
        }
    }

    #[test]
    fn counters() {
        check(
            &["hits:1|c", "hits:2|c|@0.1"],
            &[("stats.hits", 2.1), ("stats_counts.hits", 21.0)],
        );
        check(
            &["a:1|c\nbad\nb:x|c"],
            &[
                ("stats_counts.statsd.packets_received", 1.0),
                ("stats_counts.statsd.metrics_received", 3.0),
                ("stats_counts.statsd.bad_lines_seen", 2.0),
                ("stats.statsd.bad_lines_seen", 0.2),
            ],
        );
    }

    #[test]
    fn gauges_apply_in_order() {
        check(&["load:333|g\nload:-10|g"], &[("stats.gauges.load", 323.0)]);
        check(&["load:-10|g\nload:333|g"], &[("stats.gauges.load", 333.0)]);
        check(&["z:0|g\nz:-5|g"], &[("stats.gauges.z", -5.0)]);
        check(&["z:+5|g"], &[("stats.gauges.z", 5.0)]);
    }

    #[test]
    fn timers_match_etsy() {
        // 1..=10 ms: Etsy's own example numbers.
        let lines: Vec<String> = (1..=10).map(|v| format!("rt:{v}|ms")).collect();
        let packet = lines.join("\n");
        check(
            &[&packet],
            &[
                ("stats.timers.rt.count", 10.0),
                ("stats.timers.rt.count_ps", 1.0),
                ("stats.timers.rt.lower", 1.0),
                ("stats.timers.rt.upper", 10.0),
                ("stats.timers.rt.sum", 55.0),
                ("stats.timers.rt.sum_squares", 385.0),
                ("stats.timers.rt.mean", 5.5),
                ("stats.timers.rt.median", 5.5),
                ("stats.timers.rt.std", 8.25f64.sqrt()),
                ("stats.timers.rt.count_90", 9.0),
                ("stats.timers.rt.upper_90", 9.0),
                ("stats.timers.rt.sum_90", 45.0),
                ("stats.timers.rt.sum_squares_90", 285.0),
                ("stats.timers.rt.mean_90", 5.0),
            ],
        );
        check(
            &["rt:100|ms|@0.1"],
            &[
                ("stats.timers.rt.count", 10.0),
                ("stats.timers.rt.upper_90", 100.0),
                ("stats.timers.rt.count_90", 1.0),
            ],
        );
    }

    #[test]
    fn negative_and_fractional_thresholds() {
        let config = StatsdConfig {
            percent_thresholds: vec![-10.0, 99.9],
            ..StatsdConfig::default()
        };
        let lines: Vec<String> = (1..=10).map(|v| format!("rt:{v}|ms")).collect();
        let got = flush_of(&[&lines.join("\n")], config);
        assert_eq!(got["stats.timers.rt.lower_top10"], 10.0);
        assert_eq!(got["stats.timers.rt.count_top10"], 1.0);
        assert_eq!(got["stats.timers.rt.sum_top10"], 10.0);
        assert_eq!(got["stats.timers.rt.upper_99_9"], 10.0);
        assert_eq!(got["stats.timers.rt.count_99_9"], 10.0);
    }

    #[test]
    fn sets_tags_and_names() {
        check(&["u:a|s\nu:b|s\nu:a|s"], &[("stats.sets.u.count", 2.0)]);
        check(
            &["req:1|c|#region:eu"],
            &[
                ("stats.req;region=eu", 0.1),
                ("stats_counts.req;region=eu", 1.0),
            ],
        );
        check(&["rt:5|ms|#a:b"], &[("stats.timers.rt.mean;a=b", 5.0)]);
        let config = StatsdConfig {
            legacy_namespace: false,
            global_suffix: "x".into(),
            ..StatsdConfig::default()
        };
        let got = flush_of(&["hits:1|c\nload:2|g\nu:a|s"], config);
        assert_eq!(got["stats.counters.hits.rate.x"], 0.1);
        assert_eq!(got["stats.counters.hits.count.x"], 1.0);
        assert_eq!(got["stats.gauges.load.x"], 2.0);
        assert_eq!(got["stats.sets.u.count.x"], 1.0);
        assert_eq!(got["stats.statsd.numStats.x"], 6.0);
    }

    #[test]
    fn histogram_bins() {
        let config: StatsdConfig = serde_json::from_value(serde_json::json!({
            "histogram": [{"metric": "rt", "bins": [2, 5.5, "inf"]}]
        }))
        .unwrap();
        let lines: Vec<String> = (1..=10).map(|v| format!("rt:{v}|ms")).collect();
        let got = flush_of(&[&lines.join("\n")], config);
        assert_eq!(got["stats.timers.rt.histogram.bin_2"], 1.0);
        assert_eq!(got["stats.timers.rt.histogram.bin_5_5"], 4.0);
        assert_eq!(got["stats.timers.rt.histogram.bin_inf"], 5.0);
    }

    #[test]
    fn state_between_flushes() {
        let mut agg = Aggregator::new(StatsdConfig::default());
        let mut samples = Vec::new();
        parse(
            b"hits:1|c\nrt:5|ms\nload:7|g\nu:a|s",
            agg.config(),
            &mut samples,
            &mut Vec::new(),
        );
        agg.add_all(&samples);
        agg.flush(100);
        let second: HashMap<String, f64> = agg
            .flush(111)
            .into_iter()
            .map(|p| (p.name, p.value))
            .collect();
        assert_eq!(
            second["stats_counts.hits"], 0.0,
            "counters are kept at zero"
        );
        assert_eq!(second["stats.timers.rt.count"], 0.0);
        assert!(!second.contains_key("stats.timers.rt.mean"));
        assert_eq!(second["stats.gauges.load"], 7.0, "gauges persist");
        assert_eq!(second["stats.sets.u.count"], 0.0);
        assert_eq!(second["stats.gauges.statsd.timestamp_lag"], 1.0);

        let mut idle = Aggregator::new(StatsdConfig {
            delete_idle_stats: true,
            ..StatsdConfig::default()
        });
        idle.add_all(&samples);
        idle.flush(100);
        let second: HashMap<String, f64> = idle
            .flush(110)
            .into_iter()
            .map(|p| (p.name, p.value))
            .collect();
        assert!(!second.contains_key("stats_counts.hits"));
        assert!(!second.contains_key("stats.timers.rt.count"));
        assert!(!second.contains_key("stats.gauges.load"));
        assert!(
            second.contains_key("stats_counts.statsd.bad_lines_seen"),
            "own counters stay"
        );
    }

    /// Receive loops each see some senders; merged shards must flush what one aggregator
    /// fed every datagram in order would, whatever loop a sender lands on.
    #[test]
    fn shards_merge_to_what_one_stream_gives() {
        let senders: Vec<Vec<String>> = (0..4)
            .map(|s| {
                (0..60)
                    .map(|i| match i % 6 {
                        0 => format!("hits.{}:{}|c", s % 2, i),
                        1 => format!("rt.{s}:{}|ms|@0.5", i * 3),
                        2 => format!("load.{s}:{}|g", i),
                        3 => format!("load.{s}:-{}|g", i / 2),
                        4 => format!("drift.{s}:+{}|g", i % 5),
                        _ => format!("users:u{}|s", (i * 7 + s) % 11),
                    })
                    .collect()
            })
            .collect();
        let mut one = Aggregator::new(StatsdConfig::default());
        let mut merged = Aggregator::new(StatsdConfig::default());
        for round in 0..3 {
            let mut shards: Vec<Shard> = (0..3).map(|_| Shard::new()).collect();
            for (s, lines) in senders.iter().enumerate() {
                for (i, line) in lines.iter().enumerate() {
                    let mut samples = Vec::new();
                    let counts =
                        parse(line.as_bytes(), one.config(), &mut samples, &mut Vec::new());
                    one.record_packet(&counts);
                    one.add_all(&samples);
                    let shard = &mut shards[s % 3];
                    shard.record_packet(&counts);
                    shard.add_all(&samples, (round * 1000 + i) as u64);
                }
            }
            merged.merge(shards);
            let expected: HashMap<String, f64> = one
                .flush(100 + 10 * round as i64)
                .into_iter()
                .map(|p| (p.name, p.value))
                .collect();
            let got: HashMap<String, f64> = merged
                .flush(100 + 10 * round as i64)
                .into_iter()
                .map(|p| (p.name, p.value))
                .collect();
            assert_eq!(got, expected, "flush {round}");
        }
    }

    #[test]
    fn a_shard_reused_through_absorb_gives_what_fresh_shards_give() {
        // Keys come and go between rounds (each kind has keys seen every round, every other
        // round, and once), with and without Etsy's deletion of idle stats.
        let lines = |round: usize| -> Vec<String> {
            let mut lines = Vec::new();
            for k in 0..12usize {
                if k.is_multiple_of(3)
                    || (k % 3 == 1 && round.is_multiple_of(2))
                    || (k % 3 == 2 && k == round)
                {
                    lines.push(format!("hits.{k}:{}|c|@0.5", round + k));
                    lines.push(format!("rt.{k}:{}|ms", 10 * round + k));
                    lines.push(format!("rt.{k}:{}|ms|@0.25", round));
                    lines.push(format!("load.{k}:{}|g", round * k));
                    lines.push(format!("load.{k}:-{}|g", k));
                    lines.push(format!("drift.{k}:+{}|g", round));
                    lines.push(format!("users.{k}:u{}|s", (round + k) % 5));
                    lines.push(format!("users.{k}:u{}|s", k % 3));
                }
            }
            lines
        };
        for config in [
            StatsdConfig::default(),
            StatsdConfig {
                delete_idle_stats: true,
                ..StatsdConfig::default()
            },
        ] {
            let mut fresh = Aggregator::new(config.clone());
            let mut reusing = Aggregator::new(config.clone());
            let mut reused = Shard::new();
            for round in 0..8 {
                let mut shard = Shard::new();
                for (i, line) in lines(round).iter().enumerate() {
                    let mut samples = Vec::new();
                    let counts = parse(line.as_bytes(), &config, &mut samples, &mut Vec::new());
                    for s in [&mut shard, &mut reused] {
                        s.record_packet(&counts);
                        s.add_all(&samples, (round * 100 + i) as u64);
                    }
                }
                fresh.merge([shard]);
                reusing.absorb(&mut reused);
                assert!(reused.is_empty(), "absorb leaves nothing to merge twice");
                let at = 100 + 10 * round as i64;
                let expected: HashMap<String, f64> = fresh
                    .flush(at)
                    .into_iter()
                    .map(|p| (p.name, p.value))
                    .collect();
                let got: HashMap<String, f64> = reusing
                    .flush(at)
                    .into_iter()
                    .map(|p| (p.name, p.value))
                    .collect();
                assert_eq!(got, expected, "round {round}, {config:?}");
            }
            // Only keys seen in the last round stay in the reused shard (rounds are 0..8:
            // the every-other-round keys were not seen in round 7, nor the once-only ones).
            assert_eq!(reused.timers.len(), 4);
            assert_eq!(reused.sets.len(), 4);
            assert_eq!(reused.gauges.len(), 8);
        }
    }

    #[test]
    fn signed_gauge_updates_wait_for_the_value_before_them() {
        let mut agg = Aggregator::new(StatsdConfig::default());
        let mut samples = Vec::new();
        parse(b"g:10|g", agg.config(), &mut samples, &mut Vec::new());
        agg.add_all(&samples);
        let mut shard = Shard::new();
        let mut samples = Vec::new();
        // -10 brings it to 0, so +3 then sets it to 3; -1 moves it to 2.
        parse(
            b"g:-10|g\ng:+3|g\ng:-1|g\nnew:+4|g",
            agg.config(),
            &mut samples,
            &mut Vec::new(),
        );
        shard.add_all(&samples, 1);
        agg.merge([shard]);
        let got: HashMap<String, f64> = agg
            .flush(100)
            .into_iter()
            .map(|p| (p.name, p.value))
            .collect();
        assert_eq!(got["stats.gauges.g"], 2.0);
        assert_eq!(got["stats.gauges.new"], 4.0);
    }
}
