//! Errors name the function, the parameter and the position in the target, and hand-checked
//! cases graphite-web cannot produce (it fails on them) behave as documented.

use gantry_render::{evaluate, registry, Context, RenderError, Series, SeriesSource};

struct One;

impl SeriesSource for One {
    fn find(&self, pattern: &str, from: i64, _until: i64) -> Result<Vec<Series>, RenderError> {
        if pattern == "broken" {
            return Err(RenderError::Source("the store is unavailable".into()));
        }
        // A counter with a gap and a wrap at 100: 90, None, 95, 3, 10.
        let values = vec![Some(90.0), None, Some(95.0), Some(3.0), Some(10.0)];
        Ok(vec![Series::new(pattern, from, from + 50, 10, values)])
    }
    fn find_by_tags(&self, _: &[String], _: i64, _: i64) -> Result<Vec<Series>, RenderError> {
        Ok(Vec::new())
    }
    fn events(&self, _: &[String], _: i64, _: i64) -> Result<Vec<i64>, RenderError> {
        Ok(Vec::new())
    }
}

fn run(target: &str) -> Result<Vec<Series>, RenderError> {
    let ctx = Context {
        from: 1000,
        until: 1050,
        now: 1050,
        source: &One,
    };
    evaluate(target, &ctx)
}

/// `target` fails with exactly `expected`.
fn check_error(target: &str, expected: &str) {
    match run(target) {
        Ok(s) => panic!("{target}: expected an error, got {} series", s.len()),
        Err(e) => assert_eq!(e.to_string(), expected, "{target}"),
    }
}

/// `target` gives one series with `name` and `values`.
fn check(target: &str, name: &str, values: &[Option<f64>]) {
    let got = run(target).unwrap_or_else(|e| panic!("{target}: {e}"));
    assert_eq!(got.len(), 1, "{target}");
    assert_eq!(got[0].name, name, "{target}");
    assert_eq!(got[0].values, values, "{target}");
}

#[test]
fn errors_say_what_and_where() {
    let cases = [
        ("sumSeriez(a.b)", "unknown function 'sumSeriez' at position 0"),
        ("sumSeries(a.b, sumSeriez(a.c))", "unknown function 'sumSeriez' at position 15"),
        (
            "movingAverage(a.b, \"5x\")",
            "movingAverage: windowSize must be a number or a time string like '5min' (argument 2 at position 19)",
        ),
        (
            "movingAverage(a.b, true)",
            "movingAverage: windowSize must be a number or a time string like '5min' (argument 2 at position 19)",
        ),
        ("scale(a.b)", "scale: the argument 'factor' is missing (at position 0)"),
        ("scale(a.b, 1, 2)", "scale: takes at most 2 arguments, got 3 (at position 0)"),
        ("scale(a.b, \"x\")", "scale: factor must be a number (argument 2 at position 11)"),
        ("scale(3, 2)", "scale: seriesList must be a series list (a path or a function call) (argument 1 at position 6)"),
        (
            "summarize(a.b, \"1h\", \"avgg\")",
            "summarize: unsupported aggregation function 'avgg' (use average, sum, min, max, last, median, diff, stddev, count, range or multiply) (argument 3 at position 21)",
        ),
        (
            "consolidateBy(a.b, \"mean\")",
            "consolidateBy: consolidationFunc must be one of sum, average, avg_zero, min, max, first, last (got 'mean') (argument 2 at position 19)",
        ),
        ("alias(a.b, colour=\"x\")", "alias: there is no parameter 'colour' (parameters: seriesList, newName) (argument 2 at position 18)"),
        ("alias(a.b, newName=\"x\", \"y\")", "a positional argument after a keyword argument (at position 24)"),
        ("sumSeries(broken)", "the store is unavailable"),
    ];
    for (target, expected) in cases {
        check_error(target, expected);
    }
}

#[test]
fn hand_checked_cases() {
    // graphite-web 1.1.10 raises a TypeError when maxValue/minValue meet a null point; here
    // nulls stay null and reset the previous value. 95 -> 3 wraps at maxValue 100:
    // 100 + 1 + 3 - 95 = 9.
    check(
        "nonNegativeDerivative(a.b, 100)",
        "nonNegativeDerivative(a.b)",
        &[None, None, None, Some(9.0), Some(7.0)],
    );
    // With minValue only, a drop counts from minValue: 3 - 0 = 3.
    check(
        "nonNegativeDerivative(a.b, minValue=0)",
        "nonNegativeDerivative(a.b)",
        &[None, None, None, Some(3.0), Some(7.0)],
    );
    // perSecond divides by the 10 s step.
    check(
        "perSecond(a.b, 100)",
        "perSecond(a.b)",
        &[None, None, None, Some(0.9), Some(0.7)],
    );
    // Keyword arguments and pipes.
    check(
        "a.b | scale(factor=2) | alias(newName=\"x\")",
        "x",
        &[Some(180.0), None, Some(190.0), Some(6.0), Some(20.0)],
    );
    // "m" is minutes: a 1-minute window over 10 s points averages 6 points; only 5 exist.
    check(
        "movingAverage(a.b, \"1m\")",
        "movingAverage(a.b,\"1m\")",
        &[],
    );
}

#[test]
fn registry_lists_every_function_the_evaluator_runs() {
    let all = registry::functions_json();
    for f in registry::FUNCTIONS {
        assert_eq!(all[f.name]["name"], f.name);
        // Every registered function is dispatched (an unknown one would say so).
        let target = format!("{}()", f.name);
        if let Err(RenderError::UnknownFunction { .. }) = run(&target) {
            panic!("{} is registered but not implemented", f.name);
        }
    }
}
