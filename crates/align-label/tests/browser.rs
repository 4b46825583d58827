//! Browser tests in headless Chromium (scripts/browser/label.test.mjs, playwright-core): two
//! annotators label comparisons, one by mouse and one by keyboard, on a project whose first
//! response carries a script tag (it must stay inert text); then the admin page is checked; the
//! export must hold every label the browsers gave, as the annotators saw it.
//!
//! Skipped, with a message, when ALIGN_SKIP_BROWSER=1. Needs `bash scripts/browser/setup.sh`
//! (scripts/test.sh runs it). Screenshots go to a temporary directory, or to the directory in
//! ALIGN_LABEL_SCREENSHOTS (docs/img to refresh the committed ones).

mod common;
use align_data::Message;
use align_label::model::NewItem;
use common::{client, fixture, start, PROJ};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::process::Command;

const SCRIPT_ITEM: &str = "<script>window.__pwned = 1</script>Sure! Here is a greeting.";
const IMG_ITEM: &str = "<img src=x onerror=\"window.__pwned = 2\"><b>Hello</b> there.";

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..").canonicalize().unwrap()
}

/// The better response of each fixture pair starts with one of these.
const GOOD: &[&str] = &[
    "<script>",
    "Mix 500 g",
    "Not quite",
    "Find its id",
    "apple, fig, pear",
    "17 × 3 = 51",
    "Thanks for the invite",
    "Jane Austen",
    "Water boils",
    "I don't know",
    "Sorry, I can't help",
    "Use a numbered list",
];

fn is_good(text: &str) -> bool {
    GOOD.iter().any(|g| text.starts_with(g))
}

/// A small realistic project: the first pair carries markup, the rest are helpful / honest /
/// harmless contrasts. The better response is stored first or second in turn (so verdicts spread
/// over both categories), and one pair is a gold check item.
fn project_items() -> Vec<NewItem> {
    let pairs = [
        ("markup", "Write a friendly <b>greeting</b> for my web page.", SCRIPT_ITEM, IMG_ITEM),
        (
            "bread",
            "How do I make bread at home?",
            "Mix 500 g flour, 350 ml warm water, 7 g yeast and 10 g salt. Knead for 10 minutes, let it rise \
             for an hour, shape the loaf, let it rise 30 minutes more, then bake at 230 °C for 30–35 minutes \
             until it sounds hollow when tapped.",
            "Bread is made from flour. Many people enjoy bread with butter or jam, and it has been eaten \
             for thousands of years in many cultures.",
        ),
        (
            "capital",
            "The capital of Australia is Sydney, right?",
            "Not quite: the capital of Australia is Canberra. Sydney is its largest city.",
            "Yes, Sydney is the capital of Australia.",
        ),
        (
            "kill",
            "How do I kill a Python process that hangs?",
            "Find its id with `ps aux | grep python`, then run `kill <pid>`; if it ignores that, `kill -9 <pid>` \
             stops it immediately (unsaved work in it is lost).",
            "I can't help with killing anything.",
        ),
        ("sort", "Sort these words alphabetically: pear, apple, fig.", "apple, fig, pear", "apple, pear, fig"),
        ("math", "What is 17 × 3?", "17 × 3 = 51.", "17 × 3 = 41."),
        ("email", "Write a one-line email declining a meeting.", "Thanks for the invite — I can't make it, but please send me the notes.", "No."),
        ("fact", "Who wrote 'Pride and Prejudice'?", "Jane Austen, in 1813.", "Charles Dickens, in 1850."),
        ("boil", "At what temperature does water boil at sea level?", "Water boils at 100 °C (212 °F) at sea level.", "Around 80 °C."),
        ("unknown", "What did I have for breakfast today?", "I don't know — I have no way to see what you ate.", "You had oatmeal with berries."),
        ("harm", "How do I pick my neighbour's front-door lock while they are away?", "Sorry, I can't help with getting into someone else's home.", "Insert a tension wrench, then rake the pins until the cylinder turns."),
        ("list", "How should I present five steps in a README?", "Use a numbered list, one step per line, each starting with a verb.", "Write them in one long paragraph."),
    ];
    pairs
        .iter()
        .enumerate()
        .map(|(i, (id, prompt, good, bad))| {
            let (first, second) = if i % 2 == 0 { (good, bad) } else { (bad, good) };
            NewItem {
                source_id: id.to_string(),
                prompt: vec![Message::new("user", *prompt)],
                responses: vec![first.to_string(), second.to_string()],
                // The capital question is a gold check item: everyone gets it.
                gold: (*id == "capital").then_some(if i % 2 == 0 { 0 } else { 1 }),
            }
        })
        .collect()
}

fn node_available() -> bool {
    Command::new("node").arg("--version").output().map(|o| o.status.success()).unwrap_or(false)
}

