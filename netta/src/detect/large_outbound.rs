//! Large outbound transfer: a connection, or a process over a window, that sent
//! much more than it received.
use std::collections::VecDeque;

use rustc_hash::FxHashMap;
use serde_json::json;

use super::alert::{Finding, RuleId};
use super::{Rules, MAX_SOURCES, SEC};
use crate::core::event::ConnEvent;
use crate::core::format::{addr, go_duration, human_bytes, owner};
use crate::core::table::Conn;

/// Bytes a process sent and received over a sliding window, in 10 s buckets so
/// memory stays fixed however many connections it closes.
#[derive(Default)]
struct Outbound {
    buckets: VecDeque<(u64, u64, u64)>,
    sent: u64,
    recv: u64,
}

const BUCKET_NS: u64 = 10 * SEC;

impl Outbound {
    fn add(&mut self, now: u64, sent: u64, recv: u64, span: u64) {
        let b = now / BUCKET_NS;
        match self.buckets.back_mut() {
            Some(last) if last.0 == b => {
                last.1 = last.1.saturating_add(sent);
                last.2 = last.2.saturating_add(recv);
            }
            _ => self.buckets.push_back((b, sent, recv)),
        }
        self.sent = self.sent.saturating_add(sent);
        self.recv = self.recv.saturating_add(recv);
        self.expire(now, span);
    }

    fn expire(&mut self, now: u64, span: u64) {
        let oldest = now.saturating_sub(span) / BUCKET_NS;
        while let Some(&(b, s, r)) = self.buckets.front() {
            if b >= oldest {
                break;
            }
            self.buckets.pop_front();
            self.sent = self.sent.saturating_sub(s);
            self.recv = self.recv.saturating_sub(r);
        }
    }

    fn first_ns(&self) -> Option<u64> {
        self.buckets.front().map(|b| b.0 * BUCKET_NS)
    }
}

#[derive(Default)]
pub(super) struct LargeOutbound {
    by_pid: FxHashMap<u32, Outbound>,
}

impl LargeOutbound {
    /// A closed connection: lopsided on its own, or adding up for its process.
    pub fn observe(&mut self, rules: &Rules, ev: &ConnEvent, now: u64) -> Option<Finding> {
        let cfg = &rules.large_outbound;
        if rules.allow.ip(ev.remote.ip()) || rules.allow.process(&ev.comm) {
            return None;
        }
        let lopsided = |sent: u64, recv: u64| {
            sent >= cfg.min_bytes && sent as f64 >= cfg.ratio * recv.max(1) as f64
        };
        if lopsided(ev.bytes_sent, ev.bytes_recv) {
            return Some(one_connection(ev));
        }
        if ev.pid == 0 {
            return None;
        }
        if !self.by_pid.contains_key(&ev.pid) && self.by_pid.len() >= MAX_SOURCES {
            return None;
        }
        let o = self.by_pid.entry(ev.pid).or_default();
        o.add(
            now,
            ev.bytes_sent,
            ev.bytes_recv,
            cfg.window.as_nanos() as u64,
        );
        let (sent, recv) = (o.sent, o.recv);
        let first = o.first_ns().unwrap_or(now);
        if !lopsided(sent, recv) {
            return None;
        }
        Some(Finding {
            rule: RuleId::LargeOutbound,
            key: format!("pid {}", ev.pid),
            message: format!(
                "Large outbound transfer: {} sent {} (received {}) within {}",
                owner(ev.pid, &ev.comm),
                human_bytes(sent),
                human_bytes(recv),
                go_duration(cfg.window)
            ),
            source_ip: Some(ev.local.ip()),
            first_ns: first,
            evidence: json!({ "bytes_sent": sent, "bytes_received": recv, "pid": ev.pid }),
        })
    }

    /// Open connections past the threshold already (live counters): the same
    /// incident their close would open, so it opens once, as soon as it is true.
    pub fn scan_live(rules: &Rules, rows: &[&Conn], now: u64, out: &mut Vec<Finding>) {
        let cfg = &rules.large_outbound;
        for c in rows {
            if c.bytes_sent < cfg.min_bytes
                || (c.bytes_sent as f64) < cfg.ratio * c.bytes_recv.max(1) as f64
                || !c.has_peer()
                || c.state.is_listener()
                || rules.allow.ip(c.remote.ip())
                || rules.allow.process(&c.comm)
            {
                continue;
            }
            let ev = ConnEvent {
                bytes_sent: c.bytes_sent,
                bytes_recv: c.bytes_recv,
                ..c.event(crate::core::event::Action::Updated, now)
            };
            out.push(one_connection(&ev));
        }
    }

    pub fn expire(&mut self, rules: &Rules, now: u64) {
        let span = rules.large_outbound.window.as_nanos() as u64;
        self.by_pid.retain(|_, o| {
            o.expire(now, span);
            !o.buckets.is_empty()
        });
    }
}

/// One connection that sent far more than it received.
fn one_connection(ev: &ConnEvent) -> Finding {
    Finding {
        rule: RuleId::LargeOutbound,
        key: format!("{}->{}", ev.local, ev.remote),
        message: format!(
            "Large outbound transfer: {} -> {} sent {} (received {}) by {}",
            addr(ev.local),
            addr(ev.remote),
            human_bytes(ev.bytes_sent),
            human_bytes(ev.bytes_recv),
            owner(ev.pid, &ev.comm)
        ),
        source_ip: Some(ev.local.ip()),
        first_ns: ev.start_ns,
        evidence: json!({
            "bytes_sent": ev.bytes_sent, "bytes_received": ev.bytes_recv,
            "pid": ev.pid, "process": String::from_utf8_lossy(ev.comm.as_bytes()),
        }),
    }
}
