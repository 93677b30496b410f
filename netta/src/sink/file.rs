//! The file sink: append-only, reopened on SIGHUP.
use super::lines::{stop_requested, take_ready, Lines};
use super::*;
use bytes::Bytes;
use std::io::{self, IoSlice, Write};
use std::path::Path;
use std::sync::atomic::Ordering;
use tokio::signal::unix::{signal, Signal, SignalKind};
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

pub(super) fn open_append(path: &Path) -> io::Result<std::fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .append(true)
        .create(true)
        .mode(0o600)
        .open(path)
}

/// Most buffers handed to one `writev` (the kernel takes up to 1024).
const MAX_IOV: usize = 512;

/// Writes all of `bufs` in order, a `writev` for many batches at once, or as much
/// as it can before an error: (bytes written, error).
pub(super) fn write_counting(mut f: &std::fs::File, bufs: &[Bytes]) -> (usize, Option<io::Error>) {
    let total: usize = bufs.iter().map(|b| b.len()).sum();
    let mut done = 0;
    while done < total {
        let mut skip = done;
        let slices: Vec<IoSlice<'_>> = bufs
            .iter()
            .filter_map(|b| {
                if skip >= b.len() {
                    skip -= b.len();
                    return None;
                }
                let s = IoSlice::new(&b[skip..]);
                skip = 0;
                Some(s)
            })
            .take(MAX_IOV)
            .collect();
        match f.write_vectored(&slices) {
            Ok(0) => return (done, Some(io::ErrorKind::WriteZero.into())),
            Ok(n) => done += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return (done, Some(e)),
        }
    }
    (done, None)
}

/// The open file, or why it is not open.
pub(super) struct FileOut<'a> {
    pub(super) path: &'a Path,
    pub(super) file: Option<std::fs::File>,
    /// An open error was already logged in this episode.
    pub(super) failing: bool,
    pub(super) backoff: Backoff,
    pub(super) retry_at: Instant,
}

impl FileOut<'_> {
    pub(super) fn open(&mut self, stats: &SinkStats, reopen: bool) -> bool {
        match open_append(self.path) {
            Ok(f) => {
                self.file = Some(f);
                stats.set_connected(true);
                if reopen {
                    stats.reconnects.fetch_add(1, Ordering::Relaxed);
                }
                if self.failing {
                    log::info!("sink {}: reopened", self.path.display());
                }
                self.failing = false;
                self.backoff.reset();
                true
            }
            Err(e) => {
                self.fail(stats, &format!("cannot reopen: {e}"));
                false
            }
        }
    }

    pub(super) fn fail(&mut self, stats: &SinkStats, why: &str) {
        self.file = None;
        stats.set_connected(false);
        if !self.failing {
            log::warn!(
                "sink {}: {why}; buffering and retrying",
                self.path.display()
            );
            self.failing = true;
        } else {
            log::debug!("sink {}: {why}", self.path.display());
        }
        self.retry_at = Instant::now() + self.backoff.delay();
    }

    /// Writes what is queued, the shared batches as they are (one `writev` for
    /// all of them); on trouble keeps it queued and schedules a retry. The write
    /// blocks: the file sinks run on a thread of their own ([`super::spawn_files`]).
    pub(super) fn flush(&mut self, lines: &mut Lines<'_>) {
        if self.file.is_none() && !self.open(lines.stats, true) {
            return;
        }
        while !lines.backlog.is_idle() {
            let Some(f) = self.file.as_ref() else { return };
            let bufs = lines.pending(CHUNK_BYTES);
            let (n, err) = write_counting(f, &bufs);
            lines.consume(n);
            if let Some(e) = err {
                lines.rewind();
                self.fail(lines.stats, &format!("write failed: {e}"));
                return;
            }
        }
    }
}

pub(super) async fn hangup(sig: &mut Option<Signal>) {
    match sig {
        Some(s) => {
            if s.recv().await.is_none() {
                *sig = None;
            }
        }
        None => std::future::pending().await,
    }
}

/// One file of a group: where its lines go and the lines waiting.
struct Member<'a> {
    out: FileOut<'a>,
    lines: Lines<'a>,
}

impl Member<'_> {
    fn flush(&mut self) {
        self.out.flush(&mut self.lines);
        if self.out.file.is_some() {
            self.lines.warned_full = false;
        }
    }
}

/// One file sink's destination and counters.
pub(super) struct FileSpec {
    pub(super) path: std::path::PathBuf,
    pub(super) label: String,
    pub(super) stats: std::sync::Arc<SinkStats>,
}

/// Writes the batches from `rx` to every file of `files`, each with its own
/// backlog, retry and reopening, on one thread: a second file costs a `writev`
/// per batch, not a second thread's wake-ups. Opening a file at start is an error.
pub(super) async fn run_files(
    files: &[FileSpec],
    mut rx: mpsc::Receiver<Chunk>,
    clock: Clock,
    mut shutdown: watch::Receiver<bool>,
) -> io::Result<()> {
    // The handler goes in before anything else: once a file is open, a HUP means
    // "reopen", never the default "terminate".
    let mut hup = match signal(SignalKind::hangup()) {
        Ok(s) => Some(s),
        Err(e) => {
            log::warn!(
                "file sinks: cannot watch SIGHUP ({e}); they will not be reopened after rotation"
            );
            None
        }
    };
    let mut members = Vec::with_capacity(files.len());
    for f in files {
        let file = open_append(&f.path)
            .map_err(|e| io::Error::new(e.kind(), format!("opening {}: {e}", f.path.display())))?;
        f.stats.set_connected(true);
        members.push(Member {
            out: FileOut {
                path: &f.path,
                file: Some(file),
                failing: false,
                backoff: Backoff::new(),
                retry_at: Instant::now(),
            },
            lines: Lines {
                backlog: Backlog::new(BUFFER_LINES, BUFFER_BYTES),
                clock: clock.clone(),
                stats: &f.stats,
                label: &f.label,
                warned_full: false,
            },
        });
    }
    let mut got: Vec<Chunk> = Vec::new();
    loop {
        let retry_at = members
            .iter()
            .filter(|m| !m.lines.backlog.is_idle())
            .map(|m| m.out.retry_at)
            .min();
        tokio::select! {
            biased;
            _ = stop_requested(&mut shutdown) => break,
            _ = hangup(&mut hup) => {
                for m in &mut members {
                    log::info!("sink {}: SIGHUP, reopening", m.out.path.display());
                    m.out.file = None;
                    if m.out.open(m.lines.stats, true) {
                        m.lines.warned_full = false;
                    }
                    m.flush();
                }
            }
            r = rx.recv() => {
                let Some(first) = r else { break };
                take_ready(first, &mut rx, |c| got.push(c));
                for m in &mut members {
                    for c in &got {
                        m.lines.push(c.clone());
                    }
                    m.flush();
                }
                got.clear();
            }
            _ = tokio::time::sleep_until(retry_at.unwrap_or_else(Instant::now)), if retry_at.is_some() => {
                let now = Instant::now();
                for m in members.iter_mut().filter(|m| !m.lines.backlog.is_idle() && m.out.retry_at <= now) {
                    m.flush();
                }
            }
        }
    }
    got.extend(std::iter::from_fn(|| rx.try_recv().ok()));
    for m in &mut members {
        for c in &got {
            m.lines.push(c.clone());
        }
        if !m.lines.backlog.is_idle() {
            m.out.flush(&mut m.lines);
        }
        m.lines.give_up();
    }
    Ok(())
}
