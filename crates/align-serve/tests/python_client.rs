//! The official OpenAI Python client (pinned in scripts/serve/requirements.txt, installed by
//! scripts/serve/setup.sh, which scripts/test.sh runs) talks to the server: chat, streaming,
//! logprobs, completions, models, errors. Skipped when ALIGN_SKIP_PYTHON=1.

mod common;

use align_serve::ServeConfig;
use common::*;
use std::path::PathBuf;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openai_python_client() {
    if std::env::var("ALIGN_SKIP_PYTHON").as_deref() == Ok("1") {
        eprintln!("skipped: ALIGN_SKIP_PYTHON=1 (the OpenAI Python client test needs scripts/serve/setup.sh)");
        return;
    }
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
    let python = root.join("scripts/serve/.venv/bin/python");
    assert!(
        python.is_file(),
        "{} is missing: run `bash scripts/serve/setup.sh` (or set ALIGN_SKIP_PYTHON=1 to skip this test)",
        python.display()
    );
    let s = start(ServeConfig { api_key: Some("sk-align-test".into()), ..Default::default() }).await;
    let script = root.join("scripts/serve/openai_client_test.py");
    let base_url = format!("{}/v1", s.base);
    let out = tokio::process::Command::new(&python)
        .arg(&script)
        .args(["--base-url", &base_url, "--api-key", "sk-align-test", "--model", "raw", "--other-model", "aligned"])
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "the OpenAI client test failed:\n{stdout}\n{stderr}");
    assert!(stdout.contains("all checks passed"), "{stdout}");
    assert!(stdout.matches("ok: ").count() >= 20, "{stdout}");
}
