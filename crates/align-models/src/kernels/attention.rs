//! Fused attention `y = softmax(q kᵀ · scale + bias) v` for the CPU, computed block by block in
//! the manner of FlashAttention (Dao et al. 2022; FlashAttention-2, Dao 2023): the (T, Tk) score
//! and probability matrices of a head never exist in full, neither in the forward nor in the
//! autograd graph. The forward keeps only the output and two numbers per query row, the running
//! max `m` and the softmax denominator `l` (together the log-sum-exp `m + ln l`, kept apart so a
//! row whose every key is masked, where `m ≈ MASKED`, still recomputes its uniform probabilities
//! exactly); the backward recomputes the probabilities block by block from them.
//!
//! Shapes: q (B, H, T, D), k and v (B, KV, Tk, D) with grouped-query heads (query head `h` reads
//! key/value head `h / (H / KV)`, no copies), bias (B or 1, 1, T, Tk) from
//! [`crate::layers::mask::attention_bias`], scale `1 / sqrt(D)`; output (B, H, T, D). k and v
//! are read in place when each (batch row, head) holds Tk×D contiguous values, whatever the
//! strides between heads: the views a [`crate::causal_lm::KvCache`] returns into its
//! preallocated buffers are not copied ([`head_rows`]).
//!
//! Per block of `BQ` query rows and `BK` key rows, with `S = q kᵀ · scale + bias`:
//! forward (online softmax) `m' = max(m, rowmax S)`, `P = exp(S - m')`,
//! `l = l·exp(m - m') + rowsum P`, `y = y·exp(m - m') + P v`, finally `y /= l`;
//! backward, with `δ = rowsum(dy ⊙ y)` and `P = exp(S - m) / l`:
//! `dv += Pᵀ dy`, `dS = P ⊙ (dy vᵀ - δ)`, `dk += scale · dSᵀ q`, `dq += scale · dS k`.
//!
//! The bias is scanned once per call into a kind per block: all zero (nothing to add), fully
//! masked with every query row of the block having an unmasked key elsewhere (skipped: its
//! probabilities are exactly 0, which is where causal attention saves half the work), or mixed
//! (added entry by entry). Rows whose every key is masked keep every block, so they get the same
//! uniform softmax as the composed code.
//!
//! Block matmuls go through `gemm` (single-threaded per call); the elementwise parts are plain f32
//! loops compiled for AVX-512 / AVX2 ([`multiversion`]) with a vectorisable `exp`. The forward
//! runs one rayon task per (batch, head, query block); the backward one task per (batch, KV
//! head), which owns the dk/dv rows of its head and the dq rows of its query heads and sums
//! them in a fixed order: results are bit-identical whatever the number of threads.

use super::simd::{exp, lanes_sum, row_max};
use super::{contiguous_f32, multiversion};
use crate::layers::mask::MASKED;
use candle_core::{CpuStorage, CustomOp3, Layout, Result, Shape, Storage, StorageRef, Tensor};
use rayon::prelude::*;
use std::sync::OnceLock;

/// Query rows per block.
const BQ: usize = 64;
/// Key rows per block.
const BK: usize = 64;

/// Block kind: every bias entry is 0, nothing to add.
const ZERO: u8 = 0;
/// Block kind: add the bias entry by entry.
const MIXED: u8 = 1;
/// Block kind: masked for every row, each of which has an unmasked key in another block, so
/// `exp(S - m)` is exactly 0 here: skipped.
const SKIP: u8 = 2;
/// A bias entry at most this is masked (`attention_bias` writes `MASKED`).
const MASKED_AT_MOST: f32 = MASKED / 2.0;
/// A row with an entry above this has an unmasked key: its max score is at least ~2.5e8 above
/// any masked entry, whose probability therefore underflows to exactly 0.
const LIVE_ABOVE: f32 = MASKED / 4.0;

/// Fused `softmax(q kᵀ / sqrt(D) + bias) v` for q (B, H, T, D), k and v (B, KV, Tk, D) with
/// H a multiple of KV, and bias (B or 1, 1, T, Tk), all f32 on the CPU; returns (B, H, T, D).
/// Gradients flow to q, k and v (the bias gets none).
pub fn flash_attention(q: &Tensor, k: &Tensor, v: &Tensor, bias: &Tensor) -> Result<Tensor> {
    let (b, h, t, d) = q.dims4()?;
    let (kb, kv, tk, kd) = k.dims4()?;
    if v.dims() != k.dims() || kb != b || kd != d || kv == 0 || h % kv != 0 {
        candle_core::bail!(
            "flash_attention: q {:?}, k {:?}, v {:?}: expected k and v (B, KV, Tk, D) with H a multiple of KV",
            q.dims(),
            k.dims(),
            v.dims()
        );
    }
    if t == 0 || tk == 0 || d == 0 {
        candle_core::bail!("flash_attention: empty attention, q {:?}, k {:?}", q.dims(), k.dims());
    }
    let (bb, one, bt, btk) = bias.dims4()?;
    if one != 1 || bt != t || btk != tk || (bb != 1 && bb != b) {
        candle_core::bail!("flash_attention: bias {:?}, expected ({b} or 1, 1, {t}, {tk})", bias.dims());
    }
    let bias = bias.contiguous()?;
    let kinds = {
        let (s, l) = bias.storage_and_layout();
        block_kinds(f32_slice(&s, l, "attention bias")?, bb, t, tk)
    };
    let dims = Dims { b, h, kv, t, tk, d, bb };
    let op = FlashAttention { dims, scale: (1.0 / (d as f64).sqrt()) as f32, bias, kinds, stats: OnceLock::new() };
    q.contiguous()?.apply_op3(&head_rows(k)?, &head_rows(v)?, op)
}

