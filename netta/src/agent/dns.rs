//! DNS attribution: captured responses (from the host's capture thread) are
//! parsed, fill the cache that names connections, and go out as `dns-answer`
//! records. Nothing captured is trusted: a packet that does not parse is
//! counted and dropped, and names are `Domain`s (printable) from the start.
use std::sync::Arc;

use netta_ebpf::{dns_flags, DnsEvent};

use crate::core::dns::{self, Seen};
use crate::core::dns_cache::{self, Cache};
use crate::host::dns::DnsHandler;

use super::{Record, Shared};

/// Counts of what the capture saw, for metrics.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct DnsCounters {
    /// Packets the capture handed over.
    pub packets: u64,
    /// Responses that named at least one address.
    pub answers: u64,
    /// Well-formed packets with nothing to learn (queries, errors, TCP segments
    /// without a whole message, fragments).
    pub ignored: u64,
    /// Packets or messages that did not parse.
    pub malformed: u64,
    /// Network namespaces captured in.
    pub namespaces: u64,
}

/// The cache and the counts, under one lock.
pub struct DnsState {
    pub cache: Cache,
    pub counters: DnsCounters,
}

impl DnsState {
    pub fn new(limits: dns_cache::Limits) -> DnsState {
        DnsState {
            cache: Cache::new(limits),
            counters: DnsCounters::default(),
        }
    }

    /// One captured packet: what it resolved, learned at `now`; `None` when it
    /// taught nothing.
    pub fn packet(&mut self, netns: u64, packet: &[u8], now: u64) -> Option<Seen> {
        self.counters.packets += 1;
        let parsed = dns::captured(packet).and_then(|c| match c {
            Some(c) => Ok(dns::parse(c.message)?.map(|r| (c, r))),
            None => Ok(None),
        });
        let (c, response) = match parsed {
            Ok(Some(found)) => found,
            Ok(None) => {
                self.counters.ignored += 1;
                return None;
            }
            Err(e) => {
                self.counters.malformed += 1;
                if self.counters.malformed.is_power_of_two() {
                    log::info!(
                        "dropped a malformed DNS packet ({e}); {} so far",
                        self.counters.malformed
                    );
                }
                return None;
            }
        };
        let resolved = response.resolved();
        if resolved.is_empty() {
            self.counters.ignored += 1;
            return None;
        }
        self.counters.answers += 1;
        self.cache.learn(netns, &resolved, now);
        Some(Seen {
            ts_ns: now,
            netns,
            transport: c.transport,
            server: c.server,
            client: c.client,
            resolved: resolved.iter().map(|r| r.ip).collect(),
            response,
        })
    }
}

/// One captured packet, from either capture: into the cache, and out as a
/// `dns-answer` record when it resolved something.
fn learn(shared: &Shared, netns: u64, packet: &[u8]) {
    let now = shared.now_ns();
    let seen = shared.dns().packet(netns, packet, now);
    if let Some(seen) = seen {
        let rec = Record::Dns(Arc::new(seen));
        shared.send(1, |_| rec.clone());
    }
}

/// One DNS record of the kernel program (any of its DNS hooks): the packet it
/// copied goes where an `AF_PACKET` capture's would. A packet longer than the
/// record holds is counted and skipped, as a message cut across TCP segments is.
pub(super) fn kernel_record(shared: &Shared, bytes: &[u8]) {
    if !shared.dns_on() {
        return;
    }
    match DnsEvent::parse(bytes) {
        Some((ev, _)) if ev.flags & dns_flags::TRUNCATED != 0 => {
            let mut st = shared.dns();
            st.counters.packets += 1;
            st.counters.ignored += 1;
        }
        Some((ev, packet)) => learn(shared, u64::from(ev.netns), packet),
        None => {
            let mut st = shared.dns();
            st.counters.packets += 1;
            st.counters.malformed += 1;
        }
    }
}

/// What the host's capture thread calls.
pub(super) struct Ingest {
    pub shared: Arc<Shared>,
}

impl DnsHandler for Ingest {
    fn packet(&mut self, netns: u64, packet: &[u8]) {
        learn(&self.shared, netns, packet);
    }

    fn namespaces(&mut self, watched: usize) {
        self.shared.dns().counters.namespaces = watched as u64;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::dns::build::{name, response, udp4};

    #[test]
    fn packets_are_counted_as_answers_ignored_or_malformed() {
        let mut st = DnsState::new(dns_cache::Limits::DEFAULT);
        let m = response(
            "bar-test.example",
            &[(name("bar-test.example"), 1, 0, vec![127, 0, 0, 77])],
        );
        let seen = st
            .packet(9, &udp4([127, 0, 0, 1], [127, 0, 0, 1], 5000, &m), 100)
            .unwrap();
        assert_eq!(seen.response.question.as_str(), "bar-test.example");
        assert_eq!(
            seen.resolved,
            vec!["127.0.0.77".parse::<std::net::IpAddr>().unwrap()]
        );
        let name = st.cache.lookup(Some(9), seen.resolved[0], 200).unwrap();
        assert_eq!(name.domain.as_str(), "bar-test.example");
        let mut looped = response("x.example", &[]);
        looped[7] = 1;
        let at = looped.len() as u8;
        looped.extend_from_slice(&[0xc0, at]);
        assert!(st
            .packet(9, &udp4([1; 4], [2; 4], 1, &looped), 100)
            .is_none());
        assert!(st.packet(9, &[0x45, 0, 0], 100).is_none());
        let query = {
            let mut q = m.clone();
            q[2] = 0x01;
            q
        };
        assert!(st
            .packet(9, &udp4([1; 4], [2; 4], 1, &query), 100)
            .is_none());
        assert_eq!(
            st.counters,
            DnsCounters {
                packets: 4,
                answers: 1,
                ignored: 1,
                malformed: 2,
                namespaces: 0
            }
        );
    }

    /// A kernel DNS record as the kernel program writes it.
    fn kernel_record(netns: u32, packet: &[u8], flags: u8) -> Vec<u8> {
        let mut ev = DnsEvent::zeroed();
        ev.kind = netta_ebpf::Kind::DnsAnswer as u8;
        ev.flags = flags;
        ev.netns = netns;
        ev.len = packet.len() as u16;
        ev.wire_len = packet.len() as u32;
        ev.packet[..packet.len()].copy_from_slice(packet);
        let bytes = unsafe {
            std::slice::from_raw_parts(
                &ev as *const DnsEvent as *const u8,
                std::mem::size_of::<DnsEvent>(),
            )
        };
        bytes[..netta_ebpf::DNS_HEADER_SIZE + packet.len()].to_vec()
    }

    #[test]
    fn kernel_records_carry_the_packet_and_its_namespace() {
        let m = response(
            "k.example",
            &[(name("k.example"), 1, 30, vec![127, 0, 0, 9])],
        );
        let p = udp4([127, 0, 0, 53], [127, 0, 0, 1], 4000, &m);
        let rec = kernel_record(4026531840, &p, 0);
        let (ev, packet) = DnsEvent::parse(&rec).unwrap();
        assert_eq!(ev.netns, 4026531840);
        assert_eq!(packet, &p[..]);
        let mut st = DnsState::new(dns_cache::Limits::DEFAULT);
        let seen = st.packet(u64::from(ev.netns), packet, 1).unwrap();
        assert_eq!(seen.netns, 4026531840);
        assert_eq!(seen.response.question.as_str(), "k.example");
        // A record claiming more packet than it holds, or cut short, is refused.
        assert!(DnsEvent::parse(&rec[..rec.len() - 1]).is_none());
        assert!(DnsEvent::parse(&rec[..10]).is_none());
    }
}
