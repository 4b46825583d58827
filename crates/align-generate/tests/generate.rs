//! Mechanics of batched generation on tiny random models (Llama and GPT-2): a row's output does
//! not depend on its batch mates, the KV cache changes nothing, and every stopping rule holds.

mod common;

use align_generate::{generate_model, sampling, FinishReason, GenerateError, GenerateOptions, Generation, SamplingConfig};
use align_models::{ForwardArgs, Model};
use candle_core::{Device, Tensor};
use common::{prompts, VOCAB};

const CTX: usize = 48;

fn llama() -> Model {
    common::llama(CTX)
}

fn gpt2() -> Model {
    common::gpt2(CTX)
}

fn run(m: &Model, p: &[Vec<u32>], cfg: &SamplingConfig) -> Vec<Generation> {
    generate_model(m, p, cfg, GenerateOptions::default()).unwrap()
}

fn assert_same(batched: &Generation, alone: &Generation, what: &str) {
    assert_eq!(batched.tokens, alone.tokens, "{what}: tokens differ");
    assert_eq!(batched.finish_reason, alone.finish_reason, "{what}");
    for (a, b) in batched.logprobs.iter().zip(&alone.logprobs) {
        assert!((a - b).abs() < 1e-4, "{what}: logprob {a} vs {b}");
    }
}

fn batch_equals_alone(m: &Model, cfg: &SamplingConfig) {
    let p = prompts();
    let batched = run(m, &p, cfg);
    for (i, prompt) in p.iter().enumerate() {
        let ids = [i as u64];
        let opts = GenerateOptions { stream_ids: Some(&ids), ..Default::default() };
        let alone = generate_model(m, std::slice::from_ref(prompt), cfg, opts).unwrap();
        assert_same(&batched[i], &alone[0], &format!("row {i}"));
        assert_eq!(batched[i].tokens.len(), cfg.max_new_tokens);
    }
    // Rows differ from each other (the test is not vacuous).
    assert!(batched.windows(2).any(|w| w[0].tokens != w[1].tokens));
}

#[test]
fn greedy_row_is_the_same_alone_or_batched() {
    let cfg = SamplingConfig { max_new_tokens: 12, ..SamplingConfig::greedy() };
    batch_equals_alone(&llama(), &cfg);
    batch_equals_alone(&gpt2(), &cfg);
}

#[test]
fn sampled_row_is_the_same_alone_or_batched() {
    let cfg = SamplingConfig { max_new_tokens: 12, top_k: 0, seed: 3, ..Default::default() };
    batch_equals_alone(&llama(), &cfg);
    batch_equals_alone(&gpt2(), &cfg);
    let cfg = SamplingConfig {
        max_new_tokens: 12,
        temperature: 0.7,
        top_k: 20,
        top_p: 0.9,
        min_p: 0.05,
        repetition_penalty: 1.3,
        seed: 5,
        ..Default::default()
    };
    batch_equals_alone(&llama(), &cfg);
}

#[test]
fn seeds_and_streams_change_samples_reproducibly() {
    let m = llama();
    let p = vec![vec![1, 2, 3]; 3];
    let cfg = SamplingConfig { max_new_tokens: 16, top_k: 0, seed: 1, ..Default::default() };
    let a = run(&m, &p, &cfg);
    assert_eq!(a, run(&m, &p, &cfg));
    // Same prompt, different row streams: different samples.
    assert_ne!(a[0].tokens, a[1].tokens);
    let b = run(&m, &p, &SamplingConfig { seed: 2, ..cfg.clone() });
    assert_ne!(a[0].tokens, b[0].tokens);
}

/// Greedy decoding without a cache: the whole sequence re-run every step.
fn greedy_no_cache(m: &Model, prompt: &[u32], n: usize) -> (Vec<u32>, Vec<f32>) {
    let mut seq = prompt.to_vec();
    let mut lps = vec![];
    for _ in 0..n {
        let ids = Tensor::new(seq.as_slice(), &Device::Cpu).unwrap().unsqueeze(0).unwrap();
        let pos = align_models::causal_lm::default_positions(1, seq.len(), 0, &Device::Cpu).unwrap();
        let logits = m.lm.forward(&ForwardArgs::new(&ids, &pos), None).unwrap(); // (1, T, V)
        let last = logits.squeeze(0).unwrap().get(seq.len() - 1).unwrap().to_vec1::<f32>().unwrap();
        let t = sampling::argmax(&last);
        lps.push(sampling::log_prob(&last, t));
        seq.push(t);
    }
    (seq[prompt.len()..].to_vec(), lps)
}

#[test]
fn kv_cache_equals_recomputation() {
    for m in [llama(), gpt2()] {
        let cfg = SamplingConfig { max_new_tokens: 10, ..SamplingConfig::greedy() };
        let p = prompts();
        let got = run(&m, &p, &cfg);
        for (i, prompt) in p.iter().enumerate() {
            let (tokens, lps) = greedy_no_cache(&m, prompt, 10);
            assert_eq!(got[i].tokens, tokens, "row {i}");
            for (a, b) in got[i].logprobs.iter().zip(&lps) {
                assert!((a - b).abs() < 1e-4);
            }
        }
    }
}

#[test]
fn eos_stops_only_its_row_and_others_continue_unchanged() {
    let m = llama();
    let p = prompts();
    let base = run(&m, &p, &SamplingConfig { max_new_tokens: 12, ..SamplingConfig::greedy() });
    let eos = base[0].tokens[3];
    let cfg = SamplingConfig { max_new_tokens: 12, eos_token_ids: vec![eos], ..SamplingConfig::greedy() };
    let got = run(&m, &p, &cfg);
    for (g, b) in got.iter().zip(&base) {
        match b.tokens.iter().position(|&t| t == eos) {
            Some(k) => {
                assert_eq!(g.tokens, b.tokens[..=k], "stops right after EOS, EOS kept");
                assert_eq!(g.finish_reason, FinishReason::Eos);
            }
            None => {
                assert_eq!(g.tokens, b.tokens);
                assert_eq!(g.finish_reason, FinishReason::Length);
            }
        }
    }
    assert!(got[0].tokens.len() <= 4);
    assert!(got.iter().any(|g| g.finish_reason == FinishReason::Length), "some row must outlive row 0");
}

