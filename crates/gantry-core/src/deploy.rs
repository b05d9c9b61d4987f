//! A service's deploy config: the TOML file kept in the app's repository that tells the
//! agent which hosts run the service, which paths survive a release, which hooks to run and
//! how to tell that the new release is healthy.
//!
//! ```toml
//! name = "shop"
//! roles = ["web"]                       # absent: every host of the environment
//! keep_releases = 5                     # default 5
//! shared = ["config/app.env", "log/"]   # trailing '/': a directory
//!
//! [hooks]                               # run in the new release's directory
//! before_switch = ["bin/check-config"]  # an argument vector, no shell
//! restart = { argv = ["bin/restart"], timeout_secs = 120 }
//! drain = { shell = "bin/lb drain | logger", timeout_secs = 30 }  # a shell, as written
//!
//! [health]                              # exactly one of `command` and `url`
//! url = "http://127.0.0.1:8080/health"
//! expect_status = 200
//! expect_body = "ok"
//! timeout_secs = 10
//! retries = 3
//! interval_secs = 2
//! ```
//!
//! Pure: parsing, validation, the canonical form and the diff of two configs. Running hooks
//! and checks is the agent's business.

use std::fmt;

use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::names::validate_name;
use crate::Invalid;

/// Releases kept on a host when the config does not say.
pub const DEFAULT_KEEP_RELEASES: u32 = 5;
/// Timeout of a hook whose config does not give one, in seconds.
pub const DEFAULT_HOOK_TIMEOUT_SECS: u64 = 60;
/// Largest accepted deploy config, in bytes.
pub const MAX_CONFIG_BYTES: usize = 64 * 1024;

/// A service's deploy config. Parse it with [`DeployConfig::parse_toml`], which also
/// validates it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DeployConfig {
    /// The service's name (letters, digits, `.`, `_`, `-`).
    pub name: String,
    /// Agent roles that run the service; absent means every host of the environment.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub roles: Option<Vec<String>>,
    /// How many releases stay on a host, the current one included.
    #[serde(default = "default_keep_releases")]
    pub keep_releases: u32,
    /// Paths relative to the release, linked from the service's `shared/` directory into
    /// each release. A trailing `/` makes a directory, anything else a file.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub shared: Vec<String>,
    #[serde(default, skip_serializing_if = "Hooks::is_empty")]
    pub hooks: Hooks,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health: Option<HealthCheck>,
}

fn default_keep_releases() -> u32 {
    DEFAULT_KEEP_RELEASES
}

/// The hooks of a deploy, in the order the agent runs them: `drain`, `before_switch`,
/// (switch of `current`), `restart`, `after_switch`, (health check), `undrain`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Hooks {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub before_switch: Option<Hook>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub after_switch: Option<Hook>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restart: Option<Hook>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub drain: Option<Hook>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub undrain: Option<Hook>,
}

impl Hooks {
    pub fn is_empty(&self) -> bool {
        self.iter().next().is_none()
    }

    /// The hooks that are set, with their keys, in declaration order.
    pub fn iter(&self) -> impl Iterator<Item = (&'static str, &Hook)> {
        [
            ("before_switch", &self.before_switch),
            ("after_switch", &self.after_switch),
            ("restart", &self.restart),
            ("drain", &self.drain),
            ("undrain", &self.undrain),
        ]
        .into_iter()
        .filter_map(|(key, hook)| hook.as_ref().map(|h| (key, h)))
    }
}

/// A command the agent runs. Without a shell unless the config says `shell`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
#[serde(untagged)]
pub enum Hook {
    /// `["bin/restart", "--graceful"]`: program and arguments, default timeout.
    Argv(Vec<String>),
    /// `{ argv = ["bin/restart"], timeout_secs = 30 }`.
    Exec {
        argv: Vec<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        timeout_secs: Option<u64>,
    },
    /// `{ shell = "a | b", timeout_secs = 30 }`: a command line for `/bin/sh -c`, only when
    /// the config writes it so.
    Shell {
        shell: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        timeout_secs: Option<u64>,
    },
}

impl Hook {
    /// The argument vector, or `None` for a shell hook.
    pub fn argv(&self) -> Option<&[String]> {
        match self {
            Hook::Argv(argv) | Hook::Exec { argv, .. } => Some(argv),
            Hook::Shell { .. } => None,
        }
    }