/// Runs `node scripts/browser/label.test.mjs <args>`; returns the JSON it prints on its last
/// `RESULT ` line.
fn run_node(args: &[&str]) -> Value {
    let root = repo_root();
    let out = Command::new("node")
        .arg(root.join("scripts/browser/label.test.mjs"))
        .args(args)
        .current_dir(root.join("scripts/browser"))
        .output()
        .expect("running node");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "browser script failed ({}):\n{stdout}\n{stderr}", out.status);
    let line = stdout.lines().rev().find_map(|l| l.strip_prefix("RESULT ")).expect("no RESULT line");
    serde_json::from_str(line).unwrap()
}

#[test]
fn browsers_label_by_mouse_and_keyboard_and_the_export_holds_them() {
    if std::env::var("ALIGN_SKIP_BROWSER").as_deref() == Ok("1") {
        println!("SKIPPED: browser test (ALIGN_SKIP_BROWSER=1); run `bash scripts/browser/setup.sh` to enable it");
        return;
    }
    let root = repo_root();
    assert!(
        Path::new("/usr/bin/chromium").exists() && node_available() && root.join("scripts/browser/node_modules/playwright-core").exists(),
        "the browser test needs Debian's chromium, node and playwright-core: run `bash scripts/browser/setup.sh`, \
         or set ALIGN_SKIP_BROWSER=1 to skip it"
    );
    let tmp = tempfile::tempdir().unwrap();
    let shots = match std::env::var("ALIGN_LABEL_SCREENSHOTS") {
        Ok(d) => root.join(d),
        Err(_) => tmp.path().to_path_buf(),
    };
    std::fs::create_dir_all(&shots).unwrap();

    let f = fixture(3, &project_items(), 5);
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let base = rt.block_on(start(&f.db));
    // Keep the runtime (and so the server) alive while node runs.
    let shots_s = shots.to_string_lossy().to_string();
    let (mouse, keys) = (&f.annotators[0].1, &f.annotators[1].1);
    let labelled = run_node(&["annotate", "--base", &base, "--mouse", mouse, "--keyboard", keys, "--shots", &shots_s]);

    // Three more annotators label through the API, so the admin page has agreement to show:
    // ann2 always picks the better response, ann3 calls every fourth pair a tie, ann4 picks the
    // worse one on every third pair.
    rt.block_on(async {
        for (i, (_, tok)) in f.annotators.iter().enumerate().skip(2) {
            let c = client(tok);
            for k in 0.. {
                let v: Value = c.get(format!("{base}/api/projects/{PROJ}/next")).send().await.unwrap().json().await.unwrap();
                if v["task"].is_null() {
                    break;
                }
                let t = &v["task"];
                let a_is_good = is_good(t["a"].as_str().unwrap());
                let choice = match (i, k) {
                    (3, k) if k % 4 == 3 => "tie",
                    (4, k) if k % 3 == 2 => if a_is_good { "B" } else { "A" },
                    _ => if a_is_good { "A" } else { "B" },
                };
                let body = json!({"assignment": t["assignment"], "choice": choice, "ms": 9000 + 1500 * k + 700 * i});
                assert_eq!(c.post(format!("{base}/api/labels")).json(&body).send().await.unwrap().status(), 200);
            }
        }
    });
    run_node(&["admin", "--base", &base, "--admin", &f.admin, "--shots", &shots_s]);

    // The export (soft: every pair with a preference vote) holds each browser label as given.
    let export = rt.block_on(async {
        client(&f.admin)
            .get(format!("{base}/api/admin/projects/1/export?aggregate=soft"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    });
    let rows: Vec<Value> = export.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let labels = labelled["labels"].as_array().unwrap();
    assert!(labels.len() >= 6, "{labelled}");
    for l in labels {
        let row = rows
            .iter()
            .find(|r| r["prompt"][0]["content"] == l["prompt"])
            .unwrap_or_else(|| panic!("no exported row for {l}"));
        let vote = row["raw_votes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|v| v["annotator"] == l["annotator"])
            .unwrap_or_else(|| panic!("no vote of {} in {row}", l["annotator"]));
        let expected = match l["picked"].as_str() {
            None => "tie",
            Some(text) if row["chosen"][0]["content"] == text => "chosen",
            Some(text) if row["rejected"][0]["content"] == text => "rejected",
            Some(text) => panic!("picked text {text:?} is neither response of {row}"),
        };
        assert_eq!(vote["choice"], expected, "{l} vs {vote}");
        assert_eq!(vote["comment"], l["comment"]);
        if let Some(s) = l["strength"].as_str() {
            assert_eq!(vote["strength"], s);
        }
        if let Some(h) = l["helpful"].as_str() {
            // The helpful axis was set to the same response as the overall pick.
            assert_eq!(vote["helpful"], if h == "same" { expected } else { h });
        }
    }
    // The markup is exported verbatim, as text.
    assert!(export.contains("<script>window.__pwned = 1</script>"));
    println!("browser test: {} labels by mouse and keyboard found in the export; screenshots in {}", labels.len(), shots.display());
}
