//! Data sets in TRL's formats, read from JSONL, JSON, gzip'd JSON(L) and Parquet (docs/formats.md).
//!
//! A TRL field is either a string ("standard") or a list of `{role, content}` messages
//! ("conversational"); [`Text`] is that choice. An [`Example`] is one record of one of TRL's
//! formats: language modeling (`text` or `messages`), prompt/completion, preference
//! (`prompt`/`chosen`/`rejected`, the prompt explicit or implicit) and unpaired preference
//! (`prompt`/`completion`/`label`, KTO). LLaMA-Factory's Alpaca and ShareGPT files are converted
//! to these ([`from_alpaca`], [`from_sharegpt`]).
//!
//! Reading goes: file → JSON objects (a Parquet row becomes one too) → the format, from
//! [`ReadOptions::format`] or [`detect_format`] → one [`Example`] per record, validated. A bad record
//! is an error naming file, line (Parquet: row) and field, or, with `skip_invalid`, is counted by
//! its [`reason`] in the [`ReadReport`]. Nothing is dropped silently.

pub use crate::chat_template::Message;
use crate::error::{read_to_string, DataError, Result};
use crate::jsonl::json_type;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::collections::{BTreeMap, BTreeSet};
use std::io::Read;
use std::path::Path;

// ---------------------------------------------------------------------------------------------
// Types

/// A TRL field: a string (standard) or a list of messages (conversational).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Text {
    Plain(String),
    Conversation(Vec<Message>),
}

impl Text {
    /// TRL's `is_conversational`.
    pub fn is_conversational(&self) -> bool {
        matches!(self, Text::Conversation(_))
    }

    /// An empty list, or text (every message's content) that is only whitespace.
    pub fn is_blank(&self) -> bool {
        match self {
            Text::Plain(s) => s.trim().is_empty(),
            Text::Conversation(m) => m.iter().all(|m| m.content.trim().is_empty()),
        }
    }
}

/// One record of one of TRL's data-set formats.
#[derive(Debug, Clone, PartialEq)]
pub enum Example {
    /// `{"text": "..."}` or `{"messages": [...]}`.
    LanguageModeling { text: Text },
    /// `{"prompt": ..., "completion": ...}`.
    PromptCompletion { prompt: Text, completion: Text },
    /// `{"prompt"?: ..., "chosen": ..., "rejected": ..., "margin"?: x}`. `prompt` is `None` only
    /// when the prompt is implicit and [`ReadOptions::extract_prompt`] is off. `prob` is a soft
    /// label, the probability that `chosen` wins, read from [`FieldMap::prob`] when set.
    Preference {
        prompt: Option<Text>,
        chosen: Text,
        rejected: Text,
        margin: Option<f64>,
        prob: Option<f64>,
    },
    /// `{"prompt": ..., "completion": ..., "label": true}` (KTO).
    Unpaired {
        prompt: Text,
        completion: Text,
        label: bool,
    },
}

/// Which format a file holds. `Auto` decides from the field names ([`detect_format`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Format {
    #[default]
    Auto,
    LanguageModeling,
    PromptCompletion,
    Preference,
    Unpaired,
    /// LLaMA-Factory's `{instruction, input, output, system?, history?}` → prompt/completion.
    Alpaca,
    /// LLaMA-Factory's `{conversations: [{from, value}], system?, chosen?, rejected?}` →
    /// language modeling, or preference when `chosen`/`rejected` are present.
    ShareGpt,
}

/// The names of the fields (JSON keys, Parquet columns) of TRL's formats, remappable in the
/// config: `fields = { chosen = "response_a", rejected = "response_b" }`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FieldMap {
    pub text: String,
    pub messages: String,
    pub prompt: String,
    pub completion: String,
    pub chosen: String,
    pub rejected: String,
    pub label: String,
    pub margin: String,
    /// A soft preference label (probability that `chosen` wins), e.g. `label_prob`; none by default.
    pub prob: Option<String>,
}

impl Default for FieldMap {
    fn default() -> Self {
        FieldMap {
            text: "text".into(),
            messages: "messages".into(),
            prompt: "prompt".into(),
            completion: "completion".into(),
            chosen: "chosen".into(),
            rejected: "rejected".into(),
            label: "label".into(),
            margin: "margin".into(),
            prob: None,
        }
    }
}

impl FieldMap {
    /// Every field name that is read.
    fn names(&self) -> BTreeSet<&str> {
        let mut names: BTreeSet<&str> = [
            &self.text,
            &self.messages,
            &self.prompt,
            &self.completion,
            &self.chosen,
            &self.rejected,
            &self.label,
            &self.margin,
        ]
        .into_iter()
        .map(String::as_str)
        .collect();
        names.extend(self.prob.as_deref());
        names.extend(ALPACA_FIELDS.iter().chain(SHAREGPT_FIELDS));
        names
    }
}

const ALPACA_FIELDS: &[&str] = &["instruction", "input", "output", "system", "history"];
const SHAREGPT_FIELDS: &[&str] = &["conversations", "system", "chosen", "rejected"];

