//! Linking the service's shared files and directories into a release.

use std::fs::{self, OpenOptions};
use std::io;
use std::path::{Component, Path, PathBuf};

use crate::{blocking, Error, Result, ServiceLayout};

/// Links the config's `shared` entries from `shared/` into a release.
///
/// For each entry (`config/app.env`, or `log/` for a directory): creates it under `shared/`
/// if missing (an empty file, or a directory for a trailing `/`), removes whatever the
/// archive put at that path in the release, and makes `release/<entry>` a relative symlink
/// to `shared/<entry>`, creating parent directories in the release as needed.
/// `release_dir` must be a directory directly in `releases/`.
pub async fn link_shared(
    layout: &ServiceLayout,
    release_dir: &Path,
    shared: &[String],
) -> Result<()> {
    let layout = layout.clone();
    let release_dir = release_dir.to_path_buf();
    let shared = shared.to_vec();
    blocking(move || {
        check_release_dir(&layout, &release_dir)?;
        for entry in &shared {
            link_one(&layout, &release_dir, entry)?;
        }
        Ok(())
    })
    .await
}

/// Checks that `release_dir` is a directory directly in the layout's `releases/`.
pub(crate) fn check_release_dir(layout: &ServiceLayout, release_dir: &Path) -> Result<()> {
    let in_releases = release_dir.parent() == Some(layout.releases_dir().as_path())
        && matches!(
            release_dir.components().next_back(),
            Some(Component::Normal(_))
        );
    if !in_releases {
        return Err(Error::Layout(format!(
            "{} is not a release directory in {}",
            release_dir.display(),
            layout.releases_dir().display()
        )));
    }
    match fs::symlink_metadata(release_dir) {
        Ok(meta) if meta.is_dir() => Ok(()),
        Ok(_) => Err(Error::Layout(format!(
            "{} is not a directory",
            release_dir.display()
        ))),
        Err(e) => Err(Error::io("inspect", release_dir)(e)),
    }
}

/// Splits a shared entry into its relative path and whether it is a directory, refusing
/// anything that is not a plain relative path.
fn parse_entry(entry: &str) -> Result<(PathBuf, bool)> {
    let is_dir = entry.ends_with('/');
    let body = entry.strip_suffix('/').unwrap_or(entry);
    let parts: Vec<&str> = body.split('/').collect();
    let plain = !body.is_empty()
        && !entry.contains('\0')
        && parts.iter().all(|p| !matches!(*p, "" | "." | ".."));
    if !plain {
        return Err(Error::Invalid(format!(
            "shared entry '{entry}' must be a relative path without '.', '..' or empty components"
        )));
    }
    Ok((parts.iter().collect(), is_dir))
}

fn link_one(layout: &ServiceLayout, release_dir: &Path, entry: &str) -> Result<()> {
    let (rel, is_dir) = parse_entry(entry)?;
    let shared_root = layout.shared_dir();
    let in_shared = shared_root.join(&rel);

    // 1. The shared side, made once and kept across releases.
    match fs::symlink_metadata(&in_shared) {
        Ok(_) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            if is_dir {
                fs::create_dir_all(&in_shared)
                    .map_err(Error::io("create directory", &in_shared))?;
            } else {
                if let Some(parent) = in_shared.parent() {
                    fs::create_dir_all(parent).map_err(Error::io("create directory", parent))?;
                }
                match OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .open(&in_shared)
                {
                    Ok(_) => {}
                    Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
                    Err(e) => return Err(Error::io("create", &in_shared)(e)),
                }
            }
        }
        Err(e) => return Err(Error::io("inspect", &in_shared)(e)),
    }

    // 2. The release side: real directories down to the link, never through a symlink
    // (which could lead out of the release).
    let mut dir = release_dir.to_path_buf();
    let depth = rel.components().count();
    for component in rel.components().take(depth - 1) {
        dir.push(component);
        match fs::symlink_metadata(&dir) {
            Ok(meta) if meta.is_dir() => {}
            Ok(_) => {
                return Err(Error::Layout(format!(
                    "cannot link shared entry '{entry}': {} is not a directory",
                    dir.display()
                )))
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                fs::create_dir(&dir).map_err(Error::io("create directory", &dir))?
            }
            Err(e) => return Err(Error::io("inspect", &dir)(e)),
        }
    }
    let link = release_dir.join(&rel);
    match fs::symlink_metadata(&link) {
        Ok(meta) if meta.is_dir() => {
            fs::remove_dir_all(&link).map_err(Error::io("remove", &link))?
        }
        Ok(_) => fs::remove_file(&link).map_err(Error::io("remove", &link))?,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(Error::io("inspect", &link)(e)),
    }

    // From <service>/releases/<name>/<parents…>/ up to <service>/, then into shared/.
    let mut target = PathBuf::new();
    for _ in 0..depth + 1 {
        target.push("..");
    }
    target.push("shared");
    target.push(&rel);
    std::os::unix::fs::symlink(&target, &link).map_err(Error::io("create symlink", &link))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries() {
        // (entry, Some((path, is_dir)) or None for refused)
        let cases = [
            ("config/app.env", Some(("config/app.env", false))),
            ("log/", Some(("log", true))),
            ("a", Some(("a", false))),
            ("", None),
            ("/", None),
            ("/etc", None),
            ("../x", None),
            ("a/./b", None),
            ("a//b", None),
        ];
        for (entry, want) in cases {
            let got = parse_entry(entry).ok();
            assert_eq!(got, want.map(|(p, d)| (PathBuf::from(p), d)), "{entry}");
        }
    }
}
