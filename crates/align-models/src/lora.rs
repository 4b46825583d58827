//! LoRA (Hu et al. 2021, "LoRA: Low-Rank Adaptation of Large Language Models"), compatible with
//! PEFT: `y = base(x) + scale · B(A(dropout(x)))` on chosen linear layers, with A (r, in) and
//! B (out, r) the only trained tensors and the base frozen. `scale = lora_alpha / r`, or
//! `lora_alpha / sqrt(r)` with rsLoRA (Kalajdzievski 2023).
//!
//! How it is wired: every [`Linear`](crate::layers::linear::Linear) and
//! [`Conv1D`](crate::layers::linear::Conv1D) owns a [`LoraSlot`] and registers it, under its HF
//! module name (`model.layers.0.self_attn.q_proj`), while [`Model`] builds the architecture. So
//! any architecture made of these layers supports LoRA with no per-model code, and the module
//! names are exactly PEFT's. [`Model::add_lora`] fills the slots of the matching modules;
//! [`Model::save_lora`] / [`Model::load_lora`] write and read PEFT's `adapter_config.json` +
//! `adapter_model.safetensors` (keys `base_model.model.<module>.lora_A.weight`);
//! [`Model::merge_lora`] folds `scale · B A` into the base weights and [`Model::unmerge_lora`]
//! takes it out again. [`Model::set_lora_enabled`] switches every adapter off at once (PEFT's
//! `disable_adapter()`): the base model is then the DPO/KL reference, with no second copy.

use crate::error::{ModelError, Result};
use crate::hf::Model;
use candle_core::{DType, Device, Tensor, Var};
use serde::{Deserialize, Serialize};
use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};

pub const CONFIG_FILE: &str = "adapter_config.json";
pub const WEIGHTS_FILE: &str = "adapter_model.safetensors";
/// PEFT's prefix of saved adapter keys for a causal LM (`PeftModel.base_model.model`).
pub const KEY_PREFIX: &str = "base_model.model.";

/// Which modules get an adapter: a list of names, each matching a module whose name equals it or
/// ends with `.{name}` (PEFT's rule), or `"all-linear"`: every linear layer except the LM head.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum TargetModules {
    List(Vec<String>),
    One(String),
}

impl Default for TargetModules {
    fn default() -> Self {
        TargetModules::List(vec!["q_proj".into(), "v_proj".into()])
    }
}

/// LoRA settings, with PEFT's field names and defaults (`peft.LoraConfig`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct LoraConfig {
    /// Rank of A and B. PEFT default 8.
    pub r: usize,
    /// Scale numerator: the update is multiplied by `lora_alpha / r`. PEFT default 8.
    pub lora_alpha: f64,
    /// Dropout probability on the adapter's input, in training mode only. PEFT default 0.0.
    pub lora_dropout: f64,
    /// Modules to adapt. PEFT has no default (it uses a per-architecture table); ours is
    /// `["q_proj", "v_proj"]`, the Llama entry of that table. GPT-2's entry is `["c_attn"]`.
    pub target_modules: TargetModules,
    /// Only `"none"` is supported (biases stay frozen).
    pub bias: String,
    /// True when the adapted weights are stored (in, out) (GPT-2's Conv1D). The layout is known
    /// per layer, so this is informational: as in PEFT, it is forced to true when a Conv1D is
    /// adapted and ignored for Linear layers.
    pub fan_in_fan_out: bool,
    /// rsLoRA: scale by `lora_alpha / sqrt(r)` instead of `lora_alpha / r`. PEFT default false.
    pub use_rslora: bool,
    /// Written to `adapter_config.json`; defaults to the directory the base was loaded from.
    pub base_model_name_or_path: Option<String>,
}

impl Default for LoraConfig {
    fn default() -> Self {
        Self {
            r: 8,
            lora_alpha: 8.0,
            lora_dropout: 0.0,
            target_modules: TargetModules::default(),
            bias: "none".into(),
            fan_in_fan_out: false,
            use_rslora: false,
            base_model_name_or_path: None,
        }
    }
}

