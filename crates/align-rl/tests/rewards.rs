//! The reward kinds over their real transports: an external command (JSON lines over pipes), an
//! HTTP endpoint on loopback (good, malformed and slow replies), the gold judge, and the weighted
//! sum with its shaping.

use align_data::Message;
use align_rl::reward::{CommandReward, FnReward, GoldReward, HttpReward, Reward, RewardInput, RewardSet, RewardShaping};
use serde_json::{json, Value};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::time::Duration;

fn inputs<'a>(prompt: &'a [Message], responses: &'a [&'a str], meta: &'a Value) -> Vec<RewardInput<'a>> {
    responses.iter().map(|r| RewardInput { prompt, response: r, meta }).collect()
}

#[test]
fn command_reward_reads_one_line_per_sample_and_reports_bad_replies() {
    let prompt = vec![Message::new("user", "hi")];
    let meta = json!({});
    let xs = inputs(&prompt, &["a", "bb", "ccc"], &meta);
    // Reward = length of the response field, computed by a shell loop (no Python needed).
    let script = r#"while IFS= read -r l; do r=$(printf '%s' "$l" | sed 's/.*"response":"\([^"]*\)".*/\1/'); echo "{\"reward\": ${#r}}"; done"#;
    let mut c = CommandReward::spawn(&["sh".into(), "-c".into(), script.into()]).unwrap();
    assert_eq!(c.score(&xs).unwrap(), vec![1.0, 2.0, 3.0]);
    assert_eq!(c.score(&xs[..1]).unwrap(), vec![1.0], "the process is kept and reused");
    let mut bad = CommandReward::spawn(&["sh".into(), "-c".into(), "while read l; do echo oops; done".into()]).unwrap();
    let e = bad.score(&xs).unwrap_err().to_string();
    assert!(e.contains("reply 1 is not JSON"), "{e}");
    let mut dead = CommandReward::spawn(&["sh".into(), "-c".into(), "read l; echo 1; exit 0".into()]).unwrap();
    let e = dead.score(&xs).unwrap_err().to_string();
    assert!(e.contains("exited after 1 of 3 replies") || e.contains("write failed"), "{e}");
    let e = CommandReward::spawn(&["/nonexistent/scorer".into()]).err().map(|e| e.to_string()).unwrap_or_default();
    assert!(e.contains("cannot start reward command"), "{e}");
}

/// A one-thread HTTP server answering each request with `reply(n_samples)` after `delay`.
fn serve(reply: fn(usize) -> String, delay: Duration) -> String {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    std::thread::spawn(move || {
        for s in l.incoming() {
            let Ok(mut s) = s else { continue };
            let mut r = BufReader::new(s.try_clone().unwrap());
            let mut len = 0;
            loop {
                let mut line = String::new();
                if r.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                    break;
                }
                if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                    len = v.trim().parse().unwrap_or(0);
                }
            }
            let mut body = vec![0; len];
            let _ = r.read_exact(&mut body);
            let n = serde_json::from_slice::<Value>(&body).ok().and_then(|v| v["samples"].as_array().map(Vec::len)).unwrap_or(0);
            std::thread::sleep(delay);
            let text = reply(n);
            let _ = write!(s, "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{}", text.len(), text);
        }
    });
    format!("http://{addr}/score")
}

