//! Artifact bytes, content-addressed by SHA-256: a local directory (one server) or chunks in
//! the database (every server on one PostgreSQL sees them). An upload is written aside and
//! becomes visible under its digest only when complete, so a cut upload is never served.
//! The interface ([`Artifacts`]) leaves room for an S3-compatible store.

use std::path::PathBuf;
use std::sync::Arc;

use axum::body::Bytes;
use chrono::Utc;
use futures::{Stream, StreamExt};
use gantry_store::Store;
use sha2::{Digest, Sha256};
use tokio::io::{AsyncSeekExt, AsyncWriteExt};

/// Bytes per database chunk.
pub const CHUNK: usize = 1024 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum ArtifactError {
    #[error("the artifact is larger than this server accepts ({limit} bytes; [ship] max_artifact_bytes)")]
    TooLarge { limit: u64 },
    #[error("the upload was cut after {received} bytes: {reason}")]
    Cut { received: u64, reason: String },
    #[error("the artifact is empty")]
    Empty,
    #[error("artifact storage failed: {0}")]
    Io(#[from] std::io::Error),
    #[error(transparent)]
    Store(#[from] gantry_store::StoreError),
}

pub type ByteStream = std::pin::Pin<Box<dyn Stream<Item = std::io::Result<Bytes>> + Send>>;

/// Where artifacts live.
#[derive(Clone)]
pub enum Artifacts {
    Local(PathBuf),
    Database(Arc<dyn Store>),
}

impl Artifacts {
    pub fn kind(&self) -> &'static str {
        match self {
            Artifacts::Local(_) => "local",
            Artifacts::Database(_) => "database",
        }
    }

    fn path(dir: &std::path::Path, sha: &str) -> PathBuf {
        dir.join(&sha[..2]).join(sha)
    }

    /// Stores a body, hashing as it goes; returns `(sha256, size)`. At most `limit` bytes.
    pub async fn put<S, E>(&self, mut body: S, limit: u64) -> Result<(String, u64), ArtifactError>
    where
        S: Stream<Item = Result<Bytes, E>> + Unpin + Send,
        E: std::fmt::Display,
    {
        let mut hasher = Sha256::new();
        let mut size: u64 = 0;
        match self {
            Artifacts::Local(dir) => {
                let tmp_dir = dir.join("tmp");
                tokio::fs::create_dir_all(&tmp_dir).await?;
                let tmp = tmp_dir.join(ulid::Ulid::new().to_string());
                let result = async {
                    let mut file = tokio::fs::File::create(&tmp).await?;
                    while let Some(chunk) = body.next().await {
                        let chunk = chunk.map_err(|e| ArtifactError::Cut {
                            received: size,
                            reason: e.to_string(),
                        })?;
                        size += chunk.len() as u64;
                        if size > limit {
                            return Err(ArtifactError::TooLarge { limit });
                        }
                        hasher.update(&chunk);
                        file.write_all(&chunk).await?;
                    }
                    if size == 0 {
                        return Err(ArtifactError::Empty);
                    }
                    file.sync_all().await?;
                    Ok(())
                }
                .await;
                if let Err(e) = result {
                    let _ = tokio::fs::remove_file(&tmp).await;
                    return Err(e);
                }
                let sha = hex(&hasher.finalize());
                let dest = Self::path(dir, &sha);
                if let Some(parent) = dest.parent() {
                    tokio::fs::create_dir_all(parent).await?;
                }
                tokio::fs::rename(&tmp, &dest).await?;
                Ok((sha, size))
            }
            Artifacts::Database(store) => {
                let key = format!("upload-{}", ulid::Ulid::new());
                let mut n: u32 = 0;
                let mut buf: Vec<u8> = Vec::with_capacity(CHUNK);
                let result = async {
                    while let Some(chunk) = body.next().await {
                        let chunk = chunk.map_err(|e| ArtifactError::Cut {
                            received: size,
                            reason: e.to_string(),
                        })?;
                        size += chunk.len() as u64;
                        if size > limit {
                            return Err(ArtifactError::TooLarge { limit });
                        }
                        hasher.update(&chunk);
                        let mut rest: &[u8] = &chunk;
                        while !rest.is_empty() {
                            let take = (CHUNK - buf.len()).min(rest.len());
                            buf.extend_from_slice(&rest[..take]);
                            rest = &rest[take..];
                            if buf.len() == CHUNK {
                                store.put_blob_chunk(&key, n, &buf).await?;
                                n += 1;
                                buf.clear();
                            }
                        }
                    }
                    if !buf.is_empty() {
                        store.put_blob_chunk(&key, n, &buf).await?;
                        n += 1;
                    }
                    if size == 0 {
                        return Err(ArtifactError::Empty);
                    }
                    Ok(())
                }
                .await;
                if let Err(e) = result {
                    let _ = store.drop_blob_chunks(&key).await;
                    return Err(e);
                }
                let sha = hex(&hasher.finalize());
                store.commit_blob(&key, &sha, size, n, Utc::now()).await?;
                Ok((sha, size))
            }
        }
    }

    /// The stored size of an artifact, if it is here.
    pub async fn size(&self, sha: &str) -> Result<Option<u64>, ArtifactError> {
        match self {
            Artifacts::Local(dir) => match tokio::fs::metadata(Self::path(dir, sha)).await {
                Ok(m) => Ok(Some(m.len())),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
                Err(e) => Err(e.into()),
            },
            Artifacts::Database(store) => Ok(store.blob_size(sha).await?.map(|(s, _)| s)),
        }
    }

    /// The artifact's bytes from `start` on.
    pub async fn read(&self, sha: &str, start: u64) -> Result<ByteStream, ArtifactError> {
        match self {
            Artifacts::Local(dir) => {
                let mut file = tokio::fs::File::open(Self::path(dir, sha)).await?;
                file.seek(std::io::SeekFrom::Start(start)).await?;
                Ok(Box::pin(tokio_util::io::ReaderStream::with_capacity(
                    file,
                    256 * 1024,
                )))
            }
            Artifacts::Database(store) => {
                let chunks = store.blob_size(sha).await?.map_or(0, |(_, c)| c);
                let first = (start / CHUNK as u64) as u32;
                let skip = (start % CHUNK as u64) as usize;
                let store = store.clone();
                let sha = sha.to_string();
                Ok(Box::pin(futures::stream::iter(first..chunks).then(
                    move |n| {
                        let store = store.clone();
                        let sha = sha.clone();
                        async move {
                            let data = store
                                .blob_chunk(&sha, n)
                                .await
                                .map_err(std::io::Error::other)?
                                .ok_or_else(|| {
                                    std::io::Error::other(format!("chunk {n} of {sha} is missing"))
                                })?;
                            let data = if n == first && skip > 0 {
                                data.get(skip..).unwrap_or_default().to_vec()
                            } else {
                                data
                            };
                            Ok(Bytes::from(data))
                        }
                    },
                )))
            }
        }
    }

    pub async fn delete(&self, sha: &str) -> Result<(), ArtifactError> {
        match self {
            Artifacts::Local(dir) => match tokio::fs::remove_file(Self::path(dir, sha)).await {
                Ok(()) => Ok(()),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
                Err(e) => Err(e.into()),
            },
            Artifacts::Database(store) => Ok(store.delete_blob(sha).await?),
        }
    }
}

pub fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes.iter().fold(String::with_capacity(64), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}
