//! What DNS answered recently: (network namespace, IP) → the name asked for, the
//! CNAME chain and when the answer expires. Bounded: when full, the oldest
//! answer goes first and is counted as evicted. Pure: times are passed in
//! (CLOCK_MONOTONIC ns, as everywhere in `core`).
use std::collections::VecDeque;
use std::net::IpAddr;
use std::sync::Arc;

use rustc_hash::FxHashMap;

use crate::core::dns::Resolved;
use crate::core::sanitize::Domain;

const SEC: u64 = 1_000_000_000;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    pub max_entries: usize,
    /// An answer is kept at least this long, whatever its TTL: resolvers answer
    /// local names with TTL 0, and the connection comes just after.
    pub min_ttl_ns: u64,
    /// And at most this long.
    pub max_ttl_ns: u64,
}

impl Limits {
    pub const DEFAULT: Limits = Limits {
        max_entries: 65_536,
        min_ttl_ns: 60 * SEC,
        max_ttl_ns: 24 * 3600 * SEC,
    };
}

impl Default for Limits {
    fn default() -> Self {
        Limits::DEFAULT
    }
}

/// A name an address was given as.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Name {
    /// What was asked (the question): `destination.domain`.
    pub domain: Domain,
    /// The question, the CNAME targets, the address record's owner.
    pub chain: Arc<[Domain]>,
    pub expires_ns: u64,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Counters {
    /// Answers stored (new or refreshed).
    pub learned: u64,
    /// Pushed out because the cache was full.
    pub evicted: u64,
    /// Dropped because their time was up.
    pub expired: u64,
}

type Key = (u64, IpAddr);

struct Entry {
    name: Name,
    /// Insertion order, to find the oldest; a stale queue slot has another.
    seq: u64,
}

pub struct Cache {
    map: FxHashMap<Key, Entry>,
    /// The namespace of the newest answer per address, for connections whose
    /// namespace is not known.
    latest: FxHashMap<IpAddr, u64>,
    order: VecDeque<(Key, u64)>,
    seq: u64,
    limits: Limits,
    counters: Counters,
}

