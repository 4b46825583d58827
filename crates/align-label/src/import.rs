//! Reading prompts with candidate responses from JSONL.
//!
//! Two row shapes are accepted (docs/label.md):
//! - `{"id"?, "prompt": str | messages, "responses": [str | messages, ...], "gold"?: index}`:
//!   two or more candidates; `gold`, when present, is the index of the best one, and the
//!   comparisons that contain it become gold check items.
//! - TRL preference pairs `{"id"?, "prompt"?, "chosen", "rejected"}` (the gym's
//!   `preferences.jsonl`): the two become the candidates. With [`ImportOptions::gold_every`] = N,
//!   every N-th row that carries the gym's gold scores (`gold_chosen`, `gold_rejected`, differing
//!   by at least [`GOLD_MIN_MARGIN`]) becomes a gold check item.
//!
//! A message list as a response (`[{"role": "assistant", "content": ...}]`) is reduced to its
//! assistant text. Bad rows are errors naming the line and field; nothing is skipped silently.

use crate::error::{LabelError, Result};
use crate::model::NewItem;
use align_data::jsonl::json_type;
use align_data::{Message, Text};
use serde_json::{Map, Value};
use std::path::Path;

/// Smallest gold-score margin for a gym pair to serve as a gold check item.
pub const GOLD_MIN_MARGIN: f64 = 0.2;

/// Most candidate responses per prompt (n responses make n(n−1)/2 comparisons).
pub const MAX_RESPONSES: usize = 8;

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ImportOptions {
    /// Use every N-th pair with gym gold scores as a gold check item (`None`: none).
    pub gold_every: Option<usize>,
}

/// Reads a JSONL file into items.
pub fn read_file(path: &Path, opts: ImportOptions) -> Result<Vec<NewItem>> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| LabelError::Io { path: path.to_path_buf(), source: e })?;
    parse_jsonl(&text, &path.display().to_string(), opts)
}

/// Parses JSONL text (a file's, or an upload's); `source_name` names it in errors.
pub fn parse_jsonl(text: &str, source_name: &str, opts: ImportOptions) -> Result<Vec<NewItem>> {
    let mut items = Vec::new();
    let mut gold_seen = 0usize;
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let err = |field: &str, msg: String| LabelError::ImportRow {
            source_name: source_name.to_string(),
            line: i + 1,
            field: field.to_string(),
            msg,
        };
        let v: Value = serde_json::from_str(line).map_err(|e| err("-", format!("invalid JSON: {e}")))?;
        let Value::Object(obj) = v else {
            return Err(err("-", format!("expected a JSON object, got {}", json_type(&v))));
        };
        let mut item = parse_row(&obj, i + 1).map_err(|(f, m)| err(&f, m))?;
        if let (Some(n), Some(margin)) = (opts.gold_every, gym_gold_margin(&obj)) {
            if margin.abs() >= GOLD_MIN_MARGIN {
                if gold_seen.is_multiple_of(n.max(1)) {
                    item.gold = Some(if margin > 0.0 { 0 } else { 1 });
                }
                gold_seen += 1;
            }
        }
        items.push(item);
    }
    if items.is_empty() {
        return Err(LabelError::Invalid(format!("{source_name}: no rows to import")));
    }
    Ok(items)
}

type RowResult<T> = std::result::Result<T, (String, String)>;

/// One row → an item; errors are (field, message).
fn parse_row(obj: &Map<String, Value>, line: usize) -> RowResult<NewItem> {
    let source_id = match obj.get("id") {
        None | Some(Value::Null) => format!("line-{line}"),
        Some(Value::String(s)) => s.clone(),
        Some(Value::Number(n)) => n.to_string(),
        Some(v) => return Err(("id".into(), format!("expected a string or number, got {}", json_type(v)))),
    };
    let prompt = match obj.get("prompt") {
        Some(v) => prompt_messages(v)?,
        None => return Err(("prompt".into(), "missing (every row needs the prompt the responses answer)".into())),
    };
    let (responses, gold) = if let Some(v) = obj.get("responses") {
        let Value::Array(list) = v else {
            return Err(("responses".into(), format!("expected a list, got {}", json_type(v))));
        };
        let responses = list
            .iter()
            .enumerate()
            .map(|(j, r)| response_text(r).map_err(|(_, m)| (format!("responses[{j}]"), m)))
            .collect::<RowResult<Vec<String>>>()?;
        let gold = match obj.get("gold") {
            None | Some(Value::Null) => None,
            Some(Value::Number(n)) => match n.as_u64() {
                Some(g) if (g as usize) < responses.len() => Some(g as usize),
                _ => return Err(("gold".into(), format!("{n} is not an index of `responses`"))),
            },
            Some(v) => return Err(("gold".into(), format!("expected an index, got {}", json_type(v)))),
        };
        (responses, gold)
    } else if let (Some(c), Some(r)) = (obj.get("chosen"), obj.get("rejected")) {
        let c = response_text(c).map_err(|(_, m)| ("chosen".to_string(), m))?;
        let r = response_text(r).map_err(|(_, m)| ("rejected".to_string(), m))?;
        (vec![c, r], None)
    } else {
        return Err(("responses".into(), "missing: give `responses` (a list) or `chosen` and `rejected`".into()));
    };
    if responses.len() < 2 {
        return Err(("responses".into(), format!("needs at least two candidates, got {}", responses.len())));
    }
    if responses.len() > MAX_RESPONSES {
        return Err(("responses".into(), format!("at most {MAX_RESPONSES} candidates, got {}", responses.len())));
    }
    if let Some(j) = responses.iter().position(|r| r.trim().is_empty()) {
        return Err(("responses".into(), format!("candidate {j} is empty")));
    }
    Ok(NewItem { source_id, prompt, responses, gold })
}

