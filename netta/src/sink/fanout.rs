//! Serialising each record once, a batch of them into one buffer, and handing
//! that buffer to every sink: a second sink costs a reference count and a channel
//! send per batch, not per line.
use std::sync::Arc;

use bytes::Bytes;
use tokio::sync::{mpsc, watch};

use super::lines::{notice_line, stop_requested};
use super::stats::SinkStats;
use super::BATCH_BYTES;
use crate::agent::Record;
use crate::core::clock::Clock;
use crate::core::filter::EndsFilter;

/// Whole JSON lines (each with its newline), shared by every sink that got them.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Chunk {
    pub data: Bytes,
    /// Record lines in `data`.
    pub lines: u64,
}

impl Chunk {
    /// One line (with its newline).
    pub fn line(data: Vec<u8>) -> Chunk {
        Chunk {
            data: Bytes::from(data),
            lines: 1,
        }
    }
}

/// Serialises records into batches of lines, one buffer per batch.
pub struct LineMaker {
    buf: Vec<u8>,
    lines: u64,
    clock: Clock,
}

impl LineMaker {
    pub fn new(clock: Clock) -> LineMaker {
        LineMaker {
            buf: Vec::with_capacity(BATCH_BYTES),
            lines: 0,
            clock,
        }
    }

    /// Appends the record's line to the batch being made.
    pub fn push(&mut self, r: &Record) {
        r.write_json(&mut self.buf, &self.clock);
        self.lines += 1;
    }

    /// The batch made so far; the next starts empty, with room for one as
    /// large (so it is not copied over and over as it grows).
    pub fn take(&mut self) -> Chunk {
        let room = (self.buf.len() + self.buf.len() / 8).max(BATCH_BYTES);
        let data = std::mem::replace(&mut self.buf, Vec::with_capacity(room));
        Chunk {
            data: Bytes::from(data),
            lines: std::mem::take(&mut self.lines),
        }
    }

    /// The record's line alone, as a batch of one.
    pub fn line(&mut self, r: &Record) -> Chunk {
        self.push(r);
        self.take()
    }
}

/// Records serialised per wake-up (and per clock re-sync): one batch.
const FAN_BATCH: usize = 256;

/// One channel's input (a sink's, or a group of file sinks'), what it missed
/// because it was full, and the counters of the sinks behind it.
struct Out {
    tx: mpsc::Sender<Chunk>,
    missed: u64,
    stats: Vec<Arc<SinkStats>>,
}

/// Serialises the records from `rx` that pass `filter`, once, a batch per wake-up,
/// and hands the batch to every sink. A full sink channel misses the batch,
/// counts its lines as dropped, and gets an `events-lost` line with the count
/// once it has room. Ends when `rx` closes, or on `stop` after forwarding what
/// `rx` holds (then the sinks see their channels close).
pub async fn fan_out(
    mut rx: mpsc::Receiver<Record>,
    clock: Clock,
    outs: Vec<(mpsc::Sender<Chunk>, Vec<Arc<SinkStats>>)>,
    filter: EndsFilter,
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
            if r.passes(&filter) {
                maker.push(&r);
            }
        }
        let chunk = maker.take();
        if chunk.lines == 0 {
            continue;
        }
        for o in &mut outs {
            if o.missed > 0 {
                let notice = Chunk::line(notice_line(&clock, o.missed));
                if o.tx.try_send(notice).is_ok() {
                    o.missed = 0;
                }
            }
            if (o.missed > 0 || o.tx.try_send(chunk.clone()).is_err()) && !o.tx.is_closed() {
                o.missed += chunk.lines;
                for s in &o.stats {
                    s.add_dropped(chunk.lines);
                }
            }
        }
    }
    for o in &outs {
        if o.missed > 0 {
            let _ = o.tx.try_send(Chunk::line(notice_line(&clock, o.missed)));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::event::{Action, ConnEvent, Direction};

    fn opened(sport: u16, dport: u16) -> Record {
        let mut e = ConnEvent::lost(1, 0);
        e.action = Action::Opened;
        e.direction = Direction::Egress;
        e.local = format!("127.0.0.1:{sport}").parse().unwrap();
        e.remote = format!("127.0.0.1:{dport}").parse().unwrap();
        Record::Event(e)
    }

    /// Runs the fan-out over `records` (all waiting, so one batch) into `sinks`
    /// channels; what each received.
    async fn fan(records: Vec<Record>, sinks: usize, filter: EndsFilter) -> Vec<Vec<Chunk>> {
        let (tap, rx) = mpsc::channel(records.len().max(1));
        for r in records {
            tap.send(r).await.unwrap();
        }
        drop(tap);
        let mut rxs = Vec::new();
        let mut outs = Vec::new();
        for _ in 0..sinks {
            let (tx, rx) = mpsc::channel(16);
            outs.push((tx, vec![Arc::new(SinkStats::default())]));
            rxs.push(rx);
        }
        let (_stop, stop_rx) = watch::channel(false);
        fan_out(rx, Clock::fixed(0), outs, filter, stop_rx).await;
        rxs.iter_mut()
            .map(|rx| std::iter::from_fn(|| rx.try_recv().ok()).collect())
            .collect()
    }

    /// Every sink gets the same bytes, not a copy: one serialisation per record,
    /// one buffer per batch.
    #[tokio::test]
    async fn every_sink_shares_one_serialised_batch() {
        let records = (1..=5).map(|n| opened(40000 + n, 80)).collect();
        let got = fan(records, 3, EndsFilter::default()).await;
        assert_eq!(got[0].len(), 1, "one batch");
        let first = &got[0][0];
        assert_eq!(first.lines, 5);
        assert_eq!(first.data.iter().filter(|b| **b == b'\n').count(), 5);
        for other in &got[1..] {
            assert_eq!(other, &got[0]);
            assert_eq!(
                other[0].data.as_ptr(),
                first.data.as_ptr(),
                "the same buffer"
            );
        }
    }

    #[tokio::test]
    async fn the_filter_keeps_passing_lines_and_every_loss_line() {
        let records = vec![
            opened(40001, 80),
            opened(40002, 443),
            Record::Event(ConnEvent::lost(1, 7)),
            opened(40003, 80),
        ];
        let filter = EndsFilter {
            dport: Some(80),
            ..EndsFilter::default()
        };
        let got = fan(records, 1, filter).await;
        let text = String::from_utf8(got[0][0].data.to_vec()).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 3, "{text}");
        assert_eq!(got[0][0].lines, 3);
        assert!(lines[0].contains("40001") && lines[2].contains("40003"));
        assert!(lines[1].contains("events-lost"));
        assert!(!text.contains("443"));
    }
}
