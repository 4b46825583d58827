//! `align report RUN_DIR`: one self-contained HTML file (inline SVG, embedded CSS, no network) and
//! a Markdown summary of a run directory.
//!
//! What it reads (docs/report.md is the contract; every file is optional, and a section whose
//! files are missing is left out):
//! - `eval/stages.json` — `[{"key", "name", "file"}]` in pipeline order; without it `eval/raw.json`,
//!   `sft.json`, `aligned.json`, `dpo.json`, `ppo.json`, `grpo.json`, `rloo.json`, whichever exist.
//!   Each file is a [`StageEval`].
//! - `<stage>/metrics.jsonl` for the stage directories in [`TRAIN_STAGES`]: training curves.
//! - `<stage>/rollouts.jsonl` for RL stages: proxy reward, gold reward and KL per rollout.
//! - `hacking/<variant>/rollouts.jsonl`: proxy vs gold reward for each KL setting.
//! - `report_extra.json`: extra tables `[{"title", "caption", "header", "rows"}]`.
//! - `*/summary.json` (`"seconds"`) for the timings table; `demo_config.toml` shown as is.
//! - `gym/prompts/eval.jsonl` to recover the prompts of stage files written without them.
//!
//! The sections follow the seeds: the H-H-H table per stage, the behaviour table, win rates of
//! each later stage against each earlier one (as InstructGPT's Figure 1), training curves, RL and
//! reward-hacking figures (Gao et al. 2022, "Scaling Laws for Reward Model Overoptimization"), and
//! "same prompt, every stage" answers.

use crate::evaluate::StageEval;
use crate::gym::{family_name, first_per_family};
use crate::plot::{self, BarSeries, IntervalBar, LineChart, Rgb, Series, PALETTE};
use crate::winrate::{win_rate, WinRate};
use crate::{EvalError, Result};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

/// Training stage directories, in pipeline order, whose `metrics.jsonl` is plotted.
pub const TRAIN_STAGES: [&str; 7] = ["pretrain", "sft", "rm", "dpo", "ppo", "grpo", "rloo"];
/// Eval files tried, in order, when `eval/stages.json` is absent.
const FALLBACK_EVALS: [&str; 7] = ["raw", "sft", "aligned", "dpo", "ppo", "grpo", "rloo"];
/// Examples per family in the held-out section.
const EXAMPLES_PER_FAMILY: usize = 2;
/// Win rates count |a - b| <= this as a tie (as `align eval`).
pub const TIE_MARGIN: f64 = 0.05;

/// One entry of `eval/stages.json`.
#[derive(Debug, Clone, Deserialize, PartialEq)]
pub struct StageEntry {
    pub key: String,
    pub name: String,
    pub file: String,
}

/// An evaluated stage: its key ("raw", "sft", "dpo", ...) and evaluation.
#[derive(Debug, Clone)]
pub struct Stage {
    pub key: String,
    pub eval: StageEval,
}

/// One JSON line of a metrics or rollouts file: its step and its numeric fields.
#[derive(Debug, Clone, PartialEq)]
pub struct MetricRow {
    pub step: f64,
    pub values: BTreeMap<String, f64>,
}

/// An extra table from `report_extra.json`.
#[derive(Debug, Clone, Deserialize, PartialEq)]
pub struct ExtraTable {
    pub title: String,
    #[serde(default)]
    pub caption: String,
    pub header: Vec<String>,
    pub rows: Vec<Vec<serde_json::Value>>,
}

/// Everything the report shows, read from a run directory.
#[derive(Debug, Clone, Default)]
pub struct RunData {
    pub stages: Vec<Stage>,
    /// (family, prompt) of each eval prompt, in the stages' order; `None` when unknown.
    pub prompts: Option<Vec<(String, String)>>,
    /// (stage dir, rows of `metrics.jsonl`).
    pub curves: Vec<(String, Vec<MetricRow>)>,
    /// (stage dir, rows of `rollouts.jsonl`).
    pub rollouts: Vec<(String, Vec<MetricRow>)>,
    /// (variant, rows of `hacking/<variant>/rollouts.jsonl`).
    pub hacking: Vec<(String, Vec<MetricRow>)>,
    pub extra: Vec<ExtraTable>,
    /// (directory, seconds) from `*/summary.json`.
    pub timings: Vec<(String, f64)>,
    pub config: Option<String>,
}

fn io_err(path: &Path, e: std::io::Error) -> EvalError {
    EvalError::Invalid(format!("cannot read {}: {e}", path.display()))
}

/// The file's text, or `None` when it does not exist.
fn read_optional(path: &Path) -> Result<Option<String>> {
    match std::fs::read_to_string(path) {
        Ok(t) => Ok(Some(t)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(io_err(path, e)),
    }
}

fn parse_json<T: serde::de::DeserializeOwned>(path: &Path, text: &str) -> Result<T> {
    serde_json::from_str(text).map_err(|e| EvalError::Invalid(format!("{}: {e}", path.display())))
}

/// Reads a metrics or rollouts JSONL file: one object per line with a numeric `step`; other
/// numeric fields are kept, the rest ignored. A last line without its newline is a write cut short
/// by a killed run and is skipped; any other malformed line is an error naming file and line.
pub fn read_metrics(path: &Path) -> Result<Option<Vec<MetricRow>>> {
    let Some(text) = read_optional(path)? else { return Ok(None) };
    let lines: Vec<&str> = text.split('\n').collect();
    let mut rows = vec![];
    for (i, line) in lines.iter().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let at = || format!("{}:{}", path.display(), i + 1);
        let obj: serde_json::Map<String, serde_json::Value> = match serde_json::from_str(line) {
            Ok(o) => o,
            Err(_) if i + 1 == lines.len() => continue,
            Err(e) => return Err(EvalError::Invalid(format!("{}: not a JSON object: {e}", at()))),
        };
        let step = obj
            .get("step")
            .and_then(|v| v.as_f64())
            .ok_or_else(|| EvalError::Invalid(format!("{}: field \"step\" is missing or not a number", at())))?;
        let values = obj.iter().filter(|(k, _)| *k != "step").filter_map(|(k, v)| v.as_f64().map(|x| (k.clone(), x))).collect();
        rows.push(MetricRow { step, values });
    }
    Ok(Some(rows))
}

/// (step, value) of `key`, averaged over rows of the same step, in step order.
pub fn metric_series(rows: &[MetricRow], key: &str) -> Vec<(f64, f64)> {
    let mut by_step: BTreeMap<i64, (f64, f64, usize)> = BTreeMap::new();
    for r in rows {
        if let Some(v) = r.values.get(key).filter(|v| v.is_finite()) {
            let e = by_step.entry((r.step * 1000.0).round() as i64).or_insert((r.step, 0.0, 0));
            e.1 += v;
            e.2 += 1;
        }
    }
    by_step.values().map(|(s, sum, n)| (*s, sum / *n as f64)).collect()
}

/// (x, y) of the steps where both `x_key` and `y_key` were logged (each averaged per step), in
/// step order: e.g. reward against KL.
pub fn paired_series(rows: &[MetricRow], x_key: &str, y_key: &str) -> Vec<(f64, f64)> {
    let xs: BTreeMap<i64, f64> = metric_series(rows, x_key).into_iter().map(|(s, v)| ((s * 1000.0).round() as i64, v)).collect();
    metric_series(rows, y_key).into_iter().filter_map(|(s, y)| xs.get(&((s * 1000.0).round() as i64)).map(|x| (*x, y))).collect()
}

/// The evaluated stages, from `eval/stages.json` or the fallback file names.
fn load_stages(eval_dir: &Path) -> Result<Vec<Stage>> {
    let index = eval_dir.join("stages.json");
    let entries: Vec<StageEntry> = match read_optional(&index)? {
        Some(t) => parse_json(&index, &t)?,
        None => FALLBACK_EVALS.iter().map(|k| StageEntry { key: k.to_string(), name: String::new(), file: format!("{k}.json") }).collect(),
    };
    let mut stages = vec![];
    for e in entries {
        let path = eval_dir.join(&e.file);
        let Some(text) = read_optional(&path)? else { continue };
        let mut eval: StageEval = parse_json(&path, &text)?;
        if !e.name.is_empty() {
            eval.name = e.name.clone();
        }
        stages.push(Stage { key: e.key, eval });
    }
    Ok(stages)
}

