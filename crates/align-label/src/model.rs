//! The vocabulary of the app: verdicts, strengths, axes, roles, and the records that pass between
//! the database, the HTTP API and the export.
//!
//! A *comparison* is a pair of responses to one prompt, stored in a fixed order (`first`,
//! `second`). Each annotator sees it as A and B in an order drawn at random when it is assigned
//! (`swapped`), so what they click (A/B) is translated to the stored order once, here.

use align_data::Message;
use serde::{Deserialize, Serialize};

/// What an annotator clicked: response A, response B, a tie, or both bad.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Choice {
    A,
    B,
    #[serde(rename = "tie")]
    Tie,
    #[serde(rename = "both_bad")]
    BothBad,
}

/// A choice in the stored order of the comparison: which of `first`/`second` won.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    First,
    Second,
    Tie,
    BothBad,
}

impl Verdict {
    pub const ALL: [Verdict; 4] = [Verdict::First, Verdict::Second, Verdict::Tie, Verdict::BothBad];

    /// The stored verdict of a displayed choice; `swapped` means A showed the `second` response.
    pub fn from_choice(c: Choice, swapped: bool) -> Verdict {
        match (c, swapped) {
            (Choice::A, false) | (Choice::B, true) => Verdict::First,
            (Choice::B, false) | (Choice::A, true) => Verdict::Second,
            (Choice::Tie, _) => Verdict::Tie,
            (Choice::BothBad, _) => Verdict::BothBad,
        }
    }

    /// The choice as the annotator saw it (inverse of [`Verdict::from_choice`]).
    pub fn to_choice(self, swapped: bool) -> Choice {
        match (self, swapped) {
            (Verdict::First, false) | (Verdict::Second, true) => Choice::A,
            (Verdict::Second, false) | (Verdict::First, true) => Choice::B,
            (Verdict::Tie, _) => Choice::Tie,
            (Verdict::BothBad, _) => Choice::BothBad,
        }
    }

    /// The database spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::First => "first",
            Verdict::Second => "second",
            Verdict::Tie => "tie",
            Verdict::BothBad => "both_bad",
        }
    }

    pub fn parse(s: &str) -> Option<Verdict> {
        Verdict::ALL.into_iter().find(|v| v.as_str() == s)
    }

    /// Index of the category, for the agreement statistics.
    pub fn index(self) -> usize {
        self as usize
    }
}

/// How much better the chosen response is (optional).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Strength {
    Slightly,
    Clearly,
}

impl Strength {
    pub fn as_str(self) -> &'static str {
        match self {
            Strength::Slightly => "slightly",
            Strength::Clearly => "clearly",
        }
    }

    pub fn parse(s: &str) -> Option<Strength> {
        match s {
            "slightly" => Some(Strength::Slightly),
            "clearly" => Some(Strength::Clearly),
            _ => None,
        }
    }
}

/// Per-axis choices (helpful, honest, harmless); each optional, A/B/tie as displayed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Axes<T> {
    pub helpful: Option<T>,
    pub honest: Option<T>,
    pub harmless: Option<T>,
}

impl<T> Default for Axes<T> {
    fn default() -> Self {
        Axes { helpful: None, honest: None, harmless: None }
    }
}

impl<T: Copy> Axes<T> {
    pub fn map<U>(&self, f: impl Fn(T) -> U) -> Axes<U> {
        Axes {
            helpful: self.helpful.map(&f),
            honest: self.honest.map(&f),
            harmless: self.harmless.map(&f),
        }
    }
}

/// Account kinds: an admin sees everything; an annotator only their own queue and labels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    Admin,
    Annotator,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Annotator => "annotator",
        }
    }

    pub fn parse(s: &str) -> Option<Role> {
        match s {
            "admin" => Some(Role::Admin),
            "annotator" => Some(Role::Annotator),
            _ => None,
        }
    }
}

/// An account as the server sees it after authentication.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Annotator {
    pub id: i64,
    pub name: String,
    pub role: Role,
}

/// A project: a set of comparisons, guidelines, and how many annotators label each comparison.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Project {
    pub id: i64,
    pub name: String,
    pub guidelines: String,
    /// Annotators per comparison (gold check items go to everyone).
    pub overlap: u32,
}

/// One prompt with its candidate responses, as imported; every pair of responses becomes a
/// comparison.
#[derive(Debug, Clone, PartialEq)]
pub struct NewItem {
    /// The source's id (`id` field) or `line-N`.
    pub source_id: String,
    pub prompt: Vec<Message>,
    pub responses: Vec<String>,
    /// Index of the response known to be best: the comparisons that contain it become gold
    /// check items.
    pub gold: Option<usize>,
}

/// A label as the browser submits it (A/B as displayed).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LabelInput {
    pub assignment: i64,
    pub choice: Choice,
    #[serde(default)]
    pub strength: Option<Strength>,
    #[serde(default)]
    pub axes: Axes<Choice>,
    #[serde(default)]
    pub comment: String,
    /// Milliseconds the annotator spent on the comparison, as measured by the page.
    #[serde(default)]
    pub ms: Option<u64>,
}

/// Longest comment accepted, in characters.
pub const MAX_COMMENT_CHARS: usize = 4000;

/// One stored vote, in the comparison's order: the input of agreement statistics and export.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Vote {
    pub comparison: i64,
    pub annotator: i64,
    pub annotator_name: String,
    pub verdict: Verdict,
    pub strength: Option<Strength>,
    pub axes: Axes<Verdict>,
    pub comment: String,
    /// Whether the annotator saw `second` as A.
    pub swapped: bool,
}

/// A comparison with its texts, for export.
#[derive(Debug, Clone, PartialEq)]
pub struct ComparisonText {
    pub id: i64,
    pub source_id: String,
    pub prompt: Vec<Message>,
    pub first: String,
    pub second: String,
    pub gold: Option<Verdict>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn choice_and_verdict_round_trip_in_both_orders() {
        for c in [Choice::A, Choice::B, Choice::Tie, Choice::BothBad] {
            for swapped in [false, true] {
                assert_eq!(Verdict::from_choice(c, swapped).to_choice(swapped), c);
            }
        }
        assert_eq!(Verdict::from_choice(Choice::A, true), Verdict::Second);
        assert_eq!(Verdict::from_choice(Choice::B, true), Verdict::First);
        assert_eq!(Verdict::parse("both_bad"), Some(Verdict::BothBad));
        assert_eq!(Verdict::parse("A"), None);
    }

    #[test]
    fn label_input_rejects_unknown_fields_and_bad_values() {
        let ok: LabelInput = serde_json::from_str(
            r#"{"assignment":3,"choice":"B","strength":"clearly","axes":{"honest":"tie"},"comment":"x"}"#,
        )
        .unwrap();
        assert_eq!(ok.choice, Choice::B);
        assert_eq!(ok.axes.honest, Some(Choice::Tie));
        assert!(serde_json::from_str::<LabelInput>(r#"{"assignment":3,"choice":"C"}"#).is_err());
        assert!(serde_json::from_str::<LabelInput>(r#"{"assignment":3,"choice":"A","sql":"x"}"#).is_err());
    }
}