impl LoraConfig {
    /// A config with rank `r`, `lora_alpha` and the given target module names.
    pub fn new(r: usize, lora_alpha: f64, targets: &[&str]) -> Self {
        Self { r, lora_alpha, target_modules: TargetModules::List(targets.iter().map(|s| s.to_string()).collect()), ..Self::default() }
    }

    /// The factor applied to `B A x`.
    pub fn scale(&self) -> f64 {
        if self.use_rslora {
            self.lora_alpha / (self.r as f64).sqrt()
        } else {
            self.lora_alpha / self.r as f64
        }
    }

    pub fn validate(&self) -> std::result::Result<(), String> {
        if self.r == 0 {
            return Err("r must be at least 1".into());
        }
        if !self.lora_alpha.is_finite() {
            return Err(format!("lora_alpha must be finite, got {}", self.lora_alpha));
        }
        if !(0.0..1.0).contains(&self.lora_dropout) {
            return Err(format!("lora_dropout must be in [0, 1), got {}", self.lora_dropout));
        }
        if self.bias != "none" {
            return Err(format!("bias = {:?} is not supported (only \"none\")", self.bias));
        }
        match &self.target_modules {
            TargetModules::List(v) if v.is_empty() => return Err("target_modules is empty".into()),
            TargetModules::One(s) if s != "all-linear" && s.contains(|c: char| "\\.*+?[](){}|^$".contains(c)) => {
                return Err(format!("target_modules regex {s:?} is not supported; give a list of module names or \"all-linear\""))
            }
            _ => {}
        }
        Ok(())
    }

    /// Whether module `name` is adapted (PEFT's `check_target_module_exists` for lists; a plain
    /// string must match the whole name). `all-linear` is expanded by [`Model::add_lora`].
    pub fn matches(&self, name: &str) -> bool {
        match &self.target_modules {
            TargetModules::One(s) if s == "all-linear" => true,
            TargetModules::One(s) => name == s,
            TargetModules::List(v) => v.iter().any(|t| name == t || name.ends_with(&format!(".{t}"))),
        }
    }

    /// `adapter_config.json` as PEFT writes it (the fields PEFT needs to load it back).
    pub fn to_peft_json(&self) -> serde_json::Value {
        let alpha = if self.lora_alpha.fract() == 0.0 && self.lora_alpha.abs() < 1e15 {
            serde_json::json!(self.lora_alpha as i64)
        } else {
            serde_json::json!(self.lora_alpha)
        };
        serde_json::json!({
            "alpha_pattern": {},
            "auto_mapping": null,
            "base_model_name_or_path": self.base_model_name_or_path,
            "bias": self.bias,
            "exclude_modules": null,
            "fan_in_fan_out": self.fan_in_fan_out,
            "inference_mode": true,
            "init_lora_weights": true,
            "layers_pattern": null,
            "layers_to_transform": null,
            "lora_alpha": alpha,
            "lora_bias": false,
            "lora_dropout": self.lora_dropout,
            "modules_to_save": null,
            "peft_type": "LORA",
            "r": self.r,
            "rank_pattern": {},
            "revision": null,
            "target_modules": self.target_modules,
            "task_type": "CAUSAL_LM",
            "use_dora": false,
            "use_rslora": self.use_rslora,
        })
    }

