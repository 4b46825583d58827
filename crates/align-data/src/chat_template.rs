//! Chat templates: render a model's Jinja `chat_template` as transformers'
//! `apply_chat_template` does, and tokenize a conversation with an assistant-only loss mask.
//!
//! Rendering matches transformers' `render_jinja_template` (see docs/chat_templates.md):
//! - a `minijinja` environment with `trim_blocks` and `lstrip_blocks` on and no trailing newline
//!   kept, as transformers' `jinja2.Environment(trim_blocks=True, lstrip_blocks=True)`;
//!   `{% break %}`/`{% continue %}` (jinja2's `loopcontrols`);
//! - Python string/dict/list methods (`.strip()`, `.startswith()`, `.split()`, `.items()`, ...)
//!   from `minijinja_contrib::pycompat`;
//! - the globals `raise_exception(msg)` (rendering fails with `msg`) and `strftime_now(fmt)`
//!   (the current UTC time), and a `tojson` filter that writes what Python's
//!   `json.dumps(x, ensure_ascii=False)` writes;
//! - the variables `messages`, `add_generation_prompt`, `bos_token`, `eos_token`, `tools` and
//!   `documents` (both none), plus any set with [`ChatTemplate::with_var`];
//! - `{% generation %}…{% endgeneration %}` (transformers' `AssistantTracker`) becomes a filter
//!   block that wraps its output in two Unicode noncharacters; after rendering they are removed
//!   and their byte offsets are the generation spans.
//!
//! Loss mask ([`tokenize_conversation`]): a token is trained (mask 1) when its byte range overlaps
//! an assistant span. With `{% generation %}` tags the spans are the template's. Without them, the
//! span of assistant message `i` is what `render(messages[..=i])` adds after
//! `render(messages[..i], add_generation_prompt=true)`, without trailing whitespace: the content
//! and the end-of-turn token(s) the template writes after it (ChatML: `content<|im_end|>`, not
//! the `\n` after it).

use crate::error::{DataError, Result};
use crate::tokenizer::{Tokenizer, CHATML_TEMPLATE};
use minijinja::value::{Kwargs, Serde, Value, ValueKind};
use minijinja::{Environment, Error as JinjaError, ErrorKind, State};
use serde::{Deserialize, Serialize};
use std::ops::Range;

/// Start and end of a `{% generation %}` block in the rendered text. Unicode noncharacters:
/// "permanently reserved for internal use", they do not occur in text a model is trained on
/// (messages that hold them are rejected).
const GEN_START: char = '\u{FDD0}';
const GEN_END: char = '\u{FDD1}';
const GEN_FILTER: &str = "__align_generation";
const TEMPLATE_NAME: &str = "chat_template";

/// One message of a conversation. Keys other than `role` and `content` (for example
/// `reasoning_content`) are kept in `extra` and passed to the template.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Message {
    pub role: String,
    pub content: String,
    #[serde(flatten, default, skip_serializing_if = "serde_json::Map::is_empty")]
    pub extra: serde_json::Map<String, serde_json::Value>,
}

impl Message {
    pub fn new(role: impl Into<String>, content: impl Into<String>) -> Self {
        Message {
            role: role.into(),
            content: content.into(),
            extra: serde_json::Map::new(),
        }
    }
}

/// A compiled chat template with the special-token strings it may use.
pub struct ChatTemplate {
    env: Environment<'static>,
    source: String,
    bos_token: Option<String>,
    eos_token: Option<String>,
    vars: serde_json::Map<String, serde_json::Value>,
    has_generation: bool,
}

impl std::fmt::Debug for ChatTemplate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChatTemplate")
            .field("bos_token", &self.bos_token)
            .field("eos_token", &self.eos_token)
            .field("has_generation", &self.has_generation)
            .field("source_len", &self.source.len())
            .finish()
    }
}

/// A minijinja error as text: its message, and the template line when known.
fn jinja_msg(e: &JinjaError) -> String {
    let mut msg = match e.kind() {
        ErrorKind::InvalidOperation => e.detail().unwrap_or("invalid operation").to_string(),
        _ => e.to_string(),
    };
    if let (Some(line), false) = (e.line(), msg.contains("line ")) {
        msg.push_str(&format!(" (template line {line})"));
    }
    let mut src = std::error::Error::source(e);
    while let Some(s) = src {
        msg.push_str(&format!(": {s}"));
        src = s.source();
    }
    msg
}

