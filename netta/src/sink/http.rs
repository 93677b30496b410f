//! The HTTP sink: NDJSON batches POSTed to a collector (Vector's `http_server`,
//! Fluent Bit's `http`, Logstash's `http`, ClickHouse's HTTP interface).
//!
//! Lines arrive already serialised (once, for every sink). A batch goes out when
//! it reaches its size or its age; a refused connection, a timeout, 5xx, 408 and
//! 429 keep the batch and retry it with exponential backoff, while new lines wait
//! in a bounded buffer that drops the oldest beyond its bounds. What was dropped
//! is reported by an `events-lost` line at the head of the next batch, so the
//! counts a reader sees add up to what is missing. Another 4xx rejects the batch
//! for good: it is counted and reported the same way. At shutdown everything
//! queued is sent within [`FINAL_FLUSH`]. `https://` runs the same over TLS
//! ([`super::tls`]), its server verified, never falling back to plaintext.
use std::io::{self, Write};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper::{header, Request, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

use crate::core::clock::{boot_now, Clock};
use crate::core::event::ConnEvent;
pub use crate::settings::http_spec::{HttpOptions, HttpSpec};
use crate::sink::backlog::Backlog;
use crate::sink::backoff::{log_failure, Backoff};
use crate::sink::tls::Tls;
use crate::sink::{Chunk, SinkStats};

/// How long the final flush may take at shutdown.
pub const FINAL_FLUSH: Duration = Duration::from_millis(800);

/// Lines waiting, bounded; dropping the oldest counts them as unreported.
struct Queue {
    backlog: Backlog,
    /// When the oldest waiting line arrived.
    since: Option<Instant>,
}

impl Queue {
    fn push(&mut self, chunk: Chunk) -> u64 {
        let dropped = self.backlog.push(chunk);
        if self.backlog.lines() > 0 {
            self.since.get_or_insert_with(Instant::now);
        }
        dropped
    }
}

/// A batch on its way: kept whole until the collector takes it.
struct Batch {
    body: Bytes,
    /// Record lines in it (the notice not counted).
    lines: u64,
    /// Drops its `events-lost` line reports.
    reported: u64,
}

enum Outcome {
    Delivered,
    /// Try again later.
    Retry(String),
    /// The collector refused it for good.
    Rejected(String),
}

struct Sender<'a> {
    spec: &'a HttpSpec,
    opts: &'a HttpOptions,
    conn: Option<SendRequest<Full<Bytes>>>,
    /// `https://`: how to wrap each connection.
    tls: Option<Tls>,
    stats: &'a SinkStats,
    ever_connected: bool,
}

/// HTTP/1.1 over `io`; the connection is driven by a task of its own.
async fn http1<I>(io: I) -> io::Result<SendRequest<Full<Bytes>>>
where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(io))
        .await
        .map_err(io::Error::other)?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok(send)
}

impl Sender<'_> {
    async fn connect(&mut self) -> io::Result<()> {
        let stream = TcpStream::connect(self.spec.authority.as_str()).await?;
        stream.set_nodelay(true)?;
        let send = match &self.tls {
            Some(tls) => http1(tls.connect(stream).await?).await?,
            None => http1(stream).await?,
        };
        self.conn = Some(send);
        self.stats.connected.store(true, Ordering::Relaxed);
        if self.ever_connected {
            self.stats.reconnects.fetch_add(1, Ordering::Relaxed);
        }
        self.ever_connected = true;
        Ok(())
    }

    async fn post(&mut self, body: Bytes) -> Outcome {
        if self.conn.as_ref().is_none_or(|c| c.is_closed()) {
            if let Err(e) = self.connect().await {
                self.lost();
                return Outcome::Retry(format!("cannot connect: {e}"));
            }
        }
        let Some(conn) = self.conn.as_mut() else {
            return Outcome::Retry("no connection".into());
        };
        if conn.ready().await.is_err() {
            self.lost();
            return Outcome::Retry("connection closed".into());
        }
        let mut req = Request::post(self.spec.path.as_str())
            .header(header::HOST, self.spec.authority.as_str())
            .header(header::CONTENT_TYPE, "application/x-ndjson");
        if self.opts.gzip {
            req = req.header(header::CONTENT_ENCODING, "gzip");
        }
        let req = match req.body(Full::new(body)) {
            Ok(r) => r,
            Err(e) => return Outcome::Rejected(format!("bad request: {e}")),
        };
        let resp = match conn.send_request(req).await {
            Ok(r) => r,
            Err(e) => {
                self.lost();
                return Outcome::Retry(format!("request failed: {e}"));
            }
        };
        let status = resp.status();
        // Read the body so the connection can be reused; keep a little for the log.
        let text = match resp.into_body().collect().await {
            Ok(b) => {
                let b = b.to_bytes();
                crate::core::sanitize::escape(&b[..b.len().min(200)])
            }
            Err(_) => {
                self.lost();
                String::new()
            }
        };
        if status.is_success() {
            Outcome::Delivered
        } else if status.is_server_error()
            || status == StatusCode::TOO_MANY_REQUESTS
            || status == StatusCode::REQUEST_TIMEOUT
        {
            Outcome::Retry(format!("HTTP {status}: {}", text.trim()))
        } else {
            Outcome::Rejected(format!("HTTP {status}: {}", text.trim()))
        }
    }

    fn lost(&mut self) {
        self.conn = None;
        self.stats.connected.store(false, Ordering::Relaxed);
    }
}

