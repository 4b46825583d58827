//! KL divergence of a policy from a reference model on a prompt set, as RLHF papers report it
//! (InstructGPT's and TRL's `objective/kl`: how far alignment moved the model).
//!
//! For each prompt the policy samples responses at temperature 1 with no filtering (the model's
//! own distribution, so the estimate is of the models, not of a decoding setting). For a response
//! `y` to prompt `x` the sequence KL `KL(π(·|x) ‖ π_ref(·|x))` is estimated two ways:
//! - `exact`: `Σ_t KL(π(·|x, y<t) ‖ π_ref(·|x, y<t))`, the full-vocabulary KL of the two
//!   next-token distributions summed over the response's positions (never negative; lower
//!   variance, the same expectation);
//! - `k1`: `Σ_t log π(y_t|·) − log π_ref(y_t|·)` (Schulman's k1, what TRL logs as `objective/kl`).
//!
//! Both are averaged over responses; the per-prompt means give a bootstrap interval.

use crate::respond::{encode_prompts, with_stop_tokens, PromptStyle};
use crate::winrate::bootstrap_ci;
use crate::{EvalError, Result};
use align_data::Tokenizer;
use align_generate::{generate_model, GenerateOptions, SamplingConfig};
use align_models::causal_lm::default_positions;
use align_models::{ForwardArgs, Model};
use candle_core::{DType, Tensor, D};
use serde::{Deserialize, Serialize};

/// KL of a policy from a reference on one prompt set.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct KlReport {
    /// Name of the reference model (set by the caller; empty when unnamed).
    #[serde(default)]
    pub reference: String,
    /// Mean over responses of the summed per-token exact KL, in nats.
    pub kl: f64,
    /// 95% bootstrap interval of `kl` over prompts.
    pub ci_low: f64,
    pub ci_high: f64,
    /// Mean over responses of the summed log-ratio of the sampled tokens (k1), in nats.
    pub kl_k1: f64,
    /// Responses sampled (prompts × samples per prompt).
    pub responses: usize,
    /// Mean response length in tokens (EOS included when generated).
    pub mean_tokens: f64,
    /// Mean exact KL per prompt, in prompt order.
    pub per_prompt: Vec<f64>,
}

/// Per-token exact KL and log-ratio of the sampled tokens: `logp` and `logq` are (T, V) rows of
/// log-probabilities of the policy and the reference, `tokens` the T sampled ids.
pub fn token_kls(logp: &[Vec<f32>], logq: &[Vec<f32>], tokens: &[u32]) -> Vec<(f64, f64)> {
    logp.iter()
        .zip(logq)
        .zip(tokens)
        .map(|((p, q), &y)| {
            let exact: f64 = p.iter().zip(q).map(|(&a, &b)| (a as f64).exp() * (a as f64 - b as f64)).sum();
            (exact.max(0.0), p[y as usize] as f64 - q[y as usize] as f64)
        })
        .collect()
}

/// Log-softmax rows of `model` at the positions that predict `response` after `prompt`:
/// (len(response), V).
fn response_logprobs(model: &Model, rows: &[(Vec<u32>, Vec<u32>)]) -> Result<Vec<Vec<Vec<f32>>>> {
    let dev = &model.device;
    let t = rows.iter().map(|(p, r)| p.len() + r.len()).max().unwrap_or(1);
    let b = rows.len();
    // Right padding: with causal attention a real token never sees the padding after it.
    let mut ids = vec![0u32; b * t];
    for (i, (p, r)) in rows.iter().enumerate() {
        ids[i * t..i * t + p.len()].copy_from_slice(p);
        ids[i * t + p.len()..i * t + p.len() + r.len()].copy_from_slice(r);
    }
    let input = Tensor::from_vec(ids, (b, t), dev)?;
    let positions = default_positions(b, t, 0, dev)?;
    let logits = model.lm.forward(&ForwardArgs::new(&input, &positions), None)?.to_dtype(DType::F32)?;
    let logp = log_softmax_rows(&logits)?;
    let mut out = Vec::with_capacity(b);
    for (i, (p, r)) in rows.iter().enumerate() {
        if r.is_empty() {
            out.push(vec![]);
            continue;
        }
        // Token j of the response is predicted at position len(prompt) + j − 1.
        let rowp = logp.get(i)?.narrow(0, p.len() - 1, r.len())?;
        out.push(rowp.to_vec2::<f32>()?);
    }
    Ok(out)
}

