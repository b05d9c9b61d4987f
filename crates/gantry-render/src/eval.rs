//! The evaluator: walks a parsed target, fetches paths and `seriesByTag` from the source,
//! checks each call's arguments against its registry entry, and runs the function. Errors
//! carry the function, the parameter and the position in the target.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;

use gantry_graphite::target::{parse, Call, Expr};
use regex::Regex;

use crate::glob::Glob;
use crate::registry::{lookup, FunctionDef};
use crate::{functions, Context, Limits, RenderError, Series, SeriesSource};

/// Parses and evaluates one target, within [`Limits::DEFAULT`].
pub fn evaluate(target: &str, ctx: &Context<'_>) -> Result<Vec<Series>, RenderError> {
    evaluate_with_limits(target, ctx, Limits::DEFAULT)
}

/// [`evaluate`] within other limits.
pub fn evaluate_with_limits(
    target: &str,
    ctx: &Context<'_>,
    limits: Limits,
) -> Result<Vec<Series>, RenderError> {
    let expr = parse(target)?;
    let budget = Budget::new(limits);
    Evaluator::new(ctx, Some(target), &budget).series(&expr)
}

/// Evaluates an already parsed target (names of `seriesByTag` results are rebuilt from the
/// AST, since the original text is not at hand), within [`Limits::DEFAULT`].
pub fn evaluate_expr(expr: &Expr, ctx: &Context<'_>) -> Result<Vec<Series>, RenderError> {
    evaluate_expr_with_limits(expr, ctx, Limits::DEFAULT)
}

/// [`evaluate_expr`] within other limits.
pub fn evaluate_expr_with_limits(
    expr: &Expr,
    ctx: &Context<'_>,
    limits: Limits,
) -> Result<Vec<Series>, RenderError> {
    let budget = Budget::new(limits);
    Evaluator::new(ctx, None, &budget).series(expr)
}

/// What one evaluation has used of its limits, and the regular expressions it compiled
/// (a call that time-moving functions evaluate again compiles nothing again).
pub(crate) struct Budget {
    limits: Limits,
    points: Cell<u64>,
    series: Cell<u64>,
    calls: Cell<u64>,
    regexes: RefCell<HashMap<String, Regex>>,
}

impl Budget {
    fn new(limits: Limits) -> Budget {
        Budget {
            limits,
            points: Cell::new(0),
            series: Cell::new(0),
            calls: Cell::new(0),
            regexes: RefCell::new(HashMap::new()),
        }
    }
}

/// The largest compiled form a pattern of `aliasSub` or `exclude` may have (the regex
/// crate's own default is ten times this).
const REGEX_SIZE_LIMIT: usize = 1024 * 1024;

fn over_points(limit: u64) -> RenderError {
    RenderError::OverLimit(format!(
        "the target reads or makes more than {limit} points, the render limit: ask for a shorter time range or fewer series"
    ))
}

#[derive(Clone, Copy)]
pub(crate) struct Evaluator<'a> {
    pub from: i64,
    pub until: i64,
    #[allow(dead_code)]
    pub now: i64,
    pub source: &'a dyn SeriesSource,
    pub text: Option<&'a str>,
    budget: &'a Budget,
}

