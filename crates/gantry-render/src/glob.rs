//! Graphite's path globs, for storage backends to find series with: a pattern and a path are
//! split on `.` into nodes and must have as many; each node matches with `*` (any run of
//! characters, never a `.`), `?` (one character), `[a-z0-9]` / `[!a-z]` (a class) and
//! `{a,b,c}` (alternatives, each itself a glob).

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
    pub fn new(pattern: &str) -> Glob {
        Glob {
            nodes: split_nodes(pattern)
                .iter()
                .map(|node| {
                    expand_braces(node)
                        .into_iter()
                        .map(|p| {
                            if p.contains(['*', '?', '[']) {
                                Alternative::Wildcard(p.chars().collect())
                            } else {
                                Alternative::Literal(p)
                            }
                        })
                        .collect()
                })
                .collect(),
        }
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

/// `a{b,c}d{e,f}` → `abde`, `abdf`, `acde`, `acdf` (nested groups too).
fn expand_braces(pattern: &str) -> Vec<String> {
    let Some(open) = pattern.find('{') else {
        return vec![pattern.to_string()];
    };
    let mut depth = 0usize;
    let mut close = None;
    let mut commas = Vec::new();
    for (i, c) in pattern[open..].char_indices() {
        match c {
            '{' => depth += 1,
            '}' => {
                depth -= 1;
                if depth == 0 {
                    close = Some(open + i);
                    break;
                }
            }
            ',' if depth == 1 => commas.push(open + i),
            _ => {}
        }
    }
    let Some(close) = close else {
        return vec![pattern.to_string()];
    };
    let (head, tail) = (&pattern[..open], &pattern[close + 1..]);
    let mut bounds = vec![open];
    bounds.extend(commas);
    bounds.push(close);
    let mut out = Vec::new();
    for w in bounds.windows(2) {
        let alternative = &pattern[w[0] + 1..w[1]];
        out.extend(expand_braces(&format!("{head}{alternative}{tail}")));
    }
    out
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
    use super::{glob_match, Glob};

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
        ];
        for (pattern, path, want) in cases {
            assert_eq!(glob_match(pattern, path), want, "{pattern} vs {path}");
        }
    }
}
