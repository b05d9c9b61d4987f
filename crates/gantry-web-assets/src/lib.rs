//! The dashboard's browser files, embedded in the binary with content-hashed names.
//!
//! From npm (exact versions locked in this crate's `package-lock.json`): `htmx.js`
//! (htmx.org), `htmx-sse.js` (htmx-ext-sse), `uplot.js` and `uplot.css` (uPlot); plus every
//! file of this crate's `static/` directory under its own name (`app.js`, `app.css`, …).
//!
//! Each is served as `/assets/<stem>-<first 12 hex of its SHA-256>.<ext>`, so it can be
//! cached forever ([`CACHE_CONTROL`]). Templates ask [`url`] for a logical name; the server
//! answers `/assets/{file}` with [`by_file`].

use std::fmt;

/// `Cache-Control` for every asset: its served name changes whenever its bytes do.
pub const CACHE_CONTROL: &str = "public, max-age=31536000, immutable";

/// One embedded file.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Asset {
    /// Logical name, e.g. `"htmx.js"`.
    pub name: &'static str,
    /// Served (hashed) name, e.g. `"htmx-3f2a9c1b04de.js"`.
    pub file: &'static str,
    /// `Content-Type`, by extension, e.g. `"text/javascript; charset=utf-8"`.
    pub content_type: &'static str,
    /// The file's contents.
    pub bytes: &'static [u8],
    /// Full lower-case hex SHA-256 of `bytes`.
    pub sha256: &'static str,
    /// npm package name and version the file comes from (for license notices); `None` for
    /// `static/` files.
    pub package: Option<(&'static str, &'static str)>,
}

impl fmt::Debug for Asset {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Asset")
            .field("name", &self.name)
            .field("file", &self.file)
            .field("content_type", &self.content_type)
            .field("bytes", &format_args!("[{} bytes]", self.bytes.len()))
            .field("sha256", &self.sha256)
            .field("package", &self.package)
            .finish()
    }
}

mod generated {
    use super::Asset;

    include!(concat!(env!("OUT_DIR"), "/assets.rs"));
}

/// Every embedded file: the npm files first, then `static/`'s in name order.
pub fn all() -> &'static [Asset] {
    &generated::ASSETS
}

/// The asset served under `file`, its hashed name (as in `/assets/{file}`).
pub fn by_file(file: &str) -> Option<&'static Asset> {
    generated::index_of_file(file).map(|index| &generated::ASSETS[index])
}

/// `/assets/<hashed file>` for a logical name such as `"htmx.js"`.
///
/// # Panics
///
/// If `name` is not the logical name of an embedded file: names are constants in the
/// server's code, so this is a programming error.
pub fn url(name: &str) -> &'static str {
    match generated::url_of(name) {
        Some(url) => url,
        None => unknown_asset(name),
    }
}

#[cold]
#[inline(never)]
fn unknown_asset(name: &str) -> ! {
    let known: Vec<&str> = all().iter().map(|asset| asset.name).collect();
    panic!(
        "gantry-web-assets: no embedded asset has the logical name {name:?} (known: {}); \
         add the file to crates/gantry-web-assets/static/ or fix the name",
        known.join(", ")
    )
}

// The build script's pure logic, shared with build.rs (which includes it with `#[path]`);
// each side uses part of it.
#[cfg(test)]
#[allow(dead_code)]
mod build_support;

#[cfg(test)]
mod tests {
    use super::build_support::{
        content_type, hashed_file_name, locked_version, sha256_hex, NPM_FILES, URL_PREFIX,
    };
    use super::*;
    use std::collections::BTreeSet;
    use std::path::Path;

    fn crate_file(name: &str) -> String {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(name);
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
    }

