//! Fuzz target bodies for the metrics path: StatsD, Graphite's protocols and render
//! language, the time-series store's on-disk formats and the forward queue. See the crate
//! documentation for what a body must and must not do.

use std::collections::{HashMap, HashSet};

use arbitrary::{Arbitrary, Unstructured};
use gantry_graphite::target::Expr;
use gantry_render::{Limits, RenderError, Series, SeriesSource};
use gantry_statsd::{Aggregator, Kind, Sample, Shard, StatsdConfig};

use crate::Target;

const MODULE: &str = "crates/gantry-fuzz/src/metrics.rs";

/// This module's targets.
pub const TARGETS: &[Target] = &[
    Target {
        name: "statsd_datagram",
        run: statsd_datagram,
        reaches: &["crates/gantry-statsd"],
        reaches_unsafe: true,
        module: MODULE,
    },
    Target {
        name: "statsd_shard",
        run: statsd_shard,
        reaches: &["crates/gantry-statsd"],
        reaches_unsafe: true,
        module: MODULE,
    },
    Target {
        name: "graphite_plaintext",
        run: graphite_plaintext,
        reaches: &[
            "crates/gantry-graphite/src/plaintext.rs",
            "crates/gantry-graphite/src/tags.rs",
            "crates/gantry-graphite/src/queue.rs",
        ],
        reaches_unsafe: false,
        module: MODULE,
    },
    Target {
        name: "graphite_line_buffer",
        run: graphite_line_buffer,
        reaches: &["crates/gantry-graphite/src/plaintext.rs"],
        reaches_unsafe: false,
        module: MODULE,
    },
    Target {
        name: "graphite_pickle",
        run: graphite_pickle,
        reaches: &[
            "crates/gantry-graphite/src/pickle.rs",
            "crates/gantry-graphite/src/plaintext.rs",
            "crates/gantry-graphite/src/tags.rs",
        ],
        reaches_unsafe: false,
        module: MODULE,
    },
    Target {
        name: "tags_glob",
        run: tags_glob,
        reaches: &[
            "crates/gantry-graphite/src/tags.rs",
            "crates/gantry-render/src/glob.rs",
            "crates/gantry-render/src/series.rs",
        ],
        reaches_unsafe: false,
        module: MODULE,
    },
    Target {
        name: "render_parse",
        run: render_parse,
        reaches: &["crates/gantry-graphite/src/target.rs"],
        reaches_unsafe: false,
        module: MODULE,
    },
    Target {
        name: "render_eval",
        run: render_eval,
        reaches: &[
            "crates/gantry-render",
            "crates/gantry-graphite/src/target.rs",
        ],
        reaches_unsafe: false,
        module: MODULE,
    },
    Target {
        name: "graphite_time",
        run: graphite_time,
        reaches: &[
            "crates/gantry-render/src/time.rs",
            "crates/gantry-core/src/time.rs",
        ],
        reaches_unsafe: false,
        module: MODULE,
    },
    Target {
        name: "tsdb_flush_log",
        run: tsdb_flush_log,
        reaches: &[
            "crates/gantry-tsdb/src/wal.rs",
            "crates/gantry-tsdb/src/lib.rs",
        ],
        reaches_unsafe: false,
        module: MODULE,
    },
    Target {
        name: "tsdb_block",
        run: tsdb_block,
        reaches: &["crates/gantry-tsdb/src/block.rs"],
        reaches_unsafe: false,
        module: MODULE,
    },
    Target {
        name: "forward_queue",
        run: forward_queue,
        reaches: &[
            "crates/gantry-graphite/src/queue.rs",
            "crates/gantry-graphite/src/plaintext.rs",
            "crates/gantry-graphite/src/tags.rs",
        ],
        reaches_unsafe: false,
        module: MODULE,
    },
];

// ---- StatsD ----

/// A StatsD datagram (after one byte choosing the configuration) parsed as the receive
/// loops parse it. Properties: every non-empty line is counted, every sample is sane (a
/// timer is never negative, a sanitised key holds only clean bytes), and the one-pass
/// reader of common lines agrees with the general rules on every line it accepts.
pub fn statsd_datagram(data: &[u8]) {
    let Some((&flags, packet)) = data.split_first() else {
        return;
    };
    let config = StatsdConfig {
        histograms_as_timers: flags & 1 != 0,
        key_name_sanitize: flags & 2 == 0,
        ..StatsdConfig::default()
    };
    let mut samples = Vec::new();
    let mut bad_lines = Vec::new();
    let counts = gantry_statsd::parse(packet, &config, &mut samples, &mut bad_lines);
    let lines: Vec<&[u8]> = packet
        .split(|&b| b == b'\n')
        .filter(|line| !line.is_empty())
        .collect();
    assert_eq!(counts.lines, lines.len() as u64);
    assert!(
        bad_lines.len() <= 16,
        "bad lines are described a few at most"
    );
    assert!(bad_lines.iter().all(|b| b.line.chars().count() <= 200));
    for sample in &samples {
        check_statsd_sample(sample, &config);
    }
    for line in lines {
        let Some(fast) = gantry_statsd::parse_line_fast(line, &config) else {
            continue;
        };
        let text = std::str::from_utf8(line);
        assert!(
            text.is_ok(),
            "the fast reader took a line that is not UTF-8: {line:?}"
        );
        let Ok(text) = text else { return };
        let mut general = Vec::new();
        let bad = gantry_statsd::parse_line_general(text, &config, &mut general, &mut Vec::new());
        assert_eq!(
            (general, bad),
            (vec![fast], 0),
            "the fast reader and the general rules disagree on {text:?}"
        );
    }
}

fn check_statsd_sample(sample: &Sample<'_>, config: &StatsdConfig) {
    if config.key_name_sanitize {
        assert!(
            sample
                .key
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"_-.;=".contains(&b)),
            "a sanitised key with other bytes: {:?}",
            sample.key
        );
    }
    match &sample.kind {
        Kind::Counter { value } => assert!(!value.is_nan(), "{sample:?}"),
        Kind::Timer { value, count } => {
            assert!(*value >= 0.0, "a negative timing: {sample:?}");
            assert!(*count > 0.0, "a timing standing for no events: {sample:?}");
        }
        Kind::Gauge { value, .. } => assert!(value.is_finite(), "{sample:?}"),
        Kind::Set { member } => assert!(!member.is_empty(), "{sample:?}"),
    }
}

