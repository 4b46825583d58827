//! Errors of model construction, loading and saving. Every variant names the file and key.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("{path}: invalid config: {msg}")]
    Config { path: PathBuf, msg: String },
    #[error("{path}: unknown model_type `{model_type}` (supported: llama, mistral, qwen2, gpt2)")]
    UnknownArch { path: PathBuf, model_type: String },
    #[error("{path}: missing weight `{key}`")]
    MissingKey { path: PathBuf, key: String },
    #[error("{path}: unexpected weights not used by the model: {keys}")]
    UnexpectedKeys { path: PathBuf, keys: String },
    #[error("{path}: weight `{key}` has shape {got:?}, the config implies {expected:?}")]
    Shape { path: PathBuf, key: String, expected: Vec<usize>, got: Vec<usize> },
    #[error("{path}: cannot read safetensors: {msg} (is the file truncated?)")]
    Safetensors { path: PathBuf, msg: String },
    #[error("input: {0}")]
    Input(String),
    #[error(transparent)]
    Candle(#[from] candle_core::Error),
    #[error(transparent)]
    Core(#[from] align_core::CoreError),
}

pub type Result<T, E = ModelError> = std::result::Result<T, E>;