/// Resolves when shutdown is requested; never when the sender is gone without asking.
async fn stop_requested(rx: &mut watch::Receiver<bool>) {
    if rx.wait_for(|&stop| stop).await.is_err() {
        std::future::pending::<()>().await;
    }
}

struct State<'a> {
    queue: Queue,
    pending: Option<Batch>,
    opts: &'a HttpOptions,
    clock: Clock,
    stats: &'a SinkStats,
    label: String,
    backoff: Backoff,
    retry_at: Instant,
    failing: bool,
    warned_full: bool,
}

impl State<'_> {
    fn push(&mut self, chunk: Chunk) {
        let dropped = self.queue.push(chunk);
        if dropped > 0 {
            self.stats.dropped.fetch_add(dropped, Ordering::Relaxed);
            if !self.warned_full {
                self.warned_full = true;
                log::warn!(
                    "sink {}: buffer full ({} lines / {} bytes); dropping the oldest lines",
                    self.label,
                    self.opts.buffer_lines,
                    self.opts.buffer_bytes
                );
            }
        }
    }

    /// When the next request is due, if one is.
    fn due(&self) -> Option<Instant> {
        if self.pending.is_some() {
            return Some(self.retry_at);
        }
        let since = self.queue.since?;
        if self.queue.backlog.bytes() >= self.opts.batch_bytes {
            return Some(self.retry_at);
        }
        Some((since + self.opts.max_age).max(self.retry_at))
    }

    fn idle(&self) -> bool {
        self.pending.is_none() && self.queue.backlog.is_idle()
    }

    /// The next batch: the pending one, else a new one from the queue, headed by
    /// a notice of the drops not reported yet.
    fn take_batch(&mut self) -> io::Result<&Batch> {
        if self.pending.is_none() {
            let queued = self.queue.backlog.bytes();
            let mut body = Vec::with_capacity(self.opts.batch_bytes.min(queued) + 512);
            let reported = self.queue.backlog.unreported;
            if reported > 0 {
                crate::render::ecs::write_line(
                    &mut body,
                    &ConnEvent::lost(boot_now(), reported),
                    &self.clock,
                );
            }
            let room = self.opts.batch_bytes.saturating_sub(body.len());
            let (bufs, lines) = self.queue.backlog.take_lines(room);
            for b in &bufs {
                body.extend_from_slice(b);
            }
            self.queue.backlog.unreported = 0;
            if self.queue.backlog.lines() == 0 {
                self.queue.since = None;
            } else {
                self.queue.since = Some(Instant::now());
            }
            let body = if self.opts.gzip {
                let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
                gz.write_all(&body)?;
                gz.finish()?
            } else {
                body
            };
            self.pending = Some(Batch {
                body: Bytes::from(body),
                lines,
                reported,
            });
        }
        self.pending
            .as_ref()
            .ok_or_else(|| io::Error::other("no batch"))
    }

    async fn send(&mut self, sender: &mut Sender<'_>, timeout: Duration) {
        let body = match self.take_batch() {
            Ok(b) => b.body.clone(),
            Err(e) => {
                log::warn!("sink {}: cannot compress a batch: {e}", self.label);
                return;
            }
        };
        let outcome = tokio::time::timeout(timeout, sender.post(body))
            .await
            .unwrap_or_else(|_| {
                sender.lost();
                Outcome::Retry("timed out".into())
            });
        match outcome {
            Outcome::Delivered => {
                if let Some(b) = self.pending.take() {
                    self.stats.written.fetch_add(b.lines, Ordering::Relaxed);
                }
                if self.failing {
                    log::info!("sink {}: delivering again", self.label);
                }
                self.failing = false;
                self.warned_full = false;
                self.backoff.reset();
                self.retry_at = Instant::now();
            }
            Outcome::Retry(why) => {
                log_failure(
                    &mut self.failing,
                    &self.label,
                    &why,
                    "buffering and retrying",
                );
                self.retry_at = Instant::now() + self.backoff.delay();
            }
            Outcome::Rejected(why) => {
                if let Some(b) = self.pending.take() {
                    log::warn!(
                        "sink {}: the collector rejected a batch of {} lines ({why}); dropped",
                        self.label,
                        b.lines
                    );
                    self.stats.dropped.fetch_add(b.lines, Ordering::Relaxed);
                    // Those lines and the drops the batch reported are reported again.
                    self.queue.backlog.unreported += b.lines + b.reported;
                }
                self.retry_at = Instant::now();
            }
        }
    }
}