/// Whether the strides of a (B, KV, Tk, D) tensor make each (batch row, head) Tk×D contiguous
/// values (dimensions of size 1 have no stride to respect).
fn rows_contiguous(dims: &[usize], stride: &[usize]) -> bool {
    matches!((dims, stride), ([_, _, tk, d], [_, _, s2, s3]) if (*d == 1 || *s3 == 1) && (*tk == 1 || s2 == d))
}

/// `x` (B, KV, Tk, D) as it is when [`rows_contiguous`] (a KV cache's view of the filled prefix of
/// its buffers: heads `capacity × D` apart), else a contiguous copy.
fn head_rows(x: &Tensor) -> Result<Tensor> {
    if rows_contiguous(x.dims(), x.stride()) {
        Ok(x.clone())
    } else {
        x.contiguous()
    }
}

/// Keys or values (B, KV, Tk, D) read in place: Tk×D contiguous values per (batch row, head), any
/// strides between heads ([`head_rows`]).
struct Heads<'a> {
    /// The storage from the tensor's first element on.
    data: &'a [f32],
    /// Elements between batch rows and between heads.
    strides: (usize, usize),
    kv: usize,
    /// Tk × D.
    size: usize,
}

impl<'a> Heads<'a> {
    /// Checks the layout against `(b, kv, tk, d)` and that every head lies inside the storage.
    fn new(s: &'a StorageRef<'_>, l: &Layout, (b, kv, tk, d): (usize, usize, usize, usize), what: &str) -> Result<Self> {
        let data = match &**s {
            Storage::Cpu(c) => c.as_slice::<f32>()?,
            _ => candle_core::bail!("{what}: the fused attention runs on the CPU only"),
        };
        Self::from_slice(data, l, (b, kv, tk, d), what)
    }

    fn from_slice(data: &'a [f32], l: &Layout, (b, kv, tk, d): (usize, usize, usize, usize), what: &str) -> Result<Self> {
        let st = l.stride();
        if l.dims() != [b, kv, tk, d] || !rows_contiguous(l.dims(), st) {
            candle_core::bail!("{what}: expected ({b}, {kv}, {tk}, {d}) with contiguous rows per head, got {:?} strides {st:?}", l.dims())
        }
        let size = tk * d;
        let start = l.start_offset();
        let end = match b.checked_sub(1).zip(kv.checked_sub(1)) {
            Some((lb, lk)) => start + lb * st[0] + lk * st[1] + size,
            None => start,
        };
        if end > data.len() {
            candle_core::bail!("{what}: layout {:?} strides {st:?} from {start} overruns {} elements", l.dims(), data.len())
        }
        Ok(Self { data: &data[start..], strides: (st[0], st[1]), kv, size })
    }

    /// The Tk×D values of head `kvi` = batch row · KV + KV head.
    fn head(&self, kvi: usize) -> &'a [f32] {
        let (bi, g) = (kvi / self.kv, kvi % self.kv);
        &self.data[bi * self.strides.0 + g * self.strides.1..][..self.size]
    }
}

/// The shapes of one call.
#[derive(Clone, Copy, Debug)]
struct Dims {
    b: usize,
    h: usize,
    kv: usize,
    t: usize,
    tk: usize,
    d: usize,
    /// Batch rows of the bias: 1 (shared) or b.
    bb: usize,
}

impl Dims {
    fn n_rep(&self) -> usize {
        self.h / self.kv
    }
    fn nqb(&self) -> usize {
        self.t.div_ceil(BQ)
    }
    fn nkb(&self) -> usize {
        self.tk.div_ceil(BK)
    }
    /// Bias batch row of batch row `bi`.
    fn bias_row(&self, bi: usize) -> usize {
        if self.bb == 1 {
            0
        } else {
            bi
        }
    }
}

