//! The build script's logic that needs no npm: which files to embed, how they are named,
//! hashed and typed, and the generated `assets.rs`.
//!
//! `build.rs` includes this file with `#[path]`; the library includes it under
//! `#[cfg(test)]` so that it is unit-tested like any other module.

use std::ffi::OsStr;
use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

/// Environment variable naming a prepared `node_modules` directory to embed instead of
/// running `npm ci`.
pub const ENV_ASSETS_DIR: &str = "GANTRY_ASSETS_DIR";

/// Environment variable by which cargo (or the user) says the network must not be used.
pub const ENV_NET_OFFLINE: &str = "CARGO_NET_OFFLINE";

/// How many hex digits of the SHA-256 go into a served file name.
pub const HASH_LEN: usize = 12;

/// Path under which the server serves the assets.
pub const URL_PREFIX: &str = "/assets/";

/// Oldest Node.js major version the build accepts.
pub const MIN_NODE_MAJOR: u64 = 20;

/// File kept beside `node_modules` in `OUT_DIR`: the lockfile it was installed from.
pub const STORED_LOCK: &str = "node_modules.package-lock.json";

/// What to do when Node.js or npm is missing, too old or failing.
pub const HELP: &str = "Node.js ≥ 20 and npm are needed to build the dashboard's assets \
(crate gantry-web-assets runs `npm ci` on its package-lock.json).\n\
Either install Node.js 20 or newer with npm,\n\
or set GANTRY_ASSETS_DIR to a prepared node_modules directory (absolute path; made with \
`npm ci --ignore-scripts` from crates/gantry-web-assets/package-lock.json),\n\
or build the server without the dashboard: `cargo build -p gantry-server --no-default-features`.";

/// One file taken from an npm package.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NpmFile {
    /// npm package name, also its directory under `node_modules`.
    pub package: &'static str,
    /// Path of the file inside the package.
    pub path: &'static str,
    /// Logical name the server and templates use.
    pub name: &'static str,
}

/// The files embedded from `node_modules`, in this order, before the `static/` files.
pub const NPM_FILES: &[NpmFile] = &[
    NpmFile {
        package: "htmx.org",
        path: "dist/htmx.min.js",
        name: "htmx.js",
    },
    NpmFile {
        package: "htmx-ext-sse",
        path: "dist/sse.min.js",
        name: "htmx-sse.js",
    },
    NpmFile {
        package: "uplot",
        path: "dist/uPlot.iife.min.js",
        name: "uplot.js",
    },
    NpmFile {
        package: "uplot",
        path: "dist/uPlot.min.css",
        name: "uplot.css",
    },
];

/// Lower-case hex SHA-256 of `bytes`.
pub fn sha256_hex(bytes: &[u8]) -> String {
    let digest = Sha256::digest(bytes);
    let mut hex = String::with_capacity(64);
    for byte in digest {
        write!(hex, "{byte:02x}").expect("writing to a String cannot fail");
    }
    hex
}

/// The served name of `name`: `<stem>-<first 12 hex of sha256>.<ext>`, or `<name>-<hash>`
/// for a name without extension.
pub fn hashed_file_name(name: &str, sha256_hex: &str) -> String {
    let hash = &sha256_hex[..HASH_LEN.min(sha256_hex.len())];
    match name.rfind('.') {
        Some(dot) if dot > 0 => format!("{}-{hash}{}", &name[..dot], &name[dot..]),
        _ => format!("{name}-{hash}"),
    }
}

/// The `Content-Type` served for a file, by its extension.
pub fn content_type(name: &str) -> &'static str {
    let ext = match name.rfind('.') {
        Some(dot) => name[dot + 1..].to_ascii_lowercase(),
        None => String::new(),
    };
    match ext.as_str() {
        "js" | "mjs" => "text/javascript; charset=utf-8",
        "css" => "text/css; charset=utf-8",
        "svg" => "image/svg+xml",
        "png" => "image/png",
        "jpg" | "jpeg" => "image/jpeg",
        "gif" => "image/gif",
        "webp" => "image/webp",
        "avif" => "image/avif",
        "ico" => "image/x-icon",
        "woff2" => "font/woff2",
        "woff" => "font/woff",
        "ttf" => "font/ttf",
        "otf" => "font/otf",
        "json" | "map" => "application/json",
        "webmanifest" => "application/manifest+json",
        "wasm" => "application/wasm",
        "html" | "htm" => "text/html; charset=utf-8",
        "txt" => "text/plain; charset=utf-8",
        _ => "application/octet-stream",
    }
}

