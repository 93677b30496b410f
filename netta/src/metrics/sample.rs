//! What a scrape reads from the agent, and how it is encoded.
use super::*;

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
    /// DNS capture and cache figures, when DNS attribution is on.
    pub dns: Option<Dns>,
}

/// What the DNS capture counted and what its cache holds.
#[derive(Clone, Copy, Debug, Default)]
pub struct Dns {
    pub counters: crate::agent::dns::DnsCounters,
    pub entries: u64,
    pub cache: crate::core::dns_cache::Counters,
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
            dns: None,
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
        if shared.dns_on() {
            let d = shared.dns();
            s.dns = Some(Dns {
                counters: d.counters,
                entries: d.cache.len() as u64,
                cache: d.cache.counters(),
            });
        }
        s.process = Process::read();
        s
    }

    pub(super) fn encode(&self, enc: &mut DescriptorEncoder) -> fmt::Result {
        let c = &self.counters;
        let mode = match self.mode {
            Mode::Ebpf(_) => "ebpf",
            Mode::Polling(_) => "polling",
        };
        family(
            enc,
            "netta_info",
            "Agent build and mode (ebpf: kernel events, polling: /proc); always 1.",
            MetricType::Gauge,
            [(
                [("mode", mode), ("version", env!("CARGO_PKG_VERSION"))],
                ConstGauge::new(1i64),
            )],
        )?;
        family(
            enc,
            "netta_live_connections",
            "Rows in the live connection table by state (listeners, sockets and UDP flows included).",
            MetricType::Gauge,
            self.live.iter().map(|(&(transport, state), &n)| {
                (
                    [("state", state), ("transport", transport)],
                    ConstGauge::new(n),
                )
            }),
        )?;
        family(
            enc,
            "netta_open_incidents",
            "Detection incidents currently open, by rule.",
            MetricType::Gauge,
            self.open_incidents
                .iter()
                .map(|(&rule, &n)| ([("rule", rule)], ConstGauge::new(n))),
        )?;
        for (name, help, v) in [
            (
                "netta_events_processed",
                "Connection events applied to the table since agent start.",
                c.events,
            ),
            (
                "netta_connections_observed",
                "Rows ever inserted into the table (unique connections observed) since agent start.",
                c.observed,
            ),
            (
                "netta_table_evicted",
                "Rows refused because the live table was at its cap.",
                c.table_evicted,
            ),
            (
                "netta_history_evicted",
                "Closed connections pushed out of the bounded history.",
                c.history_evicted,
            ),
            (
                "netta_lost_events",
                "Records lost agent-wide: kernel buffer overruns plus records dropped by slow taps.",
                c.lost,
            ),
            (
                "netta_decode_errors",
                "Kernel records the decoder refused.",
                c.decode_errors,
            ),
        ] {
            single(enc, name, help, None, &ConstCounter::new(v))?;
        }
        family(
            enc,
            "netta_reconcile_healed",
            "Table rows corrected by /proc reconciliation (added: missed open, removed: missed close).",
            MetricType::Counter,
            [
                ([("change", "added")], ConstCounter::new(c.healed_added)),
                ([("change", "removed")], ConstCounter::new(c.healed_removed)),
            ],
        )?;
        if let Some(d) = self.dns {
            self.encode_dns(enc, &d)?;
        }
        if let Some(p) = self.process {
            // The standard process series, as Prometheus client libraries name them.
            let rows: [(&str, &str, Option<&Unit>, &dyn EncodeMetric); 5] = [
                (
                    "process_cpu",
                    "Total user and system CPU time spent in seconds.",
                    Some(&Unit::Seconds),
                    &ConstCounter::new(p.cpu_seconds),
                ),
                (
                    "process_resident_memory",
                    "Resident memory size in bytes.",
                    Some(&Unit::Bytes),
                    &ConstGauge::new(p.resident_bytes),
                ),
                (
                    "process_start_time",
                    "Start time of the process since unix epoch in seconds.",
                    Some(&Unit::Seconds),
                    &ConstGauge::new(p.start_time_seconds),
                ),
                (
                    "process_open_fds",
                    "Number of open file descriptors.",
                    None,
                    &ConstGauge::new(p.open_fds as i64),
                ),
                (
                    "process_max_fds",
                    "Maximum number of open file descriptors.",
                    None,
                    &ConstGauge::new(p.max_fds as i64),
                ),
            ];
            for (name, help, unit, m) in rows {
                single(enc, name, help, unit, m)?;
            }
        }
        Ok(())
    }
}

impl Sample {
    fn encode_dns(&self, enc: &mut DescriptorEncoder, d: &Dns) -> fmt::Result {
        let c = &d.counters;
        family(
            enc,
            "netta_dns_packets",
            "Packets the DNS capture read, by result (answer: named addresses; ignored: nothing to learn; malformed: did not parse).",
            MetricType::Counter,
            [
                ([("result", "answer")], ConstCounter::new(c.answers)),
                ([("result", "ignored")], ConstCounter::new(c.ignored)),
                ([("result", "malformed")], ConstCounter::new(c.malformed)),
            ],
        )?;
        single(
            enc,
            "netta_dns_cache_entries",
            "(network namespace, address) names in the DNS cache.",
            None,
            &ConstGauge::new(d.entries as i64),
        )?;
        single(
            enc,
            "netta_dns_namespaces",
            "Network namespaces the DNS capture reads.",
            None,
            &ConstGauge::new(c.namespaces as i64),
        )?;
        for (name, help, v) in [
            (
                "netta_dns_cache_evicted",
                "DNS cache entries pushed out because it was full.",
                d.cache.evicted,
            ),
            (
                "netta_dns_cache_expired",
                "DNS cache entries dropped when their TTL ran out.",
                d.cache.expired,
            ),
        ] {
            single(enc, name, help, None, &ConstCounter::new(v))?;
        }
        Ok(())
    }
}

/// One metric without labels (`ConstGauge` or `ConstCounter`).
pub(super) fn single(
    enc: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    unit: Option<&Unit>,
    m: &dyn EncodeMetric,
) -> fmt::Result {
    m.encode(enc.encode_descriptor(name, help, unit, m.metric_type())?)
}

/// A family of `kind` (gauge or counter), one row per label set.
pub(super) fn family<L: EncodeLabelSet, M: EncodeMetric>(
    enc: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    kind: MetricType,
    rows: impl IntoIterator<Item = (L, M)>,
) -> fmt::Result {
    let mut m = enc.encode_descriptor(name, help, None, kind)?;
    for (labels, v) in rows {
        v.encode(m.encode_family(&labels)?)?;
    }
    Ok(())
}

/// Reads a [`Sample`] on every scrape.
pub(super) struct Sampler(pub(super) Box<dyn Fn() -> Sample + Send + Sync>);

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
