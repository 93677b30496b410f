//! `netta baseline show`: what the `new-destination` rule has learned, as text or JSON.
use std::fmt::Write as _;
use std::time::{Duration, UNIX_EPOCH};

use serde_json::{json, Value};

use crate::core::stored::BaselineReport;

fn utc(us: i64) -> String {
    let t = UNIX_EPOCH + Duration::from_micros(us.max(0) as u64);
    humantime::format_rfc3339_seconds(t).to_string()
}

/// The text view; `now_us` says whether learning is still going on.
pub fn render_text(r: &BaselineReport, now_us: i64) -> String {
    let mut out = String::new();
    super::list::header(&mut out, "NEW-DESTINATION BASELINE");
    let state = if now_us < r.learning_until_us {
        "learning until"
    } else {
        "alerting since"
    };
    let _ = writeln!(
        out,
        "Learning started {}; {state} {}\n",
        utc(r.started_us),
        utc(r.learning_until_us)
    );
    let head = [
        "PROGRAM",
        "NETWORK",
        "PORT",
        "FIRST SEEN (UTC)",
        "LAST SEEN (UTC)",
        "COUNT",
    ];
    let cells: Vec<[String; 6]> = r
        .destinations
        .iter()
        .map(|d| {
            [
                d.program(),
                d.network.clone(),
                format!("{}/{}", d.port, d.proto),
                utc(d.first_us),
                utc(d.last_us),
                d.count.to_string(),
            ]
        })
        .collect();
    let w = super::list::widths(head, &cells);
    super::list::push_row(&mut out, &head.map(String::from), &w);
    for c in &cells {
        super::list::push_row(&mut out, c, &w);
    }
    let _ = writeln!(out, "\n{} destinations", r.destinations.len());
    out
}

pub fn render_json(r: &BaselineReport, now_us: i64) -> String {
    let v = json!({
        "started": utc(r.started_us),
        "learning_until": utc(r.learning_until_us),
        "learning": now_us < r.learning_until_us,
        "destinations": r.destinations.iter().map(|d| json!({
            "process": (!d.comm.is_empty()).then(|| String::from_utf8_lossy(d.comm.as_bytes())),
            "executable": d.exe.as_ref().map(|e| e.as_str()),
            "network": d.network,
            "port": d.port,
            "transport": d.proto,
            "first_seen": utc(d.first_us),
            "last_seen": utc(d.last_us),
            "count": d.count,
        })).collect::<Vec<Value>>(),
    });
    serde_json::to_string_pretty(&v).unwrap_or_default() + "\n"
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::sanitize::Comm;
    use crate::core::stored::BaselineRow;

    #[test]
    fn shows_learning_state_and_escaped_names() {
        let r = BaselineReport {
            started_us: 1_700_000_000_000_000,
            learning_until_us: 1_700_086_400_000_000,
            destinations: vec![BaselineRow {
                comm: Comm::from_bytes(b"cu\x1b[2Jrl"),
                exe: None,
                network: "203.0.113.0/24".into(),
                port: 443,
                proto: "tcp".into(),
                first_us: 1_700_000_001_000_000,
                last_us: 1_700_000_002_000_000,
                count: 3,
            }],
        };
        let t = render_text(&r, 1_700_000_100_000_000);
        assert!(t.contains("learning until 2023-11-15T22:13:20Z"), "{t}");
        assert!(t.contains("203.0.113.0/24"), "{t}");
        assert!(t.contains("443/tcp"), "{t}");
        assert!(!t.contains('\x1b'), "{t}");
        assert!(render_text(&r, i64::MAX).contains("alerting since"));
        let j: Value = serde_json::from_str(&render_json(&r, 0)).unwrap();
        assert_eq!(j["learning"], true);
        assert_eq!(j["destinations"][0]["count"], 3);
    }
}
