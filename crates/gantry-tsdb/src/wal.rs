//! The flush log: each flush's points appended to a segment file and synced before the flush
//! returns, kept until a checkpoint has written them into blocks, and replayed at the next
//! open if the process died first.
//!
//! A record is `[payload length: u32][sequence: u64][payload][crc32 of sequence and
//! payload: u32]`, little-endian. Segments are named by the sequence of their first record
//! and read in that order. A record cut short (a crash in the middle of an append) ends its
//! segment, and so does a length beyond what is left of the file (nothing is allocated for
//! it); a record whose checksum fails is skipped and counted, and the next one is read.
//! A checkpoint stores the last sequence it covered with the last batch of blocks it wrote,
//! then deletes the segments: records at or below that sequence are never replayed, so a
//! crash between the two cannot bring old values back over newer ones (and a crash between
//! its batches only leaves blocks that the replay of the records above it rewrites with the
//! same values).
//!
//! The log lived in the storage engine as one large value per flush until 2026-12: every
//! point then went through the engine's journal, a memtable, a segment file and compactions,
//! and a bulk load held several copies of each record in memory
//! (docs/decisions/0006-flush-log-in-files.md).

use std::fs::{File, OpenOptions};
use std::io::{BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use crate::{Result, TsdbError};

/// Longest payload a reader believes: a length beyond it is garbage, not a record.
const MAX_PAYLOAD: u32 = 1 << 30;

/// The flush log of one store, in its directory.
pub(crate) struct Wal {
    dir: PathBuf,
    /// The segment appends go to; `None` until the first append after open, a truncation or
    /// a failed append (which may have left a torn record behind: nothing follows it).
    current: Option<BufWriter<File>>,
    /// The sequence the next record gets.
    next_seq: u64,
    /// Records appended or replayed since the last truncation.
    records: usize,
}

/// What a replay found.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Replayed {
    /// Records handed to the caller (above the checkpoint).
    pub records: usize,
    /// Records whose checksum failed, skipped.
    pub corrupt: usize,
    /// Segments that ended in a record cut short.
    pub torn: usize,
}

impl Wal {
    /// The log in `dir` (created when missing). Nothing is read until [`Wal::replay`].
    pub(crate) fn open(dir: &Path) -> Result<Wal> {
        std::fs::create_dir_all(dir).map_err(|e| io_error(dir, "create", e))?;
        Ok(Wal {
            dir: dir.to_path_buf(),
            current: None,
            next_seq: 1,
            records: 0,
        })
    }

    /// Records appended or replayed since the last truncation.
    pub(crate) fn records(&self) -> usize {
        self.records
    }

    /// The sequence of the last record appended or replayed (0 when none ever was).
    pub(crate) fn last_seq(&self) -> u64 {
        self.next_seq - 1
    }

    /// Hands every intact record with a sequence above `checkpoint` to `apply`, segment by
    /// segment in order; later appends get higher sequences than any record found.
    pub(crate) fn replay(
        &mut self,
        checkpoint: u64,
        mut apply: impl FnMut(u64, &[u8]) -> Result<()>,
    ) -> Result<Replayed> {
        self.next_seq = self.next_seq.max(checkpoint.saturating_add(1));
        let mut found = Replayed::default();
        let mut payload = Vec::new();
        for path in self.segments()? {
            // A new segment must never take an old one's name (appending after a torn
            // record would hide what follows it).
            if let Some(first) = segment_seq(&path) {
                self.next_seq = self.next_seq.max(first.saturating_add(1));
            }
            let file = File::open(&path).map_err(|e| io_error(&path, "open", e))?;
            // What is left to read: a length beyond it is a record cut short, found without
            // allocating what it claims.
            let mut left = file
                .metadata()
                .map_err(|e| io_error(&path, "read", e))?
                .len();
            let mut reader = BufReader::with_capacity(256 * 1024, file);
            loop {
                let mut header = [0u8; 12];
                match read_full(&mut reader, &mut header) {
                    Ok(0) => break,
                    Ok(12) => {}
                    Ok(_) => {
                        found.torn += 1;
                        break;
                    }
                    Err(e) => return Err(io_error(&path, "read", e)),
                }
                left = left.saturating_sub(12);
                let length = u32::from_le_bytes([header[0], header[1], header[2], header[3]]);
                let mut seq_bytes = [0u8; 8];
                seq_bytes.copy_from_slice(&header[4..]);
                let seq = u64::from_le_bytes(seq_bytes);
                if length > MAX_PAYLOAD || u64::from(length) + 4 > left {
                    // Not a length this log writes, or more than the file holds: nothing
                    // after it can be found.
                    found.torn += 1;
                    break;
                }
                left -= u64::from(length) + 4;
                payload.resize(length as usize + 4, 0);
                match read_full(&mut reader, &mut payload) {
                    Ok(n) if n == payload.len() => {}
                    Ok(_) => {
                        found.torn += 1;
                        break;
                    }
                    Err(e) => return Err(io_error(&path, "read", e)),
                }
                let (body, crc) = payload.split_at(length as usize);
                let mut hasher = crc32fast::Hasher::new();
                hasher.update(&seq_bytes);
                hasher.update(body);
                if hasher.finalize().to_le_bytes() != crc {
                    found.corrupt += 1;
                    continue;
                }
                self.next_seq = self.next_seq.max(seq.saturating_add(1));
                if seq > checkpoint {
                    apply(seq, body)?;
                    found.records += 1;
                    self.records += 1;
                }
            }
        }
        Ok(found)
    }

