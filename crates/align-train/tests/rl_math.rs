//! Golden tests of `align_train::rl_math` against TRL.
//!
//! `tests/fixtures/rl_math/cases.json` is written by `scripts/fixtures/make_rl_math.py` (torch 2.15,
//! trl 1.16): TRL's own functions where trl 1.16 has them (`nanstd`), else TRL's code copied verbatim
//! with a citation (the PPO pieces come from trl's `experimental/ppo/ppo_trainer.py`; GRPO and RLOO
//! from trl 1.16's `grpo_trainer.py` / `rloo_trainer.py`). Tolerance 1e-5 absolute.

use align_train::rl_math::*;
use candle_core::{Device, Tensor, Var};
use serde_json::Value;

const TOL: f32 = 1e-5;

fn cases() -> Value {
    let p = concat!(env!("CARGO_MANIFEST_DIR"), "/../../tests/fixtures/rl_math/cases.json");
    serde_json::from_str(&std::fs::read_to_string(p).expect("read cases.json")).expect("parse cases.json")
}

fn t1(v: &Value) -> Tensor {
    let x: Vec<f32> = v.as_array().unwrap().iter().map(|x| x.as_f64().unwrap() as f32).collect();
    Tensor::new(x, &Device::Cpu).unwrap()
}

fn t2(v: &Value) -> Tensor {
    let rows: Vec<Vec<f32>> = v
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r.as_array().unwrap().iter().map(|x| x.as_f64().unwrap() as f32).collect())
        .collect();
    Tensor::new(rows, &Device::Cpu).unwrap()
}

fn f(v: &Value) -> f32 {
    v.as_f64().unwrap() as f32
}

fn scalar(t: &Tensor) -> f32 {
    t.to_scalar::<f32>().unwrap()
}

fn assert_close(what: &str, got: &Tensor, want: &Tensor) {
    assert_eq!(got.dims(), want.dims(), "{what}: shape");
    let d = (got - want).unwrap().abs().unwrap().flatten_all().unwrap().max(0).unwrap();
    let d = scalar(&d);
    assert!(d <= TOL, "{what}: max |diff| {d} > {TOL}\n got {got}\nwant {want}");
}

fn assert_close_f(what: &str, got: f32, want: f32) {
    assert!((got - want).abs() <= TOL, "{what}: got {got}, want {want}");
}

#[test]
fn masked_stats_and_whiten_match_trl() {
    let c = &cases()["masked"];
    let (v, m) = (t2(&c["values"]), t2(&c["mask"]));
    assert_close_f("masked_mean", scalar(&masked_mean(&v, &m).unwrap()), f(&c["mean"]));
    assert_close_f("masked_var", scalar(&masked_var(&v, &m, true).unwrap()), f(&c["var_unbiased"]));
    assert_close_f("masked_var biased", scalar(&masked_var(&v, &m, false).unwrap()), f(&c["var_biased"]));
    assert_close("whiten", &whiten(&v, &m, true).unwrap(), &t2(&c["whiten"]));
    assert_close("whiten no shift", &whiten(&v, &m, false).unwrap(), &t2(&c["whiten_no_shift"]));
}

#[test]
fn kl_estimators_match() {
    let c = &cases()["kl"];
    let (lp, rf) = (t2(&c["logp"]), t2(&c["ref_logp"]));
    for (est, key) in [(KlEstimator::K1, "k1"), (KlEstimator::K2, "k2"), (KlEstimator::K3, "k3")] {
        assert_close(key, &kl_per_token(&lp, &rf, est).unwrap(), &t2(&c[key]));
    }
}

