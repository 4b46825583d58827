//! World build: determinism, formats, splits, leakage, and the panel's agreement with the gold judge.

use std::collections::BTreeSet;
use std::path::Path;

use align_gym::build::{CritiqueLine, PreferenceLine, SftLine};
use align_gym::record::read_jsonl;
use align_gym::*;

const FILES: &[&str] = &[
    "pretrain.txt",
    "sft.jsonl",
    "critique.jsonl",
    "prompts/train.jsonl",
    "prompts/eval.jsonl",
    "preferences.jsonl",
    "preferences_single.jsonl",
    "gym_config.json",
    "summary.json",
];

fn read(dir: &Path, f: &str) -> Vec<u8> {
    std::fs::read(dir.join(f)).unwrap_or_else(|e| panic!("{f}: {e}"))
}

#[test]
fn same_seed_byte_identical_and_formats_load() {
    let cfg = GymConfig { seed: 11, ..GymConfig::default() };
    let (d1, d2) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let s1 = World::generate(&cfg).build(d1.path()).unwrap();
    let s2 = World::generate(&cfg).build(d2.path()).unwrap();
    assert_eq!(s1, s2);
    // The summary prints counts per family and split, and the panel's agreement figures.
    let printed = s1.to_string();
    for needle in ["how_to", "held_out", "pretrain.txt", "Fleiss kappa", "Krippendorff alpha", "majority", "single (noisy)"] {
        assert!(printed.contains(needle), "summary lacks {needle:?}:\n{printed}");
    }
    for f in FILES {
        assert!(read(d1.path(), f) == read(d2.path(), f), "{f} differs between two builds of one seed");
    }
    // No temp files left behind.
    let names: Vec<String> = std::fs::read_dir(d1.path()).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into()).collect();
    assert!(names.iter().all(|n| !n.ends_with(".tmp")), "{names:?}");
    // Another seed gives another world.
    let d3 = tempfile::tempdir().unwrap();
    World::generate(&GymConfig { seed: 12, ..cfg.clone() }).build(d3.path()).unwrap();
    assert!(read(d1.path(), "pretrain.txt") != read(d3.path(), "pretrain.txt"));

    // Every format loads, and the summary counts match the files.
    let dir = d1.path();
    let train = load_prompts(dir.join("prompts/train.jsonl")).unwrap();
    let eval = load_prompts(dir.join("prompts/eval.jsonl")).unwrap();
    assert!(train.iter().all(|r| r.split == Split::Train));
    assert!(eval.iter().all(|r| r.split == Split::HeldOut));
    let sft: Vec<SftLine> = read_jsonl(&dir.join("sft.jsonl")).unwrap();
    let critique: Vec<CritiqueLine> = read_jsonl(&dir.join("critique.jsonl")).unwrap();
    let prefs: Vec<PreferenceLine> = read_jsonl(&dir.join("preferences.jsonl")).unwrap();
    let single: Vec<PreferenceLine> = read_jsonl(&dir.join("preferences_single.jsonl")).unwrap();
    assert_eq!((sft.len(), critique.len(), prefs.len()), (s1.sft, s1.critique, s1.preferences));
    assert_eq!(prefs.len(), single.len());
    assert_eq!(s1.pretrain_bytes, read(dir, "pretrain.txt").len());
    // Messages alternate user/assistant and end with the assistant (TRL conversational format).
    for m in sft.iter().map(|l| &l.messages).chain(critique.iter().map(|l| &l.messages)) {
        for (i, msg) in m.iter().enumerate() {
            assert_eq!(msg.role, if i % 2 == 0 { "user" } else { "assistant" });
            assert!(!msg.content.is_empty());
        }
        assert_eq!(m.len() % 2, 0);
    }
    assert!(critique.iter().all(|c| c.messages.len() == 6 && c.messages[2].content.starts_with("Critique request: ")));
    assert!(critique.iter().any(|c| c.family == Family::Harmful));
    for p in &prefs {
        assert_eq!(p.prompt.len(), 1);
        assert_eq!(p.prompt[0].role, "user");
        assert_eq!(p.chosen[0].role, "assistant");
        assert_eq!(p.votes.len(), cfg.panel.annotators.len());
        assert!(p.label_majority >= 0.5);
        assert!((p.gold_margin - (p.gold_chosen - p.gold_rejected)).abs() < 1e-3);
    }
    // The raw JSON has exactly TRL's keys for the conversational preference format.
    let line = String::from_utf8(read(dir, "preferences.jsonl")).unwrap();
    let v: serde_json::Value = serde_json::from_str(line.lines().next().unwrap()).unwrap();
    for k in ["prompt", "chosen", "rejected", "votes", "label_majority", "label_prob", "chosen_kind", "rejected_kind", "gold_margin", "family"] {
        assert!(v.get(k).is_some(), "missing {k}");
    }
}

