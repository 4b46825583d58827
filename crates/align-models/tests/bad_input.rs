//! Bad checkpoints give errors that name the file and the key, never a panic.

use align_models::causal_lm::default_positions;
use align_models::{ForwardArgs, Model, ModelConfig, ModelError};
use candle_core::{DType, Device, Tensor};
use std::path::{Path, PathBuf};

fn fixture(arch: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/parity").join(arch).join("model")
}

fn copy_model(arch: &str, to: &Path) {
    for f in ["config.json", "model.safetensors"] {
        std::fs::copy(fixture(arch).join(f), to.join(f)).unwrap();
    }
}

fn load_err(dir: &Path) -> ModelError {
    match Model::from_pretrained(dir, DType::F32, &Device::Cpu) {
        Ok(_) => panic!("loading {} should fail", dir.display()),
        Err(e) => e,
    }
}

#[test]
fn unknown_architecture_is_named() {
    let d = tempfile::tempdir().unwrap();
    copy_model("llama", d.path());
    let cfg = std::fs::read_to_string(d.path().join("config.json")).unwrap().replace("\"llama\"", "\"mamba\"");
    std::fs::write(d.path().join("config.json"), cfg).unwrap();
    let e = load_err(d.path()).to_string();
    assert!(e.contains("unknown model_type `mamba`") && e.contains("config.json"), "{e}");
}

#[test]
fn missing_config_key_is_named() {
    let d = tempfile::tempdir().unwrap();
    copy_model("llama", d.path());
    let mut v: serde_json::Value = serde_json::from_slice(&std::fs::read(d.path().join("config.json")).unwrap()).unwrap();
    v.as_object_mut().unwrap().remove("hidden_size");
    std::fs::write(d.path().join("config.json"), v.to_string()).unwrap();
    let e = load_err(d.path()).to_string();
    assert!(e.contains("hidden_size"), "{e}");
}

#[test]
fn truncated_weights_are_reported() {
    let d = tempfile::tempdir().unwrap();
    copy_model("gpt2", d.path());
    let p = d.path().join("model.safetensors");
    let bytes = std::fs::read(&p).unwrap();
    std::fs::write(&p, &bytes[..bytes.len() / 2]).unwrap();
    let e = load_err(d.path());
    assert!(matches!(e, ModelError::Safetensors { .. }), "{e}");
    assert!(e.to_string().contains("model.safetensors") && e.to_string().contains("truncated"), "{e}");
}

#[test]
fn missing_key_and_shape_mismatch_are_named() {
    // A config that asks for a bigger intermediate size than the weights have.
    let d = tempfile::tempdir().unwrap();
    copy_model("llama", d.path());
    let mut v: serde_json::Value = serde_json::from_slice(&std::fs::read(d.path().join("config.json")).unwrap()).unwrap();
    v["intermediate_size"] = 80.into();
    std::fs::write(d.path().join("config.json"), v.to_string()).unwrap();
    match load_err(d.path()) {
        ModelError::Shape { key, expected, got, .. } => {
            assert!(key.ends_with("mlp.gate_proj.weight"), "{key}");
            assert_eq!((expected, got), (vec![80, 32], vec![64, 32]));
        }
        e => panic!("expected a shape error, got {e}"),
    }
    // An untied model whose lm_head is missing.
    let mut v: serde_json::Value = serde_json::from_slice(&std::fs::read(fixture("llama").join("config.json")).unwrap()).unwrap();
    v["num_hidden_layers"] = 3.into();
    std::fs::write(d.path().join("config.json"), v.to_string()).unwrap();
    match load_err(d.path()) {
        ModelError::MissingKey { key, path } => {
            assert!(key.starts_with("model.layers.2."), "{key}");
            assert!(path.ends_with("model.safetensors"));
        }
        e => panic!("expected a missing-key error, got {e}"),
    }
    // Extra weights the config does not use.
    v["num_hidden_layers"] = 1.into();
    std::fs::write(d.path().join("config.json"), v.to_string()).unwrap();
    let e = load_err(d.path()).to_string();
    assert!(e.contains("unexpected weights") && e.contains("model.layers.1."), "{e}");
}

#[test]
fn every_parameter_of_a_fresh_model_gets_a_gradient() {
    for cfg in [
        ModelConfig::Llama(align_models::config::llama_from_dims(64, 32, 2, 4, 2, 32)),
        ModelConfig::from_value(
            &serde_json::json!({"model_type":"gpt2","vocab_size":64,"n_embd":32,"n_layer":2,"n_head":4,"n_positions":32}),
            Path::new("inline"),
        )
        .unwrap(),
    ] {
        let model = Model::from_config(cfg, 1, &Device::Cpu).unwrap();
        let ids = Tensor::from_vec((0..32u32).map(|i| (i * 5) % 64).collect::<Vec<_>>(), (2, 16), &Device::Cpu).unwrap();
        let pos = default_positions(2, 16, 0, &Device::Cpu).unwrap();
        let logits = model.lm.forward(&ForwardArgs::new(&ids, &pos), None).unwrap();
        let loss = candle_nn::loss::cross_entropy(&logits.reshape((32, 64)).unwrap(), &ids.flatten_all().unwrap()).unwrap();
        let grads = loss.backward().unwrap();
        for (name, var) in model.vars() {
            let g = grads.get(var.as_tensor()).unwrap_or_else(|| panic!("no gradient for {name}"));
            let n = g.sqr().unwrap().sum_all().unwrap().to_scalar::<f32>().unwrap();
            assert!(n > 0.0, "zero gradient for {name}");
        }
    }
}

#[test]
fn same_seed_same_weights() {
    let cfg = ModelConfig::Llama(align_models::config::llama_from_dims(64, 32, 2, 4, 2, 32));
    let a = Model::from_config(cfg.clone(), 3, &Device::Cpu).unwrap();
    let b = Model::from_config(cfg.clone(), 3, &Device::Cpu).unwrap();
    let c = Model::from_config(cfg, 4, &Device::Cpu).unwrap();
    let flat = |m: &Model| -> Vec<f32> {
        m.vars().iter().flat_map(|(_, v)| v.as_tensor().flatten_all().unwrap().to_vec1::<f32>().unwrap()).collect()
    };
    assert_eq!(flat(&a), flat(&b));
    assert_ne!(flat(&a), flat(&c));
}
