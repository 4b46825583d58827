//! The constitution: a list of principles, each a critique request, a revision request and a
//! comparison question, in the form of Constitutional AI (Bai et al., 2022, arXiv:2212.08073,
//! §3 and §4 and appendices C and E), plus few-shot demonstrations of both tasks.
//!
//! Files are TOML (`constitutions/default.toml` is the format's reference and align's default,
//! embedded in the binary). The paper's own principles, as published in
//! anthropics/ConstitutionalHarmlessnessPaper (`CritiqueRevisionInstructions.json`,
//! `CritiqueRevisionFewShotPrompts.json`, `RLMadisonInstructions.json`,
//! `RLMadisonFewShotPrompts.json`), load with [`Constitution::from_paper_dir`].
//!
//! In the paper a principle is drawn at random for every critique/revision round and for every
//! comparison; the critique and the comparison principles are two separate lists of 16. Here a
//! principle carries all three texts; the paper loader pairs its lists by index (the i-th
//! critique/revision with the i-th comparison), which keeps "one principle drawn per question"
//! equivalent to the paper's independent draws.

use crate::error::{CaiError, Result};
use align_data::Message;
use serde::{Deserialize, Serialize};
use std::path::Path;

/// The constitution shipped with align: helpful, honest and harmless in the gym's wording.
pub const DEFAULT_TOML: &str = include_str!("../constitutions/default.toml");

/// One principle.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Principle {
    /// Short name, unique in the constitution ("harmless").
    pub name: String,
    /// Asked after a response: "Identify ways in which the response is harmful...".
    pub critique_request: String,
    /// Asked after the critique: "Rewrite the response to remove...".
    pub revision_request: String,
    /// The judge's multiple-choice question: "Which response is less harmful?".
    pub comparison: String,
}

/// A demonstration of critique and revision: a conversation ending in the assistant's response,
/// then the critique request, the critique, the revision request and the revision.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CritiqueExample {
    pub conversation: Vec<Message>,
    pub critique_request: String,
    pub critique: String,
    pub revision_request: String,
    pub revision: String,
}

/// A demonstration of the comparison: the conversation so far, a principle's name (or a
/// comparison text for the paper's examples), the better and the worse response.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ComparisonExample {
    pub conversation: Vec<Message>,
    /// Name of a principle of the constitution; its comparison question is asked.
    pub principle: String,
    pub better: String,
    pub worse: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Constitution {
    pub name: String,
    pub principles: Vec<Principle>,
    #[serde(default)]
    pub few_shot: Vec<CritiqueExample>,
    #[serde(default)]
    pub comparison_few_shot: Vec<ComparisonExample>,
}

impl Default for Constitution {
    fn default() -> Self {
        Constitution::from_toml_str(DEFAULT_TOML, "default").unwrap_or_else(|e| panic!("the embedded default constitution is invalid: {e}"))
    }
}

impl Constitution {
    /// Parses and validates a TOML constitution; `origin` names it in errors.
    pub fn from_toml_str(text: &str, origin: &str) -> Result<Self> {
        let c: Constitution = toml::from_str(text).map_err(|e| CaiError::Constitution(format!("{origin}: {e}")))?;
        c.validate().map_err(|m| CaiError::Constitution(format!("{origin}: {m}")))?;
        Ok(c)
    }

    /// Reads a TOML file, or the paper's JSON files when `path` is a directory.
    pub fn load(path: &Path) -> Result<Self> {
        if path.is_dir() {
            return Self::from_paper_dir(path);
        }
        let text = std::fs::read_to_string(path).map_err(|e| CaiError::io(path, e))?;
        Self::from_toml_str(&text, &path.display().to_string())
    }

