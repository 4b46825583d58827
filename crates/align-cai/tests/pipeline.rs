//! SL-CAI and RL-CAI end to end on a tiny random model (word-level tokenizer, ChatML template):
//! transcripts are complete and seeded, the local judge reads the option tokens' log-probs
//! exactly, gold labels agree with gold, and an interrupted labelling run resumes to the same
//! file as an uninterrupted one. The paper's constitution files and the GPT-2 BPE vocabulary come
//! from ../shared/data.

use align_cai::judge::{compare_both_orders, option_tokens, Comparison, GoldJudge, Judge, LocalJudge};
use align_cai::label::{agreement, label, read_lines, LabelConfig};
use align_cai::prompts::PromptItem;
use align_cai::resume::AppendLog;
use align_cai::revise::{gold_changes, revise, ReviseConfig};
use align_cai::{CaiError, ChatModel, Constitution};
use align_data::{Message, Tokenizer};
use align_gym::{GymConfig, Split, World};
use align_models::causal_lm::default_positions;
use align_models::{config::llama_from_dims, ForwardArgs, Model, ModelConfig};
use candle_core::{Device, IndexOp, Tensor};
use std::path::{Path, PathBuf};

const WORDS: [&str; 24] = [
    "<|endoftext|>", "<|im_start|>", "<|im_end|>", "[UNK]", "user", "assistant", "(", ")", "A", "B", "I", "refuse", "combine", "first",
    "get", "you", "need", "the", "to", "make", "bread", "Critique", ":", "Revision",
];

/// A word-level tokenizer (whitespace pre-tokenizer, ChatML specials) and a random tiny llama.
fn tiny_model(d: &Path, seed: u64) -> PathBuf {
    let dir = d.join(format!("model-{seed}"));
    align_data::tokenizer::write_word_level_chatml(&dir, &WORDS).unwrap();
    let cfg = ModelConfig::Llama(llama_from_dims(WORDS.len(), 32, 2, 4, 2, 256));
    Model::from_config(cfg, seed, &Device::Cpu).unwrap().save_pretrained(&dir, candle_core::DType::F32).unwrap();
    dir
}

/// Gym records of the harmful and look-alike families (train split).
fn gym_items(n: usize) -> Vec<PromptItem> {
    let world = World::generate(&GymConfig::default());
    world
        .records_in(Split::Train)
        .filter(|r| matches!(r.family().name(), "harmful" | "benign_lookalike"))
        .step_by(7)
        .take(n)
        .cloned()
        .map(PromptItem::from_record)
        .collect()
}

fn short_sampling(cfg: &mut align_generate::SamplingConfig) {
    cfg.max_new_tokens = 8;
}

#[test]
fn revise_writes_complete_seeded_transcripts() {
    let d = tempfile::tempdir().unwrap();
    let chat = ChatModel::load(&tiny_model(d.path(), 1)).unwrap();
    let items = gym_items(5);
    let c = Constitution::default();
    let mut cfg = ReviseConfig { rounds: 2, batch_size: 5, seed: 3, ..ReviseConfig::default() };
    short_sampling(&mut cfg.sampling);
    let ts = revise(&chat, &c, &items, &cfg).unwrap();
    assert_eq!(ts.len(), 5);
    for (t, it) in ts.iter().zip(&items) {
        assert_eq!(t.id, it.id);
        assert_eq!(t.rounds.len(), 2);
        assert!(t.rounds.iter().all(|r| c.principle(&r.principle).is_some()));
        // The final response is the last revision that was made (or the initial response).
        let last = t.rounds.iter().rev().find(|r| r.revised).map(|r| r.revision.clone()).unwrap_or(t.initial.clone());
        assert_eq!(t.final_response, last);
        assert!(t.gold_before.is_some() && t.gold_after.is_some());
        assert_eq!(t.sft_line().messages[1].content, t.final_response);
    }
    // Same seed, another batch size: the same transcripts. Another seed: different ones.
    let again = revise(&chat, &c, &items, &ReviseConfig { batch_size: 2, ..cfg.clone() }).unwrap();
    assert_eq!(again, ts);
    let other = revise(&chat, &c, &items, &ReviseConfig { seed: 4, ..cfg.clone() }).unwrap();
    assert_ne!(other, ts);
    let changes = gold_changes(&ts);
    assert_eq!(changes["all"].n, 5);

    // Few-shot demonstrations make the conversations longer but still run.
    let few = revise(&chat, &c, &items[..2], &ReviseConfig { few_shot: 1, ..cfg }).unwrap();
    assert_eq!(few.len(), 2);
}

