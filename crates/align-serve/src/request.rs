//! From an OpenAI request to a [`Plan`]: the prompt token ids, the sampling config and the
//! limits, validated. Every bad value is a 400 naming the field.

use crate::config::ServeConfig;
use crate::error::ApiError;
use crate::model::ServedModel;
use crate::openai::{ChatRequest, CompletionRequest, Content, Prompt, SamplingParams};
use align_data::Message;
use align_generate::engine::SeqRequest;
use align_generate::SamplingConfig;

/// Most log-probability alternatives per token (OpenAI's limit).
pub const MAX_TOP_LOGPROBS: usize = 20;
/// Most stop strings (OpenAI's limit).
pub const MAX_STOPS: usize = 4;
/// `max_tokens` of `/v1/completions` when the request has none (OpenAI's default).
pub const COMPLETIONS_DEFAULT_MAX_TOKENS: usize = 16;

/// A validated request: what to generate and how to answer.
#[derive(Debug, Clone)]
pub struct Plan {
    /// One entry per prompt; choice `p * n + j` is completion `j` of prompt `p`.
    pub prompts: Vec<Vec<u32>>,
    pub n: usize,
    /// Per prompt (each prompt's `max_new_tokens` fits its own context).
    pub cfgs: Vec<SamplingConfig>,
    /// Stop strings, applied to the text (not passed to the engine).
    pub stops: Vec<String>,
    /// `None`: no log-probs; `Some(k)`: log-probs with `k` alternatives.
    pub logprobs: Option<usize>,
    pub stream: bool,
    pub include_usage: bool,
}

impl Plan {
    /// The engine's sequences, in choice order. Completion `j` of a prompt samples from stream
    /// `j`, so it is the same whatever else runs, and the same as `n` = 1 for `j` = 0.
    pub fn seqs(&self) -> Vec<SeqRequest> {
        let mut out = Vec::with_capacity(self.prompts.len() * self.n);
        for (p, cfg) in self.prompts.iter().zip(&self.cfgs) {
            for j in 0..self.n {
                out.push(SeqRequest {
                    prompt: p.clone(),
                    cfg: cfg.clone(),
                    stream_id: j as u64,
                    top_logprobs: self.logprobs.unwrap_or(0),
                });
            }
        }
        out
    }

    pub fn choices(&self) -> usize {
        self.prompts.len() * self.n
    }

    pub fn prompt_tokens(&self) -> usize {
        self.prompts.iter().map(Vec::len).sum()
    }
}

/// The chat prompt: the messages rendered with the model's chat template (ending with the
/// assistant header), tokenized without adding special tokens (the template has its own).
pub fn chat_prompt(model: &ServedModel, req: &ChatRequest) -> Result<Vec<u32>, ApiError> {
    if req.messages.is_empty() {
        return Err(ApiError::invalid_param("messages", "`messages` must hold at least one message"));
    }
    let mut msgs = Vec::with_capacity(req.messages.len());
    for (i, m) in req.messages.iter().enumerate() {
        let role = match m.role.as_str() {
            "system" | "developer" => "system",
            "user" => "user",
            "assistant" => "assistant",
            other => {
                return Err(ApiError::invalid_param(
                    &format!("messages[{i}].role"),
                    format!("messages[{i}].role `{other}` is not supported: use system, developer, user or assistant"),
                ))
            }
        };
        let content = match &m.content {
            None => String::new(),
            Some(Content::Text(t)) => t.clone(),
            Some(Content::Parts(parts)) => {
                let mut text = String::new();
                for (j, p) in parts.iter().enumerate() {
                    match (p.kind.as_str(), &p.text) {
                        ("text", Some(t)) => text.push_str(t),
                        _ => {
                            return Err(ApiError::invalid_param(
                                &format!("messages[{i}].content[{j}]"),
                                format!("messages[{i}].content[{j}]: only parts of type `text` with a `text` field are supported"),
                            ))
                        }
                    }
                }
                text
            }
        };
        msgs.push(Message::new(role, content));
    }
    let template = model.template.as_ref().map_err(|e| {
        ApiError::invalid(format!("model `{}` has no usable chat template ({e}); use /v1/completions", model.name))
    })?;
    let text = template
        .render(&msgs, true)
        .map_err(|e| ApiError::invalid_param("messages", format!("the chat template rejected the messages: {e}")))?;
    model.tokenizer.encode(&text, false).map_err(|e| ApiError::internal(format!("tokenizing the prompt: {e}")))
}

