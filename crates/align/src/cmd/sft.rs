//! `align sft`: stage 2, instruction tuning.

use anyhow::Result;
use std::path::PathBuf;

#[derive(clap::Args, Debug)]
pub struct SftArgs {
    /// A TOML config (see configs/sft-gym.toml).
    #[arg(long)]
    pub config: PathBuf,
    /// Override a config key, e.g. `--set data.packing=true` (repeatable).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub sets: Vec<String>,
    /// Continue from the newest checkpoint under out_dir.
    #[arg(long)]
    pub resume: bool,
    /// Skip bad records (counted by reason and reported) instead of stopping at the first.
    #[arg(long)]
    pub skip_invalid: bool,
}

pub fn run(args: SftArgs) -> Result<()> {
    let mut sets = args.sets.clone();
    if args.skip_invalid {
        sets.push("data.read.skip_invalid=true".into());
    }
    let (cfg, resolved): (align_train::sft::SftConfig, toml::Value) = crate::config::load(Some(&args.config), &sets)?;
    let s = align_train::sft::run(&cfg, args.resume, &toml::to_string_pretty(&resolved)?)?;
    for line in &s.read_summary {
        println!("{line}");
    }
    println!(
        "SFT: {} steps in {:.0} s on {} sequences ({} truncated, {} skipped); held-out loss {:.3} -> {:.3}",
        s.steps,
        s.seconds,
        s.train.kept,
        s.train.truncated,
        s.train.skipped.values().sum::<usize>(),
        s.eval_loss_before,
        s.eval_loss
    );
    println!("model saved to {}", s.model_dir.display());
    Ok(())
}
