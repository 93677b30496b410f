//! SYN flood: SYN-ACKs retransmitted per listening port (from the kernel map),
//! and half-open connections piling up in the table.
use std::collections::BTreeMap;

use rustc_hash::FxHashMap;
use serde_json::json;

use super::alert::{Finding, RuleId};
use super::{Rules, SEC};
use crate::core::event::State;
use crate::core::table::Conn;

pub(super) struct SynFlood {
    last: FxHashMap<(u16, u16), (u64, u64)>,
    /// When the kernel map was last read: a port new in the map counted from 0 then.
    polled_ns: u64,
}

impl SynFlood {
    pub fn new(started_ns: u64) -> SynFlood {
        SynFlood {
            last: FxHashMap::default(),
            polled_ns: started_ns,
        }
    }

    /// SYN-ACK retransmission totals per (family, listening port).
    pub fn observe_synack(
        &mut self,
        rules: &Rules,
        totals: &[(u16, u16, u64)],
        now: u64,
        found: &mut Vec<Finding>,
    ) {
        let min_rate = rules.syn_flood.min_half_open_per_sec;
        // The map starts empty with netta, so a port missing from it had 0 before.
        let polled = std::mem::replace(&mut self.polled_ns, now);
        for &(family, port, total) in totals {
            let (prev, prev_ns) = self
                .last
                .get(&(family, port))
                .copied()
                .unwrap_or((0, polled));
            self.last.insert((family, port), (total, now));
            let secs = (now.saturating_sub(prev_ns)) as f64 / SEC as f64;
            let delta = total.saturating_sub(prev);
            if secs <= 0.0 || rules.allow.port(port) {
                continue;
            }
            let rate = delta as f64 / secs;
            if rate < min_rate as f64 {
                continue;
            }
            found.push(Finding {
                rule: RuleId::SynFlood,
                key: format!("port {port}"),
                message: format!(
                    "SYN flood against port {port}: {rate:.0} half-open connections/s left unanswered"
                ),
                source_ip: None,
                first_ns: prev_ns,
                evidence: json!({ "port": port, "synack_retransmits_per_sec": rate, "total": total }),
            });
        }
    }
}

/// Half-open connections per local port in the table.
pub(super) fn scan_table(rules: &Rules, rows: &[&Conn], now: u64, found: &mut Vec<Finding>) {
    let mut syn_recv: BTreeMap<u16, usize> = BTreeMap::new();
    for c in rows {
        if matches!(c.state, State::SynRecv | State::NewSynRecv) {
            *syn_recv.entry(c.local.port()).or_default() += 1;
        }
    }
    for (port, n) in syn_recv {
        if n >= rules.syn_flood.min_syn_recv && !rules.allow.port(port) {
            found.push(Finding {
                rule: RuleId::SynFlood,
                key: format!("port {port}"),
                message: format!("SYN flood against port {port}: {n} half-open connections"),
                source_ip: None,
                first_ns: now,
                evidence: json!({ "port": port, "half_open": n }),
            });
        }
    }
}
