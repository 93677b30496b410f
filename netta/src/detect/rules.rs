//! Detection thresholds, windows and allowlists, with their defaults. The rules
//! file that overrides them is read in `settings::rules_file`.
use std::net::IpAddr;
use std::time::Duration;

use crate::core::sanitize::Comm;

#[derive(Clone, Debug, PartialEq)]
pub struct PortScan {
    /// Fast scans: `min_ports` distinct local ports from one source within `window`.
    pub window: Duration,
    pub min_ports: usize,
    /// Slow scans: fewer ports spread over a longer time.
    pub slow_window: Duration,
    pub slow_min_ports: usize,
}

#[derive(Clone, Debug, PartialEq)]
pub struct SynFlood {
    /// SYN-ACK retransmissions (half-open connections) per second against one port.
    pub min_half_open_per_sec: u64,
    /// Half-open (SYN_RECV) sockets on one port in the table.
    pub min_syn_recv: usize,
}

#[derive(Clone, Debug, PartialEq)]
pub struct ConnectionBurst {
    /// New connections per second must reach this...
    pub min_per_sec: u64,
    /// ...and `factor` times the recent baseline...
    pub factor: f64,
    /// ...for this many consecutive seconds.
    pub sustain_secs: u32,
}

#[derive(Clone, Debug, PartialEq)]
pub struct FanOut {
    pub window: Duration,
    /// Distinct remote hosts one process connects to within `window`.
    pub min_hosts: usize,
}

#[derive(Clone, Debug, PartialEq)]
pub struct LargeOutbound {
    /// Bytes one connection (or one process within `window`) sends...
    pub min_bytes: u64,
    /// ...at least `ratio` times what it receives.
    pub ratio: f64,
    pub window: Duration,
}

#[derive(Clone, Debug, PartialEq)]
pub struct AbnormalState {
    /// CLOSE_WAIT sockets of one process (the application is not closing them).
    pub close_wait: usize,
    /// Connections stuck in SYN_SENT to one destination (blackholed).
    pub syn_sent: usize,
}

/// Baseline rule: a process's first connection to a destination network and port.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct NewDestination {
    pub enabled: bool,
    /// No alerts until the baseline has learned this long (counted from the
    /// store's creation or `netta baseline reset`, across restarts).
    pub learning: Duration,
    /// Destinations are remembered as networks of these prefix lengths.
    pub ipv4_prefix: u8,
    pub ipv6_prefix: u8,
}

/// RITA-style beaconing: regular connections from one process to one destination.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Beaconing {
    pub enabled: bool,
    /// Connections (at least) and time they span (at least) before scoring.
    pub min_connections: usize,
    pub min_duration: Duration,
    /// Connections older than this are forgotten.
    pub window: Duration,
    /// 0..1; the mean of the skew and dispersion scores must reach it.
    pub min_score: f64,
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct Allow {
    pub nets: Vec<ipnet::IpNet>,
    pub ports: Vec<u16>,
    /// Exact process names (`comm`).
    pub processes: Vec<Vec<u8>>,
}

impl Allow {
    pub fn ip(&self, ip: IpAddr) -> bool {
        self.nets.iter().any(|n| n.contains(&ip))
    }

    pub fn port(&self, port: u16) -> bool {
        self.ports.contains(&port)
    }

    pub fn process(&self, comm: &Comm) -> bool {
        self.processes
            .iter()
            .any(|p| p.as_slice() == comm.as_bytes())
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct Rules {
    pub port_scan: PortScan,
    pub syn_flood: SynFlood,
    pub connection_burst: ConnectionBurst,
    pub fan_out: FanOut,
    pub new_listener: bool,
    pub large_outbound: LargeOutbound,
    pub abnormal_state: AbnormalState,
    pub new_destination: NewDestination,
    pub beaconing: Beaconing,
    /// More concurrent connections than this to one remote IP.
    pub max_conns_per_ip: usize,
    /// Remote ports above this with no known service are unusual.
    pub high_port_above: u16,
    /// An incident with no new evidence for this long ends; the next is a new alert.
    pub rearm_after: Duration,
    pub allow: Allow,
}

impl Default for Rules {
    fn default() -> Self {
        Rules {
            port_scan: PortScan {
                window: Duration::from_secs(10),
                min_ports: 20,
                slow_window: Duration::from_secs(900),
                slow_min_ports: 12,
            },
            syn_flood: SynFlood {
                min_half_open_per_sec: 50,
                min_syn_recv: 256,
            },
            // Loopback counts both ends, and a benign `ab` run does ~10k/s for a
            // second or two: a burst must be big and last.
            connection_burst: ConnectionBurst {
                min_per_sec: 10_000,
                factor: 10.0,
                sustain_secs: 5,
            },
            fan_out: FanOut {
                window: Duration::from_secs(60),
                min_hosts: 50,
            },
            new_listener: true,
            large_outbound: LargeOutbound {
                min_bytes: 100 << 20,
                ratio: 10.0,
                window: Duration::from_secs(600),
            },
            abnormal_state: AbnormalState {
                close_wait: 32,
                syn_sent: 16,
            },
            new_destination: NewDestination {
                enabled: true,
                learning: Duration::from_secs(24 * 3600),
                ipv4_prefix: 24,
                ipv6_prefix: 64,
            },
            // 30 s ± 10 % for 10 minutes is 20 connections.
            beaconing: Beaconing {
                enabled: true,
                min_connections: 20,
                min_duration: Duration::from_secs(600),
                window: Duration::from_secs(3600),
                min_score: 0.8,
            },
            max_conns_per_ip: 10,
            high_port_above: 49152,
            rearm_after: Duration::from_secs(60),
            allow: Allow::default(),
        }
    }
}
