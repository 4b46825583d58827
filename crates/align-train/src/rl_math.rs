//! RL math for language-model policies: the pure tensor functions PPO, GRPO and RLOO are made of.
//!
//! Every function here is a free function over `&Tensor` (f32) returning `Result`, with no model
//! and no trainer state, so each one is golden-tested alone against TRL (`tests/rl_math.rs`,
//! fixtures from `scripts/fixtures/make_rl_math.py`). `docs/rl_math.md` lists the formulas.
//!
//! Shapes: per-token tensors are `(B, T)` over *response* tokens; `mask` is `(B, T)` of any dtype,
//! 1 on the tokens that count. Per-sequence tensors (scores, GRPO rewards/advantages) are `(B,)`.
//!
//! Reading order follows a PPO step: masked statistics → KL estimators → per-token rewards →
//! GAE → PPO losses → KL controllers; then GRPO/RLOO advantages → GRPO loss → loss aggregation.
//!
//! Sources:
//! - PPO for LMs: Ziegler et al. 2019 "Fine-Tuning Language Models from Human Preferences"
//!   (arXiv:1909.08593) and InstructGPT (Ouyang et al. 2022); PPO: Schulman et al. 2017
//!   (arXiv:1707.06347); GAE: Schulman et al. 2015 (arXiv:1506.02438).
//!   TRL correspondence: `PPOTrainer` of `trl/experimental/ppo/ppo_trainer.py` (the last TRL PPO;
//!   trl 1.16 no longer ships PPO, see docs/rl_math.md).
//! - KL estimators k1/k2/k3: Schulman, "Approximating KL Divergence" (joschu.net/blog/kl-approx.html).
//! - GRPO: Shao et al. 2024 "DeepSeekMath" (arXiv:2402.03300); Dr. GRPO: Liu et al. 2025
//!   (arXiv:2503.20783); DAPO: Yu et al. 2025 (arXiv:2503.14476); RLOO: Ahmadian et al. 2024
//!   (arXiv:2402.14740). TRL correspondence: trl 1.16 `trl/trainer/grpo_trainer.py` and
//!   `trl/trainer/rloo_trainer.py`.

use candle_core::{bail, DType, Result, Tensor, D};

/// TRL's `masked_whiten` epsilon: `(x - mean) * rsqrt(var + 1e-8)`.
pub const WHITEN_EPS: f64 = 1e-8;
/// TRL's GRPO/RLOO advantage epsilon: `(r - mean) / (std + 1e-4)`.
pub const ADV_STD_EPS: f64 = 1e-4;

fn f32_mask(mask: &Tensor) -> Result<Tensor> {
    mask.to_dtype(DType::F32)
}

