//! A feature's cost per connection, measured where the noise of a saturated
//! two-process workload cannot hide it: one thread makes loopback connections
//! one after another (connect, accept, a request and a reply, the server closes
//! first, as nginx does), and its CPU time per connection (the kernel's TCP work,
//! netta's programs and their dispatch all run in that thread's context) is read
//! from `CLOCK_THREAD_CPUTIME_ID`; the agent's own CPU per connection comes from
//! its threads' schedstat. Untraced and each netta variant take turns, round by
//! round. Each loop runs in a network namespace of its own (the thread's), so
//! its TIME_WAIT sockets go with it and never fill the host's tables.
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};

use anyhow::{bail, Context, Result};

fn thread_cpu_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: a valid clock id and a valid out-pointer.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// Moves the calling thread into a new network namespace and brings its
/// loopback up (the namespace goes when the thread ends).
fn own_netns_with_loopback() -> Result<()> {
    // SAFETY: plain syscalls on this thread; the ifreq is zeroed, then named.
    unsafe {
        if libc::unshare(libc::CLONE_NEWNET) != 0 {
            return Err(std::io::Error::last_os_error()).context("unshare(CLONE_NEWNET)");
        }
        let fd = libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0);
        if fd < 0 {
            return Err(std::io::Error::last_os_error()).context("socket");
        }
        let mut req: libc::ifreq = std::mem::zeroed();
        for (d, s) in req.ifr_name.iter_mut().zip(b"lo\0") {
            *d = *s as libc::c_char;
        }
        let up = libc::ioctl(fd, libc::SIOCGIFFLAGS, &mut req) == 0 && {
            req.ifr_ifru.ifru_flags |= libc::IFF_UP as libc::c_short;
            libc::ioctl(fd, libc::SIOCSIFFLAGS, &req) == 0
        };
        let err = std::io::Error::last_os_error();
        libc::close(fd);
        if !up {
            return Err(err).context("bringing lo up in the loop's namespace");
        }
    }
    Ok(())
}

/// Connections per batch: each batch's CPU per connection is one sample.
const BATCH: u32 = 100;

/// One run of the loop, in CPU ns per connection.
#[derive(Clone, Copy, Debug)]
pub(crate) struct LoopRun {
    /// Over the whole run.
    pub mean: f64,
    /// The 10th percentile of its batches. Interrupts, a preempted vCPU and the
    /// other CPU's bursts only ever add time, so the low batches are the steady
    /// cost; the mean carries that noise (untraced runs: means 48–60 µs, 10th
    /// percentiles 46.7–48.1 µs).
    pub low: f64,
    /// The watched agent's CPU per connection, from the loop's start until it has
    /// taken the loop's last records (it drains the ring every 10 ms).
    pub agent: Option<f64>,
}

/// How long after the loop the agent has surely taken its records.
const AGENT_TAIL: std::time::Duration = std::time::Duration::from_millis(40);

/// `n` loopback connections made one after another in a thread of their own:
/// that thread's CPU ns per connection, and that of the agent `watch` if given.
pub(crate) fn ns_per_connection(n: u32, watch: Option<u32>) -> Result<LoopRun> {
    let agent0 = watch.and_then(crate::bench::threads_cpu_ns);
    let handle = std::thread::spawn(move || -> Result<(f64, f64)> {
        pin_thread(0);
        own_netns_with_loopback()?;
        let l = TcpListener::bind("127.0.0.1:0").context("binding the loop's listener")?;
        let addr = l.local_addr()?;
        let mut b = [0u8; 64];
        let mut batches = Vec::with_capacity((n / BATCH) as usize);
        let start = thread_cpu_ns();
        let mut t0 = start;
        for i in 1..=n {
            let mut c = TcpStream::connect(addr).context("loop connect")?;
            let (mut s, _) = l.accept().context("loop accept")?;
            c.write_all(b"GET / HTTP/1.0\r\n\r\n")?;
            let _ = s.read(&mut b)?;
            s.write_all(b"HTTP/1.0 200 OK\r\n\r\nok\n")?;
            drop(s);
            while c.read(&mut b)? > 0 {}
            if i % BATCH == 0 {
                let t = thread_cpu_ns();
                batches.push((t - t0) as f64 / f64::from(BATCH));
                t0 = t;
            }
        }
        let mean = (thread_cpu_ns() - start) as f64 / f64::from(n.max(1));
        Ok((mean, quantile(batches, 0.1).unwrap_or(mean)))
    });
    let r = handle
        .join()
        .map_err(|_| anyhow::anyhow!("the connection loop panicked"))?;
    let agent1 = watch.and_then(|pid| {
        std::thread::sleep(AGENT_TAIL);
        crate::bench::threads_cpu_ns(pid)
    });
    // The namespace and its TIME_WAIT sockets are torn down by a kernel worker:
    // let that finish before the next measurement.
    std::thread::sleep(std::time::Duration::from_millis(700));
    let (mean, low) = r?;
    let agent = match (watch, agent0, agent1) {
        (None, _, _) => None,
        (Some(_), Some(a), Some(b)) => Some(b.saturating_sub(a) as f64 / f64::from(n.max(1))),
        (Some(pid), _, _) => bail!("could not read the CPU time of pid {pid} (schedstat)"),
    };
    Ok(LoopRun { mean, low, agent })
}

