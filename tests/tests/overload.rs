//! Overload: a full ring buffer is visible and healed, and a flood of half-open
//! connections cannot grow the agent's memory past its documented cap. Privileged.
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use netta_tests::*;

static LOCK: Mutex<()> = Mutex::new(());

/// Documented in docs/operations.md: the agent's RSS under a 100,000-SYN flood.
const RSS_CAP_MIB: u64 = 128;

#[test]
fn a_full_ring_buffer_is_counted_and_the_table_is_healed() {
    let _g = LOCK.lock().unwrap_or_else(|e| e.into_inner());
    require_ebpf!("ring_overflow");
    // A one-page ring overflows on any burst.
    let ev = Events::start(&["--ring-size", "4096", "--reconcile-interval", "1s"], &[]);
    let mut server = Traffic::spawn(&["tcp-server", "127.0.0.1:0", "3000", "1", "nt-osrv"]);
    let port: u16 = server.expect_line("port ").parse().unwrap();
    let target = format!("127.0.0.1:{port}");
    Traffic::spawn(&["tcp-client", &target, "3000", "1", "nt-ocli"]).finish();
    server.finish();
    let all = ev.stop();
    let lost: u64 = all
        .iter()
        .filter(|e| str_at(e, &["event", "action"]) == Some("events-lost"))
        .filter_map(|e| u64_at(e, &["netta", "lost"]))
        .sum();
    assert!(
        lost > 0,
        "a 4 KiB ring under 3000 connections must overflow, visibly"
    );

    // With the same tiny ring, connections whose events were lost are still listed:
    // reconciliation with /proc heals the table.
    let mut hsrv = Traffic::spawn(&["tcp-server", "127.0.0.1:0", "1", "0", "nt-hsrv"]);
    let hport: u16 = hsrv.expect_line("port ").parse().unwrap();
    let list = netta_cmd()
        .args(["--ring-size", "4096", "--reconcile-interval", "1s"])
        .args([
            "list",
            "--json",
            "--watch",
            "4s",
            "--port",
            &hport.to_string(),
        ])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(1500));
    let mut burst = Traffic::spawn(&["tcp-server", "127.0.0.1:0", "2000", "1", "nt-bsrv"]);
    let bport: u16 = burst.expect_line("port ").parse().unwrap();
    let flood = Traffic::to_loopback("tcp-client", bport, &["2000", "1", "nt-bcli"]);
    let mut held = Traffic::to_loopback("hold", hport, &["20", "nt-held"]);
    held.expect_line("held");
    flood.finish();
    burst.finish();
    let out = list.wait_with_output().unwrap();
    let rows: Value = serde_json::from_slice(&out.stdout).unwrap();
    let held_rows = rows
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["state"] == "ESTABLISHED" && r["remote"]["port"] == hport)
        .count();
    assert_eq!(held_rows, 20, "{rows:#}");
    drop(held);
    drop(hsrv);
}

fn ip(args: &[&str]) {
    let st = Command::new("ip").args(args).status().expect("ip");
    assert!(st.success(), "ip {args:?}");
}

#[test]
fn a_100k_syn_flood_keeps_the_agent_bounded_and_answering() {
    let _g = LOCK.lock().unwrap_or_else(|e| e.into_inner());
    require_ebpf!("syn_flood_memory");
    if Command::new("hping3").arg("--version").output().is_err() {
        assert!(
            std::env::var("NETTA_REQUIRE_EBPF").is_err(),
            "hping3 missing (apt-get install hping3)"
        );
        eprintln!("SKIP syn_flood_memory: no hping3");
        return;
    }
    // The test's own namespace: a listener with room for every half-open
    // connection, and a link whose far end never answers, so SYN-ACKs to the
    // spoofed sources go nowhere.
    let ns = Netns(format!("ntflood{}", std::process::id()));
    ip(&["netns", "add", &ns.0]);
    ip(&["-n", &ns.0, "link", "set", "lo", "up"]);
    ip(&[
        "-n", &ns.0, "link", "add", "fl0", "type", "veth", "peer", "name", "fl1",
    ]);
    ip(&["-n", &ns.0, "addr", "add", "10.201.0.1/16", "dev", "fl0"]);
    ip(&["-n", &ns.0, "link", "set", "fl0", "up"]);
    ip(&["-n", &ns.0, "link", "set", "fl1", "up"]);
    ip(&["-n", &ns.0, "route", "add", "default", "dev", "fl0"]);
    for kv in [
        "net.core.somaxconn=131072",
        "net.ipv4.tcp_max_syn_backlog=131072",
        "net.ipv4.tcp_syncookies=0",
    ] {
        let st = Command::new("ip")
            .args(["netns", "exec", &ns.0, "sysctl", "-qw", kv])
            .status()
            .unwrap();
        assert!(st.success(), "{kv}");
    }
    let mut listener = Command::new("ip")
        .args(["netns", "exec", &ns.0, "python3", "-c"])
        .arg("import socket,sys\ns=socket.socket()\ns.bind(('10.201.0.1',8080))\ns.listen(131072)\nprint('ready',flush=True)\nsys.stdin.read()")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(listener.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert_eq!(line.trim(), "ready");

    // netta runs in the namespace too, so its /proc view holds the half-open rows.
    let mut netta = Command::new("ip")
        .env("NETTA_API", isolated_api())
        .args(["netns", "exec", &ns.0])
        .arg(netta_bin())
        .args([
            "--reconcile-interval",
            "1s",
            "monitor",
            "--duration",
            "30s",
            "--interval",
            "1s",
            "--json",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(netta.stdout.take().unwrap()).lines();
    // `ip netns exec` execs netta: the child's pid is netta's.
    let pid = netta.id();
    let started = Instant::now();
    let flood = Command::new("ip")
        .args([
            "netns", "exec", &ns.0, "timeout", "60", "hping3", "-q", "-S", "-p", "8080",
        ])
        .args(["--rand-source", "-i", "u20", "-c", "100000", "10.201.0.1"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut peak = 0;
    let mut answered = 0;
    let mut max_half_open = 0u64;
    for l in lines.by_ref() {
        let Ok(l) = l else { break };
        peak = peak.max(peak_rss_kib(pid).unwrap_or(0));
        let v: Value = serde_json::from_str(&l).unwrap_or(Value::Null);
        if v.get("time").is_some() {
            answered += 1;
            max_half_open = max_half_open.max(v["active"].as_u64().unwrap_or(0));
        }
        if v.get("summary").is_some() {
            break;
        }
    }
    let mut flood = flood;
    let _ = flood.kill();
    let _ = flood.wait();
    let _ = netta.wait();
    drop(listener.stdin.take());
    let _ = listener.wait();
    let peak_mib = peak / 1024;
    eprintln!(
        "flood: peak RSS {peak_mib} MiB, {max_half_open} half-open rows at most, {answered} monitor lines in {:?}",
        started.elapsed()
    );
    assert!(
        max_half_open >= 10_000,
        "the flood did not build up: {max_half_open}"
    );
    assert!(
        peak_mib < RSS_CAP_MIB,
        "peak RSS {peak_mib} MiB over the {RSS_CAP_MIB} MiB cap"
    );
    assert!(
        answered >= 25,
        "netta stopped answering: {answered} lines in 30 s"
    );
}
