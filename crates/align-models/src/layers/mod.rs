//! Building blocks shared by every architecture. Each is composed of differentiable candle
//! primitives (no fused op without a backward on the training path).

pub mod attention;
pub mod linear;
pub mod mask;
pub mod mlp;
pub mod norm;
pub mod rope;

use candle_core::{Result, Tensor};

/// Looks up rows of `table` (V, C) for `ids` (B, T): (B, T, C). Differentiable (index_select).
pub fn embed(table: &Tensor, ids: &Tensor) -> Result<Tensor> {
    let (b, t) = ids.dims2()?;
    let c = table.dim(1)?;
    table.index_select(&ids.flatten_all()?, 0)?.reshape((b, t, c))
}
