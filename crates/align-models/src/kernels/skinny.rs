//! `y = x Wᵀ` for a few rows of x: the linear layers of a decode step (one token per sequence,
//! batch ≤ [`MAX_ROWS`]). A general GEMM packs W into panels on every call, which for a handful of
//! rows costs more than the product; here each row of W (HF's (out, in) layout, contiguous) is
//! read once and dotted with every row of x while it sits in L1, so the cost is one pass over the
//! weights. Forward only is fused; the backward uses candle's matmuls (training rarely has so few
//! rows, but stays correct when it does).

use super::{contiguous_f32, multiversion};
use candle_core::{CpuStorage, CustomOp2, Layout, Result, Shape, Tensor};
use rayon::prelude::*;

/// Largest number of rows of x this kernel takes; larger inputs go to the general matmul.
pub const MAX_ROWS: usize = 16;

/// Multiply-adds below which the product runs on the calling thread: rayon's dispatch from
/// outside its pool (tens of microseconds) costs about as much as a million multiply-adds here
/// (measured: tiny-model generation at batch 1, 930 → 1,700 tokens/s).
const PARALLEL_MIN_MACS: usize = 1 << 20;

/// Output features per task: W rows a task reads (tasks are fixed by the shape, so the result does
/// not depend on the thread count).
const COLS_PER_TASK: usize = 64;

multiversion! {
    /// `yt[j·m + r] = x[r] · w[j]` for the W rows `w` (n × k) of one task and the m rows of x.
    fn dots(x: &[f32], w: &[f32], k: usize, yt: &mut [f32]) {
        let m = x.len() / k;
        for (wj, out) in w.chunks_exact(k).zip(yt.chunks_exact_mut(m)) {
            for (xr, o) in x.chunks_exact(k).zip(out.iter_mut()) {
                // 16 lanes, summed in a fixed order: the same bits on every instruction set.
                let mut acc = [0f32; 16];
                let (xa, xt) = xr.split_at(k - k % 16);
                let (wa, wt) = wj.split_at(k - k % 16);
                for (a, b) in xa.chunks_exact(16).zip(wa.chunks_exact(16)) {
                    for l in 0..16 {
                        acc[l] += a[l] * b[l];
                    }
                }
                for (l, (a, b)) in xt.iter().zip(wt).enumerate() {
                    acc[l] += a * b;
                }
                let mut s = 0f32;
                for a in acc {
                    s += a;
                }
                *o = s;
            }
        }
    }
}

/// The op: (x (m, k), w (n, k)) → (m, n).
struct SkinnyLinear;

impl CustomOp2 for SkinnyLinear {
    fn name(&self) -> &'static str {
        "skinny-linear"
    }

    fn cpu_fwd(&self, s1: &CpuStorage, l1: &Layout, s2: &CpuStorage, l2: &Layout) -> Result<(CpuStorage, Shape)> {
        let x = contiguous_f32(s1, l1, "skinny linear x")?;
        let w = contiguous_f32(s2, l2, "skinny linear weight")?;
        let (m, k) = l1.shape().dims2()?;
        let (n, k2) = l2.shape().dims2()?;
        if k != k2 || k == 0 {
            candle_core::bail!("skinny linear: x is ({m}, {k}) and the weight ({n}, {k2})");
        }
        // Computed transposed (each task owns a contiguous block of output features), then laid out.
        let mut yt = vec![0f32; n * m];
        let run = |(wb, yb): (&[f32], &mut [f32])| dots(x, wb, k, yb);
        if m * n * k < PARALLEL_MIN_MACS {
            w.chunks(COLS_PER_TASK * k).zip(yt.chunks_mut(COLS_PER_TASK * m)).for_each(run);
        } else {
            w.par_chunks(COLS_PER_TASK * k).zip(yt.par_chunks_mut(COLS_PER_TASK * m)).for_each(run);
        }
        let mut y = vec![0f32; m * n];
        for (j, col) in yt.chunks_exact(m).enumerate() {
            for (r, &v) in col.iter().enumerate() {
                y[r * n + j] = v;
            }
        }
        Ok((CpuStorage::F32(y), Shape::from((m, n))))
    }

    fn bwd(&self, x: &Tensor, w: &Tensor, _y: &Tensor, g: &Tensor) -> Result<(Option<Tensor>, Option<Tensor>)> {
        Ok((Some(g.matmul(w)?), Some(g.t()?.matmul(x)?)))
    }
}

