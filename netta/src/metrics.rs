//! Prometheus metrics: a small HTTP endpoint (`GET /metrics`) over the running agent.
//!
//! Two kinds of numbers are exported:
//!
//! * **Stream counters**, counted from one tap on the agent's record stream
//!   (`Shared::subscribe`): connections opened/closed/failed, bytes of closed
//!   connections and ended UDP flows, UDP flows, and alerts. They start at zero
//!   when the endpoint starts.
//! * **Scrape-time values**, read from the live table, the detector and
//!   `/proc/self` when scraped: live rows by state, the table's own counters
//!   (which count from agent start), open incidents and process metrics.
//!
//! Losses, kept apart on purpose:
//!
//! * `netta_lost_events_total` is the table's `Counters::lost`: kernel records
//!   lost (ring/perf buffer full) plus records dropped by *any* slow tap. It is the
//!   agent-wide loss figure.
//! * `netta_metrics_tap_lost_total` sums the `EventsLost` records this endpoint's
//!   own tap received: kernel losses plus the records this tap dropped while full.
//!   The stream counters undercount by at most this much.
//!
//! Every label value comes from a fixed set (`Proto::name`, `Direction::name`,
//! `State::name`, `RuleId::id`, the mode and the crate version): no addresses,
//! ports or pids, so the number of series stays bounded.
//!
//! The HTTP server is deliberately tiny: one request per connection
//! (`Connection: close`), a bounded request head ([`MAX_HEAD`], else 431), a
//! timeout for idle clients ([`HEAD_TIMEOUT`], then 408) and a cap on concurrent
//! clients. Responses are OpenMetrics when the client's `Accept` asks for it (as
//! Prometheus does), else the classic Prometheus text format 0.0.4 (curl,
//! `promtool check metrics`).
use std::collections::BTreeMap;
use std::fmt;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{
    DescriptorEncoder, EncodeCounterValue, EncodeGaugeValue, EncodeLabelSet, EncodeMetric,
};
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::{Registry, Unit};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch, Semaphore};

use crate::agent::{Mode, Record, Shared};
use crate::detect::RuleId;
use crate::event::{Action, ConnEvent, Direction, Proto, State};
use crate::table::Counters;

/// Largest request head accepted; a longer one is answered with 431.
pub const MAX_HEAD: usize = 8 * 1024;
/// How long a client may take to send its request head; then 408.
pub const HEAD_TIMEOUT: Duration = Duration::from_secs(5);
/// How long writing a response may take.
const WRITE_TIMEOUT: Duration = Duration::from_secs(10);
/// Clients served at once; more wait in the listen backlog.
const MAX_CLIENTS: usize = 16;
/// Capacity of the metrics tap on the record stream.
pub const TAP_CAPACITY: usize = 65_536;

pub const OPENMETRICS_CONTENT_TYPE: &str =
    "application/openmetrics-text; version=1.0.0; charset=utf-8";
pub const PROMETHEUS_CONTENT_TYPE: &str =
    prometheus_client::encoding::prometheus_text::CONTENT_TYPE;

const TRANSPORTS: [Proto; 2] = [Proto::Tcp, Proto::Udp];
const DIRECTIONS: [Direction; 3] = [Direction::Egress, Direction::Ingress, Direction::Unknown];
const CONN_EVENTS: [&str; 3] = ["opened", "closed", "failed"];
/// Every rule, so each `netta_alerts_total` series exists from the start.
const RULES: [RuleId; 9] = [
    RuleId::UnusualHighPort,
    RuleId::HighConnectionCount,
    RuleId::PortScan,
    RuleId::SynFlood,
    RuleId::ConnectionBurst,
    RuleId::FanOut,
    RuleId::NewListener,
    RuleId::LargeOutbound,
    RuleId::AbnormalState,
];
/// States each transport's live-row gauge always reports (other combinations
/// appear only while nonzero).
const UDP_STATES: [State; 3] = [State::Unconn, State::Established, State::Flow];

type Labels<const N: usize> = [(&'static str, &'static str); N];

/// The exposition format of a scrape.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    OpenMetrics,
    /// Prometheus text format 0.0.4.
    Prometheus,
}

impl Format {
    pub fn content_type(self) -> &'static str {
        match self {
            Format::OpenMetrics => OPENMETRICS_CONTENT_TYPE,
            Format::Prometheus => PROMETHEUS_CONTENT_TYPE,
        }
    }

    /// OpenMetrics when the `Accept` header names it, else the classic text format.
    pub fn negotiate(accept: Option<&str>) -> Format {
        match accept {
            Some(a)
                if a.to_ascii_lowercase()
                    .contains("application/openmetrics-text") =>
            {
                Format::OpenMetrics
            }
            _ => Format::Prometheus,
        }
    }
}

/// The agent's CPU time and memory, from `/proc/self`.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Process {
    pub cpu_seconds: f64,
    pub resident_bytes: u64,
    /// Since the epoch.
    pub start_time_seconds: f64,
    pub open_fds: u64,
    pub max_fds: u64,
}

