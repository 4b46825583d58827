//! DPO end to end on a tiny model: the policy learns the preferred completion, the reference
//! log-probs are cached, and gradient accumulation 1×8 equals 8×1.

use align_data::tokenizer::train_bpe_from_texts;
use align_data::DEFAULT_SPECIAL_TOKENS;
use align_models::{config::llama_from_dims, Model, ModelConfig};
use align_train::dpo::{run, DpoConfig};
use candle_core::Device;
use std::path::Path;

fn setup(d: &Path) {
    let texts: Vec<String> = (0..40).map(|i| format!("Question {i}: is the sky blue? Yes it is blue. No it is green.")).collect();
    let tok = train_bpe_from_texts(&texts, 400, &DEFAULT_SPECIAL_TOKENS, 2).unwrap();
    let cfg = ModelConfig::Llama(llama_from_dims(tok.vocab_size(), 32, 2, 4, 2, 128));
    let model = Model::from_config(cfg, 1, &Device::Cpu).unwrap();
    model.save_pretrained(d.join("base"), candle_core::DType::F32).unwrap();
    tok.save_dir(d.join("base")).unwrap();
    let lines: Vec<String> = (0..48)
        .map(|i| {
            serde_json::json!({
                "prompt": [{"role": "user", "content": format!("Question {i}: is the sky blue?")}],
                "chosen": [{"role": "assistant", "content": "Yes it is blue."}],
                "rejected": [{"role": "assistant", "content": "No it is green."}]})
            .to_string()
        })
        .collect();
    std::fs::write(d.join("pairs.jsonl"), lines.join("\n")).unwrap();
}

fn config(d: &Path, out: &str, extra_train: &str) -> DpoConfig {
    let text = format!(
        "out_dir = {out:?}\nmodel = {base:?}\n[data]\nfiles = [{data:?}]\nbatch_size = 8\neval_fraction = 0.15\n[loss]\nbeta = 0.1\n[train]\nlr = 5e-3\nlr_scheduler = \"constant\"\nmax_steps = 12\nquiet = true\n{extra_train}",
        out = d.join(out).display().to_string(),
        base = d.join("base").display().to_string(),
        data = d.join("pairs.jsonl").display().to_string(),
    );
    toml::from_str(&text).unwrap()
}

#[test]
fn dpo_learns_the_preference_and_caches_the_reference() {
    let d = tempfile::tempdir().unwrap();
    setup(d.path());
    let s = run(&config(d.path(), "dpo", ""), false, "").unwrap();
    let acc_before = s.eval_before["rewards/accuracies"];
    let acc_after = s.eval_after["rewards/accuracies"];
    assert!(s.eval_after["loss"] < s.eval_before["loss"], "{:?} -> {:?}", s.eval_before, s.eval_after);
    assert!(acc_after > 0.9 && acc_after >= acc_before, "held-out accuracy {acc_before} -> {acc_after}");
    assert!(s.eval_after["rewards/margins"] > 0.0);
    assert!(d.path().join("dpo/ref_logps.json").exists());
    Model::from_pretrained(d.path().join("dpo/model"), candle_core::DType::F32, &Device::Cpu).unwrap();
}

#[test]
/// Three optimizer steps (after the first, AdamW's update depends on gradient magnitudes, not
/// only signs), each over the same 8 pairs: as one micro-batch, or as 8 accumulated. With padded
/// rows the two agree to 1e-6; with `padding_free` (the default) the one micro-batch sums each
/// sequence's log-probs through the packing's ownership matmul, a different order of float
/// additions, so to 1e-5 (an accumulation bug would show as ~1e-3).
fn grad_accumulation_1x8_equals_8x1() {
    for (padding_free, tol) in [(false, 1e-6), (true, 1e-5)] {
        let d = tempfile::tempdir().unwrap();
        setup(d.path());
        let mut a = config(d.path(), "a", "");
        a.train.max_steps = 3;
        a.data.padding_free = padding_free;
        let mut b = config(d.path(), "b", "grad_accum = 8\n");
        b.train.max_steps = 3;
        b.data.batch_size = 1;
        b.data.padding_free = padding_free;
        run(&a, false, "").unwrap();
        run(&b, false, "").unwrap();
        let load = |p: &str| candle_core::safetensors::load(d.path().join(p).join("model/model.safetensors"), &Device::Cpu).unwrap();
        let (wa, wb) = (load("a"), load("b"));
        for (k, ta) in &wa {
            let diff = (ta - &wb[k]).unwrap().abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap();
            assert!(diff < tol, "padding_free {padding_free}, {k}: {diff}");
        }
    }
}

