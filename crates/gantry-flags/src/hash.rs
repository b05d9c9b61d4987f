//! Unleash's bucketing: `murmur3_x86_32("{group}:{value}", seed) % modulus + 1`, so the same
//! user lands in the same bucket in Gantry as in every Unleash SDK.

use std::io::Read;

/// Seed for the percentage of a rollout strategy (modulus 100).
pub(crate) const STRATEGY_SEED: u32 = 0;
/// Seed for choosing a variant (modulus the total weight). A different seed than the
/// rollout's keeps the first users let in from all landing on the first variant.
pub(crate) const VARIANT_SEED: u32 = 86_028_157;

/// Inputs up to this long are joined on the stack before hashing.
const STACK_INPUT: usize = 256;

/// The bucket, 1..=modulus, of `value` within `group`; 0 only when `modulus` is 0.
pub(crate) fn normalized(group: &str, value: &str, seed: u32, modulus: u32) -> u32 {
    if modulus == 0 {
        return 0;
    }
    let (group, value) = (group.as_bytes(), value.as_bytes());
    let len = group.len() + 1 + value.len();
    // Reading from memory cannot fail; 0 is an arbitrary but valid bucket source.
    let hash = if len <= STACK_INPUT {
        // One contiguous slice reads faster than chained readers, and the stack spares
        // an allocation.
        let mut buf = [0u8; STACK_INPUT];
        buf[..group.len()].copy_from_slice(group);
        buf[group.len()] = b':';
        buf[group.len() + 1..len].copy_from_slice(value);
        murmur3::murmur3_32(&mut &buf[..len], seed).unwrap_or(0)
    } else {
        let mut input = group.chain(&b":"[..]).chain(value);
        murmur3::murmur3_32(&mut input, seed).unwrap_or(0)
    };
    hash % modulus + 1
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Expected values from Python's `mmh3.hash(s, seed, signed=False)`, a separate
    /// implementation of the same function.
    const VECTORS: &[(&str, u32, u32)] = &[
        ("", 0, 4_002_661_964),
        ("a", 1_009_084_850, 1_778_238_603),
        ("ab", 2_613_040_991, 1_594_296_940),
        ("abc", 3_017_643_002, 212_112_276),
        ("abcd", 1_139_631_978, 2_679_851_658),
        (
            "Feature.flexibleRollout.10:174",
            3_067_997_709,
            2_124_289_155,
        ),
        ("AB12A:122", 1_062_108_722, 152_276_612),
        ("ø", 2_515_788_377, 463_504_490),
        ("日本", 3_302_619_458, 2_792_902_614),
        ("🦀", 2_913_307_308, 3_353_592_606),
        ("groupId:ø日本🦀", 3_049_742_606, 1_355_000_574),
        ("Feature.Variants.C:232", 4_004_105_589, 2_010_930_785),
    ];

    fn raw(text: &str, seed: u32) -> u32 {
        murmur3::murmur3_32(&mut text.as_bytes(), seed).unwrap_or(0)
    }

    #[test]
    fn murmur3_matches_a_reference_implementation() {
        for &(text, seed0, variant_seed) in VECTORS {
            assert_eq!(raw(text, STRATEGY_SEED), seed0, "{text:?} seed 0");
            assert_eq!(
                raw(text, VARIANT_SEED),
                variant_seed,
                "{text:?} variant seed"
            );
        }
    }

    #[test]
    fn chained_input_hashes_like_the_joined_string() {
        for &(text, seed0, variant_seed) in VECTORS {
            let Some((group, value)) = text.split_once(':') else {
                continue;
            };
            assert_eq!(
                normalized(group, value, STRATEGY_SEED, u32::MAX),
                seed0 % u32::MAX + 1
            );
            assert_eq!(
                normalized(group, value, VARIANT_SEED, 1000),
                variant_seed % 1000 + 1
            );
        }
    }

    #[test]
    fn inputs_too_long_for_the_stack_hash_the_same() {
        // "group:" + 200 × "ø" is 406 bytes; expected values from mmh3 as above.
        let value = "ø".repeat(200);
        assert_eq!(
            normalized("group", &value, STRATEGY_SEED, u32::MAX),
            590_454_760 + 1
        );
        assert_eq!(
            normalized("group", &value, VARIANT_SEED, u32::MAX),
            2_776_024_039 + 1
        );
    }

    #[test]
    fn buckets_stay_in_range() {
        let cases = [("g", "", 1), ("g", "x", 100), ("", "", 7), ("ø", "日本", 3)];
        for (group, value, modulus) in cases {
            let bucket = normalized(group, value, STRATEGY_SEED, modulus);
            assert!(
                (1..=modulus).contains(&bucket),
                "{group}:{value} -> {bucket}"
            );
        }
        assert_eq!(normalized("g", "x", STRATEGY_SEED, 0), 0);
    }
}
