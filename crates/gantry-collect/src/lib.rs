//! Drop files, the habit Flickr's ops team had with gmetric: any script on a host writes
//! `key=value` lines into a file in one directory, and a collector sends every value, every
//! interval, as a StatsD gauge or a Graphite point named `PREFIX.key`.
//!
//! [`parse`] reads one file's text (pure); [`Collector::collect_once`] reads the directory
//! and sends. A line that is not `key=number` is reported once per change of its file (not
//! every interval) and skipped; the other lines of the file are still sent. The host agent
//! embeds [`Collector`]; `gantry collect` runs it on its own.
//!
//! Invariant: it only reads the one directory it is given (no recursion, no following
//! links out of it), and only talks to the one destination it is given.

use std::collections::HashMap;
use std::io::Write;
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// A line that could not be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadLine {
    pub file: PathBuf,
    /// 1-based.
    pub line_number: usize,
    pub line: String,
    pub reason: &'static str,
}

/// A drop file's contents: the values, and the lines refused (number, text, why).
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Parsed {
    pub values: Vec<(String, f64)>,
    pub refused: Vec<(usize, String, &'static str)>,
}

/// Reads a drop file: `key=value` per line; blank lines and `#` comments are skipped.
pub fn parse(text: &str) -> Parsed {
    let mut values = Vec::new();
    let mut bad = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let Some((key, value)) = line.split_once('=') else {
            bad.push((i + 1, raw.to_string(), "not key=value"));
            continue;
        };
        let key = key.trim();
        let valid_key = !key.is_empty()
            && !key.starts_with('.')
            && !key.ends_with('.')
            && !key.contains("..")
            && key
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'));
        if !valid_key {
            bad.push((
                i + 1,
                raw.to_string(),
                "the key must be letters, digits, '_', '-' and '.'",
            ));
            continue;
        }
        match value.trim().parse::<f64>() {
            Ok(v) if v.is_finite() => values.push((key.to_string(), v)),
            _ => bad.push((i + 1, raw.to_string(), "the value is not a finite number")),
        }
    }
    Parsed {
        values,
        refused: bad,
    }
}

/// Where collected values go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Destination {
    /// StatsD gauges over UDP.
    Statsd(SocketAddr),
    /// Graphite plaintext over TCP.
    Graphite(SocketAddr),
}

#[derive(Debug, thiserror::Error)]
pub enum CollectError {
    #[error("cannot read the drop directory {dir}: {source}")]
    Directory {
        dir: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot send to {addr}: {source}")]
    Send {
        addr: SocketAddr,
        source: std::io::Error,
    },
}

/// What one round found and sent.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Round {
    pub files: usize,
    pub sent: usize,
    /// Bad lines in files that changed since they were last reported.
    pub newly_bad: Vec<BadLine>,
}

/// Collects one directory into one destination, round after round.
pub struct Collector {
    dir: PathBuf,
    prefix: String,
    destination: Destination,
    /// Files whose bad lines were reported, by the version (mtime, length) reported.
    reported: HashMap<PathBuf, (Option<SystemTime>, u64)>,
}

/// Largest StatsD datagram sent: fits a typical MTU.
const MAX_DATAGRAM: usize = 1400;

impl Collector {
    pub fn new(dir: &Path, prefix: &str, destination: Destination) -> Collector {
        Collector {
            dir: dir.to_path_buf(),
            prefix: prefix.trim_end_matches('.').to_string(),
            destination,
            reported: HashMap::new(),
        }
    }

    /// Reads every regular file in the directory and sends its values.
    pub fn collect_once(&mut self) -> Result<Round, CollectError> {
        let entries = std::fs::read_dir(&self.dir).map_err(|source| CollectError::Directory {
            dir: self.dir.clone(),
            source,
        })?;
        let mut round = Round::default();
        let mut values = Vec::new();
        let mut seen = Vec::new();
        for entry in entries.filter_map(Result::ok) {
            let path = entry.path();
            let hidden = entry.file_name().to_string_lossy().starts_with('.');
            // symlink_metadata: a link is not followed out of the directory.
            let Ok(meta) = std::fs::symlink_metadata(&path) else {
                continue;
            };
            if hidden || !meta.is_file() {
                continue;
            }
            // A file being rewritten may be unreadable for a moment; it is read next round.
            let Ok(text) = std::fs::read_to_string(&path) else {
                continue;
            };
            round.files += 1;
            seen.push(path.clone());
            let Parsed {
                values: good,
                refused: bad,
            } = parse(&text);
            values.extend(good);
            let version = (meta.modified().ok(), meta.len());
            if !bad.is_empty() && self.reported.get(&path) != Some(&version) {
                round
                    .newly_bad
                    .extend(bad.into_iter().map(|(line_number, line, reason)| BadLine {
                        file: path.clone(),
                        line_number,
                        line,
                        reason,
                    }));
                self.reported.insert(path, version);
            }
        }
        self.reported.retain(|p, _| seen.contains(p));
        round.sent = values.len();
        self.send(&values)?;
        Ok(round)
    }

