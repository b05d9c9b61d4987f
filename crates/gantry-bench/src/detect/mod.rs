//! `gantry-bench detect`: the detection benchmark behind `scripts/bench/detect`
//! (docs/bench/detect.md).
//!
//! Per seed, a corpus ([`corpus`]) of 240 key metrics over 21 days with 400 changes and 60
//! shifts without one is stored under the default retention ([`store`]), then run through
//! the detector as the server runs it ([`detector`]: each change's comparison plus the
//! always-on watch) and through two baselines ([`baselines`]), and the verdicts are scored
//! ([`score`]). `--train` runs the training seeds (0–9) and tunes the baselines to the
//! most recall at no more false alerts than the detector; `--report` runs the report
//! seeds (100–109) with the tuned baselines. Series run on `--threads` threads; every
//! figure depends on the seed only.
//!
//! stdout gets one `seed=…` line per seed, then one line of totals (`--report`) or of the
//! tuned baselines (`--train`); progress and diagnostics go to stderr.

mod baselines;
mod corpus;
mod detector;
mod draw;
mod score;
mod store;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::Instant;

use anyhow::{bail, Context as _};
use gantry_detect::watch::WatchConfig;

use baselines::{HwParams, StaticParams};
use corpus::{SeriesSpec, DAY, SERIES, SLOTS, START, STEP, WATCH_FROM};
use detector::{DetectorOptions, Source};
use score::{percentile, score, Tally};
use store::Stored;

/// The baselines' settings `--train` chose on seeds 0–9 (most recall at no more false
/// alerts than the detector's 33 there); `--report` uses them unless told otherwise. The
/// static threshold: half the 1 % quantile (drop series) or twice the 99 % one (rise
/// series), 30 samples in a row: recall 0.105 at 23 false alerts. Holt–Winters: every
/// delta below 10 raised 383 false alerts or more, and at 10 the bands never alert (see
/// `baselines`): recall 0 at 0.
const TUNED_STATIC: StaticParams = StaticParams {
    quantile: 0.01,
    margin: 1.0,
    points: 30,
};
const TUNED_HW: HwParams = HwParams {
    delta: 10.0,
    points: 3,
};

#[derive(Debug, clap::Args)]
pub struct DetectArgs {
    /// Tune the baselines on the training seeds.
    #[arg(long, conflicts_with = "report", required_unless_present = "report")]
    train: bool,
    /// Measure on the report seeds.
    #[arg(long)]
    report: bool,
    /// Seeds instead of the mode's own: `0-9`, `100,102`.
    #[arg(long)]
    seeds: Option<String>,
    /// Only the first N series of each seed (a quick look; the contract is all 240).
    #[arg(long)]
    series: Option<usize>,
    #[arg(long, default_value_t = 2)]
    threads: usize,
    /// The static baseline's quantile, factor (`1 + m` beyond it) and run length
    /// (default: the tuned ones).
    #[arg(long)]
    static_quantile: Option<f64>,
    #[arg(long)]
    static_margin: Option<f64>,
    #[arg(long)]
    static_points: Option<usize>,
    /// The Holt–Winters baseline's band width and run length (default: the tuned ones).
    #[arg(long)]
    hw_delta: Option<f64>,
    #[arg(long)]
    hw_points: Option<usize>,
    /// The watch's settings (default: `WatchConfig::default()`).
    #[arg(long)]
    watch_alpha: Option<f64>,
    #[arg(long)]
    watch_min_shift: Option<f64>,
    /// Windows in slots, comma-separated.
    #[arg(long)]
    watch_windows: Option<String>,
    #[arg(long)]
    watch_reference_secs: Option<u32>,
    #[arg(long)]
    watch_screen: Option<f64>,
    #[arg(long)]
    watch_hold_secs: Option<u32>,
    /// Leave out the always-on watch, or the changes' comparisons.
    #[arg(long)]
    no_watch: bool,
    #[arg(long)]
    no_changes: bool,
    /// Run the detector only, not the baselines (for tuning the detector).
    #[arg(long)]
    detector_only: bool,
    /// List every missed event and false verdict on stderr.
    #[arg(long)]
    verbose: bool,
}

fn parse_seeds(text: &str) -> anyhow::Result<Vec<u64>> {
    let mut seeds = Vec::new();
    for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        match part.split_once('-') {
            Some((a, b)) => {
                let (a, b): (u64, u64) = (a.parse()?, b.parse()?);
                if b < a {
                    bail!("seed range {part} runs backwards");
                }
                seeds.extend(a..=b);
            }
            None => seeds.push(part.parse().with_context(|| format!("seed '{part}'"))?),
        }
    }
    if seeds.is_empty() {
        bail!("no seeds in '{text}'");
    }
    Ok(seeds)
}

