//! `align demo` end to end with every stage cut to a few steps: the stages wire together (gym →
//! tokenizer → pretrain → SFT → on-policy pairs → reward model → DPO → PPO → eval → report), each
//! leaves its DONE marker, and a second run reuses them.

use std::process::Command;

#[test]
fn demo_runs_every_stage_and_resumes_from_its_markers() {
    let d = tempfile::tempdir().unwrap();
    let out = d.path().join("demo");
    let sets = [
        "vocab_size=512",
        "model.d_model=32",
        "model.n_layers=1",
        "model.n_heads=2",
        "pretrain.max_steps=4",
        "pretrain.eval_every=2",
        "sft.max_steps=3",
        "sft.eval_every=3",
        "onpolicy_prompts=16",
        "rm_onpolicy_prompts=24",
        "rm.max_steps=3",
        "dpo.max_steps=3",
        "dpo.eval_every=3",
        "ppo.rollout_batch_size=8",
        "ppo.mini_batch_size=8",
        "ppo.ppo_epochs=1",
        "ppo_train.max_steps=2",
        "ppo_sampling.max_new_tokens=8",
        "ppo.normalize_samples=16",
        "hacking_train.max_steps=2",
        "rl_eval_prompts=8",
        "eval_per_family=2",
        "eval_max_new_tokens=8",
    ];
    let run = || {
        let mut c = Command::new(env!("CARGO_BIN_EXE_align"));
        c.args(["demo", "--out", out.to_str().unwrap()]).env("RAYON_NUM_THREADS", "2");
        for s in sets {
            c.args(["--set", s]);
        }
        let o = c.output().unwrap();
        let text = format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr));
        assert!(o.status.success(), "demo failed:\n{text}");
        text
    };
    let first = run();
    for stage in ["gym", "tokenizer", "pretrain", "sft", "onpolicy", "rm", "dpo", "ppo"] {
        assert!(out.join(stage).join("DONE").exists(), "stage {stage} left no DONE marker:\n{first}");
    }
    for f in ["raw.json", "sft.json", "dpo.json", "ppo.json", "stages.json"] {
        assert!(out.join("eval").join(f).exists(), "eval/{f} missing");
    }
    assert!(out.join("report.md").exists());
    let report = std::fs::read_to_string(out.join("report.md")).unwrap();
    assert!(report.contains("aligned (PPO)") && report.contains("aligned (DPO)"), "{report}");
    assert!(out.join("ppo/rollouts.jsonl").exists());
    // The reward model measured on the SFT model's own answers: one line per pair, counted.
    let acc: serde_json::Value = serde_json::from_slice(&std::fs::read(out.join("rm/onpolicy_accuracy.json")).unwrap()).unwrap();
    let lines = std::fs::read_to_string(out.join("rm/onpolicy_pairs.jsonl")).unwrap().lines().count();
    assert_eq!(acc["pairs"].as_u64(), Some(lines as u64), "{acc}");
    let per_family: u64 = acc["per_family"].as_object().unwrap().values().map(|v| v[0].as_u64().unwrap()).sum();
    assert_eq!(per_family, lines as u64, "{acc}");
    if lines > 0 {
        let a = acc["accuracy"].as_f64().unwrap();
        assert!((0.0..=1.0).contains(&a), "{acc}");
        assert!(report.contains("on the SFT model's own answers"), "{report}");
    }
    // A tenth of the behaviour families' train prompts join the SFT data with their gold answers
    // (`sft_behaviour_share`, docs/gym.md), so the SFT model sees some refusals.
    let sft = std::fs::read_to_string(out.join("gym/sft.jsonl")).unwrap();
    assert!(sft.lines().any(|l| l.contains("\"family\":\"harmful\"") && l.contains("I can't help")));
    // DPO's on-policy pairs carry the simulated panel's votes (five annotators), not the gold
    // judge's single label: every preference the demo trains on is the panel's.
    let onp = std::fs::read_to_string(out.join("onpolicy/pairs.jsonl")).unwrap();
    let votes: Vec<usize> = onp.lines().map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["votes"].as_array().unwrap().len()).collect();
    assert!(!votes.is_empty() && votes.iter().all(|&n| n == 5), "{votes:?}");
    // The reward-hacking stage: a biased panel's labels, its reward model, PPO at kl 0, at the
    // default β and at `hacking_extra_kl` (0.5), evaluated on the families where the SFT model
    // answers and on harmful requests.
    for dir in ["rm", "kl 0", "kl 0.05 (default)", "kl 0.5"] {
        assert!(out.join("hacking").join(dir).join("DONE").exists(), "hacking/{dir} left no DONE marker:\n{first}");
    }
    let eval = std::fs::read_to_string(out.join("hacking/eval_prompts.jsonl")).unwrap();
    assert!(!eval.is_empty() && eval.lines().all(|l| ["how_to", "email", "list_sort", "benign_lookalike", "fact", "harmful"].iter().any(|f| l.contains(&format!("\"family\":\"{f}\"")))));
    assert!(eval.contains("\"family\":\"harmful\""), "no harmful request among the hacking runs' held-out prompts");
    assert!(report.contains("hacking/kl 0 |") && report.contains("hacking/kl 0.05 (default)") && report.contains("hacking/kl 0.5 |"), "{report}");
    // Second run: every stage is cached, only the report is rebuilt.
    let t = std::time::Instant::now();
    let second = run();
    assert!(!second.contains("parameters: held-out loss"), "pretraining ran again:\n{second}");
    assert!(t.elapsed().as_secs() < 60, "the cached demo took {:?}", t.elapsed());
}

#[test]
fn demo_rejects_bad_settings_before_writing_anything() {
    let cases = [
        ("sft_behaviour_share=2", "sft_behaviour_share must be in [0, 1]"),
        ("hacking_extra_kl=[0.2, -1.0]", "hacking_extra_kl: -1 is not a KL coefficient"),
    ];
    for (set, message) in cases {
        let d = tempfile::tempdir().unwrap();
        let out = d.path().join("demo");
        let o = Command::new(env!("CARGO_BIN_EXE_align")).args(["demo", "--out", out.to_str().unwrap(), "--set", set]).output().unwrap();
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(!o.status.success(), "{set}");
        assert!(err.contains(message), "{set}: {err}");
        assert!(!err.contains("panicked"), "{err}");
        assert!(!out.exists(), "the demo wrote {} before failing on {set}", out.display());
    }
}
