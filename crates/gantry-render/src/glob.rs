//! Graphite's path globs, for storage backends to find series with: a pattern and a path are
//! split on `.` into nodes and must have as many; each node matches with `*` (any run of
//! characters, never a `.`), `?` (one character), `[a-z0-9]` / `[!a-z]` (a class) and
//! `{a,b,c}` (alternatives, each itself a glob).
//!
//! Braces are expanded when a glob is compiled, and expansion multiplies (`{a,b}{c,d}` is
//! four alternatives): a node may expand to at most [`MAX_ALTERNATIVES`], and braces may
//! nest at most [`MAX_BRACE_DEPTH`] deep. [`Glob::try_new`] says when a pattern goes
//! beyond either; [`Glob::new`] then matches nothing.

/// Most alternatives one node of a glob may expand to.
pub const MAX_ALTERNATIVES: usize = 10_000;

/// Deepest nesting of `{…}` groups in a glob.
pub const MAX_BRACE_DEPTH: usize = 16;

/// A glob beyond what is compiled.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GlobError {
    #[error(
        "the glob '{pattern}' expands to more than {MAX_ALTERNATIVES} alternatives in one node"
    )]
    TooManyAlternatives { pattern: String },
    #[error("the glob '{pattern}' nests '{{' more than {MAX_BRACE_DEPTH} deep")]
    TooDeep { pattern: String },
}

/// Whether `path` matches the graphite glob `pattern` (`*` does not cross `.`). To test
/// many paths against one pattern, compile it once with [`Glob::new`].
pub fn glob_match(pattern: &str, path: &str) -> bool {
    Glob::new(pattern).matches(path)
}

/// A graphite glob, parsed once: per node, its alternatives (braces expanded), each as
/// characters, or as a literal when it has no wildcard.
#[derive(Debug, Clone)]
pub struct Glob {
    nodes: Vec<Vec<Alternative>>,
}

#[derive(Debug, Clone)]
enum Alternative {
    Literal(String),
    Wildcard(Vec<char>),
}

impl Glob {
    /// The glob of `pattern`; one that [`Glob::try_new`] refuses matches nothing.
    pub fn new(pattern: &str) -> Glob {
        Glob::try_new(pattern).unwrap_or(Glob {
            // A node without alternatives matches no name.
            nodes: vec![Vec::new()],
        })
    }

    /// The glob of `pattern`, or why it is beyond what is compiled.
    pub fn try_new(pattern: &str) -> Result<Glob, GlobError> {
        let mut nodes = Vec::new();
        for node in split_nodes(pattern) {
            let alternatives = expand_braces(&node, 0).map_err(|e| match e {
                Expansion::TooMany => GlobError::TooManyAlternatives {
                    pattern: pattern.to_string(),
                },
                Expansion::TooDeep => GlobError::TooDeep {
                    pattern: pattern.to_string(),
                },
            })?;
            nodes.push(
                alternatives
                    .into_iter()
                    .map(|p| {
                        if p.contains(['*', '?', '[']) {
                            Alternative::Wildcard(p.chars().collect())
                        } else {
                            Alternative::Literal(p)
                        }
                    })
                    .collect(),
            );
        }
        Ok(Glob { nodes })
    }

    /// Whether `path` matches (as many nodes, each matching one of its alternatives).
    pub fn matches(&self, path: &str) -> bool {
        let mut chars = Vec::new();
        let mut names = path.split('.');
        for node in &self.nodes {
            let Some(name) = names.next() else {
                return false;
            };
            chars.clear();
            let mut matched = false;
            for alternative in node {
                matched = match alternative {
                    Alternative::Literal(literal) => literal == name,
                    Alternative::Wildcard(p) => {
                        if chars.is_empty() {
                            chars.extend(name.chars());
                        }
                        wildcard(p, &chars)
                    }
                };
                if matched {
                    break;
                }
            }
            if !matched {
                return false;
            }
        }
        names.next().is_none()
    }
}