/// One value of a line built by [`statsd_shard`].
#[derive(Debug, Arbitrary)]
enum ShardLine {
    Counter { key: u8, value: i16 },
    Timer { key: u8, value: u16, rate: u8 },
    Gauge { key: u8, value: i16, signed: bool },
    Set { key: u8, member: u8 },
}

/// What happens next to the aggregator of [`statsd_shard`].
#[derive(Debug, Arbitrary)]
enum ShardOp {
    /// A datagram of known lines, received by one of two receive loops.
    Lines { second: bool, lines: Vec<ShardLine> },
    /// A datagram of any bytes.
    Raw { second: bool, bytes: Vec<u8> },
    /// A flush: the loops' shards absorbed (or merged), then the points computed.
    Flush { merge: bool },
}

#[derive(Debug, Arbitrary)]
struct ShardInput {
    legacy_namespace: bool,
    flush_counts: bool,
    delete_idle_stats: bool,
    histograms_as_timers: bool,
    ops: Vec<ShardOp>,
}

/// What [`statsd_shard`] expects of one flush, for the keys its known lines use.
#[derive(Default)]
struct ShardModel {
    /// Sum of each counter key this interval.
    counters: HashMap<String, i64>,
    /// Events, smallest and largest value of each timer key this interval.
    timers: HashMap<String, (f64, f64, f64)>,
    /// Members of each set key this interval.
    sets: HashMap<String, HashSet<String>>,
    /// Each gauge key's updates this interval, in arrival order, with the loop they came to.
    gauge_updates: HashMap<String, Vec<(bool, f64, bool)>>,
    /// Gauge values known from earlier intervals (a key whose updates reached both loops
    /// in one interval, or came from raw bytes, is no longer known).
    gauges: HashMap<String, f64>,
    /// Keys that raw datagrams touched this interval: not checked.
    tainted: HashSet<String>,
    /// Gauges that raw datagrams or two loops touched: never checked again.
    unknown_gauges: HashSet<String>,
}

/// Structured: datagrams (known lines or any bytes) received by two receive loops and
/// folded into their shards, flushed now and then. Properties: no panic; for the keys of
/// known lines, a flush gives each counter the sum sent (whole values, no sample rate),
/// each timer its event count (sample rates that divide exactly) and extremes, each set its
/// distinct members, and a gauge updated through one loop the value Etsy's rules give.
pub fn statsd_shard(data: &[u8]) {
    let mut u = Unstructured::new(data);
    let Ok(input) = ShardInput::arbitrary(&mut u) else {
        return;
    };
    let config = StatsdConfig {
        legacy_namespace: input.legacy_namespace,
        flush_counts: input.flush_counts,
        delete_idle_stats: input.delete_idle_stats,
        histograms_as_timers: input.histograms_as_timers,
        ..StatsdConfig::default()
    };
    let mut aggregator = Aggregator::new(config.clone());
    let mut shards = [Shard::new(), Shard::new()];
    let mut model = ShardModel::default();
    let mut stamp = 0u64;
    let mut now = 1_700_000_000i64;
    for op in input.ops.into_iter().take(256) {
        match op {
            ShardOp::Lines { second, lines } => {
                let mut packet = String::new();
                for line in lines.iter().take(64) {
                    if !packet.is_empty() {
                        packet.push('\n');
                    }
                    packet.push_str(&shard_line(line, second, &mut model));
                }
                stamp += 1;
                let shard = &mut shards[usize::from(second)];
                fold(shard, packet.as_bytes(), &config, stamp, false, &mut model);
            }
            ShardOp::Raw { second, bytes } => {
                stamp += 1;
                let shard = &mut shards[usize::from(second)];
                fold(shard, &bytes, &config, stamp, true, &mut model);
            }
            ShardOp::Flush { merge } => {
                if merge {
                    let taken = shards.each_mut().map(std::mem::take);
                    aggregator.merge(taken);
                } else {
                    for shard in &mut shards {
                        aggregator.absorb(shard);
                        assert!(shard.is_empty(), "an absorbed shard keeps values");
                    }
                }
                now += 10;
                let points = aggregator.flush(now);
                check_flush(&points, &config, &mut model);
            }
        }
    }
}

/// The text of one known line (keys by kind, so their flushed names never meet), and what
/// it adds to the model.
fn shard_line(line: &ShardLine, second: bool, model: &mut ShardModel) -> String {
    match *line {
        ShardLine::Counter { key, value } => {
            let key = format!("fz.c{}", key % 8);
            *model.counters.entry(key.clone()).or_default() += i64::from(value);
            format!("{key}:{value}|c")
        }
        ShardLine::Timer { key, value, rate } => {
            let key = format!("fz.t{}", key % 8);
            let (rate_text, events) = match rate % 3 {
                0 => ("", 1.0),
                1 => ("|@0.5", 2.0),
                _ => ("|@0.25", 4.0),
            };
            let value = f64::from(value);
            let timer =
                model
                    .timers
                    .entry(key.clone())
                    .or_insert((0.0, f64::INFINITY, f64::NEG_INFINITY));
            timer.0 += events;
            timer.1 = timer.1.min(value);
            timer.2 = timer.2.max(value);
            format!("{key}:{value}|ms{rate_text}")
        }
        ShardLine::Gauge { key, value, signed } => {
            let key = format!("fz.g{}", key % 8);
            let (text, signed) = if signed {
                (format!("{value:+}"), true)
            } else {
                (value.unsigned_abs().to_string(), false)
            };
            let value = if signed {
                f64::from(value)
            } else {
                f64::from(value.unsigned_abs())
            };
            model
                .gauge_updates
                .entry(key.clone())
                .or_default()
                .push((second, value, signed));
            format!("{key}:{text}|g")
        }
        ShardLine::Set { key, member } => {
            let key = format!("fz.s{}", key % 8);
            let member = format!("m{member}");
            model
                .sets
                .entry(key.clone())
                .or_default()
                .insert(member.clone());
            format!("{key}:{member}|s")
        }
    }
}

/// Parses a datagram into a shard as a receive loop does. The samples of known lines are
/// what [`shard_line`] added to the model; a known key that raw bytes reach is no longer
/// checked.
fn fold(
    shard: &mut Shard,
    packet: &[u8],
    config: &StatsdConfig,
    stamp: u64,
    raw: bool,
    model: &mut ShardModel,
) {
    let mut samples = Vec::new();
    let counts = gantry_statsd::parse(packet, config, &mut samples, &mut Vec::new());
    shard.record_packet(&counts);
    shard.add_all(&samples, stamp);
    if !raw {
        return;
    }
    for sample in &samples {
        if sample.key.starts_with("fz.") {
            model.tainted.insert(sample.key.to_string());
            if matches!(sample.kind, Kind::Gauge { .. }) {
                model.unknown_gauges.insert(sample.key.to_string());
            }
        }
    }
}

