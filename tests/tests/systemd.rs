//! `netta agent` under systemd's notification protocol: a test binds the
//! NOTIFY_SOCKET, and READY=1 arrives once the first event can be delivered;
//! WATCHDOG=1 follows when WATCHDOG_USEC asks for it, STOPPING=1 at the end.
use std::os::unix::net::UnixDatagram;
use std::process::Stdio;
use std::time::{Duration, Instant};

use netta_tests::servers::private_dir;
use netta_tests::*;

fn next_message(sock: &UnixDatagram, timeout: Duration) -> Option<String> {
    sock.set_read_timeout(Some(timeout)).unwrap();
    let mut buf = [0u8; 4096];
    let n = sock.recv(&mut buf).ok()?;
    Some(String::from_utf8_lossy(&buf[..n]).to_string())
}

#[test]
fn ready_comes_when_events_flow_then_watchdog_then_stopping() {
    require_ebpf!("systemd_notify");
    let dir = private_dir("notify");
    let path = dir.join("notify.sock");
    let notify = UnixDatagram::bind(&path).unwrap();
    let (sink, lines) = tcp_line_receiver();
    let mut child = netta_cmd()
        // No store: the machine's /var/lib/netta is not this test's.
        .args(["agent", "--no-store", "--sink", &format!("tcp://{sink}")])
        .env("NOTIFY_SOCKET", &path)
        .env("WATCHDOG_USEC", "400000")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let ready = next_message(&notify, Duration::from_secs(60)).expect("no READY=1");
    assert!(ready.lines().any(|l| l == "READY=1"), "{ready:?}");
    assert!(ready.contains("STATUS=eBPF"), "{ready:?}");
    // Right after READY=1, a connection is seen and delivered.
    let port = free_tcp_port("127.0.0.1");
    let mut server = Traffic::to_loopback("tcp-server", port, &["1", "1", "nt-nsrv"]);
    let port: u16 = server.expect_line("port ").parse().unwrap();
    Traffic::to_loopback("tcp-client", port, &["1", "1", "nt-ncli"]).finish();
    server.finish();
    let deadline = Instant::now() + Duration::from_secs(20);
    let seen = loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let Ok(l) = lines.recv_timeout(left) else {
            break false;
        };
        let v = parse_event_line(&l);
        if str_at(&v, &["event", "action"]) == Some("connection-opened")
            && u64_at(&v, &["destination", "port"]) == Some(u64::from(port))
        {
            break true;
        }
    };
    assert!(seen, "the first connection after READY=1 was not delivered");
    let wd = next_message(&notify, Duration::from_secs(5)).expect("no WATCHDOG=1");
    assert_eq!(wd, "WATCHDOG=1");
    // SAFETY: signalling our own child.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let mut stopping = false;
    while let Some(m) = next_message(&notify, Duration::from_secs(5)) {
        if m == "STOPPING=1" {
            stopping = true;
            break;
        }
    }
    assert!(stopping, "no STOPPING=1");
    assert!(child.wait().unwrap().success());
    let _ = std::fs::remove_dir_all(&dir);
}
