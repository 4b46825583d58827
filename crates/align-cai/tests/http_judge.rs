//! The HTTP judge against a real server on loopback: a small HTTP/1.1 server on a std
//! `TcpListener` that answers like an OpenAI-compatible chat-completions endpoint, and
//! misbehaves on purpose (slow replies, 5xx, 404, non-JSON, no log-probs, unparseable answers).

use align_cai::http::{HttpJudge, HttpJudgeConfig, Readout};
use align_cai::judge::{compare_both_orders, Comparison, Judge};
use align_cai::Constitution;
use align_data::Message;
use serde_json::{json, Value};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// What the server does with one request.
enum Reply {
    Json(Value),
    Status(u16, &'static str),
    Raw(&'static str),
    Slow(Duration, Value),
}

struct Server {
    url: String,
    count: Arc<AtomicUsize>,
    requests: Arc<Mutex<Vec<(String, Value)>>>,
}

/// Starts a server whose `handler(n, body)` decides the reply to the n-th request (0-based).
fn serve(handler: impl Fn(usize, &Value) -> Reply + Send + Sync + 'static) -> Server {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/v1", listener.local_addr().unwrap());
    let count = Arc::new(AtomicUsize::new(0));
    let requests = Arc::new(Mutex::new(Vec::new()));
    let handler = Arc::new(handler);
    let (c, r) = (count.clone(), requests.clone());
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let (handler, c, r) = (handler.clone(), c.clone(), r.clone());
            std::thread::spawn(move || {
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let (mut head, mut len) = (String::new(), 0usize);
                loop {
                    let mut line = String::new();
                    if reader.read_line(&mut line).unwrap_or(0) == 0 {
                        return;
                    }
                    if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                        len = v.trim().parse().unwrap();
                    }
                    head.push_str(&line);
                    if line == "\r\n" {
                        break;
                    }
                }
                let mut body = vec![0u8; len];
                reader.read_exact(&mut body).unwrap();
                let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
                let n = c.fetch_add(1, Ordering::SeqCst);
                r.lock().unwrap().push((head, body.clone()));
                let (status, text) = match handler(n, &body) {
                    Reply::Json(v) => (200, v.to_string()),
                    Reply::Status(s, t) => (s, t.to_string()),
                    Reply::Raw(t) => (200, t.to_string()),
                    Reply::Slow(d, v) => {
                        std::thread::sleep(d);
                        (200, v.to_string())
                    }
                };
                let resp = format!("HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{text}", text.len());
                let _ = stream.write_all(resp.as_bytes());
            });
        }
    });
    Server { url, count, requests }
}

/// A chat-completions reply with log-probs: P(A) ∝ pa, P(B) ∝ pb at the second position.
fn logprob_reply(pa: f64, pb: f64) -> Value {
    json!({"id": "x", "object": "chat.completion", "choices": [{"index": 0, "finish_reason": "length",
        "message": {"role": "assistant", "content": "(A)"},
        "logprobs": {"content": [
            {"token": "(", "logprob": -0.01, "top_logprobs": [{"token": "(", "logprob": -0.01}]},
            {"token": "A", "logprob": pa.ln(), "top_logprobs": [{"token": "A", "logprob": pa.ln()}, {"token": "B", "logprob": pb.ln()}, {"token": "C", "logprob": -5.0}]}
        ]}}]})
}

fn text_reply(content: &str) -> Value {
    json!({"choices": [{"index": 0, "message": {"role": "assistant", "content": content}, "logprobs": null}]})
}

fn config(url: &str) -> HttpJudgeConfig {
    HttpJudgeConfig { url: url.into(), model: "judge-model".into(), timeout_s: 0.5, retries: 1, backoff_ms: 10, ..Default::default() }
}

#[allow(clippy::result_large_err)]
fn ask(judge: &mut HttpJudge, a: &str, b: &str) -> align_cai::Result<f64> {
    let c = Constitution::default();
    let conv = [Message::new("user", "How do I make a bomb?")];
    judge.prob_a(&Comparison { conversation: &conv, principle: &c.principles[0], a, b, record: None })
}

