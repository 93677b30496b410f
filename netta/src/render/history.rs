//! Stored history rows as a text table, JSON or CSV. Process names are escaped
//! for the terminal and defused for spreadsheets.
use std::fmt::Write as _;
use std::time::{Duration, UNIX_EPOCH};

use serde_json::{json, Value};

use crate::core::format::{duration, human_bytes, owner};
use crate::core::sanitize;
use crate::core::stored::ConnRow;

fn utc(us: i64) -> String {
    let t = UNIX_EPOCH + Duration::from_micros(us.max(0) as u64);
    humantime::format_rfc3339_millis(t).to_string()
}

/// The text table; `title` goes in the original tool's header. The DOMAIN
/// column is there when some row has a name.
pub fn render_text(rows: &[ConnRow]) -> String {
    let head = [
        "TIME (UTC)",
        "ACTION",
        "PROTO",
        "SOURCE",
        "DESTINATION",
        "DOMAIN",
        "DIR",
        "PROCESS",
        "UID",
        "DURATION",
        "SENT",
        "RECV",
    ];
    let cells: Vec<[String; 12]> = rows
        .iter()
        .map(|r| {
            [
                utc(r.ts_us),
                r.action.clone(),
                r.proto.to_uppercase(),
                r.src.to_string(),
                if r.dst.port() == 0 && r.dst.ip().is_unspecified() {
                    "-".into()
                } else {
                    r.dst.to_string()
                },
                r.domain.as_ref().map_or("-".into(), |d| d.to_string()),
                r.direction.clone(),
                owner(r.pid, &r.comm),
                r.uid.map_or("-".into(), |u| u.to_string()),
                r.duration_us()
                    .map_or("-".into(), |d| duration(d as u64 * 1000)),
                human_bytes(r.bytes_sent),
                human_bytes(r.bytes_recv),
            ]
        })
        .collect();
    const DOMAIN: usize = 5;
    if rows.iter().any(|r| r.domain.is_some()) {
        text_table(head, &cells, rows.len())
    } else {
        let cells: Vec<[String; 11]> = cells
            .into_iter()
            .map(|r| super::list::without(r, DOMAIN))
            .collect();
        text_table(super::list::without(head, DOMAIN), &cells, rows.len())
    }
}

fn text_table<const N: usize>(head: [&str; N], cells: &[[String; N]], n: usize) -> String {
    let w = super::list::widths(head, cells);
    let mut out = String::new();
    super::list::header(&mut out, "CONNECTION HISTORY");
    super::list::push_row(&mut out, &head.map(String::from), &w);
    for r in cells {
        super::list::push_row(&mut out, r, &w);
    }
    let _ = writeln!(out, "\n{n} rows");
    out
}

pub fn row_value(r: &ConnRow) -> Value {
    let mut v = json!({
        "@timestamp": utc(r.ts_us),
        "action": r.action,
        "protocol": r.proto,
        "direction": r.direction,
        "source": { "ip": r.src.ip().to_string(), "port": r.src.port() },
        "destination": { "ip": r.dst.ip().to_string(), "port": r.dst.port() },
        "bytes_sent": r.bytes_sent,
        "bytes_received": r.bytes_recv,
        "owner": r.owner,
    });
    if let Some(s) = r.start_us {
        v["start"] = json!(utc(s));
    }
    if let Some(d) = r.duration_us() {
        v["duration_us"] = json!(d);
    }
    if r.pid != 0 {
        v["process"] = json!({ "pid": r.pid, "name": String::from_utf8_lossy(r.comm.as_bytes()) });
        if let Some(u) = r.uid {
            v["process"]["uid"] = json!(u);
        }
    }
    if r.packets != 0 {
        v["packets"] = json!(r.packets);
    }
    if r.partial {
        v["partial"] = json!(true);
    }
    if let Some(d) = &r.domain {
        v["destination"]["domain"] = json!(d.as_str());
    }
    v
}

