//! The loop on a tiny next-token model: exact resume, NaN handling, gradient accumulation,
//! checkpoint layout, and a smoke test (loss falls, every parameter moves, metrics are logged).

use align_core::metrics::Record;
use align_core::seed::{self, RngState};
use align_train::checkpoint;
use align_train::{params_by_name, DataStream, Step, TrainConfig, TrainError, Trainer};
use candle_core::{DType, Device, Tensor, Var};
use candle_nn::VarMap;
use rand::Rng as _;
use serde_json::{json, Value};
use std::path::Path;

const VOCAB: usize = 16;
const DIM: usize = 8;
const SEQ: usize = 6;

/// wte (V, D) -> lm_head (V, D) + bias: a bigram model, enough to exercise every part of the loop.
struct Bigram {
    wte: Var,
    w: Var,
    b: Var,
    /// Makes the loss of this call (1-based) NaN.
    nan_loss_at: Option<usize>,
    /// Makes the gradient of this call NaN while the loss stays finite.
    nan_grad_at: Option<usize>,
    calls: usize,
}

fn model(init_seed: u64) -> (VarMap, Bigram) {
    let mut rng = seed::fork(init_seed, "init");
    let mut randn =
        |n: usize| -> Vec<f32> { (0..n).map(|_| (rng.random::<f32>() - 0.5) * 0.4).collect() };
    let dev = Device::Cpu;
    let varmap = VarMap::new();
    let wte = Var::from_vec(randn(VOCAB * DIM), (VOCAB, DIM), &dev).unwrap();
    let w = Var::from_vec(randn(VOCAB * DIM), (VOCAB, DIM), &dev).unwrap();
    let b = Var::from_vec(randn(VOCAB), VOCAB, &dev).unwrap();
    {
        let mut data = varmap.data().lock().unwrap();
        data.insert("wte.weight".into(), wte.clone());
        data.insert("lm_head.weight".into(), w.clone());
        data.insert("lm_head.bias".into(), b.clone());
    }
    (
        varmap,
        Bigram {
            wte,
            w,
            b,
            nan_loss_at: None,
            nan_grad_at: None,
            calls: 0,
        },
    )
}

impl Bigram {
    fn forward_loss(&self, (x, y): &(Tensor, Tensor)) -> candle_core::Result<Tensor> {
        let emb = self.wte.as_tensor().index_select(&x.flatten_all()?, 0)?; // (B*T, D)
        let logits = emb
            .matmul(&self.w.as_tensor().t()?)?
            .broadcast_add(self.b.as_tensor())?; // (B*T, V)
        candle_nn::loss::cross_entropy(&logits, &y.flatten_all()?)
    }
}

impl Step<(Tensor, Tensor)> for Bigram {
    fn loss(&mut self, batch: &(Tensor, Tensor)) -> align_train::Result<(Tensor, Record)> {
        self.calls += 1;
        let mut loss = self.forward_loss(batch)?;
        if self.nan_loss_at == Some(self.calls) {
            loss = (loss * f64::NAN)?;
        }
        if self.nan_grad_at == Some(self.calls) {
            // sqrt at 0: the value is 0, the gradient 0 * inf = NaN. (`x * 0.0` would be pruned from
            // the backward graph by candle, hence `b - b`.)
            loss = (loss
                + (self.b.as_tensor() - self.b.as_tensor())?
                    .sqr()?
                    .sqrt()?
                    .sum_all()?)?;
        }
        let n = batch.0.elem_count();
        Ok((loss, [("num_tokens".to_string(), json!(n))].into()))
    }
}

/// Random windows of a fixed synthetic token sequence; the window offsets come from a seeded RNG
/// whose state is the stream's state.
struct Windows {
    tokens: Vec<u32>,
    batch: usize,
    rng: seed::Rng,
    batches: u64,
    /// Fails on this call to next_batch (1-based): a simulated crash.
    fail_at: Option<u64>,
}

fn windows(batch: usize, seed: u64) -> Windows {
    let mut r = seed::fork(seed, "tokens");
    let tokens = (0..97u32)
        .map(|i| {
            if r.random::<f32>() < 0.1 {
                r.random_range(0..16)
            } else {
                (3 * i + i / 7) % 16
            }
        })
        .collect();
    Windows {
        tokens,
        batch,
        rng: seed::fork(seed, "data"),
        batches: 0,
        fail_at: None,
    }
}

