//! `netta agent` as a service: sinks, metrics, config file, signals, and the
//! generated completions and man page.
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use netta_tests::*;

fn scrape(addr: &str) -> String {
    let mut s = TcpStream::connect(addr).expect("metrics endpoint");
    write!(s, "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    let mut body = String::new();
    s.read_to_string(&mut body).unwrap();
    body.split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default()
}

fn counter(text: &str, prefix: &str) -> u64 {
    text.lines()
        .filter(|l| l.starts_with(prefix))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum::<f64>() as u64
}

#[test]
fn agent_feeds_a_tcp_sink_serves_metrics_and_stops_on_sigterm() {
    require_ebpf!("agent");
    let (sink, lines) = tcp_line_receiver();
    let metrics = format!("127.0.0.1:{}", free_tcp_port("127.0.0.1"));
    let mut child = netta_cmd()
        .args([
            "agent",
            "--sink",
            &format!("tcp://{sink}"),
            "--metrics",
            &metrics,
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut err = BufReader::new(child.stderr.take().unwrap()).lines();
    let ready = err.next().unwrap().unwrap();
    assert!(
        ready.starts_with("netta: agent ready (eBPF, ring buffer)"),
        "{ready}"
    );
    let before = counter(
        &scrape(&metrics),
        "netta_connections_total{event=\"closed\"",
    );

    let port = tcp_round_trips("5", ["10", "10"], ["nt-asrv", "nt-acli"]);

    let deadline = Instant::now() + Duration::from_secs(10);
    let text = loop {
        let t = scrape(&metrics);
        if counter(&t, "netta_connections_total{event=\"closed\"") >= before + 10 {
            break t;
        }
        assert!(
            Instant::now() < deadline,
            "closed-connection counter did not move:\n{t}"
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    assert_no_kernel_address("the metrics", &text);
    if let Ok(mut p) = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
    {
        p.stdin.take().unwrap().write_all(text.as_bytes()).unwrap();
        let out = p.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "promtool: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    } else {
        assert!(
            std::env::var("NETTA_REQUIRE_EBPF").is_err(),
            "promtool missing (apt-get install prometheus)"
        );
    }
    // SAFETY: signalling our own child.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let start = Instant::now();
    let status = child.wait().unwrap();
    assert!(status.success(), "{status}");
    assert!(start.elapsed() < Duration::from_secs(5));
    let got: Vec<Value> = lines.try_iter().map(|l| parse_event_line(&l)).collect();
    let closed = got
        .iter()
        .filter(|e| {
            str_at(e, &["event", "action"]) == Some("connection-closed")
                && u64_at(e, &["destination", "port"]) == Some(port as u64)
        })
        .count();
    assert_eq!(closed, 10, "both ends of 5 connections reached the sink");
}

#[test]
fn a_bad_config_file_is_a_usage_error_with_its_line() {
    let dir = std::env::temp_dir().join(format!("netta-cfg-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let bad = dir.join("netta.toml");
    std::fs::write(
        &bad,
        "udp_idle = \"5s\"\n[agent]\nsinks = [\"gopher://x\"]\n",
    )
    .unwrap();
    let out = netta_cmd()
        .args(["--config", bad.to_str().unwrap(), "agent"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("line 3") && err.contains("agent.sinks"),
        "{err}"
    );
    let missing = netta_cmd()
        .args(["--config", "/nonexistent/netta.toml", "list"])
        .output()
        .unwrap();
    assert_eq!(missing.status.code(), Some(2));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn completions_and_man_page_come_from_the_cli_definition() {
    for (shell, marker) in [
        ("bash", "_netta()"),
        ("zsh", "#compdef netta"),
        ("fish", "complete -c netta"),
    ] {
        let out = netta_cmd().args(["completions", shell]).output().unwrap();
        assert!(out.status.success());
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(text.contains(marker), "{shell}");
        for sub in ["events", "agent", "monitor", "export"] {
            assert!(text.contains(sub), "{shell} completion lacks {sub}");
        }
    }
    let man = netta_cmd().arg("manpage").output().unwrap();
    let text = String::from_utf8_lossy(&man.stdout);
    assert!(text.contains(".TH netta 1"), "{text}");
    assert!(
        text.contains("agent") && text.contains("\\-\\-transport"),
        "{text}"
    );
    let v = netta_cmd().arg("--version").output().unwrap();
    assert!(String::from_utf8_lossy(&v.stdout).contains("eBPF object"));
}