#[test]
fn ppo_rewards_gae_and_whitened_advantages_match_trl() {
    let c = &cases()["ppo"];
    let (lp, rf, values, scores) = (t2(&c["logprobs"]), t2(&c["ref_logprobs"]), t2(&c["values"]), t1(&c["scores"]));
    let (mask, mask_p1) = (t2(&c["mask"]), t2(&c["mask_p1"]));
    let (gamma, lam, kl_coef) = (c["gamma"].as_f64().unwrap(), c["lam"].as_f64().unwrap(), c["kl_coef"].as_f64().unwrap());
    for (est, key) in [(KlEstimator::K1, "k1"), (KlEstimator::K3, "k3")] {
        let w = &c[key];
        let kl = kl_per_token(&lp, &rf, est).unwrap();
        assert_close(&format!("{key} kl"), &kl, &t2(&w["kl"]));
        let rewards = kl_penalized_rewards(&kl, kl_coef, &scores, &mask_p1).unwrap();
        assert_close(&format!("{key} rewards"), &rewards, &t2(&w["rewards"]));
        let (adv, ret) = gae(&rewards, &values, &mask_p1, gamma, lam).unwrap();
        assert_close(&format!("{key} advantages_raw"), &adv, &t2(&w["advantages_raw"]));
        assert_close(&format!("{key} returns"), &ret, &t2(&w["returns"]));
        let white = (whiten(&adv, &mask, true).unwrap() * &mask).unwrap();
        assert_close(&format!("{key} advantages"), &white, &t2(&w["advantages"]));
    }
    // whiten_rewards=True: masked_whiten(rewards, ~padding_mask_p1, shift_mean=False), pads zeroed.
    let r = t2(&c["k1"]["rewards"]);
    let wr = (whiten(&r, &mask_p1, false).unwrap() * &mask_p1).unwrap();
    assert_close("whitened_rewards", &wr, &t2(&c["k1"]["whitened_rewards"]));
}

#[test]
fn ppo_losses_and_gradients_match_trl() {
    let all = cases();
    let c = &all["ppo_loss"];
    let mask = t2(&all["ppo"]["mask"]);
    let mask_p1 = t2(&all["ppo"]["mask_p1"]);
    let cfg = PpoLossConfig::default();
    assert_eq!(cfg.cliprange, c["cliprange"].as_f64().unwrap());
    assert_eq!(cfg.cliprange_value, c["cliprange_value"].as_f64().unwrap());
    assert_eq!(cfg.vf_coef, c["vf_coef"].as_f64().unwrap());
    let logp = Var::from_tensor(&t2(&c["new_logprobs"])).unwrap();
    let vpred = Var::from_tensor(&t2(&c["vpred"])).unwrap();
    let pl = ppo_policy_loss(&logp, &t2(&c["old_logprobs"]), &t2(&c["advantages"]), &mask, cfg.cliprange).unwrap();
    let vl = ppo_value_loss(&vpred, &t2(&c["old_values"]), &t2(&c["returns"]), &mask_p1, cfg.cliprange_value).unwrap();
    assert_close_f("pg_loss", scalar(&pl.pg_loss), f(&c["pg_loss"]));
    assert_close_f("pg_clipfrac", scalar(&pl.clipfrac), f(&c["pg_clipfrac"]));
    assert!(scalar(&pl.clipfrac) > 0.0, "the fixture should exercise clipping");
    assert_close_f("approxkl", scalar(&pl.approxkl), f(&c["approxkl"]));
    assert_close_f("ratio_mean", scalar(&pl.ratio_mean), f(&c["ratio_mean"]));
    assert_close_f("vf_loss", scalar(&vl.vf_loss), f(&c["vf_loss"]));
    assert_close_f("vf_clipfrac", scalar(&vl.vf_clipfrac), f(&c["vf_clipfrac"]));
    let loss = (&pl.pg_loss + (&vl.vf_loss * cfg.vf_coef).unwrap()).unwrap();
    assert_close_f("loss", scalar(&loss), f(&c["loss"]));
    let grads = loss.backward().unwrap();
    assert_close("grad logprobs", grads.get(&logp).unwrap(), &t2(&c["grad_logprobs"]));
    assert_close("grad vpred", grads.get(&vpred).unwrap(), &t2(&c["grad_vpred"]));
}

