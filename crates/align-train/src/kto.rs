//! KTO (Ethayarajh et al. 2024): preference optimization from unpaired feedback, "this completion
//! is good" / "this one is bad", as TRL's `KTOTrainer`.
//!
//! items (prompt, completion, desirable) → a sequence each, plus a *mismatched* sequence (the
//! prompt with the next item's completion, TRL's KL data set) → the loss of
//! [`crate::pref_loss::kto_loss`] whose reference point z₀ is the batch's detached KL estimate
//! `max(0, mean(policy − ref))` over the mismatched sequences. Reference log-probs of both are
//! computed once and cached like DPO's. Paired preference data is unpaired as TRL's
//! `unpair_preference_dataset` does: chosen → desirable, rejected → undesirable.

use crate::dpo::{cached_reference, completion_logps, make_trainer, prepare_training, save_policy, setup, DpoConfig, DpoSummary, PrefData};
use crate::error::{Result, TrainError};
use crate::pref_loss::{kto_kl_estimate, kto_loss, KtoConfig};
use crate::sft::{add_ptx, tokenize_example, MixedBatch, Seq, SftData, TokenizeReport};
use crate::trainer::Step;
use align_core::metrics::Record;
use align_data::chat_template::ChatTemplate;
use align_data::formats::{Example, Text};
use align_data::Tokenizer;
use align_models::CausalLm;
use candle_core::{Device, Tensor};
use serde_json::json;
use std::collections::BTreeMap;

/// One unpaired example: its sequence, its mismatched KL sequence, and its label.
#[derive(Debug, Clone)]
pub struct KtoItem {
    pub seq: Seq,
    pub kl_seq: Seq,
    pub desirable: bool,
}

/// (prompt, completion, desirable) of every example; preference pairs give two.
fn unpair(examples: &[Example]) -> Result<Vec<(Text, Text, bool)>> {
    let mut out = vec![];
    for ex in examples {
        match ex {
            Example::Unpaired { prompt, completion, label } => out.push((prompt.clone(), completion.clone(), *label)),
            Example::Preference { prompt: Some(p), chosen, rejected, .. } => {
                out.push((p.clone(), chosen.clone(), true));
                out.push((p.clone(), rejected.clone(), false));
            }
            Example::Preference { prompt: None, .. } => {
                return Err(TrainError::Config("a preference pair has no prompt: keep data.read.extract_prompt on for implicit prompts".into()))
            }
            _ => return Err(TrainError::Config("KTO takes unpaired data (prompt/completion/label) or preference pairs (prompt/chosen/rejected)".into())),
        }
    }
    Ok(out)
}

/// Tokenizes unpaired examples; the KL partner of item i is the completion of item i+1 (mod n),
/// so the reference log-probs of the KL sequences can be computed once. Over-long items are
/// truncated at the end (or skipped with `truncation = "skip"`) and counted.
pub fn tokenize_unpaired(tok: &Tokenizer, tmpl: &ChatTemplate, examples: &[Example], cfg: &PrefData) -> Result<(Vec<KtoItem>, TokenizeReport)> {
    let seq_cfg = SftData { max_seq_len: cfg.max_seq_len, truncation: cfg.truncation.clone(), ..SftData::default() };
    let triples = unpair(examples)?;
    let mut rep = TokenizeReport::default();
    let tokenize = |p: &Text, c: &Text, rep: &mut TokenizeReport, count: bool| -> Result<Option<Seq>> {
        let mut s = tokenize_example(tok, tmpl, &Example::PromptCompletion { prompt: p.clone(), completion: c.clone() }, &seq_cfg)?;
        if s.ids.len() > cfg.max_seq_len {
            if cfg.truncation == "skip" {
                if count {
                    *rep.skipped.entry("longer than max_seq_len".into()).or_default() += 1;
                }
                return Ok(None);
            }
            s.ids.truncate(cfg.max_seq_len);
            s.mask.truncate(cfg.max_seq_len);
            if count {
                rep.truncated += 1;
            }
        }
        if !s.mask.contains(&1) {
            if count {
                *rep.skipped.entry("no completion token left (after truncation)".into()).or_default() += 1;
            }
            return Ok(None);
        }
        Ok(Some(s))
    };
    let mut kept = vec![];
    for (p, c, label) in &triples {
        if let Some(s) = tokenize(p, c, &mut rep, true)? {
            kept.push((p, c, *label, s));
        }
    }
    let n = kept.len();
    let mut out = Vec::with_capacity(n);
    for i in 0..n {
        let (p, _, desirable, seq) = &kept[i];
        let partner = kept[(i + 1) % n].1;
        // The mismatched pair may itself be too long; fall back to the item's own sequence.
        let kl_seq = tokenize(p, partner, &mut rep, false)?.unwrap_or_else(|| seq.clone());
        out.push(KtoItem { seq: seq.clone(), kl_seq, desirable: *desirable });
    }
    rep.kept = n;
    Ok((out, rep))
}

