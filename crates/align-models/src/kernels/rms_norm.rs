//! Fused RMSNorm `y = x / sqrt(mean(x²) + eps) * weight` over the last dim, with its backward.
//!
//! With `r = 1 / sqrt(mean(x²) + eps)` per row of C elements and `g` the output gradient:
//! `dx = r * (g ⊙ w) - (r³ / C) * (Σ g ⊙ w ⊙ x) * x` and `dw = Σ_rows g ⊙ x * r`.
//! The backward recomputes `r` (one pass over the row) instead of storing it. The weight
//! gradient is summed per fixed chunk of rows, then the chunks in order: deterministic.

use super::{contiguous_f32, multiversion};
use candle_core::{CpuStorage, CustomOp2, CustomOp3, Layout, Result, Shape, Tensor, D};
use rayon::prelude::*;

/// Rows per rayon task: ~16K floats (64 KB) per task; depends on C only, never on threads.
fn rows_per_task(c: usize) -> usize {
    (16384 / c.max(1)).clamp(1, 256)
}

/// Fused RMSNorm of x (…, C) with weight (C): f32 tensors on the CPU. Any layout of x is
/// accepted (made contiguous first). Gradients flow to both x and weight.
pub fn rms_norm(x: &Tensor, weight: &Tensor, eps: f64) -> Result<Tensor> {
    let c = x.dim(D::Minus1)?;
    if weight.dims() != [c] {
        candle_core::bail!("rms_norm: weight shape {:?}, expected [{c}]", weight.dims());
    }
    x.contiguous()?.apply_op2(&weight.contiguous()?, RmsNormOp { eps: eps as f32 })
}

/// `Σ v²` with 16 independent lanes summed in a fixed order (vectorizable, deterministic).
#[inline(always)]
fn sum_sq(v: &[f32]) -> f32 {
    let mut acc = [0f32; 16];
    let chunks = v.chunks_exact(16);
    let rem = chunks.remainder();
    for ch in chunks {
        for i in 0..16 {
            acc[i] += ch[i] * ch[i];
        }
    }
    let mut s = lanes_sum(&acc);
    for &a in rem {
        s += a * a;
    }
    s
}

/// `Σ a ⊙ b ⊙ c` with 16 lanes, as [`sum_sq`].
#[inline(always)]
fn dot3(a: &[f32], b: &[f32], c: &[f32]) -> f32 {
    let mut acc = [0f32; 16];
    let (ca, cb, cc) = (a.chunks_exact(16), b.chunks_exact(16), c.chunks_exact(16));
    let (ra, rb, rc) = (ca.remainder(), cb.remainder(), cc.remainder());
    for ((x, y), z) in ca.zip(cb).zip(cc) {
        for i in 0..16 {
            acc[i] += x[i] * y[i] * z[i];
        }
    }
    let mut s = lanes_sum(&acc);
    for ((x, y), z) in ra.iter().zip(rb).zip(rc) {
        s += x * y * z;
    }
    s
}

/// Pairwise sum of 16 lanes, in a fixed order.
#[inline(always)]
fn lanes_sum(acc: &[f32; 16]) -> f32 {
    let mut h = [0f32; 8];
    for i in 0..8 {
        h[i] = acc[i] + acc[i + 8];
    }
    let q = [h[0] + h[4], h[1] + h[5], h[2] + h[6], h[3] + h[7]];
    (q[0] + q[2]) + (q[1] + q[3])
}

/// `1 / sqrt(mean(x²) + eps)` of one row.
#[inline(always)]
fn inv_rms(x: &[f32], eps: f32) -> f32 {
    1.0 / (sum_sq(x) / x.len() as f32 + eps).sqrt()
}

multiversion! {
    /// Forward over whole rows: x, y (rows·C), w (C).
    fn fwd_rows(x: &[f32], w: &[f32], y: &mut [f32], eps: f32) {
        let c = w.len();
        for (xr, yr) in x.chunks_exact(c).zip(y.chunks_exact_mut(c)) {
            let r = inv_rms(xr, eps);
            for ((yi, &xi), &wi) in yr.iter_mut().zip(xr).zip(w) {
                *yi = xi * r * wi;
            }
        }
    }
}

