//! A service's directories under the agent's root, and its releases (`<build>-<timestamp>`).

use std::fs;
use std::io;
use std::path::{Component, Path, PathBuf};

use chrono::{DateTime, Utc};
use gantry_core::names::validate_name;

use crate::{blocking, Error, Result};

/// Names in `releases/` that start with this are unpacks in progress (or interrupted ones,
/// which [`crate::prune`] removes). They are never releases.
pub const UNPACK_PREFIX: &str = ".unpack-";

/// Format of the timestamp part of a release name: fixed width, so that names sort in
/// time order.
const TIMESTAMP_FORMAT: &str = "%Y%m%dT%H%M%S%.3fZ";

/// Where one service's files live under the agent's root.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceLayout {
    service: String,
    dir: PathBuf,
}

/// One release directory under `releases/`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Release {
    /// The directory's name, `<build>-<timestamp>`.
    pub name: String,
    /// The directory's path.
    pub path: PathBuf,
    /// The build id: the name up to its last `-`.
    pub build_id: String,
    /// The timestamp: the name after its last `-` (`20250301T120000.123Z`).
    pub timestamp: String,
}

impl Release {
    /// Splits a release directory's name into build id and timestamp; `None` when the name
    /// is not a release's.
    pub fn parse_name(name: &str) -> Option<(&str, &str)> {
        if name.starts_with('.') {
            return None;
        }
        let (build, ts) = name.rsplit_once('-')?;
        let ts_ok = ts.starts_with(|c: char| c.is_ascii_digit())
            && ts
                .chars()
                .all(|c| c.is_ascii_digit() || matches!(c, 'T' | 'Z' | '.'));
        (!build.is_empty() && ts_ok).then_some((build, ts))
    }

    fn from_dir(name: &str, path: PathBuf) -> Option<Release> {
        let (build, ts) = Release::parse_name(name)?;
        Some(Release {
            name: name.to_string(),
            build_id: build.to_string(),
            timestamp: ts.to_string(),
            path,
        })
    }
}

/// The name of a new release of `build_id` made at `at`: `<build>-<YYYYMMDDTHHMMSS.mmmZ>`.
/// The build id must be a valid name (letters, digits, `.`, `_`, `-`).
pub fn release_name(build_id: &str, at: DateTime<Utc>) -> Result<String> {
    validate_name("build id", build_id).map_err(|e| Error::Invalid(e.0))?;
    Ok(format!("{build_id}-{}", at.format(TIMESTAMP_FORMAT)))
}

/// Checks a release directory's name: one path component, not hidden.
pub(crate) fn validate_release_name(name: &str) -> Result<()> {
    validate_name("release name", name).map_err(|e| Error::Invalid(e.0))?;
    if name.starts_with('.') {
        return Err(Error::Invalid(format!(
            "release name '{name}' must not start with '.'"
        )));
    }
    Ok(())
}

impl ServiceLayout {
    /// The layout of `service` under `root`. The service name is checked, so that it is one
    /// path component that stays under `root`.
    pub fn new(root: &Path, service: &str) -> Result<ServiceLayout> {
        validate_name("service", service).map_err(|e| Error::Invalid(e.0))?;
        Ok(ServiceLayout {
            service: service.to_string(),
            dir: root.join(service),
        })
    }

    pub fn service(&self) -> &str {
        &self.service
    }

    /// `<root>/<service>`: everything this crate touches is under it.
    pub fn service_dir(&self) -> &Path {
        &self.dir
    }

    pub fn releases_dir(&self) -> PathBuf {
        self.dir.join("releases")
    }

    pub fn current_link(&self) -> PathBuf {
        self.dir.join("current")
    }

    pub fn shared_dir(&self) -> PathBuf {
        self.dir.join("shared")
    }

    /// `releases/<name>`.
    pub fn release_path(&self, name: &str) -> PathBuf {
        self.releases_dir().join(name)
    }

    /// Creates the service directory, `releases/` and `shared/` where missing.
    pub async fn ensure_dirs(&self) -> Result<()> {
        let layout = self.clone();
        blocking(move || layout.ensure_dirs_blocking()).await
    }

    pub(crate) fn ensure_dirs_blocking(&self) -> Result<()> {
        for dir in [self.releases_dir(), self.shared_dir()] {
            fs::create_dir_all(&dir).map_err(Error::io("create directory", &dir))?;
        }
        Ok(())
    }

