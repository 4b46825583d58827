//! `align report RUN_DIR`: the run as one self-contained HTML file (`report.html`, inline SVG
//! plots, no network) and a Markdown summary (`report.md`); see docs/report.md.

use anyhow::Result;
use std::path::PathBuf;

#[derive(clap::Args, Debug)]
pub struct ReportArgs {
    /// The run directory (e.g. runs/demo).
    pub run_dir: PathBuf,
    /// Seed of the win rates' bootstrap intervals.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
}

pub fn run(a: ReportArgs) -> Result<()> {
    let (html, md) = align_eval::report::write_report(&a.run_dir, a.seed)?;
    println!("{md}");
    println!("wrote {} and {}", html.display(), a.run_dir.join("report.md").display());
    Ok(())
}