    /// Reads a PEFT `adapter_config.json`. PEFT features that change the computation and that
    /// align does not implement (DoRA, per-layer ranks, extra saved modules, ...) are errors.
    pub fn from_peft_json(v: &serde_json::Value, path: &Path) -> Result<Self> {
        let err = |msg: String| ModelError::Config { path: path.to_path_buf(), msg };
        let obj = v.as_object().ok_or_else(|| err("not a JSON object".into()))?;
        match obj.get("peft_type").and_then(|t| t.as_str()) {
            Some("LORA") => {}
            other => return Err(err(format!("peft_type is {other:?}, expected \"LORA\""))),
        }
        let is_default = |x: &serde_json::Value| match x {
            serde_json::Value::Null | serde_json::Value::Bool(false) => true,
            serde_json::Value::Object(m) => m.is_empty(),
            serde_json::Value::Array(a) => a.is_empty(),
            _ => false,
        };
        const UNSUPPORTED: [&str; 11] = [
            "use_dora",
            "rank_pattern",
            "alpha_pattern",
            "modules_to_save",
            "layers_to_transform",
            "layers_pattern",
            "exclude_modules",
            "lora_bias",
            "layer_replication",
            "target_parameters",
            "trainable_token_indices",
        ];
        for k in UNSUPPORTED {
            if let Some(x) = obj.get(k) {
                if !is_default(x) {
                    return Err(err(format!("`{k}` = {x} is not supported by align's LoRA")));
                }
            }
        }
        let known = [
            "r",
            "lora_alpha",
            "lora_dropout",
            "target_modules",
            "bias",
            "fan_in_fan_out",
            "use_rslora",
            "base_model_name_or_path",
        ];
        let mut picked = serde_json::Map::new();
        for k in known {
            if let Some(x) = obj.get(k).filter(|x| !x.is_null()) {
                picked.insert(k.into(), x.clone());
            }
        }
        let cfg: LoraConfig = serde_json::from_value(serde_json::Value::Object(picked)).map_err(|e| err(e.to_string()))?;
        cfg.validate().map_err(err)?;
        Ok(cfg)
    }
}

/// State shared by every adapter of one model.
#[derive(Debug)]
struct Shared {
    /// False inside "adapters off" (the reference model of DPO).
    enabled: AtomicBool,
    /// Dropout is applied only in training mode.
    training: AtomicBool,
    /// The dropout RNG (drawn only when training with `lora_dropout > 0`).
    rng: Mutex<align_core::seed::Rng>,
}

#[derive(Debug)]
struct Adapter {
    a: Var, // (r, in)
    b: Var, // (out, r)
    scale: f64,
    dropout: f32,
    merged: bool,
    shared: Arc<Shared>,
}

#[derive(Debug, Default)]
struct SlotInner {
    adapter: Option<Adapter>,
    /// Set for every linear once LoRA is attached: the base weights are used detached, so the
    /// backward pass computes no gradient for them.
    frozen: bool,
}

/// The adapter place of one linear layer. Cloning shares it.
#[derive(Clone, Debug, Default)]
pub struct LoraSlot(Arc<RwLock<SlotInner>>);

impl LoraSlot {
    /// A base parameter as the forward pass should use it: detached once the base is frozen.
    pub fn base(&self, t: &Tensor) -> Tensor {
        if self.0.read().unwrap().frozen {
            t.detach()
        } else {
            t.clone()
        }
    }

    /// `y + scale · (dropout(x) Aᵀ) Bᵀ` when an adapter is attached, enabled and not merged.
    pub fn add_update(&self, x: &Tensor, y: Tensor) -> candle_core::Result<Tensor> {
        let inner = self.0.read().unwrap();
        let Some(ad) = inner.adapter.as_ref() else { return Ok(y) };
        if ad.merged || !ad.shared.enabled.load(Ordering::Relaxed) {
            return Ok(y);
        }
        let x = if ad.dropout > 0.0 && ad.shared.training.load(Ordering::Relaxed) {
            let keep = 1.0 - ad.dropout;
            let mask: Vec<f32> = {
                let mut rng = ad.shared.rng.lock().unwrap();
                (0..x.elem_count())
                    .map(|_| if align_core::seed::uniform(&mut rng) < ad.dropout { 0.0 } else { 1.0 / keep })
                    .collect()
            };
            let mask = Tensor::from_vec(mask, x.shape(), x.device())?.to_dtype(x.dtype())?;
            (x * mask)?
        } else {
            x.clone()
        };
        let h = crate::layers::linear::matmul_last(&x, &ad.a.as_tensor().t()?)?; // (.., r)
        let u = crate::layers::linear::matmul_last(&h, &ad.b.as_tensor().t()?)?; // (.., out)
        y + (u * ad.scale)?
    }
}

