//! Linear layers in the two weight layouts found in HF checkpoints.

use candle_core::{Module, Result, Tensor};
use candle_nn::VarBuilder;

/// `y = x Wᵀ + b` with W of shape (out, in), as `torch.nn.Linear`.
#[derive(Clone, Debug)]
pub struct Linear {
    pub weight: Tensor,
    pub bias: Option<Tensor>,
}

impl Linear {
    pub fn new(vb: VarBuilder, d_in: usize, d_out: usize, bias: bool) -> Result<Self> {
        let weight = vb.get_with_hints((d_out, d_in), "weight", candle_nn::init::DEFAULT_KAIMING_NORMAL)?;
        let bias = if bias { Some(vb.get_with_hints(d_out, "bias", candle_nn::Init::Const(0.))?) } else { None };
        Ok(Self { weight, bias })
    }
}

/// `x @ w` over the last dim of `x` of any rank, as one 2-D matmul (no broadcast copies of `w`).
pub fn matmul_last(x: &Tensor, w: &Tensor) -> Result<Tensor> {
    let dims = x.dims();
    let (d_in, d_out) = w.dims2()?;
    let rows = x.elem_count() / d_in;
    let y = x.reshape((rows, d_in))?.matmul(w)?;
    let mut out = dims.to_vec();
    *out.last_mut().unwrap() = d_out;
    y.reshape(out)
}

impl Module for Linear {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let y = matmul_last(x, &self.weight.t()?)?;
        match &self.bias {
            Some(b) => y.broadcast_add(b),
            None => Ok(y),
        }
    }
}

/// GPT-2's `Conv1D`: `y = x W + b` with W of shape (in, out).
#[derive(Clone, Debug)]
pub struct Conv1D {
    pub weight: Tensor,
    pub bias: Tensor,
}

impl Conv1D {
    pub fn new(vb: VarBuilder, d_in: usize, d_out: usize) -> Result<Self> {
        let weight = vb.get_with_hints((d_in, d_out), "weight", candle_nn::init::DEFAULT_KAIMING_NORMAL)?;
        let bias = vb.get_with_hints(d_out, "bias", candle_nn::Init::Const(0.))?;
        Ok(Self { weight, bias })
    }
}

impl Module for Conv1D {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        matmul_last(x, &self.weight)?.broadcast_add(&self.bias)
    }
}
