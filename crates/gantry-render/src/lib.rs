//! graphite-web's render functions (1.1.x semantics and output names) as a pure evaluation
//! engine: a parsed render target ([`gantry_graphite::target`]) is evaluated against a
//! [`SeriesSource`] into [`Series`], which [`output`] shapes for the render API
//! (`maxDataPoints` consolidation, JSON datapoints, CSV).
//!
//! - [`series`]: the series model, consolidation and normalisation;
//! - [`glob`]: graphite's path globs, for sources to reuse;
//! - [`time`]: time offsets such as `5min`;
//! - [`registry`]: the implemented functions in graphite-web's `/functions` shape.
//!
//! Invariant: no I/O. The engine knows nothing of storage, HTTP or tokio; it only calls
//! the [`SeriesSource`] it is given, and every error names what was wrong and where.
//!
//! One evaluation is held to [`Limits`] (points, series, function calls, name lengths): a
//! target that would go beyond them fails with [`RenderError::OverLimit`] instead of
//! holding a thread and its memory.

mod eval;
mod functions;
pub mod glob;
pub mod output;
pub mod registry;
pub mod series;
pub mod time;

pub use eval::{evaluate, evaluate_expr, evaluate_expr_with_limits, evaluate_with_limits};
pub use functions::holt_winters_analysis;
pub use glob::{glob_match, Glob, GlobError};
pub use output::{consolidate, to_csv, to_json, to_json_datapoints, JsonSeries, RenderOptions};
pub use series::{Consolidation, Series};

/// Where series come from. Implementations window their data to `[from, until)` and
/// return series sorted by name (graphite-web sorts what its finders return).
pub trait SeriesSource {
    /// Series whose paths match the graphite glob `pattern` (see [`glob_match`]).
    fn find(&self, pattern: &str, from: i64, until: i64) -> Result<Vec<Series>, RenderError>;
    /// Series matching every tag expression (`tag=value`, `tag!=value`, `tag=~regex`,
    /// `tag!=~regex`), as `seriesByTag` passes them.
    fn find_by_tags(
        &self,
        exprs: &[String],
        from: i64,
        until: i64,
    ) -> Result<Vec<Series>, RenderError>;
    /// Timestamps (epoch seconds) of events carrying all of `tags` (all events when `tags`
    /// is empty) in `[from, until]`.
    fn events(&self, tags: &[String], from: i64, until: i64) -> Result<Vec<i64>, RenderError>;
}

/// What a target is evaluated for: the time range (epoch seconds, `until` exclusive as in
/// graphite-web), the present, and the source of series.
pub struct Context<'a> {
    pub from: i64,
    pub until: i64,
    pub now: i64,
    pub source: &'a dyn SeriesSource,
}

/// What one evaluation of a target may use. The counts are cumulative over the whole
/// evaluation, so they bound its work as well as its memory: a series a function returns
/// counts again though it was fetched before, and a target that time-moving functions
/// (`timeStack`, `timeShift`, `movingAverage`, …) evaluate again counts again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Points (null or not) of every series fetched or returned by a function, plus one
    /// for every 16 bytes of each such series' name; the values a windowed function reads
    /// (`movingAverage`) count as points too.
    pub max_points: u64,
    /// Series fetched or returned by a function.
    pub max_series: u64,
    /// Function calls evaluated.
    pub max_calls: u64,
}

impl Limits {
    /// The limits of [`evaluate`] and [`evaluate_expr`]: far above what a dashboard asks
    /// (a week of a thousand series at one minute is ten million points), low enough that
    /// one request cannot take a server's memory.
    pub const DEFAULT: Limits = Limits {
        max_points: 100_000_000,
        max_series: 1_000_000,
        max_calls: 10_000,
    };
}

impl Default for Limits {
    fn default() -> Limits {
        Limits::DEFAULT
    }
}

/// The longest series name a function may make from a pattern (`aliasSub`), in bytes: each
/// substitution can repeat the whole name, so nested ones would otherwise grow without
/// bound.
pub const MAX_NAME_BYTES: usize = 64 * 1024;

/// Why a target could not be evaluated.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum RenderError {
    #[error("{0}")]
    Parse(#[from] gantry_graphite::target::ParseError),
    #[error("unknown function '{name}' at position {position}")]
    UnknownFunction { name: String, position: usize },
    #[error("{function}: {message} (argument {argument} at position {position})")]
    WrongArgument {
        function: String,
        param: String,
        /// 1-based.
        argument: usize,
        position: usize,
        message: String,
    },
    #[error("{function}: {message} (at position {position})")]
    WrongArgumentCount {
        function: String,
        position: usize,
        message: String,
    },
    #[error("{0}")]
    Source(String),
    /// The evaluation would go beyond one of its [`Limits`] (or [`MAX_NAME_BYTES`]); the
    /// message names the limit.
    #[error("{0}")]
    OverLimit(String),
}