#[test]
fn local_judge_reads_the_option_log_probs() {
    let d = tempfile::tempdir().unwrap();
    let chat = ChatModel::load(&tiny_model(d.path(), 2)).unwrap();
    let mut judge = LocalJudge::new(chat, "tiny");
    let c = Constitution::default();
    let conv = [Message::new("user", "make bread")];
    let q = Comparison { conversation: &conv, principle: &c.principles[0], a: "I refuse", b: "combine the bread", record: None };
    let p = judge.prob_a(&q).unwrap();

    // The same number by hand: one forward pass over the prompt, softmax over the ids of A and B.
    let text = judge.prompt_text(&q).unwrap();
    assert!(text.ends_with("<|im_start|>assistant\n("), "{text:?}");
    let ids = judge.chat.tok.encode(&text, false).unwrap();
    let input = Tensor::new(ids.as_slice(), &Device::Cpu).unwrap().unsqueeze(0).unwrap();
    let pos = default_positions(1, ids.len(), 0, &Device::Cpu).unwrap();
    let logits = judge.chat.model.lm.forward(&ForwardArgs::new(&input, &pos), None).unwrap();
    let last: Vec<f32> = logits.i((0, ids.len() - 1)).unwrap().to_vec1().unwrap();
    let (la, lb) = (last[8] as f64, last[9] as f64); // ids of "A" and "B"
    let expected = la.exp() / (la.exp() + lb.exp());
    assert!((p - expected).abs() < 1e-5, "{p} vs {expected}");
    assert!(p > 0.0 && p < 1.0);

    // Both orders: swapping the responses gives the complementary verdict exactly.
    let v1 = compare_both_orders(&mut judge, &conv, &c.principles[0], "I refuse", "combine the bread", None).unwrap();
    let v2 = compare_both_orders(&mut judge, &conv, &c.principles[0], "combine the bread", "I refuse", None).unwrap();
    assert!((v1.p_first + v2.p_first - 1.0).abs() < 1e-9, "{v1:?} {v2:?}");
    assert!((v1.p_first_as_a - p).abs() < 1e-9);

    // A judge prompt longer than the context is a TooLong error, not a panic.
    let long = "bread ".repeat(300);
    let q = Comparison { conversation: &conv, principle: &c.principles[0], a: &long, b: "I refuse", record: None };
    assert!(matches!(judge.prob_a(&q), Err(CaiError::TooLong(_))));
}

#[test]
fn option_tokens_on_a_real_bpe_vocabulary() {
    let tok = Tokenizer::from_dir(Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/data/tokenizers/gpt2")).unwrap();
    // The usual case: after "(" the letter is one token of its own.
    for opt in ["A", "B"] {
        let o = option_tokens(&tok, "Options: ... The answer is: (", opt).unwrap();
        assert_eq!(o.ids.len(), o.start + 1);
        assert_eq!(tok.decode(&o.ids[o.start..], false).unwrap(), opt);
    }
    // A prefix whose last token merges with the option: the option's tokens re-cover the boundary.
    for (prefix, opt) in [("The answer is: (", "A"), ("The answer is:", " A"), ("answer=", "B"), ("xyz", "A")] {
        let o = option_tokens(&tok, prefix, opt).unwrap();
        let p = tok.encode(prefix, false).unwrap();
        assert_eq!(o.ids[..o.start], p[..o.start], "{prefix:?}");
        assert_eq!(tok.decode(&o.ids, false).unwrap(), format!("{prefix}{opt}"));
        assert!(o.start < o.ids.len());
    }
}

#[test]
fn paper_constitution_loads() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/data/constitutional-ai");
    let c = Constitution::load(&dir).unwrap();
    assert_eq!(c.principles.len(), 16);
    assert_eq!(c.principles[0].name, "harmful0");
    assert_eq!(c.principles[15].name, "harmful15");
    assert!(c.principles[0].critique_request.starts_with("Identify specific ways in which the assistant's last response is harmful"));
    assert!(c.principles[0].revision_request.starts_with("Please rewrite the assistant response to remove"));
    assert!(c.principles[0].comparison.starts_with("Please choose the assistant response that is as harmless and ethical"));
    assert!(!c.principles.iter().any(|p| p.critique_request.contains("CritiqueRequest") || p.comparison.ends_with("Options:")));
    assert_eq!(c.few_shot.len(), 5);
    assert!(c.few_shot.iter().all(|e| e.conversation.last().unwrap().role == "assistant" && !e.revision.contains("Human:")));
    assert!(!c.comparison_few_shot.is_empty());
    // It round-trips through TOML, so it can be exported and edited.
    assert_eq!(Constitution::from_toml_str(&c.to_toml().unwrap(), "paper").unwrap(), c);
    // A directory without the files is a clear error.
    let e = Constitution::load(&std::env::temp_dir()).unwrap_err().to_string();
    assert!(e.contains("CritiqueRevisionInstructions.json"), "{e}");
}

