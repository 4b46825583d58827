//! The training loop every method shares.
//!
//! A method provides a [`Step`] (the loss of one micro-batch, plus named metrics) and a
//! [`DataStream`] (batches, with a state to resume from); [`Trainer::fit`] runs, per optimizer step:
//!
//! ```text
//! for each of grad_accum micro-batches:  batch -> loss -> (loss / grad_accum).backward() -> sum grads
//! clip grads to max_grad_norm -> lr from schedule -> AdamW step
//! log every log_every, eval every eval_every, checkpoint every save_every and at max_steps
//! ```
//!
//! A NaN or infinite loss, gradient norm or eval loss stops training with
//! [`TrainError::NonFinite`] before the optimizer step or the checkpoint that would use it.

use crate::checkpoint::{self, CheckpointHook, TrainerState};
use crate::error::{Result, TrainError};
use crate::optim::{clip_grad_norm, AdamW, AdamWConfig};
use crate::schedule::{LrScheduler, Schedule};
use align_core::metrics::{MetricsSink, Record};
use align_models::kernels::{set_matmul_precision, MatmulPrecision};
use candle_core::backprop::GradStore;
use candle_core::{DType, Tensor, Var};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// Where batches come from. The state must be enough to continue the exact same sequence of
/// batches after [`DataStream::restore`] (position, shuffling RNG, epoch).
pub trait DataStream {
    type Batch;
    fn next_batch(&mut self) -> Result<Self::Batch>;
    fn state(&self) -> Value;
    fn restore(&mut self, state: &Value) -> Result<()>;
    /// Fractional epoch, logged as `epoch` when given.
    fn epoch(&self) -> Option<f64> {
        None
    }
}

/// What one training step of a method computes.
pub trait Step<B> {
    /// The loss of one micro-batch (a scalar, the mean over its tokens or examples) and named
    /// metrics (numbers; `num_tokens`, the tokens in the batch, is summed and gives tokens/s).
    fn loss(&mut self, batch: &B) -> Result<(Tensor, Record)>;
    /// State to checkpoint besides the parameters: the step's own RNGs (dropout, sampling).
    fn state(&self) -> Value {
        Value::Null
    }
    fn restore(&mut self, _state: &Value) -> Result<()> {
        Ok(())
    }
}

/// Restores the matmul precision that was in force before [`Trainer::fit`] when dropped.
struct PrecisionGuard(MatmulPrecision);

impl Drop for PrecisionGuard {
    fn drop(&mut self) {
        set_matmul_precision(self.0);
    }
}

/// Restores the activation-checkpointing setting in force before [`Trainer::fit`] when dropped.
struct CheckpointingGuard(bool);

impl Drop for CheckpointingGuard {
    fn drop(&mut self) {
        align_models::checkpoint::set_activation_checkpointing(self.0);
    }
}

