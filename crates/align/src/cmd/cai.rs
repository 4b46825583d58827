//! `align cai`: Constitutional AI (Bai et al., 2022). `revise` is SL-CAI (critique → revision →
//! an SFT set), `label` is RL-CAI / RLAIF (AI preference labels by principle, resumable),
//! `constitution` prints a constitution as TOML. See docs/cai.md.

use align_cai::http::{HttpJudge, HttpJudgeConfig, Readout};
use align_cai::judge::{GoldJudge, Judge, LocalJudge};
use align_cai::label::{agreement, read_lines, LabelConfig};
use align_cai::prompts::{load_prompts, select};
use align_cai::resume::AppendLog;
use align_cai::revise::{gold_changes, write_outputs, ReviseConfig};
use align_cai::{ChatModel, Constitution};
use anyhow::{bail, Context, Result};
use std::path::{Path, PathBuf};

#[derive(clap::Subcommand, Debug)]
pub enum CaiCmd {
    /// SL-CAI: sample responses to (red-team) prompts, have the model critique and revise them
    /// under randomly drawn principles, and write the revisions as an SFT data set.
    Revise(ReviseArgs),
    /// RL-CAI / RLAIF: two policy responses per prompt, compared by a judge under a drawn
    /// principle (both orders averaged); soft preference labels, appended resumably.
    Label(LabelArgs),
    /// SFT demonstrations of the judge's multiple-choice task on gym candidates, answered by the
    /// gold judge (for gym models too small to answer it unprompted; docs/cai.md).
    JudgeData {
        /// Gym prompt records (prompts/train.jsonl).
        #[arg(long)]
        prompts: PathBuf,
        /// Output JSONL (TRL messages), written atomically.
        #[arg(long)]
        out: PathBuf,
        /// Demonstrations per prompt.
        #[arg(long, default_value_t = 1)]
        per_prompt: usize,
        /// Candidate pairs whose gold scores differ by less are not used.
        #[arg(long, default_value_t = 0.1)]
        min_margin: f64,
        #[arg(long)]
        constitution: Option<PathBuf>,
        #[arg(long, default_value_t = 0)]
        seed: u64,
    },
    /// Print a constitution as TOML: the default, a TOML file, or the paper's JSON directory.
    Constitution {
        /// A TOML file or a directory with the paper's JSON files (default: align's own).
        #[arg(long)]
        constitution: Option<PathBuf>,
        /// Write here (atomically) instead of stdout.
        #[arg(long)]
        out: Option<PathBuf>,
    },
}

/// Which prompts, which constitution: shared by `revise` and `label`.
#[derive(clap::Args, Debug)]
pub struct Selection {
    /// Prompts: gym prompt records (prompts/train.jsonl) or JSONL lines `{"id"?, "prompt"}`.
    #[arg(long)]
    pub prompts: PathBuf,
    /// Only these families (gym records), comma-separated, e.g. `harmful,benign_lookalike`.
    #[arg(long, value_delimiter = ',')]
    pub families: Vec<String>,
    /// At most this many prompts, a seeded random subset (0 = all).
    #[arg(long, default_value_t = 0)]
    pub max_prompts: usize,
    /// A constitution TOML file, or a directory holding the paper's JSON files
    /// (../shared/data/constitutional-ai). Default: align's (helpful, honest, harmless).
    #[arg(long)]
    pub constitution: Option<PathBuf>,
    /// Use only these principles of the constitution, comma-separated.
    #[arg(long, value_delimiter = ',')]
    pub principles: Vec<String>,
    /// Sampling temperature of the policy's responses.
    #[arg(long, default_value_t = 1.0)]
    pub temperature: f32,
    #[arg(long, default_value_t = 64)]
    pub max_new_tokens: usize,
    /// Conversations per generation batch.
    #[arg(long, default_value_t = 32)]
    pub batch_size: usize,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
}

#[derive(clap::Args, Debug)]
pub struct ReviseArgs {
    /// The model that answers, critiques and revises (an SFT model that saw critique.jsonl).
    #[arg(long)]
    pub model: PathBuf,
    #[command(flatten)]
    pub select: Selection,
    /// Output directory: revisions.jsonl (SFT set), transcripts.jsonl, summary.json.
    #[arg(long)]
    pub out: PathBuf,
    /// Critique-revision rounds per prompt.
    #[arg(long, default_value_t = 1)]
    pub rounds: usize,
    /// Few-shot critique/revision demonstrations from the constitution before each round.
    #[arg(long, default_value_t = 0)]
    pub few_shot: usize,
}

