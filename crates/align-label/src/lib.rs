//! Preference-collection web app for several annotators (issue 9; docs/label.md).
//!
//! An admin imports prompts with two or more candidate responses into a project; each annotator
//! gets a login link and works through their own queue, one comparison at a time; each comparison
//! goes to `overlap` annotators so their agreement can be measured; the votes are exported as a
//! TRL preference data set for `align rm` and `align dpo`.
//!
//! - [`model`]: verdicts, choices, roles, the records passed around.
//! - [`db`]: SQLite (WAL, `synchronous=FULL`), the schema, the group-committing writer.
//! - [`store`]: every SQL statement, parameterized.
//! - [`auth`]: random tokens, stored as SHA-256 hashes.
//! - [`import`]: JSONL rows → items; [`export`]: votes → TRL preference rows.
//! - [`agreement`]: Cohen's / Fleiss' kappa, Krippendorff's alpha; [`report`]: the admin's statistics.
//! - [`server`]: the axum routes and the embedded pages (`src/ui/`).

pub mod agreement;
pub mod auth;
pub mod db;
pub mod error;
pub mod export;
pub mod import;
pub mod model;
pub mod report;
pub mod server;
pub mod store;

pub use db::Db;
pub use error::{LabelError, Result};
pub use export::Aggregate;
pub use import::ImportOptions;
pub use model::{Annotator, Project, Role};

use std::net::SocketAddr;
use std::path::Path;

/// Annotators per comparison when a project does not say.
pub const DEFAULT_OVERLAP: u32 = 3;

/// Guidelines of a project created without its own.
pub const DEFAULT_GUIDELINES: &str = include_str!("ui/guidelines.txt");

/// Creates an account and returns it with its token (shown once; only its hash is stored). The
/// account joins the given projects.
pub fn add_annotator(
    conn: &mut rusqlite::Connection,
    name: &str,
    role: Role,
    projects: &[String],
) -> Result<(Annotator, String)> {
    let token = auth::new_token();
    let hash = auth::hash_token(&token);
    let a = store::transaction(conn, |c| {
        let a = store::add_annotator(c, name, role, &hash)?;
        for p in projects {
            let p = store::project_by_name(c, p)?;
            store::add_member(c, p.id, a.id)?;
        }
        Ok(a)
    })?;
    Ok((a, token))
}

/// Creates the account `admin` when the database has no admin yet; returns its token then.
pub fn ensure_admin(conn: &mut rusqlite::Connection) -> Result<Option<String>> {
    if store::has_admin(conn)? {
        return Ok(None);
    }
    let name = if store::annotator_by_name(conn, "admin").is_ok() { "admin-1" } else { "admin" };
    add_annotator(conn, name, Role::Admin, &[]).map(|(_, t)| Some(t))
}

/// The login link of a token on a server at `base` (e.g. `http://127.0.0.1:8080`). The token is
/// in the fragment, which browsers never send to a server or in a Referer header.
pub fn login_link(base: &str, token: &str) -> String {
    format!("{}/login#token={token}", base.trim_end_matches('/'))
}

/// Runs the server on `addr` until Ctrl-C (blocking; builds its own Tokio runtime). `on_ready`
/// is called with the bound address once it accepts connections.
pub fn serve_blocking(db_path: &Path, addr: SocketAddr, on_ready: impl FnOnce(SocketAddr)) -> Result<()> {
    let io = |e: std::io::Error| LabelError::Io { path: db_path.to_path_buf(), source: e };
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().map_err(io)?;
    rt.block_on(async {
        let db = Db::start(db_path)?;
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|e| LabelError::Invalid(format!("cannot listen on {addr}: {e}")))?;
        let local = listener.local_addr().map_err(io)?;
        on_ready(local);
        let shutdown = async {
            let _ = tokio::signal::ctrl_c().await;
        };
        server::serve(listener, db, shutdown).await.map_err(io)
    })
}
