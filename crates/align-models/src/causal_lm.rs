//! The one model interface: token ids in, hidden states and logits out, with an optional KV cache.
//!
//! All architectures share this signature, so the trainer, the generator, reward and value heads
//! are written once. Positions are explicit per token (left-padded batches and packed sequences
//! need them); `key_mask` marks real tokens among the keys (cache + new tokens); `segments` marks
//! packed documents, and attention never crosses a segment boundary.

use candle_core::{Result, Tensor};

pub struct ForwardArgs<'a> {
    /// (B, T) u32 token ids.
    pub input_ids: &'a Tensor,
    /// (B, T) u32 absolute positions of the tokens (0-based, as HF's `position_ids`).
    pub positions: &'a Tensor,
    /// (B, T_cache + T) u8, 1 for a real token and 0 for padding, over all keys.
    pub key_mask: Option<&'a Tensor>,
    /// (B, T) u32 sequence id of each token in a packed row (no cache).
    pub segments: Option<&'a Tensor>,
}

impl<'a> ForwardArgs<'a> {
    pub fn new(input_ids: &'a Tensor, positions: &'a Tensor) -> Self {
        Self { input_ids, positions, key_mask: None, segments: None }
    }
}

/// Positions 0..T for every row, offset by `start`: (B, T) u32.
pub fn default_positions(b: usize, t: usize, start: usize, dev: &candle_core::Device) -> Result<Tensor> {
    Tensor::arange(start as u32, (start + t) as u32, dev)?.unsqueeze(0)?.repeat((b, 1))
}

pub trait CausalLm: Send + Sync {
    fn vocab_size(&self) -> usize;
    fn hidden_size(&self) -> usize;
    fn num_layers(&self) -> usize;
    /// The longest sequence the position scheme supports (`max_position_embeddings`).
    fn max_positions(&self) -> usize;
    /// Final hidden states after the last norm: (B, T, C).
    fn forward_hidden(&self, args: &ForwardArgs, cache: Option<&mut KvCache>) -> Result<Tensor>;
    /// Projects hidden states to vocabulary logits: (B, T, C) -> (B, T, V).
    fn lm_head(&self, hidden: &Tensor) -> Result<Tensor>;
    /// Logits for every position: (B, T, V).
    fn forward(&self, args: &ForwardArgs, cache: Option<&mut KvCache>) -> Result<Tensor> {
        self.lm_head(&self.forward_hidden(args, cache)?)
    }
}

/// Keys and values of every layer, (B, KV_HEADS, T_cache, D) each, appended along T.
#[derive(Clone, Default)]
pub struct KvCache {
    layers: Vec<Option<(Tensor, Tensor)>>,
}

impl KvCache {
    pub fn new(num_layers: usize) -> Self {
        Self { layers: vec![None; num_layers] }
    }

    /// Number of cached positions (0 when empty).
    pub fn seq_len(&self) -> usize {
        self.layers
            .iter()
            .flatten()
            .next()
            .map(|(k, _)| k.dim(2).unwrap_or(0))
            .unwrap_or(0)
    }

    /// Appends `k`, `v` of one layer and returns the full keys and values.
    pub fn append(&mut self, layer: usize, k: &Tensor, v: &Tensor) -> Result<(Tensor, Tensor)> {
        if self.layers.len() <= layer {
            self.layers.resize(layer + 1, None);
        }
        let kv = match &self.layers[layer] {
            None => (k.contiguous()?, v.contiguous()?),
            Some((pk, pv)) => (Tensor::cat(&[pk, &k.contiguous()?], 2)?, Tensor::cat(&[pv, &v.contiguous()?], 2)?),
        };
        self.layers[layer] = Some(kv.clone());
        Ok(kv)
    }

    /// Keeps only the batch rows in `rows` (used when finished rows leave a batch).
    pub fn select_rows(&mut self, rows: &Tensor) -> Result<()> {
        for l in self.layers.iter_mut().flatten() {
            *l = (l.0.contiguous()?.index_select(rows, 0)?, l.1.contiguous()?.index_select(rows, 0)?);
        }
        Ok(())
    }
}
