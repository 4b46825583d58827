//! Next-token losses as pure functions over tensors.

use candle_core::{DType, Result, Tensor, D};

/// Log-probability of each target token: logits (B, T, V), targets (B, T) u32 → (B, T) f32.
pub fn token_logprobs(logits: &Tensor, targets: &Tensor) -> Result<Tensor> {
    let logp = candle_nn::ops::log_softmax(&logits.to_dtype(DType::F32)?, D::Minus1)?;
    logp.gather(&targets.unsqueeze(D::Minus1)?, D::Minus1)?.squeeze(D::Minus1)
}

/// Mean cross-entropy over the positions where `mask` (B, T) is 1 (all positions when `None`),
/// as HF's causal-LM loss on already shifted targets.
pub fn causal_lm_loss(logits: &Tensor, targets: &Tensor, mask: Option<&Tensor>) -> Result<Tensor> {
    let nll = token_logprobs(logits, targets)?.neg()?;
    match mask {
        None => nll.mean_all(),
        Some(m) => {
            let m = m.to_dtype(DType::F32)?;
            let n = m.sum_all()?.to_scalar::<f32>()?;
            if n == 0.0 {
                candle_core::bail!("causal_lm_loss: the mask selects no token")
            }
            (nll * m)?.sum_all()? / n as f64
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    #[test]
    fn matches_hand_computed_cross_entropy() {
        // logits for 1 row, 2 positions, vocab 3.
        let logits = Tensor::new(&[[[1f32, 2., 3.], [0., 0., 0.]]], &Device::Cpu).unwrap();
        let targets = Tensor::new(&[[2u32, 1]], &Device::Cpu).unwrap();
        let l0 = -(3f32.exp() / (1f32.exp() + 2f32.exp() + 3f32.exp())).ln();
        let l1 = 3f32.ln();
        let loss = causal_lm_loss(&logits, &targets, None).unwrap().to_scalar::<f32>().unwrap();
        assert!((loss - (l0 + l1) / 2.0).abs() < 1e-6);
        let mask = Tensor::new(&[[0u8, 1]], &Device::Cpu).unwrap();
        let loss = causal_lm_loss(&logits, &targets, Some(&mask)).unwrap().to_scalar::<f32>().unwrap();
        assert!((loss - l1).abs() < 1e-6);
        // Same value as candle-nn's reference cross-entropy.
        let ce = candle_nn::loss::cross_entropy(&logits.reshape((2, 3)).unwrap(), &targets.flatten_all().unwrap())
            .unwrap()
            .to_scalar::<f32>()
            .unwrap();
        assert!((ce - (l0 + l1) / 2.0).abs() < 1e-6);
    }
}
