//! Generation speed on long completions, where the KV cache's cost per token shows: a random
//! tiny Llama with the shapes of `align bench`'s tiny preset (d_model 256, 4 layers, 4 heads,
//! vocab 4096) but a longer context, greedy, 16-token prompts, batch 1 and 8, best of `reps`.
//!
//! It also prints checksums of the tokens and of the log-probabilities' bits of three runs —
//! `generate` greedy and sampled over left-padded prompts, and an `Engine` whose sequences join
//! and leave mid-way — so that two builds can be checked for identical output.
//!
//! ```text
//! cargo run --release -p align-generate --example generate_bench -- [NEW_TOKENS=512] [REPS=3] [CTX=1024]
//! ```
//!
//! Thread counts come from `RAYON_NUM_THREADS` / `CANDLE_NUM_THREADS` as usual.

use align_generate::engine::{Engine, SeqRequest, TokenEvent};
use align_generate::{generate_model, GenerateOptions, Generation, SamplingConfig};
use align_models::config::llama_from_dims;
use align_models::{Model, ModelConfig};
use candle_core::Device;
use std::time::Instant;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

const VOCAB: usize = 4096;
const PROMPT: usize = 16;


/// FNV-1a over a stream of u32s.
fn fnv(words: impl IntoIterator<Item = u32>) -> u64 {
    words.into_iter().fold(0xcbf2_9ce4_8422_2325, |h, w| (h ^ w as u64).wrapping_mul(0x0100_0000_01b3))
}

fn checksum(gens: &[Generation]) -> (u64, u64) {
    let toks = fnv(gens.iter().flat_map(|g| g.tokens.iter().copied()));
    let lps = fnv(gens.iter().flat_map(|g| g.logprobs.iter().map(|x| x.to_bits())));
    (toks, lps)
}

fn main() -> anyhow::Result<()> {
    let arg = |i: usize, default: usize| -> anyhow::Result<usize> {
        Ok(std::env::args().nth(i).map(|s| s.parse()).transpose()?.unwrap_or(default))
    };
    let (new_tokens, reps, ctx) = (arg(1, 512)?, arg(2, 3)?.max(1), arg(3, 1024)?);
    anyhow::ensure!(PROMPT + new_tokens <= ctx, "prompt {PROMPT} + {new_tokens} new tokens exceed the context {ctx}");
    let model = Model::from_config(ModelConfig::Llama(llama_from_dims(VOCAB, 256, 4, 4, 4, ctx)), 0, &Device::Cpu)?;

    // Speed.
    let cfg = SamplingConfig { max_new_tokens: new_tokens, ..SamplingConfig::greedy() };
    let warm = SamplingConfig { max_new_tokens: 4, ..SamplingConfig::greedy() };
    for batch in [1usize, 8] {
        let prompts: Vec<Vec<u32>> = (0..batch).map(|i| align_core::bench::random_ids(PROMPT, VOCAB, 1000 + i as u64)).collect();
        generate_model(&model, &prompts, &warm, GenerateOptions::default())?;
        let mut best = f64::INFINITY;
        for _ in 0..reps {
            let t0 = Instant::now();
            let gens = generate_model(&model, &prompts, &cfg, GenerateOptions::default())?;
            best = best.min(t0.elapsed().as_secs_f64());
            anyhow::ensure!(gens.iter().all(|g| g.tokens.len() == new_tokens), "a row stopped early");
        }
        let tps = (batch * new_tokens) as f64 / best;
        println!("batch {batch}: {tps:.0} tok/s ({best:.3}s for {new_tokens} new tokens per row, best of {reps})");
    }

    // Output checksums: left-padded prompts of different lengths, greedy and sampled.
    let prompts: Vec<Vec<u32>> = (0..6).map(|i| align_core::bench::random_ids(3 + 5 * i, VOCAB, 2000 + i as u64)).collect();
    let n = new_tokens.min(200);
    let greedy = SamplingConfig { max_new_tokens: n, ..SamplingConfig::greedy() };
    let sampled = SamplingConfig { max_new_tokens: n, top_k: 0, seed: 5, ..Default::default() };
    let (t, l) = checksum(&generate_model(&model, &prompts, &greedy, GenerateOptions::default())?);
    println!("checksum generate greedy: tokens {t:016x} logprobs {l:016x}");
    let (t, l) = checksum(&generate_model(&model, &prompts, &sampled, GenerateOptions::default())?);
    println!("checksum generate sampled: tokens {t:016x} logprobs {l:016x}");

    // An engine whose rows join (merged with left padding) and leave (rows removed, padding
    // trimmed) while others run.
    let mut engine = Engine::new(&model);
    let mut events: Vec<TokenEvent> = vec![];
    let req = |i: usize, max: usize| SeqRequest {
        prompt: prompts[i].clone(),
        cfg: SamplingConfig { max_new_tokens: max, ..sampled.clone() },
        stream_id: i as u64,
        top_logprobs: 0,
    };
    events.extend(engine.add(vec![(0, req(0, n)), (1, req(1, n / 4))])?);
    for step in 0.. {
        if engine.is_empty() {
            break;
        }
        if step == n / 8 {
            events.extend(engine.add(vec![(2, req(5, n / 2)), (3, req(2, n))])?);
        }
        if step == n / 3 {
            events.extend(engine.add(vec![(4, req(3, n / 3))])?);
        }
        events.extend(engine.step()?);
    }
    let toks = fnv(events.iter().flat_map(|e| [e.seq as u32, e.token]));
    let lps = fnv(events.iter().map(|e| e.logprob.to_bits()));
    println!("checksum engine: tokens {toks:016x} logprobs {lps:016x} ({} events)", events.len());
    Ok(())
}
