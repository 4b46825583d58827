//! OpenAI's request and response shapes for `/v1/chat/completions`, `/v1/completions` and
//! `/v1/models` (the fields align supports; an unknown request field is a 400, not silently
//! ignored). Names and nesting follow the OpenAI API reference, so the official clients parse them.

use serde::{Deserialize, Serialize};

/// `stop`: one string or a list.
#[derive(Debug, Clone, Deserialize)]
#[serde(try_from = "serde_json::Value")]
pub enum Stop {
    One(String),
    Many(Vec<String>),
}

impl Stop {
    pub fn into_vec(self) -> Vec<String> {
        match self {
            Stop::One(s) => vec![s],
            Stop::Many(v) => v,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StreamOptions {
    /// Send a last chunk with `usage` (and no choices) before `[DONE]`.
    #[serde(default)]
    pub include_usage: bool,
}

/// A request type's top-level fields. serde's `deny_unknown_fields` does not work through
/// `#[serde(flatten)]`, so the routes check the keys against this list before parsing.
pub trait KnownFields {
    const FIELDS: &'static [&'static str];
}

/// The fields of [`SamplingParams`], which both requests flatten in.
pub const SAMPLING_FIELDS: &[&str] = &[
    "temperature", "top_p", "stop", "seed", "n", "stream", "stream_options", "presence_penalty",
    "frequency_penalty", "user", "top_k", "min_p", "repetition_penalty",
];

impl KnownFields for ChatRequest {
    const FIELDS: &'static [&'static str] =
        &["model", "messages", "max_tokens", "max_completion_tokens", "logprobs", "top_logprobs"];
}

impl KnownFields for CompletionRequest {
    const FIELDS: &'static [&'static str] = &["model", "prompt", "max_tokens", "logprobs", "echo"];
}

/// The sampling fields both endpoints share (flattened into each request).
#[derive(Debug, Clone, Default, Deserialize)]
pub struct SamplingParams {
    /// 0 ≤ t ≤ 2; 0 = greedy. Default 1.
    pub temperature: Option<f32>,
    /// In (0, 1]. Default 1.
    pub top_p: Option<f32>,
    pub stop: Option<Stop>,
    /// Seed of the sampling streams: the same request with the same seed gives the same output.
    pub seed: Option<i64>,
    /// Completions per prompt. Default 1.
    pub n: Option<u32>,
    pub stream: Option<bool>,
    pub stream_options: Option<StreamOptions>,
    /// Accepted when 0 (not implemented otherwise).
    pub presence_penalty: Option<f32>,
    /// Accepted when 0 (not implemented otherwise).
    pub frequency_penalty: Option<f32>,
    /// Accepted and ignored.
    pub user: Option<String>,
    /// Extension (vLLM's name): keep the k most likely tokens; 0 = off (the default here).
    pub top_k: Option<u32>,
    /// Extension: drop tokens below min_p × the top probability.
    pub min_p: Option<f32>,
    /// Extension: CTRL repetition penalty (1 = off).
    pub repetition_penalty: Option<f32>,
}

