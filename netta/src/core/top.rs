//! `netta top`'s state and everything it computes, apart from drawing: the
//! header's rates from two snapshots, the connection rows (filtered with the
//! `list` filter, sorted), per-process totals, the selected connection's events
//! and bytes over time, and what each key does. Pure: time is passed in, so the
//! rendering tests (`render::top`) feed it fixed states.
//!
//! A frame must stay cheap with tens of thousands of connections: a
//! [`Picture`] of the table is one compact row per connection (what an
//! attached `top` gets from the agent's API, instead of the whole table), an
//! update is linear in it (rows are `Copy`, no per-row allocation; service
//! names are looked up only for the rows drawn), and the renderer draws only
//! the visible rows.
use std::collections::VecDeque;
use std::sync::Arc;

use rustc_hash::{FxHashMap, FxHashSet};

use crate::core::event::{Action, ConnEvent, Direction, Proto, State, Who};
use crate::core::filter::{Filter, Subject};
use crate::core::sanitize::Comm;
use crate::core::services::Services;
use crate::core::table::{Conn, Counters, Key, Snapshot, Tuple};

const SEC: u64 = 1_000_000_000;
/// Samples of a connection's bytes per second kept for its sparkline.
pub const SPARK_LEN: usize = 120;
/// Events kept per connection for the detail pane, and connections with events.
const EVENTS_PER_CONN: usize = 16;
const MAX_EVENT_CONNS: usize = 4096;
const MAX_ALERTS: usize = 200;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Sort {
    Rate,
    Bytes,
    Age,
    Process,
}

impl Sort {
    pub fn name(self) -> &'static str {
        match self {
            Sort::Rate => "rate",
            Sort::Bytes => "bytes",
            Sort::Age => "age",
            Sort::Process => "process",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Pane {
    Connections,
    Processes,
    Alerts,
}

/// Keys, as `top` understands them (the terminal layer maps real keys here).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Input {
    Char(char),
    Up,
    Down,
    PageUp,
    PageDown,
    Enter,
    Esc,
    Backspace,
    Tab,
    /// Ctrl+C.
    Interrupt,
}

/// What a key asks of the program.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Command {
    None,
    Quit,
}

/// The header line's figures.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Header {
    pub mode: String,
    pub uptime_ns: u64,
    pub new_per_s: f64,
    pub closes_per_s: f64,
    pub failed_per_s: f64,
    pub in_per_s: u64,
    pub out_per_s: u64,
    pub live: usize,
    pub listening: usize,
    pub lost: u64,
    pub evicted: u64,
}

/// One connection as the table shows it (text escaped at render time). On the
/// agent's API a JSON array, not an object: a picture of 10,000 rows is then
/// about a quarter of the table's JSON.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(from = "RowWire", into = "RowWire")]
pub struct Row {
    pub key: Key,
    pub proto: Proto,
    pub pid: u32,
    pub comm: Comm,
    pub local: std::net::SocketAddr,
    pub remote: std::net::SocketAddr,
    pub has_peer: bool,
    pub state: State,
    pub rate_in: u64,
    pub rate_out: u64,
    pub sent: u64,
    pub recv: u64,
    /// None when the start predates netta.
    pub age_ns: Option<u64>,
    pub rtt_us: u32,
    pub retrans: u32,
    pub direction: Direction,
    /// Inode of the network namespace (0: unknown).
    pub netns: u32,
    /// What is known of the owner: an index into the picture's `owners`
    /// ([`NO_OWNER`]: nothing), which rows of one process share.
    pub owner: u32,
}

/// A row whose owner nothing is known of.
pub const NO_OWNER: u32 = u32::MAX;

/// [`Row`]'s fields in order (the last three together: serde's tuples stop at 16).
type RowWire = (
    Key,
    Proto,
    u32,
    Comm,
    std::net::SocketAddr,
    std::net::SocketAddr,
    bool,
    State,
    u64,
    u64,
    u64,
    u64,
    Option<u64>,
    u32,
    u32,
    (u32, u32, Direction),
);

impl From<Row> for RowWire {
    fn from(r: Row) -> RowWire {
        (
            r.key,
            r.proto,
            r.pid,
            r.comm,
            r.local,
            r.remote,
            r.has_peer,
            r.state,
            r.rate_in,
            r.rate_out,
            r.sent,
            r.recv,
            r.age_ns,
            r.rtt_us,
            r.retrans,
            (r.netns, r.owner, r.direction),
        )
    }
}

