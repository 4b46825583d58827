//! Fused CPU kernels of the training losses and the optimizer, for f32 tensors on the CPU.
//!
//! - [`token_logprobs_fused`]: `log_softmax(logits)[target]` as one candle `CustomOp2` with a
//!   backward, so autograd tracks it without the (rows, V) log-softmax the composed code keeps.
//! - [`AdamWInplace`]: one AdamW step written into a parameter's storage in place
//!   (`Tensor::inplace_op2`), with the moments held by the optimizer as plain `Vec<f32>`.
//!
//! Every loop works on plain f32 slices, is split over rayon's pool in chunks whose size depends
//! only on the shape (so results are bit-identical for any thread count) and is compiled for
//! AVX-512 / AVX2 when the CPU has them (align-models' `multiversion!`, `kernels::simd`); the arithmetic is plain IEEE (no
//! fast-math, no contraction into FMA), so every version gives the same bits.

use candle_core::{CpuStorage, CustomOp2, CustomOp3, DType, InplaceOp2, Layout, Result, Shape, Tensor};
use align_models::kernels::contiguous_f32;
use align_models::kernels::simd::{exp, lanes_sum, row_max, LANES};
use align_models::multiversion;
use rayon::prelude::*;
use std::cell::RefCell;

// ---------------------------------------------------------------------------------------------
// Token log-probabilities
// ---------------------------------------------------------------------------------------------

/// `Σ e^(x - max)` of a row.
#[inline(always)]
fn row_sum_exp(x: &[f32], max: f32) -> f32 {
    let mut acc = [0f32; LANES];
    let chunks = x.chunks_exact(LANES);
    let rem = chunks.remainder();
    for ch in chunks {
        for i in 0..LANES {
            acc[i] += exp(ch[i] - max);
        }
    }
    let mut s = lanes_sum(&acc);
    for &a in rem {
        s += exp(a - max);
    }
    s
}

/// Rows per rayon task: ~32K logits (128 KB) per task; depends on V only, never on threads.
pub(crate) fn rows_per_task(v: usize) -> usize {
    (32768 / v.max(1)).clamp(1, 256)
}

multiversion! {
    /// Forward over whole rows of V logits: per row, `max`, `ln Σ e^(x - max)` and the target's
    /// log-probability `(x[t] - max) - ln Σ e^(x - max)` (the composed code's formula).
    fn lp_fwd_rows(x: &[f32], tgt: &[u32], logp: &mut [f32], max: &mut [f32], lnsum: &mut [f32]) {
        let v = x.len() / tgt.len();
        for (r, row) in x.chunks_exact(v).enumerate() {
            let m = row_max(row);
            let ls = row_sum_exp(row, m).ln();
            max[r] = m;
            lnsum[r] = ls;
            logp[r] = (row[tgt[r] as usize] - m) - ls;
        }
    }
}

multiversion! {
    /// Backward over whole rows: `dx = g · (onehot(t) − softmax(x))`, the softmax recomputed as
    /// `e^((x - max) - ln Σ)` from the forward's saved per-row `max` and `ln Σ`.
    fn lp_bwd_rows(x: &[f32], tgt: &[u32], max: &[f32], lnsum: &[f32], g: &[f32], dx: &mut [f32]) {
        let v = x.len() / tgt.len();
        for (r, (row, drow)) in x.chunks_exact(v).zip(dx.chunks_exact_mut(v)).enumerate() {
            let (m, ls, gr) = (max[r], lnsum[r], g[r]);
            for (d, &xi) in drow.iter_mut().zip(row) {
                *d = -(gr * exp((xi - m) - ls));
            }
            drow[tgt[r] as usize] += gr;
        }
    }
}

/// Log-probability of each target token, fused: logits (…, V) f32 on the CPU (any layout; made
/// contiguous first), targets (…) of the same leading shape, any integer dtype → (…) f32.
/// Gradients flow to the logits only. Errors on a target outside `0..V`.
pub fn token_logprobs_fused(logits: &Tensor, targets: &Tensor) -> Result<Tensor> {
    let dims = logits.dims();
    let Some((&v, lead)) = dims.split_last() else {
        candle_core::bail!("token_logprobs: logits must have a vocabulary dimension, got a scalar")
    };
    if lead != targets.dims() {
        candle_core::bail!("token_logprobs: logits {dims:?} and targets {:?} do not match", targets.dims());
    }
    if v == 0 {
        candle_core::bail!("token_logprobs: empty vocabulary");
    }
    let targets = targets.to_dtype(DType::U32)?.contiguous()?;
    // (3, …): the log-probs, then the per-row max and ln Σ e^(x - max) the backward needs.
    let out = logits.contiguous()?.apply_op2(&targets, TokenLogprobsOp)?;
    out.get(0)
}

