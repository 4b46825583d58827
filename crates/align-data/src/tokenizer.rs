//! A Hugging Face tokenizer directory: `tokenizer.json` plus the special tokens, flags and chat
//! template that transformers reads from the JSON files beside it; byte-level BPE training.
//!
//! Loading rules (see docs/data.md):
//! - `tokenizer.json` is required and does the encoding/decoding.
//! - Token strings (`bos_token`, `eos_token`, `pad_token`, `unk_token`), `chat_template`,
//!   `add_bos_token`/`add_eos_token` and `model_max_length` come from `tokenizer_config.json`
//!   (a `chat_template.jinja` file is used when the config has no template).
//! - Ids: `generation_config.json` wins (`eos_token_id` may be a list), then the id of the
//!   token string from `tokenizer_config.json`, then `config.json`.

use crate::error::{read_to_string, DataError, Result};
use crate::text::read_text_documents;
use serde_json::{json, Map, Value};
use std::path::{Path, PathBuf};
use tokenizers::decoders::byte_level::ByteLevel as ByteLevelDecoder;
use tokenizers::models::bpe::{BpeTrainerBuilder, BPE};
use tokenizers::models::TrainerWrapper;
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::{
    AddedToken, DecoderWrapper, ModelWrapper, NormalizerWrapper, PostProcessorWrapper,
};
use tokenizers::{PreTokenizerWrapper, TokenizerImpl};

/// The special tokens of a tokenizer trained by [`train_bpe`] in the usual order: id 0 is
/// BOS/EOS/pad (as in GPT-2), the other two delimit ChatML turns.
pub const DEFAULT_SPECIAL_TOKENS: [&str; 3] = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"];

/// The ChatML chat template (as used by Qwen and others), in HF's Jinja dialect.
pub const CHATML_TEMPLATE: &str = "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}";

/// `model_max_length` written by [`train_bpe`] unless changed with [`Tokenizer::set_model_max_length`].
pub const DEFAULT_MODEL_MAX_LENGTH: u64 = 1024;

/// A tokenizer with the special tokens and chat template of its directory.
#[derive(Clone)]
pub struct Tokenizer {
    inner: tokenizers::Tokenizer,
    bos_token: Option<String>,
    eos_token: Option<String>,
    pad_token: Option<String>,
    unk_token: Option<String>,
    bos_id: Option<u32>,
    eos_ids: Vec<u32>,
    pad_id: Option<u32>,
    chat_template: Option<String>,
    add_bos_token: Option<bool>,
    add_eos_token: Option<bool>,
    model_max_length: Option<u64>,
    /// When the config's `add_bos_token`/`add_eos_token` disagree with what the post-processor of
    /// `tokenizer.json` adds, `encode(.., true)` adds BOS/EOS itself (as LlamaTokenizerFast does).
    special_override: Option<(bool, bool)>,
    /// The original `tokenizer_config.json`, so that [`Tokenizer::save_dir`] keeps unknown keys.
    raw_config: Map<String, Value>,
}

impl std::fmt::Debug for Tokenizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tokenizer")
            .field("vocab_size", &self.vocab_size())
            .field("bos", &(&self.bos_token, self.bos_id))
            .field("eos", &(&self.eos_token, &self.eos_ids))
            .field("pad", &(&self.pad_token, self.pad_id))
            .field("chat_template", &self.chat_template.is_some())
            .finish()
    }
}

/// Reads an optional JSON object file: `Ok(None)` if absent.
fn read_json_object(path: &Path) -> Result<Option<Map<String, Value>>> {
    if !path.exists() {
        return Ok(None);
    }
    let text = read_to_string(path)?;
    let v: Value = serde_json::from_str(&text).map_err(|e| DataError::Json {
        path: path.to_path_buf(),
        msg: e.to_string(),
    })?;
    match v {
        Value::Object(m) => Ok(Some(m)),
        other => Err(DataError::Json {
            path: path.to_path_buf(),
            msg: format!(
                "expected an object, got {}",
                crate::jsonl::json_type(&other)
            ),
        }),
    }
}

/// A special token in `tokenizer_config.json`: a string, an AddedToken object or null.
fn token_string(path: &Path, cfg: &Map<String, Value>, key: &str) -> Result<Option<String>> {
    match cfg.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(Value::Object(o)) => match o.get("content") {
            Some(Value::String(s)) => Ok(Some(s.clone())),
            _ => Err(DataError::Json {
                path: path.to_path_buf(),
                msg: format!("`{key}`: AddedToken object without a string `content`"),
            }),
        },
        Some(other) => Err(DataError::Json {
            path: path.to_path_buf(),
            msg: format!(
                "`{key}`: expected a string or an object, got {}",
                crate::jsonl::json_type(other)
            ),
        }),
    }
}

/// A token id field: an integer, a list of integers, or null.
fn id_list(path: &Path, cfg: &Map<String, Value>, key: &str) -> Result<Vec<u32>> {
    let bad = |v: &Value| DataError::Json {
        path: path.to_path_buf(),
        msg: format!("`{key}`: expected a token id or a list of ids, got {v}"),
    };
    let one = |v: &Value| {
        v.as_u64()
            .and_then(|x| u32::try_from(x).ok())
            .ok_or_else(|| bad(v))
    };
    match cfg.get(key) {
        None | Some(Value::Null) => Ok(vec![]),
        Some(Value::Array(a)) => a.iter().map(one).collect(),
        Some(v) => Ok(vec![one(v)?]),
    }
}

