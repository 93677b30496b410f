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
