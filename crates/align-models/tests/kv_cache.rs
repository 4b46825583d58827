//! The preallocated `KvCache` (buffers written in place, grown by doubling) against the
//! concatenating cache it replaced (`Concat` below: every append copies the whole cache): the same
//! values, bit for bit, after random sequences of appends, row selections, trims and merges on
//! random tensors, across many capacity boundaries; clones that do not see each other's writes;
//! gradients through the keys and values being appended; errors, not panics, on bad input.

use align_models::KvCache;
use candle_core::{Device, Result, Tensor, Var};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

const LAYERS: usize = 2;
const KV: usize = 2;
const D: usize = 3;

/// The old cache: each layer's keys and values, concatenated along T at every append.
#[derive(Clone)]
struct Concat {
    layers: Vec<Option<(Tensor, Tensor)>>,
}

impl Concat {
    fn new() -> Self {
        Self { layers: vec![None; LAYERS] }
    }

    fn seq_len(&self) -> usize {
        self.layers.iter().flatten().next().map_or(0, |(k, _)| k.dim(2).unwrap())
    }

    fn append(&mut self, layer: usize, k: &Tensor, v: &Tensor) -> Result<(Tensor, Tensor)> {
        let kv = match &self.layers[layer] {
            None => (k.contiguous()?, v.contiguous()?),
            Some((pk, pv)) => (Tensor::cat(&[pk, k], 2)?, Tensor::cat(&[pv, v], 2)?),
        };
        self.layers[layer] = Some(kv.clone());
        Ok(kv)
    }

    fn select_rows(&mut self, rows: &Tensor) -> Result<()> {
        for l in self.layers.iter_mut().flatten() {
            *l = (l.0.contiguous()?.index_select(rows, 0)?, l.1.contiguous()?.index_select(rows, 0)?);
        }
        Ok(())
    }

    /// As the engine trimmed: narrow every layer from the left.
    fn trim_front(&mut self, n: usize) -> Result<()> {
        for l in self.layers.iter_mut().flatten() {
            let len = l.0.dim(2)? - n;
            *l = (l.0.narrow(2, n, len)?, l.1.narrow(2, n, len)?);
        }
        Ok(())
    }

    /// As the engine merged: left-pad the shorter side with zeros, concatenate the rows.
    fn merge_rows(&mut self, other: &Concat) -> Result<(usize, usize)> {
        let (ls, lo) = (self.seq_len(), other.seq_len());
        let t = ls.max(lo);
        let pad = |x: &Tensor, n: usize| -> Result<Tensor> {
            let (b, h, _, d) = x.dims4()?;
            Tensor::cat(&[&Tensor::zeros((b, h, n, d), x.dtype(), x.device())?, x], 2)
        };
        for (a, b) in self.layers.iter_mut().zip(&other.layers) {
            if let (Some((ak, av)), Some((bk, bv))) = (a.as_ref(), b) {
                let k = Tensor::cat(&[&pad(ak, t - ls)?, &pad(bk, t - lo)?], 0)?;
                let v = Tensor::cat(&[&pad(av, t - ls)?, &pad(bv, t - lo)?], 0)?;
                *a = Some((k, v));
            }
        }
        Ok((t - ls, t - lo))
    }
}

fn randn(rng: &mut ChaCha8Rng, shape: (usize, usize, usize, usize)) -> Result<Tensor> {
    let n = shape.0 * shape.1 * shape.2 * shape.3;
    Tensor::from_vec((0..n).map(|_| rng.random::<f32>() * 2.0 - 1.0).collect::<Vec<_>>(), shape, &Device::Cpu)
}

fn bits(t: &Tensor) -> Vec<u32> {
    t.flatten_all().unwrap().to_vec1::<f32>().unwrap().iter().map(|x| x.to_bits()).collect()
}

fn assert_same_tensor(a: &Tensor, b: &Tensor, what: &str) {
    assert_eq!(a.dims(), b.dims(), "{what}: shapes");
    assert!(bits(a) == bits(b), "{what}: values differ");
}

/// Every layer of the cache holds the reference's values.
fn assert_same(c: &KvCache, r: &Concat, what: &str) -> Result<()> {
    assert_eq!(c.seq_len(), r.seq_len(), "{what}: seq_len");
    assert!(c.capacity() >= c.seq_len(), "{what}: capacity {} < seq_len {}", c.capacity(), c.seq_len());
    for l in 0..LAYERS {
        match (c.layer(l)?, &r.layers[l]) {
            (Some((k, v)), Some((rk, rv))) => {
                assert_same_tensor(&k, rk, &format!("{what}: layer {l} keys"));
                assert_same_tensor(&v, rv, &format!("{what}: layer {l} values"));
            }
            (None, None) => {}
            _ => panic!("{what}: layer {l} filled in only one cache"),
        }
    }
    Ok(())
}

