//! Bad SFT inputs: each gives an error naming file, line and field (or, with skip_invalid, a count
//! by reason), never a panic and never a silent drop.

use align_data::formats::{read_examples, ReadOptions};

fn read_err(lines: &[&str]) -> String {
    let d = tempfile::tempdir().unwrap();
    let p = d.path().join("sft.jsonl");
    std::fs::write(&p, lines.join("\n")).unwrap();
    match read_examples(&p, &ReadOptions::default()) {
        Ok((ex, rep)) => panic!("expected an error, got {} examples ({})", ex.len(), rep.summary()),
        Err(e) => e.to_string(),
    }
}

const GOOD: &str = r#"{"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]}"#;

#[test]
fn truncated_line_is_named() {
    let e = read_err(&[GOOD, GOOD, r#"{"messages": [{"role": "user", "cont"#]);
    assert!(e.contains("sft.jsonl: line 3"), "{e}");
}

#[test]
fn wrong_types_empty_messages_and_unknown_roles_are_named() {
    let e = read_err(&[GOOD, r#"{"messages": 7}"#]);
    assert!(e.contains("line 2") && e.contains("field `messages`"), "{e}");
    let e = read_err(&[GOOD, r#"{"messages": []}"#]);
    assert!(e.contains("line 2") && e.contains("empty"), "{e}");
    let e = read_err(&[r#"{"messages": [{"role": "wizard", "content": "hi"}, {"role": "assistant", "content": "x"}]}"#]);
    assert!(e.contains("line 1") && e.contains("unknown role `wizard`"), "{e}");
    let e = read_err(&[GOOD, r#"{"messages": [{"role": "user", "content": 5}]}"#]);
    assert!(e.contains("line 2"), "{e}");
}

#[test]
fn skip_invalid_counts_every_bad_line() {
    let d = tempfile::tempdir().unwrap();
    let p = d.path().join("sft.jsonl");
    std::fs::write(&p, [GOOD, r#"{"messages": []}"#, GOOD, r#"{"messages": [{"role": "x""#].join("\n")).unwrap();
    let opts = ReadOptions { skip_invalid: true, ..ReadOptions::default() };
    let (ex, rep) = read_examples(&p, &opts).unwrap();
    assert_eq!(ex.len(), 2);
    assert_eq!((rep.read, rep.kept, rep.skipped_total()), (4, 2, 2), "{}", rep.summary());
}
