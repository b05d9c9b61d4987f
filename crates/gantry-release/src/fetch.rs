//! Downloading an artifact: to a `.part` file, resumed with an HTTP range after a cut
//! connection, size-capped, verified by SHA-256 before it is renamed into place.

use std::ffi::OsString;
use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;

use reqwest::header::{CONTENT_RANGE, RANGE};
use reqwest::StatusCode;
use sha2::{Digest, Sha256};
use tokio::fs::{self, File, OpenOptions};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::digest::{check, normalize_digest, to_hex};
use crate::{Error, Result};

/// How many times [`fetch`] tries before it gives up on a download that keeps failing.
pub const FETCH_ATTEMPTS: u32 = 5;
const FIRST_BACKOFF: Duration = Duration::from_millis(200);
const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// Why one attempt failed, and whether another may succeed.
enum Failure {
    Retry(String),
    Fatal(Error),
}

/// Downloads `url` to `dest`, verifying its sha-256.
///
/// The body goes to `<dest>.part` first. When an attempt is cut (a dropped connection, a
/// 5xx), the next one asks for the rest with a `Range` request; a server that ignores
/// `Range` and answers 200 starts the file over. Up to [`FETCH_ATTEMPTS`] attempts with
/// exponential backoff. More than `max_bytes` in all is refused. On a digest mismatch the
/// partial file is deleted; on success it is renamed to `dest`. `bearer` is sent as an
/// `Authorization: Bearer` header.
pub async fn fetch(
    client: &reqwest::Client,
    url: &str,
    bearer: Option<&str>,
    dest: &Path,
    expected_sha256: &str,
    max_bytes: u64,
) -> Result<()> {
    let expected = normalize_digest(expected_sha256)?;
    let part = part_path(dest);
    let mut backoff = FIRST_BACKOFF;
    let mut attempt = 1;
    loop {
        match attempt_once(client, url, bearer, &part, max_bytes).await {
            Ok(()) => break,
            Err(Failure::Fatal(e)) => return Err(e),
            Err(Failure::Retry(message)) if attempt >= FETCH_ATTEMPTS => {
                return Err(Error::Download {
                    url: url.to_string(),
                    message: format!("{message} (after {attempt} attempts)"),
                })
            }
            Err(Failure::Retry(message)) => {
                tracing::warn!(url, attempt, "download attempt failed, retrying: {message}");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(MAX_BACKOFF);
                attempt += 1;
            }
        }
    }

    let actual = sha256_of(&part).await?;
    if let Err(e) = check(dest.to_path_buf(), expected, actual) {
        let _ = fs::remove_file(&part).await;
        return Err(e);
    }
    fs::rename(&part, dest)
        .await
        .map_err(Error::io("rename download to", dest))?;
    if let Some(dir) = dest.parent().filter(|d| !d.as_os_str().is_empty()) {
        let dir = dir.to_path_buf();
        crate::blocking(move || crate::sync_dir(&dir)).await?;
    }
    Ok(())
}

fn part_path(dest: &Path) -> PathBuf {
    let mut name = dest.file_name().map(OsString::from).unwrap_or_default();
    name.push(".part");
    dest.with_file_name(name)
}

async fn sha256_of(path: &Path) -> Result<String> {
    let mut file = File::open(path).await.map_err(Error::io("open", path))?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = file.read(&mut buf).await.map_err(Error::io("read", path))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(to_hex(&hasher.finalize()))
}

