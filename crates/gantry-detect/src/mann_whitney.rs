//! The one-sided Mann–Whitney U test: does the "after" group tend to lie below (or above)
//! the "before" group?
//!
//! Pool both groups (sizes `n₁` before, `n₂` after, `N = n₁ + n₂`) and rank them; tied values
//! share their mid-rank (the mean of the positions they occupy). With `R₂` the rank sum of
//! the after group,
//!
//! ```text
//! U = R₂ − n₂(n₂ + 1)/2  =  #{(i, j): after_j > before_i} + ½·#{(i, j): after_j = before_i}
//! ```
//!
//! so `U` runs from 0 (every after value below every before value) to `n₁n₂`.
//! [`Alternative::Less`] gives `p = P(U ≤ u)`, [`Alternative::Greater`] `p = P(U ≥ u)`, under
//! the null hypothesis that all `C(N, n₂)` ways to label `n₂` of the pooled values "after" are
//! equally likely.
//!
//! **Exact distribution** when the smaller group has fewer than [`EXACT_BELOW`] (20) values
//! and the larger at most [`EXACT_MAX`] (50). Mid-ranks are doubled so they are integers
//! (`2·mid-rank = first position + last position`), and the rank sums of all `C(N, m)`
//! subsets of the smaller group's size `m` are counted by dynamic programming:
//! `count[j][s]` = subsets of `j` of the values seen so far with doubled sum `s`, updated
//! value by value with `count[j][s] += count[j−1][s − rank]`. That is the permutation
//! distribution conditional on the ties actually present, so it is exact with ties too.
//! Only sums on the side of the tail are kept (`s ≤` the observed sum, or the mirror image
//! for the other tail, whichever is shorter), so the cost is
//! `O(N · m · S)` additions with `S ≤ m·N` the width of the counted tail: below
//! about 2·10⁶ within the caps. Without ties the same distribution has a closed form, the
//! Gaussian binomial coefficient `Σᵤ c(u)·qᵘ = Π_{i=1..m} (1 − q^(N−m+i)) / (1 − qⁱ)`, which
//! costs `O(m · u)`; it is used when no value is tied (the usual case for rates) and is
//! checked against the general count in the tests. Counts are exact integers (at most
//! `C(69, 19) ≈ 4.6·10¹⁶` within the caps).
//!
//! **Normal approximation** otherwise, with the tie correction and a continuity correction
//! of ½:
//!
//! ```text
//! μ = n₁n₂/2,   σ² = n₁n₂/12 · ((N + 1) − Σ(t³ − t) / (N(N − 1)))   (t: size of each tie group)
//! Less:    p = Φ((u + ½ − μ) / σ)        Greater:  p = 1 − Φ((u − ½ − μ) / σ)
//! ```
//!
//! When every value is tied (`σ = 0`) the test has nothing to say and `p = 1`.

use serde::{Deserialize, Serialize};

use crate::normal;

/// The smaller group must have fewer values than this for the exact distribution.
pub const EXACT_BELOW: usize = 20;

/// The larger group may have at most this many values for the exact distribution; beyond
/// it the dynamic programme grows with the square of the pooled size and the normal
/// approximation is used.
pub const EXACT_MAX: usize = 50;

/// Which way the after group is suspected to have moved.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Alternative {
    /// After tends to be smaller than before.
    Less,
    /// After tends to be larger than before.
    Greater,
}

/// The result of [`mann_whitney`].
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct MannWhitney {
    /// `U` of the after group (a multiple of ½ when values tie).
    pub u: f64,
    /// The one-sided p-value for the alternative asked.
    pub p_value: f64,
    /// Whether `p_value` comes from the exact permutation distribution (else the normal
    /// approximation).
    pub exact: bool,
}

/// Whether groups of these sizes get the exact distribution.
pub(crate) fn exact_applies(n1: usize, n2: usize) -> bool {
    n1.min(n2) < EXACT_BELOW && n1.max(n2) <= EXACT_MAX
}

