//! Fuzz target bodies for the control plane: what people, CI, hosts and browsers send the
//! server and the agent (service and monitor files, change and agent bodies, header
//! values, scopes, pings, archives, migration SQL, flag definitions, replay CSVs, dashboard
//! forms). See the crate documentation for the rules every body follows.

use std::borrow::Cow;
use std::fs;
use std::io::{Read, Write};
use std::num::NonZeroU32;
use std::path::{Component, Path, PathBuf};
use std::sync::OnceLock;

use arbitrary::{Arbitrary, Unstructured};
use base64::Engine as _;
use chrono::{DateTime, TimeDelta, Utc};
use rand::rngs::StdRng;
use rand::SeedableRng;

use crate::Target;

const MODULE: &str = "crates/gantry-fuzz/src/control.rs";

/// This module's targets.
pub const TARGETS: &[Target] = &[
    Target {
        name: "service_toml",
        run: service_toml,
        reaches: &[
            "crates/gantry-core/src/deploy.rs",
            "crates/gantry-core/src/detect.rs",
            "crates/gantry-core/src/names.rs",
            "crates/gantry-core/src/time.rs",
            "crates/gantry-monitors/src/logs.rs",
            "crates/gantry-monitors/src/pattern.rs",
            "crates/gantry-monitors/src/error.rs",
        ],
        reaches_unsafe: false,
        module: MODULE,
    },
    Target {
        name: "archive_unpack",
        run: archive_unpack,
        reaches: &[
            "crates/gantry-release/src/unpack.rs",
            "crates/gantry-release/src/layout.rs",
            "crates/gantry-release/src/lib.rs",
        ],
        reaches_unsafe: false,
        module: MODULE,
    },
    Target {
        name: "change_json",
        run: change_json,
        reaches: &[
            "crates/gantry-core/src/change.rs",
            "crates/gantry-core/src/time.rs",
            "crates/gantry-core/src/names.rs",
        ],
        reaches_unsafe: false,
        module: MODULE,
    },
    Target {
        name: "agent_bodies",
        run: agent_bodies,
        reaches: &["crates/gantry-core/src/ship.rs"],
        reaches_unsafe: false,
        module: MODULE,
    },
    Target {
        name: "http_headers",
        run: http_headers,
        reaches: &["crates/gantry-core/src/http.rs"],
        reaches_unsafe: false,
        module: MODULE,
    },
    Target {
        name: "scope_strings",
        run: scope_strings,
        reaches: &[
            "crates/gantry-core/src/scope.rs",
            "crates/gantry-core/src/names.rs",
        ],
        reaches_unsafe: false,
        module: MODULE,
    },
    Target {
        name: "monitor_file",
        run: monitor_file,
        reaches: &[
            "crates/gantry-monitors/src",
            "crates/gantry-core/src/time.rs",
        ],
        reaches_unsafe: false,
        module: MODULE,
    },
    Target {
        name: "ping_path",
        run: ping_path,
        reaches: &[
            "crates/gantry-monitors/src/ping.rs",
            "crates/gantry-monitors/src/state.rs",
        ],
        reaches_unsafe: false,
        module: MODULE,
    },
    Target {
        name: "detect_csv",
        run: detect_csv,
        reaches: &["crates/gantry-detect/src"],
        reaches_unsafe: false,
        module: MODULE,
    },
    Target {
        name: "migrate_sql",
        run: migrate_sql,
        reaches: &[
            "crates/gantry-migrate/src/split.rs",
            "crates/gantry-migrate/src/classify.rs",
            "crates/gantry-migrate/src/backfill.rs",
            "crates/gantry-migrate/src/checksum.rs",
            "crates/gantry-migrate/src/lint.rs",
        ],
        reaches_unsafe: false,
        module: MODULE,
    },
    Target {
        name: "flags_definition",
        run: flags_definition,
        reaches: &["crates/gantry-flags/src"],
        reaches_unsafe: false,
        module: MODULE,
    },
    Target {
        name: "dashboard_inputs",
        run: dashboard_inputs,
        reaches: &[
            "crates/gantry-core/src/http.rs",
            "crates/gantry-core/src/scope.rs",
            "crates/gantry-core/src/token.rs",
            "crates/gantry-core/src/names.rs",
            "crates/gantry-core/src/time.rs",
        ],
        reaches_unsafe: false,
        module: MODULE,
    },
];

/// The server's clock in every target: a fixed instant, so a run depends on its input only.
fn now() -> DateTime<Utc> {
    DateTime::UNIX_EPOCH + TimeDelta::seconds(1_767_225_600)
}

/// Text as a request body or a file read as text carries it.
fn text(data: &[u8]) -> Cow<'_, str> {
    String::from_utf8_lossy(data)
}

/// A string of at most `max` bytes (cut at a character boundary).
fn short_string(u: &mut Unstructured<'_>, max: usize) -> arbitrary::Result<String> {
    let mut s = String::arbitrary(u)?;
    if s.len() > max {
        let mut end = max;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        s.truncate(end);
    }
    Ok(s)
}

/// One of `words`, or (when the fuzzer says so) any short string.
fn word(u: &mut Unstructured<'_>, words: &[&str]) -> arbitrary::Result<String> {
    let i = u.choose_index(words.len() + 1)?;
    match words.get(i) {
        Some(w) => Ok((*w).to_string()),
        None => short_string(u, 64),
    }
}

/// A list of at most `max` items made by `item`.
fn list<'a, T>(
    u: &mut Unstructured<'a>,
    max: usize,
    mut item: impl FnMut(&mut Unstructured<'a>) -> arbitrary::Result<T>,
) -> arbitrary::Result<Vec<T>> {
    let n = u.int_in_range(0..=max)?;
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        out.push(item(u)?);
    }
    Ok(out)
}

// ---------------------------------------------------------------------------------------
// 1. service_toml

/// A service file as `gantry service apply` and `PUT /api/v1/services/{name}/deploy-config`
/// read it: split into the deploy config, `[detect]` and `[[logs]]`, each parsed and
/// checked. A valid deploy config prints in a canonical form that parses back to the same
/// config, and differs from itself by nothing; splitting keeps every line's number.
pub fn service_toml(data: &[u8]) {
    use gantry_core::deploy::{diff_lines, DeployConfig};
    use gantry_core::detect::{split_service_file, DetectConfig};

    let text = text(data);
    // The deploy config alone, as the agent parses what the server sends it.
    check_deploy_config(&text);
    let Ok(parts) = split_service_file(&text) else {
        return;
    };
    let lines = text.lines().count();
    for part in [
        Some(&parts.deploy),
        parts.detect.as_ref(),
        parts.logs.as_ref(),
    ]
    .into_iter()
    .flatten()
    {
        assert_eq!(
            part.matches('\n').count(),
            lines,
            "a part of the service file lost or gained lines"
        );
    }
    if let Some(detect) = &parts.detect {
        let _ = DetectConfig::parse(detect, "fuzz.toml");
    }
    if let Some(logs) = &parts.logs {
        let _ = gantry_monitors::parse_logs(logs, "fuzz.toml", &gantry_monitors::Limits::default());
    }
    if let Some(config) = check_deploy_config(&parts.deploy) {
        let _ = diff_lines(&parts.deploy, &config.to_canonical_toml());
        if let Ok(minimal) = DeployConfig::parse_toml("name = \"x\"") {
            let _ = DeployConfig::diff(&minimal, &config);
        }
    }
}

