//! Pure functions over one row of logits, in the order Hugging Face applies them:
//! repetition penalty → temperature → top-k → top-p → min-p → sample.
//!
//! Filters set removed tokens to `-inf` (HF's `filter_value`), so later steps and the final
//! softmax give them probability 0. Greedy decoding applies only the repetition penalty (HF's
//! processors) and takes the argmax; the warpers (temperature, top-k, top-p, min-p) only shape
//! sampling.

use crate::config::SamplingConfig;
use align_core::seed::{uniform, Rng};

/// CTRL repetition penalty (Keskar et al. 2019, HF `RepetitionPenaltyLogitsProcessor`): for each
/// id in `seen`, a positive logit is divided by `penalty` and a negative one multiplied.
/// `seen` must list each id once (a duplicate would be penalized twice).
pub fn apply_repetition_penalty(logits: &mut [f32], seen: &[u32], penalty: f32) {
    if penalty == 1.0 {
        return;
    }
    for &t in seen {
        if let Some(x) = logits.get_mut(t as usize) {
            *x = if *x < 0.0 { *x * penalty } else { *x / penalty };
        }
    }
}

/// Divides every logit by `temperature` (> 0).
pub fn apply_temperature(logits: &mut [f32], temperature: f32) {
    if temperature != 1.0 {
        for x in logits.iter_mut() {
            *x /= temperature;
        }
    }
}

/// Keeps the logits ≥ the `k`-th largest (so ties with it survive, as in HF); `0` = off.
pub fn apply_top_k(logits: &mut [f32], k: usize) {
    if k == 0 || k >= logits.len() {
        return;
    }
    let mut vals = logits.to_vec();
    // Descending: the k-th largest lands at index k-1.
    let (_, kth, _) = vals.select_nth_unstable_by(k - 1, |a, b| b.total_cmp(a));
    let kth = *kth;
    for x in logits.iter_mut() {
        if *x < kth {
            *x = f32::NEG_INFINITY;
        }
    }
}

/// Nucleus filter, HF `TopPLogitsWarper`: sort ascending, and remove the tokens whose cumulative
/// probability (from the least likely up) is ≤ `1 - p`; the most likely token always stays.
pub fn apply_top_p(logits: &mut [f32], p: f32) {
    if p >= 1.0 {
        return;
    }
    let probs = softmax(logits);
    let mut order: Vec<u32> = (0..logits.len() as u32).collect();
    // Ascending by logit; ties broken by id so the result is deterministic.
    order.sort_unstable_by(|&a, &b| logits[a as usize].total_cmp(&logits[b as usize]).then(b.cmp(&a)));
    let threshold = 1.0 - p;
    let mut cum = 0f32;
    for &i in &order[..order.len() - 1] {
        cum += probs[i as usize];
        if cum > threshold {
            break;
        }
        logits[i as usize] = f32::NEG_INFINITY;
    }
}

/// HF `MinPLogitsWarper`: remove tokens whose probability is below `min_p` × the largest
/// probability; `0` = off.
pub fn apply_min_p(logits: &mut [f32], min_p: f32) {
    if min_p <= 0.0 {
        return;
    }
    let probs = softmax(logits);
    let top = probs.iter().copied().fold(0f32, f32::max);
    let cut = min_p * top;
    for (x, p) in logits.iter_mut().zip(&probs) {
        if *p < cut {
            *x = f32::NEG_INFINITY;
        }
    }
}

/// Softmax in f32 with the max subtracted; `-inf` logits get probability 0.
pub fn softmax(logits: &[f32]) -> Vec<f32> {
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let mut p: Vec<f32> = logits.iter().map(|x| (x - max).exp()).collect();
    let sum: f32 = p.iter().sum();
    for x in p.iter_mut() {
        *x /= sum;
    }
    p
}

/// `log_softmax(logits)[token]`, the log-sum-exp accumulated in f64.
pub fn log_prob(logits: &[f32], token: u32) -> f32 {
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max) as f64;
    let lse = max + logits.iter().map(|&x| (x as f64 - max).exp()).sum::<f64>().ln();
    (logits[token as usize] as f64 - lse) as f32
}

