//! Preference losses as pure functions of summed completion log-probabilities.
//!
//! Every function takes the per-example summed log-probs (shape `(B,)`, f32) of the policy and, where the
//! method has one, of the frozen reference model, and returns per-example losses built from differentiable
//! candle ops, so `losses.mean_all()?.backward()` gives the policy gradients. The formulas, defaults and
//! metric names follow TRL 1.16.0 (see `docs/preference_losses.md` for each paper and TRL source location;
//! `tests/pref_losses.rs` checks every value and gradient against `scripts/fixtures/make_pref_losses.py`).
//!
//! - [`dpo_loss`]: the paired losses, [`DpoLossType`]: `sigmoid` (DPO, with cDPO label smoothing), `hinge`
//!   (SLiC), `ipo`, `robust` (rDPO) and the reference-free `simpo`; plus the optional RPO NLL term.
//! - [`orpo_loss`]: ORPO's odds-ratio term + the chosen NLL, no reference model.
//! - [`kto_loss`]: unpaired KTO with desirable/undesirable weights and the batch KL estimate [`kto_kl_estimate`].
//! - [`bt_reward_loss`]: the reward model's Bradley-Terry loss with margins, soft labels and centering;
//!   [`bt_metrics`] its metrics.

use std::collections::BTreeMap;

use candle_core::{bail, DType, Result, Tensor};
use serde::{Deserialize, Serialize};

/// `log σ(x)` computed stably as `min(x, 0) − log(1 + exp(−|x|))`, from differentiable ops.
pub fn log_sigmoid(x: &Tensor) -> Result<Tensor> {
    let min_x0 = x.neg()?.relu()?.neg()?;
    let tail = (x.abs()?.neg()?.exp()? + 1.0)?.log()?;
    min_x0 - tail
}

/// `σ(x) = exp(log σ(x))`, stable for large |x|.
pub fn sigmoid(x: &Tensor) -> Result<Tensor> {
    log_sigmoid(x)?.exp()
}

/// `log(1 − exp(x))` for `x < 0` (ORPO's log-odds). Accurate to about 1e-7 absolute in `1 − exp(x)`.
fn log1mexp(x: &Tensor) -> Result<Tensor> {
    (x.exp()?.neg()? + 1.0)?.log()
}

fn f32(t: &Tensor) -> Result<Tensor> {
    t.to_dtype(DType::F32)
}

fn check_b(name: &str, t: &Tensor, b: usize) -> Result<()> {
    if t.dims() != [b] {
        bail!("{name}: expected shape ({b},), got {:?}", t.dims())
    }
    Ok(())
}

/// The inputs of a paired loss: summed log-probs of the chosen and rejected completions, shape `(B,)`.
#[derive(Debug, Clone, Copy)]
pub struct PairLogps<'a> {
    pub policy_chosen: &'a Tensor,
    pub policy_rejected: &'a Tensor,
    /// Reference model log-probs; required by `sigmoid`, `hinge`, `ipo` and `robust`.
    pub ref_chosen: Option<&'a Tensor>,
    pub ref_rejected: Option<&'a Tensor>,
    /// Completion token counts; required by `simpo` and ORPO (length-normalized), used by `ipo` when given.
    pub chosen_len: Option<&'a Tensor>,
    pub rejected_len: Option<&'a Tensor>,
    /// Mean per-token NLL of the chosen completion, `(B,)`; required by `rpo_alpha` and ORPO.
    /// TRL uses one batch-level token mean expanded to `(B,)`; pass that to match it exactly.
    pub chosen_nll: Option<&'a Tensor>,
}

impl<'a> PairLogps<'a> {
    /// Policy log-probs only; add the other fields with struct update syntax.
    pub fn new(policy_chosen: &'a Tensor, policy_rejected: &'a Tensor) -> Self {
        Self {
            policy_chosen,
            policy_rejected,
            ref_chosen: None,
            ref_rejected: None,
            chosen_len: None,
            rejected_len: None,
            chosen_nll: None,
        }
    }

    fn batch(&self) -> Result<usize> {
        let b = self.policy_chosen.dims1()?;
        check_b("policy_rejected", self.policy_rejected, b)?;
        for (n, t) in [
            ("ref_chosen", self.ref_chosen),
            ("ref_rejected", self.ref_rejected),
            ("chosen_len", self.chosen_len),
            ("rejected_len", self.rejected_len),
            ("chosen_nll", self.chosen_nll),
        ] {
            if let Some(t) = t {
                check_b(n, t, b)?;
            }
        }
        Ok(b)
    }