impl<'a> Evaluator<'a> {
    fn new(ctx: &Context<'a>, text: Option<&'a str>, budget: &'a Budget) -> Evaluator<'a> {
        Evaluator {
            from: ctx.from,
            until: ctx.until,
            now: ctx.now,
            source: ctx.source,
            text,
            budget,
        }
    }

    /// Counts series fetched or returned against the limits.
    pub fn charge(&self, list: &[Series]) -> Result<(), RenderError> {
        let limits = &self.budget.limits;
        let series = self.budget.series.get().saturating_add(list.len() as u64);
        self.budget.series.set(series);
        if series > limits.max_series {
            return Err(RenderError::OverLimit(format!(
                "the target reads or makes more than {} series, the render limit: ask for fewer series",
                limits.max_series
            )));
        }
        let points = list.iter().fold(0u64, |sum, s| {
            sum.saturating_add(s.values.len() as u64)
                .saturating_add(s.name.len() as u64 / 16)
        });
        self.charge_points(points)
    }

    /// Counts points read (by a windowed function) against the limits.
    pub fn charge_points(&self, points: u64) -> Result<(), RenderError> {
        self.reserve(points)?;
        let used = self.budget.points.get().saturating_add(points);
        self.budget.points.set(used);
        Ok(())
    }

    /// Checks that `points` more (about to be allocated, and charged with the function's
    /// result) are within the limits.
    pub fn reserve(&self, points: u64) -> Result<(), RenderError> {
        let limit = self.budget.limits.max_points;
        if self.budget.points.get().saturating_add(points) > limit {
            return Err(over_points(limit));
        }
        Ok(())
    }

    /// `pattern` compiled (once per evaluation), or why it is not a regular expression.
    pub fn regex(&self, pattern: &str) -> Result<Regex, regex::Error> {
        if let Some(re) = self.budget.regexes.borrow().get(pattern) {
            return Ok(re.clone());
        }
        let re = regex::RegexBuilder::new(pattern)
            .size_limit(REGEX_SIZE_LIMIT)
            .build()?;
        self.budget
            .regexes
            .borrow_mut()
            .insert(pattern.to_string(), re.clone());
        Ok(re)
    }

    /// The same evaluation over another time range (timeShift, movingAverage, …).
    pub fn with_range(&self, from: i64, until: i64) -> Evaluator<'a> {
        Evaluator {
            from,
            until,
            ..*self
        }
    }

    /// An expression that must give series; `None` when it is not a series expression.
    fn try_series(&self, expr: &Expr) -> Option<Result<Vec<Series>, RenderError>> {
        match expr {
            Expr::Path { path, .. } => Some(self.find(path)),
            Expr::Call(call) => Some(self.call(call)),
            _ => None,
        }
    }

    pub fn series(&self, expr: &Expr) -> Result<Vec<Series>, RenderError> {
        match self.try_series(expr) {
            Some(r) => r,
            None => Err(RenderError::WrongArgumentCount {
                function: "target".into(),
                position: expr.pos(),
                message: "a target must be a path or a function call, not a literal".into(),
            }),
        }
    }

    fn find(&self, pattern: &str) -> Result<Vec<Series>, RenderError> {
        // A pattern whose braces expand beyond what a glob compiles would match nothing.
        Glob::try_new(pattern)
            .map_err(|e| RenderError::OverLimit(format!("{e}, the limit of a glob")))?;
        let mut found = self.source.find(pattern, self.from, self.until)?;
        self.charge(&found)?;
        for s in &mut found {
            s.path_expression = pattern.to_string();
        }
        found.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(found)
    }

    fn call(&self, call: &Call) -> Result<Vec<Series>, RenderError> {
        let calls = self.budget.calls.get() + 1;
        self.budget.calls.set(calls);
        if calls > self.budget.limits.max_calls {
            return Err(RenderError::OverLimit(format!(
                "the target evaluates more than {} function calls, the render limit (time-moving functions such as timeStack evaluate their series again for each shift)",
                self.budget.limits.max_calls
            )));
        }
        let def = lookup(&call.name).ok_or_else(|| RenderError::UnknownFunction {
            name: call.name.clone(),
            position: call.pos,
        })?;
        let args = Args {
            ev: *self,
            call,
            def,
        };
        args.check()?;
        let list = functions::run(&args)?;
        self.charge(&list)?;
        Ok(list)
    }

