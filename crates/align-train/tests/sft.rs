//! SFT data path: response-only masks with the end-of-turn token, packing without
//! cross-sequence attention, truncation counted.

use align_data::formats::{Example, Text};
use align_data::tokenizer::train_bpe_from_texts;
use align_data::{ChatTemplate, Message, DEFAULT_SPECIAL_TOKENS};
use align_models::{config::llama_from_dims, Model, ModelConfig};
use align_train::sft::{masked_nll_sum, pack, tokenize_all, unpacked_loss, SeqBatch, SftData};
use candle_core::Device;

fn conv(q: &str, a: &str) -> Example {
    Example::LanguageModeling { text: Text::Conversation(vec![Message::new("user", q), Message::new("assistant", a)]) }
}

fn setup() -> (align_data::Tokenizer, ChatTemplate, Vec<Example>) {
    let texts: Vec<String> = (0..50).map(|i| format!("How do I make bread number {i}? Mix flour, water and yeast, then bake.")).collect();
    let tok = train_bpe_from_texts(&texts, 400, &DEFAULT_SPECIAL_TOKENS, 2).unwrap();
    let tmpl = ChatTemplate::from_tokenizer(&tok).unwrap();
    let ex = vec![
        conv("How do I make bread?", "Mix flour, water and yeast, then bake."),
        conv("What is 2 + 3?", "2 + 3 is 5."),
        conv("Write an email to Sam.", "Hi Sam, see you Friday. Best, Alex"),
        Example::PromptCompletion { prompt: Text::Plain("Q: tea?".into()), completion: Text::Plain(" Boil water.".into()) },
    ];
    (tok, tmpl, ex)
}

#[test]
fn mask_covers_the_assistant_turn_and_its_end_token_only() {
    let (tok, tmpl, ex) = setup();
    let (seqs, rep) = tokenize_all(&tok, &tmpl, &ex, &SftData::default()).unwrap();
    assert_eq!(rep.kept, 4);
    let s = &seqs[0];
    let trained: Vec<u32> = s.ids.iter().zip(&s.mask).filter(|(_, &m)| m == 1).map(|(&i, _)| i).collect();
    assert_eq!(tok.decode(&trained, false).unwrap(), "Mix flour, water and yeast, then bake.<|im_end|>");
    // prompt/completion: only the completion and EOS are trained.
    let s = &seqs[3];
    let trained: Vec<u32> = s.ids.iter().zip(&s.mask).filter(|(_, &m)| m == 1).map(|(&i, _)| i).collect();
    assert_eq!(tok.decode(&trained, false).unwrap(), " Boil water.<|endoftext|>");
}

#[test]
fn packed_rows_give_the_same_loss_as_sequences_one_by_one() {
    let (tok, tmpl, ex) = setup();
    let (seqs, _) = tokenize_all(&tok, &tmpl, &ex, &SftData::default()).unwrap();
    let cfg = ModelConfig::Llama(llama_from_dims(tok.vocab_size(), 32, 2, 4, 2, 256));
    let model = Model::from_config(cfg, 3, &Device::Cpu).unwrap();
    let bins = pack(&seqs, 256);
    assert!(bins.len() < seqs.len(), "the short sequences share a row");
    let packed = SeqBatch::from_rows(&seqs, &bins, 0);
    assert!(packed.segments.is_some());
    let (nll, n) = masked_nll_sum(model.lm.as_ref(), &packed, &Device::Cpu).unwrap();
    let packed_loss = nll.to_scalar::<f32>().unwrap() as f64 / n as f64;
    let alone = unpacked_loss(model.lm.as_ref(), &seqs, &Device::Cpu).unwrap();
    assert!((packed_loss - alone).abs() < 1e-5, "packed {packed_loss} vs one by one {alone}");
}

#[test]
fn over_long_sequences_are_truncated_or_skipped_and_counted() {
    let (tok, tmpl, ex) = setup();
    let cfg = SftData { max_seq_len: 12, ..SftData::default() };
    let (seqs, rep) = tokenize_all(&tok, &tmpl, &ex, &cfg).unwrap();
    assert!(rep.truncated > 0);
    assert!(seqs.iter().all(|s| s.ids.len() <= 12));
    assert_eq!(rep.kept + rep.skipped.values().sum::<usize>(), ex.len());
    let cfg = SftData { max_seq_len: 12, truncation: "skip".into(), ..SftData::default() };
    let (_, rep) = tokenize_all(&tok, &tmpl, &ex, &cfg).unwrap();
    assert_eq!(rep.skipped.get("longer than max_seq_len").copied().unwrap_or(0) + rep.kept, ex.len());
}