/// Message content: a string or a list of `{"type": "text", "text": ...}` parts.
#[derive(Debug, Clone, Deserialize)]
#[serde(try_from = "serde_json::Value")]
pub enum Content {
    Text(String),
    Parts(Vec<ContentPart>),
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ContentPart {
    #[serde(rename = "type")]
    pub kind: String,
    pub text: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChatMessage {
    pub role: String,
    pub content: Option<Content>,
    /// Accepted and ignored.
    pub name: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct ChatRequest {
    pub model: String,
    pub messages: Vec<ChatMessage>,
    /// Most tokens to generate (default: the rest of the context).
    pub max_tokens: Option<u32>,
    /// The newer name of `max_tokens`.
    pub max_completion_tokens: Option<u32>,
    /// Return the log-probability of each output token.
    pub logprobs: Option<bool>,
    /// With `logprobs`, also the 0..=20 most likely tokens at each position.
    pub top_logprobs: Option<u32>,
    #[serde(flatten)]
    pub sampling: SamplingParams,
}

/// `prompt` of `/v1/completions`: one string or a list of strings.
#[derive(Debug, Clone, Deserialize)]
#[serde(try_from = "serde_json::Value")]
pub enum Prompt {
    One(String),
    Many(Vec<String>),
}

/// A string, or a list of strings (`what` names the field in the error).
fn string_or_list(v: serde_json::Value, what: &str) -> Result<Result<String, Vec<String>>, String> {
    match v {
        serde_json::Value::String(s) => Ok(Ok(s)),
        serde_json::Value::Array(a) => a
            .into_iter()
            .map(|x| match x {
                serde_json::Value::String(s) => Ok(s),
                _ => Err(format!("`{what}` must be a string or a list of strings")),
            })
            .collect::<Result<Vec<_>, _>>()
            .map(Err),
        _ => Err(format!("`{what}` must be a string or a list of strings")),
    }
}

impl TryFrom<serde_json::Value> for Prompt {
    type Error = String;
    fn try_from(v: serde_json::Value) -> Result<Self, String> {
        Ok(string_or_list(v, "prompt")?.map_or_else(Prompt::Many, Prompt::One))
    }
}

impl TryFrom<serde_json::Value> for Stop {
    type Error = String;
    fn try_from(v: serde_json::Value) -> Result<Self, String> {
        Ok(string_or_list(v, "stop")?.map_or_else(Stop::Many, Stop::One))
    }
}

impl TryFrom<serde_json::Value> for Content {
    type Error = String;
    fn try_from(v: serde_json::Value) -> Result<Self, String> {
        match v {
            serde_json::Value::String(s) => Ok(Content::Text(s)),
            v @ serde_json::Value::Array(_) => serde_json::from_value(v).map(Content::Parts).map_err(|e| format!("message content: {e}")),
            _ => Err("message `content` must be a string or a list of {\"type\": \"text\", \"text\": ...} parts".into()),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
pub struct CompletionRequest {
    pub model: String,
    pub prompt: Prompt,
    /// Most tokens to generate. Default 16, as OpenAI.
    pub max_tokens: Option<u32>,
    /// Also return the `logprobs` (0..=20) most likely tokens at each position.
    pub logprobs: Option<u32>,
    /// Only `false` is supported.
    pub echo: Option<bool>,
    #[serde(flatten)]
    pub sampling: SamplingParams,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
pub struct Usage {
    pub prompt_tokens: usize,
    pub completion_tokens: usize,
    pub total_tokens: usize,
}

impl Usage {
    pub fn new(prompt_tokens: usize, completion_tokens: usize) -> Self {
        Usage { prompt_tokens, completion_tokens, total_tokens: prompt_tokens + completion_tokens }
    }
}

// ---- chat responses ----

#[derive(Debug, Clone, Serialize)]
pub struct TopLogprob {
    pub token: String,
    pub logprob: f32,
    pub bytes: Vec<u8>,
}

#[derive(Debug, Clone, Serialize)]
pub struct TokenLogprob {
    pub token: String,
    pub logprob: f32,
    pub bytes: Vec<u8>,
    pub top_logprobs: Vec<TopLogprob>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ChatLogprobs {
    pub content: Vec<TokenLogprob>,
}

#[derive(Debug, Clone, Serialize)]
pub struct AssistantMessage {
    pub role: &'static str,
    pub content: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct ChatChoice {
    pub index: usize,
    pub message: AssistantMessage,
    pub logprobs: Option<ChatLogprobs>,
    pub finish_reason: &'static str,
}

#[derive(Debug, Clone, Serialize)]
pub struct ChatCompletion {
    pub id: String,
    pub object: &'static str,
    pub created: u64,
    pub model: String,
    pub system_fingerprint: &'static str,
    pub choices: Vec<ChatChoice>,
    pub usage: Usage,
}

#[derive(Debug, Clone, Serialize, Default)]
pub struct Delta {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub role: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub content: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ChunkChoice {
    pub index: usize,
    pub delta: Delta,
    pub logprobs: Option<ChatLogprobs>,
    pub finish_reason: Option<&'static str>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ChatChunk {
    pub id: String,
    pub object: &'static str,
    pub created: u64,
    pub model: String,
    pub system_fingerprint: &'static str,
    pub choices: Vec<ChunkChoice>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub usage: Option<Usage>,
}

// ---- completions responses ----

/// The legacy logprobs object of `/v1/completions`.
#[derive(Debug, Clone, Serialize, Default)]
pub struct CompletionLogprobs {
    pub tokens: Vec<String>,
    pub token_logprobs: Vec<f32>,
    /// Per token: alternative → log-prob.
    pub top_logprobs: Vec<std::collections::BTreeMap<String, f32>>,
    pub text_offset: Vec<usize>,
}

#[derive(Debug, Clone, Serialize)]
pub struct CompletionChoice {
    pub index: usize,
    pub text: String,
    pub logprobs: Option<CompletionLogprobs>,
    pub finish_reason: Option<&'static str>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Completion {
    pub id: String,
    /// `text_completion`, for the full response and for stream chunks alike.
    pub object: &'static str,
    pub created: u64,
    pub model: String,
    pub system_fingerprint: &'static str,
    pub choices: Vec<CompletionChoice>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub usage: Option<Usage>,
}

// ---- models ----

#[derive(Debug, Clone, Serialize)]
pub struct ModelCard {
    pub id: String,
    pub object: &'static str,
    pub created: u64,
    pub owned_by: &'static str,
    /// Extension: the model's context length in tokens.
    pub max_model_len: usize,
}

#[derive(Debug, Clone, Serialize)]
pub struct ModelList {
    pub object: &'static str,
    pub data: Vec<ModelCard>,
}

/// `system_fingerprint` of every response: the align version (outputs depend on it).
pub const FINGERPRINT: &str = concat!("align-", env!("CARGO_PKG_VERSION"));

#[cfg(test)]
mod tests {
    use super::*;

    /// Every listed field is one the request types read (a value of the wrong type is refused).
    #[test]
    fn known_fields_are_read() {
        for f in ChatRequest::FIELDS.iter().chain(SAMPLING_FIELDS).filter(|f| !["model", "messages"].contains(f)) {
            let v = serde_json::json!({"model": "m", "messages": [], (*f): {"bad": [1]}});
            assert!(serde_json::from_value::<ChatRequest>(v).is_err(), "chat field {f} is not read");
        }
        for f in CompletionRequest::FIELDS.iter().filter(|f| !["model", "prompt"].contains(f)) {
            let v = serde_json::json!({"model": "m", "prompt": "p", (*f): {"bad": [1]}});
            assert!(serde_json::from_value::<CompletionRequest>(v).is_err(), "completion field {f} is not read");
        }
    }
}
