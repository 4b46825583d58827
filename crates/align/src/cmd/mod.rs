//! One module per subcommand; each exposes its clap arguments and a `run`.

pub mod bench;
pub mod cai;
pub mod chat;
pub mod demo;
pub mod dpo;
pub mod eval;
pub mod generate;
pub mod gym;
pub mod label;
pub mod onpolicy;
pub mod pretrain;
pub mod report;
pub mod rl;
pub mod rm;
pub mod serve;
pub mod sft;
pub mod tokenizer;
