//! SHA-256 of files, read in blocks off the async runtime, and the check against an expected
//! digest.

use std::fmt::Write as _;
use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::{blocking, Error, Result};

/// The sha-256 of a file, as 64 lowercase hex digits.
pub async fn sha256_file(path: &Path) -> Result<String> {
    let path = path.to_path_buf();
    blocking(move || sha256_file_blocking(&path)).await
}

pub(crate) fn sha256_file_blocking(path: &Path) -> Result<String> {
    let mut file = File::open(path).map_err(Error::io("open", path))?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = file.read(&mut buf).map_err(Error::io("read", path))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(to_hex(&hasher.finalize()))
}

pub(crate) fn to_hex(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        // Writing to a String cannot fail.
        let _ = write!(out, "{b:02x}");
    }
    out
}

/// Normalizes an expected digest (surrounding space, upper case) and checks that it is 64
/// hex digits.
pub(crate) fn normalize_digest(expected: &str) -> Result<String> {
    let digest = expected.trim().to_ascii_lowercase();
    if digest.len() != 64 || !digest.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(Error::Invalid(format!(
            "expected sha-256 '{expected}' is not 64 hex digits"
        )));
    }
    Ok(digest)
}

/// Checks that a file's sha-256 is `expected` (hex, either case). A mismatch names both
/// digests.
pub async fn verify_sha256(path: &Path, expected: &str) -> Result<()> {
    let expected = normalize_digest(expected)?;
    let actual = sha256_file(path).await?;
    check(path.to_path_buf(), expected, actual)
}

pub(crate) fn check(path: PathBuf, expected: String, actual: String) -> Result<()> {
    if actual == expected {
        Ok(())
    } else {
        Err(Error::ChecksumMismatch {
            path,
            expected,
            actual,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn digests() {
        let dir = tempfile::tempdir().unwrap();
        // (content, sha-256)
        let cases: [(&[u8], &str); 2] = [
            (
                b"",
                "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
            ),
            (
                b"abc",
                "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad",
            ),
        ];
        for (i, (content, digest)) in cases.into_iter().enumerate() {
            let path = dir.path().join(format!("f{i}"));
            std::fs::write(&path, content).unwrap();
            assert_eq!(sha256_file(&path).await.unwrap(), digest);
            verify_sha256(&path, digest).await.unwrap();
            verify_sha256(&path, &format!(" {} ", digest.to_uppercase()))
                .await
                .unwrap();
        }
        let path = dir.path().join("f1");
        let wrong = "0".repeat(64);
        let err = verify_sha256(&path, &wrong).await.unwrap_err().to_string();
        assert!(err.contains(&wrong) && err.contains(cases[1].1), "{err}");
        let err = verify_sha256(&path, "abc").await.unwrap_err().to_string();
        assert!(err.contains("not 64 hex digits"), "{err}");
        let err = sha256_file(&dir.path().join("missing"))
            .await
            .unwrap_err()
            .to_string();
        assert!(err.contains("cannot open"), "{err}");
    }
}
