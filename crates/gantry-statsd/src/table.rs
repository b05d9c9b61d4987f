//! Keys by identity, and the map the receive loops fold samples into.
//!
//! A receive loop's cost per line is dominated by one memory access: the map entry of the
//! line's key, which is rarely still in cache when the next datagrams arrive (the loop
//! sleeps while they gather, and other work runs on the core). [`IdMap`] is an
//! open-addressing table whose slots hold the identity and the value itself, so finding a key touches one
//! place that is known from the key's identity alone, and [`IdMap::prefetch`] can ask for
//! it several lines ahead: the misses of a batch overlap instead of following each other.

use std::hash::BuildHasher;
use std::sync::OnceLock;

/// A key's identity: two independently seeded 64-bit hashes of its text, random per
/// process. Maps compare identities, never the text: at 50,000 lines/s a compare of the
/// stored text was a cache miss, a sixth of the receive threads' time. Two keys share an
/// identity with probability about n² / 2¹²⁸ (10¹⁴ keys for odds of 10⁻⁹; one bit is fixed
/// so no key's identity is [`Id::EMPTY`]), and the seeds are secret, so keys cannot be
/// chosen to collide.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) struct Id {
    hi: u64,
    /// Also the start of the key's probe sequence in an [`IdMap`].
    lo: u64,
}

impl Id {
    /// Marks a free slot of an [`IdMap`]; no key has it (the top bit of `hi` is set).
    const EMPTY: Id = Id { hi: 0, lo: 0 };

    pub(crate) fn of(name: &str) -> Id {
        static SEEDS: OnceLock<[foldhash::quality::RandomState; 2]> = OnceLock::new();
        let [a, b] = SEEDS.get_or_init(Default::default);
        Id {
            hi: a.hash_one(name) | 1 << 63,
            lo: b.hash_one(name),
        }
    }
}

/// A key and its identity.
#[derive(Debug, Clone)]
pub(crate) struct Key {
    pub(crate) id: Id,
    name: Box<str>,
}

impl Key {
    pub(crate) fn new(name: &str) -> Key {
        Key {
            id: Id::of(name),
            name: Box::from(name),
        }
    }
}

impl std::ops::Deref for Key {
    type Target = str;
    fn deref(&self) -> &str {
        &self.name
    }
}

/// A map from keys to `V`, found by identity: linear probing from the identity's low half,
/// at most three quarters full. A lookup reads only `slots` (identity and value side by
/// side, no key text: the smaller the table, the more of it stays in cache between a
/// receive thread's wake-ups); the keys' text is in `keys`, at the same index, for naming
/// what is flushed.
#[derive(Debug)]
pub(crate) struct IdMap<V> {
    /// `(Id::EMPTY, V::default())` where free.
    slots: Box<[(Id, V)]>,
    keys: Box<[Option<Key>]>,
    len: usize,
}

impl<V: Default> Default for IdMap<V> {
    fn default() -> IdMap<V> {
        IdMap::with_capacity(0)
    }
}

impl<V: Default> IdMap<V> {
    const MIN_SLOTS: usize = 8;

