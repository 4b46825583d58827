//! Stage 1: next-token pretraining of a raw predictor on plain text or JSONL `text` files.
//!
//! documents → tokens + EOS → blocks of `seq_len + 1` → shuffled batches → [`LmStep`] (mean
//! cross-entropy) → the shared [`Trainer`]. The model is built from `[model]` dims (seeded init)
//! or continued from an HF checkpoint (`model.from`). Every checkpoint directory is also a loadable
//! HF model directory (config.json, tokenizer files, the resolved config as `align_config.toml`),
//! and the final model is saved to `OUT_DIR/model`.

use crate::error::{Result, TrainError};
use crate::lm_loss::causal_lm_loss;
use crate::trainer::{DataStream, Step, TrainConfig, Trainer};
use align_core::metrics::Record;
use align_data::{Batch, Batcher, TokenBlocks, Tokenizer};
use align_models::causal_lm::default_positions;
use align_models::config::{llama_from_dims, Gpt2Config};
use align_models::{CausalLm, ForwardArgs, Model, ModelConfig};
use candle_core::{DType, Device, Tensor};
use serde::{Deserialize, Serialize};
use serde_json::json;
use std::path::{Path, PathBuf};

/// `align pretrain` configuration (a TOML file; `--set` overrides keys).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PretrainConfig {
    /// Run directory: metrics.jsonl, checkpoints/, model/.
    pub out_dir: PathBuf,
    /// A directory with `tokenizer.json` (+ `tokenizer_config.json`), e.g. from `align tokenizer train`.
    pub tokenizer: PathBuf,
    pub data: DataConfig,
    #[serde(default)]
    pub model: ModelSpec,
    pub train: TrainConfig,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DataConfig {
    /// `.txt` (one document, or several separated by `<|endoftext|>` lines) or `.jsonl` files.
    pub files: Vec<PathBuf>,
    /// JSONL field holding the text (TRL's language-modeling format: `text`).
    pub text_field: String,
    /// Tokens per training sequence (nanoGPT `block_size`).
    pub seq_len: usize,
    /// Sequences per micro-batch.
    pub batch_size: usize,
    /// Held-out share of the documents (of the tokens when there is one document).
    pub eval_fraction: f64,
    /// Held-out batches per evaluation; 0 = the whole held-out split.
    pub eval_batches: usize,
}

impl Default for DataConfig {
    fn default() -> Self {
        Self { files: vec![], text_field: "text".into(), seq_len: 256, batch_size: 8, eval_fraction: 0.1, eval_batches: 0 }
    }
}

/// The model: continued from an HF directory (`from`), or built from dims with a seeded init.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ModelSpec {
    /// An HF model directory to continue pretraining from; the dims below are then ignored.
    pub from: Option<PathBuf>,
    /// "llama" (RMSNorm, RoPE, SwiGLU; the default) or "gpt2".
    pub arch: String,
    pub d_model: usize,
    pub n_layers: usize,
    pub n_heads: usize,
    /// Key/value heads (grouped-query attention); 0 = `n_heads`.
    pub n_kv_heads: usize,
    /// Context length (`max_position_embeddings`); 0 = `data.seq_len`.
    pub context: usize,
}

impl Default for ModelSpec {
    fn default() -> Self {
        Self { from: None, arch: "llama".into(), d_model: 256, n_layers: 4, n_heads: 4, n_kv_heads: 0, context: 0 }
    }
}

impl ModelSpec {
    /// The HF config for a fresh model over `vocab` tokens.
    pub fn model_config(&self, vocab: usize, seq_len: usize, tok: &Tokenizer) -> Result<ModelConfig> {
        let ctx = if self.context == 0 { seq_len } else { self.context };
        if self.n_heads == 0 || self.d_model % self.n_heads != 0 {
            return Err(TrainError::Config(format!("model.d_model {} must be a multiple of model.n_heads {}", self.d_model, self.n_heads)));
        }
        let bos = tok.bos_id().or(tok.eos_id());
        let eos = tok.eos_id().map(|e| json!(e));
        match self.arch.as_str() {
            "llama" => {
                let kv = if self.n_kv_heads == 0 { self.n_heads } else { self.n_kv_heads };
                if self.n_heads % kv != 0 {
                    return Err(TrainError::Config(format!("model.n_heads {} must be a multiple of model.n_kv_heads {kv}", self.n_heads)));
                }
                let mut c = llama_from_dims(vocab, self.d_model, self.n_layers, self.n_heads, kv, ctx);
                c.bos_token_id = bos;
                c.eos_token_id = eos;
                Ok(ModelConfig::Llama(c))
            }
            "gpt2" => Ok(ModelConfig::Gpt2(Gpt2Config {
                vocab_size: vocab,
                n_embd: self.d_model,
                n_layer: self.n_layers,
                n_head: self.n_heads,
                n_positions: ctx,
                n_inner: None,
                layer_norm_epsilon: 1e-5,
                bos_token_id: bos,
                eos_token_id: eos,
            })),
            other => Err(TrainError::Config(format!("model.arch `{other}` is not one of llama, gpt2"))),
        }
    }
}

