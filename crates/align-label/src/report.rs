//! The admin's statistics of one project, computed from its votes: agreement per pair of
//! annotators (Cohen's kappa), overall (Fleiss' kappa, Krippendorff's alpha), how often each
//! annotator disagrees with the others' majority, and accuracy on gold check items.
//!
//! Votes are compared on the four categories first / second / tie / both bad, in the comparison's
//! stored order, so the random A/B order each annotator saw does not matter.

use crate::agreement::{cohen_kappa, fleiss_kappa, krippendorff_alpha, plurality};
use crate::model::{Verdict, Vote};
use serde::Serialize;
use std::collections::{BTreeMap, HashMap};

const K: usize = Verdict::ALL.len();

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PairAgreement {
    pub a: String,
    pub b: String,
    /// Comparisons both labelled.
    pub n: usize,
    /// Share of those where they gave the same verdict.
    pub agreement: f64,
    pub kappa: Option<f64>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AnnotatorQuality {
    pub name: String,
    pub votes: usize,
    /// Comparisons where the other annotators (at least two) had a strict plurality.
    pub majority_n: usize,
    /// Share of those where this annotator's verdict differed from it.
    pub disagree_rate: Option<f64>,
    pub gold_n: usize,
    pub gold_correct: usize,
    pub gold_accuracy: Option<f64>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ProjectReport {
    /// Comparisons with at least one vote.
    pub labelled: usize,
    /// Comparisons with at least two votes.
    pub multiply_labelled: usize,
    pub fleiss_kappa: Option<f64>,
    /// Fleiss' kappa needs the same number of raters per item: it is computed over the comparisons
    /// with the most common vote count (≥ 2), `fleiss_raters`; there are `fleiss_items` of them.
    pub fleiss_items: usize,
    pub fleiss_raters: usize,
    /// Krippendorff's alpha (nominal) over every comparison with two or more votes.
    pub krippendorff_alpha: Option<f64>,
    pub pairs: Vec<PairAgreement>,
    /// Sorted by disagreement with the majority, most first.
    pub annotators: Vec<AnnotatorQuality>,
}

/// Builds the report; `gold` maps comparison id → its gold verdict.
pub fn project_report(votes: &[Vote], gold: &HashMap<i64, Verdict>) -> ProjectReport {
    let mut by_cmp: BTreeMap<i64, Vec<&Vote>> = BTreeMap::new();
    for v in votes {
        by_cmp.entry(v.comparison).or_default().push(v);
    }
    let multi: Vec<&Vec<&Vote>> = by_cmp.values().filter(|vs| vs.len() >= 2).collect();

    // Fleiss over the comparisons with the modal vote count.
    let mut count_freq: BTreeMap<usize, usize> = BTreeMap::new();
    for vs in &multi {
        *count_freq.entry(vs.len()).or_default() += 1;
    }
    let fleiss_raters = count_freq.iter().max_by_key(|(n, f)| (**f, **n)).map(|(n, _)| *n).unwrap_or(0);
    let fleiss_rows: Vec<Vec<usize>> = multi
        .iter()
        .filter(|vs| vs.len() == fleiss_raters)
        .map(|vs| {
            let mut row = vec![0; K];
            for v in vs.iter() {
                row[v.verdict.index()] += 1;
            }
            row
        })
        .collect();
    let units: Vec<Vec<usize>> = multi.iter().map(|vs| vs.iter().map(|v| v.verdict.index()).collect()).collect();

    // Cohen per pair of annotators.
    let mut names: BTreeMap<i64, String> = BTreeMap::new();
    let mut pair_votes: BTreeMap<(i64, i64), Vec<(usize, usize)>> = BTreeMap::new();
    for vs in by_cmp.values() {
        for v in vs {
            names.entry(v.annotator).or_insert_with(|| v.annotator_name.clone());
        }
        for (i, x) in vs.iter().enumerate() {
            for y in &vs[i + 1..] {
                let (x, y) = if x.annotator < y.annotator { (x, y) } else { (y, x) };
                pair_votes.entry((x.annotator, y.annotator)).or_default().push((x.verdict.index(), y.verdict.index()));
            }
        }
    }
    let pairs = pair_votes
        .iter()
        .map(|((a, b), pv)| PairAgreement {
            a: names[a].clone(),
            b: names[b].clone(),
            n: pv.len(),
            agreement: pv.iter().filter(|(x, y)| x == y).count() as f64 / pv.len() as f64,
            kappa: cohen_kappa(pv, K),
        })
        .collect();

    // Per annotator: disagreement with the others' plurality, gold accuracy.
    let mut quality: BTreeMap<i64, AnnotatorQuality> = names
        .iter()
        .map(|(id, name)| {
            (*id, AnnotatorQuality {
                name: name.clone(),
                votes: 0,
                majority_n: 0,
                disagree_rate: None,
                gold_n: 0,
                gold_correct: 0,
                gold_accuracy: None,
            })
        })
        .collect();
    let mut disagreements: HashMap<i64, usize> = HashMap::new();
    for (cmp, vs) in &by_cmp {
        for v in vs {
            let Some(q) = quality.get_mut(&v.annotator) else { continue };
            q.votes += 1;
            if let Some(g) = gold.get(cmp) {
                q.gold_n += 1;
                q.gold_correct += (v.verdict == *g) as usize;
            }
            let others: Vec<usize> =
                vs.iter().filter(|o| o.annotator != v.annotator).map(|o| o.verdict.index()).collect();
            if others.len() >= 2 {
                if let Some(m) = plurality(&others, K) {
                    q.majority_n += 1;
                    *disagreements.entry(v.annotator).or_default() += (m != v.verdict.index()) as usize;
                }
            }
        }
    }
    let mut annotators: Vec<AnnotatorQuality> = quality
        .into_iter()
        .map(|(id, mut q)| {
            if q.majority_n > 0 {
                q.disagree_rate = Some(disagreements.get(&id).copied().unwrap_or(0) as f64 / q.majority_n as f64);
            }
            if q.gold_n > 0 {
                q.gold_accuracy = Some(q.gold_correct as f64 / q.gold_n as f64);
            }
            q
        })
        .collect();
    annotators.sort_by(|x, y| {
        y.disagree_rate.unwrap_or(-1.0).total_cmp(&x.disagree_rate.unwrap_or(-1.0)).then(x.name.cmp(&y.name))
    });

    ProjectReport {
        labelled: by_cmp.len(),
        multiply_labelled: multi.len(),
        fleiss_kappa: fleiss_kappa(&fleiss_rows),
        fleiss_items: fleiss_rows.len(),
        fleiss_raters,
        krippendorff_alpha: krippendorff_alpha(&units),
        pairs,
        annotators,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Axes;

    pub(crate) fn vote(cmp: i64, who: i64, v: Verdict) -> Vote {
        Vote {
            comparison: cmp,
            annotator: who,
            annotator_name: format!("ann{who}"),
            verdict: v,
            strength: None,
            axes: Axes::default(),
            comment: String::new(),
            swapped: false,
        }
    }

    #[test]
    fn report_finds_the_outlier_and_scores_gold() {
        use Verdict::*;
        // Three annotators on four comparisons; annotator 3 always contradicts 1 and 2.
        let mut votes = Vec::new();
        for (cmp, v, w) in [(1, First, Second), (2, Second, First), (3, First, Second), (4, Tie, First)] {
            votes.push(vote(cmp, 1, v));
            votes.push(vote(cmp, 2, v));
            votes.push(vote(cmp, 3, w));
        }
        let gold = HashMap::from([(1, First), (2, Second)]);
        let r = project_report(&votes, &gold);
        assert_eq!((r.labelled, r.multiply_labelled, r.fleiss_items, r.fleiss_raters), (4, 4, 4, 3));
        assert_eq!(r.annotators[0].name, "ann3");
        assert_eq!(r.annotators[0].disagree_rate, Some(1.0));
        assert_eq!(r.annotators[0].gold_accuracy, Some(0.0));
        assert_eq!(r.annotators[1].gold_accuracy, Some(1.0));
        // ann1 and ann2 never have a strict plurality among the others (1 vs 1): no rate.
        assert_eq!(r.annotators[1].majority_n, 0);
        let p12 = r.pairs.iter().find(|p| p.a == "ann1" && p.b == "ann2").unwrap();
        assert_eq!((p12.n, p12.agreement), (4, 1.0));
        assert!((p12.kappa.unwrap() - 1.0).abs() < 1e-12);
        let p13 = r.pairs.iter().find(|p| p.a == "ann1" && p.b == "ann3").unwrap();
        assert_eq!(p13.agreement, 0.0);
        assert!(p13.kappa.unwrap() < 0.0);
        // Matches the stand-alone functions on the same data.
        let rows: Vec<Vec<usize>> = [(First, Second), (Second, First), (First, Second), (Tie, First)]
            .iter()
            .map(|(v, w)| {
                let mut row = vec![0; 4];
                row[v.index()] += 2;
                row[w.index()] += 1;
                row
            })
            .collect();
        assert_eq!(r.fleiss_kappa, fleiss_kappa(&rows));
        assert!(r.fleiss_kappa.unwrap() < 0.2);
    }
}
