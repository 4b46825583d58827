//! Continuous batching gives each request the tokens it gets alone: in the engine (sequences
//! joining and leaving mid-flight, against `generate` on one prompt) and through the server
//! (concurrent HTTP requests against the same requests one at a time).

mod common;

use align_generate::engine::{Engine, SeqRequest, TokenEvent};
use align_generate::{generate_model, FinishReason, GenerateOptions, SamplingConfig};
use align_models::config::llama_from_dims;
use align_models::{Gpt2Config, Model, ModelConfig};
use align_serve::ServeConfig;
use candle_core::Device;
use common::*;
use serde_json::{json, Value};
use std::collections::HashMap;

fn llama() -> Model {
    Model::from_config(ModelConfig::Llama(llama_from_dims(64, 32, 2, 4, 2, 64)), 7, &Device::Cpu).unwrap()
}

fn gpt2() -> Model {
    let cfg = Gpt2Config {
        vocab_size: 64,
        n_embd: 32,
        n_layer: 2,
        n_head: 4,
        n_positions: 64,
        n_inner: None,
        layer_norm_epsilon: 1e-5,
        bos_token_id: None,
        eos_token_id: None,
    };
    Model::from_config(ModelConfig::Gpt2(cfg), 11, &Device::Cpu).unwrap()
}

/// Prompts of different lengths (one repeated, to exercise shared prefills).
fn prompts() -> Vec<Vec<u32>> {
    vec![vec![5, 9, 2], vec![1, 2, 3, 4, 5, 6, 7, 8, 9], vec![42], vec![7, 7, 30, 31, 12], vec![5, 9, 2], vec![3; 14]]
}

/// Each sequence's tokens, logprobs and finish reason.
type Outputs = HashMap<u64, (Vec<u32>, Vec<f32>, Option<FinishReason>)>;

/// Runs `prompts` through an engine, admitting prompt `i` at step `join[i]`, removing the
/// sequence `cancel` at step 4, and a few different `max_new_tokens`; returns each sequence's
/// tokens and logprobs, and the largest batch seen.
fn run_engine(m: &Model, cfg: &SamplingConfig, join: &[usize], cancel: u64) -> (Outputs, usize) {
    let mut e = Engine::new(m);
    let mut out: Outputs = HashMap::new();
    let record = |evs: Vec<TokenEvent>, out: &mut HashMap<_, _>| {
        for ev in evs {
            let o: &mut (Vec<u32>, Vec<f32>, Option<FinishReason>) = out.entry(ev.seq).or_default();
            o.0.push(ev.token);
            o.1.push(ev.logprob);
            o.2 = ev.finish;
        }
    };
    let mut widest = 0;
    for step in 0.. {
        let now: Vec<(u64, SeqRequest)> = (0..prompts().len())
            .filter(|&i| join[i] == step)
            .map(|i| {
                let c = SamplingConfig { max_new_tokens: 10 + i, ..cfg.clone() };
                (i as u64, SeqRequest { prompt: prompts()[i].clone(), cfg: c, stream_id: i as u64, top_logprobs: 0 })
            })
            .collect();
        let evs = e.add(now).unwrap();
        record(evs, &mut out);
        if step == 4 {
            e.remove(&[cancel]).unwrap();
        }
        widest = widest.max(e.len());
        let evs = e.step().unwrap();
        record(evs, &mut out);
        if e.is_empty() && step > *join.iter().max().unwrap() {
            break;
        }
    }
    (out, widest)
}

fn engine_matches_generate(m: &Model, cfg: &SamplingConfig) {
    let join = [0, 0, 2, 3, 3, 7];
    let cancel = 1;
    let (out, widest) = run_engine(m, cfg, &join, cancel);
    assert!(widest >= 4, "sequences ran together (widest batch {widest})");
    for (i, p) in prompts().iter().enumerate() {
        let c = SamplingConfig { max_new_tokens: 10 + i, ..cfg.clone() };
        let ids = [i as u64];
        let alone = generate_model(m, std::slice::from_ref(p), &c, GenerateOptions { stream_ids: Some(&ids), ..Default::default() }).unwrap();
        let (toks, lps, finish) = &out[&(i as u64)];
        if i as u64 == cancel {
            // Cancelled at step 4: its tokens so far are a prefix of the full answer.
            assert!(toks.len() < alone[0].tokens.len() && finish.is_none());
            assert_eq!(toks[..], alone[0].tokens[..toks.len()], "cancelled row {i}");
            continue;
        }
        assert_eq!(*toks, alone[0].tokens, "row {i}: batched tokens differ from alone");
        assert_eq!(*finish, Some(alone[0].finish_reason));
        for (a, b) in lps.iter().zip(&alone[0].logprobs) {
            assert!((a - b).abs() < 1e-4, "row {i}: logprob {a} vs {b}");
        }
    }
    // Rows differ (the comparison is not vacuous).
    assert_ne!(out[&0].0, out[&2].0);
}

#[test]
fn engine_rows_equal_generate_alone_greedy() {
    engine_matches_generate(&llama(), &SamplingConfig::greedy());
    engine_matches_generate(&gpt2(), &SamplingConfig::greedy());
}

