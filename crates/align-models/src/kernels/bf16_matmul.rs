//! bf16 matmul with f32 accumulation on CPUs with AVX512_BF16 (mixed precision, as PyTorch's
//! `torch.set_float32_matmul_precision("medium")`): the linear layers' `y = x·wᵀ` (HF `Linear`,
//! w of shape (N, K)) or `y = x·w` (GPT-2's `Conv1D`, w of shape (K, N)) on f32 tensors. The
//! operands are rounded to bf16 (round to nearest even) while they are packed, multiplied with
//! `vdpbf16ps` (two bf16 products added into each f32 lane per instruction: twice the
//! multiply-adds of an f32 FMA) and accumulated in f32; the result, and the gradients of both
//! operands (`dx = dy·w`, `dw = dyᵀ·x`, computed the same way), are f32, so the optimizer keeps
//! f32 master weights and states.
//!
//! The product `C = A·Bᵀ` (A: m×k, B: n×k, each stored row-major either as is or transposed) is
//! blocked as in GotoBLAS / BLIS: A is packed into panels of `MR` rows and B into panels of `NR`
//! columns, each a sequence of k-pairs (two bf16 in one u32, the layout `vdpbf16ps` reads); the
//! output is cut into `MC`×`NC` tiles spread over rayon's pool, and a tile walks k in blocks of
//! `KC` pairs (one B micro-panel stays in L1, the tile's A block in L2) with an `MR`×`NR`
//! register-tiled microkernel. The tiling depends only on the shape and every output element
//! sums its k-blocks in one fixed order, so results are bit-identical for any thread count.
//!
//! [`available`] says whether the CPU has the instruction; the layers call [`linear`] /
//! [`conv1d`] only when it does and `kernels::matmul_precision()` is `Bf16` (see
//! `layers::linear`); every other case runs candle's f32 matmul.

use super::{contiguous_f32, multiversion};
use candle_core::{CpuStorage, CustomOp2, Layout, Result, Shape, Tensor};
use rayon::prelude::*;
use std::mem::MaybeUninit;

/// Rows of the register tile (14 × 2 accumulators + 2 B vectors + 1 broadcast ≤ 32 zmm).
const MR: usize = 14;
const _: () = assert!(MR <= NR);
/// zmm vectors per row of the register tile.
const NV: usize = 2;
/// Columns of the register tile.
const NR: usize = 16 * NV;
/// k-pairs per cache block: a B micro-panel is `KC·NR·4` = 16 KiB (L1).
const KC: usize = 128;
/// Rows of an output tile (one rayon task): its A block is `MC·KC·4` = 56 KiB (L2).
const MC: usize = MR * 8;
/// Columns of an output tile.
const NC: usize = NR * 8;

/// True when this CPU can run the kernel (AVX-512F and AVX512_BF16).
pub fn available() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::is_x86_feature_detected!("avx512f") && std::is_x86_feature_detected!("avx512bf16")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// The bf16 bits of `x` rounded to nearest even (NaN stays a quiet NaN, overflow gives ±inf),
/// as `half::bf16::from_f32` and PyTorch's `.to(torch.bfloat16)`.
#[inline(always)]
pub fn bf16_bits(x: f32) -> u16 {
    let b = x.to_bits();
    let rounded = b.wrapping_add(0x7fff + ((b >> 16) & 1)) >> 16;
    let nan = (b >> 16) | 0x40;
    (if x.is_nan() { nan } else { rounded }) as u16
}

/// `x·wᵀ` for x (…, K) and w (N, K) (HF `Linear`'s weight) → (…, N), bf16 products accumulated
/// in f32, gradients to both. f32 tensors on the CPU, any layout; the caller checks [`available`].
pub fn linear(x: &Tensor, w: &Tensor) -> Result<Tensor> {
    x.contiguous()?.apply_op2(&w.contiguous()?, LinearOp { w_kn: false })
}

