//! Metrics as JSONL: one object per logging step, appended and flushed line by line, so a killed
//! run keeps every line it logged. Names follow TRL's (`loss`, `learning_rate`, `rewards/chosen`, ...).

use crate::error::{CoreError, Result};
use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

pub type Record = BTreeMap<String, serde_json::Value>;

pub struct MetricsSink {
    path: PathBuf,
    file: Option<std::fs::File>,
}

impl MetricsSink {
    /// Appends to `path` (created with its parent directories if missing).
    pub fn open(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref().to_path_buf();
        if let Some(d) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(d).map_err(|e| CoreError::io(d, e))?;
        }
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(|e| CoreError::io(&path, e))?;
        Ok(Self { path, file: Some(file) })
    }

    /// A sink that drops everything (tests, benchmarks).
    pub fn null() -> Self {
        Self { path: PathBuf::new(), file: None }
    }

    pub fn log(&mut self, record: &Record) -> Result<()> {
        if let Some(f) = self.file.as_mut() {
            let mut line = serde_json::to_string(record).map_err(|e| CoreError::Msg(e.to_string()))?;
            line.push('\n');
            f.write_all(line.as_bytes()).map_err(|e| CoreError::io(&self.path, e))?;
        }
        Ok(())
    }

    /// Keeps only lines whose `step` is at most `step` (used on resume, so a metrics file matches
    /// the checkpoint it continues from).
    pub fn truncate_after_step(path: impl AsRef<Path>, step: u64) -> Result<()> {
        let path = path.as_ref();
        let Ok(text) = std::fs::read_to_string(path) else { return Ok(()) };
        let kept: String = text
            .lines()
            .filter(|l| {
                serde_json::from_str::<serde_json::Value>(l)
                    .ok()
                    .and_then(|v| v.get("step").and_then(|s| s.as_u64()))
                    .is_some_and(|s| s <= step)
            })
            .map(|l| format!("{l}\n"))
            .collect();
        crate::atomic::write_atomic(path, kept.as_bytes())
    }
}
