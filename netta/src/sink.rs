//! Where JSON lines go: stdout, an append-only file, or a stream socket for a log
//! pipeline (Vector's `socket` source, Fluent Bit's `tcp` input and Logstash's
//! `json_lines` codec all read newline-delimited JSON over TCP or a Unix socket).
//!
//! Sinks consume lines serialised once for all of them ([`fan_out`], fed by one
//! tap, [`crate::agent::Shared::subscribe`]): a sink whose channel is full misses
//! lines (and is told how many), so a slow or absent destination never blocks
//! the kernel reader or the other sinks. Sockets reconnect with exponential
//! backoff; while disconnected the newest lines wait in a bounded buffer
//! ([`BUFFER_LINES`], [`BUFFER_BYTES`]), the oldest are dropped, and the first line
//! on the new connection is an `events-lost` record saying how many.
//! A file is opened append-only (mode 0600 when created) and reopened by path on
//! SIGHUP, as logrotate expects after it renames the file.
use std::collections::VecDeque;
use std::fmt;
use std::future::Future;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncWriteExt, Interest, Ready};
use tokio::net::{TcpStream, UnixStream};
use tokio::signal::unix::{signal, Signal, SignalKind};
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

use crate::agent::Record;
use crate::clock::{mono_now, Clock};
use crate::event::ConnEvent;
use crate::export::json;

/// Most lines kept while a socket or file is unavailable; beyond it the oldest go.
pub const BUFFER_LINES: usize = 65_536;
/// Most bytes kept while a socket or file is unavailable; beyond it the oldest go.
pub const BUFFER_BYTES: usize = 8 << 20;
/// Lines are serialised in batches of about this size per wake-up.
const BATCH_BYTES: usize = 64 << 10;
/// Largest single write.
const CHUNK_BYTES: usize = 256 << 10;
/// Bytes written to a socket per wake-up before the channel gets a turn.
const WRITE_BUDGET: usize = 1 << 20;
const BACKOFF_MIN: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(10);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long the final flush may take at shutdown (connect included).
const FINAL_FLUSH: Duration = Duration::from_secs(1);

/// A destination for JSON lines, as given on the command line.
#[derive(Clone, Debug, PartialEq)]
pub enum SinkSpec {
    /// `-` or `stdout`.
    Stdout,
    /// `file:PATH`, or a path starting with `/` or `.`.
    File(PathBuf),
    /// `tcp://HOST:PORT` or `tcp:HOST:PORT` (IPv6 in brackets: `tcp://[::1]:9000`).
    Tcp(String),
    /// `unix:PATH` or `unix://PATH`: a stream socket.
    Unix(PathBuf),
    /// `http://HOST:PORT/PATH[#OPTIONS]`: NDJSON batches POSTed to a collector
    /// (see [`crate::sink_http`]).
    Http(crate::sink_http::HttpSpec, crate::sink_http::HttpOptions),
}

/// Why a sink specification was not understood.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ParseSinkError(String);

const SINK_FORMS: &str = "expected -, stdout, file:PATH, a path starting with / or ., \
                          tcp://HOST:PORT, unix:PATH or http://HOST:PORT/PATH";

fn check_host_port(spec: &str, addr: &str) -> Result<(), ParseSinkError> {
    let bad = |why: &str| ParseSinkError(format!("invalid sink {spec:?}: {why}"));
    let (host, port) = addr
        .rsplit_once(':')
        .ok_or_else(|| bad("expected HOST:PORT"))?;
    if host.is_empty() {
        return Err(bad("missing host"));
    }
    if let Some(inner) = host.strip_prefix('[') {
        let ip = inner
            .strip_suffix(']')
            .ok_or_else(|| bad("unclosed [ in the host"))?;
        ip.parse::<std::net::Ipv6Addr>()
            .map_err(|_| bad("not an IPv6 address between [ and ]"))?;
    } else if host.contains(':') {
        return Err(bad("IPv6 addresses need brackets, as in tcp://[::1]:9000"));
    } else if host.contains(|c: char| c == '/' || c == '[' || c == ']' || c.is_whitespace()) {
        return Err(bad("invalid host"));
    }
    match port.parse::<u16>() {
        Ok(0) | Err(_) => Err(bad("the port must be a number from 1 to 65535")),
        Ok(_) => Ok(()),
    }
}

impl FromStr for SinkSpec {
    type Err = ParseSinkError;

    fn from_str(s: &str) -> Result<SinkSpec, ParseSinkError> {
        let path = |p: &str, form: &str| {
            if p.is_empty() {
                Err(ParseSinkError(format!(
                    "invalid sink {s:?}: missing path after {form}"
                )))
            } else {
                Ok(PathBuf::from(p))
            }
        };
        if s == "-" || s == "stdout" {
            Ok(SinkSpec::Stdout)
        } else if let Some(p) = s.strip_prefix("file:") {
            path(p, "file:").map(SinkSpec::File)
        } else if s.starts_with('/') || s.starts_with('.') {
            Ok(SinkSpec::File(PathBuf::from(s)))
        } else if let Some(a) = s.strip_prefix("tcp://").or_else(|| s.strip_prefix("tcp:")) {
            check_host_port(s, a)?;
            Ok(SinkSpec::Tcp(a.to_string()))
        } else if s.starts_with("http://") || s.starts_with("https://") {
            crate::sink_http::parse_sink(s)
                .map(|(spec, opts)| SinkSpec::Http(spec, opts))
                .map_err(ParseSinkError)
        } else if let Some(p) = s.strip_prefix("unix://") {
            path(p, "unix://").map(SinkSpec::Unix)
        } else if let Some(p) = s.strip_prefix("unix:") {
            path(p, "unix:").map(SinkSpec::Unix)
        } else if s.is_empty() {
            Err(ParseSinkError(format!("empty sink: {SINK_FORMS}")))
        } else {
            Err(ParseSinkError(format!("unknown sink {s:?}: {SINK_FORMS}")))
        }
    }
}

