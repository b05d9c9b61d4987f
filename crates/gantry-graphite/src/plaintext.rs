//! Carbon's plaintext protocol: one `path value timestamp` line per point, fields separated
//! by whitespace. A timestamp of `-1` means "now"; `NaN` values are dropped (as carbon
//! drops them); tagged paths are validated and normalised.

use crate::tags::{normalise, TagError};

/// One received point.
#[derive(Debug, Clone, PartialEq)]
pub struct Point {
    pub path: String,
    pub value: f64,
    /// Epoch seconds.
    pub timestamp: i64,
}

/// Why a line was refused.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum LineError {
    #[error("expected 3 fields (path value timestamp), found {0}")]
    FieldCount(usize),
    #[error("value '{0}' is not a number")]
    BadValue(String),
    #[error("value is NaN")]
    NaN,
    #[error("timestamp '{0}' is not epoch seconds")]
    BadTimestamp(String),
    #[error("path: {0}")]
    BadTags(#[from] TagError),
    #[error("the line is not UTF-8")]
    NotUtf8,
}

/// Parses one line (without its newline). `now` replaces a timestamp of `-1`.
pub fn parse_line(line: &[u8], now: i64) -> Result<Point, LineError> {
    parse_line_borrowed(line, now).map(|p| Point {
        path: p.path.into_owned(),
        value: p.value,
        timestamp: p.timestamp,
    })
}

/// A point whose path borrows from the line it was read from (tagged paths, which are
/// rewritten, are owned).
#[derive(Debug, Clone, PartialEq)]
pub struct PointRef<'a> {
    pub path: std::borrow::Cow<'a, str>,
    pub value: f64,
    pub timestamp: i64,
}

/// [`parse_line`] without copying the path: what the listeners use.
pub fn parse_line_borrowed(line: &[u8], now: i64) -> Result<PointRef<'_>, LineError> {
    let line = std::str::from_utf8(line).map_err(|_| LineError::NotUtf8)?;
    let mut fields = line.split_ascii_whitespace();
    let (Some(path), Some(value), Some(timestamp), None) =
        (fields.next(), fields.next(), fields.next(), fields.next())
    else {
        return Err(LineError::FieldCount(line.split_ascii_whitespace().count()));
    };
    let value = parse_float(value).ok_or_else(|| LineError::BadValue(value.to_string()))?;
    if value.is_nan() {
        return Err(LineError::NaN);
    }
    let timestamp = match parse_timestamp(timestamp) {
        Some(t) => t,
        None => {
            let seconds = parse_float(timestamp)
                .filter(|t| t.is_finite())
                .ok_or_else(|| LineError::BadTimestamp(timestamp.to_string()))?;
            if seconds == -1.0 {
                now
            } else {
                seconds as i64
            }
        }
    };
    if timestamp < 0 {
        return Err(LineError::BadTimestamp(timestamp.to_string()));
    }
    Ok(PointRef {
        path: normalise(path)?,
        value,
        timestamp,
    })
}

/// The common timestamp, whole epoch seconds that fit an `i64`, without the float parser
/// (which would round 19-digit ones); `None` for anything else (which the general rules
/// then read).
fn parse_timestamp(text: &str) -> Option<i64> {
    if text.is_empty() || text.len() > 19 || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.bytes().try_fold(0i64, |n, b| {
        n.checked_mul(10)?.checked_add(i64::from(b - b'0'))
    })
}

fn parse_float(text: &str) -> Option<f64> {
    let first = *text.as_bytes().first()?;
    if first.is_ascii_digit() || first == b'.' {
        return text.parse().ok();
    }
    let unsigned = text.trim_start_matches(['+', '-']);
    if unsigned.eq_ignore_ascii_case("nan")
        || unsigned.eq_ignore_ascii_case("inf")
        || unsigned.eq_ignore_ascii_case("infinity")
    {
        return text.to_ascii_lowercase().parse().ok();
    }
    if !unsigned.starts_with(|c: char| c.is_ascii_digit() || c == '.') {
        return None;
    }
    text.parse().ok()
}

