//! Shared set-up of the integration tests: a database with a project and accounts, and the server
//! on a free loopback port in this process.
#![allow(dead_code)]

use align_label::model::NewItem;
use align_label::{store, Db, Role};
use align_data::Message;
use std::path::{Path, PathBuf};

pub struct Fixture {
    pub dir: tempfile::TempDir,
    pub db: PathBuf,
    pub admin: String,
    /// (name, token) of each annotator.
    pub annotators: Vec<(String, String)>,
}

/// `n` prompts with two responses each (`resp {i} first` / `resp {i} second`).
pub fn items(n: usize) -> Vec<NewItem> {
    (0..n)
        .map(|i| NewItem {
            source_id: format!("p{i}"),
            prompt: vec![Message::new("user", format!("prompt {i}"))],
            responses: vec![format!("resp {i} first"), format!("resp {i} second")],
            gold: None,
        })
        .collect()
}

/// A database with project `proj` (the given overlap and items), an admin, and `n_annotators`
/// annotators named `ann0`, `ann1`, ... in the project.
pub fn fixture(overlap: u32, items: &[NewItem], n_annotators: usize) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("labels.sqlite");
    let mut conn = align_label::db::open(&db).unwrap();
    let p = store::create_project(&conn, "proj", "Be careful.", overlap).unwrap();
    store::transaction(&mut conn, |c| store::add_items(c, p.id, items)).unwrap();
    let (_, admin) = align_label::add_annotator(&mut conn, "boss", Role::Admin, &[]).unwrap();
    let annotators = (0..n_annotators)
        .map(|i| {
            let name = format!("ann{i}");
            let (_, t) = align_label::add_annotator(&mut conn, &name, Role::Annotator, &["proj".into()]).unwrap();
            (name, t)
        })
        .collect();
    Fixture { dir, db, admin, annotators }
}

/// Starts the server on 127.0.0.1 (a free port) on the current Tokio runtime; returns its base URL.
pub async fn start(db: &Path) -> String {
    let db = Db::start(db).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(align_label::server::serve(listener, db, std::future::pending()));
    format!("http://{addr}")
}

/// A client that sends `token` as a bearer token.
pub fn client(token: &str) -> reqwest::Client {
    let mut h = reqwest::header::HeaderMap::new();
    h.insert("authorization", format!("Bearer {token}").parse().unwrap());
    reqwest::Client::builder().default_headers(h).build().unwrap()
}

/// The project id of `proj` (always 1 in a fresh fixture).
pub const PROJ: i64 = 1;
