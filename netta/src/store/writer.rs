//! The store's writer: one thread that takes agent records from a bounded tap
//! (a full tap drops and counts, so the ring reader never waits on SQLite),
//! writes them in batched transactions at least every `batch_interval`, and
//! prunes between batches. A full disk or a failing write drops the batch,
//! counts its rows, and tracing goes on.
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::mpsc;

use super::baseline;
use super::retention::{self, Retention};
use super::row::{now_us, Row};
use super::Store;
use crate::agent::Record;
use crate::core::clock::Clock;

/// How often the writer compares the store's size with its limit.
const SIZE_CHECK: Duration = Duration::from_secs(1);

#[derive(Clone, Copy, Debug)]
pub struct WriterOptions {
    /// Longest a row waits before it is committed: what a `kill -9` can lose.
    pub batch_interval: Duration,
    pub max_batch: usize,
    pub retention: Retention,
    pub prune_every: Duration,
    /// Learn `new-destination` baseline rows from outbound connections.
    pub baseline: Option<crate::detect::rules::NewDestination>,
    /// How long after start an open row an earlier run left may wait for an
    /// update of this run; after that its connection is taken as ended
    /// ([`super::open::OpenRows::finish_carried`]). Two update intervals.
    pub open_grace: Duration,
}

impl Default for WriterOptions {
    fn default() -> Self {
        WriterOptions {
            batch_interval: Duration::from_millis(250),
            max_batch: 16_384,
            retention: Retention::default(),
            prune_every: retention::DEFAULT_PRUNE_EVERY,
            baseline: None,
            open_grace: Duration::from_secs(65),
        }
    }
}

