//! Reward modelling: pairs tokenized and counted, batches with margins and soft labels, and a tiny
//! end-to-end run whose held-out accuracy rises on a task a reward model can learn (the chosen
//! response always holds a word the rejected one lacks).

use align_data::formats::{Example, Text};
use align_data::tokenizer::train_bpe_from_texts;
use align_data::{ChatTemplate, Message, DEFAULT_SPECIAL_TOKENS};
use align_models::reward::RewardModel;
use align_models::{config::llama_from_dims, Model, ModelConfig};
use align_train::rm::{pad_id, run, tokenize_pairs, PairBatch, RmConfig, RmData};
use candle_core::{DType, Device};

const WORDS: [&str; 12] = ["red", "blue", "cat", "dog", "tree", "sun", "rain", "milk", "bread", "road", "ship", "star"];

fn pair_texts(i: usize) -> (String, String, String) {
    let w = |k: usize| WORDS[(i * 7 + k * 5 + i / 3) % WORDS.len()];
    let prompt = format!("Say something about the {} and the {}.", w(0), w(1));
    let base = [w(2), w(3), w(4)];
    let mut chosen = base.to_vec();
    chosen.insert(1 + i % 3, "please");
    (prompt, format!(" {}", chosen.join(" ")), format!(" {}", base.join(" ")))
}

fn tokenizer() -> align_data::Tokenizer {
    let texts: Vec<String> = (0..60).flat_map(|i| {
        let (p, c, r) = pair_texts(i);
        [p, c, r]
    }).collect();
    train_bpe_from_texts(&texts, 300, &DEFAULT_SPECIAL_TOKENS, 2).unwrap()
}

fn pref(p: &str, c: &str, r: &str, margin: Option<f64>, prob: Option<f64>) -> Example {
    Example::Preference { prompt: Some(Text::Plain(p.into())), chosen: Text::Plain(c.into()), rejected: Text::Plain(r.into()), margin, prob }
}

#[test]
fn pairs_are_tokenized_truncated_or_skipped_and_counted() {
    let tok = tokenizer();
    let tmpl = ChatTemplate::from_tokenizer(&tok).unwrap();
    let conv = Example::Preference {
        prompt: Some(Text::Conversation(vec![Message::new("user", "Say something about the cat.")])),
        chosen: Text::Conversation(vec![Message::new("assistant", "please cat")]),
        rejected: Text::Conversation(vec![Message::new("assistant", "cat")]),
        margin: None,
        prob: None,
    };
    let long = "cat dog ".repeat(40);
    let ex = vec![
        pref("Say something.", " red please", " red", Some(1.5), None),
        conv,
        // Differs only beyond max_seq_len: identical once truncated.
        pref(&long, " red", " blue", None, Some(0.8)),
    ];
    let cfg = RmData { max_seq_len: 64, ..RmData::default() };
    let (pairs, rep) = tokenize_pairs(&tok, &tmpl, &ex, &cfg).unwrap();
    assert_eq!((rep.kept, rep.truncated), (2, 0), "the truncated pair became identical and was skipped");
    assert_eq!(rep.skipped.get("identical chosen and rejected after truncation"), Some(&1));
    // Plain strings end with EOS unless EOS is the pad token (transformers would skip it).
    assert_eq!(pairs[0].chosen.last() == tok.eos_id().as_ref(), tok.eos_id() != Some(pad_id(&tok)));
    // The conversation went through the chat template.
    assert!(pairs[1].chosen.contains(&tok.token_to_id("<|im_start|>").unwrap()));
    let cfg = RmData { max_seq_len: 64, truncation: "skip".into(), ..RmData::default() };
    let (_, rep) = tokenize_pairs(&tok, &tmpl, &ex, &cfg).unwrap();
    assert_eq!(rep.skipped.get("longer than max_seq_len"), Some(&1));

    // A batch: chosen rows then rejected rows; margins default to 0 and soft labels to 1.
    let (mut pairs, _) = tokenize_pairs(&tok, &tmpl, &ex[..2], &RmData::default()).unwrap();
    pairs[1].prob = Some(0.7);
    let refs: Vec<_> = pairs.iter().collect();
    let b = PairBatch::new(&refs, 0);
    assert_eq!(b.lengths, vec![pairs[0].chosen.len(), pairs[1].chosen.len(), pairs[0].rejected.len(), pairs[1].rejected.len()]);
    assert_eq!(b.margin, Some(vec![1.5, 0.0]));
    assert_eq!(b.prob, Some(vec![1.0, 0.7]));
}

