//! Rule logic on synthetic event sequences, including the edges of every window.
use super::*;
use crate::core::event::{OwnerSource, Proto, State};
use crate::core::sanitize::Comm;
use crate::fixture::{conn, from_ports, scan};

fn det() -> Detector {
    Detector::new(Rules::default(), Services::builtin(), 0)
}

fn ev(action: Action, local: &str, remote: &str, dir: Direction, ts: u64) -> ConnEvent {
    let mut e = ConnEvent::lost(ts, 0);
    e.action = action;
    e.local = local.parse().unwrap();
    e.remote = remote.parse().unwrap();
    e.direction = dir;
    e.pid = 42;
    e.comm = Comm::from_bytes(b"proc");
    e.owner = OwnerSource::Hook;
    e
}

fn rst(port: u16, from: &str, ts: u64) -> ConnEvent {
    ev(
        Action::ResetSent,
        &format!("10.0.0.1:{port}"),
        &format!("{from}:40000"),
        Direction::Unknown,
        ts,
    )
}

/// 10.0.0.1:1 opened a connection to 10.0.0.2:80 at `t`.
fn open_1_to_2(d: &mut Detector, t: u64, out: &mut Vec<Alert>) {
    let e = ev(
        Action::Opened,
        "10.0.0.1:1",
        "10.0.0.2:80",
        Direction::Egress,
        t,
    );
    d.observe(&e, out);
}

fn run(d: &mut Detector, events: &[ConnEvent]) -> Vec<Alert> {
    let mut out = Vec::new();
    for e in events {
        d.observe(e, &mut out);
    }
    out
}

#[test]
fn syn_scan_of_closed_ports_fires_once() {
    let mut d = det();
    let events: Vec<_> = (0..300u16)
        .map(|p| rst(1000 + p, "10.9.9.9", p as u64 * 1_000_000))
        .collect();
    let alerts = run(&mut d, &events);
    assert_eq!(alerts.len(), 1, "{alerts:#?}");
    let a = &alerts[0];
    assert_eq!(a.rule, RuleId::PortScan);
    assert_eq!(a.source_ip, Some("10.9.9.9".parse().unwrap()));
    assert_eq!(a.evidence["scan_type"], "syn");
    // The open incident kept counting after it fired.
    let inc = d.incidents();
    assert_eq!(inc.len(), 1);
    assert_eq!(inc[0].evidence["ports"], 300);
    assert_eq!(inc[0].evidence["port_min"], 1000);
    assert_eq!(inc[0].evidence["port_max"], 1299);
    assert!(
        inc[0].message.contains("300 ports (1000-1299)"),
        "{}",
        inc[0].message
    );
}

#[test]
fn fast_window_edge() {
    let mut rules = Rules::default();
    // Only the fast window here.
    rules.port_scan.slow_min_ports = 10_000;
    let win = rules.port_scan.window.as_nanos() as u64;
    let n = rules.port_scan.min_ports as u16;
    let det = || Detector::new(rules.clone(), Services::builtin(), 0);
    // n-1 ports inside the window, the n-th one just after the first expired.
    let mut d = det();
    let mut events: Vec<_> = (0..n - 1).map(|p| rst(2000 + p, "10.1.1.1", 0)).collect();
    events.push(rst(3000, "10.1.1.1", win + 1));
    assert!(run(&mut d, &events).is_empty());
    // Exactly at the edge the first ones still count.
    let mut d = det();
    let mut events: Vec<_> = (0..n - 1).map(|p| rst(2000 + p, "10.1.1.2", 0)).collect();
    events.push(rst(3000, "10.1.1.2", win));
    assert_eq!(run(&mut d, &events).len(), 1);
}

#[test]
fn slow_scan_spread_over_minutes() {
    let rules = Rules::default();
    let k = rules.port_scan.slow_min_ports as u64;
    let step = rules.port_scan.slow_window.as_nanos() as u64 / (k + 1);
    let mut d = det();
    let events: Vec<_> = (0..k)
        .map(|i| rst(100 + i as u16, "10.2.2.2", i * step))
        .collect();
    let alerts = run(&mut d, &events);
    assert_eq!(alerts.len(), 1);
    assert_eq!(alerts[0].evidence["speed"], "slow");
    assert!(alerts[0].message.contains(&format!("{k} ports")));
    // One port fewer never fires.
    let mut d = det();
    assert!(run(&mut d, &events[..events.len() - 1]).is_empty());
}