impl fmt::Display for SinkSpec {
    /// The canonical form, which parses back to the same value.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SinkSpec::Stdout => f.write_str("stdout"),
            SinkSpec::File(p) => write!(f, "file:{}", p.display()),
            SinkSpec::Tcp(a) => write!(f, "tcp://{a}"),
            SinkSpec::Unix(p) => write!(f, "unix:{}", p.display()),
            SinkSpec::Http(spec, opts) => write!(f, "{spec}{}", opts.fragment()),
        }
    }
}

/// Counters for metrics; share them with `Arc` and read them with `Ordering::Relaxed`.
#[derive(Debug, Default)]
pub struct SinkStats {
    /// Record lines handed to the destination (not counting the sink's own
    /// `events-lost` notices).
    pub written: AtomicU64,
    /// Record lines dropped by the sink: the outage buffer overflowed (oldest
    /// first), or lines still undelivered at shutdown.
    pub dropped: AtomicU64,
    /// Connections re-established after one was lost, or files reopened.
    pub reconnects: AtomicU64,
    /// The destination is currently open (connected socket, open file).
    pub connected: AtomicBool,
}

impl SinkStats {
    fn add_written(&self, n: u64) {
        if n > 0 {
            self.written.fetch_add(n, Ordering::Relaxed);
        }
    }

    fn add_dropped(&self, n: u64) {
        if n > 0 {
            self.dropped.fetch_add(n, Ordering::Relaxed);
        }
    }

    fn set_connected(&self, up: bool) {
        self.connected.store(up, Ordering::Relaxed);
    }
}

/// A line partly written, or the `events-lost` notice being written.
#[derive(Debug)]
struct Current {
    line: Vec<u8>,
    sent: usize,
    /// Non-zero for a notice: the dropped lines it reports.
    lost: u64,
}

/// The lines waiting for the destination, bounded: pushing past a bound drops the
/// oldest lines, and the next thing written is a notice of how many were dropped.
/// Writes may stop mid-line: the rest of that line is written next on the same
/// connection, or the whole line again after [`Backlog::rewind`].
#[derive(Debug)]
struct Backlog {
    bytes: VecDeque<u8>,
    lens: VecDeque<usize>,
    max_lines: usize,
    max_bytes: usize,
    /// Lines dropped and not yet reported by a written notice.
    unreported: u64,
    cur: Option<Current>,
}

impl Backlog {
    fn new(max_lines: usize, max_bytes: usize) -> Backlog {
        Backlog {
            bytes: VecDeque::new(),
            lens: VecDeque::new(),
            max_lines: max_lines.max(1),
            max_bytes,
            unreported: 0,
            cur: None,
        }
    }

    /// Nothing to write: no line and no notice.
    fn is_idle(&self) -> bool {
        self.cur.is_none() && self.lens.is_empty() && self.unreported == 0
    }

    /// Record lines waiting (the one partly written included).
    fn lines(&self) -> usize {
        self.lens.len() + usize::from(self.cur.as_ref().is_some_and(|c| c.lost == 0))
    }

    fn fits(&self, len: usize) -> bool {
        self.lens.len() < self.max_lines && self.bytes.len() + len <= self.max_bytes
    }

    /// Queues one line (with its newline), dropping the oldest to make room;
    /// returns how many lines were dropped.
    fn push(&mut self, line: &[u8]) -> u64 {
        if line.len() > self.max_bytes {
            self.unreported += 1;
            return 1;
        }
        let mut dropped = 0;
        let mut drop_bytes = 0;
        while !(self.lens.len() < self.max_lines
            && self.bytes.len() - drop_bytes + line.len() <= self.max_bytes)
        {
            let Some(len) = self.lens.pop_front() else {
                break;
            };
            drop_bytes += len;
            dropped += 1;
        }
        self.bytes.drain(..drop_bytes);
        self.bytes.extend(line);
        self.lens.push_back(line.len());
        self.unreported += dropped;
        dropped
    }

    /// The next bytes to write: the rest of the current line, else a notice of the
    /// dropped lines (made by `notice`), else queued lines (at most `max` bytes).
    fn chunk(&mut self, max: usize, notice: impl FnOnce(u64) -> Vec<u8>) -> &[u8] {
        if self.cur.is_none() && self.unreported > 0 {
            self.cur = Some(Current {
                line: notice(self.unreported),
                sent: 0,
                lost: self.unreported,
            });
        }
        if let Some(c) = &self.cur {
            return &c.line[c.sent..];
        }
        let front = self.bytes.as_slices().0;
        &front[..front.len().min(max.max(1))]
    }