    /// The text of a call as written in the target (graphite-web names `seriesByTag`
    /// results' path expression by it), or rebuilt when the text is not known.
    pub fn call_text(&self, call: &Call) -> String {
        if let Some(text) = self.text {
            if let Some(t) = call_span(text, call.pos) {
                return t;
            }
        }
        let args: Vec<String> = call
            .args
            .iter()
            .map(|a| match a {
                Expr::String { value, .. } => format!("'{value}'"),
                Expr::Number { value, .. } => value.to_string(),
                Expr::Path { path, .. } => path.clone(),
                _ => String::new(),
            })
            .collect();
        format!("{}({})", call.name, args.join(","))
    }
}

/// `name(…)` starting at character `pos`, up to its closing parenthesis.
fn call_span(text: &str, pos: usize) -> Option<String> {
    let chars: Vec<char> = text.chars().collect();
    let mut depth = 0i32;
    let mut quote: Option<char> = None;
    let mut i = pos;
    while i < chars.len() {
        let c = chars[i];
        match quote {
            Some(q) => {
                if c == '\\' {
                    i += 1;
                } else if c == q {
                    quote = None;
                }
            }
            None => match c {
                '\'' | '"' => quote = Some(c),
                '(' => depth += 1,
                ')' => {
                    depth -= 1;
                    if depth == 0 {
                        return Some(chars[pos..=i].iter().collect());
                    }
                }
                _ => {}
            },
        }
        i += 1;
    }
    None
}

/// A call's arguments, read by parameter (positional or by keyword).
pub(crate) struct Args<'e, 'c> {
    pub ev: Evaluator<'e>,
    pub call: &'c Call,
    pub def: &'static FunctionDef,
}

impl<'e, 'c> Args<'e, 'c> {
    pub fn name(&self) -> &str {
        &self.call.name
    }

    fn check(&self) -> Result<(), RenderError> {
        let params = self.def.params;
        let variadic = params.last().is_some_and(|p| p.multiple);
        if !variadic && self.call.args.len() > params.len() {
            return Err(self.count_error(format!(
                "takes at most {} argument{}, got {}",
                params.len(),
                if params.len() == 1 { "" } else { "s" },
                self.call.args.len()
            )));
        }
        for (key, value) in &self.call.kwargs {
            if !params.iter().any(|p| p.name == key && !p.multiple) {
                let known: Vec<&str> = params.iter().map(|p| p.name).collect();
                return Err(RenderError::WrongArgument {
                    function: self.call.name.clone(),
                    param: key.clone(),
                    argument: self.call.args.len() + 1,
                    position: value.pos(),
                    message: format!(
                        "there is no parameter '{key}' (parameters: {})",
                        known.join(", ")
                    ),
                });
            }
        }
        for (i, p) in params.iter().enumerate() {
            if p.required && self.expr(i).is_none() {
                return Err(self.count_error(format!("the argument '{}' is missing", p.name)));
            }
        }
        Ok(())
    }

    fn count_error(&self, message: String) -> RenderError {
        RenderError::WrongArgumentCount {
            function: self.call.name.clone(),
            position: self.call.pos,
            message,
        }
    }

    /// Parameter `i`'s expression and its 1-based argument number.
    pub fn expr(&self, i: usize) -> Option<(&'c Expr, usize)> {
        let p = self.def.params.get(i)?;
        if p.multiple {
            return self.call.args.get(i).map(|e| (e, i + 1));
        }
        if let Some(e) = self.call.args.get(i) {
            return Some((e, i + 1));
        }
        self.call
            .kwargs
            .iter()
            .position(|(k, _)| k == p.name)
            .map(|k| (&self.call.kwargs[k].1, self.call.args.len() + k + 1))
    }

