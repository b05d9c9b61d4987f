//! The implemented functions described as graphite-web's `/functions` endpoint does: an
//! object keyed by name, each with `name`, `function` (the signature), `description`,
//! `group` and `params` (`name`, `type`, `required`, and `default`, `options`, `multiple`
//! where they apply). The evaluator takes parameter names for its errors from here.

use serde_json::{json, Map, Value};

/// One parameter of a render function.
#[derive(Debug, Clone, Copy)]
pub struct Param {
    pub name: &'static str,
    /// graphite-web's type name: `seriesList`, `seriesLists`, `integer`, `float`, `string`,
    /// `boolean`, `interval`, `intOrInterval`, `node`, `nodeOrTag`, `tag`, `aggFunc`.
    pub kind: &'static str,
    pub required: bool,
    /// The default as JSON text, if there is one.
    pub default: Option<&'static str>,
    pub options: &'static [&'static str],
    /// Takes all remaining positional arguments.
    pub multiple: bool,
}

/// One render function.
#[derive(Debug, Clone, Copy)]
pub struct FunctionDef {
    pub name: &'static str,
    pub group: &'static str,
    pub description: &'static str,
    pub params: &'static [Param],
}

const fn req(name: &'static str, kind: &'static str) -> Param {
    Param {
        name,
        kind,
        required: true,
        default: None,
        options: &[],
        multiple: false,
    }
}

const fn opt(name: &'static str, kind: &'static str, default: Option<&'static str>) -> Param {
    Param {
        name,
        kind,
        required: false,
        default,
        options: &[],
        multiple: false,
    }
}

const fn many(name: &'static str, kind: &'static str, required: bool) -> Param {
    Param {
        name,
        kind,
        required,
        default: None,
        options: &[],
        multiple: true,
    }
}

const fn with_options(mut p: Param, options: &'static [&'static str]) -> Param {
    p.options = options;
    p
}

const AGG: &[&str] = &[
    "average", "avg", "avg_zero", "median", "sum", "total", "min", "max", "diff", "stddev",
    "count", "range", "rangeOf", "multiply", "last", "current",
];
const CONSOLIDATE: &[&str] = &[
    "sum", "average", "avg", "avg_zero", "min", "max", "first", "last",
];

const SERIES: Param = req("seriesList", "seriesList");
const SERIES_LISTS: Param = many("seriesLists", "seriesList", true);

macro_rules! f {
    ($name:literal, $group:literal, $desc:literal, [$($p:expr),* $(,)?]) => {
        FunctionDef { name: $name, group: $group, description: $desc, params: &[$($p),*] }
    };
}

