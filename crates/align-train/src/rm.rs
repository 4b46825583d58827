//! Reward modelling (stage 3): a causal LM with a scalar head trained on preference pairs with the
//! Bradley-Terry loss `−log σ(r_chosen − r_rejected − margin)` (soft labels and reward centering
//! optional; [`crate::pref_loss::bt_reward_loss`]).
//!
//! preference examples → prompt + chosen / prompt + rejected token ids (chat template for
//! conversations, prompt + completion (+ EOS) for plain strings) → micro-batches of 2B right-padded
//! rows (chosen rows, then rejected rows) → [`RewardModel::forward`] → loss and TRL's metrics
//! (`accuracy`, `margin`, `mean_reward`, `std_reward`) → the shared [`Trainer`]. The result is an HF
//! `*ForSequenceClassification` directory (docs/reward_model.md).

use crate::error::{Result, TrainError};
use crate::pref_loss::bt_reward_loss;
use crate::pretrain::write_model_files;
use crate::trainer::{DataStream, Step, TrainConfig, Trainer};
use align_core::metrics::Record;
use align_data::chat_template::{tokenize_conversation, ChatTemplate};
use align_data::formats::{Example, ReadOptions, Text};
use align_data::{Message, Shuffler, Tokenizer};
use align_models::reward::RewardModel;
use candle_core::{DType, Tensor};
use serde::{Deserialize, Serialize};
use serde_json::json;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// `align rm train` configuration.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RmConfig {
    /// Run directory: metrics.jsonl, checkpoints/, model/.
    pub out_dir: PathBuf,
    /// An HF causal LM (a fresh seeded `score` head is added) or a reward model directory
    /// (`*ForSequenceClassification`, trained further), with its tokenizer files.
    pub model: PathBuf,
    pub data: RmData,
    /// Adds `c · mean((r_chosen + r_rejected)²)` to the loss, keeping rewards centred on 0
    /// (Eisenstein et al. 2023). TRL `center_rewards_coefficient` None (off); 0.01 is suggested.
    #[serde(default)]
    pub center_rewards_coefficient: Option<f64>,
    pub train: TrainConfig,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RmData {
    /// Preference files (JSONL / JSON / Parquet; `prompt?`, `chosen`, `rejected`, `margin?`).
    pub files: Vec<PathBuf>,
    /// Held-out files; when empty, the last `eval_fraction` of the pairs.
    pub eval_files: Vec<PathBuf>,
    pub eval_fraction: f64,
    /// Format, field names (`fields.margin`, `fields.prob` for soft labels), `skip_invalid`.
    pub read: ReadOptions,
    /// Longest sequence (prompt + response) in tokens. TRL `max_length` 1024; ours 256.
    pub max_seq_len: usize,
    /// Pairs per micro-batch (2× rows). TRL `per_device_train_batch_size` 8.
    pub batch_size: usize,
    /// Pairs with a sequence longer than `max_seq_len`: "keep_start" (truncate the end, counted;
    /// pairs identical after truncation are skipped) or "skip" (drop the pair: what TRL does).
    pub truncation: String,
}

impl Default for RmData {
    fn default() -> Self {
        Self {
            files: vec![],
            eval_files: vec![],
            eval_fraction: 0.05,
            read: ReadOptions::default(),
            max_seq_len: 256,
            batch_size: 8,
            truncation: "keep_start".into(),
        }
    }
}

/// One tokenized pair; `margin` and `prob` (soft label: P(chosen wins)) as read.
#[derive(Debug, Clone, PartialEq)]
pub struct Pair {
    pub chosen: Vec<u32>,
    pub rejected: Vec<u32>,
    pub margin: Option<f64>,
    pub prob: Option<f64>,
}

/// What tokenization did: pairs kept, truncated, skipped by reason.
#[derive(Debug, Clone, Default, Serialize)]
pub struct PairReport {
    pub kept: usize,
    pub truncated: usize,
    pub skipped: BTreeMap<String, usize>,
}

fn msgs(t: &Text, default_role: &str) -> Vec<Message> {
    match t {
        Text::Conversation(m) => m.clone(),
        Text::Plain(s) => vec![Message::new(default_role, s.clone())],
    }
}

