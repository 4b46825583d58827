//! `padding_free` rollouts: samples packed into shared rows give the log-probs, values and
//! gradients of one right-padded sample per row.

use align_models::config::{llama_from_dims, Gpt2Config};
use align_models::{Model, ModelConfig};
use align_rl::critic::Critic;
use align_rl::rollout::{Packed, Sample};
use candle_core::{Device, Tensor, Var};

fn sample(prompt: usize, p: usize, r: usize, salt: u32) -> Sample {
    let id = |j: usize| 3 + ((j as u32 * 7 + salt * 13) % 37);
    Sample { prompt, prompt_ids: (0..p).map(id).collect(), response_ids: (p..p + r).map(id).collect(), eos: true }
}

/// Llama (RoPE: relative, so a wrong position offset inside a row would go unseen) and GPT-2
/// (learnt absolute positions: positions must restart at each sample).
#[test]
fn packed_rows_give_the_padded_logps_values_and_gradients() {
    let gpt2 = ModelConfig::Gpt2(Gpt2Config { vocab_size: 40, n_embd: 32, n_layer: 2, n_head: 4, n_positions: 128, n_inner: None, layer_norm_epsilon: 1e-5, bos_token_id: None, eos_token_id: None });
    for cfg in [ModelConfig::Llama(llama_from_dims(40, 32, 2, 4, 2, 128)), gpt2] {
        check(cfg);
    }
}

fn check(cfg: ModelConfig) {
    let dev = Device::Cpu;
    let model = Model::from_config(cfg, 5, &dev).unwrap();
    // A shared value head with non-zero weights, so the values depend on the hidden states.
    let head = Var::from_tensor(&Tensor::randn(0f32, 0.5, (1, 32), &dev).unwrap()).unwrap();
    let critic = Critic::Shared { head };
    let samples: Vec<Sample> = [(9, 14), (3, 2), (4, 1), (6, 5), (2, 3), (5, 9), (3, 1)].iter().enumerate().map(|(i, &(p, r))| sample(i, p, r, i as u32)).collect();
    let refs: Vec<&Sample> = samples.iter().collect();
    let run = |padding_free: bool| {
        let p = Packed::new(&refs, padding_free, &dev).unwrap();
        let h = p.hidden(model.lm.as_ref()).unwrap();
        let (lp, _) = p.logps(model.lm.as_ref(), &h, 0.7, false).unwrap();
        let v = critic.values(&p, &h).unwrap();
        // Weights that differ per sample and per token, so any mix-up shows in the gradients.
        let w = Tensor::arange(0f32, (p.b * p.tr) as f32, &dev).unwrap().reshape((p.b, p.tr)).unwrap().affine(0.01, 1.0).unwrap();
        let loss = ((lp.clone() * &p.mask).unwrap() * &w).unwrap().sum_all().unwrap().add(&(v.clone() * &p.mask).unwrap().sum_all().unwrap()).unwrap();
        let grads = loss.backward().unwrap();
        let g: Vec<Vec<f32>> = model.vars().iter().map(|(_, v)| grads.get(v.as_tensor()).unwrap().flatten_all().unwrap().to_vec1().unwrap()).collect();
        let m = p.mask.to_vec2::<f32>().unwrap();
        let masked = |t: &Tensor| -> Vec<f32> { t.to_vec2::<f32>().unwrap().iter().flatten().zip(m.iter().flatten()).filter(|(_, &k)| k > 0.0).map(|(x, _)| *x).collect() };
        (p.rows, masked(&lp), masked(&v), g)
    };
    let (rows_a, lp_a, v_a, g_a) = run(false);
    let (rows_b, lp_b, v_b, g_b) = run(true);
    assert_eq!(rows_a, samples.len());
    assert!(rows_b < rows_a, "short samples share a row ({rows_b} rows)");
    assert_eq!(lp_a.len(), samples.iter().map(|s| s.response_ids.len()).sum::<usize>());
    for (a, b) in lp_a.iter().zip(&lp_b).chain(v_a.iter().zip(&v_b)) {
        assert!((a - b).abs() <= 1e-4 * a.abs().max(1.0), "padded {a} vs packed {b}");
    }
    for (ga, gb) in g_a.iter().zip(&g_b) {
        let scale = ga.iter().fold(0f32, |m, x| m.max(x.abs())).max(1e-3);
        for (a, b) in ga.iter().zip(gb) {
            assert!((a - b).abs() <= 1e-4 * scale, "gradient {a} vs {b}");
        }
    }
}
