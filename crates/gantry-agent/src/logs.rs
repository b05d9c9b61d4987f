//! Log-match counting: the agent follows the files a service's `[[logs]]` watches name and
//! counts, per watch, the lines that match the watch's regular expression. The agent loop
//! keeps one [`LogFollower`] per service and calls [`LogFollower::scan`] every poll; the
//! counts it returns are the lines that matched since the previous scan.
//!
//! Watches come checked by `gantry_monitors::logs` (its module doc states the contract this
//! matcher follows). Each scan, for each watch:
//!
//! - **Expansion.** The glob is checked again with `check_glob` (a bad one is a problem,
//!   never a walk), its `{a,b}` alternatives are expanded (at most
//!   [`MAX_GLOB_ALTERNATIVES`]), and each alternative is matched against the service's
//!   directory one path component at a time with `glob::Pattern` and
//!   `require_literal_leading_dot`: a wildcard never matches a leading `.`, so `*` skips
//!   `.hidden.log` and `.*`-like components are the only way to name dot files (the
//!   contract `check_glob` relies on to refuse `..`). `**` matches zero or more directories
//!   and does not descend into hidden directories or through symlinks (no loops). The walk
//!   is ours rather than `glob::glob_with`, whose 0.3 walk panics on a non-UTF-8 file name
//!   when `require_literal_leading_dot` is set and drops every dot file even for a
//!   component such as `.app*` that names them literally. Non-UTF-8 names are skipped.
//! - **Resolution.** Every matched path is resolved (`canonicalize`, symlinks included) and
//!   refused if it lands outside the resolved service directory ("links out refused"): text
//!   rules cannot see symlinks. Only regular files are read; directories are skipped
//!   silently, fifos, sockets and devices with a problem. A resolved file is opened and
//!   checked to be the same file (device and inode) it was resolved to.
//! - **Identity and offsets.** A file is its (device, inode). Its state is the offset of the
//!   first byte not yet counted and the path it was last seen at. A file seen for the first
//!   time is followed from its end (more exactly, from the start of its last unfinished
//!   line) on the watch's first scan, since that content is history; on later scans a new
//!   file (rotation, or a new log) is read from 0, since all of it was written after the
//!   watch started. A watch whose glob changed starts over as a first scan.
//! - **Rotation.** A renamed file keeps its inode, so a rotated `app.log.1` the glob still
//!   matches continues from its offset, and the new `app.log` is read from 0. A followed
//!   file the glob no longer matches is looked for, by inode, in the directory it was last
//!   seen in; if found, its last bytes are counted once, then it is forgotten (as is any
//!   file no longer found). `.gz` files are never read, so a compressed rotation is skipped.
//! - **Truncation.** A file smaller than its offset (copytruncate) is read from 0. A file
//!   truncated and then grown past its offset between two scans cannot be told apart, and
//!   an inode reused by a new file continues at the old offset: the limits of identifying
//!   files by inode, as `tail -F` has.
//! - **Lines.** A line is counted once its `\n` arrives (a trailing `\r` is dropped); the
//!   offset stays at the start of an unfinished line, which is read again next scan. A line
//!   over [`MAX_LINE_BYTES`] counts once, matched on its first [`MAX_LINE_BYTES`] bytes, as
//!   soon as it is that long, and the rest of it is skipped up to its `\n` (across scans):
//!   at most [`MAX_LINE_BYTES`] of a line is ever held. Bytes are decoded as UTF-8, invalid
//!   sequences replaced.
//! - **Skipped files.** `.gz` files (by name) and binary files (a NUL byte among the first
//!   [`BINARY_SNIFF_BYTES`] of the file) are not read, and reported.
//! - **Bounds.** At most [`MAX_READ_PER_FILE`] bytes of a file per scan (the rest next
//!   scan), [`MAX_FILES_PER_WATCH`] paths and [`MAX_ENTRIES_PER_WATCH`] directory entries
//!   per watch, and `**` no deeper than [`MAX_GLOB_DEPTH`] directories.
//!
//! Problems (a bad glob, a limit reached, a skipped, refused or unreadable file) are
//! returned as one-line texts, each once per watch, subject (file or glob) and kind until it
//! goes away or its text changes; the set already reported is kept with the offsets, so a
//! restart does not report them again.
//!
//! Offsets are saved before `scan` returns, atomically (temporary file, fsync, rename, fsync
//! of the directory), and only when they changed; a restarted agent opens the same file and
//! neither counts a line twice nor skips one. The counts are at most once: a scan whose
//! counts never reach the server (the agent dies right after it) loses them. A missing or
//! corrupt state file starts every watch afresh (from the end of its files). If saving
//! fails, the failure is reported, and a restart would count again from the offsets last
//! saved.
//!
//! Invariant: nothing outside the service's directory is read, no error or file content
//! panics, and one scan's work is bounded by the limits above.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::fs::{self, File};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use gantry_monitors::logs::{check_glob, MAX_GLOB_ALTERNATIVES};
use gantry_monitors::{LogWatch, Pattern};
use serde::{Deserialize, Serialize};

/// Longest part of a line matched and held in memory, in bytes; a longer line counts once.
pub const MAX_LINE_BYTES: usize = 64 * 1024;
/// Most bytes read from one file in one scan; the rest is read by the next scans.
pub const MAX_READ_PER_FILE: u64 = 16 * 1024 * 1024;
/// Most paths one watch's glob may match; more are reported and left out.
pub const MAX_FILES_PER_WATCH: usize = 1000;
/// Most directory entries one watch's glob may list in one scan (a `**` over a large tree).
pub const MAX_ENTRIES_PER_WATCH: usize = 100_000;
/// Deepest directory, below the service's directory, a `**` descends into.
pub const MAX_GLOB_DEPTH: usize = 32;
/// A file with a NUL byte among its first this many bytes is binary and not read.
pub const BINARY_SNIFF_BYTES: u64 = 8 * 1024;

const READ_CHUNK: usize = 64 * 1024;
const STATE_VERSION: u32 = 1;
const MATCH: glob::MatchOptions = glob::MatchOptions {
    case_sensitive: true,
    require_literal_separator: true,
    require_literal_leading_dot: true,
};

/// What one scan found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Scan {
    /// Lines that matched since the previous scan, for every watch scanned (0 for none).
    pub counts: BTreeMap<String, u64>,
    /// Problems not reported before, one line each (`logs "<watch>": <file>: <what>`).
    pub problems: Vec<String>,
}

/// Follows one service's log files across scans and restarts.
#[derive(Debug)]
pub struct LogFollower {
    state_file: PathBuf,
    state: State,
    /// The state file's bytes as last read or written: an unchanged state is not rewritten.
    saved: Option<Vec<u8>>,
    /// The last failure to save, reported once.
    save_error: Option<String>,
}