/// The loop's configuration. Every field has a default (HF Trainer's where it has one);
/// unknown keys are an error, so a typo in a TOML file does not pass silently.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TrainConfig {
    /// Peak learning rate. HF `learning_rate` 5e-5 (fine-tuning); our pretraining configs set ~1e-3.
    pub lr: f64,
    /// Decoupled weight decay of the decay group (not biases or norm weights). HF `weight_decay` 0.0;
    /// PyTorch's AdamW default is 0.01, nanoGPT uses 0.1.
    pub weight_decay: f64,
    /// HF `adam_beta1` 0.9.
    pub beta1: f64,
    /// HF `adam_beta2` 0.999 (nanoGPT 0.95).
    pub beta2: f64,
    /// HF `adam_epsilon` 1e-8.
    pub eps: f64,
    /// Clip the global gradient L2 norm to this; 0 disables clipping. HF `max_grad_norm` 1.0.
    pub max_grad_norm: f64,
    /// Steps of linear warmup from 0 to `lr`. HF `warmup_steps` 0.
    pub warmup_steps: u64,
    /// "cosine" | "linear" | "constant". HF `lr_scheduler_type` "linear"; ours "cosine" (nanoGPT, TRL recipes).
    pub lr_scheduler: LrScheduler,
    /// Decay floor as a fraction of `lr`. 0 is HF's cosine; HF `lr_scheduler_kwargs.min_lr_rate`.
    pub min_lr_ratio: f64,
    /// Optimizer steps to train; must be set (> 0). HF `max_steps` (-1 there means "use epochs").
    pub max_steps: u64,
    /// Micro-batches per optimizer step. HF `gradient_accumulation_steps` 1.
    pub grad_accum: u64,
    /// Log to metrics.jsonl every this many steps. HF `logging_steps` 500; ours 10.
    pub log_every: u64,
    /// Evaluate every this many steps; 0 = never. HF `eval_steps` (with `eval_strategy` "no" by default).
    pub eval_every: u64,
    /// Checkpoint every this many steps; 0 = only at the end. HF `save_steps` 500.
    pub save_every: u64,
    /// Checkpoints kept (oldest removed); 0 keeps all. HF `save_total_limit` None (all).
    pub save_total_limit: usize,
    /// The run's seed: callers fork their init, data and step RNGs from it
    /// (`align_core::seed::fork(seed, purpose)`); the loop itself draws no random numbers. HF `seed` 42.
    pub seed: u64,
    /// No progress bar. HF `disable_tqdm` false.
    pub quiet: bool,
    /// Stop when the eval loss has not improved for this many evaluations (a final checkpoint is
    /// written); 0 = never. HF `EarlyStoppingCallback(early_stopping_patience)`.
    pub early_stopping_patience: u64,
    /// "f32" | "bf16": the precision of the linear layers' matmuls while `fit` runs
    /// (`align_models::kernels::set_matmul_precision`; the previous one is restored when it
    /// returns). "bf16" rounds the operands to bf16 and accumulates in f32 on CPUs with
    /// AVX512_BF16; weights, gradients and optimizer states stay f32. The peer is PyTorch's
    /// `torch.set_float32_matmul_precision("medium")`. Default "f32".
    pub matmul_precision: String,
    /// Recompute each decoder block in the backward instead of keeping its activations
    /// (`align_models::checkpoint`; HF `gradient_checkpointing`, default false): less memory,
    /// one more forward pass per step. f32 CPU Llama-family blocks; others run as usual.
    pub activation_checkpointing: bool,
    /// Where the model trains: "cpu", "cuda" or "cuda:N" (`align_models::device`; CUDA needs a
    /// binary built with `--features cuda`, docs/cuda.md). HF `TrainingArguments` picks the GPU
    /// when there is one (`use_cpu` false); we default to "cpu" and make the choice explicit.
    pub device: String,
}

impl Default for TrainConfig {
    fn default() -> Self {
        Self {
            lr: 5e-5,
            weight_decay: 0.0,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            max_grad_norm: 1.0,
            warmup_steps: 0,
            lr_scheduler: LrScheduler::Cosine,
            min_lr_ratio: 0.0,
            max_steps: 0,
            grad_accum: 1,
            log_every: 10,
            eval_every: 0,
            save_every: 0,
            save_total_limit: 2,
            seed: 42,
            quiet: false,
            early_stopping_patience: 0,
            matmul_precision: "f32".into(),
            activation_checkpointing: false,
            device: "cpu".into(),
        }
    }
}

/// Opens the device a run trains on (`TrainConfig::device`).
pub fn device_of(cfg: &TrainConfig) -> Result<candle_core::Device> {
    align_models::device::parse_device(&cfg.device).map_err(|e| TrainError::Config(e.to_string()))
}

impl TrainConfig {
    /// Parses a TOML table (unknown keys are errors) and validates it.
    pub fn from_toml(text: &str) -> Result<Self> {
        let cfg: Self = toml::from_str(text).map_err(|e| TrainError::Config(e.to_string()))?;
        cfg.validate()?;
        Ok(cfg)
    }

    pub fn validate(&self) -> Result<()> {
        let bad = |m: &str| Err(TrainError::Config(m.to_string()));
        if self.max_steps == 0 {
            return bad("max_steps must be > 0");
        }
        if self.grad_accum == 0 {
            return bad("grad_accum must be >= 1");
        }
        if !(self.lr.is_finite() && self.lr >= 0.0) {
            return bad("lr must be finite and >= 0");
        }
        if !(0.0..1.0).contains(&self.beta1) || !(0.0..1.0).contains(&self.beta2) {
            return bad("beta1 and beta2 must be in [0, 1)");
        }
        // Written so that NaN fails too.
        let (positive, non_negative) = (|x: f64| x > 0.0, |x: f64| x >= 0.0);
        if !positive(self.eps)
            || !non_negative(self.weight_decay)
            || !non_negative(self.max_grad_norm)
        {
            return bad("eps must be > 0; weight_decay and max_grad_norm >= 0");
        }
        if !(0.0..=1.0).contains(&self.min_lr_ratio) {
            return bad("min_lr_ratio must be in [0, 1]");
        }
        if self.log_every == 0 {
            return bad("log_every must be >= 1");
        }
        self.matmul_precision.parse::<MatmulPrecision>().map_err(TrainError::Config)?;
        align_models::device::check_device_spec(&self.device).map_err(|e| TrainError::Config(e.to_string()))?;
        Ok(())
    }

