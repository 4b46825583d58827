//! align-models: trainable causal language models on candle, loaded from and saved to the
//! Hugging Face layout (`config.json` + `*.safetensors`).
//!
//! Read in this order: [`causal_lm`] (the one trait every model implements and its KV cache),
//! [`layers`] (attention, RoPE, norms, MLPs and masks, written once), the architectures
//! [`llama`] (Llama, Mistral, Qwen2) and [`gpt2`], then [`params`] (where weights come from:
//! seeded init or safetensors) and [`hf`] (`from_pretrained` / `save_pretrained`); [`lora`] adds
//! PEFT-compatible LoRA adapters to any linear layer.
//!
//! Every op on the forward path has a backward in candle: candle-nn's fused `softmax_last_dim`,
//! `rms_norm`, `layer_norm`, `rope` and `sdpa` silently drop gradients (see ../shared/CANDLE.md),
//! so f32 on the CPU runs our own fused [`kernels`] (attention in blocks, RMSNorm, RoPE, SwiGLU;
//! each a `CustomOp` with forward and backward), and every other case the layers' composed
//! differentiable primitives, which are also the kernels' test reference.

pub mod causal_lm;
pub mod checkpoint;
pub mod config;
pub mod device;
pub mod error;
pub mod gpt2;
pub mod hf;
pub mod kernels;
pub mod layers;
pub mod llama;
pub mod lora;
pub mod params;
pub mod reward;

pub use causal_lm::{CausalLm, ForwardArgs, KvCache};
pub use config::{Gpt2Config, LlamaConfig, ModelConfig};
pub use error::{ModelError, Result};
pub use hf::Model;
pub use lora::{LoraConfig, TargetModules};
