//! graphite-web's time offsets (`5min`, `-1d`, `+2h30min`): units by prefix, `s`, `min`
//! (also `m`), `h`, `d`, `w`, `mon` (30 days) and `y` (365 days), up to
//! [`MAX_OFFSET_SECONDS`] either way.

/// The largest offset accepted, in seconds (1,000 years): intervals and shifts are added
/// to and multiplied with times, and this keeps every such sum far from `i64`'s limits.
pub const MAX_OFFSET_SECONDS: i64 = 1000 * 365 * 86_400;

/// Seconds in a time offset, signed, or what is wrong with it.
pub fn parse_time_offset(offset: &str) -> Result<i64, String> {
    let s = offset.trim();
    if s.is_empty() {
        return Ok(0);
    }
    let (sign, mut rest) = match s.as_bytes()[0] {
        b'+' => (1, &s[1..]),
        b'-' => (-1, &s[1..]),
        b'0'..=b'9' => (1, s),
        _ => return Err(format!("'{offset}' does not start with a number or a sign")),
    };
    if rest.is_empty() {
        return Err(format!("'{offset}' has no number"));
    }
    let mut total: i64 = 0;
    while !rest.is_empty() {
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return Err(format!("'{offset}': expected a number before '{rest}'"));
        }
        let num: i64 = rest[..digits]
            .parse()
            .map_err(|_| format!("'{offset}': the number is too large"))?;
        rest = &rest[digits..];
        let letters = rest.bytes().take_while(u8::is_ascii_alphabetic).count();
        let unit = &rest[..letters];
        rest = &rest[letters..];
        let seconds = unit_seconds(unit).ok_or_else(|| {
            format!(
                "'{offset}': unknown unit '{unit}' (use s, min, h, d, w, mon or y, e.g. '5min')"
            )
        })?;
        total = num
            .checked_mul(seconds)
            .and_then(|x| total.checked_add(x))
            .filter(|&t| t <= MAX_OFFSET_SECONDS)
            .ok_or_else(|| format!("'{offset}' is too large (at most 1000 years)"))?;
    }
    Ok(sign * total)
}

fn unit_seconds(unit: &str) -> Option<i64> {
    Some(if unit.starts_with('s') {
        1
    } else if unit.starts_with("min") || unit == "m" {
        60
    } else if unit.starts_with('h') {
        3600
    } else if unit.starts_with('d') {
        86_400
    } else if unit.starts_with('w') {
        7 * 86_400
    } else if unit.starts_with("mon") {
        30 * 86_400
    } else if unit.starts_with('y') {
        365 * 86_400
    } else {
        return None;
    })
}

#[cfg(test)]
mod tests {
    use super::{parse_time_offset, MAX_OFFSET_SECONDS};

    #[test]
    fn offsets() {
        let ok = [
            ("5min", 300),
            ("5m", 300),
            ("1h", 3600),
            ("-1d", -86_400),
            ("+2h30min", 9000),
            ("1w", 604_800),
            ("1mon", 2_592_000),
            ("1y", 31_536_000),
            ("10s", 10),
            ("3seconds", 3),
            ("2hours", 7200),
        ];
        for (s, want) in ok {
            assert_eq!(parse_time_offset(s), Ok(want), "{s}");
        }
        assert_eq!(parse_time_offset("-1000y"), Ok(-MAX_OFFSET_SECONDS));
        for bad in [
            "min",
            "5x",
            "-",
            "1h x",
            "abc",
            "1001y",
            "-999y1y1s",
            "99999999999999999999s",
        ] {
            assert!(parse_time_offset(bad).is_err(), "{bad}");
        }
    }
}
