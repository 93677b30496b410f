//! `netta agent` as a service: sinks, metrics, config file, signals, and the
//! generated completions and man page.
use std::io::{Read, Write};
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
    // Its own store: the machine's /var/lib/netta may hold another netta's.
    let state = temp_dir("agent-sink-state");
    let mut child = spawn_netta(
        &[
            "agent",
            "--sink",
            &format!("tcp://{sink}"),
            "--metrics",
            &metrics,
            "--state-dir",
            state.to_str().unwrap(),
        ],
        Stdio::null(),
    );
    let (ready, _stderr) = first_line(child.stderr.take());
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
    let _ = std::fs::remove_dir_all(&state);
}

#[test]
fn a_bad_config_file_is_a_usage_error_with_its_line() {
    let dir = temp_dir("cfg");
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
    assert!(text.contains("\n.TH NETTA 8 "), "{text}");
    assert!(
        text.contains("agent") && text.contains("\\-\\-transport"),
        "{text}"
    );
    let v = netta_cmd().arg("--version").output().unwrap();
    assert!(String::from_utf8_lossy(&v.stdout).contains("eBPF object"));
}

/// man's text without its overstrike (`N\x08N` for bold, `_\x08x` for italics).
fn plain(text: &[u8]) -> String {
    let mut out: Vec<char> = Vec::new();
    for c in String::from_utf8_lossy(text).chars() {
        if c == '\x08' {
            out.pop();
        } else {
            out.push(c);
        }
    }
    out.into_iter().collect()
}

/// The commands `netta --help` lists (not `help`).
fn commands() -> Vec<String> {
    let out = netta_cmd().arg("--help").output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    text.split("Commands:")
        .nth(1)
        .expect("a Commands section")
        .lines()
        .skip(1)
        .take_while(|l| l.starts_with("  "))
        .filter_map(|l| l.split_whitespace().next().map(str::to_string))
        .filter(|c| c != "help")
        .collect()
}

/// `packaging/install.sh` installs one section-8 page per command, each with
/// EXIT STATUS, ENVIRONMENT and FILES, and man-db renders every one of them
/// without a warning (the checks lintian runs).
#[test]
fn every_command_has_a_man_page_that_installs_and_renders_cleanly() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let stage = temp_dir("install");
    let out = Command::new("sh")
        .arg(root.join("packaging/install.sh"))
        .env("DESTDIR", &stage)
        .env("PREFIX", "/usr")
        .env("NETTA", netta_bin())
        .output()
        .expect("sh");
    assert!(
        out.status.success(),
        "install.sh: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let man8 = stage.join("usr/share/man/man8");
    let mut want = vec!["netta".to_string()];
    want.extend(commands().iter().map(|c| format!("netta-{c}")));
    assert!(want.len() > 10, "{want:?}");
    let unit = std::fs::read_to_string(stage.join("etc/systemd/system/netta.service")).unwrap();
    assert!(unit.contains("ExecStart=/usr/bin/netta agent"), "{unit}");
    assert!(stage.join("etc/netta/netta.toml").exists());
    for page in &want {
        let file = man8.join(format!("{page}.8.gz"));
        assert!(file.exists(), "no page for {page}");
        // man-db's own check: warnings from groff and man on stderr.
        let r = Command::new("man")
            .args(["--warnings", "-E", "UTF-8", "-l", "-Tutf8"])
            .arg(&file)
            .env("LC_ALL", "C.UTF-8")
            .env("MANWIDTH", "80")
            .env("MANROFFSEQ", "")
            .output()
            .expect("man (apt-get install man-db)");
        let err = String::from_utf8_lossy(&r.stderr);
        assert!(r.status.success() && err.trim().is_empty(), "{page}: {err}");
        let text = plain(&r.stdout);
        for section in [
            "NAME",
            "SYNOPSIS",
            "EXIT STATUS",
            "ENVIRONMENT",
            "FILES",
            "SEE ALSO",
        ] {
            assert!(
                text.lines().any(|l| l == section),
                "{page} has no {section} section:\n{text}"
            );
        }
        assert!(
            text.contains(&format!("{}(8)", page.to_uppercase())),
            "{page}"
        );
    }
    // The real defaults, and what doctor's status means.
    let read = |page: &str| {
        let r = Command::new("man")
            .args(["-l"])
            .arg(man8.join(format!("{page}.8.gz")))
            .env("MANWIDTH", "200")
            .output()
            .unwrap();
        plain(&r.stdout)
    };
    let agent = read("netta-agent");
    for s in [
        "/etc/netta/netta.toml",
        "/run/netta/netta.sock",
        "/var/lib/netta/history.db",
        "NOTIFY_SOCKET",
        "NETTA_API",
    ] {
        assert!(agent.contains(s), "netta-agent(8) lacks {s}");
    }
    assert!(read("netta-doctor").contains("Full eBPF mode"));
    let events = read("netta-events");
    assert!(events.contains("--dport") && events.contains("started the connection"));
    let _ = std::fs::remove_dir_all(&stage);
}
