//! Suspicious-activity detection, live on the event stream and on table
//! snapshots. Each finding has a stable rule id, a severity, evidence and
//! first/last-seen times, and fires once per incident: evidence that keeps coming
//! updates the open incident, which re-arms after a quiet period.
pub mod config;

use std::collections::{BTreeMap, BTreeSet, HashSet, VecDeque};
use std::fmt::Write as _;
use std::net::{IpAddr, SocketAddr};

use rustc_hash::FxHashMap;
use serde_json::json;

use crate::event::{Action, ConnEvent, Direction, Proto, State};
use crate::sanitize::Comm;
use crate::services::Services;
use crate::table::Snapshot;
use crate::view;
pub use config::Rules;

const SEC: u64 = 1_000_000_000;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum RuleId {
    UnusualHighPort,
    HighConnectionCount,
    PortScan,
    SynFlood,
    ConnectionBurst,
    FanOut,
    NewListener,
    LargeOutbound,
    AbnormalState,
}

impl RuleId {
    pub fn id(self) -> &'static str {
        match self {
            RuleId::UnusualHighPort => "unusual-high-port",
            RuleId::HighConnectionCount => "high-connection-count",
            RuleId::PortScan => "port-scan",
            RuleId::SynFlood => "syn-flood",
            RuleId::ConnectionBurst => "connection-burst",
            RuleId::FanOut => "fan-out",
            RuleId::NewListener => "new-listener",
            RuleId::LargeOutbound => "large-outbound",
            RuleId::AbnormalState => "abnormal-state",
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            RuleId::UnusualHighPort => "Unusual high port",
            RuleId::HighConnectionCount => "High connection count",
            RuleId::PortScan => "Port scan",
            RuleId::SynFlood => "SYN flood",
            RuleId::ConnectionBurst => "Connection burst",
            RuleId::FanOut => "Fan-out to many hosts",
            RuleId::NewListener => "New listener",
            RuleId::LargeOutbound => "Large outbound transfer",
            RuleId::AbnormalState => "Abnormal connection states",
        }
    }

    /// One sentence on what the rule looks for (`rule.description`).
    pub fn description(self) -> &'static str {
        match self {
            RuleId::UnusualHighPort => {
                "A connection to or from a high port that no known service uses."
            }
            RuleId::HighConnectionCount => "One remote address holds many connections at once.",
            RuleId::PortScan => "One source tries many distinct ports within a short window.",
            RuleId::SynFlood => "Many half-open connections (SYN received, never established).",
            RuleId::ConnectionBurst => "One source opens connections at a very high rate.",
            RuleId::FanOut => "One process connects to many distinct hosts within a short window.",
            RuleId::NewListener => "A port started listening after netta started.",
            RuleId::LargeOutbound => "One connection sent an unusually large amount of data out.",
            RuleId::AbnormalState => "Many connections stuck in unusual TCP states.",
        }
    }

    /// The MITRE ATT&CK tactic and technique the rule watches for.
    pub fn attack(self) -> Attack {
        const DISCOVERY: (&str, &str) = ("TA0007", "Discovery");
        const IMPACT: (&str, &str) = ("TA0040", "Impact");
        const EXFILTRATION: (&str, &str) = ("TA0010", "Exfiltration");
        const C2: (&str, &str) = ("TA0011", "Command and Control");
        let (tactic, technique) = match self {
            RuleId::UnusualHighPort | RuleId::NewListener => (C2, ("T1571", "Non-Standard Port")),
            RuleId::PortScan | RuleId::AbnormalState => {
                (DISCOVERY, ("T1046", "Network Service Discovery"))
            }
            RuleId::FanOut => (DISCOVERY, ("T1018", "Remote System Discovery")),
            RuleId::SynFlood => (IMPACT, ("T1498", "Network Denial of Service")),
            RuleId::HighConnectionCount | RuleId::ConnectionBurst => {
                (IMPACT, ("T1499", "Endpoint Denial of Service"))
            }
            RuleId::LargeOutbound => (
                EXFILTRATION,
                ("T1048", "Exfiltration Over Alternative Protocol"),
            ),
        };
        Attack { tactic, technique }
    }
}

