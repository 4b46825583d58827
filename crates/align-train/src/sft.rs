//! Stage 2: supervised fine-tuning (instruction tuning) on TRL-format data.
//!
//! examples (`messages`, `prompt`/`completion`, `text`) → token ids and a loss mask (assistant
//! turns / completions only by default, end-of-turn token included so the model learns to stop)
//! → rows (one sequence per row, right-padded; or packed several to a row, with positions
//! restarting and attention blocked at sequence boundaries) → masked next-token loss, optionally
//! plus a pretraining-data term (InstructGPT's PPO-ptx idea applied to SFT: it keeps a tiny model
//! from memorising the SFT set) → the shared [`Trainer`].

use crate::error::{Result, TrainError};
use crate::lm_loss::token_logprobs;
use crate::pretrain::{write_model_files, LmStep};
use crate::trainer::{DataStream, Step, TrainConfig, Trainer};
use align_core::metrics::Record;
use align_data::chat_template::{tokenize_conversation, ChatTemplate};
use align_data::formats::{read_examples, Example, ReadOptions, Text};
use align_data::{Batch, Batcher, Message, Shuffler, Tokenizer};
use align_models::{CausalLm, ForwardArgs, Model};
use candle_core::{DType, Device, Tensor};
use serde::{Deserialize, Serialize};
use serde_json::json;
use std::collections::BTreeMap;
use std::path::PathBuf;

/// `align sft` configuration.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SftConfig {
    /// Run directory: metrics.jsonl, checkpoints/, model/.
    pub out_dir: PathBuf,
    /// The HF model directory to fine-tune (with its tokenizer files).
    pub model: PathBuf,
    pub data: SftData,
    /// Pretraining data mixed into every step (off when absent).
    #[serde(default)]
    pub ptx: Option<PtxConfig>,
    /// Train LoRA adapters (PEFT's fields: r, lora_alpha, lora_dropout, target_modules) on a
    /// frozen base instead of every weight. The adapter is saved to OUT_DIR/adapter (PEFT format)
    /// and merged into OUT_DIR/model.
    #[serde(default)]
    pub lora: Option<align_models::LoraConfig>,
    pub train: TrainConfig,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SftData {
    /// JSONL / JSON / Parquet files in a TRL format.
    pub files: Vec<PathBuf>,
    /// Held-out files; when empty, the last `eval_fraction` of the examples.
    pub eval_files: Vec<PathBuf>,
    pub eval_fraction: f64,
    /// Format, field names, `skip_invalid` (see docs/formats.md).
    pub read: ReadOptions,
    /// Longest sequence in tokens. TRL `max_length` 1024; ours 256 (the gym's context).
    pub max_seq_len: usize,
    /// Rows per micro-batch. TRL `per_device_train_batch_size` 8.
    pub batch_size: usize,
    /// Pack several sequences into each row of `max_seq_len` tokens, without cross-sequence
    /// attention (positions restart, attention masked). TRL `packing` false.
    pub packing: bool,
    /// Loss on assistant turns only for `messages` data. TRL `assistant_only_loss` false; ours
    /// true (the issue asks for response-only loss by default).
    pub assistant_only_loss: bool,
    /// Loss on the completion only for prompt/completion data. TRL `completion_only_loss` true.
    pub completion_only_loss: bool,
    /// Over-long sequences: "keep_start" (truncate the end; TRL's default) or "skip".
    pub truncation: String,
}

impl Default for SftData {
    fn default() -> Self {
        Self {
            files: vec![],
            eval_files: vec![],
            eval_fraction: 0.05,
            read: ReadOptions::default(),
            max_seq_len: 256,
            batch_size: 8,
            packing: false,
            assistant_only_loss: true,
            completion_only_loss: true,
            truncation: "keep_start".into(),
        }
    }
}

/// Pretraining-data mixing.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PtxConfig {
    pub files: Vec<PathBuf>,
    /// Pretraining sequences per micro-batch.
    pub batch_size: usize,
    /// Their sequence length; 0 = `data.max_seq_len`.
    pub seq_len: usize,
    /// Weight of the pretraining loss (InstructGPT's γ).
    pub coef: f64,
}

impl Default for PtxConfig {
    fn default() -> Self {
        Self { files: vec![], batch_size: 4, seq_len: 0, coef: 1.0 }
    }
}

