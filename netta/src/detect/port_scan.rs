//! Port scan: one source touching many local ports, fast (within `window`) or
//! slow (within `slow_window`); refused SYNs make a SYN scan, completed
//! handshakes or local refused connects a connect scan.
use std::net::IpAddr;

use rustc_hash::FxHashMap;
use serde_json::json;

use super::alert::{Finding, RuleId};
use super::incident::Incidents;
use super::window::Window;
use super::{Rules, MAX_SOURCES};

struct Source {
    fast: Window<u16>,
    slow: Window<u16>,
    lo: u16,
    hi: u16,
    /// Handshakes that completed (accepted by a listener here).
    completed: u64,
    /// Refused connects made by a local process: a connect scan from this host.
    local_connects: u64,
    resets: u64,
}

#[derive(Default)]
pub(super) struct PortScan {
    sources: FxHashMap<IpAddr, Source>,
}

impl PortScan {
    /// A local process's connect was refused: counts towards a connect scan from `local`.
    pub fn local_connect(&mut self, local: IpAddr) {
        if let Some(s) = self.sources.get_mut(&local) {
            s.local_connects += 1;
        }
    }

    /// `src` touched local `port`: a completed handshake (`connect`) or a reset.
    pub fn touch(
        &mut self,
        rules: &Rules,
        incidents: &Incidents,
        src: IpAddr,
        port: u16,
        connect: bool,
        now: u64,
    ) -> Option<Finding> {
        let allow = &rules.allow;
        if allow.ip(src) || allow.port(port) {
            return None;
        }
        if !self.sources.contains_key(&src) && self.sources.len() >= MAX_SOURCES {
            return None;
        }
        let cfg = &rules.port_scan;
        let s = self.sources.entry(src).or_insert_with(|| Source {
            fast: Window::new(cfg.window),
            slow: Window::new(cfg.slow_window),
            lo: port,
            hi: port,
            completed: 0,
            local_connects: 0,
            resets: 0,
        });
        s.fast.add(port, now);
        s.slow.add(port, now);
        s.lo = s.lo.min(port);
        s.hi = s.hi.max(port);
        if connect {
            s.completed += 1;
        } else {
            s.resets += 1;
        }
        let (fast, slow) = (s.fast.len(), s.slow.len());
        if fast < cfg.min_ports && slow < cfg.slow_min_ports {
            return None;
        }
        let (lo, hi) = (s.lo, s.hi);
        let kind = if s.completed + s.local_connects > 0 {
            "connect"
        } else {
            "syn"
        };
        let key = src.to_string();
        let first = if incidents.is_open(RuleId::PortScan, &key) {
            now
        } else {
            s.slow.first_time().unwrap_or(now)
        };
        // Judged by how fast the ports came, not by which threshold was crossed first.
        let speed = if fast >= cfg.min_ports || now - first <= cfg.window.as_nanos() as u64 {
            "fast"
        } else {
            "slow"
        };
        Some(Finding {
            rule: RuleId::PortScan,
            key,
            message: format!("Port scan from {src}: {slow} ports ({lo}-{hi}), {kind} scan"),
            source_ip: Some(src),
            first_ns: first,
            evidence: json!({
                "ports": slow, "port_min": lo, "port_max": hi,
                "scan_type": kind, "speed": speed,
                "refused": s.resets, "completed": s.completed,
            }),
        })
    }

    /// Forgets sources with nothing left in the slow window.
    pub fn expire(&mut self, now: u64) {
        self.sources.retain(|_, s| {
            s.slow.prune(now);
            s.slow.len() > 0
        });
    }
}
