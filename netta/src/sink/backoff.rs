//! Reconnect delays.
use super::*;
use crate::core::clock::boot_now;
use std::time::Duration;

/// Exponential backoff from [`BACKOFF_MIN`] to [`BACKOFF_MAX`], with up to 10% jitter.
pub(super) struct Backoff {
    pub(super) next: Duration,
}

impl Backoff {
    pub(super) fn new() -> Backoff {
        Backoff { next: BACKOFF_MIN }
    }

    pub(super) fn reset(&mut self) {
        self.next = BACKOFF_MIN;
    }

    pub(super) fn delay(&mut self) -> Duration {
        let d = self.next;
        self.next = (d * 2).min(BACKOFF_MAX);
        // The low digits of the kernel clock are jitter enough.
        d + d * (boot_now() % 100) as u32 / 1000
    }
}

/// Logs a failed attempt: a warning at the first of an episode (and `failing` is
/// set), debug after it, so a long outage makes one warning.
pub(super) fn log_failure(failing: &mut bool, label: &str, why: &str, retrying: &str) {
    if *failing {
        log::debug!("sink {label}: {why}");
    } else {
        log::warn!(
            "sink {label}: {why}; {retrying} with backoff up to {}s",
            BACKOFF_MAX.as_secs()
        );
        *failing = true;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sink::{BACKOFF_MAX, BACKOFF_MIN};
    use std::time::Duration;

    #[test]
    fn backoff_doubles_to_the_maximum() {
        let mut b = Backoff::new();
        let d: Vec<Duration> = (0..10).map(|_| b.delay()).collect();
        assert!(d[0] >= BACKOFF_MIN && d[0] <= BACKOFF_MIN * 11 / 10);
        assert!(d[1] >= BACKOFF_MIN * 2);
        assert!(d[9] >= BACKOFF_MAX && d[9] <= BACKOFF_MAX * 11 / 10);
        b.reset();
        assert!(b.delay() < BACKOFF_MIN * 2);
    }
}
