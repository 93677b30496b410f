//! Alerts as text: the original's "SUSPICIOUS ACTIVITY DETECTION" block. Their
//! JSON is the one ECS alert document, [`crate::render::ecs::alert_value`].
use std::fmt::Write as _;

use crate::detect::Alert;
use crate::render::list::{header, heavy_rule};

/// The original's "SUSPICIOUS ACTIVITY DETECTION" block.
pub fn render(alerts: &[Alert]) -> String {
    let mut out = String::new();
    header(&mut out, "SUSPICIOUS ACTIVITY DETECTION");
    if alerts.is_empty() {
        let _ = writeln!(out, "No suspicious activity detected");
    } else {
        let _ = writeln!(out, "Potential Issues Found:");
        for a in alerts {
            let _ = writeln!(out, "  ⚠  {}", a.message);
        }
    }
    let _ = writeln!(out, "{}", heavy_rule());
    out
}

#[cfg(test)]
mod tests {
    //! The table rules' wording, as the original printed it.
    use super::*;
    use crate::core::event::{Direction, Proto, State};
    use crate::core::services::Services;
    use crate::core::table::Snapshot;
    use crate::detect::Rules;
    use crate::fixture::{conn, from_ports, scan, snapshot};

    #[test]
    fn table_rules_keep_the_originals_wording() {
        let mut snap = snapshot();
        snap.conns.extend(from_ports(
            15,
            "192.168.1.100",
            30000,
            "142.250.185.46:443",
            State::Established,
            5678,
            b"chrome",
        ));
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
        snap.conns.extend(from_ports(
            10,
            "10.0.0.1",
            1000,
            "10.0.0.2:80",
            State::Established,
            1,
            b"c",
        ));
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
        assert_eq!(
            render(&[]).lines().nth(3),
            Some("No suspicious activity detected")
        );
    }
}
