//! The SQLite database: opening it (WAL, `synchronous=FULL`), its schema, and [`Db`], the handle
//! the server uses: one writer thread that commits in groups, and a pool of read connections.
//!
//! Durability: a label is acknowledged to the browser only after the transaction holding it has
//! committed. In WAL mode with `synchronous=FULL` a commit fsyncs the write-ahead log, so an
//! acknowledged label survives a killed process (SIGKILL) and also a power cut or kernel crash;
//! `NORMAL` would survive only the former. The fsync costs one disk flush per transaction, so the
//! writer commits every job waiting in its queue in one transaction (group commit), each job in
//! its own savepoint so one failed job does not undo the others.

use crate::error::{LabelError, Result};
pub use rusqlite::Connection;
use rusqlite::OpenFlags;
use std::path::{Path, PathBuf};
use std::sync::{mpsc, Arc, Mutex};

/// The schema, applied idempotently at every open. Text columns with CHECK constraints hold the
/// enums of `model.rs`; `prompt` holds the prompt's messages as JSON.
const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS projects (
  id INTEGER PRIMARY KEY,
  name TEXT NOT NULL UNIQUE,
  guidelines TEXT NOT NULL,
  overlap INTEGER NOT NULL CHECK (overlap >= 1),
  created_at INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS items (
  id INTEGER PRIMARY KEY,
  project_id INTEGER NOT NULL REFERENCES projects(id),
  source_id TEXT NOT NULL,
  prompt TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS responses (
  id INTEGER PRIMARY KEY,
  item_id INTEGER NOT NULL REFERENCES items(id),
  idx INTEGER NOT NULL,
  content TEXT NOT NULL,
  UNIQUE (item_id, idx)
);
CREATE TABLE IF NOT EXISTS comparisons (
  id INTEGER PRIMARY KEY,
  project_id INTEGER NOT NULL REFERENCES projects(id),
  item_id INTEGER NOT NULL REFERENCES items(id),
  first_id INTEGER NOT NULL REFERENCES responses(id),
  second_id INTEGER NOT NULL REFERENCES responses(id),
  gold TEXT CHECK (gold IN ('first', 'second')),
  n_assigned INTEGER NOT NULL DEFAULT 0
);
-- The queue: a project's comparisons, gold apart, fullest first (store::next_task).
CREATE INDEX IF NOT EXISTS comparisons_queue ON comparisons(project_id, gold, n_assigned DESC, id);
CREATE TABLE IF NOT EXISTS annotators (
  id INTEGER PRIMARY KEY,
  name TEXT NOT NULL UNIQUE,
  role TEXT NOT NULL CHECK (role IN ('admin', 'annotator')),
  token_hash TEXT NOT NULL UNIQUE,
  created_at INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS members (
  project_id INTEGER NOT NULL REFERENCES projects(id),
  annotator_id INTEGER NOT NULL REFERENCES annotators(id),
  PRIMARY KEY (project_id, annotator_id)
);
CREATE TABLE IF NOT EXISTS assignments (
  id INTEGER PRIMARY KEY,
  comparison_id INTEGER NOT NULL REFERENCES comparisons(id),
  annotator_id INTEGER NOT NULL REFERENCES annotators(id),
  project_id INTEGER NOT NULL REFERENCES projects(id),
  swapped INTEGER NOT NULL CHECK (swapped IN (0, 1)),
  created_at INTEGER NOT NULL,
  UNIQUE (comparison_id, annotator_id)
);
CREATE INDEX IF NOT EXISTS assignments_by_annotator ON assignments(annotator_id, project_id);
CREATE TABLE IF NOT EXISTS labels (
  assignment_id INTEGER PRIMARY KEY REFERENCES assignments(id),
  verdict TEXT NOT NULL CHECK (verdict IN ('first', 'second', 'tie', 'both_bad')),
  strength TEXT CHECK (strength IN ('slightly', 'clearly')),
  helpful TEXT CHECK (helpful IN ('first', 'second', 'tie')),
  honest TEXT CHECK (honest IN ('first', 'second', 'tie')),
  harmless TEXT CHECK (harmless IN ('first', 'second', 'tie')),
  comment TEXT NOT NULL DEFAULT '',
  duration_ms INTEGER,
  created_at INTEGER NOT NULL,
  updated_at INTEGER NOT NULL
);
";

/// Opens (creating if needed) the database at `path` with the pragmas every connection needs and
/// the schema applied.
pub fn open(path: &Path) -> Result<Connection> {
    let conn = Connection::open(path)?;
    configure(&conn)?;
    conn.execute_batch(SCHEMA)?;
    Ok(conn)
}

/// WAL journal (readers never block the writer), fsync at every commit, foreign keys, and a busy
/// timeout so a CLI command next to a running server waits instead of failing.
fn configure(conn: &Connection) -> Result<()> {
    conn.busy_timeout(std::time::Duration::from_secs(10))?;
    let mode: String = conn.query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(LabelError::Invalid(format!(
            "SQLite refused WAL mode (got `{mode}`); put the database on a local disk"
        )));
    }
    conn.execute_batch("PRAGMA synchronous = FULL; PRAGMA foreign_keys = ON;")?;
    Ok(())
}

/// Seconds since the Unix epoch.
pub fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// What a queued write returns to the writer: whether it succeeded (its savepoint is released or
/// rolled back accordingly) and how to answer the caller once the commit's outcome is known.
struct Pending {
    ok: bool,
    answer: Box<dyn FnOnce(Option<String>) + Send>,
}

type Job = Box<dyn FnOnce(&Connection) -> Pending + Send>;

/// Most jobs committed in one transaction.
const MAX_GROUP: usize = 256;

/// The server's database handle: cheap to clone.
#[derive(Clone)]
pub struct Db {
    path: PathBuf,
    writer: mpsc::Sender<Job>,
    readers: Arc<Mutex<Vec<Connection>>>,
}

impl Db {
    /// Opens the database and starts the writer thread.
    pub fn start(path: &Path) -> Result<Db> {
        let conn = open(path)?;
        let (tx, rx) = mpsc::channel::<Job>();
        std::thread::Builder::new()
            .name("align-label-writer".into())
            .spawn(move || writer_loop(conn, rx))
            .map_err(|e| LabelError::Io { path: path.to_path_buf(), source: e })?;
        Ok(Db { path: path.to_path_buf(), writer: tx, readers: Arc::new(Mutex::new(Vec::new())) })
    }

    /// Runs `f` in a write transaction on the writer thread; resolves after the commit (so an
    /// `Ok` is durable), or with `f`'s error (its changes rolled back), or with the commit's error.
    pub async fn write<R: Send + 'static>(
        &self,
        f: impl FnOnce(&Connection) -> Result<R> + Send + 'static,
    ) -> Result<R> {
        let (tx, rx) = tokio::sync::oneshot::channel::<Result<R>>();
        let job: Job = Box::new(move |conn: &Connection| {
            let r = f(conn);
            Pending {
                ok: r.is_ok(),
                answer: Box::new(move |commit_error: Option<String>| {
                    let r = match commit_error {
                        Some(e) => Err(LabelError::Commit(e)),
                        None => r,
                    };
                    let _ = tx.send(r);
                }),
            }
        });
        self.writer.send(job).map_err(|_| LabelError::WriterGone)?;
        rx.await.map_err(|_| LabelError::WriterGone)?
    }

    /// Runs `f` on a read connection from the pool, off the async threads. Reads see every
    /// committed write.
    pub async fn read<R: Send + 'static>(
        &self,
        f: impl FnOnce(&Connection) -> Result<R> + Send + 'static,
    ) -> Result<R> {
        let pool = self.readers.clone();
        let path = self.path.clone();
        tokio::task::spawn_blocking(move || {
            let conn = match pool.lock().map(|mut p| p.pop()) {
                Ok(Some(c)) => c,
                _ => open_reader(&path)?,
            };
            let r = f(&conn);
            if let Ok(mut p) = pool.lock() {
                p.push(conn);
            }
            r
        })
        .await
        .map_err(|_| LabelError::WriterGone)?
    }
}

