//! Checkpoints on disk.
//!
//! ```text
//! OUT_DIR/
//!   metrics.jsonl
//!   checkpoints/
//!     latest                      # the name of the newest complete checkpoint, e.g. "step-000200"
//!     step-000100/
//!       model.safetensors         # every trainable parameter by name, f32
//!       optimizer.safetensors     # AdamW: `step`, `{name}.exp_avg`, `{name}.exp_avg_sq`, f32
//!       trainer_state.json        # step, tokens seen, best eval loss, data and step state, config
//!       ...                       # files written by the caller's hook (e.g. config.json)
//!     step-000200/
//! ```
//!
//! Each checkpoint directory is written with `write_dir_atomic` (built in a temp directory, then
//! renamed), and `latest` is written with `write_atomic` after it, so a crash at any moment leaves
//! either the previous checkpoint or the new one, whole. Older checkpoints beyond the
//! `save_total_limit` are removed after `latest` moved on.

use crate::error::{Result, TrainError};
use crate::optim::AdamW;
use crate::trainer::TrainConfig;
use align_core::atomic::{write_atomic, write_dir_atomic};
use candle_core::{DType, Tensor, Var};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

pub const CHECKPOINTS_DIR: &str = "checkpoints";
pub const LATEST_FILE: &str = "latest";
pub const MODEL_FILE: &str = "model.safetensors";
pub const OPTIMIZER_FILE: &str = "optimizer.safetensors";
pub const STATE_FILE: &str = "trainer_state.json";

/// Everything besides tensors that a resumed run needs (`trainer_state.json`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainerState {
    /// Optimizer steps completed.
    pub step: u64,
    /// Tokens seen so far (sum of the steps' `num_tokens` metric).
    pub num_tokens: u64,
    pub best_eval_loss: Option<f64>,
    /// [`crate::DataStream::state`]: position, shuffling RNG, epoch.
    pub data_state: serde_json::Value,
    /// [`crate::Step::state`]: the step's own RNGs (dropout, sampling), if any.
    pub step_state: serde_json::Value,
    /// The full config of the run.
    pub config: TrainConfig,
}

/// `out_dir/checkpoints/step-000123`.
pub fn checkpoint_dir(out_dir: &Path, step: u64) -> PathBuf {
    out_dir
        .join(CHECKPOINTS_DIR)
        .join(format!("step-{step:06}"))
}

/// A hook that writes extra files (e.g. an HF `config.json`) into a checkpoint being built.
pub type CheckpointHook = Box<dyn Fn(&Path) -> Result<()>>;

/// Writes a checkpoint for `state.step`, points `latest` at it and prunes to `keep` checkpoints
/// (0 keeps all). Returns its directory.
pub fn save(
    out_dir: &Path,
    opt: &AdamW,
    state: &TrainerState,
    hook: Option<&CheckpointHook>,
    keep: usize,
) -> Result<PathBuf> {
    let dir = checkpoint_dir(out_dir, state.step);
    let fill = |tmp: &Path| -> Result<()> {
        save_params(opt.params(), tmp.join(MODEL_FILE))?;
        opt.save(tmp.join(OPTIMIZER_FILE))?;
        let json = serde_json::to_vec_pretty(state)
            .map_err(|e| TrainError::checkpoint(tmp, e.to_string()))?;
        write_atomic(tmp.join(STATE_FILE), &json)?;
        if let Some(hook) = hook {
            hook(tmp)?;
        }
        Ok(())
    };
    // write_dir_atomic speaks CoreError; keep our own error as it was.
    let mut err = None;
    let r = write_dir_atomic(&dir, |tmp| {
        fill(tmp).map_err(|e| {
            err = Some(e);
            align_core::CoreError::Msg("checkpoint not written".into())
        })
    });
    if let Some(e) = err {
        return Err(e);
    }
    r?;
    let name = dir.file_name().unwrap().to_string_lossy().into_owned();
    write_atomic(
        out_dir.join(CHECKPOINTS_DIR).join(LATEST_FILE),
        format!("{name}\n").as_bytes(),
    )?;
    prune(out_dir, keep, &dir)?;
    Ok(dir)
}

