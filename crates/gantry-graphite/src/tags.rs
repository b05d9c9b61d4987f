//! Tagged series names (`name;k=v;k2=v2`) as carbon validates and normalises them: tags
//! sorted by key, so one series has one name however a client orders its tags.

/// Why a tagged name is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TagError {
    #[error("the series name before ';' is empty")]
    EmptyName,
    #[error("tag '{0}' is not of the form key=value")]
    NotKeyValue(String),
    #[error("tag key '{0}' has a character carbon forbids (';', '!', '^', '=')")]
    BadKey(String),
    #[error("tag value '{0}' is empty, has a ';', or starts with '~'")]
    BadValue(String),
}

/// Validates a path and, if tagged, returns it with tags sorted by key (later duplicates of
/// a key win, as in carbon). Untagged paths come back unchanged (and uncopied).
pub fn normalise(path: &str) -> Result<std::borrow::Cow<'_, str>, TagError> {
    let Some((name, tags)) = path.split_once(';') else {
        return Ok(std::borrow::Cow::Borrowed(path));
    };
    if name.is_empty() {
        return Err(TagError::EmptyName);
    }
    let mut pairs: Vec<(&str, &str)> = Vec::new();
    for tag in tags.split(';') {
        let (key, value) = tag
            .split_once('=')
            .ok_or_else(|| TagError::NotKeyValue(tag.to_string()))?;
        if key.is_empty() || key.contains(['!', '^']) {
            return Err(TagError::BadKey(key.to_string()));
        }
        if value.is_empty() || value.starts_with('~') {
            return Err(TagError::BadValue(value.to_string()));
        }
        match pairs.iter_mut().find(|(k, _)| *k == key) {
            Some(pair) => pair.1 = value,
            None => pairs.push((key, value)),
        }
    }
    pairs.sort_by(|a, b| a.0.cmp(b.0));
    let mut out = String::with_capacity(path.len());
    out.push_str(name);
    for (key, value) in pairs {
        out.push(';');
        out.push_str(key);
        out.push('=');
        out.push_str(value);
    }
    Ok(std::borrow::Cow::Owned(out))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalises_like_carbon() {
        assert_eq!(normalise("a.b").unwrap(), "a.b");
        assert_eq!(
            normalise("cpu;host=web1;dc=eu").unwrap(),
            "cpu;dc=eu;host=web1"
        );
        assert_eq!(normalise("cpu;a=1;a=2").unwrap(), "cpu;a=2");
        assert_eq!(normalise(";a=1"), Err(TagError::EmptyName));
        assert!(matches!(
            normalise("cpu;flag"),
            Err(TagError::NotKeyValue(_))
        ));
        assert!(matches!(normalise("cpu;=x"), Err(TagError::BadKey(_))));
        assert!(matches!(normalise("cpu;a!=x"), Err(TagError::BadKey(_))));
        assert!(matches!(normalise("cpu;a="), Err(TagError::BadValue(_))));
        assert!(matches!(normalise("cpu;a=~x"), Err(TagError::BadValue(_))));
    }
}
