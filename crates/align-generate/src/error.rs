//! What can go wrong in generation: bad inputs are caught before the first forward pass and named
//! by row; everything else is a candle error from the model.

#[derive(Debug, thiserror::Error)]
pub enum GenerateError {
    #[error("invalid sampling config: {0}")]
    Config(String),
    #[error("prompt {row} is empty: generation needs at least one token (e.g. BOS)")]
    EmptyPrompt { row: usize },
    #[error("prompt {row} has {len} tokens, longer than the model's context of {max} positions")]
    PromptTooLong { row: usize, len: usize, max: usize },
    #[error("prompt {row} holds token id {token}, outside the model's vocabulary of {vocab}")]
    TokenOutOfRange { row: usize, token: u32, vocab: usize },
    #[error("{what}: expected {expected} entries (one per prompt), got {got}")]
    Mismatch { what: &'static str, expected: usize, got: usize },
    #[error(transparent)]
    Candle(#[from] candle_core::Error),
}

pub type Result<T> = std::result::Result<T, GenerateError>;
