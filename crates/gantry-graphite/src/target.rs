//! graphite-web's render target grammar: a target is an expression, optionally piped
//! through calls (`a.b | sumSeries() | alias("x")` is `alias(sumSeries(a.b), "x")`).
//!
//! An expression is a call `name(arg, …, key=value, …)`, a quoted string, a number, a
//! boolean (`true`/`false`, any case), `None`, or a path with globs (`web*.cpu.{user,sys}`,
//! `host[0-9].load`, escaped characters such as `\(`). Every node keeps its position (a
//! character offset) so errors, here and in evaluation, can point at it.

use std::fmt;

/// A parsed target.
#[derive(Debug, Clone, PartialEq)]
pub enum Expr {
    Path { path: String, pos: usize },
    Call(Call),
    String { value: String, pos: usize },
    Number { value: f64, pos: usize },
    Bool { value: bool, pos: usize },
    None { pos: usize },
}

/// A function call.
#[derive(Debug, Clone, PartialEq)]
pub struct Call {
    pub name: String,
    pub args: Vec<Expr>,
    pub kwargs: Vec<(String, Expr)>,
    /// Where the function's name starts.
    pub pos: usize,
}

impl Expr {
    pub fn pos(&self) -> usize {
        match self {
            Expr::Call(c) => c.pos,
            Expr::Path { pos, .. }
            | Expr::String { pos, .. }
            | Expr::Number { pos, .. }
            | Expr::Bool { pos, .. }
            | Expr::None { pos } => *pos,
        }
    }
}

/// Prints a target so that [`parse`] reads it back as the same tree (positions aside):
/// calls as `name(arg, key=value)` (a pipe as the call it stands for), strings in single
/// quotes with `\` and `'` escaped, numbers in their shortest exact form, and paths with a
/// `\` before every character that would end a path or open a `{…}` group.
impl fmt::Display for Expr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use fmt::Write;
        match self {
            Expr::Path { path, .. } => {
                for c in path.chars() {
                    if ends_path(c) || matches!(c, '\\' | '{' | '}') {
                        f.write_char('\\')?;
                    }
                    f.write_char(c)?;
                }
                Ok(())
            }
            Expr::String { value, .. } => {
                f.write_char('\'')?;
                for c in value.chars() {
                    if matches!(c, '\'' | '\\') {
                        f.write_char('\\')?;
                    }
                    f.write_char(c)?;
                }
                f.write_char('\'')
            }
            Expr::Number { value, .. } => write!(f, "{value:?}"),
            Expr::Bool { value, .. } => write!(f, "{value}"),
            Expr::None { .. } => f.write_str("None"),
            Expr::Call(call) => {
                write!(f, "{}(", call.name)?;
                let mut first = true;
                let mut separate = |f: &mut fmt::Formatter<'_>| {
                    if !std::mem::take(&mut first) {
                        f.write_str(", ")?;
                    }
                    Ok(())
                };
                for arg in &call.args {
                    separate(f)?;
                    write!(f, "{arg}")?;
                }
                for (key, value) in &call.kwargs {
                    separate(f)?;
                    write!(f, "{key}={value}")?;
                }
                f.write_char(')')
            }
        }
    }
}

/// A target that is not valid, and where (0-based character offset).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError {
    pub message: String,
    pub position: usize,
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} (at position {})", self.message, self.position)
    }
}

impl std::error::Error for ParseError {}

/// How deeply calls may nest in a target, pipes included (`a | f() | g()` is two deep):
/// the parser, the evaluator and the printer all recurse once per level, so a deeper target
/// is refused rather than allowed to exhaust a thread's stack.
pub const MAX_DEPTH: usize = 50;