    /// The shell command line, or `None` for an argument vector.
    pub fn shell(&self) -> Option<&str> {
        match self {
            Hook::Shell { shell, .. } => Some(shell),
            _ => None,
        }
    }

    /// The hook's own timeout, if the config gives one.
    pub fn timeout_secs(&self) -> Option<u64> {
        match self {
            Hook::Argv(_) => None,
            Hook::Exec { timeout_secs, .. } | Hook::Shell { timeout_secs, .. } => *timeout_secs,
        }
    }

    fn validate(&self, key: &str) -> Result<(), Invalid> {
        match self {
            Hook::Argv(argv) | Hook::Exec { argv, .. } => {
                match argv.first() {
                    None => {
                        return Err(Invalid::new(format!(
                            "{key}: the argument vector must not be empty"
                        )))
                    }
                    Some(program) if program.is_empty() => {
                        return Err(Invalid::new(format!(
                            "{key}: the program (first element) must not be empty"
                        )))
                    }
                    Some(_) => {}
                }
                if let Some(i) = argv.iter().position(|a| a.contains('\0')) {
                    return Err(Invalid::new(format!(
                        "{key}: argument {i} contains a NUL character"
                    )));
                }
            }
            Hook::Shell { shell, .. } => {
                if shell.trim().is_empty() {
                    return Err(Invalid::new(format!("{key}.shell must not be empty")));
                }
                if shell.contains('\0') {
                    return Err(Invalid::new(format!(
                        "{key}.shell contains a NUL character"
                    )));
                }
            }
        }
        if self.timeout_secs() == Some(0) {
            return Err(Invalid::new(format!(
                "{key}.timeout_secs must be at least 1"
            )));
        }
        Ok(())
    }
}

impl fmt::Display for Hook {
    /// A readable rendering for logs: the argument vector quoted where needed, or
    /// `sh -c '…'`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fn quoted(s: &str) -> String {
            let plain = !s.is_empty()
                && s.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_./=:,+@%".contains(c));
            if plain {
                s.to_string()
            } else {
                format!("'{}'", s.replace('\'', r"'\''"))
            }
        }
        match self {
            Hook::Argv(argv) | Hook::Exec { argv, .. } => {
                let words: Vec<String> = argv.iter().map(|a| quoted(a)).collect();
                f.write_str(&words.join(" "))
            }
            Hook::Shell { shell, .. } => write!(f, "sh -c {}", quoted(shell)),
        }
    }
}

impl<'de> Deserialize<'de> for Hook {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct HookVisitor;

        impl<'de> Visitor<'de> for HookVisitor {
            type Value = Hook;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(
                    "an argument vector such as [\"bin/restart\", \"--graceful\"], or a table \
                     with `argv` or `shell` and an optional `timeout_secs`",
                )
            }

            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Hook, A::Error> {
                let mut argv = Vec::new();
                while let Some(arg) = seq.next_element::<String>()? {
                    argv.push(arg);
                }
                Ok(Hook::Argv(argv))
            }

            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Hook, A::Error> {
                const FIELDS: &[&str] = &["argv", "shell", "timeout_secs"];
                let mut argv: Option<Vec<String>> = None;
                let mut shell: Option<String> = None;
                let mut timeout_secs: Option<u64> = None;
                while let Some(key) = map.next_key::<String>()? {
                    match key.as_str() {
                        "argv" if argv.is_some() => return Err(de::Error::duplicate_field("argv")),
                        "argv" => argv = Some(map.next_value()?),
                        "shell" if shell.is_some() => {
                            return Err(de::Error::duplicate_field("shell"))
                        }
                        "shell" => shell = Some(map.next_value()?),
                        "timeout_secs" if timeout_secs.is_some() => {
                            return Err(de::Error::duplicate_field("timeout_secs"))
                        }
                        "timeout_secs" => timeout_secs = Some(map.next_value()?),
                        other => return Err(de::Error::unknown_field(other, FIELDS)),
                    }
                }
                match (argv, shell) {
                    (Some(argv), None) => Ok(Hook::Exec { argv, timeout_secs }),
                    (None, Some(shell)) => Ok(Hook::Shell {
                        shell,
                        timeout_secs,
                    }),
                    (Some(_), Some(_)) => Err(de::Error::custom(
                        "a hook has either `argv` or `shell`, not both",
                    )),
                    (None, None) => Err(de::Error::custom(
                        "a hook table needs `argv` (an argument vector) or `shell` (a command line for /bin/sh)",
                    )),
                }
            }
        }

        deserializer.deserialize_any(HookVisitor)
    }
}

