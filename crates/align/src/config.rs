//! TOML config files with `--set key.path=value` overrides (flags win over the file).
//!
//! A value is parsed as a TOML literal (`3`, `1e-3`, `true`, `"text"`, `[1, 2]`); anything that does
//! not parse is taken as a string, so `--set data.files=a.txt` works unquoted.

use anyhow::{bail, Context, Result};
use serde::de::DeserializeOwned;
use std::path::Path;

/// Reads `path` (if given), applies `sets`, and deserializes into `T` (whose unknown keys are errors).
pub fn load<T: DeserializeOwned>(path: Option<&Path>, sets: &[String]) -> Result<(T, toml::Value)> {
    let mut root = match path {
        Some(p) => {
            let text = std::fs::read_to_string(p).with_context(|| format!("cannot read config {}", p.display()))?;
            text.parse::<toml::Table>()
                .map(toml::Value::Table)
                .with_context(|| format!("{}: invalid TOML", p.display()))?
        }
        None => toml::Value::Table(Default::default()),
    };
    for s in sets {
        apply(&mut root, s)?;
    }
    let cfg = T::deserialize(root.clone()).map_err(|e| {
        let place = path.map(|p| p.display().to_string()).unwrap_or_else(|| "config".into());
        anyhow::anyhow!("{place}: {e}")
    })?;
    Ok((cfg, root))
}

fn parse_value(raw: &str) -> toml::Value {
    let doc = format!("v = {raw}");
    match doc.parse::<toml::Table>() {
        Ok(mut t) => t.remove("v").unwrap_or_else(|| toml::Value::String(raw.into())),
        Err(_) => toml::Value::String(raw.into()),
    }
}

/// Applies one `a.b.c=value` override.
pub fn apply(root: &mut toml::Value, set: &str) -> Result<()> {
    let Some((key, raw)) = set.split_once('=') else {
        bail!("--set expects key=value, got `{set}`")
    };
    let parts: Vec<&str> = key.trim().split('.').collect();
    if parts.iter().any(|p| p.is_empty()) {
        bail!("--set: invalid key `{key}`");
    }
    let mut cur = root;
    for p in &parts[..parts.len() - 1] {
        let table = cur.as_table_mut().with_context(|| format!("--set {key}: `{p}` is not a table"))?;
        cur = table.entry(p.to_string()).or_insert_with(|| toml::Value::Table(Default::default()));
    }
    let table = cur.as_table_mut().with_context(|| format!("--set {key}: parent is not a table"))?;
    table.insert(parts[parts.len() - 1].to_string(), parse_value(raw.trim()));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn overrides_nest_and_parse_literals() {
        let mut v = toml::Value::Table(Default::default());
        apply(&mut v, "train.lr=1e-3").unwrap();
        apply(&mut v, "train.max_steps=10").unwrap();
        apply(&mut v, "data.files=[\"a.txt\"]").unwrap();
        apply(&mut v, "out_dir=runs/x").unwrap();
        assert_eq!(v["train"]["lr"].as_float(), Some(1e-3));
        assert_eq!(v["train"]["max_steps"].as_integer(), Some(10));
        assert_eq!(v["data"]["files"][0].as_str(), Some("a.txt"));
        assert_eq!(v["out_dir"].as_str(), Some("runs/x"));
        assert!(apply(&mut v, "novalue").is_err());
    }
}
