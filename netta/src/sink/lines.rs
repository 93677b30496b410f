//! Queueing serialised batches in a sink's backlog.
use super::backlog::Backlog;
use super::stats::SinkStats;
use super::*;
use crate::core::clock::{boot_now, Clock};
use crate::core::event::ConnEvent;
use bytes::Bytes;
use tokio::sync::{mpsc, watch};

/// The `events-lost` line telling a reader `n` lines were dropped here.
pub(super) fn notice_line(clock: &Clock, n: u64) -> Vec<u8> {
    let mut line = Vec::with_capacity(256);
    crate::render::ecs::write_line(&mut line, &ConnEvent::lost(boot_now(), n), clock);
    line
}

/// Resolves when shutdown is requested; never when the sender is gone without asking.
pub(super) async fn stop_requested(rx: &mut watch::Receiver<bool>) {
    if rx.wait_for(|&stop| stop).await.is_err() {
        std::future::pending::<()>().await;
    }
}

/// Hands `first` and whatever else is already in the channel, up to a batch of
/// [`BATCH_BYTES`], to `each`, in order.
pub(super) fn take_ready(
    first: Chunk,
    rx: &mut mpsc::Receiver<Chunk>,
    mut each: impl FnMut(Chunk),
) {
    let mut bytes = first.data.len();
    each(first);
    while bytes < BATCH_BYTES {
        match rx.try_recv() {
            Ok(c) => {
                bytes += c.data.len();
                each(c);
            }
            Err(_) => break,
        }
    }
}

/// Queues serialised batches in the backlog.
pub(super) struct Lines<'a> {
    pub(super) backlog: Backlog,
    pub(super) clock: Clock,
    pub(super) stats: &'a SinkStats,
    pub(super) label: &'a str,
    /// The "buffer full" warning was given for the current episode.
    pub(super) warned_full: bool,
}

impl Lines<'_> {
    pub(super) fn push(&mut self, chunk: Chunk) -> usize {
        let len = chunk.data.len();
        let dropped = self.backlog.push(chunk);
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
        len
    }

    /// Queues `first` and whatever else is already in the channel, up to a batch.
    pub(super) fn ingest(&mut self, first: Chunk, rx: &mut mpsc::Receiver<Chunk>) {
        take_ready(first, rx, |c| {
            self.push(c);
        });
    }

    /// Queues everything left in the channel (at shutdown).
    pub(super) fn drain(&mut self, rx: &mut mpsc::Receiver<Chunk>) {
        while let Ok(r) = rx.try_recv() {
            self.push(r);
        }
    }

    /// Takes the next bytes to write (see [`Backlog::chunk`]).
    pub(super) fn chunk(&mut self, max: usize) -> &[u8] {
        let clock = self.clock.clone();
        self.backlog.chunk(max, move |n| notice_line(&clock, n))
    }

    /// Everything to write, as shared buffers (see [`Backlog::pending`]).
    pub(super) fn pending(&mut self, max: usize) -> Vec<Bytes> {
        let clock = self.clock.clone();
        self.backlog.pending(max, move |n| notice_line(&clock, n))
    }

    pub(super) fn consume(&mut self, n: usize) {
        let done = self.backlog.consume(n);
        self.stats.add_written(done);
    }

    pub(super) fn rewind(&mut self) {
        let dropped = self.backlog.rewind();
        self.stats.add_dropped(dropped);
    }

    /// Shutdown with lines still undelivered: count them as dropped.
    pub(super) fn give_up(&mut self) {
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
