//! The error a monitor file, or a service file's `[[logs]]`, gets when it breaks a rule:
//! where (file, line, section, monitor, key) and what was wrong, in words meant for the
//! person who wrote the file.

use std::fmt;
use std::ops::Range;

/// What kind of rule a file broke, for callers that react to some kinds (an API answering
/// 400 with a field name, a test). The message is what people read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    /// Not TOML at all.
    Syntax,
    /// A key or section Gantry does not know (usually a typo).
    UnknownKey,
    /// A required key is missing.
    MissingKey,
    /// A value of the wrong type, or not one of the allowed words.
    WrongType,
    /// The file, or a part of it, is over a limit.
    TooLarge,
    /// A monitor, service, environment or label name that is not a valid name.
    InvalidName,
    /// Two monitors (or two log watches) with one name.
    DuplicateName,
    /// A Graphite render target that does not parse.
    InvalidTarget,
    /// A threshold that is not a finite number.
    NotANumber,
    /// Warning and critical on the wrong sides of each other for the direction.
    ThresholdOrder,
    /// A threshold monitor with neither warning nor critical.
    NoThreshold,
    /// `for = 0` (or less).
    ZeroFor,
    /// A duration that does not parse, or one that is zero where that makes no sense.
    InvalidDuration,
    /// An interval or window shorter than the metrics flush interval.
    IntervalTooShort,
    /// An HTTP timeout longer than the check's interval.
    TimeoutTooLong,
    /// A URL that does not parse, is not http(s), or carries credentials.
    InvalidUrl,
    /// A regular expression that does not compile.
    InvalidRegex,
    /// A regular expression over the size limit.
    RegexTooLarge,
    /// A log glob that is absolute, climbs out of the service's directory, or is malformed.
    InvalidGlob,
    /// Any other value out of its range (an HTTP status of 700, an empty string).
    InvalidValue,
}

/// A rule the file broke. `Display` reads `FILE:LINE: SECTION "NAME": MESSAGE`, the
/// compiler's convention, so editors and terminals link to the line. The details are
/// boxed (an error is rare, a `Result` is everywhere) and reached through `Deref`:
/// `error.line`, `error.kind`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct FileError(pub(crate) Box<FileErrorDetails>);

/// Where a rule was broken and what it was.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileErrorDetails {
    /// The file's name as the caller gave it.
    pub file: String,
    /// 1-based line of the offending value, key or section, when known.
    pub line: Option<usize>,
    /// The section (`threshold`, `heartbeat`, `http`, `logs`), when the error is inside one.
    pub section: Option<String>,
    /// The name of the monitor (or log watch) concerned, when known.
    pub monitor: Option<String>,
    /// The offending key (`critical`, `window`), when one key is to blame.
    pub key: Option<String>,
    pub kind: ErrorKind,
    /// What was wrong and what to do instead. It names the key when there is one.
    pub message: String,
}

impl FileError {
    pub fn new(details: FileErrorDetails) -> Self {
        FileError(Box::new(details))
    }
}

impl std::ops::Deref for FileError {
    type Target = FileErrorDetails;

    fn deref(&self) -> &FileErrorDetails {
        &self.0
    }
}

impl fmt::Display for FileErrorDetails {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file)?;
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
        }
        write!(f, ": ")?;
        match (&self.section, &self.monitor) {
            (Some(section), Some(name)) => write!(f, "{section} \"{name}\": ")?,
            (Some(section), None) => write!(f, "[[{section}]]: ")?,
            (None, Some(name)) => write!(f, "\"{name}\": ")?,
            (None, None) => {}
        }
        write!(f, "{}", self.message)
    }
}

/// The text being checked and its name, so errors can point at lines.
#[derive(Debug, Clone, Copy)]
pub struct Source<'a> {
    /// The file's name, as it should appear in messages.
    pub file: &'a str,
    /// The whole text the spans point into.
    pub text: &'a str,
}

impl<'a> Source<'a> {
    pub fn new(file: &'a str, text: &'a str) -> Self {
        Source { file, text }
    }

    /// The 1-based line holding byte `offset` (the last line for an offset past the end).
    pub fn line_of(&self, offset: usize) -> usize {
        let end = offset.min(self.text.len());
        self.text.as_bytes()[..end]
            .iter()
            .filter(|&&b| b == b'\n')
            .count()
            + 1
    }

    /// An error with no section or monitor: the file as a whole.
    pub(crate) fn error(
        &self,
        span: Option<Range<usize>>,
        kind: ErrorKind,
        message: String,
    ) -> FileError {
        FileError::new(FileErrorDetails {
            file: self.file.to_string(),
            line: span.map(|s| self.line_of(s.start)),
            section: None,
            monitor: None,
            key: None,
            kind,
            message,
        })
    }
}

/// Where inside a file a check is: the section and monitor, so each error names them.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Place<'a> {
    pub source: Source<'a>,
    pub section: &'a str,
    pub monitor: Option<&'a str>,
}

impl Place<'_> {
    /// An error about `key`, pointing at `span`.
    pub fn error(
        &self,
        span: Range<usize>,
        key: &str,
        kind: ErrorKind,
        message: impl Into<String>,
    ) -> FileError {
        FileError::new(FileErrorDetails {
            file: self.source.file.to_string(),
            line: Some(self.source.line_of(span.start)),
            section: Some(self.section.to_string()),
            monitor: self.monitor.map(str::to_string),
            key: (!key.is_empty()).then(|| key.to_string()),
            kind,
            message: message.into(),
        })
    }
}

