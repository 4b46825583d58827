//! Generation over the preallocated KV cache (buffers written in place, grown by doubling, read
//! in place by the fused attention) gives the tokens that the concatenating cache it replaced
//! gave: `generate` greedy and sampled over left-padded prompts, and an `Engine` whose rows join
//! (merged with left padding), leave (rows selected) and whose all-padding columns are trimmed,
//! on tiny Llama and GPT-2 models.
//!
//! `GOLDEN` was printed by this file's `golden_print` mode (`ALIGN_PRINT_GOLDEN=1 cargo test
//! --release -p align-generate --test kv_cache -- --nocapture`) run against the concatenating
//! cache (commit f8bdd54). Tokens must match exactly; the per-row sums of log-probabilities
//! matched to the bit on the recording machine and are compared within 1e-4 here, so that other
//! CPUs' matmul kernels do not fail the test.

mod common;

use align_generate::engine::{Engine, SeqRequest};
use align_generate::{generate_model, GenerateOptions, SamplingConfig};
use align_models::Model;
use common::prompts;

const CTX: usize = 96;

fn llama() -> Model {
    common::llama(CTX)
}

fn gpt2() -> Model {
    common::gpt2(CTX)
}

/// One run: its name, each row's (or engine sequence's) tokens and sum of log-probabilities.
type Run = (String, Vec<Vec<u32>>, Vec<f32>);

fn generate_run(m: &Model, name: &str, cfg: &SamplingConfig) -> Run {
    let gens = generate_model(m, &prompts(), cfg, GenerateOptions::default()).unwrap();
    let sums = gens.iter().map(|g| g.logprobs.iter().map(|&x| x as f64).sum::<f64>() as f32).collect();
    (name.to_string(), gens.into_iter().map(|g| g.tokens).collect(), sums)
}

/// Rows 0 (3 prompt tokens, 40 new) and 1 (9, 10 new) start; rows 2 (1, 30 new) and 3 (5, 20 new)
/// join after 5 steps, merged under left padding; row 1 leaves after its 10th token, and the 6
/// columns that are then padding in every row are trimmed. The cache grows past its capacity
/// several times on the way (a prefill's buffers hold the prompt only).
fn engine_run(m: &Model, name: &str) -> Run {
    let p = prompts();
    let cfg = SamplingConfig { top_k: 0, temperature: 0.1, seed: 9, ..Default::default() };
    let req = |i: usize, max: usize| SeqRequest {
        prompt: p[i].clone(),
        cfg: SamplingConfig { max_new_tokens: max, ..cfg.clone() },
        stream_id: i as u64,
        top_logprobs: 0,
    };
    let mut e = Engine::new(m);
    let mut events = e.add(vec![(0, req(0, 40)), (1, req(1, 10))]).unwrap();
    let mut trimmed = false;
    for step in 0.. {
        if e.is_empty() {
            break;
        }
        if step == 5 {
            events.extend(e.add(vec![(2, req(2, 30)), (3, req(3, 20))]).unwrap());
        }
        let before = e.kv_len();
        events.extend(e.step().unwrap());
        trimmed |= e.kv_len() < before;
    }
    assert!(trimmed, "{name}: the cache was never trimmed");
    let (mut tokens, mut sums) = (vec![vec![]; 4], vec![0f64; 4]);
    for ev in events {
        tokens[ev.seq as usize].push(ev.token);
        sums[ev.seq as usize] += ev.logprob as f64;
    }
    (name.to_string(), tokens, sums.into_iter().map(|s| s as f32).collect())
}

fn runs() -> Vec<Run> {
    let greedy = SamplingConfig { max_new_tokens: 40, ..SamplingConfig::greedy() };
    // The random models' logits are nearly uniform: a low temperature makes the samples depend on
    // them, not only on the random draws.
    let sampled = SamplingConfig { max_new_tokens: 40, top_k: 0, temperature: 0.1, seed: 3, ..Default::default() };
    let mut out = vec![];
    for (name, m) in [("llama", llama()), ("gpt2", gpt2())] {
        out.push(generate_run(&m, &format!("{name} greedy"), &greedy));
        out.push(generate_run(&m, &format!("{name} sampled"), &sampled));
        out.push(engine_run(&m, &format!("{name} engine")));
    }
    out
}