/// How the agent tells that a release is healthy: a command that exits 0, or a URL that
/// answers the expected status (and body). A failed attempt is tried again `retries` times,
/// `interval_secs` apart, each attempt limited to `timeout_secs`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct HealthCheck {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command: Option<Hook>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// The HTTP status a healthy release answers `url` with.
    #[serde(default = "default_expect_status")]
    pub expect_status: u16,
    /// A substring the body of a healthy answer contains.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expect_body: Option<String>,
    #[serde(default = "default_health_timeout")]
    pub timeout_secs: u64,
    /// Attempts after the first failed one.
    #[serde(default = "default_health_retries")]
    pub retries: u32,
    #[serde(default = "default_health_interval")]
    pub interval_secs: u64,
}

fn default_expect_status() -> u16 {
    200
}
fn default_health_timeout() -> u64 {
    10
}
fn default_health_retries() -> u32 {
    3
}
fn default_health_interval() -> u64 {
    2
}

impl HealthCheck {
    /// A check of `url` with every other setting at its default.
    pub fn url(url: impl Into<String>) -> Self {
        HealthCheck {
            command: None,
            url: Some(url.into()),
            expect_status: default_expect_status(),
            expect_body: None,
            timeout_secs: default_health_timeout(),
            retries: default_health_retries(),
            interval_secs: default_health_interval(),
        }
    }

    /// A check by `command` with every other setting at its default.
    pub fn command(command: Hook) -> Self {
        HealthCheck {
            command: Some(command),
            url: None,
            ..HealthCheck::url("")
        }
    }

    /// How many attempts a failing check gets in all.
    pub fn attempts(&self) -> u32 {
        self.retries.saturating_add(1)
    }

    fn validate(&self) -> Result<(), Invalid> {
        match (&self.command, &self.url) {
            (Some(_), Some(_)) => {
                return Err(Invalid::new(
                    "health: set either `command` or `url`, not both",
                ))
            }
            (None, None) => {
                return Err(Invalid::new(
                    "health: set `command` (an argument vector) or `url` (http:// or https://)",
                ))
            }
            (Some(command), None) => {
                command.validate("health.command")?;
                if self.expect_body.is_some() {
                    return Err(Invalid::new(
                        "health.expect_body applies to a `url` check only",
                    ));
                }
            }
            (None, Some(url)) => validate_url(url)?,
        }
        if !(100..=599).contains(&self.expect_status) {
            return Err(Invalid::new(format!(
                "health.expect_status {} is not an HTTP status (100 to 599)",
                self.expect_status
            )));
        }
        if self.timeout_secs == 0 {
            return Err(Invalid::new("health.timeout_secs must be at least 1"));
        }
        Ok(())
    }
}

fn validate_url(url: &str) -> Result<(), Invalid> {
    let lower = url.to_ascii_lowercase();
    let rest = lower
        .strip_prefix("http://")
        .or_else(|| lower.strip_prefix("https://"))
        .ok_or_else(|| {
            Invalid::new(format!(
                "health.url '{url}' must start with http:// or https://"
            ))
        })?;
    let host = rest.split(['/', '?', '#']).next().unwrap_or_default();
    if host.is_empty() || host.starts_with(':') {
        return Err(Invalid::new(format!("health.url '{url}' has no host")));
    }
    if url.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(Invalid::new(format!(
            "health.url '{url}' contains whitespace or a control character"
        )));
    }
    Ok(())
}

/// Checks one `shared` entry: a relative path, no `.` or `..` component, no empty
/// component except one trailing `/` (which makes it a directory).
fn validate_shared(index: usize, entry: &str) -> Result<(), Invalid> {
    let key = format!("shared[{index}] '{entry}'");
    if entry.is_empty() || entry == "/" {
        return Err(Invalid::new(format!("shared[{index}] must not be empty")));
    }
    if entry.starts_with('/') {
        return Err(Invalid::new(format!(
            "{key} must be relative to the release, not absolute"
        )));
    }
    if entry.contains('\0') || entry.contains('\\') {
        return Err(Invalid::new(format!(
            "{key} contains a NUL character or a backslash"
        )));
    }
    let body = entry.strip_suffix('/').unwrap_or(entry);
    for component in body.split('/') {
        match component {
            ".." => {
                return Err(Invalid::new(format!(
                    "{key} must not contain a '..' component"
                )))
            }
            "." => {
                return Err(Invalid::new(format!(
                    "{key} must not contain a '.' component"
                )))
            }
            "" => return Err(Invalid::new(format!("{key} has an empty component"))),
            _ => {}
        }
    }
    Ok(())
}

