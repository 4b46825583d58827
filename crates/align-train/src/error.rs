//! The error type of align-train.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    #[error(transparent)]
    Candle(#[from] candle_core::Error),
    #[error(transparent)]
    Core(#[from] align_core::CoreError),
    /// A loss, gradient norm, eval loss or weight became NaN or infinite. Training stopped before
    /// the optimizer step (or the checkpoint) that would have used it; the last checkpoint on disk
    /// is the last good state.
    #[error(
        "non-finite {what} at step {step}: training stopped; the last checkpoint on disk is intact"
    )]
    NonFinite { step: u64, what: String },
    #[error("invalid training config: {0}")]
    Config(String),
    #[error("checkpoint {path}: {msg}")]
    Checkpoint { path: PathBuf, msg: String },
    /// An error from a step, a data stream or a hook, kept as is.
    #[error(transparent)]
    Other(Box<dyn std::error::Error + Send + Sync>),
}

impl TrainError {
    /// Wraps any error (a data or model crate's) from inside a [`crate::Step`] or [`crate::DataStream`].
    pub fn other(e: impl std::error::Error + Send + Sync + 'static) -> Self {
        TrainError::Other(Box::new(e))
    }

    pub(crate) fn checkpoint(path: impl Into<PathBuf>, msg: impl Into<String>) -> Self {
        TrainError::Checkpoint {
            path: path.into(),
            msg: msg.into(),
        }
    }
}

pub type Result<T, E = TrainError> = std::result::Result<T, E>;
