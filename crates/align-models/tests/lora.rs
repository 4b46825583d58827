//! LoRA against PEFT: `scripts/fixtures/make_lora.py` wraps the tiny parity models with
//! `peft.get_peft_model(LoraConfig(...))` (llama: q_proj, v_proj, down_proj with alpha/r; gpt2:
//! Conv1D c_attn and c_proj with rsLoRA), fills every lora_A/lora_B with random values, saves the
//! adapter with `save_pretrained` and dumps logits (adapter on, off, merged) and the gradient of
//! the LM loss for every adapter tensor. Here align loads the same adapter and compares.
//! The reverse direction (an adapter saved by align loads in PEFT) is `verify_lora.py`, fed by
//! `align_saved_adapter_for_peft` below.

use align_models::causal_lm::default_positions;
use align_models::{ForwardArgs, LoraConfig, Model, ModelConfig, TargetModules};
use candle_core::{DType, Device, Tensor};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

const ARCHS: [&str; 2] = ["llama", "gpt2"];

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn base(arch: &str) -> Model {
    Model::from_pretrained(root().join("tests/fixtures/parity").join(arch).join("model"), DType::F32, &Device::Cpu).unwrap()
}

fn lora_dir(arch: &str) -> PathBuf {
    root().join("tests/fixtures/lora").join(arch)
}

fn io(arch: &str) -> HashMap<String, Tensor> {
    candle_core::safetensors::load(lora_dir(arch).join("io.safetensors"), &Device::Cpu).unwrap()
}

/// max |a - b| / max |b|.
fn rel_err(a: &Tensor, b: &Tensor) -> f32 {
    let a = a.to_dtype(DType::F32).unwrap().flatten_all().unwrap();
    let b = b.to_dtype(DType::F32).unwrap().flatten_all().unwrap();
    let diff = (&a - &b).unwrap().abs().unwrap().max(0).unwrap().to_scalar::<f32>().unwrap();
    let scale = b.abs().unwrap().max(0).unwrap().to_scalar::<f32>().unwrap().max(1e-12);
    diff / scale
}

fn max_abs_diff(a: &Tensor, b: &Tensor) -> f32 {
    (a - b).unwrap().abs().unwrap().flatten_all().unwrap().max(0).unwrap().to_scalar::<f32>().unwrap()
}

fn logits(model: &Model, ids: &Tensor) -> Tensor {
    let ids = ids.to_dtype(DType::U32).unwrap();
    let (b, t) = ids.dims2().unwrap();
    let pos = default_positions(b, t, 0, &Device::Cpu).unwrap();
    model.lm.forward(&ForwardArgs::new(&ids, &pos), None).unwrap()
}

/// HF's causal-LM loss: mean cross-entropy of logits[:, :-1] against ids[:, 1:].
fn lm_loss(logits: &Tensor, ids: &Tensor) -> Tensor {
    let (b, t, v) = logits.dims3().unwrap();
    let l = logits.narrow(1, 0, t - 1).unwrap().reshape((b * (t - 1), v)).unwrap();
    let y = ids.to_dtype(DType::U32).unwrap().narrow(1, 1, t - 1).unwrap().flatten_all().unwrap();
    candle_nn::loss::cross_entropy(&l, &y).unwrap()
}

fn tiny_llama() -> Model {
    // hidden 32, intermediate 128, 2 layers, 4 heads, 2 kv heads, vocab 64, tied embeddings.
    let cfg = align_models::config::llama_from_dims(64, 32, 2, 4, 2, 32);
    Model::from_config(ModelConfig::Llama(cfg), 3, &Device::Cpu).unwrap()
}

fn ids() -> Tensor {
    Tensor::new(&[[1u32, 5, 9, 2, 33, 17, 4, 8], [7, 7, 3, 60, 12, 0, 1, 2]], &Device::Cpu).unwrap()
}

/// Sets every lora_B to seeded random values, so the adapter changes the output.
fn randomize_b(model: &Model, seed: u64) {
    let mut rng = align_core::seed::rng(seed);
    for (name, v) in model.lora_vars() {
        if name.contains("lora_B") {
            let data: Vec<f32> = (0..v.elem_count()).map(|_| 0.3 * (2.0 * align_core::seed::uniform(&mut rng) - 1.0)).collect();
            v.set(&Tensor::from_vec(data, v.shape(), &Device::Cpu).unwrap()).unwrap();
        }
    }
}