fn bool_field(path: &Path, cfg: &Map<String, Value>, key: &str) -> Result<Option<bool>> {
    match cfg.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Bool(b)) => Ok(Some(*b)),
        Some(v) => Err(DataError::Json {
            path: path.to_path_buf(),
            msg: format!(
                "`{key}`: expected a boolean, got {}",
                crate::jsonl::json_type(v)
            ),
        }),
    }
}

/// `chat_template`: a string, or a list of `{name, template}` (the one named "default" is kept,
/// else the first).
fn chat_template_field(path: &Path, cfg: &Map<String, Value>) -> Result<Option<String>> {
    let bad = |msg: &str| DataError::Json {
        path: path.to_path_buf(),
        msg: format!("`chat_template`: {msg}"),
    };
    match cfg.get("chat_template") {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(Value::Array(list)) => {
            let pick = list
                .iter()
                .find(|t| t.get("name").and_then(Value::as_str) == Some("default"))
                .or_else(|| list.first());
            match pick {
                None => Ok(None),
                Some(t) => match t.get("template") {
                    Some(Value::String(s)) => Ok(Some(s.clone())),
                    _ => Err(bad("list entry without a string `template`")),
                },
            }
        }
        Some(_) => Err(bad("expected a string or a list of {name, template}")),
    }
}

impl Tokenizer {
    /// Loads a Hugging Face tokenizer directory (see the module docs for which file wins).
    pub fn from_dir(dir: impl AsRef<Path>) -> Result<Self> {
        let dir = dir.as_ref();
        let tok_path = dir.join("tokenizer.json");
        if !tok_path.is_file() {
            return Err(DataError::Missing {
                path: tok_path,
                what: "a tokenizer directory needs tokenizer.json (the fast-tokenizer format)"
                    .into(),
            });
        }
        let inner = tokenizers::Tokenizer::from_file(&tok_path)
            .map_err(|e| DataError::tok(tok_path.display().to_string(), e))?;

        let cfg_path = dir.join("tokenizer_config.json");
        let cfg = read_json_object(&cfg_path)?.unwrap_or_default();
        let gen_path = dir.join("generation_config.json");
        let gen = read_json_object(&gen_path)?.unwrap_or_default();
        let model_path = dir.join("config.json");
        let model_cfg = read_json_object(&model_path)?.unwrap_or_default();

        let mut chat_template = chat_template_field(&cfg_path, &cfg)?;
        let jinja = dir.join("chat_template.jinja");
        if chat_template.is_none() && jinja.is_file() {
            chat_template = Some(read_to_string(&jinja)?);
        }
        // HF's VERY_LARGE_INTEGER (1e30) and other huge values mean "no limit".
        let model_max_length = cfg.get("model_max_length").and_then(|v| {
            v.as_u64().or_else(|| {
                v.as_f64()
                    .filter(|f| *f >= 0.0 && *f < 1e18)
                    .map(|f| f as u64)
            })
        });

        let mut tok = Tokenizer {
            bos_token: token_string(&cfg_path, &cfg, "bos_token")?,
            eos_token: token_string(&cfg_path, &cfg, "eos_token")?,
            pad_token: token_string(&cfg_path, &cfg, "pad_token")?,
            unk_token: token_string(&cfg_path, &cfg, "unk_token")?,
            bos_id: None,
            eos_ids: vec![],
            pad_id: None,
            chat_template,
            add_bos_token: bool_field(&cfg_path, &cfg, "add_bos_token")?,
            add_eos_token: bool_field(&cfg_path, &cfg, "add_eos_token")?,
            model_max_length,
            special_override: None,
            raw_config: cfg,
            inner,
        };

        // Ids: generation_config.json, then the token strings, then config.json.
        let first = |v: Vec<u32>| v.first().copied();
        let by_name = |t: &Option<String>| t.as_deref().and_then(|s| tok.inner.token_to_id(s));
        tok.bos_id = first(id_list(&gen_path, &gen, "bos_token_id")?)
            .or_else(|| by_name(&tok.bos_token))
            .or(first(id_list(&model_path, &model_cfg, "bos_token_id")?));
        tok.eos_ids = id_list(&gen_path, &gen, "eos_token_id")?;
        if tok.eos_ids.is_empty() {
            tok.eos_ids = by_name(&tok.eos_token).into_iter().collect();
        }
        if tok.eos_ids.is_empty() {
            tok.eos_ids = id_list(&model_path, &model_cfg, "eos_token_id")?;
        }
        tok.pad_id = first(id_list(&gen_path, &gen, "pad_token_id")?)
            .or_else(|| by_name(&tok.pad_token))
            .or(first(id_list(&model_path, &model_cfg, "pad_token_id")?));
        // Token strings from ids when the config did not name them.
        if tok.bos_token.is_none() {
            tok.bos_token = tok.bos_id.and_then(|i| tok.inner.id_to_token(i));
        }
        if tok.eos_token.is_none() {
            tok.eos_token = tok.eos_ids.first().and_then(|&i| tok.inner.id_to_token(i));
        }
        tok.special_override = tok.probe_special_override()?;
        Ok(tok)
    }