/// Rewrites `{% generation %}` / `{% endgeneration %}` (any whitespace control) to
/// `{% filter __align_generation %}` / `{% endfilter %}`: block tags both, so `trim_blocks`,
/// `lstrip_blocks` and `-`/`+` act on them exactly as jinja2 does on the original tags.
/// Returns the new source and whether a tag was found.
fn rewrite_generation_tags(source: &str) -> (String, bool) {
    let mut out = String::with_capacity(source.len() + 64);
    let mut found = false;
    let mut rest = source;
    while let Some(pos) = rest.find("{%") {
        out.push_str(&rest[..pos]);
        let tag = &rest[pos..];
        let Some(close) = tag.find("%}") else {
            out.push_str(tag);
            return (out, found);
        };
        let inner = &tag[2..close];
        let (lead, body) = match inner.chars().next() {
            Some(c @ ('-' | '+')) => (c.to_string(), &inner[1..]),
            _ => (String::new(), inner),
        };
        let (body, trail) = match body.chars().last() {
            Some(c @ ('-' | '+')) => (&body[..body.len() - 1], c.to_string()),
            _ => (body, String::new()),
        };
        let replacement = match body.trim() {
            "generation" => Some(format!("{GEN_FILTER} ")),
            "endgeneration" => Some("endfilter ".to_string()),
            _ => None,
        };
        match replacement {
            Some(r) => {
                found = true;
                let kw = if r.starts_with(GEN_FILTER) {
                    "filter "
                } else {
                    ""
                };
                out.push_str(&format!("{{%{lead} {kw}{r}{trail}%}}"));
            }
            None => out.push_str(&tag[..close + 2]),
        }
        rest = &tag[close + 2..];
    }
    out.push_str(rest);
    (out, found)
}

/// A JSON string as Python's `json.dumps(s, ensure_ascii=False)` writes it.
fn py_json_str(s: &str, out: &mut String) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{08}' => out.push_str("\\b"),
            '\u{0c}' => out.push_str("\\f"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
}

/// `json.dumps(v, ensure_ascii=False, indent=indent, sort_keys=sort_keys)`.
fn py_json(
    v: &Value,
    indent: Option<usize>,
    sort_keys: bool,
    depth: usize,
    out: &mut String,
) -> Result<(), JinjaError> {
    let (item_sep, key_sep) = if indent.is_some() {
        (",", ": ")
    } else {
        (", ", ": ")
    };
    let newline = |out: &mut String, d: usize| {
        if let Some(n) = indent {
            out.push('\n');
            out.push_str(&" ".repeat(n * d));
        }
    };
    match v.kind() {
        ValueKind::Undefined | ValueKind::None => out.push_str("null"),
        ValueKind::Bool => out.push_str(if v.is_true() { "true" } else { "false" }),
        ValueKind::Number => {
            if let Ok(f) = f64::try_from(v.clone()) {
                if v.as_i64().is_none() && f.is_finite() && f == f.trunc() && f.abs() < 1e16 {
                    out.push_str(&format!("{f:.1}")); // Python writes 1.0, not 1
                } else {
                    out.push_str(&v.to_string());
                }
            } else {
                out.push_str(&v.to_string());
            }
        }
        ValueKind::String => py_json_str(v.as_str().unwrap_or_default(), out),
        ValueKind::Seq | ValueKind::Iterable => {
            let items: Vec<Value> = v.try_iter()?.collect();
            if items.is_empty() {
                out.push_str("[]");
                return Ok(());
            }
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push_str(item_sep);
                }
                newline(out, depth + 1);
                py_json(item, indent, sort_keys, depth + 1, out)?;
            }
            newline(out, depth);
            out.push(']');
        }
        ValueKind::Map => {
            let mut keys: Vec<Value> = v.try_iter()?.collect();
            if sort_keys {
                keys.sort();
            }
            if keys.is_empty() {
                out.push_str("{}");
                return Ok(());
            }
            out.push('{');
            for (i, k) in keys.iter().enumerate() {
                if i > 0 {
                    out.push_str(item_sep);
                }
                newline(out, depth + 1);
                match k.as_str() {
                    Some(s) => py_json_str(s, out),
                    None => py_json_str(&k.to_string(), out),
                }
                out.push_str(key_sep);
                py_json(&v.get_item(k)?, indent, sort_keys, depth + 1, out)?;
            }
            newline(out, depth);
            out.push('}');
        }
        _ => {
            return Err(JinjaError::new(
                ErrorKind::InvalidOperation,
                format!("tojson: cannot serialize a {}", v.kind()),
            ))
        }
    }
    Ok(())
}