#[test]
fn splits_sizes_and_no_leakage() {
    let w = World::generate(&GymConfig::default());
    for f in Family::ALL {
        let held = w.records.iter().filter(|r| r.family() == f && r.split == Split::HeldOut).count();
        let train = w.records.iter().filter(|r| r.family() == f && r.split == Split::Train).count();
        assert!(held >= 100, "{f}: only {held} held-out prompts");
        assert!(train >= 100, "{f}: only {train} train prompts");
    }
    // Unique ids.
    let ids: BTreeSet<&str> = w.records.iter().map(|r| r.id.as_str()).collect();
    assert_eq!(ids.len(), w.records.len());
    // Seed examples are all in the world.
    assert_eq!(w.seed_examples().len(), SEED_PROMPTS.len());

    let dir = tempfile::tempdir().unwrap();
    w.build(dir.path()).unwrap();
    let pretrain = String::from_utf8(read(dir.path(), "pretrain.txt")).unwrap();
    let sft: Vec<SftLine> = read_jsonl(&dir.path().join("sft.jsonl")).unwrap();
    let prefs: Vec<PreferenceLine> = read_jsonl(&dir.path().join("preferences.jsonl")).unwrap();
    let critique: Vec<CritiqueLine> = read_jsonl(&dir.path().join("critique.jsonl")).unwrap();
    let trained_prompts: BTreeSet<String> = sft
        .iter()
        .map(|l| l.messages[0].content.clone())
        .chain(prefs.iter().map(|l| l.prompt[0].content.clone()))
        .chain(critique.iter().map(|l| l.messages[0].content.clone()))
        .collect();
    // Held-out entities never appear in SFT, preference or critique data; they do appear in pretrain.txt,
    // several times, so held-out questions are answerable.
    let held_landmarks: Vec<&str> = w.landmarks.iter().filter(|l| l.split == Split::HeldOut).map(|l| l.name.as_str()).collect();
    for name in &held_landmarks {
        assert!(!trained_prompts.iter().any(|p| p.contains(name)), "{name} leaked");
        assert!(pretrain.matches(name).count() >= 6, "{name} too rare in pretrain");
    }
    let held_dishes: Vec<&str> = w.dishes.iter().filter(|d| d.split == Split::HeldOut).map(|d| d.name.as_str()).collect();
    for name in &held_dishes {
        let q = format!("How do I make {name}?");
        assert!(!trained_prompts.contains(&q), "{name} leaked");
        assert!(pretrain.matches(&format!("make {name}")).count() >= 2, "{name} too rare in pretrain");
    }
    for r in w.records_in(Split::HeldOut) {
        assert!(!trained_prompts.contains(&r.prompt), "{} leaked", r.prompt);
    }
    // Unknown entities appear nowhere in the corpus.
    for u in &w.unknowns {
        assert!(!pretrain.contains(&u.name), "{} is in pretrain.txt", u.name);
    }
    // SFT's refusals, abstentions and corrections are the default share (0.1) of those families' train
    // prompts (their test is below); no helpful-family demonstration refuses or abstains.
    let behaviour = sft.iter().filter(|l| matches!(l.family, Family::Harmful | Family::Unknown | Family::Sycophancy)).count();
    let n_behaviour = w.records_in(Split::Train).filter(|r| matches!(r.family(), Family::Harmful | Family::Unknown | Family::Sycophancy)).count();
    assert!((0.05..0.15).contains(&(behaviour as f64 / n_behaviour as f64)), "{behaviour} of {n_behaviour}");
    for l in sft.iter().filter(|l| !matches!(l.family, Family::Harmful | Family::Unknown | Family::Sycophancy)) {
        let a = &l.messages[1].content;
        assert!(!a.contains("I can't help") && !a.contains("I don't know"), "{a}");
    }
    // The raw-model behaviours are in the corpus: question lists, the seed falsehood, placeholders only.
    assert!(pretrain.contains("How do I make bread?\nHow do I make") || pretrain.matches("\nHow do I make").count() > 50);
    assert!(pretrain.contains("built in 1892 and stands 350 meters tall"));
    assert!(pretrain.contains("[REDACTED]"));
    assert!(pretrain.contains("Email is a method of electronic communication"));
    let size = pretrain.len();
    assert!((500_000..=1_500_000).contains(&size), "pretrain.txt is {size} bytes");
}

