//! Numbers as JavaScript's `Number(string)` reads them, because Etsy's statsd decides what
//! a valid value is that way (`" 12 "` is 12, `"0x1F"` is 31, `"1e3"` is 1000, `"12abc"`
//! is not a number).

/// The value JavaScript's `Number(text)` gives, or `None` where it gives `NaN`. Infinite
/// results are `None` too: Gantry refuses them (see the crate docs).
pub fn js_number(text: &str) -> Option<f64> {
    if let Some(value) = plain_decimal(text.as_bytes()) {
        return Some(value);
    }
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

/// The common case without the general rules: `[-]digits[.digits]` with at most 15
/// digits, which is exact in an `f64` and reads the same in JavaScript and Rust. `None`
/// means "use the general rules", not "not a number".
pub(crate) fn plain_decimal(bytes: &[u8]) -> Option<f64> {
    let (negative, digits) = match bytes.split_first()? {
        (b'-', rest) => (true, rest),
        _ => (false, bytes),
    };
    if digits.is_empty() || digits.len() > 16 {
        return None;
    }
    let mut mantissa: u64 = 0;
    let mut count = 0;
    let mut point = None;
    for (i, &b) in digits.iter().enumerate() {
        match b {
            b'0'..=b'9' => {
                mantissa = mantissa * 10 + u64::from(b - b'0');
                count += 1;
            }
            b'.' if point.is_none() => point = Some(i),
            _ => return None,
        }
    }
    if count == 0 || count > 15 {
        return None;
    }
    let decimals = point.map_or(0, |at| digits.len() - at - 1);
    // 10^decimals is exact for decimals <= 15, and one correctly rounded division of two
    // exact values is what a correct parser returns for the decimal text.
    let value = mantissa as f64 / POWERS_OF_TEN[decimals];
    Some(if negative { -value } else { value })
}

const POWERS_OF_TEN: [f64; 16] = [
    1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15,
];

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

    #[test]
    fn the_fast_path_reads_what_the_general_rules_read() {
        let mut texts: Vec<String> = [
            "0",
            "-0",
            "5.",
            ".5",
            "007",
            "-12.250",
            "123456789012345",
            "0.000000000000001",
            "999999999999999",
            "4.35",
            "0.1",
            "0.3",
            "-.5",
            ".",
            "-",
            "1.2.3",
        ]
        .iter()
        .map(|t| t.to_string())
        .collect();
        let mut state = 0x2545_f491_4f6c_dd1du64;
        for _ in 0..20_000 {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            let digits = (state % 1_000_000_000_000_000) as f64;
            let scale = 10f64.powi((state >> 60) as i32);
            texts.push(format!("{}", digits / scale));
            texts.push(format!("-{:.3}", digits / 1e9));
        }
        for text in &texts {
            let general: Option<f64> = text.parse::<f64>().ok();
            if let Some(fast) = plain_decimal(text.as_bytes()) {
                assert_eq!(Some(fast.to_bits()), general.map(f64::to_bits), "{text}");
            }
            // These texts read the same in JavaScript and Rust.
            assert_eq!(
                js_number(text).map(f64::to_bits),
                general.map(f64::to_bits),
                "{text}"
            );
        }
    }
}
