//! The live refresh: once a second, the kernel's counters of every open TCP
//! connection (sock_diag) into the table, just before the table rules run; and
//! every `--update-interval`, a `connection-updated` event for each connection
//! that moved data since its last one.
use std::sync::Arc;
use std::time::Duration;

use super::Shared;
use crate::core::live;

/// Samples the open connections' counters into the table; returns how many rows
/// it updated. A host without sock_diag (old kernel, no permission) says so once.
pub(super) async fn refresh(shared: &Arc<Shared>) -> usize {
    let host = shared.host.clone();
    let Ok(sample) = tokio::task::spawn_blocking(move || {
        let mut out = Vec::new();
        host.tcp_counters(&mut out).map(|()| out)
    })
    .await
    else {
        return 0;
    };
    match sample {
        Ok(sample) => {
            let now = shared.now_ns();
            live::apply_sample(&mut shared.table(), &sample, now)
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