/// Forward op: (logits (…, V), targets (…) u32) → (3, …) = [log p(target); max; ln Σ e^(x-max)].
/// Only the first row is differentiable: the backward ignores the gradient of the other two
/// (no caller sees them: [`token_logprobs_fused`] returns row 0).
struct TokenLogprobsOp;

impl CustomOp2 for TokenLogprobsOp {
    fn name(&self) -> &'static str {
        "align-token-logprobs"
    }

    fn cpu_fwd(&self, s1: &CpuStorage, l1: &Layout, s2: &CpuStorage, l2: &Layout) -> Result<(CpuStorage, Shape)> {
        let x = contiguous_f32(s1, l1, "token_logprobs logits")?;
        let tgt = match l2.contiguous_offsets() {
            Some((a, b)) => &s2.as_slice::<u32>()?[a..b],
            None => candle_core::bail!("token_logprobs: targets not contiguous"),
        };
        let rows = tgt.len();
        let v = *l1.dims().last().unwrap_or(&0);
        if v == 0 || x.len() != rows * v {
            candle_core::bail!("token_logprobs: {} logits are not {rows} rows of {v}", x.len());
        }
        if let Some(&t) = tgt.iter().find(|&&t| t as usize >= v) {
            candle_core::bail!("token_logprobs: target {t} outside the vocabulary of {v}");
        }
        let mut out = vec![0f32; 3 * rows];
        let (logp, rest) = out.split_at_mut(rows);
        let (max, lnsum) = rest.split_at_mut(rows);
        let rpt = rows_per_task(v);
        (
            x.par_chunks(rpt * v),
            tgt.par_chunks(rpt),
            logp.par_chunks_mut(rpt),
            max.par_chunks_mut(rpt),
            lnsum.par_chunks_mut(rpt),
        )
            .into_par_iter()
            .for_each(|(x, t, lp, m, ls)| lp_fwd_rows(x, t, lp, m, ls));
        let mut shape = vec![3];
        shape.extend_from_slice(l2.dims());
        Ok((CpuStorage::F32(out), Shape::from(shape)))
    }

    fn bwd(&self, logits: &Tensor, targets: &Tensor, res: &Tensor, grad: &Tensor) -> Result<(Option<Tensor>, Option<Tensor>)> {
        // (3, …) = [max; ln Σ; gradient of the log-probs].
        let aux = Tensor::cat(&[&res.narrow(0, 1, 2)?, &grad.narrow(0, 0, 1)?.to_dtype(DType::F32)?], 0)?.contiguous()?;
        let dx = logits.apply_op3_no_bwd(targets, &aux, &TokenLogprobsBwdOp)?;
        Ok((Some(dx), None))
    }
}

/// Backward op: (logits (…, V), targets (…), aux (3, …)) → d logits (…, V).
struct TokenLogprobsBwdOp;

impl CustomOp3 for TokenLogprobsBwdOp {
    fn name(&self) -> &'static str {
        "align-token-logprobs-bwd"
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
        let x = contiguous_f32(s1, l1, "token_logprobs bwd logits")?;
        let tgt = match l2.contiguous_offsets() {
            Some((a, b)) => &s2.as_slice::<u32>()?[a..b],
            None => candle_core::bail!("token_logprobs bwd: targets not contiguous"),
        };
        let aux = contiguous_f32(s3, l3, "token_logprobs bwd aux")?;
        let rows = tgt.len();
        let v = *l1.dims().last().unwrap_or(&0);
        if v == 0 || x.len() != rows * v || aux.len() != 3 * rows {
            candle_core::bail!("token_logprobs bwd: {} logits, {rows} targets, {} aux", x.len(), aux.len());
        }
        let (max, rest) = aux.split_at(rows);
        let (lnsum, g) = rest.split_at(rows);
        let mut dx = vec![0f32; x.len()];
        let rpt = rows_per_task(v);
        (
            x.par_chunks(rpt * v),
            tgt.par_chunks(rpt),
            max.par_chunks(rpt),
            lnsum.par_chunks(rpt),
            g.par_chunks(rpt),
            dx.par_chunks_mut(rpt * v),
        )
            .into_par_iter()
            .for_each(|(x, t, m, ls, g, dx)| lp_bwd_rows(x, t, m, ls, g, dx));
        Ok((CpuStorage::F32(dx), l1.shape().clone()))
    }
}