fn check_same_shape(op: &'static str, a: &Tensor, b: &Tensor) -> Result<()> {
    if a.dims() != b.dims() {
        bail!("{op}: shape mismatch {:?} vs {:?}", a.dims(), b.dims())
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Masked statistics
// ---------------------------------------------------------------------------------------------

/// `sum(values * mask) / sum(mask)` over all elements, a scalar tensor (TRL's `masked_mean` with
/// `axis=None`). Like TRL it does not guard an empty mask (the result is NaN).
pub fn masked_mean(values: &Tensor, mask: &Tensor) -> Result<Tensor> {
    check_same_shape("masked_mean", values, mask)?;
    let m = f32_mask(mask)?;
    (values * &m)?.sum_all()?.div(&m.sum_all()?)
}

/// Masked variance around the masked mean, a scalar tensor (TRL's `masked_var`). With `unbiased`
/// (TRL's default) it multiplies by Bessel's correction `n / (n - 1)`, `n = sum(mask)`; it fails
/// when `n < 2` (TRL raises for `n == 0` and divides by zero for `n == 1`).
pub fn masked_var(values: &Tensor, mask: &Tensor, unbiased: bool) -> Result<Tensor> {
    let mean = masked_mean(values, mask)?;
    let centered = values.broadcast_sub(&mean)?;
    let var = masked_mean(&centered.sqr()?, mask)?;
    if !unbiased {
        return Ok(var);
    }
    let n = f32_mask(mask)?.sum_all()?.to_scalar::<f32>()? as f64;
    if n < 2.0 {
        bail!("masked_var: the mask selects {n} elements, the unbiased variance needs at least 2")
    }
    var * (n / (n - 1.0))
}

/// Whitening over the masked elements: `(x - mean) * rsqrt(var + 1e-8)` with the unbiased masked
/// variance, adding the mean back when `!shift_mean` (TRL's `masked_whiten(values, mask,
/// shift_mean)`). Every position is transformed, padded ones included; TRL then zeroes the pads
/// with `masked_fill` (multiply by the mask to do the same).
pub fn whiten(values: &Tensor, mask: &Tensor, shift_mean: bool) -> Result<Tensor> {
    let mean = masked_mean(values, mask)?;
    let var = masked_var(values, mask, true)?;
    let inv_std = (var + WHITEN_EPS)?.sqrt()?.recip()?;
    let white = values.broadcast_sub(&mean)?.broadcast_mul(&inv_std)?;
    if shift_mean {
        Ok(white)
    } else {
        white.broadcast_add(&mean)
    }
}

// ---------------------------------------------------------------------------------------------
// KL estimators
// ---------------------------------------------------------------------------------------------

/// Per-token estimators of KL(π‖π_ref) from samples of π (Schulman, "Approximating KL
/// Divergence"), with `log r = ref_logp - logp`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum KlEstimator {
    /// `k1 = logp - ref_logp = -log r`: unbiased, high variance, can be negative.
    /// TRL PPO's default (`kl_estimator="k1"`).
    #[default]
    K1,
    /// `k2 = ½ (logp - ref_logp)²`: biased, low variance, ≥ 0.
    K2,
    /// `k3 = (r - 1) - log r = exp(ref - logp) - (ref - logp) - 1`: unbiased, low variance, ≥ 0.
    /// TRL PPO's `kl_estimator="k3"` and the KL term of TRL's GRPO loss.
    K3,
}

/// Per-token KL estimate, same shape as `logp`.
pub fn kl_per_token(logp: &Tensor, ref_logp: &Tensor, estimator: KlEstimator) -> Result<Tensor> {
    check_same_shape("kl_per_token", logp, ref_logp)?;
    let logr = (ref_logp - logp)?;
    match estimator {
        KlEstimator::K1 => logr.neg(),
        KlEstimator::K2 => logr.sqr()? * 0.5,
        KlEstimator::K3 => (logr.exp()? - 1.0)? - logr,
    }
}

// ---------------------------------------------------------------------------------------------
// Per-token rewards with a KL penalty (Ziegler et al. 2019, InstructGPT)
// ---------------------------------------------------------------------------------------------

/// Per-token rewards `-kl_coef · kl · mask`, plus each sequence's `score` (B,) added at the last
/// position where `mask` (B, T) is 1. TRL's PPO default `kl_coef` is 0.05.
///
/// TRL adds the score at `min(sequence_length + 1, T - 1)` (its `actual_end`) and its `kl` is 0 on
/// pads because both log-prob tensors hold `INVALID_LOGPROB` there: passing TRL's
/// `~padding_mask_p1` as `mask` reproduces TRL's rewards exactly. A row with no 1 in `mask` gets
/// no score.
pub fn kl_penalized_rewards(kl: &Tensor, kl_coef: f64, scores: &Tensor, mask: &Tensor) -> Result<Tensor> {
    check_same_shape("kl_penalized_rewards", kl, mask)?;
    let (b_sz, seq_len) = kl.dims2()?;
    if scores.dims() != [b_sz] {
        bail!("kl_penalized_rewards: scores shape {:?}, expected ({b_sz},)", scores.dims())
    }
    let m = f32_mask(mask)?;
    let non_score = ((kl * &m)? * (-kl_coef))?; // (B, T)
    // One-hot of the last masked position per row: last[b, t] = 1 iff t is the last t with mask 1.
    let rows = m.to_vec2::<f32>()?;
    let mut last = vec![0f32; b_sz * seq_len];
    for (b, row) in rows.iter().enumerate() {
        if let Some(t) = row.iter().rposition(|&x| x != 0.0) {
            last[b * seq_len + t] = 1.0;
        }
    }
    let last = Tensor::from_vec(last, (b_sz, seq_len), kl.device())?;
    non_score + last.broadcast_mul(&scores.to_dtype(DType::F32)?.unsqueeze(1)?)?
}

// ---------------------------------------------------------------------------------------------
// GAE (Schulman et al. 2015), as TRL's PPOTrainer computes it
// ---------------------------------------------------------------------------------------------

/// Generalized advantage estimation over the response tokens, returning `(advantages, returns)`,
/// both (B, T). TRL PPO's defaults are `gamma = 1.0`, `lam = 0.95`.
///
/// `rewards` and `values` are first multiplied by `mask` (TRL zeroes `values` past
/// `sequence_length + 1` and its rewards are 0 there), then TRL's reverse loop runs over every
/// column, with `V(T) = 0`:
/// `δ_t = r_t + γ V_{t+1} - V_t`, `A_t = δ_t + γλ A_{t+1}`, `returns = A + V`.
/// The advantages are *raw*: TRL then whitens them with [`whiten`] over its `~padding_mask` and
/// zeroes the pads. No gradient flows (TRL runs this under `no_grad`); it runs on the host.
pub fn gae(rewards: &Tensor, values: &Tensor, mask: &Tensor, gamma: f64, lam: f64) -> Result<(Tensor, Tensor)> {
    check_same_shape("gae", rewards, values)?;
    check_same_shape("gae", rewards, mask)?;
    let (b_sz, seq_len) = rewards.dims2()?;
    let m = f32_mask(mask)?;
    let r = (rewards.to_dtype(DType::F32)? * &m)?.to_vec2::<f32>()?;
    let v = (values.to_dtype(DType::F32)? * &m)?;
    let v_rows = v.to_vec2::<f32>()?;
    let (gamma, gl) = (gamma as f32, (gamma * lam) as f32);
    let mut adv = vec![0f32; b_sz * seq_len];
    for b in 0..b_sz {
        let mut lastgaelam = 0f32;
        for t in (0..seq_len).rev() {
            let next = if t + 1 < seq_len { v_rows[b][t + 1] } else { 0.0 };
            let delta = r[b][t] + gamma * next - v_rows[b][t];
            lastgaelam = delta + gl * lastgaelam;
            adv[b * seq_len + t] = lastgaelam;
        }
    }
    let adv = Tensor::from_vec(adv, (b_sz, seq_len), rewards.device())?;
    let returns = (&adv + &v)?;
    Ok((adv, returns))
}

// ---------------------------------------------------------------------------------------------
// PPO losses (Schulman et al. 2017) as in TRL's PPOTrainer
// ---------------------------------------------------------------------------------------------

/// PPO hyper-parameters with TRL's defaults.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PpoLossConfig {
    /// Policy ratio clip ε (TRL `cliprange`, default 0.2).
    pub cliprange: f64,
    /// Value clip ε_v around the rollout values (TRL `cliprange_value`, default 0.2).
    pub cliprange_value: f64,
    /// Weight of the value loss in `pg_loss + vf_coef · vf_loss` (TRL `vf_coef`, default 0.1).
    pub vf_coef: f64,
}