impl DeployConfig {
    /// Parses and validates a deploy config. A syntax error or an unknown key keeps toml's
    /// line and column; a broken rule names the key.
    pub fn parse_toml(text: &str) -> Result<DeployConfig, Invalid> {
        if text.len() > MAX_CONFIG_BYTES {
            return Err(Invalid::new(format!(
                "deploy config is {} bytes long; the limit is {MAX_CONFIG_BYTES}",
                text.len()
            )));
        }
        let config: DeployConfig = toml::from_str(text)
            .map_err(|e| Invalid::new(format!("deploy config: {}", e.to_string().trim_end())))?;
        config.validate()?;
        Ok(config)
    }

    /// Checks every rule; the message names the key that broke one.
    pub fn validate(&self) -> Result<(), Invalid> {
        validate_name("name", &self.name)?;
        if let Some(roles) = &self.roles {
            if roles.is_empty() {
                return Err(Invalid::new(
                    "roles must not be empty; leave it out to deploy to every host",
                ));
            }
            for (i, role) in roles.iter().enumerate() {
                validate_name(&format!("roles[{i}]"), role)?;
            }
        }
        if self.keep_releases < 1 {
            return Err(Invalid::new("keep_releases must be at least 1"));
        }
        for (i, entry) in self.shared.iter().enumerate() {
            validate_shared(i, entry)?;
            let bare = entry.trim_end_matches('/');
            if self.shared[..i]
                .iter()
                .any(|e| e.trim_end_matches('/') == bare)
            {
                return Err(Invalid::new(format!("shared[{i}] '{entry}' appears twice")));
            }
        }
        for (key, hook) in self.hooks.iter() {
            hook.validate(&format!("hooks.{key}"))?;
        }
        if let Some(health) = &self.health {
            health.validate()?;
        }
        Ok(())
    }

    /// The config as TOML with every default written out, keys in a fixed order: two
    /// configs that mean the same render the same.
    pub fn to_canonical_toml(&self) -> String {
        let mut config = self.clone();
        // An `{ argv = [...] }` table without a timeout means the same as the bare vector.
        let hooks = [
            &mut config.hooks.before_switch,
            &mut config.hooks.after_switch,
            &mut config.hooks.restart,
            &mut config.hooks.drain,
            &mut config.hooks.undrain,
        ];
        for hook in hooks.into_iter().flatten() {
            canonical_hook(hook);
        }
        if let Some(command) = config.health.as_mut().and_then(|h| h.command.as_mut()) {
            canonical_hook(command);
        }
        match toml::to_string(&config) {
            Ok(text) => text,
            // Unreachable for these types (no maps with non-string keys, no bare values at
            // the top); still no panic.
            Err(e) => format!("# the config cannot be rendered as TOML: {e}\n"),
        }
    }

    /// A readable line diff of the canonical forms of two configs: `- ` for a line only in
    /// `old`, `+ ` for a line only in `new`, two spaces for context. Empty when they mean
    /// the same.
    pub fn diff(old: &DeployConfig, new: &DeployConfig) -> String {
        diff_lines(&old.to_canonical_toml(), &new.to_canonical_toml())
    }
}

fn canonical_hook(hook: &mut Hook) {
    if let Hook::Exec {
        argv,
        timeout_secs: None,
    } = hook
    {
        *hook = Hook::Argv(std::mem::take(argv));
    }
}

/// Context lines shown around each change by [`diff_lines`].
const DIFF_CONTEXT: usize = 2;
/// Above this many line pairs the diff gives up on the longest common subsequence and
/// shows every line of `old` removed and every line of `new` added.
const DIFF_MAX_CELLS: usize = 4_000_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Same,
    Del,
    Add,
}

