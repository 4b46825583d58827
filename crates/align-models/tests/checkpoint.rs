//! Activation checkpointing (`align_models::checkpoint`): the same loss and the same gradients
//! for every parameter as without it (the blocks recomputed in the backward), and generation
//! unaffected.

use align_models::checkpoint::{merge_pending_grads, set_activation_checkpointing};
use align_models::config::llama_from_dims;
use align_models::causal_lm::default_positions;
use align_models::{ForwardArgs, Model, ModelConfig};
use candle_core::{Device, Tensor};
use std::collections::BTreeMap;

fn loss_and_grads(model: &Model, ids: &Tensor, checkpointing: bool) -> (f32, BTreeMap<String, Vec<f32>>, usize) {
    let (b, t) = ids.dims2().unwrap();
    let pos = default_positions(b, t, 0, &Device::Cpu).unwrap();
    let prev = set_activation_checkpointing(checkpointing);
    let logits = model.lm.forward(&ForwardArgs::new(ids, &pos), None).unwrap();
    set_activation_checkpointing(prev);
    let v = logits.dim(2).unwrap();
    let loss = candle_nn::loss::cross_entropy(&logits.reshape((b * t, v)).unwrap(), &ids.flatten_all().unwrap()).unwrap();
    let nodes = loss.sorted_nodes().len();
    let mut grads = loss.backward().unwrap();
    merge_pending_grads(&mut grads).unwrap();
    let g = model
        .vars()
        .into_iter()
        .map(|(name, var)| {
            let g = grads.get(var.as_tensor()).unwrap_or_else(|| panic!("no gradient for {name} (checkpointing {checkpointing})"));
            (name, g.flatten_all().unwrap().to_vec1::<f32>().unwrap())
        })
        .collect();
    (loss.to_scalar::<f32>().unwrap(), g, nodes)
}

#[test]
fn checkpointed_blocks_give_the_same_loss_and_gradients() {
    let model = Model::from_config(ModelConfig::Llama(llama_from_dims(64, 32, 3, 4, 2, 64)), 3, &Device::Cpu).unwrap();
    let ids = Tensor::from_vec((0..2 * 40u32).map(|i| (i * 7 + 3) % 64).collect::<Vec<_>>(), (2, 40), &Device::Cpu).unwrap();
    let (l0, g0, n0) = loss_and_grads(&model, &ids, false);
    let (l1, g1, n1) = loss_and_grads(&model, &ids, true);
    assert_eq!(l0, l1, "the forward must not change");
    // The graph keeps one node per block instead of the block's intermediates.
    assert!(n1 + 3 * 10 < n0, "graph nodes: {n1} checkpointed vs {n0} plain");
    assert_eq!(g0.len(), g1.len());
    for (name, a) in &g0 {
        let b = &g1[name];
        let scale = a.iter().fold(0f32, |m, x| m.max(x.abs())).max(1e-12);
        let err = a.iter().zip(b).fold(0f32, |m, (x, y)| m.max((x - y).abs()));
        assert!(err / scale < 1e-5, "{name}: max |Δ| {err} vs max |g| {scale}");
    }
    // Nothing left behind for the next step.
    let mut empty = candle_core::backprop::GradStore::default();
    merge_pending_grads(&mut empty).unwrap();
    assert_eq!(empty.get_ids().count(), 0);
}
