//! The agent's periodic work: /proc reconciliation (or polling), kernel map
//! polls (losses, UDP flows, SYN-ACK retransmits) and the table rules.
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rustc_hash::FxHashMap;
use tokio::sync::watch;

use super::{lock, Shared};
use crate::core::event::{Action, ConnEvent, Direction, Proto, State};
use crate::core::proc_net::Owner;
use crate::core::table::{Closed, Conn, Key};
use crate::host::KernelMaps;

/// Adds the processes /proc shows to the process cache (those it does not know).
pub(super) async fn seed_processes(shared: &Arc<Shared>) {
    let host = shared.host.clone();
    let args = shared.owners().args();
    if let Ok(seeds) = tokio::task::spawn_blocking(move || host.processes(args)).await {
        shared.owners().seed(&seeds);
    }
}

/// Gives the rows /proc brought in (their owners found through /proc) what the
/// process cache knows of their processes, reading /proc for a process it does
/// not know; and forgets the processes that exited a while ago.
fn identify_rows(shared: &Shared) {
    let now = shared.now_ns();
    let pids: Vec<u32> = shared
        .table()
        .owned()
        .filter(|c| c.who.process.is_none())
        .map(|c| c.pid)
        .collect();
    if pids.is_empty() {
        shared.owners().procs.expire(now);
        return;
    }
    let mut whos = FxHashMap::default();
    {
        let mut o = shared.owners();
        o.procs.expire(now);
        let args = o.args();
        for pid in pids {
            if whos.contains_key(&pid) {
                continue;
            }
            let mut who = o.who_now(pid, now);
            if who.is_none() {
                if let Some(seed) = shared.host.process(pid, args) {
                    o.seed(std::slice::from_ref(&seed));
                    who = o.who_now(pid, now);
                }
            }
            whos.insert(pid, who);
        }
    }
    shared
        .table()
        .identify_rows(|pid| whos.get(&pid).cloned().flatten());
}

pub(super) async fn reconcile(shared: &Arc<Shared>, emit: bool) {
    let started = shared.now_ns();
    let host = shared.host.clone();
    let Ok(snap) = tokio::task::spawn_blocking(move || host.read_sockets()).await else {
        return;
    };
    let snap = match snap {
        Ok(s) => s,
        Err(e) => {
            log::warn!("reading /proc/net failed: {e}");
            return;
        }
    };
    for (file, err) in snap.errors.iter().take(3) {
        log::warn!("/proc/net/{file}: {err}");
    }
    // Owners are looked up lazily: a walk of every /proc/<pid>/fd only when a row needs one.
    let mut owners: Option<FxHashMap<u64, Owner>> = None;
    let report = {
        let mut t = shared.table();
        let mut owner_of = |inode| {
            owners
                .get_or_insert_with(|| shared.host.socket_owners())
                .get(&inode)
                .copied()
        };
        t.reconcile_with(&snap.sockets, &snap.netns, started, &mut owner_of, emit)
    };
    identify_rows(shared);
    if shared.dns_on() {
        let now = shared.now_ns();
        let mut dns = shared.dns();
        dns.cache.expire(now);
        if !dns.cache.is_empty() {
            shared
                .table()
                .name_rows(|ip| Some(dns.cache.lookup(None, ip, now)?.domain.clone()));
        }
    }
    if emit {
        let now = shared.now_ns();
        let mut events: Vec<ConnEvent> = Vec::new();
        for c in &report.added {
            events.push(polled_event(c, now, true));
        }
        for c in &report.removed {
            events.push(polled_event(c, now, false));
        }
        shared.table().count_polled(&report, now);
        shared.publish(&events);
    }
    drop((snap, report));
    // What the read, the rows that ended (TIME_WAIT expiring in tens of
    // thousands) and a burst's records freed goes back to the system, so the
    // resident size follows the table down (at start: the parsed kernel BTF too).
    // SAFETY: malloc_trim only releases free heap pages.
    unsafe { libc::malloc_trim(0) };
}

/// An event synthesised from a /proc difference (polling mode).
fn polled_event(c: &Conn, now: u64, added: bool) -> ConnEvent {
    let action = match (c.state.is_listener(), added) {
        (true, true) => Action::ListenStarted,
        (true, false) => Action::ListenStopped,
        (false, true) => Action::Opened,
        (false, false) => Action::Closed,
    };
    ConnEvent {
        start_ns: if added { now } else { c.start_ns },
        old_state: Some(c.state),
        new_state: Some(if added { c.state } else { State::Close }),
        partial: true,
        // A close carries the last live counters (sock_diag works without eBPF).
        bytes_sent: if added { 0 } else { c.bytes_sent },
        bytes_recv: if added { 0 } else { c.bytes_recv },
        prior_sent: if added { 0 } else { c.live.reported_sent },
        prior_recv: if added { 0 } else { c.live.reported_recv },
        ..c.event(action, now)
    }
}

