//! Forward and backward time of the fused CPU kernels (`align_models::kernels`) against the
//! composed reference code, at the tiny model's and the 110M model's shapes. Medians of several
//! runs, in milliseconds. Run with
//! `RAYON_NUM_THREADS=2 MIMALLOC_PURGE_DELAY=-1 cargo run --release -p align-models --example
//! kernels_bench` (mimalloc, as the `align` binary).
//!
//! Backward is timed as `backward()` of `sum(y ⊙ R)` for a fixed random R (the graph is built
//! once, then differentiated repeatedly): both columns include the same small cost of that
//! product and of the gradient of the inputs' views (e.g. `split_heads` for RoPE).

use align_models::kernels::{rms_norm::rms_norm, rope::rope, swiglu::swiglu};
use align_models::layers::attention::split_heads;
use align_models::layers::mlp::swiglu_reference;
use align_models::layers::norm::rms_norm_reference;
use align_models::layers::rope::{apply_rope_reference, Rope};
use candle_core::{Device, Result, Tensor, Var};
use align_core::bench::median_ms;

/// (forward ms, backward ms) of `op` over `vars` (the inputs it builds on).
fn time(n: usize, op: &dyn Fn() -> Result<Tensor>) -> Result<(f64, f64)> {
    let fwd = median_ms(n, || op().map(|_| ()))?;
    let y = op()?;
    let r = Tensor::randn(0f32, 1f32, y.shape(), y.device())?;
    let loss = (&y * &r)?.sum_all()?;
    let bwd = median_ms(n, || loss.backward().map(|_| ()))?;
    Ok((fwd, bwd))
}

/// Times the reference and the fused version of one op and prints a row.
fn row(name: &str, shape: &str, n: usize, reference: &dyn Fn() -> Result<Tensor>, fused: &dyn Fn() -> Result<Tensor>) -> Result<()> {
    let (rf, rb) = time(n, reference)?;
    let (ff, fb) = time(n, fused)?;
    println!(
        "{name:<8} {shape:<26} fwd {rf:8.3} -> {ff:7.3} ms ({:4.1}x)   bwd {rb:8.3} -> {fb:7.3} ms ({:4.1}x)   fwd+bwd {:8.3} -> {:7.3} ms ({:4.1}x)",
        rf / ff,
        rb / fb,
        rf + rb,
        ff + fb,
        (rf + rb) / (ff + fb)
    );
    Ok(())
}

fn randn(shape: &[usize]) -> Result<Var> {
    Var::from_tensor(&Tensor::randn(0f32, 1f32, shape, &Device::Cpu)?)
}

/// The shared cost in every backward column: `backward()` of `sum(x ⊙ R)` with no op at all.
fn harness(b: usize, t: usize, c: usize, n: usize) -> Result<()> {
    let x = randn(&[b, t, c])?;
    let (_, bwd) = time(n, &|| Ok(x.as_tensor().clone()))?;
    println!("harness  x ({b},{t},{c}) bwd of sum(x*R) alone: {bwd:.3} ms");
    Ok(())
}

fn bench_rms_norm(b: usize, t: usize, c: usize, n: usize) -> Result<()> {
    let (x, w) = (randn(&[b, t, c])?, randn(&[c])?);
    let shape = format!("x ({b},{t},{c})");
    row("rmsnorm", &shape, n, &|| rms_norm_reference(&x, &w, 1e-5), &|| rms_norm(&x, &w, 1e-5))
}

fn bench_rope(b: usize, t: usize, h: usize, d: usize, n: usize) -> Result<()> {
    let proj = randn(&[b, t, h * d])?; // q as projected; split_heads makes the strided (B, H, T, D) view
    let pos = Tensor::arange(0u32, t as u32, &Device::Cpu)?.unsqueeze(0)?.repeat((b, 1))?;
    let (cos, sin) = Rope::new(d, 10000.0, &Device::Cpu)?.cos_sin(&pos)?;
    let shape = format!("x ({b},{h},{t},{d}) strided");
    row(
        "rope",
        &shape,
        n,
        &|| apply_rope_reference(&split_heads(&proj, h, d)?, &cos, &sin),
        &|| rope(&split_heads(&proj, h, d)?, &cos, &sin),
    )
}

fn bench_swiglu(b: usize, t: usize, i: usize, n: usize) -> Result<()> {
    let (gate, up) = (randn(&[b, t, i])?, randn(&[b, t, i])?);
    let shape = format!("gate, up ({b},{t},{i})");
    row("swiglu", &shape, n, &|| swiglu_reference(&gate, &up), &|| swiglu(&gate, &up))
}

// The allocator of the `align` binary (CANDLE.md: fresh pages dominate candle's CPU time).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> Result<()> {
    let env = |k: &str| std::env::var(k).unwrap_or_else(|_| "unset".into());
    println!(
        "RAYON_NUM_THREADS={} MIMALLOC_PURGE_DELAY={}; reference -> fused, medians in ms",
        env("RAYON_NUM_THREADS"),
        env("MIMALLOC_PURGE_DELAY")
    );
    println!("-- tiny model shapes (B=8, T=256)");
    let (b, t, n) = (8, 256, 21);
    harness(b, t, 128, n)?;
    for c in [128, 256] {
        bench_rms_norm(b, t, c, n)?;
    }
    for d in [32, 64] {
        bench_rope(b, t, 4, d, n)?;
    }
    for i in [512, 1024] {
        bench_swiglu(b, t, i, n)?;
    }
    println!("-- 110M model shapes (B=4, T=512)");
    let (b, t, n) = (4, 512, 11);
    harness(b, t, 768, n)?;
    bench_rms_norm(b, t, 768, n)?;
    bench_rope(b, t, 12, 64, n)?;
    for i in [2048, 3072] {
        bench_swiglu(b, t, i, n)?;
    }
    Ok(())
}
