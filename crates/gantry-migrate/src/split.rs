//! Gantry's own statement splitter. A migration file is sent one statement at a time, as
//! written (a multi-statement string is one implicit transaction, where `CONCURRENTLY`
//! fails), so the file must be cut exactly where the database's own client would cut it:
//! - single-quoted strings (`''` escapes; backslash escapes in MySQL and in PostgreSQL
//!   `E'…'` strings), double-quoted identifiers (strings in MySQL), backticks (MySQL,
//!   SQLite) and `[…]` identifiers (SQLite);
//! - `--` line comments (in MySQL only when followed by a space or control character, as
//!   mysql reads them), `#` line comments (MySQL), `/* */` block comments (nested in
//!   PostgreSQL); MySQL's executable comments `/*! … */` and hints `/*+ … */` count as text;
//! - PostgreSQL dollar quotes (`$$`, `$tag$`), and `BEGIN ATOMIC … END` bodies;
//! - SQLite `CREATE TRIGGER … BEGIN … END` bodies;
//! - MySQL `DELIMITER //` lines, which change the terminator until the next one.
//!
//! A statement's text runs from its first token to its last, leading and trailing
//! comments and the terminator left out; statements with no token are skipped.

use std::fmt;
use std::ops::Range;

use serde::{Deserialize, Serialize};

use crate::checksum::statement_checksum;

/// The database a migration is written for. MariaDB is [`Dialect::MySql`] here.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Dialect {
    Postgres,
    MySql,
    Sqlite,
}

impl Dialect {
    /// The dialect for a name as people write it (`postgres`, `postgresql`, `pg`, `mysql`,
    /// `mariadb`, `sqlite`), case-insensitively.
    pub fn from_name(name: &str) -> Option<Dialect> {
        match name.to_ascii_lowercase().as_str() {
            "postgres" | "postgresql" | "pg" => Some(Dialect::Postgres),
            "mysql" | "mariadb" => Some(Dialect::MySql),
            "sqlite" | "sqlite3" => Some(Dialect::Sqlite),
            _ => None,
        }
    }

    /// The canonical lower-case name.
    pub fn name(self) -> &'static str {
        match self {
            Dialect::Postgres => "postgres",
            Dialect::MySql => "mysql",
            Dialect::Sqlite => "sqlite",
        }
    }
}

impl fmt::Display for Dialect {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// One statement of a file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Statement {
    /// The statement as written, without its terminator and without the comments around it.
    pub text: String,
    /// 1-based line of its first character in the file.
    pub line: usize,
    /// 1-based column (in characters) of its first character.
    pub column: usize,
    /// Byte range of `text` in the file's text.
    pub range: Range<usize>,
    /// SHA-256 of the trimmed, normalised text (see [`crate::checksum`]).
    pub checksum: String,
}

impl Statement {
    /// A statement made from a text alone (line 1, column 1), as when a statement comes from
    /// a command-line option rather than a file.
    pub fn from_text(text: &str) -> Statement {
        Statement {
            text: text.to_string(),
            line: 1,
            column: 1,
            range: 0..text.len(),
            checksum: statement_checksum(text),
        }
    }
}

/// Why a file cannot be split. Positions are 1-based; columns count characters.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SplitError {
    #[error("line {line}, column {column}: unterminated {what}; {hint}")]
    Unterminated {
        what: String,
        line: usize,
        column: usize,
        hint: String,
    },
    #[error(
        "line {line}, column {column}: DELIMITER needs a terminator after it \
         (for example `DELIMITER //`, and `DELIMITER ;` to switch back)"
    )]
    EmptyDelimiter { line: usize, column: usize },
}

impl SplitError {
    /// 1-based line of the problem.
    pub fn line(&self) -> usize {
        match self {
            SplitError::Unterminated { line, .. } | SplitError::EmptyDelimiter { line, .. } => {
                *line
            }
        }
    }