impl DataStream for Windows {
    type Batch = (Tensor, Tensor);
    fn next_batch(&mut self) -> align_train::Result<Self::Batch> {
        self.batches += 1;
        if self.fail_at == Some(self.batches) {
            return Err(TrainError::other(std::io::Error::other("simulated crash")));
        }
        let (mut x, mut y) = (vec![], vec![]);
        for _ in 0..self.batch {
            let o = self.rng.random_range(0..self.tokens.len() - SEQ - 1);
            x.extend_from_slice(&self.tokens[o..o + SEQ]);
            y.extend_from_slice(&self.tokens[o + 1..o + SEQ + 1]);
        }
        let dev = Device::Cpu;
        Ok((
            Tensor::from_vec(x, (self.batch, SEQ), &dev)?,
            Tensor::from_vec(y, (self.batch, SEQ), &dev)?,
        ))
    }
    fn state(&self) -> Value {
        json!({ "rng": seed::save_state(&self.rng), "batches": self.batches })
    }
    fn restore(&mut self, s: &Value) -> align_train::Result<()> {
        let rng: RngState = serde_json::from_value(s["rng"].clone()).map_err(TrainError::other)?;
        self.rng = seed::restore_state(&rng);
        self.batches = s["batches"].as_u64().unwrap();
        Ok(())
    }
    fn epoch(&self) -> Option<f64> {
        Some((self.batches as usize * self.batch * SEQ) as f64 / self.tokens.len() as f64)
    }
}

fn config(max_steps: u64) -> TrainConfig {
    TrainConfig {
        lr: 1e-2,
        weight_decay: 0.1,
        warmup_steps: 2,
        max_steps,
        log_every: 1,
        quiet: true,
        ..Default::default()
    }
}

fn weights(varmap: &VarMap) -> Vec<(String, Vec<f32>)> {
    params_by_name(varmap)
        .into_iter()
        .map(|(n, v)| (n, v.flatten_all().unwrap().to_vec1::<f32>().unwrap()))
        .collect()
}

