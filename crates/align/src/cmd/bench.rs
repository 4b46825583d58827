//! `align bench`: training and generation speed of Llama-style models on the CPU, the machine's
//! f32 matmul peak, and peak memory. `scripts/bench/torch_bench.py` measures the same things in
//! PyTorch with the same JSON layout; `scripts/bench/run.sh` runs both and prints the ratios
//! (results and method: BENCHMARKS.md).
//!
//! Achieved GFLOP/s of a training step use PaLM's count (Chowdhery et al. 2022, appendix B):
//!
//! ```text
//! flops/step = tokens * (6 * N + 12 * L * T * d)
//! ```
//!
//! N: parameters (tied embeddings counted once; the tied LM head is a real V*d matmul), L layers,
//! T sequence length, d model width; the second term is attention's QKᵀ and AV (forward 4*T*d per
//! token and layer, backward twice that), counted for the full T×T square although the mask
//! zeroes half of it.
//!
//! A step is split into forward (body up to the final norm, LM head, loss), backward, gradient
//! clipping (global norm 1.0) and AdamW: each part is timed on its own and reported as the median
//! over the timed steps. Peak memory is the process's VmHWM after resetting it (`clear_refs` 5)
//! at the start of each phase.

use align_generate::{generate_model, GenerateOptions, SamplingConfig};
use align_models::causal_lm::default_positions;
use align_models::config::llama_from_dims;
use align_models::{ForwardArgs, Model, ModelConfig};
use align_train::optim::{clip_grad_norm, AdamW, AdamWConfig};
use anyhow::Context;
use candle_core::{Device, Tensor};
use serde_json::{json, Value};
use std::path::PathBuf;
use std::time::Instant;

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum BenchSize {
    /// d_model 256, 4 layers, 4 heads, vocab 4096, seq 256, batch 8 (~4.3M parameters).
    Tiny,
    /// GPT-2-small sized: d_model 768, 12 layers, 12 heads, vocab 32000, seq 512, batch 4 (~110M).
    Small,
    All,
}

#[derive(clap::Args, Debug)]
pub struct BenchArgs {
    /// Which model sizes to benchmark.
    #[arg(long, value_enum, default_value_t = BenchSize::All)]
    pub size: BenchSize,
    /// Timed training steps after warmup (default: 10 for tiny, 3 for small).
    #[arg(long)]
    pub steps: Option<usize>,
    /// Untimed warmup training steps.
    #[arg(long, default_value_t = 1)]
    pub warmup: usize,
    /// Worker threads (sets RAYON_NUM_THREADS before any tensor op); default: all cores.
    #[arg(long)]
    pub threads: Option<usize>,
    /// Write the results as JSON to this file.
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// Skip the generation benchmark.
    #[arg(long)]
    pub skip_generation: bool,
    /// Skip the training benchmark.
    #[arg(long)]
    pub skip_training: bool,
    /// Skip the matmul peak measurement.
    #[arg(long)]
    pub skip_matmul: bool,
    /// Prompt length of the generation benchmark (random token ids).
    #[arg(long, default_value_t = 16)]
    pub prompt_len: usize,
    /// New tokens per row in the generation benchmark (greedy, no EOS: always this many).
    #[arg(long, default_value_t = 128)]
    pub new_tokens: usize,
    /// Timed repetitions of the matmul (best of) and of each generation run (best of).
    #[arg(long, default_value_t = 3)]
    pub reps: usize,
    /// Matmul precision of the linear layers (training and generation): f32, or bf16 (AVX512_BF16 products,
    /// f32 master weights and accumulation; `align_models::kernels::set_matmul_precision`).
    #[arg(long, default_value = "f32")]
    pub matmul_precision: String,
    /// Recompute each decoder block in the backward instead of keeping its activations
    /// (`align_models::checkpoint`): less memory, one more block forward per step.
    #[arg(long)]
    pub activation_checkpointing: bool,
    /// Where the models run: cpu, cuda or cuda:N (a `--features cuda` build; docs/cuda.md). On a
    /// GPU every timed phase ends with a device synchronize, and memory is not measured (the
    /// process's RSS says nothing about GPU memory).
    #[arg(long, default_value = "cpu")]
    pub device: String,
}

