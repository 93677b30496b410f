//! Suspicious-activity detection, live on the event stream and on table
//! snapshots. Each rule sits in its own file with its own state and returns
//! findings; [`Detector`] routes events to the rules and turns findings into
//! incidents ([`incident`]): one alert per incident, evidence that keeps coming
//! updates the open incident, which re-arms after a quiet period. The text and
//! JSON of alerts are rendered in `render::alert`.
pub(crate) mod alert;
mod incident;
pub mod rules;
mod window;

mod abnormal_state;
pub mod beaconing;
mod connection_burst;
mod fan_out;
mod high_connection_count;
mod large_outbound;
pub mod new_destination;
mod new_listener;
mod port_scan;
mod syn_flood;
mod unusual_high_port;

pub use alert::{Alert, RuleId, Severity};
pub use rules::Rules;

use crate::core::event::{Action, ConnEvent, Direction};
use crate::core::pipeline::Observe;
use crate::core::services::Services;
use crate::core::table::Snapshot;
use alert::Finding;
use incident::Incidents;

const SEC: u64 = 1_000_000_000;
/// Bounds on per-key state, so a flood from spoofed sources cannot grow memory.
const MAX_SOURCES: usize = 65_536;

pub struct Detector {
    rules: Rules,
    services: Services,
    started_ns: u64,
    incidents: Incidents,
    port_scan: port_scan::PortScan,
    fan_out: fan_out::FanOut,
    burst: connection_burst::ConnectionBurst,
    outbound: large_outbound::LargeOutbound,
    syn_flood: syn_flood::SynFlood,
    new_dest: new_destination::NewDestinations,
    beaconing: beaconing::Beaconing,
}

impl Detector {
    pub fn new(rules: Rules, services: Services, started_ns: u64) -> Detector {
        Detector {
            services,
            started_ns,
            incidents: Incidents::default(),
            port_scan: Default::default(),
            fan_out: Default::default(),
            burst: Default::default(),
            outbound: Default::default(),
            syn_flood: syn_flood::SynFlood::new(started_ns),
            new_dest: new_destination::NewDestinations::new(
                started_ns.saturating_add(rules.new_destination.learning.as_nanos() as u64),
            ),
            beaconing: Default::default(),
            rules,
        }
    }

    /// What the store's baseline has learned, and when its learning ends (kernel-clock ns, CLOCK_BOOTTIME).
    pub fn load_baseline(
        &mut self,
        known: impl IntoIterator<Item = new_destination::Dest>,
        learning_until: u64,
    ) {
        self.new_dest.load(known, learning_until);
    }

    /// Forgets every learned destination and learns again from `now`.
    pub fn reset_baseline(&mut self, now: u64) {
        let until = now.saturating_add(self.rules.new_destination.learning.as_nanos() as u64);
        self.new_dest.load([], until);
    }

    /// Destinations known, and when learning ends (kernel-clock ns, CLOCK_BOOTTIME).
    pub fn baseline_status(&self) -> (usize, u64) {
        (self.new_dest.len(), self.new_dest.learning_until())
    }

    pub fn rules(&self) -> &Rules {
        &self.rules
    }

    fn fire(&mut self, f: Option<Finding>, now: u64, out: &mut Vec<Alert>) {
        if let Some(f) = f {
            out.extend(self.incidents.fire(f, now));
        }
    }

    /// Ends incidents quiet for `rearm_after` (returned, with their final evidence,
    /// for pipelines that want totals) and forgets stale per-source state.
    pub fn tick(&mut self, now: u64) -> Vec<Alert> {
        let quiet = self.rules.rearm_after.as_nanos() as u64;
        let mut closed = self.incidents.end_quiet(now, quiet);
        self.port_scan.expire(now);
        self.fan_out.expire(now);
        self.outbound.expire(&self.rules, now);
        self.beaconing.expire(&self.rules, now);
        let burst = self.burst.roll(&self.rules, now / SEC);
        self.fire(burst, now, &mut closed);
        closed
    }

