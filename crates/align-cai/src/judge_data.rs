//! Demonstrations of the judge's task, for models too small to answer a multiple-choice
//! question unprompted.
//!
//! Bai et al. (2022) used a 52B pretrained model as the feedback model: it could already answer
//! "Which response is less harmful? (A) ... (B) ...". align's gym models (a few million
//! parameters, 256 tokens of context) cannot, and few-shot examples do not fit their context;
//! like `critique.jsonl` teaches them the critique format, these conversations teach the
//! comparison format. Each is one question about two gym candidates of different gold quality
//! (a drawn principle, the better one at (A) or (B) with equal odds) answered "(A)" or "(B)" by
//! the gold judge. The local judge's prompt matches it exactly: the question as the user turn,
//! the assistant's turn starting with "(".
//!
//! A judge trained this way is a distilled gold judge on gym candidates, applied to the policy's
//! own samples; it is an upper reference for what AI feedback can give here, not the paper's
//! setting (see docs/cai.md).

use crate::constitution::Constitution;
use crate::judge::question_text;
use crate::revise::SftLine;
use align_data::Message;
use align_gym::PromptRecord;
use rand::Rng as _;

/// Up to `per_prompt` comparison demonstrations per record; pairs whose gold overall scores
/// differ by less than `min_margin` are not used.
pub fn judge_demonstrations(records: &[PromptRecord], constitution: &Constitution, per_prompt: usize, min_margin: f64, seed: u64) -> Vec<SftLine> {
    let mut out = Vec::new();
    for rec in records {
        let mut rng = align_core::seed::fork(seed, &format!("cai/judge-data/{}", rec.id));
        let cands = align_gym::candidates(rec, &mut rng);
        let scored: Vec<(String, f64)> = cands.into_iter().map(|c| {
            let s = align_gym::score(rec, &c.text).overall;
            (c.text, s)
        }).collect();
        let mut pairs: Vec<(usize, usize)> = Vec::new();
        for i in 0..scored.len() {
            for j in 0..scored.len() {
                if scored[i].1 - scored[j].1 >= min_margin.max(1e-9) {
                    pairs.push((i, j));
                }
            }
        }
        for k in 0..per_prompt.min(pairs.len()) {
            let pick = rng.random_range(k..pairs.len());
            pairs.swap(k, pick);
            let (better, worse) = (&scored[pairs[k].0].0, &scored[pairs[k].1].0);
            let principle = constitution.sample(&mut rng);
            let better_first = rng.random_bool(0.5);
            let (a, b, ans) = if better_first { (better, worse, "(A)") } else { (worse, better, "(B)") };
            let conv = [Message::new("user", rec.prompt.clone())];
            out.push(SftLine {
                id: format!("{}-judge{k}", rec.id),
                family: Some(rec.family().name().to_string()),
                messages: vec![Message::new("user", question_text(&conv, &principle.comparison, a, b)), Message::new("assistant", ans)],
            });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use align_gym::{GymConfig, Split, World};

    #[test]
    fn demonstrations_are_answered_by_gold_and_balanced() {
        let world = World::generate(&GymConfig::default());
        let recs: Vec<PromptRecord> = world.records_in(Split::Train).step_by(10).cloned().collect();
        let c = Constitution::default();
        let lines = judge_demonstrations(&recs, &c, 2, 0.1, 0);
        assert!(lines.len() > recs.len());
        let mut a = 0;
        for l in &lines {
            let q = &l.messages[0].content;
            let ans = &l.messages[1].content;
            a += (ans == "(A)") as usize;
            // Recover the two options and check gold prefers the answered one.
            let opt = |tag: &str, next: &str| q.split(tag).nth(1).unwrap().split(next).next().unwrap().to_string();
            let (oa, ob) = (opt("\n(A) ", "\n(B) "), opt("\n(B) ", "\nThe answer is:"));
            let id = l.id.rsplit_once("-judge").unwrap().0;
            let rec = recs.iter().find(|r| r.id == id).unwrap();
            let (sa, sb) = (align_gym::score(rec, &oa).overall, align_gym::score(rec, &ob).overall);
            assert!(if ans == "(A)" { sa - sb >= 0.1 } else { sb - sa >= 0.1 }, "{q} {ans} {sa} {sb}");
        }
        let share = a as f64 / lines.len() as f64;
        assert!((0.4..0.6).contains(&share), "answer (A) in {share} of demonstrations");
        // Seeded.
        assert_eq!(judge_demonstrations(&recs, &c, 2, 0.1, 0), lines);
    }
}