impl Default for PpoLossConfig {
    fn default() -> Self {
        Self { cliprange: 0.2, cliprange_value: 0.2, vf_coef: 0.1 }
    }
}

/// The clipped policy loss and its metrics (scalar tensors; only `pg_loss` carries a gradient
/// that matters).
#[derive(Debug, Clone)]
pub struct PpoPolicyLoss {
    /// `masked_mean(max(-A·ratio, -A·clip(ratio, 1-ε, 1+ε)))` (TRL `loss/policy_avg`).
    pub pg_loss: Tensor,
    /// Fraction of masked tokens where the clipped term is the larger (TRL `policy/clipfrac_avg`).
    pub clipfrac: Tensor,
    /// `½ · mean((logp - old_logp)²)` over **all** B·T positions, as TRL (`policy/approxkl_avg`);
    /// TRL's pads hold `INVALID_LOGPROB` in both tensors, so we zero the difference off the mask.
    pub approxkl: Tensor,
    /// Mean ratio over all positions (TRL `val/ratio`), with ratio 1 off the mask.
    pub ratio_mean: Tensor,
}

/// PPO clipped surrogate: `ratio = exp(logp - old_logp)`,
/// `pg_loss = masked_mean(max(-A·ratio, -A·clip(ratio, 1-ε, 1+ε)), mask)`.
pub fn ppo_policy_loss(
    logp: &Tensor,
    old_logp: &Tensor,
    advantages: &Tensor,
    mask: &Tensor,
    cliprange: f64,
) -> Result<PpoPolicyLoss> {
    check_same_shape("ppo_policy_loss", logp, old_logp)?;
    check_same_shape("ppo_policy_loss", logp, advantages)?;
    let m = f32_mask(mask)?;
    let diff = ((logp - old_logp)? * &m)?; // (B, T), 0 off the mask as TRL's INVALID_LOGPROB fill
    let ratio = diff.exp()?;
    let neg_adv = advantages.neg()?;
    let pg_losses = (&neg_adv * &ratio)?;
    let pg_losses2 = (&neg_adv * ratio.clamp(1.0 - cliprange, 1.0 + cliprange)?)?;
    let pg_loss = masked_mean(&pg_losses.maximum(&pg_losses2)?, &m)?;
    let clipfrac = masked_mean(&pg_losses2.gt(&pg_losses)?.to_dtype(DType::F32)?, &m)?;
    let approxkl = (diff.sqr()?.mean_all()? * 0.5)?;
    let ratio_mean = ratio.mean_all()?;
    Ok(PpoPolicyLoss { pg_loss, clipfrac, approxkl, ratio_mean })
}