/// How to read a data file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ReadOptions {
    pub format: Format,
    pub fields: FieldMap,
    /// Skip bad records, counting them by reason, instead of failing on the first.
    pub skip_invalid: bool,
    /// Roles a message may have.
    pub allowed_roles: Vec<String>,
    /// Split an implicit prompt off `chosen`/`rejected` ([`extract_prompt`]); on by default.
    pub extract_prompt: bool,
}

impl Default for ReadOptions {
    fn default() -> Self {
        ReadOptions {
            format: Format::Auto,
            fields: FieldMap::default(),
            skip_invalid: false,
            allowed_roles: ["system", "user", "assistant", "tool"]
                .map(String::from)
                .to_vec(),
            extract_prompt: true,
        }
    }
}

/// What reading a file did: records read, examples kept, records skipped by reason.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ReadReport {
    /// The format read (the detected one when [`Format::Auto`]; `Auto` for a file without records).
    pub format: Format,
    pub read: usize,
    pub kept: usize,
    pub skipped: BTreeMap<String, usize>,
}

impl ReadReport {
    pub fn skipped_total(&self) -> usize {
        self.skipped.values().sum()
    }

    /// `read 2312, kept 2310, skipped 2 (empty response: 1, identical chosen and rejected: 1)`.
    pub fn summary(&self) -> String {
        let mut s = format!(
            "read {}, kept {}, skipped {}",
            self.read,
            self.kept,
            self.skipped_total()
        );
        if !self.skipped.is_empty() {
            let reasons: Vec<String> = self
                .skipped
                .iter()
                .map(|(r, n)| format!("{r}: {n}"))
                .collect();
            s.push_str(&format!(" ({})", reasons.join(", ")));
        }
        s
    }
}

/// Why a record is bad: the keys that `skip_invalid` counts.
pub mod reason {
    pub const INVALID_JSON: &str = "invalid JSON";
    pub const NOT_AN_OBJECT: &str = "not an object";
    pub const MISSING_FIELD: &str = "missing field";
    pub const WRONG_TYPE: &str = "wrong type";
    pub const INVALID_VALUE: &str = "invalid value";
    pub const EMPTY_TEXT: &str = "empty text";
    pub const EMPTY_MESSAGES: &str = "empty messages";
    pub const UNKNOWN_ROLE: &str = "unknown role";
    pub const MESSAGE_WITHOUT_CONTENT: &str = "message without content";
    pub const NOT_ENDING_WITH_ASSISTANT: &str = "not ending with assistant";
    pub const NON_ASSISTANT_TURN: &str = "non-assistant turn in response";
    pub const MIXED: &str = "mixed standard and conversational";
    pub const EMPTY_RESPONSE: &str = "empty response";
    pub const IDENTICAL: &str = "identical chosen and rejected";
    pub const MISSING_PROMPT: &str = "missing prompt";
}

/// A bad record: the field it is about, the [`reason`] and a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordError {
    pub field: Option<String>,
    pub reason: &'static str,
    pub msg: String,
}

impl RecordError {
    fn new(field: &str, reason: &'static str, msg: impl Into<String>) -> Self {
        RecordError {
            field: Some(field.to_string()),
            reason,
            msg: msg.into(),
        }
    }

    /// Places the error in its file: `FILE: line N: field `chosen`: identical to `rejected``.
    pub fn at(self, path: &Path, unit: &'static str, index: usize) -> DataError {
        DataError::Record {
            path: path.to_path_buf(),
            unit,
            index,
            field: self.field,
            reason: self.reason.to_string(),
            msg: self.msg,
        }
    }
}

type RecordResult<T> = std::result::Result<T, RecordError>;

// ---------------------------------------------------------------------------------------------
// Reading a file

/// Reads every record of `path` as an [`Example`]. By extension: `.jsonl`, `.json` (a JSON array
/// of records, or JSON Lines), either one gzip'd (`.jsonl.gz`, `.json.gz`), or `.parquet`.
pub fn read_examples(path: &Path, opts: &ReadOptions) -> Result<(Vec<Example>, ReadReport)> {
    let records = read_records(path, &opts.fields)?;
    let format = match opts.format {
        Format::Auto => match records.keys() {
            Some(keys) => detect_format(&keys, &opts.fields).map_err(|msg| DataError::Dataset {
                path: path.to_path_buf(),
                msg,
            })?,
            None => Format::Auto, // no records
        },
        f => f,
    };
    let mut report = ReadReport {
        format,
        ..Default::default()
    };
    let mut examples = Vec::with_capacity(records.rows.len());
    for (index, record) in records.rows {
        report.read += 1;
        match record.and_then(|obj| parse_record(&obj, format, opts)) {
            Ok(ex) => {
                examples.push(ex);
                report.kept += 1;
            }
            Err(bad) if opts.skip_invalid => {
                *report.skipped.entry(bad.reason.to_string()).or_default() += 1
            }
            Err(bad) => return Err(bad.at(path, records.unit, index)),
        }
    }
    Ok((examples, report))
}

/// The records of a file as JSON objects, each with its 1-based line, row or record number.
struct Records {
    /// "line" (JSONL), "record" (JSON array) or "row" (Parquet).
    unit: &'static str,
    /// Parquet: the column names, which decide the format.
    columns: Option<BTreeSet<String>>,
    rows: Vec<(usize, RecordResult<Map<String, Value>>)>,
}

