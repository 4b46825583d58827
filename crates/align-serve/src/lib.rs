//! align-serve: an OpenAI-compatible server for align models, with continuous batching and a
//! playground page. Rules and design: docs/serve.md.
//!
//! Read in this order: [`openai`] (the request and response shapes), [`request`] (a request →
//! a validated [`request::Plan`]: prompt ids, sampling, limits), [`scheduler`] (one thread per
//! model owns it and runs continuous batching through align-generate's
//! [`Engine`](align_generate::engine::Engine)), [`output`] and [`stop`] (tokens → text, stop
//! strings, log-probs), then [`routes`] (axum: JSON and server-sent events, API key, limits).
//! [`server`] runs it all from the CLI. [`error`] holds the OpenAI-shaped [`ApiError`] and the startup [`ServeError`].

pub mod config;
pub mod error;
pub mod model;
pub mod openai;
pub mod output;
pub mod request;
pub mod routes;
pub mod scheduler;
pub mod server;
pub mod stop;

pub use config::ServeConfig;
pub use error::{ApiError, ServeError};
pub use model::ServedModel;
pub use routes::{router, serve, AppState};
pub use server::{run_blocking, ModelSpec};
