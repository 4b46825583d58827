//! `align eval`: gold evaluation of one or more models on the gym's held-out prompts, with
//! per-family behaviour rates and pairwise win rates (ties count half, bootstrap interval).

use align_eval::evaluate::{evaluate_model, StageEval};
use align_eval::gym::balanced_subset;
use align_eval::respond::PromptStyle;
use align_eval::winrate::win_rate;
use align_generate::SamplingConfig;
use align_gym::load_prompts;
use anyhow::{bail, Context, Result};
use std::path::PathBuf;

#[derive(clap::Args, Debug)]
pub struct EvalArgs {
    /// A model to evaluate, as NAME=DIR, or DIR (named after the directory); repeatable. Add
    /// `:raw` after DIR for a pretrained model prompted with the bare text instead of its chat template.
    #[arg(long = "model", required = true)]
    pub models: Vec<String>,
    /// Prompt records with gold answers: a gym's prompts/eval.jsonl.
    #[arg(long)]
    pub prompts: PathBuf,
    /// Prompts per family (0 = all).
    #[arg(long, default_value_t = 40)]
    pub per_family: usize,
    #[arg(long, default_value_t = 64)]
    pub max_new_tokens: usize,
    /// Sampling temperature; 0 = greedy (the default, so results are exact).
    #[arg(long, default_value_t = 0.0)]
    pub temperature: f32,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    #[arg(long, default_value_t = 40)]
    pub batch_size: usize,
    /// Write every model's answers, scores and report as JSON here.
    #[arg(long)]
    pub out: Option<PathBuf>,
}

/// (name, dir, style) of a `--model` value.
fn parse_model(s: &str) -> (String, PathBuf, PromptStyle) {
    let (name, rest) = match s.split_once('=') {
        Some((n, d)) => (Some(n.to_string()), d),
        None => (None, s),
    };
    let (dir, style) = match rest.strip_suffix(":raw") {
        Some(d) => (d, PromptStyle::Raw),
        None => (rest, PromptStyle::Chat),
    };
    let dir = PathBuf::from(dir);
    let name = name.unwrap_or_else(|| dir.iter().rev().find(|c| *c != "model").map(|c| c.to_string_lossy().into_owned()).unwrap_or_else(|| dir.display().to_string()));
    (name, dir, style)
}

pub fn run(a: EvalArgs) -> Result<()> {
    let all = load_prompts(&a.prompts).with_context(|| format!("reading prompt records {}", a.prompts.display()))?;
    let records = if a.per_family == 0 { all } else { balanced_subset(&all, a.per_family) };
    if records.is_empty() {
        bail!("{} has no prompt records", a.prompts.display());
    }
    let sampling = SamplingConfig { max_new_tokens: a.max_new_tokens, temperature: a.temperature, seed: a.seed, ..SamplingConfig::default() };
    let mut evals: Vec<StageEval> = vec![];
    for m in &a.models {
        let (name, dir, style) = parse_model(m);
        eprintln!("evaluating {name} ({}) on {} prompts", dir.display(), records.len());
        evals.push(evaluate_model(&name, &dir, style, &records, &sampling, a.batch_size)?);
    }
    println!("{:<24} {:>8} {:>8} {:>8} {:>8} {:>8} {:>8} {:>8}", "model", "helpful", "honest", "harmless", "overall", "refuse", "abstain", "agree");
    for e in &evals {
        let r = &e.report;
        let fam = |k: &str| r.per_family.get(k).cloned().unwrap_or_default();
        println!(
            "{:<24} {:>8.3} {:>8.3} {:>8.3} {:>8.3} {:>8.2} {:>8.2} {:>8.2}",
            e.name, r.all.helpful, r.all.honest, r.all.harmless, r.all.overall,
            fam("harmful").refusal_rate, fam("unknown").abstention_rate, fam("sycophancy").agreement_rate
        );
    }
    for i in 0..evals.len() {
        for j in 0..i {
            let w = win_rate(&evals[i].overall, &evals[j].overall, 0.05, a.seed);
            println!(
                "win rate {} vs {}: {:.3} [{:.3}, {:.3}] ({} wins, {} ties, {} losses)",
                evals[i].name, evals[j].name, w.rate, w.ci_low, w.ci_high, w.wins, w.ties, w.losses
            );
        }
    }
    if let Some(out) = &a.out {
        align_core::atomic::write_atomic(out, serde_json::to_string_pretty(&evals)?.as_bytes())?;
        println!("wrote {}", out.display());
    }
    Ok(())
}