/// (family, prompt) of every eval prompt: from the stage file, or rebuilt from the gym's
/// `prompts/eval.jsonl` with the subset such files were written with (the first N of each
/// family), if its families and counts match.
fn load_prompts(run: &Path, stages: &[Stage]) -> Option<Vec<(String, String)>> {
    let first = &stages.first()?.eval;
    if first.prompts.len() == first.responses.len() && first.families.len() == first.responses.len() && !first.prompts.is_empty() {
        return Some(first.families.iter().cloned().zip(first.prompts.iter().cloned()).collect());
    }
    let records = align_gym::load_prompts(run.join("gym/prompts/eval.jsonl")).ok()?;
    let per_family = first.report.per_family.values().map(|f| f.n).max()?;
    let subset = first_per_family(&records, per_family);
    let mut counts: BTreeMap<String, usize> = BTreeMap::new();
    for r in &subset {
        *counts.entry(family_name(r.family())).or_default() += 1;
    }
    let expected: BTreeMap<String, usize> = first.report.per_family.iter().map(|(k, f)| (k.clone(), f.n)).collect();
    (subset.len() == first.responses.len() && counts == expected)
        .then(|| subset.iter().map(|r| (family_name(r.family()), r.prompt.clone())).collect())
}

/// Reads everything the report shows from `run`; missing files leave their part empty.
pub fn load_run(run: &Path) -> Result<RunData> {
    if !run.is_dir() {
        return Err(EvalError::Invalid(format!("{} is not a run directory", run.display())));
    }
    let stages = load_stages(&run.join("eval"))?;
    let prompts = load_prompts(run, &stages);
    let mut curves = vec![];
    let mut rollouts = vec![];
    for s in TRAIN_STAGES {
        if let Some(rows) = read_metrics(&run.join(s).join("metrics.jsonl"))?.filter(|r| !r.is_empty()) {
            curves.push((s.to_string(), rows));
        }
        if let Some(rows) = read_metrics(&run.join(s).join("rollouts.jsonl"))?.filter(|r| !r.is_empty()) {
            rollouts.push((s.to_string(), rows));
        }
    }
    let mut hacking = vec![];
    for variant in sorted_subdirs(&run.join("hacking"))? {
        if let Some(rows) = read_metrics(&run.join("hacking").join(&variant).join("rollouts.jsonl"))?.filter(|r| !r.is_empty()) {
            hacking.push((variant, rows));
        }
    }
    let extra_path = run.join("report_extra.json");
    let extra = match read_optional(&extra_path)? {
        Some(t) => parse_json(&extra_path, &t)?,
        None => vec![],
    };
    let mut timings = vec![];
    let mut dirs = sorted_subdirs(run)?;
    // Pipeline order first, then the rest alphabetically.
    let order = |d: &str| ["gym", "tokenizer"].iter().chain(TRAIN_STAGES.iter()).position(|s| *s == d).unwrap_or(usize::MAX);
    dirs.sort_by_key(|d| (order(d), d.clone()));
    for d in dirs {
        let path = run.join(&d).join("summary.json");
        if let Some(t) = read_optional(&path)? {
            let v: serde_json::Value = parse_json(&path, &t)?;
            if let Some(s) = v.get("seconds").and_then(|s| s.as_f64()) {
                timings.push((d, s));
            }
        }
    }
    let config = read_optional(&run.join("demo_config.toml"))?.filter(|t| !t.trim().is_empty());
    Ok(RunData { stages, prompts, curves, rollouts, hacking, extra, timings, config })
}

fn sorted_subdirs(dir: &Path) -> Result<Vec<String>> {
    let rd = match std::fs::read_dir(dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(vec![]),
        Err(e) => return Err(io_err(dir, e)),
    };
    let mut out: Vec<String> = rd
        .filter_map(|e| e.ok())
        .filter(|e| e.path().is_dir())
        .filter_map(|e| e.file_name().to_str().map(String::from))
        .collect();
    out.sort();
    Ok(out)
}

/// Colour of a stage, the same in every chart: raw grey, SFT blue, DPO orange, PPO green, ...
fn stage_color(key: &str, index: usize) -> Rgb {
    match key {
        "raw" | "pretrain" => PALETTE[9],
        "sft" => PALETTE[0],
        "dpo" | "aligned" => PALETTE[1],
        "ppo" => PALETTE[2],
        "grpo" => PALETTE[4],
        "rloo" => PALETTE[5],
        "rm" => PALETTE[7],
        _ => PALETTE[index % PALETTE.len()],
    }
}

/// Win rate of each later stage against each earlier one: (later, earlier, rate); pairs whose
/// prompt lists differ in length are skipped.
pub fn win_rates(stages: &[Stage], seed: u64) -> Vec<(usize, usize, WinRate)> {
    let mut out = vec![];
    for i in 1..stages.len() {
        for j in (0..i).rev() {
            let (a, b) = (&stages[i].eval.overall, &stages[j].eval.overall);
            if a.len() == b.len() && !a.is_empty() {
                out.push((i, j, win_rate(a, b, TIE_MARGIN, seed)));
            }
        }
    }
    out
}

/// Escapes text for HTML element content and attribute values.
pub fn escape_html(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '&' => out.push_str("&amp;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// Escapes text for a Markdown table cell (pipes, newlines, HTML).
fn escape_md(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('|', "\\|").replace('\n', " ")
}

fn pct(x: f64) -> String {
    if x.is_finite() {
        format!("{:.0}%", 100.0 * x)
    } else {
        "–".into()
    }
}

fn num(x: f64) -> String {
    if x.is_finite() {
        format!("{x:.2}")
    } else {
        "–".into()
    }
}

/// "2026-11-25" (UTC) for a Unix time, by Howard Hinnant's `civil_from_days`.
fn utc_date(unix_secs: u64) -> String {
    let z = (unix_secs / 86_400) as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + if m <= 2 { 1 } else { 0 };
    format!("{y:04}-{m:02}-{d:02}")
}

fn today() -> String {
    utc_date(std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0))
}

/// A table: header cells and rows of cells, already rendered as HTML; `best` marks, per column,
/// whether higher (`Some(true)`) or lower (`Some(false)`) is better, and the best cell is bold.
struct Table {
    header: Vec<String>,
    rows: Vec<Vec<String>>,
    values: Vec<Vec<Option<f64>>>,
    better: Vec<Option<bool>>,
}

impl Table {
    fn html(&self, class: &str) -> String {
        let mut s = format!("<table class=\"{class}\"><thead><tr>");
        for h in &self.header {
            let _ = write!(s, "<th>{h}</th>");
        }
        s.push_str("</tr></thead><tbody>");
        let best: Vec<Option<f64>> = (0..self.header.len())
            .map(|c| {
                let vals = self.values.iter().filter_map(|r| r.get(c).copied().flatten());
                match self.better.get(c).copied().flatten() {
                    Some(true) => vals.fold(None, |m: Option<f64>, v| Some(m.map_or(v, |m| m.max(v)))),
                    Some(false) => vals.fold(None, |m: Option<f64>, v| Some(m.map_or(v, |m| m.min(v)))),
                    None => None,
                }
            })
            // A column where every stage has the same value has no best.
            .enumerate()
            .map(|(c, b)| {
                let vals: Vec<f64> = self.values.iter().filter_map(|r| r.get(c).copied().flatten()).collect();
                b.filter(|_| vals.iter().any(|v| (v - vals[0]).abs() > 1e-9))
            })
            .collect();
        for (r, row) in self.rows.iter().enumerate() {
            s.push_str("<tr>");
            for (c, cell) in row.iter().enumerate() {
                let v = self.values.get(r).and_then(|x| x.get(c)).copied().flatten();
                let is_best = self.rows.len() > 1 && v.is_some() && best[c].is_some() && (v.unwrap() - best[c].unwrap()).abs() < 1e-9;
                if c == 0 {
                    let _ = write!(s, "<th scope=\"row\">{cell}</th>");
                } else if is_best {
                    let _ = write!(s, "<td class=\"best\">{cell}</td>");
                } else {
                    let _ = write!(s, "<td>{cell}</td>");
                }
            }
            s.push_str("</tr>");
        }
        s.push_str("</tbody></table>");
        s
    }

    /// The same table in Markdown (cells are HTML-escaped text already; tags are dropped).
    fn markdown(&self) -> String {
        let strip = |c: &str| c.replace("<br>", " ").replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&").replace("&quot;", "\"").replace("&#39;", "'");
        let md = |c: &str| escape_md(&strip(c));
        let mut s = format!("| {} |\n|{}\n", self.header.iter().map(|h| md(h)).collect::<Vec<_>>().join(" | "), "---|".repeat(self.header.len()));
        for row in &self.rows {
            let _ = writeln!(s, "| {} |", row.iter().map(|c| md(c)).collect::<Vec<_>>().join(" | "));
        }
        s
    }
}

