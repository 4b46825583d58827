//! `align pretrain`: stage 1, a raw next-token predictor.

use anyhow::Result;
use std::path::PathBuf;

#[derive(clap::Args, Debug)]
pub struct PretrainArgs {
    /// A TOML config (see configs/pretrain-tiny.toml).
    #[arg(long)]
    pub config: PathBuf,
    /// Override a config key, e.g. `--set train.max_steps=100` (repeatable; wins over the file).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub sets: Vec<String>,
    /// Continue from the newest checkpoint under out_dir (bit-for-bit on CPU).
    #[arg(long)]
    pub resume: bool,
}

pub fn run(args: PretrainArgs) -> Result<()> {
    let (cfg, resolved): (align_train::pretrain::PretrainConfig, toml::Value) =
        crate::config::load(Some(&args.config), &args.sets)?;
    let resolved = toml::to_string_pretty(&resolved)?;
    let s = align_train::pretrain::run(&cfg, args.resume, &resolved)?;
    println!(
        "pretrained {} parameters for {} steps in {:.0} s: train loss {:.3}, held-out loss {:.3} (perplexity {:.1}); unigram entropy of the data {:.3} nats",
        s.params,
        s.steps,
        s.seconds,
        s.final_train_loss.unwrap_or(f64::NAN),
        s.eval_loss,
        s.eval_loss.exp(),
        s.unigram_entropy
    );
    println!("model saved to {}", s.model_dir.display());
    Ok(())
}
