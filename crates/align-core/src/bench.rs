//! Helpers of the micro-benchmark examples (`crates/*/examples/*_bench.rs`): a median timer and
//! an allocator wrapper that counts live bytes and their peak.

use std::alloc::{GlobalAlloc, Layout};
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::time::Instant;

/// Median wall time of `f` in milliseconds over `n` runs (at least 1), after one warm-up run.
pub fn median_ms<E>(n: usize, mut f: impl FnMut() -> Result<(), E>) -> Result<f64, E> {
    f()?;
    let mut t = Vec::with_capacity(n.max(1));
    for _ in 0..n.max(1) {
        let s = Instant::now();
        f()?;
        t.push(s.elapsed().as_secs_f64() * 1e3);
    }
    t.sort_by(f64::total_cmp);
    Ok(t[t.len() / 2])
}

/// A global allocator that forwards to `A` and counts the bytes allocated now and their peak:
/// `#[global_allocator] static GLOBAL: CountingAlloc<mimalloc::MiMalloc> = CountingAlloc::new(mimalloc::MiMalloc);`
pub struct CountingAlloc<A> {
    inner: A,
    now: AtomicUsize,
    peak: AtomicUsize,
}

impl<A> CountingAlloc<A> {
    pub const fn new(inner: A) -> Self {
        Self { inner, now: AtomicUsize::new(0), peak: AtomicUsize::new(0) }
    }

    /// Bytes allocated now.
    pub fn now(&self) -> usize {
        self.now.load(Relaxed)
    }

    /// The most bytes allocated at once since the last [`mark`](Self::mark).
    pub fn peak(&self) -> usize {
        self.peak.load(Relaxed)
    }

    /// Bytes allocated now; resets the peak to it.
    pub fn mark(&self) -> usize {
        let now = self.now();
        self.peak.store(now, Relaxed);
        now
    }

    fn grew(&self, by: usize) {
        self.peak.fetch_max(self.now.fetch_add(by, Relaxed) + by, Relaxed);
    }
}

// SAFETY: every call forwards to `A`, which upholds GlobalAlloc's contract; the counters only
// observe sizes.
unsafe impl<A: GlobalAlloc> GlobalAlloc for CountingAlloc<A> {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        let p = unsafe { self.inner.alloc(l) };
        if !p.is_null() {
            self.grew(l.size());
        }
        p
    }
    unsafe fn alloc_zeroed(&self, l: Layout) -> *mut u8 {
        let p = unsafe { self.inner.alloc_zeroed(l) };
        if !p.is_null() {
            self.grew(l.size());
        }
        p
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        unsafe { self.inner.dealloc(p, l) };
        self.now.fetch_sub(l.size(), Relaxed);
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, new: usize) -> *mut u8 {
        let q = unsafe { self.inner.realloc(p, l, new) };
        if !q.is_null() {
            self.now.fetch_sub(l.size(), Relaxed);
            self.grew(new);
        }
        q
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_live_bytes_and_the_peak() {
        let a = CountingAlloc::new(std::alloc::System);
        let l = Layout::from_size_align(1000, 8).unwrap();
        unsafe {
            let p = a.alloc(l);
            let q = a.realloc(p, l, 3000);
            assert_eq!((a.now(), a.peak()), (3000, 3000));
            a.dealloc(q, Layout::from_size_align(3000, 8).unwrap());
        }
        assert_eq!((a.now(), a.peak()), (0, 3000));
        assert_eq!((a.mark(), a.peak()), (0, 0));
        let mut calls = 0;
        assert_eq!(median_ms::<()>(3, || { calls += 1; Ok(()) }).map(|m| m >= 0.0), Ok(true));
        assert_eq!(calls, 4);
    }
}

/// Deterministic token ids in `0..vocab` (xorshift64*), so benchmarks (and the PyTorch side of
/// them) see the same kind of data without a shared RNG.
pub fn random_ids(n: usize, vocab: usize, seed: u64) -> Vec<u32> {
    let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..n)
        .map(|_| {
            s ^= s >> 12;
            s ^= s << 25;
            s ^= s >> 27;
            (s.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 33) as u32 % vocab as u32
        })
        .collect()
}
