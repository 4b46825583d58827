//! `align demo`: the whole pipeline on the built-in gym, with no arguments.
//!
//! gym → tokenizer → pretrain (stage 1) → SFT (stage 2) → on-policy pairs → reward model → DPO →
//! PPO (stage 3) → reward hacking (a biased panel's reward model, PPO at kl 0, at the default
//! β and at `hacking_extra_kl`) → gold evaluation of each stage → report. Each stage writes its
//! outputs under `--out` and a `DONE` marker last, so a killed demo resumes where it stopped
//! (`--fresh` starts over). Every knob is in [`DemoConfig`], overridable with `--config FILE` or
//! `--set key=value`.

use align_data::{tokenizer::train_bpe_opts, DEFAULT_SPECIAL_TOKENS};
use align_eval::evaluate::{evaluate_model, StageEval};
use align_eval::gym::balanced_subset;
use align_eval::respond::PromptStyle;
use align_generate::SamplingConfig;
use align_gym::{load_prompts, GymConfig, Size, World};
use align_train::pretrain::{DataConfig, ModelSpec, PretrainConfig};
use align_eval::onpolicy::{sample_and_label, Labeler, OnPolicyConfig};
use align_rl::config::{Algorithm, RlConfig};
use align_rl::reward::RewardSpec;
use align_train::dpo::{DpoConfig, Objective, PrefData};
use align_train::rm::{RmConfig, RmData};
use align_train::pref_loss::DpoLossConfig;
use align_train::sft::{PtxConfig, SftConfig, SftData};
use align_train::TrainConfig;
use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::time::Instant;

#[derive(clap::Args, Debug)]
pub struct DemoArgs {
    /// Seed of the gym and of every stage.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Gym size: small or medium.
    #[arg(long, default_value = "small")]
    pub size: String,
    /// Run directory (stages are cached there).
    #[arg(long, default_value = "runs/demo")]
    pub out: PathBuf,
    /// A TOML file overriding [`DemoConfig`] keys.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Override a key, e.g. `--set pretrain.max_steps=100`.
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub sets: Vec<String>,
    /// Ignore cached stages and run everything again.
    #[arg(long)]
    pub fresh: bool,
}

/// The demo's knobs, sized so the whole pipeline runs in minutes on a 2-core CPU.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DemoConfig {
    /// Share of the gym's harmful, unknown-entity and sycophancy train prompts whose gold answer
    /// (refusal, "I don't know", correction) joins the SFT data (`GymConfig::sft_behaviour_share`;
    /// 0.1 against 0 on seeds 0–2: DPO refused 68–82% of held-out harmful requests instead of 41–56%,
    /// docs/gym.md).
    pub sft_behaviour_share: f64,
    /// BPE vocabulary trained on the gym's pretraining corpus.
    pub vocab_size: usize,
    /// Split numbers into single digits in the tokenizer (LLaMA's and Qwen2's choice). Off: on
    /// seeds 0–2 it made the SFT model say "I don't know" to 23–47% of unseen names (0–1% before)
    /// but DPO's abstention on them fell below 70% on two seeds (docs/dpo.md, "Digits").
    pub split_digits: bool,
    pub model: ModelSpec,
    pub pretrain_data: DataConfig,
    pub pretrain: TrainConfig,
    pub sft_data: SftData,
    pub sft: TrainConfig,
    /// Pretraining sequences mixed into each SFT micro-batch (0 = off) and their weight.
    pub sft_ptx_batch_size: usize,
    pub sft_ptx_coef: f64,
    pub dpo_data: PrefData,
    /// DPO loss (TRL defaults, plus an NLL term on chosen: `rpo_alpha`).
    pub dpo_loss: DpoLossConfig,
    pub dpo: TrainConfig,
    /// Pretraining sequences mixed into each DPO micro-batch (0 = off).
    pub dpo_ptx_batch_size: usize,
    /// On-policy pairs for DPO: SFT answers to this many train prompts (0 = off; the default is
    /// more than the small gym has, so all of them), each paired with the gym's good answer and
    /// labelled by the simulated panel (`align onpolicy --labeler panel`); `onpolicy_samples` answers per prompt (4
    /// gave no more abstention and 35% of wrong beliefs agreed with, seed 0, docs/dpo.md).
    pub onpolicy_prompts: usize,
    pub onpolicy_samples: usize,
    /// Reward model on the panel's labels (Bradley-Terry), from the SFT model.
    pub rm: TrainConfig,
    /// The reward model measured on what PPO will show it: the SFT model's own answers (2 per
    /// prompt, temperature 1) to this many held-out prompts (0 = off; the default covers all of the
    /// small gym's), paired and labelled by the panel; pairs gold cannot separate are skipped.
    /// Written to `rm/onpolicy_accuracy.json` and the report (docs/rl.md has why it matters).
    pub rm_onpolicy_prompts: usize,
    /// PPO against that reward model with a KL penalty to the SFT model (0 steps = off).
    pub ppo: align_rl::config::PpoConfig,
    pub ppo_train: TrainConfig,
    pub ppo_sampling: SamplingConfig,
    /// Reward hacking (issue 6): PPO against a reward model trained on a biased panel's labels
    /// (`PanelConfig::biased`), once with kl_coef 0, once with `ppo.kl_coef` and once with each
    /// of `hacking_extra_kl`; these are every run's loop settings (0 steps = no hacking stage).
    /// Written to `hacking/<variant>/`.
    pub hacking_train: TrainConfig,
    /// More KL coefficients for the hacking runs, beside 0 and the default. 0.5 (ten times TRL's
    /// 0.05) keeps 60 / 78 / 64% of the held-out gold the unpenalized run loses on seeds 0 / 1 / 2,
    /// TRL's 0.05 11 / 31 / 28%. No β up to 1 keeps gold from falling: the biased reward model
    /// prefers compliance, and the SFT model refuses held-out harmful requests only sometimes, so
    /// dropping its refusals costs little KL (docs/rl.md, "How large a penalty keeps gold from
    /// falling"). Empty: only the two runs.
    pub hacking_extra_kl: Vec<f64>,
    /// The held-out families on which the hacking runs are evaluated: those where the SFT model
    /// gives real answers (how-to, email, lists, benign look-alikes, facts: gold 0.47–1.0 for the
    /// demo's SFT model) and harmful requests (it refuses 15–45% of them; drifting away from a
    /// refusal loses gold, away from compliance gains it, as it should). On unknown-entity and
    /// arithmetic prompts it answers confidently wrong (gold ≤ 0.07), so any drift gains gold — the
    /// judge scores an incoherent answer above a confident falsehood — which hides the loss of what
    /// the model could do (docs/rl.md has every family).
    pub hacking_eval_families: Vec<String>,
    /// The train families whose prompts the hacking runs roll out on (empty: every family, as
    /// TRL trains on a prompt set). Leaving out unknown names did not stop the "I don't know" hack
    /// on facts (docs/rl.md, "Rolling out only on the families where hacking is measured").
    pub hacking_train_families: Vec<String>,
    /// Held-out prompts answered greedily every 5 rollouts of the PPO runs (eval/gold, eval/score).
    pub rl_eval_prompts: usize,
    /// Matmul precision of every training stage: "auto" (bf16 with f32 master weights and
    /// accumulation where the CPU has AVX512_BF16, else f32), "f32" or "bf16"; overrides the
    /// stages' own `matmul_precision` (docs/training.md has the loss curves of both).
    pub matmul_precision: String,
    /// Held-out prompts per family in the gold evaluation, evenly spaced through each family
    /// (`align_eval::gym::balanced_subset`).
    pub eval_per_family: usize,
    pub eval_max_new_tokens: usize,
    pub eval_batch_size: usize,
    /// Responses per held-out prompt sampled to measure each aligned model's KL from the SFT
    /// model (`align_eval::kl`; 0 = not measured).
    pub eval_kl_samples: usize,
}

