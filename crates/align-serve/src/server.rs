//! Running the server from a blocking caller (the CLI): load the models, start a tokio
//! runtime, listen, stop on Ctrl-C.

use crate::config::ServeConfig;
use crate::error::ServeError;
use crate::model::ServedModel;
use crate::routes::{serve, AppState};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

/// A model to serve: the name clients use and its directory.
#[derive(Debug, Clone)]
pub struct ModelSpec {
    pub name: String,
    pub dir: PathBuf,
}

impl ModelSpec {
    /// `NAME=DIR`, or `DIR` alone (named by the path as given, as vLLM does).
    pub fn parse(s: &str) -> Self {
        match s.split_once('=') {
            Some((name, dir)) if !name.is_empty() && !dir.is_empty() => ModelSpec { name: name.into(), dir: dir.into() },
            _ => ModelSpec { name: s.trim_end_matches('/').into(), dir: s.into() },
        }
    }
}

/// Loads every model, then serves on `addr` until Ctrl-C. `on_ready` gets the bound address
/// (port 0 picks a free one).
pub fn run_blocking(models: &[ModelSpec], cfg: ServeConfig, addr: SocketAddr, on_ready: impl FnOnce(SocketAddr)) -> Result<(), ServeError> {
    let loaded = models.iter().map(|m| ServedModel::load(&m.name, &m.dir, &cfg)).collect::<Result<Vec<_>, _>>()?;
    let state = Arc::new(AppState::new(loaded, cfg)?);
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    rt.block_on(async move {
        let listener = tokio::net::TcpListener::bind(addr).await?;
        on_ready(listener.local_addr()?);
        serve(listener, state, async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await
    })?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn model_specs() {
        let m = ModelSpec::parse("aligned=runs/demo/sft/model");
        assert_eq!((m.name.as_str(), m.dir.to_str().unwrap()), ("aligned", "runs/demo/sft/model"));
        let m = ModelSpec::parse("runs/demo/sft/model/");
        assert_eq!((m.name.as_str(), m.dir.to_str().unwrap()), ("runs/demo/sft/model", "runs/demo/sft/model/"));
    }
}
