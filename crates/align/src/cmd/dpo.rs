//! `align dpo`: direct preference optimization (DPO family, SimPO, ORPO) on preference pairs, and
//! KTO on unpaired labels.

use anyhow::Result;
use std::path::PathBuf;

#[derive(clap::Args, Debug)]
pub struct DpoArgs {
    /// A TOML config (see configs/dpo-gym.toml).
    #[arg(long)]
    pub config: PathBuf,
    /// Loss: sigmoid (DPO), ipo, robust, hinge, simpo, orpo, or kto (unpaired labels; pairs are unpaired).
    #[arg(long)]
    pub loss: Option<String>,
    /// Override a config key, e.g. `--set loss.beta=0.05` (repeatable).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub sets: Vec<String>,
    /// Continue from the newest checkpoint under out_dir.
    #[arg(long)]
    pub resume: bool,
    /// Skip bad pairs (counted by reason) instead of stopping at the first.
    #[arg(long)]
    pub skip_invalid: bool,
}

pub fn run(args: DpoArgs) -> Result<()> {
    let mut sets = args.sets.clone();
    match args.loss.as_deref() {
        None => {}
        Some(o @ ("orpo" | "kto")) => sets.push(format!("objective={o}")),
        Some(l @ ("sigmoid" | "ipo" | "robust" | "hinge" | "simpo")) => sets.push(format!("loss.loss_type={l}")),
        Some(other) => anyhow::bail!("--loss {other}: expected sigmoid, ipo, robust, hinge, simpo, orpo or kto"),
    }
    if args.skip_invalid {
        sets.push("data.read.skip_invalid=true".into());
    }
    let (cfg, resolved): (align_train::dpo::DpoConfig, toml::Value) = crate::config::load(Some(&args.config), &sets)?;
    let s = align_train::dpo::run(&cfg, args.resume, &toml::to_string_pretty(&resolved)?)?;
    for line in &s.read_summary {
        println!("{line}");
    }
    let get = |m: &std::collections::BTreeMap<String, f64>, k: &str| m.get(k).copied().unwrap_or(f64::NAN);
    if s.eval_after.contains_key("kl") {
        println!("KTO: held-out reward margin (desirable − undesirable) {:.3} -> {:.3}", get(&s.eval_before, "rewards/margins"), get(&s.eval_after, "rewards/margins"));
    }
    println!(
        "DPO: {} steps in {:.0} s on {} pairs ({} truncated, {} skipped); held-out rewards/accuracies {:.3} -> {:.3}, rewards/margins {:.3} -> {:.3}",
        s.steps,
        s.seconds,
        s.train.kept,
        s.train.truncated,
        s.train.skipped.values().sum::<usize>(),
        get(&s.eval_before, "rewards/accuracies"),
        get(&s.eval_after, "rewards/accuracies"),
        get(&s.eval_before, "rewards/margins"),
        get(&s.eval_after, "rewards/margins"),
    );
    println!("model saved to {}", s.model_dir.display());
    Ok(())
}