/// One tokenized training sequence: `mask[i] == 1` when token `i` is a training target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Seq {
    pub ids: Vec<u32>,
    pub mask: Vec<u8>,
}

/// What tokenization did: kept, truncated, skipped by reason.
#[derive(Debug, Clone, Default, Serialize)]
pub struct TokenizeReport {
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

/// Tokenizes one example into a [`Seq`] (before truncation).
pub fn tokenize_example(tok: &Tokenizer, tmpl: &ChatTemplate, ex: &Example, cfg: &SftData) -> Result<Seq> {
    let other = TrainError::other;
    let eos = tok.eos_id().ok_or_else(|| TrainError::Config("the tokenizer has no EOS token".into()))?;
    let seq = match ex {
        Example::LanguageModeling { text: Text::Plain(s) } => {
            let mut ids = tok.encode(s, true).map_err(other)?;
            ids.push(eos);
            let mask = vec![1; ids.len()];
            Seq { ids, mask }
        }
        Example::LanguageModeling { text: Text::Conversation(m) } => {
            let (ids, amask) = tokenize_conversation(tok, tmpl, m).map_err(other)?;
            let mask = if cfg.assistant_only_loss { amask } else { vec![1; ids.len()] };
            Seq { ids, mask }
        }
        Example::PromptCompletion { prompt: Text::Plain(p), completion: Text::Plain(c) } => {
            let mut ids = tok.encode(p, true).map_err(other)?;
            let n_prompt = ids.len();
            ids.extend(tok.encode(c, false).map_err(other)?);
            ids.push(eos);
            let mask = (0..ids.len()).map(|i| u8::from(!cfg.completion_only_loss || i >= n_prompt)).collect();
            Seq { ids, mask }
        }
        Example::PromptCompletion { prompt, completion } => {
            let prompt = msgs(prompt, "user");
            let mut all = prompt.clone();
            all.extend(msgs(completion, "assistant"));
            let (ids, amask) = tokenize_conversation(tok, tmpl, &all).map_err(other)?;
            let rendered_prompt = tmpl.render(&prompt, true).map_err(other)?;
            let n_prompt = tok.encode(&rendered_prompt, false).map_err(other)?.len();
            let mask = amask
                .iter()
                .enumerate()
                .map(|(i, &m)| u8::from(!cfg.completion_only_loss || (i >= n_prompt && m == 1)))
                .collect();
            Seq { ids, mask }
        }
        Example::Preference { .. } | Example::Unpaired { .. } => {
            return Err(TrainError::Config("SFT takes language-modeling or prompt/completion data, not preference pairs".into()))
        }
    };
    let mut seq = seq;
    if let Some(m) = seq.mask.first_mut() {
        *m = 0; // the first token has nothing before it to predict it from
    }
    Ok(seq)
}

/// Tokenizes, truncates (or skips) and counts. Nothing is dropped without a count.
pub fn tokenize_all(tok: &Tokenizer, tmpl: &ChatTemplate, examples: &[Example], cfg: &SftData) -> Result<(Vec<Seq>, TokenizeReport)> {
    let mut rep = TokenizeReport::default();
    let mut out = Vec::with_capacity(examples.len());
    for ex in examples {
        let mut s = tokenize_example(tok, tmpl, ex, cfg)?;
        if s.ids.len() > cfg.max_seq_len {
            match cfg.truncation.as_str() {
                "skip" => {
                    *rep.skipped.entry("longer than max_seq_len".into()).or_default() += 1;
                    continue;
                }
                "keep_start" => {
                    s.ids.truncate(cfg.max_seq_len);
                    s.mask.truncate(cfg.max_seq_len);
                    rep.truncated += 1;
                }
                other => return Err(TrainError::Config(format!("data.truncation `{other}` is not keep_start or skip"))),
            }
        }
        if !s.mask.contains(&1) {
            *rep.skipped.entry("no trainable token (after truncation)".into()).or_default() += 1;
            continue;
        }
        out.push(s);
        rep.kept += 1;
    }
    Ok((out, rep))
}

/// Best-fit-decreasing packing of sequences into bins of at most `cap` tokens (TRL's "bfd"),
/// deterministic: returns the sequence indices of each bin.
pub fn pack(seqs: &[Seq], cap: usize) -> Vec<Vec<usize>> {
    pack_lengths(&seqs.iter().map(|s| s.ids.len()).collect::<Vec<_>>(), cap)
}

/// [`pack`] over lengths: items longest first (ties by index), each into the fullest bin it fits.
pub fn pack_lengths(lens: &[usize], cap: usize) -> Vec<Vec<usize>> {
    let mut order: Vec<usize> = (0..lens.len()).collect();
    order.sort_by(|&a, &b| lens[b].cmp(&lens[a]).then(a.cmp(&b)));
    let mut bins: Vec<(usize, Vec<usize>)> = vec![]; // (free space, members)
    for i in order {
        let n = lens[i];
        let best = bins.iter_mut().filter(|(free, _)| *free >= n).min_by_key(|(free, _)| *free);
        match best {
            Some((free, members)) => {
                *free -= n;
                members.push(i);
            }
            None => bins.push((cap - n.min(cap), vec![i])),
        }
    }
    bins.into_iter().map(|(_, m)| m).collect()
}

/// A micro-batch of rows, each holding one or (packed) several sequences.
#[derive(Debug, Clone)]
pub struct SeqBatch {
    pub b: usize,
    pub t: usize,
    pub input_ids: Vec<u32>,
    pub positions: Vec<u32>,
    /// Sequence index within its row; `None` when every row holds one sequence.
    pub segments: Option<Vec<u32>>,
    /// Target of position j: the next token of the same sequence.
    pub targets: Vec<u32>,
    /// 1 where the target counts in the loss.
    pub loss_mask: Vec<u8>,
}

impl SeqBatch {
    /// Rows from groups of sequences (one group = one row), right-padded to the longest row.
    pub fn from_rows(seqs: &[Seq], rows: &[Vec<usize>], pad: u32) -> Self {
        let t = rows.iter().map(|r| r.iter().map(|&i| seqs[i].ids.len()).sum::<usize>()).max().unwrap_or(1).max(1);
        let b = rows.len();
        let packed = rows.iter().any(|r| r.len() > 1);
        let mut sb = SeqBatch {
            b,
            t,
            input_ids: vec![pad; b * t],
            positions: vec![0; b * t],
            segments: packed.then(|| vec![u32::MAX; b * t]),
            targets: vec![pad; b * t],
            loss_mask: vec![0; b * t],
        };
        for (r, row) in rows.iter().enumerate() {
            let mut off = r * t;
            for (k, &i) in row.iter().enumerate() {
                let s = &seqs[i];
                for j in 0..s.ids.len() {
                    sb.input_ids[off + j] = s.ids[j];
                    sb.positions[off + j] = j as u32;
                    if let Some(seg) = sb.segments.as_mut() {
                        seg[off + j] = k as u32;
                    }
                    if j + 1 < s.ids.len() {
                        sb.targets[off + j] = s.ids[j + 1];
                        sb.loss_mask[off + j] = s.mask[j + 1];
                    }
                }
                off += s.ids.len();
            }
        }
        sb
    }

