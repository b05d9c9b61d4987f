//! Log watches, the `[[logs]]` entries of a service file: lines of a service's log files
//! that match a regular expression are counted on the host.
//!
//! ```toml
//! [[logs]]
//! name = "payment-errors"
//! glob = "log/*.log"              # relative to <root>/<service>/ on each host
//! regex = "ERROR .*payment"
//! ```
//!
//! A glob must stay inside the service's directory. This module refuses what can be seen
//! in the text: an absolute path, a leading `~`, a `..` component, a brace alternative that
//! yields one of those (`{..,x}`, `{/etc,x}`), and a component that could match `..`
//! (`.?`, `.*`, `.[.]`). That relies on the shell's rule, which the agent's matcher must
//! follow: a wildcard (`*`, `?`, `[…]`, `**`) never matches a leading `.`, so only a
//! component starting with a literal `.` can match `..`. The agent must still resolve each
//! matched path (symlinks included) and skip any that lands outside the directory: text
//! rules cannot see symlinks.

use std::collections::HashMap;

use gantry_core::names::validate_name;
use serde::Deserialize;
use toml::Spanned;

use crate::error::{ErrorKind, FileError, Place, Source};
use crate::file::{pattern, Limits};
use crate::pattern::Pattern;

/// Longest glob accepted, in characters.
pub const MAX_GLOB_CHARS: usize = 1024;
/// Most paths a glob's brace alternatives may expand to (`{a,b}/{c,d}` is 4).
pub const MAX_GLOB_ALTERNATIVES: usize = 256;
/// Most log watches in one service file.
pub const MAX_LOG_WATCHES: usize = 100;

/// A `[[logs]]` entry as serde reads it. Deserialize it straight from the TOML text (its
/// spans need toml's own deserializer), then check it with [`validate_logs`].
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogWatchSpec {
    pub name: Spanned<String>,
    pub glob: Spanned<String>,
    pub regex: Spanned<String>,
}

/// A checked log watch.
#[derive(Debug, Clone, PartialEq)]
pub struct LogWatch {
    /// Unique among the service's watches; a valid Gantry name.
    pub name: String,
    /// Relative to `<root>/<service>/`; see the module doc for what is refused.
    pub glob: String,
    pub regex: Pattern,
}

/// The `[[logs]]` part of a service file, as `gantry_core::detect::split_service_file`
/// leaves it (the other lines blank, so lines are the file's).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct LogsSection {
    #[serde(default)]
    logs: Vec<LogWatchSpec>,
}

/// Parses and checks the `[[logs]]` part of a service file; `file_name` is for messages.
pub fn parse_logs(
    text: &str,
    file_name: &str,
    limits: &Limits,
) -> Result<Vec<LogWatch>, FileError> {
    let source = Source::new(file_name, text);
    let section: LogsSection =
        toml::from_str(text).map_err(|e| crate::error::from_toml(source, &e))?;
    validate_logs(&section.logs, source, limits)
}

/// Checks a service file's `[[logs]]` entries: names valid and unique, globs inside the
/// service's directory, regular expressions valid and under the size limits. `source` is
/// the service file (its name and the text the spans point into).
pub fn validate_logs(
    entries: &[LogWatchSpec],
    source: Source<'_>,
    limits: &Limits,
) -> Result<Vec<LogWatch>, FileError> {
    if entries.len() > MAX_LOG_WATCHES {
        return Err(source.error(
            entries.get(MAX_LOG_WATCHES).map(|e| e.name.span()),
            ErrorKind::TooLarge,
            format!(
                "{} [[logs]] entries; the limit is {MAX_LOG_WATCHES}",
                entries.len()
            ),
        ));
    }
    let mut seen: HashMap<&str, usize> = HashMap::new();
    let mut out = Vec::with_capacity(entries.len());
    for entry in entries {
        let name = entry.name.get_ref();
        let place = Place {
            source,
            section: "logs",
            monitor: Some(name),
        };
        validate_name("name", name)
            .map_err(|e| place.error(entry.name.span(), "name", ErrorKind::InvalidName, e.0))?;
        let line = source.line_of(entry.name.span().start);
        if let Some(first) = seen.insert(name, line) {
            return Err(place.error(
                entry.name.span(),
                "name",
                ErrorKind::DuplicateName,
                format!("name \"{name}\" is already used by the [[logs]] entry at line {first}"),
            ));
        }
        let glob = entry.glob.get_ref();
        check_glob(glob).map_err(|why| {
            place.error(
                entry.glob.span(),
                "glob",
                ErrorKind::InvalidGlob,
                format!("glob \"{glob}\" {why}"),
            )
        })?;
        let regex = pattern(place, "regex", &entry.regex, limits)?;
        out.push(LogWatch {
            name: name.clone(),
            glob: glob.clone(),
            regex,
        });
    }
    Ok(out)
}

