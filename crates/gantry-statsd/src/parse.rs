//! StatsD datagrams to samples, line by line, the way Etsy's statsd reads them.
//!
//! A datagram holds lines separated by `\n`. A line is `key:value|type[|@rate][|#tags]`,
//! and may carry several values for one key (`key:1|c:2|c`). A line without a `:` is a bad
//! line (Etsy 0.9.0 reads it as the value `1` with no type). DogStatsD tags (`|#k:v,flag`)
//! become Graphite tags on the key (`key;k=v;flag`).

use std::borrow::Cow;

use crate::config::StatsdConfig;
use crate::number::{is_number, js_number, plain_decimal};

/// One measurement, ready to aggregate. Keys are sanitised, tags appended.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample<'a> {
    pub key: Cow<'a, str>,
    pub kind: Kind<'a>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Kind<'a> {
    /// Adds `value` (already divided by the sample rate).
    Counter { value: f64 },
    /// One timing; `count` is how many events it stands for (1 ÷ sample rate).
    Timer { value: f64, count: f64 },
    /// Sets the gauge, or moves it by `value` when `signed` and the gauge has a non-zero value.
    Gauge { value: f64, signed: bool },
    /// Adds `member` to the set.
    Set { member: Cow<'a, str> },
}

/// A value that could not be read, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadLine {
    /// The line, cut to 200 characters, for the log.
    pub line: String,
    pub reason: &'static str,
}

/// What one datagram held.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ParseCounts {
    /// Non-empty lines (Etsy's `metrics_received`).
    pub lines: u64,
    /// Values refused (Etsy's `bad_lines_seen`, counted per value as Etsy does).
    pub bad: u64,
}

/// Parses one datagram (or one line of a TCP stream) into `samples`; bad values are counted
/// and the first few described in `bad_lines`. Good values of the same line and datagram
/// are kept. Bytes that are not UTF-8 are replaced (and then dropped by key sanitising).
pub fn parse<'a>(
    packet: &'a [u8],
    config: &StatsdConfig,
    samples: &mut Vec<Sample<'a>>,
    bad_lines: &mut Vec<BadLine>,
) -> ParseCounts {
    let mut counts = ParseCounts::default();
    let mut rest = packet;
    while !rest.is_empty() {
        let (raw, after) = match memchr::memchr(b'\n', rest) {
            Some(at) => (&rest[..at], &rest[at + 1..]),
            None => (rest, &[][..]),
        };
        rest = after;
        if raw.is_empty() {
            continue;
        }
        counts.lines += 1;
        if let Some(sample) = simple_line(raw, config) {
            samples.push(sample);
            continue;
        }
        match std::str::from_utf8(raw) {
            Ok(line) => counts.bad += parse_general(line, config, samples, bad_lines),
            Err(_) => {
                let line = String::from_utf8_lossy(raw).into_owned();
                let mut owned = Vec::new();
                counts.bad += parse_general(&line, config, &mut owned, bad_lines);
                samples.extend(owned.into_iter().map(into_owned));
            }
        }
    }
    counts
}

/// The one-pass reader of common lines alone (`None`: the line goes to the general rules).
/// Not part of the API: the `statsd_datagram` fuzz target checks it against
/// [`parse_line_general`].
#[doc(hidden)]
pub fn parse_line_fast<'a>(line: &'a [u8], config: &StatsdConfig) -> Option<Sample<'a>> {
    simple_line(line, config)
}

/// The general rules alone, for one line without its newline: its samples go to `samples`,
/// and the number of bad values is returned. Not part of the API (see [`parse_line_fast`]).
#[doc(hidden)]
pub fn parse_line_general<'a>(
    line: &'a str,
    config: &StatsdConfig,
    samples: &mut Vec<Sample<'a>>,
    bad_lines: &mut Vec<BadLine>,
) -> u64 {
    parse_general(line, config, samples, bad_lines)
}

