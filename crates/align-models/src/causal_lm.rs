//! The one model interface: token ids in, hidden states and logits out, with an optional KV cache.
//!
//! All architectures share this signature, so the trainer, the generator, reward and value heads
//! are written once. Positions are explicit per token (left-padded batches and packed sequences
//! need them); `key_mask` marks real tokens among the keys (cache + new tokens); `segments` marks
//! packed documents, and attention never crosses a segment boundary.

use candle_core::{Result, Tensor};
use std::sync::Arc;

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
///
/// Each layer keeps its keys and values in a preallocated buffer (B, KV_HEADS, capacity, D),
/// contiguous, of which positions `0..seq_len()` are filled. [`KvCache::append`] writes the new
/// positions in place (`Tensor::slice_set`) and returns views of the filled prefix; only when the
/// buffer is full is it copied into one with twice the capacity, so a decode step costs O(1)
/// copies of the cache amortized instead of the whole cache (O(T²) over a generation when every
/// append concatenated). In a view, each (batch row, head) holds `seq_len() × D` contiguous
/// values, and heads lie `capacity × D` apart: the fused attention kernel reads it as it is.
///
/// The buffers store values, not the autograd graph. A cache is for inference, as
/// transformers' `generate` runs under `torch.no_grad()`: `append` returns the buffers' views even
/// when the model's weights are trainable `Var`s (every model this workspace loads), so no step
/// concatenates the cache. [`KvCache::tracking_gradients`] makes a cache whose `append` lets
/// gradients reach the keys and values of that call (not those of earlier calls), at the price
/// of a concatenation per step. Cloning is cheap (the buffers are shared) and safe: the first
/// append to a shared buffer copies it.
#[derive(Clone, Default)]
pub struct KvCache {
    layers: Vec<Option<LayerKv>>,
    /// Positions a layer's first buffer makes room for (more if the first append brings more).
    reserve: usize,
    /// Whether `append` keeps the autograd graph of the keys and values it is given.
    gradients: bool,
}

/// One layer's buffers.
#[derive(Clone)]
struct LayerKv {
    /// (B, KV_HEADS, capacity, D) each, contiguous; positions `len..` are unused.
    k: Tensor,
    v: Tensor,
    len: usize,
    /// Held by every clone of these buffers: writing in place is only allowed to its only holder.
    owner: Arc<()>,
}

impl LayerKv {
    fn capacity(&self) -> usize {
        self.k.dims().get(2).copied().unwrap_or(0)
    }

    /// Views of the filled prefix: (B, KV_HEADS, len, D) each.
    fn filled(&self) -> Result<(Tensor, Tensor)> {
        Ok((self.k.narrow(2, 0, self.len)?, self.v.narrow(2, 0, self.len)?))
    }

    /// The filled prefix moved into new buffers of `capacity` positions (at least `len`).
    fn reallocate(&mut self, capacity: usize) -> Result<()> {
        let (k, v) = self.filled()?;
        self.k = buffer_with(&k, capacity, 0)?;
        self.v = buffer_with(&v, capacity, 0)?;
        self.owner = Arc::new(());
        Ok(())
    }
}

/// A new zeroed (B, H, capacity, D) buffer with `x` (B, H, T, D) written at positions
/// `offset..offset + T` (`offset + T <= capacity`).
fn buffer_with(x: &Tensor, capacity: usize, offset: usize) -> Result<Tensor> {
    let (b, h, t, d) = x.dims4()?;
    if offset + t > capacity {
        candle_core::bail!("kv cache: {t} positions at offset {offset} exceed the capacity {capacity}")
    }
    let buf = Tensor::zeros((b, h, capacity, d), x.dtype(), x.device())?;
    if t > 0 {
        buf.slice_set(&x.contiguous()?, 2, offset)?;
    }
    Ok(buf)
}

impl KvCache {
    pub fn new(num_layers: usize) -> Self {
        Self { layers: vec![None; num_layers], reserve: 0, gradients: false }
    }

