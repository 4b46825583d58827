//! Rewards: what scores a (prompt, response) pair during RL.
//!
//! One interface, [`Reward`], and its kinds: a trained reward model ([`ModelReward`]), a DPO
//! model's implicit reward ([`ImplicitReward`]), the gym's gold judge ([`GoldReward`], a
//! verifiable reward), a Rust closure ([`FnReward`]), an external command speaking JSON lines
//! ([`CommandReward`]) and an HTTP endpoint ([`HttpReward`]).
//! [`RewardSet`] sums weighted rewards, logs each one's mean, and applies clipping and the
//! missing-EOS penalty (TRL `missing_eos_penalty`). Built from TOML by [`RewardSpec`].

use align_data::chat_template::ChatTemplate;
use align_data::{Message, Tokenizer};
use align_models::reward::RewardModel;
use align_train::{Result, TrainError};
use candle_core::{DType, Device, Tensor};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::time::Duration;

/// What a reward sees of one sample.
#[derive(Debug, Clone, Copy)]
pub struct RewardInput<'a> {
    /// The prompt's messages (a single user turn for plain-text prompts).
    pub prompt: &'a [Message],
    /// The decoded response, without special tokens.
    pub response: &'a str,
    /// The prompt's whole record as read from the prompt file (the gym's gold facts live here).
    pub meta: &'a Value,
}

/// Scores a batch of samples; one number each, higher is better.
pub trait Reward: Send {
    fn name(&self) -> String;
    fn score(&mut self, batch: &[RewardInput]) -> Result<Vec<f64>>;
}

fn cfg_err(msg: impl Into<String>) -> TrainError {
    TrainError::Config(msg.into())
}

/// A trained reward model (`align rm`, or any HF sequence-classification checkpoint with
/// `score.weight`): the response is put after the prompt with the tokenizer's chat template and
/// scored at its last token, as it was trained.
pub struct ModelReward {
    rm: RewardModel,
    tok: Tokenizer,
    tmpl: ChatTemplate,
    batch_size: usize,
    max_len: usize,
}

impl ModelReward {
    pub fn load(dir: &std::path::Path, batch_size: usize) -> Result<Self> {
        let rm = RewardModel::from_pretrained(dir, DType::F32, &Device::Cpu).map_err(TrainError::other)?;
        let tok = Tokenizer::from_dir(dir).map_err(TrainError::other)?;
        let tmpl = ChatTemplate::from_tokenizer(&tok).map_err(TrainError::other)?;
        let max_len = rm.model.config.max_positions();
        Ok(Self { rm, tok, tmpl, batch_size: batch_size.max(1), max_len })
    }
}

impl Reward for ModelReward {
    fn name(&self) -> String {
        "reward_model".into()
    }
    fn score(&mut self, batch: &[RewardInput]) -> Result<Vec<f64>> {
        let mut out = Vec::with_capacity(batch.len());
        for chunk in batch.chunks(self.batch_size) {
            let mut rows = vec![];
            for x in chunk {
                let mut msgs = x.prompt.to_vec();
                msgs.push(Message::new("assistant", x.response));
                let text = self.tmpl.render(&msgs, false).map_err(TrainError::other)?;
                let mut ids = self.tok.encode(&text, false).map_err(TrainError::other)?;
                if ids.len() > self.max_len {
                    ids.drain(..ids.len() - self.max_len); // keep the end: the response is scored there
                }
                if ids.is_empty() {
                    ids.push(self.tok.pad_id().or(self.tok.eos_id()).unwrap_or(0));
                }
                rows.push(ids);
            }
            let t = rows.iter().map(Vec::len).max().unwrap_or(1);
            let lengths: Vec<usize> = rows.iter().map(Vec::len).collect();
            let flat: Vec<u32> = rows.iter().flat_map(|r| r.iter().copied().chain(std::iter::repeat_n(0, t - r.len()))).collect();
            let ids = Tensor::from_vec(flat, (rows.len(), t), &Device::Cpu)?;
            let r = self.rm.forward(&ids, &lengths).map_err(TrainError::other)?.detach();
            out.extend(r.to_vec1::<f32>()?.into_iter().map(f64::from));
        }
        Ok(out)
    }
}

