//! The live connection table and its bounded history. Events keep it current;
//! /proc snapshots seed it and heal what events missed (`reconcile`).
//!
//! Rows learned from the kernel are keyed by socket address, which is stable for
//! the socket's life. Rows only /proc knows of (netta started later, TIME_WAIT
//! remnants) are keyed by inode or 4-tuple and indexed by 4-tuple, so an event for
//! the same socket finds and replaces them.
use std::borrow::Cow;
use std::collections::VecDeque;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use rustc_hash::{FxHashMap, FxHashSet};

use crate::core::event::{span_ns, Action, ConnEvent, Direction, OwnerSource, Proto, State, Who};
use crate::core::proc_net::{Owner, ProcSocket};
use crate::core::sanitize::{Comm, Domain};
use crate::core::sock_id::SockIds;
use crate::core::tuple::unspecified_like;
pub use crate::core::tuple::Tuple;

/// Connections that lived shorter than this are "short-lived" in statistics.
pub const SHORT_LIVED_NS: u64 = 2_000_000_000;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum Key {
    /// Kernel socket address (from events).
    Sock(u64),
    /// A UDP flow: one socket sending to one remote address.
    Flow { sock: u64, remote: SocketAddr },
    /// Socket inode (from /proc).
    Inode(u64),
    /// Inode-less /proc rows (TIME_WAIT, orphans).
    Tuple(Tuple),
}

impl Key {
    /// The key with the kernel's socket address replaced by its opaque id, for
    /// anything that leaves the process (ids still join: one socket, one id).
    pub fn hidden(self, ids: &SockIds) -> Key {
        match self {
            Key::Sock(s) => Key::Sock(ids.opaque(s)),
            Key::Flow { sock, remote } => Key::Flow {
                sock: ids.opaque(sock),
                remote,
            },
            k @ (Key::Inode(_) | Key::Tuple(_)) => k,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Origin {
    Event,
    /// An accepted connection listed before its owner was known (not yet reported).
    Pending,
    Proc,
}

#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Conn {
    pub key: Key,
    pub proto: Proto,
    pub local: SocketAddr,
    /// Unspecified address and port 0 for listeners and unconnected UDP sockets.
    pub remote: SocketAddr,
    pub state: State,
    pub direction: Direction,
    /// 0 when the owner is unknown.
    pub pid: u32,
    pub comm: Comm,
    pub owner: OwnerSource,
    /// CLOCK_BOOTTIME ns; 0 when the start predates netta.
    pub start_ns: u64,
    pub bytes_sent: u64,
    pub bytes_recv: u64,
    pub packets: u64,
    /// Last activity (UDP flows), CLOCK_BOOTTIME ns.
    pub last_ns: u64,
    pub inode: u64,
    /// Inode of the socket's network namespace (0: unknown).
    #[serde(default)]
    pub netns: u32,
    /// The owner's user, cgroup, process and container, as far as known.
    #[serde(default)]
    pub who: Who,
    /// When this table learned of the row; guards reconcile against fresh rows.
    pub seen_ns: u64,
    pub origin: Origin,
    /// Counters of the open connection, refreshed from the kernel (`core::live`).
    #[serde(default)]
    pub live: Live,
    /// The name DNS gave the remote address when the connection began.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub domain: Option<Domain>,
}

/// What the live refresh knows of an open connection beyond its byte totals.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Live {
    /// Smoothed round-trip time, µs (0: not sampled).
    pub rtt_us: u32,
    pub retrans: u32,
    /// Bytes per second over the last refresh.
    pub rate_sent: u64,
    pub rate_recv: u64,
    /// Last data sent or received, CLOCK_MONOTONIC ns (0: unknown).
    pub last_data_ns: u64,
    /// When the counters were last sampled (0: never).
    pub sampled_ns: u64,
    /// Totals the last `connection-updated` event reported, and when.
    pub reported_sent: u64,
    pub reported_recv: u64,
    pub reported_ns: u64,
}

impl Conn {
    pub fn tuple(&self) -> Tuple {
        Tuple::new(self.netns, self.proto, self.local, self.remote)
    }

    /// Takes the owner of the row this one replaces, when its own is unknown,
    /// and what it knew of the owner that this one does not.
    fn inherit_owner(&mut self, old: &Conn) {
        if self.owner == OwnerSource::Unknown {
            self.pid = old.pid;
            self.comm = old.comm;
            self.owner = old.owner;
            self.who = old.who.clone();
        } else if self.pid == old.pid {
            self.who.fill_from(&old.who);
        }
    }

    /// A UDP flow's totals only grow (the kernel map and events race).
    fn grow_flow(&mut self, packets: u64, bytes_sent: u64, last_ns: u64) {
        self.packets = self.packets.max(packets);
        self.bytes_sent = self.bytes_sent.max(bytes_sent);
        self.last_ns = self.last_ns.max(last_ns);
    }

    /// An event about this row: who and where, no counters.
    pub fn event(&self, action: Action, ts_ns: u64) -> ConnEvent {
        ConnEvent {
            proto: self.proto,
            local: self.local,
            remote: self.remote,
            direction: self.direction,
            pid: self.pid,
            comm: self.comm,
            owner: self.owner,
            start_ns: self.start_ns,
            domain: self.domain.clone(),
            netns: self.netns,
            who: self.who.clone(),
            ..ConnEvent::blank(action, ts_ns)
        }
    }

    /// The remote side carries no peer (listener, unconnected UDP socket).
    pub fn has_peer(&self) -> bool {
        is_peer(&self.remote)
    }
}

/// A remote side that is a peer, not the unspecified address and port 0.
fn is_peer(remote: &SocketAddr) -> bool {
    !(remote.ip().is_unspecified() && remote.port() == 0)
}

/// A connection that ended, kept in the bounded history.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Closed {
    pub conn: Conn,
    pub end_ns: u64,
    /// A connect that never got established (refused, timed out, reset).
    pub failed: bool,
}

impl Closed {
    pub fn duration_ns(&self) -> Option<u64> {
        span_ns(self.conn.start_ns, self.end_ns)
    }

    /// The history row for an ended connection, failed connect or UDP flow
    /// (what the store keeps); `None` for other events.
    pub fn from_ended(ev: &ConnEvent) -> Option<Closed> {
        let (state, failed) = match ev.action {
            Action::Closed => (State::Close, false),
            Action::Failed => (State::SynSent, true),
            Action::UdpFlow => (State::Flow, false),
            _ => return None,
        };
        let conn = Table::row_from_event(ev, Key::Tuple(ev.tuple()), state);
        Some(Closed {
            conn,
            end_ns: ev.ts_ns,
            failed,
        })
    }

    /// The same row with wall-clock times (show it with `Clock::fixed(0)`), so
    /// rows from the store (which may predate this boot) and the ring mix.
    pub fn on_wall_clock(mut self, clock: &crate::core::clock::Clock) -> Closed {
        let off = clock.offset_ns();
        let wall = |ns: u64| {
            if ns == 0 {
                0
            } else {
                (ns as i128 + off).clamp(0, u64::MAX as i128) as u64
            }
        };
        self.end_ns = wall(self.end_ns);
        self.conn.start_ns = wall(self.conn.start_ns);
        self.conn.last_ns = wall(self.conn.last_ns);
        self.conn.seen_ns = wall(self.conn.seen_ns);
        self
    }
}

