//! Seeded draws for the corpus: uniform, log-uniform, normal, log-normal and Poisson, on
//! `rand`'s `StdRng` (ChaCha12 in rand 0.8, so a seed gives the same corpus everywhere).
//! `rand_distr` is not a dependency, so the two distributions that need more than a
//! uniform are written here:
//!
//! - **normal**: Box–Muller, `√(−2 ln u₁) · cos(2π u₂)`;
//! - **Poisson**: Knuth's product of uniforms below a mean of 30 (`O(λ)` uniforms), and
//!   Hörmann's PTRS transformed rejection above (W. Hörmann, "The transformed rejection
//!   method for generating Poisson random variables", 1993; about 1.2 uniforms a draw at
//!   any mean), both exact.

use std::f64::consts::PI;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// A seeded source of the corpus' random draws.
pub struct Draw(StdRng);

impl Draw {
    pub fn new(seed: u64) -> Draw {
        Draw(StdRng::seed_from_u64(seed))
    }

    /// Uniform in [0, 1).
    pub fn uniform(&mut self) -> f64 {
        self.0.gen::<f64>()
    }

    /// Uniform in (0, 1]: safe under a logarithm.
    fn open_uniform(&mut self) -> f64 {
        1.0 - self.uniform()
    }

    /// Uniform in [low, high).
    pub fn between(&mut self, low: f64, high: f64) -> f64 {
        low + (high - low) * self.uniform()
    }

    /// Log-uniform in [low, high).
    pub fn log_between(&mut self, low: f64, high: f64) -> f64 {
        self.between(low.ln(), high.ln()).exp()
    }

    /// A whole number in [0, n).
    pub fn below(&mut self, n: usize) -> usize {
        self.0.gen_range(0..n.max(1))
    }

    pub fn chance(&mut self, p: f64) -> bool {
        self.uniform() < p
    }

    /// Standard normal.
    pub fn normal(&mut self) -> f64 {
        let (u1, u2) = (self.open_uniform(), self.uniform());
        (-2.0 * u1.ln()).sqrt() * (2.0 * PI * u2).cos()
    }

    /// Log-normal with the given mean and coefficient of variation.
    pub fn log_normal(&mut self, mean: f64, cv: f64) -> f64 {
        let sigma2 = (1.0 + cv * cv).ln();
        mean * (sigma2.sqrt() * self.normal() - sigma2 / 2.0).exp()
    }

    /// Poisson with mean `lambda` (0 for a mean that is not positive).
    pub fn poisson(&mut self, lambda: f64) -> u64 {
        if lambda.is_nan() || lambda <= 0.0 {
            return 0;
        }
        if lambda < 30.0 {
            let limit = (-lambda).exp();
            let (mut k, mut product) = (0, self.open_uniform());
            while product > limit {
                k += 1;
                product *= self.open_uniform();
            }
            return k;
        }
        // PTRS, as numpy's legacy generator implements it.
        let slam = lambda.sqrt();
        let loglam = lambda.ln();
        let b = 0.931 + 2.53 * slam;
        let a = -0.059 + 0.02483 * b;
        let inv_alpha = 1.1239 + 1.1328 / (b - 3.4);
        let vr = 0.9277 - 3.6224 / (b - 2.0);
        loop {
            let u = self.uniform() - 0.5;
            let v = self.uniform();
            let us = 0.5 - u.abs();
            let k = ((2.0 * a / us + b) * u + lambda + 0.43).floor();
            if us >= 0.07 && v <= vr {
                return k as u64;
            }
            if k < 0.0 || (us < 0.013 && v > us) {
                continue;
            }
            if v.ln() + inv_alpha.ln() - (a / (us * us) + b).ln()
                <= -lambda + k * loglam - log_factorial(k)
            {
                return k as u64;
            }
        }
    }
}

