//! The HTTP layer: axum routes, API-key check, body limits, and the translation between a
//! [`Plan`] running in a model's scheduler and OpenAI's JSON and server-sent events.
//!
//! | route | what |
//! |---|---|
//! | `GET /` | the playground page (two models side by side) |
//! | `GET /health` | liveness and per-model counters |
//! | `POST /v1/chat/completions` | chat, streaming or not |
//! | `POST /v1/completions` | raw text completion, streaming or not |
//! | `GET /v1/models`, `GET /v1/models/{id}` | the served models |

use crate::config::ServeConfig;
use crate::error::{ApiError, ServeError};
use crate::model::ServedModel;
use crate::openai::*;
use crate::output::{ChoiceOutput, Piece, TokenInfo};
use crate::request::{self, Plan};
use crate::scheduler::{Job, JobEvent};
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, Path, Request, State};
use axum::http::{header, Method, StatusCode, Uri};
use axum::middleware::{self, Next};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use futures::StreamExt as _;
use serde::de::DeserializeOwned;
use std::convert::Infallible;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use tokio::sync::mpsc::{self, UnboundedReceiver};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;

const PLAYGROUND: &str = include_str!("playground.html");

/// Everything the handlers share.
pub struct AppState {
    pub models: Vec<Arc<ServedModel>>,
    pub cfg: ServeConfig,
    permits: Arc<Semaphore>,
}

impl AppState {
    pub fn new(models: Vec<ServedModel>, cfg: ServeConfig) -> Result<Self, ServeError> {
        if models.is_empty() {
            return Err(ServeError::NoModel);
        }
        for (i, m) in models.iter().enumerate() {
            if models[..i].iter().any(|o| o.name == m.name) {
                return Err(ServeError::DuplicateName(m.name.clone()));
            }
        }
        let permits = Arc::new(Semaphore::new(cfg.max_concurrent.max(1)));
        Ok(AppState { models: models.into_iter().map(Arc::new).collect(), cfg, permits })
    }

    pub fn model(&self, name: &str) -> Result<&Arc<ServedModel>, ApiError> {
        self.models.iter().find(|m| m.name == name).ok_or_else(|| {
            let names: Vec<&str> = self.models.iter().map(|m| m.name.as_str()).collect();
            ApiError::not_found(format!("the model `{name}` does not exist; this server serves: {}", names.join(", ")))
                .with_param("model")
                .with_code("model_not_found")
        })
    }

    /// Requests being handled now (running or waiting for the batch).
    pub fn in_flight(&self) -> usize {
        self.cfg.max_concurrent.max(1) - self.permits.available_permits()
    }
}

/// The application: routes, API-key check on `/v1/*`, body limit, OpenAI-shaped 404/405.
pub fn router(state: Arc<AppState>) -> Router {
    let v1 = Router::new()
        .route("/v1/chat/completions", post(chat))
        .route("/v1/completions", post(completions))
        .route("/v1/models", get(list_models))
        .route("/v1/models/{id}", get(get_model))
        .route_layer(middleware::from_fn_with_state(state.clone(), auth));
    Router::new()
        .route("/", get(|| async { Html(PLAYGROUND) }))
        .route("/health", get(health))
        .merge(v1)
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(state.cfg.max_body_bytes))
        .layer(middleware::from_fn_with_state(state.clone(), refuse_declared_over))
        .with_state(state)
}

/// 413 at once for a request whose `Content-Length` is over `--max-body-bytes`, before its body
/// is read (`DefaultBodyLimit` alone reads up to the limit first, and a client still writing a
/// large body then meets a closed socket instead of the answer). Bodies without a declared length
/// are still cut off by `DefaultBodyLimit`.
async fn refuse_declared_over(State(st): State<Arc<AppState>>, req: Request, next: middleware::Next) -> Response {
    let limit = st.cfg.max_body_bytes;
    let declared = req.headers().get(axum::http::header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return ApiError::too_large(limit).into_response();
    }
    next.run(req).await
}