#[test]
fn engine_rows_equal_generate_alone_sampled() {
    let cfg = SamplingConfig { temperature: 0.8, top_k: 20, top_p: 0.95, min_p: 0.02, repetition_penalty: 1.2, seed: 9, ..Default::default() };
    engine_matches_generate(&llama(), &cfg);
    engine_matches_generate(&gpt2(), &cfg);
}

#[test]
fn engine_stops_on_eos_and_context() {
    let m = llama();
    // Whatever greedy picks first becomes the EOS: the row ends at once, with that token kept.
    let mut e = Engine::new(&m);
    let probe = e.add(vec![(0, SeqRequest { prompt: vec![1, 2], cfg: SamplingConfig::greedy(), stream_id: 0, top_logprobs: 2 })]).unwrap();
    let first = probe[0].token;
    assert_eq!(probe[0].top_logprobs[0].0, first);
    e.clear();
    let cfg = SamplingConfig { eos_token_ids: vec![first], ..SamplingConfig::greedy() };
    let ev = e.add(vec![(1, SeqRequest { prompt: vec![1, 2], cfg, stream_id: 0, top_logprobs: 0 })]).unwrap();
    assert_eq!(ev[0].finish, Some(FinishReason::Eos));
    assert!(e.is_empty());
    // A prompt one short of the context gets exactly one token.
    let long = vec![3u32; 63];
    let ev = e.add(vec![(2, SeqRequest { prompt: long.clone(), cfg: SamplingConfig::greedy(), stream_id: 0, top_logprobs: 0 })]).unwrap();
    assert_eq!(ev[0].finish, Some(FinishReason::Length));
    // Invalid requests are refused before anything runs.
    let bad = SeqRequest { prompt: vec![3u32; 64], cfg: SamplingConfig::greedy(), stream_id: 0, top_logprobs: 0 };
    assert!(e.check(&bad).is_err());
    assert!(e.add(vec![(3, bad)]).is_err());
    let oov = SeqRequest { prompt: vec![999], cfg: SamplingConfig::greedy(), stream_id: 0, top_logprobs: 0 };
    assert!(e.check(&oov).is_err());
}

/// The answer's tokens, spelled by the logprobs (one entry per generated token).
fn tokens_of(v: &Value) -> Vec<String> {
    v["choices"][0]["logprobs"]["content"].as_array().unwrap().iter().map(|t| t["token"].as_str().unwrap().to_string()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_requests_get_the_tokens_they_get_alone() {
    // `s` answers one request at a time; `g` gathers the first 4 concurrent requests into one batch
    // (its idle wait ends as soon as 4 are queued), and the other 2 join that running batch when its
    // shortest rows finish (each request asks a different length). No timing decides the batching.
    let s = start(ServeConfig::default()).await;
    let g = start(ServeConfig { max_batch: 4, batch_wait: std::time::Duration::from_secs(60), ..Default::default() }).await;
    let asks = ["Where is Rome?", "Count.", "The small red fox said hello to the cat on the mat.", "Hi", "Paris", "Numbers: one two"];
    let req = |i: usize, temperature: f64| {
        json!({"model": "raw", "messages": [{"role": "user", "content": asks[i]}], "max_tokens": 16 + 3 * i,
               "temperature": temperature, "seed": 100 + i, "logprobs": true})
    };
    let widest = |s: &common::Server| s.state.models[0].scheduler.stats.max_batch_seen.load(std::sync::atomic::Ordering::Relaxed);
    for temperature in [0.0, 1.0] {
        let mut alone = vec![];
        for i in 0..asks.len() {
            let (st, v) = post(&s.base, "/v1/chat/completions", req(i, temperature)).await;
            assert_eq!(st, 200, "{v}");
            alone.push(v);
        }
        assert_eq!(widest(&s), 1, "one request at a time runs alone");
        // Not vacuous: the answers differ, and are not one token repeated.
        let toks: Vec<Vec<String>> = alone.iter().map(tokens_of).collect();
        assert!(toks.iter().all(|t| t.iter().any(|x| *x != t[0])), "{toks:?}");
        assert!(toks.windows(2).all(|w| w[0] != w[1]), "{toks:?}");
        let steps_before = g.state.models[0].scheduler.stats.steps.load(std::sync::atomic::Ordering::Relaxed);
        let tasks: Vec<_> = (0..asks.len())
            .map(|i| {
                let (base, r) = (g.base.clone(), req(i, temperature));
                tokio::spawn(async move { post(&base, "/v1/chat/completions", r).await })
            })
            .collect();
        for (i, t) in tasks.into_iter().enumerate() {
            let (st, v) = t.await.unwrap();
            assert_eq!(st, 200, "{v}");
            assert_eq!(tokens_of(&v), tokens_of(&alone[i]), "request {i} at temperature {temperature}");
            assert_eq!(v["choices"][0]["message"]["content"], alone[i]["choices"][0]["message"]["content"]);
        }
        assert_eq!(widest(&g), 4, "the concurrent requests were batched");
        // Run one after another, the 6 requests would take one decode step per generated token.
        let steps = g.state.models[0].scheduler.stats.steps.load(std::sync::atomic::Ordering::Relaxed) - steps_before;
        let tokens: usize = alone.iter().map(|v| tokens_of(v).len()).sum();
        assert!((steps as usize) < tokens, "{steps} decode steps for {tokens} tokens: the rows shared steps");
    }
}
