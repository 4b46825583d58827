//! Fused rotary position embedding in HF's "rotate half" layout: for each row of D elements,
//! halves `x1 = x[..D/2]`, `x2 = x[D/2..]` and the matching halves of cos and sin,
//! `y1 = x1 ⊙ c1 - x2 ⊙ s1` and `y2 = x2 ⊙ c2 + x1 ⊙ s2` (= `x ⊙ cos + rotate_half(x) ⊙ sin`).
//! The backward is the transposed rotation: `dx1 = g1 ⊙ c1 + g2 ⊙ s2`, `dx2 = g2 ⊙ c2 - g1 ⊙ s1`.
//!
//! Inputs are read through their strides (any layout whose last dim has stride 1, broadcast
//! cos/sin included), so the (B, H, T, D) view that `split_heads` makes by a transpose is not
//! copied first; the output is contiguous.

use super::multiversion;
use candle_core::{CpuStorage, CustomOp3, Layout, Result, Shape, Tensor, D};
use rayon::prelude::*;

/// Rows per rayon task: ~8K floats per task; depends on D only, never on threads.
fn rows_per_task(d: usize) -> usize {
    (8192 / d.max(1)).max(1)
}

/// Fused `x ⊙ cos + rotate_half(x) ⊙ sin` for x (…, D) and cos, sin broadcastable to x's shape
/// (e.g. x (B, H, T, D) and cos, sin (B, 1, T, D)); f32 tensors on the CPU, D even. The
/// gradient flows to x only (cos and sin get none).
pub fn rope(x: &Tensor, cos: &Tensor, sin: &Tensor) -> Result<Tensor> {
    let d = x.dim(D::Minus1)?;
    if !d.is_multiple_of(2) {
        candle_core::bail!("rope: head dim {d} is odd");
    }
    let x = unit_last_stride(x)?;
    let cos = unit_last_stride(&cos.broadcast_as(x.shape())?)?;
    let sin = unit_last_stride(&sin.broadcast_as(x.shape())?)?;
    x.apply_op3(&cos, &sin, RopeOp { transpose: false })
}

/// `t` itself when its last dim has stride 1, else a contiguous copy.
fn unit_last_stride(t: &Tensor) -> Result<Tensor> {
    if t.rank() == 0 || t.stride().last() == Some(&1) || t.dim(D::Minus1)? == 1 {
        Ok(t.clone())
    } else {
        t.contiguous()
    }
}

/// Offsets of the rows (all dims but the last) of a strided layout, in row-major order,
/// advanced like an odometer (no division per row).
struct Rows<'a> {
    dims: &'a [usize],
    strides: &'a [usize],
    idx: Vec<usize>,
    offset: usize,
}

impl<'a> Rows<'a> {
    /// Starts at row `row` (flattened index over the leading dims).
    fn new(l: &'a Layout, row: usize) -> Self {
        let n = l.dims().len() - 1;
        let (dims, strides) = (&l.dims()[..n], &l.stride()[..n]);
        let mut idx = vec![0; n];
        let (mut rest, mut offset) = (row, l.start_offset());
        for k in (0..n).rev() {
            idx[k] = rest % dims[k];
            rest /= dims[k];
            offset += idx[k] * strides[k];
        }
        Self { dims, strides, idx, offset }
    }

    /// The current row's offset, then moves to the next row.
    #[inline(always)]
    fn next_offset(&mut self) -> usize {
        let cur = self.offset;
        for k in (0..self.idx.len()).rev() {
            self.idx[k] += 1;
            self.offset += self.strides[k];
            if self.idx[k] < self.dims[k] {
                break;
            }
            self.offset -= self.idx[k] * self.strides[k];
            self.idx[k] = 0;
        }
        cur
    }
}