impl LogFollower {
    /// Opens the follower whose offsets persist in `state_file`, e.g.
    /// `<root>/.gantry/logs/<service>.json`. A missing state file starts empty; an
    /// unreadable or corrupt one too, with a warning (every watch then starts from the end
    /// of its files). Nothing is written until the first scan.
    pub fn open(state_file: PathBuf) -> LogFollower {
        let (state, saved) = match load(&state_file) {
            Ok(Some((state, bytes))) => (state, Some(bytes)),
            Ok(None) => (State::empty(), None),
            Err(why) => {
                tracing::warn!(
                    file = %state_file.display(),
                    error = %why,
                    "log offsets unreadable; every log is followed from its end again"
                );
                (State::empty(), None)
            }
        };
        LogFollower {
            state_file,
            state,
            saved,
            save_error: None,
        }
    }

    /// Scans once: expands every watch's glob under `service_dir`, reads what is new in the
    /// files it matches and counts the lines matching the watch's regular expression. The
    /// watches are all of the service's (a watch left out is forgotten); their names are
    /// unique (as `validate_logs` makes them). Offsets are saved before it returns.
    pub fn scan(&mut self, service_dir: &Path, watches: &[LogWatch]) -> Scan {
        let root = fs::canonicalize(service_dir);
        let mut problems = Problems::default();
        let mut counts = BTreeMap::new();
        let mut states = BTreeMap::new();
        for watch in watches {
            let previous = self
                .state
                .watches
                .remove(&watch.name)
                .filter(|w| w.glob == watch.glob);
            let (count, state) = match &root {
                Ok(root) => WatchScan::new(watch, service_dir, root, previous, &mut problems).run(),
                Err(e) => {
                    if !is_absent(e) {
                        problems.add(
                            watch,
                            "",
                            Kind::Unreadable,
                            format!("cannot resolve {}: {e}", service_dir.display()),
                        );
                    }
                    (0, previous.unwrap_or_else(|| WatchState::new(&watch.glob)))
                }
            };
            counts.insert(watch.name.clone(), count);
            states.insert(watch.name.clone(), state);
        }
        self.state.watches = states;
        let (mut news, reported) = problems.news(&self.state.reported);
        self.state.reported = reported;
        news.extend(self.save());
        Scan {
            counts,
            problems: news,
        }
    }

    /// Writes the state if it changed. Returns a problem line when saving fails, once per
    /// distinct failure.
    fn save(&mut self) -> Option<String> {
        let failure = self.write_state().err().map(|e| {
            format!(
                "log offsets could not be saved to {}: {e} (a restart would count some lines again)",
                self.state_file.display()
            )
        });
        let news = failure
            .clone()
            .filter(|f| self.save_error.as_ref() != Some(f));
        if let Some(why) = &news {
            tracing::warn!(error = %why, "log offsets not saved");
        }
        self.save_error = failure;
        news
    }

    fn write_state(&mut self) -> io::Result<()> {
        let bytes = serde_json::to_vec(&self.state)?;
        if self.saved.as_ref() == Some(&bytes) {
            return Ok(());
        }
        write_atomically(&self.state_file, &bytes)?;
        self.saved = Some(bytes);
        Ok(())
    }
}

/// What persists between scans and restarts.
#[derive(Debug, Default, Serialize, Deserialize)]
struct State {
    version: u32,
    #[serde(default)]
    watches: BTreeMap<String, WatchState>,
    /// The problems reported and still standing.
    #[serde(default)]
    reported: Vec<Reported>,
}

impl State {
    fn empty() -> State {
        State {
            version: STATE_VERSION,
            ..State::default()
        }
    }
}

/// One watch's files, as of its last scan. Its presence means the watch was scanned.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct WatchState {
    /// The glob scanned: a watch whose glob changed starts over.
    glob: String,
    files: Vec<FileState>,
}

impl WatchState {
    fn new(glob: &str) -> WatchState {
        WatchState {
            glob: glob.to_string(),
            files: Vec::new(),
        }
    }
}

/// A file's identity: its device and inode, which a rename keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct FileId {
    dev: u64,
    ino: u64,
}

impl FileId {
    fn of(meta: &fs::Metadata) -> FileId {
        FileId {
            dev: meta.dev(),
            ino: meta.ino(),
        }
    }
}

/// Where one followed file stands.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct FileState {
    dev: u64,
    ino: u64,
    /// Where it was last seen, relative to the service's directory (lossy if not UTF-8).
    path: String,
    /// The first byte not yet counted: the start of a line, or inside a skipped long line.
    offset: u64,
    /// The line at `offset` is longer than [`MAX_LINE_BYTES`] and already counted: skip
    /// up to its end.
    #[serde(default)]
    skipping: bool,
    /// A NUL byte was found among its first bytes: never read (until truncated).
    #[serde(default)]
    binary: bool,
}

impl FileState {
    fn new(id: FileId, path: &str, offset: u64) -> FileState {
        FileState {
            dev: id.dev,
            ino: id.ino,
            path: path.to_string(),
            offset,
            skipping: false,
            binary: false,
        }
    }

    fn id(&self) -> FileId {
        FileId {
            dev: self.dev,
            ino: self.ino,
        }
    }
}

/// What is wrong with a watch or one of its files.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
enum Kind {
    Glob,
    Limit,
    Compressed,
    Binary,
    LinksOut,
    NotRegular,
    Unreadable,
}

/// A problem already reported.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Reported {
    watch: String,
    subject: String,
    kind: Kind,
    message: String,
}

/// The problems one scan finds, by watch, subject (a file, or empty for the watch) and kind.
#[derive(Default)]
struct Problems(BTreeMap<(String, String, Kind), String>);

impl Problems {
    fn add(&mut self, watch: &LogWatch, subject: &str, kind: Kind, message: String) {
        self.0
            .entry((watch.name.clone(), subject.to_string(), kind))
            .or_insert(message);
    }

    /// The lines to report (problems not in `before`, or whose text changed), and the
    /// problems now standing.
    fn news(self, before: &[Reported]) -> (Vec<String>, Vec<Reported>) {
        let old: HashMap<(&str, &str, Kind), &str> = before
            .iter()
            .map(|r| {
                (
                    (r.watch.as_str(), r.subject.as_str(), r.kind),
                    r.message.as_str(),
                )
            })
            .collect();
        let mut news = Vec::new();
        let mut standing = Vec::with_capacity(self.0.len());
        for ((watch, subject, kind), message) in self.0 {
            if old.get(&(watch.as_str(), subject.as_str(), kind)) != Some(&message.as_str()) {
                news.push(problem_line(&watch, &subject, &message));
            }
            standing.push(Reported {
                watch,
                subject,
                kind,
                message,
            });
        }
        (news, standing)
    }
}

fn problem_line(watch: &str, subject: &str, message: &str) -> String {
    if subject.is_empty() {
        format!("logs \"{watch}\": {message}")
    } else {
        format!("logs \"{watch}\": {subject}: {message}")
    }
}

/// One watch's part of a scan.
struct WatchScan<'a> {
    watch: &'a LogWatch,
    service_dir: &'a Path,
    /// The service's directory, resolved: every file read lies under it.
    root: &'a Path,
    /// No state: files already there are followed from their end.
    first_scan: bool,
    /// The files followed before, less those found again so far.
    known: HashMap<FileId, FileState>,
    /// Files found this scan (a file matched twice, by a link or a hard link, is read once).
    seen: HashSet<FileId>,
    problems: &'a mut Problems,
}

