//! Kernel records carry CLOCK_BOOTTIME nanoseconds (`bpf_ktime_get_boot_ns`), and so
//! does everything the agent stamps itself (/proc polls, reconciles, loss notices):
//! BOOTTIME never steps and, unlike MONOTONIC, keeps counting through a suspend, as
//! the wall clock does. The wall clock still steps (NTP, an admin, a VM restored), so
//! the BOOTTIME→REALTIME offset is not taken once: [`Clock::resync`] re-reads it
//! (two `clock_gettime` calls, through the vDSO) for every batch the sinks serialise
//! and once a second in the agent; every copy of a clock shares the new offset.
use std::fmt;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Where a live clock reads the time: the OS, or a fake in tests.
pub trait TimeSource: Send + Sync {
    /// CLOCK_BOOTTIME, ns.
    fn boot_ns(&self) -> i128;
    /// CLOCK_REALTIME, ns since the epoch.
    fn real_ns(&self) -> i128;
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

/// The machine's clocks.
struct Os;

impl TimeSource for Os {
    fn boot_ns(&self) -> i128 {
        read(libc::CLOCK_BOOTTIME)
    }
    fn real_ns(&self) -> i128 {
        read(libc::CLOCK_REALTIME)
    }
}

/// CLOCK_BOOTTIME now, in nanoseconds: the time base of every event.
pub fn boot_now() -> u64 {
    Os.boot_ns() as u64
}

/// Converts kernel (BOOTTIME) nanoseconds to wall time. Clones share one offset.
#[derive(Clone)]
pub struct Clock {
    /// Wall-clock nanoseconds since the epoch at BOOTTIME zero.
    offset_ns: Arc<AtomicI64>,
    /// Where [`Clock::resync`] reads; `None` for a fixed clock.
    source: Option<Arc<dyn TimeSource>>,
}

impl fmt::Debug for Clock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Clock")
            .field("offset_ns", &self.offset_ns())
            .field("live", &self.source.is_some())
            .finish()
    }
}

impl Clock {
    /// The machine's clock, synchronised now.
    pub fn new() -> Clock {
        Clock::with_source(Arc::new(Os))
    }

    /// A live clock on `source`, synchronised now.
    pub fn with_source(source: Arc<dyn TimeSource>) -> Clock {
        let c = Clock {
            offset_ns: Arc::new(AtomicI64::new(0)),
            source: Some(source),
        };
        c.resync();
        c
    }

    /// A clock whose BOOTTIME zero is `epoch_ns` wall time, for ever (for tests,
    /// snapshots, and an attached view given the agent's offset).
    pub fn fixed(epoch_ns: i128) -> Clock {
        Clock {
            offset_ns: Arc::new(AtomicI64::new(clamp(epoch_ns))),
            source: None,
        }
    }

    /// Re-reads the BOOTTIME→REALTIME offset, so a wall-clock step since the last
    /// call is followed (a fixed clock stays as it is).
    pub fn resync(&self) {
        if let Some(s) = &self.source {
            let boot = s.boot_ns();
            let real = s.real_ns();
            self.offset_ns.store(clamp(real - boot), Ordering::Relaxed);
        }
    }

    /// Wall-clock nanoseconds at BOOTTIME zero: what an attached view needs to
    /// show the agent's times exactly as the agent would.
    pub fn offset_ns(&self) -> i128 {
        self.offset_ns.load(Ordering::Relaxed) as i128
    }

    pub fn to_system(&self, boot_ns: u64) -> SystemTime {
        let ns = (boot_ns as i128 + self.offset_ns()).max(0);
        UNIX_EPOCH + Duration::from_nanos(ns as u64)
    }

    /// RFC 3339 UTC with nanoseconds, as ECS `@timestamp` wants.
    pub fn rfc3339(&self, boot_ns: u64) -> String {
        humantime::format_rfc3339_nanos(self.to_system(boot_ns)).to_string()
    }

    /// `HH:MM:SS` UTC, for the monitor's lines.
    pub fn hms(&self, boot_ns: u64) -> String {
        let s = self.rfc3339(boot_ns);
        s.get(11..19).unwrap_or("??:??:??").to_string()
    }
}

