//! On-policy preference pairs: sample the policy's own answers to training prompts and have a
//! labeller (the gym's gold judge, or its panel of simulated annotators) compare them.
//!
//! Why: a PyTorch prototype on the gym found that DPO on offline pairs alone moved log-probs yet
//! changed no greedy answer; pairs whose *rejected* side is what the policy actually says (and
//! whose chosen side is a reference demonstration or the policy's better sample) made refusals
//! and abstentions appear. Each prompt gives `samples_per_prompt` answers; with a reference
//! demonstration for the prompt, each answer is paired with it ("on-policy rejected"), otherwise
//! two answers are paired with each other (best-of-n style). The labeller orders each pair; pairs
//! the gold judge cannot separate (|gold difference| < `min_gold_margin`) are skipped and counted.
//! Output: TRL conversational preference lines with the labelling record (as the gym's
//! `preferences.jsonl`), ready for `align dpo` and `align rm`.

use crate::respond::{respond, PromptStyle};
use crate::{EvalError, Result};
use align_data::formats::{read_examples, Example, ReadOptions, Text};
use align_data::{Message, Tokenizer};
use align_generate::SamplingConfig;
use align_gym::panel::{Panel, PanelConfig};
use align_gym::{judge, PromptRecord};
use align_models::Model;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};
use std::path::Path;

/// Who decides which answer of a pair is better.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Labeler {
    /// The gym's gold judge (a verifiable reward).
    #[default]
    Gold,
    /// The gym's simulated annotator panel; chosen is the majority's pick, `label_prob` their mean
    /// probability.
    Panel,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct OnPolicyConfig {
    /// Answers sampled per prompt.
    pub samples_per_prompt: usize,
    /// Sampling of the answers (temperature 1 by default: on-policy samples, not greedy ones).
    pub sampling: SamplingConfig,
    pub labeler: Labeler,
    /// The panel when `labeler = "panel"` (the gym's default panel).
    pub panel: PanelConfig,
    /// Pairs whose gold scores differ by less are ties: skipped and counted.
    pub min_gold_margin: f64,
    /// At most this many prompts (0 = all), a seeded random subset.
    pub max_prompts: usize,
    /// Prompts per generation batch.
    pub batch_size: usize,
}

impl Default for OnPolicyConfig {
    fn default() -> Self {
        OnPolicyConfig {
            samples_per_prompt: 2,
            sampling: SamplingConfig { temperature: 1.0, max_new_tokens: 64, ..SamplingConfig::default() },
            labeler: Labeler::Gold,
            panel: PanelConfig::default(),
            min_gold_margin: 0.05,
            max_prompts: 0,
            batch_size: 32,
        }
    }
}

/// One labelled on-policy pair.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct OnPolicyLine {
    pub id: String,
    pub family: String,
    pub prompt: Vec<Message>,
    pub chosen: Vec<Message>,
    pub rejected: Vec<Message>,
    /// "policy" or "reference".
    pub chosen_source: String,
    pub rejected_source: String,
    pub gold_chosen: f64,
    pub gold_rejected: f64,
    pub gold_margin: f64,
    /// Per annotator, 1 if it preferred chosen (the gold labeller's single vote is 1).
    pub votes: Vec<u8>,
    pub label_majority: f64,
    pub label_prob: f64,
}

/// What sampling and labelling did.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct OnPolicyReport {
    pub prompts: usize,
    pub samples: usize,
    pub pairs: usize,
    /// Pairs skipped because gold could not separate them.
    pub ties_skipped: usize,
    /// Samples that were empty (no text before EOS), left out of every pair.
    pub empty_samples: usize,
    /// Pairs with a reference demonstration on one side, and how often the reference was chosen.
    pub reference_pairs: usize,
    pub reference_chosen: usize,
    /// Mean gold score of the policy's samples.
    pub mean_sample_gold: f64,
    /// Share of written pairs whose chosen side is better under gold (1 for the gold labeller).
    pub label_gold_agreement: f64,
}

/// Reference demonstrations by prompt text: the assistant reply of `messages` (first user turn
/// → first assistant turn) or `prompt`/`completion` records of any TRL file align reads.
pub fn read_references(path: &Path) -> Result<HashMap<String, String>> {
    let (examples, _) = read_examples(path, &ReadOptions::default())?;
    let text = |t: &Text, role: &str| match t {
        Text::Plain(s) => Some(s.clone()),
        Text::Conversation(m) => m.iter().find(|m| m.role == role).map(|m| m.content.clone()),
    };
    let mut out = HashMap::new();
    for ex in &examples {
        let pair = match ex {
            Example::LanguageModeling { text: t @ Text::Conversation(_) } => text(t, "user").zip(text(t, "assistant")),
            Example::PromptCompletion { prompt, completion } => text(prompt, "user").zip(text(completion, "assistant")),
            _ => None,
        };
        if let Some((p, c)) = pair {
            out.entry(p).or_insert(c);
        }
    }
    Ok(out)
}

