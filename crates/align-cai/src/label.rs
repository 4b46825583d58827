//! RL-CAI / RLAIF labels (Bai et al., 2022, §4): for each prompt, two responses sampled from the
//! policy; a judge answers the comparison question of a randomly drawn principle, in both
//! orders (position bias cancels); the averaged probability is a soft preference label.
//!
//! Output: TRL conversational preference lines (`prompt`, `chosen`, `rejected`) plus
//! `label_prob` = P(chosen is better) ≥ 0.5 (read by `align rm` and `align dpo` as the soft label),
//! the principle, the per-order probabilities, and gold scores for gym prompts. The file is an
//! [`AppendLog`]: every finished label is appended and fsynced, and a restarted run skips the ids
//! already there. Responses are sampled from per-prompt streams (`2·i` and `2·i + 1` for the
//! `i`-th selected prompt) and principles from `fork(seed, "cai/label/{id}")`, so a resumed run
//! labels the same pairs as an uninterrupted one, and two judges run with the same seed label
//! the same pairs.

use crate::chat::ChatModel;
use crate::constitution::Constitution;
use crate::error::{CaiError, Result};
use crate::judge::{compare_both_orders, Judge};
use crate::prompts::PromptItem;
use crate::resume::AppendLog;
use align_data::Message;
use align_generate::SamplingConfig;
use serde::{Deserialize, Serialize};
use std::collections::HashSet;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LabelConfig {
    /// Sampling of the two responses. Default temperature 1, top-k off, 64 new tokens.
    pub sampling: SamplingConfig,
    /// Prompts per generation batch (the unit of work between appends). Default 16.
    pub batch_size: usize,
    pub seed: u64,
}

impl Default for LabelConfig {
    fn default() -> Self {
        LabelConfig { sampling: SamplingConfig { temperature: 1.0, top_k: 0, max_new_tokens: 64, ..SamplingConfig::default() }, batch_size: 16, seed: 0 }
    }
}

/// One labelled pair.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LabelLine {
    pub id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub family: Option<String>,
    pub prompt: Vec<Message>,
    pub chosen: Vec<Message>,
    pub rejected: Vec<Message>,
    /// The principle whose comparison question was asked.
    pub principle: String,
    pub judge: String,
    /// P(chosen is better), averaged over both orders; ≥ 0.5.
    pub label_prob: f64,
    /// P(chosen is better) when chosen was option (A), and when it was option (B).
    pub p_chosen_as_a: f64,
    pub p_chosen_as_b: f64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gold_chosen: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gold_rejected: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gold_margin: Option<f64>,
}

/// What a labelling run did.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct LabelReport {
    pub prompts: usize,
    /// Prompts already labelled in the output file (skipped).
    pub resumed: usize,
    pub labelled: usize,
    /// Pairs whose two responses were identical (nothing to compare; not written).
    pub identical: usize,
    /// Pairs with an empty response (an empty message is not a valid TRL record; not written).
    pub empty: usize,
    /// Pairs whose judge prompt exceeded the judge's context (not written).
    pub too_long: usize,
    /// Pairs the judge answered with neither option (not written).
    pub unanswered: usize,
}

/// Labels every prompt of `items` whose id is not in `done`, appending each finished label to
/// `log` (progress is logged every 50 labels).
#[allow(clippy::manual_is_multiple_of)] // usize::is_multiple_of needs Rust 1.87; the workspace allows 1.85
pub fn label(
    policy: &ChatModel,
    judge: &mut dyn Judge,
    constitution: &Constitution,
    items: &[PromptItem],
    cfg: &LabelConfig,
    log: &mut AppendLog,
    done: &HashSet<String>,
) -> Result<LabelReport> {
    if constitution.principles.is_empty() {
        return Err(CaiError::Constitution("has no principles".into()));
    }
    let sampling = SamplingConfig { seed: cfg.seed, ..cfg.sampling.clone() };
    let mut rep = LabelReport { prompts: items.len(), ..LabelReport::default() };
    let pending: Vec<usize> = (0..items.len()).filter(|&i| !done.contains(&items[i].id)).collect();
    rep.resumed = items.len() - pending.len();
    let judge_name = judge.name();
    let t0 = std::time::Instant::now();
    for chunk in pending.chunks(cfg.batch_size.max(1)) {
        // Two responses per prompt, each from its own stream.
        let mut convs = Vec::with_capacity(2 * chunk.len());
        let mut streams = Vec::with_capacity(2 * chunk.len());
        for &i in chunk {
            for k in 0..2 {
                convs.push(vec![Message::new("user", items[i].prompt.clone())]);
                streams.push(2 * i as u64 + k);
            }
        }
        let replies = policy.reply(&convs, &sampling, &streams, 2 * cfg.batch_size.max(1))?;
        for (j, &i) in chunk.iter().enumerate() {
            let item = &items[i];
            let (first, second) = (replies[2 * j].clone().unwrap_or_default(), replies[2 * j + 1].clone().unwrap_or_default());
            if first == second {
                rep.identical += 1;
                continue;
            }
            if first.is_empty() || second.is_empty() {
                rep.empty += 1;
                continue;
            }
            let mut rng = align_core::seed::fork(cfg.seed, &format!("cai/label/{}", item.id));
            let principle = constitution.sample(&mut rng);
            let conversation = [Message::new("user", item.prompt.clone())];
            let v = match compare_both_orders(judge, &conversation, principle, &first, &second, item.record.as_ref()) {
                Ok(v) => v,
                Err(CaiError::TooLong(_)) => {
                    rep.too_long += 1;
                    continue;
                }
                Err(CaiError::Unanswered(why)) => {
                    tracing::debug!("{}: {why}", item.id);
                    rep.unanswered += 1;
                    continue;
                }
                Err(e) => return Err(e),
            };
            let (chosen, rejected, p, pa, pb) =
                if v.p_first >= 0.5 { (first, second, v.p_first, v.p_first_as_a, v.p_first_as_b) } else { (second, first, 1.0 - v.p_first, 1.0 - v.p_first_as_b, 1.0 - v.p_first_as_a) };
            let gold = item.record.as_ref().map(|r| (align_gym::score(r, &chosen).overall, align_gym::score(r, &rejected).overall));
            let line = LabelLine {
                id: item.id.clone(),
                family: item.family.clone(),
                prompt: conversation.to_vec(),
                chosen: vec![Message::new("assistant", chosen)],
                rejected: vec![Message::new("assistant", rejected)],
                principle: principle.name.clone(),
                judge: judge_name.clone(),
                label_prob: p,
                p_chosen_as_a: pa,
                p_chosen_as_b: pb,
                gold_chosen: gold.map(|g| g.0),
                gold_rejected: gold.map(|g| g.1),
                gold_margin: gold.map(|g| g.0 - g.1),
            };
            log.append(&line)?;
            rep.labelled += 1;
            if rep.labelled % 50 == 0 {
                tracing::info!("{}/{} labelled ({:.0} s)", rep.labelled, pending.len(), t0.elapsed().as_secs_f64());
            }
        }
    }
    Ok(rep)
}