#[test]
fn tokens_equal_the_concatenating_cache() {
    let got = runs();
    if std::env::var_os("ALIGN_PRINT_GOLDEN").is_some() {
        println!("const GOLDEN: &[Golden] = &[");
        for (name, tokens, sums) in &got {
            let rows: Vec<String> = tokens.iter().map(|t| format!("&{t:?}")).collect();
            println!("    ({name:?}, &[{}], &{sums:?}),", rows.join(", "));
        }
        println!("];");
        return;
    }
    assert_eq!(got.len(), GOLDEN.len());
    for ((name, tokens, sums), (gname, gtokens, gsums)) in got.iter().zip(GOLDEN) {
        assert_eq!(name, gname);
        assert_eq!(tokens.len(), gtokens.len(), "{name}");
        for (row, (t, g)) in tokens.iter().zip(gtokens.iter()).enumerate() {
            assert_eq!(t.as_slice(), *g, "{name}: row {row} tokens");
        }
        for (row, (s, g)) in sums.iter().zip(gsums.iter()).enumerate() {
            assert!((s - g).abs() < 1e-4, "{name}: row {row} log-prob sum {s} vs {g}");
        }
    }
}

/// A recorded run: name, each row's tokens, each row's sum of log-probabilities.
type Golden = (&'static str, &'static [&'static [u32]], &'static [f32]);

#[rustfmt::skip]
const GOLDEN: &[Golden] = &[
    ("llama greedy", &[&[2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2], &[9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9], &[42, 42, 42, 42, 42, 42, 42, 42, 42, 42, 42, 42, 42, 42, 42, 42, 42, 42, 42, 42, 42, 42, 42, 42, 42, 42, 42, 42, 42, 42, 42, 42, 42, 42, 42, 42, 42, 42, 42, 42], &[12, 12, 12, 12, 12, 12, 12, 12, 12, 12, 12, 12, 12, 12, 12, 12, 12, 12, 12, 12, 12, 12, 12, 12, 12, 12, 12, 12, 12, 12, 12, 12, 12, 12, 12, 12, 12, 12, 12, 12]], &[-143.50491, -147.81703, -150.87102, -147.48364]),
    ("llama sampled", &[&[2, 2, 2, 2, 2, 2, 51, 51, 62, 62, 44, 16, 51, 51, 51, 51, 51, 51, 51, 51, 51, 51, 60, 60, 60, 60, 24, 24, 10, 24, 24, 24, 24, 24, 24, 24, 24, 24, 24, 31], &[14, 12, 12, 50, 12, 45, 45, 45, 45, 45, 45, 45, 45, 45, 45, 45, 45, 45, 45, 16, 16, 16, 8, 26, 19, 19, 19, 19, 19, 26, 26, 26, 26, 26, 26, 26, 26, 26, 26, 36], &[46, 46, 3, 3, 3, 3, 3, 3, 35, 35, 3, 21, 21, 21, 30, 58, 58, 58, 58, 58, 58, 58, 58, 58, 58, 58, 58, 58, 58, 58, 7, 24, 24, 24, 24, 24, 24, 24, 56, 56], &[29, 29, 46, 26, 26, 26, 26, 5, 5, 5, 5, 5, 5, 30, 46, 46, 21, 63, 19, 19, 19, 19, 19, 19, 19, 19, 19, 19, 19, 19, 19, 19, 63, 47, 47, 47, 47, 27, 27, 27]], &[-146.66867, -145.55148, -148.9647, -148.46]),
    ("llama engine", &[&[2, 36, 51, 51, 51, 51, 58, 58, 1, 1, 1, 1, 50, 57, 57, 57, 57, 57, 57, 57, 57, 57, 57, 57, 57, 57, 57, 57, 57, 57, 57, 57, 57, 57, 57, 57, 57, 57, 22, 58], &[9, 12, 22, 22, 22, 22, 22, 22, 22, 22], &[60, 60, 60, 51, 1, 1, 1, 1, 10, 40, 40, 40, 40, 40, 40, 40, 40, 40, 40, 40, 40, 40, 40, 40, 40, 40, 40, 40, 40, 16], &[12, 12, 58, 60, 60, 60, 51, 51, 51, 51, 51, 51, 51, 62, 62, 62, 62, 62, 47, 27]], &[-146.5136, -36.706524, -109.30644, -73.458115]),
    ("gpt2 greedy", &[&[2, 2, 2, 2, 2, 2, 2, 2, 2, 51, 51, 51, 51, 51, 51, 51, 51, 51, 51, 51, 51, 51, 51, 51, 51, 51, 51, 51, 51, 51, 51, 51, 51, 51, 51, 51, 51, 51, 51, 51], &[9, 9, 9, 9, 22, 22, 22, 22, 22, 22, 22, 22, 22, 22, 22, 22, 22, 22, 22, 22, 22, 22, 22, 50, 50, 50, 50, 50, 50, 50, 50, 50, 50, 50, 50, 50, 50, 50, 50, 50], &[42, 42, 42, 42, 42, 42, 42, 42, 42, 42, 42, 42, 42, 42, 42, 42, 42, 42, 42, 42, 62, 62, 62, 62, 62, 62, 62, 62, 62, 62, 62, 62, 62, 62, 62, 62, 62, 62, 62, 62], &[12, 22, 22, 22, 22, 22, 22, 22, 22, 22, 22, 22, 22, 22, 22, 22, 22, 22, 22, 22, 22, 22, 27, 27, 27, 27, 27, 27, 27, 27, 27, 27, 27, 27, 27, 27, 27, 27, 27, 27]], &[-150.86403, -149.65298, -150.60841, -148.93254]),
    ("gpt2 sampled", &[&[2, 29, 29, 29, 22, 22, 55, 37, 63, 63, 10, 10, 27, 27, 35, 49, 24, 39, 57, 45, 18, 18, 63, 26, 52, 37, 5, 45, 9, 35, 12, 12, 32, 26, 32, 22, 22, 47, 47, 52], &[41, 5, 26, 57, 5, 54, 54, 50, 50, 9, 53, 30, 26, 41, 4, 4, 3, 13, 27, 3, 3, 3, 3, 55, 7, 7, 43, 57, 18, 61, 50, 17, 17, 33, 19, 27, 35, 35, 54, 62], &[42, 30, 1, 2, 2, 2, 43, 9, 55, 55, 9, 51, 51, 37, 50, 54, 36, 36, 36, 59, 55, 55, 55, 55, 55, 55, 55, 55, 55, 39, 4, 47, 39, 39, 19, 27, 27, 27, 56, 55], &[38, 38, 50, 12, 22, 45, 45, 6, 29, 29, 12, 15, 15, 32, 45, 28, 18, 63, 9, 22, 22, 22, 42, 17, 55, 25, 20, 20, 27, 27, 27, 34, 63, 26, 38, 34, 25, 10, 10, 10]], &[-159.48341, -160.01263, -156.19745, -159.40894]),
    ("gpt2 engine", &[&[34, 61, 61, 61, 47, 47, 62, 62, 1, 24, 24, 27, 52, 63, 63, 45, 45, 31, 58, 58, 42, 57, 56, 18, 33, 30, 30, 45, 40, 40, 40, 40, 40, 21, 16, 32, 32, 45, 9, 63], &[34, 45, 49, 20, 25, 33, 53, 41, 20, 49], &[60, 55, 55, 30, 0, 0, 0, 0, 36, 51, 51, 51, 8, 8, 25, 35, 34, 34, 34, 25, 43, 51, 22, 22, 22, 22, 10, 10, 11, 7], &[14, 14, 59, 62, 62, 62, 11, 15, 15, 15, 43, 42, 62, 62, 40, 62, 62, 62, 32, 22]], &[-160.19734, -40.910236, -117.37093, -77.59563]),
];
