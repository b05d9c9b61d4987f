//! An evaluation stays within its limits: targets that would fetch, make or repeat too much
//! fail with an error naming the limit, before the memory or the time is spent.

use gantry_render::{
    evaluate, evaluate_with_limits, Context, Limits, RenderError, Series, SeriesSource,
};

/// Every path is one series of one point a minute over the range asked.
struct Minutes;

impl SeriesSource for Minutes {
    fn find(&self, pattern: &str, from: i64, until: i64) -> Result<Vec<Series>, RenderError> {
        let start = from - from.rem_euclid(60);
        let count = ((until - start) / 60).clamp(0, 100_000) as usize;
        let values = (0..count).map(|i| Some(i as f64)).collect();
        Ok(vec![Series::new(
            pattern,
            start,
            start + 60 * count as i64,
            60,
            values,
        )])
    }
    fn find_by_tags(&self, _: &[String], _: i64, _: i64) -> Result<Vec<Series>, RenderError> {
        Ok(Vec::new())
    }
    fn events(&self, _: &[String], _: i64, _: i64) -> Result<Vec<i64>, RenderError> {
        Ok(Vec::new())
    }
}

const DAY: i64 = 86_400;

fn context(from: i64, until: i64) -> Context<'static> {
    Context {
        from,
        until,
        now: until,
        source: &Minutes,
    }
}

/// The error `target` fails with over a day, within `limits`.
fn over(target: &str, limits: Limits) -> String {
    match evaluate_with_limits(target, &context(10 * DAY, 11 * DAY), limits) {
        Ok(series) => panic!("{target}: {} series, expected an error", series.len()),
        Err(RenderError::OverLimit(message)) => message,
        Err(other) => panic!("{target}: {other}, expected a limit"),
    }
}

const SMALL: Limits = Limits {
    max_points: 10_000,
    max_series: 100,
    max_calls: 50,
};

#[test]
fn ordinary_targets_are_well_within_the_default_limits() {
    let series = evaluate(
        "aliasByNode(movingAverage(scale(a.b, 2), '10min'), 1)",
        &context(10 * DAY, 17 * DAY),
    )
    .unwrap();
    assert_eq!(series.len(), 1);
    assert_eq!(Limits::default(), Limits::DEFAULT);
}

#[test]
fn points_fetched_and_made_are_counted() {
    // A day of minutes is 1,440 points; each function's result counts again.
    assert!(evaluate_with_limits("scale(a, 2)", &context(10 * DAY, 11 * DAY), SMALL).is_ok());
    let message = over(
        "scale(scale(scale(scale(scale(scale(scale(a, 2), 2), 2), 2), 2), 2), 2)",
        SMALL,
    );
    assert!(message.contains("more than 10000 points"), "{message}");
    // events() makes a point a second over the range, checked before it is allocated.
    let message = over("events('deploy')", SMALL);
    assert!(message.contains("points"), "{message}");
    let message = over("summarize(a, '1s')", SMALL);
    assert!(message.contains("points"), "{message}");
    let message = over("hitcount(a, '1s')", SMALL);
    assert!(message.contains("points"), "{message}");
    // Every window movingAverage averages is read.
    let message = over("movingAverage(a, 100)", SMALL);
    assert!(message.contains("points"), "{message}");
}

#[test]
fn calls_repeated_by_time_moving_functions_are_counted() {
    let many_points = Limits {
        max_points: u64::MAX,
        max_series: u64::MAX,
        ..SMALL
    };
    let message = over(
        "timeStack(timeStack(scale(a, 1), '1d', 0, 40), '1d', 0, 40)",
        many_points,
    );
    assert!(message.contains("more than 50 function calls"), "{message}");
}

#[test]
fn series_are_counted() {
    let many_points = Limits {
        max_points: u64::MAX,
        ..SMALL
    };
    let message = over("timeStack(a, '1min', 0, 200)", many_points);
    assert!(message.contains("more than 100 series"), "{message}");
}

#[test]
fn names_and_globs_are_bounded() {
    // Each substitution repeats the name eight times.
    let eight = r"'\0\0\0\0\0\0\0\0'";
    let target = format!(
        "aliasSub(aliasSub(aliasSub(aliasSub(aliasSub(aliasSub(a.b, '.+', {eight}), '.+', {eight}), '.+', {eight}), '.+', {eight}), '.+', {eight}), '.+', {eight})"
    );
    let err = evaluate(&target, &context(10 * DAY, 11 * DAY)).unwrap_err();
    assert!(err.to_string().contains("longer than 65536 bytes"), "{err}");
    let wide = format!("sumSeries({})", "{a,b}".repeat(20));
    let message = over(&wide, Limits::DEFAULT);
    assert!(message.contains("10000 alternatives"), "{message}");
}

#[test]
fn offsets_beyond_a_thousand_years_are_refused() {
    let err = evaluate(
        "timeShift(a, '+292000000000y')",
        &context(10 * DAY, 11 * DAY),
    )
    .unwrap_err();
    assert!(err.to_string().contains("at most 1000 years"), "{err}");
}

#[test]
fn a_range_of_one_second_is_fine() {
    // constantLine's step is then 0.
    let series = evaluate("nPercentile(constantLine(1), 50)", &context(DAY, DAY + 1)).unwrap();
    assert_eq!(series.len(), 1);
}

#[test]
fn the_deepest_target_evaluates_on_a_thread_of_two_megabytes() {
    let depth = gantry_graphite::target::MAX_DEPTH;
    let target = "scale(".repeat(depth) + "a" + &", 1)".repeat(depth);
    let worker = std::thread::Builder::new()
        .stack_size(2 * 1024 * 1024)
        .spawn(move || evaluate(&target, &context(DAY, DAY + 600)).map(|s| s.len()))
        .unwrap();
    assert_eq!(worker.join().unwrap(), Ok(1));
}
