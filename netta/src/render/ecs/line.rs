//! The event line's writer: the hot path of every sink, so it writes bytes
//! directly (keys as literals, integers with `itoa`, the run's `host`/`agent`
//! serialised once, the date and time of day formatted once per second) and
//! escapes only the untrusted text. Its output is serde_json's for the same
//! [`Doc`], byte for byte (the tests compare them).
use std::cell::RefCell;
use std::io::Write as _;
use std::net::IpAddr;
use std::sync::OnceLock;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::{
    agent, host, Delta, Doc, Endpoint, EventField, EventId, Fixed, Network, Netta, Orchestrator,
    Process, Related, User,
};

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
fn ts(out: &mut Vec<u8>, t: SystemTime) {
    // `Clock::to_system` never goes before the epoch.
    let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
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
    out.extend_from_slice(b"{\"kind\":");
    lit(out, e.kind);
    out.extend_from_slice(b",\"category\":[");
    for (i, c) in e.category.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        lit(out, c);
    }
    out.extend_from_slice(b"],\"type\":[");
    for (i, t) in e.kind_type.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        lit(out, t);
    }
    out.extend_from_slice(b"],\"action\":");
    lit(out, e.action);
    out.extend_from_slice(b",\"id\":");
    event_id(out, &e.id);
    out.extend_from_slice(b",\"module\":");
    lit(out, e.module);
    out.extend_from_slice(b",\"dataset\":");
    lit(out, e.dataset);
    if let Some(o) = e.outcome {
        key!(out, "outcome");
        lit(out, o);
    }
    if let Some(d) = e.duration {
        key!(out, "duration");
        int(out, d);
    }
    if let Some(s) = &e.start {
        key!(out, "start");
        ts(out, s.0);
    }
    out.push(b'}');
}

fn network(out: &mut Vec<u8>, n: &Network) {
    out.extend_from_slice(b"{\"transport\":");
    lit(out, n.transport);
    out.extend_from_slice(b",\"iana_number\":");
    lit(out, n.iana_number);
    out.extend_from_slice(b",\"type\":");
    lit(out, n.net_type);
    out.extend_from_slice(b",\"direction\":");
    lit(out, n.direction);
    if let Some(c) = &n.community_id {
        key!(out, "community_id");
        lit(out, c.as_str());
    }
    if let Some(b) = n.bytes {
        key!(out, "bytes");
        int(out, b);
    }
    if let Some(p) = n.packets {
        key!(out, "packets");
        int(out, p);
    }
    out.push(b'}');
}

fn endpoint(out: &mut Vec<u8>, e: &Endpoint) {
    out.extend_from_slice(b"{\"ip\":");
    ip(out, e.ip);
    out.extend_from_slice(b",\"port\":");
    int(out, e.port);
    if let Some(d) = e.domain {
        key!(out, "domain");
        text(out, d);
    }
    if let Some(b) = e.bytes {
        key!(out, "bytes");
        int(out, b);
    }
    if let Some(p) = e.packets {
        key!(out, "packets");
        int(out, p);
    }
    out.push(b'}');
}

fn related(out: &mut Vec<u8>, r: &Related) {
    out.extend_from_slice(b"{\"ip\":[");
    ip(out, r.0);
    if let Some(o) = r.1.filter(|o| *o != r.0) {
        out.push(b',');
        ip(out, o);
    }
    out.extend_from_slice(b"]}");
}

fn process(out: &mut Vec<u8>, p: &Process) {
    out.extend_from_slice(b"{\"pid\":");
    int(out, p.pid);
    out.extend_from_slice(b",\"name\":");
    text(out, &p.name);
    if let Some(e) = p.executable {
        key!(out, "executable");
        text(out, e);
    }
    if let Some(args) = p.args {
        key!(out, "args");
        out.push(b'[');
        for (i, a) in args.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            text(out, a.as_str());
        }
        out.push(b']');
    }
    if let Some(n) = p.args_count {
        key!(out, "args_count");
        int(out, n);
    }
    if let Some(parent) = &p.parent {
        key!(out, "parent");
        out.extend_from_slice(b"{\"pid\":");
        int(out, parent.pid);
        out.push(b'}');
    }
    if let Some(s) = &p.start {
        key!(out, "start");
        ts(out, s.0);
    }
    if let Some(id) = p.entity_id {
        key!(out, "entity_id");
        text(out, id);
    }
    out.push(b'}');
}