/// Splits on dots that are not inside a `{…}` group.
fn split_nodes(pattern: &str) -> Vec<String> {
    let mut nodes = vec![String::new()];
    let mut depth = 0usize;
    for c in pattern.chars() {
        match c {
            '{' => depth += 1,
            '}' => depth = depth.saturating_sub(1),
            '.' if depth == 0 => {
                nodes.push(String::new());
                continue;
            }
            _ => {}
        }
        if let Some(last) = nodes.last_mut() {
            last.push(c);
        }
    }
    nodes
}

/// Why braces were not expanded.
enum Expansion {
    TooMany,
    TooDeep,
}

/// `a{b,c}d{e,f}` → `abde`, `abdf`, `acde`, `acdf` (nested groups too; a `{` that is never
/// closed is an ordinary character). Groups one after another are expanded in a loop and
/// nested ones by recursion, `depth` deep so far.
fn expand_braces(pattern: &str, depth: usize) -> Result<Vec<String>, Expansion> {
    if depth > MAX_BRACE_DEPTH {
        return Err(Expansion::TooDeep);
    }
    let mut out = vec![String::new()];
    let mut rest = pattern;
    while let Some((head, alternatives, tail)) = first_group(rest) {
        let mut options = Vec::new();
        for alternative in alternatives {
            options.extend(expand_braces(alternative, depth + 1)?);
            if options.len() > MAX_ALTERNATIVES {
                return Err(Expansion::TooMany);
            }
        }
        if let [only] = options.as_slice() {
            // One alternative: every prefix grows in place (no copy of what came before).
            for prefix in &mut out {
                prefix.push_str(head);
                prefix.push_str(only);
            }
            rest = tail;
            continue;
        }
        if out.len().saturating_mul(options.len()) > MAX_ALTERNATIVES {
            return Err(Expansion::TooMany);
        }
        out = out
            .iter()
            .flat_map(|prefix| {
                options
                    .iter()
                    .map(move |option| format!("{prefix}{head}{option}"))
            })
            .collect();
        rest = tail;
    }
    for prefix in &mut out {
        prefix.push_str(rest);
    }
    Ok(out)
}

/// The text before the first closed `{…}` group of `pattern`, the group's alternatives (split
/// at its own commas, not those of groups inside it) and the text after it; `None` when the
/// first `{` is never closed (or there is none), which leaves the rest as it is.
fn first_group(pattern: &str) -> Option<(&str, Vec<&str>, &str)> {
    let open = pattern.find('{')?;
    let mut depth = 0usize;
    let mut start = open + 1;
    let mut alternatives = Vec::new();
    for (i, c) in pattern[open..].char_indices() {
        let at = open + i;
        match c {
            '{' => depth += 1,
            '}' => {
                depth -= 1;
                if depth == 0 {
                    alternatives.push(&pattern[start..at]);
                    return Some((&pattern[..open], alternatives, &pattern[at + 1..]));
                }
            }
            ',' if depth == 1 => {
                alternatives.push(&pattern[start..at]);
                start = at + 1;
            }
            _ => {}
        }
    }
    None
}

/// fnmatch over one node: `*`, `?`, `[…]`.
fn wildcard(p: &[char], n: &[char]) -> bool {
    let (mut pi, mut ni) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ni < n.len() {
        if pi < p.len() {
            match p[pi] {
                '*' => {
                    star = Some((pi, ni));
                    pi += 1;
                    continue;
                }
                '?' => {
                    pi += 1;
                    ni += 1;
                    continue;
                }
                '[' => {
                    if let Some((matched, len)) = class(&p[pi..], n[ni]) {
                        if matched {
                            pi += len;
                            ni += 1;
                            continue;
                        }
                    } else if n[ni] == '[' {
                        pi += 1;
                        ni += 1;
                        continue;
                    }
                }
                c if c == n[ni] => {
                    pi += 1;
                    ni += 1;
                    continue;
                }
                _ => {}
            }
        }
        match star {
            Some((sp, sn)) => {
                pi = sp + 1;
                ni = sn + 1;
                star = Some((sp, sn + 1));
            }
            None => return false,
        }
    }
    p[pi..].iter().all(|&c| c == '*')
}

