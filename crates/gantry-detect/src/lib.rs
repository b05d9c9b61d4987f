//! Change-aware regression detection, as statistics: did a key metric of a service move
//! after a change, by how much, and is that enough to call it a regression?
//!
//! - [`series`]: points at their stored resolution, turned into per-second rates;
//! - [`mod@mann_whitney`]: the one-sided rank test, exact for small groups (ties included),
//!   normal otherwise;
//! - [`mod@hodges_lehmann`]: the shift estimate and its distribution-free 95 % interval, also as
//!   a ratio on the log scale;
//! - [`verdict`]: the three rules of a regression (significant, large, certainly large),
//!   alpha spending over repeated looks, seasonal expectations;
//! - [`canary`]: hosts on the new build against hosts not yet on it (difference in
//!   differences);
//! - [`mod@watch`]: the always-on watch of key metrics against their seasonal expectation,
//!   change or no change, with a false-verdict budget per metric and day;
//! - [`zero`]: a busy counter that fell silent, within two flushes;
//! - [`mod@replay`]: a recorded CSV series run through the detector as a server would.
//!
//! Rank methods because metrics are skewed, spiky and often tied (small counts); they
//! assume nothing about the shape of the distribution, only that slots are exchangeable
//! when nothing changed.
//!
//! Invariant: no I/O, no clock, no randomness. Times and data come from the caller, so the
//! server, the CLI's replay and the tests get the same answers from the same numbers.

pub mod canary;
pub mod hodges_lehmann;
pub mod mann_whitney;
mod normal;
pub mod replay;
pub mod series;
pub mod verdict;
pub mod watch;
pub mod zero;

pub use canary::{compare_hosts, HostWindow};
pub use hodges_lehmann::{hodges_lehmann, hodges_lehmann_ratio, Ratio, Shift};
pub use mann_whitney::{mann_whitney, Alternative, MannWhitney};
pub use replay::{parse_csv, replay, ReplayError, Verdict};
pub use series::{to_rate, Point};
pub use verdict::{
    compare, look_alpha, seasonal_ratio, Comparison, Config, Direction, Movement, Outcome,
    SeasonalRatio,
};
pub use watch::{watch, Season, WatchConfig, WatchRule, WatchVerdict, Watched};
pub use zero::dropped_to_zero;
