//! The record bus: connection events and alerts, in order, to every subscriber
//! (views, sinks, metrics). A slow subscriber never blocks the reader: its
//! records are dropped, counted, and announced once it has room again.
use std::sync::Arc;

use tokio::sync::mpsc;

use crate::core::clock::Clock;
use crate::core::dns::Seen;
use crate::core::event::ConnEvent;
use crate::core::filter::EndsFilter;
use crate::detect::Alert;
use crate::render::ecs;

/// What subscribers receive: connection events and detection alerts, in order.
/// Attached views get the same records from the agent's API (serde JSON lines).
// Events are nearly every record: boxing them to shrink the rare ones would cost
// an allocation per event.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Record {
    Event(ConnEvent),
    Alert(Arc<Alert>),
    /// A DNS response that named addresses (`dns-answer`).
    Dns(Arc<Seen>),
}

impl Record {
    /// Whether its line passes `--sport`/`--dport`/`--src`/`--dst`: by the ECS
    /// ends the line shows (a DNS answer's source is the server).
    pub fn passes(&self, f: &EndsFilter) -> bool {
        match self {
            Record::Event(ev) => f.event(ev),
            Record::Alert(a) => f.alert(a.source_ip),
            Record::Dns(d) => f.pair(Some(d.server), Some(d.client)),
        }
    }

    /// Appends the record as one ECS JSON line.
    pub fn write_json(&self, out: &mut Vec<u8>, clock: &Clock) {
        match self {
            Record::Event(ev) => ecs::write_line(out, ev, clock),
            Record::Alert(a) => ecs::write_alert_line(out, a, clock),
            Record::Dns(d) => ecs::write_dns_line(out, d, clock),
        }
    }
}

struct Tap {
    tx: mpsc::Sender<Record>,
    dropped: u64,
}

#[derive(Default)]
pub(crate) struct Bus {
    taps: Vec<Tap>,
}

impl Bus {
    pub fn is_empty(&self) -> bool {
        self.taps.is_empty()
    }

    pub fn subscribe(&mut self, capacity: usize) -> mpsc::Receiver<Record> {
        let (tx, rx) = mpsc::channel(capacity);
        self.taps.push(Tap { tx, dropped: 0 });
        rx
    }

    /// Sends `len` records to every tap without blocking; returns how many
    /// deliveries were dropped because a tap was full. `record(i, last)` makes
    /// the i-th record for a tap, taps in order; `last`: for the last tap, so it
    /// may be moved rather than copied.
    pub fn send(
        &mut self,
        now: u64,
        len: usize,
        mut record: impl FnMut(usize, bool) -> Record,
    ) -> u64 {
        let mut dropped_now = 0;
        let taps = self.taps.len();
        let mut at = 0;
        self.taps.retain_mut(|tap| {
            at += 1;
            let last = at == taps;
            for i in 0..len {
                if tap.dropped > 0 {
                    let lost = Record::Event(ConnEvent::lost(now, tap.dropped));
                    match tap.tx.try_send(lost) {
                        Ok(()) => tap.dropped = 0,
                        Err(mpsc::error::TrySendError::Full(_)) => {
                            tap.dropped += 1;
                            dropped_now += 1;
                            continue;
                        }
                        Err(mpsc::error::TrySendError::Closed(_)) => return false,
                    }
                }
                match tap.tx.try_send(record(i, last)) {
                    Ok(()) => {}
                    Err(mpsc::error::TrySendError::Full(_)) => {
                        tap.dropped += 1;
                        dropped_now += 1;
                    }
                    Err(mpsc::error::TrySendError::Closed(_)) => return false,
                }
            }
            true
        });
        dropped_now
    }

    /// Tells taps that dropped records how many, even when no new record comes
    /// along to carry the notice.
    pub fn flush_drop_notices(&mut self, now: u64) {
        for tap in self.taps.iter_mut().filter(|t| t.dropped > 0) {
            let lost = Record::Event(ConnEvent::lost(now, tap.dropped));
            if tap.tx.try_send(lost).is_ok() {
                tap.dropped = 0;
            }
        }
    }
}
