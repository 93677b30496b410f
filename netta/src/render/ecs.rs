//! JSON lines for log pipelines, one event per line, in the Elastic Common Schema
//! (checked field by field against the official ecs_flat.yml by the tests).
//! `source` is the side that started the connection, so a server's accepted
//! socket has the remote client as `source`; `client`/`server` name the roles.
//! No kernel address is written: sockets appear as opaque keyed ids.
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};

use serde::{Serialize, Serializer};
use serde_json::{json, Value};

use crate::core::community_id::{community_id, CommunityId};
use crate::core::sock_id::SockId;
use crate::host::identity::{self, Identity};

mod line;

/// The ECS release the lines conform to.
pub const ECS_VERSION: &str = "9.4.0";

/// Numbers every line's `event.id` within this run.
static SEQ: AtomicU64 = AtomicU64::new(0);

/// `event.id`: the run's ephemeral id and a sequence number, unique per line.
struct EventId(&'static str, u64);

impl Serialize for EventId {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(&format_args!("{}-{:x}", self.0, self.1))
    }
}

fn next_id(idn: &'static Identity) -> EventId {
    EventId(&idn.ephemeral_id, SEQ.fetch_add(1, Ordering::Relaxed))
}

#[derive(Serialize)]
struct Ecs {
    version: &'static str,
}

#[derive(Serialize)]
struct Host<'a> {
    name: &'a str,
    hostname: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    id: Option<&'a str>,
    #[serde(skip_serializing_if = "<[IpAddr]>::is_empty")]
    ip: &'a [IpAddr],
}

#[derive(Serialize)]
struct Agent<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    version: &'static str,
    id: &'a str,
    ephemeral_id: &'a str,
}

fn host(i: &Identity) -> Host<'_> {
    Host {
        name: &i.hostname,
        hostname: &i.hostname,
        id: i.host_id.as_deref(),
        ip: &i.host_ips,
    }
}

/// `host` and `agent`: the same on every line of the run (`line` writes them
/// once, serialised at the first line).
struct Fixed<'a>(&'a Identity);

#[cfg(test)]
impl Serialize for Fixed<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut m = s.serialize_map(Some(2))?;
        m.serialize_entry("host", &host(self.0))?;
        m.serialize_entry("agent", &agent(self.0))?;
        m.end()
    }
}

fn agent(i: &Identity) -> Agent<'_> {
    Agent {
        kind: "netta",
        version: env!("CARGO_PKG_VERSION"),
        id: &i.agent_id,
        ephemeral_id: &i.ephemeral_id,
    }
}

/// `related.ip`: both ends, once each.
struct Related(IpAddr, Option<IpAddr>);

#[cfg(test)]
impl Serialize for Related {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        struct Ips<'a>(&'a Related);
        impl Serialize for Ips<'_> {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                use serde::ser::SerializeSeq;
                let other = self.0 .1.filter(|o| *o != self.0 .0);
                let mut q = s.serialize_seq(Some(1 + usize::from(other.is_some())))?;
                q.serialize_element(&self.0 .0)?;
                if let Some(o) = other {
                    q.serialize_element(&o)?;
                }
                q.end()
            }
        }
        let mut m = s.serialize_map(Some(1))?;
        m.serialize_entry("ip", &Ips(self))?;
        m.end()
    }
}

/// `network.community_id` of a flow, remembered for the flow's next lines: each
/// connection has four (both ends open and close) and the hash is a SHA-1.
fn flow_id(proto: u8, a: std::net::SocketAddr, b: std::net::SocketAddr) -> Option<CommunityId> {
    use std::cell::RefCell;
    use std::hash::{Hash, Hasher};
    type Slot = Option<(
        (u8, std::net::SocketAddr, std::net::SocketAddr),
        Option<CommunityId>,
    )>;
    const SLOTS: usize = 256;
    thread_local! {
        static FLOWS: RefCell<Vec<Slot>> = RefCell::new(vec![None; SLOTS]);
    }
    // Both directions of a flow share one slot.
    let key = if (a.ip(), a.port()) <= (b.ip(), b.port()) {
        (proto, a, b)
    } else {
        (proto, b, a)
    };
    let mut h = rustc_hash::FxHasher::default();
    key.hash(&mut h);
    let i = h.finish() as usize % SLOTS;
    FLOWS.with(|f| {
        let mut f = f.borrow_mut();
        if let Some((k, id)) = &f[i] {
            if *k == key {
                return *id;
            }
        }
        let id = community_id(0, proto, a, b);
        f[i] = Some((key, id));
        id
    })
}

use crate::core::clock::Clock;
use crate::core::event::{Action, ConnEvent, Direction};
use crate::core::table::{Closed, Conn};
use crate::detect::Alert;

/// A time, written RFC 3339 with ns (`line::ts`).
struct Ts(std::time::SystemTime);

#[cfg(test)]
impl Serialize for Ts {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(&humantime::format_rfc3339_nanos(self.0))
    }
}