impl Records {
    /// The field names that decide the format: the Parquet columns, or the non-null keys of the
    /// first good record. `None` when there is no record.
    fn keys(&self) -> Option<BTreeSet<String>> {
        if let Some(c) = &self.columns {
            return Some(c.clone());
        }
        let first = self.rows.iter().find_map(|(_, r)| r.as_ref().ok())?;
        Some(
            first
                .iter()
                .filter(|(_, v)| !v.is_null())
                .map(|(k, _)| k.clone())
                .collect(),
        )
    }
}

fn read_records(path: &Path, fields: &FieldMap) -> Result<Records> {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().to_lowercase())
        .unwrap_or_default();
    let (stem, gz) = match name.strip_suffix(".gz") {
        Some(stem) => (stem, true),
        None => (name.as_str(), false),
    };
    if stem.ends_with(".parquet") && !gz {
        return read_parquet(path, fields);
    }
    if !(stem.ends_with(".jsonl") || stem.ends_with(".json")) {
        return Err(DataError::Dataset {
            path: path.to_path_buf(),
            msg: "unknown data file type: expected .jsonl, .json, .jsonl.gz, .json.gz or .parquet"
                .into(),
        });
    }
    let text = if gz {
        read_gzip(path)?
    } else {
        read_to_string(path)?
    };
    // A `.json` file holds a JSON array of records; JSON Lines saved as `.json` read as JSONL.
    if stem.ends_with(".json") && text.trim_start().starts_with('[') {
        let v: Value = serde_json::from_str(&text).map_err(|e| DataError::Json {
            path: path.to_path_buf(),
            msg: e.to_string(),
        })?;
        let Value::Array(items) = v else {
            unreachable!("starts with [")
        };
        let rows = items
            .into_iter()
            .enumerate()
            .map(|(i, v)| (i + 1, object(v)))
            .collect();
        return Ok(Records {
            unit: "record",
            columns: None,
            rows,
        });
    }
    let mut rows = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let record = serde_json::from_str::<Value>(line)
            .map_err(|e| RecordError {
                field: None,
                reason: reason::INVALID_JSON,
                msg: format!("invalid JSON: {e}"),
            })
            .and_then(object);
        rows.push((i + 1, record));
    }
    Ok(Records {
        unit: "line",
        columns: None,
        rows,
    })
}

fn object(v: Value) -> RecordResult<Map<String, Value>> {
    match v {
        Value::Object(obj) => Ok(obj),
        other => Err(RecordError {
            field: None,
            reason: reason::NOT_AN_OBJECT,
            msg: format!("expected an object, got {}", json_type(&other)),
        }),
    }
}

fn read_gzip(path: &Path) -> Result<String> {
    let file = std::fs::File::open(path).map_err(|e| DataError::io(path, e))?;
    let mut text = String::new();
    flate2::read::MultiGzDecoder::new(std::io::BufReader::new(file))
        .read_to_string(&mut text)
        .map_err(|e| DataError::io(path, e))?;
    Ok(text)
}

// ---------------------------------------------------------------------------------------------
// Parquet: each row becomes a JSON object, so it is validated exactly as a JSONL line is.

fn read_parquet(path: &Path, fields: &FieldMap) -> Result<Records> {
    use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
    let err = |msg: String| DataError::Dataset {
        path: path.to_path_buf(),
        msg,
    };
    let file = std::fs::File::open(path).map_err(|e| DataError::io(path, e))?;
    let builder =
        ParquetRecordBatchReaderBuilder::try_new(file).map_err(|e| err(format!("Parquet: {e}")))?;
    // Columns of types that have no meaning here (dates, binaries, ...) are ignored, unless their
    // name is one that is read.
    let wanted = fields.names();
    let mut columns = Vec::new();
    for (i, field) in builder.schema().fields().iter().enumerate() {
        if arrow_supported(field.data_type()) {
            columns.push((i, field.name().clone()));
        } else if wanted.contains(field.name().as_str()) {
            return Err(err(format!(
                "column `{}` has Parquet/Arrow type {}: expected strings, lists of \
                 {{role, content}} structs, numbers or booleans",
                field.name(),
                field.data_type()
            )));
        }
    }
    let mut rows = Vec::new();
    let reader = builder.build().map_err(|e| err(format!("Parquet: {e}")))?;
    for batch in reader {
        let batch = batch.map_err(|e| err(format!("Parquet: {e}")))?;
        for r in 0..batch.num_rows() {
            let obj = columns
                .iter()
                .map(|(i, name)| (name.clone(), arrow_value(batch.column(*i).as_ref(), r)))
                .collect();
            rows.push((rows.len() + 1, Ok(obj)));
        }
    }
    let names = columns.into_iter().map(|(_, n)| n).collect();
    Ok(Records {
        unit: "row",
        columns: Some(names),
        rows,
    })
}