/// A DPO-trained model's implicit reward, `β · (log π(y|x) − log π_ref(y|x))` summed over the
/// response tokens (Rafailov et al. 2023, §5, "your language model is secretly a reward model";
/// RewardBench scores DPO models this way, and TRL's `DPOTrainer` logs it as `rewards/chosen`). `π` is the DPO model, `π_ref` the model it was trained against (its
/// `ref_model`, usually the SFT model). The response is put after the prompt with the DPO model's
/// chat template and scored on its tokens and the end-of-turn token, as DPO trained it.
pub struct ImplicitReward {
    policy: align_models::Model,
    reference: align_models::Model,
    tok: Tokenizer,
    tmpl: ChatTemplate,
    beta: f64,
    batch_size: usize,
    max_len: usize,
}

impl ImplicitReward {
    pub fn load(policy: &std::path::Path, reference: &std::path::Path, beta: f64, batch_size: usize) -> Result<Self> {
        if !(beta.is_finite() && beta > 0.0) {
            return Err(cfg_err(format!("implicit reward: beta must be positive, got {beta}")));
        }
        let load = |d: &std::path::Path| align_models::Model::from_pretrained(d, DType::F32, &Device::Cpu).map_err(TrainError::other);
        let (policy_m, reference_m) = (load(policy)?, load(reference)?);
        let tok = Tokenizer::from_dir(policy).map_err(TrainError::other)?;
        let tmpl = ChatTemplate::from_tokenizer(&tok).map_err(TrainError::other)?;
        let ref_tok = Tokenizer::from_dir(reference).map_err(TrainError::other)?;
        if ref_tok.vocab_size() != tok.vocab_size() {
            return Err(cfg_err(format!(
                "implicit reward: {} and its reference {} have different vocabularies ({} vs {} tokens)",
                policy.display(),
                reference.display(),
                tok.vocab_size(),
                ref_tok.vocab_size()
            )));
        }
        let max_len = policy_m.config.max_positions().min(reference_m.config.max_positions());
        Ok(Self { policy: policy_m, reference: reference_m, tok, tmpl, beta, batch_size: batch_size.max(1), max_len })
    }
}

impl Reward for ImplicitReward {
    fn name(&self) -> String {
        "implicit".into()
    }
    fn score(&mut self, batch: &[RewardInput]) -> Result<Vec<f64>> {
        use align_data::formats::{Example, Text};
        use align_train::sft::{tokenize_example, SftData};
        let cfg = SftData { max_seq_len: self.max_len, truncation: "keep_start".into(), ..SftData::default() };
        let mut seqs = Vec::with_capacity(batch.len());
        for x in batch {
            let ex = Example::PromptCompletion { prompt: Text::Conversation(x.prompt.to_vec()), completion: Text::Conversation(vec![Message::new("assistant", x.response)]) };
            let mut s = tokenize_example(&self.tok, &self.tmpl, &ex, &cfg)?;
            s.ids.truncate(self.max_len);
            s.mask.truncate(self.max_len);
            seqs.push(s);
        }
        let dev = Device::Cpu;
        let mut out = Vec::with_capacity(batch.len());
        for chunk in seqs.chunks(self.batch_size) {
            let lp = |m: &align_models::Model| -> Result<Vec<f32>> { Ok(align_train::dpo::completion_logps(m.lm.as_ref(), chunk, true, &dev)?.0.detach().to_vec1::<f32>()?) };
            let (p, r) = (lp(&self.policy)?, lp(&self.reference)?);
            // A response truncated away entirely has no tokens: both sums are 0, so is its reward.
            out.extend(p.iter().zip(&r).map(|(p, r)| self.beta * (f64::from(*p) - f64::from(*r))));
        }
        Ok(out)
    }
}