/// Compares a flush with the model, then starts the model's next interval.
fn check_flush(points: &[gantry_statsd::Point], config: &StatsdConfig, model: &mut ShardModel) {
    let mut flushed: HashMap<&str, Vec<f64>> = HashMap::new();
    for point in points {
        flushed
            .entry(point.name.as_str())
            .or_default()
            .push(point.value);
    }
    let has = |name: &str, value: f64| {
        flushed
            .get(name)
            .is_some_and(|values| values.iter().any(|v| v.to_bits() == value.to_bits()))
    };
    for (key, sum) in &model.counters {
        if model.tainted.contains(key) || !config.flush_counts {
            continue;
        }
        let name = if config.legacy_namespace {
            format!("stats_counts.{key}")
        } else {
            format!("stats.counters.{key}.count")
        };
        assert!(
            has(&name, *sum as f64),
            "{name} should be {sum}: {points:?}"
        );
    }
    for (key, (events, lower, upper)) in &model.timers {
        if model.tainted.contains(key) {
            continue;
        }
        let name = format!("stats.timers.{key}");
        assert!(
            has(&format!("{name}.count"), *events),
            "{name}.count should be {events}"
        );
        assert!(
            has(&format!("{name}.lower"), *lower),
            "{name}.lower should be {lower}"
        );
        assert!(
            has(&format!("{name}.upper"), *upper),
            "{name}.upper should be {upper}"
        );
    }
    for (key, members) in &model.sets {
        if model.tainted.contains(key) {
            continue;
        }
        let name = format!("stats.sets.{key}.count");
        let count = members.len() as f64;
        assert!(has(&name, count), "{name} should be {count}");
    }
    let updates = std::mem::take(&mut model.gauge_updates);
    for (key, updates) in updates {
        let loops: HashSet<bool> = updates.iter().map(|u| u.0).collect();
        if loops.len() > 1 || model.tainted.contains(&key) {
            model.unknown_gauges.insert(key.clone());
        }
        if model.unknown_gauges.contains(&key) {
            model.gauges.remove(&key);
            continue;
        }
        // Etsy's rule, one update after another: a signed value moves a gauge that holds
        // a non-zero value, and sets it otherwise.
        let mut value = model.gauges.get(&key).copied();
        for (_, v, signed) in updates {
            value = Some(match value {
                Some(current) if signed && current != 0.0 => current + v,
                _ => v,
            });
        }
        if let Some(value) = value {
            model.gauges.insert(key.clone(), value);
            let name = format!("stats.gauges.{key}");
            assert!(has(&name, value), "{name} should be {value}: {points:?}");
        }
    }
    if config.delete_idle_stats {
        // Idle gauges are forgotten after their time to live: the model no longer knows.
        model.gauges.clear();
        model.unknown_gauges.clear();
    }
    model.counters.clear();
    model.timers.clear();
    model.sets.clear();
    model.tainted.clear();
}

// ---- Graphite protocols ----

const NOW: i64 = 1_700_000_000;

/// Graphite plaintext lines, as the listeners read them. Properties: the borrowing and
/// owning readers agree; a point read has a normalised path (normalising it again changes
/// nothing), a timestamp not before 1970 and a value that is not NaN; and written out again
/// as a line (as the forward queue writes it) it reads back as the same point.
pub fn graphite_plaintext(data: &[u8]) {
    use gantry_graphite::plaintext::{parse_line, parse_line_borrowed, split_lines};
    for line in split_lines(data) {
        let borrowed = parse_line_borrowed(line, NOW);
        let owned = parse_line(line, NOW);
        let point = match (borrowed, owned) {
            (Ok(b), Ok(o)) => {
                assert_eq!(b.path, o.path);
                assert_eq!(b.timestamp, o.timestamp);
                assert_eq!(b.value.to_bits(), o.value.to_bits());
                o
            }
            (Err(b), Err(o)) => {
                assert_eq!(b, o);
                continue;
            }
            (b, o) => panic!("the two readers disagree on {line:?}: {b:?} / {o:?}"),
        };
        assert!(point.timestamp >= 0, "{point:?}");
        assert!(!point.value.is_nan(), "{point:?}");
        assert!(!point.path.is_empty());
        let again = gantry_graphite::tags::normalise(&point.path);
        assert_eq!(
            again.as_deref(),
            Ok(point.path.as_str()),
            "normalising twice"
        );
        let mut text = Vec::new();
        gantry_graphite::queue::encode(
            [(point.path.as_str(), point.timestamp, point.value)],
            &mut text,
        );
        let Some(written) = text.strip_suffix(b"\n") else {
            panic!("an encoded point without its newline: {text:?}");
        };
        let back = parse_line(written, NOW);
        assert!(
            back.as_ref().is_ok_and(|b| b.path == point.path
                && b.timestamp == point.timestamp
                && b.value.to_bits() == point.value.to_bits()),
            "{point:?} written as {:?} reads back as {back:?}",
            String::from_utf8_lossy(written)
        );
    }
}

/// A small generator for chunk sizes and the like, seeded from the input.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Rng {
        Rng(seed ^ 0x9e37_79b9_7f4a_7c15 | 1)
    }

    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

