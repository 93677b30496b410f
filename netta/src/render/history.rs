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

/// The text table; `title` goes in the original tool's header. The DOMAIN,
/// EXECUTABLE and CONTAINER columns are there when some row has one.
pub fn render_text(rows: &[ConnRow]) -> String {
    use super::list::{container_cell, user_cell, Column};
    let col = |head, f: &dyn Fn(&ConnRow) -> String| Column::new(head, rows.iter().map(f));
    let cols = vec![
        col("TIME (UTC)", &|r| utc(r.ts_us)),
        col("ACTION", &|r| r.action.clone()),
        col("PROTO", &|r| r.proto.to_uppercase()),
        col("SOURCE", &|r| r.src.to_string()),
        col("DESTINATION", &|r| {
            if r.dst.port() == 0 && r.dst.ip().is_unspecified() {
                "-".into()
            } else {
                r.dst.to_string()
            }
        }),
        col("DOMAIN", &|r| {
            r.domain.as_ref().map_or("-".into(), |d| d.to_string())
        })
        .optional(),
        col("DIR", &|r| r.direction.clone()),
        col("PROCESS", &|r| owner(r.pid, &r.comm)),
        col("EXECUTABLE", &|r| r.who.executable().unwrap_or("-").into()).optional(),
        col("USER", &|r| user_cell(&r.who)),
        col("CONTAINER", &|r| container_cell(&r.who)).optional(),
        col("DURATION", &|r| {
            r.duration_us()
                .map_or("-".into(), |d| duration(d as u64 * 1000))
        }),
        col("SENT", &|r| human_bytes(r.bytes_sent)),
        col("RECV", &|r| human_bytes(r.bytes_recv)),
    ];
    let lines = super::list::lay_out(cols);
    let mut out = String::new();
    super::list::header(&mut out, "CONNECTION HISTORY");
    for l in &lines {
        let _ = writeln!(out, "{l}");
    }
    let _ = writeln!(out, "\n{} rows", rows.len());
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
        if let Some(u) = r.who.uid {
            v["process"]["uid"] = json!(u);
        }
        if let Some(p) = &r.who.process {
            if let Some(e) = &p.executable {
                v["process"]["executable"] = json!(e.as_str());
            }
            if let Some(a) = &p.args {
                v["process"]["args"] = json!(a.iter().map(|a| a.as_str()).collect::<Vec<_>>());
            }
            if p.ppid != 0 {
                v["process"]["parent"] = json!({ "pid": p.ppid });
            }
            if p.start_ns != 0 {
                v["process"]["start"] = json!(utc((p.start_ns / 1000) as i64));
            }
            v["process"]["entity_id"] = json!(&*p.entity_id);
        }
    }
    if let Some(u) = r.who.uid {
        v["user"] = json!({ "id": u.to_string() });
        if let Some(n) = &r.who.user {
            v["user"]["name"] = json!(n.as_str());
        }
    }
    if r.netns != 0 {
        v["netns"] = json!(r.netns);
    }
    if let Some(c) = &r.who.container {
        if let Some(id) = &c.id {
            v["container"] = json!({ "id": &**id });
        }
        if let Some(p) = &c.pod {
            v["pod"] = json!({
                "uid": &*p.uid,
                "name": p.name.as_ref().map(|n| n.as_str()),
                "namespace": p.namespace.as_ref().map(|n| n.as_str()),
            });
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

pub const CSV_HEADER: [&str; 22] = [
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
    "User",
    "Executable",
    "Parent PID",
    "Network Namespace",
    "Container",
    "Pod",
];

/// Already escaped text, defused for spreadsheets ('' when absent).
fn cell(v: Option<&str>) -> String {
    v.map(|v| sanitize::csv_cell(v).into_owned())
        .unwrap_or_default()
}

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
            r.who.uid.map_or(String::new(), |u| u.to_string()),
            r.start_us.map_or(String::new(), utc),
            r.duration_us()
                .map_or(String::new(), |d| format!("{:.6}", d as f64 / 1e6)),
            r.bytes_sent.to_string(),
            r.bytes_recv.to_string(),
            r.domain
                .as_ref()
                .map(|d| sanitize::csv_cell(d.as_str()).into_owned())
                .unwrap_or_default(),
            cell(r.who.user.as_ref().map(|u| u.as_str())),
            cell(r.who.executable()),
            r.who
                .process
                .as_ref()
                .filter(|p| p.ppid != 0)
                .map_or(String::new(), |p| p.ppid.to_string()),
            if r.netns == 0 {
                String::new()
            } else {
                r.netns.to_string()
            },
            cell(r.who.container_id()),
            cell(
                r.who
                    .container
                    .as_ref()
                    .and_then(|c| c.pod.as_ref())
                    .map(|p| &*p.uid),
            ),
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
            netns: 0,
            who: crate::core::event::Who {
                uid: Some(1000),
                ..Default::default()
            },
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

    #[test]
    fn owners_show_in_text_csv_and_json_when_known() {
        let plain = render_text(&[row(b"curl")]);
        assert!(
            !plain.contains("EXECUTABLE") && !plain.contains("CONTAINER"),
            "{plain}"
        );
        let mut r = row(b"python3");
        r.netns = 4026531840;
        r.who = crate::fixture::owned();
        let t = render_text(&[r.clone(), row(b"curl")]);
        let head = t.lines().nth(3).unwrap();
        assert!(head.contains("EXECUTABLE") && head.contains("USER"), "{t}");
        assert!(head.contains("CONTAINER"), "{t}");
        assert!(t.contains("/usr/bin/python3") && t.contains("alice"), "{t}");
        assert!(t.contains("3f2a8b5c3f2a "), "{t}");
        let v = row_value(&r);
        assert_eq!(v["process"]["executable"], "/usr/bin/python3");
        assert_eq!(v["process"]["parent"]["pid"], 7);
        assert_eq!(
            v["process"]["args"],
            serde_json::json!(["python3", "-c\\n"])
        );
        assert_eq!(v["user"]["name"], "alice");
        assert_eq!(v["netns"], 4026531840u32);
        assert_eq!(v["pod"]["name"], "web-0");
        let c = render_csv(&[r]);
        let rec = csv::Reader::from_reader(c.as_bytes())
            .records()
            .next()
            .unwrap()
            .unwrap();
        assert_eq!(&rec[16], "alice");
        assert_eq!(&rec[17], "/usr/bin/python3");
        assert_eq!(&rec[18], "7");
        assert_eq!(&rec[19], "4026531840");
        assert_eq!(&rec[21], "6a1b3c4d-1111-2222-3333-444455556666");
    }
}
