//! The one ingest path, shared by the agent, the fuzz target and the benchmark:
//! kernel records are decoded into a batch, each event learns who its owner is,
//! detection sees every event, and the table keeps what changed it (the events
//! taps then receive).
use std::sync::Arc;

use super::cgroup::Container;
use super::dns_cache::Cache;
use super::event::{is_process_record, Action, ConnEvent, DecodeError, Direction};
use super::process::{ProcEvent, ProcessCache};
use super::sanitize::Text;
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

/// Process records of a batch, each with the number of connection events
/// before it: it takes effect there.
pub type ProcRecords = Vec<(usize, ProcEvent)>;

/// Decodes one kernel record onto `batch`, or onto `procs` for a process record
/// (straight into place: no value of either kind in between to copy).
pub fn decode_into(
    batch: &mut Vec<ConnEvent>,
    procs: &mut ProcRecords,
    record: &[u8],
) -> Result<(), DecodeError> {
    if is_process_record(record)? {
        procs.push((batch.len(), ProcEvent::decode(record)?));
    } else {
        batch.push(ConnEvent::decode(record)?);
    }
    Ok(())
}

/// Names and containers, which the host knows (`agent` caches them).
pub trait Resolve {
    /// `user.name` of a uid.
    fn user(&mut self, uid: u32) -> Option<Text>;
    /// The container (and pod) of a cgroup id.
    fn container(&mut self, cgroup: u64) -> Option<Arc<Container>>;
}

/// Knows no names and no containers.
impl Resolve for () {
    fn user(&mut self, _: u32) -> Option<Text> {
        None
    }
    fn container(&mut self, _: u64) -> Option<Arc<Container>> {
        None
    }
}

/// Gives each event what is known of its owner: the process (from the cache,
/// which the batch's process records update at their place in it), the user's
/// name and the container. A process that exited a millisecond after its
/// connection is still in the cache when the connection's records come.
pub fn identify(
    cache: &mut ProcessCache,
    resolve: &mut dyn Resolve,
    batch: &mut [ConnEvent],
    procs: &[(usize, ProcEvent)],
) {
    let mut next = procs.iter().peekable();
    // A batch is mostly a few owners': each name is looked up once per run of
    // events with the same user (container), not once per event.
    let mut user: Option<(u32, Option<Text>)> = None;
    let mut container: Option<(u64, Arc<Container>)> = None;
    for (i, ev) in batch.iter_mut().enumerate() {
        while let Some((_, p)) = next.next_if(|(at, _)| *at <= i) {
            cache.apply(p);
        }
        if ev.pid == 0 || ev.who.process.is_some() {
            continue;
        }
        // The owner was taken when the connection began; an accepted one's, when
        // a hook ran in the acceptor, which may be later.
        let anchor = if ev.start_ns != 0 {
            ev.start_ns
        } else {
            ev.ts_ns
        };
        let latest = if ev.direction == Direction::Egress {
            anchor
        } else {
            ev.ts_ns
        };
        ev.who.process = cache.lookup(ev.pid, anchor, latest);
        if let Some(uid) = ev.who.uid {
            ev.who.user = match &user {
                Some((u, name)) if *u == uid => name.clone(),
                _ => user.insert((uid, resolve.user(uid))).1.clone(),
            };
        }
        let cgroup = ev.who.cgroup;
        if cgroup != 0 {
            ev.who.container = match &container {
                Some((id, c)) if *id == cgroup => Some(c.clone()),
                // Only a found container is remembered: a miss may rescan.
                _ => resolve
                    .container(cgroup)
                    .inspect(|c| container = Some((cgroup, c.clone()))),
            };
        }
    }
    for (_, p) in next {
        cache.apply(p);
    }
}

/// Detection sees every event of the batch, in order.
pub fn detect<D: Observe>(det: &mut D, batch: &[ConnEvent], alerts: &mut Vec<D::Alert>) {
    for ev in batch {
        det.observe(ev, alerts);
    }
}

/// Gives each event the name of its remote address: the one its row got when it
/// began, else what DNS answered for it recently in its network namespace (also
/// for an end whose beginning is in the same batch, not in the table yet); an
/// event whose namespace is unknown takes the newest answer in any.
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
                .lookup(
                    (ev.netns != 0).then_some(u64::from(ev.netns)),
                    ev.remote.ip(),
                    now,
                )
                .map(|n| n.domain.clone()),
        };
    }
}

/// Applies the batch to the table and keeps only the events that changed it.
pub fn apply(table: &mut Table, batch: &mut Vec<ConnEvent>) {
    batch.retain_mut(|ev| table.apply_noting(ev) == Applied::Changed);
}

/// Decode, identify, detect and apply over concatenated records of `record_size`
/// bytes, in batches of [`BATCH`]; returns how many records did not decode.
pub fn ingest<D: Observe>(
    records: &[u8],
    record_size: usize,
    batch: &mut Vec<ConnEvent>,
    procs: &mut ProcessCache,
    det: &mut D,
    table: &mut Table,
    alerts: &mut Vec<D::Alert>,
) -> u64 {
    let mut bad = 0;
    let mut proc_records = ProcRecords::new();
    for chunk in records.chunks(BATCH * record_size) {
        batch.clear();
        proc_records.clear();
        for rec in chunk.chunks(record_size) {
            if decode_into(batch, &mut proc_records, rec).is_err() {
                bad += 1;
            }
        }
        identify(procs, &mut (), batch, &proc_records);
        detect(det, batch, alerts);
        apply(table, batch);
    }
    batch.clear();
    bad
}