/// Totals since the table was created. Monotonic, so views can diff two copies.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Counters {
    pub events: u64,
    pub opened: u64,
    pub closed: u64,
    pub failed: u64,
    /// Closed connections that lived shorter than [`SHORT_LIVED_NS`].
    pub short_lived: u64,
    pub listen_started: u64,
    pub listen_stopped: u64,
    pub udp_flows: u64,
    pub resets_sent: u64,
    pub bytes_sent: u64,
    pub bytes_recv: u64,
    /// Kernel records lost (ring full) or dropped by a slow consumer.
    pub lost: u64,
    /// Records the decoder refused.
    pub decode_errors: u64,
    /// Rows refused because the live table was at its cap.
    pub table_evicted: u64,
    /// Closed connections pushed out of the bounded history (none when it is off).
    pub history_evicted: u64,
    /// Rows /proc showed that no event had reported.
    pub healed_added: u64,
    /// Rows events left open that /proc no longer shows (their close was missed).
    pub healed_removed: u64,
    /// Every row ever inserted: "unique connections observed".
    pub observed: u64,
}

#[derive(Clone, Copy, Debug)]
pub struct Limits {
    pub max_live: usize,
    pub max_history: usize,
}

impl Limits {
    pub const DEFAULT: Limits = Limits {
        max_live: 262_144,
        max_history: 20_000,
    };
}

impl Default for Limits {
    fn default() -> Self {
        Limits::DEFAULT
    }
}

/// What applying one event did, so callers know whether to pass it on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Applied {
    /// New information: forward the event.
    Changed,
    /// Already known (a duplicate), or nothing to show yet.
    Quiet,
}

/// A TIME_WAIT socket only /proc showed (no inode, so no owner, and no
/// bytes): all its row holds besides the 4-tuple that keys it. A busy host has
/// tens of thousands of them, so they are kept at a fraction of a [`Conn`] and
/// listed as the row [`Remnant::row`] makes, the same one a `Conn` would show.
#[derive(Clone, Debug)]
struct Remnant {
    /// When /proc first showed it (also its `last_ns`).
    seen_ns: u64,
    domain: Option<Domain>,
    uid: u32,
    /// Its start is when it was seen (a poll counted it as opened).
    started: bool,
}

/// A /proc socket kept as a [`Remnant`]: TIME_WAIT, no inode.
fn is_remnant(s: &ProcSocket) -> bool {
    s.state == State::TimeWait && s.inode == 0
}

impl Remnant {
    fn row(&self, t: &Tuple) -> Conn {
        Conn {
            key: Key::Tuple(*t),
            proto: t.proto,
            local: t.local,
            remote: t.remote,
            state: State::TimeWait,
            direction: Direction::Unknown,
            pid: 0,
            comm: Comm::EMPTY,
            owner: OwnerSource::Unknown,
            start_ns: if self.started { self.seen_ns } else { 0 },
            bytes_sent: 0,
            bytes_recv: 0,
            packets: 0,
            last_ns: self.seen_ns,
            inode: 0,
            netns: t.netns,
            who: Who {
                uid: Some(self.uid),
                ..Who::default()
            },
            seen_ns: self.seen_ns,
            origin: Origin::Proc,
            live: Live::default(),
            domain: self.domain.clone(),
        }
    }
}

#[derive(Debug, Default)]
pub struct ReconcileReport {
    pub added: Vec<Conn>,
    pub removed: Vec<Conn>,
    pub updated: usize,
}

pub struct Table {
    live: FxHashMap<Key, Conn>,
    /// TIME_WAIT rows only /proc knows, compact (their key is `Key::Tuple`).
    remnants: FxHashMap<Tuple, Remnant>,
    /// 4-tuple index of the rows not keyed by socket address.
    seeded: FxHashMap<Tuple, Key>,
    history: VecDeque<Closed>,
    /// Tuples closed by events recently: a /proc read that raced the close must not
    /// bring them back.
    recent_closed: FxHashMap<Tuple, u64>,
    limits: Limits,
    counters: Counters,
}

impl Default for Table {
    fn default() -> Self {
        Table::new(Limits::default())
    }
}

impl Table {
    pub fn new(limits: Limits) -> Table {
        Table {
            live: FxHashMap::default(),
            remnants: FxHashMap::default(),
            seeded: FxHashMap::default(),
            history: VecDeque::new(),
            recent_closed: FxHashMap::default(),
            limits,
            counters: Counters::default(),
        }
    }

    /// Totals since start; the byte totals include what open connections moved so far
    /// (TIME_WAIT remnants moved nothing netta saw).
    pub fn counters(&self) -> Counters {
        let mut c = self.counters;
        for row in self.live.values() {
            c.bytes_sent = c.bytes_sent.saturating_add(row.bytes_sent);
            c.bytes_recv = c.bytes_recv.saturating_add(row.bytes_recv);
        }
        c
    }

    /// The open rows, for the live refresh to update their counters in place
    /// (not the TIME_WAIT remnants: they have no counters to refresh).
    pub(crate) fn rows_mut(&mut self) -> impl Iterator<Item = &mut Conn> {
        self.live.values_mut()
    }

    /// Rows ever added (cheap: no pass over the rows, unlike [`Table::counters`]).
    pub fn observed(&self) -> u64 {
        self.counters.observed
    }

    /// One open row (not a remnant), for the live refresh to update in place.
    pub(crate) fn row_mut(&mut self, key: &Key) -> Option<&mut Conn> {
        self.live.get_mut(key)
    }

    /// [`Table::apply`], then notes on a close what `connection-updated` events
    /// already reported of its bytes (`prior_*`), so consumers count each byte once.
    pub fn apply_noting(&mut self, ev: &mut ConnEvent) -> Applied {
        if ev.action != Action::Closed {
            return self.apply(ev);
        }
        // The row the close replaces, found once (by `closed`, which takes it).
        self.counters.events += 1;
        let (applied, prior) = self.closed(ev, false);
        if let Some((l, sent, recv)) = prior {
            if ev.bytes_sent == 0 && ev.bytes_recv == 0 {
                (ev.bytes_sent, ev.bytes_recv) = (sent, recv);
            }
            ev.prior_sent = l.reported_sent.min(ev.bytes_sent);
            ev.prior_recv = l.reported_recv.min(ev.bytes_recv);
        }
        applied
    }

    pub fn len(&self) -> usize {
        self.live.len() + self.remnants.len()
    }

    pub fn is_empty(&self) -> bool {
        self.live.is_empty() && self.remnants.is_empty()
    }