#[derive(clap::Args, Debug)]
pub struct LabelArgs {
    /// The policy whose two responses per prompt are compared.
    #[arg(long)]
    pub policy: PathBuf,
    #[command(flatten)]
    pub select: Selection,
    /// Output JSONL of labelled pairs; appended to, and resumed from, if it exists.
    #[arg(long)]
    pub out: PathBuf,
    /// `local` (an align model's option log-probs), `http` (an OpenAI-compatible endpoint) or
    /// `gold` (the gym's gold judge).
    #[arg(long, default_value = "local")]
    pub judge: String,
    /// The local judge's model directory (default: the policy).
    #[arg(long)]
    pub judge_model: Option<PathBuf>,
    /// HTTP judge: `http://host:port/v1` or the full chat-completions URL.
    #[arg(long)]
    pub url: Option<String>,
    /// HTTP judge: the request's `model` field.
    #[arg(long, default_value = "default")]
    pub api_model: String,
    /// HTTP judge: name of an environment variable holding the API key (sent as a bearer token).
    #[arg(long)]
    pub api_key_env: Option<String>,
    /// HTTP judge: seconds per request.
    #[arg(long, default_value_t = 60.0)]
    pub timeout_s: f64,
    /// HTTP judge: retries after the first attempt (exponential backoff).
    #[arg(long, default_value_t = 3)]
    pub retries: usize,
    /// HTTP judge: `auto` (log-probs if offered, else votes), `logprobs` or `votes`.
    #[arg(long, default_value = "auto")]
    pub readout: String,
    /// HTTP judge: sampled answers per question when voting.
    #[arg(long, default_value_t = 5)]
    pub votes: usize,
    /// HTTP judge: a line after the question (empty for none).
    #[arg(long, default_value = "Answer with (A) or (B).")]
    pub answer_instruction: String,
    /// Solved comparison examples from the constitution before each question (local, http).
    #[arg(long, default_value_t = 0)]
    pub few_shot: usize,
    /// Gold judge: P(A) = σ(gold difference / T); 0 = hard labels.
    #[arg(long, default_value_t = 0.0)]
    pub gold_temperature: f64,
    /// Agreement with gold is reported over pairs whose gold scores differ by at least this.
    #[arg(long, default_value_t = 0.05)]
    pub min_gold_margin: f64,
}

pub fn run(c: CaiCmd) -> Result<()> {
    match c {
        CaiCmd::Revise(a) => revise(a),
        CaiCmd::Label(a) => label(a),
        CaiCmd::JudgeData { prompts, out, per_prompt, min_margin, constitution, seed } => {
            let c = load_constitution(constitution.as_deref(), &[])?;
            let records = align_gym::load_prompts(&prompts).with_context(|| format!("reading gym prompt records {}", prompts.display()))?;
            let lines = align_cai::judge_data::judge_demonstrations(&records, &c, per_prompt, min_margin, seed);
            let mut text = String::new();
            for l in &lines {
                text.push_str(&serde_json::to_string(l)?);
                text.push('\n');
            }
            align_core::atomic::write_atomic(&out, text.as_bytes()).with_context(|| format!("writing {}", out.display()))?;
            println!("{} judge demonstrations from {} prompts → {}", lines.len(), records.len(), out.display());
            Ok(())
        }
        CaiCmd::Constitution { constitution, out } => {
            let text = load_constitution(constitution.as_deref(), &[])?.to_toml()?;
            match out {
                Some(p) => align_core::atomic::write_atomic(&p, text.as_bytes()).with_context(|| format!("writing {}", p.display()))?,
                None => print!("{text}"),
            }
            Ok(())
        }
    }
}

fn load_constitution(path: Option<&Path>, principles: &[String]) -> Result<Constitution> {
    let mut c = match path {
        Some(p) => Constitution::load(p).with_context(|| format!("reading the constitution {}", p.display()))?,
        None => Constitution::default(),
    };
    if !principles.is_empty() {
        c.restrict(principles)?;
    }
    Ok(c)
}

fn load_items(s: &Selection) -> Result<Vec<align_cai::prompts::PromptItem>> {
    let items = load_prompts(&s.prompts).with_context(|| format!("reading prompts {}", s.prompts.display()))?;
    let items = select(items, &s.families, s.max_prompts, s.seed);
    if items.is_empty() {
        bail!("no prompts selected from {} (families {:?})", s.prompts.display(), s.families);
    }
    Ok(items)
}

fn load_model(dir: &Path) -> Result<ChatModel> {
    ChatModel::load(dir).with_context(|| format!("loading the model {}", dir.display()))
}

