//! A tiny deterministic PRNG.
//!
//! Poisoning, splits and subsamples must pick the same rows on every platform and
//! backend (native, CUDA, wasm) so that runs are reproducible from a seed alone;
//! this module therefore implements xoshiro256** seeded by SplitMix64 instead of
//! depending on a generator whose stream might change between crate versions.

use std::collections::BTreeSet;

/// xoshiro256** generator: fast, small state, statistically strong for sampling.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rng {
    state: [u64; 4],
}

/// One SplitMix64 step; used to expand a 64-bit seed into well-mixed state words.
fn splitmix64(x: &mut u64) -> u64 {
    *x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *x;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

impl Rng {
    /// Creates a generator from `seed`; SplitMix64 seeding makes nearby seeds
    /// (0, 1, 2, ...) produce unrelated streams and never yields the all-zero state.
    pub fn new(seed: u64) -> Rng {
        let mut x = seed;
        Rng { state: [splitmix64(&mut x), splitmix64(&mut x), splitmix64(&mut x), splitmix64(&mut x)] }
    }

    /// Next 64 uniformly distributed bits.
    pub fn next_u64(&mut self) -> u64 {
        let s = &mut self.state;
        let result = s[1].wrapping_mul(5).rotate_left(7).wrapping_mul(9);
        let t = s[1] << 17;
        s[2] ^= s[0];
        s[3] ^= s[1];
        s[1] ^= s[2];
        s[0] ^= s[3];
        s[2] ^= t;
        s[3] = s[3].rotate_left(45);
        result
    }

    /// Uniform integer in `0..n` via multiply-shift (Lemire); the bias is below
    /// n / 2^64, negligible for any data set size.
    ///
    /// # Panics
    /// If `n == 0`: the range would be empty, which is a caller bug.
    pub fn below(&mut self, n: usize) -> usize {
        assert!(n > 0, "Rng::below called with an empty range");
        ((u128::from(self.next_u64()) * n as u128) >> 64) as usize
    }

    /// Uniform float in `[0, 1)` with 53 bits of precision.
    pub fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    /// Shuffles `items` in place (Fisher–Yates), every permutation equally likely.
    pub fn shuffle<T>(&mut self, items: &mut [T]) {
        for i in (1..items.len()).rev() {
            let j = self.below(i + 1);
            items.swap(i, j);
        }
    }

    /// `k` distinct indices from `0..n`, sorted ascending; `k` is capped at `n`.
    ///
    /// Uses Floyd's algorithm so the cost is O(k log k) rather than O(n): picking a
    /// few poisoned rows from a large training set stays cheap.
    pub fn sample_indices(&mut self, n: usize, k: usize) -> Vec<usize> {
        let k = k.min(n);
        let mut chosen = BTreeSet::new();
        for j in (n - k)..n {
            let t = self.below(j + 1);
            if !chosen.insert(t) {
                chosen.insert(j);
            }
        }
        chosen.into_iter().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_stream() {
        let mut a = Rng::new(42);
        let mut b = Rng::new(42);
        let xs: Vec<u64> = (0..100).map(|_| a.next_u64()).collect();
        let ys: Vec<u64> = (0..100).map(|_| b.next_u64()).collect();
        assert_eq!(xs, ys);
        let mut c = Rng::new(43);
        assert_ne!(xs[0], c.next_u64());
    }

    #[test]
    fn stream_is_pinned() {
        // Guards against accidental algorithm changes, which would silently change
        // every poisoned data set and split produced from a stored seed.
        // Reference values: the published SplitMix64 output for seed 0, and
        // xoshiro256** computed independently from the reference algorithm.
        assert_eq!(splitmix64(&mut 0), 0xE220_A839_7B1D_CDAF);
        let mut r = Rng::new(0);
        let xs: Vec<u64> = (0..3).map(|_| r.next_u64()).collect();
        assert_eq!(xs, [0x99EC_5F36_CB75_F2B4, 0xBF6E_1F78_4956_452A, 0x1A5F_849D_4933_E6E0]);
    }

    #[test]
    fn below_stays_in_range_and_covers_it() {
        let mut r = Rng::new(7);
        let mut seen = [false; 10];
        for _ in 0..1000 {
            let x = r.below(10);
            assert!(x < 10);
            seen[x] = true;
        }
        assert!(seen.iter().all(|&s| s));
        assert_eq!(r.below(1), 0);
    }

    #[test]
    fn next_f64_in_unit_interval() {
        let mut r = Rng::new(3);
        let xs: Vec<f64> = (0..10_000).map(|_| r.next_f64()).collect();
        assert!(xs.iter().all(|&x| (0.0..1.0).contains(&x)));
        let mean = xs.iter().sum::<f64>() / xs.len() as f64;
        assert!((mean - 0.5).abs() < 0.02, "mean {mean}");
    }

    #[test]
    fn shuffle_is_a_permutation() {
        let mut r = Rng::new(11);
        let mut v: Vec<usize> = (0..50).collect();
        r.shuffle(&mut v);
        assert_ne!(v, (0..50).collect::<Vec<_>>());
        let mut sorted = v.clone();
        sorted.sort_unstable();
        assert_eq!(sorted, (0..50).collect::<Vec<_>>());
        let mut empty: [u8; 0] = [];
        r.shuffle(&mut empty);
    }

    #[test]
    fn sample_indices_distinct_sorted_in_range() {
        let mut r = Rng::new(5);
        for (n, k) in [(10, 3), (10, 10), (10, 0), (100, 50), (5, 9), (0, 0)] {
            let s = r.sample_indices(n, k);
            assert_eq!(s.len(), k.min(n));
            assert!(s.windows(2).all(|w| w[0] < w[1]));
            assert!(s.iter().all(|&i| i < n));
        }
        assert_eq!(Rng::new(9).sample_indices(1000, 20), Rng::new(9).sample_indices(1000, 20));
    }
}
