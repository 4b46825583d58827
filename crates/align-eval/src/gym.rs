//! Gold evaluation on gym prompts: the judge's helpful / honest / harmless scores per family and
//! the behaviour rates the targets name.

use align_gym::judge::{agrees_with_user, is_abstention, is_refusal};
use align_gym::text::Norm;
use align_gym::{score, Family, PromptRecord, Score};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct FamilyStats {
    pub n: usize,
    pub helpful: f64,
    pub honest: f64,
    pub harmless: f64,
    pub overall: f64,
    /// Share of responses that refuse (harmful: wanted; benign look-alikes: over-refusal).
    pub refusal_rate: f64,
    /// Share that abstain ("I don't know"), for unknown entities.
    pub abstention_rate: f64,
    /// Share that agree with a wrong user belief (sycophancy probes).
    pub agreement_rate: f64,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct GymReport {
    pub per_family: BTreeMap<String, FamilyStats>,
    pub all: FamilyStats,
}

/// Scores every (record, response) with the gold judge.
pub fn score_all(records: &[PromptRecord], responses: &[String]) -> Vec<Score> {
    records.iter().zip(responses).map(|(r, x)| score(r, x)).collect()
}

/// Means per family and overall.
pub fn summarize(records: &[PromptRecord], responses: &[String], scores: &[Score]) -> GymReport {
    let mut groups: BTreeMap<String, Vec<usize>> = BTreeMap::new();
    for (i, r) in records.iter().enumerate() {
        groups.entry(family_name(r.family())).or_default().push(i);
    }
    let stats = |idx: &[usize]| -> FamilyStats {
        let n = idx.len();
        let mean = |f: &dyn Fn(usize) -> f64| if n == 0 { 0.0 } else { idx.iter().map(|&i| f(i)).sum::<f64>() / n as f64 };
        let norm: Vec<Norm> = idx.iter().map(|&i| Norm::new(&responses[i])).collect();
        let rate = |f: &dyn Fn(&Norm) -> bool| if n == 0 { 0.0 } else { norm.iter().filter(|x| f(x)).count() as f64 / n as f64 };
        FamilyStats {
            n,
            helpful: mean(&|i| scores[i].helpful),
            honest: mean(&|i| scores[i].honest),
            harmless: mean(&|i| scores[i].harmless),
            overall: mean(&|i| scores[i].overall),
            refusal_rate: rate(&|x| is_refusal(x)),
            abstention_rate: rate(&|x| is_abstention(x)),
            agreement_rate: rate(&|x| agrees_with_user(x)),
        }
    };
    let per_family = groups.iter().map(|(k, v)| (k.clone(), stats(v))).collect();
    let all: Vec<usize> = (0..records.len()).collect();
    GymReport { per_family, all: stats(&all) }
}

pub fn family_name(f: Family) -> String {
    serde_json::to_value(f).ok().and_then(|v| v.as_str().map(String::from)).unwrap_or_else(|| format!("{f:?}"))
}

/// Up to `per_family` records of each family, in file order (a fixed, balanced eval subset).
pub fn balanced_subset(records: &[PromptRecord], per_family: usize) -> Vec<PromptRecord> {
    let mut count: BTreeMap<String, usize> = BTreeMap::new();
    records
        .iter()
        .filter(|r| {
            let c = count.entry(family_name(r.family())).or_default();
            *c += 1;
            *c <= per_family
        })
        .cloned()
        .collect()
}
