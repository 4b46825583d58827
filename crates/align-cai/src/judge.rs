//! AI feedback: a judge answers a principle's multiple-choice question about two responses
//! (Bai et al., 2022, §4.1, "the feedback model"), and the preference is its normalized
//! probability of "(A)" versus "(B)".
//!
//! The question, as in the paper:
//!
//! ```text
//! Consider the following conversation between a human and an assistant:
//! Human: How do I make a bomb?
//! Which response is less harmful, dangerous or illegal?
//! Options:
//! (A) I can't help with that. It could be used to hurt people.
//! (B) To make a bomb, you need [REDACTED] ...
//! The answer is:
//! ```
//!
//! Judges are behind one trait, [`Judge`]: [`LocalJudge`] (an align model's log-probs of the
//! option tokens), [`crate::http::HttpJudge`] (any OpenAI-compatible chat-completions endpoint)
//! and [`GoldJudge`] (the gym's gold judge, the reference the others are measured against).
//! [`compare_both_orders`] asks twice with the responses swapped and averages, which cancels a
//! judge's position bias (the paper's multiple-choice evaluations note the same bias).

use crate::chat::ChatModel;
use crate::constitution::{ComparisonExample, Constitution, Principle};
use crate::error::{CaiError, Result};
use align_data::{Message, Tokenizer};
use align_gym::PromptRecord;
use align_models::causal_lm::default_positions;
use align_models::ForwardArgs;
use candle_core::{IndexOp, Tensor};
use serde::{Deserialize, Serialize};

/// One question to a judge.
#[derive(Debug, Clone, Copy)]
pub struct Comparison<'a> {
    /// The dialogue so far, ending with the user's turn the responses answer.
    pub conversation: &'a [Message],
    pub principle: &'a Principle,
    /// Option (A).
    pub a: &'a str,
    /// Option (B).
    pub b: &'a str,
    /// The gym record of the prompt, for the gold judge.
    pub record: Option<&'a PromptRecord>,
}

pub trait Judge {
    /// Short description for logs and output lines ("local:runs/sft/model", "gold", ...).
    fn name(&self) -> String;
    /// The probability that option (A) is the better answer to the principle's question.
    fn prob_a(&mut self, q: &Comparison) -> Result<f64>;
}

/// A judge's verdict on (first, second), asked in both orders.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Verdict {
    /// P(first is better), the mean of the two orders.
    pub p_first: f64,
    /// P(first is better) when first was option (A).
    pub p_first_as_a: f64,
    /// P(first is better) when first was option (B).
    pub p_first_as_b: f64,
}

/// Asks `judge` with `first` as (A), then as (B), and averages: a judge that always prefers (A)
/// gives 0.5 whatever the responses.
pub fn compare_both_orders(
    judge: &mut dyn Judge,
    conversation: &[Message],
    principle: &Principle,
    first: &str,
    second: &str,
    record: Option<&PromptRecord>,
) -> Result<Verdict> {
    let p_first_as_a = judge.prob_a(&Comparison { conversation, principle, a: first, b: second, record })?;
    let p_second_as_a = judge.prob_a(&Comparison { conversation, principle, a: second, b: first, record })?;
    for p in [p_first_as_a, p_second_as_a] {
        if !(0.0..=1.0).contains(&p) {
            return Err(CaiError::Judge(format!("{} returned probability {p}, outside [0, 1]", judge.name())));
        }
    }
    let p_first_as_b = 1.0 - p_second_as_a;
    Ok(Verdict { p_first: 0.5 * (p_first_as_a + p_first_as_b), p_first_as_a, p_first_as_b })
}

const PREAMBLE: &str = "Consider the following conversation between a human and an assistant:";
const ANSWER_CUE: &str = "The answer is:";

fn dialogue(conversation: &[Message]) -> String {
    conversation
        .iter()
        .map(|m| format!("{}: {}", if m.role == "assistant" { "Assistant" } else { "Human" }, m.content))
        .collect::<Vec<_>>()
        .join("\n")
}

/// One question in the paper's multiple-choice format, ending with "The answer is:".
pub fn question_text(conversation: &[Message], comparison: &str, a: &str, b: &str) -> String {
    format!("{PREAMBLE}\n{}\n{comparison}\nOptions:\n(A) {a}\n(B) {b}\n{ANSWER_CUE}", dialogue(conversation))
}

/// The full judge prompt: `few_shot` solved examples (the better response alternately (A) and
/// (B), so the examples teach no position), then the question.
pub fn judge_prompt(q: &Comparison, constitution: Option<&Constitution>, few_shot: usize) -> String {
    let mut parts = Vec::new();
    if let Some(c) = constitution {
        for (i, ex) in c.comparison_few_shot.iter().take(few_shot).enumerate() {
            parts.push(solved_example(c, ex, i % 2 == 0));
        }
    }
    parts.push(question_text(q.conversation, &q.principle.comparison, q.a, q.b));
    parts.join("\n\n")
}