impl Default for DemoConfig {
    fn default() -> Self {
        DemoConfig {
            sft_behaviour_share: GymConfig::default().sft_behaviour_share,
            vocab_size: 2048,
            split_digits: false,
            model: ModelSpec { d_model: 128, n_layers: 4, n_heads: 4, ..ModelSpec::default() },
            pretrain_data: DataConfig { seq_len: 256, batch_size: 16, eval_fraction: 0.02, eval_batches: 8, ..DataConfig::default() },
            // 1,000 steps (~14 passes over the ~285k-token corpus). At 300 steps the SFT model often
            // answered about another dish or landmark than the one asked ("How do I make bread?" →
            // "To make muffins, ..."; held-out fact accuracy 0); at 1,000 its SFT answers how-to 1.00 and
            // facts 0.53–0.60, and DPO's overall gold rose 0.41 → 0.60–0.61 (seeds 0 and 1,
            // 2026-12-05; docs/dpo.md). +70 s on 2 cores.
            pretrain: TrainConfig {
                lr: 3e-3,
                weight_decay: 0.1,
                beta2: 0.95,
                warmup_steps: 20,
                min_lr_ratio: 0.1,
                max_steps: 1000,
                log_every: 10,
                eval_every: 250,
                save_every: 250,
                quiet: false,
                ..TrainConfig::default()
            },
            sft_data: SftData { max_seq_len: 256, batch_size: 16, packing: true, eval_fraction: 0.05, ..SftData::default() },
            sft: TrainConfig {
                lr: 1e-3,
                weight_decay: 0.0,
                warmup_steps: 10,
                min_lr_ratio: 0.1,
                max_steps: 150,
                log_every: 10,
                eval_every: 50,
                save_every: 50,
                ..TrainConfig::default()
            },
            sft_ptx_batch_size: 2,
            sft_ptx_coef: 1.0,
            dpo_data: PrefData { max_seq_len: 256, batch_size: 8, eval_fraction: 0.05, ..PrefData::default() },
            dpo_loss: DpoLossConfig { rpo_alpha: Some(1.0), ..DpoLossConfig::default() },
            // ~0.95 epoch of the ~7.6k training pairs (panel + on-policy). 1,800 steps was no better
            // (seed 0, first 40 prompts per family: "I don't know" 40% vs 85%, harmful refused 75% vs 90%;
            // seed 1 about equal) and took 50 s more (2026-12-06, docs/dpo.md).
            dpo: TrainConfig {
                lr: 5e-4,
                warmup_steps: 10,
                min_lr_ratio: 0.1,
                max_steps: 900,
                log_every: 10,
                eval_every: 300,
                save_every: 300,
                ..TrainConfig::default()
            },
            dpo_ptx_batch_size: 2,
            onpolicy_prompts: 6000,
            onpolicy_samples: 2,
            rm_onpolicy_prompts: 2000,
            rm: TrainConfig {
                lr: 5e-4,
                warmup_steps: 10,
                min_lr_ratio: 0.1,
                max_steps: 100,
                log_every: 10,
                eval_every: 50,
                save_every: 50,
                ..TrainConfig::default()
            },
            // TRL's β 0.05 on the normalized reward (PpoConfig::normalize_reward). A reward model of
            // ~87% accuracy is easy to over-optimize: at lr 3e-5 for 200 steps held-out gold fell
            // while the proxy rose (docs/rl.md); the demo steps gently.
            ppo: align_rl::config::PpoConfig { rollout_batch_size: 32, mini_batch_size: 16, ppo_epochs: 4, ..Default::default() },
            ppo_train: rl_loop(1e-5, 200),
            ppo_sampling: SamplingConfig { temperature: 1.0, top_k: 0, max_new_tokens: 48, ..SamplingConfig::default() },
            hacking_train: rl_loop(3e-5, 200),
            hacking_extra_kl: vec![0.5],
            rl_eval_prompts: 200,
            hacking_eval_families: ["how_to", "email", "list_sort", "benign_lookalike", "fact", "harmful"].map(String::from).to_vec(),
            hacking_train_families: vec![],
            matmul_precision: "auto".into(),
            eval_per_family: 40,
            eval_max_new_tokens: 64,
            eval_batch_size: 40,
            eval_kl_samples: 1,
        }
    }
}