/// The clipped value loss and its clip fraction (scalar tensors).
#[derive(Debug, Clone)]
pub struct PpoValueLoss {
    /// `½ · masked_mean(max((V-R)², (clip(V, V_old ± ε_v) - R)²))` (TRL `loss/value_avg`).
    pub vf_loss: Tensor,
    /// Fraction of masked tokens where the clipped term is the larger (TRL `val/clipfrac_avg`).
    pub vf_clipfrac: Tensor,
}

/// PPO clipped value loss. TRL masks it with `~padding_mask_p1` (one token more than the policy
/// loss) and zeroes `vpred` there; pass the same mask to reproduce it.
pub fn ppo_value_loss(
    vpred: &Tensor,
    old_values: &Tensor,
    returns: &Tensor,
    mask: &Tensor,
    cliprange_value: f64,
) -> Result<PpoValueLoss> {
    check_same_shape("ppo_value_loss", vpred, old_values)?;
    check_same_shape("ppo_value_loss", vpred, returns)?;
    let m = f32_mask(mask)?;
    let vpred = (vpred * &m)?;
    let lo = (old_values - cliprange_value)?;
    let hi = (old_values + cliprange_value)?;
    let vpred_clipped = vpred.maximum(&lo)?.minimum(&hi)?;
    let l1 = (&vpred - returns)?.sqr()?;
    let l2 = (&vpred_clipped - returns)?.sqr()?;
    let vf_loss = (masked_mean(&l1.maximum(&l2)?, &m)? * 0.5)?;
    let vf_clipfrac = masked_mean(&l2.gt(&l1)?.to_dtype(DType::F32)?, &m)?;
    Ok(PpoValueLoss { vf_loss, vf_clipfrac })
}

// ---------------------------------------------------------------------------------------------
// KL controllers (Ziegler et al. 2019, §2.2)
// ---------------------------------------------------------------------------------------------

/// Adaptive KL coefficient: `e = clip(KL/target - 1, -0.2, 0.2)`,
/// `value *= 1 + e · n_steps / horizon` (TRL's old `AdaptiveKLController`; TRL ≤ 0.11 PPOConfig
/// defaults: init 0.2, target 6, horizon 10000).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AdaptiveKlController {
    /// The current KL coefficient β.
    pub value: f64,
    /// The KL (summed over tokens, averaged over sequences) the controller aims at.
    pub target: f64,
    /// How many samples (episodes) it takes to correct a 20% error by a factor e^0.2.
    pub horizon: f64,
}

