//! A sink started the way `netta agent` starts one (`sink::run` on a channel),
//! for the tests of each sink against its receiver.
#![allow(dead_code)]
use std::sync::Arc;

use netta::api::sink::{self, SinkSpec, SinkStats};
use netta::api::{Action, Clock, ConnEvent, Direction, Record};
use tokio::sync::{mpsc, watch};

/// A sink under test: its input (serialised lines), its counters, its stop
/// switch (it drains and flushes first), its task, and a serialiser like the agent's.
pub type SinkUnderTest = (
    mpsc::Sender<sink::Chunk>,
    Arc<SinkStats>,
    watch::Sender<bool>,
    tokio::task::JoinHandle<std::io::Result<()>>,
    sink::LineMaker,
);

/// Starts `spec` with an input channel of `capacity` lines (inside a runtime).
pub fn start_sink(spec: SinkSpec, capacity: usize) -> SinkUnderTest {
    let (tx, rx) = mpsc::channel(capacity);
    let stats = Arc::new(SinkStats::default());
    let (stop, shutdown) = watch::channel(false);
    let task = tokio::spawn(sink::run(
        spec,
        rx,
        Clock::fixed(0),
        stats.clone(),
        shutdown,
    ));
    let maker = sink::LineMaker::new(Clock::fixed(0));
    (tx, stats, stop, task, maker)
}

/// A synthetic opened connection, identified by its source port.
pub fn opened(id: u16) -> Record {
    let mut e = ConnEvent::lost(1_000_000_000 + u64::from(id), 0);
    e.action = Action::Opened;
    e.sock = 0xffff_8880_0000_0000 + u64::from(id) * 64;
    e.local = format!("127.0.0.1:{id}").parse().unwrap();
    e.remote = "127.0.0.1:5".parse().unwrap();
    e.direction = Direction::Egress;
    Record::Event(e)
}

/// Stops the sink and waits for it to drain, flush and end without error.
pub async fn stop_sink(
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
) {
    stop.send(true).unwrap();
    tokio::time::timeout(std::time::Duration::from_secs(30), task)
        .await
        .expect("the sink did not stop")
        .unwrap()
        .expect("the sink failed");
}

/// Runs `f` on `server` on a blocking thread (servers start and stop synchronously).
pub async fn off_runtime<T: Send + 'static>(
    mut server: T,
    f: impl FnOnce(&mut T) + Send + 'static,
) -> T {
    tokio::task::spawn_blocking(move || {
        f(&mut server);
        server
    })
    .await
    .unwrap()
}
