//! Parity with transformers, in the manner of llm.c's test_gpt2.c: `scripts/fixtures/make_parity.py`
//! builds a tiny random model of each architecture, saves it in HF format and dumps inputs,
//! logits, loss and the gradient of every parameter. Here we load the same files and compare:
//! logits and loss within 1e-4 relative error, every gradient within 1e-3.
//!
//! They run on `ALIGN_TEST_DEVICE` (default `cpu`): on a GPU machine, a `--features cuda` build
//! runs the same comparisons on `cuda` (scripts/cuda/gpu_check.sh, docs/cuda.md).

use align_models::causal_lm::default_positions;
use align_models::{ForwardArgs, KvCache, Model};
use candle_core::{DType, Device, Tensor, D};
use std::collections::HashMap;
use std::path::PathBuf;

/// The device under test: `ALIGN_TEST_DEVICE`, default cpu.
fn dev() -> Device {
    let spec = std::env::var("ALIGN_TEST_DEVICE").unwrap_or_else(|_| "cpu".into());
    align_models::device::parse_device(&spec).unwrap_or_else(|e| panic!("ALIGN_TEST_DEVICE: {e}"))
}

const ARCHS: [&str; 4] = ["llama", "mistral", "qwen2", "gpt2"];

fn fixture_dir(arch: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/parity").join(arch)
}

fn load(arch: &str) -> (Model, HashMap<String, Tensor>) {
    let dir = fixture_dir(arch);
    let model = Model::from_pretrained(dir.join("model"), DType::F32, &dev()).unwrap();
    let io = candle_core::safetensors::load(dir.join("io.safetensors"), &dev()).unwrap();
    (model, io)
}

/// max |a - b| / max |b|.
fn rel_err(a: &Tensor, b: &Tensor) -> f32 {
    let a = a.to_dtype(DType::F32).unwrap().flatten_all().unwrap();
    let b = b.to_dtype(DType::F32).unwrap().flatten_all().unwrap();
    let diff = (&a - &b).unwrap().abs().unwrap().max(0).unwrap().to_scalar::<f32>().unwrap();
    let scale = b.abs().unwrap().max(0).unwrap().to_scalar::<f32>().unwrap().max(1e-12);
    diff / scale
}

fn ids(t: &Tensor) -> Tensor {
    t.to_dtype(DType::U32).unwrap()
}

/// HF's causal-LM loss: mean cross-entropy of logits[:, :-1] against ids[:, 1:].
fn lm_loss(logits: &Tensor, ids: &Tensor) -> Tensor {
    let (b, t, v) = logits.dims3().unwrap();
    let l = logits.narrow(1, 0, t - 1).unwrap().reshape((b * (t - 1), v)).unwrap();
    let y = ids.narrow(1, 1, t - 1).unwrap().flatten_all().unwrap();
    candle_nn::loss::cross_entropy(&l, &y).unwrap()
}

#[test]
fn logits_loss_and_every_gradient_match_transformers() {
    for arch in ARCHS {
        let (model, io) = load(arch);
        let input = ids(&io["a.input_ids"]);
        let (b, t) = input.dims2().unwrap();
        let pos = default_positions(b, t, 0, &dev()).unwrap();
        let logits = model.lm.forward(&ForwardArgs::new(&input, &pos), None).unwrap();
        let e = rel_err(&logits, &io["a.logits"]);
        assert!(e < 1e-4, "{arch}: logits rel err {e}");
        let loss = lm_loss(&logits, &input);
        let e = rel_err(&loss, &io["a.loss"].reshape(()).unwrap());
        assert!(e < 1e-4, "{arch}: loss rel err {e}");
        let grads = loss.backward().unwrap();
        let vars = model.vars();
        let expected: Vec<&String> = io.keys().filter(|k| k.starts_with("grad.")).collect();
        assert_eq!(vars.len(), expected.len(), "{arch}: number of parameters");
        for (name, var) in vars {
            let g = grads.get(var.as_tensor()).unwrap_or_else(|| panic!("{arch}: no gradient for {name}"));
            let want = io.get(&format!("grad.{name}")).unwrap_or_else(|| panic!("{arch}: fixture has no grad.{name}"));
            let e = rel_err(g, want);
            assert!(e < 1e-3, "{arch}: gradient of {name} rel err {e}");
        }
    }
}

