//! Unpacking a tar.gz into a hidden directory renamed into place, refusing every entry that
//! could write outside the release.

use std::ffi::OsStr;
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufReader, Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use flate2::read::GzDecoder;
use tar::EntryType;

use crate::layout::{validate_release_name, UNPACK_PREFIX};
use crate::{blocking, random_suffix, sync_dir, Error, Result, ServiceLayout};

/// Most entries an archive may have, against archives of millions of empty files.
pub const MAX_ENTRIES: u64 = 1_000_000;

/// Unpacks a `.tar.gz` into `releases/<release_name>` and returns that path.
///
/// The archive goes into a temporary directory in `releases/` (named
/// [`UNPACK_PREFIX`]`…`), which is renamed to its final name only when every entry is in,
/// so a partial unpack is never visible as a release. Refused, with an error naming the
/// entry: absolute paths, `..` components, symlinks whose target is absolute or leaves the
/// release, hard links, device and fifo entries, and any entry below a symlink. More than
/// `max_bytes` of file content in all is refused too. Set-id bits are dropped from modes.
pub async fn unpack(
    archive: &Path,
    layout: &ServiceLayout,
    release_name: &str,
    max_bytes: u64,
) -> Result<PathBuf> {
    validate_release_name(release_name)?;
    let archive = archive.to_path_buf();
    let layout = layout.clone();
    let name = release_name.to_string();
    blocking(move || unpack_blocking(&archive, &layout, &name, max_bytes)).await
}

fn unpack_blocking(
    archive: &Path,
    layout: &ServiceLayout,
    name: &str,
    max_bytes: u64,
) -> Result<PathBuf> {
    layout.ensure_dirs_blocking()?;
    let releases = layout.releases_dir();
    let dest = releases.join(name);
    if fs::symlink_metadata(&dest).is_ok() {
        return Err(Error::Layout(format!(
            "release {} already exists",
            dest.display()
        )));
    }
    let tmp = releases.join(format!("{UNPACK_PREFIX}{name}-{}", random_suffix()));
    fs::create_dir(&tmp).map_err(Error::io("create directory", &tmp))?;
    let unpacked = extract(archive, &tmp, max_bytes).and_then(|()| {
        if fs::symlink_metadata(&dest).is_ok() {
            return Err(Error::Layout(format!(
                "release {} already exists",
                dest.display()
            )));
        }
        fs::rename(&tmp, &dest).map_err(Error::io("rename unpacked release to", &dest))
    });
    if let Err(e) = unpacked {
        if let Err(cleanup) = fs::remove_dir_all(&tmp) {
            tracing::warn!(dir = %tmp.display(), "cannot remove a failed unpack: {cleanup}");
        }
        return Err(e);
    }
    sync_dir(&releases)?;
    Ok(dest)
}

/// A relative path inside the release, from an entry's raw bytes: `None` for the archive's
/// root (`./`), an error for anything that would leave the release.
fn entry_path(raw: &[u8]) -> Result<Option<PathBuf>> {
    let shown = String::from_utf8_lossy(raw).into_owned();
    let refuse = |reason: &str| Error::UnsafeEntry {
        entry: shown.clone(),
        reason: reason.to_string(),
    };
    if raw.contains(&0) {
        return Err(refuse("the path contains a NUL byte"));
    }
    if raw.starts_with(b"/") {
        return Err(refuse("absolute paths are not allowed"));
    }
    let mut path = PathBuf::new();
    for part in raw.split(|b| *b == b'/') {
        match part {
            b"" | b"." => {}
            b".." => return Err(refuse("'..' components are not allowed")),
            name => path.push(OsStr::from_bytes(name)),
        }
    }
    Ok((!path.as_os_str().is_empty()).then_some(path))
}

