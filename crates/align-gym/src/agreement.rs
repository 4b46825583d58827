//! Inter-annotator agreement: Fleiss' kappa and Krippendorff's alpha (nominal).

/// Fleiss' kappa. `counts[i][j]` = how many raters put item `i` in category `j`; every item must have the same
/// number of ratings n ≥ 2. `None` when undefined (no items, unequal totals, or all ratings in one category).
///
/// κ = (P̄ − P̄e) / (1 − P̄e), P_i = (Σ_j n_ij² − n) / (n(n − 1)), p_j = Σ_i n_ij / (N n), P̄e = Σ_j p_j².
pub fn fleiss_kappa(counts: &[Vec<usize>]) -> Option<f64> {
    let first = counts.first()?;
    let n: usize = first.iter().sum();
    let k = first.len();
    if n < 2 || counts.iter().any(|r| r.len() != k || r.iter().sum::<usize>() != n) {
        return None;
    }
    let big_n = counts.len() as f64;
    let nf = n as f64;
    let p_bar = counts
        .iter()
        .map(|r| (r.iter().map(|&c| (c * c) as f64).sum::<f64>() - nf) / (nf * (nf - 1.0)))
        .sum::<f64>()
        / big_n;
    let p_e: f64 = (0..k)
        .map(|j| {
            let pj = counts.iter().map(|r| r[j] as f64).sum::<f64>() / (big_n * nf);
            pj * pj
        })
        .sum();
    if (1.0 - p_e).abs() < 1e-12 {
        return None;
    }
    Some((p_bar - p_e) / (1.0 - p_e))
}

/// Krippendorff's alpha for nominal data. `units[u]` = the category values coders gave unit `u` (missing
/// ratings simply left out); units with fewer than two values are not pairable and are ignored. `None` when
/// undefined (fewer than two pairable values, or a single category overall).
///
/// α = 1 − (n − 1) · Σ_{c≠k} o_ck / Σ_{c≠k} n_c n_k, with coincidences o_ck = Σ_u (pairs (c,k) in u) / (m_u − 1).
pub fn krippendorff_alpha(units: &[Vec<usize>]) -> Option<f64> {
    let k = units.iter().flat_map(|u| u.iter()).max()? + 1;
    let mut o = vec![vec![0.0f64; k]; k];
    for u in units.iter().filter(|u| u.len() >= 2) {
        let m = u.len() as f64;
        for (i, &a) in u.iter().enumerate() {
            for (j, &b) in u.iter().enumerate() {
                if i != j {
                    o[a][b] += 1.0 / (m - 1.0);
                }
            }
        }
    }
    let n_c: Vec<f64> = o.iter().map(|row| row.iter().sum()).collect();
    let n: f64 = n_c.iter().sum();
    if n < 2.0 {
        return None;
    }
    let mut d_o = 0.0;
    let mut d_e = 0.0;
    for c in 0..k {
        for kk in 0..k {
            if c != kk {
                d_o += o[c][kk];
                d_e += n_c[c] * n_c[kk];
            }
        }
    }
    if d_e == 0.0 {
        return None;
    }
    Some(1.0 - (n - 1.0) * d_o / d_e)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The worked example of Fleiss (1971) as given on Wikipedia ("Fleiss' kappa"): 10 subjects, 14 raters,
    /// 5 categories; P̄ = 0.378, P̄e = 0.213, κ = 0.210.
    #[test]
    fn fleiss_textbook_example() {
        let t = vec![
            vec![0, 0, 0, 0, 14],
            vec![0, 2, 6, 4, 2],
            vec![0, 0, 3, 5, 6],
            vec![0, 3, 9, 2, 0],
            vec![2, 2, 8, 1, 1],
            vec![7, 7, 0, 0, 0],
            vec![3, 2, 6, 3, 0],
            vec![2, 5, 3, 2, 2],
            vec![6, 5, 2, 1, 0],
            vec![0, 2, 2, 3, 7],
        ];
        let k = fleiss_kappa(&t).unwrap();
        assert!((k - 0.20993).abs() < 1e-4, "{k}");
    }

    /// Hand computed: 3 items, 2 raters, 2 categories: [2,0], [0,2], [1,1].
    /// P_i = 1, 1, 0 → P̄ = 2/3; p = (3/6, 3/6) → P̄e = 1/2; κ = (2/3 − 1/2)/(1/2) = 1/3.
    #[test]
    fn fleiss_small_hand_example() {
        let k = fleiss_kappa(&[vec![2, 0], vec![0, 2], vec![1, 1]]).unwrap();
        assert!((k - 1.0 / 3.0).abs() < 1e-12);
        assert_eq!(fleiss_kappa(&[vec![2, 0], vec![1, 0]]), None);
        assert!((fleiss_kappa(&[vec![3, 0], vec![0, 3]]).unwrap() - 1.0).abs() < 1e-12);
    }

    /// Hand computed: units (a,a), (a,b), (b,b), (b,b). o_aa = 2, o_ab = o_ba = 1, o_bb = 4; n_a = 3, n_b = 5,
    /// n = 8. α = 1 − 7 · 2 / (2 · 3 · 5) = 1 − 14/30 = 8/15.
    #[test]
    fn krippendorff_hand_example() {
        let a = krippendorff_alpha(&[vec![0, 0], vec![0, 1], vec![1, 1], vec![1, 1]]).unwrap();
        assert!((a - 8.0 / 15.0).abs() < 1e-12, "{a}");
        // A unit with one value is not pairable and changes nothing.
        let b = krippendorff_alpha(&[vec![0, 0], vec![0, 1], vec![1, 1], vec![1, 1], vec![1]]).unwrap();
        assert!((a - b).abs() < 1e-12);
        assert!((krippendorff_alpha(&[vec![0, 0, 0], vec![1, 1, 1]]).unwrap() - 1.0).abs() < 1e-12);
    }

    /// Krippendorff's (2011) "Computing Krippendorff's alpha-reliability", nominal example with missing data:
    /// 4 coders, 12 units, values 1–5; α = 0.743.
    #[test]
    fn krippendorff_reference_example() {
        // Columns of the reliability data matrix; '.' (missing) omitted. Values shifted to 0-based.
        let units: Vec<Vec<usize>> = vec![
            vec![1, 1, 1],
            vec![2, 2, 3, 2],
            vec![3, 3, 3, 3],
            vec![3, 3, 3, 3],
            vec![2, 2, 2, 2],
            vec![1, 2, 3, 4],
            vec![4, 4, 4, 4],
            vec![1, 1, 2, 1],
            vec![2, 2, 2, 2],
            vec![5, 5, 5],
            vec![1, 1],
            vec![3],
        ];
        let a = krippendorff_alpha(&units).unwrap();
        assert!((a - 0.743).abs() < 5e-4, "{a}");
    }
}