impl From<RowWire> for Row {
    fn from(w: RowWire) -> Row {
        let (key, proto, pid, comm, local, remote, has_peer, state, rate_in, rate_out) =
            (w.0, w.1, w.2, w.3, w.4, w.5, w.6, w.7, w.8, w.9);
        Row {
            key,
            proto,
            pid,
            comm,
            local,
            remote,
            has_peer,
            state,
            rate_in,
            rate_out,
            sent: w.10,
            recv: w.11,
            age_ns: w.12,
            rtt_us: w.13,
            retrans: w.14,
            netns: w.15 .0,
            owner: w.15 .1,
            direction: w.15 .2,
        }
    }
}

/// What `top` needs of the table at one moment: its connections as rows
/// (listeners counted, not listed) and the counters.
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Picture {
    pub counters: Counters,
    pub listening: usize,
    /// Bytes per second over all connections.
    pub in_per_s: u64,
    pub out_per_s: u64,
    pub rows: Vec<Row>,
    /// The owners the rows name (`Row::owner`), each once.
    #[serde(default)]
    pub owners: Vec<Who>,
}

impl Picture {
    /// The table's rows at `now`. `key` gives the key each row is shown with:
    /// for another process, opaque socket ids, never kernel addresses.
    pub fn of<C: std::borrow::Borrow<Conn>>(
        conns: impl IntoIterator<Item = C>,
        counters: Counters,
        now: u64,
        key: impl Fn(Key) -> Key,
    ) -> Picture {
        let mut p = Picture {
            counters,
            ..Picture::default()
        };
        // One entry per owner: rows of one process share it (the same `Arc`s).
        let mut owners: FxHashMap<OwnerKey, u32> = FxHashMap::default();
        for c in conns {
            let c: &Conn = c.borrow();
            p.in_per_s = p.in_per_s.saturating_add(c.live.rate_recv);
            p.out_per_s = p.out_per_s.saturating_add(c.live.rate_sent);
            if c.state.is_listener() {
                p.listening += 1;
            } else {
                let owner = if c.who == Who::default() {
                    NO_OWNER
                } else {
                    *owners.entry(owner_key(&c.who)).or_insert_with(|| {
                        p.owners.push(c.who.clone());
                        p.owners.len() as u32 - 1
                    })
                };
                p.rows.push(Row {
                    key: key(c.key),
                    owner,
                    ..row(c, now)
                });
            }
        }
        p
    }

    /// From a snapshot (keys as they are).
    pub fn of_snapshot(snap: &Snapshot, now: u64) -> Picture {
        Picture::of(&snap.conns, snap.counters, now, |k| k)
    }
}

/// What tells owners apart cheaply: the user, the cgroup, and the process and
/// container records (shared, so compared by address).
type OwnerKey = (
    Option<u32>,
    u64,
    usize,
    usize,
    Option<crate::core::sanitize::Text>,
);

fn owner_key(w: &Who) -> OwnerKey {
    (
        w.uid,
        w.cgroup,
        w.process.as_ref().map_or(0, |p| Arc::as_ptr(p) as usize),
        w.container.as_ref().map_or(0, |c| Arc::as_ptr(c) as usize),
        w.user.clone(),
    )
}

impl Row {
    pub fn tuple(&self) -> Tuple {
        Tuple::new(self.netns, self.proto, self.local, self.remote)
    }

    pub fn rate(&self) -> u64 {
        self.rate_in.saturating_add(self.rate_out)
    }
    pub fn total(&self) -> u64 {
        self.sent.saturating_add(self.recv)
    }

    fn subject<'a>(&self, owners: &'a [Who]) -> Subject<'a> {
        Subject {
            state: self.state,
            proto: self.proto,
            local: self.local,
            remote: self.has_peer.then_some(self.remote),
            pid: self.pid,
            comm: self.comm,
            direction: self.direction,
            netns: self.netns,
            who: owners.get(self.owner as usize),
        }
    }
}

/// One process in the processes view.
#[derive(Clone, Debug, PartialEq)]
pub struct ProcRow {
    pub pid: u32,
    pub comm: Comm,
    pub connections: usize,
    pub rate_in: u64,
    pub rate_out: u64,
    pub total: u64,
}

