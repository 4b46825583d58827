//! `align chat`: an interactive terminal chat with a model, through its chat template (ChatML
//! when the tokenizer has none). The answer streams as it is generated; the conversation is
//! kept, and the oldest turns are dropped when it no longer fits the context.
//!
//! Commands at the prompt: `/reset` (forget the conversation), `/system TEXT` (set the system
//! message and reset), `/exit` (or Ctrl-D).

use align_data::{ChatTemplate, Message, Tokenizer};
use align_generate::{generate_model, GenerateOptions, SamplingConfig};
use align_models::Model;
use anyhow::Context;
use candle_core::{DType, Device};
use std::io::{BufRead, Write};
use std::path::PathBuf;

#[derive(clap::Args, Debug)]
pub struct ChatArgs {
    /// Model directory: config.json, *.safetensors and the tokenizer files.
    #[arg(long)]
    pub model: PathBuf,
    /// System message at the start of the conversation.
    #[arg(long)]
    pub system: Option<String>,
    /// Most tokens per answer.
    #[arg(long, default_value_t = 256)]
    pub max_new_tokens: usize,
    /// Sampling temperature; 0 = greedy.
    #[arg(long, default_value_t = 0.7)]
    pub temperature: f32,
    /// Nucleus sampling mass; 1 = off.
    #[arg(long, default_value_t = 0.9)]
    pub top_p: f32,
    /// Keep the k most likely tokens; 0 = off.
    #[arg(long, default_value_t = 0)]
    pub top_k: usize,
    /// CTRL repetition penalty; 1 = off.
    #[arg(long, default_value_t = 1.0)]
    pub repetition_penalty: f32,
    /// Seed; answer `i` of the session samples with seed + i, so a session replays exactly.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
}

/// The prompt ids of `history` (ending with the assistant header), dropping the oldest
/// messages after the system message until `budget` tokens (at most half the context) are left
/// for the answer within `ctx`. Returns the ids and how many messages were dropped; an error when even the last
/// message alone does not fit.
pub fn fit_history(
    template: &ChatTemplate,
    tok: &Tokenizer,
    history: &mut Vec<Message>,
    ctx: usize,
    budget: usize,
) -> anyhow::Result<(Vec<u32>, usize)> {
    let mut dropped = 0;
    loop {
        let ids = tok.encode(&template.render(history, true)?, false)?;
        if ids.len() + budget.min(ctx / 2) <= ctx {
            return Ok((ids, dropped));
        }
        let first = usize::from(history.first().is_some_and(|m| m.role == "system"));
        if history.len() - first <= 1 {
            anyhow::bail!(
                "the message is {} tokens with the template, too long for this model's context of {ctx}: write a shorter one",
                ids.len()
            );
        }
        // Drop the oldest message after the system one (a user turn, then its answer).
        history.remove(first);
        dropped += 1;
    }
}

