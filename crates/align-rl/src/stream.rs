//! The rollout stream: the [`DataStream`] of every RL method. When its buffer is used up it makes
//! a new rollout (sample prompts → generate → old / reference log-probs and values → rewards →
//! advantages), logs it to `rollouts.jsonl`, and then serves the buffer as shuffled minibatches for
//! `epochs` passes; one minibatch is one training micro-batch of the shared loop. Its state (the
//! buffer, the position, the prompt order, the KL coefficient) is checkpointed, so a resumed run
//! continues bit-for-bit.

use crate::config::{Algorithm, RlConfig};
use crate::critic::Critic;
use crate::reward::{GoldAxis, GoldReward, Reward, RewardInput, RewardSet};
use crate::rollout::{decode, pad_rows, rows, sample, Packed, Prompt, Sample};
use align_core::metrics::{MetricsSink, Record};
use align_data::{Batch, Batcher, Shuffler, Tokenizer};
use align_generate::SamplingConfig;
use align_models::CausalLm;
use align_train::rl_math::{gae, group_advantages, kl_penalized_rewards, kl_per_token, rloo_advantages, whiten, AdaptiveKlController, KlController};
use align_train::trainer::DataStream;
use align_train::{Result, TrainError};
use candle_core::{Device, Tensor};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use std::path::PathBuf;
use std::time::Instant;

/// One sample of a rollout with everything its training steps need (host vectors, one entry per
/// response token).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Experience {
    pub sample: Sample,
    pub old_logps: Vec<f32>,
    pub ref_logps: Vec<f32>,
    /// PPO: values at rollout time, per-token advantages (whitened) and returns.
    pub values: Vec<f32>,
    pub advantages: Vec<f32>,
    pub returns: Vec<f32>,
    /// GRPO / RLOO: the sequence's advantage.
    pub seq_advantage: f32,
}

/// A minibatch: experiences and, with PPO-ptx, a pretraining batch.
pub struct Minibatch {
    pub items: Vec<Experience>,
    pub ptx: Option<Batch>,
}

#[derive(Serialize, Deserialize)]
struct State {
    iteration: u64,
    served: u64,
    buffer: Vec<Experience>,
    order: Vec<usize>,
    cursor: usize,
    prompts: Value,
    kl_coef: f64,
    ptx: Option<Value>,
    #[serde(default)]
    reward_normalization: Option<(f64, f64)>,
}

pub struct RolloutStream<'a> {
    pub cfg: &'a RlConfig,
    pub policy: &'a dyn CausalLm,
    pub reference: &'a dyn CausalLm,
    pub critic: Option<&'a Critic>,
    pub rewards: RewardSet,
    /// The gym's gold judge as a monitor (not optimized) when the prompts are gym records.
    pub gold_monitor: bool,
    pub tok: &'a Tokenizer,
    pub prompts: &'a [Prompt],
    pub eval_prompts: &'a [Prompt],
    pub device: Device,
    pub kl: KlController,
    pub ptx: Option<Batcher>,
    prompt_order: Shuffler,
    sampling: SamplingConfig,
    iteration: u64,
    /// Minibatches served so far (the trainer's micro-batches).
    served: u64,
    buffer: Vec<Experience>,
    order: Vec<usize>,
    cursor: usize,
    log: PathBuf,
    /// When the previous rollout was ready: the time since then is the previous iteration's training.
    last_ready: Option<Instant>,
}

