//! The Prometheus endpoint over a real agent: scrape, make real loopback TCP
//! connections, scrape again and see the counters move; check the output with
//! `promtool check metrics` when it is installed.
//!
//! Driven through the library (`netta::metrics::serve_on`), with eBPF when it can
//! load (root and an embedded object) and /proc polling otherwise, plus a run with
//! polling forced.
use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::process::Command;
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use netta::api::metrics;
use netta::api::{Agent, AgentOptions, Mode, Shared};
use netta_tests::{assert_no_kernel_address, ebpf_available, have_tool, run_with_stdin};

const CONNS: usize = 20;
const PAYLOAD: usize = 1000;

struct Running {
    rt: tokio::runtime::Runtime,
    agent: Agent,
    addr: SocketAddr,
    stop: tokio::sync::watch::Sender<bool>,
    server: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl Running {
    fn start(opts: AgentOptions) -> Running {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(4)
            .enable_all()
            .build()
            .expect("tokio runtime");
        let (agent, addr, stop, server) = rt.block_on(async {
            let agent = Agent::start(opts).await;
            let listener = metrics::bind("127.0.0.1:0".parse().unwrap())
                .await
                .expect("bind metrics on 127.0.0.1:0");
            let addr = listener.local_addr().unwrap();
            let (stop, stop_rx) = tokio::sync::watch::channel(false);
            let shared: Arc<Shared> = agent.shared.clone();
            let server = tokio::spawn(metrics::serve_on(listener, shared, stop_rx));
            (agent, addr, stop, server)
        });
        Running {
            rt,
            agent,
            addr,
            stop,
            server,
        }
    }

    fn stop(self) {
        let Running {
            rt,
            agent,
            stop,
            server,
            ..
        } = self;
        rt.block_on(async {
            stop.send(true).unwrap();
            tokio::time::timeout(Duration::from_secs(10), server)
                .await
                .expect("metrics server stops on shutdown")
                .expect("server task")
                .expect("server result");
            agent.shutdown().await;
        });
    }
}

struct Reply {
    status: String,
    headers: String,
    body: String,
}

impl Reply {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.lines().find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.trim().eq_ignore_ascii_case(name).then(|| v.trim())
        })
    }
}

/// Sends `request` as is and reads the reply until the server closes.
fn http(addr: SocketAddr, request: &[u8]) -> Reply {
    let mut s = TcpStream::connect(addr).expect("connect to metrics");
    s.set_read_timeout(Some(Duration::from_secs(15))).unwrap();
    s.write_all(request).expect("send request");
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).expect("read reply");
    let raw = String::from_utf8(raw).expect("utf-8 reply");
    let (head, body) = raw.split_once("\r\n\r\n").expect("reply head");
    let (status, headers) = head.split_once("\r\n").unwrap_or((head, ""));
    Reply {
        status: status.to_string(),
        headers: headers.to_string(),
        body: body.to_string(),
    }
}

fn get(addr: SocketAddr, path: &str, accept: Option<&str>) -> Reply {
    let accept = accept
        .map(|a| format!("Accept: {a}\r\n"))
        .unwrap_or_default();
    http(
        addr,
        format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\n{accept}Connection: close\r\n\r\n")
            .as_bytes(),
    )
}

fn scrape(addr: SocketAddr) -> String {
    let r = get(addr, "/metrics", None);
    assert_eq!(r.status, "HTTP/1.1 200 OK", "{}\n{}", r.headers, r.body);
    assert_eq!(
        r.header("content-type"),
        Some("text/plain; version=0.0.4; charset=utf-8")
    );
    assert_eq!(r.header("connection"), Some("close"));
    assert_eq!(
        r.header("content-length").and_then(|v| v.parse().ok()),
        Some(r.body.len())
    );
    r.body
}

/// Sum of the samples of `name` whose labels include all of `want`.
fn total(text: &str, name: &str, want: &[(&str, &str)]) -> f64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let (series, value) = l.rsplit_once(' ')?;
            let (n, labels) = match series.find('{') {
                Some(i) => (&series[..i], &series[i + 1..series.len() - 1]),
                None => (series, ""),
            };
            if n != name {
                return None;
            }
            let have: Vec<&str> = labels.split(',').collect();
            want.iter()
                .all(|(k, v)| have.contains(&format!("{k}=\"{v}\"").as_str()))
                .then(|| value.parse::<f64>().ok())
                .flatten()
        })
        .sum()
}

