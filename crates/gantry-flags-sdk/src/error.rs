//! The SDK's errors. Evaluation has none: only loading a document, configuration and the
//! calls that talk to the server can fail.

use std::path::PathBuf;

/// What went wrong loading flags or talking to the server.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// The text is not a client document (`{"version": 2, "features": [...]}`).
    #[error("not a valid flag document: {0}")]
    Document(String),
    /// The bootstrap file could not be read.
    #[error("cannot read the bootstrap file {path}: {message}")]
    Bootstrap { path: PathBuf, message: String },
    /// The configuration cannot work (a URL that does not parse, a token that cannot be
    /// sent as a header, no tokio runtime to run on).
    #[error("invalid configuration: {0}")]
    Config(String),
    /// The server could not be reached, or the connection broke.
    #[error("the server could not be reached: {0}")]
    Unreachable(String),
    /// The server refused the token (401 or 403).
    #[error("the server refused the token (HTTP {0})")]
    Unauthorized(u16),
    /// The server answered with an unexpected status.
    #[error("the server answered HTTP {0}")]
    Status(u16),
}