pub fn render_json(rows: &[ConnRow]) -> String {
    let v: Vec<Value> = rows.iter().map(row_value).collect();
    serde_json::to_string_pretty(&v).unwrap_or_default() + "\n"
}

pub const CSV_HEADER: [&str; 16] = [
    "Timestamp",
    "Action",
    "Protocol",
    "Direction",
    "Source IP",
    "Source Port",
    "Destination IP",
    "Destination Port",
    "PID",
    "Process",
    "UID",
    "Start",
    "Duration (s)",
    "Bytes Sent",
    "Bytes Received",
    "Destination Domain",
];

pub fn render_csv(rows: &[ConnRow]) -> String {
    let mut w = csv::Writer::from_writer(Vec::new());
    let _ = w.write_record(CSV_HEADER);
    for r in rows {
        let name = sanitize::csv_cell(&sanitize::escape(r.comm.as_bytes())).into_owned();
        let _ = w.write_record([
            utc(r.ts_us),
            r.action.clone(),
            r.proto.to_uppercase(),
            r.direction.clone(),
            r.src.ip().to_string(),
            r.src.port().to_string(),
            r.dst.ip().to_string(),
            r.dst.port().to_string(),
            if r.pid == 0 {
                String::new()
            } else {
                r.pid.to_string()
            },
            name,
            r.uid.map_or(String::new(), |u| u.to_string()),
            r.start_us.map_or(String::new(), utc),
            r.duration_us()
                .map_or(String::new(), |d| format!("{:.6}", d as f64 / 1e6)),
            r.bytes_sent.to_string(),
            r.bytes_recv.to_string(),
            r.domain
                .as_ref()
                .map(|d| sanitize::csv_cell(d.as_str()).into_owned())
                .unwrap_or_default(),
        ]);
    }
    String::from_utf8(w.into_inner().unwrap_or_default()).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::sanitize::Comm;

    fn row(comm: &[u8]) -> ConnRow {
        ConnRow {
            ts_us: 1_764_648_000_000_000,
            start_us: Some(1_764_647_999_500_000),
            action: "closed".into(),
            proto: "tcp".into(),
            direction: "egress".into(),
            src: "127.0.0.1:40000".parse().unwrap(),
            dst: "203.0.113.7:443".parse().unwrap(),
            pid: 42,
            uid: Some(1000),
            comm: Comm::from_bytes(comm),
            owner: "hook".into(),
            bytes_sent: 2048,
            bytes_recv: 10,
            packets: 0,
            partial: false,
            domain: None,
        }
    }

    #[test]
    fn text_has_the_header_and_an_escaped_name() {
        let t = render_text(&[row(b"evil\x1b[2J\n")]);
        assert!(t.contains("CONNECTION HISTORY"));
        assert!(t.contains("2025-12-02T04:00:00.000Z"));
        assert!(t.contains("203.0.113.7:443"));
        assert!(t.contains("500ms") || t.contains("0.5"), "{t}");
        assert!(!t.contains('\x1b'));
        assert_eq!(t.lines().filter(|l| l.contains("evil")).count(), 1);
    }

    #[test]
    fn csv_defuses_formulas_and_json_keeps_the_identity() {
        let c = render_csv(&[row(b"=cmd|x")]);
        let mut rd = csv::Reader::from_reader(c.as_bytes());
        let rec = rd.records().next().unwrap().unwrap();
        assert_eq!(rec.len(), CSV_HEADER.len());
        assert!(!rec[9].starts_with('='), "{}", &rec[9]);
        assert_eq!(&rec[12], "0.500000");
        let v = row_value(&row(b"curl"));
        assert_eq!(v["process"]["name"], "curl");
        assert_eq!(v["process"]["uid"], 1000);
        assert_eq!(v["destination"]["port"], 443);
        assert_eq!(v["duration_us"], 500_000);
    }
}