/// A byte stream cut into reads by a seed from the input, fed to the Graphite listener's
/// line buffer. Property: whatever the cuts, the lines it yields are those of splitting
/// the whole stream at once (the last piece, without its newline, left waiting), with
/// every line longer than the limit replaced by one "too long".
pub fn graphite_line_buffer(data: &[u8]) {
    use gantry_graphite::plaintext::{split_lines, Line, LineBuffer, Lines};
    let Some((header, stream)) = data.split_at_checked(3) else {
        return;
    };
    let max_line = if header[0] & 0x80 != 0 {
        64 * 1024
    } else {
        usize::from(header[0])
    };
    let mut rng = Rng::new(u64::from(u16::from_le_bytes([header[1], header[2]])));
    // The expected lines: every piece followed by a newline is a line.
    let pieces: Vec<&[u8]> = stream.split(|&b| b == b'\n').collect();
    let (complete, last) = pieces.split_at(pieces.len() - 1);
    let expected: Vec<Option<Vec<u8>>> = complete
        .iter()
        .map(|raw| (raw.len() <= max_line).then(|| raw.to_vec()))
        .zip(split_lines(stream))
        .map(|(kept, trimmed)| kept.map(|_| trimmed.to_vec()))
        .collect();
    // One buffer is read through its callback, another through `push_lines`, as the
    // listener reads it.
    let mut buffer = LineBuffer::default();
    let mut collector = LineBuffer::default();
    let mut collected = Lines::default();
    let mut seen: Vec<Option<Vec<u8>>> = Vec::new();
    let mut too_long = 0;
    let mut rest = stream;
    while !rest.is_empty() {
        // Reads of 0 to 23 bytes.
        let take = (rng.next() % 24) as usize;
        let (chunk, after) = rest.split_at(take.min(rest.len()));
        rest = after;
        buffer.push(chunk, max_line, |line| {
            seen.push(match line {
                Line::Complete(l) => Some(l.to_vec()),
                Line::TooLong => None,
            })
        });
        too_long += collector.push_lines(chunk, max_line, &mut collected);
    }
    assert_eq!(seen, expected, "lines depend on where the reads were cut");
    let kept: Vec<Vec<u8>> = expected.iter().flatten().cloned().collect();
    let lines: Vec<Vec<u8>> = collected.iter().map(<[u8]>::to_vec).collect();
    assert_eq!(lines, kept, "push_lines collects other lines");
    assert_eq!(collected.len(), kept.len());
    assert_eq!(too_long, expected.len() - kept.len());
    assert_eq!(buffer.has_partial(), !last[0].is_empty());
    assert_eq!(collector.has_partial(), buffer.has_partial());
}

/// Carbon pickle frames. The first byte picks the mode: a payload decoded alone, or a stream
/// of frames cut into reads. Properties: a decoded point has a normalised path, a timestamp
/// not before 1970 and a value that is not NaN; the frames found in a stream do not depend
/// on where its reads were cut.
pub fn graphite_pickle(data: &[u8]) {
    use gantry_graphite::pickle::{decode, FrameBuffer};
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    if mode & 1 == 0 {
        check_pickle(decode(rest, NOW));
        return;
    }
    let max_frame = 1 + usize::from(mode >> 1) * 64;
    let mut whole_frames = Vec::new();
    let whole = FrameBuffer::default().push(rest, max_frame, |p| whole_frames.push(p.to_vec()));
    let mut rng = Rng::new(u64::from(mode));
    let mut buffer = FrameBuffer::default();
    let mut frames = Vec::new();
    let mut cut = Ok(());
    let mut left = rest;
    while !left.is_empty() && cut.is_ok() {
        let take = (1 + rng.next() % 16) as usize;
        let (chunk, after) = left.split_at(take.min(left.len()));
        left = after;
        cut = buffer.push(chunk, max_frame, |p| frames.push(p.to_vec()));
    }
    assert_eq!(
        whole.is_ok(),
        cut.is_ok(),
        "a refused frame depends on the reads"
    );
    if whole.is_ok() {
        assert_eq!(
            frames, whole_frames,
            "frames depend on where the reads were cut"
        );
    } else {
        assert!(whole_frames.starts_with(&frames) || frames.starts_with(&whole_frames));
    }
    for frame in &frames {
        check_pickle(decode(frame, NOW));
    }
}

fn check_pickle(
    decoded: Result<gantry_graphite::pickle::Decoded, gantry_graphite::pickle::PickleError>,
) {
    let Ok(decoded) = decoded else { return };
    for point in &decoded.points {
        assert!(point.timestamp >= 0, "{point:?}");
        assert!(!point.value.is_nan(), "{point:?}");
        let again = gantry_graphite::tags::normalise(&point.path);
        assert_eq!(
            again.as_deref(),
            Ok(point.path.as_str()),
            "normalising twice"
        );
    }
}

/// Text split at its first two newlines into a tagged name, a glob and a path. Properties:
/// a normalised name normalises to itself, with its tags sorted by key and each key once;
/// a compiled glob answers as `glob_match` does; a pattern without glob characters matches
/// exactly itself; a path matches the pattern made by putting `*` in place of any one of its
/// nodes; graphite-web's tags of a name always include `name`.
pub fn tags_glob(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let mut parts = text.splitn(3, '\n');
    let name = parts.next().unwrap_or_default();
    let pattern = parts.next().unwrap_or(name);
    let path = parts.next().unwrap_or(pattern);

    if let Ok(normal) = gantry_graphite::tags::normalise(name) {
        let again = gantry_graphite::tags::normalise(&normal);
        assert_eq!(again.as_deref(), Ok(normal.as_ref()), "{name:?}");
        if let Some((_, tags)) = normal.split_once(';') {
            let keys: Vec<&str> = tags
                .split(';')
                .map(|tag| tag.split_once('=').map_or(tag, |(k, _)| k))
                .collect();
            assert!(
                keys.windows(2).all(|w| w[0] < w[1]),
                "{normal:?}: keys unsorted"
            );
        } else {
            assert_eq!(normal, name, "an untagged name changed");
        }
    }
    let tags = gantry_render::series::tags_from_name(name);
    assert!(tags.contains_key("name"), "{name:?}: {tags:?}");

    if let Ok(glob) = gantry_render::Glob::try_new(pattern) {
        assert_eq!(glob.matches(path), gantry_render::glob_match(pattern, path));
        if !pattern.contains(['*', '?', '[', '{']) {
            assert_eq!(
                glob.matches(path),
                pattern == path,
                "{pattern:?} vs {path:?}"
            );
        }
    } else {
        assert!(
            !gantry_render::glob_match(pattern, path),
            "a refused glob matched"
        );
    }
    if !path.contains(['*', '?', '[', '{', '}', ']', ',', '!', '^', '-']) {
        let nodes: Vec<&str> = path.split('.').collect();
        for i in 0..nodes.len().min(8) {
            let mut starred = nodes.clone();
            starred[i] = "*";
            let pattern = starred.join(".");
            assert!(
                gantry_render::glob_match(&pattern, path),
                "{pattern:?} should match {path:?}"
            );
        }
    }
}

// ---- Render ----

/// A render target parsed, printed and parsed again. Properties: the printed form parses to
/// the same tree (positions aside), prints the same again, and an error's position is
/// inside the target.
pub fn render_parse(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match gantry_graphite::target::parse(text) {
        Ok(expr) => {
            let printed = expr.to_string();
            let again = gantry_graphite::target::parse(&printed);
            assert!(again.is_ok(), "{text:?} printed as {printed:?}: {again:?}");
            let Ok(again) = again else { return };
            assert_eq!(
                without_positions(&again),
                without_positions(&expr),
                "{text:?} printed as {printed:?}"
            );
            assert_eq!(again.to_string(), printed, "printing is not stable");
        }
        Err(e) => assert!(e.position <= text.chars().count(), "{text:?}: {e}"),
    }
}