impl<'a> RolloutStream<'a> {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        cfg: &'a RlConfig,
        policy: &'a dyn CausalLm,
        reference: &'a dyn CausalLm,
        critic: Option<&'a Critic>,
        rewards: RewardSet,
        tok: &'a Tokenizer,
        prompts: &'a [Prompt],
        eval_prompts: &'a [Prompt],
        ptx: Option<Batcher>,
    ) -> Result<Self> {
        let per_rollout = match cfg.algorithm {
            Algorithm::Ppo => cfg.ppo.rollout_batch_size,
            _ => cfg.grpo.prompts_per_rollout,
        };
        let prompt_order = Shuffler::new(prompts.len(), per_rollout.min(prompts.len()).max(1), cfg.train.seed, "rl-prompts").map_err(TrainError::other)?;
        let kl = match cfg.ppo.target_kl {
            Some(t) => KlController::Adaptive(AdaptiveKlController::new(cfg.ppo.kl_coef, t, cfg.ppo.kl_horizon)),
            None => KlController::Fixed(cfg.ppo.kl_coef),
        };
        let mut sampling = cfg.sampling.clone();
        for e in tok.eos_ids().iter().copied().chain(tok.token_to_id("<|im_end|>")) {
            if !sampling.eos_token_ids.contains(&e) {
                sampling.eos_token_ids.push(e);
            }
        }
        let gold_monitor = prompts.first().is_some_and(|p| serde_json::from_value::<align_gym::PromptRecord>(p.meta.clone()).is_ok());
        Ok(Self {
            cfg,
            policy,
            reference,
            critic,
            rewards,
            gold_monitor,
            tok,
            prompts,
            eval_prompts,
            device: Device::Cpu,
            kl,
            ptx,
            prompt_order,
            sampling,
            iteration: 0,
            served: 0,
            buffer: vec![],
            order: vec![],
            cursor: 0,
            log: cfg.out_dir.join("rollouts.jsonl"),
            last_ready: None,
        })
    }

    fn epochs(&self) -> usize {
        match self.cfg.algorithm {
            Algorithm::Ppo => self.cfg.ppo.ppo_epochs,
            _ => self.cfg.grpo.num_iterations,
        }
    }

    /// The optimizer step the next minibatch belongs to (1-based).
    fn next_step(&self) -> u64 {
        self.served / self.cfg.train.grad_accum.max(1) as u64 + 1
    }

    /// Gold scores of responses when the prompts are gym records.
    fn gold(&self, prompts: &[&Prompt], responses: &[String]) -> Result<Option<Vec<f64>>> {
        if !self.gold_monitor {
            return Ok(None);
        }
        let inputs: Vec<RewardInput> = prompts.iter().zip(responses).map(|(p, r)| RewardInput { prompt: &p.messages, response: r, meta: &p.meta }).collect();
        Ok(Some(GoldReward { axis: GoldAxis::Overall }.score(&inputs)?))
    }

    /// Greedy answers to the held-out prompts, scored by the reward set (and gold when known).
    pub fn evaluate(&mut self) -> Result<Record> {
        let mut rec = Record::new();
        if self.eval_prompts.is_empty() {
            return Ok(rec);
        }
        let total = self.eval_prompts.len();
        let n = total.min(if self.cfg.eval_max_prompts == 0 { usize::MAX } else { self.cfg.eval_max_prompts });
        // Evenly spaced through the file, so a subset of a file sorted by family covers them all.
        let which: Vec<usize> = (0..n).map(|i| i * total / n).collect();
        let greedy = SamplingConfig { temperature: 0.0, ..self.sampling.clone() };
        let mut samples = vec![];
        for chunk in which.chunks(64) {
            samples.extend(sample(self.policy, &self.device, self.eval_prompts, chunk, &greedy, 0)?);
        }
        let responses = decode(self.tok, &samples)?;
        let ps: Vec<&Prompt> = samples.iter().map(|s| &self.eval_prompts[s.prompt]).collect();
        let inputs: Vec<RewardInput> = ps.iter().zip(&responses).map(|(p, r)| RewardInput { prompt: &p.messages, response: r, meta: &p.meta }).collect();
        let eos: Vec<bool> = samples.iter().map(|s| s.eos).collect();
        let (scores, per_reward) = self.rewards.score(&inputs, &eos)?;
        rec.insert("eval/score".into(), json!(mean(&scores)));
        for (k, v) in per_reward {
            rec.insert(format!("eval/{k}"), json!(v));
        }
        if let Some(g) = self.gold(&ps, &responses)? {
            rec.insert("eval/gold".into(), json!(mean(&g)));
        }
        rec.insert("eval/response_length".into(), json!(samples.iter().map(|s| s.response_ids.len() as f64).sum::<f64>() / n as f64));
        Ok(rec)
    }

    /// PPO's `normalize_reward` (Ziegler et al. 2019): the current (initial) policy samples answers
    /// to `normalize_samples` train prompts (a seeded choice), and the reward set is told the mean
    /// and std of their summed scores; every later score is normalized by them. Returns them.
    pub fn fit_reward_normalization(&mut self) -> Result<(f64, f64)> {
        let n = self.cfg.ppo.normalize_samples.min(self.prompts.len()).max(1);
        let mut all: Vec<usize> = (0..self.prompts.len()).collect();
        use rand::seq::SliceRandom;
        all.shuffle(&mut align_core::seed::fork(self.cfg.train.seed, "rl-reward-normalization"));
        all.truncate(n);
        let seed = rand::RngCore::next_u64(&mut align_core::seed::fork(self.cfg.train.seed, "rl-reward-normalization-sampling"));
        let sampling = SamplingConfig { seed, ..self.sampling.clone() };
        let mut samples = vec![];
        for chunk in all.chunks(64) {
            samples.extend(sample(self.policy, &self.device, self.prompts, chunk, &sampling, 0)?);
        }
        let responses = decode(self.tok, &samples)?;
        let inputs: Vec<RewardInput> = samples.iter().zip(&responses).map(|(s, r)| RewardInput { prompt: &self.prompts[s.prompt].messages, response: r, meta: &self.prompts[s.prompt].meta }).collect();
        // Raw sums: no normalization, and no shaping (it applies after normalizing).
        let shaping = std::mem::take(&mut self.rewards.shaping);
        self.rewards.normalization = None;
        let scored = self.rewards.score(&inputs, &vec![true; inputs.len()]);
        self.rewards.shaping = shaping;
        let scores = scored?.0;
        let m = mean(&scores);
        let sd = (scores.iter().map(|x| (x - m) * (x - m)).sum::<f64>() / scores.len() as f64).sqrt();
        // All samples scored alike (a sparse reward the initial policy never earns): shift only.
        let sd = if sd > 1e-6 { sd } else { 1.0 };
        self.rewards.normalization = Some((m, sd));
        tracing::info!("reward normalization: the initial policy's {} samples score {m:.4} ± {sd:.4}; scores are now (score − {m:.4}) / {sd:.4}", scores.len());
        Ok((m, sd))
    }

    /// Makes the next rollout and fills the buffer.
    fn rollout(&mut self) -> Result<()> {
        let cfg = self.cfg;
        let t0 = Instant::now();
        let t_train_prev = self.last_ready.map(|t| t.elapsed().as_secs_f64());
        let (per_rollout, g) = match cfg.algorithm {
            Algorithm::Ppo => (cfg.ppo.rollout_batch_size, 1),
            _ => (cfg.grpo.prompts_per_rollout, cfg.grpo.num_generations),
        };
        // More prompts per rollout than the set holds: keep drawing (the next epoch's order).
        let mut idx = vec![];
        while idx.len() < per_rollout {
            idx.extend(self.prompt_order.next_indices());
        }
        idx.truncate(per_rollout);
        let which: Vec<usize> = idx.iter().flat_map(|&i| std::iter::repeat_n(i, g)).collect();
        let sampling = SamplingConfig { seed: cfg.train.seed.wrapping_add(self.iteration), ..self.sampling.clone() };
        let samples = sample(self.policy, &self.device, self.prompts, &which, &sampling, 0)?;
        let t_gen = t0.elapsed().as_secs_f64();

        // Log-probs of the policy (old) and the reference, and values, without gradients.
        let t1 = Instant::now();
        let (mut old, mut refl, mut vals) = (vec![], vec![], vec![]);
        for chunk in samples.chunks(cfg.forward_batch_size.max(1)) {
            let refs: Vec<&Sample> = chunk.iter().collect();
            let p = Packed::new(&refs, cfg.padding_free, &self.device)?;
            let h = p.hidden(self.policy)?.detach();
            old.extend(rows(&p.logps(self.policy, &h, cfg.sampling.temperature as f64, false)?.0.detach(), &refs)?);
            let hr = p.hidden(self.reference)?.detach();
            refl.extend(rows(&p.logps(self.reference, &hr, cfg.sampling.temperature as f64, false)?.0.detach(), &refs)?);
            if let Some(c) = self.critic {
                vals.extend(rows(&c.values(&p, &h)?.detach(), &refs)?);
            }
        }
        let t_fwd = t1.elapsed().as_secs_f64();

        // Rewards.
        let t2 = Instant::now();
        let responses = decode(self.tok, &samples)?;
        let ps: Vec<&Prompt> = samples.iter().map(|s| &self.prompts[s.prompt]).collect();
        let inputs: Vec<RewardInput> = ps.iter().zip(&responses).map(|(p, r)| RewardInput { prompt: &p.messages, response: r, meta: &p.meta }).collect();
        let eos: Vec<bool> = samples.iter().map(|s| s.eos).collect();
        let (scores, per_reward) = self.rewards.score(&inputs, &eos)?;
        let gold = self.gold(&ps, &responses)?;
        let t_score = t2.elapsed().as_secs_f64();

        // Advantages.
        let t3 = Instant::now();
        let b = samples.len();
        let refs: Vec<&Sample> = samples.iter().collect();
        let tr = refs.iter().map(|s| s.response_ids.len()).max().unwrap_or(1);
        let dev = &self.device;
        let mask = Packed::new(&refs, false, dev)?.mask;
        let old_t = pad_rows(&old.iter().collect::<Vec<_>>(), tr, dev)?;
        let ref_t = pad_rows(&refl.iter().collect::<Vec<_>>(), tr, dev)?;
        let kl_tok = (kl_per_token(&old_t, &ref_t, cfg.ppo.kl_estimator)? * &mask)?;
        let kl_seq: Vec<f32> = kl_tok.sum(1)?.to_vec1()?;
        // PPO: the penalty in the reward; GRPO / RLOO: β of the k3 loss term (logged the same way).
        let kl_coef = match cfg.algorithm {
            Algorithm::Ppo => self.kl.value(),
            _ => cfg.grpo.beta,
        };
        let mut exps: Vec<Experience> = samples
            .iter()
            .enumerate()
            .map(|(i, s)| Experience { sample: s.clone(), old_logps: old[i].clone(), ref_logps: refl[i].clone(), values: vec![], advantages: vec![], returns: vec![], seq_advantage: 0.0 })
            .collect();
        let scores_t = Tensor::from_vec(scores.iter().map(|&x| x as f32).collect::<Vec<_>>(), b, dev)?;
        match cfg.algorithm {
            Algorithm::Ppo => {
                let critic_vals = pad_rows(&vals.iter().collect::<Vec<_>>(), tr, dev)?;
                let mut rewards = kl_penalized_rewards(&kl_tok, kl_coef, &scores_t, &mask)?;
                if cfg.ppo.whiten_rewards {
                    rewards = (whiten(&rewards, &mask, false)? * &mask)?;
                }
                let (adv, ret) = gae(&rewards, &critic_vals, &mask, cfg.ppo.gamma, cfg.ppo.lam)?;
                let adv = (whiten(&adv, &mask, true)? * &mask)?;
                let (adv, ret) = (rows(&adv, &refs)?, rows(&ret, &refs)?);
                for (i, e) in exps.iter_mut().enumerate() {
                    e.values = vals[i].clone();
                    e.advantages = adv[i].clone();
                    e.returns = ret[i].clone();
                }
            }
            Algorithm::Grpo | Algorithm::Rloo => {
                let a = match cfg.algorithm {
                    Algorithm::Rloo => rloo_advantages(&scores_t, g)?,
                    _ => group_advantages(&scores_t, g, cfg.grpo.scale_rewards)?,
                };
                for (e, a) in exps.iter_mut().zip(a.to_vec1::<f32>()?) {
                    e.seq_advantage = a;
                }
            }
        }
        let t_adv = t3.elapsed().as_secs_f64();

        // Metrics (TRL's names) and the KL controller.
        let kl_mean = kl_seq.iter().map(|&x| x as f64).sum::<f64>() / b as f64;
        let neg_logp: f64 = old.iter().map(|r| -r.iter().map(|&x| x as f64).sum::<f64>()).sum::<f64>() / b as f64;
        let mut rec = Record::new();
        rec.insert("step".into(), json!(self.next_step()));
        rec.insert("rollout".into(), json!(self.iteration));
        rec.insert("objective/kl".into(), json!(kl_mean));
        rec.insert("objective/entropy".into(), json!(neg_logp));
        rec.insert("objective/scores".into(), json!(mean(&scores)));
        rec.insert("objective/rlhf_reward".into(), json!(mean(&scores) - kl_coef * kl_mean));
        rec.insert("objective/kl_coef".into(), json!(kl_coef));
        rec.insert("val/num_eos_tokens".into(), json!(eos.iter().filter(|&&e| e).count()));
        rec.insert("response_length".into(), json!(samples.iter().map(|s| s.response_ids.len() as f64).sum::<f64>() / b as f64));
        for (k, v) in per_reward {
            rec.insert(k, json!(v));
        }
        if let Some(g) = &gold {
            rec.insert("gold/mean".into(), json!(mean(g)));
        }
        rec.insert("time/generation".into(), json!(t_gen));
        rec.insert("time/forward".into(), json!(t_fwd));
        rec.insert("time/scoring".into(), json!(t_score));
        rec.insert("time/advantages".into(), json!(t_adv));
        if let Some(t) = t_train_prev {
            // The optimizer steps on the previous rollout (policy and value forward + backward, AdamW).
            rec.insert("time/training_previous".into(), json!(t));
        }
        if cfg.eval_every_rollouts > 0 && self.iteration % cfg.eval_every_rollouts == 0 {
            let t = Instant::now();
            rec.extend(self.evaluate()?);
            rec.insert("time/eval".into(), json!(t.elapsed().as_secs_f64()));
        }
        MetricsSink::open(&self.log)?.log(&rec)?;
        tracing::info!(
            "rollout {}: score {:.3}{} kl {:.3} len {:.1} ({:.1} s generate, {:.1} s forward, {:.1} s score)",
            self.iteration,
            mean(&scores),
            gold.as_ref().map(|g| format!(" gold {:.3}", mean(g))).unwrap_or_default(),
            kl_mean,
            rec["response_length"].as_f64().unwrap_or(0.0),
            t_gen,
            t_fwd,
            t_score
        );
        self.kl.update(kl_mean, b);

        // Minibatch order: `epochs` seeded permutations.
        let mut order = vec![];
        for ep in 0..self.epochs() {
            let mut perm: Vec<usize> = (0..b).collect();
            use rand::seq::SliceRandom;
            perm.shuffle(&mut align_core::seed::fork(cfg.train.seed, &format!("rl-minibatch-{}-{ep}", self.iteration)));
            order.extend(perm);
        }
        self.buffer = exps;
        self.order = order;
        self.cursor = 0;
        self.iteration += 1;
        self.last_ready = Some(Instant::now());
        Ok(())
    }
}

