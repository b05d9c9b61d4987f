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
        match std::str::from_utf8(raw) {
            Ok(line) => counts.bad += parse_line(line, config, samples, bad_lines),
            Err(_) => {
                let line = String::from_utf8_lossy(raw).into_owned();
                let mut owned = Vec::new();
                counts.bad += parse_line(&line, config, &mut owned, bad_lines);
                samples.extend(owned.into_iter().map(into_owned));
            }
        }
    }
    counts
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

/// Parses one line; returns how many of its values were bad.
fn parse_line<'a>(
    line: &'a str,
    config: &StatsdConfig,
    samples: &mut Vec<Sample<'a>>,
    bad_lines: &mut Vec<BadLine>,
) -> u64 {
    if let Some(sample) = simple_line(line, config) {
        samples.push(sample);
        return 0;
    }
    parse_general(line, config, samples, bad_lines)
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

/// The common line, `key:value|type` or `key:value|type|@rate` with one value, no tags, a
/// key that sanitising leaves alone and a plain decimal value, read in one pass (the type
/// then means what it means to the general rules: [`value_kind`]). `None` sends the line
/// through the general rules (`parse_line`), which give the same sample for every line this
/// accepts (`simple_lines_match_the_general_rules`); every line with an error goes there
/// too, to be reported.
fn simple_line<'a>(line: &'a str, config: &StatsdConfig) -> Option<Sample<'a>> {
    let bytes = line.as_bytes();
    let colon = bytes.iter().position(|&b| !is_clean_key_byte(b))?;
    if colon == 0 || bytes[colon] != b':' {
        return None;
    }
    let rest = &line[colon + 1..];
    let bar = memchr::memchr(b'|', rest.as_bytes())?;
    let (number, after) = (&rest[..bar], &rest[bar + 1..]);
    // Nothing the general rules would read differently: a second value, tags, a field
    // after the rate.
    if memchr::memchr3(b':', b'#', b'|', number.as_bytes()).is_some() {
        return None;
    }
    let (kind, rate) = match after.split_once('|') {
        None => (after, None),
        Some((kind, rate)) => (kind, Some(rate)),
    };
    let sample_rate = match rate {
        None => 1.0,
        Some(rate) if memchr::memchr3(b':', b'#', b'|', rate.as_bytes()).is_some() => {
            return None;
        }
        Some(rate) => parse_sample_rate(rate).ok()?,
    };
    // A value that is not a plain decimal, or any error, goes to the general rules.
    let kind = value_kind(kind.trim(), number, sample_rate, config, |text| {
        plain_decimal(text).ok_or("")
    })
    .ok()?;
    Some(Sample {
        key: Cow::Borrowed(&line[..colon]),
        kind,
    })
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
                                if let Some(sample) = simple_line(&line, &config) {
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
    fn a_huge_datagram_is_fine() {
        let packet = "k:1|c\n".repeat(64 * 1024 / 6);
        let config = StatsdConfig::default();
        let mut samples = Vec::new();
        let counts = parse(packet.as_bytes(), &config, &mut samples, &mut Vec::new());
        assert_eq!(counts.lines as usize, samples.len());
    }
}