/// True when [`linear`] handles `x @ wᵀ`: f32 on the CPU and at most [`MAX_ROWS`] rows of x.
pub fn applies(x: &Tensor, w: &Tensor) -> bool {
    let k = x.dims().last().copied().unwrap_or(0);
    super::cpu_f32(&[x, w]) && k > 0 && x.elem_count() / k <= MAX_ROWS && w.rank() == 2
}

/// `x @ wᵀ` over the last dim of `x` (any rank) for w of shape (out, in), differentiable.
pub fn linear(x: &Tensor, w: &Tensor) -> Result<Tensor> {
    let dims = x.dims();
    let (n, k) = w.dims2()?;
    let rows = x.elem_count() / k;
    let y = x.reshape((rows, k))?.contiguous()?.apply_op2(&w.contiguous()?, SkinnyLinear)?;
    let mut out = dims.to_vec();
    *out.last_mut().expect("x has a last dim") = n;
    y.reshape(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::testing::{grads, randn, rel_err};
    use candle_core::Var;

    #[test]
    fn matches_the_matmul_on_odd_sizes_with_gradients() {
        for (m, k, n) in [(1, 1, 1), (1, 3, 5), (2, 17, 33), (8, 256, 704), (16, 100, 130), (3, 768, 200)] {
            let x = Var::from_tensor(&randn(1, (m, k)).unwrap()).unwrap();
            let w = Var::from_tensor(&randn(2, (n, k)).unwrap()).unwrap();
            let fused = linear(x.as_tensor(), w.as_tensor()).unwrap();
            let reference = x.as_tensor().matmul(&w.as_tensor().t().unwrap()).unwrap();
            assert!(rel_err(&fused, &reference).unwrap() < 1e-5, "({m}, {k}, {n})");
            let gf = grads(&[&x, &w], &fused, 3).unwrap();
            let gr = grads(&[&x, &w], &reference, 3).unwrap();
            for (a, b) in gf.iter().zip(&gr) {
                assert!(rel_err(a, b).unwrap() < 1e-5, "gradient at ({m}, {k}, {n})");
            }
        }
    }

    #[test]
    fn three_d_input_and_the_size_limit() {
        let x = randn(4, (2, 1, 48)).unwrap();
        let w = randn(5, (40, 48)).unwrap();
        let y = linear(&x, &w).unwrap();
        assert_eq!(y.dims(), &[2, 1, 40]);
        let r = crate::layers::linear::matmul_last(&x, &w.t().unwrap()).unwrap();
        assert!(rel_err(&y, &r).unwrap() < 1e-5);
        assert!(applies(&x, &w));
        assert!(!applies(&randn(6, (MAX_ROWS + 1, 48)).unwrap(), &w));
    }

    #[test]
    fn bit_identical_whether_sequential_or_parallel() {
        // 16 × 3000 × 768 is above the parallel threshold; each output is one task's dot either way.
        assert!(16 * 3000 * 768 >= PARALLEL_MIN_MACS);
        let (m, k, n) = (16, 768, 3000);
        let x = randn(7, (m, k)).unwrap();
        let w = randn(8, (n, k)).unwrap();
        let par = linear(&x, &w).unwrap().flatten_all().unwrap().to_vec1::<f32>().unwrap();
        let xs = x.to_vec2::<f32>().unwrap();
        let ws = w.to_vec2::<f32>().unwrap();
        let mut seq = vec![0f32; m * n];
        for j in 0..n {
            let mut col = vec![0f32; m];
            dots(&xs.concat(), &ws[j], k, &mut col);
            for r in 0..m {
                seq[r * n + j] = col[r];
            }
        }
        assert_eq!(par, seq);
    }
}