/// `ln k!`: summed below 20, Stirling's series above (error below 10⁻¹³ there).
fn log_factorial(k: f64) -> f64 {
    if k < 20.0 {
        return (2..=k as u64).map(|i| (i as f64).ln()).sum();
    }
    let x = k + 1.0;
    (x - 0.5) * x.ln() - x + 0.5 * (2.0 * PI).ln() + 1.0 / (12.0 * x) - 1.0 / (360.0 * x.powi(3))
        + 1.0 / (1260.0 * x.powi(5))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn moments(samples: &[f64]) -> (f64, f64) {
        let n = samples.len() as f64;
        let mean = samples.iter().sum::<f64>() / n;
        let var = samples.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1.0);
        (mean, var)
    }

    #[test]
    fn poisson_moments() {
        // (mean, draws): Knuth below 30, PTRS above; mean and variance both λ.
        for (lambda, n) in [
            (0.5, 200_000),
            (5.0, 200_000),
            (29.0, 100_000),
            (30.0, 100_000),
            (400.0, 100_000),
            (8000.0, 100_000),
        ] {
            let mut draw = Draw::new(7);
            let samples: Vec<f64> = (0..n).map(|_| draw.poisson(lambda) as f64).collect();
            let (mean, var) = moments(&samples);
            let se = (lambda / n as f64).sqrt();
            assert!((mean - lambda).abs() < 5.0 * se, "λ {lambda}: mean {mean}");
            assert!(
                (var / lambda - 1.0).abs() < 0.03,
                "λ {lambda}: variance {var}"
            );
        }
        assert_eq!(Draw::new(1).poisson(0.0), 0);
        assert_eq!(Draw::new(1).poisson(f64::NAN), 0);
    }

    #[test]
    fn poisson_probabilities() {
        // P(X = k) against the formula at a PTRS mean.
        let lambda: f64 = 50.0;
        let n = 400_000;
        let mut draw = Draw::new(3);
        let mut counts = vec![0_u32; 200];
        for _ in 0..n {
            counts[draw.poisson(lambda) as usize] += 1;
        }
        for k in [35_usize, 45, 50, 55, 65] {
            let p = (-lambda + k as f64 * lambda.ln() - log_factorial(k as f64)).exp();
            let got = f64::from(counts[k]) / n as f64;
            assert!(
                (got - p).abs() < 5.0 * (p / n as f64).sqrt(),
                "k {k}: {got} vs {p}"
            );
        }
    }

    #[test]
    fn log_factorials() {
        for k in [0_u64, 1, 5, 19, 20, 21, 100, 170] {
            let exact: f64 = (2..=k).map(|i| (i as f64).ln()).sum();
            assert!((log_factorial(k as f64) - exact).abs() < 1e-9, "{k}");
        }
    }

    #[test]
    fn normal_and_log_normal() {
        let mut draw = Draw::new(11);
        let normals: Vec<f64> = (0..200_000).map(|_| draw.normal()).collect();
        let (mean, var) = moments(&normals);
        assert!(
            mean.abs() < 0.01 && (var - 1.0).abs() < 0.01,
            "{mean} {var}"
        );
        let logs: Vec<f64> = (0..200_000).map(|_| draw.log_normal(20.0, 0.5)).collect();
        let (mean, var) = moments(&logs);
        assert!((mean / 20.0 - 1.0).abs() < 0.01, "{mean}");
        assert!((var.sqrt() / mean - 0.5).abs() < 0.02, "{var}");
        assert!(logs.iter().all(|&x| x > 0.0));
    }

    #[test]
    fn seeded() {
        let a: Vec<u64> = (0..5)
            .map({
                let mut d = Draw::new(9);
                move |_| d.poisson(100.0)
            })
            .collect();
        let b: Vec<u64> = (0..5)
            .map({
                let mut d = Draw::new(9);
                move |_| d.poisson(100.0)
            })
            .collect();
        assert_eq!(a, b);
        let mut d = Draw::new(5);
        for _ in 0..1000 {
            let x = d.log_between(0.5, 500.0);
            assert!((0.5..500.0).contains(&x));
        }
    }
}