/// One linear layer of a built model, as registered by its constructor.
#[derive(Clone, Debug)]
pub struct LinearInfo {
    /// HF module name, e.g. `model.layers.0.mlp.down_proj` (its weight is `{name}.weight`).
    pub name: String,
    pub d_in: usize,
    pub d_out: usize,
    /// True for GPT-2's Conv1D: the weight is stored (in, out).
    pub fan_in_fan_out: bool,
    slot: LoraSlot,
}

thread_local! {
    static BUILDING: RefCell<Option<Vec<LinearInfo>>> = const { RefCell::new(None) };
}

/// Called by the linear layers' constructors: records the layer if a model is being built.
pub(crate) fn register(name: String, d_in: usize, d_out: usize, fan_in_fan_out: bool, slot: &LoraSlot) {
    BUILDING.with(|b| {
        if let Some(v) = b.borrow_mut().as_mut() {
            v.push(LinearInfo { name, d_in, d_out, fan_in_fan_out, slot: slot.clone() });
        }
    });
}

/// Runs a model constructor and returns what it built with the linear layers it registered.
pub(crate) fn collect_linears<T>(build: impl FnOnce() -> T) -> (T, Vec<LinearInfo>) {
    BUILDING.with(|b| *b.borrow_mut() = Some(Vec::new()));
    let out = build();
    let linears = BUILDING.with(|b| b.borrow_mut().take()).unwrap_or_default();
    (out, linears)
}

/// A model's LoRA state: its linear layers and, once attached, the adapter config.
#[derive(Debug)]
pub struct LoraState {
    linears: Vec<LinearInfo>,
    config: Option<LoraConfig>,
    shared: Arc<Shared>,
    /// Directory the base was loaded from (the default `base_model_name_or_path`).
    base_path: Option<String>,
}

impl LoraState {
    pub(crate) fn new(linears: Vec<LinearInfo>, base_path: Option<&Path>) -> Self {
        Self {
            linears,
            config: None,
            shared: Arc::new(Shared {
                enabled: AtomicBool::new(true),
                training: AtomicBool::new(false),
                rng: Mutex::new(align_core::seed::rng(0)),
            }),
            base_path: base_path.map(|p| p.display().to_string()),
        }
    }
}

fn key(module: &str, ab: &str) -> String {
    format!("{KEY_PREFIX}{module}.lora_{ab}.weight")
}

/// PEFT's `kaiming_uniform_(a=sqrt(5))` for A (r, in): U(-1/sqrt(in), 1/sqrt(in)).
fn init_a(r: usize, d_in: usize, seed: u64, name: &str) -> Vec<f32> {
    let mut rng = align_core::seed::fork(seed, &format!("lora/{name}"));
    let bound = 1.0 / (d_in as f32).sqrt();
    (0..r * d_in).map(|_| (2.0 * align_core::seed::uniform(&mut rng) - 1.0) * bound).collect()
}

impl Model {
    /// Every linear layer by HF module name, in build order (what `target_modules` can name).
    pub fn linears(&self) -> &[LinearInfo] {
        &self.lora.linears
    }

    /// The attached LoRA config, if any.
    pub fn lora_config(&self) -> Option<&LoraConfig> {
        self.lora.config.as_ref()
    }

    /// Attaches fresh adapters to the modules `cfg` targets and freezes the base: A is PEFT's
    /// kaiming-uniform (seeded per module from `seed`), B is zero, so the model's output is
    /// unchanged until B is trained. The dropout RNG is also derived from `seed`.
    pub fn add_lora(&mut self, cfg: &LoraConfig, seed: u64) -> Result<()> {
        self.attach(cfg, |info, r| {
            let a = init_a(r, info.d_in, seed, &info.name);
            Ok((Tensor::from_vec(a, (r, info.d_in), &Device::Cpu)?, Tensor::zeros((info.d_out, r), DType::F32, &Device::Cpu)?))
        })?;
        *self.lora.shared.rng.lock().unwrap() = align_core::seed::fork(seed, "lora/dropout");
        Ok(())
    }

