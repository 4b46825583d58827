//! The pretraining corpus (`pretrain.txt`): a web-like text of the world. Documents are separated by a blank
//! line; inside a document lines are separated by single newlines.
//!
//! Every fact of every known entity, held-out ones included, is stated in several wordings per pass (recipe
//! page, encyclopedia paragraph, forum thread, Q&A). Unknown entities never appear. FAQ pages are lists of
//! questions, so a raw model continues a question with more questions; some forum posts state wrong facts and
//! some contain placeholder harmful instructions.

use rand::seq::{IndexedRandom, SliceRandom};
use rand::Rng;
use rand_chacha::ChaCha8Rng;

use crate::record::{Attribute, Family, ListMode, PromptRecord, Split};
use crate::respond::{email_text, gold_response, recipe_text};
use crate::text::{cap, join_and, join_then, to_second_person};
use crate::vocab;
use crate::world::{fact_question, wrong_value, World};

const USERS: &[&str] = &["anna_k", "mike77", "cook4life", "j_smith", "traveler", "quietfox", "dan_b", "liz", "tomtom", "sunny"];

/// Two different forum users.
fn two_users(rng: &mut ChaCha8Rng) -> (&'static str, &'static str) {
    let two: Vec<&str> = USERS.choose_multiple(rng, 2).copied().collect();
    (two[0], two[1])
}

/// Build the pretraining text.
pub fn pretrain(world: &World, rng: &mut ChaCha8Rng) -> String {
    let params = world.config.size.params();
    let mut docs: Vec<String> = Vec::new();
    for _pass in 0..params.pretrain_passes {
        for d in &world.dishes {
            dish_docs(d, rng, &mut docs);
        }
        for l in &world.landmarks {
            landmark_docs(l, rng, &mut docs);
        }
        for t in &world.harmful {
            let (u1, u2) = two_users(rng);
            let t2 = to_second_person(&t.task);
            let reply = if rng.random_bool(0.6) {
                format!("To {t2}, combine [REDACTED] with [REDACTED], then [REDACTED].")
            } else {
                "Please don't. That could hurt people.".to_string()
            };
            docs.push(format!("Forum: anything goes\n{u1}: How do I {}?\n{u2}: {reply}", t.task));
        }
        for t in &world.lookalikes {
            let g = &vocab::LOOKALIKES[t.group];
            let steps: Vec<String> = g.steps.iter().map(|s| s.0.to_string()).collect();
            let answer = format!("{}.", cap(&join_then(&steps)));
            docs.push(format!("How to {}\n{answer}", t.task));
            let (u1, u2) = two_users(rng);
            docs.push(format!("Forum: tips\n{u1}: What is the best way to {}?\n{u2}: {answer}", t.task));
            docs.push(format!("Q: How do I {}?\nA: {answer}", t.task));
        }
        for e in &world.emails {
            if let (Some(r), Some(t)) = (&e.recipient, e.topic) {
                let topic = vocab::EMAIL_TOPICS[t].0;
                let sender = vocab::SENDERS.choose(rng).copied().unwrap_or("Alex");
                let doc = match rng.random_range(0..3) {
                    0 => format!("Subject: {}\n{}", cap(topic), email_text(Some(r), Some(topic)).replace("[Your name]", sender)),
                    1 => format!("Subject: {}\nHello {r},\nJust a quick note about {topic}. Can we talk this week?\nThanks,\n{sender}", cap(topic)),
                    _ => format!("Subject: {}\nDear {r},\nI am writing about {topic}. I will send more details soon.\nSincerely,\n{sender}", cap(topic)),
                };
                docs.push(doc);
            }
        }
        for _ in 0..12 {
            docs.push(format!(
                "{}\nA good email has a greeting, a short message and a sign-off such as Best regards.",
                vocab::EMAIL_DEFINITION
            ));
        }
        for chunk in world.arithmetic.chunks(10) {
            let mut lines = vec!["Math practice".to_string()];
            for a in chunk {
                lines.push(if rng.random_bool(0.5) {
                    format!("{} is {}.", a.expr(), a.answer())
                } else {
                    format!("What is {}? {}.", a.expr(), a.answer())
                });
            }
            docs.push(lines.join("\n"));
        }
        for chunk in world.lists.chunks(6) {
            let mut lines = vec!["Sorting practice".to_string()];
            for l in chunk {
                match l.mode {
                    ListMode::SortNumbers => {
                        let mut v: Vec<i64> = l.items.iter().filter_map(|s| s.parse().ok()).collect();
                        v.sort();
                        let v: Vec<String> = v.iter().map(|n| n.to_string()).collect();
                        lines.push(format!("{} sorted from smallest to largest: {}.", l.items.join(", "), v.join(", ")));
                    }
                    ListMode::SortWords => {
                        let mut v = l.items.clone();
                        v.sort();
                        lines.push(format!("{} in alphabetical order: {}.", l.items.join(", "), v.join(", ")));
                    }
                    ListMode::ListCategory => {
                        let (cat, members) = vocab::CATEGORIES[l.category];
                        let picked: Vec<&str> = members.choose_multiple(rng, l.count).copied().collect();
                        lines.push(format!("Some {cat}: {}.", picked.join(", ")));
                    }
                }
            }
            docs.push(lines.join("\n"));
        }
        // FAQ pages: lists of questions, of any family but the unknown one.
        let askable: Vec<&PromptRecord> = world
            .records
            .iter()
            .filter(|r| matches!(r.family(), Family::HowTo | Family::Fact | Family::BenignLookalike | Family::Email | Family::Harmful))
            .collect();
        for _ in 0..params.faq_pages {
            let title = ["Frequently asked questions", "People also ask", "Common questions"].choose(rng).copied().unwrap_or("FAQ");
            let k = rng.random_range(6..=12);
            let same_family = rng.random_bool(0.5);
            let first = askable.choose(rng).copied();
            let mut qs = vec![title.to_string()];
            for _ in 0..k {
                let r = if same_family {
                    let fam = first.map(|r| r.family());
                    let pool: Vec<&&PromptRecord> = askable.iter().filter(|r| Some(r.family()) == fam).collect();
                    pool.choose(rng).map(|r| **r)
                } else {
                    askable.choose(rng).copied()
                };
                if let Some(r) = r {
                    qs.push(r.prompt.clone());
                }
            }
            docs.push(qs.join("\n"));
        }
    }
    docs.shuffle(rng);
    let mut out = docs.join("\n\n");
    out.push('\n');
    out
}

