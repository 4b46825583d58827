//! align-eval: measuring what each stage changed.
//!
//! - [`respond`]: a model's answers to a prompt set (raw continuation, or through its chat template).
//! - [`gym`]: gold helpful / honest / harmless per family, refusal, over-refusal, abstention and
//!   correction rates, from the gym's judge.
//! - [`evaluate`]: one model's gold evaluation (answers, scores, per-family report).
//! - [`kl`]: KL of a policy from a reference model on a prompt set (exact per-token and k1).
//! - [`onpolicy`]: on-policy preference pairs: the policy's own samples, labelled by the gold
//!   judge or the simulated panel.
//! - [`report`]: `align report`: the run directory as one self-contained HTML file and a
//!   Markdown summary; [`plot`] draws its SVG charts.
//! - [`truthfulqa`]: TruthfulQA MC1/MC2/MC3 by the log-likelihood of each answer, as its authors
//!   score it.
//! - [`safety_sets`]: AdvBench and XSTest as published, and their refusal rates;
//!   [`refusal`] holds the documented refusal detectors.
//! - [`winrate`]: pairwise win rate between two models under a judge, ties counted half, with a
//!   bootstrap confidence interval.

pub mod evaluate;
pub mod gym;
pub mod kl;
pub mod onpolicy;
pub mod plot;
pub mod refusal;
pub mod report;
pub mod respond;
pub mod safety_sets;
pub mod truthfulqa;
pub mod winrate;

#[derive(Debug, thiserror::Error)]
pub enum EvalError {
    #[error(transparent)]
    Generate(#[from] align_generate::GenerateError),
    #[error(transparent)]
    Data(#[from] align_data::DataError),
    #[error(transparent)]
    Candle(#[from] candle_core::Error),
    #[error("{0}")]
    Invalid(String),
}

pub type Result<T, E = EvalError> = std::result::Result<T, E>;