    fn attach(&mut self, cfg: &LoraConfig, mut make: impl FnMut(&LinearInfo, usize) -> Result<(Tensor, Tensor)>) -> Result<()> {
        if self.lora.config.is_some() {
            return Err(ModelError::Input("this model already has LoRA adapters".into()));
        }
        cfg.validate().map_err(|m| ModelError::Input(format!("LoRA config: {m}")))?;
        let targets: Vec<usize> = (0..self.lora.linears.len()).filter(|&i| cfg.matches(&self.lora.linears[i].name)).collect();
        if targets.is_empty() {
            let names: BTreeSet<&str> = self.lora.linears.iter().map(|l| l.name.rsplit('.').next().unwrap()).collect();
            return Err(ModelError::Input(format!(
                "LoRA target_modules {:?} match no module of this model (its linear layers: {names:?})",
                cfg.target_modules
            )));
        }
        let mut saved = cfg.clone();
        if saved.target_modules == TargetModules::One("all-linear".into()) {
            // As PEFT: save the expanded list of module-name suffixes.
            let names: BTreeSet<String> = targets.iter().map(|&i| self.lora.linears[i].name.rsplit('.').next().unwrap().to_string()).collect();
            saved.target_modules = TargetModules::List(names.into_iter().collect());
        }
        saved.fan_in_fan_out = targets.iter().any(|&i| self.lora.linears[i].fan_in_fan_out);
        if saved.base_model_name_or_path.is_none() {
            saved.base_model_name_or_path = self.lora.base_path.clone();
        }
        let mut adapters = Vec::with_capacity(targets.len());
        for &i in &targets {
            let info = &self.lora.linears[i];
            let (a, b) = make(info, cfg.r)?;
            let to_var = |t: Tensor| -> Result<Var> { Ok(Var::from_tensor(&t.to_dtype(self.dtype)?.to_device(&self.device)?)?) };
            adapters.push((i, to_var(a)?, to_var(b)?));
        }
        for info in &self.lora.linears {
            info.slot.0.write().unwrap().frozen = true;
        }
        for (i, a, b) in adapters {
            self.lora.linears[i].slot.0.write().unwrap().adapter = Some(Adapter {
                a,
                b,
                scale: cfg.scale(),
                dropout: cfg.lora_dropout as f32,
                merged: false,
                shared: self.lora.shared.clone(),
            });
        }
        self.lora.config = Some(saved);
        Ok(())
    }

    /// The adapter tensors by PEFT's saved name (`base_model.model.<module>.lora_A.weight`), sorted.
    pub fn lora_vars(&self) -> Vec<(String, Var)> {
        let mut out = Vec::new();
        for info in &self.lora.linears {
            if let Some(ad) = info.slot.0.read().unwrap().adapter.as_ref() {
                out.push((key(&info.name, "A"), ad.a.clone()));
                out.push((key(&info.name, "B"), ad.b.clone()));
            }
        }
        out.sort_by(|x, y| x.0.cmp(&y.0));
        out
    }

    /// What the optimizer should train: the adapters when LoRA is attached (the base is frozen),
    /// otherwise every parameter ([`Model::vars`]).
    pub fn trainable_vars(&self) -> Vec<(String, Var)> {
        if self.lora.config.is_some() {
            self.lora_vars()
        } else {
            self.vars()
        }
    }

    /// Turns every adapter on or off (PEFT's `disable_adapter()`); off, the model is the base.
    /// Fails while merged (unmerge first).
    pub fn set_lora_enabled(&self, enabled: bool) -> Result<()> {
        if !enabled && self.lora_merged() {
            return Err(ModelError::Input("cannot disable LoRA adapters while they are merged; call unmerge_lora first".into()));
        }
        self.lora.shared.enabled.store(enabled, Ordering::Relaxed);
        Ok(())
    }

    pub fn lora_enabled(&self) -> bool {
        self.lora.shared.enabled.load(Ordering::Relaxed)
    }

    /// Runs `f` with the adapters off, then restores the previous state: the reference model of
    /// DPO/KL penalties without a second copy of the weights.
    pub fn with_lora_disabled<T>(&self, f: impl FnOnce(&Self) -> T) -> Result<T> {
        let was = self.lora_enabled();
        self.set_lora_enabled(false)?;
        let out = f(self);
        self.lora.shared.enabled.store(was, Ordering::Relaxed);
        Ok(out)
    }

