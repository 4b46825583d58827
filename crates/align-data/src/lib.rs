//! align-data: tokenizers and the data that feeds training.
//!
//! - [`tokenizer`]: load a Hugging Face tokenizer directory, stream-decode, train byte-level BPE.
//! - [`text`] and [`jsonl`]: documents from `.txt` / `.jsonl` files, errors naming file and line.
//! - [`formats`]: data sets in TRL's formats (JSONL, JSON, Parquet), validated (docs/formats.md).
//! - [`blocks`]: documents → tokens + EOS → train/eval split → blocks of `seq_len + 1`.
//! - [`batcher`]: seeded shuffled batches with a resumable state.
//!
//! Formats and rules are in docs/data.md.

pub mod batcher;
pub mod blocks;
pub mod chat_template;
pub mod error;
pub mod formats;
pub mod jsonl;
pub mod text;
pub mod tokenizer;

pub use batcher::{Batcher, BatcherState, Shuffler};
pub use blocks::{build_dataset, load_pretrain_data, Batch, TokenBlocks, TokenDataset};
pub use chat_template::{tokenize_conversation, ChatTemplate, Message};
pub use error::{DataError, Result};
pub use formats::{
    extract_prompt, read_examples, Example, FieldMap, Format, ReadOptions, ReadReport, Text,
};
pub use text::{read_text_documents, read_text_documents_with_field};
pub use tokenizer::{train_bpe, DecodeStream, Tokenizer, CHATML_TEMPLATE, DEFAULT_SPECIAL_TOKENS};