fn into_owned<'b>(sample: Sample<'_>) -> Sample<'b> {
    Sample {
        key: Cow::Owned(sample.key.into_owned()),
        kind: match sample.kind {
            Kind::Counter { value } => Kind::Counter { value },
            Kind::Timer { value, count } => Kind::Timer { value, count },
            Kind::Gauge { value, signed } => Kind::Gauge { value, signed },
            Kind::Set { member } => Kind::Set {
                member: Cow::Owned(member.into_owned()),
            },
        },
    }
}

const MAX_REPORTED: usize = 16;

fn report(bad_lines: &mut Vec<BadLine>, line: &str, reason: &'static str) {
    if bad_lines.len() < MAX_REPORTED {
        bad_lines.push(BadLine {
            line: line.chars().take(200).collect(),
            reason,
        });
    }
}

/// Parses one line by Etsy's rules, whatever it holds; returns how many of its values were
/// bad.
fn parse_general<'a>(
    line: &'a str,
    config: &StatsdConfig,
    samples: &mut Vec<Sample<'a>>,
    bad_lines: &mut Vec<BadLine>,
) -> u64 {
    // Tags: everything after the first `|#` up to a second one.
    let (body, tags) = match find_tags(line) {
        Some(at) => {
            let rest = &line[at + 2..];
            let tags = find_tags(rest).map_or(rest, |end| &rest[..end]);
            (&line[..at], tags)
        }
        None => (line, ""),
    };
    let mut bits = body.split(':');
    let raw_key = bits.next().unwrap_or("");
    let key = make_key(raw_key, tags, config.key_name_sanitize);
    let mut values = bits.peekable();
    if values.peek().is_none() {
        // Etsy reads a bare key as the value "1" with no type: always a bad line.
        report(
            bad_lines,
            line,
            "no value and type (expected key:value|type)",
        );
        return 1;
    }
    let mut bad = 0;
    for value in values {
        match parse_value(value, config) {
            Ok(kind) => samples.push(Sample {
                key: key.clone(),
                kind,
            }),
            Err(reason) => {
                bad += 1;
                report(bad_lines, line, reason);
            }
        }
    }
    bad
}

/// The common line, read in one pass over its bytes: `key:value|type`, then optionally
/// `|@rate` and `|#tags`, with one value, a key that sanitising leaves alone, a plain
/// decimal value (any text for a set), one of the types `c`, `ms`, `g`, `s`, `h`, `d`, and
/// tags of clean bytes with at most one `:` each. `None` sends the line through the general
/// rules ([`parse_general`]), which give the same sample for every line this accepts
/// (`simple_lines_match_the_general_rules`); every line with an error goes there too, to be
/// reported. Everything it accepts is ASCII but a set's member, which it checks is UTF-8.
fn simple_line<'a>(line: &'a [u8], config: &StatsdConfig) -> Option<Sample<'a>> {
    let colon = memchr::memchr(b':', line)?;
    if colon == 0 || !all_clean(&line[..colon]) {
        return None;
    }
    let key = ascii(&line[..colon]);
    let rest = &line[colon + 1..];
    // The value ends at the first `|`; a `:` before it is a second value, a `#` is left to
    // the general rules' reading of tags.
    let bar = rest.iter().position(|&b| matches!(b, b'|' | b':' | b'#'))?;
    if rest[bar] != b'|' {
        return None;
    }
    let (number, after) = (&rest[..bar], &rest[bar + 1..]);
    let (kind, mut tail) = match after.iter().position(|&b| b == b'|') {
        // An empty field after the type is a bad sample rate to Etsy (`key:1|c|`).
        Some(at) if at + 1 == after.len() => return None,
        Some(at) => (&after[..at], &after[at + 1..]),
        None => (after, &[][..]),
    };
    let kind = match kind {
        b"c" => "c",
        b"ms" => "ms",
        b"g" => "g",
        b"s" => "s",
        b"h" => "h",
        b"d" => "d",
        _ => return None,
    };
    let mut sample_rate = 1.0;
    if let Some(rate) = tail.strip_prefix(b"@") {
        let (rate, tags) = match rate.iter().position(|&b| b == b'|') {
            Some(at) => (&rate[..at], &rate[at + 1..]),
            None => (rate, &[][..]),
        };
        // A plain decimal is read the same by Etsy's rate rules (no sign, digits and dots).
        sample_rate = plain_decimal(rate).filter(|&r| r > 0.0)?;
        if !tags.is_empty() && tags[0] != b'#' {
            return None;
        }
        tail = tags;
    }
    let key = match tail {
        [] => Cow::Borrowed(key),
        [b'#', tags @ ..] => Cow::Owned(simple_tags(key, tags)?),
        _ => return None,
    };
    let number = if number.is_ascii() {
        ascii(number)
    } else {
        std::str::from_utf8(number).ok()?
    };
    let kind = value_kind(kind, number, sample_rate, config, |text| {
        plain_decimal(text.as_bytes()).ok_or("")
    })
    .ok()?;
    Some(Sample { key, kind })
}

