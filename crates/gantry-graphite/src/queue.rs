//! The segment files of a forward queue (`[metrics.forward]` in the server): points waiting
//! for a Graphite destination, kept as the plaintext lines that will be sent to it, one
//! `path value timestamp\n` per point, appended batch after batch.
//!
//! Reading a segment back trusts nothing in it: a file cut short by a crash ends in half a
//! line, and a disk can hand back zeros or garbage. Only complete lines that this crate's
//! own plaintext reader accepts are sent on; every other line is skipped and counted, so a
//! damaged segment costs its damaged points, never a glued or garbled line at the
//! destination.

use std::borrow::Cow;
use std::io::Write;

use crate::plaintext::parse_line_borrowed;

/// Appends one plaintext line per point to `out`; returns how many points were written.
pub fn encode<'a>(points: impl IntoIterator<Item = (&'a str, i64, f64)>, out: &mut Vec<u8>) -> u64 {
    let mut count = 0;
    for (path, timestamp, value) in points {
        // Writing into a Vec cannot fail.
        let _ = writeln!(out, "{path} {value} {timestamp}");
        count += 1;
    }
    count
}

/// What can be sent from one segment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decoded<'a> {
    /// The good lines, each with its `\n`, in the order they were written: the segment
    /// itself when every line is good.
    pub text: Cow<'a, [u8]>,
    /// How many lines `text` holds.
    pub points: u64,
    /// Complete lines that are not a point the plaintext reader accepts (empty lines are
    /// not counted: they hold nothing).
    pub skipped: u64,
    /// Whether the segment ends in a line without its `\n` (not sent, not counted in
    /// `skipped`): what an append cut short by a crash leaves.
    pub torn: bool,
}

/// Reads a segment's bytes back into what can be sent.
pub fn decode(segment: &[u8]) -> Decoded<'_> {
    let mut kept: Option<Vec<u8>> = None;
    let mut points = 0;
    let mut skipped = 0;
    let mut at = 0;
    while let Some(length) = memchr::memchr(b'\n', &segment[at..]) {
        let line = &segment[at..at + length];
        let end = at + length + 1;
        // A line is good when the reader at the other end would take it; the time given
        // for a `-1` timestamp does not matter here.
        let good = !line.is_empty() && parse_line_borrowed(line, 0).is_ok();
        if good {
            points += 1;
            if let Some(kept) = &mut kept {
                kept.extend_from_slice(&segment[at..end]);
            }
        } else {
            if !line.is_empty() {
                skipped += 1;
            }
            // From the first line left out on, the good lines are copied.
            kept.get_or_insert_with(|| segment[..at].to_vec());
        }
        at = end;
    }
    let torn = at < segment.len();
    let text = match kept {
        Some(kept) => Cow::Owned(kept),
        None => Cow::Borrowed(&segment[..at]),
    };
    Decoded {
        text,
        points,
        skipped,
        torn,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn points_come_back_as_written() {
        let mut segment = Vec::new();
        let points = [
            ("a.b", 1_700_000_000, 1.5),
            ("cpu;dc=eu;host=web1", 0, -0.0),
            ("big", i64::MAX, 1e300),
            ("tiny", 1, 5e-324),
            ("up", 2, f64::INFINITY),
        ];
        assert_eq!(encode(points, &mut segment), 5);
        assert_eq!(&segment[..27], b"a.b 1.5 1700000000\ncpu;dc=e");
        let decoded = decode(&segment);
        assert!(matches!(decoded.text, Cow::Borrowed(_)));
        assert_eq!(
            (decoded.points, decoded.skipped, decoded.torn),
            (5, 0, false)
        );
        let back: Vec<(String, i64, u64)> = crate::plaintext::split_lines(&decoded.text)
            .filter(|l| !l.is_empty())
            .map(|l| {
                let p = crate::plaintext::parse_line(l, 0).unwrap();
                (p.path, p.timestamp, p.value.to_bits())
            })
            .collect();
        let want: Vec<(String, i64, u64)> = points
            .iter()
            .map(|&(path, ts, v)| (path.to_string(), ts, v.to_bits()))
            .collect();
        assert_eq!(back, want);
    }

    #[test]
    fn damage_is_skipped_and_counted() {
        let mut segment = Vec::new();
        encode([("a", 1, 1.0), ("nan", 2, f64::NAN)], &mut segment);
        segment.extend_from_slice(&[0; 5]);
        segment.push(b'\n');
        segment.push(b'\n');
        encode([("b", 3, 2.0)], &mut segment);
        segment.extend_from_slice(b"c 4 ");
        let decoded = decode(&segment);
        assert_eq!(&decoded.text[..], b"a 1 1\nb 2 3\n");
        assert_eq!(
            (decoded.points, decoded.skipped, decoded.torn),
            (2, 2, true)
        );
        assert_eq!(decode(b"").points, 0);
        assert!(!decode(b"").torn);
        assert!(decode(b"x").torn);
    }
}