/// A line diff of two texts: `- ` removed, `+ ` added, two spaces for up to two lines of
/// context around a change, `  …` between distant changes. Empty when the texts are equal.
pub fn diff_lines(old: &str, new: &str) -> String {
    let a: Vec<&str> = old.lines().collect();
    let b: Vec<&str> = new.lines().collect();
    let ops = edit_script(&a, &b);
    if ops.iter().all(|(op, _)| *op == Op::Same) {
        return String::new();
    }
    // Which lines to show: every change and DIFF_CONTEXT lines either side of one.
    let mut show = vec![false; ops.len()];
    for (i, (op, _)) in ops.iter().enumerate() {
        if *op != Op::Same {
            let from = i.saturating_sub(DIFF_CONTEXT);
            let to = (i + DIFF_CONTEXT + 1).min(ops.len());
            show[from..to].iter_mut().for_each(|s| *s = true);
        }
    }
    let mut out = String::new();
    let mut skipped = false;
    for (i, (op, line)) in ops.iter().enumerate() {
        if !show[i] {
            skipped = true;
            continue;
        }
        if skipped && !out.is_empty() {
            out.push_str("  …\n");
        }
        skipped = false;
        out.push_str(match op {
            Op::Same => "  ",
            Op::Del => "- ",
            Op::Add => "+ ",
        });
        out.push_str(line);
        out.push('\n');
    }
    out
}

/// The shortest edit script from `a` to `b` by the longest common subsequence, deletions
/// before additions within a change.
fn edit_script<'t>(a: &[&'t str], b: &[&'t str]) -> Vec<(Op, &'t str)> {
    // Common prefix and suffix first: most config diffs touch a few lines.
    let prefix = a.iter().zip(b).take_while(|(x, y)| x == y).count();
    let suffix = a[prefix..]
        .iter()
        .rev()
        .zip(b[prefix..].iter().rev())
        .take_while(|(x, y)| x == y)
        .count();
    let (am, bm) = (&a[prefix..a.len() - suffix], &b[prefix..b.len() - suffix]);
    let mut ops: Vec<(Op, &str)> = a[..prefix].iter().map(|l| (Op::Same, *l)).collect();

    let (n, m) = (am.len(), bm.len());
    if n.saturating_mul(m) > DIFF_MAX_CELLS {
        ops.extend(am.iter().map(|l| (Op::Del, *l)));
        ops.extend(bm.iter().map(|l| (Op::Add, *l)));
    } else {
        // lcs[i][j]: length of the LCS of am[i..] and bm[j..].
        let width = m + 1;
        let mut lcs = vec![0u32; (n + 1) * width];
        for i in (0..n).rev() {
            for j in (0..m).rev() {
                lcs[i * width + j] = if am[i] == bm[j] {
                    lcs[(i + 1) * width + j + 1] + 1
                } else {
                    lcs[(i + 1) * width + j].max(lcs[i * width + j + 1])
                };
            }
        }
        let (mut i, mut j) = (0, 0);
        while i < n || j < m {
            if i < n && j < m && am[i] == bm[j] {
                ops.push((Op::Same, am[i]));
                i += 1;
                j += 1;
            } else if j == m || (i < n && lcs[(i + 1) * width + j] >= lcs[i * width + j + 1]) {
                ops.push((Op::Del, am[i]));
                i += 1;
            } else {
                ops.push((Op::Add, bm[j]));
                j += 1;
            }
        }
    }
    ops.extend(a[a.len() - suffix..].iter().map(|l| (Op::Same, *l)));
    ops
}

#[cfg(test)]
mod tests {
    use super::*;

    const FULL: &str = r#"
name = "shop"
roles = ["web"]
keep_releases = 5
shared = ["config/app.env", "log/"]

[hooks]
before_switch = ["bin/check-config"]
restart = ["bin/restart"]
after_switch = { argv = ["bin/notify", "--deployed"], timeout_secs = 30 }
drain = { shell = "bin/lb drain | logger", timeout_secs = 15 }
undrain = { argv = ["bin/lb", "undrain"] }

[health]
command = ["bin/health"]
timeout_secs = 10
retries = 3
interval_secs = 2
"#;