impl<'a> WatchScan<'a> {
    fn new(
        watch: &'a LogWatch,
        service_dir: &'a Path,
        root: &'a Path,
        previous: Option<WatchState>,
        problems: &'a mut Problems,
    ) -> WatchScan<'a> {
        WatchScan {
            watch,
            service_dir,
            root,
            first_scan: previous.is_none(),
            known: previous
                .into_iter()
                .flat_map(|w| w.files)
                .map(|f| (f.id(), f))
                .collect(),
            seen: HashSet::new(),
            problems,
        }
    }

    /// Counts the watch's new matching lines; returns the count and the watch's new state.
    fn run(mut self) -> (u64, WatchState) {
        let mut count = 0;
        let mut files = Vec::new();
        for rel in self.matches() {
            if let Some((file, n)) = self.follow(&rel) {
                files.push(file);
                count += n;
            }
        }
        count += self.drain_vanished(&mut files);
        (
            count,
            WatchState {
                glob: self.watch.glob.clone(),
                files,
            },
        )
    }

    fn problem(&mut self, subject: &str, kind: Kind, message: String) {
        self.problems.add(self.watch, subject, kind, message);
    }

    /// The paths, relative to the service's directory, the watch's glob matches.
    fn matches(&mut self) -> Vec<PathBuf> {
        let glob = &self.watch.glob;
        let alternatives = match check_glob(glob).and_then(|()| expand_braces(glob)) {
            Ok(alternatives) => alternatives,
            Err(why) => {
                self.problem("", Kind::Glob, format!("glob \"{glob}\" {why}"));
                return Vec::new();
            }
        };
        let mut walk = Walk::new(self.service_dir);
        for alternative in &alternatives {
            match parse_glob(alternative) {
                Ok(parts) => walk.visit(Path::new(""), &parts),
                Err(why) => {
                    let message = format!("glob \"{glob}\" is not a valid pattern: {why}");
                    self.problem("", Kind::Glob, message);
                }
            }
        }
        for (dir, e) in walk.errors {
            let message = format!("cannot list the directory: {e}");
            self.problem(&dir.to_string_lossy(), Kind::Unreadable, message);
        }
        if let Some(limit) = walk.limit {
            self.problem("", Kind::Limit, limit);
        }
        if walk.too_deep {
            let message = format!("** descends no deeper than {MAX_GLOB_DEPTH} directories");
            self.problem("", Kind::Limit, message);
        }
        walk.found.into_iter().collect()
    }

    /// Follows one matched path: returns its new state and its new matching lines, or None
    /// when it is not followed (absent, a directory, refused, or already read this scan).
    fn follow(&mut self, rel: &Path) -> Option<(FileState, u64)> {
        let subject = rel.to_string_lossy().into_owned();
        if is_compressed(rel) {
            let message = "compressed (.gz) files are not read".to_string();
            self.problem(&subject, Kind::Compressed, message);
            return None;
        }
        let (path, meta) = match self.resolve(rel) {
            Ok(Some(found)) => found,
            Ok(None) => return None,
            Err((kind, message)) => {
                self.problem(&subject, kind, message);
                return None;
            }
        };
        let id = FileId::of(&meta);
        if !self.seen.insert(id) {
            return None;
        }
        let previous = self.known.remove(&id);
        // Kept when the file cannot be read this time: a later scan goes on from there.
        let kept = previous.clone().unwrap_or_else(|| {
            let start = if self.first_scan { meta.len() } else { 0 };
            FileState::new(id, &subject, start)
        });
        let read = open_same(&path, id).and_then(|opened| match opened {
            Some((mut file, meta)) => self.read_new(&mut file, meta.len(), previous, id, &subject),
            // Replaced since it was resolved: looked at again next scan.
            None => Ok((kept.clone(), 0)),
        });
        match read {
            Ok((file, n)) => {
                if file.binary {
                    let message = format!(
                        "binary file (a NUL byte in its first {BINARY_SNIFF_BYTES} bytes) is not read"
                    );
                    self.problem(&subject, Kind::Binary, message);
                }
                Some((file, n))
            }
            Err(e) => {
                self.problem(&subject, Kind::Unreadable, format!("cannot read: {e}"));
                Some((kept, 0))
            }
        }
    }

    /// The matched path resolved, with its metadata, if it is a regular file inside the
    /// service's directory; None if it is absent or a directory; otherwise the problem.
    fn resolve(&self, rel: &Path) -> Result<Option<(PathBuf, fs::Metadata)>, (Kind, String)> {
        let real = match fs::canonicalize(self.service_dir.join(rel)) {
            Ok(real) => real,
            Err(e) if is_absent(&e) => return Ok(None),
            Err(e) => return Err((Kind::Unreadable, format!("cannot resolve: {e}"))),
        };
        if !real.starts_with(self.root) {
            let message = format!(
                "resolves to {}, outside the service's directory: links out refused",
                real.display()
            );
            return Err((Kind::LinksOut, message));
        }
        let meta = match fs::metadata(&real) {
            Ok(meta) => meta,
            Err(e) if is_absent(&e) => return Ok(None),
            Err(e) => return Err((Kind::Unreadable, format!("cannot read: {e}"))),
        };
        if meta.is_dir() {
            return Ok(None);
        }
        if !meta.is_file() {
            let message = "not a regular file (a fifo, socket or device): not read".to_string();
            return Err((Kind::NotRegular, message));
        }
        Ok(Some((real, meta)))
    }

    /// Reads what is new in an open file of `size` bytes and returns its new state and
    /// its new matching lines. It is read from its offset, from 0 (truncated, or new since
    /// the watch's first scan), or from the start of its last line (new on a first scan).
    fn read_new(
        &self,
        file: &mut File,
        size: u64,
        previous: Option<FileState>,
        id: FileId,
        subject: &str,
    ) -> io::Result<(FileState, u64)> {
        let (mut state, sniff_from) = match previous {
            Some(known) if size >= known.offset => {
                let from = known.offset;
                let state = FileState {
                    path: subject.to_string(),
                    ..known
                };
                (state, from)
            }
            None if self.first_scan => {
                let (offset, skipping) = last_line_start(file, size)?;
                let state = FileState {
                    skipping,
                    ..FileState::new(id, subject, offset)
                };
                (state, 0)
            }
            _ => (FileState::new(id, subject, 0), 0),
        };
        if state.binary {
            return Ok((state, 0));
        }
        if has_nul(file, sniff_from, size.min(BINARY_SNIFF_BYTES))? {
            state.binary = true;
            state.offset = size;
            state.skipping = false;
            return Ok((state, 0));
        }
        let n = count_new_lines(file, &mut state, &self.watch.regex)?;
        Ok((state, n))
    }

    /// Finishes the files followed before that the glob no longer matches: one still in the
    /// directory it was last seen in (found by inode: renamed by a rotation) has its last
    /// bytes counted. All are then forgotten, except those of a directory that cannot be
    /// listed this time (kept in `files`, so they are not read again from 0 later).
    fn drain_vanished(&mut self, files: &mut Vec<FileState>) -> u64 {
        let mut by_dir: BTreeMap<PathBuf, Vec<FileState>> = BTreeMap::new();
        for gone in std::mem::take(&mut self.known).into_values() {
            if gone.binary {
                continue;
            }
            let dir = Path::new(&gone.path).parent().unwrap_or(Path::new(""));
            by_dir.entry(dir.to_path_buf()).or_default().push(gone);
        }
        let mut count = 0;
        for (dir, gone) in by_dir {
            let listed = fs::canonicalize(self.service_dir.join(&dir)).and_then(|real| {
                if real.starts_with(self.root) {
                    files_by_id(&real)
                } else {
                    Ok(HashMap::new())
                }
            });
            let found = match listed {
                Ok(found) => found,
                Err(e) if is_absent(&e) => continue,
                Err(_) => {
                    files.extend(gone);
                    continue;
                }
            };
            for mut state in gone {
                if let Some(path) = found.get(&state.id()).filter(|p| !is_compressed(p)) {
                    count += self.finish(path, &mut state);
                }
            }
        }
        count
    }

    /// Counts the last lines of a file found under another name outside the glob.
    fn finish(&self, path: &Path, state: &mut FileState) -> u64 {
        match open_same(path, state.id()) {
            Ok(Some((mut file, meta))) if meta.len() >= state.offset => {
                count_new_lines(&mut file, state, &self.watch.regex).unwrap_or(0)
            }
            _ => 0,
        }
    }
}