    pub fn get(&self, key: &Key) -> Option<Cow<'_, Conn>> {
        if let Some(c) = self.live.get(key) {
            return Some(Cow::Borrowed(c));
        }
        match key {
            Key::Tuple(t) => self.remnants.get(t).map(|r| Cow::Owned(r.row(t))),
            _ => None,
        }
    }

    /// Every open row; a TIME_WAIT remnant's made for the occasion.
    pub fn conns(&self) -> impl Iterator<Item = Cow<'_, Conn>> {
        self.live
            .values()
            .map(Cow::Borrowed)
            .chain(self.remnants.iter().map(|(t, r)| Cow::Owned(r.row(t))))
    }

    /// The open rows with an owner (pid ≠ 0; a remnant has none).
    pub fn owned(&self) -> impl Iterator<Item = &Conn> {
        self.live.values().filter(|c| c.pid != 0)
    }

    pub fn history(&self) -> impl DoubleEndedIterator<Item = &Closed> + ExactSizeIterator {
        self.history.iter()
    }

    pub fn add_lost(&mut self, n: u64) {
        self.counters.lost = self.counters.lost.saturating_add(n);
    }

    pub fn add_decode_error(&mut self) {
        self.counters.decode_errors += 1;
    }

    /// Whether the table has room for a row keyed `key` (it may replace itself).
    fn admit(&mut self, key: &Key) -> bool {
        if self.len() >= self.limits.max_live && !self.live.contains_key(key) {
            self.counters.table_evicted += 1;
            return false;
        }
        true
    }

    fn insert(&mut self, conn: Conn) -> bool {
        if !self.admit(&conn.key) {
            return false;
        }
        // TIME_WAIT remnants end silently (no event closes them; reconcile does),
        // so they need no 4-tuple index: that keeps a host with many of them cheap.
        if !matches!(conn.key, Key::Sock(_) | Key::Flow { .. }) && conn.state != State::TimeWait {
            self.seeded.insert(conn.tuple(), conn.key);
        }
        self.counters.observed += 1;
        self.live.insert(conn.key, conn);
        true
    }

    fn remove(&mut self, key: &Key) -> Option<Conn> {
        let Some(c) = self.live.remove(key) else {
            let Key::Tuple(t) = key else { return None };
            return self.remnants.remove(t).map(|r| r.row(t));
        };
        if !matches!(key, Key::Sock(_) | Key::Flow { .. }) {
            let t = c.tuple();
            if self.seeded.get(&t) == Some(key) {
                self.seeded.remove(&t);
            }
        }
        Some(c)
    }

    /// Removes the row for an event's socket: by socket address, else the seeded
    /// row with the same 4-tuple.
    fn take(&mut self, sock: u64, tuple: &Tuple) -> Option<Conn> {
        if let Some(c) = self.remove(&Key::Sock(sock)) {
            return Some(c);
        }
        let key = *self.seeded.get(tuple)?;
        self.remove(&key)
    }

    /// A connection ended: counted as short-lived if it was, then kept in history.
    fn end(&mut self, closed: Closed) {
        if !closed.failed && closed.duration_ns().is_some_and(|d| d < SHORT_LIVED_NS) {
            self.counters.short_lived += 1;
        }
        self.push_history(closed);
    }

    fn push_history(&mut self, closed: Closed) {
        // History off (`netta events`): nothing is kept, so nothing is pushed out.
        if self.limits.max_history == 0 {
            return;
        }
        if self.history.len() >= self.limits.max_history {
            self.history.pop_front();
            self.counters.history_evicted += 1;
        } else if self.history.len() == self.history.capacity() {
            // Doubling would overshoot the bound by up to half again: grow to it.
            let more = self.history.len().max(64);
            let max = self.limits.max_history - self.history.len();
            self.history.reserve_exact(more.min(max));
        }
        self.history.push_back(closed);
    }

    fn row_from_event(ev: &ConnEvent, key: Key, state: State) -> Conn {
        Conn {
            key,
            proto: ev.proto,
            local: ev.local,
            remote: ev.remote,
            state,
            direction: ev.direction,
            pid: ev.pid,
            comm: ev.comm,
            owner: ev.owner,
            start_ns: ev.start_ns,
            bytes_sent: ev.bytes_sent,
            bytes_recv: ev.bytes_recv,
            packets: ev.count,
            last_ns: ev.ts_ns,
            inode: 0,
            netns: ev.netns,
            who: ev.who.clone(),
            seen_ns: ev.ts_ns,
            origin: Origin::Event,
            live: Live::default(),
            domain: ev.domain.clone(),
        }
    }

    /// Applies one event. Never fails: unknown sockets and duplicates are expected
    /// (netta may start mid-connection, and records can be lost).
    pub fn apply(&mut self, ev: &ConnEvent) -> Applied {
        self.counters.events += 1;
        match ev.action {
            Action::Opened => self.opened(ev, false),
            Action::Pending => self.opened(ev, true),
            Action::Closed => self.closed(ev, false).0,
            Action::Failed => self.closed(ev, true).0,
            Action::ListenStarted => self.listen_started(ev),
            Action::ListenStopped => self.listen_stopped(ev),
            Action::UdpFlow => self.udp_flow(ev),
            Action::StateChanged => self.state_changed(ev),
            Action::ResetSent => {
                // Evidence for detection; too noisy for the event stream.
                self.counters.resets_sent += 1;
                Applied::Quiet
            }
            Action::EventsLost => {
                self.add_lost(ev.count);
                Applied::Changed
            }
            // Made from this table's own counter: nothing to apply.
            Action::TableEvicted => Applied::Changed,
            // Made from this table's own rows.
            Action::Updated => Applied::Quiet,
        }
    }

    /// An opened (or still pending) socket: a new row, or the owner for a known one.
    fn opened(&mut self, ev: &ConnEvent, pending: bool) -> Applied {
        if let Some(row) = self.live.get_mut(&Key::Sock(ev.sock)) {
            return if pending {
                Applied::Quiet
            } else {
                Self::opened_again(row, ev, &mut self.counters)
            };
        }
        let mut row = Self::row_from_event(ev, Key::Sock(ev.sock), State::Established);
        if pending {
            row.origin = Origin::Pending;
        }
        if let Some(key) = self.seeded.get(&ev.tuple()).copied() {
            if let Some(old) = self.remove(&key) {
                row.inode = old.inode;
                row.inherit_owner(&old);
                if row.domain.is_none() {
                    row.domain = old.domain;
                }
                // The same socket: what the live refresh counted (and reported) stays.
                row.bytes_sent = row.bytes_sent.max(old.bytes_sent);
                row.bytes_recv = row.bytes_recv.max(old.bytes_recv);
                row.live = old.live;
            }
        }
        if !pending {
            self.counters.opened += 1;
        }
        self.insert(row);
        if pending {
            Applied::Quiet
        } else {
            Applied::Changed
        }
    }

    /// An opened event for a row already listed: the first one for a pending row
    /// (its owner is known now) is its opening; others are duplicates.
    fn opened_again(row: &mut Conn, ev: &ConnEvent, counters: &mut Counters) -> Applied {
        let first = row.origin == Origin::Pending;
        if first || (row.owner == OwnerSource::Unknown && ev.owner != OwnerSource::Unknown) {
            row.pid = ev.pid;
            row.comm = ev.comm;
            row.owner = ev.owner;
            row.who = ev.who.clone();
        }
        if !first {
            return Applied::Quiet;
        }
        row.origin = Origin::Event;
        counters.opened += 1;
        Applied::Changed
    }

    /// A closed or failed socket: its row moves to history, keeping what the
    /// event lacks (owner, start, direction) from the row it replaces. Also
    /// what that row knew before (live counters, byte totals), if there was one.
    fn closed(&mut self, ev: &ConnEvent, failed: bool) -> (Applied, Option<(Live, u64, u64)>) {
        let tuple = ev.tuple();
        let old = self.take(ev.sock, &tuple);
        let prior = old.as_ref().map(|c| (c.live, c.bytes_sent, c.bytes_recv));
        let mut conn = Self::row_from_event(ev, Key::Sock(ev.sock), State::Close);
        if let Some(old) = old {
            conn.inherit_owner(&old);
            if conn.start_ns == 0 {
                conn.start_ns = old.start_ns;
            }
            if conn.direction == Direction::Unknown {
                conn.direction = old.direction;
            }
            conn.inode = old.inode;
            conn.live = old.live;
            // Without the kernel's counters (no BTF offsets), the last live sample.
            if conn.bytes_sent == 0 && conn.bytes_recv == 0 {
                conn.bytes_sent = old.bytes_sent;
                conn.bytes_recv = old.bytes_recv;
            }
            if conn.domain.is_none() {
                conn.domain = old.domain;
            }
        }
        if failed {
            conn.state = State::SynSent;
            self.counters.failed += 1;
        } else {
            self.counters.closed += 1;
            self.counters.bytes_sent = self.counters.bytes_sent.saturating_add(conn.bytes_sent);
            self.counters.bytes_recv = self.counters.bytes_recv.saturating_add(conn.bytes_recv);
        }
        let closed = Closed {
            conn,
            end_ns: ev.ts_ns,
            failed,
        };
        self.recent_closed.insert(tuple, ev.ts_ns);
        self.end(closed);
        (Applied::Changed, prior)
    }

    fn listen_started(&mut self, ev: &ConnEvent) -> Applied {
        self.counters.listen_started += 1;
        let mut row = Self::row_from_event(ev, Key::Sock(ev.sock), State::Listen);
        row.remote = unspecified_like(ev.local);
        row.direction = Direction::Unknown;
        if let Some(key) = self.seeded.get(&row.tuple()).copied() {
            self.remove(&key);
        }
        self.insert(row);
        Applied::Changed
    }

    fn listen_stopped(&mut self, ev: &ConnEvent) -> Applied {
        self.counters.listen_stopped += 1;
        self.take(ev.sock, &Tuple::listener(ev.netns, ev.proto, ev.local));
        Applied::Changed
    }

    /// A UDP flow is listed at its first datagram and reported when it ends (see
    /// `expire_flows`), with totals.
    fn udp_flow(&mut self, ev: &ConnEvent) -> Applied {
        let key = Key::Flow {
            sock: ev.sock,
            remote: ev.remote,
        };
        if let Some(row) = self.live.get_mut(&key) {
            row.grow_flow(ev.count, ev.bytes_sent, ev.ts_ns);
            return Applied::Quiet;
        }
        self.counters.udp_flows += 1;
        self.insert(Self::row_from_event(ev, key, State::Flow));
        Applied::Quiet
    }

    fn state_changed(&mut self, ev: &ConnEvent) -> Applied {
        if let (Some(row), Some(st)) = (self.live.get_mut(&Key::Sock(ev.sock)), ev.new_state) {
            row.state = st;
        }
        Applied::Changed
    }

    /// Updates a UDP flow's counters from the kernel map.
    pub fn update_flow(
        &mut self,
        sock: u64,
        remote: SocketAddr,
        packets: u64,
        bytes: u64,
        last_ns: u64,
    ) {
        if let Some(row) = self.live.get_mut(&Key::Flow { sock, remote }) {
            row.grow_flow(packets, bytes, last_ns);
        }
    }

    /// Ends the UDP flows idle since before `idle_before` (all of them with
    /// `u64::MAX`), moves them to history and returns them.
    pub fn expire_flows(&mut self, idle_before: u64) -> Vec<Closed> {
        let keys: Vec<Key> = self
            .live
            .values()
            .filter(|c| matches!(c.key, Key::Flow { .. }) && c.last_ns < idle_before)
            .map(|c| c.key)
            .collect();
        let mut out = Vec::with_capacity(keys.len());
        for k in keys {
            if let Some(conn) = self.remove(&k) {
                self.counters.bytes_sent = self.counters.bytes_sent.saturating_add(conn.bytes_sent);
                let closed = Closed {
                    end_ns: conn.last_ns,
                    conn,
                    failed: false,
                };
                self.push_history(closed.clone());
                out.push(closed);
            }
        }
        out
    }

    /// Brings the table in line with a /proc snapshot of the network namespaces
    /// `read`, taken between `started_ns` and now. Rows /proc lacks are removed
    /// only if the table knew them before the read began and their namespace was
    /// read; rows it adds get owners from `owner_of` (socket inode to process).
    pub fn reconcile(
        &mut self,
        snap: &[ProcSocket],
        read: &[u32],
        started_ns: u64,
        owner_of: &mut dyn FnMut(u64) -> Option<Owner>,
    ) -> ReconcileReport {
        self.reconcile_with(snap, read, started_ns, owner_of, true)
    }

    /// [`Table::reconcile`]; without `keep`, the report has the count of
    /// updates only, not copies of the rows added and removed (with eBPF no
    /// one reads them, and on a busy host they are tens of thousands of
    /// TIME_WAIT rows).
    pub fn reconcile_with(
        &mut self,
        snap: &[ProcSocket],
        read: &[u32],
        started_ns: u64,
        owner_of: &mut dyn FnMut(u64) -> Option<Owner>,
        keep: bool,
    ) -> ReconcileReport {
        let mut report = ReconcileReport::default();
        let listening = Listening::of(snap);
        let tuple_of = |s: &ProcSocket| s.tuple();
        // Snapshot indexes sorted by 4-tuple: one allocation, however big /proc is.
        let mut order: Vec<u32> = (0..snap.len() as u32).collect();
        order.sort_unstable_by_key(|i| tuple_of(&snap[*i as usize]));
        let mut matched = vec![false; snap.len()];
        let mut gone = Vec::new();
        for row in self.live.values_mut() {
            if matches!(row.key, Key::Flow { .. }) {
                continue;
            }
            let t = row.tuple();
            let lo = order.partition_point(|i| tuple_of(&snap[*i as usize]) < t);
            let hi = lo + order[lo..].partition_point(|i| tuple_of(&snap[*i as usize]) == t);
            let group = &order[lo..hi];
            let pick = {
                let free = || group.iter().map(|i| *i as usize).filter(|i| !matched[*i]);
                free()
                    .find(|i| row.inode != 0 && snap[*i].inode == row.inode)
                    .or_else(|| free().next())
            };
            match pick {
                Some(i) => {
                    matched[i] = true;
                    refresh(row, &snap[i], &listening, owner_of, &mut report);
                }
                None if row.seen_ns < started_ns && read.contains(&row.netns) => gone.push(row.key),
                None => {}
            }
        }
        // The remnants take what the rows left: a TIME_WAIT socket without an
        // inode is still one; anything else becomes a full row again.
        let mut promote = Vec::new();
        for (t, r) in &self.remnants {
            let lo = order.partition_point(|i| tuple_of(&snap[*i as usize]) < *t);
            let hi = lo + order[lo..].partition_point(|i| tuple_of(&snap[*i as usize]) == *t);
            let free = || {
                order[lo..hi]
                    .iter()
                    .map(|i| *i as usize)
                    .filter(|i| !matched[*i])
            };
            let remnant = |i: &usize| is_remnant(&snap[*i]);
            match free().find(remnant).or_else(|| free().next()) {
                Some(i) => {
                    matched[i] = true;
                    if !remnant(&i) {
                        promote.push((*t, i));
                    }
                }
                None if r.seen_ns < started_ns && read.contains(&t.netns) => {
                    gone.push(Key::Tuple(*t))
                }
                None => {}
            }
        }
        for (t, i) in promote {
            if let Some(r) = self.remnants.remove(&t) {
                let mut row = r.row(&t);
                refresh(&mut row, &snap[i], &listening, owner_of, &mut report);
                self.live.insert(row.key, row);
            }
        }
        for key in gone {
            if let Some(c) = self.remove(&key) {
                self.counters.healed_removed += 1;
                // What it moved while open stays counted.
                self.counters.bytes_sent = self.counters.bytes_sent.saturating_add(c.bytes_sent);
                self.counters.bytes_recv = self.counters.bytes_recv.saturating_add(c.bytes_recv);
                if keep {
                    report.removed.push(c);
                }
            }
        }
        self.recent_closed.retain(|_, t| *t >= started_ns);
        // Seeding adds every socket at once: one allocation per map, not a rehash
        // per doubling.
        let (mut rows, mut remnants) = (0, 0);
        for (s, _) in snap.iter().zip(&matched).filter(|(_, m)| !**m) {
            if is_remnant(s) {
                remnants += 1;
            } else {
                rows += 1;
            }
        }
        let room = self.limits.max_live.saturating_sub(self.len());
        self.live.reserve(rows.min(room));
        self.remnants.reserve(remnants.min(room));
        for (i, s) in snap.iter().enumerate() {
            if matched[i] {
                continue;
            }
            let t = s.tuple();
            if s.state != State::TimeWait && self.recent_closed.contains_key(&t) {
                continue;
            }
            let key = if s.inode != 0 {
                Key::Inode(s.inode)
            } else {
                Key::Tuple(t)
            };
            if self.live.contains_key(&key) || self.remnants.contains_key(&t) {
                continue;
            }
            let owner = if s.inode != 0 {
                owner_of(s.inode)
            } else {
                None
            };
            if is_remnant(s) {
                let r = Remnant {
                    seen_ns: started_ns,
                    domain: None,
                    uid: s.uid,
                    started: false,
                };
                let copy = keep.then(|| r.row(&t));
                if self.admit(&key) {
                    self.counters.observed += 1;
                    self.counters.healed_added += 1;
                    self.remnants.insert(t, r);
                    report.added.extend(copy);
                }
                continue;
            }
            let conn = Conn {
                key,
                proto: s.proto,
                local: s.local,
                remote: s.remote,
                state: s.state,
                direction: listening.direction(s),
                pid: owner.map_or(0, |o| o.pid),
                comm: owner.map_or(Comm::EMPTY, |o| o.comm),
                owner: if owner.is_some() {
                    OwnerSource::Proc
                } else {
                    OwnerSource::Unknown
                },
                start_ns: 0,
                bytes_sent: 0,
                bytes_recv: 0,
                packets: 0,
                last_ns: started_ns,
                inode: s.inode,
                netns: s.netns,
                who: Who {
                    uid: Some(s.uid),
                    ..Who::default()
                },
                seen_ns: started_ns,
                origin: Origin::Proc,
                live: Live::default(),
                domain: None,
            };
            let copy = keep.then(|| conn.clone());
            if self.insert(conn) {
                self.counters.healed_added += 1;
                report.added.extend(copy);
            }
        }
        report
    }

    /// Counts the differences a /proc poll found as opens and closes (polling mode,
    /// where no events exist). Rows that appeared started within the last poll.
    pub fn count_polled(&mut self, report: &ReconcileReport, now: u64) {
        for c in &report.added {
            if c.state.is_listener() {
                self.counters.listen_started += 1;
            } else {
                self.counters.opened += 1;
            }
            if let Some(row) = self.live.get_mut(&c.key) {
                row.start_ns = c.seen_ns;
            } else if let Key::Tuple(t) = &c.key {
                if let Some(r) = self.remnants.get_mut(t) {
                    r.started = true;
                }
            }
        }
        for c in &report.removed {
            if c.state.is_listener() {
                self.counters.listen_stopped += 1;
                continue;
            }
            self.counters.closed += 1;
            self.end(Closed {
                conn: c.clone(),
                end_ns: now,
                failed: false,
            });
        }
    }

    /// The name the live row of this event's socket was given when it began.
    pub fn domain_of(&self, ev: &ConnEvent) -> Option<&Domain> {
        let key = match ev.action {
            Action::UdpFlow => Key::Flow {
                sock: ev.sock,
                remote: ev.remote,
            },
            _ => Key::Sock(ev.sock),
        };
        let row = match self.live.get(&key) {
            Some(row) => row,
            None => self.live.get(self.seeded.get(&ev.tuple())?)?,
        };
        row.domain.as_ref()
    }

    /// Names the rows /proc brought in (netta started later, or polling) that
    /// have a peer and no name yet.
    pub fn name_rows(&mut self, mut name: impl FnMut(std::net::IpAddr) -> Option<Domain>) {
        for row in self.live.values_mut() {
            if row.domain.is_none() && row.origin == Origin::Proc && row.has_peer() {
                row.domain = name(row.remote.ip());
            }
        }
        for (t, r) in self.remnants.iter_mut() {
            if r.domain.is_none() && is_peer(&t.remote) {
                r.domain = name(t.remote.ip());
            }
        }
    }

    /// Gives rows whose process is not known yet what `who` knows of their pid
    /// (rows /proc brought in, and owners found later), keeping what they have.
    pub fn identify_rows(&mut self, mut who: impl FnMut(u32) -> Option<Who>) {
        for row in self.live.values_mut() {
            if row.pid != 0 && row.who.process.is_none() {
                if let Some(w) = who(row.pid) {
                    // The socket's user (from /proc/net) stays the row's.
                    let uid = row.who.uid;
                    row.who.fill_from(&w);
                    if uid.is_some() {
                        row.who.uid = uid;
                    }
                }
            }
        }
    }

    /// A copy for rendering and statistics, taken under the lock and used outside it.
    pub fn snapshot(&self) -> Snapshot {
        Snapshot {
            history: self.history.iter().cloned().collect(),
            ..self.live_snapshot()
        }
    }

    /// The open rows and the counters, without the history: what live views
    /// read every second.
    pub fn live_snapshot(&self) -> Snapshot {
        Snapshot {
            conns: self.conns().map(Cow::into_owned).collect(),
            history: Vec::new(),
            counters: self.counters(),
        }
    }

    /// The open rows the table rules read every second: no rule looks at a
    /// TIME_WAIT remnant that sent nothing (the compact ones never did), and a
    /// busy host has tens of thousands of them.
    pub fn rules_rows(&self) -> Vec<Conn> {
        self.live
            .values()
            .filter(|c| c.state != State::TimeWait || c.bytes_sent != 0)
            .cloned()
            .collect()
    }
}