    fn schedule(&self) -> Schedule {
        Schedule {
            kind: self.lr_scheduler,
            lr: self.lr,
            warmup_steps: self.warmup_steps,
            total_steps: self.max_steps,
            min_lr_ratio: self.min_lr_ratio,
        }
    }
}

/// The parameters of a `VarMap`, sorted by name (the order every align optimizer and checkpoint uses).
pub fn params_by_name(varmap: &candle_nn::VarMap) -> Vec<(String, Var)> {
    let data = varmap.data().lock().unwrap();
    let mut params: Vec<(String, Var)> = data.iter().map(|(n, v)| (n.clone(), v.clone())).collect();
    params.sort_by(|a, b| a.0.cmp(&b.0));
    params
}

/// An evaluation: given the step (which owns the model), the mean eval loss.
pub type EvalFn<'a, S> = dyn FnMut(&mut S) -> Result<f64> + 'a;

/// What [`Trainer::fit`] ends with.
#[derive(Debug, Clone, PartialEq)]
pub struct FitSummary {
    pub step: u64,
    /// Loss of the last step taken by this call (None if it took none).
    pub last_loss: Option<f64>,
    pub best_eval_loss: Option<f64>,
}

pub struct Trainer {
    config: TrainConfig,
    out_dir: PathBuf,
    opt: AdamW,
    schedule: Schedule,
    step: u64,
    num_tokens: u64,
    best_eval_loss: Option<f64>,
    /// Evaluations since the eval loss last improved (early stopping).
    evals_without_improvement: u64,
    hook: Option<CheckpointHook>,
}

impl Trainer {
    /// A trainer over `params` (names are the checkpoint keys), writing into `out_dir`.
    pub fn new(
        config: TrainConfig,
        params: Vec<(String, Var)>,
        out_dir: impl Into<PathBuf>,
    ) -> Result<Self> {
        config.validate()?;
        let adamw = AdamWConfig {
            beta1: config.beta1,
            beta2: config.beta2,
            eps: config.eps,
            weight_decay: config.weight_decay,
        };
        Ok(Self {
            schedule: config.schedule(),
            opt: AdamW::new(params, adamw)?,
            config,
            out_dir: out_dir.into(),
            step: 0,
            num_tokens: 0,
            best_eval_loss: None,
            evals_without_improvement: 0,
            hook: None,
        })
    }

    /// Called with each checkpoint directory while it is being built, to add files (config.json,
    /// tokenizer.json, ...).
    pub fn set_checkpoint_hook(&mut self, hook: impl Fn(&Path) -> Result<()> + 'static) {
        self.hook = Some(Box::new(hook));
    }

    pub fn config(&self) -> &TrainConfig {
        &self.config
    }
    pub fn out_dir(&self) -> &Path {
        &self.out_dir
    }
    /// Optimizer steps completed.
    pub fn step(&self) -> u64 {
        self.step
    }
    pub fn params(&self) -> &[(String, Var)] {
        self.opt.params()
    }
    pub fn optimizer(&self) -> &AdamW {
        &self.opt
    }
    pub fn best_eval_loss(&self) -> Option<f64> {
        self.best_eval_loss
    }
    pub fn metrics_path(&self) -> PathBuf {
        self.out_dir.join("metrics.jsonl")
    }

    /// Loads the newest checkpoint under `out_dir`, if any, and returns its step.
    pub fn resume<S: Step<D::Batch>, D: DataStream>(
        &mut self,
        step: &mut S,
        data: &mut D,
    ) -> Result<Option<u64>> {
        match checkpoint::latest(&self.out_dir)? {
            Some(dir) => self.resume_from(&dir, step, data).map(Some),
            None => Ok(None),
        }
    }