/// Parses a deploy config; when it is valid, checks its canonical form.
fn check_deploy_config(text: &str) -> Option<gantry_core::DeployConfig> {
    use gantry_core::deploy::DeployConfig;

    let config = DeployConfig::parse_toml(text).ok()?;
    let canonical = config.to_canonical_toml();
    let again = match DeployConfig::parse_toml(&canonical) {
        Ok(again) => again,
        Err(e) => panic!("the canonical form of a valid config does not parse: {e}\n{canonical}"),
    };
    assert_eq!(
        again.to_canonical_toml(),
        canonical,
        "the canonical form is not stable"
    );
    assert!(
        DeployConfig::diff(&config, &again).is_empty(),
        "a config differs from its canonical form"
    );
    Some(config)
}

// ---------------------------------------------------------------------------------------
// 2. archive_unpack

/// Largest tar stream (after gunzip) a run unpacks: it bounds the entries (one per 512
/// bytes) and so the run's time.
const MAX_TAR_BYTES: u64 = 1024 * 1024;
/// File content the unpack may write in all (its `max_bytes`).
const MAX_UNPACKED_BYTES: u64 = 256 * 1024;
const SERVICE: &str = "svc";
const RELEASE: &str = "b1-20260101T000000.000Z";

/// One component of a path in a generated archive: the dangerous ones by name, so the
/// fuzzer reaches them at once.
#[derive(Debug, Arbitrary)]
enum Part {
    Up,
    Dot,
    Empty,
    A,
    B,
    Releases,
    Shared,
    Outside,
    Name(String),
}

#[derive(Debug, Arbitrary)]
struct EntryPath {
    absolute: bool,
    parts: Vec<Part>,
    trailing_slash: bool,
}

impl EntryPath {
    fn bytes(&self) -> Vec<u8> {
        let parts: Vec<String> = self
            .parts
            .iter()
            .take(12)
            .map(|p| match p {
                Part::Up => "..".to_string(),
                Part::Dot => ".".to_string(),
                Part::Empty => String::new(),
                Part::A => "a".to_string(),
                Part::B => "b".to_string(),
                Part::Releases => "releases".to_string(),
                Part::Shared => "shared".to_string(),
                Part::Outside => "outside".to_string(),
                Part::Name(n) => n.chars().take(40).collect(),
            })
            .collect();
        let mut out = String::new();
        if self.absolute {
            out.push('/');
        }
        out.push_str(&parts.join("/"));
        if self.trailing_slash {
            out.push('/');
        }
        out.into_bytes()
    }
}

#[derive(Debug, Arbitrary)]
enum EntryKind {
    File,
    Directory,
    Symlink,
    HardLink,
    Fifo,
    CharDevice,
    Sparse,
    Other(u8),
}

/// How an entry's path is written: in the header (at most 100 bytes), in a GNU long-name
/// entry before it, or in a PAX extended header before it.
#[derive(Debug, Arbitrary)]
enum NameEncoding {
    Header,
    GnuLong,
    Pax,
}

#[derive(Debug, Arbitrary)]
struct ArchiveEntry {
    path: EntryPath,
    kind: EntryKind,
    link: EntryPath,
    encoding: NameEncoding,
    mode: u16,
    content: Vec<u8>,
}

/// Archive unpacking through the agent's checks (`gantry_release::unpack`), into a
/// release directory under a scratch directory that also holds a file outside the service.
/// The input is a `.tar.gz` (first byte 0), a tar stream gzipped here (1), or entries with
/// arbitrary paths, link targets and types (anything else). Properties: whatever the
/// archive, nothing appears or changes outside the release being unpacked (and the
/// service's own `releases/` and `shared/`), and every symlink in an unpacked release
/// resolves inside it.
pub fn archive_unpack(data: &[u8]) {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let gz = match mode % 4 {
        0 => rest.to_vec(),
        1 => gzip(rest),
        _ => {
            let mut u = Unstructured::new(rest);
            let Ok(entries) = list(&mut u, 24, ArchiveEntry::arbitrary) else {
                return;
            };
            gzip(&build_tar(&entries))
        }
    };
    // A gzip bomb is bounded by the unpack's byte limit but not its entry count; keep a
    // run short by refusing large streams before the unpack sees them.
    let mut tar_len = 0u64;
    let mut decoder = flate2::read::GzDecoder::new(&gz[..]).take(MAX_TAR_BYTES + 1);
    let mut sink = [0u8; 8192];
    loop {
        match decoder.read(&mut sink) {
            Ok(0) | Err(_) => break,
            Ok(n) => tar_len += n as u64,
        }
    }
    if tar_len > MAX_TAR_BYTES {
        return;
    }
    let Some(runtime) = runtime() else {
        return;
    };
    let Ok(scratch) = tempfile::Builder::new()
        .prefix("gantry-fuzz-unpack")
        .tempdir()
    else {
        return;
    };
    let Ok(base) = scratch.path().canonicalize() else {
        return;
    };
    let archive = base.join("archive.tar.gz");
    let outside = base.join("outside");
    let sentinel = outside.join("keep");
    let root = base.join("root");
    if fs::write(&archive, &gz).is_err()
        || fs::create_dir(&outside).is_err()
        || fs::write(&sentinel, b"sentinel").is_err()
        || fs::create_dir(&root).is_err()
    {
        return;
    }
    let Ok(layout) = gantry_release::ServiceLayout::new(&root, SERVICE) else {
        return;
    };
    let result = runtime.block_on(gantry_release::unpack(
        &archive,
        &layout,
        RELEASE,
        MAX_UNPACKED_BYTES,
    ));
    let release = layout.release_path(RELEASE);
    match &result {
        Ok(path) => assert_eq!(path, &release, "unpack returned another directory"),
        Err(_) => assert!(
            fs::symlink_metadata(&release).is_err(),
            "a failed unpack left a release directory"
        ),
    }
    check_scratch(&base, &release);
    assert_eq!(
        fs::read(&sentinel).ok().as_deref(),
        Some(&b"sentinel"[..]),
        "the file outside the service changed"
    );
    if result.is_ok() {
        check_links_inside(&release, &release);
    }
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    if encoder.write_all(bytes).is_err() {
        return Vec::new();
    }
    encoder.finish().unwrap_or_default()
}