/// Tests whether `after` lies below ([`Alternative::Less`]) or above
/// ([`Alternative::Greater`]) `before`. `None` when a group is empty or holds a value that
/// is not finite (drop missing values first: [`crate::series::present`]).
pub fn mann_whitney(
    before: &[f64],
    after: &[f64],
    alternative: Alternative,
) -> Option<MannWhitney> {
    if before.is_empty() || after.is_empty() {
        return None;
    }
    if !before.iter().chain(after).all(|v| v.is_finite()) {
        return None;
    }
    let (n1, n2) = (before.len(), after.len());
    let ranks = Ranks::of(before, after);
    let after_doubled_sum: u64 = ranks.doubled[n1..].iter().sum();
    // U = R₂ − n₂(n₂+1)/2, kept doubled to stay an integer: 2U = 2R₂ − n₂(n₂+1).
    let doubled_u = after_doubled_sum - (n2 * (n2 + 1)) as u64;
    let u = doubled_u as f64 / 2.0;
    if !exact_applies(n1, n2) {
        return Some(MannWhitney {
            u,
            p_value: normal_p_value(n1, n2, u, ranks.tie_sum, alternative),
            exact: false,
        });
    }
    let p_value = if ranks.tie_sum == 0.0 {
        // No ties: U is a whole number.
        let u = (doubled_u / 2) as usize;
        match alternative {
            Alternative::Less => untied_cdf(n1, n2, u),
            // U is symmetric about n₁n₂/2: P(U ≥ u) = P(U ≤ n₁n₂ − u).
            Alternative::Greater => untied_cdf(n1, n2, n1 * n2 - u),
        }
    } else {
        tied_p_value(&ranks.doubled, n1, after_doubled_sum, alternative)
    };
    Some(MannWhitney {
        u,
        p_value,
        exact: true,
    })
}

/// Pooled mid-ranks, doubled: before's values first, then after's.
struct Ranks {
    doubled: Vec<u64>,
    /// Σ (t³ − t) over the groups of `t` equal values; 0 without ties.
    tie_sum: f64,
}

impl Ranks {
    fn of(before: &[f64], after: &[f64]) -> Ranks {
        let pooled: Vec<f64> = before.iter().chain(after).copied().collect();
        let mut order: Vec<usize> = (0..pooled.len()).collect();
        order.sort_by(|&a, &b| pooled[a].total_cmp(&pooled[b]));
        let mut doubled = vec![0; pooled.len()];
        let mut tie_sum = 0.0;
        let mut start = 0;
        while start < order.len() {
            // `==`, not `total_cmp`, decides ties, so −0 and +0 (adjacent once sorted) tie.
            let value = pooled[order[start]];
            let end = start
                + order[start..]
                    .iter()
                    .take_while(|&&i| pooled[i] == value)
                    .count();
            // Positions start+1 ..= end (1-based) share the mid-rank (start + 1 + end) / 2.
            let rank = (start + 1 + end) as u64;
            for &i in &order[start..end] {
                doubled[i] = rank;
            }
            let tied = (end - start) as f64;
            tie_sum += tied * tied * tied - tied;
            start = end;
        }
        Ranks { doubled, tie_sum }
    }
}

fn normal_p_value(n1: usize, n2: usize, u: f64, tie_sum: f64, alternative: Alternative) -> f64 {
    let (n1, n2) = (n1 as f64, n2 as f64);
    let n = n1 + n2;
    let mean = n1 * n2 / 2.0;
    let variance = n1 * n2 / 12.0 * ((n + 1.0) - tie_sum / (n * (n - 1.0)));
    if variance <= 0.0 {
        return 1.0;
    }
    let sd = variance.sqrt();
    let p = match alternative {
        Alternative::Less => normal::upper_tail((mean - u - 0.5) / sd),
        Alternative::Greater => normal::upper_tail((u - 0.5 - mean) / sd),
    };
    p.min(1.0)
}

/// `P(U ≤ u)` without ties, for group sizes `n1`, `n2`.
fn untied_cdf(n1: usize, n2: usize, u: usize) -> f64 {
    let max = n1 * n2;
    if u >= max {
        return 1.0;
    }
    let total = binomial(n1 + n2, n1.min(n2)) as f64;
    if u <= max / 2 {
        untied_counts(n1, n2, u).iter().sum::<i64>() as f64 / total
    } else {
        // P(U ≤ u) = 1 − P(U ≥ u + 1) = 1 − P(U ≤ max − u − 1): the shorter sum.
        let above = untied_counts(n1, n2, max - u - 1).iter().sum::<i64>() as f64;
        1.0 - above / total
    }
}