#[test]
fn http_reward_good_malformed_and_slow_endpoints() {
    let prompt = vec![Message::new("user", "hi")];
    let meta = json!({"id": 1});
    let xs = inputs(&prompt, &["a", "b"], &meta);
    let good = serve(|n| json!({"rewards": (0..n).map(|i| i as f64 + 0.5).collect::<Vec<_>>()}).to_string(), Duration::ZERO);
    assert_eq!(HttpReward::new(&good, Duration::from_secs(5), 0).score(&xs).unwrap(), vec![0.5, 1.5]);
    let malformed = serve(|_| "{\"rewards\": \"nope\"}".into(), Duration::ZERO);
    let e = HttpReward::new(&malformed, Duration::from_secs(5), 1).score(&xs).unwrap_err().to_string();
    assert!(e.contains("no \"rewards\" array") && e.contains("after 2 attempts"), "{e}");
    let short = serve(|_| json!({"rewards": [1.0]}).to_string(), Duration::ZERO);
    let e = HttpReward::new(&short, Duration::from_secs(5), 0).score(&xs).unwrap_err().to_string();
    assert!(e.contains("1 rewards for 2 samples"), "{e}");
    let slow = serve(|n| json!({"rewards": vec![1.0; n]}).to_string(), Duration::from_millis(1500));
    let t = std::time::Instant::now();
    let e = HttpReward::new(&slow, Duration::from_millis(200), 0).score(&xs).unwrap_err().to_string();
    assert!(t.elapsed() < Duration::from_millis(1400), "the timeout did not cut the request: {e}");
    assert!(HttpReward::new("http://127.0.0.1:1/score", Duration::from_secs(1), 0).score(&xs).is_err());
}

#[test]
fn gold_reward_scores_gym_records_and_rejects_other_prompts() {
    let w = align_gym::World::generate(&align_gym::GymConfig::default());
    let rec = w.records_in(align_gym::Split::Train).next().unwrap().clone();
    let meta = serde_json::to_value(&rec).unwrap();
    let prompt = vec![Message::new("user", rec.prompt.clone())];
    let good = align_gym::gold_response(&rec);
    let responses = [good.as_str(), "no idea"];
    let xs = inputs(&prompt, &responses, &meta);
    let s = GoldReward { axis: Default::default() }.score(&xs).unwrap();
    assert!(s[0] > s[1], "{s:?}");
    assert_eq!(s[0], align_gym::judge::score(&rec, &good).overall);
    let other = json!({"prompt": "hi"});
    let responses = ["x"];
    let e = GoldReward { axis: Default::default() }.score(&inputs(&prompt, &responses, &other)).unwrap_err().to_string();
    assert!(e.contains("gold reward needs gym prompt records"), "{e}");
}

#[test]
fn weighted_sum_logs_each_reward_and_applies_eos_penalty_and_clip() {
    let prompt = vec![Message::new("user", "hi")];
    let meta = json!({});
    let xs = inputs(&prompt, &["aa", "aaaa"], &meta);
    let len = FnReward { name: "len".into(), f: |x: &RewardInput| x.response.len() as f64 };
    let one = FnReward { name: "one".into(), f: |_: &RewardInput| 1.0 };
    let mut set = RewardSet {
        items: vec![(0.5, Box::new(len)), (2.0, Box::new(one))],
        shaping: RewardShaping { missing_eos_penalty: Some(1.0), clip: Some(3.5) },
        normalization: None,
    };
    let (total, means) = set.score(&xs, &[true, false]).unwrap();
    // 0.5·2 + 2 = 3; 0.5·4 + 2 − 1 (no EOS) = 3, then both within the clip.
    assert_eq!(total, vec![3.0, 3.0]);
    assert_eq!(means["rewards/len"], 3.0);
    assert_eq!(means["rewards/one"], 1.0);
    set.shaping = RewardShaping { missing_eos_penalty: None, clip: Some(2.5) };
    assert_eq!(set.score(&xs, &[true, true]).unwrap().0, vec![2.5, 2.5]);
    // Normalization comes before the shaping: (3 − 2) / 0.5 = 2; (4 − 2) / 0.5 − 1 = 3, clipped.
    set.shaping = RewardShaping { missing_eos_penalty: Some(1.0), clip: Some(2.5) };
    set.normalization = Some((2.0, 0.5));
    assert_eq!(set.score(&xs, &[true, false]).unwrap().0, vec![2.0, 2.5]);
    // The per-reward means stay raw.
    assert_eq!(set.score(&xs, &[true, false]).unwrap().1["rewards/len"], 3.0);
    let nan = FnReward { name: "nan".into(), f: |_: &RewardInput| f64::NAN };
    let mut bad = RewardSet { items: vec![(1.0, Box::new(nan))], shaping: RewardShaping::default(), normalization: None };
    assert!(bad.score(&xs, &[true, true]).unwrap_err().to_string().contains("non-finite"));
}
