//! Traffic statistics: computed from a table snapshot ([`compute`]), then rendered in
//! the original tool's "NETWORK TRAFFIC STATISTICS" block ([`render`]) or as JSON
//! ([`to_json`]).
use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::net::IpAddr;

use rustc_hash::FxHashMap;
use serde::Serializer;

use crate::core::event::{normalize, Direction, Proto, State};
use crate::core::format::{human_bytes, owner};
use crate::core::sanitize::Comm;
use crate::core::services::Services;
use crate::core::table::{Conn, Snapshot};
use crate::render::list::{header, heavy_rule, light_rule};

/// Length of every "Top ..." list.
pub const TOP_N: usize = 10;

/// The states the original always lists, in its order, even when 0.
const ALWAYS_SHOWN: [State; 3] = [State::Established, State::Listen, State::TimeWait];

#[derive(serde::Serialize, Debug, Clone, PartialEq)]
pub struct Stats {
    /// Live rows.
    pub total_connections: u64,
    /// Rows with a peer in an active state (not LISTENING/UNCONN/CLOSE).
    pub active_connections: u64,
    /// Distinct (protocol, port) of TCP listeners and unconnected UDP sockets.
    pub listening_ports: u64,
    /// Distinct remote addresses of rows with a peer.
    pub unique_remote_ips: u64,
    /// Every protocol, also those with 0 rows.
    pub protocols: Vec<ProtoCount>,
    /// ESTABLISHED, LISTENING and TIME_WAIT, then the other states present.
    pub states: Vec<StateCount>,
    pub top_ports: Vec<PortCount>,
    pub top_remote_ips: Vec<IpCount>,
    pub since_start: SinceStart,
    pub top_processes_by_connections: Vec<ProcessStat>,
    /// Processes with at least one byte, most bytes first.
    pub top_processes_by_bytes: Vec<ProcessStat>,
    /// Live rows per network namespace, most first (`null`: not known).
    pub network_namespaces: Vec<NetnsCount>,
    /// Live rows per container, most first (only rows in one).
    pub containers: Vec<ContainerCount>,
}

#[derive(serde::Serialize, Debug, Clone, PartialEq)]
pub struct NetnsCount {
    /// Its inode; `None` when the kernel could not say.
    pub netns: Option<u32>,
    pub connections: u64,
}

#[derive(serde::Serialize, Debug, Clone, PartialEq)]
pub struct ContainerCount {
    /// The container id (`None`: a pod's cgroup with no container in its name).
    pub container: Option<String>,
    /// `namespace/name` (or the UID) of its Kubernetes pod.
    pub pod: Option<String>,
    pub connections: u64,
}

#[derive(serde::Serialize, Debug, Clone, PartialEq)]
pub struct ProtoCount {
    pub protocol: Proto,
    pub connections: u64,
    /// Share of all live rows, rounded to one decimal; 0 when there are none.
    pub percent: f64,
}

#[derive(serde::Serialize, Debug, Clone, PartialEq)]
pub struct StateCount {
    #[serde(serialize_with = "state_name")]
    pub state: State,
    pub connections: u64,
}

#[derive(serde::Serialize, Debug, Clone, PartialEq)]
pub struct PortCount {
    pub port: u16,
    /// `None` when the port is no known service.
    pub service: Option<String>,
    pub connections: u64,
}

#[derive(serde::Serialize, Debug, Clone, PartialEq)]
pub struct IpCount {
    pub ip: IpAddr,
    pub connections: u64,
}

/// Totals since netta started (the table's counters).
#[derive(serde::Serialize, Debug, Clone, PartialEq)]
pub struct SinceStart {
    pub opened: u64,
    pub closed: u64,
    pub failed: u64,
    /// Closed after less than [`crate::core::table::SHORT_LIVED_NS`].
    pub short_lived: u64,
    pub bytes_in: u64,
    pub bytes_out: u64,
    pub lost_events: u64,
    pub table_evictions: u64,
    pub history_evictions: u64,
}

/// One process (pid and name) over live and closed rows. Pid 0: owner unknown.
#[derive(serde::Serialize, Debug, Clone, PartialEq)]
pub struct ProcessStat {
    #[serde(serialize_with = "pid_or_null")]
    pub pid: u32,
    #[serde(rename = "process", serialize_with = "comm_lossy")]
    pub comm: Comm,
    pub connections: u64,
    /// Sent plus received.
    pub bytes: u64,
}

