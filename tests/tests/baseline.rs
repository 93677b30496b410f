//! The baseline rules on real loopback traffic: `new-destination` learns, stays
//! quiet for what it learned (also after a restart: the store keeps it), alerts on
//! the first connection to a new port after learning, and forgets on
//! `netta baseline reset`; `beaconing` alerts on a steady beacon with small jitter
//! and not on connections at random intervals. Windows come from a rules file.
use std::path::Path;
use std::time::{Duration, Instant};

use netta_tests::*;

fn rules(dir: &Path, text: &str) -> String {
    let p = dir.join("rules.toml");
    std::fs::write(&p, text).unwrap();
    p.display().to_string()
}

/// `nd-cli` connects once to a server on `port` (started here, one connection).
fn connect_once(port: u16) {
    let addr = format!("127.0.0.1:{port}");
    let mut server = Traffic::spawn(&["tcp-server", &addr, "1", "1", "nd-srv"]);
    server.expect_line("port ");
    Traffic::spawn(&["tcp-client", &addr, "1", "1", "nd-cli"]).finish();
    server.finish();
}

/// The new-destination alerts the attached agent reports for `nd-cli`, by port.
fn new_destination_ports(sock: &str) -> Vec<u64> {
    let v = netta_json(&["--api", sock, "detect", "--json"]);
    let mut ports: Vec<u64> = v
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| str_at(a, &["rule", "id"]) == Some("new-destination"))
        .filter(|a| evidence(a, "process").and_then(Value::as_str) == Some("nd-cli"))
        .filter_map(|a| evidence(a, "port").and_then(Value::as_u64))
        .collect();
    ports.sort_unstable();
    ports
}

/// A field of an alert's rule evidence (`netta.evidence` in the ECS document).
fn evidence<'a>(alert: &'a Value, key: &str) -> Option<&'a Value> {
    alert.get("netta")?.get("evidence")?.get(key)
}

/// Ports the baseline holds for `nd-cli` on loopback.
fn learned_ports(sock: &str) -> (bool, Vec<u64>) {
    let v = netta_json(&["--api", sock, "baseline", "show", "--json"]);
    let mut ports: Vec<u64> = v["destinations"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|d| d["process"] == "nd-cli" && d["network"] == "127.0.0.0/24")
        .filter_map(|d| d["port"].as_u64())
        .collect();
    ports.sort_unstable();
    (v["learning"] == true, ports)
}

fn wait_for(what: &str, mut ok: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !ok() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn new_destination_learns_keeps_what_it_learned_alerts_and_resets() {
    require_ebpf!("new-destination");
    let (dir, state, sock) = agent_dir("baseline-nd");
    let s = sock.to_str().unwrap();
    let r = rules(
        &dir,
        "[new_destination]\nlearning = \"6s\"\n[beaconing]\nenabled = false\n",
    );
    let [a, b, c] = [0; 3].map(|_| free_tcp_port("127.0.0.1"));
    let mut agent = AgentProc::start(&state, &sock, &["--rules", &r]);
    // Learning counts from the store's creation; a reset starts it again now, so
    // the agent's own start-up time does not eat into it.
    let (ok, _, err) = run_netta(&["--api", s, "baseline", "reset"]);
    assert!(ok, "{err}");
    // Learning: the first connection to A is remembered, not reported.
    connect_once(a);
    wait_for("A learned", || learned_ports(s).1.contains(&(a as u64)));
    wait_for("the end of learning", || !learned_ports(s).0);
    assert_eq!(new_destination_ports(s), Vec::<u64>::new());
    // After learning: A again is known; B is new.
    connect_once(a);
    connect_once(b);
    wait_for("the alert for B", || new_destination_ports(s) == [b as u64]);
    wait_for("B learned", || learned_ports(s).1.contains(&(b as u64)));

    // A restart keeps what was learned and the end of learning.
    agent.signal(libc::SIGKILL);
    let mut agent = AgentProc::start(&state, &sock, &["--rules", &r]);
    let (learning, mut ports) = learned_ports(s);
    assert!(!learning);
    ports.retain(|p| [a, b].contains(&(*p as u16)));
    assert_eq!(ports, [a.min(b) as u64, a.max(b) as u64]);
    connect_once(b);
    connect_once(c);
    wait_for("the alert for C", || new_destination_ports(s) == [c as u64]);

    // Reset: forgotten, learning again.
    let (ok, out, err) = run_netta(&["--api", s, "baseline", "reset"]);
    assert!(ok, "{err}");
    assert_eq!(out, "baseline reset: learning again\n");
    let (learning, ports) = learned_ports(s);
    assert!(learning);
    assert_eq!(ports, Vec::<u64>::new());
    // A reader who is not root may not reset.
    if let Some(out) = netta_as_nobody(&["--api", s, "baseline", "reset"]) {
        assert!(!out.status.success());
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(err.trim_end().lines().count(), 1, "{err}");
    }
    agent.signal(libc::SIGTERM);
    // The store file alone answers too.
    let v = netta_json(&[
        "baseline",
        "show",
        "--json",
        "--store",
        state.join("history.db").to_str().unwrap(),
    ]);
    assert_eq!(v["learning"], true);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn beaconing_alerts_on_a_steady_period_and_not_on_random_intervals() {
    if !ebpf_available("beaconing") {
        return;
    }
    let dir = temp_dir("baseline-beacon");
    let r = rules(
        &dir,
        "[beaconing]\nmin_connections = 16\nmin_duration = \"3s\"\nwindow = \"1m\"\n\
         [new_destination]\nenabled = false\n",
    );
    let events = Events::start(&["--rules", &r], &[]);
    let run = |mode: &str, name: &str, a: &str, b: &str| {
        let mut server = Traffic::spawn(&["tcp-server", "127.0.0.1:0", "24", "1", "bc-srv"]);
        let port: u16 = server.expect_line("port ").parse().unwrap();
        let addr = format!("127.0.0.1:{port}");
        let client = Traffic::spawn(&[mode, &addr, "24", a, b, name]);
        (server, client, port)
    };
    // 200 ms ± 10 %, and gaps spread from 20 ms to 800 ms, at the same time.
    let (s1, mut steady, p1) = run("beacon", "bc-steady", "200", "10");
    let (s2, mut random, p2) = run("scatter", "bc-random", "20", "800");
    steady.expect_line("done ");
    random.expect_line("done ");
    s1.finish();
    s2.finish();
    let lines = events.stop();
    let beacons: Vec<&Value> = lines
        .iter()
        .filter(|v| str_at(v, &["rule", "id"]) == Some("beaconing"))
        .collect();
    let to = |port: u16| {
        beacons
            .iter()
            .filter(|v| {
                evidence(v, "destination").and_then(Value::as_str)
                    == Some(&format!("127.0.0.1:{port}"))
            })
            .count()
    };
    assert!(
        to(p1) >= 1,
        "no beaconing alert for the steady client: {beacons:?}"
    );
    assert_eq!(
        to(p2),
        0,
        "the random client was called a beacon: {beacons:?}"
    );
    let b = beacons
        .iter()
        .find(|v| evidence(v, "destination").is_some_and(|d| d == &format!("127.0.0.1:{p1}")))
        .unwrap();
    assert_eq!(
        evidence(b, "process").and_then(Value::as_str),
        Some("bc-steady")
    );
    let period = evidence(b, "period_ms").and_then(Value::as_u64).unwrap();
    assert!((150..=250).contains(&period), "{period}");
    let _ = std::fs::remove_dir_all(&dir);
}