impl Default for AdaptiveKlController {
    fn default() -> Self {
        Self { value: 0.2, target: 6.0, horizon: 10000.0 }
    }
}

impl AdaptiveKlController {
    pub fn new(init_kl_coef: f64, target: f64, horizon: f64) -> Self {
        Self { value: init_kl_coef, target, horizon }
    }

    /// One update after `n_steps` samples observed a mean KL of `current_kl`.
    pub fn update(&mut self, current_kl: f64, n_steps: usize) {
        let err = (current_kl / self.target - 1.0).clamp(-0.2, 0.2);
        self.value *= 1.0 + err * n_steps as f64 / self.horizon;
    }
}

/// A KL coefficient, fixed (TRL PPO's `kl_coef`, default 0.05) or adaptive.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum KlController {
    Fixed(f64),
    Adaptive(AdaptiveKlController),
}

impl KlController {
    pub fn value(&self) -> f64 {
        match self {
            Self::Fixed(v) => *v,
            Self::Adaptive(c) => c.value,
        }
    }

    /// No-op for [`KlController::Fixed`].
    pub fn update(&mut self, current_kl: f64, n_steps: usize) {
        if let Self::Adaptive(c) = self {
            c.update(current_kl, n_steps)
        }
    }
}

// ---------------------------------------------------------------------------------------------
// GRPO / RLOO advantages
// ---------------------------------------------------------------------------------------------

/// How GRPO scales the centred rewards (TRL `scale_rewards`, default `"group"`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ScaleRewards {
    /// Divide by the group's std + 1e-4 (GRPO, DeepSeekMath).
    #[default]
    Group,
    /// Divide by the whole batch's std + 1e-4 (PPO Lite, arXiv:2508.08221).
    Batch,
    /// No division: Dr. GRPO's unscaled advantages.
    None,
}

fn grouped(rewards: &Tensor, group_size: usize, op: &'static str) -> Result<(Tensor, usize)> {
    let n = rewards.dims1()?;
    if group_size == 0 || n % group_size != 0 {
        bail!("{op}: {n} rewards do not split into groups of {group_size}")
    }
    Ok((rewards.to_dtype(DType::F32)?.reshape((n / group_size, group_size))?, n))
}

/// Unbiased std along the last dim, keepdim (TRL's `nanstd` without NaNs); 0 when the dim has 1 element,
/// as TRL (which sets `std_rewards` to zeros when `num_generations == 1`).
fn std_last_keepdim(x: &Tensor) -> Result<Tensor> {
    let n = x.dim(D::Minus1)?;
    if n < 2 {
        return x.zeros_like()?.narrow(D::Minus1, 0, 1);
    }
    let mean = x.mean_keepdim(D::Minus1)?;
    let var = (x.broadcast_sub(&mean)?.sqr()?.sum_keepdim(D::Minus1)? / (n - 1) as f64)?;
    var.sqrt()
}

/// GRPO advantages for `rewards` (B,) laid out as consecutive groups of `group_size` completions
/// of the same prompt (TRL's `rewards.view(-1, num_generations)`):
/// `A = (r - mean_group) / (std + 1e-4)` with the std chosen by `scale`; returns (B,).
pub fn group_advantages(rewards: &Tensor, group_size: usize, scale: ScaleRewards) -> Result<Tensor> {
    let (g, n) = grouped(rewards, group_size, "group_advantages")?; // (n / G, G)
    let centred = g.broadcast_sub(&g.mean_keepdim(1)?)?;
    let adv = match scale {
        ScaleRewards::None => centred,
        ScaleRewards::Group => centred.broadcast_div(&(std_last_keepdim(&g)? + ADV_STD_EPS)?)?,
        ScaleRewards::Batch => {
            let std = std_last_keepdim(&g.reshape((1, n))?)?;
            centred.broadcast_div(&(std + ADV_STD_EPS)?)?
        }
    };
    adv.reshape(n)
}

