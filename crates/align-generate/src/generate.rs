//! Batched generation over any [`CausalLm`]: left padding, one prefill pass, then one token per
//! step through the KV cache, with per-row sampling streams and stopping.
//!
//! Layout of a batch (prompts of 3 and 5 tokens, `_` = pad, `g` = generated):
//!
//! ```text
//! ids        _ _ a b c | g g      key_mask  0 0 1 1 1 | 1 1
//!            d e f g h | g g                1 1 1 1 1 | 1 1
//! positions  0 0 0 1 2 | 3 4                (pads get 0; they are masked out anyway)
//!            0 1 2 3 4 | 5 6
//! ```
//!
//! Positions count real tokens only (HF's `cumsum(mask) - 1`), so a row sees exactly the
//! positions it would see alone. A finished row leaves the batch at once: its KV cache rows are
//! dropped with [`KvCache::select_rows`], so later steps cost only what is still running.

use crate::config::SamplingConfig;
use crate::error::{GenerateError, Result};
use crate::sampling::{choose_token, log_prob};
use align_core::seed::{fork, Rng};
use align_models::{CausalLm, ForwardArgs, KvCache, Model};
use candle_core::{DType, Device, Tensor};
use serde::{Deserialize, Serialize};

/// Why a row stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FinishReason {
    /// It generated one of `eos_token_ids` (kept as its last token).
    Eos,
    /// Its decoded completion contains one of `stop_strings`.
    Stop,
    /// It reached `max_new_tokens`, or prompt + completion filled the model's context.
    Length,
}

/// One row's completion.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Generation {
    /// Generated ids, without the prompt; an EOS or the tokens forming a stop string are kept.
    pub tokens: Vec<u32>,
    /// For each token, its log-probability under the raw model logits (log-softmax before the
    /// penalty, temperature and filters): the policy log-prob that RL and scoring need.
    pub logprobs: Vec<f32>,
    pub finish_reason: FinishReason,
    /// The stop string that ended the row, when `finish_reason` is `Stop`.
    pub stop_string: Option<String>,
}

/// Turns a row's completion ids into text (the caller's tokenizer), for stop strings.
pub type DecodeFn<'a> = &'a dyn Fn(&[u32]) -> String;

/// Callbacks and per-row settings of one [`generate`] call; `Default` is none of them.
#[derive(Default)]
pub struct GenerateOptions<'a> {
    /// Decodes a row's completion ids to text; required when `stop_strings` is not empty.
    pub decode: Option<DecodeFn<'a>>,
    /// Called with `(row, token)` as soon as each token is chosen (for streaming).
    pub on_token: Option<&'a mut dyn FnMut(usize, u32)>,
    /// Sampling stream of each row (default: its index): row `i` draws from
    /// `fork(seed, "row{stream_ids[i]}")`. Give a prompt the same id to get the same sample in
    /// another batch.
    pub stream_ids: Option<&'a [u64]>,
}

struct Row {
    prompt_len: usize,
    /// Left pads in front of the prompt in the batch.
    pad: usize,
    tokens: Vec<u32>,
    logprobs: Vec<f32>,
    /// Distinct ids of prompt + completion (only with a repetition penalty) and their bitmap.
    seen: Vec<u32>,
    seen_mask: Vec<bool>,
    rng: Rng,
    finish: Option<(FinishReason, Option<String>)>,
}

impl Row {
    fn mark_seen(&mut self, t: u32) {
        if let Some(m) = self.seen_mask.get_mut(t as usize) {
            if !*m {
                *m = true;
                self.seen.push(t);
            }
        }
    }
}

/// [`generate`] with the model's own device.
pub fn generate_model(
    model: &Model,
    prompts: &[Vec<u32>],
    cfg: &SamplingConfig,
    opts: GenerateOptions<'_>,
) -> Result<Vec<Generation>> {
    generate(model.lm.as_ref(), &model.device, prompts, cfg, opts)
}