    /// Compares the config's `add_bos_token`/`add_eos_token` with what the post-processor adds
    /// (probed on the empty string); `Some((bos, eos))` when encode must add them itself.
    fn probe_special_override(&self) -> Result<Option<(bool, bool)>> {
        if self.add_bos_token.is_none() && self.add_eos_token.is_none() {
            return Ok(None);
        }
        let probe = self
            .inner
            .encode("", true)
            .map_err(|e| DataError::tok("encode", e))?;
        let ids = probe.get_ids();
        let pp_bos = self.bos_id.is_some() && ids.first().copied() == self.bos_id;
        let eos = self
            .eos_token
            .as_deref()
            .and_then(|t| self.inner.token_to_id(t));
        let pp_eos = eos.is_some()
            && ids.last().copied() == eos
            && !(pp_bos && ids.len() == 1 && eos == self.bos_id);
        let want = (
            self.add_bos_token.unwrap_or(pp_bos),
            self.add_eos_token.unwrap_or(pp_eos),
        );
        Ok((want != (pp_bos, pp_eos)).then_some(want))
    }

    /// Token ids of `text`. With `add_special_tokens`, BOS/EOS are added as transformers would
    /// (the post-processor of tokenizer.json, or the config's `add_bos_token`/`add_eos_token`).
    pub fn encode(&self, text: &str, add_special_tokens: bool) -> Result<Vec<u32>> {
        match (add_special_tokens, self.special_override) {
            (true, Some((bos, eos))) => {
                let enc = self
                    .inner
                    .encode(text, false)
                    .map_err(|e| DataError::tok("encode", e))?;
                let mut ids = Vec::with_capacity(enc.len() + 2);
                if let (true, Some(b)) = (bos, self.bos_id) {
                    ids.push(b);
                }
                ids.extend_from_slice(enc.get_ids());
                if let (true, Some(e)) = (
                    eos,
                    self.eos_token
                        .as_deref()
                        .and_then(|t| self.inner.token_to_id(t)),
                ) {
                    ids.push(e);
                }
                Ok(ids)
            }
            _ => {
                let enc = self
                    .inner
                    .encode(text, add_special_tokens)
                    .map_err(|e| DataError::tok("encode", e))?;
                Ok(enc.get_ids().to_vec())
            }
        }
    }

    /// Token ids of many texts, tokenized in parallel; the order of the result is the input's.
    pub fn encode_batch(
        &self,
        texts: &[String],
        add_special_tokens: bool,
    ) -> Result<Vec<Vec<u32>>> {
        if add_special_tokens && self.special_override.is_some() {
            return texts.iter().map(|t| self.encode(t, true)).collect();
        }
        let inputs: Vec<&str> = texts.iter().map(String::as_str).collect();
        let encs = self
            .inner
            .encode_batch(inputs, add_special_tokens)
            .map_err(|e| DataError::tok("encode_batch", e))?;
        Ok(encs.into_iter().map(|e| e.get_ids().to_vec()).collect())
    }

    pub fn decode(&self, ids: &[u32], skip_special_tokens: bool) -> Result<String> {
        self.inner
            .decode(ids, skip_special_tokens)
            .map_err(|e| DataError::tok("decode", e))
    }

