//! Errors: [`ServeError`] for starting the server (loading models, binding), and [`ApiError`],
//! what a client sees: OpenAI's shape `{"error": {"message", "type", "param", "code"}}` with an
//! HTTP status. Every bad input becomes an `ApiError`; nothing a client sends can panic the server.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use std::path::PathBuf;

/// What can go wrong while starting the server.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("loading model `{name}` from {dir}: {source}")]
    Model { name: String, dir: PathBuf, source: Box<align_models::ModelError> },
    #[error("loading the tokenizer of model `{name}` from {dir}: {source}")]
    Tokenizer { name: String, dir: PathBuf, source: Box<align_data::DataError> },
    #[error("model `{name}`: {msg}")]
    Config { name: String, msg: String },
    #[error("two models are served as `{0}`: give them distinct names with --model NAME=DIR")]
    DuplicateName(String),
    #[error("no model to serve: pass --model DIR (or --model NAME=DIR)")]
    NoModel,
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

/// An error answered to a client, in OpenAI's shape.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{status}: {message}")]
pub struct ApiError {
    pub status: StatusCode,
    pub message: String,
    /// OpenAI's `type`: `invalid_request_error`, `authentication_error`, ...
    pub kind: &'static str,
    /// The request field at fault, when there is one.
    pub param: Option<String>,
    pub code: Option<&'static str>,
}

#[derive(Serialize)]
struct Body<'a> {
    error: Inner<'a>,
}

#[derive(Serialize)]
struct Inner<'a> {
    message: &'a str,
    #[serde(rename = "type")]
    kind: &'a str,
    param: Option<&'a str>,
    code: Option<&'a str>,
}

impl ApiError {
    fn new(status: StatusCode, kind: &'static str, code: Option<&'static str>, message: impl Into<String>) -> Self {
        ApiError { status, message: message.into(), kind, param: None, code }
    }

    /// 400: the request is malformed or a value is out of range.
    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_request_error", None, message)
    }

    /// 400 naming the field at fault.
    pub fn invalid_param(param: &str, message: impl Into<String>) -> Self {
        Self::invalid(message).with_param(param)
    }

    pub fn with_param(mut self, param: &str) -> Self {
        self.param = Some(param.to_string());
        self
    }

    pub fn with_code(mut self, code: &'static str) -> Self {
        self.code = Some(code);
        self
    }

    /// 401: missing or wrong API key.
    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "authentication_error", Some("invalid_api_key"), message)
    }

    /// 404: no such model or route.
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "invalid_request_error", None, message)
    }

    /// 413: the body is over the size limit.
    pub fn too_large(limit: usize) -> Self {
        Self::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "invalid_request_error",
            Some("request_too_large"),
            format!("the request body is larger than the server's limit of {limit} bytes (--max-body-bytes)"),
        )
    }

    /// 429: too many requests at once.
    pub fn busy(limit: usize) -> Self {
        Self::new(
            StatusCode::TOO_MANY_REQUESTS,
            "rate_limit_error",
            Some("too_many_concurrent_requests"),
            format!("the server is handling its maximum of {limit} concurrent requests (--max-concurrent); retry shortly"),
        )
    }

    /// 503: the model's engine stopped or failed.
    pub fn unavailable(message: impl Into<String>) -> Self {
        Self::new(StatusCode::SERVICE_UNAVAILABLE, "server_error", Some("engine_unavailable"), message)
    }

    /// 504: generation ran past the request timeout.
    pub fn timeout(secs: f64) -> Self {
        Self::new(
            StatusCode::GATEWAY_TIMEOUT,
            "timeout_error",
            Some("request_timeout"),
            format!("generation did not finish within the request timeout of {secs} s (--request-timeout); ask for fewer max_tokens"),
        )
    }

    /// 500: a failure inside the model.
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "server_error", None, message)
    }

    /// The JSON body `{"error": {...}}`.
    pub fn body(&self) -> serde_json::Value {
        serde_json::to_value(Body {
            error: Inner { message: &self.message, kind: self.kind, param: self.param.as_deref(), code: self.code },
        })
        .unwrap_or_default()
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut r = (self.status, axum::Json(self.body())).into_response();
        if self.status == StatusCode::TOO_MANY_REQUESTS {
            r.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        r
    }
}
