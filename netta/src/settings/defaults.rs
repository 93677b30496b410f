//! The one table of defaults: what netta does when neither a flag nor the config
//! file says otherwise. Limits of the table and the kernel buffer sizes are
//! defined next to what they size and gathered here.
use std::time::Duration;

use crate::core::table::Limits;
use crate::host::ebpf;

pub const CONFIG_PATH: &str = "/etc/netta/netta.toml";

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