/// The kind of every (query block, key block) of the bias (bb, 1, t, tk): (bb, nqb, nkb).
fn block_kinds(bias: &[f32], bb: usize, t: usize, tk: usize) -> Vec<u8> {
    let (nqb, nkb) = (t.div_ceil(BQ), tk.div_ceil(BK));
    let mut kinds = vec![ZERO; bb * nqb * nkb];
    for (bi, rows) in bias.chunks_exact(t * tk).enumerate() {
        for qb in 0..nqb {
            let rows = &rows[qb * BQ * tk..(t.min((qb + 1) * BQ)) * tk];
            let all_live = rows.chunks_exact(tk).all(|r| r.iter().any(|&x| x > LIVE_ABOVE));
            for (kb, kind) in kinds[(bi * nqb + qb) * nkb..][..nkb].iter_mut().enumerate() {
                let cols = kb * BK..tk.min((kb + 1) * BK);
                let block = || rows.chunks_exact(tk).flat_map(|r| &r[cols.clone()]);
                *kind = if block().all(|&x| x == 0.0) {
                    ZERO
                } else if all_live && block().all(|&x| x <= MASKED_AT_MOST) {
                    SKIP
                } else {
                    MIXED
                };
            }
        }
    }
    kinds
}

/// The f32 elements of a contiguous CPU tensor behind a storage guard.
fn f32_slice<'a>(s: &'a StorageRef<'_>, l: &Layout, what: &str) -> Result<&'a [f32]> {
    match &**s {
        Storage::Cpu(c) => contiguous_f32(c, l, what),
        _ => candle_core::bail!("{what}: the fused attention runs on the CPU only"),
    }
}

/// `dst (m×n, row stride dst_rs) = [dst +] alpha · lhs (m×k) · rhs (k×n)`, operands given by
/// row and column strides; single-threaded `gemm`. Bounds are checked before the call.
#[allow(clippy::too_many_arguments)]
fn matmul(
    (m, n, k): (usize, usize, usize),
    dst: &mut [f32],
    dst_rs: usize,
    accumulate: bool,
    lhs: &[f32],
    (lhs_rs, lhs_cs): (usize, usize),
    rhs: &[f32],
    (rhs_rs, rhs_cs): (usize, usize),
    alpha: f32,
) {
    if m == 0 || n == 0 || k == 0 {
        return;
    }
    assert!((m - 1) * dst_rs + n <= dst.len(), "matmul: dst too short");
    assert!((m - 1) * lhs_rs + (k - 1) * lhs_cs < lhs.len(), "matmul: lhs too short");
    assert!((k - 1) * rhs_rs + (n - 1) * rhs_cs < rhs.len(), "matmul: rhs too short");
    // SAFETY: the asserts above keep every element gemm reads or writes inside the slices, and
    // dst (a &mut) cannot alias lhs or rhs.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst.as_mut_ptr(),
            1,
            dst_rs as isize,
            accumulate,
            lhs.as_ptr(),
            lhs_cs as isize,
            lhs_rs as isize,
            rhs.as_ptr(),
            rhs_cs as isize,
            rhs_rs as isize,
            1.0,
            alpha,
            false,
            false,
            false,
            gemm::Parallelism::None,
        )
    }
}

/// `v = exp(v - m)` in place; returns `Σ v` summed in 16 lanes then in a fixed order.
#[inline(always)]
fn exp_sub_sum(v: &mut [f32], m: f32) -> f32 {
    let mut acc = [0f32; 16];
    let mut chunks = v.chunks_exact_mut(16);
    for c in &mut chunks {
        for i in 0..16 {
            c[i] = exp(c[i] - m);
            acc[i] += c[i];
        }
    }
    let mut s = lanes_sum(&acc);
    for x in chunks.into_remainder() {
        *x = exp(*x - m);
        s += *x;
    }
    s
}

/// `Σ a ⊙ b` in 16 lanes then in a fixed order.
#[inline(always)]
fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0f32; 16];
    let (ca, cb) = (a.chunks_exact(16), b.chunks_exact(16));
    let (ra, rb) = (ca.remainder(), cb.remainder());
    for (x, y) in ca.zip(cb) {
        for i in 0..16 {
            acc[i] += x[i] * y[i];
        }
    }
    let mut s = lanes_sum(&acc);
    for (x, y) in ra.iter().zip(rb) {
        s += x * y;
    }
    s
}

multiversion! {
    /// `s (rows×cols) += bias (rows×cols at row stride tk)`.
    fn add_bias(s: &mut [f32], bias: &[f32], cols: usize, tk: usize) {
        for (i, sr) in s.chunks_exact_mut(cols).enumerate() {
            for (x, &b) in sr.iter_mut().zip(&bias[i * tk..i * tk + cols]) {
                *x += b;
            }
        }
    }
}

multiversion! {
    /// One online-softmax step over a block of scores s (rows×cols): updates the running max m
    /// and sum l of each row, rescales the accumulated output y (rows×d) and turns s into
    /// `exp(s - m)`, ready for `y += s v`.
    fn online_softmax(s: &mut [f32], cols: usize, m: &mut [f32], l: &mut [f32], y: &mut [f32], d: usize) {
        for (((sr, mi), li), yr) in s.chunks_exact_mut(cols).zip(m.iter_mut()).zip(l.iter_mut()).zip(y.chunks_exact_mut(d)) {
            let mx = row_max(sr);
            let m_new = if mx > *mi { mx } else { *mi };
            let corr = exp(*mi - m_new);
            let sum = exp_sub_sum(sr, m_new);
            *li = *li * corr + sum;
            *mi = m_new;
            if corr != 1.0 {
                for x in yr.iter_mut() {
                    *x *= corr;
                }
            }
        }
    }
}