#[cfg_attr(test, serde_with::skip_serializing_none)]
#[cfg_attr(test, derive(Serialize))]
struct EventField {
    kind: &'static str,
    category: [&'static str; 1],
    #[cfg_attr(test, serde(rename = "type"))]
    kind_type: &'static [&'static str],
    action: &'static str,
    id: EventId,
    module: &'static str,
    dataset: &'static str,
    outcome: Option<&'static str>,
    duration: Option<u64>,
    start: Option<Ts>,
}

#[cfg_attr(test, serde_with::skip_serializing_none)]
#[cfg_attr(test, derive(Serialize))]
struct Network {
    transport: &'static str,
    iana_number: &'static str,
    #[cfg_attr(test, serde(rename = "type"))]
    net_type: &'static str,
    direction: &'static str,
    community_id: Option<CommunityId>,
    bytes: Option<u64>,
    packets: Option<u64>,
}

#[cfg_attr(test, serde_with::skip_serializing_none)]
#[cfg_attr(test, derive(Serialize))]
#[derive(Clone, Copy)]
struct Endpoint<'a> {
    ip: std::net::IpAddr,
    port: u16,
    /// The name DNS gave the address (`core::sanitize::Domain`: printable).
    domain: Option<&'a str>,
    bytes: Option<u64>,
    packets: Option<u64>,
}

fn endpoint<'a>(
    addr: std::net::SocketAddr,
    bytes: Option<u64>,
    packets: Option<u64>,
) -> Endpoint<'a> {
    Endpoint {
        ip: addr.ip(),
        port: addr.port(),
        domain: None,
        bytes,
        packets,
    }
}

#[cfg_attr(test, derive(Serialize))]
struct Container<'a> {
    id: &'a str,
}

/// `orchestrator.*`: the Kubernetes pod of the owner's container.
#[cfg_attr(test, serde_with::skip_serializing_none)]
#[cfg_attr(test, derive(Serialize))]
struct Orchestrator<'a> {
    #[cfg_attr(test, serde(rename = "type"))]
    kind: &'static str,
    namespace: Option<&'a str>,
    resource: Resource<'a>,
}

#[cfg_attr(test, serde_with::skip_serializing_none)]
#[cfg_attr(test, derive(Serialize))]
struct Resource<'a> {
    #[cfg_attr(test, serde(rename = "type"))]
    kind: &'static str,
    id: &'a str,
    name: Option<&'a str>,
}

#[cfg_attr(test, derive(Serialize))]
struct Parent {
    pid: u32,
}

#[cfg_attr(test, serde_with::skip_serializing_none)]
#[cfg_attr(test, derive(Serialize))]
struct Process<'a> {
    pid: u32,
    name: std::borrow::Cow<'a, str>,
    executable: Option<&'a str>,
    /// Only with `--process-args`.
    args: Option<&'a [crate::core::sanitize::Text]>,
    args_count: Option<usize>,
    parent: Option<Parent>,
    start: Option<Ts>,
    entity_id: Option<&'a str>,
}

#[cfg_attr(test, serde_with::skip_serializing_none)]
#[cfg_attr(test, derive(Serialize))]
struct User<'a> {
    /// A keyword in ECS: the uid as text.
    #[cfg_attr(test, serde(serialize_with = "tests::as_text"))]
    id: u32,
    name: Option<&'a str>,
}

fn process<'a>(ev: &'a ConnEvent, clock: &Clock) -> Option<Process<'a>> {
    if ev.pid == 0 {
        return None;
    }
    let p = ev.who.process.as_deref();
    let args = p.and_then(|p| p.args.as_deref());
    Some(Process {
        pid: ev.pid,
        name: String::from_utf8_lossy(ev.comm.as_bytes()),
        executable: ev.who.executable(),
        args,
        args_count: args.map(<[_]>::len),
        parent: p.filter(|p| p.ppid != 0).map(|p| Parent { pid: p.ppid }),
        start: p
            .filter(|p| p.start_ns != 0)
            .map(|p| Ts(clock.to_system(p.start_ns))),
        entity_id: p.map(|p| &*p.entity_id),
    })
}

fn orchestrator(who: &crate::core::event::Who) -> Option<Orchestrator<'_>> {
    let pod = who.container.as_ref()?.pod.as_ref()?;
    Some(Orchestrator {
        kind: "kubernetes",
        namespace: pod.namespace.as_ref().map(|n| n.as_str()),
        resource: Resource {
            kind: "pod",
            id: &pod.uid,
            name: pod.name.as_ref().map(|n| n.as_str()),
        },
    })
}

#[cfg_attr(test, serde_with::skip_serializing_none)]
#[cfg_attr(test, derive(Serialize))]
#[derive(Default)]
struct Netta {
    sock_id: Option<SockId>,
    state: Option<&'static str>,
    old_state: Option<&'static str>,
    raw_states: Option<[u8; 2]>,
    owner: Option<&'static str>,
    partial: Option<bool>,
    lost: Option<u64>,
    evicted: Option<u64>,
    /// `connection-updated`: bytes since the connection's previous update.
    delta: Option<Delta>,
    rtt_us: Option<u32>,
    retransmits: Option<u32>,
    /// Inode of the socket's network namespace (ECS has no field for it).
    netns: Option<u32>,
    /// The owner's cgroup v2 id.
    cgroup: Option<u64>,
    /// `process.args` was cut at netta's bound.
    args_truncated: Option<bool>,
}