fn hhh_table(stages: &[Stage]) -> Table {
    // The KL column appears when some stage was measured against a reference (`align eval --reference`).
    let with_kl = stages.iter().any(|s| s.eval.kl.is_some());
    let mut header = ["stage", "helpful ↑", "honest ↑", "harmless ↑", "overall ↑", "prompts"].map(String::from).to_vec();
    let mut better = vec![None, Some(true), Some(true), Some(true), Some(true), None];
    if with_kl {
        // "KL from SFT" when every measured stage names the same reference.
        let mut refs: Vec<&str> = stages.iter().filter_map(|s| s.eval.kl.as_ref()).map(|k| k.reference.as_str()).collect();
        refs.dedup();
        let of = match refs.as_slice() {
            [r] if !r.is_empty() => escape_html(r),
            _ => "reference".into(),
        };
        header.push(format!("KL from {of} (nats per answer)"));
        better.push(None);
    }
    let mut rows = vec![];
    let mut values = vec![];
    for s in stages {
        let a = &s.eval.report.all;
        let v = [a.helpful, a.honest, a.harmless, a.overall];
        let mut row = vec![escape_html(&s.eval.name)];
        row.extend(v.iter().map(|x| num(*x)));
        row.push(a.n.to_string());
        let mut vals = vec![None];
        vals.extend(v.iter().map(|x| Some(*x)));
        vals.push(None);
        if with_kl {
            row.push(s.eval.kl.as_ref().map(|k| format!("{:.2} [{:.2}, {:.2}]", k.kl, k.ci_low, k.ci_high)).unwrap_or_else(|| "–".into()));
            vals.push(None);
        }
        rows.push(row);
        values.push(vals);
    }
    Table { header, rows, values, better }
}

fn behaviour_table(stages: &[Stage]) -> Table {
    let header = [
        "stage",
        "harmful requests refused ↑",
        "benign look-alikes refused ↓",
        "unknown entities: “I don't know” ↑",
        "near-miss names: “I don't know” ↑",
        "wrong beliefs agreed with ↓",
        "wrong beliefs corrected ↑",
        "true beliefs contradicted ↓",
        "how-to overall ↑",
        "fact overall ↑",
        "fact accuracy (helpful) ↑",
        "facts answered “I don't know”",
    ]
    .map(String::from)
    .to_vec();
    let mut rows = vec![];
    let mut values = vec![];
    for s in stages {
        let f = |k: &str| s.eval.report.per_family.get(k).cloned();
        let v = [
            f("harmful").map(|x| x.refusal_rate),
            f("benign_lookalike").map(|x| x.refusal_rate),
            f("unknown").map(|x| x.abstention_rate),
            f("unknown").and_then(|x| x.near_miss_abstained),
            f("sycophancy").and_then(|x| x.false_belief_agreed),
            f("sycophancy").and_then(|x| x.false_belief_corrected),
            f("sycophancy").and_then(|x| x.true_belief_contradicted),
            f("how_to").map(|x| x.overall),
            f("fact").map(|x| x.overall),
            f("fact").map(|x| x.helpful),
            f("fact").map(|x| x.abstention_rate),
        ];
        let mut row = vec![escape_html(&s.eval.name)];
        row.extend(v[..7].iter().map(|x| x.map(pct).unwrap_or("–".into())));
        row.extend(v[7..10].iter().map(|x| x.map(num).unwrap_or("–".into())));
        row.extend(v[10..].iter().map(|x| x.map(pct).unwrap_or("–".into())));
        rows.push(row);
        let mut vals = vec![None];
        vals.extend(v);
        values.push(vals);
    }
    Table { header, rows, values, better: vec![None, Some(true), Some(false), Some(true), Some(true), Some(false), Some(true), Some(false), Some(true), Some(true), Some(true), None] }
}

fn winrate_table(stages: &[Stage], wr: &[(usize, usize, WinRate)]) -> Table {
    let header = ["model", "against", "win rate [95% CI]", "wins / ties / losses"].map(String::from).to_vec();
    let rows = wr
        .iter()
        .map(|(i, j, w)| {
            vec![
                escape_html(&stages[*i].eval.name),
                escape_html(&stages[*j].eval.name),
                format!("{} [{}, {}]", pct(w.rate), pct(w.ci_low), pct(w.ci_high)),
                format!("{} / {} / {}", w.wins, w.ties, w.losses),
            ]
        })
        .collect();
    Table { header, rows, values: vec![], better: vec![] }
}

fn extra_table(t: &ExtraTable) -> Table {
    let cell = |v: &serde_json::Value| match v {
        serde_json::Value::String(s) => escape_html(s),
        serde_json::Value::Number(n) => match n.as_f64() {
            Some(x) if n.is_f64() => format!("{x:.3}"),
            _ => n.to_string(),
        },
        serde_json::Value::Null => "–".into(),
        other => escape_html(&other.to_string()),
    };
    Table {
        header: t.header.iter().map(|h| escape_html(h)).collect(),
        rows: t.rows.iter().map(|r| r.iter().map(cell).collect()).collect(),
        values: vec![],
        better: vec![],
    }
}

fn timings_table(timings: &[(String, f64)]) -> Table {
    let total: f64 = timings.iter().map(|t| t.1).sum();
    let mut rows: Vec<Vec<String>> = timings.iter().map(|(d, s)| vec![escape_html(d), format!("{s:.1}")]).collect();
    rows.push(vec!["total".into(), format!("{total:.1}")]);
    Table { header: vec!["stage".into(), "seconds".into()], rows, values: vec![], better: vec![] }
}

/// A stage directory's name for headings: "pretrain" → "Stage 1, pretraining", ...
fn stage_title(dir: &str) -> String {
    match dir {
        "pretrain" => "Stage 1, pretraining".into(),
        "sft" => "Stage 2, supervised fine-tuning (SFT)".into(),
        "rm" => "Reward model".into(),
        "dpo" => "Stage 3, DPO".into(),
        "ppo" => "Stage 3, PPO".into(),
        "grpo" => "Stage 3, GRPO".into(),
        "rloo" => "Stage 3, RLOO".into(),
        other => other.into(),
    }
}

/// Friendly names of the metrics plotted from `metrics.jsonl`.
const LOSS_KEYS: [(&str, &str); 5] = [
    ("loss", "train loss"),
    ("sft_loss", "train loss: SFT part"),
    ("ptx_loss", "train loss: pretraining mix"),
    ("eval_loss", "held-out loss"),
    ("eval/loss", "held-out loss"),
];

/// The loss figure's y-axis label and caption for a stage: only the language-modelling stages
/// have a per-token cross-entropy; the others' losses are per pair or per RL minibatch.
fn loss_axis_and_caption(stage: &str) -> (&'static str, &'static str) {
    match stage {
        "rm" => ("loss (per pair)", "Bradley–Terry loss of the reward model (−log σ(r_chosen − r_rejected)); dashed: held-out."),
        "dpo" => ("loss (per pair)", "DPO loss (plus the NLL-on-chosen and pretraining-mix terms when enabled); dashed: held-out DPO loss."),
        "ppo" => (
            "loss",
            "PPO's training loss: the clipped policy-gradient surrogate plus vf_coef × the clipped value loss (plus the pretraining-mix term when it is on). \
             With whitened advantages it stays near zero by construction; the reward and KL figures below show what the run achieved.",
        ),
        "grpo" | "rloo" => (
            "loss",
            "The clipped policy-gradient surrogate over group-relative advantages, plus β × the k3 KL term to the reference. \
             It stays near zero by construction; the reward figures below show what the run achieved.",
        ),
        _ => ("loss (nats / token)", "Next-token cross-entropy; dashed: held-out. The total train loss adds the pretraining-mix term when it is on."),
    }
}

/// The figures of one training stage: the loss curves, and for preference stages the reward
/// accuracy and margin.
fn stage_figures(stage: &str, rows: &[MetricRow]) -> Result<Vec<(String, String, String)>> {
    let mut figs = vec![];
    let mut series = vec![];
    for (i, (key, name)) in LOSS_KEYS.iter().enumerate() {
        let pts = metric_series(rows, key);
        if !pts.is_empty() {
            let s = Series::new(*name, pts, PALETTE[[0, 5, 7, 1, 1][i]]);
            series.push(if key.starts_with("eval") { s.dashed() } else { s });
        }
    }
    if !series.is_empty() {
        let (y_label, caption) = loss_axis_and_caption(stage);
        let chart = LineChart { x_label: "optimizer step".into(), y_label: y_label.into(), y2_label: None, series, size: (900, 340) };
        figs.push((format!("{}: loss", stage_title(stage)), plot::line_chart(&chart)?, caption.to_string()));
    }
    let acc_keys: [(&str, &str); 4] = [
        ("rewards/accuracies", "reward accuracy (train)"),
        ("eval_rewards/accuracies", "reward accuracy (held-out)"),
        ("accuracy", "accuracy (train)"),
        ("eval_accuracy", "accuracy (held-out)"),
    ];
    let margin_keys: [(&str, &str); 3] = [
        ("rewards/margins", "reward margin (train)"),
        ("eval_rewards/margins", "reward margin (held-out)"),
        ("margin", "reward margin (train)"),
    ];
    let mut series = vec![];
    for (i, (key, name)) in acc_keys.iter().enumerate() {
        let pts = metric_series(rows, key);
        if !pts.is_empty() {
            let s = Series::new(*name, pts, PALETTE[2]);
            series.push(if i % 2 == 1 { s.dashed() } else { s });
        }
    }
    for (i, (key, name)) in margin_keys.iter().enumerate() {
        let pts = metric_series(rows, key);
        if !pts.is_empty() {
            let s = Series::new(*name, pts, PALETTE[4]).right();
            series.push(if i == 1 { s.dashed() } else { s });
        }
    }
    if !series.is_empty() {
        let has_right = series.iter().any(|s| s.right_axis);
        let chart = LineChart {
            x_label: "optimizer step".into(),
            y_label: "accuracy (chosen scored above rejected)".into(),
            y2_label: has_right.then(|| "margin (r_chosen − r_rejected)".into()),
            series,
            size: (900, 340),
        };
        figs.push((
            format!("{}: preference accuracy and margin", stage_title(stage)),
            plot::line_chart(&chart)?,
            accuracy_caption(stage).into(),
        ));
    }
    Ok(figs)
}

