//! The playground in headless Chromium (scripts/browser/serve_playground.test.mjs): it sends a
//! prompt to two models and shows both streamed answers, equal to the API's answers for the
//! same request. Skipped when ALIGN_SKIP_BROWSER=1; needs scripts/browser/setup.sh.

mod common;

use align_serve::ServeConfig;
use common::*;
use serde_json::{json, Value};
use std::path::PathBuf;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn playground_shows_both_answers() {
    if std::env::var("ALIGN_SKIP_BROWSER").as_deref() == Ok("1") {
        eprintln!("skipped: ALIGN_SKIP_BROWSER=1 (the playground test needs Chromium: scripts/browser/setup.sh)");
        return;
    }
    let browser = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../scripts/browser");
    assert!(
        browser.join("node_modules/playwright-core").is_dir() && std::path::Path::new("/usr/bin/chromium").exists(),
        "Chromium or playwright-core is missing: run `bash scripts/browser/setup.sh` (or set ALIGN_SKIP_BROWSER=1 to skip)"
    );
    let s = start(ServeConfig::default()).await;
    let prompt = "Where is Paris?";
    let shot = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("serve-playground.png");
    let out = tokio::process::Command::new("node")
        .current_dir(&browser)
        .arg("serve_playground.test.mjs")
        .args(["--base", &s.base, "--a", "raw", "--b", "aligned", "--prompt", prompt, "--max-tokens", "24"])
        .arg("--shot")
        .arg(&shot)
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "the browser test failed:\n{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    let result: Value = stdout.lines().find_map(|l| l.strip_prefix("RESULT ")).map(|j| serde_json::from_str(j).unwrap()).expect("a RESULT line");
    // The page shows what the API answers to the same request.
    for (side, model) in [("a", "raw"), ("b", "aligned")] {
        let req = json!({"model": model, "messages": [{"role": "user", "content": prompt}], "max_tokens": 24, "temperature": 0, "seed": 0});
        let (st, v) = post(&s.base, "/v1/chat/completions", req).await;
        assert_eq!(st, 200, "{v}");
        assert_eq!(result[side], v["choices"][0]["message"]["content"], "pane {side}");
    }
    assert_ne!(result["a"], result["b"], "two different models answer differently");
    assert!(std::fs::metadata(&shot).unwrap().len() > 10_000, "a screenshot was taken");
}
