//! Bandit sanity tests: a tiny model over a 12-word vocabulary, rewarded for answering "yes".
//! PPO, GRPO and RLOO must learn it within a few dozen steps, and an interrupted PPO run must
//! resume bit-for-bit.

use align_models::{config::llama_from_dims, Model, ModelConfig};
use align_rl::reward::{FnReward, RewardInput, RewardSet, RewardShaping};
use align_rl::{run_with_rewards, RlConfig};
use candle_core::Device;
use serde_json::json;
use std::path::Path;

const WORDS: [&str; 12] = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "[UNK]", "user", "assistant", "say", "yes", "no", "maybe", "red", "blue"];

/// A word-level tokenizer (whitespace pre-tokenizer, ChatML specials) and a random tiny llama.
fn setup(d: &Path) {
    let base = d.join("base");
    align_data::tokenizer::write_word_level_chatml(&base, &WORDS).unwrap();
    let cfg = ModelConfig::Llama(llama_from_dims(WORDS.len(), 32, 2, 4, 2, 128));
    Model::from_config(cfg, 3, &Device::Cpu).unwrap().save_pretrained(&base, candle_core::DType::F32).unwrap();
    let prompts: Vec<String> = ["say yes", "say no", "say maybe", "say red", "say blue", "say say"].iter().map(|p| json!({"prompt": p}).to_string()).collect();
    std::fs::write(d.join("prompts.jsonl"), prompts.join("\n")).unwrap();
}

fn config(d: &Path, out: &str, algorithm: &str, extra: &str) -> RlConfig {
    let text = format!(
        r#"out_dir = {out:?}
model = {base:?}
algorithm = "{algorithm}"
prompts = [{prompts:?}]
eval_prompts = [{prompts:?}]
rewards = []
[sampling]
max_new_tokens = 3
temperature = 1.0
top_k = 0
[ppo]
rollout_batch_size = 24
mini_batch_size = 12
ppo_epochs = 2
kl_coef = 0.01
critic = "shared"
[grpo]
prompts_per_rollout = 6
num_generations = 4
mini_batch_size = 12
[train]
lr = 1e-2
lr_scheduler = "constant"
warmup_steps = 0
max_steps = 40
quiet = true
save_every = 1000
{extra}"#,
        out = d.join(out).display().to_string(),
        base = d.join("base").display().to_string(),
        prompts = d.join("prompts.jsonl").display().to_string(),
    );
    toml::from_str(&text).unwrap()
}

/// 1 when the response's first word is "yes".
fn yes_reward() -> RewardSet {
    let f = |x: &RewardInput| if x.response.split_whitespace().next() == Some("yes") { 1.0 } else { 0.0 };
    RewardSet { items: vec![(1.0, Box::new(FnReward { name: "yes".into(), f }))], shaping: RewardShaping::default(), normalization: None }
}

fn first_and_last_score(d: &Path, out: &str) -> (f64, f64) {
    let text = std::fs::read_to_string(d.join(out).join("rollouts.jsonl")).unwrap();
    // Rollout rows (the last row is the final held-out evaluation).
    let rows: Vec<serde_json::Value> = text.lines().map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()).filter(|r| r.get("rewards/yes").is_some()).collect();
    let s = |r: &serde_json::Value| r["rewards/yes"].as_f64().unwrap();
    (s(&rows[0]), s(rows.last().unwrap()))
}

fn learns(algorithm: &str) {
    let d = tempfile::tempdir().unwrap();
    setup(d.path());
    let s = run_with_rewards(&config(d.path(), algorithm, algorithm, ""), yes_reward(), false, "").unwrap();
    for l in std::fs::read_to_string(d.path().join(algorithm).join("rollouts.jsonl")).unwrap().lines() {
        eprintln!("{l}");
    }
    let (first, last) = first_and_last_score(d.path(), algorithm);
    let greedy_before = s.eval_before["eval/rewards/yes"].as_f64().unwrap();
    let greedy_after = s.eval_after["eval/rewards/yes"].as_f64().unwrap();
    assert!(first < 0.4, "{algorithm}: the random policy already says yes ({first})");
    assert!(last > 0.8, "{algorithm}: sampled reward {first} -> {last} after {} steps", s.steps);
    assert!(greedy_after == 1.0 && greedy_before < 1.0, "{algorithm}: greedy {greedy_before} -> {greedy_after}");
    // PPO normalizes the score by the initial policy's samples (Ziegler et al.); GRPO/RLOO do not.
    let text = std::fs::read_to_string(d.path().join(algorithm).join("rollouts.jsonl")).unwrap();
    let row: serde_json::Value = serde_json::from_str(text.lines().next().unwrap()).unwrap();
    let (raw, score) = (row["rewards/yes"].as_f64().unwrap(), row["objective/scores"].as_f64().unwrap());
    match s.reward_normalization {
        Some((m, sd)) => {
            assert_eq!(algorithm, "ppo");
            assert!((0.0..1.0).contains(&m) && sd > 0.0, "{m} {sd}");
            assert!((score - (raw - m) / sd).abs() < 1e-9, "{score} vs ({raw} − {m}) / {sd}");
        }
        None => {
            assert_ne!(algorithm, "ppo");
            assert_eq!(score, raw);
        }
    }
}

#[test]
fn ppo_learns_the_bandit() {
    learns("ppo");
}

#[test]
fn grpo_learns_the_bandit() {
    learns("grpo");
}

#[test]
fn rloo_learns_the_bandit() {
    learns("rloo");
}

#[test]
/// 10 steps in one go equal 5 steps, a stop, and 5 more after `--resume` (checkpoint at step 5,
/// mid-rollout: the buffer, prompt order, KL coefficient and RNG all come back).
fn ppo_resume_is_bit_for_bit() {
    let d = tempfile::tempdir().unwrap();
    setup(d.path());
    let mut full = config(d.path(), "full", "ppo", "");
    full.train.max_steps = 10;
    full.ppo.target_kl = Some(0.5);
    run_with_rewards(&full, yes_reward(), false, "").unwrap();
    let mut part = full.clone();
    part.out_dir = d.path().join("part");
    part.train.max_steps = 5;
    part.train.save_every = 5;
    run_with_rewards(&part, yes_reward(), false, "").unwrap();
    part.train.max_steps = 10;
    run_with_rewards(&part, yes_reward(), true, "").unwrap();
    let load = |p: &str| candle_core::safetensors::load(d.path().join(p).join("model/model.safetensors"), &Device::Cpu).unwrap();
    let (a, b) = (load("full"), load("part"));
    for (k, ta) in &a {
        let diff = (ta - &b[k]).unwrap().abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap();
        assert_eq!(diff, 0.0, "{k} differs after resume");
    }
    let logs = |p: &str| std::fs::read_to_string(d.path().join(p).join("rollouts.jsonl")).unwrap();
    let strip = |t: String| t.lines().map(|l| {
        let mut v: serde_json::Value = serde_json::from_str(l).unwrap();
        v.as_object_mut().unwrap().retain(|k, _| !k.starts_with("time/"));
        v
    }).collect::<Vec<_>>();
    assert_eq!(strip(logs("full")), strip(logs("part")), "rollout logs differ after resume");
}
