//! Continuous batching: a batch of sequences that new requests join and finished ones leave
//! between decode steps, for serving many clients through one model.
//!
//! [`generate`](crate::generate::generate) runs a fixed set of prompts to the end. An [`Engine`]
//! instead keeps the running sequences of many requests in one KV cache and is driven step by
//! step by its owner (a server's scheduler thread):
//!
//! ```text
//! add([c, d])   prefill c, d alone (left-padded to each other), choose their first tokens,
//!               then merge their cache rows into the batch, left-padding the shorter side:
//!
//!   batch    a: _ _ a a a a A      (A = generated, not yet fed; _ = pad, masked out)
//!            b: b b b b b b B
//!   merged   c: _ _ _ _ c c C      (zeros in the cache, masked out)
//!            d: _ _ _ d d d D
//! step()        one forward over every row (its last token at its own position), one token each
//! remove(ids)   rows leave (finished, cancelled, disconnected); columns that are padding in
//!               every remaining row are trimmed once they are a quarter of the cache
//! ```
//!
//! **Same tokens alone or batched.** A row's positions count its real tokens only, its pads are
//! masked out (an exact 0 after the softmax) and it samples from its own stream
//! `fork(seed, "row{stream_id}")`, so what it generates does not depend on its batch mates or on
//! when it joined — up to the last bits of batched matmuls, as for `generate` (docs/generation.md).
//! With the stream id of `generate`'s row `i`, an engine sequence reproduces that row.
//!
//! Stop strings need text, so the engine leaves them to its owner: it stops a row on an EOS id,
//! `max_new_tokens` or the context, and the owner [`Engine::remove`]s a row whose text holds a
//! stop string. `cfg.stop_strings` is ignored here.

use crate::config::SamplingConfig;
use crate::error::{GenerateError, Result};
use crate::generate::FinishReason;
use crate::sampling::{choose_token, log_prob};
use align_core::seed::{fork, Rng};
use align_models::{ForwardArgs, KvCache, Model};
use candle_core::{DType, Tensor};

/// Identifies a sequence of an [`Engine`]; chosen by the caller, unique among running ones.
pub type SeqId = u64;

/// One sequence to generate.
#[derive(Debug, Clone)]
pub struct SeqRequest {
    /// Prompt token ids (at least one, fewer than the model's context).
    pub prompt: Vec<u32>,
    /// Sampling and stopping (`stop_strings` are the caller's business, see the module docs).
    pub cfg: SamplingConfig,
    /// Sampling stream: the row draws from `fork(cfg.seed, "row{stream_id}")`.
    pub stream_id: u64,
    /// How many of the most likely tokens to report with each chosen token (0 = none).
    pub top_logprobs: usize,
}

/// A token chosen for one sequence.
#[derive(Debug, Clone, PartialEq)]
pub struct TokenEvent {
    pub seq: SeqId,
    pub token: u32,
    /// Log-probability of `token` under the raw logits (as `Generation::logprobs`).
    pub logprob: f32,
    /// The `top_logprobs` most likely tokens under the raw logits, most likely first.
    pub top_logprobs: Vec<(u32, f32)>,
    /// Set on the sequence's last token; it has then left the batch.
    pub finish: Option<FinishReason>,
}

struct Seq {
    id: SeqId,
    prompt_len: usize,
    /// Cache columns in front of this row's first real token (masked out).
    pad: usize,
    tokens: Vec<u32>,
    seen: Vec<u32>,
    seen_mask: Vec<bool>,
    rng: Rng,
    cfg: SamplingConfig,
    top_logprobs: usize,
}

/// The running batch of one model. Not thread-safe by design: one owner drives it.
pub struct Engine<'m> {
    model: &'m Model,
    /// (B, KV_HEADS, kv_len, D) per layer, row `i` belonging to `seqs[i]`; its buffers grow by
    /// doubling as steps append (`KvCache`).
    cache: KvCache,
    kv_len: usize,
    seqs: Vec<Seq>,
    work: Vec<f32>,
}

impl<'m> Engine<'m> {
    pub fn new(model: &'m Model) -> Self {
        Engine { model, cache: KvCache::new(model.lm.num_layers()), kv_len: 0, seqs: vec![], work: vec![] }
    }

