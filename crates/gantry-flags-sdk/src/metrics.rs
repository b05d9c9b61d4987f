//! Counting how often each flag is asked for, for the usage report
//! (`POST /api/client/metrics`).
//!
//! The hot path takes no lock: each loaded flag set comes with [`Counters`], one atomic
//! per flag's yes, no and variant, found by the flag's name. A flag the set does not know
//! (or a variant name it did not foresee) takes the slow path into the pending
//! [`Bucket`] under a mutex. When a new flag set replaces the old one, the old counters
//! are drained into the pending bucket; a report drains the current ones.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Mutex, PoisonError};

use chrono::{DateTime, Utc};
use gantry_flags::{Engine, VariantResult};
use serde::Serialize;

/// Most flags one report counts (the server refuses a report with more); names beyond,
/// which only unknown flags can bring, are not counted.
pub(crate) const MAX_TOGGLES: usize = 10_000;

/// One flag's counts in a report.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub(crate) struct ToggleCounts {
    pub(crate) yes: u64,
    pub(crate) no: u64,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub(crate) variants: BTreeMap<String, u64>,
}

impl ToggleCounts {
    fn add(&mut self, other: &ToggleCounts) {
        self.yes = self.yes.saturating_add(other.yes);
        self.no = self.no.saturating_add(other.no);
        for (name, n) in &other.variants {
            let v = self.variants.entry(name.clone()).or_default();
            *v = v.saturating_add(*n);
        }
    }
}

/// The counts since `start`, not yet reported.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Bucket {
    pub(crate) start: DateTime<Utc>,
    pub(crate) toggles: BTreeMap<String, ToggleCounts>,
}

impl Bucket {
    fn new(start: DateTime<Utc>) -> Bucket {
        Bucket {
            start,
            toggles: BTreeMap::new(),
        }
    }

    /// The counts of `name`, unless the bucket is full and does not have it yet.
    fn entry(&mut self, name: &str) -> Option<&mut ToggleCounts> {
        if !self.toggles.contains_key(name) {
            if self.toggles.len() >= MAX_TOGGLES {
                return None;
            }
            self.toggles
                .insert(name.to_owned(), ToggleCounts::default());
        }
        self.toggles.get_mut(name)
    }

    fn merge(&mut self, other: &Bucket) {
        self.start = self.start.min(other.start);
        for (name, counts) in &other.toggles {
            if let Some(t) = self.entry(name) {
                t.add(counts);
            }
        }
    }
}

/// The report's JSON: `{"appName","instanceId","bucket":{"start","stop","toggles"}}`.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Report<'a> {
    pub(crate) app_name: &'a str,
    pub(crate) instance_id: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) environment: Option<&'a str>,
    pub(crate) bucket: ReportBucket<'a>,
}

#[derive(Debug, Serialize)]
pub(crate) struct ReportBucket<'a> {
    pub(crate) start: DateTime<Utc>,
    pub(crate) stop: DateTime<Utc>,
    pub(crate) toggles: &'a BTreeMap<String, ToggleCounts>,
}

struct FlagCounter {
    yes: AtomicU64,
    no: AtomicU64,
    /// Every variant name the flag can give, `disabled` first.
    variants: Box<[(Box<str>, AtomicU64)]>,
}

/// What [`Counters::count`] could not count.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Missed {
    Nothing,
    /// The flag set has no such flag: nothing was counted.
    Flag,
    /// Yes or no was counted; the variant name was not foreseen.
    Variant,
}

/// Lock-free counters for one flag set.
pub(crate) struct Counters {
    flags: foldhash::HashMap<Box<str>, FlagCounter>,
}

impl Counters {
    pub(crate) fn new(engine: &Engine) -> Counters {
        let mut flags = foldhash::HashMap::default();
        for name in engine.feature_names() {
            let mut names: Vec<&str> = vec![VariantResult::DISABLED];
            if let Some(f) = engine.feature(name) {
                let own = f.variants.iter();
                let strategies = f.strategies.iter().flat_map(|s| s.variants.iter());
                for v in own.chain(strategies) {
                    if !names.contains(&v.name.as_str()) {
                        names.push(&v.name);
                    }
                }
            }
            let variants = names
                .into_iter()
                .map(|n| (Box::from(n), AtomicU64::new(0)))
                .collect();
            flags.insert(
                Box::from(name),
                FlagCounter {
                    yes: AtomicU64::new(0),
                    no: AtomicU64::new(0),
                    variants,
                },
            );
        }
        Counters { flags }
    }

    /// Counts one evaluation of `flag`: yes or no, and `variant` when one was asked for.
    #[inline]
    pub(crate) fn count(&self, flag: &str, enabled: bool, variant: Option<&str>) -> Missed {
        let Some(c) = self.flags.get(flag) else {
            return Missed::Flag;
        };
        if enabled {
            c.yes.fetch_add(1, Relaxed);
        } else {
            c.no.fetch_add(1, Relaxed);
        }
        let Some(variant) = variant else {
            return Missed::Nothing;
        };
        match c.variants.iter().find(|(n, _)| **n == *variant) {
            Some((_, n)) => {
                n.fetch_add(1, Relaxed);
                Missed::Nothing
            }
            None => Missed::Variant,
        }
    }

