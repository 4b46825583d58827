//! `World::build`: write every gym file into a directory, atomically, and summarise.
//!
//! Files: `pretrain.txt`, `sft.jsonl`, `critique.jsonl`, `prompts/train.jsonl`, `prompts/eval.jsonl`,
//! `preferences.jsonl` (panel labels), `preferences_single.jsonl` (one noisy annotator, same pairs),
//! `gym_config.json`, `summary.json`.

use std::collections::BTreeMap;
use std::fmt;
use std::io::Write;
use std::path::{Path, PathBuf};

use rand::seq::{IndexedRandom, SliceRandom};
use rand::Rng;
use serde::{Deserialize, Serialize};

use crate::agreement::{fleiss_kappa, krippendorff_alpha};
use crate::constitution::{critique_messages, principle_for, Message};
use crate::corpus;
use crate::judge;
use crate::panel::{features, Panel, Votes};
use crate::record::{CandidateKind, Family, PromptRecord, Split};
use crate::respond::candidates;
use crate::world::{family_rng, World};
use crate::{GymError, Result};

/// One line of `sft.jsonl` (TRL conversational language modelling).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct SftLine {
    pub id: String,
    pub family: Family,
    pub messages: Vec<Message>,
}

/// One line of `critique.jsonl`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct CritiqueLine {
    pub id: String,
    pub family: Family,
    pub principle: String,
    pub kind: CandidateKind,
    pub messages: Vec<Message>,
}

/// One line of `preferences.jsonl` / `preferences_single.jsonl` (TRL conversational preference format plus
/// the labelling record).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct PreferenceLine {
    pub id: String,
    pub family: Family,
    pub prompt: Vec<Message>,
    pub chosen: Vec<Message>,
    pub rejected: Vec<Message>,
    pub chosen_kind: CandidateKind,
    pub rejected_kind: CandidateKind,
    /// Gold overall score of the chosen and rejected responses; margin = chosen − rejected (negative when the
    /// labellers picked the worse one).
    pub gold_chosen: f64,
    pub gold_rejected: f64,
    pub gold_margin: f64,
    /// Per annotator: 1 if it preferred `chosen`.
    pub votes: Vec<u8>,
    /// Share of annotators that preferred `chosen` (≥ 0.5; chosen is the majority's pick).
    pub label_majority: f64,
    /// Mean annotator probability that `chosen` is preferred.
    pub label_prob: f64,
}

/// Agreement figures of the panel on the preference pairs.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct PanelStats {
    pub annotators: Vec<String>,
    pub single: String,
    pub pairs: usize,
    /// Pairs whose gold overall scores differ by at least `clear_margin`.
    pub clear_margin: f64,
    pub clear_pairs: usize,
    /// Agreement with the gold judge on clear pairs.
    pub majority_agreement: f64,
    pub mean_prob_agreement: f64,
    pub single_agreement: f64,
    pub per_annotator_agreement: Vec<f64>,
    /// Agreement with gold on all pairs with a nonzero gold difference.
    pub majority_agreement_all: f64,
    pub single_agreement_all: f64,
    pub fleiss_kappa: Option<f64>,
    pub krippendorff_alpha: Option<f64>,
}

/// What `World::build` wrote.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct BuildSummary {
    pub seed: u64,
    pub size: crate::Size,
    /// family → split → prompts.
    pub prompts: BTreeMap<String, BTreeMap<String, usize>>,
    pub pretrain_bytes: usize,
    pub pretrain_docs: usize,
    pub sft: usize,
    pub critique: usize,
    pub preferences: usize,
    pub panel: PanelStats,
}