/// A `[…]` class at the start of `p`: whether `c` is in it and the class's length, or
/// `None` when the `[` is not closed (then it is a literal).
fn class(p: &[char], c: char) -> Option<(bool, usize)> {
    let mut i = 1;
    let negate = matches!(p.get(1), Some('!') | Some('^'));
    if negate {
        i += 1;
    }
    let mut matched = false;
    let mut first = true;
    while i < p.len() {
        if p[i] == ']' && !first {
            return Some((matched != negate, i + 1));
        }
        first = false;
        if i + 2 < p.len() && p[i + 1] == '-' && p[i + 2] != ']' {
            if p[i] <= c && c <= p[i + 2] {
                matched = true;
            }
            i += 3;
        } else {
            if p[i] == c {
                matched = true;
            }
            i += 1;
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::{glob_match, Glob, GlobError};

    #[test]
    fn one_compiled_glob_tests_many_paths() {
        // A compiled glob keeps no state between paths: a path that fails half-way (or
        // has non-ASCII names) does not change the answer for the next one.
        let glob = Glob::new("servers.{web,db}[0-9]*.cpu.?ser");
        let cases = [
            ("servers.web01.cpu.user", true),
            ("servers.web01.cpu", false),
            ("servers.db7.cpu.user", true),
            ("servers.dbx.cpu.user", false),
            ("servers.web01.cpu.user.extra", false),
            ("servers.wéb1.cpu.user", false),
            ("servers.web1é.cpu.üser", true),
            ("servers.web9.cpu.user", true),
            ("", false),
        ];
        for (path, want) in cases {
            assert_eq!(glob.matches(path), want, "{path}");
        }
    }

    /// Braces that would expand without bound are refused when compiled, and match nothing.
    #[test]
    fn expansion_is_bounded() {
        let wide = "{a,b}".repeat(20);
        assert!(matches!(
            Glob::try_new(&wide),
            Err(GlobError::TooManyAlternatives { .. })
        ));
        assert!(!glob_match(&wide, &"a".repeat(20)));
        let deep = "{".repeat(100_000) + &"}".repeat(100_000);
        assert!(matches!(
            Glob::try_new(&deep),
            Err(GlobError::TooDeep { .. })
        ));
        // Many groups one after another, each one alternative, are fine.
        let long = "{x}".repeat(50_000);
        assert!(glob_match(&long, &"x".repeat(50_000)));
        let exactly = "{a,b,c,d,e,f,g,h,i,j}".repeat(4);
        assert!(Glob::try_new(&exactly).is_ok());
        assert!(Glob::try_new(&(exactly + "{a,b}")).is_err());
    }

    #[test]
    fn globs_match_as_graphite_does() {
        let cases = [
            ("a.b.c", "a.b.c", true),
            ("a.*.c", "a.b.c", true),
            ("a.*", "a.b.c", false),
            ("*", "a.b", false),
            ("a.b*", "a.b", true),
            ("a.b*", "a.bcd", true),
            ("a.?", "a.b", true),
            ("a.?", "a.bc", false),
            ("web[0-9].cpu", "web3.cpu", true),
            ("web[0-9].cpu", "webx.cpu", false),
            ("web[!0-9].cpu", "webx.cpu", true),
            ("a.{b,c}.d", "a.c.d", true),
            ("a.{b,c}.d", "a.e.d", false),
            ("a.{b*,x}.d", "a.bee.d", true),
            ("a.x{1,2}y{3,4}", "a.x2y4", true),
            ("a.{b.c,d}", "a.b.c", false),
            ("*.cpu.*", "web1.cpu.user", true),
            ("*e*", "web", true),
            ("a[", "a[", true),
            ("a.{b,c", "a.{b,c", true),
            ("a.{b,c}x{", "a.cx{", true),
            ("a.{b,{c,d}e}f", "a.def", true),
            ("a.{b,{c,d}e}f", "a.ce", false),
            ("a.{}", "a.", true),
            ("{a,b}.{c,d}", "b.c", true),
        ];
        for (pattern, path, want) in cases {
            assert_eq!(glob_match(pattern, path), want, "{pattern} vs {path}");
        }
    }
}
