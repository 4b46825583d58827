//! Scaled dot-product attention with grouped-query heads, an additive bias and a KV cache,
//! shared by every architecture; the projections live in the model files.

use crate::causal_lm::KvCache;
use crate::kernels::attention::flash_attention;
use crate::kernels::cpu_f32;
use candle_core::{DType, Result, Tensor, D};

/// Splits (B, T, H*D) into heads: (B, H, T, D).
pub fn split_heads(x: &Tensor, heads: usize, head_dim: usize) -> Result<Tensor> {
    let (b, t, _) = x.dims3()?;
    x.reshape((b, t, heads, head_dim))?.transpose(1, 2)
}

/// Repeats each KV head `n_rep` times: (B, KV, T, D) -> (B, KV*n_rep, T, D).
pub fn repeat_kv(x: &Tensor, n_rep: usize) -> Result<Tensor> {
    if n_rep == 1 {
        return Ok(x.clone());
    }
    let (b, kv, t, d) = x.dims4()?;
    x.unsqueeze(2)?.expand((b, kv, n_rep, t, d))?.reshape((b, kv * n_rep, t, d))
}

/// softmax(q kᵀ / sqrt(D) + bias) v for q (B, H, T, D) and k, v (B, KV, T_new, D).
/// With a cache, `k`/`v` are appended to layer `layer` first. Returns (B, T, H*D).
/// f32 on the CPU runs the fused kernel ([`crate::kernels::attention::flash_attention`]);
/// every other case (bf16/f16, CUDA) the composed [`attend_reference`].
pub fn attend(
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    bias: &Tensor,
    cache: Option<(&mut KvCache, usize)>,
) -> Result<Tensor> {
    let (b, h, t, d) = q.dims4()?;
    let (k, v) = match cache {
        Some((c, layer)) => c.append(layer, k, v)?,
        None => (k.clone(), v.clone()),
    };
    let y = if fused_applies(q, &k, &v, bias)? {
        flash_attention(q, &k, &v, bias)?
    } else {
        attend_reference(q, &k, &v, bias)?
    }; // (B, H, T, D)
    y.transpose(1, 2)?.reshape((b, t, h * d))
}

/// Whether the fused kernel handles this call: f32 on the CPU, a bias of shape
/// (B or 1, 1, T, Tk), and nothing empty.
fn fused_applies(q: &Tensor, k: &Tensor, v: &Tensor, bias: &Tensor) -> Result<bool> {
    if !cpu_f32(&[q, k, v, bias]) || bias.rank() != 4 || q.elem_count() == 0 || k.elem_count() == 0 {
        return Ok(false);
    }
    let (b, _, t, _) = q.dims4()?;
    let (_, _, tk, _) = k.dims4()?;
    let (bb, one, bt, btk) = bias.dims4()?;
    Ok((bb == 1 || bb == b) && one == 1 && bt == t && btk == tk)
}

/// The composed attention, differentiable candle ops only: softmax(q kᵀ / sqrt(D) + bias) v for
/// q (B, H, T, D), k and v (B, KV, Tk, D) and bias broadcastable to (B, H, T, Tk); returns
/// (B, H, T, D). The fused kernel's reference.
pub fn attend_reference(q: &Tensor, k: &Tensor, v: &Tensor, bias: &Tensor) -> Result<Tensor> {
    let d = q.dim(3)?;
    let n_rep = q.dim(1)? / k.dim(1)?;
    let k = repeat_kv(k, n_rep)?.contiguous()?;
    let v = repeat_kv(v, n_rep)?.contiguous()?;
    let scale = 1.0 / (d as f64).sqrt();
    let scores = (q.contiguous()?.matmul(&k.t()?)? * scale)?; // (B, H, T, Tk)
    let scores = scores.to_dtype(DType::F32)?.broadcast_add(bias)?;
    let probs = candle_nn::ops::softmax(&scores, D::Minus1)?.to_dtype(q.dtype())?;
    probs.matmul(&v) // (B, H, T, D)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::testing::randn;
    use crate::layers::mask::attention_bias;
    use candle_core::Device;

    /// `attend` (fused for f32 on the CPU) with a KV cache, prefill then one step, against the
    /// reference over the whole cached keys, and the bf16 fallback against f32.
    #[test]
    fn attend_with_cache_matches_reference() -> Result<()> {
        let dev = Device::Cpu;
        let (b, h, kv, d) = (2, 4, 2, 8);
        let mut cache = KvCache::new(1);
        let (mut ks, mut vs) = (vec![], vec![]);
        for (step, (t, past)) in [(5, 0), (1, 5)].into_iter().enumerate() {
            let seed = 10 * step as u64;
            let q = randn(seed, (b, h, t, d))?;
            let k = randn(seed + 1, (b, kv, t, d))?;
            let v = randn(seed + 2, (b, kv, t, d))?;
            let bias = attention_bias(b, t, past, None, None, &dev)?;
            let y = attend(&q, &k, &v, &bias, Some((&mut cache, 0)))?;
            ks.push(k);
            vs.push(v);
            let (k_all, v_all) = (Tensor::cat(&ks, 2)?, Tensor::cat(&vs, 2)?);
            let y_ref = attend_reference(&q, &k_all, &v_all, &bias)?.transpose(1, 2)?.reshape((b, t, h * d))?;
            let diff = (&y - &y_ref)?.abs()?.max_all()?.to_scalar::<f32>()?;
            assert!(diff < 1e-5, "step {step}: max diff {diff}");
            let y16 = attend(&q.to_dtype(DType::BF16)?, &k_all.to_dtype(DType::BF16)?, &v_all.to_dtype(DType::BF16)?, &bias, None)?;
            let diff = (y16.to_dtype(DType::F32)? - &y_ref)?.abs()?.max_all()?.to_scalar::<f32>()?;
            assert!(diff < 5e-2, "step {step}: bf16 max diff {diff}");
        }
        Ok(())
    }
}