/// Counters the API and metrics report.
#[derive(Debug, Default)]
pub struct StoreStats {
    pub rows_written: AtomicU64,
    /// Rows lost to a full disk or a failing write.
    pub rows_dropped: AtomicU64,
    pub rows_pruned: AtomicU64,
    pub commits: AtomicU64,
    /// Bytes of live pages, as retention counts them (checked about once a second).
    pub used_bytes: AtomicU64,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct StatsValue {
    pub rows_written: u64,
    pub rows_dropped: u64,
    pub rows_pruned: u64,
    pub commits: u64,
    #[serde(default)]
    pub used_bytes: u64,
}

impl StoreStats {
    pub fn value(&self) -> StatsValue {
        StatsValue {
            rows_written: self.rows_written.load(Ordering::Relaxed),
            rows_dropped: self.rows_dropped.load(Ordering::Relaxed),
            rows_pruned: self.rows_pruned.load(Ordering::Relaxed),
            commits: self.commits.load(Ordering::Relaxed),
            used_bytes: self.used_bytes.load(Ordering::Relaxed),
        }
    }
}

pub struct Writer {
    stats: Arc<StoreStats>,
    stop: Arc<AtomicBool>,
    reset_baseline: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Writer {
    pub fn spawn(
        store: Store,
        rx: mpsc::Receiver<Record>,
        clock: Clock,
        opts: WriterOptions,
    ) -> std::io::Result<Writer> {
        let stats = Arc::new(StoreStats::default());
        let stop = Arc::new(AtomicBool::new(false));
        let reset_baseline = Arc::new(AtomicBool::new(false));
        let flags = Flags {
            stop: stop.clone(),
            reset_baseline: reset_baseline.clone(),
        };
        let s = stats.clone();
        let thread = std::thread::Builder::new()
            .name("netta-store".into())
            .spawn(move || run(store, rx, clock, opts, &s, &flags))?;
        Ok(Writer {
            stats,
            stop,
            reset_baseline,
            thread: Some(thread),
        })
    }

    /// Set to ask the writer to forget the baseline; it clears the flag when done.
    pub fn baseline_reset_flag(&self) -> Arc<AtomicBool> {
        self.reset_baseline.clone()
    }

    pub fn stats(&self) -> Arc<StoreStats> {
        self.stats.clone()
    }

    /// Writes what is queued, then stops.
    pub fn stop(mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

struct Failing {
    since_dropped: u64,
}

fn commit(
    store: &mut Store,
    batch: &mut Vec<Row>,
    stats: &StoreStats,
    failing: &mut Option<Failing>,
) {
    if batch.is_empty() {
        return;
    }
    let n = batch.len() as u64;
    match store.insert(batch) {
        Ok(()) => {
            stats.rows_written.fetch_add(n, Ordering::Relaxed);
            stats.commits.fetch_add(1, Ordering::Relaxed);
            if let Some(f) = failing.take() {
                eprintln!(
                    "netta: history store: writing again ({} rows were dropped)",
                    f.since_dropped
                );
            }
        }
        Err(e) => {
            stats.rows_dropped.fetch_add(n, Ordering::Relaxed);
            match failing {
                Some(f) => f.since_dropped += n,
                None => {
                    let why = if e.sqlite_error_code() == Some(rusqlite::ErrorCode::DiskFull) {
                        "the disk is full".to_string()
                    } else {
                        e.to_string()
                    };
                    eprintln!(
                        "netta: history store: {why}; dropping history rows (counted) until it can write"
                    );
                    *failing = Some(Failing { since_dropped: n });
                }
            }
        }
    }
    batch.clear();
}

struct Flags {
    stop: Arc<AtomicBool>,
    reset_baseline: Arc<AtomicBool>,
}

fn run(
    mut store: Store,
    mut rx: mpsc::Receiver<Record>,
    clock: Clock,
    opts: WriterOptions,
    stats: &StoreStats,
    flags: &Flags,
) {
    let stop = &flags.stop;
    let mut seen = baseline::Pending::default();
    let mut batch: Vec<Row> = Vec::with_capacity(opts.max_batch);
    let mut oldest: Option<Instant> = None;
    let mut failing = None;
    let mut next_prune = Instant::now();
    let mut next_size_check = Instant::now();
    let mut pruning = false;
    let carried_until = Instant::now() + opts.open_grace;
    let mut carried = true;
    loop {
        let stopping = stop.load(Ordering::Relaxed);
        let mut closed = false;
        let mut got = 0usize;
        while batch.len() < opts.max_batch {
            match rx.try_recv() {
                Ok(rec) => {
                    got += 1;
                    if let (Some(cfg), Record::Event(ev)) = (&opts.baseline, &rec) {
                        if let Some(d) = crate::detect::new_destination::dest_of(cfg, ev) {
                            baseline::note(&mut seen, d, super::row::wall_us(&clock, ev.ts_ns));
                            oldest.get_or_insert_with(Instant::now);
                        }
                    }
                    if let Some(row) = Row::from_record(&rec, &clock) {
                        batch.push(row);
                        oldest.get_or_insert_with(Instant::now);
                    }
                }
                Err(mpsc::error::TryRecvError::Empty) => break,
                Err(mpsc::error::TryRecvError::Disconnected) => {
                    closed = true;
                    break;
                }
            }
        }
        let due = oldest.is_some_and(|t| t.elapsed() >= opts.batch_interval);
        if flags.reset_baseline.load(Ordering::Acquire) {
            seen.clear();
            if let Err(e) = baseline::reset(store.db(), now_us()) {
                log::warn!("history store: resetting the baseline failed: {e}");
            }
            flags.reset_baseline.store(false, Ordering::Release);
        }
        if batch.len() >= opts.max_batch || due || closed || (stopping && got == 0) {
            commit(&mut store, &mut batch, stats, &mut failing);
            if let Err(e) = baseline::upsert(store.db(), &seen) {
                // A full disk: the destinations are relearned (and not alerted on) next time.
                log::warn!("history store: baseline not saved: {e}");
            }
            seen.clear();
            oldest = None;
        }
        if closed || (stopping && got == 0) {
            break;
        }
        if carried && Instant::now() >= carried_until {
            carried = false;
            match store.finish_carried() {
                Ok(0) => {}
                Ok(n) => log::info!(
                    "history store: {n} connections left open by the last run ended meanwhile"
                ),
                Err(e) => log::warn!("history store: ending the last run's open rows failed: {e}"),
            }
        }
        if Instant::now() >= next_prune {
            pruning = true;
            next_prune = Instant::now() + opts.prune_every;
        }
        // Over the size limit: prune now, not at the next round.
        if Instant::now() >= next_size_check {
            next_size_check = Instant::now() + SIZE_CHECK;
            if let Ok(used) = retention::used_bytes(store.db()) {
                stats.used_bytes.store(used, Ordering::Relaxed);
                pruning |= used > opts.retention.max_bytes;
            }
        }
        if pruning {
            match retention::prune_step(store.db(), &opts.retention, now_us()) {
                Ok(0) => {
                    pruning = false;
                    let _ = retention::release(store.db());
                }
                Ok(n) => {
                    stats.rows_pruned.fetch_add(n, Ordering::Relaxed);
                }
                Err(e) => {
                    pruning = false;
                    log::warn!("history store: pruning failed: {e}");
                }
            }
        }
        if got == 0 && !pruning {
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::event::{Action, ConnEvent, Direction};
    use crate::core::sanitize::Comm;
    use crate::store::query::Query;

    /// A new store in a temporary state dir (kept while the dir lives), and a reader.
    fn fresh_store() -> (tempfile::TempDir, Store, crate::store::Reader) {
        let dir = tempfile::tempdir().unwrap();
        let (store, _) = Store::open(dir.path()).unwrap();
        let reader = store.reader().unwrap();
        (dir, store, reader)
    }

    fn closed(port: u16) -> Record {
        let mut e = ConnEvent::lost(1_000_000_000, 0);
        e.action = Action::Closed;
        e.direction = Direction::Egress;
        e.local = format!("127.0.0.1:{port}").parse().unwrap();
        e.remote = "127.0.0.1:80".parse().unwrap();
        e.pid = std::process::id();
        e.comm = Comm::from_bytes(b"tester");
        e.who.uid = Some(1234);
        Record::Event(e)
    }

    #[test]
    fn writes_batches_within_the_interval_and_skips_other_events() {
        let (_dir, store, reader) = fresh_store();
        let (tx, rx) = mpsc::channel(1024);
        let w = Writer::spawn(store, rx, Clock::new(), WriterOptions::default()).unwrap();
        for p in 0..100 {
            tx.try_send(closed(10_000 + p)).unwrap();
            let mut opened = ConnEvent::lost(1, 0);
            opened.action = Action::Opened;
            tx.try_send(Record::Event(opened)).unwrap();
        }
        // Committed without stopping: a kill -9 now would keep them.
        let t0 = Instant::now();
        while Query::default().count(&reader).unwrap() < 100 {
            assert!(t0.elapsed() < Duration::from_secs(10), "rows not committed");
            std::thread::sleep(Duration::from_millis(20));
        }
        let rows = Query::default().run(&reader).unwrap();
        assert_eq!(rows.len(), 100);
        assert_eq!(rows[0].who.uid, Some(1234), "the record's user");
        let stats = w.stats();
        w.stop();
        assert_eq!(stats.value().rows_written, 100);
        assert_eq!(stats.value().rows_dropped, 0);
    }

    #[test]
    fn stop_writes_everything_queued() {
        let (_dir, store, reader) = fresh_store();
        let (tx, rx) = mpsc::channel(50_000);
        let opts = WriterOptions {
            batch_interval: Duration::from_secs(3600),
            max_batch: 1000,
            ..Default::default()
        };
        for p in 0..40_000u32 {
            tx.try_send(closed((p % 60_000) as u16)).unwrap();
        }
        let w = Writer::spawn(store, rx, Clock::new(), opts).unwrap();
        w.stop();
        assert_eq!(Query::default().count(&reader).unwrap(), 40_000);
    }
}
