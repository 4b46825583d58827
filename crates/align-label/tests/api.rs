//! The HTTP API end to end over loopback: authentication and isolation, the queue with its
//! overlap and random order, input limits, escaping, revisions, and the export.

mod common;
use common::{client, fixture, items, start, PROJ};
use serde_json::{json, Value};

async fn next(c: &reqwest::Client, base: &str) -> Value {
    let r = c.get(format!("{base}/api/projects/{PROJ}/next")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    r.json().await.unwrap()
}

async fn label(c: &reqwest::Client, base: &str, body: Value) -> reqwest::StatusCode {
    c.post(format!("{base}/api/labels")).json(&body).send().await.unwrap().status()
}

/// Sends only the head of `POST /api/labels` declaring a `len`-byte JSON body, and returns the
/// status the server answers with. Sending the body too would race: a server that refuses it
/// closes the socket while the client is still writing, and the client sees a broken pipe
/// instead of the 413 (the flaky CI failure this replaces).
async fn declared_length_status(base: &str, token: &str, len: usize) -> u16 {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let addr = base.trim_start_matches("http://");
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let head = format!(
        "POST /api/labels HTTP/1.1\r\nhost: {addr}\r\nauthorization: Bearer {token}\r\n\
         content-type: application/json\r\ncontent-length: {len}\r\n\r\n"
    );
    s.write_all(head.as_bytes()).await.unwrap();
    let mut buf = Vec::new();
    let read = tokio::time::timeout(std::time::Duration::from_secs(10), async {
        let mut chunk = [0u8; 1024];
        while !buf.windows(2).any(|w| w == b"\r\n") {
            let n = s.read(&mut chunk).await.unwrap();
            assert!(n > 0, "connection closed without a status line");
            buf.extend_from_slice(&chunk[..n]);
        }
    });
    read.await.expect("the server waited for the body instead of refusing its declared length");
    let line = String::from_utf8_lossy(&buf);
    line.split(' ').nth(1).and_then(|c| c.parse().ok()).unwrap_or_else(|| panic!("no status in {line:?}"))
}

fn label_rows(db: &std::path::Path) -> Vec<(i64, String)> {
    let conn = align_label::db::open(db).unwrap();
    let mut st = conn.prepare("SELECT assignment_id, verdict FROM labels ORDER BY assignment_id").unwrap();
    st.query_map([], |r| Ok((r.get(0)?, r.get(1)?))).unwrap().map(|r| r.unwrap()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn annotators_cannot_reach_others_labels_or_admin_routes() {
    let f = fixture(2, &items(4), 2);
    let base = start(&f.db).await;
    let anon = reqwest::Client::new();
    let alice = client(&f.annotators[0].1);
    let bob = client(&f.annotators[1].1);
    let forged = client(&"0".repeat(64));

    // No token, a malformed or unknown token: 401 on every API route, reads and writes.
    for c in [&anon, &forged, &client("not-a-token")] {
        assert_eq!(c.get(format!("{base}/api/me")).send().await.unwrap().status(), 401);
        assert_eq!(c.get(format!("{base}/api/projects/{PROJ}/next")).send().await.unwrap().status(), 401);
        assert_eq!(label(c, &base, json!({"assignment": 1, "choice": "A"})).await, 401);
        assert_eq!(c.get(format!("{base}/api/admin/overview")).send().await.unwrap().status(), 401);
    }
    // An annotator on admin routes: 403.
    for path in ["/api/admin/overview", "/api/admin/projects/1/report", "/api/admin/projects/1/export"] {
        assert_eq!(alice.get(format!("{base}{path}")).send().await.unwrap().status(), 403, "{path}");
    }
    let r = alice.post(format!("{base}/api/admin/annotators")).json(&json!({"name": "mallory", "admin": true})).send().await.unwrap();
    assert_eq!(r.status(), 403);
    let r = alice.post(format!("{base}/api/admin/projects/1/import")).body("{}").send().await.unwrap();
    assert_eq!(r.status(), 403);

    // Alice's assignment is invisible to Bob, and Bob cannot label it.
    let a = next(&alice, &base).await["task"]["assignment"].as_i64().unwrap();
    assert_eq!(bob.get(format!("{base}/api/assignments/{a}")).send().await.unwrap().status(), 404);
    assert_eq!(alice.get(format!("{base}/api/assignments/{a}")).send().await.unwrap().status(), 200);
    assert_eq!(label(&bob, &base, json!({"assignment": a, "choice": "B"})).await, 404);
    assert!(label_rows(&f.db).is_empty(), "Bob's write must not land");
    assert_eq!(label(&alice, &base, json!({"assignment": a, "choice": "B"})).await, 200);
    assert_eq!(label_rows(&f.db).len(), 1);
    // A project Bob is not in.
    assert_eq!(bob.get(format!("{base}/api/projects/99/next")).send().await.unwrap().status(), 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_pair_goes_to_overlap_annotators_in_a_stored_random_order() {
    let n_items = 12;
    let f = fixture(2, &items(n_items), 3);
    let base = start(&f.db).await;
    let mut shown_first_as_a = 0;
    let mut total = 0;
    for (i, (_, tok)) in f.annotators.iter().enumerate() {
        let c = client(tok);
        loop {
            let v = next(&c, &base).await;
            if v["task"].is_null() {
                assert_eq!(v["progress"]["done"], v["progress"]["total"], "{v}");
                break;
            }
            let t = &v["task"];
            // Asking again before labelling gives the same comparison in the same order.
            assert_eq!(next(&c, &base).await["task"], *t);
            let a = t["a"].as_str().unwrap();
            shown_first_as_a += a.ends_with("first") as usize;
            total += 1;
            // Annotator 0 always picks what it saw as A, the others always B.
            let choice = if i == 0 { "A" } else { "B" };
            let body = json!({"assignment": t["assignment"], "choice": choice});
            assert_eq!(label(&c, &base, body).await, 200);
        }
    }
    // 12 pairs × overlap 2 = 24 labels, and no annotator twice on one pair.
    assert_eq!(total, 2 * n_items);
    let conn = align_label::db::open(&f.db).unwrap();
    let per_cmp: Vec<i64> = conn
        .prepare("SELECT COUNT(*) FROM assignments GROUP BY comparison_id")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .map(|r| r.unwrap())
        .collect();
    assert_eq!(per_cmp, vec![2; n_items]);
    // Both orders occur (probability of failing by chance: 2 · 2^-24).
    assert!(shown_first_as_a > 0 && shown_first_as_a < total, "{shown_first_as_a} of {total}");
    // The stored verdict undoes the order: an "A" vote is `first` exactly when A showed `first`.
    let mismatched: i64 = conn
        .query_row(
            "SELECT COUNT(*) FROM labels l JOIN assignments a ON a.id = l.assignment_id
             JOIN annotators n ON n.id = a.annotator_id
             WHERE n.name = 'ann0' AND l.verdict != CASE a.swapped WHEN 0 THEN 'first' ELSE 'second' END",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(mismatched, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_and_malformed_input_is_refused() {
    let f = fixture(1, &items(2), 1);
    let base = start(&f.db).await;
    let c = client(&f.annotators[0].1);
    let a = next(&c, &base).await["task"]["assignment"].clone();

    // A body over the limit is refused from its declared length, before it is read.
    assert_eq!(declared_length_status(&base, &f.annotators[0].1, 200 * 1024).await, 413);
    assert_eq!(declared_length_status(&base, &f.annotators[0].1, align_label::server::BODY_LIMIT + 1).await, 413);
    let long = "é".repeat(4001);
    assert_eq!(label(&c, &base, json!({"assignment": a, "choice": "A", "comment": long})).await, 400);
    assert_eq!(label(&c, &base, json!({"assignment": a, "choice": "C"})).await, 422);
    assert_eq!(label(&c, &base, json!({"assignment": a, "choice": "A", "extra": 1})).await, 422);
    assert_eq!(label(&c, &base, json!({"assignment": a, "choice": "A", "axes": {"honest": "both_bad"}})).await, 400);
    let r = c.post(format!("{base}/api/labels")).header("content-type", "application/json").body("{not json").send().await.unwrap();
    assert_eq!(r.status(), 400);
    // SQL in a comment is stored as text (parameters only).
    let sneaky = "'); DROP TABLE labels; --";
    assert_eq!(label(&c, &base, json!({"assignment": a, "choice": "A", "comment": sneaky})).await, 200);
    let conn = align_label::db::open(&f.db).unwrap();
    let stored: String = conn.query_row("SELECT comment FROM labels", [], |r| r.get(0)).unwrap();
    assert_eq!(stored, sneaky);

    // A bad import names the line and field.
    let admin = client(&f.admin);
    let r = admin.post(format!("{base}/api/admin/projects/1/import")).body("{\"prompt\":\"p\",\"responses\":[\"a\",\"b\"]}\n{\"prompt\":\"q\",\"responses\":[\"a\"]}\n").send().await.unwrap();
    assert_eq!(r.status(), 400);
    let e: Value = r.json().await.unwrap();
    assert!(e["error"].as_str().unwrap().contains("line 2: field `responses`"), "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn markup_in_responses_is_data_and_pages_forbid_inline_script() {
    let f = fixture(1, &[], 1);
    let base = start(&f.db).await;
    let admin = client(&f.admin);
    let evil = r#"{"prompt":"<b>hi</b>","responses":["<script>window.pwned=1</script>","<img src=x onerror=alert(1)>"]}"#;
    let r = admin.post(format!("{base}/api/admin/projects/1/import")).body(evil).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let c = client(&f.annotators[0].1);
    let r = c.get(format!("{base}/api/projects/{PROJ}/next")).send().await.unwrap();
    assert_eq!(r.headers()["content-type"], "application/json");
    let v: Value = r.json().await.unwrap();
    let texts = [v["task"]["a"].as_str().unwrap(), v["task"]["b"].as_str().unwrap()];
    assert!(texts.contains(&"<script>window.pwned=1</script>"), "stored verbatim, as data");
    for page in ["/annotate", "/admin", "/login"] {
        let r = reqwest::get(format!("{base}{page}")).await.unwrap();
        let csp = r.headers()["content-security-policy"].to_str().unwrap().to_string();
        assert!(csp.contains("script-src 'self'") && !csp.contains("unsafe-inline"), "{csp}");
        assert_eq!(r.headers()["x-content-type-options"], "nosniff");
        let html = r.text().await.unwrap();
        assert!(!html.contains("pwned") && !html.contains("<script>"), "pages carry no data and no inline script");
    }
    // The page scripts never write stored text as HTML.
    for js in ["annotate.js", "admin.js", "common.js", "login.js"] {
        let src = reqwest::get(format!("{base}/static/{js}")).await.unwrap().text().await.unwrap();
        assert!(!src.contains("innerHTML") && !src.contains("insertAdjacentHTML"), "{js}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn login_sets_an_http_only_cookie_that_authenticates() {
    let f = fixture(1, &items(1), 1);
    let base = start(&f.db).await;
    let c = reqwest::Client::new();
    let r = c.post(format!("{base}/api/session")).json(&json!({"token": "f".repeat(64)})).send().await.unwrap();
    assert_eq!(r.status(), 401);
    let r = c.post(format!("{base}/api/session")).json(&json!({"token": f.annotators[0].1})).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let cookie = r.headers()["set-cookie"].to_str().unwrap().to_string();
    assert!(cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"), "{cookie}");
    let pair = cookie.split(';').next().unwrap().to_string();
    let me: Value = c.get(format!("{base}/api/me")).header("cookie", pair).send().await.unwrap().json().await.unwrap();
    assert_eq!(me["name"], "ann0");
    assert_eq!(me["projects"][0]["progress"]["total"], 1);
    // Only hashes are stored.
    let conn = align_label::db::open(&f.db).unwrap();
    let found: i64 = conn
        .query_row("SELECT COUNT(*) FROM annotators WHERE token_hash = ?1", [&f.annotators[0].1], |r| r.get(0))
        .unwrap();
    assert_eq!(found, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revised_label_is_stored_once_and_exported_with_the_votes() {
    let f = fixture(3, &items(3), 3);
    let base = start(&f.db).await;
    // Every annotator labels every pair: ann0 and ann1 pick the `first` response, ann2 `second`;
    // ann0 first clicks the other one, then revises.
    for (i, (_, tok)) in f.annotators.iter().enumerate() {
        let c = client(tok);
        while let Some(t) = next(&c, &base).await.get("task").filter(|t| !t.is_null()).cloned() {
            let a_is_first = t["a"].as_str().unwrap().ends_with("first");
            let pick = |first: bool| if first == a_is_first { "A" } else { "B" };
            if i == 0 {
                let wrong = json!({"assignment": t["assignment"], "choice": pick(false)});
                assert_eq!(label(&c, &base, wrong).await, 200);
            }
            let strength = if i == 1 { "slightly" } else { "clearly" };
            let body = json!({"assignment": t["assignment"], "choice": pick(i < 2), "strength": strength,
                              "axes": {"helpful": pick(i < 2), "harmless": "tie"}, "comment": format!("by {i}")});
            assert_eq!(label(&c, &base, body).await, 200);
        }
    }
    assert_eq!(label_rows(&f.db).len(), 9, "revisions replace, never add");

    let admin = client(&f.admin);
    let text = admin.get(format!("{base}/api/admin/projects/1/export?aggregate=majority")).send().await.unwrap().text().await.unwrap();
    let rows: Vec<Value> = text.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(rows.len(), 3);
    for r in &rows {
        assert!(r["chosen"][0]["content"].as_str().unwrap().ends_with("first"), "{r}");
        assert_eq!(r["prompt"][0]["role"], "user");
        assert_eq!(r["votes"], json!([1.0, 0.75, 0.0]));
        assert_eq!(r["label_prob"], json!(0.5833));
        assert_eq!(r["label_majority"], json!(0.6667));
        assert_eq!(r["raw_votes"].as_array().unwrap().len(), 3);
        assert_eq!(r["raw_votes"][2]["choice"], "rejected");
        assert_eq!(r["raw_votes"][0]["helpful"], "chosen");
        assert_eq!(r["raw_votes"][0]["harmless"], "tie");
        assert_eq!(r["raw_votes"][1]["comment"], "by 1");
    }
    assert_eq!(admin.get(format!("{base}/api/admin/projects/1/export?aggregate=mean")).send().await.unwrap().status(), 400);

    let rep: Value = admin.get(format!("{base}/api/admin/projects/1/report")).send().await.unwrap().json().await.unwrap();
    let r = &rep["report"];
    assert_eq!(r["multiply_labelled"], 3);
    assert_eq!(r["fleiss_raters"], 3);
    // ann2 always disagrees with the other two.
    assert_eq!(r["annotators"][0]["name"], "ann2");
    assert_eq!(r["annotators"][0]["disagree_rate"], 1.0);
    assert_eq!(rep["progress"].as_array().unwrap().len(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gold_items_go_to_everyone_and_score_annotators() {
    // Overlap 1, four prompts of which two have a gold answer (`responses[0]` best).
    let mut its = items(4);
    its[1].gold = Some(0);
    its[3].gold = Some(0);
    let f = fixture(1, &its, 3);
    let base = start(&f.db).await;
    let mut seen_gold = vec![0; 3];
    for (i, (_, tok)) in f.annotators.iter().enumerate() {
        let c = client(tok);
        while let Some(t) = next(&c, &base).await.get("task").filter(|t| !t.is_null()).cloned() {
            let text = t["a"].as_str().unwrap().to_string() + t["b"].as_str().unwrap();
            seen_gold[i] += (text.contains("resp 1 ") || text.contains("resp 3 ")) as usize;
            // ann0 always right (picks `first`), the others always wrong.
            let a_is_first = t["a"].as_str().unwrap().ends_with("first");
            let choice = if (i == 0) == a_is_first { "A" } else { "B" };
            assert_eq!(label(&c, &base, json!({"assignment": t["assignment"], "choice": choice})).await, 200);
        }
    }
    assert_eq!(seen_gold, vec![2, 2, 2], "every annotator gets every gold item");
    let rep: Value = client(&f.admin).get(format!("{base}/api/admin/projects/1/report")).send().await.unwrap().json().await.unwrap();
    let acc = |name: &str| {
        rep["report"]["annotators"].as_array().unwrap().iter().find(|a| a["name"] == name).unwrap()["gold_accuracy"].clone()
    };
    assert_eq!(acc("ann0"), 1.0);
    assert_eq!(acc("ann1"), 0.0);
    // The two regular pairs went to one annotator each (overlap 1): 2 + 3 × 2 gold = 8 labels.
    assert_eq!(label_rows(&f.db).len(), 8);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_creates_a_project_imports_and_adds_a_member() {
    let f = fixture(1, &items(1), 1);
    let base = start(&f.db).await;
    let admin = client(&f.admin);
    let ann = client(&f.annotators[0].1);
    let r: Value = admin.post(format!("{base}/api/admin/projects")).json(&json!({"name": "second", "overlap": 2})).send().await.unwrap().json().await.unwrap();
    let id = r["project"]["id"].as_i64().unwrap();
    assert!(r["project"]["guidelines"].as_str().unwrap().contains("HONEST"), "default guidelines");
    let dup = admin.post(format!("{base}/api/admin/projects")).json(&json!({"name": "second"})).send().await.unwrap();
    assert_eq!(dup.status(), 409);
    let rows = "{\"prompt\":\"p\",\"responses\":[\"a\",\"b\",\"c\"]}\n";
    let r: Value = admin.post(format!("{base}/api/admin/projects/{id}/import")).body(rows).send().await.unwrap().json().await.unwrap();
    assert_eq!((r["items"].as_i64(), r["comparisons"].as_i64()), (Some(1), Some(3)));
    // Not a member yet: the project does not exist for the annotator.
    assert_eq!(ann.get(format!("{base}/api/projects/{id}/next")).send().await.unwrap().status(), 404);
    let add = |who: &reqwest::Client| who.post(format!("{base}/api/admin/projects/{id}/members")).json(&json!({"name": "ann0"})).send();
    assert_eq!(add(&ann).await.unwrap().status(), 403);
    assert_eq!(add(&admin).await.unwrap().status(), 200);
    let v: Value = ann.get(format!("{base}/api/projects/{id}/next")).send().await.unwrap().json().await.unwrap();
    assert_eq!(v["progress"]["total"], 3);
    // A rotated token locks the old one out.
    let r: Value = admin.post(format!("{base}/api/admin/annotators/ann0/token")).send().await.unwrap().json().await.unwrap();
    assert_eq!(ann.get(format!("{base}/api/me")).send().await.unwrap().status(), 401);
    let fresh = client(r["token"].as_str().unwrap());
    assert_eq!(fresh.get(format!("{base}/api/me")).send().await.unwrap().status(), 200);
}
