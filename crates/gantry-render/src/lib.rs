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

mod eval;
mod functions;
pub mod glob;
pub mod output;
pub mod registry;
pub mod series;
pub mod time;

pub use eval::{evaluate, evaluate_expr};
pub use functions::holt_winters_analysis;
pub use glob::{glob_match, Glob};
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
}