/// `sft::run` end to end on a tiny model: full fine-tuning lowers the held-out loss; with `[lora]`
/// the base weights stay frozen, a PEFT adapter is written and the merged model is saved.
#[test]
fn sft_run_full_and_lora() {
    use align_train::sft::{run, SftConfig};
    let (tok, _, _) = setup();
    let d = tempfile::tempdir().unwrap();
    let base = d.path().join("base");
    let cfg = ModelConfig::Llama(llama_from_dims(tok.vocab_size(), 32, 2, 4, 2, 128));
    let model = Model::from_config(cfg, 1, &Device::Cpu).unwrap();
    model.save_pretrained(&base, candle_core::DType::F32).unwrap();
    tok.save_dir(&base).unwrap();
    let lines: Vec<String> = (0..40)
        .map(|i| {
            serde_json::json!({"messages": [
                {"role": "user", "content": format!("How do I make bread number {i}?")},
                {"role": "assistant", "content": "Mix flour, water and yeast, then bake."}]})
            .to_string()
        })
        .collect();
    std::fs::write(d.path().join("sft.jsonl"), lines.join("\n")).unwrap();
    let toml_cfg = |out: &str, lora: &str| -> SftConfig {
        let text = format!(
            "out_dir = {out:?}\nmodel = {base:?}\n[data]\nfiles = [{data:?}]\nbatch_size = 4\neval_fraction = 0.1\n{lora}\n[train]\nlr = 1e-2\nlr_scheduler = \"constant\"\nmax_steps = 8\nquiet = true\n",
            base = base.display().to_string(),
            data = d.path().join("sft.jsonl").display().to_string(),
        );
        toml::from_str(&text).unwrap()
    };
    let full_out = d.path().join("full").display().to_string();
    let s = run(&toml_cfg(&full_out, ""), false, "").unwrap();
    // Resume is bit for bit: 4 steps, stop, resume to 8 gives the straight run's weights (a
    // constant schedule, so that the shorter first run takes the same 4 steps).
    let half_out = d.path().join("half").display().to_string();
    let mut half = toml_cfg(&half_out, "");
    half.train.max_steps = 4;
    run(&half, false, "").unwrap();
    run(&toml_cfg(&half_out, ""), true, "").unwrap();
    let a = std::fs::read(d.path().join("full/model/model.safetensors")).unwrap();
    let b = std::fs::read(d.path().join("half/model/model.safetensors")).unwrap();
    assert!(a == b, "resumed SFT differs from the straight run");
    assert!(s.eval_loss < s.eval_loss_before, "{} -> {}", s.eval_loss_before, s.eval_loss);
    assert!(d.path().join("full/model/model.safetensors").exists());

    // Activation checkpointing: the same 8 steps, blocks recomputed in the backward — the same
    // weights up to float summation order.
    let ck_out = d.path().join("ckpt").display().to_string();
    let mut ck = toml_cfg(&ck_out, "");
    ck.train.activation_checkpointing = true;
    let s_ck = run(&ck, false, "").unwrap();
    assert!(!align_models::checkpoint::enabled(), "fit must restore the setting");
    let load = |p: &str| candle_core::safetensors::load(d.path().join(p).join("model/model.safetensors"), &Device::Cpu).unwrap();
    let (full, ckw) = (load("full"), load("ckpt"));
    for (k, a) in &full {
        let diff = (a - &ckw[k]).unwrap().abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap();
        let scale = a.abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap();
        assert!(diff <= 1e-4 * scale.max(1e-3), "{k}: max |Δ| {diff} (max |w| {scale})");
    }
    assert!((s_ck.eval_loss - s.eval_loss).abs() < 1e-4, "{} vs {}", s_ck.eval_loss, s.eval_loss);

    let lora_out = d.path().join("lora").display().to_string();
    let s = run(&toml_cfg(&lora_out, "[lora]\nr = 4\nlora_alpha = 8\ntarget_modules = \"all-linear\""), false, "").unwrap();
    assert!(s.eval_loss < s.eval_loss_before, "{} -> {}", s.eval_loss_before, s.eval_loss);
    assert!(d.path().join("lora/adapter/adapter_config.json").exists());
    assert!(d.path().join("lora/adapter/adapter_model.safetensors").exists());
    // The checkpoint holds only the adapter tensors (the base is frozen).
    let ck = align_train::checkpoint::latest(std::path::Path::new(&lora_out)).unwrap().unwrap();
    let names = candle_core::safetensors::load(ck.join("model.safetensors"), &Device::Cpu).unwrap();
    assert!(!names.is_empty() && names.keys().all(|k| k.contains("lora_")), "{:?}", names.keys().collect::<Vec<_>>());
    // The merged model loads as a plain HF model.
    Model::from_pretrained(d.path().join("lora/model"), candle_core::DType::F32, &Device::Cpu).unwrap();
}