    fn drain_into(&self, bucket: &mut Bucket) {
        for (name, c) in &self.flags {
            let yes = c.yes.swap(0, Relaxed);
            let no = c.no.swap(0, Relaxed);
            let variants: Vec<(&str, u64)> = c
                .variants
                .iter()
                .map(|(v, n)| (&**v, n.swap(0, Relaxed)))
                .filter(|(_, n)| *n > 0)
                .collect();
            if yes == 0 && no == 0 && variants.is_empty() {
                continue;
            }
            let Some(t) = bucket.entry(name) else {
                continue;
            };
            t.yes = t.yes.saturating_add(yes);
            t.no = t.no.saturating_add(no);
            for (v, n) in variants {
                let slot = t.variants.entry(v.to_owned()).or_default();
                *slot = slot.saturating_add(n);
            }
        }
    }
}

/// The counts waiting to be reported.
pub(crate) struct Metrics {
    pending: Mutex<Bucket>,
    /// Held while a report is on its way, so two flushes do not send the same counts.
    pub(crate) sending: tokio::sync::Mutex<()>,
}

impl Metrics {
    pub(crate) fn new() -> Metrics {
        Metrics {
            pending: Mutex::new(Bucket::new(Utc::now())),
            sending: tokio::sync::Mutex::new(()),
        }
    }

    fn pending(&self) -> std::sync::MutexGuard<'_, Bucket> {
        self.pending.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The slow path of [`Counters::count`].
    pub(crate) fn count_missed(
        &self,
        missed: Missed,
        flag: &str,
        enabled: bool,
        variant: Option<&str>,
    ) {
        if missed == Missed::Nothing {
            return;
        }
        let mut pending = self.pending();
        let Some(t) = pending.entry(flag) else {
            return;
        };
        if missed == Missed::Flag {
            if enabled {
                t.yes = t.yes.saturating_add(1);
            } else {
                t.no = t.no.saturating_add(1);
            }
        }
        if let Some(v) = variant {
            let slot = t.variants.entry(v.to_owned()).or_default();
            *slot = slot.saturating_add(1);
        }
    }

    /// Moves the counts of a flag set that is being replaced into the pending bucket.
    pub(crate) fn absorb(&self, counters: &Counters) {
        counters.drain_into(&mut self.pending());
    }

    /// Everything counted so far, with `current`'s counters drained; the pending bucket
    /// starts again. `None` when nothing was counted.
    pub(crate) fn take(&self, current: &Counters) -> Option<Bucket> {
        let mut pending = self.pending();
        current.drain_into(&mut pending);
        let now = Utc::now();
        if pending.toggles.is_empty() {
            return None;
        }
        Some(std::mem::replace(&mut *pending, Bucket::new(now)))
    }

    /// A bucket that could not be sent goes back, to be sent with the next report.
    pub(crate) fn put_back(&self, bucket: &Bucket) {
        self.pending().merge(bucket);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use gantry_flags::ClientFeatures;

    fn engine() -> Engine {
        let doc: ClientFeatures = serde_json::from_value(serde_json::json!({
            "version": 2,
            "features": [
                {"name": "a", "enabled": true, "variants": [{"name": "x", "weight": 1000}],
                 "strategies": [{"name": "default", "variants": [{"name": "y", "weight": 1000}]}]},
                {"name": "b", "enabled": false}
            ]
        }))
        .expect("document");
        Engine::new(doc)
    }

    #[test]
    fn counts_known_and_unknown_flags() {
        let e = engine();
        let counters = Counters::new(&e);
        let metrics = Metrics::new();
        let count = |flag: &str, enabled: bool, variant: Option<&str>| {
            let missed = counters.count(flag, enabled, variant);
            metrics.count_missed(missed, flag, enabled, variant);
            missed
        };
        assert_eq!(count("a", true, None), Missed::Nothing);
        assert_eq!(count("a", true, Some("y")), Missed::Nothing);
        assert_eq!(count("a", true, Some("x")), Missed::Nothing);
        assert_eq!(count("a", false, Some("surprise")), Missed::Variant);
        assert_eq!(count("b", false, Some("disabled")), Missed::Nothing);
        assert_eq!(count("nope", false, None), Missed::Flag);
        let bucket = metrics.take(&counters).expect("counted");
        let a = &bucket.toggles["a"];
        assert_eq!((a.yes, a.no), (3, 1));
        let expected: BTreeMap<String, u64> = [("surprise", 1), ("x", 1), ("y", 1)]
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v))
            .collect();
        assert_eq!(a.variants, expected);
        assert_eq!(bucket.toggles["b"].variants["disabled"], 1);
        assert_eq!(
            (bucket.toggles["nope"].yes, bucket.toggles["nope"].no),
            (0, 1)
        );
        // Drained: nothing left.
        assert!(metrics.take(&counters).is_none());
        // A bucket put back is sent with the next one.
        metrics.put_back(&bucket);
        counters.count("b", false, None);
        let again = metrics.take(&counters).expect("counted");
        assert_eq!(again.toggles["b"].no, 2);
        assert_eq!(again.start, bucket.start);
    }

    #[test]
    fn a_replaced_flag_set_keeps_its_counts() {
        let e = engine();
        let old = Counters::new(&e);
        let new = Counters::new(&e);
        let metrics = Metrics::new();
        old.count("a", true, None);
        metrics.absorb(&old);
        new.count("a", true, None);
        assert_eq!(metrics.take(&new).expect("counted").toggles["a"].yes, 2);
    }

    #[test]
    fn unknown_flag_names_are_bounded() {
        let metrics = Metrics::new();
        let counters = Counters::new(&Engine::default());
        for i in 0..MAX_TOGGLES + 50 {
            let name = format!("f{i}");
            metrics.count_missed(counters.count(&name, false, None), &name, false, None);
        }
        assert_eq!(
            metrics.take(&counters).expect("counted").toggles.len(),
            MAX_TOGGLES
        );
    }
}
