//! Reward models against transformers' `LlamaForSequenceClassification` (num_labels 1):
//! `scripts/fixtures/make_reward_model.py` builds one from the llama parity model with a seeded
//! `score` and dumps rewards of a right-padded batch; we load it and compare (1e-4 relative).
//! The reverse direction (align saves, transformers loads) is checked by the script's `verify`
//! mode on the directory [`saved_model_round_trips`] writes when `ALIGN_RM_VERIFY_DIR` is set.

use align_models::config::llama_from_dims;
use align_models::reward::{RewardModel, SCORE_KEY};
use align_models::{Model, ModelConfig};
use candle_core::{DType, Device, Tensor};
use std::path::PathBuf;

fn fixture() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/reward_model/llama")
}

fn rel_err(a: &Tensor, b: &Tensor) -> f32 {
    let (a, b) = (&a.flatten_all().unwrap(), &b.flatten_all().unwrap());
    let d = (a - b).unwrap().abs().unwrap().max(0).unwrap().to_scalar::<f32>().unwrap();
    d / b.abs().unwrap().max(0).unwrap().to_scalar::<f32>().unwrap().max(1e-12)
}

fn io() -> (Tensor, Vec<usize>, Tensor) {
    let io = candle_core::safetensors::load(fixture().join("io.safetensors"), &Device::Cpu).unwrap();
    let ids = io["input_ids"].to_dtype(DType::U32).unwrap();
    let lengths: Vec<usize> = io["lengths"].to_vec1::<i64>().unwrap().into_iter().map(|n| n as usize).collect();
    (ids, lengths, io["rewards"].clone())
}

#[test]
fn rewards_match_transformers() {
    let rm = RewardModel::from_pretrained(fixture().join("model"), DType::F32, &Device::Cpu).unwrap();
    let (ids, lengths, want) = io();
    let got = rm.forward(&ids, &lengths).unwrap();
    let err = rel_err(&got, &want);
    assert!(err < 1e-4, "rewards {got} vs transformers {want}: rel err {err}");
    // No lm_head among the reward model's parameters; score is.
    let names: Vec<String> = rm.vars().into_iter().map(|(k, _)| k).collect();
    assert!(!names.iter().any(|k| k == "lm_head.weight"));
    assert_eq!(names.iter().filter(|k| *k == SCORE_KEY).count(), 1);
}

#[test]
fn a_row_scores_the_same_alone_and_padded_in_a_batch() {
    let rm = RewardModel::from_pretrained(fixture().join("model"), DType::F32, &Device::Cpu).unwrap();
    let (ids, lengths, _) = io();
    let batch = rm.forward(&ids, &lengths).unwrap().to_vec1::<f32>().unwrap();
    for (i, &n) in lengths.iter().enumerate() {
        let row = ids.narrow(0, i, 1).unwrap().narrow(1, 0, n).unwrap();
        let alone = rm.forward(&row, &[n]).unwrap().to_vec1::<f32>().unwrap()[0];
        assert!((alone - batch[i]).abs() < 1e-5, "row {i}: {alone} alone vs {} in the batch", batch[i]);
    }
}

#[test]
fn a_causal_lm_without_score_is_not_a_reward_model_but_gets_a_seeded_head() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/parity/llama/model");
    assert!(RewardModel::from_pretrained(&dir, DType::F32, &Device::Cpu).is_err());
    let (a, from_ckpt) = RewardModel::load_or_init(&dir, 7, DType::F32, &Device::Cpu).unwrap();
    assert!(!from_ckpt);
    let (b, _) = RewardModel::load_or_init(&dir, 7, DType::F32, &Device::Cpu).unwrap();
    let (sa, sb) = (a.score.as_tensor(), b.score.as_tensor());
    assert_eq!(sa.dims(), [1, 32]);
    assert_eq!(rel_err(sa, sb), 0.0, "same seed, same head");
    let std = sa.sqr().unwrap().mean_all().unwrap().to_scalar::<f32>().unwrap().sqrt();
    assert!((0.05..0.4).contains(&std), "score std {std} (expected about 1/sqrt(33) = 0.17)");
}

/// Save → load in align gives the same rewards; with `ALIGN_RM_VERIFY_DIR` set the saved model
/// and `expected.safetensors` go there for `make_reward_model.py verify`.
#[test]
fn saved_model_round_trips() {
    for (name, tied) in [("untied", false), ("tied", true)] {
        let mut c = llama_from_dims(50, 32, 2, 4, 2, 64);
        c.tie_word_embeddings = tied;
        let model = Model::from_config(ModelConfig::Llama(c), 3, &Device::Cpu).unwrap();
        let rm = RewardModel::from_causal_lm(model, 5).unwrap();
        let keep = tempfile::tempdir().unwrap();
        let dir = match std::env::var_os("ALIGN_RM_VERIFY_DIR") {
            Some(d) => PathBuf::from(d).join(name),
            None => keep.path().join(name),
        };
        rm.save_pretrained(&dir, DType::F32, 0).unwrap();
        let cfg: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(dir.join("config.json")).unwrap()).unwrap();
        assert_eq!(cfg["architectures"][0], "LlamaForSequenceClassification");
        assert_eq!(cfg["num_labels"], 1);
        assert_eq!(cfg["pad_token_id"], 0);
        let st = candle_core::safetensors::load(dir.join("model.safetensors"), &Device::Cpu).unwrap();
        assert!(st.contains_key(SCORE_KEY) && !st.contains_key("lm_head.weight"));

        let lengths = vec![9usize, 4, 6];
        let mut data = vec![0u32; 3 * 9];
        for (i, &n) in lengths.iter().enumerate() {
            for j in 0..n {
                data[i * 9 + j] = 1 + ((i * 7 + j * 3) % 49) as u32;
            }
        }
        let ids = Tensor::from_vec(data, (3, 9), &Device::Cpu).unwrap();
        let want = rm.forward(&ids, &lengths).unwrap();
        let back = RewardModel::from_pretrained(&dir, DType::F32, &Device::Cpu).unwrap();
        let got = back.forward(&ids, &lengths).unwrap();
        assert!(rel_err(&got, &want) < 1e-6);
        let expected = [("input_ids".to_string(), ids.to_dtype(DType::I64).unwrap()), ("rewards".to_string(), want)];
        align_models::hf::save_safetensors(dir.join("expected.safetensors"), &expected).unwrap();
    }
}
