//! The RL run's configuration: plain serde structs, defaults from TRL (each named).

use crate::reward::{RewardShaping, RewardSpec};
use align_generate::SamplingConfig;
use align_train::rl_math::{KlEstimator, LossType, ScaleRewards};
use align_train::sft::PtxConfig;
use align_train::{Result, TrainConfig, TrainError};
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

/// Which online algorithm.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Algorithm {
    /// PPO with a value model, GAE and a per-token KL penalty in the reward (InstructGPT).
    #[default]
    Ppo,
    /// GRPO: several samples per prompt, group-normalized advantages, no critic (DeepSeekMath).
    Grpo,
    /// RLOO: several samples per prompt, leave-one-out baseline (Ahmadian et al. 2024).
    Rloo,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RlConfig {
    pub out_dir: PathBuf,
    /// The policy to start from (usually the SFT model); also the reference unless `ref_model`.
    pub model: PathBuf,
    #[serde(default)]
    pub ref_model: Option<PathBuf>,
    #[serde(default)]
    pub algorithm: Algorithm,
    /// Prompt files (JSONL: `prompt` or `messages`; the gym's prompts/train.jsonl).
    pub prompts: Vec<PathBuf>,
    /// Held-out prompts, answered greedily and scored every `eval_every_rollouts` rollouts.
    #[serde(default)]
    pub eval_prompts: Vec<PathBuf>,
    /// At most this many held-out prompts, evenly spaced through the files (0 = all).
    #[serde(default = "default_eval_max")]
    pub eval_max_prompts: usize,
    #[serde(default = "default_eval_every")]
    pub eval_every_rollouts: u64,
    /// Prompts longer than this (tokens, after the chat template) are skipped.
    #[serde(default = "default_max_prompt_len")]
    pub max_prompt_len: usize,
    /// The rewards, summed with their weights: `[[rewards]] kind = "model" | "gold" | "command" | "http"`.
    pub rewards: Vec<RewardSpec>,
    #[serde(default)]
    pub shaping: RewardShaping,
    /// Rollout sampling: temperature 1, no top-k (unbiased samples of the policy), 64 new tokens.
    /// Keys given in a `[sampling]` table replace these one by one; the rest keep these values.
    #[serde(default = "default_sampling", deserialize_with = "sampling_over_defaults")]
    pub sampling: SamplingConfig,
    #[serde(default)]
    pub ppo: PpoConfig,
    #[serde(default)]
    pub grpo: GrpoConfig,
    /// Pretraining-data mixing in every minibatch (PPO-ptx, InstructGPT).
    #[serde(default)]
    pub ptx: Option<PtxConfig>,
    /// Rows per forward pass when computing rollout log-probs and values.
    #[serde(default = "default_forward_batch")]
    pub forward_batch_size: usize,
    /// Pack the samples of a forward pass (rollout log-probs and values, and each training
    /// minibatch) into rows as long as the longest prompt + response, attention kept inside each
    /// sample, instead of one right-padded sample per row: the same log-probs and values up to
    /// float rounding (tested), fewer tokens. As `PrefData::padding_free` of DPO (TRL's name).
    #[serde(default = "default_padding_free")]
    pub padding_free: bool,
    /// The loop: lr, max_steps (optimizer steps = minibatches), checkpoints, seed.
    pub train: TrainConfig,
}

fn default_eval_max() -> usize {
    200
}
fn default_eval_every() -> u64 {
    5
}
fn default_max_prompt_len() -> usize {
    128
}
fn default_forward_batch() -> usize {
    32
}
fn default_padding_free() -> bool {
    true
}
pub fn default_sampling() -> SamplingConfig {
    SamplingConfig { temperature: 1.0, top_k: 0, top_p: 1.0, max_new_tokens: 64, ..SamplingConfig::default() }
}

/// A `[sampling]` table read over [`default_sampling`] key by key. (Plain serde would fill the
/// keys it lacks from `SamplingConfig::default()`, whose top-k of 50 biases the rollouts.)
fn sampling_over_defaults<'de, D: serde::Deserializer<'de>>(d: D) -> std::result::Result<SamplingConfig, D::Error> {
    use serde::de::Error;
    let given = serde_json::Map::<String, serde_json::Value>::deserialize(d)?;
    let mut v = serde_json::to_value(default_sampling()).map_err(D::Error::custom)?;
    let obj = v.as_object_mut().ok_or_else(|| D::Error::custom("sampling defaults are not a table"))?;
    obj.extend(given);
    serde_json::from_value(v).map_err(D::Error::custom)
}