    #[test]
    fn full_example_parses() {
        let c = DeployConfig::parse_toml(FULL).unwrap();
        assert_eq!(c.name, "shop");
        assert_eq!(c.roles.as_deref(), Some(&["web".to_string()][..]));
        assert_eq!(c.keep_releases, 5);
        assert_eq!(c.shared, vec!["config/app.env", "log/"]);
        assert_eq!(
            c.hooks.before_switch,
            Some(Hook::Argv(vec!["bin/check-config".into()]))
        );
        assert_eq!(
            c.hooks.after_switch,
            Some(Hook::Exec {
                argv: vec!["bin/notify".into(), "--deployed".into()],
                timeout_secs: Some(30)
            })
        );
        let drain = c.hooks.drain.as_ref().unwrap();
        assert_eq!(drain.shell(), Some("bin/lb drain | logger"));
        assert_eq!(drain.argv(), None);
        assert_eq!(drain.timeout_secs(), Some(15));
        assert_eq!(
            c.hooks.undrain.as_ref().unwrap().argv(),
            Some(&["bin/lb".to_string(), "undrain".to_string()][..])
        );
        let health = c.health.unwrap();
        assert_eq!(health.command, Some(Hook::Argv(vec!["bin/health".into()])));
        assert_eq!(health.attempts(), 4);
        let keys: Vec<_> = c.hooks.iter().map(|(k, _)| k).collect();
        assert_eq!(
            keys,
            [
                "before_switch",
                "after_switch",
                "restart",
                "drain",
                "undrain"
            ]
        );
    }

    #[test]
    fn defaults() {
        let c = DeployConfig::parse_toml("name = \"shop\"").unwrap();
        assert_eq!(c.roles, None);
        assert_eq!(c.keep_releases, DEFAULT_KEEP_RELEASES);
        assert!(c.shared.is_empty());
        assert!(c.hooks.is_empty());
        assert_eq!(c.health, None);

        let c =
            DeployConfig::parse_toml("name = \"shop\"\n[health]\nurl = \"http://x/h\"").unwrap();
        let h = c.health.unwrap();
        assert_eq!(h, HealthCheck::url("http://x/h"));
        assert_eq!(
            (h.expect_status, h.timeout_secs, h.retries, h.interval_secs),
            (200, 10, 3, 2)
        );
        assert_eq!(h.expect_body, None);
    }

    #[test]
    fn valid_configs() {
        let ok = [
            "name = \"a\"",
            "name = \"shop\"\nkeep_releases = 1",
            "name = \"shop\"\nshared = [\"a\", \"b/c/\", \"d/e.env\", \".env\"]",
            "name = \"shop\"\nroles = [\"web\", \"worker-2\"]",
            "name = \"shop\"\n[health]\nurl = \"https://example.invalid:8443/health?x=1\"\nexpect_status = 204\nexpect_body = \"ok\"",
            "name = \"shop\"\n[health]\ncommand = { shell = \"curl -sf localhost | grep ok\" }\nretries = 0\ninterval_secs = 0",
            "name = \"shop\"\n[hooks]\nrestart = { shell = \"x\", timeout_secs = 1 }",
        ];
        for text in ok {
            if let Err(e) = DeployConfig::parse_toml(text) {
                panic!("{text:?}: {e}");
            }
        }
    }

