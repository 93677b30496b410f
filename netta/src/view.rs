//! Connection lists: selecting rows from a table snapshot, and rendering them in
//! the original tool's layout. Rendering takes plain data, so it is snapshot-tested.
use std::fmt::Write as _;
use std::net::SocketAddr;

use crate::event::{Proto, State};
use crate::table::{Closed, Conn, Snapshot};

pub const RULE_WIDTH: usize = 60;

pub fn heavy_rule() -> String {
    "═".repeat(RULE_WIDTH)
}

pub fn light_rule() -> String {
    "─".repeat(RULE_WIDTH)
}

/// The original tool's section header: a heavy rule, the title, a heavy rule.
pub fn header(out: &mut String, title: &str) {
    let _ = writeln!(out, "{}\n{title}\n{}", heavy_rule(), heavy_rule());
}

/// `ip:port`, with IPv6 in brackets.
pub fn addr(a: SocketAddr) -> String {
    a.to_string()
}

/// The remote column: `0.0.0.0:*` / `[::]:*` when there is no peer.
pub fn remote(c: &Conn) -> String {
    if c.has_peer() {
        addr(c.remote)
    } else if c.remote.is_ipv4() {
        "0.0.0.0:*".into()
    } else {
        "[::]:*".into()
    }
}

/// `pid/name` with the name escaped; `-` when unknown.
pub fn owner(pid: u32, comm: &crate::sanitize::Comm) -> String {
    match (pid, comm.is_empty()) {
        (0, _) => "-".into(),
        (p, true) => format!("{p}/?"),
        (p, false) => format!("{p}/{comm}"),
    }
}

#[derive(Clone, Debug, Default)]
pub struct Filter {
    pub states: Vec<State>,
    pub proto: Option<Proto>,
    /// Matches the local or the remote port.
    pub port: Option<u16>,
    pub pid: Option<u32>,
    /// Substring of the (raw) process name.
    pub process: Option<String>,
}

impl Filter {
    pub fn matches(&self, c: &Conn) -> bool {
        (self.states.is_empty() || self.states.contains(&c.state))
            && self.proto.is_none_or(|p| p == c.proto)
            && self
                .port
                .is_none_or(|p| c.local.port() == p || (c.has_peer() && c.remote.port() == p))
            && self.pid.is_none_or(|p| p == c.pid)
            && self.process.as_ref().is_none_or(|name| {
                String::from_utf8_lossy(c.comm.as_bytes()).contains(name.as_str())
            })
    }
}

/// Rows in display order: protocol, state (listeners first), local, remote.
pub fn select(snap: &Snapshot, filter: &Filter) -> Vec<Conn> {
    let mut rows: Vec<Conn> = snap
        .conns
        .iter()
        .filter(|c| filter.matches(c))
        .copied()
        .collect();
    rows.sort_by(|a, b| {
        let rank = |c: &Conn| (c.state != State::Listen && c.state != State::Unconn) as u8;
        (a.proto, rank(a), a.local, a.remote, a.pid).cmp(&(
            b.proto,
            rank(b),
            b.local,
            b.remote,
            b.pid,
        ))
    });
    rows
}

pub fn select_history(snap: &Snapshot, filter: &Filter) -> Vec<Closed> {
    snap.history
        .iter()
        .filter(|h| {
            let mut c = h.conn;
            // History rows match on their last live state.
            if filter.states.contains(&State::Established) && !h.failed {
                c.state = State::Established;
            }
            filter.matches(&c)
        })
        .copied()
        .collect()
}

fn widths<const N: usize>(head: [&str; N], rows: &[[String; N]]) -> [usize; N] {
    let mut w = head.map(|h| h.chars().count());
    for r in rows {
        for (i, cell) in r.iter().enumerate() {
            w[i] = w[i].max(cell.chars().count());
        }
    }
    w
}

fn push_row<const N: usize>(out: &mut String, cells: &[String; N], w: &[usize; N]) {
    let mut line = String::new();
    for (i, cell) in cells.iter().enumerate() {
        if i + 1 == N {
            line.push_str(cell);
        } else {
            let pad = w[i] + 2 - cell.chars().count();
            line.push_str(cell);
            line.extend(std::iter::repeat_n(' ', pad));
        }
    }
    out.push_str(line.trim_end());
    out.push('\n');
}