/// What one path component of a glob matches.
enum Part {
    /// Exactly this name.
    Literal(String),
    /// Names this pattern matches (a wildcard never matches a leading `.`).
    Wild(glob::Pattern),
    /// `**`: zero or more directories.
    AnyDirs,
}

/// Splits a glob without braces into its components (`.` and empty ones dropped).
fn parse_glob(glob: &str) -> Result<Vec<Part>, String> {
    let mut parts: Vec<Part> = Vec::new();
    for component in glob.split('/').filter(|c| !c.is_empty() && *c != ".") {
        let part = if component == "**" {
            if matches!(parts.last(), Some(Part::AnyDirs)) {
                continue;
            }
            Part::AnyDirs
        } else if component.contains(['*', '?', '[']) {
            Part::Wild(glob::Pattern::new(component).map_err(|e| e.to_string())?)
        } else {
            Part::Literal(component.to_string())
        };
        parts.push(part);
    }
    Ok(parts)
}

/// The expansion of a watch's glob: a walk from the service's directory, within the limits.
struct Walk<'a> {
    base: &'a Path,
    /// Matched paths, relative to `base`.
    found: BTreeSet<PathBuf>,
    /// Directory entries listed so far.
    entries: usize,
    /// Directories that could not be listed, relative to `base`.
    errors: Vec<(PathBuf, io::Error)>,
    /// Why the walk stopped early.
    limit: Option<String>,
    /// A `**` was not followed deeper than [`MAX_GLOB_DEPTH`].
    too_deep: bool,
}

impl<'a> Walk<'a> {
    fn new(base: &'a Path) -> Walk<'a> {
        Walk {
            base,
            found: BTreeSet::new(),
            entries: 0,
            errors: Vec::new(),
            limit: None,
            too_deep: false,
        }
    }

    /// Matches `parts` below `rel`.
    fn visit(&mut self, rel: &Path, parts: &[Part]) {
        if self.limit.is_some() {
            return;
        }
        let Some((part, rest)) = parts.split_first() else {
            self.add(rel);
            return;
        };
        match part {
            Part::Literal(name) => self.visit(&rel.join(name), rest),
            Part::Wild(pattern) => {
                for (name, _) in self.list(rel) {
                    if pattern.matches_with(&name, MATCH) {
                        self.visit(&rel.join(name), rest);
                    }
                }
            }
            Part::AnyDirs => {
                self.visit(rel, rest);
                if rel.components().count() >= MAX_GLOB_DEPTH {
                    self.too_deep = true;
                    return;
                }
                for (name, is_dir) in self.list(rel) {
                    if is_dir && !name.starts_with('.') {
                        self.visit(&rel.join(name), parts);
                    }
                }
            }
        }
    }

    fn add(&mut self, rel: &Path) {
        if rel.as_os_str().is_empty() || self.found.contains(rel) {
            return;
        }
        if self.found.len() >= MAX_FILES_PER_WATCH {
            self.limit = Some(format!(
                "matches more than {MAX_FILES_PER_WATCH} paths; only the first \
                 {MAX_FILES_PER_WATCH} are followed"
            ));
            return;
        }
        self.found.insert(rel.to_path_buf());
    }

    /// A directory's entries, sorted: each UTF-8 name and whether it is a directory (not
    /// through a symlink). A directory that is absent or not one lists nothing.
    fn list(&mut self, rel: &Path) -> Vec<(String, bool)> {
        let reader = match fs::read_dir(self.base.join(rel)) {
            Ok(reader) => reader,
            Err(e) => {
                if !is_absent(&e) {
                    self.errors.push((rel.to_path_buf(), e));
                }
                return Vec::new();
            }
        };
        let mut names = Vec::new();
        for entry in reader {
            self.entries += 1;
            if self.entries > MAX_ENTRIES_PER_WATCH {
                self.limit = Some(format!(
                    "lists more than {MAX_ENTRIES_PER_WATCH} directory entries; the rest is \
                     left out: narrow the glob"
                ));
                break;
            }
            let Ok(entry) = entry else { continue };
            let Ok(name) = entry.file_name().into_string() else {
                continue;
            };
            let is_dir = entry.file_type().is_ok_and(|t| t.is_dir());
            names.push((name, is_dir));
        }
        names.sort();
        names
    }
}

/// Expands `{a,b}` alternatives, nested ones included, outside `[...]` classes: at most
/// [`MAX_GLOB_ALTERNATIVES`] globs, in their written order.
fn expand_braces(glob: &str) -> Result<Vec<String>, String> {
    let mut done = Vec::new();
    let mut todo = vec![glob.to_string()];
    while let Some(text) = todo.pop() {
        match first_group(&text)? {
            None => done.push(text),
            Some(group) => {
                for alternative in group.alternatives(&text).into_iter().rev() {
                    todo.push(alternative);
                }
            }
        }
        // Every glob waiting expands to one or more.
        if done.len() + todo.len() > MAX_GLOB_ALTERNATIVES {
            return Err(format!(
                "expands to more than {MAX_GLOB_ALTERNATIVES} paths: use fewer {{…}} alternatives"
            ));
        }
    }
    Ok(done)
}

/// The outermost first `{…}` of a glob, as byte positions (its delimiters are ASCII, so
/// every position is a character boundary).
struct BraceGroup {
    open: usize,
    commas: Vec<usize>,
    close: usize,
}

impl BraceGroup {
    /// The glob with the group replaced by each of its alternatives.
    fn alternatives(&self, text: &str) -> Vec<String> {
        let mut bounds = vec![self.open];
        bounds.extend(&self.commas);
        bounds.push(self.close);
        let (head, tail) = (&text[..self.open], &text[self.close + 1..]);
        bounds
            .windows(2)
            .map(|w| format!("{head}{}{tail}", &text[w[0] + 1..w[1]]))
            .collect()
    }
}

fn first_group(text: &str) -> Result<Option<BraceGroup>, String> {
    let bytes = text.as_bytes();
    let mut depth = 0usize;
    let mut open = 0;
    let mut commas = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'[' => i = class_close(bytes, i),
            b'{' => {
                if depth == 0 {
                    open = i;
                }
                depth += 1;
            }
            b',' if depth == 1 => commas.push(i),
            b'}' if depth == 0 => return Err("has a '}' with no '{' before it".into()),
            b'}' => {
                depth -= 1;
                if depth == 0 {
                    return Ok(Some(BraceGroup {
                        open,
                        commas,
                        close: i,
                    }));
                }
            }
            _ => {}
        }
        i += 1;
    }
    if depth > 0 {
        return Err("has a '{' that is never closed".into());
    }
    Ok(None)
}