/// Parses one target.
pub fn parse(target: &str) -> Result<Expr, ParseError> {
    let mut p = Parser {
        chars: target.chars().collect(),
        at: 0,
        open_calls: 0,
    };
    p.skip_space();
    if p.at == p.chars.len() {
        return Err(p.error("the target is empty", 0));
    }
    let (expr, _) = p.piped()?;
    p.skip_space();
    match p.peek() {
        None => Ok(expr),
        Some(')') => Err(p.error("unexpected ')': no '(' is open here", p.at)),
        Some(c) => Err(p.error(
            &format!("unexpected '{c}' after a complete expression"),
            p.at,
        )),
    }
}

struct Parser {
    chars: Vec<char>,
    at: usize,
    /// Calls whose arguments are being read (the parser's own recursion).
    open_calls: usize,
}

/// The error for a target nested deeper than [`MAX_DEPTH`], at the call that goes too deep.
fn too_deep(position: usize) -> ParseError {
    ParseError {
        message: format!("the target nests calls more than {MAX_DEPTH} deep"),
        position,
    }
}

/// Characters that end a path (besides whitespace).
fn ends_path(c: char) -> bool {
    matches!(c, '(' | ')' | ',' | '|' | '=' | '\'' | '"') || c.is_whitespace()
}

impl Parser {
    fn peek(&self) -> Option<char> {
        self.chars.get(self.at).copied()
    }

    fn skip_space(&mut self) {
        while self.peek().is_some_and(char::is_whitespace) {
            self.at += 1;
        }
    }

    fn error(&self, message: &str, position: usize) -> ParseError {
        ParseError {
            message: message.to_string(),
            position,
        }
    }

    /// `expr ('|' call)*`, and how deeply calls nest in it (0 for a literal or a path).
    fn piped(&mut self) -> Result<(Expr, usize), ParseError> {
        let (mut expr, mut depth) = self.expr()?;
        loop {
            self.skip_space();
            if self.peek() != Some('|') {
                return Ok((expr, depth));
            }
            let bar = self.at;
            self.at += 1;
            self.skip_space();
            let start = self.at;
            match self.expr()? {
                (Expr::Call(mut call), call_depth) => {
                    depth = call_depth.max(depth + 1);
                    if depth > MAX_DEPTH {
                        return Err(too_deep(call.pos));
                    }
                    call.args.insert(0, expr);
                    expr = Expr::Call(call);
                }
                _ => {
                    return Err(self.error(
                        &format!(
                            "after '|' at position {bar} comes a function call, e.g. alias(\"x\")"
                        ),
                        start,
                    ))
                }
            }
        }
    }

    fn expr(&mut self) -> Result<(Expr, usize), ParseError> {
        self.skip_space();
        let start = self.at;
        match self.peek() {
            None => Err(self.error("expected an expression, found the end of the target", start)),
            Some(q @ ('\'' | '"')) => Ok((self.string(q)?, 0)),
            Some(c) if ends_path(c) => {
                Err(self.error(&format!("expected an expression, found '{c}'"), start))
            }
            Some(_) => {
                let token = self.path_token()?;
                self.skip_space();
                if self.peek() == Some('(') {
                    if !is_identifier(&token) {
                        return Err(self.error(&format!("'{token}' is not a function name"), start));
                    }
                    return self.call(token, start);
                }
                Ok((literal(token, start), 0))
            }
        }
    }

    fn string(&mut self, quote: char) -> Result<Expr, ParseError> {
        let start = self.at;
        self.at += 1;
        let mut value = String::new();
        loop {
            match self.peek() {
                None => return Err(self.error("this string is never closed", start)),
                Some(c) if c == quote => {
                    self.at += 1;
                    return Ok(Expr::String { value, pos: start });
                }
                Some('\\')
                    if self
                        .chars
                        .get(self.at + 1)
                        .is_some_and(|&n| n == quote || n == '\\') =>
                {
                    value.push(self.chars[self.at + 1]);
                    self.at += 2;
                }
                Some(c) => {
                    value.push(c);
                    self.at += 1;
                }
            }
        }
    }