    /// 1-based column of the problem.
    pub fn column(&self) -> usize {
        match self {
            SplitError::Unterminated { column, .. } | SplitError::EmptyDelimiter { column, .. } => {
                *column
            }
        }
    }
}

/// Splits `text` into statements as `dialect`'s own client would.
pub fn split(dialect: Dialect, text: &str) -> Result<Vec<Statement>, SplitError> {
    let mut lexer = Lexer::new(dialect, text);
    let mut lines = LineCounter::default();
    let mut out = Vec::new();
    let mut delimiter = String::from(";");
    let mut current = Pending::default();

    while lexer.pos < text.len() {
        if dialect == Dialect::MySql && current.start.is_none() && at_line_start(text, lexer.pos) {
            if let Some(rest) = delimiter_command(text, lexer.pos) {
                let line_end = text[lexer.pos..]
                    .find('\n')
                    .map_or(text.len(), |i| lexer.pos + i);
                let new = text[rest..line_end].split_whitespace().next().unwrap_or("");
                if new.is_empty() {
                    let (line, column) = lines.at(text, lexer.pos);
                    return Err(SplitError::EmptyDelimiter { line, column });
                }
                delimiter = new.to_string();
                lexer.stop = delimiter
                    .bytes()
                    .next()
                    .filter(|b| is_word_byte(*b))
                    .map(|_| delimiter.clone());
                lexer.pos = line_end;
                continue;
            }
        }
        if current.depth == 0 && text[lexer.pos..].starts_with(delimiter.as_str()) {
            current.finish(text, &mut lines, &mut out);
            lexer.pos += delimiter.len();
            continue;
        }
        let token = match lexer.next_token() {
            Ok(Some(token)) => token,
            Ok(None) => break,
            Err(error) => return Err(error.at(text, &mut lines)),
        };
        if !token.kind.is_significant() {
            continue;
        }
        if current.start.is_none() {
            current.start = Some(token.start);
        }
        current.end = token.end;
        if token.kind == Kind::Word && delimiter == ";" {
            current.track_block(dialect, &text[token.start..token.end]);
        }
    }
    current.finish(text, &mut lines, &mut out);
    Ok(out)
}

/// The statement being read.
#[derive(Default)]
struct Pending {
    start: Option<usize>,
    end: usize,
    /// Up to three leading words, upper-cased.
    head: Vec<String>,
    previous: String,
    /// Depth of `BEGIN … END` bodies in which `;` does not end the statement.
    depth: u32,
    in_body: bool,
}

impl Pending {
    fn track_block(&mut self, dialect: Dialect, word: &str) {
        let upper = word.to_ascii_uppercase();
        match dialect {
            Dialect::Sqlite => {
                if self.head.len() < 4 {
                    self.head.push(upper.clone());
                    let trigger = matches!(
                        self.head.iter().map(String::as_str).collect::<Vec<_>>()[..],
                        ["CREATE", "TRIGGER", ..] | ["CREATE", "TEMP" | "TEMPORARY", "TRIGGER", ..]
                    );
                    if trigger {
                        self.in_body = true;
                    }
                }
                if self.in_body {
                    match upper.as_str() {
                        "BEGIN" | "CASE" => self.depth += 1,
                        "END" => self.depth = self.depth.saturating_sub(1),
                        _ => {}
                    }
                }
            }
            Dialect::Postgres => {
                if self.head.is_empty() {
                    self.head.push(upper.clone());
                }
                let create = self.head.first().is_some_and(|w| w == "CREATE");
                if upper == "ATOMIC" && self.previous == "BEGIN" && create {
                    self.in_body = true;
                    self.depth += 1;
                } else if self.in_body {
                    match upper.as_str() {
                        "CASE" => self.depth += 1,
                        "END" => self.depth = self.depth.saturating_sub(1),
                        _ => {}
                    }
                }
            }
            Dialect::MySql => {}
        }
        self.previous = upper;
    }