#[test]
fn left_padded_batch_matches_transformers() {
    for arch in ARCHS {
        let (model, io) = load(arch);
        let input = ids(&io["b.input_ids"]);
        let mask = io["b.attention_mask"].to_dtype(DType::U8).unwrap();
        let pos = ids(&io["b.position_ids"]);
        let mut args = ForwardArgs::new(&input, &pos);
        args.key_mask = Some(&mask);
        let logits = model.lm.forward(&args, None).unwrap();
        // Compare only real (non-padding) positions: padded query rows are undefined.
        let m = mask.to_dtype(DType::F32).unwrap().unsqueeze(D::Minus1).unwrap();
        let got = logits.broadcast_mul(&m).unwrap();
        let want = io["b.logits"].broadcast_mul(&m).unwrap();
        let e = rel_err(&got, &want);
        assert!(e < 1e-4, "{arch}: padded logits rel err {e}");
    }
}

#[test]
fn kv_cache_decoding_matches_transformers() {
    for arch in ARCHS {
        let (model, io) = load(arch);
        let prefill = ids(&io["c.prefill_ids"]);
        let decode = ids(&io["c.decode_ids"]);
        let mut cache = KvCache::new(model.lm.num_layers());
        let t0 = prefill.dim(1).unwrap();
        let pos = default_positions(1, t0, 0, &dev()).unwrap();
        model.lm.forward(&ForwardArgs::new(&prefill, &pos), Some(&mut cache)).unwrap();
        let n = decode.dim(1).unwrap();
        let mut rows = vec![];
        for i in 0..n {
            let tok = decode.narrow(1, i, 1).unwrap();
            let pos = default_positions(1, 1, t0 + i, &dev()).unwrap();
            let l = model.lm.forward(&ForwardArgs::new(&tok, &pos), Some(&mut cache)).unwrap();
            rows.push(l.squeeze(0).unwrap().squeeze(0).unwrap());
        }
        let got = Tensor::stack(&rows, 0).unwrap();
        let e = rel_err(&got, &io["c.decode_logits"]);
        assert!(e < 1e-4, "{arch}: cached decode logits rel err {e}");
        assert_eq!(cache.seq_len(), t0 + n);
    }
}

#[test]
fn save_then_load_gives_the_same_logits() {
    for arch in ARCHS {
        let (model, io) = load(arch);
        let dir = tempfile::tempdir().unwrap();
        model.save_pretrained(dir.path(), DType::F32).unwrap();
        let again = Model::from_pretrained(dir.path(), DType::F32, &dev()).unwrap();
        let input = ids(&io["a.input_ids"]);
        let (b, t) = input.dims2().unwrap();
        let pos = default_positions(b, t, 0, &dev()).unwrap();
        let a = model.lm.forward(&ForwardArgs::new(&input, &pos), None).unwrap();
        let c = again.lm.forward(&ForwardArgs::new(&input, &pos), None).unwrap();
        assert_eq!(rel_err(&a, &c), 0.0, "{arch}");
        // bf16 round trip loads and stays close.
        let dir16 = tempfile::tempdir().unwrap();
        model.save_pretrained(dir16.path(), DType::BF16).unwrap();
        let m16 = Model::from_pretrained(dir16.path(), DType::F32, &dev()).unwrap();
        let c16 = m16.lm.forward(&ForwardArgs::new(&input, &pos), None).unwrap();
        assert!(rel_err(&c16, &a) < 5e-2, "{arch}: bf16 round trip");
    }
}

#[test]
fn sharded_checkpoint_loads_like_a_single_file() {
    let (model, io) = load("llama");
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(fixture_dir("llama").join("model/config.json"), dir.path().join("config.json")).unwrap();
    let vars = model.vars();
    let (a, b) = vars.split_at(vars.len() / 2);
    let mut map = serde_json::Map::new();
    for (i, part) in [a, b].iter().enumerate() {
        let file = format!("model-0000{}-of-00002.safetensors", i + 1);
        let ts: Vec<(String, Tensor)> = part.iter().map(|(k, v)| (k.clone(), v.as_tensor().clone())).collect();
        align_models::hf::save_safetensors(dir.path().join(&file), &ts).unwrap();
        for (k, _) in part.iter() {
            map.insert(k.clone(), file.clone().into());
        }
    }
    let index = serde_json::json!({"metadata": {}, "weight_map": map});
    std::fs::write(dir.path().join("model.safetensors.index.json"), index.to_string()).unwrap();
    let sharded = Model::from_pretrained(dir.path(), DType::F32, &dev()).unwrap();
    let input = ids(&io["a.input_ids"]);
    let pos = default_positions(2, 12, 0, &dev()).unwrap();
    let l = sharded.lm.forward(&ForwardArgs::new(&input, &pos), None).unwrap();
    assert!(rel_err(&l, &io["a.logits"]) < 1e-4);
}