    #[test]
    fn invalid_configs_name_the_key() {
        // (config, a substring the message must contain)
        let cases = [
            ("", "missing field `name`"),
            ("name = \"s p\"", "name 's p'"),
            ("name = \"\"", "name must not be empty"),
            (
                "name = \"shop\"\nkeep_releases = 0",
                "keep_releases must be at least 1",
            ),
            ("name = \"shop\"\nkeep_releases = -1", "keep_releases"),
            ("name = \"shop\"\nroles = []", "roles must not be empty"),
            ("name = \"shop\"\nroles = [\"a b\"]", "roles[0] 'a b'"),
            (
                "name = \"shop\"\nshared = [\"/etc/passwd\"]",
                "shared[0] '/etc/passwd' must be relative",
            ),
            (
                "name = \"shop\"\nshared = [\"a\", \"../x\"]",
                "shared[1] '../x' must not contain a '..'",
            ),
            ("name = \"shop\"\nshared = [\"a/../../x\"]", "'..'"),
            ("name = \"shop\"\nshared = [\"a/./x\"]", "'.' component"),
            ("name = \"shop\"\nshared = [\"a//x\"]", "empty component"),
            (
                "name = \"shop\"\nshared = [\"\"]",
                "shared[0] must not be empty",
            ),
            (
                "name = \"shop\"\nshared = [\"/\"]",
                "shared[0] must not be empty",
            ),
            (
                "name = \"shop\"\nshared = [\"log\", \"log/\"]",
                "shared[1] 'log/' appears twice",
            ),
            (
                "name = \"shop\"\n[hooks]\nrestart = []",
                "hooks.restart: the argument vector must not be empty",
            ),
            (
                "name = \"shop\"\n[hooks]\nrestart = [\"\"]",
                "hooks.restart: the program",
            ),
            (
                "name = \"shop\"\n[hooks]\ndrain = { argv = [] }",
                "hooks.drain: the argument vector",
            ),
            (
                "name = \"shop\"\n[hooks]\ndrain = { shell = \" \" }",
                "hooks.drain.shell must not be empty",
            ),
            (
                "name = \"shop\"\n[hooks]\ndrain = { argv = [\"x\"], timeout_secs = 0 }",
                "hooks.drain.timeout_secs must be at least 1",
            ),
            (
                "name = \"shop\"\n[hooks]\ndrain = { argv = [\"x\"], shell = \"y\" }",
                "either `argv` or `shell`, not both",
            ),
            (
                "name = \"shop\"\n[hooks]\ndrain = { timeout_secs = 3 }",
                "needs `argv`",
            ),
            (
                "name = \"shop\"\n[hooks]\ndrain = { argv = [\"x\"], timout = 3 }",
                "unknown field `timout`",
            ),
            (
                "name = \"shop\"\n[hooks]\ndrain = \"bin/drain\"",
                "an argument vector",
            ),
            ("name = \"shop\"\n[hooks]\ndrain = [1]", "invalid type"),
            (
                "name = \"shop\"\n[hooks]\nbefore_deploy = [\"x\"]",
                "unknown field `before_deploy`",
            ),
            ("name = \"shop\"\nkeep = 3", "unknown field `keep`"),
            (
                "name = \"shop\"\n[health]\ntimeout_secs = 3",
                "health: set `command`",
            ),
            (
                "name = \"shop\"\n[health]\nurl = \"http://x\"\ncommand = [\"x\"]",
                "not both",
            ),
            (
                "name = \"shop\"\n[health]\nurl = \"ftp://x/\"",
                "health.url 'ftp://x/' must start with http://",
            ),
            (
                "name = \"shop\"\n[health]\nurl = \"http:///x\"",
                "health.url 'http:///x' has no host",
            ),
            (
                "name = \"shop\"\n[health]\nurl = \"http://x/a b\"",
                "whitespace",
            ),
            (
                "name = \"shop\"\n[health]\nurl = \"http://x\"\nexpect_status = 42",
                "health.expect_status 42",
            ),
            (
                "name = \"shop\"\n[health]\nurl = \"http://x\"\ntimeout_secs = 0",
                "health.timeout_secs",
            ),
            (
                "name = \"shop\"\n[health]\ncommand = []",
                "health.command: the argument vector",
            ),
            (
                "name = \"shop\"\n[health]\ncommand = [\"x\"]\nexpect_body = \"ok\"",
                "health.expect_body applies to a `url`",
            ),
            (
                "name = \"shop\"\n[health]\nurl = \"http://x\"\nexpected_status = 200",
                "unknown field `expected_status`",
            ),
            ("name = \"shop\"\nname = \"again\"", "duplicate key"),
            ("name = ", "TOML parse error at line 1"),
        ];
        for (text, want) in cases {
            match DeployConfig::parse_toml(text) {
                Ok(c) => panic!("{text:?} was accepted: {c:?}"),
                Err(e) => assert!(e.0.contains(want), "{text:?}: {e} (wanted {want:?})"),
            }
        }
    }

    #[test]
    fn toml_errors_keep_line_and_column() {
        let err = DeployConfig::parse_toml(
            "name = \"shop\"\n\n[hooks]\nrestart = { argv = [\"x\"], nope = 1 }\n",
        )
        .unwrap_err();
        assert!(err.0.contains("line 4"), "{err}");
        assert!(err.0.contains("column"), "{err}");
        assert!(err.0.contains("unknown field `nope`"), "{err}");
    }

    #[test]
    fn oversized_config_is_refused() {
        let text = format!("name = \"shop\"\n#{}\n", "x".repeat(MAX_CONFIG_BYTES));
        assert!(DeployConfig::parse_toml(&text)
            .unwrap_err()
            .0
            .contains("the limit is"));
    }