    fn asset(name: &str) -> &'static Asset {
        all()
            .iter()
            .find(|asset| asset.name == name)
            .unwrap_or_else(|| panic!("no asset {name:?}"))
    }

    fn static_names() -> BTreeSet<String> {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("static");
        std::fs::read_dir(dir)
            .unwrap()
            .map(|entry| entry.unwrap().file_name().into_string().unwrap())
            .filter(|name| !name.starts_with('.'))
            .collect()
    }

    #[test]
    fn every_logical_name_resolves_to_a_hashed_url() {
        let mut names: Vec<String> = NPM_FILES.iter().map(|f| f.name.to_owned()).collect();
        names.extend(static_names());
        assert!(names.iter().any(|n| n == "app.js") && names.iter().any(|n| n == "app.css"));
        for name in &names {
            let url = url(name);
            let file = url
                .strip_prefix(URL_PREFIX)
                .unwrap_or_else(|| panic!("{url} does not start with /assets/"));
            assert!(url.starts_with("/assets/"));
            let asset = by_file(file).unwrap_or_else(|| panic!("{file} not found by_file"));
            assert_eq!(asset.name, name);
            assert_eq!(asset.file, file);
            assert_eq!(asset.sha256, sha256_hex(asset.bytes), "{name}");
            assert_eq!(asset.file, hashed_file_name(name, asset.sha256));
            assert!(file.contains(&asset.sha256[..12]), "{file}");
            assert!(!asset.bytes.is_empty(), "{name} is empty");
        }
        assert_eq!(all().len(), names.len(), "{:?}", all());
    }

    #[test]
    fn by_file_round_trips_and_rejects_unknown_names() {
        for asset in all() {
            assert_eq!(by_file(asset.file), Some(asset));
            assert_eq!(url(asset.name), format!("/assets/{}", asset.file));
        }
        assert_eq!(
            by_file("htmx.js"),
            None,
            "logical names are not served names"
        );
        assert_eq!(by_file(""), None);
        assert_eq!(by_file("htmx-000000000000.js"), None);
    }

    #[test]
    #[should_panic(expected = "no embedded asset has the logical name \"nope.js\"")]
    fn url_of_an_unknown_name_panics() {
        let _ = url("nope.js");
    }

    #[test]
    fn content_types_are_right() {
        assert_eq!(
            asset("htmx.js").content_type,
            "text/javascript; charset=utf-8"
        );
        assert_eq!(
            asset("htmx-sse.js").content_type,
            "text/javascript; charset=utf-8"
        );
        assert_eq!(
            asset("uplot.js").content_type,
            "text/javascript; charset=utf-8"
        );
        assert_eq!(asset("uplot.css").content_type, "text/css; charset=utf-8");
        assert_eq!(
            asset("app.js").content_type,
            "text/javascript; charset=utf-8"
        );
        assert_eq!(asset("app.css").content_type, "text/css; charset=utf-8");
        for asset in all() {
            assert_eq!(asset.content_type, content_type(asset.name));
        }
    }

    #[test]
    fn htmx_is_version_2_0() {
        let htmx = asset("htmx.js");
        let (package, version) = htmx.package.unwrap();
        assert_eq!(package, "htmx.org");
        assert!(version.starts_with("2.0."), "{version}");
        let needle = format!("version:\"{version}\"");
        let text = std::str::from_utf8(htmx.bytes).unwrap();
        assert!(text.contains(&needle), "htmx.js lacks {needle}");
        assert!(text.starts_with("var htmx="), "not the minified htmx build");
    }

    #[test]
    fn the_other_npm_files_are_what_they_claim() {
        let sse = std::str::from_utf8(asset("htmx-sse.js").bytes).unwrap();
        assert!(sse.contains("defineExtension(\"sse\""));
        let uplot = asset("uplot.js");
        let (_, version) = uplot.package.unwrap();
        let text = std::str::from_utf8(uplot.bytes).unwrap();
        assert!(text.contains(&format!("(v{version})")) && text.contains("var uPlot="));
        assert!(std::str::from_utf8(asset("uplot.css").bytes)
            .unwrap()
            .contains(".uplot"));
    }

    #[test]
    fn packages_are_the_locked_ones() {
        let lock = crate_file("package-lock.json");
        for npm in NPM_FILES {
            let (package, version) = asset(npm.name).package.unwrap();
            assert_eq!(package, npm.package);
            assert_eq!(Some(version), locked_version(&lock, npm.package).as_deref());
        }
        for asset in all().iter().filter(|a| static_names().contains(a.name)) {
            assert_eq!(asset.package, None);
        }
    }

    #[test]
    fn package_json_pins_exactly_the_three_packages_and_one_htmx() {
        let manifest: serde_json::Value =
            serde_json::from_str(&crate_file("package.json")).unwrap();
        assert_eq!(manifest["private"], true);
        assert!(manifest.get("scripts").is_none());
        let deps = manifest["dependencies"].as_object().unwrap();
        let names: BTreeSet<&str> = deps.keys().map(String::as_str).collect();
        assert_eq!(names, BTreeSet::from(["htmx-ext-sse", "htmx.org", "uplot"]));
        let exact = |v: &serde_json::Value| {
            let v = v.as_str().unwrap();
            v.split('.').count() == 3 && v.chars().all(|c| c.is_ascii_digit() || c == '.')
        };
        assert!(deps.values().all(exact), "{deps:?}");
        assert!(deps["htmx.org"].as_str().unwrap().starts_with("2.0."));
        assert!(deps["htmx-ext-sse"].as_str().unwrap().starts_with("2.2."));
        assert!(deps["uplot"].as_str().unwrap().starts_with("1.6."));
        assert!(manifest.get("devDependencies").is_none());

        let lock: serde_json::Value =
            serde_json::from_str(&crate_file("package-lock.json")).unwrap();
        let installed: BTreeSet<&str> = lock["packages"]
            .as_object()
            .unwrap()
            .keys()
            .filter(|key| !key.is_empty())
            .map(String::as_str)
            .collect();
        assert_eq!(
            installed,
            BTreeSet::from([
                "node_modules/htmx-ext-sse",
                "node_modules/htmx.org",
                "node_modules/uplot"
            ]),
            "one htmx, no other packages"
        );
    }

    #[test]
    fn cache_control_is_immutable_for_a_year() {
        assert_eq!(CACHE_CONTROL, "public, max-age=31536000, immutable");
    }
}