impl Process {
    pub fn read() -> Option<Process> {
        let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
        let status = std::fs::read_to_string("/proc/self/status").ok()?;
        // SAFETY: sysconf has no memory-safety preconditions.
        let tck = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
        let btime = std::fs::read_to_string("/proc/stat")
            .ok()
            .and_then(|s| {
                s.lines()
                    .find_map(|l| l.strip_prefix("btime "))
                    .and_then(|v| v.trim().parse::<u64>().ok())
            })
            .unwrap_or(0);
        let mut p = Process::parse(
            &stat,
            &status,
            if tck > 0 { tck as f64 } else { 100.0 },
            btime,
        )?;
        p.open_fds = std::fs::read_dir("/proc/self/fd").map_or(0, |d| d.count() as u64);
        let mut lim = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: valid out-pointer.
        if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } == 0 {
            p.max_fds = lim.rlim_cur;
        }
        Some(p)
    }

    /// `stat`: `/proc/self/stat`; `status`: `/proc/self/status`; `clk_tck`: ticks/s;
    /// `btime`: boot time, seconds since the epoch (`/proc/stat`).
    pub fn parse(stat: &str, status: &str, clk_tck: f64, btime: u64) -> Option<Process> {
        // The command name may contain spaces and parentheses: fields follow the last ')'.
        let rest = &stat[stat.rfind(')')? + 1..];
        let f: Vec<&str> = rest.split_whitespace().collect();
        // f[0] is field 3 (state); utime and stime are fields 14 and 15.
        let utime: u64 = f.get(11)?.parse().ok()?;
        let stime: u64 = f.get(12)?.parse().ok()?;
        // Field 22: start time in ticks after boot.
        let start: u64 = f.get(19)?.parse().ok()?;
        let rss_kb: u64 = status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        Some(Process {
            cpu_seconds: (utime + stime) as f64 / clk_tck,
            resident_bytes: rss_kb * 1024,
            start_time_seconds: btime as f64 + start as f64 / clk_tck,
            open_fds: 0,
            max_fds: 0,
        })
    }
}

/// What a scrape reads from the agent at that moment.
#[derive(Clone, Debug)]
pub struct Sample {
    pub mode: Mode,
    pub counters: Counters,
    /// Live rows by (transport, state) name.
    pub live: BTreeMap<(&'static str, &'static str), u64>,
    /// Open (not yet ended) incidents by rule id.
    pub open_incidents: BTreeMap<&'static str, u64>,
    pub process: Option<Process>,
}

impl Sample {
    /// An empty sample: every fixed series at zero.
    pub fn new(mode: Mode) -> Sample {
        let mut live = BTreeMap::new();
        for st in State::ALL {
            if st != State::Unconn && st != State::Flow {
                live.insert((Proto::Tcp.name(), st.name()), 0);
            }
        }
        for st in UDP_STATES {
            live.insert((Proto::Udp.name(), st.name()), 0);
        }
        Sample {
            mode,
            counters: Counters::default(),
            live,
            open_incidents: RULES.iter().map(|r| (r.id(), 0)).collect(),
            process: None,
        }
    }

    pub fn count_live(&mut self, proto: Proto, state: State) {
        *self.live.entry((proto.name(), state.name())).or_default() += 1;
    }

    /// Reads the agent's table, detector, mode and process figures.
    pub fn read(shared: &Shared) -> Sample {
        let mut s = Sample::new(shared.mode());
        {
            let t = shared.table();
            s.counters = t.counters();
            for c in t.conns() {
                s.count_live(c.proto, c.state);
            }
        }
        for a in shared.detector().incidents() {
            if !a.ended {
                *s.open_incidents.entry(a.rule.id()).or_default() += 1;
            }
        }
        s.process = Process::read();
        s
    }