/// Brings a row up to date with its /proc socket.
/// The TCP listening ends of a snapshot. A connection the snapshot shows
/// before any event of it (seeded, or accepted and still idle: the kernel
/// reports an accepted socket once its owner acts) takes its direction from
/// them: a local end one of them covers was accepted (ingress), any other
/// connected out (egress).
struct Listening(FxHashSet<(u32, SocketAddr)>);

impl Listening {
    fn of(snap: &[ProcSocket]) -> Listening {
        Listening(
            snap.iter()
                .filter(|s| s.proto == Proto::Tcp && s.state == State::Listen)
                .map(|s| (s.netns, s.local))
                .collect(),
        )
    }

    fn direction(&self, s: &ProcSocket) -> Direction {
        if s.proto != Proto::Tcp || s.state.is_listener() {
            return Direction::Unknown;
        }
        let port = s.local.port();
        let covers = |ip: IpAddr| self.0.contains(&(s.netns, SocketAddr::new(ip, port)));
        // A `[::]` listener takes IPv4 too (unless IPV6_V6ONLY); `0.0.0.0` only IPv4.
        let wildcard = covers(Ipv6Addr::UNSPECIFIED.into())
            || (s.local.is_ipv4() && covers(Ipv4Addr::UNSPECIFIED.into()));
        if wildcard || covers(s.local.ip()) {
            Direction::Ingress
        } else {
            Direction::Egress
        }
    }
}