/// `expr` with every position 0, to compare trees.
fn without_positions(expr: &Expr) -> Expr {
    match expr {
        Expr::Path { path, .. } => Expr::Path {
            path: path.clone(),
            pos: 0,
        },
        Expr::String { value, .. } => Expr::String {
            value: value.clone(),
            pos: 0,
        },
        Expr::Number { value, .. } => Expr::Number {
            value: *value,
            pos: 0,
        },
        Expr::Bool { value, .. } => Expr::Bool {
            value: *value,
            pos: 0,
        },
        Expr::None { .. } => Expr::None { pos: 0 },
        Expr::Call(call) => Expr::Call(gantry_graphite::target::Call {
            name: call.name.clone(),
            args: call.args.iter().map(without_positions).collect(),
            kwargs: call
                .kwargs
                .iter()
                .map(|(k, v)| (k.clone(), without_positions(v)))
                .collect(),
            pos: 0,
        }),
    }
}

/// The series [`render_eval`] evaluates over: names (some tagged), each with its step.
const SERIES: &[(&str, i64)] = &[
    ("web1.cpu.user", 10),
    ("web1.cpu.system", 10),
    ("web2.cpu.user", 10),
    ("web2.cpu.system", 60),
    ("db1.cpu.user", 60),
    ("app.requests.count", 10),
    ("app.errors", 60),
    ("disk.used;dc=eu;host=web1", 60),
    ("disk.used;dc=us;host=web2", 60),
    ("hw.load", 30),
];

/// An in-memory source whose values follow from the name and the time, windowed as whisper
/// windows (from and until rounded down to the step, plus one step). Some points are
/// missing, some are NaN, negative, zero or very large.
struct Memory {
    seed: u64,
}

impl Memory {
    fn value(&self, name: &str, t: i64) -> Option<f64> {
        let mut h = self.seed ^ (t as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        for b in name.bytes() {
            h = (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3);
        }
        match h % 16 {
            0 | 1 => None,
            2 => Some(f64::NAN),
            3 => Some(-(((h >> 8) % 100) as f64)),
            4 => Some(0.0),
            5 => Some(1e300),
            _ => Some(((h >> 8) % 1000) as f64 / 10.0),
        }
    }

    fn window(&self, name: &str, step: i64, from: i64, until: i64) -> Series {
        let lo = from - from.rem_euclid(step) + step;
        let hi = until - until.rem_euclid(step) + step;
        let values = (lo..hi)
            .step_by(step as usize)
            .map(|t| self.value(name, t))
            .collect();
        Series::new(name, lo, hi, step, values)
    }

    /// Whisper keeps at most a few days of each series here: a request further away finds
    /// nothing, so the engine's own limits are what a long range meets.
    fn in_range(from: i64, until: i64) -> bool {
        until > from
            && until - from <= 3 * 86_400
            && (NOW - 400 * 86_400..NOW + 86_400).contains(&from)
    }
}

impl SeriesSource for Memory {
    fn find(&self, pattern: &str, from: i64, until: i64) -> Result<Vec<Series>, RenderError> {
        if pattern == "broken.source" {
            return Err(RenderError::Source("the store is unavailable".into()));
        }
        if !Memory::in_range(from, until) {
            return Ok(Vec::new());
        }
        let glob = gantry_render::Glob::new(pattern);
        Ok(SERIES
            .iter()
            .filter(|(name, _)| !name.contains(';') && glob.matches(name))
            .map(|&(name, step)| self.window(name, step, from, until))
            .collect())
    }

    fn find_by_tags(
        &self,
        exprs: &[String],
        from: i64,
        until: i64,
    ) -> Result<Vec<Series>, RenderError> {
        if !Memory::in_range(from, until) {
            return Ok(Vec::new());
        }
        Ok(SERIES
            .iter()
            .filter(|(name, _)| {
                let tags = gantry_render::series::tags_from_name(name);
                exprs.iter().all(|e| match e.split_once('=') {
                    Some((k, v)) => tags.get(k).is_some_and(|t| t == v),
                    None => false,
                })
            })
            .map(|&(name, step)| self.window(name, step, from, until))
            .collect())
    }

