//! New destination (Zeek's known_hosts/known_services, per program): after a
//! learning period, the first outbound connection from a program (its
//! executable once known, else its process name) to a destination network and
//! port it never used before. What it has learned is kept in the store
//! (`store::baseline`), so restarts do not relearn.
use rustc_hash::FxHashSet;
use serde_json::json;

use super::alert::{Finding, RuleId};
use super::rules::NewDestination as Config;
use super::Rules;
use crate::core::event::{Action, ConnEvent, Direction, Proto};
use crate::core::format::owner;
use crate::core::sanitize::{Comm, Text};

/// Most destinations remembered in memory; past this, new ones are neither
/// learned nor alerted on (a flood must not grow memory).
pub const MAX_KNOWN: usize = 200_000;

/// One learned destination: which program, which network, which port. The
/// program is its executable (`comm` empty) once known, else its process name.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Dest {
    pub comm: Comm,
    pub exe: Option<Text>,
    pub net: ipnet::IpNet,
    pub port: u16,
    pub proto: Proto,
}

impl Dest {
    /// The program, as the alert names it.
    pub fn program(&self) -> String {
        match &self.exe {
            Some(e) => e.to_string(),
            None => self.comm.to_string(),
        }
    }

    /// The same destination keyed by process name: what was learned before the
    /// executable was known (an older store, a process /proc found) counts.
    fn by_name(&self, comm: Comm) -> Option<Dest> {
        self.exe.as_ref()?;
        Some(Dest {
            comm,
            exe: None,
            ..self.clone()
        })
    }
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
    let exe = ev.who.process.as_ref().and_then(|p| p.executable.clone());
    Some(Dest {
        comm: if exe.is_some() { Comm::EMPTY } else { ev.comm },
        exe,
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
        // Learned under the process name only (before the executable was known,
        // an older store): the first executable seen with that name takes it
        // over, so another one with the same name is new.
        let claimed = d.by_name(ev.comm).is_some_and(|n| self.known.remove(&n));
        self.known.insert(d.clone());
        if claimed {
            return None;
        }
        if now < self.learning_until {
            return None;
        }
        let service = format!("{}/{}", d.port, d.proto.name());
        Some(Finding {
            rule: RuleId::NewDestination,
            key: format!("{}>{}:{service}", d.program(), d.net),
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
                "executable": ev.who.executable(),
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
        // (process, destination, time, alerts?)
        let steps: [(&[u8], &str, u64, bool); 5] = [
            // Learning: remembered, not alerted.
            (b"curl", "203.0.113.7:443", 50, false),
            // Same /24 and port: known.
            (b"curl", "203.0.113.9:443", 200, false),
            // A new port after learning.
            (b"curl", "203.0.113.7:8443", 200, true),
            // Another process to the same place is new for it.
            (b"wget", "203.0.113.7:443", 200, true),
            // Once is enough.
            (b"curl", "203.0.113.7:8443", 300, false),
        ];
        let mut found = Vec::new();
        for (comm, remote, t, alerts) in steps {
            let f = n.observe(&rules, &out(comm, remote), t);
            assert_eq!(f.is_some(), alerts, "{remote} at {t}");
            found.extend(f);
        }
        assert_eq!(found[0].key, "curl>203.0.113.0/24:8443/tcp");
        assert!(
            found[0].message.contains("for the first time"),
            "{}",
            found[0].message
        );
        // Ingress and nameless events teach nothing.
        let mut inbound = out(b"sshd", "198.51.100.1:22");
        inbound.direction = Direction::Ingress;
        assert!(n.observe(&rules, &inbound, 300).is_none());
        assert!(dest_of(&rules.new_destination, &inbound).is_none());
        assert_eq!(n.len(), 3);
    }

    #[test]
    fn programs_are_known_by_their_executable_once_known() {
        use crate::core::process::Process;
        use std::sync::Arc;
        let rules = Rules::default();
        let mut n = NewDestinations::new(100);
        let with_exe = |comm: &[u8], exe: &[u8], remote: &str| {
            let mut e = out(comm, remote);
            e.who.process = Some(Arc::new(Process {
                pid: 7,
                ppid: 1,
                start_ns: 0,
                uid: 0,
                cgroup: 0,
                entity_id: "x".into(),
                executable: Some(Text::escaped(exe, 256)),
                args: None,
                args_truncated: false,
            }));
            e
        };
        // Learned by name (before executables were known, or from an older store).
        assert!(n
            .observe(&rules, &out(b"curl", "203.0.113.7:443"), 50)
            .is_none());
        // The same program, now with its executable: known already, no alert.
        let curl = with_exe(b"curl", b"/usr/bin/curl", "203.0.113.7:443");
        assert!(n.observe(&rules, &curl, 200).is_none());
        // A renamed process (prctl) running the same executable is the same program.
        let renamed = with_exe(b"innocent", b"/usr/bin/curl", "203.0.113.7:443");
        assert!(n.observe(&rules, &renamed, 200).is_none());
        // Another executable with the same name is another program (the first
        // one took the name's destinations over).
        let fake = with_exe(b"curl", b"/tmp/curl", "203.0.113.7:443");
        let f = n.observe(&rules, &fake, 200).expect("a new program");
        assert_eq!(f.key, "/tmp/curl>203.0.113.0/24:443/tcp");
        assert_eq!(f.evidence["executable"], "/tmp/curl");
    }
}
