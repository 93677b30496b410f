//! The one ingest path, shared by the agent, the fuzz target and the benchmark:
//! kernel records are decoded into a batch, detection sees every event, and the
//! table keeps what changed it (the events taps then receive).
use super::event::{ConnEvent, DecodeError};
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