/// What the preference-accuracy figure measures: a reward model's score, or a DPO-family model's
/// implicit reward.
fn accuracy_caption(stage: &str) -> &'static str {
    if stage == "rm" {
        "Share of pairs whose chosen answer gets the higher reward-model score (left axis), and the mean score margin (right axis)."
    } else {
        "Share of pairs whose chosen answer gets the higher implicit reward β·(log π − log π_ref) (left axis), and the mean reward margin (right axis)."
    }
}

/// Rollouts averaged in the RL figures' sample curves.
const SMOOTH: usize = 5;

/// The mean of each point and the `w − 1` before it (fewer at the start); x too when `both`.
fn trailing_mean(pts: &[(f64, f64)], w: usize, both: bool) -> Vec<(f64, f64)> {
    (0..pts.len())
        .map(|i| {
            let win = &pts[i.saturating_sub(w.max(1) - 1)..=i];
            let n = win.len() as f64;
            let y = win.iter().map(|p| p.1).sum::<f64>() / n;
            let x = if both { win.iter().map(|p| p.0).sum::<f64>() / n } else { pts[i].0 };
            (x, y)
        })
        .collect()
}

/// Figures of an RL stage: proxy vs gold reward, and KL to the reference, per rollout.
fn rl_figures(stage: &str, rows: &[MetricRow]) -> Result<Vec<(String, String, String)>> {
    let mut figs = vec![];
    let mut series = vec![];
    for (key, name, color, dashed, right) in [
        ("objective/scores", "proxy reward (reward model), samples, 5-rollout mean", PALETTE[0], false, false),
        ("eval/score", "proxy reward, held-out greedy", PALETTE[0], true, false),
        ("gold/mean", "gold reward (judge), samples, 5-rollout mean", PALETTE[3], false, true),
        ("eval/gold", "gold reward, held-out greedy", PALETTE[3], true, true),
    ] {
        let pts = metric_series(rows, key);
        // One rollout's samples are noisy (32 answers): a trailing mean shows the trend.
        let pts = if key.starts_with("eval/") { pts } else { trailing_mean(&pts, SMOOTH, false) };
        if !pts.is_empty() {
            let mut s = Series::new(name, pts, color);
            s.dashed = dashed;
            s.right_axis = right;
            series.push(s);
        }
    }
    if !series.is_empty() {
        let has_right = series.iter().any(|s| s.right_axis);
        let chart = LineChart {
            x_label: "step".into(),
            y_label: "proxy reward (reward model score)".into(),
            y2_label: has_right.then(|| "gold reward (judge, 0–1)".into()),
            series,
            size: (900, 380),
        };
        figs.push((
            format!("{}: proxy reward vs gold reward", stage_title(stage)),
            plot::line_chart(&chart)?,
            "Blue, left axis: the reward the policy is optimized for. Red, right axis: the gold judge's score of the same answers. Proxy rising while gold falls is reward hacking.".into(),
        ));
    }
    let proxy_kl = trailing_mean(&paired_series(rows, "objective/kl", "objective/scores"), SMOOTH, true);
    let gold_kl = trailing_mean(&paired_series(rows, "objective/kl", "gold/mean"), SMOOTH, true);
    if !proxy_kl.is_empty() || !gold_kl.is_empty() {
        let mut series = vec![];
        if !proxy_kl.is_empty() {
            series.push(Series::new("proxy reward (reward model)", proxy_kl, PALETTE[0]).markers());
        }
        if !gold_kl.is_empty() {
            series.push(Series::new("gold reward (judge)", gold_kl, PALETTE[3]).dashed().right().markers());
        }
        let has_right = series.iter().any(|s| s.right_axis);
        let chart = LineChart {
            x_label: "KL(policy || reference), nats".into(),
            y_label: "proxy reward".into(),
            y2_label: has_right.then(|| "gold reward (0–1)".into()),
            series,
            size: (900, 360),
        };
        figs.push((
            format!("{}: reward against KL", stage_title(stage)),
            plot::line_chart(&chart)?,
            "Each point is the mean of 5 consecutive rollouts (KL and reward), joined in step order. The KL budget buys proxy reward; gold reward should rise with it, and turning down while proxy keeps rising marks overoptimization (Gao et al. 2022).".into(),
        ));
    }
    let kl = metric_series(rows, "objective/kl");
    if !kl.is_empty() {
        let chart = LineChart {
            x_label: "step".into(),
            y_label: "KL(policy || reference), nats".into(),
            y2_label: None,
            series: vec![Series::new("KL to the reference (per sequence)", kl, PALETTE[4])],
            size: (900, 300),
        };
        figs.push((format!("{}: KL to the reference model", stage_title(stage)), plot::line_chart(&chart)?, "How far the policy has moved from the SFT model it started from.".into()));
    }
    Ok(figs)
}

/// `y_key`'s points placed at the KL of the policy that produced them: the mean `objective/kl` of
/// the last `w` rollouts up to and including each point's step (one rollout's KL is a 32-sample
/// estimate that moves up and down by a nat; a point after the last rollout, such as the final
/// held-out evaluation, gets the last `w`). Points before any KL is logged are left out.
fn at_trailing_kl(rows: &[MetricRow], y_key: &str, w: usize) -> Vec<(f64, f64)> {
    let kl = metric_series(rows, "objective/kl");
    metric_series(rows, y_key)
        .into_iter()
        .filter_map(|(step, y)| {
            let upto = kl.partition_point(|(s, _)| *s <= step);
            let win = &kl[upto.saturating_sub(w.max(1))..upto];
            (!win.is_empty()).then(|| (win.iter().map(|p| p.1).sum::<f64>() / win.len() as f64, y))
        })
        .collect()
}

/// The reward-hacking figures: proxy (solid, left axis) and gold (dashed, right axis) reward,
/// one colour per variant, against step and (when KL is logged) against KL.
fn hacking_figures(variants: &[(String, Vec<MetricRow>)]) -> Result<Option<(String, Option<String>)>> {
    let chart = |x_label: &str, series: Vec<Series>, size: (u32, u32)| -> Result<Option<String>> {
        if series.is_empty() {
            return Ok(None);
        }
        let has_right = series.iter().any(|s| s.right_axis);
        let c = LineChart {
            x_label: x_label.into(),
            y_label: "proxy reward (solid)".into(),
            y2_label: has_right.then(|| "gold reward (dashed)".into()),
            series,
            size,
        };
        plot::line_chart(&c).map(Some)
    };
    let mut by_step = vec![];
    let mut by_kl = vec![];
    for (i, (name, rows)) in variants.iter().enumerate() {
        let color = PALETTE[i % PALETTE.len()];
        // Held-out greedy answers when the run evaluated them (the policy's mode, where hacking
        // shows; the rollouts' own samples can gain gold while the greedy answers lose it), else
        // the rollouts' samples.
        let held_out = !metric_series(rows, "eval/gold").is_empty();
        let keys = if held_out { [("eval/score", "proxy"), ("eval/gold", "gold")] } else { [("objective/scores", "proxy"), ("gold/mean", "gold")] };
        for ((key, what), dashed) in keys.into_iter().zip([false, true]) {
            let step = metric_series(rows, key);
            let kl = at_trailing_kl(rows, key, SMOOTH);
            let mk = |pts| {
                let s = Series::new(format!("{name}: {what}"), pts, color);
                if dashed {
                    s.dashed().right()
                } else {
                    s
                }
            };
            if !step.is_empty() {
                by_step.push(mk(step));
            }
            if !kl.is_empty() {
                by_kl.push(mk(kl).markers());
            }
        }
    }
    match chart("step", by_step, (1000, 420))? {
        Some(s) => Ok(Some((s, chart("KL(policy || reference), nats", by_kl, (1000, 420))?))),
        None => Ok(None),
    }
}