/// One micro-batch of next-token prediction: mean cross-entropy over every position.
pub struct LmStep<'a> {
    pub lm: &'a dyn CausalLm,
    pub device: Device,
}

impl LmStep<'_> {
    pub fn batch_loss(&self, batch: &Batch) -> Result<Tensor> {
        let ids = Tensor::from_slice(&batch.input_ids, (batch.b, batch.t), &self.device)?;
        let targets = Tensor::from_slice(&batch.targets, (batch.b, batch.t), &self.device)?;
        let pos = default_positions(batch.b, batch.t, 0, &self.device)?;
        let logits = self.lm.forward(&ForwardArgs::new(&ids, &pos), None)?; // (B, T, V)
        Ok(causal_lm_loss(&logits, &targets, None)?)
    }

    /// Mean loss over held-out batches (weighted by tokens).
    pub fn eval_loss(&self, blocks: &TokenBlocks, batch_size: usize, max_batches: usize) -> Result<f64> {
        let (mut sum, mut n) = (0f64, 0usize);
        let limit = if max_batches == 0 { usize::MAX } else { max_batches };
        for batch in blocks.eval_batches(batch_size).take(limit) {
            let l = self.batch_loss(&batch)?.to_scalar::<f32>()? as f64;
            sum += l * (batch.b * batch.t) as f64;
            n += batch.b * batch.t;
        }
        if n == 0 {
            return Err(TrainError::Config("the held-out split has no whole block: lower data.seq_len or raise data.eval_fraction".into()));
        }
        Ok(sum / n as f64)
    }
}

impl Step<Batch> for LmStep<'_> {
    fn loss(&mut self, batch: &Batch) -> Result<(Tensor, Record)> {
        let loss = self.batch_loss(batch)?;
        let mut m = Record::new();
        m.insert("num_tokens".into(), json!(batch.b * batch.t));
        Ok((loss, m))
    }
}

/// The [`Batcher`] as a resumable [`DataStream`].
pub struct BatchStream(pub Batcher);

impl DataStream for BatchStream {
    type Batch = Batch;
    fn next_batch(&mut self) -> Result<Batch> {
        Ok(self.0.next_batch())
    }
    fn state(&self) -> serde_json::Value {
        serde_json::to_value(self.0.state()).unwrap_or(serde_json::Value::Null)
    }
    fn restore(&mut self, s: &serde_json::Value) -> Result<()> {
        let st = serde_json::from_value(s.clone()).map_err(|e| TrainError::Config(format!("bad data state in checkpoint: {e}")))?;
        self.0.restore(&st).map_err(TrainError::other)
    }
    fn epoch(&self) -> Option<f64> {
        Some(self.0.epoch() as f64)
    }
}

/// Unigram entropy of a token stream, in nats: the loss of a model that ignores context.
pub fn unigram_entropy(tokens: &[u32]) -> f64 {
    let mut counts = std::collections::HashMap::<u32, u64>::new();
    for &t in tokens {
        *counts.entry(t).or_default() += 1;
    }
    let n = tokens.len() as f64;
    counts.values().map(|&c| {
        let p = c as f64 / n;
        -p * p.ln()
    }).sum()
}

#[derive(Debug, Clone, Serialize)]
pub struct PretrainSummary {
    pub steps: u64,
    pub params: usize,
    pub train_tokens: usize,
    pub final_train_loss: Option<f64>,
    pub eval_loss: f64,
    pub unigram_entropy: f64,
    pub model_dir: PathBuf,
    pub seconds: f64,
}

/// Writes what makes a directory a loadable HF model besides the weights: config.json,
/// generation_config.json and the tokenizer files.
pub fn write_model_files(dir: &Path, config_json: &serde_json::Value, tok: &Tokenizer) -> Result<()> {
    let cfg = serde_json::to_string_pretty(config_json).map_err(TrainError::other)?;
    align_core::atomic::write_atomic(dir.join("config.json"), cfg.as_bytes())?;
    let gen = json!({"bos_token_id": tok.bos_id().or(tok.eos_id()), "eos_token_id": tok.eos_id(), "pad_token_id": tok.pad_id()});
    align_core::atomic::write_atomic(dir.join("generation_config.json"), gen.to_string().as_bytes())?;
    tok.save_dir(dir).map_err(TrainError::other)
}