#[test]
fn logprobs_give_the_normalized_option_probability() {
    let s = serve(|_, _| Reply::Json(logprob_reply(0.6, 0.2)));
    let cfg = HttpJudgeConfig { api_key: Some("sk-test".into()), ..config(&s.url) };
    let mut j = HttpJudge::new(cfg, None).unwrap();
    let p = ask(&mut j, "I can't help with that.", "Mix [REDACTED].").unwrap();
    assert!((p - 0.75).abs() < 1e-9, "{p}");
    let reqs = s.requests.lock().unwrap();
    let (head, body) = &reqs[0];
    assert!(head.starts_with("POST /v1/chat/completions "), "{head}");
    assert!(head.to_ascii_lowercase().contains("authorization: bearer sk-test"), "{head}");
    assert_eq!(body["model"], "judge-model");
    assert_eq!(body["logprobs"], true);
    let content = body["messages"][0]["content"].as_str().unwrap();
    assert!(content.contains("Which response is less harmful") && content.contains("(A) I can't help with that.\n(B) Mix [REDACTED].\nThe answer is:\nAnswer with (A) or (B)."), "{content}");
    assert_eq!(j.stats.logprob_answers, 1);
}

#[test]
fn both_orders_against_a_server_that_prefers_refusals() {
    // The server's model likes whichever option is the refusal, with probability 0.8, and has a
    // position bias towards (A) on top: averaging both orders removes the bias.
    let s = serve(|_, body| {
        let content = body["messages"][0]["content"].as_str().unwrap_or_default();
        let refusal_is_a = content.contains("(A) I can't");
        Reply::Json(if refusal_is_a { logprob_reply(0.9, 0.1) } else { logprob_reply(0.4, 0.6) })
    });
    let mut j = HttpJudge::new(config(&s.url), None).unwrap();
    let c = Constitution::default();
    let conv = [Message::new("user", "How do I make a bomb?")];
    let v = compare_both_orders(&mut j, &conv, &c.principles[0], "I can't help with that.", "Mix [REDACTED].", None).unwrap();
    assert!((v.p_first_as_a - 0.9).abs() < 1e-9 && (v.p_first_as_b - 0.6).abs() < 1e-9, "{v:?}");
    assert!((v.p_first - 0.75).abs() < 1e-9);
    assert_eq!(s.count.load(Ordering::SeqCst), 2);
}

#[test]
fn no_logprobs_falls_back_to_sampled_votes() {
    // Votes alternate B, A, B, A, B by the seed the judge sends: 2 of 5 pick (A).
    let s = serve(|_, body| {
        if body.get("logprobs").is_some() {
            return Reply::Json(text_reply("(B)"));
        }
        let seed = body["seed"].as_u64().unwrap();
        Reply::Json(text_reply(if seed % 2 == 0 { "The answer is (B)." } else { "A" }))
    });
    let mut j = HttpJudge::new(config(&s.url), None).unwrap();
    let p = ask(&mut j, "x", "y").unwrap();
    assert!((p - 0.4).abs() < 1e-12, "{p}");
    assert_eq!(s.count.load(Ordering::SeqCst), 6, "one log-prob request, then 5 votes");
    // Later questions go straight to votes.
    ask(&mut j, "x", "y").unwrap();
    assert_eq!(s.count.load(Ordering::SeqCst), 11);
    assert_eq!(j.stats.vote_answers, 2);
    let reqs = s.requests.lock().unwrap();
    assert_eq!(reqs[1].1["temperature"], 1.0);
}

#[test]
fn strict_logprobs_mode_rejects_replies_without_them() {
    let s = serve(|_, _| Reply::Json(text_reply("(A)")));
    let mut j = HttpJudge::new(HttpJudgeConfig { readout: Readout::Logprobs, ..config(&s.url) }, None).unwrap();
    let e = ask(&mut j, "x", "y").unwrap_err().to_string();
    assert!(e.contains("no log-probs") && e.contains("/v1/chat/completions"), "{e}");
    assert_eq!(s.count.load(Ordering::SeqCst), 1, "a missing capability is not retried");
}

#[test]
fn logprobs_without_an_option_token_leave_the_question_unanswered() {
    let reply = json!({"choices": [{"message": {"content": "Critique"}, "logprobs": {"content": [
        {"token": "Crit", "logprob": -0.2, "top_logprobs": [{"token": "Crit", "logprob": -0.2}, {"token": "The", "logprob": -2.0}]}
    ]}}]});
    let s = serve(move |_, _| Reply::Json(reply.clone()));
    let mut j = HttpJudge::new(config(&s.url), None).unwrap();
    assert!(matches!(ask(&mut j, "x", "y"), Err(align_cai::CaiError::Unanswered(_))));
    // The endpoint does offer log-probs: the next question asks for them again (no switch to votes).
    let _ = ask(&mut j, "x", "y");
    assert_eq!(s.count.load(Ordering::SeqCst), 2);
    assert_eq!(j.stats.vote_answers, 0);
}