/// Scrapes until `cond` holds or `timeout` passes; returns the last scrape.
fn scrape_until(
    addr: SocketAddr,
    timeout: Duration,
    cond: impl Fn(&str) -> bool,
) -> (bool, String) {
    let deadline = Instant::now() + timeout;
    loop {
        let text = scrape(addr);
        if cond(&text) {
            return (true, text);
        }
        if Instant::now() >= deadline {
            return (false, text);
        }
        thread::sleep(Duration::from_millis(200));
    }
}

/// `CONNS` loopback TCP connections with `PAYLOAD` bytes each way, held open
/// until `hold` returns, then closed by the client first (the server side then
/// leaves the table in both modes; the client side lingers in TIME_WAIT).
fn connections(hold: impl FnOnce()) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind test listener");
    let to = listener.local_addr().unwrap();
    let server = thread::spawn(move || {
        let mut accepted = Vec::new();
        for _ in 0..CONNS {
            let (mut s, _) = listener.accept().expect("accept");
            s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
            let mut buf = [0u8; PAYLOAD];
            s.read_exact(&mut buf).expect("server read");
            s.write_all(&buf).expect("server write");
            accepted.push(s);
        }
        // Wait for each client's FIN, then close.
        for mut s in accepted {
            let mut rest = Vec::new();
            let _ = s.read_to_end(&mut rest);
            drop(s);
        }
    });
    let mut clients = Vec::new();
    for _ in 0..CONNS {
        let mut c = TcpStream::connect(to).expect("connect to test listener");
        c.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        c.write_all(&[7u8; PAYLOAD]).expect("client write");
        let mut back = [0u8; PAYLOAD];
        c.read_exact(&mut back).expect("client read");
        clients.push(c);
    }
    hold();
    for c in clients {
        let _ = c.shutdown(Shutdown::Both);
    }
    server.join().expect("server thread");
}