/// An alert as the pane lists it (made from `detect::Alert` by the app).
#[derive(Clone, Debug, PartialEq)]
pub struct AlertLine {
    pub last_ns: u64,
    pub severity: &'static str,
    pub rule: &'static str,
    pub key: String,
    pub message: String,
}

/// The whole screen's state.
pub struct Top {
    pub header: Header,
    pub rows: Vec<Row>,
    pub procs: Vec<ProcRow>,
    pub alerts: Vec<AlertLine>,
    pub sort: Sort,
    pub pane: Pane,
    /// The filter words in force (`list`'s filter, see [`Filter::parse_words`]).
    pub filter_text: String,
    filter: Filter,
    /// Being typed after `/`; `Some` while the prompt is open.
    pub editing: Option<String>,
    /// The last filter words that did not parse, and why.
    pub filter_error: Option<String>,
    pub paused: bool,
    pub help: bool,
    pub detail: bool,
    pub selected: usize,
    /// Rows scrolled off the top (kept by the renderer to follow the selection).
    pub offset: usize,
    /// The time of the last update (kernel clock).
    pub now_ns: u64,
    prev: Option<(u64, Counters)>,
    services: Services,
    /// The last picture's connections (listeners left out), unfiltered, and
    /// their owners.
    all: Vec<Row>,
    owners: Vec<Who>,
    /// Indexes into `all` of the listed rows (reused between pictures).
    order: Vec<u32>,
    /// Updates so far: tells which sparklines belong to connections still open.
    generation: u64,
    spark: FxHashMap<Key, Spark>,
    events: FxHashMap<Tuple, VecDeque<(u64, Action)>>,
    /// The update whose rows `events` was last pruned to.
    events_pruned: u64,
}

/// A connection's bytes per second, one sample per update, kept from its first
/// sample that moved data (idle connections cost nothing).
struct Spark {
    seen: u64,
    samples: VecDeque<u64>,
}

impl Default for Top {
    fn default() -> Self {
        Top::new(String::new(), Services::default())
    }
}

impl Top {
    pub fn new(mode: String, services: Services) -> Top {
        Top {
            header: Header {
                mode,
                ..Header::default()
            },
            rows: Vec::new(),
            procs: Vec::new(),
            alerts: Vec::new(),
            sort: Sort::Rate,
            pane: Pane::Connections,
            filter_text: String::new(),
            filter: Filter::default(),
            editing: None,
            filter_error: None,
            paused: false,
            help: false,
            detail: false,
            selected: 0,
            offset: 0,
            now_ns: 0,
            prev: None,
            services,
            all: Vec::new(),
            owners: Vec::new(),
            order: Vec::new(),
            generation: 0,
            spark: FxHashMap::default(),
            events: FxHashMap::default(),
            events_pruned: 0,
        }
    }

    /// A new picture of the table at `now` (kernel clock), the agent up since
    /// `started_ns`. Paused, only the clock moves.
    pub fn update(&mut self, pic: &Picture, now: u64, started_ns: u64) {
        self.header.uptime_ns = now.saturating_sub(started_ns);
        self.now_ns = now;
        if self.paused {
            return;
        }
        let c = pic.counters;
        let h = &mut self.header;
        if let Some((then, p)) = self.prev {
            let span = now.saturating_sub(then);
            if span > 0 {
                let per_s = |a: u64, b: u64| a.saturating_sub(b) as f64 * SEC as f64 / span as f64;
                h.new_per_s = per_s(c.opened, p.opened);
                h.closes_per_s = per_s(c.closed, p.closed);
                h.failed_per_s = per_s(c.failed, p.failed);
            }
        }
        self.prev = Some((now, c));
        h.lost = c.lost;
        h.evicted = c.table_evicted;
        h.listening = pic.listening;
        h.live = pic.rows.len();
        h.in_per_s = pic.in_per_s;
        h.out_per_s = pic.out_per_s;
        self.all.clear();
        self.all.extend_from_slice(&pic.rows);
        self.owners.clone_from(&pic.owners);
        // Sparklines of the connections still open, one sample per update.
        self.generation += 1;
        let generation = self.generation;
        for r in &pic.rows {
            let spark = match self.spark.get_mut(&r.key) {
                Some(s) => s,
                None if r.rate() == 0 => continue,
                None => self.spark.entry(r.key).or_insert(Spark {
                    seen: 0,
                    samples: VecDeque::new(),
                }),
            };
            spark.seen = generation;
            if spark.samples.len() == SPARK_LEN {
                spark.samples.pop_front();
            }
            spark.samples.push_back(r.rate());
        }
        self.spark.retain(|_, s| s.seen == generation);
        self.rebuild();
    }