/// `rm::run` on a tiny random Llama: held-out accuracy goes above 0.9; bad records are counted;
/// the saved directory loads back as a reward model with the same held-out rewards.
#[test]
fn rm_run_learns_the_preferred_word() {
    let tok = tokenizer();
    let d = tempfile::tempdir().unwrap();
    let base = d.path().join("base");
    let cfg = ModelConfig::Llama(llama_from_dims(tok.vocab_size(), 32, 2, 4, 2, 64));
    Model::from_config(cfg, 1, &Device::Cpu).unwrap().save_pretrained(&base, DType::F32).unwrap();
    tok.save_dir(&base).unwrap();
    let mut lines: Vec<String> = (0..240)
        .map(|i| {
            let (p, c, r) = pair_texts(i);
            serde_json::json!({"prompt": p, "chosen": c, "rejected": r}).to_string()
        })
        .collect();
    lines.insert(5, serde_json::json!({"prompt": "x", "chosen": " same", "rejected": " same"}).to_string());
    lines.insert(9, serde_json::json!({"prompt": "x", "chosen": " only chosen"}).to_string());
    let data = d.path().join("prefs.jsonl");
    std::fs::write(&data, lines.join("\n")).unwrap();
    let text = format!(
        "out_dir = {out:?}\nmodel = {base:?}\n[data]\nfiles = [{data:?}]\nbatch_size = 16\neval_fraction = 0.2\nread.skip_invalid = true\n[train]\nlr = 3e-3\nwarmup_steps = 5\nmax_steps = 40\nquiet = true\nlog_every = 10\n",
        out = d.path().join("run").display().to_string(),
        base = base.display().to_string(),
        data = data.display().to_string(),
    );
    let cfg: RmConfig = toml::from_str(&text).unwrap();
    let s = run(&cfg, false, "").unwrap();
    assert!(s.read_summary[0].contains("skipped 2"), "{:?}", s.read_summary);
    let (before, after) = (s.eval_before.unwrap(), s.eval_after.unwrap());
    assert_eq!(after.pairs, 48);
    eprintln!("held-out: accuracy {:.3} -> {:.3}, loss {:.3} -> {:.3}, {:.1} s", before.stats.accuracy, after.stats.accuracy, before.loss, after.loss, s.seconds);
    assert!(after.stats.accuracy > 0.9, "held-out accuracy {} -> {}", before.stats.accuracy, after.stats.accuracy);
    assert!(after.loss < before.loss);
    // metrics.jsonl holds TRL's names.
    let metrics = std::fs::read_to_string(d.path().join("run/metrics.jsonl")).unwrap();
    for k in ["\"accuracy\"", "\"margin\"", "\"mean_reward\"", "\"std_reward\""] {
        assert!(metrics.contains(k), "{k} missing from metrics.jsonl");
    }
    // The saved model is a sequence-classification directory with tokenizer files.
    let rm = RewardModel::from_pretrained(&s.model_dir, DType::F32, &Device::Cpu).unwrap();
    assert!(s.model_dir.join("tokenizer.json").exists());
    let cfg_json: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(s.model_dir.join("config.json")).unwrap()).unwrap();
    assert_eq!(cfg_json["architectures"][0], "LlamaForSequenceClassification");
    assert_eq!(cfg_json["pad_token_id"], pad_id(&tok));
    drop(rm);
}
