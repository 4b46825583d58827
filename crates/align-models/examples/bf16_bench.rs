//! GFLOP/s of the bf16 matmul (`align_models::kernels::bf16_matmul`, AVX512_BF16, f32
//! accumulation) against candle's f32 matmul (gemm) at 2048³ and at the 110M model's linear
//! shapes (2048 tokens, 768 ↔ 3072), forward `x·wᵀ` and the two backward products (`dx = dy·w`,
//! `dw = dyᵀ·x`, timed together as `backward()` of `sum(y ⊙ R)`, minus the time of that
//! backward over a detached output). The best of 9 runs, f32 and bf16 interleaved: the machine
//! may be shared, and the fastest run is the one least disturbed. Run with
//! `RAYON_NUM_THREADS=2 MIMALLOC_PURGE_DELAY=-1 cargo run --release -p align-models --example bf16_bench`.

use align_models::kernels::bf16_matmul;
use align_models::layers::linear::matmul_last;
use candle_core::{Device, Result, Tensor, Var};
use std::time::Instant;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Wall time of `f` in seconds.
fn secs(f: &mut dyn FnMut() -> Result<()>) -> Result<f64> {
    let s = Instant::now();
    f()?;
    Ok(s.elapsed().as_secs_f64())
}

/// The fastest of `n` runs of each of `fs`, run interleaved (f0, f1, …, f0, f1, …) after one
/// warm-up each, so that load from other processes on a shared machine hits them alike.
fn best_interleaved(n: usize, fs: &mut [&mut dyn FnMut() -> Result<()>]) -> Result<Vec<f64>> {
    let mut best = vec![f64::INFINITY; fs.len()];
    for rep in 0..=n {
        for (f, b) in fs.iter_mut().zip(best.iter_mut()) {
            let t = secs(*f)?;
            if rep > 0 {
                *b = b.min(t);
            }
        }
    }
    Ok(best)
}

/// (forward s, backward s) of f32 and bf16 on x, w: backward is that of `sum(y ⊙ R)` minus the
/// same backward over a detached y (the part that is not the two products).
fn time(n: usize, x: &Var, w: &Var) -> Result<[(f64, f64); 2]> {
    let f32_op = || matmul_last(x, &w.t()?);
    let bf16_op = || bf16_matmul::linear(x, w);
    let r = Tensor::randn(0f32, 1f32, f32_op()?.shape(), &Device::Cpu)?;
    let loss = |y: &Tensor| (y * &r)?.sum_all();
    let (l32, l16) = (loss(&f32_op()?)?, loss(&bf16_op()?)?);
    let y0 = Var::from_tensor(&f32_op()?.detach())?;
    let l0 = loss(y0.as_tensor())?;
    let t = best_interleaved(
        n,
        &mut [
            &mut || f32_op().map(|_| ()),
            &mut || bf16_op().map(|_| ()),
            &mut || l32.backward().map(|_| ()),
            &mut || l16.backward().map(|_| ()),
            &mut || l0.backward().map(|_| ()),
        ],
    )?;
    Ok([(t[0], (t[2] - t[4]).max(1e-9)), (t[1], (t[3] - t[4]).max(1e-9))])
}

fn main() -> Result<()> {
    let env = |k: &str| std::env::var(k).unwrap_or_else(|_| "unset".into());
    println!("RAYON_NUM_THREADS={} MIMALLOC_PURGE_DELAY={}", env("RAYON_NUM_THREADS"), env("MIMALLOC_PURGE_DELAY"));
    if !bf16_matmul::available() {
        println!("this CPU lacks avx512bf16: nothing to compare");
        return Ok(());
    }
    println!("{:<22} {:>24} {:>24} {:>8} {:>8}", "shape M×K → N", "fwd GFLOP/s f32 → bf16", "bwd GFLOP/s f32 → bf16", "fwd ×", "bwd ×");
    for (m, k, n) in [(2048, 2048, 2048), (2048, 768, 768), (2048, 768, 3072), (2048, 3072, 768)] {
        let x = Var::from_tensor(&Tensor::randn(0f32, 1f32, (m, k), &Device::Cpu)?)?;
        let w = Var::from_tensor(&(Tensor::randn(0f32, 1f32, (n, k), &Device::Cpu)? * 0.02)?)?;
        let flop = 2.0 * (m * n * k) as f64 / 1e9;
        let [(ff, fb), (bf, bb)] = time(9, &x, &w)?;
        println!(
            "{:<22} {:>10.0} → {:>10.0} {:>10.0} → {:>10.0} {:>7.2}x {:>7.2}x",
            format!("{m}×{k} → {n}"),
            flop / ff,
            flop / bf,
            2.0 * flop / fb,
            2.0 * flop / bb,
            ff / bf,
            fb / bb
        );
    }
    Ok(())
}