    pub fn num_loss_tokens(&self) -> usize {
        self.loss_mask.iter().map(|&m| m as usize).sum()
    }
}

/// Summed negative log-likelihood over the masked targets, and their count.
pub fn masked_nll_sum(lm: &dyn CausalLm, b: &SeqBatch, dev: &Device) -> Result<(Tensor, usize)> {
    let shape = (b.b, b.t);
    let ids = Tensor::from_slice(&b.input_ids, shape, dev)?;
    let pos = Tensor::from_slice(&b.positions, shape, dev)?;
    let seg = match &b.segments {
        Some(s) => Some(Tensor::from_slice(s, shape, dev)?),
        None => None,
    };
    let mut args = ForwardArgs::new(&ids, &pos);
    args.segments = seg.as_ref();
    let logits = lm.forward(&args, None)?; // (B, T, V)
    let targets = Tensor::from_slice(&b.targets, shape, dev)?;
    let mask = Tensor::from_slice(&b.loss_mask, shape, dev)?.to_dtype(DType::F32)?;
    let nll = (token_logprobs(&logits, &targets)?.neg()? * mask)?.sum_all()?;
    Ok((nll, b.num_loss_tokens()))
}

/// A micro-batch of item indices (SFT rows, preference pairs) and, with pretraining-data mixing,
/// pretraining blocks.
pub struct MixedBatch {
    pub idx: Vec<usize>,
    pub ptx: Option<Batch>,
}

/// The data stream of every method that trains on a list of items with optional pretraining-data
/// mixing (SFT, DPO): seeded shuffled indices plus a pretraining batcher, resumable.
pub struct MixedStream {
    pub shuffler: Shuffler,
    pub ptx: Option<Batcher>,
}

impl DataStream for MixedStream {
    type Batch = MixedBatch;
    fn next_batch(&mut self) -> Result<MixedBatch> {
        Ok(MixedBatch { idx: self.shuffler.next_indices(), ptx: self.ptx.as_mut().map(|b| b.next_batch()) })
    }
    fn state(&self) -> serde_json::Value {
        json!({"items": self.shuffler.state(), "ptx": self.ptx.as_ref().map(|b| b.state())})
    }
    fn restore(&mut self, s: &serde_json::Value) -> Result<()> {
        let bad = |e: serde_json::Error| TrainError::Config(format!("bad data state in checkpoint: {e}"));
        self.shuffler.restore(&serde_json::from_value(s["items"].clone()).map_err(bad)?).map_err(TrainError::other)?;
        if let (Some(b), Some(st)) = (self.ptx.as_mut(), s.get("ptx").filter(|v| !v.is_null())) {
            b.restore(&serde_json::from_value(st.clone()).map_err(bad)?).map_err(TrainError::other)?;
        }
        Ok(())
    }
    fn epoch(&self) -> Option<f64> {
        Some(self.shuffler.epoch_f64())
    }
}

/// `loss + coef · ptx_loss` when the batch carries pretraining blocks (logged as `ptx_loss`).
pub fn add_ptx(lm: &dyn CausalLm, dev: &Device, loss: Tensor, ptx: Option<&Batch>, coef: f64, m: &mut Record) -> Result<Tensor> {
    match ptx {
        Some(p) => {
            let ptx_loss = LmStep { lm, device: dev.clone() }.batch_loss(p)?;
            m.insert("ptx_loss".into(), json!(ptx_loss.to_scalar::<f32>()?));
            Ok((loss + (ptx_loss * coef)?)?)
        }
        None => Ok(loss),
    }
}

pub struct SftStep<'a> {
    pub lm: &'a dyn CausalLm,
    pub device: Device,
    pub seqs: &'a [Seq],
    /// Each row: the sequences it holds (one, or several when packed).
    pub rows: &'a [Vec<usize>],
    pub pad: u32,
    pub ptx_coef: f64,
}