    fn finish(&mut self, text: &str, lines: &mut LineCounter, out: &mut Vec<Statement>) {
        if let Some(start) = self.start {
            let (line, column) = lines.at(text, start);
            let body = &text[start..self.end];
            out.push(Statement {
                text: body.to_string(),
                line,
                column,
                range: start..self.end,
                checksum: statement_checksum(body),
            });
        }
        *self = Pending::default();
    }
}

fn at_line_start(text: &str, pos: usize) -> bool {
    let before = &text[..pos];
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    before[line_start..].chars().all(|c| c == ' ' || c == '\t')
}

/// If a `DELIMITER` command starts at `pos`, the offset just after the keyword.
fn delimiter_command(text: &str, pos: usize) -> Option<usize> {
    const WORD: &str = "DELIMITER";
    let rest = text.get(pos..pos + WORD.len())?;
    if !rest.eq_ignore_ascii_case(WORD) {
        return None;
    }
    match text.as_bytes().get(pos + WORD.len()) {
        Some(b' ' | b'\t') => Some(pos + WORD.len()),
        _ => None,
    }
}

/// Turns byte offsets into (line, column), moving forward only.
#[derive(Clone, Copy)]
pub(crate) struct LineCounter {
    offset: usize,
    line: usize,
    column: usize,
}

impl Default for LineCounter {
    fn default() -> Self {
        LineCounter {
            offset: 0,
            line: 1,
            column: 1,
        }
    }
}

impl LineCounter {
    /// The 1-based line and column of byte `offset` (a char boundary).
    pub(crate) fn at(&mut self, text: &str, offset: usize) -> (usize, usize) {
        if offset < self.offset {
            *self = LineCounter::default();
        }
        let offset = offset.min(text.len());
        for c in text.get(self.offset..offset).unwrap_or("").chars() {
            if c == '\n' {
                self.line += 1;
                self.column = 1;
            } else {
                self.column += 1;
            }
        }
        self.offset = offset;
        (self.line, self.column)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Whitespace,
    Comment,
    /// A MySQL `/*! … */` or `/*+ … */` comment: the server reads it.
    ExecutableComment,
    Word,
    /// A string, quoted identifier or dollar-quoted body.
    Quoted,
    Punct,
}

impl Kind {
    fn is_significant(self) -> bool {
        !matches!(self, Kind::Whitespace | Kind::Comment)
    }
}

#[derive(Debug, Clone, Copy)]
pub(crate) struct Token {
    pub(crate) kind: Kind,
    pub(crate) start: usize,
    pub(crate) end: usize,
}

/// An unterminated construct found at a byte offset; turned into a [`SplitError`] with
/// its line and column.
struct LexError {
    what: String,
    hint: String,
    offset: usize,
}

impl LexError {
    fn at(self, text: &str, lines: &mut LineCounter) -> SplitError {
        let (line, column) = lines.at(text, self.offset);
        SplitError::Unterminated {
            what: self.what,
            line,
            column,
            hint: self.hint,
        }
    }
}

pub(crate) struct Lexer<'a> {
    dialect: Dialect,
    text: &'a str,
    bytes: &'a [u8],
    pub(crate) pos: usize,
    /// A MySQL delimiter that starts with a word character (`$$`): a word stops before it.
    stop: Option<String>,
}

fn is_word_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_' || b == b'$' || b >= 0x80
}

fn is_tag_start(b: u8) -> bool {
    b.is_ascii_alphabetic() || b == b'_' || b >= 0x80
}

impl<'a> Lexer<'a> {
    pub(crate) fn new(dialect: Dialect, text: &'a str) -> Self {
        Lexer {
            dialect,
            text,
            bytes: text.as_bytes(),
            pos: 0,
            stop: None,
        }
    }

    fn peek(&self, ahead: usize) -> Option<u8> {
        self.bytes.get(self.pos + ahead).copied()
    }