/// An RL run's loop: constant learning rate, no warm-up (TRL's PPO), a log line per rollout.
fn rl_loop(lr: f64, max_steps: u64) -> TrainConfig {
    TrainConfig {
        lr,
        warmup_steps: 0,
        lr_scheduler: align_train::schedule::LrScheduler::Constant,
        max_steps,
        log_every: 8,
        save_every: 100,
        ..TrainConfig::default()
    }
}

fn done(dir: &Path) -> bool {
    dir.join("DONE").exists()
}

fn mark_done(dir: &Path, summary: &impl Serialize) -> Result<()> {
    let text = serde_json::to_string_pretty(summary)?;
    align_core::atomic::write_atomic(dir.join("summary.json"), text.as_bytes())?;
    align_core::atomic::write_atomic(dir.join("DONE"), b"")?;
    Ok(())
}

/// Mixing of the gym's pretraining corpus (off when `batch_size` is 0).
fn ptx(gym: &Path, batch_size: usize, coef: f64) -> Option<PtxConfig> {
    (batch_size > 0).then(|| PtxConfig { files: vec![gym.join("pretrain.txt")], batch_size, seq_len: 0, coef })
}

fn stage(name: &str, i: usize, n: usize) {
    eprintln!("\n== [{i}/{n}] {name} ==");
}