/// `x − logsumexp(x)` over the last dimension.
fn log_softmax_rows(x: &Tensor) -> candle_core::Result<Tensor> {
    x.broadcast_sub(&x.log_sum_exp(D::Minus1)?.unsqueeze(D::Minus1)?)
}

/// Samples `samples` responses per prompt from `policy` (temperature 1, no top-k/top-p; `max_new_tokens`
/// and `seed` from `cfg`) and measures their KL from `reference`, `batch_size` sequences per pass.
/// Both models must share the tokenizer `tok` (same vocabulary).
pub fn kl_to_reference(
    policy: &Model,
    reference: &Model,
    tok: &Tokenizer,
    prompts: &[String],
    style: PromptStyle,
    cfg: &SamplingConfig,
    samples: usize,
    batch_size: usize,
) -> Result<KlReport> {
    let (vp, vr) = (policy.lm.vocab_size(), reference.lm.vocab_size());
    if vp != vr {
        return Err(EvalError::Invalid(format!("the policy's vocabulary ({vp}) differs from the reference's ({vr}): KL needs the same tokenizer")));
    }
    if prompts.is_empty() || samples == 0 {
        return Err(EvalError::Invalid("KL needs at least one prompt and one sample".into()));
    }
    let base = SamplingConfig { temperature: 1.0, top_k: 0, top_p: 1.0, min_p: 0.0, repetition_penalty: 1.0, ..cfg.clone() };
    let cfg = with_stop_tokens(&base, tok, style);
    let encoded = encode_prompts(tok, prompts, style)?;
    let max_len = policy.lm.max_positions().min(reference.lm.max_positions());
    // (prompt index, prompt ids) for every sample, prompt-major.
    let jobs: Vec<(usize, &Vec<u32>)> = encoded.iter().enumerate().flat_map(|(i, p)| std::iter::repeat_n((i, p), samples)).collect();
    let mut per_prompt = vec![(0.0f64, 0usize); prompts.len()];
    let (mut sum_exact, mut sum_k1, mut tokens) = (0.0f64, 0.0f64, 0usize);
    let bs = batch_size.max(1);
    for (c, chunk) in jobs.chunks(bs).enumerate() {
        let stream: Vec<u64> = (0..chunk.len()).map(|i| (c * bs + i) as u64).collect();
        let ps: Vec<Vec<u32>> = chunk.iter().map(|(_, p)| (*p).clone()).collect();
        if let Some(p) = ps.iter().find(|p| p.len() + 1 > max_len) {
            return Err(EvalError::Invalid(format!("a prompt of {} tokens leaves no room in the context of {max_len}", p.len())));
        }
        let opts = GenerateOptions { decode: None, on_token: None, stream_ids: Some(&stream) };
        let gens = generate_model(policy, &ps, &cfg, opts)?;
        let rows: Vec<(Vec<u32>, Vec<u32>)> = ps
            .into_iter()
            .zip(gens)
            .map(|(p, g)| {
                let room = max_len - p.len();
                let mut r = g.tokens;
                r.truncate(room);
                (p, r)
            })
            .collect();
        let lp = response_logprobs(policy, &rows)?;
        let lq = response_logprobs(reference, &rows)?;
        for (k, ((i, _), (_, r))) in chunk.iter().zip(&rows).enumerate() {
            let t = token_kls(&lp[k], &lq[k], r);
            let exact: f64 = t.iter().map(|x| x.0).sum();
            sum_exact += exact;
            sum_k1 += t.iter().map(|x| x.1).sum::<f64>();
            tokens += r.len();
            per_prompt[*i].0 += exact;
            per_prompt[*i].1 += 1;
        }
    }
    let n = jobs.len();
    let per_prompt: Vec<f64> = per_prompt.iter().map(|(s, c)| s / *c as f64).collect();
    let (ci_low, ci_high) = bootstrap_ci(&per_prompt, 1000, cfg.seed);
    Ok(KlReport {
        reference: String::new(),
        kl: sum_exact / n as f64,
        ci_low,
        ci_high,
        kl_k1: sum_k1 / n as f64,
        responses: n,
        mean_tokens: tokens as f64 / n as f64,
        per_prompt,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn log_softmax(x: &[f32]) -> Vec<f32> {
        let m = x.iter().cloned().fold(f32::NEG_INFINITY, f32::max);
        let lse = m + x.iter().map(|v| (v - m).exp()).sum::<f32>().ln();
        x.iter().map(|v| v - lse).collect()
    }

    #[test]
    fn token_kl_by_hand() {
        // p = (0.5, 0.5), q = (0.25, 0.75): KL = 0.5 ln 2 + 0.5 ln(2/3); k1 of token 0 = ln 2.
        let p = vec![vec![0.5f32.ln(), 0.5f32.ln()]];
        let q = vec![vec![0.25f32.ln(), 0.75f32.ln()]];
        let t = token_kls(&p, &q, &[0]);
        let want = 0.5 * 2f64.ln() + 0.5 * (2.0f64 / 3.0).ln();
        assert!((t[0].0 - want).abs() < 1e-6, "{t:?}");
        assert!((t[0].1 - 2f64.ln()).abs() < 1e-6);
        // Identical distributions: both zero.
        let same = token_kls(&p, &p, &[1]);
        assert_eq!(same[0], (0.0, 0.0));
        // Three-way, against a direct sum.
        let (a, b) = (log_softmax(&[1.0, -2.0, 0.5]), log_softmax(&[0.0, 0.3, -1.0]));
        let direct: f64 = (0..3).map(|i| (a[i] as f64).exp() * (a[i] as f64 - b[i] as f64)).sum();
        let t = token_kls(&[a.clone()], &[b.clone()], &[2]);
        assert!((t[0].0 - direct).abs() < 1e-9 && direct > 0.0);
        assert!((t[0].1 - (a[2] - b[2]) as f64).abs() < 1e-9);
    }

    fn tiny(seed: u64, tok: &Tokenizer) -> Model {
        use align_models::config::{llama_from_dims, ModelConfig};
        Model::from_config(ModelConfig::Llama(llama_from_dims(tok.vocab_size(), 32, 2, 4, 2, 64)), seed, &candle_core::Device::Cpu).unwrap()
    }

    #[test]
    fn kl_of_a_model_to_itself_is_zero_and_one_token_kl_matches_the_closed_form() {
        let tok = Tokenizer::from_dir(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/data/tokenizers/gpt2")).unwrap();
        let (a, b) = (tiny(1, &tok), tiny(2, &tok));
        let prompts: Vec<String> = ["The cat sat", "Once upon a time", "Q: 2+2?\nA:"].iter().map(|s| s.to_string()).collect();
        let cfg = SamplingConfig { max_new_tokens: 6, seed: 3, ..SamplingConfig::default() };
        let same = kl_to_reference(&a, &a, &tok, &prompts, PromptStyle::Raw, &cfg, 2, 4).unwrap();
        assert_eq!((same.kl, same.kl_k1, same.responses), (0.0, 0.0, 6));
        assert!(same.mean_tokens > 1.0);
        // One new token: the exact KL of each response is the KL of the two next-token
        // distributions after the prompt, whatever token was sampled.
        let one = SamplingConfig { max_new_tokens: 1, ..cfg.clone() };
        let r = kl_to_reference(&a, &b, &tok, &prompts, PromptStyle::Raw, &one, 3, 2).unwrap();
        let dev = candle_core::Device::Cpu;
        for (i, p) in prompts.iter().enumerate() {
            let ids = tok.encode(p, true).unwrap();
            let n = ids.len();
            let input = Tensor::new(ids.as_slice(), &dev).unwrap().unsqueeze(0).unwrap();
            let pos = default_positions(1, n, 0, &dev).unwrap();
            let last = |m: &Model| -> Vec<f32> {
                let l: Vec<Vec<f32>> = m.lm.forward(&ForwardArgs::new(&input, &pos), None).unwrap().squeeze(0).unwrap().to_vec2().unwrap();
                log_softmax(&l[n - 1])
            };
            let (lp, lq) = (last(&a), last(&b));
            let want: f64 = lp.iter().zip(&lq).map(|(&x, &y)| (x as f64).exp() * (x as f64 - y as f64)).sum();
            assert!(want > 1e-4);
            assert!((r.per_prompt[i] - want).abs() < 1e-4 * want.max(1.0), "prompt {i}: {} vs {want}", r.per_prompt[i]);
        }
        assert_eq!((r.responses, r.mean_tokens), (9, 1.0));
        assert!(r.ci_low <= r.kl && r.kl <= r.ci_high);
        // Different tokenizers' vocabularies are refused.
        let other = Model::from_config(align_models::config::ModelConfig::Llama(align_models::config::llama_from_dims(100, 32, 2, 4, 2, 64)), 1, &dev).unwrap();
        assert!(kl_to_reference(&a, &other, &tok, &prompts, PromptStyle::Raw, &one, 1, 2).is_err());
    }
}
