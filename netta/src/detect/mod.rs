//! Suspicious-activity detection. Each finding has a stable rule id, a severity,
//! evidence and first/last-seen times. This module holds the rules that look at
//! the live table; the text view keeps the original tool's wording.
use std::collections::{BTreeMap, HashSet};
use std::fmt::Write as _;
use std::net::IpAddr;

use serde_json::json;

use crate::event::{Direction, State};
use crate::services::Services;
use crate::table::Snapshot;
use crate::view;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum RuleId {
    UnusualHighPort,
    HighConnectionCount,
}

impl RuleId {
    pub fn id(self) -> &'static str {
        match self {
            RuleId::UnusualHighPort => "unusual-high-port",
            RuleId::HighConnectionCount => "high-connection-count",
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            RuleId::UnusualHighPort => "Unusual high port",
            RuleId::HighConnectionCount => "High connection count",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Severity {
    Low,
    Medium,
    High,
}

impl Severity {
    pub fn name(self) -> &'static str {
        match self {
            Severity::Low => "low",
            Severity::Medium => "medium",
            Severity::High => "high",
        }
    }

    /// ECS `event.severity` (0-100, Elastic's low/medium/high risk scores).
    pub fn score(self) -> u8 {
        match self {
            Severity::Low => 21,
            Severity::Medium => 47,
            Severity::High => 73,
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct Alert {
    pub rule: RuleId,
    pub severity: Severity,
    /// One line for the text view, hostile strings already escaped.
    pub message: String,
    pub source_ip: Option<IpAddr>,
    pub first_ns: u64,
    pub last_ns: u64,
    pub evidence: serde_json::Value,
}

#[derive(Clone, Debug)]
pub struct Rules {
    /// Remote ports above this, with no known service, are unusual.
    pub high_port_above: u16,
    /// More concurrent connections than this to one remote IP is an alert.
    pub max_conns_per_ip: usize,
}

impl Default for Rules {
    fn default() -> Self {
        Rules {
            high_port_above: 49152,
            max_conns_per_ip: 10,
        }
    }
}

/// The original tool's two rules, on a table snapshot taken at `now_ns`.
pub fn scan(snap: &Snapshot, services: &Services, rules: &Rules, now_ns: u64) -> Vec<Alert> {
    let mut alerts = Vec::new();
    // A port that listens here is a service of this host, wherever it sits.
    let listening: HashSet<u16> = snap
        .conns
        .iter()
        .filter(|c| c.state == State::Listen)
        .map(|c| c.local.port())
        .collect();
    let mut rows: Vec<_> = snap.conns.iter().collect();
    rows.sort_by_key(|c| (c.local, c.remote));
    for c in rows {
        let port = c.remote.port();
        let unusual = c.state == State::Established
            && c.has_peer()
            && c.direction != Direction::Ingress
            && !listening.contains(&c.local.port())
            && port > rules.high_port_above
            && !listening.contains(&port)
            && services.name(port, c.proto).is_none();
        if unusual {
            alerts.push(Alert {
                rule: RuleId::UnusualHighPort,
                severity: Severity::Low,
                message: format!(
                    "Unusual high port: {} -> {} (unknown)",
                    view::addr(c.local),
                    view::addr(c.remote)
                ),
                source_ip: Some(c.local.ip()),
                first_ns: c.start_ns,
                last_ns: now_ns,
                evidence: json!({
                    "local": view::addr(c.local),
                    "remote": view::addr(c.remote),
                    "pid": c.pid,
                    "process": String::from_utf8_lossy(c.comm.as_bytes()),
                }),
            });
        }
    }
    let mut per_ip: BTreeMap<IpAddr, (usize, u64)> = BTreeMap::new();
    for c in &snap.conns {
        if c.has_peer() && c.state.is_active() && c.state != State::TimeWait {
            let e = per_ip.entry(c.remote.ip()).or_insert((0, u64::MAX));
            e.0 += 1;
            if c.start_ns != 0 {
                e.1 = e.1.min(c.start_ns);
            }
        }
    }
    for (ip, (n, first)) in per_ip {
        if n > rules.max_conns_per_ip {
            alerts.push(Alert {
                rule: RuleId::HighConnectionCount,
                severity: Severity::Medium,
                message: format!("High connection count to {ip}: {n} connections"),
                source_ip: Some(ip),
                first_ns: if first == u64::MAX { now_ns } else { first },
                last_ns: now_ns,
                evidence: json!({ "remote_ip": ip.to_string(), "connections": n }),
            });
        }
    }
    alerts
}

/// The original's "SUSPICIOUS ACTIVITY DETECTION" block.
pub fn render(alerts: &[Alert]) -> String {
    let mut out = String::new();
    view::header(&mut out, "SUSPICIOUS ACTIVITY DETECTION");
    if alerts.is_empty() {
        let _ = writeln!(out, "No suspicious activity detected");
    } else {
        let _ = writeln!(out, "Potential Issues Found:");
        for a in alerts {
            let _ = writeln!(out, "  ⚠  {}", a.message);
        }
    }
    let _ = writeln!(out, "{}", view::heavy_rule());
    out
}

pub fn to_json(a: &Alert, clock: &crate::clock::Clock) -> serde_json::Value {
    json!({
        "rule": { "id": a.rule.id(), "name": a.rule.name() },
        "severity": a.severity.name(),
        "message": a.message,
        "source_ip": a.source_ip.map(|i| i.to_string()),
        "first_seen": clock.rfc3339(a.first_ns),
        "last_seen": clock.rfc3339(a.last_ns),
        "evidence": a.evidence,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::Proto;
    use crate::fixture::{conn, snapshot};

    #[test]
    fn the_originals_sample_findings() {
        let mut snap = snapshot();
        for i in 0..15u16 {
            snap.conns.push(conn(
                100 + i as u64,
                Proto::Tcp,
                &format!("192.168.1.100:{}", 30000 + i),
                "142.250.185.46:443",
                State::Established,
                Direction::Egress,
                5678,
                b"chrome",
            ));
        }
        let alerts = scan(&snap, &Services::builtin(), &Rules::default(), 0);
        let text = render(&alerts);
        assert!(
            text.contains(
                "  ⚠  Unusual high port: 192.168.1.100:40000 -> 93.184.216.34:65432 (unknown)"
            ),
            "{text}"
        );
        assert!(
            text.contains("  ⚠  High connection count to 142.250.185.46: 16 connections"),
            "{text}"
        );
        assert_eq!(alerts.len(), 2, "{text}");
    }

    #[test]
    fn accepted_connections_and_local_services_are_not_unusual() {
        let mut snap = Snapshot::default();
        // A client's ephemeral port seen from the server side.
        snap.conns.push(conn(
            1,
            Proto::Tcp,
            "10.0.0.1:22",
            "10.0.0.9:60000",
            State::Established,
            Direction::Ingress,
            1,
            b"sshd",
        ));
        // Loopback client of a local server bound to a high port.
        snap.conns.push(conn(
            2,
            Proto::Tcp,
            "127.0.0.1:55000",
            "0.0.0.0:0",
            State::Listen,
            Direction::Unknown,
            2,
            b"srv",
        ));
        snap.conns.push(conn(
            3,
            Proto::Tcp,
            "127.0.0.1:41000",
            "127.0.0.1:55000",
            State::Established,
            Direction::Egress,
            3,
            b"cli",
        ));
        assert!(scan(&snap, &Services::builtin(), &Rules::default(), 0).is_empty());
        assert_eq!(
            render(&[]).lines().nth(3),
            Some("No suspicious activity detected")
        );
    }

    #[test]
    fn ten_connections_is_not_more_than_ten() {
        let mut snap = Snapshot::default();
        for i in 0..10u16 {
            snap.conns.push(conn(
                i as u64,
                Proto::Tcp,
                &format!("10.0.0.1:{}", 1000 + i),
                "10.0.0.2:80",
                State::Established,
                Direction::Egress,
                1,
                b"c",
            ));
        }
        snap.conns.push(conn(
            99,
            Proto::Tcp,
            "10.0.0.1:999",
            "10.0.0.2:80",
            State::TimeWait,
            Direction::Egress,
            1,
            b"c",
        ));
        assert!(scan(&snap, &Services::builtin(), &Rules::default(), 0).is_empty());
    }
}
