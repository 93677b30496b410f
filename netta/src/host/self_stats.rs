//! The agent's own CPU time and memory, from `/proc/self`.

/// The agent's CPU time and memory, from `/proc/self`.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Process {
    pub cpu_seconds: f64,
    pub resident_bytes: u64,
    /// Since the epoch.
    pub start_time_seconds: f64,
    pub open_fds: u64,
    pub max_fds: u64,
}

impl Process {
    pub fn read() -> Option<Process> {
        let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
        let status = std::fs::read_to_string("/proc/self/status").ok()?;
        // SAFETY: sysconf has no memory-safety preconditions.
        let tck = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
        let btime = std::fs::read_to_string("/proc/stat")
            .ok()
            .and_then(|s| {
                s.lines()
                    .find_map(|l| l.strip_prefix("btime "))
                    .and_then(|v| v.trim().parse::<u64>().ok())
            })
            .unwrap_or(0);
        let mut p = Process::parse(
            &stat,
            &status,
            if tck > 0 { tck as f64 } else { 100.0 },
            btime,
        )?;
        p.open_fds = std::fs::read_dir("/proc/self/fd").map_or(0, |d| d.count() as u64);
        let mut lim = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: valid out-pointer.
        if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } == 0 {
            p.max_fds = lim.rlim_cur;
        }
        Some(p)
    }

    /// `stat`: `/proc/self/stat`; `status`: `/proc/self/status`; `clk_tck`: ticks/s.
    /// `btime`: boot time, seconds since the epoch (`/proc/stat`).
    pub fn parse(stat: &str, status: &str, clk_tck: f64, btime: u64) -> Option<Process> {
        // The command name may contain spaces and parentheses: fields follow the last ')'.
        let rest = &stat[stat.rfind(')')? + 1..];
        let f: Vec<&str> = rest.split_whitespace().collect();
        // f[0] is field 3 (state); utime and stime are fields 14 and 15.
        let utime: u64 = f.get(11)?.parse().ok()?;
        let stime: u64 = f.get(12)?.parse().ok()?;
        // Field 22: start time in ticks after boot.
        let start: u64 = f.get(19)?.parse().ok()?;
        let rss_kb: u64 = status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        Some(Process {
            cpu_seconds: (utime + stime) as f64 / clk_tck,
            resident_bytes: rss_kb * 1024,
            start_time_seconds: btime as f64 + start as f64 / clk_tck,
            open_fds: 0,
            max_fds: 0,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn process_stat_parses() {
        let stat = "1234 (net ta) S 1 1234 1234 0 -1 4194560 500 0 0 0 250 50 0 0 20 0 4 0 100 1000000 300";
        let status = "Name:\tnetta\nVmPeak:\t 9000 kB\nVmRSS:\t    2048 kB\nThreads:\t4\n";
        let p = Process::parse(stat, status, 100.0, 1_000).unwrap();
        assert_eq!(p.cpu_seconds, 3.0);
        assert_eq!(p.start_time_seconds, 1_001.0, "100 ticks after boot");
        assert_eq!(p.resident_bytes, 2048 * 1024);
        let own = Process::read().expect("/proc/self is readable");
        assert!(own.resident_bytes > 0);
        assert!(own.open_fds >= 3 && own.max_fds >= own.open_fds, "{own:?}");
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs_f64();
        assert!(own.start_time_seconds <= now + 1.0);
        assert!(own.start_time_seconds > now - 86_400.0 * 365.0);
        assert!(Process::parse("garbage", status, 100.0, 0).is_none());
    }
}