    /// The listed rows from the last picture: filtered, sorted, the selection
    /// kept on the same connection.
    fn rebuild(&mut self) {
        let selected_key = self.rows.get(self.selected).map(|r| r.key);
        let (filter, all, owners, by) = (&self.filter, &self.all, &self.owners, self.sort);
        // Sorted as indexes (cheap to move), then copied out once.
        let order = &mut self.order;
        order.clear();
        order.extend(
            (0..all.len() as u32).filter(|i| filter.accepts(all[*i as usize].subject(owners))),
        );
        order.sort_by(|a, b| compare(by, &all[*a as usize], &all[*b as usize]));
        self.rows.clear();
        self.rows.extend(order.iter().map(|i| all[*i as usize]));
        if let Some(i) = selected_key.and_then(|k| self.rows.iter().position(|r| r.key == k)) {
            self.selected = i;
        }
        self.procs = processes(&self.rows);
        self.clamp();
    }

    /// A record from the stream: kept for the detail pane.
    pub fn event(&mut self, ev: &ConnEvent) {
        if matches!(ev.action, Action::EventsLost | Action::TableEvicted) {
            return;
        }
        let t = ev.tuple();
        if !self.events.contains_key(&t) && self.events.len() >= MAX_EVENT_CONNS {
            if self.events_pruned == self.generation {
                return;
            }
            // Forget connections no longer open, once per picture (it costs a
            // pass over the table, so not once per event).
            self.events_pruned = self.generation;
            let open: FxHashSet<Tuple> = self.all.iter().map(Row::tuple).collect();
            self.events.retain(|k, _| open.contains(k));
            if self.events.len() >= MAX_EVENT_CONNS {
                return;
            }
        }
        let q = self.events.entry(t).or_default();
        if q.len() == EVENTS_PER_CONN {
            q.pop_front();
        }
        q.push_back((ev.ts_ns, ev.action));
    }

    pub fn set_alerts(&mut self, mut alerts: Vec<AlertLine>) {
        if self.paused {
            return;
        }
        alerts.sort_by_key(|a| std::cmp::Reverse(a.last_ns));
        alerts.truncate(MAX_ALERTS);
        self.alerts = alerts;
    }

    pub fn selected_row(&self) -> Option<&Row> {
        self.rows.get(self.selected)
    }

    /// What is known of a row's owner.
    pub fn owner(&self, r: &Row) -> Option<&Who> {
        self.owners.get(r.owner as usize)
    }

    /// The service name of a row's remote port (or of its local one for
    /// accepted sockets, whose remote port is ephemeral); none without a peer.
    pub fn service(&self, r: &Row) -> Option<&str> {
        if !r.has_peer {
            return None;
        }
        self.services
            .name(r.remote.port(), r.proto)
            .or_else(|| self.services.name(r.local.port(), r.proto))
    }

    /// The selected connection's bytes per second over time, oldest first
    /// (from the first sample that moved data).
    pub fn sparkline(&self) -> Vec<u64> {
        self.selected_row()
            .and_then(|r| self.spark.get(&r.key))
            .map(|s| s.samples.iter().copied().collect())
            .unwrap_or_default()
    }

    /// The selected connection's recent events, oldest first.
    pub fn selected_events(&self) -> Vec<(u64, Action)> {
        self.selected_row()
            .and_then(|r| self.events.get(&r.tuple()))
            .map(|q| q.iter().copied().collect())
            .unwrap_or_default()
    }

    /// Alerts that name the selected connection (its addresses in the key or message).
    pub fn selected_alerts(&self) -> Vec<&AlertLine> {
        let Some(r) = self.selected_row() else {
            return Vec::new();
        };
        let local = r.local.to_string();
        let remote = r.remote.ip().to_string();
        self.alerts
            .iter()
            .filter(|a| a.key.contains(&local) || (r.has_peer && a.key.contains(&remote)))
            .collect()
    }