/// Appends `t` random positions to every layer of both caches and compares what they return.
fn append_both(rng: &mut ChaCha8Rng, c: &mut KvCache, r: &mut Concat, b: usize, t: usize, what: &str) -> Result<()> {
    for l in 0..LAYERS {
        let (k, v) = (randn(rng, (b, KV, t, D))?, randn(rng, (b, KV, t, D))?);
        let (ck, cv) = c.append(l, &k, &v)?;
        let (rk, rv) = r.append(l, &k, &v)?;
        assert_same_tensor(&ck, &rk, &format!("{what}: appended keys of layer {l}"));
        assert_same_tensor(&cv, &rv, &format!("{what}: appended values of layer {l}"));
    }
    Ok(())
}

#[test]
fn random_operations_match_the_concatenating_cache() -> Result<()> {
    for seed in 0..8u64 {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        // Half the runs reserve room up front (as `generate` does), half start from nothing.
        let mut c = if seed % 2 == 0 { KvCache::new(LAYERS) } else { KvCache::with_capacity(LAYERS, 12) };
        let mut r = Concat::new();
        let mut b = 3;
        let (mut grew, mut kept) = (0, 0);
        append_both(&mut rng, &mut c, &mut r, b, 5, "prefill")?;
        for step in 0..300 {
            let what = format!("seed {seed} step {step}");
            let op = rng.random_range(0..10);
            if op < 6 {
                let t = if rng.random_bool(0.8) { 1 } else { rng.random_range(0..6) };
                let capacity = c.capacity();
                append_both(&mut rng, &mut c, &mut r, b, t, &what)?;
                if c.capacity() > capacity {
                    grew += 1;
                    assert!(c.capacity() >= 2 * capacity, "{what}: grew from {capacity} to {} only", c.capacity());
                } else {
                    kept += 1;
                }
            } else if op == 6 {
                // Rows leave or are repeated (the engine selects each request's prefill row).
                let n = rng.random_range(1..=(b + 1).min(5));
                let rows: Vec<u32> = (0..n).map(|_| rng.random_range(0..b as u32)).collect();
                let rows = Tensor::from_vec(rows, n, &Device::Cpu)?;
                c.select_rows(&rows)?;
                r.select_rows(&rows)?;
                b = n;
            } else if op == 7 {
                let n = rng.random_range(0..=c.seq_len() / 2);
                c.trim_front(n)?;
                r.trim_front(n)?;
            } else if op == 8 {
                // Rows of another cache join, left-padded to the longer side.
                let (ob, ot) = (rng.random_range(1..3), rng.random_range(1..30));
                let (mut oc, mut or) = (KvCache::new(LAYERS), Concat::new());
                append_both(&mut rng, &mut oc, &mut or, ob, ot, &what)?;
                assert_eq!(c.merge_rows(&oc)?, r.merge_rows(&or)?, "{what}: pads");
                b += ob;
                assert_same(&oc, &or, &format!("{what}: the merged-in cache"))?;
            } else {
                // A clone goes on alone; the original must not see its writes, nor it the
                // original's.
                let (mut c2, mut r2) = (c.clone(), r.clone());
                append_both(&mut rng, &mut c2, &mut r2, b, 2, &what)?;
                append_both(&mut rng, &mut c, &mut r, b, 1, &what)?;
                assert_same(&c2, &r2, &format!("{what}: the clone"))?;
            }
            if b > 6 {
                let rows = Tensor::from_vec(vec![0u32, 2, 4], 3, &Device::Cpu)?;
                c.select_rows(&rows)?;
                r.select_rows(&rows)?;
                b = 3;
            }
            assert_same(&c, &r, &what)?;
        }
        assert!(grew >= 2 && kept > grew, "seed {seed}: {grew} growths, {kept} appends in place");
    }
    Ok(())
}

#[test]
fn buffers_grow_by_doubling_and_old_views_keep_their_values() -> Result<()> {
    let mut rng = ChaCha8Rng::seed_from_u64(42);
    let (mut c, mut r) = (KvCache::with_capacity(LAYERS, 4), Concat::new());
    assert_eq!((c.seq_len(), c.capacity()), (0, 0));
    append_both(&mut rng, &mut c, &mut r, 2, 3, "prefill")?;
    assert_eq!((c.seq_len(), c.capacity()), (3, 4));
    let (k3, _) = c.layer(0)?.unwrap();
    let k3_bits = bits(&k3);
    append_both(&mut rng, &mut c, &mut r, 2, 1, "to the brim")?;
    assert_eq!((c.seq_len(), c.capacity()), (4, 4));
    let (k4, _) = c.layer(0)?.unwrap();
    assert!(k4.is_contiguous(), "a full buffer's view is the buffer");
    append_both(&mut rng, &mut c, &mut r, 2, 1, "past the brim")?;
    assert_eq!((c.seq_len(), c.capacity()), (5, 8));
    append_both(&mut rng, &mut c, &mut r, 2, 5, "more than double")?;
    assert_eq!((c.seq_len(), c.capacity()), (10, 16));
    for _ in 0..5 {
        append_both(&mut rng, &mut c, &mut r, 2, 1, "in place")?;
        assert_eq!(c.capacity(), 16);
    }
    let (k, _) = c.layer(0)?.unwrap();
    assert!(!k.is_contiguous(), "a view of the filled prefix, not a copy");
    assert_eq!(k.stride()[1], 16 * D, "heads lie capacity × D apart");
    // Writes past a view's end do not change it.
    assert_eq!(bits(&k3), k3_bits);
    assert_same_tensor(&k3, &r.layers[0].as_ref().unwrap().0.narrow(2, 0, 3)?, "the first view");
    assert_same(&c, &r, "end")?;
    // Without a reservation the first buffer holds what the first append brings.
    let mut c = KvCache::new(1);
    let k = randn(&mut rng, (1, KV, 7, D))?;
    c.append(0, &k, &k)?;
    assert_eq!(c.capacity(), 7);
    c.append(0, &k.narrow(2, 0, 1)?, &k.narrow(2, 0, 1)?)?;
    assert_eq!(c.capacity(), 14);
    // Trimming and selecting rows keep the capacity.
    c.trim_front(3)?;
    assert_eq!((c.seq_len(), c.capacity()), (5, 14));
    c.select_rows(&Tensor::new(&[0u32, 0], &Device::Cpu)?)?;
    assert_eq!((c.seq_len(), c.capacity()), (5, 14));
    Ok(())
}

