//! The HTTP server: pages, the annotator API and the admin API, with authentication, body-size
//! limits and security headers. Handlers are thin: they authenticate, then call one `store`
//! function through [`Db`] (writes on the writer thread, reads on the pool).
//!
//! Routes (docs/label.md):
//! - pages: `GET /`, `/login`, `/annotate`, `/admin`, `/static/*` (no data in them; the data comes
//!   from the API, so no page is ever built from stored text).
//! - session: `POST /api/session {token}` sets the HttpOnly cookie; `POST /api/logout`.
//! - annotator: `GET /api/me`, `GET /api/projects/{id}/next`, `GET /api/assignments/{id}`,
//!   `POST /api/labels`.
//! - admin: `GET /api/admin/overview`, `GET /api/admin/projects/{id}/report`,
//!   `GET /api/admin/projects/{id}/export?aggregate=majority|soft`, `POST /api/admin/projects`,
//!   `POST /api/admin/projects/{id}/import`, `POST /api/admin/projects/{id}/members`,
//!   `POST /api/admin/annotators`,
//!   `POST /api/admin/annotators/{name}/token`.

use crate::auth::{self, COOKIE};
use crate::db::Db;
use crate::error::LabelError;
use crate::export::{self, Aggregate};
use crate::import::{self, ImportOptions};
use crate::model::{Annotator, LabelInput, Role};
use crate::report;
use crate::store;
use axum::extract::{DefaultBodyLimit, FromRequestParts, Path, Query, State};
use axum::http::header::{self, HeaderName, HeaderValue};
use axum::http::request::Parts;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::time::Duration;

/// Largest request body on every route but import: a label with a 4,000-character comment is
/// far below it.
pub const BODY_LIMIT: usize = 64 * 1024;
/// Largest JSONL upload to `POST /api/admin/projects/{id}/import`.
pub const IMPORT_LIMIT: usize = 32 * 1024 * 1024;

#[derive(Clone)]
pub struct AppState {
    pub db: Db,
}

/// Builds the application.
pub fn router(state: AppState) -> Router {
    let import_route = Router::new()
        .route("/api/admin/projects/{id}/import", post(admin_import))
        .layer(DefaultBodyLimit::max(IMPORT_LIMIT))
        .layer(axum::middleware::from_fn(|req, next| refuse_declared_over(IMPORT_LIMIT, req, next)));
    Router::new()
        .route("/", get(|| async { page(LOGIN_HTML) }))
        .route("/login", get(|| async { page(LOGIN_HTML) }))
        .route("/annotate", get(|| async { page(ANNOTATE_HTML) }))
        .route("/admin", get(|| async { page(ADMIN_HTML) }))
        .route("/static/{file}", get(static_file))
        .route("/api/session", post(login))
        .route("/api/logout", post(logout))
        .route("/api/me", get(me))
        .route("/api/projects/{id}/next", get(next))
        .route("/api/assignments/{id}", get(assignment))
        .route("/api/labels", post(submit))
        .route("/api/admin/overview", get(admin_overview))
        .route("/api/admin/projects", post(admin_create_project))
        .route("/api/admin/projects/{id}/report", get(admin_report))
        .route("/api/admin/projects/{id}/export", get(admin_export))
        .route("/api/admin/projects/{id}/members", post(admin_add_member))
        .route("/api/admin/annotators", post(admin_add_annotator))
        .route("/api/admin/annotators/{name}/token", post(admin_rotate_token))
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .layer(axum::middleware::from_fn(|req, next| refuse_declared_over(BODY_LIMIT, req, next)))
        .merge(import_route)
        .layer(axum::middleware::map_response(security_headers))
        .layer(tower_http::timeout::TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            Duration::from_secs(30),
        ))
        .with_state(state)
}

/// Serves until `shutdown` resolves.
pub async fn serve(
    listener: tokio::net::TcpListener,
    db: Db,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, router(AppState { db })).with_graceful_shutdown(shutdown).await
}

// ---------------------------------------------------------------------------------------------
// Errors and headers

/// An API error: a status and `{"error": message}`.
pub struct ApiError(StatusCode, String);

impl From<LabelError> for ApiError {
    fn from(e: LabelError) -> Self {
        let status = match &e {
            LabelError::Invalid(_) | LabelError::ImportRow { .. } => StatusCode::BAD_REQUEST,
            LabelError::NotFound(_) => StatusCode::NOT_FOUND,
            LabelError::Conflict(_) => StatusCode::CONFLICT,
            _ => {
                tracing::error!("align-label: {e}");
                StatusCode::INTERNAL_SERVER_ERROR
            }
        };
        ApiError(status, e.to_string())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.0, Json(json!({ "error": self.1 }))).into_response()
    }
}

