//! The event line's writer: the hot path of every sink, so it writes bytes
//! directly (keys as literals, integers with `itoa`, the run's `host`/`agent`
//! serialised once, the date and time of day formatted once per second) and
//! escapes only the untrusted text. Its output is serde_json's for the same
//! [`Doc`], byte for byte (the tests compare them).
use std::cell::RefCell;
use std::io::Write as _;
use std::net::IpAddr;
use std::sync::OnceLock;
use std::time::{Duration, UNIX_EPOCH};

use super::{
    agent, host, Container, Delta, Doc, Endpoint, EventField, EventId, Fixed, Netta, Network,
    Orchestrator, Parent, Process, Related, Ts, User,
};
use crate::core::community_id::CommunityId;
use crate::core::sanitize::Text;

/// Appends a key (a literal with its quotes and colon), after a comma unless it
/// opens its object.
fn key(out: &mut Vec<u8>, k: &[u8]) {
    if out.last() != Some(&b'{') {
        out.push(b',');
    }
    out.extend_from_slice(k);
}

macro_rules! key {
    ($out:expr, $k:literal) => {
        key($out, concat!("\"", $k, "\":").as_bytes())
    };
}

/// A field: its key, then its value written by `write`.
macro_rules! field {
    ($out:expr, $k:literal, $v:expr, $write:expr) => {{
        key!($out, $k);
        $write($out, $v);
    }};
}

/// An optional field: left out when absent (serde's
/// `skip_serializing_if = "Option::is_none"`).
macro_rules! opt {
    ($out:expr, $k:literal, $v:expr, $write:expr) => {
        if let Some(v) = $v {
            field!($out, $k, v, $write);
        }
    };
}

/// A string of netta's own (action names, states, ids): nothing to escape.
fn lit(out: &mut Vec<u8>, s: &str) {
    out.push(b'"');
    out.extend_from_slice(s.as_bytes());
    out.push(b'"');
}

/// Untrusted text (already `core::sanitize`d where netta does so): copied as it is
/// when JSON allows, escaped by serde_json otherwise (quotes, backslashes,
/// control characters), so both paths write the same bytes.
fn text(out: &mut Vec<u8>, s: &str) {
    if s.bytes().all(|b| b >= 0x20 && b != b'"' && b != b'\\') {
        lit(out, s);
    } else {
        // Writing into a Vec cannot fail.
        let _ = serde_json::to_writer(&mut *out, s);
    }
}

fn int(out: &mut Vec<u8>, n: impl itoa::Integer) {
    out.extend_from_slice(itoa::Buffer::new().format(n).as_bytes());
}

/// A JSON array of `items`, each written by `write`.
fn array<T>(
    out: &mut Vec<u8>,
    items: impl IntoIterator<Item = T>,
    write: impl Fn(&mut Vec<u8>, T),
) {
    out.push(b'[');
    for (i, x) in items.into_iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        write(out, x);
    }
    out.push(b']');
}

fn lits(out: &mut Vec<u8>, l: &[&str]) {
    array(out, l.iter().copied(), lit);
}

fn boolean(out: &mut Vec<u8>, b: bool) {
    out.extend_from_slice(if b { b"true" } else { b"false" });
}

/// Lower-case hex, at least `width` digits.
fn hex(out: &mut Vec<u8>, n: u64, width: usize) {
    let digits = (16 - n.leading_zeros() as usize / 4).max(width).max(1);
    for i in (0..digits).rev() {
        out.push(b"0123456789abcdef"[(n >> (i * 4)) as usize & 0xf]);
    }
}

fn ip(out: &mut Vec<u8>, ip: IpAddr) {
    out.push(b'"');
    match ip {
        IpAddr::V4(v4) => {
            for (i, o) in v4.octets().into_iter().enumerate() {
                if i > 0 {
                    out.push(b'.');
                }
                int(out, o);
            }
        }
        // Rarer, and std's text (compressed zeros, embedded IPv4) is the one to match.
        IpAddr::V6(v6) => {
            let _ = write!(out, "{v6}");
        }
    }
    out.push(b'"');
}

/// The `YYYY-MM-DDTHH:MM:SS` of the last few seconds seen (a line's time, its
/// connection's start and its process's start each stay within one for a while).
struct Seconds {
    slots: [(u64, [u8; 19]); 4],
    next: usize,
}

