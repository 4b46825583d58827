//! Seeded shuffled batches over training blocks, with a resume state.
//!
//! Each epoch is a permutation of the block indices drawn from the `"data"` fork of the run seed;
//! batches take `batch_size` indices at a time, and a tail shorter than a batch is skipped (the
//! next epoch reshuffles everything). [`BatcherState`] holds the epoch, the cursor within it and
//! the RNG state *before* the epoch's shuffle, so a restored batcher redraws the same permutation
//! and continues with exactly the batches the original would have produced.

use crate::blocks::{Batch, TokenBlocks};
use crate::error::{DataError, Result};
use align_core::seed::{fork, restore_state, save_state, Rng, RngState};
use rand::seq::SliceRandom;
use serde::{Deserialize, Serialize};

/// Where a [`Batcher`] is: saved in checkpoints as JSON.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BatcherState {
    /// Epochs completed.
    pub epoch: u64,
    /// Blocks of this epoch's permutation already served.
    pub cursor: usize,
    /// The RNG before this epoch's shuffle.
    pub rng: RngState,
}

/// Seeded epochs of shuffled indices `0..n`, `batch_size` at a time, with a resume state: the
/// part of [`Batcher`] that does not care what the items are (SFT and preference data use it too).
pub struct Shuffler {
    n: usize,
    batch_size: usize,
    epoch: u64,
    cursor: usize,
    order: Vec<usize>,
    epoch_rng: RngState,
    rng: Rng,
}

impl Shuffler {
    /// Shuffles `n` items with `fork(seed, purpose)`.
    pub fn new(n: usize, batch_size: usize, seed: u64, purpose: &str) -> Result<Self> {
        if batch_size == 0 || batch_size > n {
            return Err(DataError::Invalid(format!(
                "batch_size {batch_size} must be between 1 and the number of training items ({n})"
            )));
        }
        let rng = fork(seed, purpose);
        let mut s = Shuffler { epoch_rng: save_state(&rng), rng, order: vec![], n, batch_size, epoch: 0, cursor: 0 };
        s.shuffle();
        Ok(s)
    }

    /// Draws this epoch's permutation, remembering the RNG state before it.
    fn shuffle(&mut self) {
        self.epoch_rng = save_state(&self.rng);
        self.order = (0..self.n).collect();
        self.order.shuffle(&mut self.rng);
    }

    /// The next batch of indices (the stream never ends; epochs roll over).
    pub fn next_indices(&mut self) -> Vec<usize> {
        if self.cursor + self.batch_size > self.order.len() {
            self.epoch += 1;
            self.cursor = 0;
            self.shuffle();
        }
        let idx = self.order[self.cursor..self.cursor + self.batch_size].to_vec();
        self.cursor += self.batch_size;
        idx
    }

    pub fn state(&self) -> BatcherState {
        BatcherState { epoch: self.epoch, cursor: self.cursor, rng: self.epoch_rng.clone() }
    }

    /// Continues from `state` (taken from a shuffler over the same items and batch size).
    pub fn restore(&mut self, state: &BatcherState) -> Result<()> {
        if state.cursor > self.n {
            return Err(DataError::Invalid(format!(
                "batcher state cursor {} is past the {} training items: different data?",
                state.cursor, self.n
            )));
        }
        self.rng = restore_state(&state.rng);
        self.shuffle();
        self.epoch = state.epoch;
        self.cursor = state.cursor;
        Ok(())
    }

    /// Epochs completed, plus the fraction of the current one.
    pub fn epoch_f64(&self) -> f64 {
        self.epoch as f64 + self.cursor as f64 / self.n.max(1) as f64
    }
    pub fn epoch(&self) -> u64 {
        self.epoch
    }
    pub fn batch_size(&self) -> usize {
        self.batch_size
    }
    /// Whole batches per epoch.
    pub fn batches_per_epoch(&self) -> usize {
        self.n / self.batch_size
    }
}

/// Shuffled batches of pretraining blocks.
pub struct Batcher {
    blocks: TokenBlocks,
    shuffler: Shuffler,
}

impl Batcher {
    /// A batcher over `blocks`, shuffled with `fork(seed, "data")`.
    pub fn new(blocks: TokenBlocks, batch_size: usize, seed: u64) -> Result<Self> {
        let shuffler = Shuffler::new(blocks.len(), batch_size, seed, "data")?;
        Ok(Batcher { blocks, shuffler })
    }

    /// The next batch (the stream never ends; epochs roll over).
    pub fn next_batch(&mut self) -> Batch {
        let idx = self.shuffler.next_indices();
        self.blocks.batch(&idx)
    }

    pub fn state(&self) -> BatcherState {
        self.shuffler.state()
    }

    /// Continues from `state` (taken from a batcher over the same blocks and batch size).
    pub fn restore(&mut self, state: &BatcherState) -> Result<()> {
        self.shuffler.restore(state)
    }

    pub fn epoch(&self) -> u64 {
        self.shuffler.epoch()
    }
    pub fn batch_size(&self) -> usize {
        self.shuffler.batch_size()
    }
    /// Whole batches per epoch.
    pub fn batches_per_epoch(&self) -> usize {
        self.shuffler.batches_per_epoch()
    }
    pub fn blocks(&self) -> &TokenBlocks {
        &self.blocks
    }
}

impl Iterator for Batcher {
    type Item = Batch;
    fn next(&mut self) -> Option<Batch> {
        Some(self.next_batch())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn blocks() -> TokenBlocks {
        TokenBlocks::new((0..71).collect(), 5).unwrap() // 14 blocks
    }

    #[test]
    fn resume_continues_the_same_sequence() {
        let mut a = Batcher::new(blocks(), 3, 42).unwrap(); // 4 batches per epoch: crosses epochs
        let all: Vec<Batch> = (0..10).map(|_| a.next_batch()).collect();
        let mut b = Batcher::new(blocks(), 3, 42).unwrap();
        let first: Vec<Batch> = (0..5).map(|_| b.next_batch()).collect();
        let json = serde_json::to_string(&b.state()).unwrap();
        let state: BatcherState = serde_json::from_str(&json).unwrap();
        let mut c = Batcher::new(blocks(), 3, 7).unwrap();
        c.restore(&state).unwrap();
        let rest: Vec<Batch> = (0..5).map(|_| c.next_batch()).collect();
        assert_eq!(all, [first, rest].concat());
        assert_eq!(c.epoch(), 2);
    }

    #[test]
    fn epochs_are_permutations_and_seeds_differ() {
        let mut a = Batcher::new(blocks(), 2, 1).unwrap();
        for _ in 0..3 {
            let mut firsts: Vec<u32> = (0..7)
                .flat_map(|_| {
                    let b = a.next_batch();
                    vec![b.input_ids[0], b.input_ids[5]]
                })
                .collect();
            firsts.sort();
            assert_eq!(firsts, (0..14).map(|i| i * 5).collect::<Vec<u32>>());
        }
        let mut b = Batcher::new(blocks(), 2, 2).unwrap();
        let mut a = Batcher::new(blocks(), 2, 1).unwrap();
        assert_ne!(
            (0..7).map(|_| a.next_batch()).collect::<Vec<_>>(),
            (0..7).map(|_| b.next_batch()).collect::<Vec<_>>()
        );
    }

    #[test]
    fn rejects_batch_larger_than_data() {
        assert!(Batcher::new(blocks(), 15, 0).is_err());
        assert!(Batcher::new(blocks(), 0, 0).is_err());
    }
}