/// Checks that a logical name is safe in a URL path and in generated code: ASCII letters,
/// digits, `.`, `_` and `-`, not starting with a dot.
pub fn check_file_name(name: &str) -> Result<(), String> {
    let ok_chars = name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    if name.is_empty() || name.starts_with('.') || !ok_chars {
        return Err(format!(
            "asset name {name:?} is not allowed: use ASCII letters, digits, '.', '_' and '-' \
             (not starting with '.')"
        ));
    }
    Ok(())
}

/// Whether a directory entry of `static/` is skipped: hidden files such as `.gitkeep` or
/// editor swap files.
pub fn is_ignored_static(name: &str) -> bool {
    name.starts_with('.')
}

/// `(name, version)` from a package's `package.json`.
pub fn parse_package_json(text: &str) -> Result<(String, String), String> {
    let value: serde_json::Value =
        serde_json::from_str(text).map_err(|e| format!("invalid package.json: {e}"))?;
    let field = |key: &str| {
        value
            .get(key)
            .and_then(serde_json::Value::as_str)
            .map(str::to_owned)
            .ok_or_else(|| format!("package.json has no string field {key:?}"))
    };
    Ok((field("name")?, field("version")?))
}

/// The version of `package` (installed at `node_modules/<package>`) recorded in a
/// `package-lock.json`.
pub fn locked_version(lockfile: &str, package: &str) -> Option<String> {
    let value: serde_json::Value = serde_json::from_str(lockfile).ok()?;
    value
        .get("packages")?
        .get(format!("node_modules/{package}"))?
        .get("version")?
        .as_str()
        .map(str::to_owned)
}

/// `(major, minor, patch)` from `node --version` output such as `v20.20.2`.
pub fn parse_node_version(output: &str) -> Option<(u64, u64, u64)> {
    let text = output.trim();
    let text = text.strip_prefix('v').unwrap_or(text);
    let mut parts = text.splitn(3, '.');
    let mut next = || -> Option<u64> {
        let part = parts.next()?;
        let digits: String = part.chars().take_while(char::is_ascii_digit).collect();
        digits.parse().ok()
    };
    Some((next()?, next()?, next()?))
}

/// Checks `node --version` output against [`MIN_NODE_MAJOR`].
pub fn check_node_version(output: &str) -> Result<(), String> {
    match parse_node_version(output) {
        Some((major, ..)) if major >= MIN_NODE_MAJOR => Ok(()),
        Some(_) => Err(format!(
            "Node.js {} is too old: version {MIN_NODE_MAJOR} or newer is needed.",
            output.trim()
        )),
        None => Err(format!(
            "could not read the Node.js version from `node --version` (it printed {:?}).",
            output.trim()
        )),
    }
}

/// Whether `CARGO_NET_OFFLINE`'s value asks for no network.
pub fn is_offline(value: Option<&str>) -> bool {
    value.is_some_and(|v| v.trim().eq_ignore_ascii_case("true") || v.trim() == "1")
}

/// Arguments of the `npm` run in `OUT_DIR`.
pub fn npm_ci_args(offline: bool) -> Vec<&'static str> {
    let mut args = vec!["ci", "--ignore-scripts", "--no-audit", "--no-fund"];
    if offline {
        args.push("--offline");
    }
    args
}

/// Whether `npm ci` must run: no `node_modules` yet, or it was made from another lockfile
/// (or from one that was not recorded).
pub fn needs_npm_ci(node_modules_exists: bool, stored_lock: Option<&[u8]>, lock: &[u8]) -> bool {
    !node_modules_exists || stored_lock != Some(lock)
}

/// Where the embedded npm files come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// `npm ci` in `OUT_DIR`.
    Npm,
    /// A prepared `node_modules` directory, from `GANTRY_ASSETS_DIR`.
    Prepared(PathBuf),
}

