//! Names of services, environments and tokens: short, printable, safe in a URL path, a
//! Graphite tag and a file name.

use crate::Invalid;

/// The longest name accepted for a service, an environment or a token.
pub const MAX_NAME_LEN: usize = 64;

/// Checks a name: 1 to 64 characters of ASCII letters, digits, `.`, `_` and `-`, starting
/// with a letter or digit. `what` names the field in the error ("service", "environment").
pub fn validate_name(what: &str, name: &str) -> Result<(), Invalid> {
    if name.is_empty() {
        return Err(Invalid::new(format!("{what} must not be empty")));
    }
    if name.len() > MAX_NAME_LEN {
        return Err(Invalid::new(format!(
            "{what} '{}…' is {} characters long; the limit is {MAX_NAME_LEN}",
            &name[..name.char_indices().nth(16).map_or(name.len(), |(i, _)| i)],
            name.chars().count()
        )));
    }
    let first_ok = name
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphanumeric());
    let rest_ok = name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
    if !first_ok || !rest_ok {
        return Err(Invalid::new(format!(
            "{what} '{name}' is not a valid name: use letters, digits, '.', '_' and '-', starting with a letter or digit"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        let ok = ["shop", "web-2", "a", "Billing_API.v2", &"x".repeat(64)];
        for name in ok {
            assert_eq!(validate_name("service", name), Ok(()), "{name}");
        }
        let bad = ["", "-x", ".x", "a b", "a/b", "å", &"x".repeat(65), "a;b=c"];
        for name in bad {
            let err = validate_name("service", name).unwrap_err();
            assert!(err.0.starts_with("service"), "{name}: {err}");
        }
    }
}