    fn len(&self) -> usize {
        match self.pane {
            Pane::Connections => self.rows.len(),
            Pane::Processes => self.procs.len(),
            Pane::Alerts => self.alerts.len(),
        }
    }

    fn clamp(&mut self) {
        self.selected = self.selected.min(self.len().saturating_sub(1));
    }

    /// One key. Returns whether the program should quit.
    pub fn key(&mut self, k: Input) -> Command {
        if k == Input::Interrupt {
            return Command::Quit;
        }
        if let Some(text) = &mut self.editing {
            match k {
                Input::Enter => {
                    let text = std::mem::take(text);
                    self.editing = None;
                    self.set_filter(&text);
                }
                Input::Esc => self.editing = None,
                Input::Backspace => {
                    text.pop();
                }
                Input::Char(c) if !c.is_control() && text.len() < 200 => text.push(c),
                _ => {}
            }
            return Command::None;
        }
        if self.help {
            // Any key closes the help; q still quits.
            self.help = false;
            return if k == Input::Char('q') {
                Command::Quit
            } else {
                Command::None
            };
        }
        match k {
            Input::Char('q') => return Command::Quit,
            Input::Esc if self.detail => self.detail = false,
            Input::Esc => {}
            Input::Char('?') | Input::Char('h') => self.help = true,
            Input::Char('/') => self.editing = Some(self.filter_text.clone()),
            Input::Char('p') | Input::Char(' ') => self.paused = !self.paused,
            Input::Char('r') => self.resort(Sort::Rate),
            Input::Char('b') => self.resort(Sort::Bytes),
            Input::Char('a') => self.resort(Sort::Age),
            Input::Char('n') => self.resort(Sort::Process),
            Input::Char('s') => {
                let next = match self.sort {
                    Sort::Rate => Sort::Bytes,
                    Sort::Bytes => Sort::Age,
                    Sort::Age => Sort::Process,
                    Sort::Process => Sort::Rate,
                };
                self.resort(next);
            }
            Input::Char('c') | Input::Char('1') => self.show(Pane::Connections),
            Input::Char('P') | Input::Char('2') => self.show(Pane::Processes),
            Input::Char('A') | Input::Char('3') => self.show(Pane::Alerts),
            Input::Tab => {
                let next = match self.pane {
                    Pane::Connections => Pane::Processes,
                    Pane::Processes => Pane::Alerts,
                    Pane::Alerts => Pane::Connections,
                };
                self.show(next);
            }
            Input::Enter | Input::Char('d') if self.pane == Pane::Connections => {
                self.detail = !self.detail
            }
            Input::Up | Input::Char('k') => self.selected = self.selected.saturating_sub(1),
            Input::Down | Input::Char('j') => {
                self.selected += 1;
                self.clamp();
            }
            Input::PageUp => self.selected = self.selected.saturating_sub(10),
            Input::PageDown => {
                self.selected += 10;
                self.clamp();
            }
            Input::Char('g') => self.selected = 0,
            Input::Char('G') => self.selected = self.len().saturating_sub(1),
            _ => {}
        }
        Command::None
    }

    fn resort(&mut self, s: Sort) {
        self.sort = s;
        self.selected = 0;
        self.rows.clear();
        self.rebuild();
    }

    fn show(&mut self, p: Pane) {
        self.pane = p;
        self.detail = false;
        self.selected = 0;
    }

    /// Sets the filter from its words; bad words keep the old filter and say why.
    pub fn set_filter(&mut self, text: &str) {
        match Filter::parse_words(text) {
            Ok(f) => {
                self.filter = f;
                self.filter_text = text.trim().to_string();
                self.filter_error = None;
                self.selected = 0;
                self.rebuild();
            }
            Err(e) => self.filter_error = Some(e),
        }
    }
}

