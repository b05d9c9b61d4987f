//! A release's health check: an HTTP URL (status and optional body text) or a command, with
//! retries.

use std::path::Path;
use std::time::Duration;

use gantry_core::HealthCheck;

use crate::hook::run_hook;

/// Most bytes of a health answer's body that are read and compared.
const MAX_BODY_BYTES: usize = 64 * 1024;
/// Most characters of a body or of a command's output quoted in an error.
const MAX_QUOTED_CHARS: usize = 300;
/// Lines of a health command's output kept for the error message.
const TAIL_LINES: usize = 10;

/// Checks a release's health as the config says: `url` is fetched with GET and must answer
/// `expect_status` (and contain `expect_body`); `command` runs like a hook in `cwd` with
/// `env` and must exit 0. Each attempt is limited to `timeout_secs`; a failed check is
/// tried `retries` more times, `interval_secs` apart. The error says what was expected and
/// what came back on the last attempt.
pub async fn health_check(
    check: &HealthCheck,
    cwd: &Path,
    env: &[(String, String)],
) -> Result<(), String> {
    let timeout = Duration::from_secs(check.timeout_secs.max(1));
    let client = match &check.url {
        Some(_) => Some(
            reqwest::Client::builder()
                .timeout(timeout)
                .no_proxy()
                .build()
                .map_err(|e| format!("cannot make an HTTP client for the health check: {e}"))?,
        ),
        None => None,
    };
    let attempts = check.attempts();
    let mut last = String::from("the check did not run");
    for attempt in 1..=attempts {
        let result = match (&check.url, &check.command, &client) {
            (Some(url), _, Some(client)) => check_url(client, url, check).await,
            (None, Some(command), _) => {
                let outcome = run_hook(command, cwd, env, timeout, TAIL_LINES).await;
                if outcome.success {
                    Ok(())
                } else {
                    let how = if outcome.timed_out {
                        format!("it did not finish within {}s", timeout.as_secs())
                    } else if let Some(code) = outcome.exit_code {
                        format!("it exited with {code}")
                    } else if let Some(signal) = outcome.signal {
                        format!("it was killed by signal {signal}")
                    } else {
                        "it did not run".to_string()
                    };
                    Err(format!(
                        "expected `{command}` to exit 0; {how}; output: {}",
                        quote(outcome.tail.trim_end())
                    ))
                }
            }
            _ => Err("the health check has neither `url` nor `command`".to_string()),
        };
        match result {
            Ok(()) => return Ok(()),
            Err(message) => {
                tracing::debug!(attempt, attempts, "health check failed: {message}");
                last = message;
            }
        }
        if attempt < attempts {
            tokio::time::sleep(Duration::from_secs(check.interval_secs)).await;
        }
    }
    Err(format!("{last} (after {attempts} attempts)"))
}

async fn check_url(client: &reqwest::Client, url: &str, check: &HealthCheck) -> Result<(), String> {
    let expected = match &check.expect_body {
        Some(body) => format!(
            "status {} and a body containing {}",
            check.expect_status,
            quote(body)
        ),
        None => format!("status {}", check.expect_status),
    };
    let mut response = client.get(url).send().await.map_err(|e| {
        format!(
            "GET {url}: expected {expected}, got no answer: {}",
            crate::error_chain(&e)
        )
    })?;
    let status = response.status().as_u16();
    let mut body = Vec::new();
    let mut body_error = None;
    loop {
        match response.chunk().await {
            Ok(Some(chunk)) => {
                let room = MAX_BODY_BYTES - body.len();
                body.extend_from_slice(&chunk[..chunk.len().min(room)]);
                if body.len() >= MAX_BODY_BYTES {
                    break;
                }
            }
            Ok(None) => break,
            Err(e) => {
                body_error = Some(crate::error_chain(&e));
                break;
            }
        }
    }
    let body = String::from_utf8_lossy(&body);
    let body_ok = check
        .expect_body
        .as_deref()
        .is_none_or(|want| body.contains(want));
    if status == check.expect_status && body_ok && body_error.is_none() {
        return Ok(());
    }
    let mut got = format!("status {status} and body {}", quote(&body));
    if let Some(e) = body_error {
        got.push_str(&format!(" (reading the body failed: {e})"));
    }
    Err(format!("GET {url}: expected {expected}, got {got}"))
}

/// A string quoted for an error message, shortened to [`MAX_QUOTED_CHARS`].
fn quote(s: &str) -> String {
    let mut short: String = s.chars().take(MAX_QUOTED_CHARS).collect();
    if short.len() < s.len() {
        short.push('…');
    }
    format!("{short:?}")
}