    fn events(&self, tags: &[String], from: i64, until: i64) -> Result<Vec<i64>, RenderError> {
        Ok([
            (NOW - 3600, "deploy"),
            (NOW - 600, "alert"),
            (NOW - 60, "deploy"),
        ]
        .iter()
        .filter(|(when, tag)| (from..=until).contains(when) && tags.iter().all(|t| t == tag))
        .map(|(when, _)| *when)
        .collect())
    }
}

/// Strings the generated targets use as arguments: intervals, aggregation names, tag
/// expressions, regular expressions and replacements.
const WORDS: &[&str] = &[
    "1min",
    "5min",
    "-1h",
    "1h",
    "1d",
    "7d",
    "-1d",
    "10s",
    "1s",
    "1y",
    "1000y",
    "0s",
    "-5min",
    "sum",
    "average",
    "avg",
    "max",
    "min",
    "last",
    "median",
    "diff",
    "stddev",
    "count",
    "range",
    "multiply",
    "avg_zero",
    "first",
    "current",
    "total",
    "name=disk.used",
    "dc=eu",
    "host=web2",
    "name",
    "dc",
    "host",
    "web(\\d)",
    "host-\\1",
    "\\0\\0\\0\\0",
    ".*",
    "(.)",
    "$",
    "\\g<x>",
    "[",
    "",
    "*",
    "deploy",
    "alert",
];

/// Paths the generated targets fetch.
const PATHS: &[&str] = &[
    "web*.cpu.user",
    "web1.cpu.user",
    "*.cpu.*",
    "app.requests.count",
    "db1.cpu.{user,system}",
    "hw.load",
    "nothing.here",
    "broken.source",
    "web[12].cpu.?ser",
    "{a,b}{a,b}{a,b}{a,b}{a,b}{a,b}{a,b}{a,b}{a,b}{a,b}{a,b}{a,b}{a,b}{a,b}",
];

/// Numbers the generated targets pass.
const NUMBERS: &[f64] = &[
    0.0, 1.0, 2.0, 3.0, -1.0, -2.0, 0.5, 50.0, 90.0, 100.0, 1000.0, 1e9, -1e18, 1e18, 1e300,
    5e-324, -0.0,
];

/// A generated expression at most `depth` calls deep.
fn arbitrary_expr(u: &mut Unstructured<'_>, depth: usize) -> arbitrary::Result<Expr> {
    if depth > 0 && u.ratio(3, 4)? {
        return arbitrary_call(u, depth);
    }
    Ok(match u.int_in_range(0..=9)? {
        0..=4 => Expr::Path {
            path: u.choose(PATHS)?.to_string(),
            pos: 0,
        },
        5 | 6 => Expr::String {
            value: u.choose(WORDS)?.to_string(),
            pos: 0,
        },
        7 => Expr::Number {
            value: *u.choose(NUMBERS)?,
            pos: 0,
        },
        8 => Expr::Bool {
            value: u.arbitrary()?,
            pos: 0,
        },
        _ => Expr::None { pos: 0 },
    })
}

/// A call of a registered function (now and then an unknown one), with arguments of the
/// kinds its parameters take (now and then of another kind).
fn arbitrary_call(u: &mut Unstructured<'_>, depth: usize) -> arbitrary::Result<Expr> {
    let def = u.choose(gantry_render::registry::FUNCTIONS)?;
    let name = if u.ratio(1, 50)? {
        "noSuchFunction".to_string()
    } else {
        def.name.to_string()
    };
    let mut args = Vec::new();
    let mut kwargs = Vec::new();
    for param in def.params {
        if !param.required && u.ratio(1, 2)? {
            continue;
        }
        let count = if param.multiple {
            u.int_in_range(0..=3)?
        } else {
            1
        };
        for _ in 0..count {
            let arg = if u.ratio(1, 10)? {
                arbitrary_expr(u, depth - 1)?
            } else {
                arbitrary_arg(u, param, depth)?
            };
            if !param.multiple && !param.required && u.ratio(1, 3)? {
                kwargs.push((param.name.to_string(), arg));
            } else if kwargs.is_empty() {
                args.push(arg);
            }
        }
    }
    Ok(Expr::Call(gantry_graphite::target::Call {
        name,
        args,
        kwargs,
        pos: 0,
    }))
}

fn arbitrary_arg(
    u: &mut Unstructured<'_>,
    param: &gantry_render::registry::Param,
    depth: usize,
) -> arbitrary::Result<Expr> {
    let number = |u: &mut Unstructured<'_>| -> arbitrary::Result<Expr> {
        Ok(Expr::Number {
            value: *u.choose(NUMBERS)?,
            pos: 0,
        })
    };
    let word = |u: &mut Unstructured<'_>| -> arbitrary::Result<Expr> {
        let value = if !param.options.is_empty() && u.ratio(2, 3)? {
            u.choose(param.options)?.to_string()
        } else {
            u.choose(WORDS)?.to_string()
        };
        Ok(Expr::String { value, pos: 0 })
    };
    match param.kind {
        "seriesList" | "seriesLists" => arbitrary_expr(u, depth - 1),
        "integer" | "float" | "node" | "intOrInf" => number(u),
        "nodeOrTag" | "intOrInterval" | "any" => {
            if u.arbitrary()? {
                number(u)
            } else {
                word(u)
            }
        }
        "boolean" => Ok(Expr::Bool {
            value: u.arbitrary()?,
            pos: 0,
        }),
        _ => word(u),
    }
}

/// The limits [`render_eval`] evaluates within: small, so that an input that reaches them
/// does so quickly.
const FUZZ_LIMITS: Limits = Limits {
    max_points: 2_000_000,
    max_series: 20_000,
    max_calls: 2_000,
};

/// A render target evaluated over a small in-memory source. The header picks the time
/// range, the source's values and the output options; the first header byte also picks
/// whether the rest is a target's text or a generated target (every registered function,
/// with arguments of the kinds it takes). Properties: no panic, no unbounded work or memory
/// (the evaluation stops at its limits with an error that names them); a generated target
/// evaluates as its printed text does; the JSON and CSV shapes of the answer can be made.
pub fn render_eval(data: &[u8]) {
    let Some((header, rest)) = data.split_at_checked(6) else {
        return;
    };
    let from = NOW - i64::from(u16::from_le_bytes([header[1], header[2]])) * 60;
    // From one second to three days.
    let until = from + 1 + i64::from(u16::from_le_bytes([header[3], header[4]])) % 4320 * 60;
    let source = Memory {
        seed: u64::from(header[5]),
    };
    let ctx = gantry_render::Context {
        from,
        until,
        now: NOW,
        source: &source,
    };
    let max_data_points = match header[0] >> 2 {
        0 => None,
        n => Some(usize::from(n)),
    };
    let options = gantry_render::RenderOptions {
        max_data_points,
        no_null_points: header[0] & 2 != 0,
    };
    let result = if header[0] & 1 == 0 {
        let Ok(text) = std::str::from_utf8(rest) else {
            return;
        };
        gantry_render::evaluate_with_limits(text, &ctx, FUZZ_LIMITS)
    } else {
        let mut u = Unstructured::new(rest);
        let Ok(expr) = arbitrary_expr(&mut u, 4) else {
            return;
        };
        let by_tree = gantry_render::evaluate_expr_with_limits(&expr, &ctx, FUZZ_LIMITS);
        let printed = expr.to_string();
        // seriesByTag names its results by the target's text, which the tree does not
        // have; names can steer later functions, so such targets are not compared.
        if !printed.contains("seriesByTag") {
            let by_text = gantry_render::evaluate_with_limits(&printed, &ctx, FUZZ_LIMITS);
            assert_eq!(
                shapes(&by_tree),
                shapes(&by_text),
                "{printed} evaluates differently from its tree"
            );
        }
        by_tree
    };
    let series = match result {
        Ok(series) => series,
        Err(RenderError::OverLimit(message)) => {
            assert!(message.contains("limit"), "{message}");
            return;
        }
        Err(_) => return,
    };
    let points: usize = series.iter().map(|s| s.values.len()).sum();
    assert!(
        points as u64 <= FUZZ_LIMITS.max_points,
        "{points} points past the limit"
    );
    let json = gantry_render::to_json(&series, options);
    assert!(json.len() <= series.len());
    if points <= 100_000 {
        let _ = gantry_render::to_csv(&series);
    }
}

/// A series' start, end, step and values (as bits).
type Shape = (i64, i64, i64, Vec<Option<u64>>);

/// What two evaluations must agree on: errors or not, and each series' range, step and
/// values (names differ where a name quotes the target's text).
fn shapes(result: &Result<Vec<Series>, RenderError>) -> Result<Vec<Shape>, ()> {
    match result {
        Ok(list) => Ok(list
            .iter()
            .map(|s| {
                (
                    s.start,
                    s.end,
                    s.step,
                    s.values.iter().map(|v| v.map(f64::to_bits)).collect(),
                )
            })
            .collect()),
        Err(_) => Err(()),
    }
}

