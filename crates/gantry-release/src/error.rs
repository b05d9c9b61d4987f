//! What can go wrong installing a release; every message names the path, URL or archive entry.

use std::io;
use std::path::{Path, PathBuf};

/// What went wrong with a release step. Messages name the file, the URL or the archive
/// entry, because the agent reports them to the operator as they are.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    #[error("cannot {what} {}: {source}", path.display())]
    Io {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// An argument broke a rule (a bad service or release name, a malformed digest).
    #[error("{0}")]
    Invalid(String),
    #[error("sha-256 mismatch for {}: expected {expected}, got {actual}", path.display())]
    ChecksumMismatch {
        path: PathBuf,
        expected: String,
        actual: String,
    },
    #[error("download of {url} failed: {message}")]
    Download { url: String, message: String },
    /// An archive entry that would escape or misuse the release directory.
    #[error("archive entry '{entry}' refused: {reason}")]
    UnsafeEntry { entry: String, reason: String },
    /// A corrupt or oversized archive.
    #[error("archive {}: {message}", path.display())]
    Archive { path: PathBuf, message: String },
    /// The service's layout is not what this crate made (a `current` that is not a link
    /// into `releases/`, a release directory elsewhere).
    #[error("{0}")]
    Layout(String),
    /// A background task panicked or was cancelled.
    #[error("background task failed: {0}")]
    Task(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// `map_err` helper: an I/O error with what was being done and to which path.
    pub(crate) fn io(what: &'static str, path: &Path) -> impl FnOnce(io::Error) -> Error {
        let path = path.to_path_buf();
        move |source| Error::Io { what, path, source }
    }
}
