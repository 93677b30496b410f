//! Every view attaches to a running agent: `netta --api S VIEW` reads the agent's
//! table, incidents and stream (the start-up line says so, with the agent's pid),
//! sees what happened before the view started, and `--standalone` runs its own.
use std::time::{Duration, Instant};

use netta_tests::*;

#[test]
fn views_attach_to_the_running_agent_and_standalone_forces_their_own() {
    require_ebpf!("attach");
    let (dir, sock, agent) = agent_in("attach", &[]);
    let s = sock.to_str().unwrap();
    let pid = agent.child.id();
    let attached = format!("netta: attached to agent (pid {pid}, up ");

    // A connection held open, and short ones that ended before any view started.
    let mut server = Traffic::spawn(&["tcp-server", "127.0.0.1:0", "4", "0", "at-srv"]);
    let port: u16 = server.expect_line("port ").parse().unwrap();
    let addr = format!("127.0.0.1:{port}");
    Traffic::spawn(&["tcp-client", &addr, "3", "1", "at-short"]).finish();
    let mut held = Traffic::spawn(&["hold", &addr, "1", "at-hold"]);
    held.expect_line("held");

    let view = |args: &[&str]| {
        let mut all = vec!["--api", s];
        all.extend_from_slice(args);
        let (ok, out, err) = run_netta(&all);
        assert!(ok, "netta {args:?}: {err}");
        assert!(err.starts_with(&attached), "netta {args:?}: {err}");
        out
    };
    // Rows of `list --json` (local/remote, process name) and ECS events (source/destination).
    let row_of = |v: &Value, name: &str| {
        let p = Some(port as u64);
        (u64_at(v, &["local", "port"]) == p || u64_at(v, &["remote", "port"]) == p)
            && str_at(v, &["process"]) == Some(name)
    };
    let event_of = |v: &Value, name: &str| {
        let p = Some(port as u64);
        (u64_at(v, &["source", "port"]) == p || u64_at(v, &["destination", "port"]) == p)
            && str_at(v, &["process", "name"]) == Some(name)
    };

    // list: the agent's live table (once its events are in).
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let live: Value = serde_json::from_str(&view(&["list", "--json"])).unwrap();
        if live
            .as_array()
            .unwrap()
            .iter()
            .any(|v| row_of(v, "at-hold"))
        {
            break;
        }
        assert!(Instant::now() < deadline, "no at-hold row: {live}");
        std::thread::sleep(Duration::from_millis(200));
    }
    // The plain list: the agent selects the rows (`--port`) and sends only their
    // columns; the held connection's row, by its owner, and no other port's.
    let text = view(&["list", "--port", &port.to_string()]);
    let rows: Vec<&str> = text.lines().filter(|l| l.starts_with("TCP ")).collect();
    assert!(
        rows.iter()
            .any(|l| l.contains(&addr) && l.contains("ESTABLISHED") && l.contains("/at-hold")),
        "{text}"
    );
    assert!(
        rows.iter().all(|l| l.contains(&format!(":{port}"))),
        "{text}"
    );
    for q in ["/v1/view/list", "/v1/view/list?full=true"] {
        assert_no_kernel_address(q, &api_body(&sock, q));
    }
    // top's picture, as an attached `netta top` gets it: the held connection by
    // name (its row an array: key, proto, pid, name bytes, local, remote, ...),
    // opaque socket ids, never a kernel address.
    let body = api_body(&sock, "/v1/view/top");
    assert_no_kernel_address("/v1/view/top", &body);
    let pic: Value = serde_json::from_str(&body).unwrap();
    let suffix = format!(":{port}");
    let held_row = pic["rows"].as_array().unwrap().iter().any(|r| {
        let name: Vec<u8> = r[3]
            .as_array()
            .map(|b| {
                b.iter()
                    .filter_map(|x| x.as_u64())
                    .map(|x| x as u8)
                    .collect()
            })
            .unwrap_or_default();
        name == b"at-hold"
            && [&r[4], &r[5]]
                .iter()
                .any(|a| a.as_str().is_some_and(|a| a.ends_with(&suffix)))
    });
    assert!(held_row, "no at-hold row in top's picture: {body}");
    // The table and the record stream that attached views read key sockets by
    // opaque ids too: the rows are there, their kernel addresses are not.
    let body = api_body(&sock, "/v1/view/snapshot?history=true");
    assert_no_kernel_address("/v1/view/snapshot", &body);
    let snap: Value = serde_json::from_str(&body).unwrap();
    let socks = snap["conns"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["key"]["Sock"].as_u64().is_some_and(|k| k != 0))
        .count();
    assert!(socks > 0, "no row keyed by socket: {body}");
    let records = {
        use std::io::{Read, Write};
        let mut s = std::os::unix::net::UnixStream::connect(&sock).unwrap();
        s.set_read_timeout(Some(Duration::from_millis(500)))
            .unwrap();
        write!(s, "GET /v1/view/records HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
        std::thread::sleep(Duration::from_millis(200));
        let mut rec_srv = Traffic::spawn(&["tcp-server", "127.0.0.1:0", "2", "1", "at-rec-srv"]);
        let rec_to = format!("127.0.0.1:{}", rec_srv.expect_line("port "));
        Traffic::spawn(&["tcp-client", &rec_to, "2", "1", "at-rec"]).finish();
        rec_srv.finish();
        // The stream never ends (the hooks see the whole machine): read a while.
        let until = Instant::now() + Duration::from_secs(3);
        let mut got = Vec::new();
        let mut buf = [0u8; 65536];
        while Instant::now() < until {
            match s.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => got.extend_from_slice(&buf[..n]),
                Err(_) => {}
            }
        }
        String::from_utf8_lossy(&got).into_owned()
    };
    assert!(
        records.contains("\"sock\""),
        "no record with a socket: {records}"
    );
    assert_no_kernel_address("/v1/view/records", &records);
    // list --history: the short connections, closed before the view started.
    loop {
        let h: Value = serde_json::from_str(&view(&["list", "--history", "--json"])).unwrap();
        let short = h
            .as_array()
            .unwrap()
            .iter()
            .filter(|v| row_of(v, "at-short"))
            .count();
        if short >= 3 {
            break;
        }
        assert!(Instant::now() < deadline, "history has {short} of 3: {h}");
        std::thread::sleep(Duration::from_millis(200));
    }
    // stats, detect, export and monitor read the same agent.
    let st: Value = serde_json::from_str(&view(&["stats", "--json"])).unwrap();
    assert!(st["since_start"]["closed"].as_u64().unwrap() >= 3, "{st}");
    let found: Value = serde_json::from_str(&view(&["detect", "--json"])).unwrap();
    assert!(found.is_array(), "{found}");
    let report = dir.join("report.json");
    let r = report.to_str().unwrap();
    let msg = view(&["export", "--format", "json", "-o", r]);
    assert!(msg.contains("Report exported to"), "{msg}");
    assert!(std::fs::read_to_string(&report)
        .unwrap()
        .contains("at-hold"));
    let mon = view(&["monitor", "--duration", "2s", "--interval", "1s", "--json"]);
    assert!(mon.lines().any(|l| l.contains("\"summary\"")), "{mon}");
    // events --since replays the stored history, then follows.
    let ev = view(&["events", "--since", "10m", "--duration", "2s"]);
    let replayed = ev
        .lines()
        .map(parse_event_line)
        .filter(|v| event_of(v, "at-short"))
        .count();
    assert!(replayed >= 3, "{replayed} replayed: {ev}");

    // --standalone runs its own agent even with one reachable.
    let (ok, _, err) = run_netta(&["--api", s, "--standalone", "list", "--json"]);
    assert!(ok, "{err}");
    assert!(err.starts_with("netta: standalone (eBPF"), "{err}");
    drop(held);
    server.child.kill().ok();
    drop(agent);
    // No agent at the socket: the view runs standalone by itself.
    let (ok, _, err) = run_netta(&["--api", s, "list", "--json"]);
    assert!(ok, "{err}");
    assert!(err.starts_with("netta: standalone ("), "{err}");
    let _ = std::fs::remove_dir_all(&dir);
}
