//! `align onpolicy`: sample the policy's own answers to training prompts and label pairs of them
//! with the gym's gold judge or its simulated panel, writing preference pairs for `align dpo` /
//! `align rm` (the on-policy fix for offline DPO; docs/dpo.md).

use align_data::Tokenizer;
use align_eval::onpolicy::{pairs_per_family, read_references, sample_and_label, Labeler, OnPolicyConfig};
use align_gym::{gold_response, load_prompts};
use align_models::Model;
use anyhow::{bail, Context, Result};
use std::collections::HashMap;
use std::path::PathBuf;

#[derive(clap::Args, Debug)]
pub struct OnPolicyArgs {
    /// The policy (usually the SFT model).
    #[arg(long)]
    pub model: PathBuf,
    /// Prompt records with gold answers: a gym's prompts/train.jsonl.
    #[arg(long)]
    pub prompts: PathBuf,
    /// Output JSONL of labelled pairs (written atomically).
    #[arg(long)]
    pub out: PathBuf,
    /// Answers sampled per prompt.
    #[arg(long, default_value_t = 2)]
    pub samples: usize,
    /// gold (the judge) or panel (simulated annotators; soft label = their mean probability).
    #[arg(long, default_value = "gold")]
    pub labeler: String,
    /// Chosen-side candidates: `gym` (the gym's good answer to each prompt), `none` (pair the
    /// policy's answers with each other), or a TRL file of demonstrations (messages or prompt/completion).
    #[arg(long, default_value = "gym")]
    pub reference: String,
    #[arg(long, default_value_t = 1.0)]
    pub temperature: f32,
    #[arg(long, default_value_t = 64)]
    pub max_new_tokens: usize,
    /// At most this many prompts (0 = all).
    #[arg(long, default_value_t = 0)]
    pub max_prompts: usize,
    /// Pairs whose gold scores differ by less are skipped as ties.
    #[arg(long, default_value_t = 0.05)]
    pub min_gold_margin: f64,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
}

pub fn run(a: OnPolicyArgs) -> Result<()> {
    let labeler = match a.labeler.as_str() {
        "gold" => Labeler::Gold,
        "panel" => Labeler::Panel,
        o => bail!("--labeler {o}: expected gold or panel"),
    };
    let records = load_prompts(&a.prompts).with_context(|| format!("reading prompt records {}", a.prompts.display()))?;
    let references: HashMap<String, String> = match a.reference.as_str() {
        "none" => HashMap::new(),
        "gym" => records.iter().map(|r| (r.prompt.clone(), gold_response(r))).collect(),
        file => read_references(std::path::Path::new(file)).with_context(|| format!("reading reference demonstrations {file}"))?,
    };
    let mut cfg = OnPolicyConfig { samples_per_prompt: a.samples, labeler, min_gold_margin: a.min_gold_margin, max_prompts: a.max_prompts, ..OnPolicyConfig::default() };
    cfg.sampling.temperature = a.temperature;
    cfg.sampling.max_new_tokens = a.max_new_tokens;
    cfg.sampling.seed = a.seed;
    let model = Model::from_pretrained(&a.model, candle_core::DType::F32, &candle_core::Device::Cpu)?;
    let tok = Tokenizer::from_dir(&a.model)?;
    let t0 = std::time::Instant::now();
    let (lines, rep) = sample_and_label(&model, &tok, &records, &references, &cfg)?;
    let mut text = String::new();
    for l in &lines {
        text.push_str(&serde_json::to_string(l)?);
        text.push('\n');
    }
    align_core::atomic::write_atomic(&a.out, text.as_bytes())?;
    println!(
        "{} prompts × {} samples in {:.0} s: {} pairs written to {} ({} gold ties skipped, {} empty answers left out); mean gold of the samples {:.3}",
        rep.prompts, a.samples, t0.elapsed().as_secs_f64(), rep.pairs, a.out.display(), rep.ties_skipped, rep.empty_samples, rep.mean_sample_gold
    );
    if rep.reference_pairs > 0 {
        println!("reference chosen in {} of {} reference pairs", rep.reference_chosen, rep.reference_pairs);
    }
    println!("labels agree with gold on {:.1}% of pairs; per family {:?}", 100.0 * rep.label_gold_agreement, pairs_per_family(&lines));
    Ok(())
}