multiversion! {
    /// Backward over whole rows: dx (rows·C) from x, g (rows·C) and w (C); `dw_part` (C) is
    /// overwritten with this chunk's weight gradient `Σ_rows g ⊙ x * r`.
    fn bwd_rows(x: &[f32], g: &[f32], w: &[f32], dx: &mut [f32], dw_part: &mut [f32], eps: f32) {
        let c = w.len();
        dw_part.fill(0.0);
        for ((xr, gr), dxr) in x.chunks_exact(c).zip(g.chunks_exact(c)).zip(dx.chunks_exact_mut(c)) {
            let r = inv_rms(xr, eps);
            let k = r * r * r * dot3(gr, w, xr) / c as f32;
            for ((((d, &xi), &gi), &wi), dw) in dxr.iter_mut().zip(xr).zip(gr).zip(w).zip(dw_part.iter_mut()) {
                *d = r * (gi * wi) - k * xi;
                *dw += gi * xi * r;
            }
        }
    }
}

/// Forward op: (x (…, C), weight (C)) → y (…, C).
struct RmsNormOp {
    eps: f32,
}

impl CustomOp2 for RmsNormOp {
    fn name(&self) -> &'static str {
        "align-rms-norm"
    }

    fn cpu_fwd(&self, s1: &CpuStorage, l1: &Layout, s2: &CpuStorage, l2: &Layout) -> Result<(CpuStorage, Shape)> {
        let x = contiguous_f32(s1, l1, "rms_norm x")?;
        let w = contiguous_f32(s2, l2, "rms_norm weight")?;
        let c = w.len();
        if c == 0 || x.len() % c != 0 {
            candle_core::bail!("rms_norm: {} elements of x are not rows of {c}", x.len());
        }
        let mut y = vec![0f32; x.len()];
        let chunk = rows_per_task(c) * c;
        let run = |(y, x): (&mut [f32], &[f32])| fwd_rows(x, w, y, self.eps);
        if super::sequential(x.len()) {
            y.chunks_mut(chunk).zip(x.chunks(chunk)).for_each(run);
        } else {
            y.par_chunks_mut(chunk).zip(x.par_chunks(chunk)).for_each(run);
        }
        Ok((CpuStorage::F32(y), l1.shape().clone()))
    }

    fn bwd(&self, x: &Tensor, w: &Tensor, _y: &Tensor, g: &Tensor) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let c = w.elem_count();
        let rows = x.elem_count() / c;
        // (rows + 1, C): dx in the first rows, dw in the last.
        let out = x.contiguous()?.apply_op3_no_bwd(&w.contiguous()?, &g.contiguous()?, &RmsNormBwdOp { eps: self.eps })?;
        let dx = out.narrow(0, 0, rows)?.reshape(x.shape())?;
        // Own copy of the C weight-gradient values, so the grad store does not keep `out` alive.
        let dw = Tensor::from_vec(out.get(rows)?.to_vec1::<f32>()?, w.shape(), w.device())?;
        Ok((Some(dx), Some(dw)))
    }
}

/// Backward op: (x (…, C), weight (C), grad (…, C)) → (rows + 1, C) = [dx; dw].
struct RmsNormBwdOp {
    eps: f32,
}

impl CustomOp3 for RmsNormBwdOp {
    fn name(&self) -> &'static str {
        "align-rms-norm-bwd"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let x = contiguous_f32(s1, l1, "rms_norm bwd x")?;
        let w = contiguous_f32(s2, l2, "rms_norm bwd weight")?;
        let g = contiguous_f32(s3, l3, "rms_norm bwd grad")?;
        let c = w.len();
        if g.len() != x.len() || c == 0 || x.len() % c != 0 {
            candle_core::bail!("rms_norm bwd: x has {}, grad {} elements, weight {c}", x.len(), g.len());
        }
        let rows = x.len() / c;
        let chunk = rows_per_task(c) * c;
        let n_tasks = rows.div_ceil(rows_per_task(c));
        let mut out = vec![0f32; (rows + 1) * c];
        let (dx, dw) = out.split_at_mut(rows * c);
        let mut parts = vec![0f32; n_tasks * c];
        let run = |(dx, x, g, part): (&mut [f32], &[f32], &[f32], &mut [f32])| bwd_rows(x, g, w, dx, part, self.eps);
        if super::sequential(x.len()) {
            dx.chunks_mut(chunk).zip(x.chunks(chunk)).zip(g.chunks(chunk)).zip(parts.chunks_mut(c)).for_each(|(((dx, x), g), p)| run((dx, x, g, p)));
        } else {
            (dx.par_chunks_mut(chunk), x.par_chunks(chunk), g.par_chunks(chunk), parts.par_chunks_mut(c)).into_par_iter().for_each(run);
        }
        // Chunk partial sums added in chunk order: the same bits for any thread count.
        for part in parts.chunks_exact(c) {
            for (d, &p) in dw.iter_mut().zip(part) {
                *d += p;
            }
        }
        Ok((CpuStorage::F32(out), Shape::from((rows + 1, c))))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::testing::{assert_same_bits_across_threads, finite_diff, functional, grads, randn, rel_err};
    use crate::layers::norm::rms_norm_reference;
    use candle_core::Var;