#[test]
fn adaptive_kl_controller_matches_trl() {
    let c = &cases()["adaptive_kl"];
    let mut ctl = AdaptiveKlController::new(
        c["init"].as_f64().unwrap(),
        c["target"].as_f64().unwrap(),
        c["horizon"].as_f64().unwrap(),
    );
    assert_eq!(ctl, AdaptiveKlController::default());
    for step in c["trace"].as_array().unwrap() {
        ctl.update(step["current"].as_f64().unwrap(), step["n_steps"].as_u64().unwrap() as usize);
        let want = step["value"].as_f64().unwrap();
        assert!((ctl.value - want).abs() < 1e-12, "kl coef {} vs {want}", ctl.value);
    }
}

#[test]
fn group_and_rloo_advantages_match_trl() {
    let c = &cases()["group_adv"];
    let r = t1(&c["rewards"]);
    let g = c["group_size"].as_u64().unwrap() as usize;
    for (scale, key) in [(ScaleRewards::Group, "group"), (ScaleRewards::Batch, "batch"), (ScaleRewards::None, "none")] {
        assert_close(key, &group_advantages(&r, g, scale).unwrap(), &t1(&c[key]));
    }
    assert_close("rloo", &rloo_advantages(&r, g).unwrap(), &t1(&c["rloo"]));
}

#[test]
fn grpo_loss_types_match_trl() {
    let c = &cases()["grpo_loss"];
    let (old, rf, adv, mask) = (t2(&c["old_logp"]), t2(&c["ref_logp"]), t1(&c["advantages"]), t2(&c["mask"]));
    let max_len = c["max_completion_length"].as_u64().unwrap() as usize;
    for case in c["cases"].as_array().unwrap() {
        let name = case["loss_type"].as_str().unwrap();
        let loss_type = match name {
            "grpo" => LossType::Grpo,
            "bnpo" => LossType::Bnpo,
            "dr_grpo" => LossType::DrGrpo { max_completion_length: max_len },
            "dapo" => LossType::Dapo { num_items_in_batch: case["num_items_in_batch"].as_f64().unwrap() },
            other => panic!("unknown loss_type {other}"),
        };
        let cfg = GrpoLossConfig {
            epsilon_low: case["epsilon_low"].as_f64().unwrap(),
            epsilon_high: case["epsilon_high"].as_f64().unwrap(),
            beta: case["beta"].as_f64().unwrap(),
            loss_type,
        };
        let logp = Var::from_tensor(&t2(&c["logp"])).unwrap();
        let out = grpo_loss(&logp, &old, Some(&rf), &adv, &mask, &cfg).unwrap();
        let what = format!("{name} beta={} eps_hi={}", cfg.beta, cfg.epsilon_high);
        assert_close_f(&format!("{what} loss"), scalar(&out.loss), f(&case["loss"]));
        if cfg.beta != 0.0 {
            assert_close_f(&format!("{what} kl"), scalar(out.kl.as_ref().unwrap()), f(&case["kl"]));
        } else {
            assert!(out.kl.is_none());
        }
        assert_close_f(&format!("{what} clip low"), scalar(&out.clip_ratio_low), f(&case["clip_ratio_low"]));
        assert_close_f(&format!("{what} clip high"), scalar(&out.clip_ratio_high), f(&case["clip_ratio_high"]));
        assert_close_f(&format!("{what} clip region"), scalar(&out.clip_ratio_region), f(&case["clip_ratio_region"]));
        let grads = out.loss.backward().unwrap();
        assert_close(&format!("{what} grad"), grads.get(&logp).unwrap(), &t2(&case["grad_logp"]));
    }
}

#[test]
fn dapo_with_local_token_count_equals_bnpo() {
    let c = &cases()["grpo_loss"];
    let (lp, mask) = (t2(&c["logp"]), t2(&c["mask"]));
    let n = mask.sum_all().unwrap().to_scalar::<f32>().unwrap() as f64;
    let a = aggregate_loss(&lp, &mask, LossType::Bnpo).unwrap();
    let b = aggregate_loss(&lp, &mask, LossType::Dapo { num_items_in_batch: n }).unwrap();
    assert_close_f("dapo vs bnpo", scalar(&a), scalar(&b));
}