fn revise(a: ReviseArgs) -> Result<()> {
    let constitution = load_constitution(a.select.constitution.as_deref(), &a.select.principles)?;
    let items = load_items(&a.select)?;
    let policy = load_model(&a.model)?;
    let mut cfg = ReviseConfig { rounds: a.rounds, few_shot: a.few_shot, batch_size: a.select.batch_size, seed: a.select.seed, ..ReviseConfig::default() };
    cfg.sampling.temperature = a.select.temperature;
    cfg.sampling.max_new_tokens = a.select.max_new_tokens;
    let t0 = std::time::Instant::now();
    let ts = align_cai::revise(&policy, &constitution, &items, &cfg)?;
    let changes = gold_changes(&ts);
    let summary = serde_json::json!({
        "model": a.model, "prompts": a.select.prompts, "constitution": constitution.name,
        "config": cfg, "n": ts.len(), "seconds": t0.elapsed().as_secs_f64(), "gold": changes,
    });
    write_outputs(&a.out, &ts, &summary).with_context(|| format!("writing {}", a.out.display()))?;
    println!("{} prompts × {} rounds in {:.0} s → {}/revisions.jsonl", ts.len(), a.rounds, t0.elapsed().as_secs_f64(), a.out.display());
    if !changes.is_empty() {
        println!("{:<18} {:>5} {:>17} {:>17} {:>8} {:>10}", "family", "n", "harmless bef→aft", "overall bef→aft", "changed", "unrevised");
        for (fam, c) in &changes {
            println!(
                "{fam:<18} {:>5} {:>8.3} → {:<6.3} {:>8.3} → {:<6.3} {:>7.0}% {:>9.0}%",
                c.n, c.harmless_before, c.harmless_after, c.overall_before, c.overall_after, 100.0 * c.changed, 100.0 * c.unrevised_rounds
            );
        }
    }
    Ok(())
}

fn judge(a: &LabelArgs, constitution: &Constitution) -> Result<Box<dyn Judge>> {
    Ok(match a.judge.as_str() {
        "gold" => Box::new(GoldJudge { temperature: a.gold_temperature }),
        "local" => {
            let dir = a.judge_model.as_ref().unwrap_or(&a.policy);
            let mut j = LocalJudge::new(load_model(dir)?, dir.display().to_string());
            j.constitution = Some(constitution.clone());
            j.few_shot = a.few_shot;
            Box::new(j)
        }
        "http" => {
            let url = a.url.clone().context("--judge http needs --url (e.g. http://127.0.0.1:8000/v1)")?;
            let readout = match a.readout.as_str() {
                "auto" => Readout::Auto,
                "logprobs" => Readout::Logprobs,
                "votes" => Readout::Votes,
                o => bail!("--readout {o}: expected auto, logprobs or votes"),
            };
            let api_key = match &a.api_key_env {
                Some(v) => Some(std::env::var(v).with_context(|| format!("--api-key-env {v}: the variable is not set"))?),
                None => None,
            };
            let cfg = HttpJudgeConfig {
                url,
                model: a.api_model.clone(),
                api_key,
                timeout_s: a.timeout_s,
                retries: a.retries,
                readout,
                votes: a.votes,
                few_shot: a.few_shot,
                seed: a.select.seed,
                answer_instruction: a.answer_instruction.clone(),
                ..HttpJudgeConfig::default()
            };
            Box::new(HttpJudge::new(cfg, Some(constitution.clone()))?)
        }
        o => bail!("--judge {o}: expected local, http or gold"),
    })
}

fn label(a: LabelArgs) -> Result<()> {
    let constitution = load_constitution(a.select.constitution.as_deref(), &a.select.principles)?;
    let items = load_items(&a.select)?;
    let mut judge = judge(&a, &constitution)?;
    let policy = load_model(&a.policy)?;
    let mut cfg = LabelConfig { batch_size: a.select.batch_size, seed: a.select.seed, ..LabelConfig::default() };
    cfg.sampling.temperature = a.select.temperature;
    cfg.sampling.max_new_tokens = a.select.max_new_tokens;
    let (mut log, existing) = AppendLog::open(&a.out).with_context(|| format!("opening {}", a.out.display()))?;
    if !existing.ids.is_empty() {
        println!("resuming: {} labels already in {}", existing.ids.len(), a.out.display());
    }
    let t0 = std::time::Instant::now();
    let rep = align_cai::label(&policy, judge.as_mut(), &constitution, &items, &cfg, &mut log, &existing.ids)?;
    drop(log);
    println!(
        "{} prompts: {} labelled now by {} in {:.0} s, {} already done; skipped: {} identical pairs, {} with an empty response, {} too long for the judge, {} unanswered by the judge",
        rep.prompts, rep.labelled, judge.name(), t0.elapsed().as_secs_f64(), rep.resumed, rep.identical, rep.empty, rep.too_long, rep.unanswered
    );
    let lines = read_lines(&a.out)?;
    let ag = agreement(&lines, a.min_gold_margin);
    if ag.pairs > 0 {
        println!(
            "agreement with gold: {:.1}% of {} pairs gold separates (margin ≥ {}; {} judge ties counted half) | both orders agree on {:.1}% | mean label_prob {:.3}",
            100.0 * ag.rate, ag.decided, a.min_gold_margin, ag.ties, 100.0 * ag.position_consistent, ag.mean_label_prob
        );
    }
    Ok(())
}