/// A chat request's plan.
pub fn chat_plan(model: &ServedModel, req: &ChatRequest, cfg: &ServeConfig) -> Result<Plan, ApiError> {
    let prompt = chat_prompt(model, req)?;
    if req.top_logprobs.is_some() && req.logprobs != Some(true) {
        return Err(ApiError::invalid_param("top_logprobs", "`top_logprobs` needs `logprobs: true`"));
    }
    let logprobs = match req.logprobs {
        Some(true) => Some(top_n(req.top_logprobs, "top_logprobs")?),
        _ => None,
    };
    let max_tokens = match (req.max_tokens, req.max_completion_tokens) {
        (Some(_), Some(_)) => {
            return Err(ApiError::invalid_param("max_tokens", "give `max_tokens` or `max_completion_tokens`, not both"))
        }
        (a, b) => a.or(b).map(|x| x as usize),
    };
    let param = if req.max_completion_tokens.is_some() { "max_completion_tokens" } else { "max_tokens" };
    let sc = sampling(&req.sampling, model.chat_eos_ids.clone())?;
    let mt = max_new_tokens(model, prompt.len(), max_tokens, None, param, cfg)?;
    finish_plan(vec![prompt], vec![mt], sc, &req.sampling, logprobs, cfg)
}

/// A completions request's plan (one entry per prompt string).
pub fn completion_plan(model: &ServedModel, req: &CompletionRequest, cfg: &ServeConfig) -> Result<Plan, ApiError> {
    if req.echo == Some(true) {
        return Err(ApiError::invalid_param("echo", "`echo: true` is not supported"));
    }
    let texts = match &req.prompt {
        Prompt::One(s) => vec![s.clone()],
        Prompt::Many(v) => v.clone(),
    };
    if texts.is_empty() {
        return Err(ApiError::invalid_param("prompt", "`prompt` must hold at least one string"));
    }
    let mut prompts = Vec::with_capacity(texts.len());
    for t in &texts {
        let ids = model.tokenizer.encode(t, true).map_err(|e| ApiError::internal(format!("tokenizing the prompt: {e}")))?;
        if ids.is_empty() {
            return Err(ApiError::invalid_param("prompt", "the prompt is empty (and the tokenizer adds no BOS token): give some text"));
        }
        prompts.push(ids);
    }
    let logprobs = req.logprobs.map(|k| top_n(Some(k), "logprobs")).transpose()?;
    let sc = sampling(&req.sampling, model.eos_ids.clone())?;
    let max_tokens = req.max_tokens.map(|x| x as usize);
    let mts = prompts
        .iter()
        .map(|p| max_new_tokens(model, p.len(), max_tokens, Some(COMPLETIONS_DEFAULT_MAX_TOKENS), "max_tokens", cfg))
        .collect::<Result<Vec<_>, _>>()?;
    finish_plan(prompts, mts, sc, &req.sampling, logprobs, cfg)
}

fn finish_plan(
    prompts: Vec<Vec<u32>>,
    max_tokens: Vec<usize>,
    sc: SamplingConfig,
    p: &SamplingParams,
    logprobs: Option<usize>,
    cfg: &ServeConfig,
) -> Result<Plan, ApiError> {
    let n = p.n.unwrap_or(1) as usize;
    if n == 0 || n > cfg.max_n {
        return Err(ApiError::invalid_param("n", format!("`n` must be between 1 and {} (--max-n), got {n}", cfg.max_n)));
    }
    let stops = p.stop.clone().map(|s| s.into_vec()).unwrap_or_default();
    if stops.len() > MAX_STOPS {
        return Err(ApiError::invalid_param("stop", format!("at most {MAX_STOPS} stop strings, got {}", stops.len())));
    }
    if stops.iter().any(String::is_empty) {
        return Err(ApiError::invalid_param("stop", "stop strings must not be empty"));
    }
    let cfgs = max_tokens.into_iter().map(|m| SamplingConfig { max_new_tokens: m, ..sc.clone() }).collect();
    let include_usage = p.stream_options.as_ref().is_some_and(|o| o.include_usage);
    if p.stream_options.is_some() && p.stream != Some(true) {
        return Err(ApiError::invalid_param("stream_options", "`stream_options` needs `stream: true`"));
    }
    Ok(Plan { prompts, n, cfgs, stops, logprobs, stream: p.stream == Some(true), include_usage })
}

