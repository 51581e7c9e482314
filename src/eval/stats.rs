//! Paired significance tests and summaries for per-query metric differences.
//! Deterministic: a fixed-seed generator, so the same input gives the same p-value.

/// SplitMix64: small, fast, good enough for resampling (no dependency needed).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

const SEED: u64 = 0x5EC0_17D9_A55E_u64;
/// Resamples for the randomization test and the bootstrap.
pub const ROUNDS: usize = 10_000;

/// Two-sided paired randomization (sign-flip) test of mean(b - a) = 0. The p-value
/// counts the observed assignment, so it is never 0: (hits + 1) / (rounds + 1).
pub fn randomization_p(a: &[f64], b: &[f64], rounds: usize) -> f64 {
    let d: Vec<f64> = b.iter().zip(a).map(|(b, a)| b - a).collect();
    if d.is_empty() {
        return 1.0;
    }
    let observed = d.iter().sum::<f64>().abs();
    let mut rng = Rng(SEED);
    let mut hits = 0usize;
    for _ in 0..rounds {
        let mut s = 0.0;
        for x in &d {
            if rng.next() & 1 == 1 {
                s += x;
            } else {
                s -= x;
            }
        }
        // a tolerance so float noise on exact ties still counts as "as extreme"
        if s.abs() >= observed - 1e-12 {
            hits += 1;
        }
    }
    (hits + 1) as f64 / (rounds + 1) as f64
}

/// 95% percentile bootstrap interval of mean(b - a) over queries.
pub fn bootstrap_ci(a: &[f64], b: &[f64], rounds: usize) -> (f64, f64) {
    let d: Vec<f64> = b.iter().zip(a).map(|(b, a)| b - a).collect();
    if d.is_empty() {
        return (0.0, 0.0);
    }
    let mut rng = Rng(SEED ^ 1);
    let n = d.len();
    let mut means: Vec<f64> = (0..rounds)
        .map(|_| (0..n).map(|_| d[rng.below(n)]).sum::<f64>() / n as f64)
        .collect();
    means.sort_by(f64::total_cmp);
    (quantile(&means, 0.025), quantile(&means, 0.975))
}

/// Per-query comparison of b against a: queries where b is higher, equal, lower.
pub fn wins_ties_losses(a: &[f64], b: &[f64]) -> (usize, usize, usize) {
    let mut out = (0, 0, 0);
    for (a, b) in a.iter().zip(b) {
        if (b - a).abs() <= 1e-9 {
            out.1 += 1;
        } else if b > a {
            out.0 += 1;
        } else {
            out.2 += 1;
        }
    }
    out
}

/// Linear-interpolated quantile of sorted values (`q` in 0..=1); 0 when empty.
pub fn quantile(sorted: &[f64], q: f64) -> f64 {
    match sorted.len() {
        0 => 0.0,
        1 => sorted[0],
        n => {
            let pos = q.clamp(0.0, 1.0) * (n - 1) as f64;
            let lo = pos.floor() as usize;
            let hi = pos.ceil() as usize;
            sorted[lo] + (sorted[hi] - sorted[lo]) * (pos - lo as f64)
        }
    }
}

/// p50 and p95 of unsorted values.
pub fn p50_p95(values: &[f64]) -> (f64, f64) {
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    (quantile(&v, 0.5), quantile(&v, 0.95))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_by_hand() {
        let v = [1.0, 2.0, 3.0, 4.0, 5.0];
        assert_eq!(quantile(&v, 0.5), 3.0);
        assert_eq!(quantile(&v, 0.0), 1.0);
        assert_eq!(quantile(&v, 1.0), 5.0);
        assert!((quantile(&v, 0.95) - 4.8).abs() < 1e-12);
        assert_eq!(quantile(&[], 0.5), 0.0);
        assert_eq!(p50_p95(&[5.0, 1.0, 3.0]), (3.0, 4.8));
    }

    #[test]
    fn identical_systems_are_not_different() {
        let a = [0.1, 0.5, 0.9, 0.3];
        assert_eq!(randomization_p(&a, &a, 1000), 1.0);
        assert_eq!(bootstrap_ci(&a, &a, 1000), (0.0, 0.0));
        assert_eq!(wins_ties_losses(&a, &a), (0, 4, 0));
    }

    #[test]
    fn consistent_gain_is_significant() {
        // 30 queries, b better on every one: the sign-flip null gives the observed
        // sum only for the identity flips, p ≈ 1/(rounds+1) ... 2/2^30
        let a: Vec<f64> = (0..30).map(|i| f64::from(i) / 100.0).collect();
        let b: Vec<f64> = a.iter().map(|x| x + 0.1).collect();
        let p = randomization_p(&a, &b, 2000);
        assert!(p < 0.001, "{p}");
        let (lo, hi) = bootstrap_ci(&a, &b, 2000);
        assert!((lo - 0.1).abs() < 1e-9 && (hi - 0.1).abs() < 1e-9);
        assert_eq!(wins_ties_losses(&a, &b), (30, 0, 0));
    }

    #[test]
    fn exact_p_value_for_two_queries() {
        // d = (+1, -1): sums under sign flips are 0, 2, -2, 0 → |s| >= 0 always
        assert_eq!(randomization_p(&[0.0, 1.0], &[1.0, 0.0], 99), 1.0);
        // d = (+1, +1): |s| >= 2 in half the flips → p ≈ 0.5
        let p = randomization_p(&[0.0, 0.0], &[1.0, 1.0], 10_000);
        assert!((p - 0.5).abs() < 0.02, "{p}");
        // a mixed sample: the interval contains the mean difference
        let a = [0.2, 0.4, 0.1, 0.8, 0.5];
        let b = [0.3, 0.3, 0.4, 0.9, 0.5];
        let (lo, hi) = bootstrap_ci(&a, &b, 5000);
        let mean = 0.08;
        assert!(lo <= mean && mean <= hi && lo < hi, "{lo} {hi}");
        assert_eq!(wins_ties_losses(&a, &b), (3, 1, 1));
    }
}
