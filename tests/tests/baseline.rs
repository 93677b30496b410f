//! The baseline rules on real loopback traffic: `new-destination` learns, stays
//! quiet for what it learned (also after a restart: the store keeps it), alerts on
//! the first connection to a new port after learning, and forgets on
//! `netta baseline reset`; `beaconing` alerts on a steady beacon with small jitter
//! and not on connections at random intervals. Windows come from a rules file.
//! Each runs on loopback and between two network namespaces over a veth pair.
use std::path::Path;
use std::time::{Duration, Instant};

use netta_tests::netns::NetnsPair;
use netta_tests::*;

/// Where a test's traffic runs: on loopback, or from namespace B to a server in A.
enum Net {
    Loopback,
    Pair(NetnsPair),
}

impl Net {
    fn server_ip(&self) -> String {
        match self {
            Net::Loopback => "127.0.0.1".into(),
            Net::Pair(p) => p.ip(1),
        }
    }

    /// The destination network the baseline learns.
    fn network(&self) -> String {
        match self {
            Net::Loopback => "127.0.0.0/24".into(),
            Net::Pair(p) => p.network(),
        }
    }

    fn server(&self, args: &[&str]) -> Traffic {
        match self {
            Net::Loopback => Traffic::spawn(args),
            Net::Pair(p) => Traffic::spawn_in_netns(&p.a, args),
        }
    }

    fn client(&self, args: &[&str]) -> Traffic {
        match self {
            Net::Loopback => Traffic::spawn(args),
            Net::Pair(p) => Traffic::spawn_in_netns(&p.b, args),
        }
    }
}

fn rules(dir: &Path, text: &str) -> String {
    let p = dir.join("rules.toml");
    std::fs::write(&p, text).unwrap();
    p.display().to_string()
}

/// `cli` connects once to a server on `port` (started here, one connection).
fn connect_once(net: &Net, port: u16, cli: &str) {
    let addr = format!("{}:{port}", net.server_ip());
    let mut server = net.server(&["tcp-server", &addr, "1", "1", "nd-srv"]);
    server.expect_line("port ");
    net.client(&["tcp-client", &addr, "1", "1", cli]).finish();
    server.finish();
}

/// The new-destination alerts the attached agent reports for `cli`, by port.
fn new_destination_ports(sock: &str, cli: &str) -> Vec<u64> {
    let v = netta_json(&["--api", sock, "detect", "--json"]);
    let mut ports: Vec<u64> = v
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| str_at(a, &["rule", "id"]) == Some("new-destination"))
        .filter(|a| evidence(a, "process").and_then(Value::as_str) == Some(cli))
        .filter_map(|a| evidence(a, "port").and_then(Value::as_u64))
        .collect();
    ports.sort_unstable();
    ports
}

/// A field of an alert's rule evidence (`netta.evidence` in the ECS document).
fn evidence<'a>(alert: &'a Value, key: &str) -> Option<&'a Value> {
    alert.get("netta")?.get("evidence")?.get(key)
}

