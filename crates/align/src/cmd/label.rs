//! `align label ...`: the preference-collection web app (align-label; docs/label.md).
//!
//! `serve` runs the server; the other subcommands work on the same SQLite file directly (they may
//! run next to a live server: SQLite serializes the writes).

use align_data::tokenizer::Tokenizer;
use align_eval::respond::{respond, PromptStyle};
use align_generate::SamplingConfig;
use align_label::model::NewItem;
use align_label::{store, Aggregate, ImportOptions, Role};
use align_models::Model;
use anyhow::{bail, Context};
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};

#[derive(clap::Subcommand, Debug)]
pub enum LabelCmd {
    /// Run the annotation server (web UI for annotators and admins).
    Serve(ServeArgs),
    /// Create projects and add prompts with candidate responses.
    #[command(subcommand)]
    Project(ProjectCmd),
    /// Create annotator and admin accounts; issue login links.
    #[command(subcommand)]
    Annotator(AnnotatorCmd),
    /// Write a project's labels as a TRL preference data set (for `align rm` / `align dpo`).
    Export(ExportArgs),
}

#[derive(clap::Args, Debug)]
pub struct DbArg {
    /// The SQLite database (created if missing).
    #[arg(long, default_value = "labels.sqlite")]
    pub db: PathBuf,
}

#[derive(clap::Args, Debug)]
pub struct ServeArgs {
    #[command(flatten)]
    pub db: DbArg,
    #[arg(long, default_value_t = 8080)]
    pub port: u16,
    /// Address to listen on; 0.0.0.0 exposes the app to the network (put TLS in front of it).
    #[arg(long, default_value = "127.0.0.1")]
    pub host: IpAddr,
}

#[derive(clap::Subcommand, Debug)]
pub enum ProjectCmd {
    /// Create an empty project.
    Create {
        #[command(flatten)]
        db: DbArg,
        #[arg(long)]
        name: String,
        /// A text file with the annotation guidelines (default: helpful / honest / harmless).
        #[arg(long)]
        guidelines: Option<PathBuf>,
        /// Annotators per comparison (gold check items go to everyone).
        #[arg(long, default_value_t = align_label::DEFAULT_OVERLAP)]
        overlap: u32,
    },
    /// Add prompts with candidates from JSONL: `{"prompt", "responses": [..]}` rows or TRL
    /// `prompt/chosen/rejected` pairs (such as the gym's preferences.jsonl).
    Import {
        #[command(flatten)]
        db: DbArg,
        #[arg(long)]
        project: String,
        #[arg(long)]
        file: PathBuf,
        /// Use every N-th pair carrying the gym's gold scores as a gold check item.
        #[arg(long)]
        gold_every: Option<usize>,
    },
    /// Generate candidates with align models for prompts from JSONL (a `prompt` field per line),
    /// one response per model and sample, and add them to the project.
    Generate(GenerateArgs),
    /// List projects with their counts.
    List {
        #[command(flatten)]
        db: DbArg,
    },
}

#[derive(clap::Args, Debug)]
pub struct GenerateArgs {
    #[command(flatten)]
    pub db: DbArg,
    #[arg(long)]
    pub project: String,
    /// JSONL with a `prompt` string per line (e.g. the gym's prompts/eval.jsonl).
    #[arg(long)]
    pub prompts: PathBuf,
    /// Model directory; repeat to compare models.
    #[arg(long, required = true)]
    pub model: Vec<PathBuf>,
    /// Responses sampled per model and prompt (different seeds).
    #[arg(long, default_value_t = 1)]
    pub samples: usize,
    /// Use at most this many prompts.
    #[arg(long)]
    pub limit: Option<usize>,
    #[arg(long, default_value_t = 0.8)]
    pub temperature: f32,
    #[arg(long, default_value_t = 128)]
    pub max_new_tokens: usize,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Put prompts to the models raw (pretrained models) instead of through the chat template.
    #[arg(long)]
    pub raw: bool,
    #[arg(long, default_value_t = 8)]
    pub batch_size: usize,
}