/// Samples answers to `records` from `model` (through its chat template), pairs and labels them.
pub fn sample_and_label(
    model: &Model,
    tok: &Tokenizer,
    records: &[PromptRecord],
    references: &HashMap<String, String>,
    cfg: &OnPolicyConfig,
) -> Result<(Vec<OnPolicyLine>, OnPolicyReport)> {
    if cfg.samples_per_prompt == 0 {
        return Err(EvalError::Invalid("samples_per_prompt must be at least 1".into()));
    }
    let records: Vec<PromptRecord> = if cfg.max_prompts > 0 && records.len() > cfg.max_prompts {
        // A seeded random subset, so every family is represented whatever the file order.
        use rand::seq::SliceRandom;
        let mut idx: Vec<usize> = (0..records.len()).collect();
        idx.shuffle(&mut align_core::seed::fork(cfg.sampling.seed, "onpolicy-prompts"));
        idx.truncate(cfg.max_prompts);
        idx.sort_unstable();
        idx.into_iter().map(|i| records[i].clone()).collect()
    } else {
        records.to_vec()
    };
    let records = &records[..];
    let k = cfg.samples_per_prompt;
    // Prompt i's samples are rows i*k .. i*k+k: each row has its own random stream.
    let prompts: Vec<String> = records.iter().flat_map(|r| std::iter::repeat_n(r.prompt.clone(), k)).collect();
    let answers = respond(model, tok, &prompts, PromptStyle::Chat, &cfg.sampling, cfg.batch_size * k)?;
    label_answers(records, &answers, references, cfg)
}

/// The pairing and labelling of [`sample_and_label`], given the sampled answers (`k` per record,
/// in record order).
pub fn label_answers(
    records: &[PromptRecord],
    answers: &[String],
    references: &HashMap<String, String>,
    cfg: &OnPolicyConfig,
) -> Result<(Vec<OnPolicyLine>, OnPolicyReport)> {
    let k = cfg.samples_per_prompt;
    if answers.len() != records.len() * k {
        return Err(EvalError::Invalid(format!("{} answers for {} prompts × {k} samples", answers.len(), records.len())));
    }
    let panel = match cfg.labeler {
        Labeler::Panel => Some(Panel::new(cfg.panel.clone()).map_err(|e| EvalError::Invalid(e.to_string()))?),
        Labeler::Gold => None,
    };
    let mut rng = align_core::seed::fork(cfg.sampling.seed, "onpolicy-panel");
    let mut rep = OnPolicyReport { prompts: records.len(), samples: answers.len(), ..Default::default() };
    let mut gold_sum = 0.0;
    let mut agree = 0usize;
    let mut lines = vec![];
    for (i, rec) in records.iter().enumerate() {
        let mut samples: Vec<(&str, &str)> = answers[i * k..(i + 1) * k].iter().map(|a| ("policy", a.as_str())).collect();
        for (_, a) in &samples {
            gold_sum += judge::score(rec, a).overall;
        }
        // An empty answer cannot be a preference side (align's readers reject empty responses).
        let before = samples.len();
        samples.retain(|(_, a)| !a.trim().is_empty());
        rep.empty_samples += before - samples.len();
        let pairs: Vec<((&str, &str), (&str, &str))> = match references.get(&rec.prompt) {
            Some(r) => samples.iter().map(|s| (("reference", r.as_str()), *s)).collect(),
            None => samples.windows(2).step_by(2).map(|w| (w[0], w[1])).collect(),
        };
        for (j, (a, b)) in pairs.into_iter().enumerate() {
            let (ga, gb) = (judge::score(rec, a.1).overall, judge::score(rec, b.1).overall);
            // Identical answers are no preference, whatever the margin setting.
            if (ga - gb).abs() < cfg.min_gold_margin || a.1.trim() == b.1.trim() {
                rep.ties_skipped += 1;
                continue;
            }
            let (a_wins, votes, prob) = match &panel {
                None => (ga > gb, vec![1u8], 1.0),
                Some(p) => {
                    let v = p.vote_scored(ga, gb, &align_gym::panel::features(a.1, b.1), &mut rng);
                    let a_wins = v.majority_prefers_a();
                    let votes: Vec<u8> = v.prefers_a.iter().map(|&va| (va == a_wins) as u8).collect();
                    let prob = if a_wins { v.mean_prob_a() } else { 1.0 - v.mean_prob_a() };
                    (a_wins, votes, prob)
                }
            };
            let ((c, gc), (r, gr)) = if a_wins { ((a, ga), (b, gb)) } else { ((b, gb), (a, ga)) };
            if a.0 == "reference" {
                rep.reference_pairs += 1;
                rep.reference_chosen += (c.0 == "reference") as usize;
            }
            agree += (gc > gr) as usize;
            let share = votes.iter().map(|&v| v as f64).sum::<f64>() / votes.len() as f64;
            lines.push(OnPolicyLine {
                id: format!("{}-onpolicy-{j}", rec.id),
                family: rec.family().name().to_string(),
                prompt: vec![Message::new("user", rec.prompt.clone())],
                chosen: vec![Message::new("assistant", c.1.to_string())],
                rejected: vec![Message::new("assistant", r.1.to_string())],
                chosen_source: c.0.into(),
                rejected_source: r.0.into(),
                gold_chosen: gc,
                gold_rejected: gr,
                gold_margin: gc - gr,
                votes,
                label_majority: share,
                label_prob: prob,
            });
        }
    }
    rep.pairs = lines.len();
    rep.mean_sample_gold = gold_sum / answers.len().max(1) as f64;
    rep.label_gold_agreement = agree as f64 / lines.len().max(1) as f64;
    Ok((lines, rep))
}

