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

/// Samples laid out for one forward pass.
pub struct Packed {
    pub b: usize,
    /// Longest prompt + response.
    pub t: usize,
    /// Longest response: the per-token tensors are (B, tr).
    pub tr: usize,
    pub ids: Tensor,
    pub positions: Tensor,
    /// (B·tr,) indices into the flattened (B·T) positions.
    pub gather: Tensor,
    /// (B, tr) response token ids (0 past the end).
    pub targets: Tensor,
    /// (B, tr) f32, 1 on real response tokens.
    pub mask: Tensor,
}

impl Packed {
    pub fn new(samples: &[&Sample], dev: &Device) -> Result<Self> {
        let b = samples.len();
        let t = samples.iter().map(|s| s.prompt_ids.len() + s.response_ids.len()).max().unwrap_or(1);
        let tr = samples.iter().map(|s| s.response_ids.len()).max().unwrap_or(1).max(1);
        let (mut ids, mut gather, mut targets, mut mask) = (vec![0u32; b * t], vec![0u32; b * tr], vec![0u32; b * tr], vec![0f32; b * tr]);
        for (r, s) in samples.iter().enumerate() {
            let p = s.prompt_ids.len();
            if p == 0 {
                return Err(TrainError::Config("a prompt rendered to zero tokens".into()));
            }
            for (j, &x) in s.prompt_ids.iter().chain(&s.response_ids).enumerate() {
                ids[r * t + j] = x;
            }
            for (j, &x) in s.response_ids.iter().enumerate() {
                gather[r * tr + j] = (r * t + p + j - 1) as u32;
                targets[r * tr + j] = x;
                mask[r * tr + j] = 1.0;
            }
            for j in s.response_ids.len()..tr {
                gather[r * tr + j] = (r * t) as u32;
            }
        }
        let positions: Vec<u32> = (0..b).flat_map(|_| 0..t as u32).collect();
        Ok(Self {
            b,
            t,
            tr,
            ids: Tensor::from_vec(ids, (b, t), dev)?,
            positions: Tensor::from_vec(positions, (b, t), dev)?,
            gather: Tensor::from_vec(gather, b * tr, dev)?,
            targets: Tensor::from_vec(targets, (b, tr), dev)?,
            mask: Tensor::from_vec(mask, (b, tr), dev)?,
        })
    }

    /// Hidden states of `lm` at the response columns: (B, tr, C). Right padding needs no key
    /// mask: a causal model's outputs at real positions never see the pads after them.
    pub fn hidden(&self, lm: &dyn CausalLm) -> Result<Tensor> {
        let h = lm.forward_hidden(&ForwardArgs::new(&self.ids, &self.positions), None)?;
        let c = h.dim(2)?;
        Ok(h.reshape((self.b * self.t, c))?.index_select(&self.gather, 0)?.reshape((self.b, self.tr, c))?)
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