/// Deltas of `connection-updated`, named like the totals they add to.
#[cfg_attr(test, derive(Serialize))]
struct Delta {
    source_bytes: u64,
    destination_bytes: u64,
    bytes_sent: u64,
    bytes_received: u64,
}

/// One event line; field order is the order people read them in.
#[cfg_attr(test, serde_with::skip_serializing_none)]
#[cfg_attr(test, derive(Serialize))]
struct Doc<'a> {
    #[cfg_attr(test, serde(rename = "@timestamp"))]
    timestamp: Ts,
    ecs: Ecs,
    event: EventField,
    #[cfg_attr(test, serde(flatten))]
    fixed: Fixed<'a>,
    network: Option<Network>,
    source: Option<Endpoint<'a>>,
    destination: Option<Endpoint<'a>>,
    client: Option<Endpoint<'a>>,
    server: Option<Endpoint<'a>>,
    related: Option<Related>,
    process: Option<Process<'a>>,
    user: Option<User<'a>>,
    container: Option<Container<'a>>,
    orchestrator: Option<Orchestrator<'a>>,
    netta: Netta,
}

impl<'a> Doc<'a> {
    /// The fields every line has; the others empty.
    fn bare(timestamp: Ts, event: EventField, idn: &'a Identity, netta: Netta) -> Doc<'a> {
        Doc {
            timestamp,
            ecs: Ecs {
                version: ECS_VERSION,
            },
            event,
            fixed: Fixed(idn),
            network: None,
            source: None,
            destination: None,
            client: None,
            server: None,
            related: None,
            process: None,
            user: None,
            container: None,
            orchestrator: None,
            netta,
        }
    }
}

fn event_type(action: Action) -> &'static [&'static str] {
    match action {
        Action::Opened => &["connection", "start"],
        Action::Closed => &["connection", "end"],
        // ECS expects no "error" type for the network category: the attempt
        // ended, and `event.outcome: failure` says how.
        Action::Failed => &["connection", "end"],
        Action::ListenStarted => &["start"],
        Action::ListenStopped => &["end"],
        Action::UdpFlow | Action::Updated => &["connection", "info"],
        Action::StateChanged
        | Action::ResetSent
        | Action::EventsLost
        | Action::TableEvicted
        | Action::Pending => &["info"],
    }
}

fn outcome(action: Action) -> Option<&'static str> {
    match action {
        Action::Failed => Some("failure"),
        Action::Opened | Action::Closed | Action::ListenStarted | Action::ListenStopped => {
            Some("success")
        }
        Action::UdpFlow
        | Action::Updated
        | Action::StateChanged
        | Action::ResetSent
        | Action::EventsLost
        | Action::TableEvicted
        | Action::Pending => None,
    }
}