/// Pairs per family, for the report.
pub fn pairs_per_family(lines: &[OnPolicyLine]) -> BTreeMap<String, usize> {
    let mut m = BTreeMap::new();
    for l in lines {
        *m.entry(l.family.clone()).or_default() += 1;
    }
    m
}

#[cfg(test)]
mod tests {
    use super::*;
    use align_gym::{candidates, gold_response, CandidateKind, GymConfig, Split, World};

    /// Two answers per prompt: a flawed candidate and the good one, from the gym itself.
    fn world_answers(n: usize) -> (Vec<PromptRecord>, Vec<String>) {
        let w = World::generate(&GymConfig::default());
        let recs: Vec<PromptRecord> = w.records_in(Split::Train).take(n).cloned().collect();
        let mut rng = align_core::seed::rng(3);
        let answers = recs
            .iter()
            .flat_map(|r| {
                let c = candidates(r, &mut rng);
                let bad = c.iter().find(|c| c.kind != CandidateKind::Good).map(|c| c.text.clone()).unwrap_or_default();
                [bad, gold_response(r)]
            })
            .collect();
        (recs, answers)
    }

    #[test]
    fn gold_labeller_orders_every_pair_by_gold_and_skips_ties() {
        let (recs, answers) = world_answers(60);
        let cfg = OnPolicyConfig::default();
        let (lines, rep) = label_answers(&recs, &answers, &HashMap::new(), &cfg).unwrap();
        assert_eq!(rep.pairs + rep.ties_skipped, 60, "one pair per prompt without references");
        assert!(rep.pairs > 40, "{rep:?}");
        assert!(lines.iter().all(|l| l.gold_chosen - l.gold_rejected >= cfg.min_gold_margin));
        assert_eq!(rep.label_gold_agreement, 1.0);
        assert!(lines.iter().all(|l| l.chosen_source == "policy" && l.votes == vec![1]));
    }

    #[test]
    fn references_give_on_policy_rejected_pairs_and_the_panel_labels_them() {
        let (recs, answers) = world_answers(60);
        let refs: HashMap<String, String> = recs.iter().map(|r| (r.prompt.clone(), gold_response(r))).collect();
        let cfg = OnPolicyConfig { labeler: Labeler::Panel, ..OnPolicyConfig::default() };
        let (lines, rep) = label_answers(&recs, &answers, &refs, &cfg).unwrap();
        // Each prompt: (reference, flawed) and (reference, good = a tie, skipped).
        assert_eq!(rep.pairs + rep.ties_skipped, 120);
        assert!(rep.ties_skipped >= 60, "{rep:?}");
        assert_eq!(rep.reference_pairs, rep.pairs);
        // The panel is noisy but mostly right on clear pairs; its votes are recorded.
        assert!(rep.label_gold_agreement > 0.75 && rep.label_gold_agreement < 1.0 + 1e-9, "{rep:?}");
        assert!(lines.iter().all(|l| l.votes.len() == 5 && l.label_majority >= 0.5));
        let again = label_answers(&recs, &answers, &refs, &cfg).unwrap().0;
        assert_eq!(again, lines, "seeded panel votes are reproducible");
    }

    #[test]
    fn empty_answers_are_counted_and_left_out() {
        let (recs, mut answers) = world_answers(10);
        answers[0] = "  ".into();
        let (lines, rep) = label_answers(&recs, &answers, &HashMap::new(), &OnPolicyConfig::default()).unwrap();
        assert_eq!(rep.empty_samples, 1);
        assert!(lines.iter().all(|l| !l.chosen[0].content.trim().is_empty() && !l.rejected[0].content.trim().is_empty()));
        assert!(lines.iter().all(|l| l.id != format!("{}-onpolicy-0", recs[0].id)), "prompt 0 has one answer left: no pair");
    }

    #[test]
    fn wrong_number_of_answers_is_an_error() {
        let (recs, answers) = world_answers(3);
        let err = label_answers(&recs, &answers[..5], &HashMap::new(), &OnPolicyConfig::default()).unwrap_err();
        assert!(err.to_string().contains("5 answers for 3 prompts"), "{err}");
    }
}
