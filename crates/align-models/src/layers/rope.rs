//! Rotary position embeddings (Su et al. 2021) in HF's "rotate half" layout, for explicit
//! per-token positions (so left-padded and packed batches rotate correctly).

use crate::kernels;
use candle_core::{DType, Result, Tensor, D};

#[derive(Clone, Debug)]
pub struct Rope {
    /// (1, 1, D/2) inverse frequencies `1 / theta^(2i/D)`.
    inv_freq: Tensor,
}

impl Rope {
    pub fn new(head_dim: usize, theta: f64, dev: &candle_core::Device) -> Result<Self> {
        let inv: Vec<f32> = (0..head_dim / 2)
            .map(|i| 1.0 / (theta as f32).powf((2 * i) as f32 / head_dim as f32))
            .collect();
        Ok(Self { inv_freq: Tensor::from_vec(inv, (1, 1, head_dim / 2), dev)? })
    }

    /// cos and sin for positions (B, T): each (B, 1, T, D).
    pub fn cos_sin(&self, positions: &Tensor) -> Result<(Tensor, Tensor)> {
        let pos = positions.to_dtype(DType::F32)?.unsqueeze(D::Minus1)?; // (B, T, 1)
        let freqs = pos.broadcast_mul(&self.inv_freq)?; // (B, T, D/2)
        let emb = Tensor::cat(&[&freqs, &freqs], D::Minus1)?.unsqueeze(1)?; // (B, 1, T, D)
        Ok((emb.cos()?, emb.sin()?))
    }
}

/// `x * cos + rotate_half(x) * sin` for x of shape (B, H, T, D) and cos, sin (B, 1, T, D): the
/// fused kernel ([`crate::kernels::rope`]) for f32 CPU tensors, [`apply_rope_reference`] otherwise.
pub fn apply_rope(x: &Tensor, cos: &Tensor, sin: &Tensor) -> Result<Tensor> {
    if kernels::cpu_f32(&[x, cos, sin]) {
        kernels::rope::rope(x, cos, sin)
    } else {
        apply_rope_reference(x, cos, sin)
    }
}

/// [`apply_rope`] composed of differentiable candle ops: the reference the fused kernel is
/// tested against, and the path for other dtypes and devices.
pub fn apply_rope_reference(x: &Tensor, cos: &Tensor, sin: &Tensor) -> Result<Tensor> {
    let d = x.dim(D::Minus1)?;
    let x1 = x.narrow(D::Minus1, 0, d / 2)?;
    let x2 = x.narrow(D::Minus1, d / 2, d / 2)?;
    let rotated = Tensor::cat(&[&x2.neg()?, &x1], D::Minus1)?;
    x.broadcast_mul(&cos.to_dtype(x.dtype())?)?
        .add(&rotated.broadcast_mul(&sin.to_dtype(x.dtype())?)?)
}
