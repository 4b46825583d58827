//! The `align` binary end to end on a tiny model: tokenizer training, pretraining, resume, and
//! errors a user can act on (non-zero exit, no panic trace).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn align(args: &[&str], cwd: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_align"))
        .args(args)
        .current_dir(cwd)
        .env("RAYON_NUM_THREADS", "2")
        .output()
        .expect("run align")
}

fn ok(out: &Output) -> String {
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "align failed:\n{text}");
    text
}

fn shakespeare() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/data/tinyshakespeare/input.txt")
}

/// A work dir with 60 KB of Tiny Shakespeare, a 512-token BPE and a tiny pretrain config.
fn setup() -> tempfile::TempDir {
    let d = tempfile::tempdir().unwrap();
    let text = std::fs::read_to_string(shakespeare()).unwrap();
    std::fs::write(d.path().join("corpus.txt"), &text[..60_000]).unwrap();
    ok(&align(&["tokenizer", "train", "--data", "corpus.txt", "--vocab-size", "512", "--out", "tok"], d.path()));
    let cfg = r#"
out_dir = "run"
tokenizer = "tok"
[data]
files = ["corpus.txt"]
seq_len = 32
batch_size = 4
eval_fraction = 0.1
eval_batches = 4
[model]
d_model = 32
n_layers = 2
n_heads = 4
n_kv_heads = 2
[train]
lr = 3e-3
warmup_steps = 2
max_steps = 6
log_every = 1
eval_every = 3
save_every = 3
seed = 7
quiet = true
"#;
    std::fs::write(d.path().join("cfg.toml"), cfg).unwrap();
    d
}

#[test]
fn pretrain_resume_is_bit_for_bit_through_the_binary() {
    let d = setup();
    // 6 steps straight.
    ok(&align(&["pretrain", "--config", "cfg.toml"], d.path()));
    let straight = std::fs::read(d.path().join("run/model/model.safetensors")).unwrap();
    let straight_metrics = std::fs::read_to_string(d.path().join("run/metrics.jsonl")).unwrap();
    // 3 steps, stop, resume for 3 more, in another run directory.
    ok(&align(&["pretrain", "--config", "cfg.toml", "--set", "out_dir=run2", "--set", "train.max_steps=3"], d.path()));
    let t = ok(&align(&["pretrain", "--config", "cfg.toml", "--set", "out_dir=run2", "--resume"], d.path()));
    assert!(t.contains("resum"), "{t}");
    let resumed = std::fs::read(d.path().join("run2/model/model.safetensors")).unwrap();
    assert!(straight == resumed, "resumed weights differ from the straight run");
    let resumed_metrics = std::fs::read_to_string(d.path().join("run2/metrics.jsonl")).unwrap();
    let losses = |m: &str| -> Vec<String> {
        m.lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .filter_map(|v| v.get("loss").map(|x| x.to_string()))
            .collect()
    };
    assert_eq!(losses(&straight_metrics), losses(&resumed_metrics));
    assert_eq!(losses(&straight_metrics).len(), 6);
    // The checkpoint and the final model are loadable HF directories with the resolved config.
    for f in ["config.json", "tokenizer.json", "tokenizer_config.json", "generation_config.json", "align_config.toml"] {
        assert!(d.path().join("run/model").join(f).exists(), "{f}");
        assert!(d.path().join("run/checkpoints/step-000006").join(f).exists(), "{f}");
    }
}

#[test]
fn bad_configs_fail_with_a_message_and_no_panic() {
    let d = setup();
    let cases: [(&[&str], &str); 4] = [
        (&["pretrain", "--config", "cfg.toml", "--set", "train.learning_rate=1"], "learning_rate"),
        (&["pretrain", "--config", "missing.toml"], "missing.toml"),
        (&["pretrain", "--config", "cfg.toml", "--set", "data.files=[\"nope.txt\"]"], "nope.txt"),
        (&["pretrain", "--config", "cfg.toml", "--set", "model.context=16"], "seq_len"),
    ];
    for (args, needle) in cases {
        let out = align(args, d.path());
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?} should fail");
        assert!(err.contains(needle), "{args:?}: message should name {needle}: {err}");
        assert!(!err.contains("panicked"), "{args:?}: {err}");
    }
    assert!(!d.path().join("run/model").exists(), "a failed run must not write a model");
}

#[test]
fn tokenizer_train_can_split_digits() {
    let d = tempfile::tempdir().unwrap();
    let lines: String = (0..400).map(|i| format!("The gate was built in 1895 and is {} meters tall.\n", 100 + i % 9)).collect();
    std::fs::write(d.path().join("c.txt"), lines).unwrap();
    let tokens = |dir: &str| -> Vec<String> {
        let out = ok(&align(&["tokenizer", "encode", "--tokenizer", dir, "--text", "built in 1895", "--no-special-tokens"], d.path()));
        let v: serde_json::Value = serde_json::from_str(out.lines().last().unwrap()).unwrap();
        v["tokens"].as_array().unwrap().iter().map(|t| t.as_str().unwrap().to_string()).collect()
    };
    ok(&align(&["tokenizer", "train", "--data", "c.txt", "--vocab-size", "300", "--out", "plain"], d.path()));
    ok(&align(&["tokenizer", "train", "--data", "c.txt", "--vocab-size", "300", "--out", "digits", "--split-digits"], d.path()));
    let plain = tokens("plain");
    assert!(plain.iter().any(|t| t.chars().filter(|c| c.is_ascii_digit()).count() > 1), "{plain:?}");
    assert_eq!(tokens("digits").iter().rev().take(4).rev().cloned().collect::<Vec<_>>(), ["Ġ1", "8", "9", "5"]);
}