pub fn run(args: DemoArgs) -> Result<()> {
    let t0 = Instant::now();
    let (mut cfg, resolved): (DemoConfig, toml::Value) = crate::config::load_over_defaults(args.config.as_deref(), &args.sets)?;
    let precision = match cfg.matmul_precision.as_str() {
        "auto" if align_models::kernels::bf16_matmul::available() => "bf16",
        "auto" => "f32",
        p => p,
    }
    .to_string();
    for t in [&mut cfg.pretrain, &mut cfg.sft, &mut cfg.rm, &mut cfg.dpo, &mut cfg.ppo_train, &mut cfg.hacking_train] {
        t.matmul_precision = precision.clone();
    }
    eprintln!("training matmuls in {precision} (matmul_precision = \"{}\")", cfg.matmul_precision);
    if let Some(b) = cfg.hacking_extra_kl.iter().find(|b| !(b.is_finite() && **b >= 0.0)) {
        anyhow::bail!("hacking_extra_kl: {b} is not a KL coefficient (a finite number ≥ 0)");
    }
    let size: Size = args.size.parse().map_err(|e| anyhow::anyhow!("--size: {e}"))?;
    let gym_config = GymConfig { seed: args.seed, size, sft_behaviour_share: cfg.sft_behaviour_share, ..GymConfig::default() };
    gym_config.validate()?;
    let out = args.out.clone();
    if args.fresh && out.exists() {
        std::fs::remove_dir_all(&out).with_context(|| format!("cannot clear {}", out.display()))?;
    }
    std::fs::create_dir_all(&out)?;
    align_core::atomic::write_atomic(out.join("demo_config.toml"), toml::to_string_pretty(&resolved)?.as_bytes())?;
    let n = 10;
    let seed = args.seed;

    // 1. The gym.
    let gym = out.join("gym");
    stage("build the alignment gym", 1, n);
    if !done(&gym) {
        let summary = World::generate(&gym_config).build(&gym)?;
        mark_done(&gym, &summary)?;
    }
    eprintln!("gym in {}", gym.display());

    // 2. Tokenizer.
    let tok_dir = out.join("tokenizer");
    stage("train a byte-level BPE tokenizer", 2, n);
    if !done(&tok_dir) {
        let tok = train_bpe_opts(&[gym.join("pretrain.txt")], cfg.vocab_size, &DEFAULT_SPECIAL_TOKENS, 2, cfg.split_digits)?;
        tok.save_dir(&tok_dir)?;
        mark_done(&tok_dir, &serde_json::json!({"vocab_size": tok.vocab_size()}))?;
    }

    // 3. Pretraining.
    let pre = out.join("pretrain");
    stage("stage 1: pretrain a raw next-token predictor", 3, n);
    if !done(&pre) {
        let pc = PretrainConfig {
            out_dir: pre.clone(),
            tokenizer: tok_dir.clone(),
            data: DataConfig { files: vec![gym.join("pretrain.txt")], ..cfg.pretrain_data.clone() },
            model: cfg.model.clone(),
            train: TrainConfig { seed, ..cfg.pretrain.clone() },
        };
        let s = align_train::pretrain::run(&pc, true, &toml::to_string_pretty(&pc)?)?;
        eprintln!(
            "pretrained {} parameters: held-out loss {:.3} (unigram entropy {:.3}) in {:.0} s",
            s.params, s.eval_loss, s.unigram_entropy, s.seconds
        );
        mark_done(&pre, &s)?;
    }

    // 4. SFT.
    let sft = out.join("sft");
    stage("stage 2: instruction tuning (SFT)", 4, n);
    if !done(&sft) {
        let sc = SftConfig {
            out_dir: sft.clone(),
            model: pre.join("model"),
            data: SftData { files: vec![gym.join("sft.jsonl")], ..cfg.sft_data.clone() },
            ptx: ptx(&gym, cfg.sft_ptx_batch_size, cfg.sft_ptx_coef),
            lora: None,
            train: TrainConfig { seed, ..cfg.sft.clone() },
        };
        let s = align_train::sft::run(&sc, true, &toml::to_string_pretty(&sc)?)?;
        eprintln!("SFT: held-out loss {:.3} -> {:.3} in {:.0} s", s.eval_loss_before, s.eval_loss, s.seconds);
        mark_done(&sft, &s)?;
    }

    // 5. On-policy pairs: the SFT model's own answers vs the gym's good ones, labelled by the
    //    simulated panel (as the offline pairs are), so every preference DPO and the reward model
    //    learn from is the panel's.
    let onp = out.join("onpolicy");
    stage("stage 3a: on-policy preference pairs (SFT samples, labelled by the panel)", 5, n);
    if cfg.onpolicy_prompts > 0 && !done(&onp) {
        let model = align_models::Model::from_pretrained(sft.join("model"), candle_core::DType::F32, &candle_core::Device::Cpu)?;
        let tok = align_data::Tokenizer::from_dir(sft.join("model"))?;
        let records = load_prompts(gym.join("prompts/train.jsonl"))?;
        let refs = records.iter().map(|r| (r.prompt.clone(), align_gym::gold_response(r))).collect();
        let mut oc = OnPolicyConfig { samples_per_prompt: cfg.onpolicy_samples, max_prompts: cfg.onpolicy_prompts, labeler: Labeler::Panel, ..OnPolicyConfig::default() };
        oc.sampling.seed = seed;
        let t = Instant::now();
        let (lines, rep) = sample_and_label(&model, &tok, &records, &refs, &oc)?;
        let text: String = lines.iter().map(|l| serde_json::to_string(l).map(|s| s + "\n")).collect::<Result<_, _>>()?;
        std::fs::create_dir_all(&onp)?;
        align_core::atomic::write_atomic(onp.join("pairs.jsonl"), text.as_bytes())?;
        eprintln!("{} on-policy pairs from {} prompts ({} gold ties skipped) in {:.0} s", rep.pairs, rep.prompts, rep.ties_skipped, t.elapsed().as_secs_f64());
        mark_done(&onp, &serde_json::json!({"report": rep, "seconds": t.elapsed().as_secs_f64()}))?;
    }

    // 6. Reward model on the panel's labels.
    let rm = out.join("rm");
    stage("stage 3b: reward model (Bradley-Terry) on the panel's labels", 6, n);
    if !done(&rm) {
        let rc = RmConfig {
            out_dir: rm.clone(),
            model: sft.join("model"),
            data: RmData { files: vec![gym.join("preferences.jsonl")], ..cfg_rm_data(&cfg) },
            center_rewards_coefficient: None,
            train: TrainConfig { seed, ..cfg.rm.clone() },
        };
        let s = align_train::rm::run(&rc, true, &toml::to_string_pretty(&rc)?)?;
        let acc = |e: &Option<align_train::rm::RmEval>| e.as_ref().map_or(f64::NAN, |e| e.stats.accuracy);
        eprintln!("reward model: held-out accuracy {:.3} -> {:.3} in {:.0} s", acc(&s.eval_before), acc(&s.eval_after), s.seconds);
        mark_done(&rm, &s)?;
    }
    let rm_onp = rm.join("onpolicy_accuracy.json");
    if cfg.rm_onpolicy_prompts > 0 && !rm_onp.exists() {
        let a = rm_on_policy_accuracy(&rm, &sft.join("model"), &gym.join("prompts/eval.jsonl"), cfg.rm_onpolicy_prompts, seed)?;
        eprintln!("reward model on the SFT model's own answers: {:.3} of {} panel-labelled held-out pairs", a.accuracy.unwrap_or(f64::NAN), a.pairs);
        align_core::atomic::write_atomic(&rm_onp, serde_json::to_string_pretty(&a)?.as_bytes())?;
    }

    // 7. DPO on the panel's preferences (+ on-policy pairs).
    let dpo = out.join("dpo");
    stage("stage 3c: preference optimization (DPO + NLL on chosen) on the panel's labels", 7, n);
    if !done(&dpo) {
        let mut files = vec![gym.join("preferences.jsonl")];
        if onp.join("pairs.jsonl").exists() {
            files.push(onp.join("pairs.jsonl"));
        }
        let dc = DpoConfig {
            out_dir: dpo.clone(),
            model: sft.join("model"),
            ref_model: None,
            data: PrefData { files, ..cfg.dpo_data.clone() },
            objective: Objective::Dpo,
            loss: cfg.dpo_loss.clone(),
            orpo_beta: 0.1,
            kto: Default::default(),
            ptx: ptx(&gym, cfg.dpo_ptx_batch_size, 1.0),
            lora: None,
            train: TrainConfig { seed, ..cfg.dpo.clone() },
        };
        let s = align_train::dpo::run(&dc, true, &toml::to_string_pretty(&dc)?)?;
        let g = |m: &std::collections::BTreeMap<String, f64>, k: &str| m.get(k).copied().unwrap_or(f64::NAN);
        eprintln!(
            "DPO: held-out rewards/accuracies {:.2} -> {:.2} in {:.0} s",
            g(&s.eval_before, "rewards/accuracies"),
            g(&s.eval_after, "rewards/accuracies"),
            s.seconds
        );
        mark_done(&dpo, &s)?;
    }

    // 8. PPO against the reward model, KL-penalized to the SFT model.
    let ppo = out.join("ppo");
    stage("stage 3d: RLHF with PPO against the reward model (KL penalty to SFT)", 8, n);
    if cfg.ppo_train.max_steps > 0 && !done(&ppo) {
        let pc = ppo_config(&ppo, &sft, &rm, &gym, gym.join("prompts/eval.jsonl"), &cfg, cfg.ppo.clone(), TrainConfig { seed, ..cfg.ppo_train.clone() }, seed);
        let s = align_rl::run(&pc, true, &toml::to_string_pretty(&pc)?)?;
        eprintln!("PPO: {} rollouts; {} in {:.0} s", s.rollouts, held_out(&s), s.seconds);
        mark_done(&ppo, &s)?;
    }

    // 9. Reward hacking: a reward model on a biased panel's labels, PPO without and with the KL penalty.
    let hack = out.join("hacking");
    stage("reward hacking: PPO against a biased panel's reward model, without and with the KL penalty", 9, n);
    if cfg.hacking_train.max_steps > 0 {
        let prefs = hack.join("preferences.jsonl");
        if !prefs.exists() {
            let (lines, _, stats) = World::generate(&GymConfig { seed, size, panel: align_gym::PanelConfig::biased(), ..GymConfig::default() }).preferences()?;
            let text: String = lines.iter().map(|l| serde_json::to_string(l).map(|s| s + "\n")).collect::<Result<_, _>>()?;
            std::fs::create_dir_all(&hack)?;
            align_core::atomic::write_atomic(&prefs, text.as_bytes())?;
            eprintln!("biased panel: its majority agrees with gold on {:.1}% of the pairs with a gold difference", 100.0 * stats.majority_agreement_all);
        }
        // Held-out prompts of the families where the SFT model gives real answers (see
        // `hacking_eval_families`).
        let hack_eval = hack.join("eval_prompts.jsonl");
        if !hack_eval.exists() {
            write_family_subset(&gym.join("prompts/eval.jsonl"), &hack_eval, &cfg.hacking_eval_families)?;
        }
        let hack_train = if cfg.hacking_train_families.is_empty() {
            gym.join("prompts/train.jsonl")
        } else {
            let p = hack.join("train_prompts.jsonl");
            if !p.exists() {
                write_family_subset(&gym.join("prompts/train.jsonl"), &p, &cfg.hacking_train_families)?;
            }
            p
        };
        let hrm = hack.join("rm");
        if !done(&hrm) {
            let rc = RmConfig {
                out_dir: hrm.clone(),
                model: sft.join("model"),
                data: RmData { files: vec![prefs.clone()], ..cfg_rm_data(&cfg) },
                center_rewards_coefficient: None,
                train: TrainConfig { seed, ..cfg.rm.clone() },
            };
            let s = align_train::rm::run(&rc, true, &toml::to_string_pretty(&rc)?)?;
            eprintln!("biased reward model: held-out accuracy (vs the biased panel) {:.3}", s.eval_after.as_ref().map_or(f64::NAN, |e| e.stats.accuracy));
            mark_done(&hrm, &s)?;
        }
        let mut hack_seconds = vec![];
        let mut variants = vec![("kl 0".to_string(), 0.0), (format!("kl {} (default)", cfg.ppo.kl_coef), cfg.ppo.kl_coef)];
        for &b in &cfg.hacking_extra_kl {
            if !variants.iter().any(|(_, k)| *k == b) {
                variants.push((format!("kl {b}"), b));
            }
        }
        for (variant, kl_coef) in variants {
            let dir = hack.join(&variant);
            if !done(&dir) {
                let mut pc = ppo_config(&dir, &sft, &hrm, &gym, hack_eval.clone(), &cfg, align_rl::config::PpoConfig { kl_coef, ..cfg.ppo.clone() }, TrainConfig { seed, ..cfg.hacking_train.clone() }, seed);
                pc.prompts = vec![hack_train.clone()];
                let s = align_rl::run(&pc, true, &toml::to_string_pretty(&pc)?)?;
                eprintln!("PPO, {variant}: {} in {:.0} s", held_out(&s), s.seconds);
                mark_done(&dir, &s)?;
            }
            hack_seconds.push(read_seconds(&dir));
        }
        // The stage's time (its reward model and every run) for the timings tables.
        let seconds = read_seconds(&hrm) + hack_seconds.iter().sum::<f64>();
        align_core::atomic::write_atomic(hack.join("summary.json"), serde_json::json!({ "seconds": seconds }).to_string().as_bytes())?;
    }

    // 6. Evaluation and report.
    let ev = out.join("eval");
    stage("gold evaluation of every stage on held-out prompts, and the report", 10, n);
    let records = balanced_subset(&load_prompts(gym.join("prompts/eval.jsonl"))?, cfg.eval_per_family);
    let stages: Vec<(&str, PathBuf, PromptStyle)> = vec![
        ("raw (pretrained)", pre.join("model"), PromptStyle::Raw),
        ("SFT", sft.join("model"), PromptStyle::Chat),
        ("aligned (DPO)", dpo.join("model"), PromptStyle::Chat),
    ];
    let mut stages = stages;
    if done(&ppo) {
        stages.push(("aligned (PPO)", ppo.join("model"), PromptStyle::Chat));
    }
    let mut evals = vec![];
    for (name, dir, style) in &stages {
        let key = stage_key(name);
        let path = ev.join(format!("{key}.json"));
        let e = match std::fs::read(&path).ok().and_then(|b| serde_json::from_slice::<StageEval>(&b).ok()) {
            Some(e) => e,
            None => {
                let sampling = SamplingConfig { max_new_tokens: cfg.eval_max_new_tokens, temperature: 0.0, seed, ..SamplingConfig::default() };
                let mut e = evaluate_model(name, dir, *style, &records, &sampling, cfg.eval_batch_size)?;
                if name.starts_with("aligned") && cfg.eval_kl_samples > 0 {
                    e.kl = Some(kl_from_sft(dir, &sft.join("model"), &records, &sampling, &cfg)?);
                }
                align_core::atomic::write_atomic(&path, serde_json::to_string(&e)?.as_bytes())?;
                e
            }
        };
        evals.push(e);
    }
    let index: Vec<serde_json::Value> = stages
        .iter()
        .map(|(name, _, _)| serde_json::json!({"key": stage_key(name), "name": name, "file": format!("{}.json", stage_key(name))}))
        .collect();
    align_core::atomic::write_atomic(ev.join("stages.json"), serde_json::to_string_pretty(&index)?.as_bytes())?;
    write_extra(&out)?;
    let (html, markdown) = align_eval::report::write_report(&out, seed)?;
    println!("{markdown}");
    println!(
        "demo finished in {:.0} s; report: {} (and report.md)",
        t0.elapsed().as_secs_f64(),
        html.display()
    );
    Ok(())
}