// ---------------------------------------------------------------------------------------------
// AdamW
// ---------------------------------------------------------------------------------------------

/// Elements per rayon task of the AdamW update; a constant, so results never depend on threads.
const ADAMW_TASK: usize = 32768;

/// The scalars of one AdamW step, already in f32 exactly as the composed tensor code
/// (`optim::AdamW`'s fallback) rounds them, so both give the same bits.
#[derive(Debug, Clone, Copy)]
pub struct AdamWScalars {
    /// `1 - lr * wd` for parameters in the decay group, `None` for the others (or `wd = 0`).
    pub decay_mul: Option<f32>,
    pub b1: f32,
    pub one_minus_b1: f32,
    pub b2: f32,
    pub one_minus_b2: f32,
    /// `1 / sqrt(1 - b2^t)`.
    pub inv_bc2_sqrt: f32,
    pub eps: f32,
    /// `lr / (1 - b1^t)`.
    pub step_size: f32,
}

multiversion! {
    /// One AdamW step over a chunk: p, m, v updated in place from g, each read once. Written as
    /// the composed code's candle ops compute it (`affine` is `x * mul + add`, so its `+ 0.0` is
    /// kept: it only turns -0.0 into +0.0, and keeps the two paths bit-identical).
    fn adamw_chunk(p: &mut [f32], m: &mut [f32], v: &mut [f32], g: &[f32], k: &AdamWScalars) {
        let k = *k;
        match k.decay_mul {
            Some(dm) => {
                for (((p, m), v), &g) in p.iter_mut().zip(m.iter_mut()).zip(v.iter_mut()).zip(g) {
                    adamw_elem(p, m, v, g, dm, true, &k);
                }
            }
            None => {
                for (((p, m), v), &g) in p.iter_mut().zip(m.iter_mut()).zip(v.iter_mut()).zip(g) {
                    adamw_elem(p, m, v, g, 1.0, false, &k);
                }
            }
        }
    }
}

#[inline(always)]
fn adamw_elem(p: &mut f32, m: &mut f32, v: &mut f32, g: f32, decay_mul: f32, decay: bool, k: &AdamWScalars) {
    let mut pi = *p;
    if decay {
        pi = pi * decay_mul + 0.0;
    }
    let mi = (*m * k.b1 + 0.0) + (g * k.one_minus_b1 + 0.0);
    let vi = (*v * k.b2 + 0.0) + ((g * g) * k.one_minus_b2 + 0.0);
    let denom = vi.sqrt() * k.inv_bc2_sqrt + k.eps;
    *p = pi - ((mi / denom) * k.step_size + 0.0);
    *m = mi;
    *v = vi;
}

/// In-place AdamW step of one f32 CPU parameter: `param.inplace_op2(&grad, &op)` updates the
/// parameter's storage, and the moments `m`, `v` (the optimizer's own `Vec<f32>`s, borrowed for
/// the call) in the same pass. The moments sit in a `RefCell` because candle hands in-place ops
/// `&self`; the op is used for one call and never shared between threads.
pub struct AdamWInplace<'a> {
    pub moments: RefCell<(&'a mut [f32], &'a mut [f32])>,
    pub scalars: AdamWScalars,
}

impl InplaceOp2 for AdamWInplace<'_> {
    fn name(&self) -> &'static str {
        "align-adamw"
    }

    fn cpu_fwd(&self, s1: &mut CpuStorage, l1: &Layout, s2: &CpuStorage, l2: &Layout) -> Result<()> {
        let g = contiguous_f32(s2, l2, "adamw grad")?;
        let Some((a, b)) = l1.contiguous_offsets() else {
            candle_core::bail!("adamw: parameter not contiguous, strides {:?}", l1.stride())
        };
        let p = match s1 {
            CpuStorage::F32(data) => &mut data[a..b],
            _ => candle_core::bail!("adamw: parameter is not f32"),
        };
        let mut mv = self.moments.borrow_mut();
        let (m, v) = &mut *mv;
        if g.len() != p.len() || m.len() != p.len() || v.len() != p.len() {
            candle_core::bail!("adamw: parameter {}, grad {}, moments {} / {} elements", p.len(), g.len(), m.len(), v.len());
        }
        let k = &self.scalars;
        (p.par_chunks_mut(ADAMW_TASK), m.par_chunks_mut(ADAMW_TASK), v.par_chunks_mut(ADAMW_TASK), g.par_chunks(ADAMW_TASK))
            .into_par_iter()
            .for_each(|(p, m, v, g)| adamw_chunk(p, m, v, g, k));
        Ok(())
    }
}
