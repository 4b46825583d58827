//! The HTTP judge: any OpenAI-compatible chat-completions endpoint (vLLM, llama.cpp's server, a
//! hosted API, `align serve`) answers the comparison question of [`crate::judge`].
//!
//! With log-probs (`"logprobs": true, "top_logprobs": k`, as vLLM and OpenAI offer them) the
//! preference is the normalized probability of the option tokens at the answer position (the
//! first generated token that is an option; "A", " A", "(A" all count for A), as in Bai et al.
//! (2022, §4.1). An endpoint
//! that returns no log-probs is asked `votes` times at temperature 1 and P(A) is the share of
//! sampled answers that pick (A) ("sampled votes").
//!
//! A 400 reply saying the prompt exceeds the model's context (`context_length_exceeded`) is
//! [`CaiError::TooLong`], and a reply whose log-probs hold no option token, or whose votes all name neither option, is
//! [`CaiError::Unanswered`]: `align cai label` skips such pairs and counts them.
//!
//! Every request has a timeout; transport errors, timeouts, HTTP 429 and 5xx, and malformed
//! replies are retried with exponential backoff; other 4xx answers fail at once (a wrong URL or
//! model name does not get better by retrying).

use crate::constitution::Constitution;
use crate::error::{CaiError, Result};
use crate::judge::{judge_prompt, normalize, Comparison, Judge};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use std::time::Duration;

/// How P(A) is read from the endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Readout {
    /// Log-probs when the endpoint returns them, sampled votes otherwise.
    #[default]
    Auto,
    /// Log-probs only: a reply without them is an error.
    Logprobs,
    /// Sampled votes only.
    Votes,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HttpJudgeConfig {
    /// `http://host:port/v1` (then `/chat/completions` is appended) or the full endpoint URL.
    pub url: String,
    /// The `model` field of the request.
    pub model: String,
    /// Sent as `Authorization: Bearer ...` when set.
    pub api_key: Option<String>,
    /// Whole-request timeout in seconds. Default 60.
    pub timeout_s: f64,
    /// Retries after the first attempt. Default 3.
    pub retries: usize,
    /// First backoff in milliseconds, doubled on every retry. Default 500.
    pub backoff_ms: u64,
    pub readout: Readout,
    /// Sampled answers per question when voting. Default 5.
    pub votes: usize,
    /// Alternatives requested per answer position (`top_logprobs`). Default 20 (OpenAI's most).
    pub top_logprobs: usize,
    /// Solved comparison examples from the constitution before each question. Default 0.
    pub few_shot: usize,
    /// Sent as `seed` (plus the vote's index) for reproducible votes where supported.
    pub seed: u64,
    /// A line after the question ("Answer with (A) or (B)." by default; empty for none: the
    /// paper's prompt ends with "The answer is:").
    pub answer_instruction: String,
}

impl Default for HttpJudgeConfig {
    fn default() -> Self {
        HttpJudgeConfig {
            url: String::new(),
            model: "default".into(),
            api_key: None,
            timeout_s: 60.0,
            retries: 3,
            backoff_ms: 500,
            readout: Readout::Auto,
            votes: 5,
            top_logprobs: 20,
            few_shot: 0,
            seed: 0,
            answer_instruction: "Answer with (A) or (B).".into(),
        }
    }
}

/// Counts of what the judge did, for the report.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct HttpStats {
    pub requests: usize,
    pub retries: usize,
    pub logprob_answers: usize,
    pub vote_answers: usize,
}

pub struct HttpJudge {
    cfg: HttpJudgeConfig,
    endpoint: String,
    agent: ureq::Agent,
    constitution: Option<Constitution>,
    /// Set once the endpoint answered without log-probs (Auto then votes from there on).
    no_logprobs: bool,
    pub stats: HttpStats,
}

/// What one failed attempt means for the next.
enum Failure {
    Retry(String),
    Fatal(String),
    /// The server says the prompt exceeds the model's context (OpenAI's and vLLM's 400).
    TooLong(String),
}

/// The option letter a token or an answer stands for: "A", " A", "(A", "(A)", "A." → 'A'.
pub fn option_of(token: &str) -> Option<char> {
    let t = token.trim().trim_start_matches(['(', '[', '*', '"']).trim_end_matches([')', ']', '.', ':', '*', '"', ',']);
    match t {
        "A" => Some('A'),
        "B" => Some('B'),
        _ => None,
    }
}

