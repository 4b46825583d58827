//! Rollouts: prompts in, sampled responses out, and the per-token tensors RL trains on.
//!
//! A [`Sample`] is one prompt's token ids and one sampled response. [`Packed`] lays a list of
//! samples out for one forward pass (prompt + response, right-padded) with the gather index that
//! turns per-position outputs into per-response-token columns: column j of row b is the output
//! at position `P_b + j − 1`, the one that predicts response token j (TRL's
//! `logits[:, context_length − 1 : −1]`). Log-probs, entropies and values are all read there.

use align_data::chat_template::ChatTemplate;
use align_data::{Message, Tokenizer};
use align_generate::{generate, GenerateOptions, SamplingConfig};
use align_models::{CausalLm, ForwardArgs};
use align_train::lm_loss::token_logprobs;
use align_train::{Result, TrainError};
use candle_core::{DType, Device, Tensor, D};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::path::PathBuf;

/// One prompt of the RL prompt set.
#[derive(Debug, Clone)]
pub struct Prompt {
    pub messages: Vec<Message>,
    /// The whole JSON record (gym prompts carry their gold facts here).
    pub meta: Value,
    /// Token ids of the messages rendered with the chat template and its generation prompt.
    pub ids: Vec<u32>,
}

/// Reads prompts from JSONL files: each line has `prompt` (a string, or a list of messages) or
/// `messages` (its last assistant turn, if any, is dropped). Prompts longer than `max_prompt_len`
/// tokens are skipped and counted; a malformed line is an error naming the file and line.
pub fn load_prompts(files: &[PathBuf], tok: &Tokenizer, tmpl: &ChatTemplate, max_prompt_len: usize) -> Result<(Vec<Prompt>, usize)> {
    let mut out = vec![];
    let mut too_long = 0;
    for f in files {
        let text = std::fs::read_to_string(f).map_err(|e| TrainError::Config(format!("cannot read prompts {}: {e}", f.display())))?;
        for (i, line) in text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty()) {
            let bad = |msg: &str| TrainError::Config(format!("{}:{}: {msg}", f.display(), i + 1));
            let v: Value = serde_json::from_str(line).map_err(|e| bad(&format!("not JSON: {e}")))?;
            let messages: Vec<Message> = match (v.get("prompt"), v.get("messages")) {
                (Some(Value::String(s)), _) => vec![Message::new("user", s.clone())],
                (Some(m @ Value::Array(_)), _) => serde_json::from_value(m.clone()).map_err(|e| bad(&format!("field \"prompt\": {e}")))?,
                (None, Some(m @ Value::Array(_))) => {
                    let mut m: Vec<Message> = serde_json::from_value(m.clone()).map_err(|e| bad(&format!("field \"messages\": {e}")))?;
                    if m.last().is_some_and(|x| x.role == "assistant") {
                        m.pop();
                    }
                    m
                }
                _ => return Err(bad("no \"prompt\" (string or messages) or \"messages\" field")),
            };
            if messages.is_empty() {
                return Err(bad("empty prompt"));
            }
            let rendered = tmpl.render(&messages, true).map_err(TrainError::other)?;
            let ids = tok.encode(&rendered, false).map_err(TrainError::other)?;
            if ids.len() > max_prompt_len {
                too_long += 1;
                continue;
            }
            out.push(Prompt { messages, meta: v, ids });
        }
    }
    Ok((out, too_long))
}

/// One sampled response to a prompt.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Sample {
    /// Index into the prompt set.
    pub prompt: usize,
    pub prompt_ids: Vec<u32>,
    /// Generated ids, EOS included when generated.
    pub response_ids: Vec<u32>,
    /// Whether the response ended with EOS (not cut by the length limit).
    pub eos: bool,
}

