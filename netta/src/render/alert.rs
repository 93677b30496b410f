//! Alerts as text: the original's "SUSPICIOUS ACTIVITY DETECTION" block, and the
//! JSON object the `detect --json` and monitor views print.
use std::fmt::Write as _;

use serde_json::json;

use crate::core::clock::Clock;
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

pub fn to_json(a: &Alert, clock: &Clock) -> serde_json::Value {
    json!({
        "rule": { "id": a.rule.id(), "name": a.rule.name() },
        "severity": a.severity.name(),
        "message": a.message,
        "source_ip": a.source_ip.map(|ip| ip.to_string()),
        "first_seen": clock.rfc3339(a.first_ns),
        "last_seen": clock.rfc3339(a.last_ns),
        "updates": a.updates,
        "evidence": a.evidence,
    })
}
