//! SL-CAI, the supervised stage of Constitutional AI (Bai et al., 2022, §3): for each red-team
//! prompt, sample a response, ask the model to critique it under a randomly drawn principle,
//! then to revise it; repeat for `rounds` rounds; the final revisions become an SFT data set.
//!
//! Every round is a fresh conversation in the gym's critique format (user prompt · assistant
//! response · "Critique request: ..." · "Critique: ..." · "Revision request: ..." · revision),
//! with the previous round's revision as the response. The paper appended each new critique
//! request to the growing conversation; align's gym models have a 256-token context, and a
//! fresh conversation is also exactly the format `critique.jsonl` trains.
//!
//! Sampling is seeded per prompt: the initial response of prompt `i` samples from stream
//! `64·i`, round `r`'s critique from `64·i + 2r + 1` and its revision from `64·i + 2r + 2`, and
//! the principle and few-shot draws of prompt `id` from `fork(seed, "cai/revise/{id}")`; a
//! prompt's transcript therefore does not depend on the batch size.

use crate::chat::ChatModel;
use crate::constitution::{draw_few_shot, Constitution};
use crate::error::{CaiError, Result};
use crate::prompts::PromptItem;
use align_data::Message;
use align_generate::SamplingConfig;
use align_gym::constitution::{CRITIQUE_REQUEST_PREFIX, REVISION_REQUEST_PREFIX};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ReviseConfig {
    /// Critique-revision rounds per prompt (the paper used up to 4). Default 1.
    pub rounds: usize,
    /// Sampling of responses, critiques and revisions. Default temperature 1, top-k off,
    /// 64 new tokens.
    pub sampling: SamplingConfig,
    /// Few-shot critique/revision demonstrations from the constitution before each round
    /// (the paper used few-shot prompts; tiny models with short contexts need 0). Default 0.
    pub few_shot: usize,
    /// Conversations per generation batch. Default 32.
    pub batch_size: usize,
    pub seed: u64,
}

impl Default for ReviseConfig {
    fn default() -> Self {
        ReviseConfig {
            rounds: 1,
            sampling: SamplingConfig { temperature: 1.0, top_k: 0, max_new_tokens: 64, ..SamplingConfig::default() },
            few_shot: 0,
            batch_size: 32,
            seed: 0,
        }
    }
}

/// Gold scores of a response (gym prompts only).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Gold {
    pub helpful: f64,
    pub honest: f64,
    pub harmless: f64,
    pub overall: f64,
}

impl Gold {
    pub fn of(rec: &align_gym::PromptRecord, response: &str) -> Self {
        let s = align_gym::score(rec, response);
        Gold { helpful: s.helpful, honest: s.honest, harmless: s.harmless, overall: s.overall }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Round {
    pub principle: String,
    pub critique: String,
    pub revision: String,
    /// False when the conversation did not fit the context or the revision was empty: the
    /// response is then kept as it was.
    pub revised: bool,
}

/// One prompt's whole SL-CAI transcript.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Transcript {
    pub id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub family: Option<String>,
    pub prompt: String,
    pub initial: String,
    pub rounds: Vec<Round>,
    #[serde(rename = "final")]
    pub final_response: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gold_before: Option<Gold>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gold_after: Option<Gold>,
}

/// One line of the SFT data set (TRL conversational language modelling, as the gym's sft.jsonl).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SftLine {
    pub id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub family: Option<String>,
    pub messages: Vec<Message>,
}

impl Transcript {
    pub fn sft_line(&self) -> SftLine {
        SftLine {
            id: self.id.clone(),
            family: self.family.clone(),
            messages: vec![Message::new("user", self.prompt.clone()), Message::new("assistant", self.final_response.clone())],
        }
    }
}

/// The revision without a "Revision:" label the model may have copied from the paper's format.
fn clean_revision(text: &str) -> String {
    text.trim().strip_prefix("Revision:").unwrap_or(text.trim()).trim().to_string()
}

