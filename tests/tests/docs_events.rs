//! docs/events.md shows real lines: this test makes the traffic behind each
//! example (one line per `event.action`, alerts of three rules), captures what
//! `netta events` writes, validates it against ECS, and checks each
//! `<!-- netta-example: KEY -->` block of the document against it. What differs
//! from run to run (times, ids, ports, pids, host, counts, where the test
//! binaries live, namespaces) is compared by type only; the fields and every
//! other value must match. `NETTA_BLESS=1` rewrites the blocks with this run's
//! lines.
use std::path::PathBuf;
use std::time::Duration;

use netta_tests::*;

fn doc_path() -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/events.md"))
}

/// Fields whose values change from run to run.
const VARYING: &[&str] = &[
    "@timestamp",
    "event.start",
    "event.end",
    "event.duration",
    "event.id",
    "agent.id",
    "agent.ephemeral_id",
    "agent.version",
    "host",
    "source.port",
    "destination.port",
    "client.port",
    "server.port",
    "process.pid",
    "process.executable",
    "process.parent.pid",
    "process.start",
    "process.entity_id",
    "netta.netns",
    "netta.cgroup",
    "netta.sock_id",
    "network.community_id",
    "netta.incident",
    "netta.evidence",
    "netta.lost",
    "netta.evicted",
    "netta.updates",
    "message",
];

/// `v` with every varying value replaced by its JSON type.
fn normalised(v: &Value, path: &str) -> Value {
    if VARYING.contains(&path) {
        let kind = match v {
            Value::Null => "null",
            Value::Bool(_) => "bool",
            Value::Number(_) => "number",
            Value::String(_) => "string",
            Value::Array(_) => "array",
            Value::Object(_) => "object",
        };
        return Value::String(format!("<{kind}>"));
    }
    match v {
        Value::Object(m) => Value::Object(
            m.iter()
                .map(|(k, x)| {
                    let p = if path.is_empty() {
                        k.clone()
                    } else {
                        format!("{path}.{k}")
                    };
                    (k.clone(), normalised(x, &p))
                })
                .collect(),
        ),
        other => other.clone(),
    }
}

fn action(v: &Value) -> &str {
    str_at(v, &["event", "action"]).unwrap_or("")
}

/// The first line for which `pred` holds, or a failure naming `key`.
fn pick<'a>(all: &'a [Value], key: &str, pred: impl Fn(&Value) -> bool) -> &'a Value {
    all.iter()
        .find(|v| pred(v))
        .unwrap_or_else(|| panic!("no line for example {key}"))
}

fn touching(v: &Value, port: u64) -> bool {
    u64_at(v, &["destination", "port"]) == Some(port)
        || u64_at(v, &["source", "port"]) == Some(port)
}