/// A tar stream of `entries`, their headers written byte for byte (the `tar` crate's own
/// path setters refuse `..` and absolute paths, which are exactly what is wanted here).
fn build_tar(entries: &[ArchiveEntry]) -> Vec<u8> {
    let mut builder = tar::Builder::new(Vec::new());
    for entry in entries {
        let path = entry.path.bytes();
        let link = entry.link.bytes();
        let kind = match entry.kind {
            EntryKind::File => tar::EntryType::Regular,
            EntryKind::Directory => tar::EntryType::Directory,
            EntryKind::Symlink => tar::EntryType::Symlink,
            EntryKind::HardLink => tar::EntryType::Link,
            EntryKind::Fifo => tar::EntryType::Fifo,
            EntryKind::CharDevice => tar::EntryType::Char,
            EntryKind::Sparse => tar::EntryType::GNUSparse,
            EntryKind::Other(b) => tar::EntryType::new(b),
        };
        let content: &[u8] = if kind == tar::EntryType::Regular {
            &entry.content[..entry.content.len().min(4096)]
        } else {
            &[]
        };
        let mut header = tar::Header::new_gnu();
        match entry.encoding {
            NameEncoding::Header => {}
            NameEncoding::GnuLong => {
                for (bytes, long_kind) in [
                    (&path, tar::EntryType::GNULongName),
                    (&link, tar::EntryType::GNULongLink),
                ] {
                    let mut long = tar::Header::new_gnu();
                    set_raw(&mut long.as_old_mut().name, b"././@LongLink");
                    long.set_entry_type(long_kind);
                    let mut data = bytes.clone();
                    data.push(0);
                    long.set_size(data.len() as u64);
                    long.set_cksum();
                    let _ = builder.append(&long, &data[..]);
                }
            }
            NameEncoding::Pax => {
                let mut records = Vec::new();
                for (key, value) in [("path", &path), ("linkpath", &link)] {
                    // "<len> key=value\n", where len counts the whole record.
                    let body = key.len() + value.len() + 3;
                    let mut len = body + body.to_string().len();
                    if (len).to_string().len() != body.to_string().len() {
                        len += 1;
                    }
                    records.extend_from_slice(format!("{len} {key}=").as_bytes());
                    records.extend_from_slice(value);
                    records.push(b'\n');
                }
                let mut pax = tar::Header::new_ustar();
                set_raw(&mut pax.as_old_mut().name, b"PaxHeader");
                pax.set_entry_type(tar::EntryType::XHeader);
                pax.set_size(records.len() as u64);
                pax.set_cksum();
                let _ = builder.append(&pax, &records[..]);
            }
        }
        set_raw(&mut header.as_old_mut().name, &path);
        set_raw(&mut header.as_old_mut().linkname, &link);
        header.set_entry_type(kind);
        header.set_mode(u32::from(entry.mode));
        header.set_size(content.len() as u64);
        header.set_cksum();
        let _ = builder.append(&header, content);
    }
    builder.into_inner().unwrap_or_default()
}

/// Copies `value` into a fixed header field, cut to its size.
fn set_raw(field: &mut [u8], value: &[u8]) {
    field.fill(0);
    let n = value.len().min(field.len());
    field[..n].copy_from_slice(&value[..n]);
}

/// A runtime for the unpack's blocking task.
fn runtime() -> Option<&'static tokio::runtime::Runtime> {
    static RUNTIME: OnceLock<Option<tokio::runtime::Runtime>> = OnceLock::new();
    RUNTIME
        .get_or_init(|| {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .ok()
        })
        .as_ref()
}

/// Everything under `base` must be what the run made itself, the service's directories,
/// or inside `releases/` (the release, or an unpack in progress that failed to clean up).
fn check_scratch(base: &Path, release: &Path) {
    let service = base.join("root").join(SERVICE);
    let releases = service.join("releases");
    let allowed_files = [
        base.join("archive.tar.gz"),
        base.join("outside"),
        base.join("outside").join("keep"),
        base.join("root"),
        service.clone(),
        releases.clone(),
        service.join("shared"),
    ];
    let mut stack = vec![base.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let Ok(entries) = fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.starts_with(&releases) && path != releases {
                let name = path
                    .strip_prefix(&releases)
                    .ok()
                    .and_then(|p| p.components().next())
                    .map(|c| c.as_os_str().to_string_lossy().into_owned())
                    .unwrap_or_default();
                assert!(
                    path.starts_with(release) || name.starts_with(gantry_release::UNPACK_PREFIX),
                    "unpack wrote {} in releases/",
                    path.display()
                );
                continue;
            }
            assert!(
                allowed_files.contains(&path),
                "unpack wrote outside its directory: {}",
                path.display()
            );
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                stack.push(path);
            }
        }
    }
}

/// Every symlink under `dir` resolves (as far as it exists) inside `release`.
fn check_links_inside(dir: &Path, release: &Path) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let Ok(kind) = entry.file_type() else {
            continue;
        };
        if kind.is_symlink() {
            let mut budget = 40;
            if let Some(target) = resolve(&path, &mut budget) {
                assert!(
                    target.starts_with(release),
                    "symlink {} leads out of the release, to {}",
                    path.display(),
                    target.display()
                );
            }
        } else if kind.is_dir() {
            check_links_inside(&path, release);
        }
    }
}

/// The absolute path `path` leads to, following every symlink on the way (the last
/// component's too) and reading missing components as written; `None` after too many
/// links (a loop).
fn resolve(path: &Path, budget: &mut u32) -> Option<PathBuf> {
    let mut out = PathBuf::from("/");
    for component in path.components() {
        match component {
            Component::RootDir | Component::Prefix(_) => out = PathBuf::from("/"),
            Component::CurDir => {}
            Component::ParentDir => {
                out.pop();
            }
            Component::Normal(name) => {
                out.push(name);
                if let Ok(target) = fs::read_link(&out) {
                    *budget = budget.checked_sub(1)?;
                    out.pop();
                    out = resolve(&out.join(target), budget)?;
                }
            }
        }
    }
    Some(out)
}

// ---------------------------------------------------------------------------------------
// 3. change_json

/// The body of `POST /api/v1/changes` read as the server reads it (serde_json into
/// `NewChange`), checked by `NewChange::validate`, and the body of `PATCH
/// /api/v1/changes/{id}` (`ChangePatch`) applied to the change it made. Properties: a
/// recorded change is finished exactly when it has `finished_at`, never before it started,
/// before and after a patch; and the change as the API returns it reads back the same.
pub fn change_json(data: &[u8]) {
    use gantry_core::{Change, ChangePatch, NewChange};

    let new: Option<NewChange> = serde_json::from_slice(data).ok();
    let patch: Option<ChangePatch> = serde_json::from_slice(data).ok();
    let base = match new.map(|n| n.validate(now())) {
        Some(Ok(valid)) => Some(valid.into_change(ulid::Ulid::nil(), "fuzz")),
        _ => None,
    };
    let mut change = base.unwrap_or_else(|| Change {
        id: ulid::Ulid::nil(),
        kind: gantry_core::ChangeKind::Deploy,
        service: Some("shop".into()),
        environment: Some("prod".into()),
        actor: "fuzz".into(),
        summary: "deploy".into(),
        description: None,
        status: gantry_core::ChangeStatus::InProgress,
        started_at: now() - TimeDelta::minutes(5),
        finished_at: None,
        size: None,
        commit_range: None,
        links: Vec::new(),
        metadata: serde_json::Map::new(),
        history: None,
    });
    check_change(&change);
    if let Some(patch) = patch {
        let before = change.clone();
        match patch.apply(&mut change, now()) {
            Ok(_) => check_change(&change),
            Err(_) => assert_eq!(
                change.status, before.status,
                "a refused patch changed the status"
            ),
        }
    }
    let _ = change.tags();
    let _ = gantry_core::Cursor::after(&change).encode();
}

fn check_change(change: &gantry_core::Change) {
    assert_eq!(
        change.status.is_finished(),
        change.finished_at.is_some(),
        "a change is finished exactly when it has finished_at"
    );
    if let Some(finished) = change.finished_at {
        assert!(finished >= change.started_at, "finished before it started");
    }
    let json = match serde_json::to_string(change) {
        Ok(json) => json,
        Err(e) => panic!("a change does not serialize: {e}"),
    };
    let back: gantry_core::Change = match serde_json::from_str(&json) {
        Ok(back) => back,
        Err(e) => panic!("the API's answer does not read back: {e}\n{json}"),
    };
    let mut expected = change.clone();
    // serde_json reads floats to within one unit in the last place.
    if let (Some(a), Some(b)) = (&mut expected.size, &back.size) {
        assert!(
            (a.value - b.value).abs() <= a.value.abs() * 1e-15,
            "size.value changed"
        );
        a.value = b.value;
    }
    assert_eq!(back, expected, "the change read back differs");
}