thread_local! {
    static SECONDS: RefCell<Seconds> = const {
        RefCell::new(Seconds { slots: [(u64::MAX, [0; 19]); 4], next: 0 })
    };
}

/// A time as `"YYYY-MM-DDTHH:MM:SS.nnnnnnnnnZ"`, humantime's RFC 3339 with ns.
fn ts(out: &mut Vec<u8>, t: &Ts) {
    // `Clock::to_system` never goes before the epoch.
    let d = t.0.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = d.as_secs();
    out.push(b'"');
    SECONDS.with(|c| {
        let mut c = c.borrow_mut();
        if let Some((_, s)) = c.slots.iter().find(|(k, _)| *k == secs) {
            out.extend_from_slice(s);
            return;
        }
        // `YYYY-MM-DDTHH:MM:SSZ`, less its `Z`.
        let mut whole = [0; 20];
        let t = UNIX_EPOCH + Duration::from_secs(secs);
        let _ = write!(&mut whole[..], "{}", humantime::format_rfc3339_seconds(t));
        let mut s = [0; 19];
        s.copy_from_slice(&whole[..19]);
        let i = c.next;
        c.slots[i] = (secs, s);
        c.next = (i + 1) % c.slots.len();
        out.extend_from_slice(&s);
    });
    let mut frac = *b".000000000Z\"";
    let mut n = d.subsec_nanos();
    for b in frac[1..10].iter_mut().rev() {
        *b = b'0' + (n % 10) as u8;
        n /= 10;
    }
    out.extend_from_slice(&frac);
}

/// `"host":{…},"agent":{…}`: one identity per run (`identity::get`).
fn fixed(out: &mut Vec<u8>, f: &Fixed) {
    static BYTES: OnceLock<Vec<u8>> = OnceLock::new();
    let bytes = BYTES.get_or_init(|| {
        let mut b = b"\"host\":".to_vec();
        let _ = serde_json::to_writer(&mut b, &host(f.0));
        b.extend_from_slice(b",\"agent\":");
        let _ = serde_json::to_writer(&mut b, &agent(f.0));
        b
    });
    out.push(b',');
    out.extend_from_slice(bytes);
}

fn event_id(out: &mut Vec<u8>, id: &EventId) {
    // The ephemeral id is netta's own hex; escaped all the same.
    if id.0.bytes().all(|b| b.is_ascii_alphanumeric()) {
        out.push(b'"');
        out.extend_from_slice(id.0.as_bytes());
    } else {
        let _ = serde_json::to_writer(&mut *out, id);
        return;
    }
    out.push(b'-');
    hex(out, id.1, 1);
    out.push(b'"');
}

fn event(out: &mut Vec<u8>, e: &EventField) {
    out.push(b'{');
    field!(out, "kind", e.kind, lit);
    field!(out, "category", &e.category, lits);
    field!(out, "type", e.kind_type, lits);
    field!(out, "action", e.action, lit);
    field!(out, "id", &e.id, event_id);
    field!(out, "module", e.module, lit);
    field!(out, "dataset", e.dataset, lit);
    opt!(out, "outcome", e.outcome, lit);
    opt!(out, "duration", e.duration, int);
    opt!(out, "start", &e.start, ts);
    out.push(b'}');
}

fn network(out: &mut Vec<u8>, n: &Network) {
    out.push(b'{');
    field!(out, "transport", n.transport, lit);
    field!(out, "iana_number", n.iana_number, lit);
    field!(out, "type", n.net_type, lit);
    field!(out, "direction", n.direction, lit);
    opt!(
        out,
        "community_id",
        &n.community_id,
        |o: &mut Vec<u8>, c: &CommunityId| lit(o, c.as_str())
    );
    opt!(out, "bytes", n.bytes, int);
    opt!(out, "packets", n.packets, int);
    out.push(b'}');
}

fn endpoint(out: &mut Vec<u8>, e: &Endpoint) {
    out.push(b'{');
    field!(out, "ip", e.ip, ip);
    field!(out, "port", e.port, int);
    opt!(out, "domain", e.domain, text);
    opt!(out, "bytes", e.bytes, int);
    opt!(out, "packets", e.packets, int);
    out.push(b'}');
}