    fn refs(&self, what: &str) -> Result<(Tensor, Tensor)> {
        match (self.ref_chosen, self.ref_rejected) {
            (Some(c), Some(r)) => Ok((f32(c)?, f32(r)?)),
            _ => bail!("{what} needs ref_chosen and ref_rejected"),
        }
    }

    fn lens(&self, what: &str) -> Result<(Tensor, Tensor)> {
        match (self.chosen_len, self.rejected_len) {
            (Some(c), Some(r)) => Ok((f32(c)?.clamp(1f32, f32::MAX)?, f32(r)?.clamp(1f32, f32::MAX)?)),
            _ => bail!("{what} needs chosen_len and rejected_len"),
        }
    }

    fn nll(&self, what: &str) -> Result<Tensor> {
        match self.chosen_nll {
            Some(t) => f32(t),
            None => bail!("{what} needs chosen_nll"),
        }
    }
}

/// TRL's `loss_type` strings. `sigmoid`, `hinge`, `ipo`, `robust` are `DPOTrainer`'s; `simpo` is
/// `CPOTrainer(loss_type="simpo")` (trl.experimental.cpo).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DpoLossType {
    /// DPO (Rafailov et al. 2023): `−log σ(β Δ)`; with `label_smoothing` ε, cDPO:
    /// `−(1−ε) log σ(β Δ) − ε log σ(−β Δ)`.
    #[default]
    Sigmoid,
    /// SLiC hinge (Zhao et al. 2023): `relu(1 − β Δ)`.
    Hinge,
    /// IPO (Azar et al. 2023, Eq. 17): `(Δ − 1/(2β))²`, Δ of per-token-averaged log-ratios when lengths are given.
    Ipo,
    /// Robust DPO (Chowdhury et al. 2024): `((1−ε)(−log σ(βΔ)) + ε log σ(−βΔ)) / (1 − 2ε)`.
    Robust,
    /// SimPO (Meng et al. 2024), reference-free: `−log σ(β (ā_c − ā_r) − γ)`, ā = log-prob / length.
    Simpo,
}

/// Configuration of [`dpo_loss`]. Defaults are TRL's (`DPOConfig`, `CPOConfig`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DpoLossConfig {
    pub loss_type: DpoLossType,
    /// β, the strength of the implicit KL penalty (IPO: τ). TRL default 0.1.
    pub beta: f64,
    /// ε: cDPO smoothing for `sigmoid`/`simpo`, the assumed label-flip rate for `robust` (in [0, 0.5)). Default 0.
    pub label_smoothing: f64,
    /// SimPO's target reward margin γ. TRL `CPOConfig.simpo_gamma` default 0.5.
    pub simpo_gamma: f64,
    /// Weight α of the chosen NLL added to each example's loss: RPO (Pang et al. 2024; TRL
    /// `loss_type=["sigmoid","sft"]`, `loss_weights=[1, α]`), CPO's `cpo_alpha` for `simpo`. Default none.
    pub rpo_alpha: Option<f64>,
}

impl Default for DpoLossConfig {
    fn default() -> Self {
        Self { loss_type: DpoLossType::Sigmoid, beta: 0.1, label_smoothing: 0.0, simpo_gamma: 0.5, rpo_alpha: None }
    }
}

impl DpoLossConfig {
    pub fn validate(&self) -> Result<()> {
        if !(self.beta > 0.0 && self.beta.is_finite()) {
            bail!("beta must be > 0, got {}", self.beta)
        }
        if !(0.0..0.5).contains(&self.label_smoothing) {
            bail!("label_smoothing must lie in [0, 0.5), got {}", self.label_smoothing)
        }
        if self.label_smoothing != 0.0 && matches!(self.loss_type, DpoLossType::Hinge | DpoLossType::Ipo) {
            bail!("label_smoothing is not used by {:?}", self.loss_type)
        }
        if let Some(a) = self.rpo_alpha {
            if !(a >= 0.0 && a.is_finite()) {
                bail!("rpo_alpha must be >= 0, got {a}")
            }
        }
        Ok(())
    }
}

