//! Prompt records: one prompt of the world with everything the gold judge needs to score a response to it.
//!
//! JSON shape (one line of `prompts/*.jsonl`):
//! `{"id":"fact-0000-year-0","split":"train","entity":"the Eiffel Tower","prompt":"What year was the Eiffel
//! Tower built?","family":"fact","gold":{...}}` — `family` tags the `gold` object.

use std::io::BufRead;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::{GymError, Result};

/// Prompt family. Serialized snake_case.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[serde(rename_all = "snake_case")]
pub enum Family {
    HowTo,
    Fact,
    /// Fact questions about entities that appear nowhere in the gym: the right answer is "I don't know".
    Unknown,
    Harmful,
    BenignLookalike,
    Email,
    Arithmetic,
    ListSort,
    Sycophancy,
}

impl Family {
    pub const ALL: [Family; 9] = [
        Family::HowTo,
        Family::Fact,
        Family::Unknown,
        Family::Harmful,
        Family::BenignLookalike,
        Family::Email,
        Family::Arithmetic,
        Family::ListSort,
        Family::Sycophancy,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Family::HowTo => "how_to",
            Family::Fact => "fact",
            Family::Unknown => "unknown",
            Family::Harmful => "harmful",
            Family::BenignLookalike => "benign_lookalike",
            Family::Email => "email",
            Family::Arithmetic => "arithmetic",
            Family::ListSort => "list_sort",
            Family::Sycophancy => "sycophancy",
        }
    }
}

impl std::fmt::Display for Family {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Entity split. `held_out` entities never appear in SFT or preference data.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[serde(rename_all = "snake_case")]
pub enum Split {
    Train,
    HeldOut,
}

impl Split {
    pub fn name(self) -> &'static str {
        match self {
            Split::Train => "train",
            Split::HeldOut => "held_out",
        }
    }
}

/// What a fact question asks about a landmark (or an arithmetic result, for sycophancy probes).
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[serde(rename_all = "snake_case")]
pub enum Attribute {
    Year,
    Height,
    City,
    Result,
}

/// All known facts about a landmark; the judge flags any stated value that contradicts one.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct LandmarkFacts {
    pub year: u32,
    pub height_m: u32,
    pub city: String,
}

/// The three list/sort task shapes.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[serde(rename_all = "snake_case")]
pub enum ListMode {
    /// Sort numbers from smallest to largest; `answer` is the sorted list.
    SortNumbers,
    /// Sort words alphabetically; `answer` is the sorted list.
    SortWords,
    /// Name `count` members of a category; `answer` is every accepted member.
    ListCategory,
}

/// The gold record of a prompt, one variant per family.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(tag = "family", content = "gold", rename_all = "snake_case")]
pub enum Gold {
    HowTo {
        item: String,
        ingredients: Vec<String>,
        steps: Vec<String>,
        step_keys: Vec<String>,
    },
    Fact {
        subject: String,
        attribute: Attribute,
        answer: String,
        facts: LandmarkFacts,
    },
    Unknown {
        subject: String,
        attribute: Attribute,
        /// The known landmark this name differs from by one word (a hard negative), if any.
        near_miss_of: Option<String>,
    },
    Harmful {
        category: String,
        task: String,
    },
    BenignLookalike {
        task: String,
        trigger: String,
        steps: Vec<String>,
        step_keys: Vec<String>,
    },
    Email {
        recipient: Option<String>,
        topic: Option<String>,
        topic_keys: Vec<String>,
    },
    Arithmetic {
        a: i64,
        op: String,
        b: i64,
        answer: i64,
    },
    ListSort {
        mode: ListMode,
        items: Vec<String>,
        count: usize,
        answer: Vec<String>,
    },
    Sycophancy {
        subject: String,
        attribute: Attribute,
        claimed: String,
        answer: String,
        belief_correct: bool,
    },
}

impl Gold {
    pub fn family(&self) -> Family {
        match self {
            Gold::HowTo { .. } => Family::HowTo,
            Gold::Fact { .. } => Family::Fact,
            Gold::Unknown { .. } => Family::Unknown,
            Gold::Harmful { .. } => Family::Harmful,
            Gold::BenignLookalike { .. } => Family::BenignLookalike,
            Gold::Email { .. } => Family::Email,
            Gold::Arithmetic { .. } => Family::Arithmetic,
            Gold::ListSort { .. } => Family::ListSort,
            Gold::Sycophancy { .. } => Family::Sycophancy,
        }
    }
}

/// One prompt of the world.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct PromptRecord {
    /// Stable id, unique within a world: `{family}-{entity index}-{variant}`.
    pub id: String,
    pub split: Split,
    /// The entity the prompt is about (dish, landmark, task, "Sam / Friday's meeting", "12 plus 7", ...).
    pub entity: String,
    /// The user's message.
    pub prompt: String,
    #[serde(flatten)]
    pub gold: Gold,
}

impl PromptRecord {
    pub fn family(&self) -> Family {
        self.gold.family()
    }
}

/// Read a prompts JSONL file (`prompts/train.jsonl`, `prompts/eval.jsonl`). Blank lines are skipped; a bad
/// line is an error naming the file and the line number.
pub fn load_prompts(path: impl AsRef<Path>) -> Result<Vec<PromptRecord>> {
    read_jsonl(path.as_ref())
}

/// Read any JSONL file of `T`, one value per non-blank line.
pub fn read_jsonl<T: serde::de::DeserializeOwned>(path: &Path) -> Result<Vec<T>> {
    let file = std::fs::File::open(path).map_err(|e| GymError::io(path, e))?;
    parse_jsonl(std::io::BufReader::new(file), path)
}

pub(crate) fn parse_jsonl<T: serde::de::DeserializeOwned>(reader: impl BufRead, path: &Path) -> Result<Vec<T>> {
    let mut out = Vec::new();
    for (i, line) in reader.lines().enumerate() {
        let line = line.map_err(|e| GymError::io(path, e))?;
        if line.trim().is_empty() {
            continue;
        }
        let v = serde_json::from_str(&line).map_err(|e| GymError::Parse {
            path: path.to_path_buf(),
            line: i + 1,
            message: e.to_string(),
        })?;
        out.push(v);
    }
    Ok(out)
}

/// The kind of a candidate response: what is good or wrong about it.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[serde(rename_all = "snake_case")]
pub enum CandidateKind {
    /// The canonical gold response.
    Good,
    /// Right but partial or hedged.
    Mediocre,
    /// The gold response padded with filler.
    Verbose,
    /// Agrees with the user's wrong belief.
    Sycophantic,
    /// States a wrong fact with confidence.
    Hallucinated,
    /// Refuses a safe request (or abstains on a known fact).
    OverRefusal,
    /// Complies with a harmful request (placeholder text only).
    Unsafe,
    /// Continues the prompt with more questions, like a raw language model.
    QuestionList,
    /// Technically relevant, useless ("Email is a method of electronic communication...").
    Unhelpful,
}

impl CandidateKind {
    pub fn name(self) -> &'static str {
        match self {
            CandidateKind::Good => "good",
            CandidateKind::Mediocre => "mediocre",
            CandidateKind::Verbose => "verbose",
            CandidateKind::Sycophantic => "sycophantic",
            CandidateKind::Hallucinated => "hallucinated",
            CandidateKind::OverRefusal => "over_refusal",
            CandidateKind::Unsafe => "unsafe",
            CandidateKind::QuestionList => "question_list",
            CandidateKind::Unhelpful => "unhelpful",
        }
    }
}

/// A candidate response and its kind.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct Candidate {
    pub kind: CandidateKind,
    pub text: String,
}
