//! A regular expression from a file, compiled once under a size limit and compared by its
//! source text (so a parsed file can be compared with another and printed back).

use std::fmt;

use regex::{Regex, RegexBuilder};

/// A compiled regular expression that remembers its source.
#[derive(Clone)]
pub struct Pattern {
    source: String,
    regex: Regex,
}

/// Why a pattern was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PatternError {
    /// The source text is longer than the limit (characters).
    TooLong { len: usize, limit: usize },
    /// The compiled program would be over the size limit (bytes).
    TooLarge { limit: usize },
    /// Not a regular expression; the compiler's explanation.
    Invalid(String),
}

impl fmt::Display for PatternError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PatternError::TooLong { len, limit } => write!(
                f,
                "is {len} characters long; the limit is {limit}: match a shorter, distinctive part"
            ),
            PatternError::TooLarge { limit } => write!(
                f,
                "compiles to more than {limit} bytes (large counted repetitions such as {{1000}} \
                 multiply its size): simplify it"
            ),
            PatternError::Invalid(why) => write!(f, "is not a valid regular expression: {why}"),
        }
    }
}

impl Pattern {
    /// Compiles `source`, refusing one longer than `max_len` characters or whose compiled
    /// form would exceed `size_limit` bytes. The syntax is the `regex` crate's (RE2's):
    /// no backreferences or lookaround, and matching time linear in the input.
    pub fn new(source: &str, max_len: usize, size_limit: usize) -> Result<Pattern, PatternError> {
        let len = source.chars().count();
        if len > max_len {
            return Err(PatternError::TooLong {
                len,
                limit: max_len,
            });
        }
        let regex = RegexBuilder::new(source)
            .size_limit(size_limit)
            .dfa_size_limit(size_limit)
            .build()
            .map_err(|e| match e {
                regex::Error::CompiledTooBig(_) => PatternError::TooLarge { limit: size_limit },
                other => PatternError::Invalid(one_line(&other.to_string())),
            })?;
        Ok(Pattern {
            source: source.to_string(),
            regex,
        })
    }

    pub fn as_str(&self) -> &str {
        &self.source
    }

    /// Whether the pattern matches anywhere in `text`.
    pub fn is_match(&self, text: &str) -> bool {
        self.regex.is_match(text)
    }
}

/// The regex crate's explanation spans several lines (the pattern, a caret under the
/// fault, `error: reason`); a file error is one line, so keep the reason.
fn one_line(why: &str) -> String {
    if let Some(reason) = why.lines().find_map(|l| l.trim().strip_prefix("error: ")) {
        return reason.to_string();
    }
    let parts: Vec<&str> = why
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    parts.join(" ")
}

impl PartialEq for Pattern {
    fn eq(&self, other: &Self) -> bool {
        self.source == other.source
    }
}

impl fmt::Debug for Pattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Pattern({:?})", self.source)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compiles_and_matches() {
        let pattern = Pattern::new("ERROR|FATAL", 100, 1 << 20);
        assert!(pattern.as_ref().is_ok_and(|p| p.is_match("x FATAL y")));
        assert!(pattern.is_ok_and(|p| !p.is_match("fine")));
    }

    #[test]
    fn refusals() {
        let cases: [(&str, usize, &str); 3] = [
            ("a(b", 100, "not a valid regular expression"),
            ("abcdef", 5, "6 characters long; the limit is 5"),
            (r"\w{500}\w{500}", 100, "compiles to more than"),
        ];
        for (source, max_len, expected) in cases {
            match Pattern::new(source, max_len, 64 * 1024) {
                Ok(_) => panic!("{source}: accepted"),
                Err(e) => assert!(e.to_string().contains(expected), "{source}: {e}"),
            }
        }
    }
}