/// `key` with DogStatsD tags `k:v,flag,…` appended as Graphite tags (`key;k=v;flag`), when
/// every tag is non-empty, of clean key bytes, with at most one `:`; `None` otherwise.
fn simple_tags(key: &str, tags: &[u8]) -> Option<String> {
    let mut out = String::with_capacity(key.len() + tags.len() + 1);
    out.push_str(key);
    for tag in tags.split(|&b| b == b',') {
        let mut colons = 0;
        for &b in tag {
            if b == b':' {
                colons += 1;
            } else if !is_clean_key_byte(b) || b == b';' {
                return None;
            }
        }
        if tag.is_empty() || colons > 1 {
            return None;
        }
        out.push(';');
        out.extend(
            tag.iter()
                .map(|&b| if b == b':' { '=' } else { char::from(b) }),
        );
    }
    Some(out)
}

/// Bytes the caller checked to be ASCII (clean key bytes, or `is_ascii`) as text, without
/// a second UTF-8 validation: the common-line reader did that check on the way.
fn ascii(bytes: &[u8]) -> &str {
    debug_assert!(bytes.is_ascii());
    // SAFETY: every caller passes bytes it checked to be ASCII, and ASCII is UTF-8.
    unsafe { std::str::from_utf8_unchecked(bytes) }
}

/// Where `|#` starts in `text`, if anywhere.
fn find_tags(text: &str) -> Option<usize> {
    let bytes = text.as_bytes();
    memchr::memchr_iter(b'#', bytes)
        .find(|&at| at > 0 && bytes[at - 1] == b'|')
        .map(|at| at - 1)
}

fn parse_value<'a>(value: &'a str, config: &StatsdConfig) -> Result<Kind<'a>, &'static str> {
    let mut fields = value.split('|');
    let number = fields.next().unwrap_or("");
    let Some(kind) = fields.next() else {
        return Err("no type (expected value|type)");
    };
    let sample_rate = match fields.next() {
        None => 1.0,
        Some(rate) => parse_sample_rate(rate)?,
    };
    value_kind(kind.trim(), number, sample_rate, config, numeric)
}

/// What a value `number` of type `kind` makes, its number read by `read` where the type
/// has one (the general rules read any number Etsy reads; the common-line reader only plain
/// decimals).
fn value_kind<'a>(
    kind: &str,
    number: &'a str,
    sample_rate: f64,
    config: &StatsdConfig,
    read: impl Fn(&str) -> Result<f64, &'static str>,
) -> Result<Kind<'a>, &'static str> {
    let as_timer = config.histograms_as_timers && matches!(kind, "h" | "d");
    match kind {
        "s" => Ok(Kind::Set {
            member: Cow::Borrowed(if number.is_empty() { "0" } else { number }),
        }),
        "g" => Ok(Kind::Gauge {
            value: read(number)?,
            signed: number.starts_with(['+', '-']),
        }),
        "ms" => timer(read(number)?, sample_rate),
        _ if as_timer => timer(read(number)?, sample_rate),
        // Every other type, known or not, counts: Etsy's rule.
        _ => Ok(Kind::Counter {
            value: read(number)? / sample_rate,
        }),
    }
}