    /// Appends one record whose payload `write` writes (exactly `length` bytes), and syncs
    /// it to disk. Returns its sequence.
    pub(crate) fn append(
        &mut self,
        length: u64,
        write: impl FnOnce(&mut dyn Write) -> std::io::Result<()>,
    ) -> Result<u64> {
        let length32 = u32::try_from(length)
            .ok()
            .filter(|&l| l <= MAX_PAYLOAD)
            .ok_or_else(|| {
                TsdbError::Storage(format!("a flush log record of {length} bytes is too long"))
            })?;
        let seq = self.next_seq;
        let next = seq.checked_add(1).ok_or_else(|| {
            TsdbError::Storage("the flush log's sequence numbers are used up".into())
        })?;
        let written = self.write_record(seq, length32, length, write);
        // The sequence is used up either way: after a failure, whatever reached the file
        // ends its segment, and the next append starts another, named after its own.
        self.next_seq = next;
        if written.is_err() {
            self.current = None;
        }
        written?;
        self.records += 1;
        Ok(seq)
    }

    fn write_record(
        &mut self,
        seq: u64,
        length: u32,
        expected: u64,
        write: impl FnOnce(&mut dyn Write) -> std::io::Result<()>,
    ) -> Result<()> {
        let path = self.dir.clone();
        let out = match &mut self.current {
            Some(out) => out,
            None => {
                let file = self.create_segment(seq)?;
                self.current
                    .insert(BufWriter::with_capacity(256 * 1024, file))
            }
        };
        let io = |e| io_error(&path, "write to", e);
        out.write_all(&length.to_le_bytes()).map_err(io)?;
        out.write_all(&seq.to_le_bytes()).map_err(io)?;
        let mut hashing = Hashing {
            inner: &mut *out,
            hasher: crc32fast::Hasher::new(),
            written: 0,
        };
        hashing.hasher.update(&seq.to_le_bytes());
        write(&mut hashing).map_err(io)?;
        let Hashing {
            hasher, written, ..
        } = hashing;
        if written != expected {
            return Err(TsdbError::Storage(format!(
                "a flush log record was {written} bytes, not the {expected} announced"
            )));
        }
        out.write_all(&hasher.finalize().to_le_bytes())
            .map_err(io)?;
        out.flush().map_err(io)?;
        out.get_ref().sync_data().map_err(io)?;
        Ok(())
    }

    /// Deletes every segment (a checkpoint has put all their points into blocks and stored
    /// [`Wal::last_seq`] as covered); the next append starts a new one.
    pub(crate) fn truncate(&mut self) -> Result<()> {
        self.current = None;
        for path in self.segments()? {
            std::fs::remove_file(&path).map_err(|e| io_error(&path, "remove", e))?;
        }
        sync_dir(&self.dir)?;
        self.records = 0;
        Ok(())
    }

    /// Bytes a record of `length` payload bytes takes in a segment (12 before, 4 after).
    #[cfg(test)]
    pub(crate) fn record_bytes(length: u64) -> u64 {
        length + 16
    }

    fn create_segment(&self, first_seq: u64) -> Result<File> {
        let path = self.dir.join(format!("{first_seq:020}.log"));
        let file = OpenOptions::new()
            .create_new(true)
            .append(true)
            .open(&path)
            .map_err(|e| io_error(&path, "create", e))?;
        // The new name must be as durable as the records written into it.
        sync_dir(&self.dir)?;
        Ok(file)
    }