fn user(out: &mut Vec<u8>, u: &User) {
    out.extend_from_slice(b"{\"id\":\"");
    int(out, u.id);
    out.push(b'"');
    if let Some(n) = u.name {
        key!(out, "name");
        text(out, n);
    }
    out.push(b'}');
}

fn orchestrator(out: &mut Vec<u8>, o: &Orchestrator) {
    out.extend_from_slice(b"{\"type\":");
    lit(out, o.kind);
    if let Some(ns) = o.namespace {
        key!(out, "namespace");
        text(out, ns);
    }
    out.extend_from_slice(b",\"resource\":{\"type\":");
    lit(out, o.resource.kind);
    out.extend_from_slice(b",\"id\":");
    text(out, o.resource.id);
    if let Some(n) = o.resource.name {
        key!(out, "name");
        text(out, n);
    }
    out.extend_from_slice(b"}}");
}

fn delta(out: &mut Vec<u8>, d: &Delta) {
    out.extend_from_slice(b"{\"source_bytes\":");
    int(out, d.source_bytes);
    out.extend_from_slice(b",\"destination_bytes\":");
    int(out, d.destination_bytes);
    out.extend_from_slice(b",\"bytes_sent\":");
    int(out, d.bytes_sent);
    out.extend_from_slice(b",\"bytes_received\":");
    int(out, d.bytes_received);
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
    if let Some(s) = n.state {
        key!(out, "state");
        lit(out, s);
    }
    if let Some(s) = n.old_state {
        key!(out, "old_state");
        lit(out, s);
    }
    if let Some([a, b]) = n.raw_states {
        key!(out, "raw_states");
        out.push(b'[');
        int(out, a);
        out.push(b',');
        int(out, b);
        out.push(b']');
    }
    if let Some(o) = n.owner {
        key!(out, "owner");
        lit(out, o);
    }
    if let Some(p) = n.partial {
        key!(out, "partial");
        boolean(out, p);
    }
    if let Some(l) = n.lost {
        key!(out, "lost");
        int(out, l);
    }
    if let Some(e) = n.evicted {
        key!(out, "evicted");
        int(out, e);
    }
    if let Some(d) = &n.delta {
        key!(out, "delta");
        delta(out, d);
    }
    if let Some(r) = n.rtt_us {
        key!(out, "rtt_us");
        int(out, r);
    }
    if let Some(r) = n.retransmits {
        key!(out, "retransmits");
        int(out, r);
    }
    if let Some(ns) = n.netns {
        key!(out, "netns");
        int(out, ns);
    }
    if let Some(c) = n.cgroup {
        key!(out, "cgroup");
        int(out, c);
    }
    if let Some(t) = n.args_truncated {
        key!(out, "args_truncated");
        boolean(out, t);
    }
    out.push(b'}');
}

/// Appends the document as one JSON object (no newline).
pub(super) fn write(out: &mut Vec<u8>, d: &Doc) {
    out.extend_from_slice(b"{\"@timestamp\":");
    ts(out, d.timestamp.0);
    out.extend_from_slice(b",\"ecs\":{\"version\":");
    lit(out, d.ecs.version);
    out.extend_from_slice(b"},\"event\":");
    event(out, &d.event);
    fixed(out, &d.fixed);
    let ends = [
        (&b",\"source\":"[..], &d.source),
        (b",\"destination\":", &d.destination),
        (b",\"client\":", &d.client),
        (b",\"server\":", &d.server),
    ];
    if let Some(n) = &d.network {
        out.extend_from_slice(b",\"network\":");
        network(out, n);
    }
    for (k, e) in ends {
        if let Some(e) = e {
            out.extend_from_slice(k);
            endpoint(out, e);
        }
    }
    if let Some(r) = &d.related {
        out.extend_from_slice(b",\"related\":");
        related(out, r);
    }
    if let Some(p) = &d.process {
        out.extend_from_slice(b",\"process\":");
        process(out, p);
    }
    if let Some(u) = &d.user {
        out.extend_from_slice(b",\"user\":");
        user(out, u);
    }
    if let Some(c) = &d.container {
        out.extend_from_slice(b",\"container\":{\"id\":");
        text(out, c.id);
        out.push(b'}');
    }
    if let Some(o) = &d.orchestrator {
        out.extend_from_slice(b",\"orchestrator\":");
        orchestrator(out, o);
    }
    out.extend_from_slice(b",\"netta\":");
    netta(out, &d.netta);
    out.push(b'}');
}