#[derive(clap::Subcommand, Debug)]
pub enum AnnotatorCmd {
    /// Create an account and print its login link (shown once; only a hash is stored).
    Add {
        #[command(flatten)]
        db: DbArg,
        #[arg(long)]
        name: String,
        /// Projects the annotator works on (repeatable).
        #[arg(long)]
        project: Vec<String>,
        /// An admin account (admin pages, no queue).
        #[arg(long)]
        admin: bool,
        /// The server's address as annotators reach it, for the printed link.
        #[arg(long, default_value = "http://127.0.0.1:8080")]
        base_url: String,
    },
    /// Add an existing annotator to a project.
    Join {
        #[command(flatten)]
        db: DbArg,
        #[arg(long)]
        name: String,
        #[arg(long)]
        project: String,
    },
    /// Issue a new login link for an account; the old one stops working.
    Token {
        #[command(flatten)]
        db: DbArg,
        #[arg(long)]
        name: String,
        #[arg(long, default_value = "http://127.0.0.1:8080")]
        base_url: String,
    },
}

#[derive(clap::Args, Debug)]
pub struct ExportArgs {
    #[command(flatten)]
    pub db: DbArg,
    #[arg(long)]
    pub project: String,
    #[arg(long)]
    pub out: PathBuf,
    /// Export every pair with a preference vote, with the mean vote probability as the soft label
    /// (`label_prob`), instead of only the pairs with a majority.
    #[arg(long)]
    pub soft: bool,
}

pub fn run(c: LabelCmd) -> anyhow::Result<()> {
    match c {
        LabelCmd::Serve(a) => serve(a),
        LabelCmd::Project(p) => project(p),
        LabelCmd::Annotator(a) => annotator(a),
        LabelCmd::Export(e) => export(e),
    }
}

fn open(db: &Path) -> anyhow::Result<align_label::db::Connection> {
    align_label::db::open(db).with_context(|| format!("opening the label database {}", db.display()))
}

fn serve(a: ServeArgs) -> anyhow::Result<()> {
    let mut conn = open(&a.db.db)?;
    let admin = align_label::ensure_admin(&mut conn)?;
    drop(conn);
    let addr = SocketAddr::new(a.host, a.port);
    align_label::serve_blocking(&a.db.db, addr, |local| {
        let base = format!("http://{local}");
        eprintln!("align label: serving {} on {base} (Ctrl-C to stop)", a.db.db.display());
        match &admin {
            Some(token) => eprintln!(
                "created the admin account; its login link (shown once, keep it private):\n  {}",
                align_label::login_link(&base, token)
            ),
            None => eprintln!("admin page: {base}/admin (new admin link: align label annotator token --name admin)"),
        }
    })?;
    Ok(())
}

fn project(p: ProjectCmd) -> anyhow::Result<()> {
    match p {
        ProjectCmd::Create { db, name, guidelines, overlap } => {
            let text = match guidelines {
                Some(path) => std::fs::read_to_string(&path)
                    .with_context(|| format!("reading the guidelines {}", path.display()))?,
                None => align_label::DEFAULT_GUIDELINES.to_string(),
            };
            let conn = open(&db.db)?;
            let p = store::create_project(&conn, &name, &text, overlap)?;
            println!("created project `{}` (id {}, {} annotators per pair)", p.name, p.id, p.overlap);
        }
        ProjectCmd::Import { db, project, file, gold_every } => {
            if gold_every == Some(0) {
                bail!("--gold-every must be at least 1");
            }
            let items = align_label::import::read_file(&file, ImportOptions { gold_every })?;
            add_items(&db.db, &project, &items)?;
        }
        ProjectCmd::Generate(g) => generate(g)?,
        ProjectCmd::List { db } => {
            let conn = open(&db.db)?;
            println!("{:<24} {:>7} {:>7} {:>7} {:>5} {:>7} {:>8}", "project", "overlap", "prompts", "pairs", "gold", "labels", "members");
            for p in store::project_counts(&conn)? {
                println!(
                    "{:<24} {:>7} {:>7} {:>7} {:>5} {:>7} {:>8}",
                    p.name, p.overlap, p.items, p.comparisons, p.gold, p.labels, p.members
                );
            }
        }
    }
    Ok(())
}

fn add_items(db: &Path, project: &str, items: &[NewItem]) -> anyhow::Result<()> {
    let mut conn = open(db)?;
    let (n_items, n_cmp) = store::transaction(&mut conn, |c| {
        let p = store::project_by_name(c, project)?;
        store::add_items(c, p.id, items)
    })
    .with_context(|| format!("adding items to project `{project}` (create it with `align label project create`)"))?;
    let gold = items.iter().filter(|i| i.gold.is_some()).count();
    println!("added {n_items} prompts ({n_cmp} pairs, {gold} prompts with a gold answer) to `{project}`");
    Ok(())
}

