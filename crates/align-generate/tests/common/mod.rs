//! The small random models and prompts the generator tests share.

use align_models::config::llama_from_dims;
use align_models::{Gpt2Config, Model, ModelConfig};
use candle_core::Device;

pub const VOCAB: usize = 64;

/// A 2-layer Llama (GQA: 4 heads, 2 key/value heads) with context `ctx`, seed 7.
pub fn llama(ctx: usize) -> Model {
    Model::from_config(ModelConfig::Llama(llama_from_dims(VOCAB, 32, 2, 4, 2, ctx)), 7, &Device::Cpu).unwrap()
}

/// A 2-layer GPT-2 with context `ctx`, seed 11.
pub fn gpt2(ctx: usize) -> Model {
    let cfg = Gpt2Config {
        vocab_size: VOCAB,
        n_embd: 32,
        n_layer: 2,
        n_head: 4,
        n_positions: ctx,
        n_inner: None,
        layer_norm_epsilon: 1e-5,
        bos_token_id: None,
        eos_token_id: None,
    };
    Model::from_config(ModelConfig::Gpt2(cfg), 11, &Device::Cpu).unwrap()
}

/// Prompts of different lengths, so that left padding is exercised.
pub fn prompts() -> Vec<Vec<u32>> {
    vec![vec![5, 9, 2], vec![1, 2, 3, 4, 5, 6, 7, 8, 9], vec![42], vec![7, 7, 30, 31, 12]]
}