multiversion! {
    /// Ends a query block: `y /= l` per row, and stores `(m, l)` per row in st (rows×2).
    fn finish_rows(y: &mut [f32], d: usize, m: &[f32], l: &[f32], st: &mut [f32]) {
        for (((yr, &mi), &li), sr) in y.chunks_exact_mut(d).zip(m).zip(l).zip(st.chunks_exact_mut(2)) {
            for x in yr.iter_mut() {
                *x /= li;
            }
            sr[0] = mi;
            sr[1] = li;
        }
    }
}

multiversion! {
    /// Scores s (rows×cols) to probabilities `exp(s - m) / l` with each row's (m, l) from st.
    fn probs(s: &mut [f32], cols: usize, st: &[f32]) {
        for (sr, ml) in s.chunks_exact_mut(cols).zip(st.chunks_exact(2)) {
            let (m, l) = (ml[0], ml[1]);
            for x in sr.iter_mut() {
                *x = exp(*x - m) / l;
            }
        }
    }
}

multiversion! {
    /// `dp = p ⊙ (dp - δ)` per row (rows×cols): the score gradient from the probability one.
    fn score_grad(p: &[f32], dp: &mut [f32], cols: usize, delta: &[f32]) {
        for ((pr, dr), &dl) in p.chunks_exact(cols).zip(dp.chunks_exact_mut(cols)).zip(delta) {
            for (g, &pi) in dr.iter_mut().zip(pr) {
                *g = pi * (*g - dl);
            }
        }
    }
}

multiversion! {
    /// `δ_i = Σ_d y ⊙ dy` per row of d elements.
    fn row_dots(y: &[f32], gy: &[f32], d: usize, delta: &mut [f32]) {
        for ((yr, gr), dl) in y.chunks_exact(d).zip(gy.chunks_exact(d)).zip(delta.iter_mut()) {
            *dl = dot(yr, gr);
        }
    }
}

/// One backward task's dq, dk and dv rows.
type GradChunks<'a> = (&'a mut [f32], &'a mut [f32], &'a mut [f32]);

/// The op: (q, k, v) → y, with the bias and its block kinds as fields and the per-row (m, l)
/// that the forward leaves for the backward.
struct FlashAttention {
    dims: Dims,
    scale: f32,
    /// (bb, 1, t, tk), contiguous f32 on the CPU.
    bias: Tensor,
    /// (bb, nqb, nkb), see [`block_kinds`].
    kinds: Vec<u8>,
    /// (b, h, t, 2): each query row's max score m and softmax denominator l.
    stats: OnceLock<Vec<f32>>,
}

impl FlashAttention {
    /// Forward of one query block of one head: q (rows×d) → y (rows×d, arriving zeroed),
    /// st (rows×2);
    /// k, v (tk×d) of its KV head, bias from the block's first row, kinds of its key blocks.
    #[allow(clippy::too_many_arguments)]
    fn fwd_block(&self, q: &[f32], k: &[f32], v: &[f32], bias: &[f32], kinds: &[u8], y: &mut [f32], st: &mut [f32]) {
        let Dims { tk, d, .. } = self.dims;
        let rows = q.len() / d;
        let mut s = vec![0f32; rows * BK];
        let mut m = vec![f32::NEG_INFINITY; rows];
        let mut l = vec![0f32; rows];
        for (kb, &kind) in kinds.iter().enumerate() {
            if kind == SKIP {
                continue;
            }
            let c0 = kb * BK;
            let cols = BK.min(tk - c0);
            let s = &mut s[..rows * cols];
            matmul((rows, cols, d), s, cols, false, q, (d, 1), &k[c0 * d..], (1, d), self.scale); // q kᵀ
            if kind == MIXED {
                add_bias(s, &bias[c0..], cols, tk);
            }
            online_softmax(s, cols, &mut m, &mut l, y, d);
            matmul((rows, d, cols), y, d, true, s, (cols, 1), &v[c0 * d..], (d, 1), 1.0); // y += P v
        }
        finish_rows(y, d, &m, &l, st);
    }