    /// The release `current` points at, `None` when there is no `current` yet. The link
    /// may dangle (the release was deleted by hand); the caller checks `path` if it cares.
    /// A `current` that is not a symlink into `releases/` is an error.
    pub async fn current(&self) -> Result<Option<Release>> {
        let layout = self.clone();
        blocking(move || layout.current_blocking()).await
    }

    pub(crate) fn current_blocking(&self) -> Result<Option<Release>> {
        let link = self.current_link();
        let target = match fs::read_link(&link) {
            Ok(target) => target,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) if e.kind() == io::ErrorKind::InvalidInput => {
                return Err(Error::Layout(format!(
                    "{} exists but is not a symlink",
                    link.display()
                )))
            }
            Err(e) => return Err(Error::io("read link", &link)(e)),
        };
        let resolved = if target.is_absolute() {
            target.clone()
        } else {
            self.dir.join(&target)
        };
        let releases = self.releases_dir();
        let name = match (resolved.parent(), resolved.components().next_back()) {
            (Some(parent), Some(Component::Normal(name))) if parent == releases => name.to_str(),
            _ => None,
        };
        let release = name.and_then(|n| Release::from_dir(n, resolved.clone()));
        match release {
            Some(release) => Ok(Some(release)),
            None => Err(Error::Layout(format!(
                "{} points at {}, which is not a release in {}",
                link.display(),
                target.display(),
                releases.display()
            ))),
        }
    }

    /// The releases, oldest first (by the timestamp in their names). Directories whose
    /// names are not `<build>-<timestamp>` and unpacks in progress are left out.
    pub async fn releases(&self) -> Result<Vec<Release>> {
        let layout = self.clone();
        blocking(move || layout.releases_blocking()).await
    }

    pub(crate) fn releases_blocking(&self) -> Result<Vec<Release>> {
        let dir = self.releases_dir();
        let entries = match fs::read_dir(&dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(Error::io("list", &dir)(e)),
        };
        let mut releases = Vec::new();
        for entry in entries {
            let entry = entry.map_err(Error::io("list", &dir))?;
            let is_dir = entry
                .file_type()
                .map_err(Error::io("inspect", &entry.path()))?
                .is_dir();
            let name = entry.file_name();
            let release = name
                .to_str()
                .filter(|_| is_dir)
                .and_then(|name| Release::from_dir(name, entry.path()));
            releases.extend(release);
        }
        releases.sort_by(|a, b| (&a.timestamp, &a.name).cmp(&(&b.timestamp, &b.name)));
        Ok(releases)
    }

    /// The newest release of `build_id`.
    pub async fn find_release(&self, build_id: &str) -> Result<Option<Release>> {
        let releases = self.releases().await?;
        Ok(releases.into_iter().rev().find(|r| r.build_id == build_id))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn release_names() {
        let at = Utc.with_ymd_and_hms(2025, 3, 1, 12, 0, 5).single().unwrap();
        let name = release_name("b-42", at).unwrap();
        assert_eq!(name, "b-42-20250301T120005.000Z");
        assert_eq!(
            Release::parse_name(&name),
            Some(("b-42", "20250301T120005.000Z"))
        );
        assert!(release_name("../x", at).is_err());
        assert!(release_name("", at).is_err());

        // (name, parsed)
        let cases = [
            ("abc-1", Some(("abc", "1"))),
            ("abc", None),
            ("-1", None),
            (".unpack-abc-1", None),
            ("abc-x1", None),
            (
                "a-b-c-20250101T000000.000Z",
                Some(("a-b-c", "20250101T000000.000Z")),
            ),
        ];
        for (name, want) in cases {
            assert_eq!(Release::parse_name(name), want, "{name}");
        }
    }

    #[test]
    fn service_names_are_checked() {
        let root = Path::new("root");
        assert!(ServiceLayout::new(root, "shop").is_ok());
        for bad in ["", "..", "a/b", "/x", ".hidden"] {
            assert!(ServiceLayout::new(root, bad).is_err(), "{bad}");
        }
        let layout = ServiceLayout::new(root, "shop").unwrap();
        assert_eq!(layout.releases_dir(), root.join("shop").join("releases"));
        assert_eq!(layout.current_link(), root.join("shop").join("current"));
        assert_eq!(layout.shared_dir(), root.join("shop").join("shared"));
    }
}