/// The TLS client an `https://` sink needs (none for `http://`): what start-up
/// checks, so a missing or bad CA file is an error before anything runs.
pub fn tls_for(spec: &HttpSpec, opts: &HttpOptions) -> Result<Option<Tls>, String> {
    if !spec.tls {
        return Ok(None);
    }
    Tls::new(spec.host(), opts.ca.as_deref())
        .map(Some)
        .map_err(|e| format!("sink {spec}: {e}"))
}

/// POSTs NDJSON batches of the lines from `rx` to `spec` until `shutdown` (or
/// the channel closes); then sends what is left within [`FINAL_FLUSH`] and
/// counts anything still undelivered as dropped.
pub async fn run(
    spec: HttpSpec,
    opts: HttpOptions,
    mut rx: mpsc::Receiver<Chunk>,
    clock: Clock,
    stats: Arc<SinkStats>,
    mut shutdown: watch::Receiver<bool>,
) -> io::Result<()> {
    let tls = tls_for(&spec, &opts).map_err(io::Error::other)?;
    let mut st = State {
        queue: Queue {
            backlog: Backlog::new(opts.buffer_lines, opts.buffer_bytes),
            since: None,
        },
        pending: None,
        opts: &opts,
        clock,
        stats: &stats,
        label: spec.to_string(),
        backoff: Backoff::new(),
        retry_at: Instant::now(),
        failing: false,
        warned_full: false,
    };
    let mut sender = Sender {
        spec: &spec,
        opts: &opts,
        conn: None,
        tls,
        stats: &stats,
        ever_connected: false,
    };
    loop {
        let due = st.due();
        tokio::select! {
            biased;
            _ = stop_requested(&mut shutdown) => break,
            l = rx.recv() => {
                let Some(l) = l else { break };
                st.push(l);
                while st.queue.backlog.bytes() < opts.batch_bytes {
                    match rx.try_recv() {
                        Ok(l) => st.push(l),
                        Err(_) => break,
                    }
                }
            }
            _ = tokio::time::sleep_until(due.unwrap_or_else(Instant::now)), if due.is_some() => {
                st.send(&mut sender, opts.timeout).await;
            }
        }
    }
    while let Ok(l) = rx.try_recv() {
        st.push(l);
    }
    let deadline = Instant::now() + FINAL_FLUSH;
    while !st.idle() {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break;
        }
        st.backoff.next = Duration::from_millis(20);
        st.send(&mut sender, left).await;
        if st.pending.is_some() {
            tokio::time::sleep_until(st.retry_at.min(deadline)).await;
        }
    }
    let left = st.queue.backlog.lines() + st.pending.as_ref().map_or(0, |b| b.lines);
    if left > 0 {
        stats.dropped.fetch_add(left, Ordering::Relaxed);
        log::warn!("sink {}: {left} lines not delivered at shutdown", st.label);
    }
    stats.connected.store(false, Ordering::Relaxed);
    Ok(())
}
