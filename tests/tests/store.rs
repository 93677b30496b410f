//! The agent as a service: persistent history through the API and from the store
//! file, surviving `kill -9`, the same in `list --history` attached and standalone;
//! strangers refused; a corrupt store moved aside; a full disk dropping (and
//! counting) history rows while tracing goes on; retention by age and by size
//! pruning a running agent's store while it keeps storing.
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use netta_tests::*;

/// Each test here runs an agent that stores every connection on the machine: one
/// at a time, so one test's bursts do not crowd another's store (retention by size
/// keeps the newest rows, whoever made them).
fn serial() -> MutexGuard<'static, ()> {
    static SERIAL: Mutex<()> = Mutex::new(());
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

fn start_agent(state: &Path, sock: &Path, extra: &[&str]) -> AgentProc {
    AgentProc::start(state, sock, extra)
}

fn rows(args: &[&str]) -> Vec<Value> {
    serde_json::from_value(netta_json(args)).unwrap()
}

/// How a view's JSON rows name a connection's ends.
#[derive(Clone, Copy)]
enum Shape {
    /// `netta history --json`: ECS, the client is the source on both ends' rows.
    Ecs,
    /// `netta list --history --json`: local and remote, as the live table.
    List,
}

impl Shape {
    /// (pid, name) when `r` is the client's (or the server's) row of the connection
    /// from client port `port`.
    fn end(self, r: &Value, port: u16, client: bool) -> Option<(u64, &str)> {
        let p = Some(port as u64);
        let ok = match self {
            Shape::Ecs => {
                let dir = if client { "egress" } else { "ingress" };
                u64_at(r, &["source", "port"]) == p
                    && str_at(r, &["direction"]) == Some(dir)
                    && str_at(r, &["action"]) == Some("closed")
            }
            Shape::List => {
                let side = if client { "local" } else { "remote" };
                u64_at(r, &[side, "port"]) == p && str_at(r, &["state"]) == Some("CLOSED")
            }
        };
        let (pid, name): (&[&str], &[&str]) = match self {
            Shape::Ecs => (&["process", "pid"], &["process", "name"]),
            Shape::List => (&["pid"], &["process"]),
        };
        ok.then(|| Some((u64_at(r, pid)?, str_at(r, name)?)))
            .flatten()
    }
}

/// Both ends of every client connection, each with its own process.
fn check_both_ends(
    shape: Shape,
    rows: &[Value],
    ports: &[u16],
    cli: u32,
    srv: u32,
) -> Result<(), String> {
    for p in ports {
        let side = |client: bool, pid: u32, name: &str| {
            rows.iter()
                .any(|r| shape.end(r, *p, client) == Some((pid as u64, name)))
        };
        let mine = || -> Vec<&Value> {
            rows.iter()
                .filter(|r| shape.end(r, *p, true).is_some() || shape.end(r, *p, false).is_some())
                .collect()
        };
        if !side(true, cli, "st-cli") {
            return Err(format!("client side of port {p} missing: {:?}", mine()));
        }
        if !side(false, srv, "st-srv") {
            return Err(format!("server side of port {p} missing: {:?}", mine()));
        }
    }
    Ok(())
}

/// `printf '4\n8\n' | netta ARGS`: the menu's statistics count each end's 300
/// stored connections for its process (the processes are gone, so only the
/// stored history can have them).
fn menu_counts_both_ends(args: &[&str], cli: u32, srv: u32) {
    let out = run_with_stdin(netta_cmd().args(args), "4\n8\n");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("NETWORK TRAFFIC STATISTICS"), "{text}");
    for (pid, name) in [(cli, "st-cli"), (srv, "st-srv")] {
        let line = format!("  {pid}/{name}: ");
        let n: u64 = text
            .lines()
            .find_map(|l| l.strip_prefix(&line)?.strip_suffix(" connections"))
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("no `{}` line in: {text}", line.trim()));
        assert!(n >= 300, "{name}: {n} connections: {text}");
    }
}

fn temp(name: &str) -> PathBuf {
    temp_dir(&format!("store-{name}"))
}

