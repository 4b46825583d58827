//! TOML config files with `--set key.path=value` overrides (flags win over the file).
//!
//! A value is parsed as a TOML literal (`3`, `1e-3`, `true`, `"text"`, `[1, 2]`); anything that does
//! not parse is taken as a string, so `--set data.files=a.txt` works unquoted.

use anyhow::{bail, Context, Result};
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::path::Path;

/// Reads `path` (if given), applies `sets`, and deserializes into `T` (whose unknown keys are errors).
pub fn load<T: DeserializeOwned>(path: Option<&Path>, sets: &[String]) -> Result<(T, toml::Value)> {
    load_over(toml::Value::Table(Default::default()), path, sets)
}

/// As [`load`], for a config whose `Default` sets nested sections (as `align demo`'s does): the file
/// and the `--set`s are merged key by key over `T::default()`, so `--set pretrain.max_steps=1000`
/// changes that one key and keeps the rest of the `pretrain` section's defaults. (Deserializing the
/// overrides alone would fill a partly given section from its own type's defaults instead.) The
/// returned value is the whole resolved config.
pub fn load_over_defaults<T: DeserializeOwned + Serialize + Default>(path: Option<&Path>, sets: &[String]) -> Result<(T, toml::Value)> {
    let base = toml::Value::try_from(T::default()).context("cannot represent the default config as TOML")?;
    load_over(base, path, sets)
}

/// `base`, with the file at `path` merged in and then `sets` applied, deserialized into `T`.
fn load_over<T: DeserializeOwned>(mut root: toml::Value, path: Option<&Path>, sets: &[String]) -> Result<(T, toml::Value)> {
    if let Some(p) = path {
        let text = std::fs::read_to_string(p).with_context(|| format!("cannot read config {}", p.display()))?;
        let file = text.parse::<toml::Table>().with_context(|| format!("{}: invalid TOML", p.display()))?;
        merge(&mut root, toml::Value::Table(file));
    }
    for s in sets {
        apply(&mut root, s)?;
    }
    let cfg = T::deserialize(root.clone()).map_err(|e| {
        let place = path.map(|p| p.display().to_string()).unwrap_or_else(|| "config".into());
        anyhow::anyhow!("{place}: {e}")
    })?;
    Ok((cfg, root))
}

/// Merges `over` into `base`: tables key by key (recursively), any other value replaces.
fn merge(base: &mut toml::Value, over: toml::Value) {
    match (base, over) {
        (toml::Value::Table(b), toml::Value::Table(o)) => {
            for (k, v) in o {
                match b.get_mut(&k) {
                    Some(slot) => merge(slot, v),
                    None => {
                        b.insert(k, v);
                    }
                }
            }
        }
        (b, o) => *b = o,
    }
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

    #[derive(Debug, PartialEq, serde::Serialize, serde::Deserialize)]
    #[serde(default, deny_unknown_fields)]
    struct Section {
        lr: f64,
        steps: u64,
    }
    impl Default for Section {
        fn default() -> Self {
            Section { lr: 1e-5, steps: 10 }
        }
    }
    #[derive(Debug, PartialEq, serde::Serialize, serde::Deserialize)]
    #[serde(default, deny_unknown_fields)]
    struct Outer {
        name: String,
        pre: Section,
        post: Section,
    }
    impl Default for Outer {
        fn default() -> Self {
            // Sections whose defaults differ from `Section::default()`.
            Outer { name: "x".into(), pre: Section { lr: 3e-3, steps: 300 }, post: Section { lr: 5e-4, steps: 450 } }
        }
    }

    #[test]
    fn overrides_keep_the_rest_of_a_sections_defaults() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("c.toml");
        std::fs::write(&file, "[post]\nsteps = 7\n").unwrap();
        let (c, resolved): (Outer, _) = load_over_defaults(Some(&file), &["pre.steps=1000".into()]).unwrap();
        assert_eq!(c, Outer { name: "x".into(), pre: Section { lr: 3e-3, steps: 1000 }, post: Section { lr: 5e-4, steps: 7 } });
        assert_eq!(resolved["pre"]["lr"].as_float(), Some(3e-3), "the resolved config is whole");
        // `load` alone fills a partly given section from `Section::default()`, which is why the
        // demo uses `load_over_defaults`.
        let (plain, _): (Outer, _) = load(None, &["pre.steps=1000".into()]).unwrap();
        assert_eq!(plain.pre.lr, 1e-5);
        // Unknown keys are still errors, in a file or a --set.
        let e = load_over_defaults::<Outer>(None, &["pre.lrr=1".into()]).unwrap_err();
        assert!(e.to_string().contains("lrr"), "{e}");
    }
}