/// Every implemented function, by name.
pub const FUNCTIONS: &[FunctionDef] = &[
    f!(
        "aliasSub",
        "Alias",
        "Renames each series by a regular expression substitution (`\\1` refers to a group).",
        [SERIES, req("search", "string"), req("replace", "string")]
    ),
    f!(
        "constantLine",
        "Special",
        "A horizontal line at a value across the whole range.",
        [req("value", "float")]
    ),
    f!(
        "alias",
        "Alias",
        "Gives each series a new name.",
        [SERIES, req("newName", "string")]
    ),
    f!(
        "aliasByNode",
        "Alias",
        "Names each series by some of its path's nodes (0-based, negative from the end) or tags.",
        [SERIES, many("nodes", "nodeOrTag", true)]
    ),
    f!(
        "aliasByMetric",
        "Alias",
        "Names each series by the last node of its path.",
        [SERIES]
    ),
    f!(
        "aliasByTags",
        "Alias",
        "Names each series by some of its tags or nodes.",
        [SERIES, many("tags", "nodeOrTag", true)]
    ),
    f!(
        "sumSeries",
        "Combine",
        "Adds series point by point.",
        [SERIES_LISTS]
    ),
    f!(
        "averageSeries",
        "Combine",
        "Averages series point by point.",
        [SERIES_LISTS]
    ),
    f!(
        "maxSeries",
        "Combine",
        "The maximum of series point by point.",
        [SERIES_LISTS]
    ),
    f!(
        "minSeries",
        "Combine",
        "The minimum of series point by point.",
        [SERIES_LISTS]
    ),
    f!(
        "diffSeries",
        "Combine",
        "Subtracts the other series from the first, point by point.",
        [SERIES_LISTS]
    ),
    f!(
        "divideSeries",
        "Combine",
        "Divides each series by one divisor series.",
        [
            req("dividendSeriesList", "seriesList"),
            req("divisorSeries", "seriesList")
        ]
    ),
    f!(
        "asPercent",
        "Combine",
        "Each series as a percentage of a total (a number, a series, or their sum).",
        [
            SERIES,
            opt("total", "any", None),
            many("nodes", "nodeOrTag", false)
        ]
    ),
    f!(
        "countSeries",
        "Combine",
        "The number of series.",
        [many("seriesLists", "seriesList", false)]
    ),
    f!(
        "sumSeriesWithWildcards",
        "Combine",
        "Sums series that agree on all nodes but the given positions.",
        [SERIES, many("position", "node", false)]
    ),
    f!(
        "groupByNode",
        "Combine",
        "Groups series by one node and aggregates each group.",
        [
            SERIES,
            req("nodeNum", "nodeOrTag"),
            with_options(opt("callback", "aggOrSeriesFunc", Some("\"average\"")), AGG)
        ]
    ),
    f!(
        "groupByTags",
        "Combine",
        "Groups series by tags and aggregates each group.",
        [
            SERIES,
            with_options(req("callback", "aggOrSeriesFunc"), AGG),
            many("tags", "tag", true)
        ]
    ),
    f!(
        "percentileOfSeries",
        "Combine",
        "The n-th percentile across series at each point.",
        [
            SERIES,
            req("n", "float"),
            opt("interpolate", "boolean", Some("false"))
        ]
    ),
    f!(
        "scale",
        "Transform",
        "Multiplies every point by a factor.",
        [SERIES, req("factor", "float")]
    ),
    f!(
        "offset",
        "Transform",
        "Adds a constant to every point.",
        [SERIES, req("factor", "float")]
    ),
    f!(
        "scaleToSeconds",
        "Transform",
        "Scales per-step values to per-`seconds` values.",
        [SERIES, req("seconds", "float")]
    ),
    f!(
        "perSecond",
        "Transform",
        "The non-negative per-second rate of a counter.",
        [
            SERIES,
            opt("maxValue", "float", None),
            opt("minValue", "float", None)
        ]
    ),
    f!(
        "nonNegativeDerivative",
        "Transform",
        "The difference between points, skipping counter resets.",
        [
            SERIES,
            opt("maxValue", "float", None),
            opt("minValue", "float", None)
        ]
    ),
    f!(
        "derivative",
        "Transform",
        "The difference between consecutive points.",
        [SERIES]
    ),
    f!(
        "integral",
        "Transform",
        "The running sum, skipping nulls.",
        [SERIES]
    ),
    f!(
        "movingAverage",
        "Calculate",
        "The average of the previous points or time window.",
        [
            SERIES,
            req("windowSize", "intOrInterval"),
            opt("xFilesFactor", "float", None)
        ]
    ),
    f!(
        "summarize",
        "Transform",
        "Aggregates points into fixed intervals.",
        [
            SERIES,
            req("intervalString", "interval"),
            with_options(opt("func", "aggFunc", Some("\"sum\"")), AGG),
            opt("alignToFrom", "boolean", Some("false"))
        ]
    ),
    f!(
        "hitcount",
        "Transform",
        "Estimates hits per interval from a rate.",
        [
            SERIES,
            req("intervalString", "interval"),
            opt("alignToInterval", "boolean", Some("false"))
        ]
    ),
    f!(
        "timeShift",
        "Transform",
        "The series as they were a time offset earlier (or later with '+').",
        [
            SERIES,
            req("timeShift", "interval"),
            opt("resetEnd", "boolean", Some("true")),
            opt("alignDST", "boolean", Some("false"))
        ]
    ),
    f!(
        "timeStack",
        "Transform",
        "The first series shifted by multiples of a unit, one series per shift.",
        [
            SERIES,
            opt("timeShiftUnit", "interval", Some("\"1d\"")),
            opt("timeShiftStart", "integer", Some("0")),
            opt("timeShiftEnd", "integer", Some("7"))
        ]
    ),
    f!(
        "highestCurrent",
        "Filter Series",
        "The n series with the highest last value.",
        [SERIES, req("n", "integer")]
    ),
    f!(
        "highestAverage",
        "Filter Series",
        "The n series with the highest average.",
        [SERIES, req("n", "integer")]
    ),
    f!(
        "lowestCurrent",
        "Filter Series",
        "The n series with the lowest last value.",
        [SERIES, req("n", "integer")]
    ),
    f!(
        "limit",
        "Filter Series",
        "The first n series.",
        [SERIES, req("n", "integer")]
    ),
    f!(
        "sortByMaxima",
        "Sorting",
        "Sorts series by their maximum, largest first.",
        [SERIES]
    ),
    f!(
        "exclude",
        "Filter Series",
        "Drops series whose name matches a regular expression.",
        [SERIES, req("pattern", "string")]
    ),
    f!(
        "removeBelowValue",
        "Filter Data",
        "Sets points below a value to null.",
        [SERIES, req("n", "float")]
    ),
    f!(
        "keepLastValue",
        "Transform",
        "Repeats the last value over gaps of at most `limit` points.",
        [SERIES, opt("limit", "intOrInf", Some("Infinity"))]
    ),
    f!(
        "transformNull",
        "Transform",
        "Replaces nulls by a default (only where a reference series has a point, if given).",
        [
            SERIES,
            opt("default", "float", Some("0")),
            opt("referenceSeries", "seriesList", None)
        ]
    ),
    f!(
        "consolidateBy",
        "Special",
        "Sets how points are combined when a series is consolidated.",
        [
            SERIES,
            with_options(req("consolidationFunc", "string"), CONSOLIDATE)
        ]
    ),
    f!(
        "drawAsInfinite",
        "Graph",
        "Marks series so non-zero points draw as vertical lines.",
        [SERIES]
    ),
    f!(
        "nPercentile",
        "Calculate",
        "A line at the n-th percentile of each series.",
        [SERIES, req("n", "integer")]
    ),
    f!(
        "holtWintersForecast",
        "Calculate",
        "Holt-Winters forecast (alpha 0.1, beta 0.0035, gamma 0.1).",
        [
            SERIES,
            opt("bootstrapInterval", "interval", Some("\"7d\"")),
            opt("seasonality", "interval", Some("\"1d\""))
        ]
    ),
    f!(
        "holtWintersConfidenceBands",
        "Calculate",
        "Holt-Winters lower and upper bands at delta deviations.",
        [
            SERIES,
            opt("delta", "integer", Some("3")),
            opt("bootstrapInterval", "interval", Some("\"7d\"")),
            opt("seasonality", "interval", Some("\"1d\""))
        ]
    ),
    f!(
        "seriesByTag",
        "Special",
        "Series whose tags match all expressions (tag=value, tag!=value, tag=~re, tag!=~re).",
        [many("tagExpressions", "string", true)]
    ),
    f!(
        "events",
        "Special",
        "One point per event carrying all the tags ('*' for any), at step 1.",
        [many("tags", "string", true)]
    ),
];

