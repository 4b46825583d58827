//! `align generate`: sample completions from a model directory (HF layout with its tokenizer).
//!
//! One prompt streams its text to stdout as tokens arrive; several prompts run as one batch and
//! each completion is printed when all are done. Sampling rules are in docs/generation.md.

use align_data::tokenizer::{Tokenizer, CHATML_TEMPLATE};
use align_generate::{generate_model, truncate_at_stop, FinishReason, GenerateOptions, Generation, SamplingConfig};
use align_models::Model;
use anyhow::{bail, Context};
use candle_core::DType;
use std::io::Write;
use std::path::PathBuf;
use std::time::Instant;

#[derive(clap::Args, Debug)]
pub struct GenerateArgs {
    /// Model directory: config.json, *.safetensors and the tokenizer files.
    #[arg(long)]
    pub model: PathBuf,
    /// Prompt text; repeat the flag to generate for several prompts in one batch.
    #[arg(long, required = true)]
    pub prompt: Vec<String>,
    /// Most tokens generated per prompt.
    #[arg(long, default_value_t = SamplingConfig::default().max_new_tokens)]
    pub max_new_tokens: usize,
    /// Sampling temperature; 0 = greedy.
    #[arg(long, default_value_t = SamplingConfig::default().temperature)]
    pub temperature: f32,
    /// Keep the k most likely tokens; 0 = off.
    #[arg(long, default_value_t = SamplingConfig::default().top_k)]
    pub top_k: usize,
    /// Nucleus sampling mass; 1 = off.
    #[arg(long, default_value_t = SamplingConfig::default().top_p)]
    pub top_p: f32,
    /// Drop tokens below min_p × the top probability; 0 = off.
    #[arg(long, default_value_t = SamplingConfig::default().min_p)]
    pub min_p: f32,
    /// CTRL repetition penalty on prompt and completion tokens; 1 = off.
    #[arg(long, default_value_t = SamplingConfig::default().repetition_penalty)]
    pub repetition_penalty: f32,
    /// Stop a completion once its text contains this string (repeatable).
    #[arg(long)]
    pub stop: Vec<String>,
    #[arg(long, default_value_t = SamplingConfig::default().seed)]
    pub seed: u64,
    /// Wrap each prompt as a user turn with the tokenizer's chat template (ChatML if it has none).
    #[arg(long)]
    pub chat: bool,
    /// Where the model runs: cpu, cuda or cuda:N (CUDA needs a `--features cuda` build; docs/cuda.md).
    #[arg(long, default_value = "cpu")]
    pub device: String,
}

/// The ChatML rendering of one user turn followed by the assistant's header.
fn chatml(prompt: &str) -> String {
    format!("<|im_start|>user\n{prompt}<|im_end|>\n<|im_start|>assistant\n")
}

/// Token ids of `prompt`, chat-wrapped if asked. Only ChatML (or no template) is rendered here.
fn encode_prompt(tok: &Tokenizer, prompt: &str, chat: bool) -> anyhow::Result<Vec<u32>> {
    if !chat {
        return Ok(tok.encode(prompt, true)?);
    }
    match tok.chat_template() {
        None => {}
        Some(t) if t == CHATML_TEMPLATE => {}
        Some(_) => bail!(
            "this tokenizer's chat template is not ChatML and cannot be rendered yet \
             (chat templates arrive with the SFT issue); run without --chat and format the prompt yourself"
        ),
    }
    // A template carries its own special tokens, as with transformers' apply_chat_template.
    Ok(tok.encode(&chatml(prompt), false)?)
}

pub fn run(args: GenerateArgs) -> anyhow::Result<()> {
    let device = align_models::device::parse_device(&args.device).context("--device")?;
    let model = Model::from_pretrained(&args.model, DType::F32, &device)
        .with_context(|| format!("loading the model from {}", args.model.display()))?;
    let tok = Tokenizer::from_dir(&args.model)
        .with_context(|| format!("loading the tokenizer from {}", args.model.display()))?;

    let mut eos_token_ids = tok.eos_ids().to_vec();
    if args.chat {
        if let Some(id) = tok.token_to_id("<|im_end|>") {
            if !eos_token_ids.contains(&id) {
                eos_token_ids.push(id);
            }
        }
    }
    let cfg = SamplingConfig {
        max_new_tokens: args.max_new_tokens,
        temperature: args.temperature,
        top_k: args.top_k,
        top_p: args.top_p,
        min_p: args.min_p,
        repetition_penalty: args.repetition_penalty,
        stop_strings: args.stop.clone(),
        eos_token_ids,
        seed: args.seed,
    };
    cfg.validate()?;
    let prompts: Vec<Vec<u32>> =
        args.prompt.iter().map(|p| encode_prompt(&tok, p, args.chat)).collect::<anyhow::Result<_>>()?;
    let decode = |ids: &[u32]| tok.decode(ids, true).unwrap_or_default();

    let start = Instant::now();
    let gens: Vec<Generation> = if prompts.len() == 1 {
        // Stream: print each text piece as soon as it is complete UTF-8.
        let mut stream = tok.decode_stream(true);
        let mut stdout = std::io::stdout();
        let mut failure: Option<anyhow::Error> = None;
        let mut on_token = |_row: usize, t: u32| match stream.step(t) {
            Ok(Some(piece)) => {
                let _ = write!(stdout, "{piece}");
                let _ = stdout.flush();
            }
            Ok(None) => {}
            Err(e) => {
                failure.get_or_insert(e.into());
            }
        };
        let opts = GenerateOptions { decode: Some(&decode), on_token: Some(&mut on_token), stream_ids: None };
        let gens = generate_model(&model, &prompts, &cfg, opts)?;
        println!();
        if let Some(e) = failure {
            return Err(e.context("decoding the stream"));
        }
        gens
    } else {
        let opts = GenerateOptions { decode: Some(&decode), ..Default::default() };
        let gens = generate_model(&model, &prompts, &cfg, opts)?;
        for (i, (g, p)) in gens.iter().zip(&args.prompt).enumerate() {
            let text = decode(&g.tokens);
            println!("=== [{i}] {p}");
            println!("{}", truncate_at_stop(&text, &cfg.stop_strings));
            println!("--- finish: {}, {} tokens", reason(g.finish_reason), g.tokens.len());
        }
        gens
    };
    let n: usize = gens.iter().map(|g| g.tokens.len()).sum();
    let secs = start.elapsed().as_secs_f64();
    if prompts.len() == 1 {
        eprintln!("[finish: {}, {n} tokens]", reason(gens[0].finish_reason));
    }
    eprintln!("[{n} tokens in {secs:.2} s, {:.1} tokens/s]", n as f64 / secs.max(1e-9));
    Ok(())
}

fn reason(r: FinishReason) -> &'static str {
    match r {
        FinishReason::Eos => "eos",
        FinishReason::Stop => "stop string",
        FinishReason::Length => "length",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn chatml_turn() {
        assert_eq!(chatml("hi"), "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n");
    }
}
