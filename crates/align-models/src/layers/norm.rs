//! RMSNorm (Llama family) and LayerNorm (GPT-2), composed of differentiable ops, computed in f32.

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
        let dtype = x.dtype();
        let x = x.to_dtype(DType::F32)?;
        let rms = (x.sqr()?.mean_keepdim(D::Minus1)? + self.eps)?.sqrt()?;
        let y = x.broadcast_div(&rms)?.to_dtype(dtype)?;
        y.broadcast_mul(&self.weight)
    }
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
