//! Data sets in TRL's formats (docs/formats.md): detection, remapping, validation with reasons,
//! implicit prompts, LLaMA-Factory files, Parquet, and the real HH-RLHF / instruct files.

use align_data::formats::{extract_prompt, from_alpaca, reason, Message};
use align_data::{read_examples, Example, FieldMap, Format, ReadOptions, Text};
use std::path::{Path, PathBuf};

fn data(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/formats")
        .join(name)
}

/// `/work/shared/data/...`: the shared folder beside the repository.
fn shared(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../../shared/data")
        .join(rel)
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p
}

fn plain(s: &str) -> Text {
    Text::Plain(s.into())
}

fn conv(turns: &[(&str, &str)]) -> Text {
    Text::Conversation(turns.iter().map(|(r, c)| Message::new(*r, *c)).collect())
}

fn read(path: &Path) -> Vec<Example> {
    read_examples(path, &ReadOptions::default()).unwrap().0
}

#[test]
fn detects_each_trl_format() {
    let d = tempfile::tempdir().unwrap();
    let cases = [
        (r#"{"text": "The sky is blue."}"#, Format::LanguageModeling),
        (
            r#"{"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello"}]}"#,
            Format::LanguageModeling,
        ),
        (
            r#"{"prompt": "The sky is", "completion": " blue."}"#,
            Format::PromptCompletion,
        ),
        (
            r#"{"prompt": "The sky is", "chosen": " blue.", "rejected": " green."}"#,
            Format::Preference,
        ),
        (
            r#"{"prompt": "The sky is", "completion": " blue.", "label": true}"#,
            Format::Unpaired,
        ),
    ];
    for (i, (line, want)) in cases.iter().enumerate() {
        let p = write(d.path(), &format!("{i}.jsonl"), line);
        let (ex, report) = read_examples(&p, &ReadOptions::default()).unwrap();
        assert_eq!(report.format, *want, "{line}");
        assert_eq!((report.read, report.kept, ex.len()), (1, 1, 1));
    }
    let p = write(
        d.path(),
        "u.jsonl",
        r#"{"prompt": "a", "completion": "b", "label": false}"#,
    );
    assert_eq!(
        read(&p),
        vec![Example::Unpaired {
            prompt: plain("a"),
            completion: plain("b"),
            label: false
        }]
    );
    let p = write(
        d.path(),
        "pc.jsonl",
        r#"{"prompt": [{"role": "user", "content": "Sky?"}], "completion": [{"role": "assistant", "content": "Blue."}]}"#,
    );
    assert_eq!(
        read(&p),
        vec![Example::PromptCompletion {
            prompt: conv(&[("user", "Sky?")]),
            completion: conv(&[("assistant", "Blue.")]),
        }]
    );
}

#[test]
fn unknown_or_conflicting_fields_name_the_file() {
    let d = tempfile::tempdir().unwrap();
    let p = write(d.path(), "q.jsonl", r#"{"question": "a", "answer": "b"}"#);
    let e = read_examples(&p, &ReadOptions::default())
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("q.jsonl: cannot tell the data set format from the fields [answer, question]"),
        "{e}"
    );
    let p = write(d.path(), "c.jsonl", r#"{"prompt": "a", "chosen": "b"}"#);
    let e = read_examples(&p, &ReadOptions::default())
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("c.jsonl: has only one of `chosen` and `rejected`"),
        "{e}"
    );
    let p = write(d.path(), "t.jsonl", r#"{"text": "a", "messages": []}"#);
    let e = read_examples(&p, &ReadOptions::default())
        .unwrap_err()
        .to_string();
    assert!(e.contains("has both `text` and `messages`"), "{e}");
    let p = write(d.path(), "x.csv", "a,b\n");
    let e = read_examples(&p, &ReadOptions::default())
        .unwrap_err()
        .to_string();
    assert!(e.contains("x.csv: unknown data file type"), "{e}");
}

#[test]
fn remapped_fields() {
    let d = tempfile::tempdir().unwrap();
    let p = write(
        d.path(),
        "r.jsonl",
        r#"{"question": "2 + 2 =", "good": " 4", "bad": " 5", "label_prob": 0.9}"#,
    );
    let opts = ReadOptions {
        fields: FieldMap {
            prompt: "question".into(),
            chosen: "good".into(),
            rejected: "bad".into(),
            prob: Some("label_prob".into()),
            ..FieldMap::default()
        },
        ..ReadOptions::default()
    };
    let (ex, report) = read_examples(&p, &opts).unwrap();
    assert_eq!(report.format, Format::Preference);
    assert_eq!(
        ex,
        vec![Example::Preference {
            prompt: Some(plain("2 + 2 =")),
            chosen: plain(" 4"),
            rejected: plain(" 5"),
            margin: None,
            prob: Some(0.9),
        }]
    );
    // Errors use the remapped name.
    let p = write(
        d.path(),
        "s.jsonl",
        r#"{"question": "2 + 2 =", "good": " 4", "bad": " 4"}"#,
    );
    let e = read_examples(&p, &opts).unwrap_err().to_string();
    assert!(
        e.ends_with("s.jsonl: line 1: field `good`: identical to `bad`"),
        "{e}"
    );
    // The options deserialize from a config.
    let opts: ReadOptions = serde_json::from_str(
        r#"{"format": "preference", "skip_invalid": true, "fields": {"chosen": "good"}}"#,
    )
    .unwrap();
    assert_eq!(opts.format, Format::Preference);
    assert_eq!(opts.fields.chosen, "good");
    assert_eq!(opts.fields.rejected, "rejected");
}

#[test]
fn preference_explicit_and_implicit_prompts() {
    let ex = read(&data("preference.jsonl"));
    assert_eq!(
        ex,
        vec![
            Example::Preference {
                prompt: Some(plain("The sky is")),
                chosen: plain(" blue."),
                rejected: plain(" green."),
                margin: Some(2.0),
                prob: None,
            },
            Example::Preference {
                prompt: Some(conv(&[("user", "What color is the sky?")])),
                chosen: conv(&[("assistant", "Blue.")]),
                rejected: conv(&[("assistant", "Green.")]),
                margin: None,
                prob: None,
            },
            Example::Preference {
                prompt: Some(plain("\n\nHuman: Hi\n\nAssistant:")),
                chosen: plain(" Hello! How can I help?"),
                rejected: plain(" Hello."),
                margin: None,
                prob: None,
            },
        ]
    );
    // With extraction off, the prompt stays implicit.
    let opts = ReadOptions {
        extract_prompt: false,
        ..ReadOptions::default()
    };
    let (ex, _) = read_examples(&data("preference.jsonl"), &opts).unwrap();
    assert!(matches!(&ex[2], Example::Preference { prompt: None, .. }));
}

#[test]
fn extract_prompt_rules() {
    // Strings without the HH marker: TRL's character rule, a trailing space goes to the responses.
    let (p, c, r) =
        extract_prompt(&plain("The sky is blue."), &plain("The sky is green.")).unwrap();
    assert_eq!(
        (p, c, r),
        (plain("The sky is"), plain(" blue."), plain(" green."))
    );
    // HH-RLHF: cut after the last shared "\n\nAssistant:", even if the responses start alike.
    let (p, c, r) = extract_prompt(
        &plain("\n\nHuman: Hi\n\nAssistant: I think yes"),
        &plain("\n\nHuman: Hi\n\nAssistant: I think no"),
    )
    .unwrap();
    assert_eq!(p, plain("\n\nHuman: Hi\n\nAssistant:"));
    assert_eq!((c, r), (plain(" I think yes"), plain(" I think no")));
    // Multi-byte characters: the prefix ends at a char boundary.
    let (p, _, _) = extract_prompt(&plain("héllo wörld"), &plain("héllo wärld")).unwrap();
    assert_eq!(p, plain("héllo w"));
    // Conversations: the shared leading turns.
    let sys = ("system", "Be brief.");
    let (p, c, r) = extract_prompt(
        &conv(&[sys, ("user", "Hi"), ("assistant", "Hello")]),
        &conv(&[sys, ("user", "Hi"), ("assistant", "Go away")]),
    )
    .unwrap();
    assert_eq!(p, conv(&[sys, ("user", "Hi")]));
    assert_eq!(
        (c, r),
        (
            conv(&[("assistant", "Hello")]),
            conv(&[("assistant", "Go away")])
        )
    );
    assert!(extract_prompt(&plain("a"), &conv(&[("assistant", "a")])).is_none());
}

/// Each bad record of `bad_preference.jsonl`, in order: the first is an error naming file, line
/// and field; `skip_invalid` counts them all by reason.
#[test]
fn bad_records_fail_or_are_counted_by_reason() {
    let path = data("bad_preference.jsonl");
    let expected = [
        (2, "field `chosen`: identical to `rejected`", reason::IDENTICAL),
        (3, "field `chosen`: empty", reason::EMPTY_RESPONSE),
        (5, "field `prompt`: no `prompt` field, and `chosen` and `rejected` share no prompt", reason::MISSING_PROMPT),
        (6, "field `chosen`: expected a string or a list of messages, got number", reason::WRONG_TYPE),
        (7, "field `rejected`: missing", reason::MISSING_FIELD),
        (8, "field `margin`: expected a number, got string", reason::WRONG_TYPE),
        (9, "field `rejected`: message 1: unknown role `bot` (allowed: system, user, assistant, tool)", reason::UNKNOWN_ROLE),
        (10, "field `rejected`: message 1: no `content`", reason::MESSAGE_WITHOUT_CONTENT),
        (11, "field `rejected`: message 1: role `user` in a response", reason::NON_ASSISTANT_TURN),
        (12, "field `chosen`: is a list of messages but `prompt` is a string", reason::MIXED),
        (13, "invalid JSON: EOF while parsing", reason::INVALID_JSON),
    ];
    // Without skip_invalid: fails on line 2. Dropping lines one by one shows every later message.
    let text = std::fs::read_to_string(&path).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    let d = tempfile::tempdir().unwrap();
    for (line, msg, _) in expected {
        // Keep line 1 (it decides the format) and blank out the bad lines before `line`.
        let kept: Vec<&str> = lines
            .iter()
            .enumerate()
            .map(|(i, l)| if i == 0 || i + 1 >= line { *l } else { "" })
            .collect();
        let p = write(d.path(), "bad_preference.jsonl", &(kept.join("\n") + "\n"));
        let e = read_examples(&p, &ReadOptions::default()).unwrap_err();
        let s = e.to_string();
        let want = format!("bad_preference.jsonl: line {line}: {msg}");
        assert!(s.contains(&want), "got {s}\nwant {want}");
    }
    let e = read_examples(&path, &ReadOptions::default())
        .unwrap_err()
        .to_string();
    assert!(
        e.ends_with("bad_preference.jsonl: line 2: field `chosen`: identical to `rejected`"),
        "{e}"
    );

    let opts = ReadOptions {
        skip_invalid: true,
        ..ReadOptions::default()
    };
    let (ex, report) = read_examples(&path, &opts).unwrap();
    assert_eq!(ex.len(), 1);
    assert_eq!(
        (report.read, report.kept, report.skipped_total()),
        (12, 1, 11)
    );
    for (_, _, reason) in expected {
        let want = expected.iter().filter(|e| e.2 == reason).count();
        assert_eq!(
            report.skipped.get(reason),
            Some(&want),
            "{reason}: {report:?}"
        );
    }
    assert_eq!(
        report.summary(),
        "read 12, kept 1, skipped 11 (empty response: 1, identical chosen and rejected: 1, \
         invalid JSON: 1, message without content: 1, missing field: 1, missing prompt: 1, \
         mixed standard and conversational: 1, non-assistant turn in response: 1, \
         unknown role: 1, wrong type: 2)"
    );
}

#[test]
fn language_modeling_and_prompt_completion_validation() {
    let d = tempfile::tempdir().unwrap();
    let cases = [
        (
            r#"{"text": "  "}"#,
            "field `text`: empty",
            reason::EMPTY_TEXT,
        ),
        (
            r#"{"messages": []}"#,
            "field `messages`: empty list of messages",
            reason::EMPTY_MESSAGES,
        ),
        (
            r#"{"messages": [{"role": "user", "content": "Hi"}]}"#,
            "field `messages`: the last message has role `user`, expected `assistant`",
            reason::NOT_ENDING_WITH_ASSISTANT,
        ),
        (
            r#"{"messages": [{"role": "user", "content": ["a"]}]}"#,
            "field `messages`: message 1: `content`: expected a string, got array",
            reason::WRONG_TYPE,
        ),
        (
            r#"{"prompt": "", "completion": "b"}"#,
            "field `prompt`: empty",
            reason::EMPTY_TEXT,
        ),
        (
            r#"{"prompt": "a", "completion": " "}"#,
            "field `completion`: empty",
            reason::EMPTY_RESPONSE,
        ),
        (
            r#"{"prompt": [{"role": "user", "content": "a"}], "completion": [{"role": "assistant", "content": "b"}, {"role": "tool", "content": "c"}]}"#,
            "field `completion`: the last message has role `tool`, expected `assistant`",
            reason::NOT_ENDING_WITH_ASSISTANT,
        ),
        (
            r#"{"prompt": "a", "completion": "b", "label": "yes"}"#,
            "field `label`: expected a boolean (or 0/1), got string",
            reason::WRONG_TYPE,
        ),
        (
            r#"[1]"#,
            "line 2: expected an object, got array",
            reason::NOT_AN_OBJECT,
        ),
    ];
    for (i, (line, msg, why)) in cases.iter().enumerate() {
        // A good first line of the same format, so that detection succeeds.
        let first = if line.contains("label") {
            r#"{"prompt": "a", "completion": "b", "label": true}"#
        } else if line.contains("prompt") {
            r#"{"prompt": "a", "completion": "b"}"#
        } else {
            r#"{"text": "a"}"#
        };
        let p = write(
            d.path(),
            &format!("{i}.jsonl"),
            &format!("{first}\n{line}\n"),
        );
        let e = read_examples(&p, &ReadOptions::default())
            .unwrap_err()
            .to_string();
        assert!(
            e.contains(&format!("{i}.jsonl: line 2: ")) && e.ends_with(msg),
            "{e}\nwant {msg}"
        );
        let opts = ReadOptions {
            skip_invalid: true,
            ..ReadOptions::default()
        };
        let (_, report) = read_examples(&p, &opts).unwrap();
        assert_eq!(report.skipped.get(*why), Some(&1), "{line}: {report:?}");
        assert_eq!(report.kept, 1);
    }
    // Extra message keys are kept for the chat template; tool-call turns may lack content.
    let p = write(
        d.path(),
        "tools.jsonl",
        r#"{"messages": [{"role": "user", "content": "Weather?"}, {"role": "assistant", "tool_calls": [{"name": "w"}]}, {"role": "tool", "content": "sun"}, {"role": "assistant", "content": "Sunny."}]}"#,
    );
    let ex = read(&p);
    let Example::LanguageModeling {
        text: Text::Conversation(m),
    } = &ex[0]
    else {
        panic!("{ex:?}")
    };
    assert_eq!(m[1].content, "");
    assert!(m[1].extra.contains_key("tool_calls"));
}

#[test]
fn hh_rlhf_implicit_prompts() {
    let path = shared("hh-rlhf/harmless-base-test.jsonl.gz");
    // Four pairs have an empty chosen reply ("...\n\nAssistant: " and nothing after it).
    let e = read_examples(&path, &ReadOptions::default())
        .unwrap_err()
        .to_string();
    assert!(
        e.ends_with("harmless-base-test.jsonl.gz: line 87: field `chosen`: empty"),
        "{e}"
    );
    let opts = ReadOptions {
        skip_invalid: true,
        ..ReadOptions::default()
    };
    let (ex, report) = read_examples(&path, &opts).unwrap();
    assert_eq!(report.format, Format::Preference);
    assert_eq!((report.read, report.kept), (2312, 2308));
    assert_eq!(
        report.skipped.get(reason::EMPTY_RESPONSE),
        Some(&4),
        "{}",
        report.summary()
    );
    for ex in &ex {
        let Example::Preference {
            prompt: Some(Text::Plain(p)),
            chosen: Text::Plain(c),
            rejected: Text::Plain(r),
            ..
        } = ex
        else {
            panic!("{ex:?}")
        };
        assert!(
            p.starts_with("\n\nHuman: ") && p.ends_with("\n\nAssistant:"),
            "{p:?}"
        );
        assert_ne!(c, r);
    }
}

#[test]
fn llama_factory_alpaca_and_sharegpt() {
    let (ex, report) = read_examples(
        &shared("instruct/alpaca_en_demo.json"),
        &ReadOptions::default(),
    )
    .unwrap();
    assert_eq!(
        (report.format, report.read, report.kept),
        (Format::Alpaca, 999, 999)
    );
    let Example::PromptCompletion {
        prompt: Text::Conversation(p),
        completion: Text::Conversation(c),
    } = &ex[0]
    else {
        panic!("{:?}", ex[0])
    };
    assert_eq!(
        p[0],
        Message::new("user", "Describe a process of making crepes.")
    );
    assert_eq!(c[0].role, "assistant");
    assert!(c[0].content.starts_with("Making crepes is an easy"));

    let (ex, report) = read_examples(
        &shared("instruct/dpo_en_demo.json"),
        &ReadOptions::default(),
    )
    .unwrap();
    assert_eq!(
        (report.format, report.read, report.kept),
        (Format::ShareGpt, 300, 300)
    );
    for ex in &ex {
        let Example::Preference {
            prompt: Some(Text::Conversation(p)),
            chosen,
            rejected,
            ..
        } = ex
        else {
            panic!("{ex:?}")
        };
        assert_eq!(p.last().unwrap().role, "user");
        assert!(
            matches!(chosen, Text::Conversation(m) if m.len() == 1 && m[0].role == "assistant")
        );
        assert!(
            matches!(rejected, Text::Conversation(m) if m.len() == 1 && m[0].role == "assistant")
        );
    }

    // Input and history, as LLaMA-Factory joins them.
    let row = serde_json::json!({
        "instruction": "Translate", "input": "bonjour", "output": "hello",
        "system": "You translate.", "history": [["Hi", "Hello!"]]
    });
    let ex = from_alpaca(row.as_object().unwrap(), &ReadOptions::default()).unwrap();
    assert_eq!(
        ex,
        Example::PromptCompletion {
            prompt: conv(&[
                ("system", "You translate."),
                ("user", "Hi"),
                ("assistant", "Hello!"),
                ("user", "Translate\nbonjour"),
            ]),
            completion: conv(&[("assistant", "hello")]),
        }
    );
    let row = serde_json::json!({"instruction": "Say hi", "output": ""});
    let e = from_alpaca(row.as_object().unwrap(), &ReadOptions::default()).unwrap_err();
    assert_eq!(
        (e.field.as_deref(), e.reason),
        (Some("output"), reason::EMPTY_RESPONSE)
    );

    // ShareGPT without chosen/rejected is a conversation to train on.
    let d = tempfile::tempdir().unwrap();
    let p = write(
        d.path(),
        "sg.json",
        r#"[{"conversations": [{"from": "human", "value": "Hi"}, {"from": "gpt", "value": "Hello"}], "system": "Be kind."}]"#,
    );
    assert_eq!(
        read(&p),
        vec![Example::LanguageModeling {
            text: conv(&[
                ("system", "Be kind."),
                ("user", "Hi"),
                ("assistant", "Hello")
            ])
        }]
    );
    // Errors in a JSON array name the record.
    let p = write(
        d.path(),
        "sg2.json",
        r#"[{"conversations": [{"from": "human", "value": "Hi"}, {"from": "bot", "value": "Hello"}]}]"#,
    );
    let e = read_examples(&p, &ReadOptions::default())
        .unwrap_err()
        .to_string();
    assert!(e.ends_with("sg2.json: record 1: field `conversations`: message 2: unknown role `bot` (allowed: system, user, assistant, tool)"), "{e}");
}

#[test]
fn json_lines_saved_as_json_and_gzip() {
    let d = tempfile::tempdir().unwrap();
    let p = write(
        d.path(),
        "lines.json",
        "{\"text\": \"a\"}\n{\"text\": \"b\"}\n",
    );
    assert_eq!(
        read(&p),
        vec![
            Example::LanguageModeling { text: plain("a") },
            Example::LanguageModeling { text: plain("b") },
        ]
    );
    let gz = d.path().join("lines.jsonl.gz");
    let mut enc = flate2::write::GzEncoder::new(
        std::fs::File::create(&gz).unwrap(),
        flate2::Compression::fast(),
    );
    std::io::Write::write_all(&mut enc, b"{\"text\": \"a\"}\n{\"text\": \"b\"}\n").unwrap();
    enc.finish().unwrap();
    assert_eq!(read(&gz), read(&p));
    // An empty file has no records and no format.
    let p = write(d.path(), "empty.jsonl", "\n");
    let (ex, report) = read_examples(&p, &ReadOptions::default()).unwrap();
    assert!(ex.is_empty());
    assert_eq!((report.format, report.read), (Format::Auto, 0));
}

mod parquet_files {
    use super::*;
    use arrow_array::builder::{ListBuilder, StringBuilder, StructBuilder};
    use arrow_array::{ArrayRef, BooleanArray, Float64Array, RecordBatch, StringArray};
    use arrow_schema::{DataType, Field, Fields};
    use std::sync::Arc;

    fn write_parquet(path: &Path, columns: Vec<(&str, ArrayRef)>) {
        let batch = RecordBatch::try_from_iter(columns).unwrap();
        let file = std::fs::File::create(path).unwrap();
        let mut w = parquet::arrow::ArrowWriter::try_new(file, batch.schema(), None).unwrap();
        w.write(&batch).unwrap();
        w.close().unwrap();
    }

    /// A `List<Struct{role, content}>` column: one conversation per row.
    fn conversations(rows: &[&[(&str, &str)]]) -> ArrayRef {
        let fields = Fields::from(vec![
            Field::new("role", DataType::Utf8, true),
            Field::new("content", DataType::Utf8, true),
        ]);
        let values = StructBuilder::new(
            fields.clone(),
            vec![
                Box::new(StringBuilder::new()),
                Box::new(StringBuilder::new()),
            ],
        );
        let mut list =
            ListBuilder::new(values).with_field(Field::new("item", DataType::Struct(fields), true));
        for row in rows {
            for (role, content) in *row {
                let s = list.values();
                s.field_builder::<StringBuilder>(0)
                    .unwrap()
                    .append_value(role);
                s.field_builder::<StringBuilder>(1)
                    .unwrap()
                    .append_value(content);
                s.append(true);
            }
            list.append(true);
        }
        Arc::new(list.finish())
    }

    fn strings(v: &[&str]) -> ArrayRef {
        Arc::new(StringArray::from(v.to_vec()))
    }

    #[test]
    fn preference_parquet_equals_jsonl() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("pref.parquet");
        write_parquet(
            &p,
            vec![
                (
                    "prompt",
                    conversations(&[&[("user", "What color is the sky?")], &[("user", "2 + 2?")]]),
                ),
                (
                    "chosen",
                    conversations(&[&[("assistant", "Blue.")], &[("assistant", "4")]]),
                ),
                (
                    "rejected",
                    conversations(&[&[("assistant", "Green.")], &[("assistant", "5")]]),
                ),
                (
                    "margin",
                    Arc::new(Float64Array::from(vec![Some(1.5), None])),
                ),
            ],
        );
        let j = write(
            d.path(),
            "pref.jsonl",
            concat!(
                r#"{"prompt": [{"role": "user", "content": "What color is the sky?"}], "chosen": [{"role": "assistant", "content": "Blue."}], "rejected": [{"role": "assistant", "content": "Green."}], "margin": 1.5}"#,
                "\n",
                r#"{"prompt": [{"role": "user", "content": "2 + 2?"}], "chosen": [{"role": "assistant", "content": "4"}], "rejected": [{"role": "assistant", "content": "5"}]}"#,
                "\n"
            ),
        );
        let (from_parquet, report) = read_examples(&p, &ReadOptions::default()).unwrap();
        assert_eq!(report.format, Format::Preference);
        assert_eq!(from_parquet.len(), 2);
        assert_eq!(from_parquet, read(&j));
    }

    #[test]
    fn string_columns_labels_and_row_numbers() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("kto.parquet");
        write_parquet(
            &p,
            vec![
                ("prompt", strings(&["The sky is", "2 + 2 =", "Water is"])),
                ("completion", strings(&[" blue.", " 5", ""])),
                (
                    "label",
                    Arc::new(BooleanArray::from(vec![true, false, true])),
                ),
            ],
        );
        let e = read_examples(&p, &ReadOptions::default())
            .unwrap_err()
            .to_string();
        assert!(
            e.ends_with("kto.parquet: row 3: field `completion`: empty"),
            "{e}"
        );
        let opts = ReadOptions {
            skip_invalid: true,
            ..ReadOptions::default()
        };
        let (ex, report) = read_examples(&p, &opts).unwrap();
        assert_eq!(report.format, Format::Unpaired);
        assert_eq!(
            report.summary(),
            "read 3, kept 2, skipped 1 (empty response: 1)"
        );
        assert_eq!(
            ex[1],
            Example::Unpaired {
                prompt: plain("2 + 2 ="),
                completion: plain(" 5"),
                label: false
            }
        );
        // A language-modeling file with a null row and an ignored binary column.
        let p = d.path().join("lm.parquet");
        write_parquet(
            &p,
            vec![
                (
                    "text",
                    Arc::new(StringArray::from(vec![Some("a"), None])) as ArrayRef,
                ),
                (
                    "blob",
                    Arc::new(arrow_array::BinaryArray::from(vec![&b"x"[..], &b"y"[..]])),
                ),
            ],
        );
        let e = read_examples(&p, &ReadOptions::default())
            .unwrap_err()
            .to_string();
        assert!(
            e.ends_with("lm.parquet: row 2: field `text`: missing"),
            "{e}"
        );
        // ... but a binary column whose name is read is an error.
        let opts = ReadOptions {
            fields: FieldMap {
                text: "blob".into(),
                ..FieldMap::default()
            },
            ..ReadOptions::default()
        };
        let e = read_examples(&p, &opts).unwrap_err().to_string();
        assert!(
            e.contains("lm.parquet: column `blob` has Parquet/Arrow type Binary"),
            "{e}"
        );
    }
}