    /// A streaming decoder for generation: feed ids one at a time, get text pieces that never
    /// split a UTF-8 character.
    pub fn decode_stream(&self, skip_special_tokens: bool) -> DecodeStream<'_> {
        DecodeStream::new(self, skip_special_tokens)
    }

    /// Vocabulary size including added tokens (what the embedding matrix needs at least).
    pub fn vocab_size(&self) -> usize {
        self.inner.get_vocab_size(true)
    }
    pub fn token_to_id(&self, token: &str) -> Option<u32> {
        self.inner.token_to_id(token)
    }
    pub fn id_to_token(&self, id: u32) -> Option<String> {
        self.inner.id_to_token(id)
    }
    pub fn bos_id(&self) -> Option<u32> {
        self.bos_id
    }
    /// Every id that ends generation (HF allows several); the first is the tokenizer's EOS.
    pub fn eos_ids(&self) -> &[u32] {
        &self.eos_ids
    }
    /// The EOS appended after documents: the first of [`Tokenizer::eos_ids`].
    pub fn eos_id(&self) -> Option<u32> {
        self.eos_ids.first().copied()
    }
    pub fn pad_id(&self) -> Option<u32> {
        self.pad_id
    }
    pub fn bos_token(&self) -> Option<&str> {
        self.bos_token.as_deref()
    }
    pub fn eos_token(&self) -> Option<&str> {
        self.eos_token.as_deref()
    }
    pub fn pad_token(&self) -> Option<&str> {
        self.pad_token.as_deref()
    }
    pub fn unk_token(&self) -> Option<&str> {
        self.unk_token.as_deref()
    }
    pub fn chat_template(&self) -> Option<&str> {
        self.chat_template.as_deref()
    }
    pub fn set_chat_template(&mut self, template: Option<String>) {
        self.chat_template = template;
    }
    pub fn add_bos_token(&self) -> Option<bool> {
        self.add_bos_token
    }
    pub fn add_eos_token(&self) -> Option<bool> {
        self.add_eos_token
    }
    /// `model_max_length` from the config; `None` when absent or "unlimited" (HF's 1e30).
    pub fn model_max_length(&self) -> Option<u64> {
        self.model_max_length
    }
    pub fn set_model_max_length(&mut self, n: Option<u64>) {
        self.model_max_length = n;
    }
    pub fn inner(&self) -> &tokenizers::Tokenizer {
        &self.inner
    }

    /// The `tokenizer_config.json` that [`Tokenizer::save_dir`] writes: the loaded config's keys,
    /// with the special tokens, template and limits of this tokenizer written over them.
    pub fn tokenizer_config(&self) -> Value {
        let mut cfg = self.raw_config.clone();
        let mut added = Map::new();
        let mut decoder: Vec<(u32, AddedToken)> =
            self.inner.get_added_tokens_decoder().into_iter().collect();
        decoder.sort_by_key(|(id, _)| *id);
        for (id, t) in decoder {
            added.insert(
                id.to_string(),
                json!({
                    "content": t.content, "lstrip": t.lstrip, "normalized": t.normalized,
                    "rstrip": t.rstrip, "single_word": t.single_word, "special": t.special,
                }),
            );
        }
        cfg.insert("added_tokens_decoder".into(), Value::Object(added));
        for (key, v) in [
            ("bos_token", &self.bos_token),
            ("eos_token", &self.eos_token),
            ("pad_token", &self.pad_token),
            ("unk_token", &self.unk_token),
        ] {
            cfg.insert(
                key.into(),
                v.clone().map(Value::String).unwrap_or(Value::Null),
            );
        }
        match &self.chat_template {
            Some(t) => cfg.insert("chat_template".into(), Value::String(t.clone())),
            None => cfg.remove("chat_template"),
        };
        if let Some(n) = self.model_max_length {
            cfg.insert("model_max_length".into(), json!(n));
        }
        cfg.entry("clean_up_tokenization_spaces")
            .or_insert(Value::Bool(false));
        cfg.entry("tokenizer_class")
            .or_insert(json!("PreTrainedTokenizerFast"));
        // serde_json's Map is sorted (no preserve_order feature), like HF's sort_keys output.
        Value::Object(cfg)
    }

    /// Writes `tokenizer.json` and `tokenizer_config.json` into `dir` (each atomically), in the
    /// format `AutoTokenizer.from_pretrained(dir)` loads.
    pub fn save_dir(&self, dir: impl AsRef<Path>) -> Result<()> {
        let dir = dir.as_ref();
        std::fs::create_dir_all(dir).map_err(|e| DataError::io(dir, e))?;
        let json = self
            .inner
            .to_string(true)
            .map_err(|e| DataError::tok("serialize tokenizer.json", e))?;
        align_core::atomic::write_atomic(dir.join("tokenizer.json"), json.as_bytes())?;
        let cfg = serde_json::to_string_pretty(&self.tokenizer_config())
            .expect("a JSON value serializes");
        align_core::atomic::write_atomic(
            dir.join("tokenizer_config.json"),
            (cfg + "\n").as_bytes(),
        )?;
        Ok(())
    }
}

type InnerImpl = TokenizerImpl<
    ModelWrapper,
    NormalizerWrapper,
    PreTokenizerWrapper,
    PostProcessorWrapper,
    DecoderWrapper,
>;

/// Turns ids, one at a time, into text pieces. Byte-level BPE tokens may hold part of a UTF-8
/// character: such ids return `None` until the character is complete, so no piece is ever broken
/// text, and the concatenated pieces equal `decode(all ids)`.
pub struct DecodeStream<'a> {
    tok: &'a InnerImpl,
    skip_special_tokens: bool,
    ids: Vec<u32>,
    prefix: String,
    prefix_index: usize,
}

impl<'a> DecodeStream<'a> {
    pub fn new(tokenizer: &'a Tokenizer, skip_special_tokens: bool) -> Self {
        DecodeStream {
            tok: &tokenizer.inner,
            skip_special_tokens,
            ids: vec![],
            prefix: String::new(),
            prefix_index: 0,
        }
    }

    /// The new text that `id` completes, or `None` if it needs more ids.
    pub fn step(&mut self, id: u32) -> Result<Option<String>> {
        tokenizers::tokenizer::step_decode_stream(
            self.tok,
            vec![id],
            self.skip_special_tokens,
            &mut self.ids,
            &mut self.prefix,
            &mut self.prefix_index,
        )
        .map_err(|e| DataError::tok("decode_stream", e))
    }
}