#[test]
fn stop_string_spanning_tokens_stops_the_row() {
    let m = llama();
    let p = prompts();
    let base = run(&m, &p, &SamplingConfig { max_new_tokens: 12, ..SamplingConfig::greedy() });
    let decode = |ids: &[u32]| ids.iter().map(|t| format!("<{t}>")).collect::<String>();
    let stop = format!("<{}><{}>", base[1].tokens[4], base[1].tokens[5]);
    let cfg = SamplingConfig { max_new_tokens: 12, stop_strings: vec![stop.clone()], ..SamplingConfig::greedy() };
    let got = generate_model(&m, &p, &cfg, GenerateOptions { decode: Some(&decode), ..Default::default() }).unwrap();
    for (g, b) in got.iter().zip(&base) {
        let k = b.tokens.windows(2).position(|w| format!("<{}><{}>", w[0], w[1]) == stop);
        match k {
            Some(k) => {
                assert_eq!(g.tokens, b.tokens[..k + 2]);
                assert_eq!(g.finish_reason, FinishReason::Stop);
                assert_eq!(g.stop_string.as_deref(), Some(stop.as_str()));
            }
            None => assert_eq!(g.tokens, b.tokens),
        }
    }
    assert_eq!(got[1].finish_reason, FinishReason::Stop);
    assert!(got[1].tokens.len() <= 6);
    // Stop strings without a decode callback are a config error.
    assert!(matches!(generate_model(&m, &p, &cfg, GenerateOptions::default()), Err(GenerateError::Config(_))));
}

#[test]
fn length_limits() {
    let m = llama();
    let cfg = SamplingConfig { max_new_tokens: 5, top_k: 0, ..Default::default() };
    for g in run(&m, &prompts(), &cfg) {
        assert_eq!(g.tokens.len(), 5);
        assert_eq!(g.logprobs.len(), 5);
        assert_eq!(g.finish_reason, FinishReason::Length);
        assert!(g.logprobs.iter().all(|l| l.is_finite() && *l <= 0.0));
    }
    // The context bounds prompt + completion: 3 tokens of room, then 0 (a full prompt).
    // The short row runs on after the long one stops, so the cache outgrows the context while
    // every position stays inside it (GPT-2's learned positions would fail otherwise).
    let cfg = SamplingConfig { max_new_tokens: 10, ..SamplingConfig::greedy() };
    for m in [llama(), gpt2()] {
        let got = run(&m, &[vec![1; CTX - 3], vec![2; CTX], vec![3]], &cfg);
        assert_eq!(got[0].tokens.len(), 3);
        assert_eq!(got[0].finish_reason, FinishReason::Length);
        assert!(got[1].tokens.is_empty());
        assert_eq!(got[1].finish_reason, FinishReason::Length);
        assert_eq!(got[2].tokens.len(), 10);
        assert_same(&got[2], &run(&m, &[vec![3]], &cfg)[0], "short row");
    }
    // max_new_tokens = 0 runs nothing.
    let got = run(&m, &prompts(), &SamplingConfig { max_new_tokens: 0, ..Default::default() });
    assert!(got.iter().all(|g| g.tokens.is_empty() && g.finish_reason == FinishReason::Length));
}

#[test]
fn bad_prompts_are_clear_errors() {
    let m = llama();
    let cfg = SamplingConfig::greedy();
    let err = generate_model(&m, &[vec![1], vec![1; CTX + 1]], &cfg, GenerateOptions::default()).unwrap_err();
    assert!(matches!(err, GenerateError::PromptTooLong { row: 1, len, max: CTX } if len == CTX + 1), "{err}");
    assert!(err.to_string().contains("longer than the model's context"));
    let err = generate_model(&m, &[vec![]], &cfg, GenerateOptions::default()).unwrap_err();
    assert!(matches!(err, GenerateError::EmptyPrompt { row: 0 }));
    let err = generate_model(&m, &[vec![VOCAB as u32]], &cfg, GenerateOptions::default()).unwrap_err();
    assert!(matches!(err, GenerateError::TokenOutOfRange { row: 0, .. }));
    let ids = [0u64];
    let opts = GenerateOptions { stream_ids: Some(&ids), ..Default::default() };
    assert!(matches!(generate_model(&m, &prompts(), &cfg, opts), Err(GenerateError::Mismatch { .. })));
    assert!(generate_model(&m, &[], &cfg, GenerateOptions::default()).unwrap().is_empty());
}

#[test]
fn on_token_streams_every_token_in_order() {
    let m = llama();
    let p = prompts();
    let base = run(&m, &p, &SamplingConfig { max_new_tokens: 8, ..SamplingConfig::greedy() });
    let eos = base[2].tokens[2];
    let cfg = SamplingConfig { max_new_tokens: 8, eos_token_ids: vec![eos], ..SamplingConfig::greedy() };
    let mut streamed = vec![vec![]; p.len()];
    let mut on_token = |row: usize, t: u32| streamed[row].push(t);
    let got = generate_model(&m, &p, &cfg, GenerateOptions { on_token: Some(&mut on_token), ..Default::default() }).unwrap();
    for (s, g) in streamed.iter().zip(&got) {
        assert_eq!(s, &g.tokens);
    }
}