    /// The segment files, oldest first.
    fn segments(&self) -> Result<Vec<PathBuf>> {
        let mut segments: Vec<PathBuf> = std::fs::read_dir(&self.dir)
            .map_err(|e| io_error(&self.dir, "list", e))?
            .filter_map(|entry| entry.ok().map(|e| e.path()))
            .filter(|path| path.extension().is_some_and(|e| e == "log"))
            .collect();
        segments.sort();
        Ok(segments)
    }
}

/// The sequence a segment's name gives (that of its first record).
fn segment_seq(path: &Path) -> Option<u64> {
    path.file_stem()?.to_str()?.parse().ok()
}

/// A writer that hashes (and counts) what passes through it.
struct Hashing<'a> {
    inner: &'a mut BufWriter<File>,
    hasher: crc32fast::Hasher,
    written: u64,
}

impl Write for Hashing<'_> {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(bytes)?;
        self.hasher.update(&bytes[..n]);
        self.written += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

/// Reads until `buffer` is full or the file ends; returns how much was read.
fn read_full(reader: &mut impl Read, buffer: &mut [u8]) -> std::io::Result<usize> {
    let mut filled = 0;
    while filled < buffer.len() {
        match reader.read(&mut buffer[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| io_error(dir, "sync", e))
}

fn io_error(path: &Path, what: &str, e: std::io::Error) -> TsdbError {
    TsdbError::Storage(format!(
        "cannot {what} the metrics flush log at {}: {e}",
        path.display()
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn append(wal: &mut Wal, payload: &[u8]) -> u64 {
        wal.append(payload.len() as u64, |out| out.write_all(payload))
            .unwrap()
    }

    fn replay(wal: &mut Wal, checkpoint: u64) -> (Vec<(u64, Vec<u8>)>, Replayed) {
        let mut got = Vec::new();
        let found = wal
            .replay(checkpoint, |seq, payload| {
                got.push((seq, payload.to_vec()));
                Ok(())
            })
            .unwrap();
        (got, found)
    }

    fn segment_files(dir: &Path) -> Vec<PathBuf> {
        let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        files.sort();
        files
    }

    #[test]
    fn records_come_back_in_order_above_the_checkpoint() {
        let dir = tempfile::tempdir().unwrap();
        let mut wal = Wal::open(dir.path()).unwrap();
        assert_eq!(append(&mut wal, b"one"), 1);
        assert_eq!(append(&mut wal, b""), 2);
        assert_eq!(append(&mut wal, &[7u8; 100_000]), 3);
        assert_eq!(wal.records(), 3);
        drop(wal);
        let mut wal = Wal::open(dir.path()).unwrap();
        let (got, found) = replay(&mut wal, 1);
        assert_eq!(
            got,
            vec![(2, Vec::new()), (3, vec![7u8; 100_000])],
            "record 1 is covered by the checkpoint"
        );
        assert_eq!(
            found,
            Replayed {
                records: 2,
                corrupt: 0,
                torn: 0
            }
        );
        // New records follow every one found, in a new segment.
        assert_eq!(append(&mut wal, b"four"), 4);
        assert_eq!(segment_files(dir.path()).len(), 2);
        let on_disk: u64 = segment_files(dir.path())
            .iter()
            .map(|p| std::fs::metadata(p).unwrap().len())
            .sum();
        assert_eq!(
            on_disk,
            [3u64, 0, 100_000, 4]
                .iter()
                .map(|&l| Wal::record_bytes(l))
                .sum::<u64>()
        );
    }

    #[test]
    fn a_torn_tail_ends_its_segment_and_a_bad_checksum_skips_one_record() {
        let dir = tempfile::tempdir().unwrap();
        let mut wal = Wal::open(dir.path()).unwrap();
        append(&mut wal, b"first");
        append(&mut wal, b"second");
        append(&mut wal, b"third");
        drop(wal);
        let segment = segment_files(dir.path()).remove(0);
        let mut bytes = std::fs::read(&segment).unwrap();
        // Flip a byte of the second record's payload.
        let second = Wal::record_bytes(5) as usize + 12;
        bytes[second] ^= 0xff;
        // And a record cut short at the end, as a crash mid-append leaves it.
        bytes.extend_from_slice(&[9, 0, 0, 0, 4, 0, 0, 0, 0, 0, 0, 0, b'x']);
        std::fs::write(&segment, &bytes).unwrap();
        let mut wal = Wal::open(dir.path()).unwrap();
        let (got, found) = replay(&mut wal, 0);
        assert_eq!(got, vec![(1, b"first".to_vec()), (3, b"third".to_vec())]);
        assert_eq!(
            found,
            Replayed {
                records: 2,
                corrupt: 1,
                torn: 1
            }
        );
        // Appends go on in a segment of their own, after the highest sequence read.
        assert_eq!(append(&mut wal, b"fourth"), 4);
        assert_eq!(segment_files(dir.path()).len(), 2);
        let mut again = Wal::open(dir.path()).unwrap();
        let (got, _) = replay(&mut again, 3);
        assert_eq!(got, vec![(4, b"fourth".to_vec())]);
    }

    #[test]
    fn a_new_segment_never_appends_to_an_old_one() {
        let dir = tempfile::tempdir().unwrap();
        // A segment holding only a torn record, named after the sequence it would have had.
        std::fs::write(
            dir.path().join(format!("{:020}.log", 1)),
            [5u8, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, b'a'],
        )
        .unwrap();
        let mut wal = Wal::open(dir.path()).unwrap();
        let (got, found) = replay(&mut wal, 0);
        assert!(got.is_empty());
        assert_eq!(found.torn, 1);
        assert_eq!(append(&mut wal, b"kept"), 2);
        let mut again = Wal::open(dir.path()).unwrap();
        let (got, _) = replay(&mut again, 0);
        assert_eq!(got, vec![(2, b"kept".to_vec())]);
    }

    #[test]
    fn a_length_beyond_the_file_is_a_torn_record_and_nothing_is_allocated_for_it() {
        let dir = tempfile::tempdir().unwrap();
        let mut wal = Wal::open(dir.path()).unwrap();
        append(&mut wal, b"kept");
        drop(wal);
        let segment = segment_files(dir.path()).remove(0);
        let mut bytes = std::fs::read(&segment).unwrap();
        // A header announcing almost a gigabyte, and nothing after it.
        bytes.extend_from_slice(&(MAX_PAYLOAD - 1).to_le_bytes());
        bytes.extend_from_slice(&2u64.to_le_bytes());
        std::fs::write(&segment, &bytes).unwrap();
        let mut wal = Wal::open(dir.path()).unwrap();
        let (got, found) = replay(&mut wal, 0);
        assert_eq!(got, vec![(1, b"kept".to_vec())]);
        assert_eq!(found.torn, 1);
    }

    #[test]
    fn the_largest_sequences_neither_overflow_nor_repeat() {
        let dir = tempfile::tempdir().unwrap();
        // A segment named after the last sequence there is.
        std::fs::write(dir.path().join(format!("{}.log", u64::MAX)), b"").unwrap();
        let mut wal = Wal::open(dir.path()).unwrap();
        let (got, _) = replay(&mut wal, u64::MAX);
        assert!(got.is_empty());
        assert!(wal.append(1, |out| out.write_all(b"x")).is_err());
    }

    #[test]
    fn truncation_removes_every_segment_and_keeps_the_sequence() {
        let dir = tempfile::tempdir().unwrap();
        let mut wal = Wal::open(dir.path()).unwrap();
        append(&mut wal, b"a");
        append(&mut wal, b"b");
        wal.truncate().unwrap();
        assert!(segment_files(dir.path()).is_empty());
        assert_eq!(wal.records(), 0);
        assert_eq!(wal.last_seq(), 2);
        assert_eq!(append(&mut wal, b"c"), 3);
    }

    #[test]
    fn a_record_longer_than_announced_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let mut wal = Wal::open(dir.path()).unwrap();
        let err = wal.append(2, |out| out.write_all(b"abc")).unwrap_err();
        assert!(err.to_string().contains("3 bytes, not the 2"), "{err}");
        // The next record starts a new segment and reads back; the bad one ended its own.
        assert_eq!(append(&mut wal, b"ok"), 2);
        assert_eq!(segment_files(dir.path()).len(), 2);
        let mut again = Wal::open(dir.path()).unwrap();
        let (got, found) = replay(&mut again, 0);
        assert_eq!(got, vec![(2, b"ok".to_vec())]);
        assert_eq!(
            found,
            Replayed {
                records: 1,
                corrupt: 0,
                torn: 1
            }
        );
    }
}