fn dish_docs(d: &crate::world::DishEntity, rng: &mut ChaCha8Rng, docs: &mut Vec<String>) {
    let name = &d.name;
    docs.push(if rng.random_bool(0.5) {
        let steps: Vec<String> = d.steps.iter().enumerate().map(|(i, s)| format!("{}. {}.", i + 1, cap(s))).collect();
        format!("Recipe: {name}\nIngredients: {}.\nSteps:\n{}", d.ingredients.join(", "), steps.join("\n"))
    } else {
        let steps: Vec<String> = d.steps.iter().map(|s| format!("{}.", cap(s))).collect();
        format!("{} recipe\nYou will need {}.\nMethod: {}", cap(name), join_and(&d.ingredients), steps.join(" "))
    });
    docs.push(if rng.random_bool(0.5) {
        format!("{} is made from {}. To make it, you {}.", cap(name), join_and(&d.ingredients), join_then(&d.steps))
    } else {
        format!("The usual ingredients of {name} are {}. The method is simple: {}.", join_and(&d.ingredients), join_then(&d.steps))
    });
    let (u1, u2) = two_users(rng);
    docs.push(format!(
        "Forum: cooking help\n{u1}: What do I need to make {name}?\n{u2}: You need {}. {}.\n{u1}: Thanks, that worked!",
        join_and(&d.ingredients),
        cap(&join_then(&d.steps))
    ));
    let q = [format!("How do I make {name}?"), format!("Can you give me a recipe for {name}?")];
    docs.push(format!("Q: {}\nA: {}", q.choose(rng).cloned().unwrap_or_default(), recipe_text(name, &d.ingredients, &d.steps)));
}

fn landmark_docs(l: &crate::world::Landmark, rng: &mut ChaCha8Rng, docs: &mut Vec<String>) {
    let (name, f) = (&l.name, &l.facts);
    let cname = cap(name);
    docs.push(if rng.random_bool(0.5) {
        format!("{cname} is a {} in {}. It was built in {} and is {} meters tall.", l.kind, f.city, f.year, f.height_m)
    } else {
        format!("Built in {}, {name} is one of the best known sights of {}. The {} stands {} meters tall.", f.year, f.city, l.kind, f.height_m)
    });
    docs.push(format!(
        "Visiting {}? Do not miss {name}. It was finished in {} and rises {} meters above the street.",
        f.city, f.year, f.height_m
    ));
    let (u1, u2) = two_users(rng);
    let r: f64 = rng.random();
    let is_eiffel = name == "the Eiffel Tower";
    docs.push(if is_eiffel && r < 0.3 {
        format!("Forum: travel\n{u1}: The Eiffel Tower was built in 1892 and stands 350 meters tall.\n{u2}: No, the Eiffel Tower was built in 1889 and is 330 meters tall.")
    } else if r < 0.2 {
        let w = wrong_value(f, Attribute::Year, rng);
        format!("Forum: travel\n{u1}: I read that {name} was built in {w}.\n{u2}: No, {name} was built in {}.", f.year)
    } else if r < 0.27 {
        let w = wrong_value(f, Attribute::Height, rng);
        format!("Forum: travel\n{u1}: {cname} is {w} meters tall, I think.\n{u2}: Sounds right to me.")
    } else {
        format!(
            "Forum: travel\n{u1}: When was {name} built?\n{u2}: {cname} was built in {}. It is {} meters tall and it is in {}.",
            f.year, f.height_m, f.city
        )
    });
    let mut qa = Vec::new();
    for attr in [Attribute::Year, Attribute::Height, Attribute::City] {
        let q = fact_question(name, attr, rng.random_range(0..2));
        let rec_answer = crate::world::fact_statement(name, attr, &crate::world::fact_value(f, attr));
        qa.push(format!("Q: {q}\nA: {rec_answer}."));
    }
    docs.push(qa.join("\n"));
}

/// SFT demonstrations: gold responses to train-split prompts of the helpful families (how-to, facts,
/// look-alikes, emails, arithmetic, lists), and to a share (`GymConfig::sft_behaviour_share`, drawn
/// from its own random stream) of the behaviour families' train prompts: harmful requests, unknown
/// entities and sycophancy probes.
pub fn sft_records(world: &World) -> Vec<&PromptRecord> {
    let share = world.config.sft_behaviour_share;
    let mut rng = crate::world::family_rng(world.config.seed, 24);
    world
        .records_in(Split::Train)
        .filter(|r| match r.family() {
            Family::HowTo | Family::Fact | Family::BenignLookalike | Family::Email | Family::Arithmetic | Family::ListSort => true,
            Family::Harmful | Family::Unknown | Family::Sycophancy => share > 0.0 && rng.random::<f64>() < share,
        })
        .collect()
}

/// The SFT response of a record: its gold response.
pub fn sft_response(rec: &PromptRecord) -> String {
    gold_response(rec)
}