fn metric_lines(out: &Path) -> Vec<Value> {
    std::fs::read_to_string(out.join("metrics.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// The fields of a metrics line that must replay exactly (not the wall-clock ones).
fn replayable(v: &Value) -> Value {
    json!([
        v["step"],
        v["loss"],
        v["grad_norm"],
        v["learning_rate"],
        v["num_tokens"],
        v["epoch"],
        v["eval_loss"]
    ])
}

#[test]
fn resume_is_bit_exact() {
    let cfg = TrainConfig {
        grad_accum: 2,
        save_every: 4,
        eval_every: 4,
        ..config(8)
    };
    let mut eval = |m: &mut Bigram| -> align_train::Result<f64> {
        let batch = windows(4, 99).next_batch()?;
        Ok(m.forward_loss(&batch)?.to_scalar::<f32>()? as f64)
    };

    // Straight: 8 steps.
    let a = tempfile::tempdir().unwrap();
    let (vm_a, mut m) = model(1);
    let mut data = windows(2, 7);
    let mut tr = Trainer::new(cfg.clone(), params_by_name(&vm_a), a.path()).unwrap();
    tr.fit(&mut m, &mut data, Some(&mut eval)).unwrap();

    // Crash while fetching the first batch of step 5, after the step-4 checkpoint.
    let b = tempfile::tempdir().unwrap();
    {
        let (vm, mut m) = model(1);
        let mut data = windows(2, 7);
        data.fail_at = Some(4 * 2 + 1);
        let mut tr = Trainer::new(cfg.clone(), params_by_name(&vm), b.path()).unwrap();
        let err = tr.fit(&mut m, &mut data, Some(&mut eval)).unwrap_err();
        assert!(err.to_string().contains("simulated crash"), "{err}");
    }
    // A fresh process: different init and data position, then resume.
    let (vm_b, mut m) = model(12345);
    let mut data = windows(2, 7);
    let mut tr = Trainer::new(cfg, params_by_name(&vm_b), b.path()).unwrap();
    assert_eq!(tr.resume(&mut m, &mut data).unwrap(), Some(4));
    tr.fit(&mut m, &mut data, Some(&mut eval)).unwrap();

    assert_eq!(
        weights(&vm_a),
        weights(&vm_b),
        "weights differ bit-wise after resume"
    );
    let (la, lb) = (metric_lines(a.path()), metric_lines(b.path()));
    assert_eq!(la.len(), 8 + 2, "8 train lines and 2 eval lines");
    assert_eq!(
        la.iter().map(replayable).collect::<Vec<_>>(),
        lb.iter().map(replayable).collect::<Vec<_>>()
    );
    let oa = std::fs::read(
        a.path()
            .join("checkpoints/step-000008/optimizer.safetensors"),
    )
    .unwrap();
    let ob = std::fs::read(
        b.path()
            .join("checkpoints/step-000008/optimizer.safetensors"),
    )
    .unwrap();
    assert_eq!(oa, ob, "optimizer state differs after resume");
}

#[test]
fn non_finite_loss_or_grad_stops_and_keeps_last_good_checkpoint() {
    let cfg = TrainConfig {
        save_every: 2,
        ..config(8)
    };
    // A clean run whose step-4 checkpoint is the reference.
    let clean = tempfile::tempdir().unwrap();
    let (vm, mut m) = model(3);
    let mut tr = Trainer::new(
        TrainConfig {
            save_total_limit: 0,
            ..cfg.clone()
        },
        params_by_name(&vm),
        clean.path(),
    )
    .unwrap();
    tr.fit(&mut m, &mut windows(2, 5), None).unwrap();

    for nan_grad in [false, true] {
        let out = tempfile::tempdir().unwrap();
        let (vm, mut m) = model(3);
        if nan_grad {
            m.nan_grad_at = Some(5);
        } else {
            m.nan_loss_at = Some(5);
        }
        let mut tr = Trainer::new(cfg.clone(), params_by_name(&vm), out.path()).unwrap();
        let err = tr.fit(&mut m, &mut windows(2, 5), None).unwrap_err();
        let what = if nan_grad { "grad_norm" } else { "loss" };
        match &err {
            TrainError::NonFinite { step, what: w } => assert_eq!((*step, w.as_str()), (5, what)),
            e => panic!("expected NonFinite, got {e}"),
        }
        assert!(err.to_string().contains("step 5"), "{err}");
        let steps: Vec<u64> = checkpoint::list(out.path())
            .unwrap()
            .into_iter()
            .map(|(s, _)| s)
            .collect();
        assert_eq!(steps, vec![2, 4]);
        let latest = checkpoint::latest(out.path()).unwrap().unwrap();
        assert!(latest.ends_with("step-000004"));
        for f in [checkpoint::MODEL_FILE, checkpoint::OPTIMIZER_FILE] {
            let got = std::fs::read(latest.join(f)).unwrap();
            let want = std::fs::read(clean.path().join("checkpoints/step-000004").join(f)).unwrap();
            assert_eq!(got, want, "{f} of the last good checkpoint changed");
        }
        // The in-memory weights were not stepped with the bad gradient either.
        assert!(weights(&vm)
            .iter()
            .all(|(_, w)| w.iter().all(|x| x.is_finite())));
    }
}

#[test]
fn grad_accumulation_8x1_equals_1x8() {
    let run = |batch: usize, accum: u64| {
        let out = tempfile::tempdir().unwrap();
        let (vm, mut m) = model(4);
        let cfg = TrainConfig {
            grad_accum: accum,
            ..config(5)
        };
        let mut tr = Trainer::new(cfg, params_by_name(&vm), out.path()).unwrap();
        tr.fit(&mut m, &mut windows(batch, 11), None).unwrap();
        (weights(&vm), metric_lines(out.path()))
    };
    let (wa, la) = run(8, 1);
    let (wb, lb) = run(1, 8);
    for ((na, a), (_, b)) in wa.iter().zip(&wb) {
        for (x, y) in a.iter().zip(b) {
            assert!((x - y).abs() <= 1e-6, "{na}: {x} vs {y}");
        }
    }
    for (a, b) in la.iter().zip(&lb) {
        for k in ["loss", "grad_norm"] {
            let (x, y) = (a[k].as_f64().unwrap(), b[k].as_f64().unwrap());
            assert!(
                (x - y).abs() <= 1e-6 * x.abs().max(1.0),
                "step {}: {k} {x} vs {y}",
                a["step"]
            );
        }
        assert_eq!(a["num_tokens"], b["num_tokens"]);
    }
}

#[test]
fn checkpoint_layout_hook_and_pruning() {
    let out = tempfile::tempdir().unwrap();
    let (vm, mut m) = model(5);
    let cfg = TrainConfig {
        save_every: 2,
        save_total_limit: 2,
        ..config(6)
    };
    let mut tr = Trainer::new(cfg.clone(), params_by_name(&vm), out.path()).unwrap();
    tr.set_checkpoint_hook(|dir| {
        align_core::atomic::write_atomic(dir.join("config.json"), b"{\"model_type\": \"bigram\"}")?;
        Ok(())
    });
    tr.fit(&mut m, &mut windows(2, 5), None).unwrap();

    let steps: Vec<u64> = checkpoint::list(out.path())
        .unwrap()
        .into_iter()
        .map(|(s, _)| s)
        .collect();
    assert_eq!(steps, vec![4, 6]);
    let latest_name = std::fs::read_to_string(out.path().join("checkpoints/latest")).unwrap();
    assert_eq!(latest_name.trim(), "step-000006");
    let dir = out.path().join("checkpoints/step-000006");
    for f in [
        "model.safetensors",
        "optimizer.safetensors",
        "trainer_state.json",
        "config.json",
    ] {
        assert!(dir.join(f).is_file(), "{f} missing");
    }
    let state = checkpoint::load_state(&dir).unwrap();
    assert_eq!(state.step, 6);
    assert_eq!(state.config, cfg);
    assert_eq!(state.data_state["batches"], json!(6));
    assert_eq!(state.num_tokens, 6 * 2 * SEQ as u64);
    assert_eq!(
        std::fs::read_dir(out.path().join("checkpoints"))
            .unwrap()
            .count(),
        3,
        "no temp dirs left"
    );

    // Loading is strict: a missing name or a different shape is an error.
    let (_, m2) = model(5);
    let wrong_name = vec![
        ("wte.weight".to_string(), m2.wte.clone()),
        ("nope".to_string(), m2.b.clone()),
    ];
    assert!(checkpoint::load_params(&dir, &wrong_name)
        .unwrap_err()
        .to_string()
        .contains("missing parameter `nope`"));
    let bad = Var::zeros((VOCAB, DIM + 1), DType::F32, &Device::Cpu).unwrap();
    let wrong_shape = vec![
        ("lm_head.bias".to_string(), m2.b.clone()),
        ("lm_head.weight".to_string(), bad),
        ("wte.weight".to_string(), m2.wte.clone()),
    ];
    assert!(checkpoint::load_params(&dir, &wrong_shape)
        .unwrap_err()
        .to_string()
        .contains("shape"));
    checkpoint::load_params(
        &dir,
        &[
            ("lm_head.bias".into(), m2.b.clone()),
            ("lm_head.weight".into(), m2.w.clone()),
            ("wte.weight".into(), m2.wte.clone()),
        ],
    )
    .unwrap();
    assert_eq!(
        m2.w.flatten_all().unwrap().to_vec1::<f32>().unwrap(),
        weights(&vm)[1].1
    ); // sorted: lm_head.bias, lm_head.weight, wte.weight
}

#[test]
fn smoke_loss_falls_every_parameter_moves_metrics_logged() {
    let out = tempfile::tempdir().unwrap();
    let (vm, mut m) = model(6);
    let before = weights(&vm);
    let cfg = TrainConfig {
        lr: 3e-2,
        max_steps: 60,
        log_every: 10,
        eval_every: 30,
        ..config(60)
    };
    let mut tr = Trainer::new(cfg, params_by_name(&vm), out.path()).unwrap();
    let mut eval = |m: &mut Bigram| -> align_train::Result<f64> {
        Ok(m.forward_loss(&windows(16, 99).next_batch()?)?
            .to_scalar::<f32>()? as f64)
    };
    let first = eval(&mut m).unwrap();
    let summary = tr.fit(&mut m, &mut windows(4, 8), Some(&mut eval)).unwrap();
    assert_eq!(summary.step, 60);
    let best = summary.best_eval_loss.unwrap();
    assert!(best < first - 0.3, "eval loss {first} -> {best}");
    for ((n, a), (_, b)) in before.iter().zip(&weights(&vm)) {
        assert!(
            a.iter().zip(b).filter(|(x, y)| x != y).count() > 0,
            "{n} did not move"
        );
    }
    let lines = metric_lines(out.path());
    let train: Vec<&Value> = lines.iter().filter(|l| l.get("loss").is_some()).collect();
    assert_eq!(train.len(), 6);
    for k in [
        "step",
        "loss",
        "learning_rate",
        "grad_norm",
        "tokens_per_second",
        "num_tokens",
        "epoch",
    ] {
        assert!(train[0].get(k).is_some(), "{k} not logged: {}", train[0]);
    }
    assert_eq!(train[5]["num_tokens"], json!(60 * 4 * SEQ));
    let evals: Vec<&Value> = lines
        .iter()
        .filter(|l| l.get("eval_loss").is_some())
        .collect();
    assert_eq!(evals.len(), 2);
    let (l, p) = (
        evals[1]["eval_loss"].as_f64().unwrap(),
        evals[1]["eval_ppl"].as_f64().unwrap(),
    );
    assert!((l.exp() - p).abs() < 1e-9);
}