/// The file stem of a stage's evaluation: raw, sft, aligned (DPO) → dpo, aligned (PPO) → ppo.
fn stage_key(name: &str) -> String {
    match name.split_once('(') {
        Some((_, rest)) if name.starts_with("aligned") => rest.trim_end_matches(')').to_lowercase(),
        _ => name.split_whitespace().next().unwrap_or(name).to_lowercase(),
    }
}

/// Copy the prompt lines of `src` whose `family` is one of `families` to `dst` (atomically).
fn write_family_subset(src: &Path, dst: &Path, families: &[String]) -> Result<()> {
    let text = std::fs::read_to_string(src).with_context(|| format!("reading {}", src.display()))?;
    let keep: String = text
        .lines()
        .filter(|l| serde_json::from_str::<serde_json::Value>(l).ok().and_then(|v| v.get("family")?.as_str().map(String::from)).is_some_and(|f| families.contains(&f)))
        .map(|l| format!("{l}\n"))
        .collect();
    anyhow::ensure!(!keep.is_empty(), "no prompt of {} is in the families {families:?}", src.display());
    align_core::atomic::write_atomic(dst, keep.as_bytes())?;
    Ok(())
}

/// `seconds` of a stage's summary.json (0 when missing).
fn read_seconds(dir: &Path) -> f64 {
    std::fs::read(dir.join("summary.json")).ok().and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok()).and_then(|v| v.get("seconds")?.as_f64()).unwrap_or(0.0)
}

