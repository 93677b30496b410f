//! A generated store for `cargo xtask bench`: millions of plausible connection
//! rows, and the timed history queries the figure is about.
use std::path::Path;
use std::time::{Duration, Instant};

use super::query::{EndsQuery, Query};
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

/// Rows that go through the store's own insert path (indexes in place, the
/// writer's batch size): what [`Generated::insert_rows_per_s`] measures.
pub const INSERT_PATH_ROWS: u64 = if cfg!(test) { 6_000 } else { 500_000 };
/// Rows per transaction in the bulk phase.
const BULK_BATCH: usize = 1_000_000;

/// How a store was generated.
#[derive(Clone, Copy, Debug)]
pub struct Generated {
    /// Through the writer's path: batches of 16 384 rows, every index maintained.
    pub insert_rows_per_s: f64,
    pub insert_rows: u64,
}

/// Rows spread over the last `span`. Every 10 000th row goes to
/// [`MARK_IP`]:[`MARK_PORT`]. The first [`INSERT_PATH_ROWS`] go through the
/// store's insert path as the agent's writer does (timed); the rest are bulk
/// loaded (big transactions, the `conn` indexes dropped and rebuilt after), so
/// ten million rows take a minute, not a quarter of an hour. The schema and the
/// rows are the same either way.
pub fn generate(dir: &Path, rows: u64, span: Duration) -> Result<(Store, Generated), StoreError> {
    let (mut store, _) = Store::open(dir)?;
    let now = now_us();
    let span_us = span.as_micros() as i64;
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let ts_of = |i: u64| now - span_us + (span_us as i128 * i as i128 / rows.max(1) as i128) as i64;
    let insert_rows = rows.min(INSERT_PATH_ROWS);
    let batch_rows = super::writer::WriterOptions::default().max_batch;
    let mut batch = Vec::with_capacity(batch_rows);
    let t = Instant::now();
    for i in 0..insert_rows {
        batch.push(Row::Conn(row(&mut rng, i, ts_of(i))));
        if batch.len() == batch_rows {
            store.insert(&batch)?;
            batch.clear();
        }
    }
    store.insert(&batch)?;
    let generated = Generated {
        insert_rows_per_s: insert_rows as f64 / t.elapsed().as_secs_f64().max(1e-9),
        insert_rows,
    };
    if rows > insert_rows {
        let db = store.db();
        db.pragma_update(None, "synchronous", "OFF")?;
        db.pragma_update(None, "cache_size", -(256i64 << 10))?;
        let indexes: Vec<(String, String)> = {
            let mut st = db.prepare(
                "SELECT name, sql FROM sqlite_master WHERE type = 'index' AND tbl_name = 'conn' AND sql IS NOT NULL",
            )?;
            let v = st
                .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
                .collect::<Result<_, _>>()?;
            v
        };
        for (name, _) in &indexes {
            db.execute_batch(&format!("DROP INDEX \"{name}\""))?;
        }
        let mut batch = Vec::with_capacity(BULK_BATCH);
        for i in insert_rows..rows {
            batch.push(Row::Conn(row(&mut rng, i, ts_of(i))));
            if batch.len() == BULK_BATCH {
                store.insert(&batch)?;
                batch.clear();
            }
        }
        store.insert(&batch)?;
        let db = store.db();
        for (_, sql) in &indexes {
            db.execute_batch(sql)?;
        }
        db.pragma_update(None, "synchronous", "NORMAL")?;
    }
    store
        .db()
        .pragma_update(None, "wal_checkpoint", "TRUNCATE")?;
    Ok((store, generated))
}

/// What open connections cost the writer (`netta store-bench`).
#[derive(Clone, Copy, Debug)]
pub struct OpenCost {
    pub connections: u64,
    /// `connection-updated` rows per second, each rewriting its connection's row
    /// (after the first round, which inserts them).
    pub updates_per_s: f64,
    /// Ends per second that replace an open row (delete it, insert the end).
    pub ends_per_s: f64,
}

/// In a fresh store in `dir`: `connections` open connections updated `rounds`
/// times, then ended, in the writer's batch size.
pub fn open_cost(dir: &Path, connections: u64, rounds: u32) -> Result<OpenCost, StoreError> {
    let (mut store, _) = Store::open(dir)?;
    let batch_rows = super::writer::WriterOptions::default().max_batch;
    let mut rng = Rng(0x2545_f491_4f6c_dd1d);
    let now = now_us();
    let conns: Vec<ConnRow> = (0..connections)
        .map(|i| {
            let mut r = row(&mut rng, i, now);
            // Distinct sockets: one source port per connection, per address.
            r.src.set_port(1024 + (i % 60_000) as u16);
            r.src
                .set_ip(std::net::Ipv4Addr::from(0x0a00_0000 + (i / 60_000) as u32).into());
            r
        })
        .collect();
    let write = |store: &mut Store, rows: Vec<Row>| -> Result<f64, StoreError> {
        let t = Instant::now();
        for chunk in rows.chunks(batch_rows) {
            store.insert(chunk)?;
        }
        Ok(t.elapsed().as_secs_f64())
    };
    let mut update_s = 0.0;
    for round in 0..rounds.max(2) {
        let rows = conns
            .iter()
            .map(|c| {
                let mut u = c.clone();
                u.action = super::OPEN.into();
                u.ts_us = now + i64::from(round);
                u.bytes_sent = c.bytes_sent * u64::from(round + 1);
                Row::Conn(u)
            })
            .collect();
        let took = write(&mut store, rows)?;
        if round > 0 {
            update_s += took;
        }
    }
    let ends = conns.iter().cloned().map(Row::Conn).collect();
    let ends_s = write(&mut store, ends)?;
    let updated = connections as f64 * f64::from(rounds.max(2) - 1);
    Ok(OpenCost {
        connections,
        updates_per_s: updated / update_s.max(1e-9),
        ends_per_s: connections as f64 / ends_s.max(1e-9),
    })
}