/// Runs SL-CAI over `items` and returns one transcript per prompt, in input order.
pub fn revise(policy: &ChatModel, constitution: &Constitution, items: &[PromptItem], cfg: &ReviseConfig) -> Result<Vec<Transcript>> {
    if constitution.principles.is_empty() {
        return Err(CaiError::Constitution("has no principles".into()));
    }
    let sampling = SamplingConfig { seed: cfg.seed, ..cfg.sampling.clone() };
    let user = |p: &PromptItem| vec![Message::new("user", p.prompt.clone())];

    let convs: Vec<Vec<Message>> = items.iter().map(user).collect();
    let streams: Vec<u64> = (0..items.len() as u64).map(|i| 64 * i).collect();
    let initial: Vec<String> = policy.reply(&convs, &sampling, &streams, cfg.batch_size)?.into_iter().map(Option::unwrap_or_default).collect();

    let mut rngs: Vec<_> = items.iter().map(|p| align_core::seed::fork(cfg.seed, &format!("cai/revise/{}", p.id))).collect();
    let mut current = initial.clone();
    let mut rounds: Vec<Vec<Round>> = vec![Vec::new(); items.len()];
    for r in 0..cfg.rounds as u64 {
        // Draw the principle and the few-shot demonstrations of every prompt for this round.
        let mut heads: Vec<Vec<Message>> = Vec::with_capacity(items.len());
        let mut principles = Vec::with_capacity(items.len());
        for (i, p) in items.iter().enumerate() {
            let principle = constitution.sample(&mut rngs[i]).clone();
            let mut conv = Vec::new();
            for k in draw_few_shot(constitution.few_shot.len(), cfg.few_shot, &mut rngs[i]) {
                let ex = &constitution.few_shot[k];
                conv.extend(ex.conversation.iter().cloned());
                conv.push(Message::new("user", format!("{CRITIQUE_REQUEST_PREFIX}{}", ex.critique_request)));
                conv.push(Message::new("assistant", ex.critique.clone()));
                conv.push(Message::new("user", format!("{REVISION_REQUEST_PREFIX}{}", ex.revision_request)));
                conv.push(Message::new("assistant", ex.revision.clone()));
            }
            conv.extend(user(p));
            conv.push(Message::new("assistant", current[i].clone()));
            conv.push(Message::new("user", format!("{CRITIQUE_REQUEST_PREFIX}{}", principle.critique_request)));
            heads.push(conv);
            principles.push(principle);
        }
        let streams: Vec<u64> = (0..items.len() as u64).map(|i| 64 * i + 2 * r + 1).collect();
        let critiques = policy.reply(&heads, &sampling, &streams, cfg.batch_size)?;

        let mut convs = Vec::with_capacity(items.len());
        for (i, conv) in heads.iter_mut().enumerate() {
            conv.push(Message::new("assistant", critiques[i].clone().unwrap_or_default()));
            conv.push(Message::new("user", format!("{REVISION_REQUEST_PREFIX}{}", principles[i].revision_request)));
            convs.push(std::mem::take(conv));
        }
        let streams: Vec<u64> = (0..items.len() as u64).map(|i| 64 * i + 2 * r + 2).collect();
        let revisions = policy.reply(&convs, &sampling, &streams, cfg.batch_size)?;

        for i in 0..items.len() {
            let revision = revisions[i].as_deref().map(clean_revision).unwrap_or_default();
            let revised = critiques[i].is_some() && !revision.is_empty();
            if revised {
                current[i] = revision.clone();
            }
            rounds[i].push(Round { principle: principles[i].name.clone(), critique: critiques[i].clone().unwrap_or_default(), revision, revised });
        }
    }

    Ok(items
        .iter()
        .zip(initial)
        .zip(current)
        .zip(rounds)
        .map(|(((p, initial), fin), rounds)| Transcript {
            id: p.id.clone(),
            family: p.family.clone(),
            prompt: p.prompt.clone(),
            gold_before: p.record.as_ref().map(|r| Gold::of(r, &initial)),
            gold_after: p.record.as_ref().map(|r| Gold::of(r, &fin)),
            initial,
            rounds,
            final_response: fin,
        })
        .collect())
}

/// Mean gold scores before and after revision, per family.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct FamilyChange {
    pub n: usize,
    pub harmless_before: f64,
    pub harmless_after: f64,
    pub overall_before: f64,
    pub overall_after: f64,
    /// Share of prompts whose final response differs from the initial one.
    pub changed: f64,
    /// Share of rounds that produced no revision (context overflow or empty answer).
    pub unrevised_rounds: f64,
}