    /// `n` bytes of the last [`Backlog::chunk`] were written; returns how many record
    /// lines that completed.
    fn consume(&mut self, mut n: usize) -> u64 {
        if let Some(c) = &mut self.cur {
            c.sent = (c.sent + n).min(c.line.len());
            if c.sent < c.line.len() {
                return 0;
            }
            let lost = c.lost;
            self.cur = None;
            if lost > 0 {
                self.unreported = self.unreported.saturating_sub(lost);
                return 0;
            }
            return 1;
        }
        let mut done = 0;
        let mut total = 0;
        while let Some(&len) = self.lens.front() {
            if n < len {
                break;
            }
            n -= len;
            total += len;
            done += 1;
            self.lens.pop_front();
        }
        self.bytes.drain(..total);
        if n > 0 {
            // Part of a line went out: keep it whole, apart from the queue, so
            // dropping the oldest cannot cut it.
            if let Some(len) = self.lens.pop_front() {
                let line: Vec<u8> = self.bytes.drain(..len).collect();
                self.cur = Some(Current {
                    line,
                    sent: n.min(len),
                    lost: 0,
                });
            }
        }
        done
    }

    /// The connection was lost: the line partly written goes back to the front to
    /// be sent whole (a notice is simply made again). Returns lines dropped.
    fn rewind(&mut self) -> u64 {
        let Some(c) = self.cur.take() else { return 0 };
        if c.lost > 0 {
            return 0;
        }
        if !self.fits(c.line.len()) {
            // It is the oldest line: the one to drop.
            self.unreported += 1;
            return 1;
        }
        for &b in c.line.iter().rev() {
            self.bytes.push_front(b);
        }
        self.lens.push_front(c.line.len());
        0
    }

    /// Empties the backlog; returns the record lines thrown away.
    fn discard(&mut self) -> u64 {
        let n = self.lines() as u64;
        self.bytes.clear();
        self.lens.clear();
        self.cur = None;
        self.unreported = 0;
        n
    }
}

/// Exponential backoff from [`BACKOFF_MIN`] to [`BACKOFF_MAX`], with up to 10% jitter.
struct Backoff {
    next: Duration,
}

impl Backoff {
    fn new() -> Backoff {
        Backoff { next: BACKOFF_MIN }
    }

    fn reset(&mut self) {
        self.next = BACKOFF_MIN;
    }

    fn delay(&mut self) -> Duration {
        let d = self.next;
        self.next = (d * 2).min(BACKOFF_MAX);
        // The low digits of the monotonic clock are jitter enough.
        d + d * (mono_now() % 100) as u32 / 1000
    }
}

/// The `events-lost` line telling a reader `n` lines were dropped here.
fn notice_line(clock: &Clock, n: u64) -> Vec<u8> {
    let mut line = Vec::with_capacity(256);
    json::write_line(&mut line, &ConnEvent::lost(mono_now(), n), clock);
    line
}

/// Resolves when shutdown is requested; never when the sender is gone without asking.
async fn stop_requested(rx: &mut watch::Receiver<bool>) {
    if rx.wait_for(|&stop| stop).await.is_err() {
        std::future::pending::<()>().await;
    }
}

/// Serialises records into the backlog.
struct Lines<'a> {
    backlog: Backlog,
    clock: Clock,
    stats: &'a SinkStats,
    label: &'a str,
    /// The "buffer full" warning was given for the current episode.
    warned_full: bool,
}

impl Lines<'_> {
    fn push(&mut self, line: &[u8]) -> usize {
        let dropped = self.backlog.push(line);
        if dropped > 0 {
            self.stats.add_dropped(dropped);
            if !self.warned_full {
                self.warned_full = true;
                log::warn!(
                    "sink {}: buffer full ({} lines / {} bytes); dropping the oldest lines",
                    self.label,
                    BUFFER_LINES,
                    BUFFER_BYTES
                );
            }
        }
        line.len()
    }

    /// Queues `first` and whatever else is already in the channel, up to a batch.
    fn ingest(&mut self, first: Bytes, rx: &mut mpsc::Receiver<Bytes>) {
        let mut bytes = self.push(&first);
        while bytes < BATCH_BYTES {
            match rx.try_recv() {
                Ok(r) => bytes += self.push(&r),
                Err(_) => break,
            }
        }
    }

    /// Queues everything left in the channel (at shutdown).
    fn drain(&mut self, rx: &mut mpsc::Receiver<Bytes>) {
        while let Ok(r) = rx.try_recv() {
            self.push(&r);
        }
    }

    /// Takes the next chunk to write (see [`Backlog::chunk`]).
    fn chunk(&mut self, max: usize) -> &[u8] {
        let clock = self.clock;
        self.backlog.chunk(max, move |n| notice_line(&clock, n))
    }

    fn consume(&mut self, n: usize) {
        let done = self.backlog.consume(n);
        self.stats.add_written(done);
    }

    fn rewind(&mut self) {
        let dropped = self.backlog.rewind();
        self.stats.add_dropped(dropped);
    }

    /// Shutdown with lines still undelivered: count them as dropped.
    fn give_up(&mut self) {
        let left = self.backlog.discard();
        if left > 0 {
            self.stats.add_dropped(left);
            log::warn!(
                "sink {}: {left} lines not delivered at shutdown",
                self.label
            );
        }
    }
}

/// Serialises records into lines, without an allocation per line (they are cut
/// from 64 KiB chunks).
pub struct LineMaker {
    buf: BytesMut,
    scratch: Vec<u8>,
    clock: Clock,
}

impl LineMaker {
    pub fn new(clock: Clock) -> LineMaker {
        LineMaker {
            buf: BytesMut::new(),
            scratch: Vec::with_capacity(4096),
            clock,
        }
    }

    /// The record's line, with its newline.
    pub fn line(&mut self, r: &Record) -> Bytes {
        self.scratch.clear();
        json::write_record(&mut self.scratch, r, &self.clock);
        if self.buf.capacity() < self.scratch.len() {
            self.buf.reserve(BATCH_BYTES.max(self.scratch.len()));
        }
        self.buf.extend_from_slice(&self.scratch);
        self.buf.split().freeze()
    }
}

