//! Open connections seen as they move: during a paced 10 s transfer on loopback
//! (about 8 MB/s), `netta events --update-interval 2s` reports the sender's
//! socket in `connection-updated` lines with growing totals and matching deltas,
//! and `large-outbound` (threshold lowered to 20 MiB in a rules file) fires
//! before the connection closes. Needs root (eBPF).
use std::time::Duration;

use netta_tests::*;

const RATE: &str = "8000000";
const SECONDS: &str = "10";
const NAME: &str = "nt-paced";

fn action(v: &Value) -> Option<&str> {
    str_at(v, &["event", "action"])
}

#[test]
fn open_transfer_reports_updates_and_large_outbound_before_close() {
    require_ebpf!("live_updates");
    let rules = std::env::temp_dir().join(format!("netta-rules-live-{}.toml", std::process::id()));
    std::fs::write(&rules, "[large_outbound]\nmin_bytes = \"20MiB\"\n").unwrap();
    let rules_arg = rules.display().to_string();
    let mut events = Events::start(&["--rules", &rules_arg], &["--update-interval", "2s"]);
    let mut server = Traffic::spawn(&["tcp-server", "127.0.0.1:0", "1", "0", "nt-sink"]);
    let sport: u16 = server.expect_line("port ").parse().unwrap();
    let mut sender = Traffic::to_loopback("paced-send", sport, &[RATE, SECONDS, NAME]);
    let port: u64 = sender.expect_line("local ").parse().unwrap();
    let sent: u64 = sender.expect_line("sent ").parse().unwrap();
    sender.finish();
    server.finish();
    let ours = |v: &Value| {
        u64_at(v, &["source", "port"]) == Some(port)
            && u64_at(v, &["destination", "port"]) == Some(u64::from(sport))
    };
    let closed = |v: &Value| action(v) == Some("connection-closed") && ours(v);
    let seen_close = events.wait_until(Duration::from_secs(20), |all| all.iter().any(closed));
    let all = events.stop();
    let _ = std::fs::remove_file(&rules);
    assert!(seen_close, "no connection-closed for port {port}");
    let close_at = all.iter().position(closed).unwrap();

    // The sender's updates, before its close, totals growing, deltas adding up.
    let updates: Vec<&Value> = all[..close_at]
        .iter()
        .filter(|v| action(v) == Some("connection-updated") && ours(v))
        .filter(|v| str_at(v, &["process", "name"]) == Some(NAME))
        .collect();
    for u in &updates {
        eprintln!(
            "update: source.bytes {:?} delta {:?} rtt {:?}",
            u64_at(u, &["source", "bytes"]),
            u64_at(u, &["netta", "delta", "source_bytes"]),
            u64_at(u, &["netta", "rtt_us"])
        );
        assert_eq!(str_at(u, &["network", "direction"]), Some("egress"), "{u}");
    }
    assert!(
        updates.len() >= 3,
        "{} connection-updated lines for port {port} before its close",
        updates.len()
    );
    let mut prev = 0;
    for u in &updates {
        let total = u64_at(u, &["source", "bytes"]).unwrap_or_else(|| panic!("{u}"));
        let delta = u64_at(u, &["netta", "delta", "source_bytes"]).unwrap_or_else(|| panic!("{u}"));
        assert!(total > prev, "totals grow: {prev} then {total}");
        assert_eq!(
            delta,
            total - prev,
            "the delta is the growth since the last update: {u}"
        );
        assert!(total <= sent, "no more than was sent ({sent}): {u}");
        prev = total;
    }
    let close = &all[close_at];
    assert_eq!(u64_at(close, &["source", "bytes"]), Some(sent), "{close}");

    // large-outbound on the open connection: in the stream before the close,
    // and stamped while the transfer was still going.
    let incident = format!("127.0.0.1:{port}->127.0.0.1:{sport}");
    let alert_at = all
        .iter()
        .position(|v| {
            str_at(v, &["rule", "id"]) == Some("large-outbound")
                && str_at(v, &["netta", "incident"]) == Some(incident.as_str())
        })
        .unwrap_or_else(|| panic!("no large-outbound alert for {incident}"));
    assert!(alert_at < close_at, "the alert came after the close");
    let alert = &all[alert_at];
    let stamp = |v: &Value| humantime::parse_rfc3339(str_at(v, &["@timestamp"]).unwrap()).unwrap();
    assert!(stamp(alert) < stamp(close), "alert {alert}\nclose {close}");
    let at_alert = u64_at(alert, &["netta", "evidence", "bytes_sent"]).unwrap();
    assert!(
        at_alert >= 20 << 20 && at_alert < sent,
        "alerted at {at_alert} bytes of {sent}"
    );
}