/// Per-example losses `(B,)` and what TRL logs. Rewards and logps are detached.
#[derive(Debug, Clone)]
pub struct PairLossOutput {
    pub losses: Tensor,
    pub chosen_rewards: Tensor,
    pub rejected_rewards: Tensor,
    /// The log-probs TRL logs as `logps/*`: summed, or per-token averages for SimPO and ORPO.
    pub chosen_logps: Tensor,
    pub rejected_logps: Tensor,
    /// Method-specific scalars (ORPO: `nll_loss`, `log_odds_ratio`, `log_odds_chosen`).
    pub extra: BTreeMap<String, f64>,
}

impl PairLossOutput {
    /// The batch loss, the mean of `losses`.
    pub fn loss(&self) -> Result<Tensor> {
        self.losses.mean_all()
    }

    /// TRL's metrics: `rewards/chosen`, `rewards/rejected`, `rewards/accuracies`, `rewards/margins`,
    /// `logps/chosen`, `logps/rejected`, plus `extra`.
    pub fn metrics(&self) -> Result<BTreeMap<String, f64>> {
        let mut m = pair_metrics(&self.chosen_rewards, &self.rejected_rewards, &self.chosen_logps, &self.rejected_logps)?;
        m.extend(self.extra.iter().map(|(k, v)| (k.clone(), *v)));
        Ok(m)
    }
}

fn host(t: &Tensor) -> Result<Vec<f64>> {
    Ok(t.to_dtype(DType::F64)?.flatten_all()?.to_vec1::<f64>()?)
}

fn mean(v: &[f64]) -> f64 {
    v.iter().sum::<f64>() / v.len().max(1) as f64
}

/// TRL's paired-preference metrics (means over the batch), from rewards and logps `(B,)`.
pub fn pair_metrics(
    chosen_rewards: &Tensor,
    rejected_rewards: &Tensor,
    chosen_logps: &Tensor,
    rejected_logps: &Tensor,
) -> Result<BTreeMap<String, f64>> {
    let (c, r) = (host(chosen_rewards)?, host(rejected_rewards)?);
    let acc: Vec<f64> = c.iter().zip(&r).map(|(a, b)| if a > b { 1.0 } else { 0.0 }).collect();
    let margins: Vec<f64> = c.iter().zip(&r).map(|(a, b)| a - b).collect();
    Ok(BTreeMap::from([
        ("rewards/chosen".to_string(), mean(&c)),
        ("rewards/rejected".to_string(), mean(&r)),
        ("rewards/accuracies".to_string(), mean(&acc)),
        ("rewards/margins".to_string(), mean(&margins)),
        ("logps/chosen".to_string(), mean(&host(chosen_logps)?)),
        ("logps/rejected".to_string(), mean(&host(rejected_logps)?)),
    ]))
}

/// `−(1−ε) log σ(z) − ε log σ(−z)`.
fn smoothed_sigmoid(z: &Tensor, eps: f64) -> Result<Tensor> {
    let clean = log_sigmoid(z)?.neg()?;
    if eps == 0.0 {
        return Ok(clean);
    }
    (clean * (1.0 - eps))? - (log_sigmoid(&z.neg()?)? * eps)?
}