/// Turns toml's own error (syntax, unknown key, wrong type, missing key) into a
/// [`FileError`]: the line from its span, the key from the text there, and a message that
/// says "key" where serde says "field".
pub(crate) fn from_toml(source: Source<'_>, error: &toml::de::Error) -> FileError {
    let raw = error.message().trim_end();
    let span = error.span();
    let (kind, key, message) = if let Some(rest) = raw.strip_prefix("unknown field ") {
        let (unknown, expected) = split_backticked(rest);
        let known = backticked_words(expected);
        let mut message = format!("unknown key '{unknown}'");
        if let Some(close) = closest(&unknown, &known) {
            message.push_str(&format!(" (did you mean '{close}'?)"));
        }
        if !known.is_empty() {
            message.push_str(&format!("; the keys here are: {}", known.join(", ")));
        }
        (ErrorKind::UnknownKey, Some(unknown), message)
    } else if let Some(rest) = raw.strip_prefix("missing field ") {
        let (missing, _) = split_backticked(rest);
        let message = format!("the required key '{missing}' is missing");
        (ErrorKind::MissingKey, Some(missing), message)
    } else if raw.starts_with("invalid type")
        || raw.starts_with("invalid value")
        || raw.starts_with("unknown variant")
    {
        let key = span.clone().and_then(|s| key_before(source.text, s.start));
        let message = match &key {
            Some(key) => format!("{key}: {}", plain_words(raw)),
            None => plain_words(raw),
        };
        (ErrorKind::WrongType, key, message)
    } else {
        (ErrorKind::Syntax, None, raw.replace('\n', "; "))
    };
    let mut error = source.error(span, kind, message);
    error.0.key = key;
    error
}

/// `` `abc`, rest `` → (`abc`, `, rest`).
fn split_backticked(text: &str) -> (String, &str) {
    let inner = text.strip_prefix('`').unwrap_or(text);
    match inner.find('`') {
        Some(end) => (inner[..end].to_string(), &inner[end + 1..]),
        None => (inner.to_string(), ""),
    }
}

/// Every word between backticks, in order.
fn backticked_words(text: &str) -> Vec<String> {
    text.split('`')
        .skip(1)
        .step_by(2)
        .map(str::to_string)
        .collect()
}

/// serde's phrasing, in the words of a file: `f64` is a number, `u32` a whole number.
fn plain_words(message: &str) -> String {
    message
        .replace("expected f64", "expected a number")
        .replace("expected u16", "expected a whole number from 0 to 65535")
        .replace("expected u32", "expected a whole number")
        .replace("expected i64", "expected a whole number")
        .replace("unknown variant", "unknown value")
}

/// The key of `key = value` when `offset` points at the value: the last bare key before
/// the `=` on that line (for an inline table, the innermost key).
fn key_before(text: &str, offset: usize) -> Option<String> {
    let offset = offset.min(text.len());
    let line_start = text[..offset].rfind('\n').map_or(0, |i| i + 1);
    let before = text.get(line_start..offset)?.trim_end();
    let before = before.strip_suffix('=')?.trim_end();
    let key: String = before
        .chars()
        .rev()
        .take_while(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-'))
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .collect();
    (!key.is_empty()).then_some(key)
}

/// The known word closest to `word`: within two edits, or one that `word` begins
/// (`expect` for `expect_status`), the nearest first.
fn closest(word: &str, known: &[String]) -> Option<String> {
    let mut best: Option<(usize, &String)> = None;
    for candidate in known {
        let distance = if word.len() >= 3 && candidate.starts_with(word) {
            1
        } else {
            edit_distance(word, candidate)
        };
        if distance <= 2 && best.is_none_or(|(d, _)| distance < d) {
            best = Some((distance, candidate));
        }
    }
    best.map(|(_, c)| c.clone())
}

/// Levenshtein distance over characters.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut previous: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut current = vec![i + 1; b.len() + 1];
        for (j, &cb) in b.iter().enumerate() {
            let substitute = previous[j] + usize::from(ca != cb);
            current[j + 1] = substitute.min(previous[j + 1] + 1).min(current[j] + 1);
        }
        previous = current;
    }
    previous[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_count_from_one() {
        let source = Source::new("m.toml", "a\nb\nc");
        assert_eq!(source.line_of(0), 1);
        assert_eq!(source.line_of(2), 2);
        assert_eq!(source.line_of(4), 3);
        assert_eq!(source.line_of(99), 3);
    }

    #[test]
    fn keys_before_values() {
        assert_eq!(
            key_before("x = 1\nwarning = \"5\"", 16),
            Some("warning".into())
        );
        assert_eq!(key_before("labels = { team = 5 }", 18), Some("team".into()));
        assert_eq!(key_before("[[x]]", 2), None);
    }

    #[test]
    fn suggestions() {
        let known: Vec<String> = ["critical", "warning", "window"].map(String::from).into();
        assert_eq!(closest("critcal", &known), Some("critical".into()));
        assert_eq!(closest("windw", &known), Some("window".into()));
        assert_eq!(closest("colour", &known), None);
        let known: Vec<String> = ["expect_status", "timeout"].map(String::from).into();
        assert_eq!(closest("expect", &known), Some("expect_status".into()));
        assert_eq!(closest("ex", &known), None);
        assert_eq!(edit_distance("", "abc"), 3);
    }

    #[test]
    fn display_names_file_line_section_and_monitor() {
        let error = FileError::new(FileErrorDetails {
            file: "monitors.toml".into(),
            line: Some(7),
            section: Some("threshold".into()),
            monitor: Some("checkout-errors".into()),
            key: Some("critical".into()),
            kind: ErrorKind::ThresholdOrder,
            message: "critical is below warning".into(),
        });
        assert_eq!(
            error.to_string(),
            "monitors.toml:7: threshold \"checkout-errors\": critical is below warning"
        );
    }
}