    fn name(&self, key: &str) -> String {
        if self.prefix.is_empty() {
            key.to_string()
        } else {
            format!("{}.{key}", self.prefix)
        }
    }

    fn send(&self, values: &[(String, f64)]) -> Result<(), CollectError> {
        if values.is_empty() {
            return Ok(());
        }
        match self.destination {
            Destination::Statsd(addr) => {
                let socket = UdpSocket::bind(if addr.is_ipv4() {
                    "0.0.0.0:0"
                } else {
                    "[::]:0"
                })
                .map_err(|source| CollectError::Send { addr, source })?;
                let mut datagram = String::new();
                for (key, value) in values {
                    let name = self.name(key);
                    // A signed gauge is a delta in StatsD: set a negative value from zero.
                    let line = if *value < 0.0 {
                        format!("{name}:0|g\n{name}:{value}|g\n")
                    } else {
                        format!("{name}:{value}|g\n")
                    };
                    if datagram.len() + line.len() > MAX_DATAGRAM && !datagram.is_empty() {
                        socket
                            .send_to(datagram.as_bytes(), addr)
                            .map_err(|source| CollectError::Send { addr, source })?;
                        datagram.clear();
                    }
                    datagram.push_str(&line);
                }
                socket
                    .send_to(datagram.as_bytes(), addr)
                    .map_err(|source| CollectError::Send { addr, source })?;
            }
            Destination::Graphite(addr) => {
                let now = SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .map_or(0, |d| d.as_secs());
                let mut text = String::new();
                for (key, value) in values {
                    text.push_str(&format!("{} {value} {now}\n", self.name(key)));
                }
                let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5))
                    .map_err(|source| CollectError::Send { addr, source })?;
                stream
                    .write_all(text.as_bytes())
                    .map_err(|source| CollectError::Send { addr, source })?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_key_value_lines() {
        let Parsed {
            values,
            refused: bad,
        } = parse(
            "load=1.5\n# a comment\n\n disk.free = 42 \nnoise\nbad key=1\nx=abc\ny=inf\n.z=1\n",
        );
        assert_eq!(
            values,
            vec![("load".into(), 1.5), ("disk.free".into(), 42.0)]
        );
        let reasons: Vec<(usize, &str)> = bad.iter().map(|(n, _, r)| (*n, *r)).collect();
        assert_eq!(
            reasons,
            vec![
                (5, "not key=value"),
                (6, "the key must be letters, digits, '_', '-' and '.'"),
                (7, "the value is not a finite number"),
                (8, "the value is not a finite number"),
                (9, "the key must be letters, digits, '_', '-' and '.'"),
            ]
        );
    }

    #[test]
    fn sends_gauges_and_reports_bad_lines_once_per_change() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("app"), "queue=3\nbroken\ntemp=-4\n").unwrap();
        std::fs::write(dir.path().join(".hidden"), "secret=1\n").unwrap();
        std::fs::create_dir(dir.path().join("sub")).unwrap();
        let receiver = UdpSocket::bind("127.0.0.1:0").unwrap();
        receiver
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        let mut collector = Collector::new(
            dir.path(),
            "host1.",
            Destination::Statsd(receiver.local_addr().unwrap()),
        );
        let round = collector.collect_once().unwrap();
        assert_eq!((round.files, round.sent, round.newly_bad.len()), (1, 2, 1));
        let mut buffer = [0u8; 2048];
        let n = receiver.recv(&mut buffer).unwrap();
        let text = std::str::from_utf8(&buffer[..n]).unwrap();
        assert!(text.contains("host1.queue:3|g\n"), "{text}");
        assert!(text.contains("host1.temp:0|g\nhost1.temp:-4|g\n"), "{text}");
        assert!(!text.contains("secret"));
        // The same bad file is not reported again; a changed one is.
        assert!(collector.collect_once().unwrap().newly_bad.is_empty());
        std::fs::write(dir.path().join("app"), "queue=4\nstill broken!\n").unwrap();
        let filetime = SystemTime::now() + Duration::from_secs(5);
        let file = std::fs::File::options()
            .write(true)
            .open(dir.path().join("app"))
            .unwrap();
        file.set_modified(filetime).unwrap();
        assert_eq!(collector.collect_once().unwrap().newly_bad.len(), 1);
    }

    #[test]
    fn sends_graphite_lines() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("m"), "a=1\n").unwrap();
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let mut collector = Collector::new(
            dir.path(),
            "h",
            Destination::Graphite(listener.local_addr().unwrap()),
        );
        collector.collect_once().unwrap();
        let (mut stream, _) = listener.accept().unwrap();
        let mut text = String::new();
        std::io::Read::read_to_string(&mut stream, &mut text).unwrap();
        assert!(text.starts_with("h.a 1 "), "{text}");
    }

    #[test]
    fn a_missing_directory_is_named() {
        let mut collector = Collector::new(
            Path::new("/nonexistent/drop"),
            "h",
            Destination::Graphite("127.0.0.1:9".parse().unwrap()),
        );
        let err = collector.collect_once().unwrap_err().to_string();
        assert!(err.contains("/nonexistent/drop"), "{err}");
    }
}