/// RLOO advantages (Ahmadian et al. 2024): `r_i - mean_{j≠i} r_j` within each group, (B,)
/// (TRL `RLOOTrainer`; its `normalize_advantages`, default false, is not applied here).
pub fn rloo_advantages(rewards: &Tensor, group_size: usize) -> Result<Tensor> {
    let (g, n) = grouped(rewards, group_size, "rloo_advantages")?;
    if group_size < 2 {
        bail!("rloo_advantages: the leave-one-out baseline needs groups of at least 2, got {group_size}")
    }
    let baseline = (g.sum_keepdim(1)?.broadcast_sub(&g)? / (group_size - 1) as f64)?;
    (g - baseline)?.reshape(n)
}

// ---------------------------------------------------------------------------------------------
// GRPO loss and TRL's loss aggregation
// ---------------------------------------------------------------------------------------------

/// How per-token losses become one number (TRL `loss_type`; TRL's default is `"dapo"`). TRL also
/// divides `grpo`, `bnpo` and `dr_grpo` by the gradient-accumulation steps; that is the training
/// loop's business, not this function's.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum LossType {
    /// Per-sequence token mean, then the batch mean (original GRPO; length-biased).
    Grpo,
    /// Token mean over the local batch: `sum(l·m) / max(sum(m), 1)`.
    Bnpo,
    /// `sum(l·m) / (B · max_completion_length)` (Dr. GRPO; TRL default max_completion_length 256/512).
    DrGrpo { max_completion_length: usize },
    /// `sum(l·m) / max(num_items_in_batch, 1)`, where TRL's normaliser is the number of completion
    /// tokens of the whole *generation* batch divided by `num_processes` and rescaled by
    /// `gradient_accumulation_steps / steps_per_generation` (DAPO). With one process and one
    /// step per generation it is `sum(mask)`, i.e. `Bnpo`.
    Dapo { num_items_in_batch: f64 },
}

/// Aggregate a (B, T) per-token loss with `mask` as TRL's `loss_type`.
pub fn aggregate_loss(per_token_loss: &Tensor, mask: &Tensor, loss_type: LossType) -> Result<Tensor> {
    check_same_shape("aggregate_loss", per_token_loss, mask)?;
    let m = f32_mask(mask)?;
    let lm = (per_token_loss * &m)?;
    match loss_type {
        LossType::Grpo => lm.sum(1)?.div(&m.sum(1)?.clamp(1f32, f32::MAX)?)?.mean_all(),
        LossType::Bnpo => lm.sum_all()?.div(&m.sum_all()?.clamp(1f32, f32::MAX)?),
        LossType::DrGrpo { max_completion_length } => {
            let b_sz = per_token_loss.dim(0)?;
            lm.sum_all()? / (b_sz * max_completion_length) as f64
        }
        LossType::Dapo { num_items_in_batch } => lm.sum_all()? / num_items_in_batch.max(1.0),
    }
}

/// GRPO hyper-parameters with TRL 1.16's defaults.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct GrpoLossConfig {
    /// Lower clip ε (TRL `epsilon`, default 0.2).
    pub epsilon_low: f64,
    /// Upper clip ε (TRL `epsilon_high`, defaults to `epsilon`; DAPO recommends 0.28).
    pub epsilon_high: f64,
    /// KL coefficient β on the k3 term (TRL `beta`, default 0.0; DeepSeek-R1 used 0.001).
    pub beta: f64,
    /// Aggregation (TRL `loss_type`, default `"dapo"`).
    pub loss_type: LossType,
}

impl GrpoLossConfig {
    /// TRL's defaults; `dapo` needs the generation batch's token count.
    pub fn trl_default(num_items_in_batch: f64) -> Self {
        Self { epsilon_low: 0.2, epsilon_high: 0.2, beta: 0.0, loss_type: LossType::Dapo { num_items_in_batch } }
    }
}