fn promtool(text: &str, what: &str) {
    if !have_tool("promtool") {
        let required = std::env::var("NETTA_REQUIRE_PEERS").is_ok_and(|v| v == "1");
        assert!(
            !required,
            "{what}: promtool is required (NETTA_REQUIRE_PEERS=1) but not on PATH; install the Debian package `prometheus`"
        );
        eprintln!(
            "SKIP {what}: promtool check (promtool not installed; Debian package `prometheus`)"
        );
        return;
    }
    let out = run_with_stdin(Command::new("promtool").args(["check", "metrics"]), text);
    assert!(
        out.status.success(),
        "{what}: promtool check metrics failed ({}):\n{}{}\n--- input ---\n{text}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    eprintln!("{what}: promtool check metrics: ok");
}

fn exercise(what: &str, opts: AgentOptions, want_ebpf: bool) {
    let run = Running::start(opts);
    let addr = run.addr;
    let mode = run.agent.mode();
    eprintln!("{what}: agent mode {}", mode.describe());
    if want_ebpf {
        assert!(
            matches!(mode, Mode::Ebpf(_)),
            "{what}: eBPF expected, got {mode:?}"
        );
    }
    let mode_label = match mode {
        Mode::Ebpf(_) => "ebpf",
        Mode::Polling(_) => "polling",
    };

    // The small HTTP surface.
    let index = get(addr, "/", None);
    assert_eq!(index.status, "HTTP/1.1 200 OK");
    assert!(index.body.contains("/metrics"), "{}", index.body);
    assert_eq!(get(addr, "/nope", None).status, "HTTP/1.1 404 Not Found");
    let post = http(addr, b"POST /metrics HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_eq!(post.status, "HTTP/1.1 405 Method Not Allowed");
    let big = format!(
        "GET /metrics HTTP/1.1\r\nHost: x\r\nX-Pad: {}\r\n\r\n",
        "a".repeat(metrics::MAX_HEAD + 100)
    );
    assert_eq!(
        http(addr, big.as_bytes()).status,
        "HTTP/1.1 431 Request Header Fields Too Large"
    );
    let om = get(
        addr,
        "/metrics",
        Some("application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5"),
    );
    assert_eq!(om.status, "HTTP/1.1 200 OK");
    assert_eq!(
        om.header("content-type"),
        Some("application/openmetrics-text; version=1.0.0; charset=utf-8")
    );
    assert!(om.body.ends_with("# EOF\n"));
    assert!(om.body.contains("# TYPE netta_connections counter\n"));

    let before = scrape(addr);
    assert!(
        !before.contains("netta_up"),
        "Prometheus has its own `up`: {before}"
    );
    assert_no_kernel_address("the metrics", &before);
    let version = env!("CARGO_PKG_VERSION");
    assert_eq!(
        total(
            &before,
            "netta_info",
            &[("mode", mode_label), ("version", version)]
        ),
        1.0,
        "{before}"
    );
    assert!(total(&before, "process_resident_memory_bytes", &[]) > 0.0);
    assert!(before.contains("\nprocess_cpu_seconds_total "));
    assert!(total(&before, "process_open_fds", &[]) >= 3.0);
    assert!(total(&before, "process_max_fds", &[]) >= total(&before, "process_open_fds", &[]));
    let started = total(&before, "process_start_time_seconds", &[]);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    assert!(
        started <= now && started > now - 600.0,
        "{started} vs {now}"
    );
    let tcp =
        |t: &str, name: &str, label: (&str, &str)| total(t, name, &[label, ("transport", "tcp")]);
    let closed = |t: &str| tcp(t, "netta_connections_total", ("event", "closed"));
    let opened = |t: &str| tcp(t, "netta_connections_total", ("event", "opened"));
    let sent = |t: &str| tcp(t, "netta_bytes_total", ("direction", "sent"));
    let established = |t: &str| tcp(t, "netta_live_connections", ("state", "ESTABLISHED"));
    let (closed0, opened0, sent0) = (closed(&before), opened(&before), sent(&before));

    let started = Instant::now();
    connections(|| {
        // Both ends of every connection are live rows (after a poll, without eBPF).
        let (ok, text) = scrape_until(addr, Duration::from_secs(10), |t| {
            established(t) >= (2 * CONNS) as f64
        });
        assert!(
            ok,
            "{what}: live ESTABLISHED rows never reached {}:\n{text}",
            2 * CONNS
        );
        assert!(total(&text, "netta_live_connections", &[("state", "LISTENING")]) >= 1.0);
    });
    let (ok, after) = scrape_until(addr, Duration::from_secs(10), |t| {
        closed(t) >= closed0 + CONNS as f64
    });
    assert!(
        ok,
        "{what}: netta_connections_total{{event=\"closed\"}} went {closed0} -> {} in {:?}, want +{CONNS}:\n{after}",
        closed(&after),
        started.elapsed()
    );
    assert!(opened(&after) >= opened0 + CONNS as f64, "{after}");
    if matches!(mode, Mode::Ebpf(_)) {
        // Polled differences are counted apart from applied kernel events.
        assert!(total(&after, "netta_events_processed_total", &[]) > 0.0);
        // Kernel events carry directions and byte counts; /proc polling has neither for closes.
        for dir in ["egress", "ingress"] {
            let n = |t: &str| {
                total(
                    t,
                    "netta_connections_total",
                    &[
                        ("event", "opened"),
                        ("direction", dir),
                        ("transport", "tcp"),
                    ],
                )
            };
            assert!(n(&after) >= n(&before) + CONNS as f64, "{dir}:\n{after}");
        }
        assert!(
            sent(&after) >= sent0 + (CONNS * PAYLOAD) as f64,
            "bytes sent {sent0} -> {}",
            sent(&after)
        );
    }
    eprintln!(
        "{what}: closed {closed0} -> {}, opened {opened0} -> {} in {:?}",
        closed(&after),
        opened(&after),
        started.elapsed()
    );

    promtool(&after, what);
    run.stop();
}

#[test]
fn metrics_over_a_running_agent() {
    let want_ebpf = ebpf_available("metrics");
    exercise("metrics", AgentOptions::default(), want_ebpf);
}

#[test]
fn metrics_over_a_polling_agent() {
    let opts = AgentOptions {
        force_polling: true,
        ..AgentOptions::default()
    };
    exercise("metrics (polling)", opts, false);
}
