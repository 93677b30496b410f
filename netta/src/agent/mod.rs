//! The running agent: it owns the live table and keeps it current, from kernel
//! records when eBPF loads and from /proc polling when it does not. Everything it
//! reads from the machine comes through a [`Host`], taken as a value. Records
//! (events and alerts) go out on the [`bus`] that views, sinks and metrics
//! subscribe to.
mod bus;
pub mod dns;
mod live;
pub mod owners;
mod tasks;
#[cfg(test)]
mod tests;

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::sync::{mpsc, watch};

pub use bus::Record;

use crate::core::clock::Clock;
use crate::core::dns_cache;
use crate::core::event::{Action, ConnEvent};
use crate::core::pipeline::{self, ProcRecords};
use crate::core::process;
use crate::core::services::Services;
use crate::core::table::{Limits, Snapshot, Table};
use crate::detect::{Alert, Detector, Rules};
use crate::host::{ebpf, Host, KernelMaps, Os, RecordHandler, Transport};

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
    /// `connection-updated` events this often for connections that moved data
    /// (`None`: none).
    pub update_every: Option<Duration>,
    pub limits: Limits,
    pub rules: Rules,
    /// The stored `new-destination` baseline: learning start (wall µs) and what it knows.
    pub baseline: Option<(i64, Vec<crate::detect::new_destination::Dest>)>,
    /// Capture DNS responses and name connections by them (`--no-dns`: off).
    pub dns: bool,
    pub dns_limits: dns_cache::Limits,
    /// Bounds of the process cache. (`ebpf.process_args` says whether processes'
    /// arguments are kept.)
    pub process_limits: process::Limits,
}

impl Default for AgentOptions {
    fn default() -> Self {
        let d = crate::settings::defaults::defaults();
        AgentOptions {
            force_polling: false,
            ebpf: ebpf::Options::default(),
            reconcile_every: d.reconcile_interval,
            poll_every: d.poll_interval,
            udp_idle: d.udp_idle,
            update_every: Some(d.update_interval),
            limits: Limits::default(),
            rules: Rules::default(),
            baseline: None,
            dns: true,
            dns_limits: dns_cache::Limits::DEFAULT,
            process_limits: process::Limits::DEFAULT,
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

/// State shared by the agent's tasks.
pub struct Shared {
    table: Mutex<Table>,
    bus: Mutex<bus::Bus>,
    detector: Mutex<Detector>,
    pub clock: Clock,
    mode: Mutex<Mode>,
    pub started_ns: u64,
    services: Services,
    host: Arc<dyn Host>,
    dns: Mutex<dns::DnsState>,
    /// Whether DNS attribution is on (it costs nothing when off).
    dns_on: bool,
    owners: Mutex<owners::Owners>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Shared {
    pub fn mode(&self) -> Mode {
        lock(&self.mode).clone()
    }

    pub fn table(&self) -> MutexGuard<'_, Table> {
        lock(&self.table)
    }

    pub fn detector(&self) -> MutexGuard<'_, Detector> {
        lock(&self.detector)
    }

    /// The DNS cache and the capture's counts.
    pub fn dns(&self) -> MutexGuard<'_, dns::DnsState> {
        lock(&self.dns)
    }

    pub fn dns_on(&self) -> bool {
        self.dns_on
    }

    /// The process cache and the names of users and containers.
    pub fn owners(&self) -> MutexGuard<'_, owners::Owners> {
        lock(&self.owners)
    }

    /// Port names, read from the host once at start.
    pub fn services(&self) -> &Services {
        &self.services
    }

    /// Now, on the kernel's clock.
    pub fn now_ns(&self) -> u64 {
        self.host.now_ns()
    }