/// Arrow types read: strings, booleans, integers, floats, and lists and structs of them.
fn arrow_supported(dt: &arrow_schema::DataType) -> bool {
    use arrow_schema::DataType as D;
    match dt {
        D::Utf8 | D::LargeUtf8 | D::Utf8View | D::Boolean | D::Null => true,
        D::Int8 | D::Int16 | D::Int32 | D::Int64 => true,
        D::UInt8 | D::UInt16 | D::UInt32 | D::UInt64 => true,
        D::Float32 | D::Float64 => true,
        D::List(f) | D::LargeList(f) | D::FixedSizeList(f, _) => arrow_supported(f.data_type()),
        D::Struct(fs) => fs.iter().all(|f| arrow_supported(f.data_type())),
        _ => false,
    }
}

/// Row `i` of an Arrow array of a type [`arrow_supported`] accepts, as JSON (null → `null`).
fn arrow_value(col: &dyn arrow_array::Array, i: usize) -> Value {
    use arrow_array::cast::AsArray;
    use arrow_array::types::*;
    use arrow_schema::DataType as D;
    if col.is_null(i) {
        return Value::Null;
    }
    let list = |items: arrow_array::ArrayRef| {
        Value::Array(
            (0..items.len())
                .map(|j| arrow_value(items.as_ref(), j))
                .collect(),
        )
    };
    match col.data_type() {
        D::Utf8 => col.as_string::<i32>().value(i).into(),
        D::LargeUtf8 => col.as_string::<i64>().value(i).into(),
        D::Utf8View => col.as_string_view().value(i).into(),
        D::Boolean => col.as_boolean().value(i).into(),
        D::Int8 => col.as_primitive::<Int8Type>().value(i).into(),
        D::Int16 => col.as_primitive::<Int16Type>().value(i).into(),
        D::Int32 => col.as_primitive::<Int32Type>().value(i).into(),
        D::Int64 => col.as_primitive::<Int64Type>().value(i).into(),
        D::UInt8 => col.as_primitive::<UInt8Type>().value(i).into(),
        D::UInt16 => col.as_primitive::<UInt16Type>().value(i).into(),
        D::UInt32 => col.as_primitive::<UInt32Type>().value(i).into(),
        D::UInt64 => col.as_primitive::<UInt64Type>().value(i).into(),
        D::Float32 => (col.as_primitive::<Float32Type>().value(i) as f64).into(),
        D::Float64 => col.as_primitive::<Float64Type>().value(i).into(),
        D::List(_) => list(col.as_list::<i32>().value(i)),
        D::LargeList(_) => list(col.as_list::<i64>().value(i)),
        D::FixedSizeList(..) => list(col.as_fixed_size_list().value(i)),
        D::Struct(_) => {
            let s = col.as_struct();
            let obj = s
                .column_names()
                .into_iter()
                .zip(s.columns())
                .map(|(name, c)| (name.to_string(), arrow_value(c.as_ref(), i)))
                .collect();
            Value::Object(obj)
        }
        _ => Value::Null, // D::Null; other types are filtered out by `arrow_supported`
    }
}

// ---------------------------------------------------------------------------------------------
// The format

/// The format from the field names present, as TRL decides it: `chosen`+`rejected` → preference;
/// `completion`+`label` → unpaired; `prompt`+`completion` → prompt/completion; `messages` or
/// `text` → language modeling. LLaMA-Factory's files are checked first: `conversations` →
/// ShareGPT; `instruction`+`output` → Alpaca. Anything else, or an ambiguous set, is an error.
pub fn detect_format(keys: &BTreeSet<String>, f: &FieldMap) -> std::result::Result<Format, String> {
    let has = |k: &str| keys.contains(k);
    if has("conversations") {
        return Ok(Format::ShareGpt);
    }
    if has("instruction") && has("output") {
        return Ok(Format::Alpaca);
    }
    match (has(&f.chosen), has(&f.rejected)) {
        (true, true) => return Ok(Format::Preference),
        (true, false) | (false, true) => {
            return Err(format!(
                "has only one of `{}` and `{}`: a preference data set needs both",
                f.chosen, f.rejected
            ))
        }
        (false, false) => {}
    }
    if has(&f.completion) && has(&f.label) {
        return Ok(Format::Unpaired);
    }
    if has(&f.prompt) && has(&f.completion) {
        return Ok(Format::PromptCompletion);
    }
    if has(&f.text) && has(&f.messages) {
        return Err(format!(
            "has both `{}` and `{}`: set `format` or remap the fields",
            f.text, f.messages
        ));
    }
    if has(&f.messages) || has(&f.text) {
        return Ok(Format::LanguageModeling);
    }
    let found: Vec<&str> = keys.iter().map(String::as_str).collect();
    Err(format!(
        "cannot tell the data set format from the fields [{}]: expected `{}` or `{}` (language \
         modeling), `{}` + `{}` (prompt/completion), `{}` + `{}` (preference), `{}` + `{}` + `{}` \
         (unpaired preference), `conversations` (ShareGPT) or `instruction` + `output` (Alpaca); \
         set `format` or remap the fields",
        found.join(", "),
        f.text,
        f.messages,
        f.prompt,
        f.completion,
        f.chosen,
        f.rejected,
        f.prompt,
        f.completion,
        f.label
    ))
}

