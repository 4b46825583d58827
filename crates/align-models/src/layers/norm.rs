//! RMSNorm (Llama family) and LayerNorm (GPT-2), computed in f32. RMSNorm runs the fused kernel
//! ([`crate::kernels::rms_norm`]) on f32 CPU tensors and the composed [`rms_norm_reference`]
//! otherwise; LayerNorm is composed of differentiable ops.

use crate::kernels;
use candle_core::{DType, Module, Result, Tensor, D};
use candle_nn::VarBuilder;

/// `x / sqrt(mean(x²) + eps) * weight` (Zhang & Sennrich 2019), as HF's `LlamaRMSNorm`.
#[derive(Clone, Debug)]
pub struct RmsNorm {
    pub weight: Tensor,
    pub eps: f64,
}

impl RmsNorm {
    pub fn new(vb: VarBuilder, dim: usize, eps: f64) -> Result<Self> {
        Ok(Self { weight: vb.get_with_hints(dim, "weight", candle_nn::Init::Const(1.))?, eps })
    }
}

impl Module for RmsNorm {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        if kernels::cpu_f32(&[x, &self.weight]) {
            kernels::rms_norm::rms_norm(x, &self.weight, self.eps)
        } else {
            rms_norm_reference(x, &self.weight, self.eps)
        }
    }
}

/// RMSNorm of x (…, C) with weight (C) composed of differentiable candle ops: normalised in f32,
/// cast back to x's dtype, then scaled. The reference the fused kernel is tested against, and
/// the path for other dtypes and devices.
pub fn rms_norm_reference(x: &Tensor, weight: &Tensor, eps: f64) -> Result<Tensor> {
    let dtype = x.dtype();
    let x = x.to_dtype(DType::F32)?;
    let rms = (x.sqr()?.mean_keepdim(D::Minus1)? + eps)?.sqrt()?;
    let y = x.broadcast_div(&rms)?.to_dtype(dtype)?;
    y.broadcast_mul(weight)
}

/// `(x - mean) / sqrt(var + eps) * weight + bias` (Ba et al. 2016), as `torch.nn.LayerNorm`.
#[derive(Clone, Debug)]
pub struct LayerNorm {
    pub weight: Tensor,
    pub bias: Tensor,
    pub eps: f64,
}

impl LayerNorm {
    pub fn new(vb: VarBuilder, dim: usize, eps: f64) -> Result<Self> {
        Ok(Self {
            weight: vb.get_with_hints(dim, "weight", candle_nn::Init::Const(1.))?,
            bias: vb.get_with_hints(dim, "bias", candle_nn::Init::Const(0.))?,
            eps,
        })
    }
}

impl Module for LayerNorm {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let dtype = x.dtype();
        let x = x.to_dtype(DType::F32)?;
        let centered = x.broadcast_sub(&x.mean_keepdim(D::Minus1)?)?;
        let std = (centered.sqr()?.mean_keepdim(D::Minus1)? + self.eps)?.sqrt()?;
        let y = centered.broadcast_div(&std)?.to_dtype(dtype)?;
        y.broadcast_mul(&self.weight)?.broadcast_add(&self.bias)
    }
}