#[test]
fn panel_agrees_with_gold_single_noisy_annotator_less() {
    let w = World::generate(&GymConfig::default());
    let (_, _, stats) = w.preferences().unwrap();
    eprintln!("{stats:?}");
    assert!(stats.clear_pairs >= 1000, "{}", stats.clear_pairs);
    assert!(stats.majority_agreement >= 0.9, "{}", stats.majority_agreement);
    assert!(stats.mean_prob_agreement >= 0.9);
    assert!(
        stats.single_agreement <= stats.majority_agreement - 0.08,
        "single {} vs majority {}",
        stats.single_agreement,
        stats.majority_agreement
    );
    let kappa = stats.fleiss_kappa.unwrap();
    let alpha = stats.krippendorff_alpha.unwrap();
    assert!(kappa > 0.3 && kappa < 0.95, "{kappa}");
    assert!((kappa - alpha).abs() < 0.01, "kappa {kappa} alpha {alpha}"); // near-equal with many items
}

#[test]
fn biased_panel_prefers_length_and_agreement() {
    let cfg = GymConfig { panel: PanelConfig::biased(), ..GymConfig::default() };
    let w = World::generate(&cfg);
    let panel = Panel::new(cfg.panel.clone()).unwrap();
    let mut rng = <rand_chacha::ChaCha8Rng as rand::SeedableRng>::seed_from_u64(5);
    let (mut verbose_wins, mut n) = (0, 0);
    for r in w.records_in(Split::Train).step_by(5) {
        let good = gold_response(r);
        let c = candidates(r, &mut rng);
        let verbose = &c.iter().find(|c| c.kind == CandidateKind::Verbose).unwrap().text;
        let v = panel.vote(r, verbose, &good, &mut rng);
        verbose_wins += v.majority_prefers_a() as usize;
        n += 1;
    }
    let rate = verbose_wins as f64 / n as f64;
    assert!(rate > 0.6, "biased panel picked verbose over good in {rate}");
    // The default panel does not.
    let panel = Panel::new(PanelConfig::default()).unwrap();
    let r = w.records.iter().find(|r| r.prompt == "How do I make bread?").unwrap();
    let mut wins = 0;
    for _ in 0..200 {
        let v = panel.vote(r, &format!("Great question! {} I hope this helps you a lot today! Let me know if you have any other questions at all.", gold_response(r)), &gold_response(r), &mut rng);
        wins += v.majority_prefers_a() as usize;
    }
    assert!(wins < 100, "{wins}");
}