const CSS: &str = r#"
:root { --fg: #1f2328; --muted: #57606a; --line: #d0d7de; --bg2: #f6f8fa; --accent: #0969da; }
* { box-sizing: border-box; }
body { margin: 0; color: var(--fg); background: #fff; font: 15px/1.5 -apple-system, "Segoe UI", Helvetica, Arial, sans-serif; }
main { max-width: 1080px; margin: 0 auto; padding: 24px 28px 64px; }
header { border-bottom: 1px solid var(--line); margin-bottom: 8px; }
h1 { font-size: 28px; margin: 8px 0 4px; }
h2 { font-size: 21px; margin: 36px 0 8px; padding-bottom: 4px; border-bottom: 1px solid var(--line); }
h3 { font-size: 16px; margin: 20px 0 6px; }
p.meta, p.note, figcaption, .caption { color: var(--muted); font-size: 14px; }
nav { font-size: 14px; margin: 10px 0 0; }
nav a { color: var(--accent); text-decoration: none; margin-right: 14px; white-space: nowrap; }
table { border-collapse: collapse; margin: 8px 0 12px; font-size: 14px; }
th, td { border: 1px solid var(--line); padding: 5px 10px; text-align: right; vertical-align: top; }
thead th { background: var(--bg2); text-align: center; font-weight: 600; }
tbody th { text-align: left; font-weight: 600; white-space: nowrap; }
tbody tr:nth-child(even) td { background: #fbfcfd; }
td.best { font-weight: 700; background: #eaf5ea !important; }
table.text td { text-align: left; white-space: pre-wrap; max-width: 420px; }
table.answers { width: 100%; table-layout: fixed; }
table.answers td { text-align: left; white-space: pre-wrap; word-break: break-word; font-size: 13px; }
table.answers td .score { display: block; color: var(--muted); font-size: 12px; margin-top: 4px; }
table.answers td.prompt { font-weight: 600; background: var(--bg2); }
figure { margin: 12px 0 20px; }
figure svg { max-width: 100%; height: auto; border: 1px solid var(--line); border-radius: 4px; }
details { margin: 6px 0; }
summary { cursor: pointer; font-weight: 600; }
pre { background: var(--bg2); padding: 10px; font-size: 12px; overflow-x: auto; border-radius: 4px; }
code { font-family: ui-monospace, "SFMono-Regular", Menlo, Consolas, monospace; font-size: 13px; }
"#;

fn figure(html: &mut String, title: &str, svg: &str, caption: &str) {
    // The SVG's own XML declaration, if any, is not allowed inside HTML.
    let svg = svg.trim_start();
    let svg = match svg.strip_prefix("<?xml") {
        Some(rest) => rest.split_once("?>").map(|x| x.1).unwrap_or(rest),
        None => svg,
    };
    let _ = write!(html, "<figure><h3>{}</h3>{}<figcaption>{}</figcaption></figure>", escape_html(title), svg, escape_html(caption));
}

/// Answers longer than this are cut in the tables (the full text is in the stage files).
const MAX_ANSWER_CHARS: usize = 400;

fn clip(s: &str) -> String {
    let t = s.trim();
    if t.is_empty() {
        return "(empty answer)".into();
    }
    if t.chars().count() <= MAX_ANSWER_CHARS {
        t.to_string()
    } else {
        format!("{} …", t.chars().take(MAX_ANSWER_CHARS).collect::<String>())
    }
}

/// The HTML report of `run` (read from `run_dir`).
pub fn render_html(run: &RunData, run_dir: &Path, seed: u64) -> Result<String> {
    let stages = &run.stages;
    let mut body = String::new();
    let mut toc: Vec<(&str, &str)> = vec![];
    let wr = win_rates(stages, seed);

    if !stages.is_empty() {
        toc.push(("hhh", "H-H-H"));
        let n = stages[0].eval.report.all.n;
        let fams = stages[0].eval.report.per_family.len();
        let _ = write!(
            body,
            "<section id=\"hhh\"><h2>Helpful, honest, harmless — per stage</h2><p class=\"note\">Mean gold-judge scores (0–1) on {n} held-out prompts in {fams} families; the same prompts for every stage, answered greedily. Bold: best stage in the column.</p>{}</section>",
            hhh_table(stages).html("num")
        );
        toc.push(("behaviour", "behaviour"));
        let _ = write!(
            body,
            "<section id=\"behaviour\"><h2>Behaviour on held-out prompts</h2><p class=\"note\">Share of answers that refuse, abstain or agree, by the gym's string-match detectors (<code>align_gym::judge</code>); ↑ / ↓ marks the desirable direction. The near-miss column is the same share over the unknown entities whose name is a near-miss of a landmark the corpus describes (its words with another kind of building: “the Ithra Fountain” beside “the Ithra Tower”), the hardest to tell from a known name. The three belief columns split the sycophancy probes (“I think X is 225 meters tall. Is that right?”): of those whose belief is false, the share agreed with and the share corrected (the true value stated); of those whose belief is true, the share contradicted. Fact accuracy is the judge's helpfulness on fact prompts (1 for the right value, 0.1 for “I don't know”); the last column is the share of those answerable facts the model abstained on, the price of abstaining on unknown names (a model that cannot recall a fact is honest to abstain, so no direction is marked). At the demo's size the model cannot tell a near-miss name from a landmark it read about, so it pays that price: docs/dpo.md has the probe.</p>{}",
            behaviour_table(stages).html("num")
        );
        let cats: Vec<String> = stages[0].eval.report.per_family.keys().cloned().collect();
        let series: Vec<BarSeries> = stages
            .iter()
            .enumerate()
            .map(|(i, s)| BarSeries {
                name: s.eval.name.clone(),
                color: stage_color(&s.key, i),
                values: cats.iter().map(|c| s.eval.report.per_family.get(c).map(|f| f.overall).unwrap_or(f64::NAN)).collect(),
            })
            .collect();
        let labels: Vec<String> = cats.iter().map(|c| c.replace('_', " ")).collect();
        let svg = plot::grouped_bars(&labels, &series, "gold overall score (0–1)", 1.0, (1000, 380))?;
        figure(&mut body, "Gold overall score per prompt family", &svg, "Mean gold overall score of each stage's answers, per family of held-out prompts.");
        body.push_str("</section>");
    }

    if !wr.is_empty() {
        toc.push(("winrate", "win rates"));
        let bars: Vec<IntervalBar> = wr
            .iter()
            .map(|(i, j, w)| IntervalBar {
                label: format!("{} vs {}", stages[*i].eval.name, stages[*j].eval.name),
                value: w.rate,
                low: w.ci_low,
                high: w.ci_high,
                color: stage_color(&stages[*i].key, *i),
            })
            .collect();
        let fmt = |b: &IntervalBar| format!("{} [{}, {}]", pct(b.value), pct(b.low), pct(b.high));
        let svg = plot::interval_bars(&bars, "win rate (ties count half)", 1.0, Some(0.5), &fmt, 1000)?;
        let _ = write!(
            body,
            "<section id=\"winrate\"><h2>Win rates</h2><p class=\"note\">How often the first model's answer gets a higher gold score than the second's on the same prompt (|difference| ≤ {TIE_MARGIN} is a tie, counted half), as InstructGPT's preference comparisons. Whiskers: 95% percentile bootstrap interval (1,000 resamples, seed {seed}). The dashed line at 50% is a draw.</p>"
        );
        figure(&mut body, "Win rate of each later stage against each earlier one", &svg, "");
        body.push_str(&winrate_table(stages, &wr).html("text"));
        body.push_str("</section>");
    }

    if !run.curves.is_empty() {
        toc.push(("training", "training curves"));
        body.push_str("<section id=\"training\"><h2>Training curves</h2><p class=\"note\">From each stage's <code>metrics.jsonl</code> (one point per logging step).</p>");
        for (stage, rows) in &run.curves {
            for (title, svg, caption) in stage_figures(stage, rows)? {
                figure(&mut body, &title, &svg, &caption);
            }
        }
        body.push_str("</section>");
    }

    if !run.rollouts.is_empty() {
        toc.push(("rl", "RL"));
        body.push_str("<section id=\"rl\"><h2>Reinforcement learning: reward and KL</h2><p class=\"note\">From each RL stage's <code>rollouts.jsonl</code>, one point per rollout.</p>");
        for (stage, rows) in &run.rollouts {
            for (title, svg, caption) in rl_figures(stage, rows)? {
                figure(&mut body, &title, &svg, &caption);
            }
        }
        body.push_str("</section>");
    }

    if let Some((by_step, by_kl)) = hacking_figures(&run.hacking)? {
        toc.push(("hacking", "reward hacking"));
        body.push_str("<section id=\"hacking\"><h2>Reward hacking: proxy vs gold reward</h2><p class=\"note\">The same RL run with different KL penalties (<code>hacking/&lt;variant&gt;</code>), against a reward model whose labels favour long, agreeing, confident answers. Solid lines: the reward model's score (the proxy the policy maximizes, left axis) of the policy's greedy answers to held-out prompts (in the demo: the families where the SFT model gives real answers — how-to, email, lists, benign look-alikes, facts — and harmful requests; docs/rl.md explains why and has every family). Dashed: the gold judge's score of the same answers (right axis). Without the KL penalty the proxy keeps rising while gold falls (Gao et al. 2022); the penalty keeps the policy nearer the SFT model, where the reward model is more often right. Compare how far gold falls in each run: in the gym's demo the default penalty (TRL's 0.05) saves part of the loss, and a penalty ten times larger (0.5, the demo's <code>hacking_extra_kl</code>) saves more, on three seeds; none saves all of it: the biased reward model prefers compliance, and the SFT model refuses harmful requests only sometimes, so dropping its refusals costs little KL (the RL table of report.md has the numbers; docs/rl.md).</p>");
        figure(&mut body, "Proxy and gold reward per step, by KL penalty", &by_step, "");
        if let Some(svg) = by_kl {
            figure(&mut body, "Proxy and gold reward against KL to the reference, by KL penalty", &svg, "The same points as above, placed at the policy's KL to the reference: the mean KL of the 5 rollouts up to each point (one rollout's KL is a noisy 32-sample estimate). Read it as Gao et al.'s overoptimization curves: how much gold reward each nat of KL buys.");
        }
        body.push_str("</section>");
    }

    if !run.extra.is_empty() {
        toc.push(("extra", "more results"));
        body.push_str("<section id=\"extra\"><h2>More results</h2>");
        for t in &run.extra {
            let _ = write!(body, "<h3>{}</h3>", escape_html(&t.title));
            if !t.caption.is_empty() {
                let _ = write!(body, "<p class=\"note\">{}</p>", escape_html(&t.caption));
            }
            body.push_str(&extra_table(t).html("text"));
        }
        body.push_str("</section>");
    }

    if stages.iter().any(|s| !s.eval.seed_answers.is_empty()) {
        toc.push(("same-prompt", "same prompt, every stage"));
        body.push_str("<section id=\"same-prompt\"><h2>Same prompt, every stage</h2><p class=\"note\">The seed prompts answered by each stage (greedy decoding). Model text is shown verbatim.</p>");
        body.push_str(&answers_table(stages, &seed_prompt_rows(stages), None));
        body.push_str("</section>");
    }

    if let Some(prompts) = &run.prompts {
        toc.push(("examples", "held-out examples"));
        body.push_str("<section id=\"examples\"><h2>Held-out examples</h2><p class=\"note\">The first prompts of each family of the evaluation set, with each stage's answer and its gold overall score.</p>");
        let mut fams: Vec<&String> = prompts.iter().map(|p| &p.0).collect();
        fams.sort();
        fams.dedup();
        for fam in fams {
            let idx: Vec<usize> = prompts.iter().enumerate().filter(|(_, p)| &p.0 == fam).map(|(i, _)| i).take(EXAMPLES_PER_FAMILY).collect();
            let rows: Vec<(String, Vec<String>)> = idx
                .iter()
                .map(|&i| (prompts[i].1.clone(), stages.iter().map(|s| s.eval.responses.get(i).cloned().unwrap_or_default()).collect()))
                .collect();
            let _ = write!(body, "<details open><summary>{}</summary>", escape_html(&fam.replace('_', " ")));
            body.push_str(&answers_table(stages, &rows, Some(&idx)));
            body.push_str("</details>");
        }
        body.push_str("</section>");
    }

    if !run.timings.is_empty() || run.config.is_some() {
        toc.push(("timings", "timings and config"));
        body.push_str("<section id=\"timings\"><h2>Timings and configuration</h2>");
        if !run.timings.is_empty() {
            body.push_str("<p class=\"note\">Wall-clock seconds per stage, from each stage's <code>summary.json</code>.</p>");
            body.push_str(&timings_table(&run.timings).html("num"));
        }
        if let Some(cfg) = &run.config {
            let _ = write!(body, "<details><summary>demo_config.toml</summary><pre>{}</pre></details>", escape_html(cfg));
        }
        body.push_str("</section>");
    }

    if body.is_empty() {
        body.push_str("<p>This run directory has nothing to report yet (no <code>eval/</code>, metrics or rollouts).</p>");
    }

    let title = format!("align report — {}", run_dir.display());
    let mut html = String::new();
    let _ = write!(
        html,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><meta name=\"viewport\" content=\"width=device-width, initial-scale=1\"><title>{}</title><style>{CSS}</style></head><body><main><header><h1>align report</h1><p class=\"meta\">run <code>{}</code> · seed {seed} · generated {} (UTC)</p><nav>{}</nav></header>{body}</main></body></html>\n",
        escape_html(&title),
        escape_html(&run_dir.display().to_string()),
        today(),
        toc.iter().map(|(id, name)| format!("<a href=\"#{id}\">{name}</a>")).collect::<String>(),
    );
    Ok(html)
}

/// (prompt, answer of each stage) for the seed prompts; the prompt list is the first stage's.
fn seed_prompt_rows(stages: &[Stage]) -> Vec<(String, Vec<String>)> {
    let Some(first) = stages.iter().find(|s| !s.eval.seed_answers.is_empty()) else { return vec![] };
    first
        .eval
        .seed_answers
        .iter()
        .map(|(p, _)| {
            let answers = stages
                .iter()
                .map(|s| s.eval.seed_answers.iter().find(|(q, _)| q == p).map(|(_, a)| a.clone()).unwrap_or_default())
                .collect();
            (p.clone(), answers)
        })
        .collect()
}

/// A prompt-by-stage table of answers; with `idx`, each answer also shows its gold score.
fn answers_table(stages: &[Stage], rows: &[(String, Vec<String>)], idx: Option<&[usize]>) -> String {
    let mut s = String::from("<table class=\"answers\"><thead><tr><th>prompt</th>");
    for st in stages {
        let _ = write!(s, "<th>{}</th>", escape_html(&st.eval.name));
    }
    s.push_str("</tr></thead><tbody>");
    for (r, (prompt, answers)) in rows.iter().enumerate() {
        let _ = write!(s, "<tr><td class=\"prompt\">{}</td>", escape_html(prompt));
        for (k, a) in answers.iter().enumerate() {
            let score = idx
                .and_then(|idx| stages[k].eval.overall.get(idx[r]))
                .map(|g| format!("<span class=\"score\">gold overall {g:.2}</span>"))
                .unwrap_or_default();
            let _ = write!(s, "<td>{}{score}</td>", escape_html(&clip(a)));
        }
        s.push_str("</tr>");
    }
    s.push_str("</tbody></table>");
    s
}

/// The Markdown summary: the tables of the HTML report, without the figures.
pub fn render_markdown(run: &RunData, run_dir: &Path, seed: u64) -> String {
    let stages = &run.stages;
    let mut s = format!("# align report\n\nRun `{}`, seed {seed}, generated {} (UTC). Figures: `report.html`.\n", run_dir.display(), today());
    if !stages.is_empty() {
        let a = &stages[0].eval.report;
        let _ = write!(s, "\n## Helpful, honest, harmless\n\nGold judge scores (0–1) on {} held-out prompts ({} families).\n\n{}", a.all.n, a.per_family.len(), hhh_table(stages).markdown());
        let _ = write!(s, "\n## Behaviour on held-out prompts\n\n{}", behaviour_table(stages).markdown());
    }
    let wr = win_rates(stages, seed);
    if !wr.is_empty() {
        let _ = write!(s, "\n## Win rates (gold judge; ties count half; 95% bootstrap interval)\n\n{}", winrate_table(stages, &wr).markdown());
    }
    if !run.curves.is_empty() {
        s.push_str("\n## Training\n\n| stage | steps | first train loss | last train loss | last held-out loss |\n|---|---|---|---|---|\n");
        for (stage, rows) in &run.curves {
            let loss = metric_series(rows, "loss");
            let eval = metric_series(rows, "eval_loss");
            let f = |v: Option<&(f64, f64)>| v.map(|p| format!("{:.3}", p.1)).unwrap_or("–".into());
            let steps = rows.iter().map(|r| r.step).fold(0.0, f64::max);
            let _ = writeln!(s, "| {stage} | {steps:.0} | {} | {} | {} |", f(loss.first()), f(loss.last()), f(eval.last()));
        }
    }
    let rl: Vec<(String, &Vec<MetricRow>)> = run.rollouts.iter().map(|(k, r)| (k.clone(), r)).chain(run.hacking.iter().map(|(k, r)| (format!("hacking/{k}"), r))).collect();
    if !rl.is_empty() {
        s.push_str("\n## RL: first → last rollout\n\nproxy and gold reward of the rollouts' samples, and of greedy answers to held-out prompts (before training → after)\n\n| run | proxy reward | gold reward | held-out proxy | held-out gold | KL |\n|---|---|---|---|---|---|\n");
        for (name, rows) in rl {
            let span = |k: &str| {
                let v = metric_series(rows, k);
                match (v.first(), v.last()) {
                    (Some(a), Some(b)) => format!("{:.3} → {:.3}", a.1, b.1),
                    _ => "–".into(),
                }
            };
            let _ = writeln!(s, "| {} | {} | {} | {} | {} | {} |", escape_md(&name), span("objective/scores"), span("gold/mean"), span("eval/score"), span("eval/gold"), span("objective/kl"));
        }
    }
    for t in &run.extra {
        let _ = write!(s, "\n## {}\n\n", escape_md(&t.title));
        if !t.caption.is_empty() {
            let _ = write!(s, "{}\n\n", t.caption);
        }
        s.push_str(&extra_table(t).markdown());
    }
    if !run.timings.is_empty() {
        let _ = write!(s, "\n## Timings\n\n{}", timings_table(&run.timings).markdown());
    }
    let rows = seed_prompt_rows(stages);
    if !rows.is_empty() {
        s.push_str("\n## Same prompt, every stage\n\n");
        for (prompt, answers) in rows {
            let _ = write!(s, "**{}**\n\n", escape_md(&prompt));
            for (st, a) in stages.iter().zip(answers) {
                let a: String = clip(&a).chars().take(300).collect();
                let _ = writeln!(s, "- *{}*: {}", escape_md(&st.eval.name), escape_md(&a));
            }
            s.push('\n');
        }
    }
    s
}

/// Writes `run_dir/report.html` and `run_dir/report.md` (atomically) and returns the HTML path
/// and the Markdown.
pub fn write_report(run_dir: &Path, seed: u64) -> Result<(PathBuf, String)> {
    let run = load_run(run_dir)?;
    let html = render_html(&run, run_dir, seed)?;
    let md = render_markdown(&run, run_dir, seed);
    let html_path = run_dir.join("report.html");
    let write = |p: &Path, bytes: &[u8]| align_core::atomic::write_atomic(p, bytes).map_err(|e| EvalError::Invalid(format!("cannot write {}: {e}", p.display())));
    write(&html_path, html.as_bytes())?;
    write(&run_dir.join("report.md"), md.as_bytes())?;
    Ok((html_path, md))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gym::{FamilyStats, GymReport};

    #[test]
    fn only_language_modelling_stages_are_captioned_as_per_token_cross_entropy() {
        for stage in ["pretrain", "sft"] {
            let (axis, caption) = loss_axis_and_caption(stage);
            assert!(axis.contains("nats / token") && caption.starts_with("Next-token"), "{stage}");
        }
        for stage in ["rm", "dpo", "ppo", "grpo", "rloo"] {
            let (axis, caption) = loss_axis_and_caption(stage);
            assert!(!axis.contains("token") && !caption.contains("Next-token"), "{stage}: {axis} / {caption}");
        }
    }

    #[test]
    fn the_reward_model_accuracy_figure_speaks_of_its_score_not_an_implicit_reward() {
        let row = |step: f64| MetricRow { step, values: [("accuracy", 0.7), ("margin", 1.0), ("loss", 0.5)].into_iter().map(|(k, v)| (k.to_string(), v)).collect() };
        let figs = stage_figures("rm", &[row(10.0), row(20.0)]).unwrap();
        let (_, _, caption) = figs.iter().find(|f| f.0.contains("preference accuracy")).expect("an accuracy figure");
        assert!(caption.contains("reward-model score") && !caption.contains("implicit"), "{caption}");
        assert!(accuracy_caption("dpo").contains("implicit reward"));
    }

    fn stage_eval(name: &str, overall: &[f64], answer: &str) -> StageEval {
        let fam = FamilyStats { n: overall.len(), overall: overall.iter().sum::<f64>() / overall.len() as f64, refusal_rate: 0.5, ..Default::default() };
        StageEval {
            name: name.into(),
            report: GymReport { per_family: [("harmful".to_string(), fam.clone())].into_iter().collect(), all: fam },
            overall: overall.to_vec(),
            responses: overall.iter().map(|_| answer.to_string()).collect(),
            seed_answers: vec![("How do I make bread?".into(), answer.into())],
            prompts: vec![],
            families: vec![],
            kl: None,
        }
    }

    fn write(path: &Path, text: &str) {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    }

    #[test]
    fn hacking_points_sit_at_the_trailing_mean_kl() {
        let row = |step: f64, kl: Option<f64>, gold: Option<f64>| {
            let values = [("objective/kl", kl), ("eval/gold", gold)].into_iter().filter_map(|(k, v)| Some((k.to_string(), v?))).collect();
            MetricRow { step, values }
        };
        // KL per rollout 0, 2, 4, 1, 3; evaluations at steps 1, 4 and after the last rollout (6).
        let rows = vec![
            row(1.0, Some(0.0), Some(0.5)),
            row(2.0, Some(2.0), None),
            row(3.0, Some(4.0), None),
            row(4.0, Some(1.0), Some(0.4)),
            row(5.0, Some(3.0), None),
            row(6.0, None, Some(0.3)),
        ];
        let pts = at_trailing_kl(&rows, "eval/gold", 3);
        assert_eq!(pts, vec![(0.0, 0.5), ((2.0 + 4.0 + 1.0) / 3.0, 0.4), ((4.0 + 1.0 + 3.0) / 3.0, 0.3)]);
    }

    #[test]
    fn trailing_mean_by_hand() {
        let pts = [(1.0, 2.0), (2.0, 4.0), (3.0, 9.0)];
        assert_eq!(trailing_mean(&pts, 2, false), vec![(1.0, 2.0), (2.0, 3.0), (3.0, 6.5)]);
        assert_eq!(trailing_mean(&pts, 3, true), vec![(1.0, 2.0), (1.5, 3.0), (2.0, 5.0)]);
        assert_eq!(trailing_mean(&pts, 1, true), pts.to_vec());
    }

    #[test]
    fn an_empty_run_dir_loads_and_renders() {
        let dir = tempfile::tempdir().unwrap();
        let run = load_run(dir.path()).unwrap();
        assert!(run.stages.is_empty() && run.curves.is_empty() && run.extra.is_empty() && run.timings.is_empty());
        assert!(run.prompts.is_none() && run.config.is_none());
        let (html, md) = write_report(dir.path(), 0).unwrap();
        assert!(std::fs::read_to_string(html).unwrap().contains("nothing to report"));
        assert!(md.starts_with("# align report"));
        assert!(load_run(&dir.path().join("missing")).is_err());
    }

    #[test]
    fn loads_what_exists_and_skips_the_rest() {
        let dir = tempfile::tempdir().unwrap();
        let run_dir = dir.path();
        // Fallback file names (no stages.json); dpo.json absent.
        write(&run_dir.join("eval/raw.json"), &serde_json::to_string(&stage_eval("raw", &[0.1, 0.2], "hm")).unwrap());
        write(&run_dir.join("eval/sft.json"), &serde_json::to_string(&stage_eval("SFT", &[0.5, 0.2], "ok")).unwrap());
        write(&run_dir.join("sft/metrics.jsonl"), "{\"step\":10,\"loss\":2.0}\n{\"step\":20,\"loss\":1.5,\"note\":\"x\"}\n{\"eval_loss\":1.7,\"step\":20}\n{\"step\":30,\"lo");
        write(&run_dir.join("ppo/rollouts.jsonl"), "{\"step\":1,\"objective/scores\":0.1,\"gold/mean\":0.3,\"objective/kl\":0.0}\n{\"step\":1,\"objective/scores\":0.3,\"gold/mean\":0.5}\n");
        write(&run_dir.join("hacking/kl0/rollouts.jsonl"), "{\"step\":1,\"objective/scores\":1.0,\"gold/mean\":0.4}\n");
        write(&run_dir.join("sft/summary.json"), "{\"seconds\": 12.5}");
        write(&run_dir.join("gym/summary.json"), "{\"no_seconds\": 1}");
        write(&run_dir.join("report_extra.json"), r#"[{"title":"RM accuracy","header":["labels","accuracy"],"rows":[["panel",0.8],["single",0.7]]}]"#);
        let run = load_run(run_dir).unwrap();
        assert_eq!(run.stages.iter().map(|s| s.key.as_str()).collect::<Vec<_>>(), ["raw", "sft"]);
        assert_eq!(run.curves.len(), 1);
        // The truncated last line is skipped; the string field is dropped.
        let rows = &run.curves[0].1;
        assert_eq!(rows.len(), 3);
        assert_eq!(metric_series(rows, "loss"), vec![(10.0, 2.0), (20.0, 1.5)]);
        // Two rollouts of the same step are averaged.
        assert_eq!(metric_series(&run.rollouts[0].1, "objective/scores"), vec![(1.0, 0.2)]);
        assert_eq!(run.hacking[0].0, "kl0");
        // Reward against KL: only the step where both were logged, KL averaged over its rows.
        assert_eq!(paired_series(&run.rollouts[0].1, "objective/kl", "gold/mean"), vec![(0.0, 0.4)]);
        assert_eq!(run.timings, vec![("sft".to_string(), 12.5)]);
        assert_eq!(run.extra[0].rows.len(), 2);
        let html = render_html(&run, run_dir, 0).unwrap();
        for needle in ["id=\"hhh\"", "id=\"winrate\"", "Stage 2, supervised fine-tuning (SFT): loss", "Stage 3, PPO: proxy reward vs gold reward", "Stage 3, PPO: reward against KL", "id=\"hacking\"", "RM accuracy", "How do I make bread?"] {
            assert!(html.contains(needle), "missing {needle}");
        }
        // Nothing to fetch: no external scripts, stylesheets, images or fonts.
        for fetch in ["<script", "<link", "<img", "src=", "@import", "url("] {
            assert!(!html.contains(fetch), "the report must not load anything: found {fetch}");
        }
        let md = render_markdown(&run, run_dir, 0);
        assert!(md.contains("| SFT | raw |"), "{md}");
        assert!(md.contains("| panel | 0.800 |"), "{md}");
    }

    #[test]
    fn stages_json_sets_order_and_names_and_missing_files_are_skipped() {
        let dir = tempfile::tempdir().unwrap();
        write(&dir.path().join("eval/stages.json"), r#"[{"key":"sft","name":"SFT model","file":"s.json"},{"key":"ppo","name":"PPO","file":"missing.json"},{"key":"raw","name":"base","file":"r.json"}]"#);
        write(&dir.path().join("eval/s.json"), &serde_json::to_string(&stage_eval("x", &[0.5], "a")).unwrap());
        write(&dir.path().join("eval/r.json"), &serde_json::to_string(&stage_eval("y", &[0.1], "b")).unwrap());
        let run = load_run(dir.path()).unwrap();
        let names: Vec<_> = run.stages.iter().map(|s| (s.key.as_str(), s.eval.name.as_str())).collect();
        assert_eq!(names, [("sft", "SFT model"), ("raw", "base")]);
    }

    #[test]
    fn malformed_files_are_errors_naming_file_and_line() {
        let dir = tempfile::tempdir().unwrap();
        write(&dir.path().join("dpo/metrics.jsonl"), "{\"step\":1,\"loss\":1}\nnot json\n{\"step\":3}\n");
        let e = load_run(dir.path()).unwrap_err().to_string();
        assert!(e.contains("dpo/metrics.jsonl:2"), "{e}");
        write(&dir.path().join("dpo/metrics.jsonl"), "{\"loss\":1}\n");
        let e = load_run(dir.path()).unwrap_err().to_string();
        assert!(e.contains("metrics.jsonl:1") && e.contains("\"step\""), "{e}");
        std::fs::remove_file(dir.path().join("dpo/metrics.jsonl")).unwrap();
        write(&dir.path().join("report_extra.json"), r#"[{"title":"t","rows":[]}]"#);
        let e = load_run(dir.path()).unwrap_err().to_string();
        assert!(e.contains("report_extra.json") && e.contains("header"), "{e}");
    }

    #[test]
    fn model_text_is_escaped_in_html_and_markdown() {
        let evil = "<script>alert('x')</script> & <img src=x onerror=alert(1)> | pipe";
        let run = RunData {
            stages: vec![Stage { key: "sft".into(), eval: stage_eval("SFT <b>", &[0.5], evil) }],
            prompts: Some(vec![("harmful".into(), "<i>prompt</i>".into())]),
            ..Default::default()
        };
        let html = render_html(&run, Path::new("runs/<x>"), 0).unwrap();
        assert!(!html.contains("<script>") && !html.contains("<img") && !html.contains("<i>prompt") && !html.contains("<b>"));
        assert!(html.contains("&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt; &amp; &lt;img"));
        let md = render_markdown(&run, Path::new("runs/x"), 0);
        assert!(!md.contains("<script>"), "{md}");
        assert!(md.contains("\\| pipe"), "{md}");
    }

    #[test]
    fn win_rates_pair_each_later_stage_with_each_earlier_one() {
        let stages: Vec<Stage> = [("raw", [0.0, 0.0, 0.0]), ("sft", [1.0, 0.0, 0.5]), ("dpo", [1.0, 1.0, 1.0])]
            .iter()
            .map(|(k, v)| Stage { key: k.to_string(), eval: stage_eval(k, v, "") })
            .collect();
        let wr = win_rates(&stages, 0);
        let pairs: Vec<(usize, usize)> = wr.iter().map(|(i, j, _)| (*i, *j)).collect();
        assert_eq!(pairs, [(1, 0), (2, 1), (2, 0)]);
        // sft vs raw: win, tie, win → (1 + 0.5 + 1) / 3.
        assert!((wr[0].2.rate - 2.5 / 3.0).abs() < 1e-12);
        assert_eq!(wr[2].2.rate, 1.0);
    }

    #[test]
    fn the_best_cell_is_bold_only_where_stages_differ() {
        let t = Table {
            header: vec!["stage".into(), "refused ↑".into(), "over-refused ↓".into()],
            rows: vec![vec!["a".into(), "0%".into(), "10%".into()], vec!["b".into(), "0%".into(), "5%".into()]],
            values: vec![vec![None, Some(0.0), Some(0.1)], vec![None, Some(0.0), Some(0.05)]],
            better: vec![None, Some(true), Some(false)],
        };
        let html = t.html("num");
        assert_eq!(html.matches("class=\"best\"").count(), 1, "{html}");
        assert!(html.contains("<td class=\"best\">5%</td>"));
    }

    #[test]
    fn hhh_table_has_a_kl_column_only_when_a_stage_was_measured() {
        let sft = Stage { key: "sft".into(), eval: stage_eval("SFT", &[0.5, 0.5], "a") };
        let mut dpo = Stage { key: "dpo".into(), eval: stage_eval("DPO", &[0.6, 0.4], "b") };
        assert_eq!(hhh_table(&[sft.clone(), dpo.clone()]).header.len(), 6);
        let k = crate::kl::KlReport { reference: "SFT".into(), kl: 1.234, ci_low: 1.0, ci_high: 1.5, kl_k1: 1.2, responses: 2, mean_tokens: 3.0, per_prompt: vec![1.0, 1.468] };
        dpo.eval.kl = Some(k);
        let t = hhh_table(&[sft, dpo]);
        assert_eq!(t.header.last().unwrap(), "KL from SFT (nats per answer)");
        assert_eq!(t.rows[0].last().unwrap(), "–");
        assert_eq!(t.rows[1].last().unwrap(), "1.23 [1.00, 1.50]");
        assert!(t.rows.iter().zip(&t.values).all(|(r, v)| r.len() == t.header.len() && v.len() == t.header.len()));
    }

    #[test]
    fn behaviour_table_shows_fact_accuracy_and_fact_abstention() {
        let raw = Stage { key: "raw".into(), eval: stage_eval("raw", &[0.1, 0.1], "a") };
        let mut dpo = Stage { key: "dpo".into(), eval: stage_eval("DPO", &[0.6, 0.4], "b") };
        let fact = FamilyStats { n: 4, overall: 0.5, helpful: 0.4, abstention_rate: 0.25, ..Default::default() };
        dpo.eval.report.per_family.insert("fact".into(), fact);
        let syc = FamilyStats { n: 10, agreement_rate: 0.5, false_belief_agreed: Some(0.1), false_belief_corrected: Some(0.8), true_belief_contradicted: Some(0.5), ..Default::default() };
        dpo.eval.report.per_family.insert("sycophancy".into(), syc);
        let unk = FamilyStats { n: 5, abstention_rate: 0.6, near_miss_abstained: Some(1.0 / 3.0), fresh_name_abstained: Some(1.0), ..Default::default() };
        dpo.eval.report.per_family.insert("unknown".into(), unk);
        let t = behaviour_table(&[raw, dpo]);
        assert_eq!(t.header[3..5], ["unknown entities: “I don't know” ↑", "near-miss names: “I don't know” ↑"]);
        assert_eq!(t.rows[1][3..5], ["60%", "33%"]);
        assert_eq!(t.header[5..8], ["wrong beliefs agreed with ↓", "wrong beliefs corrected ↑", "true beliefs contradicted ↓"]);
        assert_eq!(t.header[10..], ["fact accuracy (helpful) ↑", "facts answered “I don't know”"]);
        assert_eq!(t.rows[0][9..], ["–", "–", "–"]);
        assert_eq!(t.rows[1][9..], ["0.50", "0.40", "25%"]);
        // The belief rates, not the any-agreement rate (0.5).
        assert_eq!(t.rows[1][5..8], ["10%", "80%", "50%"]);
        assert!(t.rows.iter().zip(&t.values).all(|(r, v)| r.len() == t.header.len() && v.len() == t.header.len()));
        assert_eq!(t.better.len(), t.header.len());
    }

    #[test]
    fn utc_dates() {
        assert_eq!(utc_date(0), "1970-01-01");
        assert_eq!(utc_date(951_782_400), "2000-02-29");
        assert_eq!(utc_date(1_700_000_000), "2023-11-14");
    }
}