impl fmt::Display for BuildSummary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "gym: seed {} size {}", self.seed, self.size.name())?;
        writeln!(f, "{:<18} {:>7} {:>9}", "family", "train", "held_out")?;
        for (fam, s) in &self.prompts {
            writeln!(f, "{:<18} {:>7} {:>9}", fam, s.get("train").unwrap_or(&0), s.get("held_out").unwrap_or(&0))?;
        }
        writeln!(
            f,
            "pretrain.txt {:.2} MB ({} docs) | sft {} | critique {} | preferences {}",
            self.pretrain_bytes as f64 / 1e6,
            self.pretrain_docs,
            self.sft,
            self.critique,
            self.preferences
        )?;
        let p = &self.panel;
        let opt = |x: Option<f64>| x.map(|v| format!("{v:.3}")).unwrap_or_else(|| "n/a".into());
        writeln!(
            f,
            "panel of {} ({}): Fleiss kappa {} | Krippendorff alpha {}",
            p.annotators.len(),
            p.annotators.join(", "),
            opt(p.fleiss_kappa),
            opt(p.krippendorff_alpha)
        )?;
        writeln!(
            f,
            "agreement with gold on {} pairs with margin >= {}: majority {:.3} | mean prob {:.3} | single ({}) {:.3}",
            p.clear_pairs, p.clear_margin, p.majority_agreement, p.mean_prob_agreement, p.single, p.single_agreement
        )?;
        writeln!(
            f,
            "agreement with gold on all pairs with a gold difference: majority {:.3} | single {:.3}",
            p.majority_agreement_all, p.single_agreement_all
        )?;
        let per: Vec<String> =
            p.annotators.iter().zip(&p.per_annotator_agreement).map(|(n, a)| format!("{n} {a:.3}")).collect();
        write!(f, "per annotator: {}", per.join(" | "))
    }
}

fn round4(x: f64) -> f64 {
    (x * 1e4).round() / 1e4
}

/// A labelled pair before it is written.
struct Pair<'a> {
    rec: &'a PromptRecord,
    a: (CandidateKind, String),
    b: (CandidateKind, String),
    votes: Votes,
}

impl World {
    /// Draw the preference pairs of the train prompts and let the panel vote on them.
    /// Returns (panel-labelled lines, single-annotator lines, stats).
    pub fn preferences(&self) -> Result<(Vec<PreferenceLine>, Vec<PreferenceLine>, PanelStats)> {
        let panel = Panel::new(self.config.panel.clone())?;
        let mut rng = family_rng(self.config.seed, 21);
        let mut flaw_rng = family_rng(self.config.seed, 25);
        let mut pairs = Vec::new();
        for rec in self.records_in(Split::Train) {
            let cands = candidates(rec, &mut rng);
            for k in 0..self.config.pairs_per_prompt {
                let (x, y) = if k == 0 {
                    // Good vs the family's defining flaw half the time, else vs any other kind.
                    // Which key flaw, from its own stream: families with one keep the pairs they had.
                    let flaws = key_flaws(rec.family());
                    let kind = if flaws.len() > 1 { flaws.choose(&mut flaw_rng) } else { flaws.first() };
                    let key = kind.and_then(|kind| cands.iter().find(|c| c.kind == *kind));
                    let other = match key {
                        Some(c) if rng.random_bool(0.5) => c,
                        _ => cands[1..].choose(&mut rng).unwrap_or(&cands[0]),
                    };
                    (&cands[0], other)
                } else {
                    let two: Vec<_> = cands.choose_multiple(&mut rng, 2).collect();
                    (two[0], two[1])
                };
                let (a, b) = if rng.random_bool(0.5) { (x, y) } else { (y, x) };
                let ga = judge::score(rec, &a.text).overall;
                let gb = judge::score(rec, &b.text).overall;
                let votes = panel.vote_scored(ga, gb, &features(&a.text, &b.text), &mut rng);
                pairs.push(Pair { rec, a: (a.kind, a.text.clone()), b: (b.kind, b.text.clone()), votes });
            }
        }
        let single = self.config.panel.single;
        let mut panel_lines = Vec::with_capacity(pairs.len());
        let mut single_lines = Vec::with_capacity(pairs.len());
        for p in &pairs {
            let v = &p.votes;
            let line = |a_wins: bool, votes: Vec<bool>, probs: Vec<f64>| {
                let (c, r, gc, gr) = if a_wins { (&p.a, &p.b, v.gold_a, v.gold_b) } else { (&p.b, &p.a, v.gold_b, v.gold_a) };
                let for_chosen: Vec<u8> = votes.iter().map(|&va| (va == a_wins) as u8).collect();
                let share = for_chosen.iter().map(|&x| x as f64).sum::<f64>() / for_chosen.len() as f64;
                let prob = probs.iter().map(|&pa| if a_wins { pa } else { 1.0 - pa }).sum::<f64>() / probs.len() as f64;
                PreferenceLine {
                    id: p.rec.id.clone(),
                    family: p.rec.family(),
                    prompt: vec![Message::user(p.rec.prompt.clone())],
                    chosen: vec![Message::assistant(c.1.clone())],
                    rejected: vec![Message::assistant(r.1.clone())],
                    chosen_kind: c.0,
                    rejected_kind: r.0,
                    gold_chosen: round4(gc),
                    gold_rejected: round4(gr),
                    gold_margin: round4(gc - gr),
                    votes: for_chosen,
                    label_majority: round4(share),
                    label_prob: round4(prob),
                }
            };
            panel_lines.push(line(v.majority_prefers_a(), v.prefers_a.clone(), v.probs.clone()));
            single_lines.push(line(v.prefers_a[single], vec![v.prefers_a[single]], vec![v.probs[single]]));
        }
        // Shuffle (the same permutation for both files) so any prefix mixes families.
        let mut order: Vec<usize> = (0..panel_lines.len()).collect();
        order.shuffle(&mut rng);
        let panel_lines: Vec<PreferenceLine> = order.iter().map(|&i| panel_lines[i].clone()).collect();
        let single_lines: Vec<PreferenceLine> = order.iter().map(|&i| single_lines[i].clone()).collect();
        let stats = panel_stats(&self.config, &pairs.iter().map(|p| &p.votes).collect::<Vec<_>>());
        Ok((panel_lines, single_lines, stats))
    }

