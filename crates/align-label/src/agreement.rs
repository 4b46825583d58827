//! Inter-annotator agreement as pure functions over category indices.
//!
//! Cohen's kappa is here; Fleiss' kappa and Krippendorff's alpha (nominal) are align-gym's, the
//! same functions that measure the simulated panel, re-exported so both use one implementation.
//! Formulas and references are in docs/label.md.

pub use align_gym::agreement::{fleiss_kappa, krippendorff_alpha};

/// Cohen's kappa of two raters over the same items: `pairs[i] = (category of rater 1, category
/// of rater 2)`, categories `0..k`.
///
/// κ = (p_o − p_e) / (1 − p_e), p_o = share of items where they agree, p_e = Σ_c p1_c · p2_c with
/// p1_c, p2_c each rater's share of category c (Cohen 1960). `None` when undefined: no items, or
/// p_e = 1 (both raters always used the same single category).
pub fn cohen_kappa(pairs: &[(usize, usize)], k: usize) -> Option<f64> {
    if pairs.is_empty() || pairs.iter().any(|&(a, b)| a >= k || b >= k) {
        return None;
    }
    let n = pairs.len() as f64;
    let p_o = pairs.iter().filter(|(a, b)| a == b).count() as f64 / n;
    let mut m1 = vec![0.0; k];
    let mut m2 = vec![0.0; k];
    for &(a, b) in pairs {
        m1[a] += 1.0 / n;
        m2[b] += 1.0 / n;
    }
    let p_e: f64 = m1.iter().zip(&m2).map(|(x, y)| x * y).sum();
    if (1.0 - p_e).abs() < 1e-12 {
        return None;
    }
    Some((p_o - p_e) / (1.0 - p_e))
}

/// The category chosen by a strict plurality of `votes` (categories `0..k`), or `None` on a tie
/// for first place or no votes.
pub fn plurality(votes: &[usize], k: usize) -> Option<usize> {
    let mut counts = vec![0usize; k];
    for &v in votes.iter().filter(|&&v| v < k) {
        counts[v] += 1;
    }
    let max = *counts.iter().max()?;
    if max == 0 || counts.iter().filter(|&&c| c == max).count() > 1 {
        return None;
    }
    counts.iter().position(|&c| c == max)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Wikipedia "Cohen's kappa", first worked example: 50 proposals, both "yes" 20, both "no" 15,
    /// A yes/B no 5, A no/B yes 10: p_o = 0.7, p_e = 0.5, κ = 0.4.
    #[test]
    fn cohen_textbook_example() {
        let mut pairs = vec![(0, 0); 20];
        pairs.extend(vec![(1, 1); 15]);
        pairs.extend(vec![(0, 1); 5]);
        pairs.extend(vec![(1, 0); 10]);
        let k = cohen_kappa(&pairs, 2).unwrap();
        assert!((k - 0.4).abs() < 1e-12, "{k}");
    }

    #[test]
    fn cohen_edge_cases() {
        // Perfect agreement over two categories: 1.
        assert!((cohen_kappa(&[(0, 0), (1, 1), (1, 1)], 4).unwrap() - 1.0).abs() < 1e-12);
        // Systematic disagreement is below chance: κ = (0 − 0.5) / 0.5 = −1.
        assert!((cohen_kappa(&[(0, 1), (1, 0)], 2).unwrap() + 1.0).abs() < 1e-12);
        // Both raters always say the same one category: undefined.
        assert_eq!(cohen_kappa(&[(2, 2), (2, 2)], 4), None);
        assert_eq!(cohen_kappa(&[], 4), None);
        assert_eq!(cohen_kappa(&[(5, 0)], 4), None);
    }

    #[test]
    fn plurality_needs_a_unique_winner() {
        assert_eq!(plurality(&[0, 0, 1], 4), Some(0));
        assert_eq!(plurality(&[0, 1], 4), None);
        assert_eq!(plurality(&[], 4), None);
        assert_eq!(plurality(&[3, 3, 1, 1, 3], 4), Some(3));
    }

    /// The re-exported Fleiss' kappa agrees with Cohen's on the case where they coincide in
    /// spirit: two raters, perfect agreement.
    #[test]
    fn fleiss_and_alpha_are_wired() {
        assert!((fleiss_kappa(&[vec![2, 0, 0, 0], vec![0, 2, 0, 0]]).unwrap() - 1.0).abs() < 1e-12);
        assert!((krippendorff_alpha(&[vec![0, 0], vec![1, 1]]).unwrap() - 1.0).abs() < 1e-12);
    }
}
