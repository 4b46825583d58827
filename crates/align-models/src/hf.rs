//! [`Model`]: a causal LM with its config and trainable parameters, loaded from and saved to the
//! Hugging Face layout (`config.json`, `model.safetensors` or sharded
//! `model.safetensors.index.json`), so `AutoModelForCausalLM.from_pretrained` reads what we write.

use crate::causal_lm::CausalLm;
use crate::config::ModelConfig;
use crate::error::{ModelError, Result};
use crate::params::{Backend, ParamStore, Source};
use candle_core::{DType, Device, Tensor, Var};
use candle_nn::VarBuilder;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Standard deviation of the seeded init (HF's `initializer_range` default).
pub const INIT_STD: f64 = 0.02;

pub struct Model {
    pub config: ModelConfig,
    pub lm: Box<dyn CausalLm>,
    store: Arc<ParamStore>,
    pub device: Device,
    pub dtype: DType,
    /// `config.json` as read, so that saving keeps fields align does not interpret.
    raw_config: Option<serde_json::Value>,
    /// Linear layers by module name and LoRA adapters (see `crate::lora`).
    pub(crate) lora: crate::lora::LoraState,
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> ModelError + '_ {
    move |e| ModelError::Io { path: path.to_path_buf(), source: e }
}

/// Builds the architecture; also returns its linear layers (for LoRA).
fn build(
    config: &ModelConfig,
    store: &Arc<ParamStore>,
    dtype: DType,
    dev: &Device,
) -> Result<(Box<dyn CausalLm>, Vec<crate::lora::LinearInfo>)> {
    let vb = VarBuilder::from_backend(Box::new(Backend(store.clone())), dtype, dev.clone());
    let (lm, linears) = crate::lora::collect_linears(|| -> candle_core::Result<Box<dyn CausalLm>> {
        Ok(match config {
            ModelConfig::Llama(c) => Box::new(crate::llama::Llama::new(vb, c)?),
            ModelConfig::Gpt2(c) => Box::new(crate::gpt2::Gpt2::new(vb, c)?),
        })
    });
    Ok((lm.map_err(|e| store.build_error(e))?, linears))
}

/// Checkpoint keys that are buffers, not parameters, in some HF versions.
fn is_ignorable(key: &str, config: &ModelConfig) -> bool {
    key.ends_with("rotary_emb.inv_freq")
        || key.ends_with(".attn.bias")
        || key.ends_with(".attn.masked_bias")
        || (key == "lm_head.weight" && config.tied_embeddings())
}

impl Model {
    /// A fresh model with seeded weights: normal(0, 0.02) matrices, unit norms, zero biases.
    pub fn from_config(config: ModelConfig, seed: u64, device: &Device) -> Result<Self> {
        let store = ParamStore::new(Source::Init { seed, std: INIT_STD });
        let (lm, linears) = build(&config, &store, DType::F32, device)?;
        let lora = crate::lora::LoraState::new(linears, None);
        Ok(Self { config, lm, store, device: device.clone(), dtype: DType::F32, raw_config: None, lora })
    }

    /// Loads `dir/config.json` and its safetensors (single file or sharded). Weights stored in
    /// bf16/f16 are converted to `dtype` (f32 for training).
    pub fn from_pretrained(dir: impl AsRef<Path>, dtype: DType, device: &Device) -> Result<Self> {
        Ok(Self::load(dir.as_ref(), dtype, device, &[])?.0)
    }

    /// Loads the backbone of a checkpoint with a head other than the LM head (HF
    /// `*ForSequenceClassification`: `model.*` + `score.weight`, no `lm_head.weight`). The tensors
    /// named in `head_keys` are returned instead of being unexpected keys; a missing untied
    /// `lm_head.weight` is replaced by zeros (a placeholder: the backbone's hidden states do not
    /// use it). `head_keys` are matched before GPT-2's `transformer.` prefix is added.
    pub fn from_pretrained_backbone(
        dir: impl AsRef<Path>,
        head_keys: &[&str],
        dtype: DType,
        device: &Device,
    ) -> Result<(Self, BTreeMap<String, Tensor>)> {
        Self::load(dir.as_ref(), dtype, device, head_keys)
    }

    fn load(dir: &Path, dtype: DType, device: &Device, head_keys: &[&str]) -> Result<(Self, BTreeMap<String, Tensor>)> {
        let cfg_path = dir.join("config.json");
        let text = std::fs::read_to_string(&cfg_path).map_err(io(&cfg_path))?;
        let raw: serde_json::Value = serde_json::from_str(&text)
            .map_err(|e| ModelError::Config { path: cfg_path.clone(), msg: e.to_string() })?;
        let config = ModelConfig::from_value(&raw, &cfg_path)?;
        let files = weight_files(dir)?;
        let mut tensors = BTreeMap::new();
        let mut origin = BTreeMap::new();
        let mut heads = BTreeMap::new();
        for f in &files {
            let bytes = std::fs::read(f).map_err(io(f))?;
            let loaded = candle_core::safetensors::load_buffer(&bytes, &Device::Cpu)
                .map_err(|e| ModelError::Safetensors { path: f.clone(), msg: e.to_string() })?;
            for (k, t) in loaded {
                if head_keys.contains(&k.as_str()) {
                    heads.insert(k, t);
                    continue;
                }
                // Old GPT-2 checkpoints name weights without the `transformer.` prefix.
                let k = match &config {
                    ModelConfig::Gpt2(_) if !k.starts_with("transformer.") && !k.starts_with("lm_head") => {
                        format!("transformer.{k}")
                    }
                    _ => k,
                };
                origin.insert(k.clone(), f.clone());
                tensors.insert(k, t);
            }
        }
        if !head_keys.is_empty() && !config.tied_embeddings() && !tensors.contains_key("lm_head.weight") {
            if let ModelConfig::Llama(c) = &config {
                tensors.insert("lm_head.weight".into(), Tensor::zeros((c.vocab_size, c.hidden_size), DType::F32, &Device::Cpu)?);
            }
        }
        let default_file = if files.len() == 1 { files[0].clone() } else { dir.join("model.safetensors.index.json") };
        let store = ParamStore::new(Source::Tensors { tensors, origin, default_file });
        let (lm, linears) = build(&config, &store, dtype, device)?;
        let unused: Vec<String> = store.unused_keys().into_iter().filter(|k| !is_ignorable(k, &config)).collect();
        if !unused.is_empty() {
            return Err(ModelError::UnexpectedKeys { path: files[0].clone(), keys: unused.join(", ") });
        }
        let lora = crate::lora::LoraState::new(linears, Some(dir));
        Ok((Self { config, lm, store, device: device.clone(), dtype, raw_config: Some(raw), lora }, heads))
    }

    /// The base model's parameters by HF name, sorted (what `save_pretrained` writes). With LoRA
    /// attached these are frozen: train [`Model::trainable_vars`] instead.
    pub fn vars(&self) -> Vec<(String, Var)> {
        self.store.vars()
    }

    pub fn num_params(&self) -> usize {
        self.vars().iter().map(|(_, v)| v.elem_count()).sum()
    }

    /// The HF config object this model saves.
    pub fn config_json(&self) -> serde_json::Value {
        let mut v = self.config.to_hf_json();
        if let (Some(raw), Some(obj)) = (&self.raw_config, v.as_object_mut()) {
            // Keep fields we do not interpret (e.g. `pad_token_id`, `transformers_version`).
            if let Some(r) = raw.as_object() {
                for (k, x) in r {
                    obj.entry(k.clone()).or_insert_with(|| x.clone());
                }
            }
        }
        v
    }

    /// Writes `config.json` and `model.safetensors` into `dir` (each file atomically), with weights
    /// in `dtype` (F32, BF16 or F16). Tied weights are stored once, as transformers does.
    pub fn save_pretrained(&self, dir: impl AsRef<Path>, dtype: DType) -> Result<()> {
        save_hf_dir(dir.as_ref(), self.config_json(), &self.vars(), dtype)
    }

    /// Replaces parameter values from a safetensors file written by [`save_safetensors`] (a
    /// checkpoint): every parameter must be present with its shape.
    pub fn load_weights(&self, path: impl AsRef<Path>) -> Result<()> {
        let path = path.as_ref();
        let bytes = std::fs::read(path).map_err(io(path))?;
        let loaded = candle_core::safetensors::load_buffer(&bytes, &Device::Cpu)
            .map_err(|e| ModelError::Safetensors { path: path.into(), msg: e.to_string() })?;
        for (k, var) in self.vars() {
            let t = loaded.get(&k).ok_or_else(|| ModelError::MissingKey { path: path.into(), key: k.clone() })?;
            if t.dims() != var.dims() {
                return Err(ModelError::Shape { path: path.into(), key: k, expected: var.dims().to_vec(), got: t.dims().to_vec() });
            }
            var.set(&t.to_dtype(var.dtype())?.to_device(&self.device)?)?;
        }
        Ok(())
    }
}

/// Writes an HF model directory: `config.json` (with `torch_dtype`/`dtype` set) and
/// `model.safetensors` holding `vars` converted to `dtype`, each file atomically.
pub fn save_hf_dir(dir: &Path, mut cfg: serde_json::Value, vars: &[(String, Var)], dtype: DType) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(io(dir))?;
    let name = match dtype {
        DType::BF16 => "bfloat16",
        DType::F16 => "float16",
        _ => "float32",
    };
    cfg["torch_dtype"] = serde_json::json!(name);
    cfg["dtype"] = serde_json::json!(name);
    let text = serde_json::to_string_pretty(&cfg).map_err(|e| ModelError::Input(e.to_string()))?;
    align_core::atomic::write_atomic(dir.join("config.json"), text.as_bytes())?;
    let tensors: Vec<(String, Tensor)> = vars
        .iter()
        .map(|(k, v)| Ok((k.clone(), v.as_tensor().to_dtype(dtype)?.to_device(&Device::Cpu)?)))
        .collect::<Result<_>>()?;
    save_safetensors(dir.join("model.safetensors"), &tensors)
}

