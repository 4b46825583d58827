//! Chat-template parity with transformers' `apply_chat_template`.
//!
//! Fixtures: tests/fixtures/chat_templates/<name>.json, made by
//! `scripts/fixtures/.venv/bin/python scripts/fixtures/make_chat_templates.py`:
//!
//! ```python
//! rendered = tok.apply_chat_template(msgs, tokenize=False, add_generation_prompt=agp, **extra)
//! _, spans = render_jinja_template([msgs], chat_template=template,
//!                                  return_assistant_tokens_mask=True, ...)   # generation tags
//! ids_tok = PreTrainedTokenizerFast(tokenizer_file="shared/data/tokenizers/mistral-7b/tokenizer.json")
//! input_ids = ids_tok.apply_chat_template(msgs, tokenize=True, ..., bos_token=bos, eos_token=eos)
//! ```

use align_data::{
    tokenize_conversation, train_bpe, ChatTemplate, Message, Tokenizer, CHATML_TEMPLATE,
    DEFAULT_SPECIAL_TOKENS,
};
use serde::Deserialize;
use std::path::{Path, PathBuf};

#[derive(Deserialize)]
struct Fixture {
    name: String,
    template: String,
    bos_token: Option<String>,
    eos_token: Option<String>,
    extra_kwargs: serde_json::Map<String, serde_json::Value>,
    has_generation_tags: bool,
    cases: Vec<Case>,
}

#[derive(Deserialize)]
struct Case {
    messages: Vec<Message>,
    add_generation_prompt: bool,
    rendered: Option<String>,
    error: Option<String>,
    generation_spans_bytes: Option<Vec<[usize; 2]>>,
    input_ids: Option<Vec<u32>>,
    assistant_masks: Option<Vec<u8>>,
}

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn fixtures() -> Vec<Fixture> {
    let dir = root().join("tests/fixtures/chat_templates");
    let mut paths: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    paths.sort();
    paths
        .iter()
        .map(|p| {
            let text = std::fs::read_to_string(p).unwrap();
            serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
        })
        .collect()
}

fn template(fx: &Fixture) -> ChatTemplate {
    let mut t = ChatTemplate::new(
        &fx.template,
        fx.bos_token.as_deref(),
        fx.eos_token.as_deref(),
    )
    .unwrap_or_else(|e| panic!("{}: {e}", fx.name));
    for (k, v) in &fx.extra_kwargs {
        t = t.with_var(k, v.clone());
    }
    t
}

fn mistral() -> Tokenizer {
    let dir = root().join("../shared/data/tokenizers/mistral-7b");
    Tokenizer::from_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
}

fn msgs(pairs: &[(&str, &str)]) -> Vec<Message> {
    pairs.iter().map(|(r, c)| Message::new(*r, *c)).collect()
}

