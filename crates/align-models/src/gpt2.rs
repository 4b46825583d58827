//! GPT-2 (Radford et al. 2019): learned position embeddings, pre-norm blocks of LayerNorm →
//! attention (fused `c_attn` projection, `Conv1D` weights stored as (in, out)) → LayerNorm →
//! GELU-tanh MLP, a final LayerNorm, and an LM head tied to the token embedding.

use crate::causal_lm::{CausalLm, ForwardArgs, KvCache};
use crate::config::Gpt2Config;
use crate::layers::attention::{attend, split_heads};
use crate::layers::linear::Conv1D;
use crate::layers::mask::attention_bias;
use crate::layers::mlp::GeluMlp;
use crate::layers::norm::LayerNorm;
use candle_core::{Module, Result, Tensor, D};
use candle_nn::VarBuilder;

struct Attention {
    c_attn: Conv1D,
    c_proj: Conv1D,
    heads: usize,
}

struct Block {
    ln_1: LayerNorm,
    attn: Attention,
    ln_2: LayerNorm,
    mlp: GeluMlp,
}

pub struct Gpt2 {
    wte: Tensor,
    wpe: Tensor,
    h: Vec<Block>,
    ln_f: LayerNorm,
    cfg: Gpt2Config,
}

impl Gpt2 {
    pub fn new(vb: VarBuilder, cfg: &Gpt2Config) -> Result<Self> {
        let tr = vb.pp("transformer");
        let c = cfg.n_embd;
        let init = candle_nn::init::DEFAULT_KAIMING_NORMAL;
        let wte = tr.pp("wte").get_with_hints((cfg.vocab_size, c), "weight", init)?;
        let wpe = tr.pp("wpe").get_with_hints((cfg.n_positions, c), "weight", init)?;
        let eps = cfg.layer_norm_epsilon;
        let h = (0..cfg.n_layer)
            .map(|i| {
                let l = tr.pp("h").pp(i);
                Ok(Block {
                    ln_1: LayerNorm::new(l.pp("ln_1"), c, eps)?,
                    attn: Attention {
                        c_attn: Conv1D::new(l.pp("attn").pp("c_attn"), c, 3 * c)?,
                        c_proj: Conv1D::new(l.pp("attn").pp("c_proj"), c, c)?,
                        heads: cfg.n_head,
                    },
                    ln_2: LayerNorm::new(l.pp("ln_2"), c, eps)?,
                    mlp: GeluMlp::new(l.pp("mlp"), c, cfg.n_inner.unwrap_or(4 * c))?,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        let ln_f = LayerNorm::new(tr.pp("ln_f"), c, eps)?;
        Ok(Self { wte, wpe, h, ln_f, cfg: cfg.clone() })
    }
}

impl CausalLm for Gpt2 {
    fn vocab_size(&self) -> usize {
        self.cfg.vocab_size
    }
    fn hidden_size(&self) -> usize {
        self.cfg.n_embd
    }
    fn num_layers(&self) -> usize {
        self.cfg.n_layer
    }
    fn max_positions(&self) -> usize {
        self.cfg.n_positions
    }

    fn forward_hidden(&self, args: &ForwardArgs, mut cache: Option<&mut KvCache>) -> Result<Tensor> {
        let (b, t) = args.input_ids.dims2()?;
        let past = cache.as_ref().map(|c| c.seq_len()).unwrap_or(0);
        let bias = attention_bias(b, t, past, args.key_mask, args.segments, args.input_ids.device())?;
        let c = self.cfg.n_embd;
        let (heads, d) = (self.cfg.n_head, c / self.cfg.n_head);
        let mut x = (crate::layers::embed(&self.wte, args.input_ids)? + crate::layers::embed(&self.wpe, args.positions)?)?; // (B, T, C)
        for (i, l) in self.h.iter().enumerate() {
            let qkv = l.attn.c_attn.forward(&l.ln_1.forward(&x)?)?; // (B, T, 3C)
            let q = split_heads(&qkv.narrow(D::Minus1, 0, c)?, heads, d)?;
            let k = split_heads(&qkv.narrow(D::Minus1, c, c)?, heads, d)?;
            let v = split_heads(&qkv.narrow(D::Minus1, 2 * c, c)?, heads, d)?;
            let y = attend(&q, &k, &v, &bias, cache.as_deref_mut().map(|c| (c, i)))?;
            debug_assert_eq!(l.attn.heads, heads);
            x = (x + l.attn.c_proj.forward(&y)?)?;
            x = (&x + l.mlp.forward(&l.ln_2.forward(&x)?)?)?;
        }
        self.ln_f.forward(&x)
    }

    fn lm_head(&self, hidden: &Tensor) -> Result<Tensor> {
        crate::layers::linear::lm_head(hidden, &self.wte)
    }
}
