//! TCP and Unix stream socket sinks, with reconnect and a bounded buffer.
use super::backoff::log_failure;
use super::lines::{stop_requested, Lines};
use super::*;
use std::future::Future;
use std::io;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use tokio::io::{AsyncWriteExt, Interest, Ready};
use tokio::net::{TcpStream, UnixStream};
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

#[derive(Clone, Debug)]
pub(super) enum Target {
    Tcp(String),
    Unix(PathBuf),
}

/// The socket a stream sink writes to (not a traced connection).
pub(super) enum StreamSocket {
    Tcp(TcpStream),
    Unix(UnixStream),
}

impl StreamSocket {
    pub(super) async fn ready(&self, interest: Interest) -> io::Result<Ready> {
        match self {
            StreamSocket::Tcp(s) => s.ready(interest).await,
            StreamSocket::Unix(s) => s.ready(interest).await,
        }
    }

    pub(super) fn try_read(&self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            StreamSocket::Tcp(s) => s.try_read(buf),
            StreamSocket::Unix(s) => s.try_read(buf),
        }
    }

    pub(super) fn try_write(&self, buf: &[u8]) -> io::Result<usize> {
        match self {
            StreamSocket::Tcp(s) => s.try_write(buf),
            StreamSocket::Unix(s) => s.try_write(buf),
        }
    }

    pub(super) async fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            StreamSocket::Tcp(s) => s.write(buf).await,
            StreamSocket::Unix(s) => s.write(buf).await,
        }
    }

    pub(super) async fn shutdown(&mut self) -> io::Result<()> {
        match self {
            StreamSocket::Tcp(s) => s.shutdown().await,
            StreamSocket::Unix(s) => s.shutdown().await,
        }
    }
}

pub(super) type Connecting = Pin<Box<dyn Future<Output = io::Result<StreamSocket>> + Send>>;

pub(super) async fn connect_now(target: Target) -> io::Result<StreamSocket> {
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
                Ok(StreamSocket::Tcp(s))
            }
            Target::Unix(path) => Ok(StreamSocket::Unix(UnixStream::connect(path).await?)),
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

pub(super) fn connect(target: &Target) -> Connecting {
    Box::pin(connect_now(target.clone()))
}

pub(super) async fn socket_ready(
    socket: &Option<StreamSocket>,
    interest: Interest,
) -> io::Result<Ready> {
    match socket {
        Some(c) => c.ready(interest).await,
        None => std::future::pending().await,
    }
}

pub(super) async fn connected(connecting: &mut Option<Connecting>) -> io::Result<StreamSocket> {
    match connecting {
        Some(f) => f.await,
        None => std::future::pending().await,
    }
}

/// Handles readiness on a live connection: notices a peer that closed, and writes
/// what is queued (up to a budget). An error means the connection is gone.
pub(super) fn on_ready(
    socket: &StreamSocket,
    ready: Ready,
    lines: &mut Lines<'_>,
) -> io::Result<()> {
    if ready.is_readable() || ready.is_read_closed() {
        // Receivers send nothing; reading only tells whether the peer went away.
        let mut scratch = [0u8; 512];
        match socket.try_read(&mut scratch) {
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
        match socket.try_write(chunk) {
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
pub(super) async fn final_flush(
    socket: Option<StreamSocket>,
    connecting: Option<Connecting>,
    target: &Target,
    lines: &mut Lines<'_>,
) -> io::Result<()> {
    if lines.backlog.is_idle() && socket.is_none() {
        return Ok(());
    }
    let mut c = match (socket, connecting) {
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

pub(super) async fn run_stream(
    target: Target,
    mut rx: mpsc::Receiver<Chunk>,
    mut lines: Lines<'_>,
    mut shutdown: watch::Receiver<bool>,
) -> io::Result<()> {
    let mut socket: Option<StreamSocket> = None;
    let mut connecting = Some(connect(&target));
    let mut backoff = Backoff::new();
    let mut retry_at = Instant::now();
    let mut ever_connected = false;
    // A connect failure was already logged in this episode.
    let mut failing = false;
    loop {
        let interest = if socket.is_some() && !lines.backlog.is_idle() {
            Interest::READABLE | Interest::WRITABLE
        } else {
            Interest::READABLE
        };
        tokio::select! {
            biased;
            _ = stop_requested(&mut shutdown) => break,
            ready = socket_ready(&socket, interest) => {
                let result = match (&socket, ready) {
                    (Some(c), Ok(ready)) => on_ready(c, ready, &mut lines),
                    (_, Err(e)) => Err(e),
                    (None, Ok(_)) => Ok(()),
                };
                if let Err(e) = result {
                    socket = None;
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
                        socket = Some(c);
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
                        let why = format!("cannot connect ({e})");
                        log_failure(&mut failing, lines.label, &why, "retrying");
                        retry_at = Instant::now() + backoff.delay();
                    }
                }
            }
            r = rx.recv() => {
                let Some(r) = r else { break };
                lines.ingest(r, &mut rx);
            }
            _ = tokio::time::sleep_until(retry_at), if socket.is_none() && connecting.is_none() => {
                connecting = Some(connect(&target));
            }
        }
    }
    lines.drain(&mut rx);
    let flushed = tokio::time::timeout(
        FINAL_FLUSH,
        final_flush(socket, connecting, &target, &mut lines),
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
