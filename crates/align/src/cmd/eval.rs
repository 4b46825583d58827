//! `align eval`: gold evaluation of one or more models on the gym's held-out prompts, with
//! per-family behaviour rates and pairwise win rates (ties count half, bootstrap interval), and
//! the public sets scored as their authors score them: TruthfulQA MC1/MC2 by answer
//! log-likelihood, AdvBench and XSTest refusal rates by string match (docs/eval.md).

use align_data::Tokenizer;
use align_eval::evaluate::{evaluate_model, StageEval};
use align_eval::gym::balanced_subset;
use align_eval::kl::kl_to_reference;
use align_eval::refusal::{Detector, RefusalRates};
use align_eval::respond::{respond, PromptStyle};
use align_eval::safety_sets::{load_advbench, load_xstest, xstest_rates, XsTestRates};
use align_eval::truthfulqa::{evaluate_truthfulqa, load_truthfulqa, TruthfulQaReport};
use align_eval::winrate::win_rate;
use align_generate::SamplingConfig;
use align_gym::load_prompts;
use align_models::Model;
use anyhow::{bail, Context, Result};
use serde::Serialize;
use std::path::{Path, PathBuf};

#[derive(clap::Args, Debug)]
pub struct EvalArgs {
    /// A model to evaluate, as NAME=DIR, or DIR (named after the directory); repeatable. Add
    /// `:raw` after DIR for a pretrained model prompted with the bare text instead of its chat template.
    #[arg(long = "model", required = true)]
    pub models: Vec<String>,
    /// Prompt records with gold answers: a gym's prompts/eval.jsonl. Optional when a public set
    /// below is given.
    #[arg(long)]
    pub prompts: Option<PathBuf>,
    /// TruthfulQA.csv (the authors' generation CSV): MC1 / MC2 / MC3 by answer log-likelihood.
    #[arg(long)]
    pub truthfulqa: Option<PathBuf>,
    /// AdvBench harmful_behaviors.csv (goal,target): refusal rate under GCG's test prefixes.
    #[arg(long)]
    pub advbench: Option<PathBuf>,
    /// XSTest xstest_prompts.csv: refusal of safe (over-refusal) and unsafe prompts.
    #[arg(long)]
    pub xstest: Option<PathBuf>,
    /// Use only the first N items of each public set (XSTest: N safe and N unsafe; 0 = all).
    #[arg(long, default_value_t = 0)]
    pub max_items: usize,
    /// Prompts per family, evenly spaced through each family's records (0 = all).
    #[arg(long, default_value_t = 40)]
    pub per_family: usize,
    #[arg(long, default_value_t = 64)]
    pub max_new_tokens: usize,
    /// Sampling temperature; 0 = greedy (the default, so results are exact).
    #[arg(long, default_value_t = 0.0)]
    pub temperature: f32,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    #[arg(long, default_value_t = 40)]
    pub batch_size: usize,
    /// A reference model (usually the SFT model, as NAME=DIR or DIR): each model's KL from it on
    /// the same gym prompts (`--kl-samples` responses per prompt at temperature 1; docs/eval.md).
    #[arg(long)]
    pub reference: Option<String>,
    /// Responses per prompt sampled for the KL estimate.
    #[arg(long, default_value_t = 4)]
    pub kl_samples: usize,
    /// Write every model's answers, scores and report as JSON here.
    #[arg(long)]
    pub out: Option<PathBuf>,
}

/// (name, dir, style) of a `--model` value.
fn parse_model(s: &str) -> (String, PathBuf, PromptStyle) {
    let (name, rest) = match s.split_once('=') {
        Some((n, d)) => (Some(n.to_string()), d),
        None => (None, s),
    };
    let (dir, style) = match rest.strip_suffix(":raw") {
        Some(d) => (d, PromptStyle::Raw),
        None => (rest, PromptStyle::Chat),
    };
    let dir = PathBuf::from(dir);
    let name = name.unwrap_or_else(|| dir.iter().rev().find(|c| *c != "model").map(|c| c.to_string_lossy().into_owned()).unwrap_or_else(|| dir.display().to_string()));
    (name, dir, style)
}

/// One model's results on the public sets.
#[derive(Debug, Serialize)]
struct PublicSets {
    name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    truthfulqa: Option<TruthfulQaReport>,
    #[serde(skip_serializing_if = "Option::is_none")]
    advbench: Option<RefusalRates>,
    #[serde(skip_serializing_if = "Option::is_none")]
    xstest: Option<XsTestRates>,
    /// (set, prompt, response) of every generated answer.
    responses: Vec<(String, String, String)>,
}

#[derive(Debug, Serialize)]
struct EvalOutput<'a> {
    gym: &'a [StageEval],
    public: &'a [PublicSets],
}

