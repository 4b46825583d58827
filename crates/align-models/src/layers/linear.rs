//! Linear layers in the two weight layouts found in HF checkpoints. Each has a LoRA slot and
//! registers itself under its HF module name while a model is built (see `crate::lora`).

use crate::lora::LoraSlot;
use candle_core::{Module, Result, Tensor};
use candle_nn::VarBuilder;

/// `y = x Wᵀ + b` with W of shape (out, in), as `torch.nn.Linear`.
#[derive(Clone, Debug)]
pub struct Linear {
    pub weight: Tensor,
    pub bias: Option<Tensor>,
    pub lora: LoraSlot,
}

impl Linear {
    pub fn new(vb: VarBuilder, d_in: usize, d_out: usize, bias: bool) -> Result<Self> {
        let weight = vb.get_with_hints((d_out, d_in), "weight", candle_nn::init::DEFAULT_KAIMING_NORMAL)?;
        let bias = if bias { Some(vb.get_with_hints(d_out, "bias", candle_nn::Init::Const(0.))?) } else { None };
        let lora = LoraSlot::default();
        crate::lora::register(vb.prefix(), d_in, d_out, false, &lora);
        Ok(Self { weight, bias, lora })
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
        let y = matmul_last(x, &self.lora.base(&self.weight).t()?)?;
        let y = match &self.bias {
            Some(b) => y.broadcast_add(&self.lora.base(b))?,
            None => y,
        };
        self.lora.add_update(x, y)
    }
}

/// GPT-2's `Conv1D`: `y = x W + b` with W of shape (in, out).
#[derive(Clone, Debug)]
pub struct Conv1D {
    pub weight: Tensor,
    pub bias: Tensor,
    pub lora: LoraSlot,
}

impl Conv1D {
    pub fn new(vb: VarBuilder, d_in: usize, d_out: usize) -> Result<Self> {
        let weight = vb.get_with_hints((d_in, d_out), "weight", candle_nn::init::DEFAULT_KAIMING_NORMAL)?;
        let bias = vb.get_with_hints(d_out, "bias", candle_nn::Init::Const(0.))?;
        let lora = LoraSlot::default();
        crate::lora::register(vb.prefix(), d_in, d_out, true, &lora);
        Ok(Self { weight, bias, lora })
    }
}

impl Module for Conv1D {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let y = matmul_last(x, &self.lora.base(&self.weight))?.broadcast_add(&self.lora.base(&self.bias))?;
        self.lora.add_update(x, y)
    }
}