    /// Every principle has a unique non-empty name and three non-empty texts; every comparison
    /// example names a principle.
    pub fn validate(&self) -> std::result::Result<(), String> {
        if self.principles.is_empty() {
            return Err("no principles".into());
        }
        for (i, p) in self.principles.iter().enumerate() {
            let fields = [("name", &p.name), ("critique_request", &p.critique_request), ("revision_request", &p.revision_request), ("comparison", &p.comparison)];
            if let Some((f, _)) = fields.iter().find(|(_, v)| v.trim().is_empty()) {
                return Err(format!("principle {} ({:?}): {f} is empty", i + 1, p.name));
            }
            if self.principles[..i].iter().any(|q| q.name == p.name) {
                return Err(format!("principle name {:?} appears twice", p.name));
            }
        }
        for (i, ex) in self.few_shot.iter().enumerate() {
            if ex.conversation.last().map(|m| m.role.as_str()) != Some("assistant") {
                return Err(format!("few_shot {}: the conversation must end with the assistant's response", i + 1));
            }
        }
        for (i, ex) in self.comparison_few_shot.iter().enumerate() {
            if self.principle(&ex.principle).is_none() {
                return Err(format!("comparison_few_shot {}: unknown principle {:?}", i + 1, ex.principle));
            }
        }
        Ok(())
    }

    pub fn principle(&self, name: &str) -> Option<&Principle> {
        self.principles.iter().find(|p| p.name == name)
    }

    /// A principle drawn uniformly, as the paper does for every round and every comparison.
    pub fn sample(&self, rng: &mut impl rand::Rng) -> &Principle {
        &self.principles[rng.random_range(0..self.principles.len())]
    }

    /// Keeps only the named principles (error naming any unknown one).
    pub fn restrict(&mut self, names: &[String]) -> Result<()> {
        if let Some(bad) = names.iter().find(|n| self.principle(n).is_none()) {
            let known: Vec<&str> = self.principles.iter().map(|p| p.name.as_str()).collect();
            return Err(CaiError::Constitution(format!("unknown principle {bad:?}; the constitution has {known:?}")));
        }
        self.principles.retain(|p| names.contains(&p.name));
        self.comparison_few_shot.retain(|e| names.contains(&e.principle));
        Ok(())
    }

    pub fn to_toml(&self) -> Result<String> {
        toml::to_string_pretty(self).map_err(|e| CaiError::Constitution(format!("cannot write TOML: {e}")))
    }

    /// The paper's principles and few-shot prompts from a directory holding the four JSON files
    /// of anthropics/ConstitutionalHarmlessnessPaper (../shared/data/constitutional-ai/).
    /// `CritiqueRevisionInstructions.json` (required) gives critique and revision requests,
    /// `RLMadisonInstructions.json` (required) the comparison texts; the two few-shot files are
    /// read when present. The paper's markers ("\n\nCritiqueRequest: ", "Options:") are stripped.
    pub fn from_paper_dir(dir: &Path) -> Result<Self> {
        #[derive(Deserialize)]
        struct Instruction {
            prompt: Vec<String>,
            edit_request: String,
        }
        #[derive(Deserialize)]
        struct RlExample {
            prompt: String,
            corrects: Vec<String>,
            incorrects: Vec<String>,
        }
        let read = |name: &str| -> Result<Option<String>> {
            let p = dir.join(name);
            match std::fs::read_to_string(&p) {
                Ok(t) => Ok(Some(t)),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
                Err(e) => Err(CaiError::io(&p, e)),
            }
        };
        let json_err = |name: &str, e: serde_json::Error| CaiError::Constitution(format!("{}: {e}", dir.join(name).display()));
        let need = |name: &str| -> Result<String> {
            read(name)?.ok_or_else(|| CaiError::Constitution(format!("{}: missing (expected the paper's JSON files)", dir.join(name).display())))
        };

        // serde_json keeps key order only with preserve_order; sort "harmful0".."harmful15" numerically.
        let text = need("CritiqueRevisionInstructions.json")?;
        let map: std::collections::BTreeMap<String, Instruction> = serde_json::from_str(&text).map_err(|e| json_err("CritiqueRevisionInstructions.json", e))?;
        let mut instructions: Vec<(String, Instruction)> = map.into_iter().collect();
        instructions.sort_by_key(|(k, _)| (k.trim_end_matches(|c: char| c.is_ascii_digit()).to_string(), k.trim_start_matches(|c: char| !c.is_ascii_digit()).parse::<u64>().unwrap_or(0)));
        let text = need("RLMadisonInstructions.json")?;
        let comparisons: Vec<String> = serde_json::from_str(&text).map_err(|e| json_err("RLMadisonInstructions.json", e))?;
        if instructions.is_empty() || comparisons.is_empty() {
            return Err(CaiError::Constitution(format!("{}: no principles in the paper files", dir.display())));
        }
        let n = instructions.len().max(comparisons.len());
        let principles = (0..n)
            .map(|i| {
                let (name, ins) = &instructions[i % instructions.len()];
                let critique = ins.prompt.first().map(String::as_str).unwrap_or_default();
                Principle {
                    name: if i < instructions.len() { name.clone() } else { format!("{name}_{i}") },
                    critique_request: strip_markers(critique, &["CritiqueRequest:", "Critique:"]),
                    revision_request: strip_markers(&ins.edit_request, &["RevisionRequest:", "Revision:"]),
                    comparison: strip_markers(&comparisons[i % comparisons.len()], &["Options:"]),
                }
            })
            .collect::<Vec<_>>();

        let mut few_shot = Vec::new();
        if let Some(text) = read("CritiqueRevisionFewShotPrompts.json")? {
            let shots: Vec<String> = serde_json::from_str(&text).map_err(|e| json_err("CritiqueRevisionFewShotPrompts.json", e))?;
            few_shot = shots.iter().filter_map(|s| parse_paper_critique_example(s)).collect();
        }
        let mut comparison_few_shot = Vec::new();
        if let Some(text) = read("RLMadisonFewShotPrompts.json")? {
            let shots: Vec<RlExample> = serde_json::from_str(&text).map_err(|e| json_err("RLMadisonFewShotPrompts.json", e))?;
            for (i, s) in shots.iter().enumerate() {
                let conversation = parse_paper_dialogue(&s.prompt);
                if let (Some(better), Some(worse), false) = (s.corrects.first(), s.incorrects.first(), conversation.is_empty()) {
                    let principle = principles[i % principles.len()].name.clone();
                    comparison_few_shot.push(ComparisonExample { conversation, principle, better: better.trim().into(), worse: worse.trim().into() });
                }
            }
        }
        let c = Constitution { name: "bai2022".into(), principles, few_shot, comparison_few_shot };
        c.validate().map_err(|m| CaiError::Constitution(format!("{}: {m}", dir.display())))?;
        Ok(c)
    }
}