/// Whether the baseline is learning, and the ports it holds for `cli` on `network`.
/// It knows programs by their executable once known: every client here is
/// `netta-traffic` (each test's ports are its own), not named `cli`.
fn learned_ports(sock: &str, cli: &str, network: &str) -> (bool, Vec<u64>) {
    let v = netta_json(&["--api", sock, "baseline", "show", "--json"]);
    let exe = traffic_bin().display().to_string();
    let mut ports: Vec<u64> = v["destinations"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|d| {
            let by_exe = d["executable"] == exe.as_str() && d["process"].is_null();
            (by_exe || d["process"] == cli) && d["network"] == network
        })
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

/// With an agent that just started on `sock` (learning for a few seconds): `cli`'s
/// first connection to port A is learned, not reported; after learning, A again is
/// known and B is new: one alert, for B, and B is learned.
fn learn_then_alert(net: &Net, sock: &str, cli: &str, [a, b]: [u16; 2]) {
    let network = net.network();
    let learned = || learned_ports(sock, cli, &network);
    // Learning counts from the store's creation; a reset starts it again now, so
    // the agent's own start-up time does not eat into it.
    let (ok, _, err) = run_netta(&["--api", sock, "baseline", "reset"]);
    assert!(ok, "{err}");
    connect_once(net, a, cli);
    wait_for("A learned", || learned().1.contains(&(a as u64)));
    wait_for("the end of learning", || !learned().0);
    assert_eq!(new_destination_ports(sock, cli), Vec::<u64>::new());
    connect_once(net, a, cli);
    connect_once(net, b, cli);
    wait_for("the alert for B", || {
        new_destination_ports(sock, cli) == [b as u64]
    });
    wait_for("B learned", || learned().1.contains(&(b as u64)));
}

/// The learning window the tests' rules file sets.
const ND_RULES: &str = "[new_destination]\nlearning = \"6s\"\n[beaconing]\nenabled = false\n";

#[test]
fn new_destination_across_namespaces_learns_then_alerts_on_a_new_port() {
    require_ebpf!("new-destination (netns)");
    let dir = temp_dir("baseline-nd-ns");
    let (state, sock) = (dir.join("state"), dir.join("api.sock"));
    let r = rules(&dir, ND_RULES);
    let net = Net::Pair(NetnsPair::new("nd"));
    let _agent = AgentProc::start(&state, &sock, &["--rules", &r]);
    let [a, b] = [0; 2].map(|_| free_tcp_port("127.0.0.1"));
    learn_then_alert(&net, sock.to_str().unwrap(), "ns-cli", [a, b]);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn new_destination_learns_keeps_what_it_learned_alerts_and_resets() {
    require_ebpf!("new-destination");
    let (dir, state, sock) = agent_dir("baseline-nd");
    let s = sock.to_str().unwrap();
    let r = rules(&dir, ND_RULES);
    let [a, b, c] = [0; 3].map(|_| free_tcp_port("127.0.0.1"));
    let mut agent = AgentProc::start(&state, &sock, &["--rules", &r]);
    let net = Net::Loopback;
    learn_then_alert(&net, s, "nd-cli", [a, b]);
    let learned = || learned_ports(s, "nd-cli", &net.network());

    // A restart keeps what was learned and the end of learning.
    agent.signal(libc::SIGKILL);
    let mut agent = AgentProc::start(&state, &sock, &["--rules", &r]);
    let (learning, mut ports) = learned();
    assert!(!learning);
    ports.retain(|p| [a, b].contains(&(*p as u16)));
    assert_eq!(ports, [a.min(b) as u64, a.max(b) as u64]);
    connect_once(&net, b, "nd-cli");
    connect_once(&net, c, "nd-cli");
    wait_for("the alert for C", || {
        new_destination_ports(s, "nd-cli") == [c as u64]
    });

    // Reset: forgotten, learning again.
    let (ok, out, err) = run_netta(&["--api", s, "baseline", "reset"]);
    assert!(ok, "{err}");
    assert_eq!(out, "baseline reset: learning again\n");
    let (learning, ports) = learned();
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

/// A steady client (200 ms ± 10 %) and a random one (gaps from 20 ms to 800 ms),
/// at the same time, each to its own server: a beaconing alert for the steady one
/// (from the right process, with its period), none for the random one.
fn beacon_and_scatter(net: &Net, tag: &str) {
    let dir = temp_dir(&format!("baseline-beacon-{tag}"));
    let r = rules(
        &dir,
        "[beaconing]\nmin_connections = 16\nmin_duration = \"3s\"\nwindow = \"1m\"\n\
         [new_destination]\nenabled = false\n",
    );
    let events = Events::start(&["--rules", &r], &[]);
    let ip = net.server_ip();
    let run = |mode: &str, name: &str, a: &str, b: &str| {
        let mut server = net.server(&["tcp-server", &format!("{ip}:0"), "24", "1", "bc-srv"]);
        let port: u16 = server.expect_line("port ").parse().unwrap();
        let addr = format!("{ip}:{port}");
        let client = net.client(&[mode, &addr, "24", a, b, name]);
        (server, client, addr)
    };
    let steady_name = format!("{tag}-steady");
    let (s1, mut steady, to_steady) = run("beacon", &steady_name, "200", "10");
    let (s2, mut random, to_random) = run("scatter", &format!("{tag}-random"), "20", "800");
    steady.expect_line("done ");
    random.expect_line("done ");
    s1.finish();
    s2.finish();
    let lines = events.stop();
    let beacons: Vec<&Value> = lines
        .iter()
        .filter(|v| str_at(v, &["rule", "id"]) == Some("beaconing"))
        .collect();
    let to = |addr: &str| -> Vec<&Value> {
        beacons
            .iter()
            .filter(|v| evidence(v, "destination").and_then(Value::as_str) == Some(addr))
            .copied()
            .collect()
    };
    let found = to(&to_steady);
    assert!(
        !found.is_empty(),
        "no beaconing alert for the steady client: {beacons:?}"
    );
    assert_eq!(
        to(&to_random).len(),
        0,
        "the random client was called a beacon: {beacons:?}"
    );
    let b = found[0];
    assert_eq!(
        evidence(b, "process").and_then(Value::as_str),
        Some(steady_name.as_str())
    );
    let period = evidence(b, "period_ms").and_then(Value::as_u64).unwrap();
    assert!((150..=250).contains(&period), "{period}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn beaconing_alerts_on_a_steady_period_and_not_on_random_intervals() {
    require_ebpf!("beaconing");
    beacon_and_scatter(&Net::Loopback, "bc");
}

#[test]
fn beaconing_across_namespaces_alerts_on_a_steady_period_only() {
    require_ebpf!("beaconing (netns)");
    beacon_and_scatter(&Net::Pair(NetnsPair::new("bc")), "bn");
}