/// The listed order: by the sort key, then process name, then addresses.
fn compare(by: Sort, a: &Row, b: &Row) -> std::cmp::Ordering {
    let primary = match by {
        Sort::Rate => b.rate().cmp(&a.rate()),
        Sort::Bytes => b.total().cmp(&a.total()),
        // Oldest first; unknown starts (older than netta) before all.
        Sort::Age => b
            .age_ns
            .unwrap_or(u64::MAX)
            .cmp(&a.age_ns.unwrap_or(u64::MAX)),
        Sort::Process => a.comm.as_bytes().cmp(b.comm.as_bytes()),
    };
    primary
        .then_with(|| a.comm.as_bytes().cmp(b.comm.as_bytes()))
        .then_with(|| (a.local, a.remote).cmp(&(b.local, b.remote)))
}

fn row(c: &Conn, now: u64) -> Row {
    Row {
        key: c.key,
        proto: c.proto,
        pid: c.pid,
        comm: c.comm,
        local: c.local,
        remote: c.remote,
        has_peer: c.has_peer(),
        state: c.state,
        rate_in: c.live.rate_recv,
        rate_out: c.live.rate_sent,
        sent: c.bytes_sent,
        recv: c.bytes_recv,
        age_ns: (c.start_ns != 0).then(|| now.saturating_sub(c.start_ns)),
        rtt_us: c.live.rtt_us,
        retrans: c.live.retrans,
        direction: c.direction,
        netns: c.netns,
        owner: NO_OWNER,
    }
}

