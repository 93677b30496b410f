//! New destination (Zeek's known_hosts/known_services, per process): after a
//! learning period, the first outbound connection from a process (its `comm`)
//! to a destination network and port it never used before. What it has learned
//! is kept in the store (`store::baseline`), so restarts do not relearn.
use rustc_hash::FxHashSet;
use serde_json::json;

use super::alert::{Finding, RuleId, Severity};
use super::rules::NewDestination as Config;
use super::Rules;
use crate::core::event::{Action, ConnEvent, Direction, Proto};
use crate::core::format::owner;
use crate::core::sanitize::Comm;

/// Most destinations remembered in memory; past this, new ones are neither
/// learned nor alerted on (a flood must not grow memory).
pub const MAX_KNOWN: usize = 200_000;

/// One learned destination: who, which network, which port.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Dest {
    pub comm: Comm,
    pub net: ipnet::IpNet,
    pub port: u16,
    pub proto: Proto,
}

/// The destination an event teaches the baseline: outbound connections and
/// flows of a named process.
pub fn dest_of(cfg: &Config, ev: &ConnEvent) -> Option<Dest> {
    if !matches!(ev.action, Action::Opened | Action::UdpFlow)
        || ev.direction != Direction::Egress
        || ev.comm.is_empty()
        || ev.remote.port() == 0
    {
        return None;
    }
    let ip = ev.remote.ip();
    let prefix = if ip.is_ipv4() {
        cfg.ipv4_prefix
    } else {
        cfg.ipv6_prefix
    };
    let net = ipnet::IpNet::new(ip, prefix).ok()?.trunc();
    Some(Dest {
        comm: ev.comm,
        net,
        port: ev.remote.port(),
        proto: ev.proto,
    })
}

#[derive(Default)]
pub(super) struct NewDestinations {
    known: FxHashSet<Dest>,
    /// Kernel-clock ns (BOOTTIME) when learning ends.
    learning_until: u64,
}

impl NewDestinations {
    pub fn new(learning_until: u64) -> Self {
        NewDestinations {
            known: FxHashSet::default(),
            learning_until,
        }
    }

    /// What the store had learned, and when learning ends (kernel-clock ns, CLOCK_BOOTTIME).
    pub fn load(&mut self, known: impl IntoIterator<Item = Dest>, learning_until: u64) {
        self.known.clear();
        self.known.extend(known.into_iter().take(MAX_KNOWN));
        self.learning_until = learning_until;
    }

    pub fn learning_until(&self) -> u64 {
        self.learning_until
    }

    pub fn len(&self) -> usize {
        self.known.len()
    }

    pub fn observe(&mut self, rules: &Rules, ev: &ConnEvent, now: u64) -> Option<Finding> {
        let cfg = &rules.new_destination;
        if !cfg.enabled || rules.allow.process(&ev.comm) || rules.allow.ip(ev.remote.ip()) {
            return None;
        }
        let d = dest_of(cfg, ev)?;
        if self.known.contains(&d) || self.known.len() >= MAX_KNOWN {
            return None;
        }
        self.known.insert(d);
        if now < self.learning_until {
            return None;
        }
        let service = format!("{}/{}", d.port, d.proto.name());
        Some(Finding {
            rule: RuleId::NewDestination,
            severity: Severity::Medium,
            key: format!("{}>{}:{service}", d.comm, d.net),
            message: format!(
                "New destination: {} connected to {} ({} port {service}) for the first time",
                owner(ev.pid, &ev.comm),
                ev.remote.ip(),
                d.net,
            ),
            source_ip: Some(ev.local.ip()),
            first_ns: now,
            evidence: json!({
                "pid": ev.pid,
                "process": String::from_utf8_lossy(ev.comm.as_bytes()),
                "destination": ev.remote.to_string(),
                "network": d.net.to_string(),
                "port": d.port,
                "transport": d.proto.name(),
            }),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn out(comm: &[u8], remote: &str) -> ConnEvent {
        let mut e = ConnEvent::lost(0, 0);
        e.action = Action::Opened;
        e.direction = Direction::Egress;
        e.comm = Comm::from_bytes(comm);
        e.pid = 7;
        e.local = "10.0.0.2:40000".parse().unwrap();
        e.remote = remote.parse().unwrap();
        e
    }

    #[test]
    fn alerts_once_per_new_network_and_port_after_learning() {
        let rules = Rules::default();
        let mut n = NewDestinations::new(100);
        // Learning: remembered, not alerted.
        assert!(n
            .observe(&rules, &out(b"curl", "203.0.113.7:443"), 50)
            .is_none());
        // Same /24 and port: known.
        assert!(n
            .observe(&rules, &out(b"curl", "203.0.113.9:443"), 200)
            .is_none());
        let f = n
            .observe(&rules, &out(b"curl", "203.0.113.7:8443"), 200)
            .unwrap();
        assert_eq!(f.key, "curl>203.0.113.0/24:8443/tcp");
        assert!(f.message.contains("for the first time"), "{}", f.message);
        // Another process to the same place is new for it.
        assert!(n
            .observe(&rules, &out(b"wget", "203.0.113.7:443"), 200)
            .is_some());
        // Once is enough.
        assert!(n
            .observe(&rules, &out(b"curl", "203.0.113.7:8443"), 300)
            .is_none());
        // Ingress and nameless events teach nothing.
        let mut inbound = out(b"sshd", "198.51.100.1:22");
        inbound.direction = Direction::Ingress;
        assert!(n.observe(&rules, &inbound, 300).is_none());
        assert!(dest_of(&rules.new_destination, &inbound).is_none());
        assert_eq!(n.len(), 3);
    }
}