    /// Number of running sequences.
    pub fn len(&self) -> usize {
        self.seqs.len()
    }

    pub fn is_empty(&self) -> bool {
        self.seqs.is_empty()
    }

    /// Ids of the running sequences, in batch order.
    pub fn running(&self) -> Vec<SeqId> {
        self.seqs.iter().map(|s| s.id).collect()
    }

    /// Cache positions per row (padding included): what one step attends over.
    pub fn kv_len(&self) -> usize {
        self.kv_len
    }

    /// Checks one request without touching the batch: the errors [`Engine::add`] would give.
    pub fn check(&self, req: &SeqRequest) -> Result<()> {
        req.cfg.validate()?;
        let (vocab, ctx) = (self.model.lm.vocab_size(), self.model.lm.max_positions());
        if req.prompt.is_empty() {
            return Err(GenerateError::EmptyPrompt { row: 0 });
        }
        if req.prompt.len() >= ctx {
            return Err(GenerateError::PromptTooLong { row: 0, len: req.prompt.len(), max: ctx - 1 });
        }
        if let Some(&token) = req.prompt.iter().find(|&&t| t as usize >= vocab) {
            return Err(GenerateError::TokenOutOfRange { row: 0, token, vocab });
        }
        if req.cfg.max_new_tokens == 0 {
            return Err(GenerateError::Config("max_new_tokens must be at least 1".into()));
        }
        Ok(())
    }

    /// Prefills new sequences (one forward pass; identical prompts are computed once), chooses
    /// their first tokens and merges the rows that go on into the batch. Returns one event per
    /// new sequence. Nothing is changed when a request is invalid.
    pub fn add(&mut self, reqs: Vec<(SeqId, SeqRequest)>) -> Result<Vec<TokenEvent>> {
        for (_, r) in &reqs {
            self.check(r)?;
        }
        if reqs.is_empty() {
            return Ok(vec![]);
        }
        let dev = &self.model.device;
        // Distinct prompts, and which one each request uses.
        let mut uniq: Vec<&[u32]> = vec![];
        let which: Vec<u32> = reqs
            .iter()
            .map(|(_, r)| match uniq.iter().position(|p| *p == r.prompt.as_slice()) {
                Some(i) => i as u32,
                None => {
                    uniq.push(&r.prompt);
                    (uniq.len() - 1) as u32
                }
            })
            .collect();
        let (u, t) = (uniq.len(), uniq.iter().map(|p| p.len()).max().unwrap_or(0));
        let (mut ids, mut pos, mut mask) = (vec![], vec![], vec![]);
        for p in &uniq {
            let pad = t - p.len();
            ids.extend(std::iter::repeat_n(0u32, pad).chain(p.iter().copied()));
            pos.extend(std::iter::repeat_n(0u32, pad).chain(0..p.len() as u32));
            mask.extend(std::iter::repeat_n(0u8, pad).chain(std::iter::repeat_n(1u8, p.len())));
        }
        let input_ids = Tensor::from_vec(ids, (u, t), dev)?; // (U, T)
        let positions = Tensor::from_vec(pos, (u, t), dev)?; // (U, T)
        let key_mask = Tensor::from_vec(mask, (u, t), dev)?; // (U, T)
        let padded = uniq.iter().any(|p| p.len() < t);
        let args = ForwardArgs { input_ids: &input_ids, positions: &positions, key_mask: padded.then_some(&key_mask), segments: None };
        let lm = self.model.lm.as_ref();
        let mut cache = KvCache::new(lm.num_layers());
        let hidden = lm.forward_hidden(&args, Some(&mut cache))?; // (U, T, C)
        let logits = last_logits(&lm.lm_head(&hidden.narrow(1, t - 1, 1)?)?)?; // U × V
        // One cache row per request (duplicated prompts share their prefill).
        if which.iter().enumerate().any(|(i, &w)| w as usize != i) {
            cache.select_rows(&Tensor::from_vec(which.clone(), which.len(), dev)?)?;
        }

        let vocab = lm.vocab_size();
        let mut new_seqs = Vec::with_capacity(reqs.len());
        let mut events = Vec::with_capacity(reqs.len());
        for ((id, r), &w) in reqs.into_iter().zip(&which) {
            let penalize = r.cfg.repetition_penalty != 1.0;
            let mut s = Seq {
                id,
                prompt_len: r.prompt.len(),
                pad: t - r.prompt.len(),
                tokens: vec![],
                seen: vec![],
                seen_mask: if penalize { vec![false; vocab] } else { vec![] },
                rng: fork(r.cfg.seed, &format!("row{}", r.stream_id)),
                top_logprobs: r.top_logprobs,
                cfg: r.cfg,
            };
            if penalize {
                r.prompt.iter().for_each(|&t| mark_seen(&mut s, t));
            }
            events.push(self.choose(&mut s, &logits[w as usize]));
            new_seqs.push(s);
        }
        let keep: Vec<usize> = (0..new_seqs.len()).filter(|&i| events[i].finish.is_none()).collect();
        if !keep.is_empty() {
            if keep.len() < new_seqs.len() {
                cache.select_rows(&Tensor::from_vec(keep.iter().map(|&i| i as u32).collect::<Vec<_>>(), keep.len(), dev)?)?;
            }
            let mut slots: Vec<Option<Seq>> = new_seqs.into_iter().map(Some).collect();
            let kept = keep.iter().filter_map(|&i| slots[i].take()).collect();
            self.merge(cache, t, kept)?;
        }
        Ok(events)
    }