/// The option a free-text answer picks: the first "(A)"/"(B)", else a first word that is one.
pub fn parse_vote(text: &str) -> Option<char> {
    let a = text.find("(A)");
    let b = text.find("(B)");
    match (a, b) {
        (Some(x), Some(y)) => Some(if x < y { 'A' } else { 'B' }),
        (Some(_), None) => Some('A'),
        (None, Some(_)) => Some('B'),
        (None, None) => text.split_whitespace().next().and_then(option_of),
    }
}

/// P(A) from an OpenAI `choices[0].logprobs.content` array, read at the answer position: the
/// first position whose generated token is an option token ("The answer is (A)" → the "A"). There
/// the probabilities of the A-tokens and B-tokens among the alternatives are summed and
/// normalized. `Ok(None)` when the reply has no log-probs at all; an error when no generated
/// token is an option (the model did not answer).
pub fn prob_from_logprobs(reply: &Value) -> std::result::Result<Option<f64>, String> {
    let content = match reply.pointer("/choices/0/logprobs") {
        None | Some(Value::Null) => return Ok(None),
        Some(lp) => lp.get("content").and_then(Value::as_array).ok_or("logprobs has no \"content\" array")?,
    };
    let answer = content.iter().find(|pos| pos.get("token").and_then(Value::as_str).and_then(option_of).is_some());
    let Some(pos) = answer else {
        let text: String = content.iter().filter_map(|p| p.get("token").and_then(Value::as_str)).collect();
        return Err(format!("the answer names neither (A) nor (B): {:?}", text.chars().take(100).collect::<String>()));
    };
    let mut alts: Vec<(&str, f64)> = Vec::new();
    if let Some(top) = pos.get("top_logprobs").and_then(Value::as_array) {
        for t in top {
            if let (Some(tok), Some(lp)) = (t.get("token").and_then(Value::as_str), t.get("logprob").and_then(Value::as_f64)) {
                alts.push((tok, lp));
            }
        }
    }
    if let (Some(tok), Some(lp)) = (pos.get("token").and_then(Value::as_str), pos.get("logprob").and_then(Value::as_f64)) {
        if !alts.iter().any(|(t, _)| *t == tok) {
            alts.push((tok, lp));
        }
    }
    let (mut pa, mut pb) = (0.0f64, 0.0f64);
    for (tok, lp) in alts {
        if lp.is_nan() || lp > 0.0 {
            return Err(format!("log-prob {lp} of token {tok:?} is not a log-probability"));
        }
        match option_of(tok) {
            Some('A') => pa += lp.exp(),
            Some('B') => pb += lp.exp(),
            _ => {}
        }
    }
    if pa + pb <= 0.0 {
        return Err("the option tokens have probability 0".into());
    }
    // Softmax over the two options' total probabilities.
    Ok(Some(normalize(pa.ln(), pb.ln())))
}

impl HttpJudge {
    pub fn new(cfg: HttpJudgeConfig, constitution: Option<Constitution>) -> Result<Self> {
        if !(cfg.url.starts_with("http://") || cfg.url.starts_with("https://")) {
            return Err(CaiError::Invalid(format!("judge URL {:?} must start with http:// or https://", cfg.url)));
        }
        if !(cfg.timeout_s > 0.0 && cfg.timeout_s.is_finite()) {
            return Err(CaiError::Invalid(format!("judge timeout_s must be > 0, got {}", cfg.timeout_s)));
        }
        if cfg.votes == 0 && cfg.readout != Readout::Logprobs {
            return Err(CaiError::Invalid("judge votes must be >= 1".into()));
        }
        let base = cfg.url.trim_end_matches('/');
        let endpoint = if base.ends_with("/chat/completions") { base.to_string() } else { format!("{base}/chat/completions") };
        let agent = ureq::Agent::config_builder()
            .timeout_global(Some(Duration::from_secs_f64(cfg.timeout_s)))
            .http_status_as_error(false)
            .build()
            .new_agent();
        Ok(HttpJudge { cfg, endpoint, agent, constitution, no_logprobs: false, stats: HttpStats::default() })
    }

    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    fn attempt(&mut self, body: &Value) -> std::result::Result<Value, Failure> {
        self.stats.requests += 1;
        let mut req = self.agent.post(&self.endpoint);
        if let Some(k) = &self.cfg.api_key {
            req = req.header("Authorization", &format!("Bearer {k}"));
        }
        let mut resp = req.send_json(body).map_err(|e| Failure::Retry(e.to_string()))?;
        let status = resp.status();
        let text = resp.body_mut().read_to_string().map_err(|e| Failure::Retry(format!("reading the reply: {e}")))?;
        let snippet: String = text.chars().take(200).collect();
        if status.as_u16() == 429 || status.is_server_error() {
            return Err(Failure::Retry(format!("HTTP {status}: {snippet}")));
        }
        if status.as_u16() == 400 && (text.contains("context_length_exceeded") || text.contains("maximum context length")) {
            return Err(Failure::TooLong(snippet));
        }
        if !status.is_success() {
            return Err(Failure::Fatal(format!("HTTP {status}: {snippet}")));
        }
        let v: Value = serde_json::from_str(&text).map_err(|e| Failure::Retry(format!("reply is not JSON ({e}): {snippet:?}")))?;
        if v.pointer("/choices/0").is_none() {
            return Err(Failure::Retry(format!("reply has no choices: {snippet:?}")));
        }
        Ok(v)
    }

