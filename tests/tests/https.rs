//! The `https://` sink against a real TLS receiver: a certificate made for this
//! test by a private CA (rcgen), trusted through `#ca=FILE`; a receiver whose
//! certificate another CA signed is refused with one clear log line, and never
//! sent anything in plaintext.
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use netta::api::sink::SinkSpec;
use netta_tests::http_receiver::{HttpReceiver, Pki};
use netta_tests::{run_netta, temp_dir, AgentProc};

#[path = "support/sink_under_test.rs"]
mod sink_under_test;
use sink_under_test::{opened, start_sink, stop_sink};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_sink_delivers_to_a_receiver_signed_by_a_private_ca() {
    let dir = temp_dir("https-ok");
    let ca = dir.join("ca.pem");
    let pki = Pki::new("ok");
    pki.write_ca(&ca);
    let rx = HttpReceiver::start_tls(&pki);
    // By name and by address: the certificate names both.
    let mut next = 1u16;
    for host in ["localhost", "127.0.0.1"] {
        let url = format!(
            "https://{host}:{}/ingest#age=50ms,ca={}",
            rx.addr.port(),
            ca.display()
        );
        let spec: SinkSpec = url.parse().unwrap();
        assert_eq!(spec.to_string(), url, "parses back");
        let (tx, stats, stop, task, mut maker) = start_sink(spec, 1024);
        let ids = next..next + 200;
        for id in ids.clone() {
            tx.send(maker.line(&opened(id))).await.unwrap();
        }
        let deadline = Instant::now() + Duration::from_secs(30);
        while stats.written.load(Ordering::Relaxed) < 200 {
            assert!(Instant::now() < deadline, "{host}: {stats:?}");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        stop_sink(stop, task).await;
        assert_eq!(stats.dropped.load(Ordering::Relaxed), 0, "{host}");
        next += 200;
    }
    let got: Vec<u16> = rx
        .lines()
        .iter()
        .map(|l| netta_tests::parse_event_line(l))
        .map(|v| v["source"]["port"].as_u64().unwrap() as u16)
        .collect();
    assert_eq!(
        got,
        (1..next).collect::<Vec<_>>(),
        "every line once, in order"
    );
    assert!(rx.tls_errors().is_empty(), "{:?}", rx.tls_errors());
    assert_eq!(rx.plaintext_attempts(), 0);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn https_sink_refuses_a_server_another_ca_signed() {
    let dir = temp_dir("https-wrong-ca");
    let ours = Pki::new("trusted");
    ours.write_ca(&dir.join("ca.pem"));
    // The receiver's certificate comes from a CA netta was not told to trust.
    let rx = HttpReceiver::start_tls(&Pki::new("other"));
    let sink = format!(
        "https://127.0.0.1:{}/ingest#age=50ms,ca={}",
        rx.addr.port(),
        dir.join("ca.pem").display()
    );
    // Polling /proc is enough to have records to send: a listener the test opens.
    let mut agent = AgentProc::with_sinks(
        &["--no-ebpf", "--poll-interval", "200ms"],
        &dir.join("state"),
        &[&sink],
    );
    let _listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let line = agent.wait_line("invalid peer certificate");
    assert!(
        line.contains(&format!(
            "sink https://127.0.0.1:{}/ingest: cannot connect: TLS handshake with 127.0.0.1 \
             failed: invalid peer certificate: UnknownIssuer",
            rx.addr.port()
        )),
        "{line}"
    );
    agent.signal(libc::SIGTERM);
    assert!(rx.lines().is_empty(), "nothing delivered: {:?}", rx.lines());
    assert_eq!(rx.plaintext_attempts(), 0, "no plaintext fallback");
    assert!(!rx.tls_errors().is_empty(), "the handshake was tried");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn an_unreadable_ca_file_is_a_one_line_startup_error() {
    let dir = temp_dir("https-no-ca");
    let missing = dir.join("missing.pem");
    let empty = dir.join("empty.pem");
    std::fs::write(&empty, "not a certificate\n").unwrap();
    for (ca, why) in [(&missing, "No such file"), (&empty, "no PEM certificate")] {
        let sink = format!("https://127.0.0.1:9/#ca={}", ca.display());
        let (ok, _, err) = run_netta(&["--no-ebpf", "agent", "--no-store", "--sink", &sink]);
        assert!(!ok, "{err}");
        let lines: Vec<&str> = err.lines().collect();
        assert_eq!(lines.len(), 1, "one line: {err}");
        assert!(
            lines[0].starts_with(&format!(
                "netta: sink https://127.0.0.1:9/: CA file {}",
                ca.display()
            )) && lines[0].contains(why),
            "{err}"
        );
    }
    std::fs::remove_dir_all(&dir).unwrap();
}
