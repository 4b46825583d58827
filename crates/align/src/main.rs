//! `align`: the whole alignment pipeline in one binary. `main` only parses and dispatches; each
//! subcommand lives in `cmd/`.

use clap::{Parser, Subcommand};
use std::process::ExitCode;

mod cmd;
mod config;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser, Debug)]
#[command(name = "align", version, about = "Take a language model through the whole alignment pipeline, measurably.")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// The whole pipeline on the built-in gym, ending in a report (the main job).
    Demo(cmd::demo::DemoArgs),
    /// The alignment gym: a generated world with a gold judge and simulated annotators.
    #[command(subcommand)]
    Gym(cmd::gym::GymCmd),
    /// Train or use a tokenizer.
    #[command(subcommand)]
    Tokenizer(cmd::tokenizer::TokenizerCmd),
    /// Stage 1: pretrain a raw next-token predictor.
    Pretrain(cmd::pretrain::PretrainArgs),
    /// Benchmarks: training and generation tokens/s, achieved FLOP/s, matmul peak, memory.
    Bench(cmd::bench::BenchArgs),
    /// Stage 2: supervised fine-tuning on TRL-format data.
    Sft(cmd::sft::SftArgs),
    /// Reward models: train (Bradley-Terry) and score.
    #[command(subcommand)]
    Rm(cmd::rm::RmCmd),
    /// Stage 3 offline: direct preference optimization (DPO, IPO, cDPO, hinge, SimPO, ORPO).
    Dpo(cmd::dpo::DpoArgs),
    /// Stage 3 online: PPO with a value model and a KL penalty to the reference (RLHF).
    Ppo(cmd::rl::RlArgs),
    /// Stage 3 online: GRPO, group-normalized advantages, no critic.
    Grpo(cmd::rl::RlArgs),
    /// Stage 3 online: RLOO, leave-one-out baseline, no critic.
    Rloo(cmd::rl::RlArgs),
    /// On-policy preference pairs: sample the policy, label pairs with the gold judge or the panel.
    Onpolicy(cmd::onpolicy::OnPolicyArgs),
    /// Constitutional AI: critique and revision (SL-CAI), AI preference labels (RL-CAI / RLAIF).
    #[command(subcommand)]
    Cai(cmd::cai::CaiCmd),
    /// Gold evaluation of models on the gym's held-out prompts, with win rates.
    Eval(cmd::eval::EvalArgs),
    /// The run directory as one self-contained HTML report (inline SVG plots) and a Markdown summary.
    Report(cmd::report::ReportArgs),
    /// Generate text from a model (KV cache, batched, streaming for one prompt).
    Generate(cmd::generate::GenerateArgs),
    /// Human feedback: the preference-collection web app for several annotators.
    #[command(subcommand)]
    Label(cmd::label::LabelCmd),
    /// Serve models: OpenAI-compatible API and a side-by-side playground.
    Serve(cmd::serve::ServeArgs),
    /// Interactive terminal chat with a model, using its chat template.
    Chat(cmd::chat::ChatArgs),
}

/// Threads for candle's matmuls and rayon: set once, before any parallel work (CANDLE.md: without
/// it candle re-reads /proc/cpuinfo on every matmul).
fn set_thread_defaults() {
    if std::env::var_os("RAYON_NUM_THREADS").is_none() {
        let n = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
        std::env::set_var("RAYON_NUM_THREADS", n.to_string());
    }
    // mimalloc reads its `MIMALLOC_*` variables in a constructor that runs before `main`, so setting
    // the variable here would change nothing (measured: 69k page faults and ~10% of a pretraining
    // step in the kernel zeroing fresh pages, as without the setting). `mi_option_set` changes the
    // option in the running allocator; a user's own MIMALLOC_PURGE_DELAY still wins.
    if std::env::var_os("MIMALLOC_PURGE_DELAY").is_none() {
        // SAFETY: a plain setter of mimalloc (linked as the global allocator), valid at any time.
        unsafe { mi_option_set(MI_OPTION_PURGE_DELAY, -1) };
    }
}