/// Which gold score the gym's judge returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GoldAxis {
    #[default]
    Overall,
    Helpful,
    Honest,
    Harmless,
}

/// The gym's gold judge. Each prompt's record (a line of the gym's `prompts/*.jsonl`) is the
/// sample's `meta`.
pub struct GoldReward {
    pub axis: GoldAxis,
}

impl Reward for GoldReward {
    fn name(&self) -> String {
        match self.axis {
            GoldAxis::Overall => "gold".into(),
            a => format!("gold_{}", serde_json::to_value(a).ok().and_then(|v| v.as_str().map(String::from)).unwrap_or_default()),
        }
    }
    fn score(&mut self, batch: &[RewardInput]) -> Result<Vec<f64>> {
        batch
            .iter()
            .map(|x| {
                let rec: align_gym::PromptRecord = serde_json::from_value(x.meta.clone())
                    .map_err(|e| cfg_err(format!("the gold reward needs gym prompt records (prompts/*.jsonl of `align gym build`): {e}")))?;
                let s = align_gym::judge::score(&rec, x.response);
                Ok(match self.axis {
                    GoldAxis::Overall => s.overall,
                    GoldAxis::Helpful => s.helpful,
                    GoldAxis::Honest => s.honest,
                    GoldAxis::Harmless => s.harmless,
                })
            })
            .collect()
    }
}

/// A plain Rust function of one sample (tests, programmatic use).
pub struct FnReward<F: FnMut(&RewardInput) -> f64 + Send> {
    pub name: String,
    pub f: F,
}

impl<F: FnMut(&RewardInput) -> f64 + Send> Reward for FnReward<F> {
    fn name(&self) -> String {
        self.name.clone()
    }
    fn score(&mut self, batch: &[RewardInput]) -> Result<Vec<f64>> {
        Ok(batch.iter().map(|x| (self.f)(x)).collect())
    }
}

/// The request line sent for each sample to a command or an HTTP endpoint.
fn request(x: &RewardInput) -> Value {
    json!({"prompt": x.prompt, "response": x.response, "meta": x.meta})
}

/// A number from a reply: a bare number or `{"reward": x}`.
fn reward_of(v: &Value) -> Option<f64> {
    v.as_f64().or_else(|| v.get("reward").and_then(Value::as_f64)).filter(|r| r.is_finite())
}

/// An external program, started once and kept running: for every sample it reads one JSON line
/// `{"prompt": [...messages], "response": "...", "meta": {...}}` on stdin and answers one line,
/// a number or `{"reward": x}`, on stdout.
pub struct CommandReward {
    argv: Vec<String>,
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
}

impl CommandReward {
    pub fn spawn(argv: &[String]) -> Result<Self> {
        let (prog, args) = argv.split_first().ok_or_else(|| cfg_err("reward command is empty"))?;
        let mut child = Command::new(prog)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(|e| cfg_err(format!("cannot start reward command {argv:?}: {e}")))?;
        let stdin = child.stdin.take().ok_or_else(|| cfg_err("no stdin"))?;
        let stdout = BufReader::new(child.stdout.take().ok_or_else(|| cfg_err("no stdout"))?);
        Ok(Self { argv: argv.to_vec(), child, stdin, stdout })
    }
}