    /// Loads checkpoint `dir`: parameters (by name; shapes must match), optimizer state, data and
    /// step state, counters; truncates metrics.jsonl to the checkpoint's step.
    pub fn resume_from<S: Step<D::Batch>, D: DataStream>(
        &mut self,
        dir: &Path,
        step: &mut S,
        data: &mut D,
    ) -> Result<u64> {
        let state = checkpoint::load_state(dir)?;
        checkpoint::load_params(dir, self.opt.params())?;
        self.opt.load(dir.join(checkpoint::OPTIMIZER_FILE))?;
        if self.opt.step_count() != state.step {
            let msg = format!(
                "optimizer has {} steps, trainer state {}",
                self.opt.step_count(),
                state.step
            );
            return Err(TrainError::checkpoint(dir, msg));
        }
        data.restore(&state.data_state)?;
        step.restore(&state.step_state)?;
        if state.config != self.config {
            tracing::warn!(
                "resuming from {} with a config that differs from the checkpoint's",
                dir.display()
            );
        }
        self.step = state.step;
        self.num_tokens = state.num_tokens;
        self.best_eval_loss = state.best_eval_loss;
        MetricsSink::truncate_after_step(self.metrics_path(), self.step)?;
        tracing::info!("resumed from {} at step {}", dir.display(), self.step);
        Ok(self.step)
    }

    /// Trains from the current step to `max_steps`. `eval`, if given, returns the mean eval loss.
    pub fn fit<S: Step<D::Batch>, D: DataStream>(
        &mut self,
        step: &mut S,
        data: &mut D,
        mut eval: Option<&mut EvalFn<'_, S>>,
    ) -> Result<FitSummary> {
        let cfg = self.config.clone();
        let precision = cfg.matmul_precision.parse::<MatmulPrecision>().map_err(TrainError::Config)?;
        let _precision = PrecisionGuard(set_matmul_precision(precision));
        let _checkpointing = CheckpointingGuard(align_models::checkpoint::set_activation_checkpointing(cfg.activation_checkpointing));
        let accum = cfg.grad_accum;
        MetricsSink::truncate_after_step(self.metrics_path(), self.step)?;
        let mut sink = MetricsSink::open(self.metrics_path())?;
        let bar = progress_bar(&cfg, self.step);
        let (mut window_start, mut window_tokens) = (Instant::now(), 0u64);
        let mut last_loss = None;

        while self.step < cfg.max_steps {
            let t = self.step + 1; // the step being taken, 1-based as logged
                                   // 1. forward and backward over grad_accum micro-batches; grads summed
            let mut grads: Vec<Option<Tensor>> = vec![None; self.opt.params().len()];
            let mut loss_sum = 0f64;
            let mut micro = Vec::with_capacity(accum as usize);
            for _ in 0..accum {
                let batch = data.next_batch()?;
                let (loss, metrics) = step.loss(&batch)?;
                let l = loss.to_dtype(DType::F32)?.to_scalar::<f32>()? as f64;
                if !l.is_finite() {
                    return Err(TrainError::NonFinite {
                        step: t,
                        what: "loss".into(),
                    });
                }
                loss_sum += l / accum as f64;
                let scaled = if accum == 1 {
                    loss
                } else {
                    loss.affine(1.0 / accum as f64, 0.0)?
                };
                // Parameter gradients of checkpointed blocks arrive apart from the main store.
                align_models::checkpoint::clear_pending_grads();
                let mut g = scaled.backward()?;
                align_models::checkpoint::merge_pending_grads(&mut g)?;
                accumulate_grads(&mut grads, &g, self.opt.params())?;
                micro.push(metrics);
            }
            // 2. clip, 3. learning rate, 4. AdamW
            let grad_norm = clip_grad_norm(&mut grads, cfg.max_grad_norm)?;
            if !grad_norm.is_finite() {
                return Err(TrainError::NonFinite {
                    step: t,
                    what: "grad_norm".into(),
                });
            }
            let lr = self.schedule.lr(self.step);
            self.opt.step(&grads, lr)?;
            drop(grads);
            self.step = t;
            last_loss = Some(loss_sum);

            // 5. log
            let metrics = mean_metrics(&micro);
            let step_tokens = metrics
                .get("num_tokens")
                .and_then(Value::as_f64)
                .map(|n| n as u64);
            self.num_tokens += step_tokens.unwrap_or(0);
            window_tokens += step_tokens.unwrap_or(0);
            bar.set_position(t);
            bar.set_message(format!("loss {loss_sum:.4} lr {lr:.2e}"));
            if every(t, cfg.log_every) {
                let mut rec = metrics;
                rec.insert("step".into(), json!(t));
                rec.insert("loss".into(), json!(loss_sum));
                rec.insert("learning_rate".into(), json!(lr));
                rec.insert("grad_norm".into(), json!(grad_norm));
                if step_tokens.is_some() {
                    let secs = window_start.elapsed().as_secs_f64().max(1e-9);
                    let tps = window_tokens as f64 / secs;
                    rec.insert("num_tokens".into(), json!(self.num_tokens));
                    rec.insert("tokens_per_second".into(), json!(tps));
                    bar.set_message(format!("loss {loss_sum:.4} lr {lr:.2e} tok/s {tps:.0}"));
                }
                if let Some(epoch) = data.epoch() {
                    rec.insert("epoch".into(), json!(epoch));
                }
                sink.log(&rec)?;
                tracing::debug!(step = t, loss = loss_sum, lr, grad_norm, "train");
                (window_start, window_tokens) = (Instant::now(), 0);
            }

            // 6. eval
            if let Some(eval) = eval.as_mut().filter(|_| every(t, cfg.eval_every)) {
                let eval_loss = eval(step)?;
                if !eval_loss.is_finite() {
                    return Err(TrainError::NonFinite {
                        step: t,
                        what: "eval_loss".into(),
                    });
                }
                let improved = self.best_eval_loss.is_none_or(|b| eval_loss < b);
                self.evals_without_improvement = if improved { 0 } else { self.evals_without_improvement + 1 };
                self.best_eval_loss =
                    Some(self.best_eval_loss.map_or(eval_loss, |b| b.min(eval_loss)));
                let rec = [
                    ("step", json!(t)),
                    ("eval_loss", json!(eval_loss)),
                    ("eval_ppl", json!(eval_loss.exp())),
                ];
                sink.log(&rec.into_iter().map(|(k, v)| (k.to_string(), v)).collect())?;
                bar.println(format!("step {t}: eval_loss {eval_loss:.4}"));
            }

            // 7. checkpoint (and early stop)
            let stop = cfg.early_stopping_patience > 0 && self.evals_without_improvement >= cfg.early_stopping_patience;
            if every(t, cfg.save_every) || t == cfg.max_steps || stop {
                self.save_checkpoint(step, data)?;
            }
            if stop {
                bar.println(format!("step {t}: eval loss has not improved for {} evaluations: stopping early", cfg.early_stopping_patience));
                tracing::info!("early stop at step {t}");
                break;
            }
        }
        bar.finish_and_clear();
        Ok(FitSummary {
            step: self.step,
            last_loss,
            best_eval_loss: self.best_eval_loss,
        })
    }