/// The lines of one datagram (or any bytes read at once): split at `\n`, each without a
/// trailing `\r`. The last piece is a line too, even without a newline after it.
pub fn split_lines(bytes: &[u8]) -> impl Iterator<Item = &[u8]> {
    bytes.split(|&b| b == b'\n').map(trim_cr)
}

/// A TCP stream cut into lines, whatever the reads' boundaries: a line that spans reads is
/// kept until its newline arrives. A line longer than the limit (counted before its `\n`,
/// a `\r` included) is dropped and reported as [`Line::TooLong`] however it was cut, and
/// nothing beyond the limit is ever held.
#[derive(Debug, Default)]
pub struct LineBuffer {
    /// The start of a line whose newline has not come yet.
    partial: Vec<u8>,
    /// The line being received is over the limit: the rest of it is skipped.
    overlong: bool,
}

/// What [`LineBuffer::push`] found in a chunk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Line<'a> {
    /// A line, without its `\n` and any `\r` before it.
    Complete(&'a [u8]),
    /// A line that outgrew the limit and was dropped.
    TooLong,
}

impl LineBuffer {
    /// Feeds a chunk; calls `each` for every line it completes, in order.
    pub fn push(&mut self, chunk: &[u8], max_line: usize, mut each: impl FnMut(Line<'_>)) {
        let mut rest = chunk;
        while let Some(end) = memchr::memchr(b'\n', rest) {
            let (head, tail) = rest.split_at(end);
            rest = &tail[1..];
            if self.overlong || self.partial.len() + head.len() > max_line {
                self.overlong = false;
                self.partial.clear();
                each(Line::TooLong);
            } else if self.partial.is_empty() {
                each(Line::Complete(trim_cr(head)));
            } else {
                self.partial.extend_from_slice(head);
                let line = std::mem::take(&mut self.partial);
                each(Line::Complete(trim_cr(&line)));
            }
        }
        if self.overlong {
            return;
        }
        if self.partial.len() + rest.len() > max_line {
            self.overlong = true;
            self.partial.clear();
        } else {
            self.partial.extend_from_slice(rest);
        }
    }

    /// [`push`](Self::push), collecting the complete lines into `lines` (appended to what
    /// it holds); returns how many lines were too long.
    pub fn push_lines(&mut self, chunk: &[u8], max_line: usize, lines: &mut Lines) -> usize {
        let mut too_long = 0;
        self.push(chunk, max_line, |line| match line {
            Line::Complete(l) => lines.push(l),
            Line::TooLong => too_long += 1,
        });
        too_long
    }

    /// Whether a half line is waiting (a client that disconnects now sent a partial line).
    pub fn has_partial(&self) -> bool {
        !self.partial.is_empty() || self.overlong
    }
}

/// Lines copied back to back into one buffer: a listener gathers the complete lines of a
/// read here (a line may span reads, so they cannot all borrow the read) and parses them
/// together.
#[derive(Debug, Default, Clone)]
pub struct Lines {
    bytes: Vec<u8>,
    /// Where each line ends in `bytes`.
    ends: Vec<usize>,
}

impl Lines {
    /// Forgets every line, keeping the memory.
    pub fn clear(&mut self) {
        self.bytes.clear();
        self.ends.clear();
    }

    /// Adds a copy of `line`.
    pub fn push(&mut self, line: &[u8]) {
        self.bytes.extend_from_slice(line);
        self.ends.push(self.bytes.len());
    }

    /// The lines, in the order pushed.
    pub fn iter(&self) -> impl Iterator<Item = &[u8]> {
        let starts = std::iter::once(0).chain(self.ends.iter().copied());
        starts
            .zip(self.ends.iter().copied())
            .map(|(start, end)| &self.bytes[start..end])
    }