    /// Training mode turns adapter dropout on (with `lora_dropout > 0`). Off by default.
    pub fn set_training(&self, training: bool) {
        self.lora.shared.training.store(training, Ordering::Relaxed);
    }

    pub fn is_training(&self) -> bool {
        self.lora.shared.training.load(Ordering::Relaxed)
    }

    /// The dropout RNG's state, for checkpoints (restore with [`Model::set_lora_rng_state`]).
    pub fn lora_rng_state(&self) -> align_core::seed::RngState {
        align_core::seed::save_state(&self.lora.shared.rng.lock().unwrap())
    }

    pub fn set_lora_rng_state(&self, s: &align_core::seed::RngState) {
        *self.lora.shared.rng.lock().unwrap() = align_core::seed::restore_state(s);
    }

    fn lora_merged(&self) -> bool {
        self.lora.linears.iter().any(|l| l.slot.0.read().unwrap().adapter.as_ref().is_some_and(|a| a.merged))
    }

    /// `W += scale · B A` (transposed for Conv1D) in every adapted layer, so the forward pass
    /// costs what the base costs. `save_pretrained` then writes a plain HF model.
    pub fn merge_lora(&mut self) -> Result<()> {
        self.fold(true)
    }

    /// `W -= scale · B A`: undoes [`Model::merge_lora`] (exact up to float rounding).
    pub fn unmerge_lora(&mut self) -> Result<()> {
        self.fold(false)
    }

    fn fold(&mut self, merge: bool) -> Result<()> {
        if self.lora.config.is_none() {
            return Err(ModelError::Input("no LoRA adapters to merge".into()));
        }
        if merge && !self.lora_enabled() {
            return Err(ModelError::Input("cannot merge LoRA adapters while they are disabled".into()));
        }
        let vars: BTreeMap<String, Var> = self.vars().into_iter().collect();
        for info in &self.lora.linears {
            let mut inner = info.slot.0.write().unwrap();
            let Some(ad) = inner.adapter.as_mut() else { continue };
            if ad.merged == merge {
                continue;
            }
            let w = vars
                .get(&format!("{}.weight", info.name))
                .ok_or_else(|| ModelError::Input(format!("no weight for LoRA module {}", info.name)))?;
            let delta = (ad.b.as_tensor().matmul(ad.a.as_tensor())? * ad.scale)?; // (out, in)
            let delta = if info.fan_in_fan_out { delta.t()?.contiguous()? } else { delta };
            let delta = delta.to_dtype(w.dtype())?;
            let new = if merge { (w.as_tensor() + delta)? } else { (w.as_tensor() - delta)? };
            w.set(&new)?;
            ad.merged = merge;
        }
        Ok(())
    }

    /// Writes `adapter_config.json` and `adapter_model.safetensors` (float32, PEFT's key names)
    /// into `dir`, each file atomically: `PeftModel.from_pretrained(base, dir)` loads them.
    pub fn save_lora(&self, dir: impl AsRef<Path>) -> Result<()> {
        let dir = dir.as_ref();
        let cfg = self.lora.config.as_ref().ok_or_else(|| ModelError::Input("no LoRA adapters to save".into()))?;
        std::fs::create_dir_all(dir).map_err(|e| ModelError::Io { path: dir.into(), source: e })?;
        let text = serde_json::to_string_pretty(&cfg.to_peft_json()).map_err(|e| ModelError::Input(e.to_string()))?;
        align_core::atomic::write_atomic(dir.join(CONFIG_FILE), text.as_bytes())?;
        let tensors: Vec<(String, Tensor)> = self
            .lora_vars()
            .into_iter()
            .map(|(k, v)| Ok((k, v.as_tensor().to_dtype(DType::F32)?.to_device(&Device::Cpu)?)))
            .collect::<Result<_>>()?;
        crate::hf::save_safetensors(dir.join(WEIGHTS_FILE), &tensors)
    }

