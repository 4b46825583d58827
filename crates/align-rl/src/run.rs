//! `align ppo | grpo | rloo`: load the policy, reference, critic, rewards and prompts, then run
//! the shared training loop over the rollout stream; save the policy (and critic).

use crate::config::{Algorithm, CriticKind, RlConfig};
use crate::critic::Critic;
use crate::reward::{RewardSet, RewardSpec};
use crate::rollout::load_prompts;
use crate::step::RlStep;
use crate::stream::RolloutStream;
use align_core::metrics::Record;
use align_data::chat_template::ChatTemplate;
use align_data::Tokenizer;
use align_models::Model;
use align_train::sft::{ptx_batcher, write_chat_model_files};
use align_train::trainer::Trainer;
use align_train::{Result, TrainError};
use candle_core::{DType, Device};
use serde::Serialize;
use std::path::PathBuf;

#[derive(Debug, Clone, Serialize)]
pub struct RlSummary {
    pub steps: u64,
    pub rollouts: usize,
    pub prompts: usize,
    pub prompts_too_long: usize,
    /// Held-out evaluation (greedy) before and after training: `eval/score`, `eval/gold`, ...
    pub eval_before: Record,
    pub eval_after: Record,
    /// PPO's reward normalization: (mean, std) of the initial policy's summed scores.
    pub reward_normalization: Option<(f64, f64)>,
    pub model_dir: PathBuf,
    pub seconds: f64,
}

/// Runs RL with the rewards of the config.
pub fn run(cfg: &RlConfig, resume: bool, resolved: &str) -> Result<RlSummary> {
    let rewards = RewardSet::from_specs(&cfg.rewards, cfg.shaping.clone())?;
    run_with_rewards(cfg, rewards, resume, resolved)
}

/// Runs RL with a given reward set (programmatic rewards, tests).
pub fn run_with_rewards(cfg: &RlConfig, rewards: RewardSet, resume: bool, resolved: &str) -> Result<RlSummary> {
    let start = std::time::Instant::now();
    cfg.validate()?;
    let dev = Device::Cpu;
    let tok = Tokenizer::from_dir(&cfg.model).map_err(TrainError::other)?;
    let tmpl = ChatTemplate::from_tokenizer(&tok).map_err(TrainError::other)?;
    let policy = Model::from_pretrained(&cfg.model, DType::F32, &dev).map_err(TrainError::other)?;
    let reference = Model::from_pretrained(cfg.ref_model.as_ref().unwrap_or(&cfg.model), DType::F32, &dev).map_err(TrainError::other)?;
    let max_prompt = cfg.max_prompt_len.min(policy.config.max_positions().saturating_sub(cfg.sampling.max_new_tokens));
    let (prompts, too_long) = load_prompts(&cfg.prompts, &tok, &tmpl, max_prompt)?;
    let (eval_prompts, _) = load_prompts(&cfg.eval_prompts, &tok, &tmpl, max_prompt)?;
    if prompts.is_empty() {
        return Err(TrainError::Config(format!("no usable prompts ({too_long} longer than {max_prompt} tokens)")));
    }
    tracing::info!("{} prompts ({} skipped as longer than {} tokens), {} held-out", prompts.len(), too_long, max_prompt, eval_prompts.len());

    // A separate critic that starts as a reward model predicts that model's (weighted) score.
    let mut critic_reward_weight = None;
    let critic = match cfg.algorithm {
        Algorithm::Ppo => Some(match cfg.ppo.critic {
            CriticKind::Shared => Critic::shared(&policy)?,
            CriticKind::Separate => {
                let rm = cfg.rewards.iter().find_map(|r| match r {
                    RewardSpec::Model { path, weight } => Some((path.clone(), *weight)),
                    _ => None,
                });
                let dir = cfg.ppo.critic_model.clone().or(rm.as_ref().map(|r| r.0.clone())).unwrap_or_else(|| cfg.model.clone());
                critic_reward_weight = rm.filter(|(p, _)| *p == dir && cfg.rewards.len() == 1).map(|r| r.1);
                Critic::separate(&dir, cfg.train.seed)?
            }
        }),
        _ => None,
    };
    let mut params = policy.trainable_vars();
    if let Some(c) = &critic {
        params.extend(c.vars());
    }
    let ptx = ptx_batcher(&tok, cfg.ptx.as_ref(), policy.config.max_positions().min(256), cfg.train.seed)?;
    let mut stream = RolloutStream::new(cfg, policy.lm.as_ref(), reference.lm.as_ref(), critic.as_ref(), rewards, &tok, &prompts, &eval_prompts, ptx)?;
    let mut step = RlStep { cfg, policy: policy.lm.as_ref(), critic: critic.as_ref(), device: dev.clone() };
    let mut trainer = Trainer::new(cfg.train.clone(), params, &cfg.out_dir)?;
    let resolved_text = resolved.to_string();
    trainer.set_checkpoint_hook(move |dir| {
        align_core::atomic::write_atomic(dir.join("align_config.toml"), resolved_text.as_bytes())?;
        Ok(())
    });
    // Before training: measured unless the run continues from a checkpoint (then the policy has moved).
    let resumed = if resume { trainer.resume(&mut step, &mut stream)?.is_some() } else { false };
    let mut reward_normalization = stream.rewards.normalization;
    if !resumed && cfg.algorithm == Algorithm::Ppo && cfg.ppo.normalize_reward {
        let (_, sd) = stream.fit_reward_normalization()?;
        reward_normalization = stream.rewards.normalization;
        if let (Some(c), Some(w)) = (&critic, critic_reward_weight) {
            c.scale_head(w / sd)?;
        }
    }
    let eval_before = if resumed { Record::new() } else { stream.evaluate()? };
    let summary = trainer.fit(&mut step, &mut stream, None)?;
    let eval_after = stream.evaluate()?;
    if !eval_after.is_empty() {
        // The curves' last point: the held-out evaluation after the final step, logged at the
        // step it precedes (as a rollout's evaluation is), so a resume cuts it off.
        let mut rec = eval_after.clone();
        rec.insert("step".into(), serde_json::json!(summary.step + 1));
        rec.insert("final".into(), serde_json::json!(true));
        align_core::metrics::MetricsSink::open(cfg.out_dir.join("rollouts.jsonl"))?.log(&rec)?;
    }
    let rollouts = std::fs::read_to_string(cfg.out_dir.join("rollouts.jsonl")).map(|t| t.lines().filter(|l| !l.contains("\"final\":true")).count()).unwrap_or(0);
    drop(step);
    drop(stream);

    let model_dir = cfg.out_dir.join("model");
    policy.save_pretrained(&model_dir, DType::F32).map_err(TrainError::other)?;
    write_chat_model_files(&model_dir, &policy.config_json(), &tok)?;
    align_core::atomic::write_atomic(model_dir.join("align_config.toml"), resolved.as_bytes())?;
    if let Some(c) = &critic {
        c.save(&cfg.out_dir.join("critic"), tok.pad_id().or(tok.eos_id()).unwrap_or(0))?;
    }
    Ok(RlSummary {
        steps: summary.step,
        rollouts,
        prompts: prompts.len(),
        prompts_too_long: too_long,
        eval_before,
        eval_after,
        reward_normalization,
        model_dir,
        seconds: start.elapsed().as_secs_f64(),
    })
}
