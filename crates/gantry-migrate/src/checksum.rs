//! Checksums of migration files and statements: SHA-256 in lower-case hex, taken after the
//! text is normalised (a leading UTF-8 byte-order mark removed, CRLF turned into LF), so a
//! file checked out on Windows or saved by an editor that adds a BOM keeps its checksum.
//! A statement's checksum is taken over its normalised text with surrounding whitespace
//! trimmed.

use std::borrow::Cow;

use sha2::{Digest, Sha256};

/// The text with a leading byte-order mark removed and every CRLF turned into LF.
/// A lone CR is kept: it is not a line end Gantry rewrites.
pub fn normalize(text: &str) -> Cow<'_, str> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    if text.contains("\r\n") {
        Cow::Owned(text.replace("\r\n", "\n"))
    } else {
        Cow::Borrowed(text)
    }
}

/// SHA-256 of `bytes` as 64 lower-case hex digits.
pub fn sha256_hex(bytes: &[u8]) -> String {
    let digest = Sha256::digest(bytes);
    let mut out = String::with_capacity(64);
    for byte in digest {
        out.push(char::from(HEX[usize::from(byte >> 4)]));
        out.push(char::from(HEX[usize::from(byte & 0x0f)]));
    }
    out
}

const HEX: &[u8; 16] = b"0123456789abcdef";

/// The checksum of a whole file: SHA-256 of its normalised text.
pub fn file_checksum(text: &str) -> String {
    sha256_hex(normalize(text).as_bytes())
}

/// The checksum of one statement: SHA-256 of its normalised, trimmed text.
pub fn statement_checksum(text: &str) -> String {
    sha256_hex(normalize(text).trim().as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_digest() {
        assert_eq!(
            sha256_hex(b"abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn file_checksum_ignores_bom_and_crlf() {
        let cases = [
            ("select 1;\n", "select 1;\n"),
            ("\u{feff}select 1;\n", "select 1;\n"),
            ("select 1;\r\n", "select 1;\n"),
            ("\u{feff}a\r\nb\r\n", "a\nb\n"),
        ];
        for (a, b) in cases {
            assert_eq!(file_checksum(a), file_checksum(b), "{a:?} vs {b:?}");
        }
        assert_ne!(file_checksum("a\rb"), file_checksum("a\nb"));
        assert_ne!(file_checksum("select 1;"), file_checksum("select 1;\n"));
    }

    #[test]
    fn statement_checksum_trims() {
        assert_eq!(
            statement_checksum("  select 1\r\n"),
            statement_checksum("select 1")
        );
        assert_eq!(statement_checksum("select 1"), sha256_hex(b"select 1"));
        assert_ne!(
            statement_checksum("select 1"),
            statement_checksum("select  1")
        );
    }

    #[test]
    fn normalize_borrows_when_clean() {
        assert!(matches!(normalize("a\nb"), Cow::Borrowed(_)));
        assert_eq!(normalize("\u{feff}x\r\n"), "x\n");
    }
}