fn state_name<S: Serializer>(st: &State, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(st.name())
}

fn pid_or_null<S: Serializer>(pid: &u32, s: S) -> Result<S::Ok, S::Error> {
    match pid {
        0 => s.serialize_none(),
        p => s.serialize_some(p),
    }
}

/// JSON carries the name as a plain (lossy UTF-8) string; JSON escaping does the rest.
fn comm_lossy<S: Serializer>(comm: &Comm, s: S) -> Result<S::Ok, S::Error> {
    if comm.is_empty() {
        s.serialize_none()
    } else {
        s.serialize_str(&String::from_utf8_lossy(comm.as_bytes()))
    }
}

impl Stats {
    /// Live rows in `st` (0 when absent).
    pub fn state_count(&self, st: State) -> u64 {
        self.states
            .iter()
            .find(|s| s.state == st)
            .map_or(0, |s| s.connections)
    }

    /// Live rows of `proto`.
    #[cfg(test)]
    pub fn proto_count(&self, proto: Proto) -> u64 {
        self.protocols
            .iter()
            .find(|p| p.protocol == proto)
            .map_or(0, |p| p.connections)
    }
}

/// The port a row counts for in "Top Active Ports": the remote port when it is a
/// service (known, or below 1024), else the local one; listeners count their own.
/// The service side of a connection: the remote port when this host connected,
/// the local one when it accepted, and a guess from known services otherwise.
fn active_port(c: &Conn, services: &Services) -> u16 {
    match c.direction {
        Direction::Egress if c.has_peer() => return c.remote.port(),
        Direction::Ingress => return c.local.port(),
        _ => {}
    }
    if c.has_peer() {
        let rp = c.remote.port();
        if rp < 1024 || services.name(rp, c.proto).is_some() {
            return rp;
        }
    }
    c.local.port()
}

fn percent(n: u64, total: u64) -> f64 {
    if total == 0 {
        0.0
    } else {
        (n as f64 * 1000.0 / total as f64).round() / 10.0
    }
}

/// The first `TOP_N` of `counts`, most first, ties by key ascending.
fn top<K: Ord + Copy>(counts: FxHashMap<K, u64>) -> Vec<(K, u64)> {
    let mut v: Vec<(K, u64)> = counts.into_iter().collect();
    v.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    v.truncate(TOP_N);
    v
}

/// Process key: unknown owners (pid 0) are one "-" entry whatever their name.
fn process_key(pid: u32, comm: Comm) -> (u32, Comm) {
    if pid == 0 {
        (0, Comm::EMPTY)
    } else {
        (pid, comm)
    }
}

