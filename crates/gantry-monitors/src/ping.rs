//! What a heartbeat ping says, read from its URL and body: `/ping/{key}` (the job
//! finished well), `/ping/{key}/start`, `/ping/{key}/fail` and `/ping/{key}/{0-255}` (an
//! exit code), with the end of the job's log as the body. The server routes the request
//! and stores the ping; the reading is here.

use std::borrow::Cow;

use crate::state::PingKind;

/// Most bytes of a ping's body kept as the run's log; a longer body is refused.
pub const MAX_PING_BODY: usize = 10 * 1024;

/// Whether `key` can be a ping key: 64 hexadecimal digits (a 256-bit key as it is shown).
/// Anything else is answered like an unknown key, without a look-up.
pub fn is_ping_key(key: &str) -> bool {
    key.len() == 64 && key.bytes().all(|b| b.is_ascii_hexdigit())
}

impl PingKind {
    /// The kind named by the path segment after the key: `start`, `fail`, or an exit
    /// code from 0 to 255 in decimal digits (leading zeros allowed, no sign). `None` for
    /// anything else, which the server answers like an unknown key.
    pub fn from_path_segment(segment: &str) -> Option<PingKind> {
        match segment {
            "start" => Some(PingKind::Start),
            "fail" => Some(PingKind::Fail),
            code => match code.parse::<u16>() {
                Ok(c) if c <= 255 && !code.starts_with('+') => Some(PingKind::Exit(i32::from(c))),
                _ => None,
            },
        }
    }

    /// How the store keeps the kind: its name (`success`, `start`, `fail`, `exit`) and the
    /// exit code of an `exit`.
    pub fn to_stored(self) -> (&'static str, Option<i32>) {
        match self {
            PingKind::Success => ("success", None),
            PingKind::Start => ("start", None),
            PingKind::Fail => ("fail", None),
            PingKind::Exit(code) => ("exit", Some(code)),
        }
    }

    /// The kind of a stored ping, the inverse of [`PingKind::to_stored`]. A name it does
    /// not know, or `exit` without a code, reads as a success, as a plain ping does.
    pub fn from_stored(kind: &str, exit_code: Option<i32>) -> PingKind {
        match (kind, exit_code) {
            ("start", _) => PingKind::Start,
            ("fail", _) => PingKind::Fail,
            ("exit", Some(code)) => PingKind::Exit(code),
            _ => PingKind::Success,
        }
    }
}

/// The run's log a ping's body carries, as text (bytes that are not UTF-8 are replaced),
/// or the body's length when it is longer than [`MAX_PING_BODY`].
pub fn ping_log(body: &[u8]) -> Result<Cow<'_, str>, usize> {
    if body.len() > MAX_PING_BODY {
        return Err(body.len());
    }
    Ok(String::from_utf8_lossy(body))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys() {
        assert!(is_ping_key(
            &"aB3".repeat(21).chars().chain(['0']).collect::<String>()
        ));
        assert!(!is_ping_key(&"a".repeat(63)));
        assert!(!is_ping_key(&"g".repeat(64)));
        assert!(!is_ping_key(""));
    }

    #[test]
    fn path_segments() {
        let cases = [
            ("start", Some(PingKind::Start)),
            ("fail", Some(PingKind::Fail)),
            ("0", Some(PingKind::Exit(0))),
            ("255", Some(PingKind::Exit(255))),
            ("007", Some(PingKind::Exit(7))),
            ("256", None),
            ("+1", None),
            ("-1", None),
            ("", None),
            ("Start", None),
            ("1.0", None),
            ("99999999", None),
        ];
        for (segment, kind) in cases {
            assert_eq!(PingKind::from_path_segment(segment), kind, "{segment:?}");
        }
    }

    #[test]
    fn stored_kinds_read_back() {
        for kind in [
            PingKind::Success,
            PingKind::Start,
            PingKind::Fail,
            PingKind::Exit(0),
            PingKind::Exit(3),
        ] {
            let (name, code) = kind.to_stored();
            assert_eq!(PingKind::from_stored(name, code), kind);
        }
        assert_eq!(PingKind::from_stored("exit", None), PingKind::Success);
        assert_eq!(PingKind::from_stored("other", Some(1)), PingKind::Success);
    }

    #[test]
    fn bodies() {
        assert_eq!(ping_log(b"done\n").as_deref(), Ok("done\n"));
        assert_eq!(ping_log(b"\xffx").as_deref(), Ok("\u{fffd}x"));
        assert_eq!(
            ping_log(&[b'x'; MAX_PING_BODY]).map(|l| l.len()),
            Ok(MAX_PING_BODY)
        );
        assert_eq!(ping_log(&[b'x'; MAX_PING_BODY + 1]), Err(MAX_PING_BODY + 1));
    }
}