/// `x·w` for x (…, K) and w (K, N) (GPT-2's `Conv1D` weight) → (…, N); as [`linear`].
pub fn conv1d(x: &Tensor, w: &Tensor) -> Result<Tensor> {
    x.contiguous()?.apply_op2(&w.contiguous()?, LinearOp { w_kn: true })
}

/// A contiguous f32 matrix read as `rows × inner`: element (r, i) is `data[r·inner + i]`, or
/// `data[i·rows + r]` when `trans` (the stored matrix is its transpose).
#[derive(Clone, Copy)]
struct Mat<'a> {
    data: &'a [f32],
    rows: usize,
    inner: usize,
    trans: bool,
}

/// A tensor's contiguous storage as a 2-D matrix (leading dims flattened into rows).
fn as_mat<'a>(s: &'a CpuStorage, l: &Layout, trans: bool, what: &str) -> Result<Mat<'a>> {
    let data = contiguous_f32(s, l, what)?;
    let dims = l.dims();
    let cols = *dims.last().unwrap_or(&1);
    let rows: usize = dims[..dims.len().saturating_sub(1)].iter().product();
    Ok(if trans { Mat { data, rows: cols, inner: rows, trans } } else { Mat { data, rows, inner: cols, trans } })
}

/// bf16(lo) | bf16(hi) << 16: one k-pair as `vdpbf16ps` reads it.
#[inline(always)]
fn pair(lo: f32, hi: f32) -> u32 {
    bf16_bits(lo) as u32 | (bf16_bits(hi) as u32) << 16
}

/// k-pairs per step of the row-major packer (a 16×`w` block, transposed through the stack).
const PACK_STEP: usize = 16;

multiversion! {
    /// Packs rows `r0..r0 + w` of a row-major `m` (zeros past its end) into `panel` (every
    /// element written): for each k-pair p, `w` u32s, row r's holding `pair(m[r][2p], m[r][2p+1])`
    /// (0 past k). Row r of the panel is contiguous in m: `PACK_STEP` pairs of each row are
    /// converted into a block, which is then written out pair by pair.
    fn pack_panel(m: Mat<'_>, r0: usize, w: usize, panel: &mut [MaybeUninit<u32>]) {
        let kp = m.inner.div_ceil(2);
        let valid = w.min(m.rows - r0);
        let at = |r: usize, i: usize| if i < m.inner { m.data[(r0 + r) * m.inner + i] } else { 0.0 };
        let mut blk = [[0u32; PACK_STEP]; NR]; // panels are MR or NR wide, MR ≤ NR
        for p0 in (0..kp).step_by(PACK_STEP) {
            let q = PACK_STEP.min(kp - p0);
            let full = 2 * (p0 + q) <= m.inner;
            for (r, row) in blk.iter_mut().enumerate().take(w) {
                if r >= valid {
                    row.fill(0);
                } else if full {
                    let src = &m.data[(r0 + r) * m.inner + 2 * p0..][..2 * q];
                    for (o, s) in row.iter_mut().zip(src.chunks_exact(2)) {
                        *o = pair(s[0], s[1]);
                    }
                } else {
                    for (j, o) in row.iter_mut().enumerate().take(q) {
                        *o = pair(at(r, 2 * (p0 + j)), at(r, 2 * (p0 + j) + 1));
                    }
                }
            }
            for j in 0..q {
                for (r, o) in panel[(p0 + j) * w..][..w].iter_mut().enumerate() {
                    o.write(blk[r][j]);
                }
            }
        }
    }
}