/// `c(0), …, c(max_u)`: how many of the `C(n1 + n2, n1)` labellings give each value of the
/// untied `U`, the coefficients of the Gaussian binomial coefficient, built factor by factor:
/// `[n+i choose i]_q = [n+i−1 choose i−1]_q · (1 − q^(n+i)) / (1 − qⁱ)`, truncated at
/// `max_u`. Multiplying by `1 − qᵃ` is `c(d) −= c(d − a)` from the top; dividing by `1 − qⁱ`
/// is `c(d) += c(d − i)` from the bottom. `O(min(n1, n2) · max_u)`.
pub(crate) fn untied_counts(n1: usize, n2: usize, max_u: usize) -> Vec<i64> {
    let (m, n) = (n1.min(n2), n1.max(n2));
    let mut counts = vec![0_i64; max_u + 1];
    counts[0] = 1;
    for i in 1..=m {
        let a = n + i;
        for d in (a..=max_u).rev() {
            counts[d] -= counts[d - a];
        }
        for d in i..=max_u {
            counts[d] += counts[d - i];
        }
    }
    counts
}

/// The exact one-sided p-value with ties, from the doubled mid-ranks (before's `n1` first).
fn tied_p_value(doubled: &[u64], n1: usize, after_sum: u64, alternative: Alternative) -> f64 {
    let n2 = doubled.len() - n1;
    let total_sum: u64 = doubled.iter().sum();
    // Count subsets of the smaller group's size; the before group's sum is the rest.
    let (m, observed, alternative) = if n2 <= n1 {
        (n2, after_sum, alternative)
    } else {
        let flipped = match alternative {
            Alternative::Less => Alternative::Greater,
            Alternative::Greater => Alternative::Less,
        };
        (n1, total_sum - after_sum, flipped)
    };
    let total = binomial(doubled.len(), m);
    let count = match alternative {
        Alternative::Less => subsets_with_sum_at_most(doubled, m, observed),
        // P(W ≥ w) = 1 − P(W ≤ w − 1).
        Alternative::Greater => match observed.checked_sub(1) {
            Some(below) => total - subsets_with_sum_at_most(doubled, m, below),
            None => total,
        },
    };
    count as f64 / total as f64
}

/// How many of the size-`m` subsets of `scores` have a sum of at most `limit`.
pub(crate) fn subsets_with_sum_at_most(scores: &[u64], m: usize, limit: u64) -> u64 {
    let total = binomial(scores.len(), m);
    let (Some(&low), Some(&high)) = (scores.iter().min(), scores.iter().max()) else {
        return total;
    };
    let m64 = m as u64;
    if limit < m64 * low {
        return 0;
    }
    if limit >= m64 * high {
        return total;
    }
    // Count the shorter side: sums ≤ limit directly (scores shifted down by their minimum),
    // or sums ≥ limit + 1, which are the mirrored scores (high − score) summing to at most
    // m·high − limit − 1.
    let direct = limit - m64 * low;
    let mirrored = m64 * high - limit - 1;
    if direct <= mirrored {
        let shifted: Vec<u64> = scores.iter().map(|s| s - low).collect();
        count_subsets(&shifted, m, direct)
    } else {
        let shifted: Vec<u64> = scores.iter().map(|s| high - s).collect();
        total - count_subsets(&shifted, m, mirrored)
    }
}