    /// A run of path characters; `{…}` groups may hold commas; `\x` escapes one character.
    fn path_token(&mut self) -> Result<String, ParseError> {
        let mut token = String::new();
        let mut brace: Option<usize> = None;
        while let Some(c) = self.peek() {
            match c {
                '\\' => {
                    let escaped = self.chars.get(self.at + 1).copied().ok_or_else(|| {
                        self.error("'\\' at the end of the target escapes nothing", self.at)
                    })?;
                    token.push(escaped);
                    self.at += 2;
                    continue;
                }
                '{' if brace.is_none() => brace = Some(self.at),
                '{' => return Err(self.error("'{' inside a '{…}' group", self.at)),
                '}' if brace.is_some() => brace = None,
                '}' => return Err(self.error("'}' without a matching '{'", self.at)),
                ',' if brace.is_some() => {}
                c if ends_path(c) => break,
                _ => {}
            }
            token.push(c);
            self.at += 1;
        }
        if let Some(open) = brace {
            return Err(self.error("this '{' is never closed", open));
        }
        Ok(token)
    }

    /// `name(args)`, with the name already read; `self.at` is at `(`.
    fn call(&mut self, name: String, pos: usize) -> Result<(Expr, usize), ParseError> {
        if self.open_calls >= MAX_DEPTH {
            return Err(too_deep(pos));
        }
        self.open_calls += 1;
        let call = self.call_arguments(name, pos);
        self.open_calls -= 1;
        let (call, depth) = call?;
        if depth > MAX_DEPTH {
            return Err(too_deep(pos));
        }
        Ok((Expr::Call(call), depth))
    }

    /// The arguments of a call, and how deeply calls nest in it (itself included).
    fn call_arguments(&mut self, name: String, pos: usize) -> Result<(Call, usize), ParseError> {
        let open = self.at;
        self.at += 1;
        let mut depth = 1;
        let mut call = Call {
            name,
            args: Vec::new(),
            kwargs: Vec::new(),
            pos,
        };
        self.skip_space();
        if self.peek() == Some(')') {
            self.at += 1;
            return Ok((call, depth));
        }
        loop {
            self.skip_space();
            let arg_start = self.at;
            if self.peek().is_none() {
                return Err(self.error(&format!("the '(' of {}( is never closed", call.name), open));
            }
            if let Some(key) = self.keyword() {
                let (value, value_depth) = self.piped()?;
                depth = depth.max(value_depth + 1);
                call.kwargs.push((key, value));
            } else {
                if !call.kwargs.is_empty() {
                    return Err(
                        self.error("a positional argument after a keyword argument", arg_start)
                    );
                }
                let (value, value_depth) = self.piped()?;
                depth = depth.max(value_depth + 1);
                call.args.push(value);
            }
            self.skip_space();
            match self.peek() {
                Some(',') => self.at += 1,
                Some(')') => {
                    self.at += 1;
                    return Ok((call, depth));
                }
                None => {
                    return Err(
                        self.error(&format!("the '(' of {}( is never closed", call.name), open)
                    )
                }
                Some(c) => {
                    return Err(self.error(
                        &format!(
                            "expected ',' or ')' in the arguments of {}, found '{c}'",
                            call.name
                        ),
                        self.at,
                    ))
                }
            }
        }
    }

    /// `identifier =` (not `==`): consumes it and returns the identifier.
    fn keyword(&mut self) -> Option<String> {
        let start = self.at;
        let mut end = start;
        while self
            .chars
            .get(end)
            .is_some_and(|c| c.is_ascii_alphanumeric() || *c == '_')
        {
            end += 1;
        }
        let mut eq = end;
        while self.chars.get(eq).is_some_and(|c| c.is_whitespace()) {
            eq += 1;
        }
        let name: String = self.chars[start..end].iter().collect();
        if end > start && self.chars.get(eq) == Some(&'=') && is_identifier(&name) {
            self.at = eq + 1;
            Some(name)
        } else {
            None
        }
    }
}

