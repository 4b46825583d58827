//! Scaled dot-product attention with grouped-query heads, an additive bias and a KV cache,
//! shared by every architecture; the projections live in the model files.

use crate::causal_lm::KvCache;
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
    let n_rep = h / k.dim(1)?;
    let k = repeat_kv(&k, n_rep)?.contiguous()?;
    let v = repeat_kv(&v, n_rep)?.contiguous()?;
    let scale = 1.0 / (d as f64).sqrt();
    let scores = (q.contiguous()?.matmul(&k.t()?)? * scale)?; // (B, H, T, Tk)
    let scores = scores.to_dtype(DType::F32)?.broadcast_add(bias)?;
    let probs = candle_nn::ops::softmax(&scores, D::Minus1)?.to_dtype(q.dtype())?;
    let y = probs.matmul(&v)?; // (B, H, T, D)
    y.transpose(1, 2)?.reshape((b, t, h * d))
}