/// Token ids of `prompt` + `response`: plain strings are concatenated (special tokens of the
/// tokenizer, then EOS unless EOS is the pad token, which transformers would skip over when it
/// looks for the last real token); conversations go through the chat template.
pub fn tokenize_response(tok: &Tokenizer, tmpl: &ChatTemplate, prompt: Option<&Text>, response: &Text) -> Result<Vec<u32>> {
    let other = TrainError::other;
    match (prompt, response) {
        (None | Some(Text::Plain(_)), Text::Plain(r)) => {
            let mut ids = match prompt {
                Some(Text::Plain(p)) => {
                    let mut ids = tok.encode(p, true).map_err(other)?;
                    ids.extend(tok.encode(r, false).map_err(other)?);
                    ids
                }
                _ => tok.encode(r, true).map_err(other)?,
            };
            if let Some(eos) = tok.eos_id() {
                if eos != pad_id(tok) {
                    ids.push(eos);
                }
            }
            Ok(ids)
        }
        _ => {
            let mut all = prompt.map(|p| msgs(p, "user")).unwrap_or_default();
            all.extend(msgs(response, "assistant"));
            Ok(tokenize_conversation(tok, tmpl, &all).map_err(other)?.0)
        }
    }
}

/// The pad id a reward model is saved with (HF `pad_token_id`): the tokenizer's pad, else EOS, else 0.
pub fn pad_id(tok: &Tokenizer) -> u32 {
    tok.pad_id().or(tok.eos_id()).unwrap_or(0)
}

/// Tokenizes preference examples, truncating or skipping over-long pairs; nothing is dropped
/// without a count. Examples of other formats are an error.
pub fn tokenize_pairs(tok: &Tokenizer, tmpl: &ChatTemplate, examples: &[Example], cfg: &RmData) -> Result<(Vec<Pair>, PairReport)> {
    let mut rep = PairReport::default();
    let mut out = vec![];
    let max = cfg.max_seq_len;
    for ex in examples {
        let Example::Preference { prompt, chosen, rejected, margin, prob } = ex else {
            return Err(TrainError::Config("reward modelling takes preference data (chosen / rejected)".into()));
        };
        let mut c = tokenize_response(tok, tmpl, prompt.as_ref(), chosen)?;
        let mut r = tokenize_response(tok, tmpl, prompt.as_ref(), rejected)?;
        let too_long = c.len() > max || r.len() > max;
        if too_long {
            match cfg.truncation.as_str() {
                "skip" => {
                    *rep.skipped.entry("longer than max_seq_len".into()).or_default() += 1;
                    continue;
                }
                "keep_start" => {
                    c.truncate(max);
                    r.truncate(max);
                }
                o => return Err(TrainError::Config(format!("data.truncation `{o}` is not keep_start or skip"))),
            }
        }
        if c == r {
            *rep.skipped.entry("identical chosen and rejected after truncation".into()).or_default() += 1;
            continue;
        }
        if c.is_empty() || r.is_empty() {
            *rep.skipped.entry("empty sequence".into()).or_default() += 1;
            continue;
        }
        out.push(Pair { chosen: c, rejected: r, margin: *margin, prob: *prob });
        rep.kept += 1;
        rep.truncated += usize::from(too_long);
    }
    Ok((out, rep))
}

/// A micro-batch: rows 0..B are the chosen sequences, B..2B the rejected ones, right-padded.
#[derive(Debug, Clone)]
pub struct PairBatch {
    pub n_pairs: usize,
    pub t: usize,
    pub input_ids: Vec<u32>,
    pub lengths: Vec<usize>,
    /// Per-pair margins (0 where a pair has none); `None` when no pair has one.
    pub margin: Option<Vec<f32>>,
    /// Per-pair soft labels (1 where a pair has none); `None` when no pair has one.
    pub prob: Option<Vec<f32>>,
}