/// Graphite's time formats: a render function's offset (`5min`, `-1d`) and a request's
/// `from`/`until`. Properties: an offset stays within its documented bound, and a signed
/// copy of an unsigned one is its negation; a time that starts with a sign is the same
/// time after `now`.
pub fn graphite_time(data: &[u8]) {
    use chrono::TimeZone;
    let text = String::from_utf8_lossy(data);
    let offset = gantry_render::time::parse_time_offset(&text);
    if let Ok(seconds) = offset {
        assert!(
            seconds.abs() <= gantry_render::time::MAX_OFFSET_SECONDS,
            "{text:?}"
        );
        let trimmed = text.trim();
        if trimmed.starts_with(|c: char| c.is_ascii_digit()) {
            assert_eq!(
                gantry_render::time::parse_time_offset(&format!("-{trimmed}")),
                Ok(-seconds)
            );
            assert_eq!(
                gantry_render::time::parse_time_offset(&format!("+{trimmed}")),
                Ok(seconds)
            );
        }
    }
    let Some(now) = chrono::Utc.timestamp_opt(NOW, 0).single() else {
        return;
    };
    let time = gantry_core::time::parse_graphite_time("from", &text, now);
    if text.starts_with(['-', '+']) {
        let after_now = gantry_core::time::parse_graphite_time("from", &format!("now{text}"), now);
        assert_eq!(time.ok(), after_now.ok(), "{text:?} and now{text:?} differ");
    }
}

// ---- The time-series store ----

/// Bytes written as flush-log segment files in a fresh directory, then read as an open
/// does after a crash. The header picks the checkpoint, the segments' names and where the
/// bytes are split into two segments. Properties: no panic and nothing allocated beyond
/// the bytes; damage is counted (corrupt or torn records), never applied; the next sequence
/// is above the checkpoint and every sequence found.
pub fn tsdb_flush_log(data: &[u8]) {
    let Some((header, bytes)) = data.split_at_checked(4) else {
        return;
    };
    let checkpoint = match header[0] % 4 {
        0 => 0,
        1 => 1,
        2 => u64::from(header[1]),
        _ => u64::MAX - u64::from(header[1]),
    };
    let first = match header[2] % 3 {
        0 => 1,
        1 => u64::from(header[2]),
        _ => u64::MAX,
    };
    let Ok(dir) = tempfile::tempdir() else {
        return;
    };
    let split = usize::from(header[3]).min(bytes.len());
    let (one, two) = if header[0] & 4 != 0 {
        bytes.split_at(split)
    } else {
        (bytes, &[][..])
    };
    let mut names = vec![(first, one)];
    if !two.is_empty() {
        names.push((first.saturating_add(1 + u64::from(header[1])), two));
    }
    for (seq, bytes) in &names {
        if std::fs::write(dir.path().join(format!("{seq:020}.log")), bytes).is_err() {
            return;
        }
    }
    // A file that is not a segment is left alone.
    let _ = std::fs::write(dir.path().join("notes.txt"), b"not a segment");
    match gantry_tsdb::replay_flush_log(dir.path(), checkpoint) {
        Ok(found) => {
            let records = found.records + found.corrupt;
            assert!(
                records <= bytes.len() / 16,
                "{found:?} from {} bytes",
                bytes.len()
            );
            assert!(found.points <= bytes.len() / 16, "{found:?}");
            assert!(found.undecodable <= found.records);
            assert!(found.torn <= names.len());
            assert!(
                found.next_seq > checkpoint || checkpoint == u64::MAX,
                "{found:?} after checkpoint {checkpoint}"
            );
            for (seq, _) in &names {
                assert!(found.next_seq > *seq || *seq == u64::MAX, "{found:?}");
            }
        }
        Err(e) => {
            let _ = e.to_string();
        }
    }
}

/// One block's slots, for the structured mode of [`tsdb_block`].
#[derive(Debug, Arbitrary)]
struct BlockInput {
    slots: Vec<Option<f64>>,
    compress: bool,
    delta: Vec<u8>,
}

/// Stored blocks and delta records, as reads decode them. The first byte picks the mode:
/// bytes decoded as a block (and as a delta over it), or slots encoded and decoded.
/// Properties: corrupt bytes are an error, never a panic; a block that decodes re-encodes
/// (compressed or not) and decodes to the same values bit for bit; decoding into a buffer
/// gives what decoding alone gives, and refuses a buffer of another size.
pub fn tsdb_block(data: &[u8]) {
    use gantry_tsdb::block::{apply_delta, decode, decode_into, encode};
    pass_over_pcodec_debug_panics();
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let (slots, delta) = if mode & 1 == 0 {
        let Ok(slots) = decode(rest) else {
            let mut buffer = vec![None; 360];
            let _ = decode_into(rest, &mut buffer);
            let _ = apply_delta(rest, &mut buffer);
            return;
        };
        (slots, rest)
    } else {
        let mut u = Unstructured::new(rest);
        let Ok(input) = BlockInput::arbitrary(&mut u) else {
            return;
        };
        let mut slots = input.slots;
        slots.truncate(usize::from(u16::MAX));
        let encoded = encode(&slots, input.compress);
        let decoded = decode(&encoded);
        assert_eq!(
            decoded.ok().map(|d| bits(&d)),
            Some(bits(&slots)),
            "slots do not survive encoding"
        );
        let mut delta_slots = slots.clone();
        let _ = apply_delta(&input.delta, &mut delta_slots);
        (slots, &[][..])
    };
    for compress in [false, true] {
        let again = decode(&encode(&slots, compress));
        assert_eq!(
            again.ok().map(|d| bits(&d)),
            Some(bits(&slots)),
            "a decoded block does not survive re-encoding (compress {compress})"
        );
    }
    let mut buffer = vec![Some(1.0); slots.len()];
    let encoded = encode(&slots, mode & 2 != 0);
    assert!(decode_into(&encoded, &mut buffer).is_ok());
    assert_eq!(
        bits(&buffer),
        bits(&slots),
        "decoding into a buffer differs"
    );
    let mut wrong = vec![None; slots.len() + 1];
    assert!(
        decode_into(&encoded, &mut wrong).is_err(),
        "a buffer of another size"
    );
    let mut applied = slots.clone();
    if apply_delta(delta, &mut applied).is_err() {
        return;
    }
    assert_eq!(applied.len(), slots.len());
}