#[test]
fn history_has_both_ends_survives_kill_9_and_refuses_strangers() {
    let _serial = serial();
    require_ebpf!("store history");
    let (dir, sock, mut agent) = agent_in("store-hist", &[]);
    let state = dir.join("state");
    let s = sock.to_str().unwrap();

    let mut server = Traffic::spawn(&["tcp-server", "127.0.0.1:0", "300", "10", "st-srv"]);
    let port: u16 = server.expect_line("port ").parse().unwrap();
    let p = port.to_string();
    let mut client = Traffic::to_loopback("tcp-client", port, &["300", "10", "st-cli"]);
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
        match check_both_ends(Shape::Ecs, &got, &ports, cli, srv) {
            Ok(()) => break,
            Err(e) if Instant::now() > deadline => panic!("{e}"),
            Err(_) => std::thread::sleep(Duration::from_millis(300)),
        }
    }

    // kill -9: what was committed stays; the restarted agent serves it.
    agent.signal(libc::SIGKILL);
    let mut agent = start_agent(&state, &sock, &[]);
    let got = rows(&q);
    check_both_ends(Shape::Ecs, &got, &ports, cli, srv).unwrap();
    // `list --history` reads the same store: all of them, though the restarted
    // agent's in-memory ring has none.
    let listed = rows(&["--api", s, "list", "--history", "--port", &p, "--json"]);
    check_both_ends(Shape::List, &listed, &ports, cli, srv).unwrap();
    // So does the menu's statistics view: each end's process with its 300.
    menu_counts_both_ends(&["--api", s], cli, srv);
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
    check_both_ends(Shape::Ecs, &direct, &ports, cli, srv).unwrap();

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
    // No agent: a standalone `list --history` reads the store file in the state dir.
    let conf = dir.join("netta.toml");
    std::fs::write(
        &conf,
        format!("state_dir = {:?}\n", state.display().to_string()),
    )
    .unwrap();
    let c = conf.to_str().unwrap();
    let (ok, out, err) = run_netta(&[
        "--api",
        s,
        "--config",
        c,
        "list",
        "--history",
        "--port",
        &p,
        "--json",
    ]);
    assert!(ok, "{err}");
    assert!(err.starts_with("netta: standalone ("), "{err}");
    let listed: Vec<Value> = serde_json::from_str(&out).unwrap();
    check_both_ends(Shape::List, &listed, &ports, cli, srv).unwrap();
    menu_counts_both_ends(&["--api", s, "--config", c], cli, srv);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_corrupt_store_is_moved_aside_and_the_agent_runs() {
    let _serial = serial();
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

#[test]
fn a_full_disk_drops_history_rows_counted_and_tracing_goes_on() {
    let _serial = serial();
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
    let run =
        |n: &str, name_s: &str, name_c: &str| tcp_round_trips(n, ["10", "10"], [name_s, name_c]);
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

/// The agent's store counters (`/v1/stats` `store`).
fn store_stats(sock: &Path) -> Value {
    api_get(sock, "/v1/stats")["store"].clone()
}

/// Stored closed connections with `port` at either end (all of them: no limit cut;
/// the listener's start and stop are rows too, not counted here).
fn stored_on(sock: &str, port: u16) -> Vec<Value> {
    let p = port.to_string();
    rows(&[
        "--api", sock, "history", "--port", &p, "--action", "closed", "--limit", "1000000",
        "--json",
    ])
}

/// Waits until exactly `rows` closed connections on `port` are stored.
fn wait_stored(what: &str, sock: &str, port: u16, rows: usize) {
    wait_until(what, || {
        let n = stored_on(sock, port).len();
        (n == rows)
            .then_some(())
            .ok_or(format!("{n} of {rows} rows"))
    });
}

/// Waits up to 60 s for `ok`, saying what it waited for.
fn wait_until(what: &str, mut ok: impl FnMut() -> Result<(), String>) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        match ok() {
            Ok(()) => return,
            Err(e) if Instant::now() > deadline => panic!("waiting for {what}: {e}"),
            Err(_) => std::thread::sleep(Duration::from_millis(300)),
        }
    }
}

