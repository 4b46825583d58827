//! One module per subcommand; each exposes its clap arguments and a `run`.

pub mod bench;
pub mod demo;
pub mod dpo;
pub mod generate;
pub mod gym;
pub mod pretrain;
pub mod rm;
pub mod sft;
pub mod tokenizer;