pub fn compute(snap: &Snapshot, services: &Services) -> Stats {
    let conns = &snap.conns;
    let total = conns.len() as u64;

    let mut active = 0;
    let mut listening: BTreeSet<(Proto, u16)> = BTreeSet::new();
    let mut by_proto: FxHashMap<Proto, u64> = FxHashMap::default();
    let mut by_state: FxHashMap<State, u64> = FxHashMap::default();
    // Port → (rows, protocols seen), so the service name uses a protocol it ran on.
    let mut by_port: FxHashMap<u16, (u64, [bool; 2])> = FxHashMap::default();
    let mut by_ip: FxHashMap<IpAddr, u64> = FxHashMap::default();
    let mut by_netns: FxHashMap<u32, u64> = FxHashMap::default();
    let mut by_container: FxHashMap<(Option<String>, Option<String>), u64> = FxHashMap::default();
    for c in conns {
        *by_netns.entry(c.netns).or_default() += 1;
        if c.who.container.is_some() {
            let pod = crate::render::list::pod_cell(&c.who);
            let key = (
                c.who.container_id().map(str::to_string),
                (pod != "-").then_some(pod),
            );
            *by_container.entry(key).or_default() += 1;
        }
        *by_proto.entry(c.proto).or_default() += 1;
        *by_state.entry(c.state).or_default() += 1;
        if c.has_peer() && c.state.is_active() {
            active += 1;
        }
        if c.state.is_listener() {
            listening.insert((c.proto, c.local.port()));
        }
        if c.has_peer() {
            *by_ip.entry(normalize(c.remote.ip())).or_default() += 1;
        }
        let e = by_port.entry(active_port(c, services)).or_default();
        e.0 += 1;
        e.1[(c.proto == Proto::Udp) as usize] = true;
    }

    let protocols = [Proto::Tcp, Proto::Udp]
        .into_iter()
        .map(|p| {
            let n = by_proto.get(&p).copied().unwrap_or(0);
            ProtoCount {
                protocol: p,
                connections: n,
                percent: percent(n, total),
            }
        })
        .collect();

    let mut states: Vec<StateCount> = ALWAYS_SHOWN
        .iter()
        .map(|st| StateCount {
            state: *st,
            connections: by_state.get(st).copied().unwrap_or(0),
        })
        .collect();
    states.extend(
        State::ALL
            .into_iter()
            .filter(|st| !ALWAYS_SHOWN.contains(st))
            .filter_map(|st| {
                by_state.get(&st).map(|n| StateCount {
                    state: st,
                    connections: *n,
                })
            }),
    );

    let port_protos: FxHashMap<u16, [bool; 2]> =
        by_port.iter().map(|(p, (_, pr))| (*p, *pr)).collect();
    let top_ports = top(by_port.into_iter().map(|(p, (n, _))| (p, n)).collect())
        .into_iter()
        .map(|(port, n)| {
            let seen = port_protos.get(&port).copied().unwrap_or([true, true]);
            let service = [Proto::Tcp, Proto::Udp]
                .into_iter()
                .zip(seen)
                .filter(|(_, s)| *s)
                .find_map(|(p, _)| services.name(port, p))
                .map(str::to_string);
            PortCount {
                port,
                service,
                connections: n,
            }
        })
        .collect();

    let unique_remote_ips = by_ip.len() as u64;
    let top_remote_ips = top(by_ip)
        .into_iter()
        .map(|(ip, n)| IpCount { ip, connections: n })
        .collect();

    let mut procs: FxHashMap<(u32, Comm), (u64, u64)> = FxHashMap::default();
    let rows = conns.iter().chain(snap.history.iter().map(|h| &h.conn));
    for c in rows {
        let e = procs.entry(process_key(c.pid, c.comm)).or_default();
        e.0 += 1;
        e.1 =
            e.1.saturating_add(c.bytes_sent.saturating_add(c.bytes_recv));
    }
    let mut procs: Vec<ProcessStat> = procs
        .into_iter()
        .map(|((pid, comm), (connections, bytes))| ProcessStat {
            pid,
            comm,
            connections,
            bytes,
        })
        .collect();
    // Ties by pid, then by name bytes: a stable order for equal counts.
    let tie = |a: &ProcessStat, b: &ProcessStat| {
        (a.pid, a.comm.as_bytes()).cmp(&(b.pid, b.comm.as_bytes()))
    };
    procs.sort_by(|a, b| b.connections.cmp(&a.connections).then_with(|| tie(a, b)));
    let top_processes_by_connections = procs.iter().take(TOP_N).cloned().collect();
    procs.retain(|p| p.bytes > 0);
    procs.sort_by(|a, b| b.bytes.cmp(&a.bytes).then_with(|| tie(a, b)));
    procs.truncate(TOP_N);

    let network_namespaces = top(by_netns)
        .into_iter()
        .map(|(ns, n)| NetnsCount {
            netns: (ns != 0).then_some(ns),
            connections: n,
        })
        .collect();
    let mut containers: Vec<ContainerCount> = by_container
        .into_iter()
        .map(|((container, pod), connections)| ContainerCount {
            container,
            pod,
            connections,
        })
        .collect();
    containers.sort_by(|a, b| {
        b.connections
            .cmp(&a.connections)
            .then_with(|| (&a.container, &a.pod).cmp(&(&b.container, &b.pod)))
    });
    containers.truncate(TOP_N);

    let k = &snap.counters;
    Stats {
        total_connections: total,
        active_connections: active,
        listening_ports: listening.len() as u64,
        unique_remote_ips,
        protocols,
        states,
        top_ports,
        top_remote_ips,
        since_start: SinceStart {
            opened: k.opened,
            closed: k.closed,
            failed: k.failed,
            short_lived: k.short_lived,
            bytes_in: k.bytes_recv,
            bytes_out: k.bytes_sent,
            lost_events: k.lost,
            table_evictions: k.table_evicted,
            history_evictions: k.history_evicted,
        },
        top_processes_by_connections,
        top_processes_by_bytes: procs,
        network_namespaces,
        containers,
    }
}