/// The `q` quantile (nearest rank) of `v`; `None` when empty.
fn quantile(mut v: Vec<f64>, q: f64) -> Option<f64> {
    if v.is_empty() {
        return None;
    }
    v.sort_by(|a, b| a.total_cmp(b));
    let i = ((v.len() - 1) as f64 * q).round() as usize;
    Some(v[i])
}

fn cpu_set(cpu: usize) -> libc::cpu_set_t {
    // SAFETY: a zeroed cpu_set_t is empty; CPU_SET stays within it.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        set
    }
}

/// Pins the calling thread to `cpu` (best effort: on one CPU it stays unpinned).
fn pin_thread(cpu: usize) {
    let set = cpu_set(cpu);
    // SAFETY: the calling thread, a valid set.
    unsafe { libc::sched_setaffinity(0, std::mem::size_of_val(&set), &set) };
}

/// Pins every thread of `pid` to `cpu` (best effort), so that it never takes
/// the loop's CPU.
pub(crate) fn pin_process(pid: u32, cpu: usize) {
    let set = cpu_set(cpu);
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return;
    };
    for t in tasks.flatten() {
        if let Some(tid) = t.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) {
            // SAFETY: a thread id of our child, a valid set.
            unsafe { libc::sched_setaffinity(tid, std::mem::size_of_val(&set), &set) };
        }
    }
}

/// Median of the differences `a[i] - b[i]` of paired rounds.
pub(crate) fn paired_median(a: &[f64], b: &[f64]) -> f64 {
    crate::bench::median(differences(a, b))
}

fn differences(a: &[f64], b: &[f64]) -> Vec<f64> {
    a.iter().zip(b).map(|(x, y)| x - y).collect()
}

/// A 95 % interval of the paired median (percentile bootstrap over the rounds,
/// 2,000 resamples, a fixed seed so a run's figures can be reproduced from its
/// samples).
pub(crate) fn paired_median_interval(a: &[f64], b: &[f64]) -> (f64, f64) {
    let d = differences(a, b);
    if d.is_empty() {
        return (f64::NAN, f64::NAN);
    }
    let mut seed: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut next = move || {
        // xorshift64*: plenty for resampling indices.
        seed ^= seed >> 12;
        seed ^= seed << 25;
        seed ^= seed >> 27;
        seed.wrapping_mul(0x2545_F491_4F6C_DD1D)
    };
    let medians: Vec<f64> = (0..2000)
        .map(|_| {
            let sample = (0..d.len())
                .map(|_| d[(next() % d.len() as u64) as usize])
                .collect();
            crate::bench::median(sample)
        })
        .collect();
    (
        quantile(medians.clone(), 0.025).unwrap_or(f64::NAN),
        quantile(medians, 0.975).unwrap_or(f64::NAN),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_and_paired_intervals() {
        assert_eq!(quantile(vec![5.0, 1.0, 3.0, 2.0, 4.0], 0.0), Some(1.0));
        assert_eq!(quantile(vec![5.0, 1.0, 3.0, 2.0, 4.0], 0.5), Some(3.0));
        assert_eq!(quantile(vec![], 0.5), None);
        let a = [10.0, 12.0, 11.0, 13.0, 10.5, 12.5];
        let b = [9.0, 11.0, 10.0, 12.0, 9.5, 11.5];
        assert_eq!(paired_median(&a, &b), 1.0);
        // Every difference is 1: so is every resample's median.
        assert_eq!(paired_median_interval(&a, &b), (1.0, 1.0));
        let noisy = [11.0, 9.0, 12.0, 10.0, 13.0, 8.0];
        let (lo, hi) = paired_median_interval(&noisy, &b);
        assert!(lo < hi && lo >= -3.5 && hi <= 3.0, "{lo} {hi}");
    }
}
