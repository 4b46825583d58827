//! AdamW over `candle_core::Var`s, written out so that it has parameter groups and a state that can
//! be saved; and gradient clipping by global L2 norm.
//!
//! The update is PyTorch's `torch.optim.AdamW` (non-fused, no amsgrad), step `t` counted from 1:
//!
//! ```text
//! p     <- p * (1 - lr * wd)                   // decoupled weight decay, before the Adam step
//! m     <- b1 * m + (1 - b1) * g
//! v     <- b2 * v + (1 - b2) * g * g
//! p     <- p - (lr / (1 - b1^t)) * m / (sqrt(v) / sqrt(1 - b2^t) + eps)
//! ```
//!
//! Two parameter groups, as HF Trainer builds them: weight decay applies to every parameter except
//! biases and norm weights ([`is_no_decay`]). A parameter without a gradient in a step is left
//! alone (PyTorch skips `p.grad is None`); unlike PyTorch, the step count `t` is shared by all
//! parameters, which differs only for a parameter that misses gradients in some steps.
//!
//! Gradients are passed as `&[Option<Tensor>]` in the order of [`AdamW::params`].

use crate::error::{Result, TrainError};
use candle_core::{DType, Tensor, Var};
use std::collections::HashMap;
use std::path::Path;

/// Hyperparameters of AdamW (the learning rate comes with each step, from the schedule).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AdamWConfig {
    pub beta1: f64,
    pub beta2: f64,
    pub eps: f64,
    pub weight_decay: f64,
}

impl Default for AdamWConfig {
    /// PyTorch's and HF Trainer's defaults, except `weight_decay` (PyTorch 0.01, HF 0.0: HF's).
    fn default() -> Self {
        Self {
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay: 0.0,
        }
    }
}

/// True for parameters that get no weight decay: biases and norm weights, i.e. a name containing
/// `norm`, `ln_` or `bias`, or a tensor of rank 1 (HF Trainer's rule, made name-and-shape based).
pub fn is_no_decay(name: &str, rank: usize) -> bool {
    let n = name.to_ascii_lowercase();
    rank <= 1 || n.contains("norm") || n.contains("ln_") || n.contains("bias")
}

struct Moments {
    decay: bool,
    m: Tensor, // exp_avg, f32
    v: Tensor, // exp_avg_sq, f32
}

pub struct AdamW {
    params: Vec<(String, Var)>,
    state: Vec<Moments>,
    step: u64,
    cfg: AdamWConfig,
}