/// Reference log-probs of every item: (completion, KL sequence).
pub fn reference_logps(lm: &dyn CausalLm, items: &[KtoItem], batch: usize, padding_free: bool, dev: &Device) -> Result<Vec<(f32, f32)>> {
    crate::dpo::paired_logps(lm, &items.iter().map(|it| (&it.seq, &it.kl_seq)).collect::<Vec<_>>(), batch, padding_free, dev)
}

pub struct KtoStep<'a> {
    pub lm: &'a dyn CausalLm,
    pub device: Device,
    pub items: &'a [KtoItem],
    pub ref_logps: &'a [(f32, f32)],
    pub cfg: KtoConfig,
    pub ptx_coef: f64,
    /// [`crate::dpo::PrefData::padding_free`].
    pub padding_free: bool,
}

impl KtoStep<'_> {
    /// The KTO loss over items `idx` and TRL's KTO metrics.
    pub fn item_loss(&self, idx: &[usize]) -> Result<(Tensor, BTreeMap<String, f64>)> {
        let n = idx.len();
        let seqs: Vec<Seq> = idx.iter().map(|&i| self.items[i].seq.clone()).collect();
        let kl_seqs: Vec<Seq> = idx.iter().map(|&i| self.items[i].kl_seq.clone()).collect();
        let (policy, _, _) = completion_logps(self.lm, &seqs, self.padding_free, &self.device)?;
        // TRL computes the KL sequences' log-probs without gradient.
        let kl_policy = completion_logps(self.lm, &kl_seqs, self.padding_free, &self.device)?.0.detach();
        let col = |f: fn(&(f32, f32)) -> f32| Tensor::from_vec(idx.iter().map(|&i| f(&self.ref_logps[i])).collect::<Vec<_>>(), n, &self.device);
        let (reference, kl_ref) = (col(|r| r.0)?, col(|r| r.1)?);
        let desirable = Tensor::from_vec(idx.iter().map(|&i| self.items[i].desirable as u8 as f32).collect::<Vec<_>>(), n, &self.device)?;
        let kl = kto_kl_estimate(&kl_policy, &kl_ref)?;
        let out = kto_loss(&policy, &reference, &desirable, &kl, &self.cfg)?;
        Ok((out.loss()?, out.metrics()))
    }
}

impl Step<MixedBatch> for KtoStep<'_> {
    fn loss(&mut self, batch: &MixedBatch) -> Result<(Tensor, Record)> {
        let (loss, metrics) = self.item_loss(&batch.idx)?;
        let mut m: Record = metrics.into_iter().map(|(k, v)| (k, json!(v))).collect();
        let tokens: usize = batch.idx.iter().map(|&i| self.items[i].seq.ids.len() + self.items[i].kl_seq.ids.len()).sum();
        m.insert("num_tokens".into(), json!(tokens));
        let loss = add_ptx(self.lm, &self.device, loss, batch.ptx.as_ref(), self.ptx_coef, &mut m)?;
        Ok((loss, m))
    }
}

/// Held-out metrics: batch means weighted by batch size. Metrics absent from a batch (a batch
/// with only desirable items has no `rewards/rejected`) are averaged over the batches that have them.
pub fn eval_metrics(step: &KtoStep, n: usize, batch: usize) -> Result<BTreeMap<String, f64>> {
    crate::dpo::held_out_means(n, batch, |idx| step.item_loss(idx))
}

