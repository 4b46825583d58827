//! Prompts to critique, revise or label: gym prompt records (with gold answers, so the gold judge
//! can score the results) or any JSONL of `{"prompt": "...", "id": "..."}` lines (red-team
//! prompts from elsewhere; `id` defaults to `line-N`).

use crate::error::{CaiError, Result};
use align_gym::PromptRecord;
use serde::Deserialize;
use std::path::Path;

/// One prompt, with its gym record when it has one.
#[derive(Debug, Clone)]
pub struct PromptItem {
    pub id: String,
    pub prompt: String,
    pub family: Option<String>,
    pub record: Option<PromptRecord>,
}

impl PromptItem {
    pub fn from_record(rec: PromptRecord) -> Self {
        PromptItem { id: rec.id.clone(), prompt: rec.prompt.clone(), family: Some(rec.family().name().to_string()), record: Some(rec) }
    }
}

#[derive(Deserialize)]
struct Plain {
    id: Option<String>,
    prompt: String,
    family: Option<String>,
}

/// Reads prompts; a line that is neither a gym record nor `{"prompt": string}` is an error
/// naming the file and line, and so is an id that appears twice.
pub fn load_prompts(path: &Path) -> Result<Vec<PromptItem>> {
    let text = std::fs::read_to_string(path).map_err(|e| CaiError::io(path, e))?;
    let mut out: Vec<PromptItem> = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let bad = |message: String| CaiError::Parse { path: path.to_path_buf(), line: i + 1, message };
        let item = match serde_json::from_str::<PromptRecord>(line) {
            Ok(rec) => PromptItem::from_record(rec),
            Err(_) => {
                let p: Plain = serde_json::from_str(line).map_err(|e| bad(format!("expected a gym prompt record or {{\"prompt\": string}}: {e}")))?;
                PromptItem { id: p.id.unwrap_or_else(|| format!("line-{}", i + 1)), prompt: p.prompt, family: p.family, record: None }
            }
        };
        if !seen.insert(item.id.clone()) {
            return Err(bad(format!("id {:?} appears twice", item.id)));
        }
        out.push(item);
    }
    Ok(out)
}

/// Keeps the prompts of the given families (all when `families` is empty), then at most `max`
/// of them (0 = all): a seeded random subset, kept in file order.
pub fn select(items: Vec<PromptItem>, families: &[String], max: usize, seed: u64) -> Vec<PromptItem> {
    let mut items: Vec<PromptItem> = items.into_iter().filter(|p| families.is_empty() || p.family.as_ref().is_some_and(|f| families.contains(f))).collect();
    if max > 0 && items.len() > max {
        let mut rng = align_core::seed::fork(seed, "cai/select");
        let keep = crate::constitution::draw_few_shot(items.len(), max, &mut rng);
        let mut keep_mask = vec![false; items.len()];
        for k in keep {
            keep_mask[k] = true;
        }
        let mut i = 0;
        items.retain(|_| {
            i += 1;
            keep_mask[i - 1]
        });
    }
    items
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_and_bad_lines() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("p.jsonl");
        std::fs::write(&p, "{\"prompt\": \"hi\"}\n\n{\"id\": \"x\", \"prompt\": \"yo\", \"family\": \"harmful\"}\n").unwrap();
        let items = load_prompts(&p).unwrap();
        assert_eq!(items.len(), 2);
        assert_eq!(items[0].id, "line-1");
        assert_eq!(select(items.clone(), &["harmful".into()], 0, 0).len(), 1);
        assert_eq!(select(items, &[], 1, 0).len(), 1);
        std::fs::write(&p, "{\"prompt\": \"hi\"}\n{\"text\": 3}\n").unwrap();
        let e = load_prompts(&p).unwrap_err().to_string();
        assert!(e.contains("p.jsonl:2"), "{e}");
        std::fs::write(&p, "{\"id\": \"a\", \"prompt\": \"hi\"}\n{\"id\": \"a\", \"prompt\": \"ho\"}\n").unwrap();
        assert!(load_prompts(&p).unwrap_err().to_string().contains("twice"));
    }
}
