//! Where JSON lines go: stdout, an append-only file, or a stream socket for a log
//! pipeline (Vector's `socket` source, Fluent Bit's `tcp` input and Logstash's
//! `json_lines` codec all read newline-delimited JSON over TCP or a Unix socket).
//!
//! Sinks consume lines serialised once for all of them ([`fan_out`], fed by one
//! tap, [`crate::agent::Shared::subscribe`]), a batch per wake-up in one shared
//! buffer ([`Chunk`]) that every sink queues and writes as it is (a file: one
//! `writev` per flush; all the file sinks of a command share one thread and one
//! channel): a second sink costs little more than a second write. A sink whose
//! channel is full misses the batch (and is told how many lines), so a slow or
//! absent destination never blocks the kernel reader or the other sinks (the
//! file sinks stand together: a file that blocks holds up the other files). `http://` and `https://` post NDJSON
//! batches ([`http`]; TLS in [`tls`]). Sockets reconnect with exponential
//! backoff; while disconnected the newest lines wait in a bounded buffer
//! ([`BUFFER_LINES`], [`BUFFER_BYTES`]), the oldest are dropped, and the first line
//! on the new connection is an `events-lost` record saying how many.
//! A file is opened append-only (mode 0600 when created) and reopened by path on
//! SIGHUP, as logrotate expects after it renames the file.
use std::io::{self};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, watch};

use crate::core::clock::Clock;

/// Most lines kept while a socket or file is unavailable; beyond it the oldest go.
pub const BUFFER_LINES: usize = 65_536;
/// Most bytes kept while a socket or file is unavailable; beyond it the oldest go.
pub const BUFFER_BYTES: usize = 8 << 20;
/// Lines are serialised in batches of about this size per wake-up.
const BATCH_BYTES: usize = 64 << 10;
/// Largest single write.
const CHUNK_BYTES: usize = 256 << 10;
/// Bytes written to a socket per wake-up before the channel gets a turn.
const WRITE_BUDGET: usize = 1 << 20;
const BACKOFF_MIN: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(10);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long the final flush may take at shutdown (connect included).
const FINAL_FLUSH: Duration = Duration::from_secs(1);

mod backlog;
mod backoff;
mod fanout;
mod file;
pub mod http;
mod lines;
mod running;
mod stats;
mod stdout;
mod stream;
mod tls;

pub use crate::settings::sink_spec::SinkSpec;
pub use fanout::{fan_out, Chunk, LineMaker};
pub use running::Sinks;
pub use stats::SinkStats;

use backlog::Backlog;
use backoff::Backoff;
use file::run_files;
use file::FileSpec;
use lines::{stop_requested, Lines};
use stdout::run_stdout;
use stream::run_stream;
use stream::Target;

/// [`run`] as a task of the current runtime, except a file sink, which runs
/// as [`spawn_files`] does with one file.
pub fn spawn(
    spec: SinkSpec,
    rx: mpsc::Receiver<Chunk>,
    clock: Clock,
    stats: Arc<SinkStats>,
    shutdown: watch::Receiver<bool>,
) -> tokio::task::JoinHandle<io::Result<()>> {
    match spec {
        SinkSpec::File(path) => {
            let label = SinkSpec::File(path.clone()).to_string();
            spawn_files(vec![FileSpec { path, label, stats }], rx, clock, shutdown)
        }
        spec => tokio::spawn(run(spec, rx, clock, stats, shutdown)),
    }
}

/// File sinks that get the same batches from `rx`: their writes block, so they
/// run on a thread of their own with a small runtime of its own, where a write
/// holds up only the files, and a batch costs one wake-up of the thread for all
/// of them (not a task wake-up plus a hand-off to the blocking pool and back,
/// nor a thread per file). After `shutdown`, they get [`FINAL_FLUSH`] more than
/// their last writes should take before the task gives up on them.
fn spawn_files(
    files: Vec<FileSpec>,
    rx: mpsc::Receiver<Chunk>,
    clock: Clock,
    shutdown: watch::Receiver<bool>,
) -> tokio::task::JoinHandle<io::Result<()>> {
    let mut stop = shutdown.clone();
    let (done, result) = tokio::sync::oneshot::channel();
    let thread = std::thread::Builder::new()
        .name("netta-sink".into())
        .spawn(move || {
            let r = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .and_then(|rt| rt.block_on(run_files(&files, rx, clock, shutdown)));
            for f in &files {
                f.stats.set_connected(false);
            }
            let _ = done.send(r);
        });
    tokio::spawn(async move {
        thread?;
        tokio::select! {
            r = result => r.unwrap_or_else(|_| Err(io::Error::other("the sink's thread panicked"))),
            _ = async {
                stop_requested(&mut stop).await;
                tokio::time::sleep(FINAL_FLUSH * 2).await;
            } => Err(io::Error::other("the sink's last writes did not finish in time")),
        }
    })
}

