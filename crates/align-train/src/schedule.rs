//! Learning-rate schedules: linear warmup, then cosine, linear or constant.
//!
//! The formulas are HF Transformers' (`optimization.py`): with `min_lr_ratio = 0`, `Cosine` is
//! `get_cosine_schedule_with_warmup`, `Linear` is `get_linear_schedule_with_warmup` and `Constant`
//! is `get_constant_schedule_with_warmup`; with `min_lr_ratio > 0`, `Cosine` is
//! `get_cosine_with_min_lr_schedule_with_warmup` (`min_lr_rate`), and `Linear` decays to the same floor.
//!
//! Like HF, the rate of an optimizer step is the schedule at the number of steps completed before
//! it: the first step (index 0) has rate 0 when there is a warmup.

use serde::{Deserialize, Serialize};

/// The shape of the learning-rate curve after warmup (HF `lr_scheduler_type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum LrScheduler {
    /// Half a cosine from `lr` down to `min_lr_ratio * lr` at `total_steps`.
    #[default]
    Cosine,
    /// A straight line from `lr` down to `min_lr_ratio * lr` at `total_steps`.
    Linear,
    /// `lr` after warmup.
    Constant,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Schedule {
    pub kind: LrScheduler,
    /// Peak learning rate, reached at the end of warmup.
    pub lr: f64,
    pub warmup_steps: u64,
    pub total_steps: u64,
    /// The floor of the decay, as a fraction of `lr`.
    pub min_lr_ratio: f64,
}

impl Schedule {
    /// The learning rate of the optimizer step taken after `step` completed steps (0-based).
    pub fn lr(&self, step: u64) -> f64 {
        self.lr * self.factor(step)
    }

    /// The multiplier of `lr` (HF's `lr_lambda`).
    pub fn factor(&self, step: u64) -> f64 {
        let (s, w, n) = (
            step as f64,
            self.warmup_steps as f64,
            self.total_steps as f64,
        );
        if step < self.warmup_steps {
            return s / w.max(1.0);
        }
        let floor = self.min_lr_ratio;
        // Clamped at 1: past `total_steps` the rate stays at its floor (HF's cosine would rise again).
        let progress = ((s - w) / (n - w).max(1.0)).min(1.0);
        match self.kind {
            LrScheduler::Constant => 1.0,
            LrScheduler::Cosine => {
                let f = 0.5 * (1.0 + (std::f64::consts::PI * progress).cos());
                (f * (1.0 - floor) + floor).max(0.0)
            }
            LrScheduler::Linear => {
                let f = 1.0 - progress; // HF: (n - s) / max(1, n - w), floored at 0
                f * (1.0 - floor) + floor
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sched(kind: LrScheduler, min_lr_ratio: f64) -> Schedule {
        Schedule {
            kind,
            lr: 1e-3,
            warmup_steps: 10,
            total_steps: 110,
            min_lr_ratio,
        }
    }

    fn close(a: f64, b: f64) {
        assert!((a - b).abs() < 1e-12, "{a} vs {b}");
    }

    #[test]
    fn warmup_is_linear_from_zero() {
        // HF: lr_lambda(0) = 0/10, lr_lambda(5) = 5/10.
        for kind in [
            LrScheduler::Cosine,
            LrScheduler::Linear,
            LrScheduler::Constant,
        ] {
            let s = sched(kind, 0.0);
            close(s.lr(0), 0.0);
            close(s.lr(5), 0.5e-3);
            close(s.lr(10), 1e-3);
        }
    }

    #[test]
    fn cosine_matches_hand_values() {
        let s = sched(LrScheduler::Cosine, 0.0);
        // step 60: progress (60-10)/100 = 0.5, 0.5*(1+cos(pi/2)) = 0.5.
        close(s.lr(60), 0.5e-3);
        // step 35: progress 0.25, 0.5*(1+cos(pi/4)) = 0.853553390593...
        close(s.lr(35), 1e-3 * 0.853_553_390_593_273_7);
        close(s.lr(110), 0.0);
        close(s.lr(500), 0.0); // past the end: stays at the floor
    }

    #[test]
    fn cosine_with_floor() {
        let s = sched(LrScheduler::Cosine, 0.1);
        close(s.lr(60), 1e-3 * (0.5 * 0.9 + 0.1));
        close(s.lr(110), 1e-4);
    }

    #[test]
    fn linear_and_constant() {
        let s = sched(LrScheduler::Linear, 0.0);
        close(s.lr(60), 0.5e-3); // (110-60)/100
        close(s.lr(110), 0.0);
        close(s.lr(200), 0.0);
        let s = sched(LrScheduler::Linear, 0.2);
        close(s.lr(110), 0.2e-3);
        let s = sched(LrScheduler::Constant, 0.0);
        close(s.lr(60), 1e-3);
        close(s.lr(1000), 1e-3);
    }
}