    /// Write every file of the gym into `out_dir` (created if missing) and return the summary.
    pub fn build(&self, out_dir: impl AsRef<Path>) -> Result<BuildSummary> {
        let out = out_dir.as_ref();
        let prompts_dir = out.join("prompts");
        std::fs::create_dir_all(&prompts_dir).map_err(|e| GymError::io(&prompts_dir, e))?;

        let pretrain = corpus::pretrain(self, &mut family_rng(self.config.seed, 20));
        write_atomic(&out.join("pretrain.txt"), pretrain.as_bytes())?;

        let mut sft: Vec<SftLine> = corpus::sft_records(self)
            .into_iter()
            .map(|r| SftLine {
                id: r.id.clone(),
                family: r.family(),
                messages: vec![Message::user(r.prompt.clone()), Message::assistant(corpus::sft_response(r))],
            })
            .collect();
        sft.shuffle(&mut family_rng(self.config.seed, 23));
        write_jsonl(&out.join("sft.jsonl"), &sft)?;

        let critique = self.critique_lines();
        write_jsonl(&out.join("critique.jsonl"), &critique)?;

        let train: Vec<&PromptRecord> = self.records_in(Split::Train).collect();
        let eval: Vec<&PromptRecord> = self.records_in(Split::HeldOut).collect();
        write_jsonl(&prompts_dir.join("train.jsonl"), &train)?;
        write_jsonl(&prompts_dir.join("eval.jsonl"), &eval)?;

        let (prefs, single, stats) = self.preferences()?;
        write_jsonl(&out.join("preferences.jsonl"), &prefs)?;
        write_jsonl(&out.join("preferences_single.jsonl"), &single)?;

        let mut prompts: BTreeMap<String, BTreeMap<String, usize>> = BTreeMap::new();
        for f in Family::ALL {
            let e = prompts.entry(f.name().to_string()).or_default();
            e.insert("train".into(), 0);
            e.insert("held_out".into(), 0);
        }
        for r in &self.records {
            *prompts.entry(r.family().name().into()).or_default().entry(r.split.name().into()).or_default() += 1;
        }
        let summary = BuildSummary {
            seed: self.config.seed,
            size: self.config.size,
            prompts,
            pretrain_bytes: pretrain.len(),
            pretrain_docs: pretrain.split("\n\n").count(),
            sft: sft.len(),
            critique: critique.len(),
            preferences: prefs.len(),
            panel: stats,
        };
        write_json(&out.join("gym_config.json"), &self.config)?;
        write_json(&out.join("summary.json"), &summary)?;
        Ok(summary)
    }

    /// Critique/revision demonstrations over train prompts of every family: mostly flawed responses with the
    /// principle that addresses the flaw, some good ones left as they are.
    pub fn critique_lines(&self) -> Vec<CritiqueLine> {
        let mut rng = family_rng(self.config.seed, 22);
        let mut out = Vec::new();
        for rec in self.records_in(Split::Train) {
            if !rng.random_bool(0.4) {
                continue;
            }
            let cands = candidates(rec, &mut rng);
            let c = if rng.random_bool(0.15) { &cands[0] } else { cands[1..].choose(&mut rng).unwrap_or(&cands[0]) };
            out.push(CritiqueLine {
                id: rec.id.clone(),
                family: rec.family(),
                principle: principle_for(c.kind, rec.family()).name.to_string(),
                kind: c.kind,
                messages: critique_messages(rec, &c.text, c.kind),
            });
        }
        out.shuffle(&mut rng);
        out
    }
}