/// Chooses the source from `GANTRY_ASSETS_DIR`'s value: unset or empty means npm;
/// otherwise it must be an absolute path.
pub fn choose_source(assets_dir: Option<&OsStr>) -> Result<Source, String> {
    match assets_dir {
        None => Ok(Source::Npm),
        Some(value) if value.is_empty() => Ok(Source::Npm),
        Some(value) => {
            let path = PathBuf::from(value);
            if path.is_absolute() {
                Ok(Source::Prepared(path))
            } else {
                Err(format!(
                    "{ENV_ASSETS_DIR}={} is not an absolute path; set it to the absolute path \
                     of a prepared node_modules directory.",
                    path.display()
                ))
            }
        }
    }
}

/// A file to embed, read from `node_modules` or `static/`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Gathered {
    /// Logical name.
    pub name: String,
    /// Its contents.
    pub bytes: Vec<u8>,
    /// npm `(name, version)`; `None` for `static/` files.
    pub package: Option<(String, String)>,
}

/// Names of the files directly in `static/`, sorted, without hidden ones. A missing
/// directory has none; a subdirectory or a name that is not allowed is an error.
pub fn static_file_names(static_dir: &Path) -> Result<Vec<String>, String> {
    if !static_dir.exists() {
        return Ok(Vec::new());
    }
    let entries = fs::read_dir(static_dir)
        .map_err(|e| format!("cannot read {}: {e}", static_dir.display()))?;
    let mut names = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| format!("cannot read {}: {e}", static_dir.display()))?;
        let path = entry.path();
        let name = entry
            .file_name()
            .into_string()
            .map_err(|name| format!("{}: file name {name:?} is not UTF-8", static_dir.display()))?;
        if is_ignored_static(&name) {
            continue;
        }
        let meta =
            fs::metadata(&path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        if meta.is_dir() {
            return Err(format!(
                "{} is a directory: static/ holds files only, served under their own names",
                path.display()
            ));
        }
        check_file_name(&name).map_err(|e| format!("{}: {e}", path.display()))?;
        names.push(name);
    }
    names.sort();
    Ok(names)
}

/// Reads every file to embed: [`NPM_FILES`] from `node_modules` (with each package's name
/// and version from its `package.json`), then every file of `static_dir`.
pub fn gather(node_modules: &Path, static_dir: &Path) -> Result<Vec<Gathered>, String> {
    let mut files = Vec::new();
    for npm in NPM_FILES {
        let package_dir = node_modules.join(npm.package);
        let package_json = package_dir.join("package.json");
        let text = fs::read_to_string(&package_json).map_err(|e| {
            format!(
                "cannot read {}: {e} (is the npm package {} installed in {}?)",
                package_json.display(),
                npm.package,
                node_modules.display()
            )
        })?;
        let (name, version) =
            parse_package_json(&text).map_err(|e| format!("{}: {e}", package_json.display()))?;
        if name != npm.package {
            return Err(format!(
                "{} names the package {name:?}, expected {:?}",
                package_json.display(),
                npm.package
            ));
        }
        let path = package_dir.join(npm.path);
        let bytes = fs::read(&path).map_err(|e| {
            format!(
                "cannot read {}: {e} ({} {version} has no {})",
                path.display(),
                npm.package,
                npm.path
            )
        })?;
        files.push(Gathered {
            name: npm.name.to_owned(),
            bytes,
            package: Some((name, version)),
        });
    }
    for name in static_file_names(static_dir)? {
        if files.iter().any(|f| f.name == name) {
            return Err(format!(
                "static/{name} has the same name as an npm file; rename it"
            ));
        }
        let path = static_dir.join(&name);
        let bytes = fs::read(&path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        files.push(Gathered {
            name,
            bytes,
            package: None,
        });
    }
    Ok(files)
}

/// One embedded file, as written into `OUT_DIR` and described in `assets.rs`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub name: String,
    pub file: String,
    pub content_type: &'static str,
    pub sha256: String,
    pub package: Option<(String, String)>,
    /// The copy that `include_bytes!` reads.
    pub path: PathBuf,
}

/// Hashes and names each gathered file and writes it to `embed_dir` under its hashed name.
pub fn write_embedded(files: &[Gathered], embed_dir: &Path) -> Result<Vec<Entry>, String> {
    fs::create_dir_all(embed_dir)
        .map_err(|e| format!("cannot create {}: {e}", embed_dir.display()))?;
    let mut entries = Vec::with_capacity(files.len());
    for gathered in files {
        check_file_name(&gathered.name)?;
        let sha256 = sha256_hex(&gathered.bytes);
        let file = hashed_file_name(&gathered.name, &sha256);
        let path = embed_dir.join(&file);
        fs::write(&path, &gathered.bytes)
            .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
        entries.push(Entry {
            content_type: content_type(&gathered.name),
            name: gathered.name.clone(),
            file,
            sha256,
            package: gathered.package.clone(),
            path,
        });
    }
    Ok(entries)
}

