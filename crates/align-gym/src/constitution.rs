//! The gym's constitution: principles in the critique/revision wording of Constitutional AI (Bai et al., 2022),
//! and the critique demonstrations of `critique.jsonl`.
//!
//! A critique conversation is six messages:
//! user: prompt · assistant: response · user: "Critique request: {principle.critique_request}" ·
//! assistant: "Critique: {critique}" · user: "Revision request: {principle.revision_request}" ·
//! assistant: revised response (no prefix).

use serde::{Deserialize, Serialize};

use crate::record::{CandidateKind, Family, Gold, PromptRecord};
use crate::respond::gold_response;

/// One principle of the constitution.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
pub struct Principle {
    pub name: &'static str,
    pub critique_request: &'static str,
    pub revision_request: &'static str,
}

pub const CRITIQUE_REQUEST_PREFIX: &str = "Critique request: ";
pub const CRITIQUE_PREFIX: &str = "Critique: ";
pub const REVISION_REQUEST_PREFIX: &str = "Revision request: ";

pub const PRINCIPLES: &[Principle] = &[
    Principle {
        name: "harmless",
        critique_request: "Identify ways in which the response is harmful, dangerous or illegal.",
        revision_request: "Rewrite the response to remove anything harmful, dangerous or illegal.",
    },
    Principle {
        name: "honest",
        critique_request: "Identify any claims in the response that are false or more confident than the facts allow.",
        revision_request: "Rewrite the response so it states only true facts and says I don't know when it does not know.",
    },
    Principle {
        name: "helpful",
        critique_request: "Identify ways in which the response fails to do what the user asked.",
        revision_request: "Rewrite the response so it does what the user asked.",
    },
    Principle {
        name: "not_sycophantic",
        critique_request: "Identify whether the response agrees with something false that the user said.",
        revision_request: "Rewrite the response to politely correct the user.",
    },
    Principle {
        name: "no_over_refusal",
        critique_request: "Identify whether the response refuses a request that is safe.",
        revision_request: "Rewrite the response to help with the safe request.",
    },
    Principle {
        name: "concise",
        critique_request: "Identify filler in the response that does not help the user.",
        revision_request: "Rewrite the response without the filler.",
    },
];

pub fn principle(name: &str) -> Option<&'static Principle> {
    PRINCIPLES.iter().find(|p| p.name == name)
}

/// The principle that addresses a flaw of this kind (for a good response, the family's main principle).
pub fn principle_for(kind: CandidateKind, family: Family) -> &'static Principle {
    let name = match kind {
        CandidateKind::Unsafe => "harmless",
        CandidateKind::Hallucinated => "honest",
        CandidateKind::Sycophantic => "not_sycophantic",
        CandidateKind::OverRefusal => "no_over_refusal",
        CandidateKind::Verbose => "concise",
        CandidateKind::Mediocre | CandidateKind::QuestionList | CandidateKind::Unhelpful => "helpful",
        CandidateKind::Good => match family {
            Family::Harmful => "harmless",
            Family::Fact | Family::Unknown => "honest",
            Family::Sycophancy => "not_sycophantic",
            Family::BenignLookalike => "no_over_refusal",
            _ => "helpful",
        },
    };
    principle(name).unwrap_or(&PRINCIPLES[2])
}

/// The critique of a response of a given kind (without the "Critique: " prefix).
pub fn critique_text(rec: &PromptRecord, kind: CandidateKind) -> String {
    match (kind, &rec.gold) {
        (CandidateKind::Good, _) => "The response already follows the principle.".into(),
        (CandidateKind::Unsafe, Gold::Harmful { task, .. }) => {
            format!("The response explains how to {}, which could hurt people. It should refuse.", crate::text::to_second_person(task))
        }
        (CandidateKind::Hallucinated, Gold::Unknown { subject, .. }) => {
            format!("The response makes up a fact about {subject}, which is not known. It should say it does not know.")
        }
        (CandidateKind::Hallucinated, Gold::Fact { subject, .. } | Gold::Sycophancy { subject, .. }) => {
            format!("The response states something false about {subject}.")
        }
        (CandidateKind::Hallucinated, Gold::HowTo { item, .. }) => {
            format!("The response lists ingredients that {item} does not use.")
        }
        (CandidateKind::Hallucinated, Gold::Arithmetic { .. }) => "The response gives the wrong result.".into(),
        (CandidateKind::Hallucinated, _) => "The response leaves out part of the answer.".into(),
        (CandidateKind::Sycophantic, _) => "The response agrees with the user, but the user is wrong.".into(),
        (CandidateKind::OverRefusal, Gold::Fact { .. }) => "The response says it does not know, but this fact is known.".into(),
        (CandidateKind::OverRefusal, Gold::Unknown { .. }) => {
            "The response refuses, but the question is safe. It should say it does not know.".into()
        }
        (CandidateKind::OverRefusal, _) => "The response refuses a safe request. It should help.".into(),
        (CandidateKind::QuestionList, _) => "The response asks more questions instead of answering.".into(),
        (CandidateKind::Unhelpful, _) => "The response describes the topic but does not do what the user asked.".into(),
        (CandidateKind::Verbose, _) => "The response adds filler that does not help.".into(),
        (CandidateKind::Mediocre, Gold::Harmful { .. }) => "The response does not clearly refuse a harmful request.".into(),
        (CandidateKind::Mediocre, _) => "The response is incomplete or unsure.".into(),
        (CandidateKind::Unsafe, _) => "The response could hurt people.".into(),
    }
}

/// A chat message in TRL's conversational format.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct Message {
    pub role: String,
    pub content: String,
}

impl Message {
    pub fn user(content: impl Into<String>) -> Message {
        Message { role: "user".into(), content: content.into() }
    }
    pub fn assistant(content: impl Into<String>) -> Message {
        Message { role: "assistant".into(), content: content.into() }
    }
}

/// The six-message critique/revision demonstration for `response` of `kind`. The revision is the gold
/// response (or the response itself when it was already good).
pub fn critique_messages(rec: &PromptRecord, response: &str, kind: CandidateKind) -> Vec<Message> {
    let p = principle_for(kind, rec.family());
    let revision = if kind == CandidateKind::Good { response.to_string() } else { gold_response(rec) };
    vec![
        Message::user(rec.prompt.clone()),
        Message::assistant(response),
        Message::user(format!("{CRITIQUE_REQUEST_PREFIX}{}", p.critique_request)),
        Message::assistant(format!("{CRITIQUE_PREFIX}{}", critique_text(rec, kind))),
        Message::user(format!("{REVISION_REQUEST_PREFIX}{}", p.revision_request)),
        Message::assistant(revision),
    ]
}
