//! [`RewardModel`]: a causal-LM backbone with a scalar head (`score`, no bias), read at the last
//! non-padding token of each row: transformers' `*ForSequenceClassification` with `num_labels = 1`.
//!
//! The layout on disk is HF's: `config.json` with `architectures: ["LlamaForSequenceClassification"]`
//! (or Qwen2 / Mistral / GPT2), `num_labels` 1 and `pad_token_id`; weights `model.*` (GPT-2:
//! `transformer.*`) plus `score.weight` (1, hidden) and no `lm_head.weight`. transformers finds the
//! scored token as the last one that is not `pad_token_id`; we take explicit row lengths (right
//! padding), which agree as long as a sequence does not end in the pad token.

use crate::causal_lm::{default_positions, ForwardArgs};
use crate::config::{LlamaFlavor, ModelConfig};
use crate::error::{ModelError, Result};
use crate::hf::Model;
use candle_core::{DType, Device, Tensor, Var};
use rand_distr::Distribution;
use std::path::Path;

/// The head's key in HF checkpoints.
pub const SCORE_KEY: &str = "score.weight";

pub struct RewardModel {
    pub model: Model,
    /// (1, hidden): the scalar head.
    pub score: Var,
}

/// HF's `*ForSequenceClassification` class for a backbone config.
pub fn seq_cls_architecture(config: &ModelConfig) -> &'static str {
    match config {
        ModelConfig::Llama(c) => match c.flavor {
            LlamaFlavor::Llama => "LlamaForSequenceClassification",
            LlamaFlavor::Mistral => "MistralForSequenceClassification",
            LlamaFlavor::Qwen2 => "Qwen2ForSequenceClassification",
        },
        ModelConfig::Gpt2(_) => "GPT2ForSequenceClassification",
    }
}

impl RewardModel {
    /// A fresh head on `model`: normal(0, 1/sqrt(hidden + 1)) (TRL's reward-head init), drawn from
    /// `fork(seed, "score.weight")`.
    pub fn from_causal_lm(model: Model, seed: u64) -> Result<Self> {
        let h = model.lm.hidden_size();
        let std = 1.0 / ((h + 1) as f32).sqrt();
        let mut rng = align_core::seed::fork(seed, SCORE_KEY);
        let normal = rand_distr::Normal::new(0f32, std).map_err(|e| ModelError::Input(e.to_string()))?;
        let data: Vec<f32> = (0..h).map(|_| normal.sample(&mut rng)).collect();
        let score = Var::from_tensor(&Tensor::from_vec(data, (1, h), &model.device)?.to_dtype(model.dtype)?)?;
        Ok(Self { model, score })
    }

    /// Loads an HF sequence-classification checkpoint (`score.weight` must be present, (1, hidden)).
    pub fn from_pretrained(dir: impl AsRef<Path>, dtype: DType, device: &Device) -> Result<Self> {
        let dir = dir.as_ref();
        match Self::load_or_init(dir, 0, dtype, device)? {
            (rm, true) => Ok(rm),
            (_, false) => Err(ModelError::MissingKey { path: dir.join("model.safetensors"), key: SCORE_KEY.into() }),
        }
    }

    /// Loads a reward model, or a causal LM with a fresh seeded head ([`Self::from_causal_lm`]).
    /// The flag says whether the head came from the checkpoint.
    pub fn load_or_init(dir: impl AsRef<Path>, seed: u64, dtype: DType, device: &Device) -> Result<(Self, bool)> {
        let dir = dir.as_ref();
        let (model, mut heads) = Model::from_pretrained_backbone(dir, &[SCORE_KEY], dtype, device)?;
        match heads.remove(SCORE_KEY) {
            Some(t) => {
                let h = model.lm.hidden_size();
                if t.dims() != [1, h] {
                    return Err(ModelError::Shape {
                        path: dir.join("model.safetensors"),
                        key: SCORE_KEY.into(),
                        expected: vec![1, h],
                        got: t.dims().to_vec(),
                    });
                }
                let score = Var::from_tensor(&t.to_dtype(dtype)?.to_device(device)?)?;
                Ok((Self { model, score }, true))
            }
            None => Ok((Self::from_causal_lm(model, seed)?, false)),
        }
    }

    /// The parameters a reward model trains and saves, by HF name: the backbone without the LM
    /// head, plus `score.weight`.
    pub fn vars(&self) -> Vec<(String, Var)> {
        let mut v: Vec<(String, Var)> = self.model.vars().into_iter().filter(|(k, _)| k != "lm_head.weight").collect();
        v.push((SCORE_KEY.into(), self.score.clone()));
        v
    }

    /// Rewards of right-padded rows: `ids` (B, T) u32, `lengths[b]` real tokens in row b (≥ 1).
    /// Returns (B,) f32, the head applied to the hidden state of token `lengths[b] - 1`.
    pub fn forward(&self, ids: &Tensor, lengths: &[usize]) -> Result<Tensor> {
        let (b, t) = ids.dims2()?;
        if lengths.len() != b || lengths.iter().any(|&n| n == 0 || n > t) {
            return Err(ModelError::Input(format!("reward forward: lengths {lengths:?} do not fit ids of shape ({b}, {t})")));
        }
        let dev = ids.device();
        let pos = default_positions(b, t, 0, dev)?;
        let mask: Vec<u8> = lengths.iter().flat_map(|&n| (0..t).map(move |j| u8::from(j < n))).collect();
        let mask = Tensor::from_vec(mask, (b, t), dev)?;
        let mut args = ForwardArgs::new(ids, &pos);
        args.key_mask = Some(&mask);
        let hidden = self.model.lm.forward_hidden(&args, None)?; // (B, T, C)
        let c = hidden.dim(2)?;
        let last: Vec<u32> = lengths.iter().enumerate().map(|(i, &n)| (i * t + n - 1) as u32).collect();
        let last = Tensor::from_vec(last, b, dev)?;
        let h_last = hidden.reshape((b * t, c))?.index_select(&last, 0)?; // (B, C)
        let r = h_last.matmul(&self.score.as_tensor().t()?)?; // (B, 1)
        Ok(r.squeeze(1)?.to_dtype(DType::F32)?)
    }

    /// The `config.json` of the sequence-classification model.
    pub fn config_json(&self, pad_token_id: u32) -> serde_json::Value {
        let mut cfg = self.model.config_json();
        cfg["architectures"] = serde_json::json!([seq_cls_architecture(&self.model.config)]);
        cfg["num_labels"] = serde_json::json!(1);
        cfg["id2label"] = serde_json::json!({"0": "LABEL_0"});
        cfg["label2id"] = serde_json::json!({"LABEL_0": 0});
        cfg["pad_token_id"] = serde_json::json!(pad_token_id);
        cfg
    }

    /// Writes `config.json` and `model.safetensors` (backbone without `lm_head.weight`, plus
    /// `score.weight`) so that `AutoModelForSequenceClassification.from_pretrained(dir)` loads it
    /// with no missing or unexpected keys. `pad_token_id` is how transformers finds the scored token.
    pub fn save_pretrained(&self, dir: impl AsRef<Path>, dtype: DType, pad_token_id: u32) -> Result<()> {
        crate::hf::save_hf_dir(dir.as_ref(), self.config_json(pad_token_id), &self.vars(), dtype)
    }
}
