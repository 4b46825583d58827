//! Fused SwiGLU activation `silu(gate) ⊙ up` (Shazeer 2020), with its backward.
//!
//! With `σ = sigmoid(gate)` and `g` the output gradient: `d_up = g ⊙ gate ⊙ σ` and
//! `d_gate = g ⊙ up ⊙ σ ⊙ (1 + gate ⊙ (1 - σ))`. The sigmoid uses a vectorizable exp
//! (Cephes' expf polynomial, ~1 ulp), so the loops compile to SIMD instead of calling libm.

use super::simd::exp;
use super::{contiguous_f32, multiversion};
use candle_core::{CpuStorage, CustomOp2, CustomOp3, Layout, Result, Shape, Tensor};
use rayon::prelude::*;

/// Elements per rayon task; a constant, so results never depend on the thread count.
const TASK: usize = 16384;

/// Fused `silu(gate) ⊙ up` for gate and up of one shape: f32 tensors on the CPU, any layout
/// (made contiguous first). Gradients flow to both.
pub fn swiglu(gate: &Tensor, up: &Tensor) -> Result<Tensor> {
    if gate.shape() != up.shape() {
        candle_core::bail!("swiglu: gate {:?} and up {:?} differ", gate.shape(), up.shape());
    }
    gate.contiguous()?.apply_op2(&up.contiguous()?, SwiGluOp)
}

/// `1 / (1 + e^-x)`.
#[inline(always)]
fn sigmoid(x: f32) -> f32 {
    1.0 / (1.0 + exp(-x))
}

multiversion! {
    /// `y = silu(gate) ⊙ up`, all slices of one length.
    fn fwd_chunk(gate: &[f32], up: &[f32], y: &mut [f32]) {
        for ((y, &a), &b) in y.iter_mut().zip(gate).zip(up) {
            *y = a * sigmoid(a) * b;
        }
    }
}

multiversion! {
    /// `d_gate`, `d_up` from gate, up and the output gradient g, all slices of one length.
    fn bwd_chunk(gate: &[f32], up: &[f32], g: &[f32], d_gate: &mut [f32], d_up: &mut [f32]) {
        for ((((dg, du), &a), &b), &g) in d_gate.iter_mut().zip(d_up.iter_mut()).zip(gate).zip(up).zip(g) {
            let s = sigmoid(a);
            *du = g * a * s;
            *dg = g * b * s * (1.0 + a * (1.0 - s));
        }
    }
}

/// Forward op: (gate, up) → `silu(gate) ⊙ up`, contiguous inputs of one shape.
struct SwiGluOp;

impl CustomOp2 for SwiGluOp {
    fn name(&self) -> &'static str {
        "align-swiglu"
    }

    fn cpu_fwd(&self, s1: &CpuStorage, l1: &Layout, s2: &CpuStorage, l2: &Layout) -> Result<(CpuStorage, Shape)> {
        let gate = contiguous_f32(s1, l1, "swiglu gate")?;
        let up = contiguous_f32(s2, l2, "swiglu up")?;
        if gate.len() != up.len() {
            candle_core::bail!("swiglu: gate has {}, up {} elements", gate.len(), up.len());
        }
        let mut y = vec![0f32; gate.len()];
        if super::sequential(gate.len()) {
            y.chunks_mut(TASK).zip(gate.chunks(TASK)).zip(up.chunks(TASK)).for_each(|((y, a), b)| fwd_chunk(a, b, y));
        } else {
            (y.par_chunks_mut(TASK), gate.par_chunks(TASK), up.par_chunks(TASK)).into_par_iter().for_each(|(y, a, b)| fwd_chunk(a, b, y));
        }
        Ok((CpuStorage::F32(y), l1.shape().clone()))
    }

    fn bwd(&self, gate: &Tensor, up: &Tensor, _y: &Tensor, g: &Tensor) -> Result<(Option<Tensor>, Option<Tensor>)> {
        // (2, …): d_gate then d_up.
        let out = gate.contiguous()?.apply_op3_no_bwd(&up.contiguous()?, &g.contiguous()?, &SwiGluBwdOp)?;
        Ok((Some(out.get(0)?), Some(out.get(1)?)))
    }
}

/// Backward op: (gate, up, grad) → (2, …) = [d_gate; d_up].
struct SwiGluBwdOp;