impl Cache {
    pub fn new(limits: Limits) -> Cache {
        Cache {
            map: FxHashMap::default(),
            latest: FxHashMap::default(),
            order: VecDeque::new(),
            seq: 0,
            limits,
            counters: Counters::default(),
        }
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    pub fn counters(&self) -> Counters {
        self.counters
    }

    /// Stores what one response resolved, in namespace `netns`, at `now`.
    pub fn learn(&mut self, netns: u64, resolved: &[Resolved], now: u64) {
        for r in resolved {
            let ttl =
                (u64::from(r.ttl) * SEC).clamp(self.limits.min_ttl_ns, self.limits.max_ttl_ns);
            let name = Name {
                domain: r.chain[0].clone(),
                chain: r.chain.clone().into(),
                expires_ns: now.saturating_add(ttl),
            };
            self.insert((netns, r.ip), name);
        }
    }

    fn insert(&mut self, key: Key, name: Name) {
        if self.limits.max_entries == 0 {
            self.counters.evicted += 1;
            return;
        }
        self.seq += 1;
        let seq = self.seq;
        self.counters.learned += 1;
        if self.map.insert(key, Entry { name, seq }).is_none() {
            while self.map.len() > self.limits.max_entries {
                self.evict_oldest();
            }
        }
        self.latest.insert(key.1, key.0);
        self.order.push_back((key, seq));
        // Refreshed answers leave stale slots behind: keep the queue near the map's size.
        if self.order.len() > 2 * self.map.len() + 64 {
            let map = &self.map;
            self.order
                .retain(|(k, s)| map.get(k).is_some_and(|e| e.seq == *s));
        }
    }

    fn evict_oldest(&mut self) {
        while let Some((key, seq)) = self.order.pop_front() {
            if self.map.get(&key).is_some_and(|e| e.seq == seq) {
                self.remove(&key);
                self.counters.evicted += 1;
                return;
            }
        }
    }

    fn remove(&mut self, key: &Key) {
        self.map.remove(key);
        if self.latest.get(&key.1) == Some(&key.0) {
            self.latest.remove(&key.1);
        }
    }

    /// The name `ip` was last given as in `netns` (or, with `None`, in whichever
    /// namespace answered for it last), if that answer has not expired.
    pub fn lookup(&self, netns: Option<u64>, ip: IpAddr, now: u64) -> Option<&Name> {
        if self.map.is_empty() {
            return None;
        }
        let ns = match netns {
            Some(ns) => ns,
            None => *self.latest.get(&ip)?,
        };
        self.map
            .get(&(ns, ip))
            .map(|e| &e.name)
            .filter(|n| n.expires_ns > now)
    }

    /// Drops the answers whose time is up.
    pub fn expire(&mut self, now: u64) {
        let before = self.map.len();
        self.map.retain(|_, e| e.name.expires_ns > now);
        let gone = before - self.map.len();
        if gone > 0 {
            self.counters.expired += gone as u64;
            let map = &self.map;
            self.latest.retain(|ip, ns| map.contains_key(&(*ns, *ip)));
            self.order
                .retain(|(k, s)| map.get(k).is_some_and(|e| e.seq == *s));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resolved(ip: &str, names: &[&str], ttl: u32) -> Resolved {
        Resolved {
            ip: ip.parse().unwrap(),
            chain: names.iter().map(|n| Domain::parse(n).unwrap()).collect(),
            ttl,
        }
    }

    #[test]
    fn an_answer_names_its_address_in_its_namespace_until_it_expires() {
        let mut c = Cache::new(Limits::DEFAULT);
        let ip: IpAddr = "127.0.0.77".parse().unwrap();
        c.learn(
            1,
            &[resolved(
                "127.0.0.77",
                &["bar-test.example", "cdn.example"],
                600,
            )],
            0,
        );
        let n = c.lookup(Some(1), ip, 10 * SEC).unwrap();
        assert_eq!(n.domain.as_str(), "bar-test.example");
        assert_eq!(n.chain.len(), 2);
        assert!(
            c.lookup(Some(2), ip, 10 * SEC).is_none(),
            "another namespace"
        );
        assert!(c.lookup(None, ip, 10 * SEC).is_some(), "any namespace");
        assert!(c.lookup(Some(1), ip, 601 * SEC).is_none());
        c.expire(601 * SEC);
        assert!(c.is_empty());
        assert_eq!(c.counters().expired, 1);
    }

    #[test]
    fn ttls_are_kept_within_the_limits() {
        let mut c = Cache::new(Limits::DEFAULT);
        let ip: IpAddr = "10.0.0.1".parse().unwrap();
        c.learn(1, &[resolved("10.0.0.1", &["zero.example"], 0)], 0);
        assert!(
            c.lookup(None, ip, 59 * SEC).is_some(),
            "TTL 0 still names the next connection"
        );
        c.learn(
            1,
            &[resolved("10.0.0.1", &["long.example"], u32::MAX >> 1)],
            0,
        );
        let n = c.lookup(None, ip, 0).unwrap();
        assert_eq!(n.domain.as_str(), "long.example", "a newer answer replaces");
        assert_eq!(n.expires_ns, Limits::DEFAULT.max_ttl_ns);
    }

    #[test]
    fn a_full_cache_evicts_the_oldest_and_counts_it() {
        let limits = Limits {
            max_entries: 3,
            ..Limits::DEFAULT
        };
        let mut c = Cache::new(limits);
        for i in 0..10u8 {
            let ip = format!("10.0.0.{i}");
            c.learn(7, &[resolved(&ip, &["x.example"], 300)], 0);
            // Refreshing the first keeps it the newest... until it is not refreshed.
            if i < 5 {
                c.learn(7, &[resolved("10.0.0.0", &["x.example"], 300)], 0);
            }
        }
        assert_eq!(c.len(), 3);
        assert_eq!(c.counters().evicted, 7);
        for i in 7..10 {
            assert!(c
                .lookup(Some(7), format!("10.0.0.{i}").parse().unwrap(), 0)
                .is_some());
        }
        assert!(c.order.len() <= 2 * c.len() + 64);
        // A hostile flood of distinct answers stays within the bound.
        for i in 0..10_000u32 {
            let ip = IpAddr::from(std::net::Ipv4Addr::from(i));
            c.learn(
                7,
                &[Resolved {
                    ip,
                    chain: vec![Domain::parse("f.example").unwrap()],
                    ttl: 1,
                }],
                0,
            );
        }
        assert_eq!(c.len(), 3);
        assert!(c.order.len() <= 2 * c.len() + 64 + 1);
        assert!(c.latest.len() <= 3);
    }
}