/// A prompt: a string (one user turn) or a list of messages.
fn prompt_messages(v: &Value) -> RowResult<Vec<Message>> {
    let text: Text = serde_json::from_value(v.clone())
        .map_err(|_| ("prompt".to_string(), format!("expected a string or a list of {{role, content}} messages, got {}", json_type(v))))?;
    let msgs = match text {
        Text::Plain(s) => vec![Message::new("user", s)],
        Text::Conversation(m) => m,
    };
    if msgs.is_empty() || msgs.iter().all(|m| m.content.trim().is_empty()) {
        return Err(("prompt".into(), "is empty".into()));
    }
    Ok(msgs)
}

/// A response: a string, or messages whose assistant turns are joined.
fn response_text(v: &Value) -> RowResult<String> {
    let text: Text = serde_json::from_value(v.clone())
        .map_err(|_| (String::new(), format!("expected a string or a list of messages, got {}", json_type(v))))?;
    Ok(match text {
        Text::Plain(s) => s,
        Text::Conversation(m) => m
            .iter()
            .filter(|m| m.role == "assistant")
            .map(|m| m.content.as_str())
            .collect::<Vec<_>>()
            .join("\n\n"),
    })
}

/// `gold_chosen − gold_rejected` of a gym row, when both are numbers.
fn gym_gold_margin(obj: &Map<String, Value>) -> Option<f64> {
    Some(obj.get("gold_chosen")?.as_f64()? - obj.get("gold_rejected")?.as_f64()?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_row_shapes_parse() {
        let text = r#"{"id":"p1","prompt":"Hi?","responses":["a","b","c"],"gold":2}

{"prompt":[{"role":"system","content":"Be brief."},{"role":"user","content":"Q"}],"chosen":[{"role":"assistant","content":"yes"}],"rejected":"no"}
"#;
        let items = parse_jsonl(text, "t.jsonl", ImportOptions::default()).unwrap();
        assert_eq!(items.len(), 2);
        assert_eq!(items[0].source_id, "p1");
        assert_eq!(items[0].prompt, vec![Message::new("user", "Hi?")]);
        assert_eq!(items[0].gold, Some(2));
        assert_eq!(items[1].source_id, "line-3");
        assert_eq!(items[1].prompt.len(), 2);
        assert_eq!(items[1].responses, vec!["yes".to_string(), "no".to_string()]);
    }

    #[test]
    fn bad_rows_name_line_and_field() {
        let cases = [
            (r#"{"prompt":"x","responses":["only one"]}"#, "field `responses`: needs at least two"),
            (r#"{"responses":["a","b"]}"#, "field `prompt`: missing"),
            (r#"{"prompt":"x","responses":["a",3]}"#, "field `responses[1]`: expected a string"),
            (r#"{"prompt":"x","responses":["a","b"],"gold":5}"#, "field `gold`: 5 is not an index"),
            (r#"{"prompt":"x","responses":["a"," "]}"#, "candidate 1 is empty"),
            (r#"[1,2]"#, "expected a JSON object, got array"),
            (r#"{"prompt":"x""#, "invalid JSON"),
        ];
        for (row, want) in cases {
            let e = parse_jsonl(&format!("\n{row}\n"), "f.jsonl", ImportOptions::default()).unwrap_err().to_string();
            assert!(e.starts_with("f.jsonl: line 2: "), "{e}");
            assert!(e.contains(want), "{e} should contain {want}");
        }
        assert!(parse_jsonl("\n", "f", ImportOptions::default()).is_err());
    }

    #[test]
    fn gym_rows_become_gold_every_nth() {
        let row = |m: f64| format!(r#"{{"prompt":"p","chosen":"c","rejected":"r","gold_chosen":{},"gold_rejected":0.5}}"#, 0.5 + m);
        let text = [row(0.3), row(0.05), row(-0.4), row(0.3)].join("\n");
        let items = parse_jsonl(&text, "g", ImportOptions { gold_every: Some(2) }).unwrap();
        // Eligible rows (|margin| >= 0.2): 0, 2, 3; every 2nd of them: 0 and 3.
        assert_eq!(items.iter().map(|i| i.gold).collect::<Vec<_>>(), vec![Some(0), None, None, Some(0)]);
        let items = parse_jsonl(&text, "g", ImportOptions { gold_every: Some(1) }).unwrap();
        assert_eq!(items[2].gold, Some(1), "a negative margin makes `rejected` the gold answer");
        assert!(parse_jsonl(&text, "g", ImportOptions::default()).unwrap().iter().all(|i| i.gold.is_none()));
    }
}