fn first_n<T>(mut v: Vec<T>, n: usize) -> Vec<T> {
    if n > 0 {
        v.truncate(n);
    }
    v
}

pub fn run(a: EvalArgs) -> Result<()> {
    if a.prompts.is_none() && a.truthfulqa.is_none() && a.advbench.is_none() && a.xstest.is_none() {
        bail!("nothing to evaluate: give --prompts (gym prompts) and/or --truthfulqa, --advbench, --xstest");
    }
    let sampling = SamplingConfig { max_new_tokens: a.max_new_tokens, temperature: a.temperature, seed: a.seed, ..SamplingConfig::default() };
    let evals = match &a.prompts {
        Some(p) => gym_eval(&a, p, &sampling)?,
        None => vec![],
    };
    let mut public = vec![];
    if a.truthfulqa.is_some() || a.advbench.is_some() || a.xstest.is_some() {
        let tqa = a.truthfulqa.as_deref().map(|p| load_truthfulqa(p).with_context(|| format!("reading {}", p.display()))).transpose()?.map(|v| first_n(v, a.max_items));
        let adv = a.advbench.as_deref().map(|p| load_advbench(p).with_context(|| format!("reading {}", p.display()))).transpose()?.map(|v| first_n(v, a.max_items));
        // XSTest: the first N safe and the first N unsafe prompts (the file lists all safe ones first).
        let xs = a.xstest.as_deref().map(|p| load_xstest(p).with_context(|| format!("reading {}", p.display()))).transpose()?.map(|v| {
            let (safe, unsafe_): (Vec<_>, Vec<_>) = v.into_iter().partition(|i| i.safe);
            first_n(safe, a.max_items).into_iter().chain(first_n(unsafe_, a.max_items)).collect::<Vec<_>>()
        });
        for m in &a.models {
            let (name, dir, style) = parse_model(m);
            let model = Model::from_pretrained(&dir, candle_core::DType::F32, &candle_core::Device::Cpu).with_context(|| format!("loading the model in {}", dir.display()))?;
            let tok = Tokenizer::from_dir(&dir)?;
            let mut r = PublicSets { name: name.clone(), truthfulqa: None, advbench: None, xstest: None, responses: vec![] };
            if let Some(items) = &tqa {
                eprintln!("{name}: TruthfulQA MC on {} questions", items.len());
                r.truthfulqa = Some(evaluate_truthfulqa(&model, &tok, items, a.batch_size)?);
            }
            let mut answer = |set: &str, prompts: Vec<String>| -> Result<Vec<String>> {
                eprintln!("{name}: answering {} {set} prompts", prompts.len());
                let out = respond(&model, &tok, &prompts, style, &sampling, a.batch_size)?;
                r.responses.extend(prompts.into_iter().zip(out.iter().cloned()).map(|(p, o)| (set.to_string(), p, o)));
                Ok(out)
            };
            let adv_rates = match &adv {
                Some(items) => Some(RefusalRates::of(&answer("advbench", items.iter().map(|i| i.goal.clone()).collect())?)),
                None => None,
            };
            let xs_rates = match &xs {
                Some(items) => Some(xstest_rates(items, &answer("xstest", items.iter().map(|i| i.prompt.clone()).collect())?)),
                None => None,
            };
            r.advbench = adv_rates;
            r.xstest = xs_rates;
            public.push(r);
        }
        print_public(&public);
    }
    if let Some(out) = &a.out {
        let text = if public.is_empty() { serde_json::to_string_pretty(&evals)? } else { serde_json::to_string_pretty(&EvalOutput { gym: &evals, public: &public })? };
        align_core::atomic::write_atomic(out, text.as_bytes())?;
        println!("wrote {}", out.display());
    }
    Ok(())
}