type ApiResult<T> = Result<T, ApiError>;

/// 413 at once for a request whose `Content-Length` is over `limit`, before its body is read.
/// (`DefaultBodyLimit` alone reads up to the limit first; a client still writing a large body then
/// meets a closed socket instead of the answer.) Bodies without a declared length are still cut
/// off at `limit` by `DefaultBodyLimit`.
async fn refuse_declared_over(limit: usize, req: axum::extract::Request, next: axum::middleware::Next) -> Response {
    let declared = req.headers().get(axum::http::header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return ApiError(StatusCode::PAYLOAD_TOO_LARGE, format!("the request body is larger than the limit of {limit} bytes")).into_response();
    }
    next.run(req).await
}

/// Headers on every response: a Content-Security-Policy that allows only this origin's own
/// scripts and styles (no inline script, so even markup that slipped into a page could not run),
/// no MIME sniffing, no framing, no referrer, no caching of API answers.
async fn security_headers(mut res: Response) -> Response {
    let h = res.headers_mut();
    let set = |h: &mut axum::http::HeaderMap, k: &'static str, v: &'static str| {
        h.insert(HeaderName::from_static(k), HeaderValue::from_static(v));
    };
    set(
        h,
        "content-security-policy",
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; \
         base-uri 'none'; form-action 'self'; frame-ancestors 'none'",
    );
    set(h, "x-content-type-options", "nosniff");
    set(h, "x-frame-options", "DENY");
    set(h, "referrer-policy", "no-referrer");
    if !h.contains_key(header::CACHE_CONTROL) {
        set(h, "cache-control", "no-store");
    }
    res
}

// ---------------------------------------------------------------------------------------------
// Authentication

/// The authenticated caller (any role). Rejects with 401 when the token is missing or unknown.
pub struct Caller(pub Annotator);

/// The authenticated caller, who must be an admin (403 otherwise).
pub struct Admin(pub Annotator);

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let unauthorized = || {
            ApiError(StatusCode::UNAUTHORIZED, "a valid token is required: open your login link again".into())
        };
        let token = auth::token_from_headers(&parts.headers).ok_or_else(unauthorized)?;
        if !auth::looks_like_token(&token) {
            return Err(unauthorized());
        }
        let hash = auth::hash_token(&token);
        let who = state.db.read(move |c| store::annotator_by_token_hash(c, &hash)).await?;
        who.map(Caller).ok_or_else(unauthorized)
    }
}

