//! The LM head follows the process-wide matmul precision (its own test binary, because the
//! precision is process-wide): f32 gives exactly `x @ wᵀ`; bf16, where the CPU has AVX512_BF16,
//! gives values and gradients within bf16 tolerance of it and not bit-equal; a decode step's few
//! rows keep the exact f32 path.

use align_models::kernels::{bf16_matmul, set_matmul_precision, MatmulPrecision};
use align_models::layers::linear::lm_head;
use candle_core::{Device, Result, Tensor, Var};

fn rel_err(a: &Tensor, b: &Tensor) -> Result<f32> {
    let d = (a - b)?.sqr()?.sum_all()?.to_scalar::<f32>()?.sqrt();
    let n = b.sqr()?.sum_all()?.to_scalar::<f32>()?.sqrt();
    Ok(d / n)
}

#[test]
fn lm_head_runs_in_the_process_matmul_precision() -> Result<()> {
    let dev = Device::Cpu;
    // Odd sizes: 2 × 37 rows, hidden 72, vocab 301 (a tied embedding's layout: vocab × hidden).
    let x = Var::from_tensor(&Tensor::randn(0f32, 1., (2, 37, 72), &dev)?)?;
    let w = Var::from_tensor(&Tensor::randn(0f32, 0.1, (301, 72), &dev)?)?;
    let exact = x.as_tensor().broadcast_matmul(&w.as_tensor().t()?)?;
    let upstream = Tensor::randn(0f32, 1., (2, 37, 301), &dev)?;
    let run = |p: MatmulPrecision| -> Result<(Tensor, Tensor, Tensor)> {
        set_matmul_precision(p);
        let y = lm_head(x.as_tensor(), w.as_tensor())?;
        set_matmul_precision(MatmulPrecision::F32);
        let g = (&y * &upstream)?.sum_all()?.backward()?;
        Ok((y, g.get(&x).unwrap().clone(), g.get(&w).unwrap().clone()))
    };
    let (y32, gx32, gw32) = run(MatmulPrecision::F32)?;
    assert_eq!(rel_err(&y32, &exact)?, 0.0, "f32 precision is the plain product");
    let (y16, gx16, gw16) = run(MatmulPrecision::Bf16)?;
    let e = rel_err(&y16, &y32)?;
    if bf16_matmul::available() {
        assert!(e > 0.0 && e < 2e-2, "bf16 head: rel err {e}");
        assert!(rel_err(&gx16, &gx32)? < 2e-2 && rel_err(&gw16, &gw32)? < 2e-2, "bf16 head gradients");
    } else {
        assert_eq!(e, 0.0, "without AVX512_BF16 the head stays f32");
    }
    // A decode step (one row per sequence) keeps the exact f32 skinny path under bf16.
    let x1 = x.as_tensor().narrow(1, 0, 1)?.contiguous()?;
    set_matmul_precision(MatmulPrecision::Bf16);
    let y1 = lm_head(&x1, w.as_tensor())?;
    set_matmul_precision(MatmulPrecision::F32);
    let e1 = rel_err(&y1, &x1.broadcast_matmul(&w.as_tensor().t()?)?)?;
    assert!(e1 < 1e-6, "decode rows: rel err {e1}");
    Ok(())
}