/// Generates a completion for every prompt (token ids), batched with left padding. Results are
/// in prompt order. Each row's tokens do not depend on its batch mates (up to the last bits of
/// batched matmuls): see docs/generation.md.
pub fn generate(
    lm: &dyn CausalLm,
    device: &Device,
    prompts: &[Vec<u32>],
    cfg: &SamplingConfig,
    mut opts: GenerateOptions<'_>,
) -> Result<Vec<Generation>> {
    cfg.validate()?;
    if !cfg.stop_strings.is_empty() && opts.decode.is_none() {
        return Err(GenerateError::Config("stop_strings need a decode callback".into()));
    }
    if let Some(ids) = opts.stream_ids {
        if ids.len() != prompts.len() {
            return Err(GenerateError::Mismatch { what: "stream_ids", expected: prompts.len(), got: ids.len() });
        }
    }
    let (vocab, ctx) = (lm.vocab_size(), lm.max_positions());
    for (row, p) in prompts.iter().enumerate() {
        if p.is_empty() {
            return Err(GenerateError::EmptyPrompt { row });
        }
        if p.len() > ctx {
            return Err(GenerateError::PromptTooLong { row, len: p.len(), max: ctx });
        }
        if let Some(&token) = p.iter().find(|&&t| t as usize >= vocab) {
            return Err(GenerateError::TokenOutOfRange { row, token, vocab });
        }
    }

    let penalize = cfg.repetition_penalty != 1.0;
    let mut rows: Vec<Row> = prompts
        .iter()
        .enumerate()
        .map(|(i, p)| {
            let stream = opts.stream_ids.map_or(i as u64, |s| s[i]);
            let mut r = Row {
                prompt_len: p.len(),
                pad: 0,
                tokens: vec![],
                logprobs: vec![],
                seen: vec![],
                seen_mask: if penalize { vec![false; vocab] } else { vec![] },
                rng: fork(cfg.seed, &format!("row{stream}")),
                finish: None,
            };
            p.iter().for_each(|&t| r.mark_seen(t));
            if cfg.max_new_tokens == 0 || p.len() >= ctx {
                r.finish = Some((FinishReason::Length, None));
            }
            r
        })
        .collect();
    // Batch slot -> row index; rows with no room to generate never enter the batch.
    let mut active: Vec<usize> = (0..rows.len()).filter(|&i| rows[i].finish.is_none()).collect();
    if active.is_empty() {
        return Ok(finish(rows));
    }

    // Prefill: every prompt in one forward pass, left-padded to the longest.
    let t = active.iter().map(|&i| rows[i].prompt_len).max().unwrap_or(0);
    let b = active.len();
    let mut ids = Vec::with_capacity(b * t);
    let mut pos = Vec::with_capacity(b * t);
    let mut mask = Vec::with_capacity(b * t);
    for &i in &active {
        let pad = t - rows[i].prompt_len;
        rows[i].pad = pad;
        ids.extend(std::iter::repeat_n(0u32, pad).chain(prompts[i].iter().copied()));
        pos.extend(std::iter::repeat_n(0u32, pad).chain(0..rows[i].prompt_len as u32));
        mask.extend(std::iter::repeat_n(0u8, pad).chain(std::iter::repeat_n(1u8, rows[i].prompt_len)));
    }
    let input_ids = Tensor::from_vec(ids, (b, t), device)?; // (B, T)
    let positions = Tensor::from_vec(pos, (b, t), device)?; // (B, T)
    let key_mask = Tensor::from_vec(mask, (b, t), device)?; // (B, T)
    let padded = active.iter().any(|&i| rows[i].pad > 0);
    let args = ForwardArgs {
        input_ids: &input_ids,
        positions: &positions,
        key_mask: padded.then_some(&key_mask),
        segments: None,
    };
    // Room for every position the batch can feed: a row feeds all its tokens but the last, at
    // most `max_new_tokens` or until the context is full, so the cache's buffers are written in
    // place and never grow during this call.
    let shortest = active.iter().map(|&i| rows[i].prompt_len).min().unwrap_or(t);
    let steps = cfg.max_new_tokens.min(ctx.saturating_sub(shortest)).saturating_sub(1);
    let mut cache = KvCache::with_capacity(lm.num_layers(), t + steps);
    let hidden = lm.forward_hidden(&args, Some(&mut cache))?; // (B, T, C)
    // Only the last position's logits are needed: project one row per prompt, not B*T.
    let mut logits = last_logits(&lm.lm_head(&hidden.narrow(1, t - 1, 1)?)?)?; // B × V
    let mut kv_len = t;
    let mut work: Vec<f32> = Vec::with_capacity(vocab);
    // Finished rows leave the batch (their cache rows are dropped).

    loop {
        // Choose one token per running row, and decide who stops.
        let mut keep = Vec::with_capacity(active.len()); // batch slots still running
        for (slot, &i) in active.iter().enumerate() {
            let row = &mut rows[i];
            let raw = &logits[slot];
            work.clear();
            work.extend_from_slice(raw);
            let tok = choose_token(&mut work, cfg, &row.seen, &mut row.rng);
            row.tokens.push(tok);
            row.logprobs.push(log_prob(raw, tok));
            if penalize {
                row.mark_seen(tok);
            }
            if let Some(f) = opts.on_token.as_mut() {
                f(i, tok);
            }
            row.finish = stop_reason(row, tok, cfg, opts.decode, ctx);
            if row.finish.is_none() {
                keep.push(slot);
            }
        }
        if keep.is_empty() {
            break;
        }
        if keep.len() < active.len() {
            let idx = Tensor::from_vec(keep.iter().map(|&s| s as u32).collect::<Vec<_>>(), keep.len(), device)?;
            cache.select_rows(&idx)?;
            active = keep.iter().map(|&s| active[s]).collect();
        }

        // Decode step: feed each running row's last token at its own position.
        let b = active.len();
        let last = |i: usize| match rows[i].finish {
            None => (*rows[i].tokens.last().expect("a token was chosen"), (rows[i].prompt_len + rows[i].tokens.len() - 1) as u32),
            Some(_) => (0, 0),
        };
        let ids: Vec<u32> = active.iter().map(|&i| last(i).0).collect();
        let pos: Vec<u32> = active.iter().map(|&i| last(i).1).collect();
        let input_ids = Tensor::from_vec(ids, (b, 1), device)?; // (B, 1)
        let positions = Tensor::from_vec(pos, (b, 1), device)?; // (B, 1)
        let padded = active.iter().any(|&i| rows[i].pad > 0);
        let key_mask = if padded {
            let mut m = Vec::with_capacity(b * (kv_len + 1));
            for &i in &active {
                let pad = rows[i].pad;
                m.extend(std::iter::repeat_n(0u8, pad).chain(std::iter::repeat_n(1u8, kv_len + 1 - pad)));
            }
            Some(Tensor::from_vec(m, (b, kv_len + 1), device)?) // (B, T_cache + 1)
        } else {
            None
        };
        let args = ForwardArgs { input_ids: &input_ids, positions: &positions, key_mask: key_mask.as_ref(), segments: None };
        logits = last_logits(&lm.forward(&args, Some(&mut cache))?)?;
        kv_len += 1;
    }
    Ok(finish(rows))
}