/// transformers' `tojson` filter: `json.dumps(x, ensure_ascii=False, indent=indent,
/// sort_keys=sort_keys)` (not HTML-escaped, unlike minijinja's own).
fn tojson_filter(v: Value, indent: Option<Value>, kwargs: Kwargs) -> Result<Value, JinjaError> {
    let indent = match indent {
        Some(i) => Some(i),
        None => kwargs.get::<Option<Value>>("indent")?,
    };
    let indent = match indent {
        Some(i) if !i.is_none() => Some(usize::try_from(i)?),
        _ => None,
    };
    let sort_keys = kwargs.get::<Option<bool>>("sort_keys")?.unwrap_or(false);
    // `separators` is accepted and ignored: the defaults are what templates use.
    let _ = kwargs.get::<Option<Value>>("separators")?;
    kwargs.assert_all_used()?;
    let mut out = String::new();
    py_json(&v, indent, sort_keys, 0, &mut out)?;
    Ok(Value::from_safe_string(out))
}

/// Days since 1970-01-01 → (year, month 1..=12, day 1..=31) (Howard Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

/// Python's `strftime` for a Unix time (UTC), for the directives chat templates use.
fn strftime(secs: i64, fmt: &str) -> String {
    const MONTHS: [&str; 12] = [
        "January",
        "February",
        "March",
        "April",
        "May",
        "June",
        "July",
        "August",
        "September",
        "October",
        "November",
        "December",
    ];
    const DAYS: [&str; 7] = [
        "Monday",
        "Tuesday",
        "Wednesday",
        "Thursday",
        "Friday",
        "Saturday",
        "Sunday",
    ];
    let days = secs.div_euclid(86_400);
    let sod = secs.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    let wd = (days + 3).rem_euclid(7) as usize; // 1970-01-01 was a Thursday
    let mut out = String::new();
    let mut chars = fmt.chars();
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('d') => out.push_str(&format!("{d:02}")),
            Some('m') => out.push_str(&format!("{m:02}")),
            Some('Y') => out.push_str(&y.to_string()),
            Some('y') => out.push_str(&format!("{:02}", y.rem_euclid(100))),
            Some('B') => out.push_str(MONTHS[m as usize - 1]),
            Some('b') => out.push_str(&MONTHS[m as usize - 1][..3]),
            Some('A') => out.push_str(DAYS[wd]),
            Some('a') => out.push_str(&DAYS[wd][..3]),
            Some('H') => out.push_str(&format!("{:02}", sod / 3600)),
            Some('M') => out.push_str(&format!("{:02}", sod / 60 % 60)),
            Some('S') => out.push_str(&format!("{:02}", sod % 60)),
            Some('%') => out.push('%'),
            Some(other) => {
                out.push('%');
                out.push(other);
            }
            None => out.push('%'),
        }
    }
    out
}

fn new_env(source: String) -> Result<(Environment<'static>, bool, String)> {
    let (rewritten, has_generation) = rewrite_generation_tags(&source);
    let mut env = Environment::new();
    let syntax = minijinja::syntax::SyntaxConfig::builder()
        .trim_blocks(true)
        .lstrip_blocks(true)
        .keep_trailing_newline(false)
        .build()
        .map_err(|e| DataError::Invalid(format!("chat template: {}", jinja_msg(&e))))?;
    env.set_syntax(syntax);
    env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
    env.add_function(
        "raise_exception",
        |msg: String| -> Result<Value, JinjaError> {
            Err(JinjaError::new(ErrorKind::InvalidOperation, msg))
        },
    );
    env.add_function("strftime_now", |fmt: String| -> Result<Value, JinjaError> {
        let secs = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs() as i64)
            .unwrap_or(0);
        Ok(Value::from(strftime(secs, &fmt)))
    });
    env.add_filter("tojson", tojson_filter);
    env.add_filter(GEN_FILTER, |_state: &State, body: String| -> String {
        format!("{GEN_START}{body}{GEN_END}")
    });
    env.add_template_owned(TEMPLATE_NAME, rewritten)
        .map_err(|e| DataError::Invalid(format!("chat template: {}", jinja_msg(&e))))?;
    Ok((env, has_generation, source))
}

