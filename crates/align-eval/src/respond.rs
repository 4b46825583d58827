//! A model's responses to a list of prompts, generated in batches with the shared generator.

use crate::Result;
use align_data::{ChatTemplate, Message, Tokenizer};
use align_generate::{generate_model, GenerateOptions, SamplingConfig};
use align_models::Model;

/// How a prompt is put to the model.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PromptStyle {
    /// The prompt text as is, for a raw pretrained model (it continues the text).
    Raw,
    /// The model's chat template with a generation prompt (SFT and aligned models).
    Chat,
}

/// Generates one response per prompt, `batch_size` prompts at a time; each response is decoded
/// without special tokens and trimmed. Row `i` samples from stream `i`, so the answers do not
/// depend on the batch size.
pub fn respond(
    model: &Model,
    tok: &Tokenizer,
    prompts: &[String],
    style: PromptStyle,
    cfg: &SamplingConfig,
    batch_size: usize,
) -> Result<Vec<String>> {
    let cfg = with_stop_tokens(cfg, tok, style);
    let encoded = encode_prompts(tok, prompts, style)?;
    let mut out = Vec::with_capacity(prompts.len());
    let decode = |ids: &[u32]| tok.decode(ids, true).unwrap_or_default();
    for (c, chunk) in encoded.chunks(batch_size.max(1)).enumerate() {
        let ids: Vec<u64> = (0..chunk.len()).map(|i| (c * batch_size.max(1) + i) as u64).collect();
        let opts = GenerateOptions { decode: Some(&decode), on_token: None, stream_ids: Some(&ids) };
        for g in generate_model(model, chunk, &cfg, opts)? {
            let text = tok.decode(&g.tokens, true)?;
            let text = align_generate::truncate_at_stop(&text, &cfg.stop_strings).trim().to_string();
            out.push(text);
        }
    }
    Ok(out)
}

/// `cfg` with the tokenizer's EOS ids (and ChatML's `<|im_end|>` for chat prompts) as stop tokens.
pub fn with_stop_tokens(cfg: &SamplingConfig, tok: &Tokenizer, style: PromptStyle) -> SamplingConfig {
    let mut cfg = cfg.clone();
    for e in tok.eos_ids() {
        if !cfg.eos_token_ids.contains(e) {
            cfg.eos_token_ids.push(*e);
        }
    }
    if style == PromptStyle::Chat {
        if let Some(end) = tok.token_to_id("<|im_end|>") {
            if !cfg.eos_token_ids.contains(&end) {
                cfg.eos_token_ids.push(end);
            }
        }
    }
    cfg
}

/// The token ids the model reads for each prompt: the bare text (with BOS) for `Raw`, the chat
/// template with a generation prompt for `Chat`.
pub fn encode_prompts(tok: &Tokenizer, prompts: &[String], style: PromptStyle) -> Result<Vec<Vec<u32>>> {
    let tmpl = match style {
        PromptStyle::Chat => Some(ChatTemplate::from_tokenizer(tok)?),
        PromptStyle::Raw => None,
    };
    let encoded = prompts
        .iter()
        .map(|p| match &tmpl {
            Some(t) => {
                let text = t.render(&[Message::new("user", p.clone())], true)?;
                tok.encode(&text, false)
            }
            None => tok.encode(p, true),
        })
        .collect::<std::result::Result<_, _>>()?;
    Ok(encoded)
}