/// Fails with an I/O-like error after `left` questions: a crash in the middle of a run.
struct Crashing<J: Judge> {
    inner: J,
    left: usize,
}
impl<J: Judge> Judge for Crashing<J> {
    fn name(&self) -> String {
        self.inner.name()
    }
    fn prob_a(&mut self, q: &Comparison) -> align_cai::Result<f64> {
        if self.left == 0 {
            return Err(CaiError::Judge("simulated crash".into()));
        }
        self.left -= 1;
        self.inner.prob_a(q)
    }
}

#[test]
fn gold_labels_agree_with_gold_and_an_interrupted_run_resumes_to_the_same_file() {
    let d = tempfile::tempdir().unwrap();
    let chat = ChatModel::load(&tiny_model(d.path(), 5)).unwrap();
    let items = gym_items(12);
    let c = Constitution::default();
    let mut cfg = LabelConfig { batch_size: 4, seed: 1, ..LabelConfig::default() };
    short_sampling(&mut cfg.sampling);

    // Uninterrupted.
    let full = d.path().join("full.jsonl");
    let (mut log, ex) = AppendLog::open(&full).unwrap();
    let rep = label(&chat, &mut GoldJudge { temperature: 0.0 }, &c, &items, &cfg, &mut log, &ex.ids).unwrap();
    drop(log);
    assert_eq!(rep.labelled + rep.identical + rep.empty + rep.too_long, 12);
    assert!(lines_nonempty(&full));
    let lines = read_lines(&full).unwrap();
    assert_eq!(lines.len(), rep.labelled);
    assert!(lines.iter().all(|l| l.label_prob >= 0.5 && l.judge == "gold"));
    let a = agreement(&lines, 0.05);
    assert!(a.decided > 0, "no pair that gold separates: {a:?}");
    assert_eq!(a.rate, 1.0, "the gold judge must agree with gold: {a:?}");

    // Crash after 9 questions (4 pairs finished, the 5th half asked), then resume.
    let part = d.path().join("part.jsonl");
    let (mut log, ex) = AppendLog::open(&part).unwrap();
    let mut crashing = Crashing { inner: GoldJudge { temperature: 0.0 }, left: 9 };
    let e = label(&chat, &mut crashing, &c, &items, &cfg, &mut log, &ex.ids).unwrap_err();
    assert!(e.to_string().contains("simulated crash"));
    drop(log);
    let kept = read_lines(&part).unwrap();
    assert_eq!(kept.len(), 4, "every finished label survives the crash");
    let (mut log, ex) = AppendLog::open(&part).unwrap();
    assert_eq!(ex.ids.len(), 4);
    let rep2 = label(&chat, &mut GoldJudge { temperature: 0.0 }, &c, &items, &cfg, &mut log, &ex.ids).unwrap();
    assert_eq!(rep2.resumed, 4);
    drop(log);
    assert_eq!(std::fs::read_to_string(&part).unwrap(), std::fs::read_to_string(&full).unwrap());

    // A third run finds everything done and writes nothing.
    let (mut log, ex) = AppendLog::open(&part).unwrap();
    let rep3 = label(&chat, &mut GoldJudge { temperature: 0.0 }, &c, &items, &cfg, &mut log, &ex.ids).unwrap();
    assert_eq!((rep3.labelled, rep3.resumed), (0, rep.labelled));
}

fn lines_nonempty(p: &Path) -> bool {
    read_lines(p).unwrap().iter().all(|l| !l.chosen[0].content.is_empty() && !l.rejected[0].content.is_empty())
}

#[test]
fn the_gold_judge_needs_gym_records() {
    let c = Constitution::default();
    let conv = [Message::new("user", "hi")];
    let q = Comparison { conversation: &conv, principle: &c.principles[0], a: "x", b: "y", record: None };
    let e = GoldJudge { temperature: 0.0 }.prob_a(&q).unwrap_err().to_string();
    assert!(e.contains("gym prompt records"), "{e}");
}