    /// Backward of one (batch row, KV head): accumulates dq (n_rep·t×d, its query heads), dk and
    /// dv (tk×d), key block by key block, then query head, then query block: a fixed order.
    #[allow(clippy::too_many_arguments)]
    fn bwd_group(
        &self,
        (bi, g): (usize, usize),
        (q, k, v): (&[f32], &Heads, &Heads),
        (y, gy): (&[f32], &[f32]),
        bias: &[f32],
        stats: &[f32],
        (dq, dk, dv): (&mut [f32], &mut [f32], &mut [f32]),
    ) {
        let dims = self.dims;
        let Dims { h, kv, t, tk, d, .. } = dims;
        let (n_rep, nqb, nkb) = (dims.n_rep(), dims.nqb(), dims.nkb());
        let h0 = bi * h + g * n_rep; // first (batch, head) row of this group
        let span = n_rep * t * d;
        let (q, y, gy) = (&q[h0 * t * d..][..span], &y[h0 * t * d..][..span], &gy[h0 * t * d..][..span]);
        let kvi = bi * kv + g;
        let (k, v) = (k.head(kvi), v.head(kvi));
        let st = &stats[h0 * t * 2..][..n_rep * t * 2];
        let bb = dims.bias_row(bi);
        let bias = &bias[bb * t * tk..][..t * tk];
        let kinds = &self.kinds[bb * nqb * nkb..][..nqb * nkb];
        let mut delta = vec![0f32; n_rep * t];
        row_dots(y, gy, d, &mut delta);
        let mut p = vec![0f32; BQ * BK];
        let mut dp = vec![0f32; BQ * BK];
        for kb in 0..nkb {
            let c0 = kb * BK;
            let cols = BK.min(tk - c0);
            let (kj, vj) = (&k[c0 * d..][..cols * d], &v[c0 * d..][..cols * d]);
            let (dkj, dvj) = (&mut dk[c0 * d..][..cols * d], &mut dv[c0 * d..][..cols * d]);
            for r in 0..n_rep {
                for qb in 0..nqb {
                    let kind = kinds[qb * nkb + kb];
                    if kind == SKIP {
                        continue;
                    }
                    let r0 = qb * BQ;
                    let rows = BQ.min(t - r0);
                    let at = r * t + r0; // first row of the block within the group
                    let (qi, gyi) = (&q[at * d..][..rows * d], &gy[at * d..][..rows * d]);
                    let dqi = &mut dq[at * d..][..rows * d];
                    let (p, dp) = (&mut p[..rows * cols], &mut dp[..rows * cols]);
                    matmul((rows, cols, d), p, cols, false, qi, (d, 1), kj, (1, d), self.scale); // q kᵀ
                    if kind == MIXED {
                        add_bias(p, &bias[r0 * tk + c0..], cols, tk);
                    }
                    probs(p, cols, &st[at * 2..][..rows * 2]);
                    matmul((cols, d, rows), dvj, d, true, p, (1, cols), gyi, (d, 1), 1.0); // dv += Pᵀ dy
                    matmul((rows, cols, d), dp, cols, false, gyi, (d, 1), vj, (1, d), 1.0); // dP = dy vᵀ
                    score_grad(p, dp, cols, &delta[at..][..rows]);
                    matmul((cols, d, rows), dkj, d, true, dp, (1, cols), qi, (d, 1), self.scale); // dk += s dSᵀ q
                    matmul((rows, d, cols), dqi, d, true, dp, (cols, 1), kj, (d, 1), self.scale); // dq += s dS k
                }
            }
        }
    }
}