// ---------------------------------------------------------------------------------------
// 4. agent_bodies

/// What a (possibly compromised) host sends: the poll body (`AgentHello`, checked by
/// `AgentHello::validate`) and the report body (`TaskReport`) read as the server reads
/// them, the task id of the report's path, the report checked (`TaskReport::validate`) and
/// applied to a task as the handler does, and the metric names its log counts become.
/// Properties: an accepted hello's log counts each make one metric path of five plain
/// parts; the hello the store keeps reads back the same; a task keeps at most the tail of
/// what an agent sends.
pub fn agent_bodies(data: &[u8]) {
    use gantry_core::ship::{
        log_metric_name, AgentHello, Task, TaskPurpose, TaskReport, TaskState, MAX_TASK_OUTPUT,
    };

    if let Ok(hello) = serde_json::from_slice::<AgentHello>(data) {
        if hello.validate().is_ok() {
            for count in &hello.log_counts {
                // Host names are checked at enrolment like any name.
                let name = log_metric_name(&count.service, "web-1", &count.name);
                assert!(
                    name.starts_with("gantry.logs.")
                        && name
                            .bytes()
                            .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
                        && name.split('.').count() == 5,
                    "a log count makes the metric name {name:?}"
                );
            }
        }
        let json = serde_json::to_string(&hello).unwrap_or_default();
        let back = serde_json::from_str::<AgentHello>(&json).ok();
        assert_eq!(back.as_ref(), Some(&hello), "a hello does not read back");
    }
    // The task id in the report's path.
    let _ = text(data).parse::<ulid::Ulid>();
    let Ok(report) = serde_json::from_slice::<TaskReport>(data) else {
        return;
    };
    let mut task = Task {
        id: ulid::Ulid::nil(),
        rollout_id: None,
        host: "web-1".into(),
        service: "shop".into(),
        environment: "prod".into(),
        purpose: TaskPurpose::Deploy,
        wave: 0,
        build_id: ulid::Ulid::nil(),
        version: "1.0.0".into(),
        from_build: None,
        from_version: None,
        state: TaskState::Running,
        step: Some("fetch".into()),
        output: "earlier output".into(),
        error: None,
        created_at: now(),
        updated_at: now(),
        switched_at: None,
        undrained_at: None,
    };
    if report.validate().is_err() {
        return;
    }
    assert!(matches!(
        report.state,
        TaskState::Running | TaskState::Succeeded | TaskState::Failed
    ));
    let sent = report.clone();
    task.apply_report(report, now() + TimeDelta::seconds(1));
    assert!(task.output.len() <= MAX_TASK_OUTPUT.max("earlier output".len()));
    if !sent.output.is_empty() {
        assert!(
            sent.output.ends_with(&task.output),
            "output is not the tail"
        );
    }
    if let Some(error) = &sent.error {
        let kept = task.error.as_deref().unwrap_or_default();
        assert!(kept.len() <= MAX_TASK_OUTPUT && error.ends_with(kept));
    }
    if task.state == TaskState::Succeeded {
        assert!(task.switched_at.is_some() && task.undrained_at.is_some());
    }
    let json = serde_json::to_string(&task).unwrap_or_default();
    assert_eq!(
        serde_json::from_str::<Task>(&json).ok().as_ref(),
        Some(&task),
        "a task does not read back"
    );
}

// ---------------------------------------------------------------------------------------
// 5. http_headers

/// The header values the server reads (`gantry_core::http`): `Range`, `Authorization` as
/// the API reads it (Bearer, or basic with the token as password) and as flag SDKs send it
/// (the bare token), `Cookie`, and the sign-in's `next`. The first byte picks the reader;
/// the rest is the value. Properties: a parsed range start is the number written there;
/// a secret is what followed `Bearer ` (trimmed) or the basic password; a cookie's value is
/// in the header; `safe_next` always gives a path on this server.
pub fn http_headers(data: &[u8]) {
    use gantry_core::http::{bearer_secret, cookie_value, parse_range, safe_next, sdk_secret};

    let Some((&which, rest)) = data.split_first() else {
        return;
    };
    let value = text(rest);
    let value = value.as_ref();
    match which % 6 {
        0 => {
            if let Some(start) = parse_range(value) {
                let written = value
                    .trim()
                    .strip_prefix("bytes=")
                    .and_then(|s| s.split_once('-'))
                    .map(|(start, _)| start.trim())
                    .unwrap_or_default();
                assert!(
                    !written.is_empty() && written.bytes().all(|b| b.is_ascii_digit()),
                    "range start '{written}' is not a number as written"
                );
                assert_eq!(
                    written.trim_start_matches('0').parse::<u64>().unwrap_or(0),
                    start
                );
            }
            // Any offset written plainly reads back.
            let n = u64::from_le_bytes(pad8(rest));
            assert_eq!(parse_range(&format!("bytes={n}-")), Some(n));
        }
        1 => match bearer_secret(value) {
            Ok(secret) => {
                if let Some(token) = value
                    .strip_prefix("Bearer ")
                    .or_else(|| value.strip_prefix("bearer "))
                {
                    assert_eq!(secret, token.trim());
                } else {
                    assert!(!secret.is_empty(), "an empty basic password was taken");
                }
            }
            Err(e) => assert!(!e.0.is_empty()),
        },
        2 => {
            // A basic value made from a user and a password splits back into the password.
            let (user, password) = value.split_once('\n').unwrap_or((value, ""));
            let user = user.replace(':', "");
            let encoded =
                base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
            match bearer_secret(&format!("Basic {encoded}")) {
                Ok(secret) => assert_eq!(secret, password),
                Err(_) => assert!(password.is_empty()),
            }
        }
        3 => {
            if let Ok(secret) = sdk_secret(value) {
                assert!(!secret.is_empty() && secret.trim() == secret);
                assert!(value.contains(&secret));
            }
        }
        4 => {
            let values: Vec<&str> = value.split('\n').collect();
            for name in [
                "gantry",
                "__Host-gantry",
                values.first().copied().unwrap_or(""),
            ] {
                if let Some(found) = cookie_value(values.iter().copied(), name) {
                    assert!(values.iter().any(|v| v.contains(found)));
                    assert_eq!(found.trim(), found);
                }
            }
        }
        _ => {
            let next = safe_next(Some(value));
            assert!(
                next.starts_with('/')
                    && !next.starts_with("//")
                    && !next.starts_with("/\\")
                    && !next.contains('\\'),
                "safe_next gave '{next}'"
            );
            // The redirect's `Location` takes visible ASCII only: anything else makes the
            // answer a 500 instead of the redirect.
            assert!(
                next.bytes().all(|b| b.is_ascii_graphic()),
                "safe_next gave what cannot be a Location value: {next:?}"
            );
            assert!(next == "/" || next == value, "safe_next rewrote '{value}'");
            assert_eq!(safe_next(None), "/");
        }
    }
}

fn pad8(bytes: &[u8]) -> [u8; 8] {
    let mut out = [0u8; 8];
    let n = bytes.len().min(8);
    out[..n].copy_from_slice(&bytes[..n]);
    out
}

