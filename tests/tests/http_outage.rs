//! `netta agent` feeding an HTTP collector that goes away for a few seconds in the
//! middle of real traffic. A file sink on the same agent is the reference: every
//! record is serialised once and handed to both, so the file holds exactly what
//! the HTTP sink was given (the whole machine's connections, not only ours).
//! - With the default buffer nothing is lost: the collector ends up with the
//!   file's lines, each once, and no `events-lost` line.
//! - With a buffer smaller than the outage, the `events-lost` counts the
//!   collector receives add up to exactly the lines it is missing.
//!
//! SIGTERM ends the agent; what is still queued then is delivered on the way out.
use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use netta_tests::http_receiver::HttpReceiver;
use netta_tests::*;

/// `n` loopback connections through a server of our own: (server port, client ports).
fn round_trips(n: usize) -> (u64, Vec<u64>) {
    let mut server = Traffic::spawn(&[
        "tcp-server",
        "127.0.0.1:0",
        &n.to_string(),
        "10",
        "nt-hosrv",
    ]);
    let port: u64 = server.expect_line("port ").parse().unwrap();
    let mut client = Traffic::to_loopback("tcp-client", port, &[&n.to_string(), "10", "nt-hocli"]);
    let clients = client
        .all_lines("local ")
        .iter()
        .map(|p| p.parse().unwrap())
        .collect();
    client.finish();
    server.finish();
    (port, clients)
}

struct Run {
    agent: AgentProc,
    file: std::path::PathBuf,
    dir: std::path::PathBuf,
}

/// A collector, and an agent sending to it (`options` end the sink URL) and to a
/// reference file.
fn start(name: &str, options: &str) -> (HttpReceiver, Run) {
    let rx = HttpReceiver::start();
    let dir = temp_dir(name);
    let file = dir.join("reference.json");
    let http = format!(
        "http://127.0.0.1:{}/ingest#age=100ms{options}",
        rx.addr.port()
    );
    let f = format!("file:{}", file.display());
    let agent = AgentProc::with_sinks(&[], &dir.join("state"), &[&f, &http]);
    (rx, Run { agent, file, dir })
}

impl Run {
    /// SIGTERM; the agent must exit cleanly. Returns the reference file's lines.
    fn stop(mut self) -> Vec<String> {
        // SAFETY: signalling our own child.
        unsafe { libc::kill(self.agent.child.id() as i32, libc::SIGTERM) };
        let status = self.agent.child.wait().unwrap();
        assert!(status.success(), "netta agent: {status}");
        let text = std::fs::read_to_string(&self.file).unwrap();
        assert!(
            text.is_empty() || text.ends_with('\n'),
            "a partial last line"
        );
        let _ = std::fs::remove_dir_all(&self.dir);
        text.lines().map(str::to_string).collect()
    }
}

fn wait_for(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The (action, direction, client port) of each line touching server `port`.
fn conn_keys(lines: &[String], port: u64) -> Vec<(String, String, u64)> {
    lines
        .iter()
        .map(|l| parse_event_line(l))
        .filter(|v| u64_at(v, &["destination", "port"]) == Some(port))
        .filter_map(|v| {
            Some((
                str_at(&v, &["event", "action"])?.to_string(),
                str_at(&v, &["network", "direction"])?.to_string(),
                u64_at(&v, &["source", "port"])?,
            ))
        })
        .collect()
}

/// Each of our connections is in `lines`: opened and closed, at both ends, once.
fn assert_all_there(lines: &[String], port: u64, clients: &[u64]) {
    let mut got: HashMap<(String, String, u64), usize> = HashMap::new();
    for k in conn_keys(lines, port) {
        *got.entry(k).or_default() += 1;
    }
    for c in clients {
        for action in ["connection-opened", "connection-closed"] {
            for dir in ["egress", "ingress"] {
                let k = (action.to_string(), dir.to_string(), *c);
                assert_eq!(got.get(&k), Some(&1), "{k:?} for server port {port}");
            }
        }
    }
}

/// Splits the collector's lines into records and the sum of its `events-lost` counts.
fn records_and_lost(lines: &[String]) -> (Vec<String>, u64) {
    let mut records = Vec::new();
    let mut lost = 0;
    for l in lines {
        let v = parse_event_line(l);
        if str_at(&v, &["event", "action"]) == Some("events-lost") {
            lost += u64_at(&v, &["netta", "lost"]).expect("netta.lost");
        } else {
            records.push(l.clone());
        }
    }
    (records, lost)
}

fn assert_once(lines: &[String]) {
    let mut seen = HashSet::new();
    for l in lines {
        assert!(seen.insert(l), "received twice: {l}");
    }
}

#[test]
fn http_sink_loses_nothing_across_a_collector_outage() {
    require_ebpf!("http_outage");
    let (mut rx, run) = start("http-outage", "");
    let before = round_trips(20);
    wait_for("the first connections at the collector", || {
        conn_keys(&rx.lines(), before.0).len() >= 80
    });
    rx.stop();
    let during = round_trips(20);
    std::thread::sleep(Duration::from_secs(3));
    let requests = rx.requests();
    rx.restart();
    wait_for("delivery to resume", || rx.requests() > requests);
    let after = round_trips(20);
    let reference = run.stop();
    let got = rx.lines();
    for (port, clients) in [&before, &during, &after] {
        assert_all_there(&reference, *port, clients);
        assert_all_there(&got, *port, clients);
    }
    let (records, lost) = records_and_lost(&got);
    assert_eq!(lost, 0, "nothing reported lost");
    assert_once(&records);
    let want: HashSet<&String> = reference.iter().collect();
    let have: HashSet<&String> = records.iter().collect();
    assert_eq!(
        want.difference(&have).count(),
        0,
        "every line the agent wrote reached the collector"
    );
    assert_eq!(have.len(), want.len(), "and nothing else");
}

#[test]
fn beyond_its_buffer_the_reported_losses_equal_what_the_collector_misses() {
    require_ebpf!("http_overflow");
    let (mut rx, run) = start("http-overflow", ",buffer=50");
    // A 50-line buffer may drop lines even while the collector is up (the whole
    // machine's connections go through it): the accounting must hold all the same.
    let before = round_trips(10);
    let requests = rx.requests();
    wait_for("a first batch at the collector", || {
        rx.requests() > requests
    });
    rx.stop();
    // 400 records of ours alone into a 50-line buffer.
    let during = round_trips(100);
    std::thread::sleep(Duration::from_secs(1));
    rx.restart();
    let after = round_trips(10);
    let reference = run.stop();
    let got = rx.lines();
    for (port, clients) in [&before, &during, &after] {
        assert_all_there(&reference, *port, clients);
    }
    let (records, lost) = records_and_lost(&got);
    assert_once(&records);
    let have: HashSet<&String> = records.iter().collect();
    let want: HashSet<&String> = reference.iter().collect();
    assert!(
        have.is_subset(&want),
        "the collector got only the agent's lines"
    );
    let missing = want.len() - have.len();
    assert!(
        missing >= 300,
        "a 50-line buffer lost most of 400: {missing}"
    );
    assert_eq!(
        lost, missing as u64,
        "events-lost adds up to what is missing"
    );
}