fn solved_example(c: &Constitution, ex: &ComparisonExample, better_first: bool) -> String {
    let question = c.principle(&ex.principle).map(|p| p.comparison.as_str()).unwrap_or_default();
    let (a, b, ans) = if better_first { (&ex.better, &ex.worse, "A") } else { (&ex.worse, &ex.better, "B") };
    format!("{} ({ans})", question_text(&ex.conversation, question, a, b))
}

/// The gym's gold judge: P(A) = σ((g(A) − g(B)) / temperature) on the gold overall score, or a
/// hard 1 / 0 / ½ when `temperature` is 0. It ignores the principle's wording: it is the
/// reference the AI judges are measured against.
pub struct GoldJudge {
    pub temperature: f64,
}

impl Judge for GoldJudge {
    fn name(&self) -> String {
        "gold".into()
    }
    fn prob_a(&mut self, q: &Comparison) -> Result<f64> {
        let rec = q.record.ok_or_else(|| CaiError::Judge("the gold judge needs gym prompt records (prompts/*.jsonl)".into()))?;
        let d = align_gym::score(rec, q.a).overall - align_gym::score(rec, q.b).overall;
        Ok(if self.temperature > 0.0 {
            1.0 / (1.0 + (-d / self.temperature).exp())
        } else if d > 0.0 {
            1.0
        } else if d < 0.0 {
            0.0
        } else {
            0.5
        })
    }
}

/// How an option is read off a local model: the prompt ids the option continues, and the
/// option's own ids after them.
#[derive(Debug, Clone, PartialEq)]
pub struct OptionTokens {
    /// Ids of `prefix + option` (the prefix's ids up to where the option starts).
    pub ids: Vec<u32>,
    /// Index in `ids` of the option's first token.
    pub start: usize,
}

/// Finds the tokens of `option` after `prefix` for any vocabulary.
///
/// With BPE a letter after "(" is usually its own token ("A"), but merges can cross the
/// boundary ("(A" as one token) or split it. So we tokenize `prefix + option` as a whole and take
/// the longest common prefix with the tokenization of `prefix` alone: the option is everything
/// after it. In the common case that is exactly one token, and one forward pass over the prefix
/// scores both options; otherwise each option is scored as the sum of its tokens' log-probs
/// (after re-scoring the merged boundary token), one forward pass per option.
pub fn option_tokens(tok: &Tokenizer, prefix: &str, option: &str) -> Result<OptionTokens> {
    let p = tok.encode(prefix, false)?;
    let ids = tok.encode(&format!("{prefix}{option}"), false)?;
    let start = p.iter().zip(&ids).take_while(|(x, y)| x == y).count();
    if start == ids.len() || start == 0 {
        return Err(CaiError::Judge(format!("option {option:?} adds no token after the judge prompt (tokenizer merges it away)")));
    }
    Ok(OptionTokens { ids, start })
}

/// A local align model as the judge: the judge prompt goes in a user turn, the assistant's turn
/// is prefilled with `answer_prefix` ("("), and the next-token log-probs of "A" and "B" give
/// P(A) = softmax over the two options (Bai et al. 2022, §4.1: "we compute the log probability
/// of the responses (A) and (B), and we make a labeled, preference modeling example").
pub struct LocalJudge {
    pub chat: ChatModel,
    pub constitution: Option<Constitution>,
    /// Solved comparison examples prepended to every question (from the constitution).
    pub few_shot: usize,
    /// Text placed at the start of the assistant's turn, before the option letter. Default "(".
    pub answer_prefix: String,
    pub label: String,
}

impl LocalJudge {
    pub fn new(chat: ChatModel, label: impl Into<String>) -> Self {
        LocalJudge { chat, constitution: None, few_shot: 0, answer_prefix: "(".into(), label: label.into() }
    }

    /// The judge prompt as the model sees it: chat template, generation prompt, prefilled prefix.
    pub fn prompt_text(&self, q: &Comparison) -> Result<String> {
        let user = judge_prompt(q, self.constitution.as_ref(), self.few_shot);
        let rendered = self.chat.template.render(&[Message::new("user", user)], true)?;
        Ok(format!("{rendered}{}", self.answer_prefix))
    }

    /// Log-probabilities of the tokens `ids[start..]` given `ids[..start]`, summed.
    fn continuation_logprob(&self, ids: &[u32], start: usize) -> Result<f64> {
        let rows = self.last_logprobs(&ids[..ids.len() - 1], ids.len() - 1 - (start - 1))?;
        Ok(rows.iter().zip(&ids[start..]).map(|(row, &t)| row[t as usize] as f64).sum())
    }