/// Index of the largest logit (the first on ties, as `torch.argmax`).
pub fn argmax(logits: &[f32]) -> u32 {
    let mut best = 0;
    for (i, &x) in logits.iter().enumerate() {
        if x > logits[best] {
            best = i;
        }
    }
    best as u32
}

/// Inverse-CDF draw from `softmax(logits)` with `u` uniform in [0, 1): the first token whose
/// cumulative probability exceeds `u`. Tokens with probability 0 are never chosen.
pub fn sample_with_uniform(logits: &[f32], u: f32) -> u32 {
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let w: Vec<f64> = logits.iter().map(|&x| ((x - max) as f64).exp()).collect();
    let total: f64 = w.iter().sum();
    let target = u as f64 * total;
    let mut cum = 0f64;
    let mut last_positive = 0;
    for (i, &wi) in w.iter().enumerate() {
        if wi > 0.0 {
            cum += wi;
            last_positive = i;
            if cum > target {
                return i as u32;
            }
        }
    }
    last_positive as u32
}

/// The whole pipeline on one row: processes `logits` in place (as in the module docs) and
/// returns the chosen token. `seen` lists each prompt/completion id once. Greedy configs draw
/// nothing from `rng`; sampling configs draw exactly one uniform per call.
pub fn choose_token(logits: &mut [f32], cfg: &SamplingConfig, seen: &[u32], rng: &mut Rng) -> u32 {
    apply_repetition_penalty(logits, seen, cfg.repetition_penalty);
    if cfg.is_greedy() {
        return argmax(logits);
    }
    apply_temperature(logits, cfg.temperature);
    apply_top_k(logits, cfg.top_k);
    apply_top_p(logits, cfg.top_p);
    apply_min_p(logits, cfg.min_p);
    sample_with_uniform(logits, uniform(rng))
}

#[cfg(test)]
mod tests {
    use super::*;
    const NEG: f32 = f32::NEG_INFINITY;

    fn close(a: &[f32], b: &[f32]) {
        assert_eq!(a.len(), b.len());
        for (x, y) in a.iter().zip(b) {
            assert!((x == y) || (x - y).abs() < 1e-6, "{a:?} vs {b:?}");
        }
    }
    /// Logits whose softmax is [0.1, 0.2, 0.3, 0.4].
    fn quarter() -> Vec<f32> {
        [0.1f32, 0.2, 0.3, 0.4].iter().map(|p| p.ln()).collect()
    }

    #[test]
    fn repetition_penalty_divides_positive_multiplies_negative() {
        let mut l = vec![-1.0, 2.0, 3.0, 4.0];
        apply_repetition_penalty(&mut l, &[0, 3], 2.0);
        close(&l, &[-2.0, 2.0, 3.0, 2.0]);
        let mut l = vec![-1.0, 2.0];
        apply_repetition_penalty(&mut l, &[0, 1], 0.5); // < 1 encourages repeats
        close(&l, &[-0.5, 4.0]);
    }

    #[test]
    fn temperature_scales() {
        let mut l = vec![1.0, 2.0, 3.0, 4.0];
        apply_temperature(&mut l, 2.0);
        close(&l, &[0.5, 1.0, 1.5, 2.0]);
    }

    #[test]
    fn top_k_keeps_ties() {
        let mut l = vec![1.0, 3.0, 3.0, 2.0];
        apply_top_k(&mut l, 2);
        close(&l, &[NEG, 3.0, 3.0, NEG]);
        let mut l = vec![1.0, 3.0, 3.0, 2.0];
        apply_top_k(&mut l, 1); // the 1st largest is 3, and both 3s are >= it
        close(&l, &[NEG, 3.0, 3.0, NEG]);
        let mut l = vec![1.0, 3.0, 0.0, 2.0];
        apply_top_k(&mut l, 3);
        close(&l, &[1.0, 3.0, NEG, 2.0]);
        let mut l = vec![1.0, 2.0];
        apply_top_k(&mut l, 0);
        close(&l, &[1.0, 2.0]);
    }