/// `1.2 KiB (1234 bytes)`, or `512 B` when the short form is already exact.
fn bytes_exact(n: u64) -> String {
    if n < 1024 {
        human_bytes(n)
    } else {
        format!("{} ({n} bytes)", human_bytes(n))
    }
}

fn none_if_empty(out: &mut String, empty: bool) {
    if empty {
        out.push_str("  (none)\n");
    }
}

/// The original's "NETWORK TRAFFIC STATISTICS" block, then netta's sections.
pub fn render(stats: &Stats) -> String {
    let mut out = String::new();
    let rule = light_rule();
    header(&mut out, "NETWORK TRAFFIC STATISTICS");

    let _ = writeln!(out, "Overall:");
    let _ = writeln!(out, "  Total Connections: {}", stats.total_connections);
    let _ = writeln!(out, "  Active Connections: {}", stats.active_connections);
    let _ = writeln!(out, "  Listening Ports: {}", stats.listening_ports);
    let _ = writeln!(out, "  Unique Remote IPs: {}", stats.unique_remote_ips);

    let _ = writeln!(out, "{rule}\nProtocol Distribution:");
    let mut shown = 0;
    for p in stats.protocols.iter().filter(|p| p.connections > 0) {
        shown += 1;
        let _ = writeln!(
            out,
            "  {}: {} ({:.1}%)",
            p.protocol.upper(),
            p.connections,
            p.percent
        );
    }
    none_if_empty(&mut out, shown == 0);

    let _ = writeln!(out, "{rule}\nConnection States:");
    for s in &stats.states {
        let _ = writeln!(out, "  {}: {}", s.state.name(), s.connections);
    }
    none_if_empty(&mut out, stats.states.is_empty());

    let _ = writeln!(out, "{rule}\nTop Active Ports:");
    for p in &stats.top_ports {
        let service = p.service.as_deref().unwrap_or("unknown");
        let _ = writeln!(
            out,
            "  Port {} ({service}): {} connections",
            p.port, p.connections
        );
    }
    none_if_empty(&mut out, stats.top_ports.is_empty());

    let _ = writeln!(out, "{rule}\nTop Remote IPs:");
    for ip in &stats.top_remote_ips {
        let _ = writeln!(out, "  {}: {} connections", ip.ip, ip.connections);
    }
    none_if_empty(&mut out, stats.top_remote_ips.is_empty());

    let s = &stats.since_start;
    let _ = writeln!(out, "{rule}\nSince Start:");
    let _ = writeln!(out, "  Connections Opened: {}", s.opened);
    let _ = writeln!(out, "  Connections Closed: {}", s.closed);
    let _ = writeln!(out, "  Connections Failed: {}", s.failed);
    let _ = writeln!(out, "  Short-lived (<2s): {}", s.short_lived);
    let _ = writeln!(out, "  Bytes In: {}", bytes_exact(s.bytes_in));
    let _ = writeln!(out, "  Bytes Out: {}", bytes_exact(s.bytes_out));
    let _ = writeln!(out, "  Lost Events: {}", s.lost_events);
    let _ = writeln!(out, "  Table Evictions: {}", s.table_evictions);
    let _ = writeln!(out, "  History Evictions: {}", s.history_evictions);

    let _ = writeln!(out, "{rule}\nTop Processes by Connections:");
    for p in &stats.top_processes_by_connections {
        let _ = writeln!(
            out,
            "  {}: {} connections",
            owner(p.pid, &p.comm),
            p.connections
        );
    }
    none_if_empty(&mut out, stats.top_processes_by_connections.is_empty());

    let _ = writeln!(out, "{rule}\nTop Processes by Bytes:");
    for p in &stats.top_processes_by_bytes {
        let _ = writeln!(out, "  {}: {}", owner(p.pid, &p.comm), human_bytes(p.bytes));
    }
    none_if_empty(&mut out, stats.top_processes_by_bytes.is_empty());

    let _ = writeln!(out, "{rule}\nNetwork Namespaces:");
    for n in &stats.network_namespaces {
        let ns = n.netns.map_or("unknown".to_string(), |n| n.to_string());
        let _ = writeln!(out, "  {ns}: {} connections", n.connections);
    }
    none_if_empty(&mut out, stats.network_namespaces.is_empty());

    let _ = writeln!(out, "{rule}\nContainers:");
    for c in &stats.containers {
        let id: String = c
            .container
            .as_deref()
            .map_or("-".into(), |id| id.chars().take(12).collect());
        let pod = c.pod.as_ref().map_or(String::new(), |p| format!(" ({p})"));
        let _ = writeln!(out, "  {id}{pod}: {} connections", c.connections);
    }
    none_if_empty(&mut out, stats.containers.is_empty());

    let _ = writeln!(out, "{}", heavy_rule());
    out
}