    #[test]
    fn canonical_form_round_trips_and_writes_defaults() {
        let inputs = [
            FULL,
            "name = \"x\"",
            "name = \"x\"\n[health]\nurl = \"http://h/\"",
        ];
        for text in inputs {
            let parsed = DeployConfig::parse_toml(text).unwrap();
            let canonical = parsed.to_canonical_toml();
            let again =
                DeployConfig::parse_toml(&canonical).unwrap_or_else(|e| panic!("{canonical}\n{e}"));
            assert_eq!(again.to_canonical_toml(), canonical);
            assert!(canonical.contains("keep_releases = "), "{canonical}");
        }
        let health = DeployConfig::parse_toml(inputs[2])
            .unwrap()
            .to_canonical_toml();
        for line in [
            "expect_status = 200",
            "timeout_secs = 10",
            "retries = 3",
            "interval_secs = 2",
        ] {
            assert!(health.contains(line), "{health}");
        }
    }

    #[test]
    fn equivalent_configs_have_the_same_canonical_form() {
        let a = "name = \"x\"\n[hooks]\nrestart = [\"bin/r\"]\n";
        let b = "keep_releases = 5\nname = \"x\"\n\n[hooks.restart]\nargv = [\"bin/r\"]\n";
        let (a, b) = (
            DeployConfig::parse_toml(a).unwrap(),
            DeployConfig::parse_toml(b).unwrap(),
        );
        assert_eq!(a.to_canonical_toml(), b.to_canonical_toml());
        assert_eq!(DeployConfig::diff(&a, &b), "");
    }

    #[test]
    fn diff_of_configs() {
        let old = DeployConfig::parse_toml(FULL).unwrap();
        let mut new = old.clone();
        new.keep_releases = 7;
        new.hooks.restart = Some(Hook::Argv(vec!["bin/restart".into(), "--hard".into()]));
        let diff = DeployConfig::diff(&old, &new);
        assert!(diff.contains("- keep_releases = 5\n"), "{diff}");
        assert!(diff.contains("+ keep_releases = 7\n"), "{diff}");
        assert!(diff.contains("- restart = [\"bin/restart\"]\n"), "{diff}");
        assert!(
            diff.contains("+ restart = [\"bin/restart\", \"--hard\"]\n"),
            "{diff}"
        );
        assert!(diff
            .lines()
            .all(|l| l.starts_with("- ") || l.starts_with("+ ") || l.starts_with("  ")));
    }

    #[test]
    fn line_diffs() {
        // (old, new, expected)
        let cases = [
            ("", "", ""),
            ("a\nb\n", "a\nb\n", ""),
            ("a\n", "b\n", "- a\n+ b\n"),
            ("", "a\n", "+ a\n"),
            ("a\n", "", "- a\n"),
            ("a\nb\nc\n", "a\nc\n", "  a\n- b\n  c\n"),
            ("a\nc\n", "a\nb\nc\n", "  a\n+ b\n  c\n"),
            (
                "1\n2\n3\n4\n5\n6\n7\n8\n9\n",
                "1\nX\n3\n4\n5\n6\n7\nY\n9\n",
                "  1\n- 2\n+ X\n  3\n  4\n  …\n  6\n  7\n- 8\n+ Y\n  9\n",
            ),
            ("a\nb\nc\nd\n", "b\nc\nd\ne\n", "- a\n  b\n  c\n  d\n+ e\n"),
            ("x\ny\nz\n", "z\ny\nx\n", "- x\n- y\n  z\n+ y\n+ x\n"),
        ];
        for (old, new, want) in cases {
            assert_eq!(diff_lines(old, new), want, "{old:?} -> {new:?}");
        }
    }

    #[test]
    fn hooks_display_for_logs() {
        let cases = [
            (
                Hook::Argv(vec!["bin/x".into(), "a b".into()]),
                "bin/x 'a b'",
            ),
            (
                Hook::Shell {
                    shell: "echo 'hi' | cat".into(),
                    timeout_secs: None,
                },
                r"sh -c 'echo '\''hi'\'' | cat'",
            ),
        ];
        for (hook, want) in cases {
            assert_eq!(hook.to_string(), want);
        }
    }

    #[test]
    fn serializes_to_json_for_the_api() {
        let c = DeployConfig::parse_toml(FULL).unwrap();
        let json = serde_json::to_value(&c).unwrap();
        assert_eq!(json["hooks"]["restart"], serde_json::json!(["bin/restart"]));
        assert_eq!(
            json["hooks"]["drain"],
            serde_json::json!({"shell": "bin/lb drain | logger", "timeout_secs": 15})
        );
        let back: DeployConfig = serde_json::from_value(json).unwrap();
        assert_eq!(back, c);
    }
}
