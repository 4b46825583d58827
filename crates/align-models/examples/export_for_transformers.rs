//! Writes models saved by align for `scripts/fixtures/verify_saved.py` (the reverse parity check:
//! a model written by align loads in transformers with no missing or unexpected keys and gives
//! the same logits).
//!
//! `cargo run -p align-models --example export_for_transformers -- OUT_DIR`
//! writes OUT_DIR/{llama,mistral,qwen2,gpt2}-{fresh,resaved}/ with `config.json`,
//! `model.safetensors` and `expected.safetensors` (`input_ids` i64, `logits` f32).

use align_models::causal_lm::default_positions;
use align_models::config::{Gpt2Config, LlamaFlavor};
use align_models::{ForwardArgs, Model, ModelConfig};
use candle_core::{DType, Device, Tensor};
use std::path::PathBuf;

fn write(model: &Model, dir: PathBuf) -> anyhow::Result<()> {
    model.save_pretrained(&dir, DType::F32)?;
    let v = model.config.vocab_size() as u32;
    let ids: Vec<u32> = (0..24).map(|i| (i * 7 + 3) % v).collect();
    let input = Tensor::from_vec(ids, (2, 12), &Device::Cpu)?;
    let pos = default_positions(2, 12, 0, &Device::Cpu)?;
    let logits = model.lm.forward(&ForwardArgs::new(&input, &pos), None)?;
    align_models::hf::save_safetensors(
        dir.join("expected.safetensors"),
        &[("input_ids".into(), input.to_dtype(DType::I64)?), ("logits".into(), logits)],
    )?;
    println!("wrote {}", dir.display());
    Ok(())
}

fn main() -> anyhow::Result<()> {
    let out = PathBuf::from(std::env::args().nth(1).unwrap_or_else(|| "target/export".into()));
    let fixtures = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/parity");
    for arch in ["llama", "mistral", "qwen2", "gpt2"] {
        let loaded = Model::from_pretrained(fixtures.join(arch).join("model"), DType::F32, &Device::Cpu)?;
        write(&loaded, out.join(format!("{arch}-resaved")))?;
        let cfg = match arch {
            "gpt2" => ModelConfig::Gpt2(Gpt2Config {
                vocab_size: 96,
                n_embd: 32,
                n_layer: 2,
                n_head: 4,
                n_positions: 64,
                n_inner: None,
                layer_norm_epsilon: 1e-5,
                bos_token_id: None,
                eos_token_id: None,
            }),
            _ => {
                let mut c = align_models::config::llama_from_dims(96, 32, 2, 4, 2, 64);
                c.flavor = match arch {
                    "mistral" => LlamaFlavor::Mistral,
                    "qwen2" => LlamaFlavor::Qwen2,
                    _ => LlamaFlavor::Llama,
                };
                c.qkv_bias = arch == "qwen2";
                c.tie_word_embeddings = arch != "mistral";
                ModelConfig::Llama(c)
            }
        };
        write(&Model::from_config(cfg, 7, &Device::Cpu)?, out.join(format!("{arch}-fresh")))?;
    }
    Ok(())
}