/// Serves `router(state)` on `listener` until `shutdown` completes. Connections use
/// TCP_NODELAY: a stream is many small writes, and Nagle's algorithm with the client's delayed
/// ACK would hold each one back ~40 ms.
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: Arc<AppState>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    use axum::serve::ListenerExt;
    let listener = listener.tap_io(|tcp| {
        if let Err(e) = tcp.set_nodelay(true) {
            tracing::warn!("could not set TCP_NODELAY: {e}");
        }
    });
    axum::serve(listener, router(state)).with_graceful_shutdown(shutdown).await
}

async fn auth(State(st): State<Arc<AppState>>, req: Request, next: Next) -> Response {
    if let Some(key) = &st.cfg.api_key {
        let given = req.headers().get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()).and_then(|v| v.strip_prefix("Bearer "));
        match given {
            None => return ApiError::unauthorized("missing API key: send `Authorization: Bearer <key>`").into_response(),
            Some(k) if !same_secret(k.trim().as_bytes(), key.as_bytes()) => {
                return ApiError::unauthorized("incorrect API key").into_response()
            }
            Some(_) => {}
        }
    }
    next.run(req).await
}

/// Compares without stopping at the first differing byte (no timing hint about the key).
fn same_secret(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

async fn not_found(method: Method, uri: Uri) -> ApiError {
    ApiError::not_found(format!(
        "no route {method} {}: this server has POST /v1/chat/completions, POST /v1/completions, GET /v1/models",
        uri.path()
    ))
}

async fn method_not_allowed(method: Method, uri: Uri) -> ApiError {
    ApiError { status: StatusCode::METHOD_NOT_ALLOWED, ..ApiError::invalid(format!("{method} is not allowed on {}", uri.path())) }
}

async fn health(State(st): State<Arc<AppState>>) -> Json<serde_json::Value> {
    let models: Vec<_> = st
        .models
        .iter()
        .map(|m| {
            let s = &m.scheduler.stats;
            serde_json::json!({
                "id": m.name,
                "running_sequences": s.running.load(Ordering::Relaxed),
                "queued_requests": s.queued.load(Ordering::Relaxed),
                "generated_tokens": s.tokens.load(Ordering::Relaxed),
                "decode_steps": s.steps.load(Ordering::Relaxed),
                "max_batch_seen": s.max_batch_seen.load(Ordering::Relaxed),
            })
        })
        .collect();
    Json(serde_json::json!({ "status": "ok", "in_flight_requests": st.in_flight(), "models": models }))
}

fn card(m: &ServedModel) -> ModelCard {
    ModelCard { id: m.name.clone(), object: "model", created: m.created, owned_by: "align", max_model_len: m.ctx }
}

async fn list_models(State(st): State<Arc<AppState>>) -> Json<ModelList> {
    Json(ModelList { object: "list", data: st.models.iter().map(|m| card(m)).collect() })
}

async fn get_model(State(st): State<Arc<AppState>>, Path(id): Path<String>) -> Result<Json<ModelCard>, ApiError> {
    Ok(Json(card(st.model(&id)?)))
}

/// The JSON body as `T`: 413 over the size limit, 400 naming the problem otherwise (invalid
/// JSON, an unknown field, a missing or mistyped one).
fn parse_json<T: DeserializeOwned + KnownFields>(body: Result<Bytes, BytesRejection>, limit: usize) -> Result<T, ApiError> {
    let bytes = body.map_err(|e| {
        if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::too_large(limit)
        } else {
            ApiError::invalid(format!("could not read the request body: {}", e.body_text()))
        }
    })?;
    let value: serde_json::Value = serde_json::from_slice(&bytes).map_err(|e| {
        ApiError::invalid(format!("the body is not valid JSON ({e}); send a JSON object with Content-Type: application/json"))
    })?;
    let Some(obj) = value.as_object() else {
        return Err(ApiError::invalid("the body must be a JSON object"));
    };
    if let Some(k) = obj.keys().find(|k| !T::FIELDS.contains(&k.as_str()) && !SAMPLING_FIELDS.contains(&k.as_str())) {
        let mut known: Vec<&str> = T::FIELDS.iter().chain(SAMPLING_FIELDS).copied().collect();
        known.sort_unstable();
        return Err(ApiError::invalid_param(k, format!("unknown field `{k}`; this endpoint reads: {}", known.join(", "))));
    }
    serde_json::from_value(value).map_err(|e| ApiError::invalid(format!("invalid request: {e}")))
}