/// A rule's place in MITRE ATT&CK: (id, name) of its tactic and technique.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Attack {
    pub tactic: (&'static str, &'static str),
    pub technique: (&'static str, &'static str),
}

impl Attack {
    pub fn technique_url(&self) -> String {
        format!("https://attack.mitre.org/techniques/{}/", self.technique.0)
    }

    pub fn tactic_url(&self) -> String {
        format!("https://attack.mitre.org/tactics/{}/", self.tactic.0)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Severity {
    Low,
    Medium,
    High,
}

impl Severity {
    pub fn name(self) -> &'static str {
        match self {
            Severity::Low => "low",
            Severity::Medium => "medium",
            Severity::High => "high",
        }
    }

    /// ECS `event.severity` (0-100, Elastic's low/medium/high risk scores).
    pub fn score(self) -> u8 {
        match self {
            Severity::Low => 21,
            Severity::Medium => 47,
            Severity::High => 73,
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct Alert {
    pub rule: RuleId,
    pub severity: Severity,
    /// What the incident is about (a source IP, a port, a pid): one alert per key.
    pub key: String,
    /// One line for the text view, hostile strings already escaped.
    pub message: String,
    pub source_ip: Option<IpAddr>,
    pub first_ns: u64,
    pub last_ns: u64,
    /// Times evidence arrived for this incident.
    pub updates: u64,
    /// The incident ended (quiet for `rearm_after`): this is its final state.
    pub ended: bool,
    pub evidence: serde_json::Value,
}

/// A finding before incident bookkeeping.
struct Finding {
    rule: RuleId,
    severity: Severity,
    key: String,
    message: String,
    source_ip: Option<IpAddr>,
    first_ns: u64,
    evidence: serde_json::Value,
}

/// Distinct values seen within a sliding window, each with its last time. Stale
/// values are pruned in sweeps (every 1/64 of the window), so a busy source costs
/// one hash update per event and a flood of one value stays one entry.
struct Window<T: Eq + std::hash::Hash + Copy> {
    last: FxHashMap<T, u64>,
    span: u64,
    pruned_at: u64,
}

impl<T: Eq + std::hash::Hash + Copy> Window<T> {
    fn new(span: std::time::Duration) -> Self {
        Window {
            last: FxHashMap::default(),
            span: span.as_nanos() as u64,
            pruned_at: 0,
        }
    }

    fn add(&mut self, v: T, now: u64) {
        self.last.insert(v, now);
        if now.saturating_sub(self.pruned_at) >= self.span / 64 {
            self.prune(now);
        }
    }

    fn prune(&mut self, now: u64) {
        let cutoff = now.saturating_sub(self.span);
        self.last.retain(|_, t| *t >= cutoff);
        self.pruned_at = now;
    }

    fn len(&self) -> usize {
        self.last.len()
    }

    /// Oldest time still in the window (a full pass: only when an incident opens).
    fn first_time(&self) -> Option<u64> {
        self.last.values().min().copied()
    }
}

struct ScanState {
    fast: Window<u16>,
    slow: Window<u16>,
    lo: u16,
    hi: u16,
    /// Handshakes that completed (accepted by a listener here).
    completed: u64,
    /// Refused connects made by a local process: a connect scan from this host.
    local_connects: u64,
    resets: u64,
}

/// Bytes a process sent and received over a sliding window, in 10 s buckets so
/// memory stays fixed however many connections it closes.
#[derive(Default)]
struct Outbound {
    buckets: VecDeque<(u64, u64, u64)>,
    sent: u64,
    recv: u64,
}

const BUCKET_NS: u64 = 10 * SEC;

impl Outbound {
    fn add(&mut self, now: u64, sent: u64, recv: u64, span: u64) {
        let b = now / BUCKET_NS;
        match self.buckets.back_mut() {
            Some(last) if last.0 == b => {
                last.1 = last.1.saturating_add(sent);
                last.2 = last.2.saturating_add(recv);
            }
            _ => self.buckets.push_back((b, sent, recv)),
        }
        self.sent = self.sent.saturating_add(sent);
        self.recv = self.recv.saturating_add(recv);
        self.expire(now, span);
    }

    fn expire(&mut self, now: u64, span: u64) {
        let oldest = now.saturating_sub(span) / BUCKET_NS;
        while let Some(&(b, s, r)) = self.buckets.front() {
            if b >= oldest {
                break;
            }
            self.buckets.pop_front();
            self.sent = self.sent.saturating_sub(s);
            self.recv = self.recv.saturating_sub(r);
        }
    }

    fn first_ns(&self) -> Option<u64> {
        self.buckets.front().map(|b| b.0 * BUCKET_NS)
    }
}

#[derive(Default)]
struct Burst {
    second: u64,
    count: u64,
    baseline: f64,
    seconds_seen: u64,
    hot_streak: u32,
    streak_start: u64,
    peak: u64,
}

pub struct Detector {
    rules: Rules,
    services: Services,
    started_ns: u64,
    open: FxHashMap<(RuleId, String), Alert>,
    /// Ended incidents, newest last (bounded), for the report view.
    ended: VecDeque<Alert>,
    scans: FxHashMap<IpAddr, ScanState>,
    fanout: FxHashMap<u32, (Window<IpAddr>, Comm)>,
    burst: Burst,
    outbound: FxHashMap<u32, Outbound>,
    synack_last: FxHashMap<(u16, u16), (u64, u64)>,
    /// When the kernel map was last read: a port new in the map counted from 0 then.
    synack_polled_ns: u64,
}

const MAX_ENDED: usize = 1000;
/// Bounds on per-key state, so a flood from spoofed sources cannot grow memory.
const MAX_SOURCES: usize = 65_536;

fn ip_text(ip: IpAddr) -> String {
    ip.to_string()
}

impl Detector {
    pub fn new(rules: Rules, services: Services, started_ns: u64) -> Detector {
        Detector {
            rules,
            services,
            started_ns,
            open: FxHashMap::default(),
            ended: VecDeque::new(),
            scans: FxHashMap::default(),
            fanout: FxHashMap::default(),
            burst: Burst::default(),
            outbound: FxHashMap::default(),
            synack_last: FxHashMap::default(),
            synack_polled_ns: started_ns,
        }
    }

    pub fn rules(&self) -> &Rules {
        &self.rules
    }

    /// Records a finding; returns the alert only when it opens a new incident.
    fn fire(&mut self, f: Finding, now: u64) -> Option<Alert> {
        let k = (f.rule, f.key.clone());
        if let Some(a) = self.open.get_mut(&k) {
            a.last_ns = now;
            a.updates += 1;
            a.message = f.message;
            a.evidence = f.evidence;
            return None;
        }
        let alert = Alert {
            rule: f.rule,
            severity: f.severity,
            key: f.key,
            message: f.message,
            source_ip: f.source_ip,
            first_ns: f.first_ns.min(now),
            last_ns: now,
            updates: 1,
            ended: false,
            evidence: f.evidence,
        };
        self.open.insert(k, alert.clone());
        Some(alert)
    }

    /// Ends incidents quiet for `rearm_after` (returned, with their final evidence,
    /// for pipelines that want totals) and forgets stale per-source state.
    pub fn tick(&mut self, now: u64) -> Vec<Alert> {
        let mut closed = Vec::new();
        let quiet = self.rules.rearm_after.as_nanos() as u64;
        let ended: Vec<_> = self
            .open
            .iter()
            .filter(|(_, a)| a.last_ns + quiet < now)
            .map(|(k, _)| k.clone())
            .collect();
        for k in ended {
            if let Some(mut a) = self.open.remove(&k) {
                a.ended = true;
                if self.ended.len() >= MAX_ENDED {
                    self.ended.pop_front();
                }
                self.ended.push_back(a.clone());
                closed.push(a);
            }
        }
        self.scans.retain(|_, s| {
            s.slow.prune(now);
            s.slow.len() > 0
        });
        self.fanout.retain(|_, (w, _)| {
            w.prune(now);
            w.len() > 0
        });
        let out = self.rules.large_outbound.window.as_nanos() as u64;
        self.outbound.retain(|_, o| {
            o.expire(now, out);
            !o.buckets.is_empty()
        });
        closed.extend(self.roll_burst(now / SEC, now));
        closed
    }

    /// Every incident since start: open ones and ended ones, oldest first.
    pub fn incidents(&self) -> Vec<Alert> {
        let mut v: Vec<Alert> = self.ended.iter().cloned().collect();
        v.extend(self.open.values().cloned());
        v.sort_by(|a, b| (a.first_ns, a.rule, &a.key).cmp(&(b.first_ns, b.rule, &b.key)));
        v
    }

    /// Streaming rules: one event in, new alerts out.
    pub fn observe(&mut self, ev: &ConnEvent, out: &mut Vec<Alert>) {
        let now = ev.ts_ns;
        match ev.action {
            Action::ResetSent if ev.raw_states.0 == 0 => {
                // A RST with no socket: a SYN (or stray segment) to a closed port.
                self.scan_touch(ev.remote.ip(), ev.local.port(), false, now, out);
            }
            Action::Opened => {
                self.count_new(now, out);
                match ev.direction {
                    Direction::Ingress => {
                        self.scan_touch(ev.remote.ip(), ev.local.port(), true, now, out)
                    }
                    Direction::Egress => self.fan_out(ev, now, out),
                    Direction::Unknown => {}
                }
            }
            Action::Failed => {
                self.count_new(now, out);
                // A local process connecting to closed ports: evidence of a connect scan
                // from this host, and of fan-out.
                if let Some(s) = self.scans.get_mut(&ev.local.ip()) {
                    s.local_connects += 1;
                }
                self.fan_out(ev, now, out);
            }
            Action::ListenStarted => self.new_listener(ev, now, out),
            Action::Closed => self.large_outbound(ev, now, out),
            _ => {}
        }
    }

    fn scan_touch(
        &mut self,
        src: IpAddr,
        port: u16,
        connect: bool,
        now: u64,
        out: &mut Vec<Alert>,
    ) {
        let allow = &self.rules.allow;
        if allow.ip(src) || allow.port(port) {
            return;
        }
        if !self.scans.contains_key(&src) && self.scans.len() >= MAX_SOURCES {
            return;
        }
        let cfg = self.rules.port_scan.clone();
        let s = self.scans.entry(src).or_insert_with(|| ScanState {
            fast: Window::new(cfg.window),
            slow: Window::new(cfg.slow_window),
            lo: port,
            hi: port,
            completed: 0,
            local_connects: 0,
            resets: 0,
        });
        s.fast.add(port, now);
        s.slow.add(port, now);
        s.lo = s.lo.min(port);
        s.hi = s.hi.max(port);
        if connect {
            s.completed += 1;
        } else {
            s.resets += 1;
        }
        let (fast, slow) = (s.fast.len(), s.slow.len());
        if fast < cfg.min_ports && slow < cfg.slow_min_ports {
            return;
        }
        let (lo, hi) = (s.lo, s.hi);
        let kind = if s.completed + s.local_connects > 0 {
            "connect"
        } else {
            "syn"
        };
        let key = ip_text(src);
        let first = if self.open.contains_key(&(RuleId::PortScan, key.clone())) {
            now
        } else {
            s.slow.first_time().unwrap_or(now)
        };
        // Judged by how fast the ports came, not by which threshold was crossed first.
        let speed = if fast >= cfg.min_ports || now - first <= cfg.window.as_nanos() as u64 {
            "fast"
        } else {
            "slow"
        };
        let f = Finding {
            rule: RuleId::PortScan,
            severity: Severity::High,
            key,
            message: format!("Port scan from {src}: {slow} ports ({lo}-{hi}), {kind} scan"),
            source_ip: Some(src),
            first_ns: first,
            evidence: json!({
                "ports": slow, "port_min": lo, "port_max": hi,
                "scan_type": kind, "speed": speed,
                "refused": s.resets, "completed": s.completed,
            }),
        };
        out.extend(self.fire(f, now));
    }

    fn fan_out(&mut self, ev: &ConnEvent, now: u64, out: &mut Vec<Alert>) {
        if ev.pid == 0 || self.rules.allow.process(&ev.comm) || self.rules.allow.ip(ev.remote.ip())
        {
            return;
        }
        if !self.fanout.contains_key(&ev.pid) && self.fanout.len() >= MAX_SOURCES {
            return;
        }
        let cfg = self.rules.fan_out.clone();
        let (w, comm) = self
            .fanout
            .entry(ev.pid)
            .or_insert_with(|| (Window::new(cfg.window), ev.comm));
        *comm = ev.comm;
        w.add(ev.remote.ip(), now);
        if w.len() < cfg.min_hosts {
            return;
        }
        let f = Finding {
            rule: RuleId::FanOut,
            severity: Severity::Medium,
            key: ev.pid.to_string(),
            message: format!(
                "Fan-out: {} connected to {} hosts within {}",
                view::owner(ev.pid, comm),
                w.len(),
                crate::monitor::go_duration(cfg.window)
            ),
            source_ip: Some(ev.local.ip()),
            first_ns: w.first_time().unwrap_or(now),
            evidence: json!({
                "pid": ev.pid, "process": String::from_utf8_lossy(comm.as_bytes()),
                "hosts": w.len(),
            }),
        };
        out.extend(self.fire(f, now));
    }

    fn new_listener(&mut self, ev: &ConnEvent, now: u64, out: &mut Vec<Alert>) {
        if !self.rules.new_listener
            || now < self.started_ns
            || self.rules.allow.port(ev.local.port())
            || self.rules.allow.process(&ev.comm)
        {
            return;
        }
        let f = Finding {
            rule: RuleId::NewListener,
            severity: Severity::Medium,
            key: format!("{}:{}", ev.local, ev.pid),
            message: format!(
                "New listener: {} {} by {}",
                ev.proto.upper(),
                view::addr(ev.local),
                view::owner(ev.pid, &ev.comm)
            ),
            source_ip: Some(ev.local.ip()),
            first_ns: now,
            evidence: json!({
                "address": view::addr(ev.local), "pid": ev.pid,
                "process": String::from_utf8_lossy(ev.comm.as_bytes()),
            }),
        };
        out.extend(self.fire(f, now));
    }

    fn large_outbound(&mut self, ev: &ConnEvent, now: u64, out: &mut Vec<Alert>) {
        let cfg = self.rules.large_outbound.clone();
        if self.rules.allow.ip(ev.remote.ip()) || self.rules.allow.process(&ev.comm) {
            return;
        }
        let lopsided = |sent: u64, recv: u64| {
            sent >= cfg.min_bytes && sent as f64 >= cfg.ratio * recv.max(1) as f64
        };
        if lopsided(ev.bytes_sent, ev.bytes_recv) {
            let f = Finding {
                rule: RuleId::LargeOutbound,
                severity: Severity::High,
                key: format!("{}->{}", ev.local, ev.remote),
                message: format!(
                    "Large outbound transfer: {} -> {} sent {} (received {}) by {}",
                    view::addr(ev.local),
                    view::addr(ev.remote),
                    crate::stats::human_bytes(ev.bytes_sent),
                    crate::stats::human_bytes(ev.bytes_recv),
                    view::owner(ev.pid, &ev.comm)
                ),
                source_ip: Some(ev.local.ip()),
                first_ns: ev.start_ns,
                evidence: json!({
                    "bytes_sent": ev.bytes_sent, "bytes_received": ev.bytes_recv,
                    "pid": ev.pid, "process": String::from_utf8_lossy(ev.comm.as_bytes()),
                }),
            };
            out.extend(self.fire(f, now));
            return;
        }
        if ev.pid == 0 {
            return;
        }
        if !self.outbound.contains_key(&ev.pid) && self.outbound.len() >= MAX_SOURCES {
            return;
        }
        let o = self.outbound.entry(ev.pid).or_default();
        o.add(
            now,
            ev.bytes_sent,
            ev.bytes_recv,
            cfg.window.as_nanos() as u64,
        );
        let (sent, recv) = (o.sent, o.recv);
        let first = o.first_ns().unwrap_or(now);
        if lopsided(sent, recv) {
            let f = Finding {
                rule: RuleId::LargeOutbound,
                severity: Severity::High,
                key: format!("pid {}", ev.pid),
                message: format!(
                    "Large outbound transfer: {} sent {} (received {}) within {}",
                    view::owner(ev.pid, &ev.comm),
                    crate::stats::human_bytes(sent),
                    crate::stats::human_bytes(recv),
                    crate::monitor::go_duration(cfg.window)
                ),
                source_ip: Some(ev.local.ip()),
                first_ns: first,
                evidence: json!({ "bytes_sent": sent, "bytes_received": recv, "pid": ev.pid }),
            };
            out.extend(self.fire(f, now));
        }
    }

    /// Counts new connections per second against an exponentially weighted baseline.
    fn count_new(&mut self, now: u64, out: &mut Vec<Alert>) {
        let sec = now / SEC;
        if sec != self.burst.second {
            if let Some(a) = self.roll_burst(sec, now) {
                out.push(a);
            }
        }
        self.burst.count += 1;
    }

    fn roll_burst(&mut self, sec: u64, now: u64) -> Option<Alert> {
        let b = &mut self.burst;
        if sec <= b.second {
            return None;
        }
        let cfg = &self.rules.connection_burst;
        let done = b.count;
        // Empty seconds in between count as zeros.
        let gap = (sec - b.second).saturating_sub(1).min(600);
        let threshold = (cfg.min_per_sec as f64).max(cfg.factor * b.baseline);
        let hot = b.seconds_seen >= 5 && done as f64 >= threshold;
        if hot {
            if b.hot_streak == 0 {
                b.streak_start = b.second * SEC;
                b.peak = 0;
            }
            b.hot_streak += 1;
            b.peak = b.peak.max(done);
        } else {
            b.hot_streak = 0;
            // The baseline learns only from normal seconds, so a flood cannot raise it.
            b.baseline = 0.9 * b.baseline + 0.1 * done as f64;
        }
        for _ in 0..gap {
            b.baseline *= 0.9;
        }
        b.seconds_seen += 1 + gap;
        b.second = sec;
        b.count = 0;
        let (streak, start, peak, baseline) = (b.hot_streak, b.streak_start, b.peak, b.baseline);
        if streak < cfg.sustain_secs {
            return None;
        }
        let f = Finding {
            rule: RuleId::ConnectionBurst,
            severity: Severity::Medium,
            key: "host".into(),
            message: format!(
                "Connection burst: {peak} new connections/s (baseline {baseline:.0}/s) for {streak}s"
            ),
            source_ip: None,
            first_ns: start,
            evidence: json!({ "peak_per_sec": peak, "baseline_per_sec": baseline, "seconds": streak }),
        };
        self.fire(f, now)
    }

    /// SYN-ACK retransmission totals per listening port, from the kernel map.
    pub fn observe_synack(&mut self, totals: &[(u16, u16, u64)], now: u64, out: &mut Vec<Alert>) {
        let min_rate = self.rules.syn_flood.min_half_open_per_sec;
        // The map starts empty with netta, so a port missing from it had 0 before.
        let polled = std::mem::replace(&mut self.synack_polled_ns, now);
        for &(family, port, total) in totals {
            let (prev, prev_ns) = self
                .synack_last
                .get(&(family, port))
                .copied()
                .unwrap_or((0, polled));
            self.synack_last.insert((family, port), (total, now));
            let secs = (now.saturating_sub(prev_ns)) as f64 / SEC as f64;
            let delta = total.saturating_sub(prev);
            if secs <= 0.0 || self.rules.allow.port(port) {
                continue;
            }
            let rate = delta as f64 / secs;
            if rate < min_rate as f64 {
                continue;
            }
            let f = Finding {
                rule: RuleId::SynFlood,
                severity: Severity::High,
                key: format!("port {port}"),
                message: format!(
                    "SYN flood against port {port}: {rate:.0} half-open connections/s left unanswered"
                ),
                source_ip: None,
                first_ns: prev_ns,
                evidence: json!({ "port": port, "synack_retransmits_per_sec": rate, "total": total }),
            };
            out.extend(self.fire(f, now));
        }
    }

    /// Rules that look at the whole table: the original's two, half-open and
    /// CLOSE_WAIT / SYN_SENT pile-ups.
    pub fn scan_table(&mut self, snap: &Snapshot, now: u64, out: &mut Vec<Alert>) {
        for f in table_findings(snap, &self.services, &self.rules, now) {
            out.extend(self.fire(f, now));
        }
    }
}

fn table_findings(snap: &Snapshot, services: &Services, rules: &Rules, now: u64) -> Vec<Finding> {
    let mut found = Vec::new();
    let allow = &rules.allow;
    // A port that listens here is a service of this host, wherever it sits.
    let listening: HashSet<u16> = snap
        .conns
        .iter()
        .filter(|c| c.state == State::Listen)
        .map(|c| c.local.port())
        .collect();
    let mut rows: Vec<_> = snap.conns.iter().collect();
    rows.sort_by_key(|c| (c.local, c.remote));
    for c in &rows {
        let port = c.remote.port();
        let unusual = c.state == State::Established
            && c.has_peer()
            && c.direction != Direction::Ingress
            && !listening.contains(&c.local.port())
            && port > rules.high_port_above
            && !listening.contains(&port)
            && services.name(port, c.proto).is_none()
            && !allow.ip(c.remote.ip())
            && !allow.port(port)
            && !allow.process(&c.comm);
        if unusual {
            found.push(Finding {
                rule: RuleId::UnusualHighPort,
                severity: Severity::Low,
                key: format!("{}->{}", c.local, c.remote),
                message: format!(
                    "Unusual high port: {} -> {} (unknown)",
                    view::addr(c.local),
                    view::addr(c.remote)
                ),
                source_ip: Some(c.local.ip()),
                first_ns: if c.start_ns == 0 { now } else { c.start_ns },
                evidence: json!({
                    "local": view::addr(c.local), "remote": view::addr(c.remote),
                    "pid": c.pid, "process": String::from_utf8_lossy(c.comm.as_bytes()),
                }),
            });
        }
    }
    let mut per_ip: BTreeMap<IpAddr, usize> = BTreeMap::new();
    let mut syn_recv: BTreeMap<u16, usize> = BTreeMap::new();
    let mut close_wait: BTreeMap<(u32, Comm), usize> = BTreeMap::new();
    let mut syn_sent: BTreeMap<IpAddr, BTreeSet<SocketAddr>> = BTreeMap::new();
    for c in &rows {
        if c.has_peer()
            && c.state.is_active()
            && c.state != State::TimeWait
            && c.proto == Proto::Tcp
        {
            *per_ip.entry(c.remote.ip()).or_default() += 1;
        }
        match c.state {
            State::SynRecv | State::NewSynRecv => *syn_recv.entry(c.local.port()).or_default() += 1,
            State::CloseWait => *close_wait.entry((c.pid, c.comm)).or_default() += 1,
            State::SynSent => {
                syn_sent.entry(c.remote.ip()).or_default().insert(c.local);
            }
            _ => {}
        }
    }
    for (ip, n) in per_ip {
        if n > rules.max_conns_per_ip && !allow.ip(ip) {
            found.push(Finding {
                rule: RuleId::HighConnectionCount,
                severity: Severity::Medium,
                key: ip_text(ip),
                message: format!("High connection count to {ip}: {n} connections"),
                source_ip: Some(ip),
                first_ns: now,
                evidence: json!({ "remote_ip": ip_text(ip), "connections": n }),
            });
        }
    }
    for (port, n) in syn_recv {
        if n >= rules.syn_flood.min_syn_recv && !allow.port(port) {
            found.push(Finding {
                rule: RuleId::SynFlood,
                severity: Severity::High,
                key: format!("port {port}"),
                message: format!("SYN flood against port {port}: {n} half-open connections"),
                source_ip: None,
                first_ns: now,
                evidence: json!({ "port": port, "half_open": n }),
            });
        }
    }
    for ((pid, comm), n) in close_wait {
        if n >= rules.abnormal_state.close_wait && !allow.process(&comm) {
            found.push(Finding {
                rule: RuleId::AbnormalState,
                severity: Severity::Low,
                key: format!("close-wait {pid}"),
                message: format!(
                    "Abnormal states: {n} connections in CLOSE_WAIT held by {}",
                    view::owner(pid, &comm)
                ),
                source_ip: None,
                first_ns: now,
                evidence: json!({ "state": "CLOSE_WAIT", "count": n, "pid": pid }),
            });
        }
    }
    for (ip, locals) in syn_sent {
        if locals.len() >= rules.abnormal_state.syn_sent && !allow.ip(ip) {
            found.push(Finding {
                rule: RuleId::AbnormalState,
                severity: Severity::Low,
                key: format!("syn-sent {ip}"),
                message: format!(
                    "Abnormal states: {} connections stuck in SYN_SENT to {ip}",
                    locals.len()
                ),
                source_ip: Some(ip),
                first_ns: now,
                evidence: json!({ "state": "SYN_SENT", "count": locals.len(), "remote_ip": ip_text(ip) }),
            });
        }
    }
    found
}

/// The original tool's rules on one snapshot, without incident state (one-shot use).
pub fn scan(snap: &Snapshot, services: &Services, rules: &Rules, now_ns: u64) -> Vec<Alert> {
    let mut d = Detector::new(rules.clone(), services.clone(), 0);
    let mut out = Vec::new();
    d.scan_table(snap, now_ns, &mut out);
    out
}

/// The original's "SUSPICIOUS ACTIVITY DETECTION" block.
pub fn render(alerts: &[Alert]) -> String {
    let mut out = String::new();
    view::header(&mut out, "SUSPICIOUS ACTIVITY DETECTION");
    if alerts.is_empty() {
        let _ = writeln!(out, "No suspicious activity detected");
    } else {
        let _ = writeln!(out, "Potential Issues Found:");
        for a in alerts {
            let _ = writeln!(out, "  ⚠  {}", a.message);
        }
    }
    let _ = writeln!(out, "{}", view::heavy_rule());
    out
}

/// The one alert schema (ECS), as `events`, `agent`, `detect --json` and
/// `monitor --json` all write it.
pub fn to_json(a: &Alert, clock: &crate::clock::Clock) -> serde_json::Value {
    crate::export::json::alert_value(a, clock)
}

#[cfg(test)]
mod tests;