/// Per-process bandwidth and connection counts, busiest first.
fn processes(rows: &[Row]) -> Vec<ProcRow> {
    let mut by: FxHashMap<(u32, Comm), ProcRow> = FxHashMap::default();
    for r in rows {
        let p = by.entry((r.pid, r.comm)).or_insert_with(|| ProcRow {
            pid: r.pid,
            comm: r.comm,
            connections: 0,
            rate_in: 0,
            rate_out: 0,
            total: 0,
        });
        p.connections += 1;
        p.rate_in = p.rate_in.saturating_add(r.rate_in);
        p.rate_out = p.rate_out.saturating_add(r.rate_out);
        p.total = p.total.saturating_add(r.total());
    }
    let mut v: Vec<ProcRow> = by.into_values().collect();
    v.sort_by(|a, b| {
        (b.rate_in + b.rate_out)
            .cmp(&(a.rate_in + a.rate_out))
            .then(b.total.cmp(&a.total))
            .then(b.connections.cmp(&a.connections))
            .then(a.pid.cmp(&b.pid))
    });
    v
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::sock_id::SockIds;
    use crate::fixture::conn;

    fn busy(sock: u64, port: u16, rate: u64) -> Conn {
        let mut c = conn(
            sock,
            Proto::Tcp,
            &format!("127.0.0.1:{port}"),
            "127.0.0.1:443",
            State::Established,
            Direction::Egress,
            7,
            b"curl",
        );
        c.live.rate_sent = rate;
        c
    }

    fn picture(conns: Vec<Conn>) -> Picture {
        Picture::of(&conns, Counters::default(), SEC, |k| k)
    }

    #[test]
    fn a_picture_travels_as_arrays_with_the_keys_it_was_given() {
        let mut listener = busy(3, 8080, 0);
        listener.state = State::Listen;
        listener.remote = "0.0.0.0:0".parse().unwrap();
        let conns = [busy(1, 40000, 500), listener];
        let p = Picture::of(&conns, Counters::default(), SEC, |k| match k {
            Key::Sock(s) => Key::Sock(s + 100),
            k => k,
        });
        assert_eq!((p.rows.len(), p.listening, p.out_per_s), (1, 1, 500));
        assert_eq!(p.rows[0].key, Key::Sock(101), "shown with the key given");
        let json = serde_json::to_value(&p).unwrap();
        assert!(json["rows"][0].is_array(), "{json}");
        let back: Picture = serde_json::from_value(json).unwrap();
        assert_eq!(back, p);
        // What the agent's API sends: no kernel address, the same id each time.
        let ids = SockIds::new([7; 16]);
        let kernel = Key::Sock(0xffff_8880_1234_5678);
        let shown = kernel.hidden(&ids);
        assert_ne!(shown, kernel);
        assert_eq!(shown, kernel.hidden(&ids));
        let Key::Sock(id) = shown else { panic!() };
        assert!(id < 1 << 63);
        assert_eq!(Key::Inode(9).hidden(&ids), Key::Inode(9));
    }

    #[test]
    fn rows_of_one_process_share_its_owner_and_filters_see_it() {
        let owned = || {
            let mut c = busy(1, 40000, 500);
            c.netns = crate::fixture::HOST_NETNS;
            c.who = crate::fixture::owned();
            c
        };
        let a = owned();
        let mut b = a.clone();
        b.key = Key::Sock(2);
        b.local = "127.0.0.1:40001".parse().unwrap();
        let stranger = busy(3, 40002, 10);
        let mut nobody = busy(4, 40003, 10);
        nobody.who = Who::default();
        let p = picture(vec![a, b, stranger, nobody]);
        assert_eq!(p.owners.len(), 2, "one entry per owner");
        assert_eq!((p.rows[0].owner, p.rows[1].owner), (0, 0));
        assert_eq!((p.rows[2].owner, p.rows[3].owner), (1, NO_OWNER));
        let back: Picture = serde_json::from_value(serde_json::to_value(&p).unwrap()).unwrap();
        assert_eq!(back, p, "owners and namespaces travel with the rows");
        let mut top = Top::new("test".into(), Services::builtin());
        top.update(&back, SEC, 0);
        top.set_filter("exe:python3 user:alice");
        assert_eq!(top.rows.len(), 2);
        let r = top.rows[0];
        assert_eq!(
            top.owner(&r).and_then(|w| w.executable()),
            Some("/usr/bin/python3")
        );
        top.set_filter(&format!("netns:{}", crate::fixture::HOST_NETNS));
        assert_eq!(top.rows.len(), 2);
        top.set_filter("container:web-0");
        assert_eq!(top.rows.len(), 2);
        top.set_filter("user:0");
        assert_eq!(top.rows.len(), 1, "the stranger (fixture uid 0)");
        top.set_filter("");
        assert_eq!(top.rows.len(), 4);
    }

    #[test]
    fn sparklines_follow_open_connections_and_skip_idle_ones() {
        let mut top = Top::new("test".into(), Services::builtin());
        let both = picture(vec![busy(1, 40000, 500), busy(2, 40001, 0)]);
        top.update(&both, SEC, 0);
        top.update(&both, 2 * SEC, 0);
        assert_eq!(top.rows[0].key, Key::Sock(1), "by rate");
        assert_eq!(top.sparkline(), vec![500, 500]);
        top.key(Input::Down);
        assert!(top.sparkline().is_empty(), "an idle connection has none");
        // Connection 1 closes; a new one later gets a fresh line, not its samples.
        top.update(&picture(vec![busy(2, 40001, 0)]), 3 * SEC, 0);
        assert!(top.spark.is_empty());
        top.update(&picture(vec![busy(1, 40000, 9)]), 4 * SEC, 0);
        assert_eq!(top.sparkline(), vec![9]);
    }

    #[test]
    fn a_full_event_map_forgets_closed_connections_once_per_picture() {
        let mut top = Top::new("test".into(), Services::builtin());
        let open = busy(1, 40000, 0);
        top.update(&picture(vec![open.clone()]), SEC, 0);
        let event = |port: u16| {
            let mut ev = ConnEvent::blank(Action::Opened, SEC);
            ev.local = format!("127.0.0.1:{port}").parse().unwrap();
            ev.remote = "127.0.0.1:443".parse().unwrap();
            ev
        };
        top.event(&event(40000));
        for port in 1..MAX_EVENT_CONNS as u16 {
            top.event(&event(port));
        }
        assert_eq!(top.events.len(), MAX_EVENT_CONNS);
        // Full: the closed ones go, the open one stays, the new one comes in.
        top.event(&event(60000));
        assert_eq!(top.events.len(), 2);
        assert!(top.events.contains_key(&open.tuple()));
        // Full again within the same picture: no second pass, the event is dropped.
        for port in 1..MAX_EVENT_CONNS as u16 - 1 {
            top.event(&event(port));
        }
        assert_eq!(top.events.len(), MAX_EVENT_CONNS);
        top.event(&event(60001));
        assert_eq!(top.events.len(), MAX_EVENT_CONNS);
        assert!(!top.events.contains_key(&Tuple::new(
            0,
            Proto::Tcp,
            "127.0.0.1:60001".parse().unwrap(),
            "127.0.0.1:443".parse().unwrap()
        )));
        assert_eq!(
            top.selected_events().len(),
            1,
            "the open one kept its event"
        );
    }
}