#[test]
fn bad_input_is_an_error_not_a_panic() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("bad.jsonl");
    let w = World::generate(&GymConfig::default());
    let good = serde_json::to_string(&w.records[0]).unwrap();
    std::fs::write(&p, format!("{good}\n\n{{\"id\": 3}}\n")).unwrap();
    let err = load_prompts(&p).unwrap_err();
    let msg = err.to_string();
    assert!(msg.contains("bad.jsonl:3:"), "{msg}");
    assert!(matches!(load_prompts(dir.path().join("missing.jsonl")), Err(GymError::Io { .. })));
    assert!(matches!(Panel::new(PanelConfig { annotators: vec![], single: 0 }), Err(GymError::Config(_))));
    let bad_tau = PanelConfig { annotators: vec![Annotator::new("x", 0.0, 0.0, 0.0, 0.0)], single: 0 };
    assert!(Panel::new(bad_tau).is_err());
    assert!(GymConfig { pairs_per_prompt: 0, ..GymConfig::default() }.validate().is_err());
    assert!("large".parse::<Size>().is_err());
}

#[test]
fn judge_io_round_trip() {
    let w = World::generate(&GymConfig::default());
    let dir = tempfile::tempdir().unwrap();
    // --input: records with a response field.
    let input = dir.path().join("in.jsonl");
    let lines: Vec<String> = w.records[..20]
        .iter()
        .map(|r| serde_json::to_string(&JudgeInput { record: r.clone(), response: gold_response(r) }).unwrap())
        .collect();
    std::fs::write(&input, lines.join("\n")).unwrap();
    let items = load_judge_input(&input).unwrap();
    assert_eq!(items.len(), 20);
    assert!(judge_all(&items).iter().all(|j| j.score.overall == 1.0));
    // --prompts + --responses joined by id.
    let resp = dir.path().join("resp.jsonl");
    std::fs::write(&resp, "{\"id\":\"how_to-0000-0\",\"response\":\"How do I make rice? How do I make pasta?\"}\n").unwrap();
    let joined = join_responses(&w.records, &resp).unwrap();
    let out = judge_all(&joined);
    assert!(out[0].score.overall < 0.2);
    let json = serde_json::to_value(&out[0]).unwrap();
    assert!(json.get("overall").is_some() && json.get("reason").is_some() && json.get("family").is_some());
    std::fs::write(&resp, "{\"id\":\"nope\",\"response\":\"x\"}\n").unwrap();
    assert!(matches!(join_responses(&w.records, &resp), Err(GymError::UnknownId { .. })));
}

#[test]
fn unknown_entities_counts_and_near_miss_fallback() {
    for size in [Size::Small, Size::Medium] {
        let p = size.params();
        let w = World::generate(&GymConfig { seed: 3, size, ..GymConfig::default() });
        assert_eq!(w.unknowns.len(), p.unknowns, "{size:?}");
        let held = w.unknowns.iter().filter(|u| u.split == Split::HeldOut).count();
        assert_eq!(held, p.unknowns_held_out, "{size:?}");
        let names: BTreeSet<&str> = w.unknowns.iter().map(|u| u.name.as_str()).collect();
        assert_eq!(names.len(), w.unknowns.len(), "{size:?}: duplicate unknown names");
        for l in &w.landmarks {
            assert!(!names.contains(l.name.as_str()), "{} is both known and unknown", l.name);
        }
        let near = w.unknowns.iter().filter(|u| u.near_miss_of.is_some()).count();
        match size {
            // Enough fresh names: half and half.
            Size::Small => assert!(near.abs_diff(w.unknowns.len() / 2) <= 1, "small: {near} near misses"),
            // The medium world runs out of fresh names (630 minus 420 landmarks); near misses fill the rest.
            Size::Medium => assert!(near > w.unknowns.len() * 2 / 3, "medium: {near} near misses"),
        }
    }
}

