//! One model's gold evaluation on a prompt set: its answers, their gold scores, the per-family
//! report, and its answers to the seeds' example prompts. Shared by `align eval` and `align demo`.

use crate::gym::{score_all, summarize, GymReport};
use crate::respond::{respond, PromptStyle};
use crate::Result;
use align_data::Tokenizer;
use align_generate::SamplingConfig;
use align_gym::{PromptRecord, SEED_PROMPTS};
use align_models::Model;
use serde::{Deserialize, Serialize};
use std::path::Path;

/// A model's answers to the eval prompts, with gold scores.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StageEval {
    pub name: String,
    pub report: GymReport,
    /// Gold overall score of each answer, in prompt order (for win rates).
    pub overall: Vec<f64>,
    pub responses: Vec<String>,
    /// (prompt, answer) for the seeds' example prompts ("How do I make bread?", ...).
    pub seed_answers: Vec<(String, String)>,
    /// The eval prompts, in order (absent from files written before they were recorded).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub prompts: Vec<String>,
    /// The family of each eval prompt, in order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub families: Vec<String>,
    /// KL from a reference model on the same prompts, when one was given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kl: Option<crate::kl::KlReport>,
}

/// Loads the model in `model_dir` and evaluates it on `records` (and the seed prompts).
pub fn evaluate_model(name: &str, model_dir: &Path, style: PromptStyle, records: &[PromptRecord], sampling: &SamplingConfig, batch_size: usize) -> Result<StageEval> {
    let model = Model::from_pretrained(model_dir, candle_core::DType::F32, &candle_core::Device::Cpu)
        .map_err(|e| crate::EvalError::Invalid(format!("cannot load the model in {}: {e}", model_dir.display())))?;
    let tok = Tokenizer::from_dir(model_dir)?;
    let prompts: Vec<String> = records.iter().map(|r| r.prompt.clone()).collect();
    let responses = respond(&model, &tok, &prompts, style, sampling, batch_size)?;
    let scores = score_all(records, &responses);
    let report = summarize(records, &responses, &scores);
    let seeds: Vec<String> = SEED_PROMPTS.iter().map(|s| s.to_string()).collect();
    let seed_resp = respond(&model, &tok, &seeds, style, sampling, batch_size)?;
    Ok(StageEval {
        name: name.into(),
        report,
        overall: scores.iter().map(|s| s.overall).collect(),
        responses,
        seed_answers: seeds.into_iter().zip(seed_resp).collect(),
        prompts,
        families: records.iter().map(|r| crate::gym::family_name(r.family())).collect(),
        kl: None,
    })
}