/// `mi_option_purge_delay` in mimalloc's `mimalloc.h` (v2 and v3): never return freed memory to
/// the OS (CANDLE.md: 34% of a training step was the kernel zeroing fresh pages). Declared here
/// rather than through libmimalloc-sys's `extended` feature, which would add a dependency for one call.
const MI_OPTION_PURGE_DELAY: std::os::raw::c_int = 15;

extern "C" {
    fn mi_option_set(option: std::os::raw::c_int, value: std::os::raw::c_long);
    fn mi_option_get(option: std::os::raw::c_int) -> std::os::raw::c_long;
}

/// The purge delay mimalloc runs with (-1: freed memory is kept), for `align bench`'s report.
pub(crate) fn mimalloc_purge_delay() -> i64 {
    // SAFETY: a plain getter of mimalloc, valid at any time.
    unsafe { mi_option_get(MI_OPTION_PURGE_DELAY) as i64 }
}

/// Runs a compute command on one of rayon's worker threads (the calling thread waits). Every
/// kernel and candle op splits its work with rayon; called from outside the pool, each split
/// wakes a worker and blocks the caller on a lock (tens of microseconds, for ops that take a few),
/// while from a worker the other threads steal the pieces. Measured (BENCHMARKS.md): tiny-model
/// training +6–10%, generation +24–28%. The servers and the chat stay outside: they block on
/// sockets and stdin, which would take a worker away from the kernels.
fn in_pool(f: impl FnOnce() -> anyhow::Result<()> + Send) -> anyhow::Result<()> {
    rayon::scope(|_| f())
}

fn main() -> ExitCode {
    set_thread_defaults();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .with_target(false)
        .init();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Demo(a) => in_pool(move || cmd::demo::run(a)),
        Command::Gym(c) => in_pool(move || cmd::gym::run(c)),
        Command::Tokenizer(c) => in_pool(move || cmd::tokenizer::run(c)),
        Command::Pretrain(a) => in_pool(move || cmd::pretrain::run(a)),
        Command::Generate(a) => in_pool(move || cmd::generate::run(a)),
        Command::Sft(a) => in_pool(move || cmd::sft::run(a)),
        Command::Dpo(a) => in_pool(move || cmd::dpo::run(a)),
        Command::Onpolicy(a) => in_pool(move || cmd::onpolicy::run(a)),
        Command::Ppo(a) => in_pool(move || cmd::rl::run(a, align_rl::Algorithm::Ppo)),
        Command::Grpo(a) => in_pool(move || cmd::rl::run(a, align_rl::Algorithm::Grpo)),
        Command::Rloo(a) => in_pool(move || cmd::rl::run(a, align_rl::Algorithm::Rloo)),
        Command::Eval(a) => in_pool(move || cmd::eval::run(a)),
        Command::Report(a) => in_pool(move || cmd::report::run(a)),
        Command::Cai(c) => in_pool(move || cmd::cai::run(c)),
        Command::Rm(c) => in_pool(move || cmd::rm::run(c)),
        // Sets the thread count first, then runs its measurements in the pool itself.
        Command::Bench(a) => cmd::bench::run(a),
        Command::Label(c) => cmd::label::run(c),
        Command::Serve(a) => cmd::serve::run(a),
        Command::Chat(a) => cmd::chat::run(a),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn thread_defaults_keep_freed_memory_in_mimalloc() {
        if std::env::var_os("MIMALLOC_PURGE_DELAY").is_some() {
            return; // the user's setting wins; nothing of ours to check
        }
        assert_ne!(super::mimalloc_purge_delay(), -1, "mimalloc's own default before the call");
        super::set_thread_defaults();
        assert_eq!(super::mimalloc_purge_delay(), -1);
    }
}