fn related(out: &mut Vec<u8>, r: &Related) {
    out.push(b'{');
    key!(out, "ip");
    array(
        out,
        [Some(r.0), r.1.filter(|o| *o != r.0)].into_iter().flatten(),
        ip,
    );
    out.push(b'}');
}

fn process(out: &mut Vec<u8>, p: &Process) {
    out.push(b'{');
    field!(out, "pid", p.pid, int);
    field!(out, "name", &p.name, text);
    opt!(out, "executable", p.executable, text);
    opt!(out, "args", p.args, |o: &mut Vec<u8>, a: &[Text]| array(
        o,
        a,
        |o, a| text(o, a.as_str())
    ));
    opt!(out, "args_count", p.args_count, int);
    opt!(out, "parent", &p.parent, |o: &mut Vec<u8>, p: &Parent| {
        o.push(b'{');
        field!(o, "pid", p.pid, int);
        o.push(b'}');
    });
    opt!(out, "start", &p.start, ts);
    opt!(out, "entity_id", p.entity_id, text);
    out.push(b'}');
}

fn user(out: &mut Vec<u8>, u: &User) {
    out.extend_from_slice(b"{\"id\":\"");
    int(out, u.id);
    out.push(b'"');
    opt!(out, "name", u.name, text);
    out.push(b'}');
}

fn orchestrator(out: &mut Vec<u8>, o: &Orchestrator) {
    out.push(b'{');
    field!(out, "type", o.kind, lit);
    opt!(out, "namespace", o.namespace, text);
    out.extend_from_slice(b",\"resource\":{\"type\":");
    lit(out, o.resource.kind);
    field!(out, "id", o.resource.id, text);
    opt!(out, "name", o.resource.name, text);
    out.extend_from_slice(b"}}");
}

fn delta(out: &mut Vec<u8>, d: &Delta) {
    out.push(b'{');
    field!(out, "source_bytes", d.source_bytes, int);
    field!(out, "destination_bytes", d.destination_bytes, int);
    field!(out, "bytes_sent", d.bytes_sent, int);
    field!(out, "bytes_received", d.bytes_received, int);
    out.push(b'}');
}

fn netta(out: &mut Vec<u8>, n: &Netta) {
    out.push(b'{');
    if let Some(id) = n.sock_id {
        key!(out, "sock_id");
        out.push(b'"');
        hex(out, id.0, 16);
        out.push(b'"');
    }
    opt!(out, "state", n.state, lit);
    opt!(out, "old_state", n.old_state, lit);
    opt!(out, "raw_states", n.raw_states, |o, s: [u8; 2]| array(
        o, s, int
    ));
    opt!(out, "owner", n.owner, lit);
    opt!(out, "partial", n.partial, boolean);
    opt!(out, "lost", n.lost, int);
    opt!(out, "evicted", n.evicted, int);
    opt!(out, "delta", &n.delta, delta);
    opt!(out, "rtt_us", n.rtt_us, int);
    opt!(out, "retransmits", n.retransmits, int);
    opt!(out, "netns", n.netns, int);
    opt!(out, "cgroup", n.cgroup, int);
    opt!(out, "args_truncated", n.args_truncated, boolean);
    out.push(b'}');
}

/// Appends the document as one JSON object (no newline).
pub(super) fn write(out: &mut Vec<u8>, d: &Doc) {
    out.push(b'{');
    field!(out, "@timestamp", &d.timestamp, ts);
    field!(out, "ecs", d.ecs.version, |o: &mut Vec<u8>, v| {
        o.push(b'{');
        field!(o, "version", v, lit);
        o.push(b'}');
    });
    field!(out, "event", &d.event, event);
    fixed(out, &d.fixed);
    opt!(out, "network", &d.network, network);
    opt!(out, "source", &d.source, endpoint);
    opt!(out, "destination", &d.destination, endpoint);
    opt!(out, "client", &d.client, endpoint);
    opt!(out, "server", &d.server, endpoint);
    opt!(out, "related", &d.related, related);
    opt!(out, "process", &d.process, process);
    opt!(out, "user", &d.user, user);
    opt!(
        out,
        "container",
        &d.container,
        |o: &mut Vec<u8>, c: &Container| {
            o.push(b'{');
            field!(o, "id", c.id, text);
            o.push(b'}');
        }
    );
    opt!(out, "orchestrator", &d.orchestrator, orchestrator);
    field!(out, "netta", &d.netta, netta);
    out.push(b'}');
}
