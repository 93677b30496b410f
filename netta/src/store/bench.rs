//! A generated store for `cargo xtask bench`: millions of plausible connection
//! rows, and the timed history queries the figure is about.
use std::path::Path;
use std::time::{Duration, Instant};

use super::query::Query;
use super::row::{now_us, ConnRow, Row};
use super::{Reader, Store, StoreError};
use crate::core::sanitize::Comm;

/// xorshift64*: deterministic, no dependency, good enough for test data.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

const COMMS: [&str; 8] = [
    "curl",
    "nginx",
    "sshd",
    "postgres",
    "python3",
    "apt",
    "systemd-resolve",
    "node",
];
const PORTS: [u16; 8] = [443, 80, 53, 22, 5432, 8080, 123, 6379];

/// The marker every query below looks for: one host and port that a few rows use.
pub const MARK_IP: &str = "203.0.113.7";
pub const MARK_PORT: u16 = 41_999;

/// Rows spread over the last `span`, written in batches through the store's
/// own insert path. Every 10 000th row goes to [`MARK_IP`]:[`MARK_PORT`].
pub fn generate(dir: &Path, rows: u64, span: Duration) -> Result<Store, StoreError> {
    let (mut store, _) = Store::open(dir)?;
    let now = now_us();
    let span_us = span.as_micros() as i64;
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let mut batch = Vec::with_capacity(50_000);
    for i in 0..rows {
        let ts = now - span_us + (span_us as i128 * i as i128 / rows.max(1) as i128) as i64;
        let mark = i % 10_000 == 5_000;
        let dst_ip = if mark {
            MARK_IP.to_string()
        } else {
            format!("10.{}.{}.{}", rng.below(8), rng.below(256), rng.below(256))
        };
        let dport = if mark {
            MARK_PORT
        } else if rng.below(4) == 0 {
            1024 + rng.below(60_000) as u16
        } else {
            PORTS[rng.below(PORTS.len() as u64) as usize]
        };
        let comm = COMMS[rng.below(COMMS.len() as u64) as usize];
        batch.push(Row::Conn(ConnRow {
            ts_us: ts,
            start_us: Some(ts - rng.below(5_000_000) as i64),
            action: if rng.below(50) == 0 {
                "failed"
            } else {
                "closed"
            }
            .into(),
            proto: "tcp".into(),
            direction: "egress".into(),
            src: format!("192.168.1.10:{}", 32_768 + rng.below(28_000))
                .parse()
                .expect("addr"),
            dst: format!("{dst_ip}:{dport}").parse().expect("addr"),
            pid: 1000 + rng.below(30_000) as u32,
            uid: Some(rng.below(3) as u32 * 1000),
            comm: Comm::from_bytes(comm.as_bytes()),
            owner: "hook".into(),
            bytes_sent: rng.below(100_000),
            bytes_recv: rng.below(1_000_000),
            packets: 0,
            partial: false,
            domain: None,
        }));
        if batch.len() == batch.capacity() {
            store.insert(&batch)?;
            batch.clear();
        }
    }
    store.insert(&batch)?;
    store
        .db()
        .pragma_update(None, "wal_checkpoint", "TRUNCATE")?;
    Ok(store)
}

/// The timed queries: what a sysadmin asks of a week of history.
pub fn queries() -> Vec<(&'static str, Query)> {
    let ago = |s: i64| Some(now_us() - s * 1_000_000);
    vec![
        (
            "--dst 203.0.113.7 (all time)",
            Query {
                dst: Some(MARK_IP.into()),
                ..Default::default()
            },
        ),
        (
            "--port 41999 --since 24h",
            Query {
                port: Some(MARK_PORT),
                since_us: ago(86_400),
                ..Default::default()
            },
        ),
        (
            "--dport 22 --since 10m",
            Query {
                dport: Some(22),
                since_us: ago(600),
                ..Default::default()
            },
        ),
        (
            "--since 1h --process curl --limit 100",
            Query {
                since_us: ago(3600),
                process: Some("curl".into()),
                limit: Some(100),
                ..Default::default()
            },
        ),
    ]
}

/// Median wall time of `runs` runs of each query, with the rows it returned.
pub fn time_queries(
    r: &Reader,
    runs: usize,
) -> Result<Vec<(String, f64, usize)>, super::query::RunError> {
    let mut out = Vec::new();
    for (name, q) in queries() {
        let mut times = Vec::new();
        let mut n = 0;
        for _ in 0..runs.max(1) {
            let t = Instant::now();
            n = q.run(r)?.len();
            times.push(t.elapsed().as_secs_f64() * 1e3);
        }
        times.sort_by(f64::total_cmp);
        out.push((name.to_string(), times[times.len() / 2], n));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_generated_store_answers_the_bench_queries() {
        let dir = tempfile::tempdir().unwrap();
        let s = generate(dir.path(), 30_000, Duration::from_secs(7 * 86_400)).unwrap();
        let r = s.reader().unwrap();
        let got = time_queries(&r, 1).unwrap();
        assert_eq!(got[0].2, 3, "three marked rows");
        assert!(got[1].2 <= 3);
        assert!(got[3].2 > 0 && got[3].2 <= 100);
    }
}