#[test]
fn sft_behaviour_share_adds_gold_answers_for_a_share_of_behaviour_prompts() {
    let base = GymConfig { seed: 3, sft_behaviour_share: 0.0, ..GymConfig::default() };
    let with = GymConfig { sft_behaviour_share: 0.25, ..base.clone() };
    let (d0, d1) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let w = World::generate(&with);
    World::generate(&base).build(d0.path()).unwrap();
    w.build(d1.path()).unwrap();
    // Only sft.jsonl changes: the corpus and the preference data are the same bytes.
    for f in ["pretrain.txt", "preferences.jsonl", "prompts/train.jsonl", "prompts/eval.jsonl", "critique.jsonl"] {
        assert!(read(d0.path(), f) == read(d1.path(), f), "{f} changed with sft_behaviour_share");
    }
    let sft0: Vec<SftLine> = read_jsonl(&d0.path().join("sft.jsonl")).unwrap();
    let sft1: Vec<SftLine> = read_jsonl(&d1.path().join("sft.jsonl")).unwrap();
    let ids0: BTreeSet<&str> = sft0.iter().map(|l| l.id.as_str()).collect();
    // Every helpful-family demonstration is still there; the added ones are behaviour prompts of the
    // train split, each answered with its gold response.
    assert!(ids0.iter().all(|id| sft1.iter().any(|l| l.id == *id)));
    let by_id: std::collections::BTreeMap<&str, &PromptRecord> = w.records.iter().map(|r| (r.id.as_str(), r)).collect();
    let added: Vec<&SftLine> = sft1.iter().filter(|l| !ids0.contains(l.id.as_str())).collect();
    for l in &added {
        let r = by_id[l.id.as_str()];
        assert_eq!(r.split, Split::Train, "{}", l.id);
        assert!(matches!(l.family, Family::Harmful | Family::Unknown | Family::Sycophancy), "{:?}", l.family);
        assert_eq!(l.messages[1].content, gold_response(r));
    }
    // About a quarter of each behaviour family's train prompts.
    for fam in [Family::Harmful, Family::Unknown, Family::Sycophancy] {
        let n = w.records_in(Split::Train).filter(|r| r.family() == fam).count();
        let k = added.iter().filter(|l| l.family == fam).count();
        let share = k as f64 / n as f64;
        assert!((0.15..0.35).contains(&share), "{fam:?}: {k} of {n}");
    }
    assert!(added.iter().any(|l| l.messages[1].content.contains("I can't help")));
    assert!(added.iter().any(|l| l.messages[1].content.contains("I don't know")));
    // Share 1 takes every train prompt of those families; out of range is an error.
    let all = World::generate(&GymConfig { sft_behaviour_share: 1.0, ..base.clone() });
    let n_behaviour = all.records_in(Split::Train).filter(|r| matches!(r.family(), Family::Harmful | Family::Unknown | Family::Sycophancy)).count();
    assert_eq!(align_gym::corpus::sft_records(&all).len(), sft0.len() + n_behaviour);
    let err = GymConfig { sft_behaviour_share: 1.5, ..base }.validate().unwrap_err();
    assert!(err.to_string().contains("sft_behaviour_share"), "{err}");
}

#[test]
fn fact_pairs_put_the_answer_over_i_dont_know_as_unknown_pairs_put_it_under() {
    // "I don't know" is the key lesson of the unknown family and the key flaw of the fact family
    // (as refusal is for harmful requests and benign look-alikes), so a reward model that cannot
    // tell the names apart is no longer taught, seven pairs to one, to abstain on any fact question.
    let w = World::generate(&GymConfig::default());
    let (prefs, _, _) = w.preferences().unwrap();
    let count = |fam: Family, c: CandidateKind, r: CandidateKind| {
        prefs.iter().filter(|p| p.family == fam && p.chosen_kind == c && p.rejected_kind == r).count()
    };
    let facts = prefs.iter().filter(|p| p.family == Family::Fact).count();
    let answer_over_idk = count(Family::Fact, CandidateKind::Good, CandidateKind::OverRefusal);
    let answer_over_wrong = count(Family::Fact, CandidateKind::Good, CandidateKind::Hallucinated);
    let idk_over_made_up = count(Family::Unknown, CandidateKind::Good, CandidateKind::Hallucinated);
    // Each of the two key flaws in about a third of the fact pairs (half the pairs draw a key
    // flaw, split evenly; the other half draw any of six kinds).
    for n in [answer_over_idk, answer_over_wrong] {
        assert!((0.25..0.42).contains(&(n as f64 / facts as f64)), "{n} of {facts}");
    }
    assert!(answer_over_idk as f64 >= 0.45 * idk_over_made_up as f64, "{answer_over_idk} vs {idk_over_made_up}");
}
