//! Documents for pretraining: a `.txt` file is one document, unless it contains lines that are
//! exactly `<|endoftext|>`, which separate documents; a `.jsonl` file is one document per line,
//! taken from a string field (`text` by default).

use crate::error::{read_to_string, Result};
use crate::jsonl::read_jsonl_field;
use std::path::Path;

/// The line that separates documents inside a `.txt` file.
pub const DOC_SEPARATOR: &str = "<|endoftext|>";

/// The documents of one file (`.jsonl`: field `text`; anything else: plain text).
pub fn read_text_documents(path: &Path) -> Result<Vec<String>> {
    read_text_documents_with_field(path, "text")
}

/// Like [`read_text_documents`], with the JSONL field name given.
pub fn read_text_documents_with_field(path: &Path, field: &str) -> Result<Vec<String>> {
    if is_jsonl(path) {
        return read_jsonl_field(path, field);
    }
    let text = read_to_string(path)?;
    Ok(split_documents(&text))
}

/// Whether a path is read as JSONL (extension `.jsonl`).
pub fn is_jsonl(path: &Path) -> bool {
    path.extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("jsonl"))
}

/// Splits plain text at separator lines (`<|endoftext|>` alone on a line, surrounding spaces
/// allowed). Without a separator line the whole text is one document, byte for byte. Documents
/// that are empty after splitting are dropped; the newline ending a document is kept.
pub fn split_documents(text: &str) -> Vec<String> {
    if !text.lines().any(|l| l.trim() == DOC_SEPARATOR) {
        return if text.is_empty() {
            vec![]
        } else {
            vec![text.to_string()]
        };
    }
    let mut docs = Vec::new();
    let mut cur = String::new();
    for line in text.split_inclusive('\n') {
        if line.trim() == DOC_SEPARATOR {
            docs.push(std::mem::take(&mut cur));
        } else {
            cur.push_str(line);
        }
    }
    docs.push(cur);
    docs.retain(|d| !d.trim().is_empty());
    docs
}

/// The documents of several files, in the order given.
pub fn read_all_documents(paths: &[impl AsRef<Path>], field: &str) -> Result<Vec<String>> {
    let mut docs = Vec::new();
    for p in paths {
        docs.extend(read_text_documents_with_field(p.as_ref(), field)?);
    }
    Ok(docs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_document_without_separator() {
        assert_eq!(split_documents("a\n\n\nb\n"), vec!["a\n\n\nb\n"]);
        assert!(split_documents("").is_empty());
    }

    #[test]
    fn separator_lines_split() {
        let docs = split_documents(
            "first\nline\n<|endoftext|>\nsecond\n  <|endoftext|>  \n\n<|endoftext|>\n",
        );
        assert_eq!(docs, vec!["first\nline\n", "second\n"]);
        // Inside a line it is text, not a separator.
        assert_eq!(
            split_documents("a <|endoftext|> b"),
            vec!["a <|endoftext|> b"]
        );
    }

    #[test]
    fn files_by_extension() {
        let d = tempfile::tempdir().unwrap();
        let t = d.path().join("a.txt");
        std::fs::write(&t, "x\n<|endoftext|>\ny\n").unwrap();
        let j = d.path().join("b.JSONL");
        std::fs::write(&j, "{\"body\": \"z\"}\n").unwrap();
        assert_eq!(read_text_documents(&t).unwrap(), vec!["x\n", "y\n"]);
        assert_eq!(
            read_text_documents_with_field(&j, "body").unwrap(),
            vec!["z"]
        );
        let all = read_all_documents(&[&t, &j], "body").unwrap();
        assert_eq!(all, vec!["x\n", "y\n", "z"]);
        let e = read_text_documents(&d.path().join("nope.txt"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("nope.txt: not found"), "{e}");
    }
}
