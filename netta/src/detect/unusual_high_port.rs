//! Unusual high port (the original's rule): an outbound connection to a high
//! port with no known service, that is not a service of this host.
use std::collections::HashSet;

use serde_json::json;

use super::alert::{Finding, RuleId};
use super::Rules;
use crate::core::event::{Direction, State};
use crate::core::format::addr;
use crate::core::services::Services;
use crate::core::table::Conn;

pub(super) fn scan_table(
    rules: &Rules,
    services: &Services,
    rows: &[&Conn],
    now: u64,
    found: &mut Vec<Finding>,
) {
    let allow = &rules.allow;
    // A port that listens here is a service of this host, wherever it sits.
    let listening: HashSet<u16> = rows
        .iter()
        .filter(|c| c.state == State::Listen)
        .map(|c| c.local.port())
        .collect();
    for c in rows {
        let port = c.remote.port();
        let unusual = c.state == State::Established
            && c.has_peer()
            && c.direction != Direction::Ingress
            && !listening.contains(&c.local.port())
            && port > rules.high_port_above
            && !listening.contains(&port)
            && services.name(port, c.proto).is_none()
            && !allow.ip(c.remote.ip())
            && !allow.port(port)
            && !allow.process(&c.comm);
        if unusual {
            found.push(Finding {
                rule: RuleId::UnusualHighPort,
                key: format!("{}->{}", c.local, c.remote),
                message: format!(
                    "Unusual high port: {} -> {} (unknown)",
                    addr(c.local),
                    addr(c.remote)
                ),
                source_ip: Some(c.local.ip()),
                first_ns: if c.start_ns == 0 { now } else { c.start_ns },
                evidence: json!({
                    "local": addr(c.local), "remote": addr(c.remote),
                    "pid": c.pid, "process": String::from_utf8_lossy(c.comm.as_bytes()),
                }),
            });
        }
    }
}
