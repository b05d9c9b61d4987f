//! Deleting old releases beyond the number to keep, never the current or a protected one, and
//! leftovers of interrupted unpacks.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use crate::layout::UNPACK_PREFIX;
use crate::{blocking, Error, Result, ServiceLayout};

/// Deletes the oldest releases until at most `keep` remain, never the one `current` points
/// at nor one in `protect` (so more than `keep` may remain). Also removes the temporary
/// directories of interrupted unpacks, so it must not run while an unpack of the same
/// service does. Returns the deleted paths, releases oldest first, then temporary
/// directories.
///
/// A `current` that cannot be read is an error: nothing is deleted when it is not known
/// which release is live.
pub async fn prune(layout: &ServiceLayout, keep: usize, protect: &[&Path]) -> Result<Vec<PathBuf>> {
    let layout = layout.clone();
    let protect: Vec<PathBuf> = protect.iter().map(|p| p.to_path_buf()).collect();
    blocking(move || prune_blocking(&layout, keep, &protect)).await
}

fn same_dir(a: &Path, b: &Path) -> bool {
    if a == b {
        return true;
    }
    match (fs::canonicalize(a), fs::canonicalize(b)) {
        (Ok(a), Ok(b)) => a == b,
        _ => false,
    }
}

fn prune_blocking(
    layout: &ServiceLayout,
    keep: usize,
    protect: &[PathBuf],
) -> Result<Vec<PathBuf>> {
    let current = layout.current_blocking()?;
    let releases = layout.releases_blocking()?;
    let mut remaining = releases.len();
    let mut deleted = Vec::new();
    for release in &releases {
        if remaining <= keep {
            break;
        }
        let is_current = current.as_ref().is_some_and(|c| c.name == release.name);
        let protected = protect.iter().any(|p| same_dir(p, &release.path));
        if is_current || protected {
            continue;
        }
        fs::remove_dir_all(&release.path).map_err(Error::io("delete release", &release.path))?;
        tracing::info!(release = %release.name, "pruned release");
        deleted.push(release.path.clone());
        remaining -= 1;
    }

    let dir = layout.releases_dir();
    let entries = match fs::read_dir(&dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(deleted),
        Err(e) => return Err(Error::io("list", &dir)(e)),
    };
    for entry in entries {
        let entry = entry.map_err(Error::io("list", &dir))?;
        let leftover = entry
            .file_name()
            .to_str()
            .is_some_and(|n| n.starts_with(UNPACK_PREFIX));
        if !leftover {
            continue;
        }
        let path = entry.path();
        let is_dir = entry
            .file_type()
            .map_err(Error::io("inspect", &path))?
            .is_dir();
        if is_dir {
            fs::remove_dir_all(&path).map_err(Error::io("delete", &path))?;
        } else {
            fs::remove_file(&path).map_err(Error::io("delete", &path))?;
        }
        tracing::info!(dir = %path.display(), "removed an interrupted unpack");
        deleted.push(path);
    }
    Ok(deleted)
}