fn doc<'a>(ev: &'a ConnEvent, clock: &Clock) -> Doc<'a> {
    let idn = identity::get();
    let lost = matches!(ev.action, Action::EventsLost | Action::TableEvicted);
    let event = EventField {
        kind: if lost { "metric" } else { "event" },
        category: ["network"],
        kind_type: event_type(ev.action),
        action: ev.action.name(),
        id: next_id(idn),
        module: "netta",
        dataset: if lost {
            "netta.health"
        } else {
            "netta.connection"
        },
        outcome: outcome(ev.action),
        duration: match ev.action {
            Action::Closed | Action::Failed | Action::UdpFlow | Action::Updated => ev.duration_ns(),
            _ => None,
        },
        start: (ev.start_ns != 0 && !lost).then(|| Ts(clock.to_system(ev.start_ns))),
    };
    let timestamp = Ts(clock.to_system(ev.ts_ns));
    if lost {
        let netta = Netta {
            lost: (ev.action == Action::EventsLost).then_some(ev.count),
            evicted: (ev.action == Action::TableEvicted).then_some(ev.count),
            ..Netta::default()
        };
        return Doc::bare(timestamp, event, idn, netta);
    }
    let listen = matches!(ev.action, Action::ListenStarted | Action::ListenStopped);
    let direction = if listen {
        Direction::Ingress
    } else {
        ev.direction
    };
    let updated = ev.action == Action::Updated;
    // An interim count of a UDP flow has the shape of the flow's final line.
    let udp =
        ev.action == Action::UdpFlow || (updated && ev.proto == crate::core::event::Proto::Udp);
    // Lines that carry a connection's byte totals (so far, or final).
    let closed = ev.action == Action::Closed || updated;
    // A listener (or a socket not connected yet) has no peer: no flow to hash.
    let unconnected = ev.remote.ip().is_unspecified() && ev.remote.port() == 0;
    let peer = !listen && !unconnected;
    let iana = match ev.proto {
        crate::core::event::Proto::Tcp => crate::core::community_id::TCP,
        crate::core::event::Proto::Udp => crate::core::community_id::UDP,
    };
    let network = Network {
        transport: ev.proto.name(),
        iana_number: if iana == crate::core::community_id::TCP {
            "6"
        } else {
            "17"
        },
        community_id: peer.then(|| flow_id(iana, ev.local, ev.remote)).flatten(),
        net_type: if ev.local.is_ipv4() { "ipv4" } else { "ipv6" },
        direction: direction.name(),
        bytes: if udp {
            Some(ev.bytes_sent)
        } else {
            closed.then_some(ev.bytes_sent.saturating_add(ev.bytes_recv))
        },
        packets: udp.then_some(ev.count),
    };
    let (sent, recv) = (
        closed.then_some(ev.bytes_sent),
        closed.then_some(ev.bytes_recv),
    );
    let (mut source, mut destination) = if listen {
        (None, endpoint(ev.local, None, None))
    } else if direction == Direction::Ingress {
        (
            Some(endpoint(ev.remote, recv, None)),
            endpoint(ev.local, sent, None),
        )
    } else if udp {
        (
            Some(endpoint(ev.local, Some(ev.bytes_sent), Some(ev.count))),
            endpoint(ev.remote, None, None),
        )
    } else {
        (
            Some(endpoint(ev.local, sent, None)),
            endpoint(ev.remote, recv, None),
        )
    };
    // The name belongs to the remote end: the source of an accepted connection.
    if let Some(d) = ev.domain.as_ref().filter(|_| peer) {
        match source.as_mut() {
            Some(src) if direction == Direction::Ingress => src.domain = Some(d.as_str()),
            _ => destination.domain = Some(d.as_str()),
        }
    }
    let raw = ev.action == Action::StateChanged;
    // Roles are known for TCP (the side that connected is the client); a UDP
    // flow has no roles, only directions.
    let roles = peer && !udp && direction != Direction::Unknown;
    let netta = Netta {
        sock_id: idn.sock_ids.id(ev.sock),
        state: ev.new_state.map(|s| s.name()),
        old_state: if raw {
            ev.old_state.map(|s| s.name())
        } else {
            None
        },
        raw_states: raw.then_some([ev.raw_states.0, ev.raw_states.1]),
        owner: Some(ev.owner.name()),
        partial: ev.partial.then_some(true),
        lost: None,
        evicted: None,
        delta: updated.then(|| {
            let (sent, recv) = (
                ev.bytes_sent.saturating_sub(ev.prior_sent),
                ev.bytes_recv.saturating_sub(ev.prior_recv),
            );
            // `source` is the side that started the connection.
            let (src, dst) = if direction == Direction::Ingress {
                (recv, sent)
            } else {
                (sent, recv)
            };
            Delta {
                source_bytes: src,
                destination_bytes: dst,
                bytes_sent: sent,
                bytes_received: recv,
            }
        }),
        rtt_us: (updated && ev.rtt_us != 0).then_some(ev.rtt_us),
        retransmits: (updated && ev.proto == crate::core::event::Proto::Tcp).then_some(ev.retrans),
        netns: (ev.netns != 0).then_some(ev.netns),
        cgroup: (ev.who.cgroup != 0).then_some(ev.who.cgroup),
        args_truncated: ev
            .who
            .process
            .as_ref()
            .filter(|p| p.args.is_some() && p.args_truncated)
            .map(|_| true),
    };
    Doc {
        network: Some(network),
        client: if roles { source } else { None },
        server: roles.then_some(destination),
        related: Some(Related(ev.local.ip(), peer.then(|| ev.remote.ip()))),
        source,
        destination: Some(destination),
        process: process(ev, clock),
        user: ev.who.uid.map(|uid| User {
            id: uid,
            name: ev.who.user.as_ref().map(|n| n.as_str()),
        }),
        container: ev.who.container_id().map(|id| Container { id }),
        orchestrator: orchestrator(&ev.who),
        ..Doc::bare(timestamp, event, idn, netta)
    }
}

/// The ECS document for one alert: `event.kind: "alert"`, `rule.*`, `threat.*`
/// (MITRE ATT&CK), the evidence. The one alert schema of every command.
pub fn alert_value(a: &Alert, clock: &Clock) -> Value {
    let idn = identity::get();
    let attack = a.rule.attack();
    let mut doc = json!({
        "@timestamp": clock.rfc3339(a.last_ns),
        "ecs": { "version": ECS_VERSION },
        "event": {
            "kind": "alert",
            "category": ["network", "intrusion_detection"],
            "type": ["info"],
            "action": a.rule.id(),
            "id": next_id(idn),
            "module": "netta",
            "dataset": "netta.alert",
            "severity": a.severity.score(),
            "start": clock.rfc3339(a.first_ns),
        },
        "host": host(idn),
        "agent": agent(idn),
        "rule": {
            "id": a.rule.id(),
            "name": a.rule.name(),
            "ruleset": "netta",
            "category": attack.tactic.1,
            "description": a.rule.description(),
            "reference": attack.technique_url(),
        },
        "threat": {
            "framework": "MITRE ATT&CK",
            "tactic": {
                "id": [attack.tactic.0],
                "name": [attack.tactic.1],
                "reference": [attack.tactic_url()],
            },
            "technique": {
                "id": [attack.technique.0],
                "name": [attack.technique.1],
                "reference": [attack.technique_url()],
            },
        },
        "message": a.message,
        "netta": {
            "severity": a.severity.name(),
            "evidence": a.evidence,
            "incident": a.key,
            "updates": a.updates,
            "final": a.ended,
        },
    });
    if let Some(ip) = a.source_ip {
        doc["source"] = json!({ "ip": ip.to_string() });
        doc["related"] = json!({ "ip": [ip.to_string()] });
    }
    doc
}