/// Where PPO's value estimates come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CriticKind {
    /// A separate model with a scalar head (TRL: initialized from the reward model).
    #[default]
    Separate,
    /// A scalar head on the policy's own last hidden states (no second backbone).
    Shared,
}

/// PPO's settings; defaults are TRL `PPOConfig`'s.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PpoConfig {
    /// Prompts per rollout (TRL `batch_size` = per-device batch × accumulation; 64 by default here).
    pub rollout_batch_size: usize,
    /// Samples per optimizer step (TRL `mini_batch_size`).
    pub mini_batch_size: usize,
    /// Passes over each rollout (TRL `num_ppo_epochs` 4).
    pub ppo_epochs: usize,
    /// Policy ratio clip (TRL `cliprange` 0.2).
    pub cliprange: f64,
    /// Value clip (TRL `cliprange_value` 0.2).
    pub cliprange_value: f64,
    /// Value-loss weight (TRL `vf_coef` 0.1).
    pub vf_coef: f64,
    /// GAE discount (TRL `gamma` 1.0) and λ (TRL `lam` 0.95).
    pub gamma: f64,
    pub lam: f64,
    /// KL penalty coefficient (TRL `kl_coef` 0.05).
    pub kl_coef: f64,
    /// Per-token KL estimator in the reward: k1 (TRL default) or k3 (TRL `kl_estimator = "k3"`).
    pub kl_estimator: KlEstimator,
    /// Adaptive KL (Ziegler et al. 2019): aim at this summed KL per sequence; none = fixed `kl_coef`.
    pub target_kl: Option<f64>,
    /// Samples over which the adaptive controller corrects (Ziegler et al.: 10000).
    pub kl_horizon: f64,
    /// Whiten the per-token rewards before GAE (TRL `whiten_rewards` false).
    pub whiten_rewards: bool,
    /// Normalize the score before training (Ziegler et al. 2019, lm-human-preferences
    /// `normalize_before`): the initial policy answers `normalize_samples` train prompts, and every
    /// later score is shifted and scaled so that those answers score mean 0, std 1; a critic that
    /// starts from the reward model gets its head scaled to match. On by default (TRL's PPOTrainer
    /// has no such step): `kl_coef` only means something relative to the reward's scale, and a
    /// Bradley-Terry model's scale is arbitrary (the gym's reward models score with std ≈ 4, which
    /// made β 0.05 four times weaker than on a unit scale; docs/rl.md).
    pub normalize_reward: bool,
    pub normalize_samples: usize,
    pub critic: CriticKind,
    /// Initial weights of a separate critic: a reward model or a causal LM (fresh head). Default:
    /// the first `kind = "model"` reward, else the policy.
    pub critic_model: Option<PathBuf>,
}

impl Default for PpoConfig {
    fn default() -> Self {
        Self {
            rollout_batch_size: 64,
            mini_batch_size: 16,
            ppo_epochs: 4,
            cliprange: 0.2,
            cliprange_value: 0.2,
            vf_coef: 0.1,
            gamma: 1.0,
            lam: 0.95,
            kl_coef: 0.05,
            kl_estimator: KlEstimator::K1,
            target_kl: None,
            kl_horizon: 10000.0,
            whiten_rewards: false,
            normalize_reward: true,
            normalize_samples: 128,
            critic: CriticKind::Separate,
            critic_model: None,
        }
    }
}

/// GRPO / RLOO settings; defaults are TRL `GRPOConfig`'s where it has one.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct GrpoConfig {
    /// Prompts per rollout.
    pub prompts_per_rollout: usize,
    /// Samples per prompt (TRL `num_generations` 8).
    pub num_generations: usize,
    /// Samples per optimizer step (a multiple of nothing in particular; groups may be split).
    pub mini_batch_size: usize,
    /// Passes over each rollout (TRL `num_iterations` 1; then old log-probs = current, detached).
    pub num_iterations: usize,
    /// Clip range ε_low / ε_high (TRL `epsilon` 0.2, `epsilon_high` = epsilon).
    pub epsilon: f64,
    pub epsilon_high: Option<f64>,
    /// KL coefficient β on k3 to the reference (TRL `beta` 0.0).
    pub beta: f64,
    /// GRPO advantage scaling: group (GRPO), batch, none (Dr. GRPO). Unused by RLOO.
    pub scale_rewards: ScaleRewards,
    /// Loss aggregation (TRL `loss_type`: grpo | bnpo | dr_grpo | dapo, default dapo).
    pub loss_type: String,
}