    /// One decode step: every running row feeds its last token; returns one event per row.
    /// Rows that finish leave the batch.
    pub fn step(&mut self) -> Result<Vec<TokenEvent>> {
        if self.seqs.is_empty() {
            return Ok(vec![]);
        }
        let dev = &self.model.device;
        let b = self.seqs.len();
        let ids: Vec<u32> = self.seqs.iter().map(|s| *s.tokens.last().expect("a running row has a token")).collect();
        let pos: Vec<u32> = self.seqs.iter().map(|s| (s.prompt_len + s.tokens.len() - 1) as u32).collect();
        let input_ids = Tensor::from_vec(ids, (b, 1), dev)?; // (B, 1)
        let positions = Tensor::from_vec(pos, (b, 1), dev)?; // (B, 1)
        let key_mask = if self.seqs.iter().any(|s| s.pad > 0) {
            let mut m = Vec::with_capacity(b * (self.kv_len + 1));
            for s in &self.seqs {
                m.extend(std::iter::repeat_n(0u8, s.pad).chain(std::iter::repeat_n(1u8, self.kv_len + 1 - s.pad)));
            }
            Some(Tensor::from_vec(m, (b, self.kv_len + 1), dev)?) // (B, T_cache + 1)
        } else {
            None
        };
        let args = ForwardArgs { input_ids: &input_ids, positions: &positions, key_mask: key_mask.as_ref(), segments: None };
        let logits = last_logits(&self.model.lm.forward(&args, Some(&mut self.cache))?)?; // B × V
        self.kv_len += 1;

        let mut seqs = std::mem::take(&mut self.seqs);
        let events: Vec<TokenEvent> = seqs.iter_mut().zip(&logits).map(|(s, raw)| self.choose(s, raw)).collect();
        self.seqs = seqs;
        let done: Vec<SeqId> = events.iter().filter(|e| e.finish.is_some()).map(|e| e.seq).collect();
        self.remove(&done)?;
        Ok(events)
    }

    /// Drops sequences from the batch (unknown ids are ignored), then trims the cache columns
    /// that are padding in every remaining row once they are a quarter of the cache (trimming
    /// copies the cache; a few masked columns cost less than a copy at every departure).
    pub fn remove(&mut self, ids: &[SeqId]) -> Result<()> {
        let keep: Vec<usize> = (0..self.seqs.len()).filter(|&i| !ids.contains(&self.seqs[i].id)).collect();
        if keep.len() == self.seqs.len() {
            return Ok(());
        }
        if keep.is_empty() {
            self.clear();
            return Ok(());
        }
        let idx = Tensor::from_vec(keep.iter().map(|&i| i as u32).collect::<Vec<_>>(), keep.len(), &self.model.device)?;
        self.cache.select_rows(&idx)?;
        let mut slots: Vec<Option<Seq>> = std::mem::take(&mut self.seqs).into_iter().map(Some).collect();
        self.seqs = keep.iter().filter_map(|&i| slots[i].take()).collect();
        let trim = self.seqs.iter().map(|s| s.pad).min().unwrap_or(0);
        if trim > 0 && 4 * trim >= self.kv_len {
            self.cache.trim_front(trim)?;
            self.kv_len -= trim;
            self.seqs.iter_mut().for_each(|s| s.pad -= trim);
        }
        Ok(())
    }