fn is_identifier(s: &str) -> bool {
    let mut chars = s.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// A bare token: a number, a boolean, `None`, or a path.
fn literal(token: String, pos: usize) -> Expr {
    match token.as_str() {
        "true" | "True" | "TRUE" => return Expr::Bool { value: true, pos },
        "false" | "False" | "FALSE" => return Expr::Bool { value: false, pos },
        "None" | "none" => return Expr::None { pos },
        _ => {}
    }
    let numeric = token.starts_with(|c: char| c.is_ascii_digit() || matches!(c, '-' | '+' | '.'))
        && !token.contains(|c: char| c.is_ascii_alphabetic() && c != 'e' && c != 'E');
    if numeric {
        if let Ok(value) = token.parse::<f64>() {
            if value.is_finite() {
                return Expr::Number { value, pos };
            }
        }
    }
    Expr::Path { path: token, pos }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Renders an expression compactly, to compare parses as text.
    fn show(e: &Expr) -> String {
        match e {
            Expr::Path { path, .. } => path.clone(),
            Expr::String { value, .. } => format!("{value:?}"),
            Expr::Number { value, .. } => format!("{value}"),
            Expr::Bool { value, .. } => format!("{value}"),
            Expr::None { .. } => "None".into(),
            Expr::Call(c) => {
                let mut parts: Vec<String> = c.args.iter().map(show).collect();
                parts.extend(c.kwargs.iter().map(|(k, v)| format!("{k}={}", show(v))));
                format!("{}({})", c.name, parts.join(", "))
            }
        }
    }

    fn check(target: &str, expected: &str) {
        let parsed = parse(target).unwrap_or_else(|e| panic!("{target}: {e}"));
        assert_eq!(show(&parsed), expected, "{target}");
    }

    fn check_error(target: &str, message: &str, position: usize) {
        let err = parse(target).expect_err(target);
        assert!(err.message.contains(message), "{target}: {err}");
        assert_eq!(err.position, position, "{target}: {err}");
    }

    #[test]
    fn targets() {
        check("a.b.c", "a.b.c");
        check("web*.cpu.{user,sys}", "web*.cpu.{user,sys}");
        check("host[0-9].load?", "host[0-9].load?");
        check("sumSeries(a.*.b)", "sumSeries(a.*.b)");
        check(
            "alias(sumSeries(a.b, c.d), 'total')",
            "alias(sumSeries(a.b, c.d), \"total\")",
        );
        // Grafana's own wrapper: backslashes reach the regex as they were typed.
        let Expr::Call(alias) =
            parse(r"aliasSub(stats.timers.*.mean, '^stats\.timers\.(.*)\.mean$', '\1')").unwrap()
        else {
            panic!("a call")
        };
        assert_eq!(
            alias.args[1],
            Expr::String {
                value: r"^stats\.timers\.(.*)\.mean$".into(),
                pos: 30
            }
        );
        assert_eq!(
            alias.args[2],
            Expr::String {
                value: r"\1".into(),
                pos: 61
            }
        );
        check(r"alias(a, 'it\'s')", "alias(a, \"it's\")");
        check("constantLine(100)", "constantLine(100)");
        check("scale(a.b, -0.5)", "scale(a.b, -0.5)");
        check("scale(a.b, 1e3)", "scale(a.b, 1000)");
        check(
            "summarize(a.b, \"1h\", \"sum\", true)",
            "summarize(a.b, \"1h\", \"sum\", true)",
        );
        check("removeBelowValue(a, None)", "removeBelowValue(a, None)");
        check("highestCurrent(a.*, n=3)", "highestCurrent(a.*, n=3)");
        check(
            "movingAverage(a.b, windowSize = '5min', xFilesFactor=0.5)",
            "movingAverage(a.b, windowSize=\"5min\", xFilesFactor=0.5)",
        );
        check(
            "a.b | sumSeries() | alias(\"x\")",
            "alias(sumSeries(a.b), \"x\")",
        );
        check("sumSeries(a.* | scale(2))", "sumSeries(scale(a.*, 2))");
        check(
            "seriesByTag('name=cpu', 'host=~web.*', 'dc!=eu')",
            "seriesByTag(\"name=cpu\", \"host=~web.*\", \"dc!=eu\")",
        );
        check(
            "groupByTags(seriesByTag('name=cpu'), 'sum', 'host')",
            "groupByTags(seriesByTag(\"name=cpu\"), \"sum\", \"host\")",
        );
        check("  a.b  ", "a.b");
        check("1min.load", "1min.load");
        check("a.b\\(x\\)", "a.b(x)");
        check("timeShift(a, '-1d')", "timeShift(a, \"-1d\")");
        check("f()", "f()");
        check("events('deploy', \"prod\")", "events(\"deploy\", \"prod\")");
    }

    #[test]
    fn errors_name_the_position() {
        check_error("sumSeries(a.b", "the '(' of sumSeries( is never closed", 9);
        check_error("sumSeries(a.b))", "unexpected ')'", 14);
        check_error("alias(a, 'x)", "this string is never closed", 9);
        check_error("a.{b,c", "this '{' is never closed", 2);
        check_error("", "the target is empty", 0);
        check_error("sumSeries(,a)", "expected an expression, found ','", 10);
        check_error("sumSeries(a b)", "expected ',' or ')'", 12);
        check_error(
            "a.b | c.d",
            "after '|' at position 4 comes a function call",
            6,
        );
        check_error(
            "f(n=1, a)",
            "a positional argument after a keyword argument",
            7,
        );
        check_error("a.b.(x)", "'a.b.' is not a function name", 0);
        check_error("alias(a,", "never closed", 5);
    }

    /// The printed form parses to the same tree, and prints the same again.
    #[test]
    fn printed_targets_parse_back() {
        for target in [
            "a.b.c",
            "web*.cpu.{user,sys}",
            r"a.b\(x\)\ y\,z\{w\}",
            r"aliasSub(stats.timers.*.mean, '^stats\.timers\.(.*)\.mean$', '\1')",
            r"alias(a, 'it\'s \\ \\')",
            "alias(a, 'ends with \\\\')",
            "movingAverage(a.b, windowSize = '5min', xFilesFactor=0.5)",
            "a.b | sumSeries() | alias(\"x\")",
            "scale(a, -0.5) | scale(1e300) | scale(-0) | scale(5e-324)",
            "f(true, False, None, none, 1min.load, -x, 1_000)",
            "f()",
        ] {
            let parsed = parse(target).unwrap_or_else(|e| panic!("{target}: {e}"));
            let printed = parsed.to_string();
            let again = parse(&printed).unwrap_or_else(|e| panic!("{printed}: {e}"));
            assert_eq!(show(&again), show(&parsed), "{target} printed as {printed}");
            assert_eq!(again.to_string(), printed, "{target}");
        }
    }

    #[test]
    fn nesting_is_bounded() {
        let nested = |depth: usize| "f(".repeat(depth) + "a" + &")".repeat(depth);
        assert!(parse(&nested(MAX_DEPTH)).is_ok());
        check_error(
            &nested(MAX_DEPTH + 1),
            "nests calls more than",
            2 * MAX_DEPTH,
        );
        // Far deeper than a thread's stack would allow if it were followed.
        assert!(parse(&nested(1_000_000)).is_err());
        let piped = |depth: usize| "a".to_string() + &" | f()".repeat(depth);
        assert!(parse(&piped(MAX_DEPTH)).is_ok());
        assert!(parse(&piped(MAX_DEPTH + 1)).is_err());
        assert!(parse(&format!("g(x, k={})", piped(MAX_DEPTH))).is_err());
    }

    #[test]
    fn positions_point_at_nodes() {
        let Expr::Call(call) = parse("alias(sumSeries(x.y), 'n')").unwrap() else {
            panic!()
        };
        assert_eq!(call.pos, 0);
        assert_eq!(call.args[0].pos(), 6);
        let Expr::Call(inner) = &call.args[0] else {
            panic!()
        };
        assert_eq!(inner.args[0].pos(), 16);
        assert_eq!(call.args[1].pos(), 22);
    }
}
