//! Export: the votes of each comparison aggregated into one TRL preference row (conversational
//! `prompt` / `chosen` / `rejected`), with the raw votes kept, in the shape of the gym's
//! `preferences.jsonl`, so `align rm` and `align dpo` read it as it is (`prob = "label_prob"` in
//! the field map for a soft label).
//!
//! Each vote is a probability that `first` wins: first clearly (or no strength given) 1, first
//! slightly 0.75, tie 0.5, second slightly 0.25, second 0; a both-bad vote states no preference
//! and only appears in `raw_votes`.
//! - [`Aggregate::Majority`]: a comparison is exported when the plurality of its votes (over
//!   first / second / tie / both bad) is first or second; that one is `chosen`.
//! - [`Aggregate::Soft`]: every comparison with a preference vote is exported; `chosen` is the side
//!   whose mean probability is at least 0.5 (on exactly 0.5, the stored first).
//!
//! In both, `label_prob` is the mean probability that `chosen` wins and `label_majority` the
//! share of all votes that picked `chosen`.

use crate::agreement::plurality;
use crate::model::{ComparisonText, Strength, Verdict, Vote};
use align_data::Message;
use serde::Serialize;
use std::collections::BTreeMap;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Aggregate {
    Majority,
    Soft,
}

/// One vote as exported, in terms of the row's chosen/rejected.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RawVote {
    pub annotator: String,
    /// `chosen`, `rejected`, `tie` or `both_bad`.
    pub choice: &'static str,
    pub strength: Option<Strength>,
    pub helpful: Option<&'static str>,
    pub honest: Option<&'static str>,
    pub harmless: Option<&'static str>,
    pub comment: String,
    /// Which of chosen/rejected the annotator saw as A.
    pub shown_as_a: &'static str,
}

/// One exported line.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ExportRow {
    pub id: String,
    pub comparison: i64,
    pub prompt: Vec<Message>,
    pub chosen: Vec<Message>,
    pub rejected: Vec<Message>,
    /// Per preference vote: the probability it gives `chosen` (1 = chose it clearly).
    pub votes: Vec<f64>,
    pub label_majority: f64,
    pub label_prob: f64,
    /// The gold check answer, when the comparison is one: `chosen` or `rejected`.
    pub gold: Option<&'static str>,
    pub raw_votes: Vec<RawVote>,
}

/// The probability a vote gives `first`, or `None` for both-bad.
pub fn vote_prob(v: Verdict, s: Option<Strength>) -> Option<f64> {
    let win = if s == Some(Strength::Slightly) { 0.75 } else { 1.0 };
    match v {
        Verdict::First => Some(win),
        Verdict::Second => Some(1.0 - win),
        Verdict::Tie => Some(0.5),
        Verdict::BothBad => None,
    }
}

fn round4(x: f64) -> f64 {
    (x * 1e4).round() / 1e4
}

/// Aggregates the votes of each comparison; comparisons without an exportable label are left out.
pub fn aggregate(comparisons: &[ComparisonText], votes: &[Vote], how: Aggregate) -> Vec<ExportRow> {
    let mut by_cmp: BTreeMap<i64, Vec<&Vote>> = BTreeMap::new();
    for v in votes {
        by_cmp.entry(v.comparison).or_default().push(v);
    }
    let mut out = Vec::new();
    for c in comparisons {
        let Some(vs) = by_cmp.get(&c.id) else { continue };
        let probs: Vec<f64> = vs.iter().filter_map(|v| vote_prob(v.verdict, v.strength)).collect();
        if probs.is_empty() {
            continue;
        }
        let p_first = probs.iter().sum::<f64>() / probs.len() as f64;
        let first_wins = match how {
            Aggregate::Majority => {
                let cats: Vec<usize> = vs.iter().map(|v| v.verdict.index()).collect();
                match plurality(&cats, Verdict::ALL.len()).map(|i| Verdict::ALL[i]) {
                    Some(Verdict::First) => true,
                    Some(Verdict::Second) => false,
                    _ => continue,
                }
            }
            Aggregate::Soft => p_first >= 0.5,
        };
        let (winner, chosen, rejected) = if first_wins {
            (Verdict::First, &c.first, &c.second)
        } else {
            (Verdict::Second, &c.second, &c.first)
        };
        // Names of the stored sides from the row's point of view.
        let side = |v: Verdict| -> &'static str {
            match v {
                Verdict::Tie => "tie",
                Verdict::BothBad => "both_bad",
                v if v == winner => "chosen",
                _ => "rejected",
            }
        };
        let to_chosen = |p: f64| if first_wins { p } else { 1.0 - p };
        out.push(ExportRow {
            id: c.source_id.clone(),
            comparison: c.id,
            prompt: c.prompt.clone(),
            chosen: vec![Message::new("assistant", chosen.clone())],
            rejected: vec![Message::new("assistant", rejected.clone())],
            votes: probs.iter().map(|&p| round4(to_chosen(p))).collect(),
            label_majority: round4(vs.iter().filter(|v| v.verdict == winner).count() as f64 / vs.len() as f64),
            label_prob: round4(to_chosen(p_first)),
            gold: c.gold.map(side),
            raw_votes: vs
                .iter()
                .map(|v| RawVote {
                    annotator: v.annotator_name.clone(),
                    choice: side(v.verdict),
                    strength: v.strength,
                    helpful: v.axes.helpful.map(side),
                    honest: v.axes.honest.map(side),
                    harmless: v.axes.harmless.map(side),
                    comment: v.comment.clone(),
                    shown_as_a: if v.swapped { side(Verdict::Second) } else { side(Verdict::First) },
                })
                .collect(),
        });
    }
    out
}