#[test]
fn a_default_cache_returns_its_buffers_even_for_tracked_inputs() -> Result<()> {
    // Generation with trainable weights: keys and values track gradients, and the cache still
    // answers with views of its buffers (no concatenation, no graph), as under torch.no_grad().
    let mut rng = ChaCha8Rng::seed_from_u64(8);
    let mut c = KvCache::with_capacity(1, 16);
    let mut r = Concat::new();
    for t in [4, 1, 1] {
        let k = Var::from_tensor(&randn(&mut rng, (1, KV, t, D))?)?;
        let v = Var::from_tensor(&randn(&mut rng, (1, KV, t, D))?)?;
        let (ka, va) = c.append(0, &k, &v)?;
        r.append(0, &k, &v)?;
        assert!(!ka.track_op() && !va.track_op(), "no graph through a default cache");
        assert_eq!(ka.stride()[1], 16 * D, "a view of the buffer, not a concatenation");
        let (rk, rv) = r.layers[0].clone().unwrap();
        assert_same_tensor(&ka, &rk, "keys");
        assert_same_tensor(&va, &rv, "values");
    }
    Ok(())
}

#[test]
fn gradients_reach_the_appended_keys_and_values() -> Result<()> {
    let mut rng = ChaCha8Rng::seed_from_u64(7);
    let mut c = KvCache::new(1).tracking_gradients();
    for t in [4, 1] {
        let k = Var::from_tensor(&randn(&mut rng, (1, KV, t, D))?)?;
        let v = Var::from_tensor(&randn(&mut rng, (1, KV, t, D))?)?;
        let (ka, va) = c.append(0, &k, &v)?;
        assert_eq!(ka.dim(2)?, c.seq_len());
        let g = ((ka.sum_all()? * 2.0)? + va.sum_all()?)?.backward()?;
        assert_eq!(g.get(&k).unwrap().flatten_all()?.to_vec1::<f32>()?, vec![2.0; KV * t * D]);
        assert_eq!(g.get(&v).unwrap().flatten_all()?.to_vec1::<f32>()?, vec![1.0; KV * t * D]);
    }
    Ok(())
}

#[test]
fn bad_input_is_an_error() -> Result<()> {
    let mut rng = ChaCha8Rng::seed_from_u64(9);
    let k = randn(&mut rng, (2, KV, 3, D))?;
    let mut c = KvCache::new(LAYERS);
    assert!(c.append(0, &k, &k.narrow(2, 0, 2)?).is_err(), "keys and values of different shapes");
    assert!(c.append(0, &k.flatten_from(2)?, &k.flatten_from(2)?).is_err(), "rank 3");
    c.append(0, &k, &k)?;
    c.append(1, &k, &k)?;
    let other_d = randn(&mut rng, (2, KV, 1, D + 1))?;
    assert!(c.append(0, &other_d, &other_d).is_err(), "another head dim");
    let other_b = randn(&mut rng, (3, KV, 1, D))?;
    assert!(c.append(0, &other_b, &other_b).is_err(), "another batch size");
    assert!(c.append(0, &k.to_dtype(candle_core::DType::BF16)?, &k.to_dtype(candle_core::DType::BF16)?).is_err(), "another dtype");
    assert!(c.trim_front(4).is_err(), "trimming more than is cached");
    assert!(c.select_rows(&Tensor::new(&[0u32, 5], &Device::Cpu)?).is_err(), "a row out of range");
    let mut one_layer = KvCache::new(1);
    one_layer.append(0, &k, &k)?;
    assert!(c.merge_rows(&one_layer).is_err(), "different layer counts");
    let mut wide = KvCache::new(LAYERS);
    wide.append(0, &other_d, &other_d)?;
    wide.append(1, &other_d, &other_d)?;
    assert!(c.merge_rows(&wide).is_err(), "different head dims");
    // Still usable afterwards.
    assert_eq!(c.seq_len(), 3);
    c.append(0, &k, &k)?;
    Ok(())
}