    /// Runs the table rules on the current table and publishes new alerts.
    pub fn detect_now(&self) {
        let snap = Snapshot {
            conns: self.table().rules_rows(),
            ..Snapshot::default()
        };
        let now = self.now_ns();
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

    /// The open rows and counters only (no history copy).
    pub fn live_snapshot(&self) -> Snapshot {
        self.table().live_snapshot()
    }

    /// The pipeline on one batch: the owners (process records taking effect at
    /// their place), detection, then the table, then what changed and any alerts
    /// to the bus.
    pub fn apply_batch(&self, batch: &mut Vec<ConnEvent>, procs: &mut ProcRecords) {
        if !procs.is_empty() || !batch.is_empty() {
            self.owners().identify(batch, procs);
            procs.clear();
        }
        if batch.is_empty() {
            return;
        }
        let mut alerts = Vec::new();
        if self.dns_on {
            let dns = self.dns();
            pipeline::attribute(&self.table(), &dns.cache, batch, self.now_ns());
        }
        pipeline::detect(&mut *self.detector(), batch, &mut alerts);
        pipeline::apply(&mut self.table(), batch);
        self.publish_batch(batch);
        batch.clear();
        self.publish_alerts(alerts);
    }

    pub fn publish(&self, events: &[ConnEvent]) {
        if events.is_empty() || lock(&self.bus).is_empty() {
            return;
        }
        self.send(events.len(), |i| Record::Event(events[i].clone()));
    }

    /// [`Shared::publish`] for a batch that is cleared next: the last tap gets
    /// its events moved, not copied.
    fn publish_batch(&self, batch: &mut [ConnEvent]) {
        if batch.is_empty() || lock(&self.bus).is_empty() {
            return;
        }
        self.send_with(batch.len(), |i, last| {
            Record::Event(if last {
                std::mem::replace(&mut batch[i], ConnEvent::blank(Action::Opened, 0))
            } else {
                batch[i].clone()
            })
        });
    }

    fn send(&self, len: usize, record: impl Fn(usize) -> Record) {
        self.send_with(len, |i, _| record(i));
    }

    fn send_with(&self, len: usize, record: impl FnMut(usize, bool) -> Record) {
        let mut bus = lock(&self.bus);
        if bus.is_empty() || len == 0 {
            return;
        }
        let dropped = bus.send(self.now_ns(), len, record);
        drop(bus);
        if dropped > 0 {
            self.table().add_lost(dropped);
        }
    }

    /// Tells subscribers that dropped records how many.
    pub fn flush_drop_notices(&self) {
        lock(&self.bus).flush_drop_notices(self.now_ns());
    }

    pub fn subscribe(&self, capacity: usize) -> mpsc::Receiver<Record> {
        lock(&self.bus).subscribe(capacity)
    }
}

/// Decodes ring/perf records into a reusable batch (no allocation per record).
struct BatchDecoder {
    shared: Arc<Shared>,
    batch: Vec<ConnEvent>,
    procs: ProcRecords,
    bad: u64,
}

impl RecordHandler for BatchDecoder {
    fn record(&mut self, bytes: &[u8]) {
        if netta_ebpf::record_kind(bytes) == Some(netta_ebpf::Kind::DnsAnswer as u8) {
            // Connections decoded before the answer are applied first: it names
            // only those that follow it.
            self.shared.apply_batch(&mut self.batch, &mut self.procs);
            dns::kernel_record(&self.shared, bytes);
            return;
        }
        match pipeline::decode_into(&mut self.batch, &mut self.procs, bytes) {
            Ok(()) => {
                if self.batch.len() + self.procs.len() >= pipeline::BATCH {
                    self.shared.apply_batch(&mut self.batch, &mut self.procs);
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
        self.batch.push(ConnEvent::lost(self.shared.now_ns(), n));
    }

    fn flush(&mut self) {
        self.shared.apply_batch(&mut self.batch, &mut self.procs);
    }
}

type Readers = std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>;

pub struct Agent {
    pub shared: Arc<Shared>,
    shutdown: watch::Sender<bool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    readers: Option<Readers>,
    maps: Option<Arc<Mutex<Box<dyn KernelMaps>>>>,
    dns_capture: Option<Readers>,
}

impl Agent {
    /// The agent on this machine.
    pub async fn start(opts: AgentOptions) -> Agent {
        Agent::start_on(Arc::new(Os::default()), opts).await
    }

    /// Starts the event stream first, then seeds the table from /proc, so nothing
    /// that happens in between is missed.
    pub async fn start_on(host: Arc<dyn Host>, opts: AgentOptions) -> Agent {
        let (shutdown, shutdown_rx) = watch::channel(false);
        let started_ns = host.now_ns();
        let services = host.services();
        let clock = host.clock();
        let mut detector = Detector::new(opts.rules.clone(), services.clone(), started_ns);
        if let Some((started_us, known)) = opts.baseline.clone() {
            let until_wall_ns =
                started_us as i128 * 1000 + opts.rules.new_destination.learning.as_nanos() as i128;
            let until = (until_wall_ns - clock.offset_ns()).clamp(0, u64::MAX as i128) as u64;
            detector.load_baseline(known, until);
        }
        let shared = Arc::new(Shared {
            table: Mutex::new(Table::new(opts.limits)),
            bus: Mutex::new(bus::Bus::default()),
            detector: Mutex::new(detector),
            clock,
            mode: Mutex::new(Mode::Polling(String::new())),
            started_ns,
            services,
            host: host.clone(),
            dns: Mutex::new(dns::DnsState::new(opts.dns_limits)),
            dns_on: opts.dns,
            owners: Mutex::new(owners::Owners::new(
                host.clone(),
                opts.process_limits,
                opts.ebpf.process_args,
            )),
        });
        // The processes older than netta, before the stream starts: its first
        // records may be theirs. (Those started meanwhile are seeded again below.)
        tasks::seed_processes(&shared).await;
        let kernel = if opts.force_polling {
            Err("eBPF disabled by --no-ebpf".to_string())
        } else {
            let make = || -> Box<dyn RecordHandler> {
                Box::new(BatchDecoder {
                    shared: shared.clone(),
                    batch: Vec::with_capacity(pipeline::BATCH),
                    procs: ProcRecords::new(),
                    bad: 0,
                })
            };
            let ebpf = crate::host::ebpf::Options {
                dns: opts.dns,
                ..opts.ebpf
            };
            host.start_kernel(&ebpf, &make, shutdown_rx.clone())
        };
        let mut agent = Agent {
            shared: shared.clone(),
            shutdown,
            tasks: Vec::new(),
            readers: None,
            maps: None,
            dns_capture: None,
        };
        // DNS answers come with the kernel's records when its program captures
        // them; otherwise from an AF_PACKET capture in every namespace.
        let dns_in_kernel = kernel.as_ref().is_ok_and(|k| k.dns_in_kernel);
        if opts.dns && !dns_in_kernel {
            let ingest = Box::new(dns::Ingest {
                shared: shared.clone(),
            });
            match host.start_dns(ingest, shutdown_rx.clone()) {
                Ok(c) => agent.dns_capture = Some(c.join),
                Err(reason) => eprintln!("netta: DNS capture unavailable: {reason}"),
            }
        }
        *lock(&shared.mode) = match kernel {
            Ok(k) => {
                agent.readers = Some(k.readers);
                agent.maps = Some(Arc::new(Mutex::new(k.maps)));
                Mode::Ebpf(k.transport)
            }
            Err(reason) => Mode::Polling(reason),
        };
        if let Mode::Polling(reason) = agent.shared.mode() {
            eprintln!("netta: eBPF unavailable: {reason}; polling /proc instead");
        }
        // Seed.
        tasks::seed_processes(&agent.shared).await;
        // (Seeding ends by giving back what loading and the read freed.)
        agent.reconcile_once(false).await;
        let polling = agent.maps.is_none();
        let every = if polling {
            opts.poll_every
        } else {
            opts.reconcile_every
        };
        agent.tasks.push(tokio::spawn(tasks::reconcile_loop(
            agent.shared.clone(),
            every,
            polling,
            shutdown_rx.clone(),
        )));
        agent.tasks.push(tokio::spawn(tasks::detect_loop(
            agent.shared.clone(),
            opts.update_every,
            shutdown_rx.clone(),
        )));
        if let Some(maps) = agent.maps.clone() {
            agent.tasks.push(tokio::spawn(tasks::kernel_poll_loop(
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
        tasks::reconcile(&self.shared, emit).await;
    }

    /// Stops the tasks, reports the UDP flows still open, and detaches the program.
    pub async fn shutdown(mut self) {
        let _ = self.shutdown.send(true);
        if let Some(r) = self.readers.take() {
            r.await;
        }
        if let Some(d) = self.dns_capture.take() {
            d.await;
        }
        for t in self.tasks.drain(..) {
            let _ = t.await;
        }
        if let Some(maps) = &self.maps {
            tasks::sweep_udp(&self.shared, maps, u64::MAX);
        }
    }
}