    /// Drops every sequence (e.g. after a failed step).
    pub fn clear(&mut self) {
        self.seqs.clear();
        self.cache = KvCache::new(self.model.lm.num_layers());
        self.kv_len = 0;
    }

    /// Chooses a row's next token from its raw logits and decides whether it stops.
    fn choose(&mut self, s: &mut Seq, raw: &[f32]) -> TokenEvent {
        self.work.clear();
        self.work.extend_from_slice(raw);
        let token = choose_token(&mut self.work, &s.cfg, &s.seen, &mut s.rng);
        s.tokens.push(token);
        if s.cfg.repetition_penalty != 1.0 {
            mark_seen(s, token);
        }
        let ctx = self.model.lm.max_positions();
        let finish = if s.cfg.eos_token_ids.contains(&token) {
            Some(FinishReason::Eos)
        } else if s.tokens.len() >= s.cfg.max_new_tokens || s.prompt_len + s.tokens.len() >= ctx {
            Some(FinishReason::Length)
        } else {
            None
        };
        TokenEvent { seq: s.id, token, logprob: log_prob(raw, token), top_logprobs: top_logprobs(raw, s.top_logprobs), finish }
    }

    /// Adds prefilled rows (`cache` of `len` positions) to the batch, left-padding whichever
    /// side is shorter with zero keys and values (masked out by the rows' `pad`).
    fn merge(&mut self, cache: KvCache, len: usize, mut seqs: Vec<Seq>) -> Result<()> {
        if self.seqs.is_empty() {
            self.cache = cache;
            self.kv_len = len;
            self.seqs = seqs;
            return Ok(());
        }
        let (po, pn) = self.cache.merge_rows(&cache)?;
        self.seqs.iter_mut().for_each(|s| s.pad += po);
        seqs.iter_mut().for_each(|s| s.pad += pn);
        self.seqs.extend(seqs);
        self.kv_len = self.cache.seq_len();
        Ok(())
    }
}

fn mark_seen(s: &mut Seq, t: u32) {
    if let Some(m) = s.seen_mask.get_mut(t as usize) {
        if !*m {
            *m = true;
            s.seen.push(t);
        }
    }
}

/// (B, 1, V) logits of any dtype → one f32 vector per row.
fn last_logits(logits: &Tensor) -> Result<Vec<Vec<f32>>> {
    Ok(logits.squeeze(1)?.to_dtype(DType::F32)?.to_vec2::<f32>()?)
}

/// The `n` most likely tokens of the raw `logits` with their log-probabilities (log-sum-exp in
/// f64, as [`log_prob`]), most likely first; ties keep the lower id first.
pub fn top_logprobs(logits: &[f32], n: usize) -> Vec<(u32, f32)> {
    if n == 0 {
        return vec![];
    }
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max) as f64;
    let lse = max + logits.iter().map(|&x| (x as f64 - max).exp()).sum::<f64>().ln();
    let mut idx: Vec<u32> = (0..logits.len() as u32).collect();
    idx.sort_by(|&a, &b| logits[b as usize].total_cmp(&logits[a as usize]).then(a.cmp(&b)));
    idx.into_iter().take(n).map(|i| (i, (logits[i as usize] as f64 - lse) as f32)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn top_logprobs_sorted_and_normalized() {
        let l = [0.0f32, 2.0, 1.0, 2.0];
        let top = top_logprobs(&l, 3);
        assert_eq!(top.iter().map(|t| t.0).collect::<Vec<_>>(), vec![1, 3, 2]);
        let all: f64 = top_logprobs(&l, 4).iter().map(|t| (t.1 as f64).exp()).sum();
        assert!((all - 1.0).abs() < 1e-6);
        assert!((top[0].1 - log_prob(&l, 1)).abs() < 1e-7);
        assert!(top_logprobs(&l, 0).is_empty());
    }
}
