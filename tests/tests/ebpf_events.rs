//! `netta events` against real loopback traffic: lifecycle, attribution of both
//! ends, bytes, IPv6, UDP aggregation and failed connects. Needs root (eBPF).
use std::collections::HashMap;

use netta_tests::*;

/// Events touching `port` (as source or destination) of one transport.
fn touching<'a>(events: &'a [Value], transport: &str, port: u64) -> Vec<&'a Value> {
    events
        .iter()
        .filter(|e| str_at(e, &["network", "transport"]) == Some(transport))
        .filter(|e| {
            u64_at(e, &["destination", "port"]) == Some(port)
                || u64_at(e, &["source", "port"]) == Some(port)
        })
        .collect()
}

fn short_lived(ip: &str, n: usize) {
    let bind = if ip.contains(':') {
        format!("[{ip}]:0")
    } else {
        format!("{ip}:0")
    };
    let (req, reply) = (100usize, 300usize);
    let events = Events::start(&[], &[]);
    let mut server = Traffic::spawn(&[
        "tcp-server",
        &bind,
        &n.to_string(),
        &reply.to_string(),
        "nt-srv",
    ]);
    let port: u16 = server.expect_line("port ").parse().unwrap();
    let target = if ip.contains(':') {
        format!("[{ip}]:{port}")
    } else {
        format!("{ip}:{port}")
    };
    let mut client = Traffic::spawn(&[
        "tcp-client",
        &target,
        &n.to_string(),
        &req.to_string(),
        "nt-cli",
    ]);
    let (srv_pid, cli_pid) = (server.pid() as u64, client.pid() as u64);
    let client_ports: Vec<u64> = client
        .all_lines("local ")
        .iter()
        .map(|p| p.parse().unwrap())
        .collect();
    assert_eq!(client_ports.len(), n);
    client.finish();
    server.finish();
    let all = events.stop();
    let mine = touching(&all, "tcp", port as u64);

    // (action, direction, client port) -> events
    let mut seen: HashMap<(String, String, u64), Vec<&Value>> = HashMap::new();
    for e in &mine {
        let action = str_at(e, &["event", "action"]).unwrap().to_string();
        if action.starts_with("listen-") {
            assert_eq!(u64_at(e, &["process", "pid"]), Some(srv_pid), "{e}");
            continue;
        }
        let dir = str_at(e, &["network", "direction"]).unwrap().to_string();
        // `source` is always the client: the side that initiated.
        let cport = u64_at(e, &["source", "port"]).unwrap();
        assert_eq!(
            u64_at(e, &["destination", "port"]),
            Some(port as u64),
            "{e}"
        );
        seen.entry((action, dir, cport)).or_default().push(e);
    }
    // A slow machine (a QEMU guest) may reuse a client port whose TIME_WAIT is over a
    // second old: each use is then one connection more on that port.
    let mut uses: HashMap<u64, usize> = HashMap::new();
    for p in &client_ports {
        *uses.entry(*p).or_default() += 1;
    }
    for (cport, times) in &uses {
        for (action, dir, pid, name) in [
            ("connection-opened", "egress", cli_pid, "nt-cli"),
            ("connection-closed", "egress", cli_pid, "nt-cli"),
            ("connection-opened", "ingress", srv_pid, "nt-srv"),
            ("connection-closed", "ingress", srv_pid, "nt-srv"),
        ] {
            let key = (action.to_string(), dir.to_string(), *cport);
            let got = seen.get(&key).map(Vec::as_slice).unwrap_or(&[]);
            assert_eq!(got.len(), *times, "{key:?} reported {} times", got.len());
            for e in got {
                assert_eq!(u64_at(e, &["process", "pid"]), Some(pid), "{key:?}: {e}");
                assert_eq!(str_at(e, &["process", "name"]), Some(name), "{key:?}: {e}");
                assert_eq!(str_at(e, &["netta", "owner"]), Some("hook"), "{e}");
                if action == "connection-closed" {
                    assert_eq!(u64_at(e, &["source", "bytes"]), Some(req as u64), "{e}");
                    assert_eq!(
                        u64_at(e, &["destination", "bytes"]),
                        Some(reply as u64),
                        "{e}"
                    );
                    assert!(u64_at(e, &["event", "duration"]).is_some(), "{e}");
                }
            }
        }
    }
    let total: usize = seen.values().map(Vec::len).sum();
    assert_eq!(total, 4 * n, "unexpected extra events for port {port}");
    assert_eq!(
        seen.len(),
        4 * uses.len(),
        "unexpected extra events for port {port}"
    );
}

#[test]
fn short_lived_tcp_is_reported_once_per_socket_with_both_owners() {
    require_ebpf!("short_lived_tcp");
    short_lived("127.0.0.1", 500);
}

#[test]
fn ipv6_loopback_connections_are_reported() {
    require_ebpf!("ipv6_loopback");
    short_lived("::1", 50);
}

