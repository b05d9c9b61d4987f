//! Host-side release mechanics for the agent: fetch a build artifact, verify its sha-256,
//! unpack it into a new release directory, link the service's shared paths into it, run the
//! deploy config's hooks, switch the `current` link atomically, check health, and prune old
//! releases.
//!
//! A service lives under the agent's root:
//!
//! ```text
//! <root>/<service>/releases/<build>-<timestamp>/   one directory per release
//! <root>/<service>/current -> releases/<name>       the active release (relative symlink)
//! <root>/<service>/shared/                          files that outlive releases
//! ```
//!
//! Invariant: this crate only touches files under the service's directory
//! (`<root>/<service>`), and only runs the argument vectors that the operator's deploy
//! config names. It never runs a shell unless a hook of that config says `shell`. An
//! archive cannot write outside its release directory: absolute paths, `..` components,
//! escaping symlinks, hard links and device files are refused, and nothing is written
//! through a symlink the archive made.

mod digest;
mod error;
mod fetch;
mod health;
mod hook;
mod layout;
mod prune;
mod shared;
mod switch;
mod unpack;

pub use digest::{sha256_file, verify_sha256};
pub use error::{Error, Result};
pub use fetch::{fetch, FETCH_ATTEMPTS};
pub use health::health_check;
pub use hook::{hook_timeout, run_hook, HookOutcome, MAX_TAIL_BYTES};
pub use layout::{release_name, Release, ServiceLayout, UNPACK_PREFIX};
pub use prune::prune;
pub use shared::link_shared;
pub use switch::switch_current;
pub use unpack::{unpack, MAX_ENTRIES};

/// Runs blocking file-system work off the async runtime.
async fn blocking<T, F>(f: F) -> Result<T>
where
    T: Send + 'static,
    F: FnOnce() -> Result<T> + Send + 'static,
{
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| Error::Task(e.to_string()))?
}

/// A random suffix for temporary names.
fn random_suffix() -> String {
    format!("{:016x}", rand::random::<u64>())
}

/// Fsyncs a directory, so that a rename or a new entry in it survives a crash.
fn sync_dir(dir: &std::path::Path) -> Result<()> {
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(Error::io("sync directory", dir))
}

/// A reqwest error with its causes, which say what actually happened.
fn error_chain(e: &reqwest::Error) -> String {
    let mut message = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(cause) = source {
        message.push_str(": ");
        message.push_str(&cause.to_string());
        source = cause.source();
    }
    message
}