/// The shapes of one benchmarked model.
struct Preset {
    name: &'static str,
    vocab: usize,
    d_model: usize,
    layers: usize,
    heads: usize,
    seq: usize,
    batch: usize,
    default_steps: usize,
}

const TINY: Preset = Preset {
    name: "tiny",
    vocab: 4096,
    d_model: 256,
    layers: 4,
    heads: 4,
    seq: 256,
    batch: 8,
    default_steps: 10,
};
const SMALL: Preset = Preset {
    name: "small",
    vocab: 32000,
    d_model: 768,
    layers: 12,
    heads: 12,
    seq: 512,
    batch: 4,
    default_steps: 3,
};

impl Preset {
    fn model(&self, dev: &Device) -> anyhow::Result<Model> {
        let cfg = llama_from_dims(
            self.vocab,
            self.d_model,
            self.layers,
            self.heads,
            self.heads,
            self.seq,
        );
        Ok(Model::from_config(
            ModelConfig::Llama(cfg),
            0,
            dev,
        )?)
    }
}

pub fn run(args: BenchArgs) -> anyhow::Result<()> {
    let threads = args.threads.unwrap_or_else(|| {
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
    });
    // candle reads this on every matmul (and re-reads /proc/cpuinfo without it); rayon reads it
    // when its global pool starts, so it must be set before the first tensor op.
    std::env::set_var("RAYON_NUM_THREADS", threads.to_string());
    std::env::set_var("CANDLE_NUM_THREADS", threads.to_string());
    let presets: Vec<&Preset> = match args.size {
        BenchSize::Tiny => vec![&TINY],
        BenchSize::Small => vec![&SMALL],
        BenchSize::All => vec![&TINY, &SMALL],
    };

    let dev = align_models::device::parse_device(&args.device).context("--device")?;
    let precision: align_models::kernels::MatmulPrecision = args.matmul_precision.parse().map_err(|e| anyhow::anyhow!("--matmul-precision: {e}"))?;
    align_models::kernels::set_matmul_precision(precision);
    align_models::checkpoint::set_activation_checkpointing(args.activation_checkpointing);
    let env_of = |k: &str| std::env::var(k).ok();
    let mut out = json!({
        "impl": "align",
        "matmul_precision": args.matmul_precision,
        "activation_checkpointing": args.activation_checkpointing,
        "version": env!("CARGO_PKG_VERSION"),
        "threads": threads,
        "device": align_models::device::device_name(&dev),
        "env": {
            "MIMALLOC_PURGE_DELAY": env_of("MIMALLOC_PURGE_DELAY"),
            "mimalloc_purge_delay": crate::mimalloc_purge_delay(),
            "CANDLE_BARRIER_POOL_SPIN_LIMIT": env_of("CANDLE_BARRIER_POOL_SPIN_LIMIT"),
        },
        "cpu_features": cpu_features(),
        "train": {},
        "generate": {},
    });

    if !args.skip_matmul {
        let n = 2048;
        let gflops = matmul_peak(n, args.reps.max(1), &dev)?;
        println!(
            "matmul {n}x{n}x{n} f32: {gflops:.1} GFLOP/s (best of {})",
            args.reps.max(1)
        );
        out["matmul"] = json!({ "n": n, "dtype": "f32", "gflops": gflops });
    }

    if !args.skip_training {
        for p in &presets {
            let steps = args.steps.unwrap_or(p.default_steps).max(1);
            // On a rayon worker, as `main` runs every compute command (see `in_pool` there).
            let r = rayon::scope(|_| bench_train(p, args.warmup, steps, &dev))
                .with_context(|| format!("training benchmark `{}`", p.name))?;
            out["train"][p.name] = r;
        }
    }

    if !args.skip_generation {
        for p in &presets {
            let r = rayon::scope(|_| bench_generate(p, args.prompt_len, args.new_tokens, args.reps.max(1), &dev))
                .with_context(|| format!("generation benchmark `{}`", p.name))?;
            out["generate"][p.name] = r;
        }
    }

    print_table(&out);
    if let Some(path) = &args.json {
        std::fs::write(path, serde_json::to_string_pretty(&out)? + "\n")
            .with_context(|| format!("writing {}", path.display()))?;
        println!("wrote {}", path.display());
    }
    Ok(())
}