    /// The next token, `None` at the end of the text.
    fn next_token(&mut self) -> Result<Option<Token>, LexError> {
        let start = self.pos;
        let Some(b) = self.peek(0) else {
            return Ok(None);
        };
        let kind = match b {
            b' ' | b'\t' | b'\n' | b'\r' | b'\x0b' | b'\x0c' => {
                self.pos += 1;
                Kind::Whitespace
            }
            b'-' if self.peek(1) == Some(b'-') && self.line_comment_dash() => {
                self.skip_line();
                Kind::Comment
            }
            b'#' if self.dialect == Dialect::MySql => {
                self.skip_line();
                Kind::Comment
            }
            b'/' if self.peek(1) == Some(b'*') => self.block_comment()?,
            b'\'' => {
                let backslash = self.dialect == Dialect::MySql || self.is_escape_string(start);
                self.pos += 1;
                self.quoted(
                    b'\'',
                    backslash,
                    start,
                    "single-quoted string",
                    "close it with '",
                )?;
                Kind::Quoted
            }
            b'"' => {
                self.pos += 1;
                if self.dialect == Dialect::MySql {
                    self.quoted(
                        b'"',
                        true,
                        start,
                        "double-quoted string",
                        "close it with \"",
                    )?;
                } else {
                    self.quoted(
                        b'"',
                        false,
                        start,
                        "double-quoted identifier",
                        "close it with \"",
                    )?;
                }
                Kind::Quoted
            }
            b'`' if self.dialect != Dialect::Postgres => {
                self.pos += 1;
                self.quoted(
                    b'`',
                    false,
                    start,
                    "backtick-quoted identifier",
                    "close it with `",
                )?;
                Kind::Quoted
            }
            b'[' if self.dialect == Dialect::Sqlite => {
                match self.text[start + 1..].find(']') {
                    Some(i) => self.pos = start + 1 + i + 1,
                    None => {
                        return Err(LexError {
                            what: "bracket-quoted identifier".into(),
                            hint: "close it with ]".into(),
                            offset: start,
                        })
                    }
                }
                Kind::Quoted
            }
            b'$' if self.dialect == Dialect::Postgres => match self.dollar_tag() {
                Some(tag_len) => {
                    let tag = &self.text[start..start + tag_len];
                    match self.text[start + tag_len..].find(tag) {
                        Some(i) => self.pos = start + tag_len + i + tag_len,
                        None => {
                            return Err(LexError {
                                what: format!("dollar-quoted string {tag}"),
                                hint: format!("close it with {tag}"),
                                offset: start,
                            })
                        }
                    }
                    Kind::Quoted
                }
                None => {
                    self.pos += 1;
                    Kind::Punct
                }
            },
            b if is_word_byte(b) && b != b'$' => {
                while self.peek(0).is_some_and(is_word_byte) && !self.at_stop() {
                    self.pos += 1;
                }
                Kind::Word
            }
            _ => {
                // One character (which may be several bytes in UTF-8).
                let width = self.text[start..].chars().next().map_or(1, char::len_utf8);
                self.pos += width;
                Kind::Punct
            }
        };
        Ok(Some(Token {
            kind,
            start,
            end: self.pos,
        }))
    }

    fn at_stop(&self) -> bool {
        self.stop
            .as_deref()
            .is_some_and(|stop| self.bytes[self.pos..].starts_with(stop.as_bytes()))
    }

    /// `--` starts a comment; in MySQL only when a space or control character follows.
    fn line_comment_dash(&self) -> bool {
        if self.dialect != Dialect::MySql {
            return true;
        }
        match self.peek(2) {
            None => true,
            Some(c) => c.is_ascii_whitespace() || c.is_ascii_control(),
        }
    }

    fn skip_line(&mut self) {
        self.pos = self.text[self.pos..]
            .find('\n')
            .map_or(self.text.len(), |i| self.pos + i);
    }