/// Runs pretraining (resuming from the newest checkpoint under `out_dir` when `resume`).
/// `resolved` is the resolved config as TOML text, saved beside every checkpoint.
pub fn run(cfg: &PretrainConfig, resume: bool, resolved: &str) -> Result<PretrainSummary> {
    let start = std::time::Instant::now();
    let dev = crate::trainer::device_of(&cfg.train)?;
    let tok = Tokenizer::from_dir(&cfg.tokenizer).map_err(TrainError::other)?;
    if cfg.data.files.is_empty() {
        return Err(TrainError::Config("data.files is empty: give the text or JSONL files to pretrain on".into()));
    }
    let ds = align_data::load_pretrain_data(&tok, &cfg.data.files, &cfg.data.text_field, cfg.data.seq_len, cfg.data.eval_fraction)
        .map_err(TrainError::other)?;
    let model = match &cfg.model.from {
        Some(dir) => Model::from_pretrained(dir, DType::F32, &dev).map_err(TrainError::other)?,
        None => {
            let mc = cfg.model.model_config(tok.vocab_size(), cfg.data.seq_len, &tok)?;
            Model::from_config(mc, cfg.train.seed, &dev)
                .map_err(TrainError::other)?
        }
    };
    if model.config.vocab_size() < tok.vocab_size() {
        return Err(TrainError::Config(format!(
            "the model's vocab_size {} is smaller than the tokenizer's {}",
            model.config.vocab_size(),
            tok.vocab_size()
        )));
    }
    if cfg.data.seq_len > model.config.max_positions() {
        return Err(TrainError::Config(format!(
            "data.seq_len {} exceeds the model's context {}",
            cfg.data.seq_len,
            model.config.max_positions()
        )));
    }
    let params = model.num_params();
    let train_tokens = ds.train.tokens().len();
    let entropy = unigram_entropy(ds.train.tokens());
    tracing::info!(
        "pretraining {params} parameters on {train_tokens} tokens ({} blocks of {}), held-out {} tokens; unigram entropy {entropy:.3} nats",
        ds.train.len(),
        cfg.data.seq_len,
        ds.eval.tokens().len()
    );

    let mut trainer = Trainer::new(cfg.train.clone(), model.vars(), &cfg.out_dir)?;
    let (config_json, tok_dir, resolved_text) = (model.config_json(), cfg.tokenizer.clone(), resolved.to_string());
    trainer.set_checkpoint_hook(move |dir| {
        let tok = Tokenizer::from_dir(&tok_dir).map_err(TrainError::other)?;
        write_model_files(dir, &config_json, &tok)?;
        align_core::atomic::write_atomic(dir.join("align_config.toml"), resolved_text.as_bytes())?;
        Ok(())
    });
    let mut data = BatchStream(Batcher::new(ds.train.clone(), cfg.data.batch_size, cfg.train.seed).map_err(TrainError::other)?);
    let mut step = LmStep { lm: model.lm.as_ref(), device: dev.clone() };
    if resume {
        match trainer.resume(&mut step, &mut data)? {
            Some(s) => tracing::info!("resuming at step {s}"),
            None => tracing::info!("no checkpoint under {}: starting fresh", cfg.out_dir.display()),
        }
    }
    let (eval_blocks, bs, nb) = (ds.eval.clone(), cfg.data.batch_size, cfg.data.eval_batches);
    let has_eval = !eval_blocks.is_empty();
    let mut eval = |s: &mut LmStep| s.eval_loss(&eval_blocks, bs, nb);
    let summary = trainer.fit(&mut step, &mut data, if has_eval { Some(&mut eval) } else { None })?;
    let eval_loss = if has_eval { step.eval_loss(&ds.eval, bs, nb)? } else { f64::NAN };

    let model_dir = cfg.out_dir.join("model");
    model.save_pretrained(&model_dir, DType::F32).map_err(TrainError::other)?;
    write_model_files(&model_dir, &model.config_json(), &tok)?;
    align_core::atomic::write_atomic(model_dir.join("align_config.toml"), resolved.as_bytes())?;
    Ok(PretrainSummary {
        steps: summary.step,
        params,
        train_tokens,
        final_train_loss: summary.last_loss,
        eval_loss,
        unigram_entropy: entropy,
        model_dir,
        seconds: start.elapsed().as_secs_f64(),
    })
}