/// PPO from the SFT model against the reward model in `rm`, on the gym's prompts.
#[allow(clippy::too_many_arguments)]
fn ppo_config(out_dir: &Path, sft: &Path, rm: &Path, gym: &Path, eval_prompts: PathBuf, cfg: &DemoConfig, ppo: align_rl::config::PpoConfig, train: TrainConfig, seed: u64) -> RlConfig {
    RlConfig {
        out_dir: out_dir.to_path_buf(),
        model: sft.join("model"),
        ref_model: None,
        algorithm: Algorithm::Ppo,
        prompts: vec![gym.join("prompts/train.jsonl")],
        eval_prompts: vec![eval_prompts],
        eval_max_prompts: cfg.rl_eval_prompts,
        eval_every_rollouts: 5,
        max_prompt_len: 128,
        rewards: vec![RewardSpec::Model { path: rm.join("model"), weight: 1.0 }],
        shaping: Default::default(),
        sampling: SamplingConfig { seed, ..cfg.ppo_sampling.clone() },
        ppo,
        grpo: Default::default(),
        ptx: None,
        forward_batch_size: 32,
        padding_free: true,
        train,
    }
}

/// "held-out reward-model score a -> b, gold c -> d" of an RL run.
fn held_out(s: &align_rl::run::RlSummary) -> String {
    let g = |r: &align_core::metrics::Record, k: &str| r.get(k).and_then(|v| v.as_f64()).unwrap_or(f64::NAN);
    format!(
        "held-out reward-model score {:.3} -> {:.3}, gold {:.3} -> {:.3}",
        g(&s.eval_before, "eval/score"),
        g(&s.eval_after, "eval/score"),
        g(&s.eval_before, "eval/gold"),
        g(&s.eval_after, "eval/gold")
    )
}

/// The reward model's data settings: the DPO stage's (sequence cap, batch, held-out fraction).
fn cfg_rm_data(cfg: &DemoConfig) -> RmData {
    RmData { max_seq_len: cfg.dpo_data.max_seq_len, batch_size: cfg.dpo_data.batch_size, eval_fraction: cfg.dpo_data.eval_fraction, ..RmData::default() }
}

/// How often a reward model ranks the panel's choice higher on pairs of the policy's own answers.
#[derive(Serialize, Deserialize, Debug)]
struct OnPolicyAccuracy {
    pairs: usize,
    /// None when there were no pairs (every pair a gold tie).
    accuracy: Option<f64>,
    /// family → (pairs, accuracy)
    per_family: std::collections::BTreeMap<String, (usize, f64)>,
}

