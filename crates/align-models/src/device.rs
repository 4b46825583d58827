//! Where tensors live: `"cpu"` (the default everywhere), `"cuda"` or `"cuda:N"` (candle's CUDA
//! backend, in a binary built with `--features cuda`). The peer is PyTorch's device string
//! (`torch.device("cuda:0")`), which TRL / HF `TrainingArguments` pick automatically; we make the
//! choice explicit, so a run's numbers say where they came from.
//!
//! On the CPU, f32 tensors run the fused [`crate::kernels`]; on CUDA every layer runs its
//! composed, differentiable candle primitives (the kernels' reference), so the same model code
//! serves both.

use crate::error::{ModelError, Result};
use candle_core::Device;

/// Whether this build has candle's CUDA backend (`--features cuda`).
pub const CUDA_BUILT: bool = cfg!(feature = "cuda");

/// Parses a device string: `cpu`, `cuda` (= `cuda:0`) or `cuda:N`, case-insensitive.
/// A CUDA device in a build without the `cuda` feature, or one the driver cannot open, is an
/// error that says what to do.
pub fn parse_device(spec: &str) -> Result<Device> {
    let s = spec.trim().to_ascii_lowercase();
    let ordinal = match s.as_str() {
        "cpu" => return Ok(Device::Cpu),
        "cuda" | "gpu" => 0,
        _ => match s.strip_prefix("cuda:") {
            Some(n) => n.parse::<usize>().map_err(|_| {
                ModelError::Input(format!("device `{spec}`: the GPU number after `cuda:` must be a non-negative integer"))
            })?,
            None => return Err(ModelError::Input(format!("unknown device `{spec}` (expected cpu, cuda or cuda:N)"))),
        },
    };
    open_cuda(spec, ordinal)
}

/// Validates a device string without opening the device (configs are checked before a run
/// starts; opening a GPU is the run's job).
pub fn check_device_spec(spec: &str) -> Result<()> {
    let s = spec.trim().to_ascii_lowercase();
    if s == "cpu" {
        return Ok(());
    }
    let ok = s == "cuda" || s == "gpu" || s.strip_prefix("cuda:").is_some_and(|n| n.parse::<usize>().is_ok());
    if !ok {
        return Err(ModelError::Input(format!("unknown device `{spec}` (expected cpu, cuda or cuda:N)")));
    }
    if !CUDA_BUILT {
        return Err(not_built(spec));
    }
    Ok(())
}

fn not_built(spec: &str) -> ModelError {
    ModelError::Input(format!(
        "device `{spec}`: this align was built without CUDA support; rebuild with \
         `cargo build --release --features cuda` (needs the CUDA toolkit's nvcc; see docs/cuda.md), or use --device cpu"
    ))
}

#[cfg(feature = "cuda")]
fn open_cuda(spec: &str, ordinal: usize) -> Result<Device> {
    Device::new_cuda(ordinal).map_err(|e| ModelError::Input(format!("device `{spec}`: cannot open CUDA device {ordinal}: {e}")))
}

#[cfg(not(feature = "cuda"))]
fn open_cuda(spec: &str, _ordinal: usize) -> Result<Device> {
    Err(not_built(spec))
}

/// A short name for logs and benchmark JSON: `cpu` or `cuda:N`.
pub fn device_name(dev: &Device) -> String {
    match dev.location() {
        candle_core::DeviceLocation::Cpu => "cpu".into(),
        candle_core::DeviceLocation::Cuda { gpu_id } => format!("cuda:{gpu_id}"),
        candle_core::DeviceLocation::Metal { gpu_id } => format!("metal:{gpu_id}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_parses_in_any_case() {
        for s in ["cpu", "CPU", " cpu "] {
            assert!(parse_device(s).unwrap().is_cpu(), "{s}");
            check_device_spec(s).unwrap();
        }
        assert_eq!(device_name(&Device::Cpu), "cpu");
    }

    #[test]
    fn malformed_devices_are_named_in_the_error() {
        for s in ["tpu", "cuda:x", "cuda:-1", "", "cuda0"] {
            let e = parse_device(s).unwrap_err().to_string();
            assert!(e.contains(&format!("`{s}`")), "{s}: {e}");
            assert!(check_device_spec(s).is_err(), "{s}");
        }
    }

    #[cfg(not(feature = "cuda"))]
    #[test]
    fn cuda_without_the_feature_says_how_to_get_it() {
        for s in ["cuda", "cuda:1", "gpu"] {
            let e = parse_device(s).unwrap_err().to_string();
            assert!(e.contains("--features cuda") && e.contains("--device cpu"), "{e}");
            let e = check_device_spec(s).unwrap_err().to_string();
            assert!(e.contains("--features cuda"), "{e}");
        }
    }
}