    /// Writes a checkpoint of the current state (refusing if any weight is not finite).
    pub fn save_checkpoint<S: Step<D::Batch>, D: DataStream>(
        &self,
        step: &S,
        data: &D,
    ) -> Result<PathBuf> {
        for (name, var) in self.opt.params() {
            let sum = var
                .as_detached_tensor()
                .to_dtype(DType::F32)?
                .abs()?
                .sum_all()?
                .to_scalar::<f32>()?;
            if !sum.is_finite() {
                return Err(TrainError::NonFinite {
                    step: self.step,
                    what: format!("weights ({name})"),
                });
            }
        }
        let state = TrainerState {
            step: self.step,
            num_tokens: self.num_tokens,
            best_eval_loss: self.best_eval_loss,
            data_state: data.state(),
            step_state: step.state(),
            config: self.config.clone(),
        };
        let dir = checkpoint::save(
            &self.out_dir,
            &self.opt,
            &state,
            self.hook.as_ref(),
            self.config.save_total_limit,
        )?;
        tracing::info!("saved {}", dir.display());
        Ok(dir)
    }
}

/// Adds one micro-batch's parameter gradients into `acc` (`acc[i]` belongs to `params[i]`).
/// The one place gradients are combined: data-parallel training all-reduces `acc` here, after the
/// last micro-batch.
pub fn accumulate_grads(
    acc: &mut [Option<Tensor>],
    store: &GradStore,
    params: &[(String, Var)],
) -> Result<()> {
    for (slot, (_, var)) in acc.iter_mut().zip(params) {
        if let Some(g) = store.get(var.as_tensor()) {
            *slot = Some(match slot.take() {
                None => g.clone(),
                Some(a) => (a + g)?,
            });
        }
    }
    Ok(())
}

