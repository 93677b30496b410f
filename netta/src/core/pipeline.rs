//! The one ingest path, shared by the agent, the fuzz target and the benchmark:
//! kernel records are decoded into a batch, detection sees every event, and the
//! table keeps what changed it (the events taps then receive).
use super::dns_cache::Cache;
use super::event::{Action, ConnEvent, DecodeError};
use super::table::{Applied, Table};

/// A streaming detector: one event in, findings out. `()` detects nothing.
pub trait Observe {
    type Alert;
    fn observe(&mut self, ev: &ConnEvent, out: &mut Vec<Self::Alert>);
}

impl Observe for () {
    type Alert = ();
    fn observe(&mut self, _: &ConnEvent, _: &mut Vec<()>) {}
}

/// Records are handed on in batches of at most this many events.
pub const BATCH: usize = 4096;

/// Decodes one kernel record onto `batch`.
pub fn decode_into(batch: &mut Vec<ConnEvent>, record: &[u8]) -> Result<(), DecodeError> {
    batch.push(ConnEvent::decode(record)?);
    Ok(())
}

/// Detection sees every event of the batch, in order.
pub fn detect<D: Observe>(det: &mut D, batch: &[ConnEvent], alerts: &mut Vec<D::Alert>) {
    for ev in batch {
        det.observe(ev, alerts);
    }
}

/// Gives each event the name of its remote address: the one its row got when it
/// began, else what DNS answered for it recently (also for an end whose beginning
/// is in the same batch, not in the table yet). Events carry no network namespace
/// yet, so the newest answer in any namespace counts.
pub fn attribute(table: &Table, dns: &Cache, batch: &mut [ConnEvent], now: u64) {
    let named = |ev: &ConnEvent| {
        !matches!(
            ev.action,
            Action::ListenStarted
                | Action::ListenStopped
                | Action::EventsLost
                | Action::TableEvicted
        ) && ev.domain.is_none()
    };
    for ev in batch.iter_mut().filter(|ev| named(ev)) {
        ev.domain = match table.domain_of(ev) {
            Some(d) => Some(d.clone()),
            None => dns
                .lookup(None, ev.remote.ip(), now)
                .map(|n| n.domain.clone()),
        };
    }
}

/// Applies the batch to the table and keeps only the events that changed it.
pub fn apply(table: &mut Table, batch: &mut Vec<ConnEvent>) {
    batch.retain_mut(|ev| table.apply_noting(ev) == Applied::Changed);
}

/// Decode, detect and apply over concatenated records of `record_size` bytes, in
/// batches of [`BATCH`]; returns how many records did not decode.
pub fn ingest<D: Observe>(
    records: &[u8],
    record_size: usize,
    batch: &mut Vec<ConnEvent>,
    det: &mut D,
    table: &mut Table,
    alerts: &mut Vec<D::Alert>,
) -> u64 {
    let mut bad = 0;
    for chunk in records.chunks(BATCH * record_size) {
        batch.clear();
        for rec in chunk.chunks(record_size) {
            if decode_into(batch, rec).is_err() {
                bad += 1;
            }
        }
        detect(det, batch, alerts);
        apply(table, batch);
    }
    batch.clear();
    bad
}