/// `sendto` from an unbound (unconnected) socket to `ip`: one flow record with
/// the sender, its port and every datagram counted.
fn unconnected_udp_flow(ip: &str, test: &str) {
    let events = Events::start(&["--udp-idle", "1s"], &[]);
    let at = |port: &str| {
        if ip.contains(':') {
            format!("[{ip}]:{port}")
        } else {
            format!("{ip}:{port}")
        }
    };
    let mut server = Traffic::spawn(&["udp-server", &at("0"), "nt-usrv"]);
    let port: u64 = server.expect_line("port ").parse().unwrap();
    let mut sender =
        Traffic::spawn(&["udp-send", &at(&port.to_string()), "1000", "32", "nt-usend"]);
    let sender_pid = sender.pid() as u64;
    let local: u64 = sender.expect_line("local ").parse().unwrap();
    sender.finish();
    // Past the idle timeout, so the flow is reported before netta stops.
    std::thread::sleep(std::time::Duration::from_millis(2500));
    let all = events.stop();
    server.finish();
    let flows: Vec<_> = touching(&all, "udp", port)
        .into_iter()
        .filter(|e| str_at(e, &["event", "action"]) == Some("udp-flow"))
        .collect();
    assert_eq!(flows.len(), 1, "{test}: {flows:#?}");
    let f = flows[0];
    assert_eq!(u64_at(f, &["source", "port"]), Some(local), "{test}");
    assert_eq!(str_at(f, &["destination", "ip"]), Some(ip), "{test}");
    assert_eq!(u64_at(f, &["network", "packets"]), Some(1000), "{test}");
    assert_eq!(u64_at(f, &["source", "bytes"]), Some(32_000), "{test}");
    assert_eq!(u64_at(f, &["process", "pid"]), Some(sender_pid), "{test}");
    assert_eq!(str_at(f, &["process", "name"]), Some("nt-usend"), "{test}");
    assert_eq!(
        str_at(f, &["network", "direction"]),
        Some("egress"),
        "{test}"
    );
}

#[test]
fn unconnected_udp_sends_become_one_flow_record() {
    require_ebpf!("udp_flow");
    unconnected_udp_flow("127.0.0.1", "udp_flow");
}

#[test]
fn unconnected_udp6_sends_become_one_flow_record() {
    require_ebpf!("udp6_flow");
    unconnected_udp_flow("::1", "udp6_flow");
}

#[test]
fn refused_connect_is_a_failed_connection_with_its_process() {
    require_ebpf!("failed_connect");
    let events = Events::start(&[], &[]);
    let port = free_tcp_port("127.0.0.1");
    let mut c = Traffic::to_loopback("connect", port, &["nt-conn"]);
    let pid = c.pid() as u64;
    assert_eq!(c.expect_line(""), "refused");
    c.finish();
    let all = events.stop();
    let failed: Vec<_> = touching(&all, "tcp", port as u64)
        .into_iter()
        .filter(|e| str_at(e, &["event", "action"]) == Some("connection-failed"))
        .collect();
    assert_eq!(failed.len(), 1, "{failed:#?}");
    assert_eq!(u64_at(failed[0], &["process", "pid"]), Some(pid));
    assert_eq!(str_at(failed[0], &["process", "name"]), Some("nt-conn"));
    assert_eq!(
        u64_at(failed[0], &["destination", "port"]),
        Some(port as u64)
    );
    assert_eq!(str_at(failed[0], &["network", "direction"]), Some("egress"));
    assert!(
        !touching(&all, "tcp", port as u64)
            .iter()
            .any(|e| str_at(e, &["event", "action"]) == Some("connection-opened")),
        "a refused connect must not look opened"
    );
}

#[test]
fn perf_transport_delivers_the_same_events() {
    require_ebpf!("perf_transport");
    let events = Events::start(&["--transport", "perf"], &[]);
    assert!(
        events
            .stderr_lines
            .iter()
            .any(|l| l.contains("perf event array")),
        "{:?}",
        events.stderr_lines
    );
    let port = tcp_round_trips("20", ["10", "10"], ["nt-psrv", "nt-pcli"]);
    let all = events.stop();
    let closed = touching(&all, "tcp", port as u64)
        .into_iter()
        .filter(|e| str_at(e, &["event", "action"]) == Some("connection-closed"))
        .count();
    assert_eq!(closed, 40);
}

/// `netta doctor --json` with `env`: (exit code, report).
fn doctor(env: &[(&str, &str)]) -> (i32, Value) {
    let out = netta_cmd()
        .args(["doctor", "--json"])
        .envs(env.iter().copied())
        .output()
        .expect("run netta doctor");
    let v: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "doctor JSON: {e}: {:?}",
            String::from_utf8_lossy(&out.stdout)
        )
    });
    (out.status.code().unwrap_or(-1), v)
}

