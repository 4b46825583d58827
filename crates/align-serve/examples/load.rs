//! Load test on loopback: N concurrent streaming clients against an in-process server.
//!
//! ```text
//! cargo run --release -p align-serve --example load -- --model runs/demo/sft/model \
//!     [--clients 1,4,16] [--requests 8] [--max-tokens 64] [--max-batch 16]
//! ```
//!
//! Each client sends `--requests` streaming chat requests one after another (different prompts,
//! temperature 1 with a per-request seed, `max_tokens` fixed) and measures time to first token
//! and total latency; throughput is all completion tokens (from `usage`) over the wall time of
//! the level. Prints a Markdown table, one row per client count.

use align_serve::{AppState, ServeConfig, ServedModel};
use futures::StreamExt;
use std::sync::Arc;
use std::time::{Duration, Instant};

struct Args {
    model: String,
    clients: Vec<usize>,
    requests: usize,
    max_tokens: usize,
    max_batch: usize,
}

fn args() -> Args {
    let mut a = Args { model: "runs/demo/sft/model".into(), clients: vec![1, 4, 16], requests: 8, max_tokens: 64, max_batch: 16 };
    let argv: Vec<String> = std::env::args().skip(1).collect();
    for pair in argv.chunks(2) {
        let v = pair.get(1).cloned().unwrap_or_default();
        match pair[0].as_str() {
            "--model" => a.model = v,
            "--clients" => a.clients = v.split(',').map(|x| x.parse().expect("--clients 1,4,16")).collect(),
            "--requests" => a.requests = v.parse().expect("--requests N"),
            "--max-tokens" => a.max_tokens = v.parse().expect("--max-tokens N"),
            "--max-batch" => a.max_batch = v.parse().expect("--max-batch N"),
            other => panic!("unknown argument {other}; see the example's doc comment"),
        }
    }
    a
}

const QUESTIONS: [&str; 8] = [
    "How do I make porridge?",
    "What is the capital of France?",
    "Give me a tip for chess.",
    "How do I water a plant?",
    "Tell me about the weather.",
    "What should I pack for a trip?",
    "How do I bake bread?",
    "What is a good name for a cat?",
];

/// One streaming request: (time to first content, total latency, completion tokens).
async fn one(client: &reqwest::Client, base: &str, i: usize, max_tokens: usize) -> (Duration, Duration, usize) {
    let req = serde_json::json!({
        "model": "m", "messages": [{"role": "user", "content": QUESTIONS[i % QUESTIONS.len()]}],
        "max_tokens": max_tokens, "temperature": 1.0, "seed": i, "stream": true,
        "stream_options": {"include_usage": true},
    });
    let t0 = Instant::now();
    let resp = client.post(format!("{base}/v1/chat/completions")).json(&req).send().await.expect("request");
    assert_eq!(resp.status(), 200);
    let mut body = resp.bytes_stream();
    let (mut ttft, mut buf, mut tokens) = (None, String::new(), 0);
    while let Some(chunk) = body.next().await {
        buf.push_str(&String::from_utf8_lossy(&chunk.expect("chunk")));
        while let Some(cut) = buf.find("\n\n") {
            let block: String = buf.drain(..cut + 2).collect();
            let Some(data) = block.trim().strip_prefix("data:").map(str::trim) else { continue };
            if data == "[DONE]" {
                continue;
            }
            let v: serde_json::Value = serde_json::from_str(data).expect("json chunk");
            if ttft.is_none() && v["choices"][0]["delta"]["content"].as_str().is_some_and(|c| !c.is_empty()) {
                ttft = Some(t0.elapsed());
            }
            if let Some(n) = v["usage"]["completion_tokens"].as_u64() {
                tokens = n as usize;
            }
        }
    }
    let total = t0.elapsed();
    (ttft.unwrap_or(total), total, tokens)
}

fn pct(sorted: &[Duration], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i].as_secs_f64() * 1000.0
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let a = args();
    let cfg = ServeConfig { max_batch: a.max_batch, max_concurrent: 1024, ..Default::default() };
    let model = ServedModel::load("m", std::path::Path::new(&a.model), &cfg).expect("loading the model");
    let params = align_models::Model::from_pretrained(&a.model, candle_core::DType::F32, &candle_core::Device::Cpu)
        .map(|m| m.num_params())
        .unwrap_or(0);
    let state = Arc::new(AppState::new(vec![model], cfg).unwrap());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(align_serve::serve(listener, state.clone(), std::future::pending()));
    let client = reqwest::Client::new();
    one(&client, &base, 0, 8).await; // warm-up

    println!("model {} ({:.2}M parameters), max_tokens {}, {} requests per client, max batch {}", a.model, params as f64 / 1e6, a.max_tokens, a.requests, a.max_batch);
    println!();
    println!("| clients | requests | tokens | wall s | tokens/s | TTFT p50 ms | TTFT p99 ms | latency p50 ms | latency p99 ms | mean batch | widest batch |");
    println!("|---|---|---|---|---|---|---|---|---|---|---|");
    for &n in &a.clients {
        let stats = &state.models[0].scheduler.stats;
        stats.max_batch_seen.store(0, std::sync::atomic::Ordering::Relaxed);
        let steps0 = stats.steps.load(std::sync::atomic::Ordering::Relaxed);
        let t0 = Instant::now();
        let tasks: Vec<_> = (0..n)
            .map(|c| {
                let (client, base) = (client.clone(), base.clone());
                let (requests, max_tokens) = (a.requests, a.max_tokens);
                tokio::spawn(async move {
                    let mut out = vec![];
                    for r in 0..requests {
                        out.push(one(&client, &base, c * requests + r, max_tokens).await);
                    }
                    out
                })
            })
            .collect();
        let mut results = vec![];
        for t in tasks {
            results.extend(t.await.unwrap());
        }
        let wall = t0.elapsed().as_secs_f64();
        let tokens: usize = results.iter().map(|r| r.2).sum();
        let mut ttft: Vec<Duration> = results.iter().map(|r| r.0).collect();
        let mut lat: Vec<Duration> = results.iter().map(|r| r.1).collect();
        ttft.sort();
        lat.sort();
        let widest = stats.max_batch_seen.load(std::sync::atomic::Ordering::Relaxed);
        let steps = stats.steps.load(std::sync::atomic::Ordering::Relaxed) - steps0;
        println!(
            "| {n} | {} | {tokens} | {wall:.2} | {:.0} | {:.0} | {:.0} | {:.0} | {:.0} | {:.1} | {widest} |",
            results.len(),
            tokens as f64 / wall,
            pct(&ttft, 0.5),
            pct(&ttft, 0.99),
            pct(&lat, 0.5),
            pct(&lat, 0.99),
            tokens as f64 / steps.max(1) as f64,
        );
    }
}