impl PairBatch {
    pub fn new(pairs: &[&Pair], pad: u32) -> Self {
        let seqs: Vec<&Vec<u32>> = pairs.iter().map(|p| &p.chosen).chain(pairs.iter().map(|p| &p.rejected)).collect();
        let t = seqs.iter().map(|s| s.len()).max().unwrap_or(1).max(1);
        let mut input_ids = vec![pad; seqs.len() * t];
        for (i, s) in seqs.iter().enumerate() {
            input_ids[i * t..i * t + s.len()].copy_from_slice(s);
        }
        let any_margin = pairs.iter().any(|p| p.margin.is_some());
        let any_prob = pairs.iter().any(|p| p.prob.is_some());
        PairBatch {
            n_pairs: pairs.len(),
            t,
            input_ids,
            lengths: seqs.iter().map(|s| s.len()).collect(),
            margin: any_margin.then(|| pairs.iter().map(|p| p.margin.unwrap_or(0.0) as f32).collect()),
            prob: any_prob.then(|| pairs.iter().map(|p| p.prob.unwrap_or(1.0) as f32).collect()),
        }
    }
}

/// Rewards of a batch: (chosen (B,), rejected (B,)).
pub fn pair_rewards(rm: &RewardModel, b: &PairBatch) -> Result<(Tensor, Tensor)> {
    let dev = &rm.model.device;
    let ids = Tensor::from_slice(&b.input_ids, (2 * b.n_pairs, b.t), dev)?;
    let r = rm.forward(&ids, &b.lengths).map_err(TrainError::other)?; // (2B,)
    Ok((r.narrow(0, 0, b.n_pairs)?, r.narrow(0, b.n_pairs, b.n_pairs)?))
}

/// The Bradley-Terry loss of a batch, with its margins, soft labels and centering.
pub fn pair_loss(rc: &Tensor, rr: &Tensor, b: &PairBatch, center: Option<f64>) -> Result<Tensor> {
    let dev = rc.device();
    let margin = b.margin.as_ref().map(|m| Tensor::from_slice(m, m.len(), dev)).transpose()?;
    let prob = b.prob.as_ref().map(|p| Tensor::from_slice(p, p.len(), dev)).transpose()?;
    Ok(bt_reward_loss(rc, rr, margin.as_ref(), prob.as_ref(), center)?)
}

/// TRL's reward metrics from rewards of chosen and rejected responses.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct RewardStats {
    /// Fraction of pairs with r_chosen > r_rejected.
    pub accuracy: f64,
    /// Mean of r_chosen − r_rejected.
    pub margin: f64,
    /// Mean and (population) std of all 2B rewards.
    pub mean_reward: f64,
    pub std_reward: f64,
}

pub fn reward_stats(rc: &[f32], rr: &[f32]) -> RewardStats {
    let n = rc.len().max(1) as f64;
    let accuracy = rc.iter().zip(rr).filter(|(c, r)| c > r).count() as f64 / n;
    let margin = rc.iter().zip(rr).map(|(c, r)| (c - r) as f64).sum::<f64>() / n;
    let all: Vec<f64> = rc.iter().chain(rr).map(|&x| x as f64).collect();
    let m = all.iter().sum::<f64>() / all.len().max(1) as f64;
    let var = all.iter().map(|x| (x - m).powi(2)).sum::<f64>() / all.len().max(1) as f64;
    RewardStats { accuracy, margin, mean_reward: m, std_reward: var.sqrt() }
}

pub struct RmStep<'a> {
    pub rm: &'a RewardModel,
    pub center_rewards_coefficient: Option<f64>,
}

impl Step<PairBatch> for RmStep<'_> {
    fn loss(&mut self, batch: &PairBatch) -> Result<(Tensor, Record)> {
        let (rc, rr) = pair_rewards(self.rm, batch)?;
        let loss = pair_loss(&rc, &rr, batch, self.center_rewards_coefficient)?;
        let s = reward_stats(&rc.to_vec1::<f32>()?, &rr.to_vec1::<f32>()?);
        let mut m = Record::new();
        m.insert("num_tokens".into(), json!(2 * batch.n_pairs * batch.t));
        m.insert("accuracy".into(), json!(s.accuracy));
        m.insert("margin".into(), json!(s.margin));
        m.insert("mean_reward".into(), json!(s.mean_reward));
        m.insert("std_reward".into(), json!(s.std_reward));
        Ok((loss, m))
    }
}

/// Shuffled pairs, `batch_size` at a time.
pub struct RmStream {
    pub pairs: Vec<Pair>,
    pub shuffler: Shuffler,
    pub pad: u32,
}

