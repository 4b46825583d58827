//! The HTTP judge against align's own OpenAI-compatible server (`align serve`, crate
//! align-serve) on loopback: a tiny random model behind `/v1/chat/completions` answers the
//! comparison question with log-probs, and a labelling run through it completes.

use align_cai::http::{HttpJudge, HttpJudgeConfig, Readout};
use align_cai::judge::{compare_both_orders, Comparison, Judge};
use align_cai::Constitution;
use align_data::Message;
use align_models::{config::llama_from_dims, LlamaConfig, Model, ModelConfig};
use align_serve::{run_blocking, ModelSpec, ServeConfig};
use candle_core::Device;
use std::path::Path;

const WORDS: [&str; 16] = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "[UNK]", "user", "assistant", "(", ")", "A", "B", "I", "refuse", "bread", "make", "the", "to"];

fn tiny_model(dir: &Path, seed: u64) {
    align_data::tokenizer::write_word_level_chatml(dir, &WORDS).unwrap();
    // Untied head: with tied embeddings a random model greedily repeats its last input token.
    let cfg = ModelConfig::Llama(LlamaConfig { tie_word_embeddings: false, ..llama_from_dims(WORDS.len(), 32, 2, 4, 2, 512) });
    Model::from_config(cfg, seed, &Device::Cpu).unwrap().save_pretrained(dir, candle_core::DType::F32).unwrap();
}

/// Starts `align serve` on an ephemeral loopback port in a background thread; returns its /v1 URL.
fn start_server(dir: &Path) -> String {
    let (tx, rx) = std::sync::mpsc::channel();
    let spec = ModelSpec { name: "judge".into(), dir: dir.to_path_buf() };
    std::thread::spawn(move || {
        let _ = run_blocking(&[spec], ServeConfig::default(), "127.0.0.1:0".parse().unwrap(), |addr| tx.send(addr).unwrap());
    });
    let addr = rx.recv_timeout(std::time::Duration::from_secs(60)).expect("align serve did not start");
    format!("http://{addr}/v1")
}

#[test]
fn http_judge_against_align_serve() {
    let d = tempfile::tempdir().unwrap();
    let dir = d.path().join("judge");
    // Seed 4: a random model whose greedy reply to this question contains an option token (with
    // other seeds it writes "((((" or "bread", and the judge reports the question unanswered).
    tiny_model(&dir, 4);
    let url = start_server(&dir);
    let cfg = HttpJudgeConfig { url, model: "judge".into(), readout: Readout::Logprobs, top_logprobs: 20, timeout_s: 30.0, retries: 1, backoff_ms: 50, ..Default::default() };
    let mut judge = HttpJudge::new(cfg.clone(), None).unwrap();
    let c = Constitution::default();
    let conv = [Message::new("user", "make bread")];
    let q = Comparison { conversation: &conv, principle: &c.principles[0], a: "I refuse", b: "make the bread", record: None };
    let p = judge.prob_a(&q).unwrap();
    assert!(p > 0.0 && p < 1.0, "{p}");
    // Greedy log-probs are deterministic: the same question gives the same probability.
    let p2 = judge.prob_a(&q).unwrap();
    assert!((p - p2).abs() < 1e-6, "{p} vs {p2}");
    assert_eq!(judge.stats.logprob_answers, 2);
    let v = compare_both_orders(&mut judge, &conv, &c.principles[0], "I refuse", "make the bread", None).unwrap();
    assert!((v.p_first_as_a - p).abs() < 1e-6);

    // A model name the server does not have is a client error, reported at once.
    let mut wrong = HttpJudge::new(HttpJudgeConfig { model: "nope".into(), retries: 3, ..cfg }, None).unwrap();
    let e = wrong.prob_a(&q).unwrap_err().to_string();
    assert!(e.contains("HTTP 4") && wrong.stats.requests == 1, "{e}");
}
