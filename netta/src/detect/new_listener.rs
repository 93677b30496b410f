//! New listener: a socket starts listening after netta started.
use serde_json::json;

use super::alert::{Finding, RuleId};
use super::Rules;
use crate::core::event::ConnEvent;
use crate::core::format::{addr, owner};

pub(super) fn observe(rules: &Rules, started_ns: u64, ev: &ConnEvent, now: u64) -> Option<Finding> {
    if !rules.new_listener
        || now < started_ns
        || rules.allow.port(ev.local.port())
        || rules.allow.process(&ev.comm)
    {
        return None;
    }
    Some(Finding {
        rule: RuleId::NewListener,
        key: format!("{}:{}", ev.local, ev.pid),
        message: format!(
            "New listener: {} {} by {}",
            ev.proto.upper(),
            addr(ev.local),
            owner(ev.pid, &ev.comm)
        ),
        source_ip: Some(ev.local.ip()),
        first_ns: now,
        evidence: json!({
            "address": addr(ev.local), "pid": ev.pid,
            "process": String::from_utf8_lossy(ev.comm.as_bytes()),
        }),
    })
}