    fn encode(&self, enc: &mut DescriptorEncoder) -> fmt::Result {
        let c = &self.counters;
        let mode = match self.mode {
            Mode::Ebpf(_) => "ebpf",
            Mode::Polling(_) => "polling",
        };
        gauge_family(
            enc,
            "netta_info",
            "Agent build and mode (ebpf: kernel events, polling: /proc); always 1.",
            None,
            [(
                [("mode", mode), ("version", env!("CARGO_PKG_VERSION"))],
                1i64,
            )],
        )?;
        gauge_family(
            enc,
            "netta_live_connections",
            "Rows in the live connection table by state (listeners, sockets and UDP flows included).",
            None,
            self.live
                .iter()
                .map(|(&(transport, state), &n)| ([("state", state), ("transport", transport)], n)),
        )?;
        gauge_family(
            enc,
            "netta_open_incidents",
            "Detection incidents currently open, by rule.",
            None,
            self.open_incidents
                .iter()
                .map(|(&rule, &n)| ([("rule", rule)], n)),
        )?;
        counter(
            enc,
            "netta_events_processed",
            "Connection events applied to the table since agent start.",
            None,
            c.events,
        )?;
        counter(
            enc,
            "netta_connections_observed",
            "Rows ever inserted into the table (unique connections observed) since agent start.",
            None,
            c.observed,
        )?;
        counter(
            enc,
            "netta_table_evicted",
            "Rows refused because the live table was at its cap.",
            None,
            c.table_evicted,
        )?;
        counter(
            enc,
            "netta_history_evicted",
            "Closed connections pushed out of the bounded history.",
            None,
            c.history_evicted,
        )?;
        counter(
            enc,
            "netta_lost_events",
            "Records lost agent-wide: kernel buffer overruns plus records dropped by slow taps.",
            None,
            c.lost,
        )?;
        counter(
            enc,
            "netta_decode_errors",
            "Kernel records the decoder refused.",
            None,
            c.decode_errors,
        )?;
        counter_family(
            enc,
            "netta_reconcile_healed",
            "Table rows corrected by /proc reconciliation (added: missed open, removed: missed close).",
            None,
            [
                ([("change", "added")], c.healed_added),
                ([("change", "removed")], c.healed_removed),
            ],
        )?;
        if let Some(p) = self.process {
            // The standard process series (as every Prometheus client library names them).
            counter(
                enc,
                "process_cpu",
                "Total user and system CPU time spent in seconds.",
                Some(&Unit::Seconds),
                p.cpu_seconds,
            )?;
            gauge(
                enc,
                "process_resident_memory",
                "Resident memory size in bytes.",
                Some(&Unit::Bytes),
                p.resident_bytes,
            )?;
            gauge(
                enc,
                "process_start_time",
                "Start time of the process since unix epoch in seconds.",
                Some(&Unit::Seconds),
                p.start_time_seconds,
            )?;
            gauge(
                enc,
                "process_open_fds",
                "Number of open file descriptors.",
                None,
                p.open_fds as i64,
            )?;
            gauge(
                enc,
                "process_max_fds",
                "Maximum number of open file descriptors.",
                None,
                p.max_fds as i64,
            )?;
        }
        Ok(())
    }
}

fn gauge(
    enc: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    unit: Option<&Unit>,
    v: impl EncodeGaugeValue,
) -> fmt::Result {
    ConstGauge::new(v).encode(enc.encode_descriptor(name, help, unit, MetricType::Gauge)?)
}

fn counter(
    enc: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    unit: Option<&Unit>,
    v: impl EncodeCounterValue,
) -> fmt::Result {
    ConstCounter::new(v).encode(enc.encode_descriptor(name, help, unit, MetricType::Counter)?)
}

fn gauge_family<L: EncodeLabelSet, V: EncodeGaugeValue>(
    enc: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    unit: Option<&Unit>,
    rows: impl IntoIterator<Item = (L, V)>,
) -> fmt::Result {
    let mut m = enc.encode_descriptor(name, help, unit, MetricType::Gauge)?;
    for (labels, v) in rows {
        ConstGauge::new(v).encode(m.encode_family(&labels)?)?;
    }
    Ok(())
}

fn counter_family<L: EncodeLabelSet, V: EncodeCounterValue>(
    enc: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    unit: Option<&Unit>,
    rows: impl IntoIterator<Item = (L, V)>,
) -> fmt::Result {
    let mut m = enc.encode_descriptor(name, help, unit, MetricType::Counter)?;
    for (labels, v) in rows {
        ConstCounter::new(v).encode(m.encode_family(&labels)?)?;
    }
    Ok(())
}

/// Reads a [`Sample`] on every scrape.
struct Sampler(Box<dyn Fn() -> Sample + Send + Sync>);

impl fmt::Debug for Sampler {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Sampler")
    }
}

impl Collector for Sampler {
    fn encode(&self, mut encoder: DescriptorEncoder) -> fmt::Result {
        (self.0)().encode(&mut encoder)
    }
}

/// The metric registry: stream counters plus the scrape-time sampler.
pub struct Metrics {
    registry: Registry,
    connections: Family<Labels<3>, Counter>,
    bytes: Family<Labels<2>, Counter>,
    udp_flows: Counter,
    alerts: Family<Labels<1>, Counter>,
    tap_lost: Counter,
}

impl fmt::Debug for Metrics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Metrics {
    /// Metrics over a running agent (scrape-time values from `shared`).
    pub fn for_agent(shared: Arc<Shared>) -> Metrics {
        Metrics::with_sampler(move || Sample::read(&shared))
    }