// ---------------------------------------------------------------------------------------
// 6. scope_strings

/// Scope strings (`NAME[:SERVICE][@ENV]`) and lists of them, and the coverage checks of a
/// grant holding a parsed list. Input: the list's text, then (after a newline) a service
/// and an environment asked about, one per line. Properties: a parsed scope prints and
/// parses back to itself, and so does a list; a grant that holds a scope everywhere allows
/// it on any service and environment; what it allows it holds somewhere; `admin` never
/// stands for an SDK scope; narrowing the question never takes an answer away.
pub fn scope_strings(data: &[u8]) {
    use gantry_core::scope::{Grant, Scope, ScopeName};

    let text = text(data);
    let mut lines = text.split('\n');
    let list_text = lines.next().unwrap_or_default();
    let service = lines.next().filter(|s| !s.is_empty());
    let environment = lines.next().filter(|s| !s.is_empty());

    for part in list_text.split(',') {
        if let Ok(scope) = part.parse::<Scope>() {
            let printed = scope.to_string();
            assert_eq!(
                printed.parse::<Scope>().ok(),
                Some(scope.clone()),
                "{printed}"
            );
            let json = serde_json::to_string(&scope).unwrap_or_default();
            assert_eq!(serde_json::from_str::<Scope>(&json).ok(), Some(scope));
        }
    }
    let Ok(scopes) = Scope::parse_list(list_text) else {
        return;
    };
    let printed = Scope::format_list(&scopes);
    assert_eq!(
        Scope::parse_list(&printed).ok().as_ref(),
        Some(&scopes),
        "{printed}"
    );
    assert!(Scope::check_set(&scopes).is_ok());
    let grant = Grant {
        token_name: "fuzz".into(),
        scopes,
    };
    for needed in ScopeName::ALL {
        let allows = grant.allows(needed, service, environment);
        if grant.holds_everywhere(needed) {
            assert!(allows, "holds {needed} everywhere but not here");
            assert!(grant.allows(needed, None, None));
        }
        if allows {
            assert!(grant.holds_somewhere(needed));
        }
        if grant.allows(needed, None, None) {
            assert!(grant.allows(needed, Some("any"), Some("where")));
        }
        if needed.is_sdk() && allows {
            assert!(
                grant.scopes.iter().any(|s| s.name == needed),
                "admin stood for {needed}"
            );
        }
        if let Some((s, e)) = grant.sdk_target(needed) {
            assert!(grant.allows(needed, Some(s), Some(e)));
        }
    }
}

// ---------------------------------------------------------------------------------------
// 7. monitor_file

/// A monitor file as `gantry monitor apply` and `PUT /api/v1/monitors/files/{source}`
/// read it (`MonitorFile::parse` with the server's default limits), and the same text as
/// a service file's `[[logs]]` part. Properties: a valid file's canonical text parses back
/// to the same monitors, prints the same again, and differs from the file by nothing.
pub fn monitor_file(data: &[u8]) {
    use gantry_monitors::{diff, Limits, MonitorFile};

    let text = text(data);
    let limits = Limits::default();
    let _ = gantry_monitors::parse_logs(&text, "fuzz.toml", &limits);
    let file = match MonitorFile::parse(&text, "fuzz.toml", &limits) {
        Ok(file) => file,
        Err(e) => {
            let _ = e.to_string();
            return;
        }
    };
    let canonical = file.to_toml();
    let again = match MonitorFile::parse(&canonical, "canonical.toml", &limits) {
        Ok(again) => again,
        Err(e) => panic!("the canonical text does not parse: {e}\n{canonical}"),
    };
    assert_eq!(again, file, "the canonical text means other monitors");
    assert_eq!(
        again.to_toml(),
        canonical,
        "the canonical text is not stable"
    );
    assert!(diff(&file, &again).is_empty(), "a file differs from itself");
    let _ = diff(&MonitorFile::default(), &file);
}

// ---------------------------------------------------------------------------------------
// 8. ping_path

/// A heartbeat ping: the key and the segment after it as the routes
/// `/ping/{key}[/{start,fail,0-255}]` receive them, and the body; the ping is then folded
/// into a heartbeat's log as the evaluation does, with the kind as the store keeps it, and
/// the heartbeat evaluated. Input: the path (`key[/segment]`), a newline, the body.
/// Properties: a kind read from a path reads back the same from the store's form; an exit
/// code is a number from 0 to 255 that prints as a segment meaning the same; a body is
/// refused exactly when it is longer than the limit.
pub fn ping_path(data: &[u8]) {
    use gantry_monitors::state::{evaluate_heartbeat, HeartbeatLog, Ping, PingKind};
    use gantry_monitors::{is_ping_key, ping_log, HeartbeatCheck, MAX_PING_BODY};

    let split = data.iter().position(|&b| b == b'\n').unwrap_or(data.len());
    let (path, body) = data.split_at(split);
    let body = body.get(1..).unwrap_or_default();
    let path = text(path);
    let (key, segment) = match path.split_once('/') {
        Some((key, segment)) => (key, Some(segment)),
        None => (path.as_ref(), None),
    };
    if is_ping_key(key) {
        assert!(key.len() == 64 && key.bytes().all(|b| b.is_ascii_hexdigit()));
    }
    let kind = match segment {
        None => Some(PingKind::Success),
        Some(segment) => PingKind::from_path_segment(segment),
    };
    match ping_log(body) {
        Ok(log) => assert!(body.len() <= MAX_PING_BODY && log.len() >= body.len()),
        Err(len) => assert!(len == body.len() && len > MAX_PING_BODY),
    }
    let Some(kind) = kind else {
        return;
    };
    let (stored, code) = kind.to_stored();
    assert_eq!(PingKind::from_stored(stored, code), kind);
    if let PingKind::Exit(code) = kind {
        assert!((0..=255).contains(&code));
        assert_eq!(PingKind::from_path_segment(&code.to_string()), Some(kind));
    }
    // Fold the ping among a few earlier ones derived from the body, as the evaluation
    // reads the latest pings, and evaluate a heartbeat over them.
    let mut log = HeartbeatLog::default();
    let mut at = now() - TimeDelta::hours(2);
    for chunk in body.chunks(3).take(64) {
        let earlier = match chunk.first().map(|b| b % 4) {
            Some(0) => PingKind::Start,
            Some(1) => PingKind::Fail,
            Some(2) => PingKind::Exit(i32::from(chunk.get(1).copied().unwrap_or(0))),
            _ => PingKind::Success,
        };
        let step = i64::from(chunk.get(2).copied().unwrap_or(0)) * 60 - 3000;
        at += TimeDelta::seconds(step);
        log.record(&Ping { kind: earlier, at });
    }
    log.record(&Ping { kind, at: now() });
    assert!(log.first_ping_at.is_some());
    for (period, grace, max_runtime) in [
        (60, 0, None),
        (3600, 600, Some(1800)),
        (86_400, 3600, Some(7200)),
    ] {
        let check = HeartbeatCheck {
            period: std::time::Duration::from_secs(period),
            grace: std::time::Duration::from_secs(grace),
            max_runtime: max_runtime.map(std::time::Duration::from_secs),
        };
        let _ = evaluate_heartbeat(&check, &log, now() + TimeDelta::seconds(30));
    }
}

// ---------------------------------------------------------------------------------------
// 9. detect_csv