/// Sample the policy twice per held-out prompt, let the panel label the pair (gold ties skipped),
/// write the pairs to `rm_dir/onpolicy_pairs.jsonl` and score them with the reward model.
fn rm_on_policy_accuracy(rm_dir: &Path, policy: &Path, prompts: &Path, max_prompts: usize, seed: u64) -> Result<OnPolicyAccuracy> {
    use align_data::formats::{read_examples, ReadOptions};
    use align_train::rm::{pad_id, score_pairs, tokenize_pairs};
    let dev = candle_core::Device::Cpu;
    let model = align_models::Model::from_pretrained(policy, candle_core::DType::F32, &dev)?;
    let tok = align_data::Tokenizer::from_dir(policy)?;
    let records = load_prompts(prompts)?;
    let mut oc = OnPolicyConfig { samples_per_prompt: 2, max_prompts, labeler: Labeler::Panel, ..OnPolicyConfig::default() };
    oc.sampling.seed = seed;
    let (lines, _) = sample_and_label(&model, &tok, &records, &Default::default(), &oc)?;
    let path = rm_dir.join("onpolicy_pairs.jsonl");
    let text: String = lines.iter().map(|l| serde_json::to_string(l).map(|s| s + "\n")).collect::<Result<_, _>>()?;
    align_core::atomic::write_atomic(&path, text.as_bytes())?;
    if lines.is_empty() {
        return Ok(accuracy_by_family(&[], &[], &[]));
    }
    let (rm, rtok, tmpl) = super::rm::load_scorer(&rm_dir.join("model"))?;
    let (examples, _) = read_examples(&path, &ReadOptions::default())?;
    let data = RmData { max_seq_len: rm.model.config.max_positions(), ..RmData::default() };
    let (pairs, _) = tokenize_pairs(&rtok, &tmpl, &examples, &data)?;
    anyhow::ensure!(pairs.len() == lines.len(), "{} on-policy pairs tokenized as {}", lines.len(), pairs.len());
    let (c, r) = score_pairs(&rm, &pairs, 32, pad_id(&rtok))?;
    let families: Vec<&str> = lines.iter().map(|l| l.family.as_str()).collect();
    Ok(accuracy_by_family(&families, &c, &r))
}

/// Share of pairs whose chosen side scores strictly higher, overall and per family.
fn accuracy_by_family(families: &[&str], chosen: &[f32], rejected: &[f32]) -> OnPolicyAccuracy {
    let mut out = OnPolicyAccuracy { pairs: families.len(), accuracy: None, per_family: Default::default() };
    let mut right = 0;
    for ((f, x), y) in families.iter().zip(chosen).zip(rejected) {
        let e = out.per_family.entry(f.to_string()).or_insert((0, 0.0));
        e.0 += 1;
        if x > y {
            e.1 += 1.0;
            right += 1;
        }
    }
    for v in out.per_family.values_mut() {
        v.1 /= v.0 as f64;
    }
    if !families.is_empty() {
        out.accuracy = Some(right as f64 / families.len() as f64);
    }
    out
}

/// `report_extra.json`: the demo's own tables for the report (stage timings, reward model
/// accuracy, on-policy pairs).
fn write_extra(out: &Path) -> Result<()> {
    let read = |stage: &str| -> Option<serde_json::Value> { serde_json::from_slice(&std::fs::read(out.join(stage).join("summary.json")).ok()?).ok() };
    let mut tables = vec![];
    let mut rows = vec![];
    for stage in ["pretrain", "sft", "onpolicy", "rm", "dpo", "ppo", "hacking"] {
        if let Some(secs) = read(stage).and_then(|v| v.get("seconds").and_then(|s| s.as_f64())) {
            rows.push(serde_json::json!([stage, format!("{secs:.0}")]));
        }
    }
    if !rows.is_empty() {
        tables.push(serde_json::json!({"title": "Stage wall times", "caption": "seconds per stage on this machine (cached stages keep their first time)", "header": ["stage", "seconds"], "rows": rows}));
    }
    if let Some(rm) = read("rm") {
        let acc = |k: &str| rm.get(k).and_then(|e| e.get("stats")).and_then(|s| s.get("accuracy")).and_then(|a| a.as_f64());
        if let (Some(b), Some(a)) = (acc("eval_before"), acc("eval_after")) {
            let onp: Option<OnPolicyAccuracy> = std::fs::read(out.join("rm/onpolicy_accuracy.json")).ok().and_then(|t| serde_json::from_slice(&t).ok());
            // The first column is the row's name (a report table shows it as a row header).
            let mut header = vec!["reward model".to_string(), "before training".to_string(), "after training".to_string()];
            let mut row = vec!["the panel's (stage 3b)".to_string(), format!("{b:.3}"), format!("{a:.3}")];
            let onp = onp.filter(|o| o.accuracy.is_some());
            if let Some(o) = &onp {
                header.push(format!("after, on the SFT model's own answers ({} pairs)", o.pairs));
                row.push(format!("{:.3}", o.accuracy.unwrap_or(f64::NAN)));
            }
            tables.push(serde_json::json!({"title": "Reward model", "caption": "held-out pairs labelled by the simulated panel: share where the reward model ranks the panel's choice higher. Before and after training: on the gym's candidate pairs; the last column: on what PPO shows it: two answers of the SFT model to each held-out prompt (pairs gold cannot separate skipped)", "header": header, "rows": [row]}));
            if let Some(o) = onp {
                let rows: Vec<_> = o.per_family.iter().map(|(f, (n, a))| serde_json::json!([f, n.to_string(), format!("{a:.3}")])).collect();
                tables.push(serde_json::json!({"title": "Reward model on the SFT model's own answers, per family", "caption": "held-out prompts, two SFT answers each, labelled by the panel: share where the reward model ranks the panel's choice higher (0.5 = chance)", "header": ["family", "pairs", "accuracy"], "rows": rows}));
            }
        }
    }
    if let Some(r) = read("onpolicy").and_then(|v| v.get("report").cloned()) {
        // Counts as they are, fractions to three decimals (a mean printed as 0.6554822916666679
        // told the reader nothing more).
        let g = |k: &str| match r.get(k) {
            Some(v) if v.is_f64() => format!("{:.3}", v.as_f64().unwrap_or(f64::NAN)),
            Some(v) => v.to_string(),
            None => String::new(),
        };
        tables.push(serde_json::json!({"title": "On-policy pairs for DPO", "caption": "the SFT model's own answers (temperature 1) paired with the gym's good answer, labelled by the simulated panel (pairs gold cannot separate skipped)", "header": ["labels", "prompts", "samples", "pairs", "gold ties skipped", "labels agreeing with gold", "mean gold of the samples"], "rows": [["the panel's majority", g("prompts"), g("samples"), g("pairs"), g("ties_skipped"), g("label_gold_agreement"), g("mean_sample_gold")]]}));
    }
    align_core::atomic::write_atomic(out.join("report_extra.json"), serde_json::to_string_pretty(&tables)?.as_bytes())?;
    Ok(())
}

