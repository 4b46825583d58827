//! Where a model's weights come from, and the trainable `Var`s that hold them.
//!
//! A model file asks its `VarBuilder` for `model.layers.0.self_attn.q_proj.weight` with a shape
//! and an init hint; [`ParamStore`] answers either from loaded safetensors (checking the shape,
//! converting to the model dtype) or with a seeded initialisation (each tensor from its own
//! RNG stream derived from the seed and its name, so the result does not depend on build order).
//! Every tensor handed out is a `Var`, kept by name for the optimizer and for saving.

use candle_core::{DType, Device, Shape, Tensor, Var};
use candle_nn::Init;
use rand_distr::Distribution;
use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

pub enum Source {
    /// Seeded init: normal(0, `std`) for matrices, the hint's constant for norms and biases.
    Init { seed: u64, std: f64 },
    /// Tensors loaded from files; `origin` maps each key to the file it came from.
    Tensors { tensors: BTreeMap<String, Tensor>, origin: BTreeMap<String, PathBuf>, default_file: PathBuf },
}

pub struct ParamStore {
    source: Source,
    vars: Mutex<BTreeMap<String, Var>>,
    used: Mutex<BTreeSet<String>>,
    /// The first structured error met while building (candle's error type cannot carry it).
    error: Mutex<Option<crate::ModelError>>,
}

impl ParamStore {
    pub fn new(source: Source) -> Arc<Self> {
        Arc::new(Self { source, vars: Mutex::new(BTreeMap::new()), used: Mutex::new(BTreeSet::new()), error: Mutex::new(None) })
    }

    /// The trainable parameters by name (sorted).
    pub fn vars(&self) -> Vec<(String, Var)> {
        self.vars.lock().unwrap().iter().map(|(k, v)| (k.clone(), v.clone())).collect()
    }

    /// Loaded keys that the model never asked for.
    pub fn unused_keys(&self) -> Vec<String> {
        match &self.source {
            Source::Init { .. } => vec![],
            Source::Tensors { tensors, .. } => {
                let used = self.used.lock().unwrap();
                tensors.keys().filter(|k| !used.contains(*k)).cloned().collect()
            }
        }
    }

    fn fail(&self, e: crate::ModelError) -> candle_core::Error {
        let msg = e.to_string();
        self.error.lock().unwrap().get_or_insert(e);
        candle_core::Error::Msg(msg)
    }

    /// Replaces a candle error from model construction by the structured error behind it, if any.
    pub fn build_error(&self, e: candle_core::Error) -> crate::ModelError {
        self.error.lock().unwrap().take().unwrap_or(crate::ModelError::Candle(e))
    }

    fn make(&self, shape: &Shape, name: &str, hint: Init, dtype: DType, dev: &Device) -> candle_core::Result<Tensor> {
        match &self.source {
            Source::Init { seed, std } => {
                let n = shape.elem_count();
                let data: Vec<f32> = match hint {
                    Init::Const(c) => vec![c as f32; n],
                    _ => {
                        let mut rng = align_core::seed::fork(*seed, name);
                        let normal = rand_distr::Normal::new(0f32, *std as f32).unwrap();
                        (0..n).map(|_| normal.sample(&mut rng)).collect()
                    }
                };
                Tensor::from_vec(data, shape, dev)?.to_dtype(dtype)
            }
            Source::Tensors { tensors, origin, default_file } => {
                let file = origin.get(name).unwrap_or(default_file).display().to_string();
                let Some(t) = tensors.get(name) else {
                    return Err(self.fail(crate::ModelError::MissingKey { path: file.into(), key: name.into() }));
                };
                if t.dims() != shape.dims() {
                    return Err(self.fail(crate::ModelError::Shape {
                        path: file.into(),
                        key: name.into(),
                        expected: shape.dims().to_vec(),
                        got: t.dims().to_vec(),
                    }));
                }
                self.used.lock().unwrap().insert(name.to_string());
                t.to_dtype(dtype)?.to_device(dev)
            }
        }
    }
}

/// The `SimpleBackend` given to `VarBuilder::from_backend`.
pub struct Backend(pub Arc<ParamStore>);

impl candle_nn::var_builder::SimpleBackend for Backend {
    fn get(&self, s: Shape, name: &str, h: Init, dtype: DType, dev: &Device) -> candle_core::Result<Tensor> {
        if let Some(v) = self.0.vars.lock().unwrap().get(name) {
            if v.shape() != &s {
                candle_core::bail!("parameter {name} requested with shape {s:?} and {:?}", v.shape())
            }
            return Ok(v.as_tensor().clone());
        }
        let t = self.0.make(&s, name, h, dtype, dev)?;
        let var = Var::from_tensor(&t)?;
        let out = var.as_tensor().clone();
        self.0.vars.lock().unwrap().insert(name.to_string(), var);
        Ok(out)
    }

    fn get_unchecked(&self, name: &str, dtype: DType, dev: &Device) -> candle_core::Result<Tensor> {
        match self.0.vars.lock().unwrap().get(name) {
            Some(v) => v.as_tensor().to_dtype(dtype)?.to_device(dev),
            None => candle_core::bail!("parameter {name} is unknown"),
        }
    }

    fn contains_tensor(&self, name: &str) -> bool {
        self.0.vars.lock().unwrap().contains_key(name)
            || matches!(&self.0.source, Source::Tensors { tensors, .. } if tensors.contains_key(name))
    }
}