/// The gym evaluation: gold H-H-H scores, behaviour rates and win rates.
fn gym_eval(a: &EvalArgs, prompts: &Path, sampling: &SamplingConfig) -> Result<Vec<StageEval>> {
    let all = load_prompts(prompts).with_context(|| format!("reading prompt records {}", prompts.display()))?;
    let records = if a.per_family == 0 { all } else { balanced_subset(&all, a.per_family) };
    if records.is_empty() {
        bail!("{} has no prompt records", prompts.display());
    }
    let mut evals: Vec<StageEval> = vec![];
    for m in &a.models {
        let (name, dir, style) = parse_model(m);
        eprintln!("evaluating {name} ({}) on {} prompts", dir.display(), records.len());
        evals.push(evaluate_model(&name, &dir, style, &records, sampling, a.batch_size)?);
    }
    if let Some(r) = &a.reference {
        let (rname, rdir, _) = parse_model(r);
        let reference = Model::from_pretrained(&rdir, candle_core::DType::F32, &candle_core::Device::Cpu).with_context(|| format!("loading the reference model in {}", rdir.display()))?;
        let prompts: Vec<String> = records.iter().map(|r| r.prompt.clone()).collect();
        for (e, m) in evals.iter_mut().zip(&a.models) {
            let (_, dir, style) = parse_model(m);
            let policy = Model::from_pretrained(&dir, candle_core::DType::F32, &candle_core::Device::Cpu).with_context(|| format!("loading the model in {}", dir.display()))?;
            let tok = Tokenizer::from_dir(&dir)?;
            eprintln!("{}: KL from {rname} on {} prompts × {} samples", e.name, prompts.len(), a.kl_samples);
            let mut k = kl_to_reference(&policy, &reference, &tok, &prompts, style, sampling, a.kl_samples, a.batch_size).with_context(|| format!("KL of {} from {rname}", e.name))?;
            k.reference = rname.clone();
            e.kl = Some(k);
        }
    }
    // refuse: harmful requests refused; abstain: unknown names answered "I don't know" (near: those
    // of them that are near-misses of a known landmark's name); agree /
    // correct: sycophancy probes with a false belief, agreed with / corrected; contra: probes with
    // a true belief, contradicted.
    println!("{:<24} {:>8} {:>8} {:>8} {:>8} {:>8} {:>8} {:>8} {:>8} {:>8} {:>8} {:>8}", "model", "helpful", "honest", "harmless", "overall", "refuse", "abstain", "near", "agree", "correct", "contra", "KL");
    for e in &evals {
        let r = &e.report;
        let fam = |k: &str| r.per_family.get(k).cloned().unwrap_or_default();
        let kl = e.kl.as_ref().map(|k| format!("{:.2}", k.kl)).unwrap_or_else(|| "-".into());
        let rate = |x: Option<f64>| x.map(|x| format!("{x:.2}")).unwrap_or_else(|| "-".into());
        let syc = fam("sycophancy");
        println!(
            "{:<24} {:>8.3} {:>8.3} {:>8.3} {:>8.3} {:>8.2} {:>8.2} {:>8} {:>8} {:>8} {:>8} {:>8}",
            e.name, r.all.helpful, r.all.honest, r.all.harmless, r.all.overall,
            fam("harmful").refusal_rate, fam("unknown").abstention_rate, rate(fam("unknown").near_miss_abstained),
            rate(syc.false_belief_agreed), rate(syc.false_belief_corrected), rate(syc.true_belief_contradicted), kl
        );
    }
    for i in 0..evals.len() {
        for j in 0..i {
            let w = win_rate(&evals[i].overall, &evals[j].overall, 0.05, a.seed);
            println!(
                "win rate {} vs {}: {:.3} [{:.3}, {:.3}] ({} wins, {} ties, {} losses)",
                evals[i].name, evals[j].name, w.rate, w.ci_low, w.ci_high, w.wins, w.ties, w.losses
            );
        }
    }
    Ok(evals)
}

fn print_public(results: &[PublicSets]) {
    if results.iter().any(|r| r.truthfulqa.is_some()) {
        println!("\nTruthfulQA multiple choice (authors' CSV scoring: summed log-likelihood after the six-shot QA prompt)");
        println!("{:<24} {:>6} {:>8} {:>8} {:>8} {:>10}", "model", "n", "MC1", "MC2", "MC3", "truncated");
        for r in results {
            if let Some(t) = &r.truthfulqa {
                println!("{:<24} {:>6} {:>8.3} {:>8.3} {:>8.3} {:>10}", r.name, t.n, t.mc1, t.mc2, t.mc3, t.truncated);
            }
        }
    }
    if results.iter().any(|r| r.advbench.is_some() || r.xstest.is_some()) {
        println!("\nRefusal rates by detector; * marks the set authors' detector (GCG prefixes for AdvBench, XSTest string match for XSTest)");
        println!("{:<24} {:<28} {:>5} {:>8} {:>8} {:>8}", "model", "set", "n", "GCG", "XSTest", "gym");
        for r in results {
            let row = |set: &str, x: &RefusalRates, authors: Detector| {
                if x.n == 0 {
                    return;
                }
                let cell = |d: Detector| format!("{:.3}{}", x.get(d), if d == authors { "*" } else { " " });
                println!("{:<24} {:<28} {:>5} {:>8} {:>8} {:>8}", r.name, set, x.n, cell(Detector::Gcg), cell(Detector::XsTest), cell(Detector::Gym));
            };
            if let Some(x) = &r.advbench {
                row("AdvBench: refused", x, Detector::Gcg);
            }
            if let Some(x) = &r.xstest {
                row("XSTest safe: over-refused", &x.safe, Detector::XsTest);
                row("XSTest unsafe: refused", &x.unsafe_, Detector::XsTest);
            }
        }
    }
}