    /// One request with retries; `check` turns a reply into the answer or a retryable complaint.
    fn request<T>(&mut self, body: &Value, check: impl Fn(&Value) -> std::result::Result<T, String>) -> Result<T> {
        let mut last = String::new();
        for attempt in 0..=self.cfg.retries {
            if attempt > 0 {
                self.stats.retries += 1;
                std::thread::sleep(Duration::from_millis(self.cfg.backoff_ms.saturating_mul(1 << (attempt - 1).min(10))));
            }
            match self.attempt(body).map(|v| check(&v)) {
                Ok(Ok(x)) => return Ok(x),
                Ok(Err(m)) | Err(Failure::Retry(m)) => last = m,
                Err(Failure::Fatal(m)) => return Err(CaiError::Http { url: self.endpoint.clone(), message: m }),
                Err(Failure::TooLong(m)) => return Err(CaiError::TooLong(m)),
            }
        }
        Err(CaiError::Http { url: self.endpoint.clone(), message: format!("{last} (after {} attempts)", self.cfg.retries + 1) })
    }

    fn body(&self, prompt: &str, temperature: f64, seed: u64, logprobs: bool) -> Value {
        let mut b = json!({
            "model": self.cfg.model,
            "messages": [{"role": "user", "content": prompt}],
            "max_tokens": 8,
            "temperature": temperature,
            "seed": seed,
        });
        if logprobs {
            b["logprobs"] = json!(true);
            b["top_logprobs"] = json!(self.cfg.top_logprobs);
        }
        b
    }

    /// P(A) from one greedy request with log-probs; `Ok(None)` when the endpoint returns none.
    fn by_logprobs(&mut self, prompt: &str) -> Result<Option<f64>> {
        let body = self.body(prompt, 0.0, self.cfg.seed, true);
        // A reply without log-probs parses as Ok(None); no option among them is an answer too.
        let reply = self.request(&body, |v| Ok(prob_from_logprobs(v)))?;
        match reply {
            Ok(Some(p)) => Ok(Some(p)),
            Ok(None) if self.cfg.readout == Readout::Logprobs => {
                Err(CaiError::Http { url: self.endpoint.clone(), message: "the endpoint returned no log-probs (readout = logprobs)".into() })
            }
            Ok(None) => Ok(None),
            Err(e) => Err(CaiError::Unanswered(e)),
        }
    }

    /// P(A) = share of `votes` sampled answers that pick (A); answers naming neither abstain.
    fn by_votes(&mut self, prompt: &str) -> Result<f64> {
        let (mut a, mut b) = (0usize, 0usize);
        let mut last = String::new();
        for k in 0..self.cfg.votes {
            let body = self.body(prompt, 1.0, self.cfg.seed.wrapping_add(k as u64), false);
            let text = self.request(&body, |v| {
                v.pointer("/choices/0/message/content").and_then(Value::as_str).map(str::to_string).ok_or_else(|| "reply has no choices[0].message.content string".to_string())
            })?;
            match parse_vote(&text) {
                Some('A') => a += 1,
                Some(_) => b += 1,
                None => last = text.chars().take(100).collect(),
            }
        }
        if a + b == 0 {
            return Err(CaiError::Unanswered(format!("none of {} sampled answers names (A) or (B); last: {last:?}", self.cfg.votes)));
        }
        Ok(a as f64 / (a + b) as f64)
    }
}

