//! The one error type of align-label. Each variant maps to one HTTP status in `server.rs`.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum LabelError {
    #[error("database: {0}")]
    Db(#[from] rusqlite::Error),
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error(transparent)]
    Data(#[from] align_data::DataError),
    #[error(transparent)]
    Core(#[from] align_core::CoreError),
    /// One bad line of an import: `prompts.jsonl: line 3: field `responses`: needs at least two`.
    #[error("{source_name}: line {line}: field `{field}`: {msg}")]
    ImportRow { source_name: String, line: usize, field: String, msg: String },
    /// Input a user can fix (a request body, a CLI argument): HTTP 400.
    #[error("{0}")]
    Invalid(String),
    /// A project, annotator or assignment that does not exist, or is not the caller's: HTTP 404.
    #[error("{0} not found")]
    NotFound(String),
    /// A name already taken: HTTP 409.
    #[error("{0}")]
    Conflict(String),
    /// A transaction that could not be committed (disk full, I/O error): HTTP 500.
    #[error("could not save to the database: {0}")]
    Commit(String),
    /// The writer thread ended (the server is shutting down).
    #[error("the database writer has stopped; restart the server")]
    WriterGone,
}

pub type Result<T> = std::result::Result<T, LabelError>;
