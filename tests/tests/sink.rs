//! The JSON-lines sinks, driven through the library (no CLI flag selects them yet):
//! a TCP receiver that goes away and comes back on the same port, and a file
//! rotated the way logrotate does it (rename, then SIGHUP).
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use netta::api::sink::{self, SinkSpec};
use netta::api::{Action, Clock, ConnEvent, Record};
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, BufReader, Lines};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

#[path = "support/sink_under_test.rs"]
mod sink_under_test;
use sink_under_test::{start_sink, stop_sink};

const PATIENCE: Duration = Duration::from_secs(30);

/// A synthetic event, identified by its time (`@timestamp` is `id` ns after the
/// epoch with the sinks' fixed clock).
fn record(id: u64) -> Record {
    Record::Event(ConnEvent {
        action: Action::Opened,
        sock: id,
        ..ConnEvent::lost(id, 0)
    })
}

#[derive(Debug, PartialEq, Eq)]
enum Line {
    Record(u64),
    /// An `events-lost` line and its count.
    Lost(u64),
}

fn classify(line: &str) -> Line {
    let v: Value =
        serde_json::from_str(line).unwrap_or_else(|e| panic!("not a JSON line ({e}): {line:?}"));
    if v["event"]["action"] == "events-lost" {
        return Line::Lost(v["netta"]["lost"].as_u64().expect("netta.lost"));
    }
    assert_eq!(v["event"]["action"], "connection-opened", "{line}");
    assert!(v["netta"].get("sock").is_none(), "a kernel address: {line}");
    let ts = v["@timestamp"].as_str().expect("@timestamp");
    let at = humantime::parse_rfc3339(ts).expect("RFC 3339 @timestamp");
    let id = at.duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as u64;
    Line::Record(id)
}

fn records(ids: std::ops::RangeInclusive<u64>) -> Vec<Line> {
    ids.map(Line::Record).collect()
}

async fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let start = Instant::now();
    while !done() {
        assert!(start.elapsed() < PATIENCE, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

async fn next_line(lines: &mut Lines<BufReader<TcpStream>>) -> Option<Line> {
    tokio::time::timeout(PATIENCE, lines.next_line())
        .await
        .expect("timed out reading from the sink")
        .expect("reading from the sink")
        .map(|l| classify(&l))
}

async fn read_n(lines: &mut Lines<BufReader<TcpStream>>, n: u64) -> Vec<Line> {
    let mut got = Vec::new();
    for _ in 0..n {
        got.push(next_line(lines).await.expect("the sink closed early"));
    }
    got
}

async fn accept(listener: &TcpListener) -> Lines<BufReader<TcpStream>> {
    let (stream, _) = tokio::time::timeout(PATIENCE, listener.accept())
        .await
        .expect("the sink did not connect")
        .expect("accept");
    BufReader::new(stream).lines()
}

/// Sends the records' lines, serialised once as the agent does it.
async fn send(tx: &mpsc::Sender<sink::Chunk>, ids: std::ops::RangeInclusive<u64>) {
    let mut maker = sink::LineMaker::new(Clock::fixed(0));
    for id in ids {
        tx.send(maker.line(&record(id)))
            .await
            .expect("the sink stopped");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tcp_sink_buffers_through_an_outage_and_reports_what_it_dropped() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let spec: SinkSpec = format!("tcp://{addr}").parse().unwrap();
    assert_eq!(spec, SinkSpec::Tcp(addr.to_string()));
    let (tx, stats, stop, task, _) = start_sink(spec, 4096);

    // Before the outage: everything, in order.
    const BEFORE: u64 = 1_000;
    let mut lines = accept(&listener).await;
    send(&tx, 1..=BEFORE).await;
    assert_eq!(read_n(&mut lines, BEFORE).await, records(1..=BEFORE));
    assert_eq!(stats.dropped.load(Ordering::Relaxed), 0);

    // The receiver dies; the sink notices even though it has nothing to write.
    drop(lines);
    drop(listener);
    wait_until("the sink to notice the receiver is gone", || {
        !stats.connected.load(Ordering::Relaxed)
    })
    .await;

    // More than the outage buffer holds, by lines and so by bytes too.
    let first = BEFORE + 1;
    let last = BEFORE + sink::BUFFER_LINES as u64 + 1_000;
    send(&tx, first..=last).await;
    wait_until("the sink to take every record", || {
        tx.capacity() == tx.max_capacity()
    })
    .await;
    assert!(stats.dropped.load(Ordering::Relaxed) > 0);

    // A receiver again, on the same port.
    let listener = rebind(addr).await;
    let mut lines = accept(&listener).await;
    let notice = next_line(&mut lines)
        .await
        .expect("a line after reconnecting");
    let mut after = Vec::new();
    while after.last() != Some(&Line::Record(last)) {
        after.push(next_line(&mut lines).await.expect("the sink closed early"));
    }
    let dropped = stats.dropped.load(Ordering::Relaxed);
    assert_eq!(
        notice,
        Line::Lost(dropped),
        "the first line reports the drops"
    );
    let kept = (last - first + 1) - dropped;
    assert!(kept > 0);
    assert_eq!(
        after,
        records(last - kept + 1..=last),
        "the newest lines, in order"
    );
    assert_eq!(stats.reconnects.load(Ordering::Relaxed), 1);

    // And on as usual.
    send(&tx, last + 1..=last + 10).await;
    assert_eq!(read_n(&mut lines, 10).await, records(last + 1..=last + 10));

    stop_sink(stop, task).await;
    assert!(next_line(&mut lines).await.is_none(), "closed at shutdown");
    assert_eq!(stats.written.load(Ordering::Relaxed), BEFORE + kept + 10);
    assert_eq!(stats.dropped.load(Ordering::Relaxed), dropped);
    assert!(!stats.connected.load(Ordering::Relaxed));
}

/// Binds `addr` again (the old connection may linger in TIME_WAIT a moment).
async fn rebind(addr: std::net::SocketAddr) -> TcpListener {
    let start = Instant::now();
    loop {
        match TcpListener::bind(addr).await {
            Ok(l) => return l,
            Err(e) if start.elapsed() < PATIENCE => {
                eprintln!("rebinding {addr}: {e}");
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Err(e) => panic!("rebinding {addr}: {e}"),
        }
    }
}

fn scratch_dir() -> PathBuf {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let dir = std::env::temp_dir().join(format!("netta-sink-test-{}-{nanos}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// The complete lines of a file (none while it does not exist).
fn file_lines(path: &Path) -> Vec<Line> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let complete = text.rfind('\n').map_or("", |end| &text[..end]);
    complete.lines().map(classify).collect()
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn file_sink_reopens_on_sighup_after_rotation() {
    let dir = scratch_dir();
    let path = dir.join("netta.json");
    let (tx, stats, stop, task, _) = start_sink(SinkSpec::File(path.clone()), 1024);

    send(&tx, 1..=10).await;
    // Lines in the file mean the sink is running, so its SIGHUP handler (installed
    // before it opens the file) is in place and the signal cannot kill this test.
    wait_until("the first lines", || file_lines(&path).len() == 10).await;
    assert_eq!(mode(&path), 0o600);

    // logrotate: rename, then HUP.
    let rotated = dir.join("netta.json.1");
    std::fs::rename(&path, &rotated).unwrap();
    // SAFETY: signalling our own process; the sink handles SIGHUP.
    assert_eq!(unsafe { libc::kill(libc::getpid(), libc::SIGHUP) }, 0);
    // The sink counts a reopen once `open` returned, a moment after the file
    // appeared: the counter, not the path, says the reopen is done.
    wait_until("the sink to reopen the file", || {
        stats.reconnects.load(Ordering::Relaxed) >= 1
    })
    .await;
    assert!(path.exists(), "reopened by its path");
    assert_eq!(stats.reconnects.load(Ordering::Relaxed), 1);

    send(&tx, 11..=20).await;
    wait_until("the later lines", || file_lines(&path).len() == 10).await;

    stop_sink(stop, task).await;
    assert_eq!(file_lines(&rotated), records(1..=10));
    assert_eq!(file_lines(&path), records(11..=20));
    assert_eq!(mode(&path), 0o600);
    assert_eq!(mode(&rotated), 0o600);
    assert_eq!(stats.written.load(Ordering::Relaxed), 20);
    assert_eq!(stats.dropped.load(Ordering::Relaxed), 0);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unix_sink_delivers_what_it_buffered_when_stopped() {
    let dir = scratch_dir();
    let path = dir.join("vector.sock");
    let spec: SinkSpec = format!("unix://{}", path.display()).parse().unwrap();
    let (tx, stats, stop, task, _) = start_sink(spec, 1024);
    // Nobody listens yet: the lines wait in the sink.
    send(&tx, 1..=5).await;
    wait_until("the sink to take them", || {
        tx.capacity() == tx.max_capacity()
    })
    .await;
    let listener = tokio::net::UnixListener::bind(&path).unwrap();
    // Stopping flushes: the sink connects (now, or already on its own) and sends all.
    stop.send(true).unwrap();
    let (stream, _) = tokio::time::timeout(PATIENCE, listener.accept())
        .await
        .expect("the sink did not connect")
        .unwrap();
    let mut lines = BufReader::new(stream).lines();
    let mut got = Vec::new();
    while let Some(l) = tokio::time::timeout(PATIENCE, lines.next_line())
        .await
        .expect("timed out reading")
        .unwrap()
    {
        got.push(classify(&l));
    }
    assert_eq!(got, records(1..=5));
    tokio::time::timeout(PATIENCE, task)
        .await
        .expect("the sink did not stop")
        .unwrap()
        .expect("the sink failed");
    assert_eq!(stats.written.load(Ordering::Relaxed), 5);
    assert_eq!(stats.dropped.load(Ordering::Relaxed), 0);
    std::fs::remove_dir_all(&dir).unwrap();
}