/// Most points a replay runs over: the detector compares every after window with its
/// before window at every flush, so time grows with the square of the points.
const MAX_REPLAY_POINTS: usize = 400;

/// A recorded series as `gantry detect replay FILE.csv` reads it (`parse_csv`), replayed
/// (`replay`) with settings, a step and change times taken from the input's first bytes.
/// Properties: parsed points are in strictly increasing time order with finite values;
/// a replay gives exactly one verdict per change, and a verdict is never reached before
/// its after window starts.
pub fn detect_csv(data: &[u8]) {
    use gantry_detect::{parse_csv, replay, Config, Direction};

    let mut u = Unstructured::new(data);
    let Ok(settings) = <[u8; 8]>::arbitrary(&mut u) else {
        return;
    };
    let text = text(u.take_rest());
    let Ok(points) = parse_csv(&text) else {
        return;
    };
    assert!(!points.is_empty());
    assert!(
        points.windows(2).all(|w| w[0].t < w[1].t),
        "points out of order"
    );
    assert!(points.iter().all(|p| p.v.is_finite()));
    if points.len() > MAX_REPLAY_POINTS {
        return;
    }
    let first = points[0].t;
    let last = points[points.len() - 1].t;
    let step = NonZeroU32::new(u32::from(settings[0]) * 10 + 1).unwrap_or(NonZeroU32::MIN);
    let direction = match settings[1] % 3 {
        0 => Direction::Drop,
        1 => Direction::Rise,
        _ => Direction::Either,
    };
    let config = Config {
        alpha: f64::from(settings[2]) / 256.0,
        min_shift: f64::from(settings[3]) / 100.0,
        min_points: usize::from(settings[4] % 16),
        before_window_secs: u32::from(settings[5]) * 60,
        watch_secs: u32::from(settings[6]) * 60,
    };
    let span = last.saturating_sub(first);
    let changes: Vec<i64> = (0..settings[7] % 4)
        .map(|i| first.saturating_add(span / 4 * i64::from(i + 1)))
        .collect();
    let Ok(verdicts) = replay(&points, step, &changes, direction, &config) else {
        return;
    };
    if !changes.is_empty() {
        assert_eq!(verdicts.len(), changes.len(), "one verdict per change");
    }
    for v in &verdicts {
        assert!(v.at >= v.after_from, "a verdict before its after window");
        if let Some(change) = v.change_at {
            assert_eq!(v.after_from, change);
        }
    }
}

// ---------------------------------------------------------------------------------------
// 10. migrate_sql

/// A migration file through `gantry_migrate`: the splitter for the dialect the first byte
/// picks, the classifier and the phase check for the phase the second byte picks, the
/// transaction rule, the backfill parser and `lint_text`. Properties: each statement is
/// its range of the file, ranges are in order and apart, a statement's line and column
/// are those of its range's start, and its checksum is its text's; for PostgreSQL and
/// SQLite (MySQL's `DELIMITER` makes the terminator depend on what came before), the text
/// between statements holds no statement, and a statement split alone is itself.
pub fn migrate_sql(data: &[u8]) {
    use gantry_migrate::checksum::statement_checksum;
    use gantry_migrate::{
        check_phase, classify, lint_text, needs_own_transaction, parse_backfill, split, Dialect,
        Phase,
    };

    let [d, p, rest @ ..] = data else {
        return;
    };
    let dialect = match d % 3 {
        0 => Dialect::Postgres,
        1 => Dialect::MySql,
        _ => Dialect::Sqlite,
    };
    let phase = if p % 2 == 0 {
        Phase::Expand
    } else {
        Phase::Contract
    };
    let text = text(rest);
    let _ = lint_text(dialect, phase, "fuzz.sql", &text);
    let _ = parse_backfill(dialect, &text);
    let Ok(statements) = split(dialect, &text) else {
        return;
    };
    let mut previous_end = 0;
    for st in &statements {
        assert!(st.range.start >= previous_end, "statements overlap");
        assert!(st.range.start < st.range.end, "an empty statement");
        assert_eq!(
            text.get(st.range.clone()),
            Some(st.text.as_str()),
            "a statement is not its range"
        );
        let before = text.get(..st.range.start).unwrap_or_default();
        let line = before.matches('\n').count() + 1;
        let column = before.rsplit('\n').next().unwrap_or("").chars().count() + 1;
        assert_eq!(
            (st.line, st.column),
            (line, column),
            "position of {:?}",
            st.text
        );
        assert_eq!(st.checksum, statement_checksum(&st.text));
        if dialect != Dialect::MySql {
            let gap = text.get(previous_end..st.range.start).unwrap_or_default();
            assert_eq!(
                split(dialect, gap).map(|s| s.len()).ok(),
                Some(0),
                "the text between statements holds one: {gap:?}"
            );
            let alone = split(dialect, &st.text).ok().unwrap_or_default();
            assert!(
                alone.len() == 1 && alone[0].text == st.text,
                "{:?} split alone is {:?}",
                st.text,
                alone.iter().map(|s| &s.text).collect::<Vec<_>>()
            );
        }
        let _ = needs_own_transaction(dialect, st);
        previous_end = st.range.end;
    }
    if dialect != Dialect::MySql {
        let tail = text.get(previous_end..).unwrap_or_default();
        assert_eq!(
            split(dialect, tail).map(|s| s.len()).ok(),
            Some(0),
            "the text after the last statement holds one: {tail:?}"
        );
    }
    let findings = check_phase(phase, classify(dialect, &statements));
    for f in &findings {
        assert!(f.statement_index < statements.len().max(1));
    }
    let _ = gantry_migrate::format_table(&findings);
    let _ = gantry_migrate::format_json(&findings);
}

// ---------------------------------------------------------------------------------------
// 11. flags_definition

/// Flag definitions and their evaluation (`gantry_flags`). The first byte picks the input's
/// reading. JSON (0 to 3): an environment's definition as `PUT` bodies carry it (checked
/// against segments), a client document as SDKs and the server's flag sets read it
/// (evaluated for a context), a Django waffle dump, and an edit applied to a definition.
/// Structured (anything else): a definition, segments and a context built from the input,
/// with strategies, operators and fields from Unleash's vocabulary.
/// Properties: a valid definition is stored as JSON that reads back to the same, still
/// valid definition; evaluation is deterministic (the same context and random seed twice
/// give the same answer); a 0 % rollout is never on; with the same constraints and seed,
/// a rollout that is on at some percentage is on at 100 %.
pub fn flags_definition(data: &[u8]) {
    use gantry_flags::model::{ClientFeatures, Context, EnvironmentDefinition};

    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    match mode {
        0 => {
            let Ok(def) = serde_json::from_slice::<EnvironmentDefinition>(rest) else {
                return;
            };
            let segments = vec![segment_of(1), segment_of(2)];
            check_definition(&def, &segments, &Context::default());
        }
        1 => {
            let mut rng = StdRng::seed_from_u64(1);
            let _ = gantry_flags::conformance::check_spec(&text(rest), now(), &mut rng);
            let Ok(value) = serde_json::from_slice::<serde_json::Value>(rest) else {
                return;
            };
            // A specification file holds the document as `state` and contexts in `tests`;
            // anything else is read as a document alone.
            let contexts: Vec<Context> = value
                .get("tests")
                .and_then(|t| t.as_array())
                .into_iter()
                .flatten()
                .take(16)
                .filter_map(|t| serde_json::from_value(t.get("context")?.clone()).ok())
                .chain([Context::default()])
                .collect();
            let state = value.get("state").cloned().unwrap_or(value);
            if let Ok(document) = serde_json::from_value::<ClientFeatures>(state) {
                evaluate_document(document, &contexts);
            }
        }
        2 => {
            if let Ok(import) = gantry_flags::waffle::import_dumpdata(&text(rest)) {
                for flag in &import.flags {
                    let _ = gantry_flags::validate_definition(&flag.definition, &[]);
                }
            }
        }
        3 => {
            let Ok(edit) = serde_json::from_slice::<gantry_flags::edit::Edit>(rest) else {
                return;
            };
            let old = EnvironmentDefinition::default();
            if let Ok(new) = gantry_flags::edit::apply(&old, &edit) {
                let _ = gantry_flags::edit::summary("fuzz", "prod", Some(&old), &new);
                let _ = gantry_flags::edit::rollout_percent(&new);
                check_definition(&new, &[], &Context::default());
            }
        }
        _ => {
            let mut u = Unstructured::new(rest);
            let _ = structured_flags(&mut u);
        }
    }
}