    /// This cache, with `append` returning the cached keys and values concatenated with the new
    /// ones when those track gradients, so that gradients reach them (see the type's doc).
    pub fn tracking_gradients(mut self) -> Self {
        self.gradients = true;
        self
    }

    /// An empty cache whose layers make room for `positions` positions when first written, so
    /// that a generation known to stay within them never grows a buffer.
    pub fn with_capacity(num_layers: usize, positions: usize) -> Self {
        Self { layers: vec![None; num_layers], reserve: positions, gradients: false }
    }

    /// Number of cached positions (0 when empty).
    pub fn seq_len(&self) -> usize {
        self.layers.iter().flatten().next().map_or(0, |l| l.len)
    }

    /// Positions the buffers hold before the next append that outgrows them must copy them (0
    /// when empty).
    pub fn capacity(&self) -> usize {
        self.layers.iter().flatten().next().map_or(0, LayerKv::capacity)
    }

    /// Views of one layer's cached keys and values, (B, KV_HEADS, seq_len, D) each; `None` for a
    /// layer nothing was appended to.
    pub fn layer(&self, layer: usize) -> Result<Option<(Tensor, Tensor)>> {
        self.layers.get(layer).and_then(Option::as_ref).map(LayerKv::filled).transpose()
    }

    /// Appends `k`, `v` (B, KV_HEADS, T_new, D) of one layer and returns the full keys and values,
    /// (B, KV_HEADS, T_cache + T_new, D): views of the layer's buffers, or, in a cache made with
    /// [`KvCache::tracking_gradients`] when `k` or `v` tracks gradients, the cached keys and
    /// values concatenated with `k` and `v` so that gradients reach them.
    pub fn append(&mut self, layer: usize, k: &Tensor, v: &Tensor) -> Result<(Tensor, Tensor)> {
        let (b, h, t, d) = k.dims4()?;
        if v.dims() != k.dims() || v.dtype() != k.dtype() {
            candle_core::bail!("kv cache: keys {:?} {:?} and values {:?} {:?} differ", k.dims(), k.dtype(), v.dims(), v.dtype())
        }
        if self.layers.len() <= layer {
            self.layers.resize(layer + 1, None);
        }
        let track = self.gradients && (k.track_op() || v.track_op());
        let past = match &mut self.layers[layer] {
            None => {
                let capacity = t.max(self.reserve);
                let (kb, vb) = (buffer_with(k, capacity, 0)?, buffer_with(v, capacity, 0)?);
                self.layers[layer] = Some(LayerKv { k: kb, v: vb, len: t, owner: Arc::new(()) });
                None
            }
            Some(l) => {
                let (lb, lh, _, ld) = l.k.dims4()?;
                if (lb, lh, ld) != (b, h, d) || l.k.dtype() != k.dtype() {
                    candle_core::bail!(
                        "kv cache layer {layer}: cannot append {:?} {:?} to ({lb}, {lh}, {}, {ld}) {:?}",
                        k.dims(),
                        k.dtype(),
                        l.len,
                        l.k.dtype()
                    )
                }
                let past = track.then(|| l.filled()).transpose()?;
                let (len, capacity) = (l.len, l.capacity());
                if len + t > capacity {
                    // Full: double, so that copies cost O(1) per position amortized.
                    l.reallocate((len + t).max(2 * capacity))?;
                } else if t > 0 && Arc::strong_count(&l.owner) > 1 {
                    // A clone shares the buffers: copy them before writing.
                    l.reallocate(capacity)?;
                }
                if t > 0 {
                    l.k.slice_set(&k.contiguous()?, 2, len)?;
                    l.v.slice_set(&v.contiguous()?, 2, len)?;
                }
                l.len = len + t;
                past
            }
        };
        match past {
            Some((pk, pv)) => Ok((Tensor::cat(&[&pk, &k.contiguous()?], 2)?, Tensor::cat(&[&pv, &v.contiguous()?], 2)?)),
            None if track => Ok((k.contiguous()?, v.contiguous()?)),
            None => self.layers[layer].as_ref().map_or_else(|| candle_core::bail!("kv cache: layer {layer} vanished"), LayerKv::filled),
        }
    }

