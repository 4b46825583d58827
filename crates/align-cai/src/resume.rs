//! A resumable JSONL output: each finished record is appended as one line and flushed to disk
//! (fsync) before the next is started, so a crash or a killed run loses no finished record. On
//! restart the file is read back and the ids already present are skipped.
//!
//! A run killed in the middle of a write can leave a last line without its newline; that torn
//! tail is cut off (and logged) on open. Any other unreadable line is an error naming the line:
//! the file is not one this module wrote.

use crate::error::{CaiError, Result};
use serde::Serialize;
use serde_json::Value;
use std::collections::HashSet;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

pub struct AppendLog {
    file: File,
    path: PathBuf,
}

/// What was already in the file.
pub struct Existing {
    pub lines: Vec<Value>,
    pub ids: HashSet<String>,
    /// Bytes of a torn last line that were cut off.
    pub torn_bytes: usize,
}

impl AppendLog {
    /// Opens (creating it and its directory if needed) `path` for appending and reads back the
    /// records already there.
    pub fn open(path: &Path) -> Result<(Self, Existing)> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| CaiError::io(dir, e))?;
        }
        let bytes = match std::fs::read(path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(e) => return Err(CaiError::io(path, e)),
        };
        // Complete lines end with '\n'; anything after the last one is a torn write.
        let complete = bytes.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
        let torn_bytes = bytes.len() - complete;
        let text = std::str::from_utf8(&bytes[..complete]).map_err(|e| CaiError::Parse { path: path.to_path_buf(), line: 0, message: format!("not UTF-8: {e}") })?;
        let mut lines = Vec::new();
        let mut ids = HashSet::new();
        for (i, line) in text.lines().enumerate() {
            if line.trim().is_empty() {
                continue;
            }
            let bad = |message: String| CaiError::Parse { path: path.to_path_buf(), line: i + 1, message };
            let v: Value = serde_json::from_str(line).map_err(|e| bad(format!("not a JSON line ({e}); is this an output of this command?")))?;
            let id = v.get("id").and_then(Value::as_str).ok_or_else(|| bad("line has no string \"id\"".into()))?;
            if !ids.insert(id.to_string()) {
                return Err(bad(format!("id {id:?} appears twice")));
            }
            lines.push(v);
        }
        let file = OpenOptions::new().create(true).append(true).open(path).map_err(|e| CaiError::io(path, e))?;
        if torn_bytes > 0 {
            tracing::warn!("{}: cutting off a torn last line of {torn_bytes} bytes (an interrupted write)", path.display());
            file.set_len(complete as u64).map_err(|e| CaiError::io(path, e))?;
        }
        Ok((AppendLog { file, path: path.to_path_buf() }, Existing { lines, ids, torn_bytes }))
    }

    /// Appends one record as a JSON line with a single write, then fsyncs.
    pub fn append(&mut self, record: &impl Serialize) -> Result<()> {
        let mut line = serde_json::to_string(record).map_err(|e| CaiError::Invalid(format!("cannot serialize a record: {e}")))?;
        line.push('\n');
        self.file.write_all(line.as_bytes()).map_err(|e| CaiError::io(&self.path, e))?;
        self.file.sync_data().map_err(|e| CaiError::io(&self.path, e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn reopen_skips_ids_and_cuts_a_torn_tail() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("sub/out.jsonl");
        let (mut log, ex) = AppendLog::open(&p).unwrap();
        assert!(ex.ids.is_empty());
        log.append(&json!({"id": "a", "x": 1})).unwrap();
        log.append(&json!({"id": "b", "x": 2})).unwrap();
        drop(log);
        // Simulate a kill in the middle of the third write.
        let mut f = OpenOptions::new().append(true).open(&p).unwrap();
        f.write_all(b"{\"id\": \"c\", \"x\"").unwrap();
        drop(f);
        let (mut log, ex) = AppendLog::open(&p).unwrap();
        assert_eq!(ex.lines.len(), 2);
        assert!(ex.ids.contains("a") && ex.ids.contains("b") && !ex.ids.contains("c"));
        assert_eq!(ex.torn_bytes, 15);
        log.append(&json!({"id": "c", "x": 3})).unwrap();
        drop(log);
        let text = std::fs::read_to_string(&p).unwrap();
        assert_eq!(text.lines().count(), 3);
        assert!(text.ends_with("{\"id\":\"c\",\"x\":3}\n"), "{text}");
    }

    #[test]
    fn foreign_files_are_rejected_with_the_line() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("out.jsonl");
        std::fs::write(&p, "{\"id\": \"a\"}\nnot json\n").unwrap();
        let e = AppendLog::open(&p).err().unwrap().to_string();
        assert!(e.contains("out.jsonl:2"), "{e}");
        std::fs::write(&p, "{\"id\": \"a\"}\n{\"id\": \"a\"}\n").unwrap();
        assert!(AppendLog::open(&p).err().unwrap().to_string().contains("twice"));
        std::fs::write(&p, "{\"x\": 1}\n").unwrap();
        assert!(AppendLog::open(&p).err().unwrap().to_string().contains("no string \"id\""));
    }
}