fn refresh(
    row: &mut Conn,
    s: &ProcSocket,
    listening: &Listening,
    owner_of: &mut dyn FnMut(u64) -> Option<Owner>,
    report: &mut ReconcileReport,
) {
    if row.direction == Direction::Unknown {
        row.direction = listening.direction(s);
    }
    if row.state != s.state {
        row.state = s.state;
        report.updated += 1;
    }
    row.inode = s.inode;
    row.netns = s.netns;
    if row.who.uid.is_none() {
        row.who.uid = Some(s.uid);
    }
    if row.owner == OwnerSource::Unknown && s.inode != 0 {
        if let Some(o) = owner_of(s.inode) {
            row.pid = o.pid;
            row.comm = o.comm;
            row.owner = OwnerSource::Proc;
        }
    }
}

/// A point-in-time copy of the table.
#[derive(Clone, Debug, Default, serde::Serialize, serde::Deserialize)]
pub struct Snapshot {
    pub conns: Vec<Conn>,
    pub history: Vec<Closed>,
    pub counters: Counters,
}

impl Snapshot {
    /// Every row keyed by opaque socket ids instead of kernel addresses.
    pub fn hide_sockets(&mut self, ids: &SockIds) {
        let rows = self
            .conns
            .iter_mut()
            .chain(self.history.iter_mut().map(|h| &mut h.conn));
        for c in rows {
            c.key = c.key.hidden(ids);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::event::ConnEvent;

    fn ev(action: Action, sock: u64, local: &str, remote: &str, ts: u64) -> ConnEvent {
        let mut e = ConnEvent::lost(ts, 0);
        e.action = action;
        e.sock = sock;
        e.local = local.parse().unwrap();
        e.remote = remote.parse().unwrap();
        e.start_ns = 100;
        e.pid = 7;
        e.comm = Comm::from_bytes(b"curl");
        e.owner = OwnerSource::Hook;
        e.direction = Direction::Egress;
        e
    }

    fn proc_row(local: &str, remote: &str, state: State, inode: u64) -> ProcSocket {
        ProcSocket {
            proto: Proto::Tcp,
            local: local.parse().unwrap(),
            remote: remote.parse().unwrap(),
            state,
            inode,
            uid: 1000,
            netns: 0,
        }
    }

    #[test]
    fn open_then_close_moves_to_history_with_duration() {
        let mut t = Table::default();
        assert_eq!(
            t.apply(&ev(
                Action::Opened,
                1,
                "127.0.0.1:5000",
                "127.0.0.1:80",
                200
            )),
            Applied::Changed
        );
        assert_eq!(t.len(), 1);
        // A duplicate OPENED (two CPUs racing) changes nothing.
        assert_eq!(
            t.apply(&ev(
                Action::Opened,
                1,
                "127.0.0.1:5000",
                "127.0.0.1:80",
                201
            )),
            Applied::Quiet
        );
        let mut close = ev(Action::Closed, 1, "127.0.0.1:5000", "127.0.0.1:80", 1_100);
        close.bytes_sent = 10;
        close.bytes_recv = 30;
        t.apply(&close);
        assert!(t.is_empty());
        let h: Vec<_> = t.history().collect();
        assert_eq!(h.len(), 1);
        assert_eq!(h[0].duration_ns(), Some(1_000));
        let c = t.counters();
        assert_eq!((c.opened, c.closed, c.short_lived), (1, 1, 1));
        assert_eq!((c.bytes_sent, c.bytes_recv), (10, 30));
    }

    #[test]
    fn pending_accepts_are_listed_at_once_and_reported_when_opened() {
        let mut t = Table::default();
        let mut p = ev(Action::Pending, 5, "127.0.0.1:80", "127.0.0.1:5000", 100);
        p.direction = Direction::Ingress;
        p.owner = OwnerSource::Listener;
        p.pid = 1;
        assert_eq!(t.apply(&p), Applied::Quiet);
        assert_eq!(t.len(), 1, "listed before its owner is known");
        assert_eq!(t.counters().opened, 0);
        let mut o = p;
        o.action = Action::Opened;
        o.owner = OwnerSource::Hook;
        o.pid = 77;
        assert_eq!(
            t.apply(&o),
            Applied::Changed,
            "reported once, with the owner"
        );
        assert_eq!(t.get(&Key::Sock(5)).unwrap().pid, 77);
        assert_eq!(t.apply(&o), Applied::Quiet);
        assert_eq!(t.counters().opened, 1);
    }

    #[test]
    fn close_of_a_seeded_socket_removes_it_by_tuple() {
        let mut t = Table::default();
        let snap = [proc_row(
            "10.0.0.1:22",
            "10.0.0.2:5555",
            State::Established,
            99,
        )];
        let r = t.reconcile(&snap, &[0], 50, &mut |ino| {
            (ino == 99).then_some(Owner {
                pid: 1,
                comm: Comm::from_bytes(b"sshd"),
            })
        });
        assert_eq!(r.added.len(), 1);
        assert_eq!(t.get(&Key::Inode(99)).unwrap().comm.to_string(), "sshd");
        let mut close = ev(Action::Closed, 0xdead, "10.0.0.1:22", "10.0.0.2:5555", 500);
        close.owner = OwnerSource::Unknown;
        close.start_ns = 0;
        t.apply(&close);
        assert!(t.is_empty());
        let h = t.history().next().unwrap();
        assert_eq!(h.conn.comm.to_string(), "sshd", "owner kept from /proc");
        assert_eq!(h.duration_ns(), None);
    }

    #[test]
    fn reconcile_heals_missed_events_but_spares_fresh_rows() {
        let mut t = Table::default();
        t.apply(&ev(Action::Opened, 1, "127.0.0.1:1", "127.0.0.1:2", 10));
        t.apply(&ev(Action::Opened, 2, "127.0.0.1:3", "127.0.0.1:4", 1_000));
        // The snapshot began at 500: socket 1 (known at 10) is gone, socket 2 is newer.
        let snap = [proc_row("127.0.0.1:9", "127.0.0.1:10", State::CloseWait, 5)];
        let r = t.reconcile(&snap, &[0], 500, &mut |_| None);
        assert_eq!(r.removed.len(), 1);
        assert_eq!(r.removed[0].key, Key::Sock(1));
        assert!(t.get(&Key::Sock(2)).is_some());
        assert_eq!(t.get(&Key::Inode(5)).unwrap().state, State::CloseWait);
        assert_eq!(t.counters().healed_removed, 1);
        assert_eq!(t.counters().healed_added, 1);
    }

    #[test]
    fn reconcile_updates_states_and_does_not_resurrect_closed() {
        let mut t = Table::default();
        t.apply(&ev(Action::Opened, 1, "127.0.0.1:1", "127.0.0.1:2", 10));
        t.apply(&ev(Action::Opened, 3, "127.0.0.1:7", "127.0.0.1:8", 10));
        t.apply(&ev(Action::Closed, 3, "127.0.0.1:7", "127.0.0.1:8", 600));
        let snap = [
            proc_row("127.0.0.1:1", "127.0.0.1:2", State::FinWait2, 11),
            // Read before the close landed:
            proc_row("127.0.0.1:7", "127.0.0.1:8", State::Established, 12),
        ];
        let r = t.reconcile(&snap, &[0], 500, &mut |_| None);
        assert_eq!(t.get(&Key::Sock(1)).unwrap().state, State::FinWait2);
        assert_eq!(r.updated, 1);
        assert!(r.added.is_empty(), "{:?}", r.added);
        assert_eq!(t.len(), 1);
    }

    #[test]
    fn a_quiet_reconcile_heals_the_same_rows_without_copies() {
        let snap = [
            proc_row("127.0.0.1:1", "127.0.0.1:2", State::Established, 11),
            proc_row("127.0.0.1:3", "127.0.0.1:4", State::TimeWait, 0),
        ];
        let (mut kept, mut quiet) = (Table::default(), Table::default());
        let r = kept.reconcile(&snap, &[0], 10, &mut |_| None);
        let q = quiet.reconcile_with(&snap, &[0], 10, &mut |_| None, false);
        assert_eq!(r.added.len(), 2);
        assert!(q.added.is_empty() && q.removed.is_empty());
        assert_eq!(quiet.len(), kept.len());
        assert_eq!(quiet.counters().healed_added, 2);
        // Gone from /proc: removed all the same.
        quiet.reconcile_with(&snap[..1], &[0], 20, &mut |_| None, false);
        assert_eq!(quiet.len(), 1);
        assert_eq!(quiet.counters().healed_removed, 1);
    }

    #[test]
    fn the_rules_read_every_row_but_silent_time_wait_remnants() {
        let mut t = Table::default();
        t.apply(&ev(Action::Opened, 1, "127.0.0.1:1", "127.0.0.1:2", 10));
        let snap = [
            proc_row("127.0.0.1:1", "127.0.0.1:2", State::Established, 11),
            proc_row("127.0.0.1:3", "127.0.0.1:4", State::TimeWait, 0),
        ];
        t.reconcile(&snap, &[0], 20, &mut |_| None);
        assert_eq!(t.len(), 2);
        let rows = t.rules_rows();
        assert_eq!(rows.len(), 1);
        assert_eq!(rows[0].key, Key::Sock(1));
    }

    #[test]
    fn time_wait_remnants_list_as_full_rows_and_become_rows_again() {
        let mut t = Table::default();
        let tw = proc_row("10.0.0.1:40000", "10.0.0.2:80", State::TimeWait, 0);
        let r = t.reconcile(&[tw], &[0], 10, &mut |_| None);
        let key = Key::Tuple(tw.tuple());
        // The row it lists is the one a full row would be.
        let want = Conn {
            key,
            proto: Proto::Tcp,
            local: tw.local,
            remote: tw.remote,
            state: State::TimeWait,
            direction: Direction::Unknown,
            pid: 0,
            comm: Comm::EMPTY,
            owner: OwnerSource::Unknown,
            start_ns: 0,
            bytes_sent: 0,
            bytes_recv: 0,
            packets: 0,
            last_ns: 10,
            inode: 0,
            netns: 0,
            who: Who {
                uid: Some(1000),
                ..Who::default()
            },
            seen_ns: 10,
            origin: Origin::Proc,
            live: Live::default(),
            domain: None,
        };
        assert_eq!(r.added, vec![want.clone()]);
        assert_eq!(
            t.conns().map(Cow::into_owned).collect::<Vec<_>>(),
            std::slice::from_ref(&want)
        );
        assert_eq!(t.live_snapshot().conns, std::slice::from_ref(&want));
        assert_eq!(t.get(&key).as_deref(), Some(&want));
        assert_eq!((t.len(), t.counters().observed), (1, 1));
        t.name_rows(|_| Some(Domain::parse("web.example").unwrap()));
        assert_eq!(
            t.get(&key).unwrap().domain,
            Some(Domain::parse("web.example").unwrap())
        );
        // Polling counts it as opened when seen.
        let polled = ReconcileReport {
            added: vec![want.clone()],
            ..ReconcileReport::default()
        };
        t.count_polled(&polled, 10);
        assert_eq!(t.get(&key).unwrap().start_ns, 10);
        // Still TIME_WAIT: nothing changes.
        let r = t.reconcile(&[tw], &[0], 20, &mut |_| None);
        assert_eq!((r.updated, r.added.len(), r.removed.len()), (0, 0, 0));
        // The tuple in use again, with an inode: a full row, owner found.
        let mut est = tw;
        (est.state, est.inode) = (State::Established, 77);
        let r = t.reconcile(&[est], &[0], 30, &mut |ino| {
            (ino == 77).then_some(Owner {
                pid: 5,
                comm: Comm::from_bytes(b"curl"),
            })
        });
        assert_eq!((r.updated, r.added.len()), (1, 0));
        let row = t.get(&key).unwrap();
        assert!(matches!(row, Cow::Borrowed(_)));
        assert_eq!((row.state, row.inode, row.pid), (State::Established, 77, 5));
        assert_eq!(t.owned().count(), 1);
        // Gone from /proc: removed and counted.
        let mut t = Table::default();
        t.reconcile(&[tw], &[0], 10, &mut |_| None);
        let r = t.reconcile(&[], &[0], 20, &mut |_| None);
        assert_eq!(r.removed.len(), 1);
        assert!(t.is_empty());
        assert_eq!(t.counters().healed_removed, 1);
    }

    #[test]
    fn time_wait_remnants_count_against_the_cap() {
        let mut t = Table::new(Limits {
            max_live: 1,
            max_history: 1,
        });
        let snap = [
            proc_row("10.0.0.1:1", "10.0.0.2:80", State::TimeWait, 0),
            proc_row("10.0.0.1:2", "10.0.0.2:80", State::TimeWait, 0),
        ];
        t.reconcile(&snap, &[0], 10, &mut |_| None);
        assert_eq!(t.len(), 1);
        assert_eq!(t.counters().table_evicted, 1);
    }

    #[test]
    fn reuseport_listeners_with_one_tuple_are_all_kept() {
        let mut t = Table::default();
        let snap = [
            proc_row("0.0.0.0:80", "0.0.0.0:0", State::Listen, 1),
            proc_row("0.0.0.0:80", "0.0.0.0:0", State::Listen, 2),
        ];
        t.reconcile(&snap, &[0], 10, &mut |_| None);
        assert_eq!(t.len(), 2);
        let r = t.reconcile(&snap, &[0], 20, &mut |_| None);
        assert!(r.added.is_empty() && r.removed.is_empty());
        assert_eq!(t.len(), 2);
    }

    /// `action` for sockets `socks` (local port = socket), all to 127.0.0.1:80.
    fn apply_each(t: &mut Table, action: Action, socks: std::ops::RangeInclusive<u64>, ts: u64) {
        for s in socks {
            t.apply(&ev(
                action,
                s,
                &format!("127.0.0.1:{s}"),
                "127.0.0.1:80",
                ts,
            ));
        }
    }

    fn limited(max_live: usize, max_history: usize) -> Table {
        Table::new(Limits {
            max_live,
            max_history,
        })
    }

    #[test]
    fn limits_bound_table_and_history() {
        let mut t = limited(2, 1);
        apply_each(&mut t, Action::Opened, 1..=3, 10);
        assert_eq!(t.len(), 2);
        assert_eq!(t.counters().table_evicted, 1);
        apply_each(&mut t, Action::Closed, 1..=2, 20);
        assert_eq!(t.history().len(), 1);
        assert_eq!(t.counters().history_evicted, 1);
    }

    /// Rows the socket refresh finds before any event take their direction from
    /// the snapshot's listeners: in the same namespace, on the local address or
    /// a wildcard (`[::]` takes IPv4 too, `0.0.0.0` only IPv4).
    #[test]
    fn refreshed_rows_take_their_direction_from_the_listeners() {
        let sock = |local: &str, remote: &str, state: State, netns: u32| ProcSocket {
            proto: Proto::Tcp,
            local: local.parse().unwrap(),
            remote: remote.parse().unwrap(),
            state,
            inode: 0,
            uid: 0,
            netns,
        };
        let est = State::Established;
        let snap = [
            sock("0.0.0.0:80", "0.0.0.0:0", State::Listen, 1),
            sock("[::]:8443", "[::]:0", State::Listen, 1),
            sock("127.0.0.9:25", "0.0.0.0:0", State::Listen, 1),
            sock("127.0.0.1:80", "127.0.0.1:5000", est, 1),
            sock("127.0.0.1:5000", "127.0.0.1:80", est, 1),
            sock("127.0.0.1:8443", "127.0.0.1:5001", est, 1),
            sock("[::1]:80", "[::1]:5002", est, 1),
            sock("127.0.0.9:25", "127.0.0.1:5003", est, 1),
            sock("127.0.0.8:25", "127.0.0.1:5004", est, 1),
            sock("127.0.0.1:80", "127.0.0.1:5005", est, 2),
        ];
        let mut t = Table::default();
        t.reconcile(&snap, &[1, 2], 10, &mut |_| None);
        let dir = |local: &str, remote: &str, netns: u32| {
            let s = sock(local, remote, est, netns);
            t.conns()
                .find(|c| c.tuple() == s.tuple())
                .map(|c| c.direction)
                .unwrap()
        };
        assert_eq!(dir("127.0.0.1:80", "127.0.0.1:5000", 1), Direction::Ingress);
        assert_eq!(dir("127.0.0.1:5000", "127.0.0.1:80", 1), Direction::Egress);
        assert_eq!(
            dir("127.0.0.1:8443", "127.0.0.1:5001", 1),
            Direction::Ingress
        );
        assert_eq!(dir("[::1]:80", "[::1]:5002", 1), Direction::Egress);
        assert_eq!(dir("127.0.0.9:25", "127.0.0.1:5003", 1), Direction::Ingress);
        assert_eq!(dir("127.0.0.8:25", "127.0.0.1:5004", 1), Direction::Egress);
        assert_eq!(dir("127.0.0.1:80", "127.0.0.1:5005", 2), Direction::Egress);
        let listener = t.conns().find(|c| c.state == State::Listen).unwrap();
        assert_eq!(listener.direction, Direction::Unknown);
    }

    /// With history off nothing is kept, and no close counts as pushed out.
    #[test]
    fn history_off_keeps_and_evicts_nothing() {
        let mut t = limited(8, 0);
        apply_each(&mut t, Action::Opened, 1..=3, 10);
        apply_each(&mut t, Action::Closed, 1..=3, 20);
        assert_eq!(t.len(), 0);
        assert_eq!(t.history().len(), 0);
        assert_eq!(t.counters().history_evicted, 0);
    }

    #[test]
    fn udp_flows_aggregate_and_expire_into_history() {
        let mut t = Table::default();
        let mut f = ev(Action::UdpFlow, 9, "0.0.0.0:4000", "127.0.0.53:53", 100);
        f.proto = Proto::Udp;
        f.count = 1;
        f.bytes_sent = 40;
        assert_eq!(t.apply(&f), Applied::Quiet);
        let remote = f.remote;
        t.update_flow(9, remote, 1_000, 40_000, 900);
        assert!(t.expire_flows(500).is_empty(), "still active at 900");
        let done = t.expire_flows(1_000);
        assert_eq!(done.len(), 1);
        assert_eq!(done[0].conn.packets, 1_000);
        assert_eq!(done[0].conn.bytes_sent, 40_000);
        assert!(t.is_empty());
        assert_eq!(t.counters().udp_flows, 1);
    }

    #[test]
    fn listeners_show_an_unspecified_remote() {
        let mut t = Table::default();
        t.apply(&ev(Action::ListenStarted, 4, "[::]:8080", "[::]:0", 10));
        let row = t.get(&Key::Sock(4)).unwrap();
        assert_eq!(row.state, State::Listen);
        assert!(!row.has_peer());
        t.apply(&ev(Action::ListenStopped, 4, "[::]:8080", "[::]:0", 20));
        assert!(t.is_empty());
    }
}