/// Where the class opened at `bytes[open]` closes (a `]` first, after an optional `!` or
/// `^`, is a member); `open` itself when it never closes (the `[` is then literal).
fn class_close(bytes: &[u8], open: usize) -> usize {
    let mut i = open + 1;
    if matches!(bytes.get(i), Some(b'!' | b'^')) {
        i += 1;
    }
    if bytes.get(i) == Some(&b']') {
        i += 1;
    }
    bytes[i.min(bytes.len())..]
        .iter()
        .position(|&b| b == b']')
        .map_or(open, |p| i + p)
}

/// Counts matching lines in a stream of bytes, holding at most [`MAX_LINE_BYTES`] of a line.
struct LineCounter<'p> {
    pattern: &'p Pattern,
    /// The current line's bytes so far (all of them: a longer line is counted and dropped).
    line: Vec<u8>,
    /// Inside a long line already counted: bytes up to its `\n` are dropped.
    skipping: bool,
    matches: u64,
}

impl<'p> LineCounter<'p> {
    fn new(pattern: &'p Pattern, skipping: bool) -> LineCounter<'p> {
        LineCounter {
            pattern,
            line: Vec::new(),
            skipping,
            matches: 0,
        }
    }

    fn feed(&mut self, mut bytes: &[u8]) {
        while let Some(end) = bytes.iter().position(|&b| b == b'\n') {
            self.extend(&bytes[..end]);
            self.end_line();
            bytes = &bytes[end + 1..];
        }
        self.extend(bytes);
    }

    fn extend(&mut self, bytes: &[u8]) {
        if self.skipping {
            return;
        }
        let room = MAX_LINE_BYTES - self.line.len();
        if bytes.len() <= room {
            self.line.extend_from_slice(bytes);
            return;
        }
        self.line.extend_from_slice(&bytes[..room]);
        self.count_line();
        self.skipping = true;
    }

    fn end_line(&mut self) {
        if self.skipping {
            self.skipping = false;
        } else {
            self.count_line();
        }
    }

    fn count_line(&mut self) {
        let line = self.line.strip_suffix(b"\r").unwrap_or(&self.line);
        if self.pattern.is_match(&String::from_utf8_lossy(line)) {
            self.matches += 1;
        }
        self.line.clear();
    }

    /// Bytes of an unfinished line, to be read again next time.
    fn pending(&self) -> usize {
        self.line.len()
    }
}

/// Counts the matching lines from `state.offset` on (at most [`MAX_READ_PER_FILE`] bytes)
/// and moves the offset to the start of the first line not finished. The state is left
/// unchanged on an error.
fn count_new_lines(file: &mut File, state: &mut FileState, pattern: &Pattern) -> io::Result<u64> {
    file.seek(SeekFrom::Start(state.offset))?;
    let mut reader = file.take(MAX_READ_PER_FILE);
    let mut lines = LineCounter::new(pattern, state.skipping);
    let mut buf = vec![0; READ_CHUNK];
    let mut read = 0u64;
    loop {
        let n = match reader.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        lines.feed(&buf[..n]);
        read += n as u64;
    }
    state.offset += read - lines.pending() as u64;
    state.skipping = lines.skipping;
    Ok(lines.matches)
}

/// Where a file seen on a watch's first scan is followed from: the start of its last,
/// unfinished line (empty when the file ends with `\n`). Inside a line already longer than
/// [`MAX_LINE_BYTES`], its end, skipping the rest of that line.
fn last_line_start(file: &mut File, size: u64) -> io::Result<(u64, bool)> {
    let window = size.min(MAX_LINE_BYTES as u64 + 1);
    let start = size - window;
    let tail = read_at(file, start, window)?;
    Ok(match tail.iter().rposition(|&b| b == b'\n') {
        Some(i) => (start + i as u64 + 1, false),
        None if size <= MAX_LINE_BYTES as u64 => (0, false),
        None => (size, true),
    })
}

/// Whether bytes `from..to` of the file hold a NUL (false when the range is empty).
fn has_nul(file: &mut File, from: u64, to: u64) -> io::Result<bool> {
    if from >= to {
        return Ok(false);
    }
    Ok(read_at(file, from, to - from)?.contains(&0))
}

/// Up to `len` bytes from `from` (fewer at the end of the file).
fn read_at(file: &mut File, from: u64, len: u64) -> io::Result<Vec<u8>> {
    file.seek(SeekFrom::Start(from))?;
    let mut bytes = Vec::new();
    file.take(len).read_to_end(&mut bytes)?;
    Ok(bytes)
}

/// Opens a resolved path if it still is the regular file `id`; None if it is gone or was
/// replaced.
fn open_same(path: &Path, id: FileId) -> io::Result<Option<(File, fs::Metadata)>> {
    let file = match File::open(path) {
        Ok(file) => file,
        Err(e) if is_absent(&e) => return Ok(None),
        Err(e) => return Err(e),
    };
    let meta = file.metadata()?;
    Ok((meta.is_file() && FileId::of(&meta) == id).then_some((file, meta)))
}

/// The regular files (not symlinks) of a directory, by identity: at most
/// [`MAX_ENTRIES_PER_WATCH`] entries are looked at.
fn files_by_id(dir: &Path) -> io::Result<HashMap<FileId, PathBuf>> {
    let files = fs::read_dir(dir)?
        .take(MAX_ENTRIES_PER_WATCH)
        .filter_map(Result::ok)
        .filter_map(|entry| {
            // A DirEntry's metadata does not follow a symlink.
            let meta = entry.metadata().ok().filter(fs::Metadata::is_file)?;
            Some((FileId::of(&meta), entry.path()))
        })
        .collect();
    Ok(files)
}

fn is_compressed(path: &Path) -> bool {
    path.extension().is_some_and(|e| e == "gz")
}

/// An error that means "nothing there" rather than a problem to report.
fn is_absent(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::NotFound | io::ErrorKind::NotADirectory
    )
}

