//! Forward and backward time and memory of the fused CPU attention
//! (`align_models::kernels::attention::flash_attention`) against the composed reference
//! (`layers::attention::attend_reference`), causal, at the tiny model's and the 110M model's
//! shapes. Times are medians of several runs in ms. Run with
//! `RAYON_NUM_THREADS=2 MIMALLOC_PURGE_DELAY=-1 CANDLE_BARRIER_POOL_SPIN_LIMIT=0 cargo run --release
//! -p align-models --example attention_bench` (the settings of the `align` binary; without the
//! last one candle's idle pool thread spins on one of the cores the kernel runs on);
//! `-- --fused-only` skips the reference (to profile the kernel alone).
//!
//! Memory is counted by a wrapper around the allocator (mimalloc, as in the `align` binary):
//! "kept" is what the forward leaves allocated while its output (and so its autograd graph) is
//! alive, output included; "peak" the most allocated at once during the forward, or during one
//! backward of `sum(y ⊙ R)` on top of what the forward kept; all above what existed before.

use align_models::kernels::attention::flash_attention;
use align_models::layers::attention::attend_reference;
use align_models::layers::mask::attention_bias;
use candle_core::{Device, Result, Tensor, Var};
use align_core::bench::{median_ms, CountingAlloc};

#[global_allocator]
static GLOBAL: CountingAlloc<mimalloc::MiMalloc> = CountingAlloc::new(mimalloc::MiMalloc);

const MB: f64 = 1024.0 * 1024.0;

/// One implementation's figures.
struct Figures {
    fwd_ms: f64,
    bwd_ms: f64,
    kept_mb: f64,
    fwd_peak_mb: f64,
    bwd_peak_mb: f64,
}

fn measure(n: usize, op: &dyn Fn() -> Result<Tensor>) -> Result<Figures> {
    let fwd_ms = median_ms(n, || op().map(|_| ()))?;
    let base = GLOBAL.mark();
    let y = op()?;
    let (kept, fwd_peak) = (GLOBAL.now() - base, GLOBAL.peak() - base);
    let r = Tensor::randn(0f32, 1f32, y.shape(), y.device())?;
    let loss = (&y * &r)?.sum_all()?;
    let bwd_ms = median_ms(n, || loss.backward().map(|_| ()))?;
    let before = GLOBAL.mark();
    let grads = loss.backward()?;
    let bwd_peak = GLOBAL.peak() - before + kept;
    drop(grads);
    Ok(Figures {
        fwd_ms,
        bwd_ms,
        kept_mb: kept as f64 / MB,
        fwd_peak_mb: fwd_peak as f64 / MB,
        bwd_peak_mb: bwd_peak as f64 / MB,
    })
}

fn var(shape: &[usize]) -> Result<Var> {
    Var::from_tensor(&Tensor::randn(0f32, 1f32, shape, &Device::Cpu)?)
}

/// Reference and fused at q (b, h, t, d), k and v (b, kv, past + t, d), causal.
fn bench(name: &str, (b, h, kv, t, past, d): (usize, usize, usize, usize, usize, usize), n: usize) -> Result<()> {
    let (q, k, v) = (var(&[b, h, t, d])?, var(&[b, kv, past + t, d])?, var(&[b, kv, past + t, d])?);
    let bias = attention_bias(b, t, past, None, None, &Device::Cpu)?;
    let f = measure(n, &|| flash_attention(&q, &k, &v, &bias))?;
    if std::env::args().any(|a| a == "--fused-only") {
        println!("{name}: fused fwd {:.2} ms, bwd {:.2} ms", f.fwd_ms, f.bwd_ms);
        return Ok(());
    }
    let r = measure(n, &|| attend_reference(&q, &k, &v, &bias))?;
    println!("{name}: q ({b},{h},{t},{d}), k/v ({b},{kv},{},{d}), causal; reference -> fused", past + t);
    println!(
        "  time ms   fwd {:8.2} -> {:7.2} ({:4.1}x)   bwd {:8.2} -> {:7.2} ({:4.1}x)   fwd+bwd {:8.2} -> {:7.2} ({:4.1}x)",
        r.fwd_ms,
        f.fwd_ms,
        r.fwd_ms / f.fwd_ms,
        r.bwd_ms,
        f.bwd_ms,
        r.bwd_ms / f.bwd_ms,
        r.fwd_ms + r.bwd_ms,
        f.fwd_ms + f.bwd_ms,
        (r.fwd_ms + r.bwd_ms) / (f.fwd_ms + f.bwd_ms)
    );
    println!(
        "  memory MB kept by the graph {:7.1} -> {:6.1}   fwd peak {:7.1} -> {:6.1}   bwd peak {:7.1} -> {:6.1}",
        r.kept_mb, f.kept_mb, r.fwd_peak_mb, f.fwd_peak_mb, r.bwd_peak_mb, f.bwd_peak_mb
    );
    Ok(())
}

fn main() -> Result<()> {
    let env = |k: &str| std::env::var(k).unwrap_or_else(|_| "unset".into());
    println!(
        "RAYON_NUM_THREADS={} MIMALLOC_PURGE_DELAY={} CANDLE_BARRIER_POOL_SPIN_LIMIT={}",
        env("RAYON_NUM_THREADS"),
        env("MIMALLOC_PURGE_DELAY"),
        env("CANDLE_BARRIER_POOL_SPIN_LIMIT")
    );
    bench("tiny", (8, 4, 4, 256, 0, 32), 11)?;
    bench("110M", (4, 12, 12, 512, 0, 64), 5)?;
    bench("tiny GQA", (8, 4, 2, 256, 0, 32), 11)?;
    bench("decode step", (8, 4, 4, 1, 255, 32), 51)?;
    Ok(())
}
