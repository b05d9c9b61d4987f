//! The release mechanics against real files in temporary directories, real processes and
//! a real HTTP server on the loopback address.

mod fetch;
mod health;
mod hooks;
mod layout;
mod server;
mod unpack;

use std::path::Path;

use flate2::write::GzEncoder;
use flate2::Compression;

/// One entry of a test archive. Paths and link targets are written as raw header bytes,
/// so that archives the `tar` builder would refuse can be made.
pub enum Ent<'a> {
    File(&'a str, &'a [u8], u32),
    Dir(&'a str),
    Symlink(&'a str, &'a str),
    HardLink(&'a str, &'a str),
    Fifo(&'a str),
    CharDevice(&'a str),
}

/// A `.tar.gz` with `entries`, written to `path`.
pub fn write_archive(path: &Path, entries: &[Ent<'_>]) {
    let gz = GzEncoder::new(Vec::new(), Compression::fast());
    let mut builder = tar::Builder::new(gz);
    for entry in entries {
        let mut header = tar::Header::new_gnu();
        let (name, data, kind, mode, link): (&str, &[u8], tar::EntryType, u32, &str) = match entry {
            Ent::File(name, data, mode) => (name, data, tar::EntryType::Regular, *mode, ""),
            Ent::Dir(name) => (name, b"", tar::EntryType::Directory, 0o755, ""),
            Ent::Symlink(name, target) => (name, b"", tar::EntryType::Symlink, 0o777, target),
            Ent::HardLink(name, target) => (name, b"", tar::EntryType::Link, 0o644, target),
            Ent::Fifo(name) => (name, b"", tar::EntryType::Fifo, 0o644, ""),
            Ent::CharDevice(name) => (name, b"", tar::EntryType::Char, 0o644, ""),
        };
        header.set_entry_type(kind);
        header.set_size(data.len() as u64);
        header.set_mode(mode);
        let gnu = header.as_gnu_mut().unwrap();
        gnu.name[..name.len()].copy_from_slice(name.as_bytes());
        gnu.linkname[..link.len()].copy_from_slice(link.as_bytes());
        header.set_cksum();
        builder.append(&header, data).unwrap();
    }
    let gz = builder.into_inner().unwrap();
    std::fs::write(path, gz.finish().unwrap()).unwrap();
}
