//! `align rm`: train a reward model on preference pairs, or score responses with one.

use align_data::formats::{read_examples, Example, ReadOptions, Text};
use align_data::{ChatTemplate, Tokenizer};
use align_models::reward::RewardModel;
use align_train::rm::{pad_id, reward_stats, score_pairs, score_seqs, tokenize_pairs, tokenize_response, RmData};
use anyhow::{bail, Context, Result};
use candle_core::{DType, Device};
use std::path::{Path, PathBuf};

#[derive(clap::Subcommand, Debug)]
pub enum RmCmd {
    /// Train a reward model (Bradley-Terry) from a TOML config (see docs/reward_model.md).
    Train {
        /// A TOML config.
        #[arg(long)]
        config: PathBuf,
        /// Override a config key, e.g. `--set center_rewards_coefficient=0.01` (repeatable).
        #[arg(long = "set", value_name = "KEY=VALUE")]
        sets: Vec<String>,
        /// Continue from the newest checkpoint under out_dir.
        #[arg(long)]
        resume: bool,
        /// Skip bad records (counted by reason and reported) instead of stopping at the first.
        #[arg(long)]
        skip_invalid: bool,
    },
    /// Score responses: a preference file prints the rewards of chosen and rejected and the
    /// accuracy; a prompt/completion (or text) file prints one reward per line.
    Score {
        /// A reward model directory (HF `*ForSequenceClassification` with tokenizer files).
        #[arg(long)]
        model: PathBuf,
        /// A JSONL / JSON / Parquet file in a TRL format.
        #[arg(long)]
        data: PathBuf,
        /// Pairs or sequences per forward pass.
        #[arg(long, default_value_t = 16)]
        batch_size: usize,
    },
}

pub fn run(cmd: RmCmd) -> Result<()> {
    match cmd {
        RmCmd::Train { config, sets, resume, skip_invalid } => train(config, sets, resume, skip_invalid),
        RmCmd::Score { model, data, batch_size } => score(model, data, batch_size),
    }
}

fn train(config: PathBuf, mut sets: Vec<String>, resume: bool, skip_invalid: bool) -> Result<()> {
    if skip_invalid {
        sets.push("data.read.skip_invalid=true".into());
    }
    let (cfg, resolved): (align_train::rm::RmConfig, toml::Value) = crate::config::load(Some(&config), &sets)?;
    let s = align_train::rm::run(&cfg, resume, &toml::to_string_pretty(&resolved)?)?;
    for line in &s.read_summary {
        println!("{line}");
    }
    println!(
        "reward model: {} steps in {:.0} s on {} pairs ({} truncated, {} skipped)",
        s.steps,
        s.seconds,
        s.train.kept,
        s.train.truncated,
        s.train.skipped.values().sum::<usize>()
    );
    if let (Some(b), Some(a)) = (s.eval_before, s.eval_after) {
        println!(
            "held-out ({} pairs): accuracy {:.3} -> {:.3}, loss {:.3} -> {:.3}, margin {:.3}, rewards {:.3} ± {:.3}",
            a.pairs, b.stats.accuracy, a.stats.accuracy, b.loss, a.loss, a.stats.margin, a.stats.mean_reward, a.stats.std_reward
        );
    }
    println!("model saved to {}", s.model_dir.display());
    Ok(())
}

/// A reward model directory loaded for scoring: the model, its tokenizer and its chat template.
pub(crate) fn load_scorer(model: &Path) -> Result<(RewardModel, Tokenizer, ChatTemplate)> {
    let rm = RewardModel::from_pretrained(model, DType::F32, &Device::Cpu)
        .with_context(|| format!("{} is not a reward model directory", model.display()))?;
    let tok = Tokenizer::from_dir(model)?;
    let tmpl = ChatTemplate::from_tokenizer(&tok)?;
    Ok((rm, tok, tmpl))
}

fn score(model: PathBuf, data: PathBuf, batch_size: usize) -> Result<()> {
    let (rm, tok, tmpl) = load_scorer(&model)?;
    let pad = pad_id(&tok);
    let max_len = rm.model.config.max_positions();
    let (examples, rep) = read_examples(&data, &ReadOptions::default())?;
    eprintln!("{}: {}", data.display(), rep.summary());
    if examples.is_empty() {
        bail!("{}: no examples to score", data.display());
    }
    if matches!(examples[0], Example::Preference { .. }) {
        let cfg = RmData { max_seq_len: max_len, ..RmData::default() };
        let (pairs, prep) = tokenize_pairs(&tok, &tmpl, &examples, &cfg)?;
        if prep.truncated > 0 || !prep.skipped.is_empty() {
            eprintln!("{} pairs truncated to {max_len} tokens, skipped {:?}", prep.truncated, prep.skipped);
        }
        let (c, r) = score_pairs(&rm, &pairs, batch_size, pad)?;
        println!("reward_chosen\treward_rejected");
        for (x, y) in c.iter().zip(&r) {
            println!("{x:.6}\t{y:.6}");
        }
        let s = reward_stats(&c, &r);
        println!(
            "pairs {}: accuracy {:.4}, margin {:.4}, mean reward {:.4}, std {:.4}",
            pairs.len(), s.accuracy, s.margin, s.mean_reward, s.std_reward
        );
        return Ok(());
    }
    let mut seqs = vec![];
    let mut truncated = 0;
    for ex in &examples {
        let mut ids = match ex {
            Example::PromptCompletion { prompt, completion } => tokenize_response(&tok, &tmpl, Some(prompt), completion)?,
            Example::LanguageModeling { text } => tokenize_response(&tok, &tmpl, None, text)?,
            Example::Unpaired { prompt, completion, .. } => tokenize_response(&tok, &tmpl, Some(prompt), completion)?,
            Example::Preference { .. } => bail!("{}: a file mixes preference pairs with other records", data.display()),
        };
        if ids.len() > max_len {
            ids.truncate(max_len);
            truncated += 1;
        }
        if ids.is_empty() {
            ids = tokenize_response(&tok, &tmpl, None, &Text::Plain(String::new()))?;
        }
        seqs.push(ids);
    }
    if truncated > 0 {
        eprintln!("{truncated} sequences truncated to {max_len} tokens");
    }
    for r in score_seqs(&rm, &seqs, batch_size, pad)? {
        println!("{r:.6}");
    }
    Ok(())
}