/// Checks that a glob stays inside the directory it is relative to (as far as its text
/// shows; see the module doc). The error completes the sentence "glob "…" ".
pub fn check_glob(glob: &str) -> Result<(), String> {
    if glob.is_empty() {
        return Err(
            "is empty: give files relative to the service's directory, e.g. log/*.log".into(),
        );
    }
    if glob.chars().count() > MAX_GLOB_CHARS {
        return Err(format!("is longer than {MAX_GLOB_CHARS} characters"));
    }
    if glob.chars().any(char::is_control) {
        return Err("contains a control character".into());
    }
    if glob.contains('\\') {
        return Err(
            "contains a backslash: separate directories with '/', and match a special character \
             with a class such as [*]"
                .into(),
        );
    }
    if glob.starts_with('~') {
        return Err(
            "starts with '~', which is not the home directory here: globs are relative to the \
             service's directory"
                .into(),
        );
    }
    let chars: Vec<char> = glob.chars().collect();
    let mut paths = Vec::new();
    expand_braces(&chars, &mut paths)?;
    for path in &paths {
        if path.first() == Some(&'/') {
            return Err(
                "is an absolute path (or has an alternative that is one): globs are relative to \
                 <root>/<service>/"
                    .into(),
            );
        }
        for component in path.split(|&c| c == '/') {
            if component == ['.', '.'] {
                return Err(
                    "has a '..' component, which would leave the service's directory".into(),
                );
            }
            if could_match_dot_dot(component)? {
                let text: String = component.iter().collect();
                return Err(format!(
                    "has a component \"{text}\" that could match '..' and leave the service's \
                     directory"
                ));
            }
        }
    }
    Ok(())
}

/// Where the class opened at `chars[open]` (a `[`) closes. A `]` right after `[`, `[!` or
/// `[^` is a member, as in the shell.
fn class_end(chars: &[char], open: usize) -> Result<usize, String> {
    let mut i = open + 1;
    if matches!(chars.get(i), Some('!' | '^')) {
        i += 1;
    }
    if chars.get(i) == Some(&']') {
        i += 1;
    }
    while let Some(&c) = chars.get(i) {
        match c {
            ']' => return Ok(i),
            '/' => return Err("has a '/' inside a [...] class".into()),
            _ => i += 1,
        }
    }
    Err("has a '[' that is never closed".into())
}

/// Expands `{a,b}` alternatives (nested ones too) into `out`, at most
/// [`MAX_GLOB_ALTERNATIVES`] paths.
fn expand_braces(chars: &[char], out: &mut Vec<Vec<char>>) -> Result<(), String> {
    // Find the first brace group outside classes.
    let mut i = 0;
    let mut open = None;
    while i < chars.len() {
        match chars[i] {
            '[' => i = class_end(chars, i)?,
            '{' => {
                open = Some(i);
                break;
            }
            '}' => return Err("has a '}' with no '{' before it".into()),
            _ => {}
        }
        i += 1;
    }
    let Some(open) = open else {
        if out.len() >= MAX_GLOB_ALTERNATIVES {
            return Err(format!(
                "expands to more than {MAX_GLOB_ALTERNATIVES} paths: use fewer {{…}} alternatives"
            ));
        }
        out.push(chars.to_vec());
        return Ok(());
    };
    // Split its alternatives at top-level commas, up to the matching '}'.
    let mut depth = 0;
    let mut starts = vec![open + 1];
    let mut close = None;
    let mut j = open + 1;
    while j < chars.len() {
        match chars[j] {
            '[' => j = class_end(chars, j)?,
            '{' => depth += 1,
            '}' if depth == 0 => {
                close = Some(j);
                break;
            }
            '}' => depth -= 1,
            ',' if depth == 0 => starts.push(j + 1),
            _ => {}
        }
        j += 1;
    }
    let Some(close) = close else {
        return Err("has a '{' that is never closed".into());
    };
    let mut ends: Vec<usize> = starts.iter().skip(1).map(|s| s - 1).collect();
    ends.push(close);
    for (start, end) in starts.into_iter().zip(ends) {
        let mut candidate = chars[..open].to_vec();
        candidate.extend_from_slice(&chars[start..end]);
        candidate.extend_from_slice(&chars[close + 1..]);
        expand_braces(&candidate, out)?;
    }
    Ok(())
}