/// One series' verdicts, scored.
struct SeriesResult {
    detector: Tally,
    found: Vec<detector::Found>,
    /// Per source: (found, false).
    by_source: [(usize, usize); 3],
    statics: Vec<Tally>,
    hws: Vec<Tally>,
}

fn source_index(source: Source) -> usize {
    match source {
        Source::Change => 0,
        Source::Watch => 1,
        Source::Zero => 2,
    }
}

fn run_series(
    spec: &SeriesSpec,
    options: &DetectorOptions,
    statics: &[StaticParams],
    hws: &[HwParams],
) -> SeriesResult {
    let raw = spec.generate();
    let store = Stored::new(spec, &raw);
    drop(raw);
    let found = detector::run(spec, &store, options);
    let times: Vec<i64> = found.iter().map(|f| f.at).collect();
    let detector = score(spec, &times);
    let mut by_source = [(0, 0); 3];
    for f in &found {
        let alone = score(spec, &[f.at]);
        let entry = &mut by_source[source_index(f.source)];
        entry.0 += alone.found;
        entry.1 += alone.false_verdicts;
    }
    let hold = i64::from(options.watch.hold_secs);
    let statics = baselines::static_alerts(spec, &store, statics, hold)
        .iter()
        .map(|alerts| score(spec, alerts))
        .collect();
    let renderings = baselines::hw_renderings(&store, 3);
    let hws = baselines::hw_alerts(spec, &renderings, hws, hold)
        .iter()
        .map(|alerts| score(spec, alerts))
        .collect();
    SeriesResult {
        detector,
        found,
        by_source,
        statics,
        hws,
    }
}

/// Totals of one seed.
struct SeedResult {
    seed: u64,
    detector: Tally,
    by_source: [(usize, usize); 3],
    statics: Vec<Tally>,
    hws: Vec<Tally>,
    series_days: f64,
}

fn run_seed(
    seed: u64,
    args: &DetectArgs,
    options: &DetectorOptions,
    statics: &[StaticParams],
    hws: &[HwParams],
) -> SeedResult {
    let mut specs = corpus::plan(seed);
    specs.truncate(args.series.unwrap_or(SERIES));
    let next = AtomicUsize::new(0);
    let results: Mutex<Vec<Option<SeriesResult>>> =
        Mutex::new((0..specs.len()).map(|_| None).collect());
    std::thread::scope(|scope| {
        for _ in 0..args.threads.max(1) {
            scope.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(spec) = specs.get(i) else { break };
                let result = run_series(spec, options, statics, hws);
                results.lock().expect("no worker panicked")[i] = Some(result);
            });
        }
    });
    let mut total = SeedResult {
        seed,
        detector: Tally::default(),
        by_source: [(0, 0); 3],
        statics: vec![Tally::default(); statics.len()],
        hws: vec![Tally::default(); hws.len()],
        series_days: specs.len() as f64 * (START + SLOTS as i64 * STEP - WATCH_FROM) as f64
            / DAY as f64,
    };
    let results = results.into_inner().expect("no worker panicked");
    for (spec, result) in specs.iter().zip(results) {
        let result = result.expect("every series ran");
        if args.verbose {
            for e in &result.detector.missed {
                let gap = spec
                    .gaps
                    .iter()
                    .any(|&(from, until)| from < e.t0 + score::FIND_WITHIN && e.t0 < until);
                eprintln!(
                    "  seed {seed} {} rate {:.2}/s: missed {:?} ×{:.2} at {} (+{} s of {}){}",
                    spec.name(),
                    spec.rate,
                    e.kind,
                    e.factor,
                    e.t0,
                    (e.t0 - START) % DAY,
                    e.end - e.t0,
                    if gap { " in a gap" } else { "" }
                );
            }
            for at in &result.detector.false_at {
                let f = result.found.iter().find(|f| f.at == *at);
                eprintln!(
                    "  seed {seed} {} rate {:.2}/s: false verdict at {at} (day {} +{} s) {:?}",
                    spec.name(),
                    spec.rate,
                    (at - START) / DAY,
                    (at - START) % DAY,
                    f
                );
            }
        }
        total.detector.add(result.detector);
        for (t, s) in total.by_source.iter_mut().zip(result.by_source) {
            t.0 += s.0;
            t.1 += s.1;
        }
        for (t, s) in total.statics.iter_mut().zip(result.statics) {
            t.add(s);
        }
        for (t, s) in total.hws.iter_mut().zip(result.hws) {
            t.add(s);
        }
    }
    total
}

