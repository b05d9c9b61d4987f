//! The pure part of reading what a request carries: header values (`Range`,
//! `Authorization`, `Cookie`, `Origin`) and the dashboard's sign-in and CSRF fields.
//!
//! These functions see text only, never a request: the server takes the header's value
//! out (refusing one that is not visible ASCII) and turns the answers into responses. Kept
//! here, apart from the server, so they are tested exhaustively and fuzzed on their own.

use base64::Engine as _;

use crate::Invalid;

/// The start offset of a `Range` value of the form `bytes=N-`, the only form a resuming
/// download needs; `None` for anything else (an end, several ranges, another unit, a start
/// that is not decimal digits: `u64`'s parser would also take a `+` sign).
pub fn parse_range(value: &str) -> Option<u64> {
    let spec = value.trim().strip_prefix("bytes=")?;
    let (start, end) = spec.split_once('-')?;
    let start = start.trim();
    if !end.trim().is_empty() || start.is_empty() || !start.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    start.parse().ok()
}

/// The token an API request's `Authorization` value carries: `Bearer <token>`, or basic
/// auth whose password is the token (any user name). The error says what was wrong, for
/// a 401 answer.
pub fn bearer_secret(value: &str) -> Result<String, Invalid> {
    if let Some(token) = value
        .strip_prefix("Bearer ")
        .or_else(|| value.strip_prefix("bearer "))
    {
        return Ok(token.trim().to_string());
    }
    if let Some(encoded) = value
        .strip_prefix("Basic ")
        .or_else(|| value.strip_prefix("basic "))
    {
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(encoded.trim())
            .ok()
            .and_then(|bytes| String::from_utf8(bytes).ok())
            .ok_or_else(|| Invalid::new("the basic auth credentials are not valid base64"))?;
        let password = decoded.split_once(':').map_or("", |(_, p)| p);
        if password.is_empty() {
            return Err(Invalid::new(
                "basic auth needs the token as password (any user name)",
            ));
        }
        return Ok(password.to_string());
    }
    Err(Invalid::new(
        "the Authorization header must be `Bearer <token>` (or basic auth with the token as password)",
    ))
}

/// The token of a flag SDK's `Authorization` value: Unleash SDKs send the bare token,
/// others `Bearer <token>`. Empty is an error.
pub fn sdk_secret(value: &str) -> Result<String, Invalid> {
    let value = value.trim();
    let secret = value
        .strip_prefix("Bearer ")
        .or_else(|| value.strip_prefix("bearer "))
        .unwrap_or(value)
        .trim();
    if secret.is_empty() {
        return Err(Invalid::new("the Authorization header is empty"));
    }
    Ok(secret.to_string())
}

/// The value of the cookie called `name` among the `Cookie` values of a request (a
/// request may send the header more than once), the first one when it is repeated.
/// Pairs are split at `;`, then at the first `=`; names compare exactly, values are
/// trimmed.
pub fn cookie_value<'a>(values: impl IntoIterator<Item = &'a str>, name: &str) -> Option<&'a str> {
    values
        .into_iter()
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.trim())
}

/// Where a sign-in sends the person back: `next` when it is a path on this server, else
/// `/`. Refused: anything not starting with one `/` (a scheme, `//host`), a backslash
/// (browsers read `/\host` as `//host`), spaces, tabs, line breaks and other control bytes
/// (browsers drop tabs and line breaks, so `/\t/host` would become `//host`), and anything
/// not ASCII (a `Location` header holds visible ASCII only; the server's own links to
/// `next` are percent-encoded).
pub fn safe_next(next: Option<&str>) -> String {
    match next {
        Some(n)
            if n.starts_with('/')
                && !n.starts_with("//")
                && !n.contains('\\')
                && n.bytes().all(|b| b.is_ascii_graphic()) =>
        {
            n.to_string()
        }
        _ => "/".to_string(),
    }
}

/// Whether a POST comes from a page of this server: its `Origin` is `http(s)://` and this
/// `Host` (case aside), or, without an `Origin`, `Sec-Fetch-Site` is `same-origin`. With
/// neither, no.
pub fn same_origin(origin: Option<&str>, host: Option<&str>, sec_fetch_site: Option<&str>) -> bool {
    if let Some(origin) = origin {
        let authority = origin
            .strip_prefix("https://")
            .or_else(|| origin.strip_prefix("http://"));
        return matches!((authority, host), (Some(a), Some(h)) if a.eq_ignore_ascii_case(h));
    }
    sec_fetch_site == Some("same-origin")
}