/// Appends one alert as a single line.
pub fn write_alert_line(out: &mut Vec<u8>, a: &Alert, clock: &Clock) {
    let _ = serde_json::to_writer(&mut *out, &alert_value(a, clock));
    out.push(b'\n');
}

/// The ECS document for one DNS response that named addresses (`dns-answer`):
/// `dns.question.name`, `dns.answers`, `dns.resolved_ip`; the server as `source`.
pub fn dns_value(d: &crate::core::dns::Seen, clock: &Clock) -> Value {
    let idn = identity::get();
    let r = &d.response;
    let answers: Vec<Value> = r
        .answers
        .iter()
        .map(|a| {
            let data = match &a.data {
                crate::core::dns::Data::A(ip) => ip.to_string(),
                crate::core::dns::Data::Aaaa(ip) => ip.to_string(),
                crate::core::dns::Data::Cname(n) => n.to_string(),
            };
            json!({ "name": a.name.as_str(), "type": a.data.type_name(), "class": "IN",
                    "ttl": a.ttl, "data": data })
        })
        .collect();
    let qtype = match r.qtype {
        crate::core::dns::TYPE_A => "A".to_string(),
        crate::core::dns::TYPE_AAAA => "AAAA".to_string(),
        crate::core::dns::TYPE_CNAME => "CNAME".to_string(),
        n => format!("TYPE{n}"),
    };
    let flags = r.flag_names();
    json!({
        "@timestamp": clock.rfc3339(d.ts_ns),
        "ecs": { "version": ECS_VERSION },
        "event": {
            "kind": "event",
            "category": ["network"],
            "type": ["protocol"],
            "action": "dns-answer",
            "id": next_id(idn),
            "module": "netta",
            "dataset": "netta.dns",
            "outcome": "success",
        },
        "host": host(idn),
        "agent": agent(idn),
        "network": {
            "transport": d.transport.name(),
            "protocol": "dns",
            "type": if d.server.is_ipv4() { "ipv4" } else { "ipv6" },
        },
        "source": { "ip": d.server.ip().to_string(), "port": d.server.port() },
        "destination": { "ip": d.client.ip().to_string(), "port": d.client.port() },
        "related": { "ip": [d.server.ip().to_string(), d.client.ip().to_string()],
                     "hosts": [r.question.as_str()] },
        "dns": {
            "type": "answer",
            "id": r.id.to_string(),
            "op_code": "QUERY",
            "response_code": "NOERROR",
            "header_flags": flags,
            "question": { "name": r.question.as_str(), "type": qtype, "class": "IN" },
            "answers": answers,
            "resolved_ip": d.resolved.iter().map(|ip| ip.to_string()).collect::<Vec<_>>(),
        },
        "netta": { "netns": d.netns },
    })
}

/// Appends one `dns-answer` as a single line.
pub fn write_dns_line(out: &mut Vec<u8>, d: &crate::core::dns::Seen, clock: &Clock) {
    let _ = serde_json::to_writer(&mut *out, &dns_value(d, clock));
    out.push(b'\n');
}

/// Appends one event as a single line (every control character is escaped, so
/// hostile process names cannot break the line).
pub fn write_line(out: &mut Vec<u8>, ev: &ConnEvent, clock: &Clock) {
    line::write(out, &doc(ev, clock));
    out.push(b'\n');
}

/// A live-table row for `list --json`.
pub fn conn_value(c: &Conn, clock: &Clock) -> Value {
    let mut v = json!({
        "protocol": c.proto.name(),
        "local": { "ip": c.local.ip().to_string(), "port": c.local.port() },
        "state": c.state.name(),
        "direction": c.direction.name(),
        "bytes_sent": c.bytes_sent,
        "bytes_received": c.bytes_recv,
        "owner": c.owner.name(),
    });
    if c.has_peer() {
        v["remote"] = json!({ "ip": c.remote.ip().to_string(), "port": c.remote.port() });
    } else {
        v["remote"] = Value::Null;
    }
    if c.pid != 0 {
        v["pid"] = json!(c.pid);
        v["process"] = json!(String::from_utf8_lossy(c.comm.as_bytes()));
    }
    if c.start_ns != 0 {
        v["start"] = json!(clock.rfc3339(c.start_ns));
    }
    if c.inode != 0 {
        v["inode"] = json!(c.inode);
    }
    if c.packets != 0 {
        v["packets"] = json!(c.packets);
    }
    if let Some(d) = &c.domain {
        v["domain"] = json!(d.as_str());
    }
    if c.netns != 0 {
        v["netns"] = json!(c.netns);
    }
    who_value(&mut v, &c.who, clock);
    v
}