    fn block_comment(&mut self) -> Result<Kind, LexError> {
        let start = self.pos;
        let executable =
            self.dialect == Dialect::MySql && matches!(self.peek(2), Some(b'!' | b'+'));
        self.pos += 2;
        let nests = self.dialect == Dialect::Postgres;
        let mut depth = 1usize;
        let mut nested = false;
        while let Some(b) = self.peek(0) {
            if b == b'*' && self.peek(1) == Some(b'/') {
                self.pos += 2;
                depth -= 1;
                if depth == 0 {
                    return Ok(if executable {
                        Kind::ExecutableComment
                    } else {
                        Kind::Comment
                    });
                }
            } else if nests && b == b'/' && self.peek(1) == Some(b'*') {
                self.pos += 2;
                depth += 1;
                nested = true;
            } else {
                self.pos += 1;
            }
        }
        Err(LexError {
            what: "block comment".into(),
            hint: if nested {
                format!("close it with */ ({depth} still open: PostgreSQL nests /* */ comments)")
            } else {
                "close it with */".into()
            },
            offset: start,
        })
    }

    /// Reads up to the closing `quote` (doubled quotes stay inside; a backslash escapes
    /// the next byte when `backslash`). `self.pos` is just after the opening quote.
    fn quoted(
        &mut self,
        quote: u8,
        backslash: bool,
        start: usize,
        what: &str,
        hint: &str,
    ) -> Result<(), LexError> {
        while let Some(b) = self.peek(0) {
            if backslash && b == b'\\' {
                self.pos += 2;
            } else if b == quote {
                if self.peek(1) == Some(quote) {
                    self.pos += 2;
                } else {
                    self.pos += 1;
                    return Ok(());
                }
            } else {
                self.pos += 1;
            }
        }
        self.pos = self.text.len();
        Err(LexError {
            what: what.into(),
            hint: hint.into(),
            offset: start,
        })
    }

    /// A PostgreSQL `E'…'` string: the quote follows a lone `E` (backslash escapes apply).
    fn is_escape_string(&self, quote: usize) -> bool {
        if self.dialect != Dialect::Postgres || quote == 0 {
            return false;
        }
        let e = quote - 1;
        matches!(self.bytes[e], b'E' | b'e') && (e == 0 || !is_word_byte(self.bytes[e - 1]))
    }

    /// The length of a dollar-quote tag (`$$` or `$tag$`) starting at `self.pos`.
    fn dollar_tag(&self) -> Option<usize> {
        if self.pos > 0 && is_word_byte(self.bytes[self.pos - 1]) {
            return None;
        }
        let mut i = 1;
        if self.peek(i)? != b'$' {
            if !is_tag_start(self.peek(i)?) {
                return None;
            }
            while self.peek(i).is_some_and(|b| is_word_byte(b) && b != b'$') {
                i += 1;
            }
            if self.peek(i)? != b'$' {
                return None;
            }
        }
        Some(i + 1)
    }
}

/// The significant tokens of `text` (no whitespace, no plain comments), with their byte
/// ranges; `None` when a quote or comment is left open.
pub(crate) fn tokens(dialect: Dialect, text: &str) -> Option<Vec<Token>> {
    let mut lexer = Lexer::new(dialect, text);
    let mut out = Vec::new();
    loop {
        match lexer.next_token() {
            Ok(Some(token)) if token.kind.is_significant() => out.push(token),
            Ok(Some(_)) => {}
            Ok(None) => return Some(out),
            Err(_) => return None,
        }
    }
}