/// Whether the CSRF value a form or header sent is the session's secret. The comparison
/// takes the same time wherever the first difference is (only the lengths may differ
/// faster), so the secret cannot be guessed byte by byte from response times.
pub fn csrf_matches(sent: Option<&str>, secret: &str) -> bool {
    sent.is_some_and(|s| constant_time_eq(s.as_bytes(), secret.as_bytes()))
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The digest a sign-in looks the token up by, from the form's `token` field as pasted:
/// the whitespace around it (a copied line break) is not part of the token.
pub fn sign_in_digest(token_field: &str) -> String {
    crate::token::digest(token_field.trim())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges() {
        assert_eq!(parse_range("bytes=100-"), Some(100));
        assert_eq!(parse_range("bytes=0-"), Some(0));
        assert_eq!(parse_range(" bytes= 7 - "), Some(7));
        assert_eq!(parse_range("bytes=0-10"), None);
        assert_eq!(parse_range("items=1-"), None);
        assert_eq!(parse_range("bytes=-5"), None);
        assert_eq!(parse_range("bytes=+5-"), None);
        assert_eq!(parse_range("bytes=-"), None);
        assert_eq!(parse_range("bytes=1-,5-"), None);
        assert_eq!(parse_range("bytes=99999999999999999999-"), None);
    }

    #[test]
    fn bearer_and_basic() {
        assert_eq!(bearer_secret("Bearer abc ").as_deref(), Ok("abc"));
        assert_eq!(bearer_secret("bearer abc").as_deref(), Ok("abc"));
        // "user:gantry_x" and ":gantry_x"
        assert_eq!(
            bearer_secret("Basic dXNlcjpnYW50cnlfeA==").as_deref(),
            Ok("gantry_x")
        );
        assert_eq!(
            bearer_secret("basic OmdhbnRyeV94").as_deref(),
            Ok("gantry_x")
        );
        for (value, message) in [
            ("Basic !!!", "not valid base64"),
            // "user:" and "user"
            ("Basic dXNlcjo=", "token as password"),
            ("Basic dXNlcg==", "token as password"),
            ("gantry_x", "must be `Bearer <token>`"),
            ("Token abc", "must be `Bearer <token>`"),
        ] {
            let e = bearer_secret(value).unwrap_err();
            assert!(e.0.contains(message), "{value}: {e}");
        }
    }

    #[test]
    fn sdk_tokens_may_be_bare() {
        assert_eq!(sdk_secret(" client:x ").as_deref(), Ok("client:x"));
        assert_eq!(sdk_secret("Bearer  client:x").as_deref(), Ok("client:x"));
        assert!(sdk_secret("  ").is_err());
        // Trimmed first, "Bearer " is the bare word, which no token is.
        assert_eq!(sdk_secret("Bearer ").as_deref(), Ok("Bearer"));
    }

    #[test]
    fn cookies() {
        assert_eq!(
            cookie_value(["a=1; gantry=abc; b=2"], "gantry"),
            Some("abc")
        );
        assert_eq!(
            cookie_value(["a=1; gantry=abc; b=2"], "__Host-gantry"),
            None
        );
        assert_eq!(cookie_value(["a=1", " gantry = x=y ;"], "gantry"), None);
        assert_eq!(
            cookie_value(["a=1", "gantry= x=y ;"], "gantry"),
            Some("x=y")
        );
        assert_eq!(cookie_value(["gantry=1; gantry=2"], "gantry"), Some("1"));
        assert_eq!(cookie_value([], "gantry"), None);
    }

    #[test]
    fn next_stays_on_this_server() {
        assert_eq!(
            safe_next(Some("/ui/hosts?environment=prod")),
            "/ui/hosts?environment=prod"
        );
        for bad in [
            "//evil.example/",
            "https://evil.example/",
            "/\\evil.example",
            "/\t/evil.example",
            "/\n/evil.example",
            "/caf\u{e9}",
            "/\u{7f}",
            "",
            "ui",
        ] {
            assert_eq!(safe_next(Some(bad)), "/", "{bad:?}");
        }
        assert_eq!(safe_next(None), "/");
        assert_eq!(
            safe_next(Some("/ui/services/caf%C3%A9")),
            "/ui/services/caf%C3%A9"
        );
    }

    #[test]
    fn origins() {
        let host = Some("127.0.0.1:7070");
        assert!(!same_origin(None, host, None));
        assert!(same_origin(Some("http://127.0.0.1:7070"), host, None));
        assert!(!same_origin(Some("HTTPS://127.0.0.1:7070"), host, None));
        assert!(same_origin(
            Some("https://GANTRY.example"),
            Some("gantry.example"),
            None
        ));
        assert!(!same_origin(Some("http://evil.example"), host, None));
        assert!(!same_origin(Some("null"), host, Some("same-origin")));
        assert!(!same_origin(Some("http://127.0.0.1:7070"), None, None));
        assert!(same_origin(None, host, Some("same-origin")));
        assert!(!same_origin(None, host, Some("cross-site")));
    }

    #[test]
    fn csrf() {
        assert!(csrf_matches(Some("abc"), "abc"));
        assert!(!csrf_matches(Some("abd"), "abc"));
        assert!(!csrf_matches(Some("ab"), "abc"));
        assert!(!csrf_matches(None, "abc"));
        assert!(!csrf_matches(Some(""), "abc"));
    }

    #[test]
    fn sign_in_trims_the_pasted_token() {
        assert_eq!(sign_in_digest(" abc\n"), crate::token::digest("abc"));
    }
}