/// The definition of `name`, if implemented.
pub fn lookup(name: &str) -> Option<&'static FunctionDef> {
    FUNCTIONS.iter().find(|f| f.name == name)
}

impl FunctionDef {
    /// graphite-web's signature string, e.g. `movingAverage(seriesList, windowSize, xFilesFactor=None)`.
    pub fn signature(&self) -> String {
        let params: Vec<String> = self
            .params
            .iter()
            .map(|p| {
                if p.multiple {
                    format!("*{}", p.name)
                } else if p.required {
                    p.name.to_string()
                } else {
                    format!("{}={}", p.name, python_default(p.default))
                }
            })
            .collect();
        format!("{}({})", self.name, params.join(", "))
    }

    /// This function in the `/functions` shape.
    pub fn to_json(&self) -> Value {
        let params: Vec<Value> = self
            .params
            .iter()
            .map(|p| {
                let mut o = Map::new();
                o.insert("name".into(), json!(p.name));
                o.insert("type".into(), json!(p.kind));
                o.insert("required".into(), json!(p.required));
                if let Some(d) = p.default {
                    let v = serde_json::from_str(d).unwrap_or_else(|_| json!(d));
                    o.insert("default".into(), v);
                }
                if !p.options.is_empty() {
                    o.insert("options".into(), json!(p.options));
                }
                if p.multiple {
                    o.insert("multiple".into(), json!(true));
                }
                Value::Object(o)
            })
            .collect();
        json!({
            "name": self.name,
            "function": self.signature(),
            "description": self.description,
            "module": "graphite.render.functions",
            "group": self.group,
            "params": params,
        })
    }
}

fn python_default(d: Option<&str>) -> String {
    match d {
        None => "None".into(),
        Some("true") => "True".into(),
        Some("false") => "False".into(),
        Some("Infinity") => "inf".into(),
        Some(s) => s.replace('"', "'"),
    }
}

/// All implemented functions as graphite-web's `/functions` answer.
pub fn functions_json() -> Value {
    let mut o = Map::new();
    for f in FUNCTIONS {
        o.insert(f.name.to_string(), f.to_json());
    }
    Value::Object(o)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registry_shape() {
        let all = functions_json();
        let ma = &all["movingAverage"];
        assert_eq!(
            ma["function"],
            "movingAverage(seriesList, windowSize, xFilesFactor=None)"
        );
        assert_eq!(ma["params"][1]["name"], "windowSize");
        assert_eq!(ma["params"][1]["required"], true);
        assert_eq!(all["summarize"]["params"][2]["default"], "sum");
        assert_eq!(all["sumSeries"]["params"][0]["multiple"], true);
        let names: std::collections::BTreeSet<_> = FUNCTIONS.iter().map(|f| f.name).collect();
        assert_eq!(names.len(), FUNCTIONS.len(), "a function is listed twice");
    }
}