#[test]
fn peft_adapter_gives_peft_logits_and_gradients() {
    for arch in ARCHS {
        let io = io(arch);
        let ids = &io["input_ids"];
        let mut model = base(arch);
        model.load_lora(lora_dir(arch).join("adapter")).unwrap();

        let out = logits(&model, ids);
        let e = rel_err(&out, &io["logits"]);
        assert!(e < 1e-4, "{arch}: logits with adapter rel err {e}");

        // Gradients: only the adapter is trainable, and each matches PEFT's.
        let loss = lm_loss(&out, ids);
        let e = rel_err(&loss, &io["loss"].reshape(()).unwrap());
        assert!(e < 1e-4, "{arch}: loss rel err {e}");
        let grads = loss.backward().unwrap();
        let trainable = model.trainable_vars();
        let want: Vec<&String> = io.keys().filter(|k| k.starts_with("grad.")).collect();
        assert_eq!(trainable.len(), want.len(), "{arch}: trainable tensors");
        for (name, var) in &trainable {
            let g = grads.get(var.as_tensor()).unwrap_or_else(|| panic!("{arch}: no gradient for {name}"));
            let e = rel_err(g, &io[&format!("grad.{name}")]);
            assert!(e < 1e-3, "{arch}: gradient of {name} rel err {e}");
        }
        // The base linears are frozen: used detached, so no gradient is even computed.
        for info in model.linears() {
            let w = model.vars().into_iter().find(|(k, _)| *k == format!("{}.weight", info.name)).unwrap().1;
            assert!(grads.get(w.as_tensor()).is_none(), "{arch}: frozen {} got a gradient", info.name);
        }

        // Adapters off: the base model.
        model.with_lora_disabled(|m| {
            let e = rel_err(&logits(m, ids), &io["base_logits"]);
            assert!(e < 1e-4, "{arch}: logits with adapter disabled rel err {e}");
        })
        .unwrap();
        assert!(model.lora_enabled());
        assert!(rel_err(&logits(&model, ids), &io["logits"]) < 1e-4, "{arch}: re-enabled");

        // Merged: same logits as PEFT's merge_adapter(), and unmerge restores the weights.
        let before: Vec<(String, Tensor)> = model.vars().into_iter().map(|(k, v)| (k, v.as_tensor().copy().unwrap())).collect();
        model.merge_lora().unwrap();
        let merged = logits(&model, ids);
        let e = rel_err(&merged, &io["merged_logits"]);
        assert!(e < 1e-4, "{arch}: merged logits rel err {e}");
        let e = rel_err(&merged, &out);
        assert!(e < 1e-5, "{arch}: merged vs unmerged rel err {e}");
        assert!(model.set_lora_enabled(false).is_err(), "{arch}: disabling a merged adapter must fail");
        model.unmerge_lora().unwrap();
        for ((k, w0), (_, v)) in before.iter().zip(model.vars()) {
            let d = max_abs_diff(v.as_tensor(), w0);
            assert!(d <= 1e-6, "{arch}: {k} after unmerge differs by {d}");
        }
        assert!(rel_err(&logits(&model, ids), &io["logits"]) < 1e-4, "{arch}: unmerged logits");
    }
}

#[test]
fn merged_model_saves_as_plain_hf_model() {
    let arch = "llama";
    let io = io(arch);
    let mut model = base(arch);
    model.load_lora(lora_dir(arch).join("adapter")).unwrap();
    model.merge_lora().unwrap();
    let dir = tempfile::tempdir().unwrap();
    model.save_pretrained(dir.path(), DType::F32).unwrap();
    let st = candle_core::safetensors::load(dir.path().join("model.safetensors"), &Device::Cpu).unwrap();
    assert!(st.keys().all(|k| !k.contains("lora")), "lora keys in a merged save");
    let plain = Model::from_pretrained(dir.path(), DType::F32, &Device::Cpu).unwrap();
    assert!(plain.lora_config().is_none());
    let e = rel_err(&logits(&plain, &io["input_ids"]), &io["merged_logits"]);
    assert!(e < 1e-4, "reloaded merged model rel err {e}");
}

