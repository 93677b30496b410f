//! `netta top`'s state and everything it computes, apart from drawing: the
//! header's rates from two snapshots, the connection rows (filtered with the
//! `list` filter, sorted), per-process totals, the selected connection's events
//! and bytes over time, and what each key does. Pure: time is passed in, so the
//! rendering tests (`render::top`) feed it fixed states.
use std::collections::VecDeque;

use rustc_hash::FxHashMap;

use crate::core::event::{Action, ConnEvent, Proto, State};
use crate::core::filter::Filter;
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

/// One connection as the table shows it (text escaped at render time).
#[derive(Clone, Debug, PartialEq)]
pub struct Row {
    pub key: Key,
    pub proto: Proto,
    pub pid: u32,
    pub comm: Comm,
    pub local: std::net::SocketAddr,
    pub remote: std::net::SocketAddr,
    pub has_peer: bool,
    /// Service name of the remote port (or of the local one for accepted sockets).
    pub service: Option<String>,
    pub state: State,
    pub rate_in: u64,
    pub rate_out: u64,
    pub sent: u64,
    pub recv: u64,
    /// None when the start predates netta.
    pub age_ns: Option<u64>,
    pub rtt_us: u32,
    pub retrans: u32,
    /// Network namespace inode, and what is known of the owner (the detail pane).
    pub netns: u32,
    pub who: crate::core::event::Who,
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
    /// The last picture's connections (listeners left out) and their rows.
    conns: Vec<Conn>,
    all: Vec<Row>,
    spark: FxHashMap<Key, VecDeque<u64>>,
    events: FxHashMap<Tuple, VecDeque<(u64, Action)>>,
}

impl Default for Top {
    fn default() -> Self {
        Top::new(String::new())
    }
}

impl Top {
    pub fn new(mode: String) -> Top {
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
            conns: Vec::new(),
            all: Vec::new(),
            spark: FxHashMap::default(),
            events: FxHashMap::default(),
        }
    }

    /// A new picture of the table at `now` (kernel clock), the agent up since
    /// `started_ns`. Paused, only the clock moves.
    pub fn update(&mut self, snap: &Snapshot, services: &Services, now: u64, started_ns: u64) {
        self.header.uptime_ns = now.saturating_sub(started_ns);
        self.now_ns = now;
        if self.paused {
            return;
        }
        let c = snap.counters;
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
        h.listening = snap.conns.iter().filter(|c| c.state.is_listener()).count();
        h.live = snap.conns.len() - h.listening;
        h.in_per_s = snap.conns.iter().map(|c| c.live.rate_recv).sum();
        h.out_per_s = snap.conns.iter().map(|c| c.live.rate_sent).sum();
        self.conns = snap
            .conns
            .iter()
            .filter(|c| !c.state.is_listener())
            .cloned()
            .collect();
        self.all = self.conns.iter().map(|c| row(c, services, now)).collect();
        self.rebuild();
        // Sparklines of the rows still open, one sample per update.
        let mut spark = std::mem::take(&mut self.spark);
        spark.retain(|k, _| snap.conns.iter().any(|c| c.key == *k));
        for c in &snap.conns {
            if c.state.is_listener() {
                continue;
            }
            let s = spark.entry(c.key).or_default();
            if s.len() == SPARK_LEN {
                s.pop_front();
            }
            s.push_back(c.live.rate_sent.saturating_add(c.live.rate_recv));
        }
        self.spark = spark;
    }

    /// The listed rows from the last picture: filtered, sorted, the selection
    /// kept on the same connection.
    fn rebuild(&mut self) {
        let selected_key = self.rows.get(self.selected).map(|r| r.key);
        self.rows = self
            .conns
            .iter()
            .zip(&self.all)
            .filter(|(c, _)| self.filter.matches(c))
            .map(|(_, r)| r.clone())
            .collect();
        self.sort_rows();
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
            // Forget connections that are no longer listed.
            let listed: Vec<Tuple> = self.rows.iter().map(Row::tuple).collect();
            self.events.retain(|k, _| listed.contains(k));
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

    /// The selected connection's bytes per second over time, oldest first.
    pub fn sparkline(&self) -> Vec<u64> {
        self.selected_row()
            .and_then(|r| self.spark.get(&r.key))
            .map(|s| s.iter().copied().collect())
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

    fn sort_rows(&mut self) {
        let by = self.sort;
        self.rows.sort_by(|a, b| {
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
        });
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

fn row(c: &Conn, services: &Services, now: u64) -> Row {
    // The port that names the service: the remote one for outgoing connections,
    // ours for the ones we accepted (the remote port is ephemeral then).
    let service = services
        .name(c.remote.port(), c.proto)
        .or_else(|| services.name(c.local.port(), c.proto))
        .map(str::to_string);
    Row {
        key: c.key,
        proto: c.proto,
        pid: c.pid,
        comm: c.comm,
        local: c.local,
        remote: c.remote,
        has_peer: c.has_peer(),
        service: if c.has_peer() { service } else { None },
        state: c.state,
        rate_in: c.live.rate_recv,
        rate_out: c.live.rate_sent,
        sent: c.bytes_sent,
        recv: c.bytes_recv,
        age_ns: (c.start_ns != 0).then(|| now.saturating_sub(c.start_ns)),
        rtt_us: c.live.rtt_us,
        retrans: c.live.retrans,
        netns: c.netns,
        who: c.who.clone(),
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
