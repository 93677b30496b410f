//! The agent's local API: HTTP/1.1 over a Unix socket (never TCP by default),
//! served by axum. Views attach through [`client::Client`]; the agent plugs its
//! state in through [`Backend`], so the server runs on a fake backend in tests.
pub mod access;
pub mod client;
pub mod list;
pub mod server;

use std::path::PathBuf;

use tokio::sync::mpsc;

use crate::agent::Record;
use crate::core::clock::Clock;
use crate::core::filter::{EndsFilter, Filter};
use crate::core::history_query::EndsQuery;
use crate::core::stored::BaselineReport;
use crate::core::table::{Conn, Snapshot};
use crate::detect::Alert;

/// Where the API listens unless told otherwise.
pub const DEFAULT_SOCKET: &str = crate::settings::defaults::API_SOCKET;
/// Environment variable clients read for the socket path.
pub const ENV: &str = crate::settings::defaults::API_ENV;

/// What a client learns first: who it attached to.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Hello {
    pub pid: u32,
    /// Seconds the agent has been running.
    pub uptime_s: u64,
    /// How events reach it (`eBPF, ring buffer`, ...).
    pub mode: String,
    pub version: String,
    /// Whether it keeps a persistent history.
    pub store: bool,
    /// The agent's [`Clock`] offset, so an attached view shows its times as it would.
    #[serde(default)]
    pub clock_offset_ns: i64,
}

impl Hello {
    pub fn clock(&self) -> Clock {
        Clock::fixed(self.clock_offset_ns as i128)
    }

    /// `netta: attached to agent (pid N, up 3h)`.
    pub fn attached_line(&self) -> String {
        format!(
            "netta: attached to agent (pid {}, up {})",
            self.pid,
            short_duration(self.uptime_s)
        )
    }
}

/// The agent as the API sees it.
pub trait Backend: Send + Sync + 'static {
    fn hello(&self) -> Hello;
    /// The live table as ECS documents (for other programs).
    fn table(&self) -> serde_json::Value;
    /// The table as netta's views read it; closed rows only when `history`.
    fn snapshot(&self, history: bool) -> Snapshot;
    /// The open rows `filter` selects, in display order (`netta list`).
    fn select(&self, filter: &Filter) -> Vec<Conn> {
        crate::core::filter::select(&self.snapshot(false), filter)
    }
    /// The same rows as the plain list shows them.
    fn select_list(&self, filter: &Filter) -> Vec<list::ListRow> {
        self.select(filter).iter().map(list::ListRow::of).collect()
    }
    /// What `netta top` shows of the table now (compact, opaque socket ids).
    fn top(&self) -> crate::core::top::Picture;
    /// Every incident since the agent started, after a fresh look at the table.
    fn incidents(&self) -> Vec<Alert>;
    /// The stored `new-destination` baseline (blocking: reads the store).
    fn baseline(&self) -> Result<BaselineReport, String>;
    /// Forgets it, in memory and in the store (blocking).
    fn reset_baseline(&self) -> Result<(), String>;
    fn stats(&self) -> serde_json::Value;
    /// Current incidents from the detectors.
    fn alerts(&self) -> serde_json::Value;
    /// A live tap of the record bus.
    fn subscribe(&self) -> mpsc::Receiver<Record>;
    fn clock(&self) -> Clock;
    /// The store file, when the agent keeps one.
    fn store_path(&self) -> Option<PathBuf>;
    /// Prometheus text for `/metrics`.
    fn metrics(&self, accept: Option<&str>) -> (String, &'static str);
}

/// `/v1/events`' query: replay from `since_us` (wall µs), and the ends filter
/// (`netta events --sport/--dport/--src/--dst`).
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct EventsQuery {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub since_us: Option<i64>,
    #[serde(flatten)]
    pub ends: EndsQuery,
}

impl EventsQuery {
    pub fn new(since_us: Option<i64>, f: &EndsFilter) -> EventsQuery {
        EventsQuery {
            since_us,
            ends: f.query(),
        }
    }

    pub fn to_query_string(&self) -> String {
        serde_urlencoded::to_string(self).unwrap_or_default()
    }
}

/// The socket path clients use: `--api`, then `NETTA_API`, then the default.
pub fn socket_path(flag: Option<&std::path::Path>) -> PathBuf {
    if let Some(p) = flag {
        return p.into();
    }
    match std::env::var_os(ENV) {
        Some(v) if !v.is_empty() => v.into(),
        _ => DEFAULT_SOCKET.into(),
    }
}

/// `3h`, `12m`, `40s`, `2d`: the agent's uptime on the start-up line.
pub fn short_duration(s: u64) -> String {
    match s {
        0..=59 => format!("{s}s"),
        60..=3599 => format!("{}m", s / 60),
        3600..=86_399 => format!("{}h", s / 3600),
        _ => format!("{}d", s / 86_400),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uptime_is_short() {
        assert_eq!(short_duration(5), "5s");
        assert_eq!(short_duration(3 * 3600 + 59), "3h");
        assert_eq!(short_duration(86_400 * 3), "3d");
    }
}
