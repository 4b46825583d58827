//! One choice's output as tokens arrive: incremental detokenization (never a broken UTF-8
//! character), stop strings (cut, held back while they may still form), log-probs, and the
//! finish reason in OpenAI's words.

use crate::stop::StopMatcher;
use align_data::{DecodeStream, Tokenizer};
use align_generate::engine::TokenEvent;
use align_generate::FinishReason;

/// A token's text and log-prob, with its most likely alternatives.
#[derive(Debug, Clone)]
pub struct TokenInfo {
    /// The token's own text (special tokens spelled out; a partial UTF-8 byte shows as U+FFFD).
    pub token: String,
    pub logprob: f32,
    pub top: Vec<(String, f32)>,
}

/// What one token adds to a choice.
#[derive(Debug, Clone, Default)]
pub struct Piece {
    /// Text that can be sent now (may be empty).
    pub text: String,
    /// Byte offset of `text` in the choice's text.
    pub offset: usize,
    pub logprob: Option<TokenInfo>,
    /// `stop` (EOS or a stop string) or `length`, on the choice's last piece.
    pub finish: Option<&'static str>,
    /// The choice ended on a stop string: the engine must be told to stop it.
    pub hit_stop_string: bool,
}

pub struct ChoiceOutput<'t> {
    tok: &'t Tokenizer,
    decoder: DecodeStream<'t>,
    stop: StopMatcher,
    logprobs: bool,
    /// The text sent so far.
    pub text: String,
    /// Tokens generated (counted in `usage`, the EOS included).
    pub tokens: usize,
    pub finish: Option<&'static str>,
}

impl<'t> ChoiceOutput<'t> {
    pub fn new(tok: &'t Tokenizer, stops: Vec<String>, logprobs: bool) -> Self {
        ChoiceOutput {
            tok,
            decoder: tok.decode_stream(true),
            stop: StopMatcher::new(stops),
            logprobs,
            text: String::new(),
            tokens: 0,
            finish: None,
        }
    }

    /// Takes the engine's next token for this choice. Tokens after the choice finished (the
    /// engine may run a step before it learns of a stop string) are ignored.
    pub fn push(&mut self, ev: &TokenEvent) -> Result<Piece, String> {
        if self.finish.is_some() {
            return Ok(Piece::default());
        }
        self.tokens += 1;
        let decoded = self.decoder.step(ev.token).map_err(|e| format!("decoding token {}: {e}", ev.token))?.unwrap_or_default();
        let (mut text, hit) = self.stop.push(&decoded);
        let finish = if hit {
            Some("stop")
        } else {
            match ev.finish {
                Some(f) => {
                    text.push_str(&self.stop.finish());
                    Some(match f {
                        FinishReason::Eos | FinishReason::Stop => "stop",
                        FinishReason::Length => "length",
                    })
                }
                None => None,
            }
        };
        let logprob = self.logprobs.then(|| TokenInfo {
            token: self.token_text(ev.token),
            logprob: ev.logprob,
            top: ev.top_logprobs.iter().map(|&(t, lp)| (self.token_text(t), lp)).collect(),
        });
        let offset = self.text.len();
        self.text.push_str(&text);
        self.finish = finish;
        Ok(Piece { text, offset, logprob, finish, hit_stop_string: hit })
    }

    fn token_text(&self, id: u32) -> String {
        self.tok.decode(&[id], false).unwrap_or_default()
    }
}
