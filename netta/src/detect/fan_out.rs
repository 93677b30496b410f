//! Fan-out: one process connecting to many distinct hosts within a window.
use std::net::IpAddr;

use rustc_hash::FxHashMap;
use serde_json::json;

use super::alert::{Finding, RuleId};
use super::window::Window;
use super::{Rules, MAX_SOURCES};
use crate::core::event::ConnEvent;
use crate::core::format::{go_duration, owner};
use crate::core::sanitize::Comm;

#[derive(Default)]
pub(super) struct FanOut {
    by_pid: FxHashMap<u32, (Window<IpAddr>, Comm)>,
}

impl FanOut {
    pub fn observe(&mut self, rules: &Rules, ev: &ConnEvent, now: u64) -> Option<Finding> {
        if ev.pid == 0 || rules.allow.process(&ev.comm) || rules.allow.ip(ev.remote.ip()) {
            return None;
        }
        if !self.by_pid.contains_key(&ev.pid) && self.by_pid.len() >= MAX_SOURCES {
            return None;
        }
        let cfg = &rules.fan_out;
        let (w, comm) = self
            .by_pid
            .entry(ev.pid)
            .or_insert_with(|| (Window::new(cfg.window), ev.comm));
        *comm = ev.comm;
        w.add(ev.remote.ip(), now);
        if w.len() < cfg.min_hosts {
            return None;
        }
        Some(Finding {
            rule: RuleId::FanOut,
            key: ev.pid.to_string(),
            message: format!(
                "Fan-out: {} connected to {} hosts within {}",
                owner(ev.pid, comm),
                w.len(),
                go_duration(cfg.window)
            ),
            source_ip: Some(ev.local.ip()),
            first_ns: w.first_time().unwrap_or(now),
            evidence: json!({
                "pid": ev.pid, "process": String::from_utf8_lossy(comm.as_bytes()),
                "hosts": w.len(),
            }),
        })
    }

    pub fn expire(&mut self, now: u64) {
        self.by_pid.retain(|_, (w, _)| {
            w.prune(now);
            w.len() > 0
        });
    }
}
