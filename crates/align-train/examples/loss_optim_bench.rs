//! Time and memory of the fused token log-probabilities (`lm_loss::token_logprobs`, the kernel
//! in `align_train::kernels`) against the composed `log_softmax` + `gather`
//! (`token_logprobs_reference`), and of one in-place AdamW step against the composed tensor
//! update it replaced (`AdamW::use_composed_update`). Medians of several runs, in ms. Run with
//! `RAYON_NUM_THREADS=2 MIMALLOC_PURGE_DELAY=-1 CANDLE_BARRIER_POOL_SPIN_LIMIT=0 cargo run --release
//! -p align-train --example loss_optim_bench` (the settings of the `align` binary);
//! `-- --quick` runs only the small shapes.
//!
//! Log-probs: "fwd" is `token_logprobs(logits, targets)`; "fwd+bwd" adds `backward()` of the
//! summed log-probs (what every loss differentiates). Memory is counted by a wrapper around the
//! allocator (mimalloc, as in the `align` binary): "peak" is the most allocated at once during one
//! fwd+bwd above what existed before (logits and targets), gradients included.
//!
//! AdamW: one `step` over parameters shaped like the tiny model (d 256, 4 layers, vocab 4096:
//! ~4.3M) and a GPT-2-small-sized one (d 768, 12 layers, vocab 32000: ~110M), every parameter
//! with a gradient, weight decay 0.1 on the matrices.

use align_train::lm_loss::{token_logprobs, token_logprobs_reference};
use align_train::optim::{AdamW, AdamWConfig};
use candle_core::{DType, Device, Result, Tensor, Var};
use align_core::bench::{median_ms, CountingAlloc};

#[global_allocator]
static GLOBAL: CountingAlloc<mimalloc::MiMalloc> = CountingAlloc::new(mimalloc::MiMalloc);

const MB: f64 = 1024.0 * 1024.0;

type LogprobFn = fn(&Tensor, &Tensor) -> Result<Tensor>;

/// (fwd ms, fwd+bwd ms, peak MB of one fwd+bwd) of `f`.
fn time_logprobs(f: LogprobFn, logits: &Var, targets: &Tensor, n: usize) -> Result<(f64, f64, f64)> {
    let fwd_bwd = || -> Result<()> {
        let lp = f(logits, targets)?; // (B, T)
        let grads = lp.sum_all()?.backward()?;
        std::hint::black_box(grads.get(logits));
        Ok(())
    };
    let fwd = median_ms(n, || f(logits, targets).map(|lp| drop(std::hint::black_box(lp))))?;
    let both = median_ms(n, fwd_bwd)?;
    let base = GLOBAL.mark();
    fwd_bwd()?;
    let peak = (GLOBAL.peak() - base) as f64 / MB;
    Ok((fwd, both, peak))
}

fn bench_logprobs(b: usize, t: usize, v: usize, n: usize) -> Result<()> {
    let logits = Var::from_tensor(&Tensor::randn(0f32, 2f32, (b, t, v), &Device::Cpu)?)?;
    let targets = Tensor::rand(0f32, v as f32, (b, t), &Device::Cpu)?.to_dtype(DType::U32)?;
    let (rf, rb, rm) = time_logprobs(token_logprobs_reference, &logits, &targets, n)?;
    let (ff, fb, fm) = time_logprobs(token_logprobs, &logits, &targets, n)?;
    println!(
        "logprobs ({b},{t},{v:>5})  fwd {rf:8.2} -> {ff:7.2} ms ({:4.1}x)   fwd+bwd {rb:8.2} -> {fb:7.2} ms ({:4.1}x)   peak {rm:7.1} -> {fm:6.1} MB",
        rf / ff,
        rb / fb
    );
    Ok(())
}

/// Named parameters of a Llama-shaped model: embedding, per layer q/k/v/o, gate/up/down and two
/// norms, final norm (tied head).
fn model_params(vocab: usize, d: usize, layers: usize) -> Result<Vec<(String, Var)>> {
    let inter = (8 * d / 3).div_ceil(64) * 64;
    let mut shapes = vec![("embed_tokens.weight".to_string(), vec![vocab, d]), ("norm.weight".to_string(), vec![d])];
    for l in 0..layers {
        for (name, s) in [
            ("self_attn.q_proj.weight", vec![d, d]),
            ("self_attn.k_proj.weight", vec![d, d]),
            ("self_attn.v_proj.weight", vec![d, d]),
            ("self_attn.o_proj.weight", vec![d, d]),
            ("mlp.gate_proj.weight", vec![inter, d]),
            ("mlp.up_proj.weight", vec![inter, d]),
            ("mlp.down_proj.weight", vec![d, inter]),
            ("input_layernorm.weight", vec![d]),
            ("post_attention_layernorm.weight", vec![d]),
        ] {
            shapes.push((format!("layers.{l}.{name}"), s));
        }
    }
    shapes
        .into_iter()
        .map(|(name, s)| Ok((name, Var::from_tensor(&(Tensor::randn(0f32, 0.02f32, s, &Device::Cpu)?))?)))
        .collect()
}

fn bench_adamw(label: &str, vocab: usize, d: usize, layers: usize, n: usize) -> Result<()> {
    let cfg = AdamWConfig { beta1: 0.9, beta2: 0.95, eps: 1e-8, weight_decay: 0.1 };
    let mut ms = Vec::new();
    for composed in [true, false] {
        let params = model_params(vocab, d, layers)?;
        let grads: Vec<Option<Tensor>> =
            params.iter().map(|(_, v)| Tensor::randn(0f32, 1e-3f32, v.shape(), &Device::Cpu).map(Some)).collect::<Result<_>>()?;
        let n_params: usize = params.iter().map(|(_, v)| v.elem_count()).sum();
        let mut opt = AdamW::new(params, cfg).map_err(candle_core::Error::wrap)?;
        if composed {
            opt.use_composed_update().map_err(candle_core::Error::wrap)?;
        }
        let t = median_ms(n, || opt.step(&grads, 1e-4).map_err(candle_core::Error::wrap))?;
        ms.push((t, n_params));
    }
    let ((before, n_params), (after, _)) = (ms[0], ms[1]);
    println!(
        "adamw {label:<5} {:6.1}M params   step {before:8.2} -> {after:7.2} ms ({:4.1}x)",
        n_params as f64 / 1e6,
        before / after
    );
    Ok(())
}

fn main() -> Result<()> {
    let quick = std::env::args().any(|a| a == "--quick");
    println!("reference -> fused; threads: {}", rayon::current_num_threads());
    bench_logprobs(8, 256, 2048, 7)?;
    bench_logprobs(8, 256, 4096, 7)?;
    if !quick {
        bench_logprobs(4, 512, 32000, 3)?;
    }
    bench_adamw("tiny", 4096, 256, 4, 7)?;
    if !quick {
        bench_adamw("110M", 32000, 768, 12, 3)?;
    }
    Ok(())
}