fn timer(value: f64, sample_rate: f64) -> Result<Kind<'static>, &'static str> {
    if value < 0.0 {
        return Err("negative timing");
    }
    Ok(Kind::Timer {
        value,
        count: 1.0 / sample_rate,
    })
}

/// Etsy's `isNumber(text)`, then the number: once.
fn numeric(text: &str) -> Result<f64, &'static str> {
    if text.is_empty() {
        return Err("value is not a finite number");
    }
    js_number(text).ok_or("value is not a finite number")
}

/// `@rate`: Etsy accepts what `isNumber` accepts and does not start with `-`, then reads the
/// leading digits and dots. Gantry also refuses a rate of 0 (Etsy would divide by it).
fn parse_sample_rate(text: &str) -> Result<f64, &'static str> {
    let digits = text
        .strip_prefix('@')
        .filter(|d| !d.is_empty() && is_number(d) && !d.starts_with('-'))
        .ok_or("bad sample rate (expected @0.1)")?;
    let leading: &str = &digits[..digits
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(digits.len())];
    // Etsy's regex needs at least one digit or dot; "@+0.5" passes isNumber but not the regex.
    let rate = js_number(leading).unwrap_or(0.0);
    if leading.is_empty() || rate <= 0.0 {
        return Err("bad sample rate (expected @0.1)");
    }
    Ok(rate)
}

/// The key as Etsy stores it: tags appended as `;k=v`, then sanitised.
fn make_key<'a>(raw: &'a str, tags: &str, sanitize: bool) -> Cow<'a, str> {
    let key: Cow<'a, str> = if tags.is_empty() {
        Cow::Borrowed(raw)
    } else {
        let mut key = String::with_capacity(raw.len() + tags.len() + 1);
        key.push_str(raw);
        for tag in tags.split(',') {
            key.push(';');
            // JavaScript's String.replace with a string replaces the first match only.
            let tag = tag.replacen(';', "_", 1).replacen(':', "=", 1);
            key.push_str(&tag);
        }
        Cow::Owned(key)
    };
    if !sanitize || key.bytes().all(is_clean_key_byte) {
        return key;
    }
    Cow::Owned(sanitize_key(&key))
}

pub(crate) fn is_clean_key_byte(b: u8) -> bool {
    CLEAN_KEY_BYTES[usize::from(b)]
}

/// Whether every byte of `key` is a clean key byte, without a branch per byte (the
/// compiler turns the range checks into vector instructions; a table would not be).
fn all_clean(key: &[u8]) -> bool {
    key.iter().fold(true, |all, &b| {
        let lower = b | 0x20;
        all & ((b.wrapping_sub(b'0') < 10)
            | (lower.wrapping_sub(b'a') < 26)
            | (b == b'_')
            | (b == b'-')
            | (b == b'.')
            | (b == b';')
            | (b == b'='))
    })
}

/// [`is_clean_key_byte`] as a table: the common-line reader asks it of every key byte.
static CLEAN_KEY_BYTES: [bool; 256] = {
    let mut table = [false; 256];
    let mut b = 0;
    while b < 256 {
        let byte = b as u8;
        table[b] = byte.is_ascii_alphanumeric() || matches!(byte, b'_' | b'-' | b'.' | b';' | b'=');
        b += 1;
    }
    table
};