    #[test]
    fn top_p_keeps_the_smallest_nucleus() {
        // Ascending cumulative: 0.1, 0.3, 0.6, 1.0.
        let q = quarter();
        let mut l = q.clone();
        apply_top_p(&mut l, 0.75); // remove cum <= 0.25: only the 0.1 token
        close(&l, &[NEG, q[1], q[2], q[3]]);
        let mut l = q.clone();
        apply_top_p(&mut l, 0.65); // remove cum <= 0.35: 0.1 and 0.2
        close(&l, &[NEG, NEG, q[2], q[3]]);
        let mut l = q.clone();
        apply_top_p(&mut l, 0.05); // the top token always stays
        close(&l, &[NEG, NEG, NEG, q[3]]);
        let mut l = q.clone();
        apply_top_p(&mut l, 1.0);
        close(&l, &q);
    }

    #[test]
    fn min_p_scales_with_the_top_probability() {
        let q = quarter();
        let mut l = q.clone();
        apply_min_p(&mut l, 0.3); // cut 0.12: drops 0.1
        close(&l, &[NEG, q[1], q[2], q[3]]);
        let mut l = q.clone();
        apply_min_p(&mut l, 0.6); // cut 0.24: drops 0.1 and 0.2
        close(&l, &[NEG, NEG, q[2], q[3]]);
    }

    #[test]
    fn softmax_log_prob_argmax() {
        let l = vec![0.0, 3f32.ln(), NEG];
        close(&softmax(&l), &[0.25, 0.75, 0.0]);
        assert!((log_prob(&l, 1) - 0.75f32.ln()).abs() < 1e-6);
        assert_eq!(argmax(&[1.0, 5.0, 5.0, 2.0]), 1);
    }

    #[test]
    fn inverse_cdf_sampling() {
        let q = quarter();
        assert_eq!(sample_with_uniform(&q, 0.0), 0);
        assert_eq!(sample_with_uniform(&q, 0.05), 0);
        assert_eq!(sample_with_uniform(&q, 0.25), 1);
        assert_eq!(sample_with_uniform(&q, 0.55), 2);
        assert_eq!(sample_with_uniform(&q, 0.95), 3);
        assert_eq!(sample_with_uniform(&[NEG, 0.0, NEG], 0.999), 1);
    }

    #[test]
    fn sampled_frequencies_match_probabilities() {
        let cfg = SamplingConfig { top_k: 0, ..Default::default() };
        let mut rng = align_core::seed::rng(3);
        let mut counts = [0usize; 4];
        let n = 40_000;
        for _ in 0..n {
            counts[choose_token(&mut quarter(), &cfg, &[], &mut rng) as usize] += 1;
        }
        for (c, p) in counts.iter().zip([0.1, 0.2, 0.3, 0.4]) {
            assert!((*c as f64 / n as f64 - p).abs() < 0.01, "{counts:?}");
        }
    }

    #[test]
    fn pipeline_order_matches_hf() {
        // Penalty first (token 3: 4 -> 2), then temperature, then top-k 2 on [1, 2, 3, 2]:
        // keeps 3 and both 2s. With greedy only the penalty applies.
        let cfg = SamplingConfig { repetition_penalty: 2.0, top_k: 2, temperature: 0.5, ..Default::default() };
        let mut l = vec![1.0, 2.0, 3.0, 4.0];
        let mut rng = align_core::seed::rng(0);
        let t = choose_token(&mut l, &cfg, &[3], &mut rng);
        close(&l, &[NEG, 4.0, 6.0, 4.0]);
        assert_ne!(t, 0);
        let mut l = vec![1.0, 2.0, 3.0, 4.0];
        let g = SamplingConfig { repetition_penalty: 2.0, ..SamplingConfig::greedy() };
        assert_eq!(choose_token(&mut l, &g, &[3], &mut rng), 2);
    }
}