impl Step<MixedBatch> for SftStep<'_> {
    fn loss(&mut self, batch: &MixedBatch) -> Result<(Tensor, Record)> {
        let rows: Vec<Vec<usize>> = batch.idx.iter().map(|&i| self.rows[i].clone()).collect();
        let sb = SeqBatch::from_rows(self.seqs, &rows, self.pad);
        let (nll, n) = masked_nll_sum(self.lm, &sb, &self.device)?;
        let sft_loss = (nll / n.max(1) as f64)?;
        let mut m = Record::new();
        m.insert("num_tokens".into(), json!(sb.b * sb.t));
        m.insert("sft_loss".into(), json!(sft_loss.to_scalar::<f32>()?));
        let loss = add_ptx(self.lm, &self.device, sft_loss, batch.ptx.as_ref(), self.ptx_coef, &mut m)?;
        Ok((loss, m))
    }
}

/// The pretraining-data batcher of a `[ptx]` section (none when absent, without files, or with
/// `batch_size = 0`).
pub fn ptx_batcher(tok: &Tokenizer, ptx: Option<&PtxConfig>, max_len: usize, seed: u64) -> Result<Option<Batcher>> {
    match ptx {
        Some(p) if !p.files.is_empty() && p.batch_size > 0 => {
            let seq_len = if p.seq_len == 0 { max_len } else { p.seq_len };
            let ds = align_data::load_pretrain_data(tok, &p.files, "text", seq_len, 0.0).map_err(TrainError::other)?;
            Ok(Some(Batcher::new(ds.train, p.batch_size, seed).map_err(TrainError::other)?))
        }
        _ => Ok(None),
    }
}

