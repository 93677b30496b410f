//! Prometheus metrics: a small HTTP endpoint (`GET /metrics`) over the running agent.
//!
//! Two kinds of numbers are exported:
//!
//! * **Stream counters**, counted from one tap on the agent's record stream
//!   (`Shared::subscribe`): connections opened/closed/failed, bytes (of open
//!   connections as `connection-updated` reports them, then the rest at close,
//!   and of UDP flows), UDP flows, and alerts. They start at zero when the
//!   endpoint starts.
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
//! The HTTP side is axum (hyper), as for the local API: `/metrics` answers GET
//! and HEAD, other methods get 405, a request head over [`MAX_HEAD`] bytes 431.
//! Responses are OpenMetrics when the client's `Accept` asks for it (as
//! Prometheus does), else the classic Prometheus text format 0.0.4 (curl,
//! `promtool check metrics`).
use std::collections::BTreeMap;
use std::fmt;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric, MetricEncoder};
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::{Metric, Registry, Unit};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};

use crate::agent::{Mode, Record, Shared};
use crate::core::event::{Action, ConnEvent, Direction, Proto, State};
use crate::core::table::Counters;
use crate::detect::RuleId;

mod format;
mod http;
mod sample;

pub use format::Format;
pub use http::{bind, serve_on};
pub use sample::Sample;

use crate::host::self_stats::Process;
use sample::Sampler;

/// Largest request head accepted; a longer one is answered with 431.
pub const MAX_HEAD: usize = 8 * 1024;
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
const RULES: [RuleId; 11] = RuleId::ALL;
/// States each transport's live-row gauge always reports (other combinations
/// appear only while nonzero).
const UDP_STATES: [State; 3] = [State::Unconn, State::Established, State::Flow];

type Labels<const N: usize> = [(&'static str, &'static str); N];

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
        let counters: [(&str, &str, Box<dyn Metric>); 5] = [
            (
                "netta_connections",
                "Connections opened, closed and failed (seen since the metrics endpoint started)",
                Box::new(m.connections.clone()),
            ),
            (
                "netta_bytes",
                "Bytes of closed TCP connections and ended UDP flows (received: TCP only)",
                Box::new(m.bytes.clone()),
            ),
            (
                "netta_udp_flows",
                "UDP flows reported when they ended",
                Box::new(m.udp_flows.clone()),
            ),
            (
                "netta_alerts",
                "Detection incidents opened, by rule",
                Box::new(m.alerts.clone()),
            ),
            (
                "netta_metrics_tap_lost",
                "Records the metrics tap missed (kernel losses and its own drops): stream counters undercount by this",
                Box::new(m.tap_lost.clone()),
            ),
        ];
        for (name, help, metric) in counters {
            r.register(name, help, AnyMetric(metric));
        }
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
            // Counted where they are parsed (`Shared::dns`), sampled below.
            Record::Dns(_) => {}
        }
    }

    fn observe_event(&self, ev: &ConnEvent) {
        match ev.action {
            Action::Opened => self.conn("opened", ev),
            Action::Failed => self.conn("failed", ev),
            Action::Closed => {
                self.conn("closed", ev);
                self.add_new_bytes(ev);
            }
            Action::UdpFlow => {
                self.udp_flows.inc();
                self.add_new_bytes(ev);
            }
            // Open connections count as they go; their close adds only the rest.
            Action::Updated => self.add_new_bytes(ev),
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

    /// The bytes of `ev` that no earlier `connection-updated` line counted.
    fn add_new_bytes(&self, ev: &ConnEvent) {
        let t = ev.proto;
        self.add_bytes("sent", t, ev.bytes_sent.saturating_sub(ev.prior_sent));
        self.add_bytes("received", t, ev.bytes_recv.saturating_sub(ev.prior_recv));
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

/// A counter of the table in `Metrics::new`, whatever its type (`Registry::register`
/// takes one `impl Metric`).
#[derive(Debug)]
struct AnyMetric(Box<dyn Metric>);

impl EncodeMetric for AnyMetric {
    fn encode(&self, e: MetricEncoder) -> fmt::Result {
        self.0.encode(e)
    }
    fn metric_type(&self) -> MetricType {
        self.0.metric_type()
    }
    fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

fn conn_labels(event: &'static str, d: Direction, t: Proto) -> Labels<3> {
    [
        ("event", event),
        ("direction", d.name()),
        ("transport", t.name()),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::detect::alert::Severity;
    use crate::detect::Alert;
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
        let tcp = |action| ev(action, Proto::Tcp, Direction::Egress);
        let closed = ConnEvent {
            bytes_sent: 100,
            bytes_recv: 2000,
            ..tcp(Action::Closed)
        };
        let flow = ConnEvent {
            bytes_sent: 64,
            count: 2,
            ..ev(Action::UdpFlow, Proto::Udp, Direction::Egress)
        };
        let lost = ConnEvent::lost(1, 7);
        for e in [tcp(Action::Opened), closed, tcp(Action::Failed), flow, lost] {
            m.observe(&Record::Event(e));
        }
        for ended in [false, true] {
            m.observe(&alert(RuleId::PortScan, ended));
        }
        m
    }

    /// Every line of `want` stands, whole, in `text`.
    fn assert_has_lines(text: &str, want: &[&str]) {
        for line in want {
            let found = text.lines().any(|l| l == *line);
            assert!(found, "missing {line:?} in\n{text}");
        }
    }

    #[test]
    fn prometheus_text_has_expected_lines() {
        let text = fed().render(Format::Prometheus);
        assert_has_lines(
            &text,
            &[
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
            ],
        );
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
        assert_has_lines(
            &text,
            &[
                "# TYPE netta_connections counter",
                r#"netta_connections_total{event="closed",direction="egress",transport="tcp"} 1"#,
                "# TYPE process_cpu_seconds counter",
                "# UNIT process_cpu_seconds seconds",
                "process_cpu_seconds_total 1.5",
                "# TYPE netta_live_connections gauge",
            ],
        );
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
        for (i, a) in Action::REPORTED.into_iter().enumerate() {
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
                | RuleId::AbnormalState
                | RuleId::NewDestination
                | RuleId::Beaconing => {}
            }
        }
        let ids: HashSet<&str> = RULES.iter().map(|r| r.id()).collect();
        assert_eq!(ids.len(), RULES.len());
    }
}
