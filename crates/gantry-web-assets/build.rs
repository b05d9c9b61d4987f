//! Installs the locked npm packages in `OUT_DIR` (or takes `GANTRY_ASSETS_DIR`), copies the
//! files to embed there under content-hashed names, and generates `$OUT_DIR/assets.rs`.
//!
//! Nothing is written to the source tree, and no shell is involved: programs run through
//! `std::process::Command` with fixed arguments.

#[allow(dead_code)]
#[path = "src/build_support.rs"]
mod build_support;

use std::env;
use std::fs;
use std::io::ErrorKind;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

use build_support::{Source, ENV_ASSETS_DIR, ENV_NET_OFFLINE, HELP, NPM_FILES, STORED_LOCK};

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("error: gantry-web-assets: {message}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> Result<(), String> {
    println!("cargo:rerun-if-changed=package.json");
    println!("cargo:rerun-if-changed=package-lock.json");
    println!("cargo:rerun-if-changed=static");
    println!("cargo:rerun-if-env-changed={ENV_ASSETS_DIR}");

    let manifest_dir = env_path("CARGO_MANIFEST_DIR")?;
    let out_dir = env_path("OUT_DIR")?;
    let package_json = manifest_dir.join("package.json");
    let lockfile = manifest_dir.join("package-lock.json");
    let static_dir = manifest_dir.join("static");

    let node_modules = match build_support::choose_source(env::var_os(ENV_ASSETS_DIR).as_deref())? {
        Source::Prepared(dir) => {
            if !dir.is_dir() {
                return Err(format!(
                    "{ENV_ASSETS_DIR}={} is not a directory; it must name a prepared node_modules \
                     directory.",
                    dir.display()
                ));
            }
            dir
        }
        Source::Npm => npm_ci(&out_dir, &package_json, &lockfile)?,
    };

    let files = build_support::gather(&node_modules, &static_dir)?;
    warn_unlocked_versions(&lockfile, &files)?;

    let embed_dir = out_dir.join("embed");
    if embed_dir.exists() {
        fs::remove_dir_all(&embed_dir)
            .map_err(|e| format!("cannot clean {}: {e}", embed_dir.display()))?;
    }
    let entries = build_support::write_embedded(&files, &embed_dir)?;
    let code = build_support::render_assets_rs(&entries)?;
    let assets_rs = out_dir.join("assets.rs");
    fs::write(&assets_rs, code).map_err(|e| format!("cannot write {}: {e}", assets_rs.display()))
}

fn env_path(name: &str) -> Result<PathBuf, String> {
    env::var_os(name)
        .map(PathBuf::from)
        .ok_or_else(|| format!("{name} is not set (this runs as cargo's build script)"))
}

/// Runs `npm ci` in `OUT_DIR/npm` on copies of `package.json` and `package-lock.json`,
/// unless the `node_modules` there was made from the same lockfile. Returns its path.
fn npm_ci(out_dir: &Path, package_json: &Path, lockfile: &Path) -> Result<PathBuf, String> {
    let work = out_dir.join("npm");
    fs::create_dir_all(&work).map_err(|e| format!("cannot create {}: {e}", work.display()))?;
    let lock =
        fs::read(lockfile).map_err(|e| format!("cannot read {}: {e}", lockfile.display()))?;
    let manifest = fs::read(package_json)
        .map_err(|e| format!("cannot read {}: {e}", package_json.display()))?;
    write(&work.join("package.json"), &manifest)?;
    write(&work.join("package-lock.json"), &lock)?;

    let node_modules = work.join("node_modules");
    let stored = work.join(STORED_LOCK);
    let stored_lock = fs::read(&stored).ok();
    if !build_support::needs_npm_ci(node_modules.is_dir(), stored_lock.as_deref(), &lock) {
        return Ok(node_modules);
    }
    if stored.exists() {
        fs::remove_file(&stored).map_err(|e| format!("cannot remove {}: {e}", stored.display()))?;
    }

    check_node()?;
    let offline = build_support::is_offline(env::var(ENV_NET_OFFLINE).ok().as_deref());
    let args = build_support::npm_ci_args(offline);
    let output = Command::new(npm_program())
        .args(&args)
        .current_dir(&work)
        .output()
        .map_err(|e| match e.kind() {
            ErrorKind::NotFound => format!("npm was not found on PATH.\n{HELP}"),
            _ => format!("could not run npm: {e}\n{HELP}"),
        })?;
    if !output.status.success() {
        return Err(format!(
            "`npm {}` failed in {} ({}):\n{}{}\n{HELP}",
            args.join(" "),
            work.display(),
            output.status,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr),
        ));
    }
    write(&stored, &lock)?;
    Ok(node_modules)
}

/// Fails unless `node --version` answers with version 20 or newer.
fn check_node() -> Result<(), String> {
    let output = Command::new("node")
        .arg("--version")
        .output()
        .map_err(|e| match e.kind() {
            ErrorKind::NotFound => format!("Node.js (`node`) was not found on PATH.\n{HELP}"),
            _ => format!("could not run `node --version`: {e}\n{HELP}"),
        })?;
    if !output.status.success() {
        return Err(format!(
            "`node --version` failed ({}).\n{HELP}",
            output.status
        ));
    }
    build_support::check_node_version(&String::from_utf8_lossy(&output.stdout))
        .map_err(|e| format!("{e}\n{HELP}"))
}

fn npm_program() -> &'static str {
    if cfg!(windows) {
        "npm.cmd"
    } else {
        "npm"
    }
}

/// Warns when a package's installed version is not the locked one (possible with
/// `GANTRY_ASSETS_DIR`; `npm ci` installs exactly the lockfile).
fn warn_unlocked_versions(
    lockfile: &Path,
    files: &[build_support::Gathered],
) -> Result<(), String> {
    let lock = fs::read_to_string(lockfile)
        .map_err(|e| format!("cannot read {}: {e}", lockfile.display()))?;
    for (i, npm) in NPM_FILES.iter().enumerate() {
        if NPM_FILES[..i]
            .iter()
            .any(|earlier| earlier.package == npm.package)
        {
            continue;
        }
        let installed = files
            .iter()
            .find(|f| f.name == npm.name)
            .and_then(|f| f.package.as_ref())
            .map(|(_, version)| version.as_str());
        let locked = build_support::locked_version(&lock, npm.package);
        if installed != locked.as_deref() {
            println!(
                "cargo:warning=gantry-web-assets: embedding {} {} but package-lock.json locks {}",
                npm.package,
                installed.unwrap_or("?"),
                locked.as_deref().unwrap_or("no version"),
            );
        }
    }
    Ok(())
}

fn write(path: &Path, bytes: &[u8]) -> Result<(), String> {
    fs::write(path, bytes).map_err(|e| format!("cannot write {}: {e}", path.display()))
}
