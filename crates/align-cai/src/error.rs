//! The crate's one error type.

use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum CaiError {
    /// (The I/O error is part of the message, not a `source`, so `{:#}` does not print it twice.)
    #[error("{path}: {err}")]
    Io { path: PathBuf, err: std::io::Error },
    #[error("{path}:{line}: {message}")]
    Parse { path: PathBuf, line: usize, message: String },
    #[error("constitution {0}")]
    Constitution(String),
    /// The HTTP judge failed after its retries (or at once, for a client error).
    #[error("judge endpoint {url}: {message}")]
    Http { url: String, message: String },
    /// A judge prompt longer than the judge model's context (the comparison is skipped).
    #[error("the judge prompt is too long: {0}")]
    TooLong(String),
    /// The judge answered, but named neither option (the comparison is skipped).
    #[error("the judge named neither option: {0}")]
    Unanswered(String),
    #[error("judge: {0}")]
    Judge(String),
    #[error("{0}")]
    Invalid(String),
    #[error(transparent)]
    Data(#[from] align_data::DataError),
    #[error(transparent)]
    Generate(#[from] align_generate::GenerateError),
    #[error(transparent)]
    Model(#[from] align_models::ModelError),
    #[error(transparent)]
    Candle(#[from] candle_core::Error),
    #[error(transparent)]
    Core(#[from] align_core::error::CoreError),
}

impl CaiError {
    pub fn io(path: &Path, err: std::io::Error) -> Self {
        CaiError::Io { path: path.to_path_buf(), err }
    }
}

pub type Result<T, E = CaiError> = std::result::Result<T, E>;