#[test]
fn fixtures_render_like_transformers() {
    let fxs = fixtures();
    assert!(
        fxs.len() >= 19,
        "expected the 19 committed fixtures, found {}",
        fxs.len()
    );
    let (mut rendered, mut raised) = (0, 0);
    let mut failures = vec![];
    for fx in &fxs {
        let t = template(fx);
        assert_eq!(
            t.has_generation_tags(),
            fx.has_generation_tags,
            "{}",
            fx.name
        );
        for (i, case) in fx.cases.iter().enumerate() {
            let got = t.render_with_spans(&case.messages, case.add_generation_prompt);
            match (&case.rendered, got) {
                (Some(want), Ok((text, spans))) => {
                    if &text != want {
                        failures.push(format!(
                            "{} case {i}: rendered\n  want {want:?}\n  got  {text:?}",
                            fx.name
                        ));
                        continue;
                    }
                    if let Some(want_spans) = &case.generation_spans_bytes {
                        let got: Vec<[usize; 2]> = spans.iter().map(|r| [r.start, r.end]).collect();
                        if &got != want_spans {
                            failures.push(format!(
                                "{} case {i}: spans want {want_spans:?} got {got:?}",
                                fx.name
                            ));
                        }
                    } else {
                        assert!(spans.is_empty(), "{} case {i}", fx.name);
                    }
                    rendered += 1;
                }
                (None, Err(e)) => {
                    // The template's own message (after Python's exception type) is in ours.
                    let want = case.error.as_deref().unwrap_or_default();
                    let msg = want.split_once(": ").map_or(want, |(_, m)| m);
                    if !e.to_string().contains(msg) {
                        failures.push(format!("{} case {i}: error want {want:?} got {e}", fx.name));
                    }
                    raised += 1;
                }
                (Some(_), Err(e)) => failures.push(format!("{} case {i}: error {e}", fx.name)),
                (None, Ok((text, _))) => failures.push(format!(
                    "{} case {i}: transformers raised {:?}, align rendered {text:?}",
                    fx.name, case.error
                )),
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    eprintln!(
        "{} templates: {rendered} cases rendered identically, {raised} raised in both",
        fxs.len()
    );
}

#[test]
fn fixtures_token_ids_match_transformers() {
    let tok = mistral();
    let mut n = 0;
    for fx in fixtures() {
        for (i, case) in fx.cases.iter().enumerate() {
            let (Some(text), Some(want)) = (&case.rendered, &case.input_ids) else {
                continue;
            };
            let got = tok.encode(text, false).unwrap();
            assert_eq!(&got, want, "{} case {i}", fx.name);
            n += 1;
        }
    }
    assert!(n >= 100, "only {n} cases with input_ids");
}

#[test]
fn generation_masks_match_transformers() {
    // apply_chat_template(tokenize=True, return_assistant_tokens_mask=True) on the tagged
    // templates (qwen2_5_training, qwen3_training, llama3_training, gemma_training).
    let tok = mistral();
    let mut n = 0;
    for fx in fixtures() {
        let t = template(&fx);
        for (i, case) in fx.cases.iter().enumerate() {
            let Some(want) = &case.assistant_masks else {
                continue;
            };
            let (ids, mask) = tokenize_conversation(&tok, &t, &case.messages).unwrap();
            assert_eq!(Some(&ids), case.input_ids.as_ref(), "{} case {i}", fx.name);
            assert_eq!(&mask, want, "{} case {i}", fx.name);
            n += 1;
        }
    }
    assert!(n >= 14, "only {n} cases with assistant_masks");
}

#[test]
fn align_chatml_fixture_is_the_builtin_template() {
    let fx = fixtures()
        .into_iter()
        .find(|f| f.name == "align_chatml")
        .unwrap();
    assert_eq!(fx.template, CHATML_TEMPLATE);
}

#[test]
fn raise_exception_gives_the_template_message() {
    let fx = fixtures().into_iter().find(|f| f.name == "gemma").unwrap();
    let t = template(&fx);
    let m = msgs(&[("system", "Be brief."), ("user", "Hi")]);
    let err = t.render(&m, false).unwrap_err().to_string();
    assert!(err.contains("System role not supported"), "{err}");
    assert!(err.starts_with("chat template"), "{err}");
}

#[test]
fn syntax_error_is_reported_at_new() {
    let err = ChatTemplate::new("{% for m in messages %}{{ m.content }}", None, None)
        .unwrap_err()
        .to_string();
    assert!(err.contains("chat template"), "{err}");
    assert!(err.contains("line"), "{err}");
}

#[test]
fn chatml_renders_unknown_roles_as_given() {
    let t = ChatTemplate::new(CHATML_TEMPLATE, None, None).unwrap();
    let out = t.render(&msgs(&[("narrator", "Once.")]), false).unwrap();
    assert_eq!(out, "<|im_start|>narrator\nOnce.<|im_end|>\n");
}

#[test]
fn extra_message_keys_reach_the_template() {
    let t = ChatTemplate::new(
        "{{ messages[0].name }}:{{ messages[0].content }}",
        None,
        None,
    )
    .unwrap();
    let mut m = Message::new("user", "hi");
    m.extra.insert("name".into(), "bob".into());
    assert_eq!(t.render(&[m], false).unwrap(), "bob:hi");
}

#[test]
fn tojson_and_pycompat_methods() {
    let src = "{{ messages[0].content.strip().split(',') | tojson }}|{{ messages[0].content.startswith('  a') }}";
    let t = ChatTemplate::new(src, None, None).unwrap();
    let out = t.render(&msgs(&[("user", "  a,é<b>  ")]), false).unwrap();
    assert_eq!(out, r#"["a", "é<b>"]|True"#); // jinja2 prints Python's True
}

/// A byte-level BPE tokenizer as align trains them: <|im_start|>/<|im_end|> are single tokens.
fn align_tokenizer() -> Tokenizer {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("train.txt");
    let text =
        "The quick brown fox jumps over the lazy dog. Hello there, how are you today?\n".repeat(20);
    std::fs::write(&path, text).unwrap();
    train_bpe(&[path], 300, &DEFAULT_SPECIAL_TOKENS, 2).unwrap()
}

#[test]
fn chatml_mask_is_assistant_content_and_im_end() {
    let tok = align_tokenizer();
    let t = ChatTemplate::from_tokenizer(&tok).unwrap();
    assert_eq!(t.source(), CHATML_TEMPLATE);
    let conv = msgs(&[
        ("system", "Be brief."),
        ("user", "Hello there"),
        ("assistant", "The quick brown fox."),
        ("user", "How are you?"),
        ("assistant", "Lazy today, thanks!"),
    ]);
    let (ids, mask) = tokenize_conversation(&tok, &t, &conv).unwrap();
    assert_eq!(
        ids,
        tok.encode(&t.render(&conv, false).unwrap(), false).unwrap()
    );
    assert_eq!(ids.len(), mask.len());
    // Each run of masked tokens decodes to one assistant turn plus <|im_end|>.
    let mut runs: Vec<Vec<u32>> = vec![];
    for (k, (&id, &m)) in ids.iter().zip(&mask).enumerate() {
        if m == 1 {
            if k == 0 || mask[k - 1] == 0 {
                runs.push(vec![]);
            }
            runs.last_mut().unwrap().push(id);
        }
    }
    let texts: Vec<String> = runs.iter().map(|r| tok.decode(r, false).unwrap()).collect();
    assert_eq!(
        texts,
        vec![
            "The quick brown fox.<|im_end|>".to_string(),
            "Lazy today, thanks!<|im_end|>".to_string()
        ]
    );
    let im_end = tok.token_to_id("<|im_end|>").unwrap();
    let im_start = tok.token_to_id("<|im_start|>").unwrap();
    // <|im_start|> is never trained; <|im_end|> only after the 2 assistant turns (of 5).
    assert!(ids
        .iter()
        .zip(&mask)
        .all(|(&id, &m)| id != im_start || m == 0));
    assert_eq!(ids.iter().filter(|&&id| id == im_end).count(), 5);
    assert_eq!(
        ids.iter()
            .zip(&mask)
            .filter(|(&id, &m)| id == im_end && m == 1)
            .count(),
        2
    );
}

#[test]
fn generation_tag_masks_follow_the_template_spans() {
    // llama3_training: the span is the content plus <|eot_id|>.
    let fx = fixtures()
        .into_iter()
        .find(|f| f.name == "llama3_training")
        .unwrap();
    let t = template(&fx);
    let tok = mistral();
    let conv = msgs(&[("user", "What is 2+2?"), ("assistant", "2+2 equals 4.")]);
    let (ids, mask) = tokenize_conversation(&tok, &t, &conv).unwrap();
    let (text, spans) = t.render_with_spans(&conv, false).unwrap();
    assert_eq!(spans.len(), 1);
    assert_eq!(&text[spans[0].clone()], "2+2 equals 4.<|eot_id|>");
    let enc = tok.inner().encode(text.as_str(), false).unwrap();
    for ((&(s, e), &m), _) in enc.get_offsets().iter().zip(&mask).zip(&ids) {
        let inside = s < spans[0].end && e > spans[0].start;
        assert_eq!(m == 1, inside, "token at {s}..{e}");
    }
}

#[test]
fn prefix_masks_match_generation_masks_for_llama3() {
    // llama3 (no tags) and llama3_training (tags) render the same; their masks agree.
    let all = fixtures();
    let plain = template(all.iter().find(|f| f.name == "llama3").unwrap());
    let tagged = template(all.iter().find(|f| f.name == "llama3_training").unwrap());
    let conv = msgs(&[
        ("system", "You are a helpful assistant."),
        ("user", "Hi, who are you?"),
        ("assistant", "I am a small test model."),
        ("user", "Tell me a joke."),
        (
            "assistant",
            "Why did the tensor cross the road? To broadcast.",
        ),
    ]);
    let (a_text, a_spans) = plain.assistant_spans(&conv).unwrap();
    let (b_text, b_spans) = tagged.assistant_spans(&conv).unwrap();
    assert_eq!(a_text, b_text);
    assert_eq!(a_spans, b_spans);
}

#[test]
fn non_prefix_preserving_template_is_an_error() {
    // Qwen3 drops the <think> block of assistant turns before the last user query.
    let fx = fixtures().into_iter().find(|f| f.name == "qwen3").unwrap();
    let t = template(&fx);
    let conv = msgs(&[
        ("user", "Hi"),
        ("assistant", "Hello."),
        ("user", "Bye"),
        ("assistant", "Bye."),
    ]);
    let err = t.assistant_spans(&conv).unwrap_err().to_string();
    assert!(err.contains("not prefix-preserving"), "{err}");
    // Its training variant has generation tags and works.
    let fx = fixtures()
        .into_iter()
        .find(|f| f.name == "qwen3_training")
        .unwrap();
    let (_, spans) = template(&fx).assistant_spans(&conv).unwrap();
    assert_eq!(spans.len(), 2);
}

#[test]
fn values_print_like_jinja2() {
    // jinja2 (Python) prints None, True, Python reprs of lists and dicts (keys in insertion
    // order), and nothing for an undefined variable.
    let src = "{{ none }}|{{ true }}|{{ [1, 'a'] }}|{{ {'a': 1} }}|{{ 1.0 }}|{{ 7 / 2 }}|\
{{ 'x' * 3 }}|{{ messages[0] }}|{{ undefined_var }}|{{ 'a b'.title() }}";
    let t = ChatTemplate::new(src, None, None).unwrap();
    let out = t.render(&msgs(&[("user", "hi")]), false).unwrap();
    assert_eq!(
        out,
        "None|True|[1, 'a']|{'a': 1}|1.0|3.5|xxx|{'role': 'user', 'content': 'hi'}||A B"
    );
}
