//! JSONL reading with errors that point at the line: `data.jsonl: line 17: field `text`: expected
//! a string, got number`. Blank lines are skipped; line numbers are 1-based and count them.

use crate::error::{read_to_string, DataError, Result};
use serde::de::DeserializeOwned;
use serde_json::Value;
use std::path::Path;

/// The JSON type name of a value, as used in error messages.
pub fn json_type(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// Calls `f(line_number, value)` for every non-blank line of a JSONL file.
pub fn for_each_line(path: &Path, mut f: impl FnMut(usize, Value) -> Result<()>) -> Result<()> {
    let text = read_to_string(path)?;
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let v: Value = serde_json::from_str(line).map_err(|e| DataError::JsonlLine {
            path: path.to_path_buf(),
            line: i + 1,
            msg: format!("invalid JSON: {e}"),
        })?;
        f(i + 1, v)?;
    }
    Ok(())
}

/// The string field `field` of every line of a JSONL file, in order.
pub fn read_jsonl_field(path: &Path, field: &str) -> Result<Vec<String>> {
    let mut out = Vec::new();
    for_each_line(path, |line, v| {
        let err = |msg: String| DataError::JsonlField {
            path: path.to_path_buf(),
            line,
            field: field.to_string(),
            msg,
        };
        let Value::Object(mut obj) = v else {
            return Err(err(format!("expected an object, got {}", json_type(&v))));
        };
        match obj.remove(field) {
            Some(Value::String(s)) => out.push(s),
            Some(other) => {
                return Err(err(format!("expected a string, got {}", json_type(&other))))
            }
            None => return Err(err("missing".into())),
        }
        Ok(())
    })?;
    Ok(out)
}

/// Every line of a JSONL file deserialized as `T` (SFT rows, preference pairs, prompts...).
/// A serde error names the field itself (`missing field `chosen``).
pub fn read_jsonl<T: DeserializeOwned>(path: &Path) -> Result<Vec<T>> {
    let mut out = Vec::new();
    for_each_line(path, |line, v| {
        let row = serde_json::from_value(v).map_err(|e| DataError::JsonlLine {
            path: path.to_path_buf(),
            line,
            msg: e.to_string(),
        })?;
        out.push(row);
        Ok(())
    })?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, name: &str, text: &str) -> std::path::PathBuf {
        let p = dir.join(name);
        std::fs::write(&p, text).unwrap();
        p
    }

    #[test]
    fn reads_the_field_and_skips_blank_lines() {
        let d = tempfile::tempdir().unwrap();
        let p = write(
            d.path(),
            "a.jsonl",
            "{\"text\": \"one\"}\n\n{\"text\": \"two\", \"x\": 1}\n",
        );
        assert_eq!(read_jsonl_field(&p, "text").unwrap(), vec!["one", "two"]);
    }

    #[test]
    fn wrong_type_names_file_line_and_field() {
        let d = tempfile::tempdir().unwrap();
        let mut text = String::new();
        for i in 0..16 {
            text.push_str(&format!("{{\"text\": \"doc {i}\"}}\n"));
        }
        text.push_str("{\"text\": 5}\n");
        let p = write(d.path(), "data.jsonl", &text);
        let e = read_jsonl_field(&p, "text").unwrap_err().to_string();
        assert!(
            e.ends_with("data.jsonl: line 17: field `text`: expected a string, got number"),
            "{e}"
        );
    }

    #[test]
    fn missing_field_and_bad_json() {
        let d = tempfile::tempdir().unwrap();
        let p = write(
            d.path(),
            "m.jsonl",
            "{\"text\": \"a\"}\n{\"body\": \"b\"}\n",
        );
        let e = read_jsonl_field(&p, "text").unwrap_err().to_string();
        assert!(e.contains("line 2: field `text`: missing"), "{e}");
        let p = write(d.path(), "b.jsonl", "{\"text\": \"a\"}\n{\"text\": \n");
        let e = read_jsonl_field(&p, "text").unwrap_err().to_string();
        assert!(e.contains("b.jsonl: line 2: invalid JSON"), "{e}");
        let p = write(d.path(), "s.jsonl", "[1, 2]\n");
        let e = read_jsonl_field(&p, "text").unwrap_err().to_string();
        assert!(
            e.contains("line 1: field `text`: expected an object, got array"),
            "{e}"
        );
    }

    #[test]
    fn typed_rows() {
        #[derive(serde::Deserialize)]
        struct Pair {
            #[allow(dead_code)]
            chosen: String,
        }
        let d = tempfile::tempdir().unwrap();
        let p = write(
            d.path(),
            "p.jsonl",
            "{\"chosen\": \"a\"}\n{\"rejected\": \"b\"}\n",
        );
        let e = read_jsonl::<Pair>(&p).err().unwrap().to_string();
        assert!(e.contains("line 2: missing field `chosen`"), "{e}");
    }
}
