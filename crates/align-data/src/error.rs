//! The error type of align-data. Every variant names the file (and line, field) it is about.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum DataError {
    #[error(transparent)]
    Core(#[from] align_core::CoreError),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    /// A required file is absent (`tokenizer.json` in a tokenizer directory, a data file).
    #[error("{path}: not found ({what})")]
    Missing { path: PathBuf, what: String },
    /// A JSON file that does not parse, or parses to the wrong shape.
    #[error("{path}: invalid JSON: {msg}")]
    Json { path: PathBuf, msg: String },
    /// One line of a JSONL file: `data.jsonl: line 17: field `text`: expected a string, got number`.
    #[error("{path}: line {line}: field `{field}`: {msg}")]
    JsonlField {
        path: PathBuf,
        line: usize,
        field: String,
        msg: String,
    },
    /// A JSONL line that is not a JSON value at all.
    #[error("{path}: line {line}: {msg}")]
    JsonlLine {
        path: PathBuf,
        line: usize,
        msg: String,
    },
    /// A bad record of a data set (docs/formats.md): `data.jsonl: line 3: field `chosen`:
    /// identical to `rejected``. `unit` is `line`, `row` (Parquet) or `record` (a JSON array);
    /// `reason` is the key that `skip_invalid` counts.
    #[error("{path}: {unit} {index}: {}{msg}", field_prefix(.field))]
    Record {
        path: PathBuf,
        unit: &'static str,
        index: usize,
        field: Option<String>,
        reason: String,
        msg: String,
    },
    /// A data set that cannot be read as a whole (unknown format, unsupported Parquet column).
    #[error("{path}: {msg}")]
    Dataset { path: PathBuf, msg: String },
    /// An error from the `tokenizers` crate, with the file or operation it came from.
    #[error("tokenizer ({context}): {msg}")]
    Tokenizer { context: String, msg: String },
    /// Arguments that cannot work (block longer than the data, batch larger than the blocks, ...).
    #[error("{0}")]
    Invalid(String),
}

fn field_prefix(field: &Option<String>) -> String {
    field
        .as_ref()
        .map(|f| format!("field `{f}`: "))
        .unwrap_or_default()
}

pub type Result<T, E = DataError> = std::result::Result<T, E>;

impl DataError {
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        let path = path.into();
        if source.kind() == std::io::ErrorKind::NotFound {
            DataError::Missing {
                path,
                what: source.to_string(),
            }
        } else {
            DataError::Io { path, source }
        }
    }

    pub(crate) fn tok(context: impl Into<String>, e: impl std::fmt::Display) -> Self {
        DataError::Tokenizer {
            context: context.into(),
            msg: e.to_string(),
        }
    }
}

/// Reads a file to a string, mapping the error to [`DataError`] with the path.
pub(crate) fn read_to_string(path: &std::path::Path) -> Result<String> {
    std::fs::read_to_string(path).map_err(|e| DataError::io(path, e))
}