#[test]
fn a_slow_reply_times_out_and_the_retry_succeeds() {
    let s = serve(|n, _| if n == 0 { Reply::Slow(Duration::from_secs(3), logprob_reply(0.5, 0.5)) } else { Reply::Json(logprob_reply(0.3, 0.1)) });
    let mut j = HttpJudge::new(config(&s.url), None).unwrap();
    let t0 = std::time::Instant::now();
    let p = ask(&mut j, "x", "y").unwrap();
    assert!((p - 0.75).abs() < 1e-9);
    assert!(t0.elapsed() < Duration::from_secs(2), "the timeout did not cut the slow reply: {:?}", t0.elapsed());
    assert_eq!(j.stats.retries, 1);
}

#[test]
fn timeouts_on_every_attempt_fail_with_a_clear_error() {
    let s = serve(|_, _| Reply::Slow(Duration::from_secs(3), logprob_reply(0.5, 0.5)));
    let mut j = HttpJudge::new(HttpJudgeConfig { timeout_s: 0.3, ..config(&s.url) }, None).unwrap();
    let e = ask(&mut j, "x", "y").unwrap_err().to_string();
    assert!(e.contains("after 2 attempts") && e.to_lowercase().contains("timeout"), "{e}");
    assert_eq!(s.count.load(Ordering::SeqCst), 2);
}

#[test]
fn malformed_replies_and_server_errors_are_retried() {
    // 500, then not JSON, then JSON without choices, then a good reply.
    let s = serve(|n, _| match n {
        0 => Reply::Status(500, "{\"error\": \"overloaded\"}"),
        1 => Reply::Raw("this is not json"),
        2 => Reply::Json(json!({"object": "error"})),
        _ => Reply::Json(logprob_reply(0.2, 0.6)),
    });
    let mut j = HttpJudge::new(HttpJudgeConfig { retries: 3, ..config(&s.url) }, None).unwrap();
    let p = ask(&mut j, "x", "y").unwrap();
    assert!((p - 0.25).abs() < 1e-9, "{p}");
    assert_eq!(j.stats.retries, 3);

    // With fewer retries the last complaint is reported.
    let s = serve(|_, _| Reply::Raw("{\"choices\": [truncated"));
    let mut j = HttpJudge::new(config(&s.url), None).unwrap();
    let e = ask(&mut j, "x", "y").unwrap_err().to_string();
    assert!(e.contains("not JSON") && e.contains("after 2 attempts"), "{e}");
}

#[test]
fn a_prompt_over_the_context_is_too_long_not_fatal() {
    let s = serve(|_, _| Reply::Status(400, "{\"error\": {\"code\": \"context_length_exceeded\", \"message\": \"maximum context length is 256 tokens\"}}"));
    let mut j = HttpJudge::new(HttpJudgeConfig { retries: 3, ..config(&s.url) }, None).unwrap();
    assert!(matches!(ask(&mut j, "x", "y"), Err(align_cai::CaiError::TooLong(_))));
    assert_eq!(s.count.load(Ordering::SeqCst), 1);
}

#[test]
fn client_errors_fail_at_once() {
    let s = serve(|_, _| Reply::Status(404, "{\"error\": \"model judge-model not found\"}"));
    let mut j = HttpJudge::new(HttpJudgeConfig { retries: 5, ..config(&s.url) }, None).unwrap();
    let e = ask(&mut j, "x", "y").unwrap_err().to_string();
    assert!(e.contains("404") && e.contains("not found"), "{e}");
    assert_eq!(s.count.load(Ordering::SeqCst), 1, "a 404 must not be retried");
}

#[test]
fn unparseable_votes_and_refused_connections_are_errors() {
    // Votes naming neither option abstain; only if all do is the question unanswered.
    let s = serve(|n, _| Reply::Json(text_reply(if n == 1 { "(B)" } else { "Both are fine." })));
    let mut j = HttpJudge::new(HttpJudgeConfig { readout: Readout::Votes, votes: 3, ..config(&s.url) }, None).unwrap();
    assert_eq!(ask(&mut j, "x", "y").unwrap(), 0.0);
    let s = serve(|_, _| Reply::Json(text_reply("Both are fine.")));
    let mut j = HttpJudge::new(HttpJudgeConfig { readout: Readout::Votes, votes: 3, ..config(&s.url) }, None).unwrap();
    let e = ask(&mut j, "x", "y").unwrap_err();
    assert!(matches!(e, align_cai::CaiError::Unanswered(_)) && e.to_string().contains("Both are fine."), "{e}");

    // Nothing listens on this port (bound, then dropped).
    let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let mut j = HttpJudge::new(config(&format!("http://127.0.0.1:{port}/v1")), None).unwrap();
    let e = ask(&mut j, "x", "y").unwrap_err().to_string();
    assert!(e.contains(&format!("127.0.0.1:{port}")) && e.contains("after 2 attempts"), "{e}");
}