    /// Positional arguments from parameter `i` on (a `multiple` parameter).
    pub fn rest(&self, i: usize) -> &'c [Expr] {
        self.call.args.get(i..).unwrap_or(&[])
    }

    pub fn error_at(&self, i: usize, expr: &Expr, argument: usize, message: String) -> RenderError {
        let param = self
            .def
            .params
            .get(i)
            .or(self.def.params.last())
            .map_or("", |p| p.name);
        RenderError::WrongArgument {
            function: self.call.name.clone(),
            param: param.to_string(),
            argument,
            position: expr.pos(),
            message,
        }
    }

    /// An error about parameter `i` (message without the function name).
    pub fn error(&self, i: usize, message: String) -> RenderError {
        match self.expr(i) {
            Some((e, n)) => self.error_at(i, e, n, message),
            None => self.count_error(message),
        }
    }

    fn param_name(&self, i: usize) -> &'static str {
        self.def.params.get(i).map_or("", |p| p.name)
    }

    /// A series-valued argument (nested call or path) at a given expression.
    pub fn series_expr(&self, i: usize, e: &Expr, n: usize) -> Result<Vec<Series>, RenderError> {
        match self.ev.try_series(e) {
            Some(r) => r,
            None => Err(self.error_at(
                i,
                e,
                n,
                format!(
                    "{} must be a series list (a path or a function call)",
                    self.param_name(i)
                ),
            )),
        }
    }

    pub fn series(&self, i: usize) -> Result<Vec<Series>, RenderError> {
        match self.expr(i) {
            Some((e, n)) => self.series_expr(i, e, n),
            None => {
                Err(self.count_error(format!("the argument '{}' is missing", self.param_name(i))))
            }
        }
    }

    pub fn opt_series(&self, i: usize) -> Result<Option<Vec<Series>>, RenderError> {
        match self.expr(i) {
            None | Some((Expr::None { .. }, _)) => Ok(None),
            Some((e, n)) => self.series_expr(i, e, n).map(Some),
        }
    }

    /// The raw first argument, re-evaluated over another range by time-moving functions.
    pub fn series_over(&self, i: usize, from: i64, until: i64) -> Result<Vec<Series>, RenderError> {
        match self.expr(i) {
            Some((e, n)) => Args {
                ev: self.ev.with_range(from, until),
                call: self.call,
                def: self.def,
            }
            .series_expr(i, e, n),
            None => Ok(Vec::new()),
        }
    }

    pub fn opt_number(&self, i: usize) -> Result<Option<f64>, RenderError> {
        match self.expr(i) {
            None | Some((Expr::None { .. }, _)) => Ok(None),
            Some((Expr::Number { value, .. }, _)) => Ok(Some(*value)),
            Some((e, n)) => {
                Err(self.error_at(i, e, n, format!("{} must be a number", self.param_name(i))))
            }
        }
    }

    pub fn number(&self, i: usize) -> Result<f64, RenderError> {
        self.opt_number(i)?
            .ok_or_else(|| self.error(i, format!("{} must be a number", self.param_name(i))))
    }

    pub fn opt_string(&self, i: usize) -> Result<Option<String>, RenderError> {
        match self.expr(i) {
            None | Some((Expr::None { .. }, _)) => Ok(None),
            Some((Expr::String { value, .. }, _)) => Ok(Some(value.clone())),
            Some((e, n)) => Err(self.error_at(
                i,
                e,
                n,
                format!("{} must be a quoted string", self.param_name(i)),
            )),
        }
    }

    pub fn string(&self, i: usize) -> Result<String, RenderError> {
        self.opt_string(i)?
            .ok_or_else(|| self.error(i, format!("{} must be a quoted string", self.param_name(i))))
    }

    pub fn boolean(&self, i: usize, default: bool) -> Result<bool, RenderError> {
        match self.expr(i) {
            None | Some((Expr::None { .. }, _)) => Ok(default),
            Some((Expr::Bool { value, .. }, _)) => Ok(*value),
            Some((Expr::Number { value, .. }, _)) => Ok(*value != 0.0),
            Some((e, n)) => Err(self.error_at(
                i,
                e,
                n,
                format!("{} must be true or false", self.param_name(i)),
            )),
        }
    }
}