/// One record in a known format (not `Auto`).
fn parse_record(
    obj: &Map<String, Value>,
    format: Format,
    opts: &ReadOptions,
) -> RecordResult<Example> {
    let f = &opts.fields;
    match format {
        Format::Auto => unreachable!("the format is decided before the records are read"),
        Format::LanguageModeling => {
            let field = if present(obj, &f.messages) {
                &f.messages
            } else {
                &f.text
            };
            language_modeling(field, required(obj, field, opts)?)
        }
        Format::PromptCompletion => prompt_completion(
            f,
            required(obj, &f.prompt, opts)?,
            required(obj, &f.completion, opts)?,
        ),
        Format::Preference => preference(
            f,
            optional(obj, &f.prompt, opts)?,
            required(obj, &f.chosen, opts)?,
            required(obj, &f.rejected, opts)?,
            number(obj, &f.margin)?,
            prob(obj, f.prob.as_deref())?,
            opts.extract_prompt,
        ),
        Format::Unpaired => {
            let prompt = required(obj, &f.prompt, opts)?;
            let completion = required(obj, &f.completion, opts)?;
            check_prompt_completion(f, &prompt, &completion)?;
            let label = label(obj, &f.label)?;
            Ok(Example::Unpaired {
                prompt,
                completion,
                label,
            })
        }
        Format::Alpaca => from_alpaca(obj, opts),
        Format::ShareGpt => from_sharegpt(obj, opts),
    }
}

// ---------------------------------------------------------------------------------------------
// The formats and their validation

/// `text` or `messages`: not empty; a conversation ends with an assistant turn.
fn language_modeling(field: &str, text: Text) -> RecordResult<Example> {
    match &text {
        Text::Plain(s) if s.trim().is_empty() => {
            return Err(RecordError::new(field, reason::EMPTY_TEXT, "empty"))
        }
        Text::Conversation(m) if m.is_empty() => {
            return Err(RecordError::new(
                field,
                reason::EMPTY_MESSAGES,
                "empty list of messages",
            ))
        }
        Text::Conversation(m) => ends_with_assistant(field, m)?,
        Text::Plain(_) => {}
    }
    Ok(Example::LanguageModeling { text })
}

/// A non-empty prompt and a response of the same kind (both strings or both conversations).
fn prompt_completion(f: &FieldMap, prompt: Text, completion: Text) -> RecordResult<Example> {
    check_prompt_completion(f, &prompt, &completion)?;
    Ok(Example::PromptCompletion { prompt, completion })
}

/// Also the prompt and completion of an unpaired-preference record.
fn check_prompt_completion(f: &FieldMap, prompt: &Text, completion: &Text) -> RecordResult<()> {
    same_kind(&f.completion, completion, &f.prompt, prompt)?;
    check_prompt(&f.prompt, prompt)?;
    check_response(&f.completion, completion)
}

/// A preference pair: `chosen` and `rejected` differ, neither is empty; the prompt is explicit,
/// or (with `extract`) split off the pair by [`extract_prompt`] and then must not be empty.
fn preference(
    f: &FieldMap,
    prompt: Option<Text>,
    chosen: Text,
    rejected: Text,
    margin: Option<f64>,
    prob: Option<f64>,
    extract: bool,
) -> RecordResult<Example> {
    same_kind(&f.rejected, &rejected, &f.chosen, &chosen)?;
    if let Some(p) = &prompt {
        same_kind(&f.chosen, &chosen, &f.prompt, p)?;
    }
    for (field, t) in [(&f.chosen, &chosen), (&f.rejected, &rejected)] {
        if t.is_blank() {
            return Err(RecordError::new(field, reason::EMPTY_RESPONSE, "empty"));
        }
    }
    if chosen == rejected {
        let msg = format!("identical to `{}`", f.rejected);
        return Err(RecordError::new(&f.chosen, reason::IDENTICAL, msg));
    }
    let (prompt, chosen, rejected) = match prompt {
        Some(p) => (Some(p), chosen, rejected),
        None if extract => {
            let (p, c, r) = extract_prompt(&chosen, &rejected).expect("same kind");
            if p.is_blank() {
                let msg = format!(
                    "no `{}` field, and `{}` and `{}` share no prompt",
                    f.prompt, f.chosen, f.rejected
                );
                return Err(RecordError::new(&f.prompt, reason::MISSING_PROMPT, msg));
            }
            (Some(p), c, r)
        }
        None => (None, chosen, rejected),
    };
    if let Some(p) = &prompt {
        check_prompt(&f.prompt, p)?;
    }
    for (field, t) in [(&f.chosen, &chosen), (&f.rejected, &rejected)] {
        match (&prompt, t) {
            (Some(_), _) => check_response(field, t)?,
            // Whole conversations, prompt included: only the ending is checked.
            (None, Text::Conversation(m)) => ends_with_assistant(field, m)?,
            (None, Text::Plain(_)) => {}
        }
    }
    Ok(Example::Preference {
        prompt,
        chosen,
        rejected,
        margin,
        prob,
    })
}

fn same_kind(field: &str, t: &Text, other_field: &str, other: &Text) -> RecordResult<()> {
    if t.is_conversational() == other.is_conversational() {
        return Ok(());
    }
    let kind = |t: &Text| {
        if t.is_conversational() {
            "a list of messages"
        } else {
            "a string"
        }
    };
    let msg = format!("is {} but `{other_field}` is {}", kind(t), kind(other));
    Err(RecordError::new(field, reason::MIXED, msg))
}