/// The statistics for `netta stats --json`: snake_case keys, states by name,
/// protocols lowercase, unknown pids and names `null`.
pub fn to_json(stats: &Stats) -> serde_json::Value {
    serde_json::to_value(stats).unwrap_or(serde_json::Value::Null)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::event::Direction;
    use crate::core::table::{Closed, Counters};
    use crate::fixture::{self, conn};

    /// A row seeded from /proc: direction unknown, so ports are guessed.
    fn tcp(local: &str, remote: &str, state: State, pid: u32, comm: &[u8]) -> Conn {
        conn(
            0,
            Proto::Tcp,
            local,
            remote,
            state,
            Direction::Unknown,
            pid,
            comm,
        )
    }

    #[test]
    fn known_direction_picks_the_service_side() {
        let established = |local, remote, direction, pid, comm| Conn {
            direction,
            ..tcp(local, remote, State::Established, pid, comm)
        };
        let out = established(
            "10.0.0.1:40000",
            "10.0.0.2:65000",
            Direction::Egress,
            1,
            b"a",
        );
        let inc = established(
            "10.0.0.1:8443",
            "10.0.0.3:50000",
            Direction::Ingress,
            2,
            b"b",
        );
        let st = compute(&snap(vec![out, inc]), &Services::builtin());
        let ports: Vec<u16> = st.top_ports.iter().map(|p| p.port).collect();
        assert_eq!(ports, [8443, 65000]);
    }

    /// The statistics of `s` (builtin service names) and their text.
    fn computed_and_rendered(s: &Snapshot) -> (Stats, String) {
        let st = compute(s, &Services::builtin());
        let out = render(&st);
        (st, out)
    }

    fn snap(conns: Vec<Conn>) -> Snapshot {
        Snapshot {
            conns,
            ..Snapshot::default()
        }
    }

    #[test]
    fn empty_table_has_zeros_and_no_nan() {
        let st = compute(&Snapshot::default(), &Services::builtin());
        assert_eq!(st.total_connections, 0);
        assert_eq!(st.active_connections, 0);
        assert!(st.protocols.iter().all(|p| p.percent == 0.0));
        let names: Vec<_> = st.states.iter().map(|s| s.state.name()).collect();
        assert_eq!(names, ["ESTABLISHED", "LISTENING", "TIME_WAIT"]);
        assert!(st.top_ports.is_empty() && st.top_remote_ips.is_empty());
        let out = render(&st);
        assert!(!out.contains("NaN"), "{out}");
        assert!(out.contains("Protocol Distribution:\n  (none)\n"), "{out}");
        assert!(out.contains("Top Active Ports:\n  (none)\n"), "{out}");
        assert!(out.contains("Top Processes by Bytes:\n  (none)\n"), "{out}");
        assert!(out.ends_with(&format!("{}\n", heavy_rule())));
        let json = to_json(&st);
        assert_eq!(json["protocols"][0]["percent"], 0.0);
    }

    #[test]
    fn the_originals_sample_gives_the_originals_numbers() {
        let s = snap(vec![
            tcp(
                "127.0.0.1:8080",
                "0.0.0.0:0",
                State::Listen,
                1234,
                b"web-server",
            ),
            tcp(
                "192.168.1.100:54321",
                "93.184.216.34:443",
                State::Established,
                5678,
                b"chrome",
            ),
            tcp("0.0.0.0:22", "0.0.0.0:0", State::Listen, 999, b"sshd"),
            tcp(
                "192.168.1.100:12345",
                "142.250.185.46:443",
                State::Established,
                5678,
                b"chrome",
            ),
        ]);
        let (st, out) = computed_and_rendered(&s);
        let original = "\
════════════════════════════════════════════════════════════
NETWORK TRAFFIC STATISTICS
════════════════════════════════════════════════════════════
Overall:
  Total Connections: 4
  Active Connections: 2
  Listening Ports: 2
  Unique Remote IPs: 2
────────────────────────────────────────────────────────────
Protocol Distribution:
  TCP: 4 (100.0%)
────────────────────────────────────────────────────────────
Connection States:
  ESTABLISHED: 2
  LISTENING: 2
  TIME_WAIT: 0
────────────────────────────────────────────────────────────
Top Active Ports:
  Port 443 (HTTPS): 2 connections
  Port 22 (SSH): 1 connections
  Port 8080 (HTTP-Alt): 1 connections
────────────────────────────────────────────────────────────
Top Remote IPs:
  93.184.216.34: 1 connections
  142.250.185.46: 1 connections
────────────────────────────────────────────────────────────
Since Start:
";
        assert!(out.starts_with(original), "{out}");
        assert_eq!(st.state_count(State::Established), 2);
        assert_eq!(st.state_count(State::SynSent), 0);
        assert_eq!(st.top_processes_by_connections[0].pid, 5678);
        assert_eq!(st.top_processes_by_connections[0].connections, 2);
    }

    #[test]
    fn udp_ipv6_and_mixed_protocols() {
        let mut rows = vec![
            conn(
                1,
                Proto::Udp,
                "0.0.0.0:5353",
                "0.0.0.0:0",
                State::Unconn,
                Direction::Unknown,
                5,
                b"avahi",
            ),
            conn(
                2,
                Proto::Udp,
                "[::]:5353",
                "[::]:0",
                State::Unconn,
                Direction::Unknown,
                5,
                b"avahi",
            ),
            conn(
                3,
                Proto::Udp,
                "10.0.0.5:40001",
                "10.0.0.53:53",
                State::Flow,
                Direction::Egress,
                6,
                b"res",
            ),
            tcp(
                "[2001:db8::1]:40000",
                "[2001:db8::2]:443",
                State::Established,
                7,
                b"curl",
            ),
            tcp(
                "[2001:db8::1]:40001",
                "[2001:db8::2]:443",
                State::TimeWait,
                0,
                b"",
            ),
            tcp("[::]:443", "[::]:0", State::Listen, 8, b"nginx"),
            tcp("0.0.0.0:443", "0.0.0.0:0", State::Listen, 8, b"nginx"),
            // A v4-mapped remote counts as the plain IPv4 host.
            tcp(
                "[::ffff:10.0.0.5]:40002",
                "[::ffff:10.0.0.53]:853",
                State::SynSent,
                7,
                b"curl",
            ),
        ];
        rows[0].bytes_sent = 3;
        let st = compute(&snap(rows), &Services::builtin());
        assert_eq!(st.total_connections, 8);
        // Flow, ESTABLISHED, TIME_WAIT, SYN_SENT.
        assert_eq!(st.active_connections, 4);
        // udp/5353 twice (v4 and v6) and tcp/443 twice are one port each.
        assert_eq!(st.listening_ports, 2);
        assert_eq!(st.unique_remote_ips, 2);
        assert_eq!(st.proto_count(Proto::Udp), 3);
        assert_eq!(st.protocols[0].percent, 62.5);
        assert_eq!(st.protocols[1].percent, 37.5);
        let names: Vec<_> = st.states.iter().map(|s| s.state.name()).collect();
        assert_eq!(
            names,
            [
                "ESTABLISHED",
                "LISTENING",
                "TIME_WAIT",
                "SYN_SENT",
                "UNCONN",
                "FLOW"
            ]
        );
        let ports: Vec<_> = st
            .top_ports
            .iter()
            .map(|p| (p.port, p.connections))
            .collect();
        assert_eq!(ports, [(443, 4), (5353, 2), (53, 1), (853, 1)]);
        assert_eq!(st.top_ports[1].service.as_deref(), Some("mDNS"));
        let ips: Vec<_> = st
            .top_remote_ips
            .iter()
            .map(|i| (i.ip.to_string(), i.connections))
            .collect();
        assert_eq!(
            ips,
            [("10.0.0.53".to_string(), 2), ("2001:db8::2".to_string(), 2)]
        );
        let out = render(&st);
        assert!(
            out.contains("  TCP: 5 (62.5%)\n  UDP: 3 (37.5%)\n"),
            "{out}"
        );
        assert!(out.contains("  2001:db8::2: 2 connections\n"), "{out}");
        assert!(out.contains("  -: 1 connections\n"), "{out}");
        assert!(out.contains("  5/avahi: 3 B\n"), "{out}");
    }

    #[test]
    fn high_ports_fall_back_to_the_local_port_and_unknown_services() {
        let s = snap(vec![
            tcp(
                "10.0.0.1:40000",
                "10.0.0.2:65432",
                State::Established,
                1,
                b"a",
            ),
            tcp(
                "10.0.0.1:40001",
                "10.0.0.2:8080",
                State::Established,
                1,
                b"a",
            ),
            tcp(
                "10.0.0.1:40002",
                "10.0.0.2:999",
                State::Established,
                1,
                b"a",
            ),
        ]);
        let st = compute(&s, &Services::builtin());
        let ports: Vec<_> = st
            .top_ports
            .iter()
            .map(|p| (p.port, p.service.clone()))
            .collect();
        assert_eq!(
            ports,
            [(999, None), (8080, Some("HTTP-Alt".into())), (40000, None)]
        );
        assert!(render(&st).contains("  Port 999 (unknown): 1 connections\n"));
    }

    #[test]
    fn top_lists_stop_at_ten_and_break_ties_by_key() {
        let rows: Vec<Conn> = (0..15u32)
            .map(|i| {
                let remote = format!("10.0.1.{}:{}", i, 2000 + i);
                tcp(
                    &format!("10.0.0.1:{}", 30000 + i),
                    &remote,
                    State::Established,
                    100 + i,
                    b"p",
                )
            })
            .collect();
        let st = compute(&snap(rows), &Services::builtin());
        assert_eq!(st.top_ports.len(), TOP_N);
        assert_eq!(st.top_ports[0].port, 30000);
        assert_eq!(st.top_remote_ips.len(), TOP_N);
        assert_eq!(st.top_remote_ips[9].ip.to_string(), "10.0.1.9");
        assert_eq!(st.top_processes_by_connections.len(), TOP_N);
        assert_eq!(st.top_processes_by_connections[0].pid, 100);
        assert!(st.top_processes_by_bytes.is_empty());
    }

    #[test]
    fn processes_count_history_and_bytes_and_counters_pass_through() {
        let mut live = tcp("10.0.0.1:1", "10.0.0.2:443", State::Established, 9, b"app");
        live.bytes_sent = 1_000;
        let mut old = tcp("10.0.0.1:2", "10.0.0.2:443", State::Close, 9, b"app");
        old.bytes_recv = 2_000;
        let mut other = tcp("10.0.0.1:3", "10.0.0.3:443", State::Close, 10, b"big");
        other.bytes_recv = u64::MAX;
        let s = Snapshot {
            conns: vec![live],
            history: [old, other.clone(), other]
                .map(|conn| Closed {
                    conn,
                    end_ns: 1,
                    failed: false,
                })
                .to_vec(),
            counters: Counters {
                opened: 3,
                closed: 2,
                failed: 1,
                short_lived: 1,
                bytes_sent: 1_000,
                bytes_recv: 2_000,
                lost: 4,
                table_evicted: 5,
                history_evicted: 6,
                ..Counters::default()
            },
        };
        let st = compute(&s, &Services::builtin());
        let by_conn: Vec<_> = st
            .top_processes_by_connections
            .iter()
            .map(|p| (p.pid, p.connections, p.bytes))
            .collect();
        assert_eq!(by_conn, [(9, 2, 3_000), (10, 2, u64::MAX)]);
        assert_eq!(
            st.top_processes_by_bytes[0].pid, 10,
            "saturates, no overflow"
        );
        assert_eq!(
            st.since_start,
            SinceStart {
                opened: 3,
                closed: 2,
                failed: 1,
                short_lived: 1,
                bytes_in: 2_000,
                bytes_out: 1_000,
                lost_events: 4,
                table_evictions: 5,
                history_evictions: 6,
            }
        );
        let out = render(&st);
        assert!(out.contains("  Bytes In: 2.0 KiB (2000 bytes)\n"), "{out}");
        assert!(out.contains("  9/app: 2.9 KiB\n"), "{out}");
    }

    #[test]
    fn human_bytes_units() {
        assert_eq!(human_bytes(0), "0 B");
        assert_eq!(human_bytes(1023), "1023 B");
        assert_eq!(human_bytes(1024), "1.0 KiB");
        assert_eq!(human_bytes(1_229), "1.2 KiB");
        assert_eq!(human_bytes(5 * 1024 * 1024), "5.0 MiB");
        assert_eq!(human_bytes(u64::MAX), "16.0 EiB");
    }

    #[test]
    fn hostile_names_are_escaped_in_text_and_plain_in_json() {
        let s = snap(vec![tcp(
            "10.0.0.1:1",
            "10.0.0.2:443",
            State::Established,
            77,
            b"\x1b[31mevil\n\xff",
        )]);
        let (st, out) = computed_and_rendered(&s);
        assert!(
            out.contains("  77/\\e[31mevil\\n\\xff: 1 connections\n"),
            "{out}"
        );
        assert!(!out.contains('\x1b'));
        let json = to_json(&st);
        assert_eq!(
            json["top_processes_by_connections"][0]["process"],
            "\x1b[31mevil\n\u{fffd}"
        );
    }

    #[test]
    fn fixture_render() {
        let st = compute(&fixture::snapshot(), &Services::builtin());
        insta::assert_snapshot!("stats_render", render(&st));
    }

    #[test]
    fn fixture_json() {
        let st = compute(&fixture::snapshot(), &Services::builtin());
        insta::assert_snapshot!(
            "stats_json",
            serde_json::to_string_pretty(&to_json(&st)).unwrap()
        );
    }
}

