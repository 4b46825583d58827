//! align-train: the one training loop every method shares (pretraining, SFT, reward model, DPO,
//! PPO).
//!
//! A method supplies a [`trainer::Step`] (what one micro-batch computes: a loss and named metrics)
//! and a [`trainer::DataStream`] (where batches come from, with a resumable state); the
//! [`trainer::Trainer`] owns everything else: gradient accumulation, clipping, the learning-rate
//! schedule, AdamW, logging, evaluation, checkpoints and resume.
//!
//! - [`optim`]: AdamW written over `candle_core::Var`s, parameter groups, state export; global-norm clipping.
//! - [`schedule`]: warmup + cosine / linear / constant learning rates (HF Transformers' formulas).
//! - [`trainer`]: [`trainer::TrainConfig`] and the loop.
//! - [`checkpoint`]: the on-disk layout of a checkpoint, saving, pruning and loading.
//! - [`lm_loss`]: next-token cross-entropy and per-token log-probs.
//! - [`kernels`]: fused CPU kernels (token log-probs with backward, in-place AdamW).
//! - [`sft`]: supervised fine-tuning (chat templates, response-only loss, packing, pretraining-data mixing).
//! - [`pretrain`]: next-token pretraining on a token stream.
//! - [`rl_math`]: PPO/GRPO/RLOO math (whitening, KL estimators, GAE, clipped losses, KL controllers), golden-tested against TRL.
//! - [`pref_loss`]: preference losses (DPO family, SimPO, ORPO, KTO, Bradley-Terry) over summed log-probs.
//! - [`rm`]: reward models (Bradley-Terry on preference pairs, HF sequence-classification output).

pub mod checkpoint;
pub mod dpo;
pub mod error;
pub mod kernels;
pub mod kto;
pub mod lm_loss;
pub mod optim;
pub mod pref_loss;
pub mod pretrain;
pub mod rl_math;
pub mod rm;
pub mod schedule;
pub mod sft;
pub mod trainer;

pub use error::{Result, TrainError};
pub use trainer::{params_by_name, DataStream, Step, TrainConfig, Trainer};