/// (B, 1, V) logits of any dtype → one f32 vector per row.
fn last_logits(logits: &Tensor) -> Result<Vec<Vec<f32>>> {
    Ok(logits.squeeze(1)?.to_dtype(DType::F32)?.to_vec2::<f32>()?)
}

/// Stopping rules in order: EOS, stop string, then length (max_new_tokens or the context).
fn stop_reason(
    row: &Row,
    tok: u32,
    cfg: &SamplingConfig,
    decode: Option<DecodeFn<'_>>,
    ctx: usize,
) -> Option<(FinishReason, Option<String>)> {
    if cfg.eos_token_ids.contains(&tok) {
        return Some((FinishReason::Eos, None));
    }
    if let (false, Some(decode)) = (cfg.stop_strings.is_empty(), decode) {
        let text = decode(&row.tokens);
        if let Some(s) = cfg.stop_strings.iter().find(|s| text.contains(s.as_str())) {
            return Some((FinishReason::Stop, Some(s.clone())));
        }
    }
    if row.tokens.len() >= cfg.max_new_tokens || row.prompt_len + row.tokens.len() >= ctx {
        return Some((FinishReason::Length, None));
    }
    None
}

fn finish(rows: Vec<Row>) -> Vec<Generation> {
    rows.into_iter()
        .map(|r| {
            let (finish_reason, stop_string) = r.finish.unwrap_or((FinishReason::Length, None));
            Generation { tokens: r.tokens, logprobs: r.logprobs, finish_reason, stop_string }
        })
        .collect()
}

/// `text` cut before the first occurrence of any stop string (for display; the tokens keep it).
pub fn truncate_at_stop<'t>(text: &'t str, stop_strings: &[String]) -> &'t str {
    let cut = stop_strings.iter().filter_map(|s| text.find(s.as_str())).min().unwrap_or(text.len());
    &text[..cut]
}
