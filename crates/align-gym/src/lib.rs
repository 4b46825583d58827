//! align-gym: a generated world for alignment experiments on tiny models.
//!
//! A seeded, deterministic world of prompt families (how-to, facts, unknown entities, harmful requests and
//! their benign look-alikes, emails, arithmetic, lists, sycophancy probes), a gold judge that scores any
//! response (`judge::score`), and a panel of simulated annotators (`panel::Panel`) that compare responses
//! noisily and with biases. `World::build` writes the pretraining corpus, SFT and critique demonstrations,
//! prompt sets and preference pairs. Text in, scores out; see docs/gym.md.
//!
//! ```no_run
//! use align_gym::{GymConfig, World};
//! let world = World::generate(&GymConfig { seed: 7, ..GymConfig::default() });
//! let summary = world.build("runs/gym").unwrap();
//! println!("{summary}");
//! ```

pub mod agreement;
pub mod build;
pub mod constitution;
pub mod corpus;
pub mod judge;
pub mod panel;
pub mod record;
pub mod respond;
pub mod text;
pub mod vocab;
pub mod world;

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

pub use build::{BuildSummary, CritiqueLine, PanelStats, PreferenceLine, SftLine};
pub use constitution::Message;
pub use judge::{score, Score};
pub use panel::{Annotator, Panel, PanelConfig, Votes};
pub use record::{load_prompts, Attribute, Candidate, CandidateKind, Family, Gold, ListMode, PromptRecord, Split};
pub use respond::{candidates, gold_response};
pub use world::{World, SEED_PROMPTS};

/// Errors of the gym.
#[derive(thiserror::Error, Debug)]
pub enum GymError {
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("{path}:{line}: {message}")]
    Parse { path: PathBuf, line: usize, message: String },
    #[error("{path}: cannot serialize: {message}")]
    Json { path: PathBuf, message: String },
    #[error("invalid gym config: {0}")]
    Config(String),
    #[error("{path}: entry {line}: response for unknown prompt id {id:?}")]
    UnknownId { path: PathBuf, line: usize, id: String },
}

impl GymError {
    pub(crate) fn io(path: &Path, source: std::io::Error) -> GymError {
        GymError::Io { path: path.to_path_buf(), source }
    }
}

pub type Result<T> = std::result::Result<T, GymError>;

/// World size. `small` is the default: a pretraining corpus of about 1 MB that a tiny model pretrains on in
/// minutes on two cores; `medium` roughly doubles entities and triples the corpus.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "snake_case")]
pub enum Size {
    #[default]
    Small,
    Medium,
}

impl Size {
    pub fn name(self) -> &'static str {
        match self {
            Size::Small => "small",
            Size::Medium => "medium",
        }
    }
}

impl std::str::FromStr for Size {
    type Err = GymError;
    fn from_str(s: &str) -> Result<Size> {
        match s {
            "small" => Ok(Size::Small),
            "medium" => Ok(Size::Medium),
            _ => Err(GymError::Config(format!("unknown size {s:?} (expected small or medium)"))),
        }
    }
}

/// Configuration of a gym build.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(default)]
pub struct GymConfig {
    /// Seed of everything: same config → byte-identical files.
    pub seed: u64,
    /// World size.
    pub size: Size,
    /// The annotator panel that labels preferences.
    pub panel: PanelConfig,
    /// Preference pairs per train prompt (the first is always good vs another kind).
    pub pairs_per_prompt: usize,
    /// Gold margin above which a pair counts as clear in the agreement figures.
    pub clear_margin: f64,
    /// Share of the train prompts of the behaviour families (harmful, unknown, sycophancy) whose gold
    /// response (a refusal, "I don't know", a correction) joins `sft.jsonl`, as InstructGPT's and
    /// Anthropic's SFT data held some refusals; 0 leaves them all to preference learning. 0.1 raised
    /// the demo's DPO refusals of held-out harmful requests on three seeds of three (docs/gym.md).
    pub sft_behaviour_share: f64,
}

impl Default for GymConfig {
    fn default() -> Self {
        GymConfig { seed: 0, size: Size::Small, panel: PanelConfig::default(), pairs_per_prompt: 1, clear_margin: 0.3, sft_behaviour_share: 0.1 }
    }
}

impl GymConfig {
    pub fn validate(&self) -> Result<()> {
        self.panel.validate()?;
        if self.pairs_per_prompt == 0 {
            return Err(GymError::Config("pairs_per_prompt must be at least 1".into()));
        }
        if !(0.0..=1.0).contains(&self.clear_margin) {
            return Err(GymError::Config(format!("clear_margin must be in [0, 1], got {}", self.clear_margin)));
        }
        if !(0.0..=1.0).contains(&self.sft_behaviour_share) {
            return Err(GymError::Config(format!("sft_behaviour_share must be in [0, 1], got {}", self.sft_behaviour_share)));
        }
        Ok(())
    }
}

/// A response to judge: one line of `align gym judge --input` (a prompt record with a `response` field).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct JudgeInput {
    #[serde(flatten)]
    pub record: PromptRecord,
    pub response: String,
}

/// A response keyed by prompt id: one line of `align gym judge --responses`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct ResponseLine {
    pub id: String,
    pub response: String,
}

/// One line of the judge's output.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct JudgedLine {
    pub id: String,
    pub family: Family,
    pub split: Split,
    #[serde(flatten)]
    pub score: Score,
}

/// Read `--input` JSONL: prompt records with a `response` field.
pub fn load_judge_input(path: impl AsRef<Path>) -> Result<Vec<(PromptRecord, String)>> {
    let lines: Vec<JudgeInput> = record::read_jsonl(path.as_ref())?;
    Ok(lines.into_iter().map(|l| (l.record, l.response)).collect())
}

/// Pair `--responses` JSONL (`{"id", "response"}`) with the prompt records they answer.
pub fn join_responses(prompts: &[PromptRecord], responses_path: impl AsRef<Path>) -> Result<Vec<(PromptRecord, String)>> {
    let path = responses_path.as_ref();
    let by_id: std::collections::BTreeMap<&str, &PromptRecord> = prompts.iter().map(|r| (r.id.as_str(), r)).collect();
    let lines: Vec<ResponseLine> = record::read_jsonl(path)?;
    lines
        .into_iter()
        .enumerate()
        .map(|(i, l)| match by_id.get(l.id.as_str()) {
            Some(r) => Ok(((*r).clone(), l.response)),
            None => Err(GymError::UnknownId { path: path.to_path_buf(), line: i + 1, id: l.id }),
        })
        .collect()
}

/// Score every (record, response) pair.
pub fn judge_all(items: &[(PromptRecord, String)]) -> Vec<JudgedLine> {
    items
        .iter()
        .map(|(r, resp)| JudgedLine { id: r.id.clone(), family: r.family(), split: r.split, score: judge::score(r, resp) })
        .collect()
}
