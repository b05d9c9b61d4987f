//! Whisper's arithmetic, kept apart from storage so it is tested directly: which archive a
//! write lands in, which archive and aligned window a read uses, and where a slot lives.

use crate::config::Archive;

/// Slots per stored block, in every archive.
pub const SLOTS_PER_BLOCK: i64 = 360;

/// How far ahead of the clock a point may be (clients' clocks drift); whisper allows none.
pub const FUTURE_TOLERANCE_SECS: i64 = 600;

/// The archive a point at `timestamp` is written to: the finest one whose retention covers
/// its age. `None` when it is older than every archive keeps, or too far in the future.
pub fn write_archive(archives: &[Archive], now: i64, timestamp: i64) -> Option<usize> {
    let age = now - timestamp;
    let max_retention = archives.iter().map(Archive::retention).max()?;
    if age < -FUTURE_TOLERANCE_SECS || age >= max_retention {
        return None;
    }
    archives.iter().position(|a| a.retention() >= age.max(0))
}

/// The start of the slot holding `timestamp` in an archive of `step`.
pub fn slot_start(timestamp: i64, step: u32) -> i64 {
    timestamp - timestamp.rem_euclid(i64::from(step))
}

/// Which block a slot is in, and its index within the block.
pub fn block_of(slot_time: i64, step: u32) -> (u64, usize) {
    let span = i64::from(step) * SLOTS_PER_BLOCK;
    let block = slot_time.div_euclid(span);
    let index = (slot_time.rem_euclid(span) / i64::from(step)) as usize;
    (block as u64, index)
}

/// A read: the archive used and the aligned window `[start, end)` with its step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    pub archive: usize,
    pub start: i64,
    pub end: i64,
    pub step: u32,
}

/// Whisper's fetch: clamp to what is kept, pick the finest archive covering `from`, and
/// align to its step the way whisper does (both ends move to the next slot boundary).
pub fn read_window(archives: &[Archive], now: i64, from: i64, until: i64) -> Option<Window> {
    let max_retention = archives.iter().map(Archive::retention).max()?;
    let oldest = now - max_retention;
    if from > until || from > now || until < oldest {
        return None;
    }
    let from = from.max(oldest);
    let until = until.min(now);
    let age = now - from;
    let archive = archives
        .iter()
        .position(|a| a.retention() >= age)
        .unwrap_or(archives.len() - 1);
    let step = archives[archive].step;
    let start = slot_start(from, step) + i64::from(step);
    let mut end = slot_start(until, step) + i64::from(step);
    if start == end {
        end += i64::from(step);
    }
    Some(Window {
        archive,
        start,
        end,
        step,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn archives() -> Vec<Archive> {
        vec![
            Archive {
                step: 10,
                points: 360,
            },
            Archive {
                step: 60,
                points: 1440,
            },
        ]
    }

    #[test]
    fn writes_go_to_the_finest_covering_archive() {
        let now = 1_000_000;
        assert_eq!(write_archive(&archives(), now, now), Some(0));
        assert_eq!(write_archive(&archives(), now, now - 3600), Some(0));
        assert_eq!(write_archive(&archives(), now, now - 3601), Some(1));
        assert_eq!(write_archive(&archives(), now, now - 86_399), Some(1));
        assert_eq!(write_archive(&archives(), now, now - 86_400), None);
        assert_eq!(write_archive(&archives(), now, now + 60), Some(0));
        assert_eq!(write_archive(&archives(), now, now + 601), None);
    }

    #[test]
    fn reads_align_like_whisper() {
        let now = 1_000_005;
        let w = read_window(&archives(), now, now - 600, now).unwrap();
        assert_eq!(
            w,
            Window {
                archive: 0,
                start: 999_410,
                end: 1_000_010,
                step: 10
            }
        );
        let w = read_window(&archives(), now, now - 7200, now - 3600).unwrap();
        assert_eq!(
            (w.archive, w.step, w.start % 60, (w.end - w.start) / 60),
            (1, 60, 0, 60)
        );
        // A zero-length window still returns one point.
        let w = read_window(&archives(), now, 999_995, 999_995).unwrap();
        assert_eq!(w.end - w.start, 10);
        assert_eq!(read_window(&archives(), now, now + 10, now + 20), None);
        assert_eq!(read_window(&archives(), now, 0, 10), None);
        assert_eq!(read_window(&archives(), now, 20, 10), None);
    }

    #[test]
    fn blocks() {
        assert_eq!(block_of(0, 10), (0, 0));
        assert_eq!(block_of(3590, 10), (0, 359));
        assert_eq!(block_of(3600, 10), (1, 0));
        assert_eq!(slot_start(1_000_005, 10), 1_000_000);
    }
}