    /// A map that holds `keys` keys before it grows.
    pub(crate) fn with_capacity(keys: usize) -> IdMap<V> {
        let slots = (keys.saturating_mul(4) / 3 + 1)
            .max(Self::MIN_SLOTS)
            .checked_next_power_of_two()
            .unwrap_or(usize::MAX / 2 + 1);
        IdMap {
            slots: std::iter::repeat_with(|| (Id::EMPTY, V::default()))
                .take(slots)
                .collect(),
            keys: std::iter::repeat_with(|| None).take(slots).collect(),
            len: 0,
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.len
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.len == 0
    }

    fn home(&self, id: Id) -> usize {
        id.lo as usize & (self.slots.len() - 1)
    }

    /// Where `id` is, or the free slot where it would go.
    fn find(&self, id: Id) -> usize {
        let mask = self.slots.len() - 1;
        let mut at = self.home(id);
        loop {
            let here = self.slots[at].0;
            if here == id || here == Id::EMPTY {
                return at;
            }
            at = (at + 1) & mask;
        }
    }

    /// Asks the CPU to bring `id`'s slot into cache, for a lookup a little later. Only a
    /// hint: it never faults and changes nothing.
    #[inline]
    pub(crate) fn prefetch(&self, id: Id) {
        #[cfg(target_arch = "x86_64")]
        {
            let slot = self.slots[self.home(id)..].as_ptr();
            // SAFETY: `_mm_prefetch` only hints the cache; SSE is part of x86_64's baseline,
            // and the pointer is to a live element of `slots`.
            unsafe {
                std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(slot.cast())
            };
        }
        #[cfg(not(target_arch = "x86_64"))]
        let _ = id;
    }

    pub(crate) fn get_mut(&mut self, id: Id) -> Option<&mut V> {
        let at = self.find(id);
        let (here, value) = &mut self.slots[at];
        (*here == id).then_some(value)
    }

    /// `id`'s value, made by `make` with a copy of `name` as the key when there is none.
    pub(crate) fn get_or_insert_with(
        &mut self,
        id: Id,
        name: &str,
        make: impl FnOnce() -> V,
    ) -> &mut V {
        self.get_or_insert_key_with(
            id,
            || Key {
                id,
                name: Box::from(name),
            },
            make,
        )
    }

    /// `key`'s value, made by `make` when there is none (the key is moved in then).
    pub(crate) fn entry(&mut self, key: Key, make: impl FnOnce() -> V) -> &mut V {
        let id = key.id;
        self.get_or_insert_key_with(id, || key, make)
    }

    fn get_or_insert_key_with(
        &mut self,
        id: Id,
        key: impl FnOnce() -> Key,
        make: impl FnOnce() -> V,
    ) -> &mut V {
        let mut at = self.find(id);
        if self.slots[at].0 != id {
            if 4 * (self.len + 1) > 3 * self.slots.len() {
                self.grow();
                at = self.find(id);
            }
            self.slots[at] = (id, make());
            self.keys[at] = Some(key());
            self.len += 1;
        }
        &mut self.slots[at].1
    }

    fn grow(&mut self) {
        let mut bigger = IdMap::with_capacity(self.slots.len());
        for (key, value) in std::mem::take(self) {
            bigger.place(key, value);
        }
        *self = bigger;
    }

    /// Puts an entry whose key is not in the map yet into its slot (no growing).
    fn place(&mut self, key: Key, value: V) {
        let at = self.find(key.id);
        self.slots[at] = (key.id, value);
        self.keys[at] = Some(key);
        self.len += 1;
    }

    pub(crate) fn iter(&self) -> impl Iterator<Item = (&Key, &V)> {
        self.keys
            .iter()
            .zip(self.slots.iter())
            .filter_map(|(key, (_, value))| Some((key.as_ref()?, value)))
    }

    pub(crate) fn iter_mut(&mut self) -> impl Iterator<Item = (&Key, &mut V)> {
        self.keys
            .iter()
            .zip(self.slots.iter_mut())
            .filter_map(|(key, (_, value))| Some((key.as_ref()?, value)))
    }

    pub(crate) fn values_mut(&mut self) -> impl Iterator<Item = &mut V> {
        self.iter_mut().map(|(_, value)| value)
    }

    /// Keeps the entries `keep` says yes to (it may change their values); each entry is
    /// offered once.
    pub(crate) fn retain(&mut self, mut keep: impl FnMut(&Key, &mut V) -> bool) {
        let mut removed = 0;
        for (key, slot) in self.keys.iter_mut().zip(self.slots.iter_mut()) {
            if let Some(k) = key {
                if !keep(k, &mut slot.1) {
                    *key = None;
                    *slot = (Id::EMPTY, V::default());
                    removed += 1;
                }
            }
        }
        if removed > 0 {
            // A hole would cut the probe sequences that pass over it: put the survivors
            // back into a fresh table of the same size.
            let slots = self.slots.len();
            let old = std::mem::replace(self, IdMap::with_capacity(slots * 3 / 4 - 1));
            for (key, value) in old {
                self.place(key, value);
            }
        }
    }

    /// Removes every entry, keeping the table's size.
    pub(crate) fn clear(&mut self) {
        self.slots
            .iter_mut()
            .for_each(|slot| *slot = (Id::EMPTY, V::default()));
        self.keys.iter_mut().for_each(|key| *key = None);
        self.len = 0;
    }
}

impl<V> IntoIterator for IdMap<V> {
    type Item = (Key, V);
    type IntoIter = std::iter::FilterMap<
        std::iter::Zip<std::vec::IntoIter<Option<Key>>, std::vec::IntoIter<(Id, V)>>,
        fn((Option<Key>, (Id, V))) -> Option<(Key, V)>,
    >;
    fn into_iter(self) -> Self::IntoIter {
        self.keys
            .into_vec()
            .into_iter()
            .zip(self.slots.into_vec())
            .filter_map(|(key, (_, value))| Some((key?, value)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    /// A small deterministic generator (xorshift), so a failure replays.
    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }
    }

    fn contents(map: &IdMap<i64>) -> HashMap<String, i64> {
        map.iter().map(|(k, v)| (k.to_string(), *v)).collect()
    }

    #[test]
    fn behaves_as_a_hash_map_through_growth_retain_and_clear() {
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        let mut map: IdMap<i64> = IdMap::with_capacity(0);
        let mut model: HashMap<String, i64> = HashMap::new();
        for round in 0..40 {
            for _ in 0..500 {
                let name = format!("key.{}", rng.next() % 3000);
                let add = (rng.next() % 100) as i64;
                map.prefetch(Id::of(&name));
                *map.get_or_insert_with(Id::of(&name), &name, || 0) += add;
                *model.entry(name).or_insert(0) += add;
            }
            assert_eq!(map.len(), model.len());
            assert_eq!(contents(&map), model, "round {round}");
            for (name, value) in &model {
                assert_eq!(map.get_mut(Id::of(name)).copied(), Some(*value));
            }
            assert!(map.get_mut(Id::of("never.seen")).is_none());
            if round % 7 == 6 {
                let cut = (rng.next() % 100) as i64;
                map.retain(|_, v| {
                    *v += 1;
                    *v % 100 >= cut
                });
                model.retain(|_, v| {
                    *v += 1;
                    *v % 100 >= cut
                });
                assert_eq!(contents(&map), model, "after retain in round {round}");
                for name in model.keys() {
                    assert!(map.get_mut(Id::of(name)).is_some(), "{name} lost by retain");
                }
            }
            if round == 20 {
                let slots = map.slots.len();
                map.clear();
                model.clear();
                assert!(map.is_empty());
                assert_eq!(map.slots.len(), slots);
            }
            assert!(4 * map.len() <= 3 * map.slots.len());
        }
        let moved: HashMap<String, i64> =
            map.into_iter().map(|(k, v)| (k.to_string(), v)).collect();
        assert_eq!(moved, model);
    }

    #[test]
    fn entry_moves_a_key_in_once() {
        let mut map: IdMap<f64> = IdMap::default();
        *map.entry(Key::new("a"), || 0.0) += 1.5;
        *map.entry(Key::new("a"), || 0.0) += 1.5;
        *map.entry(Key::new("b"), || 10.0) += 1.0;
        assert_eq!(map.len(), 2);
        assert_eq!(map.get_mut(Id::of("a")).copied(), Some(3.0));
        assert_eq!(map.get_mut(Id::of("b")).copied(), Some(11.0));
        map.values_mut().for_each(|v| *v = 0.0);
        assert!(map.iter().all(|(_, v)| *v == 0.0));
    }

    #[test]
    fn identities_differ_by_text_and_repeat_for_the_same_text() {
        assert_eq!(Id::of("a.b"), Id::of("a.b"));
        assert_ne!(Id::of("a.b"), Id::of("a.c"));
        assert_ne!(Id::of(""), Id::of(" "));
    }
}
