//! [`ServeConfig`]: the server's limits and options, with the defaults of `align serve`.

use std::time::Duration;

#[derive(Debug, Clone)]
pub struct ServeConfig {
    /// Largest request body accepted (413 above). Default 1 MiB.
    pub max_body_bytes: usize,
    /// Requests handled at once, running or waiting for the batch, over all models (429 above).
    /// Default 64.
    pub max_concurrent: usize,
    /// Sequences one model steps together; more wait in its queue. Default 16.
    pub max_batch: usize,
    /// When the model is idle and a request arrives, wait up to this long for more requests (until
    /// `max_batch` sequences are queued) before the first step, so they start as one batch (as TGI's
    /// `max_batch_prefill`-style gathering). Later arrivals always join the running batch at once.
    /// Default 0 (start at once).
    pub batch_wait: Duration,
    /// Whole-request limit, streaming included (504 / an error event after it). Default 300 s.
    pub request_timeout: Duration,
    /// Largest `n` (completions per prompt). Default 8.
    pub max_n: usize,
    /// Server-wide cap on `max_tokens`, below the model's context. Default none.
    pub max_tokens: Option<usize>,
    /// When set, `/v1/*` needs `Authorization: Bearer <key>` (401 otherwise).
    pub api_key: Option<String>,
}

impl Default for ServeConfig {
    fn default() -> Self {
        ServeConfig {
            max_body_bytes: 1 << 20,
            max_concurrent: 64,
            max_batch: 16,
            batch_wait: Duration::ZERO,
            request_timeout: Duration::from_secs(300),
            max_n: 8,
            max_tokens: None,
            api_key: None,
        }
    }
}