impl Drop for CommandReward {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Reward for CommandReward {
    fn name(&self) -> String {
        "command".into()
    }
    fn score(&mut self, batch: &[RewardInput]) -> Result<Vec<f64>> {
        let err = |msg: String| cfg_err(format!("reward command {:?}: {msg}", self.argv));
        let mut text = String::new();
        for x in batch {
            text.push_str(&request(x).to_string());
            text.push('\n');
        }
        self.stdin.write_all(text.as_bytes()).and_then(|_| self.stdin.flush()).map_err(|e| err(format!("write failed ({e}); did it exit?")))?;
        let mut out = Vec::with_capacity(batch.len());
        for i in 0..batch.len() {
            let mut line = String::new();
            let n = self.stdout.read_line(&mut line).map_err(|e| err(format!("read failed: {e}")))?;
            if n == 0 {
                return Err(err(format!("exited after {i} of {} replies", batch.len())));
            }
            let v: Value = serde_json::from_str(line.trim()).map_err(|e| err(format!("reply {} is not JSON ({e}): {:?}", i + 1, line.trim())))?;
            out.push(reward_of(&v).ok_or_else(|| err(format!("reply {} has no finite number or \"reward\": {:?}", i + 1, line.trim())))?);
        }
        Ok(out)
    }
}

/// An HTTP endpoint: `POST url` with `{"samples": [request, ...]}`, answered with
/// `{"rewards": [x, ...]}` (one per sample). Plain HTTP, a timeout, and retries with backoff.
pub struct HttpReward {
    url: String,
    agent: ureq::Agent,
    retries: usize,
}

impl HttpReward {
    pub fn new(url: &str, timeout: Duration, retries: usize) -> Self {
        let agent = ureq::Agent::config_builder().timeout_global(Some(timeout)).http_status_as_error(false).build().new_agent();
        Self { url: url.to_string(), agent, retries }
    }

    fn call(&self, body: &Value) -> std::result::Result<Vec<f64>, String> {
        let mut resp = self.agent.post(&self.url).send_json(body).map_err(|e| e.to_string())?;
        let status = resp.status();
        let text = resp.body_mut().read_to_string().map_err(|e| e.to_string())?;
        if !status.is_success() {
            return Err(format!("HTTP {status}: {}", text.chars().take(200).collect::<String>()));
        }
        let v: Value = serde_json::from_str(&text).map_err(|e| format!("reply is not JSON ({e})"))?;
        let arr = v.get("rewards").and_then(Value::as_array).ok_or("reply has no \"rewards\" array")?;
        arr.iter().map(|x| reward_of(x).ok_or_else(|| format!("reward {x} is not a finite number"))).collect()
    }
}

impl Reward for HttpReward {
    fn name(&self) -> String {
        "http".into()
    }
    fn score(&mut self, batch: &[RewardInput]) -> Result<Vec<f64>> {
        let body = json!({"samples": batch.iter().map(request).collect::<Vec<_>>()});
        let mut last = String::new();
        for attempt in 0..=self.retries {
            if attempt > 0 {
                std::thread::sleep(Duration::from_millis(100 << attempt.min(6)));
            }
            match self.call(&body) {
                Ok(r) if r.len() == batch.len() => return Ok(r),
                Ok(r) => last = format!("{} rewards for {} samples", r.len(), batch.len()),
                Err(e) => last = e,
            }
        }
        Err(cfg_err(format!("reward endpoint {}: {last} (after {} attempts)", self.url, self.retries + 1)))
    }
}

/// One reward of a config file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum RewardSpec {
    /// `{kind = "model", path = "runs/rm/model"}`.
    Model {
        path: PathBuf,
        #[serde(default = "one")]
        weight: f64,
    },
    /// `{kind = "implicit", path = "runs/dpo/model", reference = "runs/sft/model", beta = 0.1}`: a
    /// DPO model's implicit reward against the model it was trained from (`beta` as its DPO β).
    Implicit {
        path: PathBuf,
        reference: PathBuf,
        #[serde(default = "default_implicit_beta")]
        beta: f64,
        #[serde(default = "one")]
        weight: f64,
    },
    /// `{kind = "gold", axis = "overall"}`: the gym's judge (prompts must be gym records).
    Gold {
        #[serde(default)]
        axis: GoldAxis,
        #[serde(default = "one")]
        weight: f64,
    },
    /// `{kind = "command", command = ["python3", "score.py"]}`.
    Command {
        command: Vec<String>,
        #[serde(default = "one")]
        weight: f64,
    },
    /// `{kind = "http", url = "http://127.0.0.1:9000/score", timeout_s = 30, retries = 2}`.
    Http {
        url: String,
        #[serde(default = "default_timeout")]
        timeout_s: f64,
        #[serde(default = "default_retries")]
        retries: usize,
        #[serde(default = "one")]
        weight: f64,
    },
}