fn segment_of(id: i64) -> gantry_flags::Segment {
    gantry_flags::Segment {
        id,
        name: Some(format!("segment-{id}")),
        description: None,
        constraints: vec![gantry_flags::Constraint {
            context_name: "plan".into(),
            operator: gantry_flags::Operator::In,
            values: vec!["pro".into()],
            value: None,
            inverted: false,
            case_insensitive: false,
        }],
    }
}

/// Validates `def`; when valid, checks its stored form and evaluates it for `ctx`.
fn check_definition(
    def: &gantry_flags::EnvironmentDefinition,
    segments: &[gantry_flags::Segment],
    ctx: &gantry_flags::Context,
) {
    use gantry_flags::model::{ClientFeatures, EnvironmentDefinition};

    for s in segments {
        let _ = gantry_flags::validate_segment(s);
    }
    if gantry_flags::validate_definition(def, segments).is_err() {
        return;
    }
    let stored = match serde_json::to_string(def) {
        Ok(stored) => stored,
        Err(e) => panic!("a valid definition does not serialize: {e}"),
    };
    let back: EnvironmentDefinition = match serde_json::from_str(&stored) {
        Ok(back) => back,
        Err(e) => panic!("a stored definition does not read back: {e}\n{stored}"),
    };
    assert_eq!(&back, def, "a stored definition reads back differently");
    assert!(
        gantry_flags::validate_definition(&back, segments).is_ok(),
        "a stored definition is no longer valid"
    );
    let document = ClientFeatures {
        version: 2,
        features: vec![def.to_client_feature("fuzz.flag")],
        segments: segments.to_vec(),
        query: None,
    };
    evaluate_document(document, std::slice::from_ref(ctx));
}

/// Builds an engine over `document` and evaluates every flag for each context twice per
/// seed.
fn evaluate_document(document: gantry_flags::ClientFeatures, contexts: &[gantry_flags::Context]) {
    let engine = gantry_flags::Engine::new(document);
    let names: Vec<String> = engine
        .feature_names()
        .take(32)
        .map(str::to_string)
        .collect();
    for (ctx, seed) in contexts.iter().flat_map(|c| [(c, 0u64), (c, 7)]) {
        for name in &names {
            let a = engine.evaluate(name, ctx, now(), &mut StdRng::seed_from_u64(seed));
            let b = engine.evaluate(name, ctx, now(), &mut StdRng::seed_from_u64(seed));
            assert_eq!(a, b, "evaluation of {name} is not deterministic");
            if let Some(e) = a {
                assert!(
                    e.enabled || !e.variant.enabled,
                    "a variant of a flag that is off"
                );
            }
        }
        let _ = engine.evaluate_all(ctx, now(), &mut StdRng::seed_from_u64(seed));
    }
}

const CONTEXT_FIELDS: &[&str] = &[
    "userId",
    "sessionId",
    "remoteAddress",
    "environment",
    "appName",
    "currentTime",
    "plan",
    "version",
    "groups",
    "hostname",
];
const VALUES: &[&str] = &[
    "",
    "pro",
    "free",
    "42",
    "-1.5",
    "1e3",
    "1.2.3",
    "1.2.3-beta.1",
    "2025-01-01T00:00:00Z",
    "2027-06-01T12:00:00.000Z",
    "10.0.0.0/8",
    "192.168.1.7",
    "::1",
    "2001:db8::/32",
    "^a.*z$",
    "(a+)+",
    "user-1",
    "web.example",
];

fn constraint(u: &mut Unstructured<'_>) -> arbitrary::Result<gantry_flags::Constraint> {
    use gantry_flags::Operator;

    let i = u.choose_index(Operator::KNOWN.len() + 1)?;
    let operator = match Operator::KNOWN.get(i) {
        Some(op) => op.clone(),
        None => Operator::Unknown(short_string(u, 16)?),
    };
    Ok(gantry_flags::Constraint {
        context_name: word(u, CONTEXT_FIELDS)?,
        operator,
        values: list(u, 4, |u| word(u, VALUES))?,
        value: if bool::arbitrary(u)? {
            Some(word(u, VALUES)?)
        } else {
            None
        },
        inverted: bool::arbitrary(u)?,
        case_insensitive: bool::arbitrary(u)?,
    })
}

fn variant(u: &mut Unstructured<'_>) -> arbitrary::Result<gantry_flags::Variant> {
    use gantry_flags::{Override, Payload, Variant, WeightType};

    Ok(Variant {
        name: word(u, &["a", "b", "c", "disabled"])?,
        weight: if bool::arbitrary(u)? {
            u.int_in_range(0..=1000)?
        } else {
            u32::arbitrary(u)?
        },
        weight_type: match u.int_in_range(0..=2)? {
            0 => None,
            1 => Some(WeightType::Fix),
            _ => Some(WeightType::Variable),
        },
        stickiness: if bool::arbitrary(u)? {
            Some(word(
                u,
                &["default", "userId", "sessionId", "random", "plan"],
            )?)
        } else {
            None
        },
        payload: if bool::arbitrary(u)? {
            Some(Payload {
                r#type: word(u, &["string", "json", "number", "csv"])?,
                value: word(u, &["{}", "[1]", "42", "x", "a,b"])?,
            })
        } else {
            None
        },
        overrides: list(u, 2, |u| {
            Ok(Override {
                context_name: word(u, CONTEXT_FIELDS)?,
                values: list(u, 3, |u| word(u, VALUES))?,
            })
        })?,
    })
}

fn strategy(
    u: &mut Unstructured<'_>,
    rollout: Option<&str>,
) -> arbitrary::Result<gantry_flags::Strategy> {
    use std::collections::BTreeMap;

    let name = match rollout {
        Some(_) => "flexibleRollout".to_string(),
        None => word(u, &gantry_flags::KNOWN_STRATEGIES)?,
    };
    let mut parameters = BTreeMap::new();
    for _ in 0..u.int_in_range(0..=4)? {
        let key = word(
            u,
            &[
                "rollout",
                "percentage",
                "stickiness",
                "groupId",
                "userIds",
                "IPs",
                "hostNames",
            ],
        )?;
        let value = word(
            u,
            &[
                "0",
                "1",
                "50",
                "99",
                "100",
                "101",
                "007",
                "default",
                "userId",
                "sessionId",
                "random",
                "plan",
                "user-1,user-2",
                "10.0.0.0/8, 192.168.1.7",
                "web.example",
            ],
        )?;
        parameters.insert(key, value);
    }
    if let Some(rollout) = rollout {
        parameters.insert("rollout".into(), rollout.into());
    }
    Ok(gantry_flags::Strategy {
        name,
        parameters,
        constraints: list(u, 3, constraint)?,
        segments: list(u, 2, |u| u.int_in_range(0..=3))?,
        variants: list(u, 3, variant)?,
        disabled: None,
        sort_order: None,
        title: None,
    })
}