/// TRL's advice: `desirable_weight · n_D / (undesirable_weight · n_U)` should lie in [1, 4/3].
fn check_balance(items: &[KtoItem], cfg: &KtoConfig) {
    let d = items.iter().filter(|i| i.desirable).count() as f64;
    let u = items.len() as f64 - d;
    if d == 0.0 || u == 0.0 {
        tracing::warn!("KTO data has {d} desirable and {u} undesirable examples: both kinds are needed for a useful signal");
        return;
    }
    let r = cfg.desirable_weight * d / (cfg.undesirable_weight * u);
    if !(1.0..=4.0 / 3.0).contains(&r) {
        tracing::warn!("KTO: desirable_weight·n_D / (undesirable_weight·n_U) = {r:.2}, outside TRL's recommended [1, 4/3]; adjust kto.desirable_weight or kto.undesirable_weight");
    }
}

/// Runs KTO (`objective = "kto"`, `align dpo --loss kto`).
pub fn run(cfg: &DpoConfig, resume: bool, resolved: &str) -> Result<DpoSummary> {
    let start = std::time::Instant::now();
    let dev = crate::trainer::device_of(&cfg.train)?;
    let mut s = setup(cfg, &dev)?;
    let (items, train_rep) = tokenize_unpaired(&s.tok, &s.tmpl, &s.train_ex, &s.data)?;
    let (eval_items, eval_rep) = tokenize_unpaired(&s.tok, &s.tmpl, &s.eval_ex, &s.data)?;
    tracing::info!("KTO examples: {} train ({} truncated, skipped {:?}), {} held-out", train_rep.kept, train_rep.truncated, train_rep.skipped, eval_rep.kept);
    if items.is_empty() {
        return Err(TrainError::Config("no usable KTO examples".into()));
    }
    check_balance(&items, &cfg.kto);
    let bs = cfg.data.batch_size;
    let pf = cfg.data.padding_free;
    let (ref_train, ref_eval): (Vec<(f32, f32)>, Vec<(f32, f32)>) =
        cached_reference(cfg, &s.model, &dev, |lm| Ok((reference_logps(lm, &items, bs, pf, &dev)?, reference_logps(lm, &eval_items, bs, pf, &dev)?)))?;

    let mut data = prepare_training(cfg, &mut s, items.len(), "kto")?;
    let ptx_coef = cfg.ptx.as_ref().map_or(0.0, |p| p.coef);
    let eval_step = |lm| KtoStep { lm, device: dev.clone(), items: &eval_items, ref_logps: &ref_eval, cfg: cfg.kto.clone(), ptx_coef, padding_free: pf };
    let n_eval = eval_items.len();
    let eval_before = if n_eval == 0 { BTreeMap::new() } else { eval_metrics(&eval_step(s.model.lm.as_ref()), n_eval, bs)? };
    let mut step = KtoStep { lm: s.model.lm.as_ref(), device: dev.clone(), items: &items, ref_logps: &ref_train, cfg: cfg.kto.clone(), ptx_coef, padding_free: pf };
    let mut trainer = make_trainer(cfg, &s.model, resolved)?;
    if resume {
        trainer.resume(&mut step, &mut data)?;
    }
    let mut eval = |st: &mut KtoStep| -> Result<f64> {
        let e = KtoStep { items: &eval_items, ref_logps: &ref_eval, cfg: st.cfg.clone(), device: st.device.clone(), ..*st };
        Ok(eval_metrics(&e, n_eval, bs)?.get("loss").copied().unwrap_or(f64::NAN))
    };
    let summary = trainer.fit(&mut step, &mut data, if n_eval > 0 { Some(&mut eval) } else { None })?;
    drop(step);
    s.model.set_training(false);
    let eval_after = if n_eval == 0 { BTreeMap::new() } else { eval_metrics(&eval_step(s.model.lm.as_ref()), n_eval, bs)? };
    let model_dir = save_policy(cfg, &mut s.model, &s.tok, resolved)?;
    Ok(DpoSummary { steps: summary.step, train: train_rep, eval: eval_rep, read_summary: s.read_summary, eval_before, eval_after, model_dir, seconds: start.elapsed().as_secs_f64() })
}