/// The generated `assets.rs`: a static `ASSETS` array of `Asset` (defined by the library)
/// with the bytes included from the copies in `OUT_DIR`, and two matches, `url_of` (logical
/// name to URL) and `index_of_file` (hashed name to index in `ASSETS`).
pub fn render_assets_rs(entries: &[Entry]) -> Result<String, String> {
    let mut code = String::new();
    let mut w = |s: String| code.push_str(&s);
    w("// @generated by gantry-web-assets' build.rs; do not edit.\n\n".to_owned());
    w(format!(
        "pub(crate) static ASSETS: [Asset; {}] = [\n",
        entries.len()
    ));
    for entry in entries {
        let path = entry
            .path
            .to_str()
            .ok_or_else(|| format!("{} is not a UTF-8 path", entry.path.display()))?;
        let package = match &entry.package {
            Some((name, version)) => format!("Some(({name:?}, {version:?}))"),
            None => "None".to_owned(),
        };
        w(format!(
            "    Asset {{\n        name: {:?},\n        file: {:?},\n        content_type: {:?},\n        \
             bytes: include_bytes!({path:?}),\n        sha256: {:?},\n        package: {package},\n    }},\n",
            entry.name, entry.file, entry.content_type, entry.sha256
        ));
    }
    w("];\n\n".to_owned());
    w("pub(crate) fn url_of(name: &str) -> Option<&'static str> {\n    match name {\n".to_owned());
    for entry in entries {
        w(format!(
            "        {:?} => Some({:?}),\n",
            entry.name,
            format!("{URL_PREFIX}{}", entry.file)
        ));
    }
    w("        _ => None,\n    }\n}\n\n".to_owned());
    w("pub(crate) fn index_of_file(file: &str) -> Option<usize> {\n    match file {\n".to_owned());
    for (index, entry) in entries.iter().enumerate() {
        w(format!("        {:?} => Some({index}),\n", entry.file));
    }
    w("        _ => None,\n    }\n}\n".to_owned());
    Ok(code)
}

#[cfg(test)]
mod tests {
    use super::*;