fn optional_value(u: &mut Unstructured<'_>) -> arbitrary::Result<Option<String>> {
    if bool::arbitrary(u)? {
        Ok(Some(word(u, VALUES)?))
    } else {
        Ok(None)
    }
}

fn context(u: &mut Unstructured<'_>) -> arbitrary::Result<gantry_flags::Context> {
    let opt = optional_value;
    let mut ctx = gantry_flags::Context {
        user_id: opt(u)?,
        session_id: opt(u)?,
        remote_address: opt(u)?,
        environment: opt(u)?,
        app_name: opt(u)?,
        current_time: opt(u)?,
        ..Default::default()
    };
    for _ in 0..u.int_in_range(0..=4)? {
        let key = word(u, CONTEXT_FIELDS)?;
        let value = word(u, VALUES)?;
        ctx.properties.insert(key, value);
    }
    Ok(ctx)
}

fn structured_flags(u: &mut Unstructured<'_>) -> arbitrary::Result<()> {
    use gantry_flags::model::{ClientFeatures, Dependency, EnvironmentDefinition};

    let segments: Vec<gantry_flags::Segment> = list(u, 3, |u| {
        Ok(gantry_flags::Segment {
            id: u.int_in_range(0..=3)?,
            name: None,
            description: None,
            constraints: list(u, 2, constraint)?,
        })
    })?;
    let def = EnvironmentDefinition {
        enabled: bool::arbitrary(u)?,
        strategies: list(u, 3, |u| strategy(u, None))?,
        variants: list(u, 3, variant)?,
        dependencies: list(u, 1, |u| {
            Ok(Dependency {
                feature: "parent".into(),
                enabled: Option::<bool>::arbitrary(u)?,
                variants: if bool::arbitrary(u)? {
                    Some(list(u, 2, |u| word(u, &["a", "b"]))?)
                } else {
                    None
                },
            })
        })?,
    };
    let ctx = context(u)?;
    check_definition(&def, &segments, &ctx);

    // The rollout property: one flexibleRollout with the same constraints, stickiness and
    // group at 0 %, at some percentage and at 100 %.
    let percent = u.int_in_range(0..=100u32)?.to_string();
    let base = strategy(u, Some(&percent))?;
    let seed = u64::arbitrary(u)?;
    let on_at = |rollout: &str| {
        let mut s = base.clone();
        s.parameters.insert("rollout".into(), rollout.to_string());
        s.variants.clear();
        let feature = gantry_flags::ClientFeature {
            name: "rollout".into(),
            enabled: true,
            strategies: vec![s],
            ..Default::default()
        };
        let engine = gantry_flags::Engine::new(ClientFeatures {
            version: 2,
            features: vec![feature],
            segments: segments.clone(),
            query: None,
        });
        engine.is_enabled("rollout", &ctx, now(), &mut StdRng::seed_from_u64(seed))
    };
    assert!(!on_at("0"), "a 0 % rollout is on");
    if on_at(&percent) {
        assert!(on_at("100"), "on at {percent} % but off at 100 %");
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------
// 12. dashboard_inputs

/// What a browser sends the dashboard: the full `Cookie` header (one or more values), a
/// form body (`application/x-www-form-urlencoded`, decoded as the dashboard's forms are)
/// whose fields go where the dashboard sends them (the CSRF check, the sign-in token's
/// digest and `next`, a new token's name, scopes and lifetime), and the `Origin`, `Host`
/// and `Sec-Fetch-Site` of a POST. Properties: the CSRF check passes exactly when the
/// value sent equals the session's secret; the session cookie found is one of the
/// header's values; a sign-in goes back only to a path on this server; an `Origin`
/// passes only for this host.
pub fn dashboard_inputs(data: &[u8]) {
    let _ = dashboard(Unstructured::new(data));
}

fn dashboard(mut u: Unstructured<'_>) -> arbitrary::Result<()> {
    use gantry_core::http::{cookie_value, csrf_matches, safe_next, same_origin, sign_in_digest};

    let cookies: Vec<String> = list(&mut u, 4, |u| short_string(u, 512))?;
    let secret = word(&mut u, &["c2VjcmV0LXZhbHVlLW9mLXRoZS1zZXNzaW9u", ""])?;
    let header_csrf = Option::<String>::arbitrary(&mut u)?;
    let origin = Option::<String>::arbitrary(&mut u)?;
    let host = Option::<String>::arbitrary(&mut u)?;
    let fetch_site = if bool::arbitrary(&mut u)? {
        Some(word(
            &mut u,
            &["same-origin", "same-site", "cross-site", "none"],
        )?)
    } else {
        None
    };
    let body = u.take_rest();

    for name in ["gantry", "__Host-gantry"] {
        if let Some(id) = cookie_value(cookies.iter().map(String::as_str), name) {
            assert!(cookies.iter().any(|c| c.contains(id)));
            let _ = gantry_core::token::digest(id);
        }
    }
    // The first value of each field, as the form structs read them.
    let mut fields: std::collections::BTreeMap<String, String> = Default::default();
    for (key, value) in form_urlencoded::parse(body) {
        fields
            .entry(key.into_owned())
            .or_insert_with(|| value.into_owned());
    }
    let form_csrf = fields.get("_csrf").map(String::as_str);
    let sent = header_csrf.as_deref().or(form_csrf);
    assert_eq!(
        csrf_matches(sent, &secret),
        sent == Some(secret.as_str()),
        "the CSRF check disagrees with equality"
    );
    if let Some(token) = fields.get("token") {
        assert_eq!(sign_in_digest(token), sign_in_digest(token.trim()));
        assert_eq!(sign_in_digest(token).len(), 64);
    }
    let next = safe_next(fields.get("next").map(String::as_str));
    assert!(
        next.starts_with('/')
            && !next.starts_with("//")
            && !next.contains('\\')
            && next.bytes().all(|b| b.is_ascii_graphic()),
        "a sign-in would go back to {next:?}"
    );
    if let Some(name) = fields.get("name") {
        let _ = gantry_core::names::validate_name("token name", name.trim());
    }
    if let Some(scopes) = fields.get("scopes") {
        let _ = gantry_core::Scope::parse_list(scopes);
    }
    if let Some(expires) = fields.get("expires_in") {
        let _ = gantry_core::time::parse_duration("expires_in", expires.trim());
    }
    let passes = same_origin(origin.as_deref(), host.as_deref(), fetch_site.as_deref());
    if let Some(origin) = &origin {
        if passes {
            let authority = origin
                .strip_prefix("https://")
                .or_else(|| origin.strip_prefix("http://"))
                .unwrap_or_default();
            assert!(host
                .as_deref()
                .is_some_and(|h| h.eq_ignore_ascii_case(authority)));
        }
    } else {
        assert_eq!(passes, fetch_site.as_deref() == Some("same-origin"));
    }
    Ok(())
}