/// Reads a state file: None if there is none, an error if it cannot be read or used.
fn load(path: &Path) -> Result<Option<(State, Vec<u8>)>, String> {
    let bytes = match fs::read(path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e.to_string()),
    };
    let state: State = serde_json::from_slice(&bytes).map_err(|e| e.to_string())?;
    if state.version != STATE_VERSION {
        return Err(format!(
            "version {} (this agent reads version {STATE_VERSION})",
            state.version
        ));
    }
    Ok(Some((state, bytes)))
}

/// Replaces `path` with `bytes` so that a crash leaves the old or the new file, never a
/// mix: writes a temporary file beside it, syncs it, renames it over, syncs the directory.
fn write_atomically(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let (Some(dir), Some(name)) = (path.parent(), path.file_name()) else {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "the state file's path names no file",
        ));
    };
    let dir = if dir.as_os_str().is_empty() {
        Path::new(".")
    } else {
        dir
    };
    fs::create_dir_all(dir)?;
    let mut tmp_name = name.to_os_string();
    tmp_name.push(".tmp");
    let tmp = dir.join(tmp_name);
    let written = write_then_rename(&tmp, path, bytes);
    if written.is_err() {
        let _ = fs::remove_file(&tmp);
        return written;
    }
    File::open(dir)?.sync_all()
}

fn write_then_rename(tmp: &Path, path: &Path, bytes: &[u8]) -> io::Result<()> {
    let mut file = File::create(tmp)?;
    file.write_all(bytes)?;
    file.sync_all()?;
    fs::rename(tmp, path)
}

#[cfg(test)]
mod tests {
    use super::*;

    use std::error::Error;
    use std::ffi::OsStr;
    use std::os::unix::ffi::OsStrExt;
    use std::os::unix::fs::{symlink, PermissionsExt};

    type TestResult = Result<(), Box<dyn Error>>;

    /// A host's root in a temporary directory, with the service `shop`.
    struct Host {
        _dir: tempfile::TempDir,
        outside: PathBuf,
        service: PathBuf,
        state: PathBuf,
    }

    impl Host {
        fn new() -> io::Result<Host> {
            let dir = tempfile::tempdir()?;
            let root = dir.path().join("root");
            let service = root.join("shop");
            fs::create_dir_all(service.join("log"))?;
            let outside = dir.path().join("outside");
            fs::create_dir_all(&outside)?;
            Ok(Host {
                outside,
                service,
                state: root.join(".gantry/logs/shop.json"),
                _dir: dir,
            })
        }

        fn path(&self, rel: &str) -> PathBuf {
            self.service.join(rel)
        }

        /// Creates or replaces a file in the service's directory.
        fn write(&self, rel: &str, bytes: &[u8]) -> io::Result<()> {
            let path = self.path(rel);
            if let Some(dir) = path.parent() {
                fs::create_dir_all(dir)?;
            }
            fs::write(path, bytes)
        }

        fn append(&self, rel: &str, bytes: &[u8]) -> io::Result<()> {
            append(&self.path(rel), bytes)
        }

        fn follower(&self) -> LogFollower {
            LogFollower::open(self.state.clone())
        }
    }

    fn append(path: &Path, bytes: &[u8]) -> io::Result<()> {
        fs::OpenOptions::new()
            .append(true)
            .create(true)
            .open(path)?
            .write_all(bytes)
    }

    fn watch(name: &str, glob: &str, regex: &str) -> Result<LogWatch, Box<dyn Error>> {
        Ok(LogWatch {
            name: name.to_string(),
            glob: glob.to_string(),
            regex: Pattern::new(regex, 1024, 1 << 20).map_err(|e| e.to_string())?,
        })
    }

    /// The watch `errors`: lines with `ERROR`.
    fn errors(glob: &str) -> Result<Vec<LogWatch>, Box<dyn Error>> {
        Ok(vec![watch("errors", glob, "ERROR")?])
    }

    /// Scans and returns the `errors` count, asserting no problem was reported.
    fn count(follower: &mut LogFollower, host: &Host, watches: &[LogWatch]) -> u64 {
        let scan = follower.scan(&host.service, watches);
        assert_eq!(scan.problems, Vec::<String>::new());
        scan.counts.get("errors").copied().unwrap_or(u64::MAX)
    }

    #[test]
    fn first_scan_starts_at_the_end_and_later_files_at_the_start() -> TestResult {
        let host = Host::new()?;
        host.write("log/app.log", b"ERROR old\nERROR old\nERROR half")?;
        let mut watches = errors("log/*.log")?;
        watches.push(watch("late", "log/late.txt", "ERROR")?);
        let mut follower = host.follower();
        let scan = follower.scan(&host.service, &watches);
        assert_eq!(
            scan.counts,
            BTreeMap::from([("errors".into(), 0), ("late".into(), 0)])
        );

        // The unfinished last line is new content: it counts once finished.
        host.append("log/app.log", b" written\nERROR new\ninfo\n")?;
        // Files that appear after a watch's first scan are read from their start.
        host.write("log/worker.log", b"ERROR one\nERROR two\n")?;
        host.write("log/late.txt", b"ERROR first\n")?;
        let scan = follower.scan(&host.service, &watches);
        assert_eq!(
            scan.counts,
            BTreeMap::from([("errors".into(), 4), ("late".into(), 1)])
        );
        assert!(scan.problems.is_empty());
        Ok(())
    }

    #[test]
    fn appended_lines_are_counted_once() -> TestResult {
        let host = Host::new()?;
        host.write("log/app.log", b"")?;
        let watches = errors("log/app.log")?;
        let mut follower = host.follower();
        assert_eq!(count(&mut follower, &host, &watches), 0);
        host.append("log/app.log", b"ERROR a\ninfo\nan ERROR b\n")?;
        assert_eq!(count(&mut follower, &host, &watches), 2);
        assert_eq!(count(&mut follower, &host, &watches), 0);
        host.append("log/app.log", b"ERROR c\r\n")?;
        assert_eq!(count(&mut follower, &host, &watches), 1);
        Ok(())
    }

    #[test]
    fn rotation_by_rename_finishes_the_old_file_and_reads_the_new_one() -> TestResult {
        // The rotated file is matched by the first glob, and only found by inode by the second.
        for (glob, later) in [("log/app.log*", 2), ("log/app.log", 1)] {
            let host = Host::new()?;
            host.write("log/app.log", b"ERROR old\n")?;
            let watches = errors(glob)?;
            let mut follower = host.follower();
            assert_eq!(count(&mut follower, &host, &watches), 0, "{glob}");
            host.append("log/app.log", b"ERROR before the rotation\n")?;
            fs::rename(host.path("log/app.log"), host.path("log/app.log.1"))?;
            host.append("log/app.log.1", b"ERROR written to the old file\n")?;
            host.write("log/app.log", b"ERROR first of the new file\n")?;
            assert_eq!(count(&mut follower, &host, &watches), 3, "{glob}");
            host.append("log/app.log", b"ERROR new\n")?;
            host.append("log/app.log.1", b"ERROR old file, again\n")?;
            assert_eq!(count(&mut follower, &host, &watches), later, "{glob}");
        }
        Ok(())
    }