/// pcodec, the block codec, checks some of what it reads only with debug assertions, which
/// fuzz builds turn on; gantry-tsdb catches such a panic and reports the block as corrupt
/// (release builds never panic there). libFuzzer's panic hook aborts on every panic, caught
/// or not, so this target passes over a panic raised in pcodec's own source files; every
/// other panic reaches the hook that was there before.
fn pass_over_pcodec_debug_panics() {
    static INSTALLED: std::sync::Once = std::sync::Once::new();
    INSTALLED.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let in_pcodec = info
                .location()
                .is_some_and(|at| at.file().contains("/pco-"));
            if !in_pcodec {
                previous(info);
            }
        }));
    });
}

fn bits(slots: &[Option<f64>]) -> Vec<Option<u64>> {
    slots.iter().map(|v| v.map(f64::to_bits)).collect()
}

// ---- Forward queue ----

/// One point for the structured mode of [`forward_queue`].
#[derive(Debug, Arbitrary)]
struct QueuedPoint {
    node: u8,
    tag: Option<u8>,
    timestamp: i64,
    value: f64,
}

#[derive(Debug, Arbitrary)]
struct QueueInput {
    batches: Vec<Vec<QueuedPoint>>,
    /// Where a crash cut the segment (from the end), if it did.
    cut: Option<u16>,
}

/// A forward queue's segment read back. The first byte picks the mode: any bytes as a
/// segment, or batches of points encoded one after another into a segment, perhaps cut
/// short. Properties: every line kept is a point the plaintext reader accepts; kept and
/// skipped lines account for every complete line; a segment of valid points reads back as
/// exactly those points, and one cut short loses only the line that was cut.
pub fn forward_queue(data: &[u8]) {
    use gantry_graphite::queue::{decode, encode};
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    if mode & 1 == 0 {
        check_segment(rest);
        return;
    }
    let mut u = Unstructured::new(rest);
    let Ok(input) = QueueInput::arbitrary(&mut u) else {
        return;
    };
    let mut segment = Vec::new();
    let mut written: Vec<(String, i64, f64)> = Vec::new();
    let mut ends = Vec::new();
    for batch in input.batches.iter().take(64) {
        let points: Vec<(String, i64, f64)> = batch
            .iter()
            .take(64)
            .map(|p| {
                let path = match p.tag {
                    Some(t) => format!("fz.n{};t={t}", p.node),
                    None => format!("fz.n{}", p.node),
                };
                (path, p.timestamp, p.value)
            })
            .collect();
        encode(
            points.iter().map(|(p, t, v)| (p.as_str(), *t, *v)),
            &mut segment,
        );
        for point in points {
            let mut line = Vec::new();
            encode([(point.0.as_str(), point.1, point.2)], &mut line);
            ends.push(ends.last().copied().unwrap_or(0) + line.len());
            written.push(point);
        }
    }
    assert_eq!(ends.last().copied().unwrap_or(0), segment.len());
    let length = match input.cut {
        Some(cut) => segment.len().saturating_sub(usize::from(cut)),
        None => segment.len(),
    };
    let decoded = decode(&segment[..length]);
    // The points whose line was written in full, less those the reader refuses (a
    // timestamp before 1970 but -1, which means "now"; a NaN value).
    let whole = ends.iter().take_while(|&&end| end <= length).count();
    let whole_end = whole.checked_sub(1).map_or(0, |last| ends[last]);
    let sendable: Vec<(String, i64, f64)> = written[..whole]
        .iter()
        .filter(|(_, timestamp, value)| (*timestamp >= 0 || *timestamp == -1) && !value.is_nan())
        .map(|(path, timestamp, value)| {
            let timestamp = if *timestamp == -1 { NOW } else { *timestamp };
            (path.clone(), timestamp, *value)
        })
        .collect();
    assert_eq!(decoded.points as usize, sendable.len());
    assert_eq!(decoded.skipped as usize, whole - sendable.len());
    assert_eq!(
        decoded.torn,
        length > whole_end,
        "a cut line is not reported"
    );
    let back: Vec<(String, i64, u64)> = gantry_graphite::plaintext::split_lines(&decoded.text)
        .filter(|l| !l.is_empty())
        .filter_map(|l| gantry_graphite::plaintext::parse_line(l, NOW).ok())
        .map(|p| (p.path, p.timestamp, p.value.to_bits()))
        .collect();
    let want: Vec<(String, i64, u64)> = sendable
        .into_iter()
        .map(|(p, t, v)| (p, t, v.to_bits()))
        .collect();
    assert_eq!(
        back, want,
        "points do not come back from the queue as written"
    );
    check_segment(&segment[..length]);
}

fn check_segment(segment: &[u8]) {
    let decoded = gantry_graphite::queue::decode(segment);
    let mut kept = 0;
    for line in decoded.text.split(|&b| b == b'\n') {
        if line.is_empty() {
            continue;
        }
        kept += 1;
        assert!(
            gantry_graphite::plaintext::parse_line(line, NOW).is_ok(),
            "a kept line is not a point: {:?}",
            String::from_utf8_lossy(line)
        );
    }
    assert_eq!(kept, decoded.points);
    assert!(decoded.text.is_empty() || decoded.text.ends_with(b"\n"));
    let pieces: Vec<&[u8]> = segment.split(|&b| b == b'\n').collect();
    let complete = pieces[..pieces.len() - 1]
        .iter()
        .filter(|l| !l.is_empty())
        .count();
    assert_eq!(decoded.points + decoded.skipped, complete as u64);
    assert_eq!(decoded.torn, !pieces[pieces.len() - 1].is_empty());
    assert!(decoded.text.len() <= segment.len());
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The structured helpers are exercised on a few fixed inputs.
    #[test]
    fn every_target_runs_on_a_few_plain_inputs() {
        for target in TARGETS {
            for input in [
                &b""[..],
                b"\x00",
                b"\x01\x02\x03\x04\x05\x06\x07\x08\x09\x0a\x0b\x0c",
                b"\x00\x00\x00\x00\x00\x00sumSeries(web*.cpu.user)",
                b"a.b.c 1 1700000000\nstats:1|c\n",
            ] {
                (target.run)(input);
            }
        }
    }

    #[test]
    fn the_memory_source_windows_like_whisper() {
        let source = Memory { seed: 1 };
        let found = source.find("web1.cpu.user", NOW - 600, NOW).unwrap();
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].values.len(), 60);
        assert!(source.find("web1.cpu.user", 0, NOW).unwrap().is_empty());
    }
}