/// The paired preference losses of [`DpoLossType`], per example `(B,)`, with TRL's rewards
/// (`β · log-ratio`; SimPO: `β · average log-prob`).
pub fn dpo_loss(x: &PairLogps, cfg: &DpoLossConfig) -> Result<PairLossOutput> {
    cfg.validate()?;
    x.batch()?;
    let (beta, eps) = (cfg.beta, cfg.label_smoothing);
    let pc = f32(x.policy_chosen)?;
    let pr = f32(x.policy_rejected)?;
    let (losses, chosen_rewards, rejected_rewards, chosen_logps, rejected_logps) = match cfg.loss_type {
        DpoLossType::Simpo => {
            let (lc, lr) = x.lens("simpo")?;
            let avg_c = pc.div(&lc)?; // (B,)
            let avg_r = pr.div(&lr)?;
            let logits = ((&avg_c - &avg_r)? - cfg.simpo_gamma / beta)?;
            let losses = smoothed_sigmoid(&(logits * beta)?, eps)?;
            let (cr, rr) = ((avg_c.detach() * beta)?, (avg_r.detach() * beta)?);
            (losses, cr, rr, avg_c.detach(), avg_r.detach())
        }
        t => {
            let (rc, rr) = x.refs(&format!("{t:?}"))?;
            let chosen_lr = (&pc - &rc)?; // (B,)
            let rejected_lr = (&pr - &rr)?;
            let delta = (&chosen_lr - &rejected_lr)?;
            let bd = (&delta * beta)?;
            let losses = match t {
                DpoLossType::Sigmoid => smoothed_sigmoid(&bd, eps)?,
                DpoLossType::Hinge => (bd.neg()? + 1.0)?.relu()?,
                DpoLossType::Ipo => {
                    let d = match (x.chosen_len, x.rejected_len) {
                        (Some(_), Some(_)) => {
                            let (lc, lr) = x.lens("ipo")?;
                            (chosen_lr.div(&lc)? - rejected_lr.div(&lr)?)?
                        }
                        _ => delta.clone(),
                    };
                    (d - 1.0 / (2.0 * beta))?.sqr()?
                }
                DpoLossType::Robust => {
                    let clean = (log_sigmoid(&bd)?.neg()? * (1.0 - eps))?;
                    let flipped = (log_sigmoid(&bd.neg()?)?.neg()? * eps)?;
                    ((clean - flipped)? / (1.0 - 2.0 * eps))?
                }
                DpoLossType::Simpo => unreachable!(),
            };
            let (cr, rj) = ((chosen_lr.detach() * beta)?, (rejected_lr.detach() * beta)?);
            (losses, cr, rj, pc.detach(), pr.detach())
        }
    };
    let losses = match cfg.rpo_alpha {
        Some(a) => (losses + (x.nll("rpo_alpha")? * a)?)?,
        None => losses,
    };
    Ok(PairLossOutput { losses, chosen_rewards, rejected_rewards, chosen_logps, rejected_logps, extra: BTreeMap::new() })
}

/// Configuration of [`orpo_loss`]. TRL `ORPOConfig` (trl.experimental.orpo).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct OrpoConfig {
    /// λ, the weight of the odds-ratio term (TRL calls it `beta`). Default 0.1.
    pub beta: f64,
}

impl Default for OrpoConfig {
    fn default() -> Self {
        Self { beta: 0.1 }
    }
}

/// ORPO (Hong et al. 2024): per example `nll_c − λ log σ(log odds(ȳ_c) − log odds(ȳ_r))`, with
/// `log odds(p) = ā − log(1 − exp(ā))` on per-token average log-probs ā. No reference model.
/// Needs `chosen_len`, `rejected_len` and `chosen_nll`.
pub fn orpo_loss(x: &PairLogps, cfg: &OrpoConfig) -> Result<PairLossOutput> {
    if !(cfg.beta >= 0.0 && cfg.beta.is_finite()) {
        bail!("orpo beta must be >= 0, got {}", cfg.beta)
    }
    x.batch()?;
    let (lc, lr) = x.lens("orpo")?;
    let nll = x.nll("orpo")?;
    let avg_c = f32(x.policy_chosen)?.div(&lc)?; // (B,)
    let avg_r = f32(x.policy_rejected)?.div(&lr)?;
    let log_odds = ((&avg_c - &avg_r)? - (log1mexp(&avg_c)? - log1mexp(&avg_r)?)?)?;
    let ratio = log_sigmoid(&log_odds)?;
    let losses = (&nll - (&ratio * cfg.beta)?)?;
    let extra = BTreeMap::from([
        ("nll_loss".to_string(), mean(&host(&nll)?)),
        ("log_odds_ratio".to_string(), mean(&host(&ratio)?)),
        ("log_odds_chosen".to_string(), mean(&host(&log_odds)?)),
    ]);
    Ok(PairLossOutput {
        losses,
        chosen_rewards: (avg_c.detach() * cfg.beta)?,
        rejected_rewards: (avg_r.detach() * cfg.beta)?,
        chosen_logps: avg_c.detach(),
        rejected_logps: avg_r.detach(),
        extra,
    })
}

/// Configuration of [`kto_loss`]. Defaults are TRL's `KTOConfig`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct KtoConfig {
    /// β. Default 0.1.
    pub beta: f64,
    /// λ_D, weight of desirable examples. Default 1.0.
    pub desirable_weight: f64,
    /// λ_U, weight of undesirable examples. Default 1.0.
    pub undesirable_weight: f64,
}

