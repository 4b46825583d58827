//! The implicit reward of a DPO model, `β·(log π(y|x) − log π_ref(y|x))`, against a log-prob sum
//! computed here from plain forward passes; zero when the two models are one; the same in a batch
//! as alone; clear errors for a bad β and for models with different vocabularies.

use align_data::chat_template::ChatTemplate;
use align_data::{Message, Tokenizer};
use align_models::{config::llama_from_dims, ForwardArgs, Model, ModelConfig};
use align_rl::reward::{ImplicitReward, Reward, RewardInput, RewardSpec};
use candle_core::{DType, Device, Tensor, D};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};

const WORDS: [&str; 12] = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "[UNK]", "user", "assistant", "say", "yes", "no", "maybe", "red", "blue"];

/// A word-level ChatML tokenizer and a random tiny llama (`seed`) in `dir`.
fn model_dir(root: &Path, name: &str, seed: u64, words: &[&str]) -> PathBuf {
    let dir = root.join(name);
    align_data::tokenizer::write_word_level_chatml(&dir, words).unwrap();
    let cfg = ModelConfig::Llama(llama_from_dims(words.len(), 32, 2, 4, 2, 64));
    Model::from_config(cfg, seed, &Device::Cpu).unwrap().save_pretrained(&dir, DType::F32).unwrap();
    dir
}

/// Σ log p(token) over the response and its end-of-turn token, from one plain forward pass of the
/// whole rendered conversation (the prompt's tokens are those of the rendered generation prompt).
fn response_logp(dir: &Path, prompt: &[Message], response: &str) -> f64 {
    let model = Model::from_pretrained(dir, DType::F32, &Device::Cpu).unwrap();
    let tok = Tokenizer::from_dir(dir).unwrap();
    let tmpl = ChatTemplate::from_tokenizer(&tok).unwrap();
    let n_prompt = tok.encode(&tmpl.render(prompt, true).unwrap(), false).unwrap().len();
    let mut msgs = prompt.to_vec();
    msgs.push(Message::new("assistant", response));
    let ids = tok.encode(&tmpl.render(&msgs, false).unwrap(), false).unwrap();
    assert_eq!(tok.decode(&ids[n_prompt..], false).unwrap().split_whitespace().last(), Some("<|im_end|>"));
    let t = ids.len();
    let x = Tensor::from_vec(ids.clone(), (1, t), &Device::Cpu).unwrap();
    let pos = Tensor::from_vec((0..t as u32).collect::<Vec<_>>(), (1, t), &Device::Cpu).unwrap();
    let logits = model.lm.forward(&ForwardArgs::new(&x, &pos), None).unwrap();
    let lp = candle_nn::ops::log_softmax(&logits.squeeze(0).unwrap(), D::Minus1).unwrap().to_vec2::<f32>().unwrap();
    (n_prompt..t).map(|j| f64::from(lp[j - 1][ids[j] as usize])).sum()
}

fn inputs<'a>(prompt: &'a [Message], responses: &'a [&'a str], meta: &'a Value) -> Vec<RewardInput<'a>> {
    responses.iter().map(|r| RewardInput { prompt, response: r, meta }).collect()
}

#[test]
fn implicit_reward_is_beta_times_the_log_ratio_of_the_response() {
    let root = tempfile::tempdir().unwrap();
    let (dpo, sft) = (model_dir(root.path(), "dpo", 3, &WORDS), model_dir(root.path(), "sft", 4, &WORDS));
    let prompt = vec![Message::new("user", "say yes")];
    let responses = ["yes", "no no", "red blue maybe", ""];
    let meta = json!({});
    let beta = 0.5;

    // Batch size 2 < 4 samples: two chunks, rows of different lengths padded within each.
    let mut r = ImplicitReward::load(&dpo, &sft, beta, 2).unwrap();
    assert_eq!(r.name(), "implicit");
    let got = r.score(&inputs(&prompt, &responses, &meta)).unwrap();
    for (resp, g) in responses.iter().zip(&got) {
        let want = beta * (response_logp(&dpo, &prompt, resp) - response_logp(&sft, &prompt, resp));
        assert!((g - want).abs() < 1e-4 * (1.0 + want.abs()), "{resp:?}: {g} vs {want}");
        assert!(want.abs() > 1e-3, "two random models should disagree on {resp:?}");
        // Alone, with batch size 1: the same score.
        let alone = ImplicitReward::load(&dpo, &sft, beta, 1).unwrap().score(&inputs(&prompt, &[resp], &meta)).unwrap();
        assert!((alone[0] - g).abs() < 1e-5, "{resp:?}: alone {} vs batched {g}", alone[0]);
    }

    // A model against itself has no implicit reward.
    let same = ImplicitReward::load(&dpo, &dpo, beta, 4).unwrap().score(&inputs(&prompt, &responses, &meta)).unwrap();
    assert!(same.iter().all(|x| x.abs() < 1e-6), "{same:?}");

    // From a config file's `[[rewards]]` entry, β defaulting to TRL's 0.1.
    let spec: RewardSpec = toml::from_str(&format!("kind = \"implicit\"\npath = {:?}\nreference = {:?}", dpo.display().to_string(), sft.display().to_string())).unwrap();
    let (w, mut built) = spec.build().unwrap();
    assert_eq!(w, 1.0);
    let s = built.score(&inputs(&prompt, &responses[..1], &meta)).unwrap();
    assert!((s[0] - got[0] * 0.1 / beta).abs() < 1e-5, "{} vs {}", s[0], got[0] * 0.1 / beta);
}

#[test]
fn implicit_reward_rejects_a_bad_beta_and_different_vocabularies() {
    let root = tempfile::tempdir().unwrap();
    let dpo = model_dir(root.path(), "dpo", 3, &WORDS);
    let mut fewer = WORDS.to_vec();
    fewer.pop();
    let other = model_dir(root.path(), "other", 4, &fewer);
    let err = |r: Result<ImplicitReward, align_train::TrainError>| r.err().expect("should fail").to_string();
    assert!(err(ImplicitReward::load(&dpo, &dpo, 0.0, 4)).contains("beta must be positive"));
    let e = err(ImplicitReward::load(&dpo, &other, 0.1, 4));
    assert!(e.contains("different vocabularies") && e.contains("12 vs 11"), "{e}");
    let e = err(ImplicitReward::load(&dpo, &root.path().join("missing"), 0.1, 4));
    assert!(e.contains("missing"), "{e}");
}