fn one() -> f64 {
    1.0
}
fn default_implicit_beta() -> f64 {
    0.1 // TRL's DPOConfig.beta
}
fn default_timeout() -> f64 {
    30.0
}
fn default_retries() -> usize {
    2
}

impl RewardSpec {
    pub fn build(&self) -> Result<(f64, Box<dyn Reward>)> {
        Ok(match self {
            RewardSpec::Model { path, weight } => (*weight, Box::new(ModelReward::load(path, 16)?)),
            RewardSpec::Implicit { path, reference, beta, weight } => (*weight, Box::new(ImplicitReward::load(path, reference, *beta, 16)?)),
            RewardSpec::Gold { axis, weight } => (*weight, Box::new(GoldReward { axis: *axis })),
            RewardSpec::Command { command, weight } => (*weight, Box::new(CommandReward::spawn(command)?)),
            RewardSpec::Http { url, timeout_s, retries, weight } => (*weight, Box::new(HttpReward::new(url, Duration::from_secs_f64(*timeout_s), *retries))),
        })
    }
}

/// Shaping applied to the weighted sum.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RewardShaping {
    /// Subtracted from the score of a response that hit the length limit without EOS (TRL
    /// `missing_eos_penalty`; none by default).
    pub missing_eos_penalty: Option<f64>,
    /// Clip the final score to [-c, c] (none by default).
    pub clip: Option<f64>,
}

/// Weighted rewards. Their sum (after shaping) is the RL score; each one's batch mean is logged as
/// `rewards/<name>`.
pub struct RewardSet {
    pub items: Vec<(f64, Box<dyn Reward>)>,
    pub shaping: RewardShaping,
    /// (mean, std) subtracted from and dividing the weighted sum before the shaping (PPO's
    /// `normalize_reward`, fitted on the initial policy's samples); none = raw sums.
    pub normalization: Option<(f64, f64)>,
}

impl RewardSet {
    pub fn from_specs(specs: &[RewardSpec], shaping: RewardShaping) -> Result<Self> {
        if specs.is_empty() {
            return Err(cfg_err("no reward configured: add at least one [[rewards]] entry"));
        }
        Ok(Self { items: specs.iter().map(RewardSpec::build).collect::<Result<_>>()?, shaping, normalization: None })
    }

    /// Scores (B,) and the mean of each reward (`rewards/<name>`, and `rewards/<name>_<i>` when two
    /// rewards share a name).
    pub fn score(&mut self, batch: &[RewardInput], eos: &[bool]) -> Result<(Vec<f64>, BTreeMap<String, f64>)> {
        let mut total = vec![0.0; batch.len()];
        let mut means = BTreeMap::new();
        for (i, (w, r)) in self.items.iter_mut().enumerate() {
            let s = r.score(batch)?;
            if s.len() != batch.len() {
                return Err(cfg_err(format!("reward {} returned {} scores for {} samples", r.name(), s.len(), batch.len())));
            }
            if let Some(bad) = s.iter().position(|x| !x.is_finite()) {
                return Err(cfg_err(format!("reward {} returned a non-finite score for sample {bad}", r.name())));
            }
            let mut key = format!("rewards/{}", r.name());
            if means.contains_key(&key) {
                key = format!("{key}_{i}");
            }
            means.insert(key, s.iter().sum::<f64>() / s.len().max(1) as f64);
            for (t, x) in total.iter_mut().zip(&s) {
                *t += *w * x;
            }
        }
        for (t, &e) in total.iter_mut().zip(eos) {
            if let Some((m, sd)) = self.normalization {
                *t = (*t - m) / sd;
            }
            if let (Some(p), false) = (self.shaping.missing_eos_penalty, e) {
                *t -= p;
            }
            if let Some(c) = self.shaping.clip {
                *t = t.clamp(-c, c);
            }
        }
        Ok((total, means))
    }
}
