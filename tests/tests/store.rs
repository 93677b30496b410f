//! The agent as a service: persistent history through the API and from the store
//! file, surviving `kill -9`; strangers refused; a corrupt store moved aside; a
//! full disk dropping (and counting) history rows while tracing goes on.
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use netta_tests::*;

fn start_agent(state: &Path, sock: &Path, extra: &[&str]) -> AgentProc {
    AgentProc::start(state, sock, extra)
}

fn rows(args: &[&str]) -> Vec<Value> {
    serde_json::from_value(netta_json(args)).unwrap()
}

/// Both ends of every client connection, each with its own process.
fn check_both_ends(rows: &[Value], ports: &[u16], cli: u32, srv: u32) -> Result<(), String> {
    for p in ports {
        let mine: Vec<&Value> = rows
            .iter()
            .filter(|r| u64_at(r, &["source", "port"]) == Some(*p as u64))
            .collect();
        let side = |dir: &str, pid: u32, name: &str| {
            mine.iter().any(|r| {
                str_at(r, &["direction"]) == Some(dir)
                    && u64_at(r, &["process", "pid"]) == Some(pid as u64)
                    && str_at(r, &["process", "name"]) == Some(name)
                    && str_at(r, &["action"]) == Some("closed")
            })
        };
        if !side("egress", cli, "st-cli") {
            return Err(format!("client side of port {p} missing: {mine:?}"));
        }
        if !side("ingress", srv, "st-srv") {
            return Err(format!("server side of port {p} missing: {mine:?}"));
        }
    }
    Ok(())
}

fn temp(name: &str) -> PathBuf {
    temp_dir(&format!("store-{name}"))
}

#[test]
fn history_has_both_ends_survives_kill_9_and_refuses_strangers() {
    require_ebpf!("store history");
    let dir = temp("hist");
    let state = dir.join("state");
    let sock = dir.join("api.sock");
    let s = sock.to_str().unwrap();
    let mut agent = start_agent(&state, &sock, &[]);

    let mut server = Traffic::spawn(&["tcp-server", "127.0.0.1:0", "300", "10", "st-srv"]);
    let port: u16 = server.expect_line("port ").parse().unwrap();
    let p = port.to_string();
    let mut client = Traffic::spawn(&[
        "tcp-client",
        &format!("127.0.0.1:{port}"),
        "300",
        "10",
        "st-cli",
    ]);
    let (cli, srv) = (client.pid(), server.pid());
    let ports: Vec<u16> = client
        .all_lines("local ")
        .iter()
        .map(|l| l.parse().unwrap())
        .collect();
    assert_eq!(ports.len(), 300);
    client.finish();
    server.finish();

    let q = [
        "--api", s, "history", "--since", "10m", "--port", &p, "--json",
    ];
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let got = rows(&q);
        match check_both_ends(&got, &ports, cli, srv) {
            Ok(()) => break,
            Err(e) if Instant::now() > deadline => panic!("{e}"),
            Err(_) => std::thread::sleep(Duration::from_millis(300)),
        }
    }

    // kill -9: what was committed stays; the restarted agent serves it.
    agent.signal(libc::SIGKILL);
    let mut agent = start_agent(&state, &sock, &[]);
    let got = rows(&q);
    check_both_ends(&got, &ports, cli, srv).unwrap();
    // The file alone answers the same (forensics on a copy).
    let copy = dir.join("copy.db");
    std::fs::copy(state.join("history.db"), &copy).unwrap();
    let wal = state.join("history.db-wal");
    if wal.exists() {
        std::fs::copy(&wal, dir.join("copy.db-wal")).unwrap();
    }
    let direct = rows(&[
        "history",
        "--store",
        copy.to_str().unwrap(),
        "--port",
        &p,
        "--json",
    ]);
    check_both_ends(&direct, &ports, cli, srv).unwrap();

    // A user who is not root and not in group netta gets one line and no data.
    if let Some(out) = netta_as_nobody(&["--api", s, "history", "--json"]) {
        assert!(!out.status.success());
        assert!(
            out.stdout.is_empty(),
            "{:?}",
            String::from_utf8_lossy(&out.stdout)
        );
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(err.trim_end().lines().count(), 1, "{err}");
        assert!(err.contains("refuses this user"), "{err}");
    }
    agent.signal(libc::SIGTERM);
    assert!(!sock.exists(), "the socket goes with the agent");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_corrupt_store_is_moved_aside_and_the_agent_runs() {
    let dir = temp("corrupt");
    let state = dir.join("state");
    std::fs::create_dir_all(&state).unwrap();
    std::fs::write(state.join("history.db"), vec![0x5au8; 64 * 1024]).unwrap();
    let sock = dir.join("api.sock");
    let mut agent = AgentProc::spawn(&[
        "--no-ebpf",
        "agent",
        "--state-dir",
        state.to_str().unwrap(),
        "--api",
        sock.to_str().unwrap(),
        "--sink",
        "file:/dev/null",
    ]);
    let moved = agent.wait_line("moved it to");
    assert!(moved.starts_with("netta: the store"), "{moved}");
    agent.wait_line("netta: agent ready");
    let aside: Vec<_> = std::fs::read_dir(&state)
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .starts_with("history.db.corrupt-")
        })
        .collect();
    assert_eq!(aside.len(), 1);
    assert_eq!(
        std::fs::read(aside[0].path()).unwrap(),
        vec![0x5au8; 64 * 1024]
    );
    // The fresh store answers.
    let (ok, out, err) = run_netta(&["--api", sock.to_str().unwrap(), "history", "--json"]);
    assert!(ok, "{err}");
    assert!(out.trim_start().starts_with('['), "{out}");
    agent.signal(libc::SIGTERM);
    let _ = std::fs::remove_dir_all(&dir);
}