    /// Attaches the adapter saved in `dir` by PEFT or by [`Model::save_lora`]. Every adapted
    /// module must have both tensors with the config's shapes, and the file no other tensor.
    pub fn load_lora(&mut self, dir: impl AsRef<Path>) -> Result<()> {
        let dir = dir.as_ref();
        let cfg_path = dir.join(CONFIG_FILE);
        let text = std::fs::read_to_string(&cfg_path).map_err(|e| ModelError::Io { path: cfg_path.clone(), source: e })?;
        let v: serde_json::Value =
            serde_json::from_str(&text).map_err(|e| ModelError::Config { path: cfg_path.clone(), msg: e.to_string() })?;
        let cfg = LoraConfig::from_peft_json(&v, &cfg_path)?;
        let path: PathBuf = dir.join(WEIGHTS_FILE);
        let bytes = std::fs::read(&path).map_err(|e| ModelError::Io { path: path.clone(), source: e })?;
        let tensors = candle_core::safetensors::load_buffer(&bytes, &Device::Cpu)
            .map_err(|e| ModelError::Safetensors { path: path.clone(), msg: e.to_string() })?;
        let mut used = BTreeSet::new();
        self.attach(&cfg, |info, r| {
            let mut get = |ab: &str, shape: (usize, usize)| -> Result<Tensor> {
                let k = key(&info.name, ab);
                let t = tensors.get(&k).ok_or_else(|| ModelError::MissingKey { path: path.clone(), key: k.clone() })?;
                if t.dims() != [shape.0, shape.1] {
                    return Err(ModelError::Shape { path: path.clone(), key: k, expected: vec![shape.0, shape.1], got: t.dims().to_vec() });
                }
                used.insert(k);
                Ok(t.clone())
            };
            Ok((get("A", (r, info.d_in))?, get("B", (info.d_out, r))?))
        })?;
        let unused: Vec<&String> = tensors.keys().filter(|k| !used.contains(*k)).collect();
        if !unused.is_empty() {
            self.remove_lora();
            let keys = unused.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(", ");
            return Err(ModelError::UnexpectedKeys { path, keys });
        }
        Ok(())
    }

    /// Detaches every adapter (unmerging first) and unfreezes the base.
    pub fn remove_lora(&mut self) {
        if self.lora_merged() {
            let _ = self.unmerge_lora();
        }
        for info in &self.lora.linears {
            let mut inner = info.slot.0.write().unwrap();
            inner.adapter = None;
            inner.frozen = false;
        }
        self.lora.config = None;
        self.lora.shared.enabled.store(true, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matching_follows_peft() {
        let c = LoraConfig::new(4, 8.0, &["q_proj", "c_proj"]);
        assert!(c.matches("model.layers.0.self_attn.q_proj"));
        assert!(c.matches("q_proj"));
        assert!(!c.matches("model.layers.0.self_attn.xq_proj"));
        assert!(c.matches("transformer.h.1.mlp.c_proj"));
        assert!(!c.matches("transformer.h.1.attn.c_attn"));
        assert_eq!(c.scale(), 2.0);
        assert_eq!(LoraConfig { use_rslora: true, ..c }.scale(), 4.0);
    }

    #[test]
    fn config_json_round_trips_and_rejects_unsupported() {
        let c = LoraConfig { lora_dropout: 0.1, ..LoraConfig::new(4, 16.0, &["q_proj"]) };
        let j = c.to_peft_json();
        assert_eq!(j["lora_alpha"], serde_json::json!(16));
        let back = LoraConfig::from_peft_json(&j, Path::new("x.json")).unwrap();
        assert_eq!(back, c);
        let mut bad = j.clone();
        bad["use_dora"] = serde_json::json!(true);
        let e = LoraConfig::from_peft_json(&bad, Path::new("x.json")).unwrap_err().to_string();
        assert!(e.contains("use_dora") && e.contains("x.json"), "{e}");
        let mut bad = j;
        bad["target_modules"] = serde_json::json!(".*proj");
        assert!(LoraConfig::from_peft_json(&bad, Path::new("x.json")).is_err());
    }
}