multiversion! {
    /// Consecutive rows: `y` (rows·D, contiguous) = the rotation (or its transpose) of the rows
    /// of x, cos and sin at the offsets their `Rows` yield.
    fn rope_rows(x: &[f32], c: &[f32], s: &[f32], y: &mut [f32], d: usize, rows: &mut [Rows<'_>; 3], transpose: bool) {
        let h = d / 2;
        for yr in y.chunks_exact_mut(d) {
            let (ox, oc, os) = (rows[0].next_offset(), rows[1].next_offset(), rows[2].next_offset());
            let (x1, x2) = (&x[ox..ox + h], &x[ox + h..ox + d]);
            let (c1, c2) = (&c[oc..oc + h], &c[oc + h..oc + d]);
            let (s1, s2) = (&s[os..os + h], &s[os + h..os + d]);
            let (y1, y2) = yr.split_at_mut(h);
            let y2 = &mut y2[..h];
            if transpose {
                for i in 0..h {
                    y1[i] = x1[i] * c1[i] + x2[i] * s2[i];
                    y2[i] = x2[i] * c2[i] - x1[i] * s1[i];
                }
            } else {
                for i in 0..h {
                    y1[i] = x1[i] * c1[i] - x2[i] * s1[i];
                    y2[i] = x2[i] * c2[i] + x1[i] * s2[i];
                }
            }
        }
    }
}

/// (x, cos, sin) of one shape (…, D) → y (…, D) contiguous; `transpose` applies the backward
/// rotation (x is then the output gradient).
struct RopeOp {
    transpose: bool,
}

impl CustomOp3 for RopeOp {
    fn name(&self) -> &'static str {
        if self.transpose {
            "align-rope-bwd"
        } else {
            "align-rope"
        }
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
        let (x, c, s) = (s1.as_slice::<f32>()?, s2.as_slice::<f32>()?, s3.as_slice::<f32>()?);
        let shape = l1.shape();
        if l2.shape() != shape || l3.shape() != shape || shape.rank() == 0 {
            candle_core::bail!("rope: x {shape:?}, cos {:?}, sin {:?} differ", l2.shape(), l3.shape());
        }
        let d = shape.dims()[shape.rank() - 1];
        for l in [l1, l2, l3] {
            if d > 1 && l.stride()[shape.rank() - 1] != 1 {
                candle_core::bail!("rope: last dim must have stride 1, got strides {:?}", l.stride());
            }
        }
        if !d.is_multiple_of(2) {
            candle_core::bail!("rope: head dim {d} is odd");
        }
        let mut y = vec![0f32; shape.elem_count()];
        if d == 0 {
            return Ok((CpuStorage::F32(y), shape.clone()));
        }
        let rpt = rows_per_task(d);
        let run = |(task, y): (usize, &mut [f32])| {
            let row0 = task * rpt;
            let mut rows = [Rows::new(l1, row0), Rows::new(l2, row0), Rows::new(l3, row0)];
            rope_rows(x, c, s, y, d, &mut rows, self.transpose);
        };
        if super::sequential(y.len()) {
            y.chunks_mut(rpt * d).enumerate().for_each(run);
        } else {
            y.par_chunks_mut(rpt * d).enumerate().for_each(run);
        }
        Ok((CpuStorage::F32(y), shape.clone()))
    }

    fn bwd(&self, _x: &Tensor, cos: &Tensor, sin: &Tensor, _y: &Tensor, g: &Tensor) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let dx = unit_last_stride(g)?.apply_op3_no_bwd(cos, sin, &RopeOp { transpose: !self.transpose })?;
        Ok((Some(dx), None, None))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::testing::{assert_same_bits_across_threads, finite_diff, functional, grads, randn, rel_err};
    use crate::layers::attention::split_heads;
    use crate::layers::rope::{apply_rope_reference, Rope};
    use candle_core::{Device, Var};

    /// cos, sin (B, 1, T, D) for random positions, as the model builds them.
    fn cos_sin(b: usize, t: usize, d: usize, seed: u64) -> Result<(Tensor, Tensor)> {
        let pos = (randn(seed, (b, t))?.abs()? * 50.0)?.floor()?.to_dtype(candle_core::DType::U32)?;
        Rope::new(d, 10000.0, &Device::Cpu)?.cos_sin(&pos)
    }

    /// Fused vs reference values and x gradients, x = split_heads of a (B, T, H·D) projection
    /// (a non-contiguous view), as in attention.
    fn check(b: usize, t: usize, h: usize, d: usize, seed: u64) -> Result<()> {
        let proj = Var::from_tensor(&randn(seed, (b, t, h * d))?)?;
        let x = split_heads(&proj, h, d)?; // (B, H, T, D)
        assert!(d <= 1 || h == 1 || !x.is_contiguous());
        let (cos, sin) = cos_sin(b, t, d, seed + 1)?;
        let y = rope(&x, &cos, &sin)?;
        let y_ref = apply_rope_reference(&x, &cos, &sin)?;
        let e = rel_err(&y, &y_ref)?;
        assert!(e < 1e-5, "b {b} t {t} h {h} d {d}: value rel err {e}");
        let g = grads(&[&proj], &y, seed + 2)?;
        let g_ref = grads(&[&proj], &y_ref, seed + 2)?;
        let e = rel_err(&g[0], &g_ref[0])?;
        assert!(e < 1e-5, "b {b} t {t} h {h} d {d}: grad rel err {e}");
        Ok(())
    }

    #[test]
    fn matches_reference_on_strided_input_and_odd_sizes() -> Result<()> {
        check(2, 5, 3, 2, 0)?;
        check(3, 37, 4, 32, 10)?;
        check(2, 130, 2, 64, 20)?;
        // More rows than one task, not a multiple of it.
        check(1, 2 * rows_per_task(6) + 5, 1, 6, 30)?;
        check(1, 1, 1, 130, 40)?;
        Ok(())
    }

    #[test]
    fn matches_reference_on_contiguous_input_and_generation_shapes() -> Result<()> {
        let x = Var::from_tensor(&randn(50, (2, 3, 1, 8))?)?; // one new token per row, as with a KV cache
        let (cos, sin) = cos_sin(2, 1, 8, 51)?;
        let y = rope(&x, &cos, &sin)?;
        assert!(rel_err(&y, &apply_rope_reference(&x, &cos, &sin)?)? < 1e-5);
        let g = grads(&[&x], &y, 52)?;
        let g_ref = grads(&[&x], &apply_rope_reference(&x, &cos, &sin)?, 52)?;
        assert!(rel_err(&g[0], &g_ref[0])? < 1e-5);
        Ok(())
    }

    #[test]
    fn matches_reference_with_unequal_cos_sin_halves() -> Result<()> {
        // Arbitrary cos and sin (halves differ), so each half's coefficients are checked apart.
        let (b, h, t, d) = (2, 3, 5, 6);
        let x = Var::from_tensor(&randn(55, (b, h, t, d))?)?;
        let (cos, sin) = (randn(56, (b, 1, t, d))?, randn(57, (b, 1, t, d))?);
        let y = rope(&x, &cos, &sin)?;
        let y_ref = apply_rope_reference(&x, &cos, &sin)?;
        assert!(rel_err(&y, &y_ref)? < 1e-5);
        let (g, g_ref) = (grads(&[&x], &y, 58)?, grads(&[&x], &y_ref, 58)?);
        assert!(rel_err(&g[0], &g_ref[0])? < 1e-5);
        Ok(())
    }

    #[test]
    fn rejects_odd_head_dim() -> Result<()> {
        let x = randn(60, (1, 1, 2, 3))?;
        assert!(rope(&x, &x, &x).is_err());
        Ok(())
    }

    #[test]
    fn gradient_matches_finite_differences() -> Result<()> {
        let (b, t, h, d) = (1, 3, 2, 8);
        let proj = randn(70, (b, t, h * d))?;
        let (cos, sin) = cos_sin(b, t, d, 71)?;
        let loss = |p: &Tensor| -> Result<f32> { functional(&rope(&split_heads(p, h, d)?, &cos, &sin)?, 72)?.to_scalar::<f32>() };
        let pv = Var::from_tensor(&proj)?;
        let g = grads(&[&pv], &rope(&split_heads(&pv, h, d)?, &cos, &sin)?, 72)?[0].flatten_all()?.to_vec1::<f32>()?;
        for i in [0, 5, 13, 47] {
            let fd = finite_diff(&proj, i, 1e-2, loss)?;
            assert!((fd - g[i]).abs() < 2e-3 * g[i].abs().max(1.0), "dx[{i}]: fd {fd} vs {}", g[i]);
        }
        Ok(())
    }

    #[test]
    fn bit_identical_across_runs_and_thread_counts() -> Result<()> {
        let (b, t, h, d) = (2, 300, 3, 32);
        let proj = randn(80, (b, t, h * d))?;
        let (cos, sin) = cos_sin(b, t, d, 81)?;
        assert_same_bits_across_threads(|| {
            let pv = Var::from_tensor(&proj)?;
            let y = rope(&split_heads(&pv, h, d)?, &cos, &sin)?;
            let g = grads(&[&pv], &y, 82)?;
            Ok(vec![y, g[0].clone()])
        })
    }
}