/// Size-`m` subsets of non-negative `scores` with a sum of at most `limit`, by dynamic
/// programming over (subset size `j`, sum `s`): `count[j][s] += count[j−1][s − score]`,
/// one score at a time. `limit` is small here (the callers keep it below `m · 2N`).
///
/// Scores go in increasing order, so only a band of each row can still matter: row `j`
/// holds no sum below the `j` smallest scores, and none above `limit` minus the `m − j`
/// smallest scores still to come (any more could not finish within the limit). That band
/// only narrows as scores go by, so cells outside it are never read again.
fn count_subsets(scores: &[u64], m: usize, limit: u64) -> u64 {
    // No subset sums to more than all the scores: a larger limit counts the same.
    let limit = usize::try_from(limit.min(scores.iter().sum())).unwrap_or(usize::MAX - 1);
    // A score above the limit is in no subset that counts.
    let mut usable: Vec<usize> = scores
        .iter()
        .filter_map(|&s| usize::try_from(s).ok().filter(|&s| s <= limit))
        .collect();
    if usable.len() < m {
        return 0;
    }
    if m == 0 {
        return 1;
    }
    usable.sort_unstable();
    // prefix[i]: the sum of the i smallest scores.
    let prefix: Vec<usize> = std::iter::once(0)
        .chain(usable.iter().scan(0, |sum, &s| {
            *sum += s;
            Some(*sum)
        }))
        .collect();
    let width = limit + 1;
    let mut table = vec![0_u64; (m + 1) * width];
    table[0] = 1;
    for (seen, &score) in usable.iter().enumerate() {
        let done = seen + 1;
        let left = usable.len() - done;
        for j in (m.saturating_sub(left).max(1)..=m.min(done)).rev() {
            let still_needed = prefix[done + m - j] - prefix[done];
            let Some(high) = limit.checked_sub(still_needed) else {
                continue;
            };
            let low = prefix[j - 1] + score;
            if high < low {
                continue;
            }
            let (smaller, rest) = table.split_at_mut(j * width);
            let previous = &smaller[(j - 1) * width + low - score..=(j - 1) * width + high - score];
            for (into, from) in rest[low..=high].iter_mut().zip(previous) {
                *into += *from;
            }
        }
    }
    table[m * width..].iter().sum()
}

