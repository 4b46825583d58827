//! The one RNG of align: ChaCha8 seeded from a `u64`, with a state that fits in JSON.
//!
//! Every run takes a seed; every random choice (init, shuffling, dropout, sampling) draws from an
//! `Rng` derived from it with [`Rng::fork`], so the same seed, data and threads give the same numbers.

use rand::{RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

pub type Rng = ChaCha8Rng;

/// A new RNG for `seed`.
pub fn rng(seed: u64) -> Rng {
    ChaCha8Rng::seed_from_u64(seed)
}

/// A stream derived from `seed` for one purpose (`"init"`, `"data"`, ...): independent of the others.
pub fn fork(seed: u64, purpose: &str) -> Rng {
    // FNV-1a over the purpose, mixed with the seed: stable across platforms and versions.
    let mut h: u64 = 0xcbf29ce484222325;
    for b in purpose.bytes() {
        h ^= b as u64;
        h = h.wrapping_mul(0x100000001b3);
    }
    ChaCha8Rng::seed_from_u64(seed ^ h.rotate_left(17))
}

/// Serializable RNG state: the 32-byte seed and the 128-bit word position.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RngState {
    pub seed: [u8; 32],
    pub word_pos: String,
}

pub fn save_state(r: &Rng) -> RngState {
    RngState { seed: r.get_seed(), word_pos: r.get_word_pos().to_string() }
}

pub fn restore_state(s: &RngState) -> Rng {
    let mut r = ChaCha8Rng::from_seed(s.seed);
    r.set_word_pos(s.word_pos.parse::<u128>().unwrap_or(0));
    r
}

/// A uniform f32 in [0, 1).
pub fn uniform(r: &mut Rng) -> f32 {
    (r.next_u32() >> 8) as f32 / (1u32 << 24) as f32
}

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn state_round_trips() {
        let mut a = rng(7);
        for _ in 0..13 {
            a.next_u32();
        }
        let mut b = restore_state(&save_state(&a));
        for _ in 0..100 {
            assert_eq!(a.next_u64(), b.next_u64());
        }
    }
    #[test]
    fn forks_differ() {
        assert_ne!(fork(1, "init").next_u64(), fork(1, "data").next_u64());
        assert_eq!(fork(1, "init").next_u64(), fork(1, "init").next_u64());
    }
}