fn mean(x: &[f64]) -> f64 {
    x.iter().sum::<f64>() / x.len().max(1) as f64
}

impl DataStream for RolloutStream<'_> {
    type Batch = Minibatch;

    fn next_batch(&mut self) -> Result<Minibatch> {
        if self.cursor >= self.order.len() {
            self.rollout()?;
        }
        let (_, mini) = self.cfg.sizes();
        let end = (self.cursor + mini).min(self.order.len());
        let items = self.order[self.cursor..end].iter().map(|&i| self.buffer[i].clone()).collect();
        self.cursor = end;
        self.served += 1;
        Ok(Minibatch { items, ptx: self.ptx.as_mut().map(|b| b.next_batch()) })
    }

    fn state(&self) -> Value {
        let s = State {
            iteration: self.iteration,
            served: self.served,
            buffer: self.buffer.clone(),
            order: self.order.clone(),
            cursor: self.cursor,
            prompts: serde_json::to_value(self.prompt_order.state()).unwrap_or(Value::Null),
            kl_coef: self.kl.value(),
            ptx: self.ptx.as_ref().and_then(|b| serde_json::to_value(b.state()).ok()),
            reward_normalization: self.rewards.normalization,
        };
        serde_json::to_value(s).unwrap_or(Value::Null)
    }

    fn restore(&mut self, v: &Value) -> Result<()> {
        let bad = |e: serde_json::Error| TrainError::Config(format!("bad RL stream state in checkpoint: {e}"));
        let s: State = serde_json::from_value(v.clone()).map_err(bad)?;
        self.prompt_order.restore(&serde_json::from_value(s.prompts).map_err(bad)?).map_err(TrainError::other)?;
        if let (Some(b), Some(st)) = (self.ptx.as_mut(), s.ptx) {
            b.restore(&serde_json::from_value(st).map_err(bad)?).map_err(TrainError::other)?;
        }
        match &mut self.kl {
            KlController::Fixed(c) => *c = s.kl_coef,
            KlController::Adaptive(a) => a.value = s.kl_coef,
        }
        (self.iteration, self.served, self.buffer, self.order, self.cursor) = (s.iteration, s.served, s.buffer, s.order, s.cursor);
        self.rewards.normalization = s.reward_normalization;
        MetricsSink::truncate_after_step(&self.log, self.next_step() - 1)?;
        Ok(())
    }

    fn epoch(&self) -> Option<f64> {
        Some(self.prompt_order.epoch_f64())
    }
}