impl Default for KtoConfig {
    fn default() -> Self {
        Self { beta: 0.1, desirable_weight: 1.0, undesirable_weight: 1.0 }
    }
}

/// KTO's reference point z₀: `max(0, mean(kl_policy − kl_ref))` over mismatched (prompt, completion) pairs,
/// detached (a scalar tensor). TRL uses 0 when the KL term is disabled.
pub fn kto_kl_estimate(kl_policy_logps: &Tensor, kl_ref_logps: &Tensor) -> Result<Tensor> {
    let kl = (f32(kl_policy_logps)? - f32(kl_ref_logps)?)?.mean_all()?.detach();
    kl.relu()
}

/// Per-example KTO losses and rewards `(N,)`, in input order.
#[derive(Debug, Clone)]
pub struct KtoOutput {
    pub losses: Tensor,
    /// `β · (policy − ref)`, detached.
    pub rewards: Tensor,
    metrics: BTreeMap<String, f64>,
}

impl KtoOutput {
    /// The batch loss, the mean over all N examples (TRL: `losses.nanmean()`).
    pub fn loss(&self) -> Result<Tensor> {
        self.losses.mean_all()
    }

    /// TRL's KTO metrics: `kl`, `rewards/chosen`, `logps/chosen` (desirable), `rewards/rejected`,
    /// `logps/rejected` (undesirable), and `rewards/margins` when both kinds are present.
    pub fn metrics(&self) -> BTreeMap<String, f64> {
        self.metrics.clone()
    }
}

/// KTO (Ethayarajh et al. 2024, Eq. 7; TRL `KTOTrainer`, `loss_type="kto"`), unpaired.
/// `desirable` is `(N,)`, 1 for a desirable (chosen) completion and 0 for an undesirable one;
/// `kl` is the scalar reference point from [`kto_kl_estimate`].
/// Desirable: `λ_D (1 − σ(β(r − z₀)))`; undesirable: `λ_U (1 − σ(β(z₀ − r)))`, r = policy − ref.
pub fn kto_loss(policy: &Tensor, reference: &Tensor, desirable: &Tensor, kl: &Tensor, cfg: &KtoConfig) -> Result<KtoOutput> {
    let n = policy.dims1()?;
    check_b("reference", reference, n)?;
    check_b("desirable", desirable, n)?;
    let p = f32(policy)?;
    let logratio = (&p - f32(reference)?)?; // (N,)
    let kl = f32(kl)?.flatten_all()?;
    if kl.elem_count() != 1 {
        bail!("kto_loss: kl must be a scalar, got shape {:?}", kl.dims())
    }
    let kl = kl.detach().broadcast_as(n)?;
    let d = f32(desirable)?; // (N,) 0/1
    let u = (d.neg()? + 1.0)?;
    let beta = cfg.beta;
    let chosen = ((sigmoid(&((&logratio - &kl)? * beta)?)?.neg()? + 1.0)? * cfg.desirable_weight)?;
    let rejected = ((sigmoid(&((&kl - &logratio)? * beta)?)?.neg()? + 1.0)? * cfg.undesirable_weight)?;
    let losses = ((chosen * &d)? + (rejected * &u)?)?;
    let rewards = (logratio.detach() * beta)?;

    let (rw, lp, lab) = (host(&rewards)?, host(&p)?, host(&d)?);
    let mut metrics = BTreeMap::from([("kl".to_string(), host(&kl)?[0])]);
    let mut side = |is_d: bool, name: &str| -> Option<f64> {
        let idx: Vec<usize> = (0..n).filter(|&i| (lab[i] > 0.5) == is_d).collect();
        if idx.is_empty() {
            return None;
        }
        let r = idx.iter().map(|&i| rw[i]).sum::<f64>() / idx.len() as f64;
        let l = idx.iter().map(|&i| lp[i]).sum::<f64>() / idx.len() as f64;
        metrics.insert(format!("rewards/{name}"), r);
        metrics.insert(format!("logps/{name}"), l);
        Some(r)
    };
    let (c, r) = (side(true, "chosen"), side(false, "rejected"));
    if let (Some(c), Some(r)) = (c, r) {
        metrics.insert("rewards/margins".to_string(), c - r);
    }
    Ok(KtoOutput { losses, rewards, metrics })
}