impl Judge for HttpJudge {
    fn name(&self) -> String {
        format!("http:{}", self.endpoint)
    }

    fn prob_a(&mut self, q: &Comparison) -> Result<f64> {
        let mut prompt = judge_prompt(q, self.constitution.as_ref(), self.cfg.few_shot);
        if !self.cfg.answer_instruction.is_empty() {
            prompt = format!("{prompt}\n{}", self.cfg.answer_instruction);
        }
        if self.cfg.readout != Readout::Votes && !self.no_logprobs {
            if let Some(p) = self.by_logprobs(&prompt)? {
                self.stats.logprob_answers += 1;
                return Ok(p);
            }
            self.no_logprobs = true;
            tracing::warn!("{}: no usable log-probs in the reply; using {} sampled votes per question", self.endpoint, self.cfg.votes);
        }
        self.stats.vote_answers += 1;
        self.by_votes(&prompt)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_and_votes_parse() {
        for (t, o) in [("A", Some('A')), (" B", Some('B')), ("(A", Some('A')), ("(B)", Some('B')), ("A.", Some('A')), ("An", None), ("", None)] {
            assert_eq!(option_of(t), o, "{t:?}");
        }
        assert_eq!(parse_vote("The answer is (B) because (A) is worse"), Some('B'));
        assert_eq!(parse_vote("A"), Some('A'));
        assert_eq!(parse_vote("I cannot tell"), None);
    }

    #[test]
    fn logprob_readout() {
        let lp = |xs: &[(&str, f64)]| json!({"choices": [{"logprobs": {"content": [
            {"token": "The", "logprob": -0.1, "top_logprobs": [{"token": "The", "logprob": -0.1}]},
            {"token": xs[0].0, "logprob": xs[0].1, "top_logprobs": xs.iter().map(|(t, l)| json!({"token": t, "logprob": l})).collect::<Vec<_>>()}
        ]}}]});
        let p = prob_from_logprobs(&lp(&[("A", (0.6f64).ln()), (" A", (0.15f64).ln()), ("B", (0.25f64).ln())])).unwrap().unwrap();
        assert!((p - 0.75).abs() < 1e-9, "{p}");
        assert_eq!(prob_from_logprobs(&json!({"choices": [{"message": {"content": "A"}}]})).unwrap(), None);
        assert!(prob_from_logprobs(&lp(&[("Maybe", -0.1)])).is_err());
        assert!(prob_from_logprobs(&json!({"choices": [{"logprobs": {"tokens": []}}]})).is_err());
        // An option token among the alternatives of a position where the model does not answer
        // ("The" generated, "B" a runner-up) is not read: the answer position is the "A".
        let r = json!({"choices": [{"logprobs": {"content": [
            {"token": "The", "logprob": -0.1, "top_logprobs": [{"token": "The", "logprob": -0.1}, {"token": "B", "logprob": -3.0}]},
            {"token": "(", "logprob": -0.1, "top_logprobs": []},
            {"token": "A", "logprob": (0.5f64).ln(), "top_logprobs": [{"token": "A", "logprob": (0.5f64).ln()}, {"token": "B", "logprob": (0.5f64).ln()}]}
        ]}}]});
        assert!((prob_from_logprobs(&r).unwrap().unwrap() - 0.5).abs() < 1e-12);
    }

    #[test]
    fn config_errors() {
        let bad = HttpJudgeConfig { url: "localhost:8000".into(), ..Default::default() };
        assert!(HttpJudge::new(bad, None).err().unwrap().to_string().contains("http://"));
        let bad = HttpJudgeConfig { url: "http://x".into(), timeout_s: 0.0, ..Default::default() };
        assert!(HttpJudge::new(bad, None).is_err());
        let ok = HttpJudge::new(HttpJudgeConfig { url: "http://127.0.0.1:1/v1/".into(), ..Default::default() }, None).unwrap();
        assert_eq!(ok.endpoint(), "http://127.0.0.1:1/v1/chat/completions");
    }
}
