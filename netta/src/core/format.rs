//! Text for numbers, durations, addresses and owners, shared by alert messages and views.
use std::net::SocketAddr;
use std::time::Duration;

use crate::core::sanitize::Comm;
use crate::core::table::Conn;

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
pub fn owner(pid: u32, comm: &Comm) -> String {
    match (pid, comm.is_empty()) {
        (0, _) => "-".into(),
        (p, true) => format!("{p}/?"),
        (p, false) => format!("{p}/{comm}"),
    }
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

/// `512 B`, `1.2 KiB`, `3.4 MiB`, ... (binary units, one decimal).
pub fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 6] = ["KiB", "MiB", "GiB", "TiB", "PiB", "EiB"];
    if n < 1024 {
        return format!("{n} B");
    }
    let mut v = n as f64 / 1024.0;
    let mut unit = 0;
    while v >= 1024.0 && unit + 1 < UNITS.len() {
        v /= 1024.0;
        unit += 1;
    }
    format!("{v:.1} {}", UNITS[unit])
}

/// Go-style duration, as the original printed it: `6s`, `1m0s`, `1h2m3s`, `4.5s`.
pub fn go_duration(d: Duration) -> String {
    let ms = d.as_millis() as u64;
    let (h, m, s, frac) = (ms / 3_600_000, ms / 60_000 % 60, ms / 1000 % 60, ms % 1000);
    let secs = if frac == 0 {
        format!("{s}s")
    } else {
        format!("{s}.{}s", format!("{frac:03}").trim_end_matches('0'))
    };
    match (h, m) {
        (0, 0) => secs,
        (0, m) => format!("{m}m{secs}"),
        (h, m) => format!("{h}h{m}m{secs}"),
    }
}
