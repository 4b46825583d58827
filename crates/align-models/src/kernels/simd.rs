//! Scalar building blocks the kernels share, written so LLVM vectorises the loops that call them
//! (inside [`multiversion`](super::multiversion) functions): a polynomial `exp`, and row
//! reductions in 16 independent lanes combined in a fixed order (the same bits on every
//! instruction set and thread count).

/// Lanes of the row reductions.
pub const LANES: usize = 16;

/// `e^x` in plain arithmetic that vectorises, unlike libm's `expf`: Cody–Waite reduction
/// `x = n ln2 + r`, Cephes' degree-6 polynomial for `e^r` (~1 ulp on [-87, 88]), `2ⁿ` built from
/// the exponent bits. Exactly 0 below -87 (the true value is under 1.7e-38, so a softmax term or
/// a sigmoid's `e^-x` that cannot matter), `e^88` above 88, NaN kept.
#[inline(always)]
#[allow(clippy::excessive_precision)] // Cephes' constants, as published
pub fn exp(x: f32) -> f32 {
    const LOG2E: f32 = std::f32::consts::LOG2_E;
    const LN2_HI: f32 = 0.693_359_375; // exactly 355/512
    const LN2_LO: f32 = -2.121_944_4e-4;
    // 1.5·2²³: adding it rounds to an integer held in the low mantissa bits.
    const MAGIC: f32 = 12_582_912.0;
    let xc = x.clamp(-87.0, 88.0);
    let k = xc * LOG2E + MAGIC;
    let n = k - MAGIC;
    let r = (xc - n * LN2_HI) - n * LN2_LO;
    let mut p = 1.987_569_2e-4;
    p = p * r + 1.398_199_9e-3;
    p = p * r + 8.333_452e-3;
    p = p * r + 4.166_579_6e-2;
    p = p * r + 1.666_666_5e-1;
    p = p * r + 5.000_000_1e-1;
    let er = p * r * r + r + 1.0;
    let ni = k.to_bits().wrapping_sub(MAGIC.to_bits()) as i32; // n as an integer, |n| ≤ 127
    let y = er * f32::from_bits((ni.wrapping_add(127) as u32) << 23);
    if x < -87.0 {
        0.0
    } else {
        y
    }
}

/// Pairwise sum of 16 lanes, in a fixed order.
#[inline(always)]
pub fn lanes_sum(acc: &[f32; LANES]) -> f32 {
    let mut h = [0f32; 8];
    for i in 0..8 {
        h[i] = acc[i] + acc[i + 8];
    }
    let q = [h[0] + h[4], h[1] + h[5], h[2] + h[6], h[3] + h[7]];
    (q[0] + q[2]) + (q[1] + q[3])
}

/// `max(x)` of a row, 16 lanes at a time (NaN entries are skipped; they surface in a later sum).
#[inline(always)]
pub fn row_max(x: &[f32]) -> f32 {
    let mut acc = [f32::NEG_INFINITY; LANES];
    let chunks = x.chunks_exact(LANES);
    let rem = chunks.remainder();
    for ch in chunks {
        for i in 0..LANES {
            acc[i] = if ch[i] > acc[i] { ch[i] } else { acc[i] };
        }
    }
    let mut m = f32::NEG_INFINITY;
    for a in acc.into_iter().chain(rem.iter().copied()) {
        m = if a > m { a } else { m };
    }
    m
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exp_is_within_a_few_ulp_and_handles_the_edges() {
        let mut worst = 0f64;
        for i in -8700..8800 {
            let x = i as f32 / 100.0 + 0.003;
            let (got, want) = (exp(x) as f64, (x as f64).exp());
            worst = worst.max(((got - want) / want).abs());
        }
        assert!(worst < 3e-7, "worst relative error {worst}");
        assert!(exp(f32::NAN).is_nan());
        assert_eq!((exp(-87.5), exp(f32::NEG_INFINITY)), (0.0, 0.0));
        assert_eq!(exp(100.0), exp(88.0));
    }

    #[test]
    fn exp_is_within_two_ulp_of_std() {
        let mut x = -87.0f32;
        while x <= 88.0 {
            let (a, b) = (exp(x), x.exp());
            let ulp = f32::from_bits(b.to_bits() + 1) - b;
            assert!((a - b).abs() <= 2.0 * ulp, "exp({x}) = {a}, std {b}");
            x += 0.0137;
        }
        for x in [-87.01, -100.0, -1e9, f32::NEG_INFINITY] {
            assert_eq!(exp(x), 0.0, "exp({x})");
        }
        assert_eq!(exp(0.0), 1.0);
    }

    #[test]
    fn reductions() {
        let v: Vec<f32> = (0..37).map(|i| ((i * 7) % 11) as f32 - 3.0).collect();
        assert_eq!(row_max(&v), 7.0);
        let acc: [f32; LANES] = std::array::from_fn(|i| i as f32);
        assert_eq!(lanes_sum(&acc), 120.0);
    }
}