fn check_prompt(field: &str, t: &Text) -> RecordResult<()> {
    match t {
        Text::Plain(s) if s.trim().is_empty() => {
            Err(RecordError::new(field, reason::EMPTY_TEXT, "empty"))
        }
        Text::Conversation(m) if m.is_empty() => Err(RecordError::new(
            field,
            reason::EMPTY_MESSAGES,
            "empty list of messages",
        )),
        _ => Ok(()),
    }
}

/// A response (completion, chosen, rejected): not empty; a conversation holds only assistant
/// (and tool) turns and ends with an assistant turn.
fn check_response(field: &str, t: &Text) -> RecordResult<()> {
    if t.is_blank() {
        return Err(RecordError::new(field, reason::EMPTY_RESPONSE, "empty"));
    }
    if let Text::Conversation(m) = t {
        if let Some((i, m)) = m
            .iter()
            .enumerate()
            .find(|(_, m)| m.role == "user" || m.role == "system")
        {
            let msg = format!(
                "message {}: role `{}` in a response (responses hold assistant and tool turns)",
                i + 1,
                m.role
            );
            return Err(RecordError::new(field, reason::NON_ASSISTANT_TURN, msg));
        }
        ends_with_assistant(field, m)?;
    }
    Ok(())
}

fn ends_with_assistant(field: &str, m: &[Message]) -> RecordResult<()> {
    match m.last() {
        Some(last) if last.role != "assistant" => {
            let msg = format!(
                "the last message has role `{}`, expected `assistant`",
                last.role
            );
            Err(RecordError::new(
                field,
                reason::NOT_ENDING_WITH_ASSISTANT,
                msg,
            ))
        }
        _ => Ok(()),
    }
}

// ---------------------------------------------------------------------------------------------
// Fields

fn present(obj: &Map<String, Value>, field: &str) -> bool {
    obj.get(field).is_some_and(|v| !v.is_null())
}

fn required(obj: &Map<String, Value>, field: &str, opts: &ReadOptions) -> RecordResult<Text> {
    optional(obj, field, opts)?
        .ok_or_else(|| RecordError::new(field, reason::MISSING_FIELD, "missing"))
}

/// A field that is a string or a list of `{role, content}`; absent or null → `None`.
fn optional(
    obj: &Map<String, Value>,
    field: &str,
    opts: &ReadOptions,
) -> RecordResult<Option<Text>> {
    match obj.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(Text::Plain(s.clone()))),
        Some(Value::Array(items)) => {
            let mut messages = Vec::with_capacity(items.len());
            for (i, item) in items.iter().enumerate() {
                messages.push(message(field, i, item, "role", "content", opts, |r| {
                    r.to_string()
                })?);
            }
            Ok(Some(Text::Conversation(messages)))
        }
        Some(other) => Err(RecordError::new(
            field,
            reason::WRONG_TYPE,
            format!(
                "expected a string or a list of messages, got {}",
                json_type(other)
            ),
        )),
    }
}

/// Message `i` of `field`: an object with a string role (`role_key`, mapped by `map_role`) that
/// is allowed, and a string content (`content_key`).
fn message(
    field: &str,
    i: usize,
    item: &Value,
    role_key: &str,
    content_key: &str,
    opts: &ReadOptions,
    map_role: impl Fn(&str) -> String,
) -> RecordResult<Message> {
    let at =
        |reason, msg: String| RecordError::new(field, reason, format!("message {}: {msg}", i + 1));
    let Value::Object(m) = item else {
        return Err(at(
            reason::WRONG_TYPE,
            format!("expected an object, got {}", json_type(item)),
        ));
    };
    let role = match m.get(role_key) {
        Some(Value::String(r)) => map_role(r),
        None | Some(Value::Null) => {
            return Err(at(reason::UNKNOWN_ROLE, format!("no `{role_key}`")))
        }
        Some(v) => {
            return Err(at(
                reason::WRONG_TYPE,
                format!("`{role_key}`: expected a string, got {}", json_type(v)),
            ))
        }
    };
    if !opts.allowed_roles.contains(&role) {
        let msg = format!(
            "unknown role `{role}` (allowed: {})",
            opts.allowed_roles.join(", ")
        );
        return Err(at(reason::UNKNOWN_ROLE, msg));
    }
    let content = match m.get(content_key) {
        Some(Value::String(c)) => c.clone(),
        // An assistant turn that only calls tools.
        None | Some(Value::Null) if present(m, "tool_calls") => String::new(),
        None | Some(Value::Null) => {
            return Err(at(
                reason::MESSAGE_WITHOUT_CONTENT,
                format!("no `{content_key}`"),
            ))
        }
        Some(v) => {
            let msg = format!("`{content_key}`: expected a string, got {}", json_type(v));
            return Err(at(reason::WRONG_TYPE, msg));
        }
    };
    let mut message = Message::new(role, content);
    // Other keys (`tool_calls`, `reasoning_content`, ...) go to the chat template.
    message.extra = m
        .iter()
        .filter(|(k, v)| *k != role_key && *k != content_key && !v.is_null())
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    Ok(message)
}