impl DataStream for RmStream {
    type Batch = PairBatch;
    fn next_batch(&mut self) -> Result<PairBatch> {
        let idx = self.shuffler.next_indices();
        let pairs: Vec<&Pair> = idx.iter().map(|&i| &self.pairs[i]).collect();
        Ok(PairBatch::new(&pairs, self.pad))
    }
    fn state(&self) -> serde_json::Value {
        json!(self.shuffler.state())
    }
    fn restore(&mut self, s: &serde_json::Value) -> Result<()> {
        let st = serde_json::from_value(s.clone()).map_err(|e| TrainError::Config(format!("bad data state in checkpoint: {e}")))?;
        self.shuffler.restore(&st).map_err(TrainError::other)
    }
    fn epoch(&self) -> Option<f64> {
        Some(self.shuffler.epoch_f64())
    }
}

/// Held-out loss and metrics over all `pairs`.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct RmEval {
    pub loss: f64,
    pub stats: RewardStats,
    pub pairs: usize,
}

/// Rewards of every pair, `batch_size` pairs at a time: (chosen, rejected).
pub fn score_pairs(rm: &RewardModel, pairs: &[Pair], batch_size: usize, pad: u32) -> Result<(Vec<f32>, Vec<f32>)> {
    let (mut c, mut r) = (vec![], vec![]);
    for chunk in pairs.chunks(batch_size.max(1)) {
        let refs: Vec<&Pair> = chunk.iter().collect();
        let (rc, rr) = pair_rewards(rm, &PairBatch::new(&refs, pad))?;
        c.extend(rc.to_vec1::<f32>()?);
        r.extend(rr.to_vec1::<f32>()?);
    }
    Ok((c, r))
}

/// Rewards of single sequences (right-padded in batches of `batch_size`).
pub fn score_seqs(rm: &RewardModel, seqs: &[Vec<u32>], batch_size: usize, pad: u32) -> Result<Vec<f32>> {
    let mut out = vec![];
    for chunk in seqs.chunks(batch_size.max(1)) {
        let t = chunk.iter().map(|s| s.len()).max().unwrap_or(1).max(1);
        let mut ids = vec![pad; chunk.len() * t];
        for (i, s) in chunk.iter().enumerate() {
            ids[i * t..i * t + s.len()].copy_from_slice(s);
        }
        let ids = Tensor::from_vec(ids, (chunk.len(), t), &rm.model.device)?;
        let lengths: Vec<usize> = chunk.iter().map(|s| s.len()).collect();
        out.extend(rm.forward(&ids, &lengths).map_err(TrainError::other)?.to_vec1::<f32>()?);
    }
    Ok(out)
}

pub fn evaluate(rm: &RewardModel, pairs: &[Pair], batch_size: usize, pad: u32, center: Option<f64>) -> Result<RmEval> {
    if pairs.is_empty() {
        return Err(TrainError::Config("no held-out pairs to evaluate".into()));
    }
    let (mut loss_sum, mut c_all, mut r_all) = (0f64, vec![], vec![]);
    for chunk in pairs.chunks(batch_size.max(1)) {
        let refs: Vec<&Pair> = chunk.iter().collect();
        let b = PairBatch::new(&refs, pad);
        let (rc, rr) = pair_rewards(rm, &b)?;
        loss_sum += pair_loss(&rc, &rr, &b, center)?.to_scalar::<f32>()? as f64 * chunk.len() as f64;
        c_all.extend(rc.to_vec1::<f32>()?);
        r_all.extend(rr.to_vec1::<f32>()?);
    }
    Ok(RmEval { loss: loss_sum / pairs.len() as f64, stats: reward_stats(&c_all, &r_all), pairs: pairs.len() })
}

#[derive(Debug, Clone, Serialize)]
pub struct RmSummary {
    pub steps: u64,
    pub train: PairReport,
    pub eval: PairReport,
    pub read_summary: Vec<String>,
    /// Held-out metrics before and after training (`None` without held-out pairs).
    pub eval_before: Option<RmEval>,
    pub eval_after: Option<RmEval>,
    pub model_dir: PathBuf,
    pub seconds: f64,
}

/// Reads examples from `files`, one summary line per file.
use crate::sft::read_train_eval;