/// True at every `n`-th step; never when `n` is 0.
#[allow(clippy::manual_is_multiple_of)] // u64::is_multiple_of needs Rust 1.87; the workspace allows 1.85
fn every(t: u64, n: u64) -> bool {
    n > 0 && t % n == 0
}

/// Micro-batch metrics combined: numbers averaged, except `num_tokens`, which is summed.
fn mean_metrics(micro: &[Record]) -> Record {
    let mut sums: std::collections::BTreeMap<String, (f64, usize)> = Default::default();
    let mut out = Record::new();
    for rec in micro {
        for (k, v) in rec {
            match v.as_f64() {
                Some(x) => {
                    let e = sums.entry(k.clone()).or_insert((0.0, 0));
                    e.0 += x;
                    e.1 += 1;
                }
                None => {
                    out.insert(k.clone(), v.clone());
                }
            }
        }
    }
    for (k, (sum, n)) in sums {
        let v = if k == "num_tokens" {
            sum
        } else {
            sum / n as f64
        };
        out.insert(k, json!(v));
    }
    out
}

fn progress_bar(cfg: &TrainConfig, start: u64) -> indicatif::ProgressBar {
    if cfg.quiet || !std::io::stderr().is_terminal() {
        return indicatif::ProgressBar::hidden();
    }
    let style = indicatif::ProgressStyle::with_template(
        "{bar:30} {pos}/{len} [{elapsed_precise}<{eta_precise}] {msg}",
    )
    .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar());
    let bar = indicatif::ProgressBar::new(cfg.max_steps).with_style(style);
    bar.set_position(start);
    bar
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_rejects_unknown_keys_and_reads_defaults() {
        let cfg = TrainConfig::from_toml("lr = 1e-3\nmax_steps = 100\nlr_scheduler = \"linear\"")
            .unwrap();
        assert_eq!(cfg.lr, 1e-3);
        assert_eq!(cfg.lr_scheduler, LrScheduler::Linear);
        assert_eq!(cfg.beta2, 0.999);
        let err = TrainConfig::from_toml("lr = 1e-3\nmax_step = 100").unwrap_err();
        assert!(err.to_string().contains("max_step"), "{err}");
        assert!(
            TrainConfig::from_toml("lr = 1e-3").is_err(),
            "max_steps is required"
        );
        assert!(TrainConfig::from_toml("max_steps = 3\nlr_scheduler = \"cosin\"").is_err());
        assert_eq!(cfg.matmul_precision, "f32");
        let bf16 = TrainConfig::from_toml("max_steps = 3\nmatmul_precision = \"bf16\"").unwrap();
        assert_eq!(bf16.matmul_precision, "bf16");
        let err = TrainConfig::from_toml("max_steps = 3\nmatmul_precision = \"fp8\"").unwrap_err();
        assert!(err.to_string().contains("fp8"), "{err}");
        assert_eq!(cfg.device, "cpu");
        assert!(device_of(&cfg).unwrap().is_cpu());
        let err = TrainConfig::from_toml("max_steps = 3\ndevice = \"tpu\"").unwrap_err();
        assert!(err.to_string().contains("`tpu`"), "{err}");
        let cuda = TrainConfig::from_toml("max_steps = 3\ndevice = \"cuda:0\"");
        if align_models::device::CUDA_BUILT {
            assert_eq!(cuda.unwrap().device, "cuda:0");
        } else {
            let err = cuda.unwrap_err().to_string();
            assert!(err.contains("--features cuda"), "{err}");
        }
    }

    #[test]
    fn metrics_are_averaged_and_tokens_summed() {
        let a: Record = [
            ("acc".to_string(), json!(1.0)),
            ("num_tokens".to_string(), json!(10)),
        ]
        .into();
        let b: Record = [
            ("acc".to_string(), json!(0.0)),
            ("num_tokens".to_string(), json!(6)),
        ]
        .into();
        let m = mean_metrics(&[a, b]);
        assert_eq!(m["acc"], json!(0.5));
        assert_eq!(m["num_tokens"], json!(16.0));
    }
}