    #[test]
    fn truncation_reads_from_the_start() -> TestResult {
        let host = Host::new()?;
        host.write("log/app.log", b"ERROR old\n")?;
        let watches = errors("log/app.log")?;
        let mut follower = host.follower();
        assert_eq!(count(&mut follower, &host, &watches), 0);
        host.append("log/app.log", b"ERROR 1\nERROR 2\n")?;
        assert_eq!(count(&mut follower, &host, &watches), 2);
        // copytruncate: the same inode, emptied, then written again.
        let inode = fs::metadata(host.path("log/app.log"))?.ino();
        fs::OpenOptions::new()
            .write(true)
            .open(host.path("log/app.log"))?
            .set_len(0)?;
        host.append("log/app.log", b"ERROR after\n")?;
        assert_eq!(fs::metadata(host.path("log/app.log"))?.ino(), inode);
        assert_eq!(count(&mut follower, &host, &watches), 1);
        Ok(())
    }

    #[test]
    fn restart_neither_double_counts_nor_skips() -> TestResult {
        let host = Host::new()?;
        host.write("log/app.log", b"ERROR old\n")?;
        let watches = errors("log/*.log")?;
        let mut follower = host.follower();
        assert_eq!(count(&mut follower, &host, &watches), 0);
        host.append("log/app.log", b"ERROR 1\nERROR 2\n")?;
        assert_eq!(count(&mut follower, &host, &watches), 2);
        host.append("log/app.log", b"ERROR 3\nERROR par")?;
        assert_eq!(count(&mut follower, &host, &watches), 1);
        drop(follower);

        // While the agent is down: the partial line ends, a line and a new file are written.
        host.append("log/app.log", b"tial\nERROR 4\n")?;
        host.write("log/new.log", b"ERROR in a new file\n")?;
        let mut follower = host.follower();
        assert_eq!(count(&mut follower, &host, &watches), 3);
        assert_eq!(count(&mut follower, &host, &watches), 0);
        Ok(())
    }

    #[test]
    fn compressed_and_binary_files_are_skipped_and_reported_once() -> TestResult {
        let host = Host::new()?;
        host.write("log/app.log.gz", b"ERROR compressed\n")?;
        host.write("log/core.log", b"ERROR\0binary\n")?;
        let watches = errors("log/*")?;
        let mut follower = host.follower();
        let scan = follower.scan(&host.service, &watches);
        assert_eq!(scan.problems.len(), 2, "{:?}", scan.problems);
        assert!(
            scan.problems[0].contains("app.log.gz: compressed"),
            "{:?}",
            scan.problems
        );
        assert!(
            scan.problems[1].contains("core.log: binary"),
            "{:?}",
            scan.problems
        );

        host.append("log/app.log.gz", b"ERROR\n")?;
        host.append("log/core.log", b"ERROR\n")?;
        assert_eq!(count(&mut follower, &host, &watches), 0);
        // A binary file that appears later; a restart does not report the others again.
        host.write("log/later.log", b"\0\0ERROR\n")?;
        let mut follower = host.follower();
        let scan = follower.scan(&host.service, &watches);
        assert_eq!(scan.counts["errors"], 0);
        assert_eq!(scan.problems.len(), 1, "{:?}", scan.problems);
        assert!(
            scan.problems[0].contains("later.log: binary"),
            "{:?}",
            scan.problems
        );
        assert_eq!(count(&mut follower, &host, &watches), 0);
        Ok(())
    }

    #[test]
    fn a_line_over_the_limit_counts_once() -> TestResult {
        let host = Host::new()?;
        host.write("log/app.log", b"")?;
        let watches = errors("log/app.log")?;
        let mut follower = host.follower();
        assert_eq!(count(&mut follower, &host, &watches), 0);

        let mut long = b"ERROR ".to_vec();
        long.resize(200 * 1024, b'x');
        long.extend_from_slice(b" ERROR\nERROR short\n");
        host.append("log/app.log", &long)?;
        assert_eq!(count(&mut follower, &host, &watches), 2);

        // Only the first MAX_LINE_BYTES of a line are matched.
        let mut hidden = vec![b'x'; MAX_LINE_BYTES];
        hidden.extend_from_slice(b"ERROR\n");
        host.append("log/app.log", &hidden)?;
        assert_eq!(count(&mut follower, &host, &watches), 0);

        // An unfinished line over the limit counts now; its rest is skipped next scans.
        let mut start = b"ERROR ".to_vec();
        start.resize(100 * 1024, b'y');
        host.append("log/app.log", &start)?;
        assert_eq!(count(&mut follower, &host, &watches), 1);
        host.append("log/app.log", b"yyy ERROR, the same line\nERROR next\n")?;
        assert_eq!(count(&mut follower, &host, &watches), 1);
        Ok(())
    }

    #[test]
    fn a_partial_line_counts_once_finished() -> TestResult {
        let host = Host::new()?;
        host.write("log/app.log", b"")?;
        let watches = errors("log/app.log")?;
        let mut follower = host.follower();
        assert_eq!(count(&mut follower, &host, &watches), 0);
        host.append("log/app.log", b"ERR")?;
        assert_eq!(count(&mut follower, &host, &watches), 0);
        host.append("log/app.log", b"OR, still")?;
        assert_eq!(count(&mut follower, &host, &watches), 0);
        host.append("log/app.log", b" writing\n")?;
        assert_eq!(count(&mut follower, &host, &watches), 1);
        assert_eq!(count(&mut follower, &host, &watches), 0);
        Ok(())
    }

    #[test]
    fn reading_is_bounded_per_file_and_scan() -> TestResult {
        let host = Host::new()?;
        host.write("log/app.log", b"")?;
        let watches = errors("log/app.log")?;
        let mut follower = host.follower();
        assert_eq!(count(&mut follower, &host, &watches), 0);
        let mut line = b"ERROR ".to_vec();
        line.resize(1023, b'x');
        line.push(b'\n');
        let lines = MAX_READ_PER_FILE / 1024 + 10;
        host.append("log/app.log", &line.repeat(lines as usize))?;
        assert_eq!(
            count(&mut follower, &host, &watches),
            MAX_READ_PER_FILE / 1024
        );
        assert_eq!(count(&mut follower, &host, &watches), 10);
        Ok(())
    }

    #[test]
    fn too_many_files_are_reported_once() -> TestResult {
        let host = Host::new()?;
        for i in 0..=MAX_FILES_PER_WATCH {
            host.write(&format!("log/{i:04}.log"), b"")?;
        }
        let watches = errors("log/*.log")?;
        let mut follower = host.follower();
        let scan = follower.scan(&host.service, &watches);
        assert_eq!(scan.problems.len(), 1, "{:?}", scan.problems);
        assert!(
            scan.problems[0].contains("more than 1000 paths"),
            "{:?}",
            scan.problems
        );
        host.append("log/0000.log", b"ERROR first\n")?;
        host.append("log/1000.log", b"ERROR left out\n")?;
        assert_eq!(count(&mut follower, &host, &watches), 1);
        Ok(())
    }