/// The words of `text` outside strings and comments, upper-cased, in order.
pub(crate) fn words(dialect: Dialect, text: &str) -> Vec<String> {
    tokens(dialect, text)
        .unwrap_or_default()
        .into_iter()
        .filter(|t| t.kind == Kind::Word)
        .map(|t| text[t.start..t.end].to_ascii_uppercase())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Splits `sql` and compares the statement texts.
    fn check(dialect: Dialect, sql: &str, expected: &[&str]) {
        let got = match split(dialect, sql) {
            Ok(statements) => statements,
            Err(e) => panic!("{dialect} {sql:?}: {e}"),
        };
        let texts: Vec<&str> = got.iter().map(|s| s.text.as_str()).collect();
        assert_eq!(texts, expected, "{dialect}: {sql:?}");
        for s in &got {
            assert_eq!(&sql[s.range.clone()], s.text);
            assert_eq!(s.checksum, statement_checksum(&s.text));
        }
    }

    /// Splits `sql` and expects an error at `(line, column)` whose message contains `what`.
    fn check_error(dialect: Dialect, sql: &str, line: usize, column: usize, what: &str) {
        match split(dialect, sql) {
            Ok(s) => panic!("{dialect} {sql:?}: expected an error, got {s:?}"),
            Err(e) => {
                assert_eq!((e.line(), e.column()), (line, column), "{sql:?}: {e}");
                assert!(e.to_string().contains(what), "{sql:?}: {e}");
            }
        }
    }

    use Dialect::{MySql, Postgres, Sqlite};

    #[test]
    fn basic_cases() {
        let all = [Postgres, MySql, Sqlite];
        let cases: &[(&str, &[&str])] = &[
            ("", &[]),
            ("   \n\t", &[]),
            (";;;", &[]),
            ("select 1", &["select 1"]),
            ("select 1;", &["select 1"]),
            ("select 1; select 2;", &["select 1", "select 2"]),
            ("select 1;\n\n  select 2\n", &["select 1", "select 2"]),
            ("-- only a comment\n", &[]),
            ("/* only a comment */", &[]),
            ("-- lead\nselect 1 -- trail\n;", &["select 1"]),
            ("select /* inside */ 1;", &["select /* inside */ 1"]),
            ("select 'a;b';", &["select 'a;b'"]),
            ("select 'it''s;';", &["select 'it''s;'"]),
            ("select '--not a comment';", &["select '--not a comment'"]),
            ("select '/*';select 2", &["select '/*'", "select 2"]),
            ("select 'é;ü'; select 2", &["select 'é;ü'", "select 2"]),
        ];
        for dialect in all {
            for (sql, expected) in cases {
                check(dialect, sql, expected);
            }
        }
    }

    #[test]
    fn dialect_specific_cases() {
        let cases: &[(Dialect, &str, &[&str])] = &[
            // Double quotes: identifiers in PostgreSQL and SQLite, strings in MySQL.
            (
                Postgres,
                r#"select "a;b" from t;"#,
                &[r#"select "a;b" from t"#],
            ),
            (Postgres, r#"select "a"";b";x"#, &[r#"select "a"";b""#, "x"]),
            (MySql, r#"select "a\";b";x"#, &[r#"select "a\";b""#, "x"]),
            (Sqlite, r#"select "a;b";x"#, &[r#"select "a;b""#, "x"]),
            // Backslashes escape in MySQL strings only (and in PostgreSQL E'' strings).
            (MySql, r"select 'a\';b';x", &[r"select 'a\';b'", "x"]),
            (
                Postgres,
                r"select 'a\'; select 'b'",
                &[r"select 'a\'", "select 'b'"],
            ),
            (Postgres, r"select E'a\';b';x", &[r"select E'a\';b'", "x"]),
            (Postgres, r"select e'a\\'; x", &[r"select e'a\\'", "x"]),
            (Postgres, r"select fe'a\';x", &[r"select fe'a\'", r"x"]),
            // Backticks: MySQL and SQLite.
            (
                MySql,
                "select `a;b`, `c``;d` from t; x",
                &["select `a;b`, `c``;d` from t", "x"],
            ),
            (Sqlite, "select `a;b`; x", &["select `a;b`", "x"]),
            (
                Sqlite,
                "select [a;b] from t; x",
                &["select [a;b] from t", "x"],
            ),
            // `#` comments in MySQL only.
            (
                MySql,
                "# a;b\nselect 1; # c;\nselect 2",
                &["select 1", "select 2"],
            ),
            (
                Postgres,
                "select a #> '{b}' from t; x",
                &["select a #> '{b}' from t", "x"],
            ),
            // MySQL needs a space after `--`.
            (
                MySql,
                "select 1 --1;\nselect 2",
                &["select 1 --1", "select 2"],
            ),
            (
                MySql,
                "select 1 -- 1;\n;select 2",
                &["select 1", "select 2"],
            ),
            (MySql, "select 1 --\n;select 2", &["select 1", "select 2"]),
            (
                Postgres,
                "select 1 --1;\n;select 2",
                &["select 1", "select 2"],
            ),
            // Nested block comments in PostgreSQL only.
            (
                Postgres,
                "/* a /* b; */ c; */ select 1; x",
                &["select 1", "x"],
            ),
            (MySql, "/* a /* b; */ select 1; x", &["select 1", "x"]),
            (Sqlite, "/* a /* b; */ select 1; x", &["select 1", "x"]),
            // MySQL executable comments count as statements.
            (
                MySql,
                "/*!40101 SET NAMES utf8 */;\nx",
                &["/*!40101 SET NAMES utf8 */", "x"],
            ),
            (
                MySql,
                "select /*+ NO_ICP(t) */ 1;",
                &["select /*+ NO_ICP(t) */ 1"],
            ),
        ];
        for (dialect, sql, expected) in cases {
            check(*dialect, sql, expected);
        }
    }

    #[test]
    fn dollar_quotes() {
        let cases: &[(&str, &[&str])] = &[
            ("select $$a;b$$; x", &["select $$a;b$$", "x"]),
            ("select $fn$ a; $$ ; $fn$; x", &["select $fn$ a; $$ ; $fn$", "x"]),
            // A tag inside another tag's body is just text.
            ("select $a$ $b$; $a$; x", &["select $a$ $b$; $a$", "x"]),
            ("select $a$ x $a$ ; $b$ ; $b$", &["select $a$ x $a$", "$b$ ; $b$"]),
            // Positional parameters and `$` inside identifiers are not dollar quotes.
            ("select $1; select a$b$c from t; x", &["select $1", "select a$b$c from t", "x"]),
            ("prepare p as select $1, $2; x", &["prepare p as select $1, $2", "x"]),
            // Bodies hold quotes and comments that must not end the statement.
            (
                "create function f() returns int as $body$\n  select 1; -- don't\n  /* ' */\n$body$ language sql;\nselect 2;",
                &[
                    "create function f() returns int as $body$\n  select 1; -- don't\n  /* ' */\n$body$ language sql",
                    "select 2",
                ],
            ),
            ("select $_x1$;$_x1$;x", &["select $_x1$;$_x1$", "x"]),
            ("select $é$;$é$;x", &["select $é$;$é$", "x"]),
        ];
        for (sql, expected) in cases {
            check(Postgres, sql, expected);
        }
        // MySQL has no dollar quotes.
        check(MySql, "select $$a;b$$", &["select $$a", "b$$"]);
    }

    #[test]
    fn bodies_with_semicolons() {
        check(
            Postgres,
            "create function f() returns int language sql begin atomic select 1; select case when true then 2 end; end; select 3",
            &[
                "create function f() returns int language sql begin atomic select 1; select case when true then 2 end; end",
                "select 3",
            ],
        );
        // A transaction BEGIN is not a body.
        check(
            Postgres,
            "begin; select 1; end;",
            &["begin", "select 1", "end"],
        );
        check(
            Sqlite,
            "create trigger t after insert on a begin update b set x = case when 1 then 2 end; insert into c values (1); end;\nselect 1;",
            &[
                "create trigger t after insert on a begin update b set x = case when 1 then 2 end; insert into c values (1); end",
                "select 1",
            ],
        );
        check(
            Sqlite,
            "CREATE TEMP TRIGGER t AFTER INSERT ON a BEGIN SELECT 1; END; x",
            &[
                "CREATE TEMP TRIGGER t AFTER INSERT ON a BEGIN SELECT 1; END",
                "x",
            ],
        );
        check(
            Sqlite,
            "begin; select 1; end;",
            &["begin", "select 1", "end"],
        );
    }

    #[test]
    fn mysql_delimiter() {
        let sql = "DELIMITER //\nCREATE TRIGGER t BEFORE INSERT ON a FOR EACH ROW BEGIN\n  SET NEW.x = 1;\n  SET NEW.y = ';';\nEND//\nDELIMITER ;\nSELECT 1;\n";
        check(
            MySql,
            sql,
            &[
                "CREATE TRIGGER t BEFORE INSERT ON a FOR EACH ROW BEGIN\n  SET NEW.x = 1;\n  SET NEW.y = ';';\nEND",
                "SELECT 1",
            ],
        );
        check(
            MySql,
            "delimiter $$\nselect 1$$ select 2 $$\ndelimiter ;\nselect 3;",
            &["select 1", "select 2", "select 3"],
        );
        check(
            MySql,
            "  DELIMITER ;;\nselect 1;; select 2;;",
            &["select 1", "select 2"],
        );
        // Not at the start of a statement: plain text.
        check(MySql, "select 1, delimiter //", &["select 1, delimiter //"]);
        // Not a command in other dialects.
        check(
            Postgres,
            "DELIMITER //\nselect 1;",
            &["DELIMITER //\nselect 1"],
        );
        check_error(
            MySql,
            "select 1;\nDELIMITER \nselect 2",
            2,
            1,
            "DELIMITER needs a terminator",
        );
    }

    #[test]
    fn positions() {
        let sql = "-- header\n\n  select 1;\n\tselect\n 2; /* c */ select 'é'; select 3";
        let got = split(Postgres, sql).unwrap_or_default();
        let pos: Vec<(usize, usize)> = got.iter().map(|s| (s.line, s.column)).collect();
        assert_eq!(pos, vec![(3, 3), (4, 2), (5, 13), (5, 25)]);
        assert_eq!(got[1].range, 24..33);
    }

    #[test]
    fn unterminated() {
        let cases: &[(Dialect, &str, usize, usize, &str)] = &[
            (Postgres, "select 'abc", 1, 8, "single-quoted string"),
            (
                Postgres,
                "select 1;\nselect 'it''s",
                2,
                8,
                "single-quoted string",
            ),
            (MySql, "select 'a\\'", 1, 8, "single-quoted string"),
            (Postgres, "select \"abc", 1, 8, "double-quoted identifier"),
            (MySql, "select \"abc", 1, 8, "double-quoted string"),
            (MySql, "select `abc", 1, 8, "backtick-quoted identifier"),
            (Sqlite, "select [abc", 1, 8, "bracket-quoted identifier"),
            (Postgres, "select 1; /* a", 1, 11, "block comment"),
            (Postgres, "/* a /* b */ select 1", 1, 1, "PostgreSQL nests"),
            (Sqlite, "select 1 /* a", 1, 10, "close it with */"),
            (Postgres, "select $$abc", 1, 8, "dollar-quoted string $$"),
            (
                Postgres,
                "select $fn$abc $$ $fn",
                1,
                8,
                "dollar-quoted string $fn$",
            ),
            (Postgres, "select 'é' || 'x", 1, 15, "close it with '"),
        ];
        for (dialect, sql, line, column, what) in cases {
            check_error(*dialect, sql, *line, *column, what);
        }
        // Nested comments close in MySQL at the first */.
        check(MySql, "/* a /* b */ select 1", &["select 1"]);
    }

    #[test]
    fn words_skip_strings_and_comments() {
        assert_eq!(
            words(
                Postgres,
                "create /* index */ index concurrently 'x' \"y\" i"
            ),
            vec!["CREATE", "INDEX", "CONCURRENTLY", "I"]
        );
    }
}
