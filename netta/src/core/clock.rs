//! Kernel records carry CLOCK_MONOTONIC nanoseconds (`bpf_ktime_get_ns`); people and
//! log pipelines want wall time. One offset, taken at start, converts between them.
use std::time::{Duration, SystemTime, UNIX_EPOCH};

#[derive(Clone, Copy, Debug)]
pub struct Clock {
    /// Wall-clock nanoseconds since the epoch at monotonic zero.
    offset_ns: i128,
}

fn read(clock: libc::clockid_t) -> i128 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: valid clock id and a valid out-pointer.
    unsafe { libc::clock_gettime(clock, &mut ts) };
    ts.tv_sec as i128 * 1_000_000_000 + ts.tv_nsec as i128
}

/// CLOCK_MONOTONIC now, in nanoseconds: the time base of every event.
pub fn mono_now() -> u64 {
    read(libc::CLOCK_MONOTONIC) as u64
}

impl Clock {
    pub fn new() -> Clock {
        let mono = read(libc::CLOCK_MONOTONIC);
        let real = read(libc::CLOCK_REALTIME);
        Clock {
            offset_ns: real - mono,
        }
    }

    /// A clock whose monotonic zero is `epoch_ns` wall time (for tests and snapshots).
    pub fn fixed(epoch_ns: i128) -> Clock {
        Clock {
            offset_ns: epoch_ns,
        }
    }

    /// Wall-clock nanoseconds at monotonic zero: what an attached view needs to
    /// show the agent's times exactly as the agent would.
    pub fn offset_ns(&self) -> i128 {
        self.offset_ns
    }

    pub fn to_system(&self, mono_ns: u64) -> SystemTime {
        let ns = (mono_ns as i128 + self.offset_ns).max(0);
        UNIX_EPOCH + Duration::from_nanos(ns as u64)
    }

    /// RFC 3339 UTC with nanoseconds, as ECS `@timestamp` wants.
    pub fn rfc3339(&self, mono_ns: u64) -> String {
        humantime::format_rfc3339_nanos(self.to_system(mono_ns)).to_string()
    }

    /// `HH:MM:SS` UTC, for the monitor's lines.
    pub fn hms(&self, mono_ns: u64) -> String {
        let s = self.rfc3339(mono_ns);
        s.get(11..19).unwrap_or("??:??:??").to_string()
    }
}

impl Default for Clock {
    fn default() -> Self {
        Clock::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn converts_monotonic_to_rfc3339() {
        let c = Clock::fixed(1_700_000_000_000_000_000);
        assert_eq!(c.rfc3339(123), "2023-11-14T22:13:20.000000123Z");
        assert_eq!(c.hms(0), "22:13:20");
    }

    #[test]
    fn live_clock_is_close_to_system_time() {
        let c = Clock::new();
        let now = SystemTime::now();
        let diff = c
            .to_system(mono_now())
            .duration_since(now)
            .unwrap_or_else(|e| e.duration());
        assert!(diff < Duration::from_secs(1), "{diff:?}");
    }
}