#[test]
fn doctor_reports_full_ebpf_mode_with_a_hook_for_every_capability() {
    require_ebpf!("doctor");
    let (code, v) = doctor(&[]);
    assert_eq!(code, 0, "{v:#}");
    assert_eq!(v["full_ebpf"], true, "{v:#}");
    assert_eq!(v["transport"], "ring", "{v:#}");
    assert_eq!(v["btf"], true);
    let hooks = v["hooks"].as_array().unwrap();
    assert_eq!(hooks.len(), 7, "{v:#}");
    for h in hooks {
        assert!(h["chosen"].is_string(), "{h:#}");
    }
    assert!(v["degraded"].as_array().unwrap().is_empty(), "{v:#}");
}

/// Where fexit is refused, UDP destinations come from the cgroup programs, never
/// from syscall tracepoints (which slow every syscall on the machine); those stay
/// as the fallback when the cgroup hooks cannot be used.
#[test]
fn udp_destinations_come_from_cgroup_hooks_with_syscall_tracepoints_as_fallback() {
    require_ebpf!("udp_hooks");
    if !std::path::Path::new("/sys/kernel/tracing/events/sock/sock_send_length").exists() {
        eprintln!("udp_hooks: no sock:sock_send_length here (before 6.3): fexit only");
        return;
    }
    let udp_hook = |v: &Value| -> String {
        v["hooks"]
            .as_array()
            .unwrap()
            .iter()
            .find(|h| h["capability"] == "UDP flows")
            .and_then(|h| h["chosen"].as_str())
            .unwrap_or_else(|| panic!("no UDP hook: {v:#}"))
            .to_string()
    };
    let (_, v) = doctor(&[("NETTA_DISABLE_HOOKS", "fexit")]);
    assert_eq!(
        udp_hook(&v),
        "tracepoint:sock:sock_send_length+cgroup:sendmsg4+cgroup:sendmsg6",
        "{v:#}"
    );
    let (_, v) = doctor(&[("NETTA_DISABLE_HOOKS", "fexit,cgroup")]);
    let hook = udp_hook(&v);
    assert!(hook.contains("syscalls:sys_enter_sendto"), "{v:#}");
    let (code, v) = doctor(&[]);
    assert_eq!(code, 0, "{v:#}");
    assert!(!udp_hook(&v).contains("syscalls:"), "{v:#}");
}

/// Without the process records only process identity is lost, and doctor says
/// so; the connection hooks stay.
#[test]
fn without_the_exec_tracepoint_only_process_identity_degrades() {
    require_ebpf!("process_identity_degraded");
    let (code, v) = doctor(&[("NETTA_DISABLE_HOOKS", "tracepoint:sched:sched_process_exec")]);
    assert_eq!(code, 1, "{v:#}");
    let degraded = v["degraded"].as_array().unwrap();
    assert_eq!(degraded.len(), 1, "{v:#}");
    assert_eq!(degraded[0]["capability"], "process identity", "{v:#}");
    assert!(
        degraded[0]["effect"]
            .as_str()
            .is_some_and(|w| w.contains("/proc")),
        "{v:#}"
    );
    let mode = v["mode"].as_str().unwrap_or("");
    assert!(mode.starts_with("eBPF, ring buffer"), "{v:#}");
}

#[test]
fn a_missing_hook_degrades_one_capability_with_a_reason() {
    require_ebpf!("degraded_hook");
    // Rule out every hook that can name an accepted socket's owner.
    let env = [(
        "NETTA_DISABLE_HOOKS",
        "fexit:inet_csk_accept,tracepoint:sock:sock_recv_length",
    )];
    let (code, v) = doctor(&env);
    assert_eq!(code, 1, "{v:#}");
    assert_eq!(v["full_ebpf"], false);
    let degraded = v["degraded"].as_array().unwrap();
    assert_eq!(degraded.len(), 1, "{v:#}");
    assert_eq!(degraded[0]["capability"], "accepted-socket owner");
    let reason = degraded[0]["reason"].as_str().unwrap();
    assert!(
        reason.contains("disabled by NETTA_DISABLE_HOOKS"),
        "{reason}"
    );
    assert!(!reason.contains('\n'), "{reason}");
    // The agent still runs in eBPF mode and says what it lost, in one line.
    let mut child = netta_cmd()
        .arg("events")
        .envs(env)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = std::io::BufReader::new(child.stderr.take().unwrap());
    let mut lines = Vec::new();
    for l in std::io::BufRead::lines(stderr) {
        let l = l.unwrap();
        let done = l.contains("netta: standalone");
        lines.push(l);
        if done {
            break;
        }
    }
    // SAFETY: signalling our own child.
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let _ = child.wait();
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("netta: eBPF degraded: accepted-socket owner")),
        "{lines:?}"
    );
    assert_eq!(
        lines.last().map(String::as_str),
        Some("netta: standalone (eBPF, ring buffer)"),
        "{lines:?}"
    );
}