/// Writes a word-level tokenizer with the ChatML template into `dir` (`tokenizer.json` and
/// `tokenizer_config.json`, each atomically): a toy tokenizer for tests and small examples, in which
/// every whitespace-separated word is one token. `words[i]` gets id `i`; the first three must be
/// [`DEFAULT_SPECIAL_TOKENS`] (special; `<|im_end|>` is EOS, `<|endoftext|>` pad), and `[UNK]` must
/// be among them (words outside the list map to it).
pub fn write_word_level_chatml(dir: impl AsRef<Path>, words: &[&str]) -> Result<()> {
    let dir = dir.as_ref();
    if words.len() < 3 || words[..3] != DEFAULT_SPECIAL_TOKENS || !words.contains(&"[UNK]") {
        return Err(DataError::Invalid(format!("a word-level ChatML vocabulary starts with {DEFAULT_SPECIAL_TOKENS:?} and holds \"[UNK]\"; got {words:?}")));
    }
    let vocab: Map<String, Value> = words.iter().enumerate().map(|(i, w)| (w.to_string(), json!(i))).collect();
    let added: Vec<Value> = (0..3)
        .map(|i| json!({"id": i, "content": words[i], "single_word": false, "lstrip": false, "rstrip": false, "normalized": false, "special": true}))
        .collect();
    let tj = json!({
        "version": "1.0", "truncation": null, "padding": null, "added_tokens": added,
        "normalizer": null, "pre_tokenizer": {"type": "Whitespace"}, "post_processor": null,
        "decoder": null, "model": {"type": "WordLevel", "vocab": vocab, "unk_token": "[UNK]"}
    });
    let tc = json!({"eos_token": "<|im_end|>", "pad_token": "<|endoftext|>", "chat_template": CHATML_TEMPLATE});
    std::fs::create_dir_all(dir).map_err(|e| DataError::io(dir, e))?;
    align_core::atomic::write_atomic(dir.join("tokenizer.json"), tj.to_string().as_bytes())?;
    align_core::atomic::write_atomic(dir.join("tokenizer_config.json"), tc.to_string().as_bytes())?;
    Ok(())
}

/// Byte-level BPE as in GPT-2: ByteLevel pre-tokenizer (no prefix space, GPT-2 regex), decoder and
/// post-processor, all 256 bytes in the alphabet (no unknown token needed), and `special_tokens`
/// first with ids 0, 1, ... (`special_tokens[0]` is BOS, EOS and pad; use
/// [`DEFAULT_SPECIAL_TOKENS`]). If both `<|im_start|>` and `<|im_end|>` are special tokens, the
/// ChatML template is set.
///
/// Files: `.jsonl` → field `text` of each line, anything else → plain text (see
/// [`crate::text`]). Training is deterministic: the same files, vocab size and min frequency
/// give the same `tokenizer.json`, with or without `TOKENIZERS_PARALLELISM` (word counts are
/// summed, merges are chosen by count and then by token ids, never by hash order).
pub fn train_bpe(
    files: &[PathBuf],
    vocab_size: usize,
    special_tokens: &[&str],
    min_frequency: u64,
) -> Result<Tokenizer> {
    train_bpe_opts(files, vocab_size, special_tokens, min_frequency, false)
}

/// [`train_bpe`], optionally splitting numbers into single digits ([`train_bpe_from_texts_opts`]).
pub fn train_bpe_opts(
    files: &[PathBuf],
    vocab_size: usize,
    special_tokens: &[&str],
    min_frequency: u64,
    split_digits: bool,
) -> Result<Tokenizer> {
    let mut docs = Vec::new();
    for f in files {
        docs.extend(read_text_documents(f)?);
    }
    train_bpe_from_texts_opts(&docs, vocab_size, special_tokens, min_frequency, split_digits)
}

/// [`train_bpe`] on documents in memory.
pub fn train_bpe_from_texts(
    docs: &[String],
    vocab_size: usize,
    special_tokens: &[&str],
    min_frequency: u64,
) -> Result<Tokenizer> {
    train_bpe_from_texts_opts(docs, vocab_size, special_tokens, min_frequency, false)
}

/// The pre-tokenizer that splits numbers into digits: every digit (with the space before it, if
/// any) is its own piece, then GPT-2's byte-level regex. "in 1895" → `in`, `Ġ1`, `8`, `9`, `5`, as
/// LLaMA ("we split all numbers into individual digits") and Qwen2 (`\p{N}` pieces) do.
fn digit_splitting_pre_tokenizer() -> Result<PreTokenizerWrapper> {
    use tokenizers::pre_tokenizers::sequence::Sequence;
    use tokenizers::pre_tokenizers::split::{Split, SplitPattern};
    use tokenizers::SplitDelimiterBehavior;
    let split = Split::new(SplitPattern::Regex(r" ?\p{N}".into()), SplitDelimiterBehavior::Isolated, false)
        .map_err(|e| DataError::tok("digit pre-tokenizer", e))?;
    Ok(PreTokenizerWrapper::Sequence(Sequence::new(vec![split.into(), ByteLevel::new(false, true, true).into()])))
}

