//! Linear layers in the two weight layouts found in HF checkpoints. Each has a LoRA slot and
//! registers itself under its HF module name while a model is built (see `crate::lora`).

use crate::kernels::{bf16_matmul, cpu_f32, matmul_precision, skinny, MatmulPrecision};
use crate::lora::LoraSlot;
use candle_core::{Module, Result, Tensor};
use candle_nn::VarBuilder;

/// True when `precision` asks for bf16 matmuls and the kernel can run them: f32 tensors on the
/// CPU, a CPU with AVX512_BF16 (`kernels::bf16_matmul`).
fn use_bf16(precision: MatmulPrecision, x: &Tensor, w: &Tensor) -> bool {
    precision == MatmulPrecision::Bf16 && cpu_f32(&[x, w]) && bf16_matmul::available()
}

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

/// `x @ wᵀ` over the last dim of `x` for w of shape (out, in) (HF's Linear and tied-embedding
/// layout). A decode step's few rows (f32, CPU) take the `kernels::skinny` path: one pass over W
/// instead of a GEMM that packs W on every call.
pub fn matmul_t(x: &Tensor, w: &Tensor) -> Result<Tensor> {
    if skinny::applies(x, w) {
        skinny::linear(x, w)
    } else {
        matmul_last(x, &w.t()?)
    }
}

/// The LM head, `lm_head` or the tied embedding: `x @ wᵀ` like `matmul_t`, in bf16 under the
/// process-wide `matmul_precision()` as every `Linear` is (PyTorch's autocast runs the LM head in
/// bf16 too); a decode step's few rows keep the f32 `skinny` path.
pub fn lm_head(x: &Tensor, w: &Tensor) -> Result<Tensor> {
    if !skinny::applies(x, w) && use_bf16(matmul_precision(), x, w) {
        bf16_matmul::linear(x, w)
    } else {
        matmul_t(x, w)
    }
}

impl Linear {
    /// The forward pass with the matmul in `precision` (`forward` uses the process-wide
    /// `kernels::matmul_precision()`).
    pub fn forward_with(&self, x: &Tensor, precision: MatmulPrecision) -> Result<Tensor> {
        let w = self.lora.base(&self.weight);
        let y = if use_bf16(precision, x, &w) {
            bf16_matmul::linear(x, &w)?
        } else {
            matmul_t(x, &w)?
        };
        let y = match &self.bias {
            Some(b) => y.broadcast_add(&self.lora.base(b))?,
            None => y,
        };
        self.lora.add_update(x, y)
    }
}

impl Module for Linear {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        self.forward_with(x, matmul_precision())
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

impl Conv1D {
    /// As [`Linear::forward_with`].
    pub fn forward_with(&self, x: &Tensor, precision: MatmulPrecision) -> Result<Tensor> {
        let w = self.lora.base(&self.weight);
        let y = if use_bf16(precision, x, &w) { bf16_matmul::conv1d(x, &w)? } else { matmul_last(x, &w)? };
        let y = y.broadcast_add(&self.lora.base(&self.bias))?;
        self.lora.add_update(x, y)
    }
}

impl Module for Conv1D {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        self.forward_with(x, matmul_precision())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::testing::{grads, randn, rel_err};
    use candle_core::{DType, Device, Var};
    use candle_nn::VarMap;

    /// Linear and Conv1D in bf16 precision: the kernel where the CPU has it (values and gradients
    /// within bf16 tolerance of f32, and not bit-equal to it), candle's f32 matmul elsewhere.
    type Layer = Box<dyn Fn(&Tensor, MatmulPrecision) -> Result<Tensor>>;

    #[test]
    fn bf16_precision_uses_the_kernel_within_tolerance() -> Result<()> {
        let x = Var::from_tensor(&randn(1, (2, 9, 40))?)?;
        for conv in [false, true] {
            let vm = VarMap::new();
            let vb = VarBuilder::from_varmap(&vm, DType::F32, &Device::Cpu);
            let layer: Layer = if conv {
                let l = Conv1D::new(vb.pp("conv"), 40, 24)?;
                Box::new(move |x, p| l.forward_with(x, p))
            } else {
                let l = Linear::new(vb.pp("lin"), 40, 24, true)?;
                Box::new(move |x, p| l.forward_with(x, p))
            };
            let (f32_y, bf16_y) = (layer(&x, MatmulPrecision::F32)?, layer(&x, MatmulPrecision::Bf16)?);
            assert_eq!(bf16_y.dims(), &[2, 9, 24]);
            let e = rel_err(&bf16_y, &f32_y)?;
            let vars = vm.all_vars();
            let all: Vec<&Var> = std::iter::once(&x).chain(&vars).collect();
            assert_eq!(all.len(), 3);
            let (g, g_ref) = (grads(&all, &bf16_y, 2)?, grads(&all, &f32_y, 2)?);
            if bf16_matmul::available() {
                assert!(e > 0.0 && e < 2e-2, "conv {conv}: rel err {e}");
                for (a, b) in g.iter().zip(&g_ref) {
                    let e = rel_err(a, b)?;
                    assert!(e < 2e-2, "conv {conv}: gradient rel err {e}");
                }
            } else {
                eprintln!("no avx512bf16: bf16 precision runs the f32 matmul");
                assert_eq!(e, 0.0, "conv {conv}");
            }
        }
        Ok(())
    }
}