/// (example key, its lines), from real traffic.
fn capture() -> Vec<(String, Vec<Value>)> {
    let dir = temp_dir("docs-events");
    let rules = dir.join("rules.toml");
    std::fs::write(&rules, "[alerts]\nrearm_after = \"2s\"\n").unwrap();
    let rules = rules.display().to_string();
    let mut out: Vec<(String, Vec<Value>)> = Vec::new();

    // Connections, a failed connect, a listener, a UDP flow and three rules' alerts.
    let mut ev = Events::start(&["--udp-idle", "1s", "--rules", &rules], &[]);
    let mut server = Traffic::spawn(&["tcp-server", "127.0.0.1:0", "1", "31", "nt-docsrv"]);
    let port: u64 = server.expect_line("port ").parse().unwrap();
    Traffic::to_loopback("tcp-client", port, &["1", "18", "nt-doccli"]).finish();
    server.finish();
    let closed = u64::from(free_tcp_port("127.0.0.1"));
    let mut c = Traffic::to_loopback("connect", closed, &["nt-doccli"]);
    assert_eq!(c.expect_line("refused"), "");
    c.finish();
    let mut udp = Traffic::spawn(&["udp-server", "127.0.0.1:0", "nt-docusrv"]);
    let uport: u64 = udp.expect_line("port ").parse().unwrap();
    Traffic::to_loopback("udp-send", uport, &["2", "15", "nt-docudp"]).finish();
    let first = free_tcp_range("127.0.0.1", 23_000, 300);
    let mut scan = Traffic::spawn(&[
        "scan",
        "127.0.0.1",
        &first.to_string(),
        &(first + 299).to_string(),
        "nt-docscan",
    ]);
    scan.expect_line("done ");
    scan.finish();
    let mut hold_srv = Traffic::spawn(&["tcp-server", "127.0.0.1:0", "15", "0", "nt-dochsrv"]);
    let hport = hold_srv.expect_line("port ");
    let mut hold = Traffic::to_loopback("hold", hport, &["15", "nt-dochold"]);
    hold.expect_line("held");
    let mine = |v: &Value| {
        str_at(v, &["netta", "evidence", "process"]) == Some("nt-docsrv")
            && str_at(v, &["rule", "id"]) == Some("new-listener")
    };
    let wanted = |all: &[Value]| {
        all.iter().any(|v| mine(v) && v["netta"]["final"] == true)
            && all
                .iter()
                .any(|v| action(v) == "udp-flow" && touching(v, uport))
            && all.iter().any(|v| action(v) == "port-scan")
            && all.iter().any(|v| action(v) == "high-connection-count")
    };
    assert!(
        ev.wait_until(Duration::from_secs(30), wanted),
        "not every example line came"
    );
    hold.finish();
    hold_srv.finish();
    drop(udp);
    let all = ev.stop();
    let conn = |a: &'static str, dir: &'static str| {
        move |v: &Value| {
            action(v) == a && touching(v, port) && str_at(v, &["network", "direction"]) == Some(dir)
        }
    };
    for (key, a, dir) in [
        ("connection-opened egress", "connection-opened", "egress"),
        ("connection-opened ingress", "connection-opened", "ingress"),
        ("connection-closed", "connection-closed", "egress"),
    ] {
        out.push((key.into(), vec![pick(&all, key, conn(a, dir)).clone()]));
    }
    for (key, p) in [
        ("connection-failed", closed),
        ("listen-started", port),
        ("listen-stopped", port),
        ("udp-flow", uport),
    ] {
        let line = pick(&all, key, |v| action(v) == key && touching(v, p));
        out.push((key.into(), vec![line.clone()]));
    }
    let opened = pick(&all, "alert opened", |v| {
        mine(v) && v["netta"]["final"] == false
    });
    let fin = pick(&all, "alert final", |v| {
        mine(v) && v["netta"]["final"] == true
    });
    out.push(("alert opened".into(), vec![opened.clone()]));
    out.push(("alert final".into(), vec![fin.clone()]));
    let others = ["port-scan", "high-connection-count"]
        .map(|r| pick(&all, r, |v| action(v) == r).clone())
        .to_vec();
    out.push(("alert others".into(), others));

    // Raw transitions.
    let ev = Events::start(&[], &["--all-states"]);
    let mut server = Traffic::spawn(&["tcp-server", "127.0.0.1:0", "1", "1", "nt-docsrv"]);
    let sport: u64 = server.expect_line("port ").parse().unwrap();
    Traffic::to_loopback("tcp-client", sport, &["1", "1", "nt-doccli"]).finish();
    server.finish();
    let all = ev.stop();
    let line = pick(&all, "state-changed", |v| {
        action(v) == "state-changed"
            && touching(v, sport)
            && str_at(v, &["netta", "state"]) == Some("ESTABLISHED")
            && str_at(v, &["netta", "old_state"]) == Some("SYN_SENT")
    });
    out.push(("state-changed".into(), vec![line.clone()]));

    // Overload: a one-page ring and a small table under 2000 connections.
    let ev = Events::start(
        &[
            "--ring-size",
            "4096",
            "--max-connections",
            "64",
            "--reconcile-interval",
            "1s",
        ],
        &[],
    );
    let mut hold_srv = Traffic::spawn(&["tcp-server", "127.0.0.1:0", "100", "0", "nt-docohsrv"]);
    let hport = hold_srv.expect_line("port ");
    let mut hold = Traffic::to_loopback("hold", hport, &["100", "nt-docohold"]);
    hold.expect_line("held");
    let mut server = Traffic::spawn(&["tcp-server", "127.0.0.1:0", "1900", "1", "nt-docosrv"]);
    let oport: u64 = server.expect_line("port ").parse().unwrap();
    Traffic::to_loopback("tcp-client", oport, &["1900", "1", "nt-dococli"]).finish();
    server.finish();
    // The reconcile (each second) finds the held rows the ring lost: beyond the table.
    std::thread::sleep(Duration::from_millis(2500));
    hold.finish();
    hold_srv.finish();
    let all = ev.stop();
    for key in ["events-lost", "table-evicted"] {
        out.push((
            key.into(),
            vec![pick(&all, key, |v| action(v) == key).clone()],
        ));
    }
    let _ = std::fs::remove_dir_all(&dir);
    out
}

/// The document's example blocks: (key, lines, byte range of the lines).
fn blocks(doc: &str) -> Vec<(String, Vec<String>, std::ops::Range<usize>)> {
    const MARK: &str = "<!-- netta-example: ";
    let mut found = Vec::new();
    let mut at = 0;
    while let Some(i) = doc[at..].find(MARK) {
        let start = at + i + MARK.len();
        let end = start + doc[start..].find(" -->").expect("an unclosed marker");
        let key = doc[start..end].to_string();
        let open = end
            + doc[end..]
                .find("```json\n")
                .expect("a json block after the marker")
            + 8;
        let close = open + doc[open..].find("```").expect("an unclosed block");
        let lines = doc[open..close].lines().map(str::to_string).collect();
        found.push((key, lines, open..close));
        at = close;
    }
    found
}

#[test]
fn docs_events_md_examples_are_real_lines() {
    require_ebpf!("docs_events");
    let captured = capture();
    let path = doc_path();
    let mut doc = std::fs::read_to_string(&path).unwrap();
    let found = blocks(&doc);
    let keys: Vec<&str> = found.iter().map(|(k, _, _)| k.as_str()).collect();
    let want: Vec<&str> = captured.iter().map(|(k, _)| k.as_str()).collect();
    let mut sorted = (keys.clone(), want.clone());
    sorted.0.sort();
    sorted.1.sort();
    assert_eq!(sorted.0, sorted.1, "docs/events.md's examples");
    if std::env::var("NETTA_BLESS").is_ok_and(|v| v == "1") {
        // Back to front, so the earlier ranges stay valid.
        for (key, _, range) in found.iter().rev() {
            let lines = &captured.iter().find(|(k, _)| k == key).unwrap().1;
            let text: String = lines.iter().map(|v| format!("{v}\n")).collect();
            doc.replace_range(range.clone(), &text);
        }
        std::fs::write(&path, doc).unwrap();
        eprintln!("rewrote {} examples in {}", found.len(), path.display());
        return;
    }
    for (key, lines, _) in &found {
        let real = &captured.iter().find(|(k, _)| k == key).unwrap().1;
        assert_eq!(lines.len(), real.len(), "example {key}: number of lines");
        for (shown, real) in lines.iter().zip(real) {
            let shown = parse_event_line(shown);
            assert_eq!(
                normalised(&shown, ""),
                normalised(real, ""),
                "docs/events.md example {key} is not what netta writes now \
                 (NETTA_BLESS=1 rewrites it): a real line is\n{real}"
            );
        }
    }
}
