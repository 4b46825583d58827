//! A served model: its name, tokenizer, chat template, stop ids and scheduler thread.

use crate::config::ServeConfig;
use crate::error::ServeError;
use crate::scheduler::Scheduler;
use align_data::{ChatTemplate, Tokenizer};
use align_models::Model;
use candle_core::{DType, Device};
use std::path::Path;
use std::sync::Arc;

pub struct ServedModel {
    /// The name clients pass as `model`.
    pub name: String,
    pub tokenizer: Arc<Tokenizer>,
    /// The tokenizer's chat template (ChatML when it has none), or why it cannot be compiled.
    pub template: Result<ChatTemplate, String>,
    /// Context length in tokens (prompt + completion).
    pub ctx: usize,
    /// Stop ids of completions: the tokenizer's EOS ids.
    pub eos_ids: Vec<u32>,
    /// Stop ids of chat: the EOS ids and the end-of-turn token (`<|im_end|>`) when it exists.
    pub chat_eos_ids: Vec<u32>,
    pub scheduler: Scheduler,
    /// Unix time the model was loaded (`created` of `/v1/models`).
    pub created: u64,
}

impl ServedModel {
    /// Loads `dir` (HF layout with its tokenizer) in f32 on the CPU and starts its scheduler.
    pub fn load(name: &str, dir: &Path, cfg: &ServeConfig) -> Result<Self, ServeError> {
        let model = Model::from_pretrained(dir, DType::F32, &Device::Cpu)
            .map_err(|e| ServeError::Model { name: name.into(), dir: dir.into(), source: Box::new(e) })?;
        let tokenizer =
            Tokenizer::from_dir(dir).map_err(|e| ServeError::Tokenizer { name: name.into(), dir: dir.into(), source: Box::new(e) })?;
        Self::new(name, model, tokenizer, cfg)
    }

    /// Serves an already loaded model (tests, benchmarks).
    pub fn new(name: &str, model: Model, tokenizer: Tokenizer, cfg: &ServeConfig) -> Result<Self, ServeError> {
        let ctx = model.lm.max_positions();
        if ctx < 2 {
            return Err(ServeError::Config { name: name.into(), msg: format!("a context of {ctx} positions leaves no room to generate") });
        }
        let template = ChatTemplate::from_tokenizer(&tokenizer).map_err(|e| e.to_string());
        let eos_ids = tokenizer.eos_ids().to_vec();
        let mut chat_eos_ids = eos_ids.clone();
        if let Some(id) = tokenizer.token_to_id("<|im_end|>") {
            if !chat_eos_ids.contains(&id) {
                chat_eos_ids.push(id);
            }
        }
        let scheduler = Scheduler::spawn(name, model, cfg.max_batch, cfg.batch_wait)?;
        let created = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
        Ok(ServedModel { name: name.into(), tokenizer: Arc::new(tokenizer), template, ctx, eos_ids, chat_eos_ids, scheduler, created })
    }
}