/// Row `i` of the generated history, ending at `ts`.
fn row(rng: &mut Rng, i: u64, ts: i64) -> ConnRow {
    use std::net::{IpAddr, Ipv4Addr, SocketAddr};
    let mark = i % 10_000 == 5_000;
    let dst_ip = if mark {
        MARK_IP.parse().expect("the marker is an address")
    } else {
        let [a, b, c] = [8, 256, 256].map(|n| rng.below(n) as u8);
        IpAddr::V4(Ipv4Addr::new(10, a, b, c))
    };
    let dport = if mark {
        MARK_PORT
    } else if rng.below(4) == 0 {
        1024 + rng.below(60_000) as u16
    } else {
        PORTS[rng.below(PORTS.len() as u64) as usize]
    };
    let comm = COMMS[rng.below(COMMS.len() as u64) as usize];
    ConnRow {
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
        src: SocketAddr::new(
            IpAddr::V4(Ipv4Addr::new(192, 168, 1, 10)),
            32_768 + rng.below(28_000) as u16,
        ),
        dst: SocketAddr::new(dst_ip, dport),
        pid: 1000 + rng.below(30_000) as u32,
        netns: 0,
        who: crate::core::event::Who {
            uid: Some(rng.below(3) as u32 * 1000),
            ..Default::default()
        },
        comm: Comm::from_bytes(comm.as_bytes()),
        owner: "hook".into(),
        bytes_sent: rng.below(100_000),
        bytes_recv: rng.below(1_000_000),
        packets: 0,
        partial: false,
        domain: None,
    }
}

/// The timed queries: what a sysadmin asks of a week of history.
pub fn queries() -> Vec<(&'static str, Query)> {
    let ago = |s: i64| Some(now_us() - s * 1_000_000);
    vec![
        (
            "--dst 203.0.113.7 (all time)",
            Query {
                ends: EndsQuery {
                    dst: Some(MARK_IP.into()),
                    ..Default::default()
                },
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
                ends: EndsQuery {
                    dport: Some(22),
                    ..Default::default()
                },
                since_us: ago(600),
                ..Default::default()
            },
        ),
        (
            "--since 1h --process curl --limit 100",
            Query {
                since_us: ago(3600),
                owner: crate::core::owner_filter::OwnerFilter {
                    process: Some("curl".into()),
                    ..Default::default()
                },
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
        // Past the insert-path rows, so the bulk phase runs too.
        let (s, g) = generate(dir.path(), 30_000, Duration::from_secs(7 * 86_400)).unwrap();
        assert_eq!(g.insert_rows, INSERT_PATH_ROWS);
        let r = s.reader().unwrap();
        assert_eq!(Query::default().count(&r).unwrap(), 30_000);
        let indexes = |r: &Reader| -> Vec<String> {
            let mut st =
                r.db.prepare("SELECT sql FROM sqlite_master WHERE type = 'index' AND tbl_name = 'conn' ORDER BY name")
                    .unwrap();
            let v = st.query_map([], |x| x.get(0)).unwrap();
            v.map(Result::unwrap).collect()
        };
        let fresh = tempfile::tempdir().unwrap();
        let (f, _) = Store::open(fresh.path()).unwrap();
        let want = indexes(&f.reader().unwrap());
        assert!(!want.is_empty());
        assert_eq!(indexes(&r), want, "the bulk phase rebuilt every index");
        let got = time_queries(&r, 1).unwrap();
        assert_eq!(got[0].2, 3, "three marked rows");
        assert!(got[1].2 <= 3);
        assert!(got[3].2 > 0 && got[3].2 <= 100);
    }

    #[test]
    fn the_open_rows_bench_leaves_one_ended_row_per_connection() {
        let dir = tempfile::tempdir().unwrap();
        let c = open_cost(dir.path(), 70_000, 2).unwrap();
        assert!(c.updates_per_s > 0.0 && c.ends_per_s > 0.0);
        let r = Reader::open(&Store::path_in(dir.path())).unwrap();
        let all = Query {
            limit: Some(u64::MAX >> 1),
            ..Default::default()
        };
        assert_eq!(all.count(&r).unwrap(), 70_000);
        let open = Query {
            action: Some("open".into()),
            ..Default::default()
        };
        assert_eq!(open.count(&r).unwrap(), 0);
    }
}