    /// Metrics whose scrape-time values come from `sample` (tests use a fixed one).
    pub fn with_sampler(sample: impl Fn() -> Sample + Send + Sync + 'static) -> Metrics {
        let m = Metrics {
            registry: Registry::default(),
            connections: Family::default(),
            bytes: Family::default(),
            udp_flows: Counter::default(),
            alerts: Family::default(),
            tap_lost: Counter::default(),
        };
        // Create every fixed series so rates work from the first scrape.
        for event in CONN_EVENTS {
            for d in DIRECTIONS {
                for t in TRANSPORTS {
                    m.connections.get_or_create_owned(&conn_labels(event, d, t));
                }
            }
        }
        for dir in ["sent", "received"] {
            for t in TRANSPORTS {
                m.bytes
                    .get_or_create_owned(&[("direction", dir), ("transport", t.name())]);
            }
        }
        for r in RULES {
            m.alerts.get_or_create_owned(&[("rule", r.id())]);
        }
        let mut m = m;
        let r = &mut m.registry;
        r.register(
            "netta_connections",
            "Connections opened, closed and failed (seen since the metrics endpoint started)",
            m.connections.clone(),
        );
        r.register(
            "netta_bytes",
            "Bytes of closed TCP connections and ended UDP flows (received: TCP only)",
            m.bytes.clone(),
        );
        r.register(
            "netta_udp_flows",
            "UDP flows reported when they ended",
            m.udp_flows.clone(),
        );
        r.register(
            "netta_alerts",
            "Detection incidents opened, by rule",
            m.alerts.clone(),
        );
        r.register(
            "netta_metrics_tap_lost",
            "Records the metrics tap missed (kernel losses and its own drops): stream counters undercount by this",
            m.tap_lost.clone(),
        );
        r.register_collector(Box::new(Sampler(Box::new(sample))));
        m
    }

    /// Counts one record of the agent's stream.
    pub fn observe(&self, rec: &Record) {
        match rec {
            Record::Event(ev) => self.observe_event(ev),
            Record::Alert(a) => {
                if !a.ended {
                    self.alerts.get_or_create(&[("rule", a.rule.id())]).inc();
                }
            }
        }
    }

    fn observe_event(&self, ev: &ConnEvent) {
        let t = ev.proto;
        match ev.action {
            Action::Opened => self.conn("opened", ev),
            Action::Failed => self.conn("failed", ev),
            Action::Closed => {
                self.conn("closed", ev);
                self.add_bytes("sent", t, ev.bytes_sent);
                self.add_bytes("received", t, ev.bytes_recv);
            }
            Action::UdpFlow => {
                self.udp_flows.inc();
                self.add_bytes("sent", t, ev.bytes_sent);
            }
            Action::EventsLost => {
                self.tap_lost.inc_by(ev.count);
            }
            Action::ListenStarted
            | Action::ListenStopped
            | Action::StateChanged
            | Action::ResetSent
            | Action::TableEvicted
            | Action::Pending => {}
        }
    }

    fn conn(&self, event: &'static str, ev: &ConnEvent) {
        self.connections
            .get_or_create(&conn_labels(event, ev.direction, ev.proto))
            .inc();
    }

    fn add_bytes(&self, dir: &'static str, t: Proto, n: u64) {
        if n > 0 {
            self.bytes
                .get_or_create(&[("direction", dir), ("transport", t.name())])
                .inc_by(n);
        }
    }

    /// Encodes every metric.
    pub fn render(&self, format: Format) -> String {
        let mut out = String::with_capacity(8 * 1024);
        let r = match format {
            Format::OpenMetrics => {
                prometheus_client::encoding::text::encode(&mut out, &self.registry)
            }
            Format::Prometheus => {
                prometheus_client::encoding::prometheus_text::encode(&mut out, &self.registry)
            }
        };
        // Writing to a String cannot fail; an encoder error would be a bug here.
        if let Err(e) = r {
            log::warn!("encoding metrics failed: {e}");
        }
        out
    }

    /// Counts the stream until it ends or `stop` resolves.
    async fn follow(
        self: Arc<Self>,
        mut rx: mpsc::Receiver<Record>,
        stop: impl Future<Output = ()>,
    ) {
        tokio::pin!(stop);
        let mut buf = Vec::with_capacity(1024);
        loop {
            tokio::select! {
                _ = &mut stop => break,
                n = rx.recv_many(&mut buf, 1024) => {
                    if n == 0 {
                        break;
                    }
                    for rec in buf.drain(..) {
                        self.observe(&rec);
                    }
                }
            }
        }
    }
}

fn conn_labels(event: &'static str, d: Direction, t: Proto) -> Labels<3> {
    [
        ("event", event),
        ("direction", d.name()),
        ("transport", t.name()),
    ]
}

/// Binds the metrics listener; the error is the bind's own, for the caller to
/// report (`cannot listen on ADDR: …`). Port 0 picks a free port (`local_addr`).
pub async fn bind(addr: SocketAddr) -> io::Result<TcpListener> {
    TcpListener::bind(addr).await
}

/// Binds `addr` and serves metrics until `shutdown` becomes true (or its sender is dropped).
pub async fn serve(
    addr: SocketAddr,
    shared: Arc<Shared>,
    shutdown: watch::Receiver<bool>,
) -> io::Result<()> {
    let listener = bind(addr).await?;
    serve_on(listener, shared, shutdown).await
}