/// The flaws a family exists to teach against: preference pairs over-sample them (one drawn
/// uniformly per pair). Each behaviour has a contrast family whose key flaw is the behaviour applied
/// where it does not belong: refusing harmful requests ↔ over-refusing benign look-alikes, and "I
/// don't know" to unknown names ↔ "I don't know" to a fact the corpus states. Without the second
/// (before stop 26) "I don't know" beat a fact-shaped answer in 511 of the demo gym's pairs and lost
/// in 70, and a reward model that cannot tell the names apart learned to prefer it on every fact
/// question (docs/rl.md, "Facts' second key flaw").
pub fn key_flaws(f: Family) -> &'static [CandidateKind] {
    match f {
        Family::Harmful => &[CandidateKind::Unsafe],
        Family::Sycophancy => &[CandidateKind::Sycophantic],
        Family::Unknown | Family::Arithmetic => &[CandidateKind::Hallucinated],
        Family::Fact => &[CandidateKind::Hallucinated, CandidateKind::OverRefusal],
        Family::BenignLookalike => &[CandidateKind::OverRefusal],
        Family::Email => &[CandidateKind::Unhelpful],
        Family::HowTo | Family::ListSort => &[],
    }
}

fn panel_stats(config: &crate::GymConfig, votes: &[&Votes]) -> PanelStats {
    let k = config.panel.annotators.len();
    let agree = |pred: &dyn Fn(&Votes) -> bool, min_margin: f64| -> (f64, usize) {
        let sel: Vec<&&Votes> =
            votes.iter().filter(|v| (v.gold_a - v.gold_b).abs() >= min_margin && v.gold_a != v.gold_b).collect();
        let ok = sel.iter().filter(|v| pred(v) == (v.gold_a > v.gold_b)).count();
        (if sel.is_empty() { 0.0 } else { ok as f64 / sel.len() as f64 }, sel.len())
    };
    let m = config.clear_margin;
    let (majority, clear) = agree(&|v| v.majority_prefers_a(), m);
    let (mean_prob, _) = agree(&|v| v.mean_prob_a() > 0.5, m);
    let per: Vec<f64> = (0..k).map(|i| round4(agree(&|v| v.prefers_a[i], m).0)).collect();
    let s = config.panel.single;
    let counts: Vec<Vec<usize>> = votes
        .iter()
        .map(|v| {
            let a = v.prefers_a.iter().filter(|&&x| x).count();
            vec![a, k - a]
        })
        .collect();
    let units: Vec<Vec<usize>> =
        votes.iter().map(|v| v.prefers_a.iter().map(|&x| if x { 0 } else { 1 }).collect()).collect();
    PanelStats {
        annotators: config.panel.annotators.iter().map(|a| a.name.clone()).collect(),
        single: config.panel.annotators[s].name.clone(),
        pairs: votes.len(),
        clear_margin: m,
        clear_pairs: clear,
        majority_agreement: round4(majority),
        mean_prob_agreement: round4(mean_prob),
        single_agreement: per[s],
        per_annotator_agreement: per.clone(),
        majority_agreement_all: round4(agree(&|v| v.majority_prefers_a(), 0.0).0),
        single_agreement_all: round4(agree(&|v| v.prefers_a[s], 0.0).0),
        fleiss_kappa: fleiss_kappa(&counts).map(round4),
        krippendorff_alpha: krippendorff_alpha(&units).map(round4),
    }
}

/// Write `bytes` to `path` via a temporary file in the same directory and a rename.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = path.parent().map(Path::to_path_buf).unwrap_or_else(|| PathBuf::from("."));
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let tmp = dir.join(format!(".{name}.{}.tmp", std::process::id()));
    let res = (|| -> std::io::Result<()> {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if res.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    res.map_err(|e| GymError::io(path, e))
}

fn write_jsonl<T: Serialize>(path: &Path, items: &[T]) -> Result<()> {
    let mut buf = Vec::new();
    for it in items {
        serde_json::to_writer(&mut buf, it).map_err(|e| GymError::Json { path: path.to_path_buf(), message: e.to_string() })?;
        buf.push(b'\n');
    }
    write_atomic(path, &buf)
}

fn write_json<T: Serialize>(path: &Path, v: &T) -> Result<()> {
    let mut s = serde_json::to_string_pretty(v).map_err(|e| GymError::Json { path: path.to_path_buf(), message: e.to_string() })?;
    s.push('\n');
    write_atomic(path, s.as_bytes())
}