/// Etsy's key sanitising: runs of whitespace to `_`, `/` to `-`, then anything outside
/// `[A-Za-z0-9_.;=-]` dropped.
pub(crate) fn sanitize_key(key: &str) -> String {
    let mut out = String::with_capacity(key.len());
    let mut in_space = false;
    for c in key.chars() {
        if c.is_whitespace() {
            if !in_space {
                out.push('_');
            }
            in_space = true;
            continue;
        }
        in_space = false;
        match c {
            '/' => out.push('-'),
            c if c.is_ascii() && is_clean_key_byte(c as u8) => out.push(c),
            _ => {}
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(packet: &str, expected: &[(&str, Kind<'_>)], bad: u64) {
        let config = StatsdConfig::default();
        let mut samples = Vec::new();
        let mut bad_lines = Vec::new();
        let counts = parse(packet.as_bytes(), &config, &mut samples, &mut bad_lines);
        let got: Vec<(&str, Kind<'_>)> = samples
            .iter()
            .map(|s| (s.key.as_ref(), s.kind.clone()))
            .collect();
        assert_eq!(got, expected, "{packet:?}");
        assert_eq!(counts.bad, bad, "{packet:?}: {bad_lines:?}");
    }

    fn counter(value: f64) -> Kind<'static> {
        Kind::Counter { value }
    }

    #[test]
    fn etsy_cases() {
        check("hits:1|c", &[("hits", counter(1.0))], 0);
        check("hits:2|c|@0.1", &[("hits", counter(20.0))], 0);
        check(
            "hits:1|c:2|c",
            &[("hits", counter(1.0)), ("hits", counter(2.0))],
            0,
        );
        check(
            "a:1|c\nb:2|c\n\n",
            &[("a", counter(1.0)), ("b", counter(2.0))],
            0,
        );
        check(
            "load:333|g",
            &[(
                "load",
                Kind::Gauge {
                    value: 333.0,
                    signed: false,
                },
            )],
            0,
        );
        check(
            "load:-10|g",
            &[(
                "load",
                Kind::Gauge {
                    value: -10.0,
                    signed: true,
                },
            )],
            0,
        );
        check(
            "load:+4|g",
            &[(
                "load",
                Kind::Gauge {
                    value: 4.0,
                    signed: true,
                },
            )],
            0,
        );
        check(
            "rt:320|ms|@0.5",
            &[(
                "rt",
                Kind::Timer {
                    value: 320.0,
                    count: 2.0,
                },
            )],
            0,
        );
        check(
            "users:alice|s",
            &[(
                "users",
                Kind::Set {
                    member: "alice".into(),
                },
            )],
            0,
        );
        check(
            "users:|s",
            &[("users", Kind::Set { member: "0".into() })],
            0,
        );
        // h and d are counters unless configured otherwise; unknown types count too.
        check("size:5|h", &[("size", counter(5.0))], 0);
        check("size:5|d", &[("size", counter(5.0))], 0);
        check("odd:5|zz", &[("odd", counter(5.0))], 0);
        // Tags become Graphite tags, in order.
        check(
            "req:1|c|#region:eu,canary,path:/a:b",
            &[("req;region=eu;canary;path=-ab", counter(1.0))],
            0,
        );
        check("req:1|c|@0.5|#a:b", &[("req;a=b", counter(2.0))], 0);
        // Sanitising.
        check("my key/with:1|c", &[("my_key-with", counter(1.0))], 0);
        check("a  \t b:1|c", &[("a_b", counter(1.0))], 0);
        check("héllo!:1|c", &[("hllo", counter(1.0))], 0);
        // Whitespace around the type and rate, as in \r\n-terminated packets.
        check("hits:1|c\r", &[("hits", counter(1.0))], 0);
        check("hits:1|c|@0.5\r", &[("hits", counter(2.0))], 0);
    }

    #[test]
    fn bad_values_are_counted_and_good_ones_kept() {
        check("nokey", &[], 1);
        check("hits|c", &[], 1);
        check("hits:1", &[], 1);
        check("hits:abc|c", &[], 1);
        check("hits:|c", &[], 1);
        check("hits:NaN|c", &[], 1);
        check("hits:inf|c", &[], 1);
        check("hits:Infinity|c", &[], 1);
        check("rt:-5|ms", &[], 1);
        check("hits:1|c|@x", &[], 1);
        check("hits:1|c|@-1", &[], 1);
        check("hits:1|c|@0", &[], 1);
        check("hits:1|c|0.5", &[], 1);
        check("load:x|g", &[], 1);
        check(
            "hits:1|c:oops|c:3|c",
            &[("hits", counter(1.0)), ("hits", counter(3.0))],
            1,
        );
        check("bad\ngood:1|c\nworse:|ms", &[("good", counter(1.0))], 2);
    }

    #[test]
    fn non_utf8_bytes_are_dropped_from_keys() {
        let config = StatsdConfig::default();
        let mut samples = Vec::new();
        let mut bad = Vec::new();
        let counts = parse(b"ke\xffy:1|c\nok:2|c", &config, &mut samples, &mut bad);
        assert_eq!(counts, ParseCounts { lines: 2, bad: 0 });
        assert_eq!(samples[0].key, "key");
        assert_eq!(samples[1].key, "ok");
    }

    #[test]
    fn histograms_as_timers() {
        let config = StatsdConfig {
            histograms_as_timers: true,
            ..StatsdConfig::default()
        };
        let mut samples = Vec::new();
        parse(b"size:5|h|@0.5", &config, &mut samples, &mut Vec::new());
        assert_eq!(
            samples[0].kind,
            Kind::Timer {
                value: 5.0,
                count: 2.0
            }
        );
    }

    /// The one-pass reader of common lines against the general rules: every line it takes
    /// must come out as the general rules read it, and it must leave bad lines alone.
    #[test]
    fn simple_lines_match_the_general_rules() {
        let keys = ["a", "svc.ep_01-x", "k;t=v", "a b", "é", "a/b", "", "a#b"];
        let numbers = [
            "1",
            "-1",
            "+1",
            "0",
            "-0",
            "1.5",
            ".5",
            "5.",
            "1e3",
            "0x10",
            " 1",
            "",
            "abc",
            "NaN",
            "1.2.3",
            "123456789012345678",
            "3|x",
            "-2.25",
            "ü",
            "a#b",
        ];
        let kinds = ["c", "ms", "g", "s", "h", "d", "x", "", " c", "C"];
        let rates = [
            "",
            "|@0.1",
            "|@1",
            "|@0",
            "|@-1",
            "|0.5",
            "|@",
            "|@abc",
            "|@0.5|junk",
            "|#t:v",
            "|@0.5|#t:v",
            "|@+0.5",
            "|@1e-1",
            "|#a:b,flag,c-d:e.f",
            "|#a:b:c",
            "|#a;b",
            "|#",
            "|#a,,b",
            "|#a=b",
            "|#a:b|#c:d",
            "|#a:b|x",
            "|#é:v",
            "|#a b:v",
            "|@0.5|x|#a:b",
            "|",
            "|@0.5|",
            "|#a:b|",
        ];
        let mut checked = 0;
        let mut simple = 0;
        for histograms_as_timers in [false, true] {
            let config = StatsdConfig {
                histograms_as_timers,
                ..StatsdConfig::default()
            };
            for key in keys {
                for number in numbers {
                    for kind in kinds {
                        for rate in rates {
                            for extra in ["", ":2|c"] {
                                let line = format!("{key}:{number}|{kind}{rate}{extra}");
                                let general = {
                                    let mut samples = Vec::new();
                                    let mut bad = Vec::new();
                                    let n = parse_general(&line, &config, &mut samples, &mut bad);
                                    (samples, n)
                                };
                                if let Some(sample) = simple_line(line.as_bytes(), &config) {
                                    simple += 1;
                                    assert_eq!(general, (vec![sample], 0), "{line:?}");
                                }
                                checked += 1;
                            }
                        }
                    }
                }
            }
        }
        assert!(simple > 1000 && simple < checked, "{simple} of {checked}");
    }

    #[test]
    fn clean_key_bytes_are_ascii_and_read_alike_by_table_and_ranges() {
        for b in 0..=255u8 {
            assert_eq!(all_clean(&[b]), is_clean_key_byte(b), "byte {b:#x}");
            assert!(!is_clean_key_byte(b) || b.is_ascii(), "byte {b:#x}");
        }
        assert!(all_clean(b"app.svc01-x_y;k=v"));
        assert!(!all_clean(b"app svc"));
    }

    #[test]
    fn a_huge_datagram_is_fine() {
        let packet = "k:1|c\n".repeat(64 * 1024 / 6);
        let config = StatsdConfig::default();
        let mut samples = Vec::new();
        let counts = parse(packet.as_bytes(), &config, &mut samples, &mut Vec::new());
        assert_eq!(counts.lines as usize, samples.len());
    }
}