/// GRPO loss and TRL's metrics (scalar tensors).
#[derive(Debug, Clone)]
pub struct GrpoLoss {
    pub loss: Tensor,
    /// Masked mean of the per-token k3 (TRL `kl`); `None` when β = 0 or no reference is given.
    pub kl: Option<Tensor>,
    /// Token fraction with `ratio < 1-ε_low` and `A < 0` (TRL `clip_ratio/low_mean`).
    pub clip_ratio_low: Tensor,
    /// Token fraction with `ratio > 1+ε_high` and `A > 0` (TRL `clip_ratio/high_mean`).
    pub clip_ratio_high: Tensor,
    /// Either of the two (TRL `clip_ratio/region_mean`).
    pub clip_ratio_region: Tensor,
}

/// GRPO per-token loss with token-level importance sampling (TRL 1.16 `GRPOTrainer._compute_loss`):
/// `ratio = exp(logp - old_logp)`,
/// `l = -min(ratio·A, clip(ratio, 1-ε_low, 1+ε_high)·A) + β·k3(logp, ref_logp)`,
/// aggregated by `cfg.loss_type`. `advantages` is (B,), one per completion; logps and `mask` (B, T).
/// `ref_logp` is needed only when `beta != 0`. With one optimisation step per generation TRL passes
/// `old_logp = logp.detach()`.
pub fn grpo_loss(
    logp: &Tensor,
    old_logp: &Tensor,
    ref_logp: Option<&Tensor>,
    advantages: &Tensor,
    mask: &Tensor,
    cfg: &GrpoLossConfig,
) -> Result<GrpoLoss> {
    check_same_shape("grpo_loss", logp, old_logp)?;
    check_same_shape("grpo_loss", logp, mask)?;
    let b_sz = logp.dim(0)?;
    if advantages.dims() != [b_sz] {
        bail!("grpo_loss: advantages shape {:?}, expected ({b_sz},)", advantages.dims())
    }
    let m = f32_mask(mask)?;
    let adv = advantages.to_dtype(DType::F32)?.unsqueeze(1)?; // (B, 1)
    let coef_1 = (logp - old_logp)?.exp()?;
    let coef_2 = coef_1.clamp(1.0 - cfg.epsilon_low, 1.0 + cfg.epsilon_high)?;
    let l1 = coef_1.broadcast_mul(&adv)?;
    let l2 = coef_2.broadcast_mul(&adv)?;
    let mut per_token = l1.minimum(&l2)?.neg()?;
    let mut kl = None;
    if cfg.beta != 0.0 {
        let Some(ref_logp) = ref_logp else { bail!("grpo_loss: beta = {} needs ref_logp", cfg.beta) };
        let k3 = kl_per_token(logp, ref_logp, KlEstimator::K3)?;
        per_token = (per_token + (&k3 * cfg.beta)?)?;
        kl = Some(token_mean(&k3.detach(), &m)?);
    }
    let loss = aggregate_loss(&per_token, &m, cfg.loss_type)?;
    let coef_1 = coef_1.detach();
    let adv_b = adv.broadcast_as(coef_1.shape())?.contiguous()?;
    let low = coef_1.lt(1.0 - cfg.epsilon_low)?.mul(&adv_b.lt(0f32)?)?;
    let high = coef_1.gt(1.0 + cfg.epsilon_high)?.mul(&adv_b.gt(0f32)?)?;
    let region = low.maximum(&high)?;
    Ok(GrpoLoss {
        loss,
        kl,
        clip_ratio_low: token_mean(&low.to_dtype(DType::F32)?, &m)?,
        clip_ratio_high: token_mean(&high.to_dtype(DType::F32)?, &m)?,
        clip_ratio_region: token_mean(&region.to_dtype(DType::F32)?, &m)?,
    })
}