    const EMPTY_SHA256: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    #[test]
    fn sha256_is_lower_hex() {
        assert_eq!(sha256_hex(b""), EMPTY_SHA256);
        assert_eq!(
            sha256_hex(b"abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn hashed_names_keep_stem_and_extension() {
        let hash = "3f2a9c1b04de0123456789abcdef";
        assert_eq!(hashed_file_name("htmx.js", hash), "htmx-3f2a9c1b04de.js");
        assert_eq!(
            hashed_file_name("htmx-sse.js", hash),
            "htmx-sse-3f2a9c1b04de.js"
        );
        assert_eq!(
            hashed_file_name("logo.min.svg", hash),
            "logo.min-3f2a9c1b04de.svg"
        );
        assert_eq!(hashed_file_name("LICENSE", hash), "LICENSE-3f2a9c1b04de");
        assert_eq!(
            hashed_file_name("app.css", EMPTY_SHA256),
            "app-e3b0c44298fc.css"
        );
    }

    #[test]
    fn content_types_by_extension() {
        assert_eq!(content_type("htmx.js"), "text/javascript; charset=utf-8");
        assert_eq!(content_type("a.MJS"), "text/javascript; charset=utf-8");
        assert_eq!(content_type("uplot.css"), "text/css; charset=utf-8");
        assert_eq!(content_type("logo.svg"), "image/svg+xml");
        assert_eq!(content_type("favicon.ico"), "image/x-icon");
        assert_eq!(content_type("icon.png"), "image/png");
        assert_eq!(content_type("font.woff2"), "font/woff2");
        assert_eq!(content_type("app.js.map"), "application/json");
        assert_eq!(content_type("README"), "application/octet-stream");
    }

    #[test]
    fn file_names_are_checked() {
        assert!(check_file_name("app.js").is_ok());
        assert!(check_file_name("uPlot_2-x.min.css").is_ok());
        for bad in ["", ".hidden", "a b.js", "a/b.js", "a\"b.js", "é.js", "a\\b"] {
            assert!(check_file_name(bad).is_err(), "{bad:?} accepted");
        }
        assert!(is_ignored_static(".gitkeep"));
        assert!(!is_ignored_static("app.js"));
    }

    #[test]
    fn package_json_and_lockfile_are_read() {
        let text = r#"{"name": "htmx.org", "version": "2.0.11", "main": "dist/htmx.esm.js"}"#;
        assert_eq!(
            parse_package_json(text).unwrap(),
            ("htmx.org".to_owned(), "2.0.11".to_owned())
        );
        assert!(parse_package_json(r#"{"name": "x"}"#).is_err());
        assert!(parse_package_json("not json").is_err());
        let lock = r#"{"packages": {"": {}, "node_modules/uplot": {"version": "1.6.32"}}}"#;
        assert_eq!(locked_version(lock, "uplot").as_deref(), Some("1.6.32"));
        assert_eq!(locked_version(lock, "htmx.org"), None);
    }

    #[test]
    fn node_version_is_checked() {
        assert_eq!(parse_node_version("v20.20.2\n"), Some((20, 20, 2)));
        assert_eq!(parse_node_version("v22.1.0-nightly"), Some((22, 1, 0)));
        assert_eq!(parse_node_version("garbage"), None);
        assert!(check_node_version("v20.0.0").is_ok());
        assert!(check_node_version("v24.3.1").is_ok());
        let old = check_node_version("v18.19.1").unwrap_err();
        assert!(old.contains("v18.19.1") && old.contains("too old"), "{old}");
        assert!(check_node_version("").is_err());
    }

    #[test]
    fn npm_runs_offline_when_cargo_is() {
        assert!(is_offline(Some("true")));
        assert!(is_offline(Some("TRUE")));
        assert!(is_offline(Some("1")));
        assert!(!is_offline(Some("false")));
        assert!(!is_offline(None));
        assert_eq!(
            npm_ci_args(false),
            ["ci", "--ignore-scripts", "--no-audit", "--no-fund"]
        );
        assert_eq!(
            npm_ci_args(true),
            [
                "ci",
                "--ignore-scripts",
                "--no-audit",
                "--no-fund",
                "--offline"
            ]
        );
    }

    #[test]
    fn npm_ci_is_skipped_only_for_the_same_lockfile() {
        assert!(needs_npm_ci(false, Some(b"lock"), b"lock"));
        assert!(needs_npm_ci(true, None, b"lock"));
        assert!(needs_npm_ci(true, Some(b"old lock"), b"lock"));
        assert!(!needs_npm_ci(true, Some(b"lock"), b"lock"));
    }

    #[test]
    fn help_names_every_way_out() {
        assert!(HELP.contains("Node.js ≥ 20 and npm are needed to build the dashboard's assets"));
        assert!(HELP.contains("GANTRY_ASSETS_DIR"));
        assert!(HELP.contains("--no-default-features"));
    }

    #[test]
    fn gantry_assets_dir_chooses_a_prepared_node_modules() {
        assert_eq!(choose_source(None), Ok(Source::Npm));
        assert_eq!(choose_source(Some(OsStr::new(""))), Ok(Source::Npm));
        let dir = std::env::temp_dir().join("prepared").join("node_modules");
        assert_eq!(
            choose_source(Some(dir.as_os_str())),
            Ok(Source::Prepared(dir.clone()))
        );
        let err = choose_source(Some(OsStr::new("relative/node_modules"))).unwrap_err();
        assert!(err.contains("absolute"), "{err}");
    }

    /// Writes a fake `node_modules` with the files of [`NPM_FILES`].
    fn fake_node_modules(root: &Path) -> PathBuf {
        let node_modules = root.join("node_modules");
        for npm in NPM_FILES {
            let dir = node_modules.join(npm.package);
            let file = dir.join(npm.path);
            fs::create_dir_all(file.parent().unwrap()).unwrap();
            fs::write(
                dir.join("package.json"),
                format!(r#"{{"name": "{}", "version": "9.9.9"}}"#, npm.package),
            )
            .unwrap();
            fs::write(&file, format!("/* {} */", npm.name)).unwrap();
        }
        node_modules
    }

    #[test]
    fn gather_takes_npm_files_then_static_files() {
        let tmp = tempfile::tempdir().unwrap();
        let node_modules = fake_node_modules(tmp.path());
        let static_dir = tmp.path().join("static");
        fs::create_dir_all(&static_dir).unwrap();
        fs::write(static_dir.join("app.js"), "app();").unwrap();
        fs::write(static_dir.join("logo.svg"), "<svg/>").unwrap();
        fs::write(static_dir.join(".gitkeep"), "").unwrap();

        let files = gather(&node_modules, &static_dir).unwrap();
        let names: Vec<&str> = files.iter().map(|f| f.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "htmx.js",
                "htmx-sse.js",
                "uplot.js",
                "uplot.css",
                "app.js",
                "logo.svg"
            ]
        );
        assert_eq!(files[0].bytes, b"/* htmx.js */");
        assert_eq!(
            files[1].package,
            Some(("htmx-ext-sse".to_owned(), "9.9.9".to_owned()))
        );
        assert_eq!(files[4].bytes, b"app();");
        assert_eq!(files[4].package, None);

        // No static/ at all is fine.
        let files = gather(&node_modules, &tmp.path().join("missing")).unwrap();
        assert_eq!(files.len(), NPM_FILES.len());
    }

    #[test]
    fn gather_fails_clearly() {
        let tmp = tempfile::tempdir().unwrap();
        let node_modules = fake_node_modules(tmp.path());
        let static_dir = tmp.path().join("static");
        fs::create_dir_all(&static_dir).unwrap();

        fs::write(static_dir.join("htmx.js"), "clash").unwrap();
        let err = gather(&node_modules, &static_dir).unwrap_err();
        assert!(err.contains("same name as an npm file"), "{err}");
        fs::remove_file(static_dir.join("htmx.js")).unwrap();

        fs::create_dir(static_dir.join("img")).unwrap();
        let err = gather(&node_modules, &static_dir).unwrap_err();
        assert!(err.contains("is a directory"), "{err}");
        fs::remove_dir(static_dir.join("img")).unwrap();

        fs::write(static_dir.join("bad name.js"), "").unwrap();
        assert!(gather(&node_modules, &static_dir).is_err());
        fs::remove_file(static_dir.join("bad name.js")).unwrap();

        fs::remove_file(node_modules.join("uplot/dist/uPlot.min.css")).unwrap();
        let err = gather(&node_modules, &static_dir).unwrap_err();
        assert!(
            err.contains("uplot 9.9.9 has no dist/uPlot.min.css"),
            "{err}"
        );

        let err = gather(&tmp.path().join("nowhere"), &static_dir).unwrap_err();
        assert!(
            err.contains("is the npm package htmx.org installed"),
            "{err}"
        );
    }

    #[test]
    fn embedded_files_are_written_and_rendered() {
        let tmp = tempfile::tempdir().unwrap();
        let files = vec![
            Gathered {
                name: "htmx.js".to_owned(),
                bytes: b"abc".to_vec(),
                package: Some(("htmx.org".to_owned(), "2.0.11".to_owned())),
            },
            Gathered {
                name: "app.css".to_owned(),
                bytes: Vec::new(),
                package: None,
            },
        ];
        let embed = tmp.path().join("embed");
        let entries = write_embedded(&files, &embed).unwrap();
        assert_eq!(entries[0].file, "htmx-ba7816bf8f01.js");
        assert_eq!(entries[0].content_type, "text/javascript; charset=utf-8");
        assert_eq!(
            fs::read(embed.join("htmx-ba7816bf8f01.js")).unwrap(),
            b"abc"
        );
        assert_eq!(entries[1].file, "app-e3b0c44298fc.css");
        assert_eq!(entries[1].sha256, EMPTY_SHA256);

        let code = render_assets_rs(&entries).unwrap();
        assert!(code.contains("pub(crate) static ASSETS: [Asset; 2] = ["));
        assert!(code.contains(&format!(
            "include_bytes!({:?})",
            embed.join("htmx-ba7816bf8f01.js").to_str().unwrap()
        )));
        assert!(code.contains(r#"package: Some(("htmx.org", "2.0.11")),"#));
        assert!(code.contains("package: None,"));
        assert!(code.contains(r#""htmx.js" => Some("/assets/htmx-ba7816bf8f01.js"),"#));
        assert!(code.contains(r#""app-e3b0c44298fc.css" => Some(1),"#));
    }
}