impl AdamW {
    pub fn new(params: Vec<(String, Var)>, cfg: AdamWConfig) -> Result<Self> {
        let state = params
            .iter()
            .map(|(name, var)| {
                let zeros = Tensor::zeros(var.shape(), DType::F32, var.device())?;
                Ok(Moments {
                    decay: !is_no_decay(name, var.rank()),
                    m: zeros.clone(),
                    v: zeros,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Self {
            params,
            state,
            step: 0,
            cfg,
        })
    }

    pub fn params(&self) -> &[(String, Var)] {
        &self.params
    }

    /// Optimizer steps taken so far.
    pub fn step_count(&self) -> u64 {
        self.step
    }

    /// Names of the parameters that get weight decay (the "decay" group).
    pub fn decay_names(&self) -> Vec<&str> {
        self.params
            .iter()
            .zip(&self.state)
            .filter(|(_, s)| s.decay)
            .map(|((n, _), _)| n.as_str())
            .collect()
    }

    /// One AdamW step with learning rate `lr`; `grads[i]` belongs to `params()[i]`.
    pub fn step(&mut self, grads: &[Option<Tensor>], lr: f64) -> Result<()> {
        assert_eq!(
            grads.len(),
            self.params.len(),
            "one gradient slot per parameter"
        );
        self.step += 1;
        let AdamWConfig {
            beta1: b1,
            beta2: b2,
            eps,
            weight_decay,
        } = self.cfg;
        let t = self.step as i32;
        let step_size = lr / (1.0 - b1.powi(t));
        let bc2_sqrt = (1.0 - b2.powi(t)).sqrt();
        for (((_, var), st), g) in self.params.iter().zip(self.state.iter_mut()).zip(grads) {
            let Some(g) = g else { continue };
            let g = g.to_dtype(DType::F32)?;
            let mut p = var.as_detached_tensor().to_dtype(DType::F32)?;
            if st.decay && weight_decay != 0.0 {
                p = p.affine(1.0 - lr * weight_decay, 0.0)?;
            }
            st.m = ((&st.m * b1)? + (&g * (1.0 - b1))?)?;
            st.v = ((&st.v * b2)? + (g.sqr()? * (1.0 - b2))?)?;
            let denom = st.v.sqrt()?.affine(1.0 / bc2_sqrt, eps)?;
            let p = (p - ((&st.m / denom)? * step_size)?)?;
            var.set(&p.to_dtype(var.dtype())?)?;
        }
        Ok(())
    }

    /// The state as named f32 tensors: `step` (i64, shape [1]) and `{name}.exp_avg`,
    /// `{name}.exp_avg_sq` per parameter (PyTorch's state names).
    pub fn state_tensors(&self) -> Result<HashMap<String, Tensor>> {
        let mut out = HashMap::new();
        let dev = self
            .params
            .first()
            .map(|(_, v)| v.device().clone())
            .unwrap_or(candle_core::Device::Cpu);
        out.insert("step".to_string(), Tensor::new(&[self.step as i64], &dev)?);
        for ((name, _), st) in self.params.iter().zip(&self.state) {
            out.insert(format!("{name}.exp_avg"), st.m.clone());
            out.insert(format!("{name}.exp_avg_sq"), st.v.clone());
        }
        Ok(out)
    }

    /// Writes [`Self::state_tensors`] as safetensors.
    pub fn save(&self, path: impl AsRef<Path>) -> Result<()> {
        candle_core::safetensors::save(&self.state_tensors()?, path.as_ref())?;
        Ok(())
    }

    /// Loads a state written by [`Self::save`]; every parameter must be present with its shape.
    pub fn load(&mut self, path: impl AsRef<Path>) -> Result<()> {
        let path = path.as_ref();
        let dev = self
            .params
            .first()
            .map(|(_, v)| v.device().clone())
            .unwrap_or(candle_core::Device::Cpu);
        let mut t = candle_core::safetensors::load(path, &dev)?;
        let get = |t: &mut HashMap<String, Tensor>, key: &str| {
            t.remove(key).ok_or_else(|| {
                TrainError::checkpoint(path, format!("optimizer state lacks `{key}`"))
            })
        };
        let step = get(&mut t, "step")?
            .to_dtype(DType::I64)?
            .to_vec1::<i64>()?;
        let mut state = Vec::with_capacity(self.params.len());
        for ((name, var), old) in self.params.iter().zip(&self.state) {
            let m = get(&mut t, &format!("{name}.exp_avg"))?.to_dtype(DType::F32)?;
            let v = get(&mut t, &format!("{name}.exp_avg_sq"))?.to_dtype(DType::F32)?;
            for x in [&m, &v] {
                if x.shape() != var.shape() {
                    let msg = format!(
                        "optimizer state of `{name}` has shape {:?}, parameter {:?}",
                        x.shape(),
                        var.shape()
                    );
                    return Err(TrainError::checkpoint(path, msg));
                }
            }
            state.push(Moments {
                decay: old.decay,
                m,
                v,
            });
        }
        self.step = step.first().copied().unwrap_or(0) as u64;
        self.state = state;
        Ok(())
    }
}

/// Global L2 norm of all gradients (as `torch.nn.utils.clip_grad_norm_` computes it).
pub fn grad_norm(grads: &[Option<Tensor>]) -> Result<f64> {
    let mut sum_sq = 0f64;
    for g in grads.iter().flatten() {
        sum_sq += g
            .to_dtype(DType::F32)?
            .sqr()?
            .sum_all()?
            .to_scalar::<f32>()? as f64;
    }
    Ok(sum_sq.sqrt())
}

/// Scales all gradients so that their global L2 norm is at most `max_norm` and returns the norm
/// before clipping, like `torch.nn.utils.clip_grad_norm_`: the factor is
/// `max_norm / (norm + 1e-6)`, applied only when below 1. `max_norm <= 0` disables clipping.
/// A non-finite norm is returned as is and nothing is scaled.
pub fn clip_grad_norm(grads: &mut [Option<Tensor>], max_norm: f64) -> Result<f64> {
    let norm = grad_norm(grads)?;
    let coef = max_norm / (norm + 1e-6);
    if max_norm > 0.0 && norm.is_finite() && coef < 1.0 {
        for g in grads.iter_mut().flatten() {
            *g = g.affine(coef, 0.0)?;
        }
    }
    Ok(norm)
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    /// A scalar AdamW exactly as `torch.optim.AdamW._single_tensor_adamw` computes it, in f64.
    struct RefAdamW {
        m: Vec<f64>,
        v: Vec<f64>,
        t: i32,
    }
    impl RefAdamW {
        fn step(&mut self, p: &mut [f64], g: &[f64], lr: f64, c: AdamWConfig, decay: bool) {
            self.t += 1;
            let bc1 = 1.0 - c.beta1.powi(self.t);
            let bc2 = 1.0 - c.beta2.powi(self.t);
            for i in 0..p.len() {
                if decay {
                    p[i] *= 1.0 - lr * c.weight_decay;
                }
                self.m[i] = c.beta1 * self.m[i] + (1.0 - c.beta1) * g[i];
                self.v[i] = c.beta2 * self.v[i] + (1.0 - c.beta2) * g[i] * g[i];
                let denom = self.v[i].sqrt() / bc2.sqrt() + c.eps;
                p[i] -= lr / bc1 * self.m[i] / denom;
            }
        }
    }

    // The PyTorch code whose numbers the scalar reference reproduces:
    //
    //   import torch
    //   w = torch.nn.Parameter(torch.tensor([[0.5, -1.0], [2.0, 0.25]]))
    //   b = torch.nn.Parameter(torch.tensor([0.1, -0.2]))
    //   opt = torch.optim.AdamW([{"params": [w], "weight_decay": 0.1},
    //                            {"params": [b], "weight_decay": 0.0}],
    //                           lr=1e-2, betas=(0.9, 0.95), eps=1e-8)
    //   for k in range(5):
    //       w.grad = torch.tensor([[0.3, -0.1], [0.05, 1.0]]) * (k + 1) - 0.2 * k
    //       b.grad = torch.tensor([-0.5, 0.7]) / (k + 1)
    //       opt.step()
    //   print(w, b)
    //   # expected: w = [[0.4480803, -0.9495862], [2.0066111, 0.2005627]],  b = [0.1447428, -0.2447428]
    //   # (computed from the same formula in f64; not yet checked against a PyTorch run)
    #[test]
    fn adamw_matches_pytorch_formula() {
        let dev = Device::Cpu;
        let (w0, b0) = ([0.5, -1.0, 2.0, 0.25], [0.1, -0.2]);
        let w = Var::from_vec(w0.iter().map(|&x| x as f32).collect(), (2, 2), &dev).unwrap();
        let b = Var::from_vec(b0.iter().map(|&x| x as f32).collect(), 2, &dev).unwrap();
        let cfg = AdamWConfig {
            beta1: 0.9,
            beta2: 0.95,
            eps: 1e-8,
            weight_decay: 0.1,
        };
        let mut opt = AdamW::new(
            vec![
                ("lin.weight".into(), w.clone()),
                ("lin.bias".into(), b.clone()),
            ],
            cfg,
        )
        .unwrap();
        assert_eq!(opt.decay_names(), vec!["lin.weight"]);

        let (mut wr, mut br) = (w0.to_vec(), b0.to_vec());
        let mut rw = RefAdamW {
            m: vec![0.0; 4],
            v: vec![0.0; 4],
            t: 0,
        };
        let mut rb = RefAdamW {
            m: vec![0.0; 2],
            v: vec![0.0; 2],
            t: 0,
        };
        for k in 0..5 {
            let kf = k as f64;
            let gw: Vec<f64> = [0.3, -0.1, 0.05, 1.0]
                .iter()
                .map(|g| g * (kf + 1.0) - 0.2 * kf)
                .collect();
            let gb: Vec<f64> = [-0.5, 0.7].iter().map(|g| g / (kf + 1.0)).collect();
            let to_t = |g: &[f64], s: &[usize]| {
                Tensor::from_vec(g.iter().map(|&x| x as f32).collect::<Vec<_>>(), s, &dev).unwrap()
            };
            opt.step(&[Some(to_t(&gw, &[2, 2])), Some(to_t(&gb, &[2]))], 1e-2)
                .unwrap();
            rw.step(&mut wr, &gw, 1e-2, cfg, true);
            rb.step(&mut br, &gb, 1e-2, cfg, false);
        }
        let got_w = w.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        let got_b = b.to_vec1::<f32>().unwrap();
        for (g, r) in got_w.iter().zip(&wr).chain(got_b.iter().zip(&br)) {
            assert!((*g as f64 - r).abs() < 2e-6, "{g} vs {r}");
        }
        // Pinned numbers of the reference, printed to 7 digits by a Python transcription of the
        // same formula (PyTorch was not available where this was written).
        let pinned = [
            0.4480803, -0.9495862, 2.0066111, 0.2005627, 0.1447428, -0.2447428,
        ];
        for (r, p) in wr.iter().chain(&br).zip(pinned) {
            assert!((r - p).abs() < 1e-6, "reference {r} vs pinned {p}");
        }
    }

    #[test]
    fn no_decay_rule() {
        assert!(is_no_decay("model.layers.0.input_layernorm.weight", 1));
        assert!(is_no_decay("h.0.ln_1.weight", 2));
        assert!(is_no_decay("lm_head.bias", 2));
        assert!(is_no_decay("anything", 1));
        assert!(!is_no_decay("model.layers.0.mlp.up_proj.weight", 2));
        assert!(!is_no_decay("model.embed_tokens.weight", 2));
    }

    #[test]
    fn clipping_matches_torch() {
        let dev = Device::Cpu;
        // norm of [3, 4] and [12] is 13.
        let mut g = vec![
            Some(Tensor::new(&[3f32, 4.], &dev).unwrap()),
            None,
            Some(Tensor::new(&[12f32], &dev).unwrap()),
        ];
        let n = clip_grad_norm(&mut g, 1.0).unwrap();
        assert!((n - 13.0).abs() < 1e-9);
        let a = g[0].as_ref().unwrap().to_vec1::<f32>().unwrap();
        let coef = 1.0 / (13.0 + 1e-6);
        assert!((a[0] as f64 - 3.0 * coef).abs() < 1e-7 && (a[1] as f64 - 4.0 * coef).abs() < 1e-7);
        // Below the limit: untouched.
        let n = clip_grad_norm(&mut g, 5.0).unwrap();
        assert!((n - 1.0).abs() < 1e-5);
        assert_eq!(g[0].as_ref().unwrap().to_vec1::<f32>().unwrap(), a);
    }

    #[test]
    fn state_round_trips() {
        let dev = Device::Cpu;
        let w = Var::from_vec(vec![1f32, 2., 3., 4.], (2, 2), &dev).unwrap();
        let mut opt = AdamW::new(vec![("w".into(), w.clone())], AdamWConfig::default()).unwrap();
        let g = Tensor::new(&[[0.1f32, -0.2], [0.3, 0.4]], &dev).unwrap();
        opt.step(&[Some(g.clone())], 1e-3).unwrap();
        let d = tempfile::tempdir().unwrap();
        opt.save(d.path().join("o.safetensors")).unwrap();

        let w2 = Var::from_tensor(&w.as_detached_tensor().copy().unwrap()).unwrap();
        let mut opt2 = AdamW::new(vec![("w".into(), w2.clone())], AdamWConfig::default()).unwrap();
        opt2.load(d.path().join("o.safetensors")).unwrap();
        assert_eq!(opt2.step_count(), 1);
        opt.step(&[Some(g.clone())], 1e-3).unwrap();
        opt2.step(&[Some(g)], 1e-3).unwrap();
        let a = w.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        let b = w2.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        assert_eq!(a, b);

        let v = Var::zeros((3, 2), DType::F32, &dev).unwrap();
        let mut bad = AdamW::new(vec![("w".into(), v)], AdamWConfig::default()).unwrap();
        assert!(bad.load(d.path().join("o.safetensors")).is_err());
    }
}