    /// Every incident since start: open ones and ended ones, oldest first.
    pub fn incidents(&self) -> Vec<Alert> {
        self.incidents.all()
    }

    /// Streaming rules: one event in, new alerts out.
    pub fn observe(&mut self, ev: &ConnEvent, out: &mut Vec<Alert>) {
        let now = ev.ts_ns;
        let rules = &self.rules;
        match ev.action {
            Action::ResetSent if ev.raw_states.0 == 0 => {
                // A RST with no socket: a SYN (or stray segment) to a closed port.
                self.scan_touch(ev, false, out);
            }
            Action::Opened => {
                let f = self.burst.count_new(rules, now);
                self.fire(f, now, out);
                match ev.direction {
                    Direction::Ingress => self.scan_touch(ev, true, out),
                    Direction::Egress => {
                        let f = self.fan_out.observe(&self.rules, ev, now);
                        self.fire(f, now, out);
                        let f = self.new_dest.observe(&self.rules, ev, now);
                        self.fire(f, now, out);
                        let f = self.beaconing.observe(&self.rules, ev, now);
                        self.fire(f, now, out);
                    }
                    Direction::Unknown => {}
                }
            }
            Action::Failed => {
                let f = self.burst.count_new(rules, now);
                self.fire(f, now, out);
                // A local process connecting to closed ports: evidence of a connect scan
                // from this host, and of fan-out.
                self.port_scan.local_connect(ev.local.ip());
                let f = self.fan_out.observe(&self.rules, ev, now);
                self.fire(f, now, out);
            }
            Action::ListenStarted => {
                let f = new_listener::observe(rules, self.started_ns, ev, now);
                self.fire(f, now, out);
            }
            Action::Closed => {
                let f = self.outbound.observe(rules, ev, now);
                self.fire(f, now, out);
            }
            Action::UdpFlow => {
                let f = self.new_dest.observe(rules, ev, now);
                self.fire(f, now, out);
            }
            _ => {}
        }
    }

    /// The remote touched a local port: a completed handshake (`connect`) or a reset.
    fn scan_touch(&mut self, ev: &ConnEvent, connect: bool, out: &mut Vec<Alert>) {
        let now = ev.ts_ns;
        let f = self.port_scan.touch(
            &self.rules,
            &self.incidents,
            ev.remote.ip(),
            ev.local.port(),
            connect,
            now,
        );
        self.fire(f, now, out);
    }

    /// SYN-ACK retransmission totals per listening port, from the kernel map.
    pub fn observe_synack(&mut self, totals: &[(u16, u16, u64)], now: u64, out: &mut Vec<Alert>) {
        let mut found = Vec::new();
        self.syn_flood
            .observe_synack(&self.rules, totals, now, &mut found);
        for f in found {
            self.fire(Some(f), now, out);
        }
    }

    /// Rules that look at the whole table: the original's two, half-open and
    /// CLOSE_WAIT / SYN_SENT pile-ups.
    pub fn scan_table(&mut self, snap: &Snapshot, now: u64, out: &mut Vec<Alert>) {
        let mut rows: Vec<_> = snap.conns.iter().collect();
        rows.sort_by_key(|c| (c.local, c.remote));
        let mut found = Vec::new();
        let rules = &self.rules;
        unusual_high_port::scan_table(rules, &self.services, &rows, now, &mut found);
        high_connection_count::scan_table(rules, &rows, now, &mut found);
        syn_flood::scan_table(rules, &rows, now, &mut found);
        abnormal_state::scan_table(rules, &rows, now, &mut found);
        large_outbound::LargeOutbound::scan_live(rules, &rows, now, &mut found);
        for f in found {
            self.fire(Some(f), now, out);
        }
    }
}

impl Observe for Detector {
    type Alert = Alert;
    fn observe(&mut self, ev: &ConnEvent, out: &mut Vec<Alert>) {
        Detector::observe(self, ev, out)
    }
}

#[cfg(test)]
mod tests;
