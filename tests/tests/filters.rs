//! ss-style filters on real loopback traffic: `netta events --dport P` (standalone
//! and attached to an agent) writes only that port's lines, and `netta list
//! --sport/--dport/--src/--dst` selects the right rows. Source and destination
//! are the ECS ones: the source started the connection.
use std::time::{Duration, Instant};

use netta_tests::*;

/// An event line's (source port, destination port).
fn ports(v: &Value) -> (Option<u64>, Option<u64>) {
    (
        u64_at(v, &["source", "port"]),
        u64_at(v, &["destination", "port"]),
    )
}

fn closed_to(lines: &[Value], port: u16) -> usize {
    lines
        .iter()
        .filter(|v| {
            str_at(v, &["event", "action"]) == Some("connection-closed")
                && ports(v).1 == Some(port.into())
        })
        .count()
}

#[test]
fn events_dport_writes_only_that_ports_lines() {
    require_ebpf!("filters_events");
    let (dir, sock, _agent) = agent_in("filters-events", &[]);
    let s = sock.to_str().unwrap();
    let mut a = Traffic::spawn(&["tcp-server", "127.0.0.1:0", "5", "10", "ft-a"]);
    let mut b = Traffic::spawn(&["tcp-server", "127.0.0.1:0", "5", "10", "ft-b"]);
    let pa: u16 = a.expect_line("port ").parse().unwrap();
    let pb: u16 = b.expect_line("port ").parse().unwrap();
    let want = pa.to_string();
    let mut attached = Events::start(&["--api", s], &["--dport", &want]);
    assert!(attached
        .stderr_lines
        .iter()
        .any(|l| l.starts_with("netta: attached")));
    let mut standalone = Events::start(&["--standalone"], &["--dport", &want]);

    let mut clients = Vec::new();
    for port in [pa, pb] {
        let addr = format!("127.0.0.1:{port}");
        clients.push(Traffic::spawn(&[
            "tcp-client",
            &addr,
            "5",
            "10",
            "ft-client",
        ]));
    }
    for c in clients {
        c.finish();
    }
    a.finish();
    b.finish();
    // Both ends of the 5 connections to A: 10 closes.
    for ev in [&mut attached, &mut standalone] {
        assert!(
            ev.wait_until(Duration::from_secs(20), |l| closed_to(l, pa) >= 10),
            "{} closes to {pa}",
            closed_to(&ev.collected, pa)
        );
    }
    for (how, ev) in [("attached", attached), ("standalone", standalone)] {
        let lines = ev.stop();
        assert_eq!(closed_to(&lines, pa), 10, "{how}");
        let mut opened = 0;
        for v in &lines {
            // Health lines (events-lost, table-evicted) always pass.
            if str_at(v, &["event", "kind"]) == Some("metric") {
                continue;
            }
            let (sp, dp) = ports(v);
            assert_eq!(dp, Some(pa.into()), "{how}: a line not to {pa}: {v}");
            assert_ne!(sp, Some(pb.into()), "{how}: {v}");
            if str_at(v, &["event", "action"]) == Some("connection-opened") {
                opened += 1;
                // Both ends: the client's socket (egress) and the server's (ingress).
                let dir = str_at(v, &["network", "direction"]).unwrap();
                let name = str_at(v, &["process", "name"]).unwrap_or("");
                assert!(
                    (dir == "egress" && name == "ft-client")
                        || (dir == "ingress" && name == "ft-a"),
                    "{how}: {v}"
                );
            }
        }
        assert_eq!(opened, 10, "{how}: opened lines to {pa}");
        assert!(
            !lines.iter().any(|v| ports(v).1 == Some(pb.into())),
            "{how}: lines to {pb} passed --dport {pa}"
        );
    }
    // A bad network is a usage error.
    let bad = netta_cmd()
        .args(["--api", s, "events", "--dst", "10.0.0.0/33"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&bad.stderr);
    assert_eq!(bad.status.code(), Some(2), "{err}");
    assert!(err.contains("not an address or CIDR network"), "{err}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// An end: (ip, port).
type End = (String, u64);

/// A `list --json` row's ECS ends: (source, destination), by its direction;
/// both ways round when it is unknown.
fn row_ends(v: &Value) -> Vec<(End, End)> {
    let end = |k: &str| {
        (
            str_at(v, &[k, "ip"]).unwrap_or("").to_string(),
            u64_at(v, &[k, "port"]).unwrap_or(0),
        )
    };
    let (local, remote) = (end("local"), end("remote"));
    match str_at(v, &["direction"]) {
        Some("ingress") => vec![(remote, local)],
        Some("egress") => vec![(local, remote)],
        _ => vec![(local.clone(), remote.clone()), (remote, local)],
    }
}

/// Every row of `netta ARGS list --json FILTER`.
fn list(global: &[&str], filter: &[&str]) -> Vec<Value> {
    let args = [global, &["list", "--json"], filter].concat();
    let v = netta_json(&args);
    v.as_array().expect("an array").clone()
}

#[test]
fn list_sport_dport_src_dst_select_the_ecs_ends() {
    require_ebpf!("filters_list");
    let (dir, sock, agent) = agent_in("filters-list", &[]);
    let s = sock.to_str().unwrap();
    let api = ["--api", s];
    let mut server = Traffic::spawn(&["tcp-server", "127.0.0.1:0", "5", "0", "fl-srv"]);
    let port: u16 = server.expect_line("port ").parse().unwrap();
    let addr = format!("127.0.0.1:{port}");
    let mut local = Traffic::spawn(&["hold", &addr, "3", "fl-hold"]);
    let mut other = Traffic::spawn(&["hold-from", "127.0.0.2", &addr, "2", "fl-hold2"]);
    let local_ports: Vec<u64> = (0..3)
        .map(|_| local.expect_line("local ").parse().unwrap())
        .collect();
    local.expect_line("held");
    other.expect_line("held");
    let p = port.to_string();
    // The agent has them all: 1 listener, 5 server sockets, 5 client sockets.
    let deadline = Instant::now() + Duration::from_secs(20);
    let ours = |rows: &[Value]| {
        rows.iter()
            .filter(|v| {
                u64_at(v, &["local", "port"]) == Some(port.into())
                    || u64_at(v, &["remote", "port"]) == Some(port.into())
            })
            .count()
    };
    while ours(&list(&api, &[])) < 11 {
        assert!(
            Instant::now() < deadline,
            "the agent never listed 11 rows on {port}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    // Every row each filter returns passes it, and the ones expected are there.
    let check =
        |global: &[&str], filter: &[&str], pass: &dyn Fn(&End, &End) -> bool, want: usize| {
            let rows = list(global, filter);
            for r in &rows {
                assert!(
                    row_ends(r).iter().any(|(s, d)| pass(s, d)),
                    "{filter:?} returned a row that does not pass: {r}"
                );
            }
            let n = ours(&rows);
            assert_eq!(n, want, "{global:?} {filter:?}: {rows:#?}");
        };
    let dport = |_: &(String, u64), d: &(String, u64)| d.1 == port as u64;
    check(&api, &["--dport", &p], &dport, 11);
    check(
        &api,
        &["--dst", "127.0.0.1", "--dport", &p],
        &|s, d| dport(s, d) && d.0 == "127.0.0.1",
        11,
    );
    // From 127.0.0.2: its two connections, both ends each; the listener has no source.
    check(
        &api,
        &["--src", "127.0.0.2/32", "--dport", &p],
        &|s, d| dport(s, d) && s.0 == "127.0.0.2",
        4,
    );
    // A client's port: the client's socket and the server's socket for it.
    let cp = local_ports[0];
    let c = cp.to_string();
    check(&api, &["--sport", &c], &|s, _| s.1 == cp, 2);
    // The server's port is never the source of these connections (the agent saw
    // them start, so it knows which way round they are).
    check(&api, &["--sport", &p], &|s, _| s.1 == port as u64, 0);
    check(&api, &["--dst", "127.0.0.2"], &|_, d| d.0 == "127.0.0.2", 0);
    // Standalone: seeded from /proc, direction unknown, either way round.
    let standalone = ["--standalone"];
    check(&standalone, &["--dport", &p], &dport, 11);
    check(&standalone, &["--sport", &c], &|s, _| s.1 == cp, 2);
    local.finish();
    other.finish();
    drop(server);
    drop(agent);
    let _ = std::fs::remove_dir_all(&dir);
}
