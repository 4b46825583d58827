//! align-cai: Constitutional AI (Bai et al., 2022, "Constitutional AI: Harmlessness from AI
//! Feedback", arXiv:2212.08073): the model's own critiques and revisions against a written
//! constitution replace human demonstrations, and AI comparisons replace human preference labels.
//!
//! Read in this order:
//! - [`constitution`]: principles (critique request, revision request, comparison question) and
//!   few-shot demonstrations; TOML files, align's default, the paper's JSON files.
//! - [`prompts`]: red-team prompts (gym records with gold answers, or plain `{"prompt"}` lines).
//! - [`chat`]: a model with its chat template answering conversations in seeded batches.
//! - [`revise`]: SL-CAI, critique → revision rounds → an SFT data set.
//! - [`judge`]: the [`judge::Judge`] trait, the paper's multiple-choice question, both orders
//!   averaged, the local judge (option-token log-probs) and the gym's gold judge; [`http`]: an
//!   OpenAI-compatible endpoint as the judge (log-probs or sampled votes, timeouts, retries).
//! - [`judge_data`]: demonstrations of the comparison task for models too small to answer it.
//! - [`label`]: RL-CAI / RLAIF soft preference labels, written resumably through [`resume`].

pub mod chat;
pub mod constitution;
pub mod error;
pub mod http;
pub mod judge;
pub mod judge_data;
pub mod label;
pub mod prompts;
pub mod resume;
pub mod revise;

pub use chat::ChatModel;
pub use constitution::{Constitution, Principle};
pub use error::{CaiError, Result};
pub use http::{HttpJudge, HttpJudgeConfig, Readout};
pub use judge::{compare_both_orders, Comparison, GoldJudge, Judge, LocalJudge, Verdict};
pub use label::{label, LabelConfig, LabelLine, LabelReport};
pub use revise::{revise, ReviseConfig, Transcript};
