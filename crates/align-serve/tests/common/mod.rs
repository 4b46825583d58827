//! Shared by the server tests: tiny models built on the spot (a byte-level BPE tokenizer with
//! ChatML specials and random Llama weights), and a server on a loopback port.
#![allow(dead_code)]

use align_data::tokenizer::{train_bpe_from_texts, Tokenizer, DEFAULT_SPECIAL_TOKENS};
use align_models::config::llama_from_dims;
use align_models::{Model, ModelConfig};
use align_serve::{AppState, ServeConfig, ServedModel};
use candle_core::{DType, Device};
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

/// Context of the test models: long enough that a generation can be cut short on purpose.
pub const CTX: usize = 2048;

fn texts() -> Vec<String> {
    let base = [
        "The cat sat on the mat and looked at the door.",
        "A helpful assistant answers the question and stops.",
        "Paris is the capital of France; Rome is the capital of Italy.",
        "Numbers: one two three four five six seven eight nine ten.",
        "She said hello, and he said goodbye to the small red fox.",
    ];
    (0..20).flat_map(|i| base.iter().map(move |s| format!("{s} {i}"))).collect()
}

/// Writes a tiny model (tokenizer + random weights from `seed`) into `dir`.
pub fn write_model(dir: &Path, seed: u64) {
    let tok = train_bpe_from_texts(&texts(), 320, &DEFAULT_SPECIAL_TOKENS, 1).unwrap();
    // Untied head: with tied embeddings a random model greedily repeats its last input token.
    let cfg = align_models::LlamaConfig { tie_word_embeddings: false, ..llama_from_dims(tok.vocab_size(), 32, 2, 4, 2, CTX) };
    let model = Model::from_config(ModelConfig::Llama(cfg), seed, &Device::Cpu).unwrap();
    model.save_pretrained(dir, DType::F32).unwrap();
    tok.save_dir(dir).unwrap();
}

/// Two tiny models written once per test process: ("raw", seed 1) and ("aligned", seed 2).
pub fn model_dirs() -> &'static (PathBuf, PathBuf) {
    static DIRS: OnceLock<(PathBuf, PathBuf)> = OnceLock::new();
    DIRS.get_or_init(|| {
        let root = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("align-serve-{}", std::process::id()));
        let (a, b) = (root.join("raw"), root.join("aligned"));
        write_model(&a, 1);
        write_model(&b, 2);
        (a, b)
    })
}

pub fn load(name: &str, dir: &Path, cfg: &ServeConfig) -> ServedModel {
    ServedModel::load(name, dir, cfg).unwrap()
}

pub fn tokenizer() -> Tokenizer {
    Tokenizer::from_dir(&model_dirs().0).unwrap()
}

/// A running server on 127.0.0.1 (an ephemeral port), stopped when dropped.
pub struct Server {
    pub base: String,
    pub state: Arc<AppState>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
    }
}

/// Serves "raw" and "aligned" with `cfg` (call inside a tokio runtime).
pub async fn start(cfg: ServeConfig) -> Server {
    let (a, b) = model_dirs();
    let models = vec![load("raw", a, &cfg), load("aligned", b, &cfg)];
    start_with(models, cfg).await
}

pub async fn start_with(models: Vec<ServedModel>, cfg: ServeConfig) -> Server {
    let state = Arc::new(AppState::new(models, cfg).unwrap());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let st = state.clone();
    tokio::spawn(async move {
        align_serve::serve(listener, st, async move {
            let _ = rx.await;
        })
        .await
        .unwrap()
    });
    Server { base, state, stop: Some(tx) }
}

pub fn client() -> reqwest::Client {
    reqwest::Client::new()
}

/// POSTs JSON and returns (status, body as JSON).
pub async fn post(base: &str, path: &str, body: serde_json::Value) -> (u16, serde_json::Value) {
    let r = client().post(format!("{base}{path}")).json(&body).send().await.unwrap();
    let status = r.status().as_u16();
    let text = r.text().await.unwrap();
    (status, serde_json::from_str(&text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}")))
}

/// Reads a server-sent-events response to the end: the `data:` payloads, in order.
pub async fn sse_data(resp: reqwest::Response) -> Vec<String> {
    let text = resp.text().await.unwrap();
    text.split("\n\n")
        .filter_map(|block| block.lines().find_map(|l| l.strip_prefix("data:").map(|d| d.trim().to_string())))
        .collect()
}

/// Running sequences of model `name`, from /health.
pub async fn running(base: &str, name: &str) -> (u64, u64) {
    let h: serde_json::Value = client().get(format!("{base}/health")).send().await.unwrap().json().await.unwrap();
    let m = h["models"].as_array().unwrap().iter().find(|m| m["id"] == name).unwrap().clone();
    (m["running_sequences"].as_u64().unwrap(), m["generated_tokens"].as_u64().unwrap())
}