fn generate(g: GenerateArgs) -> anyhow::Result<()> {
    if g.model.len() * g.samples < 2 {
        bail!("need at least two candidates per prompt: give two --model, or --samples 2 or more");
    }
    let mut prompts = align_data::jsonl::read_jsonl_field(&g.prompts, "prompt")?;
    if let Some(n) = g.limit {
        prompts.truncate(n);
    }
    if prompts.is_empty() {
        bail!("{}: no prompts", g.prompts.display());
    }
    let style = if g.raw { PromptStyle::Raw } else { PromptStyle::Chat };
    let mut candidates: Vec<Vec<String>> = vec![Vec::new(); prompts.len()];
    for dir in &g.model {
        let model = Model::from_pretrained(dir, candle_core::DType::F32, &candle_core::Device::Cpu)
            .with_context(|| format!("loading the model from {}", dir.display()))?;
        let tok = Tokenizer::from_dir(dir).with_context(|| format!("loading the tokenizer from {}", dir.display()))?;
        for s in 0..g.samples {
            let cfg = SamplingConfig {
                max_new_tokens: g.max_new_tokens,
                temperature: g.temperature,
                seed: g.seed + s as u64,
                ..SamplingConfig::default()
            };
            eprintln!("generating: {} sample {} of {}", dir.display(), s + 1, g.samples);
            let out = respond(&model, &tok, &prompts, style, &cfg, g.batch_size)?;
            for (c, r) in candidates.iter_mut().zip(out) {
                c.push(r);
            }
        }
    }
    let mut items = Vec::new();
    let mut dropped = 0;
    for (i, (p, mut c)) in prompts.iter().zip(candidates).enumerate() {
        // Identical or empty candidates make no comparison.
        c.retain(|r| !r.trim().is_empty());
        let mut seen = std::collections::HashSet::new();
        c.retain(|r| seen.insert(r.clone()));
        if c.len() < 2 {
            dropped += 1;
            continue;
        }
        c.truncate(align_label::import::MAX_RESPONSES);
        items.push(NewItem {
            source_id: format!("gen-{i}"),
            prompt: vec![align_data::Message::new("user", p.clone())],
            responses: c,
            gold: None,
        });
    }
    if dropped > 0 {
        eprintln!("{dropped} prompts left out: fewer than two distinct non-empty candidates");
    }
    if items.is_empty() {
        bail!("no prompt got two distinct candidates; raise --temperature or --samples");
    }
    add_items(&g.db.db, &g.project, &items)
}

fn annotator(a: AnnotatorCmd) -> anyhow::Result<()> {
    match a {
        AnnotatorCmd::Add { db, name, project, admin, base_url } => {
            let mut conn = open(&db.db)?;
            let role = if admin { Role::Admin } else { Role::Annotator };
            let (who, token) = align_label::add_annotator(&mut conn, &name, role, &project)?;
            println!("created {} `{}`; login link (shown once, hand it over privately):", role.as_str(), who.name);
            println!("{}", align_label::login_link(&base_url, &token));
        }
        AnnotatorCmd::Join { db, name, project } => {
            let mut conn = open(&db.db)?;
            store::transaction(&mut conn, |c| {
                let a = store::annotator_by_name(c, &name)?;
                let p = store::project_by_name(c, &project)?;
                store::add_member(c, p.id, a.id)
            })?;
            println!("`{name}` now works on `{project}`");
        }
        AnnotatorCmd::Token { db, name, base_url } => {
            let mut conn = open(&db.db)?;
            let token = align_label::auth::new_token();
            let hash = align_label::auth::hash_token(&token);
            store::transaction(&mut conn, |c| store::set_token_hash(c, &name, &hash))?;
            println!("new login link for `{name}` (the old one no longer works):");
            println!("{}", align_label::login_link(&base_url, &token));
        }
    }
    Ok(())
}

fn export(e: ExportArgs) -> anyhow::Result<()> {
    let conn = open(&e.db.db)?;
    let p = store::project_by_name(&conn, &e.project)?;
    let how = if e.soft { Aggregate::Soft } else { Aggregate::Majority };
    let rows = align_label::export::aggregate(&store::comparisons(&conn, p.id)?, &store::votes(&conn, p.id)?, how);
    align_core::atomic::write_atomic(&e.out, align_label::export::to_jsonl(&rows).as_bytes())
        .with_context(|| format!("writing {}", e.out.display()))?;
    println!(
        "wrote {} preference pairs to {} ({} labels)",
        rows.len(),
        e.out.display(),
        rows.iter().map(|r| r.raw_votes.len()).sum::<usize>()
    );
    Ok(())
}
