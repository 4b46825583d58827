//! `align gym`: build the generated world, and score responses with its gold judge.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::PathBuf;

use align_gym::{GymConfig, PanelConfig, Size, World};
use anyhow::{bail, Context, Result};

#[derive(clap::Subcommand, Debug)]
pub enum GymCmd {
    /// Generate the gym (pretrain.txt, sft.jsonl, critique.jsonl, prompts/, preferences*.jsonl) into a directory.
    Build {
        /// Seed of everything: same seed and options, byte-identical files.
        #[arg(long, default_value_t = 0)]
        seed: u64,
        /// Output directory (created if missing).
        #[arg(long)]
        out: PathBuf,
        /// World size: small (about 1 MB of pretraining text) or medium.
        #[arg(long, default_value = "small")]
        size: Size,
        /// A JSON GymConfig to start from (panel, pairs per prompt, ...); --seed and --size override it.
        #[arg(long)]
        config: Option<PathBuf>,
        /// Annotator panel preset: default (mild biases, one noisy annotator) or biased (length and agreement
        /// win small gold gaps, for reward-hacking experiments).
        #[arg(long)]
        panel: Option<String>,
        /// Preference pairs per train prompt.
        #[arg(long)]
        pairs_per_prompt: Option<usize>,
    },
    /// Score responses with the gold judge; prints one JSON line per response and per-family means on stderr.
    Judge {
        /// JSONL of prompt records (as in prompts/*.jsonl) each with a "response" field.
        #[arg(long, conflicts_with_all = ["prompts", "responses"], required_unless_present = "prompts")]
        input: Option<PathBuf>,
        /// Prompt records (prompts/train.jsonl or prompts/eval.jsonl), used with --responses.
        #[arg(long, requires = "responses")]
        prompts: Option<PathBuf>,
        /// JSONL of {"id": ..., "response": ...}, joined to --prompts by id.
        #[arg(long, requires = "prompts")]
        responses: Option<PathBuf>,
        /// Write the scores to this file instead of stdout.
        #[arg(long)]
        out: Option<PathBuf>,
    },
}

pub fn run(cmd: GymCmd) -> Result<()> {
    match cmd {
        GymCmd::Build { seed, out, size, config, panel, pairs_per_prompt } => {
            let mut cfg = match &config {
                Some(p) => {
                    let text = std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))?;
                    serde_json::from_str::<GymConfig>(&text).with_context(|| format!("parsing {}", p.display()))?
                }
                None => GymConfig::default(),
            };
            cfg.seed = seed;
            cfg.size = size;
            match panel.as_deref() {
                None => {}
                Some("default") => cfg.panel = PanelConfig::default(),
                Some("biased") => cfg.panel = PanelConfig::biased(),
                Some(other) => bail!("unknown panel preset {other:?} (expected default or biased)"),
            }
            if let Some(n) = pairs_per_prompt {
                cfg.pairs_per_prompt = n;
            }
            cfg.validate()?;
            let summary = World::generate(&cfg).build(&out)?;
            println!("{summary}");
            println!("wrote {}", out.display());
            Ok(())
        }
        GymCmd::Judge { input, prompts, responses, out } => {
            let items = match (input, prompts, responses) {
                (Some(i), _, _) => align_gym::load_judge_input(&i)?,
                (None, Some(p), Some(r)) => align_gym::join_responses(&align_gym::load_prompts(&p)?, &r)?,
                _ => bail!("give --input FILE, or --prompts FILE --responses FILE"),
            };
            let judged = align_gym::judge_all(&items);
            let mut sink: Box<dyn Write> = match &out {
                Some(p) => Box::new(std::io::BufWriter::new(
                    std::fs::File::create(p).with_context(|| format!("creating {}", p.display()))?,
                )),
                None => Box::new(std::io::BufWriter::new(std::io::stdout().lock())),
            };
            let mut means: BTreeMap<String, (f64, usize)> = BTreeMap::new();
            for j in &judged {
                serde_json::to_writer(&mut sink, j)?;
                sink.write_all(b"\n")?;
                let e = means.entry(j.family.to_string()).or_default();
                e.0 += j.score.overall;
                e.1 += 1;
            }
            sink.flush()?;
            for (fam, (sum, n)) in &means {
                eprintln!("{fam:<18} n={n:<5} overall={:.3}", sum / *n as f64);
            }
            Ok(())
        }
    }
}