/// An optional number (`margin`).
fn number(obj: &Map<String, Value>, field: &str) -> RecordResult<Option<f64>> {
    match obj.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => Ok(n.as_f64()),
        Some(v) => Err(RecordError::new(
            field,
            reason::WRONG_TYPE,
            format!("expected a number, got {}", json_type(v)),
        )),
    }
}

/// The optional soft label, a probability in [0, 1].
fn prob(obj: &Map<String, Value>, field: Option<&str>) -> RecordResult<Option<f64>> {
    let Some(field) = field else { return Ok(None) };
    let p = number(obj, field)?;
    match p {
        Some(p) if !(0.0..=1.0).contains(&p) => Err(RecordError::new(
            field,
            reason::INVALID_VALUE,
            format!("expected a probability between 0 and 1, got {p}"),
        )),
        _ => Ok(p),
    }
}

/// The KTO label: a boolean (or 0/1).
fn label(obj: &Map<String, Value>, field: &str) -> RecordResult<bool> {
    match obj.get(field) {
        Some(Value::Bool(b)) => Ok(*b),
        Some(Value::Number(n)) if n.as_f64() == Some(0.0) => Ok(false),
        Some(Value::Number(n)) if n.as_f64() == Some(1.0) => Ok(true),
        None | Some(Value::Null) => Err(RecordError::new(field, reason::MISSING_FIELD, "missing")),
        Some(v) => {
            let got = if v.is_number() {
                v.to_string()
            } else {
                json_type(v).to_string()
            };
            let msg = format!("expected a boolean (or 0/1), got {got}");
            Err(RecordError::new(field, reason::WRONG_TYPE, msg))
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Implicit prompt

/// TRL's `maybe_extract_prompt` for a pair without a prompt: returns `(prompt, chosen, rejected)`,
/// or `None` when one is a string and the other a conversation.
///
/// - Conversations: the prompt is the longest run of leading messages the two share (so it
///   ends at a turn boundary); the responses are the rest.
/// - Strings: the longest common prefix, cut just after its last `"\n\nAssistant:"` (HH-RLHF's
///   turn marker), so both responses start at the final assistant turn (`" I ..."`). A common
///   prefix without that marker is split as TRL does, by characters, leaving a space that ends
///   the prefix to the responses.
pub fn extract_prompt(chosen: &Text, rejected: &Text) -> Option<(Text, Text, Text)> {
    match (chosen, rejected) {
        (Text::Plain(c), Text::Plain(r)) => {
            let n = common_prefix_str(c, r);
            let split = match c[..n].rfind(ASSISTANT_MARKER) {
                Some(k) => k + ASSISTANT_MARKER.len(),
                None if n > 0 && c[..n].ends_with(' ') => n - 1,
                None => n,
            };
            Some((
                Text::Plain(c[..split].to_string()),
                Text::Plain(c[split..].to_string()),
                Text::Plain(r[split..].to_string()),
            ))
        }
        (Text::Conversation(c), Text::Conversation(r)) => {
            let n = c.iter().zip(r).take_while(|(a, b)| a == b).count();
            Some((
                Text::Conversation(c[..n].to_vec()),
                Text::Conversation(c[n..].to_vec()),
                Text::Conversation(r[n..].to_vec()),
            ))
        }
        _ => None,
    }
}

const ASSISTANT_MARKER: &str = "\n\nAssistant:";

/// Length in bytes of the longest common prefix, at a char boundary.
fn common_prefix_str(a: &str, b: &str) -> usize {
    a.char_indices()
        .zip(b.chars())
        .find(|((_, ca), cb)| ca != cb)
        .map(|((i, _), _)| i)
        .unwrap_or_else(|| a.len().min(b.len()))
}

// ---------------------------------------------------------------------------------------------
// LLaMA-Factory's Alpaca and ShareGPT files

/// Alpaca `{instruction, input?, output, system?, history?}` → a conversational prompt/completion:
/// `[system?, (user, assistant) per history pair, user: instruction + "\n" + input]` →
/// `[assistant: output]` (as LLaMA-Factory joins them; an empty `input` adds nothing).
pub fn from_alpaca(obj: &Map<String, Value>, opts: &ReadOptions) -> RecordResult<Example> {
    let string = |field: &str, need: bool| -> RecordResult<Option<String>> {
        match obj.get(field) {
            Some(Value::String(s)) => Ok(Some(s.clone())),
            None | Some(Value::Null) if !need => Ok(None),
            None | Some(Value::Null) => {
                Err(RecordError::new(field, reason::MISSING_FIELD, "missing"))
            }
            Some(v) => Err(RecordError::new(
                field,
                reason::WRONG_TYPE,
                format!("expected a string, got {}", json_type(v)),
            )),
        }
    };
    let instruction = string("instruction", true)?.unwrap_or_default();
    let input = string("input", false)?.unwrap_or_default();
    let output = string("output", true)?.unwrap_or_default();
    let mut prompt = Vec::new();
    if let Some(system) = string("system", false)?.filter(|s| !s.is_empty()) {
        prompt.push(Message::new("system", system));
    }
    match obj.get("history") {
        None | Some(Value::Null) => {}
        Some(Value::Array(pairs)) => {
            for (i, pair) in pairs.iter().enumerate() {
                let strings: Option<Vec<&str>> = pair
                    .as_array()
                    .map(|p| p.iter().filter_map(Value::as_str).collect());
                match strings.as_deref() {
                    Some(&[q, a]) if pair.as_array().map(Vec::len) == Some(2) => {
                        prompt.push(Message::new("user", q));
                        prompt.push(Message::new("assistant", a));
                    }
                    _ => {
                        let msg = format!(
                            "entry {}: expected a pair of strings [query, response]",
                            i + 1
                        );
                        return Err(RecordError::new("history", reason::WRONG_TYPE, msg));
                    }
                }
            }
        }
        Some(v) => {
            let msg = format!(
                "expected a list of [query, response] pairs, got {}",
                json_type(v)
            );
            return Err(RecordError::new("history", reason::WRONG_TYPE, msg));
        }
    }
    if instruction.trim().is_empty() && input.trim().is_empty() {
        return Err(RecordError::new("instruction", reason::EMPTY_TEXT, "empty"));
    }
    let query = [instruction, input]
        .into_iter()
        .filter(|s| !s.is_empty())
        .collect::<Vec<_>>();
    prompt.push(Message::new("user", query.join("\n")));
    let names = FieldMap {
        prompt: "instruction".into(),
        completion: "output".into(),
        ..opts.fields.clone()
    };
    prompt_completion(
        &names,
        Text::Conversation(prompt),
        Text::Conversation(vec![Message::new("assistant", output)]),
    )
}

/// ShareGPT `{conversations: [{from, value}], system?}` → language modeling (a conversation);
/// with `chosen` and `rejected` (each one `{from, value}` message, LLaMA-Factory's preference
/// files) → preference with the conversation as the prompt. Roles: `human` → user, `gpt` →
/// assistant, `system`, `function_call` → assistant, `observation` → tool (`role`/`content`
/// keys are read too).
pub fn from_sharegpt(obj: &Map<String, Value>, opts: &ReadOptions) -> RecordResult<Example> {
    let turn = |field: &str, i: usize, v: &Value| -> RecordResult<Message> {
        let (role_key, content_key) = match v.get("from") {
            Some(_) => ("from", "value"),
            None => ("role", "content"),
        };
        message(field, i, v, role_key, content_key, opts, sharegpt_role)
    };
    let mut conversation = Vec::new();
    match obj.get("system") {
        Some(Value::String(s)) if !s.is_empty() => {
            conversation.push(Message::new("system", s.clone()))
        }
        None | Some(Value::Null) | Some(Value::String(_)) => {}
        Some(v) => {
            let msg = format!("expected a string, got {}", json_type(v));
            return Err(RecordError::new("system", reason::WRONG_TYPE, msg));
        }
    }
    match obj.get("conversations") {
        Some(Value::Array(items)) => {
            for (i, item) in items.iter().enumerate() {
                conversation.push(turn("conversations", i, item)?);
            }
        }
        None | Some(Value::Null) => {
            return Err(RecordError::new(
                "conversations",
                reason::MISSING_FIELD,
                "missing",
            ))
        }
        Some(v) => {
            let msg = format!("expected a list of messages, got {}", json_type(v));
            return Err(RecordError::new("conversations", reason::WRONG_TYPE, msg));
        }
    }
    if !present(obj, "chosen") && !present(obj, "rejected") {
        return language_modeling("conversations", Text::Conversation(conversation));
    }
    // A response is one message object, or a list of them.
    let response = |field: &str| -> RecordResult<Text> {
        match obj.get(field) {
            Some(Value::Array(items)) => {
                let m: RecordResult<Vec<Message>> = items
                    .iter()
                    .enumerate()
                    .map(|(i, v)| turn(field, i, v))
                    .collect();
                Ok(Text::Conversation(m?))
            }
            Some(v @ Value::Object(_)) => Ok(Text::Conversation(vec![turn(field, 0, v)?])),
            None | Some(Value::Null) => {
                Err(RecordError::new(field, reason::MISSING_FIELD, "missing"))
            }
            Some(v) => Err(RecordError::new(
                field,
                reason::WRONG_TYPE,
                format!(
                    "expected a message or a list of messages, got {}",
                    json_type(v)
                ),
            )),
        }
    };
    let (chosen, rejected) = (response("chosen")?, response("rejected")?);
    let names = FieldMap {
        prompt: "conversations".into(),
        chosen: "chosen".into(),
        rejected: "rejected".into(),
        ..opts.fields.clone()
    };
    if conversation.is_empty() {
        return Err(RecordError::new(
            "conversations",
            reason::MISSING_PROMPT,
            "empty list of messages",
        ));
    }
    preference(
        &names,
        Some(Text::Conversation(conversation)),
        chosen,
        rejected,
        None,
        None,
        false,
    )
}

fn sharegpt_role(from: &str) -> String {
    match from {
        "human" => "user",
        "gpt" | "function_call" => "assistant",
        "observation" => "tool",
        other => other,
    }
    .to_string()
}