    pub fn len(&self) -> usize {
        self.ends.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }
}

fn trim_cr(line: &[u8]) -> &[u8] {
    line.strip_suffix(b"\r").unwrap_or(line)
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_700_000_000;

    #[test]
    fn lines() {
        let ok = |line: &str, path: &str, value: f64, ts: i64| {
            assert_eq!(
                parse_line(line.as_bytes(), NOW).unwrap(),
                Point {
                    path: path.into(),
                    value,
                    timestamp: ts
                },
                "{line}"
            );
        };
        ok("a.b.c 1.5 1699999990", "a.b.c", 1.5, 1_699_999_990);
        ok(
            "a.b.c\t-2e3   1699999990.7",
            "a.b.c",
            -2000.0,
            1_699_999_990,
        );
        ok("a.b 1 -1", "a.b", 1.0, NOW);
        ok(
            "cpu;host=web1;dc=eu 3 1699999990",
            "cpu;dc=eu;host=web1",
            3.0,
            1_699_999_990,
        );
        ok("a inf 1", "a", f64::INFINITY, 1);
        let bad =
            |line: &[u8], expected: LineError| assert_eq!(parse_line(line, NOW), Err(expected));
        bad(b"a.b 1", LineError::FieldCount(2));
        bad(b"a.b 1 2 3", LineError::FieldCount(4));
        bad(b"", LineError::FieldCount(0));
        bad(b"a.b x 2", LineError::BadValue("x".into()));
        bad(b"a.b nan 2", LineError::NaN);
        bad(b"a.b 1 soon", LineError::BadTimestamp("soon".into()));
        bad(b"a.b 1 -5", LineError::BadTimestamp("-5".into()));
        bad(b"a\xff 1 2", LineError::NotUtf8);
        assert!(matches!(
            parse_line(b"cpu;x 1 2", NOW),
            Err(LineError::BadTags(_))
        ));
    }

    #[test]
    fn stream_buffering() {
        let mut buffer = LineBuffer::default();
        let mut lines = Vec::new();
        let mut collect = |l: Line<'_>| {
            lines.push(match l {
                Line::Complete(b) => String::from_utf8_lossy(b).into_owned(),
                Line::TooLong => "<too long>".into(),
            })
        };
        buffer.push(b"a 1 2\nb 3", 64, &mut collect);
        assert!(buffer.has_partial());
        buffer.push(b" 4\r\n", 64, &mut collect);
        buffer.push(&[b'x'; 100], 64, &mut collect);
        buffer.push(b"yyy\nc 5 6\n", 64, &mut collect);
        assert!(!buffer.has_partial());
        assert_eq!(lines, vec!["a 1 2", "b 3 4", "<too long>", "c 5 6"]);
    }

    /// A line over the limit is dropped however the reads cut it, and one at the limit is
    /// kept however they cut it.
    #[test]
    fn the_line_limit_does_not_depend_on_where_reads_end() {
        let stream = b"12345678\n123456789\n1234\r\n";
        let whole = |max: usize| {
            let mut buffer = LineBuffer::default();
            let mut lines = Lines::default();
            let too_long = buffer.push_lines(stream, max, &mut lines);
            (
                lines.iter().map(<[u8]>::to_vec).collect::<Vec<_>>(),
                too_long,
            )
        };
        for max in [4, 5, 8, 9] {
            for cut in 0..stream.len() {
                let mut buffer = LineBuffer::default();
                let mut lines = Lines::default();
                let mut too_long = buffer.push_lines(&stream[..cut], max, &mut lines);
                too_long += buffer.push_lines(&stream[cut..], max, &mut lines);
                assert!(!buffer.has_partial());
                let got = (
                    lines.iter().map(<[u8]>::to_vec).collect::<Vec<_>>(),
                    too_long,
                );
                assert_eq!(got, whole(max), "max {max}, cut at {cut}");
            }
        }
        assert_eq!(whole(8).1, 1);
        assert_eq!(whole(5).1, 2);
    }

    #[test]
    fn datagram_lines() {
        let lines: Vec<&[u8]> = split_lines(b"a 1 2\r\nb 3 4\n\nc").collect();
        assert_eq!(lines, vec![&b"a 1 2"[..], b"b 3 4", b"", b"c"]);
    }
}