impl FromRequestParts<AppState> for Admin {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let Caller(a) = Caller::from_request_parts(parts, state).await?;
        if a.role != Role::Admin {
            return Err(ApiError(StatusCode::FORBIDDEN, "this page is for admins".into()));
        }
        Ok(Admin(a))
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LoginBody {
    token: String,
}

/// Exchanges a token for the session cookie (HttpOnly, so page scripts never see it;
/// SameSite=Strict, so other sites cannot make the browser send it).
async fn login(State(st): State<AppState>, Json(body): Json<LoginBody>) -> ApiResult<Response> {
    let token = body.token.trim().to_string();
    let bad = || ApiError(StatusCode::UNAUTHORIZED, "this login link is not valid (ask your admin for a new one)".into());
    if !auth::looks_like_token(&token) {
        return Err(bad());
    }
    let hash = auth::hash_token(&token);
    let who = st.db.read(move |c| store::annotator_by_token_hash(c, &hash)).await?.ok_or_else(bad)?;
    let cookie = format!("{COOKIE}={token}; Path=/; HttpOnly; SameSite=Strict; Max-Age=2592000");
    let mut res = Json(json!({ "name": who.name, "role": who.role })).into_response();
    res.headers_mut().insert(
        header::SET_COOKIE,
        HeaderValue::from_str(&cookie).map_err(|_| bad())?,
    );
    Ok(res)
}

async fn logout() -> Response {
    let mut res = Json(json!({ "ok": true })).into_response();
    res.headers_mut().insert(
        header::SET_COOKIE,
        HeaderValue::from_static("align_label=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0"),
    );
    res
}

// ---------------------------------------------------------------------------------------------
// Annotator API

/// The caller, their projects with guidelines and their progress on each.
async fn me(State(st): State<AppState>, Caller(who): Caller) -> ApiResult<Json<Value>> {
    let id = who.id;
    let projects = st
        .db
        .read(move |c| {
            store::projects_of(c, id)?
                .into_iter()
                .map(|p| {
                    let progress = store::progress(c, id, p.id)?;
                    Ok(json!({ "id": p.id, "name": p.name, "guidelines": p.guidelines,
                               "overlap": p.overlap, "progress": progress }))
                })
                .collect::<crate::Result<Vec<Value>>>()
        })
        .await?;
    Ok(Json(json!({ "name": who.name, "role": who.role, "projects": projects })))
}

/// The caller's next comparison in a project (a write: it may create an assignment), and their
/// progress. `task` is null when their queue is empty.
async fn next(State(st): State<AppState>, Caller(who): Caller, Path(project): Path<i64>) -> ApiResult<Json<Value>> {
    let swap: bool = rand::random();
    let id = who.id;
    let task = st.db.write(move |c| store::next_task(c, id, project, swap)).await?;
    let progress = st.db.read(move |c| store::progress(c, id, project)).await?;
    Ok(Json(json!({ "task": task, "progress": progress })))
}

/// One of the caller's own assignments (another annotator's is 404).
async fn assignment(State(st): State<AppState>, Caller(who): Caller, Path(a): Path<i64>) -> ApiResult<Json<Value>> {
    let task = st.db.read(move |c| store::task(c, who.id, a)).await?;
    Ok(Json(json!({ "task": task })))
}

/// Stores a label; answers only after it is committed to disk.
async fn submit(State(st): State<AppState>, Caller(who): Caller, Json(l): Json<LabelInput>) -> ApiResult<Json<Value>> {
    let assignment = l.assignment;
    let id = who.id;
    st.db.write(move |c| store::save_label(c, id, &l)).await?;
    Ok(Json(json!({ "ok": true, "assignment": assignment })))
}

// ---------------------------------------------------------------------------------------------
// Admin API

async fn admin_overview(State(st): State<AppState>, Admin(_): Admin) -> ApiResult<Json<Value>> {
    let (projects, annotators) =
        st.db.read(|c| Ok((store::project_counts(c)?, store::annotator_rows(c)?))).await?;
    Ok(Json(json!({ "projects": projects, "annotators": annotators })))
}

/// Agreement, disagreement with the majority, gold accuracy, and each member's progress.
async fn admin_report(State(st): State<AppState>, Admin(_): Admin, Path(project): Path<i64>) -> ApiResult<Json<Value>> {
    let (p, votes, gold, progress) = st
        .db
        .read(move |c| {
            let p = store::project_by_id(c, project)?;
            let votes = store::votes(c, project)?;
            let gold: HashMap<i64, _> =
                store::comparisons(c, project)?.into_iter().filter_map(|x| Some((x.id, x.gold?))).collect();
            let mut progress = Vec::new();
            for a in store::annotator_rows(c)?.into_iter().filter(|a| a.projects.contains(&p.name)) {
                progress.push(json!({ "name": a.name, "progress": store::progress(c, a.id, project)?,
                                      "median_seconds": a.median_seconds, "last_label": a.last_label }));
            }
            Ok((p, votes, gold, progress))
        })
        .await?;
    let r = report::project_report(&votes, &gold);
    Ok(Json(json!({ "project": p, "report": r, "progress": progress })))
}

#[derive(Deserialize)]
struct ExportQuery {
    aggregate: Option<String>,
}

/// The project's TRL preference JSONL, as a download.
async fn admin_export(
    State(st): State<AppState>,
    Admin(_): Admin,
    Path(project): Path<i64>,
    Query(q): Query<ExportQuery>,
) -> ApiResult<Response> {
    let how = match q.aggregate.as_deref() {
        None | Some("majority") => Aggregate::Majority,
        Some("soft") => Aggregate::Soft,
        Some(other) => {
            return Err(ApiError(StatusCode::BAD_REQUEST, format!("aggregate `{other}`: use majority or soft")))
        }
    };
    let (p, cmps, votes) = st
        .db
        .read(move |c| Ok((store::project_by_id(c, project)?, store::comparisons(c, project)?, store::votes(c, project)?)))
        .await?;
    let body = export::to_jsonl(&export::aggregate(&cmps, &votes, how));
    let file: String = p.name.chars().map(|ch| if ch.is_ascii_alphanumeric() || ch == '-' { ch } else { '_' }).collect();
    let disposition = format!("attachment; filename=\"{file}-preferences.jsonl\"");
    let mut res = body.into_response();
    let h = res.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/jsonl; charset=utf-8"));
    if let Ok(v) = HeaderValue::from_str(&disposition) {
        h.insert(header::CONTENT_DISPOSITION, v);
    }
    Ok(res)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewProject {
    name: String,
    #[serde(default)]
    guidelines: Option<String>,
    #[serde(default)]
    overlap: Option<u32>,
}

async fn admin_create_project(State(st): State<AppState>, Admin(_): Admin, Json(b): Json<NewProject>) -> ApiResult<Json<Value>> {
    let guidelines = b.guidelines.filter(|g| !g.trim().is_empty()).unwrap_or_else(|| crate::DEFAULT_GUIDELINES.into());
    let overlap = b.overlap.unwrap_or(crate::DEFAULT_OVERLAP);
    let p = st.db.write(move |c| store::create_project(c, &b.name, &guidelines, overlap)).await?;
    Ok(Json(json!({ "project": p })))
}

#[derive(Deserialize)]
struct ImportQuery {
    gold_every: Option<usize>,
}

/// Adds the items of an uploaded JSONL body (the same rows as `align label project import`).
async fn admin_import(
    State(st): State<AppState>,
    Admin(_): Admin,
    Path(project): Path<i64>,
    Query(q): Query<ImportQuery>,
    body: String,
) -> ApiResult<Json<Value>> {
    let items = import::parse_jsonl(&body, "upload", ImportOptions { gold_every: q.gold_every })?;
    let (n_items, n_cmp) = st
        .db
        .write(move |c| {
            store::project_by_id(c, project)?;
            store::add_items(c, project, &items)
        })
        .await?;
    Ok(Json(json!({ "items": n_items, "comparisons": n_cmp })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct MemberBody {
    name: String,
}

/// Adds an existing account to a project's annotators.
async fn admin_add_member(
    State(st): State<AppState>,
    Admin(_): Admin,
    Path(project): Path<i64>,
    Json(b): Json<MemberBody>,
) -> ApiResult<Json<Value>> {
    st.db
        .write(move |c| {
            store::project_by_id(c, project)?;
            let a = store::annotator_by_name(c, &b.name)?;
            store::add_member(c, project, a.id)
        })
        .await?;
    Ok(Json(json!({ "ok": true })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewAnnotator {
    name: String,
    #[serde(default)]
    admin: bool,
    #[serde(default)]
    projects: Vec<i64>,
}

/// Creates an account and returns its token, shown this once.
async fn admin_add_annotator(State(st): State<AppState>, Admin(_): Admin, Json(b): Json<NewAnnotator>) -> ApiResult<Json<Value>> {
    let token = auth::new_token();
    let hash = auth::hash_token(&token);
    let role = if b.admin { Role::Admin } else { Role::Annotator };
    let a = st
        .db
        .write(move |c| {
            let a = store::add_annotator(c, &b.name, role, &hash)?;
            for p in &b.projects {
                store::project_by_id(c, *p)?;
                store::add_member(c, *p, a.id)?;
            }
            Ok(a)
        })
        .await?;
    Ok(Json(json!({ "annotator": a, "token": token, "login_path": format!("/login#token={token}") })))
}

/// Issues a new token for an account; its old login link stops working.
async fn admin_rotate_token(State(st): State<AppState>, Admin(_): Admin, Path(name): Path<String>) -> ApiResult<Json<Value>> {
    let token = auth::new_token();
    let hash = auth::hash_token(&token);
    let a = st.db.write(move |c| store::set_token_hash(c, &name, &hash)).await?;
    Ok(Json(json!({ "annotator": a, "token": token, "login_path": format!("/login#token={token}") })))
}

// ---------------------------------------------------------------------------------------------
// Pages and static files (embedded)

const LOGIN_HTML: &str = include_str!("ui/login.html");
const ANNOTATE_HTML: &str = include_str!("ui/annotate.html");
const ADMIN_HTML: &str = include_str!("ui/admin.html");

fn page(html: &'static str) -> Response {
    ([(header::CONTENT_TYPE, "text/html; charset=utf-8")], html).into_response()
}

async fn static_file(Path(file): Path<String>) -> Response {
    let (body, mime): (&'static str, &'static str) = match file.as_str() {
        "app.css" => (include_str!("ui/app.css"), "text/css; charset=utf-8"),
        "common.js" => (include_str!("ui/common.js"), "text/javascript; charset=utf-8"),
        "login.js" => (include_str!("ui/login.js"), "text/javascript; charset=utf-8"),
        "annotate.js" => (include_str!("ui/annotate.js"), "text/javascript; charset=utf-8"),
        "admin.js" => (include_str!("ui/admin.js"), "text/javascript; charset=utf-8"),
        _ => return (StatusCode::NOT_FOUND, "not found").into_response(),
    };
    ([(header::CONTENT_TYPE, mime), (header::CACHE_CONTROL, "no-cache")], body).into_response()
}
