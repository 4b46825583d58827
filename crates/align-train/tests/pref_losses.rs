//! Golden tests of `align_train::pref_loss` against TRL 1.16.0, from
//! `tests/fixtures/pref_losses/cases.json` (written by `scripts/fixtures/make_pref_losses.py`):
//! every per-example loss, the mean loss, rewards, TRL's metrics, and torch-autograd gradients of the
//! mean loss with respect to the policy log-probs (candle backward here).

use std::collections::BTreeMap;

use align_train::pref_loss::*;
use candle_core::{Device, Tensor, Var};
use serde_json::Value;

const TOL: f64 = 1e-5;

fn fixture() -> Value {
    let p = concat!(env!("CARGO_MANIFEST_DIR"), "/../../tests/fixtures/pref_losses/cases.json");
    serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap()
}

fn vecf(v: &Value) -> Vec<f32> {
    v.as_array().unwrap().iter().map(|x| x.as_f64().unwrap() as f32).collect()
}

fn t(v: &Value) -> Tensor {
    Tensor::new(vecf(v), &Device::Cpu).unwrap()
}

fn close(what: &str, got: f64, want: f64) {
    let err = (got - want).abs();
    assert!(err <= TOL * want.abs().max(1.0), "{what}: got {got}, want {want} (|Δ| {err:e})");
}

fn close_vec(what: &str, got: &Tensor, want: &Value) {
    let g = got.to_vec1::<f32>().unwrap();
    let w = vecf(want);
    assert_eq!(g.len(), w.len(), "{what}: length");
    for (i, (a, b)) in g.iter().zip(&w).enumerate() {
        close(&format!("{what}[{i}]"), *a as f64, *b as f64);
    }
}

fn close_metrics(case: &str, got: &BTreeMap<String, f64>, want: &Value) {
    let want = want.as_object().unwrap();
    assert_eq!(got.keys().collect::<Vec<_>>(), { let mut k: Vec<_> = want.keys().collect(); k.sort(); k }, "{case}: metric names");
    for (k, v) in want {
        close(&format!("{case} {k}"), got[k], v.as_f64().unwrap());
    }
}

fn opt_f64(v: &Value) -> Option<f64> {
    v.as_f64()
}

#[test]
fn paired_losses_match_trl() {
    let fx = fixture();
    let inp = &fx["inputs"];
    let (rc, rr) = (t(&inp["ref_chosen"]), t(&inp["ref_rejected"]));
    let (lc, lr, nll) = (t(&inp["chosen_len"]), t(&inp["rejected_len"]), t(&inp["chosen_nll"]));
    let mut n = 0;
    for case in fx["cases"].as_array().unwrap() {
        let kind = case["kind"].as_str().unwrap();
        if kind != "dpo" && kind != "orpo" {
            continue;
        }
        n += 1;
        let name = case["name"].as_str().unwrap();
        let pc = Var::from_tensor(&t(&inp["policy_chosen"])).unwrap();
        let pr = Var::from_tensor(&t(&inp["policy_rejected"])).unwrap();
        let x = PairLogps {
            ref_chosen: Some(&rc),
            ref_rejected: Some(&rr),
            chosen_len: Some(&lc),
            rejected_len: Some(&lr),
            chosen_nll: Some(&nll),
            ..PairLogps::new(pc.as_tensor(), pr.as_tensor())
        };
        let out = if kind == "dpo" {
            let c = &case["config"];
            let mut cfg: DpoLossConfig = serde_json::from_value(serde_json::json!({
                "loss_type": c["loss_type"], "beta": c["beta"], "label_smoothing": c["label_smoothing"],
            }))
            .unwrap();
            cfg.rpo_alpha = opt_f64(&c["rpo_alpha"]);
            if let Some(g) = opt_f64(&c["simpo_gamma"]) {
                cfg.simpo_gamma = g;
            }
            dpo_loss(&x, &cfg).unwrap()
        } else {
            orpo_loss(&x, &OrpoConfig { beta: case["config"]["beta"].as_f64().unwrap() }).unwrap()
        };
        close_vec(&format!("{name} losses"), &out.losses, &case["losses"]);
        close_vec(&format!("{name} chosen_rewards"), &out.chosen_rewards, &case["chosen_rewards"]);
        close_vec(&format!("{name} rejected_rewards"), &out.rejected_rewards, &case["rejected_rewards"]);
        let loss = out.loss().unwrap();
        close(&format!("{name} loss"), loss.to_scalar::<f32>().unwrap() as f64, case["loss"].as_f64().unwrap());
        close_metrics(name, &out.metrics().unwrap(), &case["metrics"]);
        let grads = loss.backward().unwrap();
        close_vec(&format!("{name} d/dpolicy_chosen"), grads.get(&pc).unwrap(), &case["grad_policy_chosen"]);
        close_vec(&format!("{name} d/dpolicy_rejected"), grads.get(&pr).unwrap(), &case["grad_policy_rejected"]);
    }
    assert_eq!(n, 10, "number of paired cases");
}