/// How labels compare with the gold judge.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Agreement {
    /// Labelled pairs with gold scores.
    pub pairs: usize,
    /// Pairs whose |gold margin| ≥ the threshold (gold has a preference).
    pub decided: usize,
    /// Of those, pairs whose chosen side is gold's better one.
    pub agree: usize,
    /// Of those, pairs the judge called a tie (label_prob = 0.5): counted half.
    pub ties: usize,
    /// (agree + ties / 2) / decided.
    pub rate: f64,
    /// Share of all pairs on which both orders picked the same response (position-consistent).
    pub position_consistent: f64,
    pub mean_label_prob: f64,
}

/// Agreement of labels with gold over pairs whose gold scores differ by at least `min_margin`.
pub fn agreement(lines: &[LabelLine], min_margin: f64) -> Agreement {
    let mut a = Agreement::default();
    let (mut consistent, mut prob_sum) = (0usize, 0.0f64);
    for l in lines {
        let Some(m) = l.gold_margin else { continue };
        a.pairs += 1;
        prob_sum += l.label_prob;
        consistent += (l.p_chosen_as_a > 0.5 && l.p_chosen_as_b > 0.5) as usize;
        if m.abs() < min_margin.max(1e-12) {
            continue;
        }
        a.decided += 1;
        if (l.label_prob - 0.5).abs() < 1e-12 {
            a.ties += 1;
        } else if m > 0.0 {
            a.agree += 1;
        }
    }
    if a.decided > 0 {
        a.rate = (a.agree as f64 + 0.5 * a.ties as f64) / a.decided as f64;
    }
    if a.pairs > 0 {
        a.position_consistent = consistent as f64 / a.pairs as f64;
        a.mean_label_prob = prob_sum / a.pairs as f64;
    }
    a
}

/// Reads label lines back (as written by [`label`]); errors name the line.
pub fn read_lines(path: &std::path::Path) -> Result<Vec<LabelLine>> {
    let text = std::fs::read_to_string(path).map_err(|e| CaiError::io(path, e))?;
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, l)| serde_json::from_str(l).map_err(|e| CaiError::Parse { path: path.to_path_buf(), line: i + 1, message: e.to_string() }))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(p: f64, margin: f64, pa: f64, pb: f64) -> LabelLine {
        LabelLine {
            id: format!("{p}-{margin}"),
            family: None,
            prompt: vec![],
            chosen: vec![],
            rejected: vec![],
            principle: "harmless".into(),
            judge: "t".into(),
            label_prob: p,
            p_chosen_as_a: pa,
            p_chosen_as_b: pb,
            gold_chosen: Some(0.5 + margin / 2.0),
            gold_rejected: Some(0.5 - margin / 2.0),
            gold_margin: Some(margin),
        }
    }

    #[test]
    fn agreement_counts() {
        let ls = vec![line(0.9, 0.5, 0.9, 0.9), line(0.7, -0.4, 0.9, 0.5), line(0.5, 0.3, 0.5, 0.5), line(0.8, 0.01, 0.8, 0.8)];
        let a = agreement(&ls, 0.05);
        assert_eq!((a.pairs, a.decided, a.agree, a.ties), (4, 3, 1, 1));
        assert!((a.rate - 0.5).abs() < 1e-12);
        assert!((a.position_consistent - 0.5).abs() < 1e-12);
    }
}