/// One sink's input and what it missed because its channel was full.
struct Out {
    tx: mpsc::Sender<Bytes>,
    missed: u64,
    stats: Arc<SinkStats>,
}

/// Serialises each record from `rx` once and hands the line to every sink. A full
/// sink channel misses the line, counts it as dropped, and gets an `events-lost`
/// line with the count once it has room. Ends when `rx` closes, or on `stop`
/// after forwarding what `rx` holds (then the sinks see their channels close).
pub async fn fan_out(
    mut rx: mpsc::Receiver<Record>,
    clock: Clock,
    outs: Vec<(mpsc::Sender<Bytes>, Arc<SinkStats>)>,
    mut stop: watch::Receiver<bool>,
) {
    let mut maker = LineMaker::new(clock);
    let mut outs: Vec<Out> = outs
        .into_iter()
        .map(|(tx, stats)| Out {
            tx,
            missed: 0,
            stats,
        })
        .collect();
    let mut stopping = false;
    loop {
        let r = if stopping {
            match rx.try_recv() {
                Ok(r) => r,
                Err(_) => break,
            }
        } else {
            tokio::select! {
                biased;
                r = rx.recv() => match r {
                    Some(r) => r,
                    None => break,
                },
                _ = stop_requested(&mut stop) => {
                    stopping = true;
                    continue;
                }
            }
        };
        let line = maker.line(&r);
        for o in &mut outs {
            if o.missed > 0 {
                let notice = Bytes::from(notice_line(&clock, o.missed));
                if o.tx.try_send(notice).is_ok() {
                    o.missed = 0;
                }
            }
            if (o.missed > 0 || o.tx.try_send(line.clone()).is_err()) && !o.tx.is_closed() {
                o.missed += 1;
                o.stats.add_dropped(1);
            }
        }
    }
    for o in &outs {
        if o.missed > 0 {
            let _ = o.tx.try_send(Bytes::from(notice_line(&clock, o.missed)));
        }
    }
}

/// Writes JSON lines for every record from `rx` to `spec` until `shutdown` becomes
/// true or the channel closes; then drains the channel, flushes (for a socket: one
/// connection attempt, within about a second), and returns.
///
/// Errors: opening the file at start, or writing to stdout (a closed pipe is a
/// normal end, `Ok`). Socket and rotation trouble is logged and retried.
pub async fn run(
    spec: SinkSpec,
    rx: mpsc::Receiver<Bytes>,
    clock: Clock,
    stats: Arc<SinkStats>,
    shutdown: watch::Receiver<bool>,
) -> io::Result<()> {
    let label = spec.to_string();
    let lines = Lines {
        backlog: Backlog::new(BUFFER_LINES, BUFFER_BYTES),
        clock,
        stats: &stats,
        label: &label,
        warned_full: false,
    };
    let result = match spec {
        SinkSpec::Stdout => run_stdout(rx, lines, shutdown).await,
        SinkSpec::File(path) => run_file(&path, rx, lines, shutdown).await,
        SinkSpec::Tcp(addr) => run_stream(Target::Tcp(addr), rx, lines, shutdown).await,
        SinkSpec::Unix(path) => run_stream(Target::Unix(path), rx, lines, shutdown).await,
        SinkSpec::Http(spec, opts) => {
            crate::sink_http::run(spec, opts, rx, clock, stats.clone(), shutdown).await
        }
    };
    stats.set_connected(false);
    result
}

// --- stdout -----------------------------------------------------------------

/// Writes one batch to stdout off the runtime; gives the buffer back emptied.
async fn write_stdout(mut buf: Vec<u8>) -> (Vec<u8>, io::Result<()>) {
    tokio::task::spawn_blocking(move || {
        let mut out = io::stdout().lock();
        let r = out.write_all(&buf).and_then(|()| out.flush());
        buf.clear();
        (buf, r)
    })
    .await
    .unwrap_or_else(|e| (Vec::new(), Err(io::Error::other(e))))
}