#[test]
fn fresh_adapter_is_a_no_op_and_trains_a_then_b() {
    let mut model = tiny_llama();
    let ids = ids();
    let base_out = logits(&model, &ids);
    let n_base = model.vars().len();
    model.add_lora(&LoraConfig { target_modules: TargetModules::One("all-linear".into()), ..LoraConfig::new(4, 8.0, &[]) }, 11).unwrap();
    // B = 0: the output is unchanged.
    assert_eq!(max_abs_diff(&logits(&model, &ids), &base_out), 0.0);
    // all-linear: 7 linears per layer, 2 layers, A and B each; no lm_head; base untouched.
    let trainable = model.trainable_vars();
    assert_eq!(trainable.len(), 2 * 7 * 2);
    assert_eq!(model.vars().len(), n_base);
    assert!(trainable.iter().all(|(k, _)| k.starts_with("base_model.model.model.layers.") && k.contains(".lora_")));
    assert!(trainable.iter().any(|(k, _)| k == "base_model.model.model.layers.1.mlp.gate_proj.lora_A.weight"));
    let cfg = model.lora_config().unwrap();
    assert_eq!(
        cfg.target_modules,
        TargetModules::List(["down_proj", "gate_proj", "k_proj", "o_proj", "q_proj", "up_proj", "v_proj"].map(String::from).to_vec())
    );
    // A is PEFT's kaiming-uniform: within ±1/sqrt(in).
    for (k, v) in &trainable {
        if k.contains("lora_A") {
            let bound = 1.0 / (v.dim(1).unwrap() as f32).sqrt();
            let m = v.as_tensor().abs().unwrap().flatten_all().unwrap().max(0).unwrap().to_scalar::<f32>().unwrap();
            assert!(m <= bound && m > 0.5 * bound, "{k}: max |A| {m}, bound {bound}");
        }
    }

    let grad_norms = |model: &Model| -> Vec<(String, f32)> {
        let loss = lm_loss(&logits(model, &ids), &ids);
        let grads = loss.backward().unwrap();
        for (k, v) in model.vars() {
            if k.ends_with("proj.weight") {
                assert!(grads.get(v.as_tensor()).is_none(), "frozen {k} got a gradient");
            }
        }
        model
            .trainable_vars()
            .into_iter()
            .map(|(k, v)| {
                let g = grads.get(v.as_tensor()).unwrap_or_else(|| panic!("no gradient for {k}"));
                (k, g.sqr().unwrap().sum_all().unwrap().to_scalar::<f32>().unwrap())
            })
            .collect()
    };
    // Step 0: B gets a gradient, A none (B = 0 blocks it).
    for (k, g) in grad_norms(&model) {
        if k.contains("lora_B") {
            assert!(g > 0.0, "{k}: zero gradient");
        } else {
            assert_eq!(g, 0.0, "{k}: gradient through B = 0");
        }
    }
    // After one update of B, A gets a gradient too.
    randomize_b(&model, 5);
    for (k, g) in grad_norms(&model) {
        assert!(g > 0.0, "{k}: zero gradient after B moved");
    }
    // Merged and unmerged agree.
    let out = logits(&model, &ids);
    model.merge_lora().unwrap();
    let e = rel_err(&logits(&model, &ids), &out);
    assert!(e < 1e-5, "merged vs unmerged rel err {e}");
    model.unmerge_lora().unwrap();
}

#[test]
fn saved_adapter_loads_back_with_same_logits() {
    let mut model = tiny_llama();
    let ids = ids();
    model.add_lora(&LoraConfig { lora_dropout: 0.05, ..LoraConfig::new(2, 16.0, &["q_proj", "down_proj"]) }, 1).unwrap();
    randomize_b(&model, 2);
    let out = logits(&model, &ids);
    let dir = tempfile::tempdir().unwrap();
    model.save_lora(dir.path()).unwrap();

    let cfg: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(dir.path().join("adapter_config.json")).unwrap()).unwrap();
    assert_eq!(cfg["peft_type"], "LORA");
    assert_eq!(cfg["task_type"], "CAUSAL_LM");
    assert_eq!(cfg["r"], 2);
    assert_eq!(cfg["lora_alpha"], 16);
    assert_eq!(cfg["target_modules"], serde_json::json!(["q_proj", "down_proj"]));
    let st = candle_core::safetensors::load(dir.path().join("adapter_model.safetensors"), &Device::Cpu).unwrap();
    assert_eq!(st.len(), 8);
    assert_eq!(st["base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight"].dims(), &[2, 32]);
    assert_eq!(st["base_model.model.model.layers.1.mlp.down_proj.lora_B.weight"].dims(), &[32, 2]);

    let mut again = tiny_llama();
    again.load_lora(dir.path()).unwrap();
    assert_eq!(again.lora_config(), model.lora_config());
    assert_eq!(max_abs_diff(&logits(&again, &ids), &out), 0.0);
    // Loading twice is refused.
    assert!(again.load_lora(dir.path()).is_err());
}

/// Copies the llama PEFT adapter into a temp dir with its tensors edited by `edit`.
fn broken_adapter(edit: impl FnOnce(&mut HashMap<String, Tensor>)) -> tempfile::TempDir {
    let src = lora_dir("llama").join("adapter");
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(src.join("adapter_config.json"), dir.path().join("adapter_config.json")).unwrap();
    let mut st = candle_core::safetensors::load(src.join("adapter_model.safetensors"), &Device::Cpu).unwrap();
    edit(&mut st);
    candle_core::safetensors::save(&st, dir.path().join("adapter_model.safetensors")).unwrap();
    dir
}

