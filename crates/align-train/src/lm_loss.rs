//! Next-token losses as pure functions over tensors.

use candle_core::{DType, Result, Tensor, D};

/// Log-probability of each target token: logits (B, T, V), targets (B, T) u32 → (B, T) f32.
///
/// On the CPU this is the fused kernel [`crate::kernels::token_logprobs_fused`] (one pass per row
/// for the log-sum-exp and the target's log-prob; the backward recomputes the softmax row by row,
/// so no (B, T, V) log-softmax is kept for autograd); bf16/f16 logits are first cast to f32, as
/// the composed code does. On other devices it is [`token_logprobs_reference`].
pub fn token_logprobs(logits: &Tensor, targets: &Tensor) -> Result<Tensor> {
    if logits.device().is_cpu() {
        crate::kernels::token_logprobs_fused(&logits.to_dtype(DType::F32)?, targets)
    } else {
        token_logprobs_reference(logits, targets)
    }
}

/// [`token_logprobs`] composed from differentiable candle ops: `log_softmax` then `gather`.
/// The reference of the fused kernel's tests, and the path off the CPU.
pub fn token_logprobs_reference(logits: &Tensor, targets: &Tensor) -> Result<Tensor> {
    let logp = candle_nn::ops::log_softmax(&logits.to_dtype(DType::F32)?, D::Minus1)?;
    logp.gather(&targets.contiguous()?.unsqueeze(D::Minus1)?, D::Minus1)?.squeeze(D::Minus1)
}