/// GET over the API socket, the body as JSON.
fn api_get(sock: &Path, path: &str) -> Value {
    let mut s = std::os::unix::net::UnixStream::connect(sock).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).unwrap();
    let body = text.split_once("\r\n\r\n").map(|x| x.1).unwrap_or("");
    serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {text}"))
}

#[test]
fn a_full_disk_drops_history_rows_counted_and_tracing_goes_on() {
    if !ebpf_available("store full disk") || !is_root() {
        return;
    }
    let dir = temp("full");
    let state = dir.join("state");
    std::fs::create_dir_all(&state).unwrap();
    let st = state.to_str().unwrap();
    let ok = Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=1m", "store-full", st])
        .status()
        .unwrap()
        .success();
    assert!(ok, "mount tmpfs");
    struct Unmount(String);
    impl Drop for Unmount {
        fn drop(&mut self) {
            let _ = Command::new("umount").arg(&self.0).status();
        }
    }
    let _u = Unmount(st.to_string());
    let sock = dir.join("api.sock");
    let events = dir.join("events.json");
    let mut agent = start_agent(
        &state,
        &sock,
        &["--sink", &format!("file:{}", events.display())],
    );
    let run = |n: &str, name_s: &str, name_c: &str| {
        let mut server = Traffic::spawn(&["tcp-server", "127.0.0.1:0", n, "10", name_s]);
        let port: u16 = server.expect_line("port ").parse().unwrap();
        Traffic::spawn(&["tcp-client", &format!("127.0.0.1:{port}"), n, "10", name_c]).finish();
        server.finish();
        port
    };
    // Enough rows to fill a 1 MiB file system several times over.
    run("12000", "st-fsrv", "st-fcli");
    agent.wait_line("disk is full");
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let v = api_get(&sock, "/v1/stats");
        if v["store"]["rows_dropped"].as_u64().unwrap_or(0) > 0 {
            break;
        }
        assert!(Instant::now() < deadline, "no dropped rows counted: {v}");
        std::thread::sleep(Duration::from_millis(200));
    }
    // Tracing goes on: a later connection still reaches the event sink.
    let port = run("1", "st-fsrv2", "st-fcli2");
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let text = std::fs::read_to_string(&events).unwrap_or_default();
        if text
            .lines()
            .any(|l| l.contains("st-fcli2") && l.contains(&format!("\"port\":{port}")))
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no events after the disk filled: {} lines, last {:?}",
            text.lines().count(),
            text.lines().last()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    agent.signal(libc::SIGTERM);
    drop(_u);
    let _ = std::fs::remove_dir_all(&dir);
}