    #[test]
    fn a_symlink_out_of_the_service_is_refused_once() -> TestResult {
        let host = Host::new()?;
        let secret = host.outside.join("secret.log");
        fs::write(&secret, b"ERROR secret\n")?;
        symlink(&secret, host.path("log/evil.log"))?;
        symlink(&host.outside, host.path("log/elsewhere"))?;
        host.write("log/app.log", b"")?;
        // A link inside the directory is followed, and the file it names read once.
        symlink("app.log", host.path("log/alias.log"))?;
        let watches = errors("log/{*.log,elsewhere/*.log}")?;
        let mut follower = host.follower();
        let scan = follower.scan(&host.service, &watches);
        assert_eq!(scan.problems.len(), 2, "{:?}", scan.problems);
        assert!(scan
            .problems
            .iter()
            .all(|p| p.contains("links out refused")));
        assert!(
            scan.problems[0].contains("log/elsewhere/secret.log"),
            "{:?}",
            scan.problems
        );
        assert!(
            scan.problems[1].contains("log/evil.log"),
            "{:?}",
            scan.problems
        );

        append(&secret, b"ERROR more secret\n")?;
        host.append("log/app.log", b"ERROR mine\n")?;
        assert_eq!(count(&mut follower, &host, &watches), 1);
        Ok(())
    }

    #[test]
    fn brace_alternatives_are_expanded() -> TestResult {
        let host = Host::new()?;
        for name in ["app", "worker", "works", "other"] {
            host.write(&format!("log/{name}.log"), b"")?;
        }
        let watches = errors("log/{app,work{er,s}}.log")?;
        let mut follower = host.follower();
        assert_eq!(count(&mut follower, &host, &watches), 0);
        for name in ["app", "worker", "works", "other"] {
            host.append(&format!("log/{name}.log"), b"ERROR\n")?;
        }
        assert_eq!(count(&mut follower, &host, &watches), 3);
        Ok(())
    }

    #[test]
    fn wildcards_do_not_match_a_leading_dot() -> TestResult {
        let host = Host::new()?;
        let files = [
            "log/app.log",
            "log/.hidden.log",
            "log/sub/deep.log",
            "log/.cache/deep.log",
        ];
        for file in files {
            host.write(file, b"")?;
        }
        let watches = vec![
            watch("star", "log/*.log", "ERROR")?,
            watch("deep", "log/**/*.log", "ERROR")?,
            watch("dot", "log/.h*.log", "ERROR")?,
        ];
        let mut follower = host.follower();
        follower.scan(&host.service, &watches);
        for file in files {
            host.append(file, b"ERROR\n")?;
        }
        let scan = follower.scan(&host.service, &watches);
        let expected = [("deep".into(), 2), ("dot".into(), 1), ("star".into(), 1)];
        assert_eq!(scan.counts, BTreeMap::from(expected));
        Ok(())
    }

    #[test]
    fn a_non_utf8_file_name_is_skipped() -> TestResult {
        let host = Host::new()?;
        let name = host.path("log").join(OsStr::from_bytes(b"\xff.log"));
        fs::write(&name, b"")?;
        host.write("log/app.log", b"")?;
        let watches = errors("log/*.log")?;
        let mut follower = host.follower();
        assert_eq!(count(&mut follower, &host, &watches), 0);
        append(&name, b"ERROR\n")?;
        host.append("log/app.log", b"ERROR\n")?;
        assert_eq!(count(&mut follower, &host, &watches), 1);
        Ok(())
    }

    #[test]
    fn an_unreadable_file_is_reported_once() -> TestResult {
        let host = Host::new()?;
        let watches = errors("log/*.log")?;
        let mut follower = host.follower();
        assert_eq!(count(&mut follower, &host, &watches), 0);
        host.write("log/secret.log", b"ERROR\n")?;
        let path = host.path("log/secret.log");
        fs::set_permissions(&path, fs::Permissions::from_mode(0o000))?;
        if fs::read(&path).is_ok() {
            // Root reads it anyway: there is nothing to observe.
            return Ok(());
        }
        let scan = follower.scan(&host.service, &watches);
        assert_eq!(scan.problems.len(), 1, "{:?}", scan.problems);
        assert!(
            scan.problems[0].contains("secret.log: cannot read"),
            "{:?}",
            scan.problems
        );
        assert_eq!(count(&mut follower, &host, &watches), 0);
        fs::set_permissions(&path, fs::Permissions::from_mode(0o644))?;
        assert_eq!(count(&mut follower, &host, &watches), 1);
        Ok(())
    }

    #[test]
    fn a_corrupt_state_file_starts_over() -> TestResult {
        let host = Host::new()?;
        if let Some(dir) = host.state.parent() {
            fs::create_dir_all(dir)?;
        }
        fs::write(&host.state, b"{\"version\": 1, \"watches\": [oops")?;
        host.write("log/app.log", b"ERROR old\n")?;
        let watches = errors("log/app.log")?;
        let mut follower = host.follower();
        assert_eq!(count(&mut follower, &host, &watches), 0);
        serde_json::from_slice::<serde_json::Value>(&fs::read(&host.state)?)?;
        host.append("log/app.log", b"ERROR new\n")?;
        assert_eq!(count(&mut follower, &host, &watches), 1);
        Ok(())
    }

    #[test]
    fn a_bad_glob_or_a_missing_directory_counts_zero() -> TestResult {
        let host = Host::new()?;
        let watches = vec![
            watch("escape", "../other/*.log", "ERROR")?,
            watch("errors", "log/*.log", "ERROR")?,
        ];
        let mut follower = host.follower();
        let missing = host.service.join("not-deployed-yet");
        for _ in 0..2 {
            let scan = follower.scan(&missing, &watches);
            assert_eq!(scan.counts.values().sum::<u64>(), 0);
        }
        let scan = follower.scan(&host.service, &watches);
        assert_eq!(
            scan.counts,
            BTreeMap::from([("errors".into(), 0), ("escape".into(), 0)])
        );
        assert_eq!(scan.problems.len(), 1, "{:?}", scan.problems);
        assert!(
            scan.problems[0].starts_with("logs \"escape\": glob"),
            "{:?}",
            scan.problems
        );
        Ok(())
    }

    #[test]
    fn braces_expand_in_order_outside_classes() {
        let cases: [(&str, &[&str]); 4] = [
            ("log/app.log", &["log/app.log"]),
            ("{a,b{c,d}}/x", &["a/x", "bc/x", "bd/x"]),
            ("log/[{]{x,y}", &["log/[{]x", "log/[{]y"]),
            ("{,a}b", &["b", "ab"]),
        ];
        for (glob, expected) in cases {
            assert_eq!(
                expand_braces(glob),
                Ok(expected.iter().map(|s| s.to_string()).collect())
            );
        }
        let many = "{a,b}{c,d}{e,f}{g,h}{i,j}{k,l}{m,n}{o,p}{q,r}";
        assert!(expand_braces(many).is_err_and(|e| e.contains("more than 256")));
        assert!(expand_braces("{a,b").is_err());
        assert!(expand_braces("a}").is_err());
    }
}
