//! Load: 50 annotators label concurrently over loopback; reports labels/s and latency
//! percentiles (docs/label.md records the numbers). The server runs on its own Tokio runtime
//! (2 worker threads) in this process; clients on another.

mod common;
use common::{client, fixture, items, PROJ};
use serde_json::{json, Value};
use std::time::{Duration, Instant};

const ANNOTATORS: usize = 50;
const LABELS_EACH: usize = 40;

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1]
}

#[test]
fn fifty_concurrent_annotators() {
    let f = fixture(3, &items(800), ANNOTATORS);
    // The server on its own runtime and thread.
    let (tx, rx) = std::sync::mpsc::channel();
    let db = f.db.clone();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
        rt.block_on(async {
            tx.send(common::start(&db).await).unwrap();
            std::future::pending::<()>().await;
        });
    });
    let base = rx.recv().unwrap();

    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let t0 = Instant::now();
    let results: Vec<(Vec<Duration>, Vec<Duration>)> = rt.block_on(async {
        let tasks: Vec<_> = f
            .annotators
            .iter()
            .map(|(_, tok)| {
                let (base, tok) = (base.clone(), tok.clone());
                tokio::spawn(async move {
                    let c = client(&tok);
                    let (mut next_lat, mut submit_lat) = (Vec::new(), Vec::new());
                    for i in 0..LABELS_EACH {
                        let t = Instant::now();
                        let v: Value = c.get(format!("{base}/api/projects/{PROJ}/next")).send().await.unwrap().json().await.unwrap();
                        next_lat.push(t.elapsed());
                        let choice = ["A", "B", "tie"][i % 3];
                        let body = json!({"assignment": v["task"]["assignment"], "choice": choice,
                                          "strength": "clearly", "axes": {"helpful": "A"}, "comment": "load"});
                        let t = Instant::now();
                        let r = c.post(format!("{base}/api/labels")).json(&body).send().await.unwrap();
                        assert_eq!(r.status(), 200);
                        submit_lat.push(t.elapsed());
                    }
                    (next_lat, submit_lat)
                })
            })
            .collect();
        let mut out = Vec::new();
        for t in tasks {
            out.push(t.await.unwrap());
        }
        out
    });
    let wall = t0.elapsed();
    let mut next: Vec<Duration> = results.iter().flat_map(|r| r.0.clone()).collect();
    let mut submit: Vec<Duration> = results.iter().flat_map(|r| r.1.clone()).collect();
    next.sort();
    submit.sort();
    let n = submit.len();
    let conn = align_label::db::open(&f.db).unwrap();
    assert_eq!(align_label::store::label_count(&conn).unwrap(), n as i64);
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    println!(
        "load: {ANNOTATORS} concurrent annotators, {n} labels in {:.2} s = {:.0} labels/s (each label = GET next + POST label)\n\
         load: POST /api/labels  p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms\n\
         load: GET  next         p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
        wall.as_secs_f64(),
        n as f64 / wall.as_secs_f64(),
        ms(percentile(&submit, 0.5)),
        ms(percentile(&submit, 0.99)),
        ms(*submit.last().unwrap()),
        ms(percentile(&next, 0.5)),
        ms(percentile(&next, 0.99)),
        ms(*next.last().unwrap()),
    );
    // Generous bound for a shared 2-core machine; a stalled writer or lock convoy would break it.
    assert!(percentile(&submit, 0.99) < Duration::from_secs(3), "p99 too slow");
}
