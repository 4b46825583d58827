//! `align ppo | grpo | rloo`: online RL from a TOML config (configs/ppo-gym.toml,
//! configs/grpo-gym.toml); the subcommand sets `algorithm`.

use align_rl::{Algorithm, RlConfig};
use anyhow::Result;
use std::path::PathBuf;

#[derive(clap::Args, Debug)]
pub struct RlArgs {
    /// A TOML config (see configs/ppo-gym.toml and docs/rl.md).
    #[arg(long)]
    pub config: PathBuf,
    /// Override a config key, e.g. `--set ppo.kl_coef=0.0` (repeatable).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub sets: Vec<String>,
    /// Continue from the newest checkpoint under out_dir.
    #[arg(long)]
    pub resume: bool,
}

pub fn run(args: RlArgs, algorithm: Algorithm) -> Result<()> {
    let mut sets = args.sets.clone();
    let name = serde_json::to_value(algorithm)?.as_str().unwrap_or("ppo").to_string();
    sets.push(format!("algorithm=\"{name}\""));
    let (cfg, resolved): (RlConfig, toml::Value) = crate::config::load(Some(&args.config), &sets)?;
    let s = align_rl::run(&cfg, args.resume, &toml::to_string_pretty(&resolved)?)?;
    let get = |r: &align_core::metrics::Record, k: &str| r.get(k).and_then(|v| v.as_f64()).map(|x| format!("{x:.3}")).unwrap_or_else(|| "n/a".into());
    println!(
        "{}: {} steps, {} rollouts on {} prompts in {:.0} s; held-out score {} -> {}, gold {} -> {}",
        name.to_uppercase(),
        s.steps,
        s.rollouts,
        s.prompts,
        s.seconds,
        get(&s.eval_before, "eval/score"),
        get(&s.eval_after, "eval/score"),
        get(&s.eval_before, "eval/gold"),
        get(&s.eval_after, "eval/gold"),
    );
    println!("model saved to {}; per-rollout metrics in {}", s.model_dir.display(), cfg.out_dir.join("rollouts.jsonl").display());
    Ok(())
}
