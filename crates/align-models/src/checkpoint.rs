//! Activation checkpointing (Chen et al. 2016, "Training Deep Nets with Sublinear Memory Cost";
//! PyTorch's `torch.utils.checkpoint`): a decoder block's forward runs without keeping its
//! intermediates (attention projections, MLP activations), only its input and output stay in the
//! graph, and the backward runs the block once more, with gradients, to get them back.
//!
//! How it fits candle: [`checkpoint`] runs the block, detaches its output (the block's graph is
//! dropped) and joins the output to the input with [`Recompute`], a `CustomOp2` whose forward is
//! the identity on the detached output and whose backward re-runs the block on a fresh variable
//! copy of the input and back-propagates `grad_out` through it. A custom op can only return the
//! gradients of its own arguments, so the gradients of the block's parameters go to a per-thread
//! list, and the training loop adds them to the main `GradStore` with [`merge_pending_grads`]
//! right after `backward()` (on the same thread: candle runs a backward pass on its caller).
//!
//! Switched on per thread by [`set_activation_checkpointing`] (`TrainConfig.activation_checkpointing`,
//! for the thread that runs `fit`; a model's forward runs on its caller's thread, so other
//! threads' models are unaffected); models consult [`enabled`] and checkpoint only f32 CPU blocks
//! without a KV cache (generation never checkpoints).

use candle_core::backprop::GradStore;
use candle_core::{CpuStorage, CustomOp2, DType, Layout, Result, Shape, Tensor, TensorId, Var};
use std::cell::{Cell, RefCell};
use std::sync::Arc;

thread_local! {
    /// Whether this thread's forwards checkpoint their blocks.
    static ENABLED: Cell<bool> = const { Cell::new(false) };
    /// Parameter gradients computed inside recomputing backwards, waiting to be merged.
    static PENDING: RefCell<Vec<(TensorId, Tensor)>> = const { RefCell::new(Vec::new()) };
}

/// Turns checkpointing on or off for the forwards this thread runs; returns the previous setting.
pub fn set_activation_checkpointing(on: bool) -> bool {
    ENABLED.with(|e| e.replace(on))
}

/// Whether this thread's blocks should be checkpointed.
pub fn enabled() -> bool {
    ENABLED.with(|e| e.get())
}

/// A block's forward: input (B, T, C) → output of the same shape.
pub type BlockFn = Arc<dyn Fn(&Tensor) -> Result<Tensor> + Send + Sync>;

/// `f(x)` keeping only `x` and the result in the autograd graph (see the module docs). Falls back
/// to a plain `f(x)` for tensors that are not f32 on the CPU.
pub fn checkpoint(x: &Tensor, f: BlockFn) -> Result<Tensor> {
    if x.dtype() != DType::F32 || !x.device().is_cpu() {
        return f(x);
    }
    let y = f(&x.detach())?.detach().contiguous()?;
    x.apply_op2_arc(&y, Arc::new(Box::new(Recompute { f })))
}

/// Adds the parameter gradients of this thread's recomputed blocks to `grads` (and clears them).
/// Call it after every `backward()` of a graph that may contain checkpointed blocks.
pub fn merge_pending_grads(grads: &mut GradStore) -> Result<()> {
    let pending = PENDING.with(|p| std::mem::take(&mut *p.borrow_mut()));
    for (id, g) in pending {
        let sum = match grads.get_id(id) {
            Some(prev) => (prev + g)?,
            None => g,
        };
        grads.insert_id(id, sum);
    }
    Ok(())
}

/// Drops gradients left by a backward whose grads were not merged (an error mid-step).
pub fn clear_pending_grads() {
    PENDING.with(|p| p.borrow_mut().clear());
}

struct Recompute {
    f: BlockFn,
}

impl CustomOp2 for Recompute {
    fn name(&self) -> &'static str {
        "activation-checkpoint"
    }

    /// The block's output, computed (and detached) before the op was applied.
    fn cpu_fwd(&self, _: &CpuStorage, _: &Layout, y: &CpuStorage, ly: &Layout) -> Result<(CpuStorage, Shape)> {
        let data = crate::kernels::contiguous_f32(y, ly, "checkpointed block output")?;
        Ok((CpuStorage::F32(data.to_vec()), ly.shape().clone()))
    }

    fn bwd(&self, x: &Tensor, _y: &Tensor, _res: &Tensor, grad: &Tensor) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let xv = Var::from_tensor(&x.detach())?;
        let out = (self.f)(xv.as_tensor())?;
        let loss = (&out * grad.detach())?.sum_all()?;
        // The block's own parameters: the other variables the recomputation reached.
        let params: Vec<TensorId> = loss.sorted_nodes().into_iter().filter(|t| t.is_variable() && t.id() != xv.as_tensor().id()).map(|t| t.id()).collect();
        let mut grads = loss.backward()?;
        let gx = grads.remove(xv.as_tensor());
        PENDING.with(|p| {
            let mut p = p.borrow_mut();
            for id in params {
                if let Some(g) = grads.get_id(id) {
                    p.push((id, g.clone()));
                }
            }
        });
        Ok((gx, None))
    }
}
