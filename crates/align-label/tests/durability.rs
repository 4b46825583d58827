//! A label acknowledged to the browser is durable: many annotators submit concurrently, the
//! server process is killed with SIGKILL in the middle of the burst, restarted on the same file,
//! and every acknowledged label is found exactly once.
//!
//! `harness = false`: this executable is both the test and, with ALIGN_LABEL_CHILD_DB set, the
//! server it kills (so the server is a real separate process).

mod common;
use common::{client, fixture, items, PROJ};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const ANNOTATORS: usize = 60;
/// Kill once this many labels have been acknowledged.
const KILL_AFTER: usize = 300;

fn main() {
    if let Ok(db) = std::env::var("ALIGN_LABEL_CHILD_DB") {
        let port_file = PathBuf::from(std::env::var("ALIGN_LABEL_CHILD_PORT_FILE").unwrap());
        let addr = "127.0.0.1:0".parse().unwrap();
        align_label::serve_blocking(Path::new(&db), addr, |a| {
            let tmp = port_file.with_extension("tmp");
            std::fs::write(&tmp, a.port().to_string()).unwrap();
            std::fs::rename(&tmp, &port_file).unwrap();
        })
        .unwrap();
        return;
    }
    if std::env::args().any(|a| a == "--list") {
        println!("kill_during_burst: test");
        return;
    }
    print!("test kill_during_burst ... ");
    kill_during_burst();
    println!("ok");
}

/// The server process; killed (SIGKILL) when dropped, so a failing test leaves no process behind.
struct Server(Child);

impl Server {
    fn kill(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Starts the server process on `db`; returns it with its base URL.
#[allow(clippy::zombie_processes)] // waited for by `Server`'s `kill` / `Drop`
fn spawn_server(db: &Path, dir: &Path) -> (Server, String) {
    let port_file = dir.join("port");
    let _ = std::fs::remove_file(&port_file);
    let mut child = Command::new(std::env::current_exe().unwrap())
        .env("ALIGN_LABEL_CHILD_DB", db)
        .env("ALIGN_LABEL_CHILD_PORT_FILE", &port_file)
        .spawn()
        .unwrap();
    let t0 = Instant::now();
    loop {
        if let Ok(p) = std::fs::read_to_string(&port_file) {
            return (Server(child), format!("http://127.0.0.1:{p}"));
        }
        if t0.elapsed() > Duration::from_secs(20) {
            let _ = child.kill();
            let _ = child.wait();
            panic!("the server process did not start");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// One annotator labelling as fast as it can until an error (the kill); every acknowledged label
/// is recorded with its unique comment.
async fn annotate(base: String, token: String, who: usize, acked: Arc<Mutex<Vec<String>>>) -> bool {
    let c = client(&token);
    loop {
        let Ok(r) = c.get(format!("{base}/api/projects/{PROJ}/next")).send().await else { return false };
        let Ok(v) = r.json::<Value>().await else { return false };
        let Some(a) = v["task"]["assignment"].as_i64() else { return false };
        let comment = format!("ack {who} {a}");
        let choice = ["A", "B", "tie", "both_bad"][(a as usize + who) % 4];
        let body = json!({"assignment": a, "choice": choice, "comment": comment});
        match c.post(format!("{base}/api/labels")).json(&body).send().await {
            Ok(r) if r.status() == 200 => acked.lock().unwrap().push(comment),
            Ok(r) => panic!("unexpected status {} before the kill", r.status()),
            Err(_) => return true, // in flight when the server died
        }
    }
}

fn kill_during_burst() {
    let f = fixture(1, &items(3000), ANNOTATORS);
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let (mut server, base) = spawn_server(&f.db, f.dir.path());

    let acked = Arc::new(Mutex::new(Vec::new()));
    let tasks: Vec<_> = f
        .annotators
        .iter()
        .enumerate()
        .map(|(i, (_, tok))| rt.spawn(annotate(base.clone(), tok.clone(), i, acked.clone())))
        .collect();
    let t0 = Instant::now();
    while acked.lock().unwrap().len() < KILL_AFTER {
        assert!(t0.elapsed() < Duration::from_secs(60), "the burst is too slow");
        std::thread::sleep(Duration::from_millis(2));
    }
    server.kill(); // SIGKILL on Unix
    let acked: Vec<String> = {
        let in_flight = rt.block_on(async {
            let mut n = 0;
            for t in tasks {
                n += t.await.unwrap() as usize;
            }
            n
        });
        let acked = acked.lock().unwrap().clone();
        println!("\n  killed after {} acknowledged labels, {in_flight} submissions in flight", acked.len());
        acked
    };

    // Restart on the same file: the server comes back and every acknowledged label is there once.
    let (mut server, base) = spawn_server(&f.db, f.dir.path());
    let conn = align_label::db::open(&f.db).unwrap();
    let integrity: String = conn.query_row("PRAGMA integrity_check", [], |r| r.get(0)).unwrap();
    assert_eq!(integrity, "ok");
    let mut st = conn.prepare("SELECT COUNT(*) FROM labels WHERE comment = ?1").unwrap();
    for c in &acked {
        let n: i64 = st.query_row([c], |r| r.get(0)).unwrap();
        assert_eq!(n, 1, "acknowledged label `{c}` found {n} times");
    }
    let stored: i64 = conn.query_row("SELECT COUNT(*) FROM labels", [], |r| r.get(0)).unwrap();
    // At most the in-flight submissions may have committed without their acknowledgement arriving.
    assert!(stored as usize >= acked.len() && stored as usize <= acked.len() + ANNOTATORS, "{stored}");
    println!("  after restart: {stored} labels stored, all {} acknowledged ones exactly once", acked.len());

    // The restarted server serves the same data, and takes new labels.
    rt.block_on(async {
        let admin = client(&f.admin);
        let overview: Value = admin.get(format!("{base}/api/admin/overview")).send().await.unwrap().json().await.unwrap();
        assert_eq!(overview["projects"][0]["labels"].as_i64(), Some(stored));
        let c = client(&f.annotators[0].1);
        let v: Value = c.get(format!("{base}/api/projects/{PROJ}/next")).send().await.unwrap().json().await.unwrap();
        let body = json!({"assignment": v["task"]["assignment"], "choice": "A"});
        assert_eq!(c.post(format!("{base}/api/labels")).json(&body).send().await.unwrap().status(), 200);
    });
    server.kill();
}