/// Best-of-`reps` GFLOP/s of an (n, n) x (n, n) f32 matmul (2n³ flops).
fn matmul_peak(n: usize, reps: usize, dev: &Device) -> anyhow::Result<f64> {
    let a = Tensor::randn(0f32, 1.0, (n, n), dev)?;
    let b = Tensor::randn(0f32, 1.0, (n, n), dev)?;
    a.matmul(&b)?; // warmup
    dev.synchronize()?;
    let mut best = f64::INFINITY;
    for _ in 0..reps {
        let t0 = Instant::now();
        let c = a.matmul(&b)?;
        dev.synchronize()?;
        best = best.min(t0.elapsed().as_secs_f64());
        drop(c);
    }
    Ok(2.0 * (n as f64).powi(3) / best / 1e9)
}

fn median(xs: &[f64]) -> f64 {
    let mut v = xs.to_vec();
    v.sort_by(|a, b| a.total_cmp(b));
    let n = v.len();
    if n == 0 {
        f64::NAN
    } else if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

/// (VmRSS, VmHWM) of this process in MiB, from /proc/self/status (None off Linux).
fn rss_mib() -> Option<(f64, f64)> {
    let s = std::fs::read_to_string("/proc/self/status").ok()?;
    let field = |k: &str| -> Option<f64> {
        let line = s.lines().find(|l| l.starts_with(k))?;
        let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
        Some(kb / 1024.0)
    };
    Some((field("VmRSS:")?, field("VmHWM:")?))
}

/// Resets VmHWM to the current RSS (Linux ≥ 4.0), so a phase's peak is its own.
fn reset_peak_rss() {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

fn cpu_features() -> Value {
    #[cfg(target_arch = "x86_64")]
    {
        json!({
            "avx2": std::arch::is_x86_feature_detected!("avx2"),
            "fma": std::arch::is_x86_feature_detected!("fma"),
            "avx512f": std::arch::is_x86_feature_detected!("avx512f"),
        })
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        json!({})
    }
}

/// Timings of one training step, seconds.
#[derive(Default, Clone, Copy)]
struct StepTimes {
    fwd_body: f64,
    fwd_head: f64,
    loss: f64,
    bwd: f64,
    clip: f64,
    opt: f64,
    total: f64,
}

fn bench_train(p: &Preset, warmup: usize, steps: usize, dev: &Device) -> anyhow::Result<Value> {
    reset_peak_rss();
    let rss_start = rss_mib().map(|r| r.0);
    let model = p.model(dev)?;
    let n_params = model.num_params();
    let dev = &model.device;
    // A GPU runs asynchronously: each phase's end waits for its kernels (a no-op on the CPU).
    let now = || -> anyhow::Result<Instant> {
        dev.synchronize()?;
        Ok(Instant::now())
    };
    let mut opt = AdamW::new(
        model.vars(),
        AdamWConfig {
            weight_decay: 0.1,
            ..AdamWConfig::default()
        },
    )?;
    let (b, t, v) = (p.batch, p.seq, p.vocab);
    let positions = default_positions(b, t, 0, dev)?;
    println!(
        "train {}: {:.2}M params, batch {b} x seq {t}, {warmup} warmup + {steps} timed steps",
        p.name,
        n_params as f64 / 1e6
    );

    let mut times = Vec::with_capacity(steps);
    let mut losses = Vec::new();
    for step in 0..warmup + steps {
        // A fresh random batch each step: (B, T+1) ids, inputs are [..T], targets [1..].
        let data = Tensor::from_vec(align_core::bench::random_ids(b * (t + 1), v, step as u64 + 1), (b, t + 1), dev)?;
        let ids = data.narrow(1, 0, t)?.contiguous()?;
        let targets = data.narrow(1, 1, t)?.contiguous()?;

        let t0 = now()?;
        let hidden = model
            .lm
            .forward_hidden(&ForwardArgs::new(&ids, &positions), None)?; // (B, T, C)
        let t1 = now()?;
        let logits = model.lm.lm_head(&hidden)?; // (B, T, V)
        let t2 = now()?;
        // The trainers' loss: the fused log-softmax + gather kernel (align_train::kernels).
        let loss = align_train::lm_loss::causal_lm_loss(&logits, &targets.reshape((b, t))?, None)?;
        let loss_val = loss.to_scalar::<f32>()?;
        let t3 = now()?;
        let mut grads = loss.backward()?;
        align_models::checkpoint::merge_pending_grads(&mut grads)?;
        let mut g: Vec<Option<Tensor>> = opt
            .params()
            .iter()
            .map(|(_, var)| grads.get(var.as_tensor()).cloned())
            .collect();
        drop(grads);
        let t4 = now()?;
        clip_grad_norm(&mut g, 1.0)?;
        let t5 = now()?;
        opt.step(&g, 3e-4)?;
        drop((g, loss, logits, hidden));
        let t6 = now()?;

        losses.push(loss_val);
        if step >= warmup {
            let d = |a: Instant, z: Instant| (z - a).as_secs_f64();
            times.push(StepTimes {
                fwd_body: d(t0, t1),
                fwd_head: d(t1, t2),
                loss: d(t2, t3),
                bwd: d(t3, t4),
                clip: d(t4, t5),
                opt: d(t5, t6),
                total: d(t0, t6),
            });
        }
    }
    let peak = if dev.is_cpu() { rss_mib().map(|r| r.1) } else { None };

    let med = |f: fn(&StepTimes) -> f64| median(&times.iter().map(f).collect::<Vec<_>>());
    let step_s = med(|s| s.total);
    let tokens = (b * t) as f64;
    let flops = tokens * (6.0 * n_params as f64 + 12.0 * (p.layers * t * p.d_model) as f64);
    let fwd = med(|s| s.fwd_body + s.fwd_head + s.loss);
    let r = json!({
        "params": n_params,
        "batch": b, "seq": t, "d_model": p.d_model, "layers": p.layers, "heads": p.heads, "vocab": v,
        "intermediate": (8 * p.d_model / 3).div_ceil(64) * 64,
        "warmup": warmup, "steps": steps,
        "tokens_per_step": b * t,
        "flops_per_step": flops,
        "step_s": step_s,
        "tokens_per_s": tokens / step_s,
        "gflops": flops / step_s / 1e9,
        "fwd_s": fwd,
        "fwd_body_s": med(|s| s.fwd_body),
        "fwd_head_s": med(|s| s.fwd_head),
        "loss_s": med(|s| s.loss),
        "bwd_s": med(|s| s.bwd),
        "clip_s": med(|s| s.clip),
        "opt_s": med(|s| s.opt),
        "step_times_s": times.iter().map(|s| s.total).collect::<Vec<_>>(),
        "losses": losses,
        "rss_start_mib": rss_start,
        "peak_rss_mib": peak,
    });
    println!(
        "  step {:.3}s  {:.0} tok/s  {:.1} GFLOP/s  (fwd {:.3} bwd {:.3} clip {:.3} opt {:.3})  peak {:.0} MiB",
        step_s,
        tokens / step_s,
        flops / step_s / 1e9,
        fwd,
        med(|s| s.bwd),
        med(|s| s.clip),
        med(|s| s.opt),
        peak.unwrap_or(f64::NAN)
    );
    Ok(r)
}

fn bench_generate(
    p: &Preset,
    prompt_len: usize,
    new_tokens: usize,
    reps: usize,
    dev: &Device,
) -> anyhow::Result<Value> {
    let model = p.model(dev)?;
    anyhow::ensure!(
        prompt_len + new_tokens <= p.seq,
        "prompt {prompt_len} + {new_tokens} new tokens exceed the context {}",
        p.seq
    );
    let cfg = SamplingConfig {
        max_new_tokens: new_tokens,
        ..SamplingConfig::greedy()
    };
    let warm_cfg = SamplingConfig {
        max_new_tokens: 4,
        ..SamplingConfig::greedy()
    };
    let mut res = json!({ "prompt_len": prompt_len, "new_tokens": new_tokens, "reps": reps });
    for batch in [1usize, 8] {
        reset_peak_rss();
        let prompts: Vec<Vec<u32>> = (0..batch)
            .map(|i| align_core::bench::random_ids(prompt_len, p.vocab, 1000 + i as u64))
            .collect();
        generate_model(&model, &prompts, &warm_cfg, GenerateOptions::default())?;
        let mut best = f64::INFINITY;
        for _ in 0..reps {
            let t0 = Instant::now();
            let gens = generate_model(&model, &prompts, &cfg, GenerateOptions::default())?;
            best = best.min(t0.elapsed().as_secs_f64());
            let n: usize = gens.iter().map(|g| g.tokens.len()).sum();
            anyhow::ensure!(
                n == batch * new_tokens,
                "generated {n} tokens, expected {}",
                batch * new_tokens
            );
        }
        let tps = (batch * new_tokens) as f64 / best;
        println!("generate {} batch {batch}: {tps:.0} tok/s ({best:.2}s for {new_tokens} new tokens per row)", p.name);
        res[format!("b{batch}")] = json!({
            "tokens_per_s": tps,
            "seconds": best,
            "peak_rss_mib": if dev.is_cpu() { rss_mib().map(|r| r.1) } else { None },
        });
    }
    Ok(res)
}

fn print_table(out: &Value) {
    let f = |v: &Value| v.as_f64().map_or("-".to_string(), |x| format!("{x:.3}"));
    println!();
    println!("| model | tokens/s | GFLOP/s | step s | fwd s | bwd s | clip s | opt s | peak MiB |");
    println!("|---|---|---|---|---|---|---|---|---|");
    // serde_json's maps are sorted by key; print in preset order instead.
    let in_order = |section: &str| -> Vec<(&'static str, Value)> {
        [TINY.name, SMALL.name]
            .into_iter()
            .filter_map(|n| out[section].get(n).map(|r| (n, r.clone())))
            .collect()
    };
    for (name, r) in in_order("train") {
        println!(
            "| {name} | {:.0} | {:.1} | {} | {} | {} | {} | {} | {:.0} |",
            r["tokens_per_s"].as_f64().unwrap_or(f64::NAN),
            r["gflops"].as_f64().unwrap_or(f64::NAN),
            f(&r["step_s"]),
            f(&r["fwd_s"]),
            f(&r["bwd_s"]),
            f(&r["clip_s"]),
            f(&r["opt_s"]),
            r["peak_rss_mib"].as_f64().unwrap_or(f64::NAN),
        );
    }
    let gens = in_order("generate");
    if !gens.is_empty() {
        println!();
        println!("| model | generate tok/s, batch 1 | batch 8 |");
        println!("|---|---|---|");
        for (name, r) in gens {
            println!(
                "| {name} | {:.0} | {:.0} |",
                r["b1"]["tokens_per_s"].as_f64().unwrap_or(f64::NAN),
                r["b8"]["tokens_per_s"].as_f64().unwrap_or(f64::NAN)
            );
        }
    }
    if let Some(g) = out["matmul"]["gflops"].as_f64() {
        println!("\nmatmul 2048³ f32: {g:.1} GFLOP/s");
    }
}