/// Mean cross-entropy over the positions where `mask` (B, T) is 1 (all positions when `None`),
/// as HF's causal-LM loss on already shifted targets.
pub fn causal_lm_loss(logits: &Tensor, targets: &Tensor, mask: Option<&Tensor>) -> Result<Tensor> {
    let nll = token_logprobs(logits, targets)?.neg()?;
    match mask {
        None => nll.mean_all(),
        Some(m) => {
            let m = m.to_dtype(DType::F32)?;
            let n = m.sum_all()?.to_scalar::<f32>()?;
            if n == 0.0 {
                candle_core::bail!("causal_lm_loss: the mask selects no token")
            }
            (nll * m)?.sum_all()? / n as f64
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    #[test]
    fn matches_hand_computed_cross_entropy() {
        // logits for 1 row, 2 positions, vocab 3.
        let logits = Tensor::new(&[[[1f32, 2., 3.], [0., 0., 0.]]], &Device::Cpu).unwrap();
        let targets = Tensor::new(&[[2u32, 1]], &Device::Cpu).unwrap();
        let l0 = -(3f32.exp() / (1f32.exp() + 2f32.exp() + 3f32.exp())).ln();
        let l1 = 3f32.ln();
        let loss = causal_lm_loss(&logits, &targets, None).unwrap().to_scalar::<f32>().unwrap();
        assert!((loss - (l0 + l1) / 2.0).abs() < 1e-6);
        let mask = Tensor::new(&[[0u8, 1]], &Device::Cpu).unwrap();
        let loss = causal_lm_loss(&logits, &targets, Some(&mask)).unwrap().to_scalar::<f32>().unwrap();
        assert!((loss - l1).abs() < 1e-6);
        // Same value as candle-nn's reference cross-entropy.
        let ce = candle_nn::loss::cross_entropy(&logits.reshape((2, 3)).unwrap(), &targets.flatten_all().unwrap())
            .unwrap()
            .to_scalar::<f32>()
            .unwrap();
        assert!((ce - (l0 + l1) / 2.0).abs() < 1e-6);
    }

    use crate::kernels::rows_per_task;
    use candle_core::Var;
    use rand::{Rng, SeedableRng};

    /// (shape) f32 tensor of uniform draws in [-scale, scale) from a seeded ChaCha8.
    fn rand_t(seed: u64, dims: &[usize], scale: f32) -> Tensor {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
        let n = dims.iter().product();
        let v: Vec<f32> = (0..n).map(|_| (rng.random::<f32>() * 2.0 - 1.0) * scale).collect();
        Tensor::from_vec(v, dims, &Device::Cpu).unwrap()
    }

    fn rand_targets(seed: u64, dims: &[usize], v: usize) -> Tensor {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
        let n = dims.iter().product();
        let t: Vec<u32> = (0..n).map(|_| rng.random_range(0..v as u32)).collect();
        Tensor::from_vec(t, dims, &Device::Cpu).unwrap()
    }

    /// max |a - b| / max |b|.
    fn rel_err(a: &Tensor, b: &Tensor) -> f32 {
        assert_eq!(a.dims(), b.dims(), "shapes differ");
        let a = a.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        let b = b.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        let diff = a.iter().zip(&b).map(|(x, y)| (x - y).abs()).fold(0f32, f32::max);
        let scale = b.iter().map(|y| y.abs()).fold(0f32, f32::max).max(1e-30);
        diff / scale
    }

    fn all_finite(t: &Tensor) -> bool {
        t.flatten_all().unwrap().to_vec1::<f32>().unwrap().iter().all(|x| x.is_finite())
    }

    /// `sum(lp * r)` for a fixed random `r`: a random linear functional of the log-probs.
    fn functional(lp: &Tensor, seed: u64) -> Tensor {
        (lp * rand_t(seed, lp.dims(), 1.0)).unwrap().sum_all().unwrap()
    }

    /// Fused and reference log-probs of `base` (a Var) seen through `view`, and the gradients of
    /// a random functional of each w.r.t. `base`: (fused, reference, d fused, d reference).
    fn both(base: &Var, view: impl Fn(&Tensor) -> Tensor, targets: &Tensor, seed: u64) -> (Tensor, Tensor, Tensor, Tensor) {
        let logits = view(base.as_tensor());
        let lp = token_logprobs(&logits, targets).unwrap();
        let lp_ref = token_logprobs_reference(&logits, targets).unwrap();
        let g = functional(&lp, seed).backward().unwrap().get(base).unwrap().clone();
        let g_ref = functional(&lp_ref, seed).backward().unwrap().get(base).unwrap().clone();
        (lp, lp_ref, g, g_ref)
    }

    #[test]
    fn fused_matches_reference_on_odd_sizes() {
        for (i, v) in [1usize, 3, 37, 1000, 4099].into_iter().enumerate() {
            // More than one rayon task, and rows not a multiple of the rows per task.
            let rows = 2 * rows_per_task(v) + 3;
            for (b, t) in [(1, rows), (1, 1)] {
                let seed = 100 * i as u64 + t as u64;
                let base = Var::from_tensor(&rand_t(seed, &[b, t, v], 4.0)).unwrap();
                let targets = rand_targets(seed + 1, &[b, t], v);
                let (lp, lp_ref, g, g_ref) = both(&base, |x| x.clone(), &targets, seed + 2);
                assert_eq!(lp.dims(), &[b, t]);
                let (ev, eg) = (rel_err(&lp, &lp_ref), rel_err(&g, &g_ref));
                assert!(ev < 1e-5, "V {v} rows {t}: value rel err {ev}");
                assert!(eg < 1e-5, "V {v} rows {t}: grad rel err {eg}");
            }
        }
    }

    #[test]
    fn fused_handles_huge_and_very_negative_logits() {
        let (b, t, v) = (2, 5, 37);
        let mut x = rand_t(7, &[b, t, v], 1.0).flatten_all().unwrap().to_vec1::<f32>().unwrap();
        for (k, xi) in x.iter_mut().enumerate() {
            match k % 7 {
                0 => *xi = *xi * 1e4 + 3e4,        // large positive
                1 => *xi = -1e30,                  // very negative
                2 => *xi = f32::NEG_INFINITY,      // masked token
                3 => *xi = *xi * 1e4 - 5e4,        // large negative
                _ => *xi *= 80.0,
            }
        }
        let base = Var::from_tensor(&Tensor::from_vec(x, (b, t, v), &Device::Cpu).unwrap()).unwrap();
        // Targets on finite logits (a target at -inf has log-prob -inf in both versions).
        let tgt: Vec<u32> = (0..b * t).map(|r| (0..v).find(|j| (r * v + j) % 7 == 4 + r % 3).unwrap() as u32).collect();
        let targets = Tensor::from_vec(tgt, (b, t), &Device::Cpu).unwrap();
        let (lp, lp_ref, g, g_ref) = both(&base, |x| x.clone(), &targets, 8);
        assert!(all_finite(&lp) && all_finite(&g), "fused log-probs or gradient not finite");
        assert!(all_finite(&lp_ref) && all_finite(&g_ref));
        assert!(rel_err(&lp, &lp_ref) < 1e-5, "value rel err {}", rel_err(&lp, &lp_ref));
        assert!(rel_err(&g, &g_ref) < 1e-5, "grad rel err {}", rel_err(&g, &g_ref));
        // A row at 1e30 everywhere but one logit: log-probs stay finite.
        let mut row = vec![-1e30f32; 5];
        row[2] = 1e30;
        let x = Tensor::from_vec(row, (1, 1, 5), &Device::Cpu).unwrap();
        let lp = token_logprobs(&x, &Tensor::new(&[[2u32]], &Device::Cpu).unwrap()).unwrap();
        assert_eq!(lp.flatten_all().unwrap().to_vec1::<f32>().unwrap(), vec![0.0]);
    }

    #[test]
    fn fused_matches_reference_on_non_contiguous_logits() {
        let (b, t, v) = (3, 41, 37);
        let base = Var::from_tensor(&rand_t(11, &[v, t, b], 3.0)).unwrap();
        let targets = rand_targets(12, &[b, t], v);
        let view = |x: &Tensor| x.transpose(0, 2).unwrap(); // (B, T, V), not contiguous
        assert!(!view(base.as_tensor()).is_contiguous());
        let (lp, lp_ref, g, g_ref) = both(&base, view, &targets, 13);
        assert!(rel_err(&lp, &lp_ref) < 1e-5);
        assert!(rel_err(&g, &g_ref) < 1e-5);
        // Non-contiguous targets too (a column slice).
        let wide = rand_targets(14, &[b, t + 1], v);
        let targets = wide.narrow(1, 1, t).unwrap();
        let (lp, lp_ref, g, g_ref) = both(&base, view, &targets, 15);
        assert!(rel_err(&lp, &lp_ref) < 1e-5);
        assert!(rel_err(&g, &g_ref) < 1e-5);
    }

    #[test]
    fn fused_gradient_matches_finite_differences() {
        let (b, t, v) = (2, 3, 11);
        let x = rand_t(21, &[b, t, v], 2.0);
        let targets = rand_targets(22, &[b, t], v);
        let loss = |x: &Tensor| -> f64 { functional(&token_logprobs(x, &targets).unwrap(), 23).to_scalar::<f32>().unwrap() as f64 };
        let xv = Var::from_tensor(&x).unwrap();
        let g = functional(&token_logprobs(&xv, &targets).unwrap(), 23).backward().unwrap();
        let g = g.get(&xv).unwrap().flatten_all().unwrap().to_vec1::<f32>().unwrap();
        let xs = x.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        let h = 1e-2f32;
        for i in [0, 5, 17, 40, 65] {
            let at = |d: f32| {
                let mut w = xs.clone();
                w[i] += d;
                loss(&Tensor::from_vec(w, (b, t, v), &Device::Cpu).unwrap())
            };
            let fd = (at(h) - at(-h)) / (2.0 * h as f64);
            assert!((fd - g[i] as f64).abs() < 2e-3, "element {i}: finite difference {fd}, autograd {}", g[i]);
        }
    }

    #[test]
    fn fused_is_deterministic_across_runs_and_threads() {
        let (b, t, v) = (3, 50, 1000);
        let base = Var::from_tensor(&rand_t(31, &[b, t, v], 5.0)).unwrap();
        let targets = rand_targets(32, &[b, t], v);
        let run = || -> (Vec<f32>, Vec<f32>) {
            let lp = token_logprobs(&base, &targets).unwrap();
            let g = functional(&lp, 33).backward().unwrap().get(&base).unwrap().flatten_all().unwrap().to_vec1::<f32>().unwrap();
            (lp.flatten_all().unwrap().to_vec1::<f32>().unwrap(), g)
        };
        let first = run();
        assert_eq!(first, run());
        for threads in [1, 3] {
            let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
            assert_eq!(first, pool.install(run), "{threads} threads");
        }
    }

    #[test]
    fn fused_casts_half_precision_logits() {
        let (b, t, v) = (2, 9, 37);
        let x = rand_t(41, &[b, t, v], 3.0);
        let targets = rand_targets(42, &[b, t], v);
        for dt in [DType::BF16, DType::F16] {
            let base = Var::from_tensor(&x.to_dtype(dt).unwrap()).unwrap();
            let (lp, lp_ref, g, g_ref) = both(&base, |x| x.clone(), &targets, 43);
            assert_eq!((lp.dtype(), g.dtype()), (DType::F32, dt));
            assert!(rel_err(&lp, &lp_ref) < 1e-5);
            let (g, g_ref) = (g.to_dtype(DType::F32).unwrap(), g_ref.to_dtype(DType::F32).unwrap());
            assert!(rel_err(&g, &g_ref) < 1e-2, "{dt:?} grad rel err {}", rel_err(&g, &g_ref));
        }
    }

    #[test]
    fn fused_rejects_bad_targets() {
        let x = rand_t(51, &[1, 2, 5], 1.0);
        let out_of_range = Tensor::new(&[[1u32, 5]], &Device::Cpu).unwrap();
        assert!(token_logprobs(&x, &out_of_range).is_err());
        let wrong_shape = Tensor::new(&[[1u32, 2, 3]], &Device::Cpu).unwrap();
        assert!(token_logprobs(&x, &wrong_shape).is_err());
    }

    #[test]
    fn masked_loss_gradient_matches_reference() {
        let (b, t, v) = (2, 13, 37);
        let base = Var::from_tensor(&rand_t(61, &[b, t, v], 3.0)).unwrap();
        let targets = rand_targets(62, &[b, t], v);
        let mask = Tensor::from_vec((0..(b * t) as u8).map(|i| i % 3 % 2).collect::<Vec<_>>(), (b, t), &Device::Cpu).unwrap();
        let loss = causal_lm_loss(&base, &targets, Some(&mask)).unwrap();
        let m = mask.to_dtype(DType::F32).unwrap();
        let nll = token_logprobs_reference(&base, &targets).unwrap().neg().unwrap();
        let loss_ref = ((nll * &m).unwrap().sum_all().unwrap() / m.sum_all().unwrap().to_scalar::<f32>().unwrap() as f64).unwrap();
        let (l, lr) = (loss.to_scalar::<f32>().unwrap(), loss_ref.to_scalar::<f32>().unwrap());
        assert!((l - lr).abs() < 1e-5 * lr.abs(), "{l} vs {lr}");
        let g = loss.backward().unwrap().get(&base).unwrap().clone();
        let g_ref = loss_ref.backward().unwrap().get(&base).unwrap().clone();
        assert!(rel_err(&g, &g_ref) < 1e-5);
    }

}