#[test]
/// KTO on unpaired data (TRL's `prompt`/`completion`/`label` format): the policy's implied reward
/// separates desirable from undesirable completions on held-out prompts.
fn kto_learns_from_unpaired_labels() {
    let d = tempfile::tempdir().unwrap();
    setup(d.path());
    let lines: Vec<String> = (0..48)
        .map(|i| {
            let (completion, label) = if i % 2 == 0 { ("Yes it is blue.", true) } else { ("No it is green.", false) };
            serde_json::json!({
                "prompt": [{"role": "user", "content": format!("Question {i}: is the sky blue?")}],
                "completion": [{"role": "assistant", "content": completion}],
                "label": label})
            .to_string()
        })
        .collect();
    std::fs::write(d.path().join("kto.jsonl"), lines.join("\n")).unwrap();
    let mut cfg = config(d.path(), "kto", "");
    cfg.objective = align_train::dpo::Objective::Kto;
    cfg.data.files = vec![d.path().join("kto.jsonl")];
    cfg.train.max_steps = 20;
    let s = run(&cfg, false, "").unwrap();
    assert_eq!(s.train.kept + s.eval.kept, 48);
    let margin = |m: &std::collections::BTreeMap<String, f64>| m["rewards/chosen"] - m["rewards/rejected"];
    assert!(margin(&s.eval_before).abs() < 1e-4, "{:?}", s.eval_before);
    assert!(margin(&s.eval_after) > 0.5, "held-out reward margin {:?}", s.eval_after);
    assert!(s.eval_after["loss"] < s.eval_before["loss"]);
    assert!(s.eval_after.contains_key("kl"));
    // Paired data is unpaired (chosen → desirable, rejected → undesirable): two items per pair.
    let mut paired = config(d.path(), "kto_pairs", "");
    paired.objective = align_train::dpo::Objective::Kto;
    paired.train.max_steps = 2;
    let s = run(&paired, false, "").unwrap();
    assert_eq!(s.train.kept + s.eval.kept, 96);
}

/// `padding_free` packs a micro-batch's sequences into shared rows: the summed completion
/// log-probs, lengths and every parameter's gradient equal those of one padded row per sequence.
#[test]
fn padding_free_rows_give_the_padded_logps_and_gradients() {
    use align_data::formats::{Example, Text};
    use align_data::{ChatTemplate, Message};
    use align_train::dpo::completion_logps;
    use align_train::sft::{tokenize_all, SftData};
    let texts: Vec<String> = (0..40).map(|i| format!("Question {i}: how do I make bread? Mix flour, water and yeast, then bake it.")).collect();
    let tok = train_bpe_from_texts(&texts, 400, &DEFAULT_SPECIAL_TOKENS, 2).unwrap();
    let tmpl = ChatTemplate::from_tokenizer(&tok).unwrap();
    let answers = ["Yes.", "Mix flour, water and yeast, then bake it for forty minutes in a hot oven.", "No it is green.", "Bake.", "Mix flour and water.", "Question 3: is it blue?"];
    let ex: Vec<Example> = answers
        .iter()
        .enumerate()
        .map(|(i, a)| Example::LanguageModeling { text: Text::Conversation(vec![Message::new("user", format!("Question {i}?")), Message::new("assistant", *a)]) })
        .collect();
    let (seqs, _) = tokenize_all(&tok, &tmpl, &ex, &SftData::default()).unwrap();
    let cap = seqs.iter().map(|s| s.ids.len()).max().unwrap();
    assert!(align_train::sft::pack(&seqs, cap).len() < seqs.len(), "some sequences share a row");
    let model = Model::from_config(ModelConfig::Llama(llama_from_dims(tok.vocab_size(), 32, 2, 4, 2, 128)), 7, &Device::Cpu).unwrap();
    let run = |padding_free: bool| {
        let (lp, lens, nll) = completion_logps(model.lm.as_ref(), &seqs, padding_free, &Device::Cpu).unwrap();
        // A loss that weighs the sequences differently, so a mix-up of sequences shows in the gradient.
        let w = candle_core::Tensor::arange(1f32, seqs.len() as f32 + 1.0, &Device::Cpu).unwrap();
        let grads = (lp.clone() * w).unwrap().sum_all().unwrap().backward().unwrap();
        let g: Vec<Vec<f32>> = model.vars().iter().map(|(_, v)| grads.get(v.as_tensor()).unwrap().flatten_all().unwrap().to_vec1().unwrap()).collect();
        (lp.to_vec1::<f32>().unwrap(), lens.to_vec1::<f32>().unwrap(), nll.to_vec1::<f32>().unwrap(), g)
    };
    let (lp_a, lens_a, nll_a, g_a) = run(false);
    let (lp_b, lens_b, nll_b, g_b) = run(true);
    assert_eq!(lens_a, lens_b);
    for (a, b) in lp_a.iter().zip(&lp_b).chain(nll_a.iter().zip(&nll_b)) {
        assert!((a - b).abs() <= 1e-4 * a.abs().max(1.0), "padded {a} vs packed {b}");
    }
    for (ga, gb) in g_a.iter().zip(&g_b) {
        let scale = ga.iter().fold(0f32, |m, x| m.max(x.abs())).max(1e-3);
        for (a, b) in ga.iter().zip(gb) {
            assert!((a - b).abs() <= 1e-4 * scale, "gradient {a} vs {b}");
        }
    }
    assert!(g_a.iter().all(|g| g.iter().any(|x| *x != 0.0)), "every parameter gets a gradient");
}