/// Serves metrics on a bound listener until `shutdown` becomes true (or its sender
/// is dropped). Subscribes its tap before accepting the first client.
pub async fn serve_on(
    listener: TcpListener,
    shared: Arc<Shared>,
    shutdown: watch::Receiver<bool>,
) -> io::Result<()> {
    let metrics = Arc::new(Metrics::for_agent(shared.clone()));
    let rx = shared.subscribe(TAP_CAPACITY);
    let tap = tokio::spawn(metrics.clone().follow(rx, stopped(shutdown.clone())));
    let stop = stopped(shutdown);
    tokio::pin!(stop);
    let slots = Arc::new(Semaphore::new(MAX_CLIENTS));
    loop {
        let permit = tokio::select! {
            _ = &mut stop => break,
            p = slots.clone().acquire_owned() => p.expect("the semaphore is never closed"),
        };
        let stream = tokio::select! {
            _ = &mut stop => break,
            r = listener.accept() => match r {
                Ok((s, _)) => s,
                Err(e) => {
                    // Out of descriptors and the like: wait instead of spinning.
                    log::warn!("metrics: accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let m = metrics.clone();
        tokio::spawn(async move {
            handle(stream, m).await;
            drop(permit);
        });
    }
    let _ = tap.await;
    Ok(())
}

/// Resolves once the value is true or the sender is gone.
async fn stopped(mut rx: watch::Receiver<bool>) {
    let _ = rx.wait_for(|&v| v).await;
}

/// A parsed request head.
#[derive(Debug, PartialEq, Eq)]
struct Head {
    method: String,
    path: String,
    accept: Option<String>,
}

#[derive(Debug, PartialEq, Eq)]
enum HeadError {
    /// The client closed before sending anything.
    Closed,
    TooLarge,
    Malformed,
}

/// Reads up to the blank line ending the head; refuses heads over [`MAX_HEAD`].
async fn read_head<R: tokio::io::AsyncRead + Unpin>(r: &mut R) -> Result<Head, HeadError> {
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 1024];
    loop {
        let n = r.read(&mut chunk).await.map_err(|_| HeadError::Closed)?;
        if n == 0 {
            return Err(if buf.is_empty() {
                HeadError::Closed
            } else {
                HeadError::Malformed
            });
        }
        let from = buf.len().saturating_sub(3);
        buf.extend_from_slice(&chunk[..n]);
        if let Some(end) = head_end(&buf, from) {
            if end > MAX_HEAD {
                return Err(HeadError::TooLarge);
            }
            return parse_head(&buf[..end]);
        }
        if buf.len() > MAX_HEAD {
            return Err(HeadError::TooLarge);
        }
    }
}

/// End of the head (after its blank line), searching from `from`.
fn head_end(buf: &[u8], from: usize) -> Option<usize> {
    let mut i = from;
    while i < buf.len() {
        if buf[i] == b'\n' {
            if buf[i + 1..].starts_with(b"\r\n") {
                return Some(i + 3);
            }
            if buf[i + 1..].starts_with(b"\n") {
                return Some(i + 2);
            }
        }
        i += 1;
    }
    None
}

fn parse_head(head: &[u8]) -> Result<Head, HeadError> {
    let text = std::str::from_utf8(head).map_err(|_| HeadError::Malformed)?;
    let mut lines = text.lines();
    let mut parts = lines.next().unwrap_or("").split_whitespace();
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(HeadError::Malformed);
    };
    if !version.starts_with("HTTP/1.") {
        return Err(HeadError::Malformed);
    }
    let path = target.split(['?', '#']).next().unwrap_or("");
    let accept = lines
        .filter_map(|l| l.split_once(':'))
        .find(|(k, _)| k.trim().eq_ignore_ascii_case("accept"))
        .map(|(_, v)| v.trim().to_string());
    Ok(Head {
        method: method.to_string(),
        path: path.to_string(),
        accept,
    })
}

struct Response {
    status: &'static str,
    content_type: &'static str,
    extra: &'static str,
    body: String,
}

impl Response {
    fn text(status: &'static str, body: impl Into<String>) -> Response {
        Response {
            status,
            content_type: "text/plain; charset=utf-8",
            extra: "",
            body: body.into(),
        }
    }

    fn bytes(&self, with_body: bool) -> Vec<u8> {
        let mut out = format!(
            "HTTP/1.1 {}\r\nContent-Type: {}\r\nContent-Length: {}\r\nCache-Control: no-store\r\n{}Connection: close\r\n\r\n",
            self.status,
            self.content_type,
            self.body.len(),
            self.extra,
        )
        .into_bytes();
        if with_body {
            out.extend_from_slice(self.body.as_bytes());
        }
        out
    }
}

const INDEX: &str = "netta agent: Prometheus metrics are at /metrics\n";

async fn route(head: &Head, metrics: &Arc<Metrics>) -> Response {
    if head.method != "GET" && head.method != "HEAD" {
        let mut r = Response::text("405 Method Not Allowed", "only GET and HEAD\n");
        r.extra = "Allow: GET, HEAD\r\n";
        return r;
    }
    match head.path.as_str() {
        "/metrics" => {
            let format = Format::negotiate(head.accept.as_deref());
            let m = metrics.clone();
            // Reading the table can take a few ms on a large table: off the async workers.
            match tokio::task::spawn_blocking(move || m.render(format)).await {
                Ok(body) => Response {
                    status: "200 OK",
                    content_type: format.content_type(),
                    extra: "",
                    body,
                },
                Err(e) => {
                    log::warn!("metrics: rendering failed: {e}");
                    Response::text("500 Internal Server Error", "rendering metrics failed\n")
                }
            }
        }
        "/" => Response::text("200 OK", INDEX),
        _ => Response::text("404 Not Found", "not found; metrics are at /metrics\n"),
    }
}

async fn handle(mut stream: TcpStream, metrics: Arc<Metrics>) {
    let (resp, with_body) = match tokio::time::timeout(HEAD_TIMEOUT, read_head(&mut stream)).await {
        Err(_) => (
            Response::text("408 Request Timeout", "timed out reading the request\n"),
            true,
        ),
        Ok(Err(HeadError::Closed)) => return,
        Ok(Err(HeadError::TooLarge)) => (
            Response::text(
                "431 Request Header Fields Too Large",
                format!("request head over {MAX_HEAD} bytes\n"),
            ),
            true,
        ),
        Ok(Err(HeadError::Malformed)) => (Response::text("400 Bad Request", "bad request\n"), true),
        Ok(Ok(head)) => (route(&head, &metrics).await, head.method != "HEAD"),
    };
    let bytes = resp.bytes(with_body);
    let _ = tokio::time::timeout(WRITE_TIMEOUT, async {
        stream.write_all(&bytes).await?;
        stream.shutdown().await?;
        // Read what the client still sends (an oversized head, say) so closing
        // does not reset the connection before it has read the answer.
        let mut sink = [0u8; 4096];
        let mut left: usize = 64 * 1024;
        while left > 0 {
            match tokio::time::timeout(Duration::from_secs(1), stream.read(&mut sink)).await {
                Ok(Ok(n)) if n > 0 => left = left.saturating_sub(n),
                _ => break,
            }
        }
        io::Result::Ok(())
    })
    .await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::detect::{Alert, Severity};
    use std::collections::HashSet;

    fn fake_sample() -> Sample {
        let mut s = Sample::new(Mode::Polling("test".into()));
        s.counters.events = 42;
        s.counters.lost = 3;
        s.counters.table_evicted = 1;
        s.counters.decode_errors = 2;
        s.counters.history_evicted = 5;
        s.count_live(Proto::Tcp, State::Established);
        s.count_live(Proto::Tcp, State::Established);
        s.count_live(Proto::Tcp, State::Listen);
        s.count_live(Proto::Udp, State::Flow);
        s.open_incidents.insert(RuleId::PortScan.id(), 1);
        s.process = Some(Process {
            cpu_seconds: 1.5,
            resident_bytes: 4096,
            start_time_seconds: 1_700_000_000.5,
            open_fds: 9,
            max_fds: 1024,
        });
        s
    }

    fn ev(action: Action, proto: Proto, direction: Direction) -> ConnEvent {
        let mut e = ConnEvent::lost(1, 0);
        e.action = action;
        e.proto = proto;
        e.direction = direction;
        e
    }

    fn alert(rule: RuleId, ended: bool) -> Record {
        Record::Alert(Arc::new(Alert {
            rule,
            severity: Severity::Medium,
            key: "198.51.100.7".into(),
            message: "m".into(),
            source_ip: None,
            first_ns: 0,
            last_ns: 0,
            updates: 1,
            ended,
            evidence: serde_json::Value::Null,
        }))
    }

    fn fed() -> Metrics {
        let m = Metrics::with_sampler(fake_sample);
        m.observe(&Record::Event(ev(
            Action::Opened,
            Proto::Tcp,
            Direction::Egress,
        )));
        let mut closed = ev(Action::Closed, Proto::Tcp, Direction::Egress);
        closed.bytes_sent = 100;
        closed.bytes_recv = 2000;
        m.observe(&Record::Event(closed));
        m.observe(&Record::Event(ev(
            Action::Failed,
            Proto::Tcp,
            Direction::Egress,
        )));
        let mut flow = ev(Action::UdpFlow, Proto::Udp, Direction::Egress);
        flow.bytes_sent = 64;
        flow.count = 2;
        m.observe(&Record::Event(flow));
        m.observe(&Record::Event(ConnEvent::lost(1, 7)));
        m.observe(&alert(RuleId::PortScan, false));
        m.observe(&alert(RuleId::PortScan, true));
        m
    }

    #[test]
    fn prometheus_text_has_expected_lines() {
        let text = fed().render(Format::Prometheus);
        for line in [
            "# TYPE netta_connections_total counter",
            r#"netta_connections_total{event="opened",direction="egress",transport="tcp"} 1"#,
            r#"netta_connections_total{event="closed",direction="egress",transport="tcp"} 1"#,
            r#"netta_connections_total{event="failed",direction="egress",transport="tcp"} 1"#,
            r#"netta_connections_total{event="closed",direction="ingress",transport="tcp"} 0"#,
            r#"netta_bytes_total{direction="sent",transport="tcp"} 100"#,
            r#"netta_bytes_total{direction="received",transport="tcp"} 2000"#,
            r#"netta_bytes_total{direction="sent",transport="udp"} 64"#,
            "netta_udp_flows_total 1",
            r#"netta_alerts_total{rule="port-scan"} 1"#,
            r#"netta_alerts_total{rule="syn-flood"} 0"#,
            "netta_metrics_tap_lost_total 7",
            &format!(
                r#"netta_info{{mode="polling",version="{}"}} 1"#,
                env!("CARGO_PKG_VERSION")
            ),
            "# TYPE netta_live_connections gauge",
            r#"netta_live_connections{state="ESTABLISHED",transport="tcp"} 2"#,
            r#"netta_live_connections{state="LISTENING",transport="tcp"} 1"#,
            r#"netta_live_connections{state="FLOW",transport="udp"} 1"#,
            r#"netta_live_connections{state="UNCONN",transport="udp"} 0"#,
            r#"netta_open_incidents{rule="port-scan"} 1"#,
            "netta_events_processed_total 42",
            "netta_lost_events_total 3",
            "netta_table_evicted_total 1",
            "netta_history_evicted_total 5",
            "netta_decode_errors_total 2",
            r#"netta_reconcile_healed_total{change="added"} 0"#,
            "# TYPE process_cpu_seconds_total counter",
            "process_cpu_seconds_total 1.5",
            "process_resident_memory_bytes 4096",
            "process_start_time_seconds 1700000000.5",
            "process_open_fds 9",
            "process_max_fds 1024",
        ] {
            assert!(
                text.lines().any(|l| l == line),
                "missing {line:?} in\n{text}"
            );
        }
        assert!(!text.contains("# EOF"));
        // One series per line, every sample line well formed.
        for l in text.lines().filter(|l| !l.starts_with('#')) {
            let (_, v) = l.rsplit_once(' ').unwrap();
            assert!(v.parse::<f64>().is_ok(), "{l}");
        }
    }

    #[test]
    fn openmetrics_text_has_expected_lines() {
        let text = fed().render(Format::OpenMetrics);
        for line in [
            "# TYPE netta_connections counter",
            r#"netta_connections_total{event="closed",direction="egress",transport="tcp"} 1"#,
            "# TYPE process_cpu_seconds counter",
            "# UNIT process_cpu_seconds seconds",
            "process_cpu_seconds_total 1.5",
            "# TYPE netta_live_connections gauge",
        ] {
            assert!(
                text.lines().any(|l| l == line),
                "missing {line:?} in\n{text}"
            );
        }
        assert!(text.ends_with("# EOF\n"));
    }

    #[test]
    fn metric_families_are_unique() {
        // OpenMetrics forbids two families with one name (a counter `x` and a gauge `x`).
        let text = fed().render(Format::OpenMetrics);
        let mut seen = HashSet::new();
        for l in text.lines().filter_map(|l| l.strip_prefix("# TYPE ")) {
            let name = l.split(' ').next().unwrap();
            assert!(seen.insert(name.to_string()), "family {name} twice");
        }
        // Nor may a family's name be another family's sample name.
        for name in &seen {
            for suffix in ["_total", "_created", "_info"] {
                if let Some(base) = name.strip_suffix(suffix) {
                    assert!(!seen.contains(base), "{name} collides with {base}");
                }
            }
        }
    }

    /// Label values observed in an exposition, by label name.
    fn label_values(text: &str) -> Vec<(String, String)> {
        let mut out = Vec::new();
        for l in text.lines().filter(|l| !l.starts_with('#')) {
            let Some(open) = l.find('{') else { continue };
            let close = l.rfind('}').unwrap();
            for pair in l[open + 1..close].split(',') {
                let (k, v) = pair.split_once('=').unwrap();
                out.push((k.to_string(), v.trim_matches('"').to_string()));
            }
        }
        out
    }

    #[test]
    fn label_values_stay_in_fixed_sets() {
        let m = Metrics::with_sampler(|| {
            let mut s = fake_sample();
            for st in State::ALL {
                s.count_live(Proto::Tcp, st);
                s.count_live(Proto::Udp, st);
            }
            s
        });
        // Every action, transport and direction, with addresses and pids that must not leak.
        let actions = [
            Action::Opened,
            Action::Closed,
            Action::Failed,
            Action::ListenStarted,
            Action::ListenStopped,
            Action::UdpFlow,
            Action::StateChanged,
            Action::ResetSent,
            Action::EventsLost,
            Action::TableEvicted,
        ];
        for (i, a) in actions.into_iter().enumerate() {
            for t in TRANSPORTS {
                for d in DIRECTIONS {
                    let mut e = ev(a, t, d);
                    e.pid = 4000 + i as u32;
                    e.local = format!("10.0.0.{i}:{}", 30000 + i).parse().unwrap();
                    e.remote = format!("192.0.2.{i}:443").parse().unwrap();
                    e.bytes_sent = 10;
                    e.bytes_recv = 10;
                    m.observe(&Record::Event(e));
                }
            }
        }
        for r in RULES {
            m.observe(&alert(r, false));
        }
        let states: HashSet<&str> = State::ALL.iter().map(|s| s.name()).collect();
        let rules: HashSet<&str> = RULES.iter().map(|r| r.id()).collect();
        for format in [Format::Prometheus, Format::OpenMetrics] {
            let text = m.render(format);
            assert!(!text.contains("10.0.0.") && !text.contains("192.0.2."));
            assert!(!text.contains("4000") && !text.contains("30000"));
            for (k, v) in label_values(&text) {
                let ok = match k.as_str() {
                    "event" => CONN_EVENTS.contains(&v.as_str()),
                    "direction" => {
                        ["egress", "ingress", "unknown", "sent", "received"].contains(&v.as_str())
                    }
                    "transport" => ["tcp", "udp"].contains(&v.as_str()),
                    "state" => states.contains(v.as_str()),
                    "rule" => rules.contains(v.as_str()),
                    "change" => ["added", "removed"].contains(&v.as_str()),
                    "mode" => ["ebpf", "polling"].contains(&v.as_str()),
                    "version" => v == env!("CARGO_PKG_VERSION"),
                    _ => false,
                };
                assert!(ok, "label {k}={v:?} outside its fixed set");
            }
            // Bounded: 18 connection series, 4 byte series, one per rule, etc.
            let series = text
                .lines()
                .filter(|l| !l.starts_with('#') && !l.is_empty())
                .count();
            assert!(series < 120, "{series} series");
        }
    }

    #[test]
    fn rules_list_is_complete() {
        // A new RuleId variant must be added to RULES: this match stops compiling.
        for r in RULES {
            match r {
                RuleId::UnusualHighPort
                | RuleId::HighConnectionCount
                | RuleId::PortScan
                | RuleId::SynFlood
                | RuleId::ConnectionBurst
                | RuleId::FanOut
                | RuleId::NewListener
                | RuleId::LargeOutbound
                | RuleId::AbnormalState => {}
            }
        }
        let ids: HashSet<&str> = RULES.iter().map(|r| r.id()).collect();
        assert_eq!(ids.len(), RULES.len());
    }

    #[test]
    fn process_stat_parses() {
        let stat = "1234 (net ta) S 1 1234 1234 0 -1 4194560 500 0 0 0 250 50 0 0 20 0 4 0 100 1000000 300";
        let status = "Name:\tnetta\nVmPeak:\t 9000 kB\nVmRSS:\t    2048 kB\nThreads:\t4\n";
        let p = Process::parse(stat, status, 100.0, 1_000).unwrap();
        assert_eq!(p.cpu_seconds, 3.0);
        assert_eq!(p.start_time_seconds, 1_001.0, "100 ticks after boot");
        assert_eq!(p.resident_bytes, 2048 * 1024);
        let own = Process::read().expect("/proc/self is readable");
        assert!(own.resident_bytes > 0);
        assert!(own.open_fds >= 3 && own.max_fds >= own.open_fds, "{own:?}");
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs_f64();
        assert!(
            own.start_time_seconds <= now + 1.0 && own.start_time_seconds > now - 86_400.0 * 365.0
        );
        assert!(Process::parse("garbage", status, 100.0, 0).is_none());
    }

    #[test]
    fn accept_negotiates_format() {
        assert_eq!(Format::negotiate(None), Format::Prometheus);
        assert_eq!(Format::negotiate(Some("*/*")), Format::Prometheus);
        assert_eq!(
            Format::negotiate(Some(
                "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5"
            )),
            Format::OpenMetrics
        );
    }

    #[tokio::test]
    async fn request_heads() {
        let mut r: &[u8] =
            b"GET /metrics?x=1 HTTP/1.1\r\nHost: a\r\nAccept: application/openmetrics-text\r\n\r\n";
        assert_eq!(
            read_head(&mut r).await,
            Ok(Head {
                method: "GET".into(),
                path: "/metrics".into(),
                accept: Some("application/openmetrics-text".into()),
            })
        );
        let mut r: &[u8] = b"GET / HTTP/1.0\n\n";
        assert_eq!(read_head(&mut r).await.unwrap().path, "/");
        let big = format!("GET / HTTP/1.1\r\nX: {}\r\n\r\n", "a".repeat(MAX_HEAD));
        let mut r = big.as_bytes();
        assert_eq!(read_head(&mut r).await, Err(HeadError::TooLarge));
        let mut r: &[u8] = b"";
        assert_eq!(read_head(&mut r).await, Err(HeadError::Closed));
        let mut r: &[u8] = b"hello\r\n\r\n";
        assert_eq!(read_head(&mut r).await, Err(HeadError::Malformed));
        let mut r: &[u8] = b"GET / HTTP/1.1\r\nHost";
        assert_eq!(read_head(&mut r).await, Err(HeadError::Malformed));
    }
}