#[test]
fn bad_adapters_name_file_and_key() {
    let key = "base_model.model.model.layers.1.self_attn.v_proj.lora_B.weight";
    let cases: Vec<(tempfile::TempDir, &str)> = vec![
        (broken_adapter(|st| drop(st.remove(key))), "missing weight"),
        (
            broken_adapter(|st| {
                st.insert("base_model.model.model.layers.0.self_attn.k_proj.lora_A.weight".into(), Tensor::zeros((4, 32), DType::F32, &Device::Cpu).unwrap());
            }),
            "unexpected",
        ),
        (
            broken_adapter(|st| {
                st.insert(key.into(), Tensor::zeros((16, 3), DType::F32, &Device::Cpu).unwrap());
            }),
            "has shape",
        ),
    ];
    for (dir, what) in cases {
        let mut model = base("llama");
        let e = model.load_lora(dir.path()).unwrap_err().to_string();
        assert!(e.contains(what) && e.contains("adapter_model.safetensors"), "{e}");
        assert!(e.contains("lora_"), "error names no key: {e}");
        // A failed load leaves the model without adapters.
        assert!(model.lora_config().is_none() && model.trainable_vars().len() == model.vars().len(), "{e}");
    }
    let mut model = base("llama");
    let e = model.add_lora(&LoraConfig::new(4, 8.0, &["c_attn"]), 0).unwrap_err().to_string();
    assert!(e.contains("match no module"), "{e}");
}

#[test]
fn dropout_only_in_training_and_seeded() {
    let run = |seed: u64| {
        let mut model = tiny_llama();
        model.add_lora(&LoraConfig { lora_dropout: 0.5, ..LoraConfig::new(4, 8.0, &["q_proj", "v_proj"]) }, seed).unwrap();
        randomize_b(&model, 9);
        let eval1 = logits(&model, &ids());
        model.set_training(true);
        let t1 = logits(&model, &ids());
        let t2 = logits(&model, &ids());
        model.set_training(false);
        let eval2 = logits(&model, &ids());
        assert_eq!(max_abs_diff(&eval1, &eval2), 0.0);
        assert!(max_abs_diff(&t1, &eval1) > 1e-4, "dropout had no effect");
        assert!(max_abs_diff(&t1, &t2) > 1e-4, "the same mask twice");
        (t1, t2)
    };
    let (a1, a2) = run(4);
    let (b1, b2) = run(4);
    assert_eq!(max_abs_diff(&a1, &b1), 0.0);
    assert_eq!(max_abs_diff(&a2, &b2), 0.0);
}

/// Writes, per arch, an adapter made by align (`add_lora` + random B) next to `expected.safetensors`
/// (input_ids, logits with the adapter, base_logits without) for `scripts/fixtures/verify_lora.py`.
/// Into `$ALIGN_LORA_EXPORT/<arch>` when set (kept), else a temp dir.
#[test]
fn align_saved_adapter_for_peft() {
    let tmp = tempfile::tempdir().unwrap();
    let out_root = std::env::var_os("ALIGN_LORA_EXPORT").map(PathBuf::from).unwrap_or_else(|| tmp.path().to_path_buf());
    for arch in ARCHS {
        let mut model = base(arch);
        let cfg = match arch {
            "llama" => LoraConfig { target_modules: TargetModules::One("all-linear".into()), ..LoraConfig::new(4, 8.0, &[]) },
            _ => LoraConfig { lora_dropout: 0.1, use_rslora: true, ..LoraConfig::new(2, 4.0, &["c_attn", "c_fc"]) },
        };
        model.add_lora(&cfg, 7).unwrap();
        randomize_b(&model, 8);
        let ids = io(arch)["input_ids"].clone();
        let with = logits(&model, &ids);
        let without = model.with_lora_disabled(|m| logits(m, &ids)).unwrap();
        assert!(max_abs_diff(&with, &without) > 1e-2, "{arch}: adapter has no effect");
        let dir = out_root.join(arch);
        model.save_lora(&dir).unwrap();
        write_expected(&dir, &ids, &with, &without);
        // It also loads back in align.
        let mut again = base(arch);
        again.load_lora(&dir).unwrap();
        assert_eq!(max_abs_diff(&logits(&again, &ids), &with), 0.0);
    }
}

fn write_expected(dir: &Path, ids: &Tensor, with: &Tensor, without: &Tensor) {
    let t: HashMap<String, Tensor> = [
        ("input_ids".to_string(), ids.to_dtype(DType::I64).unwrap()),
        ("logits".to_string(), with.clone()),
        ("base_logits".to_string(), without.clone()),
    ]
    .into_iter()
    .collect();
    candle_core::safetensors::save(&t, dir.join("expected.safetensors")).unwrap();
}
