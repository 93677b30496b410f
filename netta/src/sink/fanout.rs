//! Serialising each record once and handing the line to every sink.
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use tokio::sync::{mpsc, watch};

use super::lines::{notice_line, stop_requested};
use super::stats::SinkStats;
use super::BATCH_BYTES;
use crate::agent::Record;
use crate::core::clock::Clock;

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
        r.write_json(&mut self.scratch, &self.clock);
        if self.buf.capacity() < self.scratch.len() {
            self.buf.reserve(BATCH_BYTES.max(self.scratch.len()));
        }
        self.buf.extend_from_slice(&self.scratch);
        self.buf.split().freeze()
    }
}

/// Records serialised per wake-up (and per clock re-sync).
const FAN_BATCH: usize = 256;

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
    let mut maker = LineMaker::new(clock.clone());
    let mut outs: Vec<Out> = outs
        .into_iter()
        .map(|(tx, stats)| Out {
            tx,
            missed: 0,
            stats,
        })
        .collect();
    let mut stopping = false;
    let mut batch = Vec::with_capacity(FAN_BATCH);
    loop {
        if stopping {
            while batch.len() < FAN_BATCH {
                match rx.try_recv() {
                    Ok(r) => batch.push(r),
                    Err(_) => break,
                }
            }
            if batch.is_empty() {
                break;
            }
        } else {
            tokio::select! {
                biased;
                n = rx.recv_many(&mut batch, FAN_BATCH) => if n == 0 { break },
                _ = stop_requested(&mut stop) => {
                    stopping = true;
                    continue;
                }
            }
        }
        // The wall clock may have stepped since the last batch: @timestamp follows.
        clock.resync();
        for r in batch.drain(..) {
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
    }
    for o in &outs {
        if o.missed > 0 {
            let _ = o.tx.try_send(Bytes::from(notice_line(&clock, o.missed)));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::event::ConnEvent;

    /// Every sink gets the same bytes, not a copy: one serialisation per record.
    #[tokio::test]
    async fn every_sink_shares_one_serialised_line() {
        let (tap, rx) = mpsc::channel(16);
        let mut sinks = Vec::new();
        let mut outs = Vec::new();
        for _ in 0..3 {
            let (tx, rx) = mpsc::channel(16);
            outs.push((tx, Arc::new(SinkStats::default())));
            sinks.push(rx);
        }
        let (_stop, stop_rx) = watch::channel(false);
        let fan = tokio::spawn(fan_out(rx, Clock::fixed(0), outs, stop_rx));
        for n in 1..=5 {
            tap.send(Record::Event(ConnEvent::lost(n, n)))
                .await
                .unwrap();
        }
        drop(tap);
        fan.await.unwrap();
        for _ in 1..=5 {
            let lines: Vec<Bytes> = sinks.iter_mut().map(|s| s.try_recv().unwrap()).collect();
            assert!(lines[0].ends_with(b"\n"));
            for l in &lines[1..] {
                assert_eq!(l, &lines[0]);
                assert_eq!(l.as_ptr(), lines[0].as_ptr(), "the same buffer");
            }
        }
    }
}
