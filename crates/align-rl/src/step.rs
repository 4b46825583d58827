//! One training step of PPO or GRPO / RLOO on a minibatch of experiences: the policy's current
//! log-probs (and values), then the clipped losses of [`align_train::rl_math`].

use crate::config::{Algorithm, RlConfig};
use crate::critic::Critic;
use crate::rollout::{pad_rows, Packed, Sample};
use crate::stream::Minibatch;
use align_core::metrics::Record;
use align_models::CausalLm;
use align_train::rl_math::{grpo_loss, ppo_policy_loss, ppo_value_loss, GrpoLossConfig};
use align_train::sft::add_ptx;
use align_train::trainer::Step;
use align_train::Result;
use candle_core::{Device, Tensor};
use serde_json::json;

pub struct RlStep<'a> {
    pub cfg: &'a RlConfig,
    pub policy: &'a dyn CausalLm,
    pub critic: Option<&'a Critic>,
    pub device: Device,
}

fn scalar(t: &Tensor) -> Result<f64> {
    Ok(t.to_dtype(candle_core::DType::F32)?.to_scalar::<f32>()? as f64)
}

impl Step<Minibatch> for RlStep<'_> {
    fn loss(&mut self, mb: &Minibatch) -> Result<(Tensor, Record)> {
        let cfg = self.cfg;
        let dev = &self.device;
        let samples: Vec<&Sample> = mb.items.iter().map(|e| &e.sample).collect();
        let p = Packed::new(&samples, cfg.padding_free, dev)?;
        let h = p.hidden(self.policy)?;
        let (logp, _) = p.logps(self.policy, &h, cfg.sampling.temperature as f64, false)?;
        let col = |f: fn(&crate::stream::Experience) -> &Vec<f32>| pad_rows(&mb.items.iter().map(f).collect::<Vec<_>>(), p.tr, dev);
        let old = col(|e| &e.old_logps)?;
        let mut m = Record::new();
        let tokens: usize = samples.iter().map(|s| s.prompt_ids.len() + s.response_ids.len()).sum();
        m.insert("num_tokens".into(), json!(tokens));
        let loss = match cfg.algorithm {
            Algorithm::Ppo => {
                let adv = col(|e| &e.advantages)?;
                let pl = ppo_policy_loss(&logp, &old, &adv, &p.mask, cfg.ppo.cliprange)?;
                let critic = self.critic.ok_or_else(|| align_train::TrainError::Config("PPO needs a critic".into()))?;
                let vpred = critic.values(&p, &h)?;
                let vl = ppo_value_loss(&vpred, &col(|e| &e.values)?, &col(|e| &e.returns)?, &p.mask, cfg.ppo.cliprange_value)?;
                m.insert("loss/policy_avg".into(), json!(scalar(&pl.pg_loss)?));
                m.insert("loss/value_avg".into(), json!(scalar(&vl.vf_loss)?));
                m.insert("policy/clipfrac_avg".into(), json!(scalar(&pl.clipfrac)?));
                m.insert("policy/approxkl_avg".into(), json!(scalar(&pl.approxkl)?));
                m.insert("val/ratio".into(), json!(scalar(&pl.ratio_mean)?));
                m.insert("val/clipfrac_avg".into(), json!(scalar(&vl.vf_clipfrac)?));
                (pl.pg_loss + (vl.vf_loss * cfg.ppo.vf_coef)?)?
            }
            Algorithm::Grpo | Algorithm::Rloo => {
                let g = &cfg.grpo;
                // One pass per rollout: the ratio is 1 and only its gradient matters (TRL).
                let old = if g.num_iterations <= 1 { logp.detach() } else { old };
                let refl = col(|e| &e.ref_logps)?;
                let adv = Tensor::from_vec(mb.items.iter().map(|e| e.seq_advantage).collect::<Vec<_>>(), samples.len(), dev)?;
                let n_tok = scalar(&p.mask.sum_all()?)?;
                let lc = GrpoLossConfig { epsilon_low: g.epsilon, epsilon_high: g.epsilon_high.unwrap_or(g.epsilon), beta: g.beta, loss_type: g.loss_type(n_tok, cfg.sampling.max_new_tokens)? };
                let out = grpo_loss(&logp, &old, Some(&refl), &adv, &p.mask, &lc)?;
                if let Some(kl) = &out.kl {
                    m.insert("kl".into(), json!(scalar(kl)?));
                }
                m.insert("clip_ratio/low_mean".into(), json!(scalar(&out.clip_ratio_low)?));
                m.insert("clip_ratio/high_mean".into(), json!(scalar(&out.clip_ratio_high)?));
                m.insert("clip_ratio/region_mean".into(), json!(scalar(&out.clip_ratio_region)?));
                out.loss
            }
        };
        let coef = cfg.ptx.as_ref().map_or(0.0, |p| p.coef);
        let loss = add_ptx(self.policy, dev, loss, mb.ptx.as_ref(), coef, &mut m)?;
        Ok((loss, m))
    }
}