impl Default for GrpoConfig {
    fn default() -> Self {
        Self {
            prompts_per_rollout: 16,
            num_generations: 8,
            mini_batch_size: 32,
            num_iterations: 1,
            epsilon: 0.2,
            epsilon_high: None,
            beta: 0.0,
            scale_rewards: ScaleRewards::Group,
            loss_type: "dapo".into(),
        }
    }
}

impl GrpoConfig {
    /// The loss aggregation for a minibatch with `tokens` completion tokens of `max_len` columns.
    pub fn loss_type(&self, tokens: f64, max_completion_length: usize) -> Result<LossType> {
        Ok(match self.loss_type.as_str() {
            "grpo" => LossType::Grpo,
            "bnpo" => LossType::Bnpo,
            "dr_grpo" => LossType::DrGrpo { max_completion_length },
            "dapo" => LossType::Dapo { num_items_in_batch: tokens },
            o => return Err(TrainError::Config(format!("grpo.loss_type = {o:?}: expected grpo, bnpo, dr_grpo or dapo"))),
        })
    }
}

impl RlConfig {
    /// Samples per rollout and per minibatch.
    pub fn sizes(&self) -> (usize, usize) {
        match self.algorithm {
            Algorithm::Ppo => (self.ppo.rollout_batch_size, self.ppo.mini_batch_size),
            Algorithm::Grpo | Algorithm::Rloo => (self.grpo.prompts_per_rollout * self.grpo.num_generations, self.grpo.mini_batch_size),
        }
    }

    pub fn validate(&self) -> Result<()> {
        let bad = |m: String| Err(TrainError::Config(m));
        let (rollout, mini) = self.sizes();
        if rollout == 0 || mini == 0 {
            return bad("rollout and minibatch sizes must be positive".into());
        }
        if rollout % mini != 0 {
            return bad(format!("the minibatch size ({mini}) must divide the samples per rollout ({rollout})"));
        }
        if matches!(self.algorithm, Algorithm::Grpo | Algorithm::Rloo) && self.grpo.num_generations < 2 {
            return bad("grpo.num_generations must be at least 2 (advantages compare samples of one prompt)".into());
        }
        if self.sampling.temperature <= 0.0 {
            return bad("sampling.temperature must be > 0 for RL rollouts".into());
        }
        self.sampling.validate().map_err(TrainError::other)?;
        if self.prompts.is_empty() {
            return bad("no prompt files: set prompts = [\"...jsonl\"]".into());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(sampling: &str) -> std::result::Result<RlConfig, toml::de::Error> {
        toml::from_str(&format!("out_dir = \"o\"\nmodel = \"m\"\nprompts = [\"p.jsonl\"]\nrewards = []\n[train]\nmax_steps = 1\n{sampling}"))
    }

    #[test]
    fn a_partial_sampling_table_keeps_the_rl_defaults() {
        let d = default_sampling();
        assert_eq!(parse("").unwrap().sampling.top_k, d.top_k);
        let c = parse("[sampling]\nmax_new_tokens = 32\n").unwrap();
        assert_eq!(c.sampling.max_new_tokens, 32);
        assert_eq!((c.sampling.top_k, c.sampling.temperature), (0, 1.0), "not SamplingConfig's top-k of 50");
        assert_eq!(parse("[sampling]\ntop_k = 5\n").unwrap().sampling.top_k, 5);
        let e = parse("[sampling]\ntop_kk = 5\n").unwrap_err();
        assert!(e.to_string().contains("top_kk"), "{e}");
        // The binary's path: the file (plus --sets) as a toml::Value, then deserialized.
        let text = "out_dir = \"o\"\nmodel = \"m\"\nprompts = [\"p.jsonl\"]\nrewards = []\n[train]\nmax_steps = 1\n[sampling]\nmax_new_tokens = 8\n";
        let v = toml::Value::Table(text.parse::<toml::Table>().unwrap());
        let c = RlConfig::deserialize(v).unwrap();
        assert_eq!((c.sampling.max_new_tokens, c.sampling.top_k), (8, 0));
    }
}
