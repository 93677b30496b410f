//! `netta list` against `ss -tan` on the same machine, with eBPF and in the /proc
//! fallback (root with every capability dropped, so eBPF genuinely cannot load).
use std::collections::HashSet;
use std::process::Command;

use netta_tests::*;

type Row = (String, String, u16, String, u16);

fn norm_ip(ip: &str) -> String {
    let ip = ip.trim_start_matches('[').trim_end_matches(']');
    let ip = ip.split('%').next().unwrap_or(ip);
    let ip = ip
        .strip_prefix("::ffff:")
        .filter(|v4| v4.contains('.'))
        .unwrap_or(ip);
    match ip {
        "*" => "0.0.0.0".into(),
        other => other.to_string(),
    }
}

fn split_addr(a: &str) -> (String, u16) {
    let (ip, port) = a.rsplit_once(':').expect("address with port");
    (norm_ip(ip), port.parse().unwrap_or(0))
}

fn ss_state(s: &str) -> String {
    match s {
        "ESTAB" => "ESTABLISHED",
        "LISTEN" => "LISTENING",
        "SYN-SENT" => "SYN_SENT",
        "SYN-RECV" => "SYN_RECV",
        "FIN-WAIT-1" => "FIN_WAIT1",
        "FIN-WAIT-2" => "FIN_WAIT2",
        "TIME-WAIT" => "TIME_WAIT",
        "CLOSE-WAIT" => "CLOSE_WAIT",
        "LAST-ACK" => "LAST_ACK",
        "CLOSING" => "CLOSING",
        "UNCONN" | "CLOSE" => "CLOSE",
        other => other,
    }
    .to_string()
}

/// (state, local ip, local port, remote ip, remote port) of every TCP socket `ss` sees.
fn ss_rows() -> HashSet<Row> {
    let out = Command::new("ss").args(["-tanH"]).output().expect("run ss");
    assert!(out.status.success());
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            if f.len() < 5 {
                return None;
            }
            let (lip, lport) = split_addr(f[3]);
            let (rip, rport) = split_addr(f[4]);
            let rip = if rport == 0 { "0.0.0.0".into() } else { rip };
            Some((ss_state(f[0]), lip, lport, rip, rport))
        })
        .collect()
}

fn netta_rows(list: &Value) -> HashSet<Row> {
    list.as_array()
        .expect("list --json gives an array")
        .iter()
        .filter(|r| str_at(r, &["protocol"]) == Some("tcp"))
        .map(|r| {
            let (rip, rport) = match r.get("remote") {
                Some(Value::Null) | None => ("0.0.0.0".to_string(), 0),
                Some(rem) => (
                    str_at(rem, &["ip"]).unwrap().to_string(),
                    u64_at(rem, &["port"]).unwrap() as u16,
                ),
            };
            (
                str_at(r, &["state"]).unwrap().to_string(),
                str_at(r, &["local", "ip"]).unwrap().to_string(),
                u64_at(r, &["local", "port"]).unwrap() as u16,
                rip,
                rport,
            )
        })
        .collect()
}

/// Runs `netta list --json` (optionally with every capability dropped) between two
/// `ss` reads, and checks netta shows every socket both `ss` reads agree on.
fn agrees_with_ss(drop_caps: bool) -> (Value, String) {
    let mut server = Traffic::spawn(&["tcp-server", "127.0.0.1:0", "1", "0", "nt-lsrv"]);
    let port: u16 = server.expect_line("port ").parse().unwrap();
    let mut held = Traffic::to_loopback("hold", port, &["1", "nt-hold"]);
    held.expect_line("held");

    let before = ss_rows();
    let mut cmd = if drop_caps {
        let mut c = Command::new("setpriv");
        c.env("NETTA_API", isolated_api());
        c.args(["--bounding-set", "-all", "--inh-caps", "-all", "--"])
            .arg(netta_bin());
        c
    } else {
        netta_cmd()
    };
    let out = cmd
        .args(["list", "--json"])
        .output()
        .expect("run netta list");
    let after = ss_rows();
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(out.status.success(), "netta list failed: {stderr}");
    let list: Value = serde_json::from_slice(&out.stdout).expect("JSON from netta list");
    let shown = netta_rows(&list);

    let stable: Vec<&Row> = before.intersection(&after).collect();
    let missing: Vec<&&Row> = stable.iter().filter(|r| !shown.contains(**r)).collect();
    assert!(
        missing.is_empty(),
        "netta list lacks sockets ss shows: {missing:?}"
    );
    // Our own sockets must be among them, so the check is never vacuous.
    let ours = [("LISTENING", port, 0u16), ("ESTABLISHED", port, 1)];
    for (state, p, _) in ours {
        assert!(
            shown.iter().any(|r| r.0 == state && (r.2 == p || r.4 == p)),
            "our {state} socket on port {p} is not listed"
        );
    }
    drop(held);
    drop(server);
    (list, stderr)
}

#[test]
fn list_json_agrees_with_ss_with_ebpf() {
    require_ebpf!("list_agrees_with_ss");
    let (list, stderr) = agrees_with_ss(false);
    assert!(!stderr.contains("eBPF unavailable"), "{stderr}");
    // Owners of our own sockets are known.
    let named = list
        .as_array()
        .unwrap()
        .iter()
        .any(|r| str_at(r, &["process"]) == Some("nt-hold"));
    assert!(named, "the holder's connection is not attributed");
}

#[test]
fn without_ebpf_the_reason_is_printed_and_list_still_works() {
    if !is_root() {
        eprintln!("SKIP fallback: needs root to drop capabilities with setpriv");
        return;
    }
    let (_, stderr) = agrees_with_ss(true);
    let reasons: Vec<&str> = stderr
        .lines()
        .filter(|l| l.contains("eBPF unavailable"))
        .collect();
    assert_eq!(reasons.len(), 1, "one line of reason: {stderr}");
    assert!(
        reasons[0].contains("not permitted to load eBPF"),
        "{stderr}"
    );
}