/// Samples one response per entry of `which` (prompt indices, repeated for several samples per
/// prompt); entry i draws from stream `stream0 + i`, so a rollout is reproducible.
pub fn sample(lm: &dyn CausalLm, dev: &Device, prompts: &[Prompt], which: &[usize], cfg: &SamplingConfig, stream0: u64) -> Result<Vec<Sample>> {
    let ids: Vec<Vec<u32>> = which.iter().map(|&i| prompts[i].ids.clone()).collect();
    let streams: Vec<u64> = (0..which.len() as u64).map(|i| stream0 + i).collect();
    let gens = generate(lm, dev, &ids, cfg, GenerateOptions { stream_ids: Some(&streams), ..Default::default() }).map_err(TrainError::other)?;
    Ok(which
        .iter()
        .zip(gens)
        .map(|(&p, g)| {
            let eos = g.tokens.last().is_some_and(|t| cfg.eos_token_ids.contains(t));
            let mut response_ids = g.tokens;
            if response_ids.is_empty() {
                // A zero-length response (max_new_tokens reached at once) still needs one column.
                response_ids.push(cfg.eos_token_ids.first().copied().unwrap_or(0));
            }
            Sample { prompt: p, prompt_ids: prompts[p].ids.clone(), response_ids, eos }
        })
        .collect())
}

/// Samples laid out for one forward pass: one right-padded sample per row, or (`padding_free`)
/// packed best-fit-decreasing into rows as long as the longest sample, positions restarting and
/// attention kept inside each sample (`segments`).
pub struct Packed {
    /// Samples.
    pub b: usize,
    /// Rows of the forward pass (`b` unless packed).
    pub rows: usize,
    /// Row length: the longest prompt + response.
    pub t: usize,
    /// Longest response: the per-token tensors are (B, tr).
    pub tr: usize,
    pub ids: Tensor,
    pub positions: Tensor,
    /// (rows, t) u32 sample index within its row, `u32::MAX` on padding; `None` unpacked.
    pub segments: Option<Tensor>,
    /// (B·tr,) indices into the flattened (rows·t) positions.
    pub gather: Tensor,
    /// (B, tr) response token ids (0 past the end).
    pub targets: Tensor,
    /// (B, tr) f32, 1 on real response tokens.
    pub mask: Tensor,
}

impl Packed {
    pub fn new(samples: &[&Sample], padding_free: bool, dev: &Device) -> Result<Self> {
        let b = samples.len();
        let len = |s: &Sample| s.prompt_ids.len() + s.response_ids.len();
        let t = samples.iter().map(|s| len(s)).max().unwrap_or(1).max(1);
        let tr = samples.iter().map(|s| s.response_ids.len()).max().unwrap_or(1).max(1);
        // (row, offset in the row) of each sample.
        let mut place = vec![(0usize, 0usize); b];
        let rows = if padding_free {
            let lens: Vec<usize> = samples.iter().map(|s| len(s)).collect();
            let bins = align_train::sft::pack_lengths(&lens, t);
            for (r, bin) in bins.iter().enumerate() {
                let mut off = 0;
                for &i in bin {
                    place[i] = (r, off);
                    off += lens[i];
                }
            }
            bins.len()
        } else {
            for (i, p) in place.iter_mut().enumerate() {
                *p = (i, 0);
            }
            b
        };
        let packed = rows < b;
        let (mut ids, mut positions, mut segments) = (vec![0u32; rows * t], vec![0u32; rows * t], vec![u32::MAX; rows * t]);
        let (mut gather, mut targets, mut mask) = (vec![0u32; b * tr], vec![0u32; b * tr], vec![0f32; b * tr]);
        let mut seg_in_row = vec![0u32; rows];
        for (i, s) in samples.iter().enumerate() {
            let p = s.prompt_ids.len();
            if p == 0 {
                return Err(TrainError::Config("a prompt rendered to zero tokens".into()));
            }
            let (r, off) = place[i];
            let start = r * t + off;
            let seg = seg_in_row[r];
            seg_in_row[r] += 1;
            for (j, &x) in s.prompt_ids.iter().chain(&s.response_ids).enumerate() {
                ids[start + j] = x;
                positions[start + j] = j as u32;
                segments[start + j] = seg;
            }
            for (j, &x) in s.response_ids.iter().enumerate() {
                gather[i * tr + j] = (start + p + j - 1) as u32;
                targets[i * tr + j] = x;
                mask[i * tr + j] = 1.0;
            }
            for j in s.response_ids.len()..tr {
                gather[i * tr + j] = start as u32;
            }
        }
        if !packed {
            // One sample per row: positions run on through the padding, as before packing existed.
            positions = (0..rows).flat_map(|_| 0..t as u32).collect();
        }
        Ok(Self {
            b,
            rows,
            t,
            tr,
            ids: Tensor::from_vec(ids, (rows, t), dev)?,
            positions: Tensor::from_vec(positions, (rows, t), dev)?,
            segments: if packed { Some(Tensor::from_vec(segments, (rows, t), dev)?) } else { None },
            gather: Tensor::from_vec(gather, b * tr, dev)?,
            targets: Tensor::from_vec(targets, (b, tr), dev)?,
            mask: Tensor::from_vec(mask, (b, tr), dev)?,
        })
    }

