// Throwaway: runs cmd/bench.rs before `align bench` is wired into main.rs. Delete when done.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[path = "../src/cmd/bench.rs"]
mod bench;

use clap::Parser;

#[derive(Parser)]
struct Cli {
    #[command(flatten)]
    args: bench::BenchArgs,
}

fn main() -> anyhow::Result<()> {
    bench::run(Cli::parse().args)
}
