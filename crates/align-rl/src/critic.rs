//! PPO's value model: per-token value estimates V(s_t) read at the same columns as the policy's
//! log-probs ([`crate::rollout::Packed`]).

use crate::rollout::Packed;
use align_models::reward::RewardModel;
use align_models::{CausalLm, Model};
use align_train::{Result, TrainError};
use candle_core::{DType, Tensor, Var};
use std::path::Path;

pub enum Critic {
    /// A separate backbone with a scalar head (TRL: the value model starts as the reward model).
    Separate(RewardModel),
    /// A scalar head (1, C) on the policy's hidden states, starting at zero.
    Shared { head: Var },
}

impl Critic {
    /// A separate critic from `dir`: a reward model keeps its head; a causal LM gets a fresh one.
    pub fn separate(dir: &Path, seed: u64) -> Result<Self> {
        let (rm, _) = RewardModel::load_or_init(dir, seed, DType::F32, &candle_core::Device::Cpu).map_err(TrainError::other)?;
        Ok(Critic::Separate(rm))
    }

    pub fn shared(policy: &Model) -> Result<Self> {
        let h = policy.lm.hidden_size();
        Ok(Critic::Shared { head: Var::from_tensor(&Tensor::zeros((1, h), DType::F32, &policy.device)?)? })
    }

    /// The trained parameters, named for the checkpoint (`critic.` prefix).
    pub fn vars(&self) -> Vec<(String, Var)> {
        match self {
            Critic::Separate(rm) => rm.vars().into_iter().map(|(k, v)| (format!("critic.{k}"), v)).collect(),
            Critic::Shared { head } => vec![("critic.value_head.weight".into(), head.clone())],
        }
    }

    /// Multiplies the value head by `factor` (a critic that starts as the reward model, when the
    /// reward is normalized: its values stay on the score's new scale).
    pub fn scale_head(&self, factor: f64) -> Result<()> {
        let head = match self {
            Critic::Separate(rm) => &rm.score,
            Critic::Shared { head } => head,
        };
        head.set(&(head.as_tensor() * factor)?)?;
        Ok(())
    }

    /// Values (B, tr); `policy_hidden` is the policy's (B, tr, C) at the same columns (used by
    /// the shared head).
    pub fn values(&self, packed: &Packed, policy_hidden: &Tensor) -> Result<Tensor> {
        let (h, w) = match self {
            Critic::Separate(rm) => (packed.hidden(rm.model.lm.as_ref() as &dyn CausalLm)?, rm.score.as_tensor().clone()),
            Critic::Shared { head } => (policy_hidden.clone(), head.as_tensor().clone()),
        };
        Ok(h.broadcast_matmul(&w.t()?)?.squeeze(2)?.to_dtype(DType::F32)?)
    }

    /// Saves a separate critic as an HF sequence-classification model, a shared head as one tensor.
    pub fn save(&self, dir: &Path, pad: u32) -> Result<()> {
        match self {
            Critic::Separate(rm) => rm.save_pretrained(dir, DType::F32, pad).map_err(TrainError::other),
            Critic::Shared { head } => {
                std::fs::create_dir_all(dir).map_err(TrainError::other)?;
                align_models::hf::save_safetensors(dir.join("value_head.safetensors"), &[("value_head.weight".into(), head.as_tensor().clone())]).map_err(TrainError::other)
            }
        }
    }
}
