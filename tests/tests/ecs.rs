//! Every kind of line netta's encoder makes (each action, both families, each
//! rule's alert) conforms to the vendored ECS, without eBPF: the integration
//! tests check the live lines the same way through the harness.
use netta::api::{alert_value, write_line};
use netta::api::{Action, Alert, Clock, ConnEvent, Direction, Proto, RuleId, Severity, State};
use netta_tests::ecs::assert_conforms;
use netta_tests::parse_event_line;

fn event(action: Action, v6: bool, dir: Direction) -> ConnEvent {
    let mut e = ConnEvent::lost(2_000_000_000, 3);
    e.action = action;
    e.sock = 0xffff_8881_5f95_8940;
    let (l, r) = if v6 {
        ("[::1]:8080", "[2001:db8::1]:45000")
    } else {
        ("127.0.0.1:8080", "10.0.0.1:45000")
    };
    e.local = l.parse().unwrap();
    e.remote = r.parse().unwrap();
    e.direction = dir;
    e.pid = 1;
    e.start_ns = 1_000_000_000;
    e.bytes_sent = 10;
    e.bytes_recv = 20;
    e.new_state = State::from_tcp(1);
    e.old_state = State::from_tcp(2);
    if action == Action::UdpFlow {
        e.proto = Proto::Udp;
    }
    e
}

#[test]
fn every_action_conforms_and_carries_no_kernel_address() {
    let clock = Clock::new();
    for action in Action::REPORTED {
        for v6 in [false, true] {
            for dir in [Direction::Ingress, Direction::Egress] {
                let mut line = Vec::new();
                write_line(&mut line, &event(action, v6, dir), &clock);
                let text = String::from_utf8(line).unwrap();
                let v = parse_event_line(text.trim_end());
                assert_eq!(v["ecs"]["version"], netta_tests::ecs::ECS_VERSION);
                assert!(v["host"]["name"].is_string(), "{v}");
                assert_eq!(v["agent"]["type"], "netta");
                let lost = matches!(action, Action::EventsLost | Action::TableEvicted);
                if !lost && !matches!(action, Action::ListenStarted | Action::ListenStopped) {
                    assert!(v["network"]["community_id"].is_string(), "{v}");
                    assert!(v["netta"]["sock_id"].is_string(), "{v}");
                }
            }
        }
    }
}

/// An owner everything is known of: its process (with arguments), user, and a
/// container in a Kubernetes pod, in a network namespace.
fn owned(mut e: ConnEvent) -> ConnEvent {
    use netta::api::cgroup::{Container, Pod};
    use netta::api::process::Process;
    use netta::api::Text;
    use std::sync::Arc;
    let text = |s: &str| Text::escaped(s.as_bytes(), 256);
    e.netns = 4_026_531_840;
    e.who.uid = Some(1000);
    e.who.user = Some(text("alice"));
    e.who.cgroup = 7741;
    e.who.process = Some(Arc::new(Process {
        pid: 1,
        ppid: 7,
        start_ns: 500_000_000,
        uid: 1000,
        cgroup: 7741,
        entity_id: "0123456789abcdef0123456789abcdef".into(),
        executable: Some(text("/usr/bin/python3")),
        args: Some(vec![text("python3"), text("-c"), text("pass")].into()),
        args_truncated: true,
    }));
    e.who.container = Some(Arc::new(Container {
        id: Some("3f2a8b5c".repeat(8).into()),
        pod: Some(Pod {
            uid: "6a1b3c4d-1111-2222-3333-444455556666".into(),
            name: Some(text("web-0")),
            namespace: Some(text("shop")),
        }),
    }));
    e
}

#[test]
fn every_owner_field_conforms() {
    let clock = Clock::new();
    for action in Action::REPORTED {
        let mut line = Vec::new();
        write_line(
            &mut line,
            &owned(event(action, false, Direction::Egress)),
            &clock,
        );
        let v = parse_event_line(std::str::from_utf8(&line).unwrap().trim_end());
        if matches!(action, Action::EventsLost | Action::TableEvicted) {
            continue;
        }
        assert_eq!(v["process"]["executable"], "/usr/bin/python3", "{v}");
        assert_eq!(v["process"]["args_count"], 3);
        assert_eq!(v["process"]["parent"]["pid"], 7);
        assert!(v["process"]["start"].is_string());
        assert_eq!(v["user"]["id"], "1000");
        assert_eq!(v["user"]["name"], "alice");
        assert_eq!(v["orchestrator"]["resource"]["name"], "web-0");
        assert_eq!(v["orchestrator"]["namespace"], "shop");
        assert_eq!(v["netta"]["netns"], 4_026_531_840u32);
        assert_eq!(v["netta"]["args_truncated"], true);
    }
}

#[test]
fn failed_connects_have_outcome_failure_and_an_expected_type() {
    let mut line = Vec::new();
    let ev = event(Action::Failed, false, Direction::Egress);
    write_line(&mut line, &ev, &Clock::new());
    let v = parse_event_line(std::str::from_utf8(&line).unwrap().trim_end());
    assert_eq!(v["event"]["outcome"], "failure");
    assert_eq!(v["client"]["port"], 8080);
    assert_eq!(v["server"]["ip"], "10.0.0.1");
}

#[test]
fn every_rule_alert_conforms_with_its_attack_technique() {
    let clock = Clock::new();
    for rule in RuleId::ALL {
        for ended in [false, true] {
            let a = Alert {
                rule,
                severity: Severity::High,
                key: "k".into(),
                message: "m".into(),
                source_ip: Some("10.0.0.1".parse().unwrap()),
                first_ns: 1,
                last_ns: 2,
                updates: 1,
                ended,
                evidence: serde_json::json!({"n": 1}),
            };
            let v = alert_value(&a, &clock);
            assert_conforms(&v);
            let t = v["threat"]["technique"]["id"][0].as_str().unwrap();
            assert!(t.starts_with('T') && t.len() == 5, "{rule:?}: {t}");
            assert_eq!(v["threat"]["framework"], "MITRE ATT&CK");
            assert_eq!(v["rule"]["ruleset"], "netta");
        }
    }
    let scan = RuleId::PortScan.attack().technique.0;
    assert_eq!(scan, "T1046");
    assert_eq!(RuleId::SynFlood.attack().technique.0, "T1498");
    assert_eq!(RuleId::LargeOutbound.attack().technique.0, "T1048");
}