/// A retention test: an agent with `flags` storing the machine's connections,
/// `body` given its API socket; then the writer must have dropped nothing (pruning
/// runs beside the writes).
fn retention(name: &str, flags: &[&str], body: impl FnOnce(&Path, &str)) {
    let (dir, sock, _agent) = agent_in(name, flags);
    body(&sock, sock.to_str().unwrap());
    assert_eq!(store_stats(&sock)["rows_dropped"], 0);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn retention_by_age_prunes_a_running_agents_store_while_it_keeps_storing() {
    let _serial = serial();
    require_ebpf!("store retention by age");
    retention("store-age", &["--retention-age", "5s"], |sock, s| {
        let old = tcp_round_trips("50", ["10", "10"], ["st-asrv", "st-acli"]);
        wait_stored("the first 50 connections stored", s, old, 100);
        // Older than 5 s: pruned (within a tenth of the age, plus a commit).
        wait_stored("the first connections pruned", s, old, 0);
        let st = store_stats(sock);
        assert!(st["rows_pruned"].as_u64().unwrap() >= 100, "{st}");
        // The writer still stores what comes next.
        let new = tcp_round_trips("50", ["10", "10"], ["st-asrv", "st-acli"]);
        wait_stored("the next 50 connections stored", s, new, 100);
    });
}

#[test]
fn retention_by_size_keeps_a_running_agents_store_under_its_limit_and_the_newest_rows() {
    let _serial = serial();
    require_ebpf!("store retention by size");
    let limit: u64 = 1 << 20;
    let flags = ["--retention-size", &limit.to_string()];
    retention("store-size", &flags, |sock, s| {
        // About 2.5 MB of rows, then a last burst the limit has room for.
        let old = tcp_round_trips("6000", ["10", "10"], ["st-zsrv", "st-zcli"]);
        let new = tcp_round_trips("500", ["10", "10"], ["st-zsrv", "st-zcli"]);
        wait_until("the store back under its limit", || {
            let st = store_stats(sock);
            let used = st["used_bytes"].as_u64().unwrap_or(u64::MAX);
            let pruned = st["rows_pruned"].as_u64().unwrap_or(0);
            (pruned > 0 && used <= limit)
                .then_some(())
                .ok_or(format!("{st}"))
        });
        // The newest rows stay (both ends of every last connection), the oldest went.
        wait_stored("the last burst stored", s, new, 1000);
        let left = stored_on(s, old).len();
        assert!(left < 12_000, "{left} of the first burst's rows left");
    });
}

/// An open connection's row in the history: during a paced transfer, with
/// `--update-interval 1s`, `netta history` shows the sender's connection as
/// `open` with its bytes so far, growing, in one row; once it closes, its end's
/// row (all the bytes) replaces it.
#[test]
fn open_connections_bytes_grow_in_the_history_until_their_end_replaces_them() {
    let _serial = serial();
    require_ebpf!("store open rows");
    let (dir, sock, mut agent) = agent_in("store-open", &["--update-interval", "1s"]);
    let s = sock.to_str().unwrap();
    let mut server = Traffic::spawn(&["tcp-server", "127.0.0.1:0", "1", "0", "st-sink"]);
    let sport: u16 = server.expect_line("port ").parse().unwrap();
    let mut sender = Traffic::to_loopback("paced-send", sport, &["2000000", "8", "st-paced"]);
    let port: u16 = sender.expect_line("local ").parse().unwrap();
    let p = port.to_string();
    // The sender's socket's row: the source port is the sender's on both ends'
    // rows; its own is the egress one.
    let sender_row = |rows: &[Value], action: &str| -> Option<u64> {
        rows.iter()
            .find(|r| {
                u64_at(r, &["source", "port"]) == Some(u64::from(port))
                    && str_at(r, &["direction"]) == Some("egress")
                    && str_at(r, &["action"]) == Some(action)
            })
            .map(|r| u64_at(r, &["bytes_sent"]).unwrap_or_else(|| panic!("{r}")))
    };
    let mut seen: Vec<u64> = Vec::new();
    let t0 = Instant::now();
    while t0.elapsed() < Duration::from_secs(7) {
        let got = rows(&["--api", s, "history", "--port", &p, "--json"]);
        let open: Vec<&Value> = got
            .iter()
            .filter(|r| str_at(r, &["action"]) == Some("open"))
            .filter(|r| str_at(r, &["direction"]) == Some("egress"))
            .collect();
        assert!(open.len() <= 1, "one open row per connection: {open:?}");
        if let Some(b) = sender_row(&got, "open") {
            assert_eq!(
                str_at(open[0], &["process", "name"]),
                Some("st-paced"),
                "{got:?}"
            );
            if seen.last() != Some(&b) {
                seen.push(b);
            }
        }
        std::thread::sleep(Duration::from_millis(700));
    }
    // The text view says which connections are open.
    let (ok, text, err) = run_netta(&["--api", s, "history", "--port", &p, "--action", "open"]);
    assert!(ok, "{err}");
    assert!(
        text.lines()
            .any(|l| l.contains(" open ") && l.contains("st-paced")),
        "{text}"
    );
    let sent: u64 = sender.expect_line("sent ").parse().unwrap();
    sender.finish();
    server.finish();
    eprintln!("open row's bytes during the transfer: {seen:?}; sent {sent}");
    assert!(
        seen.len() >= 3,
        "the open row's bytes grew at least twice before the close: {seen:?}"
    );
    assert!(seen.windows(2).all(|w| w[0] < w[1]), "{seen:?}");
    assert!(seen.iter().all(|b| *b < sent), "{seen:?} of {sent}");
    // Closed: its end replaces the open row, with every byte.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let got = rows(&["--api", s, "history", "--port", &p, "--json"]);
        let ended = sender_row(&got, "closed");
        if ended == Some(sent) && sender_row(&got, "open").is_none() {
            let mine = |r: &&Value| u64_at(r, &["source", "port"]) == Some(u64::from(port));
            assert!(
                got.iter()
                    .filter(mine)
                    .all(|r| str_at(r, &["action"]) != Some("open")),
                "both ends' open rows gone: {got:?}"
            );
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no end row replaced the open one: {got:?}"
        );
        std::thread::sleep(Duration::from_millis(300));
    }
    agent.signal(libc::SIGTERM);
    let _ = std::fs::remove_dir_all(&dir);
}