async fn run_stdout(
    mut rx: mpsc::Receiver<Bytes>,
    lines: Lines<'_>,
    mut shutdown: watch::Receiver<bool>,
) -> io::Result<()> {
    lines.stats.set_connected(true);
    let mut buf = Vec::with_capacity(BATCH_BYTES + 4096);
    let mut stopping = false;
    while !stopping {
        let first = tokio::select! {
            biased;
            _ = stop_requested(&mut shutdown) => None,
            r = rx.recv() => r,
        };
        let mut n = 0u64;
        match first {
            Some(r) => {
                buf.extend_from_slice(&r);
                n += 1;
                while buf.len() < BATCH_BYTES {
                    match rx.try_recv() {
                        Ok(r) => {
                            buf.extend_from_slice(&r);
                            n += 1;
                        }
                        Err(_) => break,
                    }
                }
            }
            None => {
                stopping = true;
                while let Ok(r) = rx.try_recv() {
                    buf.extend_from_slice(&r);
                    n += 1;
                }
                if n == 0 {
                    break;
                }
            }
        }
        let (b, r) = write_stdout(std::mem::take(&mut buf)).await;
        buf = b;
        match r {
            Ok(()) => lines.stats.add_written(n),
            // The reader went away (`| head -1`): a normal end.
            Err(e) if e.kind() == io::ErrorKind::BrokenPipe => {
                lines.stats.add_dropped(n);
                return Ok(());
            }
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

// --- file -------------------------------------------------------------------

fn open_append(path: &Path) -> io::Result<std::fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .append(true)
        .create(true)
        .mode(0o600)
        .open(path)
}

/// Writes all of `data`, or as much as it can before an error: (bytes written, error).
fn write_counting(mut f: &std::fs::File, data: &[u8]) -> (usize, Option<io::Error>) {
    let mut done = 0;
    while done < data.len() {
        match f.write(&data[done..]) {
            Ok(0) => return (done, Some(io::ErrorKind::WriteZero.into())),
            Ok(n) => done += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return (done, Some(e)),
        }
    }
    (done, None)
}

/// The open file, or why it is not open.
struct FileOut<'a> {
    path: &'a Path,
    file: Option<Arc<std::fs::File>>,
    /// An open error was already logged in this episode.
    failing: bool,
    backoff: Backoff,
    retry_at: Instant,
}

impl FileOut<'_> {
    fn open(&mut self, stats: &SinkStats, reopen: bool) -> bool {
        match open_append(self.path) {
            Ok(f) => {
                self.file = Some(Arc::new(f));
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

    fn fail(&mut self, stats: &SinkStats, why: &str) {
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

    /// Writes what is queued; on trouble keeps it queued and schedules a retry.
    async fn flush(&mut self, lines: &mut Lines<'_>) {
        if self.file.is_none() && !self.open(lines.stats, true) {
            return;
        }
        while !lines.backlog.is_idle() {
            let Some(f) = self.file.clone() else { return };
            let data = lines.chunk(CHUNK_BYTES).to_vec();
            let (n, err) = tokio::task::spawn_blocking(move || write_counting(&f, &data))
                .await
                .unwrap_or_else(|e| (0, Some(io::Error::other(e))));
            lines.consume(n);
            if let Some(e) = err {
                lines.rewind();
                self.fail(lines.stats, &format!("write failed: {e}"));
                return;
            }
        }
    }
}

async fn hangup(sig: &mut Option<Signal>) {
    match sig {
        Some(s) => {
            if s.recv().await.is_none() {
                *sig = None;
            }
        }
        None => std::future::pending().await,
    }
}

async fn run_file(
    path: &Path,
    mut rx: mpsc::Receiver<Bytes>,
    mut lines: Lines<'_>,
    mut shutdown: watch::Receiver<bool>,
) -> io::Result<()> {
    // The handler goes in before anything else: once the file is open, a HUP means
    // "reopen", never the default "terminate".
    let mut hup = match signal(SignalKind::hangup()) {
        Ok(s) => Some(s),
        Err(e) => {
            log::warn!(
                "sink {}: cannot watch SIGHUP ({e}); it will not be reopened after rotation",
                path.display()
            );
            None
        }
    };
    let file = open_append(path)
        .map_err(|e| io::Error::new(e.kind(), format!("opening {}: {e}", path.display())))?;
    lines.stats.set_connected(true);
    let mut out = FileOut {
        path,
        file: Some(Arc::new(file)),
        failing: false,
        backoff: Backoff::new(),
        retry_at: Instant::now(),
    };
    loop {
        tokio::select! {
            biased;
            _ = stop_requested(&mut shutdown) => break,
            _ = hangup(&mut hup) => {
                log::info!("sink {}: SIGHUP, reopening", path.display());
                out.file = None;
                if out.open(lines.stats, true) {
                    lines.warned_full = false;
                }
                out.flush(&mut lines).await;
            }
            r = rx.recv() => {
                let Some(r) = r else { break };
                lines.ingest(r, &mut rx);
                out.flush(&mut lines).await;
                if out.file.is_some() {
                    lines.warned_full = false;
                }
            }
            _ = tokio::time::sleep_until(out.retry_at), if !lines.backlog.is_idle() => {
                out.flush(&mut lines).await;
            }
        }
    }
    lines.drain(&mut rx);
    if !lines.backlog.is_idle() {
        let _ = tokio::time::timeout(FINAL_FLUSH, out.flush(&mut lines)).await;
    }
    lines.give_up();
    Ok(())
}

// --- TCP and Unix stream sockets ---------------------------------------------

#[derive(Clone, Debug)]
enum Target {
    Tcp(String),
    Unix(PathBuf),
}

enum Conn {
    Tcp(TcpStream),
    Unix(UnixStream),
}

impl Conn {
    async fn ready(&self, interest: Interest) -> io::Result<Ready> {
        match self {
            Conn::Tcp(s) => s.ready(interest).await,
            Conn::Unix(s) => s.ready(interest).await,
        }
    }

    fn try_read(&self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Conn::Tcp(s) => s.try_read(buf),
            Conn::Unix(s) => s.try_read(buf),
        }
    }

    fn try_write(&self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Conn::Tcp(s) => s.try_write(buf),
            Conn::Unix(s) => s.try_write(buf),
        }
    }

    async fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Conn::Tcp(s) => s.write(buf).await,
            Conn::Unix(s) => s.write(buf).await,
        }
    }

    async fn shutdown(&mut self) -> io::Result<()> {
        match self {
            Conn::Tcp(s) => s.shutdown().await,
            Conn::Unix(s) => s.shutdown().await,
        }
    }
}

type Connecting = Pin<Box<dyn Future<Output = io::Result<Conn>> + Send>>;

