//! [`SamplingConfig`]: how the next token is chosen and when a row stops.
//!
//! Field names, meanings and defaults follow Hugging Face's `GenerationConfig` (except
//! `max_new_tokens`, which HF leaves unset, and `temperature = 0`, which here means greedy
//! decoding, HF's `do_sample=False`).

use crate::error::{GenerateError, Result};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SamplingConfig {
    /// Most tokens generated per row (EOS included). Default 128.
    pub max_new_tokens: usize,
    /// Divides the logits before sampling. `0.0` = greedy (argmax after the repetition penalty;
    /// top-k/top-p/min-p and the seed are then unused). Must be ≥ 0. Default 1.0.
    pub temperature: f32,
    /// Keep only the `top_k` most likely tokens (ties with the k-th are kept, as HF). `0` = off.
    /// Default 50, as HF; set 0 for unbiased sampling (RL rollouts).
    pub top_k: usize,
    /// Nucleus sampling: keep the most likely tokens whose probabilities sum to at least `top_p`.
    /// In (0, 1]; `1.0` = off. Default 1.0.
    pub top_p: f32,
    /// Drop tokens whose probability is below `min_p` × the top token's probability. In [0, 1];
    /// `0.0` = off. Default 0.0.
    pub min_p: f32,
    /// CTRL-style penalty (HF's `repetition_penalty`) on every token already present in the prompt
    /// or the completion: positive logits are divided by it, negative ones multiplied. Must be
    /// > 0; `1.0` = off. Default 1.0.
    pub repetition_penalty: f32,
    /// A row stops once its decoded completion contains one of these strings (needs a decode
    /// callback; the tokens that form the string are kept). Default none.
    pub stop_strings: Vec<String>,
    /// A row stops after generating one of these ids (the EOS token is kept in the output).
    /// Default none; the CLI fills in the tokenizer's EOS ids.
    pub eos_token_ids: Vec<u32>,
    /// Seed of the sampling streams: row `i` draws from `align_core::seed::fork(seed, "row{i}")`.
    /// Default 0.
    pub seed: u64,
}

impl Default for SamplingConfig {
    fn default() -> Self {
        Self {
            max_new_tokens: 128,
            temperature: 1.0,
            top_k: 50,
            top_p: 1.0,
            min_p: 0.0,
            repetition_penalty: 1.0,
            stop_strings: vec![],
            eos_token_ids: vec![],
            seed: 0,
        }
    }
}

impl SamplingConfig {
    /// Greedy decoding (temperature 0), everything else default.
    pub fn greedy() -> Self {
        Self { temperature: 0.0, ..Self::default() }
    }

    pub fn is_greedy(&self) -> bool {
        self.temperature == 0.0
    }

    /// Checks every field's range; `generate` calls it first.
    pub fn validate(&self) -> Result<()> {
        let bad = |m: String| Err(GenerateError::Config(m));
        if !(self.temperature >= 0.0 && self.temperature.is_finite()) {
            return bad(format!("temperature must be >= 0 (0 = greedy), got {}", self.temperature));
        }
        if !(self.top_p > 0.0 && self.top_p <= 1.0) {
            return bad(format!("top_p must be in (0, 1], got {}", self.top_p));
        }
        if !(0.0..=1.0).contains(&self.min_p) {
            return bad(format!("min_p must be in [0, 1], got {}", self.min_p));
        }
        if !(self.repetition_penalty > 0.0 && self.repetition_penalty.is_finite()) {
            return bad(format!("repetition_penalty must be > 0 (1 = off), got {}", self.repetition_penalty));
        }
        if self.stop_strings.iter().any(String::is_empty) {
            return bad("stop_strings must not contain an empty string".into());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn defaults_and_partial_json() {
        let c: SamplingConfig = serde_json::from_str(r#"{"temperature": 0.7, "stop_strings": ["\n\n"]}"#).unwrap();
        assert_eq!(c.temperature, 0.7);
        assert_eq!(c.max_new_tokens, 128);
        assert_eq!(c.top_k, 50);
        assert_eq!(c.stop_strings, vec!["\n\n".to_string()]);
        c.validate().unwrap();
        assert!(serde_json::from_str::<SamplingConfig>(r#"{"temprature": 1}"#).is_err());
    }
    #[test]
    fn validation() {
        for bad in [
            SamplingConfig { temperature: -1.0, ..Default::default() },
            SamplingConfig { top_p: 0.0, ..Default::default() },
            SamplingConfig { min_p: 1.5, ..Default::default() },
            SamplingConfig { repetition_penalty: 0.0, ..Default::default() },
            SamplingConfig { stop_strings: vec![String::new()], ..Default::default() },
        ] {
            assert!(bad.validate().is_err(), "{bad:?}");
        }
        SamplingConfig::greedy().validate().unwrap();
    }
}
