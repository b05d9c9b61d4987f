//! The atomic switch: a new `current` link, renamed over the old one, the directory fsynced.

use std::fs;
use std::path::{Path, PathBuf};

use crate::shared::check_release_dir;
use crate::{blocking, random_suffix, sync_dir, Error, Result, ServiceLayout};

/// Points `current` at `release_dir` atomically: a new symlink `current.tmp-<random>` with
/// the relative target `releases/<name>` is renamed over `current`, then the service
/// directory is fsynced. A reader sees the old release or the new one, never neither.
/// `release_dir` must be a directory directly in `releases/`.
pub async fn switch_current(layout: &ServiceLayout, release_dir: &Path) -> Result<()> {
    let layout = layout.clone();
    let release_dir = release_dir.to_path_buf();
    blocking(move || switch_blocking(&layout, &release_dir)).await
}

fn switch_blocking(layout: &ServiceLayout, release_dir: &Path) -> Result<()> {
    check_release_dir(layout, release_dir)?;
    let name = release_dir
        .file_name()
        .ok_or_else(|| Error::Layout(format!("{} has no name", release_dir.display())))?;
    let target = PathBuf::from("releases").join(name);
    let dir = layout.service_dir();
    let tmp = dir.join(format!("current.tmp-{}", random_suffix()));
    std::os::unix::fs::symlink(&target, &tmp).map_err(Error::io("create symlink", &tmp))?;
    let current = layout.current_link();
    if let Err(e) = fs::rename(&tmp, &current) {
        let _ = fs::remove_file(&tmp);
        return Err(Error::io("replace", &current)(e));
    }
    sync_dir(dir)
}