/// Writes a reward model directory: weights, config (sequence classification), tokenizer files.
pub fn save_reward_model(rm: &RewardModel, tok: &Tokenizer, dir: &Path) -> Result<()> {
    let pad = pad_id(tok);
    rm.save_pretrained(dir, DType::F32, pad).map_err(TrainError::other)?;
    write_model_files(dir, &rm.config_json(pad), tok)
}

/// Trains a reward model (resuming from the newest checkpoint under `out_dir` when `resume`).
pub fn run(cfg: &RmConfig, resume: bool, resolved: &str) -> Result<RmSummary> {
    let start = std::time::Instant::now();
    let dev = crate::trainer::device_of(&cfg.train)?;
    let tok = Tokenizer::from_dir(&cfg.model).map_err(TrainError::other)?;
    let tmpl = ChatTemplate::from_tokenizer(&tok).map_err(TrainError::other)?;
    let (rm, from_ckpt) = RewardModel::load_or_init(&cfg.model, cfg.train.seed, DType::F32, &dev).map_err(TrainError::other)?;
    tracing::info!("reward model from {} ({})", cfg.model.display(), if from_ckpt { "its score head" } else { "a fresh score head" });
    let data_cfg = RmData { max_seq_len: cfg.data.max_seq_len.min(rm.model.config.max_positions()), ..cfg.data.clone() };

    let (train_ex, eval_ex, read_summary) = read_train_eval(&cfg.data.files, &cfg.data.eval_files, cfg.data.eval_fraction, &cfg.data.read)?;
    let (pairs, train_rep) = tokenize_pairs(&tok, &tmpl, &train_ex, &data_cfg)?;
    let (eval_pairs, eval_rep) = tokenize_pairs(&tok, &tmpl, &eval_ex, &data_cfg)?;
    tracing::info!("reward model on {} pairs ({} truncated, skipped {:?}), held-out {}", train_rep.kept, train_rep.truncated, train_rep.skipped, eval_rep.kept);
    if pairs.is_empty() {
        return Err(TrainError::Config("no training pairs left after tokenization".into()));
    }
    let pad = pad_id(&tok);
    let bs = cfg.data.batch_size.max(1);
    let center = cfg.center_rewards_coefficient;
    let shuffler = Shuffler::new(pairs.len(), bs.min(pairs.len()), cfg.train.seed, "rm").map_err(TrainError::other)?;
    let mut data = RmStream { pairs, shuffler, pad };
    let has_eval = !eval_pairs.is_empty();
    let eval_before = if has_eval { Some(evaluate(&rm, &eval_pairs, bs, pad, center)?) } else { None };

    let mut trainer = Trainer::new(cfg.train.clone(), rm.vars(), &cfg.out_dir)?;
    let (config_json, model_dir_in, resolved_text) = (rm.config_json(pad), cfg.model.clone(), resolved.to_string());
    trainer.set_checkpoint_hook(move |dir| {
        let tok = Tokenizer::from_dir(&model_dir_in).map_err(TrainError::other)?;
        write_model_files(dir, &config_json, &tok)?;
        align_core::atomic::write_atomic(dir.join("align_config.toml"), resolved_text.as_bytes())?;
        Ok(())
    });
    let mut step = RmStep { rm: &rm, center_rewards_coefficient: center };
    if resume {
        trainer.resume(&mut step, &mut data)?;
    }
    let mut eval = |s: &mut RmStep| -> Result<f64> {
        let e = evaluate(s.rm, &eval_pairs, bs, pad, center)?;
        tracing::info!("held-out accuracy {:.3}, margin {:.3}", e.stats.accuracy, e.stats.margin);
        Ok(e.loss)
    };
    let summary = trainer.fit(&mut step, &mut data, if has_eval { Some(&mut eval) } else { None })?;
    let eval_after = if has_eval { Some(evaluate(&rm, &eval_pairs, bs, pad, center)?) } else { None };

    let model_dir = cfg.out_dir.join("model");
    save_reward_model(&rm, &tok, &model_dir)?;
    align_core::atomic::write_atomic(model_dir.join("align_config.toml"), resolved.as_bytes())?;
    Ok(RmSummary {
        steps: summary.step,
        train: train_rep,
        eval: eval_rep,
        read_summary,
        eval_before,
        eval_after,
        model_dir,
        seconds: start.elapsed().as_secs_f64(),
    })
}