multiversion! {
    /// Packs the panels of `w` rows from row `r0` on of a transposed `m` (whose rows are the
    /// stored matrix's columns) into `group` (whole panels, every element written): each k-pair
    /// reads two stored rows, contiguous across all the group's panels.
    fn pack_group_trans(m: Mat<'_>, r0: usize, w: usize, group: &mut [MaybeUninit<u32>]) {
        let kp = m.inner.div_ceil(2);
        let panels = group.len() / (kp * w);
        let valid = (panels * w).min(m.rows - r0);
        for p in 0..kp {
            let lo = &m.data[2 * p * m.rows + r0..][..valid];
            let hi = (2 * p + 1 < m.inner).then(|| &m.data[(2 * p + 1) * m.rows + r0..][..valid]);
            for g in 0..panels {
                let out = &mut group[g * kp * w + p * w..][..w];
                let rows = g * w..((g + 1) * w).min(valid).max(g * w);
                let n = rows.len();
                match hi {
                    Some(hi) => {
                        for ((o, &a), &b) in out.iter_mut().zip(&lo[rows.clone()]).zip(&hi[rows]) {
                            o.write(pair(a, b));
                        }
                    }
                    None => {
                        for (o, &a) in out.iter_mut().zip(&lo[rows]) {
                            o.write(bf16_bits(a) as u32);
                        }
                    }
                }
                for o in &mut out[n..] {
                    o.write(0);
                }
            }
        }
    }
}

/// Panels per task of `pack` (and per pass over a transposed matrix's rows).
const PACK_GROUP: usize = 8;

/// `m` packed into panels of `w` rows, each `ceil(inner/2)·w` u32s (rows and the odd k padded with zeros).
fn pack(m: Mat<'_>, w: usize) -> Vec<u32> {
    let kp = m.inner.div_ceil(2);
    let len = m.rows.div_ceil(w) * kp * w;
    let mut out = Vec::with_capacity(len);
    if len > 0 {
        let buf = &mut out.spare_capacity_mut()[..len];
        buf.par_chunks_mut(PACK_GROUP * kp * w).enumerate().for_each(|(i, group)| {
            let r0 = i * PACK_GROUP * w;
            if m.trans {
                pack_group_trans(m, r0, w, group);
            } else {
                for (j, panel) in group.chunks_mut(kp * w).enumerate() {
                    pack_panel(m, r0 + j * w, w, panel);
                }
            }
        });
    }
    // SAFETY: the packers write every element of their panels, and the panels tile `len`.
    unsafe { out.set_len(len) };
    out
}

/// The MR×NR microkernel: `c[r][j] (+)= Σ_p dot(a[p][r], b[p][j])` over `kp` k-pairs, with `a`
/// an A micro-panel slice (kp·MR u32) and `b` a B one (kp·NR u32); `c` has row stride `ldc`
/// and is read first unless `first`.
///
/// # Safety
/// The CPU has avx512f and avx512bf16; `a`, `b` hold kp·MR and kp·NR u32s; `c` spans MR rows of
/// NR f32s at stride `ldc`.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bf16")]
unsafe fn microkernel(kp: usize, a: *const u32, b: *const u32, c: *mut f32, ldc: usize, first: bool) {
    use std::arch::x86_64::*;
    let mut acc = [[_mm512_setzero_ps(); NV]; MR];
    if !first {
        for (r, row) in acc.iter_mut().enumerate() {
            for (v, x) in row.iter_mut().enumerate() {
                *x = unsafe { _mm512_loadu_ps(c.add(r * ldc + 16 * v)) };
            }
        }
    }
    for p in 0..kp {
        let bp = unsafe { b.add(p * NR) };
        let bv: [__m512bh; NV] = std::array::from_fn(|v| unsafe { std::mem::transmute(_mm512_loadu_ps(bp.add(16 * v) as *const f32)) });
        let ap = unsafe { a.add(p * MR) };
        for (r, row) in acc.iter_mut().enumerate() {
            let av: __m512bh = unsafe { std::mem::transmute(_mm512_set1_epi32(*ap.add(r) as i32)) };
            for (x, &bv) in row.iter_mut().zip(&bv) {
                *x = _mm512_dpbf16_ps(*x, av, bv);
            }
        }
    }
    for (r, row) in acc.iter().enumerate() {
        for (v, &x) in row.iter().enumerate() {
            unsafe { _mm512_storeu_ps(c.add(r * ldc + 16 * v), x) };
        }
    }
}