fn clamp(ns: i128) -> i64 {
    ns.clamp(i64::MIN as i128, i64::MAX as i128) as i64
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
    fn converts_boottime_to_rfc3339() {
        let c = Clock::fixed(1_700_000_000_000_000_000);
        assert_eq!(c.rfc3339(123), "2023-11-14T22:13:20.000000123Z");
        assert_eq!(c.hms(0), "22:13:20");
        c.resync();
        assert_eq!(c.rfc3339(123), "2023-11-14T22:13:20.000000123Z", "fixed");
    }

    #[test]
    fn live_clock_is_close_to_system_time() {
        let c = Clock::new();
        let now = SystemTime::now();
        let diff = c
            .to_system(boot_now())
            .duration_since(now)
            .unwrap_or_else(|e| e.duration());
        assert!(diff < Duration::from_secs(1), "{diff:?}");
    }

    /// A machine whose clocks the test moves: BOOTTIME, MONOTONIC and REALTIME.
    #[derive(Default)]
    struct FakeMachine {
        boot: AtomicI64,
        mono: AtomicI64,
        real: AtomicI64,
    }

    impl FakeMachine {
        /// Time passes: every clock advances.
        fn run(&self, ns: i64) {
            for c in [&self.boot, &self.mono, &self.real] {
                c.fetch_add(ns, Ordering::Relaxed);
            }
        }
        /// A suspend: MONOTONIC stands still, BOOTTIME and the wall clock go on.
        fn suspend(&self, ns: i64) {
            self.boot.fetch_add(ns, Ordering::Relaxed);
            self.real.fetch_add(ns, Ordering::Relaxed);
        }
        /// An NTP step (or `date -s`): only the wall clock jumps.
        fn step(&self, ns: i64) {
            self.real.fetch_add(ns, Ordering::Relaxed);
        }
        /// What the kernel stamps a record with now (`bpf_ktime_get_boot_ns`).
        fn stamp(&self) -> u64 {
            self.boot.load(Ordering::Relaxed) as u64
        }
        fn wall(&self) -> SystemTime {
            UNIX_EPOCH + Duration::from_nanos(self.real.load(Ordering::Relaxed) as u64)
        }
    }

    impl TimeSource for FakeMachine {
        fn boot_ns(&self) -> i128 {
            self.boot.load(Ordering::Relaxed) as i128
        }
        fn real_ns(&self) -> i128 {
            self.real.load(Ordering::Relaxed) as i128
        }
    }

    const SEC: i64 = 1_000_000_000;

    #[test]
    fn follows_ntp_steps_and_suspend_after_a_resync() {
        let m = Arc::new(FakeMachine::default());
        m.boot.store(5 * SEC, Ordering::Relaxed);
        m.mono.store(5 * SEC, Ordering::Relaxed);
        m.real.store(1_700_000_000 * SEC, Ordering::Relaxed);
        let clock = Clock::with_source(m.clone());
        // A copy (the sinks', the store's) follows the same re-syncs.
        let copy = clock.clone();
        assert_eq!(copy.to_system(m.stamp()), m.wall());
        m.run(3 * SEC);
        assert_eq!(copy.to_system(m.stamp()), m.wall(), "no re-sync needed");

        type Change<'a> = (&'a str, &'a dyn Fn(&FakeMachine));
        let cases: [Change; 4] = [
            ("NTP steps forward", &|m| m.step(37 * SEC + 250_000_000)),
            ("NTP steps backward", &|m| m.step(-3_600 * SEC)),
            ("a suspend", &|m| m.suspend(600 * SEC)),
            ("a suspend, then a step", &|m| {
                m.suspend(90 * SEC);
                m.step(-SEC / 2);
            }),
        ];
        for (what, change) in cases {
            change(&m);
            m.run(SEC / 10);
            let stale = copy.to_system(m.stamp());
            if what.contains("step") {
                assert_ne!(stale, m.wall(), "{what}: the old offset is off");
            }
            clock.resync();
            m.run(SEC / 10);
            assert_eq!(copy.to_system(m.stamp()), m.wall(), "{what}");
        }
        // A clock on MONOTONIC would now be this far behind the wall clock.
        let behind = m.boot.load(Ordering::Relaxed) - m.mono.load(Ordering::Relaxed);
        assert_eq!(behind, 690 * SEC, "BOOTTIME counted the suspends");
    }
}
