//! align-rl: stage 3 online. The policy generates, rewards score it, and PPO (with a value model,
//! GAE and a KL penalty to the reference) or critic-free GRPO / RLOO improve it.
//!
//! - [`reward`]: the `Reward` interface and its kinds (reward model, gold judge, function, command,
//!   HTTP), weighted sums, clipping, missing-EOS penalty.
//! - [`rollout`]: prompts, sampling, and the packed layout that reads per-response-token outputs.
//! - [`critic`]: PPO's value model (separate, from the reward model, or a head on the policy).
//! - [`stream`]: rollouts → advantages → minibatches; the resumable data stream of the loop.
//! - [`step`]: the PPO and GRPO / RLOO losses of one minibatch.
//! - [`config`]: [`config::RlConfig`] with TRL's defaults.
//! - [`run`]: the whole run.
//!
//! The math (GAE, whitening, KL estimators, clipped losses, group advantages) is in
//! [`align_train::rl_math`], golden-tested against TRL.

pub mod config;
pub mod critic;
pub mod reward;
pub mod rollout;
pub mod run;
pub mod step;
pub mod stream;

pub use config::{Algorithm, RlConfig};
pub use run::{run, run_with_rewards, RlSummary};