    const EPS: f64 = 1e-5;

    /// Fused and reference values and gradients (x and weight) on (rows, c).
    fn check(rows: usize, c: usize, seed: u64) -> Result<()> {
        let x = Var::from_tensor(&randn(seed, (rows, c))?)?;
        let w = Var::from_tensor(&randn(seed + 1, c)?.affine(0.5, 1.0)?)?;
        let y = rms_norm(&x, &w, EPS)?;
        let y_ref = rms_norm_reference(&x, &w, EPS)?;
        let e = rel_err(&y, &y_ref)?;
        assert!(e < 1e-5, "rows {rows} c {c}: value rel err {e}");
        let g = grads(&[&x, &w], &y, seed + 2)?;
        let g_ref = grads(&[&x, &w], &y_ref, seed + 2)?;
        for (name, a, b) in [("x", &g[0], &g_ref[0]), ("weight", &g[1], &g_ref[1])] {
            let e = rel_err(a, b)?;
            assert!(e < 1e-5, "rows {rows} c {c}: grad {name} rel err {e}");
        }
        Ok(())
    }

    #[test]
    fn matches_reference_on_odd_sizes() -> Result<()> {
        for (i, c) in [1, 3, 37, 130, 128, 768].into_iter().enumerate() {
            // Rows not a multiple of rows_per_task(c), and more than one task.
            let rows = 2 * rows_per_task(c) + 3;
            check(rows, c, 10 * i as u64)?;
            check(1, c, 10 * i as u64 + 5)?;
        }
        Ok(())
    }

    #[test]
    fn matches_reference_on_3d_non_contiguous_input() -> Result<()> {
        let base = Var::from_tensor(&randn(7, (37, 5, 3))?)?;
        let x = base.transpose(0, 2)?; // (3, 5, 37), not contiguous
        let w = Var::from_tensor(&randn(8, 37)?)?;
        let y = rms_norm(&x, &w, EPS)?;
        let y_ref = rms_norm_reference(&x, &w, EPS)?;
        assert!(rel_err(&y, &y_ref)? < 1e-5);
        let g = grads(&[&base, &w], &y, 9)?;
        let g_ref = grads(&[&base, &w], &y_ref, 9)?;
        assert!(rel_err(&g[0], &g_ref[0])? < 1e-5);
        assert!(rel_err(&g[1], &g_ref[1])? < 1e-5);
        Ok(())
    }

    #[test]
    fn gradients_match_finite_differences() -> Result<()> {
        let (x, w) = (randn(20, (3, 37))?, (randn(21, 37)? + 1.0)?);
        let loss = |x: &Tensor, w: &Tensor| -> Result<f32> { functional(&rms_norm(x, w, EPS)?, 22)?.to_scalar::<f32>() };
        let (xv, wv) = (Var::from_tensor(&x)?, Var::from_tensor(&w)?);
        let g = grads(&[&xv, &wv], &rms_norm(&xv, &wv, EPS)?, 22)?;
        let (gx, gw) = (g[0].flatten_all()?.to_vec1::<f32>()?, g[1].to_vec1::<f32>()?);
        for i in [0, 40, 110] {
            let fd = finite_diff(&x, i, 1e-2, |x| loss(x, &w))?;
            assert!((fd - gx[i]).abs() < 2e-3 * gx[i].abs().max(1.0), "dx[{i}]: fd {fd} vs {}", gx[i]);
        }
        for i in [0, 36] {
            let fd = finite_diff(&w, i, 1e-2, |w| loss(&x, w))?;
            assert!((fd - gw[i]).abs() < 2e-3 * gw[i].abs().max(1.0), "dw[{i}]: fd {fd} vs {}", gw[i]);
        }
        Ok(())
    }

    #[test]
    fn bit_identical_across_runs_and_thread_counts() -> Result<()> {
        let (x, w) = (randn(30, (1000, 130))?, randn(31, 130)?);
        assert_same_bits_across_threads(|| {
            let (xv, wv) = (Var::from_tensor(&x)?, Var::from_tensor(&w)?);
            let y = rms_norm(&xv, &wv, EPS)?;
            let g = grads(&[&xv, &wv], &y, 32)?;
            Ok(vec![y, g[0].clone(), g[1].clone()])
        })
    }
}