/// The output pointer shared by the tasks, each of which writes its own tile only.
#[derive(Clone, Copy)]
struct OutPtr(*mut f32);
// SAFETY: tasks write disjoint tiles of the buffer, which outlives them.
unsafe impl Send for OutPtr {}
unsafe impl Sync for OutPtr {}

impl OutPtr {
    /// The pointer (a method, so closures capture the `Sync` wrapper, not the bare field).
    fn get(self) -> *mut f32 {
        self.0
    }
}

/// `C = A·Bᵀ` (m×n, f32) with A m×k and B n×k read as bf16, f32 accumulation. Needs [`available`].
fn gemm(a: Mat<'_>, b: Mat<'_>) -> Result<Vec<f32>> {
    if a.inner != b.inner {
        candle_core::bail!("bf16 matmul: inner dims differ ({} vs {})", a.inner, b.inner);
    }
    if !available() {
        candle_core::bail!("bf16 matmul: this CPU lacks avx512bf16");
    }
    let (m, n, kp) = (a.rows, b.rows, a.inner.div_ceil(2));
    if m == 0 || n == 0 || kp == 0 {
        return Ok(vec![0f32; m * n]);
    }
    // Not zeroed: the first k-block of every tile writes all of it.
    let mut c: Vec<f32> = Vec::with_capacity(m * n);
    let (ap, bp) = rayon::join(|| pack(a, MR), || pack(b, NR));
    let (tiles_m, tiles_n) = (m.div_ceil(MC), n.div_ceil(NC));
    let out = OutPtr(c.as_mut_ptr());
    (0..tiles_m * tiles_n).into_par_iter().for_each(|t| {
        let (i0, j0) = ((t / tiles_n) * MC, (t % tiles_n) * NC);
        let (i1, j1) = ((i0 + MC).min(m), (j0 + NC).min(n));
        let mut tmp = [0f32; MR * NR];
        for p0 in (0..kp).step_by(KC) {
            let kc = KC.min(kp - p0);
            for j in (j0..j1).step_by(NR) {
                let bpanel = &bp[(j / NR * kp + p0) * NR..][..kc * NR];
                for i in (i0..i1).step_by(MR) {
                    let apanel = &ap[(i / MR * kp + p0) * MR..][..kc * MR];
                    let (mv, nv) = (MR.min(m - i), NR.min(n - j));
                    // SAFETY: `available()` was checked; the panels hold kc pairs; a full tile
                    // lies inside c (rows i..i+MR, columns j..j+NR), which only this task writes;
                    // a partial one goes through `tmp`.
                    #[cfg(target_arch = "x86_64")]
                    unsafe {
                        let first = p0 == 0;
                        if mv == MR && nv == NR {
                            microkernel(kc, apanel.as_ptr(), bpanel.as_ptr(), out.get().add(i * n + j), n, first);
                        } else {
                            if !first {
                                for r in 0..mv {
                                    let src = std::slice::from_raw_parts(out.get().add((i + r) * n + j), nv);
                                    tmp[r * NR..r * NR + nv].copy_from_slice(src);
                                }
                            }
                            microkernel(kc, apanel.as_ptr(), bpanel.as_ptr(), tmp.as_mut_ptr(), NR, first);
                            for r in 0..mv {
                                let dst = std::slice::from_raw_parts_mut(out.get().add((i + r) * n + j), nv);
                                dst.copy_from_slice(&tmp[r * NR..r * NR + nv]);
                            }
                        }
                    }
                    #[cfg(not(target_arch = "x86_64"))]
                    let _ = (apanel, bpanel, mv, nv, &mut tmp);
                }
            }
        }
    });
    // SAFETY: the tiles cover c, and each tile's first k-block (p0 = 0) wrote all of it.
    unsafe { c.set_len(m * n) };
    Ok(c)
}