fn open_reader(path: &Path) -> Result<Connection> {
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    conn.busy_timeout(std::time::Duration::from_secs(10))?;
    Ok(conn)
}

/// The writer: take every job waiting (up to [`MAX_GROUP`]), run each in a savepoint of one
/// transaction, commit, then answer each caller.
fn writer_loop(conn: Connection, rx: mpsc::Receiver<Job>) {
    while let Ok(first) = rx.recv() {
        let mut jobs = vec![first];
        while jobs.len() < MAX_GROUP {
            match rx.try_recv() {
                Ok(j) => jobs.push(j),
                Err(_) => break,
            }
        }
        if let Err(e) = conn.execute_batch("BEGIN IMMEDIATE") {
            // Nothing ran; dropping the jobs answers each caller with `WriterGone`.
            tracing::error!("align-label: cannot begin a transaction: {e}");
            continue;
        }
        let mut answers = Vec::with_capacity(jobs.len());
        for job in jobs {
            if conn.execute_batch("SAVEPOINT job").is_err() {
                continue; // dropped: its caller sees `WriterGone`
            }
            // A panicking job is rolled back and dropped; the writer carries on.
            let ran = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| job(&conn)));
            let ok = matches!(&ran, Ok(p) if p.ok);
            let end = if ok { "RELEASE job" } else { "ROLLBACK TO job; RELEASE job" };
            let _ = conn.execute_batch(end);
            if let Ok(p) = ran {
                answers.push(p.answer);
            }
        }
        let outcome = conn.execute_batch("COMMIT").map_err(|e| e.to_string());
        if outcome.is_err() {
            let _ = conn.execute_batch("ROLLBACK");
        }
        for answer in answers {
            answer(outcome.clone().err());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Concurrent writes are grouped into transactions, yet a failing job (a duplicate name)
    /// neither fails nor undoes the others, and every `Ok` is visible to readers at once.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn group_commit_isolates_failures_and_acknowledges_after_commit() {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::start(&dir.path().join("t.sqlite")).unwrap();
        let mut tasks = Vec::new();
        for i in 0..60 {
            let db = db.clone();
            // Names repeat every 50: ten jobs must fail with a conflict.
            tasks.push(tokio::spawn(async move {
                let name = format!("p{}", i % 50);
                let r = db.write(move |c| crate::store::create_project(c, &name, "", 1)).await;
                if let Ok(p) = &r {
                    // Acknowledged means committed: a reader sees it now.
                    let id = p.id;
                    let seen = db.read(move |c| crate::store::project_by_id(c, id)).await;
                    assert!(seen.is_ok());
                }
                r
            }));
        }
        let mut ok = 0;
        let mut conflicts = 0;
        for t in tasks {
            match t.await.unwrap() {
                Ok(_) => ok += 1,
                Err(LabelError::Conflict(_)) => conflicts += 1,
                Err(e) => panic!("{e}"),
            }
        }
        assert_eq!((ok, conflicts), (50, 10));
        let n = db.read(|c| Ok(crate::store::projects(c)?.len())).await.unwrap();
        assert_eq!(n, 50);
        // The database is in WAL mode with full sync.
        let (mode, sync): (String, i64) = db
            .write(|c| {
                Ok((c.query_row("PRAGMA journal_mode", [], |r| r.get(0))?, c.query_row("PRAGMA synchronous", [], |r| r.get(0))?))
            })
            .await
            .unwrap();
        assert_eq!((mode.as_str(), sync), ("wal", 2));
    }
}
