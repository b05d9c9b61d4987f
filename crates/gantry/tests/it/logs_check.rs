//! Every log the suite's processes write (servers, agents, the CLI's stderr) is kept under
//! `target/test-logs/`, and none may hold a secret: a token (anything shaped like one, and
//! every secret a test registered), a host token, a database password, a ping key or a
//! dashboard session id.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

/// Secrets this test process used, besides what looks like a token.
static SECRETS: Mutex<Vec<String>> = Mutex::new(Vec::new());

/// Log files this test process wrote.
static FILES: Mutex<Vec<PathBuf>> = Mutex::new(Vec::new());

static NEXT: AtomicUsize = AtomicUsize::new(0);

/// Remembers a secret the logs must not hold (ignores short or empty values).
pub fn secret(value: &str) {
    let value = value.trim();
    if value.len() >= 8 {
        let mut secrets = SECRETS.lock().unwrap_or_else(|e| e.into_inner());
        if !secrets.iter().any(|s| s == value) {
            secrets.push(value.to_string());
        }
    }
}

/// The password of a database URL, remembered as a secret.
pub fn database_url(url: &str) {
    if let Some((_, rest)) = url.split_once("://") {
        if let Some((credentials, _)) = rest.split_once('@') {
            if let Some((_, password)) = credentials.split_once(':') {
                if !password.is_empty() {
                    secret(password);
                }
            }
        }
    }
}

/// `target/test-logs/`.
pub fn dir() -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .parent()
        .expect("the target directory")
        .join("test-logs");
    std::fs::create_dir_all(&dir).expect("create target/test-logs");
    dir
}

/// The running test's name, for file names.
fn test_name() -> String {
    let thread = std::thread::current();
    let name = match thread.name() {
        Some(name) if name != "main" => name.to_string(),
        // One test per process (nextest): its name is an argument.
        _ => std::env::args()
            .skip(1)
            .find(|a| !a.starts_with('-'))
            .unwrap_or_else(|| "it".to_string()),
    };
    name.replace("::", ".").replace(['/', ' '], "_")
}

/// A new log file for a process of `kind` (server, agent, cli).
pub fn file(kind: &str) -> (File, PathBuf) {
    let path = dir().join(format!(
        "{}.{}.{}.{kind}.log",
        test_name(),
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    ));
    let file = File::create(&path).expect("create a test log");
    FILES
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .push(path.clone());
    (file, path)
}

/// Whether `text` holds something shaped like a Gantry token: `gantry_` and 43 characters of
/// URL-safe base64 (256 bits).
fn token_shaped(text: &str) -> Option<&str> {
    let mut rest = text;
    while let Some(at) = rest.find("gantry_") {
        let tail = &rest[at + 7..];
        let run = tail
            .bytes()
            .take_while(|b| b.is_ascii_alphanumeric() || *b == b'-' || *b == b'_')
            .count();
        if run >= 43 {
            return Some(&rest[at..at + 7 + run]);
        }
        rest = tail;
    }
    None
}

/// What in `text` is a secret, if anything.
pub fn leaks(text: &str) -> Vec<String> {
    let mut found = Vec::new();
    if let Some(token) = token_shaped(text) {
        found.push(format!("a token ({}…)", &token[..12]));
    }
    for secret in SECRETS.lock().unwrap_or_else(|e| e.into_inner()).iter() {
        if text.contains(secret.as_str()) {
            found.push(format!(
                "a registered secret ({}…)",
                &secret[..6.min(secret.len())]
            ));
        }
    }
    found
}

/// Checks every log file this process wrote so far; panics naming the file and the secret.
/// Not while the test is already failing (a panic in a panic aborts, and hides the first).
pub fn check_all() {
    if std::thread::panicking() {
        return;
    }
    let files = FILES.lock().unwrap_or_else(|e| e.into_inner()).clone();
    let mut problems = Vec::new();
    for path in files {
        let Ok(bytes) = std::fs::read(&path) else {
            continue;
        };
        for leak in leaks(&String::from_utf8_lossy(&bytes)) {
            problems.push(format!("{}: {leak}", path.display()));
        }
    }
    assert!(
        problems.is_empty(),
        "secrets in the logs:\n{}",
        problems.join("\n")
    );
}

#[test]
fn a_token_shaped_string_and_a_registered_secret_are_found() {
    let token = format!("gantry_{}", "A".repeat(43));
    assert!(!leaks(&format!("bearer {token} sent")).is_empty());
    assert!(leaks("gantry_nope and gantry_short").is_empty());
    database_url("postgres://u:hunter2-password@db/x");
    assert!(!leaks("connect postgres://u:hunter2-password@db/x").is_empty());
    assert!(leaks("connect postgres://u@db/x").is_empty());
}