/// `C(n, k)`; callers stay within the exact caps, where it fits in 64 bits.
pub(crate) fn binomial(n: usize, k: usize) -> u64 {
    if k > n {
        return 0;
    }
    let k = k.min(n - k);
    let mut value: u128 = 1;
    for i in 0..k {
        value = value * (n - i) as u128 / (i + 1) as u128;
    }
    u64::try_from(value).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use Alternative::{Greater, Less};

    /// (before, after, alternative, (U, p-value, exact))
    type Case<'a> = (&'a [f64], &'a [f64], Alternative, (f64, f64, bool));

    fn check(before: &[f64], after: &[f64], alternative: Alternative, expect: (f64, f64, bool)) {
        let got = mann_whitney(before, after, alternative).expect("valid groups");
        let (u, p_value, exact) = expect;
        assert_eq!(got.u, u, "U of {before:?} vs {after:?}");
        assert_eq!(got.exact, exact, "exactness of {before:?} vs {after:?}");
        assert!(
            (got.p_value - p_value).abs() <= 1e-12 * p_value.max(1e-300),
            "{alternative:?} p of {before:?} vs {after:?}: got {}, expected {p_value}",
            got.p_value
        );
    }

    #[test]
    fn exact_without_ties() {
        let cases: &[Case] = &[
            // Complete separation, 3 vs 3: 1 labelling of C(6, 3) = 20.
            (
                &[1.0, 2.0, 3.0],
                &[4.0, 5.0, 6.0],
                Greater,
                (9.0, 1.0 / 20.0, true),
            ),
            (&[1.0, 2.0, 3.0], &[4.0, 5.0, 6.0], Less, (9.0, 1.0, true)),
            (
                &[4.0, 5.0, 6.0],
                &[1.0, 2.0, 3.0],
                Less,
                (0.0, 1.0 / 20.0, true),
            ),
            // 2 vs 2 can do no better than 1/6.
            (&[3.0, 4.0], &[1.0, 2.0], Less, (0.0, 1.0 / 6.0, true)),
            // SciPy's documented example (males after, females before): U = 17, 7 of
            // C(9, 4) = 126 labellings at least as extreme.
            (
                &[20.0, 11.0, 17.0, 12.0],
                &[19.0, 22.0, 16.0, 29.0, 24.0],
                Greater,
                (17.0, 7.0 / 126.0, true),
            ),
            // Interleaved 4 vs 4, U = 6: P(U ≤ 6) = 24/70 (enumerated).
            (
                &[2.0, 4.0, 6.0, 8.0],
                &[1.0, 3.0, 5.0, 7.0],
                Less,
                (6.0, 24.0 / 70.0, true),
            ),
            // A single after value above all of 19: P(U ≥ 19) = 1/20.
            (
                &(1..=19).map(f64::from).collect::<Vec<_>>(),
                &[100.0],
                Greater,
                (19.0, 1.0 / 20.0, true),
            ),
        ];
        for &(before, after, alternative, expect) in cases {
            check(before, after, alternative, expect);
        }
    }

    #[test]
    fn exact_with_ties() {
        // p-values counted by enumerating every labelling with Python's fractions.
        let cases: &[Case] = &[
            // All tied: U = n₁n₂/2 whatever the labels.
            (&[5.0, 5.0, 5.0], &[5.0, 5.0], Less, (3.0, 1.0, true)),
            (&[5.0, 5.0, 5.0], &[5.0, 5.0], Greater, (3.0, 1.0, true)),
            (
                &[1.0, 1.0, 2.0, 2.0, 3.0],
                &[2.0, 3.0, 3.0, 4.0, 4.0],
                Greater,
                (22.0, 5.0 / 126.0, true),
            ),
            (
                &[3.0, 4.0, 3.0, 5.0, 4.0, 3.0, 4.0, 4.0],
                &[1.0, 2.0, 1.0, 1.0, 3.0, 2.0],
                Less,
                (1.5, 4.0 / 3003.0, true),
            ),
        ];
        for &(before, after, alternative, expect) in cases {
            check(before, after, alternative, expect);
        }
    }

    #[test]
    fn normal_approximation() {
        // 20 vs 20, after = before + 7.5.
        let before: Vec<f64> = (0..20).map(f64::from).collect();
        let after: Vec<f64> = (0..20).map(|i| f64::from(i) + 7.5).collect();
        // No ties; after_j < before_i for the 78 pairs with i − j ≥ 8, so U = 400 − 78.
        let u = 322.0;
        let sd = (400.0_f64 * 41.0 / 12.0).sqrt();
        let p = normal::upper_tail((u - 0.5 - 200.0) / sd);
        check(&before, &after, Greater, (u, p, false));
        check(
            &before,
            &after,
            Less,
            (u, 1.0 - normal::upper_tail((u + 0.5 - 200.0) / sd), false),
        );

        // SciPy's example again through the approximation: its documented asymptotic
        // two-sided p is 0.11134688653314041, so one-sided is half.
        let got = normal_p_value(4, 5, 17.0, 0.0, Greater);
        assert!(
            (got - 0.111_346_886_533_140_41 / 2.0).abs() < 1e-15,
            "{got}"
        );

        // Ties shrink σ: 25 vs 25 of small integers, checked against the formula written out.
        let before: Vec<f64> = (0..25).map(|i| f64::from(i % 5)).collect();
        let after: Vec<f64> = (0..25).map(|i| f64::from(i % 5 + 1)).collect();
        // Values 0..=5; tie groups: 0:5, 1:10, 2:10, 3:10, 4:10, 5:5.
        let tie_sum: f64 = 2.0 * (125.0 - 5.0) + 4.0 * (1000.0 - 10.0);
        let got = mann_whitney(&before, &after, Greater).expect("valid");
        // Each of the five after values v (v = 1..=5) beats the 5v before values below it and
        // ties the five equal to it when v ≤ 4: U = 5·Σᵥ (5v + 5/2·[v ≤ 4]) = 5·(75 + 10).
        assert_eq!(got.u, 425.0);
        let variance = 625.0 / 12.0 * (51.0 - tie_sum / (50.0 * 49.0));
        let p = normal::upper_tail((got.u - 0.5 - 312.5) / variance.sqrt());
        assert!(!got.exact);
        assert!((got.p_value - p).abs() < 1e-15, "{} vs {p}", got.p_value);
    }

    #[test]
    fn exact_or_normal_by_size() {
        let cases = [
            ((19, 19), true),
            ((19, 50), true),
            ((3, 50), true),
            ((20, 20), false),
            ((19, 51), false),
            ((2, 200), false),
            ((50, 50), false),
        ];
        for ((n1, n2), exact) in cases {
            let before: Vec<f64> = (0..n1).map(|i| i as f64).collect();
            let after: Vec<f64> = (0..n2).map(|i| i as f64 + 0.5).collect();
            let got = mann_whitney(&before, &after, Greater).expect("valid");
            assert_eq!(got.exact, exact, "{n1} vs {n2}");
            assert!(got.p_value > 0.0 && got.p_value <= 1.0);
        }
    }

    #[test]
    fn refuses_empty_and_non_finite_groups() {
        let cases: &[(&[f64], &[f64])] = &[
            (&[], &[1.0]),
            (&[1.0], &[]),
            (&[1.0, f64::NAN], &[2.0]),
            (&[1.0], &[f64::INFINITY]),
        ];
        for &(before, after) in cases {
            assert_eq!(
                mann_whitney(before, after, Less),
                None,
                "{before:?} {after:?}"
            );
        }
    }

    /// Brute force: every way to pick which pooled positions are "after", with the same
    /// doubled mid-ranks, counted directly.
    fn enumerated_p(before: &[f64], after: &[f64], alternative: Alternative) -> f64 {
        let ranks = Ranks::of(before, after);
        let n = ranks.doubled.len();
        let observed: u64 = ranks.doubled[before.len()..].iter().sum();
        let (mut hits, mut all) = (0_u64, 0_u64);
        for mask in 0_u32..(1 << n) {
            if mask.count_ones() as usize != after.len() {
                continue;
            }
            let sum: u64 = (0..n)
                .filter(|i| mask & (1 << i) != 0)
                .map(|i| ranks.doubled[i])
                .sum();
            all += 1;
            let extreme = match alternative {
                Less => sum <= observed,
                Greater => sum >= observed,
            };
            hits += u64::from(extreme);
        }
        hits as f64 / all as f64
    }

    /// A small deterministic generator (SplitMix64) for test data.
    struct SplitMix(u64);

    impl SplitMix {
        fn next(&mut self) -> u64 {
            self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = self.0;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^ (z >> 31)
        }

        fn below(&mut self, n: u64) -> u64 {
            self.next() % n
        }
    }

    #[test]
    fn exact_agrees_with_enumeration() {
        let mut rng = SplitMix(7);
        for case in 0..400 {
            let n1 = 1 + rng.below(8) as usize;
            let n2 = 1 + rng.below(7) as usize;
            // Few distinct values for heavy ties in half the cases, many in the rest.
            let spread = if case % 2 == 0 { 4 } else { 1000 };
            let before: Vec<f64> = (0..n1).map(|_| rng.below(spread) as f64).collect();
            let after: Vec<f64> = (0..n2).map(|_| rng.below(spread) as f64).collect();
            for alternative in [Less, Greater] {
                let got = mann_whitney(&before, &after, alternative).expect("valid");
                let expected = enumerated_p(&before, &after, alternative);
                assert!(
                    (got.p_value - expected).abs() < 1e-12,
                    "{alternative:?} {before:?} vs {after:?}: {} vs {expected}",
                    got.p_value
                );
            }
        }
    }

    #[test]
    fn untied_closed_form_agrees_with_subset_counts() {
        for (n1, n2, stride) in [(1, 1, 1), (3, 5, 1), (7, 4, 1), (19, 19, 17), (19, 50, 97)] {
            let max = n1 * n2;
            let counts = untied_counts(n1, n2, max);
            let ranks: Vec<u64> = (1..=(n1 + n2) as u64).map(|r| 2 * r).collect();
            let m = n1.min(n2);
            // U = W − m(m+1)/2 for the group of size m, in doubled terms 2U = 2W − m(m+1).
            let mut cumulative = 0;
            for (u, count) in counts.iter().enumerate() {
                cumulative += count;
                if u % stride != 0 {
                    continue;
                }
                let doubled_limit = (2 * u + m * (m + 1)) as u64;
                assert_eq!(
                    subsets_with_sum_at_most(&ranks, m, doubled_limit),
                    cumulative as u64,
                    "{n1} vs {n2}, U ≤ {u}"
                );
            }
            assert_eq!(cumulative as u64, binomial(n1 + n2, m));
        }
    }
}
