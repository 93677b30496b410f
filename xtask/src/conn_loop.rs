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

use anyhow::{Context, Result};

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

/// `n` loopback connections made one after another in a thread of their own:
/// that thread's CPU ns per connection.
pub(crate) fn ns_per_connection(n: u32) -> Result<f64> {
    let r = std::thread::spawn(move || -> Result<f64> {
        pin_thread(0);
        own_netns_with_loopback()?;
        let l = TcpListener::bind("127.0.0.1:0").context("binding the loop's listener")?;
        let addr = l.local_addr()?;
        let mut b = [0u8; 64];
        let t0 = thread_cpu_ns();
        for _ in 0..n {
            let mut c = TcpStream::connect(addr).context("loop connect")?;
            let (mut s, _) = l.accept().context("loop accept")?;
            c.write_all(b"GET / HTTP/1.0\r\n\r\n")?;
            let _ = s.read(&mut b)?;
            s.write_all(b"HTTP/1.0 200 OK\r\n\r\nok\n")?;
            drop(s);
            while c.read(&mut b)? > 0 {}
        }
        Ok((thread_cpu_ns() - t0) as f64 / f64::from(n))
    })
    .join()
    .map_err(|_| anyhow::anyhow!("the connection loop panicked"))?;
    // The namespace and its TIME_WAIT sockets are torn down by a kernel worker:
    // let that finish before the next measurement.
    std::thread::sleep(std::time::Duration::from_millis(700));
    r
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
    crate::bench::median(a.iter().zip(b).map(|(x, y)| x - y).collect())
}