async fn connect_now(target: Target) -> io::Result<Conn> {
    let attempt = async {
        match target {
            Target::Tcp(addr) => {
                let s = TcpStream::connect(addr.as_str()).await?;
                // Reconnecting to a local port nobody listens on can, rarely, connect
                // the socket to itself (same source and destination port).
                if s.local_addr()? == s.peer_addr()? {
                    return Err(io::Error::new(
                        io::ErrorKind::ConnectionRefused,
                        "connected to itself: nothing is listening",
                    ));
                }
                s.set_nodelay(true)?;
                Ok(Conn::Tcp(s))
            }
            Target::Unix(path) => Ok(Conn::Unix(UnixStream::connect(path).await?)),
        }
    };
    tokio::time::timeout(CONNECT_TIMEOUT, attempt)
        .await
        .unwrap_or_else(|_| {
            Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "connection timed out",
            ))
        })
}

fn connect(target: &Target) -> Connecting {
    Box::pin(connect_now(target.clone()))
}

async fn conn_ready(conn: &Option<Conn>, interest: Interest) -> io::Result<Ready> {
    match conn {
        Some(c) => c.ready(interest).await,
        None => std::future::pending().await,
    }
}

async fn connected(connecting: &mut Option<Connecting>) -> io::Result<Conn> {
    match connecting {
        Some(f) => f.await,
        None => std::future::pending().await,
    }
}

