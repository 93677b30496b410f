//! The detection engine against real attacks: connect and SYN scans, a SYN flood
//! between two network namespaces, a connection pile-up, a new listener, and a
//! benign load that must raise nothing. Also the rules file: a typo is a usage
//! error, an allowlist silences a scan. Needs root (eBPF) except the typo check.
//!
//! The tracepoints see every network namespace, so one netta would see another
//! test's attack: the tests here run one at a time (`LOCK`).
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

use netta_tests::netns::NetnsPair;
use netta_tests::*;

static LOCK: Mutex<()> = Mutex::new(());

fn serial() -> MutexGuard<'static, ()> {
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

/// Generous upper bound for an alert that should come within a second or two.
const ALERT_WAIT: Duration = Duration::from_secs(10);

fn is_alert(v: &Value) -> bool {
    str_at(v, &["event", "kind"]) == Some("alert")
}

fn rule_is(v: &Value, rule: &str) -> bool {
    is_alert(v) && str_at(v, &["rule", "id"]) == Some(rule)
}

fn report_time(rule: &str, start: SystemTime, alert: &Value) -> i64 {
    let ms = ms_since(start, alert);
    eprintln!("time-to-alert {rule}: {ms} ms");
    ms
}

/// Checks the ECS shape every alert line has.
fn check_alert_shape(a: &Value, rule: &str) {
    assert_eq!(str_at(a, &["event", "action"]), Some(rule), "{a}");
    assert_eq!(str_at(a, &["rule", "id"]), Some(rule), "{a}");
    assert!(str_at(a, &["rule", "name"]).is_some(), "{a}");
    assert!(u64_at(a, &["event", "severity"]).is_some(), "{a}");
    assert!(
        str_at(a, &["message"]).is_some_and(|m| !m.is_empty()),
        "{a}"
    );
    assert!(a["netta"]["evidence"].is_object(), "{a}");
    assert_eq!(a["netta"]["final"], Value::Bool(false), "{a}");
}

/// `netta events`, interrupted if the test panics before `stop` (so no netta is
/// left running with its programs attached).
struct Netta(Option<Events>);

impl Netta {
    fn start(global: &[&str]) -> Netta {
        Netta(Some(Events::start(global, &[])))
    }

    fn events(&mut self) -> &mut Events {
        self.0.as_mut().expect("netta running")
    }

    fn wait_for(&mut self, pred: impl Fn(&Value) -> bool) -> Option<Value> {
        self.events().wait_for(ALERT_WAIT, pred)
    }

    /// The first `rule` alert that `pred` accepts; fails the test, listing the
    /// alerts seen, when none comes.
    fn expect_alert(&mut self, rule: &str, pred: impl Fn(&Value) -> bool) -> Value {
        self.wait_for(|v| rule_is(v, rule) && pred(v))
            .unwrap_or_else(|| panic!("no {rule} alert: {}", show_alerts(&self.events().collected)))
    }

    fn wait_until(&mut self, cond: impl Fn(&[Value]) -> bool) -> bool {
        self.events().wait_until(ALERT_WAIT, cond)
    }

    fn stop(mut self) -> Vec<Value> {
        self.0.take().expect("netta running").stop()
    }
}

impl Drop for Netta {
    fn drop(&mut self) {
        if let Some(ev) = self.0.take() {
            // SAFETY: signalling our own child.
            unsafe { libc::kill(ev.pid() as i32, libc::SIGINT) };
        }
    }
}

/// Whether `tool` can be used; when it cannot, skips (or fails, when eBPF tests
/// are required) like `ebpf_available`.
fn tool_available(test: &str, tool: &str) -> bool {
    if have_tool(tool) {
        return true;
    }
    if std::env::var("NETTA_REQUIRE_EBPF").is_ok_and(|v| v == "1") {
        panic!("{test}: `{tool}` is required (NETTA_REQUIRE_EBPF=1) but not on PATH");
    }
    eprintln!("SKIP {test}: no `{tool}`");
    false
}