#[test]
fn connect_scans_are_told_apart_and_allowlists_apply() {
    let mut d = det();
    let mut events = vec![ev(
        Action::Opened,
        "10.0.0.1:22",
        "10.3.3.3:5000",
        Direction::Ingress,
        1,
    )];
    events.extend((0..30u16).map(|p| rst(3000 + p, "10.3.3.3", 10 + p as u64)));
    let alerts = run(&mut d, &events);
    assert_eq!(alerts[0].evidence["scan_type"], "connect");

    let mut rules = Rules::default();
    rules.allow.nets.push("10.3.0.0/16".parse().unwrap());
    let mut d = Detector::new(rules, Services::builtin(), 0);
    assert!(run(&mut d, &events).is_empty());
}

#[test]
fn incidents_rearm_after_a_quiet_period() {
    let mut d = det();
    let quiet = d.rules().rearm_after.as_nanos() as u64;
    let scan = |d: &mut Detector, t0: u64| {
        let e: Vec<_> = (0..25u16)
            .map(|p| rst(4000 + p, "10.4.4.4", t0 + p as u64))
            .collect();
        run(d, &e)
    };
    assert_eq!(scan(&mut d, 0).len(), 1);
    d.tick(quiet / 2);
    assert!(
        scan(&mut d, quiet / 2).is_empty(),
        "same incident, still open"
    );
    let ended = d.tick(quiet / 2 + 25 + quiet + 1);
    assert_eq!(ended.len(), 1);
    assert!(ended[0].ended);
    assert_eq!(ended[0].evidence["ports"], 25);
    assert_eq!(d.incidents().len(), 1);
    assert_eq!(
        scan(&mut d, 3 * quiet).len(),
        1,
        "a new incident after quiet"
    );
    assert_eq!(d.incidents().len(), 2);
}

#[test]
fn new_listener_names_its_process_and_respects_allowlist() {
    let mut d = Detector::new(Rules::default(), Services::builtin(), 100);
    let mut l = ev(
        Action::ListenStarted,
        "0.0.0.0:4444",
        "0.0.0.0:0",
        Direction::Unknown,
        200,
    );
    l.comm = Comm::from_bytes(b"nc\x1b[2J");
    let alerts = run(&mut d, &[l.clone()]);
    assert_eq!(alerts.len(), 1);
    assert_eq!(
        alerts[0].message,
        "New listener: TCP 0.0.0.0:4444 by 42/nc\\e[2J"
    );
    let mut rules = Rules::default();
    rules.allow.ports.push(4444);
    let mut d = Detector::new(rules, Services::builtin(), 100);
    assert!(run(&mut d, &[l]).is_empty());
}

#[test]
fn fan_out_counts_distinct_hosts_per_process() {
    let mut d = det();
    let n = d.rules().fan_out.min_hosts;
    let events: Vec<_> = (0..n)
        .map(|i| {
            ev(
                Action::Opened,
                "10.0.0.1:40000",
                &format!("10.{}.{}.1:443", i / 250, i % 250),
                Direction::Egress,
                i as u64,
            )
        })
        .collect();
    let alerts = run(&mut d, &events[..n - 1]);
    assert!(alerts.is_empty());
    let alerts = run(&mut d, &events[n - 1..]);
    assert_eq!(alerts.len(), 1);
    assert_eq!(alerts[0].rule, RuleId::FanOut);
    // The same host over and over is not fan-out.
    let mut d = det();
    let same: Vec<_> = (0..500)
        .map(|i| {
            ev(
                Action::Opened,
                "10.0.0.1:40000",
                "10.0.0.2:443",
                Direction::Egress,
                i,
            )
        })
        .collect();
    assert!(run(&mut d, &same).is_empty());
}