/// Writes parameters by name as f32 safetensors.
pub fn save_params(params: &[(String, Var)], path: impl AsRef<Path>) -> Result<()> {
    let tensors = params
        .iter()
        .map(|(n, v)| Ok((n.clone(), v.as_detached_tensor().to_dtype(DType::F32)?)))
        .collect::<Result<HashMap<_, _>>>()?;
    candle_core::safetensors::save(&tensors, path.as_ref())?;
    Ok(())
}

/// Loads `model.safetensors` of checkpoint `dir` into `params`: every name must be in the file with
/// the same shape, and the file must hold no other tensor.
pub fn load_params(dir: &Path, params: &[(String, Var)]) -> Result<()> {
    let path = dir.join(MODEL_FILE);
    let device = params
        .first()
        .map(|(_, v)| v.device().clone())
        .unwrap_or(candle_core::Device::Cpu);
    let mut tensors: HashMap<String, Tensor> = candle_core::safetensors::load(&path, &device)?;
    for (name, var) in params {
        let t = tensors
            .remove(name)
            .ok_or_else(|| TrainError::checkpoint(&path, format!("missing parameter `{name}`")))?;
        if t.shape() != var.shape() {
            let msg = format!(
                "parameter `{name}`: checkpoint shape {:?}, model shape {:?}",
                t.shape(),
                var.shape()
            );
            return Err(TrainError::checkpoint(&path, msg));
        }
        var.set(&t.to_dtype(var.dtype())?)?;
    }
    if let Some(extra) = tensors.keys().min() {
        return Err(TrainError::checkpoint(
            &path,
            format!("unexpected tensor `{extra}` (not a parameter of the model)"),
        ));
    }
    Ok(())
}

pub fn load_state(dir: &Path) -> Result<TrainerState> {
    let path = dir.join(STATE_FILE);
    let text = std::fs::read_to_string(&path).map_err(|e| align_core::CoreError::io(&path, e))?;
    serde_json::from_str(&text).map_err(|e| TrainError::checkpoint(&path, e.to_string()))
}

/// Complete checkpoints under `out_dir`, oldest first, as (step, dir).
pub fn list(out_dir: &Path) -> Result<Vec<(u64, PathBuf)>> {
    let root = out_dir.join(CHECKPOINTS_DIR);
    let Ok(entries) = std::fs::read_dir(&root) else {
        return Ok(vec![]);
    };
    let mut out = vec![];
    for e in entries {
        let e = e.map_err(|e| align_core::CoreError::io(&root, e))?;
        let name = e.file_name().to_string_lossy().into_owned();
        // Temp dirs of write_dir_atomic start with '.', so they never match.
        if let Some(step) = name
            .strip_prefix("step-")
            .and_then(|s| s.parse::<u64>().ok())
        {
            if e.path().is_dir() {
                out.push((step, e.path()));
            }
        }
    }
    out.sort();
    Ok(out)
}

/// The newest checkpoint: the one `latest` names, else the highest-numbered directory.
pub fn latest(out_dir: &Path) -> Result<Option<PathBuf>> {
    let root = out_dir.join(CHECKPOINTS_DIR);
    if let Ok(name) = std::fs::read_to_string(root.join(LATEST_FILE)) {
        let dir = root.join(name.trim());
        if dir.join(STATE_FILE).is_file() {
            return Ok(Some(dir));
        }
        tracing::warn!(
            "{}: names a missing checkpoint; using the newest directory",
            root.join(LATEST_FILE).display()
        );
    }
    Ok(list(out_dir)?.pop().map(|(_, d)| d))
}

fn prune(out_dir: &Path, keep: usize, newest: &Path) -> Result<()> {
    if keep == 0 {
        return Ok(());
    }
    let all = list(out_dir)?;
    let excess = all.len().saturating_sub(keep);
    for (_, dir) in all.into_iter().take(excess).filter(|(_, d)| d != newest) {
        std::fs::remove_dir_all(&dir).map_err(|e| align_core::CoreError::io(&dir, e))?;
    }
    Ok(())
}
