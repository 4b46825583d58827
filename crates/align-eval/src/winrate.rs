//! Pairwise win rate: how often model A's answer beats model B's on the same prompt.

use align_core::seed::rng;
use rand::Rng;
use serde::Serialize;

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct WinRate {
    pub n: usize,
    pub wins: usize,
    pub ties: usize,
    pub losses: usize,
    /// (wins + ties / 2) / n.
    pub rate: f64,
    /// 95% percentile-bootstrap interval of `rate` (1,000 resamples, seeded).
    pub ci_low: f64,
    pub ci_high: f64,
}

/// Win rate of A over B from per-prompt scores (a tie when |a - b| <= `tie_margin`).
pub fn win_rate(a: &[f64], b: &[f64], tie_margin: f64, seed: u64) -> WinRate {
    assert_eq!(a.len(), b.len(), "win_rate: score lists differ in length");
    let outcome: Vec<f64> = a
        .iter()
        .zip(b)
        .map(|(x, y)| if (x - y).abs() <= tie_margin { 0.5 } else if x > y { 1.0 } else { 0.0 })
        .collect();
    let n = outcome.len();
    let wins = outcome.iter().filter(|&&o| o == 1.0).count();
    let ties = outcome.iter().filter(|&&o| o == 0.5).count();
    let rate = if n == 0 { f64::NAN } else { outcome.iter().sum::<f64>() / n as f64 };
    let (ci_low, ci_high) = bootstrap_ci(&outcome, 1000, seed);
    WinRate { n, wins, ties, losses: n - wins - ties, rate, ci_low, ci_high }
}

/// 95% percentile bootstrap interval of the mean.
pub fn bootstrap_ci(xs: &[f64], resamples: usize, seed: u64) -> (f64, f64) {
    if xs.is_empty() {
        return (f64::NAN, f64::NAN);
    }
    let mut r = rng(seed);
    let mut means: Vec<f64> = (0..resamples)
        .map(|_| (0..xs.len()).map(|_| xs[r.random_range(0..xs.len())]).sum::<f64>() / xs.len() as f64)
        .collect();
    means.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let at = |q: f64| means[((q * resamples as f64) as usize).min(resamples - 1)];
    (at(0.025), at(0.975))
}

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn counts_and_rate_by_hand() {
        let a = [1.0, 0.5, 0.2, 0.9];
        let b = [0.0, 0.5, 0.8, 0.85];
        let w = win_rate(&a, &b, 0.1, 0);
        // wins: prompt 0; ties: prompts 1 and 3 (|0.05| <= 0.1); loss: prompt 2.
        assert_eq!((w.wins, w.ties, w.losses), (1, 2, 1));
        assert!((w.rate - 0.5).abs() < 1e-12);
        assert!(w.ci_low <= w.rate && w.rate <= w.ci_high);
    }
    #[test]
    fn bootstrap_of_a_constant_is_the_constant() {
        assert_eq!(bootstrap_ci(&[1.0; 10], 100, 3), (1.0, 1.0));
    }
}
