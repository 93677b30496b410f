//! The running agent: it owns the live table and keeps it current, from kernel
//! events when eBPF loads and from /proc polling when it does not. Views read
//! snapshots of the table; streams (JSON lines, the monitor) subscribe as taps.
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::sync::{mpsc, watch};

use crate::core::clock::{mono_now, Clock};
use crate::core::event::{normalize, Action, ConnEvent, Direction, OwnerSource, Proto, State};
use crate::core::services::Services;
use crate::core::table::{Applied, Closed, Conn, Limits, Snapshot, Table};
use crate::detect::{Alert, Detector, Rules};
use crate::host::ebpf::{self, RecordSink, Transport};
use crate::host::proc;

#[derive(Clone, Debug)]
pub struct AgentOptions {
    /// Skip eBPF and poll /proc (also what happens when eBPF cannot load).
    pub force_polling: bool,
    pub ebpf: ebpf::Options,
    /// /proc reconciliation period with eBPF; the poll period without it.
    pub reconcile_every: Duration,
    pub poll_every: Duration,
    /// A UDP flow with no datagram for this long is reported and forgotten.
    pub udp_idle: Duration,
    pub limits: Limits,
    pub proc_root: PathBuf,
    pub rules: Rules,
}

impl Default for AgentOptions {
    fn default() -> Self {
        AgentOptions {
            force_polling: false,
            ebpf: ebpf::Options::default(),
            reconcile_every: Duration::from_secs(5),
            poll_every: Duration::from_secs(1),
            udp_idle: Duration::from_secs(5),
            limits: Limits::default(),
            proc_root: PathBuf::from("/proc"),
            rules: Rules::default(),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Mode {
    Ebpf(Transport),
    /// Polling /proc, with the reason eBPF is not in use.
    Polling(String),
}

impl Mode {
    pub fn describe(&self) -> String {
        match self {
            Mode::Ebpf(Transport::Ring) => "eBPF, ring buffer".into(),
            Mode::Ebpf(Transport::Perf) => "eBPF, perf event array".into(),
            Mode::Polling(reason) => format!("polling /proc: {reason}"),
        }
    }
}

/// What taps receive: connection events and detection alerts, in order.
#[derive(Clone, Debug)]
pub enum Record {
    Event(ConnEvent),
    Alert(Arc<Alert>),
}

impl Record {
    /// Appends the record as one ECS JSON line.
    pub fn write_json(&self, out: &mut Vec<u8>, clock: &Clock) {
        match self {
            Record::Event(ev) => crate::render::ecs::write_line(out, ev, clock),
            Record::Alert(a) => crate::render::ecs::write_alert_line(out, a, clock),
        }
    }
}

struct Tap {
    tx: mpsc::Sender<Record>,
    dropped: u64,
}

/// State shared by the agent's tasks.
pub struct Shared {
    table: Mutex<Table>,
    taps: Mutex<Vec<Tap>>,
    detector: Mutex<Detector>,
    pub clock: Clock,
    mode: Mutex<Mode>,
    pub started_ns: u64,
}

impl Shared {
    pub fn mode(&self) -> Mode {
        self.mode.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    pub fn table(&self) -> MutexGuard<'_, Table> {
        self.table.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn detector(&self) -> MutexGuard<'_, Detector> {
        self.detector.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Runs the table rules on the current table and publishes new alerts.
    pub fn detect_now(&self) {
        let snap = self.snapshot();
        let now = mono_now();
        let mut alerts = Vec::new();
        {
            let mut d = self.detector();
            alerts.extend(d.tick(now));
            d.scan_table(&snap, now, &mut alerts);
        }
        self.publish_alerts(alerts);
    }

    fn publish_alerts(&self, alerts: Vec<Alert>) {
        if alerts.is_empty() {
            return;
        }
        for a in &alerts {
            log::info!("alert {}: {}", a.rule.id(), a.message);
        }
        let records: Vec<Record> = alerts
            .into_iter()
            .map(|a| Record::Alert(Arc::new(a)))
            .collect();
        self.send(records.len(), |i| records[i].clone());
    }

    pub fn snapshot(&self) -> Snapshot {
        self.table().snapshot()
    }

    /// Applies a batch to the table and the detector, then forwards what changed
    /// and any alerts to the taps.
    pub fn apply_batch(&self, batch: &mut Vec<ConnEvent>) {
        if batch.is_empty() {
            return;
        }
        let mut alerts = Vec::new();
        {
            let mut d = self.detector();
            for ev in batch.iter() {
                d.observe(ev, &mut alerts);
            }
        }
        {
            let mut t = self.table();
            batch.retain(|ev| t.apply(ev) == Applied::Changed);
        }
        self.publish(batch);
        batch.clear();
        self.publish_alerts(alerts);
    }

    pub fn publish(&self, events: &[ConnEvent]) {
        if events.is_empty()
            || self
                .taps
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .is_empty()
        {
            return;
        }
        self.send(events.len(), |i| Record::Event(events[i]));
    }

    /// Sends records to every tap without ever blocking the reader: a full tap
    /// drops, counts, and is told how many it missed once it has room again.
    fn send(&self, len: usize, record: impl Fn(usize) -> Record) {
        let mut taps = self.taps.lock().unwrap_or_else(|p| p.into_inner());
        if taps.is_empty() || len == 0 {
            return;
        }
        let now = mono_now();
        let mut dropped_now = 0;
        taps.retain_mut(|tap| {
            for i in 0..len {
                if tap.dropped > 0 {
                    let lost = Record::Event(ConnEvent::lost(now, tap.dropped));
                    match tap.tx.try_send(lost) {
                        Ok(()) => tap.dropped = 0,
                        Err(mpsc::error::TrySendError::Full(_)) => {
                            tap.dropped += 1;
                            dropped_now += 1;
                            continue;
                        }
                        Err(mpsc::error::TrySendError::Closed(_)) => return false,
                    }
                }
                match tap.tx.try_send(record(i)) {
                    Ok(()) => {}
                    Err(mpsc::error::TrySendError::Full(_)) => {
                        tap.dropped += 1;
                        dropped_now += 1;
                    }
                    Err(mpsc::error::TrySendError::Closed(_)) => return false,
                }
            }
            true
        });
        drop(taps);
        if dropped_now > 0 {
            self.table().add_lost(dropped_now);
        }
    }

    /// Tells taps that dropped records how many, even when no new record comes
    /// along to carry the notice.
    pub fn flush_drop_notices(&self) {
        let now = mono_now();
        let mut taps = self.taps.lock().unwrap_or_else(|p| p.into_inner());
        for tap in taps.iter_mut().filter(|t| t.dropped > 0) {
            let lost = Record::Event(ConnEvent::lost(now, tap.dropped));
            if tap.tx.try_send(lost).is_ok() {
                tap.dropped = 0;
            }
        }
    }

    pub fn subscribe(&self, capacity: usize) -> mpsc::Receiver<Record> {
        let (tx, rx) = mpsc::channel(capacity);
        self.taps
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(Tap { tx, dropped: 0 });
        rx
    }
}

/// Decodes ring/perf records into a reusable batch (no allocation per record).
struct BatchSink {
    shared: Arc<Shared>,
    batch: Vec<ConnEvent>,
    bad: u64,
}

impl RecordSink for BatchSink {
    fn record(&mut self, bytes: &[u8]) {
        match ConnEvent::decode(bytes) {
            Ok(ev) => {
                self.batch.push(ev);
                if self.batch.len() >= 4096 {
                    self.shared.apply_batch(&mut self.batch);
                }
            }
            Err(e) => {
                self.bad += 1;
                if self.bad.is_power_of_two() {
                    log::warn!(
                        "dropped a malformed kernel record ({e}); {} so far",
                        self.bad
                    );
                }
                self.shared.table().add_decode_error();
            }
        }
    }

    fn lost(&mut self, n: u64) {
        self.batch.push(ConnEvent::lost(mono_now(), n));
    }

    fn flush(&mut self) {
        self.shared.apply_batch(&mut self.batch);
    }
}

pub struct Agent {
    pub shared: Arc<Shared>,
    shutdown: watch::Sender<bool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    attached: Option<ebpf::Attached>,
    maps: Option<Arc<Mutex<ebpf::Maps>>>,
    opts: AgentOptions,
}

impl Agent {
    /// Starts the event stream first, then seeds the table from /proc, so nothing
    /// that happens in between is missed.
    pub async fn start(opts: AgentOptions) -> Agent {
        let (shutdown, shutdown_rx) = watch::channel(false);
        let loaded = if opts.force_polling {
            Err("eBPF disabled by --no-ebpf".to_string())
        } else {
            ebpf::load(&opts.ebpf)
        };
        let mode = match &loaded {
            Ok(l) => Mode::Ebpf(l.transport),
            Err(reason) => Mode::Polling(reason.clone()),
        };
        let started_ns = mono_now();
        let shared = Arc::new(Shared {
            table: Mutex::new(Table::new(opts.limits)),
            taps: Mutex::new(Vec::new()),
            detector: Mutex::new(Detector::new(
                opts.rules.clone(),
                Services::load(),
                started_ns,
            )),
            clock: Clock::new(),
            mode: Mutex::new(mode),
            started_ns,
        });
        let mut agent = Agent {
            shared: shared.clone(),
            shutdown,
            tasks: Vec::new(),
            attached: None,
            maps: None,
            opts: opts.clone(),
        };
        let loaded = match loaded {
            Ok(l) => {
                let make = || BatchSink {
                    shared: shared.clone(),
                    batch: Vec::with_capacity(4096),
                    bad: 0,
                };
                match l.start(make, shutdown_rx.clone()) {
                    Ok((attached, maps)) => {
                        agent.attached = Some(attached);
                        agent.maps = Some(Arc::new(Mutex::new(maps)));
                        true
                    }
                    Err(reason) => {
                        *shared.mode.lock().unwrap_or_else(|p| p.into_inner()) =
                            Mode::Polling(reason);
                        false
                    }
                }
            }
            Err(_) => false,
        };
        if let Mode::Polling(reason) = agent.shared.mode() {
            eprintln!("netta: eBPF unavailable: {reason}; polling /proc instead");
        }
        // Seed.
        agent.reconcile_once(false).await;
        // Loading parsed kernel BTF and seeding read all of /proc/net: give the
        // freed memory back rather than keep it resident for the agent's life.
        // SAFETY: malloc_trim only releases free heap pages.
        unsafe { libc::malloc_trim(0) };
        let polling = !loaded;
        let every = if polling {
            opts.poll_every
        } else {
            opts.reconcile_every
        };
        agent.tasks.push(tokio::spawn(reconcile_loop(
            agent.shared.clone(),
            opts.proc_root.clone(),
            every,
            polling,
            shutdown_rx.clone(),
        )));
        agent.tasks.push(tokio::spawn(detect_loop(
            agent.shared.clone(),
            shutdown_rx.clone(),
        )));
        if let Some(maps) = agent.maps.clone() {
            agent.tasks.push(tokio::spawn(kernel_poll_loop(
                agent.shared.clone(),
                maps,
                opts.udp_idle,
                shutdown_rx,
            )));
        }
        agent
    }

    pub fn mode(&self) -> Mode {
        self.shared.mode()
    }

    /// Re-reads /proc now (views call this so states like CLOSE_WAIT are current).
    pub async fn reconcile_once(&self, emit: bool) {
        reconcile(&self.shared, &self.opts.proc_root, emit).await;
    }

    /// Stops the tasks, reports the UDP flows still open, and detaches the program.
    pub async fn shutdown(mut self) {
        let _ = self.shutdown.send(true);
        if let Some(a) = self.attached.take() {
            a.join().await;
        }
        for t in self.tasks.drain(..) {
            let _ = t.await;
        }
        if let Some(maps) = &self.maps {
            sweep_udp(&self.shared, maps, u64::MAX);
        }
    }
}

async fn reconcile(shared: &Arc<Shared>, root: &std::path::Path, emit: bool) {
    let root = root.to_path_buf();
    let started = mono_now();
    let read = tokio::task::spawn_blocking(move || {
        let snap = proc::read_sockets(&root);
        (snap, root)
    })
    .await;
    let Ok((snap, root)) = read else { return };
    let snap = match snap {
        Ok(s) => s,
        Err(e) => {
            log::warn!("reading /proc/net failed: {e}");
            return;
        }
    };
    for (file, err) in snap.errors.iter().take(3) {
        log::warn!("/proc/net/{file}: {err}");
    }
    // Owners are looked up lazily: a walk of every /proc/<pid>/fd only when a row needs one.
    let mut owners: Option<rustc_hash::FxHashMap<u64, crate::core::proc_net::Owner>> = None;
    let report = {
        let mut t = shared.table();
        t.reconcile(&snap.sockets, started, &mut |inode| {
            owners
                .get_or_insert_with(|| proc::socket_owners(&root))
                .get(&inode)
                .copied()
        })
    };
    if emit {
        let now = mono_now();
        let mut events: Vec<ConnEvent> = Vec::new();
        for c in &report.added {
            events.push(polled_event(c, now, true));
        }
        for c in &report.removed {
            events.push(polled_event(c, now, false));
        }
        {
            let mut t = shared.table();
            t.count_polled(&report, now);
        }
        shared.publish(&events);
    }
}

/// An event synthesised from a /proc difference (polling mode).
fn polled_event(c: &Conn, now: u64, added: bool) -> ConnEvent {
    let listener = c.state == State::Listen || c.state == State::Unconn;
    let action = match (listener, added) {
        (true, true) => Action::ListenStarted,
        (true, false) => Action::ListenStopped,
        (false, true) => Action::Opened,
        (false, false) => Action::Closed,
    };
    ConnEvent {
        action,
        ts_ns: now,
        sock: 0,
        proto: c.proto,
        local: c.local,
        remote: c.remote,
        direction: c.direction,
        pid: c.pid,
        comm: c.comm,
        owner: c.owner,
        start_ns: if added { now } else { c.start_ns },
        bytes_sent: 0,
        bytes_recv: 0,
        count: 0,
        old_state: Some(c.state),
        new_state: Some(if added { c.state } else { State::Close }),
        raw_states: (0, 0),
        partial: true,
    }
}

async fn reconcile_loop(
    shared: Arc<Shared>,
    root: PathBuf,
    every: Duration,
    emit: bool,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut tick = tokio::time::interval(every);
    tick.tick().await;
    loop {
        tokio::select! {
            _ = shutdown.changed() => break,
            _ = tick.tick() => reconcile(&shared, &root, emit).await,
        }
    }
}

/// Polls what the kernel keeps in maps: the lost-record counter and UDP flows.
async fn kernel_poll_loop(
    shared: Arc<Shared>,
    maps: Arc<Mutex<ebpf::Maps>>,
    udp_idle: Duration,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut tick = tokio::time::interval(Duration::from_millis(500));
    let mut lost_seen = 0u64;
    loop {
        // One last pass after shutdown, so losses in the final moments are reported too.
        let stopping = tokio::select! {
            _ = shutdown.changed() => true,
            _ = tick.tick() => false,
        };
        let lost = maps
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .counter(netta_abi::counter::LOST);
        if lost > lost_seen {
            let mut batch = vec![ConnEvent::lost(mono_now(), lost - lost_seen)];
            lost_seen = lost;
            shared.apply_batch(&mut batch);
        }
        let idle_before = mono_now().saturating_sub(udp_idle.as_nanos() as u64);
        sweep_udp(&shared, &maps, idle_before);
        let synack = maps
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .synack_retransmits();
        let mut alerts = Vec::new();
        shared
            .detector()
            .observe_synack(&synack, mono_now(), &mut alerts);
        shared.publish_alerts(alerts);
        if stopping {
            break;
        }
    }
}

/// Table rules and incident expiry once a second; also reports rows the full
/// table had to refuse, so an overload is visible in the stream.
async fn detect_loop(shared: Arc<Shared>, mut shutdown: watch::Receiver<bool>) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    let mut evicted_seen = 0;
    loop {
        tokio::select! {
            _ = shutdown.changed() => break,
            _ = tick.tick() => {
                shared.detect_now();
                shared.flush_drop_notices();
            }
        }
        let evicted = shared.table().counters().table_evicted;
        if evicted > evicted_seen {
            let mut ev = ConnEvent::lost(mono_now(), evicted - evicted_seen);
            ev.action = Action::TableEvicted;
            evicted_seen = evicted;
            shared.publish(&[ev]);
        }
    }
}

/// Copies UDP flow counters from the kernel map, then reports and forgets the
/// flows idle since `idle_before`.
fn sweep_udp(shared: &Shared, maps: &Mutex<ebpf::Maps>, idle_before: u64) {
    let mut maps = maps.lock().unwrap_or_else(|p| p.into_inner());
    let flows = maps.udp_flows();
    let ended: Vec<Closed> = {
        let mut t = shared.table();
        for (k, s) in &flows {
            let remote = flow_remote(k);
            t.update_flow(k.sock, remote, s.packets, s.bytes, s.last_ns);
        }
        t.expire_flows(idle_before)
    };
    if ended.is_empty() {
        return;
    }
    for (k, _) in &flows {
        let remote = flow_remote(k);
        if ended.iter().any(|c| {
            c.conn.key
                == crate::core::table::Key::Flow {
                    sock: k.sock,
                    remote,
                }
        }) {
            maps.forget_udp_flow(k);
        }
    }
    drop(maps);
    let events: Vec<ConnEvent> = ended.iter().map(flow_event).collect();
    shared.publish(&events);
}

fn flow_remote(k: &netta_abi::UdpFlowKey) -> SocketAddr {
    let ip = if k.family == netta_abi::AF_INET {
        std::net::IpAddr::from([
            k.remote_addr[0],
            k.remote_addr[1],
            k.remote_addr[2],
            k.remote_addr[3],
        ])
    } else {
        normalize(std::net::IpAddr::from(k.remote_addr))
    };
    SocketAddr::new(ip, k.remote_port)
}

fn flow_event(c: &Closed) -> ConnEvent {
    let conn = &c.conn;
    let sock = match conn.key {
        crate::core::table::Key::Flow { sock, .. } => sock,
        _ => 0,
    };
    ConnEvent {
        action: Action::UdpFlow,
        ts_ns: c.end_ns,
        sock,
        proto: Proto::Udp,
        local: conn.local,
        remote: conn.remote,
        direction: Direction::Egress,
        pid: conn.pid,
        comm: conn.comm,
        owner: conn.owner,
        start_ns: conn.start_ns,
        bytes_sent: conn.bytes_sent,
        bytes_recv: 0,
        count: conn.packets,
        old_state: None,
        new_state: None,
        raw_states: (0, 0),
        partial: false,
    }
}

impl OwnerSource {
    pub fn name(self) -> &'static str {
        match self {
            OwnerSource::Hook => "hook",
            OwnerSource::Listener => "listener",
            OwnerSource::Proc => "proc",
            OwnerSource::Unknown => "unknown",
        }
    }
}