impl CustomOp3 for FlashAttention {
    fn name(&self) -> &'static str {
        "align-flash-attention"
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
        let dims = self.dims;
        let Dims { b, h, kv, t, tk, d, .. } = dims;
        let (n_rep, nqb, nkb) = (dims.n_rep(), dims.nqb(), dims.nkb());
        let q = contiguous_f32(s1, l1, "attention q")?;
        let k = Heads::from_slice(s2.as_slice::<f32>()?, l2, (b, kv, tk, d), "attention k")?;
        let v = Heads::from_slice(s3.as_slice::<f32>()?, l3, (b, kv, tk, d), "attention v")?;
        if q.len() != b * h * t * d {
            candle_core::bail!("flash_attention: q storage size {} does not match {dims:?}", q.len());
        }
        let (bias_s, bias_l) = self.bias.storage_and_layout();
        let bias = f32_slice(&bias_s, bias_l, "attention bias")?;
        let mut y = vec![0f32; b * h * t * d];
        let mut stats = vec![0f32; b * h * t * 2];
        let seq = super::sequential(b * h * t * tk * d);
        let per_head = |(bh, (y, st)): (usize, (&mut [f32], &mut [f32]))| {
            let bi = bh / h;
            let kvi = bi * kv + (bh % h) / n_rep;
            let (k, v) = (k.head(kvi), v.head(kvi));
            let q = &q[bh * t * d..][..t * d];
            let bb = dims.bias_row(bi);
            let bias = &bias[bb * t * tk..][..t * tk];
            let kinds = &self.kinds[bb * nqb * nkb..][..nqb * nkb];
            let per_block = |(qb, (y, st)): (usize, (&mut [f32], &mut [f32]))| {
                let q = &q[qb * BQ * d..][..y.len()];
                self.fwd_block(q, k, v, &bias[qb * BQ * tk..], &kinds[qb * nkb..][..nkb], y, st)
            };
            if seq {
                y.chunks_mut(BQ * d).zip(st.chunks_mut(BQ * 2)).enumerate().for_each(per_block);
            } else {
                y.par_chunks_mut(BQ * d).zip(st.par_chunks_mut(BQ * 2)).enumerate().for_each(per_block);
            }
        };
        if seq {
            y.chunks_mut(t * d).zip(stats.chunks_mut(t * 2)).enumerate().for_each(per_head);
        } else {
            y.par_chunks_mut(t * d).zip(stats.par_chunks_mut(t * 2)).enumerate().for_each(per_head);
        }
        if self.stats.set(stats).is_err() {
            candle_core::bail!("flash_attention: one op instance was run twice");
        }
        Ok((CpuStorage::F32(y), Shape::from((b, h, t, d))))
    }

    fn bwd(
        &self,
        q: &Tensor,
        k: &Tensor,
        v: &Tensor,
        y: &Tensor,
        gy: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let dims = self.dims;
        let Dims { b, h, kv, t, tk, d, .. } = dims;
        let n_rep = dims.n_rep();
        let stats = self.stats.get().ok_or_else(|| candle_core::Error::Msg("flash_attention: backward before forward".into()))?;
        let gy = gy.contiguous()?;
        let (mut dq, mut dk, mut dv) = (vec![0f32; b * h * t * d], vec![0f32; b * kv * tk * d], vec![0f32; b * kv * tk * d]);
        {
            let guards = [q, k, v, y, &gy, &self.bias].map(|t| t.storage_and_layout());
            let names = ["attention q", "attention k", "attention v", "attention y", "attention dy", "attention bias"];
            let get = |i: usize| f32_slice(&guards[i].0, guards[i].1, names[i]);
            let heads = |i: usize| Heads::new(&guards[i].0, guards[i].1, (b, kv, tk, d), names[i]);
            let (qs, ks, vs, ys, gys, bias) = (get(0)?, heads(1)?, heads(2)?, get(3)?, get(4)?, get(5)?);
            if ys.len() != qs.len() || gys.len() != qs.len() {
                candle_core::bail!("flash_attention bwd: y has {}, dy {} elements, q {}", ys.len(), gys.len(), qs.len());
            }
            let run = |(task, (dq, dk, dv)): (usize, GradChunks)| {
                self.bwd_group((task / kv, task % kv), (qs, &ks, &vs), (ys, gys), bias, stats, (dq, dk, dv))
            };
            if super::sequential(b * h * t * tk * d) {
                dq.chunks_mut(n_rep * t * d).zip(dk.chunks_mut(tk * d)).zip(dv.chunks_mut(tk * d)).map(|((a, b), c)| (a, b, c)).enumerate().for_each(run);
            } else {
                (dq.par_chunks_mut(n_rep * t * d), dk.par_chunks_mut(tk * d), dv.par_chunks_mut(tk * d)).into_par_iter().enumerate().for_each(run);
            }
        }
        let dev = q.device();
        Ok((
            Some(Tensor::from_vec(dq, q.shape(), dev)?),
            Some(Tensor::from_vec(dk, k.shape(), dev)?),
            Some(Tensor::from_vec(dv, v.shape(), dev)?),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::testing::{assert_same_bits_across_threads, finite_diff, functional, grads, randn, rel_err};
    use crate::layers::attention::attend_reference;
    use crate::layers::mask::attention_bias;
    use candle_core::{Device, Var};

    /// Random q (b, h, t, d) and k, v (b, kv, tk, d) as variables.
    fn inputs((b, h, kv, t, tk, d): (usize, usize, usize, usize, usize, usize), seed: u64) -> Result<[Var; 3]> {
        Ok([
            Var::from_tensor(&randn(seed, (b, h, t, d))?)?,
            Var::from_tensor(&randn(seed + 1, (b, kv, tk, d))?)?,
            Var::from_tensor(&randn(seed + 2, (b, kv, tk, d))?)?,
        ])
    }

    /// Fused against the composed reference: values, and the gradients of q, k and v of a
    /// random linear functional of the output; relative error under 1e-5.
    fn check(qkv: &[Var; 3], bias: &Tensor, what: &str, seed: u64) -> Result<()> {
        let [q, k, v] = qkv;
        let y = flash_attention(q, k, v, bias)?;
        let y_ref = attend_reference(q, k, v, bias)?;
        let e = rel_err(&y, &y_ref)?;
        assert!(e < 1e-5, "{what}: value rel err {e}");
        let g = grads(&[q, k, v], &y, seed)?;
        let g_ref = grads(&[q, k, v], &y_ref, seed)?;
        for (name, a, b) in [("q", &g[0], &g_ref[0]), ("k", &g[1], &g_ref[1]), ("v", &g[2], &g_ref[2])] {
            // With one key per query (t = 1, no past) the q and k gradients are 0 up to rounding
            // on both sides: compare absolutely there.
            let scale = b.abs()?.max_all()?.to_scalar::<f32>()?;
            let e = if scale < 1e-6 { a.abs()?.max_all()?.to_scalar::<f32>()? } else { rel_err(a, b)? };
            assert!(e < 1e-5, "{what}: grad {name} error {e} (reference max {scale})");
        }
        Ok(())
    }

    /// A (b, tk) key mask with `pad[i]` leading zeros in row i.
    fn left_padding(pad: &[usize], tk: usize) -> Result<Tensor> {
        let m: Vec<u8> = pad.iter().flat_map(|&p| (0..tk).map(move |j| u8::from(j >= p))).collect();
        Tensor::from_vec(m, (pad.len(), tk), &Device::Cpu)
    }

    #[test]
    fn matches_reference_causal_on_odd_sizes_and_gqa() -> Result<()> {
        let mut seed = 0;
        for t in [1, 7, 33, 130] {
            for d in [8, 24] {
                for (h, kv) in [(2, 2), (4, 2), (6, 2)] {
                    let bias = attention_bias(2, t, 0, None, None, &Device::Cpu)?;
                    check(&inputs((2, h, kv, t, t, d), seed)?, &bias, &format!("t {t} d {d} h {h} kv {kv}"), seed + 3)?;
                    seed += 10;
                }
            }
        }
        Ok(())
    }

    #[test]
    fn matches_reference_with_a_kv_cache_offset() -> Result<()> {
        for (i, (t, past)) in [(1, 1), (1, 70), (7, 5), (33, 64), (130, 3)].into_iter().enumerate() {
            let bias = attention_bias(2, t, past, None, None, &Device::Cpu)?;
            let seed = 100 + 10 * i as u64;
            check(&inputs((2, 6, 2, t, past + t, 24), seed)?, &bias, &format!("t {t} past {past}"), seed + 3)?;
        }
        Ok(())
    }

    #[test]
    fn matches_reference_with_left_padding_and_fully_masked_rows() -> Result<()> {
        // Row 1's first 3 and row 2's first 70 queries see only padding: a uniform softmax.
        let (t, pad) = (130, [0, 3, 70]);
        let bias = attention_bias(3, t, 0, Some(&left_padding(&pad, t)?), None, &Device::Cpu)?;
        let qkv = inputs((3, 4, 2, t, t, 8), 200)?;
        check(&qkv, &bias, "left padding", 203)?;
        let y = flash_attention(&qkv[0], &qkv[1], &qkv[2], &bias)?;
        let mean_v = qkv[2].get(2)?.get(0)?.mean(0)?; // every key of batch row 2, KV head 0
        for row in [0, 40, 69] {
            let e = rel_err(&y.get(2)?.get(1)?.get(row)?, &mean_v)?;
            assert!(e < 1e-5, "fully masked row {row} is not the mean of v: rel err {e}");
        }
        // A generation step over a left-padded cache.
        let (t, past) = (1, 9);
        let km = left_padding(&[0, 4], past + t)?;
        let bias = attention_bias(2, t, past, Some(&km), None, &Device::Cpu)?;
        check(&inputs((2, 6, 3, t, past + t, 24), 210)?, &bias, "cached step with padding", 213)
    }

    #[test]
    fn matches_reference_with_packed_segments() -> Result<()> {
        let t = 130usize;
        let seg: Vec<u32> = (0..2 * t).map(|i| if i < t { (i / 37) as u32 } else { u32::from(i % t >= 70) }).collect();
        let seg = Tensor::from_vec(seg, (2, t), &Device::Cpu)?;
        // Right padding in the last segment of row 1.
        let km: Vec<u8> = (0..2 * t).map(|i| u8::from(i < t || i % t < 120)).collect();
        let km = Tensor::from_vec(km, (2, t), &Device::Cpu)?;
        let bias = attention_bias(2, t, 0, Some(&km), Some(&seg), &Device::Cpu)?;
        check(&inputs((2, 4, 2, t, t, 24), 300)?, &bias, "packed segments", 303)
    }

    #[test]
    fn matches_reference_with_a_dense_bias() -> Result<()> {
        // Any additive bias, not only masks: every block is mixed.
        let bias = randn(400, (2, 1, 33, 40))?;
        check(&inputs((2, 3, 1, 33, 40, 8), 401)?, &bias, "dense bias", 404)
    }

    #[test]
    fn gradients_match_finite_differences() -> Result<()> {
        // Causal with a past offset and right padding: every row has an unmasked key.
        let (t, past) = (6, 2);
        let km = Tensor::from_vec((0..t + past).map(|j| u8::from(j < 6)).collect::<Vec<_>>(), (1, t + past), &Device::Cpu)?;
        let bias = attention_bias(1, t, past, Some(&km), None, &Device::Cpu)?;
        let [q, k, v] = inputs((1, 2, 1, t, t + past, 8), 500)?;
        let g = grads(&[&q, &k, &v], &flash_attention(&q, &k, &v, &bias)?, 503)?;
        let loss = |q: &Tensor, k: &Tensor, v: &Tensor| -> Result<f32> {
            functional(&flash_attention(q, k, v, &bias)?, 503)?.to_scalar::<f32>()
        };
        let inputs = [q.as_tensor().clone(), k.as_tensor().clone(), v.as_tensor().clone()];
        for (n, name) in ["q", "k", "v"].into_iter().enumerate() {
            let f = |x: &Tensor| {
                let mut a = inputs.clone();
                a[n] = x.clone();
                loss(&a[0], &a[1], &a[2])
            };
            let gx = g[n].flatten_all()?.to_vec1::<f32>()?;
            for i in [0, 13, 50, 63] {
                let fd = finite_diff(&inputs[n], i, 1e-2, f)?;
                assert!((fd - gx[i]).abs() < 2e-3 * gx[i].abs().max(1.0), "d{name}[{i}]: fd {fd} vs {}", gx[i]);
            }
        }
        Ok(())
    }

    /// k and v as a KV cache returns them, the filled prefix of larger buffers (heads
    /// `capacity × D` apart): read in place, with the bits of contiguous copies, forward and
    /// backward (the buffers' gradients are those of the prefix, zeros beyond).
    #[test]
    fn reads_strided_kv_cache_views_in_place() -> Result<()> {
        let (b, h, kv, d, capacity) = (2, 6, 2, 24, 160);
        for (i, (t, past)) in [(1, 0), (1, 69), (5, 90), (1, 159)].into_iter().enumerate() {
            let seed = 700 + 10 * i as u64;
            let tk = past + t;
            let q = Var::from_tensor(&randn(seed, (b, h, t, d))?)?;
            let kb = Var::from_tensor(&randn(seed + 1, (b, kv, capacity, d))?)?;
            let vb = Var::from_tensor(&randn(seed + 2, (b, kv, capacity, d))?)?;
            let (k, v) = (kb.narrow(2, 0, tk)?, vb.narrow(2, 0, tk)?);
            assert_eq!(k.is_contiguous(), tk == capacity);
            assert!(!head_rows(&k)?.is_contiguous() || tk == capacity, "t {t} past {past}: the view was copied");
            let bias = attention_bias(b, t, past, Some(&left_padding(&[0, 3], tk)?), None, &Device::Cpu)?;
            let y = flash_attention(&q, &k, &v, &bias)?;
            let y_copy = flash_attention(&q, &k.contiguous()?, &v.contiguous()?, &bias)?;
            let mut out = vec![y.clone()];
            out.extend(grads(&[&q, &kb, &vb], &y, seed + 3)?);
            let mut want = vec![y_copy.clone()];
            want.extend(grads(&[&q, &kb, &vb], &y_copy, seed + 3)?);
            for (n, (a, w)) in out.iter().zip(&want).enumerate() {
                let bits = |x: &Tensor| -> Result<Vec<u32>> { Ok(x.flatten_all()?.to_vec1::<f32>()?.iter().map(|f| f.to_bits()).collect()) };
                assert!(bits(a)? == bits(w)?, "t {t} past {past}: output {n} differs from the contiguous copy's");
            }
            check(&[q, Var::from_tensor(&k.contiguous()?)?, Var::from_tensor(&v.contiguous()?)?], &bias, &format!("t {t} past {past}"), seed + 4)?;
        }
        Ok(())
    }

    #[test]
    fn bit_identical_across_runs_and_thread_counts() -> Result<()> {
        let t = 130;
        let bias = attention_bias(2, t, 0, Some(&left_padding(&[0, 70], t)?), None, &Device::Cpu)?;
        let qkv = inputs((2, 6, 2, t, t, 24), 600)?;
        assert_same_bits_across_threads(|| {
            let [q, k, v] = &qkv;
            let y = flash_attention(q, k, v, &bias)?;
            let mut out = vec![y.clone()];
            out.extend(grads(&[q, k, v], &y, 603)?);
            Ok(out)
        })
    }

    #[test]
    fn causal_blocks_above_the_diagonal_are_skipped() -> Result<()> {
        let t = 200;
        let bias = attention_bias(2, t, 0, Some(&left_padding(&[0, 70], t)?), None, &Device::Cpu)?;
        let kinds = block_kinds(&bias.flatten_all()?.to_vec1::<f32>()?, 2, t, t);
        let n = t.div_ceil(BQ);
        for qb in 0..n {
            for kb in 0..n {
                let (row0, row1) = (kinds[qb * n + kb], kinds[(n + qb) * n + kb]);
                let want = if kb > qb { SKIP } else if kb == qb { MIXED } else { ZERO };
                assert_eq!(row0, want, "row 0 block ({qb}, {kb})");
                // Row 1: queries 0..70 see only padding, so the first two query blocks keep
                // every key block; later ones skip key block 0 (all padding) too, and key
                // block 1 holds padding and real keys.
                let want1 = if qb < 2 {
                    MIXED
                } else if kb > qb || kb == 0 {
                    SKIP
                } else if kb == 1 || kb == qb {
                    MIXED
                } else {
                    ZERO
                };
                assert_eq!(row1, want1, "row 1 block ({qb}, {kb})");
            }
        }
        Ok(())
    }
}