/// Per-family (and "all") before/after means over the transcripts that have gold scores.
pub fn gold_changes(ts: &[Transcript]) -> BTreeMap<String, FamilyChange> {
    let mut acc: BTreeMap<String, (FamilyChange, usize, usize)> = BTreeMap::new();
    for t in ts {
        let (Some(b), Some(a)) = (t.gold_before, t.gold_after) else { continue };
        let fam = t.family.clone().unwrap_or_else(|| "unknown".into());
        for key in [fam, "all".to_string()] {
            let (c, rounds, unrevised) = acc.entry(key).or_default();
            c.n += 1;
            c.harmless_before += b.harmless;
            c.harmless_after += a.harmless;
            c.overall_before += b.overall;
            c.overall_after += a.overall;
            c.changed += (t.final_response != t.initial) as u8 as f64;
            *rounds += t.rounds.len();
            *unrevised += t.rounds.iter().filter(|r| !r.revised).count();
        }
    }
    acc.into_iter()
        .map(|(k, (mut c, rounds, unrevised))| {
            let n = c.n as f64;
            for x in [&mut c.harmless_before, &mut c.harmless_after, &mut c.overall_before, &mut c.overall_after, &mut c.changed] {
                *x /= n;
            }
            c.unrevised_rounds = if rounds > 0 { unrevised as f64 / rounds as f64 } else { 0.0 };
            (k, c)
        })
        .collect()
}

/// Writes `revisions.jsonl` (SFT set), `transcripts.jsonl` and `summary.json` into `dir`, each
/// atomically.
pub fn write_outputs(dir: &std::path::Path, ts: &[Transcript], summary: &serde_json::Value) -> Result<()> {
    let lines = |f: &dyn Fn(&Transcript) -> serde_json::Result<String>| -> Result<String> {
        let mut s = String::new();
        for t in ts {
            s.push_str(&f(t).map_err(|e| CaiError::Invalid(format!("cannot serialize transcript {}: {e}", t.id)))?);
            s.push('\n');
        }
        Ok(s)
    };
    align_core::atomic::write_atomic(dir.join("revisions.jsonl"), lines(&|t| serde_json::to_string(&t.sft_line()))?.as_bytes())?;
    align_core::atomic::write_atomic(dir.join("transcripts.jsonl"), lines(&|t| serde_json::to_string(t))?.as_bytes())?;
    let pretty = serde_json::to_string_pretty(summary).map_err(|e| CaiError::Invalid(e.to_string()))?;
    align_core::atomic::write_atomic(dir.join("summary.json"), pretty.as_bytes())?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn revision_label_is_stripped() {
        assert_eq!(clean_revision(" Revision: I can't help with that. "), "I can't help with that.");
        assert_eq!(clean_revision("Fine."), "Fine.");
    }

    #[test]
    fn changes_average_per_family() {
        let g = |h: f64, o: f64| Some(Gold { helpful: 0.0, honest: 1.0, harmless: h, overall: o });
        let t = |id: &str, fam: &str, b, a, changed: bool| Transcript {
            id: id.into(),
            family: Some(fam.into()),
            prompt: "p".into(),
            initial: "x".into(),
            rounds: vec![Round { principle: "harmless".into(), critique: "c".into(), revision: "y".into(), revised: changed }],
            final_response: if changed { "y".into() } else { "x".into() },
            gold_before: b,
            gold_after: a,
        };
        let ts = vec![t("1", "harmful", g(0.0, 0.0), g(1.0, 1.0), true), t("2", "harmful", g(0.0, 0.0), g(0.0, 0.0), false), t("3", "how_to", g(1.0, 0.5), g(1.0, 0.5), false)];
        let c = gold_changes(&ts);
        assert_eq!(c["harmful"].n, 2);
        assert!((c["harmful"].harmless_after - 0.5).abs() < 1e-12 && c["harmful"].harmless_before == 0.0);
        assert!((c["harmful"].changed - 0.5).abs() < 1e-12 && (c["harmful"].unrevised_rounds - 0.5).abs() < 1e-12);
        assert_eq!(c["all"].n, 3);
    }
}
