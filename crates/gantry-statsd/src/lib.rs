//! StatsD as Etsy's statsd 0.9.0 defines it, as a pure engine: [`parse`] turns a datagram
//! into samples, a [`Shard`] (one per receive loop) folds samples into per-key state,
//! [`Aggregator::merge`] joins the shards, and
//! [`Aggregator::flush`] produces the `(name, value)` points Etsy's graphite backend would
//! write, with the same names and the same values.
//!
//! Invariant: no I/O, no clocks, no threads. Sockets, receive loops and the time-series
//! store live elsewhere and call in here; this crate is tested against Etsy's own output
//! (`tests/etsy.rs`).
//!
//! Where Gantry deliberately differs from Etsy (each is a bad line here, a value there):
//! `Infinity` and other non-finite values, and a sample rate of `@0` (Etsy divides by it).

mod aggregate;
mod config;
mod number;
mod parse;
mod table;

pub use aggregate::{Aggregator, Flushed, Point, Shard};
pub use config::{HistogramBins, StatsdConfig};
pub use parse::{parse, BadLine, Kind, ParseCounts, Sample};
#[doc(hidden)]
pub use parse::{parse_line_fast, parse_line_general};