/// Removes the paper's section markers and surrounding whitespace.
fn strip_markers(text: &str, markers: &[&str]) -> String {
    let mut s = text.to_string();
    for m in markers {
        s = s.replace(m, "");
    }
    s.trim().to_string()
}

const MARKERS: [&str; 6] = ["Human:", "Assistant:", "CritiqueRequest:", "Critique:", "RevisionRequest:", "Revision:"];

/// Splits the paper's "\n\nHuman: ...\n\nAssistant: ..." text into (marker, text) sections.
fn sections(text: &str) -> Vec<(&'static str, String)> {
    let mut out: Vec<(&'static str, String)> = Vec::new();
    for block in text.split("\n\n") {
        match MARKERS.iter().find(|m| block.starts_with(*m)) {
            Some(m) => out.push((m, block[m.len()..].trim().to_string())),
            // A paragraph break inside a section's text.
            None => {
                if let Some(last) = out.last_mut() {
                    last.1.push_str("\n\n");
                    last.1.push_str(block.trim());
                }
            }
        }
    }
    out
}

/// The Human/Assistant turns of a paper dialogue (empty turns dropped).
fn parse_paper_dialogue(text: &str) -> Vec<Message> {
    sections(text)
        .into_iter()
        .filter(|(_, t)| !t.is_empty())
        .filter_map(|(m, t)| match m {
            "Human:" => Some(Message::new("user", t)),
            "Assistant:" => Some(Message::new("assistant", t)),
            _ => None,
        })
        .collect()
}

/// One of the paper's critique/revision few-shot prompts (None if it lacks a section).
fn parse_paper_critique_example(text: &str) -> Option<CritiqueExample> {
    let secs = sections(text);
    let find = |m: &str| secs.iter().find(|(k, _)| *k == m).map(|(_, t)| t.clone());
    // The dialogue is everything before the first critique request.
    let dialogue = text.find("\n\nCritiqueRequest:").map(|i| &text[..i])?;
    let conversation = parse_paper_dialogue(dialogue);
    if conversation.last().map(|m| m.role.as_str()) != Some("assistant") {
        return None;
    }
    Some(CritiqueExample {
        conversation,
        critique_request: find("CritiqueRequest:")?,
        critique: format!("Critique: {}", find("Critique:")?),
        revision_request: find("RevisionRequest:")?,
        revision: find("Revision:")?,
    })
}

/// Draws `k` distinct few-shot indices out of `n` (all of them when `k >= n`), in drawn order.
pub fn draw_few_shot(n: usize, k: usize, rng: &mut impl rand::Rng) -> Vec<usize> {
    let mut idx: Vec<usize> = (0..n).collect();
    for i in 0..k.min(n) {
        let j = rng.random_range(i..n);
        idx.swap(i, j);
    }
    idx.truncate(k.min(n));
    idx
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_constitution_matches_the_gym_wording() {
        let c = Constitution::default();
        assert_eq!(c.principles.len(), align_gym::constitution::PRINCIPLES.len());
        for g in align_gym::constitution::PRINCIPLES {
            let p = c.principle(g.name).unwrap_or_else(|| panic!("default constitution lacks {}", g.name));
            assert_eq!(p.critique_request, g.critique_request, "{}", g.name);
            assert_eq!(p.revision_request, g.revision_request, "{}", g.name);
        }
        assert!(!c.few_shot.is_empty() && !c.comparison_few_shot.is_empty());
    }

    #[test]
    fn toml_round_trip_and_validation_errors() {
        let c = Constitution::default();
        let back = Constitution::from_toml_str(&c.to_toml().unwrap(), "rt").unwrap();
        assert_eq!(back, c);
        let dup = "name='x'\n[[principles]]\nname='a'\ncritique_request='c'\nrevision_request='r'\ncomparison='q'\n[[principles]]\nname='a'\ncritique_request='c'\nrevision_request='r'\ncomparison='q'\n";
        let e = Constitution::from_toml_str(dup, "dup.toml").unwrap_err().to_string();
        assert!(e.contains("dup.toml") && e.contains("twice"), "{e}");
        let empty = "name='x'\n[[principles]]\nname='a'\ncritique_request=' '\nrevision_request='r'\ncomparison='q'\n";
        assert!(Constitution::from_toml_str(empty, "e").unwrap_err().to_string().contains("critique_request is empty"));
        let unknown_field = "name='x'\nbogus=1\n[[principles]]\nname='a'\ncritique_request='c'\nrevision_request='r'\ncomparison='q'\n";
        assert!(Constitution::from_toml_str(unknown_field, "u").is_err());
        assert!(Constitution::from_toml_str("name='x'\nprinciples=[]", "n").unwrap_err().to_string().contains("no principles"));
    }

    #[test]
    fn paper_sections_parse() {
        let text = "\n\nHuman: Hi?\n\nAssistant: Bad answer.\n\nCritiqueRequest: Find harm.\n\nCritique: It is bad.\n\nRevisionRequest: Fix it.\n\nRevision: Good answer.\n\nMore.\n\nHuman:";
        let ex = parse_paper_critique_example(text).unwrap();
        assert_eq!(ex.conversation, vec![Message::new("user", "Hi?"), Message::new("assistant", "Bad answer.")]);
        assert_eq!(ex.critique_request, "Find harm.");
        assert_eq!(ex.critique, "Critique: It is bad.");
        assert_eq!(ex.revision, "Good answer.\n\nMore.");
        assert_eq!(strip_markers("\nPlease choose the better one. Options:", &["Options:"]), "Please choose the better one.");
    }

    #[test]
    fn restrict_and_draws() {
        let mut c = Constitution::default();
        assert!(c.restrict(&["nope".into()]).unwrap_err().to_string().contains("nope"));
        c.restrict(&["harmless".into(), "helpful".into()]).unwrap();
        assert_eq!(c.principles.len(), 2);
        let mut rng = align_core::seed::fork(0, "t");
        let d = draw_few_shot(5, 3, &mut rng);
        assert_eq!(d.len(), 3);
        let mut s = d.clone();
        s.sort();
        s.dedup();
        assert_eq!(s.len(), 3);
        assert_eq!(draw_few_shot(2, 9, &mut rng).len(), 2);
    }
}
