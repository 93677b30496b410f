//! High connection count (the original's rule): too many active TCP connections
//! to one remote address.
use std::collections::BTreeMap;
use std::net::IpAddr;

use serde_json::json;

use super::alert::{Finding, RuleId};
use super::Rules;
use crate::core::event::{Proto, State};
use crate::core::table::Conn;

pub(super) fn scan_table(rules: &Rules, rows: &[&Conn], now: u64, found: &mut Vec<Finding>) {
    let mut per_ip: BTreeMap<IpAddr, usize> = BTreeMap::new();
    for c in rows {
        if c.has_peer()
            && c.state.is_active()
            && c.state != State::TimeWait
            && c.proto == Proto::Tcp
        {
            *per_ip.entry(c.remote.ip()).or_default() += 1;
        }
    }
    for (ip, n) in per_ip {
        if n > rules.max_conns_per_ip && !rules.allow.ip(ip) {
            found.push(Finding {
                rule: RuleId::HighConnectionCount,
                key: ip.to_string(),
                message: format!("High connection count to {ip}: {n} connections"),
                source_ip: Some(ip),
                first_ns: now,
                evidence: json!({ "remote_ip": ip.to_string(), "connections": n }),
            });
        }
    }
}