    /// Hidden states of `lm` at the response columns: (B, tr, C). Right padding needs no key
    /// mask: a causal model's outputs at real positions never see the pads after them.
    pub fn hidden(&self, lm: &dyn CausalLm) -> Result<Tensor> {
        let mut args = ForwardArgs::new(&self.ids, &self.positions);
        args.segments = self.segments.as_ref();
        let h = lm.forward_hidden(&args, None)?;
        let c = h.dim(2)?;
        Ok(h.reshape((self.rows * self.t, c))?.index_select(&self.gather, 0)?.reshape((self.b, self.tr, c))?)
    }

    /// Log-probs (B, tr) of the response tokens under `logits / temperature`, and the entropy
    /// (B, tr) of that distribution when asked (detached).
    pub fn logps(&self, lm: &dyn CausalLm, hidden: &Tensor, temperature: f64, entropy: bool) -> Result<(Tensor, Option<Tensor>)> {
        let mut logits = lm.lm_head(hidden)?.to_dtype(DType::F32)?;
        if temperature != 1.0 && temperature > 0.0 {
            logits = (logits / temperature)?;
        }
        let lp = token_logprobs(&logits, &self.targets)?;
        let ent = if entropy {
            let l = logits.detach();
            let logp = candle_nn_log_softmax(&l)?;
            Some((logp.exp()? * &logp)?.sum(D::Minus1)?.neg()?)
        } else {
            None
        };
        Ok((lp, ent))
    }
}

fn candle_nn_log_softmax(x: &Tensor) -> Result<Tensor> {
    let max = x.max_keepdim(D::Minus1)?;
    let shifted = x.broadcast_sub(&max)?;
    let lse = shifted.exp()?.sum_keepdim(D::Minus1)?.log()?;
    Ok(shifted.broadcast_sub(&lse)?)
}

/// Rows of a (B, tr) tensor as vectors cut to each sample's response length.
pub fn rows(x: &Tensor, samples: &[&Sample]) -> Result<Vec<Vec<f32>>> {
    let v = x.to_dtype(DType::F32)?.to_vec2::<f32>()?;
    Ok(v.into_iter().zip(samples).map(|(mut r, s)| {
        r.truncate(s.response_ids.len());
        r
    }).collect())
}

/// Per-sample vectors back to a right-padded (B, tr) tensor (0 past each row's end).
pub fn pad_rows(rows: &[&Vec<f32>], tr: usize, dev: &Device) -> Result<Tensor> {
    let mut v = vec![0f32; rows.len() * tr];
    for (r, row) in rows.iter().enumerate() {
        v[r * tr..r * tr + row.len()].copy_from_slice(row);
    }
    Ok(Tensor::from_vec(v, (rows.len(), tr), dev)?)
}

/// The decoded responses of `samples`, without special tokens and trimmed.
pub fn decode(tok: &Tokenizer, samples: &[Sample]) -> Result<Vec<String>> {
    samples.iter().map(|s| Ok(tok.decode(&s.response_ids, true).map_err(TrainError::other)?.trim().to_string())).collect()
}