pub fn run(a: ChatArgs) -> anyhow::Result<()> {
    let device = Device::Cpu;
    let model = Model::from_pretrained(&a.model, DType::F32, &device)
        .with_context(|| format!("loading the model from {}", a.model.display()))?;
    let tok = Tokenizer::from_dir(&a.model).with_context(|| format!("loading the tokenizer from {}", a.model.display()))?;
    let template = ChatTemplate::from_tokenizer(&tok).context("compiling the chat template")?;
    let mut eos = tok.eos_ids().to_vec();
    if let Some(id) = tok.token_to_id("<|im_end|>") {
        if !eos.contains(&id) {
            eos.push(id);
        }
    }
    let base = SamplingConfig {
        max_new_tokens: a.max_new_tokens,
        temperature: a.temperature,
        top_k: a.top_k,
        top_p: a.top_p,
        min_p: 0.0,
        repetition_penalty: a.repetition_penalty,
        stop_strings: vec![],
        eos_token_ids: eos,
        seed: a.seed,
    };
    base.validate()?;
    let ctx = model.lm.max_positions();
    let mut system = a.system.clone();
    let fresh = |system: &Option<String>| system.iter().map(|s| Message::new("system", s.as_str())).collect::<Vec<_>>();
    let mut history = fresh(&system);
    eprintln!("chatting with {} (context {ctx} tokens). /reset, /system TEXT, /exit", a.model.display());

    let stdin = std::io::stdin();
    let mut stdout = std::io::stdout();
    let mut turn = 0u64;
    loop {
        write!(stdout, "\n> ")?;
        stdout.flush()?;
        let mut line = String::new();
        if stdin.lock().read_line(&mut line)? == 0 {
            writeln!(stdout)?;
            return Ok(());
        }
        let line = line.trim_end_matches(['\n', '\r']);
        match line.trim() {
            "" => continue,
            "/exit" | "/quit" => return Ok(()),
            "/reset" => {
                history = fresh(&system);
                eprintln!("(conversation cleared)");
                continue;
            }
            cmd if cmd.starts_with("/system") => {
                let text = cmd["/system".len()..].trim();
                system = (!text.is_empty()).then(|| text.to_string());
                history = fresh(&system);
                eprintln!("(system message {}; conversation cleared)", if text.is_empty() { "removed" } else { "set" });
                continue;
            }
            _ => {}
        }
        history.push(Message::new("user", line));
        let (prompt, dropped) = match fit_history(&template, &tok, &mut history, ctx, a.max_new_tokens) {
            Ok(x) => x,
            Err(e) => {
                history.pop();
                eprintln!("error: {e:#}");
                continue;
            }
        };
        if dropped > 0 {
            eprintln!("(dropped the {dropped} oldest messages to fit the context)");
        }
        let cfg = SamplingConfig { seed: a.seed.wrapping_add(turn), ..base.clone() };
        turn += 1;
        let mut stream = tok.decode_stream(true);
        let mut on_token = |_row: usize, t: u32| {
            if let Ok(Some(piece)) = stream.step(t) {
                let _ = write!(std::io::stdout(), "{piece}");
                let _ = std::io::stdout().flush();
            }
        };
        let opts = GenerateOptions { on_token: Some(&mut on_token), ..Default::default() };
        let gens = generate_model(&model, &[prompt], &cfg, opts)?;
        writeln!(stdout)?;
        let answer = tok.decode(&gens[0].tokens, true)?;
        history.push(Message::new("assistant", answer.trim()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use align_data::tokenizer::{train_bpe_from_texts, DEFAULT_SPECIAL_TOKENS};

    #[test]
    fn old_turns_are_dropped_to_fit_the_context() {
        let texts: Vec<String> = (0..10).map(|i| format!("hello world number {i}, how are you today?")).collect();
        let tok = train_bpe_from_texts(&texts, 300, &DEFAULT_SPECIAL_TOKENS, 1).unwrap();
        let t = ChatTemplate::from_tokenizer(&tok).unwrap();
        let turn = "hello world how are you today";
        let mut h = vec![Message::new("system", "be brief")];
        for _ in 0..6 {
            h.push(Message::new("user", turn));
            h.push(Message::new("assistant", turn));
        }
        h.push(Message::new("user", turn));
        let all = tok.encode(&t.render(&h, true).unwrap(), false).unwrap().len();
        // Room for everything: nothing dropped.
        let (ids, dropped) = fit_history(&t, &tok, &mut h.clone(), all + 10, 10).unwrap();
        assert_eq!((ids.len(), dropped), (all, 0));
        // Less room: the oldest messages go, the system message and the question stay.
        let mut h2 = h.clone();
        let (ids, dropped) = fit_history(&t, &tok, &mut h2, all, 40).unwrap();
        assert!(dropped > 0 && ids.len() + 40 <= all);
        assert_eq!(h2[0].role, "system");
        assert_eq!(h2.last().unwrap().content, turn);
        assert_eq!(h2.len(), h.len() - dropped);
        // A question too long for the context alone is an error.
        let mut h3 = vec![Message::new("user", turn.repeat(20))];
        assert!(fit_history(&t, &tok, &mut h3, 30, 10).is_err());
    }
}