#[test]
fn burst_needs_a_sustained_jump_over_baseline() {
    let mut d = det();
    let cfg = d.rules().connection_burst.clone();
    let mut out = Vec::new();
    let mut t = 0;
    // Ten quiet seconds at 10/s build a baseline.
    for s in 0..10u64 {
        for i in 0..10 {
            t = s * SEC + i;
            open_1_to_2(&mut d, t, &mut out);
        }
    }
    // One hot second (a benign ab run) is not enough.
    let hot = cfg.min_per_sec + 1;
    for i in 0..hot {
        open_1_to_2(&mut d, 10 * SEC + i, &mut out);
    }
    d.tick(11 * SEC + 1);
    assert!(out.is_empty());
    // `sustain` hot seconds in a row are.
    for s in 11..11 + cfg.sustain_secs as u64 {
        for i in 0..hot {
            t = s * SEC + i;
            open_1_to_2(&mut d, t, &mut out);
        }
    }
    d.tick(t + SEC);
    open_1_to_2(&mut d, t + SEC, &mut out);
    assert_eq!(out.len(), 1, "{out:#?}");
    assert_eq!(out[0].rule, RuleId::ConnectionBurst);
}

#[test]
fn large_outbound_by_connection_and_by_process() {
    let mut d = det();
    let mut c = ev(
        Action::Closed,
        "10.0.0.1:40000",
        "203.0.113.5:443",
        Direction::Egress,
        10,
    );
    c.bytes_sent = 200 << 20;
    c.bytes_recv = 1 << 20;
    assert_eq!(run(&mut d, &[c.clone()]).len(), 1);
    // Balanced traffic is not exfiltration.
    let mut d = det();
    c.bytes_recv = 150 << 20;
    assert!(run(&mut d, &[c]).is_empty());
    // Many medium uploads by one process add up.
    let mut d = det();
    let parts: Vec<_> = (0..12)
        .map(|i| {
            let mut e = ev(
                Action::Closed,
                "10.0.0.1:40000",
                "203.0.113.5:443",
                Direction::Egress,
                i * SEC,
            );
            e.bytes_sent = 10 << 20;
            e.bytes_recv = 1000;
            e
        })
        .collect();
    let alerts = run(&mut d, &parts);
    assert_eq!(alerts.len(), 1);
    assert!(alerts[0].key.starts_with("pid"));
}

#[test]
fn syn_flood_from_synack_retransmits() {
    let mut d = det();
    let mut out = Vec::new();
    d.observe_synack(&[], SEC, &mut out);
    d.observe_synack(&[(2, 8080, 10)], 2 * SEC, &mut out);
    assert!(out.is_empty(), "10/s is below the threshold");
    d.observe_synack(&[(2, 8080, 1_000)], 3 * SEC, &mut out);
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].rule, RuleId::SynFlood);
    assert!(out[0].message.contains("port 8080"));
    // The first burst already counts: the kernel map starts empty with netta.
    let mut d = det();
    let mut out = Vec::new();
    d.observe_synack(&[], SEC, &mut out);
    d.observe_synack(&[(2, 9090, 129)], SEC + SEC / 2, &mut out);
    assert_eq!(out.len(), 1, "129 retransmits in 0.5 s");
    assert!(out[0].message.contains("port 9090"));
}

#[test]
fn pile_ups_of_half_open_close_wait_and_syn_sent() {
    let mut snap = Snapshot::default();
    let r = Rules::default();
    for i in 0..r.syn_flood.min_syn_recv as u32 {
        let remote = format!("10.{}.{}.{}:1234", i / 65536, i / 256 % 256, i % 256);
        snap.conns.push(conn(
            i as u64,
            Proto::Tcp,
            "10.0.0.1:80",
            &remote,
            State::SynRecv,
            Direction::Ingress,
            0,
            b"",
        ));
    }
    for i in 0..r.abnormal_state.close_wait as u16 {
        snap.conns.push(conn(
            10_000 + i as u64,
            Proto::Tcp,
            "10.0.0.1:8080",
            &format!("10.0.0.7:{}", 2000 + i),
            State::CloseWait,
            Direction::Ingress,
            9,
            b"leaky",
        ));
    }
    snap.conns.extend(from_ports(
        r.abnormal_state.syn_sent as u16,
        "10.0.0.1",
        3000,
        "198.51.100.1:443",
        State::SynSent,
        9,
        b"app",
    ));
    let rules: Vec<_> = scan(&snap, &Services::builtin(), &r, 0)
        .iter()
        .map(|a| a.rule)
        .collect();
    assert!(rules.contains(&RuleId::SynFlood), "{rules:?}");
    assert_eq!(
        rules
            .iter()
            .filter(|r| **r == RuleId::AbnormalState)
            .count(),
        2,
        "{rules:?}"
    );
}