/// Whether one path component could match the name `..`. Wildcards never match a leading
/// `.`, so the component must start with a literal `.`, and the rest must be able to match
/// exactly one `.`: one token that matches `.` among any number of `*`, or `*` alone.
fn could_match_dot_dot(component: &[char]) -> Result<bool, String> {
    let Some((&'.', rest)) = component.split_first() else {
        return Ok(false);
    };
    let mut stars = 0;
    let mut single: Vec<bool> = Vec::new(); // for each one-character token: does it match '.'?
    let mut i = 0;
    while i < rest.len() {
        match rest[i] {
            '*' => stars += 1,
            '?' => single.push(true),
            '[' => {
                let end = class_end(rest, i)?;
                single.push(class_matches(&rest[i + 1..end], '.'));
                i = end;
            }
            c => single.push(c == '.'),
        }
        i += 1;
    }
    Ok(match single.as_slice() {
        [] => stars > 0,
        [one] => *one,
        _ => false,
    })
}

/// Whether a class's inside (between `[` and `]`) matches `c`.
fn class_matches(inside: &[char], c: char) -> bool {
    let (negated, members) = match inside.split_first() {
        Some((&('!' | '^'), rest)) => (true, rest),
        _ => (false, inside),
    };
    let mut found = false;
    let mut i = 0;
    while i < members.len() {
        if i + 2 < members.len() && members[i + 1] == '-' {
            found |= (members[i]..=members[i + 2]).contains(&c);
            i += 3;
        } else {
            found |= members[i] == c;
            i += 1;
        }
    }
    found != negated
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_sections_parse_and_bad_ones_are_named_by_line() {
        let text = "\n[[logs]]\nname = \"errors\"\nglob = \"log/*.log\"\nregex = \"ERROR\"\n";
        let watches = parse_logs(text, "shop.toml", &Limits::default()).unwrap();
        assert_eq!(watches.len(), 1);
        assert_eq!(watches[0].name, "errors");
        for (bad, want) in [
            (
                "[[logs]]\nname = \"e\"\nglob = \"../etc/*\"\nregex = \"x\"\n",
                "shop.toml:3",
            ),
            (
                "[[logs]]\nname = \"e\"\nglob = \"log/*\"\nregex = \"(\"\n",
                "shop.toml:4",
            ),
            (
                "[[logs]]\nname = \"e\"\nglob = \"log/*\"\nregex = \"x\"\ncolour = 1\n",
                "colour",
            ),
            (
                "[[logs]]\nname = \"e\"\nglob = \"log/*\"\nregex = \"x{1000}{1000}\"\n",
                "shop.toml:4",
            ),
        ] {
            let err = parse_logs(bad, "shop.toml", &Limits::default())
                .unwrap_err()
                .to_string();
            assert!(err.contains(want), "{want}: {err}");
        }
    }

    #[test]
    fn globs_inside_the_directory() {
        let ok = [
            "log/*.log",
            "log/**/*.log",
            "*",
            "*/app.log",
            "./log/app.log",
            "log/{app,worker}-*.log",
            "log/app.[0-9].log",
            "log/.hidden.log",
            ".config/app/*.log",
            "a/{b,{c,d}}/e.log",
            "log/[!.]*",
            "log/[]]x",
        ];
        for glob in ok {
            assert_eq!(check_glob(glob), Ok(()), "{glob}");
        }
    }

    #[test]
    fn globs_that_escape_or_are_malformed() {
        let bad = [
            ("", "is empty"),
            ("/var/log/*.log", "absolute path"),
            ("~/log/*.log", "starts with '~'"),
            ("../other/log", "'..' component"),
            ("log/../../etc/passwd", "'..' component"),
            ("log/..", "'..' component"),
            ("{..,x}/secret", "'..' component"),
            ("{/etc/passwd,x}", "absolute path"),
            ("{a,/etc}/x", "absolute path"),
            (".?/x", "could match '..'"),
            (".*/x", "could match '..'"),
            ("log/.[.]/x", "could match '..'"),
            ("log/.[!a]/x", "could match '..'"),
            ("log/.[--/]", "'/' inside a [...] class"),
            ("log\\app.log", "backslash"),
            ("log/[abc", "never closed"),
            ("log/{a,b", "never closed"),
            ("log/a}", "no '{'"),
            (
                "{a,b}{c,d}{e,f}{g,h}{i,j}{k,l}{m,n}{o,p}{q,r}",
                "more than 256 paths",
            ),
            ("log/\n.log", "control character"),
        ];
        for (glob, expected) in bad {
            match check_glob(glob) {
                Ok(()) => panic!("{glob:?}: accepted"),
                Err(why) => assert!(why.contains(expected), "{glob:?}: {why}"),
            }
        }
    }

    #[derive(Deserialize)]
    struct ServiceFile {
        logs: Vec<LogWatchSpec>,
    }

    fn check(text: &str) -> Result<Vec<LogWatch>, FileError> {
        let parsed: ServiceFile = match toml::from_str(text) {
            Ok(parsed) => parsed,
            Err(e) => panic!("test input does not parse: {e}"),
        };
        validate_logs(
            &parsed.logs,
            Source::new("shop.toml", text),
            &Limits::default(),
        )
    }

    #[test]
    fn service_file_entries() {
        let ok = check(
            "[[logs]]\nname = \"errors\"\nglob = \"log/*.log\"\nregex = \"ERROR\"\n\n\
             [[logs]]\nname = \"slow\"\nglob = \"log/slow.log\"\nregex = \"took [0-9]{4,}ms\"\n",
        );
        match ok {
            Ok(watches) => {
                assert_eq!(watches.len(), 2);
                assert!(watches[1].regex.is_match("took 12000ms"));
            }
            Err(e) => panic!("{e}"),
        }

        let bad = [
            (
                "[[logs]]\nname = \"a b\"\nglob = \"x\"\nregex = \"y\"\n",
                ErrorKind::InvalidName,
                "shop.toml:2: logs \"a b\": name 'a b' is not a valid name",
            ),
            (
                "[[logs]]\nname = \"a\"\nglob = \"/etc/*\"\nregex = \"y\"\n",
                ErrorKind::InvalidGlob,
                "shop.toml:3: logs \"a\": glob \"/etc/*\" is an absolute path",
            ),
            (
                "[[logs]]\nname = \"a\"\nglob = \"x\"\nregex = \"(y\"\n",
                ErrorKind::InvalidRegex,
                "shop.toml:4: logs \"a\": regex is not a valid regular expression",
            ),
            (
                "[[logs]]\nname = \"a\"\nglob = \"x\"\nregex = \"y\"\n\
                 [[logs]]\nname = \"a\"\nglob = \"z\"\nregex = \"y\"\n",
                ErrorKind::DuplicateName,
                "shop.toml:6: logs \"a\": name \"a\" is already used by the [[logs]] entry at line 2",
            ),
        ];
        for (text, kind, expected) in bad {
            match check(text) {
                Ok(_) => panic!("accepted:\n{text}"),
                Err(e) => {
                    assert_eq!(e.kind, kind, "{e}");
                    assert!(e.to_string().starts_with(expected), "{e}");
                }
            }
        }
    }
}