fn ratio(a: usize, b: usize) -> f64 {
    if b == 0 {
        0.0
    } else {
        a as f64 / b as f64
    }
}

fn precision(t: &Tally) -> f64 {
    ratio(t.found, t.found + t.false_verdicts)
}

fn recall(t: &Tally) -> f64 {
    ratio(t.found, t.events)
}

fn watch_config(args: &DetectArgs) -> anyhow::Result<WatchConfig> {
    let mut config = WatchConfig::default();
    if let Some(v) = args.watch_alpha {
        config.alpha_per_day = v;
    }
    if let Some(v) = args.watch_min_shift {
        config.min_shift = v;
    }
    if let Some(text) = &args.watch_windows {
        config.windows = text
            .split(',')
            .map(|w| w.trim().parse::<u32>())
            .collect::<Result<_, _>>()
            .context("--watch-windows: slots, comma-separated")?;
    }
    if let Some(v) = args.watch_reference_secs {
        config.reference_secs = v;
    }
    if let Some(v) = args.watch_screen {
        config.screen = v;
    }
    if let Some(v) = args.watch_hold_secs {
        config.hold_secs = v;
    }
    config.check().map_err(anyhow::Error::msg)?;
    Ok(config)
}

fn seed_line(r: &SeedResult, static_tally: &Tally, hw_tally: &Tally) -> String {
    let d = &r.detector;
    format!(
        "seed={} events={} found={} false={} precision={:.3} recall={:.3} delay_p50_s={} \
         delay_p90_s={} false_per_day={:.4} false_halt={:.3} static_recall={:.3} \
         hw_recall={:.3} found_change={} found_watch={} found_zero={} false_change={} \
         false_watch={} false_zero={} static_false={} hw_false={}",
        r.seed,
        d.events,
        d.found,
        d.false_verdicts,
        precision(d),
        recall(d),
        percentile(&d.delays, 50.0),
        percentile(&d.delays, 90.0),
        d.false_verdicts as f64 / r.series_days,
        ratio(d.halted, d.no_effect),
        recall(static_tally),
        recall(hw_tally),
        r.by_source[0].0,
        r.by_source[1].0,
        r.by_source[2].0,
        r.by_source[0].1,
        r.by_source[1].1,
        r.by_source[2].1,
        static_tally.false_verdicts,
        hw_tally.false_verdicts,
    )
}

