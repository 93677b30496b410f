//! An open-loop load generator at a fixed rate, for the latency a tracer adds
//! (Coroot's method): each request is one new TCP connection with one HTTP
//! request, scheduled at `start + i / rate`, and its latency counts from that
//! scheduled time, not from when it was sent, so a stall makes every request
//! behind it late instead of hiding them (no coordinated omission).
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use anyhow::{bail, Result};

/// Latencies of one run, sorted, and how many requests failed.
pub struct Run {
    pub latencies: Vec<Duration>,
    pub failed: u64,
}

impl Run {
    /// The q-quantile (0..=1) of the latencies.
    pub fn quantile(&self, q: f64) -> Duration {
        if self.latencies.is_empty() {
            return Duration::ZERO;
        }
        let i = ((self.latencies.len() - 1) as f64 * q).round() as usize;
        self.latencies[i]
    }
}

/// `rate` requests per second for `seconds` against `to`, spread over `threads`
/// senders (request i goes to thread i % threads).
pub fn run(to: SocketAddr, rate: u32, seconds: u32, threads: usize) -> Result<Run> {
    if rate == 0 || threads == 0 {
        bail!("rate and threads must be positive");
    }
    let total = u64::from(rate) * u64::from(seconds);
    let start = Instant::now() + Duration::from_millis(50);
    let per_request = Duration::from_secs(1).as_nanos() as f64 / f64::from(rate);
    let handles: Vec<_> = (0..threads)
        .map(|t| {
            std::thread::spawn(move || {
                let mut lat = Vec::with_capacity((total / threads as u64 + 1) as usize);
                let mut failed = 0u64;
                let mut i = t as u64;
                while i < total {
                    let due = start + Duration::from_nanos((i as f64 * per_request) as u64);
                    if let Some(wait) = due.checked_duration_since(Instant::now()) {
                        std::thread::sleep(wait);
                    }
                    if request(to).is_ok() {
                        lat.push(due.elapsed());
                    } else {
                        failed += 1;
                    }
                    i += threads as u64;
                }
                (lat, failed)
            })
        })
        .collect();
    let mut latencies = Vec::with_capacity(total as usize);
    let mut failed = 0;
    for h in handles {
        let (l, f) = h.join().map_err(|_| anyhow::anyhow!("a sender panicked"))?;
        latencies.extend(l);
        failed += f;
    }
    latencies.sort_unstable();
    Ok(Run { latencies, failed })
}

fn request(to: SocketAddr) -> std::io::Result<()> {
    let mut s = TcpStream::connect_timeout(&to, Duration::from_secs(2))?;
    s.set_read_timeout(Some(Duration::from_secs(2)))?;
    s.write_all(b"GET / HTTP/1.0\r\nHost: bench\r\n\r\n")?;
    let mut buf = [0u8; 512];
    let mut got = 0;
    loop {
        match s.read(&mut buf)? {
            0 => break,
            n => got += n,
        }
    }
    if got == 0 {
        return Err(std::io::Error::other("empty reply"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_of_sorted_latencies() {
        let r = Run {
            latencies: (1..=100).map(Duration::from_millis).collect(),
            failed: 0,
        };
        assert_eq!(r.quantile(0.5), Duration::from_millis(51));
        assert_eq!(r.quantile(0.99), Duration::from_millis(99));
        assert_eq!(r.quantile(1.0), Duration::from_millis(100));
    }

    #[test]
    fn requests_go_out_at_the_rate_and_are_timed_from_their_schedule() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let to = l.local_addr().unwrap();
        std::thread::spawn(move || {
            for s in l.incoming() {
                let Ok(mut s) = s else { break };
                let mut b = [0u8; 256];
                let _ = s.read(&mut b);
                let _ = s.write_all(b"HTTP/1.0 200 OK\r\n\r\nok\n");
            }
        });
        let t = Instant::now();
        let r = run(to, 200, 1, 2).unwrap();
        assert_eq!(r.latencies.len(), 200);
        assert_eq!(r.failed, 0);
        // Open loop: 200 requests at 200/s take about a second, not as fast as possible.
        assert!(
            t.elapsed() >= Duration::from_millis(950),
            "{:?}",
            t.elapsed()
        );
        assert!(r.quantile(0.5) < Duration::from_millis(500));
    }
}
