//! The attention bias: causal order, key padding and packed-sequence boundaries in one additive
//! tensor, built once per forward and shared by every layer.

use candle_core::{DType, Device, Result, Tensor};

/// Added to a masked score. Large enough that `exp` underflows to 0, finite so that a row with
/// every key masked (a left-padding query) gives a uniform softmax instead of NaN.
pub const MASKED: f32 = -1e9;

/// Additive bias of shape (B or 1, 1, T, T_past + T): query `i` (absolute index `past + i`) may
/// attend key `j` when `j <= past + i`, `key_mask[b, j] == 1`, and both lie in the same segment.
pub fn attention_bias(
    b: usize,
    t: usize,
    past: usize,
    key_mask: Option<&Tensor>,
    segments: Option<&Tensor>,
    dev: &Device,
) -> Result<Tensor> {
    let tk = past + t;
    if key_mask.is_none() && segments.is_none() {
        let mut m = vec![0f32; t * tk];
        for i in 0..t {
            for j in (past + i + 1)..tk {
                m[i * tk + j] = MASKED;
            }
        }
        return Tensor::from_vec(m, (1, 1, t, tk), dev);
    }
    let km: Option<Vec<Vec<u8>>> = match key_mask {
        Some(k) => {
            let (kb, kt) = k.dims2()?;
            if kb != b || kt != tk {
                candle_core::bail!("key_mask has shape ({kb}, {kt}), expected ({b}, {tk})")
            }
            Some(k.to_dtype(DType::U8)?.to_vec2::<u8>()?)
        }
        None => None,
    };
    let seg: Option<Vec<Vec<u32>>> = match segments {
        Some(s) => {
            if past != 0 {
                candle_core::bail!("packed segments cannot be combined with a KV cache")
            }
            Some(s.to_dtype(DType::U32)?.to_vec2::<u32>()?)
        }
        None => None,
    };
    let mut m = vec![0f32; b * t * tk];
    for bi in 0..b {
        for i in 0..t {
            let row = &mut m[(bi * t + i) * tk..(bi * t + i + 1) * tk];
            for (j, v) in row.iter_mut().enumerate() {
                let causal = j <= past + i;
                let real = km.as_ref().is_none_or(|k| k[bi][j] != 0);
                let same = seg.as_ref().is_none_or(|s| s[bi][i] == s[bi][j]);
                if !(causal && real && same) {
                    *v = MASKED;
                }
            }
        }
    }
    Tensor::from_vec(m, (b, 1, t, tk), dev)
}

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn causal_with_padding_and_segments() {
        let dev = Device::Cpu;
        let km = Tensor::new(&[[0u8, 1, 1]], &dev).unwrap();
        let m = attention_bias(1, 3, 0, Some(&km), None, &dev).unwrap();
        let m = m.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        let allowed: Vec<bool> = m.iter().map(|v| *v == 0.0).collect();
        assert_eq!(allowed, vec![false, false, false, false, true, false, false, true, true]);
        let seg = Tensor::new(&[[0u32, 0, 1]], &dev).unwrap();
        let m = attention_bias(1, 3, 0, None, Some(&seg), &dev).unwrap();
        let m = m.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        let allowed: Vec<bool> = m.iter().map(|v| *v == 0.0).collect();
        assert_eq!(allowed, vec![true, false, false, true, true, false, false, false, true]);
    }
}