impl ChatTemplate {
    /// Compiles `source` (HF's Jinja dialect). `bos_token`/`eos_token` are the strings the
    /// template sees as `bos_token`/`eos_token` (undefined when `None`). A syntax error is
    /// reported with its line.
    pub fn new(source: &str, bos_token: Option<&str>, eos_token: Option<&str>) -> Result<Self> {
        let (env, has_generation, source) = new_env(source.to_string())?;
        Ok(ChatTemplate {
            env,
            source,
            bos_token: bos_token.map(str::to_string),
            eos_token: eos_token.map(str::to_string),
            vars: serde_json::Map::new(),
            has_generation,
        })
    }

    /// The tokenizer's `chat_template` with its BOS/EOS strings; a tokenizer without a template
    /// gets [`CHATML_TEMPLATE`] (the template align writes into the tokenizers it trains), which
    /// needs `<|im_start|>`/`<|im_end|>` in the vocabulary to tokenize turns as single tokens.
    pub fn from_tokenizer(tok: &Tokenizer) -> Result<Self> {
        let source = tok.chat_template().unwrap_or(CHATML_TEMPLATE);
        ChatTemplate::new(source, tok.bos_token(), tok.eos_token())
    }

    /// Sets an extra template variable, as a keyword argument of `apply_chat_template` does
    /// (e.g. `date_string`, `enable_thinking`).
    pub fn with_var(mut self, name: &str, value: serde_json::Value) -> Self {
        self.vars.insert(name.to_string(), value);
        self
    }

    /// The template source as given (before the `{% generation %}` rewrite).
    pub fn source(&self) -> &str {
        &self.source
    }

    /// Whether the template marks assistant output with `{% generation %}` blocks.
    pub fn has_generation_tags(&self) -> bool {
        self.has_generation
    }

    fn render_raw(&self, messages: &[Message], add_generation_prompt: bool) -> Result<String> {
        if self.has_generation {
            for (i, m) in messages.iter().enumerate() {
                if m.content.contains([GEN_START, GEN_END]) {
                    return Err(DataError::Invalid(format!(
                        "chat template: message {i} holds U+FDD0/U+FDD1, which mark generation spans"
                    )));
                }
            }
        }
        let mut ctx: std::collections::BTreeMap<String, Value> = self
            .vars
            .iter()
            .map(|(k, v)| (k.clone(), Value::from(Serde(v))))
            .collect();
        ctx.insert("messages".into(), Value::from(Serde(messages)));
        ctx.insert(
            "add_generation_prompt".into(),
            Value::from(add_generation_prompt),
        );
        ctx.insert("tools".into(), Value::from(()));
        ctx.insert("documents".into(), Value::from(()));
        if let Some(b) = &self.bos_token {
            ctx.insert("bos_token".into(), Value::from(b.as_str()));
        }
        if let Some(e) = &self.eos_token {
            ctx.insert("eos_token".into(), Value::from(e.as_str()));
        }
        let tmpl = self
            .env
            .get_template(TEMPLATE_NAME)
            .map_err(|e| DataError::Invalid(format!("chat template: {}", jinja_msg(&e))))?;
        tmpl.render(ctx)
            .map_err(|e| DataError::Invalid(format!("chat template: {}", jinja_msg(&e))))
    }

    /// The text of `messages`, as `apply_chat_template(messages, tokenize=False,
    /// add_generation_prompt=...)`. A template's `raise_exception(msg)` is an error holding `msg`.
    pub fn render(&self, messages: &[Message], add_generation_prompt: bool) -> Result<String> {
        Ok(self.render_with_spans(messages, add_generation_prompt)?.0)
    }

    /// The text and the byte ranges of its `{% generation %}` blocks, in order (empty when the
    /// template has none), as transformers' `return_assistant_tokens_mask` records them.
    pub fn render_with_spans(
        &self,
        messages: &[Message],
        add_generation_prompt: bool,
    ) -> Result<(String, Vec<Range<usize>>)> {
        let raw = self.render_raw(messages, add_generation_prompt)?;
        if !self.has_generation {
            return Ok((raw, vec![]));
        }
        let mut text = String::with_capacity(raw.len());
        let mut spans = vec![];
        let mut open: Vec<usize> = vec![];
        for c in raw.chars() {
            match c {
                GEN_START => open.push(text.len()),
                GEN_END => {
                    let start = open.pop().ok_or_else(|| {
                        DataError::Invalid("chat template: unbalanced generation markers".into())
                    })?;
                    // In the order blocks end, as transformers records them (nested: inner first).
                    spans.push(start..text.len());
                }
                c => text.push(c),
            }
        }
        if !open.is_empty() {
            return Err(DataError::Invalid(
                "chat template: unbalanced generation markers".into(),
            ));
        }
        Ok((text, spans))
    }