async fn partial_len(part: &Path) -> Result<u64, Failure> {
    match fs::metadata(part).await {
        Ok(meta) => Ok(meta.len()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(0),
        Err(e) => Err(Failure::Fatal(Error::io("inspect", part)(e))),
    }
}

async fn remove_part(part: &Path) -> Result<(), Failure> {
    match fs::remove_file(part).await {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(Failure::Fatal(Error::io("remove", part)(e))),
    }
}

/// The first byte of a `Content-Range: bytes START-END/TOTAL` header.
fn range_start(value: &str) -> Option<u64> {
    let rest = value.trim().strip_prefix("bytes")?.trim_start();
    let (start, _) = rest.split_once('-')?;
    start.trim().parse().ok()
}

async fn attempt_once(
    client: &reqwest::Client,
    url: &str,
    bearer: Option<&str>,
    part: &Path,
    max_bytes: u64,
) -> Result<(), Failure> {
    let too_large = || {
        Failure::Fatal(Error::Download {
            url: url.to_string(),
            message: format!("the artifact is larger than the limit of {max_bytes} bytes"),
        })
    };
    let mut have = partial_len(part).await?;
    if have > max_bytes {
        remove_part(part).await?;
        have = 0;
    }

    let mut request = client.get(url);
    if let Some(token) = bearer {
        request = request.bearer_auth(token);
    }
    if have > 0 {
        request = request.header(RANGE, format!("bytes={have}-"));
    }
    let mut response = match request.send().await {
        Ok(response) => response,
        Err(e) if e.is_builder() => {
            return Err(Failure::Fatal(Error::Download {
                url: url.to_string(),
                message: crate::error_chain(&e),
            }))
        }
        Err(e) => return Err(Failure::Retry(crate::error_chain(&e))),
    };

    let status = response.status();
    let append = match status {
        StatusCode::PARTIAL_CONTENT if have > 0 => {
            let start = response
                .headers()
                .get(CONTENT_RANGE)
                .and_then(|v| v.to_str().ok())
                .and_then(range_start);
            if start != Some(have) {
                // Not the range asked for: start over on the next attempt.
                remove_part(part).await?;
                return Err(Failure::Retry(format!(
                    "asked for bytes from {have}, the server sent a range starting at {}",
                    start.map_or("an unreadable position".to_string(), |s| s.to_string())
                )));
            }
            true
        }
        StatusCode::OK => false,
        StatusCode::RANGE_NOT_SATISFIABLE if have > 0 => {
            remove_part(part).await?;
            return Err(Failure::Retry(
                "the server refused to resume the partial download; starting over".into(),
            ));
        }
        s if s.is_server_error()
            || s == StatusCode::REQUEST_TIMEOUT
            || s == StatusCode::TOO_MANY_REQUESTS =>
        {
            return Err(Failure::Retry(format!("the server answered {s}")));
        }
        s => {
            return Err(Failure::Fatal(Error::Download {
                url: url.to_string(),
                message: format!("the server answered {s}"),
            }))
        }
    };
    let mut written = if append { have } else { 0 };
    if let Some(len) = response.content_length() {
        if written.saturating_add(len) > max_bytes {
            remove_part(part).await?;
            return Err(too_large());
        }
    }

    let mut file = OpenOptions::new()
        .create(true)
        .write(true)
        .append(append)
        .truncate(!append)
        .open(part)
        .await
        .map_err(|e| Failure::Fatal(Error::io("open", part)(e)))?;
    let outcome = loop {
        match response.chunk().await {
            Ok(Some(chunk)) => {
                let len = chunk.len() as u64;
                if written.saturating_add(len) > max_bytes {
                    drop(file);
                    remove_part(part).await?;
                    return Err(too_large());
                }
                if let Err(e) = file.write_all(&chunk).await {
                    break Err(Failure::Fatal(Error::io("write", part)(e)));
                }
                written += len;
            }
            Ok(None) => break Ok(()),
            Err(e) => break Err(Failure::Retry(crate::error_chain(&e))),
        }
    };
    // Whatever arrived stays on disk for the next attempt to resume from.
    let flushed = async {
        file.flush().await?;
        file.sync_all().await
    }
    .await;
    outcome?;
    flushed.map_err(|e| Failure::Fatal(Error::io("write", part)(e)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_range() {
        // (header, start)
        let cases = [
            ("bytes 100-199/200", Some(100)),
            ("bytes 0-0/1", Some(0)),
            ("bytes */200", None),
            ("items 1-2/3", None),
            ("", None),
        ];
        for (header, want) in cases {
            assert_eq!(range_start(header), want, "{header}");
        }
    }

    #[test]
    fn part_paths() {
        assert_eq!(
            part_path(Path::new("d/a.tar.gz")),
            PathBuf::from("d/a.tar.gz.part")
        );
    }
}