/// Rows for `seqs`: packed bins, or one sequence per row.
pub fn make_rows(seqs: &[Seq], cfg: &SftData) -> Vec<Vec<usize>> {
    if cfg.packing {
        pack(seqs, cfg.max_seq_len)
    } else {
        (0..seqs.len()).map(|i| vec![i]).collect()
    }
}

/// Mean masked loss over `seqs` (token-weighted), `batch_size` rows at a time.
pub fn eval_loss(lm: &dyn CausalLm, seqs: &[Seq], batch_size: usize, pad: u32, dev: &Device) -> Result<f64> {
    let (mut sum, mut n) = (0f64, 0usize);
    let rows: Vec<Vec<usize>> = (0..seqs.len()).map(|i| vec![i]).collect();
    for chunk in rows.chunks(batch_size.max(1)) {
        let b = SeqBatch::from_rows(seqs, chunk, pad);
        let (nll, k) = masked_nll_sum(lm, &b, dev)?;
        sum += nll.to_scalar::<f32>()? as f64;
        n += k;
    }
    if n == 0 {
        return Err(TrainError::Config("no held-out tokens to evaluate".into()));
    }
    Ok(sum / n as f64)
}

#[derive(Debug, Clone, Serialize)]
pub struct SftSummary {
    pub steps: u64,
    pub train: TokenizeReport,
    pub eval: TokenizeReport,
    pub read_summary: Vec<String>,
    pub eval_loss_before: f64,
    pub eval_loss: f64,
    pub model_dir: PathBuf,
    pub seconds: f64,
}

/// Training and held-out examples: the held-out files, or else the last `eval_fraction` of the
/// training files' examples (at least one left for training). Logs and returns each file's read
/// report.
pub fn read_train_eval(files: &[PathBuf], eval_files: &[PathBuf], eval_fraction: f64, opts: &ReadOptions) -> Result<(Vec<Example>, Vec<Example>, Vec<String>)> {
    if files.is_empty() {
        return Err(TrainError::Config("data.files is empty".into()));
    }
    let mut summary = vec![];
    let mut train = read_all(files, opts, &mut summary)?;
    let eval = if eval_files.is_empty() {
        let n_eval = ((train.len() as f64) * eval_fraction).round() as usize;
        train.split_off(train.len() - n_eval.min(train.len().saturating_sub(1)))
    } else {
        read_all(eval_files, opts, &mut summary)?
    };
    for s in &summary {
        tracing::info!("{s}");
    }
    Ok((train, eval, summary))
}

/// Reads every file, noting each file's read report in `summaries`.
pub fn read_all(files: &[PathBuf], opts: &ReadOptions, summaries: &mut Vec<String>) -> Result<Vec<Example>> {
    let mut out = vec![];
    for f in files {
        let (ex, rep) = read_examples(f, opts).map_err(TrainError::other)?;
        summaries.push(format!("{}: {}", f.display(), rep.summary()));
        out.extend(ex);
    }
    Ok(out)
}