/// `sum(x·m) / max(sum(m), 1)`: TRL GRPO's metric mean.
fn token_mean(x: &Tensor, m: &Tensor) -> Result<Tensor> {
    (x * m)?.sum_all()?.div(&m.sum_all()?.clamp(1f32, f32::MAX)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    fn t2(v: &[&[f32]]) -> Tensor {
        let rows: Vec<Vec<f32>> = v.iter().map(|r| r.to_vec()).collect();
        Tensor::new(rows, &Device::Cpu).unwrap()
    }

    #[test]
    fn gae_with_gamma_lambda_one_is_reward_to_go_minus_value() {
        let r = t2(&[&[0.5, -1.0, 2.0, 0.25]]);
        let v = t2(&[&[0.1, 0.2, -0.3, 0.4]]);
        let m = t2(&[&[1.0, 1.0, 1.0, 1.0]]);
        let (adv, ret) = gae(&r, &v, &m, 1.0, 1.0).unwrap();
        let adv = adv.to_vec2::<f32>().unwrap();
        let ret = ret.to_vec2::<f32>().unwrap();
        let rtg = [1.75f32, 1.25, 2.25, 0.25];
        for t in 0..4 {
            assert!((ret[0][t] - rtg[t]).abs() < 1e-6);
            assert!((adv[0][t] - (rtg[t] - [0.1, 0.2, -0.3, 0.4][t])).abs() < 1e-6);
        }
        // λ = 0: one-step TD error.
        let (adv, _) = gae(&r, &v, &m, 1.0, 0.0).unwrap();
        let adv = adv.to_vec2::<f32>().unwrap();
        assert!((adv[0][0] - (0.5 + 0.2 - 0.1)).abs() < 1e-6);
        assert!((adv[0][3] - (0.25 - 0.4)).abs() < 1e-6);
    }

    #[test]
    fn kl_estimators_are_zero_when_policies_agree_and_k3_nonnegative() {
        let lp = t2(&[&[-1.0, -2.0, -0.5]]);
        for est in [KlEstimator::K1, KlEstimator::K2, KlEstimator::K3] {
            let k = kl_per_token(&lp, &lp, est).unwrap().sum_all().unwrap().to_scalar::<f32>().unwrap();
            assert_eq!(k, 0.0);
        }
        let rf = t2(&[&[-0.2, -3.0, -0.5]]);
        let k3 = kl_per_token(&lp, &rf, KlEstimator::K3).unwrap().to_vec2::<f32>().unwrap();
        assert!(k3[0].iter().all(|&x| x >= 0.0));
        // k3 at log r = 0.8: e^0.8 - 1 - 0.8.
        assert!((k3[0][0] - (0.8f32.exp() - 1.8)).abs() < 1e-6);
    }

    #[test]
    fn score_goes_to_last_masked_token() {
        let kl = t2(&[&[1.0, 1.0, 1.0], &[2.0, 2.0, 2.0]]);
        let m = t2(&[&[1.0, 1.0, 0.0], &[1.0, 1.0, 1.0]]);
        let scores = Tensor::new(&[10f32, 20.], &Device::Cpu).unwrap();
        let r = kl_penalized_rewards(&kl, 0.1, &scores, &m).unwrap().to_vec2::<f32>().unwrap();
        assert_eq!(r, vec![vec![-0.1, 9.9, 0.0], vec![-0.2, -0.2, 19.8]]);
    }

    #[test]
    fn group_and_rloo_advantages_by_hand() {
        let r = Tensor::new(&[1f32, 2., 3., 6.], &Device::Cpu).unwrap();
        // group of 2: [1,2] mean 1.5 std 0.7071; [3,6] mean 4.5 std 2.1213
        let a = group_advantages(&r, 2, ScaleRewards::None).unwrap().to_vec1::<f32>().unwrap();
        assert_eq!(a, vec![-0.5, 0.5, -1.5, 1.5]);
        let a = group_advantages(&r, 2, ScaleRewards::Group).unwrap().to_vec1::<f32>().unwrap();
        assert!((a[0] + 0.5 / (0.5f32.sqrt() + 1e-4)).abs() < 1e-5);
        let a = rloo_advantages(&r, 2).unwrap().to_vec1::<f32>().unwrap();
        assert_eq!(a, vec![-1.0, 1.0, -3.0, 3.0]);
        assert!(rloo_advantages(&r, 3).is_err());
    }

    #[test]
    fn adaptive_kl_moves_towards_target() {
        let mut c = KlController::Adaptive(AdaptiveKlController::default());
        c.update(12.0, 1000); // error clipped to +0.2 → ×1.02
        assert!((c.value() - 0.2 * 1.02).abs() < 1e-12);
        let mut f = KlController::Fixed(0.05);
        f.update(100.0, 1000);
        assert_eq!(f.value(), 0.05);
    }
}
