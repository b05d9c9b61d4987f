//! Which token a command line uses, in order: `--token`, then `--token-file` given on the
//! command line; then `GANTRY_TOKEN`, then `GANTRY_TOKEN_FILE` inherited from the
//! environment; then `~/.config/gantry/token`; and, when the server is on this machine,
//! `<data-dir>/admin.token` (`GANTRY_DATA_DIR`, default `./gantry-data`). A token named on
//! the command line always wins over one inherited, so a command meant to run with a narrow
//! token never runs as the admin an environment variable names.

use std::path::{Path, PathBuf};

use anyhow::Context;

use crate::GlobalArgs;

/// Whether `--token` and `--token-file` were given on the command line (else, when set,
/// they came from `GANTRY_TOKEN` / `GANTRY_TOKEN_FILE`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Sources {
    pub token_on_command_line: bool,
    pub token_file_on_command_line: bool,
}

impl Sources {
    /// From the parsed command line (global options may sit on any subcommand level).
    pub fn of(matches: &clap::ArgMatches) -> Sources {
        let on_line = |id: &str| {
            let mut m = Some(matches);
            while let Some(level) = m {
                if let Ok(Some(source)) = level.try_get_raw(id).map(|_| level.value_source(id)) {
                    if source == clap::parser::ValueSource::CommandLine {
                        return true;
                    }
                }
                m = level.subcommand().map(|(_, sub)| sub);
            }
            false
        };
        Sources {
            token_on_command_line: on_line("token"),
            token_file_on_command_line: on_line("token_file"),
        }
    }
}

pub fn client(global: &GlobalArgs) -> anyhow::Result<gantry_client::Client> {
    let token = resolve(global)?.map(|(token, _)| token);
    Ok(gantry_client::Client::new(&global.url, token)?)
}

/// The token and where it came from.
pub fn resolve(global: &GlobalArgs) -> anyhow::Result<Option<(String, String)>> {
    let s = global.token_source;
    let from_line = [
        (s.token_on_command_line, 0),
        (s.token_file_on_command_line, 1),
        (!s.token_on_command_line, 2),
        (!s.token_file_on_command_line, 3),
    ];
    for (applies, which) in from_line {
        if !applies {
            continue;
        }
        match which {
            0 | 2 => {
                if let Some(token) = &global.token {
                    let source = if which == 0 {
                        "--token"
                    } else {
                        "GANTRY_TOKEN"
                    };
                    return Ok(Some((token.trim().to_string(), source.to_string())));
                }
            }
            _ => {
                if let Some(path) = &global.token_file {
                    let source = if which == 1 {
                        format!("--token-file {}", path.display())
                    } else {
                        format!("GANTRY_TOKEN_FILE {}", path.display())
                    };
                    return read_token(path).map(|t| Some((t, source)));
                }
            }
        }
    }
    if let Some(path) = user_token_file().filter(|p| p.exists()) {
        let source = path.display().to_string();
        return read_token(&path).map(|t| Some((t, source)));
    }
    if is_local(&global.url) {
        let data_dir = std::env::var_os("GANTRY_DATA_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from("gantry-data"));
        let path = data_dir.join(gantry_server::ADMIN_TOKEN_FILE);
        if path.exists() {
            let source = path.display().to_string();
            return read_token(&path).map(|t| Some((t, source)));
        }
    }
    Ok(None)
}

fn read_token(path: &Path) -> anyhow::Result<String> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read the token file {}", path.display()))?;
    let token = text.trim();
    if token.is_empty() {
        anyhow::bail!("the token file {} is empty", path.display());
    }
    Ok(token.to_string())
}

fn user_token_file() -> Option<PathBuf> {
    let config = std::env::var_os("XDG_CONFIG_HOME")
        .map(PathBuf::from)
        .filter(|p| p.is_absolute())
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".config")))?;
    Some(config.join("gantry").join("token"))
}

/// Whether the URL names this machine (so a local admin token file may be used).
fn is_local(url: &str) -> bool {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let authority = rest.split('/').next().unwrap_or("");
    let host = match authority.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or(""),
        None => authority.rsplit_once(':').map_or(authority, |(h, _)| h),
    };
    matches!(host, "127.0.0.1" | "localhost" | "::1")
}

#[cfg(test)]
mod tests {
    #[test]
    fn local_urls() {
        for url in [
            "http://127.0.0.1:7070",
            "http://localhost",
            "https://[::1]:7070/x",
        ] {
            assert!(super::is_local(url), "{url}");
        }
        for url in ["http://gantry.internal:7070", "https://10.0.0.1"] {
            assert!(!super::is_local(url), "{url}");
        }
    }
}