/// Snapshot tests of the connection views on the shared fixture.
#[cfg(test)]
mod view_snapshots {
    use crate::core::event::State;
    use crate::core::filter::{select, Filter};
    use crate::fixture;
    use crate::render::list as view;

    fn list(title: &str, filter: Filter) -> String {
        view::render_list(title, &select(&fixture::snapshot(), &filter))
    }

    #[test]
    fn list_all() {
        insta::assert_snapshot!(list("ACTIVE NETWORK CONNECTIONS", Filter::default()));
    }

    #[test]
    fn list_established() {
        let established = Filter {
            states: vec![State::Established],
            ..Filter::default()
        };
        insta::assert_snapshot!(list("ESTABLISHED CONNECTIONS", established));
    }

    #[test]
    fn list_listening() {
        insta::assert_snapshot!(list("LISTENING PORTS", Filter::listening()));
    }

    #[test]
    fn history() {
        insta::assert_snapshot!(view::render_history(
            &fixture::snapshot().history,
            &fixture::clock()
        ));
    }

    /// The event the agent publishes when a history row ends.
    fn ended(h: &crate::core::table::Closed) -> crate::core::event::ConnEvent {
        use crate::core::event::{Action, ConnEvent, Proto};
        let c = &h.conn;
        let mut e = ConnEvent::lost(h.end_ns, 0);
        e.action = match (h.failed, c.proto) {
            (true, _) => Action::Failed,
            (false, Proto::Udp) => Action::UdpFlow,
            (false, Proto::Tcp) => Action::Closed,
        };
        e.proto = c.proto;
        e.local = c.local;
        e.remote = c.remote;
        e.direction = c.direction;
        e.pid = c.pid;
        e.comm = c.comm;
        e.owner = c.owner;
        e.start_ns = c.start_ns;
        e.bytes_sent = c.bytes_sent;
        e.bytes_recv = c.bytes_recv;
        e.count = c.packets;
        e
    }

    /// `list --history` reads the store: its rows look exactly like the ring's.
    #[test]
    fn history_from_the_store_renders_as_from_the_ring() {
        let clock = fixture::clock();
        let ring = fixture::snapshot().history;
        let stored: Vec<_> = ring
            .iter()
            .map(|h| {
                let row = crate::core::stored::ConnRow::from_event(&ended(h), &clock);
                row.unwrap().to_closed().unwrap()
            })
            .collect();
        let wall = crate::core::clock::Clock::fixed(0);
        assert_eq!(
            view::render_history(&stored, &wall),
            view::render_history(&ring, &clock)
        );
        let moved: Vec<_> = ring
            .iter()
            .map(|h| h.clone().on_wall_clock(&clock))
            .collect();
        assert_eq!(
            view::render_history(&moved, &wall),
            view::render_history(&ring, &clock)
        );
    }
}
