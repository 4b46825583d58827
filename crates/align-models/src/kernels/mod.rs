//! Fused CPU kernels, each a candle `CustomOp` with a forward and a backward so autograd tracks
//! it (candle-nn's own fused ops drop gradients; ../shared/CANDLE.md). Each kernel works on plain
//! f32 slices, splits rows over rayon's pool in chunks whose size depends only on the shape (so
//! results are bit-identical whatever the thread count), and is compiled for AVX-512 / AVX2 when
//! the CPU has them ([`multiversion`]). The layers (`layers::attention`, `layers::norm`,
//! `layers::rope`, `layers::mlp`) call them for f32 tensors on the CPU and keep their composed code as the
//! reference for every other case.

pub mod attention;
pub mod bf16_matmul;
pub mod rms_norm;
pub mod rope;
pub mod simd;
pub mod skinny;
pub mod swiglu;

use candle_core::{CpuStorage, Layout, Result, Tensor};
use std::sync::atomic::{AtomicU8, Ordering};

/// The precision of the linear layers' f32 matmuls on the CPU, process-wide, as PyTorch's
/// `torch.set_float32_matmul_precision`: `F32` ("highest", the default) or `Bf16` ("medium":
/// operands rounded to bf16, products accumulated in f32, results and gradients f32;
/// [`bf16_matmul`]). `Bf16` takes effect only where the CPU has AVX512_BF16; elsewhere, and for
/// other dtypes or devices, the layers keep candle's matmul.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MatmulPrecision {
    F32,
    Bf16,
}

impl std::str::FromStr for MatmulPrecision {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "f32" => Ok(Self::F32),
            "bf16" => Ok(Self::Bf16),
            _ => Err(format!("matmul precision must be \"f32\" or \"bf16\", got {s:?}")),
        }
    }
}

static MATMUL_PRECISION: AtomicU8 = AtomicU8::new(0);

/// Sets the process-wide [`MatmulPrecision`] and returns the previous one.
pub fn set_matmul_precision(p: MatmulPrecision) -> MatmulPrecision {
    match MATMUL_PRECISION.swap(p as u8, Ordering::Relaxed) {
        1 => MatmulPrecision::Bf16,
        _ => MatmulPrecision::F32,
    }
}

/// The process-wide [`MatmulPrecision`] (F32 unless set).
pub fn matmul_precision() -> MatmulPrecision {
    match MATMUL_PRECISION.load(Ordering::Relaxed) {
        1 => MatmulPrecision::Bf16,
        _ => MatmulPrecision::F32,
    }
}

/// Work (elements touched) below which a kernel runs its tasks on the calling thread. A rayon
/// parallel iterator started outside the pool injects a job, wakes a worker and blocks until it
/// is done: tens of microseconds, more than a decode step's rows of a small model take (measured:
/// tiny-model generation at batch 1 was several times slower with every kernel dispatched). The
/// tasks and their order are the same either way, so results do not change.
pub const PARALLEL_MIN_WORK: usize = 1 << 15;

/// True when `work` is too small to be worth rayon's dispatch (see [`PARALLEL_MIN_WORK`]).
pub fn sequential(work: usize) -> bool {
    work < PARALLEL_MIN_WORK
}

/// True when every tensor is f32 on the CPU: the case the fused kernels handle.
pub fn cpu_f32(ts: &[&Tensor]) -> bool {
    ts.iter().all(|t| t.dtype() == candle_core::DType::F32 && t.device().is_cpu())
}

/// The f32 elements of a contiguous tensor's storage, in row-major order.
pub fn contiguous_f32<'a>(s: &'a CpuStorage, l: &Layout, what: &str) -> Result<&'a [f32]> {
    let data = s.as_slice::<f32>()?;
    match l.contiguous_offsets() {
        Some((a, b)) => Ok(&data[a..b]),
        None => candle_core::bail!("{what}: expected a contiguous tensor, got strides {:?}", l.stride()),
    }
}