impl CustomOp3 for SwiGluBwdOp {
    fn name(&self) -> &'static str {
        "align-swiglu-bwd"
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
        let gate = contiguous_f32(s1, l1, "swiglu bwd gate")?;
        let up = contiguous_f32(s2, l2, "swiglu bwd up")?;
        let g = contiguous_f32(s3, l3, "swiglu bwd grad")?;
        let n = gate.len();
        if up.len() != n || g.len() != n {
            candle_core::bail!("swiglu bwd: gate {n}, up {}, grad {} elements", up.len(), g.len());
        }
        let mut out = vec![0f32; 2 * n];
        let (d_gate, d_up) = out.split_at_mut(n);
        if super::sequential(n) {
            let chunks = d_gate.chunks_mut(TASK).zip(d_up.chunks_mut(TASK)).zip(gate.chunks(TASK)).zip(up.chunks(TASK)).zip(g.chunks(TASK));
            chunks.for_each(|((((dg, du), a), b), g)| bwd_chunk(a, b, g, dg, du));
        } else {
            (d_gate.par_chunks_mut(TASK), d_up.par_chunks_mut(TASK), gate.par_chunks(TASK), up.par_chunks(TASK), g.par_chunks(TASK))
                .into_par_iter()
                .for_each(|(dg, du, a, b, g)| bwd_chunk(a, b, g, dg, du));
        }
        let mut dims = vec![2];
        dims.extend_from_slice(l1.dims());
        Ok((CpuStorage::F32(out), Shape::from(dims)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::testing::{assert_same_bits_across_threads, finite_diff, functional, grads, randn, rel_err};
    use crate::layers::mlp::swiglu_reference;
    use candle_core::Var;

    #[test]
    fn exp_is_accurate_to_a_few_ulp() {
        let mut worst = 0f32;
        for i in -8700..8800 {
            let x = i as f32 / 100.0 + 0.003;
            let (got, want) = (exp(x), (x as f64).exp());
            worst = worst.max(((got as f64 - want) / want).abs() as f32);
        }
        assert!(worst < 3e-7, "worst relative error {worst}");
        assert!(exp(f32::NAN).is_nan());
        assert!(sigmoid(-200.0) < 1e-30 && sigmoid(200.0) == 1.0);
    }

    fn check(shape: &[usize], seed: u64) -> Result<()> {
        let gate = Var::from_tensor(&(randn(seed, shape)? * 3.0)?)?;
        let up = Var::from_tensor(&randn(seed + 1, shape)?)?;
        let y = swiglu(&gate, &up)?;
        let y_ref = swiglu_reference(&gate, &up)?;
        let e = rel_err(&y, &y_ref)?;
        assert!(e < 1e-5, "{shape:?}: value rel err {e}");
        let g = grads(&[&gate, &up], &y, seed + 2)?;
        let g_ref = grads(&[&gate, &up], &y_ref, seed + 2)?;
        for (name, a, b) in [("gate", &g[0], &g_ref[0]), ("up", &g[1], &g_ref[1])] {
            let e = rel_err(a, b)?;
            assert!(e < 1e-5, "{shape:?}: grad {name} rel err {e}");
        }
        Ok(())
    }

    #[test]
    fn matches_reference_on_odd_sizes() -> Result<()> {
        for (i, c) in [1, 3, 37, 130].into_iter().enumerate() {
            check(&[2, 5, c], 10 * i as u64)?;
        }
        // Several tasks, the last one partial.
        check(&[3, 7, 2 * TASK / 21 + 13], 50)?;
        Ok(())
    }

    #[test]
    fn matches_reference_on_non_contiguous_input() -> Result<()> {
        let base = Var::from_tensor(&randn(60, (37, 2, 5))?)?;
        let gate = base.transpose(0, 2)?; // (5, 2, 37), not contiguous
        let up = Var::from_tensor(&randn(61, (5, 2, 37))?)?;
        let y = swiglu(&gate, &up)?;
        assert!(rel_err(&y, &swiglu_reference(&gate, &up)?)? < 1e-5);
        let g = grads(&[&base, &up], &y, 62)?;
        let g_ref = grads(&[&base, &up], &swiglu_reference(&gate, &up)?, 62)?;
        assert!(rel_err(&g[0], &g_ref[0])? < 1e-5);
        assert!(rel_err(&g[1], &g_ref[1])? < 1e-5);
        Ok(())
    }

    #[test]
    fn gradients_match_finite_differences() -> Result<()> {
        let (gate, up) = (randn(70, (3, 37))?, randn(71, (3, 37))?);
        let loss = |a: &Tensor, b: &Tensor| -> Result<f32> { functional(&swiglu(a, b)?, 72)?.to_scalar::<f32>() };
        let (gv, uv) = (Var::from_tensor(&gate)?, Var::from_tensor(&up)?);
        let g = grads(&[&gv, &uv], &swiglu(&gv, &uv)?, 72)?;
        let (gg, gu) = (g[0].flatten_all()?.to_vec1::<f32>()?, g[1].flatten_all()?.to_vec1::<f32>()?);
        for i in [0, 40, 110] {
            let fd = finite_diff(&gate, i, 1e-2, |a| loss(a, &up))?;
            assert!((fd - gg[i]).abs() < 2e-3 * gg[i].abs().max(1.0), "d_gate[{i}]: fd {fd} vs {}", gg[i]);
            let fd = finite_diff(&up, i, 1e-2, |b| loss(&gate, b))?;
            assert!((fd - gu[i]).abs() < 2e-3 * gu[i].abs().max(1.0), "d_up[{i}]: fd {fd} vs {}", gu[i]);
        }
        Ok(())
    }

    #[test]
    fn bit_identical_across_runs_and_thread_counts() -> Result<()> {
        let (gate, up) = (randn(80, (4, 100, 130))?, randn(81, (4, 100, 130))?);
        assert_same_bits_across_threads(|| {
            let (gv, uv) = (Var::from_tensor(&gate)?, Var::from_tensor(&up)?);
            let y = swiglu(&gv, &uv)?;
            let g = grads(&[&gv, &uv], &y, 82)?;
            Ok(vec![y, g[0].clone(), g[1].clone()])
        })
    }
}