/// The original's "ACTIVE NETWORK CONNECTIONS" table; columns widen to fit
/// (IPv6 addresses) instead of breaking the layout.
pub fn render_list(title: &str, rows: &[Conn]) -> String {
    const HEAD: [&str; 5] = [
        "PROTO",
        "LOCAL ADDRESS",
        "REMOTE ADDRESS",
        "STATE",
        "PID/PROCESS",
    ];
    let cells: Vec<[String; 5]> = rows
        .iter()
        .map(|c| {
            [
                c.proto.upper().to_string(),
                addr(c.local),
                remote(c),
                c.state.name().to_string(),
                owner(c.pid, &c.comm),
            ]
        })
        .collect();
    let mut w = widths(HEAD, &cells);
    // The original's minimum widths, so short tables look like it.
    for (i, min) in [5, 21, 21, 11, 11].into_iter().enumerate() {
        w[i] = w[i].max(min);
    }
    let mut out = String::new();
    header(&mut out, title);
    push_row(&mut out, &HEAD.map(String::from), &w);
    let _ = writeln!(out, "{}", light_rule());
    for r in &cells {
        push_row(&mut out, r, &w);
    }
    let _ = writeln!(out, "{}", light_rule());
    let _ = writeln!(out, "Total: {} connections displayed", rows.len());
    let _ = writeln!(out, "{}", heavy_rule());
    out
}

/// Human duration: `850µs`, `12ms`, `3.2s`, `4m05s`, `2h03m`.
pub fn duration(ns: u64) -> String {
    let us = ns / 1_000;
    match ns {
        n if n < 1_000_000 => format!("{us}µs"),
        n if n < 10_000_000 => format!("{:.1}ms", n as f64 / 1e6),
        n if n < 1_000_000_000 => format!("{}ms", n / 1_000_000),
        n if n < 60_000_000_000 => format!("{:.1}s", n as f64 / 1e9),
        n if n < 3_600_000_000_000 => {
            let s = n / 1_000_000_000;
            format!("{}m{:02}s", s / 60, s % 60)
        }
        n => {
            let m = n / 60_000_000_000;
            format!("{}h{:02}m", m / 60, m % 60)
        }
    }
}

/// Closed connections: start, duration, bytes and process.
pub fn render_history(rows: &[Closed], clock: &crate::clock::Clock) -> String {
    const HEAD: [&str; 8] = [
        "PROTO",
        "LOCAL ADDRESS",
        "REMOTE ADDRESS",
        "START (UTC)",
        "DURATION",
        "SENT",
        "RECEIVED",
        "PID/PROCESS",
    ];
    let cells: Vec<[String; 8]> = rows
        .iter()
        .map(|h| {
            let c = &h.conn;
            let start = if c.start_ns == 0 {
                "-".to_string()
            } else {
                clock.rfc3339(c.start_ns)[..23].replace('T', " ")
            };
            let dur = match (h.failed, h.duration_ns()) {
                (true, _) => "FAILED".to_string(),
                (false, Some(d)) => duration(d),
                (false, None) => "-".to_string(),
            };
            [
                c.proto.upper().to_string(),
                addr(c.local),
                remote(c),
                start,
                dur,
                c.bytes_sent.to_string(),
                c.bytes_recv.to_string(),
                owner(c.pid, &c.comm),
            ]
        })
        .collect();
    let w = widths(HEAD, &cells);
    let mut out = String::new();
    header(&mut out, "CONNECTION HISTORY");
    push_row(&mut out, &HEAD.map(String::from), &w);
    let _ = writeln!(out, "{}", light_rule());
    for r in &cells {
        push_row(&mut out, r, &w);
    }
    let _ = writeln!(out, "{}", light_rule());
    let _ = writeln!(out, "Total: {} closed connections displayed", rows.len());
    let _ = writeln!(out, "{}", heavy_rule());
    out
}