    /// Byte spans of the assistant turns in `render(messages, false)`: the `{% generation %}`
    /// blocks, or, for a template without them, the incremental-prefix spans (module docs).
    /// Fails when the template is not prefix-preserving (an earlier turn renders differently
    /// once later turns follow, e.g. Qwen3 dropping the thinking of earlier turns).
    pub fn assistant_spans(&self, messages: &[Message]) -> Result<(String, Vec<Range<usize>>)> {
        if self.has_generation {
            return self.render_with_spans(messages, false);
        }
        let full = self.render(messages, false)?;
        let mut spans = vec![];
        for (i, m) in messages.iter().enumerate() {
            if m.role != "assistant" {
                continue;
            }
            let prompt = self.render(&messages[..i], true)?;
            let upto = self.render(&messages[..=i], false)?;
            if !upto.starts_with(&prompt) || !full.starts_with(&upto) {
                return Err(DataError::Invalid(format!(
                    "chat template is not prefix-preserving at message {i} (assistant): the \
                     rendering of the conversation up to it is not a prefix of the whole; use a \
                     template with {{% generation %}} blocks to mark assistant output"
                )));
            }
            let end = prompt.len() + upto[prompt.len()..].trim_end().len();
            spans.push(prompt.len()..end);
        }
        Ok((full, spans))
    }
}

/// Token ids of `render(messages, add_generation_prompt=false)` (encoded without special tokens,
/// as `apply_chat_template(tokenize=True)` does) and an assistant-only loss mask: 1 on every
/// token whose bytes overlap an assistant span ([`ChatTemplate::assistant_spans`]: the assistant
/// contents and the end-of-turn token(s) after each, e.g. `<|im_end|>` / `<|eot_id|>`), 0 on the
/// rest.
pub fn tokenize_conversation(
    tok: &Tokenizer,
    tmpl: &ChatTemplate,
    messages: &[Message],
) -> Result<(Vec<u32>, Vec<u8>)> {
    let (text, spans) = tmpl.assistant_spans(messages)?;
    let enc = tok
        .inner()
        .encode(text.as_str(), false)
        .map_err(|e| DataError::Tokenizer {
            context: "encode chat".into(),
            msg: e.to_string(),
        })?;
    // Rust `tokenizers` offsets are byte offsets into `text`.
    let mask = enc
        .get_offsets()
        .iter()
        .map(|&(s, e)| {
            // A token of zero width counts as covering its start byte.
            let e = e.max(s + 1);
            u8::from(
                spans
                    .iter()
                    .any(|r| r.start < r.end && s < r.end && r.start < e),
            )
        })
        .collect();
    Ok((enc.get_ids().to_vec(), mask))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rewrites_generation_tags_keeping_whitespace_control() {
        let (s, found) = rewrite_generation_tags("a{%- generation %}b{% endgeneration -%}c");
        assert!(found);
        assert_eq!(
            s,
            format!("a{{%- filter {GEN_FILTER} %}}b{{% endfilter -%}}c")
        );
        let (s, found) = rewrite_generation_tags("{% if x %}y{% endif %}");
        assert!(!found);
        assert_eq!(s, "{% if x %}y{% endif %}");
    }

    #[test]
    fn strftime_known_dates() {
        // 2024-07-26 00:00:00 UTC was a Friday.
        assert_eq!(strftime(1_721_952_000, "%d %b %Y"), "26 Jul 2024");
        assert_eq!(
            strftime(1_721_952_000, "%A %B %d %H:%M:%S %%"),
            "Friday July 26 00:00:00 %"
        );
        assert_eq!(strftime(0, "%Y-%m-%d %a"), "1970-01-01 Thu");
    }

    #[test]
    fn tojson_like_python() {
        let v = Value::from(Serde(
            serde_json::json!({"b": [1, 2.0, "é<>\n"], "a": null}),
        ));
        let mut out = String::new();
        py_json(&v, None, true, 0, &mut out).unwrap();
        assert_eq!(out, r#"{"a": null, "b": [1, 2.0, "é<>\n"]}"#);
    }
}