async fn chat(State(st): State<Arc<AppState>>, body: Result<Bytes, BytesRejection>) -> Response {
    let run = async {
        let req: ChatRequest = parse_json(body, st.cfg.max_body_bytes)?;
        let model = st.model(&req.model)?.clone();
        let plan = request::chat_plan(&model, &req, &st.cfg)?;
        let job = start(&st, &model, &plan)?;
        if plan.stream {
            Ok(stream(model, plan, job, Kind::Chat).into_response())
        } else {
            Ok(Json(collect_chat(&model, &plan, job).await?).into_response())
        }
    };
    run.await.unwrap_or_else(|e: ApiError| e.into_response())
}

async fn completions(State(st): State<Arc<AppState>>, body: Result<Bytes, BytesRejection>) -> Response {
    let run = async {
        let req: CompletionRequest = parse_json(body, st.cfg.max_body_bytes)?;
        let model = st.model(&req.model)?.clone();
        let plan = request::completion_plan(&model, &req, &st.cfg)?;
        let job = start(&st, &model, &plan)?;
        if plan.stream {
            Ok(stream(model, plan, job, Kind::Completion).into_response())
        } else {
            Ok(Json(collect_completion(&model, &plan, job).await?).into_response())
        }
    };
    run.await.unwrap_or_else(|e: ApiError| e.into_response())
}

/// A job in a scheduler, seen from its request. Dropping it (the client left) closes the event
/// channel, and the scheduler drops the job's sequences at its next turn.
struct Running {
    rx: UnboundedReceiver<JobEvent>,
    cancel: Arc<Vec<AtomicBool>>,
    deadline: Instant,
    timeout_s: f64,
    _permit: OwnedSemaphorePermit,
}

/// Takes a concurrency slot (429 when none is free) and queues the plan's job.
fn start(st: &AppState, model: &ServedModel, plan: &Plan) -> Result<Running, ApiError> {
    let permit = st.permits.clone().try_acquire_owned().map_err(|_| ApiError::busy(st.cfg.max_concurrent))?;
    let (tx, rx) = mpsc::unbounded_channel();
    let cancel: Arc<Vec<AtomicBool>> = Arc::new((0..plan.choices()).map(|_| AtomicBool::new(false)).collect());
    let job = Job { seqs: plan.seqs(), events: tx, cancel: cancel.clone() };
    if !model.scheduler.submit(job) {
        return Err(ApiError::unavailable(format!("the engine of model `{}` has stopped", model.name)));
    }
    Ok(Running {
        rx,
        cancel,
        deadline: Instant::now() + st.cfg.request_timeout,
        timeout_s: st.cfg.request_timeout.as_secs_f64(),
        _permit: permit,
    })
}

impl Running {
    /// The next piece of any choice, `None` once every choice has finished.
    async fn next(&mut self, outs: &mut [ChoiceOutput<'_>]) -> Result<Option<(usize, Piece)>, ApiError> {
        loop {
            if outs.iter().all(|o| o.finish.is_some()) {
                return Ok(None);
            }
            let (choice, ev) = match tokio::time::timeout_at(self.deadline, self.rx.recv()).await {
                Err(_) => return Err(ApiError::timeout(self.timeout_s)),
                Ok(None) => return Err(ApiError::unavailable("the engine stopped before the generation finished")),
                Ok(Some(JobEvent::Error(m))) => return Err(ApiError::internal(m)),
                Ok(Some(JobEvent::Token { choice, ev })) => (choice, ev),
            };
            let Some(out) = outs.get_mut(choice) else { continue };
            if out.finish.is_some() {
                continue;
            }
            let piece = out.push(&ev).map_err(ApiError::internal)?;
            if piece.hit_stop_string {
                self.cancel[choice].store(true, Ordering::Relaxed);
            }
            return Ok(Some((choice, piece)));
        }
    }
}

fn outputs<'t>(model: &'t ServedModel, plan: &Plan) -> Vec<ChoiceOutput<'t>> {
    (0..plan.choices()).map(|_| ChoiceOutput::new(&model.tokenizer, plan.stops.clone(), plan.logprobs.is_some())).collect()
}

