//! Numbers as JavaScript's `Number(string)` reads them, because Etsy's statsd decides what
//! a valid value is that way (`" 12 "` is 12, `"0x1F"` is 31, `"1e3"` is 1000, `"12abc"`
//! is not a number).

/// The value JavaScript's `Number(text)` gives, or `None` where it gives `NaN`. Infinite
/// results are `None` too: Gantry refuses them (see the crate docs).
pub fn js_number(text: &str) -> Option<f64> {
    let t = text.trim_matches(is_js_whitespace);
    if t.is_empty() {
        return Some(0.0);
    }
    let radix = |prefix: &str, radix: u32| {
        t.get(..2)
            .filter(|p| p.eq_ignore_ascii_case(prefix))
            .map(|_| &t[2..])
            .filter(|digits| !digits.is_empty())
            .map(|digits| u64::from_str_radix(digits, radix).ok().map(|v| v as f64))
    };
    if let Some(v) = radix("0x", 16)
        .or_else(|| radix("0b", 2))
        .or_else(|| radix("0o", 8))
    {
        return v;
    }
    // Decimal: optional sign, digits with at most one '.', optional exponent. Rust's parser
    // also takes "inf", "nan" and "infinity", which JavaScript does not.
    let body = t.strip_prefix(['+', '-']).unwrap_or(t);
    let first = body.chars().next()?;
    if !(first.is_ascii_digit() || first == '.') {
        return None;
    }
    let value: f64 = t.parse().ok()?;
    value.is_finite().then_some(value)
}

/// JavaScript's `isNumber` as Etsy writes it: a non-empty string that is not `NaN`.
pub fn is_number(text: &str) -> bool {
    !text.is_empty() && js_number(text).is_some()
}

fn is_js_whitespace(c: char) -> bool {
    c.is_whitespace() || c == '\u{feff}'
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_like_javascript() {
        let cases: &[(&str, Option<f64>)] = &[
            ("12", Some(12.0)),
            (" 12 ", Some(12.0)),
            ("+3", Some(3.0)),
            ("-3.5", Some(-3.5)),
            (".5", Some(0.5)),
            ("5.", Some(5.0)),
            ("1e3", Some(1000.0)),
            ("0x1F", Some(31.0)),
            ("0b101", Some(5.0)),
            ("0o17", Some(15.0)),
            ("   ", Some(0.0)),
            ("12abc", None),
            ("1,000", None),
            ("NaN", None),
            ("nan", None),
            ("inf", None),
            ("Infinity", None),
            ("-0x10", None),
            ("0x", None),
            ("e5", None),
            ("--1", None),
        ];
        for (text, expected) in cases {
            assert_eq!(js_number(text), *expected, "{text:?}");
        }
        assert!(!is_number(""));
        assert!(is_number(" "));
    }
}
