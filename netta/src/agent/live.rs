//! The live refresh: once a second, the kernel's counters of every open TCP
//! connection (sock_diag) into the table, just before the table rules run; and
//! every `--update-interval`, a `connection-updated` event for each connection
//! that moved data since its last one.
use std::sync::Arc;
use std::time::Duration;

use super::Shared;
use crate::core::live;
use crate::core::sock_diag::DiagSocket;

/// The refresh's state between rounds: where each socket's row is, and the
/// sample's buffer (kept allocated).
#[derive(Default)]
pub(super) struct Refresher {
    sampler: live::Sampler,
    sample: Vec<DiagSocket>,
}

impl Refresher {
    /// Samples the open connections' counters into the table; returns how many
    /// rows it updated. A host without sock_diag (old kernel, no permission)
    /// says so once.
    pub async fn refresh(&mut self, shared: &Arc<Shared>) -> usize {
        let host = shared.host.clone();
        let mut sample = std::mem::take(&mut self.sample);
        let Ok((sample, result)) = tokio::task::spawn_blocking(move || {
            sample.clear();
            let r = host.tcp_counters(&mut sample);
            (sample, r)
        })
        .await
        else {
            return 0;
        };
        self.sample = sample;
        match result {
            Ok(()) => {
                let now = shared.now_ns();
                self.sampler.apply(&mut shared.table(), &self.sample, now)
            }
            Err(e) => {
                use std::sync::atomic::{AtomicBool, Ordering};
                static WARNED: AtomicBool = AtomicBool::new(false);
                if !WARNED.swap(true, Ordering::Relaxed) {
                    log::warn!("live TCP counters unavailable (sock_diag): {e}");
                }
                0
            }
        }
    }
}

/// When the next `connection-updated` round is due.
pub(super) struct Schedule {
    every: Option<Duration>,
    last: tokio::time::Instant,
}

impl Schedule {
    pub fn new(every: Option<Duration>) -> Schedule {
        Schedule {
            every: every.filter(|d| !d.is_zero()),
            last: tokio::time::Instant::now(),
        }
    }

    /// True when a round is due at `now` with the loop ticking every `tick`
    /// (half a tick early rather than a whole tick late).
    pub fn due(&mut self, now: tokio::time::Instant, tick: Duration) -> bool {
        let Some(every) = self.every else {
            return false;
        };
        if now + tick / 2 < self.last + every {
            return false;
        }
        self.last = now;
        true
    }
}

/// Publishes one `connection-updated` event per connection that changed.
pub(super) fn publish_updates(shared: &Shared) {
    let mut events = Vec::new();
    let now = shared.now_ns();
    live::take_updates(&mut shared.table(), now, &mut events);
    shared.publish(&events);
}