/// Checks a symlink's target: relative, and resolving inside the release when followed
/// from the link's directory. `..` may only lead the target (`../x/y`, not `x/../y`), so
/// that the lexical check cannot be fooled by a symlink in the middle of the target.
fn check_link_target(entry: &Path, target: &[u8], shown: &str) -> Result<()> {
    let refuse = |reason: String| Error::UnsafeEntry {
        entry: shown.to_string(),
        reason,
    };
    let target_shown = String::from_utf8_lossy(target);
    if target.is_empty() || target.contains(&0) {
        return Err(refuse(
            "the symlink's target is empty or contains NUL".into(),
        ));
    }
    if target.starts_with(b"/") {
        return Err(refuse(format!(
            "the symlink's target '{target_shown}' is absolute"
        )));
    }
    let mut depth = entry.components().count() as i64 - 1;
    let mut descended = false;
    for part in target.split(|b| *b == b'/') {
        match part {
            b"" | b"." => {}
            b".." if descended => {
                return Err(refuse(format!(
                    "the symlink's target '{target_shown}' has '..' after a name"
                )))
            }
            b".." => {
                depth -= 1;
                if depth < 0 {
                    return Err(refuse(format!(
                        "the symlink's target '{target_shown}' leaves the release"
                    )));
                }
            }
            _ => {
                descended = true;
                depth += 1;
            }
        }
    }
    Ok(())
}

/// Creates the directories from `root` down to `rel` (exclusive of `rel` itself when
/// `include_last` is false), refusing to go through a symlink.
fn make_dirs(root: &Path, rel: &Path, include_last: bool, shown: &str) -> Result<()> {
    let mut dir = root.to_path_buf();
    let count = rel.components().count();
    let take = if include_last {
        count
    } else {
        count.saturating_sub(1)
    };
    for component in rel.components().take(take) {
        dir.push(component);
        match fs::symlink_metadata(&dir) {
            Ok(meta) if meta.file_type().is_symlink() => {
                return Err(Error::UnsafeEntry {
                    entry: shown.to_string(),
                    reason: "it lies below a symlink".into(),
                })
            }
            Ok(meta) if meta.is_dir() => {}
            Ok(_) => {
                return Err(Error::UnsafeEntry {
                    entry: shown.to_string(),
                    reason: format!(
                        "'{}' is a file in the archive, not a directory",
                        dir.strip_prefix(root).unwrap_or(&dir).display()
                    ),
                })
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                fs::create_dir(&dir).map_err(Error::io("create directory", &dir))?
            }
            Err(e) => return Err(Error::io("inspect", &dir)(e)),
        }
    }
    Ok(())
}

/// Removes a file or symlink an earlier entry left at `path` (archives may repeat an
/// entry; the last one wins). A directory stays.
fn remove_non_dir(path: &Path) -> Result<()> {
    match fs::symlink_metadata(path) {
        Ok(meta) if !meta.is_dir() => fs::remove_file(path).map_err(Error::io("remove", path)),
        _ => Ok(()),
    }
}

