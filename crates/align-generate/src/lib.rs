//! align-generate: text generation written once, for the CLI, RL rollouts, evaluation and serving.
//!
//! Read in this order: [`config`] (the [`SamplingConfig`] with HF's names and defaults),
//! [`sampling`] (pure functions over one row of logits: repetition penalty → temperature →
//! top-k → top-p → min-p → sample), then [`generate`](mod@generate) (batched, left-padded
//! prefill + KV-cache decoding with per-row stopping and per-row RNG streams).
//!
//! The generator works on token ids only; stop strings reach text through a decode callback,
//! so this crate does not depend on a tokenizer. Rules and guarantees: docs/generation.md.

pub mod config;
pub mod engine;
pub mod error;
pub mod generate;
pub mod sampling;

pub use config::SamplingConfig;
pub use error::{GenerateError, Result};
pub use generate::{generate, generate_model, truncate_at_stop, DecodeFn, FinishReason, GenerateOptions, Generation};