/// Forward op: (x (…, K), w) → (…, N); w is (N, K), or (K, N) when `w_kn`.
struct LinearOp {
    w_kn: bool,
}

impl CustomOp2 for LinearOp {
    fn name(&self) -> &'static str {
        "align-bf16-linear"
    }

    fn cpu_fwd(&self, s1: &CpuStorage, l1: &Layout, s2: &CpuStorage, l2: &Layout) -> Result<(CpuStorage, Shape)> {
        if l2.dims().len() != 2 || l1.dims().is_empty() {
            candle_core::bail!("bf16 linear: x {:?}, w {:?}: expected x (…, K) and a 2-D w", l1.dims(), l2.dims());
        }
        let x = as_mat(s1, l1, false, "bf16 linear x")?;
        let w = as_mat(s2, l2, self.w_kn, "bf16 linear w")?;
        if x.inner != w.inner {
            candle_core::bail!("bf16 linear: x {:?} and w {:?} (w_kn {}) do not chain", l1.dims(), l2.dims(), self.w_kn);
        }
        let y = gemm(x, w)?;
        let mut dims = l1.dims().to_vec();
        *dims.last_mut().unwrap() = w.rows;
        Ok((CpuStorage::F32(y), Shape::from(dims)))
    }

    fn bwd(&self, x: &Tensor, w: &Tensor, _y: &Tensor, dy: &Tensor) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let dy = dy.contiguous()?;
        let product = |a: &Tensor, a_trans, b: &Tensor, b_trans, dims: &[usize]| {
            a.apply_op2_no_bwd(b, &ProductOp { a_trans, b_trans, dims: dims.to_vec() })
        };
        let (dx, dw) = if self.w_kn {
            // y = x·w: dx = dy·wᵀ (B rows = w's rows), dw = xᵀ·dy.
            (product(&dy, false, w, false, x.dims())?, product(x, true, &dy, true, w.dims())?)
        } else {
            // y = x·wᵀ: dx = dy·w (B = wᵀ), dw = dyᵀ·x.
            (product(&dy, false, w, true, x.dims())?, product(&dy, true, x, true, w.dims())?)
        };
        Ok((Some(dx), Some(dw)))
    }
}

/// Gradient op: (a, b) → `A·Bᵀ` reshaped to `dims`, where A is a's 2-D view (leading dims as rows)
/// or its transpose when `a_trans`, and likewise B.
struct ProductOp {
    a_trans: bool,
    b_trans: bool,
    dims: Vec<usize>,
}