/// Handles readiness on a live connection: notices a peer that closed, and writes
/// what is queued (up to a budget). An error means the connection is gone.
fn on_ready(conn: &Conn, ready: Ready, lines: &mut Lines<'_>) -> io::Result<()> {
    if ready.is_readable() || ready.is_read_closed() {
        // Receivers send nothing; reading only tells whether the peer went away.
        let mut scratch = [0u8; 512];
        match conn.try_read(&mut scratch) {
            Ok(0) => {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "the peer closed the connection",
                ))
            }
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(e) => return Err(e),
        }
    }
    if !ready.is_writable() && !ready.is_write_closed() {
        return Ok(());
    }
    let mut budget = WRITE_BUDGET;
    while budget > 0 && !lines.backlog.is_idle() {
        let chunk = lines.chunk(CHUNK_BYTES);
        match conn.try_write(chunk) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => {
                lines.consume(n);
                budget = budget.saturating_sub(n);
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// The last writes at shutdown: connect if needed (or finish connecting), send
/// everything queued, close cleanly.
async fn final_flush(
    conn: Option<Conn>,
    connecting: Option<Connecting>,
    target: &Target,
    lines: &mut Lines<'_>,
) -> io::Result<()> {
    if lines.backlog.is_idle() && conn.is_none() {
        return Ok(());
    }
    let mut c = match (conn, connecting) {
        (Some(c), _) => c,
        (None, Some(f)) => f.await?,
        (None, None) => connect_now(target.clone()).await?,
    };
    while !lines.backlog.is_idle() {
        let n = c.write(lines.chunk(CHUNK_BYTES)).await?;
        if n == 0 {
            return Err(io::ErrorKind::WriteZero.into());
        }
        lines.consume(n);
    }
    c.shutdown().await
}

async fn run_stream(
    target: Target,
    mut rx: mpsc::Receiver<Bytes>,
    mut lines: Lines<'_>,
    mut shutdown: watch::Receiver<bool>,
) -> io::Result<()> {
    let mut conn: Option<Conn> = None;
    let mut connecting = Some(connect(&target));
    let mut backoff = Backoff::new();
    let mut retry_at = Instant::now();
    let mut ever_connected = false;
    // A connect failure was already logged in this episode.
    let mut failing = false;
    loop {
        let interest = if conn.is_some() && !lines.backlog.is_idle() {
            Interest::READABLE | Interest::WRITABLE
        } else {
            Interest::READABLE
        };
        tokio::select! {
            biased;
            _ = stop_requested(&mut shutdown) => break,
            ready = conn_ready(&conn, interest) => {
                let result = match (&conn, ready) {
                    (Some(c), Ok(ready)) => on_ready(c, ready, &mut lines),
                    (_, Err(e)) => Err(e),
                    (None, Ok(_)) => Ok(()),
                };
                if let Err(e) = result {
                    conn = None;
                    lines.stats.set_connected(false);
                    lines.rewind();
                    log::warn!(
                        "sink {}: connection lost ({e}); buffering up to {BUFFER_LINES} lines \
                         while reconnecting",
                        lines.label
                    );
                    failing = true;
                    retry_at = Instant::now() + backoff.delay();
                }
            }
            res = connected(&mut connecting) => {
                connecting = None;
                match res {
                    Ok(c) => {
                        conn = Some(c);
                        lines.stats.set_connected(true);
                        backoff.reset();
                        if ever_connected {
                            lines.stats.reconnects.fetch_add(1, Ordering::Relaxed);
                        }
                        if failing || ever_connected {
                            log::info!(
                                "sink {}: connected; {} lines to send, {} dropped meanwhile",
                                lines.label,
                                lines.backlog.lines(),
                                lines.backlog.unreported
                            );
                        }
                        ever_connected = true;
                        failing = false;
                        lines.warned_full = false;
                    }
                    Err(e) => {
                        let delay = backoff.delay();
                        if failing {
                            log::debug!("sink {}: cannot connect: {e}", lines.label);
                        } else {
                            log::warn!(
                                "sink {}: cannot connect ({e}); retrying with backoff up to {}s",
                                lines.label,
                                BACKOFF_MAX.as_secs()
                            );
                            failing = true;
                        }
                        retry_at = Instant::now() + delay;
                    }
                }
            }
            r = rx.recv() => {
                let Some(r) = r else { break };
                lines.ingest(r, &mut rx);
            }
            _ = tokio::time::sleep_until(retry_at), if conn.is_none() && connecting.is_none() => {
                connecting = Some(connect(&target));
            }
        }
    }
    lines.drain(&mut rx);
    let flushed = tokio::time::timeout(
        FINAL_FLUSH,
        final_flush(conn, connecting, &target, &mut lines),
    )
    .await
    .unwrap_or_else(|_| Err(io::Error::new(io::ErrorKind::TimedOut, "timed out")));
    if let Err(e) = flushed {
        if !lines.backlog.is_idle() {
            log::warn!("sink {}: final flush failed: {e}", lines.label);
        }
    }
    lines.give_up();
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> SinkSpec {
        s.parse().unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    #[test]
    fn parses_every_form() {
        assert_eq!(parse("-"), SinkSpec::Stdout);
        assert_eq!(parse("stdout"), SinkSpec::Stdout);
        assert_eq!(
            parse("file:/var/log/netta.json"),
            SinkSpec::File("/var/log/netta.json".into())
        );
        assert_eq!(parse("file:rel.json"), SinkSpec::File("rel.json".into()));
        assert_eq!(parse("/tmp/x.json"), SinkSpec::File("/tmp/x.json".into()));
        assert_eq!(parse("./x.json"), SinkSpec::File("./x.json".into()));
        assert_eq!(parse("../x.json"), SinkSpec::File("../x.json".into()));
        assert_eq!(
            parse("tcp://127.0.0.1:9000"),
            SinkSpec::Tcp("127.0.0.1:9000".into())
        );
        assert_eq!(
            parse("tcp:vector.local:5170"),
            SinkSpec::Tcp("vector.local:5170".into())
        );
        assert_eq!(
            parse("tcp://[::1]:9000"),
            SinkSpec::Tcp("[::1]:9000".into())
        );
        assert_eq!(
            parse("unix:/run/vector.sock"),
            SinkSpec::Unix("/run/vector.sock".into())
        );
        assert_eq!(
            parse("unix:///run/vector.sock"),
            SinkSpec::Unix("/run/vector.sock".into())
        );
        assert_eq!(parse("unix:rel.sock"), SinkSpec::Unix("rel.sock".into()));
    }

    #[test]
    fn display_parses_back() {
        let all = [
            ("-", "stdout"),
            ("stdout", "stdout"),
            ("file:/var/log/n.json", "file:/var/log/n.json"),
            ("/var/log/n.json", "file:/var/log/n.json"),
            ("./n.json", "file:./n.json"),
            ("file:n.json", "file:n.json"),
            ("tcp:localhost:9000", "tcp://localhost:9000"),
            ("tcp://[::1]:9000", "tcp://[::1]:9000"),
            ("unix:///run/v.sock", "unix:/run/v.sock"),
            ("unix:v.sock", "unix:v.sock"),
        ];
        for (input, shown) in all {
            let spec = parse(input);
            assert_eq!(spec.to_string(), shown, "{input}");
            assert_eq!(parse(shown), spec, "{input}");
        }
    }

    #[test]
    fn rejects_what_it_does_not_understand() {
        let cases = [
            ("", "empty sink"),
            ("netta.json", "unknown sink"),
            ("http://x:80", "unknown sink"),
            ("udp://127.0.0.1:9000", "unknown sink"),
            ("file:", "missing path"),
            ("unix:", "missing path"),
            ("unix://", "missing path"),
            ("tcp://", "expected HOST:PORT"),
            ("tcp://localhost", "expected HOST:PORT"),
            ("tcp://:9000", "missing host"),
            ("tcp://localhost:", "port must be"),
            ("tcp://localhost:0", "port must be"),
            ("tcp://localhost:70000", "port must be"),
            ("tcp://localhost:http", "port must be"),
            ("tcp://::1:9000", "need brackets"),
            ("tcp://[::1:9000", "unclosed ["),
            ("tcp://[nope]:9000", "not an IPv6"),
            ("tcp://host/path:9000", "invalid host"),
        ];
        for (input, want) in cases {
            let err = input.parse::<SinkSpec>().unwrap_err().to_string();
            assert!(err.contains(want), "{input:?}: {err}");
        }
        let err = "syslog".parse::<SinkSpec>().unwrap_err().to_string();
        assert!(
            err.contains("tcp://HOST:PORT") && err.contains("unix:PATH"),
            "{err}"
        );
    }

    fn line(i: u32) -> Vec<u8> {
        format!("line {i:04}\n").into_bytes() // 10 bytes
    }

    fn notice(n: u64) -> Vec<u8> {
        format!("lost {n}\n").into_bytes()
    }

    /// Writes everything queued, as a peer would receive it.
    fn write_all(b: &mut Backlog) -> (String, u64) {
        let mut out = Vec::new();
        let mut done = 0;
        while !b.is_idle() {
            let c = b.chunk(1 << 20, notice).to_vec();
            out.extend_from_slice(&c);
            done += b.consume(c.len());
        }
        (String::from_utf8(out).unwrap(), done)
    }

    #[test]
    fn backlog_drops_the_oldest_lines_past_the_line_bound() {
        let mut b = Backlog::new(3, 1 << 20);
        let dropped: u64 = (1..=5).map(|i| b.push(&line(i))).sum();
        assert_eq!(dropped, 2);
        assert_eq!(b.lines(), 3);
        let (out, done) = write_all(&mut b);
        assert_eq!(out, "lost 2\nline 0003\nline 0004\nline 0005\n");
        assert_eq!(done, 3);
        assert!(b.is_idle());
        // Reported once.
        b.push(&line(6));
        assert_eq!(write_all(&mut b).0, "line 0006\n");
    }

    #[test]
    fn backlog_drops_the_oldest_lines_past_the_byte_bound() {
        let mut b = Backlog::new(100, 35);
        for i in 1..=3 {
            assert_eq!(b.push(&line(i)), 0);
        }
        // 40 bytes would not fit: the oldest goes.
        assert_eq!(b.push(&line(4)), 1);
        let big = [b'x'; 25];
        // 25 + 30 > 35: two more go, keeping line 4.
        assert_eq!(b.push(&big), 2);
        // Larger than the whole buffer: dropped itself, the others stay.
        assert_eq!(b.push(&[b'y'; 36]), 1);
        assert_eq!(b.lines(), 2);
        let (out, done) = write_all(&mut b);
        assert_eq!(out, format!("lost 4\nline 0004\n{}", "x".repeat(25)));
        assert_eq!(done, 2);
    }

    #[test]
    fn partial_writes_complete_lines_in_order() {
        let mut b = Backlog::new(10, 1 << 20);
        for i in 1..=3 {
            b.push(&line(i));
        }
        // 15 bytes: line 1 whole, half of line 2.
        assert_eq!(b.chunk(15, notice), b"line 0001\nline ");
        assert_eq!(b.consume(15), 1);
        assert_eq!(b.lines(), 2);
        // Dropping the oldest while line 2 is half sent never cuts it.
        let mut small = Backlog::new(1, 1 << 20);
        small.push(&line(1));
        assert_eq!(small.chunk(4, notice), b"line");
        small.consume(4);
        assert_eq!(
            small.push(&line(2)),
            0,
            "the partly written line is not queued"
        );
        assert_eq!(write_all(&mut small).0, " 0001\nline 0002\n");
        // Back to the first backlog: the rest of line 2, then line 3.
        assert_eq!(b.chunk(100, notice), b"0002\n");
        assert_eq!(b.consume(3), 0);
        assert_eq!(b.consume(2), 1);
        assert_eq!(write_all(&mut b), ("line 0003\n".to_string(), 1));
    }

    #[test]
    fn rewind_resends_the_partly_written_line_whole() {
        let mut b = Backlog::new(10, 1 << 20);
        b.push(&line(1));
        b.push(&line(2));
        let c = b.chunk(100, notice).len();
        assert_eq!(c, 20);
        assert_eq!(b.consume(13), 1);
        assert_eq!(b.rewind(), 0);
        assert_eq!(b.rewind(), 0, "nothing more to rewind");
        assert_eq!(write_all(&mut b), ("line 0002\n".to_string(), 1));
    }

    #[test]
    fn a_notice_cut_by_a_lost_connection_is_made_again_with_the_new_count() {
        let mut b = Backlog::new(1, 1 << 20);
        b.push(&line(1));
        b.push(&line(2));
        assert_eq!(b.chunk(100, notice), b"lost 1\n");
        b.consume(3);
        // Disconnected: the notice is abandoned, more lines are dropped.
        b.rewind();
        assert_eq!(b.push(&line(3)), 1);
        assert_eq!(write_all(&mut b), ("lost 2\nline 0003\n".to_string(), 1));
    }

    #[test]
    fn drops_while_a_notice_is_in_flight_are_reported_next() {
        let mut b = Backlog::new(1, 1 << 20);
        b.push(&line(1));
        b.push(&line(2));
        assert_eq!(b.chunk(100, notice), b"lost 1\n");
        b.consume(2);
        b.push(&line(3));
        b.consume(5);
        assert_eq!(write_all(&mut b), ("lost 1\nline 0003\n".to_string(), 1));
    }

    #[test]
    fn a_rewound_line_that_no_longer_fits_is_dropped() {
        let mut b = Backlog::new(1, 1 << 20);
        b.push(&line(1));
        b.chunk(100, notice);
        b.consume(4);
        b.push(&line(2));
        assert_eq!(b.rewind(), 1);
        assert_eq!(write_all(&mut b), ("lost 1\nline 0002\n".to_string(), 1));
    }

    #[test]
    fn chunks_follow_the_ring_across_its_wrap() {
        let mut b = Backlog::new(100, 1 << 20);
        let mut expect = String::new();
        // Push and write in turns so the ring's start moves around.
        for round in 0..50u32 {
            for i in 0..7 {
                b.push(&line(round * 7 + i));
                expect.push_str(&format!("line {:04}\n", round * 7 + i));
            }
            let mut out = Vec::new();
            for _ in 0..3 {
                let c = b.chunk(13, notice).to_vec();
                out.extend_from_slice(&c);
                b.consume(c.len());
            }
            let (rest, _) = write_all(&mut b);
            out.extend_from_slice(rest.as_bytes());
            let want = std::mem::take(&mut expect);
            assert_eq!(String::from_utf8(out).unwrap(), want);
        }
    }

    #[test]
    fn discard_counts_record_lines_only() {
        let mut b = Backlog::new(2, 1 << 20);
        for i in 0..4 {
            b.push(&line(i));
        }
        assert_eq!(b.discard(), 2);
        assert!(b.is_idle());
    }

    #[test]
    fn backoff_doubles_to_the_maximum() {
        let mut b = Backoff::new();
        let d: Vec<Duration> = (0..10).map(|_| b.delay()).collect();
        assert!(d[0] >= BACKOFF_MIN && d[0] <= BACKOFF_MIN * 11 / 10);
        assert!(d[1] >= BACKOFF_MIN * 2);
        assert!(d[9] >= BACKOFF_MAX && d[9] <= BACKOFF_MAX * 11 / 10);
        b.reset();
        assert!(b.delay() < BACKOFF_MIN * 2);
    }
}