/// Serializes named tensors to a safetensors file atomically, with `{"format": "pt"}` metadata
/// (transformers refuses files without it).
pub fn save_safetensors(path: impl AsRef<Path>, tensors: &[(String, Tensor)]) -> Result<()> {
    let path = path.as_ref();
    let contiguous: Vec<(String, Tensor)> =
        tensors.iter().map(|(k, t)| Ok((k.clone(), t.contiguous()?))).collect::<Result<_>>()?;
    let meta = std::collections::HashMap::from([("format".to_string(), "pt".to_string())]);
    let bytes = safetensors::serialize(contiguous.iter().map(|(k, t)| (k.as_str(), t)), Some(meta))
        .map_err(|e| ModelError::Safetensors { path: path.into(), msg: e.to_string() })?;
    align_core::atomic::write_atomic(path, &bytes)?;
    Ok(())
}

/// The weight files of a checkpoint directory: `model.safetensors`, or the shards named by
/// `model.safetensors.index.json`.
pub fn weight_files(dir: &Path) -> Result<Vec<PathBuf>> {
    let single = dir.join("model.safetensors");
    if single.exists() {
        return Ok(vec![single]);
    }
    let index = dir.join("model.safetensors.index.json");
    if index.exists() {
        let text = std::fs::read_to_string(&index).map_err(io(&index))?;
        let v: serde_json::Value = serde_json::from_str(&text)
            .map_err(|e| ModelError::Config { path: index.clone(), msg: e.to_string() })?;
        let map = v.get("weight_map").and_then(|m| m.as_object()).ok_or_else(|| ModelError::Config {
            path: index.clone(),
            msg: "missing `weight_map`".into(),
        })?;
        let mut files: Vec<PathBuf> = map.values().filter_map(|f| f.as_str()).map(|f| dir.join(f)).collect();
        files.sort();
        files.dedup();
        return Ok(files);
    }
    Err(ModelError::Io {
        path: single,
        source: std::io::Error::new(std::io::ErrorKind::NotFound, "no model.safetensors or model.safetensors.index.json"),
    })
}