pub fn run(args: DetectArgs) -> anyhow::Result<()> {
    let seeds = match (&args.seeds, args.train) {
        (Some(text), _) => parse_seeds(text)?,
        (None, true) => (0..=9).collect(),
        (None, false) => (100..=109).collect(),
    };
    let options = DetectorOptions {
        watch: watch_config(&args)?,
        changes: !args.no_changes,
        always_on: !args.no_watch,
    };
    let (statics, hws): (Vec<StaticParams>, Vec<HwParams>) = if args.detector_only {
        (Vec::new(), Vec::new())
    } else if args.train {
        (
            baselines::STATIC_QUANTILES
                .iter()
                .flat_map(|&quantile| {
                    baselines::STATIC_MARGINS.iter().flat_map(move |&margin| {
                        baselines::STATIC_POINTS
                            .iter()
                            .map(move |&points| StaticParams {
                                quantile,
                                margin,
                                points,
                            })
                    })
                })
                .collect(),
            baselines::HW_DELTAS
                .iter()
                .flat_map(|&delta| {
                    baselines::HW_POINTS
                        .iter()
                        .map(move |&points| HwParams { delta, points })
                })
                .collect(),
        )
    } else {
        (
            vec![StaticParams {
                quantile: args.static_quantile.unwrap_or(TUNED_STATIC.quantile),
                margin: args.static_margin.unwrap_or(TUNED_STATIC.margin),
                points: args.static_points.unwrap_or(TUNED_STATIC.points),
            }],
            vec![HwParams {
                delta: args.hw_delta.unwrap_or(TUNED_HW.delta),
                points: args.hw_points.unwrap_or(TUNED_HW.points),
            }],
        )
    };
    eprintln!(
        "detect: {} seeds ({}), {} series each, {} threads; watch {:?}",
        seeds.len(),
        if args.train { "training" } else { "report" },
        args.series.unwrap_or(SERIES),
        args.threads,
        options.watch
    );
    let mut all = Tally::default();
    let mut all_statics = vec![Tally::default(); statics.len()];
    let mut all_hws = vec![Tally::default(); hws.len()];
    let mut series_days = 0.0;
    for &seed in &seeds {
        let started = Instant::now();
        let result = run_seed(seed, &args, &options, &statics, &hws);
        eprintln!(
            "detect: seed {seed} took {:.1} s",
            started.elapsed().as_secs_f64()
        );
        let (static_best, hw_best) = if args.train || args.detector_only {
            (Tally::default(), Tally::default())
        } else {
            (result.statics[0].clone(), result.hws[0].clone())
        };
        println!("{}", seed_line(&result, &static_best, &hw_best));
        all.add(result.detector);
        for (t, s) in all_statics.iter_mut().zip(result.statics) {
            t.add(s);
        }
        for (t, s) in all_hws.iter_mut().zip(result.hws) {
            t.add(s);
        }
        series_days += result.series_days;
    }
    if args.detector_only {
        println!(
            "detector precision={:.3} recall={:.3} delay_p50_s={} delay_p90_s={} \
             false_per_day={:.4} false_halt={:.3} events={} found={} false={}",
            precision(&all),
            recall(&all),
            percentile(&all.delays, 50.0),
            percentile(&all.delays, 90.0),
            all.false_verdicts as f64 / series_days,
            ratio(all.halted, all.no_effect),
            all.events,
            all.found,
            all.false_verdicts,
        );
    } else if args.train {
        // The most recall at no more false alerts than the detector (fewer false alerts
        // break a tie).
        let budget = all.false_verdicts;
        // Without any setting that quiet, the quietest.
        let pick = |tallies: &[Tally]| -> Option<usize> {
            (0..tallies.len())
                .filter(|&i| tallies[i].false_verdicts <= budget)
                .max_by(|&a, &b| {
                    tallies[a]
                        .found
                        .cmp(&tallies[b].found)
                        .then(tallies[b].false_verdicts.cmp(&tallies[a].false_verdicts))
                })
                .or_else(|| (0..tallies.len()).min_by_key(|&i| tallies[i].false_verdicts))
        };
        for (i, (p, t)) in statics.iter().zip(&all_statics).enumerate() {
            eprintln!(
                "  static {i:3}: quantile {:e} margin {} points {:2}: recall {:.3} false {}",
                p.quantile,
                p.margin,
                p.points,
                recall(t),
                t.false_verdicts
            );
        }
        for (i, (p, t)) in hws.iter().zip(&all_hws).enumerate() {
            eprintln!(
                "  hw {i:2}: delta {} points {}: recall {:.3} false {}",
                p.delta,
                p.points,
                recall(t),
                t.false_verdicts
            );
        }
        let s = pick(&all_statics).context("no static threshold within the false budget")?;
        let h = pick(&all_hws).context("no Holt–Winters setting within the false budget")?;
        println!(
            "tuned detector_false={} detector_recall={:.3} static_quantile={} static_points={} \
             static_margin={} static_recall={:.3} static_false={} hw_delta={} hw_points={} \
             hw_recall={:.3} hw_false={}",
            budget,
            recall(&all),
            statics[s].quantile,
            statics[s].points,
            statics[s].margin,
            recall(&all_statics[s]),
            all_statics[s].false_verdicts,
            hws[h].delta,
            hws[h].points,
            recall(&all_hws[h]),
            all_hws[h].false_verdicts,
        );
    } else {
        println!(
            "total precision={:.3} recall={:.3} delay_p50_s={} delay_p90_s={} false_per_day={:.4} \
             false_halt={:.3} static_recall={:.3} hw_recall={:.3} events={} found={} false={} \
             static_quantile={} static_margin={} static_points={} static_false={} hw_delta={} \
             hw_points={} hw_false={}",
            precision(&all),
            recall(&all),
            percentile(&all.delays, 50.0),
            percentile(&all.delays, 90.0),
            all.false_verdicts as f64 / series_days,
            ratio(all.halted, all.no_effect),
            recall(&all_statics[0]),
            recall(&all_hws[0]),
            all.events,
            all.found,
            all.false_verdicts,
            statics[0].quantile,
            statics[0].margin,
            statics[0].points,
            all_statics[0].false_verdicts,
            hws[0].delta,
            hws[0].points,
            all_hws[0].false_verdicts,
        );
    }
    Ok(())
}
