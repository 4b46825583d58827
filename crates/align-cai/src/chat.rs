//! A chat model: a [`Model`] with its tokenizer and chat template, answering conversations in
//! batches with the shared generator (align-generate). Used by the policy of SL-CAI and RL-CAI
//! and by the local judge.

use crate::error::{CaiError, Result};
use align_data::{ChatTemplate, Message, Tokenizer};
use align_generate::{generate_model, GenerateOptions, SamplingConfig};
use align_models::Model;
use candle_core::{DType, Device};
use std::path::Path;

pub struct ChatModel {
    pub model: Model,
    pub tok: Tokenizer,
    pub template: ChatTemplate,
}

impl ChatModel {
    /// Loads a Hugging Face model directory (weights, tokenizer, chat template) on the CPU.
    pub fn load(dir: &Path) -> Result<Self> {
        let model = Model::from_pretrained(dir, DType::F32, &Device::Cpu)?;
        let tok = Tokenizer::from_dir(dir)?;
        Self::new(model, tok)
    }

    pub fn new(model: Model, tok: Tokenizer) -> Result<Self> {
        let template = ChatTemplate::from_tokenizer(&tok)?;
        Ok(ChatModel { model, tok, template })
    }

    /// The token ids of `messages` rendered by the chat template, with the assistant's
    /// generation prompt when `add_generation_prompt`.
    pub fn encode(&self, messages: &[Message], add_generation_prompt: bool) -> Result<Vec<u32>> {
        let text = self.template.render(messages, add_generation_prompt)?;
        Ok(self.tok.encode(&text, false)?)
    }

    /// The sampling config with the tokenizer's end-of-sequence ids (and ChatML's `<|im_end|>`).
    fn with_eos(&self, cfg: &SamplingConfig) -> SamplingConfig {
        let mut cfg = cfg.clone();
        let im_end = self.tok.token_to_id("<|im_end|>");
        for e in self.tok.eos_ids().iter().copied().chain(im_end) {
            if !cfg.eos_token_ids.contains(&e) {
                cfg.eos_token_ids.push(e);
            }
        }
        cfg
    }

    /// The assistant's next message for each conversation, `batch` conversations at a time.
    /// Conversation `i` samples from stream `streams[i]` (align-generate's per-row streams), so a
    /// reply depends on its conversation, the seed and its stream only, not on the batch.
    /// A conversation that does not fit the model's context gives `None`.
    pub fn reply(&self, convs: &[Vec<Message>], cfg: &SamplingConfig, streams: &[u64], batch: usize) -> Result<Vec<Option<String>>> {
        if streams.len() != convs.len() {
            return Err(CaiError::Invalid(format!("{} streams for {} conversations", streams.len(), convs.len())));
        }
        let cfg = self.with_eos(cfg);
        let ctx = self.model.lm.max_positions();
        let mut encoded = Vec::with_capacity(convs.len());
        for c in convs {
            let ids = self.encode(c, true)?;
            encoded.push(if ids.is_empty() || ids.len() >= ctx { None } else { Some(ids) });
        }
        let fits: Vec<usize> = (0..convs.len()).filter(|&i| encoded[i].is_some()).collect();
        let mut out = vec![None; convs.len()];
        let decode = |ids: &[u32]| self.tok.decode(ids, true).unwrap_or_default();
        for chunk in fits.chunks(batch.max(1)) {
            let prompts: Vec<Vec<u32>> = chunk.iter().filter_map(|&i| encoded[i].clone()).collect();
            let ids: Vec<u64> = chunk.iter().map(|&i| streams[i]).collect();
            let opts = GenerateOptions { decode: Some(&decode), on_token: None, stream_ids: Some(&ids) };
            for (&i, g) in chunk.iter().zip(generate_model(&self.model, &prompts, &cfg, opts)?) {
                let text = self.tok.decode(&g.tokens, true)?;
                out[i] = Some(align_generate::truncate_at_stop(&text, &cfg.stop_strings).trim().to_string());
            }
        }
        Ok(out)
    }
}