/// The rows as JSONL text.
pub fn to_jsonl(rows: &[ExportRow]) -> String {
    let mut s = String::new();
    for r in rows {
        // Serializing these plain structs cannot fail.
        s.push_str(&serde_json::to_string(r).unwrap_or_default());
        s.push('\n');
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Axes;

    fn cmp(id: i64) -> ComparisonText {
        ComparisonText {
            id,
            source_id: format!("s{id}"),
            prompt: vec![Message::new("user", "q")],
            first: "F".into(),
            second: "S".into(),
            gold: Some(Verdict::Second),
        }
    }

    fn vote(c: i64, who: &str, v: Verdict, s: Option<Strength>) -> Vote {
        Vote {
            comparison: c,
            annotator: who.len() as i64,
            annotator_name: who.into(),
            verdict: v,
            strength: s,
            axes: Axes { helpful: Some(Verdict::Second), honest: None, harmless: Some(Verdict::Tie) },
            comment: "c".into(),
            swapped: true,
        }
    }

    #[test]
    fn majority_and_soft_labels() {
        use Verdict::*;
        let cs = [cmp(1), cmp(2), cmp(3)];
        let votes = vec![
            // 1: second, second (slightly), first → second wins; p(second) = (1 + 0.75 + 0) / 3.
            vote(1, "a", Second, None),
            vote(1, "bb", Second, Some(Strength::Slightly)),
            vote(1, "ccc", First, Some(Strength::Clearly)),
            // 2: first, tie → no plurality: left out of the majority export; soft p(first) = 0.75.
            vote(2, "a", First, None),
            vote(2, "bb", Tie, None),
            // 3: both bad only: never exported.
            vote(3, "a", BothBad, None),
        ];
        let m = aggregate(&cs, &votes, Aggregate::Majority);
        assert_eq!(m.len(), 1);
        let r = &m[0];
        assert_eq!(r.chosen[0].content, "S");
        assert_eq!(r.rejected[0].content, "F");
        assert_eq!(r.votes, vec![1.0, 0.75, 0.0]);
        assert_eq!(r.label_majority, round4(2.0 / 3.0));
        assert_eq!(r.label_prob, round4(1.75 / 3.0));
        assert_eq!(r.gold, Some("chosen"));
        assert_eq!(r.raw_votes[2].choice, "rejected");
        assert_eq!(r.raw_votes[0].helpful, Some("chosen"));
        assert_eq!(r.raw_votes[0].harmless, Some("tie"));
        assert_eq!(r.raw_votes[0].shown_as_a, "chosen", "swapped: A showed the stored second");

        let s = aggregate(&cs, &votes, Aggregate::Soft);
        assert_eq!(s.len(), 2);
        assert_eq!(s[1].chosen[0].content, "F");
        assert_eq!(s[1].label_prob, 0.75);
        assert_eq!(s[1].gold, Some("rejected"));
    }

    /// The exported JSONL reads back through align-data as TRL preference data with the soft label.
    #[test]
    fn export_reads_back_as_trl_preferences() {
        let cs = [cmp(1)];
        let votes = vec![vote(1, "a", Verdict::First, Some(Strength::Slightly))];
        let text = to_jsonl(&aggregate(&cs, &votes, Aggregate::Soft));
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("prefs.jsonl");
        std::fs::write(&path, text).unwrap();
        let mut opts = align_data::ReadOptions::default();
        opts.fields.prob = Some("label_prob".into());
        let (ex, report) = align_data::read_examples(&path, &opts).unwrap();
        assert_eq!(report.kept, 1);
        match &ex[0] {
            align_data::Example::Preference { chosen, prob, .. } => {
                assert_eq!(*prob, Some(0.75));
                assert_eq!(chosen, &align_data::Text::Conversation(vec![Message::new("assistant", "F")]));
            }
            other => panic!("expected a preference example, got {other:?}"),
        }
    }
}
