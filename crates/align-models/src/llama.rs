//! The Llama family: Llama 2/3, Mistral, SmolLM and Qwen2 (Touvron et al. 2023; Jiang et al. 2023;
//! Qwen2 2024). Pre-norm decoder blocks of RMSNorm → attention with RoPE and grouped-query heads →
//! RMSNorm → SwiGLU MLP, then a final RMSNorm and an LM head that may share the embedding matrix.
//! Qwen2 differs only in biases on q/k/v; Mistral only in its (ignored) sliding window.
//! Field names mirror HF's module tree, so `vb.pp(...)` spells the safetensors keys.

use crate::causal_lm::{CausalLm, ForwardArgs, KvCache};
use crate::config::LlamaConfig;
use crate::layers::attention::{attend, split_heads};
use crate::layers::linear::Linear;
use crate::layers::mask::attention_bias;
use crate::layers::mlp::SwiGlu;
use crate::layers::norm::RmsNorm;
use crate::layers::rope::{apply_rope, Rope};
use candle_core::{Module, Result, Tensor};
use candle_nn::VarBuilder;

#[derive(Clone)]
struct SelfAttention {
    q_proj: Linear,
    k_proj: Linear,
    v_proj: Linear,
    o_proj: Linear,
    heads: usize,
    kv_heads: usize,
    head_dim: usize,
}

impl SelfAttention {
    fn new(vb: VarBuilder, c: &LlamaConfig) -> Result<Self> {
        let (h, d) = (c.hidden_size, c.head_dim);
        Ok(Self {
            q_proj: Linear::new(vb.pp("q_proj"), h, c.num_attention_heads * d, c.qkv_bias)?,
            k_proj: Linear::new(vb.pp("k_proj"), h, c.num_key_value_heads * d, c.qkv_bias)?,
            v_proj: Linear::new(vb.pp("v_proj"), h, c.num_key_value_heads * d, c.qkv_bias)?,
            o_proj: Linear::new(vb.pp("o_proj"), c.num_attention_heads * d, h, c.o_bias)?,
            heads: c.num_attention_heads,
            kv_heads: c.num_key_value_heads,
            head_dim: d,
        })
    }

    fn forward(&self, x: &Tensor, cos: &Tensor, sin: &Tensor, bias: &Tensor, cache: Option<(&mut KvCache, usize)>) -> Result<Tensor> {
        let q = split_heads(&self.q_proj.forward(x)?, self.heads, self.head_dim)?; // (B, H, T, D)
        let k = split_heads(&self.k_proj.forward(x)?, self.kv_heads, self.head_dim)?; // (B, KV, T, D)
        let v = split_heads(&self.v_proj.forward(x)?, self.kv_heads, self.head_dim)?;
        let q = apply_rope(&q, cos, sin)?;
        let k = apply_rope(&k, cos, sin)?;
        self.o_proj.forward(&attend(&q, &k, &v, bias, cache)?)
    }
}

#[derive(Clone)]
struct Block {
    input_layernorm: RmsNorm,
    self_attn: SelfAttention,
    post_attention_layernorm: RmsNorm,
    mlp: SwiGlu,
}

impl Block {
    /// x + attention(norm(x)), then + MLP(norm(·)).
    fn forward(&self, x: &Tensor, cos: &Tensor, sin: &Tensor, bias: &Tensor, cache: Option<(&mut KvCache, usize)>) -> Result<Tensor> {
        let h = self.self_attn.forward(&self.input_layernorm.forward(x)?, cos, sin, bias, cache)?;
        let x = (x + h)?;
        let h = self.mlp.forward(&self.post_attention_layernorm.forward(&x)?)?;
        x + h
    }
}

pub struct Llama {
    embed_tokens: Tensor,
    layers: Vec<Block>,
    norm: RmsNorm,
    lm_head: Tensor,
    rope: Rope,
    cfg: LlamaConfig,
}

impl Llama {
    pub fn new(vb: VarBuilder, cfg: &LlamaConfig) -> Result<Self> {
        let m = vb.pp("model");
        let embed_tokens = m.pp("embed_tokens").get_with_hints(
            (cfg.vocab_size, cfg.hidden_size),
            "weight",
            candle_nn::init::DEFAULT_KAIMING_NORMAL,
        )?;
        let layers = (0..cfg.num_hidden_layers)
            .map(|i| {
                let l = m.pp("layers").pp(i);
                Ok(Block {
                    input_layernorm: RmsNorm::new(l.pp("input_layernorm"), cfg.hidden_size, cfg.rms_norm_eps)?,
                    self_attn: SelfAttention::new(l.pp("self_attn"), cfg)?,
                    post_attention_layernorm: RmsNorm::new(l.pp("post_attention_layernorm"), cfg.hidden_size, cfg.rms_norm_eps)?,
                    mlp: SwiGlu::new(l.pp("mlp"), cfg.hidden_size, cfg.intermediate_size)?,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        let norm = RmsNorm::new(m.pp("norm"), cfg.hidden_size, cfg.rms_norm_eps)?;
        let lm_head = if cfg.tie_word_embeddings {
            embed_tokens.clone()
        } else {
            vb.pp("lm_head").get_with_hints((cfg.vocab_size, cfg.hidden_size), "weight", candle_nn::init::DEFAULT_KAIMING_NORMAL)?
        };
        let rope = Rope::new(cfg.head_dim, cfg.rope_theta, vb.device())?;
        Ok(Self { embed_tokens, layers, norm, lm_head, rope, cfg: cfg.clone() })
    }
}

impl CausalLm for Llama {
    fn vocab_size(&self) -> usize {
        self.cfg.vocab_size
    }
    fn hidden_size(&self) -> usize {
        self.cfg.hidden_size
    }
    fn num_layers(&self) -> usize {
        self.cfg.num_hidden_layers
    }
    fn max_positions(&self) -> usize {
        self.cfg.max_position_embeddings
    }

    fn forward_hidden(&self, args: &ForwardArgs, mut cache: Option<&mut KvCache>) -> Result<Tensor> {
        let (b, t) = args.input_ids.dims2()?;
        let past = cache.as_ref().map(|c| c.seq_len()).unwrap_or(0);
        let bias = attention_bias(b, t, past, args.key_mask, args.segments, args.input_ids.device())?;
        let (cos, sin) = self.rope.cos_sin(args.positions)?;
        let mut x = crate::layers::embed(&self.embed_tokens, args.input_ids)?; // (B, T, C)
        let checkpoint = cache.is_none() && crate::checkpoint::enabled();
        for (i, l) in self.layers.iter().enumerate() {
            if checkpoint {
                let (l, cos, sin, bias) = (l.clone(), cos.clone(), sin.clone(), bias.clone());
                x = crate::checkpoint::checkpoint(&x, std::sync::Arc::new(move |x: &Tensor| l.forward(x, &cos, &sin, &bias, None)))?;
            } else {
                x = l.forward(&x, &cos, &sin, &bias, cache.as_deref_mut().map(|c| (c, i)))?;
            }
        }
        self.norm.forward(&x)
    }

    fn lm_head(&self, hidden: &Tensor) -> Result<Tensor> {
        crate::layers::linear::lm_head(hidden, &self.lm_head)
    }
}