    /// Keeps only the batch rows in `rows` (used when finished rows leave a batch); the capacity
    /// stays.
    pub fn select_rows(&mut self, rows: &Tensor) -> Result<()> {
        self.map_layers(|l| Ok(LayerKv { k: l.k.index_select(rows, 0)?, v: l.v.index_select(rows, 0)?, len: l.len, owner: Arc::new(()) }))
    }

    /// Drops the first `n` positions of every layer (columns that are padding in every row); the
    /// capacity stays.
    pub fn trim_front(&mut self, n: usize) -> Result<()> {
        if n == 0 {
            return Ok(());
        }
        self.map_layers(|l| {
            if n > l.len {
                candle_core::bail!("kv cache: cannot trim {n} of {} positions", l.len)
            }
            let (capacity, (k, v)) = (l.capacity(), l.filled()?);
            let k = buffer_with(&k.narrow(2, n, l.len - n)?, capacity, 0)?;
            let v = buffer_with(&v.narrow(2, n, l.len - n)?, capacity, 0)?;
            Ok(LayerKv { k, v, len: l.len - n, owner: Arc::new(()) })
        })
    }

    /// Replaces every filled layer by `f` of it, or changes nothing if `f` fails on one.
    fn map_layers(&mut self, f: impl Fn(&LayerKv) -> Result<LayerKv>) -> Result<()> {
        let new = self.layers.iter().map(|l| l.as_ref().map(&f).transpose()).collect::<Result<Vec<_>>>()?;
        self.layers = new;
        Ok(())
    }

    /// Appends the batch rows of `other` after this cache's rows. The side with fewer positions
    /// is left-padded with zero keys and values (to be masked out) so that both span
    /// `max(seq_len)` positions. Returns the positions of padding added in front of this cache's
    /// rows and in front of `other`'s. Both caches must have values in the same layers.
    pub fn merge_rows(&mut self, other: &KvCache) -> Result<(usize, usize)> {
        if self.layers.iter().all(Option::is_none) {
            *self = other.clone();
            return Ok((0, 0));
        }
        if other.layers.iter().all(Option::is_none) {
            return Ok((0, 0));
        }
        let (ls, lo) = (self.seq_len(), other.seq_len());
        let t = ls.max(lo);
        let capacity = self.capacity().max(other.capacity()).max(t);
        if self.layers.len() != other.layers.len() {
            candle_core::bail!("kv cache: cannot merge {} layers with {}", self.layers.len(), other.layers.len())
        }
        let mut merged = Vec::with_capacity(self.layers.len());
        for (i, (a, b)) in self.layers.iter().zip(&other.layers).enumerate() {
            match (a, b) {
                (None, None) => merged.push(None),
                (Some(a), Some(b)) => {
                    if a.len != ls || b.len != lo {
                        candle_core::bail!("kv cache: layer {i} holds {} and {} positions, the first layer {ls} and {lo}", a.len, b.len)
                    }
                    let ((ak, av), (bk, bv)) = (a.filled()?, b.filled()?);
                    let (pa, pb) = (t - a.len, t - b.len);
                    let k = Tensor::cat(&[&buffer_with(&ak, capacity, pa)?, &buffer_with(&bk, capacity, pb)?], 0)?;
                    let v = Tensor::cat(&[&buffer_with(&av, capacity, pa)?, &buffer_with(&bv, capacity, pb)?], 0)?;
                    merged.push(Some(LayerKv { k, v, len: t, owner: Arc::new(()) }));
                }
                _ => candle_core::bail!("kv cache: layer {i} is filled in only one of the merged caches"),
            }
        }
        self.layers = merged;
        Ok((t - ls, t - lo))
    }
}