#[test]
fn kto_matches_trl() {
    let fx = fixture();
    let inp = &fx["kto_inputs"];
    let reference = t(&inp["ref_logps"]);
    let labels: Vec<f32> = inp["label"].as_array().unwrap().iter().map(|b| b.as_bool().unwrap() as u8 as f32).collect();
    let labels = Tensor::new(labels, &Device::Cpu).unwrap();
    let mut n = 0;
    for case in fx["cases"].as_array().unwrap().iter().filter(|c| c["kind"] == "kto") {
        n += 1;
        let name = case["name"].as_str().unwrap();
        let c = &case["config"];
        let cfg = KtoConfig {
            beta: c["beta"].as_f64().unwrap(),
            desirable_weight: c["desirable_weight"].as_f64().unwrap(),
            undesirable_weight: c["undesirable_weight"].as_f64().unwrap(),
        };
        let kl = if c["use_kl"].as_bool().unwrap() {
            kto_kl_estimate(&t(&inp["kl_policy_logps"]), &t(&inp["kl_ref_logps"])).unwrap()
        } else {
            Tensor::new(0f32, &Device::Cpu).unwrap()
        };
        let p = Var::from_tensor(&t(&inp["policy_logps"])).unwrap();
        let out = kto_loss(p.as_tensor(), &reference, &labels, &kl, &cfg).unwrap();
        close_vec(&format!("{name} losses"), &out.losses, &case["losses"]);
        close_vec(&format!("{name} rewards"), &out.rewards, &case["rewards"]);
        let loss = out.loss().unwrap();
        close(&format!("{name} loss"), loss.to_scalar::<f32>().unwrap() as f64, case["loss"].as_f64().unwrap());
        close_metrics(name, &out.metrics(), &case["metrics"]);
        let grads = loss.backward().unwrap();
        close_vec(&format!("{name} d/dpolicy"), grads.get(&p).unwrap(), &case["grad_policy_logps"]);
    }
    assert_eq!(n, 3);
}

#[test]
fn bradley_terry_matches_trl() {
    let fx = fixture();
    let inp = &fx["bt_inputs"];
    let (margin, soft) = (t(&inp["margin"]), t(&inp["soft_label"]));
    let mut n = 0;
    for case in fx["cases"].as_array().unwrap().iter().filter(|c| c["kind"] == "bt") {
        n += 1;
        let name = case["name"].as_str().unwrap();
        let c = &case["config"];
        let rc = Var::from_tensor(&t(&inp["r_chosen"])).unwrap();
        let rr = Var::from_tensor(&t(&inp["r_rejected"])).unwrap();
        let loss = bt_reward_loss(
            rc.as_tensor(),
            rr.as_tensor(),
            c["margin"].as_bool().unwrap().then_some(&margin),
            c["soft_label"].as_bool().unwrap().then_some(&soft),
            opt_f64(&c["center_rewards_coefficient"]),
        )
        .unwrap();
        close(&format!("{name} loss"), loss.to_scalar::<f32>().unwrap() as f64, case["loss"].as_f64().unwrap());
        close_metrics(name, &bt_metrics(rc.as_tensor(), rr.as_tensor()).unwrap(), &case["metrics"]);
        let grads = loss.backward().unwrap();
        close_vec(&format!("{name} d/dr_chosen"), grads.get(&rc).unwrap(), &case["grad_r_chosen"]);
        close_vec(&format!("{name} d/dr_rejected"), grads.get(&rr).unwrap(), &case["grad_r_rejected"]);
    }
    assert_eq!(n, 4);
}

/// Hand-computed Bradley-Terry values: margin, soft label, centering.
#[test]
fn bradley_terry_hand_computed() {
    let dev = Device::Cpu;
    let rc = Tensor::new(&[2.0f32, 0.5], &dev).unwrap();
    let rr = Tensor::new(&[1.0f32, 1.5], &dev).unwrap();
    let m = Tensor::new(&[0.5f32, 0.0], &dev).unwrap();
    let p = Tensor::new(&[0.8f32, 1.0], &dev).unwrap();
    let ls = |x: f64| -(1.0 + (-x).exp()).ln();
    // d = [2 - 1 - 0.5, 0.5 - 1.5 - 0] = [0.5, -1]
    let hard = -(ls(0.5) + ls(-1.0)) / 2.0;
    let got = bt_reward_loss(&rc, &rr, Some(&m), None, None).unwrap().to_scalar::<f32>().unwrap() as f64;
    assert!((got - hard).abs() < 1e-6, "{got} vs {hard}");
    let soft = -((0.8 * ls(0.5) + 0.2 * ls(-0.5)) + ls(-1.0)) / 2.0;
    let got = bt_reward_loss(&rc, &rr, Some(&m), Some(&p), None).unwrap().to_scalar::<f32>().unwrap() as f64;
    assert!((got - soft).abs() < 1e-6, "{got} vs {soft}");
    // p = 0.5 gives log 2 + d/2 ... at d = 0 exactly log 2, whatever the labels' side.
    let half = Tensor::new(&[0.5f32, 0.5], &dev).unwrap();
    let got = bt_reward_loss(&rr, &rr, None, Some(&half), None).unwrap().to_scalar::<f32>().unwrap() as f64;
    assert!((got - 2f64.ln()).abs() < 1e-6);
    // centering: + 0.01 * mean([3², 2²]) = 0.065
    let got = bt_reward_loss(&rc, &rr, Some(&m), None, Some(0.01)).unwrap().to_scalar::<f32>().unwrap() as f64;
    assert!((got - hard - 0.065).abs() < 1e-6);
    let metrics = bt_metrics(&rc, &rr).unwrap();
    assert_eq!(metrics["accuracy"], 0.5);
    assert!((metrics["margin"] - 0.0).abs() < 1e-9);
    assert_eq!((metrics["min_reward"], metrics["max_reward"]), (0.5, 2.0));
}

#[test]
fn reference_losses_need_a_reference() {
    let dev = Device::Cpu;
    let a = Tensor::new(&[-1f32, -2.], &dev).unwrap();
    let x = PairLogps::new(&a, &a);
    assert!(dpo_loss(&x, &DpoLossConfig::default()).is_err());
    let cfg = DpoLossConfig { loss_type: DpoLossType::Simpo, ..Default::default() };
    assert!(dpo_loss(&x, &cfg).is_err(), "simpo needs lengths");
    assert!(orpo_loss(&x, &OrpoConfig::default()).is_err(), "orpo needs lengths and nll");
}
