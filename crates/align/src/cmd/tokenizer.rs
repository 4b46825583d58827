//! `align tokenizer train|encode`: train a byte-level BPE tokenizer, or look at how text encodes.

use align_data::tokenizer::{train_bpe_opts, Tokenizer, DEFAULT_SPECIAL_TOKENS};
use anyhow::Context;
use std::path::PathBuf;

#[derive(clap::Subcommand, Debug)]
pub enum TokenizerCmd {
    /// Train a byte-level BPE tokenizer (GPT-2 style, with <|endoftext|>, <|im_start|>, <|im_end|>)
    /// and write tokenizer.json + tokenizer_config.json into --out.
    Train {
        /// Training text: plain text files (`<|endoftext|>` lines separate documents) or `.jsonl`
        /// files with a `text` field.
        #[arg(long, num_args = 1.., required = true)]
        data: Vec<PathBuf>,
        /// Vocabulary size including the 256 bytes and the special tokens.
        #[arg(long, default_value_t = 4096)]
        vocab_size: usize,
        /// Output directory (loadable with transformers' AutoTokenizer.from_pretrained).
        #[arg(long)]
        out: PathBuf,
        /// A pair must occur at least this often to be merged.
        #[arg(long, default_value_t = 2)]
        min_frequency: u64,
        /// Split numbers into single digits (LLaMA, Qwen2): no token holds two digits.
        #[arg(long)]
        split_digits: bool,
    },
    /// Print the token ids (JSON) and tokens of --text.
    Encode {
        /// A tokenizer directory (tokenizer.json and friends).
        #[arg(long)]
        tokenizer: PathBuf,
        #[arg(long)]
        text: String,
        /// Do not add BOS/EOS.
        #[arg(long)]
        no_special_tokens: bool,
    },
}

pub fn run(cmd: TokenizerCmd) -> anyhow::Result<()> {
    match cmd {
        TokenizerCmd::Train {
            data,
            vocab_size,
            out,
            min_frequency,
            split_digits,
        } => {
            let tok = train_bpe_opts(&data, vocab_size, &DEFAULT_SPECIAL_TOKENS, min_frequency, split_digits)
                .context("training the tokenizer")?;
            tok.save_dir(&out)
                .with_context(|| format!("saving the tokenizer to {}", out.display()))?;
            println!("wrote {} (vocab size {})", out.display(), tok.vocab_size());
        }
        TokenizerCmd::Encode {
            tokenizer,
            text,
            no_special_tokens,
        } => {
            let tok = Tokenizer::from_dir(&tokenizer)?;
            let ids = tok.encode(&text, !no_special_tokens)?;
            let tokens: Vec<String> = ids
                .iter()
                .map(|&i| tok.id_to_token(i).unwrap_or_else(|| format!("<{i}>")))
                .collect();
            println!(
                "{}",
                serde_json::json!({ "ids": ids, "tokens": tokens, "n": ids.len() })
            );
        }
    }
    Ok(())
}