/// A child process killed (and reaped) when dropped, also on panic.
struct Reaped(Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Whether a test may drive `tool`: installed, and not ruled out by
/// `NETTA_TEST_SCANNER` (which names the one to use; `netta-traffic` is the built-in
/// sender, fast enough for slow QEMU guests where nmap's start-up is not).
fn scanner_allowed(tool: &str) -> bool {
    std::env::var("NETTA_TEST_SCANNER").map_or(true, |v| v == tool) && have_tool(tool)
}

/// Waits for `child` at most `limit`; kills it if it is still running then.
/// Returns its exit status if it finished by itself.
fn wait_bounded(child: &mut Child, limit: Duration) -> Option<std::process::ExitStatus> {
    let deadline = std::time::Instant::now() + limit;
    loop {
        if let Some(st) = child.try_wait().expect("try_wait") {
            return Some(st);
        }
        if std::time::Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Alert lines for display in a failure message.
fn show_alerts(all: &[Value]) -> String {
    all.iter()
        .filter(|v| is_alert(v))
        .map(|v| v.to_string())
        .collect::<Vec<_>>()
        .join("\n")
}

/// 300 free loopback ports from `from` on, and netta watching: what a scan test
/// starts with.
fn scan_setup(from: u16) -> (u16, u16, Netta) {
    let first = free_tcp_range("127.0.0.1", from, 300);
    (first, first + 299, Netta::start(&[]))
}

/// The one port-scan alert from 127.0.0.1 in `all`, of ECS shape, with `scan_type`.
fn one_loopback_scan<'a>(all: &'a [Value], scan_type: &str) -> &'a Value {
    let scans: Vec<_> = alerts(all, "port-scan")
        .into_iter()
        .filter(|a| str_at(a, &["source", "ip"]) == Some("127.0.0.1"))
        .collect();
    assert_eq!(scans.len(), 1, "{scans:#?}");
    let a = scans[0];
    check_alert_shape(a, "port-scan");
    assert_eq!(
        str_at(&a["netta"]["evidence"], &["scan_type"]),
        Some(scan_type),
        "{a}"
    );
    a
}

/// A connect scan of 300 ports, most closed: one port-scan alert, "connect".
#[test]
fn connect_scan_raises_one_port_scan_alert() {
    let _serial = serial();
    require_ebpf!("connect_scan");
    let (first, last, mut events) = scan_setup(21_000);
    let start = SystemTime::now();
    let mut scan = Traffic::spawn(&[
        "scan",
        "127.0.0.1",
        &first.to_string(),
        &last.to_string(),
        "nt-scan",
    ]);
    assert_eq!(scan.expect_line("done "), "300");
    scan.finish();
    let alert = events.expect_alert("port-scan", |_| true);
    report_time("port-scan (connect)", start, &alert);
    // Let the scan's last events through before counting alerts.
    let last_seen = events.wait_until(|all| {
        all.iter().any(|e| {
            str_at(e, &["event", "action"]) == Some("connection-failed")
                && u64_at(e, &["destination", "port"]) == Some(u64::from(last))
        })
    });
    assert!(last_seen, "netta never reported the connect to port {last}");
    let all = events.stop();
    let a = one_loopback_scan(&all, "connect");
    let ev = &a["netta"]["evidence"];
    let (lo, hi) = (
        u64_at(ev, &["port_min"]).unwrap(),
        u64_at(ev, &["port_max"]).unwrap(),
    );
    assert!(
        u64::from(first) <= lo && lo <= hi && hi <= u64::from(last),
        "{a}"
    );
    assert!(u64_at(ev, &["ports"]).unwrap() >= 12, "{a}");
}

/// A raw SYN scan (nmap, else hping3, else our own raw sender): scan_type "syn".
#[test]
fn syn_scan_raises_a_syn_port_scan_alert() {
    let _serial = serial();
    require_ebpf!("syn_scan");
    let (first, last, mut events) = scan_setup(23_000);
    let range = format!("{first}-{last}");
    let (prog, args): (String, Vec<String>) = if scanner_allowed("nmap") {
        let a = [
            "-sS",
            "-Pn",
            "-n",
            "--max-retries",
            "0",
            "-p",
            &range,
            "127.0.0.1",
        ];
        ("nmap".into(), a.iter().map(|s| s.to_string()).collect())
    } else if scanner_allowed("hping3") {
        let p = format!("++{first}");
        let a = [
            "-q",
            "-S",
            "-p",
            &p,
            "-c",
            "300",
            "-i",
            "u1000",
            "127.0.0.1",
        ];
        ("hping3".into(), a.iter().map(|s| s.to_string()).collect())
    } else {
        let (f, l) = (first.to_string(), last.to_string());
        let a = [
            "syn",
            "127.0.0.1",
            "127.0.0.1",
            &f,
            &l,
            "300",
            "1000",
            "nt-syn",
        ];
        (
            traffic_bin().display().to_string(),
            a.iter().map(|s| s.to_string()).collect(),
        )
    };
    eprintln!("SYN scan with {prog}");
    let start = SystemTime::now();
    let mut scanner = Reaped(
        Command::new(&prog)
            .args(&args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {prog}: {e}")),
    );
    let st = wait_bounded(&mut scanner.0, Duration::from_secs(30));
    assert!(st.is_some_and(|s| s.success()), "{prog} failed: {st:?}");
    let alert = events.expect_alert("port-scan", |v| {
        str_at(v, &["source", "ip"]) == Some("127.0.0.1")
    });
    report_time("port-scan (syn)", start, &alert);
    let all = events.stop();
    one_loopback_scan(&all, "syn");
}

/// SYN-ACKs the kernel retransmitted in `ns` (TcpExt TCPSynRetrans).
fn synack_retransmits(ns: &str) -> u64 {
    let out = Command::new("ip")
        .args(["netns", "exec", ns, "cat", "/proc/net/netstat"])
        .output()
        .expect("read /proc/net/netstat");
    let text = String::from_utf8_lossy(&out.stdout);
    let rows: Vec<Vec<&str>> = text
        .lines()
        .filter(|l| l.starts_with("TcpExt:"))
        .map(|l| l.split_whitespace().collect())
        .collect();
    let [names, values] = rows.as_slice() else {
        panic!("unexpected /proc/net/netstat in {ns}: {text}")
    };
    names
        .iter()
        .position(|n| *n == "TCPSynRetrans")
        .and_then(|i| values.get(i))
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no TCPSynRetrans in {ns}: {text}"))
}

/// `prog args` inside namespace `ns`, output discarded.
fn spawn_in(ns: &str, prog: &str, args: &[&str]) -> Reaped {
    Reaped(
        Command::new("ip")
            .args(["netns", "exec", ns, prog])
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {prog} in {ns}: {e}")),
    )
}

/// Floods `port` on A from B with SYNs from the nonexistent B-side address .99,
/// so no SYN-ACK is ever answered. Bounded: 3000 SYNs, 10 s at most.
fn syn_flood(pair: &NetnsPair, port: u16) -> Reaped {
    let (spoofed, target) = (pair.ip(99), pair.ip(1));
    let port = port.to_string();
    if scanner_allowed("hping3") {
        spawn_in(
            &pair.b,
            "timeout",
            &[
                "-s", "INT", "10", "hping3", "-q", "-S", "-p", &port, "-a", &spoofed, "-i", "u200",
                "-c", "3000", &target,
            ],
        )
    } else {
        let bin = traffic_bin().display().to_string();
        spawn_in(
            &pair.b,
            "timeout",
            &[
                "10", &bin, "syn", &spoofed, &target, &port, &port, "3000", "200", "nt-flood",
            ],
        )
    }
}

/// What a flood left: netta's syn-flood alert for port 8080 (if any), every line
/// netta wrote, and how many SYN-ACKs the kernel retransmitted in A.
struct Flood {
    alert: Option<Value>,
    all: Vec<Value>,
    retransmits: u64,
}

/// Runs a listener on A:8080, floods it from B and waits for the syn-flood alert
/// (printing the time from the flood's start). `synack_retries` sets A's
/// net.ipv4.tcp_synack_retries (inside A only) when given.
fn flood_and_wait(tag: &str, synack_retries: Option<u32>) -> Flood {
    let pair = NetnsPair::new(tag);
    if let Some(n) = synack_retries {
        let set = format!("net.ipv4.tcp_synack_retries={n}");
        run_ok(
            "ip",
            &["netns", "exec", &pair.a, "sysctl", "-q", "-w", &set],
        );
    }
    let mut events = Netta::start(&[]);
    let listen = format!("{}:8080", pair.ip(1));
    let mut server =
        Traffic::spawn_in_netns(&pair.a, &["tcp-server", &listen, "1", "0", "nt-flood-srv"]);
    assert_eq!(server.expect_line("port "), "8080");
    let start = SystemTime::now();
    let mut flood = syn_flood(&pair, 8080);
    let alert = events.wait_for(|v| {
        rule_is(v, "syn-flood") && u64_at(&v["netta"]["evidence"], &["port"]) == Some(8080)
    });
    if let Some(a) = &alert {
        report_time(&format!("syn-flood ({tag})"), start, a);
    }
    // The flood is bounded in count and time; let it end before tearing down.
    wait_bounded(&mut flood.0, Duration::from_secs(15));
    let retransmits = synack_retransmits(&pair.a);
    eprintln!("syn-flood ({tag}): the kernel retransmitted {retransmits} SYN-ACKs");
    drop(server);
    let all = events.stop();
    drop(pair);
    Flood {
        alert,
        all,
        retransmits,
    }
}

/// A SYN flood of a listener in one namespace from another, with a spoofed
/// source that never answers: a syn-flood alert for port 8080 within seconds.
#[test]
fn syn_flood_between_namespaces_raises_syn_flood() {
    let _serial = serial();
    if !ebpf_available("syn_flood") || !tool_available("syn_flood", "ip") {
        return;
    }
    let Flood {
        alert,
        all,
        retransmits,
    } = flood_and_wait("f", None);
    assert!(
        retransmits >= 50,
        "the flood made only {retransmits} half-open connections"
    );
    let a = alert.unwrap_or_else(|| panic!("no syn-flood alert: {}", show_alerts(&all)));
    check_alert_shape(&a, "syn-flood");
    assert!(
        str_at(&a, &["message"]).is_some_and(|m| m.contains("port 8080")),
        "{a}"
    );
    let floods: Vec<_> = alerts(&all, "syn-flood")
        .into_iter()
        .filter(|a| u64_at(&a["netta"]["evidence"], &["port"]) == Some(8080))
        .collect();
    assert_eq!(floods.len(), 1, "one incident: {floods:#?}");
}

/// The same flood against a server that retransmits each SYN-ACK only once
/// (net.ipv4.tcp_synack_retries=1, a common SYN-flood hardening): the one round
/// of ~129 retransmissions (the listen backlog) within milliseconds is far above
/// 50/s, so it must raise the alert (~1 s after the flood starts).
#[test]
fn syn_flood_is_detected_from_the_first_synack_retransmissions() {
    let _serial = serial();
    if !ebpf_available("syn_flood_first_round") || !tool_available("syn_flood_first_round", "ip") {
        return;
    }
    let f = flood_and_wait("r", Some(1));
    assert!(
        f.retransmits >= 50,
        "the flood made only {} half-open connections",
        f.retransmits
    );
    assert!(
        f.alert.is_some(),
        "no syn-flood alert although the kernel retransmitted {} SYN-ACKs to port 8080 \
         in one round; alerts: {}",
        f.retransmits,
        show_alerts(&f.all)
    );
}

/// netta, then a loopback server (named `name`) taking 15 connections: its port,
/// and the time the clients may start.
fn netta_and_server(name: &str) -> (Netta, Traffic, String, SystemTime) {
    let events = Netta::start(&[]);
    let mut server = Traffic::spawn(&["tcp-server", "127.0.0.1:0", "15", "0", name]);
    let port = server.expect_line("port ");
    (events, server, port, SystemTime::now())
}

/// 15 connections held open to one listener on loopback (30 sockets with both
/// ends): a high-connection-count alert for 127.0.0.1.
#[test]
fn many_connections_to_one_ip_raise_high_connection_count() {
    let _serial = serial();
    require_ebpf!("high_connection_count");
    let (mut events, server, port, start) = netta_and_server("nt-hold-srv");
    let mut hold = Traffic::to_loopback("hold", port, &["15", "nt-hold"]);
    hold.expect_line("held");
    let alert = events.expect_alert("high-connection-count", |v| {
        str_at(v, &["source", "ip"]) == Some("127.0.0.1")
    });
    let ms = report_time("high-connection-count", start, &alert);
    eprintln!("high-connection-count: {}", alert["message"]);
    hold.finish();
    server.finish();
    events.stop();
    check_alert_shape(&alert, "high-connection-count");
    let ev = &alert["netta"]["evidence"];
    assert_eq!(str_at(ev, &["remote_ip"]), Some("127.0.0.1"), "{alert}");
    assert!(u64_at(ev, &["connections"]).unwrap() > 10, "{alert}");
    // The table rules run every second.
    assert!(ms < 3_000, "high-connection-count took {ms} ms");
}

/// 15 idle connections from another loopback address (127.0.0.2) to a server that
/// has not read from them yet: on this host only the server's 15 accepted sockets
/// have 127.0.0.2 as their peer, and they are ESTABLISHED from the handshake on.
/// The table rules run every second, so the alert must come within ~3 s, as it
/// does for the client ends above (not at the next /proc reconcile, 5 s apart).
#[test]
fn idle_accepted_connections_count_toward_high_connection_count_promptly() {
    let _serial = serial();
    require_ebpf!("high_connection_count_ingress");
    let (mut events, server, port, start) = netta_and_server("nt-idle-srv");
    let mut hold = Traffic::spawn(&[
        "hold-from",
        "127.0.0.2",
        &format!("127.0.0.1:{port}"),
        "15",
        "nt-idle",
    ]);
    hold.expect_line("held");
    let alert = events.wait_for(|v| {
        rule_is(v, "high-connection-count") && str_at(v, &["source", "ip"]) == Some("127.0.0.2")
    });
    hold.finish();
    server.finish();
    let all = events.stop();
    let alert = alert.unwrap_or_else(|| {
        panic!(
            "no high-connection-count alert for 127.0.0.2: {}",
            show_alerts(&all)
        )
    });
    let ms = report_time("high-connection-count (accepted, idle)", start, &alert);
    check_alert_shape(&alert, "high-connection-count");
    assert_eq!(
        u64_at(&alert["netta"]["evidence"], &["connections"]),
        Some(15),
        "{alert}"
    );
    assert!(
        ms < 3_000,
        "high-connection-count for 15 idle accepted connections took {ms} ms"
    );
}

/// A listener that appears after netta started: a new-listener alert naming its
/// pid and port.
#[test]
fn listener_started_after_netta_raises_new_listener() {
    let _serial = serial();
    require_ebpf!("new_listener");
    let mut events = Netta::start(&[]);
    let start = SystemTime::now();
    let mut server = Traffic::spawn(&["tcp-server", "127.0.0.1:0", "1", "0", "nt-new-srv"]);
    let port = server.expect_line("port ");
    let pid = u64::from(server.pid());
    let alert = events.expect_alert("new-listener", |v| {
        u64_at(&v["netta"]["evidence"], &["pid"]) == Some(pid)
    });
    report_time("new-listener", start, &alert);
    drop(server);
    events.stop();
    check_alert_shape(&alert, "new-listener");
    let msg = str_at(&alert, &["message"]).unwrap();
    assert!(msg.contains(&format!(":{port}")), "{alert}");
    assert!(msg.contains("nt-new-srv"), "{alert}");
    assert_eq!(
        str_at(&alert["netta"]["evidence"], &["address"]),
        Some(format!("127.0.0.1:{port}").as_str()),
        "{alert}"
    );
}

/// Ordinary busy traffic: 5000 HTTP requests over 4 connections at a time and
/// DNS-style UDP from several processes, to services that were already running.
/// No alert of any kind. (The only alerts set aside are those whose evidence names
/// a process that is not part of this test: other programs on the machine, such
/// as another test suite run by hand at the same time, are seen by netta too.)
#[test]
fn benign_http_and_udp_load_raises_no_alert() {
    let _serial = serial();
    require_ebpf!("benign_load");
    let mut http = Traffic::spawn(&["http-server", "127.0.0.1:0", "nt-http"]);
    let http_port = http.expect_line("port ");
    let mut udp = Traffic::spawn(&["udp-server", "127.0.0.1:0", "nt-dns"]);
    let udp_port = udp.expect_line("port ");
    let mut ours = vec![u64::from(http.pid()), u64::from(udp.pid())];
    let events = Netta::start(&[]);
    let dns = format!("127.0.0.1:{udp_port}");
    let senders: Vec<Traffic> = (0..4)
        .map(|_| Traffic::spawn(&["udp-send", &dns, "200", "40", "nt-dns-cli"]))
        .collect();
    ours.extend(senders.iter().map(|s| u64::from(s.pid())));
    let url = format!("http://127.0.0.1:{http_port}/");
    if have_tool("ab") {
        let ab = Command::new("ab")
            .args(["-q", "-n", "5000", "-c", "4", &url])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run ab");
        ours.push(u64::from(ab.id()));
        let out = ab.wait_with_output().expect("wait for ab");
        let text = String::from_utf8_lossy(&out.stdout).to_string();
        assert!(out.status.success(), "ab: {}\n{text}", out.status);
        assert!(text.contains("Complete requests:      5000"), "{text}");
        assert!(text.contains("Failed requests:        0"), "{text}");
    } else {
        let mut get = Traffic::to_loopback("http-get", &http_port, &["5000", "4", "nt-http-get"]);
        ours.push(u64::from(get.pid()));
        assert_eq!(get.expect_line("done "), "5000");
        get.finish();
    }
    for s in senders {
        s.finish();
    }
    // The table rules run every second: give them a few rounds.
    std::thread::sleep(Duration::from_secs(3));
    let all = events.stop();
    drop(http);
    udp.finish();
    let opened = all
        .iter()
        .filter(|e| {
            str_at(e, &["event", "action"]) == Some("connection-opened")
                && u64_at(e, &["destination", "port"]) == http_port.parse().ok()
        })
        .count();
    // Both ends of every connection: netta did see the load.
    assert!(opened >= 10_000, "only {opened} connection-opened events");
    let (foreign, mine): (Vec<&Value>, Vec<&Value>) =
        all.iter().filter(|v| is_alert(v)).partition(|a| {
            u64_at(&a["netta"]["evidence"], &["pid"]).is_some_and(|pid| !ours.contains(&pid))
        });
    for a in &foreign {
        eprintln!("ignored (another program on this machine): {a}");
    }
    let found: Vec<String> = mine.iter().map(|a| a.to_string()).collect();
    if !found.is_empty() {
        eprintln!("unexpected alerts:\n{}", found.join("\n"));
    }
    assert!(
        found.is_empty(),
        "benign load raised alerts:\n{}",
        found.join("\n")
    );
}

fn rules_file(name: &str, text: &str) -> std::path::PathBuf {
    let p = std::env::temp_dir().join(format!("netta-rules-{}-{name}.toml", std::process::id()));
    std::fs::write(&p, text).expect("write rules file");
    p
}

/// A typo in the rules file is a usage error (exit 2) naming its line.
#[test]
fn rules_file_typo_is_a_usage_error_with_its_line() {
    let _serial = serial();
    let p = rules_file("typo", "[port_scan]\nmin_port = 3\n");
    let out = netta_cmd()
        .arg("--rules")
        .arg(&p)
        .arg("detect")
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("run {}: {e}", netta_bin().display()));
    let _ = std::fs::remove_file(&p);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{}: {err}", out.status);
    assert!(err.contains("line 2"), "{err}");
    assert!(err.contains("min_port"), "{err}");
}

/// An allowlisted source scanning 60 ports raises no port-scan alert, although
/// netta saw every connect.
#[test]
fn allowlisted_source_raises_no_port_scan() {
    let _serial = serial();
    require_ebpf!("allowlisted_scan");
    let p = rules_file(
        "allow",
        "[port_scan]\nmin_ports = 20\n\n[allow]\nips = [\"127.0.0.0/8\"]\n",
    );
    let first = free_tcp_range("127.0.0.1", 25_000, 60);
    let last = first + 59;
    let rules = p.display().to_string();
    let mut events = Netta::start(&["--rules", &rules]);
    let mut scan = Traffic::spawn(&[
        "scan",
        "127.0.0.1",
        &first.to_string(),
        &last.to_string(),
        "nt-scan-ok",
    ]);
    assert_eq!(scan.expect_line("done "), "60");
    scan.finish();
    let failed_in_range = |all: &[Value]| {
        all.iter()
            .filter(|e| {
                str_at(e, &["event", "action"]) == Some("connection-failed")
                    && u64_at(e, &["destination", "port"])
                        .is_some_and(|p| (u64::from(first)..=u64::from(last)).contains(&p))
            })
            .count()
    };
    let seen = events.wait_until(|all| failed_in_range(all) >= 60);
    let all = events.stop();
    let _ = std::fs::remove_file(&p);
    assert!(
        seen,
        "netta saw only {} of the 60 connects",
        failed_in_range(&all)
    );
    let scans = alerts(&all, "port-scan");
    assert!(scans.is_empty(), "allowlisted scan raised: {scans:#?}");
}