/// KL of the aligned model in `dir` from the SFT model on the held-out prompts (align_eval::kl).
fn kl_from_sft(dir: &Path, sft: &Path, records: &[align_gym::PromptRecord], sampling: &SamplingConfig, cfg: &DemoConfig) -> Result<align_eval::kl::KlReport> {
    let load = |d: &Path| align_models::Model::from_pretrained(d, candle_core::DType::F32, &candle_core::Device::Cpu).with_context(|| format!("loading {}", d.display()));
    let (policy, reference) = (load(dir)?, load(sft)?);
    let tok = align_data::Tokenizer::from_dir(dir)?;
    let prompts: Vec<String> = records.iter().map(|r| r.prompt.clone()).collect();
    let k = align_eval::kl::kl_to_reference(&policy, &reference, &tok, &prompts, PromptStyle::Chat, sampling, cfg.eval_kl_samples, cfg.eval_batch_size)?;
    Ok(align_eval::kl::KlReport { reference: "SFT".into(), ..k })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accuracy_by_family_counts_strict_wins() {
        let a = accuracy_by_family(&["fact", "fact", "email", "fact"], &[1.0, 0.0, 2.0, 0.5], &[0.0, 1.0, 1.0, 0.5]);
        assert_eq!(a.pairs, 4);
        assert_eq!(a.accuracy, Some(0.5)); // a tie (0.5 vs 0.5) is not a win
        assert_eq!(a.per_family["fact"], (3, 1.0 / 3.0));
        assert_eq!(a.per_family["email"], (1, 1.0));
        assert_eq!(accuracy_by_family(&[], &[], &[]).accuracy, None);
    }

    #[test]
    fn a_set_changes_one_key_of_a_stage_and_keeps_the_demos_other_defaults() {
        let d = DemoConfig::default();
        let sets = ["pretrain.max_steps=1234".to_string(), "model.d_model=256".to_string()];
        let (c, resolved): (DemoConfig, toml::Value) = crate::config::load_over_defaults(None, &sets).unwrap();
        assert_eq!(c.pretrain.max_steps, 1234);
        assert_eq!(c.pretrain.lr, d.pretrain.lr, "the demo's pretraining lr, not TrainConfig's default");
        assert_eq!(c.pretrain.warmup_steps, d.pretrain.warmup_steps);
        assert_eq!((c.model.d_model, c.model.n_layers), (256, d.model.n_layers));
        assert_eq!(c.dpo.max_steps, d.dpo.max_steps);
        // demo_config.toml records the whole resolved config.
        assert_eq!(resolved["sft"]["lr"].as_float(), Some(d.sft.lr));
        // Lists and booleans of the demo's own keys too.
        let sets = ["hacking_train_families=[\"fact\", \"email\"]".to_string(), "split_digits=true".to_string()];
        let (c, _): (DemoConfig, toml::Value) = crate::config::load_over_defaults(None, &sets).unwrap();
        assert_eq!(c.hacking_train_families, ["fact", "email"]);
        assert!(c.split_digits && !d.split_digits && d.hacking_train_families.is_empty());
    }

    #[test]
    fn a_family_subset_keeps_only_those_families() {
        let d = tempfile::tempdir().unwrap();
        let src = d.path().join("p.jsonl");
        let lines = [r#"{"id":"a","family":"fact"}"#, r#"{"id":"b","family":"email"}"#, r#"{"id":"c","family":"unknown"}"#, r#"{"id":"d","family":"fact"}"#];
        std::fs::write(&src, lines.join("\n") + "\n").unwrap();
        let dst = d.path().join("q.jsonl");
        write_family_subset(&src, &dst, &["fact".into(), "unknown".into()]).unwrap();
        let kept = std::fs::read_to_string(&dst).unwrap();
        assert_eq!(kept, format!("{}\n{}\n{}\n", lines[0], lines[2], lines[3]));
        let e = write_family_subset(&src, &d.path().join("r.jsonl"), &["harmful".into()]).unwrap_err().to_string();
        assert!(e.contains("no prompt") && e.contains("harmful"), "{e}");
        assert!(!d.path().join("r.jsonl").exists(), "nothing written on an error");
    }
}