fn top_n(k: Option<u32>, param: &str) -> Result<usize, ApiError> {
    let k = k.unwrap_or(0) as usize;
    if k > MAX_TOP_LOGPROBS {
        return Err(ApiError::invalid_param(param, format!("`{param}` must be between 0 and {MAX_TOP_LOGPROBS}, got {k}")));
    }
    Ok(k)
}

/// The sampling config of a request (`max_new_tokens` is set per prompt later).
fn sampling(p: &SamplingParams, eos: Vec<u32>) -> Result<SamplingConfig, ApiError> {
    let temperature = p.temperature.unwrap_or(1.0);
    if !(0.0..=2.0).contains(&temperature) {
        return Err(ApiError::invalid_param("temperature", format!("`temperature` must be between 0 and 2, got {temperature}")));
    }
    let top_p = p.top_p.unwrap_or(1.0);
    if !(top_p > 0.0 && top_p <= 1.0) {
        return Err(ApiError::invalid_param("top_p", format!("`top_p` must be in (0, 1], got {top_p}")));
    }
    for (name, v) in [("presence_penalty", p.presence_penalty), ("frequency_penalty", p.frequency_penalty)] {
        if v.is_some_and(|x| x != 0.0) {
            return Err(ApiError::invalid_param(
                name,
                format!("`{name}` is not supported (only 0); use `repetition_penalty` (e.g. 1.2) instead"),
            ));
        }
    }
    let sc = SamplingConfig {
        max_new_tokens: 1,
        temperature,
        top_k: p.top_k.unwrap_or(0) as usize,
        top_p,
        min_p: p.min_p.unwrap_or(0.0),
        repetition_penalty: p.repetition_penalty.unwrap_or(1.0),
        stop_strings: vec![],
        eos_token_ids: eos,
        // Without a seed, a fresh one: OpenAI's requests without a seed are not reproducible.
        seed: p.seed.map_or_else(rand::random, |s| s as u64),
    };
    sc.validate().map_err(|e| {
        let param = ["min_p", "repetition_penalty"].into_iter().find(|f| e.to_string().contains(f)).unwrap_or("temperature");
        ApiError::invalid_param(param, e.to_string())
    })?;
    Ok(sc)
}

/// `max_tokens` checked against the context: prompt + completion must fit. Without one, the
/// rest of the context (chat) or `default` (completions), within the server's cap.
fn max_new_tokens(
    model: &ServedModel,
    prompt_len: usize,
    asked: Option<usize>,
    default: Option<usize>,
    param: &str,
    cfg: &ServeConfig,
) -> Result<usize, ApiError> {
    let ctx = model.ctx;
    if prompt_len >= ctx {
        return Err(ApiError::invalid_param(
            "messages",
            format!("this model's maximum context length is {ctx} tokens, and the prompt has {prompt_len}: shorten it"),
        )
        .with_code("context_length_exceeded"));
    }
    let room = ctx - prompt_len;
    let cap = cfg.max_tokens.map_or(room, |c| c.min(room));
    match asked {
        Some(0) => Err(ApiError::invalid_param(param, format!("`{param}` must be at least 1"))),
        Some(m) if m > room => Err(ApiError::invalid_param(
            param,
            format!(
                "this model's maximum context length is {ctx} tokens; you asked for {} ({prompt_len} in the prompt, {m} in the completion): \
                 lower `{param}` to at most {room}",
                prompt_len + m
            ),
        )
        .with_code("context_length_exceeded")),
        Some(m) if m > cap => Err(ApiError::invalid_param(
            param,
            format!("`{param}` is {m}, above this server's limit of {cap} (--max-tokens)"),
        )),
        Some(m) => Ok(m),
        None => Ok(default.map_or(cap, |d| d.min(cap))),
    }
}