/// Runs SFT (resuming from the newest checkpoint under `out_dir` when `resume`).
pub fn run(cfg: &SftConfig, resume: bool, resolved: &str) -> Result<SftSummary> {
    let start = std::time::Instant::now();
    let dev = crate::trainer::device_of(&cfg.train)?;
    let tok = Tokenizer::from_dir(&cfg.model).map_err(TrainError::other)?;
    let tmpl = ChatTemplate::from_tokenizer(&tok).map_err(TrainError::other)?;
    let mut model = Model::from_pretrained(&cfg.model, DType::F32, &dev).map_err(TrainError::other)?;
    if let Some(l) = &cfg.lora {
        model.add_lora(l, cfg.train.seed).map_err(TrainError::other)?;
        model.set_training(true);
    }
    let max_len = cfg.data.max_seq_len.min(model.config.max_positions());
    let data_cfg = SftData { max_seq_len: max_len, ..cfg.data.clone() };
    let (train_ex, eval_ex, read_summary) = read_train_eval(&cfg.data.files, &cfg.data.eval_files, cfg.data.eval_fraction, &cfg.data.read)?;
    let (seqs, train_rep) = tokenize_all(&tok, &tmpl, &train_ex, &data_cfg)?;
    let (eval_seqs, eval_rep) = tokenize_all(&tok, &tmpl, &eval_ex, &data_cfg)?;
    tracing::info!(
        "SFT on {} sequences ({} truncated, skipped {:?}), held-out {}",
        train_rep.kept,
        train_rep.truncated,
        train_rep.skipped,
        eval_rep.kept
    );
    let pad = tok.pad_id().or(tok.eos_id()).unwrap_or(0);
    let rows = make_rows(&seqs, &data_cfg);
    let shuffler = Shuffler::new(rows.len(), cfg.data.batch_size.min(rows.len()).max(1), cfg.train.seed, "sft").map_err(TrainError::other)?;
    let ptx = ptx_batcher(&tok, cfg.ptx.as_ref(), max_len, cfg.train.seed)?;
    let mut data = MixedStream { shuffler, ptx };
    let mut step = SftStep { lm: model.lm.as_ref(), device: dev.clone(), seqs: &seqs, rows: &rows, pad, ptx_coef: cfg.ptx.as_ref().map_or(0.0, |p| p.coef) };
    let has_eval = !eval_seqs.is_empty();
    let eval_before = if has_eval { eval_loss(model.lm.as_ref(), &eval_seqs, cfg.data.batch_size, pad, &dev)? } else { f64::NAN };

    let mut trainer = Trainer::new(cfg.train.clone(), model.trainable_vars(), &cfg.out_dir)?;
    let (config_json, model_dir_in, resolved_text) = (model.config_json(), cfg.model.clone(), resolved.to_string());
    trainer.set_checkpoint_hook(move |dir| {
        let tok = Tokenizer::from_dir(&model_dir_in).map_err(TrainError::other)?;
        write_chat_model_files(dir, &config_json, &tok)?;
        align_core::atomic::write_atomic(dir.join("align_config.toml"), resolved_text.as_bytes())?;
        Ok(())
    });
    if resume {
        trainer.resume(&mut step, &mut data)?;
    }
    let bs = cfg.data.batch_size;
    let mut eval = |s: &mut SftStep| eval_loss(s.lm, &eval_seqs, bs, pad, &s.device);
    let summary = trainer.fit(&mut step, &mut data, if has_eval { Some(&mut eval) } else { None })?;
    drop(step);
    model.set_training(false);
    let eval_after = if has_eval { eval_loss(model.lm.as_ref(), &eval_seqs, bs, pad, &dev)? } else { f64::NAN };

    if cfg.lora.is_some() {
        model.save_lora(cfg.out_dir.join("adapter")).map_err(TrainError::other)?;
        model.merge_lora().map_err(TrainError::other)?;
    }
    let model_dir = cfg.out_dir.join("model");
    model.save_pretrained(&model_dir, DType::F32).map_err(TrainError::other)?;
    write_chat_model_files(&model_dir, &model.config_json(), &tok)?;
    align_core::atomic::write_atomic(model_dir.join("align_config.toml"), resolved.as_bytes())?;
    Ok(SftSummary {
        steps: summary.step,
        train: train_rep,
        eval: eval_rep,
        read_summary,
        eval_loss_before: eval_before,
        eval_loss: eval_after,
        model_dir,
        seconds: start.elapsed().as_secs_f64(),
    })
}

/// [`write_model_files`], with the end-of-turn token of ChatML added to the EOS ids of
/// `generation_config.json`, so generation stops at the end of the assistant's turn.
pub fn write_chat_model_files(dir: &std::path::Path, config_json: &serde_json::Value, tok: &Tokenizer) -> Result<()> {
    write_model_files(dir, config_json, tok)?;
    let mut eos: Vec<u32> = tok.eos_ids().to_vec();
    if let Some(end) = tok.token_to_id("<|im_end|>") {
        if !eos.contains(&end) {
            eos.push(end);
        }
    }
    let gen = json!({"bos_token_id": tok.bos_id().or(tok.eos_id()), "eos_token_id": eos, "pad_token_id": tok.pad_id()});
    align_core::atomic::write_atomic(dir.join("generation_config.json"), gen.to_string().as_bytes())?;
    Ok(())
}

/// Loss of sequences one by one, for tests: token-weighted mean of masked NLL.
pub fn unpacked_loss(lm: &dyn CausalLm, seqs: &[Seq], dev: &Device) -> Result<f64> {
    eval_loss(lm, seqs, 1, 0, dev)
}
