//! Distinct values seen within a sliding window, each with its last time. Stale
//! values are pruned in sweeps (every 1/64 of the window), so a busy source costs
//! one hash update per event and a flood of one value stays one entry.
use std::hash::Hash;
use std::time::Duration;

use rustc_hash::FxHashMap;

pub(super) struct Window<T: Eq + Hash + Copy> {
    last: FxHashMap<T, u64>,
    span: u64,
    pruned_at: u64,
}

impl<T: Eq + Hash + Copy> Window<T> {
    pub fn new(span: Duration) -> Self {
        Window {
            last: FxHashMap::default(),
            span: span.as_nanos() as u64,
            pruned_at: 0,
        }
    }

    pub fn add(&mut self, v: T, now: u64) {
        self.last.insert(v, now);
        if now.saturating_sub(self.pruned_at) >= self.span / 64 {
            self.prune(now);
        }
    }

    pub fn prune(&mut self, now: u64) {
        let cutoff = now.saturating_sub(self.span);
        self.last.retain(|_, t| *t >= cutoff);
        self.pruned_at = now;
    }

    pub fn len(&self) -> usize {
        self.last.len()
    }

    /// Oldest time still in the window (a full pass: only when an incident opens).
    pub fn first_time(&self) -> Option<u64> {
        self.last.values().min().copied()
    }
}
