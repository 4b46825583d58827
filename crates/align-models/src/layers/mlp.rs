//! Feed-forward blocks: SwiGLU (Shazeer 2020; Llama family) and GELU-tanh (GPT-2).

use super::linear::{Conv1D, Linear};
use crate::kernels;
use candle_core::{Module, Result, Tensor};
use candle_nn::VarBuilder;

/// `down(silu(gate(x)) * up(x))`.
#[derive(Clone, Debug)]
pub struct SwiGlu {
    gate_proj: Linear,
    up_proj: Linear,
    down_proj: Linear,
}

impl SwiGlu {
    pub fn new(vb: VarBuilder, hidden: usize, intermediate: usize) -> Result<Self> {
        Ok(Self {
            gate_proj: Linear::new(vb.pp("gate_proj"), hidden, intermediate, false)?,
            up_proj: Linear::new(vb.pp("up_proj"), hidden, intermediate, false)?,
            down_proj: Linear::new(vb.pp("down_proj"), intermediate, hidden, false)?,
        })
    }
}

impl Module for SwiGlu {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let gate = self.gate_proj.forward(x)?; // (B, T, I)
        let up = self.up_proj.forward(x)?; // (B, T, I)
        let h = if kernels::cpu_f32(&[&gate, &up]) { kernels::swiglu::swiglu(&gate, &up)? } else { swiglu_reference(&gate, &up)? };
        self.down_proj.forward(&h)
    }
}

/// `silu(gate) * up` composed of candle ops: the reference the fused kernel
/// ([`crate::kernels::swiglu`]) is tested against, and the path for other dtypes and devices.
pub fn swiglu_reference(gate: &Tensor, up: &Tensor) -> Result<Tensor> {
    gate.silu()? * up
}

/// GPT-2's MLP: `c_proj(gelu_tanh(c_fc(x)))`.
#[derive(Clone, Debug)]
pub struct GeluMlp {
    c_fc: Conv1D,
    c_proj: Conv1D,
}

impl GeluMlp {
    pub fn new(vb: VarBuilder, hidden: usize, inner: usize) -> Result<Self> {
        Ok(Self { c_fc: Conv1D::new(vb.pp("c_fc"), hidden, inner)?, c_proj: Conv1D::new(vb.pp("c_proj"), inner, hidden)? })
    }
}

impl Module for GeluMlp {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        self.c_proj.forward(&self.c_fc.forward(x)?.gelu()?)
    }
}
