//! Which token a command line uses, in order: `--token` (`GANTRY_TOKEN`), `--token-file`
//! (`GANTRY_TOKEN_FILE`), `~/.config/gantry/token`, and, when the server is on this
//! machine, `<data-dir>/admin.token` (`GANTRY_DATA_DIR`, default `./gantry-data`).

use std::path::{Path, PathBuf};

use anyhow::Context;

use crate::GlobalArgs;

pub fn client(global: &GlobalArgs) -> anyhow::Result<gantry_client::Client> {
    let token = resolve(global)?;
    Ok(gantry_client::Client::new(&global.url, token)?)
}

pub fn resolve(global: &GlobalArgs) -> anyhow::Result<Option<String>> {
    if let Some(token) = &global.token {
        return Ok(Some(token.trim().to_string()));
    }
    if let Some(path) = &global.token_file {
        return read_token(path).map(Some);
    }
    if let Some(path) = user_token_file().filter(|p| p.exists()) {
        return read_token(&path).map(Some);
    }
    if is_local(&global.url) {
        let data_dir = std::env::var_os("GANTRY_DATA_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from("gantry-data"));
        let path = data_dir.join(gantry_server::ADMIN_TOKEN_FILE);
        if path.exists() {
            return read_token(&path).map(Some);
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
