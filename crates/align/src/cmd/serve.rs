//! `align serve`: an OpenAI-compatible server (chat, completions, models; streaming) with
//! continuous batching, and a playground page at `/`. API, limits and design: docs/serve.md.

use align_serve::{run_blocking, ModelSpec, ServeConfig};
use anyhow::Context;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

#[derive(clap::Args, Debug)]
pub struct ServeArgs {
    /// A model to serve: `DIR`, or `NAME=DIR` to choose the name clients pass as `model`
    /// (default: the path as given). Repeat for several models (e.g. raw=... aligned=...).
    #[arg(long, required = true)]
    pub model: Vec<String>,
    /// TCP port (0 picks a free one).
    #[arg(long, default_value_t = 8000)]
    pub port: u16,
    /// Address to listen on; the default only accepts local clients.
    #[arg(long, default_value = "127.0.0.1")]
    pub host: IpAddr,
    /// Require `Authorization: Bearer <key>` on /v1/* (also read from ALIGN_API_KEY).
    #[arg(long)]
    pub api_key: Option<String>,
    /// Largest request body in bytes (413 above).
    #[arg(long, default_value_t = ServeConfig::default().max_body_bytes)]
    pub max_body_bytes: usize,
    /// Requests handled at once over all models, running or queued (429 above).
    #[arg(long, default_value_t = ServeConfig::default().max_concurrent)]
    pub max_concurrent: usize,
    /// Sequences a model decodes together in one step; more wait in its queue.
    #[arg(long, default_value_t = ServeConfig::default().max_batch)]
    pub max_batch: usize,
    /// Milliseconds an idle model waits for more requests before starting a batch (0: at once).
    #[arg(long, default_value_t = 0)]
    pub batch_wait_ms: u64,
    /// Seconds a request may take, streaming included (504 / an error event after).
    #[arg(long, default_value_t = ServeConfig::default().request_timeout.as_secs_f64())]
    pub request_timeout: f64,
    /// Largest `n` (completions per prompt) a request may ask.
    #[arg(long, default_value_t = ServeConfig::default().max_n)]
    pub max_n: usize,
    /// Cap on `max_tokens` below each model's context (default: the context).
    #[arg(long)]
    pub max_tokens: Option<usize>,
}

pub fn run(a: ServeArgs) -> anyhow::Result<()> {
    if !(a.request_timeout > 0.0 && a.request_timeout.is_finite()) {
        anyhow::bail!("--request-timeout must be a positive number of seconds, got {}", a.request_timeout);
    }
    if a.max_concurrent == 0 || a.max_batch == 0 || a.max_n == 0 || a.max_body_bytes == 0 {
        anyhow::bail!("--max-concurrent, --max-batch, --max-n and --max-body-bytes must be at least 1");
    }
    let cfg = ServeConfig {
        max_body_bytes: a.max_body_bytes,
        max_concurrent: a.max_concurrent,
        max_batch: a.max_batch,
        batch_wait: Duration::from_millis(a.batch_wait_ms),
        request_timeout: Duration::from_secs_f64(a.request_timeout),
        max_n: a.max_n,
        max_tokens: a.max_tokens,
        api_key: a.api_key.or_else(|| std::env::var("ALIGN_API_KEY").ok()).filter(|k| !k.is_empty()),
    };
    let specs: Vec<ModelSpec> = a.model.iter().map(|m| ModelSpec::parse(m)).collect();
    for s in &specs {
        eprintln!("loading `{}` from {}", s.name, s.dir.display());
    }
    let auth = if cfg.api_key.is_some() { " (API key required)" } else { "" };
    run_blocking(&specs, cfg, SocketAddr::new(a.host, a.port), |addr| {
        eprintln!("serving on http://{addr}{auth}: playground at /, OpenAI API at /v1 (Ctrl-C stops)");
    })
    .context("align serve")
}