fn now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

fn usage(plan: &Plan, outs: &[ChoiceOutput<'_>]) -> Usage {
    Usage::new(plan.prompt_tokens(), outs.iter().map(|o| o.tokens).sum())
}

fn chat_logprob(t: TokenInfo) -> TokenLogprob {
    TokenLogprob {
        bytes: t.token.as_bytes().to_vec(),
        token: t.token,
        logprob: t.logprob,
        top_logprobs: t.top.into_iter().map(|(token, logprob)| TopLogprob { bytes: token.as_bytes().to_vec(), token, logprob }).collect(),
    }
}

fn legacy_logprobs(infos: Vec<(usize, TokenInfo)>) -> CompletionLogprobs {
    let mut l = CompletionLogprobs::default();
    for (offset, t) in infos {
        l.tokens.push(t.token);
        l.token_logprobs.push(t.logprob);
        // Two ids may decode to the same text (partial UTF-8): keep the likelier.
        let mut top = std::collections::BTreeMap::new();
        for (tok, lp) in t.top {
            top.entry(tok).or_insert(lp);
        }
        l.top_logprobs.push(top);
        l.text_offset.push(offset);
    }
    l
}

async fn collect_chat(model: &ServedModel, plan: &Plan, mut job: Running) -> Result<ChatCompletion, ApiError> {
    let mut outs = outputs(model, plan);
    let mut lps: Vec<Vec<TokenLogprob>> = vec![vec![]; outs.len()];
    while let Some((c, p)) = job.next(&mut outs).await? {
        lps[c].extend(p.logprob.map(chat_logprob));
    }
    let usage = usage(plan, &outs);
    let choices = outs
        .iter()
        .zip(lps)
        .enumerate()
        .map(|(index, (o, content))| ChatChoice {
            index,
            message: AssistantMessage { role: "assistant", content: o.text.clone() },
            logprobs: plan.logprobs.map(|_| ChatLogprobs { content }),
            finish_reason: o.finish.unwrap_or("length"),
        })
        .collect();
    Ok(ChatCompletion {
        id: format!("chatcmpl-{:016x}", rand::random::<u64>()),
        object: "chat.completion",
        created: now(),
        model: model.name.clone(),
        system_fingerprint: FINGERPRINT,
        choices,
        usage,
    })
}

async fn collect_completion(model: &ServedModel, plan: &Plan, mut job: Running) -> Result<Completion, ApiError> {
    let mut outs = outputs(model, plan);
    let mut lps: Vec<Vec<(usize, TokenInfo)>> = vec![vec![]; outs.len()];
    while let Some((c, p)) = job.next(&mut outs).await? {
        lps[c].extend(p.logprob.map(|l| (p.offset, l)));
    }
    let usage = usage(plan, &outs);
    let choices = outs
        .iter()
        .zip(lps)
        .enumerate()
        .map(|(index, (o, l))| CompletionChoice {
            index,
            text: o.text.clone(),
            logprobs: plan.logprobs.map(|_| legacy_logprobs(l)),
            finish_reason: Some(o.finish.unwrap_or("length")),
        })
        .collect();
    Ok(Completion {
        id: format!("cmpl-{:016x}", rand::random::<u64>()),
        object: "text_completion",
        created: now(),
        model: model.name.clone(),
        system_fingerprint: FINGERPRINT,
        choices,
        usage: Some(usage),
    })
}

#[derive(Clone, Copy)]
enum Kind {
    Chat,
    Completion,
}

/// Builds the stream chunks of one endpoint (same id and `created` on every chunk).
struct Chunks {
    kind: Kind,
    id: String,
    created: u64,
    model: String,
    logprobs: bool,
}

impl Chunks {
    fn event<T: serde::Serialize>(v: &T) -> Event {
        Event::default().data(serde_json::to_string(v).unwrap_or_default())
    }

    fn chat(&self, choices: Vec<ChunkChoice>, usage: Option<Usage>) -> Event {
        Self::event(&ChatChunk {
            id: self.id.clone(),
            object: "chat.completion.chunk",
            created: self.created,
            model: self.model.clone(),
            system_fingerprint: FINGERPRINT,
            choices,
            usage,
        })
    }

    fn completion(&self, choices: Vec<CompletionChoice>, usage: Option<Usage>) -> Event {
        Self::event(&Completion {
            id: self.id.clone(),
            object: "text_completion",
            created: self.created,
            model: self.model.clone(),
            system_fingerprint: FINGERPRINT,
            choices,
            usage,
        })
    }

    /// The first chunk of each chat choice announces the assistant role.
    fn opening(&self, index: usize) -> Option<Event> {
        let delta = Delta { role: Some("assistant"), content: Some(String::new()) };
        matches!(self.kind, Kind::Chat).then(|| self.chat(vec![ChunkChoice { index, delta, logprobs: None, finish_reason: None }], None))
    }

    /// A piece's chunks: its text (and log-prob) if any, then its finish reason if any.
    fn piece(&self, index: usize, p: Piece) -> Vec<Event> {
        let mut out = vec![];
        let has_body = !p.text.is_empty() || p.logprob.is_some();
        match self.kind {
            Kind::Chat => {
                if has_body {
                    let delta = Delta { role: None, content: Some(p.text) };
                    let logprobs = self.logprobs.then(|| ChatLogprobs { content: p.logprob.into_iter().map(chat_logprob).collect() });
                    out.push(self.chat(vec![ChunkChoice { index, delta, logprobs, finish_reason: None }], None));
                }
                if let Some(f) = p.finish {
                    let choice = ChunkChoice { index, delta: Delta::default(), logprobs: None, finish_reason: Some(f) };
                    out.push(self.chat(vec![choice], None));
                }
            }
            Kind::Completion => {
                if has_body || p.finish.is_some() {
                    let logprobs = self.logprobs.then(|| legacy_logprobs(p.logprob.map(|l| (p.offset, l)).into_iter().collect()));
                    out.push(self.completion(vec![CompletionChoice { index, text: p.text, logprobs, finish_reason: p.finish }], None));
                }
            }
        }
        out
    }

    fn usage(&self, u: Usage) -> Event {
        match self.kind {
            Kind::Chat => self.chat(vec![], Some(u)),
            Kind::Completion => self.completion(vec![], Some(u)),
        }
    }
}

/// Server-sent events for a running job: chunks as tokens arrive, an error event if the
/// generation fails or times out, then `[DONE]`. The chunks are written by a task; when the
/// client disconnects, the response stream is dropped, the task's next send fails (or it sees
/// the channel closed while waiting) and the task ends, dropping the job.
fn stream(model: Arc<ServedModel>, plan: Plan, mut job: Running, kind: Kind) -> Response {
    let (tx, mut rx) = mpsc::channel::<Event>(64);
    let prefix = if matches!(kind, Kind::Chat) { "chatcmpl" } else { "cmpl" };
    let chunks = Chunks {
        kind,
        id: format!("{prefix}-{:016x}", rand::random::<u64>()),
        created: now(),
        model: model.name.clone(),
        logprobs: plan.logprobs.is_some(),
    };
    tokio::spawn(async move {
        let mut outs = outputs(&model, &plan);
        for c in 0..outs.len() {
            if let Some(ev) = chunks.opening(c) {
                if tx.send(ev).await.is_err() {
                    return;
                }
            }
        }
        loop {
            let next = tokio::select! {
                r = job.next(&mut outs) => r,
                _ = tx.closed() => return,
            };
            match next {
                Ok(Some((c, p))) => {
                    for ev in chunks.piece(c, p) {
                        if tx.send(ev).await.is_err() {
                            return;
                        }
                    }
                }
                Ok(None) => break,
                Err(e) => {
                    let _ = tx.send(Chunks::event(&e.body())).await;
                    return;
                }
            }
        }
        if plan.include_usage {
            let _ = tx.send(chunks.usage(usage(&plan, &outs))).await;
        }
        let _ = tx.send(Event::default().data("[DONE]")).await;
    });
    let events = futures::stream::poll_fn(move |cx| rx.poll_recv(cx)).map(Ok::<_, Infallible>);
    Sse::new(events).keep_alive(KeepAlive::default()).into_response()
}