/// What is known of a row's owner, as `list --json` adds it to the row.
fn who_value(v: &mut Value, who: &crate::core::event::Who, clock: &Clock) {
    if let Some(uid) = who.uid {
        v["uid"] = json!(uid);
    }
    if let Some(u) = &who.user {
        v["user"] = json!(u.as_str());
    }
    if let Some(p) = &who.process {
        if let Some(e) = &p.executable {
            v["executable"] = json!(e.as_str());
        }
        if let Some(a) = &p.args {
            v["args"] = json!(a.iter().map(|a| a.as_str()).collect::<Vec<_>>());
        }
        if p.ppid != 0 {
            v["ppid"] = json!(p.ppid);
        }
        if p.start_ns != 0 {
            v["process_start"] = json!(clock.rfc3339(p.start_ns));
        }
        v["entity_id"] = json!(&*p.entity_id);
    }
    if let Some(c) = &who.container {
        if let Some(id) = &c.id {
            v["container"] = json!(&**id);
        }
        if let Some(p) = &c.pod {
            v["pod"] = json!({
                "uid": &*p.uid,
                "name": p.name.as_ref().map(|n| n.as_str()),
                "namespace": p.namespace.as_ref().map(|n| n.as_str()),
            });
        }
    }
}

/// A history row for `list --history --json`.
pub fn closed_value(h: &Closed, clock: &Clock) -> Value {
    let mut v = conn_value(&h.conn, clock);
    v["state"] = json!(if h.failed { "FAILED" } else { "CLOSED" });
    v["end"] = json!(clock.rfc3339(h.end_ns));
    if let Some(d) = h.duration_ns() {
        v["duration_ns"] = json!(d);
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The remembered flow id is the flow's own, in both directions, whatever
    /// else shared its slot since.
    #[test]
    fn flow_ids_are_the_flows_own() {
        use std::net::SocketAddr;
        let flows: Vec<(SocketAddr, SocketAddr)> = (0..2000u16)
            .map(|i| {
                let a: SocketAddr = format!("127.0.0.1:{}", 30000 + i).parse().unwrap();
                let b: SocketAddr = format!("10.{}.0.1:80", i % 7).parse().unwrap();
                (a, b)
            })
            .collect();
        for _ in 0..2 {
            for (a, b) in &flows {
                let want = community_id(0, crate::core::community_id::TCP, *a, *b);
                assert!(want.is_some());
                assert_eq!(flow_id(crate::core::community_id::TCP, *a, *b), want);
                assert_eq!(flow_id(crate::core::community_id::TCP, *b, *a), want);
                assert_ne!(flow_id(crate::core::community_id::UDP, *a, *b), want);
            }
        }
    }

    /// The ECS document for one event.
    fn event_value(ev: &ConnEvent, clock: &Clock) -> Value {
        serde_json::to_value(doc(ev, clock)).unwrap_or(Value::Null)
    }

    /// `user.id`: a keyword in ECS.
    pub(super) fn as_text<S: Serializer>(n: &u32, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(n)
    }

    /// Owners from nothing known to everything, with hostile text where it can be.
    fn owners() -> Vec<crate::core::event::Who> {
        use crate::core::cgroup::{Container, Pod};
        use crate::core::event::Who;
        use crate::core::process::Process;
        use crate::core::sanitize::Text;
        use std::sync::Arc;
        let hostile = b"a\"b\\c\n\t\x01\x1b[31m\x7f\xff\xc3\xa9 \\u0000";
        let process = |args: Option<&[&[u8]]>, truncated, ppid, start_ns| {
            Arc::new(Process {
                pid: 321,
                ppid,
                start_ns,
                uid: 0,
                cgroup: 0,
                entity_id: "ent\"ity\\\u{1}".into(),
                executable: Some(Text::escaped(hostile, 4096)),
                args: args.map(|a| a.iter().map(|t| Text::escaped(t, 4096)).collect()),
                args_truncated: truncated,
            })
        };
        let container = |id: Option<&str>, pod: bool| {
            Arc::new(Container {
                id: id.map(Arc::from),
                pod: pod.then(|| Pod {
                    uid: "pod-\"uid\\\u{7}".into(),
                    name: Some(Text::from_shown("web\"1\\")),
                    namespace: Some(Text::escaped(hostile, 64)),
                }),
            })
        };
        let mut all = vec![Who::default()];
        all.push(Who {
            uid: Some(0),
            ..Who::default()
        });
        all.push(Who {
            uid: Some(4_294_967_294),
            user: Some(Text::escaped(hostile, 64)),
            cgroup: u64::MAX,
            process: Some(process(None, false, 0, 0)),
            container: Some(container(Some("ab\"cd\\\u{0}"), false)),
        });
        all.push(Who {
            uid: Some(1000),
            user: Some(Text::from_shown("alice")),
            cgroup: 7,
            process: Some(process(
                Some(&[b"curl", hostile, b""]),
                true,
                1,
                1_500_000_000,
            )),
            container: Some(container(None, true)),
        });
        all.push(Who {
            process: Some(process(Some(&[]), false, 42, 3_700_000_000_123)),
            container: Some(container(Some("c0ffee"), true)),
            ..Who::default()
        });
        all
    }

    /// The line writer writes what serde_json writes for the same document,
    /// byte for byte, whatever the record.
    #[test]
    fn line_writer_matches_serde_json() {
        use crate::core::event::State;
        use crate::core::sanitize::Domain;
        let ends: [(&str, &str); 6] = [
            ("127.0.0.1:8080", "127.0.0.1:45000"),
            ("10.1.2.3:53", "192.168.200.255:65535"),
            ("0.0.0.0:80", "0.0.0.0:0"),
            ("[::1]:443", "[2001:db8::ff00:42:8329]:50000"),
            ("[::ffff:10.0.0.1]:22", "[fe80::1]:1"),
            ("[::]:5353", "[::]:0"),
        ];
        let comms: [&[u8]; 4] = [
            b"nginx",
            b"",
            b"a\n\"}\x1b[31m\xff\\",
            b"\x01\x02\x7f\xe2\x82",
        ];
        let domains = [None, Domain::parse("example.com"), Domain::parse("a\"b\\c")];
        let clocks = [Clock::fixed(0), Clock::fixed(1_700_000_000_987_654_321)];
        let mut lines = 0;
        let mut n = 0u64;
        for action in Action::REPORTED.into_iter().chain([Action::Pending]) {
            for proto in [Proto::Tcp, Proto::Udp] {
                for dir in [Direction::Ingress, Direction::Egress, Direction::Unknown] {
                    for (local, remote) in ends {
                        for who in owners() {
                            n += 1;
                            let mut e = base(action);
                            e.proto = proto;
                            e.direction = dir;
                            e.local = local.parse().unwrap();
                            e.remote = remote.parse().unwrap();
                            e.who = who;
                            e.comm = Comm::from_bytes(comms[n as usize % comms.len()]);
                            e.domain = domains[n as usize % domains.len()].clone();
                            e.pid = [0, 1, 321, u32::MAX][n as usize % 4];
                            e.ts_ns = n * 999_999_937 % 86_400_000_000_000;
                            e.start_ns = [0, 1, e.ts_ns / 2][n as usize % 3];
                            e.bytes_sent = [0, 9, u64::MAX][n as usize % 3];
                            e.bytes_recv = n * 1_000_003;
                            e.prior_sent = e.bytes_sent / 3;
                            e.prior_recv = e.bytes_recv / 2 + n % 2;
                            e.count = [0, 1, 17, u64::MAX][n as usize % 4];
                            e.sock = [0, 0xffff_8880_0000_1000, 1 << 60][n as usize % 3];
                            e.old_state = State::from_tcp((n % 13) as u8);
                            e.new_state = State::from_tcp((n % 11) as u8);
                            e.raw_states = ((n % 256) as u8, 255);
                            e.partial = n.is_multiple_of(5);
                            e.rtt_us = [0, 42, u32::MAX][n as usize % 3];
                            e.retrans = (n % 3) as u32;
                            e.netns = [0, 4_026_531_840][n as usize % 2];
                            e.owner = [OwnerSource::Hook, OwnerSource::Proc, OwnerSource::Unknown]
                                [n as usize % 3];
                            let clock = &clocks[n as usize % 2];
                            let d = doc(&e, clock);
                            let want = serde_json::to_vec(&d).unwrap();
                            let mut got = Vec::new();
                            line::write(&mut got, &d);
                            assert_eq!(
                                String::from_utf8_lossy(&got),
                                String::from_utf8_lossy(&want),
                                "{e:?}"
                            );
                            assert_eq!(got, want);
                            lines += 1;
                        }
                    }
                }
            }
        }
        for lost in [Action::EventsLost, Action::TableEvicted] {
            for count in [0, 1, u64::MAX] {
                let mut e = ConnEvent::lost(123_456_789, count);
                e.action = lost;
                let d = doc(&e, &clocks[1]);
                let mut got = Vec::new();
                line::write(&mut got, &d);
                assert_eq!(got, serde_json::to_vec(&d).unwrap());
                lines += 1;
            }
        }
        assert!(lines > 2000, "{lines}");
    }
    use crate::core::event::{OwnerSource, Proto};
    use crate::core::sanitize::Comm;

    fn base(action: Action) -> ConnEvent {
        let mut e = ConnEvent::lost(2_000_000_500, 0);
        e.action = action;
        e.sock = 0xffff_8880_0000_1000;
        e.local = "127.0.0.1:8080".parse().unwrap();
        e.remote = "127.0.0.1:45000".parse().unwrap();
        e.direction = Direction::Ingress;
        e.pid = 321;
        e.comm = Comm::from_bytes(b"nginx");
        e.owner = OwnerSource::Hook;
        e.start_ns = 1_000_000_000;
        e.new_state = crate::core::event::State::from_tcp(7);
        e
    }

    /// The lines' `source`/`destination` are the ends the filters match
    /// (`core::tuple::Ends`; an unknown direction shows the local end as source).
    #[test]
    fn lines_show_the_ends_the_filters_use() {
        use crate::core::tuple::Ends;
        let addr = |v: &Value| -> Option<std::net::SocketAddr> {
            let ip = v["ip"].as_str()?;
            Some(std::net::SocketAddr::new(
                ip.parse().ok()?,
                v["port"].as_u64()? as u16,
            ))
        };
        for action in [
            Action::Opened,
            Action::Closed,
            Action::Failed,
            Action::UdpFlow,
            Action::ListenStarted,
        ] {
            for dir in [Direction::Ingress, Direction::Egress, Direction::Unknown] {
                let mut e = base(action);
                e.direction = dir;
                if action == Action::ListenStarted {
                    e.remote = "0.0.0.0:0".parse().unwrap();
                }
                let v = event_value(&e, &Clock::fixed(0));
                let listen = action == Action::ListenStarted;
                let (want_src, want_dst) = Ends::of(dir, e.local, e.remote, listen)
                    .pairs()
                    .next()
                    .unwrap();
                assert_eq!(addr(&v["source"]), want_src, "{action:?} {dir:?}");
                assert_eq!(addr(&v["destination"]), want_dst, "{action:?} {dir:?}");
            }
        }
    }

    #[test]
    fn ingress_close_puts_the_client_in_source() {
        let mut e = base(Action::Closed);
        e.bytes_sent = 500;
        e.bytes_recv = 80;
        let v = event_value(&e, &Clock::fixed(0));
        assert_eq!(v["@timestamp"], "1970-01-01T00:00:02.000000500Z");
        assert_eq!(v["event"]["action"], "connection-closed");
        assert_eq!(v["event"]["category"], json!(["network"]));
        assert_eq!(v["event"]["duration"], 1_000_000_500u64);
        assert_eq!(v["network"]["direction"], "ingress");
        assert_eq!(v["network"]["transport"], "tcp");
        assert_eq!(v["network"]["type"], "ipv4");
        assert_eq!(v["source"]["port"], 45000);
        assert_eq!(v["source"]["bytes"], 80, "the client sent what we received");
        assert_eq!(v["destination"]["port"], 8080);
        assert_eq!(v["destination"]["bytes"], 500);
        assert_eq!(v["process"]["pid"], 321);
        assert_eq!(v["process"]["name"], "nginx");
        assert_eq!(v["netta"]["sock_id"].as_str().map(str::len), Some(16));
        assert!(!v.to_string().contains("ffff8880"), "{v}");
        assert_eq!(v["ecs"]["version"], ECS_VERSION);
        assert_eq!(v["event"]["outcome"], "success");
        assert_eq!(v["network"]["iana_number"], "6");
        assert_eq!(v["client"]["port"], 45000);
        assert_eq!(v["server"]["port"], 8080);
        assert_eq!(v["related"]["ip"], json!(["127.0.0.1"]));
        assert!(v["network"]["community_id"]
            .as_str()
            .is_some_and(|c| c.starts_with("1:")));
        assert_eq!(v["host"]["name"], "host1");
        assert_eq!(v["agent"]["type"], "netta");
    }

    #[test]
    fn udp_flow_carries_counters_and_lost_is_a_metric() {
        let mut e = base(Action::UdpFlow);
        e.proto = Proto::Udp;
        e.direction = Direction::Egress;
        e.count = 1000;
        e.bytes_sent = 64_000;
        let v = event_value(&e, &Clock::fixed(0));
        assert_eq!(v["network"]["packets"], 1000);
        assert_eq!(v["source"]["packets"], 1000);
        assert_eq!(v["source"]["port"], 8080);
        let lost = event_value(&ConnEvent::lost(5, 17), &Clock::fixed(0));
        assert_eq!(lost["event"]["action"], "events-lost");
        assert_eq!(lost["netta"]["lost"], 17);
    }

    #[test]
    fn updates_carry_totals_as_ecs_bytes_and_deltas_under_netta() {
        let mut e = base(Action::Updated);
        e.bytes_sent = 5_000;
        e.bytes_recv = 900;
        e.prior_sent = 3_000;
        e.prior_recv = 900;
        e.rtt_us = 42;
        e.retrans = 1;
        let v = event_value(&e, &Clock::fixed(0));
        assert_eq!(v["event"]["action"], "connection-updated");
        assert_eq!(v["event"]["type"], json!(["connection", "info"]));
        assert!(v["event"].get("outcome").is_none());
        assert_eq!(v["event"]["duration"], 1_000_000_500u64, "its age so far");
        // Ingress: the client (source) sent what we received.
        assert_eq!(v["source"]["bytes"], 900);
        assert_eq!(v["destination"]["bytes"], 5_000);
        assert_eq!(v["network"]["bytes"], 5_900);
        assert_eq!(
            v["netta"]["delta"],
            json!({"source_bytes": 0, "destination_bytes": 2_000, "bytes_sent": 2_000, "bytes_received": 0})
        );
        assert_eq!(v["netta"]["rtt_us"], 42);
        assert_eq!(v["netta"]["retransmits"], 1);
        // Other lines have no deltas.
        let closed = event_value(&base(Action::Closed), &Clock::fixed(0));
        assert!(closed["netta"].get("delta").is_none(), "{closed}");
    }

    #[test]
    fn hostile_names_stay_on_one_line() {
        let mut e = base(Action::Opened);
        e.comm = Comm::from_bytes(b"a\n\"}\x1b[31m\xff");
        let mut out = Vec::new();
        write_line(&mut out, &e, &Clock::fixed(0));
        assert_eq!(out.iter().filter(|b| **b == b'\n').count(), 1);
        assert!(!out.contains(&0x1b));
        let back: Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(back["process"]["name"], "a\n\"}\u{1b}[31m\u{fffd}");
    }
}