/// Defines `fn $name(args)` (no return value) whose body is compiled three times, for AVX-512,
/// for AVX2 and for the baseline, and picks the best one the CPU has at run time. Elementwise
/// f32 arithmetic is exact in IEEE (no fast-math, no contraction into FMA), and reductions are
/// written with explicit lanes, so the three versions give bit-identical results.
#[macro_export]
macro_rules! multiversion {
    ($(#[$m:meta])* $vis:vis fn $name:ident($($arg:ident: $ty:ty),* $(,)?) $body:block) => {
        $(#[$m])*
        $vis fn $name($($arg: $ty),*) {
            #[inline(always)]
            fn body($($arg: $ty),*) $body
            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx512f,avx512vl,avx2,fma")]
                unsafe fn avx512($($arg: $ty),*) { body($($arg),*) }
                #[target_feature(enable = "avx2,fma")]
                unsafe fn avx2($($arg: $ty),*) { body($($arg),*) }
                if std::is_x86_feature_detected!("avx512f") && std::is_x86_feature_detected!("avx512vl") {
                    // SAFETY: the CPU supports the features this version was compiled for.
                    return unsafe { avx512($($arg),*) };
                }
                if std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma") {
                    // SAFETY: as above.
                    return unsafe { avx2($($arg),*) };
                }
            }
            body($($arg),*)
        }
    };
}
pub use crate::multiversion;

#[cfg(test)]
mod tests {
    use super::MatmulPrecision;

    #[test]
    fn matmul_precision_parses_its_two_names() {
        assert_eq!("f32".parse::<MatmulPrecision>(), Ok(MatmulPrecision::F32));
        assert_eq!("bf16".parse::<MatmulPrecision>(), Ok(MatmulPrecision::Bf16));
        assert!("medium".parse::<MatmulPrecision>().unwrap_err().contains("medium"));
    }
}

/// Shared helpers of the kernels' tests: seeded inputs and error measures.
#[cfg(test)]
pub(crate) mod testing {
    use candle_core::{Device, Result, Shape, Tensor, Var};
    use rand::{Rng, SeedableRng};

    /// Runs `f` twice in a pool of 2 threads, then in pools of 1 and 3, and asserts that every tensor
    /// it returns has the same bits each time: a kernel's results must not depend on the threads.
    pub fn assert_same_bits_across_threads(f: impl Fn() -> Result<Vec<Tensor>> + Sync + Send) -> Result<()> {
        let bits = |threads: usize| -> Result<Vec<Vec<u32>>> {
            let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().map_err(candle_core::Error::wrap)?;
            pool.install(|| f()?.iter().map(|t| Ok(t.flatten_all()?.to_vec1::<f32>()?.iter().map(|x| x.to_bits()).collect())).collect())
        };
        let first = bits(2)?;
        for threads in [2, 1, 3] {
            assert!(first == bits(threads)?, "results differ with {threads} threads");
        }
        Ok(())
    }

    /// A (shape) f32 tensor of standard normal draws from a seeded ChaCha8.
    pub fn randn<S: Into<Shape>>(seed: u64, shape: S) -> Result<Tensor> {
        let shape = shape.into();
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
        let v: Vec<f32> = (0..shape.elem_count()).map(|_| rng.sample(rand_distr::StandardNormal)).collect();
        Tensor::from_vec(v, shape, &Device::Cpu)
    }

    /// max |a - b| / max |b|.
    pub fn rel_err(a: &Tensor, b: &Tensor) -> Result<f32> {
        assert_eq!(a.dims(), b.dims(), "shapes differ");
        let a = a.flatten_all()?.to_vec1::<f32>()?;
        let b = b.flatten_all()?.to_vec1::<f32>()?;
        let diff = a.iter().zip(&b).map(|(x, y)| (x - y).abs()).fold(0f32, f32::max);
        let scale = b.iter().map(|y| y.abs()).fold(0f32, f32::max).max(1e-30);
        Ok(diff / scale)
    }

    /// `sum(f(vars) * r)` for a random `r` of f's output shape: a random linear functional.
    pub fn functional(y: &Tensor, seed: u64) -> Result<Tensor> {
        (y * randn(seed, y.shape())?)?.sum_all()
    }

    /// Gradients of `functional(f(vars))` w.r.t. each var, in order.
    pub fn grads(vars: &[&Var], y: &Tensor, seed: u64) -> Result<Vec<Tensor>> {
        let g = functional(y, seed)?.backward()?;
        vars.iter().map(|v| g.get(v.as_tensor()).cloned().ok_or_else(|| candle_core::Error::Msg("missing gradient".into()))).collect()
    }

    /// Central finite difference of `loss(t)` w.r.t. element `i` of `t` (flattened), step `h`.
    pub fn finite_diff(t: &Tensor, i: usize, h: f32, loss: impl Fn(&Tensor) -> Result<f32>) -> Result<f32> {
        let v = t.flatten_all()?.to_vec1::<f32>()?;
        let at = |d: f32| -> Result<f32> {
            let mut w = v.clone();
            w[i] += d;
            loss(&Tensor::from_vec(w, t.shape(), t.device())?)
        };
        Ok((at(h)? - at(-h)?) / (2.0 * h))
    }
}
