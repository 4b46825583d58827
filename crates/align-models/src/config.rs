//! Model configs, deserialized straight from HF `config.json` and written back in the same shape.
//!
//! `model_type` picks the architecture: `llama`, `mistral` and `qwen2` share [`LlamaConfig`]
//! (Qwen2 adds q/k/v biases; Mistral's sliding window is accepted and ignored, which is exact
//! while sequences are shorter than the window); `gpt2` has [`Gpt2Config`].

use crate::error::{ModelError, Result};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use std::path::Path;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LlamaFlavor {
    Llama,
    Mistral,
    Qwen2,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LlamaConfig {
    pub flavor: LlamaFlavor,
    pub vocab_size: usize,
    pub hidden_size: usize,
    pub intermediate_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    pub num_key_value_heads: usize,
    pub head_dim: usize,
    pub rms_norm_eps: f64,
    pub rope_theta: f64,
    pub max_position_embeddings: usize,
    pub tie_word_embeddings: bool,
    /// Biases on q/k/v (always true for Qwen2, `attention_bias` for Llama).
    pub qkv_bias: bool,
    /// Bias on o_proj (Llama's `attention_bias` covers it too).
    pub o_bias: bool,
    pub bos_token_id: Option<u32>,
    pub eos_token_id: Option<Value>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Gpt2Config {
    pub vocab_size: usize,
    pub n_embd: usize,
    pub n_layer: usize,
    pub n_head: usize,
    pub n_positions: usize,
    pub n_inner: Option<usize>,
    pub layer_norm_epsilon: f64,
    pub bos_token_id: Option<u32>,
    pub eos_token_id: Option<Value>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum ModelConfig {
    Llama(LlamaConfig),
    Gpt2(Gpt2Config),
}

fn get<'a>(v: &'a Value, key: &str) -> Option<&'a Value> {
    v.get(key).filter(|x| !x.is_null())
}

fn req_usize(v: &Value, key: &str, path: &Path) -> Result<usize> {
    get(v, key)
        .and_then(|x| x.as_u64())
        .map(|x| x as usize)
        .ok_or_else(|| ModelError::Config { path: path.into(), msg: format!("missing or non-integer key `{key}`") })
}

fn opt_f64(v: &Value, key: &str) -> Option<f64> {
    get(v, key).and_then(|x| x.as_f64())
}

fn opt_u32(v: &Value, key: &str) -> Option<u32> {
    get(v, key).and_then(|x| x.as_u64()).map(|x| x as u32)
}

impl ModelConfig {
    /// Reads `config.json`.
    pub fn from_file(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| ModelError::Io { path: path.into(), source: e })?;
        let v: Value = serde_json::from_str(&text)
            .map_err(|e| ModelError::Config { path: path.into(), msg: e.to_string() })?;
        Self::from_value(&v, path)
    }

    /// Parses an HF config object; `path` is only used in error messages.
    pub fn from_value(v: &Value, path: &Path) -> Result<Self> {
        let model_type = get(v, "model_type").and_then(|x| x.as_str()).unwrap_or("");
        let err = |msg: String| ModelError::Config { path: path.into(), msg };
        match model_type {
            "llama" | "mistral" | "qwen2" => {
                let flavor = match model_type {
                    "llama" => LlamaFlavor::Llama,
                    "mistral" => LlamaFlavor::Mistral,
                    _ => LlamaFlavor::Qwen2,
                };
                let hidden = req_usize(v, "hidden_size", path)?;
                let heads = req_usize(v, "num_attention_heads", path)?;
                let kv = get(v, "num_key_value_heads").and_then(|x| x.as_u64()).map(|x| x as usize).unwrap_or(heads);
                if heads == 0 || kv == 0 || heads % kv != 0 {
                    return Err(err(format!("num_attention_heads {heads} is not a multiple of num_key_value_heads {kv}")));
                }
                // transformers >= 5 nests rope settings in `rope_parameters`; older configs use
                // `rope_theta` and `rope_scaling`.
                let rope = get(v, "rope_parameters").or_else(|| get(v, "rope_scaling"));
                if let Some(r) = rope {
                    let kind = r.get("rope_type").or_else(|| r.get("type")).and_then(|x| x.as_str()).unwrap_or("default");
                    if kind != "default" {
                        return Err(err(format!("rope type `{kind}` is not supported (only default RoPE)")));
                    }
                }
                let rope_theta = opt_f64(v, "rope_theta")
                    .or_else(|| rope.and_then(|r| opt_f64(r, "rope_theta")))
                    .unwrap_or(10000.0);
                let bias = get(v, "attention_bias").and_then(|x| x.as_bool()).unwrap_or(false);
                let head_dim = get(v, "head_dim").and_then(|x| x.as_u64()).map(|x| x as usize).unwrap_or(hidden / heads);
                let act = get(v, "hidden_act").and_then(|x| x.as_str()).unwrap_or("silu");
                if act != "silu" {
                    return Err(err(format!("hidden_act `{act}` is not supported (only silu)")));
                }
                Ok(ModelConfig::Llama(LlamaConfig {
                    flavor,
                    vocab_size: req_usize(v, "vocab_size", path)?,
                    hidden_size: hidden,
                    intermediate_size: req_usize(v, "intermediate_size", path)?,
                    num_hidden_layers: req_usize(v, "num_hidden_layers", path)?,
                    num_attention_heads: heads,
                    num_key_value_heads: kv,
                    head_dim,
                    rms_norm_eps: opt_f64(v, "rms_norm_eps").unwrap_or(1e-6),
                    rope_theta,
                    max_position_embeddings: req_usize(v, "max_position_embeddings", path)?,
                    tie_word_embeddings: get(v, "tie_word_embeddings").and_then(|x| x.as_bool()).unwrap_or(false),
                    qkv_bias: flavor == LlamaFlavor::Qwen2 || bias,
                    o_bias: flavor != LlamaFlavor::Qwen2 && bias,
                    bos_token_id: opt_u32(v, "bos_token_id"),
                    eos_token_id: get(v, "eos_token_id").cloned(),
                }))
            }
            "gpt2" => {
                let act = get(v, "activation_function").and_then(|x| x.as_str()).unwrap_or("gelu_new");
                if !matches!(act, "gelu_new" | "gelu_pytorch_tanh") {
                    return Err(err(format!("activation_function `{act}` is not supported (only gelu_new)")));
                }
                Ok(ModelConfig::Gpt2(Gpt2Config {
                    vocab_size: req_usize(v, "vocab_size", path)?,
                    n_embd: req_usize(v, "n_embd", path)?,
                    n_layer: req_usize(v, "n_layer", path)?,
                    n_head: req_usize(v, "n_head", path)?,
                    n_positions: req_usize(v, "n_positions", path)?,
                    n_inner: get(v, "n_inner").and_then(|x| x.as_u64()).map(|x| x as usize),
                    layer_norm_epsilon: opt_f64(v, "layer_norm_epsilon").unwrap_or(1e-5),
                    bos_token_id: opt_u32(v, "bos_token_id"),
                    eos_token_id: get(v, "eos_token_id").cloned(),
                }))
            }
            other => Err(ModelError::UnknownArch { path: path.into(), model_type: other.to_string() }),
        }
    }

    /// The HF `config.json` object for this config (what `save_pretrained` writes).
    pub fn to_hf_json(&self) -> Value {
        match self {
            ModelConfig::Llama(c) => {
                let (model_type, arch) = match c.flavor {
                    LlamaFlavor::Llama => ("llama", "LlamaForCausalLM"),
                    LlamaFlavor::Mistral => ("mistral", "MistralForCausalLM"),
                    LlamaFlavor::Qwen2 => ("qwen2", "Qwen2ForCausalLM"),
                };
                let mut v = json!({
                    "architectures": [arch],
                    "model_type": model_type,
                    "vocab_size": c.vocab_size,
                    "hidden_size": c.hidden_size,
                    "intermediate_size": c.intermediate_size,
                    "num_hidden_layers": c.num_hidden_layers,
                    "num_attention_heads": c.num_attention_heads,
                    "num_key_value_heads": c.num_key_value_heads,
                    "head_dim": c.head_dim,
                    "hidden_act": "silu",
                    "rms_norm_eps": c.rms_norm_eps,
                    "rope_theta": c.rope_theta,
                    "max_position_embeddings": c.max_position_embeddings,
                    "tie_word_embeddings": c.tie_word_embeddings,
                    "bos_token_id": c.bos_token_id,
                    "eos_token_id": c.eos_token_id,
                    "torch_dtype": "float32",
                    "use_cache": true,
                });
                match c.flavor {
                    LlamaFlavor::Qwen2 => {
                        v["use_sliding_window"] = json!(false);
                    }
                    LlamaFlavor::Mistral => {
                        v["sliding_window"] = Value::Null;
                    }
                    LlamaFlavor::Llama => {
                        v["attention_bias"] = json!(c.qkv_bias);
                        v["mlp_bias"] = json!(false);
                    }
                }
                v
            }
            ModelConfig::Gpt2(c) => json!({
                "architectures": ["GPT2LMHeadModel"],
                "model_type": "gpt2",
                "vocab_size": c.vocab_size,
                "n_embd": c.n_embd,
                "n_layer": c.n_layer,
                "n_head": c.n_head,
                "n_positions": c.n_positions,
                "n_inner": c.n_inner,
                "activation_function": "gelu_new",
                "layer_norm_epsilon": c.layer_norm_epsilon,
                "resid_pdrop": 0.0,
                "embd_pdrop": 0.0,
                "attn_pdrop": 0.0,
                "tie_word_embeddings": true,
                "bos_token_id": c.bos_token_id,
                "eos_token_id": c.eos_token_id,
                "torch_dtype": "float32",
                "use_cache": true,
            }),
        }
    }

    pub fn vocab_size(&self) -> usize {
        match self {
            ModelConfig::Llama(c) => c.vocab_size,
            ModelConfig::Gpt2(c) => c.vocab_size,
        }
    }

    pub fn max_positions(&self) -> usize {
        match self {
            ModelConfig::Llama(c) => c.max_position_embeddings,
            ModelConfig::Gpt2(c) => c.n_positions,
        }
    }

    pub fn tied_embeddings(&self) -> bool {
        match self {
            ModelConfig::Llama(c) => c.tie_word_embeddings,
            ModelConfig::Gpt2(_) => true,
        }
    }

    /// Number of parameters (tied embeddings counted once).
    pub fn num_params(&self) -> usize {
        match self {
            ModelConfig::Llama(c) => {
                let (h, i, v) = (c.hidden_size, c.intermediate_size, c.vocab_size);
                let q = c.num_attention_heads * c.head_dim;
                let kv = c.num_key_value_heads * c.head_dim;
                let attn = h * q + 2 * h * kv + q * h
                    + if c.qkv_bias { q + 2 * kv } else { 0 }
                    + if c.o_bias { h } else { 0 };
                let layer = attn + 3 * h * i + 2 * h;
                v * h * if c.tie_word_embeddings { 1 } else { 2 } + c.num_hidden_layers * layer + h
            }
            ModelConfig::Gpt2(c) => {
                let h = c.n_embd;
                let inner = c.n_inner.unwrap_or(4 * h);
                let layer = 2 * 2 * h + (h * 3 * h + 3 * h) + (h * h + h) + (h * inner + inner) + (inner * h + h);
                c.vocab_size * h + c.n_positions * h + c.n_layer * layer + 2 * h
            }
        }
    }
}

/// A small Llama-style config for models trained from scratch (the `tiny` preset of the benches:
/// d_model 256, 4 layers, 4 heads, vocab 4096).
pub fn llama_from_dims(vocab: usize, d_model: usize, layers: usize, heads: usize, kv_heads: usize, ctx: usize) -> LlamaConfig {
    LlamaConfig {
        flavor: LlamaFlavor::Llama,
        vocab_size: vocab,
        hidden_size: d_model,
        intermediate_size: (8 * d_model / 3).div_ceil(64) * 64,
        num_hidden_layers: layers,
        num_attention_heads: heads,
        num_key_value_heads: kv_heads,
        head_dim: d_model / heads,
        rms_norm_eps: 1e-5,
        rope_theta: 10000.0,
        max_position_embeddings: ctx,
        tie_word_embeddings: true,
        qkv_bias: false,
        o_bias: false,
        bos_token_id: None,
        eos_token_id: None,
    }
}