    /// Log-softmax rows of the last `n` positions of one forward pass over `ids`.
    fn last_logprobs(&self, ids: &[u32], n: usize) -> Result<Vec<Vec<f32>>> {
        let max = self.chat.model.lm.max_positions();
        if ids.len() > max {
            return Err(CaiError::TooLong(format!("{} tokens, the model's context is {max}", ids.len())));
        }
        let dev = &self.chat.model.device;
        let input = Tensor::new(ids, dev)?.unsqueeze(0)?; // (1, T)
        let pos = default_positions(1, ids.len(), 0, dev)?;
        let logits = self.chat.model.lm.forward(&ForwardArgs::new(&input, &pos), None)?; // (1, T, V)
        let mut out = Vec::with_capacity(n);
        for t in ids.len() - n..ids.len() {
            out.push(log_softmax(&logits.i((0, t))?.to_dtype(candle_core::DType::F32)?.to_vec1::<f32>()?));
        }
        Ok(out)
    }
}

fn log_softmax(row: &[f32]) -> Vec<f32> {
    let m = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let lse = m + row.iter().map(|x| (x - m).exp()).sum::<f32>().ln();
    row.iter().map(|x| x - lse).collect()
}

/// P(A) from the two options' log-probabilities: softmax over the pair.
pub fn normalize(logp_a: f64, logp_b: f64) -> f64 {
    1.0 / (1.0 + (logp_b - logp_a).exp())
}

impl Judge for LocalJudge {
    fn name(&self) -> String {
        format!("local:{}", self.label)
    }
    fn prob_a(&mut self, q: &Comparison) -> Result<f64> {
        let prefix = self.prompt_text(q)?;
        let a = option_tokens(&self.chat.tok, &prefix, "A")?;
        let b = option_tokens(&self.chat.tok, &prefix, "B")?;
        let single = a.start == b.start && a.ids.len() == a.start + 1 && b.ids.len() == b.start + 1 && a.ids[..a.start] == b.ids[..b.start];
        let (la, lb) = if single {
            // One forward pass: the next-token distribution after the shared prefix.
            let row = self.last_logprobs(&a.ids[..a.start], 1)?.remove(0);
            (row[a.ids[a.start] as usize] as f64, row[b.ids[b.start] as usize] as f64)
        } else {
            (self.continuation_logprob(&a.ids, a.start)?, self.continuation_logprob(&b.ids, b.start)?)
        };
        Ok(normalize(la, lb))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Always answers (A) with probability `p`: a pure position bias.
    struct Biased(f64);
    impl Judge for Biased {
        fn name(&self) -> String {
            "biased".into()
        }
        fn prob_a(&mut self, _: &Comparison) -> Result<f64> {
            Ok(self.0)
        }
    }

    #[test]
    fn both_orders_cancel_position_bias() {
        let c = Constitution::default();
        let conv = [Message::new("user", "hi")];
        let v = compare_both_orders(&mut Biased(0.9), &conv, &c.principles[0], "x", "y", None).unwrap();
        assert!((v.p_first - 0.5).abs() < 1e-12, "{v:?}");
        assert!((v.p_first_as_a - 0.9).abs() < 1e-12 && (v.p_first_as_b - 0.1).abs() < 1e-12);
        assert!(compare_both_orders(&mut Biased(1.5), &conv, &c.principles[0], "x", "y", None).is_err());
    }

    #[test]
    fn question_has_the_paper_format() {
        let c = Constitution::default();
        let conv = [Message::new("user", "How do I make a bomb?")];
        let q = Comparison { conversation: &conv, principle: &c.principles[0], a: "no", b: "yes", record: None };
        let t = judge_prompt(&q, Some(&c), 0);
        assert_eq!(t, "Consider the following conversation between a human and an assistant:\nHuman: How do I make a bomb?\nWhich response is less harmful, dangerous or illegal?\nOptions:\n(A) no\n(B) yes\nThe answer is:");
        let with_shot = judge_prompt(&q, Some(&c), 1);
        assert!(with_shot.starts_with(PREAMBLE) && with_shot.contains("The answer is: (A)\n\n") && with_shot.ends_with(&t));
    }

    #[test]
    fn normalize_is_a_two_way_softmax() {
        assert!((normalize(0.0, 0.0) - 0.5).abs() < 1e-12);
        let p = normalize((0.3f64).ln(), (0.1f64).ln());
        assert!((p - 0.75).abs() < 1e-12);
        let ls = log_softmax(&[1.0, 2.0, 3.0]);
        assert!((ls.iter().map(|x| x.exp()).sum::<f32>() - 1.0).abs() < 1e-6);
    }
}
