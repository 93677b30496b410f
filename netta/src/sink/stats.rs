//! Counters a sink keeps for metrics.
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

/// Counters for metrics; share them with `Arc` and read them with `Ordering::Relaxed`.
#[derive(Debug, Default)]
pub struct SinkStats {
    /// Record lines handed to the destination (not counting the sink's own
    /// `events-lost` notices).
    pub written: AtomicU64,
    /// Record lines dropped by the sink: the outage buffer overflowed (oldest
    /// first), or lines still undelivered at shutdown.
    pub dropped: AtomicU64,
    /// Connections re-established after one was lost, or files reopened.
    pub reconnects: AtomicU64,
    /// The destination is currently open (connected socket, open file).
    pub connected: AtomicBool,
}

impl SinkStats {
    pub(super) fn add_written(&self, n: u64) {
        if n > 0 {
            self.written.fetch_add(n, Ordering::Relaxed);
        }
    }

    pub(super) fn add_dropped(&self, n: u64) {
        if n > 0 {
            self.dropped.fetch_add(n, Ordering::Relaxed);
        }
    }

    pub(super) fn set_connected(&self, up: bool) {
        self.connected.store(up, Ordering::Relaxed);
    }
}