pub(super) async fn reconcile_loop(
    shared: Arc<Shared>,
    every: Duration,
    emit: bool,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut tick = tokio::time::interval(every);
    tick.tick().await;
    loop {
        tokio::select! {
            _ = shutdown.changed() => break,
            _ = tick.tick() => reconcile(&shared, emit).await,
        }
    }
}

type Maps = Mutex<Box<dyn KernelMaps>>;

/// Polls what the kernel keeps in maps: the lost-record counter and UDP flows.
pub(super) async fn kernel_poll_loop(
    shared: Arc<Shared>,
    maps: Arc<Maps>,
    udp_idle: Duration,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut tick = tokio::time::interval(Duration::from_millis(500));
    let mut lost_seen = 0u64;
    loop {
        // One last pass after shutdown, so losses in the final moments are reported too.
        let stopping = tokio::select! {
            _ = shutdown.changed() => true,
            _ = tick.tick() => false,
        };
        let lost = lock(&maps).counter(netta_ebpf::counter::LOST);
        if lost > lost_seen {
            let mut batch = vec![ConnEvent::lost(shared.now_ns(), lost - lost_seen)];
            lost_seen = lost;
            shared.apply_batch(&mut batch, &mut Vec::new());
        }
        let idle_before = shared.now_ns().saturating_sub(udp_idle.as_nanos() as u64);
        sweep_udp(&shared, &maps, idle_before);
        let synack = lock(&maps).synack_retransmits();
        let mut alerts = Vec::new();
        shared
            .detector()
            .observe_synack(&synack, shared.now_ns(), &mut alerts);
        shared.publish_alerts(alerts);
        if stopping {
            break;
        }
    }
}

/// Once a second: the live counters, then the table rules and incident expiry
/// (so a rule on bytes sees them fresh), and `connection-updated` events when
/// due. Also reports rows the full table had to refuse, so an overload is
/// visible in the stream, and re-reads the wall clock's offset for the store,
/// the API and the views.
pub(super) async fn detect_loop(
    shared: Arc<Shared>,
    update_every: Option<Duration>,
    mut shutdown: watch::Receiver<bool>,
) {
    const TICK: Duration = Duration::from_secs(1);
    let mut tick = tokio::time::interval(TICK);
    let mut updates = super::live::Schedule::new(update_every);
    let mut live = super::live::Refresher::default();
    let mut evicted_seen = 0;
    loop {
        tokio::select! {
            _ = shutdown.changed() => break,
            at = tick.tick() => {
                shared.clock.resync();
                live.refresh(&shared).await;
                shared.detect_now();
                if updates.due(at, TICK) {
                    super::live::publish_updates(&shared);
                }
                shared.flush_drop_notices();
            }
        }
        let evicted = shared.table().counters().table_evicted;
        if evicted > evicted_seen {
            let mut ev = ConnEvent::lost(shared.now_ns(), evicted - evicted_seen);
            ev.action = Action::TableEvicted;
            evicted_seen = evicted;
            shared.publish(&[ev]);
        }
    }
}

/// Copies UDP flow counters from the kernel map, then reports and forgets the
/// flows idle since `idle_before`.
pub(super) fn sweep_udp(shared: &Shared, maps: &Maps, idle_before: u64) {
    let mut maps = lock(maps);
    let flows = maps.udp_flows();
    let ended: Vec<Closed> = {
        let mut t = shared.table();
        for (k, s) in &flows {
            t.update_flow(k.sock, flow_remote(k), s.packets, s.bytes, s.last_ns);
        }
        t.expire_flows(idle_before)
    };
    if ended.is_empty() {
        return;
    }
    for (k, _) in &flows {
        let key = Key::Flow {
            sock: k.sock,
            remote: flow_remote(k),
        };
        if ended.iter().any(|c| c.conn.key == key) {
            maps.forget_udp_flow(k);
        }
    }
    drop(maps);
    let events: Vec<ConnEvent> = ended.iter().map(flow_event).collect();
    shared.publish(&events);
}

fn flow_remote(k: &netta_ebpf::UdpFlowKey) -> SocketAddr {
    crate::core::event::socket_addr(k.family, &k.remote_addr, k.remote_port)
}

fn flow_event(c: &Closed) -> ConnEvent {
    let conn = &c.conn;
    let sock = match conn.key {
        Key::Flow { sock, .. } => sock,
        _ => 0,
    };
    ConnEvent {
        sock,
        proto: Proto::Udp,
        direction: Direction::Egress,
        bytes_sent: conn.bytes_sent,
        count: conn.packets,
        prior_sent: conn.live.reported_sent.min(conn.bytes_sent),
        ..conn.event(Action::UdpFlow, c.end_ns)
    }
}