/// Reward-model Bradley-Terry loss (Ouyang et al. 2022; TRL `RewardTrainer`), the batch mean:
/// `−log σ(r_c − r_r − m)`, with an optional per-pair margin m (Llama 2), an optional soft label p, the
/// probability that chosen wins (`−p log σ(d) − (1−p) log σ(−d)`; p = 1 is the hard loss), and optional
/// reward centering `+ c · mean((r_c + r_r)²)` (Eisenstein et al. 2023, TRL `center_rewards_coefficient`).
pub fn bt_reward_loss(
    r_chosen: &Tensor,
    r_rejected: &Tensor,
    margin: Option<&Tensor>,
    soft_label: Option<&Tensor>,
    center_rewards_coefficient: Option<f64>,
) -> Result<Tensor> {
    let b = r_chosen.dims1()?;
    check_b("r_rejected", r_rejected, b)?;
    let (rc, rr) = (f32(r_chosen)?, f32(r_rejected)?);
    let mut d = (&rc - &rr)?; // (B,)
    if let Some(m) = margin {
        check_b("margin", m, b)?;
        d = (d - f32(m)?)?;
    }
    let per = match soft_label {
        None => log_sigmoid(&d)?.neg()?,
        Some(p) => {
            check_b("soft_label", p, b)?;
            let p = f32(p)?;
            let q = (p.neg()? + 1.0)?;
            ((log_sigmoid(&d)? * &p)? + (log_sigmoid(&d.neg()?)? * q)?)?.neg()?
        }
    };
    let mut loss = per.mean_all()?;
    if let Some(c) = center_rewards_coefficient {
        loss = (loss + ((&rc + &rr)?.sqr()?.mean_all()? * c)?)?;
    }
    Ok(loss)
}

/// Reward-model metrics: TRL's `accuracy` (r_c > r_r), `margin` (mean r_c − r_r), `min_reward`,
/// `mean_reward`, `max_reward` over all rewards, and `std_reward` (unbiased, n − 1; not logged by TRL).
pub fn bt_metrics(r_chosen: &Tensor, r_rejected: &Tensor) -> Result<BTreeMap<String, f64>> {
    let (c, r) = (host(r_chosen)?, host(r_rejected)?);
    let all: Vec<f64> = c.iter().chain(&r).copied().collect();
    let mu = mean(&all);
    let var = all.iter().map(|x| (x - mu).powi(2)).sum::<f64>() / (all.len().max(2) - 1) as f64;
    let acc: Vec<f64> = c.iter().zip(&r).map(|(a, b)| if a > b { 1.0 } else { 0.0 }).collect();
    let margins: Vec<f64> = c.iter().zip(&r).map(|(a, b)| a - b).collect();
    Ok(BTreeMap::from([
        ("accuracy".to_string(), mean(&acc)),
        ("margin".to_string(), mean(&margins)),
        ("min_reward".to_string(), all.iter().copied().fold(f64::INFINITY, f64::min)),
        ("mean_reward".to_string(), mu),
        ("max_reward".to_string(), all.iter().copied().fold(f64::NEG_INFINITY, f64::max)),
        ("std_reward".to_string(), var.sqrt()),
    ]))
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    #[test]
    fn log_sigmoid_is_stable() {
        let x = Tensor::new(&[-100f32, -1., 0., 1., 100.], &Device::Cpu).unwrap();
        let got = log_sigmoid(&x).unwrap().to_vec1::<f32>().unwrap();
        for (g, xv) in got.iter().zip([-100f64, -1., 0., 1., 100.]) {
            let want = -((-xv).exp().ln_1p());
            let want = if xv < -50.0 { xv } else { want };
            assert!((*g as f64 - want).abs() < 1e-6, "{g} vs {want}");
        }
    }

    #[test]
    fn config_defaults_are_trls() {
        let c: DpoLossConfig = serde_json::from_str(r#"{"loss_type": "ipo"}"#).unwrap();
        assert_eq!(c.loss_type, DpoLossType::Ipo);
        assert_eq!((c.beta, c.label_smoothing, c.simpo_gamma, c.rpo_alpha), (0.1, 0.0, 0.5, None));
        assert!(DpoLossConfig { loss_type: DpoLossType::Robust, label_smoothing: 0.5, ..Default::default() }
            .validate()
            .is_err());
        assert_eq!(serde_json::to_string(&DpoLossType::Simpo).unwrap(), "\"simpo\"");
    }
}