/// Writes the batches of JSON lines from `rx` to `spec` until `shutdown` becomes
/// true or the channel closes; then drains the channel, flushes (for a socket: one
/// connection attempt, within about a second), and returns.
///
/// Errors: opening the file at start, or writing to stdout (a closed pipe is a
/// normal end, `Ok`). Socket and rotation trouble is logged and retried.
pub async fn run(
    spec: SinkSpec,
    rx: mpsc::Receiver<Chunk>,
    clock: Clock,
    stats: Arc<SinkStats>,
    shutdown: watch::Receiver<bool>,
) -> io::Result<()> {
    let label = spec.to_string();
    let lines = Lines {
        backlog: Backlog::new(BUFFER_LINES, BUFFER_BYTES),
        clock: clock.clone(),
        stats: &stats,
        label: &label,
        warned_full: false,
    };
    let result = match spec {
        SinkSpec::Stdout => run_stdout(rx, lines, shutdown).await,
        SinkSpec::File(path) => {
            let file = FileSpec {
                path,
                label: label.clone(),
                stats: stats.clone(),
            };
            run_files(&[file], rx, clock, shutdown).await
        }
        SinkSpec::Tcp(addr) => run_stream(Target::Tcp(addr), rx, lines, shutdown).await,
        SinkSpec::Unix(path) => run_stream(Target::Unix(path), rx, lines, shutdown).await,
        SinkSpec::Http(spec, opts) => {
            http::run(spec, opts, rx, clock, stats.clone(), shutdown).await
        }
    };
    stats.set_connected(false);
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A file sink on its own thread writes every batch, in order, and ends
    /// (flushed) when asked to stop.
    #[tokio::test]
    async fn a_file_sink_on_its_own_thread_writes_everything_and_stops() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("events.json");
        let (tx, rx) = mpsc::channel(4);
        let (stop, stop_rx) = watch::channel(false);
        let stats = Arc::new(SinkStats::default());
        let task = spawn(
            SinkSpec::File(path.clone()),
            rx,
            Clock::fixed(0),
            stats.clone(),
            stop_rx,
        );
        for n in 0..3 {
            let line = format!("{{\"n\":{n}}}\n").into_bytes();
            tx.send(Chunk::line(line)).await.unwrap();
        }
        stop.send(true).unwrap();
        task.await.unwrap().unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(text, "{\"n\":0}\n{\"n\":1}\n{\"n\":2}\n");
        assert_eq!(stats.written.load(std::sync::atomic::Ordering::Relaxed), 3);
    }

    /// File sinks on one thread each get every batch; one that cannot write
    /// (`/dev/full`) keeps its lines and counts them dropped at shutdown, without
    /// holding up the other.
    #[tokio::test]
    async fn file_sinks_on_one_thread_write_on_their_own() {
        use std::sync::atomic::Ordering::Relaxed;
        let dir = tempfile::tempdir().unwrap();
        let good = dir.path().join("events.json");
        let files: Vec<FileSpec> = [good.clone(), "/dev/full".into()]
            .into_iter()
            .map(|path| FileSpec {
                label: path.display().to_string(),
                path,
                stats: Arc::new(SinkStats::default()),
            })
            .collect();
        let stats: Vec<_> = files.iter().map(|f| f.stats.clone()).collect();
        let (tx, rx) = mpsc::channel(4);
        let (stop, stop_rx) = watch::channel(false);
        let task = spawn_files(files, rx, Clock::fixed(0), stop_rx);
        for n in 0..3 {
            let line = format!("{{\"n\":{n}}}\n").into_bytes();
            tx.send(Chunk::line(line)).await.unwrap();
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert_eq!(std::fs::read_to_string(&good).unwrap().lines().count(), 3);
        stop.send(true).unwrap();
        task.await.unwrap().unwrap();
        assert_eq!(stats[0].written.load(Relaxed), 3);
        assert_eq!(stats[0].dropped.load(Relaxed), 0);
        assert_eq!(stats[1].written.load(Relaxed), 0);
        assert_eq!(stats[1].dropped.load(Relaxed), 3);
    }
}