impl CustomOp2 for ProductOp {
    fn name(&self) -> &'static str {
        "align-bf16-product"
    }

    fn cpu_fwd(&self, s1: &CpuStorage, l1: &Layout, s2: &CpuStorage, l2: &Layout) -> Result<(CpuStorage, Shape)> {
        let a = as_mat(s1, l1, self.a_trans, "bf16 product a")?;
        let b = as_mat(s2, l2, self.b_trans, "bf16 product b")?;
        let shape = Shape::from(self.dims.clone());
        if a.rows * b.rows != shape.elem_count() {
            candle_core::bail!("bf16 product: {}x{} result does not fit {:?}", a.rows, b.rows, self.dims);
        }
        Ok((CpuStorage::F32(gemm(a, b)?), shape))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::testing::{assert_same_bits_across_threads, grads, randn, rel_err};
    use candle_core::{Device, Var};

    /// Whether to run: false (with a note) on CPUs without avx512bf16.
    fn runs() -> bool {
        if !available() {
            eprintln!("skipped: this CPU lacks avx512bf16");
        }
        available()
    }

    /// `t` rounded to bf16 and back (half's conversion, the reference for ours).
    fn round(t: &Tensor) -> Result<Tensor> {
        t.to_dtype(candle_core::DType::BF16)?.to_dtype(candle_core::DType::F32)
    }

    /// f64 matmul `a·b` of 2-D f32 tensors, returned f32: the exact product of the rounded operands.
    fn matmul_f64(a: &Tensor, b: &Tensor) -> Result<Tensor> {
        a.to_dtype(candle_core::DType::F64)?.matmul(&b.to_dtype(candle_core::DType::F64)?)?.to_dtype(candle_core::DType::F32)
    }

    #[test]
    fn rounding_is_nearest_even_as_half() {
        let vals = [0.0, -0.0, 1.0, 1.0 + 1.0 / 256.0, 1.0 + 3.0 / 256.0, std::f32::consts::PI, -std::f32::consts::E, 1e-30, 3.4e38, f32::MAX, f32::INFINITY, f32::MIN_POSITIVE];
        for x in vals.into_iter().chain((0..10000).map(|i| (i as f32 * 0.7311).sin() * 10f32.powi(i % 17 - 8))) {
            assert_eq!(bf16_bits(x), half::bf16::from_f32(x).to_bits(), "{x:e}");
        }
        // Ties: 1 + 2⁻⁸ is halfway between 1 and 1 + 2⁻⁷ and goes to the even one (1).
        assert_eq!(bf16_bits(1.0 + 1.0 / 256.0), half::bf16::from_f32(1.0).to_bits());
        assert!(f32::from_bits((bf16_bits(f32::NAN) as u32) << 16).is_nan());
    }

    /// Forward and both gradients of a (m, k)·(n, k)ᵀ (or Conv1D's (k, n)) product against the
    /// rounded-operand f64 reference (tight) and candle's f32 matmul (bf16 tolerance).
    fn check(x_dims: &[usize], n: usize, w_kn: bool, seed: u64) -> Result<()> {
        let k = *x_dims.last().unwrap();
        let m: usize = x_dims[..x_dims.len() - 1].iter().product();
        let x = Var::from_tensor(&randn(seed, x_dims)?)?;
        let w = Var::from_tensor(&(randn(seed + 1, if w_kn { (k, n) } else { (n, k) })? * 0.1)?)?;
        let y = if w_kn { conv1d(&x, &w)? } else { linear(&x, &w)? };
        let mut y_dims = x_dims.to_vec();
        *y_dims.last_mut().unwrap() = n;
        assert_eq!(y.dims(), &y_dims[..]);
        // w as (K, N) for the references.
        let w_kn_t = if w_kn { w.as_tensor().clone() } else { w.t()? };
        let x2 = x.reshape((m, k))?;
        let y_ref = matmul_f64(&round(&x2)?, &round(&w_kn_t)?)?.reshape(y_dims.clone())?;
        let y_f32 = x2.matmul(&w_kn_t)?.reshape(y_dims.clone())?;
        let e = rel_err(&y, &y_ref)?;
        assert!(e < 2e-5, "{x_dims:?} n {n} w_kn {w_kn}: forward vs rounded f64 {e}");
        // Two roundings of 2⁻⁹ per product: ~1e-2 of the largest output, a little more when a
        // short sum (k = 3) cancels.
        let e = rel_err(&y, &y_f32)?;
        assert!(e < 2e-2, "{x_dims:?} n {n} w_kn {w_kn}: forward vs f32 {e}");

        let g = grads(&[&x, &w], &y, seed + 2)?;
        let dy = randn(seed + 2, y_dims.clone())?.reshape((m, n))?; // what `grads` draws
        let dx_ref = matmul_f64(&round(&dy)?, &round(&w_kn_t.t()?)?)?.reshape(x_dims)?;
        let dw_ref = matmul_f64(&round(&x2.t()?)?, &round(&dy)?)?; // (K, N)
        let dw_ref = if w_kn { dw_ref } else { dw_ref.t()? };
        let g_f32 = grads(&[&x, &w], &x2.matmul(&w_kn_t)?.reshape(y_dims)?, seed + 2)?;
        for (name, got, exact, f32_ref) in [("dx", &g[0], &dx_ref, &g_f32[0]), ("dw", &g[1], &dw_ref, &g_f32[1])] {
            let e = rel_err(got, exact)?;
            assert!(e < 2e-5, "{x_dims:?} n {n} w_kn {w_kn}: {name} vs rounded f64 {e}");
            let e = rel_err(got, f32_ref)?;
            assert!(e < 2e-2, "{x_dims:?} n {n} w_kn {w_kn}: {name} vs f32 {e}");
        }
        Ok(())
    }

    #[test]
    fn matches_references_on_odd_sizes() -> Result<()> {
        if !runs() {
            return Ok(());
        }
        let sizes = [1, 3, 17, 33, 100, 257];
        let mut seed = 0;
        for &m in &sizes {
            for &n in &sizes {
                for &k in &sizes {
                    seed += 3;
                    check(&[m, k], n, seed % 2 == 0, seed)?;
                }
            }
        }
        Ok(())
    }

    #[test]
    fn matches_references_across_blocks_and_3d() -> Result<()> {
        if !runs() {
            return Ok(());
        }
        // Several MC×NC tiles and KC blocks, each with a partial last one.
        check(&[2, 131, 2 * KC * 2 + 37], 2 * NC + 45, false, 500)?;
        check(&[3, 50, 301], 90, true, 510)?;
        check(&[4, 7, 64], 48, false, 520)?;
        Ok(())
    }

    #[test]
    fn non_contiguous_input() -> Result<()> {
        if !runs() {
            return Ok(());
        }
        let base = Var::from_tensor(&randn(600, (37, 5, 6))?)?;
        let x = base.transpose(0, 2)?; // (6, 5, 37), not contiguous
        assert!(!x.is_contiguous());
        let w = Var::from_tensor(&randn(601, (19, 37))?)?;
        let y = linear(&x, &w)?;
        let y_ref = linear(&x.contiguous()?, &w)?;
        assert_eq!(y.flatten_all()?.to_vec1::<f32>()?, y_ref.flatten_all()?.to_vec1::<f32>()?);
        let y_f32 = x.broadcast_matmul(&w.t()?)?;
        assert!(rel_err(&y, &y_f32)? < 1e-2);
        let g = grads(&[&base, &w], &y, 602)?;
        let g_f32 = grads(&[&base, &w], &y_f32, 602)?;
        assert!(rel_err(&g[0], &g_f32[0])? < 1e-2, "d_base");
        assert!(rel_err(&g[1], &g_f32[1])? < 1e-2, "dw");
        Ok(())
    }

    #[test]
    fn bit_identical_across_runs_and_thread_counts() -> Result<()> {
        if !runs() {
            return Ok(());
        }
        let (x, w) = (randn(700, (3, 150, 300))?, randn(701, (290, 300))?);
        assert_same_bits_across_threads(|| {
            let (xv, wv) = (Var::from_tensor(&x)?, Var::from_tensor(&w)?);
            let y = linear(&xv, &wv)?;
            let g = grads(&[&xv, &wv], &y, 702)?;
            Ok(vec![y, g[0].clone(), g[1].clone()])
        })
    }

    #[test]
    fn empty_inner_dim_gives_zeros() -> Result<()> {
        if !runs() {
            return Ok(());
        }
        let x = Tensor::zeros((4, 0), candle_core::DType::F32, &Device::Cpu)?;
        let w = Tensor::zeros((3, 0), candle_core::DType::F32, &Device::Cpu)?;
        let y = linear(&x, &w)?;
        assert_eq!(y.dims(), &[4, 3]);
        assert_eq!(y.sum_all()?.to_scalar::<f32>()?, 0.0);
        Ok(())
    }
}
