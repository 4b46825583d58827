//! Simulated annotators. Annotator i prefers A to B with probability
//! σ((g(A) − g(B)) / τ_i + b_i · f(A, B)), where g is the gold overall score, τ_i the annotator's noise and
//! b_i its biases over the features f = (length, agreeing with the user, confident tone), each in [−1, 1].

use rand::Rng;
use serde::{Deserialize, Serialize};

use crate::judge::{self, agrees_with_user, is_abstention, is_hedged};
use crate::record::PromptRecord;
use crate::text::Norm;
use crate::{GymError, Result};

/// One simulated annotator.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct Annotator {
    pub name: String,
    /// Noise temperature τ > 0: larger means gold differences matter less.
    pub tau: f64,
    /// Weight on `tanh((words(A) − words(B)) / 15)`: > 0 likes longer answers.
    #[serde(default)]
    pub bias_length: f64,
    /// Weight on agrees(A) − agrees(B) (the response opens with "yes", "you are right", ...).
    #[serde(default)]
    pub bias_agree: f64,
    /// Weight on confident(A) − confident(B) (no hedge and no "I don't know").
    #[serde(default)]
    pub bias_confident: f64,
}

impl Annotator {
    pub fn new(name: &str, tau: f64, bias_length: f64, bias_agree: f64, bias_confident: f64) -> Annotator {
        Annotator { name: name.to_string(), tau, bias_length, bias_agree, bias_confident }
    }

    /// Probability that this annotator prefers A, given gold scores and features.
    pub fn prob_prefers_a(&self, gold_a: f64, gold_b: f64, f: &Features) -> f64 {
        let z = (gold_a - gold_b) / self.tau
            + self.bias_length * f.length
            + self.bias_agree * f.agree
            + self.bias_confident * f.confident;
        sigmoid(z)
    }
}

pub fn sigmoid(z: f64) -> f64 {
    1.0 / (1.0 + (-z).exp())
}

/// Bias features of a pair, each in [−1, 1], positive when A has more of it.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Default)]
pub struct Features {
    pub length: f64,
    pub agree: f64,
    pub confident: f64,
}

pub fn features(a: &str, b: &str) -> Features {
    let (na, nb) = (Norm::new(a), Norm::new(b));
    let conf = |n: &Norm| if is_hedged(n) || is_abstention(n) { 0.0 } else { 1.0 };
    let agree = |n: &Norm| if agrees_with_user(n) { 1.0 } else { 0.0 };
    Features {
        length: ((na.words.len() as f64 - nb.words.len() as f64) / 15.0).tanh(),
        agree: agree(&na) - agree(&nb),
        confident: conf(&na) - conf(&nb),
    }
}

/// A panel's configuration: the annotators, and which one labels `preferences_single.jsonl`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct PanelConfig {
    pub annotators: Vec<Annotator>,
    /// Index of the annotator used alone for the "one annotator vs the panel" experiment.
    pub single: usize,
}

impl Default for PanelConfig {
    /// Five annotators: four fairly careful ones with mild, different biases, and one very noisy one (the
    /// single annotator).
    fn default() -> Self {
        PanelConfig {
            annotators: vec![
                Annotator::new("careful", 0.08, 0.0, 0.0, 0.0),
                Annotator::new("likes_length", 0.10, 0.5, 0.0, 0.0),
                Annotator::new("agreeable", 0.10, 0.0, 0.5, 0.0),
                Annotator::new("likes_confidence", 0.10, 0.0, 0.0, 0.5),
                Annotator::new("noisy", 0.45, 0.3, 0.0, 0.0),
            ],
            single: 4,
        }
    }
}

impl PanelConfig {
    /// A panel whose shared biases a reward model will learn: long, agreeing, confident answers win small
    /// gold gaps. Use it to reproduce reward hacking.
    pub fn biased() -> Self {
        let a = |name: &str, tau| Annotator::new(name, tau, 2.5, 2.5, 1.0);
        PanelConfig {
            annotators: vec![a("biased_0", 0.2), a("biased_1", 0.25), a("biased_2", 0.3), a("biased_3", 0.25), a("biased_4", 0.3)],
            single: 0,
        }
    }

    pub fn validate(&self) -> Result<()> {
        if self.annotators.is_empty() {
            return Err(GymError::Config("panel has no annotators".into()));
        }
        if self.single >= self.annotators.len() {
            return Err(GymError::Config(format!(
                "panel.single = {} but there are {} annotators",
                self.single,
                self.annotators.len()
            )));
        }
        for a in &self.annotators {
            if !(a.tau > 0.0 && a.tau.is_finite()) {
                return Err(GymError::Config(format!("annotator {}: tau must be > 0, got {}", a.name, a.tau)));
            }
            if ![a.bias_length, a.bias_agree, a.bias_confident].iter().all(|b| b.is_finite()) {
                return Err(GymError::Config(format!("annotator {}: biases must be finite", a.name)));
            }
        }
        Ok(())
    }
}

/// The panel's verdict on one pair.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct Votes {
    pub gold_a: f64,
    pub gold_b: f64,
    /// Each annotator's probability of preferring A.
    pub probs: Vec<f64>,
    /// Each annotator's sampled vote: true = prefers A.
    pub prefers_a: Vec<bool>,
}

impl Votes {
    /// Share of annotators that voted for A.
    pub fn share_a(&self) -> f64 {
        self.prefers_a.iter().filter(|&&v| v).count() as f64 / self.prefers_a.len().max(1) as f64
    }
    /// Mean probability of preferring A.
    pub fn mean_prob_a(&self) -> f64 {
        self.probs.iter().sum::<f64>() / self.probs.len().max(1) as f64
    }
    /// Majority label; a tie is broken by the mean probability.
    pub fn majority_prefers_a(&self) -> bool {
        let s = self.share_a();
        if (s - 0.5).abs() < 1e-12 {
            self.mean_prob_a() > 0.5
        } else {
            s > 0.5
        }
    }
}

/// A panel of simulated annotators.
#[derive(Clone, Debug)]
pub struct Panel {
    pub config: PanelConfig,
}

impl Panel {
    pub fn new(config: PanelConfig) -> Result<Panel> {
        config.validate()?;
        Ok(Panel { config })
    }

    /// Every annotator compares responses `a` and `b` to `rec`. Draws one uniform number per annotator.
    pub fn vote(&self, rec: &PromptRecord, a: &str, b: &str, rng: &mut impl Rng) -> Votes {
        let gold_a = judge::score(rec, a).overall;
        let gold_b = judge::score(rec, b).overall;
        self.vote_scored(gold_a, gold_b, &features(a, b), rng)
    }

    /// `vote` with the gold scores and features already computed.
    pub fn vote_scored(&self, gold_a: f64, gold_b: f64, f: &Features, rng: &mut impl Rng) -> Votes {
        let probs: Vec<f64> = self.config.annotators.iter().map(|an| an.prob_prefers_a(gold_a, gold_b, f)).collect();
        let prefers_a = probs.iter().map(|&p| rng.random::<f64>() < p).collect();
        Votes { gold_a, gold_b, probs, prefers_a }
    }
}
