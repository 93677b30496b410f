//! The one table of defaults: what netta does when neither a flag nor the config
//! file says otherwise. Limits of the table and the kernel buffer sizes are
//! defined next to what they size and gathered here.
use std::time::Duration;

use crate::core::table::Limits;
use crate::host::ebpf;

/// Read when present (`--config FILE` names another).
pub const CONFIG_PATH: &str = "/etc/netta/netta.toml";
/// The agent's local API socket (`--api`, `api =`).
pub const API_SOCKET: &str = "/run/netta/netta.sock";
/// Clients read the API socket's path from this variable when `--api` is not given.
pub const API_ENV: &str = "NETTA_API";
/// Where `netta agent` keeps its history store (`--state-dir`, `state_dir =`).
pub const STATE_DIR: &str = "/var/lib/netta";
/// The history store's file in the state directory (SQLite, with `-wal` beside it).
pub const HISTORY_FILE: &str = "history.db";
/// Stored history older than this goes (`--retention-age`).
pub const RETENTION_AGE: Duration = Duration::from_secs(14 * 24 * 3600);
/// The store is kept under this many bytes (`--retention-size`).
pub const RETENTION_BYTES: u64 = 512 << 20;
/// Closed connections `netta agent` keeps in memory when its history store
/// keeps them all (views read the store; `--no-store`: `--history-size`).
pub const HISTORY_RING_WITH_STORE: usize = 1_000;

#[derive(Clone, Copy, Debug)]
pub struct Defaults {
    pub transport: ebpf::Transport,
    pub ring_size: u32,
    pub reconcile_interval: Duration,
    pub poll_interval: Duration,
    pub udp_idle: Duration,
    /// `connection-updated` period (`--update-interval`).
    pub update_interval: Duration,
    pub max_connections: usize,
    pub history_size: usize,
}

pub fn defaults() -> Defaults {
    let kernel = ebpf::Options::default();
    Defaults {
        transport: kernel.transport,
        ring_size: kernel.ring_bytes,
        reconcile_interval: Duration::from_secs(5),
        poll_interval: Duration::from_secs(1),
        udp_idle: Duration::from_secs(5),
        update_interval: Duration::from_secs(30),
        max_connections: Limits::DEFAULT.max_live,
        history_size: Limits::DEFAULT.max_history,
    }
}

/// A duration flag: parsed and shown the way people write them (`5s`, `1m30s`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Interval(pub Duration);

impl std::fmt::Display for Interval {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        humantime::format_duration(self.0).fmt(f)
    }
}