fn extract(archive: &Path, into: &Path, max_bytes: u64) -> Result<()> {
    let file = File::open(archive).map_err(Error::io("open", archive))?;
    let corrupt = |e: io::Error| Error::Archive {
        path: archive.to_path_buf(),
        message: e.to_string(),
    };
    let mut tar = tar::Archive::new(GzDecoder::new(BufReader::new(file)));
    let mut total: u64 = 0;
    let mut count: u64 = 0;
    let mut dir_modes: Vec<(PathBuf, u32)> = Vec::new();
    let mut buf = vec![0u8; 64 * 1024];

    for entry in tar.entries().map_err(corrupt)? {
        let mut entry = entry.map_err(corrupt)?;
        count += 1;
        if count > MAX_ENTRIES {
            return Err(Error::Archive {
                path: archive.to_path_buf(),
                message: format!("more than {MAX_ENTRIES} entries"),
            });
        }
        let raw = entry.path_bytes().into_owned();
        let shown = String::from_utf8_lossy(&raw).into_owned();
        let kind = entry.header().entry_type();
        if matches!(kind, EntryType::XGlobalHeader | EntryType::XHeader) {
            continue;
        }
        let Some(rel) = entry_path(&raw)? else {
            // The archive's root directory: nothing to create.
            continue;
        };
        let refuse = |reason: &str| Error::UnsafeEntry {
            entry: shown.clone(),
            reason: reason.to_string(),
        };
        let mode = entry.header().mode().unwrap_or(0o644) & 0o777;
        let path = into.join(&rel);
        match kind {
            EntryType::Directory => {
                make_dirs(into, &rel, true, &shown)?;
                dir_modes.push((path, mode | 0o700));
            }
            EntryType::Regular | EntryType::Continuous => {
                make_dirs(into, &rel, false, &shown)?;
                remove_non_dir(&path)?;
                let mut out = OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode(0o600)
                    .open(&path)
                    .map_err(Error::io("create", &path))?;
                loop {
                    let n = entry.read(&mut buf).map_err(corrupt)?;
                    if n == 0 {
                        break;
                    }
                    total += n as u64;
                    if total > max_bytes {
                        return Err(Error::Archive {
                            path: archive.to_path_buf(),
                            message: format!(
                                "unpacks to more than the limit of {max_bytes} bytes (at '{shown}')"
                            ),
                        });
                    }
                    out.write_all(&buf[..n])
                        .map_err(Error::io("write", &path))?;
                }
                drop(out);
                fs::set_permissions(&path, fs::Permissions::from_mode(mode))
                    .map_err(Error::io("set permissions of", &path))?;
            }
            EntryType::Symlink => {
                let target = entry
                    .link_name_bytes()
                    .map(|t| t.into_owned())
                    .unwrap_or_default();
                check_link_target(&rel, &target, &shown)?;
                make_dirs(into, &rel, false, &shown)?;
                remove_non_dir(&path)?;
                let target = OsStr::from_bytes(&target);
                std::os::unix::fs::symlink(target, &path)
                    .map_err(Error::io("create symlink", &path))?;
            }
            EntryType::Link => return Err(refuse("hard links are not allowed")),
            EntryType::Char | EntryType::Block => {
                return Err(refuse("device files are not allowed"))
            }
            EntryType::Fifo => return Err(refuse("fifos are not allowed")),
            EntryType::GNUSparse => return Err(refuse("sparse files are not supported")),
            other => {
                return Err(refuse(&format!(
                    "entries of type {:?} are not supported",
                    other.as_byte() as char
                )))
            }
        }
    }
    // Directory modes last, deepest first, so a read-only directory does not stop its own
    // entries from being written. The owner keeps rwx, so that prune can delete it.
    dir_modes.sort_by_key(|(path, _)| std::cmp::Reverse(path.components().count()));
    for (path, mode) in dir_modes {
        fs::set_permissions(&path, fs::Permissions::from_mode(mode))
            .map_err(Error::io("set permissions of", &path))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entry_paths() {
        // (raw, Ok(path) or Err(substring))
        let cases: [(&str, Result<Option<&str>, &str>); 9] = [
            ("a/b", Ok(Some("a/b"))),
            ("./a/./b/", Ok(Some("a/b"))),
            ("./", Ok(None)),
            (".", Ok(None)),
            ("a//b", Ok(Some("a/b"))),
            ("/etc/passwd", Err("absolute")),
            ("../x", Err("'..'")),
            ("a/../../x", Err("'..'")),
            ("a/..", Err("'..'")),
        ];
        for (raw, want) in cases {
            match (entry_path(raw.as_bytes()), want) {
                (Ok(got), Ok(want)) => assert_eq!(got, want.map(PathBuf::from), "{raw}"),
                (Err(e), Err(want)) => {
                    let e = e.to_string();
                    assert!(e.contains(want) && e.contains(raw), "{raw}: {e}");
                }
                (got, want) => panic!("{raw}: got {got:?}, wanted {want:?}"),
            }
        }
    }

    #[test]
    fn link_targets() {
        // (entry, target, allowed)
        let cases = [
            ("a", "b", true),
            ("a", "./b/c", true),
            ("a", ".", true),
            ("d/a", "../b", true),
            ("d/e/a", "../../b", true),
            ("a", "../b", false),
            ("d/a", "../../b", false),
            ("a", "/etc/passwd", false),
            ("a", "b/../c", false),
            ("a", "", false),
        ];
        for (entry, target, allowed) in cases {
            let got = check_link_target(Path::new(entry), target.as_bytes(), entry);
            assert_eq!(got.is_ok(), allowed, "{entry} -> {target}: {got:?}");
        }
    }
}