/// [`train_bpe_from_texts`]; with `split_digits` no token holds more than one digit
/// ([`digit_splitting_pre_tokenizer`]), so every number is spelt the same way digit by digit.
pub fn train_bpe_from_texts_opts(
    docs: &[String],
    vocab_size: usize,
    special_tokens: &[&str],
    min_frequency: u64,
    split_digits: bool,
) -> Result<Tokenizer> {
    let Some(&first) = special_tokens.first() else {
        return Err(DataError::Invalid(
            "train_bpe: at least one special token (the BOS/EOS) is needed".into(),
        ));
    };
    let alphabet = ByteLevel::alphabet();
    let min_vocab = alphabet.len() + special_tokens.len();
    if vocab_size < min_vocab {
        return Err(DataError::Invalid(format!(
            "train_bpe: vocab_size {vocab_size} is smaller than the 256 bytes plus {} special tokens ({min_vocab})",
            special_tokens.len()
        )));
    }
    if docs.iter().all(|d| d.is_empty()) {
        return Err(DataError::Invalid("train_bpe: no text to train on".into()));
    }
    let specials: Vec<AddedToken> = special_tokens
        .iter()
        .map(|s| AddedToken::from(*s, true))
        .collect();
    let trainer = BpeTrainerBuilder::new()
        .vocab_size(vocab_size)
        .min_frequency(min_frequency)
        .show_progress(false)
        .special_tokens(specials)
        .initial_alphabet(alphabet.into_iter().collect())
        .build();
    let mut trainer = TrainerWrapper::from(trainer);

    let byte_level = ByteLevel::new(false, true, true);
    let mut inner = tokenizers::Tokenizer::new(BPE::default());
    if split_digits {
        inner.with_pre_tokenizer(Some(digit_splitting_pre_tokenizer()?));
    } else {
        inner.with_pre_tokenizer(Some(byte_level));
    }
    inner.with_decoder(Some(ByteLevelDecoder::new(false, true, true)));
    inner.with_post_processor(Some(byte_level));
    inner
        .train(&mut trainer, docs.iter())
        .map_err(|e| DataError::tok("train_bpe", e))?;

    let first = first.to_string();
    let id0 = inner.token_to_id(&first);
    let chatml = special_tokens.contains(&"<|im_start|>") && special_tokens.contains(&"<|im_end|>");
    Ok(Tokenizer {
        inner,
        bos_token: Some(first.clone()),
        eos_token: Some(first.clone()),
        pad_token: Some(first),
        unk_token: None,
        bos_id: id0,
        eos_ids: id0.into_iter().collect(),
        pad_id: id0,
        chat_template: chatml.then(|| CHATML_TEMPLATE.to_string()),
        add_bos_token: None,
        add_eos_token: None,
        model_max_length: Some(DEFAULT_MODEL_MAX_LENGTH),
        special_override: None,
        raw_config: Map::new(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn word_level_chatml_gives_one_token_per_word_and_renders_chatml() {
        let d = tempfile::tempdir().unwrap();
        let words = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "[UNK]", "user", "assistant", "say", "yes"];
        write_word_level_chatml(d.path(), &words).unwrap();
        let tok = Tokenizer::from_dir(d.path()).unwrap();
        assert_eq!(tok.vocab_size(), words.len());
        assert_eq!(tok.encode("say yes please", false).unwrap(), vec![6, 7, 3]);
        assert_eq!((tok.eos_id(), tok.pad_id()), (Some(2), Some(0)));
        let tmpl = crate::chat_template::ChatTemplate::from_tokenizer(&tok).unwrap();
        let text = tmpl.render(&[crate::Message::new("user", "say yes")], true).unwrap();
        assert_eq!(tok.encode(&text, false).unwrap(), vec![1, 4, 6, 7, 2, 1, 5]);
        let e = write_word_level_chatml(d.path(), &["[UNK]", "a", "b", "c"]).unwrap_err().to_string();
        assert!(e.contains("word-level ChatML vocabulary"), "{e}");
    }

    fn shared(name: &str) -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../../shared/data/tokenizers")
            .join(name)
    }

    #[test]
    fn gpt2_encodes_and_decodes() {
        let tok = Tokenizer::from_dir(shared("gpt2")).unwrap();
        assert_eq!(tok.encode("Hello world", true).unwrap(), vec![15496, 995]);
        assert_eq!(tok.encode("Hello world", false).unwrap(), vec![15496, 995]);
        assert_eq!(tok.decode(&[15496, 995], false).unwrap(), "Hello world");
        assert_eq!(tok.vocab_size(), 50257);
        assert_eq!(tok.bos_id(), Some(50256));
        assert_eq!(tok.eos_ids(), &[50256]);
        assert_eq!(tok.eos_token(), Some("<|endoftext|>"));
        assert_eq!(tok.pad_id(), None);
        assert_eq!(tok.model_max_length(), Some(1024));
        assert_eq!(tok.token_to_id("Hello"), Some(15496));
        assert_eq!(tok.id_to_token(995).as_deref(), Some("Ġworld"));
        assert!(tok.chat_template().is_none());
    }

    #[test]
    fn mistral_adds_bos() {
        let tok = Tokenizer::from_dir(shared("mistral-7b")).unwrap();
        assert_eq!(tok.bos_id(), Some(1));
        assert_eq!(tok.eos_ids(), &[2]);
        assert_eq!(tok.bos_token(), Some("<s>"));
        assert_eq!(tok.model_max_length(), None, "1e30 means unlimited");
        let with = tok.encode("Hello world", true).unwrap();
        let without = tok.encode("Hello world", false).unwrap();
        assert_eq!(with[0], 1);
        assert_eq!(&with[1..], &without[..]);
        assert_ne!(without[0], 1);
        assert_eq!(tok.decode(&with, true).unwrap(), "Hello world");
    }

    #[test]
    fn config_flags_override_the_post_processor() {
        // Mistral's files with add_bos_token false and add_eos_token true.
        let d = tempfile::tempdir().unwrap();
        std::fs::copy(
            shared("mistral-7b/tokenizer.json"),
            d.path().join("tokenizer.json"),
        )
        .unwrap();
        let cfg = r#"{"bos_token": {"content": "<s>", "special": true}, "eos_token": "</s>",
            "add_bos_token": false, "add_eos_token": true,
            "chat_template": [{"name": "tool_use", "template": "T"}, {"name": "default", "template": "D"}]}"#;
        std::fs::write(d.path().join("tokenizer_config.json"), cfg).unwrap();
        std::fs::write(
            d.path().join("generation_config.json"),
            r#"{"eos_token_id": [2, 7], "bos_token_id": 1}"#,
        )
        .unwrap();
        let tok = Tokenizer::from_dir(d.path()).unwrap();
        let ids = tok.encode("Hello", true).unwrap();
        assert_eq!(ids, [tok.encode("Hello", false).unwrap(), vec![2]].concat());
        assert_eq!(tok.eos_ids(), &[2, 7]);
        assert_eq!(tok.chat_template(), Some("D"));
        assert_eq!(
            tok.encode_batch(&["Hello".into()], true).unwrap(),
            vec![ids]
        );
    }

    #[test]
    fn clear_errors() {
        let d = tempfile::tempdir().unwrap();
        let e = Tokenizer::from_dir(d.path()).unwrap_err().to_string();
        assert!(e.contains("tokenizer.json: not found"), "{e}");
        std::fs::write(d.path().join("tokenizer.json"), "{ nope").unwrap();
        let e = Tokenizer::from_dir(d.path()).unwrap_err().to_string();
        assert!(e.contains("tokenizer.json"), "{e}");
        std::fs::copy(
            shared("gpt2/tokenizer.json"),
            d.path().join("tokenizer.json"),
        )
        .unwrap();
        std::fs::write(d.path().join("tokenizer_config.json"), "{\"eos_token\": ").unwrap();
        let e = Tokenizer::from_dir(d.path()).unwrap_err().to_string();
        assert!(e.contains("tokenizer_config.json: invalid JSON"), "{e}");
        std::fs::write(d.path().join("tokenizer_config.json"), "{\"eos_token\": 3}").unwrap();
        let e = Tokenizer::from_dir(d.path()).unwrap_err().to_string();
        assert!(
            e.contains("`eos_token`: expected a string or an object, got number"),
            "{e}"
        );
        // Only tokenizer.json: ids fall back to config.json.
        std::fs::remove_file(d.path().join("tokenizer_config.json")).unwrap();
        std::fs::copy(shared("gpt2/config.json"), d.path().join("config.json")).unwrap();
        let tok = Tokenizer::from_dir(d.path()).unwrap();
        assert_eq!(tok.eos_ids(), &[50256]);
        assert_eq!(tok.eos_token(), Some("<|endoftext|>"));
    }

    #[test]
    fn decode_stream_never_breaks_utf8() {
        let tok = Tokenizer::from_dir(shared("gpt2")).unwrap();
        let text = "Héllo 世界 🦀 done";
        let ids = tok.encode(text, false).unwrap();
        let mut stream = tok.decode_stream(false);
        let mut out = String::new();
        let mut nones = 0;
        for &id in &ids {
            match stream.step(id).unwrap() {
                Some(piece) => out.push_str(&piece),
                None => nones += 1,
            }
        }
        assert_eq!(out, text);
        assert!(nones > 0, "the emoji/CJK bytes span several tokens");
    }

    fn corpus() -> Vec<String> {
        let base = "the quick brown fox jumps over the lazy dog. ";
        (0..60)
            .map(|i| format!("{base}{} said {} to the {}.\n", i % 7, i % 5, i % 3).repeat(3))
            .collect()
    }

    #[test]
    fn trained_bpe_round_trips_and_saves() {
        let tok = train_bpe_from_texts(&corpus(), 300, &DEFAULT_SPECIAL_TOKENS, 2).unwrap();
        assert_eq!(tok.token_to_id("<|endoftext|>"), Some(0));
        assert_eq!(tok.token_to_id("<|im_start|>"), Some(1));
        assert_eq!(tok.token_to_id("<|im_end|>"), Some(2));
        assert_eq!(
            (tok.bos_id(), tok.eos_ids(), tok.pad_id()),
            (Some(0), &[0][..], Some(0))
        );
        assert_eq!(tok.vocab_size(), 300);
        let text = "the lazy fox <|im_start|>user\nü 🦀<|im_end|>";
        let ids = tok.encode(text, true).unwrap();
        assert!(ids.contains(&1) && ids.contains(&2));
        assert_eq!(tok.decode(&ids, false).unwrap(), text);
        assert!(
            tok.encode("the quick brown", false).unwrap().len() < 6,
            "merges were learned"
        );

        let d = tempfile::tempdir().unwrap();
        tok.save_dir(d.path()).unwrap();
        let cfg: Value = serde_json::from_str(
            &std::fs::read_to_string(d.path().join("tokenizer_config.json")).unwrap(),
        )
        .unwrap();
        assert_eq!(cfg["tokenizer_class"], "PreTrainedTokenizerFast");
        assert_eq!(cfg["bos_token"], "<|endoftext|>");
        assert_eq!(cfg["pad_token"], "<|endoftext|>");
        assert_eq!(cfg["unk_token"], Value::Null);
        assert_eq!(cfg["clean_up_tokenization_spaces"], false);
        assert_eq!(cfg["model_max_length"], 1024);
        assert_eq!(cfg["chat_template"], CHATML_TEMPLATE);
        assert_eq!(cfg["added_tokens_decoder"]["2"]["content"], "<|im_end|>");
        assert_eq!(cfg["added_tokens_decoder"]["2"]["special"], true);
        let back = Tokenizer::from_dir(d.path()).unwrap();
        assert_eq!(back.encode(text, true).unwrap(), ids);
        assert_eq!(back.eos_ids(), &[0]);
        assert_eq!(back.chat_template(), Some(CHATML_TEMPLATE));
    }

    #[test]
    fn training_is_deterministic() {
        let docs = corpus();
        let a = train_bpe_from_texts(&docs, 320, &DEFAULT_SPECIAL_TOKENS, 1).unwrap();
        let b = train_bpe_from_texts(&docs, 320, &DEFAULT_SPECIAL_TOKENS, 1).unwrap();
        let ja = a.inner().to_string(false).unwrap();
        assert_eq!(ja, b.inner().to_string(false).unwrap());
        // Through files too (text and JSONL give the same documents here).
        let d = tempfile::tempdir().unwrap();
        let jsonl: String = docs
            .iter()
            .map(|t| serde_json::to_string(&json!({ "text": t })).unwrap() + "\n")
            .collect();
        std::fs::write(d.path().join("c.jsonl"), jsonl).unwrap();
        let c = train_bpe(&[d.path().join("c.jsonl")], 320, &DEFAULT_SPECIAL_TOKENS, 1).unwrap();
        assert_eq!(ja, c.inner().to_string(false).unwrap());
    }

    #[test]
    fn split_digits_keeps_one_digit_per_token() {
        // Numbers repeat often enough that plain BPE merges them ("1895" as one or two tokens).
        let docs: Vec<String> = (0..80)
            .map(|i| format!("The tower was built in 1895 and is {} meters tall, {} in all.\n", 100 + i % 4, 2048 + i % 3).repeat(3))
            .collect();
        let digits = |t: &Tokenizer| (0..t.vocab_size() as u32).filter_map(|i| t.id_to_token(i)).filter(|s| s.chars().filter(|c| c.is_ascii_digit()).count() > 1).count();
        let plain = train_bpe_from_texts(&docs, 320, &DEFAULT_SPECIAL_TOKENS, 2).unwrap();
        assert!(digits(&plain) > 0, "plain BPE merges digits");
        let tok = train_bpe_from_texts_opts(&docs, 320, &DEFAULT_SPECIAL_TOKENS, 2, true).unwrap();
        assert_eq!(digits(&tok), 0, "no token holds two digits");
        let text = "built in 1895, 102 meters";
        let ids = tok.encode(text, false).unwrap();
        let pieces: Vec<String> = ids.iter().map(|&i| tok.id_to_token(i).unwrap()).collect();
        let at = pieces.iter().position(|p| p == "Ġ1").expect("the space stays with the first digit");
        assert_eq!(&pieces[at..at + 5], ["Ġ1", "8", "9", "5", ","]);
        assert_eq!(tok.decode(&ids, false).unwrap(), text);
        assert!(tok.encode("The tower was built", false).unwrap().len() < 5, "words still merge");
        // The pre-tokenizer is saved in tokenizer.json, so a reload splits the same way.
        let d = tempfile::tempdir().unwrap();
        tok.save_dir(d.path()).unwrap();
        let back = Tokenizer::from_dir(d.path()).unwrap();
        assert_eq!(back.encode(text, false).unwrap(), ids);
    }

    #[test]
    fn training_rejects_bad_arguments() {
        let e = train_bpe_from_texts(&corpus(), 100, &DEFAULT_SPECIAL_TOKENS, 2)
            .unwrap_err()
            .to_string();
        assert!(e.contains("vocab_size 100"), "{e}");
        assert!(train_bpe_from_texts(&corpus(), 300, &[], 2).is_err());
        assert!(train_bpe(
            &[PathBuf::from("/nonexistent/x.txt")],
            300,
            &DEFAULT_SPECIAL_TOKENS,
            2
        )
        .is_err());
    }
}
