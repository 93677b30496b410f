//! Abnormal states: CLOSE_WAIT piling up in one process, or SYN_SENT stuck
//! towards one remote address.
use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, SocketAddr};

use serde_json::json;

use super::alert::{Finding, RuleId};
use super::Rules;
use crate::core::event::State;
use crate::core::format::owner;
use crate::core::sanitize::Comm;
use crate::core::table::Conn;

pub(super) fn scan_table(rules: &Rules, rows: &[&Conn], now: u64, found: &mut Vec<Finding>) {
    let allow = &rules.allow;
    let mut close_wait: BTreeMap<(u32, Comm), usize> = BTreeMap::new();
    let mut syn_sent: BTreeMap<IpAddr, BTreeSet<SocketAddr>> = BTreeMap::new();
    for c in rows {
        match c.state {
            State::CloseWait => *close_wait.entry((c.pid, c.comm)).or_default() += 1,
            State::SynSent => {
                syn_sent.entry(c.remote.ip()).or_default().insert(c.local);
            }
            _ => {}
        }
    }
    for ((pid, comm), n) in close_wait {
        if n >= rules.abnormal_state.close_wait && !allow.process(&comm) {
            found.push(Finding {
                rule: RuleId::AbnormalState,
                key: format!("close-wait {pid}"),
                message: format!(
                    "Abnormal states: {n} connections in CLOSE_WAIT held by {}",
                    owner(pid, &comm)
                ),
                source_ip: None,
                first_ns: now,
                evidence: json!({ "state": "CLOSE_WAIT", "count": n, "pid": pid }),
            });
        }
    }
    for (ip, locals) in syn_sent {
        if locals.len() >= rules.abnormal_state.syn_sent && !allow.ip(ip) {
            found.push(Finding {
                rule: RuleId::AbnormalState,
                key: format!("syn-sent {ip}"),
                message: format!(
                    "Abnormal states: {} connections stuck in SYN_SENT to {ip}",
                    locals.len()
                ),
                source_ip: Some(ip),
                first_ns: now,
                evidence: json!({ "state": "SYN_SENT", "count": locals.len(), "remote_ip": ip.to_string() }),
            });
        }
    }
}
